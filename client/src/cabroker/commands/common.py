"""Options and steps the commands share: which broker, which grant, which identity."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from ..broker import Grant
from ..config import broker_url

IDENTITY_SOURCES = ("ambient", "file", "env", "device")
MIN_DURATION, MAX_DURATION = 900, 43200  # what CodeArtifact accepts for a token's lifetime


def plain(doc: str | None) -> str:
    """A module docstring as ``--help`` text: the reST literal quotes taken out."""
    return (doc or "").replace("``", "")


def duration(text: str) -> int:
    """``--duration``: whole seconds within CodeArtifact's range, else a usage error (exit 2)
    before any request."""
    try:
        seconds = int(text)
    except ValueError:
        seconds = 0
    if not MIN_DURATION <= seconds <= MAX_DURATION:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a token lifetime: give whole seconds from {MIN_DURATION} "
            f"(15 min) to {MAX_DURATION} (12 h)"
        )
    return seconds


def grant_options(parser: argparse.ArgumentParser) -> None:
    """What to ask the broker for; each left out is the matching rule's default."""
    group = parser.add_argument_group("what to ask for (left out: your rule's default)")
    group.add_argument("--access", choices=("read", "publish"), help="read, or publish")
    group.add_argument("--repository", metavar="NAME", help="the CodeArtifact repository")
    group.add_argument(
        "--packages",
        nargs="+",
        metavar="PATTERN",
        default=[],
        help="package-name patterns to publish (publish only), e.g. 'acme-*'",
    )
    group.add_argument(
        "--duration",
        type=duration,
        metavar="SECONDS",
        help=f"token lifetime, {MIN_DURATION} to {MAX_DURATION} s",
    )
    group.add_argument(
        "--refresh", action="store_true", help="ask the broker even if a cached token is fresh"
    )


def identity_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("who you are (left out: detected)")
    group.add_argument(
        "--identity",
        choices=IDENTITY_SOURCES,
        help="where the ID token comes from: CI (ambient), --id-token-file, "
        "CABROKER_ID_TOKEN (env), or interactive login (device)",
    )
    group.add_argument("--id-token-file", type=Path, metavar="PATH", help="a file with an ID token")
    group.add_argument("--issuer", metavar="NAME", help="the broker's issuer to log in with")
    group.add_argument(
        "--audience",
        action="append",
        metavar="AUD",
        help="an ID-token audience this broker uses, besides its URL's origin (repeatable; "
        "default: CABROKER_AUDIENCE, then those saved by 'cabroker configure URL --audience')",
    )
    group.add_argument(
        "--non-interactive",
        action="store_true",
        help="never prompt or start an interactive login (the default without a terminal)",
    )


def broker_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--broker-url",
        metavar="URL",
        help="the broker (default: CABROKER_URL, then the saved one: cabroker configure URL)",
    )


def grant_for(args: argparse.Namespace) -> Grant:
    from ..api import get_grant

    return get_grant(
        broker_url(args.broker_url),
        repository=args.repository,
        access=args.access,
        packages=args.packages,
        duration_seconds=args.duration,
        # An explicit --id-token-file wins over a detected CI identity.
        source=args.identity or ("file" if args.id_token_file else None),
        id_token_file=args.id_token_file,
        issuer=args.issuer,
        audience=args.audience or (),
        interactive=False if args.non_interactive else sys.stdin.isatty(),
        refresh=args.refresh,
    )


def describe_expiry(grant: Grant, now: datetime | None = None) -> str:
    left = grant.seconds_left(now or datetime.now(UTC))
    when = grant.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    if left <= 0:
        return f"expired at {when}"
    hours, minutes = int(left // 3600), int(left % 3600 // 60)
    return f"expires at {when} (in {hours} h {minutes:02d} min)"


def describe(grant: Grant) -> str:
    scope = f"{grant.access} on {grant.repository}"
    if grant.packages:
        scope += f" for {', '.join(grant.packages)}"
    return f"{scope}; {describe_expiry(grant)}"
