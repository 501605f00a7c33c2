"""The repository root is the `cabroker-admin` project: its wheel (built as `make dist` builds
the client's: the pinned build and hatchling, no isolation) holds both packages, `broker` from
functions/broker and `cabroker_admin`, and the console script; its declared dependencies cover
everything the admin tools import."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import cabroker_admin

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", str(out), "."],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("*.whl")
    return built


def test_the_wheel_holds_both_packages_and_nothing_else(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    version = cabroker_admin.__version__
    assert tops == {"broker", "cabroker_admin", f"cabroker_admin-{version}.dist-info"}
    broker = sorted(n for n in names if n.startswith("broker/"))
    expected = sorted(
        f"broker/{p.name}" for p in (ROOT / "functions" / "broker").iterdir() if p.is_file()
    )
    assert broker == expected  # the Lambda's own code, every file of it
    for module in ("cli", "errors", "rulescli", "rulesstore", "target", "__main__"):
        assert f"cabroker_admin/{module}.py" in names


def test_the_wheel_has_the_command_and_the_version(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    info = f"cabroker_admin-{cabroker_admin.__version__}.dist-info"
    entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert "cabroker-admin = cabroker_admin.cli:main" in entry_points
    meta = archive.read(f"{info}/METADATA").decode()
    assert f"Version: {cabroker_admin.__version__}\n" in meta
    assert "Name: cabroker-admin\n" in meta


def test_the_command_is_installed_in_this_environment() -> None:
    script = Path(sys.executable).parent / "cabroker-admin"
    done = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == f"cabroker-admin {cabroker_admin.__version__}"


def _closure(requirements: list[str]) -> set[str]:
    """The distributions the requirements pull in, transitively (installed ones)."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        if name in seen:
            continue
        seen.add(name)
        for raw in metadata.requires(requirement.name) or []:
            child = Requirement(raw)
            if child.marker is None or child.marker.evaluate({"extra": ""}):
                todo.append(child)
    return seen


BLOCKED_RUN = r"""
import importlib.abc, json, sys
blocked = set(json.loads(sys.argv[1]))

class Uninstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Uninstalled())
import cabroker_admin.cli, cabroker_admin.rulesstore, cabroker_admin.target
from broker.scope import Domain
domain = Domain("aws", "us-east-1", "123456789012", "acme")
document = "version: 1\nissuers: {}\nrules: []\n"
cabroker_admin.rulesstore.check(document, domain, ["internal"], "test")
print("ok")
"""


def test_the_declared_dependencies_are_enough() -> None:
    """Every installed distribution outside the declared dependencies (and theirs) is hidden:
    the tools still import and check a document, as they would where only those are installed."""
    declared = _closure(PYPROJECT["project"]["dependencies"]) | {"cabroker-admin"}
    blocked = sorted(
        top
        for top, distributions in metadata.packages_distributions().items()
        if not top.startswith("_")
        and top not in {"broker", "cabroker_admin"}
        and not {re.sub(r"[-_.]+", "-", d).lower() for d in distributions} & declared
    )
    assert {"jwt", "cryptography", "moto"} <= set(blocked)

    def run(hidden: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", BLOCKED_RUN, json.dumps(hidden)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    done = run(blocked)
    assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr[-2000:]
    # The hiding works: without a declared dependency, the tools do not import.
    assert "No module named 'yaml'" in run([*blocked, "yaml"]).stderr
