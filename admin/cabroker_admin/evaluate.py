"""Rules documents put to the test: load one as the broker would, read a TESTS document (the
identities and requests an admin expects to be allowed or denied), run it, and compare two
documents' decisions over it. A document is loaded with the broker's acceptance check
(:func:`broker.acceptance.accept`) and every decision is :func:`broker.explain.explain`'s, with
the deployment's domain, so a test passes exactly when the broker would decide as it says
(docs/admin.md, "Testing and explaining rules").

A TESTS document (YAML or JSON)::

    tests:
      - name: release-from-main            # unique
        issuer: github                     # an issuer of the rules
        claims: {repository_owner: acme, ref: refs/heads/main}
        request: {access: publish}         # optional: the POST /v1/token body
        expect: {decision: allow, rule: release-from-main, repository: internal,
                 access: publish, packages: ["acme-*"], max_duration: 3600}
      - name: forks-are-refused
        issuer: github
        claims: {repository_owner: someone-else}
        expect: {decision: deny, reason: no-matching-rule}

It is read strictly: an unknown or missing field, a wrong type or a duplicate key is a usage
error (:class:`~cabroker_admin.errors.UsageError`) naming the test and the field, and so is
a test whose issuer the rules do not name (a typo would otherwise pass as ``invalid-token``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from broker.explain import NO_BODY, ChangeKind, Decision, Explanation, change_kind, explain
from broker.problems import (
    AmbiguousRequest,
    GrantExceeded,
    InvalidRequest,
    InvalidToken,
    NoMatchingRule,
    PolicyTooLarge,
)
from broker.rules import ACCESS_LEVELS, Access, RulesError, RuleSet, package_patterns
from broker.scope import Domain
from cabroker_admin.deployment import PLACEHOLDER_DOMAIN, accepted
from cabroker_admin.errors import AdminError, UsageError, one_line

# The denials a test may expect: the broker's problem slugs for a token request.
REASONS = (
    NoMatchingRule.slug,
    GrantExceeded.slug,
    AmbiguousRequest.slug,
    InvalidRequest.slug,
    PolicyTooLarge.slug,  # the chosen grant's session policy would not fit
    InvalidToken.slug,  # an issuer the rules do not name: the broker refuses its tokens
)
DECISIONS: tuple[Decision, ...] = ("allow", "deny")
TEST_FIELDS = frozenset({"name", "issuer", "claims", "request", "expect"})
GRANT_FIELDS = ("rule", "repository", "access", "packages", "max_duration")
EXPECT_FIELDS = frozenset({"decision", "reason", *GRANT_FIELDS})


class RulesInvalid(AdminError):
    """A rules document the broker would refuse (exit 1)."""


# --------------------------------------------------------------------------- files


def read_text(path: str, what: str, undecodable: type[AdminError] = UsageError) -> str:
    """The text of ``path``: a missing or unreadable file is a usage error naming ``what``;
    text that is not UTF-8 raises ``undecodable``."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise UsageError(f"{what} {path}: cannot read: {error.strerror or error}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise undecodable(f"{path}: not UTF-8 text (at byte offset {error.start})") from None


def load_rules(
    text: str,
    origin: str,
    repositories: Sequence[str] = (),
    domain: Domain = PLACEHOLDER_DOMAIN,
) -> RuleSet:
    """The rules in ``text`` if the broker would serve them: :func:`broker.acceptance.accept`,
    the broker's one acceptance check (every rule's full grant fits in a session policy for
    ``domain``, and, unless ``repositories`` is empty, every grant names one of them).
    Invalid: :class:`RulesInvalid`, one line starting with ``origin``."""
    return accepted(text, origin, domain, repositories, RulesInvalid)


# --------------------------------------------------------------------------- the tests document


@dataclass(frozen=True)
class Expect:
    """What a test expects; a field left out is not checked."""

    decision: Decision
    rule: str | None = None
    repository: str | None = None
    access: Access | None = None
    packages: tuple[str, ...] | None = None  # normalized patterns
    max_duration: int | None = None
    reason: str | None = None

    def describe(self) -> str:
        fields = [f"decision {self.decision}"]
        for name in (*GRANT_FIELDS, "reason"):
            value = getattr(self, name)
            if value is not None:
                shown = ", ".join(value) if isinstance(value, tuple) else value
                fields.append(f"{name} {shown}")
        return ", ".join(fields)


@dataclass(frozen=True)
class Case:
    """One test: an identity (issuer and claims), a request, and what is expected."""

    name: str
    issuer: str
    claims: Mapping[str, Any]
    request: object  # the decoded POST /v1/token body, or NO_BODY
    expect: Expect

    def explain(self, rules: RuleSet, domain: Domain = PLACEHOLDER_DOMAIN) -> Explanation:
        """The broker's decision on this test with ``rules``, for a deployment on ``domain``
        (the chosen grant's session policy must fit, as at request time)."""
        return explain(rules, self.issuer, self.claims, self.request, domain=domain)


