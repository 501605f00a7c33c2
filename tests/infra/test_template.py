"""Structural checks of template.yaml: who may do what, and how the stacks and function are wired.

cfn-lint and ``sam validate --lint`` check that the template is well formed (and follow no nested
template); these tests check that it says what the README's API, settings and session-policy
sections say.  The root stack nests infra/codeartifact.yaml (the domain and repositories, only
with Estate=Create) and infra/iam.yaml (TokenIssuerRole, whose checks live in test_iam.py); here:
the broker's role can do nothing but assume the Iam stack's TokenIssuerRole and read the rules
(which the stack never writes), TokenIssuerRole trusts that role, the Iam stack gets the domain,
owner and repositories created (Estate=Create) or named (Estate=Existing, which creates no
CodeArtifact resource at all), the function and the outputs read them from the Iam stack, and the
API throttles and logs without the caller's token.  Intrinsic functions are evaluated by
tests/infra/cfn_eval.py over sample parameter values, so ARNs are compared as the strings
CloudFormation would produce; symbolically (nested outputs read ``<Iam.Outputs.ServedDomain>``) or
through :func:`~tests.infra.cfn_eval.deploy`, which evaluates each nested stack for what the root
passes it and hands its outputs back, so what the function gets is compared with what exists.

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

from broker.settings import Settings
from devstack import cfn_yaml
from tests.infra.cfn_eval import (
    ACCOUNT,
    NOT_REPOSITORY_NAMES,
    OTHER_ACCOUNT,
    PSEUDO_PARAMETERS,
    REGION,
    ROOT,
    Check,
    Deployment,
    DeploymentError,
    Mutation,
    Stack,
    Template,
    all_policy_documents,
    allowed,
    as_list,
    deploy,
    is_trap,
    load,
    mutation_params,
    parameter_error,
    properties,
    refusal,
    resources_of_type,
    role_policy_documents,
    statements,
    unresolved,
)

TEMPLATE = ROOT / "template.yaml"
MAKEFILE = ROOT / "functions" / "Makefile"
THIRD_ACCOUNT = "777788889999"
KEY_ARN = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
RULES_PARAMETER_ARN = f"arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/cabroker/cabroker/rules"
NESTED_STACKS = {
    "CodeArtifact": "infra/codeartifact.yaml",
    "Iam": "infra/iam.yaml",
    "Dependabot": "infra/dependabot.yaml",
}
# Five repositories, the most a deployment serves, with the characters a name may have.
FIVE = "a.b,team_x,lib-3,R4,z9.v_1"
# Sample root parameter values: the defaults, and every nested-stack parameter given.
GIVEN = {
    "DomainName": "corp",
    "Repositories": "private.repo,team_x",
    "EncryptionKeyArn": KEY_ARN,
    "InternalPrefixes": "acme,acmecorp",
    "ReaderAccounts": f"{OTHER_ACCOUNT},{THIRD_ACCOUNT}",
    "PublisherAccounts": OTHER_ACCOUNT,
    "CreateReaderPolicy": "true",
    "CreatePublisherPolicy": "false",
}
# An estate that exists: in this account (DomainOwner empty), and in another one.
EXISTING = {"Estate": "Existing", "DomainName": "corp", "Repositories": "internal,restricted"}
ELSEWHERE = {
    "Estate": "Existing",
    "DomainName": "shared",
    "DomainOwner": OTHER_ACCOUNT,
    "Repositories": FIVE,
    "CreatePublisherPolicy": "true",
}
# Dependabot's role (an optional nested stack) for a served repository, or the default one.
DEPENDABOT = {"DependabotRepositoryOwnerId": "1234567", "DependabotRepositoryIds": "89,1011"}
SAMPLES: dict[str, dict[str, str]] = {
    "defaults": {},
    "given": GIVEN,
    "five": {"Repositories": FIVE, **DEPENDABOT, "DependabotRepository": "lib-3"},
    "existing": EXISTING,
    "existing-one": {"Estate": "Existing", "Repositories": "internal"},
    "existing-cross-account": {**ELSEWHERE, **DEPENDABOT},
}


def creates_estate(overrides: Mapping[str, str]) -> bool:
    return overrides.get("Estate", "Create") == "Create"


CREATE_SAMPLES = {name: o for name, o in SAMPLES.items() if creates_estate(o)}
EXISTING_SAMPLES = {name: o for name, o in SAMPLES.items() if not creates_estate(o)}


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


def served(t: Template, overrides: Mapping[str, str]) -> tuple[str, str, list[str]]:
    """The domain, its owner and the repositories the parameters name (the owner: DomainOwner, or
    this account when empty)."""
    stack = Stack(t, overrides)
    owner = stack.parameter("DomainOwner") or ACCOUNT
    return stack.parameter("DomainName"), owner, stack.parameter("Repositories").split(",")


def deployed(
    t: Template, overrides: Mapping[str, str], problems: list[str], sample: str
) -> Deployment | None:
    """``t`` deployed for ``overrides`` with its nested stacks, or None (and why, in problems)."""
    try:
        return deploy(t, overrides, location=TEMPLATE)
    except (DeploymentError, IndexError, KeyError) as error:
        problems.append(f"{sample}: cannot be deployed: {error!r}")
        return None


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
    problems: list[str] = []
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
        actual = allowed(stack, role_policy_documents(t, "BrokerFunctionRole"))
        expected = {
            ("sts:AssumeRole", "<Iam.Outputs.TokenIssuerRoleArn>"),
            ("sts:SetSourceIdentity", "<Iam.Outputs.TokenIssuerRoleArn>"),
            ("ssm:GetParameter", RULES_PARAMETER_ARN),
        }
        problems += [f"{sample}: also allows {pair}" for pair in sorted(actual - expected)]
        problems += [f"{sample}: lacks {pair}" for pair in sorted(expected - actual)]
    return problems


def the_stack_never_writes_the_rules(t: Template) -> list[str]:
    """No SSM parameter in any of the templates but the deliberate TooMany* traps (the rules are
    pushed by cabroker-admin, never by a deploy), and the function, its policy and the output
    name the same parameter, /cabroker/<stack name>/rules, whatever the stack is called."""
    problems: list[str] = []
    templates = {"template.yaml": t} | {
        location: load(TEMPLATE.parent / location) for location in NESTED_STACKS.values()
    }
    for where, template in templates.items():
        for name, resource in resources_of_type(template, "AWS::SSM::Parameter").items():
            if not (name.startswith("TooMany") and "Condition" in resource and is_trap(resource)):
                problems.append(f"{where}: {name} is an SSM parameter the stack writes")
    for stack_name in ("cabroker", "team-b"):
        stack = Stack(t, pseudo={**PSEUDO_PARAMETERS, "AWS::StackName": stack_name})
        name = f"/cabroker/{stack_name}/rules"
        arn = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{name}"
        variable = stack.resolve(function_environment(t).get("BROKER_RULES_PARAMETER"))
        output = stack.resolve(t["Outputs"].get("RulesParameterName", {}).get("Value"))
        read = {
            resource
            for action, resource in allowed(stack, role_policy_documents(t, "BrokerFunctionRole"))
            if action == "ssm:GetParameter"
        }
        if variable != name:
            problems.append(f"stack {stack_name}: BROKER_RULES_PARAMETER is {variable}, not {name}")
        if output != name:
            problems.append(f"stack {stack_name}: output RulesParameterName is {output}")
        if read != {arn}:
            problems.append(f"stack {stack_name}: the function may read {sorted(read)}, not {arn}")
    return problems


def shadow_rules_are_read_only_when_enabled(t: Template) -> list[str]:
    """ShadowRules=Enabled points the function at /cabroker/<stack name>/shadow-rules and lets
    it read that parameter (and nothing more); Disabled, neither. The broker accepts both
    environments, and the stack never writes the shadow rules either."""
    problems: list[str] = []
    for stack_name in ("cabroker", "team-b"):
        pseudo = {**PSEUDO_PARAMETERS, "AWS::StackName": stack_name}
        live = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/cabroker/{stack_name}/rules"
        name = f"/cabroker/{stack_name}/shadow-rules"
        for setting, enabled in (("Enabled", True), ("Disabled", False)):
            where = f"stack {stack_name}, ShadowRules={setting}"
            stack = Stack(t, {"ShadowRules": setting}, pseudo=pseudo)
            variable = stack.resolve(
                function_environment(t).get("BROKER_SHADOW_RULES_PARAMETER", "<unset>")
            )
            # Resolved whole: a statement may be an Fn::If, and AWS::NoValue then.
            documents = [stack.resolve(d) for d in role_policy_documents(t, "BrokerFunctionRole")]
            read = {
                resource
                for action, resource in allowed(stack, documents)
                if action == "ssm:GetParameter"
            }
            expected = {live} | (
                {f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{name}"} if enabled else set()
            )
            if variable != (name if enabled else ""):
                problems.append(f"{where}: BROKER_SHADOW_RULES_PARAMETER is {variable!r}")
            if read != expected:
                problems.append(f"{where}: the function may read {sorted(read)}")
            environment = {
                key: value
                for key, value in stack.resolve(function_environment(t)).items()
                if key.startswith("BROKER_SHADOW")
            }
            try:
                settings = Settings.from_env(
                    {
                        "BROKER_RULES_PARAMETER": f"/cabroker/{stack_name}/rules",
                        "BROKER_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/TokenIssuerRole",
                        "BROKER_DOMAIN": "acme",
                        "BROKER_DOMAIN_OWNER": ACCOUNT,
                        "AWS_REGION": REGION,
                        **environment,
                    }
                )
            except ValueError as error:
                problems.append(f"{where}: the broker refuses its settings: {error}")
                continue
            if settings.shadow_rules_parameter != (name if enabled else None):
                problems.append(f"{where}: the broker reads {settings.shadow_rules_parameter}")
    return problems


def function_waits_for_its_policy(t: Template) -> list[str]:
    depends_on = as_list(t["Resources"]["BrokerFunction"].get("DependsOn", []))
    return (
        [] if "BrokerFunctionPolicy" in depends_on else ["BrokerFunction may start unable to act"]
    )


def only_the_broker_function_role(t: Template) -> list[str]:
    """TokenIssuerRole lives in the Iam stack; no other role, nor one SAM would make."""
    problems: list[str] = []
    roles = set(resources_of_type(t, "AWS::IAM::Role"))
    if roles != {"BrokerFunctionRole"}:
        problems.append(f"the roles are {sorted(roles)}")
    for name in resources_of_type(t, "AWS::Serverless::Function"):
        if "Role" not in properties(t, name):
            problems.append(f"{name} has no Role: SAM would create one")
    return problems


def no_negations_or_action_wildcards(t: Template) -> list[str]:
    problems: list[str] = []
    for where, document in all_policy_documents(t):
        for statement in statements(document):
            negations = {"NotAction", "NotResource", "NotPrincipal"} & set(statement)
            if negations:
                problems.append(f"{where} uses {sorted(negations)}")
            wildcards = [a for a in as_list(statement.get("Action", [])) if "*" in a or "?" in a]
            if wildcards:
                problems.append(f"{where} has wildcard actions {wildcards}")
    return problems


def iam_stack_trusts_the_broker_role_for_the_served_domain(t: Template) -> list[str]:
    """The Iam stack gets the CodeArtifact stack's domain, owner and repositories when the
    estate is created, the parameters' (the owner defaulting to this account) when it exists."""
    problems: list[str] = []
    passed = nested_parameters(t, "Iam")
    broker_role = {"Fn::GetAtt": ["BrokerFunctionRole", "Arn"]}
    if passed.get("BrokerRoleArn") != broker_role:
        problems.append(f"Iam's BrokerRoleArn is {passed.get('BrokerRoleArn')}, not {broker_role}")
    for sample, overrides in SAMPLES.items():
        domain, owner, repositories = served(t, overrides)
        estate = (
            {
                "DomainName": "<CodeArtifact.Outputs.DomainName>",
                "DomainOwner": "<CodeArtifact.Outputs.DomainOwner>",
                "RepositoryNames": "<CodeArtifact.Outputs.PrivateRepositories>",
            }
            if creates_estate(overrides)
            else {
                "DomainName": domain,
                "DomainOwner": owner,
                "RepositoryNames": ",".join(repositories),
            }
        )
        expected = {
            **estate,
            "BrokerRoleArn": "<BrokerFunctionRole.Arn>",
            "CreateReaderPolicy": overrides.get("CreateReaderPolicy", "false"),
            "CreatePublisherPolicy": overrides.get("CreatePublisherPolicy", "false"),
        }
        problems += differences(f"{sample}: Iam", Stack(t, overrides).resolve(passed), expected)
    return problems


