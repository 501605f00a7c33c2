"""Both samconfig.toml environments on the devstack, with the real pip and twine: `default`
(the stack creates the domain and its private repositories) and `existing` (the devstack makes
the team's estate first and the stack creates no CodeArtifact resource). In each, reads are
scoped by repository and publishing by repository and package pattern.

The rules are devstack/rules.yaml's: acme's CI and the engineers use the default repository;
acme/vault's CI publishes `acme-vault*` to the second and the `vault` group reads it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.environments import parameter_overrides
from devstack.stack import Devstack, Options
from devstack.tools import Devstack as Running
from devstack.tools import Tools, probe
from devstack.wheels import build_wheel

# devstack/rules.yaml matches the ids: owner acme 1001, acme/app 2001, acme/vault 2002, and
# publishes for a push to main only (event_name, as GitHub's token for a push carries it).
CI = {
    "repository_owner": "acme",
    "repository_owner_id": "1001",
    "ref": "refs/heads/main",
    "event_name": "push",
}
APP_CI = {
    **CI,
    "sub": "repo:acme/app:ref:refs/heads/main",
    "repository": "acme/app",
    "repository_id": "2001",
}
VAULT_CI = {
    **CI,
    "sub": "repo:acme/vault:ref:refs/heads/main",
    "repository": "acme/vault",
    "repository_id": "2002",
}
ENGINEER = {"sub": "alice", "groups": ["engineering"]}
VAULT_TEAM = {"sub": "victor", "groups": ["vault"]}


class Estate:
    """A devstack started in one samconfig environment, and what was deployed."""

    def __init__(self, stack: Devstack, running: Running) -> None:
        self.stack, self.running = stack, running
        self.default, self.other = running.state["private_repositories"][:2]

    def token(self, claims: dict[str, Any], access: str, repository: str) -> dict[str, Any]:
        issuer = "corp" if "groups" in claims else "github"
        body = {"access": access, "repository": repository}
        status, grant = self.running.broker(
            "POST", "/v1/token", self.running.id_token(issuer, claims), body
        )
        assert status == 200, grant.get("detail")
        assert grant["repository"] == repository
        return grant


@pytest.fixture(scope="module", params=["default", "existing"])
def estate(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Estate]:
    work: Path = tmp_path_factory.mktemp(f"estate-{request.param}")
    options = Options(
        state_file=work / "state.json",
        work_dir=work,
        broker_log=work / "broker.log",
        watch_rules=False,
        environment=request.param,
    )
    stack = Devstack(options)
    try:
        yield Estate(stack, Running(stack.start()))
    finally:
        stack.stop()


def test_the_environment_is_deployed_as_samconfig_says(estate: Estate) -> None:
    state = estate.running.state
    overrides = parameter_overrides(state["environment"])
    assert state["domain"] == overrides["DomainName"]
    assert state["private_repositories"] == overrides["Repositories"].split(",")
    assert state["repositories"]["private"] == state["private_repositories"][0]
    assert estate.stack.deployment is not None
    created = estate.stack.deployment.created
    codeartifact = [entry for entry in created if "AWS::CodeArtifact::" in entry]
    if overrides["Estate"] == "Existing":
        assert codeartifact == []  # the estate was there before the stack, and stays its own
    else:
        assert len([e for e in codeartifact if "::Repository)" in e]) == 1 + len(
            state["private_repositories"]
        )


def test_a_read_token_reads_its_repository_and_the_upstream_but_not_the_other(
    estate: Estate, tmp_path: Path
) -> None:
    tools = Tools(tmp_path)
    vault = estate.token(VAULT_CI, "publish", estate.other)
    tools.secrets.append(vault["token"])
    wheel = build_wheel(tmp_path / "dist", "acme-vault", "1.0.0", summary="the vault team's code")
    published = tools.twine_upload(vault["upload_url"], vault["token"], wheel)
    assert published.ok, published.last_lines()

    engineers = estate.token(ENGINEER, "read", estate.default)
    team = estate.token(VAULT_TEAM, "read", estate.other)
    other_index = team["index_url"]
    # The engineers' token is refused by the other repository's index, before any package.
    assert probe(other_index + "acme-vault/", engineers["token"]) == 403
    python = tools.venv("read")
    refused = tools.pip_download(python, other_index, engineers["token"], "acme-vault")
    assert not refused.ok
    # Through its own repository it reaches public packages (the upstream) but not the vault.
    upstream = tools.pip_download(python, engineers["index_url"], engineers["token"], "tinyjson")
    assert upstream.ok, upstream.last_lines()
    absent = tools.pip_download(python, engineers["index_url"], engineers["token"], "acme-vault")
    assert "No matching distribution found for acme-vault" in absent.output
    # The vault team reads its repository, and public packages through it too.
    installed = tools.pip_install(python, other_index, team["token"], "acme-vault", "tinyjson")
    assert installed.ok, installed.last_lines()


def test_a_publish_token_for_one_repository_cannot_publish_to_the_other(
    estate: Estate, tmp_path: Path
) -> None:
    tools = Tools(tmp_path)
    app = estate.token(APP_CI, "publish", estate.default)
    vault = estate.token(VAULT_CI, "publish", estate.other)
    tools.secrets += [app["token"], vault["token"]]
    assert app["upload_url"] != vault["upload_url"]
    app_wheel = build_wheel(tmp_path / "dist", "acme-tool", "1.0.0", summary="acme's tool")
    vault_wheel = build_wheel(tmp_path / "dist", "acme-vault-keys", "1.0.0", summary="keys")

    into_vault = tools.twine_upload(vault["upload_url"], app["token"], app_wheel)
    assert not into_vault.ok
    assert "403 Forbidden" in into_vault.output
    into_default = tools.twine_upload(app["upload_url"], vault["token"], vault_wheel)
    assert not into_default.ok
    assert "403 Forbidden" in into_default.output
    # Each token still publishes where its grant points.
    assert tools.twine_upload(app["upload_url"], app["token"], app_wheel).ok
    assert tools.twine_upload(vault["upload_url"], vault["token"], vault_wheel).ok


def test_the_demo_story_holds_in_the_environment(estate: Estate) -> None:
    """`DEVSTACK_ENV=NAME make demo` tells the same story: publish, install, the refusals, the
    guard against a public package with an internal name (in `existing`, the estate's own)."""
    from devstack.demo import run_story

    told: list[str] = []
    assert run_story(estate.running, told.append), "\n".join(told)
