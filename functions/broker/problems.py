"""The broker's error family, and its one mapping to RFC 9457 problem details.

Core modules raise these exceptions; only the edge (``app.py``) turns them into HTTP
responses, through :func:`problem_response`.  Every class has one status and one stable
``type`` slug, documented in docs/api.md.  A ``detail`` never contains a token, an ID token or
the rules' secrets: it says what was asked and what to do.  Every body carries the extension
member ``request_id`` (RFC 9457 §3.2) when the invocation has one: the id on the request's audit
line (``function_request_id``), which a caller quotes and an admin looks up
(``cabroker-admin why``).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from aws_lambda_powertools.event_handler import Response

PROBLEM_CONTENT_TYPE = "application/problem+json"
# A stable, non-dereferenceable identifier per problem type (RFC 9457 §3.1.1): docs/api.md.
TYPE_BASE = "urn:cabroker:problem:"


class BrokerError(Exception):
    """Base of every failure the broker reports to a caller."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions

    def headers(self) -> dict[str, str]:
        return {}


class InvalidRequest(BrokerError):
    status = 400
    slug = "invalid-request"
    title = "Invalid request"


class AmbiguousRequest(BrokerError):
    status = 400
    slug = "ambiguous-request"
    title = "More than one grant matches; say which one"


class PolicyTooLarge(BrokerError):
    status = 400
    slug = "policy-too-large"
    title = "The grant does not fit in a session policy"


class InvalidToken(BrokerError):
    """Missing, malformed, unverifiable, expired or untrusted ID token."""

    status = 401
    slug = "invalid-token"
    title = "Invalid or missing ID token"

    def headers(self) -> dict[str, str]:
        # RFC 6750 §3: error codes only, never the reason in a way that helps an attacker more
        # than the detail already does.
        return {"WWW-Authenticate": 'Bearer realm="cabroker", error="invalid_token"'}


class MissingToken(InvalidToken):
    slug = "missing-token"
    title = "Missing bearer token"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="cabroker"'}


class NoMatchingRule(BrokerError):
    status = 403
    slug = "no-matching-rule"
    title = "No rule grants this identity anything"


class GrantExceeded(BrokerError):
    status = 403
    slug = "grant-exceeded"
    title = "The request asks for more than any matching rule grants"


class NotFound(BrokerError):
    status = 404
    slug = "not-found"
    title = "No such route"


class MethodNotAllowed(BrokerError):
    status = 405
    slug = "method-not-allowed"
    title = "Method not allowed"

    def __init__(self, detail: str, allow: list[str]) -> None:
        super().__init__(detail)
        self.allow = allow

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allow)}


class PayloadTooLarge(BrokerError):
    status = 413
    slug = "payload-too-large"
    title = "Request body too large"


class UnsupportedMediaType(BrokerError):
    status = 415
    slug = "unsupported-media-type"
    title = "Request body must be application/json"


class ServiceUnavailable(BrokerError):
    """Something the broker depends on is unavailable; the caller may retry later."""

    status = 503
    slug = "upstream-unavailable"
    title = "A service the broker depends on is unavailable"

    def __init__(self, detail: str, retry_after: int = 5, **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class IssuerUnavailable(ServiceUnavailable):
    slug = "issuer-unavailable"
    title = "The identity provider's keys could not be fetched"


class RulesUnavailable(ServiceUnavailable):
    slug = "rules-unavailable"
    title = "The access rules could not be loaded"


def problem_body(
    error: BrokerError, instance: str | None = None, request_id: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": TYPE_BASE + error.slug,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
    }
    if instance:
        body["instance"] = instance
    body.update(error.extensions)
    if request_id:
        body["request_id"] = request_id
    return body


def problem_response(
    error: BrokerError, instance: str | None = None, request_id: str | None = None
) -> Response[str]:
    return Response(
        status_code=error.status,
        content_type=PROBLEM_CONTENT_TYPE,
        body=json.dumps(problem_body(error, instance, request_id)),
        headers={"Cache-Control": "no-store", **error.headers()},
    )
