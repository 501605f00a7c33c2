"""The broker's session policies and TokenIssuerRole agree.

A token carries the intersection of TokenIssuerRole's policy and the session policy. If the
broker's scope builder allowed something the role does not, the minted token would silently
lack what the broker promised (pip or twine would fail with a misleading 404). So, for grants
generated over everything the rules can express, every action the session policy allows on
each concrete ARN must be allowed by the role too, as moto's IAM policy evaluator sees them.
Rules grant any repository the deployment serves (the Iam stack's RepositoryNames), read or
publish; the role is also the ceiling: a grant on any other repository (the store included) finds
the role refusing it.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto.iam.access_control import IAMPolicy, PermissionResult

from broker.grants import ResolvedGrant
from broker.scope import Domain, session_policy
from devstack import cfn_yaml
from tests.infra.cfn_eval import PSEUDO_PARAMETERS as PSEUDO
from tests.infra.cfn_eval import Stack

IAM_TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "iam.yaml"
# The repositories the deployment serves: the default first, names with dots and underscores.
SERVED = ("internal", "restricted", "team_x.lib")
PARAMETERS = {
    "DomainName": "acme",
    "RepositoryNames": ",".join(SERVED),
    "BrokerRoleArn": "arn:aws:iam::111122223333:role/broker",
}
DOMAIN = Domain(
    partition=PSEUDO["AWS::Partition"],
    region=PSEUDO["AWS::Region"],
    owner=PSEUDO["AWS::AccountId"],
    name="acme",
)
Policy = dict[str, Any]


def role_policy(template: dict[str, Any] | None = None) -> Policy:
    """TokenIssuerRole's inline policy, evaluated as CloudFormation would deploy it."""
    if template is None:
        return copy.deepcopy(_deployed_role_policy())
    (policy,) = template["Resources"]["TokenIssuerRole"]["Properties"]["Policies"]
    document: Policy = Stack(template, PARAMETERS).resolve(policy["PolicyDocument"])
    return document


@functools.cache
def _deployed_role_policy() -> Policy:
    return role_policy(cfn_yaml.load(IAM_TEMPLATE))


def concrete_resources(resource: str) -> list[str]:
    """Concrete ARNs a session-policy resource stands for: a pattern's prefix and a name in it."""
    if resource == "*" or not resource.endswith("*"):
        return [resource]
    stem = resource[:-1]
    return [stem + "x", stem + "lib-2", stem.rstrip("-") if stem.endswith("-") else stem + "1"]


def gaps(grant: ResolvedGrant, role: Policy) -> list[str]:
    """Each (action, ARN) the session policy allows but the role does not."""
    session = json.loads(session_policy(grant, DOMAIN))
    context = {
        "sts:AWSServiceName": "codeartifact.amazonaws.com",
        "sts:DurationSeconds": str(grant.duration_seconds),
    }
    role_evaluator, session_evaluator = IAMPolicy(json.dumps(role)), IAMPolicy(json.dumps(session))
    missing = []
    for statement in session["Statement"]:
        actions = statement["Action"]
        resources = statement["Resource"]
        for action in actions if isinstance(actions, list) else [actions]:
            for pattern in resources if isinstance(resources, list) else [resources]:
                for arn in concrete_resources(pattern):
                    allowed = session_evaluator.is_action_permitted(
                        action, arn, incoming_condition_values=context
                    )
                    if allowed != PermissionResult.PERMITTED:
                        continue  # e.g. "acme" itself is not under "acme-*"
                    granted = role_evaluator.is_action_permitted(
                        action, arn, incoming_condition_values=context
                    )
                    if granted != PermissionResult.PERMITTED:
                        missing.append(f"{action} on {arn}")
    # moto does not evaluate numeric conditions: check the role's duration cap directly.
    for statement in role["Statement"]:
        cap = statement.get("Condition", {}).get("NumericLessThanEquals", {})
        if "sts:DurationSeconds" in cap and grant.duration_seconds > int(
            cap["sts:DurationSeconds"]
        ):
            missing.append(f"sts:GetServiceBearerToken for {grant.duration_seconds} s")
    return missing


NAME = st.from_regex(r"[a-z0-9]{1,8}(-[a-z0-9]{1,8}){0,2}", fullmatch=True)
PATTERN = st.one_of(NAME, NAME.map(lambda n: n + "*"), NAME.map(lambda n: n + "-*"), st.just("*"))
GRANTS = st.builds(
    ResolvedGrant,
    rule=st.just("generated"),
    repository=st.sampled_from(SERVED),
    access=st.sampled_from(["read", "publish"]),
    packages=st.lists(PATTERN, min_size=1, max_size=6, unique=True).map(tuple),
    duration_seconds=st.integers(min_value=900, max_value=43200),
)


