"""Security properties of infra/dependabot.yaml, each a check that returns its violations.

The Dependabot role is assumed over GitHub OIDC by Dependabot's update jobs, with no session
policy: its own policy is all a session may do. So it trusts only GitHub's OIDC provider, for
the audience sts.amazonaws.com and a subject made of the immutable owner and repository ids
(the subject template docs/admin.md "Dependabot" asks the repositories to set), and it reads
the one private repository. The trust policy is evaluated against sample tokens by
:func:`trust_allows`, a small stand-in for IAM's evaluation of the operators the template uses
(moto ignores StringLike), and the permissions are checked twice: as written (evaluated with
tests/infra/cfn_eval.py) and as a session of the role deployed into moto sees them.

Every check runs on the template (no violations) and on copies mutated to break exactly the
property it guards (a violation is found), so no check can pass vacuously.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

from devstack.codeartifact.principals import AssumedRoleSession, caller
from devstack.provision import Clients, Provisioner
from tests.infra.cfn_eval import (
    ACCOUNT,
    OTHER_ACCOUNT,
    PSEUDO_PARAMETERS,
    REGION,
    ROOT,
    Check,
    Mutation,
    Stack,
    Template,
    allowed,
    as_list,
    attached_policy_documents,
    load,
    mutation_params,
    parameter_error,
    properties,
    role_policy_documents,
    statements,
)

TEMPLATE = ROOT / "infra" / "dependabot.yaml"
ROLE = "DependabotRole"
PROVIDER = "GitHubOidcProvider"
ISSUER = "token.actions.githubusercontent.com"
AUD, SUB = f"{ISSUER}:aud", f"{ISSUER}:sub"
AUDIENCE = "sts.amazonaws.com"
WEB_IDENTITY = "sts:AssumeRoleWithWebIdentity"
EXISTING_PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER}"
OWNER_ID, OTHER_OWNER_ID = "65", "650"  # an owner whose id starts with ours
REPOSITORY_ID, SECOND_REPOSITORY_ID, UNLISTED_REPOSITORY_ID = "74", "9001", "75"
MOTO_ACCOUNT = "123456789012"  # the account moto puts everything in (moto.core.DEFAULT_ACCOUNT_ID)
READ_ACTIONS = ("codeartifact:ReadFromRepository", "codeartifact:GetRepositoryEndpoint")
# What must never reach Dependabot: publishing, and every other change to package versions.
WRITE_ACTIONS = {
    "codeartifact:PublishPackageVersion",
    "codeartifact:PutPackageMetadata",
    "codeartifact:CopyPackageVersions",
    "codeartifact:UpdatePackageVersionsStatus",
    "codeartifact:DisposePackageVersions",
    "codeartifact:DeletePackageVersions",
    "codeartifact:DeletePackage",
}


def subject(owner_id: str, repository_id: str) -> str:
    """The subject of a token from a repository with the template docs/admin.md asks for."""
    return f"repository_owner_id:{owner_id}:repository_id:{repository_id}"


@dataclass(frozen=True)
class Scenario:
    """Sample parameter values and what they must lead to."""

    name: str
    owner: str
    domain: str
    repository: str
    provider: str  # the trusted provider as the evaluated template names it
    repositories: tuple[str, ...]  # listed ids; empty: any repository of the owner
    overrides: dict[str, str] = field(default_factory=dict)

    def stack(self, t: Template, **extra: str) -> Stack:
        return Stack(t, {"RepositoryOwnerId": OWNER_ID, **self.overrides, **extra})

    @property
    def arn(self) -> str:
        return f"arn:aws:codeartifact:{REGION}:{self.owner}"

    @property
    def domain_arn(self) -> str:
        return f"{self.arn}:domain/{self.domain}"

    @property
    def repository_arn(self) -> str:
        return f"{self.arn}:repository/{self.domain}/{self.repository}"

    def expected_pairs(self) -> set[tuple[str, str]]:
        return {
            ("codeartifact:GetAuthorizationToken", self.domain_arn),
            ("sts:GetServiceBearerToken", "*"),
            *((action, self.repository_arn) for action in READ_ACTIONS),
        }


SCENARIOS = (
    # Defaults: the domain is this account's, the provider is created, any repository of the owner.
    Scenario(
        "created-provider-any-repository",
        owner=ACCOUNT,
        domain="acme",
        repository="internal",
        provider=f"<{PROVIDER}>",
        repositories=(),
    ),
    Scenario(
        "existing-provider-listed-repositories",
        owner=OTHER_ACCOUNT,
        domain="corp",
        repository="private.repo",
        provider=EXISTING_PROVIDER,
        repositories=(REPOSITORY_ID, SECOND_REPOSITORY_ID),
        overrides={
            "DomainOwner": OTHER_ACCOUNT,
            "DomainName": "corp",
            "RepositoryName": "private.repo",
            "GitHubOidcProviderArn": EXISTING_PROVIDER,
            "RepositoryIds": f"{REPOSITORY_ID},{SECOND_REPOSITORY_ID}",
        },
    ),
)


def template() -> Template:
    return load(TEMPLATE)


def trust(stack: Stack) -> list[dict[str, Any]]:
    """The role's trust statements, evaluated for the stack's parameter values."""
    document = stack.resolve(properties(stack.template, ROLE)["AssumeRolePolicyDocument"])
    return statements(document)


# --- a stand-in for IAM's evaluation of a trust policy -------------------------------------------


def like(pattern: str, value: str) -> bool:
    """IAM's StringLike: ``*`` any run of characters (``:`` and ``/`` too), ``?`` one."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.S) is not None


