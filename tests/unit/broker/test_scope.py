"""The session policy for each grant shape, asserted structurally, and its size limit."""

from __future__ import annotations

import json
from typing import Any

import pytest

from broker.grants import ResolvedGrant
from broker.problems import PolicyTooLarge
from broker.scope import MAX_POLICY_CHARS, Domain, partition_of, session_policy

DOMAIN = Domain(partition="aws", region="eu-west-1", owner="111122223333", name="acme")
PREFIX = "arn:aws:codeartifact:eu-west-1:111122223333"


def grant(access: str = "read", packages: tuple[str, ...] = (), duration: int = 3600) -> Any:
    return ResolvedGrant("r", "internal", access, packages, duration)  # type: ignore[arg-type]


def policy_of(g: ResolvedGrant) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(session_policy(g, DOMAIN))
    return parsed


def test_read_grant_is_repository_level_only() -> None:
    policy = policy_of(grant("read"))
    assert policy == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Token",
                "Effect": "Allow",
                "Action": "codeartifact:GetAuthorizationToken",
                "Resource": f"{PREFIX}:domain/acme",
            },
            {
                "Sid": "Bearer",
                "Effect": "Allow",
                "Action": "sts:GetServiceBearerToken",
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"sts:AWSServiceName": "codeartifact.amazonaws.com"},
                    "NumericLessThanEquals": {"sts:DurationSeconds": 3600},
                },
            },
            {
                "Sid": "Read",
                "Effect": "Allow",
                "Action": [
                    "codeartifact:ReadFromRepository",
                    "codeartifact:GetRepositoryEndpoint",
                ],
                "Resource": f"{PREFIX}:repository/acme/internal",
            },
        ],
    }


def test_publish_grant_adds_package_level_publish_only() -> None:
    policy = policy_of(grant("publish", ("acme-*", "tools")))
    publish = policy["Statement"][-1]
    assert publish == {
        "Sid": "Publish",
        "Effect": "Allow",
        "Action": ["codeartifact:PublishPackageVersion", "codeartifact:PutPackageMetadata"],
        "Resource": [
            f"{PREFIX}:package/acme/internal/pypi//acme-*",
            f"{PREFIX}:package/acme/internal/pypi//tools",
        ],
    }
    assert len(policy["Statement"]) == 4


def test_no_statement_allows_anything_outside_the_grant() -> None:
    policy = policy_of(grant("publish", ("acme-*",)))
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        resources = statement["Resource"]
        resources = resources if isinstance(resources, list) else [resources]
        for resource in resources:
            if resource == "*":
                assert statement["Action"] == "sts:GetServiceBearerToken"
                assert "sts:AWSServiceName" in statement["Condition"]["StringEquals"]
            else:
                assert resource.startswith(PREFIX)
                assert "/internal" in resource or resource.endswith("domain/acme")


def test_partition_comes_from_the_role_arn() -> None:
    assert partition_of("arn:aws-cn:iam::111122223333:role/x") == "aws-cn"
    china = Domain("aws-cn", "cn-north-1", "111122223333", "acme")
    assert json.loads(session_policy(grant(), china))["Statement"][0]["Resource"].startswith(
        "arn:aws-cn:codeartifact:cn-north-1:"
    )


def test_policy_is_compact_and_fits_a_dozen_realistic_patterns() -> None:
    patterns = tuple(f"acme-component-{i:02d}-*" for i in range(12))
    text = session_policy(grant("publish", patterns), DOMAIN)
    assert len(text) <= MAX_POLICY_CHARS
    assert " " not in text


def test_policy_over_the_limit_fails_clearly() -> None:
    patterns = tuple(f"acme-a-very-long-package-name-number-{i:02d}" for i in range(20))
    with pytest.raises(PolicyTooLarge) as refused:
        session_policy(grant("publish", patterns), DOMAIN)
    assert "over the 2048" in refused.value.detail
    assert refused.value.status == 400


def test_rules_whose_grant_cannot_fit_are_refused_at_load() -> None:
    from broker.rules import RulesError, parse
    from broker.scope import check_fits

    patterns = ", ".join(f"acme-a-very-long-package-name-number-{i:02d}" for i in range(20))
    text = (
        "version: 1\nissuers:\n  corp: {url: 'https://login.example.com', audience: a}\n"
        "rules:\n  - {name: big, issuer: corp, claims: {groups: release}, grant: "
        f"{{repository: internal, access: publish, packages: [{patterns}]}}}}\n"
    )
    with pytest.raises(RulesError) as refused:
        check_fits(parse(text), DOMAIN)
    assert "rule 'big': field 'grant.packages'" in str(refused.value)
