"""The client on the devstack: real pip, uv and twine read what ``cabroker`` wrote or printed."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from devstack.demo import CI_CLAIMS, ENGINEER_CLAIMS
from devstack.tools import Devstack, Result, Tools, http_json, redact
from devstack.wheels import build_wheel

BIN = Path(sys.executable).parent
CABROKER = str(BIN / "cabroker")


class Client:
    """``cabroker`` in a temporary HOME, as a user runs it."""

    def __init__(self, devstack: Devstack, tools: Tools, home: Path) -> None:
        self.devstack = devstack
        self.tools = tools
        self.home = home
        home.mkdir(parents=True, exist_ok=True)

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = self.tools.environment(
            {
                "HOME": str(self.home),
                "XDG_CONFIG_HOME": str(self.home / ".config"),
                "XDG_CACHE_HOME": str(self.home / ".cache"),
                "XDG_STATE_HOME": str(self.home / ".local" / "state"),
                "CABROKER_URL": self.devstack.state["broker_url"],
                # the devstack's issuers use audiences of their own, not the broker's origin
                "CABROKER_AUDIENCE": ",".join(
                    issuer["audience"] for issuer in self.devstack.state["issuers"].values()
                ),
                "PATH": f"{BIN}:{os.environ['PATH']}",
            }
        )
        env.pop("PIP_CONFIG_FILE", None)  # pip must read the user config login writes
        env.pop("PYTHON_KEYRING_BACKEND", None)
        env.update(extra or {})
        return env

    def identity(self, issuer: str, claims: Mapping[str, Any]) -> Path:
        token = self.devstack.id_token(issuer, claims)
        self.tools.secrets.append(token)
        path = self.home.parent / "ids" / f"{issuer}.jwt"  # outside HOME: no token there
        path.parent.mkdir(exist_ok=True)
        path.write_text(token)
        return path

    def run(self, *args: str, env: Mapping[str, str] | None = None) -> Result:
        completed = subprocess.run(
            [CABROKER, *args],
            capture_output=True,
            text=True,
            env=self.env(env),
            timeout=120,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        self._learn_tokens()
        output = redact(completed.stdout + completed.stderr, self.tools.secrets)
        return Result("cabroker " + " ".join(args), completed.returncode, output)

    def run_raw(self, *args: str) -> subprocess.CompletedProcess[str]:
        """stdout unredacted (for ``env`` output the test evaluates), stderr redacted."""
        completed = subprocess.run(
            [CABROKER, *args],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=120,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        self._learn_tokens()
        return completed

    def _learn_tokens(self) -> None:
        """Every token the client cached is a secret from now on (redacted everywhere)."""
        cache = self.home / ".cache" / "cabroker" / "tokens.json"
        if cache.exists():
            self.tools.secrets.extend(re.findall(r'"token":\s*"([^"]+)"', cache.read_text()))

    def tool(self, command: list[str], env: Mapping[str, str] | None = None) -> Result:
        completed = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=self.env(env),
            timeout=120,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        output = redact(completed.stdout + completed.stderr, self.tools.secrets)
        return Result(Path(command[0]).name, completed.returncode, output)


@pytest.fixture
def client(devstack: Devstack, tools: Tools, tmp_path: Path) -> Client:
    return Client(devstack, tools, tmp_path / "home")


def no_token_in_files(root: Path, secrets: list[str]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and "cabroker" not in path.parts:  # the 0600 cache is allowed
            text = path.read_text(errors="replace")
            if any(secret and secret in text for secret in secrets):
                found.append(str(path.relative_to(root)))
    return found


def test_login_then_pip_install_then_logout_restores(client: Client) -> None:
    jwt = client.identity("corp", ENGINEER_CLAIMS)
    pip_conf = client.home / ".config" / "pip" / "pip.conf"
    pip_conf.parent.mkdir(parents=True)
    original = b"[global]\ntimeout = 60\n# the user's own comment\n"
    pip_conf.write_bytes(original)
    login = client.run("login", "--id-token-file", str(jwt), "--access", "read", "--pip")
    assert login.ok, login.output
    assert "read on internal" in login.output
    assert "expires at" in login.output
    python = client.tools.venv("client-pip")
    installed = client.tool([str(python), "-m", "pip", "install", "tinyjson"])
    assert installed.ok, installed.output
    logout = client.run("logout")
    assert logout.ok, logout.output
    assert pip_conf.read_bytes() == original


def test_env_then_uv_install_and_uv_publish(client: Client, dist: Path) -> None:
    jwt = client.identity("github", CI_CLAIMS)
    printed = client.run_raw("env", "--id-token-file", str(jwt), "--access", "publish")
    assert printed.returncode == 0, redact(printed.stderr, client.tools.secrets)
    exports = {
        line.removeprefix("export ").split("=", 1)[0]: shlex.split(line.split("=", 1)[1])[0]
        for line in printed.stdout.splitlines()
        if line.startswith("export ")
    }
    assert "PIP_EXTRA_INDEX_URL" not in exports
    python = client.tools.uv_venv("client-uv")
    installed = client.tool(
        [str(BIN / "uv"), "pip", "install", "--python", str(python), "tinyjson"], exports
    )
    assert installed.ok, installed.output
    wheel = build_wheel(dist, "acme-client-uv", "1.0.0")
    published = client.tool([str(BIN / "uv"), "publish", str(wheel)], exports)
    assert published.ok, published.output


def test_twine_uploads_with_a_publish_login(client: Client, dist: Path) -> None:
    jwt = client.identity("github", CI_CLAIMS)
    login = client.run("login", "--id-token-file", str(jwt), "--access", "publish", "--pypirc")
    assert login.ok, login.output
    wheel = build_wheel(dist, "acme-client-twine", "1.0.0")
    uploaded = client.tool(
        [str(BIN / "twine"), "--no-color", "upload", "--repository", "codeartifact", str(wheel)]
    )
    assert uploaded.ok, uploaded.output
    assert client.run("logout").ok
    assert not (client.home / ".pypirc").exists()


def test_pip_through_the_keyring_backend_with_no_token_in_any_file(client: Client) -> None:
    jwt = client.identity("corp", ENGINEER_CLAIMS)
    login = client.run("login", "--id-token-file", str(jwt), "--access", "read")
    assert login.ok, login.output
    aws = client.devstack.state["aws_endpoint_url"].split("//", 1)[1]
    index = f"http://aws@{aws}/pypi/{client.devstack.state['repositories']['private']}/simple/"
    downloaded = client.tool(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--dest",
         str(client.home / "dl"), "--keyring-provider", "import", "--index-url", index,
         "tinyjson"]
    )  # fmt: skip
    assert downloaded.ok, downloaded.output
    assert no_token_in_files(client.home, client.tools.secrets) == []


def test_device_login_completed_against_the_dev_idp(client: Client) -> None:
    process = subprocess.Popen(
        [CABROKER, "login", "--identity", "device", "--access", "read"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=client.env(),
        stdin=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    seen: list[str] = []
    code = None
    deadline = time.monotonic() + 30
    while code is None and time.monotonic() < deadline:
        line = process.stdout.readline()
        seen.append(line)
        match = re.search(r"\b([B-DF-HJ-NP-TV-Z]{4}-[B-DF-HJ-NP-TV-Z]{4})\b", line)
        code = match.group(1) if match else None
    assert code, "".join(seen)
    page = client.devstack.state["issuers"]["corp"]["url"] + "/device"
    status = _approve(page, code, "alice")
    assert status == 200
    rest, _ = process.communicate(timeout=60)
    output = redact("".join(seen) + rest, client.tools.secrets)
    assert process.returncode == 0, output
    assert "read on internal" in output


def _approve(page: str, code: str, user: str) -> int:
    import urllib.parse
    import urllib.request

    data = urllib.parse.urlencode({"user_code": code, "user": user, "action": "approve"}).encode()
    request = urllib.request.Request(page, data=data, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(response.status)


def test_errors_have_their_exit_codes_and_say_why(client: Client, devstack: Devstack) -> None:
    nothing = client.run("login", "--non-interactive")
    assert nothing.returncode == 5, nothing.output
    jwt = client.identity("corp", {"sub": "mallory", "groups": ["contractors"]})
    refused = client.run("login", "--id-token-file", str(jwt))
    assert refused.returncode == 3, refused.output
    assert "no access rule matches" in refused.output
    down = client.run(
        "login", "--id-token-file", str(jwt), env={"CABROKER_URL": "http://127.0.0.1:9"}
    )
    assert down.returncode == 4, down.output
    assert "cannot reach the broker" in down.output
    status, _, _ = http_json("GET", devstack.state["broker_url"] + "/v1/config")
    assert status == 200


POETRY = Path(__file__).resolve().parents[2] / ".venv-poetry" / "bin" / "poetry"


@pytest.mark.skipif(not POETRY.exists(), reason="poetry's venv is missing: make venv-poetry")
def test_poetry_installs_through_the_env_variables(client: Client, tmp_path: Path) -> None:
    jwt = client.identity("corp", ENGINEER_CLAIMS)
    printed = client.run_raw(
        "env", "--id-token-file", str(jwt), "--tools", "poetry", "--format", "json"
    )
    assert printed.returncode == 0, redact(printed.stderr, client.tools.secrets)
    variables = json.loads(printed.stdout)
    project = tmp_path / "app"
    project.mkdir()
    index = client.devstack.repository_url(client.devstack.state["repositories"]["private"])
    (project / "pyproject.toml").write_text(
        '[project]\nname = "app"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
        'dependencies = ["tinyjson"]\n\n[tool.poetry]\npackage-mode = false\n\n'
        f'[[tool.poetry.source]]\nname = "codeartifact"\nurl = "{index}simple/"\n'
        'priority = "primary"\n'
    )
    installed = subprocess.run(
        [str(POETRY), "install", "--no-interaction"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=client.env(
            {
                **variables,
                "POETRY_VIRTUALENVS_IN_PROJECT": "true",
                "POETRY_CACHE_DIR": str(tmp_path / "poetry-cache"),
            }
        ),
    )
    output = redact(installed.stdout + installed.stderr, client.tools.secrets)
    assert installed.returncode == 0, output
    assert "Installing tinyjson (1.1.0)" in output
    lock = (project / "poetry.lock").read_text()
    assert not any(secret and secret in lock for secret in client.tools.secrets)
