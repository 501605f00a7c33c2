"""The claim sets real CI issuers and AWS STS issue, against the devstack's rules: each token is
minted by the devstack's stand-in (devstack/claimsets.py), served over loopback HTTP with its
discovery and JWKS, verified by the broker's own verifier, and decided by the broker's own code
(:func:`broker.explain.explain`, what ``POST /v1/token`` runs). docs/admin.md, "Claims" and
"AWS workloads as callers", says why the rules match what they match."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jwt
import pytest

from broker.explain import explain
from broker.identity import IssuerKeys, Verifier, http_fetcher
from broker.rules import RuleSet, parse
from devstack.claimsets import (
    ACME_DATA,
    AWS_NAMESPACE,
    MALLORY_FORK,
    SubjectFormat,
    aws_claims,
    github_claims,
    gitlab_claims,
    gitlab_fork_merge_request_claims,
)
from devstack.idp import IdentityProvider, Secret
from devstack.stack import expand_rules
from tests.support.oidc import IssuerServer

ROOT = Path(__file__).resolve().parents[3]
PUBLISH = {"access": "publish"}
READ = {"access": "read"}


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    with IssuerServer().running() as server:
        yield server


@pytest.fixture(scope="module")
def rules(idp: IdentityProvider) -> RuleSet:
    """devstack/rules.yaml as the devstack serves it, its issuers added to the stand-in."""
    text = expand_rules(ROOT / "devstack" / "rules.yaml", idp.base_url, ["internal", "restricted"])
    ruleset = parse(text)
    for name, issuer in ruleset.issuers.items():
        idp.add(name, issuer.audience)
    return ruleset


@pytest.fixture(scope="module")
def verifier() -> Verifier:
    keys = IssuerKeys(http_fetcher(5.0), ttl=600, min_refresh_interval=0, stale_if_error=0)
    return Verifier(keys, leeway=5, max_token_bytes=16384)


def token(idp: IdentityProvider, issuer: str, claims: Mapping[str, Any]) -> Secret:
    """An ID token of the stand-in ``issuer`` with ``claims``, as its mint endpoint signs it."""
    stand_in = idp.issuers[issuer]
    return stand_in.sign(stand_in.claims(**claims))


def decide(
    idp: IdentityProvider,
    verifier: Verifier,
    rules: RuleSet,
    issuer: str,
    claims: Mapping[str, Any],
    body: Mapping[str, Any],
) -> tuple[Any, ...]:
    """Verify a fresh token with ``claims``, then decide ``body`` on its verified claims."""
    identity = verifier.verify(token(idp, issuer, claims), rules)
    assert identity.issuer.name == issuer
    return explain(rules, issuer, identity.claims, dict(body)).outcome()


# --- GitHub: the legacy and the immutable sub ---------------------------------------------

# Events whose workflows run on the default branch, their token's ref that branch's: GitHub's
# "Events that trigger workflows" (https://docs.github.com/en/actions/reference/
# workflows-and-actions/events-that-trigger-workflows), GITHUB_REF "Default branch" (for
# pull_request_target, "PR base branch" before GitHub moved it to the default branch). A
# pull_request_target workflow runs for anyone's pull request from a fork, and may check out
# and run its code ("pwn request").
ON_MAIN = ("pull_request_target", "issue_comment", "workflow_run", "schedule")

GITHUB_JOBS = {
    "app-on-main": github_claims("app"),
    "app-on-a-tag": github_claims("app", ref="refs/tags/v1.2.0"),
    "app-on-a-branch": github_claims("app", ref="refs/heads/feature"),
    "app-in-an-environment": github_claims("app", environment="release"),
    "app-pull-request": github_claims("app", ref="refs/pull/7/merge", event_name="pull_request"),
    # Events GitHub runs on the default branch: the token says ref refs/heads/main.
    **{f"app-{event}-on-main": github_claims("app", event_name=event) for event in ON_MAIN},
    "vault-on-main": github_claims("vault"),
    "another-owner": github_claims("app", owner="acme-evil", owner_id="6666"),
}


@pytest.mark.parametrize("job", GITHUB_JOBS)
@pytest.mark.parametrize("body", [PUBLISH, READ], ids=["publish", "read"])
def test_both_github_subject_formats_get_the_same_decision(
    idp: IdentityProvider, verifier: Verifier, rules: RuleSet, job: str, body: dict[str, str]
) -> None:
    """Rules on ids decide alike whether the repository's sub has names only (created before
    2026-07-15) or ids too (the default since): the sub never decides. That needs a rules
    document in which no GitHub rule matches ``sub`` (asserted first, so that a rule added on
    ``sub``, one of those GitHub's change broke, fails here rather than passing unnoticed)."""
    github_rules = [rule for rule in rules.rules if rule.issuer == "github"]
    assert github_rules
    assert all("sub" not in {c.claim for c in rule.constraints} for rule in github_rules)
    claims = GITHUB_JOBS[job]
    formats: dict[SubjectFormat, str] = {"names": "", "ids": ""}
    outcomes = {}
    for sub_format in formats:
        owner, repository = claims["repository"].split("/")
        variant = github_claims(
            repository,
            ref=claims["ref"],
            environment=claims.get("environment"),
            event_name=claims["event_name"],
            owner=owner,
            owner_id=claims["repository_owner_id"],
            sub_format=sub_format,
        )
        formats[sub_format] = variant["sub"]
        outcomes[sub_format] = decide(idp, verifier, rules, "github", variant, body)
    assert formats["names"] != formats["ids"]
    assert "@" in formats["ids"]
    assert "@" not in formats["names"]
    assert outcomes["names"] == outcomes["ids"]


def test_the_immutable_sub_is_githubs_documented_format() -> None:
    assert github_claims("app", sub_format="ids")["sub"] == (
        "repo:acme@1001/app@2001:ref:refs/heads/main"
    )
    assert github_claims("app", sub_format="names")["sub"] == "repo:acme/app:ref:refs/heads/main"
    assert github_claims("app", environment="Production:V1", sub_format="names")["sub"] == (
        "repo:acme/app:environment:Production%3AV1"
    )


def test_github_publishes_from_main_only_and_by_id(
    idp: IdentityProvider, verifier: Verifier, rules: RuleSet
) -> None:
    def outcome(claims: Mapping[str, Any]) -> tuple[Any, ...]:
        return decide(idp, verifier, rules, "github", claims, PUBLISH)

    assert outcome(github_claims("app"))[:2] == ("allow", "release-from-main")
    vault = github_claims("vault")  # acme's, on main, and acme/vault's own rule: two grants
    assert outcome(vault)[3] == "ambiguous-request"
    restricted = {"access": "publish", "repository": "restricted"}
    assert decide(idp, verifier, rules, "github", vault, restricted)[:2] == (
        "allow",
        "vault-release",
    )
    assert outcome(github_claims("app", ref="refs/heads/feature"))[0] == "deny"
    # The same names under another owner id (a renamed, then re-registered organization).
    renamed = {**github_claims("app"), "repository_owner_id": "6666"}
    assert outcome(renamed)[0] == "deny"


@pytest.mark.parametrize("event", ON_MAIN)
@pytest.mark.parametrize("repository", ["app", "vault"])
def test_workflows_of_other_events_on_main_never_publish(
    idp: IdentityProvider, verifier: Verifier, rules: RuleSet, event: str, repository: str
) -> None:
    """The same repository, owner and ref as a push to main, but another event: the rules gate
    publishing on event_name too, so nothing matches, whatever the request names."""
    claims = github_claims(repository, event_name=event)
    assert (claims["ref"], claims["ref_protected"]) == ("refs/heads/main", "true")
    pushed = decide(idp, verifier, rules, "github", github_claims(repository), PUBLISH)
    assert pushed[0] == "allow" or pushed[3] == "ambiguous-request"  # vault: two grants
    for body in (PUBLISH, {**PUBLISH, "repository": "restricted"}, READ, {}):
        decision, rule, _, reason = decide(idp, verifier, rules, "github", claims, body)
        assert (decision, rule, reason) == ("deny", None, "no-matching-rule")


# --- GitLab: a merge request from a fork ----------------------------------------------------


def test_a_fork_merge_request_pipeline_is_refused_publish(
    idp: IdentityProvider, verifier: Verifier, rules: RuleSet
) -> None:
    """The pipeline runs in acme/data (job_project_id 4001) for a fork's branch: project_*,
    namespace_*, ref and sub name the fork, and its branch is not protected in acme/data."""
    fork = gitlab_fork_merge_request_claims()
    assert (fork["job_project_id"], fork["project_id"]) == (ACME_DATA.id, MALLORY_FORK.id)
    assert fork["sub"] == "project_path:mallory/data:ref_type:branch:ref:feature"
    for body in (PUBLISH, READ, {}):
        decision, rule, _, reason = decide(idp, verifier, rules, "gitlab", fork, body)
        assert (decision, rule, reason) == ("deny", None, "no-matching-rule")


def test_a_protected_pipeline_of_the_project_publishes(
    idp: IdentityProvider, verifier: Verifier, rules: RuleSet
) -> None:
    decision, rule, scope, _ = decide(idp, verifier, rules, "gitlab", gitlab_claims(), PUBLISH)
    assert (decision, rule) == ("allow", "gitlab-data-release")
    assert scope[:3] == ("internal", "publish", ("acme-data-*",))
    tag = gitlab_claims(ref="v1.0.0", ref_type="tag")
    assert decide(idp, verifier, rules, "gitlab", tag, PUBLISH)[0] == "allow"


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param(gitlab_claims(ref="feature", protected=False), id="unprotected-branch"),
        pytest.param(gitlab_claims(MALLORY_FORK), id="the-forks-own-protected-main"),
        pytest.param(
            {**gitlab_claims(MALLORY_FORK), "project_id": ACME_DATA.id}, id="project-id-is-not-it"
        ),
    ],
)
def test_other_gitlab_pipelines_get_nothing(
    idp: IdentityProvider, verifier: Verifier, rules: RuleSet, claims: dict[str, Any]
) -> None:
    assert decide(idp, verifier, rules, "gitlab", claims, PUBLISH)[0] == "deny"


