"""Why the broker allows or denies a token request: the one evaluation trace.

For an issuer, a verified caller's claims and a ``POST /v1/token`` body, :func:`explain`
decides exactly as :meth:`broker.service.Broker.token` does (its matching is
:meth:`broker.rules.RuleSet.matching`, its resolution :func:`broker.grants.parse_token_request`
and :func:`broker.grants.resolve`, and, given the deployment's domain, the request-time size
check of the chosen grant's session policy, :func:`broker.scope.session_policy`: all called
here, never copied) and adds, for every rule of the issuer, whether it matched and, if not,
each claim constraint that failed and why. Pure: no I/O, no clock; ``cabroker-admin rules
explain|test|diff`` print it, and a denial's audit line and the shadow rules use it.

A ``why`` names a claim's value (truncated) and the rule's patterns, never anything else of the
caller's: the caller's ID token is not an input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

from .grants import parse_token_request, resolve
from .problems import BrokerError, InvalidToken
from .rules import Access, ClaimConstraint, Rule, RuleSet
from .scope import Domain, session_policy

Decision = Literal["allow", "deny"]
FailureKind = Literal["missing", "type", "value"]
OVERAGE = (
    "missing claim: the IdP sent only a reference to it (_claim_names), as Entra ID does for a "
    "user in too many groups; the broker never follows one (docs/identity-providers.md)"
)
# How a second decision on a request differs from a first (change_kind).
ChangeKind = Literal["allow-to-deny", "deny-to-allow", "grant", "rule", "reason"]

MAX_SHOWN_CHARS = 60  # of one claim value or pattern in a ``why``
MAX_SHOWN_ITEMS = 5  # of a list claim's values, or of a constraint's alternatives

# A denial's audit line carries the trace (broker.service), bounded to a few KB: this many rules
# of the issuer, failures per rule, and characters per string.
AUDIT_MAX_RULES = 20
AUDIT_MAX_FAILURES = 5
AUDIT_MAX_CHARS = 300


class _NoBody(Enum):
    NO_BODY = "no body"


NO_BODY = _NoBody.NO_BODY
"""A request without a body, which the broker reads as ``{}`` (every field defaulted)."""


@dataclass(frozen=True)
class Failure:
    """One claim constraint a rule's claims do not meet."""

    claim: str
    kind: FailureKind  # missing claim, wrong type, or a value no pattern matches
    why: str

    def to_json(self) -> dict[str, Any]:
        return {"claim": self.claim, "why": self.why}


@dataclass(frozen=True)
class RuleTrace:
    """One rule of the issuer: whether the claims match it, and if not, which constraints
    fail (every one of them, in the document's order)."""

    name: str
    matched: bool
    failed: tuple[Failure, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "matched": self.matched,
            "failed": [failure.to_json() for failure in self.failed],
        }


@dataclass(frozen=True)
class Granted:
    """What the minted token could do: the resolved grant, and the chosen rule's
    ``max_duration`` (``duration_seconds`` is the request's, or else that maximum)."""

    repository: str
    access: Access
    packages: tuple[str, ...]
    duration_seconds: int
    max_duration: int

    def to_json(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "access": self.access,
            "packages": list(self.packages),
            "duration_seconds": self.duration_seconds,
            "max_duration": self.max_duration,
        }

    def describe(self) -> str:
        packages = ""
        if self.packages:
            packages = " for packages " + ", ".join(repr(p) for p in self.packages)
        return (
            f"{self.access} access to repository {self.repository!r}{packages}, "
            f"{self.duration_seconds} s (max_duration {self.max_duration})"
        )


@dataclass(frozen=True)
class Explanation:
    """The broker's decision and its trace. ``rule`` and ``grant`` are set for an allow;
    ``reason`` (a problem slug of :mod:`broker.problems`) and ``detail`` (what the broker
    would answer) for a deny."""

    issuer: str
    decision: Decision
    rule: str | None
    grant: Granted | None
    reason: str | None
    detail: str | None
    rules: tuple[RuleTrace, ...]

    @property
    def allowed(self) -> bool:
        return self.decision == "allow"

    def outcome(self) -> tuple[Any, ...]:
        """What the decision is, for comparing two: decision, rule, grant, reason."""
        grant = self.grant
        scope = None
        if grant is not None:
            packages = tuple(sorted(grant.packages))  # their order grants nothing
            scope = (grant.repository, grant.access, packages, grant.duration_seconds)
        return (self.decision, self.rule, scope, self.reason)

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "rule": self.rule,
            "grant": None if self.grant is None else self.grant.to_json(),
            "reason": self.reason,
            "detail": self.detail,
            "rules": [trace.to_json() for trace in self.rules],
        }


