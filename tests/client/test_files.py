"""cabroker.files: each writer changes only its own entry (exact bytes), the ledger undoes
exactly what login wrote (byte for byte, mode included; only our entry once the user changed
the file), concurrent logins keep a valid ledger, nothing is written into a project, and pip,
twine, uv and Python's netrc read what was written."""

from __future__ import annotations

import errno
import json
import multiprocessing
import netrc as netrc_module
import os
import stat
import sys
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote

import pytest
from twine.utils import get_repository_from_config

from cabroker import entries, files
from cabroker.errors import FilesError
from cabroker.ledger import Action, Ledger, RestoreIncomplete
from cabroker.outputs import index_url_with_credentials
from cabroker.secret import Secret
from tests.client.test_outputs import (
    HOST,
    TOKEN,
    UPLOAD_URL,
    VENV_BIN,
    AuthIndex,
    make_grant,
    redact,
    run,
)
from tests.devstack.test_wheels import tool_env

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes and flock")

GRANT = make_grant("publish")
URL = index_url_with_credentials(GRANT)  # https://aws:<encoded token>@HOST/pypi/internal/simple/
OTHER_TOKEN = Secret("eyJvdGhlciI6MX0.second+token")


def redacted(data: bytes) -> str:
    text = data.decode("utf-8", "replace")
    for token in (TOKEN, OTHER_TOKEN):
        text = redact(text, token)
    return text


def fill(template: bytes) -> bytes:
    """Expected bytes from a template: ``<URL>`` (index URL with credentials), ``<TOKEN>``.

    Test parameters hold templates, so a failure report (which shows them) has no token."""
    return template.replace(b"<URL>", URL.encode()).replace(b"<TOKEN>", TOKEN.encode())


def fail(message: str) -> NoReturn:
    raise AssertionError(message)


def assert_bytes(actual: bytes | None, expected: bytes | None) -> None:
    """``actual`` is exactly ``fill(expected)``. The failure is raised one frame down, so
    pytest's report (which shows the arguments of the frame that raised) has no token."""
    expected = None if expected is None else fill(expected)
    if actual != expected:
        shown = [None if data is None else redacted(data) for data in (actual, expected)]
        fail(f"bytes differ:\nactual:   {shown[0]!r}\nexpected: {shown[1]!r}")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- pip.conf -----------------------------------------------------------------------------------

PIP_LINE = b"index-url = <URL>\n"


@pytest.mark.parametrize("current", [None, b""], ids=["absent", "empty"])
def test_pip_conf_new(current: bytes | None) -> None:
    assert_bytes(entries.pip_conf(current, GRANT), b"[global]\n" + PIP_LINE)


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        pytest.param(
            b"# mine\n[global]\ntimeout = 60\n\n# installs\n[install]\nno-compile = true\n",
            b"# mine\n[global]\ntimeout = 60\n" + PIP_LINE + b"\n# installs\n[install]\n"
            b"no-compile = true\n",
            id="added at the end of [global], before the next section's comment",
        ),
        pytest.param(
            b"[global]\nINDEX_URL = https://old/simple/\n  continued\ntimeout=5\n",
            b"[global]\n" + PIP_LINE + b"timeout=5\n",
            id="pip's spelling variants and continuation lines replaced",
        ),
        pytest.param(
            b"[install]\nuser = true",
            b"[install]\nuser = true\n\n[global]\n" + PIP_LINE,
            id="section appended to a file without a final newline",
        ),
        pytest.param(
            b"[global]\r\ntimeout = 60\r\n",
            b"[global]\r\ntimeout = 60\r\n" + PIP_LINE.replace(b"\n", b"\r\n"),
            id="CRLF kept",
        ),
        pytest.param(
            b"[global]\nextra = \xff\xfe\n",
            b"[global]\nextra = \xff\xfe\n" + PIP_LINE,
            id="undecodable bytes kept",
        ),
    ],
)
def test_pip_conf_keeps_every_other_byte(current: bytes, expected: bytes) -> None:
    assert_bytes(entries.pip_conf(current, GRANT), expected)


