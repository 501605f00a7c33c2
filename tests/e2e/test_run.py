"""``make run`` (python -m devstack run) as a user meets it: the state file appears with the
contract's fields, the printed commands work, SIGTERM stops everything and removes the file;
and the AWS CLI's ``codeartifact login`` works against the stand-in."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from devstack.demo import CONTRACTOR_CLAIMS
from devstack.stack import RULES_FILE, Options
from devstack.stack import Devstack as Stack
from devstack.tools import Devstack, Tools, http_json
from tests.support.admin import eventually
from tests.support.newcomer import assert_acme_lib_installed, newcomer_env

ROOT = Path(__file__).resolve().parents[2]
AWS = ROOT / ".venv-awscli" / "bin" / "aws"
CONTRACT = {
    "broker_url",
    "aws_endpoint_url",
    "region",
    "domain",
    "domain_owner",
    "repositories",
    "public_index_url",
    "issuers",
}


def test_make_run_writes_the_state_file_and_stops_cleanly(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    env = {**os.environ, "DEVSTACK_STATE": str(state_file), "PYTHONUNBUFFERED": "1"}
    with (tmp_path / "run.log").open("w+") as log:
        _run_until_sigterm(env, state_file, log, tmp_path)


def _run_until_sigterm(env: dict[str, str], state_file: Path, log: Any, tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack", "run"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not state_file.exists():
            assert process.poll() is None, log.seek(0) or log.read()
            assert time.monotonic() < deadline, "no state file after 60 s"
            time.sleep(0.2)
        state = json.loads(state_file.read_text())
        assert set(state) >= CONTRACT
        assert set(state["repositories"]) == {"private", "store"}
        assert set(state["issuers"]) == {"github", "gitlab", "aws", "corp"}
        for issuer in state["issuers"].values():
            assert {"url", "audience", "mint_url"} <= set(issuer)
        status, config, _ = http_json("GET", state["broker_url"] + "/v1/config")
        assert status == 200
        assert config["domain"] == state["domain"]
        while "Ctrl-C stops everything" not in (log.seek(0) or log.read()):
            time.sleep(0.1)
        printed = log.seek(0) or log.read()
        _the_printed_commands_work(printed, tmp_path)
        _the_printed_client_commands_work(printed, state, tmp_path)
        _the_readme_quick_start_works(state, tmp_path)
        _the_console_has_one_short_line_per_request(log.seek(0) or log.read())
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=30)
    assert returncode == 0, log.seek(0) or log.read()
    assert not state_file.exists()


def _the_printed_commands_work(printed: str, tmp_path: Path) -> None:
    """Run the printed 'engineer' commands in a shell, with pip from a fresh venv."""
    lines = printed.splitlines()
    start = next(i for i, line in enumerate(lines) if "An engineer's ID token" in line)
    script = "\n".join(lines[start + 1 : start + 5]).replace("\\\n", "")
    python = Tools(tmp_path / "tools").venv("printed")
    script = script.replace("pip install", f"{shlex.quote(str(python))} -m pip install --quiet")
    ran = subprocess.run(
        ["/bin/bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PIP_NO_INPUT": "1"},
    )
    assert ran.returncode == 0, re.sub(r"aws:[^@]+@", "aws:****@", ran.stderr)
    installed = subprocess.run(
        [str(python), "-c", "import tinyjson; print(tinyjson.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert installed.stdout.strip() == "1.1.0"


@pytest.mark.skipif(not AWS.exists(), reason="the AWS CLI's venv is missing: make venv-awscli")
def test_aws_codeartifact_login_configures_pip_against_the_stand_in(
    devstack: Devstack, tools: Tools, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = tools.environment(
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "AWS_ACCESS_KEY_ID": "devstack-admin",
            "AWS_SECRET_ACCESS_KEY": "devstack-admin",
            "AWS_DEFAULT_REGION": devstack.state["region"],
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }
    )
    del env["PIP_CONFIG_FILE"]  # login writes the user's pip config; pip must read it
    login = subprocess.run(
        [
            str(AWS), "codeartifact", "login", "--tool", "pip",
            "--domain", devstack.state["domain"],
            "--domain-owner", devstack.state["domain_owner"],
            "--repository", devstack.state["repositories"]["private"],
            "--endpoint-url", devstack.state["aws_endpoint_url"],
        ],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert login.returncode == 0, login.stderr
    assert "Successfully configured pip" in login.stdout
    python = tools.venv("aws-login")
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "tinyjson"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, re.sub(r"aws:[^@]+@", "aws:****@", installed.stderr)


def test_saving_the_rules_file_changes_who_gets_tokens(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES_FILE.read_text())
    options = Options(
        state_file=tmp_path / "state.json",
        work_dir=tmp_path,
        rules_file=rules,
        broker_log=tmp_path / "broker.log",
        rules_cache_seconds=1,
    )
    stack = Stack(options)
    try:
        running = Devstack(stack.start())
        assert _contractor_status(running, CONTRACTOR_CLAIMS) == 403
        rules.write_text(
            rules.read_text()
            + "  - name: contractors-read\n    issuer: corp\n    claims: {groups: contractors}\n"
            "    grant: {repository: internal, access: read, max_duration: 3600}\n"
        )
        eventually(  # the watcher, then each instance's 1 s cache
            "the edited rules reaching the broker",
            lambda: _contractor_status(running, CONTRACTOR_CLAIMS) == 200,
        )
    finally:
        stack.stop()


def _contractor_status(running: Devstack, claims: dict[str, Any]) -> int:
    status, _ = running.broker("POST", "/v1/token", running.id_token("corp", claims), {})
    return status


def _the_printed_client_commands_work(printed: str, state: dict[str, Any], tmp_path: Path) -> None:
    """The printed cabroker block as printed, from a directory that is not the repository,
    with a minted engineer's token in place of the device login (which needs a person;
    tests/e2e/test_client.py drives that one): both acme-lib versions are there, and pip
    installs the newest."""
    lines = printed.splitlines()
    start = next(i for i, line in enumerate(lines) if "export CABROKER_URL" in line)
    end = next(i for i, line in enumerate(lines) if "pip index versions acme-lib" in line)
    block = "\n".join(line.strip() for line in lines[start : end + 1])
    assert "cabroker login --identity device" in block
    assert f"{ROOT}/.venv/bin/cabroker" in block  # absolute paths: any directory works
    assert " .venv/" not in block
    ran = _run_as_alice(block, state, tmp_path / "printed", cwd=tmp_path / "elsewhere")
    assert "Available versions: 1.1.0, 1.0.0" in ran.stdout, ran.stderr
    assert_acme_lib_installed(tmp_path / "printed" / "home" / "cabroker-try")


def _the_readme_quick_start_works(state: dict[str, Any], tmp_path: Path) -> None:
    """The README's quick start, as written, at the top of the repository: only the URL
    `make run` printed filled in, a minted engineer's token in place of the device login, and
    the throwaway virtualenv in the test's directory. acme-lib installs. (With the device login
    approved at make run's console: tests/e2e/test_quickstart.py.)"""
    from tests.test_docs import quickstart

    block = quickstart()
    assert "http://127.0.0.1:PORT" in block
    assert f"CABROKER_AUDIENCE={state['issuers']['corp']['audience']}" in block
    assert "--identity device" in block
    venv = tmp_path / "readme" / "try"
    script = block.replace("http://127.0.0.1:PORT", state["broker_url"]).replace(
        "/tmp/cabroker-try", shlex.quote(str(venv))
    )
    _run_as_alice(script, state, tmp_path / "readme", cwd=ROOT)
    assert_acme_lib_installed(venv)


