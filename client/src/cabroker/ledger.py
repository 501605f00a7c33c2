"""The ledger ``logout`` undoes: every file ``login`` wrote, how to take our entry out again.

:class:`Ledger` writes files (atomically, mode 0600) and remembers, per file, the bytes and mode
*before* the first write and the SHA-256 of the last write. :meth:`Ledger.restore` puts the
original bytes back when the file is still what we wrote; when the user changed it since, only
our entry is taken out (the user's own previous entry put back in its place) and the outcome
says so. A file the ledger does not name is never touched. Nothing is ever written inside a
Python project (:mod:`cabroker.placement`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from .entries import Owned
from .errors import FilesError
from .filetext import decode as _text
from .filetext import sha256 as _sha256
from .placement import check_not_in_project

LEDGER_VERSION = 1
DEFAULT_MODE = 0o600


class Action(StrEnum):
    RESTORED = "restored"  # the original bytes and mode are back
    DELETED = "deleted"  # it did not exist before login
    REMOVED_ENTRIES = "removed-entries"  # changed since: only our entry was taken out
    LEFT = "left"  # changed since, our entry too (or unknown): not touched
    MISSING = "missing"  # deleted since: nothing to undo
    FAILED = "failed"  # could not be restored; still in the ledger


@dataclass(frozen=True)
class Outcome:
    path: Path
    action: Action
    detail: str

    def __str__(self) -> str:
        return f"{self.path}: {self.detail}"


class RestoreIncomplete(FilesError):
    """Some files could not be restored: they stay in the ledger for the next ``logout``."""

    def __init__(self, message: str, outcomes: list[Outcome]) -> None:
        super().__init__(message)
        self.outcomes = outcomes


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(data: object) -> bytes | None:
    return None if data is None else base64.b64decode(str(data), validate=True)


def _read(path: Path) -> tuple[bytes | None, int | None]:
    """(bytes, permission bits) of ``path``, or (None, None) when it does not exist."""
    try:
        with path.open("rb") as handle:
            return handle.read(), stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
    except FileNotFoundError:
        return None, None
    except OSError as error:
        raise FilesError(
            f"cannot read {path} ({error.strerror}): check its permissions, then try again"
        ) from None


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync, and rename it over ``path``."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    if sys.platform != "win32":
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _make_parents(directory: Path) -> list[str]:
    """Create ``directory`` and missing parents (0700); the ones created, outermost first."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        if directory.parent == directory:
            break
        directory = directory.parent
    for path in reversed(missing):
        path.mkdir(mode=0o700, exist_ok=True)
    return [str(path) for path in reversed(missing)]


def _files_error(path: Path, error: OSError, doing: str) -> FilesError:
    return FilesError(
        f"cannot {doing} {path} ({error.strerror or type(error).__name__}): check the "
        "permissions of the file and its directory and the free space, then run it again"
    )


