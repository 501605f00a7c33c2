"""Why was I denied? On the devstack: a denial's problem body names its request id, and
`cabroker-admin why REQUEST_ID --log-file <the broker log>` finds the reason, rule by rule.
Shadow rules on a devstack of their own (devstack Options.shadow_rules_file): the live rules
answer, and the audit line says whom the shadow rules would treat otherwise."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.demo import CONTRACTOR_CLAIMS, ENGINEER_CLAIMS
from devstack.stack import RULES_FILE, Devstack, Options
from devstack.tools import Devstack as Running
from devstack.tools import http_json


def why(*argv: str) -> subprocess.CompletedProcess[str]:
    """`cabroker-admin why …`, as an admin runs it."""
    return subprocess.run(
        [sys.executable, "-m", "cabroker_admin", "why", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def audit_line(log: Path, request_id: str) -> dict[str, Any]:
    for text in log.read_text(encoding="utf-8").splitlines():
        if text.startswith("{") and request_id in text:
            line = json.loads(text)
            if line.get("function_request_id") == request_id and "decision" in line:
                return dict(line)
    raise AssertionError(f"no audit line of {request_id} in {log}")


def test_a_denied_contractor_learns_the_request_id_and_the_admin_finds_why(
    devstack: Running,
) -> None:
    id_token = devstack.id_token("corp", CONTRACTOR_CLAIMS)
    status, body = devstack.broker("POST", "/v1/token", id_token, {"access": "read"})
    assert status == 403, body
    request_id = body["request_id"]
    assert "engineering" not in body["detail"]  # the caller never sees the rules' patterns
    log = Path(devstack.state["broker_log"])
    done = why(request_id, "--log-file", str(log))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"request {request_id} ({log})"
    assert "decision: deny (no-matching-rule)" in lines
    assert "who:      issuer 'corp', subject 'mallory'" in done.stdout
    assert 'asked:    access "read"' in lines
    assert lines[lines.index("rules of issuer 'corp' (2):") :][:5] == [
        "rules of issuer 'corp' (2):",
        "  engineers-read: not matched",
        "    claims.groups: its value 'contractors' does not match 'engineering'",
        "  vault-team-read: not matched",
        "    claims.groups: its value 'contractors' does not match 'vault'",
    ]
    assert id_token not in done.stdout
    assert id_token not in log.read_text(encoding="utf-8")


def test_a_request_without_an_id_token_is_found_too(devstack: Running) -> None:
    status, body, _ = http_json("POST", devstack.state["broker_url"] + "/v1/token", {})
    assert status == 401
    done = why(body["request_id"], "--log-file", devstack.state["broker_log"])
    assert done.returncode == 0, done.stderr
    assert "decision: deny: authentication failed: send the OIDC ID token" in done.stdout


def test_an_unknown_request_id_is_exit_1(devstack: Running) -> None:
    done = why("00000000-0000-4000-8000-00000000dead", "--log-file", devstack.state["broker_log"])
    assert (done.returncode, done.stdout) == (1, "")
    assert "no log line" in done.stderr


# --------------------------------------------------------------------------- shadow rules


@pytest.fixture(scope="module")
def shadowed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A devstack whose shadow rules let engineers read only from the platform group."""
    work: Path = tmp_path_factory.mktemp("shadowed")
    shadow = work / "shadow-rules.yaml"
    text = RULES_FILE.read_text(encoding="utf-8")
    tightened = "    claims:\n      groups: engineering\n"
    assert tightened in text
    shadow.write_text(text.replace(tightened, "    claims:\n      groups: platform\n"))
    options = Options(
        state_file=work / "state.json",
        work_dir=work,
        broker_log=work / "broker.log",
        watch_rules=False,
        instances=1,
        shadow_rules_file=shadow,
    )
    stack = Devstack(options)
    try:
        yield Running(stack.start())
    finally:
        stack.stop()


def test_shadow_rules_name_whom_they_would_lock_out_and_change_nothing(
    shadowed: Running,
) -> None:
    assert shadowed.state["shadow_rules_parameter"].endswith("/shadow-rules")
    engineer = shadowed.id_token("corp", ENGINEER_CLAIMS)
    status, body = shadowed.broker("POST", "/v1/token", engineer, {"access": "read"})
    assert status == 200, body  # the live rules answer
    log = Path(shadowed.state["broker_log"])
    lines = [json.loads(t) for t in log.read_text().splitlines() if '"token issued"' in t]
    (issued,) = [line for line in lines if line.get("subject") == "alice"]
    assert issued["shadow_disagreement"] == "allow-to-deny"
    assert issued["shadow_reason"] == "no-matching-rule"
    done = why(issued["function_request_id"], "--log-file", str(log))
    assert done.returncode == 0, done.stderr
    assert "shadow:   the shadow rules would deny (no-matching-rule) [allow-to-deny]" in (
        done.stdout
    )
    assert "      claims.groups: its value 'engineering' does not match 'platform'" in (done.stdout)
    # The shadow rules agree with the live ones elsewhere: nothing to say.
    contractor = shadowed.id_token("corp", CONTRACTOR_CLAIMS)
    status, body = shadowed.broker("POST", "/v1/token", contractor, {})
    assert status == 403
    assert "shadow_disagreement" not in audit_line(log, body["request_id"])
