"""Faults in what the broker depends on, as the caller sees them, through the real handler.

The issuer's JWKS (slow, refused, down, garbage; with and without cached keys), key rotation
under a burst of unknown kids, clock skew between broker and IdP, STS and CodeArtifact
throttling, timeouts and dropped connections (the broker's *real* boto3 clients and botocore's
own retries against a local AWS stand-in), SSM outages and rules documents broken at runtime,
and the Lambda's time budget.  Every test checks the status, the problem type and the headers,
that no token is issued when none should be, and that no token or ID token reaches a response
body or a log line.

Covered elsewhere, so not repeated here:

- JWKS answering 503 / garbage on a cold cache: test_app.py::test_jwks_down_on_a_cold_cache_is_503,
  ::test_jwks_garbage_on_a_cold_cache_is_503; 503 on a warm cache within the stale window:
  ::TestStaleKeys; failure back-off, stale bound and TTL with a fake clock: test_identity.py.
- A rotated key picked up by one refresh: test_app.py::test_rotated_issuer_key_is_picked_up;
  an unknown kid after the refresh is 401: ::test_bad_id_tokens_get_401_and_no_aws_call
  [unknown kid after refresh]; one kid repeated three times refreshes once:
  ::test_unknown_kids_refresh_the_jwks_at_most_once_per_interval.
- Far-off exp / nbf / iat (±120 s, +600 s): test_app.py::test_bad_id_tokens_get_401_and_no_aws_call.
- AWS error → problem mapping with Stubber (no retries involved):
  test_app.py::test_codeartifact_failures_are_503_with_retry_after,
  ::test_sts_throttling_is_503_with_retry_after, test_tokens.py::test_sts_errors_map_to_problems;
  the retry configuration itself: test_aws.py::test_clients_use_adaptive_retries_and_short_timeouts.
- The rules source's own logic (stale bound, nothing loaded, broken documents) with a fake loader:
  test_rulesource.py; an invalid rules file on a cold start: test_app.py::
  test_invalid_rules_document_refuses_to_serve.
"""

from __future__ import annotations

import functools
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS
from aws_lambda_powertools.utilities.parameters.ssm import SSMProvider
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from botocore.retries import bucket, standard

from broker import aws, deadline, identity, rulesource, service
from broker.problems import InvalidToken, ServiceUnavailable
from broker.settings import Settings
from devstack import cfn_yaml
from tests.conftest import GITHUB_CLAIMS, Answer, StsRecorder
from tests.support.codeartifact import FakeClients, FakeCodeArtifact
from tests.support.events import http_event
from tests.support.faults import (
    AwsFault,
    AwsOperation,
    DeadlineContext,
    FakeAws,
    FaultyIssuer,
    JwksFault,
)
from tests.support.oidc import LocalIssuer, private_key

Call = Callable[..., Answer]
ROOT = Path(__file__).resolve().parents[3]
HTTP_TIMEOUT = 0.2  # BROKER_HTTP_TIMEOUT_SECONDS in these tests
AWS_TIMEOUT = 0.2  # BROKER_AWS_CONNECT_TIMEOUT_SECONDS and BROKER_AWS_READ_TIMEOUT_SECONDS
AWS_ATTEMPTS = 3  # BROKER_AWS_MAX_ATTEMPTS (its default)
# How long a slow dependency takes: far beyond the timeouts above. A request that took less than
# this did not wait for it. The tests bound waiting by that (and count attempts and requests
# exactly), never by how fast a loaded machine runs: a bound near the timeouts failed on CI.
LATE = 5.0


# --------------------------------------------------------------------------- shared fixtures


class FakeClock:
    """The monotonic clock of the broker's issuer-key and rules caches, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Injected where the broker builds its caches (``Broker.from_settings``), before it does."""
    fake = FakeClock()
    monkeypatch.setattr(service, "IssuerKeys", functools.partial(identity.IssuerKeys, clock=fake))
    monkeypatch.setattr(
        service, "RulesSource", functools.partial(rulesource.RulesSource, clock=fake)
    )
    return fake


@pytest.fixture
def env(env: dict[str, str], clock: FakeClock) -> dict[str, str]:
    return {**env, "BROKER_HTTP_TIMEOUT_SECONDS": str(HTTP_TIMEOUT)}


@dataclass
class LeakCheck:
    """No ID token, and no CodeArtifact token except the one a 200 hands out, in any response
    body, log record or output line.  Failures never print the secret (only that it leaked)."""

    caplog: pytest.LogCaptureFixture
    capfd: pytest.CaptureFixture[str]

    def __call__(
        self, answers: Iterable[Answer], id_tokens: Iterable[str], aws_tokens: Iterable[str] = ()
    ) -> None:
        secrets = [*id_tokens, *aws_tokens]
        captured = self.capfd.readouterr()
        logs = captured.out + captured.err + self.caplog.text
        logs += "".join(json.dumps(r.__dict__, default=str) for r in self.caplog.records)
        for answer in answers:
            body = json.dumps(answer.body)
            issued = answer.body.get("token") if answer.status == 200 else None
            in_body = sum(s != issued and s in body for s in secrets)
            assert in_body == 0, f"{in_body} secret(s) in a {answer.status} body"
        # Nor any recognisable piece of one (JWT segments, token prefixes).
        pieces = [part[:32] for secret in secrets for part in [secret, *secret.split(".")]]
        in_logs = sum(piece in logs for piece in pieces)
        assert in_logs == 0, f"{in_logs} piece(s) of a token or ID token in the logs"


