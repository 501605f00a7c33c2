"""Tokens at rest: the grants ``cabroker`` obtained, by what was asked, until they expire.

Where they are kept (``TokenCache.default()`` chooses; ``CABROKER_TOKEN_STORE=file|keyring``
forces one):

- the system keyring (macOS Keychain, Secret Service, Windows Credential Locker) when a usable
  one is configured: one item per grant plus an ``index`` item listing their keys, since a
  keyring cannot list what it holds (:class:`KeyringStore`);
- else ``tokens.json``, mode 0600, in the user cache directory (:func:`cache_dir`, mode 0700)
  (:class:`FileStore`).

A keyring item that would not fit the keyring is never written there: on Windows the Credential
Manager refuses blobs over 2,560 bytes (:data:`WINDOWS_BLOB_LIMIT`), and a CodeArtifact token
with its metadata is larger; such grants are kept in ``tokens.json`` (mode 0600) instead, and
read back from there.

Either way the cache directory holds ``tokens.lock``, locked (``flock``) around every
read-modify-write, and ``scopes``, the repository endpoints of the stored grants
(``https://host:443/pypi/repo/``) one a line: the keyring backend reads only that small file to
decide, cheaply, that a URL is not ours.

Expired grants are dropped whenever the cache is written.  A corrupt cache file is treated as
empty and rewritten; an unreadable one as empty.  Nothing here imports ``requests`` or
``keyring`` until a keyring is actually used.

=============== ===========================================================================
key             :class:`CacheKey`: broker URL, repository, access, packages (as asked), and
                the identity: the binding of the ID token's claims and where it came from
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
from dataclasses import dataclass, field
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
SCOPES_FILE = "scopes"
FORMAT_VERSION = 2  # 2: keys name the identity; entries of version 1 are dropped
# The Windows Credential Manager's CRED_MAX_CREDENTIAL_BLOB_SIZE; keyring stores the password
# as UTF-16, so this many bytes of UTF-16 is the most an item may take there.
WINDOWS_BLOB_LIMIT = 2560
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


def scope_of(url: str) -> str | None:
    """The repository endpoint ``url`` lies in, as ``scheme://host:port/path/`` (lower-case
    host, explicit port, the path up to its last ``/``, without a trailing ``simple/``), or
    None when ``url`` is not an absolute http(s) URL.  Two URLs are served by one grant only
    when one's scope starts with the other's: same scheme, host, port and repository path."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return None
    segments = parts.path.split("/")
    if any(segment in (".", "..") or "%2e" in segment.lower() for segment in segments):
        return None  # a dot segment could climb out of the repository's path
    port = port if port is not None else (443 if parts.scheme == "https" else 80)
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    path = parts.path[: parts.path.rfind("/") + 1] or "/"
    return f"{parts.scheme}://{host}:{port}{path.removesuffix('simple/')}"


def grant_scopes(grant: Grant) -> set[str]:
    """The repository endpoints of a grant's index and upload URLs."""
    return {scope for url in (grant.index_url, grant.upload_url) if (scope := scope_of(url))}


def serves(scopes: Iterable[str], url: str) -> bool:
    """Whether ``url`` lies in one of ``scopes`` (same scheme, host, port, and under the path)."""
    wanted = scope_of(url)
    return wanted is not None and any(wanted.startswith(scope) for scope in scopes)


def known_scopes(directory: Path | None = None) -> frozenset[str]:
    """The scopes in ``<cache dir>/scopes``: cheap, for the keyring backend's first check."""
    path = (directory if directory is not None else cache_dir()) / SCOPES_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return frozenset()
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


