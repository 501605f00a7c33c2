"""The composite GitHub Action (action.yml): inputs reach its script only as environment
variables (never spliced into it: script injection), and it logs in non-interactively into
GITHUB_ENV with the inputs it declares."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ACTION = Path(__file__).resolve().parents[2] / "action.yml"


def action() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(ACTION.read_text())
    return document


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


def test_outputs_come_from_the_login_step() -> None:
    document = action()
    for name, output in document["outputs"].items():
        assert output["value"] == f"${{{{ steps.login.outputs.{name} }}}}"
