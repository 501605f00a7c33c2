"""The devstack's identity provider: local OIDC issuers over HTTP, with real keys.

One :class:`IdentityProvider` (a werkzeug WSGI application on 127.0.0.1) serves any number of
:class:`Issuer`\\ s, each under ``/<name>/``:

- ``GET .well-known/openid-configuration`` and ``GET jwks`` (also at ``.well-known/jwks.json``,
  where AWS STS serves it): what the broker fetches;
- ``POST mint`` (JSON object of claims → ``{"id_token"}``) and ``POST rotate``: loopback only,
  the devstack's fixed contract for minting ID tokens with chosen claims;
- for issuers with a ``client_id``, the device authorization grant (RFC 8628):
  ``POST device_authorization``, ``POST token``, and the approval page ``GET|POST device``
  (see :mod:`devstack.device`).

An issuer's *kind* (by default its name: ``github``, ``gitlab``, ``aws``; anything else is a
generic OIDC provider) decides its default ``sub``, whether its tokens carry ``nbf``, its
signing key (AWS: ES384 on P-384; the others: the key factory's, RS256 by default) and its
``jwks_uri``; :mod:`devstack.claimsets` builds each kind's full claim set.

It is a test double: no client authentication, no consent, users are names with claims.
Tokens are never logged, and their ``repr`` is redacted (:class:`Secret`).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from devstack.device import (
    DEVICE_CODE_GRANT,
    ConsoleApprover,
    DeviceGrants,
    DeviceHook,
    DeviceLoginError,
    PendingRequest,
    TokenError,
    authorization_endpoint,
    json_response,
    page_endpoint,
    token_endpoint,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = [
    "ConsoleApprover",
    "DeviceLoginError",
    "IdentityProvider",
    "Issuer",
    "PendingRequest",
    "Secret",
    "SigningKey",
    "is_loopback",
    "new_key",
    "public_jwk",
]

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
KeyFactory = Callable[[str], SigningKey]  # called with a name such as "corp-2"

TOKEN_LIFETIME = 300
# Each kind's defaults, under :meth:`Issuer.claims`' standard ones (``None`` drops a claim).
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "oidc": {"sub": "repo:acme/app:ref:refs/heads/main"},
    "github": {"sub": "repo:acme/app:ref:refs/heads/main"},  # legacy format: tests rely on it
    "gitlab": {"sub": "project_path:acme/data:ref_type:branch:ref:main"},
    # STS web identity tokens carry iss, aud, sub, iat, exp and jti, but no nbf.
    "aws": {"sub": "arn:aws:iam::210987654321:role/cabroker-reader", "nbf": None},
}
PROBLEM_TYPE = "urn:cabroker:devstack:problem:"
ISSUER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


class Secret(str):
    """A token whose repr is redacted, so no traceback or test report ever shows it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<secret: {len(self)} characters>"


def new_key(name: str, kind: str = "RSA") -> SigningKey:
    """A fresh signing key (``RSA``, ``EC`` on P-256, or ``P-384``); ``name`` is for factories
    that cache keys by name."""
    if kind == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "P-384":
        return ec.generate_private_key(ec.SECP384R1())
    return ec.generate_private_key(ec.SECP256R1())


EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


def algorithm_of(key: SigningKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    # another curve (secp256k1, say) is labelled ES256: what a careless issuer would publish,
    # and what the verifier must refuse (tests/unit/broker/test_token_shape.py)
    return EC_ALGORITHMS.get(key.curve.name, "ES256")


def public_jwk(key: SigningKey, kid: str, alg: str | None = None) -> dict[str, Any]:
    algorithm = jwt.get_algorithm_by_name(algorithm_of(key))
    jwk: dict[str, Any] = json.loads(algorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "use": "sig"})
    if alg:
        jwk["alg"] = alg
    return jwk


def thumbprint(key: SigningKey) -> str:
    """The key's RFC 7638 JWK thumbprint: a kid that can only ever name this key."""
    jwk = public_jwk(key, "")
    members = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(eq=False)