def codeartifact_stack_gets_the_root_parameters(t: Template) -> list[str]:
    problems: list[str] = []
    passed = nested_parameters(t, "CodeArtifact")
    for sample, overrides in CREATE_SAMPLES.items():
        value = Stack(t, overrides).parameter
        expected = {
            "DomainName": value("DomainName"),
            "EncryptionKeyArn": value("EncryptionKeyArn"),
            # CommaDelimitedList parameters cross the stack boundary joined with ",".
            "PrivateRepositoryNames": value("Repositories"),
            "InternalPrefixes": value("InternalPrefixes"),
            "ReaderAccounts": value("ReaderAccounts"),
            "PublisherAccounts": value("PublisherAccounts"),
        }
        actual = Stack(t, overrides).resolve(passed)
        problems += differences(f"{sample}: CodeArtifact", actual, expected)
    return problems


def function_environment_comes_from_the_nested_stacks(t: Template) -> list[str]:
    """What the function serves is what the Iam stack holds: its outputs, in either estate."""
    environment = function_environment(t)
    problems: list[str] = []
    if "BROKER_RULES_FILE" in environment:
        problems.append("BROKER_RULES_FILE is set as well as BROKER_RULES_PARAMETER")
    expected = {
        "BROKER_RULES_PARAMETER": "/cabroker/cabroker/rules",
        "BROKER_ROLE_ARN": "<Iam.Outputs.TokenIssuerRoleArn>",
        "BROKER_DOMAIN": "<Iam.Outputs.ServedDomain>",
        "BROKER_DOMAIN_OWNER": "<Iam.Outputs.ServedDomainOwner>",
        "BROKER_REPOSITORIES": "<Iam.Outputs.ServedRepositories>",
    }
    for sample, overrides in SAMPLES.items():
        actual = Stack(t, overrides).resolve({k: environment.get(k) for k in expected})
        problems += differences(f"{sample}: environment", actual, expected)
    return problems


