"""Shadow rules: a second rules document, decided after every live decision, never changing it.

An admin stages a changed rule set (``BROKER_SHADOW_RULES_PARAMETER`` or
``BROKER_SHADOW_RULES_FILE``) beside the live one. After the live decision on a
``POST /v1/token`` by a verified caller, the shadow document decides the same request with
:func:`broker.explain.explain` (the one evaluation), and where its decision or grant differs
the request's audit line says how (:meth:`Shadow.evaluate`) and the metric
``ShadowDisagreements`` counts it, by ``kind`` (:func:`broker.explain.change_kind`, as
``cabroker-admin rules diff --tests`` names changes):

- ``allow-to-deny``: the live rules allow, the shadow would deny (whom a promotion locks out);
- ``deny-to-allow``: the live rules deny, the shadow would allow;
- ``grant``: both allow, but another repository, access, packages or duration;
- ``rule``: both allow the same, through a rule of another name.

Two denials for different reasons agree: neither grants anything.

The shadow never changes an answer: it runs once the live decision is made, and whatever goes
wrong (its document unavailable or invalid, no time left, a bug) is logged, counted
(``ShadowErrors`` by ``reason``) and skipped. A failed load is not retried for ``retry_seconds``,
so a parameter not pushed yet costs an instance one read per period, not one per request.

The caller's ID token was verified for the live rules' issuer. The shadow document trusts it when
it names an issuer of the same URL (whatever its name) whose audience the token carries and whose
authorized-party check (:func:`broker.tokenshape.check_authorized_party`) it passes; otherwise the
shadow would refuse the token (``invalid-token``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger

from .explain import ChangeKind, Explanation, audit_trace, change_kind, explain
from .identity import Identity
from .metrics import count
from .problems import BrokerError, InvalidToken
from .rules import RuleSet
from .rulesource import RulesSource
from .scope import Domain
from .tokenshape import audiences_of, check_authorized_party

logger = Logger(service="cabroker", child=True)


class Shadow:
    """The shadow rules document and its evaluation; :meth:`evaluate` never raises."""

    def __init__(
        self,
        source: RulesSource,
        *,
        retry_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        domain: Domain | None = None,
    ) -> None:
        """``domain``: the deployment's, for the session-policy size check the live decision
        makes too (:func:`broker.explain.explain`); None: not checked."""
        self._source = source
        self._domain = domain
        self._retry = retry_seconds
        self._clock = clock
        self._quiet_until = float("-inf")

    def rules(self) -> RuleSet | None:
        """The shadow document, or None when it cannot be had now (logged and counted once per
        attempt; the next attempt comes ``retry_seconds`` later)."""
        now = self._clock()
        if now < self._quiet_until:
            return None
        try:
            return self._source.current()
        except BrokerError as error:  # logged by the source (or out of time)
            reason = error.slug
        except Exception as error:  # noqa: BLE001 - the shadow must never fail a request
            logger.error("shadow rules could not be loaded", extra={"error": type(error).__name__})
            reason = "load-failed"
        count("ShadowErrors", "reason", reason)
        self._quiet_until = now + self._retry
        return None

    def evaluate(
        self, identity: Identity, live: Explanation, body: object, who: str
    ) -> dict[str, Any]:
        """The audit fields of the shadow's decision on the request ``live`` decided: empty when
        the two agree or the shadow could not decide."""
        try:
            rules = self.rules()
            if rules is None:
                return {}
            shadow = decide(rules, identity, body, who, domain=self._domain)
            kind = disagreement(live, shadow)
            if kind is None:
                return {}
            count("ShadowDisagreements", "kind", kind)
            return fields(kind, shadow)
        except Exception:  # the shadow must never fail a request
            logger.exception("shadow evaluation failed")
            count("ShadowErrors", "reason", "evaluation-failed")
            return {}


def decide(
    rules: RuleSet, identity: Identity, body: object, who: str, *, domain: Domain | None = None
) -> Explanation:
    """The shadow document's decision on a request of the verified ``identity``."""
    issuer = rules.issuer_for_url(identity.issuer.url)
    refused: str | None = None
    if issuer is None:
        refused = f"the shadow rules trust no issuer at {identity.issuer.url}"
    elif issuer.audience not in audiences_of(identity.claims):
        refused = (
            f"the ID token's audience is not {issuer.audience!r} of shadow issuer {issuer.name!r}"
        )
    else:
        try:
            check_authorized_party(identity.claims, issuer)
        except InvalidToken as error:
            refused = error.detail
    if issuer is None or refused is not None:
        return Explanation(
            issuer=identity.issuer.name,
            decision="deny",
            rule=None,
            grant=None,
            reason=InvalidToken.slug,
            detail=refused,
            rules=(),
        )
    return explain(rules, issuer.name, identity.claims, body, who=who, domain=domain)


def disagreement(live: Explanation, shadow: Explanation) -> ChangeKind | None:
    """How the shadow's decision differs from the live one, or None when it does not: two
    denials agree, whatever their reasons."""
    kind = change_kind(live, shadow)
    return None if kind == "reason" else kind


def fields(kind: ChangeKind, shadow: Explanation) -> dict[str, Any]:
    """The audit line's account of a disagreement (the shadow's trace when it would deny)."""
    found: dict[str, Any] = {
        "shadow_disagreement": kind,
        "shadow_decision": shadow.decision,
        "shadow_rule": shadow.rule,
        "shadow_reason": shadow.reason,
    }
    if shadow.grant is not None:
        found["shadow_grant"] = shadow.grant.to_json()
    if not shadow.allowed:
        found["shadow_evaluation"] = audit_trace(shadow.rules)
    return found
