"""Structural checks of template.yaml: who may do what, and how the function and API are wired.

cfn-lint and ``sam validate --lint`` check that the template is well formed; these tests check
that it says what the design says (design.md sections 1 and 5): TokenIssuerRole trusts only the
broker's role and holds exactly the CodeArtifact permissions a token may carry, the broker's
role can do nothing but assume it and read the rules, and the API throttles and logs without the
caller's token.  Intrinsic functions are evaluated by a small evaluator over sample parameter
values, so ARNs are compared as the strings CloudFormation would produce.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from broker import rules
from tests.infra import cfn_yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
MAKEFILE = ROOT / "functions" / "Makefile"

ACCOUNT = "111122223333"
OTHER_ACCOUNT = "444455556666"
PSEUDO_PARAMETERS = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::StackName": "cabroker",
    "AWS::URLSuffix": "amazonaws.com",
}
POLICY_RESOURCE_TYPES = ("AWS::IAM::Policy", "AWS::IAM::RolePolicy", "AWS::IAM::ManagedPolicy")
SUB_VARIABLE = re.compile(r"\$\{(!?)([^}]*)\}")


# --- a small evaluator of the intrinsic functions the template uses -------------------------------


@dataclass(frozen=True)
class Stack:
    """The template with parameter values: evaluates intrinsics to strings.

    ``Ref`` to a resource becomes ``<Name>`` (an SSM parameter becomes its ``Name``, as in
    CloudFormation) and ``Fn::GetAtt`` becomes ``<Name.Attribute>``.
    """

    template: Mapping[str, Any]
    overrides: Mapping[str, str] = field(default_factory=dict)

    def parameter(self, name: str) -> str:
        if name in PSEUDO_PARAMETERS:
            return PSEUDO_PARAMETERS[name]
        if name in self.overrides:
            return self.overrides[name]
        return str(self.template["Parameters"][name]["Default"])

    def ref(self, name: str) -> str:
        if name in PSEUDO_PARAMETERS or name in self.template.get("Parameters", {}):
            return self.parameter(name)
        resource = self.template["Resources"][name]
        if resource["Type"] == "AWS::SSM::Parameter" and "Name" in resource["Properties"]:
            return str(self.resolve(resource["Properties"]["Name"]))
        return f"<{name}>"

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            literal, name = match.groups()
            if literal:
                return "${" + name + "}"
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name and not name.startswith("AWS::"):
                return f"<{name}>"
            return self.ref(name)

        return SUB_VARIABLE.sub(replace, text)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {key: self.resolve(item) for key, item in value.items()}
        ((key, arg),) = value.items()
        match key:
            case "Ref":
                return self.ref(arg)
            case "Fn::GetAtt":
                return f"<{arg[0]}.{arg[1]}>"
            case "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                return self.sub(text, variables)
            case "Fn::If":
                name, when_true, when_false = arg
                return self.resolve(when_true if self.condition(name) else when_false)
            case "Fn::Equals":
                left, right = (str(self.resolve(item)) for item in arg)
                return left == right
            case "Fn::Not":
                return not self.resolve(arg[0])
            case "Fn::And":
                return all(self.resolve(item) for item in arg)
            case "Fn::Or":
                return any(self.resolve(item) for item in arg)
            case "Condition":
                return self.condition(arg)
            case "Fn::Join":
                separator, items = arg
                return separator.join(str(item) for item in self.resolve(items))
        if key.startswith("Fn::"):
            raise NotImplementedError(f"the test evaluator does not know {key}")
        return {key: self.resolve(arg)}


# --- helpers over the template --------------------------------------------------------------------


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def resources_of_type(template: Mapping[str, Any], kind: str) -> dict[str, Any]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def properties(template: Mapping[str, Any], name: str) -> dict[str, Any]:
    props: dict[str, Any] = template["Resources"][name]["Properties"]
    return props


def statements(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    return as_list(document["Statement"])


def role_policy_documents(template: Mapping[str, Any], role: str) -> list[dict[str, Any]]:
    """Every policy document that applies to ``role``: inline ones and attached resources."""
    documents = [p["PolicyDocument"] for p in properties(template, role).get("Policies", [])]
    reference = {"Ref": role}
    for kind in POLICY_RESOURCE_TYPES:
        for resource in resources_of_type(template, kind).values():
            props = resource["Properties"]
            if props.get("RoleName") == reference or reference in props.get("Roles", []):
                documents.append(props["PolicyDocument"])
    return documents


def all_policy_documents(template: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::IAM::Role":
            yield resource["Properties"]["AssumeRolePolicyDocument"]
            yield from role_policy_documents(template, name)


def allowed(stack: Stack, documents: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """The (action, resource) pairs the documents allow, ARNs evaluated."""
    pairs = set()
    for statement in (s for document in documents for s in statements(document)):
        assert statement["Effect"] == "Allow", statement
        for action in as_list(statement["Action"]):
            for resource in as_list(statement["Resource"]):
                pairs.add((action, str(stack.resolve(resource))))
    return pairs


def function_properties(template: Mapping[str, Any]) -> dict[str, Any]:
    """BrokerFunction's properties with SAM's Globals applied (environments are merged)."""
    globals_ = template.get("Globals", {}).get("Function", {})
    props = {**globals_, **properties(template, "BrokerFunction")}
    variables = {
        **globals_.get("Environment", {}).get("Variables", {}),
        **properties(template, "BrokerFunction").get("Environment", {}).get("Variables", {}),
    }
    props["Environment"] = {"Variables": variables}
    return props


def function_environment(template: Mapping[str, Any]) -> dict[str, Any]:
    variables: dict[str, Any] = function_properties(template)["Environment"]["Variables"]
    return variables


def makefile_variable(name: str) -> str:
    match = re.search(rf"^{name}\s*\??=\s*(\S+)\s*$", MAKEFILE.read_text(), re.MULTILINE)
    assert match, f"{name} is not set in {MAKEFILE}"
    return match.group(1)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return cfn_yaml.load(TEMPLATE)


@pytest.fixture(scope="module")
def stack(template: dict[str, Any]) -> Stack:
    return Stack(template)


# --- the loader -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("!Ref Name", {"Ref": "Name"}, id="ref"),
        pytest.param("!GetAtt Role.Arn", {"Fn::GetAtt": ["Role", "Arn"]}, id="getatt-dotted"),
        pytest.param("!GetAtt [Role, Arn]", {"Fn::GetAtt": ["Role", "Arn"]}, id="getatt-list"),
        pytest.param("!Sub a-${B}", {"Fn::Sub": "a-${B}"}, id="sub"),
        pytest.param(
            "!Sub ['a-${B}', {B: !Ref C}]",
            {"Fn::Sub": ["a-${B}", {"B": {"Ref": "C"}}]},
            id="sub-with-variables",
        ),
        pytest.param(
            "!If [Cond, !Ref A, !Ref AWS::NoValue]",
            {"Fn::If": ["Cond", {"Ref": "A"}, {"Ref": "AWS::NoValue"}]},
            id="if",
        ),
        pytest.param(
            '!Not [!Equals [!Ref P, ""]]',
            {"Fn::Not": [{"Fn::Equals": [{"Ref": "P"}, ""]}]},
            id="not-equals",
        ),
        pytest.param("!Condition C", {"Condition": "C"}, id="condition"),
        pytest.param("!Join ['', [a, b]]", {"Fn::Join": ["", ["a", "b"]]}, id="join"),
        pytest.param(
            "!Select [0, !GetAZs '']", {"Fn::Select": [0, {"Fn::GetAZs": ""}]}, id="select"
        ),
        pytest.param("!Split [',', a]", {"Fn::Split": [",", "a"]}, id="split"),
        pytest.param("!FindInMap [M, k, v]", {"Fn::FindInMap": ["M", "k", "v"]}, id="findinmap"),
        pytest.param("!Base64 x", {"Fn::Base64": "x"}, id="base64"),
        pytest.param("!ImportValue x", {"Fn::ImportValue": "x"}, id="importvalue"),
        pytest.param("{a: {b: [!Ref C]}}", {"a": {"b": [{"Ref": "C"}]}}, id="nested"),
    ],
)
def test_loader_turns_short_forms_into_json_forms(text: str, expected: Any) -> None:
    assert cfn_yaml.loads(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("a: 1\na: 2\n", id="duplicate-key"),
        pytest.param("a: {b: 1, b: 2}\n", id="duplicate-nested-key"),
        pytest.param("a: !Bogus x\n", id="unknown-tag"),
        pytest.param("a: !GetAtt NoAttribute\n", id="getatt-without-attribute"),
    ],
)
def test_loader_refuses(text: str) -> None:
    with pytest.raises(yaml.YAMLError):
        cfn_yaml.loads(text)


# --- TokenIssuerRole: trusts only the broker, holds at most what a token may carry ----------------


def test_token_issuer_role_trusts_only_the_broker_role(template: dict[str, Any]) -> None:
    trust = statements(properties(template, "TokenIssuerRole")["AssumeRolePolicyDocument"])
    assert len(trust) == 1
    (statement,) = trust
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"AWS": {"Fn::GetAtt": ["BrokerFunctionRole", "Arn"]}}
    assert sorted(as_list(statement["Action"])) == ["sts:AssumeRole", "sts:SetSourceIdentity"]
    assert set(statement) <= {"Sid", "Effect", "Principal", "Action"}


def test_token_issuer_role_sessions_last_at_most_an_hour(template: dict[str, Any]) -> None:
    assert properties(template, "TokenIssuerRole")["MaxSessionDuration"] <= 3600


def test_token_issuer_role_has_no_managed_or_attached_policies(template: dict[str, Any]) -> None:
    props = properties(template, "TokenIssuerRole")
    assert "ManagedPolicyArns" not in props
    assert len(role_policy_documents(template, "TokenIssuerRole")) == len(props["Policies"])


@pytest.mark.parametrize(
    ("overrides", "owner", "domain", "repository"),
    [
        pytest.param({}, ACCOUNT, "acme", "internal", id="defaults-owner-is-stack-account"),
        pytest.param(
            {"DomainOwner": OTHER_ACCOUNT, "DomainName": "corp", "RepositoryName": "private"},
            OTHER_ACCOUNT,
            "corp",
            "private",
            id="cross-account-domain",
        ),
    ],
)
def test_token_issuer_role_allows_exactly_what_a_token_may_carry(
    template: dict[str, Any], overrides: dict[str, str], owner: str, domain: str, repository: str
) -> None:
    arn = f"arn:aws:codeartifact:us-east-1:{owner}"
    repository_arn = f"{arn}:repository/{domain}/{repository}"
    packages_arn = f"{arn}:package/{domain}/{repository}/pypi//*"
    documents = role_policy_documents(template, "TokenIssuerRole")
    assert allowed(Stack(template, overrides), documents) == {
        ("codeartifact:GetAuthorizationToken", f"{arn}:domain/{domain}"),
        ("sts:GetServiceBearerToken", "*"),
        ("codeartifact:ReadFromRepository", repository_arn),
        ("codeartifact:GetRepositoryEndpoint", repository_arn),
        ("codeartifact:PublishPackageVersion", packages_arn),
        ("codeartifact:PutPackageMetadata", packages_arn),
    }


def test_token_issuer_role_star_only_for_codeartifact_bearer_tokens(
    template: dict[str, Any],
) -> None:
    documents = role_policy_documents(template, "TokenIssuerRole")
    starred = [s for d in documents for s in statements(d) if "*" in as_list(s["Resource"])]
    assert len(starred) == 1
    (statement,) = starred
    assert as_list(statement["Action"]) == ["sts:GetServiceBearerToken"]
    condition = statement["Condition"]
    assert condition["StringEquals"] == {"sts:AWSServiceName": "codeartifact.amazonaws.com"}
    assert int(condition["NumericLessThanEquals"]["sts:DurationSeconds"]) <= 43200
    assert set(condition) == {"StringEquals", "NumericLessThanEquals"}


def test_no_policy_uses_negations_or_action_wildcards(template: dict[str, Any]) -> None:
    for document in all_policy_documents(template):
        for statement in statements(document):
            assert not {"NotAction", "NotResource", "NotPrincipal"} & set(statement), statement
            assert all("*" not in action for action in as_list(statement["Action"])), statement


def test_only_the_two_roles_exist(template: dict[str, Any]) -> None:
    roles = resources_of_type(template, "AWS::IAM::Role")
    assert set(roles) == {"BrokerFunctionRole", "TokenIssuerRole"}


# --- BrokerFunctionRole: assume TokenIssuerRole, read the rules, nothing else ---------------------


def test_broker_role_is_for_lambda_only(template: dict[str, Any]) -> None:
    trust = statements(properties(template, "BrokerFunctionRole")["AssumeRolePolicyDocument"])
    assert trust == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ]


def test_broker_role_managed_policies_are_logs_and_traces(stack: Stack) -> None:
    managed = stack.resolve(properties(stack.template, "BrokerFunctionRole")["ManagedPolicyArns"])
    assert set(managed) == {
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
        "arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess",
    }


def test_broker_role_may_only_assume_token_issuer_and_read_rules(stack: Stack) -> None:
    assert "Policies" not in properties(stack.template, "BrokerFunctionRole")
    documents = role_policy_documents(stack.template, "BrokerFunctionRole")
    assert allowed(stack, documents) == {
        ("sts:AssumeRole", "<TokenIssuerRole.Arn>"),
        ("sts:SetSourceIdentity", "<TokenIssuerRole.Arn>"),
        ("ssm:GetParameter", f"arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/cabroker/cabroker/rules"),
    }


def test_function_waits_for_its_policy(template: dict[str, Any]) -> None:
    depends_on = as_list(template["Resources"]["BrokerFunction"].get("DependsOn", []))
    assert "BrokerFunctionPolicy" in depends_on


# --- BrokerFunction -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("Handler", "broker.app.handler", id="handler"),
        pytest.param("CodeUri", "functions/", id="code-uri"),
        pytest.param("Architectures", ["arm64"], id="arm64"),
        pytest.param("Role", {"Fn::GetAtt": ["BrokerFunctionRole", "Arn"]}, id="role"),
        pytest.param("MemorySize", 512, id="memory"),
        pytest.param("Timeout", 10, id="timeout"),
    ],
)
def test_function_property(template: dict[str, Any], name: str, expected: Any) -> None:
    assert function_properties(template)[name] == expected


def test_function_runtime_is_python_3_13_or_newer(template: dict[str, Any]) -> None:
    runtime = function_properties(template)["Runtime"]
    match = re.fullmatch(r"python(\d+)\.(\d+)", runtime)
    assert match, runtime
    assert (int(match[1]), int(match[2])) >= (3, 13)


def test_function_is_built_by_the_makefile_for_its_runtime(template: dict[str, Any]) -> None:
    function = template["Resources"]["BrokerFunction"]
    assert function["Metadata"]["BuildMethod"] == "makefile"
    runtime = function_properties(template)["Runtime"]
    assert runtime == f"python{makefile_variable('LAMBDA_PYTHON_VERSION')}"
    assert makefile_variable("LAMBDA_PLATFORM").endswith("_aarch64")
    assert re.search(r"^build-BrokerFunction:", MAKEFILE.read_text(), re.MULTILINE)


@pytest.mark.parametrize(
    ("variable", "overrides", "expected"),
    [
        pytest.param("BROKER_RULES_PARAMETER", {}, "/cabroker/cabroker/rules", id="rules"),
        pytest.param("BROKER_ROLE_ARN", {}, "<TokenIssuerRole.Arn>", id="role"),
        pytest.param("BROKER_DOMAIN", {}, "acme", id="domain"),
        pytest.param("BROKER_DOMAIN", {"DomainName": "corp"}, "corp", id="domain-given"),
        pytest.param("BROKER_DOMAIN_OWNER", {}, ACCOUNT, id="owner-defaults-to-account"),
        pytest.param(
            "BROKER_DOMAIN_OWNER", {"DomainOwner": OTHER_ACCOUNT}, OTHER_ACCOUNT, id="owner-given"
        ),
        pytest.param("POWERTOOLS_SERVICE_NAME", {}, "cabroker", id="service-name"),
        pytest.param("POWERTOOLS_METRICS_NAMESPACE", {}, "CodeArtifactBroker", id="metrics"),
    ],
)
def test_function_environment(
    template: dict[str, Any], variable: str, overrides: dict[str, str], expected: str
) -> None:
    environment = function_environment(template)
    assert Stack(template, overrides).resolve(environment[variable]) == expected


@pytest.mark.parametrize(
    ("overrides", "mode", "tracer_disabled"),
    [
        pytest.param({}, "Active", "false", id="traced-by-default"),
        pytest.param({"Tracing": "PassThrough"}, "PassThrough", "true", id="tracing-off"),
    ],
)
def test_tracing_switches_x_ray_and_the_tracer_together(
    template: dict[str, Any], overrides: dict[str, str], mode: str, tracer_disabled: str
) -> None:
    stack = Stack(template, overrides)
    assert stack.resolve(function_properties(template)["Tracing"]) == mode
    disabled = function_environment(template)["POWERTOOLS_TRACE_DISABLED"]
    assert stack.resolve(disabled) == tracer_disabled


def test_function_reads_rules_from_ssm_not_a_file(template: dict[str, Any]) -> None:
    environment = function_environment(template)
    assert environment["BROKER_RULES_PARAMETER"] == {"Ref": "RulesParameter"}
    assert "BROKER_RULES_FILE" not in environment


def test_rules_parameter_holds_the_rules_document(stack: Stack) -> None:
    props = properties(stack.template, "RulesParameter")
    assert props["Type"] == "String"
    assert props["Value"] == {"Ref": "RulesDocument"}
    assert stack.resolve(props["Tier"]) == "Standard"


def test_default_rules_document_is_valid_and_grants_nothing(stack: Stack) -> None:
    ruleset = rules.parse(stack.parameter("RulesDocument"))
    assert ruleset.rules == ()


# --- BrokerApi ------------------------------------------------------------------------------------


def test_api_routes_reach_the_function(template: dict[str, Any]) -> None:
    events = properties(template, "BrokerFunction")["Events"].values()
    assert all(e["Type"] == "HttpApi" for e in events)
    assert all(e["Properties"]["ApiId"] == {"Ref": "BrokerApi"} for e in events)
    routes = {
        (e["Properties"].get("Method", "$default"), e["Properties"].get("Path", "$default"))
        for e in events
    }
    assert routes == {
        ("POST", "/v1/token"),
        ("GET", "/v1/grants"),
        ("GET", "/v1/config"),
        ("$default", "$default"),
    }


@pytest.mark.parametrize(
    ("setting", "parameter", "default"),
    [
        pytest.param("ThrottlingRateLimit", "ThrottlingRateLimit", "20", id="rate"),
        pytest.param("ThrottlingBurstLimit", "ThrottlingBurstLimit", "40", id="burst"),
    ],
)
def test_api_is_throttled(stack: Stack, setting: str, parameter: str, default: str) -> None:
    route_settings = properties(stack.template, "BrokerApi")["DefaultRouteSettings"]
    assert route_settings[setting] == {"Ref": parameter}
    assert stack.resolve(route_settings[setting]) == default


def access_log_format(template: Mapping[str, Any]) -> str:
    settings = properties(template, "BrokerApi")["AccessLogSettings"]
    assert settings["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    log_format: str = settings["Format"]
    return log_format


def test_api_access_log_is_json_with_the_request_facts(template: dict[str, Any]) -> None:
    fields = json.loads(access_log_format(template))
    assert set(fields) >= {
        "requestId",
        "ip",
        "requestTime",
        "httpMethod",
        "routeKey",
        "status",
        "responseLength",
        "integrationErrorMessage",
    }
    assert all(value.startswith("$context.") for value in fields.values())


@pytest.mark.parametrize(
    "forbidden",
    [
        pytest.param("authorization", id="authorization-header"),
        pytest.param("$request.header", id="any-request-header"),
        pytest.param("$request.body", id="request-body"),
    ],
)
def test_api_access_log_leaves_out_credentials(template: dict[str, Any], forbidden: str) -> None:
    assert forbidden not in access_log_format(template).lower()


@pytest.mark.parametrize(
    ("log_group", "name"),
    [
        pytest.param("ApiAccessLogGroup", "/cabroker/cabroker/api-access", id="api-access"),
        pytest.param("BrokerFunctionLogGroup", "/aws/lambda/<BrokerFunction>", id="function"),
    ],
)
def test_log_groups_are_named_and_expire(stack: Stack, log_group: str, name: str) -> None:
    props = properties(stack.template, log_group)
    assert stack.template["Resources"][log_group]["Type"] == "AWS::Logs::LogGroup"
    assert stack.resolve(props["LogGroupName"]) == name
    assert props["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert stack.resolve(props["RetentionInDays"]) == "90"


# --- parameters and outputs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parameter", "default"),
    [
        pytest.param("DomainName", "acme", id="domain"),
        pytest.param("DomainOwner", "", id="owner-empty-means-this-account"),
        pytest.param("RepositoryName", "internal", id="repository"),
        pytest.param("RulesParameterTier", "Standard", id="tier"),
        pytest.param("ThrottlingRateLimit", "20", id="rate"),
        pytest.param("ThrottlingBurstLimit", "40", id="burst"),
        pytest.param("LogRetentionDays", "90", id="retention"),
        pytest.param("Tracing", "Active", id="tracing"),
    ],
)
def test_parameter_default(stack: Stack, parameter: str, default: str) -> None:
    assert stack.parameter(parameter) == default


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        pytest.param(
            "BrokerUrl", "https://<BrokerApi>.execute-api.us-east-1.amazonaws.com", id="url"
        ),
        pytest.param("TokenIssuerRoleArn", "<TokenIssuerRole.Arn>", id="issuer-role"),
        pytest.param("BrokerFunctionRoleArn", "<BrokerFunctionRole.Arn>", id="function-role"),
        pytest.param("RulesParameterName", "/cabroker/cabroker/rules", id="rules-parameter"),
    ],
)
def test_output(stack: Stack, output: str, expected: str) -> None:
    assert stack.resolve(stack.template["Outputs"][output]["Value"]) == expected
