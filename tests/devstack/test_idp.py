"""devstack.idp and devstack.device: the dev IdP over real HTTP (werkzeug's test client where the
peer must not be loopback), tokens checked with PyJWT against the served JWKS."""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

import jwt
import pytest
import requests
from werkzeug.test import Client

from devstack.claimsets import (
    AWS_NAMESPACE,
    aws_claims,
    github_claims,
    gitlab_fork_merge_request_claims,
)
from devstack.device import (
    DEVICE_CODE_GRANT,
    ConsoleApprover,
    ExpiredUserCode,
    PendingRequest,
    UnknownUser,
    UnknownUserCode,
)
from devstack.idp import IdentityProvider, Issuer, Secret, is_loopback
from tests.support.oidc import private_key

CLIENT_ID = "cabroker-cli"
USERS = {
    "alice": {"email": "alice@example.com", "groups": ["engineering"]},
    "mallory": {"email": "mallory@example.com", "groups": ["contractors"]},
}
USER_CODE = re.compile(r"[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}\Z")
PROBLEM_FIELDS = {"type", "title", "status", "detail"}
ELSEWHERE = {"REMOTE_ADDR": "203.0.113.9"}
LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def with_issuers(idp: IdentityProvider) -> IdentityProvider:
    idp.add("github", "codeartifact-broker")
    idp.add("corp", "cabroker", client_id=CLIENT_ID, users=USERS)
    return idp


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[IdentityProvider, Clock]]:
    """One server for the module (stopping one takes up to half a second)."""
    clock = Clock()
    with IdentityProvider(key_factory=private_key, clock=clock, device_interval=0).running() as idp:
        yield idp, clock


@pytest.fixture
def clock(shared: tuple[IdentityProvider, Clock]) -> Clock:
    shared[1].now = time.time()
    return shared[1]


@pytest.fixture
def idp(shared: tuple[IdentityProvider, Clock], clock: Clock) -> IdentityProvider:
    """The shared server with fresh issuers ``github`` and ``corp`` (keys cached by name)."""
    idp = shared[0]
    idp.issuers.clear()
    idp.on_device_request = None
    return with_issuers(idp)


@pytest.fixture
def offline(clock: Clock) -> Iterator[Callable[..., IdentityProvider]]:
    """Providers that are never started, for werkzeug's test client."""
    made: list[IdentityProvider] = []

    def make(interval: int = 0) -> IdentityProvider:
        made.append(
            IdentityProvider(key_factory=private_key, clock=clock, device_interval=interval)
        )
        return made[-1]

    yield make
    for idp in made:
        idp.stop()


@pytest.fixture
def github(idp: IdentityProvider) -> Issuer:
    return idp.issuers["github"]


@pytest.fixture
def corp(idp: IdentityProvider) -> Issuer:
    return idp.issuers["corp"]


def verify(issuer: Issuer, token: str) -> dict[str, Any]:
    """The token's claims, checked against the issuer's JWKS as served over HTTP."""
    keys = jwt.PyJWKSet.from_dict(requests.get(f"{issuer.url}/jwks", timeout=5).json())
    key = keys[jwt.get_unverified_header(token)["kid"]]
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=["RS256", "ES256"],
        audience=issuer.audience,
        issuer=issuer.url,
        options={"require": ["iss", "aud", "sub", "iat", "nbf", "exp"]},
    )
    return claims


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def mint(issuer: Issuer, body: dict[str, Any]) -> Secret:
    answer = requests.post(f"{issuer.url}/mint", json=body, timeout=5)
    assert answer.status_code == 200, answer.text
    return Secret(answer.json()["id_token"])


