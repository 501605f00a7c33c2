"""The CodeArtifact stand-in's control plane through boto3, and who its callers are
(devstack.codeartifact.principals) from moto's IAM and STS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from moto import mock_aws

from devstack.aws import AwsStandIn
from devstack.codeartifact.principals import (
    AccountRoot,
    AssumedRoleSession,
    access_key_of,
    caller,
)
from tests.devstack.conftest import ACCOUNT, ONE_ATTEMPT, REGION, session
from tests.support.oidc import Secret

if TYPE_CHECKING:
    from mypy_boto3_codeartifact import CodeArtifactClient
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_sts import STSClient

DOMAIN_ARN = f"arn:aws:codeartifact:{REGION}:{ACCOUNT}:domain/acme"
OTHER_DOMAIN_ARN = f"arn:aws:codeartifact:{REGION}:{ACCOUNT}:domain/other"
REPOSITORY_ARN = f"arn:aws:codeartifact:{REGION}:{ACCOUNT}:repository/acme/internal"
PACKAGE_ARN = f"arn:aws:codeartifact:{REGION}:{ACCOUNT}:package/acme/internal/pypi//acme-lib"
READ = "codeartifact:ReadFromRepository"
PUBLISH = "codeartifact:PublishPackageVersion"
GET_TOKEN = "codeartifact:GetAuthorizationToken"
BEARER = "sts:GetServiceBearerToken"
ENDPOINT = "codeartifact:GetRepositoryEndpoint"
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(actions: list[str], resource: str = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": actions, "Resource": resource, **extra}


# What TokenIssuerRole may do (infra/iam.yaml, shortened).
ROLE_POLICY = policy(
    allow([GET_TOKEN], DOMAIN_ARN),
    allow(
        [BEARER],
        Condition={"StringEquals": {"sts:AWSServiceName": "codeartifact.amazonaws.com"}},
    ),
    allow([READ, ENDPOINT], REPOSITORY_ARN),
    allow([PUBLISH], f"arn:aws:codeartifact:{REGION}:{ACCOUNT}:package/acme/internal/pypi//*"),
)


def get_token(client: CodeArtifactClient, **kwargs: Any) -> tuple[Secret, datetime]:
    """GetAuthorizationToken's token (redacted repr) and expiration; the response dict, which
    holds the token in clear, never reaches an assertion."""
    response = client.get_authorization_token(**kwargs)
    return Secret(response["authorizationToken"]), response["expiration"]


def create_issuer_role(iam: IAMClient, name: str = "TokenIssuerRole") -> str:
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="tokens", PolicyDocument=ROLE_POLICY)
    return arn


# --- principals, with moto in this process -------------------------------------------------------


@pytest.fixture
def moto_clients() -> Iterator[tuple[IAMClient, STSClient]]:
    with mock_aws():
        yield boto3.client("iam", region_name=REGION), boto3.client("sts", region_name=REGION)


def assume(sts: STSClient, role_arn: str, session_policy: str | None) -> tuple[str, datetime]:
    """The session's access key id and expiry (the secret parts are not kept)."""
    extra: dict[str, Any] = {} if session_policy is None else {"Policy": session_policy}
    credentials = sts.assume_role(
        RoleArn=role_arn, RoleSessionName="broker-test", DurationSeconds=900, **extra
    )["Credentials"]
    return credentials["AccessKeyId"], credentials["Expiration"]


def test_assumed_role_session_is_found_by_access_key(
    moto_clients: tuple[IAMClient, STSClient],
) -> None:
    iam, sts = moto_clients
    role_arn = create_issuer_role(iam)
    key, expiration = assume(sts, role_arn, policy(allow([READ], REPOSITORY_ARN)))

    who = caller(key, "999999999999")

    assert isinstance(who, AssumedRoleSession)
    assert who.account == ACCOUNT  # moto's account, not the default given
    assert who.access_key_id == key
    assert who.arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/TokenIssuerRole/broker-test"
    assert who.role_name == "TokenIssuerRole"
    assert who.session_policy is not None
    assert json.loads(who.session_policy)["Statement"][0]["Action"] == [READ]
    assert who.expires.tzinfo is not None
    assert abs(who.expires - expiration) < timedelta(seconds=1)


