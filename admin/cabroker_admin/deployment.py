"""What the admin tools know of a deployment: what they are told with flags, and what they assume
of one they are not told about.

``PLACEHOLDER_DOMAIN`` is the CodeArtifact domain a session policy's size is computed for when
no ``--domain``/``--domain-owner``/``--region``/``--partition`` is given: ``domain`` of account
``111122223333`` in ``us-east-1``. A real domain's ARNs are at most a few characters longer per
ARN. ``rules check`` (:mod:`cabroker_admin.lint`) and ``rules explain|test|diff``
(:mod:`cabroker_admin.evaluate`) both declare and read these flags here (:func:`add_flags`,
:func:`domain_of`, :func:`repositories_of`).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable

from broker.acceptance import accept
from broker.rules import RulesError, RuleSet
from broker.scope import Domain
from broker.settings import ACCOUNT_ID, DOMAIN_NAME, REGION
from cabroker_admin import target
from cabroker_admin.errors import AdminError, UsageError, one_line

PLACEHOLDER_DOMAIN = Domain(
    partition="aws", region="us-east-1", owner="111122223333", name="domain"
)
PARTITION = re.compile(r"^aws(-[a-z]+)*$")


def add_flags(group: argparse._ArgumentGroup) -> None:
    """``--repositories``, ``--domain``, ``--domain-owner``, ``--region``, ``--partition``."""
    placeholder = PLACEHOLDER_DOMAIN
    group.add_argument(
        "--repositories",
        metavar="A,B",
        help="the repositories the broker serves (the stack's PrivateRepositoryNames)",
    )
    group.add_argument(
        "--domain",
        metavar="NAME",
        default=placeholder.name,
        help=f"the CodeArtifact domain (default: {placeholder.name})",
    )
    group.add_argument(
        "--domain-owner",
        metavar="ACCOUNT",
        default=placeholder.owner,
        help=f"the domain's owner account (default: {placeholder.owner})",
    )
    group.add_argument(
        "--region",
        default=placeholder.region,
        help=f"the domain's region (default: {placeholder.region})",
    )
    group.add_argument(
        "--partition",
        default=placeholder.partition,
        help=f"the AWS partition (default: {placeholder.partition})",
    )


def domain_of(args: argparse.Namespace) -> Domain:
    """The domain the flags name (the placeholder's parts where none is given); UsageError for
    a malformed one."""
    if not DOMAIN_NAME.fullmatch(args.domain):
        raise UsageError(f"--domain {args.domain!r} is not a CodeArtifact domain name")
    if not ACCOUNT_ID.fullmatch(args.domain_owner):
        raise UsageError(f"--domain-owner {args.domain_owner!r} is not a 12-digit AWS account id")
    if not REGION.fullmatch(args.region):
        raise UsageError(f"--region {args.region!r} is not an AWS region")
    if not PARTITION.fullmatch(args.partition):
        raise UsageError(f"--partition {args.partition!r} is not an AWS partition")
    return Domain(
        partition=args.partition, region=args.region, owner=args.domain_owner, name=args.domain
    )


def repositories_of(args: argparse.Namespace) -> tuple[str, ...]:
    """The repositories ``--repositories`` lists; none when it is not given."""
    if args.repositories is None:
        return ()
    return target.repositories(args.repositories, "--repositories", UsageError)


def accepted(
    text: str, origin: str, domain: Domain, served: Iterable[str], error: type[AdminError]
) -> RuleSet:
    """The rules in ``text`` if the broker would serve them for ``domain`` and the repositories
    ``served`` (:func:`broker.acceptance.accept`, the broker's one acceptance check); else
    ``error``, one line starting with ``origin`` (a file, a version of the parameter)."""
    try:
        return accept(text, domain, tuple(served))
    except RulesError as refused:
        raise error(f"{origin}: {one_line(str(refused))}") from None
    except Exception as failed:  # noqa: BLE001 - as the broker: any failure means "invalid"
        raise error(
            f"{origin}: the document could not be compiled ({type(failed).__name__})"
        ) from None
