"""What an ID token must look like beyond a good signature: the checks PyJWT does not make.

- The ``typ`` header, when present, must say JWT (``JWT`` or ``application/jwt``, compared
  case-insensitively, RFC 7515 §4.1.9): an access token (``at+jwt``, RFC 9068), a logout token
  or any other typed JWT is not an ID token, even when its issuer and audience fit.  A missing
  ``typ`` is fine: many identity providers omit it.
- ``exp``, ``nbf`` and ``iat`` must be JSON numbers (RFC 7519 NumericDate), integer or not:
  PyJWT passes them through ``int()``, which takes a numeric string such as ``"1900000000"``
  and a boolean (``True`` is an ``int`` in Python, ``1``).  They must also lie between the epoch
  and 9999-12-31T23:59:59Z, the last second a ``datetime`` holds, so NaN, the infinities and
  absurd values (``1e300``, a 30-digit integer) never reach any arithmetic or a DynamoDB TTL.
- With several audiences, the token must say whom it was issued to (``azp``, OIDC Core
  §3.1.3.7) and that party must be this broker: exactly the issuer's ``audience`` in the rules.
  Without ``azp`` such a token is refused (OIDC says azp SHOULD then be present): it is as
  valid at every other audience it names, any of which could replay it here.  A token with one
  audience (a string, or a list of one distinct value) is not affected, whatever its ``azp``
  (Google's service-account ID tokens name the account there, not the audience).

Every refusal is an :class:`~broker.problems.InvalidToken`; no detail quotes the token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .problems import InvalidToken
from .rules import Issuer

# The typ values of a plain JWT, lower-cased (the "application/" prefix may be left out).
ID_TOKEN_TYPES = frozenset({"jwt", "application/jwt"})
NUMERIC_DATES = ("exp", "nbf", "iat")
MAX_NUMERIC_DATE = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second a datetime holds


def check_type(header: Mapping[str, Any]) -> None:
    """Refuse a token whose ``typ`` header says it is something other than a plain JWT."""
    if "typ" not in header:
        return
    typ = header["typ"]
    if not isinstance(typ, str) or typ.lower() not in ID_TOKEN_TYPES:
        raise InvalidToken(
            "the bearer token's typ header says it is not an ID token (expected JWT or no typ); "
            "send the OIDC ID token, not an access token"
        )


def check_dates(claims: Mapping[str, Any]) -> None:
    """Refuse ``exp``, ``nbf`` or ``iat`` that is not a finite JSON number in range."""
    for name in NUMERIC_DATES:
        if name not in claims:
            continue  # required-ness is PyJWT's check (exp is required)
        value = claims[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidToken(
                f"the ID token's {name} claim must be a JSON number of seconds since the epoch"
            )
        if not 0 <= value <= MAX_NUMERIC_DATE:  # false for NaN too; no float() of a huge int
            raise InvalidToken(
                f"the ID token's {name} claim is out of range "
                f"(0 to {MAX_NUMERIC_DATE} seconds since the epoch)"
            )


def audiences_of(claims: Mapping[str, Any]) -> set[str]:
    """The audiences ``aud`` names: a string, or the strings of a list (nothing else)."""
    audience = claims.get("aud")
    values = [audience] if isinstance(audience, str) else audience
    return {a for a in values if isinstance(a, str)} if isinstance(values, list) else set()


def check_authorized_party(claims: Mapping[str, Any], issuer: Issuer) -> None:
    """With several audiences, ``azp`` must be present and name this broker (after PyJWT
    verified ``aud``: a string or a list of strings that holds the issuer's audience)."""
    if len(audiences_of(claims)) <= 1:
        return
    if "azp" not in claims:
        raise InvalidToken(
            f"the ID token names several audiences but no azp; ask issuer {issuer.name!r} for "
            f"an ID token whose only audience is {issuer.audience!r}"
        )
    party = claims["azp"]
    if not isinstance(party, str) or party != issuer.audience:
        raise InvalidToken(
            f"the ID token names several audiences and its azp is not this broker "
            f"({issuer.audience!r} for issuer {issuer.name!r})"
        )