def test_allows_is_the_intersection_of_role_and_session_policy(
    moto_clients: tuple[IAMClient, STSClient],
) -> None:
    iam, sts = moto_clients
    role_arn = create_issuer_role(iam)
    # The session policy alone would allow every CodeArtifact action on anything.
    wide, _ = assume(sts, role_arn, policy(allow(["codeartifact:*"])))
    narrow, _ = assume(sts, role_arn, policy(allow([READ], REPOSITORY_ARN)))
    unscoped, _ = assume(sts, role_arn, None)

    wide_session = caller(wide, ACCOUNT)
    assert wide_session.allows(READ, REPOSITORY_ARN)
    assert wide_session.allows(PUBLISH, PACKAGE_ARN)
    # Not the role's to give, whatever the session policy says:
    assert not wide_session.allows("codeartifact:DeleteRepository", REPOSITORY_ARN)
    assert not wide_session.allows(READ, REPOSITORY_ARN.replace("internal", "other"))

    narrow_session = caller(narrow, ACCOUNT)
    assert narrow_session.allows(READ, REPOSITORY_ARN)
    assert not narrow_session.allows(PUBLISH, PACKAGE_ARN)  # the role may; the session may not

    unscoped_session = caller(unscoped, ACCOUNT)  # no session policy: the role's own
    assert isinstance(unscoped_session, AssumedRoleSession)
    assert unscoped_session.session_policy is None
    assert unscoped_session.allows(PUBLISH, PACKAGE_ARN)
    assert not unscoped_session.allows("codeartifact:DeleteDomain", DOMAIN_ARN)


def test_conditions_are_evaluated_with_the_context(
    moto_clients: tuple[IAMClient, STSClient],
) -> None:
    iam, sts = moto_clients
    key, _ = assume(sts, create_issuer_role(iam), policy(allow([BEARER])))
    who = caller(key, ACCOUNT)
    assert who.allows(BEARER, "*", {"sts:AWSServiceName": "codeartifact.amazonaws.com"})
    assert not who.allows(BEARER, "*", {"sts:AWSServiceName": "ecr.amazonaws.com"})


def test_a_deny_added_to_the_role_later_stops_the_session(
    moto_clients: tuple[IAMClient, STSClient],
) -> None:
    iam, sts = moto_clients
    key, _ = assume(sts, create_issuer_role(iam), policy(allow(["codeartifact:*"])))
    who = caller(key, ACCOUNT)
    assert who.allows(READ, REPOSITORY_ARN)

    iam.put_role_policy(
        RoleName="TokenIssuerRole",
        PolicyName="kill-switch",
        PolicyDocument=policy({"Effect": "Deny", "Action": "codeartifact:*", "Resource": "*"}),
    )

    assert not who.allows(READ, REPOSITORY_ARN)  # the same session object, read again
    assert not caller(key, ACCOUNT).allows(READ, REPOSITORY_ARN)


def test_a_managed_policy_attached_to_the_role_counts(
    moto_clients: tuple[IAMClient, STSClient],
) -> None:
    iam, sts = moto_clients
    iam.create_role(RoleName="Reader", AssumeRolePolicyDocument=TRUST)
    key, _ = assume(sts, f"arn:aws:iam::{ACCOUNT}:role/Reader", policy(allow(["codeartifact:*"])))
    who = caller(key, ACCOUNT)
    assert not who.allows(READ, REPOSITORY_ARN)  # no policy at all: nothing

    managed = iam.create_policy(PolicyName="read", PolicyDocument=policy(allow([READ])))
    iam.attach_role_policy(RoleName="Reader", PolicyArn=managed["Policy"]["Arn"])

    assert who.allows(READ, REPOSITORY_ARN)
    assert not who.allows(PUBLISH, PACKAGE_ARN)


def test_a_deleted_role_allows_nothing(moto_clients: tuple[IAMClient, STSClient]) -> None:
    iam, sts = moto_clients
    key, _ = assume(sts, create_issuer_role(iam), None)
    iam.delete_role_policy(RoleName="TokenIssuerRole", PolicyName="tokens")
    iam.delete_role(RoleName="TokenIssuerRole")
    assert not caller(key, ACCOUNT).allows(READ, REPOSITORY_ARN)


@pytest.mark.parametrize("key", [None, "", "AKIAUNKNOWNKEY000000"])
def test_an_unknown_key_is_the_account_root(
    moto_clients: tuple[IAMClient, STSClient], key: str | None
) -> None:
    who = caller(key, ACCOUNT)
    assert who == AccountRoot(ACCOUNT)
    assert who.arn == f"arn:aws:iam::{ACCOUNT}:root"
    assert who.allows("codeartifact:DeleteDomain", DOMAIN_ARN)


