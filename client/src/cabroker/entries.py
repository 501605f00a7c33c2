"""The entries cabroker writes into a file, and taking each one out again.

Writers are pure: given a file's text they return the new text and an :class:`Entry` per entry
they wrote; only our key, section or netrc entry changes, every other byte stays.

- :func:`put_pip`: ``[global]`` ``index-url = <index URL with aws:TOKEN@>``;
- :func:`put_pypirc`: a ``[name]`` section (upload URL, ``aws``, token), ``name`` listed in
  ``[distutils] index-servers`` (twine's default list ``pypi testpypi`` is kept when that key
  was missing, so the user's ``[testpypi]`` still works);
- :func:`put_netrc`: ``machine HOST login aws password TOKEN`` (read by pip, uv and poetry),
  kept before a ``default`` entry; also the Docker build secret (mounted at ``/root/.netrc``).

An :class:`Entry` records, without any secret: which entry is ours (kind and name), the SHA-256
of its text as we wrote it, the user's text it replaced (``replaced``), and what we added around
it (a section or option for it, a blank line before it, the line ending we gave the file's
unterminated last line, a line ending after it). :func:`take_out` undoes exactly that: our text
is cut, or swapped back for the user's, and the bytes we added around it go too, so a file
nobody else changed comes back byte for byte, and a file the user changed keeps their changes.

A credential of CodeArtifact's user (``aws``) with a password is never kept as ``replaced``: it
is a token (an older cabroker login's, or ``aws codeartifact login``'s), short-lived, and putting
it back at logout would leave a token behind. The entry then records ``dropped`` and logout
takes the entry out entirely. An entry of ours that the user edited is still ours while it
holds such a credential (logout removes it); once it holds none, it is the user's and stays.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields, replace
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from . import inifile, netrcfile
from .broker import Grant
from .errors import FilesError
from .filetext import decode, encode, newline, sha256, single_line
from .filetext import lines as split_lines
from .outputs import DEFAULT_NAME, check_name, index_url_with_credentials

# What twine reads when ``[distutils] index-servers`` is missing: kept when we add ours.
TWINE_DEFAULT_SERVERS = ("pypi", "testpypi")

PIP = "pip-index-url"
PYPIRC_SERVER = "pypirc-server"
PYPIRC_SECTION = "pypirc-section"
NETRC = "netrc-machine"
KINDS = (PIP, PYPIRC_SERVER, PYPIRC_SECTION, NETRC)


@dataclass
class Entry:
    """One entry cabroker wrote into a file (JSON-able; never a secret)."""

    kind: str  # one of KINDS
    name: str = ""  # the pypirc section/server name, the netrc host
    user: str = ""  # the user name written with the credential (CodeArtifact's "aws")
    sha256: str = ""  # of the entry's text as we last wrote it
    replaced: str | None = None  # the user's text our entry took the place of
    dropped: bool = False  # it took the place of a CodeArtifact credential, not kept
    added: str = ""  # what we added for it: "section", "option" (index-servers) or ""
    eol: str = ""  # the line ending we gave the file's unterminated last line
    blank: str = ""  # the blank line we put before it (or before the section we added)
    after: str = ""  # the line ending we put after it (netrc)

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.name

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: object) -> Entry:
        """An entry read back from the ledger; ValueError when it is not one."""
        if not isinstance(data, dict) or set(data) != {f.name for f in fields(cls)}:
            raise ValueError("not an entry")
        entry = cls(**data)
        texts = (entry.kind, entry.name, entry.user, entry.sha256, entry.added)
        flags = (entry.eol, entry.blank, entry.after)
        if (
            entry.kind not in KINDS
            or not all(isinstance(value, str) for value in (*texts, *flags))
            or not all(flag in ("", "\n", "\r\n") for flag in flags)
            or not isinstance(entry.replaced, str | None)
            or not isinstance(entry.dropped, bool)
        ):
            raise ValueError("not an entry")
        return entry


class Status(StrEnum):
    REMOVED = "removed"  # our entry taken out, with what we added around it
    PUT_BACK = "put-back"  # our entry swapped back for the user's text it replaced
    GONE = "gone"  # no longer in the file: nothing to do
    LEFT = "left"  # the user changed it and it holds no CodeArtifact credential: theirs now


# --- finding things in a text -------------------------------------------------------------------


def _offsets(lines: list[str], span: inifile.Span) -> tuple[int, int]:
    start = sum(len(line) for line in lines[: span[0]])
    return start, start + sum(len(line) for line in lines[span[0] : span[1]])


def _is_index_url(key: str) -> bool:
    return key.replace("_", "-") == "index-url"  # pip's own key normalization


def _is_index_servers(key: str) -> bool:
    return key == "index-servers"


def _options(block: str) -> dict[str, str]:
    """The options of an INI block, first line of each value (keys lower-cased)."""
    found: dict[str, str] = {}
    for line, info in zip(split_lines(block), inifile.classify(split_lines(block)), strict=True):
        if info.kind == "option" and info.key is not None:
            found.setdefault(info.key, inifile.option_value(line) or "")
    return found


def holds_credential(kind: str, text: str, user: str) -> bool:
    """Whether ``text`` (an entry of ``kind``) holds a password for CodeArtifact's ``user``."""
    if kind == PIP:
        value = (inifile.option_value(text) or "").split()
        try:
            parts = urlsplit(value[0]) if value else None
            return parts is not None and parts.username == user and bool(parts.password)
        except ValueError:
            return False
    if kind == PYPIRC_SECTION:
        options = _options(text)
        return options.get("username", "").strip() == user and bool(options.get("password"))
    if kind == NETRC:
        return any(
            fields_.get("login") == user and bool(fields_.get("password"))
            for fields_ in netrcfile.fields(text)
        )
    return False


