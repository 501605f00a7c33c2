"""Check a rules document: the broker's verdict, then lints (docs/admin.md, "Checking rules").

The verdict is the broker's own (:func:`broker.acceptance.accept`): a document it would refuse
is one error (``CAB001``) naming the rule, the field and the reason, and nothing else is
checked. A document it would serve is then linted: each finding is a warning (or a note) about
something the broker serves as written but that is probably not what its author meant. Lint
findings never make the broker refuse a document.

Which issuers are CI issuers. An issuer is **GitHub Actions** when its ``url`` is
``https://token.actions.githubusercontent.com`` (or that URL with a path, GitHub Enterprise
Cloud's issuer per enterprise) or ends in ``/_services/token`` (GitHub Enterprise Server), and
**GitLab CI** when its host is ``gitlab.com``. Any other issuer (a self-managed GitLab, a
stand-in on the devstack) is taken for one of them when its rules use claims only that CI
issues (``GITHUB_ONLY`` or ``GITLAB_ONLY`` below, never both); else it is not a CI issuer and
the CI lints skip it. The claims are GitHub's (https://docs.github.com/en/actions/reference/
security/oidc) and GitLab's (https://docs.gitlab.com/ci/secrets/id_token_authentication/).

What is certain and what is not. The interplay lints (CAB301 to CAB304) flag only what holds
for every identity: the looser rule constrains no claim the stricter one leaves free, and each
of the stricter rule's alternatives for a claim is covered by the looser rule's constraint on
it, so whoever matches the stricter rule matches the looser one too. An alternative is covered
when it is one of the looser alternatives, or when it has no ``*`` and the looser constraint
matches it (:func:`cabroker_admin.rulesdiff.covers`, the test ``rules diff`` uses); an
alternative with a ``*`` is covered only by the same alternative. Rules whose constraints
merely overlap are not compared.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Literal
from urllib.parse import urlsplit

from broker import names
from broker.acceptance import accept
from broker.grants import ResolvedGrant, TokenRequest, resolve
from broker.problems import AmbiguousRequest, BrokerError
from broker.rules import ClaimConstraint, Rule, RulesError, RuleSet, glob_to_regex
from broker.scope import MAX_POLICY_CHARS, Domain, session_policy
from broker.settings import MAX_TOKEN_SECONDS
from cabroker_admin.deployment import PLACEHOLDER_DOMAIN as PLACEHOLDER_DOMAIN  # re-exported
from cabroker_admin.rulesdiff import covers

Severity = Literal["error", "warning", "info"]
Kind = Literal["github", "gitlab"]

# A session policy this close to the limit warns (CAB402).
NEAR_LIMIT = 0.9
# What the session-policy size is computed for without --domain, --domain-owner, --region and
# --partition is cabroker_admin.deployment's PLACEHOLDER_DOMAIN (imported above, and from here
# by checkcli and the tests): the size grows by a few characters per ARN with longer names.
# A deployment's internal prefix, as infra/package_groups.py accepts it in /pypi//PREFIX~: a
# normalized (PEP 503) name.
INTERNAL_PREFIX = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")

DOCS = "docs/admin.md#checking-rules"
GITHUB_DOCS = "https://docs.github.com/en/actions/reference/security/oidc"
GITLAB_DOCS = "https://docs.gitlab.com/ci/secrets/id_token_authentication/"
# GitLab's fork merge-request pipelines: project_* name the merge request's source project
# (its security fix, 18.2.2), job_project_* the project whose pipeline runs the job.
GITLAB_JOB_PROJECT = "https://gitlab.com/gitlab-org/gitlab/-/issues/563038"

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
GITHUB_ONLY = frozenset(
    {
        "repository_owner",
        "repository_owner_id",
        "repository_id",
        "repository_visibility",
        "workflow_ref",
        "workflow_sha",
        "job_workflow_ref",
        "job_workflow_sha",
        "actor_id",
        "run_id",
        "run_attempt",
        "event_name",
        "head_ref",
        "base_ref",
    }
)
GITLAB_ONLY = frozenset(
    {
        "project_id",
        "project_path",
        "namespace_id",
        "namespace_path",
        "job_project_id",
        "job_project_path",
        "job_namespace_id",
        "job_namespace_path",
        "pipeline_id",
        "pipeline_source",
        "ci_config_ref_uri",
        "ci_config_sha",
        "ref_path",
        "environment_protected",
        "deployment_tier",
        "project_visibility",
        "user_login",
        "user_access_level",
    }
)
# A claim matched by name, and the id GitHub never changes or reuses (CAB101).
GITHUB_NAMES = {"repository_owner": "repository_owner_id", "repository": "repository_id"}
# GitLab's project claims; in a fork's merge-request pipeline they name the fork (CAB103).
GITLAB_PROJECT = ("project_id", "project_path", "namespace_id", "namespace_path")
# Claims that can tie a token to a ref, an environment or a workflow file (CAB201); whether a
# constraint on one does is _gates' rule (GATE_RULE). ``sub`` counts when every alternative
# names such a ref or environment, as the default subjects do.
GATES: dict[Kind, frozenset[str]] = {
    "github": frozenset(
        {"ref", "ref_protected", "environment", "workflow_ref", "job_workflow_ref"}
    ),
    "gitlab": frozenset(
        {
            "ref",
            "ref_path",
            "ref_protected",
            "environment",
            "environment_protected",
            "ci_config_ref_uri",
        }
    ),
}
# A constraint gates (CAB201) when every alternative of it does, by this rule (the lint's fix).
GATE_RULE = (
    'ref_protected (GitLab: also environment_protected) only as "true"; environment without '
    "a *; a ref (ref, GitLab ref_path: refs/heads/NAME or refs/tags/NAME; GitLab ref: NAME) "
    "with at least one character of the branch or tag name before any * (refs/heads/main, "
    "refs/tags/v* gate; refs/heads/*, refs/*, * do not); a workflow ref (workflow_ref, "
    "job_workflow_ref, GitLab ci_config_ref_uri) with no * before its last @ and such a ref "
    "after it"
)
# Events whose workflows GitHub runs on the default branch, their token's ref that branch's
# ("Events that trigger workflows": GITHUB_REF "Default branch"; pull_request_target's was the
# pull request's base branch before December 2025, and still is on GHES before 3.20). A rule
# gated on a ref only matches them (CAB202); pull_request_target runs for anyone's pull request
# from a fork, and such workflows may run its code ("pwn requests").
DEFAULT_BRANCH_EVENTS = (
    "pull_request_target",
    "issue_comment",
    "workflow_run",
    "schedule",
    "issues",
    "discussion",
    "discussion_comment",
    "repository_dispatch",
    "check_run",
    "check_suite",
    "status",
    "label",
    "milestone",
    "project",
    "project_card",
    "project_column",
    "branch_protection_rule",
    "delete",
    "fork",
    "gollum",
    "image_version",
    "page_build",
    "public",
    "watch",
)
GITHUB_EVENTS_DOCS = (
    "https://docs.github.com/en/actions/reference/workflows-and-actions/"
    "events-that-trigger-workflows"
)
# GitLab's pipeline sources whose ref, ref_path, ci_config_ref_uri and sub name a merge
# request's (or an external pull request's) source branch, a fork's for a merge request from a
# fork whose pipeline a member runs in the project (CAB202); a child pipeline of one too.
SOURCE_BRANCH_PIPELINES = ("merge_request_event", "external_pull_request_event", "parent_pipeline")
GITLAB_FORK_PIPELINES = (
    "https://docs.gitlab.com/ci/pipelines/merge_request_pipelines/"
    "#run-pipelines-in-the-parent-project"
)
# What keeps a gated publish rule from matching those (CAB202), the lint's fix.
REF_ONLY_RULE = (
    "GitHub: event_name with no alternative matching a default-branch event (push, "
    "workflow_dispatch, release; not " + ", ".join(DEFAULT_BRANCH_EVENTS[:4]) + ", …), a gating "
    "environment, workflow_ref or job_workflow_ref, or a ref, ref_type or sub that names no "
    'branch; GitLab: ref_protected or environment_protected "true", pipeline_source without '
    + ", ".join(SOURCE_BRANCH_PIPELINES)
    + ", or a ref_type, ref_path, ci_config_ref_uri or sub that names no branch"
)
REF_CLAIMS = frozenset({"ref", "ref_path"})
WORKFLOW_CLAIMS = frozenset({"workflow_ref", "job_workflow_ref", "ci_config_ref_uri"})
FLAG_CLAIMS = frozenset({"ref_protected", "environment_protected"})
# Claims whose values are decimal ids (strings of digits) (CAB302).
ID_CLAIMS: dict[Kind, frozenset[str]] = {
    "github": frozenset({"repository_owner_id", "repository_id", "actor_id", "run_id"}),
    "gitlab": frozenset(
        {
            "project_id",
            "namespace_id",
            "job_project_id",
            "job_namespace_id",
            "user_id",
            "pipeline_id",
            "job_id",
        }
    ),
}
# Claims with a few known values (CAB302).
ENUMERATED: dict[Kind, dict[str, tuple[str, ...]]] = {
    "github": {"ref_protected": ("true", "false"), "ref_type": ("branch", "tag")},
    "gitlab": {
        "ref_protected": ("true", "false"),
        "environment_protected": ("true", "false"),
        "ref_type": ("branch", "tag"),
    },
}
# The claim holding the full ref (refs/heads/…, refs/tags/…) beside ref_type (CAB302).
FULL_REF: dict[Kind, str] = {"github": "ref", "gitlab": "ref_path"}
REF_TYPES = {"refs/heads/": "branch", "refs/tags/": "tag"}


@dataclass(frozen=True)
class Lint:
    """One kind of finding: its code, severity, what it flags, why, how to fix it, and the
    documentation it relies on."""

    code: str
    severity: Severity
    what: str
    why: str
    fix: str
    source: str = DOCS


LINTS: dict[str, Lint] = {
    lint.code: lint
    for lint in (
        Lint(
            "CAB001",
            "error",
            "the broker refuses the document",
            "it would answer every request with 503 until the document is fixed",
            "fix the rule and field the message names",
        ),
        Lint(
            "CAB101",
            "warning",
            "a GitHub rule matches a name where an immutable id exists",
            "a renamed or deleted owner or repository name can be taken by someone else",
            "constrain repository_owner_id / repository_id",
            GITHUB_DOCS,
        ),
        Lint(
            "CAB102",
            "warning",
            "a GitHub rule constrains sub",
            "its default format changed in 2026 (owner and repository ids added for "
            "repositories created, renamed or transferred since 2026-07-15) and repositories "
            "can customize it",
            "constrain the claims sub is made of (repository_id, ref, environment, …)",
            GITHUB_DOCS,
        ),
        Lint(
            "CAB103",
            "warning",
            "a GitLab rule constrains project_* / namespace_* claims",
            "in a merge-request pipeline from a fork they name the fork, not the project "
            "whose pipeline runs the job (and named the latter before GitLab 18.2.2)",
            "constrain job_project_* / job_namespace_*, with a protected ref or environment",
            GITLAB_JOB_PROJECT,
        ),
        Lint(
            "CAB201",
            "warning",
            "a CI publish rule has no ref, environment or workflow gate",
            "anyone who can push a branch and run a workflow in the repository could publish",
            "gate it; what gates: " + GATE_RULE,
            GITHUB_DOCS,
        ),
        Lint(
            "CAB202",
            "warning",
            "a CI publish rule is gated on a ref only",
            "GitHub runs workflows triggered by pull_request_target (anyone's pull request from "
            "a fork), issue_comment, workflow_run, schedule and other events on the default "
            "branch, with its ref; a GitLab merge-request pipeline's ref is its source branch's, "
            "a fork's too",
            "gate the event or the workflow too: " + REF_ONLY_RULE,
            GITHUB_EVENTS_DOCS,
        ),
        Lint(
            "CAB301",
            "warning",
            "a rule is redundant",
            "a looser rule of the same issuer grants the same scope for at least as long",
            "remove it, or make the rules differ",
        ),
        Lint(
            "CAB302",
            "warning",
            "a rule can never match",
            "a CI claim is constrained to values its issuer never sends, or contradicts "
            "another constraint (ref and ref_type)",
            'fix the value (ids are digits, flags are "true"/"false")',
            GITHUB_DOCS,
        ),
        Lint(
            "CAB303",
            "warning",
            "two rules make a request ambiguous even when it names the access",
            "an identity matching both gets ambiguous-request unless it names the repository "
            "or packages (the cabroker client names the access only)",
            "give the rules disjoint claims, or one grant",
        ),
        Lint(
            "CAB304",
            "info",
            "two rules make a request that names no access ambiguous",
            "a bare POST /v1/token of an identity matching both gets ambiguous-request; the "
            "cabroker client always names the access (read by default)",
            "nothing, if callers name the access",
        ),
        Lint(
            "CAB401",
            "warning",
            "a publish pattern is not under an internal prefix (--internal-prefixes)",
            "the package-group guard does not block public PyPI for it: dependency confusion",
            "rename under an internal prefix, or add the prefix to InternalPrefixes",
        ),
        Lint(
            "CAB402",
            "warning",
            "a grant's session policy is within 10 % of the 2048-character limit",
            "a longer domain, region or one more pattern and the broker refuses the document",
            "fewer or broader package patterns",
        ),
    )
}


@dataclass(frozen=True)
class Finding:
    code: str
    rule: str | None
    message: str
    fix: str
    source: str = ""  # the documentation it relies on, when not the lint's own

    @property
    def severity(self) -> Severity:
        return LINTS[self.code].severity

    def line(self, origin: str) -> str:
        where = f" rule {self.rule!r}:" if self.rule else ""
        return f"{origin}: {self.severity} {self.code}:{where} {self.message} (fix: {self.fix})"

    def as_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "rule": self.rule,
            "message": self.message,
            "fix": self.fix,
            "docs": self.source or LINTS[self.code].source,
        }


@dataclass(frozen=True)
class Deployment:
    """What the document is checked against: the domain (the session-policy size), the
    repositories the broker serves (empty: not checked) and the internal prefixes of the
    package-group guard (``None``: not checked)."""

    domain: Domain = PLACEHOLDER_DOMAIN
    repositories: tuple[str, ...] = ()
    internal_prefixes: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Result:
    rules: RuleSet | None  # None: the broker refuses the document
    findings: tuple[Finding, ...]


def check(text: str, deployment: Deployment) -> Result:
    """The broker's verdict on ``text``, then, if it would serve it, the lints."""
    try:
        rules = accept(text, deployment.domain, deployment.repositories)
    except RulesError as error:
        message = " ".join(str(error).split())  # one line, whatever the YAML error says
        named = re.match(r"rule '([A-Za-z0-9._-]+)': ", message)
        rule, reason = (named.group(1), message[named.end() :]) if named else (None, message)
        return Result(None, (Finding("CAB001", rule, reason, LINTS["CAB001"].fix),))
    return Result(rules, tuple(lint(rules, claims_of(rules), deployment)))


