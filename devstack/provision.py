"""Deploy ``template.yaml`` and its nested ``infra/`` stacks into the AWS stand-in.

One source of truth: the resources the devstack runs on are the ones the templates declare,
evaluated with :mod:`devstack.cfn` for the devstack's parameter values, created in dependency
order through the same AWS APIs CloudFormation would call (boto3 against the stand-in).  A
resource type this module does not know stops provisioning, so the templates cannot grow a
resource the devstack silently lacks.  Resources that only matter in AWS (log groups) are
listed in :data:`NOT_LOCAL` and skipped with a note.

What AWS would refuse is refused here too (:class:`ProvisionError`, one line): a stack, the
root or a nested one, whose parameter values CloudFormation would refuse or whose Rules fail
(:func:`devstack.cfn.refusal`), before anything of it is created; and an SSM parameter whose
Value does not match its AllowedPattern, as SSM refuses it, which is how the templates' TooMany*
traps fail a deployment on purpose.

The function and its HTTP API are not created: the devstack runs the function's code in its
gateway (:mod:`devstack.gateway`) with the environment, role and throttling the template gives
them, which :class:`Deployment` returns.
"""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

from devstack import cfn, cfn_yaml

if TYPE_CHECKING:
    from mypy_boto3_codeartifact import CodeArtifactClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_ssm import SSMClient

NOT_LOCAL = {
    "AWS::Logs::LogGroup": "CloudWatch Logs: the devstack logs to its console",
    "AWS::CloudWatch::Alarm": "CloudWatch alarms: no metrics are collected locally",
    "AWS::CloudWatch::Dashboard": "CloudWatch dashboards: no metrics are collected locally",
}


def policy_json(document: Mapping[str, Any]) -> str:
    """An IAM policy as JSON, numbers in conditions written as strings: IAM reads both the
    same, and moto's policy validator refuses JSON numbers there."""

    def scalar(value: Any) -> Any:
        if isinstance(value, bool):
            return str(value).lower()
        return str(value) if isinstance(value, int | float) else value

    document = copy.deepcopy(dict(document))
    statements = document.get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        for operator, pairs in statement.get("Condition", {}).items():
            statement["Condition"][operator] = {
                key: [scalar(v) for v in value] if isinstance(value, list) else scalar(value)
                for key, value in pairs.items()
            }
    return json.dumps(document)


def admin_session(region: str) -> boto3.session.Session:
    """A boto3 session as the stand-in's administrator: a key moto does not know, which the
    stand-in treats as the account's root (devstack/README.md)."""
    return boto3.session.Session(
        aws_access_key_id="devstack-admin",
        aws_secret_access_key="devstack-admin",  # noqa: S106 - not a secret: the stand-in's root
        region_name=region,
    )


class ProvisionError(RuntimeError):
    """The templates ask for something the devstack cannot create; the message says what."""


@dataclass
class Function:
    """What the template says the broker function runs with."""

    handler: str
    environment: dict[str, str]
    role_arn: str
    timeout: int
    memory: int


@dataclass
class Api:
    rate_limit: float
    burst_limit: int
    # "METHOD /path" → (rate, burst): the template's RouteSettings, each route its own bucket
    routes: dict[str, tuple[float, int]] = field(default_factory=dict)


@dataclass
class Deployment:
    """The deployed stacks' outputs and what the gateway needs to run the function."""

    outputs: dict[str, Any] = field(default_factory=dict)
    functions: dict[str, Function] = field(default_factory=dict)
    apis: dict[str, Api] = field(default_factory=dict)
    routes: frozenset[str] = frozenset()  # "METHOD /path" of the functions' HttpApi events
    created: list[str] = field(default_factory=list)  # "Stack/Logical (Type)"
    skipped: list[str] = field(default_factory=list)


@dataclass
class Clients:
    iam: IAMClient
    ssm: SSMClient
    codeartifact: CodeArtifactClient
    dynamodb: DynamoDBClient
    kms: KMSClient

    @classmethod
    def for_endpoint(cls, endpoint_url: str, region: str) -> Clients:
        session = admin_session(region)
        return cls(
            iam=session.client("iam", endpoint_url=endpoint_url),
            ssm=session.client("ssm", endpoint_url=endpoint_url),
            codeartifact=session.client("codeartifact", endpoint_url=endpoint_url),
            dynamodb=session.client("dynamodb", endpoint_url=endpoint_url),
            kms=session.client("kms", endpoint_url=endpoint_url),
        )


Creator = Callable[["Provisioner", str, dict[str, Any]], cfn.Deployed]


