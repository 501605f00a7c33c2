"""Which rules parameter a command acts on, and what a document is checked against there.

``--stack NAME``: the parameter ``/cabroker/NAME/rules`` (the template's naming; with
``--shadow``, the shadow rules' ``/cabroker/NAME/shadow-rules``), and for a
check the stack's outputs ``DomainName``, ``DomainOwner``, ``PrivateRepositoryNames`` and
``TokenIssuerRoleArn`` (its partition and account), which are what the deployed function is
configured with. ``--parameter NAME``: that parameter, and for a check the flags
``--domain``, ``--domain-owner`` and ``--repositories``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

import boto3
from botocore.exceptions import BotoCoreError

from broker.scope import Domain, partition_of
from broker.settings import ACCOUNT_ID, DOMAIN_NAME, ROLE_ARN, repository_names
from cabroker_admin.errors import AdminError, UsageError, aws_call, one_line

STACK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
PARAMETER_NAME = re.compile(r"^[A-Za-z0-9_./-]{1,2048}$")


def rules_parameter(stack: str) -> str:
    """The rules parameter of a stack (``/cabroker/<stack name>/rules``)."""
    return f"/cabroker/{stack}/rules"


def shadow_rules_parameter(stack: str) -> str:
    """The shadow rules parameter of a stack (``/cabroker/<stack name>/shadow-rules``), which
    the broker reads with ShadowRules=Enabled."""
    return f"/cabroker/{stack}/shadow-rules"


class Stacks(Protocol):
    """The one CloudFormation call the tools make."""

    def describe_stacks(self, *, StackName: str) -> Mapping[str, Any]: ...  # noqa: N803


@dataclass(frozen=True)
class Where:
    """The parameter, and the stack it belongs to when the command named one."""

    parameter: str
    stack: str | None


@dataclass(frozen=True)
class Served:
    """What a document is checked against: the domain and the repositories the broker serves."""

    domain: Domain
    repositories: tuple[str, ...]


def where(stack: str | None, parameter: str | None, *, shadow: bool = False) -> Where:
    if stack is not None:
        if not STACK_NAME.fullmatch(stack):
            raise UsageError(f"--stack {stack!r} is not a CloudFormation stack name")
        return Where(shadow_rules_parameter(stack) if shadow else rules_parameter(stack), stack)
    if shadow:
        raise UsageError("--shadow goes with --stack; with --parameter, name the parameter")
    if parameter is None or not PARAMETER_NAME.fullmatch(parameter):
        raise UsageError(f"--parameter {parameter!r} is not an SSM parameter name")
    return Where(parameter, None)


def session(region: str | None) -> boto3.session.Session:
    """A boto3 session from the standard settings (credentials, profile, endpoint), in
    ``region`` or else AWS_REGION / AWS_DEFAULT_REGION / the profile's region."""
    try:
        made = boto3.session.Session(region_name=region or os.environ.get("AWS_REGION") or None)
    except BotoCoreError as error:
        raise AdminError(f"AWS settings: {type(error).__name__}: {one_line(str(error))}") from None
    if not made.region_name:
        raise UsageError("no AWS region: pass --region or set AWS_REGION")
    return made


def from_stack(stacks: Stacks, stack: str, region: str) -> Served:
    """The domain and repositories of a deployed cabroker stack, from its outputs."""
    answer = aws_call(
        "cloudformation:DescribeStacks",
        f"stack {stack}",
        lambda: stacks.describe_stacks(StackName=stack),
    )
    found = list(answer.get("Stacks", []))
    if not found:
        raise AdminError(f"stack {stack}: not found in {region}")
    outputs = {
        str(output.get("OutputKey")): str(output.get("OutputValue", ""))
        for output in found[0].get("Outputs", [])
    }

    def output(name: str) -> str:
        value = outputs.get(name, "")
        if not value:
            raise AdminError(
                f"stack {stack}: no output {name} (is it a cabroker stack, fully deployed?)"
            )
        return value

    named = outputs.get("RulesParameterName")
    if named and named != rules_parameter(stack):
        raise AdminError(
            f"stack {stack}: its RulesParameterName is {named}, not {rules_parameter(stack)}; "
            "use --parameter with --domain, --domain-owner and --repositories"
        )
    role = output("TokenIssuerRoleArn")
    if not ROLE_ARN.fullmatch(role):
        raise AdminError(f"stack {stack}: output TokenIssuerRoleArn {role!r} is not a role ARN")
    listed = outputs.get("PrivateRepositoryNames") or output("PrivateRepositoryName")
    owner = outputs.get("DomainOwner") or role.split(":")[4]  # else the stack's own account
    if not ACCOUNT_ID.fullmatch(owner):
        raise AdminError(f"stack {stack}: output DomainOwner {owner!r} is not an account id")
    return Served(
        domain=Domain(
            partition=partition_of(role), region=region, owner=owner, name=output("DomainName")
        ),
        repositories=repositories(listed, f"stack {stack}: output PrivateRepositoryNames"),
    )


def from_flags(
    session: boto3.session.Session,
    domain: str | None,
    owner: str | None,
    listed: str | None,
) -> Served:
    """The domain and repositories given on the command line (with ``--parameter``)."""
    if domain is None or owner is None or listed is None:
        raise UsageError(
            "with --parameter, give --domain, --domain-owner and --repositories (the stack's "
            "DomainName, DomainOwner and PrivateRepositoryNames), or use --stack"
        )
    if not DOMAIN_NAME.fullmatch(domain):
        raise UsageError(f"--domain {domain!r} is not a CodeArtifact domain name")
    if not ACCOUNT_ID.fullmatch(owner):
        raise UsageError(f"--domain-owner {owner!r} is not a 12-digit AWS account id")
    region = str(session.region_name)
    return Served(
        domain=Domain(
            partition=session.get_partition_for_region(region),
            region=region,
            owner=owner,
            name=domain,
        ),
        repositories=repositories(listed, "--repositories", UsageError),
    )


def repositories(listed: str, where: str, error: type[AdminError] = AdminError) -> tuple[str, ...]:
    """Comma-separated repository names, read as the broker reads BROKER_REPOSITORIES; at
    least one."""
    try:
        names = repository_names(listed)
    except ValueError as problem:
        raise error(f"{where}: {problem}") from None
    if not names:
        raise error(f"{where}: names no repository")
    return names


def stacks(session: boto3.session.Session) -> Stacks:
    return cast(Stacks, session.client("cloudformation"))
