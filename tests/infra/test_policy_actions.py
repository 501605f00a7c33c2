"""Every action of every policy in the templates is granted on resources that action takes.

IAM allows an action on a resource only when a Resource pattern of the statement matches the ARN
the service authorizes the request against, an ARN of one of the resource types the action takes
(the "Resource types" column of the Service Authorization Reference).  A pattern of another type
matches nothing: that part of the grant is dead, and what it meant to allow is denied.  An action
with no resource type is authorized against no resource, so only Resource "*" matches it.

The reference is cfn-lint's bundled copy, data/AdditionalSpecs/Policies.json in .venv-sam (the
cfn-lint pinned by requirements/sam.txt): service prefix -> "Actions" -> lowercase action ->
"Resources" (type names, absent when none); service -> "Resources" -> type -> "ARNFormats".

Every policy document of template.yaml and infra/*.yaml is evaluated (tests/infra/cfn_eval.py)
for sample parameter values and for every combination of the conditions it names, so both
branches of every Fn::If are checked; Fn::GetAtt of a resource's Arn becomes a sample ARN of that
resource's type, a nested stack's output what its template says.  Then:

- identity policies (IAM roles', users' and groups' inline policies, IAM::Policy, RolePolicy,
  ManagedPolicy...): every Resource of a statement is "*" or a pattern that can match an ARN of a
  type each action of the statement takes; an action that needs resources of several types at
  once (REQUIRED) is granted on an ARN of each somewhere in the same document;
- resource-based policies (a role's trust policy, CodeArtifact domain and repository policies, a
  KMS key policy) apply to the resource they are attached to only, so their Resource is "*" (or
  absent) and each action must act on that resource (or on one inside it: a repository policy
  also covers the repository's packages);
- in both, every action exists (a typo fails) and a wildcard action matches at least one, and
  stands for every action it matches;
- a property holding a policy document of any other kind fails until this module handles it.

Each check returns its violations (the test names the template), and is proven by mutations that
break exactly what it guards.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import pytest

from tests.infra.cfn_eval import (
    ACCOUNT,
    NO_VALUE,
    OTHER_ACCOUNT,
    REGION,
    ROOT,
    Check,
    Mutation,
    Stack,
    Template,
    as_list,
    load,
    mutation_params,
    parameter_error,
    properties,
    statements,
)

POLICIES_JSON = next(
    iter(
        sorted(
            ROOT.glob(
                ".venv-sam/lib/python3*/site-packages/cfnlint/data/AdditionalSpecs/Policies.json"
            )
        )
    ),
    None,
)
# `make test` builds .venv-sam first; only a bare pytest outside CI may lack it.
pytestmark = pytest.mark.skipif(
    POLICIES_JSON is None and os.environ.get("CI") != "true",
    reason="cfn-lint's IAM data is missing: make venv-sam",
)

TEMPLATES = ["template.yaml", *(p.relative_to(ROOT).as_posix() for p in ROOT.glob("infra/*.yaml"))]

# A parameter with no default, or an empty one, gets the first of these that CloudFormation would
# accept for it (an account id, an id, a role ARN, a name), so no ARN has an empty field.
SAMPLE_VALUES = (OTHER_ACCOUNT, f"arn:aws:iam::{ACCOUNT}:role/cabroker-sample", "sample")

# The reference lists no resource type for these, which would leave "*" as the only Resource that
# matches them; but CodeArtifact authorizes a create in a domain against the domain: "To create a
# repository in a domain owned by another account, the principal must be granted the
# CreateRepository permission on the domain resource", with Resource "*" meaning the domain the
# policy is attached to (https://docs.aws.amazon.com/codeartifact/latest/ug/domain-policies.html,
# also domain-overview.html), and CloudTrail tells the calls "not authorized against any resource"
# (ListRepositories) from those against a domain (codeartifact-information-in-cloudtrail.html).
# CreatePackageGroup, also a create in the domain the request names, is taken to be the same.
EVALUATED_AGAINST: dict[str, tuple[str, ...]] = {
    "codeartifact:createrepository": ("domain",),
    "codeartifact:createpackagegroup": ("domain",),
}

# Actions that act on resources of several types at once, each of which must be allowed; the
# reference marks them required ("package*", "repository*") where cfn-lint's copy keeps only the
# names (https://docs.aws.amazon.com/service-authorization/latest/reference/list_awscodeartifact.html).
REQUIRED: dict[str, tuple[str, ...]] = {
    # a package version copied into the destination repository
    "codeartifact:copypackageversions": ("package", "repository"),
}

# Where policy documents live, by resource type and property.
IDENTITY_DOCUMENTS = {
    (kind, "PolicyDocument")
    for kind in (
        "AWS::IAM::ManagedPolicy",
        "AWS::IAM::Policy",
        "AWS::IAM::RolePolicy",
        "AWS::IAM::UserPolicy",
        "AWS::IAM::GroupPolicy",
    )
}
INLINE_POLICIES = {
    (kind, "Policies") for kind in ("AWS::IAM::Role", "AWS::IAM::User", "AWS::IAM::Group")
}
# A resource-based policy, and the resource types it applies to: the resource it is attached to
# and the ones inside it.
RESOURCE_DOCUMENTS: dict[tuple[str, str], tuple[str, ...]] = {
    ("AWS::IAM::Role", "AssumeRolePolicyDocument"): ("role",),
    ("AWS::CodeArtifact::Domain", "PermissionsPolicyDocument"): ("domain",),
    ("AWS::CodeArtifact::Repository", "PermissionsPolicyDocument"): ("repository", "package"),
    ("AWS::KMS::Key", "KeyPolicy"): ("key",),
}

# The IAM resource type (service, type) of the Arn attribute of CloudFormation resource types.
ARN_TYPES: dict[str, tuple[str, str]] = {
    "AWS::IAM::Role": ("iam", "role"),
    "AWS::DynamoDB::Table": ("dynamodb", "table"),
    "AWS::KMS::Key": ("kms", "key"),
    "AWS::CodeArtifact::Domain": ("codeartifact", "domain"),
    "AWS::CodeArtifact::Repository": ("codeartifact", "repository"),
    "AWS::CodeArtifact::PackageGroup": ("codeartifact", "package-group"),
}
NESTED_STACKS = ("AWS::Serverless::Application", "AWS::CloudFormation::Stack")


# --- the reference --------------------------------------------------------------------------------


@functools.cache
def reference() -> dict[str, Any]:
    assert POLICIES_JSON is not None
    data: dict[str, Any] = json.loads(POLICIES_JSON.read_text(encoding="utf-8"))
    return data


def action_problem(action: Any) -> str | None:
    """Why ``action`` names no IAM action (a wildcard: matches none), or None."""
    if not isinstance(action, str) or action.count(":") != 1:
        return f"{action!r} is not service:Action"
    service, name = action.lower().split(":")
    if service not in reference():
        return f"{action}: IAM has no service {service!r}"
    if not expand(action):
        what = "matches no action" if set("*?") & set(name) else "is no action"
        return f"{action} {what} of {service}"
    return None


def expand(action: str) -> list[str]:
    """The actions (``service:lowercasename``) that ``action``, maybe a wildcard, stands for."""
    service, _, name = action.lower().partition(":")
    known = reference().get(service, {}).get("Actions", {})
    return [f"{service}:{a}" for a in sorted(known) if fnmatchcase(a, name)]


def resource_types(action: str) -> tuple[str, ...]:
    """The resource types an action (``service:lowercasename``) is authorized against."""
    if action in EVALUATED_AGAINST:
        return EVALUATED_AGAINST[action]
    service, _, name = action.partition(":")
    return tuple(reference()[service]["Actions"][name].get("Resources", ()))


def arn_formats(service: str, kind: str) -> list[str]:
    formats: list[str] = reference()[service]["Resources"][kind]["ARNFormats"]
    return formats


def takes(types: tuple[str, ...]) -> str:
    if not types:
        return 'it takes no resource type: only Resource "*" matches it'
    return f"it takes {' or '.join(types)}"


# --- matching an ARN pattern against an ARN format ------------------------------------------------

ANY = "<any run>"  # *, a policy variable; ${Variable} and .* of a format's resource part
SEGMENT = "<any run without a colon>"  # ${Variable} of a format's partition, region, account
ONE = "<one character>"  # ? of a pattern
RUNS = (ANY, SEGMENT)
VARIABLE = re.compile(r"\$\{[^}]*\}")


def pattern_tokens(pattern: str) -> list[str]:
    """A policy's Resource: ``*`` any run (across colons too), ``?`` one character."""
    tokens: list[str] = []
    for part in re.split(r"(\$\{[^}]*\}|\*|\?)", pattern):
        if part in ("*",) or VARIABLE.fullmatch(part):
            tokens.append(ANY)
        elif part == "?":
            tokens.append(ONE)
        else:
            tokens.extend(part)
    return tokens


