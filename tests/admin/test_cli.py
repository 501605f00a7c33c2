"""`cabroker-admin rules …` as an admin runs it (moto's SSM, a stand-in for CloudFormation):
exit 0 done, 1 refused or failed, 2 a wrong command line; every error one line on stderr."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from cabroker_admin import rulescli, rulesstore, target
from cabroker_admin.cli import main
from tests.admin.conftest import (
    BROKEN,
    ELSEWHERE,
    ENGINEERS,
    FLAGS,
    NOTHING,
    PARAMETER,
    RELEASES,
    current_version,
    labelled,
    value,
)

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

SHA256 = re.compile(r"sha256 [0-9a-f]{64}\b")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of one command; argparse's exits are exit codes too."""
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def one_error(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(ENGINEERS, encoding="utf-8")
    return path


def test_push_writes_and_names_the_version_and_sha256(
    ssm: SSMClient, rules_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "rules", "push", str(rules_file), *FLAGS)
    assert (code, err) == (0, "")
    assert out.startswith(f"{PARAMETER}: version 1 written and labelled live (")
    assert f"sha256 {rulesstore.sha256(ENGINEERS)}" in out
    assert (value(ssm), labelled(ssm)) == (ENGINEERS, [1])


def test_pushing_the_same_file_again_says_unchanged(
    ssm: SSMClient, rules_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "rules", "push", str(rules_file), *FLAGS)
    code, out, _ = run(capsys, "rules", "push", str(rules_file), *FLAGS)
    assert code == 0
    assert out.startswith(f"{PARAMETER}: unchanged, version 1 already holds {rules_file} (")
    assert current_version(ssm) == 1


@pytest.mark.parametrize(
    ("document", "reason"),
    [(BROKEN, "not valid YAML"), (ELSEWHERE, "is not a repository this deployment serves")],
)
def test_an_invalid_file_is_refused_with_exit_1_and_nothing_written(
    ssm: SSMClient,
    rules_file: Path,
    capsys: pytest.CaptureFixture[str],
    document: str,
    reason: str,
) -> None:
    run(capsys, "rules", "push", str(rules_file), *FLAGS)
    rules_file.write_text(document, encoding="utf-8")
    code, out, err = run(capsys, "rules", "push", str(rules_file), *FLAGS)
    assert (code, out) == (1, "")
    line = one_error(err)
    assert line.startswith(f"cabroker-admin: {rules_file}: ")
    assert reason in line
    assert line.endswith(f"{PARAMETER} left as it was")
    assert (current_version(ssm), value(ssm)) == (1, ENGINEERS)


def test_a_file_over_8_kb_is_refused(
    ssm: SSMClient, rules_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules_file.write_text(ENGINEERS + "#" * 9000 + "\n", encoding="utf-8")
    code, _, err = run(capsys, "rules", "push", str(rules_file), *FLAGS)
    assert code == 1
    assert "bytes, over the 8192 bytes an SSM parameter holds" in one_error(err)
    assert ssm.describe_parameters()["Parameters"] == []


def test_a_dry_run_checks_and_writes_nothing(
    ssm: SSMClient, rules_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "rules", "push", str(rules_file), *FLAGS, "--dry-run")
    assert code == 0
    assert out.startswith(f"{rules_file}: accepted (1 rules, 1 issuers); a push would write it")
    assert ssm.describe_parameters()["Parameters"] == []
    run(capsys, "rules", "push", str(rules_file), *FLAGS)
    _, out, _ = run(capsys, "rules", "push", str(rules_file), *FLAGS, "--dry-run")
    assert f"{PARAMETER} version 1 already holds it; nothing written" in out


def test_push_reads_stdin(
    ssm: SSMClient, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Stdin:
        buffer = __import__("io").BytesIO(RELEASES.encode())

    monkeypatch.setattr(sys, "stdin", Stdin)
    code, out, _ = run(capsys, "rules", "push", "-", *FLAGS)
    assert (code, value(ssm)) == (0, RELEASES)
    assert "version 1 written" in out


def test_a_file_that_is_not_utf8_is_refused(
    ssm: SSMClient, rules_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules_file.write_bytes(b"version: 1\n# caf\xe9\n")
    code, _, err = run(capsys, "rules", "push", str(rules_file), *FLAGS)
    assert code == 1
    assert (
        one_error(err)
        == f"cabroker-admin: {rules_file}: not UTF-8 text (at byte offset 16); nothing written"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["rules", "push", "absent.yaml", *FLAGS], "absent.yaml: cannot read: No such file"),
        (["rules", "push", "{file}", "--parameter", PARAMETER], "with --parameter, give --domain"),
        (
            ["rules", "push", "{file}", "--stack", "cabroker", "--domain", "acme"],
            "go with --parameter",
        ),
        (
            ["rules", "push", "{file}", "--stack", "not_a_stack"],
            "is not a CloudFormation stack name",
        ),
        (
            ["rules", "push", "{file}", *FLAGS[:-1], "internal,,x"],
            "'' is not a CodeArtifact repository",
        ),
        (["rules", "push", "{file}", *FLAGS[:-1], " "], "names no repository"),
        (["rules", "push", "{file}", *FLAGS[:-3], "12345", *FLAGS[-2:]], "not a 12-digit"),
        (["rules", "push", "{file}", *FLAGS[:3], "Acme!", *FLAGS[4:]], "not a CodeArtifact domain"),
        (["rules", "pull", "--parameter", "/a:b"], "is not an SSM parameter name"),
    ],
)
def test_a_wrong_command_line_is_exit_2_and_one_line(
    ssm: SSMClient,
    rules_file: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    code, out, err = run(capsys, *(arg.replace("{file}", str(rules_file)) for arg in argv))
    assert (code, out) == (2, "")
    assert message in one_error(err)
    assert ssm.describe_parameters()["Parameters"] == []


@pytest.mark.parametrize(
    "argv",
    [
        ["rules", "push", "rules.yaml"],  # neither --stack nor --parameter
        ["rules", "push", "rules.yaml", "--stack", "a", "--parameter", "/b"],
        ["rules", "rollback", "--parameter", "/b", "--to", "0"],
        ["rules", "pull", "--parameter", "/b", "--version", "latest"],
        ["rules"],
        [],
    ],
)
def test_argparse_usage_errors_are_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert "usage: cabroker-admin" in err
    assert "Traceback" not in err


def test_no_region_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    code, _, err = run(capsys, "rules", "pull", "--parameter", PARAMETER)
    assert code == 2
    assert one_error(err) == "cabroker-admin: no AWS region: pass --region or set AWS_REGION"


def test_an_aws_error_is_one_line_with_its_code(
    ssm: SSMClient,
    rules_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    denied = boto3.client("ssm", region_name="us-east-1")
    stubber = Stubber(denied)
    stubber.add_client_error(
        "get_parameter",
        "AccessDeniedException",
        "User: arn:aws:iam::123456789012:user/bob is not authorized\nto perform ssm:GetParameter",
    )
    stubber.activate()
    monkeypatch.setattr(rulescli, "_ssm", lambda session: denied)
    code, _, err = run(capsys, "rules", "push", str(rules_file), *FLAGS)
    assert code == 1
    assert one_error(err) == (
        f"cabroker-admin: ssm:GetParameter on {PARAMETER} failed: AccessDeniedException: "
        "User: arn:aws:iam::123456789012:user/bob is not authorized to perform ssm:GetParameter"
    )


def test_an_unreachable_endpoint_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    code, _, err = run(capsys, "rules", "history", "--parameter", PARAMETER)
    assert code == 1
    assert one_error(err).startswith(
        f"cabroker-admin: ssm:GetParameterHistory on {PARAMETER} failed: EndpointConnectionError"
    )


def test_history_shows_versions_sha256_and_what_is_served(
    ssm: SSMClient, rules_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for document in (NOTHING, ENGINEERS):
        rules_file.write_text(document, encoding="utf-8")
        run(capsys, "rules", "push", str(rules_file), *FLAGS)
    code, out, err = run(capsys, "rules", "history", "--parameter", PARAMETER)
    assert (code, err) == (0, "")
    header, first, second = out.splitlines()
    assert header.split() == ["VERSION", "MODIFIED", "(UTC)", "SHA256", "STATE", "BY"]
    assert first.split()[0] == "1"
    assert first.split()[2] == rulesstore.sha256(NOTHING)[:12]
    assert first.split()[3] == "-"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first.split()[1])
    assert second.split()[:4] == [
        "2",
        second.split()[1],
        rulesstore.sha256(ENGINEERS)[:12],
        "served,live",
    ]


def test_history_notes_a_version_not_written_by_the_push_path(
    ssm: SSMClient, rules_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "rules", "push", str(rules_file), *FLAGS)
    ssm.put_parameter(Name=PARAMETER, Value=NOTHING, Type="String", Overwrite=True)
    code, out, err = run(capsys, "rules", "history", "--parameter", PARAMETER)
    assert code == 0
    assert out.splitlines()[1].split()[3] == "live"
    assert out.splitlines()[2].split()[3] == "served"
    assert "note: version 2, the one the broker serves, was not written by" in one_error(err)


def test_pull_prints_the_document_byte_for_byte(
    ssm: SSMClient, rules_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "rules", "push", str(rules_file), *FLAGS)
    rules_file.write_text(RELEASES, encoding="utf-8")
    run(capsys, "rules", "push", str(rules_file), *FLAGS)
    assert run(capsys, "rules", "pull", "--parameter", PARAMETER) == (0, RELEASES, "")
    assert run(capsys, "rules", "pull", "--parameter", PARAMETER, "--version", "1") == (
        0,
        ENGINEERS,
        "",
    )
    code, out, err = run(capsys, "rules", "pull", "--parameter", PARAMETER, "--version", "5")
    assert (code, out) == (1, "")
    assert f"{PARAMETER}: no version 5" in one_error(err)


def test_pull_of_a_stack_reads_its_parameter(
    ssm: SSMClient, rules_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "rules", "push", str(rules_file), *FLAGS)
    assert run(capsys, "rules", "pull", "--stack", "cabroker")[:2] == (0, ENGINEERS)
    code, _, err = run(capsys, "rules", "pull", "--stack", "other")
    assert code == 1
    assert one_error(err) == (
        "cabroker-admin: /cabroker/other/rules: no such SSM parameter (no rules were pushed yet)"
    )


def test_rollback_and_rollback_to(
    ssm: SSMClient, rules_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for document in (NOTHING, ENGINEERS, RELEASES):
        rules_file.write_text(document, encoding="utf-8")
        run(capsys, "rules", "push", str(rules_file), *FLAGS)
    code, out, _ = run(capsys, "rules", "rollback", *FLAGS)
    assert code == 0
    assert out.startswith(
        f"{PARAMETER}: version 4 written with version 2's document and labelled live ("
    )
    assert SHA256.search(out)
    assert (value(ssm), labelled(ssm)) == (ENGINEERS, [4])
    code, out, _ = run(capsys, "rules", "rollback", *FLAGS, "--to", "1")
    assert (code, value(ssm)) == (0, NOTHING)
    code, out, _ = run(capsys, "rules", "rollback", *FLAGS, "--to", "5")
    assert code == 0
    assert out.startswith(f"{PARAMETER}: unchanged, version 5 already holds version 5's document")


def test_a_refused_rollback_is_exit_1_and_writes_nothing(
    ssm: SSMClient, rules_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ssm.put_parameter(Name=PARAMETER, Value=BROKEN, Type="String")  # written another way
    run(capsys, "rules", "push", str(rules_file), *FLAGS)
    code, out, err = run(capsys, "rules", "rollback", *FLAGS)
    assert (code, out) == (1, "")
    line = one_error(err)
    assert line.startswith(f"cabroker-admin: version 1 of {PARAMETER}: not valid YAML")
    assert line.endswith(f"{PARAMETER} left as it was")
    assert current_version(ssm) == 2


# --- --stack: the stack's outputs --------------------------------------------------------


class Stacks:
    """CloudFormation's DescribeStacks for one stack, as a deployed cabroker stack answers."""

    def __init__(self, outputs: Mapping[str, str] | None = None, error: str | None = None):
        self.outputs = dict(
            outputs
            if outputs is not None
            else {
                "RulesParameterName": PARAMETER,
                "DomainName": "acme",
                "DomainOwner": "123456789012",
                "PrivateRepositoryNames": "internal,staging",
                "TokenIssuerRoleArn": "arn:aws:iam::123456789012:role/cabroker-TokenIssuer-X",
            }
        )
        self.error = error
        self.asked: list[str] = []

    def describe_stacks(self, *, StackName: str) -> Mapping[str, Any]:  # noqa: N803
        self.asked.append(StackName)
        if self.error:
            raise ClientError(
                {"Error": {"Code": "ValidationError", "Message": self.error}}, "DescribeStacks"
            )
        return {
            "Stacks": [
                {
                    "StackName": StackName,
                    "Outputs": [
                        {"OutputKey": k, "OutputValue": v} for k, v in self.outputs.items()
                    ],
                }
            ]
        }


def use(monkeypatch: pytest.MonkeyPatch, stacks: Stacks) -> Stacks:
    monkeypatch.setattr(target, "stacks", lambda session: stacks)
    return stacks


def test_push_with_stack_checks_against_its_outputs(
    ssm: SSMClient,
    rules_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stacks = use(monkeypatch, Stacks())
    staging = ENGINEERS.replace("repository: internal", "repository: staging")
    rules_file.write_text(staging, encoding="utf-8")
    code, out, _ = run(capsys, "rules", "push", str(rules_file), "--stack", "cabroker")
    assert (code, stacks.asked, value(ssm)) == (0, ["cabroker"], staging)
    assert out.startswith(f"{PARAMETER}: version 1 written")
    rules_file.write_text(ELSEWHERE, encoding="utf-8")
    code, _, err = run(capsys, "rules", "push", str(rules_file), "--stack", "cabroker")
    assert code == 1
    assert "this deployment serves (internal, staging)" in one_error(err)


def test_stack_outputs_give_the_domain_the_check_uses() -> None:
    served = target.from_stack(Stacks(), "cabroker", "eu-west-1")
    assert served.repositories == ("internal", "staging")
    assert (served.domain.partition, served.domain.region) == ("aws", "eu-west-1")
    assert (served.domain.owner, served.domain.name) == ("123456789012", "acme")


def test_a_stack_without_the_newer_outputs_falls_back() -> None:
    outputs = {
        "DomainName": "acme",
        "PrivateRepositoryName": "internal",
        "TokenIssuerRoleArn": "arn:aws-cn:iam::210987654321:role/TokenIssuer",
    }
    served = target.from_stack(Stacks(outputs), "cabroker", "cn-north-1")
    assert served.repositories == ("internal",)
    assert (served.domain.partition, served.domain.owner) == ("aws-cn", "210987654321")


@pytest.mark.parametrize(
    ("stacks", "message"),
    [
        (
            Stacks(error="Stack with id gone does not exist"),
            "cloudformation:DescribeStacks on stack cabroker failed: ValidationError: "
            "Stack with id gone does not exist",
        ),
        (Stacks({"DomainName": "acme"}), "stack cabroker: no output TokenIssuerRoleArn"),
        (
            Stacks({"RulesParameterName": "/elsewhere", "DomainName": "acme"}),
            "stack cabroker: its RulesParameterName is /elsewhere, not /cabroker/cabroker/rules",
        ),
    ],
)
def test_a_stack_that_cannot_be_read_is_exit_1(
    ssm: SSMClient,
    rules_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stacks: Stacks,
    message: str,
) -> None:
    use(monkeypatch, stacks)
    code, out, err = run(capsys, "rules", "push", str(rules_file), "--stack", "cabroker")
    assert (code, out) == (1, "")
    assert one_error(err).startswith(f"cabroker-admin: {message}")
    assert ssm.describe_parameters()["Parameters"] == []


def test_the_module_runs_as_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cabroker_admin", "rules", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for command in ("push", "history", "pull", "rollback"):
        assert command in done.stdout


def test_a_reader_that_stops_reading_gets_no_traceback() -> None:
    """``cabroker-admin … | head``: the pipe closes before the output is written."""
    script = (
        "import os, sys\n"
        "read, write = os.pipe()\n"
        "os.close(read)\n"
        "os.dup2(write, sys.stdout.fileno())\n"
        "from cabroker_admin.cli import main\n"
        "sys.exit(main(['rules', 'schema']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 141  # as a shell reports a program SIGPIPE ends
    assert done.stderr == ""
