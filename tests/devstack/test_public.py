"""devstack.public over HTTP, read by pypi-simple, devstack.upstream, pip and uv."""

from __future__ import annotations

import hashlib
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from pypi_simple import ACCEPT_HTML_ONLY, ACCEPT_JSON_ONLY, PyPISimple

from devstack.public import PLANTED_PROJECT, PublicIndex, build_public_index
from devstack.simple import normalize
from devstack.upstream import HashMismatch, OffOrigin, UpstreamError, UpstreamIndex
from tests.devstack.test_wheels import VENV_BIN, output, run_tool

WHEELS = [
    "acme_secrets-9.9.9-py3-none-any.whl",
    "leftpad_py-0.1.0-py3-none-any.whl",
    "tinyjson-1.0.0-py3-none-any.whl",
    "tinyjson-1.1.0-py3-none-any.whl",
]


@pytest.fixture(scope="module")
def public(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PublicIndex]:
    directory = tmp_path_factory.mktemp("public")
    build_public_index(directory)
    (directory / "notes.txt").write_text("not a distribution\n")
    (directory.parent / "outside-1.0-py3-none-any.whl").write_bytes(b"outside the index")
    with PublicIndex(directory) as index:
        yield index


def test_build_public_index(tmp_path: Path) -> None:
    built = build_public_index(tmp_path)
    assert sorted(path.name for path in built) == WHEELS
    assert sorted(path.name for path in tmp_path.iterdir()) == WHEELS
    assert normalize(PLANTED_PROJECT).startswith("acme-")
    planted = tmp_path / "acme_secrets-9.9.9-py3-none-any.whl"
    with zipfile.ZipFile(planted) as archive:
        source = archive.read("acme_secrets/__init__.py").decode()
    assert "PLANTED = True" in source
    assert "DISTRIBUTION = 'acme-secrets'" in source


def test_urls(public: PublicIndex) -> None:
    assert public.url.startswith("http://127.0.0.1:")
    assert public.simple_url == public.url + "/simple/"


@pytest.mark.parametrize("accept", [ACCEPT_HTML_ONLY, ACCEPT_JSON_ONLY])
def test_index_read_by_pypi_simple(public: PublicIndex, accept: str) -> None:
    with PyPISimple(public.simple_url, accept=accept) as client:
        page = client.get_index_page(timeout=5)
    assert page.projects == ["acme-secrets", "leftpad-py", "tinyjson"]
    assert page.repository_version == "1.1"


@pytest.mark.parametrize("accept", [ACCEPT_HTML_ONLY, ACCEPT_JSON_ONLY])
def test_project_read_by_pypi_simple(public: PublicIndex, accept: str) -> None:
    with PyPISimple(public.simple_url, accept=accept) as client:
        page = client.get_project_page("tinyjson", timeout=5)
        assert [p.filename for p in page.packages] == WHEELS[2:]
        for package in page.packages:
            assert package.url == f"{public.url}/files/{package.filename}"
            content = requests.get(package.url, timeout=5).content
            assert package.digests == {"sha256": hashlib.sha256(content).hexdigest()}
            assert content[:2] == b"PK"
            client.download_package(package, Path("/dev/null"), timeout=5)  # verifies the hash
    if accept == ACCEPT_JSON_ONLY:
        assert page.versions == ["1.0.0", "1.1.0"]


def test_negotiation_and_vary(public: PublicIndex) -> None:
    url = public.simple_url + "tinyjson/"
    html = requests.get(url, timeout=5)
    assert html.headers["Content-Type"] == "text/html; charset=utf-8"
    assert html.headers["Vary"] == "Accept"
    json_page = requests.get(url, headers={"Accept": ACCEPT_JSON_ONLY}, timeout=5)
    assert json_page.headers["Content-Type"] == "application/vnd.pypi.simple.v1+json"
    assert json_page.json()["name"] == "tinyjson"
    refused = requests.get(url, headers={"Accept": "image/png"}, timeout=5)
    assert refused.status_code == 406
    assert (
        requests.get(public.simple_url, headers={"Accept": "text/html;q=0"}, timeout=5).status_code
        == 406
    )


@pytest.mark.parametrize("name", ["TinyJSON", "tiny_json", "Leftpad.Py"])
def test_non_normalized_name_redirects(public: PublicIndex, name: str) -> None:
    response = requests.get(f"{public.simple_url}{name}/", allow_redirects=False, timeout=5)
    assert response.status_code == 301
    assert response.headers["Location"] == f"/simple/{normalize(name)}/"


def test_redirect_is_followed_by_clients(public: PublicIndex) -> None:
    response = requests.get(f"{public.simple_url}TinyJSON/", timeout=5)
    assert (response.status_code, response.url) == (200, f"{public.simple_url}tinyjson/")