# --------------------------------------------------------------------------- the document


def claims_of(rules: RuleSet) -> list[dict[str, frozenset[str]]]:
    """Each rule's claim constraints as written: claim → its alternatives (what the broker's
    loader kept of the document, :attr:`broker.rules.ClaimConstraint.alternatives`)."""
    return [
        {constraint.claim: frozenset(constraint.alternatives) for constraint in rule.constraints}
        for rule in rules.rules
    ]


@dataclass(frozen=True)
class Written:
    """A rule with its constraints as written, and the kind of its issuer."""

    rule: Rule
    claims: Mapping[str, frozenset[str]]
    kind: Kind | None

    @property
    def name(self) -> str:
        return self.rule.name


def issuer_kind(url: str, claims: Sequence[Mapping[str, frozenset[str]]]) -> Kind | None:
    """GitHub Actions, GitLab CI or neither, by the issuer's URL or else by the claims its
    rules use (module docstring)."""
    parts = urlsplit(url)
    if url == GITHUB_ISSUER or url.startswith(GITHUB_ISSUER + "/"):
        return "github"
    if parts.path.rstrip("/").endswith("/_services/token"):
        return "github"
    if parts.hostname == "gitlab.com":
        return "gitlab"
    used = {claim for constraints in claims for claim in constraints}
    github, gitlab = bool(used & GITHUB_ONLY), bool(used & GITLAB_ONLY)
    if github != gitlab:
        return "github" if github else "gitlab"
    return None


