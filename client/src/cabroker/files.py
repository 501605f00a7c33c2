"""The configuration files ``login`` may write (each one opt-in), and the ledger ``logout`` undoes.

Writers are pure: given a file's current bytes (``None`` when it does not exist) they return the
bytes to write. They edit text, never re-serialize it (configparser would drop the user's
comments and layout): only our key, section or netrc entry changes, every other byte stays.

- :func:`pip_conf`: ``[global]`` ``index-url = <index URL with aws:TOKEN@>``;
- :func:`pypirc`: a ``[codeartifact]`` section (upload URL, ``aws``, token) listed in
  ``[distutils] index-servers`` (twine's default list ``pypi testpypi`` is kept when that key
  was missing, so the user's ``[testpypi]`` still works);
- :func:`netrc`: ``machine HOST login aws password TOKEN`` (read by pip, uv and poetry), kept
  before a ``default`` entry; :func:`docker_secret` is the same, for a
  ``RUN --mount=type=secret,id=netrc,target=/root/.netrc`` build secret.

:class:`Ledger` writes them (atomically, mode 0600) and remembers, per file, the bytes and mode
*before* the first write and the SHA-256 of the last write. :meth:`Ledger.restore` puts the
original bytes back when the file is still what we wrote; when the user changed it since, only
our entry is taken out (the user's own previous entry put back in its place) and the outcome
says so. A file the ledger does not name is never touched. Nothing is ever written inside a
Python project (a directory with ``pyproject.toml``, ``uv.lock``, ``poetry.lock`` or
``requirements*.txt``, from the file's directory up to, excluding, the home directory).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import re
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .broker import Grant
from .errors import FilesError
from .outputs import DEFAULT_NAME, check_name, index_url_with_credentials

PROJECT_FILES = ("pyproject.toml", "uv.lock", "poetry.lock")
PROJECT_GLOB = "requirements*.txt"
LEDGER_VERSION = 1
DEFAULT_MODE = 0o600
# What twine reads when ``[distutils] index-servers`` is missing: kept when we add ours.
TWINE_DEFAULT_SERVERS = ("pypi", "testpypi")


# --- where the tools look ---------------------------------------------------------------------


def _home(environ: Mapping[str, str], platform: str) -> Path:
    value = environ.get("USERPROFILE" if platform == "win32" else "HOME")
    return Path(value) if value else Path.home()


def pip_conf_path(
    *,
    environ: Mapping[str, str] = os.environ,
    platform: str = sys.platform,
    home: Path | None = None,
) -> Path:
    """pip's user configuration file, as pip finds it (``PIP_CONFIG_FILE`` is not used)."""
    home = home or _home(environ, platform)
    if platform == "win32":
        appdata = environ.get("APPDATA")
        return (Path(appdata) if appdata else home / "AppData" / "Roaming") / "pip" / "pip.ini"
    if platform == "darwin":
        native = home / "Library" / "Application Support" / "pip"
        if native.is_dir():
            return native / "pip.conf"
        return home / ".config" / "pip" / "pip.conf"
    xdg = environ.get("XDG_CONFIG_HOME", "")
    return (Path(xdg) if xdg.strip() else home / ".config") / "pip" / "pip.conf"


def pypirc_path(*, environ: Mapping[str, str] = os.environ, platform: str = sys.platform) -> Path:
    """``~/.pypirc``, twine's default ``--config-file``."""
    return _home(environ, platform) / ".pypirc"


def netrc_path(*, environ: Mapping[str, str] = os.environ, platform: str = sys.platform) -> Path:
    """``$NETRC`` when set (requests and uv honour it), else ``~/.netrc`` (on Windows
    ``~/_netrc`` when only that one exists)."""
    if environ.get("NETRC"):
        return Path(environ["NETRC"])
    home = _home(environ, platform)
    if platform == "win32" and not (home / ".netrc").exists() and (home / "_netrc").exists():
        return home / "_netrc"
    return home / ".netrc"


