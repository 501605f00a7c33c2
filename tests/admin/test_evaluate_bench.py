"""bench/rules_admin.py, run for real with tiny sizes so it cannot rot: its document is valid,
its generated tests all pass (through the library and the command), and its table and JSON
carry every figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import rules_admin
from broker.rules import compile_document
from cabroker_admin import evaluate

ROOT = Path(__file__).resolve().parents[2]


def test_the_generated_document_and_tests_are_what_they_claim() -> None:
    rules = compile_document(rules_admin.document(12))
    assert len(rules.rules) == 12
    assert set(rules.issuers) == set(rules_admin.ISSUERS)
    assert {rule.grant.access for rule in rules.rules} == {"read", "publish"}
    assert len(rules.repositories()) == 8
    text = json.dumps(rules_admin.tests(12, 60))
    cases = evaluate.parse_tests(text, "tests.json")
    results = evaluate.run(rules, cases)
    assert [r.case.name for r in results if not r.passed] == []
    decisions = {(r.explanation.decision, r.explanation.reason) for r in results}
    assert decisions == {
        ("allow", None),
        ("deny", "no-matching-rule"),
        ("deny", "grant-exceeded"),
    }


def test_the_benchmark_runs_and_prints_its_json() -> None:
    sizes = ["--rules", "8", "--tests", "40", "--runs", "1", "--json"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "rules_admin.py"), *sizes],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert (figures["rules"], figures["tests"], figures["runs"]) == (8, 40, 1)
    assert set(figures["ms"]) == {
        "load",
        "parse_tests",
        "run_tests",
        "test_in_process",
        "test_cli",
        "check_in_process",
        "check_cli",
    }
    assert all(value > 0 for value in figures["ms"].values())
    assert figures["cli_output"] == "40 passed, 0 failed"


def test_the_benchmark_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    rules_admin.main(["--rules", "4", "--tests", "10", "--runs", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["benchmark", "result"]
    assert any(line.startswith("load: parse + acceptance check") for line in lines)
    assert any("`python -m cabroker_admin rules test`" in line for line in lines)
