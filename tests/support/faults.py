"""Misbehaving dependencies for fault tests: an OIDC issuer whose JWKS endpoint can be slow,
down, refused or answer garbage, and an AWS stand-in (STS + CodeArtifact control plane, real
wire protocols) that can throttle, stall or drop the connection on any operation.

Both are small threaded HTTP servers on 127.0.0.1 with an ephemeral port.  Stalls wait on an
event that :meth:`stop` sets, so no server thread outlives its test by more than a moment.
Nothing here logs a request (no access log), and every token it hands out is a
:class:`~tests.support.oidc.Secret` (redacted ``repr``).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from tests.support.events import Context
from tests.support.oidc import LocalIssuer, Secret, SigningKey, private_key, public_jwk

JwksFault = Literal[
    "slow",  # answers correctly, but only after ``delay`` seconds
    "trickle",  # sends the headers, then one byte of the body every 50 ms for ``delay`` seconds
    "trickle-headers",  # sends the status line, then one byte of headers every 50 ms
    "http-503",  # 503 with a JSON body
    "not-json",  # 200, an HTML body
    "no-keys",  # 200, a JSON object without "keys"
    "keys-not-a-list",  # 200, {"keys": {...}}
    "keys-of-wrong-type",  # 200, a JWK set of an HMAC key, an encryption key and non-objects
    "not-http",  # a response that is not HTTP at all
    "cut-chunked",  # a chunked response cut off in the middle of a chunk
]
AwsOperation = Literal[
    "AssumeRole", "GetRepositoryEndpoint", "GetAuthorizationToken", "GetParameter"
]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


class _QuietHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # no access log

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


class _Switchable:
    """A server that runs in a daemon thread until closed; closing also ends every stall."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._released = threading.Event()
        self._server = _Server(("127.0.0.1", 0), handler)
        self._thread: threading.Thread | None = None
        self._closed = False
        self.base_url = f"http://127.0.0.1:{self._server.server_port}"

    def _start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="faults", daemon=True
        )
        self._thread.start()

    def _close(self) -> None:
        self._released.set()
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._server.shutdown()
        self._server.server_close()


# --------------------------------------------------------------------------- OIDC issuer


