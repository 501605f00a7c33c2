"""devstack.provision: policies as IAM takes them, small templates deployed into the AWS
stand-in, and the real template.yaml with its nested stacks."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from devstack import cfn_yaml
from devstack.aws import AwsStandIn
from devstack.provision import Clients, Deployment, Provisioner, ProvisionError, policy_json
from tests.devstack.conftest import ACCOUNT, REGION, reset_moto, session

ROOT = Path(__file__).resolve().parents[2]
STACK = "teststack"
PSEUDO = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Partition": "aws",
    "AWS::Region": REGION,
    "AWS::StackName": STACK,
    "AWS::URLSuffix": "amazonaws.com",
}


# --- policy_json -------------------------------------------------------------------------------


def test_policy_json_writes_condition_numbers_as_strings() -> None:
    document: dict[str, Any] = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "sts:GetServiceBearerToken",
                "Resource": "*",
                "Condition": {
                    "NumericLessThanEquals": {"sts:DurationSeconds": 43200},
                    "NumericEquals": {"aws:MultiFactorAuthAge": [3600, 7200.5]},
                    "Bool": {"aws:SecureTransport": True},
                    "StringEquals": {"sts:AWSServiceName": "codeartifact.amazonaws.com"},
                },
            },
            {"Effect": "Deny", "Action": ["s3:*"], "Resource": ["*"]},
        ],
    }
    expected = copy.deepcopy(document)
    written = json.loads(policy_json(document))

    condition = written["Statement"][0]["Condition"]
    assert condition["NumericLessThanEquals"] == {"sts:DurationSeconds": "43200"}
    assert condition["NumericEquals"] == {"aws:MultiFactorAuthAge": ["3600", "7200.5"]}
    assert condition["Bool"] == {"aws:SecureTransport": "true"}
    assert condition["StringEquals"] == {"sts:AWSServiceName": "codeartifact.amazonaws.com"}
    # Everything else as it was.
    del written["Statement"][0]["Condition"], expected["Statement"][0]["Condition"]
    assert written == expected


def test_policy_json_takes_a_single_statement_and_no_condition() -> None:
    single = {
        "Version": "2012-10-17",
        "Statement": {
            "Effect": "Allow",
            "Action": "sts:AssumeRole",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Condition": {"NumericLessThan": {"aws:EpochTime": 2000000000}},
        },
    }
    written = json.loads(policy_json(single))
    assert written["Statement"]["Condition"] == {"NumericLessThan": {"aws:EpochTime": "2000000000"}}
    assert written["Statement"]["Principal"] == {"Service": "lambda.amazonaws.com"}
    plain = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*"}]}
    assert json.loads(policy_json(plain)) == plain


def test_policy_json_leaves_its_argument_alone() -> None:
    document = {
        "Statement": [{"Effect": "Allow", "Condition": {"NumericEquals": {"a:b": 1}}}],
    }
    before = copy.deepcopy(document)
    policy_json(document)
    assert document == before


# --- small templates ---------------------------------------------------------------------------


def deploy(stand_in: AwsStandIn, template: Path, parameters: dict[str, str]) -> Deployment:
    clients = Clients.for_endpoint(stand_in.url, REGION)
    return Provisioner(clients, PSEUDO, template.parent).deploy(template, parameters)


def test_an_unknown_resource_type_stops_provisioning(stand_in: AwsStandIn, tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(
        "Resources:\n"
        "  Rules:\n"
        "    Type: AWS::SSM::Parameter\n"
        "    Properties: {Name: /t/rules, Type: String, Value: x}\n"
        "  Jobs:\n"
        "    Type: AWS::SQS::Queue\n"
        "    Properties: {QueueName: !GetAtt Rules.Type}\n"
    )
    with pytest.raises(ProvisionError) as error:
        deploy(stand_in, template, {})
    assert str(error.value) == (
        f"{STACK}/Jobs (AWS::SQS::Queue): the devstack does not know this resource type"
    )


SMALL = """\
Parameters:
  Prefix:
    Type: String
    Default: small