def equals(pattern: str, value: str) -> bool:
    return pattern == value


OPERATORS: dict[str, tuple[Callable[[str, str], bool], bool]] = {
    # operator: (test of one value, negated); a negated operator holds for a missing key
    "StringEquals": (equals, False),
    "StringLike": (like, False),
    "StringNotEquals": (equals, True),
    "StringNotLike": (like, True),
}


def condition_holds(condition: dict[str, dict[str, Any]], context: dict[str, str]) -> bool:
    for operator, keys in condition.items():
        if operator not in OPERATORS:
            raise NotImplementedError(f"the stand-in does not know {operator}")
        test, negated = OPERATORS[operator]
        for key, patterns in keys.items():
            if key not in context:
                holds = negated
            else:
                matched = any(test(str(p), context[key]) for p in as_list(patterns))
                holds = not matched if negated else matched
            if not holds:
                return False
    return True


def trust_allows(statements_: list[dict[str, Any]], provider: str, context: dict[str, str]) -> bool:
    """Whether AssumeRoleWithWebIdentity with a token of ``provider`` carrying ``context``
    (condition key: value) is allowed: some Allow statement applies and no Deny does."""

    def applies(statement: dict[str, Any]) -> bool:
        return (
            statement.get("Principal") == {"Federated": provider}
            and WEB_IDENTITY in as_list(statement.get("Action", []))
            and condition_holds(statement.get("Condition", {}), context)
        )

    effects = [s["Effect"] for s in statements_ if applies(s)]
    return "Allow" in effects and "Deny" not in effects


def token(sub: str | None, aud: str = AUDIENCE) -> dict[str, str]:
    return {AUD: aud} if sub is None else {AUD: aud, SUB: sub}


def refused_tokens(scenario: Scenario, tokens: dict[str, dict[str, str]], t: Template) -> list[str]:
    stack = scenario.stack(t)
    return [
        f"{scenario.name}: trusts {what}"
        for what, context in tokens.items()
        if trust_allows(trust(stack), scenario.provider, context)
    ]


def test_the_stand_in_evaluates_like_iam() -> None:
    assert like("repository_owner_id:6*", "repository_owner_id:650:x")
    assert like("a?c", "abc")
    assert not like("a?c", "ac")
    assert not like("a.c", "abc")  # only * and ? are special
    allow = {"Effect": "Allow", "Principal": {"Federated": "p"}, "Action": WEB_IDENTITY}
    deny = {**allow, "Effect": "Deny", "Condition": {"StringNotLike": {"k": ["x*", "y"]}}}
    assert trust_allows([allow], "p", {})
    assert not trust_allows([allow], "q", {})
    assert trust_allows([allow, deny], "p", {"k": "x1"})
    assert not trust_allows([allow, deny], "p", {"k": "z"})
    assert not trust_allows([allow, deny], "p", {})  # a negated operator holds for a missing key
    with pytest.raises(NotImplementedError):
        condition_holds({"ForAnyValue:StringLike": {"k": "x"}}, {"k": "x"})


# --------------------------------------------------------------------------- the checks


