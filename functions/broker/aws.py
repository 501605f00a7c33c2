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
from botocore.httpsession import URLLib3Session
from botocore.retries.standard import RetryContext, StandardRetryConditions

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
# Whether this botocore reads a per-request read timeout from the request context (newer
# releases). The Lambda runtime brings its own botocore: without it, an attempt only starts if
# a whole connect and read fit before the deadline.
PER_REQUEST_READ_TIMEOUT = hasattr(URLLib3Session, "_get_request_timeout")
# What botocore's standard and adaptive modes retry (throttling, transient and 5xx errors,
# connection failures), to tell apart an answer botocore would retry from one it returns.
_RETRYABLE = StandardRetryConditions(max_attempts=1_000)


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
        needing = self._connect + deadline.FLOOR_SECONDS
        if not PER_REQUEST_READ_TIMEOUT:
            needing = self._connect + self._read  # nothing cuts this attempt short
        deadline.check(f"{service}:{operation}", needing=needing)
        context = getattr(request, "context", None)
        if isinstance(context, dict):
            context["read_timeout"] = min(self._read, left - self._connect)

    def before_retry(
        self,
        attempts: int,
        operation: Any,
        response: Any = None,
        caught_exception: Exception | None = None,
        request_dict: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        """``needs-retry`` (first): when botocore would retry but its back-off and another
        attempt cannot finish before the deadline, stop with the deadline's 503 now rather
        than sleep past it.  Any other answer (a success, an error botocore returns as it is)
        is left alone: this hook never returns a value, so botocore decides as always (older
        releases read any non-None value, even ``False``, as a delay before retrying)."""
        left = deadline.remaining()
        if left is None:
            return None
        http_response, parsed = response if response is not None else (None, None)
        retry = RetryContext(
            attempt_number=attempts,
            operation_model=operation,
            parsed_response=parsed,
            http_response=http_response,
            caught_exception=caught_exception,
            request_context=(request_dict or {}).get("context", {}),
        )
        if not _RETRYABLE.is_retryable(retry):
            return None
        backoff = min(2.0 ** (attempts - 1), MAX_BACKOFF_SECONDS)
        if left < backoff + self._connect + deadline.FLOOR_SECONDS:
            name = f"{operation.service_model.service_id.hyphenize()}:{operation.name}"
            deadline.check(name, needing=float("inf"))  # raises the 503 naming the call
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
        f"needs-retry.{service}", hooks.before_retry, unique_id="cabroker-deadline-retry"
    )
    return client


class Clients:
    def __init__(self, settings: Settings) -> None:
        self._session = boto3.session.Session(region_name=settings.region)
        self._config = client_config(settings)
        self.sts: STSClient = self.client("sts")

    @overload
    def client(
        self, service_name: Literal["sts"], *, config: Config | None = ..., bounded: bool = ...
    ) -> STSClient: ...
    @overload
    def client(
        self, service_name: Literal["ssm"], *, config: Config | None = ..., bounded: bool = ...
    ) -> SSMClient: ...
    @overload
    def client(
        self, service_name: Literal["dynamodb"], *, config: Config | None = ..., bounded: bool = ...
    ) -> DynamoDBClient: ...
    @overload
    def client(
        self, service_name: Literal["kms"], *, config: Config | None = ..., bounded: bool = ...
    ) -> KMSClient: ...
    @overload
    def client(
        self, service_name: str, *, config: Config | None = ..., bounded: bool = ...
    ) -> Any: ...

    def client(
        self, service_name: str, *, config: Config | None = None, bounded: bool = True
    ) -> Any:
        """A client of the broker's session and configuration (``config`` merged over it),
        working to the deadline unless ``bounded`` is false (a clean-up that must run in the
        deadline's margin, with its own short timeouts)."""
        merged = self._config.merge(config) if config is not None else self._config
        made: BaseClient = self._session.client(service_name, config=merged)  # type: ignore[call-overload]
        return with_deadline(made) if bounded else made

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
