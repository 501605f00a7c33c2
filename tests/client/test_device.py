"""cabroker.device: the device authorization grant against the devstack's IdP over real HTTP.

Time is simulated: one clock drives the IdP and the client, and the injected ``sleep`` moves it
forward (and approves or denies the login when a test says so), so no test waits."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from cabroker.broker import BrokerConfig, Issuer
from cabroker.config import login_settings
from cabroker.device import choose_issuer, login, with_user_settings
from cabroker.errors import IdentityError, UsageError
from devstack.idp import IdentityProvider
from tests.support.oidc import LocalIssuer, private_key

BROKER = "https://broker.example.com"
CLIENT_ID = "cabroker-cli"
AUDIENCE = "cabroker"
USERS = {"alice": {"groups": ["engineering"]}, "bob": {"groups": ["sales"]}}


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class Sleeper:
    """The injected ``sleep``: records each wait, moves the clock on by it (or by what
    ``advance`` says), and approves or denies the pending login at the ``decide_at``-th call."""

    clock: Clock
    issuer: LocalIssuer
    decision: str | None = "approve"
    decide_at: int = 1
    advance: Callable[[int, float], float] = lambda call, seconds: seconds
    waits: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.now += self.advance(len(self.waits), seconds)
        if self.decision is not None and len(self.waits) == self.decide_at:
            [pending] = self.issuer.pending()
            if self.decision == "approve":
                self.issuer.approve(pending.user_code, "alice")
            else:
                self.issuer.deny(pending.user_code)


class RecordingSession(requests.Session):
    """Remembers every secret the IdP sent (to prove none is shown) and can fail the first
    ``failing_polls`` token requests as if the network were down."""

    def __init__(self, failing_polls: int = 0) -> None:
        super().__init__()
        self.secrets: list[str] = []
        self.failing_polls = failing_polls
        self.token_requests = 0
        self.forms: list[tuple[str, dict[str, str]]] = []  # (the URL's last part, the form)

    def request(self, method: str, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
        if isinstance(kwargs.get("data"), dict):
            self.forms.append((str(url).rsplit("/", 1)[-1], dict(kwargs["data"])))
        if str(url).endswith("/token"):
            self.token_requests += 1
            if self.token_requests <= self.failing_polls:
                raise requests.ConnectionError("network down (test)")
        response = super().request(method, url, *args, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            for name in ("device_code", "id_token", "access_token"):
                if isinstance(body.get(name), str):
                    self.secrets.append(body[name])
        return response


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[IdentityProvider, Clock]]:
    clock = Clock()
    with IdentityProvider(key_factory=private_key, clock=clock).running() as idp:
        yield idp, clock


@pytest.fixture
def clock(shared: tuple[IdentityProvider, Clock]) -> Clock:
    shared[1].now = time.time()
    return shared[1]


@pytest.fixture
def idp(shared: tuple[IdentityProvider, Clock], clock: Clock) -> IdentityProvider:
    idp = shared[0]
    idp.issuers.clear()
    return idp


def add_corp(idp: IdentityProvider, interval: int = 5, expires_in: int = 600) -> LocalIssuer:
    """The IdP's ``corp``: device login for ``cabroker-cli``, ``interval`` and ``expires_in`` as
    its device authorization answer says (and as it enforces)."""
    idp.device_interval, idp.device_expires_in = interval, expires_in
    return idp.add("corp", AUDIENCE, client_id=CLIENT_ID, users=USERS)


def broker_issuer(issuer: LocalIssuer, **changes: Any) -> Issuer:
    """The broker's view of ``issuer`` (as ``/v1/config`` lists it)."""
    fields = {"name": issuer.name, "url": issuer.url, "audience": AUDIENCE, "client_id": CLIENT_ID}
    return Issuer(**{**fields, **changes})


def config_of(*issuers: Issuer) -> BrokerConfig:
    return BrokerConfig(issuers, ("internal",), "acme", "111122223333", "us-east-1", "test")


@pytest.fixture
def http() -> Iterator[RecordingSession]:
    with RecordingSession() as session:
        yield session


def assert_shows_no_secret(text: str, secrets: list[str]) -> None:
    assert secrets, "the test recorded no secret to look for"
    for secret in secrets:
        assert secret not in text
        assert secret.rsplit(".", 1)[-1] not in text  # not even a JWT's signature


