"""The broker's use cases over its pure modules: authenticate, list grants, mint, describe.

Builds its collaborators once per process from :class:`~broker.settings.Settings`.  Every
decision is audit-logged with who (issuer, subject, rule) and what (repository, access,
packages, expiry) plus a SHA-256 of the ID token, never the token itself.  Every log line of an
invocation carries its ``function_request_id``, which the caller's problem body names as
``request_id``.  A token denial's line also holds what was asked (``requested``), the caller's
``detail`` and the evaluation (:func:`broker.explain.audit_trace`: each rule of the caller's
issuer, matched or the constraints that failed and why; bounded, never a token), so an admin
finds why from the request id alone (``cabroker-admin why``).  With shadow rules
(:mod:`broker.shadow`), each token decision is decided again by them afterwards, and the line
says where they differ.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from aws_lambda_powertools import Logger

from . import __version__
from .acceptance import check
from .grants import ResolvedGrant, TokenRequest, describe_grants, parse_token_request, resolve
from .identity import Identity, IssuerKeys, Verifier, http_fetcher, token_digest
from .metrics import count
from .problems import BrokerError, InvalidToken, ServiceUnavailable
from .rules import MAX_PACKAGE_PATTERNS, Issuer, RuleSet
from .rulesource import Loader, RulesSource, file_loader, ssm_loader
from .scope import Domain, session_policy
from .settings import MAX_TOKEN_SECONDS, MIN_TOKEN_SECONDS, Settings, SettingsError
from .tokens import Minter

if TYPE_CHECKING:
    from mypy_boto3_codeartifact import CodeArtifactClient
    from mypy_boto3_sts import STSClient
    from mypy_boto3_sts.type_defs import CredentialsTypeDef

    from .explain import Explanation
    from .replay import ReplayGuard
    from .shadow import Shadow
    from .sharedcache import SharedTokens, Sharing
else:
    CodeArtifactClient = STSClient = CredentialsTypeDef = Any

logger = Logger(service="cabroker", child=True)

MAX_DETAIL_CHARS = 500  # of a denial's detail on its audit line


class AwsClients(Protocol):
    """What the broker needs of AWS: an STS client and CodeArtifact clients per session."""

    @property
    def sts(self) -> STSClient: ...

    def codeartifact(self, credentials: CredentialsTypeDef) -> CodeArtifactClient: ...


@dataclass(frozen=True)
class Caller:
    identity: Identity
    rules: RuleSet

    def describe(self) -> str:
        return f"issuer {self.identity.issuer.name!r} subject {self.identity.subject!r}"


class Broker:
    def __init__(
        self,
        settings: Settings,
        *,
        rules: RulesSource,
        verifier: Verifier,
        minter: Minter,
        replay: ReplayGuard | None = None,
        shadow: Shadow | None = None,
    ) -> None:
        self.settings = settings
        self._rules = rules
        self._shadow = shadow
        self._verifier = verifier
        self._minter = minter
        self._replay = replay
        self._domain = Domain.of(settings)

    @classmethod
    def from_settings(cls, settings: Settings, clients: AwsClients | None = None) -> Broker:
        """Wire the broker as deployed; ``clients`` replaces the real AWS clients (tests)."""
        if clients is None:
            from . import aws  # boto3 is imported only when the broker is really built

            clients = aws.Clients(settings)

        domain = Domain.of(settings)
        served = settings.repositories

        def acceptable(rules: RuleSet) -> None:
            check(rules, domain, served)

        # Settings guarantee one of the two.
        loader, description = _loader(settings, settings.rules_file, settings.rules_parameter)
        source = RulesSource(loader, description, check=acceptable)
        shadow = None
        if settings.shadow_rules_file or settings.shadow_rules_parameter:
            from .shadow import Shadow

            loader, description = _loader(
                settings, settings.shadow_rules_file, settings.shadow_rules_parameter
            )
            shadow = Shadow(
                RulesSource(loader, description, check=acceptable, shadow=True),
                retry_seconds=settings.rules_cache_seconds,
                domain=domain,
            )
        keys = IssuerKeys(
            http_fetcher(settings.http_timeout_seconds),
            ttl=settings.jwks_cache_seconds,
            min_refresh_interval=settings.jwks_min_refresh_seconds,
            stale_if_error=settings.jwks_stale_seconds,
        )
        verifier = Verifier(
            keys,
            leeway=settings.clock_leeway_seconds,
            max_token_bytes=settings.max_id_token_bytes,
        )
        shared, replay = _shared_table(settings, clients)
        minter = Minter(
            sts=clients.sts,
            codeartifact=clients.codeartifact,
            role_arn=settings.role_arn,
            domain=settings.domain,
            domain_owner=settings.domain_owner,
            cache_margin_seconds=settings.token_cache_margin_seconds,
            cache_size=settings.token_cache_size,
            endpoint_cache_seconds=settings.endpoint_cache_seconds,
            shared=shared,
        )
        return cls(
            settings, rules=source, verifier=verifier, minter=minter, replay=replay, shadow=shadow
        )

    @property
    def issuer_keys(self) -> IssuerKeys:
        """The issuers' key cache requests verify with (:mod:`broker.prefetch` fills it)."""
        return self._verifier.keys

    def rules_loaded(self) -> RuleSet:
        """Load (and validate) the rules now rather than at the first request."""
        return self._rules.current()

    def shadow_loaded(self) -> RuleSet | None:
        """Load the shadow rules now, if any (never raises: a failure is logged and counted)."""
        return None if self._shadow is None else self._shadow.rules()

    # ----------------------------------------------------------------- use cases

    def authenticate(self, token: str) -> Caller:
        rules = self._rules.current()
        try:
            identity = self._verifier.verify(token, rules)
        except InvalidToken as exc:
            count("Denials", "reason", exc.slug)
            logger.info(
                "authentication failed",
                extra={
                    "decision": "deny",
                    "reason": exc.detail,
                    "id_token_sha256": token_digest(token),
                },
            )
            raise
        return Caller(identity, rules)

    def unauthenticated(self, refused: InvalidToken) -> None:
        """Audit a request refused before any ID token was read: no or a malformed
        ``Authorization`` header (the header itself is never logged)."""
        count("Denials", "reason", refused.slug)
        logger.info("authentication failed", extra={"decision": "deny", "reason": refused.detail})

    def grants(self, caller: Caller) -> dict[str, Any]:
        identity = caller.identity
        matching = caller.rules.matching(identity.issuer.name, identity.claims)
        return {
            "issuer": identity.issuer.name,
            "subject": identity.subject,
            "grants": describe_grants(matching),
        }

    def token(self, caller: Caller, body: object) -> dict[str, Any]:
        identity = caller.identity
        audit = _who(caller)
        try:
            request = parse_token_request(body)
            audit["requested"] = _requested(request)
            matching = caller.rules.matching(identity.issuer.name, identity.claims)
            grant = resolve(matching, request, caller.describe())
            audit.update(_grant_fields(grant))
            policy = session_policy(grant, self._domain)
            if self._replay is not None:
                self._replay.consume(identity)
            try:
                minted, source = self._minter.token(identity, grant, policy)
            except Exception:
                if self._replay is not None:
                    self._replay.release(identity)  # nothing was issued: the caller may retry
                raise
        except BrokerError as exc:
            self._denied(caller, audit, exc, body)
            raise
        if self._shadow is not None:
            live = _explained(caller, body, self._domain)
            if live is not None:
                audit.update(self._shadow.evaluate(identity, live, body, caller.describe()))
        expires_at = _rfc3339(minted.expires_at)
        logger.info(
            "token issued",
            extra={
                **audit,
                "decision": "allow",
                "expires_at": expires_at,
                "cached": source != "minted",
                "source": source,
                # What CloudTrail shows for this token's use (another caller's, when shared
                # per grant): the join key between this audit line and CloudTrail.
                "session": minted.session,
            },
        )
        count("TokensIssued", "access", grant.access)
        if source != "minted":
            count("TokenCacheHits", "access", grant.access)
        if source == "shared":
            count("SharedCacheHits", "access", grant.access)
        return {
            "token": minted.token,
            "expires_at": expires_at,
            "username": "aws",
            "repository": grant.repository,
            "access": grant.access,
            "packages": list(grant.packages),
            "index_url": minted.endpoint + "simple/",
            "upload_url": minted.endpoint,
            "domain": self.settings.domain,
            "domain_owner": self.settings.domain_owner,
            "region": self.settings.region,
        }

    def refuse(self, caller: Caller, refused: BrokerError) -> None:
        """Audit a token request refused before its body could be read (too large, not JSON,
        another media type): the rules' trace is the claims' alone, and no shadow decides."""
        from .explain import NO_BODY

        self._denied(caller, _who(caller), refused, NO_BODY, shadow=False)

    def _denied(
        self,
        caller: Caller,
        audit: dict[str, Any],
        refused: BrokerError,
        body: object,
        *,
        shadow: bool = True,
    ) -> None:
        """Count a token denial and write its audit line: the reason, the caller's detail and
        the evaluation of the caller's issuer's rules (and the shadow's, if it differs)."""
        from .explain import audit_trace  # loaded at the first denial, not at cold start

        audit.update(decision="deny", reason=refused.slug, detail=_shorten(refused.detail))
        live = _explained(caller, body, self._domain)
        if live is not None:
            audit["evaluation"] = audit_trace(live.rules)
            if shadow and self._shadow is not None:
                audit.update(self._shadow.evaluate(caller.identity, live, body, caller.describe()))
        count("Denials", "reason", refused.slug)
        logger.info("token denied", extra=audit)

    def config(self) -> dict[str, Any]:
        rules = self._rules.current()
        return {
            "version": __version__,
            "issuers": [public_issuer(issuer) for issuer in rules.issuers.values()],
            "repositories": rules.repositories(),
            "domain": self.settings.domain,
            "domain_owner": self.settings.domain_owner,
            "region": self.settings.region,
            "limits": {
                "min_duration_seconds": MIN_TOKEN_SECONDS,
                "max_duration_seconds": MAX_TOKEN_SECONDS,
                "max_package_patterns": MAX_PACKAGE_PATTERNS,
                "max_id_token_bytes": self.settings.max_id_token_bytes,
                "max_body_bytes": self.settings.max_body_bytes,
            },
        }


