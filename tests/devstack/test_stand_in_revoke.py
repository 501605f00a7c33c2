"""The CodeArtifact stand-in evaluates a revocation (`cabroker-admin revoke`'s Deny on
TokenIssuerRole) as IAM would: conditions per IAM's rules (devstack.codeartifact.conditions),
the session's aws:SourceIdentity (kept by devstack.codeartifact.sessions, which moto drops) and
aws:userid in the context of each request, an explicit Deny winning. A Deny that matches stops
that session and every token it obtained; another identity's session is untouched; lifting the
Deny restores access."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.sts.models import sts_backends

from broker.tokens import session_name
from cabroker_admin.revoke import Revocations, document
from devstack.aws import AwsStandIn
from devstack.codeartifact.conditions import applicable, condition_holds, like
from devstack.codeartifact.principals import AssumedRoleSession, caller
from devstack.tools import probe
from tests.devstack.conftest import ACCOUNT, ONE_ATTEMPT, REGION, reset_moto, session
from tests.devstack.test_codeartifact_control import (
    BEARER,
    DOMAIN_ARN,
    ENDPOINT,
    GET_TOKEN,
    PACKAGE_ARN,
    PUBLISH,
    READ,
    REPOSITORY_ARN,
    allow,
    create_issuer_role,
    get_token,
    policy,
)

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_sts import STSClient

CAROL = session_name("corp", "carol")
DAVE = session_name("corp", "dave")
CODEARTIFACT = {"sts:AWSServiceName": "codeartifact.amazonaws.com", "sts:DurationSeconds": "900"}
# What the broker's session policy allows for a read grant (broker.scope.session_policy).
READ_GRANT = policy(
    allow([GET_TOKEN], DOMAIN_ARN),
    allow(
        [BEARER],
        Condition={
            "StringEquals": {"sts:AWSServiceName": "codeartifact.amazonaws.com"},
            "NumericLessThanEquals": {"sts:DurationSeconds": 900},
        },
    ),
    allow([READ, ENDPOINT], REPOSITORY_ARN),
)


# --- IAM's condition rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "context", "holds"),
    [
        (
            {"StringEquals": {"aws:SourceIdentity": "corp.carol"}},
            {"aws:SourceIdentity": "corp.carol"},
            True,
        ),
        (
            {"StringEquals": {"aws:SourceIdentity": "corp.carol"}},
            {"aws:SourceIdentity": "corp.dave"},
            False,
        ),
        (
            {"StringEquals": {"aws:SourceIdentity": "corp.carol"}},
            {"aws:SourceIdentity": "Corp.Carol"},
            False,
        ),
        ({"StringEquals": {"aws:SourceIdentity": "corp.carol"}}, {}, False),  # missing: false
        (
            {"StringEquals": {"AWS:sourceidentity": "corp.carol"}},
            {"aws:SourceIdentity": "corp.carol"},
            True,
        ),
        ({"StringEquals": {"k": ["a", "b"]}}, {"k": "b"}, True),  # values: OR
        ({"StringEquals": {"k": "a", "l": "b"}}, {"k": "a", "l": "x"}, False),  # keys: AND
        ({"StringEquals": {"k": "a"}, "StringLike": {"l": "b*"}}, {"k": "a", "l": "bc"}, True),
        ({"StringEquals": {"k": "a"}, "StringLike": {"l": "b*"}}, {"k": "a", "l": "cb"}, False),
        ({"StringLike": {"aws:userid": "*:corp.carol"}}, {"aws:userid": "AROAX:corp.carol"}, True),
        ({"StringLike": {"aws:userid": "AROA?:corp.*"}}, {"aws:userid": "AROAX:corp.carol"}, True),
        (
            {"StringLike": {"aws:userid": "AROA?:corp.*"}},
            {"aws:userid": "AROAXY:corp.carol"},
            False,
        ),
        ({"StringNotEquals": {"k": "a"}}, {}, True),  # a negated operator holds for a missing key
        ({"StringNotLike": {"k": "a*"}}, {"k": "ab"}, False),
        ({"StringEqualsIfExists": {"k": "a"}}, {}, True),
        ({"StringEqualsIfExists": {"k": "a"}}, {"k": "b"}, False),
        ({"StringEquals": {"k": True}}, {"k": "true"}, True),
        ({"NumericLessThanEquals": {"k": 1}}, {"k": "5"}, True),  # not evaluated: ignored
        ({"ForAnyValue:StringLike": {"k": "x"}}, {}, True),  # not evaluated: ignored
    ],
)
def test_conditions_as_iam_evaluates_them(
    condition: dict[str, Any], context: dict[str, str], holds: bool
) -> None:
    assert condition_holds(condition, context) is holds


def test_string_like_wildcards_are_only_star_and_question_mark() -> None:
    assert like("a*c", "a:/b/c")
    assert like("a?c", "abc")
    assert not like("a?c", "ac")
    assert not like("a.c", "abc")
    assert not like("a[b]c", "abc")


def test_only_statements_whose_conditions_hold_are_left_without_their_conditions() -> None:
    revocation = document(CAROL, "AROAEXAMPLE", datetime.now(UTC))
    assert applicable(revocation, {"aws:SourceIdentity": DAVE})["Statement"] == []
    kept = applicable(revocation, {"aws:SourceIdentity": CAROL})["Statement"]
    assert [s["Sid"].endswith("BySourceIdentity") for s in kept] == [True]
    assert "Condition" not in kept[0]
    single = {"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}
    assert applicable(single, {})["Statement"] == [single["Statement"]]


# --- sessions, with moto in this process ----------------------------------------------------------


@pytest.fixture
def moto_clients() -> Iterator[tuple[IAMClient, STSClient]]:
    with mock_aws():
        yield boto3.client("iam", region_name=REGION), boto3.client("sts", region_name=REGION)


def as_the_broker(sts: STSClient, role_arn: str, name: str, source: bool = True) -> str:
    """A session as the broker assumes it (session name and source identity both stamped),
    its access key id."""
    extra: dict[str, Any] = {"SourceIdentity": name} if source else {}
    return sts.assume_role(
        RoleArn=role_arn, RoleSessionName=name, Policy=READ_GRANT, DurationSeconds=900, **extra
    )["Credentials"]["AccessKeyId"]


def test_a_session_keeps_its_source_identity_and_user_id(
    moto_clients: tuple[IAMClient, STSClient],
) -> None:
    iam, sts = moto_clients
    role_arn = create_issuer_role(iam)
    who = caller(as_the_broker(sts, role_arn, CAROL), ACCOUNT)
    assert isinstance(who, AssumedRoleSession)
    role_id = iam.get_role(RoleName="TokenIssuerRole")["Role"]["RoleId"]
    assert who.global_keys() == {"aws:userid": f"{role_id}:{CAROL}", "aws:SourceIdentity": CAROL}
    plain = caller(as_the_broker(sts, role_arn, CAROL, source=False), ACCOUNT)
    assert isinstance(plain, AssumedRoleSession)
    assert plain.global_keys() == {"aws:userid": f"{role_id}:{CAROL}"}


@pytest.mark.parametrize("source", ["a b", "corp/carol", "x" * 65, "aws:carol"])
def test_a_source_identity_sts_refuses_makes_no_session(
    moto_clients: tuple[IAMClient, STSClient], source: str
) -> None:
    iam, sts = moto_clients
    role_arn = create_issuer_role(iam)
    sessions = sts_backends[ACCOUNT]["aws"].assumed_roles
    before = len(sessions)
    with pytest.raises(ClientError) as error:
        sts.assume_role(RoleArn=role_arn, RoleSessionName="s1", SourceIdentity=source)
    assert error.value.response["Error"]["Code"] == "ValidationError"
    assert len(sessions) == before


def test_a_revocation_stops_that_identity_only_until_lifted(
    moto_clients: tuple[IAMClient, STSClient],
) -> None:
    iam, sts = moto_clients
    role_arn = create_issuer_role(iam)
    carol = caller(as_the_broker(sts, role_arn, CAROL), ACCOUNT)
    dave = caller(as_the_broker(sts, role_arn, DAVE), ACCOUNT)

    def may(who: Any) -> list[bool]:
        return [
            who.allows(READ, REPOSITORY_ARN),
            who.allows(GET_TOKEN, DOMAIN_ARN),
            who.allows(BEARER, "*", CODEARTIFACT),
        ]

    assert may(carol) == may(dave) == [True, True, True]
    assert not carol.allows(PUBLISH, PACKAGE_ARN)  # the session policy still narrows

    revocations = Revocations(iam, role_arn)
    revoked = revocations.revoke(CAROL).revocation
    assert may(carol) == [False, False, False]  # the same session, its tokens and new ones
    assert may(dave) == [True, True, True]
    # A session minted later for the same identity is denied too.
    assert may(caller(as_the_broker(sts, role_arn, CAROL), ACCOUNT)) == [False, False, False]

    revocations.lift(revoked.id)
    assert may(carol) == [True, True, True]


@pytest.mark.parametrize("by", ["SourceIdentity", "SessionName"])
def test_either_key_alone_denies(moto_clients: tuple[IAMClient, STSClient], by: str) -> None:
    """Each statement stops the identity by itself: the Deny does not rest on one key."""
    iam, sts = moto_clients
    role_arn = create_issuer_role(iam)
    role_id = iam.get_role(RoleName="TokenIssuerRole")["Role"]["RoleId"]
    full = document(CAROL, role_id, datetime.now(UTC))
    one = {**full, "Statement": [s for s in full["Statement"] if s["Sid"].endswith(by)]}
    iam.put_role_policy(
        RoleName="TokenIssuerRole", PolicyName="cabroker-revoke-one", PolicyDocument=json.dumps(one)
    )
    assert not caller(as_the_broker(sts, role_arn, CAROL), ACCOUNT).allows(READ, REPOSITORY_ARN)
    assert caller(as_the_broker(sts, role_arn, DAVE), ACCOUNT).allows(READ, REPOSITORY_ARN)
    # A session named like carol's but without a source identity: only the session name stops it.
    unstamped = caller(as_the_broker(sts, role_arn, CAROL, source=False), ACCOUNT)
    assert unstamped.allows(READ, REPOSITORY_ARN) is (by == "SourceIdentity")


def test_a_deny_on_sts_source_identity_stops_no_session(
    moto_clients: tuple[IAMClient, STSClient],
) -> None:
    """sts:SourceIdentity is in the AssumeRole request only, never in the session's own."""
    iam, sts = moto_clients
    role_arn = create_issuer_role(iam)
    deny = {
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        "Condition": {"StringEquals": {"sts:SourceIdentity": CAROL}},
    }
    iam.put_role_policy(RoleName="TokenIssuerRole", PolicyName="sts", PolicyDocument=policy(deny))
    assert caller(as_the_broker(sts, role_arn, CAROL), ACCOUNT).allows(READ, REPOSITORY_ARN)


