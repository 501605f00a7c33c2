"""Shared by the CodeArtifact stand-in, provisioner and gateway tests: the AWS stand-in on an
ephemeral port with moto's state reset, boto3 sessions against it, and a principal whose
permissions a test chooses."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from botocore.config import Config

from devstack.aws import ACCOUNT as ACCOUNT
from devstack.aws import AwsStandIn

REGION = "us-east-1"
# The stand-in's tests that reach an external connection use a fake upstream; this one only
# has to be a URL (nothing listens on the discard port).
NO_PUBLIC_INDEX = "http://127.0.0.1:9/simple/"
# botocore retries 5xx answers with back-off: one attempt keeps a failing test fast.
ONE_ATTEMPT = Config(retries={"max_attempts": 1, "mode": "standard"})
ADMIN_KEY = "devstack-test-admin"  # a key moto does not know: the account's root


def reset_moto(url: str) -> None:
    """Reset every moto backend through the moto server's own API (``/moto-api/reset``)."""
    request = urllib.request.Request(f"{url}/moto-api/reset", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


@pytest.fixture(scope="session")
def aws_server() -> Iterator[AwsStandIn]:
    """One stand-in server for the test session (stopping one takes half a second)."""
    aws = AwsStandIn(REGION, NO_PUBLIC_INDEX)
    aws.start()
    try:
        yield aws
    finally:
        aws.stop()


@pytest.fixture
def stand_in(aws_server: AwsStandIn) -> Iterator[AwsStandIn]:
    """moto and the CodeArtifact stand-in on one port, their state fresh for the test, and
    reset after it too: moto's state is the process's, and a devstack started by a later test
    must not find this test's IAM entities."""
    reset_moto(aws_server.url)
    aws_server.codeartifact.domains.clear()
    yield aws_server
    reset_moto(aws_server.url)
    aws_server.codeartifact.domains.clear()


def session(
    access_key: str = ADMIN_KEY, secret_key: str = ADMIN_KEY, token: str | None = None
) -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        aws_session_token=token,
        region_name=REGION,
    )


@dataclass(frozen=True)
class FakePrincipal:
    """A token's principal allowed exactly ``actions`` (on any resource)."""

    actions: frozenset[str] = frozenset()
    arn: str = f"arn:aws:sts::{ACCOUNT}:assumed-role/TokenIssuerRole/test"
    account: str = ACCOUNT

    def allows(self, action: str, resource: str, context: dict[str, str] | None = None) -> bool:
        return action in self.actions


READ = "codeartifact:ReadFromRepository"
PUBLISH = "codeartifact:PublishPackageVersion"
READER = FakePrincipal(frozenset({READ}))
PUBLISHER = FakePrincipal(frozenset({READ, PUBLISH}))
NOBODY = FakePrincipal()