def check_not_in_project(path: Path, home: Path | None = None) -> None:
    """Raise FilesError when ``path``'s directory, or a parent below ``home``, is a project."""
    home = (home or Path.home()).resolve()
    for directory in [path.parent, *path.parent.parents]:
        if directory == home:
            return
        marker = _project_marker(directory)
        if marker is not None:
            raise FilesError(
                f"refusing to write {path}: {directory} holds {marker.name}, and a token is "
                "never written into a project file; choose a path outside the project "
                "(your home directory, or $RUNNER_TEMP in GitHub Actions)"
            )


def _project_marker(directory: Path) -> Path | None:
    try:
        for name in PROJECT_FILES:
            if (directory / name).exists():
                return directory / name
        return next(directory.glob(PROJECT_GLOB), None)
    except OSError:  # an unreadable directory holds nothing we can see
        return None


# --- text, bytes, hashes ----------------------------------------------------------------------


def _text(data: bytes | None) -> str:
    """Bytes as text, any byte kept: undecodable ones round-trip through surrogateescape."""
    return (data or b"").decode("utf-8", "surrogateescape")


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _sha256(data: bytes | str) -> str:
    return hashlib.sha256(_bytes(data) if isinstance(data, str) else data).hexdigest()


def _lines(text: str) -> list[str]:
    """Lines with their endings (``\\n`` only splits, as configparser reads files)."""
    return re.findall(r"[^\n]*\n|[^\n]+\Z", text)


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _single_line(value: str, what: str) -> str:
    if value != value.strip() or "\n" in value or "\r" in value:
        raise FilesError(f"the {what} has a line break or edge spaces: refusing to write it")
    return value


# --- INI text (pip.conf, .pypirc), read the way configparser reads it -------------------------

_SECTION = re.compile(r"\[(?P<name>.+)\]")
_OPTION = re.compile(r"(?P<key>.*?)\s*[=:]\s*(?P<value>.*)$")


@dataclass(frozen=True)
class _IniLine:
    kind: str  # blank, comment, section, option, continuation, other
    section: str | None
    key: str | None


def _ini(lines: list[str]) -> list[_IniLine]:
    """Classify each line as ``configparser.RawConfigParser`` would (keys lower-cased)."""
    found: list[_IniLine] = []
    section: str | None = None
    key: str | None = None
    indent_level = 0
    for line in lines:
        stripped = line.strip()
        if stripped.startswith(("#", ";")):
            found.append(_IniLine("comment", section, None))
            continue
        if not stripped:
            found.append(_IniLine("blank", section, None))
            continue
        indent = len(line) - len(line.lstrip())
        if section is not None and key is not None and indent > indent_level:
            found.append(_IniLine("continuation", section, key))
            continue
        indent_level = indent
        header = _SECTION.match(stripped)
        option = _OPTION.match(stripped)
        if header:
            section, key = header["name"], None
            found.append(_IniLine("section", section, None))
        elif section is not None and option and option["key"].strip():
            key = option["key"].strip().lower()
            found.append(_IniLine("option", section, key))
        else:
            key = None
            found.append(_IniLine("other", section, None))
    return found


def _section_span(lines: list[str], section: str) -> tuple[int, int] | None:
    """[header, end) of a section: up to its last line that is neither blank nor a comment
    (the comments in front of the next section stay outside)."""
    info = _ini(lines)
    for start, line in enumerate(info):
        if line.kind == "section" and line.section == section:
            end = start + 1
            for index in range(start + 1, len(info)):
                if info[index].kind == "section":
                    break
                if info[index].kind not in ("blank", "comment"):
                    end = index + 1
            return start, end
    return None


def _option_span(
    lines: list[str], section: str, match: Callable[[str], bool]
) -> tuple[int, int] | None:
    """[option line, end) of the first option of ``section`` whose key ``match``es, with its
    continuation lines."""
    info = _ini(lines)
    for start, line in enumerate(info):
        if line.kind == "option" and line.section == section and match(line.key or ""):
            end = start + 1
            for index in range(start + 1, len(info)):
                if info[index].kind == "continuation":
                    end = index + 1
                elif info[index].kind not in ("blank", "comment"):
                    break
            return start, end
    return None


