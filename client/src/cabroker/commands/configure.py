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
    parser.add_argument(
        "--scope",
        action="append",
        default=None,
        metavar="SCOPE",
        help="for a device login to this broker: an OAuth scope to ask for, over the broker's "
        "(repeatable; openid is always asked for)",
    )
    parser.add_argument(
        "--client-secret",
        metavar="SECRET",
        help="for a device login to this broker: the public client secret the IdP requires "
        "(Google), if the broker does not publish it",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..config import (
        LoginSettings,
        audiences,
        check_broker_url,
        check_client_secret,
        save_broker_url,
        scopes,
    )
    from ..errors import UsageError

    try:
        chosen = None if args.scope is None else scopes(args.scope, "--scope")
    except ValueError as error:
        raise UsageError(str(error)) from None
    secret = args.client_secret
    login = LoginSettings(
        chosen, None if secret is None else check_client_secret(secret, "--client-secret")
    )
    path = save_broker_url(args.url, args.audience, login=login)
    accepted = audiences(check_broker_url(args.url, "the command line"), args.audience).accepted
    print(f"saved the broker URL in {path}")
    print(f"ID tokens sent to it must be for: {', '.join(accepted)}")
    if login.scopes is not None:
        print(f"a device login to it asks for the scopes: {' '.join(login.scopes)}")
    if login.client_secret is not None:
        print("a device login to it sends the client secret you gave")
    return 0
