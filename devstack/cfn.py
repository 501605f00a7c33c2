"""A small evaluator of CloudFormation intrinsic functions over a template and its parameters.

Two users: the infra tests evaluate a template for sample parameter values, and the devstack's
provisioner deploys ``template.yaml`` and its nested stacks from it.  What is not deployed yet
stays symbolic: ``Ref`` to a resource is ``<Name>`` (an SSM parameter is its ``Name``, as in
CloudFormation) and ``Fn::GetAtt`` is ``<Name.Attribute>``, so a nested stack's output reads
``<Iam.Outputs.TokenIssuerRoleArn>``.  Once a resource is in ``deployed``, its physical id and
attributes are used instead.

What CloudFormation refuses before it creates anything is refused here too
(:func:`refusal`): a parameter value its constraints refuse (for a CommaDelimitedList,
AllowedPattern and AllowedValues apply to each entry), a parameter without a value, and a
Rule whose assertion fails (:meth:`Stack.rule_failures`, with the rule-only functions
Fn::Contains, Fn::EachMemberEquals and Fn::EachMemberIn).  :func:`ssm_parameter_error` is
what SSM refuses as an ``AWS::SSM::Parameter`` is created: a Value its AllowedPattern does not
match, which is how a template fails its own deployment on purpose (the TooMany* traps).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SUB_VARIABLE = re.compile(r"\$\{(!?)([^}]*)\}")


class _NoValue:
    """``Ref AWS::NoValue``: dropped from the list or mapping that holds it."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


@dataclass(frozen=True)
class Deployed:
    """A created resource: what ``Ref`` returns and the attributes ``Fn::GetAtt`` reads."""

    ref: str
    attributes: Mapping[str, Any] = field(default_factory=dict)


# What CloudFormation checks against each entry of a CommaDelimitedList (MinLength, MaxLength
# and MinValue are for String and Number parameters).
LIST_ENTRY_CONSTRAINTS = ("AllowedPattern", "AllowedValues")


def parameter_error(declaration: Mapping[str, Any], value: str) -> str | None:
    """Why CloudFormation would refuse ``value`` for a parameter so declared, or None; for a
    CommaDelimitedList, AllowedPattern and AllowedValues apply to each entry."""
    if declaration.get("Type") == "CommaDelimitedList":
        entry = {k: v for k, v in declaration.items() if k in LIST_ENTRY_CONSTRAINTS}
        for item in value.split(","):
            reason = parameter_error(entry, item)
            if reason:
                return f"entry {reason}"
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


def ssm_parameter_error(properties: Mapping[str, Any]) -> str | None:
    """Why SSM would refuse to create an ``AWS::SSM::Parameter`` with ``properties`` (evaluated),
    or None: its Value does not match its AllowedPattern."""
    pattern = properties.get("AllowedPattern")
    value = str(properties.get("Value", ""))
    if pattern is not None and not re.fullmatch(str(pattern), value):
        return f"Value {value!r} does not match its AllowedPattern {pattern}"
    return None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


