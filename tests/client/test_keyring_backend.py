"""cabroker.keyring_backend: ("aws", token) for our hosts, None (cheaply) for every other; and
pip and uv, run for real, authenticating to a local index through it."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from keyring.credentials import SimpleCredential
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from cabroker import keyring_backend
from cabroker.broker import Grant
from cabroker.cache import FileStore, TokenCache, cache_dir
from cabroker.identity import binding
from cabroker.keyring_backend import CabrokerKeyring, service_url
from devstack.public import PublicIndex
from devstack.wheels import build_wheel
from tests.client.test_cache import BROKER, HOST, key_of, make_grant
from tests.devstack.test_wheels import tool_env
from tests.support.oidc import forge

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX cache (flock)")

VENV_BIN = Path(sys.executable).parent
INDEX = f"https://{HOST}/pypi/internal/simple/"


SCOPE = f"https://{HOST}:443/pypi/internal/"


@dataclass
class Fetcher:
    """A fetcher that records the URLs asked for and answers ``grant`` (or raises ``error``)."""

    grant: Grant | None = None
    error: Exception | None = None
    urls: list[str] = field(default_factory=list)

    def __call__(self, url: str) -> Grant | None:
        self.urls.append(url)
        if self.error is not None:
            raise self.error
        return self.grant


@dataclass
class Scopes:
    """The scopes file, as the cache left it; counts how often it was read."""

    scopes: frozenset[str] = frozenset({SCOPE})
    reads: int = 0

    def __call__(self) -> frozenset[str]:
        self.reads += 1
        return self.scopes


@pytest.fixture
def fetcher() -> Fetcher:
    return Fetcher(grant=make_grant())


@pytest.fixture
def scopes() -> Scopes:
    return Scopes()


@pytest.fixture
def backend(scopes: Scopes, fetcher: Fetcher) -> CabrokerKeyring:
    return CabrokerKeyring(scopes=scopes, fetcher=fetcher)


@pytest.mark.parametrize(
    ("service", "url"),
    [
        pytest.param(INDEX, INDEX, id="pip: the index URL"),
        pytest.param(f"https://aws@{HOST}/pypi/x/", f"https://{HOST}/pypi/x/", id="a user"),
        pytest.param("http://[::1]:8080/simple/", "http://[::1]:8080/simple/", id="IPv6 loopback"),
        pytest.param("http://127.0.0.1:9/simple/", "http://127.0.0.1:9/simple/", id="loopback"),
        pytest.param(f"http://{HOST}/pypi/internal/simple/", None, id="cleartext http"),
        pytest.param("pypi.org", None, id="pip: a bare netloc"),
        pytest.param(f"aws@{HOST}:443", None, id="a netloc with a user and port"),
        pytest.param("", None, id="empty"),
        pytest.param("https://", None, id="no host"),
        pytest.param("http://[::1/simple/", None, id="not a URL"),
        pytest.param(f"https://{HOST}/pypi/internal/\nsimple/", None, id="a newline"),
    ],
)
def test_service_url(service: str, url: str | None) -> None:
    assert service_url(service) == url


def test_a_foreign_url_is_none_without_asking(backend: CabrokerKeyring, fetcher: Fetcher) -> None:
    for service in ("https://pypi.org/simple/", "pypi.org", "https://files.example/x"):
        assert backend.get_password(service, "aws") is None
        assert backend.get_credential(service, None) is None
    assert fetcher.urls == []


@pytest.mark.parametrize(
    "service",
    [
        pytest.param(f"http://{HOST}/pypi/internal/simple/", id="our host over http"),
        pytest.param(f"https://{HOST}:8443/pypi/internal/simple/", id="our host, another port"),
        pytest.param(f"https://{HOST}/pypi/restricted/simple/", id="another repository"),
        pytest.param(f"https://{HOST}/pypi/internal-2/simple/", id="a longer repository name"),
        pytest.param(f"https://{HOST}/", id="the host's root"),
        pytest.param(HOST, id="the bare host name (pip's second try)"),
        pytest.param(f"{HOST}:443", id="the host and port"),
        pytest.param(f"https://{HOST}/pypi/internal/../restricted/simple/", id="climbing out"),
    ],
)
def test_only_the_exact_endpoint_is_ours(
    backend: CabrokerKeyring, fetcher: Fetcher, service: str
) -> None:
    assert backend.get_password(service, "aws") is None
    assert backend.get_credential(service, None) is None
    assert fetcher.urls == []


@pytest.mark.parametrize("scopes_file", [None, "https://codeartifact.example:443/pypi/x/\n"])
def test_a_foreign_url_imports_nothing_heavy(tmp_path: Path, scopes_file: str | None) -> None:
    if scopes_file is not None:
        (tmp_path / "cache" / "cabroker").mkdir(parents=True)
        (tmp_path / "cache" / "cabroker" / "scopes").write_text(scopes_file)
    code = (
        "import sys, cabroker.keyring_backend as k\n"
        "answer = k.CabrokerKeyring().get_password('https://pypi.org/simple/', None)\n"
        "print(answer, 'requests' in sys.modules, 'cabroker.api' in sys.modules,\n"
        "      'cabroker.identity' in sys.modules, 'id' in sys.modules)\n"
    )
    env = tool_env(tmp_path) | {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    ran = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert ran.stdout.split() == ["None", "False", "False", "False", "False"], ran.stderr


@pytest.mark.parametrize("username", [None, "", "aws"], ids=["none", "empty", "aws"])
def test_our_endpoint_gets_the_fetchers_token(
    backend: CabrokerKeyring, fetcher: Fetcher, username: str | None
) -> None:
    assert fetcher.grant is not None
    services = (INDEX, f"https://aws@{HOST}/pypi/internal/", f"{INDEX}tinyjson/")
    for service in services:
        credential = backend.get_credential(service, username)
        assert isinstance(credential, SimpleCredential)
        assert credential.username == "aws"
        assert credential.password == fetcher.grant.token
        assert backend.get_password(service, username or "aws") == fetcher.grant.token
    assert fetcher.urls[0] == INDEX  # without the user name
    assert len(fetcher.urls) == 2 * len(services)


def test_another_username_is_not_ours(backend: CabrokerKeyring, fetcher: Fetcher) -> None:
    assert backend.get_password(INDEX, "alice") is None
    assert backend.get_credential(INDEX, "__token__") is None
    assert fetcher.urls == []


@pytest.mark.parametrize(
    ("answer", "error", "expected"),
    [
        pytest.param("fresh", None, True, id="the fetcher's grant"),
        pytest.param(None, None, False, id="none: not ours to answer"),
        pytest.param(None, RuntimeError("x"), False, id="the fetcher fails: none, quietly"),
        pytest.param("expired", None, False, id="an expired grant is not used"),
        pytest.param("other host", None, False, id="a grant for another endpoint is not used"),
        pytest.param("other repository", None, False, id="a grant for another repository"),
    ],
)
def test_fetcher_outcomes(
    backend: CabrokerKeyring,
    fetcher: Fetcher,
    answer: str | None,
    error: Exception | None,
    expected: bool,
) -> None:
    answers = {
        "fresh": make_grant(),
        "expired": make_grant(-1),
        "other host": make_grant(host="other.example"),
        "other repository": make_grant(repository="restricted"),
    }
    fetcher.grant = answers[answer] if answer else None
    fetcher.error = error
    token = backend.get_password(INDEX, "aws")
    assert token == (fetcher.grant.token if expected and fetcher.grant else None)
    assert fetcher.urls == [INDEX]


def test_set_and_delete_are_not_implemented(backend: CabrokerKeyring) -> None:
    with pytest.raises(NotImplementedError, match="cabroker login"):
        backend.set_password(INDEX, "aws", "x")
    with pytest.raises(NotImplementedError, match="cabroker logout"):
        backend.delete_password(INDEX, "aws")


def test_the_entry_point_and_priority() -> None:
    from importlib.metadata import entry_points

    (entry,) = entry_points(group="keyring.backends", name="cabroker")
    assert entry.load() is keyring_backend
    assert CabrokerKeyring.priority == 9
    assert CabrokerKeyring.viable


def test_the_default_fetcher(monkeypatch: pytest.MonkeyPatch) -> None:
    api = types.ModuleType("cabroker.api")
    monkeypatch.setitem(sys.modules, "cabroker.api", api)
    assert keyring_backend.grant_for_url(INDEX) is None  # no grant_for_url there yet
    grant = make_grant()
    asked: list[str] = []

    def grant_for_url(url: str) -> Grant:
        asked.append(url)
        return grant

    api.grant_for_url = grant_for_url  # type: ignore[attr-defined]
    assert keyring_backend.grant_for_url(INDEX) is grant
    assert asked == [INDEX]


def test_the_default_scopes_are_the_caches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fetcher: Fetcher
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CABROKER_TOKEN_STORE", "file")
    backend = CabrokerKeyring(fetcher=fetcher)
    assert backend.get_password(INDEX, "aws") is None  # nothing cached: not even asked
    assert fetcher.urls == []
    TokenCache(FileStore(cache_dir() / "tokens.json")).put(key_of(BROKER), make_grant())
    assert fetcher.grant is not None
    assert backend.get_password(INDEX, "aws") == fetcher.grant.token


# --- pip and uv, for real -------------------------------------------------------------------


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@dataclass
class AuthIndex:
    """The devstack's public index, behind HTTP Basic auth for ``aws:<token>``."""

    app: PublicIndex
    token: str
    authorized: int = 0
    refused: int = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        expected = "Basic " + base64.b64encode(f"aws:{self.token}".encode()).decode()
        if environ.get("HTTP_AUTHORIZATION") == expected:
            self.authorized += 1
            return self.app(environ, start_response)
        self.refused += 1
        start_response(
            "401 Unauthorized",
            [("WWW-Authenticate", 'Basic realm="codeartifact"'), ("Content-Length", "0")],
        )
        return [b""]