def test_pip_conf_path_per_platform(tmp_path: Path) -> None:
    home = tmp_path
    env = {"HOME": str(home), "PIP_CONFIG_FILE": "/ignored", "APPDATA": "C:/Users/u/AppData"}
    linux = files.pip_conf_path(environ=env, platform="linux")
    assert linux == home / ".config" / "pip" / "pip.conf"
    xdg = files.pip_conf_path(environ={**env, "XDG_CONFIG_HOME": "/x"}, platform="linux")
    assert xdg == Path("/x/pip/pip.conf")
    blank = files.pip_conf_path(environ={**env, "XDG_CONFIG_HOME": " "}, platform="linux")
    assert blank == linux
    assert files.pip_conf_path(environ=env, platform="darwin") == linux
    native = home / "Library" / "Application Support" / "pip"
    native.mkdir(parents=True)
    assert files.pip_conf_path(environ=env, platform="darwin") == native / "pip.conf"
    windows = files.pip_conf_path(environ=env, platform="win32", home=home)
    assert windows == Path("C:/Users/u/AppData") / "pip" / "pip.ini"


def test_pip_config_list_shows_the_written_index_url(home: Path, ledger: Ledger) -> None:
    path = files.write_pip_conf(ledger, GRANT, files.pip_conf_path(environ={"HOME": str(home)}))
    assert path == home / ".config" / "pip" / "pip.conf"
    env = tool_env(home)
    del env["PIP_CONFIG_FILE"]
    listed = run([sys.executable, "-m", "pip", "config", "list"], env)  # tokens blanked out
    assert listed.returncode == 0, listed.output
    assert f"global.index-url='{redact(URL)}'" in listed.output, listed.output


def test_pip_authenticates_with_the_written_config(
    auth_index: tuple[AuthIndex, str], home: Path, ledger: Ledger
) -> None:
    app, url = auth_index
    grant = make_grant(index_url=f"{url}/simple/")
    files.write_pip_conf(ledger, grant, files.pip_conf_path(environ={"HOME": str(home)}))
    env = {**tool_env(home), "PIP_NO_CACHE_DIR": "1"}
    del env["PIP_CONFIG_FILE"]
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(home / "dl")]
    done = run([*pip, "tinyjson"], env)
    assert done.returncode == 0, done.output
    assert app.authenticated, app.requests


# --- .pypirc ------------------------------------------------------------------------------------

SECTION = (
    f"[codeartifact]\nrepository = {UPLOAD_URL}\nusername = aws\npassword = <TOKEN>\n".encode()
)
SERVERS = b"[distutils]\nindex-servers =\n    pypi\n    testpypi\n    codeartifact\n"


@pytest.mark.parametrize("current", [None, b""], ids=["absent", "empty"])
def test_pypirc_new_keeps_twines_default_servers(current: bytes | None) -> None:
    assert_bytes(entries.pypirc(current, GRANT), SERVERS + b"\n" + SECTION)


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        pytest.param(
            b"[distutils]\nindex-servers = pypi\n\n# tokens\n[pypi]\nusername = __token__\n",
            b"[distutils]\nindex-servers = pypi\n    codeartifact\n\n# tokens\n[pypi]\n"
            b"username = __token__\n\n" + SECTION,
            id="added to index-servers, section appended",
        ),
        pytest.param(
            b"[distutils]\nindex-servers =\n  pypi\n  codeartifact\n\n[codeartifact]\n"
            b"repository = https://old/\nusername = aws\npassword = old\n\n# next\n[pypi]\n",
            b"[distutils]\nindex-servers =\n  pypi\n  codeartifact\n\n" + SECTION + b"\n# next\n"
            b"[pypi]\n",
            id="our old section replaced in place, listed once",
        ),
        pytest.param(
            b"[distutils]\n  index-servers = pypi\n[pypi]\n",
            b"[distutils]\n  index-servers = pypi\n      codeartifact\n[pypi]\n\n" + SECTION,
            id="continuation deeper than an indented option",
        ),
        pytest.param(
            b"[pypi]\nusername = __token__",
            b"[pypi]\nusername = __token__\n\n" + SERVERS + b"\n" + SECTION,
            id="no distutils: twine's defaults kept",
        ),
    ],
)
def test_pypirc_keeps_every_other_byte(current: bytes, expected: bytes) -> None:
    assert_bytes(entries.pypirc(current, GRANT), expected)


def test_twine_reads_the_written_pypirc(home: Path, ledger: Ledger) -> None:
    original = b"[testpypi]\nusername = __token__\n"
    (home / ".pypirc").write_bytes(original)
    path = files.write_pypirc(ledger, GRANT, path=home / ".pypirc")
    config = get_repository_from_config(str(path), "codeartifact")
    assert config["repository"] == UPLOAD_URL
    assert config["username"] == "aws"
    same = config["password"] == TOKEN
    assert same, "twine read another password"
    assert get_repository_from_config(str(path), "testpypi")["username"] == "__token__"


