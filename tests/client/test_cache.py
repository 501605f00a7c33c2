"""cabroker.cache: grants at rest in a file (0600, locked, atomic) or in the system keyring."""

from __future__ import annotations

import json
import multiprocessing
import secrets
import stat
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail, null
from keyring.errors import KeyringLocked, PasswordDeleteError

from cabroker import cache as cache_module
from cabroker.broker import Grant
from cabroker.cache import (
    CacheKey,
    FileStore,
    KeyringStore,
    TokenCache,
    blob_limit,
    cache_dir,
    grant_scopes,
    known_scopes,
    scope_of,
    serves,
    system_keyring,
)
from cabroker.errors import FilesError, UsageError
from cabroker.keyring_backend import CabrokerKeyring
from cabroker.secret import Secret

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes and flock")

BROKER = "https://broker.example"
HOST = "acme-111122223333.d.codeartifact.us-east-1.amazonaws.com"


def make_grant(
    seconds: float = 3600,
    *,
    host: str = HOST,
    repository: str = "internal",
    index_url: str | None = None,
    token_length: int = 52,
) -> Grant:
    """A grant valid for ``seconds`` (negative: expired) with a random, never-printed token
    (``token_length`` characters; a real CodeArtifact token has over a thousand)."""
    base = f"https://{host}/pypi/{repository}/"
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=seconds)
    return Grant(
        token=Secret("tok-" + secrets.token_hex(token_length)[: token_length - 4]),
        expires_at=expires,
        username="aws",
        repository=repository,
        access="read",
        packages=(),
        index_url=index_url or base + "simple/",
        upload_url=base,
        domain="acme",
        domain_owner="111122223333",
        region="us-east-1",
    )


def key_of(
    broker_url: str = BROKER,
    repository: str | None = None,
    access: str | None = None,
    packages: tuple[str, ...] = (),
    *,
    identity: str = "alice-binding",
    source: str = "env",
) -> CacheKey:
    """A key of one identity (alice's, unless told), as the client makes them."""
    return CacheKey(broker_url, repository, access, packages, identity, source)


def file_cache(directory: Path) -> TokenCache:
    return TokenCache(FileStore(directory / "cabroker" / "tokens.json"))


@pytest.fixture
def cache(tmp_path: Path) -> TokenCache:
    return file_cache(tmp_path)


def tokens_file(cache: TokenCache) -> Path:
    assert isinstance(cache.store, FileStore)
    return cache.store.path


def stored_keys(path: Path) -> set[str]:
    return set(json.loads(path.read_text())["entries"])


# --- keys -----------------------------------------------------------------------------------


def test_cache_key_is_normalized_hashable_and_round_trips() -> None:
    one = CacheKey(BROKER + "/", "internal", "read", ("b", "a", "b"), "id1", "env")
    assert one == CacheKey(BROKER, "internal", "read", ("a", "b"), "id1", "env")
    assert one.broker_url == BROKER
    assert one.packages == ("a", "b")
    assert len({one, CacheKey(BROKER, "internal", "read", ("a", "b"), "id1", "env")}) == 1
    assert str(one) == '["https://broker.example","internal","read",["a","b"],"id1","env"]'
    assert CacheKey.parse(str(one)) == one
    default = CacheKey(BROKER, None, None, (), "id1", "file:/ids/a.jwt")
    assert str(default) == '["https://broker.example",null,null,[],"id1","file:/ids/a.jwt"]'
    assert CacheKey.parse(str(default)) == default
    assert default != CacheKey(BROKER, "internal", None, (), "id1", "file:/ids/a.jwt")
    assert one.asks(BROKER + "/", "internal", "read", ["b", "a"])
    assert not one.asks(BROKER, "internal", "publish", ["a", "b"])


def test_a_cache_key_names_its_identity() -> None:
    """The same request by another identity is another key: a grant never crosses over."""
    alice, bob = key_of(identity="alice"), key_of(identity="bob")
    assert alice != bob
    # where the identity came from is a hint, not part of it
    assert key_of(identity="alice", source="env") == key_of(identity="alice", source="file:/a")


