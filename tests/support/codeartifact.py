"""A CodeArtifact fake on botocore's Stubber: every request and response is validated against
the real API model, responses are queued on demand, and failures can be injected."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
from botocore import xform_name
from botocore.stub import Stubber

from tests.support.oidc import Secret

if TYPE_CHECKING:
    from mypy_boto3_codeartifact import CodeArtifactClient
    from mypy_boto3_sts import STSClient
    from mypy_boto3_sts.type_defs import CredentialsTypeDef


@dataclass
class Call:
    operation: str
    params: dict[str, Any]
    access_key_id: str


@dataclass
class FakeCodeArtifact:
    region: str = "us-east-1"
    endpoint_base: str = "https://acme-111122223333.d.codeartifact.us-east-1.amazonaws.com"
    calls: list[Call] = field(default_factory=list)
    failures: dict[str, tuple[str, int]] = field(default_factory=dict)  # op → (code, status)
    tokens: list[str] = field(default_factory=list)

    def operations(self) -> list[str]:
        return [call.operation for call in self.calls]

    def client(self, credentials: CredentialsTypeDef) -> CodeArtifactClient:
        client = boto3.client(
            "codeartifact",
            region_name=self.region,
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )
        stubber = Stubber(client)

        def enqueue(model: Any, params: dict[str, Any], **_: Any) -> None:
            operation = model.name
            self.calls.append(Call(operation, dict(params), credentials["AccessKeyId"]))
            method = xform_name(operation)
            if operation in self.failures:
                code, status = self.failures[operation]
                stubber.add_client_error(method, code, f"{code} (injected)", status)
            else:
                stubber.add_response(method, self._answer(operation, params), dict(params))

        # Registered first, before the Stubber's own check, so the response is queued in time.
        client.meta.events.register_first("before-parameter-build.*.*", enqueue)
        stubber.activate()
        return client

    def _answer(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        if operation == "GetRepositoryEndpoint":
            return {"repositoryEndpoint": f"{self.endpoint_base}/pypi/{params['repository']}/"}
        if operation == "GetAuthorizationToken":
            token = Secret("catoken-" + secrets.token_urlsafe(24))
            self.tokens.append(token)
            expiration = datetime.now(UTC) + timedelta(seconds=params.get("durationSeconds", 43200))
            return {"authorizationToken": token, "expiration": expiration}
        raise AssertionError(f"the broker should not call {operation}")


@dataclass
class FakeClients:
    """The broker's AWS clients in tests: an STS client (moto or stubbed) and this fake."""

    sts: STSClient
    codeartifact: Callable[[CredentialsTypeDef], CodeArtifactClient]
