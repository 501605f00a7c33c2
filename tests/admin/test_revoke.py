"""`cabroker-admin revoke` on moto's IAM: the Deny it writes on TokenIssuerRole (keyed on what
the broker stamps, computed by the broker's own function), --list, --lift, the role's policy
size limit, and its exit codes (0 done, 1 failed, 2 a wrong command line), every error one
line. What the Deny stops is tested against the CodeArtifact stand-in's IAM evaluation in
tests/devstack/test_stand_in_revoke.py and on the devstack in tests/e2e/test_revoke.py."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from moto import mock_aws

from broker.tokens import session_name
from cabroker_admin import revoke
from tests.admin.test_cli import one_error, run

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

ACCOUNT = "123456789012"
ROLE = "cabroker-TokenIssuerRole-ABC123"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{ROLE}"
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/broker"},
            "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"],
        }
    ],
}
# TokenIssuerRole's own inline policy (infra/iam.yaml's codeartifact-tokens, one repository).
TOKENS = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "GetAuthorizationToken",
            "Effect": "Allow",
            "Action": "codeartifact:GetAuthorizationToken",
            "Resource": f"arn:aws:codeartifact:us-east-1:{ACCOUNT}:domain/acme",
        },
        {
            "Sid": "ServiceBearerToken",
            "Effect": "Allow",
            "Action": "sts:GetServiceBearerToken",
            "Resource": "*",
            "Condition": {
                "StringEquals": {"sts:AWSServiceName": "codeartifact.amazonaws.com"},
                "NumericLessThanEquals": {"sts:DurationSeconds": "43200"},
            },
        },
        {
            "Sid": "ReadRepository",
            "Effect": "Allow",
            "Action": ["codeartifact:ReadFromRepository", "codeartifact:GetRepositoryEndpoint"],
            "Resource": f"arn:aws:codeartifact:us-east-1:{ACCOUNT}:repository/acme/internal",
        },
    ],
}
WHERE = ["--role-arn", ROLE_ARN, "--region", "us-east-1"]
CAROL = ["--issuer", "corp", "--subject", "carol"]
NOW = datetime(2026, 1, 14, 10, 15, 0, tzinfo=UTC)


@pytest.fixture
def iam() -> Iterator[IAMClient]:
    with mock_aws():
        client = boto3.client("iam", region_name="us-east-1")
        client.create_role(RoleName=ROLE, Path="/", AssumeRolePolicyDocument=json.dumps(TRUST))
        client.put_role_policy(
            RoleName=ROLE, PolicyName="codeartifact-tokens", PolicyDocument=json.dumps(TOKENS)
        )
        yield client


def inline(iam: IAMClient) -> dict[str, Any]:
    """The role's inline policies, by name (boto3 decodes each document)."""
    return {
        name: iam.get_role_policy(RoleName=ROLE, PolicyName=name)["PolicyDocument"]
        for name in iam.list_role_policies(RoleName=ROLE)["PolicyNames"]
    }


def role_id(iam: IAMClient) -> str:
    return iam.get_role(RoleName=ROLE)["Role"]["RoleId"]


# --- what the broker stamps: its own function -------------------------------------------------


@pytest.mark.parametrize(
    "subject",
    [
        "carol",
        "repo:acme/app:ref:refs/heads/main",  # ":" and "/" are outside AWS's set
        "repo:acme/a-very-long-repository-name:environment:production-eu-west-1",  # hashed
        "ünïcode user",
    ],
)
def test_the_stamped_name_is_the_brokers_own(subject: str) -> None:
    assert revoke.stamped("github", subject) == session_name("github", subject)


def test_stamped_calls_the_brokers_function(monkeypatch: pytest.MonkeyPatch) -> None:
    import broker.tokens

    monkeypatch.setattr(broker.tokens, "session_name", lambda issuer, subject: "changed")
    assert revoke.stamped("corp", "carol") == "changed"


def test_the_revocation_id_is_the_same_for_the_same_identity() -> None:
    name = revoke.stamped("corp", "carol")
    assert revoke.revocation_id(name) == revoke.revocation_id(session_name("corp", "carol"))
    assert revoke.ID.fullmatch(revoke.revocation_id(name))
    assert revoke.revocation_id(name) != revoke.revocation_id(revoke.stamped("corp", "dave"))


