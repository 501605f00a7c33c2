"""Templates evaluated for sample parameter values, and helpers over IAM policies.

Tests of template.yaml and infra/*.yaml evaluate a template with :mod:`devstack.cfn` (the same
evaluator the devstack deploys with) for sample parameter values, validated against the
parameters' constraints as CloudFormation would, so that ARNs are compared as the strings
CloudFormation would produce.  Resources stay symbolic (``<Name>``, ``<Name.Attribute>``).

What CloudFormation refuses before it creates anything (each entry of a CommaDelimitedList
checked against the parameter's AllowedPattern and AllowedValues, the template's Rules) is
:mod:`devstack.cfn`'s, which the devstack's provisioner refuses too: :func:`refusal` is
:func:`devstack.cfn.refusal` in the sample account and region.  :func:`deploy` follows template.yaml
through its nested stacks: each nested stack is evaluated for the parameters the root passes it,
and its outputs are what the root then reads, so the domain, owner and repositories the function
is given can be compared with the ones created or named.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devstack import cfn, cfn_yaml
from devstack.cfn import NO_VALUE as NO_VALUE
from devstack.cfn import Deployed as Deployed
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
NESTED_STACK_TYPES = ("AWS::Serverless::Application", "AWS::CloudFormation::Stack")
SYMBOL = re.compile(r"<([A-Za-z0-9]+)[.>]")


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


def refusal(template: Template, overrides: Mapping[str, str]) -> str | None:
    """Why CloudFormation would refuse to deploy ``template`` with ``overrides`` before creating
    anything (:func:`devstack.cfn.refusal`), or None when it would go ahead."""
    return cfn.refusal(template, overrides, PSEUDO_PARAMETERS)


# --- a deployment of template.yaml and its nested stacks ------------------------------------------


class DeploymentError(ValueError):
    """The evaluated templates could not be deployed (a value the next stack cannot take)."""


@dataclass(frozen=True)
class Deployment:
    """template.yaml evaluated with its nested stacks: ``root`` reads the nested stacks' outputs,
    ``nested`` are the nested stacks created, each evaluated for what the root passes it."""

    root: Stack
    nested: Mapping[str, Stack]

    def created(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """(stack, logical id, resource) of every resource created, in every stack."""
        for stack_name, stack in (("root", self.root), *self.nested.items()):
            for name, resource in stack.resources().items():
                yield stack_name, name, resource

    def environment(self) -> dict[str, Any]:
        """BrokerFunction's environment variables, evaluated."""
        function = self.root.template["Resources"]["BrokerFunction"]["Properties"]
        variables: dict[str, Any] = self.root.resolve(function["Environment"]["Variables"])
        return variables

    def outputs(self, stack: str = "root") -> dict[str, Any]:
        """The outputs ``stack`` (root or a nested stack's logical id) has, evaluated."""
        evaluated = self.root if stack == "root" else self.nested[stack]
        return {
            name: evaluated.resolve(output["Value"])
            for name, output in evaluated.template.get("Outputs", {}).items()
            if evaluated.exists("Outputs", name)
        }

    def passed(self, stack: str) -> dict[str, str]:
        """The parameter values the root passes nested stack ``stack``."""
        return dict(self.nested[stack].overrides)


def _sample_attributes(stack: Stack, name: str, resource: Mapping[str, Any]) -> Deployed | None:
    """What CloudFormation would return for a created resource of the types the templates read."""
    account, region = stack.parameter("AWS::AccountId"), stack.parameter("AWS::Region")
    props = resource.get("Properties", {})
    codeartifact = f"arn:aws:codeartifact:{region}:{account}"
    match resource["Type"]:
        case "AWS::CodeArtifact::Domain":
            domain = str(stack.resolve(props["DomainName"]))
            attributes = {
                "Name": domain,
                "Owner": account,
                "Arn": f"{codeartifact}:domain/{domain}",
            }
            return Deployed(ref=attributes["Arn"], attributes=attributes)
        case "AWS::CodeArtifact::Repository":
            domain = str(stack.resolve(props["DomainName"]))
            repository = str(stack.resolve(props["RepositoryName"]))
            arn = f"{codeartifact}:repository/{domain}/{repository}"
            attributes = {"Name": repository, "DomainName": domain, "DomainOwner": account}
            return Deployed(ref=arn, attributes={**attributes, "Arn": arn})
        case "AWS::IAM::Role":
            role = f"{stack.parameter('AWS::StackName')}-{name}-SAMPLE"
            arn = f"arn:aws:iam::{account}:role/{role}"
            return Deployed(ref=role, attributes={"Arn": arn})
        case "AWS::IAM::ManagedPolicy":
            return Deployed(ref=f"arn:aws:iam::{account}:policy/{name}-SAMPLE")
    return None


