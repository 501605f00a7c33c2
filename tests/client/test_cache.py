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
    cache_dir,
    known_hosts,
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
) -> Grant:
    """A grant valid for ``seconds`` (negative: expired) with a random, never-printed token."""
    base = f"https://{host}/pypi/{repository}/"
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=seconds)
    return Grant(
        token=Secret("tok-" + secrets.token_hex(24)),
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
    key = CacheKey(BROKER + "/", "internal", "read", ("b", "a", "b"))
    assert key == CacheKey(BROKER, "internal", "read", ("a", "b"))
    assert key.broker_url == BROKER
    assert key.packages == ("a", "b")
    assert len({key, CacheKey(BROKER, "internal", "read", ("a", "b"))}) == 1
    assert str(key) == '["https://broker.example","internal","read",["a","b"]]'
    assert CacheKey.parse(str(key)) == key
    default = CacheKey(BROKER, None, None, ())
    assert str(default) == '["https://broker.example",null,null,[]]'
    assert CacheKey.parse(str(default)) == default
    assert default != CacheKey(BROKER, "internal", None, ())


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("not json", id="not JSON"),
        pytest.param('{"broker_url": "x"}', id="an object"),
        pytest.param('["x", null, null]', id="three fields"),
        pytest.param("[1, null, null, []]", id="URL not a string"),
        pytest.param('["x", 2, null, []]', id="repository not a string"),
        pytest.param('["x", null, null, "a"]', id="packages not a list"),
        pytest.param('["x", null, null, [1]]', id="a package not a string"),
    ],
)
def test_cache_key_parse_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"cache key|Expecting"):
        CacheKey.parse(text)


# --- the file store -------------------------------------------------------------------------


def test_put_then_get(cache: TokenCache) -> None:
    key = CacheKey(BROKER, "internal", "read", ())
    grant = make_grant()
    assert cache.get(key, 0) is None
    cache.put(key, grant)
    assert cache.get(key, 0) == grant
    assert file_cache(tokens_file(cache).parent.parent).get(key, 0) == grant  # read afresh
    assert cache.get(CacheKey(BROKER, "internal", "publish", ()), 0) is None
    assert cache.get(CacheKey(BROKER, None, None, ()), 0) is None
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
    key = CacheKey(BROKER)
    cache.put(key, make_grant(seconds_left))
    assert (cache.get(key, min_seconds_left) is not None) is found


def test_expired_grants_are_never_returned_and_dropped_on_write(cache: TokenCache) -> None:
    path = tokens_file(cache)
    expired, fresh = CacheKey(BROKER, "old"), CacheKey(BROKER, "new")
    FileStore(path).write({str(expired): make_grant(-10).to_json()}, {})
    assert cache.get(expired, 0) is None
    assert [key for key, _ in cache.entries()] == [expired]  # stored until the next write
    cache.put(fresh, make_grant())
    assert stored_keys(path) == {str(fresh)}
    cache.put(expired, make_grant(-1))  # an expired grant is not even stored
    assert stored_keys(path) == {str(fresh)}


def test_remove_clear_and_entries(cache: TokenCache) -> None:
    keys = [CacheKey(BROKER, "b"), CacheKey(BROKER, "a"), CacheKey(BROKER, "a", "read", ("x",))]
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


def test_find_by_host_returns_the_freshest(cache: TokenCache) -> None:
    older, newer = make_grant(1000), make_grant(2000)
    other = make_grant(5000, host="other.example")
    upload_only = make_grant(3000, index_url="https://mirror.example/simple/")
    cache.put(CacheKey(BROKER, "one"), newer)
    cache.put(CacheKey(BROKER, "two"), older)
    cache.put(CacheKey(BROKER, "three"), other)
    assert cache.find_by_host(HOST) == newer
    assert cache.find_by_host(HOST.upper()) == newer
    assert cache.find_by_host("other.example") == other
    assert cache.find_by_host("pypi.org") is None
    cache.put(CacheKey(BROKER, "four"), upload_only)
    assert cache.find_by_host(HOST) == upload_only  # its upload URL is on HOST
    assert cache.find_by_host("mirror.example") == upload_only