def written(rules: RuleSet, claims: Sequence[Mapping[str, frozenset[str]]]) -> list[Written]:
    kinds = {
        name: issuer_kind(
            issuer.url,
            [c for rule, c in zip(rules.rules, claims, strict=True) if rule.issuer == name],
        )
        for name, issuer in rules.issuers.items()
    }
    return [
        Written(rule, c, kinds[rule.issuer]) for rule, c in zip(rules.rules, claims, strict=True)
    ]


# --------------------------------------------------------------------------- the lints


def lint(
    rules: RuleSet,
    claims: Sequence[Mapping[str, frozenset[str]]],
    deployment: Deployment,
) -> list[Finding]:
    """Every finding for a document the broker accepts, rule by rule in the document's order."""
    rows = written(rules, claims)
    found: list[tuple[int, Finding]] = []
    for index, row in enumerate(rows):
        for each in (names_not_ids, subject, gitlab_project, ungated, ref_only, never_matches):
            found += [(index, finding) for finding in each(row)]
        found += [(index, finding) for finding in unguarded(row, deployment.internal_prefixes)]
        found += [(index, finding) for finding in near_limit(row, deployment.domain)]
    order = {row.name: index for index, row in enumerate(rows)}
    for finding in (*redundant(rows), *ambiguous(rows)):
        found.append((order[finding.rule or ""], finding))
    found.sort(key=lambda item: (item[0], item[1].code))
    return [finding for _, finding in found]