@settings(max_examples=150, deadline=None)
@given(GRANTS)
def test_every_grant_the_rules_can_express_is_within_the_role(grant: ResolvedGrant) -> None:
    if grant.access == "read":
        grant = ResolvedGrant(grant.rule, grant.repository, "read", (), grant.duration_seconds)
    assert gaps(grant, role_policy()) == []


# --------------------------------------------------------------------------- the check bites

PUBLISH = ResolvedGrant("r", "internal", "publish", ("acme-*", "tools"), 43200)
READ = ResolvedGrant("r", "internal", "read", (), 3600)
PUBLISH_LAST = ResolvedGrant("r", SERVED[-1], "publish", ("acme-*",), 3600)
READ_SECOND = ResolvedGrant("r", SERVED[1], "read", (), 3600)


def _statement(template: dict[str, Any], sid: str) -> dict[str, Any]:
    (policy,) = template["Resources"]["TokenIssuerRole"]["Properties"]["Policies"]
    statement: dict[str, Any]
    (statement,) = [s for s in policy["PolicyDocument"]["Statement"] if s["Sid"] == sid]
    return statement


def _arn(template: dict[str, Any], sid: str, slot: int = 0) -> list[Any]:
    """The ``!Sub [text, variables]`` of repository slot ``slot`` of statement ``sid``."""
    resource = _statement(template, sid)["Resource"][slot]
    sub: list[Any] = (
        resource["Fn::If"][1]["Fn::Sub"] if "Fn::If" in resource else resource["Fn::Sub"]
    )
    return sub


MUTATIONS: list[tuple[str, Callable[[dict[str, Any]], None], ResolvedGrant]] = [
    (
        "role cannot PutPackageMetadata",
        lambda t: _statement(t, "PublishPythonPackages")["Action"].remove(
            "codeartifact:PutPackageMetadata"
        ),
        PUBLISH,
    ),
    (
        "role publishes only one package",
        lambda t: _arn(t, "PublishPythonPackages").__setitem__(
            0, _arn(t, "PublishPythonPackages")[0][:-1] + "tools"
        ),
        PUBLISH,
    ),
    (
        "role reads another repository",
        lambda t: _arn(t, "ReadRepository").__setitem__(0, _arn(t, "ReadRepository")[0] + "-other"),
        READ,
    ),
    (
        "role cannot read the second repository",
        lambda t: _statement(t, "ReadRepository")["Resource"].pop(1),
        READ_SECOND,
    ),
    (
        "role cannot publish to the last repository",
        lambda t: _statement(t, "PublishPythonPackages")["Resource"].pop(len(SERVED) - 1),
        PUBLISH_LAST,
    ),
    (
        "role lacks GetRepositoryEndpoint",
        lambda t: _statement(t, "ReadRepository")["Action"].remove(
            "codeartifact:GetRepositoryEndpoint"
        ),
        READ,
    ),
    (
        "role caps tokens below 12 h",
        lambda t: _statement(t, "ServiceBearerToken")["Condition"]["NumericLessThanEquals"].update(
            {"sts:DurationSeconds": 3600}
        ),
        PUBLISH,
    ),
    (
        "role bearer tokens for another service",
        lambda t: _statement(t, "ServiceBearerToken")["Condition"]["StringEquals"].update(
            {"sts:AWSServiceName": "s3.amazonaws.com"}
        ),
        READ,
    ),
]


@pytest.mark.parametrize(
    ("mutate", "grant"),
    [pytest.param(mutate, grant, id=name) for name, mutate, grant in MUTATIONS],
)
def test_a_role_narrower_than_the_broker_promises_is_caught(
    mutate: Callable[[dict[str, Any]], None], grant: ResolvedGrant
) -> None:
    template = copy.deepcopy(cfn_yaml.load(IAM_TEMPLATE))
    assert gaps(grant, role_policy(template)) == []
    mutate(template)
    assert gaps(grant, role_policy(template)) != []


# ------------------------------------------------------------------------ the role is the ceiling


@pytest.mark.parametrize(
    "grant",
    [
        pytest.param(ResolvedGrant("r", "pypi-store", "read", (), 3600), id="read-the-store"),
        pytest.param(ResolvedGrant("r", "pypi-store", "publish", ("x",), 3600), id="publish-store"),
        pytest.param(ResolvedGrant("r", "other", "read", (), 3600), id="read-another"),
        pytest.param(ResolvedGrant("r", "internal2", "publish", ("x",), 3600), id="name-prefix"),
        pytest.param(ResolvedGrant("r", "team_x", "read", (), 3600), id="part-of-a-name"),
    ],
)
def test_a_grant_on_a_repository_not_served_is_beyond_the_role(grant: ResolvedGrant) -> None:
    """Whatever the rules said, a token for a repository outside the set would carry nothing
    there: TokenIssuerRole never allows it."""
    assert gaps(grant, role_policy()) != []