def test_the_last_source_of_an_identity_is_kept(cache: TokenCache) -> None:
    cache.put(key_of(BROKER, identity="alice", source="env"), make_grant())
    cache.put(key_of(BROKER, identity="alice", source="file:/ids/a.jwt"), newer := make_grant())
    [(stored, grant)] = cache.entries()
    assert (stored.source, grant) == ("file:/ids/a.jwt", newer)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("not json", id="not JSON"),
        pytest.param('{"broker_url": "x"}', id="an object"),
        pytest.param('["x", null, null]', id="three fields"),
        pytest.param('["x", null, null, []]', id="four fields: a key of version 1, no identity"),
        pytest.param('[1, null, null, [], "i", "env"]', id="URL not a string"),
        pytest.param('["x", 2, null, [], "i", "env"]', id="repository not a string"),
        pytest.param('["x", null, null, "a", "i", "env"]', id="packages not a list"),
        pytest.param('["x", null, null, [1], "i", "env"]', id="a package not a string"),
        pytest.param('["x", null, null, [], "", "env"]', id="no identity"),
        pytest.param('["x", null, null, [], 1, "env"]', id="identity not a string"),
        pytest.param('["x", null, null, [], "i", null]', id="source not a string"),
    ],
)
def test_cache_key_parse_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"cache key|Expecting"):
        CacheKey.parse(text)


# --- the file store -------------------------------------------------------------------------


def test_put_then_get(cache: TokenCache) -> None:
    key = key_of(BROKER, "internal", "read", ())
    grant = make_grant()
    assert cache.get(key, 0) is None
    cache.put(key, grant)
    assert cache.get(key, 0) == grant
    assert file_cache(tokens_file(cache).parent.parent).get(key, 0) == grant  # read afresh
    assert cache.get(key_of(BROKER, "internal", "publish", ()), 0) is None
    assert cache.get(key_of(BROKER, None, None, ()), 0) is None
    replacement = make_grant()
    cache.put(key, replacement)
    assert cache.get(key, 0) == replacement
    assert stored_keys(tokens_file(cache)) == {str(key)}


@pytest.mark.parametrize(
    ("seconds_left", "min_seconds_left", "found"),
    [
        pytest.param(600, 0, True, id="fresh, no margin"),
        pytest.param(600, 300, True, id="fresh beyond the margin"),
        pytest.param(600, 900, False, id="expires within the margin"),
        pytest.param(600, -50, True, id="a negative margin is no margin"),
    ],
)
def test_get_min_seconds_left(
    cache: TokenCache, seconds_left: float, min_seconds_left: float, found: bool
) -> None:
    key = key_of(BROKER)
    cache.put(key, make_grant(seconds_left))
    assert (cache.get(key, min_seconds_left) is not None) is found


def test_expired_grants_are_never_returned_and_dropped_on_write(cache: TokenCache) -> None:
    path = tokens_file(cache)
    expired, fresh = key_of(BROKER, "old"), key_of(BROKER, "new")
    FileStore(path).write({str(expired): make_grant(-10).to_json()}, {})
    assert cache.get(expired, 0) is None
    assert [key for key, _ in cache.entries()] == [expired]  # stored until the next write
    cache.put(fresh, make_grant())
    assert stored_keys(path) == {str(fresh)}
    cache.put(expired, make_grant(-1))  # an expired grant is not even stored
    assert stored_keys(path) == {str(fresh)}


def test_remove_clear_and_entries(cache: TokenCache) -> None:
    keys = [key_of(BROKER, "b"), key_of(BROKER, "a"), key_of(BROKER, "a", "read", ("x",))]
    grants = {key: make_grant() for key in keys}
    for key, grant in grants.items():
        cache.put(key, grant)
    assert cache.entries() == sorted(grants.items(), key=lambda item: str(item[0]))
    assert cache.remove(keys[0]) is True
    assert cache.remove(keys[0]) is False
    assert cache.get(keys[0], 0) is None
    assert {key for key, _ in cache.entries()} == set(keys[1:])
    cache.clear()
    assert cache.entries() == []
    assert stored_keys(tokens_file(cache)) == set()


def test_the_same_request_by_another_identity_is_a_miss(cache: TokenCache) -> None:
    grant = make_grant()
    cache.put(key_of(BROKER, "internal", "publish", identity="alice"), grant)
    assert cache.get(key_of(BROKER, "internal", "publish", identity="alice"), 0) == grant
    assert cache.get(key_of(BROKER, "internal", "publish", identity="bob"), 0) is None


