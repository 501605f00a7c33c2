"""The entries cabroker writes into a file, and taking them out again.

Writers are pure: given a file's current bytes (``None`` when it does not exist) they return the
bytes to write; only our key, section or netrc entry changes, every other byte stays.

- :func:`pip_conf`: ``[global]`` ``index-url = <index URL with aws:TOKEN@>``;
- :func:`pypirc`: a ``[codeartifact]`` section (upload URL, ``aws``, token) listed in
  ``[distutils] index-servers`` (twine's default list ``pypi testpypi`` is kept when that key
  was missing, so the user's ``[testpypi]`` still works);
- :func:`netrc`: ``machine HOST login aws password TOKEN`` (read by pip, uv and poetry), kept
  before a ``default`` entry; :func:`docker_secret` is the same, for a
  ``RUN --mount=type=secret,id=netrc,target=/root/.netrc`` build secret.

:class:`Owned` names our entry in a file, so that ``logout`` can take out only that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from . import inifile, netrcfile
from .broker import Grant
from .errors import FilesError
from .filetext import decode, encode, newline, sha256, single_line
from .filetext import lines as split_lines
from .outputs import DEFAULT_NAME, check_name, index_url_with_credentials

# What twine reads when ``[distutils] index-servers`` is missing: kept when we add ours.
TWINE_DEFAULT_SERVERS = ("pypi", "testpypi")


# --- pip.conf -----------------------------------------------------------------------------------


def _is_index_url(key: str) -> bool:
    return key.replace("_", "-") == "index-url"  # pip's own key normalization


def pip_conf(current: bytes | None, grant: Grant) -> bytes:
    """pip's config with ``[global] index-url`` set to the index URL with credentials."""
    text = decode(current)
    url = single_line(index_url_with_credentials(grant), "index URL")
    return encode(
        inifile.set_option(text, "global", _is_index_url, f"index-url = {url}{newline(text)}")
    )


def _pip_entry(text: str) -> str | None:
    lines = split_lines(text)
    return inifile.span_text(lines, inifile.option_span(lines, "global", _is_index_url))


def _pip_put(text: str, entry: str | None, before: str) -> str:
    text = inifile.set_option(text, "global", _is_index_url, entry)
    if inifile.section_span(split_lines(before), "global") is None:
        text = inifile.drop_section_if_empty(text, "global")
    return text


# --- .pypirc --------------------------------------------------------------------------------


def _is_index_servers(key: str) -> bool:
    return key == "index-servers"


def _servers_block(text: str) -> str | None:
    lines = split_lines(text)
    return inifile.span_text(lines, inifile.option_span(lines, "distutils", _is_index_servers))


def _add_server(text: str, name: str) -> str:
    """``name`` listed in ``[distutils] index-servers`` (a continuation line of its own)."""
    nl = newline(text)
    lines = split_lines(text)
    span = inifile.option_span(lines, "distutils", _is_index_servers)
    if span is None:
        servers = "".join(f"    {server}{nl}" for server in (*TWINE_DEFAULT_SERVERS, name))
        return inifile.set_option(
            text, "distutils", _is_index_servers, f"index-servers ={nl}{servers}"
        )
    block = inifile.span_text(lines, span) or ""
    if name in (inifile.option_value(block) or "").split():
        return text
    first, *rest = split_lines(block)
    # A continuation line is indented deeper than its option: copy the user's, or add four.
    indent = first[: len(first) - len(first.lstrip())] + "    "
    indent = next((line[: len(line) - len(line.lstrip())] for line in rest if line.strip()), indent)
    if not block.endswith("\n"):
        block += nl
    return inifile.splice(text, span, f"{block}{indent}{name}{nl}")


