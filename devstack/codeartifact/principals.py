"""Who signed a request to the stand-in, and what they may do, read from moto's IAM and STS.

The stand-in runs in the same process as moto's server, so it reads moto's state directly:
an access key id from an AssumeRole session names the role and the session policy it was
assumed with (moto keeps both on ``AssumedRole``), and the role's inline and attached policies
come from moto's IAM backend *at the time of each check*, so a Deny added to the role later
stops tokens already issued, as in AWS.

Permissions are evaluated as IAM does: an explicit Deny anywhere wins; otherwise the role's
policies must allow the action and, when the session has a session policy, so must that
policy (their intersection). Each statement's ``Condition`` is evaluated by
:mod:`.conditions` against the request's context keys plus the session's own global keys,
``aws:userid`` (``ROLE-ID:SESSION-NAME``) and, when the session was given one,
``aws:SourceIdentity`` (kept by :mod:`.sessions`, since moto drops it); moto's evaluator
(``moto.iam.access_control``) then matches Action, Resource and Effect of the statements whose
conditions hold. So a Deny keyed on one session's source identity or session name stops that
session (and every token it obtained) and no other, as in AWS; ``sts:SourceIdentity`` is only
in the AssumeRole request itself, never in a session's later requests, so a Deny keyed on it
stops nothing here.

Any access key moto does not know (the devstack's administrator, ``aws codeartifact login``
with made-up keys) is the account's root: moto does not enforce IAM for unknown keys either.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from moto.iam.access_control import IAMPolicy, PermissionResult
from moto.iam.models import Policy, iam_backends
from moto.sts.models import sts_backends

from . import sessions
from .conditions import applicable

sessions.install()  # moto's STS keeps each session's SourceIdentity from here on

PARTITION = "aws"
CREDENTIAL = re.compile(
    r"Credential=([A-Za-z0-9-]{1,128})/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request"
)


def access_key_of(authorization: str | None) -> str | None:
    """The access key id of a SigV4 ``Authorization`` header, or None."""
    match = CREDENTIAL.search(authorization or "")
    return match.group(1) if match else None


def document_of(policy: Any) -> dict[str, Any]:
    """A policy's JSON document: moto's inline (a string) or managed policy (its default
    version), or a session policy."""
    if isinstance(policy, Policy):
        text = next(version.document for version in policy.versions if version.is_default)
    elif isinstance(policy, str):
        text = policy
    else:
        text = policy["policy_document"]
    document: dict[str, Any] = json.loads(text)
    return document


def decide(documents: list[Any], action: str, resource: str, context: dict[str, str]) -> bool:
    """Whether ``documents`` allow ``action`` on ``resource``: some Allow and no Deny, counting
    only the statements whose conditions hold for ``context``."""
    allowed = False
    for document in documents:
        evaluated = json.dumps(applicable(document_of(document), context))
        result = IAMPolicy(evaluated).is_action_permitted(action, resource)
        if result == PermissionResult.DENIED:
            return False
        allowed = allowed or result == PermissionResult.PERMITTED
    return allowed


@dataclass(frozen=True)
class AssumedRoleSession:
    """A principal from an STS AssumeRole session (moto's record of it)."""

    account: str
    access_key_id: str
    arn: str
    role_name: str
    session_policy: str | None
    expires: datetime
    user_id: str = ""  # aws:userid, ROLE-ID:SESSION-NAME
    source_identity: str | None = None  # aws:SourceIdentity, when AssumeRole set one

    def global_keys(self) -> dict[str, str]:
        """The session's own keys in the context of each of its requests (never the
        caller's to choose)."""
        keys = {"aws:userid": self.user_id} if self.user_id else {}
        if self.source_identity is not None:
            keys["aws:SourceIdentity"] = self.source_identity
        return keys

    def role_policies(self) -> list[Any]:
        iam = iam_backends[self.account][PARTITION]
        try:
            inline_names = iam.list_role_policies(self.role_name)
        except Exception:  # noqa: BLE001 - the role was deleted: nothing allowed
            return []
        documents: list[Any] = [iam.get_role_policy(self.role_name, n)[1] for n in inline_names]
        attached, _ = iam.list_attached_role_policies(self.role_name)
        return documents + list(attached)

    def allows(self, action: str, resource: str, context: dict[str, str] | None = None) -> bool:
        context = {**(context or {}), **self.global_keys()}
        if not decide(self.role_policies(), action, resource, context):
            return False
        if self.session_policy is None:
            return True
        return decide([self.session_policy], action, resource, context)


@dataclass(frozen=True)
class AccountRoot:
    """Any access key moto does not know: the account itself, allowed everything."""

    account: str

    @property
    def arn(self) -> str:
        return f"arn:{PARTITION}:iam::{self.account}:root"

    def allows(self, action: str, resource: str, context: dict[str, str] | None = None) -> bool:
        return True


Caller = AssumedRoleSession | AccountRoot


def caller(access_key_id: str | None, default_account: str) -> Caller:
    """The principal behind ``access_key_id``: a moto AssumeRole session, or the root."""
    if access_key_id:
        for account, partitions in list(sts_backends.items()):
            backend = partitions.get(PARTITION) if hasattr(partitions, "get") else None
            if backend is None:
                continue
            assumed = backend.get_assumed_role_from_access_key(access_key_id)
            if assumed is not None:
                expires = assumed.expiration
                if expires.tzinfo is None:
                    expires = expires.replace(tzinfo=UTC)
                return AssumedRoleSession(
                    account=account,
                    access_key_id=access_key_id,
                    arn=assumed.arn,
                    role_name=assumed.role_arn.split("/")[-1],
                    session_policy=assumed.policy or None,
                    expires=expires,
                    user_id=assumed.user_id,
                    source_identity=sessions.source_identity(assumed),
                )
    return AccountRoot(default_account)