class _Duplicate(ValueError):
    pass


class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A safe YAML loader (libyaml's when PyYAML has it: a thousand tests are 300 KB) that
    refuses duplicate keys instead of keeping the last one."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: list[Any] = []
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise _Duplicate(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
        seen.append(key)
    mapping: dict[Any, Any] = loader.construct_mapping(node)
    return mapping


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def parse_tests(text: str, origin: str) -> tuple[Case, ...]:
    """The tests of a TESTS document; anything malformed is a :class:`UsageError` naming
    ``origin``, the test and the field."""
    try:
        document = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        raise UsageError(f"{origin}: not valid YAML: {one_line(str(error))}") from None
    except (ValueError, TypeError, AttributeError, RecursionError) as error:
        raise UsageError(f"{origin}: not valid YAML: {one_line(str(error))}") from None
    if not isinstance(document, dict):
        raise UsageError(f"{origin}: must be a mapping with the field 'tests'")
    _only(document, {"tests"}, f"{origin}: unknown field(s)")
    raw = document.get("tests")
    if not isinstance(raw, list) or not raw:
        raise UsageError(f"{origin}: field 'tests' must be a non-empty list of tests")
    cases: list[Case] = []
    names: set[str] = set()
    for index, item in enumerate(raw):
        case = _case(item, index, origin)
        if case.name in names:
            raise UsageError(f"{origin}: test {case.name!r}: field 'name' is used by another test")
        names.add(case.name)
        cases.append(case)
    return tuple(cases)


def _case(raw: object, index: int, origin: str) -> Case:
    where = f"{origin}: test #{index + 1}"
    if not isinstance(raw, dict):
        raise UsageError(f"{where} must be a mapping")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise UsageError(f"{where}: field 'name' must be a non-empty string")
    where = f"{origin}: test {name!r}"

    def fail(field: str, reason: str) -> UsageError:
        return _fail(where, field, reason)

    _only(raw, TEST_FIELDS, f"{where}: unknown field(s)")
    for field in ("issuer", "claims", "expect"):
        if field not in raw:
            raise fail(field, "is missing")
    issuer = raw["issuer"]
    if not isinstance(issuer, str) or not issuer:
        raise fail("issuer", "must be a non-empty string (an issuer of the rules)")
    claims = raw["claims"]
    if not isinstance(claims, dict):
        raise fail("claims", "must be a mapping (the ID token's claims)")
    _json_value(claims, "claims", fail)
    request: object = NO_BODY
    if "request" in raw:
        request = raw["request"]
        if not isinstance(request, dict):
            raise fail("request", "must be a mapping (the POST /v1/token body)")
        _json_value(request, "request", fail)
    return Case(name, issuer, claims, request, _expect(raw["expect"], where))


def _fail(where: str, field: str, reason: str) -> UsageError:
    return UsageError(f"{where}: field {field!r} {reason}")


def _expect(raw: object, where: str) -> Expect:
    def fail(field: str, reason: str) -> UsageError:
        return _fail(where, field, reason)

    if not isinstance(raw, dict):
        raise fail("expect", "must be a mapping with at least 'decision'")
    unknown = sorted(str(key) for key in raw if key not in EXPECT_FIELDS)
    if unknown:
        raise fail(
            f"expect.{unknown[0]}", f"is unknown; accepted: {', '.join(sorted(EXPECT_FIELDS))}"
        )
    decision = raw.get("decision")
    if decision not in DECISIONS:
        raise fail("expect.decision", "must be 'allow' or 'deny'")
    if decision == "allow" and "reason" in raw:
        raise fail("expect.reason", "goes with decision deny only")
    if decision == "deny":
        given = [field for field in GRANT_FIELDS if field in raw]
        if given:
            raise fail(
                f"expect.{given[0]}", "goes with decision allow only (a deny grants nothing)"
            )
    for field in ("rule", "repository"):
        if field in raw and (not isinstance(raw[field], str) or not raw[field]):
            raise fail(f"expect.{field}", "must be a non-empty string")
    if "access" in raw and raw["access"] not in ACCESS_LEVELS:
        raise fail("expect.access", "must be 'read' or 'publish'")
    packages: tuple[str, ...] | None = None
    if "packages" in raw:
        if raw["packages"] == []:
            packages = ()  # a read grant's
        else:
            try:
                packages = package_patterns(raw["packages"], "'expect.packages'")
            except RulesError as error:
                raise UsageError(f"{where}: field {error}") from None
    max_duration = raw.get("max_duration")
    if "max_duration" in raw and (type(max_duration) is not int or max_duration < 1):
        raise fail("expect.max_duration", "must be a whole number of seconds")
    reason = raw.get("reason")
    if "reason" in raw and reason not in REASONS:
        raise fail("expect.reason", f"must be one of {', '.join(REASONS)}")
    return Expect(
        decision=decision,
        rule=raw.get("rule"),
        repository=raw.get("repository"),
        access=raw.get("access"),
        packages=packages,
        max_duration=max_duration,
        reason=reason,
    )


def _json_value(value: object, field: str, fail: Callable[[str, str], UsageError]) -> None:
    """Refuse what a decoded JSON body or ID token cannot hold (YAML dates, sets, bytes…)."""
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise fail(field, "holds NaN or infinity, which is not JSON")
        return
    if isinstance(value, list):
        for item in value:
            _json_value(item, field, fail)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise fail(field, f"has the key {key!r}; JSON keys are strings (quote it)")
            _json_value(item, f"{field}.{key}", fail)
        return
    raise fail(field, f"holds a {type(value).__name__}, which is not JSON (quote it)")


def _only(fields: Mapping[Any, Any], allowed: Iterable[str], message: str) -> None:
    unknown = sorted(str(key) for key in fields if key not in set(allowed))
    if unknown:
        raise UsageError(f"{message} {', '.join(unknown)}")


# --------------------------------------------------------------------------- running tests


@dataclass(frozen=True)
class Result:
    case: Case
    explanation: Explanation
    mismatches: tuple[str, ...]  # empty: the test passed

    @property
    def passed(self) -> bool:
        return not self.mismatches


def run(
    rules: RuleSet,
    cases: Sequence[Case],
    domain: Domain = PLACEHOLDER_DOMAIN,
    *,
    origin: str = "TESTS",
) -> list[Result]:
    """Every test's result with ``rules`` on ``domain``. A test whose issuer ``rules`` do not
    name is a :class:`UsageError` naming ``origin``, the test and the issuer."""
    check_issuers(cases, (rules,), origin)
    return [result_of(case, case.explain(rules, domain)) for case in cases]


def check_issuers(cases: Iterable[Case], documents: Sequence[RuleSet], origin: str) -> None:
    """Refuse a test whose issuer none of ``documents`` names: a misspelled issuer would be
    denied (``invalid-token``) and pass a test that expects a denial."""
    known = {name for rules in documents for name in rules.issuers}
    for case in cases:
        if case.issuer not in known:
            names = ", ".join(repr(name) for name in sorted(known)) or "none"
            where = "the rules" if len(documents) == 1 else "either rules document"
            raise UsageError(
                f"{origin}: test {case.name!r}: field 'issuer': {case.issuer!r} is not an "
                f"issuer of {where} ({names})"
            )


def result_of(case: Case, explanation: Explanation) -> Result:
    return Result(case, explanation, tuple(mismatches(case.expect, explanation)))


def mismatches(expect: Expect, got: Explanation) -> list[str]:
    """What differs between ``expect`` and ``got``, one entry per field ("decision", "rule"…);
    when the decision differs, only that."""
    if got.decision != expect.decision:
        return ["decision"]
    grant = got.grant
    found: dict[str, object] = {
        "rule": got.rule,
        "repository": grant.repository if grant else None,
        "access": grant.access if grant else None,
        "packages": tuple(sorted(grant.packages)) if grant else None,
        "max_duration": grant.max_duration if grant else None,
        "reason": got.reason,
    }
    wanted: dict[str, object] = {
        "rule": expect.rule,
        "repository": expect.repository,
        "access": expect.access,
        "packages": None if expect.packages is None else tuple(sorted(expect.packages)),
        "max_duration": expect.max_duration,
        "reason": expect.reason,
    }
    return [field for field, value in wanted.items() if value is not None and found[field] != value]


# --------------------------------------------------------------------------- comparing decisions


@dataclass(frozen=True)
class DecisionChange:
    """A test whose decision differs between two documents."""

    case: Case
    kind: ChangeKind
    old: Explanation
    new: Explanation


def decision_changes(
    old: RuleSet,
    new: RuleSet,
    cases: Sequence[Case],
    domain: Domain = PLACEHOLDER_DOMAIN,
    *,
    origin: str = "TESTS",
) -> list[DecisionChange]:
    """The tests (their identities and requests; their expectations do not matter) that the
    two documents decide differently on ``domain``, in the tests' order. A test whose issuer
    neither names is a :class:`UsageError` (one that only ``new`` drops is a change to show)."""
    check_issuers(cases, (old, new), origin)
    changes = []
    for case in cases:
        before, after = case.explain(old, domain), case.explain(new, domain)
        kind = change_kind(before, after)
        if kind is not None:
            changes.append(DecisionChange(case, kind, before, after))
    return changes


def dumps(value: object) -> str:
    """JSON for the command's output."""
    return json.dumps(value, indent=2, ensure_ascii=False)
