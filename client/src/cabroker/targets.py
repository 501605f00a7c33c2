"""The opt-in files ``cabroker login`` writes, each recorded in the ledger ``logout`` reads."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .broker import Grant
from .files import write_docker_secret, write_netrc, write_pip_conf, write_pypirc
from .ledger import Ledger

TARGETS = ("pip", "pypirc", "netrc", "docker-secret")


def write_outputs(
    grant: Grant,
    chosen: Mapping[str, object],
    *,
    name: str,
    ledger: Path,
    allow_project_dir: bool = False,
) -> list[Path]:
    """Write each chosen target (``docker-secret`` maps to its path); return the paths.
    ``allow_project_dir`` lets them land in a project, git work tree or build context."""
    book = Ledger(ledger)
    allow = allow_project_dir
    written: list[Path] = []
    if chosen.get("pip"):
        written.append(write_pip_conf(book, grant, allow_project_dir=allow))
    if chosen.get("pypirc"):
        written.append(write_pypirc(book, grant, name, allow_project_dir=allow))
    if chosen.get("netrc"):
        written.append(write_netrc(book, grant, allow_project_dir=allow))
    secret = chosen.get("docker-secret")
    if isinstance(secret, Path):
        written.append(
            write_docker_secret(book, grant, secret.expanduser(), allow_project_dir=allow)
        )
    return written
