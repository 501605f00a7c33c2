"""The dev IdP's device authorization grant (RFC 8628): pending logins and their codes, the
approval page, and approval from a terminal (:class:`ConsoleApprover`).

A device login starts at the issuer's ``device_authorization`` endpoint, waits for someone to
approve or deny its user code (on the ``device`` page, through :meth:`DeviceGrants.approve` or
at the console) and ends when the client polls the ``token`` endpoint after the decision: its
device code then works once.  :mod:`devstack.idp` routes those three endpoints here.
"""

from __future__ import annotations

import html
import json
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TextIO
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

if TYPE_CHECKING:
    from devstack.idp import IdentityProvider, Issuer

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# RFC 8628 §6.1: consonants only (no vowels, so no words), easy to read aloud and type.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
SLOW_DOWN_STEP = 5  # RFC 8628 §3.5: each slow_down adds five seconds to the interval
NO_STORE = {"Cache-Control": "no-store"}
PAGE_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
}
log = logging.getLogger(__name__)


def new_user_code() -> str:
    letters = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(8))
    return f"{letters[:4]}-{letters[4:]}"


def _code_key(user_code: str) -> str:
    """Typed codes match whatever their case and punctuation (RFC 8628 §6.1)."""
    return "".join(ch for ch in user_code.upper() if ch.isalnum())


@dataclass(frozen=True)
class PendingRequest:
    """A device login waiting for a decision, as shown to whoever approves it."""

    issuer: str
    user_code: str
    client_id: str
    scope: str
    expires_at: float


DeviceHook = Callable[[str, PendingRequest], None]  # (issuer name, request)


class DeviceLoginError(Exception):
    """A decision that cannot be taken; ``status`` is the device page's answer."""

    status: ClassVar[int] = 400


class UnknownUserCode(DeviceLoginError):
    status = 404


class ExpiredUserCode(DeviceLoginError):
    status = 400


class UnknownUser(DeviceLoginError):
    status = 400


class TokenError(Exception):
    """An error answer of the token endpoint (RFC 6749 §5.2, RFC 8628 §3.5)."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass
class _Grant:
    request: PendingRequest
    interval: int
    last_poll: float
    status: Literal["pending", "approved", "denied"] = "pending"
    user: str | None = None


class DeviceGrants:
    """The device logins of one issuer, thread-safe.  Device codes never leave this object
    except in :meth:`start`'s answer, and are never part of a repr."""

    def __init__(
        self,
        issuer: str,
        clock: Callable[[], float] = time.time,
        interval: int = 5,
        expires_in: int = 600,
    ) -> None:
        self.issuer = issuer
        self.interval = interval
        self.expires_in = expires_in
        self._clock = clock
        self._lock = threading.Lock()
        self._by_device: dict[str, _Grant] = {}
        self._by_user_code: dict[str, _Grant] = {}

    def start(self, client_id: str, scope: str) -> tuple[str, PendingRequest]:
        """A new pending login: its device code (for the client only) and its request."""
        now = self._clock()
        device_code = secrets.token_urlsafe(32)
        with self._lock:
            self._forget_expired(now)
            user_code = new_user_code()
            while _code_key(user_code) in self._by_user_code:
                user_code = new_user_code()
            request = PendingRequest(
                self.issuer, user_code, client_id, scope, now + self.expires_in
            )
            grant = _Grant(request, self.interval, last_poll=now)
            self._by_device[device_code] = grant
            self._by_user_code[_code_key(user_code)] = grant
        return device_code, request

    def pending(self) -> list[PendingRequest]:
        now = self._clock()
        with self._lock:
            return [
                grant.request
                for grant in self._by_user_code.values()
                if grant.status == "pending" and now < grant.request.expires_at
            ]

    def find(self, user_code: str) -> PendingRequest:
        """The pending request with this user code; raises :class:`DeviceLoginError`."""
        with self._lock:
            return self._pending(user_code).request

    def approve(self, user_code: str, user: str, users: Container[str]) -> None:
        with self._lock:
            grant = self._pending(user_code)
            if user not in users:
                raise UnknownUser(f"{self.issuer} has no user {user!r}")
            grant.status, grant.user = "approved", user

    def deny(self, user_code: str) -> None:
        with self._lock:
            self._pending(user_code).status = "denied"

    def poll(self, device_code: str) -> tuple[str, PendingRequest]:
        """The approved user and request, once; otherwise raises :class:`TokenError`."""
        now = self._clock()
        with self._lock:
            grant = self._by_device.get(device_code)
            if grant is None:
                raise TokenError("invalid_grant", "unknown or already used device_code")
            if now >= grant.request.expires_at:
                raise TokenError("expired_token", "the device code expired: start again")
            if now - grant.last_poll < grant.interval:
                grant.interval += SLOW_DOWN_STEP
                grant.last_poll = now
                raise TokenError("slow_down", f"poll at most every {grant.interval} seconds")
            grant.last_poll = now
            if grant.status == "pending":
                raise TokenError("authorization_pending", "the user has not decided yet")
            del self._by_device[device_code]
            del self._by_user_code[_code_key(grant.request.user_code)]
            if grant.status == "denied" or grant.user is None:
                raise TokenError("access_denied", "the user denied the login")
            return grant.user, grant.request

    def _pending(self, user_code: str) -> _Grant:
        grant = self._by_user_code.get(_code_key(user_code))
        if grant is None or grant.status != "pending":
            raise UnknownUserCode(f"no pending device login has the code {user_code!r}")
        if self._clock() >= grant.request.expires_at:
            raise ExpiredUserCode(f"the code {user_code!r} has expired: start the login again")
        return grant

    def _forget_expired(self, now: float) -> None:
        """Drop logins expired for longer than their lifetime (until then: expired_token)."""
        for device_code, grant in list(self._by_device.items()):
            if now >= grant.request.expires_at + self.expires_in:
                del self._by_device[device_code]
                del self._by_user_code[_code_key(grant.request.user_code)]


