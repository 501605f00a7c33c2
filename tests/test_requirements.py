"""Every tool and library the project installs is pinned to one release, and the one binary we
take from a project we do not otherwise depend on (actionlint) is pinned by hash too."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted([*ROOT.glob("requirements/*.txt"), ROOT / "functions" / "requirements.txt"])


def _logical_lines(path: Path) -> list[str]:
    """The file's requirement lines: comments dropped, backslash continuations joined."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    lines = (re.sub(r"(^|\s)#.*$", "", line).strip() for line in text.splitlines())
    return [line for line in lines if line]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_requirement_is_pinned_to_one_release(path: Path) -> None:
    for line in _logical_lines(path):
        if line.startswith("-r ") or line in ("-e .", "-e ./client[keyring]"):
            continue
        requirement = Requirement(line.split(" --hash=")[0])
        operators = [specifier.operator for specifier in requirement.specifier]
        assert operators == ["=="], f"{path.name}: {line}"


def test_actionlint_is_installed_by_hash_and_every_wheel_is_pinned() -> None:
    path = ROOT / "requirements" / "actionlint.txt"
    (line,) = _logical_lines(path)
    hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})\b", line)
    assert len(hashes) == len(set(hashes)) >= 3  # Linux, macOS and Windows wheels
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "--require-hashes --no-deps -r requirements/actionlint.txt" in makefile
    assert "actionlint" not in "\n".join(_logical_lines(ROOT / "requirements" / "dev.txt"))