class Ledger:
    """The record of the files ``login`` wrote, in a JSON file (mode 0600), guarded by an
    exclusive ``flock`` on ``<ledger>.lock`` for every read-modify-write.

    Per file (keyed by its resolved absolute path): ``before`` (base64 of the bytes before the
    first write, null when it did not exist), ``mode_before``, ``sha256`` and ``mode`` of our
    last write, ``owned`` (our entry: kind, name, sha256) and ``created_dirs``.
    """

    def __init__(self, path: Path, *, home: Path | None = None) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.home = home

    # --- reading --------------------------------------------------------------------------

    def records(self) -> dict[str, dict[str, Any]]:
        """The ledger's records by path ({} when there is no ledger)."""
        data, _ = _read(self.path)
        if data is None:
            return {}
        try:
            document = json.loads(data)
            files = document["files"]
            if document.get("version") != LEDGER_VERSION or not isinstance(files, dict):
                raise ValueError("unknown layout")
            for record in files.values():
                _unb64(record["before"])
                str(record["sha256"])
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as error:
            raise FilesError(
                f"the ledger {self.path} is damaged ({type(error).__name__}); it records what "
                "logout restores: repair it, or delete it to forget those files"
            ) from None
        return files

    def paths(self) -> list[Path]:
        """The files ``logout`` would restore."""
        return [Path(path) for path in self.records()]

    # --- writing --------------------------------------------------------------------------

    def apply(
        self,
        path: Path,
        new_bytes: bytes,
        mode: int | None = DEFAULT_MODE,
        *,
        owned: Owned | None = None,
    ) -> Path:
        """Write ``new_bytes`` to ``path`` atomically (``mode``; None keeps the file's mode,
        0600 for a new file) and record it; returns the resolved path written."""
        return self.edit(path, lambda _: new_bytes, mode, owned=owned)

    def edit(
        self,
        path: Path,
        change: Callable[[bytes | None], bytes],
        mode: int | None = DEFAULT_MODE,
        *,
        owned: Owned | None = None,
    ) -> Path:
        """Like :meth:`apply`, with the new bytes computed from the current ones (``None``:
        no such file) while the ledger is locked, so concurrent logins do not lose edits."""
        target = self._target(path)
        with self._locked():
            records = self.records()
            current, current_mode = _read(target)
            new_bytes = change(current)
            record = records.get(str(target))
            if record is None:
                record = {"before": _b64(current), "mode_before": current_mode}
            elif current is None or _sha256(current) != record["sha256"]:
                # Changed since our last write: that change is the user's, keep it in "before".
                record.update(self._rebase(record, current, current_mode, owned))
            final_mode = mode if mode is not None else (current_mode or DEFAULT_MODE)
            try:
                created = _make_parents(target.parent)
                _write_atomic(target, new_bytes, final_mode)
            except OSError as error:
                raise _files_error(target, error, "write") from None
            record["created_dirs"] = [*record.get("created_dirs", []), *created]
            record["sha256"] = _sha256(new_bytes)
            record["mode"] = final_mode
            if owned is not None:
                entry = owned.entry(_text(new_bytes))
                record["owned"] = {
                    "kind": owned.kind,
                    "name": owned.name,
                    "sha256": None if entry is None else _sha256(entry),
                }
            records[str(target)] = record
            self._save(records)
        return target

    def _rebase(
        self,
        record: dict[str, Any],
        current: bytes | None,
        current_mode: int | None,
        owned: Owned | None,
    ) -> dict[str, Any]:
        if current is None:
            return {"before": None, "mode_before": None}
        kept = _owned(record) or owned
        if kept is None:
            return {}  # no way to tell ours from theirs: the original "before" stays
        reverted = kept.revert(current, _unb64(record["before"]), None)
        if record["before"] is None and reverted is not None and not reverted.strip():
            reverted = None  # nothing of the user's in it: it still did not exist "before"
        mode_before = record["mode_before"]
        if current_mode != record.get("mode"):
            mode_before = current_mode
        return {"before": _b64(reverted), "mode_before": mode_before}

    # --- restoring ------------------------------------------------------------------------

    def restore(self) -> list[Outcome]:
        """Undo every recorded write (see the module doc), then clear the ledger.

        Raises :class:`RestoreIncomplete` (with every outcome) when a file could not be
        restored; those records stay in the ledger.
        """
        outcomes: list[Outcome] = []
        with self._locked():
            records = self.records()
            remaining: dict[str, dict[str, Any]] = {}
            for key, record in records.items():
                path = Path(key)
                try:
                    outcomes.append(self._restore_one(path, record))
                except (OSError, FilesError) as error:
                    detail = getattr(error, "strerror", None) or str(error)
                    outcomes.append(Outcome(path, Action.FAILED, f"not restored: {detail}"))
                    remaining[key] = record
            self._save(remaining)
        failed = [outcome for outcome in outcomes if outcome.action is Action.FAILED]
        if failed:
            raise RestoreIncomplete(
                f"could not restore {', '.join(str(o.path) for o in failed)}: fix the "
                "permissions, then run logout again",
                outcomes,
            )
        return outcomes

    def _restore_one(self, path: Path, record: dict[str, Any]) -> Outcome:
        current, current_mode = _read(path)
        before = _unb64(record["before"])
        mode_before = record.get("mode_before")
        if current is not None and _sha256(current) == record["sha256"]:
            if before is None:
                path.unlink()
                _remove_dirs(record.get("created_dirs", []))
                return Outcome(path, Action.DELETED, "removed (it did not exist before login)")
            _write_atomic(path, before, mode_before if mode_before is not None else DEFAULT_MODE)
            return Outcome(path, Action.RESTORED, "restored as it was before login")
        if current is None:
            return Outcome(path, Action.MISSING, "no longer exists: nothing to undo")
        owned = _owned(record)
        reverted = None if owned is None else owned.revert(current, before, _owned_sha(record))
        if reverted is None:
            return Outcome(
                path, Action.LEFT, "changed since login, cabroker's entry too: left as it is"
            )
        if reverted == current:
            return Outcome(path, Action.LEFT, "changed since login, no cabroker entry left in it")
        if before is None and not reverted.strip():
            path.unlink()
            _remove_dirs(record.get("created_dirs", []))
            return Outcome(path, Action.DELETED, "removed (only cabroker's entry was left)")
        mode = current_mode if current_mode is not None else DEFAULT_MODE
        if mode_before is not None and current_mode == record.get("mode"):
            mode = mode_before
        _write_atomic(path, reverted, mode)
        return Outcome(
            path, Action.REMOVED_ENTRIES, "changed since login: removed only cabroker's entry"
        )

    # --- the ledger file itself -----------------------------------------------------------

    def _target(self, path: Path) -> Path:
        target = Path(os.path.abspath(path)).resolve()
        check_not_in_project(target, self.home)
        return target

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            raise _files_error(self.lock_path, error, "create") from None
        try:
            _lock(fd)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _save(self, records: dict[str, dict[str, Any]]) -> None:
        try:
            if not records:
                self.path.unlink(missing_ok=True)
                return
            document = {"version": LEDGER_VERSION, "files": records}
            data = json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"
            _write_atomic(self.path, data, DEFAULT_MODE)
        except OSError as error:
            raise _files_error(self.path, error, "write the ledger") from None


def _owned(record: Mapping[str, Any]) -> Owned | None:
    owned = record.get("owned")
    return Owned(str(owned["kind"]), str(owned["name"])) if owned else None


def _owned_sha(record: Mapping[str, Any]) -> str | None:
    owned = record.get("owned")
    return str(owned["sha256"]) if owned and owned.get("sha256") else None


def _remove_dirs(directories: list[str]) -> None:
    """Remove the directories login created, innermost first, while they are empty."""
    for directory in reversed(directories):
        try:
            os.rmdir(directory)
        except OSError:
            return


def _lock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                return
            except OSError:  # LK_LOCK gives up after 10 s: keep waiting
                continue
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)
