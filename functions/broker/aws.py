"""Boto3 clients, created once per process: adaptive retries and short timeouts.

Endpoints follow the standard ``AWS_ENDPOINT_URL_<SERVICE>`` variables, which is how the
devstack points the unchanged code at its stand-ins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from .settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_codeartifact import CodeArtifactClient
    from mypy_boto3_sts import STSClient
    from mypy_boto3_sts.type_defs import CredentialsTypeDef
else:
    CodeArtifactClient = STSClient = CredentialsTypeDef = Any


def client_config(settings: Settings) -> Config:
    """Every AWS client's configuration: adaptive retries, short timeouts (settings)."""
    return Config(
        # total_max_attempts counts the first try ("max_attempts" would count retries only).
        retries={"mode": "adaptive", "total_max_attempts": settings.aws_max_attempts},
        connect_timeout=settings.aws_connect_timeout_seconds,
        read_timeout=settings.aws_read_timeout_seconds,
        user_agent_extra="cabroker",
    )


class Clients:
    def __init__(self, settings: Settings) -> None:
        self._session = boto3.session.Session(region_name=settings.region)
        self._config = client_config(settings)
        self.sts: STSClient = self._session.client("sts", config=self._config)

    def codeartifact(self, credentials: CredentialsTypeDef) -> CodeArtifactClient:
        """A CodeArtifact client acting as one assumed session (the model is cached once)."""
        return self._session.client(
            "codeartifact",
            config=self._config,
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )
