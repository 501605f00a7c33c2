"""Security properties of infra/codeartifact.yaml, each a check that returns its violations.

Every check runs twice: on the template (no violations) and on a copy mutated to break exactly
the property it guards (the violation is found), so no check can pass vacuously.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devstack import cfn_yaml
from infra.package_groups import pattern_error
from tests.infra.cfn_eval import Check, Mutation, Stack, Template, mutation_params, properties

TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "codeartifact.yaml"


def load() -> Template:
    return cfn_yaml.load(TEMPLATE)


def repositories(t: Template) -> dict[str, dict[str, Any]]:
    return {
        name: r.get("Properties", {})
        for name, r in t["Resources"].items()
        if isinstance(r, dict) and r.get("Type") == "AWS::CodeArtifact::Repository"
    }


def package_groups(t: Template, prefixes: list[str]) -> dict[str, dict[str, Any]]:
    """The package groups the template creates for ``InternalPrefixes=prefixes``."""
    stack = Stack(t, {"InternalPrefixes": ",".join(prefixes)})
    groups: dict[str, dict[str, Any]] = {}
    for name, resource in t["Resources"].items():
        if resource.get("Type") != "AWS::CodeArtifact::PackageGroup":
            continue
        condition = resource.get("Condition")
        if condition and not stack.condition(condition):
            continue
        props = dict(resource["Properties"])
        props["Pattern"] = stack.resolve(props["Pattern"])
        groups[name] = props
    return groups


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


def private_upstream_is_the_store(t: Template) -> list[str]:
    upstreams = repositories(t).get("PrivateRepository", {}).get("Upstreams")
    expected = [{"Fn::GetAtt": ["StoreRepository", "Name"]}]
    return [] if upstreams == expected else [f"PrivateRepository upstreams are {upstreams}"]


PREFIX_LISTS = [["acme"], ["acme", "acme-tools"], ["a1", "b2", "c3", "d4", "e5"]]


def every_prefix_is_guarded(t: Template) -> list[str]:
    problems = []
    for prefixes in [[*default_prefixes(t)], *PREFIX_LISTS]:
        groups = package_groups(t, prefixes)
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
            if publish.get("RestrictionMode") != "ALLOW_SPECIFIC_REPOSITORIES" or publish.get(
                "Repositories"
            ) != [{"Fn::GetAtt": ["PrivateRepository", "Name"]}]:
                problems.append(f"{prefix}: publishing is not limited to the private repository")
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
    for resource in ("StoreRepository",):
        if "PermissionsPolicyDocument" in t["Resources"][resource]["Properties"]:
            problems.append(f"{resource} must not be shared")
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
    return [
        f"{name} would be deleted with the stack or on replacement"
        for name in ("Domain", "PrivateRepository")
        if t["Resources"][name].get("DeletionPolicy") != "Retain"
        or t["Resources"][name].get("UpdateReplacePolicy") != "Retain"
    ]


CHECKS: list[Check] = [
    published_packages_survive_the_stack,
    external_connection_only_on_the_store,
    private_upstream_is_the_store,
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


def _share_policy_statement(t: Template, resource: str, index: int) -> dict[str, Any]:
    policy = properties(t, resource)["PermissionsPolicyDocument"]["Fn::If"][1]
    statement: dict[str, Any] = policy["Statement"][index]["Fn::If"][1]
    return statement


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
        private_upstream_is_the_store,
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
        lambda t: t.pop("Rules"),
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
