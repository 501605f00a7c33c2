"""What we ship: the client's wheel and sdist as `make dist` builds them, its version written once,
the changelog, and the release workflow's pins and permissions.

The build runs `python -m build --no-isolation` (as the Makefile does) with the build and
hatchling pinned in requirements/dev.txt, so it needs no network.
"""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

import cabroker

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "client"
PYPROJECT = tomllib.loads((CLIENT / "pyproject.toml").read_text(encoding="utf-8"))
VERSION = cabroker.__version__
CHANGELOG = ROOT / "CHANGELOG.md"
RELEASE = ROOT / ".github" / "workflows" / "release.yml"


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The client built as `make dist` builds it, into a directory of the test's own."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(CLIENT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


def _wheel(dist: Path) -> Path:
    (wheel,) = dist.glob("*.whl")
    return wheel


def _sdist(dist: Path) -> Path:
    (sdist,) = dist.glob("*.tar.gz")
    return sdist


def _wheel_file(dist: Path, name: str) -> str:
    with zipfile.ZipFile(_wheel(dist)) as wheel:
        return wheel.read(f"cabroker-{VERSION}.dist-info/{name}").decode()


def _metadata(dist: Path) -> Message:
    return Parser().parsestr(_wheel_file(dist, "METADATA"))


def test_the_version_is_written_once() -> None:
    project = PYPROJECT["project"]
    assert "version" not in project
    assert project["dynamic"] == ["version"]
    assert PYPROJECT["tool"]["hatch"]["version"]["path"] == "src/cabroker/__init__.py"
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?", VERSION)


def test_dist_holds_one_wheel_and_one_sdist_of_the_version(dist: Path) -> None:
    assert sorted(path.name for path in dist.iterdir()) == [
        f"cabroker-{VERSION}-py3-none-any.whl",
        f"cabroker-{VERSION}.tar.gz",
    ]
    metadata = _metadata(dist)
    assert metadata["Name"] == "cabroker"
    assert metadata["Version"] == VERSION
    assert metadata["Requires-Python"] == PYPROJECT["project"]["requires-python"]


def test_the_wheel_requires_the_runtime_dependencies(dist: Path) -> None:
    project = PYPROJECT["project"]
    expected = {str(Requirement(text)) for text in project["dependencies"]}
    for extra, requirements in project["optional-dependencies"].items():
        expected |= {f'{Requirement(text)}; extra == "{extra}"' for text in requirements}
    got = {str(Requirement(text)) for text in _metadata(dist).get_all("Requires-Dist", [])}
    assert got == expected
    assert _metadata(dist).get_all("Provides-Extra") == list(project["optional-dependencies"])


def test_the_wheel_declares_the_console_script_and_the_keyring_backend(dist: Path) -> None:
    entry_points = configparser.ConfigParser()
    entry_points.read_string(_wheel_file(dist, "entry_points.txt"))
    assert dict(entry_points["console_scripts"]) == {"cabroker": "cabroker.cli:main"}
    assert dict(entry_points["keyring.backends"]) == {"cabroker": "cabroker.keyring_backend"}


def test_the_wheel_holds_the_package_and_nothing_else(dist: Path) -> None:
    with zipfile.ZipFile(_wheel(dist)) as wheel:
        names = wheel.namelist()
    package = sorted(
        str(path.relative_to(CLIENT / "src"))
        for path in (CLIENT / "src" / "cabroker").rglob("*.py")
    )
    assert sorted(name for name in names if not name.startswith(f"cabroker-{VERSION}.")) == package


def test_the_sdist_holds_the_package_its_readme_and_the_version(dist: Path) -> None:
    prefix = f"cabroker-{VERSION}/"
    with tarfile.open(_sdist(dist)) as sdist:
        names = set(sdist.getnames())
        pkg_info = sdist.extractfile(prefix + "PKG-INFO")
        assert pkg_info is not None
        metadata = Parser().parsestr(pkg_info.read().decode())
    assert metadata["Version"] == VERSION
    assert {prefix + "pyproject.toml", prefix + "README.md"} <= names
    assert prefix + "src/cabroker/__init__.py" in names
    assert prefix + "action-requirements.txt" not in names


def test_cabroker_version_prints_the_version() -> None:
    script = Path(sys.executable).parent / "cabroker"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "cabroker.cli"]
    done = subprocess.run(
        [*command, "--version"], check=True, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == f"cabroker {VERSION}"


def test_the_changelog_has_an_unreleased_section() -> None:
    text = CHANGELOG.read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    assert headings[0] == "[Unreleased]"
    for heading in headings[1:]:
        assert re.fullmatch(r"\[\d+\.\d+\.\d+((a|b|rc)\d+)?\] - \d{4}-\d{2}-\d{2}", heading)
    unreleased = text.split("## [Unreleased]", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"^### (Added|Changed|Security|Fixed|Removed|Deprecated)$", unreleased, re.M)


def _release() -> dict[Any, Any]:
    document = yaml.safe_load(RELEASE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def test_the_release_workflow_runs_on_version_tags_with_least_privilege() -> None:
    workflow = _release()
    # PyYAML reads the key `on` as True (YAML 1.1).
    assert workflow[True] == {"push": {"tags": ["v*"]}}
    assert workflow["permissions"] == {"contents": "read"}
    jobs = workflow["jobs"]
    for name, job in jobs.items():
        wants_id_token = job.get("permissions", {}).get("id-token") == "write"
        assert wants_id_token == (name == "publish"), name
    assert jobs["publish"]["environment"]["name"] == "pypi"
    assert jobs["publish"]["permissions"] == {"id-token": "write"}


def test_every_action_the_release_uses_is_pinned_by_commit() -> None:
    lines = RELEASE.read_text(encoding="utf-8").splitlines()
    uses = [line for line in lines if re.match(r"\s*(- )?uses:", line)]
    assert uses
    for line in uses:
        assert re.search(r"uses: [\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$", line), line