def format_tokens(arn_format: str) -> list[str]:
    """A reference ARN format: a ${Variable} or the regular expression ``.*`` is any run."""
    tokens: list[str] = []
    head = arn_format.split(":", 5)
    for index, segment in enumerate(head):
        if index:
            tokens.append(":")
        for part in re.split(r"(\$\{[^}]*\}|\.\*|\*)", segment):
            if VARIABLE.fullmatch(part):
                tokens.append(ANY if index == 5 else SEGMENT)
            elif part in (".*", "*"):
                tokens.append(ANY)
            else:
                tokens.extend(part)
    return tokens


def overlap(a: list[str], b: list[str]) -> bool:
    """Whether some string matches both token lists (glob intersection)."""

    def absorbs(run: str, token: str) -> bool:
        return token not in RUNS and (run == ANY or token != ":")

    @functools.cache
    def rest(i: int, j: int) -> bool:
        if i == len(a) and j == len(b):
            return True
        a_run = i < len(a) and a[i] in RUNS
        b_run = j < len(b) and b[j] in RUNS
        if a_run and (rest(i + 1, j) or (j < len(b) and absorbs(a[i], b[j]) and rest(i, j + 1))):
            return True  # a's run ends here, or takes b's next character
        if b_run and (rest(i, j + 1) or (i < len(a) and absorbs(b[j], a[i]) and rest(i + 1, j))):
            return True
        if i < len(a) and j < len(b) and not (a_run or b_run):
            return (a[i] == b[j] or ONE in (a[i], b[j])) and rest(i + 1, j + 1)
        return False

    return rest(0, 0)


