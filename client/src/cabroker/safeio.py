"""Reading and writing a file that holds a token without being redirected.

A write never follows a link and never happens in a directory someone else can write:

- the directory is opened one component at a time (``openat`` with ``O_NOFOLLOW``), so no
  component can be swapped for a link between a check and the write; a symbolic link on the way
  is followed only when it cannot have been planted by someone else (it sits in a directory
  only we or root can write, or we or root own it: the rule of Linux's ``protected_symlinks``);
- the directory itself must be writable by us alone: not world-writable (sticky ``/tmp``-like
  directories included), not group-writable unless it is ours, owned by us or root;
- the file's last component is never a link (``lstat``, ``O_NOFOLLOW``): a link there is refused,
  not followed, and not replaced;
- the new content goes to a fresh temporary file in that directory (``O_EXCL``, 0600), is
  synced, and renamed over the file, so readers see the old or the new bytes, never half.

Every operation after :func:`open_directory` is relative to the directory's descriptor.
On Windows (no ``openat``) the same checks are made by path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .errors import FilesError

_POSIX = sys.platform != "win32"
_MAX_LINKS = 40  # as the kernel's ELOOP limit


def others_can_write(st: os.stat_result) -> str | None:
    """Why a directory with this ``stat`` can be written by someone other than us (None: it
    cannot; root is not "someone else")."""
    if not _POSIX:
        return None
    uid = os.geteuid()
    if st.st_mode & stat.S_IWOTH:
        sticky = " (sticky, like /tmp)" if st.st_mode & stat.S_ISVTX else ""
        return f"is writable by every user{sticky}"
    if st.st_mode & stat.S_IWGRP and st.st_uid != uid:
        return "is group-writable and owned by another user"
    if st.st_uid not in (uid, 0):
        return "is owned by another user"
    return None


def _may_follow(link: os.stat_result, directory: os.stat_result) -> bool:
    """A link can be followed when nobody else could have planted it."""
    return others_can_write(directory) is None or link.st_uid in (os.geteuid(), 0)


def _refuse(doing: str, path: Path, why: str) -> FilesError:
    return FilesError(f"refusing to {doing} {path}: {why}")


@dataclass
class Directory:
    """An open directory (its canonical path), checked writable by us alone."""

    path: Path
    fd: int | None  # None on Windows
    doing: str = "write"
    created: list[Path] = field(default_factory=list)  # made for it, outermost first

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _lstat(self, name: str) -> os.stat_result | None:
        try:
            if self.fd is None:
                return os.lstat(self.path / name)
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def _check_file(self, name: str) -> os.stat_result | None:
        """The file's ``lstat`` (None: absent); refused when it is a link or not a file."""
        st = self._lstat(name)
        if st is None:
            return None
        if stat.S_ISLNK(st.st_mode):
            raise _refuse(
                self.doing,
                self.path / name,
                "it is a symbolic link, and cabroker never writes through a link (someone "
                "could point it anywhere); replace the link by the file itself, or choose "
                "another path",
            )
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(self.doing, self.path / name, "it is not a regular file")
        return st

    def read(self, name: str) -> tuple[bytes | None, int | None]:
        """(bytes, permission bits) of the file, or (None, None) when it does not exist."""
        if self._check_file(name) is None:
            return None, None
        flags = os.O_RDONLY
        if self.fd is not None:
            flags |= os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            fd = os.open(name, flags, dir_fd=self.fd)
        else:
            fd = os.open(self.path / name, flags | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as handle:
            st = os.fstat(handle.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise _refuse(self.doing, self.path / name, "it is not a regular file")
            return handle.read(), stat.S_IMODE(st.st_mode)

    def write(self, name: str, data: bytes, mode: int) -> None:
        """Replace the file by ``data`` (permission bits ``mode``), atomically."""
        self._check_file(name)
        temporary = f".{name}.{secrets.token_hex(8)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        if self.fd is not None:
            fd = os.open(temporary, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=self.fd)
        else:
            fd = os.open(self.path / temporary, flags | getattr(os, "O_BINARY", 0), 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
                if self.fd is not None:
                    os.fchmod(handle.fileno(), mode)
            if self.fd is not None:
                os.replace(temporary, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
                os.fsync(self.fd)
            else:
                os.chmod(self.path / temporary, mode)
                os.replace(self.path / temporary, self.path / name)
        except BaseException:
            with contextlib.suppress(OSError):
                self._unlink(temporary)
            raise

    def unlink(self, name: str) -> None:
        """Delete the file (refused when it is a link)."""
        if self._check_file(name) is not None:
            self._unlink(name)

    def _unlink(self, name: str) -> None:
        if self.fd is not None:
            os.unlink(name, dir_fd=self.fd)
        else:
            os.unlink(self.path / name)


def canonical(path: Path, *, shown: Path) -> Path:
    """Directory ``path`` with the links on the way resolved as :func:`open_directory` resolves
    them (a missing tail kept as it is); FilesError, naming ``shown``, for a link someone else
    could have planted."""
    found, rest = _walk(Path(os.path.abspath(path)), create=False, doing="write", shown=shown)
    if found.fd is not None:
        found.close()
    return found.path.joinpath(*rest)


def open_directory(path: Path, *, create: bool, doing: str = "write", shown: Path) -> Directory:
    """Open directory ``path`` (made, 0700, when missing and ``create``), checked writable by
    us alone; ``shown`` is the file named in a refusal. FileNotFoundError when it is missing
    and not ``create``."""
    directory, rest = _walk(Path(os.path.abspath(path)), create=create, doing=doing, shown=shown)
    if rest:
        directory.close()
        raise FileNotFoundError(f"{directory.path.joinpath(*rest)} does not exist")
    try:
        st = os.fstat(directory.fd) if directory.fd is not None else os.stat(directory.path)
        why = others_can_write(st)
        if why is not None:
            raise _refuse(
                doing,
                shown,
                f"its directory {directory.path} {why}, so someone else could put a link in "
                "its place; choose a directory only you can write (e.g. a 0700 one)",
            )
    except BaseException:
        directory.close()
        raise
    return directory


@contextlib.contextmanager
def opened(path: Path, *, create: bool, doing: str, shown: Path) -> Iterator[Directory]:
    directory = open_directory(path, create=create, doing=doing, shown=shown)
    try:
        yield directory
    finally:
        directory.close()


def _walk(path: Path, *, create: bool, doing: str, shown: Path) -> tuple[Directory, list[str]]:
    """Open ``path`` one component at a time; returns the directory reached and the
    components missing under it (none when ``create``)."""
    if not _POSIX:
        resolved = path.resolve()
        if not resolved.is_dir():
            missing = [p for p in [resolved, *resolved.parents] if not p.exists()]
            if not create:
                top = missing[-1].parent if missing else resolved
                return Directory(top, None, doing), list(resolved.relative_to(top).parts)
            for directory in reversed(missing):
                directory.mkdir(mode=0o700, exist_ok=True)
            return Directory(resolved, None, doing, list(reversed(missing))), []
        return Directory(resolved, None, doing), []
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    fd = os.open("/", flags)
    current = Path("/")
    parts = list(path.parts[1:])
    created: list[Path] = []
    links = 0
    try:
        while parts:
            part = parts.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                parent = os.open("..", flags, dir_fd=fd)
                os.close(fd)
                fd, current = parent, current.parent
                continue
            try:
                st = os.stat(part, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                if not create:
                    return Directory(current, fd, doing), [part, *parts]
                os.mkdir(part, 0o700, dir_fd=fd)
                created.append(current / part)
                st = os.stat(part, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                if not _may_follow(st, os.fstat(fd)):
                    raise _refuse(
                        doing,
                        shown,
                        f"{current / part} is a symbolic link in {current}, which "
                        f"{others_can_write(os.fstat(fd))}: someone else could have planted it; "
                        "use the real path",
                    )
                links += 1
                if links > _MAX_LINKS:
                    raise _refuse(doing, shown, f"too many symbolic links under {current}")
                target = Path(os.readlink(part, dir_fd=fd))
                parts = [*target.parts, *parts]
                if target.is_absolute():
                    os.close(fd)
                    fd, current = os.open("/", flags), Path("/")
                    parts = parts[1:]
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(
                    errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(current / part)
                )
            child = os.open(part, flags | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd, current = child, current / part
    except BaseException:
        os.close(fd)
        raise
    return Directory(current, fd, doing, created), []
