"""`cabroker-admin rules diff OLD NEW [--tests TESTS]`: what a change grants differently
(rules compared by name: added, removed, widened, narrowed, changed; issuers), or which tests'
decisions change. Exit 0 whatever changed, 1 an invalid document, 2 a wrong command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from broker.rules import parse
from cabroker_admin import rulesdiff
from tests.admin.conftest import BROKEN, RELEASES
from tests.admin.test_cli import one_error, run
from tests.admin.test_evaluate import RULES, TESTS, write

OLD = """\
version: 1
issuers:
  corp: {url: "https://login.example.com", audience: cabroker}
  old: {url: "https://old.example.com", audience: cabroker}
rules:
  - name: readers
    issuer: corp
    claims: {groups: [eng, ops]}
    grant: {repository: internal, access: read, max_duration: 3600}
  - name: tools
    issuer: corp
    claims: {groups: tools, email: "*@example.com"}
    grant: {repository: internal, access: publish, packages: ["tools-*"], max_duration: 3600}
  - name: ci
    issuer: corp
    claims: {repository: "acme/*"}
    grant: {repository: internal, access: read}
  - name: legacy
    issuer: old
    claims: {sub: x}
    grant: {repository: internal, access: read}
  - name: same
    issuer: corp
    claims: {groups: same}
    grant: {repository: other, access: read}
"""
NEW = """\
version: 1
issuers:
  corp: {url: "https://login.example.com", audience: cabroker-2}
  gitlab: {url: "https://gitlab.example.com", audience: cabroker}
rules:
  - name: same
    issuer: corp
    claims: {groups: same}
    grant: {repository: other, access: read}
  - name: readers
    issuer: corp
    claims: {groups: [eng, ops, "contractors-*"]}
    grant: {repository: internal, access: read, max_duration: 43200}
  - name: tools
    issuer: corp
    claims: {groups: tools}
    grant: {repository: other, access: publish, packages: ["tools-lint", "cli"]}
  - name: ci
    issuer: corp
    claims: {repository: "acme/app*", ref: refs/heads/main}
    grant: {repository: internal, access: read, max_duration: 900}
  - name: gitlab-read
    issuer: gitlab
    claims: {namespace_path: acme}
    grant: {repository: internal, access: read}