ENDPOINT = f"https://{HOST}:443/pypi/internal/"


@pytest.mark.parametrize(
    ("url", "scope"),
    [
        pytest.param(f"https://{HOST}/pypi/internal/simple/", ENDPOINT, id="index URL"),
        pytest.param(f"https://{HOST}/pypi/internal/", ENDPOINT, id="upload URL"),
        pytest.param(f"https://{HOST}/pypi/internal/simple", ENDPOINT, id="no trailing slash"),
        pytest.param(
            f"https://aws@{HOST.upper()}:443/pypi/internal/simple/x/",
            ENDPOINT + "simple/x/",
            id="user, case, port",
        ),
        pytest.param(
            "http://127.0.0.1:8080/pypi/internal/simple/",
            "http://127.0.0.1:8080/pypi/internal/",
            id="loopback http",
        ),
        pytest.param(
            "http://example.com/pypi/internal/",
            "http://example.com:80/pypi/internal/",
            id="http default port",
        ),
        pytest.param("https://[::1]:9/p/", "https://[::1]:9/p/", id="IPv6"),
        pytest.param(HOST, None, id="a bare host"),
        pytest.param(f"ftp://{HOST}/pypi/internal/", None, id="another scheme"),
        pytest.param(f"https://{HOST}:99999/", None, id="a bad port"),
        pytest.param(f"https://{HOST}/pypi/internal/../other/simple/", None, id="dot-dot segment"),
        pytest.param(f"https://{HOST}/pypi/internal/%2E%2E/other/", None, id="encoded dot-dot"),
    ],
)
def test_scope_of(url: str, scope: str | None) -> None:
    assert scope_of(url) == scope


@pytest.mark.parametrize(
    ("url", "served"),
    [
        pytest.param(f"https://{HOST}/pypi/internal/simple/tinyjson/", True, id="a project page"),
        pytest.param(f"https://aws@{HOST}/pypi/internal/", True, id="the upload URL, a user"),
        pytest.param(f"https://{HOST}:443/pypi/internal/simple/", True, id="explicit default port"),
        pytest.param(f"http://{HOST}/pypi/internal/simple/", False, id="same host over http"),
        pytest.param(f"https://{HOST}:8443/pypi/internal/simple/", False, id="another port"),
        pytest.param(
            f"https://{HOST}/pypi/internal-2/simple/", False, id="a repository with a longer name"
        ),
        pytest.param(f"https://{HOST}/pypi/restricted/simple/", False, id="another repository"),
        pytest.param(f"https://{HOST}/", False, id="the host's root"),
        pytest.param("https://evil.example/pypi/internal/simple/", False, id="another host"),
        pytest.param(f"https://{HOST}.evil.example/pypi/internal/", False, id="a longer host"),
        pytest.param(HOST, False, id="a bare host name"),
    ],
)
def test_a_grant_serves_only_its_own_endpoint(url: str, served: bool) -> None:
    assert serves(grant_scopes(make_grant()), url) is served


def test_scopes_file_follows_the_entries(cache: TokenCache) -> None:
    directory = tokens_file(cache).parent
    assert cache.known_scopes() == frozenset()
    one, two = key_of(BROKER, "one"), key_of(BROKER, "two")
    cache.put(one, make_grant())
    cache.put(two, make_grant(host="Other.Example"))
    other = "https://other.example:443/pypi/internal/"
    assert cache.known_scopes() == {ENDPOINT, other}
    assert (directory / "scopes").read_text() == f"{ENDPOINT}\n{other}\n"
    assert known_scopes(directory) == cache.known_scopes()
    cache.remove(two)
    assert cache.known_scopes() == {ENDPOINT}
    cache.clear()
    assert cache.known_scopes() == frozenset()
    assert (directory / "scopes").read_text() == ""


def test_known_scopes_of_a_missing_or_odd_file(tmp_path: Path) -> None:
    assert known_scopes(tmp_path / "nowhere") == frozenset()
    (tmp_path / "scopes").write_bytes(b"\xff\xfe not text")
    assert known_scopes(tmp_path) == frozenset()
    (tmp_path / "scopes").write_text("  https://a:443/p/ \n\n https://b:443/q/\n")
    assert known_scopes(tmp_path) == {"https://a:443/p/", "https://b:443/q/"}