def keeping(entry: Entry, replaced: str | None) -> Entry:
    """``entry`` replacing ``replaced``, which is kept unless it is a CodeArtifact credential."""
    if replaced is None:
        return replace(entry, replaced=None, dropped=False)
    if entry.kind == NETRC:  # several entries for our host may have been replaced: sort them
        pieces = [
            text
            for text in netrcfile.entry_texts(replaced)
            if not holds_credential(NETRC, text, entry.user)
        ]
        dropped = len(pieces) < len(netrcfile.entry_texts(replaced))
        kept = newline(replaced).join(pieces) if pieces else None
        return replace(entry, replaced=kept, dropped=dropped)
    if holds_credential(entry.kind, replaced, entry.user):
        return replace(entry, replaced=None, dropped=True)
    return replace(entry, replaced=replaced, dropped=False)


# --- putting in ---------------------------------------------------------------------------------


def _append(text: str, block: str, entry: Entry) -> tuple[str, Entry]:
    """``block`` after ``text``: its last line ended, one blank line between."""
    nl = newline(text)
    eol = nl if text and not text.endswith("\n") else ""
    blank = nl if text.strip() and not (text + eol).endswith(nl + nl) else ""
    return text + eol + blank + block, replace(entry, eol=eol, blank=blank)


def _insert(text: str, at: int, block: str, entry: Entry) -> tuple[str, Entry]:
    """``block`` (whole lines) inserted at offset ``at``, a line start or the end of ``text``."""
    eol = newline(text) if at > 0 and text[at - 1] != "\n" else ""
    return text[:at] + eol + block + text[at:], replace(entry, eol=eol)


def put_pip(text: str, grant: Grant) -> tuple[str, list[Entry]]:
    """pip's config with ``[global] index-url`` set to the index URL with credentials."""
    nl = newline(text)
    core = f"index-url = {single_line(index_url_with_credentials(grant), 'index URL')}{nl}"
    entry = Entry(PIP, user=grant.username, sha256=sha256(core))
    lines = split_lines(text)
    span = inifile.option_span(lines, "global", _is_index_url)
    if span is not None:
        start, end = _offsets(lines, span)
        return text[:start] + core + text[end:], [replace(entry, replaced=text[start:end])]
    section = inifile.section_span(lines, "global")
    if section is None:
        new, entry = _append(text, f"[global]{nl}{core}", replace(entry, added="section"))
        return new, [entry]
    new, entry = _insert(text, _offsets(lines, (section[1], section[1]))[0], core, entry)
    return new, [entry]


