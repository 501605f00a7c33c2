"""The rules file for admins, rules.yaml beside samconfig.toml: accepted by the broker's own
check as it stands (trusts no issuer, grants nothing), and with its commented examples used."""

from __future__ import annotations

from pathlib import Path

from broker.acceptance import accept
from tests.admin.conftest import DOMAIN

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "rules.yaml"
SERVED = ("internal",)  # the template's default repository


def uncommented(text: str) -> str:
    """The file as its header tells an admin to use the examples: `issuers: {}` and `rules: []`
    replaced by the `#issuers:` and `#rules:` blocks without their first `#`."""
    lines, in_example = [], False
    for line in text.splitlines(keepends=True):
        if line.rstrip("\n") in ("issuers: {}", "rules: []"):
            continue
        if line.startswith(("#issuers:", "#rules:")):
            in_example = True
        elif not line.startswith("#"):
            in_example = False
        lines.append(line[1:] if in_example else line)
    return "".join(lines)


def test_the_rules_file_is_accepted_and_grants_nothing() -> None:
    assert RULES.parent == (ROOT / "samconfig.toml").parent
    rules = accept(RULES.read_text(encoding="utf-8"), DOMAIN, SERVED)
    assert (dict(rules.issuers), rules.rules) == ({}, ())


def test_its_examples_uncommented_are_accepted() -> None:
    rules = accept(uncommented(RULES.read_text(encoding="utf-8")), DOMAIN, SERVED)
    assert sorted(rules.issuers) == ["aws-analytics", "corp", "github", "gitlab"]
    assert {rule.issuer for rule in rules.rules} == {"aws-analytics", "corp", "github", "gitlab"}
    assert len(rules.rules) >= 5


def test_the_github_examples_match_a_github_actions_token() -> None:
    rules = accept(uncommented(RULES.read_text(encoding="utf-8")), DOMAIN, SERVED)
    github = rules.issuers["github"]
    assert github.url == "https://token.actions.githubusercontent.com"
    claims = {
        "repository": "acme/app",
        "repository_owner": "acme",
        "repository_owner_id": "1234567",
        "repository_id": "7654321",
        "ref": "refs/heads/main",
        "event_name": "push",
        "environment": "release",
    }
    matched = [rule.name for rule in rules.matching("github", claims)]
    assert matched == ["release-from-main", "ci-read"]
    elsewhere = {**claims, "ref": "refs/heads/feature", "environment": "test"}
    assert [rule.name for rule in rules.matching("github", elsewhere)] == ["ci-read"]
    # A workflow GitHub runs on main for another event (a pull request from a fork, a comment):
    # the same ref, not a push.
    for event in ("pull_request_target", "issue_comment", "workflow_run", "schedule"):
        other = {**claims, "event_name": event}
        assert [rule.name for rule in rules.matching("github", other)] == ["ci-read"]
    # Immutable ids, not names that can change hands.
    release = next(rule for rule in rules.rules if rule.name == "release-from-main")
    assert {c.claim for c in release.constraints} >= {"repository_owner_id", "repository_id"}


def test_the_gitlab_and_corp_examples_match_their_tokens() -> None:
    rules = accept(uncommented(RULES.read_text(encoding="utf-8")), DOMAIN, SERVED)
    gitlab = {"job_namespace_id": "4242", "ref_type": "branch", "ref_protected": "true"}
    assert [r.name for r in rules.matching("gitlab", gitlab)] == ["gitlab-protected-publish"]
    unprotected = {**gitlab, "ref_protected": "false"}
    assert rules.matching("gitlab", unprotected) == []
    corp = {"groups": ["engineering", "staff"]}
    assert [r.name for r in rules.matching("corp", corp)] == ["engineers-read"]
