"""Security properties of infra/codeartifact.yaml, each a check that returns its violations.

The stack creates the estate when template.yaml's Estate is Create: a domain, the pypi-store
repository (the only one with an external connection), one to five private repositories, each
with the store as its upstream and kept when the stack is deleted or the repository replaced
(a sixth fails the deployment, an empty name is refused), and one package group per internal
prefix that blocks public packages and accepts publishing in the private repositories only.
Only the first (default) private repository and the domain are shared, and only with the
accounts named.  Templates are evaluated for sample values (tests/infra/cfn_eval.py).

Every check runs twice: on the template (no violations) and on a copy mutated to break exactly
the property it guards (the violation is found), so no check can pass vacuously.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devstack import cfn_yaml
from infra.package_groups import pattern_error
from tests.infra.cfn_eval import (
    Check,
    Deployment,
    DeploymentError,
    Mutation,
    Stack,
    Template,
    deploy,
    is_trap,
    mutation_params,
    properties,
    refusal,
)

TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "codeartifact.yaml"


def load() -> Template:
    return cfn_yaml.load(TEMPLATE)


def repositories(t: Template) -> dict[str, dict[str, Any]]:
    return {
        name: r.get("Properties", {})
        for name, r in t["Resources"].items()
        if isinstance(r, dict) and r.get("Type") == "AWS::CodeArtifact::Repository"
    }


STORE = "StoreRepository"
REPOSITORY_LISTS = [
    ["internal"],
    ["internal", "restricted"],
    ["a.b", "team_x", "lib-3", "R4", "z9.v_1"],
]


def deployed(t: Template, **overrides: str) -> Deployment:
    """The stack deployed alone (tests/infra/cfn_eval.py): created resources have sample
    attributes, so ``!GetAtt PrivateRepository2.Name`` is the repository's name."""
    return deploy(t, overrides, location=TEMPLATE)


def private_repositories(stack: Stack) -> dict[str, dict[str, Any]]:
    """The private repositories ``stack`` creates (every repository but the store), in order."""
    return {
        name: resource
        for name, resource in stack.resources().items()
        if resource["Type"] == "AWS::CodeArtifact::Repository" and name != STORE
    }


def created_names(stack: Stack) -> list[str]:
    return [
        str(stack.resolve(resource["Properties"].get("RepositoryName")))
        for resource in private_repositories(stack).values()
    ]


def package_groups(t: Template, prefixes: list[str], names: list[str]) -> dict[str, dict[str, Any]]:
    """The package groups the template creates for these prefixes and private repositories,
    evaluated (a repository's name is the one it is created with)."""
    stack = deployed(
        t, InternalPrefixes=",".join(prefixes), PrivateRepositoryNames=",".join(names)
    ).root
    return {
        name: stack.resolve(resource["Properties"])
        for name, resource in stack.resources().items()
        if resource["Type"] == "AWS::CodeArtifact::PackageGroup"
    }


def too_many_prefixes_fails(t: Template, prefixes: list[str]) -> bool:
    """Whether the deployment is made to fail (the AllowedPattern '^$' trap) for ``prefixes``."""
    trap = t["Resources"].get("TooManyInternalPrefixes", {})
    condition = trap.get("Condition")
    if not condition or trap.get("Properties", {}).get("AllowedPattern") != "^$":
        return False
    return Stack(t, {"InternalPrefixes": ",".join(prefixes)}).condition(condition)


def default_prefixes(t: Template) -> list[str]:
    return [p.strip() for p in str(t["Parameters"]["InternalPrefixes"]["Default"]).split(",")]


# --------------------------------------------------------------------------- the checks


def external_connection_only_on_the_store(t: Template) -> list[str]:
    problems = []
    for name, props in repositories(t).items():
        connections = props.get("ExternalConnections")
        if name == "StoreRepository":
            if connections != ["public:pypi"]:
                problems.append(f"{name} must hold exactly public:pypi, has {connections}")
        elif connections:
            problems.append(f"{name} has an external connection {connections}")
    return problems