@dataclass
class Served:
    index: AuthIndex
    port: int
    home: Path
    token: str
    id_token: str  # the identity the cached grant was minted for

    @property
    def url_with_user(self) -> str:
        return f"http://aws@127.0.0.1:{self.port}/simple/"


def id_token_of(sub: str) -> tuple[str, str]:
    """An ID token (unsigned: the client does not verify) for the broker, and its binding."""
    claims = {"iss": "https://idp.example", "aud": BROKER, "sub": sub, "exp": time.time() + 3600}
    return forge({"alg": "RS256", "typ": "JWT"}, claims), binding(claims)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A one-wheel index needing ``aws:<token>``, and a home whose token cache holds a grant
    for it (and nothing else anywhere)."""
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "leftpad-py", "0.1.0")
    grant_token = make_grant().token
    index = AuthIndex(PublicIndex(wheels), grant_token)
    server: BaseWSGIServer = make_server(
        "127.0.0.1", 0, index, threaded=True, request_handler=_Quiet
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    home = tmp_path / "home"
    url = f"http://127.0.0.1:{server.server_port}/"
    grant = replace(make_grant(), token=grant_token, index_url=url + "simple/", upload_url=url)
    env = tool_env(home)
    id_token, alice = id_token_of("alice")
    cache = TokenCache(FileStore(cache_dir(env) / "tokens.json"))
    cache.put(key_of(BROKER, identity=alice, source="env"), grant)
    try:
        yield Served(index, server.server_port, home, grant_token, id_token)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def keyring_env(home: Path, id_token: str) -> dict[str, str]:
    """``tool_env`` with keyring left to find its backends (ours among them), the venv's
    ``keyring`` command on PATH (uv's subprocess provider runs it), and an identity."""
    env = tool_env(home)
    del env["PYTHON_KEYRING_BACKEND"]
    env.update(
        PATH=str(VENV_BIN) + os.pathsep + env.get("PATH", ""),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        CABROKER_TOKEN_STORE="file",
        UV_KEYRING_PROVIDER="subprocess",
        CABROKER_ID_TOKEN=id_token,
    )
    return env


def run_with_keyring(args: list[str], served: Served, id_token: str | None = None) -> str:
    """Run a tool with the keyring backend available, as the identity ``id_token`` (default:
    the one the grant was minted for); return its exit code and output with the token blanked
    out, after checking the token was never given to it nor printed."""
    env = keyring_env(served.home, id_token or served.id_token)
    given = any(served.token in value for value in [*args, *env.values()])
    assert not given, "the token must not be on the command line or in the environment"
    ran = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=False)
    said = ran.stdout + ran.stderr
    printed = served.token in said
    assert not printed, "the tool printed the token"
    return f"exit {ran.returncode}\n" + said.replace(served.token, "<token>")