def role_trusts_only_githubs_provider(t: Template) -> list[str]:
    problems = []
    declaration = t["Parameters"]["GitHubOidcProviderArn"]
    for value in (
        f"arn:aws:iam::{ACCOUNT}:oidc-provider/gitlab.com",
        f"arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER}.evil.example",
        f"arn:aws:iam::{ACCOUNT}:role/anything",
        "*",
    ):
        if parameter_error(declaration, value) is None:
            problems.append(f"GitHubOidcProviderArn accepts {value!r}")
    for scenario in SCENARIOS:
        for statement in trust(scenario.stack(t)):
            where = f"{scenario.name}: {statement.get('Sid', 'a trust statement')}"
            if statement.get("Principal") != {"Federated": scenario.provider}:
                problems.append(f"{where} names {statement.get('Principal')}")
            actions = as_list(statement.get("Action", []))
            if actions != [WEB_IDENTITY]:
                problems.append(f"{where} allows {actions}")
            if statement.get("Effect") == "Allow" and set(statement) - {
                "Sid",
                "Effect",
                "Principal",
                "Action",
                "Condition",
            }:
                problems.append(f"{where} has {sorted(statement)}")
    return problems


def trust_requires_the_audience(t: Template) -> list[str]:
    problems = []
    for scenario in SCENARIOS:
        stack = scenario.stack(t)
        good = subject(OWNER_ID, scenario.repositories[0] if scenario.repositories else "1")
        problems += refused_tokens(
            scenario,
            {
                "a token for another audience": token(good, aud=f"https://github.com/{OWNER_ID}"),
                "a token without an audience": {SUB: good},
            },
            t,
        )
        for statement in trust(stack):
            if statement["Effect"] == "Allow":
                equals = statement.get("Condition", {}).get("StringEquals", {})
                if equals.get(AUD) != AUDIENCE:
                    problems.append(f"{scenario.name}: aud is {equals.get(AUD)!r}")
    return problems


def trust_accepts_the_owners_dependabot(t: Template) -> list[str]:
    """The subjects the template is for are trusted: otherwise Dependabot cannot read."""
    problems = []
    for scenario in SCENARIOS:
        stack = scenario.stack(t)
        for repository in scenario.repositories or (REPOSITORY_ID, "1", "123456789"):
            context = token(subject(OWNER_ID, repository))
            if not trust_allows(trust(stack), scenario.provider, context):
                problems.append(f"{scenario.name}: refuses repository {repository}")
    return problems


def trust_refuses_other_owners(t: Template) -> list[str]:
    problems = []
    for scenario in SCENARIOS:
        repository = scenario.repositories[0] if scenario.repositories else REPOSITORY_ID
        problems += refused_tokens(
            scenario,
            {
                "another owner": token(subject("999", repository)),
                "an owner whose id starts with ours": token(subject(OTHER_OWNER_ID, repository)),
                "an owner whose id ends with ours": token(subject("1" + OWNER_ID, repository)),
                # A ":" in a claim value is %3A in the subject: another repository's template
                # cannot make its subject start with our owner id.
                "a crafted workflow name": token(
                    f"workflow:repository_owner_id%3A{OWNER_ID}%3Arepository_id%3A{repository}"
                ),
                "no subject": token(None),
            },
            t,
        )
    return problems


def trust_refuses_unlisted_repositories(t: Template) -> list[str]:
    problems = []
    for scenario in SCENARIOS:
        if not scenario.repositories:
            continue
        tokens = {
            "an unlisted repository of the owner": token(subject(OWNER_ID, UNLISTED_REPOSITORY_ID))
        }
        for listed in scenario.repositories:
            tokens[f"{listed} as a prefix"] = token(subject(OWNER_ID, listed + "0"))
            tokens[f"{listed} as a suffix"] = token(subject(OWNER_ID, "1" + listed))
        problems += refused_tokens(scenario, tokens, t)
    return problems


NAME_CLAIMS = ("repository", "repository_owner", "actor", "workflow", "ref", "environment")


