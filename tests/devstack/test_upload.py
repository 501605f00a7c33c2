"""devstack.upload: the legacy upload API, checked directly and with twine and uv publish."""

from __future__ import annotations

import hashlib
import hmac
import io
import secrets
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from werkzeug.datastructures import FileStorage
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from devstack.upload import Upload, UploadError, parse_upload
from devstack.wheels import build_wheel
from tests.devstack.test_wheels import VENV_BIN, output, run_tool
from tests.support.oidc import Secret

MAX = 1_000_000


def digests(content: bytes) -> dict[str, str]:
    return {
        "sha256_digest": hashlib.sha256(content).hexdigest(),
        "md5_digest": hashlib.md5(content, usedforsecurity=False).hexdigest(),
        "blake2_256_digest": hashlib.blake2b(content, digest_size=32).hexdigest(),
    }


def request_for(
    path: Path, name: str, version: str, filetype: str = "bdist_wheel", filename: str = ""
) -> tuple[dict[str, str], dict[str, FileStorage]]:
    """The form and files twine would send for ``path``."""
    content = path.read_bytes()
    form = {
        ":action": "file_upload",
        "protocol_version": "1",
        "name": name,
        "version": version,
        "filetype": filetype,
        "pyversion": "py3" if filetype == "bdist_wheel" else "source",
        "metadata_version": "2.1",
        **digests(content),
    }
    upload = FileStorage(io.BytesIO(content), filename=filename or path.name, name="content")
    return form, {"content": upload}


def build_sdist(directory: Path, name: str, version: str, pkg_info_name: str = "") -> Path:
    """A minimal sdist: ``{name}-{version}/PKG-INFO`` (and a setup.py) in a .tar.gz."""
    stem = f"{name.replace('-', '_')}-{version}"
    pkg_info = f"Metadata-Version: 2.1\nName: {pkg_info_name or name}\nVersion: {version}\n"
    path = directory / f"{stem}.tar.gz"
    directory.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        for member, text in (("PKG-INFO", pkg_info), ("setup.py", "")):
            data = text.encode()
            info = tarfile.TarInfo(f"{stem}/{member}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    return build_wheel(
        tmp_path / "dist", "Acme_Lib", "1.0.0", summary="acme's library", requires_python=">=3.9"
    )


def rejection(
    form: dict[str, str], files: dict[str, FileStorage], max_bytes: int = MAX
) -> UploadError:
    with pytest.raises(UploadError) as caught:
        parse_upload(form, files, max_bytes=max_bytes)
    return caught.value


# --- parse_upload ---------------------------------------------------------------------------


def test_good_wheel(wheel: Path) -> None:
    form, files = request_for(wheel, "acme-lib", "1.0")
    upload = parse_upload(form, files, max_bytes=MAX)
    content = wheel.read_bytes()
    assert upload == Upload(
        name="acme-lib",
        display_name="Acme_Lib",
        version="1.0",
        filename="acme_lib-1.0.0-py3-none-any.whl",
        content=content,
        sha256=hashlib.sha256(content).hexdigest(),
        requires_python=">=3.9",
        summary="acme's library",
    )
    assert "content" not in repr(upload)


def test_good_sdist(tmp_path: Path) -> None:
    sdist = build_sdist(tmp_path, "acme-lib", "2.0rc1")
    form, files = request_for(sdist, "Acme.Lib", "2.0rc1", filetype="sdist")
    upload = parse_upload(form, files, max_bytes=MAX)
    assert (upload.name, upload.display_name, upload.version) == ("acme-lib", "acme-lib", "2.0rc1")
    assert upload.filename == "acme_lib-2.0rc1.tar.gz"
    assert upload.requires_python is None


def test_digests_are_optional(wheel: Path) -> None:
    form, files = request_for(wheel, "acme-lib", "1.0.0")
    for field in ("sha256_digest", "md5_digest", "blake2_256_digest"):
        del form[field]
    assert parse_upload(form, files, max_bytes=MAX).name == "acme-lib"


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({":action": "submit"}, "unsupported :action 'submit'"),
        ({":action": ""}, "unsupported :action"),
        ({"protocol_version": "2"}, "protocol_version"),
        ({"name": "acme-other"}, "is a file of project 'acme-lib', the upload says 'acme-other'"),
        ({"name": ""}, "name and version"),
        ({"version": "1.0.1"}, "is version 1.0.0, the upload says 1.0.1"),
        ({"version": "one"}, "'one' is not a valid version"),
        ({"filetype": "sdist"}, "is a bdist_wheel, the upload says 'sdist'"),
        ({"sha256_digest": "0" * 64}, "sha256_digest does not match"),
        ({"md5_digest": "0" * 32}, "md5_digest does not match"),
        ({"blake2_256_digest": "0" * 64}, "blake2_256_digest does not match"),
    ],
)
def test_form_that_does_not_fit_the_file(wheel: Path, changes: dict[str, str], says: str) -> None:
    form, files = request_for(wheel, "acme-lib", "1.0.0")
    error = rejection(form | changes, files)
    assert (error.status, says in error.message) == (400, True), error.message