def nested_stacks_agree_with_their_templates(t: Template) -> list[str]:
    """Parameters passed are declared (required ones passed, values acceptable to the nested
    template), and every output read exists unconditionally."""
    problems: list[str] = []
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
                if not Stack(t, overrides).exists("Resources", name):
                    continue  # not created: its parameters are never passed
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


def nothing_reads_a_resource_that_is_not_created(t: Template) -> list[str]:
    """Every resource and output created reads only resources created with it (CloudFormation
    refuses a reference to one whose Condition is false, e.g. the CodeArtifact stack when the
    estate exists, outside an Fn::If on that condition)."""
    problems: list[str] = []
    for sample, overrides in SAMPLES.items():
        for extra in ({}, {"SharedTokenCache": "Disabled", "ReplayGuard": "Disabled"}):
            stack = Stack(t, {**overrides, **extra})
            where = f"{sample}{' ' + str(extra) if extra else ''}"
            for name, resource in stack.resources().items():
                missing = unresolved(stack, resource.get("Properties", {}))
                missing |= {
                    other
                    for other in as_list(resource.get("DependsOn", []))
                    if not stack.exists("Resources", other)
                }
                if missing:
                    problems.append(f"{where}: {name} reads {sorted(missing)}, not created")
            for name, output in t.get("Outputs", {}).items():
                if stack.exists("Outputs", name):
                    missing = unresolved(stack, output["Value"])
                    if missing:
                        problems.append(f"{where}: output {name} reads {sorted(missing)}")
    return problems


