"""Security properties of infra/iam.yaml, each a check that returns its violations.

TokenIssuerRole is the most a broker token may ever carry (the README's "What a token can do"): it
trusts only the broker function's role and allows exactly what a CodeArtifact token for the
private repositories the deployment serves needs: each of them, read and publish, never the store
repository nor any other repository of the domain.  One to five repositories, one slot each; a
sixth fails the deployment and an empty entry is refused.  The admin policy stays inside the one
domain and cannot delete it; the optional reader and publisher policies exist only when asked
for.  Templates are evaluated for sample parameter values (tests/infra/cfn_eval.py): one, two
and five repositories (names with dots, underscores, hyphens and capitals), the domain owned by
this stack's account (DomainOwner empty) and by another account.

Every check runs on the template (no violations) and on copies mutated to break exactly the
property it guards (a violation is found), so no check can pass vacuously.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.infra.cfn_eval import (
    ACCOUNT,
    NOT_REPOSITORY_NAMES,
    OTHER_ACCOUNT,
    REGION,
    ROOT,
    Check,
    Mutation,
    Stack,
    Template,
    all_policy_documents,
    allowed,
    as_list,
    attached_policy_documents,
    is_trap,
    load,
    mutation_params,
    parameter_error,
    properties,
    refusal,
    role_policy_documents,
    statements,
)

TEMPLATE = ROOT / "infra" / "iam.yaml"
BROKER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/cabroker-BrokerFunctionRole-1A2B3C"
BEARER_CONDITION_KEY = "sts:AWSServiceName"
CODEARTIFACT_SERVICE = "codeartifact.amazonaws.com"
MAX_TOKEN_SECONDS = 43200
LIST_ACTIONS = {"codeartifact:ListDomains", "codeartifact:ListRepositories"}
READ_ACTIONS = ("codeartifact:ReadFromRepository", "codeartifact:GetRepositoryEndpoint")
PUBLISH_ACTIONS = ("codeartifact:PublishPackageVersion", "codeartifact:PutPackageMetadata")
# What must never reach a reader: publishing and every other change to package versions.
WRITE_ACTIONS = {
    *PUBLISH_ACTIONS,
    "codeartifact:CopyPackageVersions",
    "codeartifact:UpdatePackageVersionsStatus",
    "codeartifact:DisposePackageVersions",
    "codeartifact:DeletePackageVersions",
    "codeartifact:DeletePackage",
}
BOTH_POLICIES = {"CreateReaderPolicy": "true", "CreatePublisherPolicy": "true"}
STORE = "pypi-store"
FIVE = ("a.b", "team_x", "lib-3", "R4", "z9.v_1")


@dataclass(frozen=True)
class Scenario:
    """Sample parameter values and the domain, owner and repositories they must lead to."""

    name: str
    owner: str
    domain: str
    repositories: tuple[str, ...]
    overrides: dict[str, str] = field(default_factory=dict)

    def stack(self, t: Template, **extra: str) -> Stack:
        parameters = {"RepositoryNames": ",".join(self.repositories), **self.overrides}
        return Stack(t, {"BrokerRoleArn": BROKER_ROLE, **parameters, **extra})

    @property
    def arn(self) -> str:
        return f"arn:aws:codeartifact:{REGION}:{self.owner}"

    @property
    def domain_arn(self) -> str:
        return f"{self.arn}:domain/{self.domain}"

    @property
    def repository_arns(self) -> list[str]:
        return [f"{self.arn}:repository/{self.domain}/{name}" for name in self.repositories]

    @property
    def packages_arns(self) -> list[str]:
        return [f"{self.arn}:package/{self.domain}/{name}/pypi//*" for name in self.repositories]

    def token_pairs(self) -> set[tuple[str, str]]:
        """What any CodeArtifact token needs: a token for the domain, a bearer token."""
        return {
            ("codeartifact:GetAuthorizationToken", self.domain_arn),
            ("sts:GetServiceBearerToken", "*"),
        }

    def read_pairs(self) -> set[tuple[str, str]]:
        return {(action, arn) for action in READ_ACTIONS for arn in self.repository_arns}

    def publish_pairs(self) -> set[tuple[str, str]]:
        return {(action, arn) for action in PUBLISH_ACTIONS for arn in self.packages_arns}


SCENARIOS = (
    # DomainOwner empty (its default): the domain belongs to this stack's account.
    Scenario("same-account", owner=ACCOUNT, domain="acme", repositories=("internal",)),
    Scenario(
        "cross-account",
        owner=OTHER_ACCOUNT,
        domain="corp",
        repositories=("private.repo", "team_x"),
        overrides={"DomainOwner": OTHER_ACCOUNT, "DomainName": "corp"},
    ),
    Scenario("five-repositories", owner=ACCOUNT, domain="acme", repositories=FIVE),
    Scenario(
        "five-cross-account",
        owner=OTHER_ACCOUNT,
        domain="shared",
        repositories=tuple(reversed(FIVE)),
        overrides={"DomainOwner": OTHER_ACCOUNT, "DomainName": "shared"},
    ),
)


def template() -> Template:
    return load(TEMPLATE)


def created(stack: Stack) -> Template:
    """The template cut down to the resources these parameter values create."""
    return {"Resources": stack.resources()}


def resolved_statements(stack: Stack) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, statement) for every statement of every policy the stack creates, evaluated."""
    for where, document in all_policy_documents(created(stack)):
        for statement in statements(stack.resolve(document)):
            yield where, statement


