"""``cabroker logout``: undo what login wrote (byte for byte where nothing changed since) and
forget the cached tokens."""

from __future__ import annotations

import argparse


def add(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("logout", help="undo what login wrote; forget cached tokens")
    parser.add_argument(
        "--keep-cache", action="store_true", help="restore the files but keep cached tokens"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..cache import TokenCache
    from ..config import state_dir
    from ..ledger import Ledger

    outcomes = Ledger(state_dir() / "ledger.json").restore()
    for outcome in outcomes:
        print(outcome)
    if not args.keep_cache:
        from ..logins import Logins

        TokenCache.default().clear()
        Logins.default().clear()
        print("forgot the cached tokens and interactive logins")
    print(
        "note: variables already exported into shells (cabroker env, GITHUB_ENV) hold a token "
        "that stays valid until it expires; close those shells or unset them"
    )
    if not outcomes:
        print("no file to restore")
    return 0