def an_existing_estate_is_never_created(t: Template) -> list[str]:
    """Estate=Existing: no CodeArtifact stack and no AWS::CodeArtifact resource in any stack, so
    the estate is neither created, changed nor deleted with the stack. Estate=Create (the
    default): the domain, the store and every private repository."""
    problems: list[str] = []
    for sample, overrides in SAMPLES.items():
        deployment = deployed(t, overrides, problems, sample)
        if deployment is None:
            continue
        created = sorted(
            f"{stack}/{name}"
            for stack, name, resource in deployment.created()
            if resource["Type"].startswith("AWS::CodeArtifact::")
        )
        if creates_estate(overrides):
            _, _, repositories = served(t, overrides)
            if len(created) < 2 + len(repositories):
                problems.append(f"{sample}: creates only {created}")
        else:
            if created:
                problems.append(f"{sample}: attaches to an estate, yet creates {created}")
            if "CodeArtifact" in deployment.nested:
                problems.append(f"{sample}: attaches to an estate, yet creates its stack")
    return problems


def _what_the_broker_serves(
    sample: str, deployment: Deployment, domain: str, owner: str, repositories: list[str]
) -> list[str]:
    """The Iam stack, TokenIssuerRole, the function and the outputs agree on domain, owner and
    repositories, and they are the ones given."""
    if "Iam" not in deployment.nested:
        return [f"{sample}: no Iam stack"]
    joined = ",".join(repositories)
    iam = deployment.passed("Iam")
    problems = differences(
        f"{sample}: Iam",
        {key: iam.get(key) for key in ("DomainName", "DomainOwner", "RepositoryNames")},
        {"DomainName": domain, "DomainOwner": owner, "RepositoryNames": joined},
    )
    environment = deployment.environment()
    expected = {
        "BROKER_DOMAIN": domain,
        "BROKER_DOMAIN_OWNER": owner,
        "BROKER_REPOSITORIES": joined,
    }
    problems += differences(
        f"{sample}: environment", {key: environment.get(key) for key in expected}, expected
    )
    outputs = deployment.outputs()
    expected = {
        "DomainName": domain,
        "DomainOwner": owner,
        "PrivateRepositoryName": repositories[0],
        "PrivateRepositoryNames": joined,
    }
    problems += differences(
        f"{sample}: output", {key: outputs.get(key) for key in expected}, expected
    )
    stack = deployment.nested["Iam"]
    read = {
        resource
        for action, resource in allowed(
            stack, role_policy_documents(stack.template, "TokenIssuerRole")
        )
        if action == "codeartifact:ReadFromRepository"
    }
    arn = f"arn:aws:codeartifact:{REGION}:{owner}:repository/{domain}/"
    if read != {arn + name for name in repositories}:
        problems.append(f"{sample}: TokenIssuerRole reads {sorted(read)}")
    return problems


def the_broker_serves_the_estate_it_attaches_to(t: Template) -> list[str]:
    problems: list[str] = []
    for sample, overrides in EXISTING_SAMPLES.items():
        deployment = deployed(t, overrides, problems, sample)
        if deployment is not None:
            problems += _what_the_broker_serves(sample, deployment, *served(t, overrides))
    return problems


def the_broker_serves_the_estate_it_creates(t: Template) -> list[str]:
    """The domain the CodeArtifact stack creates, owned by this account, and the private
    repositories it creates (those of the Repositories parameter, in order)."""
    problems: list[str] = []
    for sample, overrides in CREATE_SAMPLES.items():
        deployment = deployed(t, overrides, problems, sample)
        if deployment is None:
            continue
        if "CodeArtifact" not in deployment.nested:
            problems.append(f"{sample}: creates no CodeArtifact stack")
            continue
        codeartifact = deployment.nested["CodeArtifact"]
        created = codeartifact.resources()
        domains = [
            codeartifact.deployed[name].attributes
            for name, resource in created.items()
            if resource["Type"] == "AWS::CodeArtifact::Domain"
        ]
        private = [
            str(codeartifact.deployed[name].attributes["Name"])
            for name, resource in created.items()
            if resource["Type"] == "AWS::CodeArtifact::Repository"
            and not resource["Properties"].get("ExternalConnections")
        ]
        domain, _, repositories = served(t, overrides)
        if [d["Name"] for d in domains] != [domain]:
            problems.append(f"{sample}: creates domains {domains}, not {domain}")
            continue
        if private != repositories:
            problems.append(f"{sample}: creates repositories {private}, not {repositories}")
        problems += _what_the_broker_serves(sample, deployment, domain, ACCOUNT, private)
    return problems


