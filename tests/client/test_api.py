"""cabroker.api: which cached grant a caller gets back, for the identity it holds; and the
keyring backend's lookup (``grant_for_url``).  The broker is faked below ``BrokerClient``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cabroker import api
from cabroker.broker import BrokerConfig, Grant, TokenRequest
from cabroker.cache import CacheKey, FileStore, TokenCache
from cabroker.errors import IdentityError
from cabroker.identity import binding
from tests.client.test_cache import BROKER, HOST, make_grant
from tests.support.oidc import forge

INDEX = f"https://{HOST}/pypi/internal/simple/"
CI_VARIABLES = (
    "GITHUB_ACTIONS",
    "GITLAB_CI",
    "BUILDKITE",
    "CIRCLECI",
    "GOOGLE_SERVICE_ACCOUNT_NAME",
)


def claims_of(sub: str, **more: Any) -> dict[str, Any]:
    return {
        "iss": "https://idp.example",
        "aud": BROKER,
        "sub": sub,
        "exp": time.time() + 3600,
        **more,
    }


def id_token(sub: str, **more: Any) -> str:
    return forge({"alg": "RS256", "typ": "JWT"}, claims_of(sub, **more))


@dataclass
class FakeBroker:
    """Stands in for ``BrokerClient``: mints a grant per call, records who asked."""

    asked: list[str] = field(default_factory=list)

    def client(self, url: str, **_: Any) -> FakeBroker:
        return self

    def config(self) -> BrokerConfig:
        raise AssertionError("no /v1/config without a device login")

    def token(self, id_token: str, request: TokenRequest | None = None) -> Grant:
        from cabroker.jwt import unverified_claims

        self.asked.append(str(unverified_claims(id_token)["sub"]))
        return make_grant()


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> FakeBroker:
    fake = FakeBroker()
    monkeypatch.setattr(api, "BrokerClient", fake.client)
    monkeypatch.setattr("id._internal.oidc.ambient.detect_gcp", lambda audience: None)
    return fake


@pytest.fixture
def cache(tmp_path: Path) -> TokenCache:
    return TokenCache(FileStore(tmp_path / "cache" / "tokens.json"))


@pytest.fixture
def env() -> dict[str, str]:
    return {}


@pytest.fixture(autouse=True)
def no_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*CI_VARIABLES, "CABROKER_ID_TOKEN", "CABROKER_ID_TOKEN_FILE", "CABROKER_AUDIENCE"):
        monkeypatch.delenv(name, raising=False)


def get(cache: TokenCache, env: dict[str, str], **kwargs: Any) -> Grant:
    return api.get_grant(BROKER, cache=cache, env=env, interactive=False, **kwargs)


def test_the_same_identity_gets_its_cached_grant_and_another_is_minted_for(
    broker: FakeBroker, cache: TokenCache, env: dict[str, str]
) -> None:
    env["CABROKER_ID_TOKEN"] = id_token("alice")
    first = get(cache, env, access="publish")
    env["CABROKER_ID_TOKEN"] = id_token("alice", jti="another token, same identity")
    assert get(cache, env, access="publish") == first
    env["CABROKER_ID_TOKEN"] = id_token("bob")
    assert get(cache, env, access="publish") != first
    assert broker.asked == ["alice", "bob"]


def test_an_id_token_file_an_earlier_login_read_is_read_again(
    broker: FakeBroker, cache: TokenCache, env: dict[str, str], tmp_path: Path
) -> None:
    """``cabroker login --id-token-file F`` then ``cabroker env``: F still holds the identity."""
    path = tmp_path / "id.jwt"
    path.write_text(id_token("alice"))
    first = get(cache, env, id_token_file=path)
    assert get(cache, env) == first
    assert broker.asked == ["alice"]


def test_a_file_that_now_holds_another_identity_is_not_alices(
    broker: FakeBroker, cache: TokenCache, env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "id.jwt"
    path.write_text(id_token("alice"))
    alices = get(cache, env, id_token_file=path)
    path.write_text(id_token("bob"))  # the next job on the runner writes its own
    with pytest.raises(IdentityError, match="no identity found"):
        get(cache, env)  # a file named only by an earlier login is no identity source
    assert get(cache, env, id_token_file=path) != alices
    assert broker.asked == ["alice", "bob"]


def test_a_file_that_holds_nothing_now_gives_nothing(
    broker: FakeBroker, cache: TokenCache, env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "id.jwt"
    path.write_text(id_token("alice"))
    get(cache, env, id_token_file=path)
    path.unlink()
    with pytest.raises(IdentityError, match="no identity found"):
        get(cache, env)


def device_grant(cache: TokenCache, issuer: str = "corp") -> Grant:
    grant = make_grant()
    key = CacheKey(BROKER, None, None, (), binding(claims_of("alice")), f"device:{issuer}")
    cache.put(key, grant)
    return grant


def test_an_interactive_logins_grant_serves_this_account_without_an_identity(
    broker: FakeBroker, cache: TokenCache, env: dict[str, str]
) -> None:
    grant = device_grant(cache)
    assert get(cache, env) == grant
    assert get(cache, env, issuer="corp") == grant
    with pytest.raises(IdentityError, match="no identity found"):
        get(cache, env, issuer="okta")  # another issuer's login is not this one
    assert broker.asked == []


def test_an_interactive_logins_grant_never_serves_a_ci_job(
    broker: FakeBroker, cache: TokenCache, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts = device_grant(cache)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")  # a job without id-token: write
    env["GITHUB_ACTIONS"] = "true"
    with pytest.raises(IdentityError, match="GitHub Actions gave no usable ID token"):
        get(cache, env)
    env["CABROKER_ID_TOKEN"] = id_token("bob")
    assert get(cache, env) != accounts  # bob's own, from the broker
    assert broker.asked == ["bob"]


def test_grant_for_url_serves_only_the_identity_held(
    broker: FakeBroker, cache: TokenCache, env: dict[str, str]
) -> None:
    env["CABROKER_ID_TOKEN"] = id_token("alice")
    alices = get(cache, env)
    assert api.grant_for_url(INDEX, cache=cache, env=env) == alices
    env["CABROKER_ID_TOKEN"] = id_token("bob")
    assert api.grant_for_url(INDEX, cache=cache, env=env) is None
    del env["CABROKER_ID_TOKEN"]
    assert api.grant_for_url(INDEX, cache=cache, env=env) is None
    assert broker.asked == ["alice"]


def test_grant_for_url_and_an_interactive_login(
    broker: FakeBroker, cache: TokenCache, env: dict[str, str]
) -> None:
    grant = device_grant(cache)
    assert api.grant_for_url(INDEX, cache=cache, env=env) == grant
    env["CABROKER_ID_TOKEN"] = id_token("bob")  # another identity is around: not the account's
    assert api.grant_for_url(INDEX, cache=cache, env=env) is None
    assert api.grant_for_url(f"https://{HOST}/pypi/restricted/simple/", cache=cache, env={}) is None


def test_grant_for_url_refreshes_with_the_identity_it_found(
    broker: FakeBroker, cache: TokenCache, env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "id.jwt"
    path.write_text(id_token("alice"))
    key = CacheKey(BROKER, None, "read", (), binding(claims_of("alice")), f"file:{path}")
    cache.put(key, make_grant(120))  # inside the refresh margin
    fresh = api.grant_for_url(INDEX, cache=cache, env=env)
    assert fresh is not None
    assert fresh.seconds_left() > 3000
    assert broker.asked == ["alice"]
