"""The lints of `cabroker-admin rules check` (admin/cabroker_admin/lint.py) as a truth table:
for every code, documents that must raise it and documents that must not, each with the exact
set of findings it gets; the broker's refusals are CAB001 and nothing else."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from broker.grants import ResolvedGrant
from broker.problems import PolicyTooLarge
from broker.scope import MAX_POLICY_CHARS, Domain, session_policy
from broker.settings import MAX_TOKEN_SECONDS
from cabroker_admin import lint
from cabroker_admin.deployment import PLACEHOLDER_DOMAIN
from cabroker_admin.lint import LINTS, Deployment, check, issuer_kind
from devstack.stack import expand_rules
from infra.package_groups import pattern_error, pypi_prefix_pattern
from tests.admin.test_rules_file import uncommented

ROOT = Path(__file__).resolve().parents[2]
ISSUERS = {
    "github": {"url": "https://token.actions.githubusercontent.com", "audience": "https://b"},
    "gitlab": {"url": "https://gitlab.com", "audience": "https://b"},
    "selfhosted": {"url": "https://gitlab.example.com", "audience": "https://b"},
    "standin": {"url": "http://127.0.0.1:8080/github", "audience": "https://b"},
    "ghes": {"url": "https://github.example.com/_services/token", "audience": "https://b"},
    "corp": {"url": "https://login.example.com", "audience": "cli", "client_id": "cli"},
}
READ = {"repository": "internal", "access": "read"}
IDS = {"repository_owner_id": "1234567", "repository_id": "7654321"}
# A release rule: a push to main (CAB202 warns of the ref alone, REF_MAIN).
REF_MAIN = {**IDS, "ref": "refs/heads/main"}
MAIN = {**REF_MAIN, "event_name": "push"}


def publish(*packages: str, repository: str = "internal") -> dict[str, Any]:
    return {"repository": repository, "access": "publish", "packages": list(packages)}


def rule(
    name: str, claims: dict[str, Any], grant: dict[str, Any] | None = None, issuer: str = "github"
) -> dict[str, Any]:
    return {"name": name, "issuer": issuer, "claims": claims, "grant": grant or READ}


def document(*rules: dict[str, Any]) -> str:
    return json.dumps({"version": 1, "issuers": ISSUERS, "rules": list(rules)})


@dataclass(frozen=True)
class Case:
    about: str  # the code the case is about: it must be raised, or must not be
    text: str
    expected: set[tuple[str, str | None]]
    deployment: Deployment = field(default_factory=Deployment)

    @property
    def positive(self) -> bool:
        return any(code == self.about for code, _ in self.expected)


def found(text: str, deployment: Deployment | None = None) -> set[tuple[str, str | None]]:
    return {(f.code, f.rule) for f in check(text, deployment or Deployment()).findings}


def policy_size(packages: list[str], domain: Domain) -> int | None:
    grant = ResolvedGrant("r", "internal", "publish", tuple(packages), MAX_TOKEN_SECONDS)
    try:
        return len(session_policy(grant, domain))
    except PolicyTooLarge:
        return None


def near_limit_packages(domain: Domain) -> list[str]:
    """Patterns whose publish grant's session policy is as large as fits in ``domain``: as
    many short ones as fit, the last one then lengthened."""
    packages = ["p00*"]
    while policy_size([*packages, f"p{len(packages):02d}*"], domain) is not None:
        packages.append(f"p{len(packages):02d}*")
    while policy_size([*packages[:-1], packages[-1][:-1] + "x*"], domain) is not None:
        packages[-1] = packages[-1][:-1] + "x*"
    size = policy_size(packages, domain)
    assert size is not None
    assert size > MAX_POLICY_CHARS - 5
    return packages


NEAR = near_limit_packages(PLACEHOLDER_DOMAIN)
ACME = Deployment(internal_prefixes=("acme",))

# CAB201: constraints that gate a publish rule, and constraints that do not (lint.GATE_RULE).
GATED: dict[str, dict[str, Any]] = {
    "a release tag pattern": {"ref": "refs/tags/v*"},
    "a branch prefix": {"ref": "refs/heads/release/*"},
    "two branches": {"ref": ["refs/heads/main", "refs/heads/maint"]},
    "a protected ref": {"ref_protected": "true"},
    "a protected ref and any ref": {"ref_protected": "true", "ref": "refs/*"},
    "environments named": {"environment": ["release", "production"]},
    "a workflow on main": {
        "workflow_ref": "acme/app/.github/workflows/release.yml@refs/heads/main"
    },
    "a sub naming main": {"sub": "repo:acme/app:ref:refs/heads/main"},
}
# CAB202: those of GATED that gate on a ref only (GitHub's default branch can be any branch).
REF_ONLY = {
    "a branch prefix",
    "two branches",
    "a protected ref",
    "a protected ref and any ref",
    "a sub naming main",
}
# CAB202: what else a rule gated on main must constrain, and what does not do it.
KEPT_OUT: dict[str, dict[str, Any]] = {
    "a push": {"event_name": "push"},
    "a push or a dispatch": {"event_name": ["push", "workflow_dispatch"]},
    "a release environment": {"environment": "release"},
    "the release workflow": {
        "workflow_ref": "acme/app/.github/workflows/release.yml@refs/heads/main"
    },
    "a reusable release workflow": {
        "job_workflow_ref": "acme/ci/.github/workflows/publish.yml@refs/tags/v1"
    },
}
NOT_KEPT_OUT: dict[str, dict[str, Any]] = {
    "any event": {},
    "a push or pull_request_target": {"event_name": ["push", "pull_request_target"]},
    "any pull request event": {"event_name": "pull_request*"},
    "an issue comment": {"event_name": "issue_comment"},
    "a finished workflow run": {"event_name": "workflow_run"},
    "a schedule": {"event_name": "schedule"},
    "any environment": {"environment": "*-release"},
    "any workflow file": {"workflow_ref": "acme/app/.github/workflows/*@refs/heads/main"},
    "a branch, not a tag": {"ref_type": "branch"},
    "a protected ref": {"ref_protected": "true"},
}
NOT_GATED: dict[str, dict[str, Any]] = {
    "every branch": {"ref": "refs/heads/*"},
    "every ref": {"ref": "refs/*"},
    "every tag": {"ref": "refs/tags/*"},
    "a pull request ref": {"ref": "refs/pull/1/merge"},
    "main or every branch": {"ref": ["refs/heads/main", "refs/heads/*"]},
    "a branch suffix": {"ref": "refs/heads/*main"},
    "an unprotected ref": {"ref_protected": "false"},
    "either protection": {"ref_protected": ["true", "false"]},
    "any environment": {"environment": "*-release"},
    "a workflow on any ref": {"workflow_ref": "acme/app/.github/workflows/r.yml@*"},
    "a workflow of any file": {"job_workflow_ref": "acme/ci/.github/workflows/*@refs/heads/main"},
    "a workflow without a ref": {"workflow_ref": "acme/app/.github/workflows/r.yml"},
    "a sub naming every branch": {"sub": "repo:acme/app:ref:refs/heads/*"},
    "a sub naming any environment": {"sub": "repo:acme/app:environment:*"},
    "ref_type alone": {"ref_type": "tag"},
}

# CAB202, GitLab: (about, the claims besides job_project_id, whether CAB202 warns).
GITLAB_REF_ONLY: list[tuple[str, dict[str, Any], bool]] = [
    ("a branch path", {"ref_path": "refs/heads/main"}, True),
    (
        "the default branch's CI file",
        {"ci_config_ref_uri": "gitlab.com/acme/data//.gitlab-ci.yml@refs/heads/main"},
        True,
    ),
    (
        "main, merge requests included",
        {"ref": "main", "pipeline_source": ["push", "merge_request_event"]},
        True,
    ),
    ("main, in any merge_* pipeline", {"ref": "main", "pipeline_source": "merge_*"}, True),
    ("main in a named environment", {"ref": "main", "environment": "production"}, True),
    ("main, on a self-hosted GitLab", {"ref": "main", "job_project_path": "a/b"}, True),
    ("main, pushed", {"ref": "main", "pipeline_source": "push"}, False),
    ("main, protected", {"ref": "main", "ref_protected": "true"}, False),
    (
        "a protected environment",
        {"ref": "main", "environment": "production", "environment_protected": "true"},
        False,
    ),
    ("a tag", {"ref": "v1.0", "ref_type": "tag"}, False),
    ("a tag path", {"ref_path": "refs/tags/v*"}, False),
    (
        "a tag's CI file",
        {"ci_config_ref_uri": "gitlab.com/acme/data//.gitlab-ci.yml@refs/tags/v*"},
        False,
    ),
]

CASES: dict[str, Case] = {
    # CAB001: the broker refuses the document; the lints do not run.
    "invalid": Case(
        "CAB001",
        document(rule("bad", IDS, {"repository": "internal", "access": "write"})),
        {("CAB001", "bad")},
    ),
    "undeclared issuer": Case(
        "CAB001", document(rule("lost", IDS, issuer="nobody")), {("CAB001", "lost")}
    ),
    "a repository the stack does not serve": Case(
        "CAB001",
        document(rule("elsewhere", IDS, {"repository": "other", "access": "read"})),
        {("CAB001", "elsewhere")},
        Deployment(repositories=("internal",)),
    ),
    "not YAML": Case("CAB001", "version: [1", {("CAB001", None)}),
    "valid": Case("CAB001", document(rule("ok", IDS)), set()),
    # CAB101: names where GitHub has ids.
    "owner by name": Case(
        "CAB101",
        document(rule("owner", {"repository_owner": "acme", "ref": "refs/heads/main"})),
        {("CAB101", "owner")},
    ),
    "repository by name under an owner id": Case(
        "CAB101",
        document(rule("repo", {"repository_owner_id": "1", "repository": "acme/app"})),
        {("CAB101", "repo")},
    ),
    "names on a stand-in for GitHub": Case(
        "CAB101",
        document(rule("standin", {"repository_owner": "acme"}, issuer="standin")),
        {("CAB101", "standin")},
    ),
    "names on GitHub Enterprise Server": Case(
        "CAB101",
        document(rule("ghes", {"repository": "acme/app", "run_id": "1"}, issuer="ghes")),
        {("CAB101", "ghes")},
    ),
    "ids": Case("CAB101", document(rule("ids", IDS)), set()),
    "a name with its id": Case(
        "CAB101",
        document(rule("both", {"repository_owner": "acme", "repository_owner_id": "1"})),
        set(),
    ),
    "an owner by name with a repository id": Case(
        "CAB101",
        document(rule("pinned", {"repository_owner": "acme", "repository_id": "2"})),
        set(),
    ),
    "a repository by name with a repository id": Case(
        "CAB101",
        document(rule("pinned", {"repository": "acme/app", "repository_id": "2"})),
        set(),
    ),
    "repository on a corporate IdP": Case(
        "CAB101",
        document(rule("corp", {"repository": "acme/app", "groups": "eng"}, issuer="corp")),
        set(),
    ),
    # CAB102: sub on GitHub.
    "sub": Case(
        "CAB102",
        document(rule("sub", {"sub": "repo:acme/app:ref:refs/heads/main"})),
        {("CAB102", "sub")},
    ),
    "sub on a corporate IdP": Case(
        "CAB102", document(rule("corp", {"sub": "00u1"}, issuer="corp")), set()
    ),
    # CAB103: GitLab's project_* claims.
    "project_path": Case(
        "CAB103",
        document(
            rule("gl", {"project_path": "acme/app", "ref_protected": "true"}, issuer="gitlab")
        ),
        {("CAB103", "gl")},
    ),
    "namespace_id on a self-managed GitLab": Case(
        "CAB103",
        document(rule("gl", {"namespace_id": "42", "ref": "main"}, issuer="selfhosted")),
        {("CAB103", "gl")},
    ),
    "job_project_path": Case(
        "CAB103",
        document(
            rule("gl", {"job_project_path": "acme/app", "ref_protected": "true"}, issuer="gitlab")
        ),
        set(),
    ),
    "project_path with job_project_path": Case(
        "CAB103",
        document(
            rule(
                "gl",
                {"project_path": "acme/app", "job_project_path": "acme/app", "ref": "main"},
                issuer="gitlab",
            )
        ),
        set(),
    ),
    # CAB201: CI publish rules without a gate.
    "publish on ids alone": Case(
        "CAB201", document(rule("rel", IDS, publish("acme-*"))), {("CAB201", "rel")}
    ),
    "publish on a sub without a ref": Case(
        "CAB201",
        document(rule("rel", {**IDS, "sub": "repo:acme/*"}, publish("acme-*"))),
        {("CAB102", "rel"), ("CAB201", "rel")},
    ),
    "GitLab publish on a project id alone": Case(
        "CAB201",
        document(rule("gl", {"job_project_id": "1"}, publish("acme-*"), issuer="gitlab")),
        {("CAB201", "gl")},
    ),
    "publish from main": Case("CAB201", document(rule("rel", MAIN, publish("acme-*"))), set()),
    "publish from an environment": Case(
        "CAB201",
        document(rule("rel", {**IDS, "environment": "release"}, publish("acme-*"))),
        set(),
    ),
    "publish from a reusable workflow": Case(
        "CAB201",
        document(
            rule(
                "rel",
                {**IDS, "job_workflow_ref": "acme/ci/.github/workflows/r.yml@refs/heads/main"},
                publish("acme-*"),
            )
        ),
        set(),
    ),
    "publish on a sub naming the environment": Case(
        "CAB201",
        document(rule("rel", {**IDS, "sub": "repo:acme/app:environment:release"}, publish("a"))),
        {("CAB102", "rel")},
    ),
    "GitLab publish from protected refs": Case(
        "CAB201",
        document(
            rule(
                "gl",
                {"job_project_id": "1", "ref_protected": "true"},
                publish("acme-*"),
                issuer="gitlab",
            )
        ),
        set(),
    ),
    **{
        f"publish gated by {about}": Case(
            "CAB201",
            document(rule("rel", {**IDS, **claims}, publish("acme-*"))),
            {
                *((("CAB102", "rel"),) if "sub" in claims else ()),
                *((("CAB202", "rel"),) if about in REF_ONLY else ()),
            },
        )
        for about, claims in GATED.items()
    },
    **{
        f"publish not gated by {about}": Case(
            "CAB201",
            document(rule("rel", {**IDS, **claims}, publish("acme-*"))),
            {("CAB201", "rel"), *((("CAB102", "rel"),) if "sub" in claims else ())},
        )
        for about, claims in NOT_GATED.items()
    },
    "GitLab publish from a branch by name": Case(
        "CAB201",
        document(
            rule("gl", {"job_project_id": "1", "ref": "main"}, publish("acme-*"), issuer="gitlab")
        ),
        {("CAB202", "gl")},
    ),
    "GitLab publish from a protected environment": Case(
        "CAB201",
        document(
            rule(
                "gl",
                {"job_project_id": "1", "environment_protected": "true"},
                publish("acme-*"),
                issuer="gitlab",
            )
        ),
        set(),
    ),
    "GitLab publish from any ref": Case(
        "CAB201",
        document(
            rule(
                "gl",
                {"job_project_id": "1", "ref": "*main", "ref_path": "refs/heads/*"},
                publish("acme-*"),
                issuer="gitlab",
            )
        ),
        {("CAB201", "gl")},
    ),
    "GitLab publish from an unprotected environment": Case(
        "CAB201",
        document(
            rule(
                "gl",
                {"job_project_id": "1", "environment_protected": "false"},
                publish("acme-*"),
                issuer="gitlab",
            )
        ),
        {("CAB201", "gl")},
    ),
    "publish on a corporate IdP": Case(
        "CAB201", document(rule("corp", {"groups": "rel"}, publish("acme-*"), "corp")), set()
    ),
    "read on ids alone": Case("CAB201", document(rule("ci", IDS)), set()),
    # CAB202: CI publish rules gated on a ref only. GitHub: workflows of pull_request_target,
    # issue_comment, workflow_run, schedule… run on the default branch with its ref.
    **{
        f"publish from main for {about}": Case(
            "CAB202", document(rule("rel", {**REF_MAIN, **claims}, publish("acme-*"))), set()
        )
        for about, claims in KEPT_OUT.items()
    },
    **{
        f"publish from main for {about}": Case(
            "CAB202",
            document(rule("rel", {**REF_MAIN, **claims}, publish("acme-*"))),
            {("CAB202", "rel")},
        )
        for about, claims in NOT_KEPT_OUT.items()
    },
    "publish on a stand-in's main for any event": Case(
        "CAB202",
        document(rule("rel", REF_MAIN, publish("acme-*"), issuer="standin")),
        {("CAB202", "rel")},
    ),
    "publish on GitHub Enterprise Server's main for any event": Case(
        "CAB202",
        document(rule("rel", REF_MAIN, publish("acme-*"), issuer="ghes")),
        {("CAB202", "rel")},
    ),
    "publish on a sub naming a tag": Case(
        "CAB202",
        document(rule("rel", {**IDS, "sub": "repo:acme/app:ref:refs/tags/v1"}, publish("a"))),
        {("CAB102", "rel")},
    ),
    "publish from protected tags": Case(
        "CAB202",
        document(rule("rel", {**IDS, "ref_protected": "true", "ref_type": "tag"}, publish("a"))),
        set(),
    ),
    "read from main for any event": Case("CAB202", document(rule("ci", REF_MAIN)), set()),
    "publish from every branch for any event": Case(
        "CAB202",
        document(rule("rel", {**IDS, "ref": "refs/heads/*"}, publish("acme-*"))),
        {("CAB201", "rel")},  # ungated: CAB201 says it, not CAB202
    ),
    # GitLab: a merge-request pipeline's ref, ref_path, ci_config_ref_uri and sub name its
    # source branch, a fork's too.
    **{
        f"GitLab publish from {about}": Case(
            "CAB202",
            document(
                rule("gl", {"job_project_id": "1", **claims}, publish("acme-*"), issuer="gitlab")
            ),
            {("CAB202", "gl")} if warns else set(),
        )
        for about, claims, warns in GITLAB_REF_ONLY
    },
    # CAB301: redundant rules.
    "the same rule twice": Case(
        "CAB301", document(rule("a", IDS), rule("b", IDS)), {("CAB301", "b")}
    ),
    "a looser rule first": Case(
        "CAB301",
        document(rule("loose", {"repository_owner_id": "1234567"}), rule("strict", MAIN)),
        {("CAB301", "strict")},
    ),
    "a looser rule last": Case(
        "CAB301",
        document(rule("strict", MAIN), rule("loose", {"repository_owner_id": "1234567"})),
        {("CAB301", "strict")},
    ),
    "a stricter rule that grants longer": Case(
        "CAB301",
        document(
            rule("loose", {"repository_owner_id": "1234567"}),
            rule("strict", MAIN, {**READ, "max_duration": 43200}),
        ),
        set(),
    ),
    "the same claims of two issuers": Case(
        "CAB301",
        document(
            rule("a", {"groups": "eng"}, issuer="corp"),
            rule("b", {"groups": "eng"}, issuer="gitlab"),
        ),
        set(),
    ),
    "overlapping claims": Case(
        "CAB301",
        document(rule("a", {"repository_owner_id": "1"}), rule("b", {"repository_id": "2"})),
        set(),
    ),
    "more alternatives of one claim": Case(
        "CAB301",
        document(rule("a", {**IDS, "ref": ["refs/heads/main", "refs/heads/dev"]}), rule("b", MAIN)),
        {("CAB301", "b")},
    ),
    "a literal under a pattern": Case(
        "CAB301",
        document(rule("a", {**IDS, "ref": "refs/heads/*"}), rule("b", MAIN)),
        {("CAB301", "b")},
    ),
    "literals under patterns": Case(
        "CAB301",
        document(
            rule("a", {**IDS, "ref": ["refs/heads/*", "refs/tags/*"]}),
            rule("b", {**IDS, "ref": ["refs/heads/main", "refs/tags/v1"], "environment": "x"}),
        ),
        {("CAB301", "b")},
    ),
    "other alternatives of one claim": Case(
        "CAB301",
        document(
            rule("a", {**IDS, "ref": ["refs/heads/main", "refs/heads/dev"]}),
            rule("b", {**IDS, "ref": ["refs/heads/main", "refs/heads/prod"]}),
        ),
        set(),
    ),
    "a pattern under a wider pattern": Case(  # covered, but only literals are compared
        "CAB301",
        document(rule("a", {**IDS, "ref": "refs/*"}), rule("b", {**IDS, "ref": "refs/heads/*"})),
        set(),
    ),
    "the same pattern": Case(
        "CAB301",
        document(rule("a", {**IDS, "ref": "refs/*"}), rule("b", {**IDS, "ref": "refs/*"})),
        {("CAB301", "b")},
    ),
    # CAB302: rules that can never match.
    "an owner id that is a name": Case(
        "CAB302",
        document(rule("never", {"repository_owner_id": "acme"})),
        {("CAB302", "never")},
    ),
    "ref_protected yes": Case(
        "CAB302",
        document(rule("never", {**IDS, "ref_protected": "yes"})),
        {("CAB302", "never")},
    ),
    "a branch that is a tag": Case(
        "CAB302",
        document(rule("never", {**MAIN, "ref_type": "tag"})),
        {("CAB302", "never")},
    ),
    "a GitLab tag that is a branch": Case(
        "CAB302",
        document(
            rule(
                "never",
                {"job_project_id": "1", "ref_path": "refs/tags/v*", "ref_type": "branch"},
                issuer="gitlab",
            )
        ),
        {("CAB302", "never")},
    ),
    "an id pattern of digits": Case(
        "CAB302", document(rule("ok", {"repository_owner_id": "12*"})), set()
    ),
    "ref_protected true": Case(
        "CAB302", document(rule("ok", {**IDS, "ref_protected": ["true", "y*"]})), set()
    ),
    "a branch that is a branch": Case(
        "CAB302", document(rule("ok", {**MAIN, "ref_type": "branch"})), set()
    ),
    "a ref of no known type": Case(
        "CAB302", document(rule("ok", {**IDS, "ref": "refs/*", "ref_type": "tag"})), set()
    ),
    "odd values on a corporate IdP": Case(
        "CAB302",
        document(rule("corp", {"ref_protected": "yes", "ref_type": "x"}, issuer="corp")),
        set(),
    ),
    # CAB303 and CAB304: requests the broker cannot resolve.
    "two repositories for one identity": Case(
        "CAB303",
        document(rule("a", IDS), rule("b", IDS, {"repository": "restricted", "access": "read"})),
        {("CAB303", "b")},
    ),
    "two package sets for one identity": Case(
        "CAB303",
        document(
            rule("a", MAIN, publish("acme-*")),
            rule("b", {**MAIN, "environment": "x"}, publish("b")),
        ),
        {("CAB303", "b")},
    ),
    "two repositories, one identity's ref under the other's pattern": Case(
        "CAB303",
        document(
            rule("a", {**IDS, "ref": "refs/heads/*"}),
            rule("b", MAIN, {"repository": "restricted", "access": "read"}),
        ),
        {("CAB303", "b")},
    ),
    "two repositories, refs under different patterns": Case(
        "CAB303",
        document(
            rule("a", {**IDS, "ref": "refs/heads/*"}),
            rule(
                "b", {**IDS, "ref": "refs/tags/v1"}, {"repository": "restricted", "access": "read"}
            ),
        ),
        set(),
    ),
    "two repositories for different identities": Case(
        "CAB303",
        document(
            rule("a", {"repository_id": "1"}),
            rule("b", {"repository_id": "2"}, {"repository": "restricted", "access": "read"}),
        ),
        set(),
    ),
    "read and publish for one identity": Case(
        "CAB304",
        document(rule("ci", IDS), rule("rel", MAIN, publish("acme-*"))),
        {("CAB304", "rel")},
    ),
    "read on any ref and publish from main": Case(
        "CAB304",
        document(
            rule("ci", {**IDS, "ref": ["refs/heads/*", "refs/pull/*"]}),
            rule("rel", MAIN, publish("acme-*")),
        ),
        {("CAB304", "rel")},
    ),
    "read and publish for different identities": Case(
        "CAB304",
        document(rule("ci", {"repository_id": "1"}), rule("rel", MAIN, publish("acme-*"))),
        set(),
    ),
    # CAB401: publish patterns outside the internal prefixes.
    "a pattern outside the prefixes": Case(
        "CAB401",
        document(rule("rel", MAIN, publish("acme-*", "other-*"))),
        {("CAB401", "rel")},
        ACME,
    ),
    "every name": Case(
        "CAB401", document(rule("rel", MAIN, publish("*"))), {("CAB401", "rel")}, ACME
    ),
    "a prefix that is shorter than the guard's": Case(
        "CAB401", document(rule("rel", MAIN, publish("ac*"))), {("CAB401", "rel")}, ACME
    ),
    "patterns under the prefixes": Case(
        "CAB401",
        document(rule("rel", MAIN, publish("acme-*", "Acme_Tools", "AcmeCorp*"))),
        set(),
        ACME,
    ),
    "no prefixes given": Case("CAB401", document(rule("rel", MAIN, publish("other-*"))), set()),
    # CAB402: a session policy near its limit.
    "a policy near the limit": Case(
        "CAB402",
        document(rule("big", MAIN, publish(*NEAR))),
        {("CAB402", "big")},
    ),
    "a small policy": Case("CAB402", document(rule("small", MAIN, publish(*NEAR[:10]))), set()),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_truth_table(case: Case) -> None:
    assert found(case.text, case.deployment) == case.expected


def test_every_lint_has_a_case_that_raises_it_and_one_that_must_not() -> None:
    positive = {case.about for case in CASES.values() if case.positive}
    negative = {case.about for case in CASES.values() if not case.positive}
    assert positive == negative == set(LINTS)


def test_findings_name_their_code_severity_rule_message_and_fix_on_one_line() -> None:
    text = document(rule("rel", {"repository_owner": "acme"}, publish("acme-*")))
    (first, second) = check(text, Deployment()).findings
    assert (first.code, second.code) == ("CAB101", "CAB201")
    line = first.line("rules.yaml")
    assert line.startswith("rules.yaml: warning CAB101: rule 'rel': matches repository_owner")
    assert "(fix: constrain repository_owner_id" in line
    assert "\n" not in line
    assert first.as_json() == {
        "code": "CAB101",
        "severity": "warning",
        "rule": "rel",
        "message": first.message,
        "fix": first.fix,
        "docs": lint.GITHUB_DOCS,
    }


def test_an_invalid_document_is_one_error_on_one_line() -> None:
    result = check("version: 1\nrules:\n  - {name: x\n", Deployment())
    (finding,) = result.findings
    assert result.rules is None
    assert (finding.code, finding.severity, finding.rule) == ("CAB001", "error", None)
    assert finding.message.startswith("not valid YAML")
    assert "\n" not in finding.line("f")


def test_the_session_policy_size_depends_on_the_domain() -> None:
    text = document(rule("big", MAIN, publish(*NEAR)))
    longer = Domain(partition="aws", region="ap-southeast-2", owner="111122223333", name="d" * 30)
    assert found(text, Deployment(domain=longer)) == {("CAB001", "big")}
    small = near_limit_packages(longer)
    assert found(document(rule("big", MAIN, publish(*small))), Deployment(domain=longer)) == {
        ("CAB402", "big")
    }


# --------------------------------------------------------------------------- the issuers


@pytest.mark.parametrize(
    ("url", "claims", "kind"),
    [
        ("https://token.actions.githubusercontent.com", [], "github"),
        ("https://token.actions.githubusercontent.com/acme-enterprise", [], "github"),
        ("https://github.example.com/_services/token", [], "github"),
        ("https://gitlab.com", [], "gitlab"),
        ("https://gitlab.com/", [], "gitlab"),
        ("https://gitlab.example.com", [{"project_path": "a/b"}], "gitlab"),
        ("https://ci.example.com", [{"repository_owner_id": "1"}], "github"),
        ("https://ci.example.com", [{"ref": "x"}, {"groups": "y"}], None),
        ("https://ci.example.com", [{"project_id": "1"}, {"repository_id": "1"}], None),
        ("https://token.actions.githubusercontent.com.evil.example", [], None),
        ("https://evil.example/gitlab.com", [], None),
    ],
)
def test_which_issuers_are_github_or_gitlab(
    url: str, claims: list[dict[str, str]], kind: str | None
) -> None:
    written = [{claim: frozenset([value]) for claim, value in c.items()} for c in claims]
    assert issuer_kind(url, written) == kind


def test_the_internal_prefixes_are_those_the_package_groups_accept() -> None:
    for prefix in ["acme", "acme-tools", "a1", "7z", "Acme", "acme-", "acme_tools", "a--b", ""]:
        accepted = pattern_error(pypi_prefix_pattern(prefix)) is None and prefix != ""
        assert bool(lint.INTERNAL_PREFIX.fullmatch(prefix)) == accepted, prefix


# --------------------------------------------------------------------------- this repository


def test_what_the_repositorys_documents_get() -> None:
    rules = (ROOT / "rules.yaml").read_text(encoding="utf-8")
    devstack = expand_rules(
        ROOT / "devstack" / "rules.yaml", "http://127.0.0.1:8080", ["internal", "restricted"]
    )
    admin = (ROOT / "docs" / "admin.md").read_text(encoding="utf-8")
    example = re.search(r"## Access rules\n.*?```yaml\n(.*?)```", admin, re.S)
    assert example is not None
    acme = Deployment(internal_prefixes=("acme",), repositories=("internal", "restricted"))
    assert found(rules, acme) == set()
    # No warning: `rules check --strict`, as the CI examples run it, passes on each.
    assert found(uncommented(rules), acme) == {
        ("CAB304", "ci-read"),  # release-from-main's identities also match ci-read (a note)
    }
    assert LINTS["CAB304"].severity == "info"
    assert found(devstack, acme) == set()
    assert found(example.group(1), acme) == set()


def test_the_admin_page_lists_every_code_with_its_severity() -> None:
    admin = (ROOT / "docs" / "admin.md").read_text(encoding="utf-8")
    section = admin.split("### Checking rules\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(CAB\d{3})` \| (\w+) \|", section, re.M)
    assert rows == [(code, each.severity) for code, each in LINTS.items()]


def test_ci_findings_cite_their_ci_s_claims_reference() -> None:
    github = CASES["publish on ids alone"].text
    gitlab = CASES["GitLab publish on a project id alone"].text
    for text, source in ((github, lint.GITHUB_DOCS), (gitlab, lint.GITLAB_DOCS)):
        (finding,) = check(text, Deployment()).findings
        assert finding.as_json()["docs"] == source


def test_a_ref_only_gate_cites_the_events_or_the_fork_pipelines() -> None:
    """CAB202 cites GitHub's events that trigger workflows (GITHUB_REF of each) or GitLab's
    merge request pipelines run in the parent project, and its fix says what to add."""
    github = CASES["publish from main for any event"].text
    gitlab = CASES["GitLab publish from a branch path"].text
    (found_github,) = check(github, Deployment()).findings
    (found_gitlab,) = check(gitlab, Deployment()).findings
    assert found_github.as_json()["docs"] == lint.GITHUB_EVENTS_DOCS
    assert "pull_request_target" in found_github.message
    assert "event_name: push" in found_github.fix
    assert found_gitlab.as_json()["docs"] == lint.GITLAB_FORK_PIPELINES
    assert 'ref_protected: "true"' in found_gitlab.fix
    for event in ("pull_request_target", "issue_comment", "workflow_run", "schedule"):
        assert event in lint.DEFAULT_BRANCH_EVENTS
    for kept in ("push", "workflow_dispatch", "release", "pull_request", "merge_group"):
        assert kept not in lint.DEFAULT_BRANCH_EVENTS