def start_login(issuer: Issuer, client_id: str = CLIENT_ID) -> tuple[Secret, dict[str, Any]]:
    """A device authorization: the device code (redacted) and the rest of the answer."""
    answer = requests.post(
        f"{issuer.url}/device_authorization",
        data={"client_id": client_id, "scope": "openid"},
        timeout=5,
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = answer.json()
    return Secret(body.pop("device_code")), body


def poll(
    issuer: Issuer, device_code: str, changes: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """One token request; tokens in a success answer come back as :class:`Secret`."""
    data = {"grant_type": DEVICE_CODE_GRANT, "device_code": device_code, "client_id": CLIENT_ID}
    answer = requests.post(f"{issuer.url}/token", data={**data, **(changes or {})}, timeout=5)
    assert answer.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = answer.json()
    for name in ("access_token", "id_token"):
        if name in body:
            body[name] = Secret(body[name])
    return answer.status_code, body


def error_of(issuer: Issuer, device_code: str, changes: dict[str, str] | None = None) -> str:
    status, body = poll(issuer, device_code, changes)
    assert status == 400, body
    assert set(body) == {"error", "error_description"}
    return str(body["error"])


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 3
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# ------------------------------------------------------------------------ discovery, JWKS


def test_discovery_of_an_issuer_without_client_id(github: Issuer) -> None:
    answer = requests.get(f"{github.url}/.well-known/openid-configuration", timeout=5)
    assert answer.status_code == 200
    assert answer.json() == {
        "issuer": github.url,
        "jwks_uri": f"{github.url}/jwks",
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
    }


def test_discovery_of_an_issuer_with_device_login(corp: Issuer) -> None:
    document = requests.get(f"{corp.url}/.well-known/openid-configuration", timeout=5).json()
    assert document["issuer"] == corp.url
    assert document["device_authorization_endpoint"] == f"{corp.url}/device_authorization"
    assert document["token_endpoint"] == f"{corp.url}/token"
    assert document["grant_types_supported"] == [DEVICE_CODE_GRANT]


def test_jwks_publishes_public_keys_only_and_counts_requests(github: Issuer) -> None:
    answer = requests.get(f"{github.url}/jwks", timeout=5)
    assert answer.status_code == 200
    [jwk] = answer.json()["keys"]
    assert jwk["kid"] == github.current_kid
    assert (jwk["kty"], jwk["use"]) == ("RSA", "sig")
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)
    assert github.jwks_requests == 1


@pytest.mark.parametrize("route", ["jwks", ".well-known/openid-configuration"])
def test_fault_switches(github: Issuer, route: str) -> None:
    github.down = True
    assert requests.get(f"{github.url}/{route}", timeout=5).status_code == 503
    github.down, github.garbage = False, True
    answer = requests.get(f"{github.url}/{route}", timeout=5)
    assert answer.status_code == 200
    with pytest.raises(ValueError, match="Expecting value"):
        answer.json()


def test_unknown_issuer_and_wrong_method_are_problems(idp: IdentityProvider) -> None:
    missing = requests.get(f"{idp.base_url}/nobody/jwks", timeout=5)
    assert missing.status_code == 404
    assert missing.headers["Content-Type"] == "application/problem+json"
    assert set(missing.json()) == PROBLEM_FIELDS
    wrong = requests.get(f"{idp.base_url}/github/mint", timeout=5)
    assert wrong.status_code == 405
    assert wrong.headers["Allow"] == "POST"


# ---------------------------------------------------------------------------------- mint


def test_mint_fills_in_the_registered_claims(github: Issuer, clock: Clock) -> None:
    token = mint(github, {"sub": "repo:acme/app:ref:refs/heads/main", "repository": "acme/app"})
    claims = verify(github, token)
    assert claims["iss"] == github.url
    assert claims["aud"] == "codeartifact-broker"
    assert claims["iat"] == claims["nbf"] == int(clock.now)
    assert claims["exp"] == int(clock.now) + 300
    assert claims["repository"] == "acme/app"
    assert kid_of(token) == github.current_kid


def test_mint_keeps_given_claims_and_drops_null_ones(github: Issuer, clock: Clock) -> None:
    exp = int(clock.now) + 60
    token = mint(github, {"aud": "sts.amazonaws.com", "exp": exp, "groups": ["a"], "nbf": None})
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["aud"], claims["exp"], claims["groups"]) == ("sts.amazonaws.com", exp, ["a"])
    assert "nbf" not in claims
    assert claims["sub"] == "repo:acme/app:ref:refs/heads/main"