def test_modes(tmp_path: Path) -> None:
    parent = tmp_path / "cache"
    parent.mkdir(mode=0o755)
    (parent / "cabroker").mkdir(mode=0o755)  # already there, too open: tightened
    cache = TokenCache(FileStore(parent / "cabroker" / "tokens.json"))
    cache.put(key_of(BROKER), make_grant())
    directory = parent / "cabroker"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in ("tokens.json", "tokens.lock", "scopes"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600, name
    assert sorted(path.name for path in directory.iterdir()) == [
        "scopes",
        "tokens.json",
        "tokens.lock",
    ]  # no temporary file left behind


def test_a_new_directory_is_private(tmp_path: Path) -> None:
    cache = file_cache(tmp_path / "deep" / "er")
    cache.put(key_of(BROKER), make_grant())
    assert stat.S_IMODE(tokens_file(cache).parent.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"{not json", id="not JSON"),
        pytest.param(b"\xff\xfe\x00garbage", id="not UTF-8"),
        pytest.param(b"", id="empty"),
        pytest.param(b"[1, 2]", id="a list"),
        pytest.param(b'{"version": 2, "entries": []}', id="entries not an object"),
        pytest.param(b'{"version": 2, "entries": {"k": "v"}}', id="an entry not an object"),
        pytest.param(
            b'{"version": 1, "entries": {"[\\"https://b\\",null,null,[]]": {}}}',
            id="version 1: keys without an identity",
        ),
    ],
)
def test_a_corrupt_file_is_empty_and_rewritten(cache: TokenCache, content: bytes) -> None:
    path = tokens_file(cache)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    assert cache.get(key_of(BROKER), 0) is None
    assert cache.entries() == []
    assert json.loads(path.read_text()) == {"version": 2, "entries": {}}  # rewritten
    cache.put(key_of(BROKER), make_grant())
    assert stored_keys(path) == {str(key_of(BROKER))}


def test_unreadable_entries_are_dropped_and_the_rest_kept(cache: TokenCache) -> None:
    path = tokens_file(cache)
    good = key_of(BROKER, "good")
    grant = make_grant()
    raw = {
        str(good): grant.to_json(),
        "not a key": grant.to_json(),
        str(key_of(BROKER, "no-token")): {"expires_at": "2999-01-01T00:00:00Z"},
        str(key_of(BROKER, "bad-time")): {**grant.to_json(), "expires_at": "soon"},
    }
    FileStore(path).write(raw, {})
    assert cache.entries() == [(good, grant)]
    cache.put(key_of(BROKER, "other"), make_grant())
    assert stored_keys(path) == {str(good), str(key_of(BROKER, "other"))}


def test_an_unreadable_file_reads_as_empty_and_a_write_says_why(cache: TokenCache) -> None:
    path = tokens_file(cache)
    path.mkdir(parents=True)  # a directory where the file should be: cannot be read or replaced
    assert cache.get(key_of(BROKER), 0) is None
    assert cache.entries() == []
    with pytest.raises(FilesError, match=r"cannot write the token cache .*permissions"):
        cache.put(key_of(BROKER), make_grant())


def test_an_unwritable_directory_is_a_files_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache = TokenCache(FileStore(blocker / "cabroker" / "tokens.json"))  # under a file
    assert cache.entries() == []
    with pytest.raises(FilesError, match="cannot update the token cache"):
        cache.put(key_of(BROKER), make_grant())


# --- concurrency ----------------------------------------------------------------------------

PROCESSES = 8
ROUNDS = 20


def hammer(directory: str, worker: int) -> list[str]:
    """Put and get ROUNDS grants of its own; return what went wrong (nothing, one hopes)."""
    cache = TokenCache(FileStore(Path(directory) / "tokens.json"))
    problems = []
    for round_ in range(ROUNDS):
        key = key_of(BROKER, f"repo-{worker}-{round_}")
        grant = make_grant()
        cache.put(key, grant)
        if cache.get(key, 0) != grant:
            problems.append(f"worker {worker} round {round_}: its grant was not read back")
    return problems


