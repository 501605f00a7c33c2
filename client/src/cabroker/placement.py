"""Where a token may be written: never where it can end up committed, packaged or copied into
an image, unless the user says so (``cabroker login --allow-project-dir``).

A target is refused when its directory, or any directory above it up to the filesystem root
(both as named and with its links resolved), is

- in a git work tree: it holds a ``.git`` directory or file;
- a Python project: ``pyproject.toml``, ``setup.py``, ``setup.cfg``, ``Pipfile``,
  ``Pipfile.lock``, ``poetry.lock``, ``pdm.lock``, ``uv.lock``, ``pylock.toml``,
  ``pylock.*.toml`` or ``requirements*.txt``;
- a container build context: ``Dockerfile``, ``Dockerfile.*``, ``*.Dockerfile``,
  ``Containerfile``, ``.dockerignore``, ``compose.yaml`` / ``docker-compose.yml`` (and their
  ``.yml`` / ``.yaml`` twins).

The home directory is no exception: a ``requirements.txt`` or ``Dockerfile`` in it refuses
``~/.netrc`` too. One case is: when the home directory itself is a git work tree (a dotfiles
repository with ``~/.git``), the user's own files (``~/.pypirc``, ``~/.netrc``, pip's user
config) may be written there as long as git does not track them (``git ls-files``); a tracked
one is refused, and so is any file when git cannot tell. Markers are matched case-insensitively.
"""

from __future__ import annotations

import os
from fnmatch import fnmatchcase
from pathlib import Path

from .errors import FilesError
from .safeio import canonical

PROJECT_NAMES = (
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "Pipfile",
    "Pipfile.lock",
    "poetry.lock",
    "pdm.lock",
    "uv.lock",
)
PROJECT_PATTERNS = ("pylock.toml", "pylock.*.toml", "requirements*.txt")
BUILD_NAMES = (
    "Dockerfile",
    "Containerfile",
    ".dockerignore",
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
)
BUILD_PATTERNS = ("Dockerfile.*", "*.Dockerfile", "Containerfile.*", "*.dockerignore")
_NAMES = {name.lower() for name in (*PROJECT_NAMES, *BUILD_NAMES)}
_PATTERNS = tuple(pattern.lower() for pattern in (*PROJECT_PATTERNS, *BUILD_PATTERNS))
OVERRIDE = "--allow-project-dir"


def check(path: Path, *, home: Path | None = None, user_file: bool = False) -> None:
    """Raise FilesError when ``path`` would be written in a git work tree, a Python project or
    a container build context (see the module doc); ``user_file``: ``path`` is one of the
    user's own files (pip's user config, ``~/.pypirc``, ``~/.netrc``)."""
    named = Path(os.path.abspath(path))
    resolved = canonical(named.parent, shown=path) / named.name
    home_dir = Path(os.path.realpath(home or Path.home()))
    seen: set[Path] = set()
    for directory in [*named.parents, *resolved.parents]:
        if directory in seen:
            continue
        seen.add(directory)
        what = _marker(directory)
        if what is None:
            continue
        if what == ".git" and user_file and directory == home_dir:
            tracked = _tracked(directory, resolved)
            if tracked is False:
                continue
            what = ".git, and git tracks this file" if tracked else ".git (git cannot tell)"
        raise FilesError(
            f"refusing to write {path}: {directory} holds {what}, so it is {_kind(what)}, "
            "where a token can end up committed, packaged or copied into an image; choose a "
            "path outside it (your home directory, or $RUNNER_TEMP in GitHub Actions), or pass "
            f"{OVERRIDE} if nothing there can publish the file"
        )


def _kind(marker: str) -> str:
    if marker.startswith(".git"):
        return "in a git work tree"
    if marker.lower() in {name.lower() for name in PROJECT_NAMES} or any(
        fnmatchcase(marker.lower(), pattern) for pattern in PROJECT_PATTERNS
    ):
        return "a Python project"
    return "a container build context"


def _marker(directory: Path) -> str | None:
    """The first marker found in ``directory`` (None: none, or it cannot be read)."""
    if os.path.lexists(directory / ".git"):
        return ".git"
    try:
        names = [entry.name for entry in os.scandir(directory)]
    except OSError:  # unreadable: only the names we can look up one by one
        names = [n for n in (*PROJECT_NAMES, *BUILD_NAMES) if os.path.lexists(directory / n)]
    for name in sorted(names):
        lower = name.lower()
        if lower in _NAMES or any(fnmatchcase(lower, pattern) for pattern in _PATTERNS):
            return name
    return None


def _tracked(top: Path, path: Path) -> bool | None:
    """Whether git tracks ``path`` in the work tree ``top`` (None: it cannot tell)."""
    import shutil
    import subprocess

    git = shutil.which("git")
    if git is None:
        return None
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    try:
        done = subprocess.run(  # noqa: S603 - git, by its resolved path, with fixed arguments
            [git, "-C", str(top), "ls-files", "--error-unmatch", "--", str(path.relative_to(top))],
            env=environment,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    return {0: True, 1: False}.get(done.returncode)