def trust_names_no_names(t: Template) -> list[str]:
    """Only aud and sub are conditioned on; the subject patterns hold ids, not names, and
    subjects made of names (the default ones, with or without ids) are refused."""
    problems = []
    allowed_text = re.compile(r"^(repository_owner_id:(\d+|\*):repository_id:(\d+|\*))$")
    for scenario in SCENARIOS:
        stack = scenario.stack(t)
        for statement in trust(stack):
            for operator, keys in statement.get("Condition", {}).items():
                for key, patterns in keys.items():
                    if key not in (AUD, SUB):
                        problems.append(f"{scenario.name}: condition on {key}")
                    if key == SUB:
                        problems += [
                            f"{scenario.name}: {operator} subject {p!r} is not made of ids"
                            for p in as_list(patterns)
                            if not allowed_text.match(str(p))
                        ]
        repository = scenario.repositories[0] if scenario.repositories else REPOSITORY_ID
        problems += refused_tokens(
            scenario,
            {
                "the default subject": token("repo:acme/internal:ref:refs/heads/main"),
                "the immutable default subject": token(
                    f"repo:acme@{OWNER_ID}/internal@{repository}:ref:refs/heads/main"
                ),
                "a subject by owner name": token("repository_owner:acme"),
            },
            t,
        )
    return problems


def role_sessions_last_an_hour(t: Template) -> list[str]:
    duration = int(properties(t, ROLE).get("MaxSessionDuration", 3600))
    return [] if duration <= 3600 else [f"MaxSessionDuration is {duration}"]


def role_is_named_as_dependabot_yml_says(t: Template) -> list[str]:
    """dependabot.yml gives a name; Dependabot assumes arn:aws:iam::ACCOUNT:role/NAME."""
    problems = []
    props = properties(t, ROLE)
    if props.get("RoleName") != {"Ref": "RoleName"}:
        problems.append(f"RoleName is {props.get('RoleName')}")
    if props.get("Path", "/") != "/":
        problems.append(f"the role has the path {props['Path']}: role/NAME would not find it")
    if t["Outputs"]["RoleName"]["Value"] != {"Ref": ROLE}:
        problems.append("the RoleName output is not the role's name")
    return problems


def role_has_no_managed_or_attached_policies(t: Template) -> list[str]:
    problems = []
    managed = properties(t, ROLE).get("ManagedPolicyArns")
    if managed:
        problems.append(f"{ROLE} has managed policies {managed}")
    if properties(t, ROLE).get("PermissionsBoundary"):
        problems.append(f"{ROLE} has a permissions boundary (not what this test checks)")
    attached = attached_policy_documents(t, ROLE)
    if attached:
        problems.append(f"{len(attached)} policy resources are attached to {ROLE}")
    return problems


def role_reads_exactly_the_one_repository(t: Template) -> list[str]:
    problems = []
    for scenario in SCENARIOS:
        actual = allowed(scenario.stack(t), role_policy_documents(t, ROLE))
        expected = scenario.expected_pairs()
        problems += [f"{scenario.name}: also allows {p}" for p in sorted(actual - expected)]
        problems += [f"{scenario.name}: lacks {p}" for p in sorted(expected - actual)]
    return problems


def role_never_publishes(t: Template) -> list[str]:
    problems = []
    for scenario in SCENARIOS:
        stack = scenario.stack(t)
        for document in role_policy_documents(t, ROLE):
            for statement in statements(stack.resolve(document)):
                actions = as_list(statement.get("Action", []) or statement.get("NotAction", []))
                if "NotAction" in statement:
                    problems.append(f"{scenario.name}: NotAction {actions}")
                for action in actions:
                    wildcard = "*" in action or "?" in action
                    if action in WRITE_ACTIONS or wildcard:
                        problems.append(f"{scenario.name}: {statement['Effect']} {action}")
    return problems


def bearer_tokens_are_for_codeartifact_only(t: Template) -> list[str]:
    problems = []
    bearer = [
        s
        for d in role_policy_documents(t, ROLE)
        for s in statements(d)
        if "sts:GetServiceBearerToken" in as_list(s.get("Action", []))
    ]
    if not bearer:
        problems.append("no statement allows sts:GetServiceBearerToken")
    for statement in bearer:
        condition = statement.get("Condition", {})
        if condition.get("StringEquals") != {"sts:AWSServiceName": "codeartifact.amazonaws.com"}:
            problems.append(f"bearer tokens not limited to CodeArtifact: {condition}")
    return problems