def explain(
    rules: RuleSet,
    issuer: str,
    claims: Mapping[str, Any],
    body: object = NO_BODY,
    *,
    who: str | None = None,
    domain: Domain | None = None,
) -> Explanation:
    """The broker's decision on a token request ``body`` (the decoded JSON; :data:`NO_BODY`
    when there is none) by a caller of ``issuer`` with ``claims``, and why.

    ``who`` names the caller in a denial's detail (by default as the broker does: the issuer
    and the ``sub`` claim). An issuer the document does not name is denied as the broker
    denies its tokens (``invalid-token``), with no rules to trace.

    ``domain``, the deployment's CodeArtifact domain, also checks that the chosen grant's
    session policy fits, as :meth:`broker.service.Broker.token` does before it mints
    (:func:`broker.scope.session_policy`; too large: ``policy-too-large``). None: not
    checked, and a grant too large to mint is reported as an allow. The broker passes its
    domain (its denial audit line and :mod:`broker.shadow`), and so do ``cabroker-admin rules
    explain|test|diff``.
    """
    if who is None:
        who = f"issuer {issuer!r} subject {claims.get('sub')!r}"
    if issuer not in rules.issuers:
        return Explanation(
            issuer=issuer,
            decision="deny",
            rule=None,
            grant=None,
            reason=InvalidToken.slug,
            detail=f"issuer {issuer!r} is not one of the rules' issuers; its tokens are refused",
            rules=(),
        )
    traces = tuple(trace(rule, claims) for rule in rules.rules if rule.issuer == issuer)
    try:
        request = parse_token_request({} if body is NO_BODY else body)
        matching = rules.matching(issuer, claims)
        resolved = resolve(matching, request, who)
        if domain is not None:
            session_policy(resolved, domain)  # refuses (PolicyTooLarge) what would not fit
    except BrokerError as refused:
        return Explanation(
            issuer=issuer,
            decision="deny",
            rule=None,
            grant=None,
            reason=refused.slug,
            detail=refused.detail,
            rules=traces,
        )
    chosen = next(rule for rule in matching if rule.name == resolved.rule)
    return Explanation(
        issuer=issuer,
        decision="allow",
        rule=resolved.rule,
        grant=Granted(
            repository=resolved.repository,
            access=resolved.access,
            packages=resolved.packages,
            duration_seconds=resolved.duration_seconds,
            max_duration=chosen.grant.max_duration,
        ),
        reason=None,
        detail=None,
        rules=traces,
    )


def audit_trace(
    traces: Sequence[RuleTrace],
    *,
    max_rules: int = AUDIT_MAX_RULES,
    max_failures: int = AUDIT_MAX_FAILURES,
    max_chars: int = AUDIT_MAX_CHARS,
) -> dict[str, Any]:
    """The rules' traces for an audit line, bounded: ``{"rules": [{"name", "matched",
    "failed": [{"claim", "why"}]}]}``, at most ``max_rules`` rules (when the issuer has more,
    those closest to matching: matched first, then the fewest failures; in the document's order)
    and ``max_failures`` failures each, every string shortened to ``max_chars``; ``more_rules``
    and a rule's ``more_failed`` count what was left out."""
    kept = list(range(len(traces)))
    if len(kept) > max_rules:
        closest = sorted(kept, key=lambda i: (not traces[i].matched, len(traces[i].failed), i))
        kept = sorted(closest[:max_rules])
    rules: list[dict[str, Any]] = []
    for index in kept:
        traced = traces[index]
        entry: dict[str, Any] = {
            "name": _cut(traced.name, max_chars),
            "matched": traced.matched,
            "failed": [
                {"claim": _cut(failure.claim, max_chars), "why": _cut(failure.why, max_chars)}
                for failure in traced.failed[:max_failures]
            ],
        }
        if len(traced.failed) > max_failures:
            entry["more_failed"] = len(traced.failed) - max_failures
        rules.append(entry)
    bounded: dict[str, Any] = {"rules": rules}
    if len(traces) > len(rules):
        bounded["more_rules"] = len(traces) - len(rules)
    return bounded


