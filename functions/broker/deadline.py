"""The current request's deadline: how long the broker may still wait on anything.

API Gateway gets a documented problem only if the function answers before Lambda stops it at
its ``Timeout``.  The handler opens a :func:`scope` with the invocation's remaining time less
:data:`MARGIN_SECONDS`; every wait on a dependency (AWS attempts, issuer fetches, the shared
cache) asks :func:`remaining`, :func:`bounded` or :func:`check` how long it may take.  Outside
any scope (tests, the cold-start init, tools) there is no deadline and each wait keeps its own
timeout.  The deadline lives in a :class:`~contextvars.ContextVar`, so concurrent requests on
threads or tasks each see their own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from .problems import ServiceUnavailable

# Kept back from the Lambda's remaining time: once the last wait ends, the broker still builds
# the answer (JSON, the audit line, an EMF metric) and returns it through the runtime.  That takes
# milliseconds; half a second leaves room for a throttled or CPU-starved instance.
MARGIN_SECONDS = 0.5
# The shortest timeout bounded() hands out: a socket wait shorter than this cannot succeed anyway.
FLOOR_SECONDS = 0.05
# What a caller is told to wait after the broker ran out of time (its dependencies are slow).
RETRY_AFTER_SECONDS = 5

_deadline: ContextVar[float | None] = ContextVar("broker_deadline", default=None)


def remaining() -> float | None:
    """Seconds left before the request must be answered (the margin already taken off), which
    may be negative once the deadline has passed; ``None`` when no deadline is set."""
    at = _deadline.get()
    return None if at is None else at - time.monotonic()


@contextmanager
def scope(seconds: float | None) -> Iterator[None]:
    """Run the block with a deadline ``seconds`` from now (``None``: no new deadline).

    A nested scope never extends an outer one: the earlier deadline holds.
    """
    if seconds is None:
        yield
        return
    at = time.monotonic() + seconds
    outer = _deadline.get()
    token = _deadline.set(at if outer is None else min(at, outer))
    try:
        yield
    finally:
        _deadline.reset(token)


def check(what: str, *, needing: float = 0.0) -> None:
    """Raise a 503 problem naming ``what`` when the deadline has passed, or when less than
    ``needing`` seconds are left (the wait about to start could not finish in time)."""
    left = remaining()
    if left is not None and (left <= 0 or left < needing):
        raise ServiceUnavailable(
            f"the broker ran out of time waiting for {what}; try again",
            retry_after=RETRY_AFTER_SECONDS,
        )


def bounded(timeout: float) -> float:
    """``timeout``, cut to the time left (never below :data:`FLOOR_SECONDS`)."""
    left = remaining()
    if left is None:
        return timeout
    return max(FLOOR_SECONDS, min(timeout, left))
