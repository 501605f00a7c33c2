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

ROOT = Path(__file__).resolve().parents[2]
BANNER = "Ctrl-C stops everything"
START_TIMEOUT = 180  # a loaded 2-core CI machine
STOP_TIMEOUT = 30
PYTHON_RUN = [sys.executable, "-m", "devstack", "run"]
# -o: the virtualenv counts as built (CI built it; the test must not reinstall it).
MAKE_RUN = ["make", "--no-print-directory", "-o", ".venv/.installed", "run"]


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
    import json
    import pty
    import select
    import termios

    master, slave = pty.openpty()
    state_file = tmp_path / "state.json"

    def controlling_terminal() -> None:  # after setsid: the pty becomes the session's terminal
        import fcntl

        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(
        MAKE_RUN,
        cwd=ROOT,
        env={**os.environ, "DEVSTACK_STATE": str(state_file), "PYTHONUNBUFFERED": "1"},
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=controlling_terminal,  # only an ioctl, before exec
    )
    os.close(slave)
    seen = bytearray()

    def read_until(done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    seen.extend(os.read(master, 65536))
                except OSError:  # the terminal closed: every process of it ended
                    return

    try:
        read_until(lambda: BANNER.encode() in seen or process.poll() is not None, START_TIMEOUT)
        assert BANNER.encode() in seen, seen.decode(errors="replace")[-2000:]
        devstack_pid = json.loads(state_file.read_text())["pid"]
        os.write(master, b"\x03")  # Ctrl-C, as typed
        read_until(lambda: process.poll() is not None, STOP_TIMEOUT)
        returncode = process.wait(timeout=STOP_TIMEOUT)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        os.close(master)
    output = seen.decode(errors="replace")
    assert returncode == 0, output[-2000:]
    assert "Traceback" not in output
    assert "stopping" in output
    assert not state_file.exists()
    for group in (process.pid, devstack_pid):  # make's group and the devstack's own
        with pytest.raises(ProcessLookupError):
            os.killpg(group, 0)