def test_mint_with_an_empty_body_uses_the_defaults(github: Issuer) -> None:
    answer = requests.post(f"{github.url}/mint", timeout=5)
    assert answer.status_code == 200
    assert verify(github, Secret(answer.json()["id_token"]))["iss"] == github.url


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[1, 2]", id="array"),
        pytest.param(b'"sub"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b"{not json", id="invalid JSON"),
        pytest.param(b'{"iss": 7}', id="iss not a string"),
    ],
)
def test_mint_refuses_what_is_not_a_json_object_of_claims(github: Issuer, body: bytes) -> None:
    answer = requests.post(f"{github.url}/mint", data=body, timeout=5)
    assert answer.status_code == 400
    assert answer.headers["Content-Type"] == "application/problem+json"
    problem = answer.json()
    assert set(problem) == PROBLEM_FIELDS
    assert problem["status"] == 400
    assert "id_token" not in answer.text


def test_mint_refuses_an_oversized_body(offline: Callable[..., IdentityProvider]) -> None:
    client = Client(with_issuers(offline()))
    answer = client.post("/github/mint", data=b" " * (2 << 20), environ_overrides=LOOPBACK)
    assert answer.status_code == 413
    assert answer.json is not None
    assert answer.json["type"] == "urn:cabroker:devstack:problem:payload-too-large"


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("0.0.0.0", False),  # noqa: S104 - an address to classify, not to bind
        ("::ffff:10.0.0.1", False),
        ("2001:db8::1", False),
        ("", False),
        (None, False),
        ("localhost", False),
    ],
)
def test_loopback_addresses(address: str | None, loopback: bool) -> None:
    assert is_loopback(address) is loopback


@pytest.mark.parametrize("route", ["mint", "rotate"])
def test_minting_and_rotating_are_for_loopback_peers_only(
    offline: Callable[..., IdentityProvider], route: str
) -> None:
    idp = with_issuers(offline())  # never started: werkzeug's test client sets REMOTE_ADDR
    kid = idp.issuers["github"].current_kid
    client = Client(idp)
    refused = client.post(f"/github/{route}", json={}, environ_overrides=ELSEWHERE)
    assert refused.status_code == 403
    assert refused.json is not None
    assert set(refused.json) == PROBLEM_FIELDS
    assert "id_token" not in refused.text
    assert idp.issuers["github"].current_kid == kid
    loopback = {"REMOTE_ADDR": "127.0.0.2"}
    assert client.post(f"/github/{route}", json={}, environ_overrides=loopback).status_code == 200


def test_approving_on_the_page_is_for_loopback_peers_only(
    offline: Callable[..., IdentityProvider],
) -> None:
    idp = with_issuers(offline())
    corp = idp.issuers["corp"]
    _, pending = corp.start_device_login(CLIENT_ID)
    form = {"user_code": pending.user_code, "user": "alice", "action": "approve"}
    client = Client(idp)
    refused = client.post("/corp/device", data=form, environ_overrides=ELSEWHERE)
    assert refused.status_code == 403
    assert "Only loopback clients" in refused.text
    assert corp.pending() == [pending]
    approved = client.post("/corp/device", data=form, environ_overrides={"REMOTE_ADDR": "::1"})
    assert approved.status_code == 200
    assert corp.pending() == []


# -------------------------------------------------------------------------------- rotate


def test_rotation_signs_with_a_new_key_and_keeps_the_old_one(github: Issuer) -> None:
    before = mint(github, {})
    answer = requests.post(f"{github.url}/rotate", timeout=5)
    assert answer.status_code == 200
    kid = answer.json()["kid"]
    assert kid != kid_of(before)
    after = mint(github, {})
    assert kid_of(after) == kid == github.current_kid
    assert verify(github, before)["iss"] == verify(github, after)["iss"] == github.url

    retired = requests.post(f"{github.url}/rotate", json={"retire": True}, timeout=5)
    newest = retired.json()["kid"]
    keys = requests.get(f"{github.url}/jwks", timeout=5).json()["keys"]
    assert [jwk["kid"] for jwk in keys] == [newest]
    assert verify(github, mint(github, {}))["iss"] == github.url
    with pytest.raises(KeyError):
        verify(github, after)


