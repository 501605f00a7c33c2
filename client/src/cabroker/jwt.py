"""Reading an ID token's claims *without* verifying it: only to say which issuer it is from and
whether it has expired, before the broker (which verifies) is asked."""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, or ``{}`` when ``token`` is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return {}
    return payload if isinstance(payload, dict) else {}


def seconds_left(token: str, now: float | None = None) -> float | None:
    """Seconds until the token's ``exp`` (negative when past), or None without one."""
    exp = unverified_claims(token).get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return None
    return float(exp) - (time.time() if now is None else now)
