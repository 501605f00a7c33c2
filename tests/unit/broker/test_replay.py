"""The jti replay guard, and the shared table wired into the broker, through the real handler.

moto provides DynamoDB and KMS; STS is moto and CodeArtifact the Stubber-backed fake, as in
the other handler tests (tests/conftest.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from broker import service
from broker.identity import Identity
from broker.problems import InvalidToken, ServiceUnavailable
from broker.replay import ReplayGuard
from broker.rules import Issuer
from broker.settings import Settings
from tests.conftest import GITHUB_CLAIMS, Answer, StsRecorder, invoke
from tests.support.codeartifact import FakeClients, FakeCodeArtifact
from tests.support.events import http_event
from tests.support.oidc import LocalIssuer

TABLE = "cabroker-cache"
ISSUER = Issuer(name="github", url="https://token.actions.githubusercontent.com", audience="x")


def make_table() -> str:
    """The template's table and key, in moto; returns the key's ARN."""
    boto3.client("dynamodb").create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )
    return str(boto3.client("kms").create_key()["KeyMetadata"]["Arn"])


def identity(jti: object = "jti-1", issuer: Issuer = ISSUER) -> Identity:
    claims: dict[str, Any] = {"sub": "repo:acme/app", "exp": 2_000_000_000}
    if jti is not None:
        claims["jti"] = jti
    return Identity(issuer, "repo:acme/app", claims, token_sha256="0" * 64)


@pytest.fixture
def guard(aws: None) -> ReplayGuard:
    make_table()
    return ReplayGuard(boto3.client("dynamodb"), TABLE, leeway_seconds=60)


# ----------------------------------------------------------------- the guard itself


def test_an_id_token_is_accepted_once(guard: ReplayGuard) -> None:
    guard.consume(identity())
    with pytest.raises(InvalidToken, match="used already"):
        guard.consume(identity())
    guard.consume(identity("jti-2"))
    other = Issuer(name="corp", url="https://login.example.com", audience="x")
    guard.consume(identity("jti-1", other))  # a jti is only unique per issuer


@pytest.mark.parametrize("jti", [None, "", 42, ["a"]])
def test_an_id_token_without_a_usable_jti_is_refused(guard: ReplayGuard, jti: object) -> None:
    with pytest.raises(InvalidToken, match="no jti"):
        guard.consume(identity(jti))


def test_a_retried_put_of_our_own_mark_is_not_a_replay(
    guard: ReplayGuard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """botocore retries a put whose answer was lost; the retry finds the mark it wrote."""
    import types
    import uuid

    monkeypatch.setattr(uuid, "uuid4", lambda: types.SimpleNamespace(hex="request-1"))
    guard.consume(identity())
    guard.consume(identity())  # the same request's retry
    monkeypatch.setattr(uuid, "uuid4", lambda: types.SimpleNamespace(hex="request-2"))
    with pytest.raises(InvalidToken, match="used already"):
        guard.consume(identity())


def test_a_jti_with_a_lone_surrogate_is_tracked_not_a_crash(guard: ReplayGuard) -> None:
    guard.consume(identity("\ud83d"))
    with pytest.raises(InvalidToken, match="used already"):
        guard.consume(identity("\ud83d"))


def test_a_released_jti_may_be_used_again(guard: ReplayGuard) -> None:
    guard.consume(identity())
    guard.release(identity())
    guard.consume(identity())


def test_used_jtis_expire_after_the_id_token(guard: ReplayGuard) -> None:
    guard.consume(identity())
    (item,) = boto3.client("dynamodb").scan(TableName=TABLE)["Items"]
    assert int(item["ttl"]["N"]) == 2_000_000_000 + 60 + 60
    assert item["pk"]["S"].startswith("jti#")
    assert "jti-1" not in item["pk"]["S"]


def test_the_guard_fails_closed(aws: None) -> None:
    guard = ReplayGuard(boto3.client("dynamodb"), "no-such-table", leeway_seconds=60)
    with pytest.raises(ServiceUnavailable) as raised:
        guard.consume(identity())
    assert raised.value.status == 503


# ----------------------------------------------------------------- through the handler


@pytest.fixture
def table_env(env: dict[str, str], aws: None) -> dict[str, str]:
    return {**env, "BROKER_CACHE_TABLE": TABLE, "BROKER_CACHE_KEY_ID": make_table()}


Build = Callable[..., service.Broker]


@pytest.fixture
def build(
    table_env: dict[str, str], sts_client: Any, codeartifact: FakeCodeArtifact
) -> Iterator[Build]:
    """A broker instance (a warm Lambda) with extra settings; each call is a new instance."""

    def _build(**extra: str) -> service.Broker:
        settings = Settings.from_env({**table_env, **extra})
        built = service.Broker.from_settings(settings, FakeClients(sts_client, codeartifact.client))
        service.use(built)
        return built

    yield _build
    service.use(None)


def post_token(id_token: str) -> Answer:
    return invoke(http_event("POST", "/v1/token", token=id_token, body={}))


def test_the_handler_refuses_a_replayed_id_token(
    build: Build, github: LocalIssuer, codeartifact: FakeCodeArtifact
) -> None:
    build(BROKER_REPLAY_GUARD="true")
    id_token = github.mint(jti="run-1-attempt-1", **GITHUB_CLAIMS)
    assert post_token(id_token).status == 200
    again = post_token(id_token)
    assert again.status == 401
    assert again.problem_type == "invalid-token"
    assert "used already" in again.body["detail"]
    assert post_token(github.mint(jti="run-1-attempt-2", **GITHUB_CLAIMS)).status == 200
    no_jti = post_token(github.mint(jti=None, **GITHUB_CLAIMS))
    assert no_jti.status == 401
    assert "no jti" in no_jti.body["detail"]
    # the guard is off by default: the same ID token twice is fine
    build()
    assert post_token(id_token).status == 200
    assert post_token(id_token).status == 200


def test_a_failed_mint_gives_the_id_token_back(
    build: Build, github: LocalIssuer, codeartifact: FakeCodeArtifact
) -> None:
    build(BROKER_REPLAY_GUARD="true")
    id_token = github.mint(jti="run-2", **GITHUB_CLAIMS)
    codeartifact.failures["GetAuthorizationToken"] = ("ThrottlingException", 429)
    assert post_token(id_token).status == 503
    del codeartifact.failures["GetAuthorizationToken"]
    assert post_token(id_token).status == 200  # the retry the 503's Retry-After invites
    assert post_token(id_token).status == 401


def test_grants_are_not_guarded(build: Build, github: LocalIssuer) -> None:
    build(BROKER_REPLAY_GUARD="true")
    id_token = github.mint(jti="run-3", **GITHUB_CLAIMS)
    for _ in range(2):
        assert invoke(http_event("GET", "/v1/grants", token=id_token)).status == 200
    assert post_token(id_token).status == 200


def audit(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [dict(r.__dict__) for r in caplog.records if getattr(r, "decision", None) == "allow"]


def test_instances_share_tokens_per_subject(
    build: Build,
    github: LocalIssuer,
    sts_calls: StsRecorder,
    codeartifact: FakeCodeArtifact,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    build(BROKER_SHARED_CACHE="subject")
    first = post_token(github.mint(**GITHUB_CLAIMS))
    build(BROKER_SHARED_CACHE="subject")  # another instance: its memory is empty
    second = post_token(github.mint(**GITHUB_CLAIMS))
    other = post_token(github.mint(**{**GITHUB_CLAIMS, "sub": "repo:acme/lib:ref:x"}))
    assert first.body["token"] == second.body["token"] != other.body["token"]
    assert len(sts_calls.calls) == 2
    assert len(codeartifact.tokens) == 2
    lines = audit(caplog)
    assert [line["source"] for line in lines] == ["minted", "shared", "minted"]
    assert lines[1]["session"] == lines[0]["session"] == sts_calls.calls[0]["RoleSessionName"]
    assert lines[2]["session"] == "github.repo-acme-lib-ref-x"
    for line in lines:
        assert first.body["token"] not in repr(line)
        assert other.body["token"] not in repr(line)


def test_per_grant_sharing_keeps_every_caller_in_the_audit_log(
    build: Build,
    github: LocalIssuer,
    sts_calls: StsRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    build(BROKER_SHARED_CACHE="grant")
    first = post_token(github.mint(**GITHUB_CLAIMS))
    build(BROKER_SHARED_CACHE="grant")
    second = post_token(github.mint(**{**GITHUB_CLAIMS, "sub": "repo:acme/lib:ref:x"}))
    assert first.body["token"] == second.body["token"]
    assert len(sts_calls.calls) == 1
    alice, bob = audit(caplog)
    assert (alice["subject"], alice["source"]) == ("repo:acme/app:ref:refs/heads/main", "minted")
    assert (bob["subject"], bob["source"]) == ("repo:acme/lib:ref:x", "shared")
    # what CloudTrail shows for bob's token is alice's session: the audit line says so
    assert bob["session"] == alice["session"] == sts_calls.calls[0]["RoleSessionName"]


def test_a_broken_shared_cache_still_issues_tokens(
    build: Build, github: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    build(BROKER_SHARED_CACHE="subject", BROKER_CACHE_TABLE="gone")
    id_token = github.mint(**GITHUB_CLAIMS)
    answer = post_token(id_token)
    assert answer.status == 200
    assert "shared token cache unavailable" in caplog.text
    assert answer.body["token"] not in caplog.text
    assert id_token not in caplog.text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"BROKER_SHARED_CACHE": "everyone"}, "BROKER_SHARED_CACHE"),
        ({"BROKER_REPLAY_GUARD": "yes"}, "BROKER_REPLAY_GUARD"),
        ({"BROKER_CACHE_TABLE": "", "BROKER_SHARED_CACHE": "grant"}, "needs BROKER_CACHE_TABLE"),
        ({"BROKER_CACHE_TABLE": "", "BROKER_REPLAY_GUARD": "true"}, "needs BROKER_CACHE_TABLE"),
        ({"BROKER_CACHE_KEY_ID": "", "BROKER_SHARED_CACHE": "subject"}, "BROKER_CACHE_KEY_ID"),
        ({"BROKER_CACHE_TABLE": "a b"}, "not a DynamoDB table name"),
        ({"BROKER_CACHE_KEY_ID": "arn:aws:kms:x"}, "not a KMS key"),
    ],
)
def test_settings_name_what_is_wrong(
    table_env: dict[str, str], extra: dict[str, str], message: str
) -> None:
    from broker.settings import SettingsError

    with pytest.raises(SettingsError, match=message):
        Settings.from_env({**table_env, **extra})