def _shared_table(
    settings: Settings, clients: AwsClients
) -> tuple[SharedTokens | None, ReplayGuard | None]:
    """The shared token cache and the replay guard, when the settings turn them on."""
    if not settings.cache_table:
        return None, None
    from botocore.config import Config

    from . import aws
    from .replay import ReplayGuard
    from .sharedcache import SharedCacheSettings, SharedTokens

    # The function's own clients carry its configuration and deadline; test doubles that
    # only stand in for STS and CodeArtifact get real clients here (moto in the tests).
    real = clients if isinstance(clients, aws.Clients) else aws.Clients(settings)
    shared = None
    if settings.shared_cache != "off" and settings.cache_key_id:
        sharing: Sharing = "grant" if settings.shared_cache == "grant" else "subject"
        # The cache is an optimisation: a slow table or key must not eat the request's time.
        quick = Config(
            connect_timeout=0.5,
            read_timeout=1.0,
            retries={"mode": "adaptive", "total_max_attempts": 2},
        )
        namespace = (settings.role_arn, settings.domain, settings.domain_owner, settings.region)
        shared = SharedTokens(
            SharedCacheSettings(settings.cache_table, settings.cache_key_id, sharing, namespace),
            dynamodb=real.client("dynamodb", config=quick),
            kms=real.client("kms", config=quick),
        )
    replay = None
    if settings.replay_guard:
        replay = ReplayGuard(
            real.client("dynamodb"),
            settings.cache_table,
            leeway_seconds=settings.clock_leeway_seconds,
            # within the deadline's margin, whatever is left of the request
            release_client=real.client(
                "dynamodb",
                config=Config(
                    connect_timeout=0.2,
                    read_timeout=0.25,
                    retries={"mode": "standard", "total_max_attempts": 1},
                ),
                bounded=False,
            ),
        )
    return shared, replay


