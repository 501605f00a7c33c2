"""One devstack for the end-to-end tests, started in this process and stopped at the end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.stack import Devstack, Options
from devstack.tools import Devstack as Running
from devstack.tools import Tools


@pytest.fixture(scope="session")
def devstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    work = tmp_path_factory.mktemp("devstack")
    options = Options(
        state_file=work / "state.json",
        work_dir=work,
        broker_log=work / "broker.log",
        watch_rules=False,
    )
    stack = Devstack(options)
    try:
        yield Running(stack.start())
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Tools:
    return Tools(tmp_path_factory.mktemp("tools"))


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dist")