"""


@pytest.fixture
def documents(tmp_path: Path) -> tuple[str, str]:
    return write(tmp_path, "old.yaml", OLD), write(tmp_path, "new.yaml", NEW)


def diff(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    return run(capsys, "rules", "diff", *argv)


def test_diff_lists_what_is_granted_differently(
    documents: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = documents
    code, out, err = diff(capsys, old, new)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"{old} → {new}:",
        "  issuer added: gitlab",
        "  issuer removed: old",
        "  issuer changed: corp: audience 'cabroker' → 'cabroker-2'",
        "  rule added: gitlab-read (issuer gitlab): read access to repository 'internal', "
        "max_duration 3600 s",
        "  rule removed: legacy (issuer old): read access to repository 'internal', "
        "max_duration 3600 s",
        "  rule widened: readers",
        "    grant.max_duration: 3600 → 43200 s",
        "    claims.groups: now accepts 'contractors-*'",
        "  rule changed: tools",
        "    grant.repository: 'internal' → 'other'",
        "    grant.packages: gains 'cli'; loses 'tools-*'",
        "    claims.email: no longer constrained (was '*@example.com')",
        "  rule narrowed: ci",
        "    grant.max_duration: 3600 → 900 s",
        "    claims.repository: no longer accepts 'acme/*'",
        "    claims.ref: newly constrained to 'refs/heads/main'",
        "  1 rule unchanged",
    ]


def test_diff_as_json(documents: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    old, new = documents
    code, out, _ = diff(capsys, old, new, "--format", "json")
    assert code == 0
    found = json.loads(out)
    assert (found["old"], found["new"]) == (old, new)
    assert found["issuers"] == {
        "added": ["gitlab"],
        "removed": ["old"],
        "changed": [{"name": "corp", "changes": ["audience 'cabroker' → 'cabroker-2'"]}],
    }
    rules = found["rules"]
    assert [rule["name"] for rule in rules["added"]] == ["gitlab-read"]
    assert rules["removed"][0] == {
        "name": "legacy",
        "issuer": "old",
        "claims": {"sub": ["x"]},
        "grant": {"repository": "internal", "access": "read", "packages": [], "max_duration": 3600},
    }
    assert [(r["name"], r["verdict"]) for r in rules["changed"]] == [
        ("readers", "widened"),
        ("tools", "changed"),
        ("ci", "narrowed"),
    ]
    assert rules["changed"][0]["changes"][0] == {
        "what": "grant.max_duration",
        "direction": "wider",
        "detail": "3600 → 43200 s",
    }
    assert rules["unchanged"] == 1


def test_the_same_rules_in_another_order_grant_nothing_differently(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = write(tmp_path, "old.yaml", RELEASES)
    head, engineers, release = RELEASES.split("  - name: ")
    reordered = f"{head}  - name: {release}  - name: {engineers}"
    reordered = reordered.replace("{groups: engineering}", "{groups: [engineering, engineering]}")
    assert parse(reordered).rules[0].name == "release-from-main"
    new = write(tmp_path, "new.yaml", reordered)
    code, out, _ = diff(capsys, old, new)
    assert (code, out) == (0, f"{old} → {new}: nothing granted differently\n  2 rules unchanged\n")


@pytest.mark.parametrize(
    ("before", "after", "direction"),
    [
        (["acme/*"], ["acme/app*"], "narrower"),  # a glob under the old glob
        (["acme/app*"], ["acme/*"], "wider"),
        (["acme/*"], ["acme/*", "acme/app"], None),  # already accepted
        (["a", "b"], ["b", "a"], None),
        (["a"], ["b"], "changed"),
        (["*-main"], ["*-main", "x*y-main"], None),
    ],
)
def test_claim_alternatives_are_compared_by_what_they_accept(
    before: list[str], after: list[str], direction: str | None
) -> None:
    def rules(alternatives: list[str]) -> str:
        return (
            "version: 1\nissuers: {corp: {url: 'https://a.example', audience: a}}\nrules:\n"
            f"  - {{name: r, issuer: corp, claims: {{c: {json.dumps(alternatives)}}}, "
            "grant: {repository: internal, access: read}}\n"
        )

    found = rulesdiff.diff(parse(rules(before)), parse(rules(after)))
    directions = [change.direction for rule in found.rules_changed for change in rule.changes]
    assert directions == ([] if direction is None else [direction])


@pytest.mark.parametrize(
    ("before", "after", "verdict"),
    [
        ("access: read", "access: publish, packages: ['a-*']", "widened"),
        ("access: publish, packages: ['a-*']", "access: read", "narrowed"),
        (
            "access: publish, packages: ['a-*']",
            "access: publish, packages: ['a-b', 'a-c*']",
            "narrowed",
        ),
        (
            "access: publish, packages: ['a-b']",
            "access: publish, packages: ['A_B', 'c']",
            "widened",
        ),
        ("access: publish, packages: ['a-*']", "access: publish, packages: ['a*']", "widened"),
    ],
)
def test_grants_are_compared_by_what_they_allow(before: str, after: str, verdict: str) -> None:
    def rules(grant: str) -> str:
        return (
            "version: 1\nissuers: {corp: {url: 'https://a.example', audience: a}}\nrules:\n"
            f"  - {{name: r, issuer: corp, claims: {{c: x}}, "
            f"grant: {{repository: internal, {grant}}}}}\n"
        )

    found = rulesdiff.diff(parse(rules(before)), parse(rules(after)))
    assert [rule.verdict for rule in found.rules_changed] == [verdict]


# --------------------------------------------------------------------------- with tests


def test_with_tests_diff_lists_each_decision_that_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = write(tmp_path, "old.yaml", RULES)
    changed = RULES.replace("ref: refs/heads/main", 'ref: [refs/heads/main, "refs/tags/*"]')
    changed = changed.replace("max_duration: 43200", "max_duration: 3600")
    changed = changed.replace("claims: {groups: release}", "claims: {groups: releasers}")
    new = write(tmp_path, "new.yaml", changed)
    tests = write(tmp_path, "tests.yaml", TESTS)
    code, out, err = diff(capsys, old, new, "--tests", tests)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"{old} → {new}, over the 5 tests of {tests}: 3 decisions change"
    assert [line for line in lines if not line.startswith("    ")] == [
        lines[0],
        "  engineers-read: another grant",
        "  release-publishes-acme: allow → deny",
        "  tags-are-refused: deny → allow",
    ]
    assert lines[2] == (
        "    before: allow: rule 'engineers-read', read access to repository 'internal', "
        "43200 s (max_duration 43200)"
    )
    code, out, _ = diff(capsys, old, new, "--tests", tests, "--format", "json")
    assert code == 0
    found = json.loads(out)
    assert found["tests"] == 5
    assert [(c["name"], c["kind"]) for c in found["changes"]] == [
        ("engineers-read", "grant"),
        ("release-publishes-acme", "allow-to-deny"),
        ("tags-are-refused", "deny-to-allow"),
    ]
    assert found["changes"][1]["new"] == {
        "decision": "deny",
        "rule": None,
        "grant": None,
        "reason": "no-matching-rule",
        "detail": "no access rule matches issuer 'corp' subject None; ask an admin for access",
    }


def test_with_tests_and_no_change_diff_says_so(
    rules: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tests = write(tmp_path, "tests.yaml", TESTS)
    code, out, _ = diff(capsys, rules, rules, "--tests", tests)
    assert code == 0
    assert out == f"{rules} → {rules}, over the 5 tests of {tests}: 0 decisions change\n"


@pytest.fixture
def rules(tmp_path: Path) -> str:
    return write(tmp_path, "rules.yaml", RULES)


def test_diff_exit_codes(rules: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = write(tmp_path, "broken.yaml", BROKEN)
    code, out, err = diff(capsys, rules, broken)
    assert (code, out) == (1, "")
    assert one_error(err).startswith(f"cabroker-admin: {broken}: not valid YAML")
    assert diff(capsys, broken, rules)[0] == 1
    code, _, err = diff(capsys, rules, str(tmp_path / "missing.yaml"))
    assert code == 2
    assert "cannot read" in one_error(err)
    bad_tests = write(tmp_path, "tests.yaml", "tests: 1\n")
    code, _, err = diff(capsys, rules, rules, "--tests", bad_tests)
    assert code == 2
    assert "field 'tests' must be a non-empty list" in one_error(err)
    assert diff(capsys, rules)[0] == 2
    assert diff(capsys, rules, rules, "--format", "yaml")[0] == 2
