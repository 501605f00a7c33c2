"""``cabroker status``: the cached tokens, when they expire, and the files login wrote."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from .common import describe

WARN_SECONDS = 600  # warn with less than this left, or less than a tenth of the lifetime
WARN_FRACTION = 0.1


def add(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("status", help="show cached tokens, expiry and written files")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..cache import TokenCache
    from ..config import state_dir
    from ..files import Ledger

    now = datetime.now(UTC)
    entries = TokenCache.default().entries()
    if not entries:
        print("no token cached: run 'cabroker login'")
    exit_code = 6 if not entries else 0
    for key, grant in entries:
        print(f"{key.broker_url}: {describe(grant)}")
        print(f"  for     {_whose(key.source)}")
        print(f"  index   {grant.index_url}")
        if grant.access == "publish":
            print(f"  upload  {grant.upload_url}")
        left = grant.seconds_left(now)
        if left <= 0:
            print("  EXPIRED: CodeArtifact answers such a token with 401/404; log in again")
            exit_code = 6
        elif left < max(WARN_SECONDS, WARN_FRACTION * (grant.lifetime() or 0)):
            print(f"  warning: expires in {int(left // 60)} min; 'cabroker login --refresh'")
    written = Ledger(state_dir() / "ledger.json").paths()
    if written:
        print("files written by login (cabroker logout restores them):")
        for path in written:
            print(f"  {path}")
    sys.stdout.flush()
    return exit_code


def _whose(source: str) -> str:
    """Whose grant it is, in words: where its identity came from (``CacheKey.source``)."""
    kind, _, where = source.partition(":")
    if kind == "file":
        return f"the identity in the ID token file {where}"
    if kind == "device":
        return f"your interactive login to {where}"
    if kind == "env":
        return "the identity in CABROKER_ID_TOKEN"
    return f"the {kind or 'unknown'} job's identity"