def differences(
    name: str, actual: set[tuple[str, str]], expected: set[tuple[str, str]]
) -> list[str]:
    problems = [f"{name} also allows {pair}" for pair in sorted(actual - expected)]
    problems += [f"{name} lacks {pair}" for pair in sorted(expected - actual)]
    return problems


def is_wildcard_resource(resource: str) -> bool:
    """``*``, or an ARN with a wildcard before its resource part (any account, region...)."""
    return resource == "*" or (resource.startswith("arn:") and "*" in resource.split(":")[:5])


def is_codeartifact_bearer_statement(statement: dict[str, Any]) -> bool:
    condition = statement.get("Condition", {}).get("StringEquals", {})
    return (
        as_list(statement.get("Action")) == ["sts:GetServiceBearerToken"]
        and condition.get(BEARER_CONDITION_KEY) == CODEARTIFACT_SERVICE
    )


# --------------------------------------------------------------------------- the checks


def issuer_role_trusts_only_the_broker_role(t: Template) -> list[str]:
    problems = []
    declaration = t["Parameters"]["BrokerRoleArn"]
    if "Default" in declaration:
        problems.append("BrokerRoleArn has a default: a stack deployed without it trusts that")
    for value in ("*", f"arn:aws:iam::{ACCOUNT}:root", f"arn:aws:iam::{ACCOUNT}:user/someone"):
        if parameter_error(declaration, value) is None:
            problems.append(f"BrokerRoleArn accepts {value!r}, which is not a role")
    for scenario in SCENARIOS:
        stack = scenario.stack(t)
        document = stack.resolve(t["Resources"]["TokenIssuerRole"]["Properties"])
        trust = statements(document["AssumeRolePolicyDocument"])
        if len(trust) != 1:
            problems.append(f"{scenario.name}: trust policy has {len(trust)} statements, not 1")
        for statement in trust:
            if statement.get("Effect") != "Allow":
                problems.append(f"{scenario.name}: trust statement is not an Allow")
            if statement.get("Principal") != {"AWS": BROKER_ROLE}:
                problems.append(f"{scenario.name}: trusts {statement.get('Principal')}")
            actions = sorted(as_list(statement.get("Action", [])))
            if actions != ["sts:AssumeRole", "sts:SetSourceIdentity"]:
                problems.append(f"{scenario.name}: trust allows {actions}")
            extra = set(statement) - {"Sid", "Effect", "Principal", "Action"}
            if extra:
                problems.append(f"{scenario.name}: trust statement also has {sorted(extra)}")
    return problems


def issuer_role_sessions_last_at_most_an_hour(t: Template) -> list[str]:
    duration = int(t["Resources"]["TokenIssuerRole"]["Properties"].get("MaxSessionDuration", 3600))
    return [] if duration <= 3600 else [f"MaxSessionDuration is {duration}"]


def issuer_role_has_no_managed_or_attached_policies(t: Template) -> list[str]:
    problems = []
    managed = t["Resources"]["TokenIssuerRole"]["Properties"].get("ManagedPolicyArns")
    if managed:
        problems.append(f"TokenIssuerRole has managed policies {managed}")
    attached = attached_policy_documents(t, "TokenIssuerRole")
    if attached:
        problems.append(f"{len(attached)} policy resources are attached to TokenIssuerRole")
    return problems


def issuer_role_allows_exactly_what_a_token_may_carry(t: Template) -> list[str]:
    problems = []
    for scenario in SCENARIOS:
        stack = scenario.stack(t)
        actual = allowed(stack, role_policy_documents(t, "TokenIssuerRole"))
        expected = scenario.token_pairs() | scenario.read_pairs() | scenario.publish_pairs()
        problems += differences(f"{scenario.name}: TokenIssuerRole", actual, expected)
    return problems


