"""Structural checks of template.yaml: who may do what, and how the stacks and function are wired.

cfn-lint and ``sam validate --lint`` check that the template is well formed (and follow no nested
template); these tests check that it says what the README's API, settings and session-policy
sections say.  The root stack nests infra/codeartifact.yaml (the domain and repositories) and
infra/iam.yaml (TokenIssuerRole, whose checks live in test_iam.py); here: the broker's role can do
nothing but assume the Iam stack's TokenIssuerRole and read the rules, TokenIssuerRole trusts that
role, the function and the outputs read the nested stacks' outputs, the nested stacks get the root's
parameters, and the API throttles and logs without the caller's token.  Intrinsic functions are
evaluated by tests/infra/cfn_eval.py over sample parameter values, so ARNs are compared as the
strings CloudFormation would produce (nested outputs stay symbolic:
``<Iam.Outputs.TokenIssuerRoleArn>``).

The wiring and security checks return their violations and each is proven by mutations of the
template that break exactly its property.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
import yaml

from broker import rules
from devstack import cfn_yaml
from tests.infra.cfn_eval import (
    ACCOUNT,
    OTHER_ACCOUNT,
    ROOT,
    Check,
    Mutation,
    Stack,
    Template,
    all_policy_documents,
    allowed,
    as_list,
    load,
    mutation_params,
    parameter_error,
    properties,
    resources_of_type,
    role_policy_documents,
    statements,
)

TEMPLATE = ROOT / "template.yaml"
MAKEFILE = ROOT / "functions" / "Makefile"
THIRD_ACCOUNT = "777788889999"
KEY_ARN = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
RULES_PARAMETER_ARN = f"arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/cabroker/cabroker/rules"
NESTED_STACKS = {"CodeArtifact": "infra/codeartifact.yaml", "Iam": "infra/iam.yaml"}
# Sample root parameter values: the defaults, and every nested-stack parameter given.
GIVEN = {
    "DomainName": "corp",
    "RepositoryName": "private.repo",
    "EncryptionKeyArn": KEY_ARN,
    "InternalPrefixes": "acme,acmecorp",
    "ReaderAccounts": f"{OTHER_ACCOUNT},{THIRD_ACCOUNT}",
    "PublisherAccounts": OTHER_ACCOUNT,
    "CreateReaderPolicy": "true",
    "CreatePublisherPolicy": "false",
}
SAMPLES: dict[str, dict[str, str]] = {"defaults": {}, "given": GIVEN}


# --- helpers over the template --------------------------------------------------------------------


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


def nested_parameters(template: Mapping[str, Any], stack: str) -> dict[str, Any]:
    parameters: dict[str, Any] = properties(template, stack).get("Parameters", {})
    return parameters


def nested_output_references(node: Any) -> Iterator[tuple[str, str]]:
    """(stack, output) for every ``!GetAtt Stack.Outputs.Name`` and ``${Stack.Outputs.Name}``."""
    if isinstance(node, list):
        for item in node:
            yield from nested_output_references(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "Fn::GetAtt" and str(value[1]).startswith("Outputs."):
                yield value[0], value[1].removeprefix("Outputs.")
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                yield from re.findall(r"\$\{(\w+)\.Outputs\.(\w+)\}", text)
            yield from nested_output_references(value)


def makefile_variable(name: str) -> str:
    match = re.search(rf"^{name}\s*\??=\s*(\S+)\s*$", MAKEFILE.read_text(), re.MULTILINE)
    assert match, f"{name} is not set in {MAKEFILE}"
    return match.group(1)


def differences(name: str, actual: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    return [
        f"{name} {key}: {actual.get(key, '<missing>')!r}, expected {expected.get(key, '<none>')!r}"
        for key in sorted(set(actual) | set(expected))
        if actual.get(key) != expected.get(key)
    ]


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load(TEMPLATE)


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


# --- wiring and security checks, each returning its violations ------------------------------------


def broker_role_is_for_lambda_only(t: Template) -> list[str]:
    trust = statements(properties(t, "BrokerFunctionRole")["AssumeRolePolicyDocument"])
    expected = {
        "Effect": "Allow",
        "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }
    return [] if trust == [expected] else [f"BrokerFunctionRole trusts {trust}"]


def broker_role_managed_policies_are_logs_and_traces(t: Template) -> list[str]:
    managed = Stack(t).resolve(properties(t, "BrokerFunctionRole").get("ManagedPolicyArns", []))
    expected = {
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
        "arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess",
    }
    return [] if set(managed) == expected else [f"BrokerFunctionRole has managed {managed}"]


def broker_role_may_only_assume_token_issuer_and_read_rules(t: Template) -> list[str]:
    """BrokerFunctionPolicy: AssumeRole on the Iam stack's output, GetParameter on the rules."""
    problems = []
    if "Policies" in properties(t, "BrokerFunctionRole"):
        problems.append("BrokerFunctionRole has inline policies")
    if "Policies" in properties(t, "BrokerFunction"):
        problems.append("BrokerFunction has SAM policies")
    issuer = {"Fn::GetAtt": ["Iam", "Outputs.TokenIssuerRoleArn"]}
    for statement in statements(properties(t, "BrokerFunctionPolicy")["PolicyDocument"]):
        if "sts:AssumeRole" in as_list(statement.get("Action")) and statement["Resource"] != issuer:
            problems.append(f"AssumeRole on {statement['Resource']}, not {issuer}")
    for sample, overrides in SAMPLES.items():
        stack = Stack(t, overrides)
        if stack.ref("RulesParameter") != "/cabroker/cabroker/rules":
            problems.append(f"{sample}: the rules parameter is {stack.ref('RulesParameter')}")
        actual = allowed(stack, role_policy_documents(t, "BrokerFunctionRole"))
        expected = {
            ("sts:AssumeRole", "<Iam.Outputs.TokenIssuerRoleArn>"),
            ("sts:SetSourceIdentity", "<Iam.Outputs.TokenIssuerRoleArn>"),
            ("ssm:GetParameter", RULES_PARAMETER_ARN),
        }
        problems += [f"{sample}: also allows {pair}" for pair in sorted(actual - expected)]
        problems += [f"{sample}: lacks {pair}" for pair in sorted(expected - actual)]
    return problems