@pytest.mark.parametrize(
    "path",
    [
        "/simple/no-such-project/",
        "/files/no-such-file-1.0-py3-none-any.whl",
        "/files/notes.txt",
        "/files/..%2Foutside-1.0-py3-none-any.whl",
        "/files/../outside-1.0-py3-none-any.whl",
        "/files/%2E%2E/outside-1.0-py3-none-any.whl",
        "/files/",
        "/elsewhere",
    ],
)
def test_not_found(public: PublicIndex, path: str) -> None:
    response = requests.get(public.url + path, timeout=5)
    assert response.status_code == 404
    assert b"outside the index" not in response.content


def test_only_get(public: PublicIndex) -> None:
    assert requests.post(public.simple_url, timeout=5).status_code == 405
    assert requests.head(public.simple_url + "tinyjson/", timeout=5).status_code == 200


def test_stop_and_restart(tmp_path: Path) -> None:
    build_public_index(tmp_path)
    index = PublicIndex(tmp_path).start()
    url = index.simple_url
    assert requests.get(url, timeout=5).status_code == 200
    index.stop()
    index.stop()
    with pytest.raises(RuntimeError, match="not running"):
        _ = index.url
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=5)


# --- UpstreamIndex ----------------------------------------------------------------------------


def test_upstream_reads_a_project(public: PublicIndex) -> None:
    with UpstreamIndex(public.simple_url) as upstream:
        distributions = upstream.project("TinyJSON")
        assert distributions is not None
        assert [d.filename for d in distributions] == WHEELS[2:]
        for distribution in distributions:
            assert distribution.url == f"{public.url}/files/{distribution.filename}"
            content = upstream.download(distribution.url, distribution.sha256)
            assert hashlib.sha256(content).hexdigest() == distribution.sha256
            assert len(content) == distribution.size
            assert (distribution.requires_python, distribution.yanked) == (None, False)


def test_upstream_unknown_project_is_none(public: PublicIndex) -> None:
    with UpstreamIndex(public.simple_url) as upstream:
        assert upstream.project("no-such-project") is None


def test_upstream_rejects_a_tampered_file(public: PublicIndex) -> None:
    with UpstreamIndex(public.simple_url) as upstream:
        distributions = upstream.project("tinyjson")
        assert distributions
        tampered = "0" * 64
        with pytest.raises(HashMismatch, match="the index lists 0000"):
            upstream.download(distributions[0].url, tampered)
        with pytest.raises(UpstreamError, match="404"):
            upstream.download(f"{public.url}/files/missing-1.0-py3-none-any.whl", tampered)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/files/tinyjson-1.0.0-py3-none-any.whl",
        "https://127.0.0.1:{port}/files/tinyjson-1.0.0-py3-none-any.whl",
        "http://127.0.0.1:1/files/tinyjson-1.0.0-py3-none-any.whl",
        "http://localhost:{port}/files/tinyjson-1.0.0-py3-none-any.whl",
    ],
)
def test_upstream_never_leaves_its_origin(public: PublicIndex, url: str) -> None:
    port = public.url.rsplit(":", 1)[1]
    with UpstreamIndex(public.simple_url) as upstream, pytest.raises(OffOrigin):
        upstream.download(url.format(port=port), "0" * 64)


def test_upstream_unreachable(tmp_path: Path) -> None:
    build_public_index(tmp_path)
    with PublicIndex(tmp_path) as index:
        url = index.simple_url
    with UpstreamIndex(url, timeout=2) as upstream, pytest.raises(UpstreamError, match="upstream"):
        upstream.project("tinyjson")


# --- pip and uv -------------------------------------------------------------------------------


def test_pip_downloads_the_newest_tinyjson(tmp_path: Path, public: PublicIndex) -> None:
    dest = tmp_path / "downloads"
    pip = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--isolated",
        "--no-deps",
        "--index-url",
        public.simple_url,
        "--dest",
        str(dest),
        "tinyjson",
    ]
    result = run_tool(pip, tmp_path)
    assert result.returncode == 0, output(result)
    assert [path.name for path in dest.iterdir()] == ["tinyjson-1.1.0-py3-none-any.whl"]


def test_uv_installs_tinyjson(tmp_path: Path, public: PublicIndex) -> None:
    target = tmp_path / "target"
    uv = [
        str(VENV_BIN / "uv"),
        "pip",
        "install",
        "--python",
        sys.executable,
        "--target",
        str(target),
        "--index-url",
        public.simple_url,
        "tinyjson==1.0.0",
    ]
    result = run_tool(uv, tmp_path)
    assert result.returncode == 0, output(result)
    assert (target / "tinyjson" / "__init__.py").read_text().count("__version__ = '1.0.0'") == 1
