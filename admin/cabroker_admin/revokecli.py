"""``cabroker-admin revoke``: stop every token minted for one identity, list the revocations in
force, lift one (docs/admin.md, "Revoking one identity"). The work is done by
:mod:`cabroker_admin.revoke`; this module reads the command line and prints. It never sees a
token."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from cabroker_admin import revoke, target
from cabroker_admin.errors import UsageError

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

    Groups = argparse._SubParsersAction[argparse.ArgumentParser]


def register(groups: Groups) -> None:
    command = groups.add_parser(
        "revoke",
        help="stop every token minted for one identity; list or lift revocations",
        description="Revoke one identity: an explicit Deny on TokenIssuerRole (an inline policy "
        "cabroker-revoke-ID) for the sessions the broker stamps with it (SourceIdentity and "
        "session name: ISSUER.SUBJECT), so every token minted for it is refused at its next "
        "use, and new ones too. Remove the identity from the rules as well.",
        epilog="docs/admin.md, 'Revoking one identity', says what it stops and what it cannot.",
    )
    command.add_argument(
        "--role-arn",
        required=True,
        metavar="ARN",
        help="TokenIssuerRole's ARN (the stack's output TokenIssuerRoleArn)",
    )
    command.add_argument(
        "--issuer", metavar="NAME", help="the issuer's name in the rules (e.g. github), not its URL"
    )
    command.add_argument(
        "--subject", metavar="SUBJECT", help="the ID token's sub claim, exactly as it is"
    )
    mode = command.add_mutually_exclusive_group()
    mode.add_argument("--list", action="store_true", help="list the revocations in force")
    mode.add_argument("--lift", metavar="ID", help="remove revocation ID (as --list shows it)")
    command.add_argument(
        "--region", help="the AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, the profile's)"
    )
    command.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    manage = args.list or args.lift is not None
    if manage and (args.issuer is not None or args.subject is not None):
        raise UsageError(
            "--issuer and --subject name an identity to revoke; --list and --lift take none"
        )
    if not manage and (args.issuer is None or args.subject is None):
        raise UsageError(
            "give --issuer and --subject (the identity to revoke), or --list, or --lift ID"
        )
    role = revoke.role_name(args.role_arn)
    name = None if manage else revoke.stamped(args.issuer, args.subject)
    revocations = revoke.Revocations(_iam(args.region, args.role_arn), args.role_arn)
    if name is not None:
        return _revoke(revocations, role, name, f"{args.issuer}.{args.subject}")
    if args.list:
        return _list(revocations.in_force(), role)
    lifted = revocations.lift(args.lift)
    print(
        f"{role}: revocation {lifted.id} of {lifted.name or '?'} lifted; tokens minted for it "
        "work again until they expire, and the broker mints for it while the rules match it"
    )
    return 0


def _iam(region: str | None, role_arn: str) -> IAMClient:
    """IAM through the standard credential chain and endpoint settings, in the role's
    partition."""
    session = target.session(region)
    partition = session.get_partition_for_region(str(session.region_name))
    if role_arn.split(":")[1] != partition:
        raise UsageError(
            f"--role-arn is in partition {role_arn.split(':')[1]}, "
            f"but region {session.region_name} is in {partition}"
        )
    iam: IAMClient = session.client("iam")
    return iam


def _revoke(revocations: revoke.Revocations, role: str, name: str, given: str) -> int:
    done = revocations.revoke(name)
    revocation = done.revocation
    if done.written:
        print(
            f"{role}: {name} revoked, id {revocation.id} (inline policy "
            f"{revoke.policy_name(revocation.id)}); every token minted for it is refused from "
            f"its next use. Lift with --lift {revocation.id}"
        )
    else:
        print(
            f"{role}: {name} is revoked already, id {revocation.id} since "
            f"{_when(revocation.revoked_at)}; nothing written"
        )
    if name != given:
        print(
            f"cabroker-admin: note: the broker stamps this subject as {name} (characters "
            "outside AWS's set replaced, a long one cut and hashed); every subject it stamps "
            "the same way is revoked with it",
            file=sys.stderr,
        )
    print(
        "cabroker-admin: note: remove the identity from the rules too: while a rule matches "
        "it, the broker answers it with 503 (a new token is denied) or with a token minted "
        "before, refused at use",
        file=sys.stderr,
    )
    return 0


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "?"


def _list(revocations: list[revoke.Revocation], role: str) -> int:
    if not revocations:
        print(f"{role}: no revocation in force")
        return 0
    print(f"{'ID':<12}  {'REVOKED (UTC)':<20}  IDENTITY (as the broker stamps it: ISSUER.SUBJECT)")
    for revocation in revocations:
        print(f"{revocation.id:<12}  {_when(revocation.revoked_at):<20}  {revocation.name or '?'}")
    return 0