def domain_owner_only_when_attaching(t: Template) -> list[str]:
    """Estate=Create (the default) owns the domain it creates: DomainOwner must be empty (the
    OwnerOnlyWhenAttaching rule); Existing takes an empty owner or a 12-digit account."""
    problems: list[str] = []
    for parameter, default in (("Estate", "Create"), ("DomainOwner", "")):
        if t["Parameters"][parameter].get("Default") != default:
            problems.append(f"{parameter}'s default is not {default!r}")
    cases = [
        ({}, True),
        ({"DomainOwner": OTHER_ACCOUNT}, False),
        ({"Estate": "Create", "DomainOwner": ACCOUNT}, False),
        ({"Estate": "Existing"}, True),
        ({"Estate": "Existing", "DomainOwner": OTHER_ACCOUNT}, True),
        ({"Estate": "Existing", "DomainOwner": "12345"}, False),
        ({"Estate": "Existing", "DomainOwner": "*"}, False),
        ({"Estate": "Attach"}, False),
    ]
    for overrides, accepted in cases:
        reason = refusal(t, overrides)
        if (reason is None) != accepted:
            problems.append(f"{overrides}: {'refused: ' + str(reason) if reason else 'accepted'}")
    return problems


def repositories_must_be_named(t: Template) -> list[str]:
    """The RepositoriesAreNamed rule: one repository at least, and no empty entry (an empty
    entry would reach IAM as repository/DOMAIN/, and every slot after it would shift)."""
    problems: list[str] = []
    for estate in ("Create", "Existing"):
        for value in ("", ",", "internal,", ",internal", "a1,,b2"):
            if refusal(t, {"Estate": estate, "Repositories": value}) is None:
                problems.append(f"{estate}: Repositories={value!r} is accepted")
        for value in ("internal", FIVE):
            reason = refusal(t, {"Estate": estate, "Repositories": value})
            if reason is not None:
                problems.append(f"{estate}: Repositories={value!r} is refused: {reason}")
    return problems


def a_sixth_repository_fails_the_deployment(t: Template) -> list[str]:
    """Five repositories deploy; a sixth, which no slot would grant, fails the deployment (a
    TooMany* trap is created) whether the estate is created or exists."""
    problems: list[str] = []
    for estate in ("Create", "Existing"):
        for repositories, fails in ((FIVE, False), (FIVE + ",six", True)):
            sample = f"{estate} {repositories}"
            deployment = deployed(
                t, {"Estate": estate, "Repositories": repositories}, problems, sample
            )
            if deployment is None:
                continue
            traps = [
                f"{stack}/{name}"
                for stack, name, resource in deployment.created()
                if is_trap(resource)
            ]
            if bool(traps) != fails:
                problems.append(f"{sample}: traps {traps}")
    return problems


# An existing estate named with a repository twice (creating it would fail at the second one).
TWICE = {
    "twice": {"Estate": "Existing", "Repositories": "internal,internal"},
    "twice-apart": {"Estate": "Existing", "Repositories": "a1,b2,a1"},
}


def the_broker_accepts_what_deploys(t: Template) -> list[str]:
    """Whatever CloudFormation deploys, the broker accepts its environment (a deployment whose
    broker refuses its settings answers every request with an error): the Rules refuse what the
    broker would."""
    problems = []
    for sample, overrides in {**SAMPLES, **TWICE}.items():
        try:
            deployment = deploy(t, {**overrides, "SharedTokenCache": "Disabled"}, location=TEMPLATE)
        except DeploymentError:
            continue  # refused before anything is created
        environment = {
            name: value
            for name, value in deployment.environment().items()
            if name.startswith("BROKER_") and value != ""
        }
        try:
            Settings.from_env({**environment, "AWS_REGION": REGION})
        except ValueError as error:
            problems.append(f"{sample}: deploys, and the broker refuses its settings: {error}")
    return problems


def served_repositories_are_names_never_the_store_or_a_pattern(t: Template) -> list[str]:
    """Repositories refuses a pattern, the store and what is no repository name
    (cfn_eval.NOT_REPOSITORY_NAMES): with Estate=Existing nothing else would, and TokenIssuerRole
    would hold them (``repository/DOMAIN/*`` is every repository of the domain)."""
    problems: list[str] = []
    for estate in ("Create", "Existing"):
        for value in NOT_REPOSITORY_NAMES:
            if refusal(t, {"Estate": estate, "Repositories": value}) is None:
                problems.append(f"{estate}: Repositories={value!r} is accepted")
    return problems


EXPECTED_OUTPUTS = {
    "BrokerUrl": "https://<BrokerApi>.execute-api.us-east-1.amazonaws.com",
    # Sample ARNs of what the nested Iam stack creates (tests/infra/cfn_eval.py, deploy).
    "TokenIssuerRoleArn": f"arn:aws:iam::{ACCOUNT}:role/cabroker-TokenIssuerRole-SAMPLE",
    "BrokerFunctionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/cabroker-BrokerFunctionRole-SAMPLE",
    "AdminPolicyArn": f"arn:aws:iam::{ACCOUNT}:policy/AdminPolicy-SAMPLE",
    "DomainName": "acme",
    "DomainOwner": ACCOUNT,
    "PrivateRepositoryName": "internal",
    "PrivateRepositoryNames": "internal",
    "RulesParameterName": "/cabroker/cabroker/rules",
    "DashboardUrl": (
        "https://console.aws.amazon.com/cloudwatch/home?region=us-east-1#dashboards:name=<Dashboard>"
    ),
}


