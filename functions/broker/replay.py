"""The jti replay guard: an ID token mints at most once (PyPI trusted publishing's protection).

An ID token stolen from a CI log or a job's environment is valid until it expires (GitHub's
live for 5 to 10 minutes); with the guard on, whoever uses it first consumes it, and a second
``POST /v1/token`` with it is refused as an invalid token. Tokens without a ``jti`` claim are
refused too, since they cannot be tracked. ``GET /v1/grants`` mints nothing and is not guarded.

Each consumed ``jti`` is one item in the shared cache's table, ``jti#<sha256 of issuer and
jti>``, written with a condition that it does not exist yet and removed by DynamoDB's TTL after
the ID token has expired (plus the clock leeway). When minting fails afterwards (AWS throttled
or down), the item is deleted again so the caller can retry with the same ID token.

The guard fails closed: if DynamoDB cannot be asked, the request answers 503.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from .identity import Identity
from .problems import InvalidToken, ServiceUnavailable
from .tokens import aws_error_code

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
else:
    DynamoDBClient = Any

logger = Logger(service="cabroker", child=True)


class ReplayGuard:
    def __init__(
        self,
        dynamodb: DynamoDBClient,
        table: str,
        *,
        leeway_seconds: int,
        release_client: DynamoDBClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._dynamodb = dynamodb
        # Releasing runs when a request failed, maybe out of time: a client of its own, with
        # short timeouts outside the deadline, so the caller's retry is not refused.
        self._release_client = release_client or dynamodb
        self._table = table
        self._leeway = leeway_seconds
        self._clock = clock

    def consume(self, identity: Identity) -> None:
        """Record the ID token's ``jti`` as used; refuse it if it was used already."""
        jti = _jti(identity)
        if jti is None:
            raise InvalidToken(
                "the ID token has no jti claim, and this broker accepts each ID token only once "
                "(replay guard); use an identity provider that sets jti"
            )
        expires = identity.claims.get("exp")
        until = int(expires if isinstance(expires, int | float) else self._clock() + 86400)
        # This request's mark: if botocore retries a put whose first answer was lost, the
        # retry finds our own mark, not a replay.
        mark = uuid.uuid4().hex
        try:
            self._dynamodb.put_item(
                TableName=self._table,
                Item={
                    "pk": {"S": self._key(identity, jti)},
                    "ttl": {"N": str(until + self._leeway + 60)},
                    "mark": {"S": mark},
                },
                ConditionExpression="attribute_not_exists(pk) OR #mark = :mine",
                ExpressionAttributeNames={"#mark": "mark"},
                ExpressionAttributeValues={":mine": {"S": mark}},
            )
        except ClientError as error:
            code = aws_error_code(error)
            if code == "ConditionalCheckFailedException":
                raise InvalidToken(
                    "this ID token was used already (replay guard): ask your identity provider "
                    "for a new one for each request"
                ) from None
            self._unavailable({"error_code": code})
        except BotoCoreError as error:
            self._unavailable({"error": type(error).__name__})

    def release(self, identity: Identity) -> None:
        """Forget a consumed ``jti`` (minting failed, so the caller may retry); best effort."""
        jti = _jti(identity)
        if jti is None:
            return
        try:
            self._release_client.delete_item(
                TableName=self._table, Key={"pk": {"S": self._key(identity, jti)}}
            )
        except Exception as error:  # noqa: BLE001 - best effort, on a path that already failed
            logger.warning(
                "replay guard: could not release a jti", extra={"error": type(error).__name__}
            )

    @staticmethod
    def _key(identity: Identity, jti: str) -> str:
        text = f"{identity.issuer.url}\0{jti}".encode("utf-8", "surrogatepass")
        digest = hashlib.sha256(text).hexdigest()
        return f"jti#{digest}"

    @staticmethod
    def _unavailable(details: dict[str, str]) -> NoReturn:
        logger.error("replay guard unavailable", extra={"operation": "dynamodb:PutItem", **details})
        raise ServiceUnavailable(
            "the broker cannot check ID tokens for replay right now; try again shortly",
            retry_after=5,
        )


def _jti(identity: Identity) -> str | None:
    """The ID token's ``jti``, if it has a usable one (a non-empty string)."""
    jti = identity.claims.get("jti")
    return jti if isinstance(jti, str) and jti else None