def test_the_policy_denies_everything_to_either_stamp() -> None:
    policy = revoke.document("corp.carol", "AROAEXAMPLE", NOW)
    assert policy == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Revoked20260114T101500ZBySourceIdentity",
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:SourceIdentity": "corp.carol"}},
            },
            {
                "Sid": "Revoked20260114T101500ZBySessionName",
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:userid": "AROAEXAMPLE:corp.carol"}},
            },
        ],
    }
    assert revoke.parse("abc", policy) == revoke.Revocation("abc", "corp.carol", NOW)
    # Read back from either statement alone; nothing readable is None, never a crash.
    only_userid = {**policy, "Statement": policy["Statement"][1:]}
    assert revoke.parse("abc", only_userid).name == "corp.carol"
    assert revoke.parse("abc", {"Statement": "?"}) == revoke.Revocation("abc", None, None)
    edited = json.loads(json.dumps(policy).replace("20260114T", "20261399T"))
    assert revoke.parse("abc", edited) == revoke.Revocation("abc", "corp.carol", None)


def test_a_revocation_fits_iams_limit_about_twenty_times() -> None:
    longest = revoke.document("x" * 64, "AROA" + "X" * 17, NOW)
    assert 300 < revoke.size(revoke.document("corp.carol", "AROA" + "X" * 17, NOW)) < 400
    assert revoke.size(longest) < 500
    assert revoke.size(TOKENS) + 20 * revoke.size(longest) < revoke.ROLE_POLICY_LIMIT


# --- the command -------------------------------------------------------------------------------


def test_revoke_list_and_lift(iam: IAMClient, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "revoke", *WHERE, *CAROL)
    assert code == 0, err
    id_ = revoke.revocation_id("corp.carol")
    assert out == (
        f"{ROLE}: corp.carol revoked, id {id_} (inline policy cabroker-revoke-{id_}); every "
        f"token minted for it is refused from its next use. Lift with --lift {id_}\n"
    )
    assert err == (
        "cabroker-admin: note: remove the identity from the rules too: while a rule matches it, "
        "the broker answers it with 503 (a new token is denied) or with a token minted before, "
        "refused at use\n"
    )
    written = inline(iam)[f"cabroker-revoke-{id_}"]
    assert [s["Effect"] for s in written["Statement"]] == ["Deny", "Deny"]
    conditions = [s["Condition"]["StringEquals"] for s in written["Statement"]]
    assert conditions == [
        {"aws:SourceIdentity": "corp.carol"},
        {"aws:userid": f"{role_id(iam)}:corp.carol"},
    ]
    assert inline(iam)["codeartifact-tokens"] == TOKENS  # the role's own policy untouched

    code, out, _ = run(capsys, "revoke", *WHERE, "--issuer", "corp", "--subject", "dave")
    assert code == 0
    code, out, err = run(capsys, "revoke", *WHERE, "--list")
    assert (code, err) == (0, "")
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["ID", "REVOKED", "(UTC)"]
    assert sorted((row.split()[0], row.split()[2]) for row in rows) == sorted(
        [(id_, "corp.carol"), (revoke.revocation_id("corp.dave"), "corp.dave")]
    )
    for row in rows:
        assert (
            abs(
                datetime.strptime(row.split()[1], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
                - datetime.now(UTC)
            ).total_seconds()
            < 120
        )

    code, out, err = run(capsys, "revoke", *WHERE, "--lift", id_)
    assert (code, err) == (0, "")
    assert out.startswith(f"{ROLE}: revocation {id_} of corp.carol lifted;")
    assert f"cabroker-revoke-{id_}" not in inline(iam)
    _, out, _ = run(capsys, "revoke", *WHERE, "--list")
    assert [row.split()[2] for row in out.splitlines()[1:]] == ["corp.dave"]


def test_revoking_again_writes_nothing(iam: IAMClient, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "revoke", *WHERE, *CAROL)
    before = inline(iam)
    code, out, _ = run(capsys, "revoke", *WHERE, *CAROL)
    assert code == 0
    assert f"{ROLE}: corp.carol is revoked already, id " in out
    assert out.rstrip().endswith("; nothing written")
    assert inline(iam) == before


def test_an_empty_list(iam: IAMClient, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "revoke", *WHERE, "--list") == (0, f"{ROLE}: no revocation in force\n", "")


def test_a_rewritten_subject_is_said_so(iam: IAMClient, capsys: pytest.CaptureFixture[str]) -> None:
    subject = "repo:acme/app:ref:refs/heads/main"
    code, out, err = run(capsys, "revoke", *WHERE, "--issuer", "github", "--subject", subject)
    assert code == 0
    stamped = "github.repo-acme-app-ref-refs-heads-main"
    assert out.startswith(f"{ROLE}: {stamped} revoked, id {revoke.revocation_id(stamped)} ")
    assert err.splitlines()[0] == (
        f"cabroker-admin: note: the broker stamps this subject as {stamped} (characters outside "
        "AWS's set replaced, a long one cut and hashed); every subject it stamps the same way "
        "is revoked with it"
    )


def test_a_role_that_cannot_hold_another_revocation_is_refused_before_writing(
    iam: IAMClient, capsys: pytest.CaptureFixture[str]
) -> None:
    filler = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Action": "codeartifact:DeleteDomain",
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:userid": "x" * 9500}},
            }
        ],
    }
    iam.put_role_policy(RoleName=ROLE, PolicyName="filler", PolicyDocument=json.dumps(filler))
    before = inline(iam)
    code, out, err = run(capsys, "revoke", *WHERE, *CAROL)
    assert (code, out) == (1, "")
    line = one_error(err)
    assert line.startswith(f"cabroker-admin: role {ROLE}: no room for another revocation: ")
    assert "of the 10,240 characters IAM allows a role" in line
    assert "nothing written" in line
    assert "--lift ID" in line
    assert inline(iam) == before


