"""The console's approval prompt follows the login that is pending now: a login started while
the prompt waits for an answer is the one the answer is about, never a stale code."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterator
from typing import TextIO

import pytest

from devstack.device import ConsoleApprover
from devstack.idp import IdentityProvider, Issuer
from tests.support.oidc import private_key

CLIENT_ID = "cabroker-cli"
USERS = {"alice": {"groups": ["engineering"]}, "mallory": {"groups": ["contractors"]}}


@pytest.fixture
def corp() -> Iterator[tuple[IdentityProvider, Issuer]]:
    idp = IdentityProvider(key_factory=private_key, device_interval=0)  # never started
    idp.add("corp", "cabroker", client_id=CLIENT_ID, users=USERS)
    try:
        yield idp, idp.issuers["corp"]
    finally:
        idp.stop()


@pytest.fixture
def terminal() -> Iterator[tuple[TextIO, Callable[[str], None]]]:
    """A stdin that blocks until a line is typed, and the function that types it."""
    read, write = os.pipe()
    stdin = os.fdopen(read, "r")
    typing = os.fdopen(write, "w")

    def type_line(line: str) -> None:
        typing.write(line + "\n")
        typing.flush()

    try:
        yield stdin, type_line
    finally:
        typing.close()
        stdin.close()


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_an_answer_given_after_a_newer_login_started_is_about_the_newer_one(
    corp: tuple[IdentityProvider, Issuer], terminal: tuple[TextIO, Callable[[str], None]]
) -> None:
    idp, issuer = corp
    stdin, type_line = terminal
    output = io.StringIO()
    approver = ConsoleApprover(idp, stdin, output)
    approver.start()
    try:
        _, first = issuer.start_device_login(CLIENT_ID)
        approver.notify("corp", first)
        wait_for(lambda: first.user_code in output.getvalue(), "the first prompt")
        _, second = issuer.start_device_login(CLIENT_ID)  # the user started again
        approver.notify("corp", second)

        type_line("")  # typed while the prompt still shows the first code
        wait_for(lambda: second.user_code in output.getvalue(), "the prompt for the newer login")
        # Nothing was decided on an answer given for a code the prompt no longer stands for.
        assert {p.user_code for p in issuer.pending()} == {first.user_code, second.user_code}
        assert "now pending is" in output.getvalue()

        type_line("")
        wait_for(lambda: f"approved {second.user_code}" in output.getvalue(), "the approval")
        assert [p.user_code for p in issuer.pending()] == [first.user_code]
        assert f"approved {first.user_code}" not in output.getvalue()

        # The older login, still pending, is asked about next; denying it ends the prompts.
        type_line("deny")
        wait_for(lambda: f"denied {first.user_code}" in output.getvalue(), "the denial")
        assert issuer.pending() == []
    finally:
        approver.stop()