def start(
    issuer: Issuer,
    sleeper: Sleeper,
    http: requests.Session,
    opened: list[str] | None = None,
    clock: Callable[[], float] | None = None,
) -> tuple[str, io.StringIO]:
    out = io.StringIO()

    def open_browser(url: str) -> bool:
        if opened is not None:
            opened.append(url)
        return True

    token = login(
        issuer,
        out=out,
        open_browser=open_browser,
        http=http,
        sleep=sleeper,
        clock=clock or sleeper.clock,
    )
    return token, out


def refused(
    issuer: Issuer,
    sleeper: Sleeper,
    http: RecordingSession,
    clock: Callable[[], float] | None = None,
) -> tuple[str, io.StringIO]:
    out = io.StringIO()
    with pytest.raises(IdentityError) as caught:
        login(issuer, out=out, http=http, sleep=sleeper, clock=clock or sleeper.clock)
    message = str(caught.value)
    assert "\n" not in message
    if http.secrets:
        assert_shows_no_secret(message + out.getvalue(), http.secrets)
    return message, out


# ----------------------------------------------------------------------------- success


def test_approved_login_returns_the_users_id_token(
    idp: IdentityProvider, clock: Clock, http: RecordingSession
) -> None:
    corp = add_corp(idp, interval=5)
    sleeper = Sleeper(clock, corp, decide_at=3)
    opened: list[str] = []

    token, out = start(broker_issuer(corp), sleeper, http, opened)

    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["sub"], claims["groups"], claims["aud"]) == ("alice", ["engineering"], AUDIENCE)
    assert claims["iss"] == corp.url
    assert repr(token) == f"<secret: {len(token)} characters>"
    assert sleeper.waits == [5, 5, 5]  # authorization_pending twice, at the same interval
    [url] = opened
    assert url.startswith(f"{corp.url}/device?user_code=")
    user_code = url.rsplit("=", 1)[-1]
    shown = out.getvalue()
    assert f"    {url}\n" in shown
    assert f"Check that it shows the code {user_code}" in shown
    assert "expires in 10 minutes" in shown
    assert shown.rstrip().endswith("Logged in to corp as alice.")
    assert len(http.secrets) == 3  # device code, ID token, access token
    assert_shows_no_secret(shown, http.secrets)


def test_the_login_works_without_a_browser(
    idp: IdentityProvider, clock: Clock, http: RecordingSession
) -> None:
    corp = add_corp(idp)
    out = io.StringIO()
    token = login(broker_issuer(corp), out=out, http=http, sleep=Sleeper(clock, corp), clock=clock)
    assert jwt.decode(token, options={"verify_signature": False})["sub"] == "alice"
    assert "/device?user_code=" in out.getvalue()


def test_an_interval_of_zero_still_waits_a_second(
    idp: IdentityProvider, clock: Clock, http: RecordingSession
) -> None:
    corp = add_corp(idp, interval=0)
    sleeper = Sleeper(clock, corp)
    start(broker_issuer(corp), sleeper, http)
    assert sleeper.waits == [1]


def test_the_client_makes_its_own_session_when_given_none(
    idp: IdentityProvider, clock: Clock
) -> None:
    corp = add_corp(idp)
    out = io.StringIO()
    token = login(broker_issuer(corp), out=out, sleep=Sleeper(clock, corp), clock=clock)
    assert jwt.decode(token, options={"verify_signature": False})["sub"] == "alice"
    assert token not in out.getvalue()


# ----------------------------------------------------------------------------- polling


@pytest.mark.parametrize(
    ("early_wakeups", "waits"),
    [
        pytest.param(1, [5, 10], id="one slow_down adds five seconds"),
        pytest.param(2, [5, 10, 15], id="each slow_down adds five more"),
    ],
)
def test_slow_down_is_honoured(
    idp: IdentityProvider,
    clock: Clock,
    http: RecordingSession,
    early_wakeups: int,
    waits: list[float],
) -> None:
    """The first sleeps end after one second (as if woken early), so the IdP, which enforces
    the interval it announced, answers slow_down; the client must then wait five seconds more
    each time (or the IdP keeps answering slow_down and the waits differ)."""
    corp = add_corp(idp, interval=5)
    sleeper = Sleeper(
        clock,
        corp,
        decide_at=early_wakeups + 1,
        advance=lambda call, seconds: 1 if call <= early_wakeups else seconds,
    )
    token, _ = start(broker_issuer(corp), sleeper, http)
    assert sleeper.waits == waits
    assert http.token_requests == len(waits)
    assert jwt.decode(token, options={"verify_signature": False})["sub"] == "alice"