def can_match(resource: Any, service: str, types: tuple[str, ...]) -> bool:
    """Whether the Resource pattern can match an ARN of one of ``types`` of ``service``."""
    if not isinstance(resource, str):
        return False
    tokens = pattern_tokens(resource)
    return any(
        overlap(tokens, format_tokens(arn_format))
        for kind in types
        for arn_format in arn_formats(service, kind)
    )


# --- the templates' policy documents, evaluated ---------------------------------------------------


def sample_arn(service: str, kind: str, name: str) -> str:
    """An ARN of ``kind`` for the resource ``name``, in the tests' account and region."""
    arn_format = arn_formats(service, kind)[0]
    values = {"Partition": "aws", "Region": REGION, "Account": ACCOUNT}
    text = VARIABLE.sub(lambda m: values.get(m.group()[2:-1], name), arn_format)
    return text.replace(".*", name)


@dataclass(frozen=True)
class SampleStack(Stack):
    """A stack whose conditions can be forced and whose GetAtt Arn are sample ARNs of their type."""

    forced: dict[str, bool] = field(default_factory=dict)

    def condition(self, name: str) -> bool:
        if name in self.forced:
            return self.forced[name]
        return super().condition(name)

    def get_att(self, name: str, attribute: str) -> Any:
        resource = self.template["Resources"][name]
        if attribute == "Arn" and resource["Type"] in ARN_TYPES:
            return sample_arn(*ARN_TYPES[resource["Type"]], name)
        if resource["Type"] in NESTED_STACKS and attribute.startswith("Outputs."):
            # Locations are relative to the template naming them: template.yaml, at the root, is
            # the only one that nests stacks.
            nested = load(ROOT / resource["Properties"]["Location"])
            output = nested["Outputs"][attribute.removeprefix("Outputs.")]["Value"]
            return SampleStack(nested).resolve(output)
        return super().get_att(name, attribute)