# --- netrc --------------------------------------------------------------------------------------

MACHINE = f"machine {HOST} login aws password <TOKEN>".encode()


@pytest.mark.parametrize("current", [None, b""], ids=["absent", "empty"])
def test_netrc_new(current: bytes | None) -> None:
    assert_bytes(entries.netrc(current, GRANT), MACHINE + b"\n")


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        pytest.param(
            b"# mine\nmachine a.example login x password y\n",
            b"# mine\nmachine a.example login x password y\n" + MACHINE + b"\n",
            id="appended",
        ),
        pytest.param(
            b"machine a login x password y\nmacdef init\ncd /\n\ndefault login anonymous\n",
            b"machine a login x password y\nmacdef init\ncd /\n\n" + MACHINE + b"\n"
            b"default login anonymous\n",
            id="before default, macro body untouched",
        ),
        pytest.param(
            f'machine a login x password y\nmachine {HOST}\n  login old\n  password "o ld"'
            " # note\nmachine b login p password q".encode(),
            b"machine a login x password y\n" + MACHINE + b" # note\nmachine b login p password q",
            id="our host's multi-line entry replaced in place",
        ),
        pytest.param(
            f"machine {HOST} login aws password old1\nmachine z login p password q\n"
            f"machine {HOST} login aws password old2\n".encode(),
            MACHINE + b"\nmachine z login p password q\n",
            id="later duplicates for our host removed (Python's netrc uses the last)",
        ),
        pytest.param(
            b"machine a login x password y",
            b"machine a login x password y\n" + MACHINE + b"\n",
            id="no final newline",
        ),
    ],
)
def test_netrc_keeps_every_other_byte(current: bytes, expected: bytes) -> None:
    assert_bytes(entries.netrc(current, GRANT), expected)


def test_python_netrc_reads_the_written_file(home: Path, ledger: Ledger) -> None:
    path = home / ".netrc"
    path.write_bytes(b"machine a login x password y\ndefault login anonymous password z\n")
    path.chmod(0o644)
    files.write_netrc(ledger, GRANT, path)
    assert mode_of(path) == 0o600
    parsed = netrc_module.netrc(str(path))
    same = parsed.authenticators(HOST) == ("aws", "", TOKEN)
    assert same, "netrc read other credentials"
    assert parsed.authenticators("a") == ("x", "", "y")


def test_netrc_refuses_a_token_it_cannot_hold() -> None:
    with pytest.raises(FilesError, match="netrc"):
        entries.netrc(None, make_grant(token="has space"))


def test_netrc_path_honours_the_netrc_variable(home: Path) -> None:
    assert files.netrc_path(environ={"HOME": str(home)}) == home / ".netrc"
    assert files.netrc_path(environ={"HOME": str(home), "NETRC": "/x/n"}) == Path("/x/n")


def test_uv_reads_the_docker_secret_as_netrc(
    auth_index: tuple[AuthIndex, str], home: Path, ledger: Ledger, tmp_path: Path
) -> None:
    app, url = auth_index
    grant = make_grant(index_url=f"{url}/simple/")
    secret = files.write_docker_secret(ledger, grant, tmp_path / "build" / "netrc")
    assert mode_of(secret) == 0o600
    requirements = home / "requirements.in"
    requirements.write_text("tinyjson\n")
    env = {**tool_env(home), "NETRC": str(secret), "UV_DEFAULT_INDEX": f"ca={url}/simple/"}
    uv = [str(VENV_BIN / "uv"), "pip", "compile", str(requirements), "--python", sys.executable]
    done = run(uv, env)
    assert done.returncode == 0, done.output
    # uv asks without credentials first and answers the 401 from the netrc.
    assert any(ok for _, _, ok in app.requests), app.requests


# --- the ledger: login, login again, logout -----------------------------------------------------


def test_login_twice_then_logout_restores_the_original_bytes_and_mode(
    home: Path, ledger: Ledger
) -> None:
    path = home / ".config" / "pip" / "pip.conf"
    path.parent.mkdir(parents=True)
    original = b"# my config\r\n[global]\r\nindex-url = https://mirror.example/simple/\r\n"
    path.write_bytes(original)
    path.chmod(0o644)
    files.write_pip_conf(ledger, GRANT, path)
    assert mode_of(path) == 0o600
    files.write_pip_conf(ledger, make_grant(token=OTHER_TOKEN), path)
    second = quote(OTHER_TOKEN, safe="").encode() in path.read_bytes()
    assert second, "the second login's token is not in the file"
    assert ledger.paths() == [path]
    outcomes = ledger.restore()
    assert [(o.path, o.action) for o in outcomes] == [(path, Action.RESTORED)]
    assert_bytes(path.read_bytes(), original)
    assert mode_of(path) == 0o644
    assert ledger.paths() == []
    assert not ledger.path.exists()