# --- unknown claims ---------------------------------------------------------------------------


EXTRAS: dict[str, Any] = {
    "repo_property_business_unit": "payments",
    "repo_property_regions": "us-east-1,eu-west-1",
    "repo_property_pci_compliant": "true",
    "future_claim": "whatever comes next",
    "nested": {"deeper": {"list": [1, "two", None, {"three": 3}], "flag": False}},
    "a_number": 12345678901234567890,
    "a_float": 1.5,
    "a_boolean": True,
    "a_null": None,
    "a_list": ["x", 1, {"y": []}],
    "unicode_ключ": "значение ✓",
    "urn:example:claim": {"ok": True},
}


@pytest.mark.parametrize(
    ("issuer", "claims", "body"),
    [
        pytest.param("github", github_claims("app"), PUBLISH, id="github-publish"),
        pytest.param("github", github_claims("app", ref="refs/heads/x"), PUBLISH, id="github-deny"),
        pytest.param("gitlab", gitlab_claims(), PUBLISH, id="gitlab-publish"),
        pytest.param("gitlab", gitlab_fork_merge_request_claims(), PUBLISH, id="gitlab-fork"),
        pytest.param("aws", aws_claims(), READ, id="aws-read"),
        pytest.param("corp", {"sub": "alice", "groups": ["engineering"]}, READ, id="corp"),
    ],
)
def test_unknown_claims_never_break_verification_nor_change_the_decision(
    idp: IdentityProvider,
    verifier: Verifier,
    rules: RuleSet,
    issuer: str,
    claims: dict[str, Any],
    body: dict[str, str],
) -> None:
    """Claims no rule names (custom properties, claims an issuer adds later, objects, numbers,
    booleans, null) are verified with the token and decide nothing."""
    extras = {name: value for name, value in EXTRAS.items() if value is not None}
    extras["a_null"] = None  # JSON null in the token: Issuer.claims drops None, so sign it
    stand_in = idp.issuers[issuer]
    signed = stand_in.sign({**stand_in.claims(**claims), **extras})
    identity = verifier.verify(signed, rules)
    assert identity.claims["nested"] == EXTRAS["nested"]
    assert identity.claims["a_null"] is None
    with_extras = explain(rules, issuer, identity.claims, dict(body)).outcome()
    assert with_extras == decide(idp, verifier, rules, issuer, claims, body)