def private_upstreams_are_the_store(t: Template) -> list[str]:
    """Every private repository created reaches public packages through the store only."""
    problems = []
    expected = [{"Fn::GetAtt": [STORE, "Name"]}]
    if repositories(t).get(STORE, {}).get("Upstreams"):
        problems.append("the store has upstreams")
    for names in REPOSITORY_LISTS:
        stack = Stack(t, {"PrivateRepositoryNames": ",".join(names)})
        created = private_repositories(stack)
        if len(created) != len(names):
            problems.append(f"{names}: {len(created)} private repositories created")
        for name, resource in created.items():
            upstreams = resource["Properties"].get("Upstreams")
            if upstreams != expected:
                problems.append(f"{names}: {name} upstreams are {upstreams}")
    return problems


def every_named_repository_is_created(t: Template) -> list[str]:
    """PrivateRepositoryNames=a,b,...: exactly those repositories, in order (the first is the
    default), and the outputs name them."""
    problems = []
    for names in REPOSITORY_LISTS:
        try:
            deployment = deployed(t, PrivateRepositoryNames=",".join(names))
        except (DeploymentError, IndexError, KeyError) as error:
            problems.append(f"{names}: cannot be deployed: {error!r}")
            continue
        created = created_names(deployment.root)
        if created != names:
            problems.append(f"{names}: creates {created}")
        outputs = deployment.outputs()
        expected = {"PrivateRepositoryName": names[0], "PrivateRepositories": ",".join(names)}
        actual = {name: outputs.get(name) for name in expected}
        if actual != expected:
            problems.append(f"{names}: outputs {actual}, not {expected}")
    return problems


def a_sixth_repository_fails_the_deployment(t: Template) -> list[str]:
    """Five private repositories deploy; a sixth, which no slot would create nor package group
    accept, makes the TooManyRepositories trap fail the deployment."""
    problems = []
    five = REPOSITORY_LISTS[-1]
    for names, fails in ((five, False), ([*five, "six"], True)):
        stack = Stack(t, {"PrivateRepositoryNames": ",".join(names)})
        traps = sorted(name for name, r in stack.resources().items() if is_trap(r))
        if bool(traps) != fails or (fails and "TooManyRepositories" not in traps):
            problems.append(f"{len(names)} repositories: traps {traps}")
    return problems


def repositories_must_be_named(t: Template) -> list[str]:
    problems = []
    for value, accepted in (
        ("", False),
        ("internal,", False),
        ("a1,,b2", False),
        ("internal", True),
    ):
        refused = refusal(t, {"PrivateRepositoryNames": value})
        if (refused is None) != accepted:
            problems.append(f"PrivateRepositoryNames={value!r}: {refused or 'accepted'}")
    return problems


PREFIX_LISTS = [["acme"], ["acme", "acme-tools"], ["a1", "b2", "c3", "d4", "e5"]]


