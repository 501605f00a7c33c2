"""The request's deadline: scopes, nesting, and the problem it raises once time is up."""

from __future__ import annotations

import contextvars
import time

import pytest

from broker import deadline
from broker.problems import ServiceUnavailable, problem_body


def test_without_a_scope_there_is_no_deadline() -> None:
    assert deadline.remaining() is None
    deadline.check("sts:AssumeRole")  # never raises
    assert deadline.bounded(3.0) == 3.0


def test_a_scope_counts_down_and_ends_with_its_block() -> None:
    with deadline.scope(2.0):
        left = deadline.remaining()
        assert left is not None
        assert 1.9 < left <= 2.0
        time.sleep(0.05)
        later = deadline.remaining()
        assert later is not None
        assert later <= left - 0.05
    assert deadline.remaining() is None


def test_a_scope_of_none_adds_no_deadline_and_keeps_the_outer_one() -> None:
    with deadline.scope(None):
        assert deadline.remaining() is None
    with deadline.scope(1.0), deadline.scope(None):
        left = deadline.remaining()
        assert left is not None
        assert 0.9 < left <= 1.0


@pytest.mark.parametrize(
    ("outer", "inner", "expected"),
    [
        pytest.param(1.0, 5.0, 1.0, id="an inner scope cannot extend the outer deadline"),
        pytest.param(5.0, 1.0, 1.0, id="an inner scope can shorten it"),
    ],
)
def test_nested_scopes_take_the_earlier_deadline(
    outer: float, inner: float, expected: float
) -> None:
    with deadline.scope(outer):
        with deadline.scope(inner):
            left = deadline.remaining()
            assert left is not None
            assert expected - 0.1 < left <= expected
        restored = deadline.remaining()
        assert restored is not None
        assert outer - 0.1 < restored <= outer  # the outer deadline is back after the block


def test_the_scope_is_restored_when_its_block_raises() -> None:
    with deadline.scope(5.0):
        with pytest.raises(RuntimeError), deadline.scope(0.1):
            raise RuntimeError("boom")
        left = deadline.remaining()
        assert left is not None
        assert left > 4.0
    assert deadline.remaining() is None


@pytest.mark.parametrize("seconds", [0.0, -1.0])
def test_check_raises_the_documented_problem_once_time_is_up(seconds: float) -> None:
    with deadline.scope(seconds), pytest.raises(ServiceUnavailable) as raised:
        deadline.check("sts:AssumeRole")
    problem = problem_body(raised.value, "/v1/token")
    assert problem["status"] == 503
    assert problem["type"] == "urn:cabroker:problem:upstream-unavailable"
    assert problem["detail"] == ("the broker ran out of time waiting for sts:AssumeRole; try again")
    assert raised.value.headers() == {"Retry-After": str(deadline.RETRY_AFTER_SECONDS)}


def test_check_passes_while_time_is_left_and_honours_needing() -> None:
    with deadline.scope(1.0):
        deadline.check("sts:AssumeRole")
        deadline.check("sts:AssumeRole", needing=0.5)
        with pytest.raises(ServiceUnavailable, match="kms:Decrypt"):
            deadline.check("kms:Decrypt", needing=2.0)  # this wait could not finish in time


def test_bounded_cuts_a_timeout_to_the_time_left_but_not_below_the_floor() -> None:
    with deadline.scope(10.0):
        assert deadline.bounded(3.0) == 3.0
    with deadline.scope(1.0):
        assert 0.9 < deadline.bounded(3.0) <= 1.0
    with deadline.scope(-5.0):
        assert deadline.bounded(3.0) == deadline.FLOOR_SECONDS


def test_the_margin_is_small_beside_the_function_timeout() -> None:
    assert 0 < deadline.MARGIN_SECONDS <= 1.0
    assert deadline.FLOOR_SECONDS < deadline.MARGIN_SECONDS


def test_a_copied_context_carries_the_deadline() -> None:
    with deadline.scope(1.0):
        inherited = contextvars.copy_context().run(deadline.remaining)
    assert inherited is not None  # what asyncio tasks and context-aware executors run in
    assert deadline.remaining() is None