def conditions_named(value: Any) -> set[str]:
    """The conditions that ``value``'s Fn::If and Condition functions name."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= conditions_named(item)
    elif isinstance(value, dict):
        for key, arg in value.items():
            if key == "Fn::If":
                found.add(arg[0])
            elif key == "Condition" and isinstance(arg, str):
                found.add(arg)
            found |= conditions_named(arg)
    return found


def sample_parameters(t: Template) -> dict[str, str]:
    """Values for the template's parameters that have no value of their own (see SAMPLE_VALUES)."""
    values = {}
    for name, declaration in t.get("Parameters", {}).items():
        if str(declaration.get("Default", "")):
            continue
        fitting = [v for v in SAMPLE_VALUES if parameter_error(declaration, v) is None]
        if fitting:
            values[name] = fitting[0]
        elif "Default" not in declaration:
            raise ValueError(f"parameter {name}: add a sample value it accepts to SAMPLE_VALUES")
    return values


def evaluations(t: Template, value: Any) -> Iterator[Any]:
    """``value`` evaluated for every combination of the conditions it names."""
    names = sorted(conditions_named(value))
    overrides = sample_parameters(t)
    for values in itertools.product((True, False), repeat=len(names)):
        resolved = SampleStack(t, overrides, forced=dict(zip(names, values, strict=True))).resolve(
            value
        )
        if resolved is not NO_VALUE:
            yield resolved


@dataclass(frozen=True)
class Policy:
    where: str  # the resource, and the policy's name for an inline policy
    document: dict[str, Any]
    applies_to: tuple[str, ...] = ()  # a resource-based policy: the resource types it covers


def policies(t: Template) -> list[Policy]:
    """Every policy document of the template, once per distinct evaluation."""
    found: dict[str, Policy] = {}
    handled = IDENTITY_DOCUMENTS | INLINE_POLICIES | set(RESOURCE_DOCUMENTS)
    for name, resource in t["Resources"].items():
        kind = resource["Type"]
        for key, value in resource.get("Properties", {}).items():
            for evaluated in evaluations(t, value) if (kind, key) in handled else ():
                if (kind, key) in INLINE_POLICIES:
                    for inline in evaluated:
                        where = f"{name}/{inline.get('PolicyName')}"
                        found.setdefault(
                            where + json.dumps(inline, sort_keys=True),
                            Policy(where, inline["PolicyDocument"]),
                        )
                else:
                    where = f"{name} trust" if key == "AssumeRolePolicyDocument" else name
                    found.setdefault(
                        where + json.dumps(evaluated, sort_keys=True),
                        Policy(where, evaluated, RESOURCE_DOCUMENTS.get((kind, key), ())),
                    )
    return list(found.values())


def holds_a_document(value: Any) -> bool:
    if isinstance(value, list):
        return any(holds_a_document(item) for item in value)
    if isinstance(value, dict):
        return "Statement" in value or any(holds_a_document(item) for item in value.values())
    return False


def labelled(policy: Policy) -> Iterator[tuple[str, dict[str, Any]]]:
    """(``where [Sid]``, statement) for each statement of the policy."""
    for index, statement in enumerate(statements(policy.document), start=1):
        yield f"{policy.where} [{statement.get('Sid', f'statement {index}')}]", statement


def actions_of(statement: dict[str, Any]) -> Iterator[tuple[str, list[str]]]:
    """(action as written, the existing actions it stands for) for each action named."""
    for action in as_list(statement.get("Action", [])):
        if action_problem(action) is None:
            yield action, expand(action)