def _span_text(lines: list[str], span: tuple[int, int] | None) -> str | None:
    return None if span is None else "".join(lines[span[0] : span[1]])


def _splice(text: str, span: tuple[int, int], new: str | None) -> str:
    """``text`` with the lines in ``span`` replaced by ``new`` (None: removed)."""
    lines = _lines(text)
    start, end = span
    replacement = _lines(new or "")
    if replacement and end < len(lines) and not replacement[-1].endswith("\n"):
        replacement[-1] += _newline(text)
    if start > 0 and replacement and not lines[start - 1].endswith("\n"):
        lines[start - 1] += _newline(text)
    return "".join(lines[:start] + replacement + lines[end:])


def _append_section(text: str, block: str) -> str:
    """``text`` and a new section ``block`` after it, one blank line between."""
    nl = _newline(text)
    if text and not text.endswith("\n"):
        text += nl
    if text.strip() and not text.endswith(nl + nl):
        text += nl
    return text + block


def _set_section(text: str, section: str, block: str | None) -> str:
    """Replace section ``section`` by ``block`` (None: remove it), or append ``block``."""
    span = _section_span(_lines(text), section)
    if span is not None:
        return _splice(text, span, block)
    return _append_section(text, block) if block else text


def _set_option(text: str, section: str, match: Callable[[str], bool], block: str | None) -> str:
    """Replace the option (and its continuations) by ``block``, or add ``block`` at the end of
    the section (appending the section when missing); None removes the option."""
    lines = _lines(text)
    span = _option_span(lines, section, match)
    if span is not None:
        return _splice(text, span, block)
    if block is None:
        return text
    section_span = _section_span(lines, section)
    if section_span is None:
        return _append_section(text, f"[{section}]{_newline(text)}{block}")
    end = section_span[1]
    return _splice(text, (end, end), block)


def _drop_section_if_empty(text: str, section: str) -> str:
    """Remove ``section`` when it has no option left (a section we added for our key)."""
    lines = _lines(text)
    span = _section_span(lines, section)
    if span is None:
        return text
    info = _ini(lines)
    if any(info[i].kind in ("option", "continuation", "other") for i in range(*span)):
        return text
    start, end = span
    if start > 0 and not lines[start - 1].strip():  # the blank line put before it
        start -= 1
    return _splice(text, (start, end), None)


def _option_value(block: str | None) -> str | None:
    """An option block's value, continuation lines included."""
    if block is None:
        return None
    first, *rest = _lines(block)
    option = _OPTION.match(first.strip())
    return "\n".join([option["value"] if option else "", *(line.strip() for line in rest)])


# --- pip.conf -----------------------------------------------------------------------------------


def _is_index_url(key: str) -> bool:
    return key.replace("_", "-") == "index-url"  # pip's own key normalization


def pip_conf(current: bytes | None, grant: Grant) -> bytes:
    """pip's config with ``[global] index-url`` set to the index URL with credentials."""
    text = _text(current)
    url = _single_line(index_url_with_credentials(grant), "index URL")
    return _bytes(_set_option(text, "global", _is_index_url, f"index-url = {url}{_newline(text)}"))


def _pip_entry(text: str) -> str | None:
    return _span_text(lines := _lines(text), _option_span(lines, "global", _is_index_url))


def _pip_put(text: str, entry: str | None, before: str) -> str:
    text = _set_option(text, "global", _is_index_url, entry)
    if _section_span(_lines(before), "global") is None:
        text = _drop_section_if_empty(text, "global")
    return text


# --- .pypirc --------------------------------------------------------------------------------


def _is_index_servers(key: str) -> bool:
    return key == "index-servers"


