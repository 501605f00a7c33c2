"""The ``cabroker`` command: one module per command (``cabroker.commands``), errors caught once
here and printed as one actionable line with a documented exit code."""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__
from .commands import configure, env, grants, login, logout, status
from .errors import EXIT_BROKEN_PIPE, EXIT_BUG, EXIT_USAGE, CabrokerError

DESCRIPTION = """\
Get a short-lived AWS CodeArtifact token from your organisation's token broker, with the
identity you already have (GitHub Actions or GitLab CI, an ID token file, or an interactive
login), and point pip, uv, twine and poetry at the private repository. No AWS credentials or
IAM rights are needed.

  cabroker configure https://broker.example.com     # once: where the broker is
  cabroker login                                    # get a token (and cache it)
  eval "$(cabroker env)"                            # pip, uv, twine and poetry use it
  cabroker status                                   # what is cached, and until when
  cabroker logout                                   # undo what login wrote
"""

EPILOG = """\
exit codes: 0 ok, 1 bug (run with --debug and report it), 2 usage (or not a broker URL),
3 the broker refused, 4 the broker is unreachable or busy, or its answer is unusable,
5 no usable identity, 6 token expired or missing, 7 a file could not be written or restored,
141 the output's reader stopped reading (... | head).
"""


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="cabroker",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    root.add_argument("--version", action="version", version=f"cabroker {__version__}")
    root.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = root.add_subparsers(title="commands", metavar="COMMAND")
    for module in (login, env, status, grants, logout, configure):
        module.add(commands)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not hasattr(args, "run"):
        parser().print_help()
        return EXIT_USAGE
    try:
        code = int(args.run(args))
        sys.stdout.flush()  # here, where a closed pipe can still be answered
        return code
    except BrokenPipeError:
        # Whoever read the output stopped (`cabroker env | head`): the rest is not wanted.
        # Output goes nowhere from now on, so the interpreter's last flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except CabrokerError as error:
        if args.debug:
            raise
        print(f"cabroker: {error.message}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("cabroker: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            raise
        print(
            f"cabroker: unexpected {type(error).__name__}; run again with --debug and report it",
            file=sys.stderr,
        )
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