# --- keys -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CacheKey:
    """What was asked of a broker, and by whom.

    ``repository`` and ``access`` None leave the choice to the broker (its default).
    ``identity`` is the binding of the ID token's claims (``cabroker.identity.binding``), and
    ``source`` (not compared: one identity, one grant per request) where it last came from
    (``file:<path>``, ``env``, ``device:<issuer>`` or the CI's name), so the keyring backend
    can find the same identity again.  ``broker_url`` loses
    trailing slashes and ``packages`` is sorted without duplicates, so the same request is one
    key however it was spelled.  ``str(key)`` is its stable string form, read back by
    :meth:`parse`.
    """

    broker_url: str
    repository: str | None = None
    access: str | None = None
    packages: tuple[str, ...] = ()
    identity: str = ""
    source: str = field(default="", compare=False)  # a hint: the identity is what counts

    def __post_init__(self) -> None:
        object.__setattr__(self, "broker_url", self.broker_url.rstrip("/"))
        object.__setattr__(self, "packages", tuple(sorted(set(self.packages))))

    def __str__(self) -> str:
        fields = [
            self.broker_url,
            self.repository,
            self.access,
            list(self.packages),
            self.identity,
            self.source,
        ]
        return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)

    def asks(
        self, broker_url: str, repository: str | None, access: str | None, packages: Iterable[str]
    ) -> bool:
        """Whether this key is for that request (whoever asked it)."""
        return (self.broker_url, self.repository, self.access, self.packages) == (
            broker_url.rstrip("/"),
            repository,
            access,
            tuple(sorted(set(packages))),
        )

    @classmethod
    def parse(cls, text: str) -> CacheKey:
        """The key whose ``str`` is ``text``; ValueError when it is not one."""
        fields = json.loads(text)
        if not isinstance(fields, list) or len(fields) != 6:
            raise ValueError("a cache key is a JSON array of six fields")
        url, repository, access, packages, identity, source = fields
        optional = (repository, access)
        if (
            not isinstance(url, str)
            or not all(value is None or isinstance(value, str) for value in optional)
            or not isinstance(packages, list)
            or not all(isinstance(package, str) for package in packages)
            or not isinstance(identity, str)
            or not identity
            or not isinstance(source, str)
        ):
            raise ValueError("a cache key's fields have the wrong types")
        return cls(url, repository, access, tuple(packages), identity, source)


# --- stores ---------------------------------------------------------------------------------


class Store(Protocol):
    """Where the raw entries (``str(key)`` → ``Grant.to_json()``) are kept.

    ``read`` returns the entries it could read and whether what is stored is sound (when not,
    the cache rewrites it); it raises ``FilesError`` when the store cannot be read at all, and
    so does ``write``.  ``directory`` holds the lock and the scopes file.
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
        if document.get("version") != FORMAT_VERSION:
            log.debug("%s is of another version: treated as empty", self.path)
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
    """The system keyring: item ``grant-<sha256 of the key>`` per grant (its value the JSON of
    the key and the grant) and ``index``, the JSON list of those item names, all under the
    service ``cabroker``.

    An item is written to the keyring only when it fits ``item_limit`` (bytes of UTF-16, the
    strictest encoding a backend uses; default: :func:`blob_limit` of the backend) and the
    keyring takes it; any other grant is kept in ``spill``, the 0600 token file, instead.
    """

    def __init__(
        self,
        backend: KeyringBackend | None = None,
        directory: Path | None = None,
        *,
        item_limit: int | None = None,
        service: str = KEYRING_SERVICE,
        spill_name: str = TOKENS_FILE,
    ) -> None:
        if backend is None:
            backend = system_keyring()
            if backend is None:
                raise FilesError(
                    "no usable system keyring: unset CABROKER_TOKEN_STORE or set it to 'file'"
                )
        self.backend = backend
        self.directory = directory if directory is not None else cache_dir()
        self.item_limit = item_limit if item_limit is not None else blob_limit(backend)
        self.service = service
        self.spill = FileStore(self.directory / spill_name)

    def __repr__(self) -> str:
        return f"KeyringStore({type(self.backend).__module__}.{type(self.backend).__name__})"

    @staticmethod
    def item(key: str) -> str:
        return "grant-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]

    def fits(self, text: str) -> bool:
        return self.item_limit is None or len(text.encode("utf-16-le")) <= self.item_limit

    def read(self) -> tuple[RawEntries, bool]:
        from keyring.errors import KeyringError

        spilled, spill_sound = self.spill.read()
        try:
            index = self.backend.get_password(self.service, KEYRING_INDEX)
            if index is None:
                return spilled, spill_sound
            try:
                items = json.loads(index)
            except ValueError:
                return spilled, False
            if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
                return spilled, False
            entries: RawEntries = {}
            sound = spill_sound
            for item in items:
                text = self.backend.get_password(self.service, item)
                try:
                    value = json.loads(text) if text is not None else None
                except ValueError:
                    value = None
                if (
                    isinstance(value, dict)
                    and isinstance(value.get("key"), str)
                    and isinstance(value.get("grant"), dict)
                    and self.item(value["key"]) == item
                ):
                    entries[value["key"]] = value["grant"]
                else:
                    sound = False
        except KeyringError as error:
            raise FilesError(
                f"cannot read the system keyring ({type(error).__name__}: {error}); "
                f"unlock it, or set {STORE_ENV}=file"
            ) from None
        return {**spilled, **entries}, sound

    def write(self, entries: RawEntries, previous: RawEntries) -> None:
        from keyring.errors import KeyringError, PasswordDeleteError

        kept: list[str] = []
        spilled: RawEntries = {}
        try:
            # longest-lived first: when the index itself would not fit, the shortest spill
            for key in sorted(
                entries, key=lambda k: str(entries[k].get("expires_at")), reverse=True
            ):
                text = json.dumps({"key": key, "grant": entries[key]}, sort_keys=True)
                index = json.dumps(sorted([*kept, self.item(key)]), separators=(",", ":"))
                if not (self.fits(text) and self.fits(index)) or not self._set(key, text):
                    spilled[key] = entries[key]
                    continue
                kept.append(self.item(key))
            self.backend.set_password(
                self.service, KEYRING_INDEX, json.dumps(sorted(kept), separators=(",", ":"))
            )
            for key in previous.keys() - entries.keys() | spilled.keys():
                with contextlib.suppress(PasswordDeleteError):
                    self.backend.delete_password(self.service, self.item(key))
        except KeyringError as error:
            raise FilesError(
                f"cannot write to the system keyring ({type(error).__name__}: {error}); "
                f"unlock it, or set {STORE_ENV}=file"
            ) from None
        if spilled or self.spill.path.exists():
            self.spill.write(spilled, {})

    def _set(self, key: str, text: str) -> bool:
        """Write one item; False when the keyring refuses it (it is kept in the file)."""
        try:
            current = self.backend.get_password(self.service, self.item(key))
            if current != text:
                self.backend.set_password(self.service, self.item(key), text)
        except Exception as error:  # noqa: BLE001 - e.g. pywintypes.error: too big for it
            log.debug("the keyring refused a token (%s): kept in the file", type(error).__name__)
            return False
        return True


def blob_limit(backend: KeyringBackend) -> int | None:
    """The most bytes (UTF-16) one item may take in ``backend``: the Windows Credential
    Manager's limit for its backends, None (no known limit) for the others."""
    module = type(backend).__module__
    return WINDOWS_BLOB_LIMIT if module.startswith("keyring.backends.Windows") else None


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