def _add_server(text: str, name: str) -> str:
    """``name`` listed in ``[distutils] index-servers`` (a continuation line of its own)."""
    nl = _newline(text)
    lines = _lines(text)
    span = _option_span(lines, "distutils", _is_index_servers)
    if span is None:
        servers = "".join(f"    {server}{nl}" for server in (*TWINE_DEFAULT_SERVERS, name))
        return _set_option(text, "distutils", _is_index_servers, f"index-servers ={nl}{servers}")
    block = _span_text(lines, span) or ""
    if name in (_option_value(block) or "").split():
        return text
    first, *rest = _lines(block)
    # A continuation line is indented deeper than its option: copy the user's, or add four.
    indent = first[: len(first) - len(first.lstrip())] + "    "
    indent = next((line[: len(line) - len(line.lstrip())] for line in rest if line.strip()), indent)
    if not block.endswith("\n"):
        block += nl
    return _splice(text, span, f"{block}{indent}{name}{nl}")


def _remove_server(text: str, name: str, before: str) -> str:
    """Undo :func:`_add_server` on a file that may have changed since."""
    before_block = _span_text(
        before_lines := _lines(before), _option_span(before_lines, "distutils", _is_index_servers)
    )
    if name in (_option_value(before_block) or "").split():
        return text  # it was listed before we came
    lines = _lines(text)
    span = _option_span(lines, "distutils", _is_index_servers)
    if span is None:
        return text
    block = _span_text(lines, span) or ""
    if name not in (_option_value(block) or "").split():
        return text
    ours = _span_text(
        added := _lines(_add_server(before, name)),
        _option_span(added, "distutils", _is_index_servers),
    )
    if block == ours:  # as we left it: put the user's line(s) back, or none
        text = _splice(text, span, before_block)
        if _section_span(before_lines, "distutils") is None:
            text = _drop_section_if_empty(text, "distutils")
        return text
    kept = []  # the user added servers since: take out only our name
    token = re.compile(rf"(?<!\S){re.escape(name)}(?!\S)[ \t]*")
    for index, line in enumerate(_lines(block)):
        if index and line.strip() == name:
            continue
        if index == 0:
            key, sep, value = line.partition("=") if "=" in line else line.partition(":")
            line = key + sep + token.sub("", value)
        else:
            line = token.sub("", line)
        kept.append(line)
    return _splice(text, span, "".join(kept))


def pypirc(current: bytes | None, grant: Grant, name: str = DEFAULT_NAME) -> bytes:
    """``.pypirc`` with a ``[name]`` section for twine, listed in ``index-servers``."""
    check_name(name)
    text = _add_server(_text(current), name)
    nl = _newline(text)
    block = (
        f"[{name}]{nl}"
        f"repository = {_single_line(grant.upload_url, 'upload URL')}{nl}"
        f"username = {_single_line(grant.username, 'user name')}{nl}"
        f"password = {_single_line(grant.token, 'token')}{nl}"
    )
    return _bytes(_set_section(text, name, block))


def _pypirc_entry(text: str, name: str) -> str | None:
    return _span_text(lines := _lines(text), _section_span(lines, name))


def _pypirc_put(text: str, name: str, entry: str | None, before: str) -> str:
    return _remove_server(_set_section(text, name, entry), name, before)


# --- netrc ----------------------------------------------------------------------------------


@dataclass
class _NetrcEntry:
    kind: str  # machine, default, macdef
    name: str
    start: int
    end: int  # after its last token


def _netrc_token(text: str, pos: int) -> tuple[str, int, int] | None:
    """The next token from ``pos`` as Python's netrc reads it: (value, start, end); ``#``
    starts a comment to the end of the line."""
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos >= len(text):
            return None
        if text[pos] != "#":
            break
        newline = text.find("\n", pos)
        pos = len(text) if newline < 0 else newline + 1
    start, value = pos, ""
    quoted = text[pos] == '"'
    pos += quoted
    while pos < len(text):
        char = text[pos]
        if (quoted and char == '"') or (not quoted and char in " \t\r\n"):
            return value, start, pos + quoted
        if char == "\\" and pos + 1 < len(text):
            pos += 1
            char = text[pos]
        value += char
        pos += 1
    return value, start, pos


