"""What AWS refuses, the devstack refuses: devstack.cfn's checks of parameter values (each entry
of a CommaDelimitedList) and Rules, and the provisioner refusing, before creating anything, a
stack they refuse, and an SSM parameter whose Value its AllowedPattern does not match (the
templates' TooMany* traps)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from devstack import cfn, cfn_yaml
from devstack.aws import AwsStandIn
from devstack.environments import names as environment_names
from devstack.environments import parameter_overrides
from devstack.provision import Clients, Deployment, Provisioner, ProvisionError
from tests.devstack.conftest import ACCOUNT, REGION, reset_moto, session
from tests.infra import cfn_eval

ROOT = Path(__file__).resolve().parents[2]
STACK = "teststack"
PSEUDO = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Partition": "aws",
    "AWS::Region": REGION,
    "AWS::StackName": STACK,
    "AWS::URLSuffix": "amazonaws.com",
}
PATTERN = "^[a-z]\\d$"

LISTED = """\
Parameters:
  Names:
    Type: CommaDelimitedList
    Default: a1
    AllowedPattern: "^[a-z]\\\\d$"
    ConstraintDescription: each a letter and a digit
  Mode:
    Type: String
    Default: enforce
    AllowedValues: [enforce, skip]
Rules:
  NotX9:
    RuleCondition: !Equals [!Ref Mode, enforce]
    Assertions:
      - Assert: !Not [!Contains [!Ref Names, x9]]
        AssertDescription: >
          Names must not
          name x9.
Resources:
  Setting:
    Type: AWS::SSM::Parameter
    Properties:
      Name: /t/names
      Type: String
      Value: !Join [",", !Ref Names]
