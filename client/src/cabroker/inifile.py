"""Comment-preserving INI editing (pip.conf, .pypirc): the text is read the way
``configparser.RawConfigParser`` reads it and edited in place, never re-serialized, so only
the lines we replace change and every other byte (comments, layout, line endings, undecodable
bytes) stays."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .filetext import lines as split_lines
from .filetext import newline

Span = tuple[int, int]  # [first line, end) in a list of lines

_SECTION = re.compile(r"\[(?P<name>.+)\]")
_OPTION = re.compile(r"(?P<key>.*?)\s*[=:]\s*(?P<value>.*)$")


@dataclass(frozen=True)
class IniLine:
    kind: str  # blank, comment, section, option, continuation, other
    section: str | None
    key: str | None


def classify(lines: list[str]) -> list[IniLine]:
    """Classify each line as ``configparser.RawConfigParser`` would (keys lower-cased)."""
    found: list[IniLine] = []
    section: str | None = None
    key: str | None = None
    indent_level = 0
    for line in lines:
        stripped = line.strip()
        if stripped.startswith(("#", ";")):
            found.append(IniLine("comment", section, None))
            continue
        if not stripped:
            found.append(IniLine("blank", section, None))
            continue
        indent = len(line) - len(line.lstrip())
        if section is not None and key is not None and indent > indent_level:
            found.append(IniLine("continuation", section, key))
            continue
        indent_level = indent
        header = _SECTION.match(stripped)
        option = _OPTION.match(stripped)
        if header:
            section, key = header["name"], None
            found.append(IniLine("section", section, None))
        elif section is not None and option and option["key"].strip():
            key = option["key"].strip().lower()
            found.append(IniLine("option", section, key))
        else:
            key = None
            found.append(IniLine("other", section, None))
    return found


def section_span(lines: list[str], section: str) -> Span | None:
    """[header, end) of a section: up to its last line that is neither blank nor a comment
    (the comments in front of the next section stay outside)."""
    info = classify(lines)
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


def option_span(lines: list[str], section: str, match: Callable[[str], bool]) -> Span | None:
    """[option line, end) of the first option of ``section`` whose key ``match``es, with its
    continuation lines."""
    info = classify(lines)
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


def span_text(lines: list[str], span: Span | None) -> str | None:
    return None if span is None else "".join(lines[span[0] : span[1]])


def splice(text: str, span: Span, new: str | None) -> str:
    """``text`` with the lines in ``span`` replaced by ``new`` (None: removed)."""
    lines = split_lines(text)
    start, end = span
    replacement = split_lines(new or "")
    if replacement and end < len(lines) and not replacement[-1].endswith("\n"):
        replacement[-1] += newline(text)
    if start > 0 and replacement and not lines[start - 1].endswith("\n"):
        lines[start - 1] += newline(text)
    return "".join(lines[:start] + replacement + lines[end:])


def append_section(text: str, block: str) -> str:
    """``text`` and a new section ``block`` after it, one blank line between."""
    nl = newline(text)
    if text and not text.endswith("\n"):
        text += nl
    if text.strip() and not text.endswith(nl + nl):
        text += nl
    return text + block


def set_section(text: str, section: str, block: str | None) -> str:
    """Replace section ``section`` by ``block`` (None: remove it), or append ``block``."""
    span = section_span(split_lines(text), section)
    if span is not None:
        return splice(text, span, block)
    return append_section(text, block) if block else text


def set_option(text: str, section: str, match: Callable[[str], bool], block: str | None) -> str:
    """Replace the option (and its continuations) by ``block``, or add ``block`` at the end of
    the section (appending the section when missing); None removes the option."""
    lines = split_lines(text)
    span = option_span(lines, section, match)
    if span is not None:
        return splice(text, span, block)
    if block is None:
        return text
    found = section_span(lines, section)
    if found is None:
        return append_section(text, f"[{section}]{newline(text)}{block}")
    end = found[1]
    return splice(text, (end, end), block)


def drop_section_if_empty(text: str, section: str) -> str:
    """Remove ``section`` when it has no option left (a section we added for our key)."""
    lines = split_lines(text)
    span = section_span(lines, section)
    if span is None:
        return text
    info = classify(lines)
    if any(info[i].kind in ("option", "continuation", "other") for i in range(*span)):
        return text
    start, end = span
    if start > 0 and not lines[start - 1].strip():  # the blank line put before it
        start -= 1
    return splice(text, (start, end), None)


def option_value(block: str | None) -> str | None:
    """An option block's value, continuation lines included."""
    if block is None:
        return None
    first, *rest = split_lines(block)
    option = _OPTION.match(first.strip())
    return "\n".join([option["value"] if option else "", *(line.strip() for line in rest)])