def issuer_role_bearer_tokens_are_for_codeartifact_and_capped(t: Template) -> list[str]:
    problems = []
    documents = role_policy_documents(t, "TokenIssuerRole")
    bearer = [
        s
        for s in (s for d in documents for s in statements(d))
        if "sts:GetServiceBearerToken" in as_list(s.get("Action", []))
    ]
    if not bearer:
        problems.append("no statement allows sts:GetServiceBearerToken")
    for statement in bearer:
        condition = statement.get("Condition", {})
        if condition.get("StringEquals") != {BEARER_CONDITION_KEY: CODEARTIFACT_SERVICE}:
            problems.append(f"bearer token not limited to CodeArtifact: {condition}")
        cap = condition.get("NumericLessThanEquals", {}).get("sts:DurationSeconds")
        if cap is None or int(cap) > MAX_TOKEN_SECONDS:
            problems.append(f"bearer token duration not capped at {MAX_TOKEN_SECONDS}: {cap}")
        if set(condition) != {"StringEquals", "NumericLessThanEquals"}:
            problems.append(f"bearer token condition has {sorted(condition)}")
    return problems


def star_resources_only_where_unavoidable(t: Template) -> list[str]:
    problems = []
    for scenario in SCENARIOS:
        for where, statement in resolved_statements(scenario.stack(t, **BOTH_POLICIES)):
            wildcards = [
                r for r in as_list(statement.get("Resource", [])) if is_wildcard_resource(r)
            ]
            if not wildcards:
                continue
            actions = set(as_list(statement.get("Action", [])))
            if is_codeartifact_bearer_statement(statement) or (actions and actions <= LIST_ACTIONS):
                continue
            problems.append(f"{scenario.name}: {where} allows {sorted(actions)} on {wildcards}")
    return problems


def no_negations_or_action_wildcards(t: Template) -> list[str]:
    problems = []
    for where, statement in resolved_statements(SCENARIOS[0].stack(t, **BOTH_POLICIES)):
        negations = {"NotAction", "NotResource", "NotPrincipal"} & set(statement)
        if negations:
            problems.append(f"{where} uses {sorted(negations)}")
        wildcards = [a for a in as_list(statement.get("Action", [])) if "*" in a or "?" in a]
        if wildcards:
            problems.append(f"{where} has wildcard actions {wildcards}")
    return problems


def admin_policy_stays_inside_the_domain(t: Template) -> list[str]:
    problems = []
    for scenario in SCENARIOS:
        stack = scenario.stack(t)
        document = stack.resolve(t["Resources"]["AdminPolicy"]["Properties"]["PolicyDocument"])
        inside = (scenario.domain_arn,)
        within = tuple(
            f"{scenario.arn}:{kind}/{scenario.domain}/"
            for kind in ("repository", "package", "package-group")
        )
        for statement in statements(document):
            if statement.get("Effect") != "Allow":
                continue
            actions = as_list(statement.get("Action", []))
            resources = as_list(statement.get("Resource", []))
            for action in actions:
                lowered = action.lower()
                service = lowered.partition(":")[0]
                bearer = lowered == "sts:getservicebearertoken"
                if lowered == "codeartifact:deletedomain":
                    problems.append(f"{scenario.name}: admin may delete the domain")
                elif lowered == "codeartifact:*" or not (service == "codeartifact" or bearer):
                    problems.append(f"{scenario.name}: admin may {action}")
                if service != "codeartifact" or action in LIST_ACTIONS:
                    continue
                outside = [r for r in resources if r not in inside and not r.startswith(within)]
                if outside:
                    problems.append(
                        f"{scenario.name}: admin {action} outside the domain: {outside}"
                    )
    return problems


def reader_and_publisher_policies_only_when_asked_for(t: Template) -> list[str]:
    problems = []
    for flag in ("CreateReaderPolicy", "CreatePublisherPolicy"):
        if t["Parameters"][flag].get("Default") != "false":
            problems.append(f"{flag} is not false by default")
    combinations = [
        {},
        *(
            {"CreateReaderPolicy": r, "CreatePublisherPolicy": p}
            for r in ("true", "false")
            for p in ("true", "false")
        ),
    ]
    for flags in combinations:
        stack = SCENARIOS[0].stack(t, **flags)
        for policy, flag in (
            ("ReaderPolicy", "CreateReaderPolicy"),
            ("PublisherPolicy", "CreatePublisherPolicy"),
        ):
            wanted = flags.get(flag) == "true"
            for section, name in (("Resources", policy), ("Outputs", f"{policy}Arn")):
                if stack.exists(section, name) != wanted:
                    problems.append(f"{flags or 'defaults'}: {name} exists: {not wanted}")
    return problems


def reader_policy_never_publishes(t: Template) -> list[str]:
    problems = []
    for scenario in SCENARIOS:
        stack = scenario.stack(t, **BOTH_POLICIES)
        document = t["Resources"]["ReaderPolicy"]["Properties"]["PolicyDocument"]
        actual = allowed(stack, [document])
        writes = sorted({action for action, _ in actual} & WRITE_ACTIONS)
        if writes:
            problems.append(f"{scenario.name}: the reader may {writes}")
        expected = scenario.token_pairs() | scenario.read_pairs()
        problems += differences(f"{scenario.name}: ReaderPolicy", actual, expected)
    return problems