def test_hosts_file_follows_the_entries(cache: TokenCache) -> None:
    directory = tokens_file(cache).parent
    assert cache.known_hosts() == frozenset()
    one, two = CacheKey(BROKER, "one"), CacheKey(BROKER, "two")
    cache.put(one, make_grant())
    cache.put(two, make_grant(host="Other.Example", index_url="https://other.example/simple/"))
    assert cache.known_hosts() == {HOST, "other.example"}
    assert (directory / "hosts").read_text() == f"{HOST}\nother.example\n"
    assert known_hosts(directory) == cache.known_hosts()
    cache.remove(two)
    assert cache.known_hosts() == {HOST}
    cache.clear()
    assert cache.known_hosts() == frozenset()
    assert (directory / "hosts").read_text() == ""


def test_known_hosts_of_a_missing_or_odd_file(tmp_path: Path) -> None:
    assert known_hosts(tmp_path / "nowhere") == frozenset()
    (tmp_path / "hosts").write_bytes(b"\xff\xfe not text")
    assert known_hosts(tmp_path) == frozenset()
    (tmp_path / "hosts").write_text("  A.example \n\n b.example\n")
    assert known_hosts(tmp_path) == {"a.example", "b.example"}


def test_modes(tmp_path: Path) -> None:
    parent = tmp_path / "cache"
    parent.mkdir(mode=0o755)
    (parent / "cabroker").mkdir(mode=0o755)  # already there, too open: tightened
    cache = TokenCache(FileStore(parent / "cabroker" / "tokens.json"))
    cache.put(CacheKey(BROKER), make_grant())
    directory = parent / "cabroker"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in ("tokens.json", "tokens.lock", "hosts"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600, name
    assert sorted(path.name for path in directory.iterdir()) == [
        "hosts",
        "tokens.json",
        "tokens.lock",
    ]  # no temporary file left behind


def test_a_new_directory_is_private(tmp_path: Path) -> None:
    cache = file_cache(tmp_path / "deep" / "er")
    cache.put(CacheKey(BROKER), make_grant())
    assert stat.S_IMODE(tokens_file(cache).parent.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"{not json", id="not JSON"),
        pytest.param(b"\xff\xfe\x00garbage", id="not UTF-8"),
        pytest.param(b"", id="empty"),
        pytest.param(b"[1, 2]", id="a list"),
        pytest.param(b'{"version": 1, "entries": []}', id="entries not an object"),
        pytest.param(b'{"version": 1, "entries": {"k": "v"}}', id="an entry not an object"),
    ],
)
def test_a_corrupt_file_is_empty_and_rewritten(cache: TokenCache, content: bytes) -> None:
    path = tokens_file(cache)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    assert cache.get(CacheKey(BROKER), 0) is None
    assert cache.entries() == []
    assert json.loads(path.read_text()) == {"version": 1, "entries": {}}  # rewritten
    cache.put(CacheKey(BROKER), make_grant())
    assert stored_keys(path) == {str(CacheKey(BROKER))}


def test_unreadable_entries_are_dropped_and_the_rest_kept(cache: TokenCache) -> None:
    path = tokens_file(cache)
    good = CacheKey(BROKER, "good")
    grant = make_grant()
    raw = {
        str(good): grant.to_json(),
        "not a key": grant.to_json(),
        str(CacheKey(BROKER, "no-token")): {"expires_at": "2999-01-01T00:00:00Z"},
        str(CacheKey(BROKER, "bad-time")): {**grant.to_json(), "expires_at": "soon"},
    }
    FileStore(path).write(raw, {})
    assert cache.entries() == [(good, grant)]
    cache.put(CacheKey(BROKER, "other"), make_grant())
    assert stored_keys(path) == {str(good), str(CacheKey(BROKER, "other"))}