def provider_is_created_only_without_an_arn(t: Template) -> list[str]:
    problems = []
    for scenario in SCENARIOS:
        created = scenario.stack(t).exists("Resources", PROVIDER)
        wanted = "GitHubOidcProviderArn" not in scenario.overrides
        if created != wanted:
            problems.append(f"{scenario.name}: the provider is created: {created}")
    props = properties(t, PROVIDER)
    if props.get("Url") != f"https://{ISSUER}":
        problems.append(f"the provider's URL is {props.get('Url')}")
    if props.get("ClientIdList") != [AUDIENCE]:
        problems.append(f"the provider's audiences are {props.get('ClientIdList')}")
    return problems


def the_owner_id_must_be_given(t: Template) -> list[str]:
    problems = []
    declaration = t["Parameters"]["RepositoryOwnerId"]
    if "Default" in declaration:
        problems.append("RepositoryOwnerId has a default")
    for value in ("", "*", "acme", f"{OWNER_ID}*", "0"):
        if parameter_error(declaration, value) is None:
            problems.append(f"RepositoryOwnerId accepts {value!r}")
    ids = t["Parameters"]["RepositoryIds"]
    for value in (
        "*",
        f"{REPOSITORY_ID},",
        f"{REPOSITORY_ID},*",
        "acme/internal",
        f" {REPOSITORY_ID}",
    ):
        if parameter_error(ids, value) is None:
            problems.append(f"RepositoryIds accepts {value!r}")
    return problems


def names_cannot_widen_the_arns(t: Template) -> list[str]:
    """A wildcard or a path in a name would widen the policy's ARNs to other domains or
    repositories (``repository/acme/*``)."""
    problems = []
    for name, values in (
        ("DomainName", ("*", "a*", "acme/*", "ac?e")),
        ("DomainOwner", ("*", "1111*", f"{ACCOUNT}/*")),
        ("RepositoryName", ("*", "in*", "internal/*", "intern?l", "../pypi-store")),
    ):
        for value in values:
            if parameter_error(t["Parameters"][name], value) is None:
                problems.append(f"{name} accepts {value!r}")
    return problems


def outputs_say_what_dependabot_yml_needs(t: Template) -> list[str]:
    problems = []
    for scenario in SCENARIOS:
        stack = scenario.stack(t)
        outputs = {name: stack.resolve(o["Value"]) for name, o in t["Outputs"].items()}
        url = (
            f"https://{scenario.domain}-{scenario.owner}.d.codeartifact.{REGION}.amazonaws.com"
            f"/pypi/{scenario.repository}/"
        )
        if outputs.get("RegistryUrl") != url:
            problems.append(f"{scenario.name}: RegistryUrl is {outputs.get('RegistryUrl')}")
        registry = yaml.safe_load(str(outputs.get("DependabotRegistry")))
        expected = {
            "type": "python-index",
            "url": url,
            "aws-region": REGION,
            "account-id": ACCOUNT,
            "role-name": f"<{ROLE}>",
            "domain": scenario.domain,
            "domain-owner": scenario.owner,
            "replaces-base": True,
        }
        if registry != expected:
            problems.append(f"{scenario.name}: DependabotRegistry is {registry}")
    return problems