def _netrc_entries(text: str) -> list[_NetrcEntry]:
    entries: list[_NetrcEntry] = []
    pos = 0
    while (token := _netrc_token(text, pos)) is not None:
        value, start, pos = token
        if value in ("machine", "macdef"):
            name = _netrc_token(text, pos)
            entry = _NetrcEntry(value, name[0] if name else "", start, name[2] if name else pos)
            pos = entry.end
            entries.append(entry)
            if value == "macdef":  # its body runs to the first empty line
                blank = re.compile(r"\n\r?\n").search(text, pos)
                pos = entry.end = len(text) if blank is None else blank.end()
        elif value == "default":
            entries.append(_NetrcEntry("default", "", start, pos))
        elif entries:
            entries[-1].end = pos
    return entries


def _host(grant: Grant) -> str:
    host = urlsplit(grant.index_url).hostname
    if not host:
        raise FilesError(f"the index URL {grant.index_url!r} has no host name: cannot write netrc")
    return host


def _netrc_word(value: str, what: str) -> str:
    if not value or re.search(r'[\s"\\]', value) or value.startswith("#"):
        raise FilesError(f"the {what} cannot be written in netrc format (spaces or quotes)")
    return value


def _netrc_set(text: str, host: str, entry: str | None) -> str:
    """``text`` with the first ``machine host`` entry replaced by ``entry`` (None: removed)
    and later entries for ``host`` removed; ``entry`` is added when there was none."""
    mine = [e for e in _netrc_entries(text) if e.kind == "machine" and e.name == host]
    for old in reversed(mine[1:]):
        text = _netrc_cut(text, old.start, old.end)
    if mine:
        first = mine[0]
        if entry is None:
            return _netrc_cut(text, first.start, first.end)
        return text[: first.start] + entry + text[first.end :]
    if entry is None:
        return text
    nl = _newline(text)
    default = next((e for e in _netrc_entries(text) if e.kind == "default"), None)
    if default is not None:
        return text[: default.start] + entry + nl + text[default.start :]
    if text and not text.endswith("\n"):
        text += nl
    return text + entry + nl


def _netrc_cut(text: str, start: int, end: int) -> str:
    """``text`` without [start, end), and without the line it leaves empty."""
    line_start = text.rfind("\n", 0, start) + 1
    newline = text.find("\n", end)
    line_end = len(text) if newline < 0 else newline + 1
    if not text[line_start:start].strip() and not text[end:line_end].strip():
        return text[:line_start] + text[line_end:]
    return text[:start] + text[end:]


def netrc(current: bytes | None, grant: Grant) -> bytes:
    """A netrc with ``machine <index host> login aws password <token>`` (only that entry)."""
    host = _netrc_word(_host(grant), "host")
    entry = (
        f"machine {host} login {_netrc_word(grant.username, 'user name')} "
        f"password {_netrc_word(grant.token, 'token')}"
    )
    return _bytes(_netrc_set(_text(current), host, entry))


def docker_secret(current: bytes | None, grant: Grant) -> bytes:
    """A Docker build secret, in netrc format: mount it at ``/root/.netrc``."""
    return netrc(current, grant)


def _netrc_entry(text: str, host: str) -> str | None:
    mine = [e for e in _netrc_entries(text) if e.kind == "machine" and e.name == host]
    return text[mine[0].start : mine[0].end] if mine else None


# --- what a ledger knows about a file's content -----------------------------------------------