def shown(given: str, action: str) -> str:
    return given if given.lower() == action else f"{given} ({action})"


# --- the checks -----------------------------------------------------------------------------------


def every_action_exists(t: Template) -> list[str]:
    problems = set()
    for policy in policies(t):
        for where, statement in labelled(policy):
            for key in ("Action", "NotAction"):
                for action in as_list(statement.get(key, [])):
                    problem = action_problem(action)
                    if problem:
                        problems.add(f"{where}: {problem}")
    return sorted(problems)


def identity_policies_name_resources_their_actions_take(t: Template) -> list[str]:
    problems = set()
    for policy in (p for p in policies(t) if not p.applies_to):
        for where, statement in labelled(policy):
            negations = sorted({"NotAction", "NotResource"} & set(statement))
            if negations:
                problems.add(f"{where}: {' and '.join(negations)} cannot be checked")
                continue
            resources = as_list(statement.get("Resource", []))
            if not resources:
                problems.add(f"{where}: no Resource")
            for given, actions in actions_of(statement):
                for action in actions:
                    service, types = action.partition(":")[0], resource_types(action)
                    for resource in resources:
                        if resource != "*" and not can_match(resource, service, types):
                            problems.add(
                                f"{where}: {shown(given, action)} does not take {resource} "
                                f"({takes(types)})"
                            )
    return sorted(problems)


def actions_needing_several_resources_get_each(t: Template) -> list[str]:
    problems = set()
    for policy in (p for p in policies(t) if not p.applies_to):
        granted: dict[str, list[Any]] = {}
        for _, statement in labelled(policy):
            if statement.get("Effect") == "Allow":
                for _, actions in actions_of(statement):
                    for action in actions:
                        granted.setdefault(action, []).extend(as_list(statement.get("Resource")))
        for action, resources in sorted(granted.items()):
            service = action.partition(":")[0]
            for kind in REQUIRED.get(action, ()):
                if "*" not in resources and not any(
                    can_match(r, service, (kind,)) for r in resources
                ):
                    problems.add(
                        f"{policy.where}: {action} is granted on no {kind} ARN: it acts on a "
                        f"{' and a '.join(REQUIRED[action])} at once"
                    )
    return sorted(problems)


def resource_policies_grant_what_their_resource_takes(t: Template) -> list[str]:
    problems = set()
    for policy in (p for p in policies(t) if p.applies_to):
        covered = " or ".join(policy.applies_to)
        for where, statement in labelled(policy):
            for resource in as_list(statement.get("Resource", "*")):
                if resource != "*":
                    problems.add(
                        f"{where}: Resource {resource}: a resource-based policy applies to its own "
                        f'resource only, give "*"'
                    )
            for given, actions in actions_of(statement):
                if not any(set(resource_types(a)) & set(policy.applies_to) for a in actions):
                    types = tuple(dict.fromkeys(t for a in actions for t in resource_types(a)))
                    problems.add(
                        f"{where}: {given} does not act on the {covered} this policy is attached "
                        f"to ({takes(types)})"
                    )
    return sorted(problems)


def every_policy_document_is_checked(t: Template) -> list[str]:
    handled = IDENTITY_DOCUMENTS | INLINE_POLICIES | set(RESOURCE_DOCUMENTS)
    return [
        f"{name}: {key} of {resource['Type']} holds a policy document this test does not check"
        for name, resource in t["Resources"].items()
        for key, value in resource.get("Properties", {}).items()
        if holds_a_document(value) and (resource["Type"], key) not in handled
    ]


CHECKS: list[Check] = [
    every_action_exists,
    identity_policies_name_resources_their_actions_take,
    actions_needing_several_resources_get_each,
    resource_policies_grant_what_their_resource_takes,
    every_policy_document_is_checked,
]


@pytest.mark.parametrize("path", TEMPLATES)
@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_the_templates_have_the_property(check: Check, path: str) -> None:
    problems = check(load(ROOT / path))
    assert problems == [], f"{path}:\n" + "\n".join(problems)