@dataclass(frozen=True)
class Stack:
    """The template with parameter values: evaluates intrinsics (see the module doc)."""

    template: Mapping[str, Any]
    overrides: Mapping[str, str] = field(default_factory=dict)
    pseudo: Mapping[str, str] = field(default_factory=dict)
    deployed: Mapping[str, Deployed] = field(default_factory=dict)

    def __post_init__(self) -> None:
        declared = self.template.get("Parameters", {})
        for name, value in self.overrides.items():
            if name not in declared:
                raise ValueError(f"{name} is not a parameter of the template")
            reason = parameter_error(declared[name], value)
            if reason:
                constraint = declared[name].get("ConstraintDescription")
                raise ValueError(f"{name}: {reason}" + (f" ({constraint})" if constraint else ""))

    def parameter(self, name: str) -> str:
        if name in self.pseudo:
            return self.pseudo[name]
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
        if name in self.pseudo or name in parameters:
            return self.parameter(name)
        if name in self.deployed:
            return self.deployed[name].ref
        resource = self.template["Resources"][name]
        if resource["Type"] == "AWS::SSM::Parameter" and "Name" in resource["Properties"]:
            return str(self.resolve(resource["Properties"]["Name"]))
        return f"<{name}>"

    def get_att(self, name: str, attribute: str) -> Any:
        if name in self.deployed:
            try:
                return self.deployed[name].attributes[attribute]
            except KeyError:
                raise KeyError(f"{name} has no attribute {attribute}") from None
        return f"<{name}.{attribute}>"

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
                resource, _, attribute = name.partition(".")
                return str(self.get_att(resource, attribute))
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
                resource, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(resource, attribute)
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
            # Rule-only functions (CloudFormation takes them in Rules alone).
            case "Fn::Contains":
                items, item = arg
                return str(self.resolve(item)) in [str(i) for i in self.resolve(items)]
            case "Fn::EachMemberEquals":
                items, item = arg
                return all(str(i) == str(self.resolve(item)) for i in self.resolve(items))
            case "Fn::EachMemberIn":
                items, allowed = (self.resolve(a) for a in arg)
                return all(str(i) in [str(a) for a in allowed] for i in items)
        if key.startswith("Fn::"):
            raise NotImplementedError(f"the evaluator does not know {key}")
        resolved = self.resolve(arg)
        return {} if resolved is NO_VALUE else {key: resolved}

    def rule_failures(self) -> list[str]:
        """The Rules CloudFormation would refuse these parameter values by, each
        ``Rule: AssertDescription`` (on one line), for the rules whose RuleCondition holds."""
        failures = []
        for name, rule in self.template.get("Rules", {}).items():
            condition = rule.get("RuleCondition")
            if condition is not None and not self.resolve(condition):
                continue
            for assertion in rule.get("Assertions", []):
                if not self.resolve(assertion["Assert"]):
                    description = _one_line(assertion.get("AssertDescription", "refused"))
                    failures.append(f"{name}: {description}")
        return failures

    def references(self, value: Any) -> set[str]:
        """The resources ``value`` refers to (Ref, GetAtt, ${X} and ${X.Attr} in Sub)."""
        found: set[str] = set()
        resources = self.template.get("Resources", {})
        if isinstance(value, list):
            for item in value:
                found |= self.references(item)
        elif isinstance(value, dict):
            for key, arg in value.items():
                if key == "Ref" and arg in resources:
                    found.add(arg)
                elif key == "Fn::GetAtt":
                    found.add(arg[0] if isinstance(arg, list) else arg.split(".", 1)[0])
                elif key == "Fn::Sub":
                    text = arg if isinstance(arg, str) else arg[0]
                    for literal, name in SUB_VARIABLE.findall(text):
                        if not literal and name.split(".", 1)[0] in resources:
                            found.add(name.split(".", 1)[0])
                    if not isinstance(arg, str):
                        found |= self.references(arg[1])
                else:
                    found |= self.references(arg)
        return found


def refusal(
    template: Mapping[str, Any], overrides: Mapping[str, str], pseudo: Mapping[str, str]
) -> str | None:
    """Why CloudFormation would refuse to deploy ``template`` with ``overrides`` before creating
    anything, or None when it would go ahead: a value that is no parameter of the template or
    that the parameter's constraints refuse, a parameter with neither value nor default, a Rule
    whose assertion fails (``Rule: AssertDescription``; several joined by ``; ``)."""
    try:
        stack = Stack(template, dict(overrides), pseudo)
    except ValueError as error:
        return str(error)
    missing = [
        name
        for name, declaration in template.get("Parameters", {}).items()
        if name not in overrides and "Default" not in declaration
    ]
    if missing:
        return f"{', '.join(missing)}: must have a value (no default)"
    return "; ".join(stack.rule_failures()) or None