def function_waits_for_its_policy(t: Template) -> list[str]:
    depends_on = as_list(t["Resources"]["BrokerFunction"].get("DependsOn", []))
    return (
        [] if "BrokerFunctionPolicy" in depends_on else ["BrokerFunction may start unable to act"]
    )


def only_the_broker_function_role(t: Template) -> list[str]:
    """TokenIssuerRole lives in the Iam stack; no other role, nor one SAM would make."""
    problems = []
    roles = set(resources_of_type(t, "AWS::IAM::Role"))
    if roles != {"BrokerFunctionRole"}:
        problems.append(f"the roles are {sorted(roles)}")
    for name in resources_of_type(t, "AWS::Serverless::Function"):
        if "Role" not in properties(t, name):
            problems.append(f"{name} has no Role: SAM would create one")
    return problems


def no_negations_or_action_wildcards(t: Template) -> list[str]:
    problems = []
    for where, document in all_policy_documents(t):
        for statement in statements(document):
            negations = {"NotAction", "NotResource", "NotPrincipal"} & set(statement)
            if negations:
                problems.append(f"{where} uses {sorted(negations)}")
            wildcards = [a for a in as_list(statement.get("Action", [])) if "*" in a or "?" in a]
            if wildcards:
                problems.append(f"{where} has wildcard actions {wildcards}")
    return problems


