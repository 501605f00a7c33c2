"""The Lambda: routes and exception handlers over :mod:`broker.service`, nothing else."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import yaml
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from . import deadline, prefetch, service
from .problems import BrokerError, InvalidToken, MethodNotAllowed, NotFound, problem_response
from .tracing import traced
from .web import bearer_token, json_body

logger = Logger(service="cabroker")
app = APIGatewayHttpResolver(debug=False)

ROUTES = {
    "/v1/token": ["POST"],
    "/v1/grants": ["GET"],
    "/v1/config": ["GET"],
    "/v1/openapi.json": ["GET"],
}
OPENAPI = Path(__file__).with_name("openapi.yaml")


def _json(body: dict[str, Any], cache: str = "no-store") -> Response[str]:
    return Response(
        status_code=200,
        content_type="application/json",
        body=json.dumps(body),
        headers={"Cache-Control": cache},
    )


def _caller() -> service.Caller:
    broker = service.current()
    headers = app.current_event.headers or {}
    try:
        token = bearer_token(headers, broker.settings.max_id_token_bytes)
    except InvalidToken as refused:
        broker.unauthenticated(refused)  # the denial's audit line, as for a bad ID token
        raise
    return broker.authenticate(token)


@app.post("/v1/token")
def token() -> Response[str]:
    broker = service.current()
    caller = _caller()
    event = app.current_event
    try:
        body = json_body(
            event.body,
            is_base64=bool(event.is_base64_encoded),
            content_type=event.headers.get("content-type"),
            max_bytes=broker.settings.max_body_bytes,
        )
    except BrokerError as refused:
        broker.refuse(caller, refused)  # the denial's audit line, as for a bad field
        raise
    return _json(broker.token(caller, body))


@app.get("/v1/grants")
def grants() -> Response[str]:
    return _json(service.current().grants(_caller()))


@app.get("/v1/config")
def config() -> Response[str]:
    return _json(service.current().config(), cache="max-age=60")


@functools.cache
def _openapi() -> str:
    """The API's OpenAPI 3.1 description (openapi.yaml beside this module), as JSON."""
    return json.dumps(yaml.safe_load(OPENAPI.read_text(encoding="utf-8")))


@app.get("/v1/openapi.json")
def openapi() -> Response[str]:
    return Response(
        status_code=200,
        content_type="application/json",
        body=_openapi(),
        headers={"Cache-Control": "max-age=3600"},
    )


@app.not_found
def not_found(_: NotFoundError) -> Response[str]:
    path = app.current_event.path
    allowed = ROUTES.get(path)
    if allowed:
        method = app.current_event.http_method
        error: BrokerError = MethodNotAllowed(f"{path} accepts {', '.join(allowed)}", allowed)
        logger.info("method not allowed", extra={"path": path, "method": method})
    else:
        error = NotFound(
            f"no route {path}; the API is POST /v1/token, GET /v1/grants, GET /v1/config "
            "(described at GET /v1/openapi.json)"
        )
    return problem_response(error, instance=path, request_id=request_id())


def request_id() -> str | None:
    """This invocation's id (Lambda's ``aws_request_id``): every log line of the invocation
    carries it as ``function_request_id``, and every problem body as ``request_id``."""
    context = getattr(app, "lambda_context", None)
    value = getattr(context, "aws_request_id", None)
    return value if isinstance(value, str) and value else None


def broker_error(error: BrokerError) -> Response[str]:
    return problem_response(error, instance=app.current_event.path, request_id=request_id())


def unexpected(error: Exception) -> Response[str]:
    # A bug, never bad input: log it with its traceback, tell the caller nothing of it.
    logger.exception("unhandled error")
    return problem_response(
        BrokerError("the broker failed unexpectedly; try again, and report it if it persists"),
        instance=app.current_event.path,
        request_id=request_id(),
    )


# Registered by call rather than decorator: the decorator is untyped and would untype them.
app.exception_handler(BrokerError)(broker_error)
app.exception_handler(Exception)(unexpected)


# In Lambda, validate settings and rules during init, where a cold start has full CPU, and
# fetch the rules' issuers' keys (bounded; never failing init: broker.prefetch). When the
# settings or rules are unusable, that is logged once, and there is nothing to fetch.
if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") and service.prepare():
    prefetch.at_init()


def time_left(context: object) -> float | None:
    """The seconds this invocation may work: Lambda's remaining time less the margin for
    answering (deadline.MARGIN_SECONDS); None for a context that does not say (a fake)."""
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining_ms):
        return None
    return float(remaining_ms()) / 1000 - deadline.MARGIN_SECONDS


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # Answer before Lambda stops the function: every wait on a dependency works to this.
    with deadline.scope(time_left(context)):
        return app.resolve(event, context)
