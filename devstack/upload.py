"""The legacy upload API, as twine and ``uv publish`` use it: validate one ``file_upload``.

Both tools POST ``multipart/form-data`` to the repository URL with ``:action=file_upload``,
``protocol_version=1``, the distribution's ``name``, ``version``, ``filetype``, ``pyversion``,
``metadata_version``, its digests (``sha256_digest``, ``md5_digest``, ``blake2_256_digest``;
each optional), its core metadata fields, and the file itself as ``content``.  ``parse_upload``
takes werkzeug's ``request.form`` and ``request.files`` and returns the checked ``Upload``, or
raises ``UploadError``; authentication, permissions and storing the file are the caller's.

The filename is parsed by ``packaging`` and the metadata inside the file read by pkginfo.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

import pkginfo
from packaging.utils import InvalidSdistFilename, InvalidWheelFilename
from packaging.version import InvalidVersion, Version

from devstack.simple import normalize, version_of

BAD_REQUEST = 400
TOO_LARGE = 413
# What twine and uv send for each kind of file.
FILETYPES = {".whl": "bdist_wheel", ".tar.gz": "sdist"}
DIGESTS = {"sha256_digest": "sha256", "md5_digest": "md5", "blake2_256_digest": "blake2b"}
# pkginfo warns about (and then skips) metadata versions it does not know; parsing every file
# with its newest known field list reads the same Name and Version without a warning, which
# the test suite turns into an error and which a threaded server must not race on.
PKGINFO_METADATA_VERSION = "2.5"


class UploadedFile(Protocol):
    """What ``parse_upload`` needs of a file field: werkzeug's ``FileStorage`` fits."""

    @property
    def filename(self) -> str | None: ...

    @property
    def stream(self) -> IO[bytes]: ...