def test_logout_deletes_a_file_login_created_and_its_new_directories(
    home: Path, ledger: Ledger
) -> None:
    path = files.pip_conf_path(environ={"HOME": str(home)})
    files.write_pip_conf(ledger, GRANT, path)
    files.write_pip_conf(ledger, GRANT, path)
    outcomes = ledger.restore()
    assert [o.action for o in outcomes] == [Action.DELETED]
    assert not path.exists()
    assert not (home / ".config").exists()
    assert ledger.restore() == []


def test_logout_after_the_user_edited_removes_only_ours(home: Path, ledger: Ledger) -> None:
    path = home / ".config" / "pip" / "pip.conf"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"[global]\nindex-url = https://mirror/simple/\ntimeout = 5\n")
    files.write_pip_conf(ledger, GRANT, path)
    with path.open("ab") as handle:
        handle.write(b"\n[install]\nuser = true\n")
    outcomes = ledger.restore()
    assert [o.action for o in outcomes] == [Action.REMOVED_ENTRIES]
    assert "changed since login" in outcomes[0].detail
    assert_bytes(
        path.read_bytes(),
        b"[global]\nindex-url = https://mirror/simple/\ntimeout = 5\n\n[install]\nuser = true\n",
    )


def test_logout_after_edits_of_a_created_pypirc_removes_section_and_server(
    home: Path, ledger: Ledger
) -> None:
    path = home / ".pypirc"
    files.write_pypirc(ledger, GRANT, path=path)
    text = path.read_bytes().replace(b"    codeartifact\n", b"    codeartifact\n    mine\n")
    path.write_bytes(text + b"\n[mine]\nrepository = https://mine/\n")
    outcomes = ledger.restore()
    assert [o.action for o in outcomes] == [Action.REMOVED_ENTRIES]
    assert_bytes(
        path.read_bytes(),
        b"[distutils]\nindex-servers =\n    pypi\n    testpypi\n    mine\n\n"
        b"[mine]\nrepository = https://mine/\n",
    )


def test_logout_after_edits_of_a_netrc_puts_back_the_users_old_entry(
    home: Path, ledger: Ledger
) -> None:
    path = home / ".netrc"
    path.write_bytes(f"machine {HOST} login me password mine\n".encode())
    files.write_netrc(ledger, GRANT, path)
    with path.open("ab") as handle:
        handle.write(b"machine other login a password b\n")
    assert [o.action for o in ledger.restore()] == [Action.REMOVED_ENTRIES]
    assert_bytes(
        path.read_bytes(),
        f"machine {HOST} login me password mine\nmachine other login a password b\n".encode(),
    )


def test_logout_leaves_a_file_whose_entry_the_user_changed(home: Path, ledger: Ledger) -> None:
    path = home / ".netrc"
    files.write_netrc(ledger, GRANT, path)
    edited = f"machine {HOST} login me password mine\n".encode()  # no longer aws: theirs
    path.write_bytes(edited)
    outcomes = ledger.restore()
    assert [o.action for o in outcomes] == [Action.LEFT]
    assert "you changed" in outcomes[0].detail
    assert_bytes(path.read_bytes(), edited)
    assert ledger.paths() == []


def test_logout_of_a_file_deleted_since_reports_it(home: Path, ledger: Ledger) -> None:
    path = home / ".netrc"
    files.write_netrc(ledger, GRANT, path)
    path.unlink()
    assert [o.action for o in ledger.restore()] == [Action.MISSING]
    assert not path.exists()


def test_edits_between_two_logins_survive_logout(home: Path, ledger: Ledger) -> None:
    path = home / ".config" / "pip" / "pip.conf"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"[global]\ntimeout = 5\n")
    files.write_pip_conf(ledger, GRANT, path)
    path.write_bytes(path.read_bytes() + b"retries = 2\n")
    files.write_pip_conf(ledger, make_grant(token=OTHER_TOKEN), path)
    assert [o.action for o in ledger.restore()] == [Action.RESTORED]
    assert_bytes(path.read_bytes(), b"[global]\ntimeout = 5\nretries = 2\n")


