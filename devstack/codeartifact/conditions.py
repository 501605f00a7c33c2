"""IAM's ``Condition`` element, evaluated as IAM does for the operators the stand-in meets.

moto's evaluator (``moto.iam.access_control``) cannot evaluate a conditional Deny: a statement
whose condition fails counts as DENIED whatever its effect, a key missing from the request
context makes the condition hold, and it knows ``StringEquals`` only. So the stand-in
evaluates every statement's condition itself, first, and hands moto only the statements whose
conditions hold (without their conditions) for the Action, Resource and Effect. As IAM
documents it (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-logic-multiple-context-keys-or-values.html,
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html):

- operators in a block, and keys under an operator, must all hold (AND); any of a key's
  values may match (OR);
- a key missing from the request context makes ``StringEquals``/``StringLike`` false and
  their negations (``StringNotEquals``/``StringNotLike``) true; ``…IfExists`` holds for a
  missing key;
- ``StringLike``: ``*`` matches any run of characters, ``?`` one, nothing else is special;
- condition key names are case-insensitive, values case-sensitive.

Other operators (numeric, date, ``Null``, ``ForAnyValue:…``) are ignored: the condition holds,
as moto treats them (devstack/README.md says so).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any


def equals(pattern: str, value: str) -> bool:
    return pattern == value


def like(pattern: str, value: str) -> bool:
    """IAM's ``StringLike``: ``*`` any run of characters (``:`` and ``/`` too), ``?`` one."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL) is not None


# operator: (test of one value against the context's, negated)
OPERATORS: dict[str, tuple[Callable[[str, str], bool], bool]] = {
    "StringEquals": (equals, False),
    "StringLike": (like, False),
    "StringNotEquals": (equals, True),
    "StringNotLike": (like, True),
}
IF_EXISTS = "IfExists"


def _text(value: object) -> str:
    """A policy value as IAM compares it: JSON booleans are ``true``/``false``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _values(raw: object) -> list[str]:
    return [_text(v) for v in raw] if isinstance(raw, list) else [_text(raw)]


def known(operator: str) -> bool:
    """Whether the stand-in evaluates ``operator`` (otherwise it is ignored)."""
    return operator.removesuffix(IF_EXISTS) in OPERATORS


def condition_holds(condition: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    """Whether a statement's ``Condition`` block holds for the request ``context``."""
    present = {key.lower(): value for key, value in context.items()}
    for operator, keys in condition.items():
        if not known(operator) or not isinstance(keys, Mapping):
            continue  # not evaluated: ignored (see the module's docstring)
        test, negated = OPERATORS[operator.removesuffix(IF_EXISTS)]
        if_exists = operator.endswith(IF_EXISTS)
        for key, expected in keys.items():
            actual = present.get(str(key).lower())
            if actual is None:
                holds = negated or if_exists
            else:
                matched = any(test(pattern, actual) for pattern in _values(expected))
                holds = matched != negated
            if not holds:
                return False
    return True


def applicable(document: Mapping[str, Any], context: Mapping[str, str]) -> dict[str, Any]:
    """``document`` with only the statements whose conditions hold for ``context``, and
    without their conditions: what is left for moto to match Action, Resource and Effect."""
    statements = document.get("Statement", [])
    if not isinstance(statements, list):
        statements = [statements]
    kept = [
        {name: value for name, value in statement.items() if name != "Condition"}
        for statement in statements
        if isinstance(statement, Mapping)
        and condition_holds(statement.get("Condition") or {}, context)
    ]
    return {**document, "Statement": kept}
