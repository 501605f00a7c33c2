"""devstack.gateway: API Gateway's throttling, its payload-v2 events and responses, and the warm
instances running a handler (the broker end to end is in tests/e2e)."""

from __future__ import annotations

import base64
import http.client
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from devstack import gateway
from devstack.gateway import FunctionSpec, Pool, TokenBucket, http_api_event, http_response
from tests.devstack.conftest import ACCOUNT, REGION

ROUTES = frozenset({"POST /v1/token", "GET /v1/grants", "GET /v1/config"})


# --- throttling --------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(gateway, "time", fake)  # the gateway's clock only
    return fake


def takes(bucket: TokenBucket, count: int) -> list[bool]:
    return [bucket.take() for _ in range(count)]


def test_bucket_allows_a_burst_then_refuses(clock: Clock) -> None:
    bucket = TokenBucket(rate=2, burst=3)
    assert takes(bucket, 4) == [True, True, True, False]
    assert takes(bucket, 2) == [False, False]  # refusals do not eat into the refill


def test_bucket_refills_at_its_rate_up_to_the_burst(clock: Clock) -> None:
    bucket = TokenBucket(rate=2, burst=3)
    takes(bucket, 3)
    clock.now += 0.4  # 0.8 of a token
    assert bucket.take() is False
    clock.now += 0.1  # 0.8 + 0.2 = 1
    assert takes(bucket, 2) == [True, False]
    clock.now += 1.0  # two more
    assert takes(bucket, 3) == [True, True, False]
    clock.now += 3600  # a quiet hour: never more than the burst
    assert takes(bucket, 4) == [True, True, True, False]


def test_bucket_with_a_fractional_rate(clock: Clock) -> None:
    bucket = TokenBucket(rate=0.5, burst=1)
    assert takes(bucket, 2) == [True, False]
    clock.now += 1.9
    assert bucket.take() is False
    clock.now += 0.1
    assert bucket.take() is True


# --- events --------------------------------------------------------------------------------------


def event_for(method: str, path: str, body: bytes = b"", **kwargs: Any) -> dict[str, Any]:
    builder = EnvironBuilder(method=method, path=path, data=body or None, **kwargs)
    builder.environ_base = {"REMOTE_ADDR": "203.0.113.7"}
    request = Request(builder.get_environ())
    return http_api_event(request, ROUTES, request.get_data(), ACCOUNT)


def test_route_key_for_template_routes_and_default() -> None:
    token = event_for("POST", "/v1/token")
    assert token["routeKey"] == token["requestContext"]["routeKey"] == "POST /v1/token"
    assert event_for("GET", "/v1/token")["routeKey"] == "$default"  # another method
    assert event_for("GET", "/v1/nothing")["routeKey"] == "$default"
    assert event_for("GET", "/v1/grants/")["routeKey"] == "$default"


def test_event_shape() -> None:
    event = event_for(
        "GET",
        "/v1/grants",
        query_string="b=2&a=1&a=3",
        headers={"X-Custom": "Value", "User-Agent": "pip/25"},
    )
    assert event["version"] == "2.0"
    assert event["rawPath"] == "/v1/grants"
    assert event["rawQueryString"] == "b=2&a=1&a=3"
    assert event["queryStringParameters"] == {"a": "1,3", "b": "2"}
    assert event["headers"]["x-custom"] == "Value"
    assert all(name == name.lower() for name in event["headers"])
    context = event["requestContext"]
    assert context["accountId"] == ACCOUNT
    assert context["http"]["method"] == "GET"
    assert context["http"]["path"] == "/v1/grants"
    assert context["http"]["sourceIp"] == "203.0.113.7"
    assert context["http"]["userAgent"] == "pip/25"
    assert context["stage"] == "$default"
    assert isinstance(context["timeEpoch"], int)
    assert event["isBase64Encoded"] is False
    assert "body" not in event
    assert "cookies" not in event


def test_no_query_string_no_parameters() -> None:
    event = event_for("GET", "/v1/config")
    assert event["rawQueryString"] == ""
    assert "queryStringParameters" not in event


def test_text_and_binary_bodies() -> None:
    document = json.dumps({"token": "x"}).encode()
    text = event_for("POST", "/v1/token", document, content_type="application/json")
    assert (text["body"], text["isBase64Encoded"]) == (document.decode(), False)

    form = event_for("POST", "/v1/token", b"a=1", content_type="application/x-www-form-urlencoded")
    assert (form["body"], form["isBase64Encoded"]) == ("a=1", False)

    raw = bytes(range(256))
    binary = event_for("POST", "/v1/token", raw, content_type="application/octet-stream")
    assert binary["isBase64Encoded"] is True
    assert base64.b64decode(binary["body"]) == raw

    not_utf8 = event_for("POST", "/v1/token", b"\xff\xfe", content_type="text/plain")
    assert not_utf8["isBase64Encoded"] is True
    assert base64.b64decode(not_utf8["body"]) == b"\xff\xfe"


def test_cookies() -> None:
    event = event_for("GET", "/v1/config", headers={"Cookie": "a=1; b=2"})
    assert event["cookies"] == ["a=1", "b=2"]