def test_rotate_wants_a_boolean(github: Issuer) -> None:
    answer = requests.post(f"{github.url}/rotate", json={"retire": "yes"}, timeout=5)
    assert answer.status_code == 400
    assert len(github.keys) == 1


def test_rotate_refuses_a_key_it_already_has() -> None:
    issuer = Issuer("x", "http://x", "aud", key_factory=lambda name: private_key("x-fixed"))
    issuer.rotate()
    with pytest.raises(ValueError, match="already has"):
        issuer.rotate()


def test_tokens_are_redacted_in_reprs(github: Issuer) -> None:
    token = github.mint()
    assert isinstance(token, Secret)
    assert token not in repr(token)
    assert token not in repr([token])


# ------------------------------------------------------------------- device login (HTTP)


def test_device_login_end_to_end(corp: Issuer) -> None:
    device_code, answer = start_login(corp)
    user_code = answer["user_code"]
    assert USER_CODE.match(user_code)
    assert answer == {
        "user_code": user_code,
        "verification_uri": f"{corp.url}/device",
        "verification_uri_complete": f"{corp.url}/device?user_code={user_code}",
        "expires_in": 600,
        "interval": 0,
    }
    [pending] = corp.pending()
    assert (pending.issuer, pending.user_code, pending.client_id) == ("corp", user_code, CLIENT_ID)
    assert error_of(corp, device_code) == "authorization_pending"

    corp.approve(user_code, "alice")
    assert corp.pending() == []
    status, body = poll(corp, device_code)
    assert status == 200
    id_token, access_token = body.pop("id_token"), body.pop("access_token")
    assert body == {"token_type": "Bearer", "expires_in": 300, "scope": "openid"}
    assert len(access_token) >= 32
    assert access_token != id_token
    claims = verify(corp, id_token)
    assert (claims["sub"], claims["aud"]) == ("alice", "cabroker")
    assert (claims["email"], claims["groups"]) == ("alice@example.com", ["engineering"])
    assert claims["exp"] - claims["iat"] == 300

    assert error_of(corp, device_code) == "invalid_grant"  # a device code works once


def test_denied_login_gets_access_denied_once(corp: Issuer) -> None:
    device_code, answer = start_login(corp)
    corp.deny(answer["user_code"])
    assert error_of(corp, device_code) == "access_denied"
    assert error_of(corp, device_code) == "invalid_grant"


def test_expired_login(corp: Issuer, clock: Clock) -> None:
    device_code, answer = start_login(corp)
    clock.now += 600
    assert corp.pending() == []
    with pytest.raises(ExpiredUserCode):
        corp.approve(answer["user_code"], "alice")
    assert error_of(corp, device_code) == "expired_token"


def test_without_the_openid_scope_there_is_no_id_token(idp: IdentityProvider) -> None:
    """As an OpenID provider answers (oidc-provider does, tests/interop): OAuth alone."""
    corp = idp.issuers["corp"]
    answer = requests.post(
        f"{corp.url}/device_authorization",
        data={"client_id": CLIENT_ID, "scope": "groups"},
        timeout=5,
    )
    device_code = Secret(answer.json()["device_code"])
    corp.approve(answer.json()["user_code"], "alice")
    status, body = poll(corp, device_code)
    assert status == 200
    assert "id_token" not in body
    assert (body["scope"], body["token_type"]) == ("groups", "Bearer")


