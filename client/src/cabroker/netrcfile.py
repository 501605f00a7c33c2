"""netrc editing (``~/.netrc``, the Docker build secret): the text is tokenized the way Python's
``netrc`` module reads it and edited in place, so only our ``machine`` entry changes.

(Named ``netrcfile`` so that it never shadows the standard library's ``netrc``.)"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import FilesError
from .filetext import newline


@dataclass
class NetrcEntry:
    kind: str  # machine, default, macdef
    name: str
    start: int
    end: int  # after its last token


def _token(text: str, pos: int) -> tuple[str, int, int] | None:
    """The next token from ``pos`` as Python's netrc reads it: (value, start, end); ``#``
    starts a comment to the end of the line."""
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos >= len(text):
            return None
        if text[pos] != "#":
            break
        end_of_line = text.find("\n", pos)
        pos = len(text) if end_of_line < 0 else end_of_line + 1
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


def entries(text: str) -> list[NetrcEntry]:
    """The ``machine``, ``default`` and ``macdef`` entries of a netrc text, in order."""
    found: list[NetrcEntry] = []
    pos = 0
    while (token := _token(text, pos)) is not None:
        value, start, pos = token
        if value in ("machine", "macdef"):
            name = _token(text, pos)
            entry = NetrcEntry(value, name[0] if name else "", start, name[2] if name else pos)
            pos = entry.end
            found.append(entry)
            if value == "macdef":  # its body runs to the first empty line
                blank = re.compile(r"\n\r?\n").search(text, pos)
                pos = entry.end = len(text) if blank is None else blank.end()
        elif value == "default":
            found.append(NetrcEntry("default", "", start, pos))
        elif found:
            found[-1].end = pos
    return found


def word(value: str, what: str) -> str:
    """``value`` as one netrc token, refused when netrc cannot hold it unquoted."""
    if not value or re.search(r'[\s"\\]', value) or value.startswith("#"):
        raise FilesError(f"the {what} cannot be written in netrc format (spaces or quotes)")
    return value


def set_machine(text: str, host: str, entry: str | None) -> str:
    """``text`` with the first ``machine host`` entry replaced by ``entry`` (None: removed)
    and later entries for ``host`` removed; ``entry`` is added when there was none."""
    mine = [e for e in entries(text) if e.kind == "machine" and e.name == host]
    for old in reversed(mine[1:]):
        text = cut(text, old.start, old.end)
    if mine:
        first = mine[0]
        if entry is None:
            return cut(text, first.start, first.end)
        return text[: first.start] + entry + text[first.end :]
    if entry is None:
        return text
    nl = newline(text)
    default = next((e for e in entries(text) if e.kind == "default"), None)
    if default is not None:
        return text[: default.start] + entry + nl + text[default.start :]
    if text and not text.endswith("\n"):
        text += nl
    return text + entry + nl


def cut(text: str, start: int, end: int) -> str:
    """``text`` without [start, end), and without the line it leaves empty."""
    line_start = text.rfind("\n", 0, start) + 1
    end_of_line = text.find("\n", end)
    line_end = len(text) if end_of_line < 0 else end_of_line + 1
    if not text[line_start:start].strip() and not text[end:line_end].strip():
        return text[:line_start] + text[line_end:]
    return text[:start] + text[end:]


def machine_text(text: str, host: str) -> str | None:
    """The text of the first ``machine host`` entry (None when there is none)."""
    mine = [e for e in entries(text) if e.kind == "machine" and e.name == host]
    return text[mine[0].start : mine[0].end] if mine else None


def entry_texts(text: str) -> list[str]:
    """The text of each ``machine`` entry."""
    return [text[e.start : e.end] for e in entries(text) if e.kind == "machine"]


def fields(text: str) -> list[dict[str, str]]:
    """Each ``machine`` entry's tokens after its name (``login``, ``password``, ...)."""
    found = []
    for entry in entries(text):
        if entry.kind != "machine":
            continue
        tokens, pos = [], entry.start
        while (token := _token(text, pos)) is not None and token[1] < entry.end:
            tokens.append(token[0])
            pos = token[2]
        found.append(dict(zip(tokens[2::2], tokens[3::2], strict=False)))
    return found