def names_not_ids(row: Written) -> Iterator[Finding]:
    """CAB101: ``repository_owner`` or ``repository`` without their immutable ids (a
    constrained ``repository_id`` pins the owner too)."""
    if row.kind != "github":
        return
    for name, id_claim in GITHUB_NAMES.items():
        if name == "repository_owner" and "repository_id" in row.claims:
            continue
        if name in row.claims and id_claim not in row.claims:
            yield Finding(
                "CAB101",
                row.name,
                f"matches {name} by name, without {id_claim}: a renamed or deleted name can be "
                "registered by someone else, whose workflows then match",
                f"constrain {id_claim} (its id never changes) instead of {name}",
            )


def subject(row: Written) -> Iterator[Finding]:
    """CAB102: a GitHub rule that constrains ``sub``."""
    if row.kind == "github" and "sub" in row.claims:
        yield Finding(
            "CAB102",
            row.name,
            "constrains sub, whose default format changed in 2026 (repositories created, "
            "renamed or transferred since 2026-07-15 get owner and repository ids in it) and "
            "which each repository or organization can customize",
            "constrain the claims themselves (repository_owner_id, repository_id, ref, "
            "environment) instead of sub",
        )


def gitlab_project(row: Written) -> Iterator[Finding]:
    """CAB103: GitLab's ``project_*`` and ``namespace_*`` claims without their ``job_`` twin."""
    if row.kind != "gitlab":
        return
    for claim in GITLAB_PROJECT:
        if claim in row.claims and f"job_{claim}" not in row.claims:
            yield Finding(
                "CAB103",
                row.name,
                f"constrains {claim}: in a merge-request pipeline from a fork it describes the "
                "fork, while the job runs in the target project's pipeline (before GitLab "
                f"18.2.2, the reverse); job_{claim} always describes the project whose pipeline "
                "runs the job",
                f"constrain job_{claim} instead, with a protected ref or environment "
                '(ref_protected: "true"); a GitLab too old to send it matches nothing',
            )