@dataclass(frozen=True)
class Owned:
    """Which part of a file is ours, so ``logout`` can take out only that after the user
    changed the file: ``pip`` (``[global] index-url``), ``pypirc`` (section ``name``) or
    ``netrc`` (``machine name``)."""

    kind: str
    name: str = ""

    @classmethod
    def pip(cls) -> Owned:
        return cls("pip")

    @classmethod
    def pypirc(cls, name: str = DEFAULT_NAME) -> Owned:
        return cls("pypirc", check_name(name))

    @classmethod
    def netrc(cls, host: str) -> Owned:
        return cls("netrc", host)

    def entry(self, text: str) -> str | None:
        """Our entry's text in ``text`` (None when absent)."""
        if self.kind == "pip":
            return _pip_entry(text)
        if self.kind == "pypirc":
            return _pypirc_entry(text, self.name)
        if self.kind == "netrc":
            return _netrc_entry(text, self.name)
        raise FilesError(f"the ledger names an unknown kind of file {self.kind!r}: update cabroker")

    def put(self, text: str, entry: str | None, before: str) -> str:
        """``text`` with our entry replaced by ``entry`` (None: removed), and what we added
        around it (a section, an ``index-servers`` name) taken out unless ``before`` had it."""
        if self.kind == "pip":
            return _pip_put(text, entry, before)
        if self.kind == "pypirc":
            return _pypirc_put(text, self.name, entry, before)
        return _netrc_set(text, self.name, entry)

    def revert(self, current: bytes, before: bytes | None, ours: str | None) -> bytes | None:
        """``current`` with our entry swapped back for ``before``'s; None when our entry is no
        longer what we wrote (sha256 ``ours``; None: revert it anyway)."""
        text, old = _text(current), _text(before)
        entry = self.entry(text)
        if entry is not None and ours is not None and _sha256(entry) != ours:
            return None
        # Gone already (the user took it out): nothing to put back in its place either.
        replacement = None if entry is None else self.entry(old)
        return _bytes(self.put(text, replacement, old))


# --- the ledger ---------------------------------------------------------------------------------


class Action(StrEnum):
    RESTORED = "restored"  # the original bytes and mode are back
    DELETED = "deleted"  # it did not exist before login
    REMOVED_ENTRIES = "removed-entries"  # changed since: only our entry was taken out
    LEFT = "left"  # changed since, our entry too (or unknown): not touched
    MISSING = "missing"  # deleted since: nothing to undo
    FAILED = "failed"  # could not be restored; still in the ledger


@dataclass(frozen=True)
class Outcome:
    path: Path
    action: Action
    detail: str

    def __str__(self) -> str:
        return f"{self.path}: {self.detail}"


class RestoreIncomplete(FilesError):
    """Some files could not be restored: they stay in the ledger for the next ``logout``."""

    def __init__(self, message: str, outcomes: list[Outcome]) -> None:
        super().__init__(message)
        self.outcomes = outcomes


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(data: object) -> bytes | None:
    return None if data is None else base64.b64decode(str(data), validate=True)