def test_access_key_of_a_sigv4_header() -> None:
    request = AWSRequest(method="GET", url="https://codeartifact.us-east-1.amazonaws.com/v1/domain")
    credentials = Credentials("AKIDEXAMPLE12345", "not-a-secret")  # a made-up key
    SigV4Auth(credentials, "codeartifact", REGION).add_auth(request)
    assert access_key_of(request.headers["Authorization"]) == "AKIDEXAMPLE12345"

    header = (
        "AWS4-HMAC-SHA256 Credential=ASIA123/20250101/eu-west-1/sts/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=abcdef"
    )
    assert access_key_of(header) == "ASIA123"
    for other in (None, "", "Basic YXdzOnRva2Vu", "AWS4-HMAC-SHA256 Credential=/x/y"):
        assert access_key_of(other) is None


# --- the control plane through boto3 ------------------------------------------------------------


@pytest.fixture
def admin(stand_in: AwsStandIn) -> CodeArtifactClient:
    return session().client("codeartifact", endpoint_url=stand_in.url, config=ONE_ATTEMPT)


@pytest.fixture
def domain(admin: CodeArtifactClient) -> str:
    """acme with pypi-store (public:pypi) and internal (upstream pypi-store), as deployed."""
    admin.create_domain(domain="acme")
    admin.create_repository(domain="acme", repository="pypi-store")
    admin.associate_external_connection(
        domain="acme", repository="pypi-store", externalConnection="public:pypi"
    )
    admin.create_repository(
        domain="acme", repository="internal", upstreams=[{"repositoryName": "pypi-store"}]
    )
    return "acme"


def test_create_and_describe_domain(admin: CodeArtifactClient) -> None:
    created = admin.create_domain(domain="acme")["domain"]
    assert (created["name"], created["owner"], created["arn"]) == ("acme", ACCOUNT, DOMAIN_ARN)
    assert created["status"] == "Active"
    assert isinstance(created["createdTime"], datetime)

    described = admin.describe_domain(domain="acme", domainOwner=ACCOUNT)["domain"]
    assert described["arn"] == DOMAIN_ARN
    assert described["repositoryCount"] == 0

    with pytest.raises(admin.exceptions.ConflictException):
        admin.create_domain(domain="acme")
    with pytest.raises(admin.exceptions.ResourceNotFoundException) as missing:
        admin.describe_domain(domain="other")
    assert "other" in missing.value.response["Error"]["Message"]
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_repositories_upstreams_and_external_connection(
    admin: CodeArtifactClient, domain: str
) -> None:
    internal = admin.describe_repository(domain=domain, repository="internal")["repository"]
    assert internal["arn"] == REPOSITORY_ARN
    assert internal["upstreams"] == [{"repositoryName": "pypi-store"}]
    assert internal["externalConnections"] == []
    store = admin.describe_repository(domain=domain, repository="pypi-store")["repository"]
    assert [c["externalConnectionName"] for c in store["externalConnections"]] == ["public:pypi"]
    assert store["externalConnections"][0]["packageFormat"] == "pypi"

    listed = admin.list_repositories_in_domain(domain=domain)["repositories"]
    assert sorted(r["name"] for r in listed) == ["internal", "pypi-store"]
    assert admin.describe_domain(domain=domain)["domain"]["repositoryCount"] == 2

    with pytest.raises(admin.exceptions.ResourceNotFoundException):
        admin.create_repository(
            domain=domain, repository="extra", upstreams=[{"repositoryName": "missing"}]
        )
    with pytest.raises(admin.exceptions.ConflictException):
        admin.create_repository(domain=domain, repository="internal")
    with pytest.raises(admin.exceptions.ValidationException):
        admin.associate_external_connection(
            domain=domain, repository="internal", externalConnection="public:npmjs"
        )
    with pytest.raises(admin.exceptions.ResourceNotFoundException):
        admin.describe_repository(domain=domain, repository="missing")