def test_an_unreachable_token_endpoint_is_retried_with_back_off(
    idp: IdentityProvider, clock: Clock
) -> None:
    corp = add_corp(idp, interval=5)
    sleeper = Sleeper(clock, corp, decide_at=1)
    with RecordingSession(failing_polls=2) as http:
        token, _ = start(broker_issuer(corp), sleeper, http)
    assert sleeper.waits == [5, 10, 20]  # RFC 8628 §3.5: back off while unreachable
    assert jwt.decode(token, options={"verify_signature": False})["sub"] == "alice"


def test_an_unreachable_token_endpoint_until_the_code_expires(
    idp: IdentityProvider, clock: Clock
) -> None:
    corp = add_corp(idp, interval=5, expires_in=60)
    sleeper = Sleeper(clock, corp, decision=None)
    with RecordingSession(failing_polls=100) as http:
        message, _ = refused(broker_issuer(corp), sleeper, http)
    assert message == (
        "the login code expired (the last attempts to reach issuer corp failed: "
        "ConnectionError); run the command again"
    )
    assert sleeper.waits == [5, 10, 20, 40]


# ----------------------------------------------------------------------------- failures


def test_denied_login(idp: IdentityProvider, clock: Clock, http: RecordingSession) -> None:
    corp = add_corp(idp)
    message, out = refused(broker_issuer(corp), Sleeper(clock, corp, decision="deny"), http)
    assert message.startswith("login was denied at issuer corp;")
    assert "Logged in" not in out.getvalue()


def test_the_code_expires_while_waiting(
    idp: IdentityProvider, clock: Clock, http: RecordingSession
) -> None:
    """The client stops at ``expires_in`` by its own clock, without asking again."""
    corp = add_corp(idp, interval=5, expires_in=30)
    sleeper = Sleeper(clock, corp, decision=None)
    message, out = refused(broker_issuer(corp), sleeper, http)
    assert message == "the login code expired; run the command again"
    assert sleeper.waits == [5] * 6
    assert http.token_requests == 5
    assert "expires in 30 seconds" in out.getvalue()


def test_the_issuer_says_the_code_expired(
    idp: IdentityProvider, clock: Clock, http: RecordingSession
) -> None:
    """expired_token from the IdP (its clock runs ahead of the client's, which stands still)."""
    corp = add_corp(idp, interval=5, expires_in=30)
    sleeper = Sleeper(clock, corp, decision=None, advance=lambda call, seconds: 20)
    standing_still = clock.now
    message, _ = refused(broker_issuer(corp), sleeper, http, clock=lambda: standing_still)
    assert message == "the login code expired; run the command again"
    assert http.token_requests == 2  # pending at +20 s, expired_token at +40 s


def test_an_issuer_without_device_login(
    idp: IdentityProvider, clock: Clock, http: RecordingSession
) -> None:
    github = idp.add("github", "codeartifact-broker")  # no client_id at the IdP
    issuer = broker_issuer(github, audience="codeartifact-broker")
    message, _ = refused(issuer, Sleeper(clock, github, decision=None), http)
    assert message.startswith("issuer github does not offer device login")


def test_an_unreachable_issuer(clock: Clock, http: RecordingSession, idp: IdentityProvider) -> None:
    corp = add_corp(idp)
    issuer = Issuer("corp", "http://127.0.0.1:9/corp", AUDIENCE, CLIENT_ID)
    message, _ = refused(issuer, Sleeper(clock, corp, decision=None), http)
    assert message.startswith("cannot reach issuer corp at http://127.0.0.1:9/corp/.well-known/")