def _put_server(text: str, name: str, user: str) -> tuple[str, Entry | None]:
    """``name`` listed in ``[distutils] index-servers`` (a continuation line of its own)."""
    nl = newline(text)
    lines = split_lines(text)
    entry = Entry(PYPIRC_SERVER, name, user)
    span = inifile.option_span(lines, "distutils", _is_index_servers)
    if span is None:
        servers = "".join(f"    {server}{nl}" for server in (*TWINE_DEFAULT_SERVERS, name))
        option = f"index-servers ={nl}{servers}"
        section = inifile.section_span(lines, "distutils")
        if section is None:
            block = f"[distutils]{nl}{option}"
            return _append(text, block, replace(entry, added="section", sha256=sha256(block)))
        at = _offsets(lines, (section[1], section[1]))[0]
        return _insert(text, at, option, replace(entry, added="option", sha256=sha256(option)))
    start, end = _offsets(lines, span)
    block = text[start:end]
    if name in (inifile.option_value(block) or "").split():
        return text, None
    first, *rest = split_lines(block)
    # A continuation line is indented deeper than its option: copy the user's, or add four.
    indent = first[: len(first) - len(first.lstrip())] + "    "
    indent = next((line[: len(line) - len(line.lstrip())] for line in rest if line.strip()), indent)
    item = f"{indent}{name}{nl}"
    return _insert(text, end, item, replace(entry, sha256=sha256(item)))


def put_pypirc(text: str, grant: Grant, name: str = DEFAULT_NAME) -> tuple[str, list[Entry]]:
    """``.pypirc`` with a ``[name]`` section for twine, listed in ``index-servers``."""
    check_name(name)
    text, server = _put_server(text, name, grant.username)
    nl = newline(text)
    core = (
        f"[{name}]{nl}"
        f"repository = {single_line(grant.upload_url, 'upload URL')}{nl}"
        f"username = {single_line(grant.username, 'user name')}{nl}"
        f"password = {single_line(grant.token, 'token')}{nl}"
    )
    entry = Entry(PYPIRC_SECTION, name, grant.username, sha256(core))
    lines = split_lines(text)
    span = inifile.section_span(lines, name)
    if span is not None:
        start, end = _offsets(lines, span)
        new, entry = text[:start] + core + text[end:], replace(entry, replaced=text[start:end])
    else:
        new, entry = _append(text, core, entry)
    return new, [*([server] if server else []), entry]


def host_of(grant: Grant) -> str:
    host = urlsplit(grant.index_url).hostname
    if not host:
        raise FilesError(f"the index URL {grant.index_url!r} has no host name: cannot write netrc")
    return host


def put_netrc(text: str, grant: Grant) -> tuple[str, list[Entry]]:
    """A netrc with ``machine <index host> login aws password <token>`` (only that entry for
    that host: Python's netrc reads the last one, curl the first)."""
    host = netrcfile.word(host_of(grant), "host")
    core = (
        f"machine {host} login {netrcfile.word(grant.username, 'user name')} "
        f"password {netrcfile.word(grant.token, 'token')}"
    )
    entry = Entry(NETRC, host, grant.username, sha256(core))
    nl = newline(text)
    mine = [e for e in netrcfile.entries(text) if e.kind == "machine" and e.name == host]
    if mine:
        replaced = [text[e.start : e.end] for e in mine]
        for old in reversed(mine[1:]):
            text = netrcfile.cut(text, old.start, old.end)
        first = mine[0]
        new = text[: first.start] + core + text[first.end :]
        return new, [replace(entry, replaced=nl.join(replaced))]
    default = next((e for e in netrcfile.entries(text) if e.kind == "default"), None)
    if default is not None:
        at = default.start
        return text[:at] + core + nl + text[at:], [replace(entry, after=nl)]
    eol = nl if text and not text.endswith("\n") else ""
    return text + eol + core + nl, [replace(entry, eol=eol, after=nl)]


# --- the pure writers, bytes in and out ---------------------------------------------------------


def pip_conf(current: bytes | None, grant: Grant) -> bytes:
    return encode(put_pip(decode(current), grant)[0])


def pypirc(current: bytes | None, grant: Grant, name: str = DEFAULT_NAME) -> bytes:
    return encode(put_pypirc(decode(current), grant, name)[0])


def netrc(current: bytes | None, grant: Grant) -> bytes:
    return encode(put_netrc(decode(current), grant)[0])


def docker_secret(current: bytes | None, grant: Grant) -> bytes:
    """A Docker build secret, in netrc format: mount it at ``/root/.netrc``."""
    return netrc(current, grant)


# --- taking out ---------------------------------------------------------------------------------


