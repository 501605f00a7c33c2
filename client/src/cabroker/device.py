"""Interactive login: the OAuth 2.0 device authorization grant (RFC 8628).

The broker's ``/v1/config`` names the issuers a person may log in to (those with a
``client_id``).  :func:`login` reads the issuer's discovery document, asks for a device code,
shows the person where to approve it, then polls the token endpoint until the login is approved,
denied or expired, and returns the ID token.

Nothing secret is ever written to ``out``: not the device code (a bearer credential until the
login ends), not the ID token, not the access token.  ``requests`` is imported on first use.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

from .broker import USER_AGENT, BrokerConfig, Issuer
from .config import CLIENT_SECRET_ENV, SCOPES_ENV, LoginSettings, unsafe_url
from .errors import IdentityError
from .jwt import unverified_claims
from .secret import Secret

if TYPE_CHECKING:
    import requests

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_INTERVAL = 5  # RFC 8628 §3.2: when the answer has no interval
MIN_INTERVAL = 1  # never poll faster than this, whatever an issuer says
SLOW_DOWN_STEP = 5  # RFC 8628 §3.5: each slow_down adds five seconds
MAX_BACKOFF = 60  # the longest wait between polls while the issuer is unreachable
DEFAULT_EXPIRES_IN = 600  # when the answer has no expires_in (it is required)
TIMEOUT = 10.0
MAX_SHOWN = 200  # characters of an issuer's error description that are shown


def interactive_issuers(config: BrokerConfig) -> tuple[Issuer, ...]:
    """The broker's issuers a person can log in to: those with a ``client_id``."""
    return tuple(issuer for issuer in config.issuers if issuer.client_id)


def choose_issuer(config: BrokerConfig, name: str | None = None) -> Issuer:
    """The issuer to log in to: ``name``, or the only one with a ``client_id``."""
    candidates = interactive_issuers(config)
    if name is not None:
        named = [issuer for issuer in config.issuers if issuer.name == name]
        if not named:
            known = ", ".join(issuer.name for issuer in config.issuers) or "none"
            raise IdentityError(f"the broker has no issuer named {name!r}; its issuers: {known}")
        if not named[0].client_id:
            raise IdentityError(
                f"issuer {name!r} offers no interactive login (the broker has no client_id for "
                f"it); {_choices(candidates)}"
            )
        return named[0]
    if not candidates:
        raise IdentityError(
            "the broker offers no interactive login (none of its issuers has a client_id); "
            "use a CI identity or pass --id-token-file PATH"
        )
    if len(candidates) > 1:
        names = ", ".join(issuer.name for issuer in candidates)
        raise IdentityError(
            f"the broker offers interactive login with several issuers ({names}); "
            "choose one with --issuer NAME"
        )
    return candidates[0]


def _choices(candidates: tuple[Issuer, ...]) -> str:
    if not candidates:
        return "the broker offers interactive login with none of its issuers"
    return "interactive login works with: " + ", ".join(issuer.name for issuer in candidates)


def with_user_settings(issuer: Issuer, settings: LoginSettings) -> Issuer:
    """``issuer`` as the broker describes it, with what the user set over it
    (:func:`cabroker.config.login_settings`): the scopes, and a public client secret, for an IdP
    whose admins did not publish them."""
    if settings.scopes is not None:
        issuer = replace(issuer, scopes=settings.scopes)
    if settings.client_secret is not None:
        issuer = replace(issuer, client_secret=settings.client_secret)
    return issuer


def login(
    issuer: Issuer,
    *,
    out: TextIO,
    open_browser: Callable[[str], bool] | None = None,
    http: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
    timeout: float = TIMEOUT,
) -> Secret:
    """Log a person in to ``issuer`` with the device authorization grant; the ID token.

    ``out`` gets the address to open and the code to check; ``open_browser(url)`` (when given)
    opens it.  ``sleep`` and ``clock`` are injectable for tests.  Raises :class:`IdentityError`
    when the issuer offers no device login, the person denies it, or the code expires.
    """
    if not issuer.client_id:
        raise IdentityError(f"issuer {issuer.name!r} offers no interactive login (no client_id)")
    if http is not None:
        return _Login(issuer, issuer.client_id, http, timeout, sleep, clock).run(out, open_browser)
    import requests  # deferred: see the module doc

    with requests.Session() as session:
        session.headers["User-Agent"] = USER_AGENT
        return _Login(issuer, issuer.client_id, session, timeout, sleep, clock).run(
            out, open_browser
        )


@dataclass(frozen=True)
class _Endpoints:
    device_authorization: str
    token: str


@dataclass(frozen=True)
class _Authorization:
    """The device authorization answer; ``device_code`` is secret and never shown."""

    device_code: Secret
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: int
    interval: int


class _Unreachable(Exception):
    """The issuer could not be asked (network error, 5xx, 429)."""


