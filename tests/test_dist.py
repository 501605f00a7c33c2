"""What we ship: the client's wheel and sdist as `make dist` builds them, its version written once,
its license and its PyPI page (client/README.md), the changelog, and the release workflow's pins
and permissions.

The build runs `python -m build --no-isolation` (as the Makefile does) with the build and
hatchling pinned in requirements/dev.txt, so it needs no network.
"""

from __future__ import annotations

import argparse
import configparser
import hashlib
import re
import shlex
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
from cabroker.cli import parser
from tests.test_docs import anchors, prose

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "client"
PYPROJECT = tomllib.loads((CLIENT / "pyproject.toml").read_text(encoding="utf-8"))
VERSION = cabroker.__version__
CHANGELOG = ROOT / "CHANGELOG.md"
LICENSE = ROOT / "LICENSE"
README = CLIENT / "README.md"
REPOSITORY = PYPROJECT["project"]["urls"]["Repository"]
# sha256 of https://www.apache.org/licenses/LICENSE-2.0.txt, the verbatim Apache License 2.0.
APACHE_2_0_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"
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


# --- the license (PEP 639) -------------------------------------------------------------------


def test_the_license_is_the_verbatim_apache_2_0_text() -> None:
    text = LICENSE.read_bytes()
    assert hashlib.sha256(text).hexdigest() == APACHE_2_0_SHA256
    assert b"TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert b"END OF TERMS AND CONDITIONS" in text


def test_the_clients_license_is_a_copy_of_the_repositorys() -> None:
    """hatchling takes license files from the project directory (client/) only."""
    assert (CLIENT / "LICENSE").read_bytes() == LICENSE.read_bytes()


def test_the_wheel_declares_its_license_by_spdx_expression_and_carries_it(dist: Path) -> None:
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    metadata = _metadata(dist)
    assert metadata["Metadata-Version"] in {"2.4", "2.5"}
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    # PEP 639: no legacy License field or license classifier beside the expression.
    assert metadata["License"] is None
    assert not [c for c in metadata.get_all("Classifier", []) if c.startswith("License ::")]
    assert _wheel_file(dist, "licenses/LICENSE") == LICENSE.read_text(encoding="utf-8")


def test_the_sdist_carries_the_license(dist: Path) -> None:
    prefix = f"cabroker-{VERSION}/"
    with tarfile.open(_sdist(dist)) as sdist:
        member = sdist.getmember(prefix + "LICENSE")
        assert member.isfile()
        license_file = sdist.extractfile(member)
        assert license_file is not None
        assert license_file.read() == LICENSE.read_bytes()
        pkg_info = sdist.extractfile(prefix + "PKG-INFO")
        assert pkg_info is not None
        metadata = Parser().parsestr(pkg_info.read().decode())
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]


# --- the PyPI page: client/README.md ----------------------------------------------------------


def test_the_long_description_is_the_client_readme_as_markdown(dist: Path) -> None:
    metadata = _metadata(dist)
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert metadata.get_payload() == README.read_text(encoding="utf-8")