def test_digests_compare_case_insensitively(wheel: Path) -> None:
    form, files = request_for(wheel, "acme-lib", "1.0.0")
    form["sha256_digest"] = form["sha256_digest"].upper()
    assert parse_upload(form, files, max_bytes=MAX).version == "1.0.0"


def test_metadata_that_names_another_project(tmp_path: Path) -> None:
    other = build_wheel(tmp_path / "other", "acme-other", "1.0.0")
    renamed = other.with_name("acme_lib-1.0.0-py3-none-any.whl")
    other.rename(renamed)
    error = rejection(*request_for(renamed, "acme-lib", "1.0.0"))
    assert error.status == 400
    assert "its metadata names project 'acme-other'" in error.message


def test_metadata_with_another_version(tmp_path: Path) -> None:
    sdist = build_sdist(tmp_path, "acme-lib", "1.0.0")
    renamed = sdist.with_name("acme_lib-1.0.1.tar.gz")
    sdist.rename(renamed)
    error = rejection(*request_for(renamed, "acme-lib", "1.0.1", filetype="sdist"))
    assert "its metadata says version '1.0.0', the upload says '1.0.1'" in error.message


def test_sdist_metadata_with_another_name(tmp_path: Path) -> None:
    sdist = build_sdist(tmp_path, "acme-lib", "1.0.0", pkg_info_name="evil")
    error = rejection(*request_for(sdist, "acme-lib", "1.0.0", filetype="sdist"))
    assert "its metadata names project 'evil'" in error.message


@pytest.mark.parametrize(
    ("filename", "says"),
    [
        ("acme_lib-1.0.0.zip", "is not a distribution"),
        ("acme_lib-1.0.0.egg", "is not a distribution"),
        ("notes.txt", "is not a distribution"),
        ("acme_lib.whl", "is not a valid file name"),
        ("../acme_lib-1.0.0-py3-none-any.whl", "is not a plain file name"),
        ("dir\\acme_lib-1.0.0-py3-none-any.whl", "is not a plain file name"),
    ],
)
def test_not_a_distribution_filename(wheel: Path, filename: str, says: str) -> None:
    error = rejection(*request_for(wheel, "acme-lib", "1.0.0", filename=filename))
    assert (error.status, says in error.message) == (400, True), error.message


@pytest.mark.parametrize("suffix", ["-py3-none-any.whl", ".tar.gz"])
def test_content_that_is_not_an_archive(tmp_path: Path, suffix: str) -> None:
    fake = tmp_path / f"acme_lib-1.0.0{suffix}"
    fake.write_bytes(b"this is not an archive at all")
    filetype = "bdist_wheel" if suffix.endswith(".whl") else "sdist"
    error = rejection(*request_for(fake, "acme-lib", "1.0.0", filetype=filetype))
    assert error.status == 400
    assert f"{fake.name}: cannot read its metadata" in error.message
    assert str(tmp_path) not in error.message


def test_wheel_without_metadata(tmp_path: Path) -> None:
    path = tmp_path / "acme_lib-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("acme_lib/__init__.py", "")
    error = rejection(*request_for(path, "acme-lib", "1.0.0"))
    assert "cannot read its metadata: No METADATA in archive" in error.message
    assert "devstack-upload-" not in error.message


def test_missing_or_empty_content(wheel: Path) -> None:
    form, _ = request_for(wheel, "acme-lib", "1.0.0")
    assert "no distribution file" in rejection(form, {}).message
    nameless = {"content": FileStorage(io.BytesIO(b"x"), filename="", name="content")}
    assert "no distribution file" in rejection(form, nameless).message
    empty = {"content": FileStorage(io.BytesIO(b""), filename=wheel.name, name="content")}
    assert rejection(form, empty).message == f"{wheel.name} is empty"


