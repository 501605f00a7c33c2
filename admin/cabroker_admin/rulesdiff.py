"""What a change of the rules document grants: issuers and rules added, removed or changed,
and for each changed rule whether it now grants more (widened), less (narrowed) or something
else (changed). Rules are compared by name, never by position (their order decides nothing).

A rule is *wider* when its grant's access went from read to publish, its packages gained a
pattern no old one covers, its ``max_duration`` grew, or a claim constraint was dropped or
accepts a value it did not. Whether a new claim alternative is covered by the old constraint
is the constraint's own matching (:meth:`broker.rules.ClaimConstraint.matches`) applied to the
alternative's text: a glob whose text an old glob matches can only match what that glob
matches, since every ``*`` of it falls inside one ``*`` of the old glob. When the comparison
cannot tell, the change is "changed".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from broker import names
from broker.rules import ClaimConstraint, Grant, Issuer, Rule, RuleSet

Direction = Literal["wider", "narrower", "changed"]
Verdict = Literal["widened", "narrowed", "changed"]
VERDICT: Mapping[Direction, Verdict] = {
    "wider": "widened",
    "narrower": "narrowed",
    "changed": "changed",
}


@dataclass(frozen=True)
class Change:
    """One difference of a rule: ``what`` (``grant.access``, ``claims.ref``…), its direction,
    and in words."""

    what: str
    direction: Direction
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"what": self.what, "direction": self.direction, "detail": self.detail}


@dataclass(frozen=True)
class RuleChange:
    name: str
    verdict: Verdict
    changes: tuple[Change, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict,
            "changes": [change.to_json() for change in self.changes],
        }


@dataclass(frozen=True)
class IssuerChange:
    name: str
    changes: tuple[str, ...]  # "url 'https://a' → 'https://b'"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "changes": list(self.changes)}


@dataclass(frozen=True)
class RulesDiff:
    issuers_added: tuple[str, ...]
    issuers_removed: tuple[str, ...]
    issuers_changed: tuple[IssuerChange, ...]
    rules_added: tuple[Rule, ...]
    rules_removed: tuple[Rule, ...]
    rules_changed: tuple[RuleChange, ...]
    rules_unchanged: int

    @property
    def empty(self) -> bool:
        return not (
            self.issuers_added
            or self.issuers_removed
            or self.issuers_changed
            or self.rules_added
            or self.rules_removed
            or self.rules_changed
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "issuers": {
                "added": list(self.issuers_added),
                "removed": list(self.issuers_removed),
                "changed": [change.to_json() for change in self.issuers_changed],
            },
            "rules": {
                "added": [rule_json(rule) for rule in self.rules_added],
                "removed": [rule_json(rule) for rule in self.rules_removed],
                "changed": [change.to_json() for change in self.rules_changed],
                "unchanged": self.rules_unchanged,
            },
        }


def diff(old: RuleSet, new: RuleSet) -> RulesDiff:
    """What ``new`` grants differently from ``old``."""
    before = {rule.name: rule for rule in old.rules}
    after = {rule.name: rule for rule in new.rules}
    changed = []
    unchanged = 0
    for rule in new.rules:
        if rule.name not in before:
            continue
        changes = rule_changes(before[rule.name], rule)
        if changes:
            changed.append(RuleChange(rule.name, verdict(changes), changes))
        else:
            unchanged += 1
    issuers_changed = tuple(
        IssuerChange(name, fields)
        for name, issuer in new.issuers.items()
        if name in old.issuers and (fields := issuer_changes(old.issuers[name], issuer))
    )
    return RulesDiff(
        issuers_added=tuple(name for name in new.issuers if name not in old.issuers),
        issuers_removed=tuple(name for name in old.issuers if name not in new.issuers),
        issuers_changed=issuers_changed,
        rules_added=tuple(rule for rule in new.rules if rule.name not in before),
        rules_removed=tuple(rule for rule in old.rules if rule.name not in after),
        rules_changed=tuple(changed),
        rules_unchanged=unchanged,
    )


def verdict(changes: tuple[Change, ...]) -> Verdict:
    directions = {change.direction for change in changes}
    return VERDICT[directions.pop()] if len(directions) == 1 else "changed"


def issuer_changes(old: Issuer, new: Issuer) -> tuple[str, ...]:
    changes = [
        f"{field} {getattr(old, field)!r} → {getattr(new, field)!r}"
        for field in ("url", "audience", "client_id", "scopes")
        if getattr(old, field) != getattr(new, field)
    ]
    if old.client_secret != new.client_secret:  # public, but a diff need not repeat it
        changes.append("client_secret changed")
    return tuple(changes)


def rule_changes(old: Rule, new: Rule) -> tuple[Change, ...]:
    changes: list[Change] = []
    if old.issuer != new.issuer:
        changes.append(Change("issuer", "changed", f"{old.issuer!r} → {new.issuer!r}"))
    changes += grant_changes(old.grant, new.grant)
    changes += claim_changes(old.constraints, new.constraints)
    return tuple(changes)


def grant_changes(old: Grant, new: Grant) -> list[Change]:
    changes: list[Change] = []
    if old.repository != new.repository:
        changes.append(
            Change("grant.repository", "changed", f"{old.repository!r} → {new.repository!r}")
        )
    if old.access != new.access:
        direction: Direction = "wider" if new.access == "publish" else "narrower"
        changes.append(Change("grant.access", direction, f"{old.access} → {new.access}"))
    elif new.access == "publish":
        gained = [p for p in new.packages if not any(names.covers(g, p) for g in old.packages)]
        lost = [p for p in old.packages if not any(names.covers(g, p) for g in new.packages)]
        if gained or lost:
            changes.append(Change("grant.packages", _direction(gained, lost), _gains(gained, lost)))
    if old.max_duration != new.max_duration:
        direction = "wider" if new.max_duration > old.max_duration else "narrower"
        changes.append(
            Change("grant.max_duration", direction, f"{old.max_duration} → {new.max_duration} s")
        )
    return changes


def claim_changes(
    old: tuple[ClaimConstraint, ...], new: tuple[ClaimConstraint, ...]
) -> list[Change]:
    before = {constraint.claim: constraint for constraint in old}
    after = {constraint.claim: constraint for constraint in new}
    changes: list[Change] = []
    for claim, constraint in before.items():
        if claim not in after:
            changes.append(
                Change(
                    f"claims.{claim}", "wider", f"no longer constrained (was {_alts(constraint)})"
                )
            )
    for claim, constraint in after.items():
        if claim not in before:
            changes.append(
                Change(f"claims.{claim}", "narrower", f"newly constrained to {_alts(constraint)}")
            )
            continue
        previous = before[claim]
        gained = [a for a in constraint.alternatives if not covers(previous, a)]
        lost = [a for a in previous.alternatives if not covers(constraint, a)]
        if gained or lost:
            changes.append(
                Change(f"claims.{claim}", _direction(gained, lost), _accepts(gained, lost))
            )
    return changes


def covers(constraint: ClaimConstraint, alternative: str) -> bool:
    """Whether ``constraint`` matches every value that ``alternative`` (an alternative of a
    constraint on the same claim) matches: the constraint's own matching applied to the
    alternative's text (module docstring). ``False`` means cannot tell, not "does not"."""
    return constraint.matches(alternative)