def outputs_are_what_operators_need(t: Template) -> list[str]:
    problems: list[str] = []
    deployment = deployed(t, {}, problems, "defaults")
    if deployment is not None:
        problems += differences("output", deployment.outputs(), EXPECTED_OUTPUTS)
    return problems


CHECKS: list[Check] = [
    broker_role_is_for_lambda_only,
    broker_role_managed_policies_are_logs_and_traces,
    broker_role_may_only_assume_token_issuer_and_read_rules,
    the_stack_never_writes_the_rules,
    shadow_rules_are_read_only_when_enabled,
    function_waits_for_its_policy,
    only_the_broker_function_role,
    no_negations_or_action_wildcards,
    iam_stack_trusts_the_broker_role_for_the_served_domain,
    codeartifact_stack_gets_the_root_parameters,
    function_environment_comes_from_the_nested_stacks,
    nested_stacks_agree_with_their_templates,
    nothing_reads_a_resource_that_is_not_created,
    an_existing_estate_is_never_created,
    the_broker_serves_the_estate_it_attaches_to,
    the_broker_serves_the_estate_it_creates,
    domain_owner_only_when_attaching,
    repositories_must_be_named,
    a_sixth_repository_fails_the_deployment,
    served_repositories_are_names_never_the_store_or_a_pattern,
    the_broker_accepts_what_deploys,
    outputs_are_what_operators_need,
]
# Template defects the lead is to fix (see the check's docstring); strict: the fix fails the
# test until the mark goes.
KNOWN_DEFECTS: dict[Check, str] = {}


@pytest.mark.parametrize(
    "check",
    [
        pytest.param(
            check,
            id=check.__name__,
            marks=[pytest.mark.xfail(strict=True, reason=KNOWN_DEFECTS[check])]
            if check in KNOWN_DEFECTS
            else [],
        )
        for check in CHECKS
    ],
)
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


def _unconstrained(t: Template, parameter: str) -> None:
    """No pattern on ``parameter``'s entries and no rule: any value is accepted."""
    t["Parameters"][parameter].pop("AllowedPattern", None)
    t.pop("Rules", None)


def _iam_parameter(t: Template, parameter: str, branch: int, value: Any) -> None:
    """Set branch 1 (the estate created) or 2 (the estate named) of an Iam stack parameter."""
    properties(t, "Iam")["Parameters"][parameter]["Fn::If"][branch] = value


OUTPUT = "Fn::GetAtt"
S3_READ = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}
REPOSITORIES = {"Ref": "Repositories"}
OLD_RULES_PARAMETER: dict[str, Any] = {
    "Type": "AWS::SSM::Parameter",
    "Properties": {
        "Name": {"Fn::Sub": "/cabroker/${AWS::StackName}/rules"},
        "Type": "String",
        "Value": "version: 1\nissuers: {}\nrules: []\n",
    },
}


def _unnamed(t: Template, parameter: str) -> None:
    """Neither the RepositoriesAreNamed rule nor a pattern on the entries refuses an empty one."""
    t["Rules"].pop("RepositoriesAreNamed")
    t["Parameters"][parameter].pop("AllowedPattern", None)


def _shadow_statement(t: Template) -> dict[str, Any]:
    document = properties(t, "BrokerFunctionPolicy")["PolicyDocument"]
    found: list[dict[str, Any]] = [
        s for s in document["Statement"] if "Fn::If" in s and s["Fn::If"][0] == "ShadowRulesOn"
    ]
    (statement,) = found
    return statement


def _read_shadow_always(t: Template) -> None:
    statement = _shadow_statement(t)
    statement.update(statement.pop("Fn::If")[1])


