from __future__ import annotations

from typing import Any

import pytest

from broker.aws import Clients
from broker.settings import Settings

ENV = {
    "BROKER_RULES_FILE": "/rules.yaml",
    "BROKER_ROLE_ARN": "arn:aws:iam::123456789012:role/TokenIssuerRole",
    "BROKER_DOMAIN": "acme",
    "BROKER_DOMAIN_OWNER": "111122223333",
    "AWS_REGION": "eu-west-1",
    "BROKER_AWS_MAX_ATTEMPTS": "4",
}
CREDENTIALS = {
    "AccessKeyId": "ASIAEXAMPLEEXAMPLE12",
    "SecretAccessKey": "secret",
    "SessionToken": "session",
    "Expiration": "2030-01-01T00:00:00Z",
}


def test_clients_use_adaptive_retries_and_short_timeouts() -> None:
    clients = Clients(Settings.from_env(ENV))
    config: Any = clients.sts.meta.config
    assert config.retries == {"mode": "adaptive", "total_max_attempts": 4}
    assert (config.connect_timeout, config.read_timeout) == (2.0, 5.0)
    assert clients.sts.meta.region_name == "eu-west-1"


def test_codeartifact_clients_act_as_the_assumed_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_CODEARTIFACT", "http://127.0.0.1:4566")
    client = Clients(Settings.from_env(ENV)).codeartifact(CREDENTIALS)  # type: ignore[arg-type]
    credentials = client._request_signer._credentials  # type: ignore[attr-defined]
    assert credentials.access_key == "ASIAEXAMPLEEXAMPLE12"
    assert credentials.token == "session"
    assert client.meta.endpoint_url == "http://127.0.0.1:4566"