def _loader(settings: Settings, file: str | None, parameter: str | None) -> tuple[Loader, str]:
    """How to read a rules document (a file, else an SSM parameter), and its description."""
    if file:
        return file_loader(file), file
    from .aws import client_config

    name = parameter or ""
    return ssm_loader(name, settings.rules_cache_seconds, client_config(settings)), f"ssm:{name}"


def _who(caller: Caller) -> dict[str, Any]:
    identity = caller.identity
    return {
        "issuer": identity.issuer.name,
        "subject": identity.subject,
        "id_token_sha256": identity.token_sha256,
    }


def _requested(request: TokenRequest) -> dict[str, Any]:
    """What the request named (the fields it left out default from the rule)."""
    named = {
        "repository": request.repository,
        "access": request.access,
        "packages": None if request.packages is None else list(request.packages),
        "duration_seconds": request.duration_seconds,
    }
    return {name: value for name, value in named.items() if value is not None}


def _explained(caller: Caller, body: object, domain: Domain) -> Explanation | None:
    """The live rules' decision on the request, traced (:mod:`broker.explain`, with the
    session-policy size check :meth:`Broker.token` makes, so a ``policy-too-large`` denial is
    explained as one); None if the trace itself failed (a bug: logged, and never the caller's
    answer)."""
    from .explain import explain

    identity = caller.identity
    try:
        return explain(
            caller.rules,
            identity.issuer.name,
            identity.claims,
            body,
            who=caller.describe(),
            domain=domain,
        )
    except Exception:  # an audit detail must never change the answer
        logger.exception("the evaluation trace failed")
        return None


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 1] + "…"