class Issuer:
    """One issuer: its keys (kid → private key, in publication order), its users (name →
    extra claims, for interactive login) and switches for faults (``down``, ``garbage``)."""

    name: str
    url: str
    audience: str
    client_id: str | None = None  # the device authorization grant is served when set
    kind: str = "oidc"  # a key of KIND_DEFAULTS: what the issuer stands in for
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    keys: dict[str, SigningKey] = field(default_factory=dict)
    current_kid: str | None = None
    down: bool = False
    garbage: bool = False
    jwks_requests: int = 0
    key_factory: KeyFactory = field(default=new_key, repr=False)
    clock: Callable[[], float] = field(default=time.time, repr=False)
    device_interval: int = 5
    device_expires_in: int = 600
    device: DeviceGrants | None = field(default=None, init=False, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)
    _keys_made: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KIND_DEFAULTS:
            raise ValueError(f"issuer {self.name!r}: unknown kind {self.kind!r}")
        if self.client_id is not None:
            if not self.users:
                raise ValueError(f"issuer {self.name!r} has a client_id but no users to log in")
            self.device = DeviceGrants(
                self.name, self.clock, self.device_interval, self.device_expires_in
            )

    # ------------------------------------------------------------------ keys

    @property
    def signing_kid(self) -> str:
        """The kid new tokens are signed with: ``current_kid`` while published, else the
        first published key."""
        with self._lock:
            kid = self.current_kid
            if kid is not None and kid in self.keys:
                return kid
            if not self.keys:
                raise LookupError(f"issuer {self.name!r} has no keys")
            return next(iter(self.keys))

    def publish(self, kid: str, key: SigningKey) -> None:
        with self._lock:
            self.keys[kid] = key

    def rotate(self, retire: bool = False) -> str:
        """Sign with a new key from now on; earlier keys stay published unless ``retire``."""
        with self._lock:
            self._keys_made += 1
            if self.kind == "aws":  # STS signs ES384 (or RS256) as the caller asks; ES384 here
                key = new_key(f"{self.name}-{self._keys_made}", "P-384")
            else:
                key = self.key_factory(f"{self.name}-{self._keys_made}")
            kid = thumbprint(key)
            if kid in self.keys:
                raise ValueError(f"the key factory gave {self.name!r} a key it already has")
            self.keys = {kid: key} if retire else {**self.keys, kid: key}
            self.current_kid = kid
            return kid

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            return {"keys": [public_jwk(key, kid) for kid, key in self.keys.items()]}

    def served_jwks(self) -> dict[str, Any]:
        """The JWKS as served over HTTP: counted in ``jwks_requests``."""
        with self._lock:
            self.jwks_requests += 1
            return self.jwks()

    def discovery(self) -> dict[str, Any]:
        with self._lock:
            algorithms = sorted({algorithm_of(key) for key in self.keys.values()}) or ["RS256"]
        # AWS STS serves its keys at /.well-known/jwks.json under the issuer; the others at /jwks.
        jwks_path = ".well-known/jwks.json" if self.kind == "aws" else "jwks"
        document: dict[str, Any] = {
            "issuer": self.url,
            "jwks_uri": f"{self.url}/{jwks_path}",
            "id_token_signing_alg_values_supported": algorithms,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
        }
        if self.client_id is not None:
            document["device_authorization_endpoint"] = f"{self.url}/device_authorization"
            document["token_endpoint"] = f"{self.url}/token"
            document["grant_types_supported"] = [DEVICE_CODE_GRANT]
        return document

    # ---------------------------------------------------------------- tokens

    def claims(self, /, **overrides: Any) -> dict[str, Any]:
        """Default claims with ``overrides``; ``name=None`` drops a claim."""
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": self.url,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME,
            "jti": secrets.token_hex(16),  # as GitHub and GitLab set it: unique per token
        }
        claims.update(KIND_DEFAULTS[self.kind])
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def mint(
        self,
        kid: str | None = None,
        *,
        algorithm: str | None = None,
        headers: Mapping[str, Any] | None = None,
        key: SigningKey | None = None,
        **claims: Any,
    ) -> Secret:
        """A signed ID token with default claims; ``name=None`` drops a claim.  ``kid``,
        ``key``, ``algorithm`` and ``headers`` let tests sign what no honest issuer would."""
        with self._lock:
            kid = kid or self.signing_kid
            signing_key = key or self.keys[kid]
        algorithm = algorithm or algorithm_of(signing_key)
        all_headers = {"kid": kid, **(headers or {})}
        return Secret(
            jwt.encode(self.claims(**claims), signing_key, algorithm=algorithm, headers=all_headers)
        )

    def sign(self, claims: Mapping[str, Any]) -> Secret:
        """``claims`` exactly as given, signed with the current key."""
        with self._lock:
            kid = self.signing_kid
            key = self.keys[kid]
        return Secret(jwt.encode(dict(claims), key, algorithm_of(key), headers={"kid": kid}))

    # ------------------------------------------------------- device login

    def start_device_login(self, client_id: str, scope: str = "") -> tuple[Secret, PendingRequest]:
        """A new device login: its device code (for the client only) and its request."""
        if client_id != self.client_id:
            raise TokenError("invalid_client", f"unknown client_id for {self.name}")
        device_code, request = self._grants().start(client_id, scope)
        return Secret(device_code), request

    def pending(self) -> list[PendingRequest]:
        """The device logins waiting for a decision, oldest first."""
        return self._grants().pending()

    def find_pending(self, user_code: str) -> PendingRequest:
        """The pending login with this user code; raises :class:`DeviceLoginError`."""
        return self._grants().find(user_code)

    def approve(self, user_code: str, user: str) -> None:
        self._grants().approve(user_code, user, self.users)

    def deny(self, user_code: str) -> None:
        self._grants().deny(user_code)

    def device_token(self, device_code: str, client_id: str) -> dict[str, Any]:
        """The token response for an approved device code; raises :class:`TokenError`."""
        if client_id != self.client_id:
            raise TokenError("invalid_client", f"unknown client_id for {self.name}")
        user, request = self._grants().poll(device_code)
        answer: dict[str, Any] = {
            "access_token": Secret(secrets.token_urlsafe(32)),
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME,
            "scope": request.scope,
        }
        if "openid" in request.scope.split():  # OAuth alone without it: no ID token
            answer["id_token"] = self.sign(self.claims(**{**self.users.get(user, {}), "sub": user}))
        return answer

    def _grants(self) -> DeviceGrants:
        if self.device is None:
            raise LookupError(f"issuer {self.name!r} has no client_id: no device login")
        return self.device


