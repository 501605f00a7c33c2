"""Templates evaluated for sample parameter values, and helpers over IAM policies.

Tests of template.yaml and infra/*.yaml evaluate a template with :mod:`devstack.cfn` (the same
evaluator the devstack deploys with) for sample parameter values, validated against the
parameters' constraints as CloudFormation would, so that ARNs are compared as the strings
CloudFormation would produce.  Resources stay symbolic (``<Name>``, ``<Name.Attribute>``).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devstack import cfn, cfn_yaml
from devstack.cfn import NO_VALUE as NO_VALUE
from devstack.cfn import parameter_error as parameter_error

ROOT = Path(__file__).resolve().parents[2]

Template = dict[str, Any]
# A security check returns its violations; a mutation breaks exactly the property it guards.
Check = Callable[[Template], list[str]]
Mutation = tuple[str, Callable[[Template], None], Check]

ACCOUNT = "111122223333"
OTHER_ACCOUNT = "444455556666"
REGION = "us-east-1"
PSEUDO_PARAMETERS = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Partition": "aws",
    "AWS::Region": REGION,
    "AWS::StackName": "cabroker",
    "AWS::URLSuffix": "amazonaws.com",
}
POLICY_RESOURCE_TYPES = ("AWS::IAM::Policy", "AWS::IAM::RolePolicy", "AWS::IAM::ManagedPolicy")


@functools.cache
def _load(path: Path) -> Template:
    return cfn_yaml.load(path)


def load(path: Path) -> Template:
    """A fresh copy of the template at ``path`` (parsed once per session), free to mutate."""
    return copy.deepcopy(_load(path))


@dataclass(frozen=True)
class Stack(cfn.Stack):
    """:class:`devstack.cfn.Stack` in the tests' sample account and region."""

    pseudo: Mapping[str, str] = field(default_factory=lambda: dict(PSEUDO_PARAMETERS))


# --- helpers over templates and policies ----------------------------------------------------------


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def resources_of_type(template: Mapping[str, Any], kind: str) -> dict[str, Any]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def properties(template: Mapping[str, Any], name: str) -> dict[str, Any]:
    props: dict[str, Any] = template["Resources"][name]["Properties"]
    return props


def statements(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    return as_list(document["Statement"])


def attached_policy_documents(template: Mapping[str, Any], role: str) -> list[dict[str, Any]]:
    """Policy documents of policy resources (not the role's own) that apply to ``role``."""
    reference = {"Ref": role}
    documents = []
    for kind in POLICY_RESOURCE_TYPES:
        for resource in resources_of_type(template, kind).values():
            props = resource["Properties"]
            if props.get("RoleName") == reference or reference in props.get("Roles", []):
                documents.append(props["PolicyDocument"])
    return documents


def role_policy_documents(template: Mapping[str, Any], role: str) -> list[dict[str, Any]]:
    """Every permissions policy document that applies to ``role``: inline and attached."""
    inline = [p["PolicyDocument"] for p in properties(template, role).get("Policies", [])]
    return inline + attached_policy_documents(template, role)


def all_policy_documents(template: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, document) for every trust, inline and policy-resource document."""
    for name, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Role":
            yield f"{name} trust", props["AssumeRolePolicyDocument"]
            for policy in props.get("Policies", []):
                yield f"{name}/{policy.get('PolicyName')}", policy["PolicyDocument"]
        elif resource["Type"] in POLICY_RESOURCE_TYPES:
            yield name, props["PolicyDocument"]


def allowed(stack: Stack, documents: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """The (action, resource) pairs the Allow statements of ``documents`` grant, evaluated."""
    pairs = set()
    for statement in (s for document in documents for s in statements(document)):
        if statement.get("Effect") != "Allow":
            continue
        for action in as_list(statement.get("Action", [])):
            for resource in as_list(statement.get("Resource", [])):
                pairs.add((str(action), str(stack.resolve(resource))))
    return pairs


def mutation_params(mutations: Sequence[Mutation]) -> list[Any]:
    """One pytest case per mutation, named by it; a repeated name is an error at collection."""
    names = [name for name, _, _ in mutations]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"mutation names are not unique: {repeated}")
    return [pytest.param(mutate, check, id=name) for name, mutate, check in mutations]