def test_concurrent_processes_never_corrupt_the_file(tmp_path: Path) -> None:
    directory = tmp_path / "cabroker"
    context = multiprocessing.get_context("spawn")
    with context.Pool(PROCESSES) as pool:
        results = pool.starmap(hammer, [(str(directory), n) for n in range(PROCESSES)])
    assert [problem for problems in results for problem in problems] == []
    document = json.loads((directory / "tokens.json").read_text())
    expected = {
        str(key_of(BROKER, f"repo-{worker}-{round_}"))
        for worker in range(PROCESSES)
        for round_ in range(ROUNDS)
    }
    assert set(document["entries"]) == expected
    assert sorted(path.name for path in directory.iterdir()) == [
        "scopes",
        "tokens.json",
        "tokens.lock",
    ]


# --- the keyring store ----------------------------------------------------------------------


class MemoryKeyring(KeyringBackend):
    """An in-memory keyring for the tests; never chosen by keyring's own detection."""

    priority = 5
    viable = False  # keep it out of keyring.backend.get_all_keyring()

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.items: dict[tuple[str, str], str] = {}
        self.locked = False

    def get_password(self, service: str, username: str) -> str | None:
        if self.locked:
            raise KeyringLocked("locked")
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        if self.locked:
            raise KeyringLocked("locked")
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.items.pop((service, username), None) is None:
            raise PasswordDeleteError("not there")


FAIL: KeyringBackend = fail.Keyring()  # type: ignore[no-untyped-call]


@pytest.fixture
def memory() -> MemoryKeyring:
    return MemoryKeyring()


@pytest.fixture
def restore_keyring() -> Iterator[None]:
    previous = keyring.get_keyring()
    yield
    keyring.set_keyring(previous)


def test_keyring_store_items_and_index(tmp_path: Path, memory: MemoryKeyring) -> None:
    cache = TokenCache(KeyringStore(memory, tmp_path))
    one, two = key_of(BROKER, "one"), key_of(BROKER, "two", "read", ("a",))
    grant_one, grant_two = make_grant(), make_grant(host="other.example")
    cache.put(one, grant_one)
    cache.put(two, grant_two)
    assert cache.get(one, 0) == grant_one
    assert cache.get(two, 0) == grant_two
    index = json.loads(memory.items[("cabroker", "index")])
    assert index == sorted([KeyringStore.item(str(one)), KeyringStore.item(str(two))])
    item = json.loads(memory.items[("cabroker", KeyringStore.item(str(one)))])
    assert item == {"key": str(one), "grant": grant_one.to_json()}
    assert len(memory.items) == 3  # the index and one item per grant
    assert len(cache.known_scopes()) == 2  # the scopes file, beside the lock
    assert sorted(path.name for path in tmp_path.iterdir()) == ["scopes", "tokens.lock"]
    assert cache.remove(one) is True
    assert set(memory.items) == {("cabroker", "index"), ("cabroker", KeyringStore.item(str(two)))}
    cache.clear()
    assert json.loads(memory.items[("cabroker", "index")]) == []
    assert set(memory.items) == {("cabroker", "index")}


def test_keyring_store_corrupt_index_and_missing_items(
    tmp_path: Path, memory: MemoryKeyring
) -> None:
    cache = TokenCache(KeyringStore(memory, tmp_path))
    keep, lost = key_of(BROKER, "keep"), key_of(BROKER, "lost")
    cache.put(keep, make_grant())
    cache.put(lost, make_grant())
    del memory.items[("cabroker", KeyringStore.item(str(lost)))]
    assert [key for key, _ in cache.entries()] == [keep]
    assert json.loads(memory.items[("cabroker", "index")]) == [KeyringStore.item(str(keep))]
    memory.items[("cabroker", "index")] = "{garbage"
    assert cache.entries() == []
    assert json.loads(memory.items[("cabroker", "index")]) == []


def test_a_locked_keyring_reads_as_empty_and_is_never_overwritten(
    tmp_path: Path, memory: MemoryKeyring
) -> None:
    cache = TokenCache(KeyringStore(memory, tmp_path))
    cache.put(key_of(BROKER), make_grant())
    before = dict(memory.items)
    memory.locked = True
    assert cache.get(key_of(BROKER), 0) is None
    with pytest.raises(FilesError, match=r"cannot read the system keyring.*CABROKER_TOKEN_STORE"):
        cache.put(key_of(BROKER, "other"), make_grant())
    memory.locked = False
    assert memory.items == before


