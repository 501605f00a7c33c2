"""The ledger ``logout`` undoes: every entry any ``login`` wrote, file by file.

Per file (keyed by its resolved absolute path) the ledger records whether the file existed
before the first login, its mode then, the SHA-256 and mode of our last write, the directories
login created for it, and each :class:`~cabroker.entries.Entry` we wrote into it, in the order
written: which entry is ours, what user text it replaced, what we added around it.
:meth:`Ledger.restore` takes them out again, last first: a file nobody changed since comes back
byte for byte (mode included), a file the user changed keeps their changes, and a file that did
not exist is deleted when nothing but ours was in it. Then the ledger forgets the file. A file
the ledger does not name is never touched.

Nothing is written inside a project, a git work tree or a build context unless the user
overrides it (:mod:`cabroker.placement`), and no read or write, at login or at logout, follows a
link or happens in a directory others can write (:mod:`cabroker.safeio`): a file whose directory
is now reached through a link, or that is now a link, is not restored and stays in the ledger.

The ledger never holds a token: entries record hashes and the user's own text only, and a
CodeArtifact credential that login replaced is not kept (see :mod:`cabroker.entries`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from . import placement, safeio
from .entries import PYPIRC_SECTION, Entry, Status, holds_credential, keeping, take_out
from .errors import FilesError
from .filetext import decode, encode, sha256

LEDGER_VERSION = 2
DEFAULT_MODE = 0o600

Put = Callable[[str], tuple[str, list[Entry]]]


class Action(StrEnum):
    RESTORED = "restored"  # as it was before login (the original bytes and mode are back)
    DELETED = "deleted"  # it did not exist before login: removed
    REMOVED_ENTRIES = "removed-entries"  # changed since: only our entries were taken out
    LEFT = "left"  # nothing of ours left in it (or only entries the user made theirs)
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


@dataclass
class FileRecord:
    """What the ledger knows about one file."""

    existed: bool  # the file existed before the first login
    mode_before: int | None  # its mode then (or the mode the user gave it since)
    mode: int = DEFAULT_MODE  # the mode of our last write
    sha256: str = ""  # of our last write
    created_dirs: list[str] = field(default_factory=list)  # made for it, outermost first
    entries: list[Entry] = field(default_factory=list)  # ours, in the order first written

    def to_json(self) -> dict[str, Any]:
        return {
            "existed": self.existed,
            "mode_before": self.mode_before,
            "mode": self.mode,
            "sha256": self.sha256,
            "created_dirs": self.created_dirs,
            "entries": [entry.to_json() for entry in self.entries],
        }

    @classmethod
    def from_json(cls, data: object) -> FileRecord:
        if not isinstance(data, dict) or set(data) != set(cls.__dataclass_fields__):
            raise ValueError("not a file record")
        record = cls(**{**data, "entries": [Entry.from_json(e) for e in data["entries"]]})
        if (
            not isinstance(record.existed, bool)
            or not isinstance(record.mode_before, int | None)
            or not isinstance(record.mode, int)
            or not isinstance(record.sha256, str)
            or not all(isinstance(path, str) for path in record.created_dirs)
        ):
            raise ValueError("not a file record")
        return record


def _files_error(path: Path, error: OSError, doing: str) -> FilesError:
    return FilesError(
        f"cannot {doing} {path} ({error.strerror or type(error).__name__}): check the "
        "permissions of the file and its directory and the free space, then run it again"
    )


class Ledger:
    """The record of the entries ``login`` wrote, in a JSON file (mode 0600), guarded by an
    exclusive ``flock`` on ``<ledger>.lock`` for every read-modify-write."""

    def __init__(self, path: Path, *, home: Path | None = None) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.home = home

    # --- reading --------------------------------------------------------------------------

    def records(self) -> dict[str, FileRecord]:
        """The ledger's records by path ({} when there is no ledger)."""
        data = self._read_ledger()
        if data is None:
            return {}
        try:
            document = json.loads(data)
            if not isinstance(document, dict) or not isinstance(document.get("files"), dict):
                raise ValueError("unknown layout")
            if document.get("version") != LEDGER_VERSION:
                raise ValueError(f"layout version {document.get('version')!r}")
            return {
                str(path): FileRecord.from_json(record)
                for path, record in document["files"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise FilesError(
                f"the ledger {self.path} is damaged or from another cabroker version "
                f"({type(error).__name__}: {error}); it records what logout restores: repair "
                "it, or delete it to forget those files"
            ) from None

    def paths(self) -> list[Path]:
        """The files ``logout`` would restore."""
        return [Path(path) for path in self.records()]

    # --- writing --------------------------------------------------------------------------

    def write(
        self,
        path: Path,
        put: Put,
        mode: int | None = DEFAULT_MODE,
        *,
        user_file: bool = False,
        allow_project_dir: bool = False,
    ) -> Path:
        """Write our entries into ``path`` atomically and record them: ``put`` maps the file's
        current text to the new text and the entries it wrote, called while the ledger is
        locked, so concurrent logins do not lose edits. ``mode`` None keeps the file's mode
        (0600 for a new file). Refused in a project, git work tree or build context unless
        ``allow_project_dir`` (``user_file``: one of the user's own files, see
        :mod:`cabroker.placement`), through a link, or in a directory others can write
        (:mod:`cabroker.safeio`). Returns the resolved path written."""
        try:
            if not allow_project_dir:
                placement.check(path, home=self.home, user_file=user_file)
        except OSError as error:
            raise _files_error(path, error, "write") from None
        name = Path(os.path.abspath(path)).name
        with self._locked():
            records = self.records()
            try:
                with safeio.opened(path.parent, create=True, doing="write", shown=path) as where:
                    target = where.path / name
                    current, current_mode = where.read(name)
                    record = records.get(str(target))
                    if record is None or current is None:  # new, or deleted since: afresh
                        dirs = record.created_dirs if record is not None else []
                        record = FileRecord(current is not None, current_mode, created_dirs=dirs)
                    elif current_mode != record.mode:  # the user changed the mode since
                        record.mode_before = current_mode
                    new_text, written = put(decode(current))
                    new_bytes = encode(new_text)
                    final_mode = mode if mode is not None else (current_mode or DEFAULT_MODE)
                    where.write(name, new_bytes, final_mode)
            except OSError as error:
                raise _files_error(path, error, "write") from None
            record.created_dirs = [*record.created_dirs, *map(str, where.created)]
            record.entries = _merge(record.entries, written)
            record.sha256 = sha256(new_bytes)
            record.mode = final_mode
            records[str(target)] = record
            self._save(records)
        return target

    # --- restoring ------------------------------------------------------------------------

    def restore(self) -> list[Outcome]:
        """Take every recorded entry out (see the module doc), then forget those files.

        Raises :class:`RestoreIncomplete` (with every outcome) when a file could not be
        restored; those records stay in the ledger.
        """
        outcomes: list[Outcome] = []
        with self._locked():
            records = self.records()
            remaining: dict[str, FileRecord] = {}
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
                "could not restore "
                + "; ".join(f"{o.path} ({o.detail.removeprefix('not restored: ')})" for o in failed)
                + ": fix that, then run logout again (the ledger still names it)",
                outcomes,
            )
        return outcomes

    def _restore_one(self, path: Path, record: FileRecord) -> Outcome:
        try:
            where = safeio.open_directory(path.parent, create=False, doing="restore", shown=path)
        except FileNotFoundError:
            return Outcome(path, Action.MISSING, "no longer exists: nothing to undo")
        try:
            if where.path != path.parent:
                raise FilesError(
                    f"refusing to restore {path}: its directory is now reached through a "
                    f"symbolic link (to {where.path}); put the real directory back"
                )
            return self._restore_in(where, path, record)
        finally:
            where.close()

    def _restore_in(self, where: safeio.Directory, path: Path, record: FileRecord) -> Outcome:
        current, current_mode = where.read(path.name)
        if current is None:
            return Outcome(path, Action.MISSING, "no longer exists: nothing to undo")
        text = decode(current)
        left: set[str] = set()
        done: list[tuple[Entry, Status]] = []
        for entry in reversed(record.entries):  # last written first: each undoes its own write
            text, status = take_out(text, entry, left=frozenset(left))
            if status is Status.LEFT and entry.kind == PYPIRC_SECTION:
                left.add(entry.name)
            done.append((entry, status))
        notes = _notes(done)
        if encode(text) == current:
            return Outcome(path, Action.LEFT, "no cabroker entry left in it: left as it is" + notes)
        if not record.existed and not text.strip():
            where.unlink(path.name)
            _remove_dirs(record.created_dirs)
            return Outcome(path, Action.DELETED, "removed (it did not exist before login)" + notes)
        mode = current_mode if current_mode is not None else DEFAULT_MODE
        if record.mode_before is not None and current_mode == record.mode:
            mode = record.mode_before
        where.write(path.name, encode(text), mode)
        if sha256(current) == record.sha256:
            return Outcome(path, Action.RESTORED, "restored as it was before login" + notes)
        return Outcome(
            path,
            Action.REMOVED_ENTRIES,
            "changed since login: removed only cabroker's entries" + notes,
        )

    # --- the ledger file itself -----------------------------------------------------------

    def _read_ledger(self) -> bytes | None:
        try:
            with safeio.opened(
                self.path.parent, create=False, doing="read the ledger", shown=self.path
            ) as where:
                return where.read(self.path.name)[0]
        except FileNotFoundError:
            return None
        except OSError as error:
            raise _files_error(self.path, error, "read the ledger") from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            with safeio.opened(
                self.path.parent, create=True, doing="write the ledger", shown=self.path
            ) as where:
                flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
                if where.fd is not None:
                    fd = os.open(self.lock_path.name, flags, 0o600, dir_fd=where.fd)
                else:
                    fd = os.open(self.lock_path, flags, 0o600)
        except OSError as error:
            raise _files_error(self.lock_path, error, "create") from None
        try:
            _lock(fd)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _save(self, records: dict[str, FileRecord]) -> None:
        try:
            with safeio.opened(
                self.path.parent, create=True, doing="write the ledger", shown=self.path
            ) as where:
                if not records:
                    if where.read(self.path.name)[0] is not None:
                        where.unlink(self.path.name)
                    return
                files = {path: record.to_json() for path, record in records.items()}
                document = {"version": LEDGER_VERSION, "files": files}
                data = json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"
                where.write(self.path.name, data, DEFAULT_MODE)
        except OSError as error:
            raise _files_error(self.path, error, "write the ledger") from None


def _merge(known: list[Entry], written: list[Entry]) -> list[Entry]:
    """The file's entries after a login wrote ``written`` (each with the raw text it replaced):
    an entry already ours keeps what it first replaced; the user's edit of our entry becomes
    what logout puts back, unless it still holds a CodeArtifact credential."""
    result = list(known)
    for new in written:
        index = next((i for i, old in enumerate(result) if old.key == new.key), None)
        if index is None or new.replaced is None:  # new, or ours was gone: a fresh entry
            if index is not None:
                del result[index]
            result.append(keeping(new, new.replaced))
            continue
        old = result[index]
        if sha256(new.replaced) == old.sha256 or holds_credential(old.kind, new.replaced, old.user):
            result[index] = replace(old, sha256=new.sha256)  # still ours
        else:
            result[index] = replace(keeping(old, new.replaced), sha256=new.sha256)
    return result


def _notes(done: list[tuple[Entry, Status]]) -> str:
    notes = ""
    if any(entry.dropped and status is not Status.LEFT for entry, status in done):
        notes += "; an older CodeArtifact token that login replaced was not put back"
    left = [entry for entry, status in done if status is Status.LEFT]
    if left:
        names = ", ".join(f"{entry.kind} {entry.name}".strip() for entry in left)
        notes += (
            f"; left what you changed in cabroker's entries ({names}): they hold no "
            "CodeArtifact credential"
        )
    return notes


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