def publisher_policy_publishes_only_python_packages_of_the_repositories(t: Template) -> list[str]:
    problems = []
    for scenario in SCENARIOS:
        stack = scenario.stack(t, **BOTH_POLICIES)
        document = t["Resources"]["PublisherPolicy"]["Properties"]["PolicyDocument"]
        actual = allowed(stack, [document])
        for action, resource in sorted(actual):
            if action in PUBLISH_ACTIONS and resource not in scenario.packages_arns:
                problems.append(f"{scenario.name}: the publisher may {action} on {resource}")
        expected = scenario.token_pairs() | scenario.read_pairs() | scenario.publish_pairs()
        problems += differences(f"{scenario.name}: PublisherPolicy", actual, expected)
    return problems


def _issuer_statement(stack: Stack, sid: str) -> dict[str, Any]:
    """Statement ``sid`` of TokenIssuerRole's inline policies, evaluated (empty if none)."""
    for document in role_policy_documents(stack.template, "TokenIssuerRole"):
        for statement in statements(stack.resolve(document)):
            if statement.get("Sid") == sid:
                return statement
    return {}


def repository_of(arn: str) -> str:
    """The repository a repository or package ARN names (``repository/DOMAIN/NAME``,
    ``package/DOMAIN/NAME/...``)."""
    return arn.split(":", 5)[5].split("/")[2]


def issuer_role_holds_exactly_the_served_repositories(t: Template) -> list[str]:
    """ReadRepository names each served repository's ARN once, in order, in the domain owner's
    account; PublishPythonPackages their ``pypi//*`` packages; never the store repository, never
    a pattern that could match another repository of the domain."""
    problems = []
    for scenario in SCENARIOS:
        stack = scenario.stack(t)
        for sid, expected in (
            ("ReadRepository", scenario.repository_arns),
            ("PublishPythonPackages", scenario.packages_arns),
        ):
            resources = as_list(_issuer_statement(stack, sid).get("Resource", []))
            if resources != expected:
                problems.append(f"{scenario.name}: {sid} on {resources}, not {expected}")
            for resource in resources:
                repository = repository_of(resource)
                if repository == STORE:
                    problems.append(f"{scenario.name}: {sid} on the store repository")
                if "*" in repository or "?" in repository:
                    problems.append(f"{scenario.name}: {sid} on repositories {repository!r}")
    return problems


def a_sixth_repository_fails_the_deployment(t: Template) -> list[str]:
    """One to five repositories deploy; a sixth, which no slot would grant, creates the
    TooManyRepositories trap, which fails the deployment."""
    problems = []
    for names, fails in ((("internal",), False), (FIVE, False), ((*FIVE, "six"), True)):
        stack = Stack(t, {"BrokerRoleArn": BROKER_ROLE, "RepositoryNames": ",".join(names)})
        traps = sorted(name for name, r in stack.resources().items() if is_trap(r))
        if bool(traps) != fails:
            problems.append(f"{len(names)} repositories: traps {traps}")
    return problems


def repositories_must_be_named(t: Template) -> list[str]:
    """The RepositoriesAreNamed rule refuses no repository and an empty entry (which would
    grant ``repository/DOMAIN/``)."""
    problems = []
    for value, accepted in (
        ("", False),
        (",", False),
        ("internal,", False),
        (",internal", False),
        ("a1,,b2", False),
        ("internal", True),
        (",".join(FIVE), True),
    ):
        reason = refusal(t, {"BrokerRoleArn": BROKER_ROLE, "RepositoryNames": value})
        if (reason is None) != accepted:
            problems.append(f"RepositoryNames={value!r}: {reason or 'accepted'}")
    return problems


def served_repositories_are_names_never_the_store_or_a_pattern(t: Template) -> list[str]:
    """RepositoryNames refuses a pattern, the store and what is no repository name (this stack
    deploys on its own too, and its role is the ceiling of every token)."""
    return [
        f"RepositoryNames={value!r} is accepted"
        for value in NOT_REPOSITORY_NAMES
        if refusal(t, {"BrokerRoleArn": BROKER_ROLE, "RepositoryNames": value}) is None
    ]


