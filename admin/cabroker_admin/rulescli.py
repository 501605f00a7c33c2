"""``cabroker-admin rules …``: push, history, pull and roll back the broker's access rules
(docs/admin.md, "The rules lifecycle"). The work is done by :mod:`cabroker_admin.rulesstore`;
this module reads the command line, the file and the stack, and prints."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING

from cabroker_admin import checkcli, evalcli, rulesstore, target
from cabroker_admin.errors import UsageError

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_ssm import SSMClient

    Groups = argparse._SubParsersAction[argparse.ArgumentParser]


def register(groups: Groups) -> None:
    rules = groups.add_parser(
        "rules",
        help="the broker's access rules: push, history, pull, rollback",
        description="The broker's access rules, kept in its SSM parameter "
        "(/cabroker/STACK/rules; the shadow rules in /cabroker/STACK/shadow-rules, with "
        "--shadow). Every write is checked by the broker's own loader first.",
    )
    commands = rules.add_subparsers(dest="command", metavar="COMMAND", required=True)

    push = commands.add_parser(
        "push",
        help="check a rules file and write it as the parameter's new version",
        description="Check FILE with the broker's own loader against the stack's domain and "
        "repositories; if the broker would serve it and it differs from the current value, "
        "write it as a new version and move the label 'live' to it. An invalid document is "
        "refused (exit 1) and nothing is written.",
    )
    push.add_argument("file", metavar="FILE", help="the rules document (YAML or JSON); - for stdin")
    _where(push)
    _served(push)
    push.add_argument(
        "--dry-run", action="store_true", help="check and compare only; write nothing"
    )
    push.set_defaults(run=run_push)

    history = commands.add_parser(
        "history",
        help="list the parameter's versions",
        description="Every version SSM keeps (the last 100): when, who, the document's "
        "sha256, and which one the broker serves (the newest) and which one is labelled live.",
    )
    _where(history)
    history.set_defaults(run=run_history)

    pull = commands.add_parser(
        "pull",
        help="print the current (or a given) version's document",
        description="Print the document the broker serves (or version N) to stdout, "
        "byte for byte, e.g. to diff it with the rules file.",
    )
    _where(pull)
    pull.add_argument("--version", type=_version, metavar="N", help="this version instead")
    pull.set_defaults(run=run_pull)

    rollback = commands.add_parser(
        "rollback",
        help="write an earlier version's document again, as a new version",
        description="Write the previous document (the newest earlier version whose text "
        "differs from the current one), or version N's, as a new version, checked again like "
        "a push, and move the label 'live' to it. The history stays append-only.",
    )
    _where(rollback)
    _served(rollback)
    rollback.add_argument("--to", type=_version, metavar="N", help="roll back to version N")
    rollback.set_defaults(run=run_rollback)

    promote = commands.add_parser(
        "promote",
        help="make the shadow rules live: push the shadow parameter's document as the rules",
        description="Read the document the stack's shadow rules parameter holds "
        "(/cabroker/STACK/shadow-rules) and push it to its rules parameter "
        "(/cabroker/STACK/rules), checked as a push is: a new version labelled 'live', "
        "nothing written when it is already live or the broker would refuse it.",
    )
    promote.add_argument("--stack", required=True, metavar="NAME", help="the cabroker stack")
    promote.add_argument(
        "--region", help="the AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, the profile's)"
    )
    promote.add_argument(
        "--dry-run", action="store_true", help="check and compare only; write nothing"
    )
    promote.set_defaults(run=run_promote)
    evalcli.register(commands)  # explain, test, diff: offline, docs/admin.md
    checkcli.register(commands)  # check, schema: offline, docs/admin.md


def run_push(args: argparse.Namespace) -> int:
    where = target.where(args.stack, args.parameter, shadow=args.shadow)
    text = read(args.file)
    session = target.session(args.region)
    served = _served_of(args, session, where)
    ssm = _ssm(session)
    origin = "stdin" if args.file == "-" else args.file
    if args.dry_run:
        plan = rulesstore.plan(
            ssm, where.parameter, text, served.domain, served.repositories, origin
        )
        if plan.changed:
            outcome = f"a push would write it as {where.parameter}'s new version"
        else:
            outcome = f"{where.parameter} version {plan.current_version} already holds it"
        print(
            f"{origin}: accepted ({len(plan.rules.rules)} rules, "
            f"{len(plan.rules.issuers)} issuers); {outcome}; nothing written "
            f"(sha256 {plan.sha256})"
        )
        return 0
    pushed = rulesstore.push(ssm, where.parameter, text, served.domain, served.repositories, origin)
    if pushed.changed:
        print(
            f"{where.parameter}: version {pushed.version} written and labelled "
            f"{rulesstore.LABEL} (sha256 {pushed.sha256})"
        )
    else:
        print(
            f"{where.parameter}: unchanged, version {pushed.version} already holds {origin} "
            f"(sha256 {pushed.sha256}); nothing written"
        )
    return 0


def run_promote(args: argparse.Namespace) -> int:
    live = target.where(args.stack, None)
    shadow = target.where(args.stack, None, shadow=True)
    session = target.session(args.region)
    served = target.from_stack(target.stacks(session), args.stack, str(session.region_name))
    ssm = _ssm(session)
    version, text = rulesstore.pull(ssm, shadow.parameter)
    origin = f"version {version} of {shadow.parameter}"
    if args.dry_run:
        plan = rulesstore.plan(
            ssm, live.parameter, text, served.domain, served.repositories, origin
        )
        if plan.changed:
            outcome = f"a promotion would write it as {live.parameter}'s new version"
        else:
            outcome = f"{live.parameter} version {plan.current_version} already holds it"
        print(f"{origin}: accepted; {outcome}; nothing written (sha256 {plan.sha256})")
        return 0
    pushed = rulesstore.push(ssm, live.parameter, text, served.domain, served.repositories, origin)
    if pushed.changed:
        print(
            f"{live.parameter}: version {pushed.version} written with {origin} and labelled "
            f"{rulesstore.LABEL} (sha256 {pushed.sha256})"
        )
    else:
        print(
            f"{live.parameter}: unchanged, version {pushed.version} already holds {origin} "
            f"(sha256 {pushed.sha256}); nothing written"
        )
    return 0


def run_history(args: argparse.Namespace) -> int:
    where = target.where(args.stack, args.parameter, shadow=args.shadow)
    session = target.session(args.region)
    versions = rulesstore.history(_ssm(session), where.parameter)
    newest = versions[-1].number
    print(f"{'VERSION':>7}  {'MODIFIED (UTC)':<20}  {'SHA256':<12}  {'STATE':<12}  BY")
    for version in versions:
        state = (["served"] if version.number == newest else []) + list(version.labels)
        modified = (
            version.modified.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            if version.modified
            else "-"
        )
        print(
            f"{version.number:>7}  {modified:<20}  {version.sha256[:12]:<12}  "
            f"{','.join(state) or '-':<12}  {version.user or '-'}"
        )
    if rulesstore.LABEL not in versions[-1].labels:
        print(
            f"cabroker-admin: note: version {newest}, the one the broker serves, was not "
            f"written by `cabroker-admin rules push` or `rollback` (it has no label "
            f"{rulesstore.LABEL!r})",
            file=sys.stderr,
        )
    return 0


def run_pull(args: argparse.Namespace) -> int:
    where = target.where(args.stack, args.parameter, shadow=args.shadow)
    session = target.session(args.region)
    _, text = rulesstore.pull(_ssm(session), where.parameter, args.version)
    sys.stdout.write(text)
    sys.stdout.flush()
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    where = target.where(args.stack, args.parameter, shadow=args.shadow)
    session = target.session(args.region)
    served = _served_of(args, session, where)
    done = rulesstore.rollback(
        _ssm(session), where.parameter, served.domain, served.repositories, args.to
    )
    pushed = done.pushed
    if pushed.changed:
        print(
            f"{where.parameter}: version {pushed.version} written with version {done.source}'s "
            f"document and labelled {rulesstore.LABEL} (sha256 {pushed.sha256})"
        )
    else:
        print(
            f"{where.parameter}: unchanged, version {pushed.version} already holds version "
            f"{done.source}'s document (sha256 {pushed.sha256}); nothing written"
        )
    return 0


def read(file: str) -> str:
    """The document in ``file`` (``-``: stdin), exactly as written."""
    origin = "stdin" if file == "-" else file
    try:
        data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as error:
        raise UsageError(f"{origin}: cannot read: {error.strerror or error}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise rulesstore.RulesRefused(
            f"{origin}: not UTF-8 text (at byte offset {error.start}); nothing written"
        ) from None


def _where(command: argparse.ArgumentParser) -> None:
    chosen = command.add_mutually_exclusive_group(required=True)
    chosen.add_argument(
        "--stack", metavar="NAME", help="the cabroker stack (its parameter /cabroker/NAME/rules)"
    )
    chosen.add_argument("--parameter", metavar="NAME", help="the SSM parameter itself")
    command.add_argument(
        "--shadow",
        action="store_true",
        help="with --stack: its shadow rules (/cabroker/NAME/shadow-rules), which the broker "
        "decides every request with too, never changing the answer (ShadowRules=Enabled)",
    )
    command.add_argument(
        "--region", help="the AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, the profile's)"
    )


def _served(command: argparse.ArgumentParser) -> None:
    given = command.add_argument_group(
        "with --parameter", "what the broker serves (with --stack, read from the stack's outputs)"
    )
    given.add_argument("--domain", metavar="NAME", help="the CodeArtifact domain (DomainName)")
    given.add_argument(
        "--domain-owner", metavar="ACCOUNT", help="the domain's 12-digit owner (DomainOwner)"
    )
    given.add_argument(
        "--repositories",
        metavar="A,B",
        help="the repositories the broker serves, comma-separated (PrivateRepositoryNames)",
    )


def _served_of(
    args: argparse.Namespace, session: boto3.session.Session, where: target.Where
) -> target.Served:
    if where.stack is None:
        return target.from_flags(session, args.domain, args.domain_owner, args.repositories)
    if args.domain or args.domain_owner or args.repositories:
        raise UsageError(
            "--domain, --domain-owner and --repositories go with --parameter; "
            "--stack reads them from the stack's outputs"
        )
    return target.from_stack(target.stacks(session), where.stack, str(session.region_name))


def _ssm(session: boto3.session.Session) -> SSMClient:
    return session.client("ssm")


def _version(raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a version number (1, 2, …)")
    return int(raw)