def iam_stack_trusts_the_broker_role_for_the_domain_created(t: Template) -> list[str]:
    problems = []
    passed = nested_parameters(t, "Iam")
    broker_role = {"Fn::GetAtt": ["BrokerFunctionRole", "Arn"]}
    if passed.get("BrokerRoleArn") != broker_role:
        problems.append(f"Iam's BrokerRoleArn is {passed.get('BrokerRoleArn')}, not {broker_role}")
    for sample, overrides in SAMPLES.items():
        expected = {
            "DomainName": "<CodeArtifact.Outputs.DomainName>",
            "DomainOwner": "<CodeArtifact.Outputs.DomainOwner>",
            "RepositoryName": "<CodeArtifact.Outputs.PrivateRepositoryName>",
            "BrokerRoleArn": "<BrokerFunctionRole.Arn>",
            "CreateReaderPolicy": overrides.get("CreateReaderPolicy", "false"),
            "CreatePublisherPolicy": overrides.get("CreatePublisherPolicy", "false"),
        }
        problems += differences(f"{sample}: Iam", Stack(t, overrides).resolve(passed), expected)
    return problems


def codeartifact_stack_gets_the_root_parameters(t: Template) -> list[str]:
    problems = []
    passed = nested_parameters(t, "CodeArtifact")
    for sample, overrides in SAMPLES.items():
        value = Stack(t, overrides).parameter
        expected = {
            "DomainName": value("DomainName"),
            "EncryptionKeyArn": value("EncryptionKeyArn"),
            "PrivateRepositoryName": value("RepositoryName"),
            # CommaDelimitedList parameters cross the stack boundary joined with ",".
            "InternalPrefixes": value("InternalPrefixes"),
            "ReaderAccounts": value("ReaderAccounts"),
            "PublisherAccounts": value("PublisherAccounts"),
        }
        actual = Stack(t, overrides).resolve(passed)
        problems += differences(f"{sample}: CodeArtifact", actual, expected)
    return problems


def function_environment_comes_from_the_nested_stacks(t: Template) -> list[str]:
    environment = function_environment(t)
    problems = []
    if "BROKER_RULES_FILE" in environment:
        problems.append("BROKER_RULES_FILE is set as well as BROKER_RULES_PARAMETER")
    expected = {
        "BROKER_RULES_PARAMETER": "/cabroker/cabroker/rules",
        "BROKER_ROLE_ARN": "<Iam.Outputs.TokenIssuerRoleArn>",
        "BROKER_DOMAIN": "<CodeArtifact.Outputs.DomainName>",
        "BROKER_DOMAIN_OWNER": "<CodeArtifact.Outputs.DomainOwner>",
    }
    for sample, overrides in SAMPLES.items():
        actual = Stack(t, overrides).resolve({k: environment.get(k) for k in expected})
        problems += differences(f"{sample}: environment", actual, expected)
    return problems


def nested_stacks_agree_with_their_templates(t: Template) -> list[str]:
    """Parameters passed are declared (required ones passed, values acceptable to the nested
    template), and every output read exists unconditionally."""
    problems = []
    applications = {
        name: properties(t, name).get("Location")
        for name in resources_of_type(t, "AWS::Serverless::Application")
    }
    if applications != NESTED_STACKS:
        problems.append(f"nested stacks are {applications}, not {NESTED_STACKS}")
    nested: dict[str, Template] = {}
    for name, location in applications.items():
        path = TEMPLATE.parent / str(location)
        if not path.is_file():
            problems.append(f"{name}: no template at {location}")
            continue
        nested[name] = load(path)
        declared = nested[name].get("Parameters", {})
        passed = nested_parameters(t, name)
        for parameter in sorted(set(passed) - set(declared)):
            problems.append(f"{name}: {parameter} is not a parameter of {location}")
        for parameter in sorted(set(declared) - set(passed)):
            if "Default" not in declared[parameter]:
                problems.append(f"{name}: required parameter {parameter} is not passed")
        for parameter, value in passed.items():
            if parameter not in declared:
                continue
            joined = isinstance(value, dict) and "Fn::Join" in value
            if joined and declared[parameter].get("Type") != "CommaDelimitedList":
                problems.append(f"{name}: {parameter} gets a joined list but is a String")
            for sample, overrides in SAMPLES.items():
                resolved = Stack(t, overrides).resolve(value)
                if isinstance(resolved, str) and not resolved.startswith("<"):
                    reason = parameter_error(declared[parameter], resolved)
                    if reason:
                        problems.append(f"{sample}: {name} refuses {parameter}: {reason}")
    for stack, output in sorted(set(nested_output_references(t))):
        outputs = nested.get(stack, {}).get("Outputs", {})
        if output not in outputs:
            problems.append(f"{stack} has no output {output}")
        elif "Condition" in outputs[output]:
            problems.append(f"{stack}.Outputs.{output} exists only under a condition")
    return problems


