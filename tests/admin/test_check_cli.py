"""`cabroker-admin rules check` and `rules schema` as an admin (or CI) runs them: exit 0 when the
broker would serve the file (warnings allowed), 1 when it would not or with --strict on a
warning, 2 for a wrong command line; text (a line per finding, a summary) or JSON (a list).
And the CI examples of docs/examples/: valid YAML, accepted by actionlint, running commands
the CLI's own parser accepts."""

from __future__ import annotations

import argparse
import io
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cabroker_admin import checkcli
from cabroker_admin.cli import main, parser
from tests.admin.test_cli import one_error, run
from tests.admin.test_lint import MAIN, document, publish, rule

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "docs" / "examples" / "rules-check.yml"
GITLAB = ROOT / "docs" / "examples" / ".gitlab-ci.yml"
RELEASE = ROOT / ".github" / "workflows" / "release.yml"

CLEAN = document(rule("ci", MAIN))
WARNS = document(rule("owner", {"repository_owner": "acme"}))  # CAB101
NOTES = document(rule("ci", MAIN), rule("rel", {**MAIN, "environment": "r"}, publish("acme-*")))
INVALID = document(rule("bad", MAIN, {"repository": "internal", "access": "write"}))


def write(tmp_path: Path, text: str | bytes) -> str:
    path = tmp_path / "rules.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("text", "strict", "code", "summary"),
    [
        pytest.param(CLEAN, False, 0, "valid (1 rules, 6 issuers); 0 warnings, 0 notes", id="ok"),
        pytest.param(CLEAN, True, 0, "valid (1 rules, 6 issuers); 0 warnings, 0 notes", id="ok"),
        pytest.param(WARNS, False, 0, "1 warning, 0 notes", id="warning"),
        pytest.param(WARNS, True, 1, "1 warning, 0 notes; failing (--strict)", id="strict"),
        pytest.param(NOTES, True, 0, "0 warnings, 1 note", id="a note never fails"),
        pytest.param(INVALID, False, 1, "invalid: the broker would refuse it", id="invalid"),
        pytest.param(INVALID, True, 1, "invalid: the broker would refuse it", id="invalid strict"),
    ],
)
def test_exit_codes_and_the_text_format(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    strict: bool,
    code: int,
    summary: str,
) -> None:
    file = write(tmp_path, text)
    argv = ["rules", "check", file, *(["--strict"] if strict else [])]
    exit_code, out, err = run(capsys, *argv)
    assert (exit_code, err) == (code, "")
    *findings, last = out.splitlines()
    assert last.startswith(f"{file}: ")
    assert last.endswith(summary)
    for line in findings:
        assert re.match(rf"{re.escape(file)}: (error|warning|info) CAB\d{{3}}: ", line), line


def test_an_invalid_file_is_one_error_naming_rule_field_and_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path, INVALID)
    code, out, _ = run(capsys, "rules", "check", file)
    assert code == 1
    assert out.splitlines()[0] == (
        f"{file}: error CAB001: rule 'bad': field 'grant.access' must be 'read' or 'publish' "
        "(fix: fix the rule and field the message names)"
    )


def test_the_json_format_is_a_list_of_findings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path, WARNS)
    code, out, _ = run(capsys, "rules", "check", file, "--format", "json", "--strict")
    assert code == 1
    (finding,) = json.loads(out)
    assert set(finding) == {"code", "severity", "rule", "message", "fix", "docs"}
    assert (finding["code"], finding["severity"], finding["rule"]) == ("CAB101", "warning", "owner")
    code, out, _ = run(capsys, "rules", "check", write(tmp_path, CLEAN), "--format", "json")
    assert (code, json.loads(out)) == (0, [])
    code, out, _ = run(capsys, "rules", "check", write(tmp_path, INVALID), "--format", "json")
    assert code == 1
    assert [f["code"] for f in json.loads(out)] == ["CAB001"]