def _with_samples(stack: Stack) -> Stack:
    """``stack`` with sample attributes for what it creates (twice: a repository names the
    domain it is in)."""
    for _ in range(2):
        deployed = dict(stack.deployed)
        for name, resource in stack.resources().items():
            sample = _sample_attributes(stack, name, resource)
            if sample is not None:
                deployed[name] = sample
        stack = dataclasses.replace(stack, deployed=deployed)
    return stack


def deploy(
    template: Template,
    overrides: Mapping[str, str] | None = None,
    *,
    location: Path = ROOT / "template.yaml",
    pseudo: Mapping[str, str] | None = None,
) -> Deployment:
    """``template`` (at ``location``) deployed with ``overrides``, as CloudFormation would: the
    parameters checked and the Rules evaluated (a refusal raises :class:`DeploymentError`), then
    each nested stack created once the stacks it reads are, for the parameter values the root
    passes it, which must all be concrete and acceptable to it."""
    pseudo = dict(pseudo or PSEUDO_PARAMETERS)
    reason = cfn.refusal(template, dict(overrides or {}), pseudo)
    if reason:
        raise DeploymentError(reason)
    root = _with_samples(Stack(template, dict(overrides or {}), pseudo=pseudo))
    created = root.resources()
    waiting = {name: r for name, r in created.items() if r["Type"] in NESTED_STACK_TYPES}
    nested: dict[str, Stack] = {}
    while waiting:
        ready = [
            name
            for name, resource in waiting.items()
            if not (root.references(resource.get("Properties", {})) & set(waiting))
        ]
        if not ready:
            raise DeploymentError(f"nested stacks wait on each other: {sorted(waiting)}")
        for name in ready:
            resource = waiting.pop(name)
            nested[name] = _nested(root, name, resource, location.parent)
            outputs = {
                f"Outputs.{output}": value
                for output, value in Deployment(root, nested).outputs(name).items()
            }
            stack_arn = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{name}-SAMPLE"
            deployed = {**root.deployed, name: Deployed(ref=stack_arn, attributes=outputs)}
            root = dataclasses.replace(root, deployed=deployed)
    return Deployment(root, nested)


def _nested(root: Stack, name: str, resource: Mapping[str, Any], directory: Path) -> Stack:
    props = resource.get("Properties", {})
    location = props.get("Location") or props.get("TemplateURL")
    path = directory / str(location)
    if not path.is_file():
        raise DeploymentError(f"{name}: no template at {location}")
    passed = root.resolve(props.get("Parameters", {}))
    for parameter, value in passed.items():
        if not isinstance(value, str) or SYMBOL.search(value):
            raise DeploymentError(f"{name}: {parameter} is {value!r}, not a concrete string")
    template = load(path)
    try:
        reason = cfn.refusal(template, passed, root.pseudo)
    except (ValueError, KeyError) as error:
        reason = str(error)
    if reason:
        raise DeploymentError(f"{name} refuses its parameters: {reason}")
    return _with_samples(Stack(template, passed, pseudo=root.pseudo))


def is_trap(resource: Mapping[str, Any]) -> bool:
    """An SSM parameter whose value its own AllowedPattern refuses: creating it fails the stack."""
    props = resource.get("Properties", {})
    return (
        resource.get("Type") == "AWS::SSM::Parameter"
        and props.get("AllowedPattern") == "^$"
        and cfn.ssm_parameter_error(props) is not None
        and "Name" not in props
    )


# What a parameter naming served repositories must refuse: patterns (IAM reads "*" as every
# repository of the domain, the store included), the store itself (what is published there
# reaches every repository downstream of it), and what is no CodeArtifact repository name.
NOT_REPOSITORY_NAMES = (
    "*",
    "internal,*",
    "intern*",
    "pypi-store",
    "internal,pypi-store",
    "-internal",
    "a b",
    "x",
)


def unresolved(stack: Stack, value: Any) -> set[str]:
    """The resources ``value`` (evaluated) reads that ``stack`` does not create."""
    created = set(stack.resources())
    declared = set(stack.template.get("Resources", {}))
    text = repr(stack.resolve(value))
    return {name for name in SYMBOL.findall(text) if name in declared and name not in created}


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
        # Resolved whole: an Fn::If entry may be AWS::NoValue, and then is no resource at all.
        for action in as_list(stack.resolve(statement.get("Action", []))):
            for resource in as_list(stack.resolve(statement.get("Resource", []))):
                pairs.add((str(action), str(resource)))
    return pairs


def mutation_params(mutations: Sequence[Mutation]) -> list[Any]:
    """One pytest case per mutation, named by it; a repeated name is an error at collection."""
    names = [name for name, _, _ in mutations]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"mutation names are not unique: {repeated}")
    return [pytest.param(mutate, check, id=name) for name, mutate, check in mutations]