def _cut(text: str, start: int, end: int, entry: Entry) -> str:
    """``text`` without [start, end) and without what ``entry`` says we added around it."""
    before, rest = text[:start], text[end:]
    if entry.after and rest.startswith(entry.after):
        rest = rest[len(entry.after) :]
    if entry.blank and (before == entry.blank or before.endswith("\n" + entry.blank)):
        before = before[: -len(entry.blank)]
    if entry.eol and not rest and before.endswith(entry.eol):
        before = before[: -len(entry.eol)]
    return before + rest


def _put_back(text: str, start: int, end: int, replaced: str) -> str:
    """``text`` with [start, end) swapped for ``replaced``, its line ended if text follows."""
    if text[start:end].endswith("\n") and not replaced.endswith("\n") and end < len(text):
        replaced += newline(text)
    return text[:start] + replaced + text[end:]


def _still_ours(entry: Entry, current: str) -> bool:
    """Whether the entry text ``current`` is still ours: as we wrote it, or still holding a
    CodeArtifact credential."""
    return sha256(current) == entry.sha256 or holds_credential(entry.kind, current, entry.user)


_BARE = Entry(PIP)  # no bytes added around: used when a section we added is no longer only ours


def take_out(text: str, entry: Entry, *, left: frozenset[str] = frozenset()) -> tuple[str, Status]:
    """``text`` without ``entry`` (the user's replaced text put back in its place); ``left``
    names the pypirc sections the user kept (their names stay listed in index-servers)."""
    lines = split_lines(text)
    if entry.kind == NETRC:
        mine = [e for e in netrcfile.entries(text) if e.kind == "machine" and e.name == entry.name]
        if not mine:
            return text, Status.GONE
        start, end = mine[0].start, mine[0].end
        if not _still_ours(entry, text[start:end]):
            return text, Status.LEFT
        if entry.replaced is not None:
            return _put_back(text, start, end, entry.replaced), Status.PUT_BACK
        if not (entry.after or entry.eol):  # in place of an entry that was not kept
            return netrcfile.cut(text, start, end), Status.REMOVED
        return _cut(text, start, end, entry), Status.REMOVED
    if entry.kind == PYPIRC_SERVER:
        return _take_out_server(text, entry, left)
    if entry.kind == PIP:
        span = inifile.option_span(lines, "global", _is_index_url)
        section = "global"
    else:
        span = inifile.section_span(lines, entry.name)
        section = entry.name
    if span is None:
        return text, Status.GONE
    start, end = _offsets(lines, span)
    if not _still_ours(entry, text[start:end]):
        return text, Status.LEFT
    if entry.replaced is not None:
        return _put_back(text, start, end, entry.replaced), Status.PUT_BACK
    if entry.added == "section":  # the section's header goes too, unless the user filled it
        whole = inifile.section_span(lines, section)
        if whole is None or (whole[0] + 1, whole[1]) != span:
            return _cut(text, start, end, _BARE), Status.REMOVED
        start = _offsets(lines, whole)[0]
    return _cut(text, start, end, entry), Status.REMOVED


def _take_out_server(text: str, entry: Entry, left: frozenset[str]) -> tuple[str, Status]:
    name = entry.name
    if name in left:
        return text, Status.LEFT
    lines = split_lines(text)
    span = inifile.option_span(lines, "distutils", _is_index_servers)
    if span is None:
        return text, Status.GONE
    start, end = _offsets(lines, span)
    block = text[start:end]
    if name not in (inifile.option_value(block) or "").split():
        return text, Status.GONE
    if entry.added == "section":
        section = inifile.section_span(lines, "distutils")
        if section is not None and (section[0] + 1, section[1]) == span:
            head = _offsets(lines, section)[0]
            if sha256(text[head:end]) == entry.sha256:
                return _cut(text, head, end, entry), Status.REMOVED
    elif entry.added == "option" and sha256(block) == entry.sha256:
        return _cut(text, start, end, entry), Status.REMOVED
    # Others were listed since (or the user edited the list): take out only our name.
    block_lines = split_lines(block)
    for index in range(len(block_lines) - 1, 0, -1):
        if block_lines[index].strip() == name:
            line_start = start + sum(len(line) for line in block_lines[:index])
            line_end = line_start + len(block_lines[index])
            flags = entry if not entry.added else _BARE
            return _cut(text, line_start, line_end, flags), Status.REMOVED
    token = re.compile(rf"(?<!\S){re.escape(name)}(?!\S)[ \t]*")
    key, sep, value = block.partition("=") if "=" in block_lines[0] else block.partition(":")
    return text[:start] + key + sep + token.sub("", value, count=1) + text[end:], Status.REMOVED