class Provisioner:
    def __init__(self, clients: Clients, pseudo: Mapping[str, str], root: Path) -> None:
        self.clients = clients
        self.pseudo = dict(pseudo)
        self.root = root
        self.deployment = Deployment()
        self._stack_name = pseudo["AWS::StackName"]
        self._where = ""

    def deploy(self, template_path: Path, parameters: Mapping[str, str]) -> Deployment:
        outputs = self._stack(template_path, parameters, self._stack_name)
        self.deployment.outputs = outputs
        return self.deployment

    def _stack(self, path: Path, parameters: Mapping[str, str], where: str) -> dict[str, Any]:
        template = cfn_yaml.load(path)
        reason = cfn.refusal(template, parameters, self.pseudo)
        if reason:
            raise ProvisionError(f"{where}: CloudFormation refuses the stack: {reason}")
        stack = cfn.Stack(template, dict(parameters), self.pseudo)
        resources = stack.resources()
        for name, resource in resources.items():
            # A value known before anything is created (no resource in it): refused now.
            props = resource.get("Properties", {})
            if resource["Type"] == "AWS::SSM::Parameter" and not stack.references(props):
                _check_ssm_parameter(f"{where}/{name}", stack.resolve(props))
        order = TopologicalSorter(
            {
                name: {
                    dep
                    for dep in stack.references(resource.get("Properties", {}))
                    | set(_as_list(resource.get("DependsOn", [])))
                    if dep in resources
                }
                for name, resource in resources.items()
            }
        ).static_order()
        deployed: dict[str, cfn.Deployed] = {}
        for name in order:
            resource = resources[name]
            kind = resource["Type"]
            here = f"{where}/{name} ({kind})"
            if kind in NOT_LOCAL:
                self.deployment.skipped.append(f"{here}: {NOT_LOCAL[kind]}")
                deployed[name] = cfn.Deployed(
                    ref=f"<not created: {name}>", attributes=_Absent(name)
                )
                continue
            creator = CREATORS.get(kind)
            if creator is None:
                raise ProvisionError(f"{here}: the devstack does not know this resource type")
            evaluated = cfn.Stack(template, dict(parameters), self.pseudo, deployed)
            properties = evaluated.resolve(resource.get("Properties", {}))
            self._where = f"{where}/{name}"
            deployed[name] = creator(self, name, properties)
            self.deployment.created.append(here)
        final = cfn.Stack(template, dict(parameters), self.pseudo, deployed)
        return {
            key: final.resolve(output["Value"])
            for key, output in template.get("Outputs", {}).items()
            if final.exists("Outputs", key)
        }

    def physical_name(self, logical: str) -> str:
        """A generated name, as CloudFormation makes one: stack, resource, a random tail."""
        return f"{self._stack_name}-{logical}-{secrets.token_hex(4).upper()}"[:64]

    # --- resource types -------------------------------------------------------------------

    def ssm_parameter(self, logical: str, p: dict[str, Any]) -> cfn.Deployed:
        _check_ssm_parameter(self._where, p)
        name = p.get("Name") or f"/{self.physical_name(logical)}"
        extra: dict[str, Any] = {}
        if "AllowedPattern" in p:  # kept with the parameter, as SSM does
            extra["AllowedPattern"] = str(p["AllowedPattern"])
        self.clients.ssm.put_parameter(
            Name=name,
            Value=str(p["Value"]),
            Type=p.get("Type", "String"),
            Description=p.get("Description", ""),
            Tier=p.get("Tier", "Standard"),
            Overwrite=True,
            **extra,
        )
        return cfn.Deployed(ref=name, attributes={"Type": p.get("Type", "String")})

    def iam_role(self, logical: str, p: dict[str, Any]) -> cfn.Deployed:
        name = p.get("RoleName") or self.physical_name(logical)
        role = self.clients.iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=policy_json(p["AssumeRolePolicyDocument"]),
            Description=p.get("Description", ""),
            MaxSessionDuration=int(p.get("MaxSessionDuration", 3600)),
        )["Role"]
        for policy in p.get("Policies", []):
            self.clients.iam.put_role_policy(
                RoleName=name,
                PolicyName=policy["PolicyName"],
                PolicyDocument=policy_json(policy["PolicyDocument"]),
            )
        for arn in p.get("ManagedPolicyArns", []):
            self.clients.iam.attach_role_policy(RoleName=name, PolicyArn=arn)
        return cfn.Deployed(ref=name, attributes={"Arn": role["Arn"], "RoleId": role["RoleId"]})

    def iam_role_policy(self, logical: str, p: dict[str, Any]) -> cfn.Deployed:
        self.clients.iam.put_role_policy(
            RoleName=p["RoleName"],
            PolicyName=p["PolicyName"],
            PolicyDocument=policy_json(p["PolicyDocument"]),
        )
        return cfn.Deployed(ref=p["PolicyName"])

    def iam_managed_policy(self, logical: str, p: dict[str, Any]) -> cfn.Deployed:
        policy = self.clients.iam.create_policy(
            PolicyName=p.get("ManagedPolicyName") or self.physical_name(logical),
            PolicyDocument=policy_json(p["PolicyDocument"]),
            Description=p.get("Description", ""),
        )["Policy"]
        for role in p.get("Roles", []):
            self.clients.iam.attach_role_policy(RoleName=role, PolicyArn=policy["Arn"])
        return cfn.Deployed(ref=policy["Arn"], attributes={"PolicyArn": policy["Arn"]})

    def iam_oidc_provider(self, logical: str, p: dict[str, Any]) -> cfn.Deployed:
        arn = self.clients.iam.create_open_id_connect_provider(
            Url=p["Url"],
            ClientIDList=p.get("ClientIdList", []),
            ThumbprintList=p.get("ThumbprintList", []),
        )["OpenIDConnectProviderArn"]
        return cfn.Deployed(ref=arn, attributes={"Arn": arn})

    def codeartifact_domain(self, logical: str, p: dict[str, Any]) -> cfn.Deployed:
        ca = self.clients.codeartifact
        extra = {"encryptionKey": p["EncryptionKey"]} if p.get("EncryptionKey") else {}
        domain = ca.create_domain(domain=p["DomainName"], **extra)["domain"]
        if p.get("PermissionsPolicyDocument"):
            ca.put_domain_permissions_policy(
                domain=domain["name"], policyDocument=json.dumps(p["PermissionsPolicyDocument"])
            )
        return cfn.Deployed(
            ref=domain["arn"],
            attributes={
                "Name": domain["name"],
                "Owner": domain["owner"],
                "Arn": domain["arn"],
                "EncryptionKey": domain.get("encryptionKey", ""),
            },
        )

    def codeartifact_repository(self, logical: str, p: dict[str, Any]) -> cfn.Deployed:
        ca = self.clients.codeartifact
        domain, name = p["DomainName"], p["RepositoryName"]
        repository = ca.create_repository(
            domain=domain,
            repository=name,
            description=p.get("Description", ""),
            upstreams=[{"repositoryName": u} for u in p.get("Upstreams", [])],
        )["repository"]
        for connection in p.get("ExternalConnections", []):
            ca.associate_external_connection(
                domain=domain, repository=name, externalConnection=connection
            )
        if p.get("PermissionsPolicyDocument"):
            ca.put_repository_permissions_policy(
                domain=domain,
                repository=name,
                policyDocument=json.dumps(p["PermissionsPolicyDocument"]),
            )
        return cfn.Deployed(
            ref=repository["arn"],
            attributes={
                "Name": name,
                "Arn": repository["arn"],
                "DomainName": domain,
                "DomainOwner": repository["domainOwner"],
            },
        )

    def codeartifact_package_group(self, logical: str, p: dict[str, Any]) -> cfn.Deployed:
        ca = self.clients.codeartifact
        domain = p["DomainName"]
        group = ca.create_package_group(
            domain=domain,
            packageGroup=p["Pattern"],
            description=p.get("Description", ""),
            contactInfo=p.get("ContactInfo", ""),
        )["packageGroup"]
        restrictions = p.get("OriginConfiguration", {}).get("Restrictions", {})
        names = {"Publish": "PUBLISH", "ExternalUpstream": "EXTERNAL_UPSTREAM"}
        names["InternalUpstream"] = "INTERNAL_UPSTREAM"
        if restrictions:
            ca.update_package_group_origin_configuration(
                domain=domain,
                packageGroup=p["Pattern"],
                restrictions={names[k]: v["RestrictionMode"] for k, v in restrictions.items()},  # type: ignore[misc]
                addAllowedRepositories=[
                    {"repositoryName": repo, "originRestrictionType": names[k]}  # type: ignore[typeddict-item]
                    for k, v in restrictions.items()
                    for repo in v.get("Repositories", [])
                ],
            )
        return cfn.Deployed(ref=group["arn"], attributes={"Arn": group["arn"]})

    def kms_key(self, logical: str, p: dict[str, Any]) -> cfn.Deployed:
        key = self.clients.kms.create_key(
            Description=p.get("Description", ""),
            Policy=json.dumps(p["KeyPolicy"]),
            KeyUsage=p.get("KeyUsage", "ENCRYPT_DECRYPT"),
        )["KeyMetadata"]
        if p.get("EnableKeyRotation"):
            self.clients.kms.enable_key_rotation(KeyId=key["KeyId"])
        return cfn.Deployed(ref=key["KeyId"], attributes={"Arn": key["Arn"], "KeyId": key["KeyId"]})

    def dynamodb_table(self, logical: str, p: dict[str, Any]) -> cfn.Deployed:
        name = p.get("TableName") or self.physical_name(logical)
        sse = p.get("SSESpecification", {})
        extra: dict[str, Any] = {}
        if sse.get("KMSMasterKeyId"):
            extra["SSESpecification"] = {
                "Enabled": bool(sse["SSEEnabled"]),
                "SSEType": sse.get("SSEType", "KMS"),
                "KMSMasterKeyId": sse["KMSMasterKeyId"],
            }
        table = self.clients.dynamodb.create_table(
            TableName=name,
            BillingMode=p.get("BillingMode", "PROVISIONED"),
            AttributeDefinitions=p["AttributeDefinitions"],
            KeySchema=p["KeySchema"],
            **extra,
        )["TableDescription"]
        ttl = p.get("TimeToLiveSpecification")
        if ttl:
            self.clients.dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={
                    "AttributeName": ttl["AttributeName"],
                    "Enabled": bool(ttl["Enabled"]),
                },
            )
        return cfn.Deployed(ref=name, attributes={"Arn": table["TableArn"]})

    def serverless_application(self, logical: str, p: dict[str, Any]) -> cfn.Deployed:
        location = self.root / str(p["Location"])
        parameters = {k: str(v) for k, v in p.get("Parameters", {}).items()}
        outputs = self._stack(location, parameters, f"{self._where}")
        return cfn.Deployed(
            ref=f"{self._stack_name}-{logical}",
            attributes={f"Outputs.{key}": value for key, value in outputs.items()},
        )

    def serverless_function(self, logical: str, p: dict[str, Any]) -> cfn.Deployed:
        self.deployment.functions[logical] = Function(
            handler=str(p["Handler"]),
            environment={
                k: str(v) for k, v in p.get("Environment", {}).get("Variables", {}).items()
            },
            role_arn=str(p["Role"]),
            timeout=int(p.get("Timeout", 3)),
            memory=int(p.get("MemorySize", 128)),
        )
        events = p.get("Events", {}).values()
        self.deployment.routes |= {
            f"{e['Properties']['Method']} {e['Properties']['Path']}"
            for e in events
            if e.get("Type") == "HttpApi" and "Path" in e.get("Properties", {})
        }
        return cfn.Deployed(ref=self.physical_name(logical), attributes={"Arn": logical})

    def serverless_http_api(self, logical: str, p: dict[str, Any]) -> cfn.Deployed:
        settings = p.get("DefaultRouteSettings", {})
        self.deployment.apis[logical] = Api(
            rate_limit=float(settings.get("ThrottlingRateLimit", 10000)),
            burst_limit=int(settings.get("ThrottlingBurstLimit", 5000)),
            routes={
                route: (
                    float(limits.get("ThrottlingRateLimit", 10000)),
                    int(limits.get("ThrottlingBurstLimit", 5000)),
                )
                for route, limits in p.get("RouteSettings", {}).items()
            },
        )
        return cfn.Deployed(ref=secrets.token_hex(5))