MUTATIONS: list[Mutation] = [
    (
        "shadow rules readable with ShadowRules=Disabled",
        _read_shadow_always,
        shadow_rules_are_read_only_when_enabled,
    ),
    (
        "shadow rules read under a wildcard",
        lambda t: _shadow_statement(t)["Fn::If"][1].update(
            Resource={
                "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}"
                ":parameter/cabroker/${AWS::StackName}/*"
            }
        ),
        shadow_rules_are_read_only_when_enabled,
    ),
    (
        "shadow rules parameter always set",
        lambda t: _environment(t).update(
            BROKER_SHADOW_RULES_PARAMETER={"Fn::Sub": "/cabroker/${AWS::StackName}/shadow-rules"}
        ),
        shadow_rules_are_read_only_when_enabled,
    ),
    (
        "shadow rules parameter names another stack's",
        lambda t: _environment(t)["BROKER_SHADOW_RULES_PARAMETER"]["Fn::If"].__setitem__(
            1, "/cabroker/cabroker/shadow-rules"
        ),
        shadow_rules_are_read_only_when_enabled,
    ),
    (
        "shadow rules in a file the function cannot read",
        lambda t: _environment(t).update(BROKER_SHADOW_RULES_FILE="/var/task/shadow.yaml"),
        shadow_rules_are_read_only_when_enabled,
    ),
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
        iam_stack_trusts_the_broker_role_for_the_served_domain,
    ),
    (
        "Iam sees the store repository",
        lambda t: _iam_parameter(
            t, "RepositoryNames", 1, {OUTPUT: ["CodeArtifact", "Outputs.StoreRepositoryName"]}
        ),
        iam_stack_trusts_the_broker_role_for_the_served_domain,
    ),
    (
        "attached domain owner left empty",
        lambda t: _iam_parameter(t, "DomainOwner", 2, {"Ref": "DomainOwner"}),
        iam_stack_trusts_the_broker_role_for_the_served_domain,
    ),
    (
        "reader flag creates the publisher policy",
        lambda t: properties(t, "Iam")["Parameters"].update(
            CreatePublisherPolicy={"Ref": "CreateReaderPolicy"}
        ),
        iam_stack_trusts_the_broker_role_for_the_served_domain,
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
        "repositories joined with ';'",
        lambda t: properties(t, "CodeArtifact")["Parameters"]["PrivateRepositoryNames"][
            "Fn::Join"
        ].__setitem__(0, ";"),
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
        "function repositories not the Iam stack's",
        lambda t: _environment(t).update(BROKER_REPOSITORIES={"Fn::Join": [",", REPOSITORIES]}),
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
        lambda t: t["Parameters"]["DomainName"].update(Default="Acme"),
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
        "the rules written by the stack again",
        lambda t: _add_resource(t, "RulesParameter", copy.deepcopy(OLD_RULES_PARAMETER)),
        the_stack_never_writes_the_rules,
    ),
    (
        "a trap with a name, which could hold rules",
        lambda t: _add_resource(
            t,
            "TooManyRules",
            {
                "Type": "AWS::SSM::Parameter",
                "Condition": "TracingOn",
                "Properties": {**OLD_RULES_PARAMETER["Properties"], "AllowedPattern": "^$"},
            },
        ),
        the_stack_never_writes_the_rules,
    ),
    (
        "the function reads another stack's rules",
        lambda t: _broker_statement(t, "ReadRules").update(
            Resource={
                "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}"
                ":parameter/cabroker/cabroker/rules"
            }
        ),
        the_stack_never_writes_the_rules,
    ),
    (
        "the function looks for the rules elsewhere",
        lambda t: _environment(t).update(BROKER_RULES_PARAMETER="/cabroker/rules"),
        the_stack_never_writes_the_rules,
    ),
    (
        "the function's domain read from the CodeArtifact stack",
        lambda t: _environment(t).update(
            BROKER_DOMAIN={OUTPUT: ["CodeArtifact", "Outputs.DomainName"]}
        ),
        nothing_reads_a_resource_that_is_not_created,
    ),
    (
        "an output read from the CodeArtifact stack",
        lambda t: t["Outputs"]["DomainName"].update(
            Value={OUTPUT: ["CodeArtifact", "Outputs.DomainName"]}
        ),
        nothing_reads_a_resource_that_is_not_created,
    ),
    (
        "the Iam stack waits for the CodeArtifact stack",
        lambda t: t["Resources"]["Iam"].update(DependsOn="CodeArtifact"),
        nothing_reads_a_resource_that_is_not_created,
    ),
    (
        "the estate created even when it exists",
        lambda t: t["Resources"]["CodeArtifact"].pop("Condition"),
        an_existing_estate_is_never_created,
    ),
    (
        "the estate created under another condition",
        lambda t: t["Resources"]["CodeArtifact"].update(Condition="TracingOn"),
        an_existing_estate_is_never_created,
    ),
    (
        "a repository created in the root stack",
        lambda t: _add_resource(
            t,
            "ExtraRepository",
            {
                "Type": "AWS::CodeArtifact::Repository",
                "Properties": {"DomainName": {"Ref": "DomainName"}, "RepositoryName": "extra"},
            },
        ),
        an_existing_estate_is_never_created,
    ),
    (
        "attached estate's owner always this account",
        lambda t: _iam_parameter(t, "DomainOwner", 2, {"Ref": "AWS::AccountId"}),
        the_broker_serves_the_estate_it_attaches_to,
    ),
    (
        "attached estate's default repository only",
        lambda t: _iam_parameter(t, "RepositoryNames", 2, {"Fn::Select": [0, REPOSITORIES]}),
        the_broker_serves_the_estate_it_attaches_to,
    ),
    (
        "function serves the default repository only",
        lambda t: _environment(t).update(
            BROKER_REPOSITORIES={
                "Fn::Select": [
                    0,
                    {"Fn::Split": [",", {OUTPUT: ["Iam", "Outputs.ServedRepositories"]}]},
                ]
            }
        ),
        the_broker_serves_the_estate_it_attaches_to,
    ),
    (
        "created estate's default repository only",
        lambda t: _iam_parameter(
            t, "RepositoryNames", 1, {OUTPUT: ["CodeArtifact", "Outputs.PrivateRepositoryName"]}
        ),
        the_broker_serves_the_estate_it_creates,
    ),
    (
        "only the default repository created",
        lambda t: properties(t, "CodeArtifact")["Parameters"].update(
            PrivateRepositoryNames={"Fn::Select": [0, REPOSITORIES]}
        ),
        the_broker_serves_the_estate_it_creates,
    ),
    (
        "the default repository output names them all",
        lambda t: t["Outputs"]["PrivateRepositoryName"].update(
            Value={OUTPUT: ["Iam", "Outputs.ServedRepositories"]}
        ),
        the_broker_serves_the_estate_it_creates,
    ),
    (
        "an owner named for a created domain",
        lambda t: t["Rules"].pop("OwnerOnlyWhenAttaching"),
        domain_owner_only_when_attaching,
    ),
    (
        "no owner named for an existing domain",
        lambda t: t["Rules"]["OwnerOnlyWhenAttaching"].pop("RuleCondition"),
        domain_owner_only_when_attaching,
    ),
    (
        "any owner",
        lambda t: t["Parameters"]["DomainOwner"].pop("AllowedPattern"),
        domain_owner_only_when_attaching,
    ),
    (
        "attaching by default",
        lambda t: t["Parameters"]["Estate"].update(Default="Existing"),
        domain_owner_only_when_attaching,
    ),
    (
        "empty repositories accepted",
        lambda t: _unnamed(t, "Repositories"),
        repositories_must_be_named,
    ),
    (
        "a sixth attached repository dropped",
        lambda t: _iam_parameter(
            t,
            "RepositoryNames",
            2,
            {"Fn::Join": [",", [{"Fn::Select": [i, REPOSITORIES]} for i in range(5)]]},
        ),
        a_sixth_repository_fails_the_deployment,
    ),
    (
        "repositories unconstrained",
        lambda t: _unconstrained(t, "Repositories"),
        served_repositories_are_names_never_the_store_or_a_pattern,
    ),
    (
        "repositories given to the broker joined with ';'",
        lambda t: _environment(t).update(BROKER_REPOSITORIES={"Fn::Join": [";", REPOSITORIES]}),
        the_broker_accepts_what_deploys,
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


def test_function_reads_rules_from_ssm_not_a_file(stack: Stack) -> None:
    environment = function_environment(stack.template)
    assert stack.resolve(environment["BROKER_RULES_PARAMETER"]) == "/cabroker/cabroker/rules"
    assert "BROKER_RULES_FILE" not in environment


@pytest.mark.parametrize("parameter", ["RulesDocument", "RulesParameterTier", "RepositoryName"])
def test_parameters_of_the_old_design_are_gone(template: dict[str, Any], parameter: str) -> None:
    """The rules are pushed, never deployed; RepositoryName became Repositories."""
    assert parameter not in template["Parameters"]


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
        pytest.param("Estate", "Create", id="estate-created"),
        pytest.param("DomainOwner", "", id="domain-owner-this-account"),
        pytest.param("Repositories", "internal", id="repositories"),
        pytest.param("EncryptionKeyArn", "", id="aws-managed-key"),
        pytest.param("InternalPrefixes", "acme", id="internal-prefixes"),
        pytest.param("ReaderAccounts", "", id="no-reader-accounts"),
        pytest.param("PublisherAccounts", "", id="no-publisher-accounts"),
        pytest.param("CreateReaderPolicy", "false", id="no-reader-policy"),
        pytest.param("CreatePublisherPolicy", "false", id="no-publisher-policy"),
        pytest.param("ThrottlingRateLimit", "20", id="rate"),
        pytest.param("ThrottlingBurstLimit", "40", id="burst"),
        pytest.param("LogRetentionDays", "90", id="retention"),
        pytest.param("Tracing", "Active", id="tracing"),
        pytest.param("ShadowRules", "Disabled", id="no-shadow-rules"),
    ],
)
def test_parameter_default(stack: Stack, parameter: str, default: str) -> None:
    assert stack.parameter(parameter) == default