def test_too_large(wheel: Path) -> None:
    size = wheel.stat().st_size
    assert parse_upload(*request_for(wheel, "acme-lib", "1.0.0"), max_bytes=size).version
    error = rejection(*request_for(wheel, "acme-lib", "1.0.0"), max_bytes=size - 1)
    assert error.status == 413
    assert f"larger than the {size - 1}-byte upload limit" in error.message


def test_status_line_is_one_printable_ascii_line() -> None:
    error = UploadError(400, "acme_lib-1.0.whl:\n its metadata  names \u2018x\u2019\r\n")
    assert error.status_line == "400 acme_lib-1.0.whl: its metadata names ?x?"
    assert str(error) == error.message


# --- the real clients -----------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    upload: Upload
    username: str | None
    password: Secret


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class UploadServer:
    """A legacy-upload endpoint on loopback whose only logic is ``parse_upload``."""

    def __init__(self, max_bytes: int = MAX) -> None:
        self.max_bytes = max_bytes
        self.received: list[Received] = []
        self.server: BaseWSGIServer = make_server(
            "127.0.0.1", 0, self, threaded=True, request_handler=_QuietHandler
        )
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        with Request(environ) as request:  # closing it closes the uploaded file's temp file
            return self._respond(request)(environ, start_response)

    def _respond(self, request: Request) -> Response:
        auth = request.authorization
        if request.method != "POST" or auth is None:
            return Response("POST with basic auth\n", status=401)
        try:
            upload = parse_upload(request.form, request.files, max_bytes=self.max_bytes)
        except UploadError as error:
            return Response(error.message + "\n", status=error.status_line)
        self.received.append(Received(upload, auth.username, Secret(auth.password or "")))
        return Response("OK\n")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def server() -> Iterator[UploadServer]:
    server = UploadServer()
    yield server
    server.close()


@pytest.fixture
def password() -> Secret:
    # Leading "-": the command lines must pass it as a value, never as an option.
    return Secret("-" + secrets.token_urlsafe(24))


def twine_upload(url: str, password: Secret, wheel: Path) -> list[str]:
    return [
        str(VENV_BIN / "twine"),
        "upload",
        "--repository-url",
        url,
        "--username=aws",
        f"--password={password}",  # one argument: a token may start with "-"
        "--disable-progress-bar",
        str(wheel),
    ]


def uv_publish(url: str, password: Secret, wheel: Path) -> list[str]:
    return [
        str(VENV_BIN / "uv"),
        "publish",
        "--publish-url",
        url,
        "--username=aws",
        f"--password={password}",
        "--trusted-publishing",
        "never",
        str(wheel),
    ]


def assert_received(server: UploadServer, wheel: Path, password: Secret) -> None:
    assert len(server.received) == 1
    received = server.received[0]
    assert received.username == "aws"
    assert hmac.compare_digest(received.password, password)
    assert received.upload.name == "acme-lib"
    assert received.upload.display_name == "Acme_Lib"
    assert received.upload.version == "1.0.0"
    assert received.upload.filename == wheel.name
    assert received.upload.content == wheel.read_bytes()
    assert received.upload.requires_python == ">=3.9"


def test_twine_upload(tmp_path: Path, server: UploadServer, wheel: Path, password: Secret) -> None:
    result = run_tool(twine_upload(server.url, password, wheel), tmp_path, password)
    assert result.returncode == 0, output(result)
    assert_received(server, wheel, password)
    assert not result.leaked


def test_uv_publish(tmp_path: Path, server: UploadServer, wheel: Path, password: Secret) -> None:
    result = run_tool(uv_publish(server.url, password, wheel), tmp_path, password)
    assert result.returncode == 0, output(result)
    assert_received(server, wheel, password)
    assert not result.leaked


def test_both_tools_show_the_reason_for_a_refusal(
    tmp_path: Path, wheel: Path, password: Secret
) -> None:
    small = UploadServer(max_bytes=100)
    try:
        twine = run_tool(twine_upload(small.url, password, wheel), tmp_path, password)
        uv = run_tool(uv_publish(small.url, password, wheel), tmp_path, password)
    finally:
        small.close()
    message = f"{wheel.name} is larger than the 100-byte upload limit"
    assert twine.returncode != 0, output(twine)
    assert message in " ".join(twine.stdout.split() + twine.stderr.split()), output(twine)
    assert uv.returncode != 0, output(uv)
    assert message in uv.stdout + uv.stderr, output(uv)
    assert not twine.leaked
    assert not uv.leaked
    assert small.received == []
