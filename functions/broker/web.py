"""HTTP-edge helpers: the bearer token and the JSON body of a request, checked before use."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping

from .problems import (
    InvalidRequest,
    InvalidToken,
    MissingToken,
    PayloadTooLarge,
    UnsupportedMediaType,
)


def bearer_token(headers: Mapping[str, str], max_bytes: int) -> str:
    """The token of ``Authorization: Bearer <token>``; size-checked before anything parses it."""
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
    if value is None or not value.strip():
        raise MissingToken("send the OIDC ID token as 'Authorization: Bearer <ID token>'")
    if len(value) > max_bytes + 16:
        raise InvalidToken(f"the ID token is longer than {max_bytes} bytes")
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("the Authorization header must use the Bearer scheme")
    return token.strip()


def json_body(
    body: str | None,
    *,
    is_base64: bool,
    content_type: str | None,
    max_bytes: int,
) -> object:
    """Decode a request body that must be JSON; an absent body means ``{}``."""
    if body is None or body == "":
        return {}
    if len(body) > max_bytes * 4 // 3 + 4:  # cheap bound before decoding anything
        raise PayloadTooLarge(f"the request body may be at most {max_bytes} bytes")
    raw: bytes
    if is_base64:
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("the request body is not valid base64") from None
    else:
        try:
            raw = body.encode("utf-8")
        except UnicodeError:  # a lone surrogate: no UTF-8 text at all
            raise InvalidRequest("the request body is not valid UTF-8 JSON") from None
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"the request body may be at most {max_bytes} bytes")
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType(
            "send the request body as JSON with 'Content-Type: application/json'"
        )
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_not_json)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidRequest("the request body is not valid UTF-8 JSON") from None


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")  # NaN and Infinity are Python's, not JSON's