Resources:
  # Declared before what it depends on: the order comes from the references.
  Setting:
    Type: AWS::SSM::Parameter
    Properties:
      Name: !Sub /${Prefix}/role-arn
      Type: String
      Value: !GetAtt Role.Arn
  Extra:
    Type: AWS::IAM::RolePolicy
    DependsOn: Setting
    Properties:
      RoleName: !Ref Role
      PolicyName: extra
      PolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Action: ssm:GetParameter
            Resource: !Sub arn:${AWS::Partition}:ssm:${AWS::Region}::parameter${Setting}
  Logs:
    Type: AWS::Logs::LogGroup
    Properties:
      LogGroupName: !Sub /aws/lambda/${Role}
  Role:
    Type: AWS::IAM::Role
    Properties:
      RoleName: !Sub ${Prefix}-role
      AssumeRolePolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Principal: {Service: lambda.amazonaws.com}
            Action: sts:AssumeRole
            Condition:
              NumericLessThanEquals: {sts:DurationSeconds: 3600}
      Policies:
        - PolicyName: inline
          PolicyDocument:
            Version: "2012-10-17"
            Statement:
              - Effect: Allow
                Action: ssm:GetParameter
                Resource: "*"
Outputs:
  RoleArn:
    Value: !GetAtt Role.Arn
  SettingName:
    Value: !Ref Setting
  LogGroupArn:
    Value: !GetAtt Logs.Arn
  LogGroupName:
    Value: !Ref Logs
