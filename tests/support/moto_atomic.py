"""moto's DynamoDB item writes made atomic, as DynamoDB's are (the unit and e2e tests of the
shared cache and replay guard share it)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from moto.dynamodb.models import DynamoDBBackend


class AtomicItems:
    """DynamoDB checks a write's condition and writes the item as one step; moto checks, then
    writes, with nothing in between to stop another thread. Two instances racing for a lease
    could both find it free and both mint (``assert 2 == 1`` on a loaded machine, when a thread
    switch fell between the check and the write). Here moto's item writes take turns, as in
    DynamoDB; ``on_contention`` is called when a write has to wait for another.
    """

    WRITES = ("put_item", "delete_item", "update_item")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.on_contention: Callable[[], None] = lambda: None

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in self.WRITES:
            monkeypatch.setattr(
                DynamoDBBackend, name, self._serialized(getattr(DynamoDBBackend, name))
            )

    def _serialized(self, write: Callable[..., Any]) -> Callable[..., Any]:
        def serialized(*args: Any, **kwargs: Any) -> Any:
            if not self._lock.acquire(blocking=False):
                self.on_contention()
                self._lock.acquire()
            try:
                return write(*args, **kwargs)
            finally:
                self._lock.release()

        return serialized