def test_the_scopes_the_broker_names_are_asked_for_and_a_public_secret_is_sent_on_every_request(
    idp: IdentityProvider, clock: Clock, http: RecordingSession
) -> None:
    corp = add_corp(idp)
    issuer = broker_issuer(corp, scopes=("openid", "email", "groups"), client_secret="GOCSPX-x")
    start(issuer, Sleeper(clock, corp), http)
    (where, authorize), *polls = http.forms
    assert (where, authorize["scope"]) == ("device_authorization", "openid email groups")
    assert authorize["client_secret"] == "GOCSPX-x"  # RFC 8628 §3.1: client authentication
    assert polls
    assert all(form["client_secret"] == "GOCSPX-x" for _, form in polls)


def test_without_broker_settings_only_openid_is_asked_for_and_no_secret_is_sent(
    idp: IdentityProvider, clock: Clock, http: RecordingSession
) -> None:
    corp = add_corp(idp)
    start(broker_issuer(corp), Sleeper(clock, corp), http)
    assert http.forms[0][1]["scope"] == "openid"
    assert not any("client_secret" in form for _, form in http.forms)


@pytest.mark.parametrize(
    ("environ", "scopes", "secret"),
    [
        ({}, ("openid", "email"), "from-broker"),
        ({"CABROKER_SCOPES": "groups  profile"}, ("openid", "groups", "profile"), "from-broker"),
        ({"CABROKER_SCOPES": "profile openid"}, ("openid", "profile"), "from-broker"),
        ({"CABROKER_CLIENT_SECRET": "mine"}, ("openid", "email"), "mine"),
        (
            {"CABROKER_SCOPES": " ", "CABROKER_CLIENT_SECRET": ""},
            ("openid", "email"),
            "from-broker",
        ),
    ],
)
def test_the_users_settings_override_the_brokers(
    environ: dict[str, str], scopes: tuple[str, ...], secret: str, tmp_path: Path
) -> None:
    issuer = Issuer(
        "corp", "https://login.example.com", "a", "a", "from-broker", ("openid", "email")
    )
    settings = login_settings(BROKER, {**environ, "XDG_CONFIG_HOME": str(tmp_path)})
    chosen = with_user_settings(issuer, settings)
    assert (chosen.scopes, chosen.client_secret) == (scopes, secret)


@pytest.mark.parametrize(
    "environ",
    [
        {"CABROKER_SCOPES": 'openid "groups"'},
        {"CABROKER_SCOPES": " ".join(f"s{number}" for number in range(16))},  # 17 with openid
        {"CABROKER_CLIENT_SECRET": "two words"},
        {"CABROKER_CLIENT_SECRET": "x" * 1025},
    ],
)
def test_unusable_user_settings_are_a_usage_error(environ: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        login_settings(BROKER, {**environ, "XDG_CONFIG_HOME": str(tmp_path)})
    assert "CABROKER_" in str(caught.value)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"scopes": ["openid", "groups"]}, ("openid", "groups")),
        ({"scopes": ["groups"]}, ("openid", "groups")),  # openid is always asked for
        ({}, ("openid",)),
    ],
)
def test_the_broker_config_gives_the_scopes(
    body: dict[str, Any], expected: tuple[str, ...]
) -> None:
    issuer = {"name": "corp", "url": "https://login.example.com", "audience": "a", "client_id": "a"}
    config = BrokerConfig.from_json({"issuers": [{**issuer, **body}]})
    assert config.issuers[0].scopes == expected


@pytest.mark.parametrize(
    "body", [{"scopes": "openid"}, {"scopes": ["open id"]}, {"client_secret": "a b"}]
)
def test_a_broker_config_with_unusable_login_settings_is_refused(body: dict[str, Any]) -> None:
    issuer = {"name": "corp", "url": "https://login.example.com", "audience": "a", "client_id": "a"}
    with pytest.raises(ValueError, match="issuers"):
        BrokerConfig.from_json({"issuers": [{**issuer, **body}]})


def test_a_client_id_the_issuer_does_not_know(
    idp: IdentityProvider, clock: Clock, http: RecordingSession
) -> None:
    corp = add_corp(idp)
    issuer = broker_issuer(corp, client_id="someone-else")
    message, _ = refused(issuer, Sleeper(clock, corp, decision=None), http)
    assert message.startswith("issuer corp refused to start a device login: invalid_client")
    assert "'someone-else'" in message