def test_a_conditional_allow_that_fails_is_no_deny(
    moto_clients: tuple[IAMClient, STSClient],
) -> None:
    """moto alone would count a failing condition as DENIED whatever the effect; IAM ignores
    the statement, so another statement may still allow."""
    iam, sts = moto_clients
    role_arn = create_issuer_role(iam)
    iam.put_role_policy(
        RoleName="TokenIssuerRole",
        PolicyName="extra",
        PolicyDocument=policy(
            allow([READ], REPOSITORY_ARN, Condition={"StringEquals": {"aws:SourceIdentity": "x"}})
        ),
    )
    assert caller(as_the_broker(sts, role_arn, CAROL), ACCOUNT).allows(READ, REPOSITORY_ARN)


# --- through the stand-in, as pip and the broker reach it -------------------------------------


@pytest.fixture
def reset_after(stand_in: AwsStandIn) -> Iterator[AwsStandIn]:
    """The stand-in, and moto reset after the test too: moto makes a backend the first time it
    is used, so an IAM backend this test made without AWS managed policies would otherwise be
    the one a devstack started later in this process provisions into (devstack/stack.py)."""
    yield stand_in
    reset_moto(stand_in.url)


def test_revoked_tokens_are_refused_by_the_index_and_no_new_one_is_issued(
    reset_after: AwsStandIn,
) -> None:
    stand_in = reset_after
    admin = session()
    iam = admin.client("iam", endpoint_url=stand_in.url)
    sts = admin.client("sts", endpoint_url=stand_in.url)
    codeartifact = admin.client("codeartifact", endpoint_url=stand_in.url, config=ONE_ATTEMPT)
    codeartifact.create_domain(domain="acme")
    codeartifact.create_repository(domain="acme", repository="internal")
    role_arn = create_issuer_role(iam)
    index = f"{stand_in.url}/pypi/internal/simple/"

    def broker_session(name: str) -> Any:
        credentials = sts.assume_role(
            RoleArn=role_arn,
            RoleSessionName=name,
            SourceIdentity=name,
            Policy=READ_GRANT,
            DurationSeconds=900,
        )["Credentials"]
        return session(
            credentials["AccessKeyId"], credentials["SecretAccessKey"], credentials["SessionToken"]
        ).client("codeartifact", endpoint_url=stand_in.url, config=ONE_ATTEMPT)

    carol, dave = broker_session(CAROL), broker_session(DAVE)
    carol_token, _ = get_token(carol, domain="acme", durationSeconds=900)
    dave_token, _ = get_token(dave, domain="acme", durationSeconds=900)
    assert probe(index, carol_token) == probe(index, dave_token) == 200

    revocations = Revocations(iam, role_arn)
    revoked = revocations.revoke(CAROL).revocation
    assert probe(index, carol_token) == 403
    assert probe(index, dave_token) == 200
    with pytest.raises(carol.exceptions.AccessDeniedException):
        carol.get_authorization_token(domain="acme", durationSeconds=900)
    with pytest.raises(ClientError) as denied:  # a new session for carol: no token either
        broker_session(CAROL).get_authorization_token(domain="acme", durationSeconds=900)
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"

    revocations.lift(revoked.id)
    assert probe(index, carol_token) == 200
