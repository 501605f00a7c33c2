"""Tokens at rest: the grants ``cabroker`` obtained, by what was asked, until they expire.

Where they are kept (``TokenCache.default()`` chooses; ``CABROKER_TOKEN_STORE=file|keyring``
forces one):

- the system keyring (macOS Keychain, Secret Service, Windows Credential Locker) when a usable
  one is configured: one item per grant plus an ``index`` item listing their keys, since a
  keyring cannot list what it holds (:class:`KeyringStore`);
- else ``tokens.json``, mode 0600, in the user cache directory (:func:`cache_dir`, mode 0700)
  (:class:`FileStore`).

Either way the cache directory holds ``tokens.lock``, locked (``flock``) around every
read-modify-write, and ``hosts``, the repository hosts of the stored grants one a line: the
keyring backend reads only that small file to decide, cheaply, that a host is not ours.

Expired grants are dropped whenever the cache is written.  A corrupt cache file is treated as
empty and rewritten; an unreadable one as empty.  Nothing here imports ``requests`` or
``keyring`` until a keyring is actually used.

=============== ===========================================================================
key             :class:`CacheKey`: broker URL, repository, access, packages (as asked)
TTL             the grant's own ``expires_at``; ``get`` wants ``min_seconds_left`` more
negative        not cached: a refused request is asked again next time
stale-if-error  none: an expired grant is never returned
=============== ===========================================================================
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from .broker import Grant
from .errors import FilesError, UsageError

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

log = logging.getLogger(__name__)

APP = "cabroker"
TOKENS_FILE = "tokens.json"
LOCK_FILE = "tokens.lock"
HOSTS_FILE = "hosts"
FORMAT_VERSION = 1
KEYRING_SERVICE = "cabroker"
KEYRING_INDEX = "index"
STORE_ENV = "CABROKER_TOKEN_STORE"

RawEntries = dict[str, dict[str, Any]]


# --- where ----------------------------------------------------------------------------------


def cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    """The user cache directory: ``$XDG_CACHE_HOME/cabroker`` when set (any POSIX system),
    else ``~/Library/Caches/cabroker`` (macOS), ``%LOCALAPPDATA%\\cabroker\\Cache`` (Windows)
    or ``~/.cache/cabroker``."""
    if sys.platform == "win32":
        base = env.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / APP / "Cache"
    xdg = env.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / APP
    home = Path(env.get("HOME") or Path.home())
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / APP
    return home / ".cache" / APP


def host_of(url: str) -> str | None:
    """The lower-case host name of a URL (no port, no user), or None."""
    try:
        return urlsplit(url).hostname or None
    except ValueError:
        return None


def known_hosts(directory: Path | None = None) -> frozenset[str]:
    """The hosts in ``<cache dir>/hosts``: cheap, for the keyring backend's first check."""
    path = (directory if directory is not None else cache_dir()) / HOSTS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return frozenset()
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


# --- keys -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CacheKey:
    """What was asked of a broker; None leaves the choice to the broker (its default).

    ``broker_url`` loses trailing slashes and ``packages`` is sorted without duplicates, so the
    same request is one key however it was spelled.  ``str(key)`` is its stable string form,
    read back by :meth:`parse`.
    """

    broker_url: str
    repository: str | None = None
    access: str | None = None
    packages: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "broker_url", self.broker_url.rstrip("/"))
        object.__setattr__(self, "packages", tuple(sorted(set(self.packages))))

    def __str__(self) -> str:
        fields = [self.broker_url, self.repository, self.access, list(self.packages)]
        return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def parse(cls, text: str) -> CacheKey:
        """The key whose ``str`` is ``text``; ValueError when it is not one."""
        fields = json.loads(text)
        if not isinstance(fields, list) or len(fields) != 4:
            raise ValueError("a cache key is a JSON array of four fields")
        url, repository, access, packages = fields
        optional = (repository, access)
        if (
            not isinstance(url, str)
            or not all(value is None or isinstance(value, str) for value in optional)
            or not isinstance(packages, list)
            or not all(isinstance(package, str) for package in packages)
        ):
            raise ValueError("a cache key's fields have the wrong types")
        return cls(url, repository, access, tuple(packages))