def test_an_unreadable_file_reads_as_empty_and_a_write_says_why(cache: TokenCache) -> None:
    path = tokens_file(cache)
    path.mkdir(parents=True)  # a directory where the file should be: cannot be read or replaced
    assert cache.get(CacheKey(BROKER), 0) is None
    assert cache.entries() == []
    assert cache.find_by_host(HOST) is None
    with pytest.raises(FilesError, match=r"cannot write the token cache .*permissions"):
        cache.put(CacheKey(BROKER), make_grant())


def test_an_unwritable_directory_is_a_files_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache = TokenCache(FileStore(blocker / "cabroker" / "tokens.json"))  # under a file
    assert cache.entries() == []
    with pytest.raises(FilesError, match="cannot update the token cache"):
        cache.put(CacheKey(BROKER), make_grant())


# --- concurrency ----------------------------------------------------------------------------

PROCESSES = 8
ROUNDS = 20


def hammer(directory: str, worker: int) -> list[str]:
    """Put and get ROUNDS grants of its own; return what went wrong (nothing, one hopes)."""
    cache = TokenCache(FileStore(Path(directory) / "tokens.json"))
    problems = []
    for round_ in range(ROUNDS):
        key = CacheKey(BROKER, f"repo-{worker}-{round_}")
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
        str(CacheKey(BROKER, f"repo-{worker}-{round_}"))
        for worker in range(PROCESSES)
        for round_ in range(ROUNDS)
    }
    assert set(document["entries"]) == expected
    assert sorted(path.name for path in directory.iterdir()) == [
        "hosts",
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
    one, two = CacheKey(BROKER, "one"), CacheKey(BROKER, "two", "read", ("a",))
    grant_one, grant_two = make_grant(), make_grant(host="other.example")
    cache.put(one, grant_one)
    cache.put(two, grant_two)
    assert cache.get(one, 0) == grant_one
    assert cache.get(two, 0) == grant_two
    index = json.loads(memory.items[("cabroker", "index")])
    assert index == sorted([str(one), str(two)])
    item = json.loads(memory.items[("cabroker", KeyringStore.item(str(one)))])
    assert item == grant_one.to_json()
    assert len(memory.items) == 3  # the index and one item per grant
    assert cache.known_hosts() == {HOST, "other.example"}  # the hosts file, beside the lock
    assert sorted(path.name for path in tmp_path.iterdir()) == ["hosts", "tokens.lock"]
    assert cache.find_by_host("other.example") == grant_two
    assert cache.remove(one) is True
    assert set(memory.items) == {("cabroker", "index"), ("cabroker", KeyringStore.item(str(two)))}
    cache.clear()
    assert json.loads(memory.items[("cabroker", "index")]) == []
    assert set(memory.items) == {("cabroker", "index")}


def test_keyring_store_corrupt_index_and_missing_items(
    tmp_path: Path, memory: MemoryKeyring
) -> None:
    cache = TokenCache(KeyringStore(memory, tmp_path))
    keep, lost = CacheKey(BROKER, "keep"), CacheKey(BROKER, "lost")
    cache.put(keep, make_grant())
    cache.put(lost, make_grant())
    del memory.items[("cabroker", KeyringStore.item(str(lost)))]
    assert [key for key, _ in cache.entries()] == [keep]
    assert json.loads(memory.items[("cabroker", "index")]) == [str(keep)]  # repaired
    memory.items[("cabroker", "index")] = "{garbage"
    assert cache.entries() == []
    assert json.loads(memory.items[("cabroker", "index")]) == []


def test_a_locked_keyring_reads_as_empty_and_is_never_overwritten(
    tmp_path: Path, memory: MemoryKeyring
) -> None:
    cache = TokenCache(KeyringStore(memory, tmp_path))
    cache.put(CacheKey(BROKER), make_grant())
    before = dict(memory.items)
    memory.locked = True
    assert cache.get(CacheKey(BROKER), 0) is None
    with pytest.raises(FilesError, match=r"cannot read the system keyring.*CABROKER_TOKEN_STORE"):
        cache.put(CacheKey(BROKER, "other"), make_grant())
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