def default_store(env: Mapping[str, str], file_name: str, service: str) -> Store:
    """The system keyring (service ``service``, spilling what does not fit to ``file_name``)
    when one is usable, else the 0600 file ``file_name`` in the cache directory;
    ``CABROKER_TOKEN_STORE`` (``file``, ``keyring`` or ``auto``) overrides the choice."""
    choice = (env.get(STORE_ENV) or "auto").strip().lower()
    if choice not in {"auto", "file", "keyring"}:
        raise UsageError(f"{STORE_ENV} must be 'file', 'keyring' or 'auto', not {choice!r}")
    directory = cache_dir(env)
    if choice != "file":
        backend = system_keyring()
        if backend is not None:
            return KeyringStore(backend, directory, service=service, spill_name=file_name)
        if choice == "keyring":
            raise UsageError(
                f"{STORE_ENV}=keyring but no usable system keyring was found; "
                f"set {STORE_ENV}=file (or unset it)"
            )
    return FileStore(directory / file_name)


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
        return cls(default_store(env, TOKENS_FILE, KEYRING_SERVICE))

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

    def known_scopes(self) -> frozenset[str]:
        """The repository endpoints of the stored grants, from the small ``scopes`` file."""
        return known_scopes(self.directory)

    # --- writing ----------------------------------------------------------------------------

    def put(self, key: CacheKey, grant: Grant) -> None:
        def change(entries: dict[CacheKey, Grant]) -> dict[CacheKey, Grant]:
            entries.pop(key, None)  # an equal key keeps its old source otherwise
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
                self._write_scopes(kept.values())
        except OSError as error:
            raise FilesError(
                f"cannot update the token cache in {self.directory} "
                f"({error.strerror or error}); check that directory's permissions"
            ) from None

    def _write_scopes(self, grants: Iterable[Grant]) -> None:
        scopes: set[str] = set()
        for grant in grants:
            scopes |= grant_scopes(grant)
        path = self.directory / SCOPES_FILE
        if scopes != self.known_scopes() or not path.exists():
            atomic_write(path, "".join(f"{scope}\n" for scope in sorted(scopes)).encode("utf-8"))