# --- stores ---------------------------------------------------------------------------------


class Store(Protocol):
    """Where the raw entries (``str(key)`` → ``Grant.to_json()``) are kept.

    ``read`` returns the entries it could read and whether what is stored is sound (when not,
    the cache rewrites it); it raises ``FilesError`` when the store cannot be read at all, and
    so does ``write``.  ``directory`` holds the lock and the hosts file.
    """

    directory: Path

    def read(self) -> tuple[RawEntries, bool]: ...

    def write(self, entries: RawEntries, previous: RawEntries) -> None: ...


class FileStore:
    """A JSON file, mode 0600, in a directory of mode 0700, replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.directory = path.parent

    def __repr__(self) -> str:
        return f"FileStore({str(self.path)!r})"

    def read(self) -> tuple[RawEntries, bool]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}, True
        except OSError as error:
            log.debug("cannot read %s (%s): treated as empty", self.path, error)
            return {}, False
        try:
            document = json.loads(data)
        except ValueError:  # also UnicodeDecodeError
            log.debug("%s is not JSON: treated as empty", self.path)
            return {}, False
        if not isinstance(document, dict) or not isinstance(document.get("entries"), dict):
            log.debug("%s is not a token cache: treated as empty", self.path)
            return {}, False
        entries = {k: v for k, v in document["entries"].items() if isinstance(v, dict)}
        return entries, len(entries) == len(document["entries"])

    def write(self, entries: RawEntries, previous: RawEntries) -> None:
        document = {"version": FORMAT_VERSION, "entries": entries}
        data = json.dumps(document, indent=1, sort_keys=True).encode("utf-8")
        try:
            atomic_write(self.path, data)
        except OSError as error:
            raise FilesError(
                f"cannot write the token cache {self.path} ({error.strerror or error}); "
                "check that directory's permissions"
            ) from None


class KeyringStore:
    """The system keyring: item ``grant-<sha256 of the key>`` per grant, and ``index``, the
    JSON list of the keys, all under the service ``cabroker``."""

    def __init__(
        self, backend: KeyringBackend | None = None, directory: Path | None = None
    ) -> None:
        if backend is None:
            backend = system_keyring()
            if backend is None:
                raise FilesError(
                    "no usable system keyring: unset CABROKER_TOKEN_STORE or set it to 'file'"
                )
        self.backend = backend
        self.directory = directory if directory is not None else cache_dir()

    def __repr__(self) -> str:
        return f"KeyringStore({type(self.backend).__module__}.{type(self.backend).__name__})"

    @staticmethod
    def item(key: str) -> str:
        return "grant-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]

    def read(self) -> tuple[RawEntries, bool]:
        from keyring.errors import KeyringError

        try:
            index = self.backend.get_password(KEYRING_SERVICE, KEYRING_INDEX)
            if index is None:
                return {}, True
            try:
                keys = json.loads(index)
            except ValueError:
                return {}, False
            if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
                return {}, False
            entries: RawEntries = {}
            sound = True
            for key in keys:
                text = self.backend.get_password(KEYRING_SERVICE, self.item(key))
                try:
                    value = json.loads(text) if text is not None else None
                except ValueError:
                    value = None
                if isinstance(value, dict):
                    entries[key] = value
                else:
                    sound = False
        except KeyringError as error:
            raise FilesError(
                f"cannot read the system keyring ({type(error).__name__}: {error}); "
                f"unlock it, or set {STORE_ENV}=file"
            ) from None
        return entries, sound

    def write(self, entries: RawEntries, previous: RawEntries) -> None:
        from keyring.errors import KeyringError, PasswordDeleteError

        try:
            for key, value in entries.items():
                if previous.get(key) != value:
                    text = json.dumps(value, sort_keys=True)
                    self.backend.set_password(KEYRING_SERVICE, self.item(key), text)
            index = json.dumps(sorted(entries), separators=(",", ":"))
            self.backend.set_password(KEYRING_SERVICE, KEYRING_INDEX, index)
            for key in previous.keys() - entries.keys():
                with contextlib.suppress(PasswordDeleteError):
                    self.backend.delete_password(KEYRING_SERVICE, self.item(key))
        except KeyringError as error:
            raise FilesError(
                f"cannot write to the system keyring ({type(error).__name__}: {error}); "
                f"unlock it, or set {STORE_ENV}=file"
            ) from None


def system_keyring() -> KeyringBackend | None:
    """The keyring backend tokens may be kept in, or None: never the fail or null backends, a
    chainer of nothing, or cabroker's own backend (it reads this cache: that would recurse)."""
    try:
        import keyring  # optional (the "keyring" extra), and not cheap to set up
        from keyring.backends.chainer import ChainerBackend
    except ImportError:
        return None
    try:
        chosen = keyring.get_keyring()
        if _ours(chosen):  # chosen for its priority: use what would be chosen without it
            candidates = list(ChainerBackend.backends)
        elif isinstance(chosen, ChainerBackend):
            candidates = list(chosen.backends)
        else:
            candidates = [chosen]
        return next((backend for backend in candidates if _usable(backend)), None)
    except Exception as error:  # noqa: BLE001 - a broken keyring setup means "no keyring"
        log.debug("no usable keyring (%s: %s)", type(error).__name__, error)
        return None