def device_page(
    issuer: str,
    action_url: str,
    users: Sequence[str],
    message: str,
    user_code: str = "",
) -> str:
    """The approval page: a message, the code field, the user choice, Approve and Deny."""
    e = html.escape
    options = "".join(f'<option value="{e(user)}">{e(user)}</option>' for user in users)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(issuer)}: device login</title></head><body>\n"
        f"<h1>{e(issuer)}: device login</h1>\n<p>{e(message)}</p>\n"
        f'<form method="post" action="{e(action_url)}">\n'
        f'<p><label>Code <input name="user_code" value="{e(user_code)}" '
        'autocomplete="off" required></label></p>\n'
        f'<p><label>Sign in as <select name="user">{options}</select></label></p>\n'
        '<p><button name="action" value="approve">Approve</button> '
        '<button name="action" value="deny">Deny</button></p>\n'
        "</form></body></html>\n"
    )


# ---------------------------------------------------------------------------------- HTTP


def json_response(
    body: Mapping[str, Any],
    status: int = 200,
    content_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(
        json.dumps(body), status, headers=dict(headers or {}), content_type=content_type
    )


def _oauth_error(error: TokenError) -> Response:
    body = {"error": error.error, "error_description": error.description}
    return json_response(body, 400, headers=NO_STORE)


def authorization_endpoint(
    issuer: Issuer, form: Mapping[str, str], hook: DeviceHook | None
) -> Response:
    """``POST device_authorization`` (RFC 8628 §3.1, §3.2)."""
    try:
        device_code, pending = issuer.start_device_login(
            form.get("client_id", ""), form.get("scope", "")
        )
    except TokenError as error:
        return _oauth_error(error)
    verification_uri = f"{issuer.url}/device"
    query = urlencode({"user_code": pending.user_code})
    body = {
        "device_code": device_code,
        "user_code": pending.user_code,
        "verification_uri": verification_uri,
        "verification_uri_complete": f"{verification_uri}?{query}",
        "expires_in": issuer.device_expires_in,
        "interval": issuer.device_interval,
    }
    if hook is not None:
        try:
            hook(issuer.name, pending)
        except Exception:
            log.exception("on_device_request failed for %s", issuer.name)
    return json_response(body, headers=NO_STORE)


def token_endpoint(issuer: Issuer, form: Mapping[str, str]) -> Response:
    """``POST token`` with the device code grant (RFC 8628 §3.4, §3.5)."""
    try:
        if not form.get("grant_type"):
            raise TokenError("invalid_request", "grant_type is missing")
        if form["grant_type"] != DEVICE_CODE_GRANT:
            raise TokenError("unsupported_grant_type", f"only {DEVICE_CODE_GRANT} is served")
        if not form.get("device_code"):
            raise TokenError("invalid_request", "device_code is missing")
        body = issuer.device_token(form["device_code"], form.get("client_id", ""))
    except TokenError as error:
        return _oauth_error(error)
    return json_response(body, headers={**NO_STORE, "Pragma": "no-cache"})


def page_endpoint(issuer: Issuer, request: Request, loopback: bool) -> Response:
    """``GET device`` (optionally ``?user_code=``) shows the page; ``POST device`` with
    ``user_code``, ``user`` and ``action`` (approve or deny) decides, from loopback only."""
    form = request.form if request.method == "POST" else request.args
    user_code = form.get("user_code", "")
    status, message = 200, "Enter the code shown on your device, then approve or deny it."
    try:
        if request.method == "POST" and not loopback:
            status, message = 403, "Only loopback clients may approve or deny device logins."
        elif request.method == "POST":
            action, user = form.get("action"), form.get("user", "")
            if action == "approve":
                issuer.approve(user_code, user)
                message = f"Approved: the device signs in as {user}. You may close this page."
            elif action == "deny":
                issuer.deny(user_code)
                message = "Denied: the device will not sign in."
            else:
                status, message = 400, "Choose Approve or Deny."
        elif user_code:
            pending = issuer.find_pending(user_code)
            message = f"{pending.client_id} asks to sign in. Approve only if you started it."
    except DeviceLoginError as error:
        status, message = error.status, str(error)
    page = device_page(issuer.name, f"{issuer.url}/device", list(issuer.users), message, user_code)
    return Response(page, status, content_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


class ConsoleApprover:
    """Approves device logins from a terminal: one prompt per login, one line per answer.

    An empty line approves as the issuer's first user, a user's name approves as that user,
    ``deny`` denies.  The prompt always stands for the newest pending login: the pending logins
    are read again when the user answers, and an answer typed while a newer login started is
    taken as an answer to nothing (the prompt shows the newer code and asks again).  It runs in
    a daemon thread and stops at the end of its input; the devstack starts it only when stdin
    is a TTY.
    """

    def __init__(self, provider: IdentityProvider, stdin: TextIO, stdout: TextIO) -> None:
        self._provider = provider
        self._stdin = stdin
        self._stdout = stdout
        self._requests: queue.Queue[PendingRequest | None] = queue.Queue()
        self._order: list[PendingRequest] = []  # notified logins, oldest first
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="device-approver", daemon=True)

    def start(self) -> None:
        self._provider.on_device_request = self.notify
        self._thread.start()

    def stop(self) -> None:
        if self._thread.ident is not None:
            self._requests.put(None)
            self._thread.join(timeout=5)

    def notify(self, issuer: str, request: PendingRequest) -> None:
        """The provider's ``on_device_request`` hook: queue the request, return at once."""
        with self._lock:
            self._order.append(request)
        self._requests.put(request)

    def newest(self) -> PendingRequest | None:
        """The newest login pending now (read from the issuers, not from what was notified)."""
        pending = [
            request
            for issuer in self._provider.issuers.values()
            if issuer.client_id  # the issuers with device login
            for request in issuer.pending()
        ]
        with self._lock:
            self._order = [request for request in self._order if request in pending]
            rank = {request: number for number, request in enumerate(self._order)}
        # Logins never notified (started before the hook was set) count as the oldest.
        return max(pending, key=lambda r: (rank.get(r, -1), r.expires_at), default=None)

    def _run(self) -> None:
        while self._requests.get() is not None:
            while (request := self.newest()) is not None:
                if not self.answer(request):
                    return

    def answer(self, request: PendingRequest) -> bool:
        """Ask about one request still pending (else say nothing); False when the input has
        ended.  An answer applies only while ``request`` is the newest pending login; else
        the newest is shown and asked about."""
        while True:
            issuer = self._provider.issuers.get(request.issuer)
            if issuer is None or request not in issuer.pending():
                return True  # decided elsewhere (the page, the API) or expired meanwhile
            users = list(issuer.users)
            choices = f"[{users[0]}]" + "".join(f" {user}" for user in users[1:])
            self._say(
                f"{request.issuer}: device login requested, code {request.user_code}. "
                f"Approve as which user? {choices}, or 'deny': "
            )
            line = self._stdin.readline()
            if not line:
                self._say(f"\n{request.issuer}: no more input; {request.user_code} stays pending\n")
                return False
            newest = self.newest()
            if newest is not None and newest != request:
                self._say(
                    f"{request.issuer}: {request.user_code} is not the newest login; "
                    f"now pending is {newest.user_code} ({newest.issuer}): answer again\n"
                )
                request = newest
                continue
            choice = line.strip()
            try:
                if choice.lower() == "deny":
                    issuer.deny(request.user_code)
                    self._say(f"{request.issuer}: denied {request.user_code}\n")
                else:
                    issuer.approve(request.user_code, choice or users[0])
                    self._say(
                        f"{request.issuer}: approved {request.user_code} as {choice or users[0]}\n"
                    )
                return True
            except UnknownUser as error:
                self._say(f"{error}\n")
            except DeviceLoginError as error:
                self._say(f"{request.issuer}: {error}\n")
                return True

    def _say(self, text: str) -> None:
        self._stdout.write(text)
        self._stdout.flush()
