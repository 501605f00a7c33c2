"""The ``cabroker-admin`` command: ``cabroker-admin GROUP COMMAND …``.

Each group (``rules``, …) is a module with ``register(groups)``, which adds its parser and
commands; a command's ``run(args)`` returns the exit code. Exit codes: 0 done, 1 the check or
the operation failed, 2 the command line is wrong, 141 the output's reader stopped reading
(``… | head``; what a shell reports for a program SIGPIPE ends). An error is one line on
stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from cabroker_admin import __version__, revokecli, rulescli, whycli
from cabroker_admin.errors import AdminError

GROUPS = (rulescli, revokecli, whycli)
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="cabroker-admin",
        description="Admin tools of the cabroker CodeArtifact token broker.",
        epilog="docs/admin.md, 'The rules lifecycle', describes the rules commands.",
    )
    top.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    groups = top.add_subparsers(dest="group", metavar="GROUP", required=True)
    for group in GROUPS:
        group.register(groups)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code = int(args.run(args))
        sys.stdout.flush()  # here, where a closed pipe can still be answered
        return code
    except BrokenPipeError:
        # Whoever read the output stopped (`… | head`): the rest is not wanted. Output goes
        # nowhere from now on, so the interpreter's last flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except AdminError as error:
        print(f"cabroker-admin: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("cabroker-admin: interrupted", file=sys.stderr)
        return 130