def test_the_deployment_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = write(tmp_path, document(rule("rel", MAIN, publish("other-*"))))
    assert run(capsys, "rules", "check", file, "--strict")[0] == 0
    code, out, _ = run(capsys, "rules", "check", file, "--strict", "--internal-prefixes", "acme")
    assert code == 1
    assert "warning CAB401: rule 'rel': publishes 'other-*'" in out
    code, out, _ = run(capsys, "rules", "check", file, "--repositories", "restricted")
    assert code == 1
    assert "is not a repository this deployment serves (restricted)" in out
    flags = ["--domain", "acme", "--domain-owner", "123456789012", "--region", "eu-west-1"]
    assert run(capsys, "rules", "check", file, "--partition", "aws-cn", *flags)[0] == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--domain", "Acme"], "--domain 'Acme' is not a CodeArtifact domain name"),
        (["--domain-owner", "123"], "--domain-owner '123' is not a 12-digit AWS account id"),
        (["--region", "moon"], "--region 'moon' is not an AWS region"),
        (["--partition", "azure"], "--partition 'azure' is not an AWS partition"),
        (["--repositories", "a/b"], "--repositories: 'a/b' is not a CodeArtifact repository"),
        (["--internal-prefixes", "Acme"], "--internal-prefixes: 'Acme' is not a normalized"),
        (["--internal-prefixes", " , "], "--internal-prefixes names no prefix"),
    ],
)
def test_a_wrong_flag_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, "rules", "check", write(tmp_path, CLEAN), *argv)
    assert (code, out) == (2, "")
    assert one_error(err).startswith(f"cabroker-admin: {message}")


def test_a_missing_file_or_format_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "rules", "check", str(tmp_path / "missing.yaml"))
    assert code == 2
    assert one_error(err) == (
        f"cabroker-admin: {tmp_path / 'missing.yaml'}: cannot read: No such file or directory"
    )
    code, _, err = run(capsys, "rules", "check", write(tmp_path, CLEAN), "--format", "xml")
    assert code == 2
    assert "invalid choice: 'xml'" in err


