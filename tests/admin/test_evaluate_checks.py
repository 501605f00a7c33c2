"""`rules explain|test|diff` decide what the broker decides: a document is always put through
the broker's acceptance check (a full grant too large for a session policy is refused without
--repositories too), a decision's grant must fit a session policy as at request time, and a
test naming an issuer the rules do not (a typo) is a usage error, not a silent pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cabroker_admin import evaluate
from cabroker_admin.deployment import PLACEHOLDER_DOMAIN
from cabroker_admin.errors import UsageError
from tests.admin.test_cli import one_error, run
from tests.admin.test_evaluate import RULES, TESTS, write

TYPO = """\
tests:
  - name: forks-are-refused
    issuer: githib
    claims: {repository_owner: someone-else}
    expect: {decision: deny, reason: no-matching-rule}
"""
# A rule whose full grant cannot fit in a session policy (rules check: CAB001).
LONG = [f"acme-a-very-long-package-name-number-{i:02d}" for i in range(20)]
HUGE = RULES + (
    "  - name: huge\n    issuer: corp\n    claims: {groups: huge}\n"
    f"    grant: {{repository: internal, access: publish, packages: [{', '.join(LONG)}]}}\n"
)
MAIN = {"repository_owner": "acme", "ref": "refs/heads/main", "repository": "acme/app"}


@pytest.fixture
def rules(tmp_path: Path) -> str:
    return write(tmp_path, "rules.yaml", RULES)


def test_rules_test_refuses_an_issuer_the_rules_do_not_name(
    rules: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tests = write(tmp_path, "tests.yaml", TYPO)
    code, out, err = run(capsys, "rules", "test", rules, tests)
    assert (code, out) == (2, "")
    assert one_error(err) == (
        f"cabroker-admin: {tests}: test 'forks-are-refused': field 'issuer': 'githib' is not an "
        "issuer of the rules ('corp', 'github')"
    )


def test_rules_diff_refuses_an_issuer_of_neither_document_and_shows_one_removed(
    rules: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tests = write(tmp_path, "tests.yaml", TYPO)
    code, out, err = run(capsys, "rules", "diff", rules, rules, "--tests", tests)
    assert (code, out) == (2, "")
    assert "test 'forks-are-refused': field 'issuer': 'githib' is not an issuer of either" in (
        one_error(err)
    )
    # github removed in NEW: a change to show (allow → deny, invalid-token), not an error.
    without = RULES.split("  - name: main-publishes")[0].replace(
        RULES.split("issuers:\n")[1].splitlines()[0] + "\n", ""
    )
    assert "github" not in without
    new = write(tmp_path, "new.yaml", without)
    all_tests = write(tmp_path, "all.yaml", TESTS)
    code, out, err = run(capsys, "rules", "diff", rules, new, "--tests", all_tests)
    assert (code, err) == (0, "")
    assert "  main-publishes: allow → deny" in out.splitlines()
    assert "deny (invalid-token)" in out


def test_run_and_decision_changes_refuse_an_unknown_issuer() -> None:
    rules = evaluate.load_rules(RULES, "rules.yaml")
    cases = evaluate.parse_tests(TYPO, "t.yaml")
    with pytest.raises(UsageError, match="'githib' is not an issuer"):
        evaluate.run(rules, cases)
    with pytest.raises(UsageError, match="'githib' is not an issuer"):
        evaluate.decision_changes(rules, rules, cases)


@pytest.mark.parametrize(
    "command",
    [
        ["explain", "{rules}", "--issuer", "corp", "--claims", "{{}}"],
        ["test", "{rules}", "{tests}"],
        ["diff", "{rules}", "{rules}"],
        ["diff", "{rules}", "{rules}", "--tests", "{tests}"],
    ],
)
def test_a_grant_that_cannot_fit_a_session_policy_is_refused_without_repositories(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    huge = write(tmp_path, "huge.yaml", HUGE)
    tests = write(tmp_path, "tests.yaml", TESTS)
    argv = [part.format(rules=huge, tests=tests) for part in command]
    code, out, err = run(capsys, "rules", *argv)
    assert (code, out) == (1, "")
    assert one_error(err).startswith(
        f"cabroker-admin: {huge}: rule 'huge': field 'grant.packages': the session policy"
    )


def test_explain_refuses_a_grant_too_large_for_a_session_policy_as_the_broker_does(
    rules: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    request = json.dumps({"packages": LONG})
    argv = ["rules", "explain", rules, "--issuer", "github", "--claims", json.dumps(MAIN)]
    code, out, _ = run(capsys, *argv, "--request", request, "--format", "json")
    assert code == 0
    found = json.loads(out)
    assert (found["decision"], found["reason"]) == ("deny", "policy-too-large")
    assert "over the 2048" in found["detail"]
    # Fewer packages fit.
    code, out, _ = run(capsys, *argv, "--request", json.dumps({"packages": LONG[:3]}))
    assert code == 0
    assert "allow: rule 'main-publishes'" in out


def test_a_test_may_expect_policy_too_large(
    rules: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tests = write(
        tmp_path,
        "tests.yaml",
        "tests:\n  - name: too-many\n    issuer: github\n"
        f"    claims: {json.dumps(MAIN)}\n    request: {json.dumps({'packages': LONG})}\n"
        "    expect: {decision: deny, reason: policy-too-large}\n",
    )
    assert run(capsys, "rules", "test", rules, tests) == (0, "1 passed, 0 failed\n", "")
    # The size depends on the domain: the placeholder's unless --domain/--domain-owner.
    assert PLACEHOLDER_DOMAIN.name == "domain"
    served = ["--domain", "acme", "--domain-owner", "123456789012"]
    assert run(capsys, "rules", "test", rules, tests, *served)[0] == 0
