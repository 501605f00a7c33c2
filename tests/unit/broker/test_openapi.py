"""The API description (functions/broker/openapi.yaml): served as JSON at GET /v1/openapi.json,
and in step with the code: every route, every problem status a route can answer, every
request field the broker accepts. (schemathesis checks the live API against it: tests/e2e.)"""

from __future__ import annotations

from typing import Any

import yaml

from broker import problems
from broker.app import OPENAPI, ROUTES
from broker.grants import REQUEST_FIELDS


def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))
    return loaded


def test_it_is_served_as_json(call: Any) -> None:
    answer = call("GET", "/v1/openapi.json")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.body == document()  # the fixture decodes JSON bodies


def test_it_is_openapi_3_1_and_describes_every_route() -> None:
    spec = document()
    assert spec["openapi"].startswith("3.1")
    assert set(spec["paths"]) == set(ROUTES)
    for path, methods in ROUTES.items():
        assert set(spec["paths"][path]) == {method.lower() for method in methods}
        assert "405" in spec["paths"][path][methods[0].lower()]["responses"]


def test_every_problem_a_token_request_can_meet_is_documented() -> None:
    statuses = {
        cls.status
        for cls in vars(problems).values()
        if isinstance(cls, type) and issubclass(cls, problems.BrokerError)
    }
    documented = set(document()["paths"]["/v1/token"]["post"]["responses"])
    routing_only = {404, 500}  # unknown routes; a bug (500 is what the checks must never see)
    assert {str(status) for status in statuses - routing_only} <= documented


def test_the_request_schema_has_exactly_the_accepted_fields() -> None:
    schema = document()["components"]["schemas"]["TokenRequest"]
    assert set(schema["properties"]) == set(REQUEST_FIELDS)
    assert schema["additionalProperties"] is False
