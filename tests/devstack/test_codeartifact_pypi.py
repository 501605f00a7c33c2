"""The CodeArtifact stand-in's PyPI data plane (devstack.codeartifact.pypi.DataPlane) through
werkzeug's test client, with a fake public index behind the external connection."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client, TestResponse

from devstack import simple
from devstack.codeartifact import model
from devstack.codeartifact.model import CodeArtifact, Domain, Principal
from devstack.codeartifact.pypi import DENIALS, DataPlane, credentials
from devstack.upstream import UpstreamError, UpstreamIndex
from devstack.wheels import build_wheel
from tests.devstack.conftest import ACCOUNT, NOBODY, PUBLISHER, READER, REGION
from tests.support.oidc import Secret

PUBLIC_URL = "http://public.invalid"
CHALLENGE = 'Bearer realm="acme/internal", Basic realm="acme/internal"'


class AuthHeaders(dict[str, str]):
    """Request headers carrying a token: their repr is redacted, so no report shows them."""

    def __repr__(self) -> str:
        return f"<headers: {', '.join(self)}>"


def basic(username: str, password: str) -> AuthHeaders:
    value = base64.b64encode(f"{username}:{password}".encode()).decode()
    return AuthHeaders(Authorization=f"Basic {value}")


class FakePublicIndex(UpstreamIndex):
    """The external connection's index: wheels by project, downloads counted, or failing."""

    def __init__(self, wheels: list[Path]) -> None:
        super().__init__(f"{PUBLIC_URL}/simple/")
        self.files = {path.name: path.read_bytes() for path in wheels}
        self.asked: list[str] = []
        self.downloads: list[str] = []
        self.broken = False

    def project(self, name: str) -> list[simple.Distribution] | None:
        self.asked.append(name)
        if self.broken:
            raise UpstreamError(f"upstream {self.url} failed for {name!r}: 503")
        found = [
            simple.Distribution(
                filename=filename,
                url=f"{PUBLIC_URL}/files/{filename}",
                sha256=hashlib.sha256(content).hexdigest(),
                size=len(content),
                requires_python=">=3.8",
            )
            for filename, content in sorted(self.files.items())
            if simple.version_of(filename)[0] == name
        ]
        return found or None

    def download(self, url: str, sha256: str) -> bytes:
        self.downloads.append(url)
        content = self.files[url.rsplit("/", 1)[1]]
        assert hashlib.sha256(content).hexdigest() == sha256
        return content


@dataclass
class Index:
    """A stand-in with acme/pypi-store (public:pypi) and acme/internal (upstream pypi-store),
    package group /pypi//acme~ (no public packages; publish only to internal), served by a
    DataPlane."""

    state: CodeArtifact
    domain: Domain
    public: FakePublicIndex
    client: Client
    wheels: Path
    tokens: dict[str, Secret] = field(default_factory=dict)

    def auth(self, principal: Principal, duration: int = 900) -> AuthHeaders:
        token, _ = self.state.issue_token(self.domain, principal, duration, None)
        secret = Secret(token)
        self.tokens[principal.arn] = secret
        return basic("aws", secret)

    def get(self, path: str, headers: AuthHeaders, accept: str | None = None) -> TestResponse:
        if accept is not None:
            headers = AuthHeaders(headers, Accept=accept)
        return self.client.get(path, headers=headers)

    def upload(
        self, repository: str, wheel: Path, headers: AuthHeaders, **form: str
    ) -> TestResponse:
        name, version = simple.version_of(wheel.name)
        content = wheel.read_bytes()
        data: dict[str, Any] = {
            ":action": "file_upload",
            "protocol_version": "1",
            "name": str(name),
            "version": str(version),
            "filetype": "bdist_wheel",
            "pyversion": "py3",
            "metadata_version": "2.1",
            "sha256_digest": hashlib.sha256(content).hexdigest(),
            **form,
            "content": (io.BytesIO(content), wheel.name),
        }
        return self.client.post(f"/pypi/{repository}/", data=data, headers=headers)