EXPECTED_OUTPUTS = {
    "BrokerUrl": "https://<BrokerApi>.execute-api.us-east-1.amazonaws.com",
    "TokenIssuerRoleArn": "<Iam.Outputs.TokenIssuerRoleArn>",
    "BrokerFunctionRoleArn": "<BrokerFunctionRole.Arn>",
    "AdminPolicyArn": "<Iam.Outputs.AdminPolicyArn>",
    "DomainName": "<CodeArtifact.Outputs.DomainName>",
    "PrivateRepositoryName": "<CodeArtifact.Outputs.PrivateRepositoryName>",
    "RulesParameterName": "/cabroker/cabroker/rules",
    "DashboardUrl": (
        "https://console.aws.amazon.com/cloudwatch/home?region=us-east-1#dashboards:name=<Dashboard>"
    ),
}


def outputs_are_what_operators_need(t: Template) -> list[str]:
    stack = Stack(t)
    actual = {name: stack.resolve(output["Value"]) for name, output in t["Outputs"].items()}
    return differences("output", actual, EXPECTED_OUTPUTS)


CHECKS: list[Check] = [
    broker_role_is_for_lambda_only,
    broker_role_managed_policies_are_logs_and_traces,
    broker_role_may_only_assume_token_issuer_and_read_rules,
    function_waits_for_its_policy,
    only_the_broker_function_role,
    no_negations_or_action_wildcards,
    iam_stack_trusts_the_broker_role_for_the_domain_created,
    codeartifact_stack_gets_the_root_parameters,
    function_environment_comes_from_the_nested_stacks,
    nested_stacks_agree_with_their_templates,
    outputs_are_what_operators_need,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_the_template_has_the_property(check: Check) -> None:
    assert check(load(TEMPLATE)) == []


def _broker_statement(t: Template, sid: str) -> dict[str, Any]:
    document = properties(t, "BrokerFunctionPolicy")["PolicyDocument"]
    matches: list[dict[str, Any]] = [s for s in document["Statement"] if s.get("Sid") == sid]
    (statement,) = matches
    return statement


def _environment(t: Template) -> dict[str, Any]:
    variables: dict[str, Any] = properties(t, "BrokerFunction")["Environment"]["Variables"]
    return variables


def _add_resource(t: Template, name: str, resource: dict[str, Any]) -> None:
    t["Resources"][name] = resource


OUTPUT = "Fn::GetAtt"
S3_READ = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}