@dataclass
class _Login:
    issuer: Issuer
    client_id: str
    http: requests.Session
    timeout: float
    sleep: Callable[[float], None]
    clock: Callable[[], float]

    def run(self, out: TextIO, open_browser: Callable[[str], bool] | None) -> Secret:
        endpoints = self._discover()
        authorization = self._authorize(endpoints)
        url = authorization.verification_uri_complete or authorization.verification_uri
        _show(out, self.issuer, authorization)
        if open_browser is not None and _is_web_url(url):
            open_browser(url)
        token = self._poll(endpoints, authorization)
        subject = _printable(str(unverified_claims(token).get("sub", "")))
        out.write(f"Logged in to {self.issuer.name}" + (f" as {subject}.\n" if subject else ".\n"))
        out.flush()
        return token

    # --------------------------------------------------------------------- HTTP

    def _send(self, method: str, url: str, **kwargs: Any) -> tuple[int, dict[str, Any] | None]:
        """The status and JSON object of an answer (None when it is not one)."""
        import requests

        try:
            response = self.http.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as error:
            raise _Unreachable(type(error).__name__) from None
        if response.status_code >= 500 or response.status_code == 429:
            raise _Unreachable(f"HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            body = None
        return response.status_code, body if isinstance(body, dict) else None

    def _discover(self) -> _Endpoints:
        url = self.issuer.url.rstrip("/") + "/.well-known/openid-configuration"
        try:
            status, document = self._send("GET", url)
        except _Unreachable as error:
            raise IdentityError(
                f"cannot reach issuer {self.issuer.name} at {url} ({error}); check your network "
                "and the broker's issuer URL"
            ) from None
        if status != 200 or document is None:
            raise IdentityError(
                f"issuer {self.issuer.name} has no OpenID discovery document at {url} "
                f"(HTTP {status}); ask the broker's operator to check its issuer URL"
            )
        device = document.get("device_authorization_endpoint")
        token = document.get("token_endpoint")
        if not isinstance(device, str) or not device or not isinstance(token, str) or not token:
            raise IdentityError(
                f"issuer {self.issuer.name} does not offer device login (its discovery document "
                "has no device_authorization_endpoint or token_endpoint); use a CI identity or "
                "--id-token-file PATH"
            )
        for what, endpoint in (
            ("device_authorization_endpoint", device),
            ("token_endpoint", token),
        ):
            if not _is_safe_endpoint(endpoint):
                raise IdentityError(
                    f"issuer {self.issuer.name} gives an insecure {what} ({_printable(endpoint)}): "
                    "only https:// (or http:// on this machine) is used"
                )
        return _Endpoints(device, token)

    def _authorize(self, endpoints: _Endpoints) -> _Authorization:
        form = {**self._client(), "scope": " ".join(self.issuer.scopes)}
        try:
            status, body = self._send("POST", endpoints.device_authorization, data=form)
        except _Unreachable as error:
            raise IdentityError(
                f"cannot start a device login with issuer {self.issuer.name} ({error}); "
                "try again shortly"
            ) from None
        if status != 200 or body is None:
            raise IdentityError(
                f"issuer {self.issuer.name} refused to start a device login: {_oauth_error(body)}"
                f"; {self._hint(body)}"
            )
        device_code = body.get("device_code")
        user_code = body.get("user_code")
        uri = body.get("verification_uri") or body.get("verification_url")
        complete = body.get("verification_uri_complete")
        if not (
            isinstance(device_code, str)
            and device_code
            and isinstance(user_code, str)
            and user_code
            and isinstance(uri, str)
            and uri
        ):
            raise IdentityError(
                f"issuer {self.issuer.name} answered the device login request without a "
                "device_code, user_code or verification_uri"
            )
        return _Authorization(
            device_code=Secret(device_code),
            user_code=_printable(user_code),
            verification_uri=_printable(uri),
            verification_uri_complete=_printable(complete) if isinstance(complete, str) else None,
            expires_in=_positive_int(body.get("expires_in"), DEFAULT_EXPIRES_IN),
            interval=max(_positive_int(body.get("interval"), DEFAULT_INTERVAL), MIN_INTERVAL),
        )

    def _poll(self, endpoints: _Endpoints, authorization: _Authorization) -> Secret:
        form = {
            "grant_type": DEVICE_CODE_GRANT,
            "device_code": authorization.device_code,
            **self._client(),
        }
        deadline = self.clock() + authorization.expires_in
        interval = wait = authorization.interval
        trouble: str | None = None
        while True:
            self.sleep(wait)
            if self.clock() >= deadline:
                raise _expired(self.issuer, trouble)
            try:
                status, body = self._send("POST", endpoints.token, data=form)
            except _Unreachable as error:
                # RFC 8628 §3.5: back off while the issuer cannot be reached
                trouble = str(error)
                wait = min(wait * 2, MAX_BACKOFF)
                continue
            trouble = None
            wait = interval
            if status == 200 and body is not None:
                return self._id_token(body)
            code = body.get("error") if body else None
            if code == "authorization_pending":
                continue
            if code == "slow_down":
                interval = wait = interval + SLOW_DOWN_STEP
                continue
            if code in ("access_denied", "authorization_declined"):  # the latter: Entra ID
                raise IdentityError(
                    f"login was denied at issuer {self.issuer.name}; run the command again and "
                    "approve the code it shows"
                )
            if code == "expired_token":
                raise _expired(self.issuer, None)
            fix = (
                self._hint(body)
                if code in ("invalid_client", "unauthorized_client")
                else "run the command again"
            )
            raise IdentityError(
                f"issuer {self.issuer.name} refused the device login: {_oauth_error(body)}; {fix}"
            )

    def _client(self) -> dict[str, str]:
        """Who asks, on every request: the client id, and the public secret an IdP may require
        (client_secret_post; RFC 8628 §3.1 wants it on the device authorization request too)."""
        if self.issuer.client_secret:
            return {"client_id": self.client_id, "client_secret": self.issuer.client_secret}
        return {"client_id": self.client_id}

    def _hint(self, body: Mapping[str, Any] | None) -> str:
        """What to check when the issuer refuses this client: its scopes, or its client id and
        (for IdPs that require one) public client secret."""
        code = body.get("error") if body else None
        if code == "invalid_scope":
            return (
                f"the scopes asked for ({' '.join(self.issuer.scopes)}) must be allowed for "
                f"client {self.client_id!r}: ask the broker's operator to check the issuer's "
                f"scopes, or set yours (cabroker configure URL --scope SCOPE, or {SCOPES_ENV})"
            )
        secret = (
            ""
            if self.issuer.client_secret
            else " (if it requires a client secret: cabroker configure URL --client-secret "
            f"SECRET, or {CLIENT_SECRET_ENV})"
        )
        return f"ask the broker's operator to check client_id {self.client_id!r}{secret}"

    def _id_token(self, body: Mapping[str, Any]) -> Secret:
        token = body.get("id_token")
        name = self.issuer.name
        if not isinstance(token, str) or not token:
            raise IdentityError(
                f"issuer {name} finished the login without an ID token; its client "
                f"{self.client_id!r} must be allowed the 'openid' scope"
            )
        claims = unverified_claims(token)
        if not claims:
            raise IdentityError(
                f"issuer {name} finished the login with an ID token that is not a JWT"
            )
        if claims.get("iss") != self.issuer.url:
            raise IdentityError(
                f"issuer {name} gave an ID token issued by {_printable(str(claims.get('iss')))}, "
                f"not by {self.issuer.url}; ask the broker's operator to check the issuer URL"
            )
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if self.issuer.audience not in audiences:
            raise IdentityError(
                f"issuer {name} gave an ID token for audience {_printable(str(aud))}, but the "
                f"broker expects {self.issuer.audience!r}; ask the broker's operator to make the "
                f"client {self.client_id!r} issue tokens for that audience"
            )
        return Secret(token)


def _show(out: TextIO, issuer: Issuer, authorization: _Authorization) -> None:
    """The block a person reads: where to go, which code to check, how long it is valid."""
    minutes = round(authorization.expires_in / 60)
    lifetime = f"{minutes} minutes" if minutes >= 2 else f"{authorization.expires_in} seconds"
    code = authorization.user_code
    if authorization.verification_uri_complete:
        lines = [
            f"To log in to {issuer.name}, open this page in a browser (on any device):",
            "",
            f"    {authorization.verification_uri_complete}",
            "",
            f"Check that it shows the code {code}, then approve the login.",
        ]
    else:
        lines = [
            f"To log in to {issuer.name}, open this page in a browser (on any device):",
            "",
            f"    {authorization.verification_uri}",
            "",
            f"and enter the code {code}, then approve the login.",
        ]
    lines.append(f"Waiting for your approval; the code expires in {lifetime} (Ctrl-C cancels).")
    out.write("\n" + "\n".join(lines) + "\n\n")
    out.flush()


def _expired(issuer: Issuer, trouble: str | None) -> IdentityError:
    why = f" (the last attempts to reach issuer {issuer.name} failed: {trouble})" if trouble else ""
    return IdentityError(f"the login code expired{why}; run the command again")


def _oauth_error(body: Mapping[str, Any] | None) -> str:
    """``error: description`` of an OAuth error answer (RFC 6749 §5.2), for one line."""
    if not body or not isinstance(body.get("error"), str):
        return "an unexpected answer"
    text = str(body["error"])
    description = body.get("error_description")
    if isinstance(description, str) and description:
        text += f" ({description})"
    return _printable(text)[:MAX_SHOWN]


def _positive_int(value: object, default: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return default


def _printable(text: str) -> str:
    """``text`` without control characters: an issuer's words must not drive the terminal."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def _is_web_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in {"https", "http"} and bool(parts.netloc)


def _is_safe_endpoint(url: str) -> bool:
    """https://, or http:// to a loopback host (the devstack), as for every URL that carries a
    secret (:func:`cabroker.config.unsafe_url`)."""
    return unsafe_url(url) is None