"""


def test_a_small_template_in_dependency_order(stand_in: AwsStandIn, tmp_path: Path) -> None:
    template = tmp_path / "small.yaml"
    template.write_text(SMALL)

    deployment = deploy(stand_in, template, {"Prefix": "tiny"})

    assert deployment.created == [
        f"{STACK}/Role (AWS::IAM::Role)",
        f"{STACK}/Setting (AWS::SSM::Parameter)",
        f"{STACK}/Extra (AWS::IAM::RolePolicy)",
    ]
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/tiny-role"
    assert deployment.outputs["RoleArn"] == role_arn
    assert deployment.outputs["SettingName"] == "/tiny/role-arn"

    admin = session()
    iam = admin.client("iam", endpoint_url=stand_in.url)
    ssm = admin.client("ssm", endpoint_url=stand_in.url)
    assert ssm.get_parameter(Name="/tiny/role-arn")["Parameter"]["Value"] == role_arn
    role = iam.get_role(RoleName="tiny-role")["Role"]
    trust: Any = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Condition"] == {
        "NumericLessThanEquals": {"sts:DurationSeconds": "3600"}
    }
    assert sorted(iam.list_role_policies(RoleName="tiny-role")["PolicyNames"]) == [
        "extra",
        "inline",
    ]
    extra: Any = iam.get_role_policy(RoleName="tiny-role", PolicyName="extra")["PolicyDocument"]
    extra = json.loads(extra) if isinstance(extra, str) else extra
    resource = extra["Statement"][0]["Resource"]
    assert resource == f"arn:aws:ssm:{REGION}::parameter/tiny/role-arn"


def test_log_groups_are_skipped_with_placeholders(stand_in: AwsStandIn, tmp_path: Path) -> None:
    template = tmp_path / "small.yaml"
    template.write_text(SMALL)

    deployment = deploy(stand_in, template, {})

    assert deployment.skipped == [
        f"{STACK}/Logs (AWS::Logs::LogGroup): CloudWatch Logs: the devstack logs to its console"
    ]
    assert deployment.outputs["LogGroupArn"] == "<not created: Logs.Arn>"
    assert deployment.outputs["LogGroupName"] == "<not created: Logs>"
    assert not any("Logs" in created for created in deployment.created)
    logs = session().client("logs", endpoint_url=stand_in.url)
    assert logs.describe_log_groups()["logGroups"] == []


# --- the real template -------------------------------------------------------------------------


def template_routes(template: dict[str, Any]) -> frozenset[str]:
    """``METHOD /path`` of every HttpApi event with a path, read straight from the template."""
    routes: set[str] = set()
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for event in resource["Properties"].get("Events", {}).values():
            properties = event["Properties"]
            if event["Type"] == "HttpApi" and "Path" in properties:
                routes.add(f"{properties['Method'].upper()} {properties['Path']}")
    return frozenset(routes)


def test_the_real_template_deploys(stand_in: AwsStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    # As devstack/stack.py does while provisioning: AWS managed policies exist (and attach).
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    reset_moto(stand_in.url)  # moto reads the setting as it makes its IAM backend
    clients = Clients.for_endpoint(stand_in.url, REGION)
    provisioner = Provisioner(clients, PSEUDO, ROOT)

    deployment = provisioner.deploy(
        ROOT / "template.yaml", {"Repositories": "internal,restricted", "Tracing": "PassThrough"}
    )

    outputs = deployment.outputs
    assert outputs["DomainName"] == "acme"
    assert outputs["DomainOwner"] == ACCOUNT
    assert outputs["PrivateRepositoryName"] == "internal"
    assert outputs["PrivateRepositoryNames"] == "internal,restricted"
    assert outputs["RulesParameterName"] == f"/cabroker/{STACK}/rules"
    role_arn = outputs["TokenIssuerRoleArn"]
    assert role_arn.startswith(f"arn:aws:iam::{ACCOUNT}:role/")
    role_name = role_arn.rsplit("/", 1)[1]
    assert "TokenIssuerRole" in role_name

    function = deployment.functions["BrokerFunction"]
    assert function.handler == "broker.app.handler"
    assert (function.timeout, function.memory) == (10, 512)
    assert function.role_arn == outputs["BrokerFunctionRoleArn"]
    environment = function.environment
    assert environment["BROKER_RULES_PARAMETER"] == outputs["RulesParameterName"]
    assert environment["BROKER_ROLE_ARN"] == role_arn
    assert environment["BROKER_DOMAIN"] == "acme"
    assert environment["BROKER_DOMAIN_OWNER"] == ACCOUNT
    assert environment["BROKER_REPOSITORIES"] == "internal,restricted"
    assert environment["POWERTOOLS_TRACE_DISABLED"] == "true"  # Tracing=PassThrough

    routes = template_routes(cfn_yaml.load(ROOT / "template.yaml"))
    assert "POST /v1/token" in routes
    assert deployment.routes == routes
    api = deployment.apis["BrokerApi"]
    assert (api.rate_limit, api.burst_limit) == (20.0, 40)
    skipped = sorted(entry.split(" ", 2)[1] for entry in deployment.skipped)
    assert skipped == sorted(  # two log groups, four alarms, a dashboard: nothing to run locally
        ["(AWS::Logs::LogGroup):"] * 2
        + ["(AWS::CloudWatch::Alarm):"] * 4
        + ["(AWS::CloudWatch::Dashboard):"]
    )
    assert deployment.apis["BrokerApi"].routes == {"POST /v1/token": (10.0, 20)}

    # What was created is there, as the template says.
    admin = session()
    ssm = admin.client("ssm", endpoint_url=stand_in.url)
    with pytest.raises(ssm.exceptions.ParameterNotFound):  # rules are pushed, never deployed
        ssm.get_parameter(Name=outputs["RulesParameterName"])
    ca = admin.client("codeartifact", endpoint_url=stand_in.url)
    listed = ca.list_repositories_in_domain(domain="acme")["repositories"]
    assert sorted(r["name"] for r in listed) == ["internal", "pypi-store", "restricted"]
    iam = admin.client("iam", endpoint_url=stand_in.url)
    assert iam.list_role_policies(RoleName=role_name)["PolicyNames"] == ["codeartifact-tokens"]
    function_role = outputs["BrokerFunctionRoleArn"].rsplit("/", 1)[1]
    attached = iam.list_attached_role_policies(RoleName=function_role)["AttachedPolicies"]
    assert sorted(p["PolicyName"] for p in attached) == [
        "AWSLambdaBasicExecutionRole",
        "AWSXRayDaemonWriteAccess",
    ]
    codeartifact = admin.client("codeartifact", endpoint_url=stand_in.url)
    internal = codeartifact.describe_repository(domain="acme", repository="internal")
    assert internal["repository"]["upstreams"] == [{"repositoryName": "pypi-store"}]
    group = codeartifact.describe_package_group(domain="acme", packageGroup="/pypi//acme~")
    modes = group["packageGroup"]["originConfiguration"]["restrictions"]
    assert modes["EXTERNAL_UPSTREAM"]["mode"] == "BLOCK"
    assert modes["PUBLISH"]["mode"] == "ALLOW_SPECIFIC_REPOSITORIES"
    state = stand_in.codeartifact.domain("acme", ACCOUNT)
    assert state.restriction("acme-lib", "PUBLISH", "internal")
    assert not state.restriction("acme-lib", "PUBLISH", "pypi-store")