def _cut(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def change_kind(old: Explanation, new: Explanation) -> ChangeKind | None:
    """How ``new`` decides a request otherwise than ``old``, or None when it does not:
    ``allow-to-deny``, ``deny-to-allow``, ``grant`` (both allow, another repository, access,
    packages or duration), ``rule`` (both allow the same through another rule) or ``reason``
    (both deny, for another reason). ``cabroker-admin rules diff --tests`` and the broker's
    shadow rules (:mod:`broker.shadow`) compare decisions with it."""
    if old.outcome() == new.outcome():
        return None
    if old.decision != new.decision:
        return "allow-to-deny" if old.allowed else "deny-to-allow"
    if not old.allowed:
        return "reason"
    return "grant" if old.outcome()[2] != new.outcome()[2] else "rule"


def trace(rule: Rule, claims: Mapping[str, Any]) -> RuleTrace:
    """Whether ``claims`` match ``rule`` (of the caller's issuer), and every failing
    constraint."""
    failures = (failure_of(constraint, claims) for constraint in rule.constraints)
    failed = tuple(failure for failure in failures if failure is not None)
    # A failing constraint fails the rule; with none, the rule's own verdict decides.
    matched = not failed and rule.matches(rule.issuer, claims)
    return RuleTrace(name=rule.name, matched=matched, failed=failed)


def failure_of(constraint: ClaimConstraint, claims: Mapping[str, Any]) -> Failure | None:
    """Why ``claims`` do not meet ``constraint``, or ``None`` when they do."""
    name = constraint.claim
    if name not in claims:
        referenced = claims.get("_claim_names")
        if isinstance(referenced, dict) and name in referenced:
            # OpenID Connect Core §5.6.2 aggregated or distributed claims: Entra ID's groups
            # overage, for a user in more groups than its tokens carry
            return Failure(name, "missing", OVERAGE)
        return Failure(name, "missing", "missing claim")
    value = claims[name]
    if constraint.matches(value):
        return None
    needed = "where a string or a list of strings is needed"
    if isinstance(value, list):
        if not value:
            why = f"an empty list: nothing to match {_patterns(constraint)}"
            return Failure(name, "value", why)
        strings = [item for item in value if isinstance(item, str)]
        if not strings:
            kinds = sorted({_kind(item) for item in value})
            holding = f" (of {', '.join(kinds)})" if kinds else ""
            return Failure(name, "type", f"wrong type: a list with no strings{holding}, {needed}")
        shown = _items([_show(item) for item in strings])
        count = "its value" if len(strings) == 1 else f"none of its {len(strings)} values"
        verb = "does not match" if len(strings) == 1 else "matches"
        return Failure(name, "value", f"{count} {shown} {verb} {_patterns(constraint)}")
    if not isinstance(value, str):
        return Failure(name, "type", f"wrong type: {_kind(value)}, {needed}")
    return Failure(name, "value", f"value {_show(value)} does not match {_patterns(constraint)}")


def _patterns(constraint: ClaimConstraint) -> str:
    alternatives = constraint.alternatives
    if len(alternatives) == 1:
        return _show(alternatives[0])
    return "any of " + _items([_show(alternative) for alternative in alternatives])


def _items(shown: Sequence[str]) -> str:
    listed = ", ".join(shown[:MAX_SHOWN_ITEMS])
    more = len(shown) - MAX_SHOWN_ITEMS
    return listed + (f" and {more} more" if more > 0 else "")


def _show(text: str) -> str:
    """``text`` quoted on one line, shortened to :data:`MAX_SHOWN_CHARS` characters."""
    if len(text) > MAX_SHOWN_CHARS:
        return repr(text[: MAX_SHOWN_CHARS - 1]) + "…"
    return repr(text)


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"