def _remove_server(text: str, name: str, before: str) -> str:
    """Undo :func:`_add_server` on a file that may have changed since."""
    before_block = _servers_block(before)
    if name in (inifile.option_value(before_block) or "").split():
        return text  # it was listed before we came
    lines = split_lines(text)
    span = inifile.option_span(lines, "distutils", _is_index_servers)
    if span is None:
        return text
    block = inifile.span_text(lines, span) or ""
    if name not in (inifile.option_value(block) or "").split():
        return text
    if block == _servers_block(_add_server(before, name)):  # as we left it: put theirs back
        text = inifile.splice(text, span, before_block)
        if inifile.section_span(split_lines(before), "distutils") is None:
            text = inifile.drop_section_if_empty(text, "distutils")
        return text
    kept = []  # the user added servers since: take out only our name
    token = re.compile(rf"(?<!\S){re.escape(name)}(?!\S)[ \t]*")
    for index, line in enumerate(split_lines(block)):
        if index and line.strip() == name:
            continue
        if index == 0:
            key, sep, value = line.partition("=") if "=" in line else line.partition(":")
            line = key + sep + token.sub("", value)
        else:
            line = token.sub("", line)
        kept.append(line)
    return inifile.splice(text, span, "".join(kept))


def pypirc(current: bytes | None, grant: Grant, name: str = DEFAULT_NAME) -> bytes:
    """``.pypirc`` with a ``[name]`` section for twine, listed in ``index-servers``."""
    check_name(name)
    text = _add_server(decode(current), name)
    nl = newline(text)
    block = (
        f"[{name}]{nl}"
        f"repository = {single_line(grant.upload_url, 'upload URL')}{nl}"
        f"username = {single_line(grant.username, 'user name')}{nl}"
        f"password = {single_line(grant.token, 'token')}{nl}"
    )
    return encode(inifile.set_section(text, name, block))


def _pypirc_entry(text: str, name: str) -> str | None:
    lines = split_lines(text)
    return inifile.span_text(lines, inifile.section_span(lines, name))


def _pypirc_put(text: str, name: str, entry: str | None, before: str) -> str:
    return _remove_server(inifile.set_section(text, name, entry), name, before)


# --- netrc ----------------------------------------------------------------------------------


def host_of(grant: Grant) -> str:
    host = urlsplit(grant.index_url).hostname
    if not host:
        raise FilesError(f"the index URL {grant.index_url!r} has no host name: cannot write netrc")
    return host


def netrc(current: bytes | None, grant: Grant) -> bytes:
    """A netrc with ``machine <index host> login aws password <token>`` (only that entry)."""
    host = netrcfile.word(host_of(grant), "host")
    entry = (
        f"machine {host} login {netrcfile.word(grant.username, 'user name')} "
        f"password {netrcfile.word(grant.token, 'token')}"
    )
    return encode(netrcfile.set_machine(decode(current), host, entry))


def docker_secret(current: bytes | None, grant: Grant) -> bytes:
    """A Docker build secret, in netrc format: mount it at ``/root/.netrc``."""
    return netrc(current, grant)


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
            return netrcfile.machine_text(text, self.name)
        raise FilesError(f"the ledger names an unknown kind of file {self.kind!r}: update cabroker")

    def put(self, text: str, entry: str | None, before: str) -> str:
        """``text`` with our entry replaced by ``entry`` (None: removed), and what we added
        around it (a section, an ``index-servers`` name) taken out unless ``before`` had it."""
        if self.kind == "pip":
            return _pip_put(text, entry, before)
        if self.kind == "pypirc":
            return _pypirc_put(text, self.name, entry, before)
        return netrcfile.set_machine(text, self.name, entry)

    def revert(self, current: bytes, before: bytes | None, ours: str | None) -> bytes | None:
        """``current`` with our entry swapped back for ``before``'s; None when our entry is no
        longer what we wrote (sha256 ``ours``; None: revert it anyway)."""
        text, old = decode(current), decode(before)
        entry = self.entry(text)
        if entry is not None and ours is not None and sha256(entry) != ours:
            return None
        # Gone already (the user took it out): nothing to put back in its place either.
        replacement = None if entry is None else self.entry(old)
        return encode(self.put(text, replacement, old))
