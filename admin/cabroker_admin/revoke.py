"""Revoking one identity: an explicit Deny on TokenIssuerRole for the sessions the broker
minted for it (docs/admin.md, "Revoking one identity").

CodeArtifact tokens cannot be revoked one by one, but a token carries the permissions of the
role session that asked for it, evaluated when it is used (the kill switch relies on the
same), and the broker stamps each session with the caller: ``RoleSessionName`` and
``SourceIdentity`` are both :func:`broker.tokens.session_name` of the issuer's name in the
rules and the ID token's ``sub``. A revocation is one inline policy on TokenIssuerRole,
``cabroker-revoke-<id>``, with two Deny statements on every action (``*``: the CodeArtifact
actions a token is used for, and ``sts:GetServiceBearerToken`` and
``codeartifact:GetAuthorizationToken``, so a new session for the identity gets no token
either), each keyed on one thing the broker stamps:

- ``aws:SourceIdentity`` equals the stamped name. AWS: "After a source identity is set, the
  aws:SourceIdentity key is present in all subsequent requests made during the role session"
  (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_temp_control-access_monitor.html);
- ``aws:userid`` equals ``ROLE-ID:SESSION-NAME``, its documented value for a role session
  (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html#principaltable),
  RoleId read from ``iam:GetRole``.

Two statements, not one, because keys within one condition must all match while either key
alone should deny. Why both: AWS documents the keys for requests "made during the role
session", and says service bearer tokens "include information from your original principal
authentication that might affect your permissions. This information can include principal
tags, session tags, and session policies"
(https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_bearer.html); no AWS page
says which global keys are in the context of a request made *with a CodeArtifact token*, so
the Deny does not rest on one of them. ``sts:SourceIdentity`` is not used: it is in the
context of the AssumeRole request that sets the source identity, not of the session's later
requests (the first page above).

One policy per revocation: adding or lifting one never rewrites another (no lost update
between two admins), and the policy's name is the revocation's id. The id is a digest of the
stamped name, so revoking the same identity twice writes nothing the second time. The policy
is also the only record: the statements' Sid holds when it was written, the condition the
stamped name. IAM caps a role's inline policies at 10,240 characters in all, white space not
counted (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html); a
revocation takes about 350 to 450, so about twenty fit beside TokenIssuerRole's
own policy. A revocation that would not fit is refused before anything is written, with what
to lift.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from broker.rules import _ISSUER_NAME  # the rules' own grammar of issuer names
from broker.settings import ROLE_ARN
from cabroker_admin.errors import AdminError, UsageError, aws_call, aws_error, error_code

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

PREFIX = "cabroker-revoke-"
ID = re.compile(r"^[0-9a-f]{12}$")
ROLE_POLICY_LIMIT = 10_240  # IAM: all inline policies of a role, white space not counted
_SID = re.compile(r"^Revoked(\d{8}T\d{6}Z)By(SourceIdentity|SessionName)$")
_STAMP = "%Y%m%dT%H%M%SZ"
_WHITE_SPACE = re.compile(r"\s+")


def stamped(issuer: str, subject: str) -> str:
    """What the broker stamps on every session it mints for ``subject`` of ``issuer`` (the
    issuer's name in the rules): RoleSessionName and SourceIdentity, by the broker's own
    function."""
    if not _ISSUER_NAME.fullmatch(issuer):
        raise UsageError(
            f"--issuer {issuer!r} is not an issuer name of the rules (their key under "
            f"'issuers:', matching {_ISSUER_NAME.pattern}; not the issuer's URL)"
        )
    if not subject:
        raise UsageError("--subject must not be empty (the ID token's sub claim, exactly)")
    # The broker's own stamping, imported here as the other commands never need it
    # (tests/admin/test_revoke.py runs it with only cabroker-admin's declared dependencies).
    from broker.tokens import session_name

    return session_name(issuer, subject)


def revocation_id(name: str) -> str:
    """The id of the revocation of the stamped ``name``: the same identity, the same id."""
    return hashlib.sha256(name.encode()).hexdigest()[:12]


def policy_name(id_: str) -> str:
    return PREFIX + id_


def role_name(role_arn: str) -> str:
    """The role's name in ``role_arn`` (after its path), or a usage error."""
    if not ROLE_ARN.fullmatch(role_arn):
        raise UsageError(f"--role-arn {role_arn!r} is not an IAM role ARN")
    return role_arn.rsplit("/", 1)[1]


@dataclass(frozen=True)
class Revocation:
    """One revocation in force, as its policy says it (``None`` where it cannot be read)."""

    id: str
    name: str | None  # the stamped name: issuer.subject as the broker writes it
    revoked_at: datetime | None


def document(name: str, role_id: str, revoked_at: datetime) -> dict[str, Any]:
    """The revocation's policy: Deny everything to sessions stamped ``name``."""
    when = revoked_at.astimezone(UTC).strftime(_STAMP)

    def deny(by: str, condition: dict[str, Any]) -> dict[str, Any]:
        return {
            "Sid": f"Revoked{when}By{by}",
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": condition,
        }

    return {
        "Version": "2012-10-17",
        "Statement": [
            deny("SourceIdentity", {"StringEquals": {"aws:SourceIdentity": name}}),
            deny("SessionName", {"StringEquals": {"aws:userid": f"{role_id}:{name}"}}),
        ],
    }


def compact(policy: Mapping[str, Any]) -> str:
    return json.dumps(policy, separators=(",", ":"))


def size(policy: Mapping[str, Any]) -> int:
    """The policy's size as IAM counts it against its limits: characters, white space not
    counted."""
    return len(_WHITE_SPACE.sub("", compact(policy)))


def parse(id_: str, policy: Mapping[str, Any]) -> Revocation:
    """What a revocation's policy says: the stamped name and when it was written."""
    name: str | None = None
    revoked_at: datetime | None = None
    statements = policy.get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        if not isinstance(statement, Mapping):
            continue
        matched = _SID.fullmatch(str(statement.get("Sid", "")))
        if matched is None:
            continue
        try:
            revoked_at = datetime.strptime(matched.group(1), _STAMP).replace(tzinfo=UTC)
        except ValueError:  # edited by hand into something that is no time
            revoked_at = None
        equals = statement.get("Condition", {}).get("StringEquals", {})
        if matched.group(2) == "SourceIdentity" and "aws:SourceIdentity" in equals:
            name = str(equals["aws:SourceIdentity"])
        elif name is None and "aws:userid" in equals:
            name = str(equals["aws:userid"]).split(":", 1)[-1]
    return Revocation(id_, name, revoked_at)


@dataclass(frozen=True)
class Revoked:
    """The outcome of :func:`revoke`: the revocation, and whether this call wrote it."""

    revocation: Revocation
    written: bool


class Revocations:
    """The revocations on one role, through IAM (the standard credential chain)."""

    def __init__(
        self,
        iam: IAMClient,
        role_arn: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._iam = iam
        self._arn = role_arn
        self.role = role_name(role_arn)
        self._clock = clock

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        return aws_call(what, f"role {self.role}", call)

    def _policy_names(self) -> list[str]:
        def names() -> list[str]:
            pages = self._iam.get_paginator("list_role_policies").paginate(RoleName=self.role)
            return [name for page in pages for name in page["PolicyNames"]]

        listed: list[str] = self._call("iam:ListRolePolicies", names)
        return listed

    def _policy(self, name: str) -> dict[str, Any]:
        found = self._call(
            "iam:GetRolePolicy",
            lambda: self._iam.get_role_policy(RoleName=self.role, PolicyName=name),
        )
        raw = found["PolicyDocument"]
        if isinstance(raw, str):  # boto3 decodes it; other clients may hand it URL-encoded
            parsed: dict[str, Any] = json.loads(urllib.parse.unquote(raw))
            return parsed
        return dict(raw)

    def _role_id(self) -> str:
        role = self._call("iam:GetRole", lambda: self._iam.get_role(RoleName=self.role))["Role"]
        if role["Arn"] != self._arn:
            raise AdminError(f"role {self.role}: its ARN is {role['Arn']}, not {self._arn}")
        return str(role["RoleId"])

    def revoke(self, name: str) -> Revoked:
        """Deny every session stamped ``name``; nothing written when it is revoked already."""
        id_ = revocation_id(name)
        role_id = self._role_id()
        names = self._policy_names()
        if policy_name(id_) in names:
            return Revoked(parse(id_, self._policy(policy_name(id_))), written=False)
        new = document(name, role_id, self._clock())
        used = sum(size(self._policy(existing)) for existing in names)
        if used + size(new) > ROLE_POLICY_LIMIT:
            raise self._full(used, size(new))
        try:
            self._iam.put_role_policy(
                RoleName=self.role, PolicyName=policy_name(id_), PolicyDocument=compact(new)
            )
        except (ClientError, BotoCoreError) as error:  # BotoCoreError: no answer (connection)
            if isinstance(error, ClientError) and error_code(error) == "LimitExceeded":
                raise self._full(used, size(new)) from None
            raise aws_error("iam:PutRolePolicy", f"role {self.role}", error) from None
        return Revoked(parse(id_, new), written=True)

    def _full(self, used: int, needed: int) -> AdminError:
        return AdminError(
            f"role {self.role}: no room for another revocation: its inline policies hold "
            f"about {used} of the {ROLE_POLICY_LIMIT:,} characters IAM allows a role, and "
            f"this one needs {needed}; nothing written. Lift revocations whose identities "
            "the rules no longer match (--list, --lift ID), or use the kill switch"
        )

    def in_force(self) -> list[Revocation]:
        """The revocations in force, oldest first."""
        found = [
            parse(name.removeprefix(PREFIX), self._policy(name))
            for name in self._policy_names()
            if name.startswith(PREFIX)
        ]
        oldest = datetime.min.replace(tzinfo=UTC)
        return sorted(found, key=lambda r: (r.revoked_at or oldest, r.id))

    def lift(self, id_: str) -> Revocation:
        """Delete revocation ``id_``; its identity's sessions are allowed again."""
        if not ID.fullmatch(id_):
            raise UsageError(f"--lift {id_!r} is not a revocation id (12 hex digits; --list)")
        if policy_name(id_) not in self._policy_names():
            raise AdminError(f"role {self.role}: no revocation {id_} (--list shows those in force)")
        revocation = parse(id_, self._policy(policy_name(id_)))
        self._call(
            "iam:DeleteRolePolicy",
            lambda: self._iam.delete_role_policy(RoleName=self.role, PolicyName=policy_name(id_)),
        )
        return revocation