CHECKS: list[Check] = [
    role_trusts_only_githubs_provider,
    trust_requires_the_audience,
    trust_accepts_the_owners_dependabot,
    trust_refuses_other_owners,
    trust_refuses_unlisted_repositories,
    trust_names_no_names,
    role_sessions_last_an_hour,
    role_is_named_as_dependabot_yml_says,
    role_has_no_managed_or_attached_policies,
    role_reads_exactly_the_one_repository,
    role_never_publishes,
    bearer_tokens_are_for_codeartifact_only,
    provider_is_created_only_without_an_arn,
    the_owner_id_must_be_given,
    names_cannot_widen_the_arns,
    outputs_say_what_dependabot_yml_needs,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_the_template_has_the_property(check: Check) -> None:
    assert check(template()) == []


# --------------------------------------------------------------------------- mutations


def _statement(t: Template, sid: str) -> dict[str, Any]:
    """Statement ``sid`` of the role's trust policy or inline policy (not under an Fn::If)."""
    props = properties(t, ROLE)
    documents = [props["AssumeRolePolicyDocument"]] + [
        p["PolicyDocument"] for p in props["Policies"]
    ]
    matches = [s for d in documents for s in d["Statement"] if s.get("Sid") == sid]
    statement: dict[str, Any]
    (statement,) = matches
    return statement


def _trust_condition(t: Template) -> dict[str, Any]:
    condition: dict[str, Any] = _statement(t, "DependabotOfTheOwner")["Condition"]
    return condition


def _drop_deny(t: Template) -> None:
    trust_statements = properties(t, ROLE)["AssumeRolePolicyDocument"]["Statement"]
    trust_statements[:] = [s for s in trust_statements if "Fn::If" not in s]


def _listed_pattern(t: Template, text: str) -> None:
    """Rewrite the pattern each listed repository id is put in (the Deny's Fn::Sub)."""
    (deny,) = [
        s["Fn::If"][2]
        for s in properties(t, ROLE)["AssumeRolePolicyDocument"]["Statement"]
        if "Fn::If" in s
    ]
    deny["Condition"]["StringNotLike"][SUB]["Fn::Split"][1]["Fn::Sub"][0] = text


def _arn_text(t: Template, sid: str, text: str) -> None:
    _statement(t, sid)["Resource"]["Fn::Sub"][0] = text


ARN = "arn:${AWS::Partition}:codeartifact:${AWS::Region}:${Owner}"

MUTATIONS: list[Mutation] = [
    (
        "the account root is trusted too",
        lambda t: properties(t, ROLE)["AssumeRolePolicyDocument"]["Statement"].append(
            {
                "Effect": "Allow",
                "Principal": {
                    "AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
                },
                "Action": "sts:AssumeRole",
            }
        ),
        role_trusts_only_githubs_provider,
    ),
    (
        "the provider ARN may name any provider",
        lambda t: t["Parameters"]["GitHubOidcProviderArn"].update(AllowedPattern=".*"),
        role_trusts_only_githubs_provider,
    ),
    (
        "the trust may also tag sessions",
        lambda t: _statement(t, "DependabotOfTheOwner").update(
            Action=[WEB_IDENTITY, "sts:TagSession"]
        ),
        role_trusts_only_githubs_provider,
    ),
    (
        "no audience condition",
        lambda t: _trust_condition(t).pop("StringEquals"),
        trust_requires_the_audience,
    ),
    (
        "the owner's audience URL instead",
        lambda t: _trust_condition(t)["StringEquals"].update(
            {AUD: {"Fn::Sub": "https://github.com/${RepositoryOwnerId}"}}
        ),
        trust_accepts_the_owners_dependabot,
    ),
    (
        "the subject in another claim order",
        lambda t: _trust_condition(t)["StringLike"].update(
            {SUB: {"Fn::Sub": "repository_id:*:repository_owner_id:${RepositoryOwnerId}"}}
        ),
        trust_accepts_the_owners_dependabot,
    ),
    (
        "no subject condition",
        lambda t: _trust_condition(t).pop("StringLike"),
        trust_refuses_other_owners,
    ),
    (
        "any owner",
        lambda t: _trust_condition(t)["StringLike"].update(
            {SUB: "repository_owner_id:*:repository_id:*"}
        ),
        trust_refuses_other_owners,
    ),
    (
        "the owner id as a prefix",
        lambda t: _trust_condition(t)["StringLike"].update(
            {SUB: {"Fn::Sub": "repository_owner_id:${RepositoryOwnerId}*"}}
        ),
        trust_refuses_other_owners,
    ),
    (
        "the owner id anywhere in the subject",
        lambda t: _trust_condition(t)["StringLike"].update(
            {SUB: {"Fn::Sub": "*repository_owner_id*${RepositoryOwnerId}*"}}
        ),
        trust_refuses_other_owners,
    ),
    (
        "listed repositories not enforced",
        _drop_deny,
        trust_refuses_unlisted_repositories,
    ),
    (
        "listed ids as prefixes",
        lambda t: _listed_pattern(t, "repository_owner_id:*:repository_id:${Ids}*"),
        trust_refuses_unlisted_repositories,
    ),
    (
        "the subject by names",
        lambda t: _trust_condition(t)["StringLike"].update({SUB: "repo:acme/*"}),
        trust_names_no_names,
    ),
    (
        "the immutable default subject with names wildcarded",
        lambda t: _trust_condition(t)["StringLike"].update(
            {SUB: {"Fn::Sub": "repo:*@${RepositoryOwnerId}/*"}}
        ),
        trust_names_no_names,
    ),
    (
        "a condition on the repository name",
        lambda t: _trust_condition(t)["StringEquals"].update(
            {f"{ISSUER}:repository": "acme/internal"}
        ),
        trust_names_no_names,
    ),
    (
        "twelve-hour sessions",
        lambda t: properties(t, ROLE).update(MaxSessionDuration=43200),
        role_sessions_last_an_hour,
    ),
    (
        "a generated role name",
        lambda t: properties(t, ROLE).pop("RoleName"),
        role_is_named_as_dependabot_yml_says,
    ),
    (
        "a role path",
        lambda t: properties(t, ROLE).update(Path="/dependabot/"),
        role_is_named_as_dependabot_yml_says,
    ),
    (
        "AdministratorAccess on the role",
        lambda t: properties(t, ROLE).update(
            ManagedPolicyArns=["arn:aws:iam::aws:policy/AdministratorAccess"]
        ),
        role_has_no_managed_or_attached_policies,
    ),
    (
        "a policy resource attached to the role",
        lambda t: t["Resources"].update(
            Extra={
                "Type": "AWS::IAM::RolePolicy",
                "Properties": {
                    "RoleName": {"Ref": ROLE},
                    "PolicyName": "extra",
                    "PolicyDocument": {"Statement": []},
                },
            }
        ),
        role_has_no_managed_or_attached_policies,
    ),
    (
        "reads every repository of the domain",
        lambda t: _arn_text(t, "ReadRepository", f"{ARN}:repository/${{DomainName}}/*"),
        role_reads_exactly_the_one_repository,
    ),
    (
        "reads the store repository too",
        lambda t: _statement(t, "ReadRepository").update(
            Resource=[
                _statement(t, "ReadRepository")["Resource"],
                {
                    "Fn::Sub": [
                        f"{ARN}:repository/${{DomainName}}/pypi-store",
                        {"Owner": {"Ref": "AWS::AccountId"}},
                    ]
                },
            ]
        ),
        role_reads_exactly_the_one_repository,
    ),
    (
        "tokens for any domain",
        lambda t: _arn_text(t, "GetAuthorizationToken", f"{ARN}:domain/*"),
        role_reads_exactly_the_one_repository,
    ),
    (
        "the domain owner ignored",
        lambda t: _statement(t, "ReadRepository")["Resource"]["Fn::Sub"][1].update(
            Owner={"Ref": "AWS::AccountId"}
        ),
        role_reads_exactly_the_one_repository,
    ),
    (
        "no read on the repository",
        lambda t: _statement(t, "ReadRepository").update(
            Action=["codeartifact:GetRepositoryEndpoint"]
        ),
        role_reads_exactly_the_one_repository,
    ),
    (
        "publishing too",
        lambda t: _statement(t, "ReadRepository")["Action"].append(
            "codeartifact:PublishPackageVersion"
        ),
        role_never_publishes,
    ),
    (
        "every codeartifact action",
        lambda t: _statement(t, "ReadRepository").update(Action="codeartifact:*"),
        role_never_publishes,
    ),
    (
        "bearer tokens for any service",
        lambda t: _statement(t, "ServiceBearerToken").pop("Condition"),
        bearer_tokens_are_for_codeartifact_only,
    ),
    (
        "the provider always created",
        lambda t: t["Resources"][PROVIDER].pop("Condition"),
        provider_is_created_only_without_an_arn,
    ),
    (
        "the provider for another audience",
        lambda t: properties(t, PROVIDER).update(
            ClientIdList=[AUDIENCE, "https://github.com/acme"]
        ),
        provider_is_created_only_without_an_arn,
    ),
    (
        "the owner id has a default",
        lambda t: t["Parameters"]["RepositoryOwnerId"].update(Default=OWNER_ID),
        the_owner_id_must_be_given,
    ),
    (
        "the owner id may be anything",
        lambda t: t["Parameters"]["RepositoryOwnerId"].update(AllowedPattern=".*"),
        the_owner_id_must_be_given,
    ),
    (
        "repository ids may be patterns",
        lambda t: t["Parameters"]["RepositoryIds"].update(AllowedPattern="^[0-9*,]*$"),
        the_owner_id_must_be_given,
    ),
    (
        "any repository name",
        lambda t: t["Parameters"]["RepositoryName"].pop("AllowedPattern"),
        names_cannot_widen_the_arns,
    ),
    (
        "any domain name",
        lambda t: t["Parameters"]["DomainName"].pop("AllowedPattern"),
        names_cannot_widen_the_arns,
    ),
    (
        "any domain owner",
        lambda t: t["Parameters"]["DomainOwner"].pop("AllowedPattern"),
        names_cannot_widen_the_arns,
    ),
    (
        "the registry URL without the repository",
        lambda t: t["Outputs"]["RegistryUrl"]["Value"]["Fn::Sub"].__setitem__(
            0,
            "https://${DomainName}-${Owner}.d.codeartifact.${AWS::Region}.${AWS::URLSuffix}/pypi/",
        ),
        outputs_say_what_dependabot_yml_needs,
    ),
]


@pytest.mark.parametrize(("mutate", "check"), mutation_params(MUTATIONS))
def test_breaking_the_property_is_caught(mutate: Any, check: Check) -> None:
    t = template()
    mutate(t)
    assert check(t) != []


def test_every_check_has_a_mutation() -> None:
    assert {check.__name__ for _, _, check in MUTATIONS} == {c.__name__ for c in CHECKS}


# --------------------------------------------------------------------------- a real session


@pytest.fixture
def deployed() -> Iterator[tuple[dict[str, Any], AssumedRoleSession]]:
    """The template deployed into moto (as the devstack deploys), and a session of the role
    assumed with a web identity as Dependabot does: no session policy."""
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        clients = Clients(
            iam=session.client("iam"),
            ssm=session.client("ssm"),
            codeartifact=session.client("codeartifact"),
            dynamodb=session.client("dynamodb"),
            kms=session.client("kms"),
        )
        pseudo = {**PSEUDO_PARAMETERS, "AWS::AccountId": MOTO_ACCOUNT}
        deployment = Provisioner(clients, pseudo, ROOT).deploy(
            TEMPLATE, {"RepositoryOwnerId": OWNER_ID, "RepositoryIds": REPOSITORY_ID}
        )
        credentials = session.client("sts").assume_role_with_web_identity(
            RoleArn=deployment.outputs["RoleArn"],
            RoleSessionName="dependabot-update",
            WebIdentityToken="a-github-actions-oidc-token",
        )["Credentials"]
        principal = caller(credentials["AccessKeyId"], MOTO_ACCOUNT)
        assert isinstance(principal, AssumedRoleSession)
        assert principal.session_policy is None
        yield deployment.outputs, principal


def test_a_session_of_the_role_reads_the_repository_and_nothing_else(
    deployed: tuple[dict[str, Any], AssumedRoleSession],
) -> None:
    outputs, dependabot = deployed
    assert outputs["RoleArn"] == f"arn:aws:iam::{MOTO_ACCOUNT}:role/cabroker-dependabot-read"
    arn = f"arn:aws:codeartifact:{REGION}:{MOTO_ACCOUNT}"
    codeartifact = {"sts:AWSServiceName": "codeartifact.amazonaws.com"}
    for action, resource, context in [
        ("codeartifact:GetAuthorizationToken", f"{arn}:domain/acme", {}),
        ("sts:GetServiceBearerToken", "*", codeartifact),
        ("codeartifact:ReadFromRepository", f"{arn}:repository/acme/internal", {}),
        ("codeartifact:GetRepositoryEndpoint", f"{arn}:repository/acme/internal", {}),
    ]:
        assert dependabot.allows(action, resource, context), (action, resource)
    for action, resource, context in [
        ("codeartifact:ReadFromRepository", f"{arn}:repository/acme/pypi-store", {}),
        ("codeartifact:ReadFromRepository", f"{arn}:repository/other/internal", {}),
        ("codeartifact:GetAuthorizationToken", f"{arn}:domain/other", {}),
        ("codeartifact:PublishPackageVersion", f"{arn}:package/acme/internal/pypi//acme-lib", {}),
        ("codeartifact:PutPackageMetadata", f"{arn}:package/acme/internal/pypi//acme-lib", {}),
        ("codeartifact:DescribeRepository", f"{arn}:repository/acme/internal", {}),
        ("sts:GetServiceBearerToken", "*", {"sts:AWSServiceName": "ecr.amazonaws.com"}),
        ("iam:CreateRole", "*", {}),
    ]:
        assert not dependabot.allows(action, resource, context), (action, resource)


def test_an_existing_provider_is_trusted_and_none_created() -> None:
    stack = SCENARIOS[1].stack(template())
    assert list(stack.resources()) == [ROLE]
    principals = {str(s["Principal"]["Federated"]) for s in trust(stack)}
    assert principals == {EXISTING_PROVIDER}