def test_package_group_origin_configuration(
    admin: CodeArtifactClient, domain: str, stand_in: AwsStandIn
) -> None:
    created = admin.create_package_group(
        domain=domain,
        packageGroup="/pypi//acme~",
        description="internal names",
        contactInfo="team@acme.example",
    )["packageGroup"]
    assert created["pattern"] == "/pypi//acme~"
    group_arn = f"arn:aws:codeartifact:{REGION}:{ACCOUNT}:package-group/acme/pypi//acme~"
    assert created["arn"] == group_arn

    admin.update_package_group_origin_configuration(
        domain=domain,
        packageGroup="/pypi//acme~",
        restrictions={"EXTERNAL_UPSTREAM": "BLOCK", "PUBLISH": "ALLOW_SPECIFIC_REPOSITORIES"},
        addAllowedRepositories=[{"repositoryName": "internal", "originRestrictionType": "PUBLISH"}],
    )

    group = admin.describe_package_group(domain=domain, packageGroup="/pypi//acme~")["packageGroup"]
    assert (group["description"], group["contactInfo"]) == ("internal names", "team@acme.example")
    restrictions = group["originConfiguration"]["restrictions"]
    assert {name: r["mode"] for name, r in restrictions.items()} == {
        "EXTERNAL_UPSTREAM": "BLOCK",
        "INTERNAL_UPSTREAM": "INHERIT",
        "PUBLISH": "ALLOW_SPECIFIC_REPOSITORIES",
    }
    assert restrictions["PUBLISH"]["repositoriesCount"] == 1
    assert restrictions["EXTERNAL_UPSTREAM"]["repositoriesCount"] == 0

    # The same configuration governs the data plane's state.
    state = stand_in.codeartifact.domain(domain, ACCOUNT)
    assert not state.restriction("acme-lib", "EXTERNAL_UPSTREAM", "pypi-store")
    assert state.restriction("acme-lib", "PUBLISH", "internal")
    assert not state.restriction("acme-lib", "PUBLISH", "pypi-store")

    patterns = [g["pattern"] for g in admin.list_package_groups(domain=domain)["packageGroups"]]
    assert sorted(patterns) == ["/*", "/pypi//acme~"]

    with pytest.raises(admin.exceptions.ValidationException):
        admin.create_package_group(domain=domain, packageGroup="/pypi//Acme~")
    with pytest.raises(admin.exceptions.ConflictException):
        admin.create_package_group(domain=domain, packageGroup="/pypi//acme~")
    with pytest.raises(admin.exceptions.ResourceNotFoundException):
        admin.describe_package_group(domain=domain, packageGroup="/pypi//other~")
    with pytest.raises(admin.exceptions.ValidationException):
        admin.update_package_group_origin_configuration(
            domain=domain,
            packageGroup="/pypi//acme~",
            restrictions={"PUBLISH": "SOMETIMES"},  # type: ignore[dict-item]
        )


def test_get_repository_endpoint(
    admin: CodeArtifactClient, domain: str, stand_in: AwsStandIn
) -> None:
    endpoint = admin.get_repository_endpoint(domain=domain, repository="internal", format="pypi")
    assert endpoint["repositoryEndpoint"] == f"{stand_in.url}/pypi/internal/"
    with pytest.raises(admin.exceptions.ValidationException):
        admin.get_repository_endpoint(domain=domain, repository="internal", format="npm")
    with pytest.raises(admin.exceptions.ResourceNotFoundException):
        admin.get_repository_endpoint(domain=domain, repository="missing", format="pypi")


def test_get_authorization_token_as_the_account(
    admin: CodeArtifactClient, domain: str, stand_in: AwsStandIn
) -> None:
    before = datetime.now(UTC)
    token, expiration = get_token(admin, domain=domain)
    record = stand_in.codeartifact.token(token)
    assert record is not None
    assert record.principal == AccountRoot(ACCOUNT)
    assert (record.domain, record.owner) == (domain, ACCOUNT)
    assert expiration - before >= timedelta(seconds=43200 - 1)  # the default: 12 h
    assert expiration - before <= timedelta(seconds=43200 + 5)

    _, short = get_token(admin, domain=domain, durationSeconds=900)
    assert timedelta(seconds=899) <= short - before <= timedelta(seconds=905)

    for duration in (60, 43201):
        with pytest.raises(admin.exceptions.ValidationException):
            admin.get_authorization_token(domain=domain, durationSeconds=duration)
    with pytest.raises(admin.exceptions.ResourceNotFoundException):
        admin.get_authorization_token(domain="other")


