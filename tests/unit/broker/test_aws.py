from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from botocore.retries import bucket, standard

from broker import deadline
from broker.aws import Clients
from broker.problems import ServiceUnavailable
from broker.settings import Settings
from tests.support.faults import AwsFault, FakeAws

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
    assert (config.connect_timeout, config.read_timeout) == (1.0, 3.0)
    assert clients.sts.meta.region_name == "eu-west-1"


def test_codeartifact_clients_act_as_the_assumed_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_CODEARTIFACT", "http://127.0.0.1:4566")
    client = Clients(Settings.from_env(ENV)).codeartifact(CREDENTIALS)  # type: ignore[arg-type]
    credentials = client._request_signer._credentials  # type: ignore[attr-defined]
    assert credentials.access_key == "ASIAEXAMPLEEXAMPLE12"
    assert credentials.token == "session"
    assert client.meta.endpoint_url == "http://127.0.0.1:4566"


# --------------------------------------------------------------------------- the deadline

FAST = {
    **ENV,
    "BROKER_AWS_MAX_ATTEMPTS": "3",
    "BROKER_AWS_CONNECT_TIMEOUT_SECONDS": "0.2",
    "BROKER_AWS_READ_TIMEOUT_SECONDS": "2.0",
}
ASSUME_ROLE: dict[str, Any] = {
    "RoleArn": "arn:aws:iam::123456789012:role/TokenIssuerRole",
    "RoleSessionName": "github.subject",
}


@pytest.fixture
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAws]:
    """Every service's endpoint on the AWS stand-in; botocore's back-off and its adaptive rate
    limiter never waited on (the deadline hooks still assume the longest back-off)."""
    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda *_: 0.0)
    monkeypatch.setattr(bucket.TokenBucket, "acquire", lambda *_, **__: True)
    with FakeAws().running() as stand_in:
        for service in ("STS", "CODEARTIFACT", "SSM", "DYNAMODB", "KMS"):
            monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service}", stand_in.url)
        yield stand_in


def broker_clients(clients: Clients) -> dict[str, Callable[[], Any]]:
    """One call on every kind of client the broker makes, by the label of its operation."""
    return {
        "sts:AssumeRole": lambda: clients.sts.assume_role(**ASSUME_ROLE),
        "codeartifact:GetAuthorizationToken": lambda: clients.codeartifact(
            CREDENTIALS  # type: ignore[arg-type]
        ).get_authorization_token(domain="acme"),
        "ssm:GetParameter": lambda: clients.client("ssm").get_parameter(Name="/cabroker/rules"),
        "dynamodb:GetItem": lambda: clients.client("dynamodb").get_item(
            TableName="cabroker-cache", Key={"pk": {"S": "x"}}
        ),
        "kms:Decrypt": lambda: clients.client("kms").decrypt(CiphertextBlob=b"x"),
    }


def test_client_makes_clients_with_the_same_session_and_configuration() -> None:
    clients = Clients(Settings.from_env(ENV))
    for name in ("dynamodb", "kms", "ssm"):
        made: Any = clients.client(name)
        assert made.meta.service_model.service_name == name
        assert made.meta.region_name == "eu-west-1"
        assert made.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 4}
        assert (made.meta.config.connect_timeout, made.meta.config.read_timeout) == (1.0, 3.0)


@pytest.mark.parametrize("operation", list(broker_clients(Clients(Settings.from_env(ENV)))))
def test_every_broker_client_refuses_to_start_an_attempt_past_the_deadline(
    fake_aws: FakeAws, operation: str
) -> None:
    call = broker_clients(Clients(Settings.from_env(FAST)))[operation]
    with deadline.scope(0.0), pytest.raises(ServiceUnavailable) as raised:
        call()
    assert raised.value.detail == f"the broker ran out of time waiting for {operation}; try again"
    assert sum(fake_aws.attempts.values()) == 0


def test_an_attempt_that_cannot_connect_in_time_does_not_start(fake_aws: FakeAws) -> None:
    clients = Clients(Settings.from_env(FAST))  # connect timeout 0.2 s
    with deadline.scope(0.15), pytest.raises(ServiceUnavailable, match="sts:AssumeRole"):
        clients.sts.assume_role(**ASSUME_ROLE)
    assert fake_aws.attempts["AssumeRole"] == 0


