"""``cabroker configure URL``: remember the broker's URL in the user config file."""

from __future__ import annotations

import argparse


def add(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("configure", help="save the broker URL for later commands")
    parser.add_argument("url", help="the broker's URL, e.g. https://abc123.execute-api…")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..config import save_broker_url

    path = save_broker_url(args.url)
    print(f"saved the broker URL in {path}")
    return 0
