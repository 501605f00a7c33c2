"""The terminal's Ctrl-C for the devstack alone.

``make run`` runs the devstack as make's child, in make's process group, which is the
terminal's foreground group: Ctrl-C reaches make too, and GNU make re-raises a SIGINT it got
once its recipe ends, so ``make run`` would end "interrupted" (130) however cleanly the
devstack stopped.  :func:`own_foreground` moves the devstack into a process group of its own and
makes that the terminal's foreground group, so the terminal's Ctrl-C reaches the devstack (and
the processes it starts) only; on the way out it gives the terminal back to the group it took
it from.  Without a terminal, or when this process is not in the foreground group, it does
nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from typing import TextIO


@contextlib.contextmanager
def own_foreground(stream: TextIO | None = None) -> Iterator[bool]:
    """Hold the terminal's foreground in a process group of this process's own; whether it
    did."""
    try:
        fd = (stream or sys.stdin).fileno()
        taken = os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp()
    except (OSError, ValueError, AttributeError):
        taken = False
    if not taken:
        yield False
        return
    previous = os.getpgrp()
    # tcsetpgrp from a process group that is not (or no longer) in the foreground stops the
    # process with SIGTTOU unless it ignores it
    old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        if previous != os.getpid():
            os.setpgid(0, 0)
        os.tcsetpgrp(fd, os.getpgrp())
    except OSError:
        signal.signal(signal.SIGTTOU, old)
        yield False
        return
    try:
        yield True
    finally:
        with contextlib.suppress(OSError):
            os.tcsetpgrp(fd, previous)
        signal.signal(signal.SIGTTOU, old)
