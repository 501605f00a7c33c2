"""Minting: sts:AssumeRole with the grant's session policy, then GetAuthorizationToken.

Two in-memory caches per Lambda instance (documented in docs/architecture.md):
- minted tokens per (issuer, subject, grant), reused while at least half of the requested
  lifetime, and at least the safety margin, remains; bounded in size (least recently used out);
- repository endpoints per repository, for a TTL.

Behind the first, optionally, the cache shared by all instances (:mod:`broker.sharedcache`),
which makes concurrent misses across the fleet mint once.

AWS errors become :class:`~broker.problems.ServiceUnavailable` (503 with ``Retry-After``);
nothing an AWS error says reaches the caller beyond its error code.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from .minted import MintedToken
from .problems import PolicyTooLarge, ServiceUnavailable

if TYPE_CHECKING:
    from mypy_boto3_codeartifact import CodeArtifactClient
    from mypy_boto3_sts import STSClient
    from mypy_boto3_sts.type_defs import CredentialsTypeDef

    from .grants import ResolvedGrant
    from .identity import Identity
    from .sharedcache import SharedTokens
else:
    CodeArtifactClient = STSClient = CredentialsTypeDef = Any

logger = Logger(service="cabroker", child=True)

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
    }
)
SESSION_SECONDS = 900  # the assumed session only has to live until GetAuthorizationToken
_SESSION_NAME_UNSAFE = re.compile(r"[^\w+=,.@-]+", re.ASCII)

CodeArtifactFactory = Callable[[CredentialsTypeDef], CodeArtifactClient]


Source = Literal["minted", "memory", "shared"]  # where a token handed out came from

__all__ = ["MintedToken", "Minter", "Source", "aws_error_code", "session_name"]


def session_name(issuer_name: str, subject: str) -> str:
    """RoleSessionName / SourceIdentity for a caller: AWS's charset, 2 to 64 characters.

    Readable where possible; when the sanitized name would be too long, its tail is replaced by
    a hash of the full subject, so two callers never share a name by truncation.
    """
    name = f"{issuer_name}.{_SESSION_NAME_UNSAFE.sub('-', subject)}"
    if len(name) <= 64:
        return name
    digest = hashlib.sha256(f"{issuer_name}\0{subject}".encode()).hexdigest()[:16]
    return f"{name[:47]}-{digest}"


class Minter:
    def __init__(
        self,
        *,
        sts: STSClient,
        codeartifact: CodeArtifactFactory,
        role_arn: str,
        domain: str,
        domain_owner: str,
        cache_margin_seconds: int,
        cache_size: int,
        endpoint_cache_seconds: int,
        shared: SharedTokens | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sts = sts
        self._codeartifact = codeartifact
        self._role_arn = role_arn
        self._domain = domain
        self._owner = domain_owner
        self._margin = cache_margin_seconds
        self._cache_size = cache_size
        self._endpoint_ttl = endpoint_cache_seconds
        self._shared = shared
        self._clock = clock
        self._tokens: OrderedDict[tuple[Any, ...], MintedToken] = OrderedDict()
        self._endpoints: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def token(
        self, identity: Identity, grant: ResolvedGrant, policy: str
    ) -> tuple[MintedToken, Source]:
        """A token for ``grant``, and where it came from: this instance's memory, the shared
        cache, or a mint."""
        key = (identity.issuer.url, identity.subject, grant.key())
        cached = self._cached(key, grant.duration_seconds)
        if cached is not None:
            return cached, "memory"
        source: Source
        if self._shared is None:
            minted, source = self._mint(identity, grant, policy), "minted"
        else:
            minted, source = self._shared.get_or_mint(
                self._shared.key(identity, grant),
                lambda: self._mint(identity, grant, policy),
                lambda found: self._fresh(found, grant.duration_seconds),
            )
        if self._cache_size:
            with self._lock:
                self._tokens[key] = minted
                self._tokens.move_to_end(key)
                while len(self._tokens) > self._cache_size:
                    self._tokens.popitem(last=False)
        return minted, source

    def _fresh(self, minted: MintedToken, duration: int) -> bool:
        """Worth handing out: half the requested lifetime, and the safety margin, remain."""
        remaining = minted.expires_at.timestamp() - self._clock()
        return remaining >= max(self._margin, duration / 2)

    def _cached(self, key: tuple[Any, ...], duration: int) -> MintedToken | None:
        with self._lock:
            minted = self._tokens.get(key)
            if minted is None:
                return None
            if self._fresh(minted, duration):
                self._tokens.move_to_end(key)
                return minted
            del self._tokens[key]
            return None

    def _mint(self, identity: Identity, grant: ResolvedGrant, policy: str) -> MintedToken:
        name = session_name(identity.issuer.name, identity.subject)
        with _aws_errors("sts:AssumeRole"):
            assumed = self._sts.assume_role(
                RoleArn=self._role_arn,
                RoleSessionName=name,
                SourceIdentity=name,
                Policy=policy,
                DurationSeconds=SESSION_SECONDS,
            )
        client = self._codeartifact(assumed["Credentials"])
        endpoint = self._endpoint(client, grant.repository)
        with _aws_errors("codeartifact:GetAuthorizationToken"):
            answer = client.get_authorization_token(
                domain=self._domain,
                domainOwner=self._owner,
                durationSeconds=grant.duration_seconds,
            )
        return MintedToken(
            token=answer["authorizationToken"],
            expires_at=answer["expiration"].astimezone(UTC),
            endpoint=endpoint,
            session=name,
        )

    def _endpoint(self, client: CodeArtifactClient, repository: str) -> str:
        now = self._clock()
        with self._lock:
            cached = self._endpoints.get(repository)
        if cached is not None and now - cached[1] < self._endpoint_ttl:
            return cached[0]
        with _aws_errors("codeartifact:GetRepositoryEndpoint"):
            answer = client.get_repository_endpoint(
                domain=self._domain,
                domainOwner=self._owner,
                repository=repository,
                format="pypi",
            )
        url = answer["repositoryEndpoint"]
        url = url if url.endswith("/") else url + "/"
        with self._lock:
            self._endpoints[repository] = (url, now)
        return url


def aws_error_code(error: ClientError) -> str:
    """The error code an AWS service answered (``Unknown`` when it gave none)."""
    return str(error.response.get("Error", {}).get("Code", "Unknown"))


@contextmanager
def _aws_errors(operation: str) -> Iterator[None]:
    """Map AWS failures to problems: throttling and outages are 503, never 500."""
    try:
        yield
    except ClientError as exc:
        code = aws_error_code(exc)
        if code == "PackedPolicyTooLarge":
            raise PolicyTooLarge(
                "the session policy for this grant is too large for AWS; "
                "ask for fewer or broader package patterns"
            ) from None
        throttled = code in THROTTLING_CODES
        logger.error("AWS call failed", extra={"operation": operation, "error_code": code})
        raise ServiceUnavailable(
            f"{operation} is {'throttled' if throttled else 'unavailable'} ({code}); "
            "try again shortly",
            retry_after=2 if throttled else 5,
        ) from None
    except BotoCoreError as exc:
        logger.error("AWS call failed", extra={"operation": operation, "error": type(exc).__name__})
        raise ServiceUnavailable(
            f"{operation} could not be reached; try again shortly", retry_after=5
        ) from None