"""

NOT_X9 = "NotX9: Names must not name x9."


def load(tmp_path: Path, name: str, text: str) -> dict[str, Any]:
    path = tmp_path / name
    path.write_text(text)
    return cfn_yaml.load(path)


# --- devstack.cfn --------------------------------------------------------------------------------


def test_each_entry_of_a_list_is_checked() -> None:
    names = {"Type": "CommaDelimitedList", "AllowedPattern": PATTERN, "MaxLength": 2}
    assert cfn.parameter_error(names, "a1") is None
    assert cfn.parameter_error(names, "a1,b2,c3") is None  # MaxLength is for a String
    assert cfn.parameter_error(names, "a1,*") == f"entry '*' does not match {PATTERN}"
    assert cfn.parameter_error(names, "a1,") == f"entry '' does not match {PATTERN}"
    listed = {"Type": "CommaDelimitedList", "AllowedValues": ["a", "b"]}
    assert cfn.parameter_error(listed, "b,a") is None
    assert cfn.parameter_error(listed, "a,c") == "entry 'c' is not one of ['a', 'b']"
    string = {"Type": "String", "AllowedPattern": PATTERN}
    assert cfn.parameter_error(string, "a1,b2") == f"'a1,b2' does not match {PATTERN}"


def test_refusal_checks_parameters_then_rules(tmp_path: Path) -> None:
    template = load(tmp_path, "listed.yaml", LISTED)
    assert cfn.refusal(template, {}, PSEUDO) is None
    assert cfn.refusal(template, {"Names": "a1,b2"}, PSEUDO) is None
    assert cfn.refusal(template, {"Names": "a1,B2"}, PSEUDO) == (
        f"Names: entry 'B2' does not match {PATTERN} (each a letter and a digit)"
    )
    assert cfn.refusal(template, {"Names": "a1,x9"}, PSEUDO) == NOT_X9
    assert cfn.refusal(template, {"Names": "a1,x9", "Mode": "skip"}, PSEUDO) is None
    assert cfn.refusal(template, {"Mode": "never"}, PSEUDO) == (
        "Mode: 'never' is not one of ['enforce', 'skip']"
    )
    undeclared = cfn.refusal(template, {"Other": "x"}, PSEUDO)
    assert undeclared == "Other is not a parameter of the template"
    required = {"Parameters": {"Arn": {"Type": "String"}}, "Resources": {}}
    assert cfn.refusal(required, {}, PSEUDO) == "Arn: must have a value (no default)"
    assert cfn.refusal(required, {"Arn": "x"}, PSEUDO) is None


def test_rules_with_each_function() -> None:
    def rule(assertion: Any) -> dict[str, Any]:
        return {
            "Parameters": {
                "Names": {"Type": "CommaDelimitedList", "Default": "a,b"},
                "One": {"Type": "String", "Default": "a"},
            },
            "Rules": {"R": {"Assertions": [{"Assert": assertion, "AssertDescription": "no"}]}},
            "Resources": {},
        }

    names, one = {"Ref": "Names"}, {"Ref": "One"}
    holds = [
        {"Fn::Contains": [names, one]},
        {"Fn::EachMemberIn": [names, ["a", "b", "c"]]},
        {"Fn::Not": [{"Fn::EachMemberEquals": [names, one]}]},
        {"Fn::And": [{"Fn::Equals": [one, "a"]}, {"Fn::Or": [False, {"Fn::Equals": [1, "1"]}]}]},
    ]
    for assertion in holds:
        assert cfn.refusal(rule(assertion), {}, PSEUDO) is None, assertion
        assert cfn.refusal(rule({"Fn::Not": [assertion]}), {}, PSEUDO) == "R: no", assertion


def test_an_ssm_value_its_pattern_refuses() -> None:
    trap = {"Type": "String", "Value": "too many", "AllowedPattern": "^$"}
    assert cfn.ssm_parameter_error(trap) == "Value 'too many' does not match its AllowedPattern ^$"
    assert cfn.ssm_parameter_error({**trap, "Value": ""}) is None
    assert cfn.ssm_parameter_error({"Type": "String", "Value": "anything"}) is None


def test_the_infra_tests_use_these_checks_not_copies() -> None:
    assert cfn_eval.parameter_error is cfn.parameter_error
    assert cfn_eval.Stack.rule_failures is cfn.Stack.rule_failures
    assert cfn_eval.Stack.resolve is cfn.Stack.resolve


@pytest.mark.parametrize("environment", environment_names())
def test_the_template_defaults_and_environments_are_accepted(environment: str) -> None:
    template = cfn_yaml.load(ROOT / "template.yaml")
    assert cfn.refusal(template, {}, PSEUDO) is None
    assert cfn.refusal(template, parameter_overrides(environment), PSEUDO) is None


# --- the provisioner -----------------------------------------------------------------------------


def deploy(stand_in: AwsStandIn, template: Path, parameters: dict[str, str]) -> Deployment:
    clients = Clients.for_endpoint(stand_in.url, REGION)
    return Provisioner(clients, PSEUDO, template.parent).deploy(template, parameters)


def ssm_names(stand_in: AwsStandIn) -> list[str]:
    ssm = session().client("ssm", endpoint_url=stand_in.url)
    return sorted(p["Name"] for p in ssm.describe_parameters()["Parameters"])


def role_names(stand_in: AwsStandIn) -> list[str]:
    iam = session().client("iam", endpoint_url=stand_in.url)
    return sorted(r["RoleName"] for r in iam.list_roles()["Roles"])


def refused(stand_in: AwsStandIn, template: Path, parameters: dict[str, str]) -> str:
    with pytest.raises(ProvisionError) as error:
        deploy(stand_in, template, parameters)
    return str(error.value)


@pytest.mark.parametrize(
    ("parameters", "reason"),
    [
        pytest.param(
            {"Names": "a1,b2,*"},
            f"Names: entry '*' does not match {PATTERN} (each a letter and a digit)",
            id="list-entry",
        ),
        pytest.param({"Names": "a1,x9"}, NOT_X9, id="rule"),
        pytest.param({"Other": "x"}, "Other is not a parameter of the template", id="undeclared"),
    ],
)
def test_a_stack_cloudformation_refuses_creates_nothing(
    stand_in: AwsStandIn, tmp_path: Path, parameters: dict[str, str], reason: str
) -> None:
    template = tmp_path / "listed.yaml"
    template.write_text(LISTED)
    assert refused(stand_in, template, parameters) == (
        f"{STACK}: CloudFormation refuses the stack: {reason}"
    )
    assert ssm_names(stand_in) == []


def test_values_cloudformation_takes_are_deployed(stand_in: AwsStandIn, tmp_path: Path) -> None:
    template = tmp_path / "listed.yaml"
    template.write_text(LISTED)
    assert deploy(stand_in, template, {}).created == [f"{STACK}/Setting (AWS::SSM::Parameter)"]
    ssm = session().client("ssm", endpoint_url=stand_in.url)
    assert ssm.get_parameter(Name="/t/names")["Parameter"]["Value"] == "a1"
    reset_moto(stand_in.url)
    deploy(stand_in, template, {"Names": "a1,x9", "Mode": "skip"})
    assert ssm.get_parameter(Name="/t/names")["Parameter"]["Value"] == "a1,x9"


NESTED = """\
Parameters:
  ChildNames:
    Type: String
    Default: a1
Resources:
  Child:
    Type: AWS::Serverless::Application
    Properties:
      Location: listed.yaml
      Parameters:
        Names: !Ref ChildNames
"""


def test_a_nested_stack_refuses_what_it_is_passed(stand_in: AwsStandIn, tmp_path: Path) -> None:
    (tmp_path / "listed.yaml").write_text(LISTED)
    root = tmp_path / "root.yaml"
    root.write_text(NESTED)
    assert refused(stand_in, root, {"ChildNames": "x9"}) == (
        f"{STACK}/Child: CloudFormation refuses the stack: {NOT_X9}"
    )
    assert ssm_names(stand_in) == []
    deployment = deploy(stand_in, root, {"ChildNames": "a1,b2"})
    assert deployment.created == [
        f"{STACK}/Child/Setting (AWS::SSM::Parameter)",
        f"{STACK}/Child (AWS::Serverless::Application)",
    ]


TRAPPED = """\
Parameters:
  Count:
    Type: Number
    Default: 1
Conditions:
  TooMany: !Equals [!Ref Count, 6]