def _grant_fields(grant: ResolvedGrant) -> Mapping[str, Any]:
    return {
        "rule": grant.rule,
        "repository": grant.repository,
        "access": grant.access,
        "packages": list(grant.packages),
        "duration_seconds": grant.duration_seconds,
    }


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# ----------------------------------------------------------------- the process's broker

_current: Broker | None = None


def current() -> Broker:
    """The broker of this process, built at first use from the environment.

    Bad settings are a deployment error: they are logged loudly and every request answers 503
    until the function is fixed, rather than failing in a way the caller cannot read.
    """
    global _current
    if _current is None:
        try:
            _current = Broker.from_settings(Settings.from_env(os.environ))
        except SettingsError as exc:
            logger.critical("invalid broker settings", extra={"reason": str(exc)})
            raise ServiceUnavailable(
                "the broker is misconfigured; an admin has been alerted", retry_after=60
            ) from None
    return _current


def prepare() -> bool:
    """Build the broker during the Lambda init phase (cold start), logging what is wrong;
    whether it is ready (its settings and rules usable)."""
    with contextlib.suppress(BrokerError):  # logged already; requests answer 503 with the reason
        broker = current()
        broker.rules_loaded()
        broker.shadow_loaded()
        return True
    return False


def use(broker: Broker | None) -> None:
    """Replace (or with ``None``, forget) the process's broker: for tests and the devstack."""
    global _current
    _current = broker


def public_issuer(issuer: Issuer) -> dict[str, Any]:
    """What ``/v1/config`` tells every client about ``issuer``; for an interactive one, what a
    device login needs: the client id, the scopes and any public client secret."""
    public: dict[str, Any] = {"name": issuer.name, "url": issuer.url, "audience": issuer.audience}
    if issuer.client_id:
        public.update(client_id=issuer.client_id, scopes=list(issuer.scopes))
        if issuer.client_secret:
            public["client_secret"] = issuer.client_secret
    return public
