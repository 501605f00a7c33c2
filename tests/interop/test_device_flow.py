"""The client's device login (cabroker.device) against oidc-provider, over real HTTP: the
provider's own pages approve, deny or let a login expire, and its answers drive the client.

Only the client's waiting is simulated: its ``sleep`` returns at once after doing, at the n-th
poll, what the person (or the provider's operator) does then.  Nothing here waits on a timer."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field

import jwt
import pytest
import requests

from cabroker.broker import Issuer
from cabroker.device import DEFAULT_INTERVAL, SLOW_DOWN_STEP, login
from cabroker.errors import IdentityError
from tests.interop.support import PUBLIC_CLIENT, PUBLIC_SECRET, SECRET_CLIENT, Person, Provider


@dataclass
class Waiting:
    """The client's ``sleep`` and ``clock``: each wait moves the clock on and is recorded; at
    the ``at``-th wait, ``then(url, user_code)`` runs (with what the client printed)."""

    out: io.StringIO
    at: int = 1
    then: Callable[[str, str], object] | None = None
    now: float = 1_000_000.0
    waits: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds
        if self.then is not None and len(self.waits) == self.at:
            self.then(*shown(self.out.getvalue()))


def shown(printed: str) -> tuple[str, str]:
    """The URL and the code the client printed for the person."""
    url = next(line.strip() for line in printed.splitlines() if line.startswith("    http"))
    code = printed.split("shows the code ", 1)[1].split(",", 1)[0]
    return url, code


def issuer(provider: Provider, **changes: object) -> Issuer:
    fields: dict[str, object] = {
        "name": "op",
        "url": provider.issuer,
        "audience": PUBLIC_CLIENT,
        "client_id": PUBLIC_CLIENT,
        "scopes": ("openid", "groups"),
    }
    return Issuer(**{**fields, **changes})  # type: ignore[arg-type]


def log_in(chosen: Issuer, waiting: Waiting) -> str:
    with requests.Session() as http:
        return login(chosen, out=waiting.out, http=http, sleep=waiting.sleep, clock=waiting.clock)


def refused(chosen: Issuer, waiting: Waiting) -> str:
    with pytest.raises(IdentityError) as caught:
        log_in(chosen, waiting)
    return str(caught.value)


def test_approved_on_the_providers_pages_the_client_gets_an_id_token_with_the_scopes_claims(
    provider: Provider,
) -> None:
    out = io.StringIO()
    person = Person()
    waiting = Waiting(out, at=2, then=lambda url, _: person.approve(url, "alice"))
    token = log_in(issuer(provider), waiting)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["iss"], claims["aud"], claims["sub"]) == (
        provider.issuer,
        PUBLIC_CLIENT,
        "alice",
    )
    assert claims["groups"] == ["engineering"]  # the groups scope, in the ID token
    # the provider sends no interval: RFC 8628's five seconds; pending once, then the token
    assert waiting.waits == [DEFAULT_INTERVAL] * 2
    assert any("/interaction/" in page for page in person.pages)  # its login and consent pages
    assert out.getvalue().rstrip().endswith("Logged in to op as alice.")
    assert token not in out.getvalue()


def test_a_person_who_types_the_code_on_the_verification_page(provider: Provider) -> None:
    out = io.StringIO()
    person = Person()

    def approve_by_typing(_: str, code: str) -> None:
        person.approve(f"{provider.issuer}/device", "bob", user_code=code)

    token = log_in(issuer(provider), Waiting(out, then=approve_by_typing))
    assert jwt.decode(token, options={"verify_signature": False})["groups"] == ["sales"]


def test_slow_down_adds_five_seconds_to_every_later_wait(provider: Provider) -> None:
    out = io.StringIO()
    person = Person()

    def slow_then_approve(url: str, _: str) -> None:
        provider.slow_down(count=1)  # the next pending answer is slow_down

    waiting = Waiting(out, at=1, then=slow_then_approve)
    original = waiting.sleep

    def sleep(seconds: float) -> None:
        original(seconds)
        if len(waiting.waits) == 3:
            person.approve(shown(out.getvalue())[0], "alice")

    waiting.sleep = sleep  # type: ignore[method-assign]
    log_in(issuer(provider), waiting)
    slower = DEFAULT_INTERVAL + SLOW_DOWN_STEP
    assert waiting.waits == [DEFAULT_INTERVAL, slower, slower]


def test_access_denied_when_the_person_aborts_on_the_providers_page(provider: Provider) -> None:
    out = io.StringIO()
    person = Person()
    texts: list[str] = []
    waiting = Waiting(out, then=lambda url, _: texts.append(person.deny(url)))
    message = refused(issuer(provider), waiting)
    assert message.startswith("login was denied at issuer op;")
    assert "interrupted" in texts[0]  # the provider's own page says the sign-in was aborted
    assert waiting.waits == [DEFAULT_INTERVAL]  # no poll after the denial


def test_expired_token_when_the_provider_expires_the_code(provider: Provider) -> None:
    out = io.StringIO()
    waiting = Waiting(out, at=2, then=lambda _, code: provider.expire(code))
    message = refused(issuer(provider), waiting)
    assert message == "the login code expired; run the command again"
    assert waiting.waits == [DEFAULT_INTERVAL] * 2  # pending, then expired_token


def test_a_client_registered_with_a_public_secret_logs_in_with_it(provider: Provider) -> None:
    out = io.StringIO()
    person = Person()
    chosen = issuer(
        provider, audience=SECRET_CLIENT, client_id=SECRET_CLIENT, client_secret=PUBLIC_SECRET
    )
    token = log_in(chosen, Waiting(out, then=lambda url, _: person.approve(url, "alice")))
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == SECRET_CLIENT


def test_without_the_secret_such_a_client_is_told_where_to_set_it(provider: Provider) -> None:
    chosen = issuer(provider, audience=SECRET_CLIENT, client_id=SECRET_CLIENT)
    message = refused(chosen, Waiting(io.StringIO()))
    assert message.startswith("issuer op refused to start a device login: invalid_client")
    assert "CABROKER_CLIENT_SECRET" in message


def test_a_scope_the_provider_does_not_support_is_ignored_and_its_claim_is_absent(
    provider: Provider,
) -> None:
    """oidc-provider ignores scopes it does not support (OpenID Connect Core §3.1.2.1 lets it):
    the login works, and the claim is simply absent, so the rule that needs it does not match."""
    out = io.StringIO()
    person = Person()
    chosen = issuer(provider, scopes=("openid", "roles"))
    token = log_in(chosen, Waiting(out, then=lambda url, _: person.approve(url, "alice")))
    assert "groups" not in jwt.decode(token, options={"verify_signature": False})


def test_without_openid_the_provider_gives_no_id_token_and_the_client_says_why(
    provider: Provider,
) -> None:
    """The broker and the client always ask for ``openid``; were it left out, OAuth alone
    answers (an access token, no ID token), and the client names the missing scope."""
    out = io.StringIO()
    person = Person()
    chosen = issuer(provider, scopes=("groups",))
    message = refused(chosen, Waiting(out, then=lambda url, _: person.approve(url, "alice")))
    assert message == (
        "issuer op finished the login without an ID token; its client 'cabroker-cli' must be "
        "allowed the 'openid' scope"
    )