def test_logout_never_touches_a_file_the_ledger_does_not_name(home: Path, ledger: Ledger) -> None:
    ours = home / ".netrc"
    theirs = home / ".pypirc"
    theirs.write_bytes(fill(SECTION))  # even with content that looks like ours
    files.write_netrc(ledger, GRANT, ours)
    ledger.restore()
    assert_bytes(theirs.read_bytes(), SECTION)
    assert not ours.exists()


def test_ledger_is_private_and_holds_no_token(home: Path, ledger: Ledger) -> None:
    files.write_netrc(ledger, GRANT, home / ".netrc")
    files.write_pypirc(ledger, GRANT, path=home / ".pypirc")
    assert mode_of(ledger.path) == 0o600
    text = ledger.path.read_text()
    private = TOKEN not in text
    assert private, "the ledger holds the token"
    document = json.loads(text)
    record = document["files"][str(home / ".netrc")]
    assert record["existed"] is False
    assert [(e["kind"], e["name"]) for e in record["entries"]] == [("netrc-machine", HOST)]


# --- errors -------------------------------------------------------------------------------------


def test_os_errors_become_files_errors(
    home: Path, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    (home / "afile").write_text("")
    with pytest.raises(FilesError, match=r"cannot write .*afile/netrc \(Not a directory\)"):
        files.write_netrc(ledger, GRANT, home / "afile" / "netrc")

    def full(source: str, target: str, **dir_fds: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(FilesError, match=r"cannot write .*\.netrc \(No space left on device\)"):
        files.write_netrc(ledger, GRANT, home / ".netrc")
    monkeypatch.undo()
    assert sorted(path.name for path in home.iterdir()) == [".local", "afile"], "no temp file"
    assert ledger.paths() == []


def test_a_damaged_ledger_is_refused_not_overwritten(home: Path, ledger: Ledger) -> None:
    ledger.path.parent.mkdir(parents=True)
    ledger.path.write_text("{not json")
    with pytest.raises(FilesError, match="damaged"):
        files.write_netrc(ledger, GRANT, home / ".netrc")
    with pytest.raises(FilesError, match="damaged"):
        ledger.restore()
    assert ledger.path.read_text() == "{not json"
    assert not (home / ".netrc").exists()


def test_a_file_that_cannot_be_restored_stays_in_the_ledger(home: Path, ledger: Ledger) -> None:
    path = home / "sub" / "netrc"
    files.write_docker_secret(ledger, GRANT, path)
    (home / "sub").rename(home / "moved")
    (home / "sub").write_text("now a file")
    with pytest.raises(RestoreIncomplete) as caught:
        ledger.restore()
    assert [o.action for o in caught.value.outcomes] == [Action.FAILED]
    assert ledger.paths() == [path]
    (home / "sub").unlink()
    (home / "moved").rename(home / "sub")
    assert [o.action for o in ledger.restore()] == [Action.DELETED]


def _login_repeatedly(ledger_path: str, home: str, shared: str, own: str, rounds: int) -> None:
    ledger = Ledger(Path(ledger_path), home=Path(home))
    for round_ in range(rounds):
        grant = make_grant(token=f"tok-{Path(own).name}-{round_}")
        files.write_netrc(ledger, grant, Path(shared))
        files.write_pip_conf(ledger, grant, Path(own))


def test_concurrent_logins_keep_a_valid_ledger(home: Path, ledger: Ledger) -> None:
    shared = home / ".netrc"
    original = b"machine keep login me password mine\n"
    shared.write_bytes(original)
    own = [home / f"pip-{index}.conf" for index in range(4)]
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(
            target=_login_repeatedly, args=(str(ledger.path), str(home), str(shared), str(p), 8)
        )
        for p in own
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert [worker.exitcode for worker in workers] == [0] * len(workers)
    assert sorted(ledger.paths()) == sorted([shared, *own])
    text = shared.read_text()
    ours = text.count(f"machine {HOST} ")
    assert ours == 1, "one entry for our host, whoever wrote last"
    kept = text.startswith("machine keep login me password mine\n")
    assert kept, "the user's entry is kept first"
    outcomes = ledger.restore()
    assert sorted(o.action for o in outcomes) == sorted(
        [Action.RESTORED, *[Action.DELETED] * len(own)]
    )
    assert_bytes(shared.read_bytes(), original)
    assert not any(path.exists() for path in own)