def test_polling_too_fast_slows_the_client_down(
    offline: Callable[..., IdentityProvider], clock: Clock
) -> None:
    idp = with_issuers(offline(interval=5))
    device_code, _ = idp.issuers["corp"].start_device_login(CLIENT_ID)
    form = {"grant_type": DEVICE_CODE_GRANT, "device_code": device_code, "client_id": CLIENT_ID}
    client = Client(idp)
    errors = []
    for wait in (0, 10, 9, 15):  # interval 5 → 10 after the first slow_down → 15 after the next
        clock.now += wait
        answer = client.post("/corp/token", data=form)
        assert answer.status_code == 400
        assert answer.json is not None
        errors.append(answer.json["error"])
    assert errors == ["slow_down", "authorization_pending", "slow_down", "authorization_pending"]


@pytest.mark.parametrize(
    ("form", "error"),
    [
        pytest.param({"client_id": "someone-else"}, "invalid_client", id="wrong client_id"),
        pytest.param({"client_id": ""}, "invalid_client", id="no client_id"),
        pytest.param(
            {"grant_type": "authorization_code"}, "unsupported_grant_type", id="other grant"
        ),
        pytest.param({"grant_type": ""}, "invalid_request", id="no grant_type"),
        pytest.param({"device_code": ""}, "invalid_request", id="no device_code"),
        pytest.param({"device_code": "made-up"}, "invalid_grant", id="unknown device_code"),
    ],
)
def test_token_request_errors(corp: Issuer, form: dict[str, str], error: str) -> None:
    device_code, answer = start_login(corp)
    corp.approve(answer["user_code"], "alice")
    assert error_of(corp, device_code, form) == error
    status, _ = poll(corp, device_code)  # the failed request did not use the code up
    assert status == 200


