"""A small evaluator of CloudFormation intrinsic functions, and helpers over IAM policies.

Tests of template.yaml and infra/iam.yaml evaluate a template for sample parameter values
(validated against the parameters' constraints, as CloudFormation would) so that ARNs are
compared as the strings CloudFormation would produce.  What only exists once deployed stays
symbolic: ``Ref`` to a resource is ``<Name>`` (an SSM parameter is its ``Name``, as in
CloudFormation) and ``Fn::GetAtt`` is ``<Name.Attribute>``, so a nested stack's output reads
``<Iam.Outputs.TokenIssuerRoleArn>``.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.infra import cfn_yaml

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
SUB_VARIABLE = re.compile(r"\$\{(!?)([^}]*)\}")


class _NoValue:
    """``Ref AWS::NoValue``: dropped from the list or mapping that holds it."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


@functools.cache
def _load(path: Path) -> Template:
    return cfn_yaml.load(path)


def load(path: Path) -> Template:
    """A fresh copy of the template at ``path`` (parsed once per session), free to mutate."""
    return copy.deepcopy(_load(path))


def parameter_error(declaration: Mapping[str, Any], value: str) -> str | None:
    """Why CloudFormation would refuse ``value`` for a parameter so declared, or None."""
    if declaration.get("Type") == "CommaDelimitedList":
        return None
    allowed = declaration.get("AllowedValues")
    if allowed is not None and value not in [str(v) for v in allowed]:
        return f"{value!r} is not one of {allowed}"
    pattern = declaration.get("AllowedPattern")
    if pattern is not None and not re.fullmatch(pattern, value):
        return f"{value!r} does not match {pattern}"
    if len(value) < int(declaration.get("MinLength", 0)):
        return f"{value!r} is shorter than {declaration['MinLength']}"
    if "MaxLength" in declaration and len(value) > int(declaration["MaxLength"]):
        return f"{value!r} is longer than {declaration['MaxLength']}"
    if "MinValue" in declaration and float(value) < float(declaration["MinValue"]):
        return f"{value!r} is below {declaration['MinValue']}"
    return None


@dataclass(frozen=True)
class Stack:
    """The template with parameter values: evaluates intrinsics to strings (see module doc)."""

    template: Mapping[str, Any]
    overrides: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        declared = self.template.get("Parameters", {})
        for name, value in self.overrides.items():
            if name not in declared:
                raise ValueError(f"{name} is not a parameter of the template")
            reason = parameter_error(declared[name], value)
            if reason:
                raise ValueError(f"{name}: {reason}")

    def parameter(self, name: str) -> str:
        if name in PSEUDO_PARAMETERS:
            return PSEUDO_PARAMETERS[name]
        if name in self.overrides:
            return self.overrides[name]
        declaration = self.template["Parameters"][name]
        if "Default" not in declaration:
            raise ValueError(f"{name} has no default: give it a value")
        return str(declaration["Default"])

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        parameters = self.template.get("Parameters", {})
        if name in parameters and parameters[name].get("Type") == "CommaDelimitedList":
            return self.parameter(name).split(",")
        if name in PSEUDO_PARAMETERS or name in parameters:
            return self.parameter(name)
        resource = self.template["Resources"][name]
        if resource["Type"] == "AWS::SSM::Parameter" and "Name" in resource["Properties"]:
            return str(self.resolve(resource["Properties"]["Name"]))
        return f"<{name}>"

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def exists(self, section: str, name: str) -> bool:
        """Whether resource or output ``name`` is created (its Condition, if any, holds)."""
        entry = self.template.get(section, {}).get(name)
        if entry is None:
            return False
        condition = entry.get("Condition")
        return condition is None or self.condition(condition)

    def resources(self) -> dict[str, Any]:
        """The resources created for these parameter values."""
        return {
            name: resource
            for name, resource in self.template["Resources"].items()
            if self.exists("Resources", name)
        }

    def sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            literal, name = match.groups()
            if literal:
                return "${" + name + "}"
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name and not name.startswith("AWS::"):
                return f"<{name}>"
            return str(self.ref(name))

        return SUB_VARIABLE.sub(replace, text)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            resolved = {key: self.resolve(item) for key, item in value.items()}
            return {key: item for key, item in resolved.items() if item is not NO_VALUE}
        ((key, arg),) = value.items()
        match key:
            case "Ref":
                return self.ref(arg)
            case "Fn::GetAtt":
                return f"<{arg[0]}.{arg[1]}>"
            case "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                return self.sub(text, variables)
            case "Fn::If":
                name, when_true, when_false = arg
                return self.resolve(when_true if self.condition(name) else when_false)
            case "Fn::Equals":
                left, right = (str(self.resolve(item)) for item in arg)
                return left == right
            case "Fn::Not":
                return not self.resolve(arg[0])
            case "Fn::And":
                return all(self.resolve(item) for item in arg)
            case "Fn::Or":
                return any(self.resolve(item) for item in arg)
            case "Condition":
                return self.condition(arg)
            case "Fn::Join":
                separator, items = arg
                return separator.join(str(item) for item in self.resolve(items))
            case "Fn::Split":
                separator, text = arg
                return str(self.resolve(text)).split(separator)
            case "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
        if key.startswith("Fn::"):
            raise NotImplementedError(f"the test evaluator does not know {key}")
        resolved = self.resolve(arg)
        return {} if resolved is NO_VALUE else {key: resolved}


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
