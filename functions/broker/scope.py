"""Grant → the session policy sent with sts:AssumeRole.

The minted CodeArtifact token carries the permissions of the assumed session, so this policy
*is* the token's scope: the intersection of TokenIssuerRole's policies and this document.

- every grant: ``codeartifact:GetAuthorizationToken`` on the domain, and
  ``sts:GetServiceBearerToken`` for CodeArtifact only, no longer than the granted duration;
- read: ``ReadFromRepository`` and ``GetRepositoryEndpoint`` on the repository (read is
  repository-level in CodeArtifact);
- publish: read, plus ``PublishPackageVersion`` and ``PutPackageMetadata`` on the package ARNs
  of the granted, normalized name patterns (package-level).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .grants import ResolvedGrant
from .problems import PolicyTooLarge
from .rules import RulesError, RuleSet
from .settings import MAX_TOKEN_SECONDS, Settings

MAX_POLICY_CHARS = 2048  # AWS limit for inline session policies (plain text)
READ_ACTIONS = ["codeartifact:ReadFromRepository", "codeartifact:GetRepositoryEndpoint"]
PUBLISH_ACTIONS = ["codeartifact:PublishPackageVersion", "codeartifact:PutPackageMetadata"]


@dataclass(frozen=True)
class Domain:
    partition: str
    region: str
    owner: str
    name: str

    @classmethod
    def of(cls, settings: Settings) -> Domain:
        return cls(
            partition=partition_of(settings.role_arn),
            region=settings.region,
            owner=settings.domain_owner,
            name=settings.domain,
        )

    def arn(self, resource: str) -> str:
        return f"arn:{self.partition}:codeartifact:{self.region}:{self.owner}:{resource}"

    def domain_arn(self) -> str:
        return self.arn(f"domain/{self.name}")

    def repository_arn(self, repository: str) -> str:
        return self.arn(f"repository/{self.name}/{repository}")

    def package_arn(self, repository: str, pattern: str) -> str:
        # PyPI packages have no namespace, hence the empty segment: pypi//NAME.
        return self.arn(f"package/{self.name}/{repository}/pypi//{pattern}")


def partition_of(arn: str) -> str:
    return arn.split(":", 2)[1]


def session_policy(grant: ResolvedGrant, domain: Domain) -> str:
    """The compact JSON session policy for ``grant``; refuses what would not fit."""
    statements: list[dict[str, Any]] = [
        {
            "Sid": "Token",
            "Effect": "Allow",
            "Action": "codeartifact:GetAuthorizationToken",
            "Resource": domain.domain_arn(),
        },
        {
            # GetServiceBearerToken has no resource type: "*" is the only possible Resource.
            "Sid": "Bearer",
            "Effect": "Allow",
            "Action": "sts:GetServiceBearerToken",
            "Resource": "*",
            "Condition": {
                "StringEquals": {"sts:AWSServiceName": "codeartifact.amazonaws.com"},
                "NumericLessThanEquals": {"sts:DurationSeconds": grant.duration_seconds},
            },
        },
        {
            "Sid": "Read",
            "Effect": "Allow",
            "Action": READ_ACTIONS,
            "Resource": domain.repository_arn(grant.repository),
        },
    ]
    if grant.access == "publish":
        statements.append(
            {
                "Sid": "Publish",
                "Effect": "Allow",
                "Action": PUBLISH_ACTIONS,
                "Resource": [domain.package_arn(grant.repository, p) for p in grant.packages],
            }
        )
    policy = json.dumps({"Version": "2012-10-17", "Statement": statements}, separators=(",", ":"))
    if len(policy) > MAX_POLICY_CHARS:
        raise PolicyTooLarge(
            f"the session policy for {len(grant.packages)} package pattern(s) would be "
            f"{len(policy)} characters, over the {MAX_POLICY_CHARS} AWS allows; "
            "ask for fewer or broader package patterns"
        )
    return policy


def check_fits(rules: RuleSet, domain: Domain) -> None:
    """Refuse, at load, a rule whose full grant could never fit in a session policy."""
    for rule in rules.rules:
        grant = ResolvedGrant(
            rule=rule.name,
            repository=rule.grant.repository,
            access=rule.grant.access,
            packages=rule.grant.packages,
            duration_seconds=MAX_TOKEN_SECONDS,
        )
        try:
            session_policy(grant, domain)
        except PolicyTooLarge as exc:
            raise RulesError(f"rule {rule.name!r}: field 'grant.packages': {exc.detail}") from None