def ungated(row: Written) -> Iterator[Finding]:
    """CAB201: a CI publish rule with no constraint that gates it on a ref, an environment
    or a workflow file (GATE_RULE)."""
    kind = row.kind
    if kind is None or row.rule.grant.access != "publish":
        return
    candidates = sorted(claim for claim in row.claims if claim in GATES[kind] or claim == "sub")
    if any(_gates(kind, claim, row.claims[claim]) for claim in candidates):
        return
    loose = f" ({', '.join(candidates)} constrained, but not to a gate)" if candidates else ""
    yield Finding(
        "CAB201",
        row.name,
        "publishes for any job of the matched repositories: whoever can push a branch and "
        f"run a workflow there could publish{loose}",
        "gate it on a protected ref or a reviewed environment: ref: refs/heads/main, "
        'ref_protected: "true", environment: release, or a workflow ref; what gates: ' + GATE_RULE,
        _claims_docs(kind),
    )


def ref_only(row: Written) -> Iterator[Finding]:
    """CAB202: a CI publish rule that CAB201 finds gated, but on a ref only: on GitHub, jobs of
    workflows other events run on the default branch match it; on GitLab, merge-request
    pipelines of a source branch of that name, a fork's too (REF_ONLY_RULE)."""
    kind = row.kind
    if kind is None or row.rule.grant.access != "publish":
        return
    gates = sorted(
        claim
        for claim in row.claims
        if (claim in GATES[kind] or claim == "sub") and _gates(kind, claim, row.claims[claim])
    )
    if not gates or any(_keeps_out(kind, claim, row.claims[claim]) for claim in row.claims):
        return  # ungated (CAB201), or kept from the default branch's other events
    gated = ", ".join(gates)
    if kind == "github":
        yield Finding(
            "CAB202",
            row.name,
            f"is gated on the ref only ({gated}): GitHub runs workflows triggered by "
            "pull_request_target (anyone's pull request from a fork), issue_comment, "
            "workflow_run, schedule and other events on the default branch, and their tokens "
            "carry its ref, so such a job that runs a pull request's code could publish",
            "also constrain event_name: push (the events the release workflow runs on), pin "
            "workflow_ref or job_workflow_ref to the release workflow file, or name an "
            "environment with required reviewers",
            GITHUB_EVENTS_DOCS,
        )
    else:
        yield Finding(
            "CAB202",
            row.name,
            f"is gated on the ref only ({gated}): in a merge-request pipeline ref, ref_path, "
            "ci_config_ref_uri and sub name the merge request's source branch, so the pipeline "
            "of a merge request from a fork's branch of that name, which a member runs in the "
            "project with the fork's code, matches",
            'also constrain ref_protected: "true" (a fork\'s branch is never protected in the '
            'project), environment_protected: "true", or pipeline_source: push',
            GITLAB_FORK_PIPELINES,
        )


