"""The broker's use cases over its pure modules: authenticate, list grants, mint, describe.

Builds its collaborators once per process from :class:`~broker.settings.Settings`.  Every
decision is audit-logged with who (issuer, subject, rule) and what (repository, access,
packages, expiry) plus a SHA-256 of the ID token, never the token itself.
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
from .grants import ResolvedGrant, describe_grants, parse_token_request, resolve
from .identity import Identity, IssuerKeys, Verifier, http_fetcher, token_digest
from .metrics import count
from .problems import BrokerError, InvalidToken, ServiceUnavailable
from .rules import MAX_PACKAGE_PATTERNS, RuleSet
from .rulesource import RulesSource, file_loader, ssm_loader
from .scope import Domain, session_policy
from .settings import MAX_TOKEN_SECONDS, MIN_TOKEN_SECONDS, Settings, SettingsError
from .tokens import Minter

if TYPE_CHECKING:
    from mypy_boto3_codeartifact import CodeArtifactClient
    from mypy_boto3_sts import STSClient
    from mypy_boto3_sts.type_defs import CredentialsTypeDef

    from .replay import ReplayGuard
    from .sharedcache import SharedTokens, Sharing
else:
    CodeArtifactClient = STSClient = CredentialsTypeDef = Any

logger = Logger(service="cabroker", child=True)


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
    ) -> None:
        self.settings = settings
        self._rules = rules
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
        if settings.rules_file:
            loader, description = file_loader(settings.rules_file), settings.rules_file
        else:
            parameter = settings.rules_parameter or ""  # Settings guarantees one of the two
            from .aws import client_config

            loader = ssm_loader(parameter, settings.rules_cache_seconds, client_config(settings))
            description = f"ssm:{parameter}"
        served = settings.repositories
        source = RulesSource(loader, description, check=lambda rules: check(rules, domain, served))
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
        return cls(settings, rules=source, verifier=verifier, minter=minter, replay=replay)

    def rules_loaded(self) -> RuleSet:
        """Load (and validate) the rules now rather than at the first request."""
        return self._rules.current()

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
        audit: dict[str, Any] = {
            "issuer": identity.issuer.name,
            "subject": identity.subject,
            "id_token_sha256": identity.token_sha256,
        }
        try:
            request = parse_token_request(body)
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
            count("Denials", "reason", exc.slug)
            logger.info("token denied", extra={**audit, "decision": "deny", "reason": exc.slug})
            raise
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

    def config(self) -> dict[str, Any]:
        rules = self._rules.current()
        return {
            "version": __version__,
            "issuers": [
                {
                    "name": issuer.name,
                    "url": issuer.url,
                    "audience": issuer.audience,
                    **({"client_id": issuer.client_id} if issuer.client_id else {}),
                }
                for issuer in rules.issuers.values()
            ],
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


def prepare() -> None:
    """Build the broker during the Lambda init phase (cold start), logging what is wrong."""
    with contextlib.suppress(BrokerError):  # logged already; requests answer 503 with the reason
        current().rules_loaded()


def use(broker: Broker | None) -> None:
    """Replace (or with ``None``, forget) the process's broker: for tests and the devstack."""
    global _current
    _current = broker
