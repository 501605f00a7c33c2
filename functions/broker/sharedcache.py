"""A token cache shared by every instance of the function: DynamoDB, tokens encrypted by KMS.

The per-instance memory cache (:class:`broker.tokens.Minter`) answers first; on a miss, this
table does; on a miss there, *one* instance mints (single flight) while the others wait for
what it writes. A burst of CI jobs over a warm fleet therefore costs about one
GetAuthorizationToken per distinct cache key instead of one per instance (``bench/fleet.py``).

Items in the table (partition key ``pk``, DynamoDB TTL on ``ttl``):

- ``token#<sha256 of the cache key>``: the token encrypted by KMS with an encryption context
  that names the item (a ciphertext copied to another item does not decrypt), its expiry, the
  repository endpoint, and ``session``: the RoleSessionName/SourceIdentity that minted it,
  which is what CloudTrail shows for everything the token does.
- ``lease#<sha256>``: taken with a conditional write by the instance that mints; it lapses by
  itself if that instance dies.
- ``jti#…`` items belong to the replay guard (:mod:`broker.replay`), on the same table.

Sharing (``BROKER_SHARED_CACHE``; docs/admin.md discusses the trade-off):

- ``subject``: the key is the issuer, the subject and the grant. A token is only ever handed to
  the caller it was minted for, so CloudTrail attribution stays exact. The burst saving comes
  from jobs of the same pipeline (same subject) landing on different instances.
- ``grant``: the key is the grant alone (repository, access, package patterns, lifetime).
  Callers with identical grants share one token: fewest mints, but CloudTrail attributes the
  token's actions to whichever caller minted it. The audit log keeps every caller and the
  session name of the token it received, which is the join key back to CloudTrail.

Failures of DynamoDB or KMS never fail a request: the instance mints for itself, and the
failure is logged and counted (``SharedCacheErrors``). Only the deadline is not ignored.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from . import deadline
from .grants import ResolvedGrant
from .identity import Identity
from .metrics import count
from .minted import MintedToken
from .problems import BrokerError
from .tokens import aws_error_code

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kms import KMSClient
else:
    DynamoDBClient = KMSClient = Any

logger = Logger(service="cabroker", child=True)

Sharing = Literal["subject", "grant"]
Source = Literal["minted", "shared"]

ENCRYPTION_PURPOSE = "cabroker-token-cache"
LEASE_SECONDS = 5.0  # longer than a mint takes; a dead minter's lease lapses after this
WAIT_SECONDS = 3.0  # the longest a caller waits for another instance's mint, then mints itself
POLL_SECONDS = (0.025, 0.05, 0.1, 0.2)  # then 0.2 s between reads until the wait is over
MIN_SECONDS_LEFT = 1.5  # below this, the table is skipped and the time goes to minting


class CacheUnavailable(Exception):
    """DynamoDB or KMS failed; the caller mints for itself."""


@dataclass(frozen=True)
class SharedCacheSettings:
    table: str
    key_id: str
    sharing: Sharing
    # What else decides what a token can do: the role, domain, owner and region. Part of every
    # key, so two deployments sharing a table never hand out each other's tokens.
    namespace: tuple[str, ...] = ()
    lease_seconds: float = LEASE_SECONDS
    wait_seconds: float = WAIT_SECONDS


class SharedTokens:
    def __init__(
        self,
        settings: SharedCacheSettings,
        *,
        dynamodb: DynamoDBClient,
        kms: KMSClient,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._dynamodb = dynamodb
        self._kms = kms
        self._clock = clock
        self._sleep = sleep

    def key(self, identity: Identity, grant: ResolvedGrant) -> str:
        """The item key: a digest, so no subject or package pattern is stored in clear."""
        scope: list[Any] = [self.settings.sharing, *self.settings.namespace, *grant.key()]
        if self.settings.sharing == "subject":
            scope += [identity.issuer.url, identity.subject]
        return hashlib.sha256(json.dumps(scope).encode()).hexdigest()

    def get_or_mint(
        self,
        key: str,
        mint: Callable[[], MintedToken],
        fresh: Callable[[MintedToken], bool],
    ) -> tuple[MintedToken, Source]:
        """The shared token for ``key`` if it is ``fresh`` enough, else one minted once.

        With less than :data:`MIN_SECONDS_LEFT` of the request left the table is not asked:
        minting is what the time must go to.
        """
        left = deadline.remaining()
        if left is not None and left < MIN_SECONDS_LEFT:
            return mint(), "minted"
        lease = uuid.uuid4().hex  # this attempt's, so a lost answer to our own put is ours
        try:
            found = self._take(key, fresh)
            if found is not None:
                return found, "shared"
            give_up = self._clock() + self._wait_budget()
            for attempt in range(10_000):
                if self._lease(key, lease):
                    # Another instance may have delivered between our read and our lease.
                    found = self._take(key, fresh)
                    if found is not None:
                        self._release(key, lease)
                        return found, "shared"
                    return self._mint_and_share(key, lease, mint), "minted"
                if self._clock() >= give_up:
                    break
                self._sleep(POLL_SECONDS[min(attempt, len(POLL_SECONDS) - 1)])
                found = self._take(key, fresh)
                if found is not None:
                    return found, "shared"
            logger.warning("gave up waiting for another instance's token", extra={"key": key})
            count("SharedCacheWaitsExpired", "cache", "shared")
        except CacheUnavailable:
            pass  # logged where it happened
        return mint(), "minted"

    def _take(self, key: str, fresh: Callable[[MintedToken], bool]) -> MintedToken | None:
        """The shared token for ``key`` if there is one ``fresh`` enough for this caller."""
        found = self._read(key)
        return found if found is not None and fresh(found) else None

    def _wait_budget(self) -> float:
        """How long to wait for another instance: bounded by the request's deadline."""
        left = deadline.remaining()
        wait = self.settings.wait_seconds
        # keep time for minting ourselves if the other instance never delivers
        return wait if left is None else max(0.0, min(wait, left / 2))

    def _mint_and_share(self, key: str, lease: str, mint: Callable[[], MintedToken]) -> MintedToken:
        try:
            minted = mint()
            # Not shared (logged), or out of time for it: the token still goes to the caller.
            with suppress(CacheUnavailable, BrokerError):
                self._write(key, minted)
            return minted
        finally:
            self._release(key, lease)  # at once, so a waiting instance need not wait it out

    # ----------------------------------------------------------------- DynamoDB and KMS

    def _context(self, key: str) -> dict[str, str]:
        return {"purpose": ENCRYPTION_PURPOSE, "item": f"token#{key}"}

    def _read(self, key: str) -> MintedToken | None:
        with _cache_errors("dynamodb:GetItem"):
            item = self._dynamodb.get_item(
                TableName=self.settings.table,
                Key={"pk": {"S": f"token#{key}"}},
                ConsistentRead=True,
            ).get("Item")
        if item is None:
            return None
        try:
            if float(item["expires_at"]["N"]) <= self._clock():
                return None  # DynamoDB's TTL deletes late: expired, so not worth decrypting
            ciphertext = item["sealed"]["B"]
        except (KeyError, TypeError, ValueError):
            _unavailable("dynamodb:GetItem", {"error": "malformed item"})
        with _cache_errors("kms:Decrypt"):
            plaintext = self._kms.decrypt(
                KeyId=self.settings.key_id,
                CiphertextBlob=ciphertext,
                EncryptionContext=self._context(key),
            )["Plaintext"]
        # Everything handed out comes from the authenticated plaintext, never from the item's
        # clear attributes: a table writer without the key cannot redirect a token.
        try:
            sealed = json.loads(plaintext)
            minted = MintedToken(
                token=str(sealed["token"]),
                expires_at=datetime.fromtimestamp(float(sealed["expires_at"]), UTC),
                endpoint=str(sealed["endpoint"]),
                session=str(sealed["session"]),
            )
        except (KeyError, TypeError, ValueError):
            _unavailable("kms:Decrypt", {"error": "malformed plaintext"})
        if minted.expires_at.timestamp() <= self._clock():
            return None
        return minted

    def _write(self, key: str, minted: MintedToken) -> None:
        expires = minted.expires_at.timestamp()
        sealed = {
            "token": minted.token,
            "expires_at": expires,
            "endpoint": minted.endpoint,
            "session": minted.session,
        }
        with _cache_errors("kms:Encrypt"):
            ciphertext = self._kms.encrypt(
                KeyId=self.settings.key_id,
                Plaintext=json.dumps(sealed).encode(),
                EncryptionContext=self._context(key),
            )["CiphertextBlob"]
        try:
            with _cache_errors("dynamodb:PutItem", expected="ConditionalCheckFailedException"):
                self._dynamodb.put_item(
                    TableName=self.settings.table,
                    Item={
                        "pk": {"S": f"token#{key}"},
                        "sealed": {"B": ciphertext},
                        "expires_at": {"N": _number(expires)},
                        "ttl": {"N": str(int(expires) + 1)},
                    },
                    # never replace a token that outlives this one
                    ConditionExpression="attribute_not_exists(pk) OR expires_at < :mine",
                    ExpressionAttributeValues={":mine": {"N": _number(expires)}},
                )
        except _Expected:
            pass

    def _lease(self, key: str, lease: str) -> bool:
        """Take the right to mint for ``key``; False while another instance holds it.

        The condition also accepts our own lease: if botocore retried a put whose first
        answer was lost, the retry must not find the lease "taken" by ourselves.
        """
        now = self._clock()
        until = now + self.settings.lease_seconds
        try:
            with _cache_errors("dynamodb:PutItem", expected="ConditionalCheckFailedException"):
                self._dynamodb.put_item(
                    TableName=self.settings.table,
                    Item={
                        "pk": {"S": f"lease#{key}"},
                        "owner": {"S": lease},
                        "until": {"N": _number(until)},
                        "ttl": {"N": str(int(until) + 60)},
                    },
                    ConditionExpression=(
                        "attribute_not_exists(pk) OR #until < :now OR #owner = :me"
                    ),
                    ExpressionAttributeNames={"#until": "until", "#owner": "owner"},
                    ExpressionAttributeValues={":now": {"N": _number(now)}, ":me": {"S": lease}},
                )
        except _Expected:
            return False
        return True

    def _release(self, key: str, lease: str) -> None:
        try:
            with _cache_errors("dynamodb:DeleteItem", expected="ConditionalCheckFailedException"):
                self._dynamodb.delete_item(
                    TableName=self.settings.table,
                    Key={"pk": {"S": f"lease#{key}"}},
                    ConditionExpression="#owner = :me",
                    ExpressionAttributeNames={"#owner": "owner"},
                    ExpressionAttributeValues={":me": {"S": lease}},
                )
        except (_Expected, CacheUnavailable, BrokerError):
            pass  # the lease lapses by itself


class _Expected(Exception):
    """The AWS error the caller asked for (a failed condition), not a failure."""


@contextmanager
def _cache_errors(operation: str, expected: str | None = None) -> Iterator[None]:
    """DynamoDB and KMS failures become :class:`CacheUnavailable`, logged and counted.

    Anything else (the deadline's 503, a bug) is not ours to hide and passes through.
    """
    try:
        yield
    except ClientError as error:
        code = aws_error_code(error)
        if code == expected:
            raise _Expected from None
        _unavailable(operation, {"error_code": code})
    except BotoCoreError as error:
        _unavailable(operation, {"error": type(error).__name__})


def _unavailable(operation: str, details: dict[str, str]) -> NoReturn:
    logger.warning(
        "shared token cache unavailable; minting without it",
        extra={"operation": operation, **details},
    )
    count("SharedCacheErrors", "cache", "shared")
    raise CacheUnavailable(operation) from None


def _number(value: float) -> str:
    return f"{value:.3f}"
