"""The files ``login`` may write (each one opt-in): where each tool looks for its file, and
writing our entry into it through the :class:`~cabroker.ledger.Ledger` that ``logout`` undoes.

What goes into each file is :mod:`cabroker.entries`; the ledger is :mod:`cabroker.ledger`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from .broker import Grant
from .entries import put_netrc, put_pip, put_pypirc
from .ledger import Ledger as Ledger  # re-exported: ``cabroker status`` reads it from here
from .outputs import DEFAULT_NAME

# --- where the tools look ---------------------------------------------------------------------


def _home(environ: Mapping[str, str], platform: str) -> Path:
    value = environ.get("USERPROFILE" if platform == "win32" else "HOME")
    return Path(value) if value else Path.home()


def pip_conf_path(
    *,
    environ: Mapping[str, str] = os.environ,
    platform: str = sys.platform,
    home: Path | None = None,
) -> Path:
    """pip's user configuration file, as pip finds it (``PIP_CONFIG_FILE`` is not used)."""
    home = home or _home(environ, platform)
    if platform == "win32":
        appdata = environ.get("APPDATA")
        return (Path(appdata) if appdata else home / "AppData" / "Roaming") / "pip" / "pip.ini"
    if platform == "darwin":
        native = home / "Library" / "Application Support" / "pip"
        if native.is_dir():
            return native / "pip.conf"
        return home / ".config" / "pip" / "pip.conf"
    xdg = environ.get("XDG_CONFIG_HOME", "")
    return (Path(xdg) if xdg.strip() else home / ".config") / "pip" / "pip.conf"


def pypirc_path(*, environ: Mapping[str, str] = os.environ, platform: str = sys.platform) -> Path:
    """``~/.pypirc``, twine's default ``--config-file``."""
    return _home(environ, platform) / ".pypirc"


def netrc_path(*, environ: Mapping[str, str] = os.environ, platform: str = sys.platform) -> Path:
    """``$NETRC`` when set (requests and uv honour it), else ``~/.netrc`` (on Windows
    ``~/_netrc`` when only that one exists)."""
    if environ.get("NETRC"):
        return Path(environ["NETRC"])
    home = _home(environ, platform)
    if platform == "win32" and not (home / ".netrc").exists() and (home / "_netrc").exists():
        return home / "_netrc"
    return home / ".netrc"


# --- what the CLI calls -----------------------------------------------------------------------


def write_pip_conf(
    ledger: Ledger, grant: Grant, path: Path | None = None, *, allow_project_dir: bool = False
) -> Path:
    return ledger.write(
        path or pip_conf_path(),
        lambda text: put_pip(text, grant),
        user_file=True,
        allow_project_dir=allow_project_dir,
    )


def write_pypirc(
    ledger: Ledger,
    grant: Grant,
    name: str = DEFAULT_NAME,
    path: Path | None = None,
    *,
    allow_project_dir: bool = False,
) -> Path:
    return ledger.write(
        path or pypirc_path(),
        lambda text: put_pypirc(text, grant, name),
        user_file=True,
        allow_project_dir=allow_project_dir,
    )


def write_netrc(
    ledger: Ledger, grant: Grant, path: Path | None = None, *, allow_project_dir: bool = False
) -> Path:
    return ledger.write(
        path or netrc_path(),
        lambda text: put_netrc(text, grant),
        user_file=True,
        allow_project_dir=allow_project_dir,
    )


def write_docker_secret(
    ledger: Ledger, grant: Grant, path: Path, *, allow_project_dir: bool = False
) -> Path:
    """A Docker build secret in netrc format (mount it at ``/root/.netrc``): never in a build
    context, a project or a git work tree, unless ``allow_project_dir``."""
    return ledger.write(
        path, lambda text: put_netrc(text, grant), allow_project_dir=allow_project_dir
    )