def never_matches(row: Written) -> Iterator[Finding]:
    """CAB302: a CI claim constrained to values its issuer never sends, or ``ref`` (GitLab:
    ``ref_path``) contradicting ``ref_type``. The format cannot constrain one claim twice (a
    mapping's keys are unique and the loader refuses duplicates), and alternatives of one
    claim are a union, so no other contradiction can be written."""
    if row.kind is None:
        return
    for claim, alternatives in row.claims.items():
        if claim in ID_CLAIMS[row.kind] and not any(map(_digits_possible, alternatives)):
            yield Finding(
                "CAB302",
                row.name,
                f"can never match: {claim} is an id, a string of digits, and "
                f"{_listed(alternatives)} can never be one",
                f'write the id in digits, quoted ({claim}: "1234567")',
                _claims_docs(row.kind),
            )
        known = ENUMERATED[row.kind].get(claim)
        if known and not any(_matches_one(a, known) for a in alternatives):
            yield Finding(
                "CAB302",
                row.name,
                f"can never match: {claim} is {' or '.join(repr(k) for k in known)}, never "
                f"{_listed(alternatives)}",
                f"use one of {', '.join(repr(k) for k in known)} (strings, quoted)",
                _claims_docs(row.kind),
            )
    full_ref, ref_types = row.claims.get(FULL_REF[row.kind]), row.claims.get("ref_type")
    if full_ref and ref_types and not any("*" in t for t in ref_types):
        implied = {_ref_type(alternative) for alternative in full_ref}
        if None not in implied and not implied & ref_types:
            yield Finding(
                "CAB302",
                row.name,
                f"can never match: {FULL_REF[row.kind]} {_listed(full_ref)} is a "
                f"{' or '.join(sorted(t for t in implied if t))}, but ref_type must be "
                f"{_listed(ref_types)}",
                f"drop ref_type, or make it agree with {FULL_REF[row.kind]}",
                _claims_docs(row.kind),
            )


def redundant(rows: Sequence[Written]) -> Iterator[Finding]:
    """CAB301: a rule whose every identity matches a looser rule of the same issuer that
    grants the same scope for at least as long: the stricter rule adds nothing."""
    flagged: set[str] = set()
    for first, second in combinations(rows, 2):
        if first.rule.issuer != second.rule.issuer or _scope(first) != _scope(second):
            continue
        for looser, stricter in ((first, second), (second, first)):
            if stricter.name in flagged or looser.name in flagged:
                continue
            identical = looser.claims == stricter.claims
            if not _subset(looser, stricter):
                continue
            if looser.rule.grant.max_duration < stricter.rule.grant.max_duration:
                continue
            if identical and looser is second and _duration(first) == _duration(second):
                continue  # identical rules: the later one is the redundant one
            flagged.add(stricter.name)
            how = "the same claims" if identical else "every identity it matches"
            yield Finding(
                "CAB301",
                stricter.name,
                f"is redundant: rule {looser.name!r} matches {how}, and grants the same "
                f"repository, access and packages for at least as long "
                f"({_duration(looser)} s)",
                f"remove it, or change its grant or rule {looser.name!r}'s claims",
            )
            break


def ambiguous(rows: Sequence[Written]) -> Iterator[Finding]:
    """CAB303/CAB304: two rules of one issuer, one matching whoever the other matches, whose
    grants the broker (:func:`broker.grants.resolve`) cannot choose between for a request that
    names nothing; CAB303 when naming the access does not resolve it either."""
    for first, second in combinations(rows, 2):
        if first.rule.issuer != second.rule.issuer:
            continue
        if not (_subset(first, second) or _subset(second, first)):
            continue
        both = [first.rule, second.rule]
        if not _is_ambiguous(both, TokenRequest()):
            continue
        still = [a for a in ("read", "publish") if _is_ambiguous(both, TokenRequest(access=a))]
        pair = f"rules {first.name!r} and {second.name!r}"
        if still:
            yield Finding(
                "CAB303",
                second.name,
                f"an identity matching {pair} gets ambiguous-request for a request that names "
                f"no repository or packages, even one naming the access ({', '.join(still)})",
                "callers must name the repository or packages; or give the rules disjoint "
                "claims or one grant",
            )
        else:
            yield Finding(
                "CAB304",
                second.name,
                f"an identity matching {pair} gets ambiguous-request for a request that names "
                "no access, repository or packages; naming the access resolves it",
                "none needed if callers name the access; the cabroker client always does",
            )