MUTATIONS: list[Mutation] = [
    (
        "the account may assume the broker role",
        lambda t: properties(t, "BrokerFunctionRole")["AssumeRolePolicyDocument"]["Statement"][0][
            "Principal"
        ].update(AWS={"Ref": "AWS::AccountId"}),
        broker_role_is_for_lambda_only,
    ),
    (
        "AdministratorAccess on the broker role",
        lambda t: properties(t, "BrokerFunctionRole")["ManagedPolicyArns"].append(
            "arn:aws:iam::aws:policy/AdministratorAccess"
        ),
        broker_role_managed_policies_are_logs_and_traces,
    ),
    (
        "broker assumes any role",
        lambda t: _broker_statement(t, "AssumeTokenIssuerRole").update(Resource="*"),
        broker_role_may_only_assume_token_issuer_and_read_rules,
    ),
    (
        "broker assumes the issuer role named by hand",
        lambda t: _broker_statement(t, "AssumeTokenIssuerRole").update(
            Resource={"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/*"}
        ),
        broker_role_may_only_assume_token_issuer_and_read_rules,
    ),
    (
        "broker reads every parameter",
        lambda t: _broker_statement(t, "ReadRules").update(
            Resource={
                "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/*"
            }
        ),
        broker_role_may_only_assume_token_issuer_and_read_rules,
    ),
    (
        "broker role gets an inline policy",
        lambda t: properties(t, "BrokerFunctionRole").update(
            Policies=[{"PolicyName": "more", "PolicyDocument": {"Statement": [S3_READ]}}]
        ),
        broker_role_may_only_assume_token_issuer_and_read_rules,
    ),
    (
        "a managed policy attached to the broker role",
        lambda t: _add_resource(
            t,
            "ExtraPolicy",
            {
                "Type": "AWS::IAM::ManagedPolicy",
                "Properties": {
                    "Roles": [{"Ref": "BrokerFunctionRole"}],
                    "PolicyDocument": {"Statement": [S3_READ]},
                },
            },
        ),
        broker_role_may_only_assume_token_issuer_and_read_rules,
    ),
    (
        "function with SAM policies",
        lambda t: properties(t, "BrokerFunction").update(Policies=["AmazonS3ReadOnlyAccess"]),
        broker_role_may_only_assume_token_issuer_and_read_rules,
    ),
    (
        "function does not wait for its policy",
        lambda t: t["Resources"]["BrokerFunction"].pop("DependsOn"),
        function_waits_for_its_policy,
    ),
    (
        "TokenIssuerRole back in the root",
        lambda t: _add_resource(
            t, "TokenIssuerRole", copy.deepcopy(t["Resources"]["BrokerFunctionRole"])
        ),
        only_the_broker_function_role,
    ),
    (
        "function without an explicit role",
        lambda t: properties(t, "BrokerFunction").pop("Role"),
        only_the_broker_function_role,
    ),
    (
        "NotResource in the broker policy",
        lambda t: _broker_statement(t, "ReadRules").update(
            NotResource=_broker_statement(t, "ReadRules").pop("Resource")
        ),
        no_negations_or_action_wildcards,
    ),
    (
        "wildcard ssm action",
        lambda t: _broker_statement(t, "ReadRules").update(Action="ssm:GetParameter*"),
        no_negations_or_action_wildcards,
    ),
    (
        "issuer role trusts the account root",
        lambda t: properties(t, "Iam")["Parameters"].update(
            BrokerRoleArn={"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
        ),
        iam_stack_trusts_the_broker_role_for_the_domain_created,
    ),
    (
        "Iam sees the store repository",
        lambda t: properties(t, "Iam")["Parameters"].update(
            RepositoryName={OUTPUT: ["CodeArtifact", "Outputs.StoreRepositoryName"]}
        ),
        iam_stack_trusts_the_broker_role_for_the_domain_created,
    ),
    (
        "reader flag creates the publisher policy",
        lambda t: properties(t, "Iam")["Parameters"].update(
            CreatePublisherPolicy={"Ref": "CreateReaderPolicy"}
        ),
        iam_stack_trusts_the_broker_role_for_the_domain_created,
    ),
    (
        "prefixes joined with ';'",
        lambda t: properties(t, "CodeArtifact")["Parameters"]["InternalPrefixes"][
            "Fn::Join"
        ].__setitem__(0, ";"),
        codeartifact_stack_gets_the_root_parameters,
    ),
    (
        "prefixes passed as a list",
        lambda t: properties(t, "CodeArtifact")["Parameters"].update(
            InternalPrefixes={"Ref": "InternalPrefixes"}
        ),
        codeartifact_stack_gets_the_root_parameters,
    ),
    (
        "encryption key not passed",
        lambda t: properties(t, "CodeArtifact")["Parameters"].pop("EncryptionKeyArn"),
        codeartifact_stack_gets_the_root_parameters,
    ),
    (
        "reader and publisher accounts swapped",
        lambda t: properties(t, "CodeArtifact")["Parameters"].update(
            ReaderAccounts=properties(t, "CodeArtifact")["Parameters"]["PublisherAccounts"],
            PublisherAccounts=properties(t, "CodeArtifact")["Parameters"]["ReaderAccounts"],
        ),
        codeartifact_stack_gets_the_root_parameters,
    ),
    (
        "function assumes its own role",
        lambda t: _environment(t).update(BROKER_ROLE_ARN={OUTPUT: ["BrokerFunctionRole", "Arn"]}),
        function_environment_comes_from_the_nested_stacks,
    ),
    (
        "function domain is the store repository",
        lambda t: _environment(t).update(
            BROKER_DOMAIN={OUTPUT: ["CodeArtifact", "Outputs.StoreRepositoryName"]}
        ),
        function_environment_comes_from_the_nested_stacks,
    ),
    (
        "function domain owner hard-coded",
        lambda t: _environment(t).update(BROKER_DOMAIN_OWNER=OTHER_ACCOUNT),
        function_environment_comes_from_the_nested_stacks,
    ),
    (
        "function reads rules from a file too",
        lambda t: _environment(t).update(BROKER_RULES_FILE="/var/task/rules.yaml"),
        function_environment_comes_from_the_nested_stacks,
    ),
    (
        "an output the Iam stack lacks",
        lambda t: _environment(t).update(BROKER_ROLE_ARN={OUTPUT: ["Iam", "Outputs.RoleArn"]}),
        nested_stacks_agree_with_their_templates,
    ),
    (
        "a conditional output read",
        lambda t: t["Outputs"].update(
            ReaderPolicyArn={"Value": {"Fn::Sub": "${Iam.Outputs.ReaderPolicyArn}"}}
        ),
        nested_stacks_agree_with_their_templates,
    ),
    (
        "a parameter the Iam stack lacks",
        lambda t: properties(t, "Iam")["Parameters"].update(Owner={"Ref": "AWS::AccountId"}),
        nested_stacks_agree_with_their_templates,
    ),
    (
        "BrokerRoleArn not passed",
        lambda t: properties(t, "Iam")["Parameters"].pop("BrokerRoleArn"),
        nested_stacks_agree_with_their_templates,
    ),
    (
        "a root default the nested stack refuses",
        lambda t: t["Parameters"]["RepositoryName"].update(Default="-internal"),
        nested_stacks_agree_with_their_templates,
    ),
    (
        "a list passed to a String parameter",
        lambda t: properties(t, "Iam")["Parameters"].update(
            DomainName={"Fn::Join": [",", {"Ref": "InternalPrefixes"}]}
        ),
        nested_stacks_agree_with_their_templates,
    ),
    (
        "nested template missing",
        lambda t: properties(t, "Iam").update(Location="infra/missing.yaml"),
        nested_stacks_agree_with_their_templates,
    ),
    (
        "issuer role output is the function role",
        lambda t: t["Outputs"]["TokenIssuerRoleArn"].update(
            Value={OUTPUT: ["BrokerFunctionRole", "Arn"]}
        ),
        outputs_are_what_operators_need,
    ),
    (
        "admin policy output dropped",
        lambda t: t["Outputs"].pop("AdminPolicyArn"),
        outputs_are_what_operators_need,
    ),
    (
        "repository output is the store",
        lambda t: t["Outputs"]["PrivateRepositoryName"].update(
            Value={OUTPUT: ["CodeArtifact", "Outputs.StoreRepositoryName"]}
        ),
        outputs_are_what_operators_need,
    ),
]


@pytest.mark.parametrize(("mutate", "check"), mutation_params(MUTATIONS))
def test_each_check_catches_the_mutation_it_guards_against(
    mutate: Callable[[Template], None], check: Check
) -> None:
    mutated = load(TEMPLATE)
    mutate(mutated)
    assert check(mutated) != []


def test_every_check_has_a_mutation() -> None:
    assert {check for _, _, check in MUTATIONS} == set(CHECKS)


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
    ("variable", "expected"),
    [
        pytest.param("POWERTOOLS_SERVICE_NAME", "cabroker", id="service-name"),
        pytest.param("POWERTOOLS_METRICS_NAMESPACE", "CodeArtifactBroker", id="metrics"),
        pytest.param("POWERTOOLS_LOG_LEVEL", "INFO", id="log-level"),
    ],
)
def test_function_environment(stack: Stack, variable: str, expected: str) -> None:
    assert stack.resolve(function_environment(stack.template)[variable]) == expected