class FaultyIssuer(_Switchable):
    """One OIDC issuer at ``url``; discovery always answers, the JWKS misbehaves on demand.

    ``issuer`` is a devstack :class:`~devstack.idp.Issuer` (same URL, audience and keys) used
    to mint ID tokens.  ``fault`` picks what the JWKS endpoint does; :meth:`refuse` closes the
    port so that every later connection is refused.
    """

    def __init__(self, name: str = "flaky", audience: str = "codeartifact-broker") -> None:
        super().__init__(self._handler())
        self.fault: JwksFault | None = None
        self.delay = 2.0
        self.jwks_requests = 0
        self.discovery_requests = 0
        self.url = f"{self.base_url}/{name}"
        self.issuer = LocalIssuer(name=name, url=self.url, audience=audience)
        self.issuer.keys = {f"{name}-1": private_key(f"{name}-1")}

    @contextmanager
    def running(self) -> Iterator[FaultyIssuer]:
        self._start()
        try:
            yield self
        finally:
            self._close()

    def refuse(self) -> None:
        """Stop listening: from now on every connection to the issuer is refused."""
        self._close()

    def publish(self, kid: str, key: SigningKey) -> None:
        self.issuer.keys = {**self.issuer.keys, kid: key}

    def mint(self, kid: str | None = None, **claims: Any) -> Secret:
        return self.issuer.mint(kid, **claims)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(_QuietHandler):
            def do_GET(self) -> None:
                with suppress(OSError):  # the broker gave up and closed: nothing to tell it
                    owner._answer(self)

        return Handler

    def _answer(self, request: _QuietHandler) -> None:
        path = urlsplit(request.path).path
        json_headers = {"Content-Type": "application/json"}
        if path.endswith("/.well-known/openid-configuration"):
            self.discovery_requests += 1
            request._send(200, json.dumps(self.issuer.discovery()).encode(), json_headers)
            return
        if not path.endswith("/jwks"):
            request._send(404, b"{}", json_headers)
            return
        self.jwks_requests += 1
        fault = self.fault
        document = json.dumps(self.issuer.jwks()).encode()
        if fault == "slow":
            self._released.wait(self.delay)
            request._send(200, document, json_headers)
        elif fault == "trickle":
            self._trickle(request, document)
        elif fault == "trickle-headers":
            self._trickle_headers(request)
        elif fault == "http-503":
            request._send(503, b'{"error": "down"}', json_headers)
        elif fault == "not-json":
            request._send(200, b"<html>maintenance</html>", json_headers)
        elif fault == "no-keys":
            request._send(200, json.dumps({"issuer": self.url}).encode(), json_headers)
        elif fault == "keys-not-a-list":
            keys = {"keys": {kid: public_jwk(key, kid) for kid, key in self.issuer.keys.items()}}
            request._send(200, json.dumps(keys).encode(), json_headers)
        elif fault == "keys-of-wrong-type":
            kid, key = next(iter(self.issuer.keys.items()))
            wrong = [
                {"kty": "oct", "k": "c2VjcmV0", "kid": kid, "alg": "HS256"},
                {**public_jwk(key, kid), "use": "enc"},
                "a string",
                7,
            ]
            request._send(200, json.dumps({"keys": wrong}).encode(), json_headers)
        elif fault == "not-http":
            request.wfile.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        elif fault == "cut-chunked":
            request.wfile.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n100\r\n" + document[:20]
            )
        else:
            request._send(200, document, json_headers)

    def _trickle_headers(self, request: _QuietHandler) -> None:
        request.wfile.write(b"HTTP/1.1 200 OK\r\n")
        request.wfile.flush()
        deadline = time.monotonic() + self.delay
        while time.monotonic() < deadline and not self._released.wait(0.05):
            try:
                request.wfile.write(b"X-Slow: " + b"a" * 10 + b"\r\n")  # never ends the headers
                request.wfile.flush()
            except OSError:
                return

    def _trickle(self, request: _QuietHandler, document: bytes) -> None:
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(document)))
        request.end_headers()
        deadline = time.monotonic() + self.delay
        for byte in document:
            if time.monotonic() >= deadline or self._released.wait(0.05):
                return
            request.wfile.write(bytes([byte]))
            request.wfile.flush()


# --------------------------------------------------------------------------- AWS


@dataclass(frozen=True)
class AwsFault:
    """What one AWS operation does instead of answering: an error (``code`` and HTTP
    ``status``, in the service's own wire format), a stall of ``seconds`` before the (correct)
    answer, or a connection dropped without an answer (``reset``).  ``times`` limits the fault
    to the operation's first attempts (None: every attempt)."""

    kind: Literal["error", "stall", "reset"]
    code: str = ""
    status: int = 400
    seconds: float = 0.0
    times: int | None = None


