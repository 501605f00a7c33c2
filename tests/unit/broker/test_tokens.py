"""Minting: session names, the token cache's reuse rule and bound, and AWS error mapping."""

from __future__ import annotations

import re
import time
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from broker.grants import ResolvedGrant
from broker.identity import Identity
from broker.problems import PolicyTooLarge, ServiceUnavailable
from broker.rules import Issuer
from broker.tokens import Minter, session_name
from tests.support.codeartifact import FakeCodeArtifact

AWS_NAME = re.compile(r"^[\w+=,.@-]{2,64}$", re.ASCII)
ISSUER = Issuer(name="github", url="https://token.actions.githubusercontent.com", audience="a")
CREDENTIALS = {
    "AccessKeyId": "ASIAEXAMPLEEXAMPLE12",
    "SecretAccessKey": "secret",
    "SessionToken": "session",
    "Expiration": "2030-01-01T00:00:00Z",
}


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        pytest.param(
            "repo:acme/app:ref:refs/heads/main",
            "github.repo-acme-app-ref-refs-heads-main",
            id="github subject",
        ),
        pytest.param("alice@example.com", "github.alice@example.com", id="email kept"),
        pytest.param("a b\nc", "github.a-b-c", id="whitespace"),
        pytest.param("ünïcode", "github.-n-code", id="non-ascii"),
    ],
)
def test_session_names_are_readable_and_valid(subject: str, expected: str) -> None:
    assert session_name("github", subject) == expected


def test_long_session_names_are_unique_and_valid() -> None:
    base = "project_path:acme/platform/very-long-group-name/service:ref_type:branch:ref:main-"
    first = session_name("gitlab", base + "1")
    second = session_name("gitlab", base + "2")
    assert first != second
    for name in (first, second):
        assert AWS_NAME.fullmatch(name)


def identity(subject: str = "alice") -> Identity:
    return Identity(issuer=ISSUER, subject=subject, claims={}, token_sha256="0" * 64)


def grant(duration: int = 3600, packages: tuple[str, ...] = ("acme-*",)) -> ResolvedGrant:
    return ResolvedGrant("r", "internal", "publish", packages, duration)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sts() -> Any:
    client = boto3.client("sts", region_name="us-east-1")
    stubber = Stubber(client)
    stubber.activate()
    client.stubber = stubber  # type: ignore[attr-defined]
    return client


def expect_assume_role(sts: Any, times: int = 1) -> None:
    for _ in range(times):
        sts.stubber.add_response("assume_role", {"Credentials": CREDENTIALS})


def minter(sts: Any, codeartifact: FakeCodeArtifact, clock: Clock, size: int = 10) -> Minter:
    return Minter(
        sts=sts,
        codeartifact=codeartifact.client,
        role_arn="arn:aws:iam::123456789012:role/TokenIssuerRole",
        domain="acme",
        domain_owner="111122223333",
        cache_margin_seconds=300,
        cache_size=size,
        endpoint_cache_seconds=3600,
        clock=clock,
    )


def test_cached_token_is_reused_while_half_its_lifetime_remains(sts: Any) -> None:
    codeartifact = FakeCodeArtifact()
    clock = Clock(time.time())
    m = minter(sts, codeartifact, clock)
    expect_assume_role(sts, 2)
    first, source = m.token(identity(), grant(3600), "{}")
    assert source == "minted"
    clock.now += 1799  # just under half of 3600 s gone
    again, source = m.token(identity(), grant(3600), "{}")
    assert source == "memory"
    assert again is first
    clock.now += 2  # now less than half remains: mint anew
    fresh, source = m.token(identity(), grant(3600), "{}")
    assert source == "minted"
    assert fresh.token != first.token


def test_cache_is_per_subject_and_per_grant(sts: Any) -> None:
    codeartifact = FakeCodeArtifact()
    m = minter(sts, codeartifact, Clock(time.time()))
    expect_assume_role(sts, 3)
    m.token(identity("alice"), grant(), "{}")
    assert m.token(identity("bob"), grant(), "{}")[1] == "minted"
    assert m.token(identity("alice"), grant(packages=("acme-lib",)), "{}")[1] == "minted"
    assert m.token(identity("alice"), grant(), "{}")[1] == "memory"


def test_cache_is_bounded(sts: Any) -> None:
    codeartifact = FakeCodeArtifact()
    m = minter(sts, codeartifact, Clock(time.time()), size=2)
    expect_assume_role(sts, 4)
    for subject in ("a", "b", "c"):
        m.token(identity(subject), grant(), "{}")
    assert m.token(identity("a"), grant(), "{}")[1] == "minted"  # evicted, least recently used


def test_repr_never_shows_the_token(sts: Any) -> None:
    codeartifact = FakeCodeArtifact()
    expect_assume_role(sts)
    minted, _ = minter(sts, codeartifact, Clock(time.time())).token(identity(), grant(), "{}")
    assert minted.token not in repr(minted)


@pytest.mark.parametrize(
    ("code", "error", "retry_after"),
    [
        pytest.param("Throttling", ServiceUnavailable, "2", id="throttled"),
        pytest.param("RegionDisabledException", ServiceUnavailable, "5", id="region disabled"),
        pytest.param("AccessDenied", ServiceUnavailable, "5", id="denied"),
        pytest.param("PackedPolicyTooLarge", PolicyTooLarge, None, id="packed policy too large"),
    ],
)
def test_sts_errors_map_to_problems(
    sts: Any, code: str, error: type[Exception], retry_after: str | None
) -> None:

    sts.stubber.add_client_error("assume_role", code, "message from AWS", 400)
    with pytest.raises(error) as raised:
        minter(sts, FakeCodeArtifact(), Clock(time.time())).token(identity(), grant(), "{}")
    problem: Any = raised.value
    if retry_after:
        assert problem.headers()["Retry-After"] == retry_after
    assert "message from AWS" not in problem.detail
