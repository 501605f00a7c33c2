"""``cabroker configure URL``: remember the broker's URL, and the ID-token audiences it uses.

An ID token the client obtains or sends must be for this broker only: its ``aud`` is the
broker URL's origin (``https://broker.example.com``), or an audience you pin here because your
admins publish it (a device-login client id, a CI audience).  The broker's own answers never
add one.
"""

from __future__ import annotations

import argparse

from .common import plain


def add(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "configure",
        help="save the broker URL (and its audiences) for later commands",
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("url", help="the broker's URL, e.g. https://abc123.execute-api…")
    parser.add_argument(
        "--audience",
        action="append",
        default=[],
        metavar="AUD",
        help="an ID-token audience your admins publish for this broker (repeatable)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..config import audiences, check_broker_url, save_broker_url

    path = save_broker_url(args.url, args.audience)
    accepted = audiences(check_broker_url(args.url, "the command line"), args.audience).accepted
    print(f"saved the broker URL in {path}")
    print(f"ID tokens sent to it must be for: {', '.join(accepted)}")
    return 0