class FakeAws(_Switchable):
    """STS AssumeRole (query protocol, XML), CodeArtifact GetRepositoryEndpoint /
    GetAuthorizationToken (rest-json) and SSM GetParameter (json) on one local endpoint, for the
    broker's *real* boto3 clients (``AWS_ENDPOINT_URL_<SERVICE>``), so that botocore's own
    retries and timeouts are what is exercised.  ``faults`` maps an operation to what it does
    instead of answering; ``attempts`` counts the requests each operation received, retries
    included; ``tokens`` holds every CodeArtifact token made, delivered or not."""

    endpoint_base = "https://acme-111122223333.d.codeartifact.us-east-1.amazonaws.com"

    def __init__(self) -> None:
        super().__init__(self._handler())
        self.url = self.base_url
        self.faults: dict[AwsOperation, AwsFault] = {}
        self.attempts: Counter[str] = Counter()
        self.tokens: list[Secret] = []
        self.parameters: dict[str, str] = {}

    @contextmanager
    def running(self) -> Iterator[FakeAws]:
        self._start()
        try:
            yield self
        finally:
            self._close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(_QuietHandler):
            def do_GET(self) -> None:
                with suppress(OSError):  # the broker gave up and closed: nothing to tell it
                    owner._answer(self, "GET")

            def do_POST(self) -> None:
                with suppress(OSError):
                    owner._answer(self, "POST")

        return Handler

    def _operation(self, request: _QuietHandler, method: str, body: str) -> AwsOperation | None:
        path = urlsplit(request.path).path
        if method == "POST" and request.headers.get("X-Amz-Target") == "AmazonSSM.GetParameter":
            return "GetParameter"
        if method == "POST" and path == "/" and "Action=AssumeRole" in body:
            return "AssumeRole"
        if method == "GET" and path == "/v1/repository/endpoint":
            return "GetRepositoryEndpoint"
        if method == "POST" and path == "/v1/authorization-token":
            return "GetAuthorizationToken"
        return None

    def _answer(self, request: _QuietHandler, method: str) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length).decode() if length else ""
        operation = self._operation(request, method, body)
        if operation is None:
            request._send(404, b"{}", {"Content-Type": "application/json"})
            return
        self.attempts[operation] += 1
        fault = self.faults.get(operation)
        if fault is not None and fault.times is not None and self.attempts[operation] > fault.times:
            fault = None
        if fault is not None and fault.kind == "reset":
            request.close_connection = True  # no response at all
            return
        if fault is not None and fault.kind == "error":
            status, answer, headers = _error(operation, fault)
        else:
            status, answer, headers = 200, self._success(operation, request, body), {}
        if fault is not None and fault.kind == "stall":
            self._released.wait(fault.seconds)  # the answer exists (a token too), but is late
        request._send(status, answer, {"Content-Type": "application/json", **headers})

    def _success(self, operation: AwsOperation, request: _QuietHandler, body: str) -> bytes:
        query = parse_qs(urlsplit(request.path).query)
        if operation == "AssumeRole":
            return _assume_role_answer()
        if operation == "GetParameter":
            name = json.loads(body)["Name"]
            parameter = {"Name": name, "Type": "String", "Value": self.parameters[name]}
            return json.dumps({"Parameter": {**parameter, "Version": 1}}).encode()
        if operation == "GetRepositoryEndpoint":
            endpoint = f"{self.endpoint_base}/pypi/{query['repository'][0]}/"
            return json.dumps({"repositoryEndpoint": endpoint}).encode()
        duration = int(query.get("duration", ["3600"])[0])
        token = Secret("catoken-" + secrets.token_urlsafe(24))
        self.tokens.append(token)
        return json.dumps(
            {"authorizationToken": token, "expiration": time.time() + duration}
        ).encode()


def _error(operation: AwsOperation, fault: AwsFault) -> tuple[int, bytes, dict[str, str]]:
    """An AWS error in the operation's wire protocol."""
    message = f"{fault.code} (injected)"
    if operation == "AssumeRole":
        return fault.status, _sts_error(fault.code), {"Content-Type": "text/xml"}
    if operation == "GetParameter":
        return fault.status, json.dumps({"__type": fault.code, "message": message}).encode(), {}
    return fault.status, json.dumps({"message": message}).encode(), {"x-amzn-ErrorType": fault.code}


def _sts_error(code: str) -> bytes:
    return (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        f"<Error><Type>Sender</Type><Code>{code}</Code><Message>{code} (injected)</Message>"
        "</Error><RequestId>fault</RequestId></ErrorResponse>"
    ).encode()


def _assume_role_answer() -> bytes:
    return (
        '<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        "<AssumeRoleResult><Credentials>"
        "<AccessKeyId>ASIAFAULTFAULTFAULT1</AccessKeyId>"
        f"<SecretAccessKey>{secrets.token_urlsafe(30)}</SecretAccessKey>"
        f"<SessionToken>{secrets.token_urlsafe(60)}</SessionToken>"
        "<Expiration>2099-01-01T00:00:00Z</Expiration>"
        "</Credentials><AssumedRoleUser>"
        "<AssumedRoleId>AROAFAULT:session</AssumedRoleId>"
        "<Arn>arn:aws:sts::123456789012:assumed-role/TokenIssuerRole/session</Arn>"
        "</AssumedRoleUser></AssumeRoleResult>"
        "<ResponseMetadata><RequestId>fault</RequestId></ResponseMetadata>"
        "</AssumeRoleResponse>"
    ).encode()


# --------------------------------------------------------------------------- Lambda


@dataclass
class DeadlineContext(Context):
    """A Lambda context whose remaining time runs down from ``remaining_ms`` in real time."""

    remaining_ms: int = 10_000
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        elapsed_ms = (time.monotonic() - self.started) * 1000
        return max(0, int(self.remaining_ms - elapsed_ms))
