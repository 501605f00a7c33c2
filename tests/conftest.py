"""Shared fixtures: a live local OIDC issuer, moto for STS, a Stubber-backed CodeArtifact, and a
broker wired from them exactly as in production, called through ``broker.app.handler``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto import mock_aws

from tests.support.codeartifact import FakeClients, FakeCodeArtifact
from tests.support.events import Context, http_event
from tests.support.logs import log_lines  # noqa: F401 - the fixture, for every test
from tests.support.oidc import IssuerServer, LocalIssuer, private_key

if TYPE_CHECKING:
    from mypy_boto3_sts import STSClient

    from broker.service import Broker

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "cabroker",
        "POWERTOOLS_METRICS_NAMESPACE": "CodeArtifactBroker",
        "POWERTOOLS_DEV": "false",
    }
)
for name in list(os.environ):
    if name.startswith(("BROKER_", "AWS_ENDPOINT_URL")) or name == "AWS_PROFILE":
        del os.environ[name]

ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/TokenIssuerRole"
DOMAIN_OWNER = "111122223333"

RULES = """\
version: 1
issuers:
  github: {{url: "{github}", audience: codeartifact-broker}}
  corp:   {{url: "{corp}", audience: cabroker, client_id: cabroker-cli}}
rules:
  - name: release-from-main
    issuer: github
    claims: {{repository_owner: acme, ref: refs/heads/main, repository: "acme/*"}}
    grant: {{repository: internal, access: publish, packages: ["acme-*"], max_duration: 3600}}
  - name: engineers-read
    issuer: corp
    claims: {{groups: engineering}}
    grant: {{repository: internal, access: read, max_duration: 43200}}
"""

GITHUB_CLAIMS: dict[str, Any] = {
    "repository_owner": "acme",
    "repository": "acme/app",
    "ref": "refs/heads/main",
}


@pytest.fixture(scope="session")
def issuer_server() -> Iterator[IssuerServer]:
    server = IssuerServer()
    server.add("github", "codeartifact-broker")
    server.add("corp", "cabroker")
    with server.running():
        yield server


@pytest.fixture
def github(issuer_server: IssuerServer) -> LocalIssuer:
    issuer = issuer_server.issuers["github"]
    issuer.keys = {"gh-1": private_key("gh-1")}
    issuer.down = issuer.garbage = False
    issuer.jwks_requests = 0
    return issuer


@pytest.fixture
def corp(issuer_server: IssuerServer) -> LocalIssuer:
    issuer = issuer_server.issuers["corp"]
    issuer.keys = {"corp-1": private_key("corp-1", "EC")}
    issuer.down = issuer.garbage = False
    issuer.jwks_requests = 0
    return issuer


@pytest.fixture
def rules_file(tmp_path: Path, github: LocalIssuer, corp: LocalIssuer) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES.format(github=github.url, corp=corp.url))
    return path


@pytest.fixture
def env(rules_file: Path) -> dict[str, str]:
    return {
        "BROKER_RULES_FILE": str(rules_file),
        "BROKER_ROLE_ARN": ROLE_ARN,
        "BROKER_DOMAIN": "acme",
        "BROKER_DOMAIN_OWNER": DOMAIN_OWNER,
        "AWS_REGION": "us-east-1",
        "BROKER_AWS_MAX_ATTEMPTS": "1",
    }


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        boto3.client("iam").create_role(
            RoleName="TokenIssuerRole", AssumeRolePolicyDocument=json.dumps({"Statement": []})
        )
        yield


@pytest.fixture
def codeartifact() -> FakeCodeArtifact:
    return FakeCodeArtifact()


@dataclass
class StsRecorder:
    """The AssumeRole calls the broker made, as sent (moto does not keep SourceIdentity)."""

    calls: list[dict[str, Any]] = field(default_factory=list)

    def policies(self) -> list[dict[str, Any]]:
        return [json.loads(call["Policy"]) for call in self.calls]


@pytest.fixture
def sts_calls() -> StsRecorder:
    return StsRecorder()


@pytest.fixture
def sts_client(aws: None, sts_calls: StsRecorder) -> STSClient:
    """The broker's STS client (moto); tests may put a Stubber on it to inject failures."""
    sts = boto3.client("sts", region_name="us-east-1")

    def record(params: dict[str, Any], **_: Any) -> None:
        sts_calls.calls.append(dict(params))

    sts.meta.events.register("provide-client-params.sts.AssumeRole", record)
    return sts


@pytest.fixture
def jwks_ttl() -> int:
    """How long the broker's JWKS cache stays fresh; override to exercise stale-if-error."""
    return 600


@pytest.fixture
def broker(
    env: dict[str, str],
    sts_client: STSClient,
    codeartifact: FakeCodeArtifact,
    jwks_ttl: int,
) -> Iterator[Broker]:
    from broker import service
    from broker.settings import Settings

    settings = Settings.from_env({**env, "BROKER_JWKS_CACHE_SECONDS": str(jwks_ttl)})
    built = service.Broker.from_settings(settings, FakeClients(sts_client, codeartifact.client))
    service.use(built)
    yield built
    service.use(None)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any
    raw: dict[str, Any]

    @property
    def problem_type(self) -> str:
        assert self.headers.get("Content-Type") == "application/problem+json", self.headers
        return str(self.body["type"]).rsplit(":", 1)[-1]


def invoke(event: dict[str, Any]) -> Answer:
    from broker import app

    raw = app.handler(event, Context())  # type: ignore[arg-type]
    headers = dict(raw.get("headers") or {})
    body = raw.get("body") or ""
    return Answer(raw["statusCode"], headers, json.loads(body) if body else None, raw)


@pytest.fixture
def call(broker: Broker) -> Any:
    """``call(method, path, token=..., body=...)`` through the real Lambda handler."""

    def _call(method: str, path: str, **kwargs: Any) -> Answer:
        return invoke(http_event(method, path, **kwargs))

    return _call


@pytest.fixture
def github_token(github: LocalIssuer) -> str:
    return github.mint(**GITHUB_CLAIMS)


@pytest.fixture
def corp_token(corp: LocalIssuer) -> str:
    return corp.mint(sub="alice@example.com", groups=["engineering", "staff"])
