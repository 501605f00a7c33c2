"""The shared token cache and the replay guard on the devstack: the template's DynamoDB table
and KMS key (moto), the broker's workers standing in for warm Lambda instances."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest

from devstack.demo import CI_CLAIMS
from devstack.provision import admin_session
from devstack.stack import REGION, Devstack, Options
from devstack.tools import Devstack as Running
from tests.support.moto_atomic import AtomicItems


def table_items(devstack: Running) -> list[dict[str, Any]]:
    """The items of this devstack's CacheTable (moto's state is shared by every devstack
    started in this process; each deploys under its own stack name)."""
    session: boto3.session.Session = admin_session(REGION)
    dynamodb = session.client("dynamodb", endpoint_url=devstack.state["aws_endpoint_url"])
    stack = str(devstack.state["rules_parameter"]).split("/")[2]  # /cabroker/<stack>/rules
    (table,) = [
        name
        for name in dynamodb.list_tables()["TableNames"]
        if name.startswith(f"{stack}-CacheTable-")
    ]
    return [dict(item) for item in dynamodb.scan(TableName=table)["Items"]]


@pytest.fixture
def atomic_items(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's item writes take turns, as DynamoDB's do (tests/support/moto_atomic.py): moto's
    server runs on threads of this process, and without it two workers could both find the
    lease free and both mint on a loaded machine."""
    AtomicItems().install(monkeypatch)


@pytest.mark.usefixtures("atomic_items")
def test_a_burst_over_the_workers_mints_one_token_per_pipeline(devstack: Running) -> None:
    claims = {**CI_CLAIMS, "sub": "repo:acme/burst:ref:refs/heads/main", "repository": "acme/burst"}
    id_tokens = [devstack.id_token("github", claims) for _ in range(8)]

    def ask(id_token: str) -> str:
        status, body = devstack.broker("POST", "/v1/token", id_token, {"access": "publish"})
        assert status == 200, body.get("detail")
        return str(body["token"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        tokens = set(pool.map(ask, id_tokens))
    # Two workers, each with an empty memory: without the shared cache each would mint.
    assert len(tokens) == 1
    (token,) = tokens
    stored = [item for item in table_items(devstack) if "sealed" in item]
    assert stored, "no token in the shared table"
    assert all(token.encode() not in repr(item).encode() for item in stored)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    work: Path = tmp_path_factory.mktemp("guarded")
    options = Options(
        state_file=work / "state.json",
        work_dir=work,
        broker_log=work / "broker.log",
        watch_rules=False,
        instances=1,
        parameters={"ReplayGuard": "Enabled", "SharedTokenCache": "PerGrant"},
    )
    stack = Devstack(options)
    try:
        yield Running(stack.start())
    finally:
        stack.stop()


def test_with_the_replay_guard_an_id_token_mints_once(guarded: Running) -> None:
    id_token = guarded.id_token("github", CI_CLAIMS)
    status, first = guarded.broker("POST", "/v1/token", id_token, {"access": "publish"})
    assert status == 200, first.get("detail")
    status, body = guarded.broker("POST", "/v1/token", id_token, {"access": "publish"})
    assert (status, body["type"]) == (401, "urn:cabroker:problem:invalid-token")
    assert "used already" in body["detail"]
    assert guarded.broker("GET", "/v1/grants", id_token)[0] == 200
    # a fresh ID token from another pipeline: per-grant sharing hands it the same token
    other = guarded.id_token("github", {**CI_CLAIMS, "sub": "repo:acme/other:ref:x"})
    status, again = guarded.broker("POST", "/v1/token", other, {"access": "publish"})
    assert status == 200
    assert again["token"] == first["token"]
