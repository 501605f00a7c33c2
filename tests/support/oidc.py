"""A local OIDC issuer for tests: discovery and JWKS over real HTTP on 127.0.0.1, real keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
KEY_CACHE: dict[str, SigningKey] = {}


class Secret(str):
    """A token whose repr is redacted, so pytest never prints it in a failure report."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<secret: {len(self)} characters>"


def private_key(name: str, kind: str = "RSA") -> SigningKey:
    """Keys are made once per test session (RSA generation is slow), by name."""
    if name not in KEY_CACHE:
        if kind == "RSA":
            KEY_CACHE[name] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            KEY_CACHE[name] = ec.generate_private_key(ec.SECP256R1())
    return KEY_CACHE[name]


def public_jwk(key: SigningKey, kid: str, alg: str | None = None) -> dict[str, Any]:
    algorithm = jwt.get_algorithm_by_name(
        "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    )
    jwk: dict[str, Any] = json.loads(algorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "use": "sig"})
    if alg:
        jwk["alg"] = alg
    return jwk


@dataclass
class LocalIssuer:
    """One issuer served by :class:`IssuerServer`: its keys, and switches for faults."""

    name: str
    url: str
    audience: str
    keys: dict[str, SigningKey] = field(default_factory=dict)  # kid → private key
    down: bool = False
    garbage: bool = False
    jwks_requests: int = 0

    def publish(self, kid: str, key: SigningKey) -> None:
        self.keys[kid] = key

    def jwks(self) -> dict[str, Any]:
        return {"keys": [public_jwk(key, kid) for kid, key in self.keys.items()]}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "aud": self.audience,
            "sub": "repo:acme/app:ref:refs/heads/main",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
        }
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
    ) -> str:
        """A signed ID token with default claims; ``name=None`` drops a claim."""
        kid = kid or next(iter(self.keys))
        signing_key = key or self.keys[kid]
        if algorithm is None:
            algorithm = "RS256" if isinstance(signing_key, rsa.RSAPrivateKey) else "ES256"
        all_headers = {"kid": kid, **(headers or {})}
        return Secret(
            jwt.encode(self.claims(**claims), signing_key, algorithm=algorithm, headers=all_headers)
        )


class IssuerServer:
    def __init__(self) -> None:
        self.issuers: dict[str, LocalIssuer] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name, _, rest = self.path.lstrip("/").partition("/")
                issuer = server.issuers.get(name)
                if issuer is None:
                    return self._send(404, {"error": "no such issuer"})
                if issuer.down:
                    return self._send(503, {"error": "down"})
                if issuer.garbage:
                    return self._raw(200, b"<html>not json</html>")
                if rest == ".well-known/openid-configuration":
                    return self._send(200, {"issuer": issuer.url, "jwks_uri": issuer.url + "/jwks"})
                if rest == "jwks":
                    issuer.jwks_requests += 1
                    return self._send(200, issuer.jwks())
                return self._send(404, {"error": "not found"})

            def _send(self, status: int, body: Mapping[str, Any]) -> None:
                self._raw(status, json.dumps(body).encode())

            def _raw(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def add(self, name: str, audience: str) -> LocalIssuer:
        issuer = LocalIssuer(name=name, url=f"{self.base_url}/{name}", audience=audience)
        self.issuers[name] = issuer
        return issuer

    @contextmanager
    def running(self) -> Iterator[IssuerServer]:
        self._thread.start()
        try:
            yield self
        finally:
            self._httpd.shutdown()
            self._httpd.server_close()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: Mapping[str, Any], claims: object, signature: bytes = b"") -> str:
    """A JWT assembled by hand, for tokens no honest library would sign."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return Secret(f"{signing_input}.{b64url(signature)}")


def hs256_with_public_key(issuer: LocalIssuer, kid: str, claims: Mapping[str, Any]) -> str:
    """The classic key-confusion attack: HMAC keyed with the issuer's *public* key (PEM)."""
    public_pem = (
        issuer.keys[kid]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    unsigned = forge(header, claims).rstrip(".")
    signature = hmac.new(public_pem, unsigned.encode(), hashlib.sha256).digest()
    return Secret(f"{unsigned}.{b64url(signature)}")