@pytest.mark.parametrize(
    ("overrides", "mode", "tracer_disabled"),
    [
        # Lambda's own X-Ray segments, without the X-Ray SDK's cold start: the default.
        pytest.param({}, "Active", "true", id="traced-by-default-without-the-sdk"),
        pytest.param({"Tracing": "Detailed"}, "Active", "false", id="detailed-with-the-tracer"),
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


@pytest.mark.parametrize("tracing", ["Active", "Detailed", "PassThrough"])
def test_the_cold_start_benchmark_loads_the_tracer_as_the_template_does(
    template: dict[str, Any], tracing: str
) -> None:
    """bench/broker_request.py measures "the default deployment" with the Tracer on or off as
    the template's Tracing value turns it on or off."""
    from bench.broker_request import TRACER_BY_TRACING

    disabled = function_environment(template)["POWERTOOLS_TRACE_DISABLED"]
    assert Stack(template, {"Tracing": tracing}).resolve(disabled) == (
        "false" if TRACER_BY_TRACING[tracing] else "true"
    )
    assert set(TRACER_BY_TRACING) == set(template["Parameters"]["Tracing"]["AllowedValues"])


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
        ("GET", "/v1/openapi.json"),
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


# --- parameters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parameter", "default"),
    [
        pytest.param("DomainName", "acme", id="domain"),
        pytest.param("RepositoryName", "internal", id="repository"),
        pytest.param("EncryptionKeyArn", "", id="aws-managed-key"),
        pytest.param("InternalPrefixes", "acme", id="internal-prefixes"),
        pytest.param("ReaderAccounts", "", id="no-reader-accounts"),
        pytest.param("PublisherAccounts", "", id="no-publisher-accounts"),
        pytest.param("CreateReaderPolicy", "false", id="no-reader-policy"),
        pytest.param("CreatePublisherPolicy", "false", id="no-publisher-policy"),
        pytest.param("RulesParameterTier", "Standard", id="tier"),
        pytest.param("ThrottlingRateLimit", "20", id="rate"),
        pytest.param("ThrottlingBurstLimit", "40", id="burst"),
        pytest.param("LogRetentionDays", "90", id="retention"),
        pytest.param("Tracing", "Active", id="tracing"),
    ],
)
def test_parameter_default(stack: Stack, parameter: str, default: str) -> None:
    assert stack.parameter(parameter) == default


def test_domain_owner_is_not_a_parameter(template: dict[str, Any]) -> None:
    """The root stack creates the domain, so its owner is the stack's account."""
    assert "DomainOwner" not in template["Parameters"]


def test_sample_values_are_valid_root_parameters(template: dict[str, Any]) -> None:
    Stack(template, GIVEN)  # raises if CloudFormation would refuse a value
    with pytest.raises(ValueError, match="RepositoryName"):
        Stack(template, {**GIVEN, "RepositoryName": "-internal"})
