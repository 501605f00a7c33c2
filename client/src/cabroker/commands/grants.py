"""``cabroker grants``: what the broker would give your identity (``GET /v1/grants``)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from .common import broker_option, identity_options


def add(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("grants", help="show what the broker would give you")
    broker_option(parser)
    identity_options(parser)
    parser.add_argument("--json", action="store_true", help="the broker's answer as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .. import identity
    from ..broker import BrokerClient
    from ..config import audiences, broker_url

    url = broker_url(args.broker_url)
    client = BrokerClient(url)
    who = identity.obtain(
        audiences(url, args.audience),
        client.config,
        source=args.identity or ("file" if args.id_token_file else None),
        id_token_file=args.id_token_file,
        env=os.environ,
        issuer=args.issuer,
        interactive=False if args.non_interactive else sys.stdin.isatty(),
        out=sys.stderr,
    )
    answer = client.grants(who.token)
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    print(f"as {answer.get('subject')} at {who.iss} ({who.source}):")
    for grant in answer.get("grants", []):
        packages = ", ".join(grant.get("packages") or []) or "any package"
        print(
            f"  {grant.get('access')} {grant.get('repository')} ({packages}), up to "
            f"{grant.get('max_duration_seconds')} s, rule {grant.get('rule')}"
        )
    if not answer.get("grants"):
        print("  nothing: no rule matches you; ask the broker's admins")
    return 0