class _Problem(Exception):
    """An RFC 9457 answer of the JSON endpoints."""

    def __init__(self, status: int, slug: str, title: str, detail: str) -> None:
        super().__init__(detail)
        self.body = {
            "type": PROBLEM_TYPE + slug,
            "title": title,
            "status": status,
            "detail": detail,
        }
        self.status = status


class _Request(Request):
    max_content_length = 1 << 20


class _QuietRequestHandler(WSGIRequestHandler):
    """No access log: request lines may carry codes, and nothing here may log a token."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


ROUTES = Map(
    [
        Rule("/<name>/.well-known/openid-configuration", endpoint="discovery", methods=["GET"]),
        Rule("/<name>/jwks", endpoint="jwks", methods=["GET"]),
        Rule("/<name>/.well-known/jwks.json", endpoint="jwks", methods=["GET"]),
        Rule("/<name>/mint", endpoint="mint", methods=["POST"]),
        Rule("/<name>/rotate", endpoint="rotate", methods=["POST"]),
        Rule("/<name>/device_authorization", endpoint="device_authorization", methods=["POST"]),
        Rule("/<name>/token", endpoint="token", methods=["POST"]),
        Rule("/<name>/device", endpoint="device", methods=["GET", "POST"]),
    ]
)
DEVICE_ENDPOINTS = frozenset({"device_authorization", "token", "device"})


class IdentityProvider:
    """Local OIDC issuers behind one werkzeug server on ``host`` (127.0.0.1), ``port`` (0:
    ephemeral).  The port is bound at construction, so ``base_url`` and issuer URLs are known
    before :meth:`start`.  ``device_interval`` and ``device_expires_in`` apply to the device
    logins of issuers added later; ``on_device_request(issuer name, request)`` is called when a
    device login starts."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        key_factory: KeyFactory = new_key,
        clock: Callable[[], float] = time.time,
        device_interval: int = 5,
        device_expires_in: int = 600,
    ) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.issuers: dict[str, Issuer] = {}
        self.on_device_request: DeviceHook | None = None
        self.key_factory = key_factory
        self.clock = clock
        self.device_interval = device_interval
        self.device_expires_in = device_expires_in
        self._lock = threading.Lock()
        self._server: BaseWSGIServer = make_server(
            host, port, self, threaded=True, request_handler=_QuietRequestHandler
        )
        shown_host = f"[{host}]" if ":" in host else host
        self.base_url = f"http://{shown_host}:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="dev-idp", daemon=True
        )

    def add(
        self,
        name: str,
        audience: str,
        client_id: str | None = None,
        users: Mapping[str, Mapping[str, Any]] | None = None,
        kind: str | None = None,
    ) -> Issuer:
        """A new issuer at ``<base_url>/<name>``, with one key made by the key factory; its
        ``kind`` is its name when that is one of :data:`KIND_DEFAULTS`, else ``oidc``."""
        if not ISSUER_NAME.match(name):
            raise ValueError(f"issuer name {name!r} must be one URL path segment")
        issuer = Issuer(
            name=name,
            url=f"{self.base_url}/{name}",
            audience=audience,
            client_id=client_id,
            kind=kind or (name if name in KIND_DEFAULTS else "oidc"),
            users={user: dict(claims) for user, claims in (users or {}).items()},
            key_factory=self.key_factory,
            clock=self.clock,
            device_interval=self.device_interval,
            device_expires_in=self.device_expires_in,
        )
        issuer.rotate()
        with self._lock:
            if name in self.issuers:
                raise ValueError(f"issuer {name!r} already exists")
            self.issuers[name] = issuer
        return issuer

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port (also for a provider that never started)."""
        if self._thread.ident is not None:
            self._server.shutdown()
        self._server.server_close()

    @contextmanager
    def running(self) -> Iterator[IdentityProvider]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = _Request(environ)
        try:
            response = self._dispatch(request)
        except _Problem as problem:
            response = json_response(problem.body, problem.status, "application/problem+json")
        except HTTPException as error:
            if error.code is not None and 300 <= error.code < 400:
                response = error.get_response(environ)
            else:
                response = _http_problem(error)
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        endpoint, args = ROUTES.bind_to_environ(request.environ).match()
        with self._lock:
            issuer = self.issuers.get(args["name"])
        if issuer is None:
            raise _Problem(404, "not-found", "Not found", f"no issuer named {args['name']!r}")
        if endpoint in DEVICE_ENDPOINTS and issuer.device is None:
            detail = f"issuer {issuer.name!r} has no client_id, so no device login"
            raise _Problem(404, "not-found", "Not found", detail)
        handler: Callable[[Request, Issuer], Response] = getattr(self, f"_{endpoint}")
        return handler(request, issuer)

    def _discovery(self, request: Request, issuer: Issuer) -> Response:
        return _faulty(issuer) or json_response(issuer.discovery())

    def _jwks(self, request: Request, issuer: Issuer) -> Response:
        if fault := _faulty(issuer):
            return fault
        return json_response(issuer.served_jwks())

    def _mint(self, request: Request, issuer: Issuer) -> Response:
        _require_loopback(request)
        claims = _json_object(request)
        try:
            id_token = issuer.sign(issuer.claims(**claims))
        except (TypeError, ValueError) as error:
            raise _Problem(400, "invalid-request", "Invalid claims", str(error)) from None
        return json_response({"id_token": id_token}, headers={"Cache-Control": "no-store"})

    def _rotate(self, request: Request, issuer: Issuer) -> Response:
        _require_loopback(request)
        retire = _json_object(request).get("retire", False)
        if not isinstance(retire, bool):
            raise _Problem(400, "invalid-request", "Invalid request", "retire must be a boolean")
        return json_response({"kid": issuer.rotate(retire=retire)})

    def _device_authorization(self, request: Request, issuer: Issuer) -> Response:
        return authorization_endpoint(issuer, request.form, self.on_device_request)

    def _token(self, request: Request, issuer: Issuer) -> Response:
        return token_endpoint(issuer, request.form)

    def _device(self, request: Request, issuer: Issuer) -> Response:
        return page_endpoint(issuer, request, is_loopback(request.remote_addr))


def _faulty(issuer: Issuer) -> Response | None:
    if issuer.down:
        return json_response({"error": "down"}, 503)
    if issuer.garbage:
        return Response(b"<html>not json</html>", 200, content_type="application/json")
    return None


_HTTP_SLUGS = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}


def _http_problem(error: HTTPException) -> Response:
    status = error.code or 500
    response = json_response(
        {
            "type": PROBLEM_TYPE + _HTTP_SLUGS.get(status, "http-error"),
            "title": error.name,
            "status": status,
            "detail": error.description or error.name,
        },
        status,
        "application/problem+json",
    )
    for name, value in error.get_headers():
        if name.lower() == "allow":
            response.headers[name] = value
    return response


def _require_loopback(request: Request) -> None:
    if not is_loopback(request.remote_addr):
        detail = "minting, rotating and approving are only for loopback clients"
        raise _Problem(403, "forbidden", "Forbidden", detail)


def is_loopback(address: str | None) -> bool:
    """127.0.0.0/8 or ::1 (also as an IPv4-mapped IPv6 address)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object; an empty body is ``{}``."""
    raw = request.get_data(cache=False)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise _Problem(400, "invalid-request", "Invalid JSON", "the body is not JSON") from None
    if not isinstance(body, dict):
        detail = f"the body must be a JSON object, not {type(body).__name__}"
        raise _Problem(400, "invalid-request", "Invalid request", detail)
    return body
