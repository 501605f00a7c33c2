"""Every mutant of ``make mutants`` still applies: its text is found exactly once where it edits
(else a refactor silently retired a security check's guard), and its guarding tests exist."""

from __future__ import annotations

import pytest

from tests.mutants import ROOT, Mutant, all_mutants

MUTANTS = all_mutants()


@pytest.mark.parametrize("candidate", MUTANTS, ids=[m.name for m in MUTANTS])
def test_the_mutant_applies(candidate: Mutant) -> None:
    texts: dict[str, str] = {}
    for edit in candidate.edits:
        current = texts.get(edit.file) or (ROOT / edit.file).read_text(encoding="utf-8")
        assert current.count(edit.original) == 1, f"{edit.file}: {edit.original!r}"
        texts[edit.file] = current.replace(edit.original, edit.replacement)
    for test in candidate.tests:
        assert (ROOT / test.split("::")[0]).is_file(), test