@pytest.fixture
def leaks(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> LeakCheck:
    caplog.set_level(logging.DEBUG)
    return LeakCheck(caplog, capfd)


def post_token(call: Call, token: str) -> tuple[Answer, float]:
    started = time.monotonic()
    answer = call("POST", "/v1/token", token=token, body={})
    return answer, time.monotonic() - started


def shown(answer: Answer) -> object:
    """A body fit for an assertion message: a token, if any, is redacted."""
    if isinstance(answer.body, dict) and "token" in answer.body:
        return {**answer.body, "token": "<redacted>"}
    return answer.body


def same_token(answer: Answer, token: str) -> bool:
    """Compared outside the assert, so that a failure never prints a token."""
    return bool(answer.body.get("token") == token)


def assert_problem(answer: Answer, status: int, slug: str) -> None:
    assert answer.status == status, shown(answer)
    assert answer.problem_type == slug
    issued = "token" in answer.body
    assert not issued, "a problem answer carries a token"
    assert answer.headers["Cache-Control"] == "no-store"


def assert_no_aws_call(sts_calls: StsRecorder, codeartifact: FakeCodeArtifact) -> None:
    assert sts_calls.calls == []
    assert codeartifact.calls == []


# --------------------------------------------------------------------------- the issuer's JWKS

FLAKY_RULE = """\
  - name: flaky-read
    issuer: flaky
    claims: {repository_owner: acme}
    grant: {repository: internal, access: read, max_duration: 3600}
"""
STALE_SECONDS = 120  # BROKER_JWKS_STALE_SECONDS in these tests (the default is 3600)
JWKS_TTL = 600  # the conftest jwks_ttl fixture

IssuerFault = JwksFault | Literal["refused"]
ISSUER_FAULT_IDS: dict[str, str] = {
    "slow": "slow",
    "refused": "connection refused",
    "http-503": "503",
    "not-json": "not JSON",
    "no-keys": "JSON without keys",
    "keys-not-a-list": "keys not a list",
    "keys-of-wrong-type": "keys of the wrong type",
    "not-http": "not HTTP",
    "cut-chunked": "chunked body cut short",
    "trickle": "trickled byte by byte",
    "trickle-headers": "headers trickled, never ending",
}


def issuer_faults(*faults: IssuerFault) -> list[Any]:
    """``faults`` as test parameters, each with its readable id."""
    return [pytest.param(fault, id=ISSUER_FAULT_IDS[fault]) for fault in faults]


class TestJwksFaults:
    """An issuer of its own (``flaky``) whose JWKS endpoint misbehaves on demand."""

    @pytest.fixture
    def flaky(self) -> Iterator[FaultyIssuer]:
        issuer = FaultyIssuer()
        issuer.delay = LATE
        with issuer.running():
            yield issuer

    @pytest.fixture
    def rules_file(self, rules_file: Path, flaky: FaultyIssuer) -> Path:
        trusted = f'  flaky: {{url: "{flaky.url}", audience: codeartifact-broker}}\nrules:\n'
        rules_file.write_text(rules_file.read_text().replace("rules:\n", trusted, 1) + FLAKY_RULE)
        return rules_file

    @pytest.fixture
    def env(self, env: dict[str, str]) -> dict[str, str]:
        return {**env, "BROKER_JWKS_STALE_SECONDS": str(STALE_SECONDS)}

    @staticmethod
    def inject(flaky: FaultyIssuer, fault: IssuerFault) -> None:
        if fault == "refused":
            flaky.refuse()
        else:
            flaky.fault = fault

    @pytest.mark.parametrize(
        "fault",
        issuer_faults(
            "slow", "refused", "no-keys", "keys-not-a-list", "keys-of-wrong-type", "not-http",
            "cut-chunked", "trickle", "trickle-headers",
        ),
    )  # fmt: skip
    def test_without_cached_keys_the_caller_gets_503_issuer_unavailable_in_time(
        self,
        call: Call,
        flaky: FaultyIssuer,
        sts_calls: StsRecorder,
        codeartifact: FakeCodeArtifact,
        leaks: LeakCheck,
        fault: IssuerFault,
    ) -> None:
        token = flaky.mint(**GITHUB_CLAIMS)
        self.inject(flaky, fault)
        answer, elapsed = post_token(call, token)
        assert_problem(answer, 503, "issuer-unavailable")
        assert answer.headers["Retry-After"] == str(int(identity.FAILURE_BACKOFF_SECONDS))
        assert "flaky" in answer.body["detail"]
        # The broker stops waiting at its HTTP timeout; the issuer would only answer after LATE.
        assert elapsed < LATE, f"{elapsed:.2f} s"
        assert_no_aws_call(sts_calls, codeartifact)
        leaks([answer], [token])

    @pytest.mark.parametrize(
        "fault",
        issuer_faults(
            "slow", "refused", "http-503", "not-json", "no-keys", "keys-not-a-list",
            "keys-of-wrong-type", "not-http", "cut-chunked",
        ),
    )  # fmt: skip
    def test_cached_keys_serve_within_the_stale_window_then_503(
        self,
        call: Call,
        flaky: FaultyIssuer,
        clock: FakeClock,
        sts_calls: StsRecorder,
        codeartifact: FakeCodeArtifact,
        leaks: LeakCheck,
        caplog: pytest.LogCaptureFixture,
        fault: IssuerFault,
    ) -> None:
        token = flaky.mint(**GITHUB_CLAIMS)
        first, _ = post_token(call, token)
        assert first.status == 200, shown(first)
        self.inject(flaky, fault)

        clock.advance(JWKS_TTL + STALE_SECONDS - 1)  # past the TTL, inside the stale window
        stale, elapsed = post_token(call, token)
        assert stale.status == 200, shown(stale)
        reused = same_token(stale, first.body["token"])
        assert reused, "the stale-keys answer is not the cached token"
        assert elapsed < LATE, f"{elapsed:.2f} s"  # the slow issuer was not waited for
        assert "serving stale issuer keys" in caplog.text

        clock.advance(identity.FAILURE_BACKOFF_SECONDS + 1)  # past the window and the back-off
        late, elapsed = post_token(call, token)
        assert_problem(late, 503, "issuer-unavailable")
        assert late.headers["Retry-After"] == str(int(identity.FAILURE_BACKOFF_SECONDS))
        assert elapsed < LATE, f"{elapsed:.2f} s"
        # The token cache holds a token for this very caller: it must not bypass verification.
        assert len(sts_calls.calls) == 1
        leaks([first, stale, late], [token], codeartifact.tokens)

    def test_an_unknown_kid_during_an_outage_costs_one_timeout_not_two(
        self,
        call: Call,
        flaky: FaultyIssuer,
        clock: FakeClock,
        sts_calls: StsRecorder,
        leaks: LeakCheck,
    ) -> None:
        token = flaky.mint(**GITHUB_CLAIMS)
        assert post_token(call, token)[0].status == 200
        flaky.fault = "slow"
        clock.advance(JWKS_TTL + 1)
        unknown = flaky.mint(
            "flaky-1", key=private_key("flaky-new"), headers={"kid": "flaky-new"}, **GITHUB_CLAIMS
        )
        answer, elapsed = post_token(call, unknown)
        assert answer.status in (401, 503), shown(answer)  # today 401: "not among flaky's keys"
        issued = "token" in answer.body
        assert not issued
        assert len(sts_calls.calls) == 1
        leaks([answer], [token, unknown])
        assert flaky.jwks_requests == 2, flaky.jwks_requests  # the warm-up, then one attempt
        assert elapsed < LATE, f"{elapsed:.2f} s"

    @pytest.mark.parametrize("fault", ["slow", "trickle"])
    def test_a_slow_issuer_with_little_time_left_is_503_before_the_deadline(
        self,
        env: dict[str, str],
        flaky: FaultyIssuer,
        sts_client: Any,
        sts_calls: StsRecorder,
        codeartifact: FakeCodeArtifact,
        leaks: LeakCheck,
        fault: JwksFault,
    ) -> None:
        # A generous HTTP timeout: the issuer (answering after LATE) would be waited for.
        settings = Settings.from_env({**env, "BROKER_HTTP_TIMEOUT_SECONDS": "3"})
        clients = FakeClients(sts_client, codeartifact.client)
        service.use(service.Broker.from_settings(settings, clients))
        token = flaky.mint(**GITHUB_CLAIMS)
        flaky.fault = fault
        context = little_time_left()
        lambda_deadline = context.get_remaining_time_in_millis() / 1000
        try:
            answer, elapsed = invoke_post_token(token, context)
        finally:
            service.use(None)
        assert_problem(answer, 503, "issuer-unavailable")
        assert "flaky" in answer.body["detail"]
        assert elapsed < lambda_deadline, f"{elapsed:.2f} s, Lambda stops at {lambda_deadline} s"
        assert_no_aws_call(sts_calls, codeartifact)
        leaks([answer], [token])


# --------------------------------------------------------------------------- key rotation

BURST = 12


def unknown_kid(github: LocalIssuer, n: int) -> str:
    """A token signed by a key the issuer never published, under a kid of its own."""
    headers = {"kid": f"gh-burst-{n}"}
    return github.mint("gh-1", key=private_key("gh-unknown"), headers=headers, **GITHUB_CLAIMS)


class TestKeyRotation:
    @pytest.fixture
    def min_refresh(self) -> int:
        return 60

    @pytest.fixture
    def env(self, env: dict[str, str], min_refresh: int) -> dict[str, str]:
        return {**env, "BROKER_JWKS_MIN_REFRESH_SECONDS": str(min_refresh)}

    @pytest.mark.parametrize(
        ("min_refresh", "jwks_requests"),
        [
            pytest.param(60, 2, id="one forced refresh per 60 s"),
            pytest.param(0, BURST, id="no limit: one refresh per unknown kid"),
        ],
    )
    def test_a_burst_of_unknown_kids_is_401_and_refreshes_within_the_limit(
        self,
        call: Call,
        github: LocalIssuer,
        sts_calls: StsRecorder,
        codeartifact: FakeCodeArtifact,
        leaks: LeakCheck,
        jwks_requests: int,
    ) -> None:
        tokens = [unknown_kid(github, n) for n in range(BURST)]
        answers = [post_token(call, token)[0] for token in tokens]
        for answer in answers:
            assert_problem(answer, 401, "invalid-token")
            assert answer.headers["WWW-Authenticate"] == (
                'Bearer realm="cabroker", error="invalid_token"'
            )
        # The first request loads the keys; each later one may force a refresh, if allowed.
        assert github.jwks_requests == jwks_requests
        assert_no_aws_call(sts_calls, codeartifact)
        leaks(answers, tokens)

    def test_a_real_rotation_right_after_a_burst_waits_for_the_interval(
        self,
        call: Call,
        github: LocalIssuer,
        clock: FakeClock,
        codeartifact: FakeCodeArtifact,
        leaks: LeakCheck,
    ) -> None:
        burst = [unknown_kid(github, n) for n in range(3)]
        assert [post_token(call, token)[0].status for token in burst] == [401] * 3
        assert github.jwks_requests == 2  # the forced refresh of this interval is spent
        github.publish("gh-2", private_key("gh-2"))
        rotated = github.mint("gh-2", **GITHUB_CLAIMS)
        early, _ = post_token(call, rotated)
        assert_problem(early, 401, "invalid-token")  # documented: one refresh per interval
        assert github.jwks_requests == 2
        clock.advance(60)
        accepted, _ = post_token(call, rotated)
        assert accepted.status == 200, shown(accepted)
        assert github.jwks_requests == 3
        leaks([early, accepted], [*burst, rotated], codeartifact.tokens)

    def test_concurrent_unknown_kids_share_one_forced_refresh(
        self, broker: service.Broker, github: LocalIssuer
    ) -> None:
        broker.rules_loaded()
        tokens = [unknown_kid(github, n) for n in range(BURST)]
        start = threading.Barrier(BURST)
        outcomes: list[str] = []

        def authenticate(token: str) -> None:
            start.wait()
            try:
                broker.authenticate(token)
                outcomes.append("accepted")
            except InvalidToken as refused:
                outcomes.append(refused.slug)

        threads = [threading.Thread(target=authenticate, args=(t,)) for t in tokens]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        assert outcomes == ["invalid-token"] * BURST
        assert github.jwks_requests == 2


# --------------------------------------------------------------------------- clock skew


class TestClockSkew:
    """The IdP's clock ahead of the broker's (iat/nbf in the future) or behind it (exp in the
    past), within and beyond BROKER_CLOCK_LEEWAY_SECONDS: tokens minted with shifted claims."""

    @pytest.fixture
    def leeway(self) -> int:
        return 60

    @pytest.fixture
    def env(self, env: dict[str, str], leeway: int) -> dict[str, str]:
        return {**env, "BROKER_CLOCK_LEEWAY_SECONDS": str(leeway)}

    @pytest.mark.parametrize(
        ("leeway", "offsets", "reason"),
        [
            pytest.param(60, {"iat": 30, "nbf": 30, "exp": 330}, None, id="IdP 30 s ahead"),
            pytest.param(60, {"iat": 90, "nbf": 90, "exp": 390}, "not valid yet", id="90 s ahead"),
            pytest.param(60, {"iat": 90}, "not valid yet", id="iat 90 s ahead"),
            pytest.param(60, {"nbf": 90}, "not valid yet", id="nbf 90 s ahead"),
            pytest.param(60, {"iat": -330, "nbf": -330, "exp": -30}, None, id="exp 30 s ago"),
            pytest.param(60, {"iat": -390, "nbf": -390, "exp": -90}, "expired", id="exp 90 s ago"),
            pytest.param(0, {"iat": 15, "nbf": 15, "exp": 315}, "not valid yet", id="no leeway"),
            pytest.param(0, {"exp": -15}, "expired", id="no leeway, exp 15 s ago"),
            pytest.param(300, {"iat": 240, "nbf": 240, "exp": 540}, None, id="leeway 300, ahead"),
            pytest.param(300, {"exp": -240}, None, id="leeway 300, exp 240 s ago"),
            pytest.param(300, {"iat": 360, "nbf": 360}, "not valid yet", id="leeway 300, 360 s"),
        ],
    )
    def test_skew(
        self,
        call: Call,
        github: LocalIssuer,
        sts_calls: StsRecorder,
        codeartifact: FakeCodeArtifact,
        leaks: LeakCheck,
        offsets: dict[str, int],
        reason: str | None,
    ) -> None:
        now = int(time.time())
        shifted: dict[str, Any] = {claim: now + s for claim, s in offsets.items()}
        token = github.mint(**GITHUB_CLAIMS, **shifted)
        answer, _ = post_token(call, token)
        if reason is None:
            assert answer.status == 200, shown(answer)
            delivered = same_token(answer, codeartifact.tokens[-1])
            assert delivered, "the token is not the one CodeArtifact made"
        else:
            assert_problem(answer, 401, "invalid-token")
            assert reason in answer.body["detail"]
            assert answer.headers["WWW-Authenticate"].startswith("Bearer ")
            assert_no_aws_call(sts_calls, codeartifact)
        leaks([answer], [token], codeartifact.tokens)


# --------------------------------------------------------------------------- STS and CodeArtifact


@dataclass
class Backoff:
    """botocore's retry back-off, recorded but not slept, and its adaptive rate limiter, never
    waited on: retries stay real (counted by the stand-in), tests stay fast."""

    delays: list[tuple[str, int, float]] = field(default_factory=list)
    rate_limited: int = 0

    def retries(self, operation: str) -> int:
        return sum(1 for name, _, _ in self.delays if name == operation)


@pytest.fixture
def backoff(monkeypatch: pytest.MonkeyPatch) -> Backoff:
    record = Backoff()
    delay_amount = standard.ExponentialBackoff.delay_amount

    def recorded_delay(self: standard.ExponentialBackoff, context: standard.RetryContext) -> float:
        name = context.operation_model.name if context.operation_model else "?"
        record.delays.append((name, context.attempt_number, delay_amount(self, context)))
        return 0.0

    def acquire(self: bucket.TokenBucket, amount: int = 1, block: bool = True) -> bool:
        record.rate_limited += 1
        return True

    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", recorded_delay)
    monkeypatch.setattr(bucket.TokenBucket, "acquire", acquire)
    return record


@pytest.fixture
def fake_aws() -> Iterator[FakeAws]:
    with FakeAws().running() as stand_in:
        yield stand_in


AWS_SETTINGS = {
    "BROKER_AWS_MAX_ATTEMPTS": str(AWS_ATTEMPTS),
    "BROKER_AWS_CONNECT_TIMEOUT_SECONDS": str(AWS_TIMEOUT),
    "BROKER_AWS_READ_TIMEOUT_SECONDS": str(AWS_TIMEOUT),
}
Build = Callable[..., None]


@pytest.fixture
def build(
    env: dict[str, str], fake_aws: FakeAws, backoff: Backoff, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Build]:
    """Builds the broker as deployed (``aws.Clients``: adaptive retries, the settings'
    timeouts), its endpoints on the stand-in unless a test set them already."""
    for variable in ("AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_CODEARTIFACT"):
        monkeypatch.setenv(variable, fake_aws.url)

    def build_broker(**settings: str) -> None:
        broker = service.Broker.from_settings(
            Settings.from_env({**env, **AWS_SETTINGS, **settings})
        )
        service.use(broker)

    yield build_broker
    service.use(None)


def invoke_post_token(token: str, context: DeadlineContext | None = None) -> tuple[Answer, float]:
    """POST /v1/token through the handler, with a Lambda context whose time runs down."""
    from broker import app

    event = http_event("POST", "/v1/token", token=token, body={})
    started = time.monotonic()
    raw = app.handler(event, context or DeadlineContext())  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    body = raw.get("body") or ""
    answer = Answer(raw["statusCode"], dict(raw.get("headers") or {}), json.loads(body), raw)
    return answer, elapsed


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


ORDER: list[AwsOperation] = ["AssumeRole", "GetRepositoryEndpoint", "GetAuthorizationToken"]
LABEL = {
    "AssumeRole": "sts:AssumeRole",
    "GetRepositoryEndpoint": "codeartifact:GetRepositoryEndpoint",
    "GetAuthorizationToken": "codeartifact:GetAuthorizationToken",
}


def _aws_faults() -> Iterator[Any]:
    for operation in ORDER:
        status = 400 if operation == "AssumeRole" else 429
        for code in ("ThrottlingException", "TooManyRequestsException"):
            yield pytest.param(
                operation, AwsFault("error", code, status), "2", id=f"{operation} {code}"
            )
        yield pytest.param(
            operation, AwsFault("stall", seconds=LATE), "5", id=f"{operation} ReadTimeout"
        )
        yield pytest.param(operation, AwsFault("reset"), "5", id=f"{operation} connection dropped")


@pytest.mark.parametrize(("operation", "fault", "retry_after"), list(_aws_faults()))
def test_aws_throttling_and_timeouts_are_503_after_botocore_retries(
    build: Build,
    fake_aws: FakeAws,
    backoff: Backoff,
    github_token: str,
    leaks: LeakCheck,
    operation: AwsOperation,
    fault: AwsFault,
    retry_after: str,
) -> None:
    fake_aws.faults[operation] = fault
    build()
    answer, elapsed = invoke_post_token(github_token)
    assert_problem(answer, 503, "upstream-unavailable")
    assert answer.headers["Retry-After"] == retry_after
    assert LABEL[operation] in answer.body["detail"]
    assert "(injected)" not in answer.body["detail"]  # nothing AWS says beyond its error code
    # botocore retried: every attempt was made, with a back-off between them (counted by
    # botocore). On a loaded machine an attempt may time out connecting (0.2 s) before the fake
    # counts it, so the fake's count is a bound (CI saw 2 of 3 once).
    assert backoff.retries(operation) == AWS_ATTEMPTS - 1
    assert AWS_ATTEMPTS - 1 <= fake_aws.attempts[operation] <= AWS_ATTEMPTS
    position = ORDER.index(operation)
    assert all(fake_aws.attempts[before] == 1 for before in ORDER[:position])
    assert all(fake_aws.attempts[after] == 0 for after in ORDER[position + 1 :])
    if fault.kind == "stall":
        # every attempt waited its read timeout, none the stall's end
        assert AWS_ATTEMPTS * AWS_TIMEOUT <= elapsed < LATE
    if fault.kind == "stall" and operation == "GetAuthorizationToken":
        # CodeArtifact made a token on every attempt, too late: none is half-issued (below).
        assert len(fake_aws.tokens) == AWS_ATTEMPTS
    leaks([answer], [github_token], fake_aws.tokens)


@pytest.mark.parametrize(
    ("variable", "operation"),
    [
        pytest.param("AWS_ENDPOINT_URL_STS", "AssumeRole", id="STS"),
        pytest.param("AWS_ENDPOINT_URL_CODEARTIFACT", "GetRepositoryEndpoint", id="CodeArtifact"),
    ],
)
def test_aws_connection_refused_is_503_after_botocore_retries(
    build: Build,
    fake_aws: FakeAws,
    backoff: Backoff,
    github_token: str,
    leaks: LeakCheck,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    operation: str,
) -> None:
    monkeypatch.setenv(variable, closed_port_url())
    build()
    answer, elapsed = invoke_post_token(github_token)
    assert_problem(answer, 503, "upstream-unavailable")
    assert answer.headers["Retry-After"] == "5"
    assert "could not be reached" in answer.body["detail"]
    assert backoff.retries(operation) == AWS_ATTEMPTS - 1
    assert fake_aws.tokens == []
    assert elapsed < LATE
    leaks([answer], [github_token])


@pytest.mark.parametrize("attempts", [1, 5])
def test_botocore_attempts_follow_the_setting(
    build: Build, fake_aws: FakeAws, backoff: Backoff, github_token: str, attempts: int
) -> None:
    fake_aws.faults["GetAuthorizationToken"] = AwsFault("error", "ThrottlingException", 429)
    build(BROKER_AWS_MAX_ATTEMPTS=str(attempts))
    answer, _ = invoke_post_token(github_token)
    assert_problem(answer, 503, "upstream-unavailable")
    assert fake_aws.attempts["GetAuthorizationToken"] == attempts
    assert backoff.retries("GetAuthorizationToken") == attempts - 1


@pytest.mark.parametrize("operation", ORDER)
def test_throttling_that_passes_within_the_retries_is_invisible(
    build: Build, fake_aws: FakeAws, github_token: str, leaks: LeakCheck, operation: AwsOperation
) -> None:
    code = "Throttling" if operation == "AssumeRole" else "ThrottlingException"
    fake_aws.faults[operation] = AwsFault("error", code, 400, times=AWS_ATTEMPTS - 1)
    build()
    answer, _ = invoke_post_token(github_token)
    assert answer.status == 200, shown(answer)
    delivered = same_token(answer, fake_aws.tokens[-1])
    assert delivered, "the token is not the one CodeArtifact made"
    assert fake_aws.attempts[operation] == AWS_ATTEMPTS
    leaks([answer], [github_token])


# --------------------------------------------------------------------------- SSM and the rules

PARAMETER = "/cabroker/rules"
BROKEN_YAML = "version: 1\nrules: [unclosed\n"
OPEN_RULE = """\
  - name: everyone
    issuer: github
    claims: {}
    grant: {repository: internal, access: read}
"""


class SsmSwitch:
    """Moto's SSM behind the broker's Powertools provider; GetParameter raises ``failure``
    while it is set (an outage).  ``put`` changes the document as an admin would."""

    def __init__(self) -> None:
        self.client = boto3.client("ssm", region_name="us-east-1")
        self.failure: Callable[[], Exception] | None = None
        self.client.meta.events.register("before-call.ssm.GetParameter", self._before_call)

    def _before_call(self, **_: Any) -> None:
        if self.failure is not None:
            raise self.failure()

    def put(self, text: str) -> None:
        self.client.put_parameter(Name=PARAMETER, Value=text, Type="String", Overwrite=True)


def unreachable() -> Exception:
    return EndpointConnectionError(endpoint_url="https://ssm.us-east-1.amazonaws.com/")


def read_timeout() -> Exception:
    return ReadTimeoutError(endpoint_url="https://ssm.us-east-1.amazonaws.com/")


def throttled() -> Exception:
    error = {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}
    return ClientError(error, "GetParameter")  # type: ignore[arg-type]


OUTAGES = [
    pytest.param(unreachable, id="unreachable"),
    pytest.param(read_timeout, id="read timeout"),
    pytest.param(throttled, id="throttled"),
]
DOCUMENTED_STALE_RULES_SECONDS = 3600  # README, Caches: "last good rules for up to 1 h"


class TestRulesFromSsm:
    @pytest.fixture
    def ssm(self, aws: None, rules_file: Path) -> Iterator[SsmSwitch]:
        parameters.clear_caches()  # type: ignore[no-untyped-call]
        switch = SsmSwitch()
        switch.put(rules_file.read_text())
        DEFAULT_PROVIDERS["ssm"] = SSMProvider(boto3_client=switch.client)
        yield switch
        parameters.clear_caches()  # type: ignore[no-untyped-call]

    @pytest.fixture
    def env(self, env: dict[str, str], ssm: SsmSwitch) -> dict[str, str]:
        without_file = {k: v for k, v in env.items() if k != "BROKER_RULES_FILE"}
        # No Powertools cache: every request reads SSM, so an outage shows at once.
        return {
            **without_file,
            "BROKER_RULES_PARAMETER": PARAMETER,
            "BROKER_RULES_CACHE_SECONDS": "0",
        }

    @pytest.mark.parametrize("outage", OUTAGES)
    def test_an_outage_serves_the_last_good_rules_for_an_hour_then_503(
        self,
        call: Call,
        ssm: SsmSwitch,
        clock: FakeClock,
        github_token: str,
        sts_calls: StsRecorder,
        codeartifact: FakeCodeArtifact,
        leaks: LeakCheck,
        caplog: pytest.LogCaptureFixture,
        outage: Callable[[], Exception],
    ) -> None:
        first, _ = post_token(call, github_token)
        assert first.status == 200, shown(first)
        ssm.failure = outage
        clock.advance(DOCUMENTED_STALE_RULES_SECONDS)
        stale, _ = post_token(call, github_token)
        assert stale.status == 200, shown(stale)
        assert call("GET", "/v1/grants", token=github_token).status == 200
        assert "serving the last rules loaded" in caplog.text

        clock.advance(1)
        late, _ = post_token(call, github_token)
        assert_problem(late, 503, "rules-unavailable")
        assert late.headers["Retry-After"] == "10"
        assert call("GET", "/v1/config").status == 503
        assert len(sts_calls.calls) == 1  # the cached token was not handed out either

        ssm.failure = None
        again, _ = post_token(call, github_token)
        assert again.status == 200, shown(again)
        leaks([first, stale, late, again], [github_token], codeartifact.tokens)

    @pytest.mark.parametrize("outage", OUTAGES)
    def test_an_outage_with_no_rules_loaded_yet_is_503(
        self,
        call: Call,
        ssm: SsmSwitch,
        github_token: str,
        sts_calls: StsRecorder,
        codeartifact: FakeCodeArtifact,
        leaks: LeakCheck,
        outage: Callable[[], Exception],
    ) -> None:
        ssm.failure = outage
        answers = [
            post_token(call, github_token)[0],
            call("GET", "/v1/grants", token=github_token),
            call("GET", "/v1/config"),
        ]
        for answer in answers:
            assert_problem(answer, 503, "rules-unavailable")
            assert answer.headers["Retry-After"] == "10"
        assert_no_aws_call(sts_calls, codeartifact)
        leaks(answers, [github_token])

    def test_a_document_broken_at_runtime_is_503_never_the_previous_rules(
        self,
        call: Call,
        ssm: SsmSwitch,
        rules_file: Path,
        github: LocalIssuer,
        github_token: str,
        sts_calls: StsRecorder,
        codeartifact: FakeCodeArtifact,
        leaks: LeakCheck,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        good = rules_file.read_text()
        stranger = github.mint(**{**GITHUB_CLAIMS, "repository_owner": "evil"})
        assert post_token(call, github_token)[0].status == 200
        answers = []
        for broken in (BROKEN_YAML, good + OPEN_RULE):
            ssm.put(broken)
            for token in (github_token, stranger):
                answer, _ = post_token(call, token)
                assert_problem(answer, 503, "rules-unavailable")
                assert answer.headers["Retry-After"] == "60"
                answers.append(answer)
        assert "rules document is invalid" in caplog.text
        # An outage now must not bring back the last good rules: the current ones are invalid.
        ssm.failure = unreachable
        during_outage, _ = post_token(call, github_token)
        assert_problem(during_outage, 503, "rules-unavailable")
        assert len(sts_calls.calls) == 1

        ssm.failure = None
        ssm.put(good)
        fixed, _ = post_token(call, github_token)
        assert fixed.status == 200, shown(fixed)
        refused, _ = post_token(call, stranger)
        assert_problem(refused, 403, "no-matching-rule")
        leaks(
            [*answers, during_outage, fixed, refused], [github_token, stranger], codeartifact.tokens
        )


# --------------------------------------------------------------------------- the Lambda's time

WORK = 0.5  # seconds a request may work in these tests: the Lambda's remaining time less margin
ROLE = "arn:aws:iam::123456789012:role/TokenIssuerRole"


def little_time_left(work: float = WORK) -> DeadlineContext:
    """A Lambda context with ``work`` seconds of working time left, on top of the margin."""
    return DeadlineContext(remaining_ms=int((deadline.MARGIN_SECONDS + work) * 1000))


@pytest.mark.parametrize("operation", ORDER)
def test_the_broker_answers_before_the_lambda_deadline(
    build: Build, fake_aws: FakeAws, github_token: str, leaks: LeakCheck, operation: AwsOperation
) -> None:
    fake_aws.faults[operation] = AwsFault("stall", seconds=3.0)
    # Left alone, botocore would wait 3 attempts x 1 s on the stall: far past the deadline.
    # (A short connect timeout: an attempt starts only if its connect timeout fits.)
    build(BROKER_AWS_CONNECT_TIMEOUT_SECONDS="0.1", BROKER_AWS_READ_TIMEOUT_SECONDS="1.0")
    context = little_time_left()
    lambda_deadline = context.get_remaining_time_in_millis() / 1000
    answer, elapsed = invoke_post_token(github_token, context)
    assert_problem(answer, 503, "upstream-unavailable")
    assert LABEL[operation] in answer.body["detail"], answer.body["detail"]
    assert answer.headers["Retry-After"] == "5"
    assert elapsed < lambda_deadline, (
        f"answered after {elapsed:.2f} s, Lambda stops at {lambda_deadline} s"
    )
    assert fake_aws.attempts[operation] < AWS_ATTEMPTS  # the deadline cut botocore's retries
    leaks([answer], [github_token], fake_aws.tokens)


def test_the_deadline_not_the_sum_of_timeouts_bounds_a_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    template = cfn_yaml.loads((ROOT / "template.yaml").read_text())
    function = template["Resources"]["BrokerFunction"]["Properties"]
    variables = function.get("Environment", {}).get("Variables", {})
    configured = {
        k: v for k, v in variables.items() if k.startswith("BROKER_") and isinstance(v, str)
    }
    settings = Settings.from_env(
        {
            "BROKER_RULES_PARAMETER": PARAMETER,
            "BROKER_ROLE_ARN": ROLE,
            "BROKER_DOMAIN": "acme",
            "BROKER_DOMAIN_OWNER": "111122223333",
            "AWS_REGION": "us-east-1",
            **configured,
        }
    )
    # What the request may work: the function's Timeout less the margin for answering.
    work = function["Timeout"] - deadline.MARGIN_SECONDS
    assert work >= function["Timeout"] / 2, (deadline.MARGIN_SECONDS, function["Timeout"])
    # One AWS attempt and one issuer fetch (given at most half the time left) fit in it, so the
    # deadline refuses nothing to a request whose dependencies are merely not instant.
    assert settings.aws_connect_timeout_seconds + settings.aws_read_timeout_seconds < work
    assert 2 * settings.http_timeout_seconds < work
    # The sum of every wait does not fit (3 calls x attempts x (connect + read), and issuer
    # fetches): every AWS client the broker builds must refuse to wait past the deadline.
    for variable in ("STS", "CODEARTIFACT", "SSM", "DYNAMODB", "KMS"):
        monkeypatch.setenv(f"AWS_ENDPOINT_URL_{variable}", closed_port_url())  # never AWS
    clients = aws.Clients(settings)
    credentials: Any = {"AccessKeyId": "ASIAX", "SecretAccessKey": "s", "SessionToken": "t"}
    repository: dict[str, Any] = {"domain": "acme", "repository": "internal", "format": "pypi"}
    saved = DEFAULT_PROVIDERS.pop("ssm", None)
    try:
        rulesource.ssm_loader(PARAMETER, 60, aws.client_config(settings))  # Powertools' client
        ssm_client = DEFAULT_PROVIDERS["ssm"].client
    finally:
        DEFAULT_PROVIDERS.pop("ssm", None)
        if saved is not None:
            DEFAULT_PROVIDERS["ssm"] = saved
    calls: dict[str, Callable[[], object]] = {
        "sts:AssumeRole": lambda: clients.sts.assume_role(RoleArn=ROLE, RoleSessionName="s-1"),
        "codeartifact:GetRepositoryEndpoint": lambda: clients.codeartifact(
            credentials
        ).get_repository_endpoint(**repository),
        "ssm:GetParameter": lambda: ssm_client.get_parameter(Name=PARAMETER),
        "dynamodb:GetItem": lambda: clients.client("dynamodb").get_item(
            TableName="cabroker", Key={"pk": {"S": "k"}}
        ),
        "kms:Decrypt": lambda: clients.client("kms").decrypt(CiphertextBlob=b"c"),
    }
    for label, call in calls.items():
        with deadline.scope(0.0), pytest.raises(ServiceUnavailable) as raised:
            call()
        assert label in raised.value.detail


def test_a_stalled_ssm_is_bounded_by_the_broker_aws_timeouts(
    build: Build,
    fake_aws: FakeAws,
    rules_file: Path,
    github_token: str,
    monkeypatch: pytest.MonkeyPatch,
    leaks: LeakCheck,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", fake_aws.url)
    fake_aws.parameters[PARAMETER] = rules_file.read_text()
    fake_aws.faults["GetParameter"] = AwsFault("stall", seconds=LATE)
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    try:  # Powertools builds its default SSM provider anew, for the stand-in
        build(BROKER_RULES_FILE="", BROKER_RULES_PARAMETER=PARAMETER, BROKER_AWS_MAX_ATTEMPTS="1")
        answer, elapsed = invoke_post_token(github_token)
    finally:
        parameters.clear_caches()  # type: ignore[no-untyped-call]
    leaks([answer], [github_token], fake_aws.tokens)
    assert answer.status in (200, 503), shown(answer)
    assert elapsed < LATE, f"{elapsed:.2f} s waiting for SSM"
