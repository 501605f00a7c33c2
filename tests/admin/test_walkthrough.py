"""The admin page's rules-change walkthrough (docs/admin.md, "A rules change, end to end"):
every `cabroker-admin` command in it is one the CLI accepts, and the steps are all there."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from cabroker_admin.cli import parser

ADMIN = Path(__file__).resolve().parents[2] / "docs" / "admin.md"


def walkthrough() -> str:
    text = ADMIN.read_text(encoding="utf-8")
    found = re.findall(r"<!-- walkthrough -->\n```sh\n(.*?)```\n<!-- /walkthrough -->", text, re.S)
    assert len(found) == 1
    return str(found[0])


def commands() -> list[list[str]]:
    lines = [line for line in walkthrough().splitlines() if line.startswith("cabroker-admin ")]
    return [shlex.split(line.split(">", 1)[0])[1:] for line in lines]


@pytest.mark.parametrize("argv", commands(), ids=lambda argv: " ".join(argv[:2]))
def test_each_command_parses(argv: list[str]) -> None:
    parsed = parser().parse_args(argv)
    assert parsed is not None


def test_the_walkthrough_covers_a_change_from_edit_to_a_denial() -> None:
    verbs = [" ".join(argv[:2]) if argv[0] == "rules" else argv[0] for argv in commands()]
    for step in ("rules check", "rules test", "rules diff", "rules push", "rules promote", "why"):
        assert step in verbs
    assert "--shadow" in walkthrough()