def test_an_id_token_for_another_audience(
    idp: IdentityProvider, clock: Clock, http: RecordingSession
) -> None:
    corp = add_corp(idp)
    issuer = broker_issuer(corp, audience="the-broker")
    message, out = refused(issuer, Sleeper(clock, corp), http)
    assert "gave an ID token for audience cabroker, but the broker expects 'the-broker'" in message
    assert "Logged in" not in out.getvalue()


def test_endpoints_that_are_not_https_are_refused(
    idp: IdentityProvider, clock: Clock, http: RecordingSession
) -> None:
    corp = add_corp(idp)
    issuer = broker_issuer(corp)
    corp.url = "http://idp.example.com/corp"  # its discovery document now names that host
    message, _ = refused(issuer, Sleeper(clock, corp, decision=None), http)
    assert message.startswith(
        "issuer corp gives an insecure device_authorization_endpoint "
        "(http://idp.example.com/corp/device_authorization)"
    )


def test_an_issuer_without_client_id_is_not_logged_in_to(
    idp: IdentityProvider, clock: Clock, http: RecordingSession
) -> None:
    corp = add_corp(idp)
    message, _ = refused(broker_issuer(corp, client_id=None), Sleeper(clock, corp), http)
    assert message == "issuer 'corp' offers no interactive login (no client_id)"
    assert http.token_requests == 0


# ----------------------------------------------------------------------- which issuer

GITHUB = Issuer("github", "https://token.actions.githubusercontent.com", "codeartifact-broker")
CORP = Issuer("corp", "https://login.example.com", "cabroker", "cabroker-cli")
OKTA = Issuer("okta", "https://acme.okta.com", "cabroker", "0oa1")


@pytest.mark.parametrize(
    ("issuers", "name", "chosen"),
    [
        pytest.param((GITHUB, CORP), None, CORP, id="the only one with a client_id"),
        pytest.param((GITHUB, CORP, OKTA), "okta", OKTA, id="the one named"),
        pytest.param((CORP, OKTA), "corp", CORP, id="the one named, listed first"),
    ],
)
def test_choose_issuer(issuers: tuple[Issuer, ...], name: str | None, chosen: Issuer) -> None:
    assert choose_issuer(config_of(*issuers), name) == chosen


@pytest.mark.parametrize(
    ("issuers", "name", "message"),
    [
        pytest.param(
            (GITHUB, CORP, OKTA),
            None,
            "the broker offers interactive login with several issuers (corp, okta); "
            "choose one with --issuer NAME",
            id="several with a client_id",
        ),
        pytest.param(
            (GITHUB,),
            None,
            "the broker offers no interactive login (none of its issuers has a client_id); "
            "use a CI identity or pass --id-token-file PATH",
            id="none with a client_id",
        ),
        pytest.param(
            (GITHUB, CORP),
            "github",
            "issuer 'github' offers no interactive login (the broker has no client_id for it); "
            "interactive login works with: corp",
            id="the one named has no client_id",
        ),
        pytest.param(
            (GITHUB, CORP),
            "gihtub",
            "the broker has no issuer named 'gihtub'; its issuers: github, corp",
            id="unknown name",
        ),
    ],
)
def test_choose_issuer_refuses(issuers: tuple[Issuer, ...], name: str | None, message: str) -> None:
    with pytest.raises(IdentityError) as caught:
        choose_issuer(config_of(*issuers), name)
    assert str(caught.value) == message
    assert caught.value.exit_code == 5


class DecliningSession(RecordingSession):
    """The token endpoint answers as Entra ID does when the person declines the login."""

    def request(self, method: str, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
        if not str(url).endswith("/token"):
            return super().request(method, url, *args, **kwargs)
        answer = requests.Response()
        answer.status_code = 400
        answer._content = b'{"error": "authorization_declined"}'
        return answer


def test_entra_ids_authorization_declined_is_a_denied_login(
    idp: IdentityProvider, clock: Clock
) -> None:
    corp = add_corp(idp)
    with DecliningSession() as http:
        message, _ = refused(broker_issuer(corp), Sleeper(clock, corp, decision=None), http)
    assert message.startswith("login was denied at issuer corp;")