@pytest.fixture
def assume_issuer(stand_in: AwsStandIn, domain: str) -> Any:
    """``assume(session_policy)``: a codeartifact client in a session of TokenIssuerRole
    (created in the stand-in's moto through IAM, assumed through its STS), and the session's
    expiry."""
    admin = session()
    iam = admin.client("iam", endpoint_url=stand_in.url)
    sts = admin.client("sts", endpoint_url=stand_in.url)
    role_arn = create_issuer_role(iam)

    def _assume(session_policy: str | None) -> tuple[CodeArtifactClient, datetime]:
        extra: dict[str, Any] = {} if session_policy is None else {"Policy": session_policy}
        credentials = sts.assume_role(
            RoleArn=role_arn, RoleSessionName="broker", DurationSeconds=3600, **extra
        )["Credentials"]
        client = session(
            credentials["AccessKeyId"], credentials["SecretAccessKey"], credentials["SessionToken"]
        ).client("codeartifact", endpoint_url=stand_in.url, config=ONE_ATTEMPT)
        return client, credentials["Expiration"]

    return _assume


SESSION_POLICY = policy(
    allow([GET_TOKEN], DOMAIN_ARN), allow([BEARER]), allow([READ, ENDPOINT], REPOSITORY_ARN)
)


def test_get_authorization_token_in_a_role_session(
    assume_issuer: Any, domain: str, stand_in: AwsStandIn
) -> None:
    client, session_expiry = assume_issuer(SESSION_POLICY)

    token, _ = get_token(client, domain=domain, durationSeconds=900)
    record = stand_in.codeartifact.token(token)
    assert record is not None
    assert isinstance(record.principal, AssumedRoleSession)
    assert record.principal.role_name == "TokenIssuerRole"
    assert record.principal.allows(READ, REPOSITORY_ARN)
    assert not record.principal.allows(PUBLISH, PACKAGE_ARN)  # not in the session policy

    _, follows_session = get_token(client, domain=domain, durationSeconds=0)
    assert abs(follows_session - session_expiry) < timedelta(seconds=1)

    endpoint = client.get_repository_endpoint(domain=domain, repository="internal", format="pypi")
    assert endpoint["repositoryEndpoint"].endswith("/pypi/internal/")
    with pytest.raises(client.exceptions.AccessDeniedException):
        client.get_repository_endpoint(domain=domain, repository="pypi-store", format="pypi")


@pytest.mark.parametrize(
    ("session_policy", "missing"),
    [
        (policy(allow([BEARER]), allow([READ], REPOSITORY_ARN)), GET_TOKEN),
        (policy(allow([GET_TOKEN], DOMAIN_ARN), allow([READ], REPOSITORY_ARN)), BEARER),
        (policy(allow([GET_TOKEN], OTHER_DOMAIN_ARN), allow([BEARER])), GET_TOKEN),
    ],
    ids=["no-GetAuthorizationToken", "no-GetServiceBearerToken", "other-domain-only"],
)
def test_get_authorization_token_needs_both_permissions(
    assume_issuer: Any, domain: str, session_policy: str, missing: str
) -> None:
    client, _ = assume_issuer(session_policy)
    with pytest.raises(client.exceptions.AccessDeniedException) as error:
        client.get_authorization_token(domain=domain, durationSeconds=900)
    message = error.value.response["Error"]["Message"]
    assert missing in message
    assert "assumed-role/TokenIssuerRole/broker" in message
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_a_deny_on_the_role_stops_token_requests(
    assume_issuer: Any, domain: str, stand_in: AwsStandIn
) -> None:
    client, _ = assume_issuer(SESSION_POLICY)
    token, _ = get_token(client, domain=domain, durationSeconds=900)
    iam = session().client("iam", endpoint_url=stand_in.url)
    iam.put_role_policy(
        RoleName="TokenIssuerRole",
        PolicyName="kill-switch",
        PolicyDocument=policy({"Effect": "Deny", "Action": "*", "Resource": "*"}),
    )
    with pytest.raises(client.exceptions.AccessDeniedException):
        client.get_authorization_token(domain=domain, durationSeconds=900)
    record = stand_in.codeartifact.token(token)
    assert record is not None
    assert not record.principal.allows(READ, REPOSITORY_ARN)  # the token already issued, too


def test_an_unimplemented_operation_is_a_clear_validation_error(admin: CodeArtifactClient) -> None:
    with pytest.raises(admin.exceptions.ValidationException) as error:
        admin.list_domains()
    message = error.value.response["Error"]["Message"]
    assert "does not implement" in message
    assert "POST /v1/domains" in message