def test_a_stalled_attempt_is_cut_at_the_deadline_and_not_retried(fake_aws: FakeAws) -> None:
    fake_aws.faults["AssumeRole"] = AwsFault("stall", seconds=5.0)
    clients = Clients(Settings.from_env(FAST))  # read timeout 2 s, 3 attempts
    started = time.monotonic()
    with deadline.scope(0.8), pytest.raises((ReadTimeoutError, ServiceUnavailable)):
        clients.sts.assume_role(**ASSUME_ROLE)
    elapsed = time.monotonic() - started
    assert elapsed < 0.8, f"{elapsed:.2f} s with 0.8 s left"
    assert fake_aws.attempts["AssumeRole"] == 1


def test_botocore_retries_only_while_a_back_off_and_an_attempt_fit(fake_aws: FakeAws) -> None:
    fake_aws.faults["AssumeRole"] = AwsFault("error", "Throttling", 400)
    clients = Clients(Settings.from_env(FAST))
    # 1.5 s: room for the first retry (back-off up to 1 s), not for the second (up to 2 s).
    with deadline.scope(1.5), pytest.raises(ServiceUnavailable, match="sts:AssumeRole"):
        clients.sts.assume_role(**ASSUME_ROLE)
    assert fake_aws.attempts["AssumeRole"] == 2


@pytest.mark.parametrize(
    "fault", [None, AwsFault("error", "ValidationError", 400)], ids=["success", "not retryable"]
)
def test_with_little_time_left_an_answer_botocore_would_not_retry_stands(
    fake_aws: FakeAws, fault: AwsFault | None
) -> None:
    """The retry hook never returns a value: older botocore reads any non-None answer, even
    False, as a delay before retrying, so a success would be sent again and again."""
    if fault is not None:
        fake_aws.faults["AssumeRole"] = fault
    clients = Clients(Settings.from_env(FAST))
    with deadline.scope(1.2):
        if fault is None:
            clients.sts.assume_role(**ASSUME_ROLE)
        else:
            with pytest.raises(ClientError, match="ValidationError"):
                clients.sts.assume_role(**ASSUME_ROLE)
    assert fake_aws.attempts["AssumeRole"] == 1


def test_older_botocore_does_not_resend_a_success_near_the_deadline(
    fake_aws: FakeAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    """botocore before the ``is False`` check: any non-None handler answer means "sleep that
    long and retry" (the Lambda runtime may bring such a release)."""
    from botocore import endpoint
    from botocore.hooks import first_non_none_response

    def older_needs_retry(self: Any, attempts: int, operation_model: Any, request_dict: Any,
                          response: Any = None, caught_exception: Any = None) -> bool:  # fmt: skip
        service_id = operation_model.service_model.service_id.hyphenize()
        responses = self._event_emitter.emit(
            f"needs-retry.{service_id}.{operation_model.name}",
            response=response,
            endpoint=self,
            operation=operation_model,
            attempts=attempts,
            caught_exception=caught_exception,
            request_dict=request_dict,
        )
        handler_response = first_non_none_response(responses)
        if handler_response is None:
            return False
        time.sleep(handler_response)
        return True

    monkeypatch.setattr(endpoint.Endpoint, "_needs_retry", older_needs_retry)
    clients = Clients(Settings.from_env(FAST))
    with deadline.scope(1.2):
        clients.sts.assume_role(**ASSUME_ROLE)
    assert fake_aws.attempts["AssumeRole"] == 1


def test_without_a_deadline_botocore_retries_as_configured(fake_aws: FakeAws) -> None:
    fake_aws.faults["AssumeRole"] = AwsFault("error", "Throttling", 400)
    with pytest.raises(ClientError, match="Throttling"):
        Clients(Settings.from_env(FAST)).sts.assume_role(**ASSUME_ROLE)
    assert fake_aws.attempts["AssumeRole"] == 3


def test_a_call_with_time_to_spare_is_untouched(fake_aws: FakeAws) -> None:
    with deadline.scope(5.0):
        answer = Clients(Settings.from_env(FAST)).sts.assume_role(**ASSUME_ROLE)
    assert answer["Credentials"]["AccessKeyId"] == "ASIAFAULTFAULTFAULT1"
    assert fake_aws.attempts["AssumeRole"] == 1
