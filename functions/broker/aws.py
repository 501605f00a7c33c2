"""Boto3 clients, created once per process: adaptive retries, short timeouts, the deadline.

Endpoints follow the standard ``AWS_ENDPOINT_URL_<SERVICE>`` variables, which is how the
devstack points the unchanged code at its stand-ins.

Every client the broker makes works to the request's deadline (:mod:`broker.deadline`):
an attempt starts only if it can connect and read a little before the deadline, its read
timeout is cut to the time left, and botocore retries only while a back-off and another
attempt still fit.  Past the deadline a call raises the 503 problem naming the operation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import boto3
from botocore.client import BaseClient
from botocore.config import Config

from . import deadline
from .settings import Settings

if TYPE_CHECKING:
    from botocore.awsrequest import AWSPreparedRequest
    from mypy_boto3_codeartifact import CodeArtifactClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_sts import STSClient
    from mypy_boto3_sts.type_defs import CredentialsTypeDef
else:
    CodeArtifactClient = DynamoDBClient = KMSClient = SSMClient = STSClient = Any
    CredentialsTypeDef = Any

AnyClient = TypeVar("AnyClient", bound=BaseClient)
# botocore's longest back-off after attempt n is min(2 ** (n - 1), 20) s (ExponentialBackoff,
# at its throttling scale of 1 s; other errors back off 20 times less), not counting an
# x-amz-retry-after header.
MAX_BACKOFF_SECONDS = 20.0


def client_config(settings: Settings) -> Config:
    """Every AWS client's configuration: adaptive retries, short timeouts (settings)."""
    return Config(
        # total_max_attempts counts the first try ("max_attempts" would count retries only).
        retries={"mode": "adaptive", "total_max_attempts": settings.aws_max_attempts},
        connect_timeout=settings.aws_connect_timeout_seconds,
        read_timeout=settings.aws_read_timeout_seconds,
        user_agent_extra="cabroker",
    )


class _Deadline:
    """The two botocore hooks that keep one client's calls inside the request's deadline."""

    def __init__(self, connect_timeout: float, read_timeout: float) -> None:
        self._connect = connect_timeout
        self._read = read_timeout

    def before_attempt(self, request: AWSPreparedRequest, event_name: str, **_: Any) -> None:
        """``before-send``: runs before every attempt, retries included (after the adaptive
        rate limiter's own wait)."""
        left = deadline.remaining()
        if left is None:
            return
        service, operation = event_name.split(".")[1:3]  # before-send.sts.AssumeRole
        # The connect timeout cannot be cut per request: it must fit, with a little read.
        deadline.check(f"{service}:{operation}", needing=self._connect + deadline.FLOOR_SECONDS)
        # botocore >= 1.43.72 reads a per-request read timeout here; older ones ignore it.
        context = getattr(request, "context", None)
        if isinstance(context, dict):
            context["read_timeout"] = min(self._read, left - self._connect)

    def before_retry(self, attempts: int, **_: Any) -> bool | None:
        """``needs-retry`` (first): ``False`` stops botocore retrying when its back-off and
        another attempt could not finish before the deadline; the last answer then stands
        (its error maps to the usual problem).  ``None`` lets botocore decide."""
        left = deadline.remaining()
        if left is None:
            return None
        backoff = min(2.0 ** (attempts - 1), MAX_BACKOFF_SECONDS)
        if left < backoff + self._connect + deadline.FLOOR_SECONDS:
            return False
        return None


def with_deadline(client: AnyClient) -> AnyClient:
    """Register the deadline hooks on ``client`` (its own event emitter) and return it."""
    config: Any = client.meta.config
    hooks = _Deadline(config.connect_timeout, config.read_timeout)
    service = client.meta.service_model.service_id.hyphenize()
    events = client.meta.events
    events.register_last("before-send", hooks.before_attempt, unique_id="cabroker-deadline")
    # More specific than the generic "needs-retry" and first: ahead of botocore's retry handler.
    events.register_first(
        f"needs-retry.{service}",
        hooks.before_retry,  # type: ignore[arg-type]  # the stubs want None; False is meant
        unique_id="cabroker-deadline-retry",
    )
    return client


class Clients:
    def __init__(self, settings: Settings) -> None:
        self._session = boto3.session.Session(region_name=settings.region)
        self._config = client_config(settings)
        self.sts: STSClient = self.client("sts")

    @overload
    def client(self, service_name: Literal["sts"]) -> STSClient: ...
    @overload
    def client(self, service_name: Literal["ssm"]) -> SSMClient: ...
    @overload
    def client(self, service_name: Literal["dynamodb"]) -> DynamoDBClient: ...
    @overload
    def client(self, service_name: Literal["kms"]) -> KMSClient: ...
    @overload
    def client(self, service_name: str) -> Any: ...

    def client(self, service_name: str) -> Any:
        """A client of the broker's session and configuration, working to the deadline."""
        made: BaseClient = self._session.client(service_name, config=self._config)  # type: ignore[call-overload]
        return with_deadline(made)

    def codeartifact(self, credentials: CredentialsTypeDef) -> CodeArtifactClient:
        """A CodeArtifact client acting as one assumed session (the model is cached once)."""
        return with_deadline(
            self._session.client(
                "codeartifact",
                config=self._config,
                aws_access_key_id=credentials["AccessKeyId"],
                aws_secret_access_key=credentials["SecretAccessKey"],
                aws_session_token=credentials["SessionToken"],
            )
        )