def every_prefix_is_guarded(t: Template) -> list[str]:
    problems = []
    prefix_lists = [[*default_prefixes(t)], *PREFIX_LISTS]
    for prefixes, names in itertools.product(prefix_lists, REPOSITORY_LISTS):
        groups = package_groups(t, prefixes, names)
        if len(groups) != len(prefixes):
            problems.append(f"{prefixes}: {len(groups)} groups for {len(prefixes)} prefixes")
        patterns = {props.get("Pattern"): props for props in groups.values()}
        for prefix in prefixes:
            props = patterns.get(f"/pypi//{prefix}~")
            if props is None:
                problems.append(f"no group for prefix {prefix!r}")
                continue
            reason = pattern_error(props["Pattern"])
            if reason:
                problems.append(f"{props['Pattern']}: {reason}")
            restrictions = props.get("OriginConfiguration", {}).get("Restrictions", {})
            if restrictions.get("ExternalUpstream", {}).get("RestrictionMode") != "BLOCK":
                problems.append(f"{prefix}: ExternalUpstream is not BLOCK")
            publish = restrictions.get("Publish", {})
            if publish.get("RestrictionMode") != "ALLOW_SPECIFIC_REPOSITORIES":
                problems.append(f"{prefix}: publishing is {publish.get('RestrictionMode')}")
            if publish.get("Repositories") != names:
                problems.append(
                    f"{prefix}: publishing in {publish.get('Repositories')}, not exactly {names}"
                )
        if too_many_prefixes_fails(t, prefixes):
            problems.append(f"{prefixes}: a valid list would fail the deployment")
    if not too_many_prefixes_fails(t, ["a", "b", "c", "d", "e", "f"]):
        problems.append("a sixth prefix would be silently unguarded instead of failing")
    rule = t.get("Rules", {}).get("PrefixesAreNamed", {}).get("Assertions", [{}])[0]
    if rule.get("Assert") != {"Fn::Not": [{"Fn::Contains": [{"Ref": "InternalPrefixes"}, ""]}]}:
        problems.append("no rule refuses an empty prefix list or an empty prefix")
    return problems