@pytest.mark.parametrize("sample", list(SAMPLES))
def test_sample_values_are_valid_root_parameters(template: dict[str, Any], sample: str) -> None:
    assert refusal(template, SAMPLES[sample]) is None


def test_invalid_root_parameters_are_refused(template: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="DomainName"):
        Stack(template, {**GIVEN, "DomainName": "Corp"})
    with pytest.raises(ValueError, match="DomainOwner"):
        Stack(template, {**EXISTING, "DomainOwner": "4444-5555-6666"})


def test_the_evaluator_checks_list_entries_and_rules() -> None:
    """What the checks above lean on: a CommaDelimitedList's AllowedPattern applies to each
    entry, and Rules (with Fn::Contains) are evaluated only where their RuleCondition holds."""
    template: Template = {
        "Parameters": {
            "Names": {
                "Type": "CommaDelimitedList",
                "Default": "a1",
                "AllowedPattern": "^[a-z]\\d$",
            },
            "Mode": {"Type": "String", "Default": "On"},
        },
        "Rules": {
            "NotX9": {
                "RuleCondition": {"Fn::Equals": [{"Ref": "Mode"}, "On"]},
                "Assertions": [
                    {"Assert": {"Fn::Not": [{"Fn::Contains": [{"Ref": "Names"}, "x9"]}]}}
                ],
            }
        },
        "Resources": {},
    }
    assert refusal(template, {"Names": "a1,b2"}) is None
    assert refusal(template, {"Names": "a1,*"}) is not None
    assert refusal(template, {"Names": "a1,x9"}) == "NotX9: refused"
    assert refusal(template, {"Names": "a1,x9", "Mode": "Off"}) is None
