"""The broker's verifier (broker.identity) on oidc-provider's ID tokens: the issuer and keys
come from its discovery document and JWKS, over real HTTP; a key rotation the provider does is
picked up at once (an unknown kid), and a key it retires stops verifying when the broker's key
cache expires.  The cache's clock is the test's."""

from __future__ import annotations

import jwt
import pytest

from broker.identity import IssuerKeys, Verifier, http_fetcher
from broker.problems import InvalidToken
from broker.rules import RuleSet, parse
from broker.settings import Settings
from tests.interop.support import PUBLIC_CLIENT, Provider, logged_in

DEFAULTS = Settings(None, None, "arn:aws:iam::111122223333:role/x", "acme", "1", "us-east-1")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def rules_for(provider: Provider) -> RuleSet:
    return parse(
        f"version: 1\nissuers:\n  op: {{url: '{provider.issuer}', audience: {PUBLIC_CLIENT}, "
        f"client_id: {PUBLIC_CLIENT}, scopes: [openid, groups]}}\nrules: []\n"
    )


def verifier(clock: Clock) -> Verifier:
    """As the broker builds it (broker.service), with its default settings and ``clock``."""
    keys = IssuerKeys(
        http_fetcher(DEFAULTS.http_timeout_seconds),
        ttl=DEFAULTS.jwks_cache_seconds,
        min_refresh_interval=DEFAULTS.jwks_min_refresh_seconds,
        stale_if_error=DEFAULTS.jwks_stale_seconds,
        clock=clock,
    )
    return Verifier(
        keys, leeway=DEFAULTS.clock_leeway_seconds, max_token_bytes=DEFAULTS.max_id_token_bytes
    )


def kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def test_the_broker_verifies_the_providers_id_tokens_through_discovery(provider: Provider) -> None:
    token = logged_in(provider, "alice")
    identity = verifier(Clock()).verify(token, rules_for(provider))
    assert (identity.issuer.name, identity.subject) == ("op", "alice")
    assert identity.claims["groups"] == ["engineering"]
    # claims the broker's rules never name are carried, not refused
    assert "at_hash" in identity.claims


def test_a_key_rotation_is_picked_up_and_a_retired_key_stops_verifying(provider: Provider) -> None:
    clock = Clock()
    broker = verifier(clock)
    rules = rules_for(provider)
    before = logged_in(provider, "alice")
    assert broker.verify(before, rules).subject == "alice"  # keys fetched and cached

    rotated = provider.rotate()  # the provider signs with a new key, still publishing the old
    after = logged_in(provider, "bob")
    assert kid(after) == rotated
    assert kid(before) != rotated
    clock.now += 1  # well within the cache's lifetime: only the unknown kid makes it look again
    assert broker.verify(after, rules).subject == "bob"
    assert broker.verify(before, rules).subject == "alice"  # both are published

    assert provider.retire() == [rotated]  # the old key is no longer published
    assert kid(before) not in provider.published_kids()
    clock.now += DEFAULTS.jwks_cache_seconds  # the cached key set expires
    with pytest.raises(InvalidToken, match=r"signing key .* is not among op's keys"):
        broker.verify(before, rules)
    assert broker.verify(after, rules).subject == "bob"
