"""The gateway: the broker's HTTP API on 127.0.0.1, as API Gateway (HTTP API) runs it.

Each request becomes an HTTP API payload-v2 event for the unchanged Lambda handler named by
``template.yaml`` (``broker.app.handler``), which runs in worker processes standing in for warm
Lambda instances: one request at a time each, its own module state (caches), the environment
the template gives the function plus the endpoints of the AWS stand-in.  The API's throttling
(``ThrottlingRateLimit`` / ``ThrottlingBurstLimit``, and each route's ``RouteSettings``) is a token
bucket in front, answering
``429 {"message":"Too Many Requests"}`` as API Gateway does; a function that fails or runs out
of time gives ``500 {"message":"Internal Server Error"}``, also as API Gateway does.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import json
import logging
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

log = logging.getLogger("devstack.gateway")
TEXT_TYPES = ("application/json", "application/problem+json", "text/", "application/x-www-form")


class TokenBucket:
    """API Gateway's throttling: ``rate`` requests per second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False


@dataclass
class Context:
    """The Lambda context object the handler receives."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str
    deadline: float

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


AUDIT_FIELDS = ("decision", "issuer", "subject")


class _Audit(logging.Handler):
    """In a worker: the decision and caller of the invocation's audit log line (the broker
    logs ``decision``, ``issuer`` and ``subject`` as fields of the record)."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "decision"):
            self.fields = {k: str(getattr(record, k)) for k in AUDIT_FIELDS if hasattr(record, k)}


def _worker(  # pragma: no cover - runs in the worker process
    connection: Connection,
    environment: dict[str, str],
    code_dir: str,
    handler: str,
    log_path: str | None,
) -> None:
    """A warm Lambda instance: import the handler once, then serve events one at a time.

    Ctrl-C at the terminal reaches the whole process group: an instance ignores it and is
    stopped by its parent (the connection closes, then SIGTERM)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if log_path:
        with open(log_path, "ab", buffering=0) as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
    os.environ.clear()
    os.environ.update(environment)
    sys.path.insert(0, code_dir)
    module_name, _, function_name = handler.rpartition(".")
    function = getattr(importlib.import_module(module_name), function_name)
    audit = _Audit()
    logging.getLogger().addHandler(audit)
    connection.send(("ready", None))
    while True:
        try:
            event, context = connection.recv()
        except EOFError:
            return
        audit.fields = {}
        try:
            context.deadline = time.monotonic() + context.deadline
            connection.send(("ok", function(event, context), audit.fields))
        except Exception as error:  # noqa: BLE001 - reported as the function's error
            connection.send(("error", type(error).__name__, audit.fields))


class Worker:
    def __init__(self, spec: FunctionSpec) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.connection, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_worker,
            args=(child, spec.environment, spec.code_dir, spec.handler, spec.log_path),
            daemon=True,
        )
        # SIGINT stays blocked in the new process until its _worker ignores it: a Ctrl-C
        # while it starts gives no KeyboardInterrupt (the mask is this thread's, inherited).
        unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            self.process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
        child.close()

    def wait_ready(self, timeout: float) -> None:
        if not self.connection.poll(timeout):
            raise RuntimeError("the function did not start (see the devstack's broker log)")
        status, _ = self.connection.recv()
        if status != "ready":
            raise RuntimeError("the function failed to start")

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.close()
        self.process.terminate()
        self.process.join(timeout=5)


@dataclass
class FunctionSpec:
    name: str
    handler: str
    code_dir: str
    environment: dict[str, str]
    timeout: int
    memory: int
    region: str
    account: str
    log_path: str | None = None


@dataclass
class Invocation:
    result: dict[str, Any] | None  # None: the function failed or timed out
    audit: dict[str, str]  # the invocation's decision, issuer and subject, as it logged them


class Pool:
    """Warm instances of the function; a request waits for a free one (``size`` at most)."""

    def __init__(self, spec: FunctionSpec, size: int) -> None:
        self.spec = spec
        self._idle: queue.Queue[Worker] = queue.Queue()
        self._workers = [Worker(spec) for _ in range(size)]
        for worker in self._workers:
            worker.wait_ready(timeout=60)
            self._idle.put(worker)

    def invoke(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The handler's answer, or None when it failed or timed out (the worker is replaced)."""
        return self.call(event).result

    def call(self, event: dict[str, Any]) -> Invocation:
        """The handler's answer (None: failed or timed out) and its audit fields."""
        worker = self._idle.get()
        spec = self.spec
        context = Context(
            function_name=spec.name,
            memory_limit_in_mb=spec.memory,
            invoked_function_arn=f"arn:aws:lambda:{spec.region}:{spec.account}:function:{spec.name}",
            aws_request_id=str(uuid.uuid4()),
            deadline=float(spec.timeout),  # made absolute in the worker
        )
        try:
            worker.connection.send((event, context))
            if worker.connection.poll(spec.timeout):
                status, result, audit = worker.connection.recv()
                self._idle.put(worker)
                if status == "ok" and isinstance(result, dict):
                    return Invocation(result, audit)
                log.error("the function failed: %s", result)
                return Invocation(None, audit)
            log.error("the function timed out after %s s; replacing the instance", spec.timeout)
        except (OSError, EOFError):
            log.error("the function's instance died; replacing it")
        worker.stop()
        replacement = Worker(spec)
        replacement.wait_ready(timeout=60)
        self._workers = [w for w in self._workers if w is not worker] + [replacement]
        self._idle.put(replacement)
        return Invocation(None, {})

    def stop(self) -> None:
        for worker in self._workers:
            worker.stop()