def test_every_template_has_policies() -> None:
    """The checks cannot pass for want of documents (or of the nested templates)."""
    assert {"template.yaml", "infra/iam.yaml", "infra/codeartifact.yaml"} <= set(TEMPLATES)
    for path in TEMPLATES:
        assert policies(load(ROOT / path)), path


# --- what the checks rely on ----------------------------------------------------------------------


def test_the_exceptions_still_have_no_resource_type_in_the_reference() -> None:
    """Once the reference gives them types, those decide: drop the exception."""
    for action, types in EVALUATED_AGAINST.items():
        service, _, name = action.partition(":")
        assert reference()[service]["Actions"][name].get("Resources", []) == [], action
        assert set(types) <= set(reference()[service]["Resources"]), action


def test_required_types_are_types_of_the_action() -> None:
    for action, types in REQUIRED.items():
        assert set(types) <= set(resource_types(action)), action


@pytest.mark.parametrize(
    ("resource", "service", "types", "expected"),
    [
        ("arn:aws:codeartifact:us-east-1:1:domain/acme", "codeartifact", ("domain",), True),
        ("arn:aws:codeartifact:us-east-1:1:domain/acme", "codeartifact", ("repository",), False),
        ("arn:aws:codeartifact:us-east-1:1:package/acme/*", "codeartifact", ("package",), True),
        ("arn:aws:codeartifact:us-east-1:1:package/acme/*", "codeartifact", ("repository",), False),
        ("arn:aws:codeartifact:us-east-1:1:package-group/a/*", "codeartifact", ("package",), False),
        ("arn:aws:codeartifact:*:*:*", "codeartifact", ("package-group",), True),
        ("arn:aws:codeartifact:*", "codeartifact", ("repository",), True),
        ("arn:aws:codeartifact:us-east-1:1:repo?itory/a/b", "codeartifact", ("repository",), True),
        (
            "arn:aws:codeartifact:us-east-1:1:domain/${aws:username}",
            "codeartifact",
            ("domain",),
            True,
        ),
        ("arn:aws:iam::1:role/r", "sts", ("role",), True),
        ("arn:aws:iam:us-east-1:1:role/r", "sts", ("role",), False),
        ("arn:aws:iam::1:role:r/x", "sts", ("role",), False),
        ("arn:aws:dynamodb:us-east-1:1:table/T", "kms", ("key",), False),
        ("<Iam.Outputs.TokenIssuerRoleArn>", "sts", ("role",), False),
    ],
)
def test_can_match(resource: str, service: str, types: tuple[str, ...], expected: bool) -> None:
    assert can_match(resource, service, types) is expected


def test_parameters_without_a_value_get_a_sample_one() -> None:
    t = {
        "Parameters": {
            "Owner": {"Type": "String", "Default": "", "AllowedPattern": "^(\\d{12})?$"},
            "Role": {"Type": "String", "AllowedPattern": "^arn:aws:iam::\\d{12}:role/.+$"},
            "Key": {"Type": "String", "Default": "", "AllowedPattern": "^(arn:aws:kms:.+)?$"},
            "Name": {"Type": "String", "Default": "acme"},
        }
    }
    assert sample_parameters(t) == {"Owner": OTHER_ACCOUNT, "Role": SAMPLE_VALUES[1]}
    with pytest.raises(ValueError, match="parameter Odd"):
        sample_parameters({"Parameters": {"Odd": {"Type": "String", "AllowedPattern": "^x$"}}})


def test_nested_outputs_and_arns_are_sample_arns_of_their_type() -> None:
    t = load(ROOT / "template.yaml")
    stack = SampleStack(t)
    role = stack.resolve({"Fn::GetAtt": ["Iam", "Outputs.TokenIssuerRoleArn"]})
    assert role == f"arn:aws:iam::{ACCOUNT}:role/TokenIssuerRole"
    assert stack.resolve({"Fn::GetAtt": ["CacheKey", "Arn"]}) == (
        f"arn:aws:kms:{REGION}:{ACCOUNT}:key/CacheKey"
    )