def _run_as_alice(
    script: str, state: dict[str, Any], work: Path, cwd: Path
) -> subprocess.CompletedProcess[str]:
    """``script`` in bash from ``cwd``, in a home of its own under ``work``, with a minted
    engineer's token in place of the device login (which needs a person;
    tests/e2e/test_client.py drives that one); it must succeed."""
    status, minted, _ = http_json(
        "POST", state["issuers"]["corp"]["mint_url"], {"sub": "alice", "groups": ["engineering"]}
    )
    assert status == 200
    work.mkdir(parents=True)
    cwd.mkdir(parents=True, exist_ok=True)
    jwt = work / "alice.jwt"
    jwt.write_text(minted["id_token"])
    home = work / "home"
    ran = subprocess.run(
        ["/bin/bash", "-euo", "pipefail", "-c",
         script.replace("--identity device", f"--id-token-file {shlex.quote(str(jwt))}")],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=cwd,
        env=newcomer_env(home),
    )  # fmt: skip
    assert ran.returncode == 0, re.sub(r"aws:[^@]+@", "aws:****@", ran.stdout + ran.stderr)
    return ran


def _the_console_has_one_short_line_per_request(console: str) -> None:
    """Requests show as ``POST /v1/token 200 allow corp/alice 12 ms``; the broker's JSON lines
    are in the log file the banner names, not on the console."""
    assert re.search(r"POST /v1/token 200 allow corp/alice \d+ ms", console), console
    assert re.search(r"GET /v1/config 200 - - \d+ ms", console), console
    assert '"decision"' not in console
    assert '"token"' not in console
    named = re.search(r"broker log +(\S+)", console)
    assert named is not None
    broker_log = Path(named.group(1)).read_text(encoding="utf-8")
    assert '"decision": "allow"' in broker_log or '"decision":"allow"' in broker_log
    assert '"httpMethod": "POST"' in broker_log
