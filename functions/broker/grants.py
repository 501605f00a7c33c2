"""Phase two: what a verified caller asked for, narrowed to exactly one grant.

A token request names any of repository, access, packages and duration; what it leaves out
defaults from the matching rule.  Each matching rule either covers the request (giving one
concrete grant) or does not; the request succeeds only when exactly one distinct grant remains.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import names
from .problems import AmbiguousRequest, GrantExceeded, InvalidRequest, NoMatchingRule
from .rules import ACCESS_LEVELS, Access, Rule, RulesError, package_patterns
from .settings import MAX_TOKEN_SECONDS, MIN_TOKEN_SECONDS, REPOSITORY_NAME, is_token_duration

REQUEST_FIELDS = frozenset({"repository", "access", "packages", "duration_seconds"})


@dataclass(frozen=True)
class TokenRequest:
    repository: str | None = None
    access: Access | None = None
    packages: tuple[str, ...] | None = None  # normalized patterns
    duration_seconds: int | None = None

    def describe(self) -> str:
        parts = [f"{self.access or 'any'} access"]
        parts.append(f"to repository {self.repository!r}" if self.repository else "")
        if self.packages:
            parts.append("for packages " + ", ".join(repr(p) for p in self.packages))
        if self.duration_seconds:
            parts.append(f"for {self.duration_seconds} s")
        return " ".join(p for p in parts if p)


@dataclass(frozen=True)
class ResolvedGrant:
    """One concrete grant: what the minted token may do, and for how long."""

    rule: str
    repository: str
    access: Access
    packages: tuple[str, ...]
    duration_seconds: int

    def key(self) -> tuple[str, Access, tuple[str, ...], int]:
        """What the minted token can do and for how long (the rule's name does not matter)."""
        return (self.repository, self.access, self.packages, self.duration_seconds)

    def as_choice(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "access": self.access,
            "packages": list(self.packages),
        }


def parse_token_request(body: object) -> TokenRequest:
    """Validate a decoded JSON body; every field is optional, unknown fields are refused."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    unknown = sorted(str(k) for k in body if k not in REQUEST_FIELDS)
    if unknown:
        raise InvalidRequest(
            f"unknown field(s) {', '.join(unknown)}; accepted: {', '.join(sorted(REQUEST_FIELDS))}"
        )
    repository = body.get("repository")
    if repository is not None and (
        not isinstance(repository, str) or not REPOSITORY_NAME.fullmatch(repository)
    ):
        raise InvalidRequest("'repository' must be a CodeArtifact repository name")
    access = body.get("access")
    if access is not None and access not in ACCESS_LEVELS:
        raise InvalidRequest("'access' must be 'read' or 'publish'")
    packages: tuple[str, ...] | None = None
    if body.get("packages") is not None:
        if access == "read":
            raise InvalidRequest("'packages' applies to publish only; read is repository-wide")
        try:
            packages = package_patterns(body["packages"], "'packages'")
        except RulesError as exc:
            raise InvalidRequest(str(exc)) from None
    duration = body.get("duration_seconds")
    if isinstance(duration, float) and duration.is_integer():
        duration = int(duration)  # JSON has one number type: 3600.0 is the integer 3600
    if duration is not None and not is_token_duration(duration):
        raise InvalidRequest(
            f"'duration_seconds' must be a whole number from {MIN_TOKEN_SECONDS} to "
            f"{MAX_TOKEN_SECONDS}"
        )
    return TokenRequest(
        repository=repository,
        access=access,
        packages=packages,
        duration_seconds=duration,
    )


def resolve(matching: Sequence[Rule], request: TokenRequest, who: str) -> ResolvedGrant:
    """Narrow the caller's matching rules to the single grant the request means."""
    if not matching:
        raise NoMatchingRule(f"no access rule matches {who}; ask an admin for access")
    # Rules that yield the same scope are one choice; the longest default duration wins.
    candidates: dict[tuple[str, Access, tuple[str, ...]], ResolvedGrant] = {}
    for rule in matching:
        grant = _narrow(rule, request)
        if grant is None:
            continue
        scope = grant.key()[:3]
        known = candidates.get(scope)
        if known is None or grant.duration_seconds > known.duration_seconds:
            candidates[scope] = grant
    if not candidates:
        raise GrantExceeded(
            f"no rule that matches {who} grants {request.describe()}; "
            "GET /v1/grants lists what you may ask for"
        )
    if len(candidates) > 1:
        choices = [g.as_choice() for g in candidates.values()]
        raise AmbiguousRequest(
            f"{len(choices)} grants match {request.describe()}; name the repository, access "
            "or packages you want",
            choices=choices,
        )
    return next(iter(candidates.values()))


def _narrow(rule: Rule, request: TokenRequest) -> ResolvedGrant | None:
    grant = rule.grant
    if request.repository is not None and request.repository != grant.repository:
        return None
    access: Access = request.access or grant.access
    if access == "publish" and grant.access != "publish":
        return None
    packages: tuple[str, ...] = ()
    if access == "publish":
        packages = request.packages or grant.packages
        if not all(any(names.covers(g, p) for g in grant.packages) for p in packages):
            return None
    elif request.packages:
        return None  # a read rule cannot honour a request that names packages
    duration = request.duration_seconds or grant.max_duration
    if duration > grant.max_duration:
        return None
    return ResolvedGrant(
        rule=rule.name,
        repository=grant.repository,
        access=access,
        packages=packages,
        duration_seconds=duration,
    )


def describe_grants(matching: Sequence[Rule]) -> list[Mapping[str, Any]]:
    """What a caller may ask for (for ``GET /v1/grants``): never the rules' claim patterns."""
    return [
        {
            "rule": rule.name,
            "repository": rule.grant.repository,
            "access": rule.grant.access,
            "packages": list(rule.grant.packages),
            "max_duration_seconds": rule.grant.max_duration,
        }
        for rule in matching
    ]