def unguarded(row: Written, prefixes: tuple[str, ...] | None) -> Iterator[Finding]:
    """CAB401: a publish pattern that is not under one of the deployment's internal prefixes,
    which the package-group guard (``/pypi//PREFIX~``, ExternalUpstream BLOCK) protects."""
    if prefixes is None or row.rule.grant.access != "publish":
        return
    for pattern in row.rule.grant.packages:
        if not any(names.covers(prefix + "*", pattern) for prefix in prefixes):
            yield Finding(
                "CAB401",
                row.name,
                f"publishes {pattern!r}, which no internal prefix ({', '.join(prefixes)}) "
                "guards: a package of that name on public PyPI reaches the repository through "
                "its upstream (dependency confusion)",
                "publish only names under an internal prefix, or add the prefix to the "
                "stack's InternalPrefixes",
            )


def near_limit(row: Written, domain: Domain) -> Iterator[Finding]:
    """CAB402: the rule's full grant, as the broker's load check sizes it, is within 10 % of
    the session-policy limit."""
    grant = row.rule.grant
    full = ResolvedGrant(
        rule=row.name,
        repository=grant.repository,
        access=grant.access,
        packages=grant.packages,
        duration_seconds=MAX_TOKEN_SECONDS,
    )
    size = len(session_policy(full, domain))
    if size >= NEAR_LIMIT * MAX_POLICY_CHARS:
        yield Finding(
            "CAB402",
            row.name,
            f"its session policy is {size} of the {MAX_POLICY_CHARS} characters AWS allows "
            f"({size * 100 // MAX_POLICY_CHARS} %, for domain {domain.name!r} in "
            f"{domain.region}): a few more characters and the broker refuses the document",
            "grant fewer or broader package patterns (acme-* rather than a list of acme names)",
        )


# --------------------------------------------------------------------------- helpers


def _subset(looser: Written, stricter: Written) -> bool:
    """Whoever matches ``stricter`` matches ``looser``: ``stricter`` constrains every claim
    ``looser`` does, each of its alternatives covered by ``looser``'s constraint (module
    docstring)."""
    for constraint in looser.rule.constraints:
        alternatives = stricter.claims.get(constraint.claim)
        if alternatives is None:
            return False
        if not all(_covered(constraint, alternative) for alternative in alternatives):
            return False
    return True


def _covered(looser: ClaimConstraint, alternative: str) -> bool:
    """Every value ``alternative`` matches, ``looser`` matches: the same alternative, or a
    literal one it matches (an alternative with a ``*`` only when ``looser`` has the same)."""
    if alternative in looser.alternatives:
        return True
    return "*" not in alternative and covers(looser, alternative)


def _gates(kind: Kind, claim: str, alternatives: frozenset[str]) -> bool:
    """Whether the constraint ``claim``: ``alternatives`` gates a CI rule (GATE_RULE)."""
    if claim == "sub":
        return all(_subject_gates(kind, alternative) for alternative in alternatives)
    if claim not in GATES[kind]:
        return False
    if claim in FLAG_CLAIMS:
        return alternatives == {"true"}
    if claim == "environment":
        return not any("*" in alternative for alternative in alternatives)
    bare = kind == "gitlab" and claim == "ref"  # GitLab's ref is the branch or tag name
    if claim in REF_CLAIMS:
        return all(_pinned_ref(alternative, bare) for alternative in alternatives)
    return claim in WORKFLOW_CLAIMS and all(map(_pinned_workflow, alternatives))


