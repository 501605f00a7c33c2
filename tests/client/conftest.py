"""Fixtures shared by the client's tests: a local index that demands ``aws:<token>``; a home
directory and the ledger in it (modules may define their own ``home``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cabroker.ledger import Ledger
from devstack.public import build_public_index
from tests.client.test_outputs import AuthIndex, serving


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("public")
    build_public_index(directory)
    return directory


@pytest.fixture
def auth_index(wheels: Path) -> Iterator[tuple[AuthIndex, str]]:
    with serving(wheels) as served:
        yield served


@pytest.fixture(autouse=True)
def no_user_files(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No test reads or writes the real user's cache, logins or config: the fallback home
    (``Path.home()``) and the XDG directories point at a directory of the test's own."""
    own = tmp_path_factory.mktemp("user")
    monkeypatch.setenv("HOME", str(own))
    for name in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(name, str(own / name.lower()))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def ledger(home: Path) -> Ledger:
    return Ledger(home / ".local" / "state" / "cabroker" / "ledger.json", home=home)