def test_iams_own_limit_is_the_same_clear_error(
    iam: IAMClient, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """IAM is the authority on the size (the tool's count is an estimate): its LimitExceeded
    reads as the tool's own refusal."""

    make_api_call = getattr(BaseClient, "_make_api_call")  # noqa: B009 - untyped in stubs

    def full(self: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if operation == "PutRolePolicy":
            raise ClientError(
                {"Error": {"Code": "LimitExceeded", "Message": "Maximum policy size exceeded"}},
                operation,
            )
        return make_api_call(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", full)
    code, _, err = run(capsys, "revoke", *WHERE, *CAROL)
    assert code == 1
    assert "no room for another revocation" in one_error(err)


def test_an_aws_failure_is_exit_1_with_its_code(
    iam: IAMClient, capsys: pytest.CaptureFixture[str]
) -> None:
    other = f"arn:aws:iam::{ACCOUNT}:role/NoSuchRole"
    code, out, err = run(capsys, "revoke", "--role-arn", other, "--region", "us-east-1", *CAROL)
    assert (code, out) == (1, "")
    assert one_error(err).startswith(
        "cabroker-admin: iam:GetRole on role NoSuchRole failed: NoSuchEntity"
    )
    code, _, err = run(capsys, "revoke", *WHERE, "--lift", "0123456789ab")
    assert code == 1
    assert one_error(err) == (
        f"cabroker-admin: role {ROLE}: no revocation 0123456789ab (--list shows those in force)"
    )


# Every IAM call of each command, and the arguments that reach it (a revocation in force first
# for --lift, none for the revocation that writes).
CALLS = {
    "GetRole": ["revoke", *WHERE, *CAROL],
    "ListRolePolicies": ["revoke", *WHERE, "--list"],
    "GetRolePolicy": ["revoke", *WHERE, "--list"],
    "PutRolePolicy": ["revoke", *WHERE, *CAROL],
    "DeleteRolePolicy": [
        "revoke",
        *WHERE,
        "--lift",
        revoke.revocation_id(session_name("corp", "carol")),
    ],
}


@pytest.mark.parametrize("operation", CALLS)
@pytest.mark.parametrize("failure", ["connection", "timeout"])
def test_no_answer_from_aws_is_exit_1_and_one_line(
    iam: IAMClient,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    operation: str,
    failure: str,
) -> None:
    """A BotoCoreError (the endpoint unreachable, a read timing out) of any IAM call reads as
    the same one line as an AWS error, never a traceback."""
    assert run(capsys, "revoke", *WHERE, *CAROL)[0] == 0  # a revocation in force
    if operation == "PutRolePolicy":
        assert (
            run(
                capsys,
                "revoke",
                *WHERE,
                "--lift",
                revoke.revocation_id(session_name("corp", "carol")),
            )[0]
            == 0
        )
    make_api_call = getattr(BaseClient, "_make_api_call")  # noqa: B009 - untyped in stubs
    url = "https://iam.amazonaws.com/"
    error: Exception = (
        EndpointConnectionError(endpoint_url=url)
        if failure == "connection"
        else ReadTimeoutError(endpoint_url=url)
    )

    def unanswered(self: BaseClient, name: str, params: dict[str, Any]) -> Any:
        if name == operation:
            raise error
        return make_api_call(self, name, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", unanswered)
    code, out, err = run(capsys, *CALLS[operation])
    assert (code, out) == (1, "")
    expected = f"cabroker-admin: iam:{operation} on role {ROLE} failed: {type(error).__name__}: "
    assert one_error(err).startswith(expected)


def test_the_role_arn_must_be_the_roles(iam: IAMClient, capsys: pytest.CaptureFixture[str]) -> None:
    pathed = f"arn:aws:iam::{ACCOUNT}:role/team/{ROLE}"
    code, _, err = run(capsys, "revoke", "--role-arn", pathed, "--region", "us-east-1", *CAROL)
    assert code == 1
    assert one_error(err) == f"cabroker-admin: role {ROLE}: its ARN is {ROLE_ARN}, not {pathed}"
    assert not any(name.startswith(revoke.PREFIX) for name in inline(iam))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([*WHERE], "give --issuer and --subject (the identity to revoke), or --list, or --lift"),
        ([*WHERE, "--issuer", "corp"], "give --issuer and --subject"),
        ([*WHERE, *CAROL, "--list"], "--list and --lift take none"),
        ([*WHERE, "--subject", "carol", "--lift", "0123456789ab"], "--list and --lift take none"),
        ([*WHERE, "--lift", "carol"], "--lift 'carol' is not a revocation id"),
        (
            [*WHERE, "--issuer", "https://login.example.com", "--subject", "carol"],
            "not the issuer's URL",
        ),
        ([*WHERE, "--issuer", "corp", "--subject", ""], "--subject must not be empty"),
        (["--role-arn", "TokenIssuerRole", "--region", "us-east-1", *CAROL], "not an IAM role"),
        (
            ["--role-arn", ROLE_ARN.replace("aws", "aws-cn", 1), "--region", "us-east-1", *CAROL],
            "--role-arn is in partition aws-cn, but region us-east-1 is in aws",
        ),
    ],
)
def test_a_wrong_command_line_is_exit_2_and_one_line(
    iam: IAMClient, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, "revoke", *argv)
    assert (code, out) == (2, "")
    assert message in one_error(err)
    assert not any(name.startswith(revoke.PREFIX) for name in inline(iam))


@pytest.mark.parametrize(
    "argv",
    [["revoke"], ["revoke", *WHERE, "--list", "--lift", "0123456789ab"]],
)
def test_argparse_usage_errors_are_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, _ = run(capsys, *argv)
    assert (code, out) == (2, "")


REVOKE_RUN = r"""
import importlib.abc, sys

class Uninstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {"jwt", "cryptography"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Uninstalled())
import cabroker_admin.cli
from cabroker_admin import revoke
print(revoke.stamped("corp", "carol"))
"""


def test_revoke_stamps_without_the_brokers_jwt_dependencies() -> None:
    done = subprocess.run(
        [sys.executable, "-c", REVOKE_RUN],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "corp.carol\n"), done.stderr[-2000:]