def _keeps_out(kind: Kind, claim: str, alternatives: frozenset[str]) -> bool:
    """Whether the constraint ``claim``: ``alternatives`` keeps a ref-gated rule from matching
    the default branch's other events (GitHub) or a merge request's source branch (GitLab):
    REF_ONLY_RULE."""
    if claim == "ref_type":
        return not any(_matches_one(alternative, ("branch",)) for alternative in alternatives)
    if kind == "github":
        if claim == "event_name":
            return not any(_matches_one(a, DEFAULT_BRANCH_EVENTS) for a in alternatives)
        if claim in ("environment", "workflow_ref", "job_workflow_ref"):
            return _gates(kind, claim, alternatives)
        if claim == "ref":
            return not any(map(_may_be_branch, alternatives))
        if claim == "sub":
            return all(map(_github_subject_keeps_out, alternatives))
        return False
    if claim in FLAG_CLAIMS:
        return alternatives == {"true"}
    if claim == "pipeline_source":
        return not any(_matches_one(a, SOURCE_BRANCH_PIPELINES) for a in alternatives)
    if claim == "ref_path":
        return not any(map(_may_be_branch, alternatives))
    if claim == "ci_config_ref_uri":
        return all(
            "@" in alternative and not _may_be_branch(alternative.rpartition("@")[2])
            for alternative in alternatives
        )
    if claim == "sub":
        return all(":ref_type:tag:" in alternative for alternative in alternatives)
    return False


def _may_be_branch(glob: str) -> bool:
    """Whether ``glob`` matches some branch ref, ``refs/heads/NAME``."""
    branches = "refs/heads/"
    if "*" not in glob:
        return glob.startswith(branches)
    literal = glob.split("*", 1)[0]
    return literal.startswith(branches) or branches.startswith(literal)


def _github_subject_keeps_out(glob: str) -> bool:
    """A GitHub ``sub`` alternative naming an environment without a ``*`` or a ref that is no
    branch (a workflow on the default branch of another event has ``ref:`` that branch, or
    ``pull_request`` for pull_request_target)."""
    for marker in (":environment:", ":ref:"):
        if marker in glob:
            rest = glob.rsplit(marker, 1)[1]
            if marker == ":environment:":
                return rest != "" and "*" not in rest
            return _pinned_ref(rest) and not _may_be_branch(rest)
    return False


def _pinned_ref(glob: str, bare: bool = False) -> bool:
    """A ref glob that fixes at least the first character of a branch or tag name."""
    if not bare:
        prefix = next((p for p in REF_TYPES if glob.startswith(p)), None)
        if prefix is None:
            return False
        glob = glob[len(prefix) :]
    return glob != "" and not glob.startswith("*")


def _pinned_workflow(glob: str) -> bool:
    """``FILE@REF`` with no ``*`` before the last ``@`` (a ``*`` could take in part of a branch
    name that holds an ``@``) and a pinned ref after it."""
    head, at, ref = glob.rpartition("@")
    return bool(at) and "*" not in head and _pinned_ref(ref)


def _subject_gates(kind: Kind, glob: str) -> bool:
    """A ``sub`` alternative naming a pinned ref (``…:ref:REF``) or an environment without a
    ``*`` (``…:environment:NAME``), as the default subjects do."""
    for marker in (":ref:", ":environment:"):
        if marker in glob:
            rest = glob.rsplit(marker, 1)[1]
            return (
                _pinned_ref(rest, bare=kind == "gitlab")
                if marker == ":ref:"
                else (rest != "" and "*" not in rest)
            )
    return False


def _scope(row: Written) -> tuple[str, str, tuple[str, ...]]:
    grant = row.rule.grant
    return (grant.repository, grant.access, grant.packages)


def _duration(row: Written) -> int:
    return row.rule.grant.max_duration


def _is_ambiguous(rules: list[Rule], request: TokenRequest) -> bool:
    try:
        resolve(rules, request, "the identity")
    except AmbiguousRequest:
        return True
    except BrokerError:  # no rule grants it: not ambiguous
        return False
    return False


def _digits_possible(glob: str) -> bool:
    """Whether some string of digits matches ``glob`` (its literal characters all digits)."""
    return all(char in "0123456789" for char in glob.replace("*", ""))


def _matches_one(glob: str, values: tuple[str, ...]) -> bool:
    pattern = glob_to_regex(glob)
    return any(pattern.fullmatch(value) for value in values)


def _ref_type(glob: str) -> str | None:
    """``branch`` or ``tag`` when every ref ``glob`` matches is one; else ``None``."""
    literal = glob.split("*", 1)[0]
    for prefix, kind in REF_TYPES.items():
        if literal.startswith(prefix):
            return kind
    return None


def _claims_docs(kind: Kind) -> str:
    return GITHUB_DOCS if kind == "github" else GITLAB_DOCS


def _listed(alternatives: frozenset[str]) -> str:
    return ", ".join(repr(a) for a in sorted(alternatives))