Resources:
  Role:
    Type: AWS::IAM::Role
    Properties:
      RoleName: trapped-role
      AssumeRolePolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Principal: {Service: lambda.amazonaws.com}
            Action: sts:AssumeRole
  TooManyThings:
    Type: AWS::SSM::Parameter
    Condition: TooMany
    Properties:
      Type: String
      Value: Count is more than five; this template makes five.
      AllowedPattern: "^$"
  RoleSetting:
    Type: AWS::SSM::Parameter
    Properties:
      Name: /t/role
      Type: String
      Value: !GetAtt Role.Arn
      AllowedPattern: "^arn:aws:iam::\\\\d{12}:role/trapped-.*$"
"""


def test_a_trap_fails_the_deployment_naming_it_and_its_value(
    stand_in: AwsStandIn, tmp_path: Path
) -> None:
    template = tmp_path / "trapped.yaml"
    template.write_text(TRAPPED)
    # Its value is known before anything is created: nothing of the stack is.
    assert refused(stand_in, template, {"Count": "6"}) == (
        f"{STACK}/TooManyThings (AWS::SSM::Parameter): SSM refuses it: Value 'Count is more than"
        " five; this template makes five.' does not match its AllowedPattern ^$"
    )
    assert (role_names(stand_in), ssm_names(stand_in)) == ([], [])

    deployment = deploy(stand_in, template, {"Count": "5"})
    assert f"{STACK}/RoleSetting (AWS::SSM::Parameter)" in deployment.created
    ssm = session().client("ssm", endpoint_url=stand_in.url)
    parameter = ssm.describe_parameters()["Parameters"][0]
    assert parameter["AllowedPattern"] == "^arn:aws:iam::\\d{12}:role/trapped-.*$"


def test_a_value_known_only_once_created_is_checked_then(
    stand_in: AwsStandIn, tmp_path: Path
) -> None:
    template = tmp_path / "trapped.yaml"
    template.write_text(TRAPPED.replace("role/trapped-", "role/other-"))
    role = f"arn:aws:iam::{ACCOUNT}:role/trapped-role"
    assert refused(stand_in, template, {}) == (
        f"{STACK}/RoleSetting (AWS::SSM::Parameter): SSM refuses it: Value '{role}' does not"
        " match its AllowedPattern ^arn:aws:iam::\\d{12}:role/other-.*$"
    )
    assert (role_names(stand_in), ssm_names(stand_in)) == (["trapped-role"], [])


# --- the real template ---------------------------------------------------------------------------


def descriptions(rule: str) -> set[str]:
    """The AssertDescriptions of template.yaml's ``rule``, each on one line."""
    template = cfn_yaml.load(ROOT / "template.yaml")
    assertions = template["Rules"][rule]["Assertions"]
    return {" ".join(a["AssertDescription"].split()) for a in assertions}


@pytest.mark.parametrize(
    ("parameters", "rule"),
    [
        pytest.param({"Repositories": "internal,pypi-store"}, "RepositoriesAreNamed", id="store"),
        pytest.param({"Repositories": "internal,"}, "Repositories", id="empty-entry"),
        pytest.param({"Repositories": "internal,a b"}, "Repositories", id="no-name"),
        pytest.param(
            {"Estate": "Create", "DomainOwner": ACCOUNT}, "OwnerOnlyWhenAttaching", id="owner"
        ),
    ],
)
def test_the_real_template_is_refused_before_anything_is_created(
    stand_in: AwsStandIn, parameters: dict[str, str], rule: str
) -> None:
    message = refused(stand_in, ROOT / "template.yaml", parameters)
    prefix = f"{STACK}: CloudFormation refuses the stack: {rule}: "
    assert message.startswith(prefix), message
    assert "\n" not in message
    if rule in cfn_yaml.load(ROOT / "template.yaml")["Rules"]:
        assert message.removeprefix(prefix) in descriptions(rule)
    else:
        assert "does not match" in message
    assert (role_names(stand_in), ssm_names(stand_in)) == ([], [])
    assert not stand_in.codeartifact.domains


SIX = "a1,b2,c3,d4,e5,f6"


@pytest.mark.parametrize(
    ("parameters", "trap"),
    [
        pytest.param({"Estate": "Create", "Repositories": SIX}, "TooManyRepositories", id="create"),
        pytest.param(
            {"Estate": "Existing", "Repositories": SIX}, "TooManyRepositories", id="existing"
        ),
        pytest.param({"InternalPrefixes": SIX}, "TooManyInternalPrefixes", id="prefixes"),
    ],
)
def test_the_real_template_fails_at_its_traps(
    stand_in: AwsStandIn, monkeypatch: pytest.MonkeyPatch, parameters: dict[str, str], trap: str
) -> None:
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    reset_moto(stand_in.url)  # moto reads the setting as it makes its IAM backend
    message = refused(stand_in, ROOT / "template.yaml", parameters)
    pattern = (
        rf"{STACK}/\w+/{trap} \(AWS::SSM::Parameter\): SSM refuses it: "
        r"Value '[^']*more than five[^']*' does not match its AllowedPattern \^\$"
    )
    assert re.fullmatch(pattern, message), message
    assert ssm_names(stand_in) == []