@pytest.mark.usefixtures("restore_keyring")
def test_system_keyring_is_the_configured_usable_one(memory: MemoryKeyring) -> None:
    keyring.set_keyring(memory)
    assert system_keyring() is memory


@pytest.mark.usefixtures("restore_keyring")
@pytest.mark.parametrize(
    "backend",
    [fail.Keyring, null.Keyring],
    ids=["the fail backend", "the null backend"],
)
def test_system_keyring_refuses(backend: type[KeyringBackend]) -> None:
    keyring.set_keyring(backend())
    assert system_keyring() is None


@pytest.mark.usefixtures("restore_keyring")
@pytest.mark.parametrize(
    "chosen",
    [CabrokerKeyring, chainer.ChainerBackend],
    ids=["ours chosen for its priority", "a chainer"],
)
def test_system_keyring_never_is_ours(
    monkeypatch: pytest.MonkeyPatch, memory: MemoryKeyring, chosen: type[KeyringBackend]
) -> None:
    everything = [CabrokerKeyring(), FAIL, memory]
    monkeypatch.setattr("keyring.backend.get_all_keyring", lambda: everything)
    keyring.set_keyring(chosen())
    assert system_keyring() is memory
    monkeypatch.setattr("keyring.backend.get_all_keyring", lambda: everything[:2])
    assert system_keyring() is None  # a chainer of nothing (but ours)


@pytest.mark.usefixtures("restore_keyring")
def test_default_chooses(
    tmp_path: Path, memory: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path), "HOME": str(tmp_path / "home")}
    keyring.set_keyring(memory)
    chosen = TokenCache.default(env)
    assert isinstance(chosen.store, KeyringStore)
    assert chosen.store.backend is memory
    assert chosen.directory == tmp_path / "cabroker"
    for forced in ("file", " FILE "):
        store = TokenCache.default({**env, "CABROKER_TOKEN_STORE": forced}).store
        assert isinstance(store, FileStore)
        assert store.path == tmp_path / "cabroker" / "tokens.json"
    keyring.set_keyring(FAIL)
    assert isinstance(TokenCache.default(env).store, FileStore)
    with pytest.raises(UsageError, match="no usable system keyring"):
        TokenCache.default({**env, "CABROKER_TOKEN_STORE": "keyring"})
    with pytest.raises(UsageError, match="must be 'file', 'keyring' or 'auto'"):
        TokenCache.default({**env, "CABROKER_TOKEN_STORE": "vault"})
    monkeypatch.setattr(cache_module, "system_keyring", lambda: None)
    with pytest.raises(FilesError, match="no usable system keyring"):
        KeyringStore()


# --- where ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "env", "expected"),
    [
        pytest.param("linux", {"XDG_CACHE_HOME": "/x", "HOME": "/h"}, "/x/cabroker", id="XDG"),
        pytest.param(
            "linux",
            {"XDG_CACHE_HOME": "rel", "HOME": "/h"},
            "/h/.cache/cabroker",
            id="a relative XDG is ignored",
        ),
        pytest.param("linux", {"HOME": "/h"}, "/h/.cache/cabroker", id="linux"),
        pytest.param("darwin", {"HOME": "/h"}, "/h/Library/Caches/cabroker", id="macOS"),
        pytest.param(
            "darwin", {"HOME": "/h", "XDG_CACHE_HOME": "/x"}, "/x/cabroker", id="macOS with XDG"
        ),
        pytest.param("win32", {"LOCALAPPDATA": "/l"}, "/l/cabroker/Cache", id="Windows"),
    ],
)
def test_cache_dir(
    monkeypatch: pytest.MonkeyPatch, platform: str, env: dict[str, str], expected: str
) -> None:
    monkeypatch.setattr(sys, "platform", platform)
    assert cache_dir(env) == Path(expected)


def test_cache_dir_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere")
    assert cache_dir() == Path("/somewhere/cabroker")


# --- keyrings that refuse large items (Windows' Credential Manager) ---------------------------