def _read(path: Path) -> tuple[bytes | None, int | None]:
    """(bytes, permission bits) of ``path``, or (None, None) when it does not exist."""
    try:
        with path.open("rb") as handle:
            return handle.read(), stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
    except FileNotFoundError:
        return None, None
    except OSError as error:
        raise FilesError(
            f"cannot read {path} ({error.strerror}): check its permissions, then try again"
        ) from None


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync, and rename it over ``path``."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    if sys.platform != "win32":
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _make_parents(directory: Path) -> list[str]:
    """Create ``directory`` and missing parents (0700); the ones created, outermost first."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        if directory.parent == directory:
            break
        directory = directory.parent
    for path in reversed(missing):
        path.mkdir(mode=0o700, exist_ok=True)
    return [str(path) for path in reversed(missing)]


def _files_error(path: Path, error: OSError, doing: str) -> FilesError:
    return FilesError(
        f"cannot {doing} {path} ({error.strerror or type(error).__name__}): check the "
        "permissions of the file and its directory and the free space, then run it again"
    )


class Ledger:
    """The record of the files ``login`` wrote, in a JSON file (mode 0600), guarded by an
    exclusive ``flock`` on ``<ledger>.lock`` for every read-modify-write.

    Per file (keyed by its resolved absolute path): ``before`` (base64 of the bytes before the
    first write, null when it did not exist), ``mode_before``, ``sha256`` and ``mode`` of our
    last write, ``owned`` (our entry: kind, name, sha256) and ``created_dirs``.
    """

    def __init__(self, path: Path, *, home: Path | None = None) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.home = home

    # --- reading --------------------------------------------------------------------------

    def records(self) -> dict[str, dict[str, Any]]:
        """The ledger's records by path ({} when there is no ledger)."""
        data, _ = _read(self.path)
        if data is None:
            return {}
        try:
            document = json.loads(data)
            files = document["files"]
            if document.get("version") != LEDGER_VERSION or not isinstance(files, dict):
                raise ValueError("unknown layout")
            for record in files.values():
                _unb64(record["before"])
                str(record["sha256"])
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as error:
            raise FilesError(
                f"the ledger {self.path} is damaged ({type(error).__name__}); it records what "
                "logout restores: repair it, or delete it to forget those files"
            ) from None
        return files

    def paths(self) -> list[Path]:
        """The files ``logout`` would restore."""
        return [Path(path) for path in self.records()]

    # --- writing --------------------------------------------------------------------------

    def apply(
        self,
        path: Path,
        new_bytes: bytes,
        mode: int | None = DEFAULT_MODE,
        *,
        owned: Owned | None = None,
    ) -> Path:
        """Write ``new_bytes`` to ``path`` atomically (``mode``; None keeps the file's mode,
        0600 for a new file) and record it; returns the resolved path written."""
        return self.edit(path, lambda _: new_bytes, mode, owned=owned)

    def edit(
        self,
        path: Path,
        change: Callable[[bytes | None], bytes],
        mode: int | None = DEFAULT_MODE,
        *,
        owned: Owned | None = None,
    ) -> Path:
        """Like :meth:`apply`, with the new bytes computed from the current ones (``None``:
        no such file) while the ledger is locked, so concurrent logins do not lose edits."""
        target = self._target(path)
        with self._locked():
            records = self.records()
            current, current_mode = _read(target)
            new_bytes = change(current)
            record = records.get(str(target))
            if record is None:
                record = {"before": _b64(current), "mode_before": current_mode}
            elif current is None or _sha256(current) != record["sha256"]:
                # Changed since our last write: that change is the user's, keep it in "before".
                record.update(self._rebase(record, current, current_mode, owned))
            final_mode = mode if mode is not None else (current_mode or DEFAULT_MODE)
            try:
                created = _make_parents(target.parent)
                _write_atomic(target, new_bytes, final_mode)
            except OSError as error:
                raise _files_error(target, error, "write") from None
            record["created_dirs"] = [*record.get("created_dirs", []), *created]
            record["sha256"] = _sha256(new_bytes)
            record["mode"] = final_mode
            if owned is not None:
                entry = owned.entry(_text(new_bytes))
                record["owned"] = {
                    "kind": owned.kind,
                    "name": owned.name,
                    "sha256": None if entry is None else _sha256(entry),
                }
            records[str(target)] = record
            self._save(records)
        return target

    def _rebase(
        self,
        record: dict[str, Any],
        current: bytes | None,
        current_mode: int | None,
        owned: Owned | None,
    ) -> dict[str, Any]:
        if current is None:
            return {"before": None, "mode_before": None}
        kept = _owned(record) or owned
        if kept is None:
            return {}  # no way to tell ours from theirs: the original "before" stays
        reverted = kept.revert(current, _unb64(record["before"]), None)
        if record["before"] is None and reverted is not None and not reverted.strip():
            reverted = None  # nothing of the user's in it: it still did not exist "before"
        mode_before = record["mode_before"]
        if current_mode != record.get("mode"):
            mode_before = current_mode
        return {"before": _b64(reverted), "mode_before": mode_before}

    # --- restoring ------------------------------------------------------------------------

    def restore(self) -> list[Outcome]:
        """Undo every recorded write (see the module doc), then clear the ledger.

        Raises :class:`RestoreIncomplete` (with every outcome) when a file could not be
        restored; those records stay in the ledger.
        """
        outcomes: list[Outcome] = []
        with self._locked():
            records = self.records()
            remaining: dict[str, dict[str, Any]] = {}
            for key, record in records.items():
                path = Path(key)
                try:
                    outcomes.append(self._restore_one(path, record))
                except (OSError, FilesError) as error:
                    detail = getattr(error, "strerror", None) or str(error)
                    outcomes.append(Outcome(path, Action.FAILED, f"not restored: {detail}"))
                    remaining[key] = record
            self._save(remaining)
        failed = [outcome for outcome in outcomes if outcome.action is Action.FAILED]
        if failed:
            raise RestoreIncomplete(
                f"could not restore {', '.join(str(o.path) for o in failed)}: fix the "
                "permissions, then run logout again",
                outcomes,
            )
        return outcomes

    def _restore_one(self, path: Path, record: dict[str, Any]) -> Outcome:
        current, current_mode = _read(path)
        before = _unb64(record["before"])
        mode_before = record.get("mode_before")
        if current is not None and _sha256(current) == record["sha256"]:
            if before is None:
                path.unlink()
                _remove_dirs(record.get("created_dirs", []))
                return Outcome(path, Action.DELETED, "removed (it did not exist before login)")
            _write_atomic(path, before, mode_before if mode_before is not None else DEFAULT_MODE)
            return Outcome(path, Action.RESTORED, "restored as it was before login")
        if current is None:
            return Outcome(path, Action.MISSING, "no longer exists: nothing to undo")
        owned = _owned(record)
        reverted = None if owned is None else owned.revert(current, before, _owned_sha(record))
        if reverted is None:
            return Outcome(
                path, Action.LEFT, "changed since login, cabroker's entry too: left as it is"
            )
        if reverted == current:
            return Outcome(path, Action.LEFT, "changed since login, no cabroker entry left in it")
        if before is None and not reverted.strip():
            path.unlink()
            _remove_dirs(record.get("created_dirs", []))
            return Outcome(path, Action.DELETED, "removed (only cabroker's entry was left)")
        mode = current_mode if current_mode is not None else DEFAULT_MODE
        if mode_before is not None and current_mode == record.get("mode"):
            mode = mode_before
        _write_atomic(path, reverted, mode)
        return Outcome(
            path, Action.REMOVED_ENTRIES, "changed since login: removed only cabroker's entry"
        )

    # --- the ledger file itself -----------------------------------------------------------

    def _target(self, path: Path) -> Path:
        target = Path(os.path.abspath(path)).resolve()
        check_not_in_project(target, self.home)
        return target

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            raise _files_error(self.lock_path, error, "create") from None
        try:
            _lock(fd)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _save(self, records: dict[str, dict[str, Any]]) -> None:
        try:
            if not records:
                self.path.unlink(missing_ok=True)
                return
            document = {"version": LEDGER_VERSION, "files": records}
            data = json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"
            _write_atomic(self.path, data, DEFAULT_MODE)
        except OSError as error:
            raise _files_error(self.path, error, "write the ledger") from None


