"""OIDC for tests: the devstack's identity provider (:mod:`devstack.idp`) with keys cached per
test session, and hand-made tokens for attacks no honest issuer would sign."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization

from devstack.idp import IdentityProvider, Issuer, Secret, SigningKey, new_key, public_jwk

__all__ = [
    "IssuerServer",
    "LocalIssuer",
    "Secret",
    "SigningKey",
    "b64url",
    "forge",
    "hs256_with_public_key",
    "private_key",
    "public_jwk",
]

LocalIssuer = Issuer
KEY_CACHE: dict[str, SigningKey] = {}


def private_key(name: str, kind: str = "RSA") -> SigningKey:
    """Keys are made once per test session (RSA generation is slow), by name."""
    if name not in KEY_CACHE:
        KEY_CACHE[name] = new_key(name, kind)
    return KEY_CACHE[name]


class IssuerServer(IdentityProvider):
    """The identity provider on an ephemeral port, its keys from :func:`private_key`."""

    def __init__(self, *, device_interval: int = 0, device_expires_in: int = 600) -> None:
        super().__init__(
            key_factory=private_key,
            device_interval=device_interval,
            device_expires_in=device_expires_in,
        )


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: Mapping[str, Any], claims: object, signature: bytes = b"") -> str:
    """A JWT assembled by hand, for tokens no honest library would sign."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return Secret(f"{signing_input}.{b64url(signature)}")


def hs256_with_public_key(issuer: Issuer, kid: str, claims: Mapping[str, Any]) -> str:
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