def rule_json(rule: Rule) -> dict[str, Any]:
    grant = rule.grant
    return {
        "name": rule.name,
        "issuer": rule.issuer,
        "claims": {c.claim: list(c.alternatives) for c in rule.constraints},
        "grant": {
            "repository": grant.repository,
            "access": grant.access,
            "packages": list(grant.packages),
            "max_duration": grant.max_duration,
        },
    }


def describe_grant(grant: Grant) -> str:
    packages = ""
    if grant.packages:
        packages = " for packages " + ", ".join(repr(p) for p in grant.packages)
    return (
        f"{grant.access} access to repository {grant.repository!r}{packages}, "
        f"max_duration {grant.max_duration} s"
    )


def _direction(gained: list[str], lost: list[str]) -> Direction:
    if gained and lost:
        return "changed"
    return "wider" if gained else "narrower"


def _gains(gained: list[str], lost: list[str]) -> str:
    parts = []
    if gained:
        parts.append("gains " + ", ".join(repr(p) for p in gained))
    if lost:
        parts.append("loses " + ", ".join(repr(p) for p in lost))
    return "; ".join(parts)


def _accepts(gained: list[str], lost: list[str]) -> str:
    parts = []
    if gained:
        parts.append("now accepts " + ", ".join(repr(a) for a in gained))
    if lost:
        parts.append("no longer accepts " + ", ".join(repr(a) for a in lost))
    return "; ".join(parts)


def _alts(constraint: ClaimConstraint) -> str:
    return ", ".join(repr(a) for a in constraint.alternatives)
