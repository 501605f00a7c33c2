"""`cabroker-admin` as an admin runs it against the devstack (a subprocess with the devstack's
endpoint and its administrator's keys through the standard AWS settings), and polling with a
deadline, for the end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from devstack.provision import admin_session
from devstack.stack import Options
from devstack.tools import Devstack

ADMIN = Path(sys.executable).parent / "cabroker-admin"
DEADLINE = 60  # seconds for the broker to see a change (it caches the rules a few seconds)


def admin(devstack: Devstack, *argv: str) -> subprocess.CompletedProcess[str]:
    """`cabroker-admin ARGV` with the devstack's endpoint and its administrator's keys."""
    credentials = admin_session(devstack.state["region"]).get_credentials()
    assert credentials is not None
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("AWS_") and not name.startswith("BROKER_")
    }
    environment.update(
        AWS_ENDPOINT_URL=devstack.state["aws_endpoint_url"],
        AWS_ACCESS_KEY_ID=credentials.access_key,
        AWS_SECRET_ACCESS_KEY=credentials.secret_key,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    return subprocess.run(
        [str(ADMIN), *argv],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


# The devstack's warm broker instances each cache the rules (BROKER_RULES_CACHE_SECONDS) and
# take requests in turn (a FIFO of idle workers): a condition on the broker's answers holds on
# every instance once it holds for this many requests in a row (the tests send one at a time).
INSTANCES: int = Options().instances


def eventually(what: str, condition: Callable[[], bool], deadline: float = DEADLINE) -> None:
    """Poll until ``condition`` holds ``INSTANCES`` times in a row (so on every instance when
    it asks the broker); fail after ``deadline`` seconds, saying what."""
    end = time.monotonic() + deadline
    while not all(condition() for _ in range(INSTANCES)):
        if time.monotonic() > end:
            pytest.fail(f"not within {deadline} s: {what}")
        threading.Event().wait(0.25)
