"""X-Ray subsegments through Powertools Tracer, built only when asked for.

Powertools' Tracer imports the X-Ray SDK, whose recorder builds two botocore clients at import:
about 170 ms of cold start (``bench/broker_request.py``).  With ``POWERTOOLS_TRACE_DISABLED=true``
(the template's default ``Tracing=Active``, where Lambda records the invocation's own segments
without the SDK, and ``PassThrough``; and the tests) none of that is imported.  With
``Tracing=Detailed`` the Tracer also patches botocore, so STS and CodeArtifact calls show as
subsegments.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

Handler = TypeVar("Handler", bound=Callable[..., Any])


def enabled(env: dict[str, str] | None = None) -> bool:
    value = (env if env is not None else os.environ).get("POWERTOOLS_TRACE_DISABLED", "")
    return value.strip().lower() not in {"1", "true", "yes"}


def traced(handler: Handler) -> Handler:
    """``Tracer.capture_lambda_handler`` when tracing is on; the handler itself otherwise."""
    if not enabled(dict(os.environ)):
        return handler
    from aws_lambda_powertools import Tracer

    tracer = Tracer(service="cabroker")
    # Never put the response (which holds the token) into a trace.
    wrapped: Handler = tracer.capture_lambda_handler(capture_response=False)(handler)
    return wrapped