def test_device_authorization_wants_the_client_id(corp: Issuer) -> None:
    answer = requests.post(
        f"{corp.url}/device_authorization", data={"client_id": "someone-else"}, timeout=5
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_client"
    assert corp.pending() == []


@pytest.mark.parametrize("route", ["device_authorization", "token", "device"])
def test_issuers_without_client_id_have_no_device_login(github: Issuer, route: str) -> None:
    answer = requests.post(f"{github.url}/{route}", data={"client_id": CLIENT_ID}, timeout=5)
    assert answer.status_code == 404
    assert answer.headers["Content-Type"] == "application/problem+json"


def test_device_hook_hears_of_each_login_and_cannot_break_it(
    idp: IdentityProvider, corp: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    heard: list[tuple[str, PendingRequest]] = []
    idp.on_device_request = lambda name, request: heard.append((name, request))
    _, answer = start_login(corp)
    assert heard == [("corp", corp.pending()[0])]
    assert heard[0][1].user_code == answer["user_code"]

    def broken(name: str, request: PendingRequest) -> None:
        raise RuntimeError("hook failed")

    idp.on_device_request = broken
    with caplog.at_level(logging.ERROR, logger="devstack.device"):
        device_code, _ = start_login(corp)
    assert "on_device_request failed for corp" in caplog.text
    assert device_code not in caplog.text
    assert len(corp.pending()) == 2


# ------------------------------------------------------------------ device login (page)


def test_the_page_approves_as_the_chosen_user(corp: Issuer) -> None:
    device_code, answer = start_login(corp)
    page = requests.get(answer["verification_uri_complete"], timeout=5)
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert f'value="{answer["user_code"]}"' in page.text
    assert '<option value="alice">' in page.text
    assert '<option value="mallory">' in page.text
    assert CLIENT_ID in page.text

    typed = answer["user_code"].lower().replace("-", " ")  # RFC 8628 §6.1: forgiving input
    form = {"user_code": typed, "user": "mallory", "action": "approve"}
    done = requests.post(f"{corp.url}/device", data=form, timeout=5)
    assert done.status_code == 200
    assert "Approved" in done.text
    status, body = poll(corp, device_code)
    assert status == 200
    assert verify(corp, body["id_token"])["groups"] == ["contractors"]


def test_the_page_denies(corp: Issuer) -> None:
    device_code, answer = start_login(corp)
    form = {"user_code": answer["user_code"], "user": "alice", "action": "deny"}
    done = requests.post(f"{corp.url}/device", data=form, timeout=5)
    assert (done.status_code, "Denied" in done.text) == (200, True)
    assert error_of(corp, device_code) == "access_denied"


def test_the_page_says_when_a_code_is_unknown_or_expired(corp: Issuer, clock: Clock) -> None:
    unknown = requests.get(f"{corp.url}/device", params={"user_code": "BCDF-GHJK"}, timeout=5)
    assert unknown.status_code == 404
    assert "no pending device login has the code" in unknown.text

    _, answer = start_login(corp)
    clock.now += 601
    form = {"user_code": answer["user_code"], "user": "alice", "action": "approve"}
    expired = requests.post(f"{corp.url}/device", data=form, timeout=5)
    assert expired.status_code == 400
    assert "has expired" in expired.text


def test_the_page_escapes_what_it_shows(offline: Callable[..., IdentityProvider]) -> None:
    idp = offline()
    idp.add("corp", "cabroker", client_id=CLIENT_ID, users={'"><script>x</script>': {}})
    page = Client(idp).get("/corp/device?user_code=<img src=x>")
    assert page.status_code == 404
    assert "<script>" not in page.text
    assert "<img" not in page.text
    assert "&lt;script&gt;" in page.text


# ------------------------------------------------------------------------- Python API


def test_approve_wants_a_known_user_and_a_pending_code(corp: Issuer) -> None:
    _, pending = corp.start_device_login(CLIENT_ID)
    with pytest.raises(UnknownUser):
        corp.approve(pending.user_code, "eve")
    corp.deny(pending.user_code)
    with pytest.raises(UnknownUserCode):
        corp.approve(pending.user_code, "alice")


def test_issuer_checks(offline: Callable[..., IdentityProvider]) -> None:
    idp = offline()
    with pytest.raises(ValueError, match="no users"):
        idp.add("corp", "cabroker", client_id=CLIENT_ID)
    with pytest.raises(ValueError, match="one URL path segment"):
        idp.add("a/b", "aud")
    idp.add("github", "aud")
    with pytest.raises(ValueError, match="already exists"):
        idp.add("github", "aud")


# --------------------------------------------------------------------------- console


def console(idp: IdentityProvider, lines: str) -> tuple[ConsoleApprover, io.StringIO]:
    output = io.StringIO()
    approver = ConsoleApprover(idp, io.StringIO(lines), output)
    approver.start()
    return approver, output


def decided(issuer: Issuer, device_code: str) -> tuple[int, dict[str, Any]]:
    answers: list[tuple[int, dict[str, Any]]] = []

    def done() -> bool:
        answers.append(poll(issuer, device_code))
        return answers[-1][1].get("error") != "authorization_pending"

    wait_for(done)
    return answers[-1]


def test_console_approves_as_the_first_user_on_an_empty_line_then_denies(
    idp: IdentityProvider, corp: Issuer
) -> None:
    approver, output = console(idp, "\ndeny\n")
    first, answer = start_login(corp)
    status, body = decided(corp, first)
    assert status == 200
    assert verify(corp, body["id_token"])["sub"] == "alice"
    assert (
        f"corp: device login requested, code {answer['user_code']}. "
        "Approve as which user? [alice] mallory, or 'deny': "
    ) in output.getvalue()

    second, _ = start_login(corp)
    assert decided(corp, second) == (
        400,
        {"error": "access_denied", "error_description": "the user denied the login"},
    )

    _, answer = start_login(corp)  # the input has ended: the login stays pending
    wait_for(lambda: "stays pending" in output.getvalue())
    assert [p.user_code for p in corp.pending()] == [answer["user_code"]]
    approver.stop()


def test_console_asks_again_for_an_unknown_user(idp: IdentityProvider, corp: Issuer) -> None:
    approver, output = console(idp, "eve\nmallory\n")
    device_code, _ = start_login(corp)
    status, body = decided(corp, device_code)
    assert status == 200
    assert verify(corp, body["id_token"])["sub"] == "mallory"
    assert "corp has no user 'eve'" in output.getvalue()
    assert output.getvalue().count("Approve as which user?") == 2
    approver.stop()


def test_console_says_nothing_of_a_login_decided_elsewhere(
    idp: IdentityProvider, corp: Issuer
) -> None:
    stdin, output = io.StringIO("deny\n"), io.StringIO()
    approver = ConsoleApprover(idp, stdin, output)  # not started: answer() is called directly
    _, approved = corp.start_device_login(CLIENT_ID)
    corp.approve(approved.user_code, "alice")
    assert approver.answer(approved) is True
    assert (output.getvalue(), stdin.read()) == ("", "deny\n")

    _, pending = corp.start_device_login(CLIENT_ID)
    stdin.seek(0)
    assert approver.answer(pending) is True
    assert corp.pending() == []
    assert f"corp: denied {pending.user_code}" in output.getvalue()


# ------------------------------------------------------------- the CI and AWS stand-ins


def served(issuer: Issuer) -> tuple[dict[str, Any], jwt.PyJWKSet]:
    """The issuer's discovery document and the key set its jwks_uri serves."""
    discovery = requests.get(f"{issuer.url}/.well-known/openid-configuration", timeout=5).json()
    keys = jwt.PyJWKSet.from_dict(requests.get(discovery["jwks_uri"], timeout=5).json())
    return discovery, keys


def test_the_aws_stand_in_has_the_shape_of_an_sts_issuer(idp: IdentityProvider) -> None:
    """Keys under the issuer at /.well-known/jwks.json, ES384 on P-384, sub a role's ARN,
    the AWS claims nested under https://sts.amazonaws.com/, and no nbf."""
    aws = idp.add("aws", "codeartifact-broker")
    discovery, keys = served(aws)
    assert discovery["jwks_uri"] == f"{aws.url}/.well-known/jwks.json"
    assert discovery["id_token_signing_alg_values_supported"] == ["ES384"]
    assert [key.key_type for key in keys.keys] == ["EC"]
    token = mint(aws, aws_claims())
    assert jwt.get_unverified_header(token)["alg"] == "ES384"
    claims = jwt.decode(
        token,
        keys[kid_of(token)],
        algorithms=["ES384"],
        audience="codeartifact-broker",
        issuer=aws.url,
        options={"require": ["iss", "aud", "sub", "iat", "exp", "jti"]},
    )
    assert "nbf" not in claims
    assert claims["sub"] == "arn:aws:iam::210987654321:role/cabroker-reader"
    assert claims[AWS_NAMESPACE]["aws_account"] == "210987654321"


def test_the_gitlab_stand_in_issues_gitlabs_claims(idp: IdentityProvider) -> None:
    gitlab = idp.add("gitlab", "codeartifact-broker")
    discovery, _ = served(gitlab)
    assert discovery["jwks_uri"] == f"{gitlab.url}/jwks"
    claims = verify(gitlab, mint(gitlab, {}))
    assert claims["sub"] == "project_path:acme/data:ref_type:branch:ref:main"
    fork = verify(gitlab, mint(gitlab, gitlab_fork_merge_request_claims()))
    assert (fork["project_path"], fork["job_project_path"]) == ("mallory/data", "acme/data")
    assert fork["user_identities"] == [{"provider": "github", "extern_uid": "5001"}]
    assert fork["runner_id"] == 1


@pytest.mark.parametrize("sub_format", ["ids", "names"])
def test_the_github_stand_in_issues_both_subject_formats(
    github: Issuer, sub_format: Literal["ids", "names"]
) -> None:
    claims = verify(
        github, mint(github, github_claims("app", sub_format=sub_format, properties={"tier": "1"}))
    )
    expected = {
        "ids": "repo:acme@1001/app@2001:ref:refs/heads/main",
        "names": "repo:acme/app:ref:refs/heads/main",
    }
    assert claims["sub"] == expected[sub_format]
    assert (claims["repository_owner_id"], claims["repository_id"]) == ("1001", "2001")
    assert claims["repo_property_tier"] == "1"
    assert {"job_workflow_ref", "check_run_id", "enterprise_id", "repository_visibility"} <= set(
        claims
    )