@pytest.fixture
def index(tmp_path: Path) -> Index:
    public_dir = tmp_path / "public"
    wheels = [
        build_wheel(public_dir, "tinyjson", "1.0.0", requires_python=">=3.8"),
        build_wheel(public_dir, "tinyjson", "1.1.0", requires_python=">=3.8"),
        build_wheel(public_dir, "acme-secrets", "9.9.9", body="PLANTED = True"),
    ]
    state = CodeArtifact(REGION)
    domain = state.create_domain("acme", ACCOUNT, None)
    store = state.create_repository(domain, "pypi-store", "", [])
    state.associate_external_connection(store, model.PYPI_CONNECTION)
    state.create_repository(domain, "internal", "", ["pypi-store"])
    group = state.create_package_group(domain, "/pypi//acme~", "", "")
    state.update_origin_configuration(
        group,
        {"EXTERNAL_UPSTREAM": "BLOCK", "PUBLISH": "ALLOW_SPECIFIC_REPOSITORIES"},
        [("internal", "PUBLISH")],
        [],
    )
    public = FakePublicIndex(wheels)
    return Index(state, domain, public, Client(DataPlane(state, public)), tmp_path / "dist")


# --- credentials -------------------------------------------------------------------------------


def encoded(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"Basic {encoded('aws:tok')}", ("aws", "tok")),
        (f"basic {encoded('aws:tok')}", ("aws", "tok")),  # the scheme is case-insensitive
        (f"Basic  {encoded('aws:tok')} ", ("aws", "tok")),
        (f"Basic {encoded('aws:a:b')}", ("aws", "a:b")),  # only the first colon splits
        (f"Basic {encoded('aws:')}", ("aws", "")),
        (f"Basic {encoded('aws')}", None),  # no colon
        (f"Bearer {encoded('aws:tok')}", None),
        ("Basic", None),
        ("Basic !!!not-base64", None),
        ("Basic " + base64.b64encode(b"aws:\xff\xfe").decode(), None),  # not UTF-8
        ("", None),
        (None, None),
    ],
)
def test_credentials(header: str | None, expected: tuple[str, str] | None) -> None:
    assert credentials(header) == expected