def nothing_shared_without_named_accounts(t: Template) -> list[str]:
    problems = []
    conditions = t["Conditions"]
    for name in ("HasReaders", "HasPublishers"):
        parameter = "ReaderAccounts" if name == "HasReaders" else "PublisherAccounts"
        expected = {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": parameter}]}, ""]}]}
        if conditions.get(name) != expected:
            problems.append(f"condition {name} does not test {parameter} for emptiness")
        if t["Parameters"][parameter].get("Default") != "":
            problems.append(f"{parameter} names accounts by default")
    for resource in ("Domain", "PrivateRepository"):
        policy = t["Resources"][resource]["Properties"].get("PermissionsPolicyDocument")
        if not (
            isinstance(policy, dict)
            and policy.get("Fn::If", [None])[0] == "SharesWithAccounts"
            and policy["Fn::If"][2] == {"Ref": "AWS::NoValue"}
        ):
            problems.append(f"{resource} has a permissions policy even with no accounts named")
    for resource in repositories(t):
        if resource in ("PrivateRepository",):
            continue
        if "PermissionsPolicyDocument" in t["Resources"][resource]["Properties"]:
            problems.append(f"{resource} must not be shared (only the default repository is)")
    return problems


def shared_principals_are_the_named_accounts(t: Template) -> list[str]:
    problems = []
    for resource in ("Domain", "PrivateRepository"):
        policy = t["Resources"][resource]["Properties"]["PermissionsPolicyDocument"]["Fn::If"][1]
        for wrapped in policy["Statement"]:
            condition, statement, _ = wrapped["Fn::If"]
            parameter = "ReaderAccounts" if condition == "HasReaders" else "PublisherAccounts"
            if statement.get("Principal") != {"AWS": {"Ref": parameter}}:
                problems.append(f"{resource}/{statement.get('Sid')}: principal is not {parameter}")
            actions = set(statement["Action"])
            if parameter == "ReaderAccounts" and actions & {
                "codeartifact:PublishPackageVersion",
                "codeartifact:PutPackageMetadata",
            }:
                problems.append(f"{resource}/{statement.get('Sid')}: readers may publish")
            if any("*" in action for action in actions):
                problems.append(f"{resource}/{statement.get('Sid')}: wildcard action")
    return problems


def published_packages_survive_the_stack(t: Template) -> list[str]:
    """The domain and every private repository slot are kept when the stack is deleted or the
    resource replaced (the store, a cache of public PyPI, may go)."""
    kept = ["Domain", *(name for name in repositories(t) if name != STORE)]
    if len(kept) < 1 + len(REPOSITORY_LISTS[-1]):
        return [f"only {kept} are private repositories or the domain"]
    return [
        f"{name} would be deleted with the stack or on replacement"
        for name in kept
        # RetainExceptOnCreate: kept, except when the stack's own creation rolls back
        if t["Resources"][name].get("DeletionPolicy") not in ("Retain", "RetainExceptOnCreate")
        or t["Resources"][name].get("UpdateReplacePolicy") != "Retain"
    ]


CHECKS: list[Check] = [
    published_packages_survive_the_stack,
    external_connection_only_on_the_store,
    private_upstreams_are_the_store,
    every_named_repository_is_created,
    a_sixth_repository_fails_the_deployment,
    repositories_must_be_named,
    every_prefix_is_guarded,
    nothing_shared_without_named_accounts,
    shared_principals_are_the_named_accounts,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_the_template_has_the_property(check: Check) -> None:
    assert check(load()) == []


# --------------------------------------------------------------------------- mutations


def _group(t: Template, number: int = 3) -> dict[str, Any]:
    props: dict[str, Any] = t["Resources"][f"InternalGroup{number}"]["Properties"]
    return props


def _publish(t: Template, number: int) -> dict[str, Any]:
    publish: dict[str, Any] = _group(t, number)["OriginConfiguration"]["Restrictions"]["Publish"]
    return publish


def _share_policy_statement(t: Template, resource: str, index: int) -> dict[str, Any]:
    policy = properties(t, resource)["PermissionsPolicyDocument"]["Fn::If"][1]
    statement: dict[str, Any] = policy["Statement"][index]["Fn::If"][1]
    return statement


def _unnamed(t: Template, parameter: str) -> None:
    """Neither the RepositoriesAreNamed rule nor a pattern on the entries refuses an empty one."""
    t["Rules"].pop("RepositoriesAreNamed")
    t["Parameters"][parameter].pop("AllowedPattern", None)


MUTATIONS: list[Mutation] = [
    (
        "private repository deleted with the stack",
        lambda t: t["Resources"]["PrivateRepository"].pop("DeletionPolicy"),
        published_packages_survive_the_stack,
    ),
    (
        "domain replaced without keeping the old one",
        lambda t: t["Resources"]["Domain"].pop("UpdateReplacePolicy"),
        published_packages_survive_the_stack,
    ),
    (
        "external connection on the private repository",
        lambda t: properties(t, "PrivateRepository").update(ExternalConnections=["public:pypi"]),
        external_connection_only_on_the_store,
    ),
    (
        "store without the connection",
        lambda t: properties(t, "StoreRepository").pop("ExternalConnections"),
        external_connection_only_on_the_store,
    ),
    (
        "private repository without upstream",
        lambda t: properties(t, "PrivateRepository").pop("Upstreams"),
        private_upstreams_are_the_store,
    ),
    (
        "third repository downstream of the first",
        lambda t: properties(t, "PrivateRepository3").update(
            Upstreams=[{"Fn::GetAtt": ["PrivateRepository", "Name"]}]
        ),
        private_upstreams_are_the_store,
    ),
    (
        "fourth repository replaced without keeping the old one",
        lambda t: t["Resources"]["PrivateRepository4"].pop("UpdateReplacePolicy"),
        published_packages_survive_the_stack,
    ),
    (
        "a slot repeats the entry before it",
        lambda t: properties(t, "PrivateRepository3")["RepositoryName"]["Fn::Select"].__setitem__(
            0, 1
        ),
        every_named_repository_is_created,
    ),
    (
        "fifth repository slot missing",
        lambda t: t["Resources"].pop("PrivateRepository5"),
        every_named_repository_is_created,
    ),
    (
        "repositories output only the default",
        lambda t: t["Outputs"]["PrivateRepositories"].update(
            Value={"Fn::GetAtt": ["PrivateRepository", "Name"]}
        ),
        every_named_repository_is_created,
    ),
    (
        "sixth repository silently ignored",
        lambda t: t["Resources"].pop("TooManyRepositories"),
        a_sixth_repository_fails_the_deployment,
    ),
    (
        "five repositories fail too",
        lambda t: t["Resources"]["TooManyRepositories"].update(Condition="HasRepository5"),
        a_sixth_repository_fails_the_deployment,
    ),
    (
        "empty repository names allowed",
        lambda t: _unnamed(t, "PrivateRepositoryNames"),
        repositories_must_be_named,
    ),
    (
        "publishing not accepted in the fifth repository",
        lambda t: _publish(t, 2)["Repositories"].pop(),
        every_prefix_is_guarded,
    ),
    (
        "publishing accepted in the store",
        lambda t: _publish(t, 4)["Repositories"].append({"Fn::GetAtt": [STORE, "Name"]}),
        every_prefix_is_guarded,
    ),
    (
        "a second repository shared",
        lambda t: properties(t, "PrivateRepository2").update(
            PermissionsPolicyDocument=properties(t, "PrivateRepository")[
                "PermissionsPolicyDocument"
            ]
        ),
        nothing_shared_without_named_accounts,
    ),
    (
        "groups allow public packages",
        lambda t: _group(t)["OriginConfiguration"]["Restrictions"]["ExternalUpstream"].update(
            RestrictionMode="ALLOW"
        ),
        every_prefix_is_guarded,
    ),
    (
        "publishing allowed anywhere",
        lambda t: _group(t)["OriginConfiguration"]["Restrictions"]["Publish"].update(
            RestrictionMode="ALLOW"
        ),
        every_prefix_is_guarded,
    ),
    (
        "pattern is an exact name",
        lambda t: _group(t)["Pattern"]["Fn::Sub"].__setitem__(0, "/pypi//${Prefix}$"),
        every_prefix_is_guarded,
    ),
    (
        "pattern with a namespace",
        lambda t: _group(t, 1)["Pattern"]["Fn::Sub"].__setitem__(0, "/pypi/${Prefix}~"),
        every_prefix_is_guarded,
    ),
    (
        "a slot reads the wrong entry",
        lambda t: _group(t, 2)["Pattern"]["Fn::Sub"][1]["Prefix"]["Fn::Select"].__setitem__(0, 0),
        every_prefix_is_guarded,
    ),
    (
        "fifth slot missing",
        lambda t: t["Resources"].pop("InternalGroup5"),
        every_prefix_is_guarded,
    ),
    (
        "sixth prefix silently ignored",
        lambda t: t["Resources"].pop("TooManyInternalPrefixes"),
        every_prefix_is_guarded,
    ),
    (
        "empty prefixes allowed",
        lambda t: t["Rules"].pop("PrefixesAreNamed"),
        every_prefix_is_guarded,
    ),
    (
        "domain always shared",
        lambda t: properties(t, "Domain").update(
            PermissionsPolicyDocument=properties(t, "Domain")["PermissionsPolicyDocument"][
                "Fn::If"
            ][1]
        ),
        nothing_shared_without_named_accounts,
    ),
    (
        "accounts named by default",
        lambda t: t["Parameters"]["ReaderAccounts"].update(Default="444455556666"),
        nothing_shared_without_named_accounts,
    ),
    (
        "readers may publish",
        lambda t: _share_policy_statement(t, "PrivateRepository", 0)["Action"].append(
            "codeartifact:PublishPackageVersion"
        ),
        shared_principals_are_the_named_accounts,
    ),
    (
        "shared with everyone",
        lambda t: _share_policy_statement(t, "PrivateRepository", 1).update(Principal={"AWS": "*"}),
        shared_principals_are_the_named_accounts,
    ),
]


@pytest.mark.parametrize(("mutate", "check"), mutation_params(MUTATIONS))
def test_each_check_catches_the_mutation_it_guards_against(
    mutate: Callable[[Template], None], check: Check
) -> None:
    template = load()
    mutate(template)
    assert check(template) != []


def test_every_check_has_a_mutation() -> None:
    assert {check for _, _, check in MUTATIONS} == set(CHECKS)