def _owned(record: Mapping[str, Any]) -> Owned | None:
    owned = record.get("owned")
    return Owned(str(owned["kind"]), str(owned["name"])) if owned else None


def _owned_sha(record: Mapping[str, Any]) -> str | None:
    owned = record.get("owned")
    return str(owned["sha256"]) if owned and owned.get("sha256") else None


def _remove_dirs(directories: list[str]) -> None:
    """Remove the directories login created, innermost first, while they are empty."""
    for directory in reversed(directories):
        try:
            os.rmdir(directory)
        except OSError:
            return


def _lock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                return
            except OSError:  # LK_LOCK gives up after 10 s: keep waiting
                continue
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)


# --- what the CLI calls -----------------------------------------------------------------------


def write_pip_conf(ledger: Ledger, grant: Grant, path: Path | None = None) -> Path:
    return ledger.edit(path or pip_conf_path(), lambda old: pip_conf(old, grant), owned=Owned.pip())


def write_pypirc(
    ledger: Ledger, grant: Grant, name: str = DEFAULT_NAME, path: Path | None = None
) -> Path:
    return ledger.edit(
        path or pypirc_path(), lambda old: pypirc(old, grant, name), owned=Owned.pypirc(name)
    )


def write_netrc(ledger: Ledger, grant: Grant, path: Path | None = None) -> Path:
    return ledger.edit(
        path or netrc_path(), lambda old: netrc(old, grant), owned=Owned.netrc(_host(grant))
    )


def write_docker_secret(ledger: Ledger, grant: Grant, path: Path) -> Path:
    return ledger.edit(path, lambda old: docker_secret(old, grant), owned=Owned.netrc(_host(grant)))