class UploadError(Exception):
    """An upload refused: ``status`` (400 or 413) and a message saying what to fix.

    twine shows the HTTP reason phrase and uv the response body, so a server should send the
    message in both: ``status_line`` is ``"<status> <message>"`` made safe for a status line.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def status_line(self) -> str:
        """``"400 <message>"``: one line of printable ASCII, as an HTTP status line needs."""
        text = " ".join(self.message.split())
        safe = "".join(ch if " " <= ch <= "~" else "?" for ch in text)
        return f"{self.status} {safe}"


@dataclass(frozen=True)
class Upload:
    """An accepted upload.

    ``name`` is normalized (``acme-lib``), ``display_name`` as the metadata spells it
    (``Acme_Lib``), ``version`` normalized (PEP 440).  ``sha256`` is the content's hex digest;
    ``requires_python`` and ``summary`` come from the file's own metadata.
    """

    name: str
    display_name: str
    version: str
    filename: str
    content: bytes = field(repr=False)
    sha256: str
    requires_python: str | None
    summary: str | None


def parse_upload(
    form: Mapping[str, str], files: Mapping[str, UploadedFile], *, max_bytes: int
) -> Upload:
    """Check one legacy-API upload and return it; raise ``UploadError`` for anything wrong.

    Checked in order: the action and protocol version (1; absent counts as 1); a ``content``
    file of at most ``max_bytes`` (413 beyond; werkzeug has parsed the body by then, so bound
    it with ``Request.max_content_length`` too); its filename is a wheel or a ``.tar.gz`` sdist
    whose name and version are the form's (compared normalized), and the form's ``filetype``
    (if any) fits it; every digest the form gives matches the content; the metadata inside the
    file names the same project and version.
    """
    action = form.get(":action")
    if action != "file_upload":
        raise UploadError(BAD_REQUEST, f"unsupported :action {action!r}: only file_upload is")
    if form.get("protocol_version", "1") != "1":
        raise UploadError(BAD_REQUEST, "unsupported protocol_version: only 1 is")
    upload = files.get("content")
    if upload is None or not upload.filename:
        raise UploadError(BAD_REQUEST, "no distribution file in the 'content' field")
    filename = upload.filename
    content = _read_capped(upload.stream, max_bytes, filename)
    name, version = _form_name_version(form)
    _check_filename(filename, name, version, form.get("filetype"))
    _check_digests(form, content, filename)
    meta = _read_metadata(filename, content)
    if meta.name is None or normalize(meta.name) != normalize(name):
        raise UploadError(
            BAD_REQUEST,
            f"{filename}: its metadata names project {meta.name!r}, the upload says {name!r}",
        )
    if meta.version is None or not _same_version(meta.version, version):
        raise UploadError(
            BAD_REQUEST,
            f"{filename}: its metadata says version {meta.version!r}, the upload says '{version}'",
        )
    return Upload(
        name=normalize(name),
        display_name=meta.name,
        version=str(version),
        filename=filename,
        content=content,
        sha256=hashlib.sha256(content).hexdigest(),
        requires_python=meta.requires_python,
        summary=meta.summary,
    )


def _read_capped(stream: IO[bytes], max_bytes: int, filename: str) -> bytes:
    content = stream.read(max_bytes + 1)
    if len(content) > max_bytes:
        raise UploadError(TOO_LARGE, f"{filename} is larger than the {max_bytes}-byte upload limit")
    if not content:
        raise UploadError(BAD_REQUEST, f"{filename} is empty")
    return content


def _form_name_version(form: Mapping[str, str]) -> tuple[str, Version]:
    name = form.get("name", "").strip()
    raw_version = form.get("version", "").strip()
    if not name or not raw_version:
        raise UploadError(BAD_REQUEST, "the upload must give the project's name and version")
    try:
        return name, Version(raw_version)
    except InvalidVersion:
        raise UploadError(BAD_REQUEST, f"{raw_version!r} is not a valid version") from None


def _check_filename(filename: str, name: str, version: Version, filetype: str | None) -> None:
    if filename != Path(filename).name or "\\" in filename or filename.startswith("."):
        raise UploadError(BAD_REQUEST, f"{filename!r} is not a plain file name")
    suffix = next((s for s in FILETYPES if filename.endswith(s)), None)
    if suffix is None:
        raise UploadError(
            BAD_REQUEST,
            f"{filename} is not a distribution: upload a wheel (.whl) or sdist (.tar.gz)",
        )
    try:
        file_name, file_version = version_of(filename)
    except (InvalidWheelFilename, InvalidSdistFilename) as error:
        raise UploadError(BAD_REQUEST, f"{filename} is not a valid file name: {error}") from None
    if file_name != normalize(name):
        raise UploadError(
            BAD_REQUEST, f"{filename} is a file of project {file_name!r}, the upload says {name!r}"
        )
    if file_version != version:
        raise UploadError(
            BAD_REQUEST, f"{filename} is version {file_version}, the upload says {version}"
        )
    if filetype and filetype != FILETYPES[suffix]:
        raise UploadError(
            BAD_REQUEST, f"{filename} is a {FILETYPES[suffix]}, the upload says {filetype!r}"
        )


def _check_digests(form: Mapping[str, str], content: bytes, filename: str) -> None:
    for field_name, algorithm in DIGESTS.items():
        claimed = form.get(field_name, "").strip().lower()
        if not claimed:
            continue
        if algorithm == "blake2b":
            actual = hashlib.blake2b(content, digest_size=32).hexdigest()
        else:
            actual = hashlib.new(algorithm, content, usedforsecurity=False).hexdigest()
        if claimed != actual:
            raise UploadError(
                BAD_REQUEST,
                f"{filename}: {field_name} does not match the file's content; "
                "it was changed or cut short on the way, upload it again",
            )


def _read_metadata(filename: str, content: bytes) -> pkginfo.Distribution:
    reader = pkginfo.Wheel if filename.endswith(".whl") else pkginfo.SDist
    with tempfile.TemporaryDirectory(prefix="devstack-upload-") as directory:
        path = Path(directory) / filename
        path.write_bytes(content)
        try:
            return reader(str(path), metadata_version=PKGINFO_METADATA_VERSION)
        except Exception as error:  # noqa: BLE001 - zipfile, tarfile and pkginfo errors alike
            detail = str(error).replace(str(path), filename) or error.__class__.__name__
            raise UploadError(
                BAD_REQUEST, f"{filename}: cannot read its metadata: {detail}"
            ) from None


def _same_version(raw: str, version: Version) -> bool:
    try:
        return Version(raw) == version
    except InvalidVersion:
        return False
