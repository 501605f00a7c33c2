"""Phase one: prove an OIDC ID token, or say precisely why not.

The unverified ``iss`` is read only to pick which trusted issuer's keys to use.  Everything
else is checked by PyJWT with every check switched on explicitly: the signature with an
algorithm pinned to an asymmetric family and to the key's type, ``iss`` exact, ``aud``, ``exp``
(required), ``nbf`` and ``iat`` with a small leeway, and ``sub`` required.  Headers that try to
bring their own key (``jwk``, ``jku``, ``x5u``, ``x5c``) or extensions (``crit``) are refused.
What PyJWT does not check is checked by :mod:`broker.tokenshape`: the ``typ`` header, that
``exp``/``nbf``/``iat`` are numbers, and ``azp`` when there are several audiences.

Each algorithm verifies only with a key of its own kind, read from the key itself rather than
from what its JWK declares: RSA of at least 2048 bits for RS*/PS*, EC on P-256, P-384 and P-521
for ES256, ES384 and ES512.  A key the issuer publishes that no token may be signed with (RSA
under 2048 bits, or a JWK that gives away its private part) is kept in the cache as refused and
logged (issuer, kid and reason only) when the JWKS is loaded, so a token signed with it gets
401 invalid-token saying why, not 503; PyJWT's own minimum key length is enforced as well, so
its short-key warning can never be emitted.

Issuer keys come from OIDC discovery and the JWKS it names, cached in memory per issuer:
refreshed after a TTL, at most once per short interval when a token names an unknown ``kid``,
and served stale for a bounded time when the issuer cannot be reached.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import jwt
from aws_lambda_powertools import Logger
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from . import deadline, tokenshape
from .problems import InvalidToken, IssuerUnavailable
from .rules import LOOPBACK_HOSTS, Issuer, RuleSet

logger = Logger(service="cabroker", child=True)

# Algorithm → (JWK key type, EC curve or None).  Asymmetric only: never "none" nor HMAC.
ALGORITHMS: Mapping[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
}
# The JWK name of each curve an ES algorithm uses, by cryptography's name for it.
EC_CURVES: Mapping[str, str] = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
MIN_RSA_BITS = 2048  # RFC 7518 §3.3 and §3.5; PyJWT only warns below it by default
FORBIDDEN_HEADERS = frozenset({"jwk", "jku", "x5u", "x5c", "crit"})
REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub"]
MAX_DOCUMENT_BYTES = 512 * 1024
FAILURE_BACKOFF_SECONDS = 5.0

FetchJson = Callable[[str], Mapping[str, Any]]


@dataclass(frozen=True)
class Identity:
    """A caller whose ID token was verified."""

    issuer: Issuer
    subject: str
    claims: Mapping[str, Any]
    token_sha256: str  # for audit logs: never log the token itself


def token_digest(token: str) -> str:
    """SHA-256 of a bearer token, for audit logs; any string, even one that is not UTF-8."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class FetchError(Exception):
    """An issuer document could not be fetched or is not usable."""


class OutOfTime(FetchError):
    """The request's deadline left no time to fetch (says nothing about the issuer)."""


# --------------------------------------------------------------------------- fetching


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect could downgrade https to http; refuse it


class _Watched:
    """The connections a fetch opened, so a watchdog can cut them at its deadline: a socket
    timeout bounds each read, not an issuer that trickles its headers or body byte by byte."""

    def __init__(self) -> None:
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._cut = False

    def connected(self, sock: socket.socket) -> None:
        """A connection is up; one that comes up after the cut is cut at once."""
        with self._lock:
            self._sockets.append(sock)
            if self._cut:
                _shut(sock)

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            for sock in self._sockets:
                _shut(sock)

    @property
    def was_cut(self) -> bool:
        return self._cut


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _watched(base: type[http.client.HTTPConnection], watched: _Watched) -> Any:
    """``base`` (HTTP or HTTPS), reporting each connection it makes to ``watched``."""

    class Connection(base):  # type: ignore[valid-type,misc]
        def connect(self) -> None:
            super().connect()
            watched.connected(self.sock)

    return Connection


