"""Stopping ``make run`` as a user does: Ctrl-C (SIGINT to the terminal's whole foreground
process group, the broker's warm instances included) or SIGTERM to the devstack's process.
Either stops everything: no traceback, no process left in the group, no state file.

GNU make re-raises a SIGINT it received once its recipe has finished, so a SIGINT sent to
make's group by hand ends ``make run`` as interrupted whatever the recipe did; in a terminal the
devstack holds the foreground itself (devstack/terminal.py) and a typed Ctrl-C ends ``make run``
with 0, which the pty test shows as a user would see it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

from tests.support.terminal import (
    BANNER,
    MAKE_RUN,
    ROOT,
    START_TIMEOUT,
    STOP_TIMEOUT,
    make_run_in_a_terminal,
)

PYTHON_RUN = [sys.executable, "-m", "devstack", "run"]


@dataclass
class Running:
    process: subprocess.Popen[str]
    state_file: Path
    lines: list[str] = field(default_factory=list)
    banner: threading.Event = field(default_factory=threading.Event)
    readers: list[threading.Thread] = field(default_factory=list)

    def read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)
            if BANNER in line:
                self.banner.set()
        self.banner.set()  # the output ended: whoever waits looks at the process

    @property
    def output(self) -> str:
        return "".join(self.lines)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[[list[str]], Running]]:
    started: list[Running] = []

    def run(command: list[str]) -> Running:
        state_file = tmp_path / "state.json"
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "DEVSTACK_STATE": str(state_file), "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, as a terminal's foreground job
        )
        running = Running(process, state_file)
        started.append(running)
        for stream in (process.stdout, process.stderr):
            assert stream is not None
            reader = threading.Thread(target=running.read, args=(stream,), daemon=True)
            reader.start()
            running.readers.append(reader)
        assert running.banner.wait(START_TIMEOUT), "no banner in time"
        assert process.poll() is None, running.output
        assert BANNER in running.output
        assert state_file.exists()
        return running

    yield run
    for running in started:  # a failed test leaves nothing running
        if running.process.poll() is None:
            os.killpg(running.process.pid, signal.SIGKILL)
            running.process.wait()
        for stream in (running.process.stdout, running.process.stderr):
            if stream is not None:
                stream.close()


def stopped(running: Running, send: signal.Signals, group: bool) -> tuple[int, float]:
    """(exit status, seconds to stop) after ``send`` to the group or to the leader only."""
    pgid = running.process.pid
    began = time.monotonic()
    if group:
        os.killpg(pgid, send)
    else:
        running.process.send_signal(send)
    returncode = running.process.wait(timeout=STOP_TIMEOUT)
    took = time.monotonic() - began
    for reader in running.readers:
        reader.join(timeout=STOP_TIMEOUT)
    print(f"{send.name} to {'the group' if group else 'the process'}: stopped in {took:.1f} s")
    return returncode, took


def assert_clean(running: Running) -> None:
    assert "Traceback" not in running.output, running.output
    with pytest.raises(ProcessLookupError):
        os.killpg(running.process.pid, 0)  # nothing of the group is left
    assert not running.state_file.exists()


def test_ctrl_c_stops_python_devstack_run(start: Callable[[list[str]], Running]) -> None:
    running = start(PYTHON_RUN)
    returncode, _ = stopped(running, signal.SIGINT, group=True)
    assert returncode == 0, running.output
    assert_clean(running)


def test_sigterm_stops_python_devstack_run(start: Callable[[list[str]], Running]) -> None:
    running = start(PYTHON_RUN)
    returncode, _ = stopped(running, signal.SIGTERM, group=False)
    assert returncode == 0, running.output
    assert_clean(running)


def test_ctrl_c_stops_make_run(start: Callable[[list[str]], Running]) -> None:
    running = start(MAKE_RUN)
    returncode, _ = stopped(running, signal.SIGINT, group=True)
    # make's own status after SIGINT: 0, or killed by the SIGINT it re-raises (GNU make).
    assert returncode in (0, -signal.SIGINT), running.output
    assert "stopping" in running.output
    assert_clean(running)


def test_ctrl_c_typed_in_a_terminal_ends_make_run_with_0(tmp_path: Path) -> None:
    """``make run`` in a real terminal (a pty whose foreground job is make): the user types
    Ctrl-C, the terminal signals its foreground group, and make exits 0 (the devstack holds
    the foreground, devstack/terminal.py, so make itself never sees the SIGINT)."""
    with make_run_in_a_terminal(tmp_path / "state.json") as terminal:
        terminal.started()
        terminal.ctrl_c_ends_make_run_with_0()
