"""Tiny pure-Python wheels, written byte for byte the same every time.

The devstack's local "public PyPI" and the end-to-end tests need real distributions that pip, uv
and twine accept, without running a build backend.  A wheel is a zip with a fixed layout
(PEP 427, the binary distribution format): the package, then ``{name}-{version}.dist-info/``
with ``METADATA`` (core metadata), ``WHEEL`` and ``RECORD`` (every file's sha256 and size;
RECORD lists itself without either).  No library writes one from nothing, so this module does,
and the tests check the result with pkginfo, ``twine check``, pip and uv.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

from packaging.metadata import Metadata
from packaging.utils import canonicalize_name
from packaging.version import Version

GENERATOR = "cabroker-devstack"
# Zip timestamps cannot be earlier than 1980: a fixed one makes the bytes reproducible.
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o644 << 16


def import_name(name: str) -> str:
    """The module a wheel built for ``name`` installs: ``leftpad-py`` → ``leftpad_py``."""
    return canonicalize_name(name, validate=True).replace("-", "_")


def wheel_filename(name: str, version: str) -> str:
    """``{normalized_underscored_name}-{normalized version}-py3-none-any.whl``."""
    return f"{import_name(name)}-{Version(version)}-py3-none-any.whl"


def record_hash(data: bytes) -> str:
    """A RECORD hash: ``sha256=`` and the urlsafe base64 digest without ``=`` padding."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


def metadata(
    name: str,
    version: str,
    *,
    summary: str = "",
    requires_python: str | None = None,
    dependencies: Sequence[str] = (),
) -> bytes:
    """Core metadata 2.1 for the wheel, checked with ``packaging.metadata`` before it is used.

    Field names are written in their canonical case: twine and pkginfo look for the bytes
    ``Metadata-Version`` (packaging's own writer lower-cases them).  twine wants a description
    to render, so a one-line ``text/plain`` one is always there.  Raises ``ValueError`` for a
    value with a line break, or an ``ExceptionGroup`` of ``packaging.metadata.InvalidMetadata``.
    """
    fields = [
        ("Metadata-Version", "2.1"),
        ("Name", name),
        ("Version", str(Version(version))),
        ("Summary", summary or f"{name}, a devstack test package"),
        ("Description-Content-Type", "text/plain"),
    ]
    if requires_python is not None:
        fields.append(("Requires-Python", requires_python))
    fields.extend(("Requires-Dist", requirement) for requirement in dependencies)
    for field, value in fields:
        if value.splitlines() not in ([], [value]):
            raise ValueError(f"{field} must be one line: {value!r}")
    text = "".join(f"{field}: {value}\n" for field, value in fields)
    text += f"\n{name} {version}: built by the cabroker devstack for its tests.\n"
    Metadata.from_email(text)  # validates every field; raises on anything a tool would refuse
    return text.encode("utf-8")


def wheel_metadata() -> bytes:
    """The ``WHEEL`` file of a pure-Python, any-platform wheel."""
    return (
        f"Wheel-Version: 1.0\nGenerator: {GENERATOR}\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    ).encode("ascii")


def module_source(name: str, version: str, body: str = "") -> bytes:
    """The package's ``__init__.py``: ``__version__``, ``DISTRIBUTION`` and then ``body``."""
    source = f'"""{name}: a devstack test package."""\n\n'
    source += f"__version__ = {str(Version(version))!r}\nDISTRIBUTION = {name!r}\n"
    if body:
        source += "\n" + body.rstrip("\n") + "\n"
    return source.encode("utf-8")


def record(files: Sequence[tuple[str, bytes]], record_path: str) -> bytes:
    """RECORD for ``files`` (archive path, content), ending with its own hashless line."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for path, data in files:
        writer.writerow([path, record_hash(data), str(len(data))])
    writer.writerow([record_path, "", ""])
    return out.getvalue().encode("utf-8")


def wheel_bytes(files: Sequence[tuple[str, bytes]]) -> bytes:
    """A zip of ``files`` in order, with fixed timestamps and modes (reproducible bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in files:
            info = zipfile.ZipInfo(path, date_time=ZIP_TIMESTAMP)
            info.external_attr = FILE_MODE
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


def build_wheel(
    directory: Path,
    name: str,
    version: str,
    *,
    summary: str = "",
    requires_python: str | None = None,
    dependencies: Sequence[str] = (),
    body: str = "",
) -> Path:
    """Write a pure-Python wheel for ``name`` ``version`` into ``directory``; return its path.

    The wheel installs the package ``import_name(name)`` whose ``__init__.py`` sets
    ``__version__``, ``DISTRIBUTION = name`` and then runs ``body``.  ``dependencies`` become
    ``Requires-Dist`` lines.  Raises ``packaging.utils.InvalidName`` or
    ``packaging.version.InvalidVersion`` for a name or version the wheel could not carry.
    """
    package = import_name(name)
    dist_info = f"{package}-{Version(version)}.dist-info"
    files = [
        (f"{package}/__init__.py", module_source(name, version, body)),
        (
            f"{dist_info}/METADATA",
            metadata(
                name,
                version,
                summary=summary,
                requires_python=requires_python,
                dependencies=dependencies,
            ),
        ),
        (f"{dist_info}/WHEEL", wheel_metadata()),
    ]
    record_path = f"{dist_info}/RECORD"
    files.append((record_path, record(files, record_path)))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / wheel_filename(name, version)
    path.write_bytes(wheel_bytes(files))
    return path