class _WatchedHttp(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        watched: _Watched = getattr(req, "watched")  # noqa: B009 - set by the fetch
        return self.do_open(_watched(http.client.HTTPConnection, watched), req)


class _WatchedHttps(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        watched: _Watched = getattr(req, "watched")  # noqa: B009 - set by the fetch
        return self.do_open(
            _watched(http.client.HTTPSConnection, watched),
            req,
            context=getattr(self, "_context", None),
        )


def http_fetcher(timeout: float) -> FetchJson:
    """A small JSON-over-HTTP(S) GET with a timeout, a size cap and no redirects.

    Within a request's deadline (:mod:`broker.deadline`) a fetch gets at most half the time
    left (the rest is for minting); with no time left it does not start.
    """
    opener = urllib.request.build_opener(_NoRedirects, _WatchedHttp, _WatchedHttps)

    def fetch(url: str) -> Mapping[str, Any]:
        if not _allowed_fetch_url(url):
            raise FetchError(f"{url} is neither https:// nor http:// on a loopback host")
        left = deadline.remaining()
        if left is not None and left < 2 * deadline.FLOOR_SECONDS:
            raise OutOfTime(f"no time was left to fetch {url}")
        wait = deadline.bounded(2 * timeout) / 2  # the timeout, or half the time left
        request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 - scheme checked above
        # A total deadline, not only a per-read one: a watchdog cuts the connection when the
        # wait is over, wherever the fetch is blocked (a connection made later is cut as it
        # comes up; connecting itself is bounded by the socket timeout), so an issuer
        # trickling its headers or body cannot hold a request. DNS resolution is the only wait
        # it cannot cut.
        watched = _Watched()
        request.watched = watched  # type: ignore[attr-defined]  # read by the handlers above
        watchdog = threading.Timer(wait, watched.cut)
        watchdog.daemon = True
        watchdog.start()
        try:
            with opener.open(request, timeout=wait) as response:
                raw = response.read(MAX_DOCUMENT_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise FetchError(f"{url} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            if watched.was_cut:
                raise FetchError(f"{url} took longer than {wait:.2f} s to answer") from None
            # HTTPException: a reply that is not HTTP, a cut-off chunked body, a huge header.
            raise FetchError(f"{url} is unreachable or not speaking HTTP: {exc!r}") from None
        finally:
            watchdog.cancel()
        if watched.was_cut:  # cut right after the last read: the body may be incomplete
            raise FetchError(f"{url} took longer than {wait:.2f} s to answer")
        if len(raw) > MAX_DOCUMENT_BYTES:
            raise FetchError(f"{url} answered more than {MAX_DOCUMENT_BYTES} bytes")
        try:
            document = json.loads(raw)
        except ValueError:
            raise FetchError(f"{url} did not answer JSON") from None
        if not isinstance(document, dict):
            raise FetchError(f"{url} did not answer a JSON object")
        return document

    return fetch


def _allowed_fetch_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.scheme == "https" and parts.hostname:
        return True
    return parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS


def _jwks_uri_allowed(jwks_uri: str, issuer_url: str) -> bool:
    """https anywhere; plain http on loopback only for a loopback issuer (the devstack), so a
    real issuer's discovery document cannot point the broker at its own host."""
    if not _allowed_fetch_url(jwks_uri):
        return False
    if urlsplit(jwks_uri).scheme == "https":
        return True
    return urlsplit(issuer_url).hostname in LOOPBACK_HOSTS


# --------------------------------------------------------------------------- key cache


@dataclass(frozen=True)
class _Key:
    jwk: jwt.PyJWK
    declared_alg: str | None  # the JWK's own "alg", when it names one
    curve: str | None  # an EC key's curve (JWK name), read from the key; None if not ours
    weakness: str | None = None  # why no token signed with it is accepted; None if sound


@dataclass
class _KeySet:
    keys: dict[str, _Key]  # kid → key ("" for keys without a kid)
    fetched_at: float


@dataclass
class _IssuerState:
    keyset: _KeySet | None = None
    last_forced_refresh: float = float("-inf")
    retry_not_before: float = float("-inf")
    lock: threading.Lock = field(default_factory=threading.Lock)


class IssuerKeys:
    """JWKS cache for every trusted issuer (in memory, per Lambda instance)."""

    def __init__(
        self,
        fetch_json: FetchJson,
        *,
        ttl: float,
        min_refresh_interval: float,
        stale_if_error: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch_json
        self._ttl = ttl
        self._min_refresh = min_refresh_interval
        self._stale = stale_if_error
        self._clock = clock
        self._states: dict[str, _IssuerState] = {}
        self._states_lock = threading.Lock()

    def key(self, issuer: Issuer, kid: str | None, algorithm: str) -> jwt.PyJWK:
        state = self._state(issuer.url)
        with state.lock:
            now = self._clock()
            keyset = state.keyset
            refreshed = False
            if keyset is None or now - keyset.fetched_at >= self._ttl:
                keyset = self._refresh(issuer, state, now)
                refreshed = keyset.fetched_at == now
            key = _select(keyset, kid, algorithm)
            if (
                key is None
                and not refreshed
                and now - state.last_forced_refresh >= self._min_refresh
                and now >= state.retry_not_before  # a failing issuer is not asked twice
            ):
                # An unknown kid may mean the issuer rotated its keys: look once, then not
                # again for a while, so unknown kids cannot make us hammer the issuer.
                state.last_forced_refresh = now
                keyset = self._refresh(issuer, state, now, force=True)
                key = _select(keyset, kid, algorithm)
        if key is None:
            if kid is not None and kid in keyset.keys:
                raise InvalidToken(
                    f"the ID token's algorithm {algorithm} does not fit its signing key "
                    f"(kid {kid!r}) of {issuer.name}: the key is of another type or curve, or is "
                    "declared for another algorithm"
                )
            raise InvalidToken(
                f"the ID token's signing key (kid {kid!r}) is not among {issuer.name}'s keys"
            )
        if key.weakness is not None:
            raise InvalidToken(
                f"the ID token's signing key (kid {kid!r}) of {issuer.name} is refused: "
                f"{key.weakness}"
            )
        return key.jwk

    def prefetch(self, issuer: Issuer) -> bool:
        """Fetch ``issuer``'s keys ahead of any request (the cold start's init,
        :mod:`broker.prefetch`): the download and checks a request makes, but a failure (raised:
        FetchError and the like) is not remembered, with no back-off, so the first request
        fetches as though nothing had been tried.  The download holds no lock, so a request never
        waits on a slow prefetch; keys a request fetched since it started are kept, never
        replaced by what it read earlier (a key the issuer removed meanwhile stays gone).
        False when fresh keys were cached already (nothing fetched)."""
        state = self._state(issuer.url)
        started = self._clock()
        cached = state.keyset
        if cached is not None and started - cached.fetched_at < self._ttl:
            return False
        keys = self._download(issuer)
        with state.lock:
            if state.keyset is None or state.keyset.fetched_at < started:
                state.keyset = _KeySet(keys=keys, fetched_at=started)
        return True

    def _state(self, url: str) -> _IssuerState:
        with self._states_lock:
            return self._states.setdefault(url, _IssuerState())

    def _refresh(
        self, issuer: Issuer, state: _IssuerState, now: float, force: bool = False
    ) -> _KeySet:
        stale = state.keyset
        usable_stale = stale is not None and now - stale.fetched_at < self._ttl + self._stale
        if now < state.retry_not_before and not force:
            if stale is not None and usable_stale:
                return stale
            raise IssuerUnavailable(
                f"the keys of issuer {issuer.name!r} are unavailable; try again shortly",
                retry_after=int(FAILURE_BACKOFF_SECONDS),
            )
        try:
            state.keyset = _KeySet(keys=self._download(issuer), fetched_at=now)
            return state.keyset
        except (FetchError, ValueError, TypeError, KeyError) as exc:
            if not isinstance(exc, OutOfTime):  # a request out of time says nothing of the issuer
                state.retry_not_before = now + FAILURE_BACKOFF_SECONDS
            if stale is not None and usable_stale:
                logger.warning(
                    "serving stale issuer keys",
                    extra={"issuer": issuer.name, "reason": str(exc)},
                )
                return stale
            logger.error(
                "issuer keys unavailable", extra={"issuer": issuer.name, "reason": str(exc)}
            )
            raise IssuerUnavailable(
                f"the keys of issuer {issuer.name!r} could not be fetched; try again shortly",
                retry_after=int(FAILURE_BACKOFF_SECONDS),
            ) from None

    def _download(self, issuer: Issuer) -> dict[str, _Key]:
        discovery_url = issuer.url.rstrip("/") + "/.well-known/openid-configuration"
        discovery = self._fetch(discovery_url)
        if discovery.get("issuer") != issuer.url:
            raise FetchError(f"{discovery_url} names another issuer")
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not _jwks_uri_allowed(jwks_uri, issuer.url):
            raise FetchError(f"{discovery_url} has no usable https jwks_uri")
        raw_keys = self._fetch(jwks_uri).get("keys")
        if not isinstance(raw_keys, list):
            raise FetchError(f"{jwks_uri} is not a JWK set")
        keys: dict[str, _Key] = {}
        for raw in raw_keys:
            if not isinstance(raw, dict) or raw.get("use", "sig") != "sig":
                continue
            alg = raw.get("alg")
            if alg is not None and (not isinstance(alg, str) or alg not in ALGORITHMS):
                continue
            try:
                jwk = jwt.PyJWK(raw)
            except Exception:  # noqa: BLE001, S112 - an unusable key (HMAC, unknown type, garbage)
                continue  # is skipped, not fatal: the issuer's other keys still serve
            kid = raw.get("kid", "")
            kid = kid if isinstance(kid, str) else ""
            weakness = _weakness(jwk.key)
            if weakness is not None:
                # Kept, so that a token signed with it is told why it is refused (401, not 503).
                logger.warning(
                    "issuer key refused",
                    extra={"issuer": issuer.name, "kid": kid[:100], "reason": weakness},
                )
            keys[kid] = _Key(jwk, alg, _curve(jwk.key), weakness)
        if not keys:
            raise FetchError(f"{jwks_uri} holds no usable signing key")
        return keys


def _curve(key: object) -> str | None:
    """The JWK name of an EC key's curve, from the key itself; None for any other key."""
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return EC_CURVES.get(key.curve.name)
    return None


def _weakness(key: object) -> str | None:
    """Why no token signed with this published key may be accepted, or None.  Says nothing
    of the key's material."""
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        return "its JWK gives away the private key, so anyone can sign with it"
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        return f"it is an RSA key of {key.key_size} bits; at least {MIN_RSA_BITS} are required"
    return None


def _select(keyset: _KeySet, kid: str | None, algorithm: str) -> _Key | None:
    if kid is None:
        candidates = [k for k in keyset.keys.values() if _fits(k, algorithm)]
        return candidates[0] if len(candidates) == 1 else None
    key = keyset.keys.get(kid)
    return key if key is not None and _fits(key, algorithm) else None


def _fits(key: _Key, algorithm: str) -> bool:
    """The header's algorithm must suit the key's type and curve, and its declared alg."""
    key_type, curve = ALGORITHMS[algorithm]
    if key.jwk.key_type != key_type or (curve is not None and key.curve != curve):
        return False
    return key.declared_alg is None or key.declared_alg == algorithm


# --------------------------------------------------------------------------- verification


class Verifier:
    def __init__(self, keys: IssuerKeys, *, leeway: int, max_token_bytes: int) -> None:
        self._keys = keys
        self._leeway = leeway
        self._max_bytes = max_token_bytes

    @property
    def keys(self) -> IssuerKeys:
        """The issuer-key cache it verifies with (:mod:`broker.prefetch` fills it at init)."""
        return self._keys

    def verify(self, token: str, rules: RuleSet) -> Identity:
        if len(token) > self._max_bytes:
            raise InvalidToken(f"the ID token is longer than {self._max_bytes} bytes")
        if not token.isascii() or token.count(".") != 2:
            raise InvalidToken("the bearer token is not a signed JWT (JWS compact form)")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise InvalidToken("the bearer token is not a well-formed JWT") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
            raise InvalidToken(
                f"the ID token's algorithm {str(algorithm)[:20]!r} is not accepted "
                f"(accepted: {', '.join(ALGORITHMS)})"
            )
        smuggled = sorted(FORBIDDEN_HEADERS & header.keys())
        if smuggled:
            raise InvalidToken(f"the ID token's header may not carry {', '.join(smuggled)}")
        tokenshape.check_type(header)
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("the ID token's kid must be a string")
        claimed_issuer = unverified.get("iss")
        issuer = rules.issuer_for_url(claimed_issuer) if isinstance(claimed_issuer, str) else None
        if issuer is None:
            raise InvalidToken("the ID token's issuer is not trusted by this broker")
        tokenshape.check_dates(unverified)  # before PyJWT, which would int() a string or a bool
        key = self._keys.key(issuer, kid, algorithm)
        claims = self._decode(token, key, algorithm, issuer)
        tokenshape.check_authorized_party(claims, issuer)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("the ID token's sub claim must be a non-empty string")
        return Identity(
            issuer=issuer,
            subject=subject,
            claims=claims,
            token_sha256=token_digest(token),
        )

    def _decode(self, token: str, key: jwt.PyJWK, algorithm: str, issuer: Issuer) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key=key.key,
                algorithms=[algorithm],
                audience=issuer.audience,
                issuer=issuer.url,
                leeway=self._leeway,
                options={
                    "verify_signature": True,
                    "verify_exp": True,
                    "verify_nbf": True,
                    "verify_iat": True,
                    "verify_aud": True,
                    "verify_iss": True,
                    "strict_aud": False,
                    "require": REQUIRED_CLAIMS,
                    # Short keys are refused when the JWKS is loaded; this is the backstop, and
                    # it makes PyJWT raise rather than warn (a warning would reach the logs).
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the ID token has expired; get a fresh one") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("the ID token is not valid yet (nbf or iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken(
                f"the ID token's audience must be {issuer.audience!r} for issuer {issuer.name!r}"
            ) from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("the ID token's issuer does not match its keys") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"the ID token lacks the required {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("the ID token's signature does not verify") from None
        except jwt.PyJWTError:
            raise InvalidToken("the ID token could not be verified") from None