CREATORS: dict[str, Creator] = {
    "AWS::SSM::Parameter": Provisioner.ssm_parameter,
    "AWS::IAM::Role": Provisioner.iam_role,
    "AWS::IAM::RolePolicy": Provisioner.iam_role_policy,
    "AWS::IAM::ManagedPolicy": Provisioner.iam_managed_policy,
    "AWS::IAM::OIDCProvider": Provisioner.iam_oidc_provider,
    "AWS::CodeArtifact::Domain": Provisioner.codeartifact_domain,
    "AWS::CodeArtifact::Repository": Provisioner.codeartifact_repository,
    "AWS::CodeArtifact::PackageGroup": Provisioner.codeartifact_package_group,
    "AWS::KMS::Key": Provisioner.kms_key,
    "AWS::DynamoDB::Table": Provisioner.dynamodb_table,
    "AWS::Serverless::Application": Provisioner.serverless_application,
    "AWS::Serverless::Function": Provisioner.serverless_function,
    "AWS::Serverless::HttpApi": Provisioner.serverless_http_api,
}


def _check_ssm_parameter(where: str, properties: Mapping[str, Any]) -> None:
    """Refuse, as SSM does, a parameter whose Value its AllowedPattern does not match."""
    reason = cfn.ssm_parameter_error(properties)
    if reason:
        raise ProvisionError(f"{where} (AWS::SSM::Parameter): SSM refuses it: {reason}")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


class _Absent(dict[str, str]):
    """The attributes of a resource the devstack does not create: placeholders."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def __missing__(self, attribute: str) -> str:
        return f"<not created: {self.name}.{attribute}>"
