"""Where a token may be written: never into a project (its files get committed, packaged or
copied into an image)."""

from __future__ import annotations

from pathlib import Path

from .errors import FilesError

PROJECT_FILES = ("pyproject.toml", "uv.lock", "poetry.lock")
PROJECT_GLOB = "requirements*.txt"


def check_not_in_project(path: Path, home: Path | None = None) -> None:
    """Raise FilesError when ``path``'s directory, or a parent below ``home``, is a project."""
    home = (home or Path.home()).resolve()
    for directory in [path.parent, *path.parent.parents]:
        if directory == home:
            return
        marker = _project_marker(directory)
        if marker is not None:
            raise FilesError(
                f"refusing to write {path}: {directory} holds {marker.name}, and a token is "
                "never written into a project file; choose a path outside the project "
                "(your home directory, or $RUNNER_TEMP in GitHub Actions)"
            )


def _project_marker(directory: Path) -> Path | None:
    try:
        for name in PROJECT_FILES:
            if (directory / name).exists():
                return directory / name
        return next(directory.glob(PROJECT_GLOB), None)
    except OSError:  # an unreadable directory holds nothing we can see
        return None
