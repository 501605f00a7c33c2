"""The broker's log lines as Lambda's log group gets them: JSON objects formatted by Powertools
Logger at the time of the record, with the invocation's keys (``function_request_id``,
``correlation_id``). Read from the records, not from stdout: the Logger's handler keeps the
stdout it was built with, which pytest replaces test by test."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest


class LogLines(logging.Handler):
    """Every record of the ``cabroker`` loggers, formatted as the function writes it."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        from broker.app import logger

        self.lines.append(json.loads(logger.registered_formatter.format(record)))

    def of_request(self, request_id: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("function_request_id") == request_id]

    def audit(self, request_id: str) -> dict[str, Any]:
        """The request's one audit line (the line with a ``decision``)."""
        (found,) = [line for line in self.of_request(request_id) if "decision" in line]
        return found

    def messages(self) -> list[str]:
        return [str(line.get("message")) for line in self.lines]


@pytest.fixture
def log_lines() -> Iterator[LogLines]:
    keep = LogLines()
    parent = logging.getLogger("cabroker")
    parent.addHandler(keep)
    try:
        yield keep
    finally:
        parent.removeHandler(keep)
