"""``cabroker-admin why REQUEST_ID``: why the broker decided a request as it did, from its
audit line (docs/admin.md, "Why was I denied?"). The work is done by
:mod:`cabroker_admin.auditlog`; this module reads the command line and prints.

Exit codes: 0 the request's lines were found (whatever the decision), 1 none were, 2 a wrong
command line or an unreadable file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

from cabroker_admin import auditlog, target
from cabroker_admin.errors import FAILED, UsageError

if TYPE_CHECKING:
    import boto3

    Groups = argparse._SubParsersAction[argparse.ArgumentParser]


def register(groups: Groups) -> None:
    why = groups.add_parser(
        "why",
        help="why the broker decided a request (from the request_id of its answer)",
        description="Find the audit line of the request whose problem body said REQUEST_ID "
        "(the request_id member; API Gateway's request id works too) and print the decision, "
        "who asked, what was asked, what the caller was told and, for a denial, each rule of "
        "the caller's issuer: matched, or which claim constraints failed and why. Searches "
        "the broker function's CloudWatch log group (--stack or --log-group) or a JSON-lines "
        "file (--log-file, e.g. the devstack's .devstack/broker.log). Exit 0 when found, 1 "
        "when not.",
    )
    why.add_argument("request_id", metavar="REQUEST_ID", help="the problem body's request_id")
    source = why.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--stack", metavar="NAME", help="the cabroker stack (its function's log group)"
    )
    source.add_argument("--log-group", metavar="NAME", help="the CloudWatch Logs log group")
    source.add_argument(
        "--log-file", metavar="PATH", help="a file of JSON log lines (the devstack's broker log)"
    )
    why.add_argument(
        "--since",
        default="7d",
        metavar="DURATION",
        help="how far back CloudWatch Logs is searched: 30m, 12h, 7d (default 7d)",
    )
    why.add_argument(
        "--region", help="the AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, the profile's)"
    )
    why.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text (default), or JSON: {request_id, where, audit, lines}",
    )
    why.set_defaults(run=run_why)


def run_why(args: argparse.Namespace) -> int:
    wanted = auditlog.request_id(args.request_id)
    window = auditlog.since(args.since)
    if args.log_file is not None:
        if args.region is not None:
            raise UsageError("--region goes with --stack or --log-group, not --log-file")
        found = auditlog.in_file(Path(args.log_file), wanted)
    else:
        session = target.session(args.region)
        group = args.log_group
        if args.stack is not None:
            if not target.STACK_NAME.fullmatch(args.stack):
                raise UsageError(f"--stack {args.stack!r} is not a CloudFormation stack name")
            group = auditlog.function_log_group(_stacks(session), args.stack)
        start_ms = int((time.time() - window.total_seconds()) * 1000)
        found = auditlog.in_cloudwatch(_logs(session), group, wanted, start_ms)
    if not found.complete:
        print(
            f"cabroker-admin: note: {found.where}: searched {auditlog.MAX_PAGES} pages without "
            "reaching the end; a shorter --since searches less",
            file=sys.stderr,
        )
    if not found.lines:
        searched = f" in the last {args.since}" if args.log_file is None else ""
        print(
            f"cabroker-admin: request {wanted}: no log line{searched} in {found.where}",
            file=sys.stderr,
        )
        return FAILED
    if args.format == "json":
        document = {
            "request_id": wanted,
            "where": found.where,
            "audit": found.audit,
            "lines": list(found.lines),
        }
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print(auditlog.render(found))
    return 0


def _logs(session: boto3.session.Session) -> auditlog.Logs:
    return cast(auditlog.Logs, session.client("logs"))


def _stacks(session: boto3.session.Session) -> auditlog.StackResources:
    return cast(auditlog.StackResources, session.client("cloudformation"))
