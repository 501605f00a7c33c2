"""The issuer-key cache with a fake clock and fetcher: TTL, forced refresh on unknown kid, bounded
stale-if-error, failure back-off, and which keys are usable for which algorithm."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from broker import deadline, identity
from broker.identity import FetchError, IssuerKeys, OutOfTime, http_fetcher
from broker.problems import InvalidToken, IssuerUnavailable
from broker.rules import Issuer
from tests.support.faults import FaultyIssuer, JwksFault
from tests.support.oidc import private_key, public_jwk

ISSUER = Issuer(name="corp", url="https://login.example.com", audience="cabroker")
DISCOVERY = "https://login.example.com/.well-known/openid-configuration"
JWKS = "https://login.example.com/keys"


class FakeIdP:
    def __init__(self) -> None:
        self.keys: list[Any] = [public_jwk(private_key("rsa-a"), "a")]
        self.discovery: dict[str, Any] = {"issuer": ISSUER.url, "jwks_uri": JWKS}
        self.down = False
        self.fetches: list[str] = []

    def __call__(self, url: str) -> Mapping[str, Any]:
        self.fetches.append(url)
        if self.down:
            raise FetchError(f"{url} is unreachable")
        if url == DISCOVERY:
            return self.discovery
        if url == JWKS:
            return {"keys": self.keys}
        raise FetchError(f"{url} answered HTTP 404")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def idp() -> FakeIdP:
    return FakeIdP()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys(idp: FakeIdP, clock: Clock) -> IssuerKeys:
    return IssuerKeys(idp, ttl=600, min_refresh_interval=60, stale_if_error=3600, clock=clock)


def jwks_fetches(idp: FakeIdP) -> int:
    return idp.fetches.count(JWKS)


def test_keys_are_cached_for_the_ttl(keys: IssuerKeys, idp: FakeIdP, clock: Clock) -> None:
    keys.key(ISSUER, "a", "RS256")
    clock.now += 599
    keys.key(ISSUER, "a", "RS256")
    assert jwks_fetches(idp) == 1
    clock.now += 2
    keys.key(ISSUER, "a", "RS256")
    assert jwks_fetches(idp) == 2


def test_unknown_kid_forces_one_refresh_per_interval(
    keys: IssuerKeys, idp: FakeIdP, clock: Clock
) -> None:
    keys.key(ISSUER, "a", "RS256")
    for _ in range(5):
        with pytest.raises(InvalidToken):
            keys.key(ISSUER, "b", "RS256")
    assert jwks_fetches(idp) == 2
    idp.keys.append(public_jwk(private_key("rsa-b"), "b"))
    clock.now += 61
    assert keys.key(ISSUER, "b", "RS256") is not None
    assert jwks_fetches(idp) == 3


def test_stale_keys_serve_while_the_issuer_is_down_then_stop(
    keys: IssuerKeys, idp: FakeIdP, clock: Clock
) -> None:
    keys.key(ISSUER, "a", "RS256")
    idp.down = True
    clock.now += 600 + 3599  # past the TTL, within stale-if-error
    assert keys.key(ISSUER, "a", "RS256") is not None
    clock.now += 2  # past TTL + stale-if-error: no more
    with pytest.raises(IssuerUnavailable):
        keys.key(ISSUER, "a", "RS256")


def test_failures_back_off_instead_of_hammering_the_issuer(
    keys: IssuerKeys, idp: FakeIdP, clock: Clock
) -> None:
    idp.down = True
    for _ in range(10):
        with pytest.raises(IssuerUnavailable) as unavailable:
            keys.key(ISSUER, "a", "RS256")
    assert unavailable.value.headers()["Retry-After"] == "5"
    assert len(idp.fetches) == 1
    clock.now += 5
    idp.down = False
    assert keys.key(ISSUER, "a", "RS256") is not None


@pytest.mark.parametrize(
    ("discovery", "reason"),
    [
        pytest.param({"issuer": "https://other.example", "jwks_uri": JWKS}, "another", id="iss"),
        pytest.param({"issuer": ISSUER.url}, "jwks_uri", id="no jwks_uri"),
        pytest.param(
            {"issuer": ISSUER.url, "jwks_uri": "http://login.example.com/keys"},
            "jwks_uri",
            id="http jwks_uri",
        ),
        pytest.param(
            {"issuer": ISSUER.url, "jwks_uri": "file:///etc/passwd"}, "jwks_uri", id="file"
        ),
    ],
)
def test_unusable_discovery_documents_are_refused(
    keys: IssuerKeys, idp: FakeIdP, discovery: dict[str, Any], reason: str
) -> None:
    idp.discovery = discovery
    with pytest.raises(IssuerUnavailable):
        keys.key(ISSUER, "a", "RS256")
    assert JWKS not in idp.fetches or reason == "another"


def test_hmac_and_encryption_keys_in_the_jwks_are_never_used(
    keys: IssuerKeys, idp: FakeIdP
) -> None:
    idp.keys = [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "h", "alg": "HS256"},
        {**public_jwk(private_key("rsa-a"), "enc"), "use": "enc"},
    ]
    with pytest.raises(IssuerUnavailable):  # no usable signing key at all
        keys.key(ISSUER, "h", "RS256")


@pytest.mark.parametrize(
    ("kid", "algorithm", "usable"),
    [
        pytest.param("rsa", "RS256", True, id="RSA key for RS256"),
        pytest.param("rsa", "PS256", True, id="RSA key for PS256"),
        pytest.param("rsa", "ES256", False, id="RSA key for ES256"),
        pytest.param("ec", "ES256", True, id="P-256 key for ES256"),
        pytest.param("ec", "ES384", False, id="P-256 key for ES384"),
        pytest.param("ec", "RS256", False, id="EC key for RS256"),
        pytest.param("pinned", "RS256", True, id="declared alg matches"),
        pytest.param("pinned", "RS512", False, id="declared alg differs"),
        pytest.param(None, "ES256", True, id="no kid, one fitting key"),
    ],
)
def test_the_header_algorithm_must_fit_the_key(
    keys: IssuerKeys, idp: FakeIdP, kid: str | None, algorithm: str, usable: bool
) -> None:
    idp.keys = [
        public_jwk(private_key("rsa-a"), "rsa"),
        public_jwk(private_key("ec-a", "EC"), "ec"),
        public_jwk(private_key("rsa-b"), "pinned", alg="RS256"),
    ]
    if usable:
        assert keys.key(ISSUER, kid, algorithm) is not None
    else:
        with pytest.raises(InvalidToken):
            keys.key(ISSUER, kid, algorithm)


def test_http_fetcher_refuses_non_loopback_http_before_connecting() -> None:
    fetch = http_fetcher(0.5)
    with pytest.raises(FetchError, match="neither https"):
        fetch("http://login.example.com/.well-known/openid-configuration")
    with pytest.raises(FetchError, match="neither https"):
        fetch("file:///etc/passwd")


def test_http_fetcher_reports_unreachable_and_non_json(issuer_server: Any) -> None:
    fetch = http_fetcher(2.0)
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch(issuer_server.base_url + "/nobody/jwks")
    with pytest.raises(FetchError, match="unreachable"):
        fetch("http://127.0.0.1:9/")


def test_a_cold_cache_and_an_unknown_kid_fetch_the_jwks_once(
    keys: IssuerKeys, idp: FakeIdP
) -> None:
    with pytest.raises(InvalidToken):
        keys.key(ISSUER, "unknown", "RS256")
    assert jwks_fetches(idp) == 1


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param({"kty": "RSA", "alg": ["RS256"], "kid": "x"}, id="alg is a list"),
        pytest.param({"kty": "RSA", "alg": {"a": 1}, "kid": "x"}, id="alg is an object"),
        pytest.param({"kty": "EC", "crv": ["P-256"], "kid": "x"}, id="crv is a list"),
        pytest.param({"kty": "RSA", "n": 5, "e": None, "kid": "x"}, id="numbers as strings"),
        pytest.param({"kty": ["RSA"], "kid": "x"}, id="kty is a list"),
        pytest.param("a string", id="not an object"),
    ],
)
def test_malformed_keys_are_skipped_and_good_ones_still_serve(
    keys: IssuerKeys, idp: FakeIdP, garbage: Any
) -> None:
    idp.keys = [garbage, *idp.keys]
    assert keys.key(ISSUER, "a", "RS256") is not None


def test_a_jwks_of_garbage_is_unavailable_with_backoff(keys: IssuerKeys, idp: FakeIdP) -> None:
    idp.keys = [{"kty": "RSA", "alg": ["RS256"]}, 7]
    for _ in range(3):
        with pytest.raises(IssuerUnavailable):
            keys.key(ISSUER, "a", "RS256")
    assert jwks_fetches(idp) == 1


def test_an_https_issuer_cannot_point_the_jwks_at_loopback_http(
    keys: IssuerKeys, idp: FakeIdP
) -> None:
    idp.discovery = {"issuer": ISSUER.url, "jwks_uri": "http://127.0.0.1:9001/2018-06-01/x"}
    with pytest.raises(IssuerUnavailable):
        keys.key(ISSUER, "a", "RS256")
    assert all("127.0.0.1" not in url for url in idp.fetches)


# --------------------------------------------------------------------------- the deadline


def test_http_fetcher_does_not_start_without_time_left() -> None:
    with FaultyIssuer().running() as issuer:
        fetch = http_fetcher(3.0)
        with deadline.scope(0.0), pytest.raises(OutOfTime, match="no time was left"):
            fetch(issuer.url + "/.well-known/openid-configuration")
        assert issuer.discovery_requests == 0


@pytest.mark.parametrize("fault", ["slow", "trickle"])
def test_http_fetcher_gives_up_within_the_time_left(fault: JwksFault) -> None:
    with FaultyIssuer().running() as issuer:
        issuer.fault, issuer.delay = fault, 2.0
        fetch = http_fetcher(3.0)  # left alone: up to about 6 s
        started = time.monotonic()
        with deadline.scope(0.4), pytest.raises(FetchError):
            fetch(issuer.url + "/jwks")
        elapsed = time.monotonic() - started
    assert elapsed < 0.4, f"{elapsed:.2f} s with 0.4 s left"


def test_http_fetcher_keeps_its_timeout_with_time_to_spare() -> None:
    with FaultyIssuer().running() as issuer:
        issuer.fault, issuer.delay = "slow", 0.3
        fetch = http_fetcher(1.0)
        with deadline.scope(30.0):
            assert "keys" in fetch(issuer.url + "/jwks")


def within_the_deadline(idp: FakeIdP) -> Callable[[str], Mapping[str, Any]]:
    """The fake IdP behind what http_fetcher does when the request has no time left."""

    def fetch(url: str) -> Mapping[str, Any]:
        left = deadline.remaining()
        if left is not None and left <= 0:
            raise OutOfTime(f"no time was left to fetch {url}")
        return idp(url)

    return fetch


def test_a_request_out_of_time_does_not_mark_the_issuer_as_failing(idp: FakeIdP) -> None:
    keys = IssuerKeys(
        within_the_deadline(idp), ttl=600, min_refresh_interval=60, stale_if_error=3600
    )
    with deadline.scope(0.0), pytest.raises(IssuerUnavailable):
        keys.key(ISSUER, "a", "RS256")
    # The next request, with time, fetches at once: no failure back-off for the issuer.
    assert keys.key(ISSUER, "a", "RS256") is not None
    assert jwks_fetches(idp) == 1


def test_a_request_out_of_time_is_served_stale_keys(idp: FakeIdP, clock: Clock) -> None:
    keys = IssuerKeys(
        within_the_deadline(idp), ttl=600, min_refresh_interval=60, stale_if_error=3600, clock=clock
    )
    keys.key(ISSUER, "a", "RS256")
    clock.now += 601  # past the TTL: a refresh is due, and there is no time for it
    with deadline.scope(0.0):
        assert keys.key(ISSUER, "a", "RS256") is not None
    assert jwks_fetches(idp) == 1


def test_a_connection_that_comes_up_after_the_watchdog_fired_is_cut_at_once() -> None:
    """Connecting took the whole wait: the watchdog found no socket to cut, so the socket is
    cut as it comes up instead of reading at the issuer's pace."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        watched = identity._Watched()
        watched.cut()
        watched.connected(ours)
        ours.settimeout(1)
        assert ours.recv(1) == b""  # shut down: no waiting on the issuer
        assert watched.was_cut