# --- who may read --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["missing", "bearer", "username", "unknown", "expired"])
def test_unusable_credentials_get_401_with_both_challenges(index: Index, case: str) -> None:
    headers = index.auth(READER)
    token = index.tokens[READER.arn]
    if case == "missing":
        headers = AuthHeaders()
    elif case == "bearer":
        headers = AuthHeaders(Authorization=f"Bearer {token}")
    elif case == "username":
        headers = basic("__token__", token)
    elif case == "unknown":
        headers = basic("aws", Secret(token[:-4] + "AAAA"))
    elif case == "expired":
        index.state.expire(token)

    response = index.get("/pypi/internal/simple/tinyjson/", headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == CHALLENGE
    reason = {"bearer": "missing"}.get(case, case)
    assert response.get_data(as_text=True).strip() == DENIALS[reason].message


def test_the_same_token_works_until_it_expires(index: Index) -> None:
    headers = index.auth(READER)
    assert index.get("/pypi/internal/simple/tinyjson/", headers).status_code == 200
    index.state.expire(index.tokens[READER.arn])
    assert index.get("/pypi/internal/simple/tinyjson/", headers).status_code == 401


def test_a_principal_without_read_gets_403(index: Index) -> None:
    response = index.get("/pypi/internal/simple/tinyjson/", index.auth(NOBODY))
    assert response.status_code == 403
    assert "WWW-Authenticate" not in response.headers
    text = response.get_data(as_text=True)
    assert "codeartifact:ReadFromRepository" in text
    assert "repository/acme/internal" in text
    assert index.public.asked == []  # refused before anything is looked up


def test_read_permission_is_checked_on_the_repository(index: Index) -> None:
    @dataclass(frozen=True)
    class StoreOnly:
        arn: str = f"arn:aws:sts::{ACCOUNT}:assumed-role/StoreReader/s"
        account: str = ACCOUNT

        def allows(self, action: str, resource: str, context: dict[str, str] | None = None) -> bool:
            return resource.endswith(":repository/acme/pypi-store")

    headers = index.auth(StoreOnly())
    assert index.get("/pypi/pypi-store/simple/tinyjson/", headers).status_code == 200
    assert index.get("/pypi/internal/simple/tinyjson/", headers).status_code == 403


@pytest.mark.parametrize(
    "path",
    [
        "/pypi/nowhere/simple/tinyjson/",  # unknown repository
        "/pypi/internal/simple/no-such-project/",
        "/pypi/internal/simple/acme-secrets/",  # the public index has it; the group blocks it
        "/pypi/internal/simple/tinyjson/9.9.9/tinyjson-9.9.9-py3-none-any.whl",
        "/pypi/internal/simple/tinyjson/1.0.0/tinyjson-1.1.0-py3-none-any.whl",  # wrong version
        "/pypi/internal/json/tinyjson/",
        "/elsewhere/",
    ],
)
def test_not_found(index: Index, path: str) -> None:
    assert index.get(path, index.auth(READER)).status_code == 404


def test_blocked_names_never_reach_the_public_index(index: Index) -> None:
    headers = index.auth(READER)
    index.get("/pypi/internal/simple/acme-secrets/", headers)
    planted = "acme-secrets/9.9.9/acme_secrets-9.9.9-py3-none-any.whl"
    index.get(f"/pypi/internal/simple/{planted}", headers)
    assert index.public.asked == []
    assert index.public.downloads == []


# --- pages ---------------------------------------------------------------------------------------


def test_json_project_page(index: Index) -> None:
    response = index.get("/pypi/internal/simple/TinyJSON/", index.auth(READER), accept=simple.JSON)
    assert response.status_code == 200
    assert response.mimetype == simple.JSON
    assert response.headers["Vary"] == "Accept"
    page = json.loads(response.data)
    assert page["name"] == "tinyjson"
    assert page["meta"]["api-version"] == "1.1"
    assert page["versions"] == ["1.0.0", "1.1.0"]
    files = {entry["filename"]: entry for entry in page["files"]}
    entry = files["tinyjson-1.0.0-py3-none-any.whl"]
    content = index.public.files["tinyjson-1.0.0-py3-none-any.whl"]
    assert entry["url"] == "1.0.0/tinyjson-1.0.0-py3-none-any.whl"
    assert entry["hashes"] == {"sha256": hashlib.sha256(content).hexdigest()}
    assert (entry["size"], entry["requires-python"]) == (len(content), ">=3.8")
    assert index.public.asked == ["tinyjson"]  # normalized before asking


@pytest.mark.parametrize("accept", [None, "text/html", simple.HTML, "*/*"])
def test_html_project_page(index: Index, accept: str | None) -> None:
    response = index.get("/pypi/internal/simple/tinyjson/", index.auth(READER), accept=accept)
    assert response.status_code == 200
    assert response.mimetype in ("text/html", simple.HTML)
    assert response.headers["Vary"] == "Accept"
    sha256 = hashlib.sha256(index.public.files["tinyjson-1.1.0-py3-none-any.whl"]).hexdigest()
    text = response.get_data(as_text=True)
    assert f'href="1.1.0/tinyjson-1.1.0-py3-none-any.whl#sha256={sha256}"' in text
    assert 'data-requires-python="&gt;=3.8"' in text


@pytest.mark.parametrize("path", ["/pypi/internal/simple/", "/pypi/internal/simple/tinyjson/"])
def test_unacceptable_accept_is_406(index: Index, path: str) -> None:
    response = index.get(path, index.auth(READER), accept="application/xml")
    assert response.status_code == 406
    json_refused = index.get(path, index.auth(READER), accept=f"{simple.JSON};q=0, text/plain")
    assert json_refused.status_code == 406


def test_index_page_lists_the_chain_s_packages(index: Index) -> None:
    publisher = index.auth(PUBLISHER)
    wheel = build_wheel(index.wheels, "acme-lib", "1.0.0")
    assert index.upload("internal", wheel, publisher).status_code == 200
    tinyjson = "/pypi/internal/simple/tinyjson/1.0.0/tinyjson-1.0.0-py3-none-any.whl"
    assert index.get(tinyjson, publisher).status_code == 200  # now held in pypi-store

    response = index.get("/pypi/internal/simple/", publisher, accept=simple.JSON)
    assert response.status_code == 200
    assert json.loads(response.data)["projects"] == [{"name": "acme-lib"}, {"name": "tinyjson"}]
    store = index.get("/pypi/pypi-store/simple/", publisher, accept=simple.JSON)
    assert json.loads(store.data)["projects"] == [{"name": "tinyjson"}]


def test_download_fetches_once_and_keeps_the_file_in_the_store(index: Index) -> None:
    headers = index.auth(READER)
    path = "/pypi/internal/simple/tinyjson/1.1.0/tinyjson-1.1.0-py3-none-any.whl"
    first = index.get(path, headers)
    assert first.status_code == 200
    assert first.data == index.public.files["tinyjson-1.1.0-py3-none-any.whl"]
    assert first.mimetype == "application/octet-stream"
    assert index.public.downloads == [f"{PUBLIC_URL}/files/tinyjson-1.1.0-py3-none-any.whl"]
    store = index.domain.repositories["pypi-store"]
    assert "tinyjson-1.1.0-py3-none-any.whl" in store.packages["tinyjson"]["1.1.0"].assets
    assert "tinyjson" not in index.domain.repositories["internal"].packages

    second = index.get(path, headers)
    assert second.data == first.data
    assert len(index.public.downloads) == 1  # served from pypi-store now


def test_a_failing_public_index_is_a_bad_gateway(index: Index) -> None:
    index.public.broken = True
    response = index.get("/pypi/internal/simple/tinyjson/", index.auth(READER))
    assert response.status_code == 502


# --- uploads -------------------------------------------------------------------------------------


def test_upload_needs_publish_permission(index: Index) -> None:
    wheel = build_wheel(index.wheels, "acme-lib", "1.0.0")
    refused = index.upload("internal", wheel, index.auth(READER))
    assert refused.status_code == 403
    assert "codeartifact:PublishPackageVersion" in refused.get_data(as_text=True)
    assert "package/acme/internal/pypi//acme-lib" in refused.get_data(as_text=True)
    assert index.domain.repositories["internal"].packages == {}

    missing = index.upload("internal", wheel, AuthHeaders())
    assert missing.status_code == 401

    accepted = index.upload("internal", wheel, index.auth(PUBLISHER))
    assert accepted.status_code == 200
    assert wheel.name in accepted.get_data(as_text=True)
    stored = index.domain.repositories["internal"].packages["acme-lib"]["1.0.0"]
    assert stored.assets[wheel.name].content == wheel.read_bytes()

    page = index.get("/pypi/internal/simple/acme-lib/", index.auth(READER), accept=simple.JSON)
    assert [f["filename"] for f in json.loads(page.data)["files"]] == [wheel.name]
    download = index.get(f"/pypi/internal/simple/acme-lib/1.0.0/{wheel.name}", index.auth(READER))
    assert download.data == wheel.read_bytes()


def test_upload_again_same_bytes_then_different_bytes(index: Index) -> None:
    headers = index.auth(PUBLISHER)
    wheel = build_wheel(index.wheels, "acme-lib", "1.0.0")
    assert index.upload("internal", wheel, headers).status_code == 200
    assert index.upload("internal", wheel, headers).status_code == 200
    changed = build_wheel(index.wheels / "changed", "acme-lib", "1.0.0", body="CHANGED = True")
    assert changed.name == wheel.name
    conflict = index.upload("internal", changed, headers)
    assert conflict.status_code == 409
    assert "already exists" in conflict.get_data(as_text=True)


def test_upload_where_the_package_group_forbids_it(index: Index) -> None:
    wheel = build_wheel(index.wheels, "acme-lib", "1.0.0")
    response = index.upload("pypi-store", wheel, index.auth(PUBLISHER))
    assert response.status_code == 403
    assert "/pypi//acme~" in response.get_data(as_text=True)
    other = build_wheel(index.wheels, "leftpad", "1.0.0")  # not in the group: anywhere
    assert index.upload("pypi-store", other, index.auth(PUBLISHER)).status_code == 200


def test_upload_errors_are_in_the_status_line(index: Index) -> None:
    wheel = build_wheel(index.wheels, "acme-lib", "1.0.0")
    bad_digest = index.upload("internal", wheel, index.auth(PUBLISHER), sha256_digest="0" * 64)
    assert bad_digest.status_code == 400
    assert bad_digest.status.startswith("400 acme_lib-1.0.0-py3-none-any.whl: sha256_digest")
    assert bad_digest.status.removeprefix("400 ") in bad_digest.get_data(as_text=True)

    wrong_action = index.upload("internal", wheel, index.auth(PUBLISHER), **{":action": "remove"})
    assert wrong_action.status == "400 unsupported :action 'remove': only file_upload is"
    assert index.domain.repositories["internal"].packages == {}