def outputs_name_the_resources(t: Template) -> list[str]:
    """What template.yaml reads from this stack: the issuer role, the admin policy, and the
    domain, owner and repositories it serves."""
    problems = []
    expected = {
        "TokenIssuerRoleArn": {"Fn::GetAtt": ["TokenIssuerRole", "Arn"]},
        "AdminPolicyArn": {"Ref": "AdminPolicy"},
    }
    for name, value in expected.items():
        output = t.get("Outputs", {}).get(name, {})
        if output.get("Value") != value:
            problems.append(f"output {name} is {output.get('Value')}, not {value}")
    for name in (*expected, "ServedDomain", "ServedDomainOwner", "ServedRepositories"):
        if "Condition" in t.get("Outputs", {}).get(name, {}):
            problems.append(f"output {name} exists only under {t['Outputs'][name]['Condition']}")
    for scenario in SCENARIOS:
        stack = scenario.stack(t)
        actual = {
            name: stack.resolve(t.get("Outputs", {}).get(name, {}).get("Value"))
            for name in ("ServedDomain", "ServedDomainOwner", "ServedRepositories")
        }
        served = {
            "ServedDomain": scenario.domain,
            "ServedDomainOwner": scenario.owner,
            "ServedRepositories": ",".join(scenario.repositories),
        }
        if actual != served:
            problems.append(f"{scenario.name}: outputs {actual}, not {served}")
    return problems


CHECKS: list[Check] = [
    issuer_role_trusts_only_the_broker_role,
    issuer_role_sessions_last_at_most_an_hour,
    issuer_role_has_no_managed_or_attached_policies,
    issuer_role_allows_exactly_what_a_token_may_carry,
    issuer_role_bearer_tokens_are_for_codeartifact_and_capped,
    star_resources_only_where_unavoidable,
    no_negations_or_action_wildcards,
    admin_policy_stays_inside_the_domain,
    reader_and_publisher_policies_only_when_asked_for,
    reader_policy_never_publishes,
    publisher_policy_publishes_only_python_packages_of_the_repositories,
    issuer_role_holds_exactly_the_served_repositories,
    a_sixth_repository_fails_the_deployment,
    repositories_must_be_named,
    served_repositories_are_names_never_the_store_or_a_pattern,
    outputs_name_the_resources,
]
# Template defects the lead is to fix (see the check's docstring); strict: the fix fails the
# test until the mark goes.
KNOWN_DEFECTS: dict[Check, str] = {}


@pytest.mark.parametrize(
    "check",
    [
        pytest.param(
            check,
            id=check.__name__,
            marks=[pytest.mark.xfail(strict=True, reason=KNOWN_DEFECTS[check])]
            if check in KNOWN_DEFECTS
            else [],
        )
        for check in CHECKS
    ],
)
def test_the_template_has_the_property(check: Check) -> None:
    assert check(template()) == []


@pytest.mark.parametrize(
    ("overrides", "domain_arn"),
    [
        pytest.param(
            {},
            f"arn:aws:codeartifact:{REGION}:{ACCOUNT}:domain/acme",
            id="owner-empty-means-this-account",
        ),
        pytest.param(
            {"DomainOwner": OTHER_ACCOUNT},
            f"arn:aws:codeartifact:{REGION}:{OTHER_ACCOUNT}:domain/acme",
            id="cross-account-owner",
        ),
    ],
)
def test_domain_owner_picks_the_account_of_every_arn(
    overrides: dict[str, str], domain_arn: str
) -> None:
    t = template()
    assert t["Parameters"]["DomainOwner"]["Default"] == ""
    stack = Stack(t, {"BrokerRoleArn": BROKER_ROLE, **overrides, **BOTH_POLICIES})
    for where, statement in resolved_statements(stack):
        for resource in as_list(statement.get("Resource", [])):
            if resource != "*":
                assert resource.startswith(f"{domain_arn.rsplit(':', 1)[0]}:"), (where, resource)
    assert ("codeartifact:GetAuthorizationToken", domain_arn) in allowed(
        stack, role_policy_documents(t, "TokenIssuerRole")
    )


# --------------------------------------------------------------------------- mutations


def _statement(t: Template, resource: str, sid: str) -> dict[str, Any]:
    """The statement ``sid`` of a policy resource or of TokenIssuerRole's inline policy."""
    props = properties(t, resource)
    document = (
        props["Policies"][0]["PolicyDocument"] if "Policies" in props else props["PolicyDocument"]
    )
    matches: list[dict[str, Any]] = [s for s in document["Statement"] if s.get("Sid") == sid]
    (statement,) = matches
    return statement


def _trust(t: Template) -> dict[str, Any]:
    statement: dict[str, Any] = properties(t, "TokenIssuerRole")["AssumeRolePolicyDocument"][
        "Statement"
    ][0]
    return statement


def _resource(t: Template, resource: str, sid: str, slot: int = 0) -> dict[str, Any]:
    """The ``!Sub [text, {Owner: ..., Name: ...}]`` of a statement's Resource: the Resource
    itself, or the one of repository slot ``slot`` (0-based; slots 2-5 are Fn::If)."""
    value: Any = _statement(t, resource, sid)["Resource"]
    if isinstance(value, list):
        value = value[slot]
        if "Fn::If" in value:
            value = value["Fn::If"][1]
    sub: dict[str, Any] = value
    return sub