FENCED = re.compile(r"^```([\w-]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
# `cabroker` where a shell runs a command: a line's start (after a YAML "- "), "$(", "&&", ";".
COMMAND = re.compile(r"(?:^(?:- )?|\$\(|&&|\|\||;)\s*cabroker\s+([^)\n]*?)\s*(?=\)|&&|\|\||;|$)")


def _code_blocks(language: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    return [body for lang, body in FENCED.findall(text) if lang == language]


def _readme_commands() -> list[list[str]]:
    """The arguments of every `cabroker` command in the README's shell and CI (YAML) blocks, and
    of every inline code span that is a whole `cabroker …` command."""
    text = README.read_text(encoding="utf-8")
    commands = []
    for body in _code_blocks("sh") + _code_blocks("yaml"):
        for line in body.splitlines():
            line = re.sub(r"\s+#\s.*$", "", line.strip())  # a trailing shell or YAML comment
            commands += [shlex.split(args) for args in COMMAND.findall(line)]
    for span in re.findall(r"`([^`\n]+)`", "\n".join(prose(text))):
        commands += [shlex.split(args) for args in COMMAND.findall(span)]
    return commands


def _exact_parser() -> argparse.ArgumentParser:
    """The client's parser, with no abbreviated options: the README spells each one in full."""
    root = parser()
    root.allow_abbrev = False
    for action in root._subparsers._group_actions if root._subparsers else []:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.allow_abbrev = False
    return root


def test_the_readme_finds_its_commands() -> None:
    subcommands = {argv[0] for argv in _readme_commands()}
    assert {"configure", "login", "env", "status", "logout"} <= subcommands


def test_an_abbreviated_or_unknown_option_is_rejected() -> None:
    for argv in (["env", "--acc", "publish"], ["login", "--pypi"], ["sync"]):
        with pytest.raises(SystemExit):
            _exact_parser().parse_args(argv)


@pytest.mark.parametrize("argv", _readme_commands(), ids=shlex.join)
def test_every_readme_command_is_one_the_cli_accepts(argv: list[str]) -> None:
    """Parsed by the client's own argparse parser: an unknown subcommand or option, a bad choice
    or a missing argument exits 2; --help and --version exit 0."""
    if {"-h", "--help", "--version"} & set(argv):
        with pytest.raises(SystemExit) as exited:
            _exact_parser().parse_args(argv)
        assert exited.value.code == 0
        return
    try:
        args = _exact_parser().parse_args(argv)
    except SystemExit as error:
        raise AssertionError(f"cabroker {shlex.join(argv)}: rejected") from error
    assert hasattr(args, "run")


def test_the_readmes_action_inputs_are_the_actions() -> None:
    inputs = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))["inputs"]
    required = {name for name, spec in inputs.items() if spec.get("required")}
    steps = [
        step
        for body in _code_blocks("yaml")
        if isinstance(document := yaml.safe_load(body), dict)
        for step in document.get("steps", [])
        if "/cabroker@" in step.get("uses", "")
    ]
    assert steps
    for step in steps:
        assert re.fullmatch(r"[\w-]+/cabroker@[0-9a-f]{40}", step["uses"])
        assert required <= set(step["with"]) <= set(inputs)


def test_the_readmes_variables_are_the_clients() -> None:
    source = "\n".join(p.read_text(encoding="utf-8") for p in (CLIENT / "src").rglob("*.py"))
    named = set(re.findall(r"\bCABROKER_[A-Z_]+\b", README.read_text(encoding="utf-8")))
    assert named
    assert sorted(name for name in named if name not in source) == []


LINK = re.compile(r"\]\(([^)\s]+)\)|^\[[^\]]+\]:\s*(\S+)|<(\w+:[^>\s]+)>|(?:href|src)=\"([^\"]+)\"")


def _readme_links() -> list[str]:
    text = "\n".join(prose(README.read_text(encoding="utf-8")))
    return [next(group for group in found if group) for found in LINK.findall(text)]


def test_every_readme_link_is_absolute_https() -> None:
    """PyPI renders the README away from the repository: a relative link would be broken."""
    links = _readme_links()
    assert links
    assert [link for link in links if not link.startswith("https://")] == []


def test_the_readmes_repository_links_point_at_files_of_this_repository() -> None:
    """Links into the repository use [project.urls] Repository and name a file and heading that
    exist here."""
    blob = f"{REPOSITORY}/blob/main/"
    for link in _readme_links():
        if link.startswith("https://github.com/"):
            assert link == REPOSITORY or link.startswith(blob), link
        if link.startswith(blob):
            path, _, anchor = link.removeprefix(blob).partition("#")
            assert (ROOT / path).is_file(), link
            assert not anchor or anchor in anchors(ROOT / path), link


def test_the_project_urls_are_the_repositorys() -> None:
    urls = PYPROJECT["project"]["urls"]
    assert re.fullmatch(r"https://github\.com/[\w-]+/cabroker", REPOSITORY)
    for url in urls.values():
        assert url == REPOSITORY or url.startswith(f"{REPOSITORY}/blob/main/"), url
        assert url == REPOSITORY or (ROOT / url.removeprefix(f"{REPOSITORY}/blob/main/")).is_file()


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
