"""``make run`` in a terminal, as a person has it: a pseudo-terminal whose session leader is
make (so make's group is the terminal's foreground job, until the devstack takes the foreground,
devstack/terminal.py), what it prints, and the keys typed at it: answers to its console prompts,
Ctrl-C.  The Ctrl-C test (tests/e2e/test_stop.py) and the quick-start test
(tests/e2e/test_quickstart.py) share it."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import termios
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BANNER = "Ctrl-C stops everything"
START_TIMEOUT = 180  # a loaded 2-core CI machine
STOP_TIMEOUT = 30
# -o: the virtualenv counts as built (CI built it; the test must not reinstall it).
MAKE_RUN = ["make", "--no-print-directory", "-o", ".venv/.installed", "run"]


@dataclass
class Terminal:
    """The terminal's side of the pty: everything printed so far, and the keyboard."""

    process: subprocess.Popen[bytes]
    master: int
    state_file: Path
    seen: bytearray = field(default_factory=bytearray)
    state: dict[str, Any] = field(default_factory=dict)  # the state file, once started

    @property
    def output(self) -> str:
        return self.seen.decode(errors="replace")

    def read_until(self, done: Callable[[], object], timeout: float) -> bool:
        """Read what is printed until ``done()`` or ``timeout`` seconds; whether done.  Keep
        reading while waiting on anything else: a terminal nobody reads stops its writers."""
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.5)
            if ready:
                try:
                    self.seen.extend(os.read(self.master, 65536))
                except OSError:  # the terminal closed: every process of it ended
                    break
        return bool(done())

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def started(self) -> dict[str, Any]:
        """The state file, once the banner is out (make run still running)."""
        self.read_until(
            lambda: BANNER.encode() in self.seen or self.process.poll() is not None,
            START_TIMEOUT,
        )
        assert BANNER.encode() in self.seen, self.output[-2000:]
        self.state = json.loads(self.state_file.read_text())
        return self.state

    def ctrl_c_ends_make_run_with_0(self) -> None:
        """Type Ctrl-C: make exits 0, with no traceback, no state file and no process of
        make's group or the devstack's left."""
        self.type(b"\x03")  # Ctrl-C, as typed
        self.read_until(lambda: self.process.poll() is not None, STOP_TIMEOUT)
        returncode = self.process.wait(timeout=STOP_TIMEOUT)
        output = self.output
        assert returncode == 0, output[-2000:]
        assert "Traceback" not in output
        assert "stopping" in output
        assert not self.state_file.exists()
        for group in (self.process.pid, self.state["pid"]):  # make's group and the devstack's
            with pytest.raises(ProcessLookupError):
                os.killpg(group, 0)


@contextmanager
def make_run_in_a_terminal(state_file: Path) -> Iterator[Terminal]:
    """``make run`` from the repository's root in a new pty, its state file at ``state_file``;
    whatever is still running at the end is killed."""
    master, slave = pty.openpty()

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
    terminal = Terminal(process, master, state_file)
    try:
        yield terminal
    finally:
        groups = [terminal.state["pid"]] if terminal.state else []  # the devstack's own
        if process.poll() is None:
            groups.append(process.pid)
        for group in groups:
            with suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        process.wait()
        os.close(master)