@pytest.fixture
def echo_server() -> Iterator[str]:
    """A real werkzeug server whose answer is the event built for the request."""

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        event = http_api_event(request, ROUTES, request.get_data(), ACCOUNT)
        return Response(json.dumps(event), content_type="application/json")(environ, start_response)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_repeated_headers_are_comma_joined(echo_server: str) -> None:
    connection = http.client.HTTPConnection(echo_server, timeout=5)
    connection.putrequest("GET", "/v1/config?x=1")
    connection.putheader("X-Forwarded-For", "198.51.100.1")
    connection.putheader("x-forwarded-for", "198.51.100.2")
    connection.putheader("X-Mixed-Case", "v")
    connection.endheaders()
    event = json.loads(connection.getresponse().read())
    connection.close()

    assert event["headers"]["x-forwarded-for"] == "198.51.100.1,198.51.100.2"
    assert event["headers"]["x-mixed-case"] == "v"
    assert "X-Mixed-Case" not in event["headers"]
    assert event["requestContext"]["http"]["sourceIp"] == "127.0.0.1"
    assert event["routeKey"] == "GET /v1/config"


# --- responses -----------------------------------------------------------------------------------


def test_http_response_from_a_full_result() -> None:
    response = http_response(
        {
            "statusCode": 403,
            "headers": {"Content-Type": "application/problem+json", "X-Count": 2},
            "cookies": ["a=1; Secure", "b=2"],
            "body": '{"type": "denied"}',
        }
    )
    assert response.status_code == 403
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["X-Count"] == "2"
    assert response.headers.getlist("Set-Cookie") == ["a=1; Secure", "b=2"]
    assert response.get_data() == b'{"type": "denied"}'


def test_http_response_base64_body_and_no_body() -> None:
    raw = bytes(range(256))
    binary = http_response(
        {"statusCode": 200, "isBase64Encoded": True, "body": base64.b64encode(raw).decode()}
    )
    assert binary.get_data() == raw
    empty = http_response({"statusCode": 204})
    assert (empty.status_code, empty.get_data()) == (204, b"")
    assert "Content-Type" not in empty.headers  # only the headers the function gave


def test_a_bare_dict_is_a_200_json_answer() -> None:
    response = http_response({"token": "x", "expires_in": 900})
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert json.loads(response.get_data()) == {"token": "x", "expires_in": 900}


# --- warm instances ------------------------------------------------------------------------------

HANDLER = """\
import os
import time

STARTED = time.time()


def handler(event, context):
    action = event.get("action")
    if action == "fail":
        raise ValueError("asked to fail")
    if action == "sleep":
        time.sleep(5)
    return {
        "statusCode": 200,
        "body": event.get("echo", ""),
        "pid": os.getpid(),
        "env": os.environ.get("GREETING"),
        "function": context.function_name,
        "memory": context.memory_limit_in_mb,
        "arn": context.invoked_function_arn,
        "remaining": context.get_remaining_time_in_millis(),
    }
"""


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[Pool]:
    (tmp_path / "fn.py").write_text(HANDLER)
    spec = FunctionSpec(
        name="TestFunction",
        handler="fn.handler",
        code_dir=str(tmp_path),
        environment={"GREETING": "hello"},
        timeout=1,
        memory=256,
        region=REGION,
        account=ACCOUNT,
    )
    instances = Pool(spec, 1)
    try:
        yield instances
    finally:
        instances.stop()


def test_pool_answers_fails_and_replaces_a_timed_out_instance(pool: Pool) -> None:
    first = pool.invoke({"echo": "one"})
    assert first is not None
    assert first["body"] == "one"
    assert first["env"] == "hello"  # the function's environment, and only it
    assert (first["function"], first["memory"]) == ("TestFunction", 256)
    assert first["arn"] == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:TestFunction"
    assert 0 < first["remaining"] <= 1000

    assert pool.invoke({"action": "fail"}) is None
    after_failure = pool.invoke({"echo": "two"})
    assert after_failure is not None
    assert after_failure["pid"] == first["pid"]  # an exception keeps the instance warm

    assert pool.invoke({"action": "sleep"}) is None  # past timeout=1

    replaced = pool.invoke({"echo": "three"})
    assert replaced is not None
    assert replaced["body"] == "three"
    assert replaced["pid"] != first["pid"]  # a new instance


class _AnsweringPool:
    """Stands in for the Pool: every invocation is a 200 (the gateway's throttling is tested)."""

    class spec:  # noqa: N801 - mirrors Pool.spec
        account = ACCOUNT

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        return {"statusCode": 200, "body": "{}", "headers": {}}

    def call(self, event: dict[str, Any]) -> gateway.Invocation:
        return gateway.Invocation(self.invoke(event), {})


def test_a_route_with_its_own_settings_has_its_own_bucket(clock: Clock) -> None:
    from typing import cast

    from werkzeug.test import Client

    gw = gateway.Gateway(
        cast(Pool, _AnsweringPool()), TokenBucket(rate=100, burst=100), frozenset()
    )
    try:
        gw.route_buckets = {"POST /v1/token": TokenBucket(rate=1, burst=1)}
        client = Client(gw)
        assert client.post("/v1/token").status_code == 200
        assert client.post("/v1/token").status_code == 429
        assert client.get("/v1/config").status_code == 200  # the default bucket still has room
    finally:
        gw.stop()


def test_the_console_line_names_the_decision_and_caller_never_more() -> None:
    audit = {"decision": "allow", "issuer": "corp", "subject": "alice", "token": "secret"}
    line = gateway.console_line("POST", "/v1/token", 200, audit, 12.4)
    assert line == "POST /v1/token 200 allow corp/alice 12 ms"
    assert gateway.console_line("GET", "/v1/config", 200, {}, 3) == "GET /v1/config 200 - - 3 ms"