# --- mutations ------------------------------------------------------------------------------------


def _statement(t: Template, resource: str, sid: str) -> dict[str, Any]:
    """Statement ``sid`` of a policy resource or inline policy, also inside an Fn::If."""
    props = properties(t, resource)
    document = (
        props["Policies"][0]["PolicyDocument"] if "Policies" in props else props["PolicyDocument"]
    )
    if "Fn::If" in document:
        document = document["Fn::If"][1]
    candidates = [s["Fn::If"][1] if "Fn::If" in s else s for s in document["Statement"]]
    (statement,) = [s for s in candidates if s.get("Sid") == sid]
    found: dict[str, Any] = statement
    return found


def _domain_statement(t: Template, resource: str, sid: str) -> dict[str, Any]:
    policy = properties(t, resource)["PermissionsPolicyDocument"]["Fn::If"][1]
    (statement,) = [s["Fn::If"][1] for s in policy["Statement"] if s["Fn::If"][1]["Sid"] == sid]
    found: dict[str, Any] = statement
    return found


def _add_action(t: Template, resource: str, sid: str, action: str) -> None:
    statement = _statement(t, resource, sid)
    statement["Action"] = [*as_list(statement["Action"]), action]


def _trust(t: Template) -> dict[str, Any]:
    statement: dict[str, Any] = statements(
        properties(t, "TokenIssuerRole")["AssumeRolePolicyDocument"]
    )[0]
    return statement


def _queue_policy(t: Template) -> None:
    t["Resources"]["Queue"] = {"Type": "AWS::SQS::Queue", "Properties": {}}
    t["Resources"]["QueuePolicy"] = {
        "Type": "AWS::SQS::QueuePolicy",
        "Properties": {
            "Queues": [{"Ref": "Queue"}],
            "PolicyDocument": {
                "Statement": [{"Effect": "Allow", "Action": "sqs:SendMessages", "Resource": "*"}]
            },
        },
    }


IAM: list[Mutation] = [
    (
        "GetAssociatedPackageGroup on the domain",
        lambda t: _add_action(t, "AdminPolicy", "Domain", "codeartifact:GetAssociatedPackageGroup"),
        identity_policies_name_resources_their_actions_take,
    ),
    (
        "CreateRepository on repository ARNs",
        lambda t: _add_action(t, "AdminPolicy", "Repositories", "codeartifact:CreateRepository"),
        identity_policies_name_resources_their_actions_take,
    ),
    (
        "CreatePackageGroup on package-group ARNs",
        lambda t: _add_action(t, "AdminPolicy", "PackageGroups", "codeartifact:CreatePackageGroup"),
        identity_policies_name_resources_their_actions_take,
    ),
    (
        "a repository action on the domain",
        lambda t: _add_action(t, "AdminPolicy", "Domain", "codeartifact:DescribeRepository"),
        identity_policies_name_resources_their_actions_take,
    ),
    (
        "the publisher reads packages instead of the repository",
        lambda t: _add_action(t, "PublisherPolicy", "Publish", "codeartifact:ReadFromRepository"),
        identity_policies_name_resources_their_actions_take,
    ),
    (
        "bearer tokens on a role ARN",
        lambda t: _statement(t, "AdminPolicy", "ServiceBearerToken").update(
            Resource={"Fn::GetAtt": ["TokenIssuerRole", "Arn"]}
        ),
        identity_policies_name_resources_their_actions_take,
    ),
    (
        "NotResource in the reader policy",
        lambda t: _statement(t, "ReaderPolicy", "Read").update(NotResource="*"),
        identity_policies_name_resources_their_actions_take,
    ),
    (
        "CopyPackageVersions on package ARNs only",
        lambda t: _statement(t, "AdminPolicy", "CopyPackageVersions").update(
            Resource=[
                r
                for r in _statement(t, "AdminPolicy", "CopyPackageVersions")["Resource"]
                if ":package/" in r["Fn::Sub"][0]
            ]
        ),
        actions_needing_several_resources_get_each,
    ),
    (
        "a misspelt action",
        lambda t: _add_action(t, "ReaderPolicy", "Token", "codeartifact:GetAuthorisationToken"),
        every_action_exists,
    ),
    (
        "a wildcard that matches no action",
        lambda t: _add_action(t, "AdminPolicy", "Packages", "codeartifact:Fetch*"),
        every_action_exists,
    ),
    (
        "an action of no service",
        lambda t: _add_action(t, "TokenIssuerRole", "ReadRepository", "codeartefact:ListPackages"),
        every_action_exists,
    ),
    (
        "a misspelt trust action",
        lambda t: _trust(t).update(Action=["sts:AssumeRol"]),
        every_action_exists,
    ),
    (
        "a trust policy naming a resource",
        lambda t: _trust(t).update(Resource={"Fn::GetAtt": ["TokenIssuerRole", "Arn"]}),
        resource_policies_grant_what_their_resource_takes,
    ),
    (
        "a trust policy granting a session action",
        lambda t: _trust(t).update(Action=["sts:GetSessionToken"]),
        resource_policies_grant_what_their_resource_takes,
    ),
]

