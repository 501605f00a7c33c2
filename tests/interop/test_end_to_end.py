"""The whole path with an identity provider we did not write: the broker (its handler behind
the devstack's gateway) trusts oidc-provider through its discovery document; ``cabroker login``
runs the device flow against it as a person does, approved on the provider's own pages; the
broker's token then installs acme-lib with the real pip."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
import yaml

from devstack.demo import publish_acme_lib
from devstack.stack import RULES_FILE, Devstack, Options
from devstack.tools import Devstack as Running
from devstack.tools import Tools
from tests.interop.support import PUBLIC_CLIENT, Person, Provider, logged_in
from tests.support.newcomer import assert_acme_lib_installed, newcomer_env

BIN = Path(sys.executable).parent
INSTANCES = 2  # warm instances of the broker, each with its own key cache
LOGIN_TIMEOUT = 120.0  # the client polls every 5 s; this is only the bound for a broken run


def interop_rules(provider: Provider, path: Path) -> Path:
    """The devstack's rules, and the provider as an interactive issuer whose engineers read."""
    document: dict[str, Any] = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    document["issuers"]["op"] = {
        "url": provider.issuer,
        "audience": PUBLIC_CLIENT,
        "client_id": PUBLIC_CLIENT,
        "scopes": ["openid", "groups"],
    }
    document["rules"].append(
        {
            "name": "op-engineers-read",
            "issuer": "op",
            "claims": {"groups": "engineering"},
            "grant": {"repository": "${repo1}", "access": "read", "max_duration": 3600},
        }
    )
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def devstack(provider: Provider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    work = tmp_path_factory.mktemp("interop-devstack")
    options = Options(
        state_file=work / "state.json",
        work_dir=work,
        rules_file=interop_rules(provider, work / "rules.yaml"),
        broker_log=work / "broker.log",
        watch_rules=False,
        instances=INSTANCES,
    )
    stack = Devstack(options)
    try:
        running = Running(stack.start())
        published = publish_acme_lib(running, Tools(work / "publish"), work / "dist")
        assert all(step.ok for step in published.steps), [s.detail for s in published.steps]
        yield running
    finally:
        stack.stop()


def test_cabroker_login_against_the_provider_then_pip_installs_from_the_private_repository(
    devstack: Running, provider: Provider, tmp_path: Path
) -> None:
    config = requests.get(f"{devstack.state['broker_url']}/v1/config", timeout=30).json()
    [published] = [issuer for issuer in config["issuers"] if issuer["name"] == "op"]
    assert published == {
        "name": "op",
        "url": provider.issuer,
        "audience": PUBLIC_CLIENT,
        "client_id": PUBLIC_CLIENT,
        "scopes": ["openid", "groups"],
    }
    home = tmp_path / "home"
    env = {
        **newcomer_env(home),
        "CABROKER_URL": devstack.state["broker_url"],
        "CABROKER_AUDIENCE": PUBLIC_CLIENT,  # pinned, as the provider's tokens carry
        "BROWSER": "true",
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    stderr = tmp_path / "login.err"
    with stderr.open("wb") as err:
        login = subprocess.Popen(
            [str(BIN / "cabroker"), "login", "--identity", "device", "--issuer", "op"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    try:
        url = wait_for_the_url(stderr, login)
        last_page = Person().approve(url, "alice")  # on the provider's own pages
        assert "Sign-in Success" in last_page
        login.wait(timeout=LOGIN_TIMEOUT)
        printed = stderr.read_text(errors="replace")
        assert login.returncode == 0, printed
        assert "Logged in to op as alice." in printed
        assert "eyJ" not in printed  # no ID token or JWT in what the user sees
    finally:
        if login.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(login.pid, signal.SIGKILL)
            login.wait()

    venv = tmp_path / "try"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [
            "/bin/bash",
            "-euo",
            "pipefail",
            "-c",
            f'eval "$(cabroker env)" && {venv}/bin/python -m pip install --quiet acme-lib',
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    assert_acme_lib_installed(venv)


def wait_for_the_url(stderr: Path, login: subprocess.Popen[bytes]) -> str:
    """The verification URL the client printed, once it has (the client is polling then)."""
    deadline = time.monotonic() + LOGIN_TIMEOUT
    while time.monotonic() < deadline:
        for line in stderr.read_text(errors="replace").splitlines():
            if "user_code=" in line:
                return line.strip()
        if login.poll() is not None:
            break
        time.sleep(0.1)  # polling a file the client writes: a bound, not a timing assumption
    raise AssertionError(f"the client printed no login URL: {stderr.read_text()[-2000:]}")


def test_the_brokers_instances_pick_up_the_providers_new_key(
    devstack: Running, provider: Provider
) -> None:
    """Each warm instance of the broker (each holds its own key cache) takes a token signed
    with the key the provider rotated to, having looked again on its unknown kid."""
    before = logged_in(provider, "alice")
    for _ in range(INSTANCES):  # every instance caches the key in use now
        status, body = devstack.broker("POST", "/v1/token", before, {"access": "read"})
        assert status == 200, body
    rotated = provider.rotate()
    after = logged_in(provider, "alice")
    assert jwt.get_unverified_header(after)["kid"] == rotated
    for _ in range(INSTANCES):  # the instances take requests in turn: each sees the new kid
        status, body = devstack.broker("POST", "/v1/token", after, {"access": "read"})
        assert status == 200, body
        assert body["repository"] == devstack.state["private_repositories"][0]
