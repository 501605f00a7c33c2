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
from cabroker.cache import CacheKey, FileStore, RawEntries, TokenCache, cache_dir
from cabroker.keyring_backend import CabrokerKeyring, service_host
from devstack.public import PublicIndex
from devstack.wheels import build_wheel
from tests.client.test_cache import BROKER, HOST, make_grant
from tests.devstack.test_wheels import tool_env

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX cache (flock)")

VENV_BIN = Path(sys.executable).parent
INDEX = f"https://{HOST}/pypi/internal/simple/"


class CountingStore(FileStore):
    """A file store that counts how often it is read."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reads = 0

    def read(self) -> tuple[RawEntries, bool]:
        self.reads += 1
        return super().read()


@dataclass
class Fetcher:
    """A fetcher that records the hosts asked for and answers ``grant`` (or raises ``error``)."""

    grant: Grant | None = None
    error: Exception | None = None
    hosts: list[str] = field(default_factory=list)

    def __call__(self, host: str) -> Grant | None:
        self.hosts.append(host)
        if self.error is not None:
            raise self.error
        return self.grant


@pytest.fixture
def store(tmp_path: Path) -> CountingStore:
    return CountingStore(tmp_path / "cabroker" / "tokens.json")


@pytest.fixture
def cache(store: CountingStore) -> TokenCache:
    return TokenCache(store)


@pytest.fixture
def fetcher() -> Fetcher:
    return Fetcher()


@pytest.fixture
def backend(cache: TokenCache, fetcher: Fetcher) -> CabrokerKeyring:
    return CabrokerKeyring(cache=cache, fetcher=fetcher)


@pytest.mark.parametrize(
    ("service", "host"),
    [
        pytest.param("https://pypi.org/simple/", "pypi.org", id="pip: the index URL"),
        pytest.param("pypi.org", "pypi.org", id="pip: the netloc"),
        pytest.param("Pypi.ORG:443", "pypi.org", id="a netloc with a port, any case"),
        pytest.param("aws@host.example:8080", "host.example", id="a netloc with a user"),
        pytest.param("https://aws@host.example/pypi/x/", "host.example", id="twine, a user"),
        pytest.param("http://[::1]:8080/simple/", "::1", id="IPv6"),
        pytest.param("", None, id="empty"),
        pytest.param("https://", None, id="no host"),
        pytest.param("http://[::1/simple/", None, id="not a URL"),
    ],
)
def test_service_host(service: str, host: str | None) -> None:
    assert service_host(service) == host


def test_a_foreign_host_is_none_without_reading_the_cache(
    backend: CabrokerKeyring, cache: TokenCache, store: CountingStore, fetcher: Fetcher
) -> None:
    cache.put(CacheKey(BROKER), make_grant())
    store.reads = 0
    for service in ("https://pypi.org/simple/", "pypi.org", "https://files.example/x"):
        assert backend.get_password(service, "aws") is None
        assert backend.get_credential(service, None) is None
    assert store.reads == 0
    assert fetcher.hosts == []


@pytest.mark.parametrize("hosts", [None, "codeartifact.example\n"], ids=["no cache", "other"])
def test_a_foreign_host_imports_nothing_heavy(tmp_path: Path, hosts: str | None) -> None:
    if hosts is not None:
        (tmp_path / "cache" / "cabroker").mkdir(parents=True)
        (tmp_path / "cache" / "cabroker" / "hosts").write_text(hosts)
    code = (
        "import sys, cabroker.keyring_backend as k\n"
        "answer = k.CabrokerKeyring().get_password('https://pypi.org/simple/', None)\n"
        "print(answer, 'requests' in sys.modules, 'cabroker.api' in sys.modules)\n"
    )
    env = tool_env(tmp_path) | {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    ran = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert ran.stdout.split() == ["None", "False", "False"], ran.stderr


def test_a_foreign_host_costs_well_under_a_millisecond(tmp_path: Path) -> None:
    cache = TokenCache(FileStore(tmp_path / "tokens.json"))
    cache.put(CacheKey(BROKER), make_grant())
    backend = CabrokerKeyring(cache=cache, fetcher=Fetcher())
    calls = 500
    started = time.perf_counter()
    for _ in range(calls):
        backend.get_password("https://pypi.org/simple/", "aws")
    assert (time.perf_counter() - started) / calls < 0.001


@pytest.mark.parametrize("username", [None, "", "aws"], ids=["none", "empty", "aws"])
def test_our_host_gets_the_cached_token(
    backend: CabrokerKeyring, cache: TokenCache, fetcher: Fetcher, username: str | None
) -> None:
    grant = make_grant()
    cache.put(CacheKey(BROKER), grant)
    for service in (INDEX, HOST, f"{HOST}:443", f"https://{HOST}/pypi/internal/"):
        credential = backend.get_credential(service, username)
        assert isinstance(credential, SimpleCredential)
        assert credential.username == "aws"
        assert credential.password == grant.token
        assert backend.get_password(service, username or "aws") == grant.token
    assert fetcher.hosts == []


def test_another_username_is_not_ours(
    backend: CabrokerKeyring, cache: TokenCache, fetcher: Fetcher
) -> None:
    cache.put(CacheKey(BROKER), make_grant(100))  # near expiry: would be refreshed
    assert backend.get_password(INDEX, "alice") is None
    assert backend.get_credential(INDEX, "__token__") is None
    assert fetcher.hosts == []


def test_near_expiry_the_fetcher_refreshes(
    backend: CabrokerKeyring, cache: TokenCache, fetcher: Fetcher
) -> None:
    cache.put(CacheKey(BROKER), make_grant(200))  # inside the 5-minute margin
    fetcher.grant = fresh = make_grant(3600)
    assert backend.get_password(INDEX, "aws") == fresh.token
    assert fetcher.hosts == [HOST]


@pytest.mark.parametrize(
    ("cached_seconds", "answer", "error", "expected"),
    [
        pytest.param(200, None, None, "cached", id="no new grant: the cached one, still valid"),
        pytest.param(200, None, RuntimeError("x"), "cached", id="fetcher fails: the cached one"),
        pytest.param(None, None, RuntimeError("x"), None, id="fetcher fails, nothing cached"),
        pytest.param(-5, None, RuntimeError("x"), None, id="fetcher fails, cached one expired"),
        pytest.param(-5, None, None, None, id="no new grant, cached one expired"),
        pytest.param(None, "other host", None, None, id="a grant for another host is ignored"),
        pytest.param(None, "expired", None, None, id="an expired new grant is not used"),
        pytest.param(None, "fresh", None, "fresh", id="nothing cached: the fetched one"),
    ],
)
def test_refresh_outcomes(
    backend: CabrokerKeyring,
    cache: TokenCache,
    fetcher: Fetcher,
    cached_seconds: float | None,
    answer: str | None,
    error: Exception | None,
    expected: str | None,
) -> None:
    cached = make_grant(cached_seconds if cached_seconds is not None else 3600)
    entries = {str(CacheKey(BROKER)): cached.to_json()} if cached_seconds is not None else {}
    FileStore(cache.directory / "tokens.json").write(entries, {})
    (cache.directory / "hosts").write_text(f"{HOST}\n")  # as put left it
    answers = {
        "other host": make_grant(host="other.example"),
        "expired": make_grant(-1),
        "fresh": make_grant(),
    }
    fetcher.grant = answers[answer] if answer else None
    fetcher.error = error
    tokens = {"cached": cached.token, "fresh": answers["fresh"].token, None: None}
    assert backend.get_password(INDEX, "aws") == tokens[expected]
    assert fetcher.hosts == [HOST]


def test_a_failing_cache_is_none(tmp_path: Path, fetcher: Fetcher) -> None:
    class BrokenStore(FileStore):
        def read(self) -> tuple[RawEntries, bool]:
            raise MemoryError("boom")  # not even a FilesError

    cache = TokenCache(BrokenStore(tmp_path / "tokens.json"))
    (tmp_path / "hosts").write_text(f"{HOST}\n")
    backend = CabrokerKeyring(cache=cache, fetcher=fetcher)
    assert backend.get_password(INDEX, "aws") is None
    assert backend.get_credential(INDEX, None) is None


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
    assert keyring_backend.refresh_for_host(HOST) is None  # no refresh_for_host there yet
    grant = make_grant()
    asked: list[str] = []

    def refresh_for_host(host: str) -> Grant:
        asked.append(host)
        return grant

    api.refresh_for_host = refresh_for_host  # type: ignore[attr-defined]
    assert keyring_backend.refresh_for_host(HOST) is grant
    assert asked == [HOST]


def test_the_default_cache_is_found_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fetcher: Fetcher
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CABROKER_TOKEN_STORE", "file")
    grant = make_grant()
    TokenCache(FileStore(cache_dir() / "tokens.json")).put(CacheKey(BROKER), grant)
    assert CabrokerKeyring(fetcher=fetcher).get_password(INDEX, "aws") == grant.token


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

    @property
    def url_with_user(self) -> str:
        return f"http://aws@127.0.0.1:{self.port}/simple/"


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
    TokenCache(FileStore(cache_dir(env) / "tokens.json")).put(CacheKey(BROKER), grant)
    try:
        yield Served(index, server.server_port, home, grant_token)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def keyring_env(home: Path) -> dict[str, str]:
    """``tool_env`` with keyring left to find its backends (ours among them) and the venv's
    ``keyring`` command on PATH (uv's subprocess provider runs it)."""
    env = tool_env(home)
    del env["PYTHON_KEYRING_BACKEND"]
    env.update(
        PATH=str(VENV_BIN) + os.pathsep + env.get("PATH", ""),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        CABROKER_TOKEN_STORE="file",
        UV_KEYRING_PROVIDER="subprocess",
    )
    return env


def run_with_keyring(args: list[str], served: Served) -> str:
    """Run a tool with the keyring backend available; return its exit code and output with
    the token blanked out, after checking the token was never given to it nor printed."""
    env = keyring_env(served.home)
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