def _ours(backend: KeyringBackend) -> bool:
    return type(backend).__module__ == "cabroker.keyring_backend"


def _usable(backend: KeyringBackend) -> bool:
    from keyring.backends import chainer, fail, null

    if _ours(backend) or isinstance(backend, fail.Keyring | null.Keyring | chainer.ChainerBackend):
        return False
    return float(backend.priority) > 0


# --- files ----------------------------------------------------------------------------------


def ensure_directory(directory: Path) -> None:
    """Create ``directory`` (mode 0700) and its parents; make it 0700 if it exists."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if sys.platform != "win32" and directory.stat().st_mode & 0o777 != 0o700:
        os.chmod(directory, 0o700)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file (mode 0600) beside ``path``, then rename it over ``path``."""
    ensure_directory(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            if sys.platform != "win32":
                os.fchmod(fd, 0o600)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold the exclusive lock ``<directory>/tokens.lock`` (``flock``; ``msvcrt`` on Windows)."""
    ensure_directory(directory)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if sys.platform == "win32":
            import msvcrt

            while True:
                try:
                    msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                    break
                except OSError:  # gives up after ten seconds: keep waiting
                    continue
            try:
                yield
            finally:
                os.lseek(fd, 0, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# --- the cache ------------------------------------------------------------------------------


def _decode(raw: RawEntries) -> dict[CacheKey, Grant]:
    entries: dict[CacheKey, Grant] = {}
    for text, value in raw.items():
        try:
            entries[CacheKey.parse(text)] = Grant.from_json(value)
        except (KeyError, TypeError, ValueError):
            log.debug("a token cache entry could not be read: dropped")
    return entries


def _encode(entries: Mapping[CacheKey, Grant]) -> RawEntries:
    return {str(key): grant.to_json() for key, grant in entries.items()}


def grant_hosts(grant: Grant) -> set[str]:
    """The hosts of a grant's index and upload URLs."""
    return {host for url in (grant.index_url, grant.upload_url) if (host := host_of(url))}


class TokenCache:
    """The grants obtained so far, by :class:`CacheKey`, in a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"TokenCache({self.store!r})"

    @classmethod
    def default(cls, env: Mapping[str, str] = os.environ) -> TokenCache:
        """The system keyring when one is usable, else the cache file; ``CABROKER_TOKEN_STORE``
        (``file``, ``keyring`` or ``auto``) overrides the choice."""
        choice = (env.get(STORE_ENV) or "auto").strip().lower()
        if choice not in {"auto", "file", "keyring"}:
            raise UsageError(f"{STORE_ENV} must be 'file', 'keyring' or 'auto', not {choice!r}")
        directory = cache_dir(env)
        if choice != "file":
            backend = system_keyring()
            if backend is not None:
                return cls(KeyringStore(backend, directory))
            if choice == "keyring":
                raise UsageError(
                    f"{STORE_ENV}=keyring but no usable system keyring was found; "
                    f"set {STORE_ENV}=file (or unset it)"
                )
        return cls(FileStore(directory / TOKENS_FILE))

    @property
    def directory(self) -> Path:
        return self.store.directory

    # --- reading ----------------------------------------------------------------------------

    def _load(self) -> dict[CacheKey, Grant]:
        try:
            raw, sound = self.store.read()
        except FilesError as error:
            log.debug("%s: treated as empty", error.message)
            return {}
        if not sound:
            self._repair()
        return _decode(raw)

    def _repair(self) -> None:
        """Rewrite a corrupt store with what could be read of it (under the lock, afresh)."""
        try:
            self._update(lambda entries: entries)
        except (FilesError, OSError) as error:
            log.debug("the token cache could not be repaired (%s)", error)

    def get(self, key: CacheKey, min_seconds_left: float = 0.0) -> Grant | None:
        """The grant for ``key``, unless missing or valid for less than ``min_seconds_left``."""
        grant = self._load().get(key)
        if grant is None or grant.seconds_left() <= max(min_seconds_left, 0.0):
            return None
        return grant

    def entries(self) -> list[tuple[CacheKey, Grant]]:
        """Everything stored, expired grants included (until the next write), by key."""
        return sorted(self._load().items(), key=lambda item: str(item[0]))

    def find_by_host(self, host: str) -> Grant | None:
        """The grant that expires last among those whose index or upload URL is on ``host``
        (expired ones included: the caller decides whether to refresh)."""
        host = host.lower()
        matching = [grant for grant in self._load().values() if host in grant_hosts(grant)]
        return max(matching, key=lambda grant: grant.expires_at, default=None)

    def known_hosts(self) -> frozenset[str]:
        """The hosts of the stored grants, from the small ``hosts`` file."""
        return known_hosts(self.directory)

    # --- writing ----------------------------------------------------------------------------

    def put(self, key: CacheKey, grant: Grant) -> None:
        def change(entries: dict[CacheKey, Grant]) -> dict[CacheKey, Grant]:
            entries[key] = grant
            return entries

        self._update(change)

    def remove(self, key: CacheKey) -> bool:
        """Forget ``key``'s grant; whether there was one."""
        found = False

        def change(entries: dict[CacheKey, Grant]) -> dict[CacheKey, Grant]:
            nonlocal found
            found = entries.pop(key, None) is not None
            return entries

        self._update(change)
        return found

    def clear(self) -> None:
        self._update(lambda entries: {})

    def _update(self, change: Callable[[dict[CacheKey, Grant]], dict[CacheKey, Grant]]) -> None:
        """Read, ``change``, drop what has expired and write, all under the lock."""
        try:
            with locked(self.directory):
                previous, sound = self.store.read()
                now = datetime.now(UTC)
                changed = change(_decode(previous))
                kept = {key: grant for key, grant in changed.items() if grant.seconds_left(now) > 0}
                entries = _encode(kept)
                if not sound or entries != previous:
                    self.store.write(entries, previous)
                self._write_hosts(kept.values())
        except OSError as error:
            raise FilesError(
                f"cannot update the token cache in {self.directory} "
                f"({error.strerror or error}); check that directory's permissions"
            ) from None

    def _write_hosts(self, grants: Iterable[Grant]) -> None:
        hosts: set[str] = set()
        for grant in grants:
            hosts |= grant_hosts(grant)
        path = self.directory / HOSTS_FILE
        if hosts != self.known_hosts() or not path.exists():
            atomic_write(path, "".join(f"{host}\n" for host in sorted(hosts)).encode("utf-8"))