def _arn_text(t: Template, resource: str, sid: str, text: str, slot: int = 0) -> None:
    """Rewrite the ARN of a ``!Sub [text, {Owner: ...}]`` resource, keeping its variables."""
    _resource(t, resource, sid, slot)["Fn::Sub"][0] = text


def _owner_is_this_account(t: Template, resource: str, sid: str) -> None:
    _resource(t, resource, sid)["Fn::Sub"][1]["Owner"] = {"Ref": "AWS::AccountId"}


def _unconstrained(t: Template, parameter: str) -> None:
    """No pattern on ``parameter``'s entries and no rule: any value is accepted."""
    t["Parameters"][parameter].pop("AllowedPattern", None)
    t.pop("Rules", None)


def _rename(statement: dict[str, Any], old: str, new: str) -> None:
    statement[new] = statement.pop(old)


ARN = "arn:${AWS::Partition}:codeartifact:${AWS::Region}:${Owner}"
OWNER = {"Fn::If": ["HasDomainOwner", {"Ref": "DomainOwner"}, {"Ref": "AWS::AccountId"}]}


def _unnamed(t: Template, parameter: str) -> None:
    """Neither the RepositoriesAreNamed rule nor a pattern on the entries refuses an empty one."""
    t["Rules"].pop("RepositoriesAreNamed")
    t["Parameters"][parameter].pop("AllowedPattern", None)