ROOT_TEMPLATE: list[Mutation] = [
    (
        "cache tokens encrypted with the table's ARN",
        lambda t: _statement(t, "BrokerFunctionPolicy", "EncryptCachedTokens").update(
            Resource={"Fn::GetAtt": ["CacheTable", "Arn"]}
        ),
        identity_policies_name_resources_their_actions_take,
    ),
    (
        "assume the nested stack's admin policy",
        lambda t: _statement(t, "BrokerFunctionPolicy", "AssumeTokenIssuerRole").update(
            Resource={"Fn::GetAtt": ["Iam", "Outputs.AdminPolicyArn"]}
        ),
        identity_policies_name_resources_their_actions_take,
    ),
    (
        "a misspelt KMS wildcard",
        lambda t: _add_action(
            t, "BrokerFunctionPolicy", "TableEncryptionThroughDynamoDB", "kms:GenerateDataKeys*"
        ),
        every_action_exists,
    ),
    (
        "a queue policy",
        _queue_policy,
        every_policy_document_is_checked,
    ),
]

CODEARTIFACT: list[Mutation] = [
    (
        "the repository policy grants tokens",
        lambda t: _domain_statement(t, "PrivateRepository", "ReaderAccountsRead")["Action"].append(
            "codeartifact:GetAuthorizationToken"
        ),
        resource_policies_grant_what_their_resource_takes,
    ),
    (
        "the domain policy names its repository",
        lambda t: _domain_statement(t, "Domain", "ReaderAccountsGetTokens").update(
            Resource={"Fn::GetAtt": ["PrivateRepository", "Arn"]}
        ),
        resource_policies_grant_what_their_resource_takes,
    ),
    (
        "a misspelt repository-policy action",
        lambda t: _domain_statement(t, "PrivateRepository", "PublisherAccountsPublish")[
            "Action"
        ].append("codeartifact:PublishPackageVersions"),
        every_action_exists,
    ),
]

MUTATIONS = {
    "infra/iam.yaml": IAM,
    "template.yaml": ROOT_TEMPLATE,
    "infra/codeartifact.yaml": CODEARTIFACT,
}


@pytest.mark.parametrize(
    ("path", "mutate", "check"),
    [
        pytest.param(path, *case.values, id=f"{path}: {case.id}")
        for path, mutations in MUTATIONS.items()
        for case in mutation_params(mutations)
    ],
)
def test_each_check_catches_the_mutation_it_guards_against(
    path: str, mutate: Callable[[Template], None], check: Check
) -> None:
    mutated = load(ROOT / path)
    before = set(check(mutated))
    mutate(mutated)
    assert set(check(mutated)) - before != set()


def test_every_check_has_a_mutation() -> None:
    assert {check for ms in MUTATIONS.values() for _, _, check in ms} == set(CHECKS)


def test_mutations_name_templates_that_exist() -> None:
    assert set(MUTATIONS) <= set(TEMPLATES)
