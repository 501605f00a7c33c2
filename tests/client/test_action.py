"""The composite GitHub Action (action.yml): inputs reach its script only as environment
variables (never spliced into it: script injection), it logs in non-interactively into
GITHUB_ENV with the inputs it declares, and it runs nothing unpinned: the client's
dependencies come hash-locked from client/action-requirements.txt (wheels only, no build), the
client from the action's own files, all in a venv of its own."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.devstack.test_wheels import tool_env

ROOT = Path(__file__).resolve().parents[2]
ACTION = ROOT / "action.yml"
LOCK = ROOT / "client" / "action-requirements.txt"
PYPROJECT = ROOT / "client" / "pyproject.toml"
# Markers are evaluated for this machine (packaging's default environment), with no extra.
NO_EXTRA = {"extra": ""}
LOCK_COMMAND = (
    "uv pip compile client/pyproject.toml --universal --python-version 3.11 --generate-hashes "
    "--output-file client/action-requirements.txt"
)


def action() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(ACTION.read_text())
    return document


def script() -> str:
    run: str = action()["runs"]["steps"][0]["run"]
    return run


def commands() -> list[list[str]]:
    """The script's commands as words (continuation lines joined; ``;``, ``&&``, ``||``, ``{``
    and ``}`` split commands)."""
    found: list[list[str]] = []
    for line in script().replace("\\\n", " ").splitlines():
        words: list[str] = []
        for word in shlex.split(line, comments=True):
            if word in {";", "&&", "||", "{", "}"} or word.endswith(";"):
                if word.endswith(";") and word != ";":
                    words.append(word[:-1])
                if words:
                    found.append(words)
                words = []
            else:
                words.append(word)
        if words:
            found.append(words)
    return found


def pinned() -> dict[str, tuple[Version, list[str], str | None]]:
    """action-requirements.txt: canonical name → (version, sha256 hashes, marker or None).
    Every requirement must be ``name==version`` with hashes, and nothing else may be there
    (no index, no link, no include, no editable)."""
    found: dict[str, tuple[Version, list[str], str | None]] = {}
    text = re.sub(r"\\\n", " ", LOCK.read_text())
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        head, *options = re.split(r"\s+(?=--)", line)
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)(?:\s*;\s*(.+))?", head)
        assert match, f"not name==version: {head!r}"
        hashes = []
        for option in options:
            hashed = re.fullmatch(r"--hash=sha256:([0-9a-f]{64})", option.strip())
            assert hashed, f"{match[1]}: only --hash=sha256:<64 hex> may follow, not {option!r}"
            hashes.append(hashed[1])
        assert hashes, f"{match[1]} has no hash"
        name = canonicalize_name(match[1])
        assert name not in found, f"{name} pinned twice"
        found[name] = (Version(match[2]), hashes, match[3])
    return found


def client_dependencies() -> list[Requirement]:
    document = tomllib.loads(PYPROJECT.read_text())
    return [Requirement(text) for text in document["project"]["dependencies"]]


def runtime_closure() -> set[str]:
    """The client's runtime dependencies, transitively: client/pyproject.toml's
    ``dependencies`` (no extras), then each one's requirements as installed in this venv
    (importlib.metadata), markers evaluated here with no extra."""
    closure: set[str] = set()
    todo = client_dependencies()
    while todo:
        requirement = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate(NO_EXTRA):
            continue
        name = canonicalize_name(requirement.name)
        if name in closure:
            continue
        closure.add(name)
        try:
            requires = importlib.metadata.requires(requirement.name) or []
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"{requirement.name} is not installed in this venv: make venv")
        todo += [Requirement(text) for text in requires]
    return closure


# --- inputs -------------------------------------------------------------------------------------


def test_inputs_are_never_spliced_into_the_script() -> None:
    for step in action()["runs"]["steps"]:
        assert "${{" not in step.get("run", ""), step["run"]


def test_every_input_is_passed_and_used() -> None:
    document = action()
    step = document["runs"]["steps"][0]
    passed = {
        re.sub(r"\$\{\{ inputs\.([\w-]+) \}\}", r"\1", value) for value in step["env"].values()
    }
    assert set(document["inputs"]) <= passed
    assert "--github-env" in step["run"]
    assert "--non-interactive" in step["run"]


def test_audience_is_optional_and_reaches_the_client_as_cabroker_audience() -> None:
    document = action()
    audience = document["inputs"]["audience"]
    assert audience["required"] is False
    assert audience["default"] == ""
    assert document["runs"]["steps"][0]["env"]["CABROKER_AUDIENCE"] == "${{ inputs.audience }}"


def test_outputs_come_from_the_login_step() -> None:
    document = action()
    for name, output in document["outputs"].items():
        assert output["value"] == f"${{{{ steps.login.outputs.{name} }}}}"


# --- what the action installs and runs ----------------------------------------------------------


def test_pip_installs_only_the_hash_locked_file_of_the_repository() -> None:
    installs = [c for c in commands() if "pip" in c and "install" in c]
    assert len(installs) == 1, installs
    words = installs[0]
    assert words[:5] == ["$py", "-I", "-m", "pip", "install"], words
    options = words[5:]
    for required in ("--require-hashes", "--no-deps", "--only-binary=:all:"):
        assert required in options, f"pip install without {required}"
    assert options[options.index("-r") + 1] == "$ACTION_PATH/client/action-requirements.txt"
    allowed = {"--quiet", "--disable-pip-version-check", "--no-input", "-r"}
    allowed |= {"--require-hashes", "--no-deps", "--only-binary=:all:"}
    allowed.add("$ACTION_PATH/client/action-requirements.txt")
    assert set(options) <= allowed, "pip is given something other than the locked file"
    assert LOCK.is_file()


def test_nothing_else_fetches_or_builds_code() -> None:
    for words in commands():
        assert not {"curl", "wget", "uv", "uvx", "pipx", "cabroker"} & set(words), words
        assert "download" not in words, words
        if "pip" in words:
            assert words[words.index("pip") + 1] in {"install", "check"}, words


def test_every_python_runs_isolated() -> None:
    """``python -I``: neither the workspace (the current directory) nor PYTHONPATH and the
    other PYTHON* variables can put code on sys.path ahead of the pinned packages."""
    pythons = [c for c in commands() if c[0] in {"$python", "$py"}]
    assert len(pythons) >= 5, pythons
    for words in pythons:
        assert words[1] == "-I", words
    assert ["$py", "-I", "-m", "cabroker.cli"] in [c[:4] for c in pythons]


def test_the_client_runs_from_a_venv_under_runner_temp() -> None:
    text = script()
    assert 'venv="${RUNNER_TEMP:?}/cabroker-action"' in text
    assert '"$python" -I -m venv --clear "$venv"' in text


def test_every_requirement_is_pinned_with_hashes() -> None:
    found = pinned()
    assert found
    for name, (_, hashes, _) in found.items():
        assert len(hashes) == len(set(hashes)), f"{name}: a hash listed twice"


def test_the_lock_covers_the_client_runtime_dependency_closure() -> None:
    """A dependency added to client/pyproject.toml (or a new one of a dependency) without
    re-locking fails here; so does a pin nothing needs any more."""
    applicable = {
        name
        for name, (_, _, marker) in pinned().items()
        if marker is None or Marker(marker).evaluate(NO_EXTRA)
    }
    closure = runtime_closure()
    assert {"requests", "id", "urllib3", "certifi", "idna", "charset-normalizer"} <= closure
    assert closure - applicable == set(), f"not locked (re-run: {LOCK_COMMAND})"
    assert applicable - closure == set(), f"locked but not needed (re-run: {LOCK_COMMAND})"


def test_the_pins_satisfy_the_client_requirements() -> None:
    found = pinned()
    for requirement in client_dependencies():
        version = found[canonicalize_name(requirement.name)][0]
        assert requirement.specifier.contains(version, prereleases=True), requirement


def test_the_lock_says_how_to_regenerate_it() -> None:
    head = LOCK.read_text().split("\n", 3)[:2]
    assert head[0].startswith("# This file was autogenerated by uv")
    assert head[1] == f"#    {LOCK_COMMAND}"


def test_the_action_installs_and_runs_in_a_fresh_venv(tmp_path: Path) -> None:
    """The action's script, as it ships, on this machine: a fresh venv, the locked files from
    PyPI checked against their hashes (the network pip already uses to build .venv), and the
    client started from the action's files. With no identity it must stop with its own
    error (exit 5), not an import error. About 10 s."""
    bin_dir, home = tmp_path / "bin", tmp_path / "home"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    env = tool_env(home)
    for name in ("PIP_INDEX_URL", "PIP_CERT", "SSL_CERT_FILE", "HTTPS_PROXY", "https_proxy"):
        if name in os.environ:
            env[name] = os.environ[name]
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        RUNNER_TEMP=str(tmp_path),
        ACTION_PATH=str(ROOT),
        CABROKER_URL="http://127.0.0.1:9",
        CABROKER_AUDIENCE="",
        INPUT_ACCESS="read",
        INPUT_REPOSITORY="",
        INPUT_PACKAGES="",
        INPUT_DURATION="",
        GITHUB_ENV=str(tmp_path / "github_env"),
        GITHUB_OUTPUT=str(tmp_path / "github_output"),
    )
    bash = shutil.which("bash")
    assert bash, "the action's shell is bash"
    done = subprocess.run(
        [bash, "-c", script()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 5, done.stdout + done.stderr
    assert done.stderr.startswith("cabroker: no identity found"), done.stderr
    venv_python = tmp_path / "cabroker-action" / "bin" / "python"
    listing = subprocess.run(
        [
            str(venv_python),
            "-I",
            "-c",
            "import importlib.metadata as m, json, cabroker; print(json.dumps([cabroker.__file__, "
            "{d.metadata['Name']: d.version for d in m.distributions()}]))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    source, installed = json.loads(listing.stdout)
    assert Path(source).is_relative_to(ROOT / "client" / "src")
    versions: dict[str, Version] = {
        canonicalize_name(name): Version(v) for name, v in installed.items()
    }
    locked: dict[str, Version] = {name: version for name, (version, _, _) in pinned().items()}
    assert {name: versions.get(name) for name in locked} == locked
    assert set(versions) - set(locked) <= {"pip", "setuptools"}, "an unpinned distribution"