def test_extra_claims_alone_grant_nothing(
    idp: IdentityProvider, verifier: Verifier, rules: RuleSet
) -> None:
    """The names of a matching job and every extra claim, without the ids: refused."""
    names_only = {
        key: value
        for key, value in github_claims("app").items()
        if key not in ("repository_owner_id", "repository_id")
    }
    assert decide(idp, verifier, rules, "github", {**names_only, **EXTRAS}, PUBLISH)[0] == "deny"


# --- AWS: STS GetWebIdentityToken -------------------------------------------------------------


def test_an_aws_workload_token_verifies_and_reads(
    idp: IdentityProvider, verifier: Verifier, rules: RuleSet
) -> None:
    """The shape AWS documents: ES384, sub the role's ARN, the rest nested under
    https://sts.amazonaws.com/, no nbf; the broker verifies it and the rule on sub grants read."""
    signed = token(idp, "aws", aws_claims())
    assert jwt.get_unverified_header(signed)["alg"] == "ES384"
    identity = verifier.verify(signed, rules)
    assert identity.subject == "arn:aws:iam::210987654321:role/cabroker-reader"
    assert "nbf" not in identity.claims
    assert identity.claims[AWS_NAMESPACE]["aws_account"] == "210987654321"
    decision, rule, scope, _ = explain(rules, "aws", identity.claims, READ).outcome()
    assert (decision, rule, scope) == (
        "allow",
        "nightly-lambda-read",
        ("internal", "read", (), 900),
    )
    assert explain(rules, "aws", identity.claims, PUBLISH).outcome()[3] == "grant-exceeded"


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param(aws_claims(role="cabroker-reader-2"), id="another-role"),
        pytest.param(aws_claims(account="111122223333"), id="another-account-in-sub"),
        pytest.param(
            {**aws_claims(), "sub": "arn:aws:iam::210987654321:user/cabroker-reader"}, id="a-user"
        ),
    ],
)
def test_other_aws_principals_get_nothing(
    idp: IdentityProvider, verifier: Verifier, rules: RuleSet, claims: dict[str, Any]
) -> None:
    assert decide(idp, verifier, rules, "aws", claims, READ)[3] == "no-matching-rule"


def test_a_nested_claim_cannot_be_matched_so_it_cannot_grant(
    idp: IdentityProvider, verifier: Verifier, rules: RuleSet
) -> None:
    """The rules match top-level claims only: the nested principal_id or account of another
    principal change nothing, and a top-level claim a caller adds as a request tag stays
    nested too."""
    claims = aws_claims(role="intruder", request_tags={"sub": "arn:aws:iam::210987654321:role/x"})
    claims[AWS_NAMESPACE]["principal_id"] = "arn:aws:iam::210987654321:role/cabroker-reader"
    assert decide(idp, verifier, rules, "aws", claims, READ)[0] == "deny"