def files_holding(token: str, directory: Path, allowed: Path) -> list[Path]:
    return [
        path
        for path in directory.rglob("*")
        if path.is_file() and path != allowed and token.encode() in path.read_bytes()
    ]


def test_pip_downloads_with_the_token_from_the_keyring_backend(
    served: Served, tmp_path: Path
) -> None:
    dest = tmp_path / "downloads"
    pip = [str(VENV_BIN / "python"), "-m", "pip", "download", "--no-deps", "--no-cache-dir"]
    pip += ["--keyring-provider", "import", "--index-url", served.url_with_user]
    pip += ["-d", str(dest), "leftpad-py"]
    said = run_with_keyring(pip, served)
    assert said.startswith("exit 0\n"), said
    assert [path.name for path in dest.iterdir()] == ["leftpad_py-0.1.0-py3-none-any.whl"]
    assert served.index.refused >= 1, "pip first asks without credentials"
    assert served.index.authorized >= 2, "the project page and the wheel, with the token"
    tokens = cache_dir(tool_env(served.home)) / "tokens.json"
    assert files_holding(served.token, tmp_path, allowed=tokens) == []


def test_uv_installs_with_the_token_from_the_keyring_command(
    served: Served, tmp_path: Path
) -> None:
    target = tmp_path / "target"
    uv = [str(VENV_BIN / "uv"), "pip", "install", "--python", str(VENV_BIN / "python")]
    uv += ["--target", str(target), "--no-deps", "--keyring-provider", "subprocess"]
    uv += ["--index-url", served.url_with_user, "leftpad-py"]
    said = run_with_keyring(uv, served)
    assert said.startswith("exit 0\n"), said
    assert (target / "leftpad_py" / "__init__.py").is_file()
    assert served.index.authorized >= 2
    tokens = cache_dir(tool_env(served.home)) / "tokens.json"
    assert files_holding(served.token, tmp_path, allowed=tokens) == []


def test_pip_as_another_identity_gets_no_token(served: Served, tmp_path: Path) -> None:
    """A later job on the same runner, with another identity, never gets the cached grant."""
    bob, _ = id_token_of("bob")
    pip = [str(VENV_BIN / "python"), "-m", "pip", "download", "--no-deps", "--no-cache-dir"]
    pip += ["--keyring-provider", "import", "--index-url", served.url_with_user]
    pip += ["-d", str(tmp_path / "downloads"), "leftpad-py"]
    said = run_with_keyring(pip, served, id_token=bob)
    assert not said.startswith("exit 0\n"), said
    assert served.index.authorized == 0
