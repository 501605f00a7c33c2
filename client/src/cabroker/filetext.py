"""A configuration file's bytes as text and back, losslessly, cut into lines the way
configparser reads them; its line-ending style; hashes of what cabroker wrote."""

from __future__ import annotations

import hashlib
import re

from .errors import FilesError


def decode(data: bytes | None) -> str:
    """Bytes as text, any byte kept: undecodable ones round-trip through surrogateescape."""
    return (data or b"").decode("utf-8", "surrogateescape")


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def sha256(data: bytes | str) -> str:
    return hashlib.sha256(encode(data) if isinstance(data, str) else data).hexdigest()


def lines(text: str) -> list[str]:
    """Lines with their endings (``\\n`` only splits, as configparser reads files)."""
    return re.findall(r"[^\n]*\n|[^\n]+\Z", text)


def newline(text: str) -> str:
    """The file's line ending: ``\\r\\n`` when it has one, else ``\\n``."""
    return "\r\n" if "\r\n" in text else "\n"


def single_line(value: str, what: str) -> str:
    """``value``, refused when it would break out of its line."""
    if value != value.strip() or "\n" in value or "\r" in value:
        raise FilesError(f"the {what} has a line break or edge spaces: refusing to write it")
    return value