MUTATIONS: list[Mutation] = [
    (
        "the account root is trusted too",
        lambda t: properties(t, "TokenIssuerRole")["AssumeRolePolicyDocument"]["Statement"].append(
            {
                "Effect": "Allow",
                "Principal": {
                    "AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
                },
                "Action": "sts:AssumeRole",
            }
        ),
        issuer_role_trusts_only_the_broker_role,
    ),
    (
        "the whole account is trusted instead",
        lambda t: _trust(t).update(Principal={"AWS": {"Ref": "AWS::AccountId"}}),
        issuer_role_trusts_only_the_broker_role,
    ),
    (
        "the broker may also tag sessions",
        lambda t: _trust(t)["Action"].append("sts:TagSession"),
        issuer_role_trusts_only_the_broker_role,
    ),
    (
        "BrokerRoleArn accepts any ARN",
        lambda t: t["Parameters"]["BrokerRoleArn"].update(AllowedPattern=".*"),
        issuer_role_trusts_only_the_broker_role,
    ),
    (
        "BrokerRoleArn has a default",
        lambda t: t["Parameters"]["BrokerRoleArn"].update(Default=BROKER_ROLE),
        issuer_role_trusts_only_the_broker_role,
    ),
    (
        "twelve-hour issuer sessions",
        lambda t: properties(t, "TokenIssuerRole").update(MaxSessionDuration=43200),
        issuer_role_sessions_last_at_most_an_hour,
    ),
    (
        "AdministratorAccess on the issuer role",
        lambda t: properties(t, "TokenIssuerRole").update(
            ManagedPolicyArns=["arn:aws:iam::aws:policy/AdministratorAccess"]
        ),
        issuer_role_has_no_managed_or_attached_policies,
    ),
    (
        "admin policy attached to the issuer role",
        lambda t: properties(t, "AdminPolicy").update(Roles=[{"Ref": "TokenIssuerRole"}]),
        issuer_role_has_no_managed_or_attached_policies,
    ),
    (
        "tokens for any domain",
        lambda t: _arn_text(t, "TokenIssuerRole", "GetAuthorizationToken", f"{ARN}:domain/*"),
        issuer_role_allows_exactly_what_a_token_may_carry,
    ),
    (
        "issuer reads every repository",
        lambda t: _arn_text(
            t, "TokenIssuerRole", "ReadRepository", f"{ARN}:repository/${{DomainName}}/*"
        ),
        issuer_role_allows_exactly_what_a_token_may_carry,
    ),
    (
        "issuer publishes any format",
        lambda t: _arn_text(
            t,
            "TokenIssuerRole",
            "PublishPythonPackages",
            f"{ARN}:package/${{DomainName}}/${{Name}}/*",
        ),
        issuer_role_allows_exactly_what_a_token_may_carry,
    ),
    (
        "issuer may delete package versions",
        lambda t: _statement(t, "TokenIssuerRole", "PublishPythonPackages")["Action"].append(
            "codeartifact:DeletePackageVersions"
        ),
        issuer_role_allows_exactly_what_a_token_may_carry,
    ),
    (
        "issuer ignores DomainOwner",
        lambda t: _owner_is_this_account(t, "TokenIssuerRole", "GetAuthorizationToken"),
        issuer_role_allows_exactly_what_a_token_may_carry,
    ),
    (
        "bearer tokens for any service",
        lambda t: _statement(t, "TokenIssuerRole", "ServiceBearerToken")["Condition"].pop(
            "StringEquals"
        ),
        issuer_role_bearer_tokens_are_for_codeartifact_and_capped,
    ),
    (
        "bearer tokens without a duration cap",
        lambda t: _statement(t, "TokenIssuerRole", "ServiceBearerToken")["Condition"].pop(
            "NumericLessThanEquals"
        ),
        issuer_role_bearer_tokens_are_for_codeartifact_and_capped,
    ),
    (
        "bearer tokens for a day",
        lambda t: _statement(t, "TokenIssuerRole", "ServiceBearerToken")["Condition"][
            "NumericLessThanEquals"
        ].update({"sts:DurationSeconds": 86400}),
        issuer_role_bearer_tokens_are_for_codeartifact_and_capped,
    ),
    (
        "issuer reads any repository anywhere",
        lambda t: _statement(t, "TokenIssuerRole", "ReadRepository").update(Resource="*"),
        star_resources_only_where_unavoidable,
    ),
    (
        "admin package actions on *",
        lambda t: _statement(t, "AdminPolicy", "Packages").update(Resource="*"),
        star_resources_only_where_unavoidable,
    ),
    (
        "admin describes any domain",
        lambda t: _statement(t, "AdminPolicy", "ListAcrossTheAccount")["Action"].append(
            "codeartifact:DescribeDomain"
        ),
        star_resources_only_where_unavoidable,
    ),
    (
        "reader bearer tokens for any service",
        lambda t: _statement(t, "ReaderPolicy", "ServiceBearerToken").pop("Condition"),
        star_resources_only_where_unavoidable,
    ),
    (
        "publisher domain in any account",
        lambda t: _statement(t, "PublisherPolicy", "Token").update(
            Resource={"Fn::Sub": ARN.replace("${Owner}", "*") + ":domain/${DomainName}"}
        ),
        star_resources_only_where_unavoidable,
    ),
    (
        "NotAction in the admin policy",
        lambda t: _rename(_statement(t, "AdminPolicy", "Domain"), "Action", "NotAction"),
        no_negations_or_action_wildcards,
    ),
    (
        "NotResource in the publisher policy",
        lambda t: _rename(_statement(t, "PublisherPolicy", "Publish"), "Resource", "NotResource"),
        no_negations_or_action_wildcards,
    ),
    (
        "wildcard action in the reader policy",
        lambda t: _statement(t, "ReaderPolicy", "Read")["Action"].append("codeartifact:Describe*"),
        no_negations_or_action_wildcards,
    ),
    (
        "wildcard action in the issuer role",
        lambda t: _statement(t, "TokenIssuerRole", "ReadRepository")["Action"].append(
            "codeartifact:Get*"
        ),
        no_negations_or_action_wildcards,
    ),
    (
        "admin may delete the domain",
        lambda t: _statement(t, "AdminPolicy", "Domain")["Action"].append(
            "codeartifact:DeleteDomain"
        ),
        admin_policy_stays_inside_the_domain,
    ),
    (
        "admin may do anything in CodeArtifact",
        lambda t: _statement(t, "AdminPolicy", "Packages").update(Action=["codeartifact:*"]),
        admin_policy_stays_inside_the_domain,
    ),
    (
        "admin may manage IAM",
        lambda t: properties(t, "AdminPolicy")["PolicyDocument"]["Statement"].append(
            {
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": {"Fn::GetAtt": ["TokenIssuerRole", "Arn"]},
            }
        ),
        admin_policy_stays_inside_the_domain,
    ),
    (
        "admin repositories in any domain",
        lambda t: _arn_text(t, "AdminPolicy", "Repositories", f"{ARN}:repository/*"),
        admin_policy_stays_inside_the_domain,
    ),
    (
        "admin of domains sharing a prefix",
        lambda t: _arn_text(t, "AdminPolicy", "Domain", f"{ARN}:domain/${{DomainName}}*"),
        admin_policy_stays_inside_the_domain,
    ),
    (
        "admin package groups in this account, not the owner's",
        lambda t: _owner_is_this_account(t, "AdminPolicy", "PackageGroups"),
        admin_policy_stays_inside_the_domain,
    ),
    (
        "reader policy always created",
        lambda t: t["Resources"]["ReaderPolicy"].pop("Condition"),
        reader_and_publisher_policies_only_when_asked_for,
    ),
    (
        "publisher policy created with the reader",
        lambda t: t["Resources"]["PublisherPolicy"].update(Condition="WantsReader"),
        reader_and_publisher_policies_only_when_asked_for,
    ),
    (
        "publisher policy by default",
        lambda t: t["Parameters"]["CreatePublisherPolicy"].update(Default="true"),
        reader_and_publisher_policies_only_when_asked_for,
    ),
    (
        "reader output without its policy",
        lambda t: t["Outputs"]["ReaderPolicyArn"].pop("Condition"),
        reader_and_publisher_policies_only_when_asked_for,
    ),
    (
        "reader may publish",
        lambda t: _statement(t, "ReaderPolicy", "Read")["Action"].append(
            "codeartifact:PublishPackageVersion"
        ),
        reader_policy_never_publishes,
    ),
    (
        "reader reads every repository",
        lambda t: _arn_text(t, "ReaderPolicy", "Read", f"{ARN}:repository/${{DomainName}}/*"),
        reader_policy_never_publishes,
    ),
    (
        "publisher publishes any format",
        lambda t: _arn_text(
            t, "PublisherPolicy", "Publish", f"{ARN}:package/${{DomainName}}/${{Name}}/*"
        ),
        publisher_policy_publishes_only_python_packages_of_the_repositories,
    ),
    (
        "publisher publishes to every repository",
        lambda t: _arn_text(
            t, "PublisherPolicy", "Publish", f"{ARN}:package/${{DomainName}}/*/pypi//*"
        ),
        publisher_policy_publishes_only_python_packages_of_the_repositories,
    ),
    (
        "publisher may delete packages",
        lambda t: _statement(t, "PublisherPolicy", "Publish")["Action"].append(
            "codeartifact:DeletePackage"
        ),
        publisher_policy_publishes_only_python_packages_of_the_repositories,
    ),
    (
        "issuer's third slot reads the second repository",
        lambda t: _resource(t, "TokenIssuerRole", "ReadRepository", 2)["Fn::Sub"][1]["Name"][
            "Fn::Select"
        ].__setitem__(0, 1),
        issuer_role_holds_exactly_the_served_repositories,
    ),
    (
        "issuer cannot publish to the fifth repository",
        lambda t: _statement(t, "TokenIssuerRole", "PublishPythonPackages")["Resource"].pop(),
        issuer_role_holds_exactly_the_served_repositories,
    ),
    (
        "issuer reads the store too",
        lambda t: _statement(t, "TokenIssuerRole", "ReadRepository")["Resource"].append(
            {"Fn::Sub": [f"{ARN}:repository/${{DomainName}}/{STORE}", {"Owner": OWNER}]}
        ),
        issuer_role_holds_exactly_the_served_repositories,
    ),
    (
        "issuer publishes to the second repository, or any other",
        lambda t: _arn_text(
            t,
            "TokenIssuerRole",
            "PublishPythonPackages",
            f"{ARN}:package/${{DomainName}}/${{Name}}*/pypi//*",
            slot=1,
        ),
        issuer_role_holds_exactly_the_served_repositories,
    ),
    (
        "a sixth repository silently unserved",
        lambda t: t["Resources"].pop("TooManyRepositories"),
        a_sixth_repository_fails_the_deployment,
    ),
    (
        "five repositories fail too",
        lambda t: t["Resources"]["TooManyRepositories"].update(Condition="HasRepository5"),
        a_sixth_repository_fails_the_deployment,
    ),
    (
        "empty repository entries accepted",
        lambda t: _unnamed(t, "RepositoryNames"),
        repositories_must_be_named,
    ),
    (
        "repository names unconstrained",
        lambda t: _unconstrained(t, "RepositoryNames"),
        served_repositories_are_names_never_the_store_or_a_pattern,
    ),
    (
        "owner output empty for this account",
        lambda t: t["Outputs"]["ServedDomainOwner"].update(Value={"Ref": "DomainOwner"}),
        outputs_name_the_resources,
    ),
    (
        "repositories output only the default",
        lambda t: t["Outputs"]["ServedRepositories"].update(
            Value={"Fn::Select": [0, {"Ref": "RepositoryNames"}]}
        ),
        outputs_name_the_resources,
    ),
    (
        "issuer role output names the broker's own role",
        lambda t: t["Outputs"]["TokenIssuerRoleArn"].update(Value={"Ref": "BrokerRoleArn"}),
        outputs_name_the_resources,
    ),
    (
        "admin policy output only with a reader",
        lambda t: t["Outputs"]["AdminPolicyArn"].update(Condition="WantsReader"),
        outputs_name_the_resources,
    ),
]


@pytest.mark.parametrize(("mutate", "check"), mutation_params(MUTATIONS))
def test_each_check_catches_the_mutation_it_guards_against(
    mutate: Callable[[Template], None], check: Check
) -> None:
    mutated = template()
    mutate(mutated)
    assert check(mutated) != []


def test_every_check_has_a_mutation() -> None:
    assert {check for _, _, check in MUTATIONS} == set(CHECKS)