def console_line(
    method: str, path: str, status: int, audit: Mapping[str, str], milliseconds: float
) -> str:
    """One short line per request: ``POST /v1/token 200 allow corp/alice 12 ms`` (``-`` for a
    decision or caller the function did not log).  Never a token: only the audit fields."""
    who = "/".join(audit[k] for k in ("issuer", "subject") if audit.get(k)) or "-"
    return f"{method} {path} {status} {audit.get('decision') or '-'} {who} {milliseconds:.0f} ms"


def stop_resource_tracker() -> None:
    """Stop (and reap) multiprocessing's resource tracker, which starting a spawned process
    starts.  Once this process is gone it would exit anyway, but left to be reaped by whoever
    adopts it.  Call it when no worker is left: it waits for all of them (they share its pipe).
    """
    from multiprocessing import resource_tracker

    stop = getattr(resource_tracker._resource_tracker, "_stop", None)
    if callable(stop):
        stop()


def http_api_event(
    request: Request, routes: frozenset[str], body: bytes, account: str
) -> dict[str, Any]:
    """The payload-v2 event API Gateway builds for ``request``."""
    route_key = f"{request.method} {request.path}"
    if route_key not in routes:
        route_key = "$default"
    headers: dict[str, str] = {}
    for key, value in request.headers.items():
        name = key.lower()
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    content_type = headers.get("content-type", "")
    is_text = content_type.startswith(TEXT_TYPES) or not body
    try:
        text = body.decode() if is_text else None
    except UnicodeDecodeError:
        text = None
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": request.path,
        "rawQueryString": request.query_string.decode(),
        "headers": headers,
        "requestContext": {
            "accountId": account,
            "apiId": "devstack",
            "domainName": request.host,
            "http": {
                "method": request.method,
                "path": request.path,
                "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
                "sourceIp": request.remote_addr or "",
                "userAgent": request.user_agent.string,
            },
            "requestId": uuid.uuid4().hex[:16],
            "routeKey": route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": text is None,
    }
    if request.args:
        event["queryStringParameters"] = {
            k: ",".join(request.args.getlist(k)) for k in request.args
        }
    if request.cookies:
        event["cookies"] = [f"{k}={v}" for k, v in request.cookies.items()]
    if body:
        event["body"] = text if text is not None else base64.b64encode(body).decode()
    return event


def http_response(result: dict[str, Any]) -> Response:
    """The HTTP response API Gateway makes of a payload-v2 result."""
    if "statusCode" not in result:
        return Response(json.dumps(result), content_type="application/json")
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    response = Response(raw, status=int(result["statusCode"]))
    response.headers.clear()
    for key, value in (result.get("headers") or {}).items():
        response.headers[key] = str(value)
    for cookie in result.get("cookies") or []:
        response.headers.add("Set-Cookie", cookie)
    return response


def _message(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        json.dumps({"message": message}),
        status=status,
        content_type="application/json",
        headers=dict(headers or {}),
    )


class Gateway:
    """The HTTP server: throttle, build the event, invoke the function, answer."""

    def __init__(
        self,
        pool: Pool,
        bucket: TokenBucket | None,
        routes: frozenset[str],
        host: str = "127.0.0.1",
        port: int = 0,
        max_body: int = 10 * 1024 * 1024,
        access_log: Path | None = None,
    ) -> None:
        self.pool = pool
        self.bucket = bucket
        self.route_buckets: dict[str, TokenBucket] = {}
        self.routes = routes
        self.max_body = max_body
        self.requests = 0
        self.access_log = access_log  # API Gateway's JSON access log lines go here
        self._access_lock = threading.Lock()
        self.throttled = 0
        self._server: BaseWSGIServer = make_server(host, port, self, threaded=True)
        self.url = f"http://{host}:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="gateway", daemon=True
        )

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        started = time.monotonic()
        response, audit = self._respond(request)
        took = (time.monotonic() - started) * 1000
        log.info(
            "%s", console_line(request.method, request.path, response.status_code, audit, took)
        )
        if self.access_log is not None:
            line = json.dumps(
                {
                    "ip": request.remote_addr,
                    "httpMethod": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "responseLatency": round(took, 1),
                    "userAgent": request.user_agent.string,
                }
            )
            with self._access_lock, self.access_log.open("a", encoding="utf-8") as sink:
                sink.write(line + "\n")
        return response(environ, start_response)

    def respond(self, request: Request) -> Response:
        return self._respond(request)[0]

    def _respond(self, request: Request) -> tuple[Response, dict[str, str]]:
        self.requests += 1
        bucket = self.route_buckets.get(f"{request.method} {request.path}", self.bucket)
        if bucket is not None and not bucket.take():
            self.throttled += 1
            return _message(429, "Too Many Requests"), {}
        length = request.content_length or 0
        if length > self.max_body:
            return _message(413, "Request Entity Too Large"), {}
        body = request.get_data(cache=False)
        event = http_api_event(request, self.routes, body, self.pool.spec.account)
        invocation = self.pool.call(event)
        if invocation.result is None:
            return _message(500, "Internal Server Error"), invocation.audit
        return http_response(invocation.result), invocation.audit

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for a serve_forever that never ran
            self._server.shutdown()
        self._server.server_close()
