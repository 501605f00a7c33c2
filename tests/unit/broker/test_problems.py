"""RFC 9457 bodies: one status and one stable type per error class."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from broker import problems
from broker.problems import BrokerError, problem_response

CLASSES = [
    cls for cls in vars(problems).values() if isinstance(cls, type) and issubclass(cls, BrokerError)
]


def test_every_problem_type_is_unique_and_documented() -> None:
    slugs = [cls.slug for cls in CLASSES]
    assert len(slugs) == len(set(slugs))
    readme = Path(problems.__file__).resolve().parents[2] / "docs" / "api.md"
    documented = readme.read_text(encoding="utf-8")
    for slug in slugs:
        assert f"urn:cabroker:problem:{slug}" in documented, slug


@pytest.mark.parametrize("cls", [c for c in CLASSES if c is not problems.MethodNotAllowed])
def test_problem_response_shape(cls: type[BrokerError]) -> None:
    response = problem_response(cls("what went wrong"), instance="/v1/token")
    body = json.loads(str(response.body))
    assert response.status_code == cls.status == body["status"]
    assert response.content_type == "application/problem+json"
    assert body["type"] == f"urn:cabroker:problem:{cls.slug}"
    assert body["detail"] == "what went wrong"
    assert body["instance"] == "/v1/token"
    assert response.headers["Cache-Control"] == "no-store"
    headers = {k: str(v) for k, v in response.headers.items()}
    if cls.status == 401:
        assert headers["WWW-Authenticate"].startswith("Bearer")
    if cls.status == 503:
        assert int(headers["Retry-After"]) > 0


def test_the_request_id_is_an_extension_member_when_the_invocation_has_one() -> None:
    error = problems.AmbiguousRequest("say which", choices=[{"repository": "internal"}])
    body = problems.problem_body(error, "/v1/token", request_id="8c4e711c-2ae5")
    assert body["request_id"] == "8c4e711c-2ae5"
    assert body["choices"] == [{"repository": "internal"}]
    assert "request_id" not in problems.problem_body(error, "/v1/token")
