from __future__ import annotations

import pytest

from broker.problems import (
    InvalidRequest,
    InvalidToken,
    MissingToken,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from broker.web import bearer_token, json_body


@pytest.mark.parametrize(
    ("headers", "token"),
    [
        pytest.param({"authorization": "Bearer abc"}, "abc", id="lowercase header"),
        pytest.param({"Authorization": "bearer  abc "}, "abc", id="scheme case and spaces"),
    ],
)
def test_bearer_token(headers: dict[str, str], token: str) -> None:
    assert bearer_token(headers, 100) == token


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        pytest.param({}, MissingToken, id="absent"),
        pytest.param({"authorization": "  "}, MissingToken, id="blank"),
        pytest.param({"authorization": "Basic abc"}, InvalidToken, id="basic"),
        pytest.param({"authorization": "Bearer " + "a" * 200}, InvalidToken, id="oversized"),
    ],
)
def test_bearer_token_refusals(headers: dict[str, str], error: type[Exception]) -> None:
    with pytest.raises(error):
        bearer_token(headers, 100)


def test_absent_body_is_an_empty_request() -> None:
    assert json_body(None, is_base64=False, content_type=None, max_bytes=100) == {}
    assert json_body("", is_base64=False, content_type=None, max_bytes=100) == {}


def test_json_body_with_charset() -> None:
    body = json_body(
        '{"a": 1}', is_base64=False, content_type="application/json; charset=utf-8", max_bytes=100
    )
    assert body == {"a": 1}


@pytest.mark.parametrize(
    ("body", "is_base64", "content_type", "error"),
    [
        pytest.param('{"a": 1}', False, "text/plain", UnsupportedMediaType, id="type"),
        pytest.param("x" * 101, False, "application/json", PayloadTooLarge, id="size"),
        pytest.param("é" * 60, False, "application/json", PayloadTooLarge, id="bytes not chars"),
        pytest.param("!!", True, "application/json", InvalidRequest, id="bad base64"),
        pytest.param("{", False, "application/json", InvalidRequest, id="bad json"),
        pytest.param("NaN", False, "application/json", InvalidRequest, id="nan"),
    ],
)
def test_json_body_refusals(
    body: str, is_base64: bool, content_type: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        json_body(body, is_base64=is_base64, content_type=content_type, max_bytes=100)
