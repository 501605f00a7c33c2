"""cabroker.logins: interactive logins kept for reuse, as safely as tokens, per broker and
issuer, until they expire; and ``logout`` forgets them."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest

from cabroker import cli
from cabroker.cache import FileStore, KeyringStore
from cabroker.logins import LOGINS_FILE, Logins
from tests.client.test_cache import WindowsLikeKeyring

BROKER = "https://broker.example.com"
OTHER = "https://other-broker.example.com"
ID_TOKEN = "eyJhbGciOiJSUzI1NiJ9.e30." + "s" * 40  # the shape only; never printed


@pytest.fixture
def logins(tmp_path: Path) -> Logins:
    return Logins(FileStore(tmp_path / "cabroker" / LOGINS_FILE))


def test_a_login_is_kept_per_broker_and_issuer(logins: Logins) -> None:
    later = time.time() + 600
    logins.put(BROKER + "/", "corp", ID_TOKEN, later)
    assert logins.get(BROKER) == ("corp", ID_TOKEN)
    assert logins.get(BROKER, "corp") == ("corp", ID_TOKEN)
    assert logins.get(BROKER, "okta") is None
    assert logins.get(OTHER) is None, "a login is for its broker only"
    logins.put(BROKER, "okta", ID_TOKEN + "2", later + 60)
    assert logins.get(BROKER) == ("okta", ID_TOKEN + "2")  # the one that expires last
    assert logins.get(BROKER, "corp") == ("corp", ID_TOKEN)


def test_an_expired_login_is_never_returned_and_dropped_on_write(logins: Logins) -> None:
    logins.put(BROKER, "corp", ID_TOKEN, time.time() + 600)
    logins.put(BROKER, "okta", ID_TOKEN + "2", time.time() - 1)
    assert logins.get(BROKER, "okta") is None
    assert isinstance(logins.store, FileStore)
    assert ID_TOKEN + "2" not in logins.store.path.read_text()


def test_the_file_is_private(logins: Logins) -> None:
    logins.put(BROKER, "corp", ID_TOKEN, time.time() + 600)
    assert isinstance(logins.store, FileStore)
    assert stat.S_IMODE(logins.store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(logins.store.path.parent.stat().st_mode) == 0o700


def test_clear_forgets_every_login(logins: Logins) -> None:
    logins.put(BROKER, "corp", ID_TOKEN, time.time() + 600)
    logins.clear()
    assert logins.get(BROKER) is None


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param({"issuer": "corp", "id_token": ID_TOKEN}, id="no expiry"),
        pytest.param({"issuer": "corp", "id_token": ID_TOKEN, "expires": "soon"}, id="odd expiry"),
        pytest.param({"issuer": "corp", "id_token": ID_TOKEN, "expires": True}, id="bool expiry"),
        pytest.param({"issuer": 5, "id_token": ID_TOKEN, "expires": 9e9}, id="odd issuer"),
    ],
)
def test_an_unreadable_entry_is_no_login(logins: Logins, entry: dict[str, object]) -> None:
    logins.store.write({f'["{BROKER}","corp"]': entry}, {})
    assert logins.get(BROKER) is None


@pytest.mark.parametrize("key", ["not json", "[]", "[5]", '{"a": 1}'])
def test_an_odd_key_is_no_login(logins: Logins, key: str) -> None:
    good = {"issuer": "corp", "id_token": ID_TOKEN, "expires": time.time() + 600}
    logins.store.write({key: good}, {})
    assert logins.get(BROKER) is None


def test_a_login_too_big_for_the_keyring_is_kept_in_the_file(tmp_path: Path) -> None:
    windows = WindowsLikeKeyring()
    store = KeyringStore(
        windows, tmp_path, item_limit=2560, service="cabroker-login", spill_name=LOGINS_FILE
    )
    logins = Logins(store)
    big = ID_TOKEN + "x" * 2000  # Entra ID tokens run to a few kilobytes
    logins.put(BROKER, "corp", big, time.time() + 600)
    assert logins.get(BROKER) == ("corp", big)
    assert windows.refused == 0
    assert big not in "".join(windows.items.values())
    assert stat.S_IMODE((tmp_path / LOGINS_FILE).stat().st_mode) == 0o600
    assert all(service == "cabroker-login" for service, _ in windows.items)


def test_logout_forgets_the_logins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CABROKER_TOKEN_STORE", "file")
    Logins.default().put(BROKER, "corp", ID_TOKEN, time.time() + 600)
    assert cli.main(["logout"]) == 0
    assert Logins.default().get(BROKER) is None


def test_a_login_is_kept_with_the_scopes_it_asked_for(logins: Logins) -> None:
    logins.put(BROKER, "corp", ID_TOKEN, time.time() + 600, ("openid", "groups"))
    assert logins.get(BROKER, "corp", ("openid", "groups")) == ("corp", ID_TOKEN)
    assert logins.get(BROKER, "corp") == ("corp", ID_TOKEN)  # no scopes asked for: any
    assert logins.get(BROKER, "corp", ("openid",)) is None
    assert logins.get(BROKER, "corp", ()) is None