class WindowsLikeKeyring(MemoryKeyring):
    """Refuses what the Windows Credential Manager refuses: a blob over 2,560 bytes, the
    password stored as UTF-16 (as keyring's Windows backend and pywin32 do), with an error that
    is not a KeyringError (pywintypes.error)."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = 0

    def set_password(self, service: str, username: str, password: str) -> None:
        if len(password.encode("utf-16-le")) > 2560:
            self.refused += 1
            raise OSError(1783, "CredWrite", "The stub received bad data.")
        super().set_password(service, username, password)


CODEARTIFACT_TOKEN_LENGTH = 1200  # what real tokens measure, give or take a hundred


def keyring_tokens(memory: MemoryKeyring) -> str:
    return "".join(memory.items.values())


def test_a_token_too_big_for_the_keyring_is_kept_in_the_file(tmp_path: Path) -> None:
    windows = WindowsLikeKeyring()
    cache = TokenCache(KeyringStore(windows, tmp_path, item_limit=2560))
    big = make_grant(token_length=CODEARTIFACT_TOKEN_LENGTH)
    cache.put(key_of(BROKER, "internal"), big)
    assert cache.get(key_of(BROKER, "internal"), 0) == big
    assert windows.refused == 0  # never even tried: it would not fit
    assert big.token not in keyring_tokens(windows)
    spill = tmp_path / "tokens.json"
    assert stat.S_IMODE(spill.stat().st_mode) == 0o600
    assert big.token in spill.read_text()


def test_a_small_token_stays_in_the_keyring(tmp_path: Path) -> None:
    windows = WindowsLikeKeyring()
    cache = TokenCache(KeyringStore(windows, tmp_path, item_limit=2560))
    small = make_grant(token_length=100)
    cache.put(key_of(BROKER, "internal"), small)
    assert cache.get(key_of(BROKER, "internal"), 0) == small
    assert small.token in keyring_tokens(windows)
    assert not (tmp_path / "tokens.json").exists()


def test_a_keyring_that_refuses_an_item_it_was_not_known_to_refuse(tmp_path: Path) -> None:
    """No limit known for the backend: its refusal still leaves the grant cached, in the file."""
    windows = WindowsLikeKeyring()
    cache = TokenCache(KeyringStore(windows, tmp_path, item_limit=None))
    big = make_grant(token_length=CODEARTIFACT_TOKEN_LENGTH)
    cache.put(key_of(BROKER, "internal"), big)
    assert windows.refused == 1
    assert cache.get(key_of(BROKER, "internal"), 0) == big
    assert big.token not in keyring_tokens(windows)


def test_mixed_sizes_and_removal(tmp_path: Path) -> None:
    windows = WindowsLikeKeyring()
    cache = TokenCache(KeyringStore(windows, tmp_path, item_limit=2560))
    small, big = make_grant(token_length=100), make_grant(token_length=CODEARTIFACT_TOKEN_LENGTH)
    cache.put(key_of(BROKER, "small"), small)
    cache.put(key_of(BROKER, "big"), big)
    assert dict(cache.entries()) == {key_of(BROKER, "small"): small, key_of(BROKER, "big"): big}
    assert cache.remove(key_of(BROKER, "big")) is True
    assert big.token not in (tmp_path / "tokens.json").read_text()
    assert dict(cache.entries()) == {key_of(BROKER, "small"): small}
    cache.clear()
    assert cache.entries() == []
    assert small.token not in keyring_tokens(windows)


def test_an_index_that_would_not_fit_spills_the_rest(tmp_path: Path) -> None:
    windows = WindowsLikeKeyring()
    cache = TokenCache(KeyringStore(windows, tmp_path, item_limit=2560))
    grants = {key_of(BROKER, f"repo-{n}"): make_grant(3600 + n, token_length=60) for n in range(80)}
    for cache_key, grant in grants.items():
        cache.put(cache_key, grant)
    assert dict(cache.entries()) == grants
    assert windows.refused == 0
    assert all(len(value.encode("utf-16-le")) <= 2560 for value in windows.items.values())
    assert (tmp_path / "tokens.json").exists()  # some of them


def test_the_windows_backends_have_the_credential_managers_limit(memory: MemoryKeyring) -> None:
    windows = type("WinVaultKeyring", (MemoryKeyring,), {"__module__": "keyring.backends.Windows"})
    assert blob_limit(windows()) == 2560
    assert blob_limit(memory) is None
    assert KeyringStore(windows(), Path("/nonexistent")).item_limit == 2560