def test_stdin_and_a_file_that_is_not_utf8(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Stdin:
        buffer = io.BytesIO(WARNS.encode())

    monkeypatch.setattr(sys, "stdin", Stdin)
    code, out, _ = run(capsys, "rules", "check", "-")
    assert code == 0
    assert out.startswith("stdin: warning CAB101: rule 'owner': ")
    code, out, _ = run(capsys, "rules", "check", write(tmp_path, b"version: 1\n# \xff\n"))
    assert code == 1
    assert "error CAB001: not UTF-8 text (at byte offset 13)" in out


def test_rules_schema_prints_the_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "rules", "schema")
    assert (code, err) == (0, "")
    assert out == checkcli.schema_text()
    assert json.loads(out)["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_installed_command_checks(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "cabroker-admin"
    done = subprocess.run(
        [str(script), "rules", "check", write(tmp_path, WARNS), "--strict"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (1, "")
    assert "warning CAB101" in done.stdout


# --------------------------------------------------------------------------- the CI examples


def workflow() -> dict[Any, Any]:
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def gitlab() -> dict[str, Any]:
    data = yaml.safe_load(GITLAB.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def admin_commands() -> list[tuple[str, str]]:
    """Every `cabroker-admin …` command the two examples run: (where, the command)."""
    found = []
    for job, spec in workflow()["jobs"].items():
        for step in spec["steps"]:
            for line in str(step.get("run", "")).splitlines():
                if line.startswith("cabroker-admin "):
                    found.append((f"rules-check.yml {job}", line))
    for job, spec in gitlab().items():
        if isinstance(spec, dict):
            for line in spec.get("script", []):
                if line.startswith("cabroker-admin "):
                    found.append((f".gitlab-ci.yml {job}", " ".join(line.split())))
    return found


def test_the_workflow_is_yaml_that_actionlint_accepts() -> None:
    actionlint = Path(sys.executable).parent / "actionlint"
    done = subprocess.run(
        [str(actionlint), "-no-color", str(WORKFLOW)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, ""), done.stdout + done.stderr


def test_actionlint_would_notice_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "rules.yml"
    broken.write_text(
        WORKFLOW.read_text(encoding="utf-8").replace("runs-on:", "runs_on:", 1), encoding="utf-8"
    )
    actionlint = Path(sys.executable).parent / "actionlint"
    done = subprocess.run(
        [str(actionlint), "-no-color", str(broken)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "runs_on" in done.stdout


def test_the_workflow_checks_pull_requests_and_pushes_after_the_merge() -> None:
    data = workflow()
    on = data[True]  # YAML 1.1 reads the key `on` as true
    assert on["pull_request"]["paths"] == on["push"]["paths"]
    assert "rules.yaml" in on["pull_request"]["paths"]
    assert on["push"]["branches"] == ["main"]
    check, push = data["jobs"]["check"], data["jobs"]["push"]
    runs = [str(step.get("run", "")) for step in check["steps"]]
    assert any("rules check rules.yaml --strict" in " ".join(run.split()) for run in runs)
    assert any(run.startswith("cabroker-admin rules test ") for run in runs)
    assert "if" not in check  # pull requests and pushes alike
    assert push["needs"] == "check"
    assert "github.event_name == 'push'" in push["if"]
    assert push["permissions"] == {"contents": "read", "id-token": "write"}
    assert data["permissions"] == {"contents": "read"}  # no OIDC token for pull requests
    assert push["steps"][-1]["run"] == "cabroker-admin rules push rules.yaml --stack cabroker"


def test_every_action_is_pinned_by_commit_sha_as_release_yml_pins_them() -> None:
    uses = re.findall(r"uses: (\S+)@(\S+) # (v\S+)", WORKFLOW.read_text(encoding="utf-8"))
    steps = [s for job in workflow()["jobs"].values() for s in job["steps"] if "uses" in s]
    assert len(uses) == len(steps) == 5
    pinned = re.findall(r"uses: (\S+)@(\S+) # (v\S+)", RELEASE.read_text(encoding="utf-8"))
    released = {action: (sha, version) for action, sha, version in pinned}
    for action, sha, version in uses:
        assert re.fullmatch(r"[0-9a-f]{40}", sha), action
        if action in released:
            assert (sha, version) == released[action]
    assert {"actions/checkout", "actions/setup-python"} <= {action for action, _, _ in uses}


def test_the_gitlab_jobs_check_merge_requests_and_push_from_the_default_branch() -> None:
    data = gitlab()
    check, push = data["rules-check"], data["rules-push"]
    assert data["stages"] == ["check", "push"]
    assert (check["stage"], push["stage"]) == ("check", "push")
    when = [rule["if"] for rule in check["rules"]]
    assert '$CI_PIPELINE_SOURCE == "merge_request_event"' in when
    assert all("rules.yaml" in rule["changes"] for rule in check["rules"] + push["rules"])
    assert [rule["if"] for rule in push["rules"]] == ["$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"]
    assert push["id_tokens"]["AWS_ID_TOKEN"]["aud"] == "sts.amazonaws.com"
    assert {"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"} <= set(push["variables"])
    assert push["script"][-1] == "cabroker-admin rules push rules.yaml --stack cabroker"


def rules_commands() -> set[str]:
    top = parser()
    groups = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    rules = groups.choices["rules"]
    commands = next(a for a in rules._actions if isinstance(a, argparse._SubParsersAction))
    return set(commands.choices)


@pytest.mark.parametrize(
    ("where", "command"), admin_commands(), ids=[w for w, _ in admin_commands()]
)
def test_the_commands_the_examples_run_parse(where: str, command: str) -> None:
    argv = shlex.split(command)[1:]
    if argv[:2] == ["rules", "test"] and "test" not in rules_commands():
        pytest.skip("`rules test` is not registered in this checkout")
    try:
        args = parser().parse_args(argv)
    except SystemExit as exit_:
        pytest.fail(f"{where}: {command!r} does not parse (exit {exit_.code})")
    assert callable(args.run)


def test_the_examples_run_check_strict_and_test() -> None:
    commands = [" ".join(command.split()[:3]) for _, command in admin_commands()]
    for example in ("rules-check.yml", ".gitlab-ci.yml"):
        ran = [
            c for (where, _), c in zip(admin_commands(), commands, strict=True) if example in where
        ]
        assert ran == [
            "cabroker-admin rules check",
            "cabroker-admin rules test",
            "cabroker-admin rules push",
        ]
    assert all("--strict" in c for _, c in admin_commands() if " rules check " in c)


def test_the_examples_check_passes_on_this_repositorys_rules_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    for _, command in admin_commands():
        if " rules check " in command:
            assert main(shlex.split(command)[1:]) == 0
            assert capsys.readouterr().out.endswith("0 warnings, 0 notes\n")
