"""Where a token may be written, and how: never inside a project, a git work tree or a container
build context unless the user overrides it; never through a symbolic link, nor in a directory
someone else can write, at login or at logout.

Every refused case asserts that nothing was written (the link's target, the directory) and
that the ledger names nothing: each check has a case that fails when the check is removed."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cabroker import files, placement, safeio
from cabroker.errors import FilesError
from cabroker.ledger import Action, Ledger, RestoreIncomplete
from tests.client.test_outputs import HOST, make_grant

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX links and modes")

GRANT = make_grant("publish")
ROOT = os.geteuid() == 0
NOBODY = 65534
as_root = pytest.mark.skipif(not ROOT, reason="needs root to give a file to another user")


GIT = shutil.which("git") or "git"
KEPT = f"machine {HOST} login aws password kept\n".encode()


def git(*args: str, cwd: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run([GIT, *args], cwd=cwd, env=env, check=True, capture_output=True)


def refused(ledger: Ledger, target: Path, match: str, **options: bool) -> FilesError:
    """Writing the Docker secret ``target`` is refused (``match``), nothing is written."""
    with pytest.raises(FilesError, match=match) as caught:
        files.write_docker_secret(ledger, GRANT, target, **options)
    assert "\n" not in str(caught.value), "one line"
    assert not os.path.lexists(target)
    assert ledger.paths() == []
    return caught.value


# --- projects, build contexts, git work trees ---------------------------------------------------

PROJECT = [
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "Pipfile",
    "Pipfile.lock",
    "poetry.lock",
    "pdm.lock",
    "uv.lock",
    "pylock.toml",
    "pylock.dev.toml",
    "requirements.txt",
    "requirements-dev.txt",
]
BUILD = [
    "Dockerfile",
    "Dockerfile.prod",
    "app.Dockerfile",
    "dockerfile",
    "Containerfile",
    ".dockerignore",
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
]
NOT_MARKERS = [
    "README.md",
    "requirements.in",
    "pylock.txt",
    "mypylock.toml",
    "setup.sh",
    "Makefile",
    ".dockerenv",
    "docker-notes.md",
    "composer.json",
]


@pytest.mark.parametrize(
    ("marker", "kind"),
    [(m, "a Python project") for m in PROJECT] + [(m, "a container build context") for m in BUILD],
)
@pytest.mark.parametrize("depth", [0, 2], ids=["in-its-directory", "two-levels-up"])
def test_a_marker_in_the_directory_or_above_refuses_the_write(
    home: Path, ledger: Ledger, marker: str, kind: str, depth: int
) -> None:
    project = home / "work" / "app"
    directory = project.joinpath(*["sub"] * depth)
    directory.mkdir(parents=True)
    (project / marker).write_text("")
    refused(ledger, directory / "netrc", f"holds {marker}, so it is {kind}, .*--allow-project-dir")


@pytest.mark.parametrize("name", NOT_MARKERS)
def test_other_files_do_not_count(home: Path, ledger: Ledger, name: str) -> None:
    directory = home / "work" / "app"
    directory.mkdir(parents=True)
    (directory / name).write_text("")
    assert files.write_docker_secret(ledger, GRANT, directory / "netrc").exists()


@pytest.mark.parametrize("marker", ["requirements.txt", "Dockerfile"])
def test_the_home_directory_is_no_exception(home: Path, ledger: Ledger, marker: str) -> None:
    (home / marker).write_text("")
    with pytest.raises(FilesError, match=f"holds {marker}"):
        files.write_netrc(ledger, GRANT, home / ".netrc")
    assert not (home / ".netrc").exists()


def test_a_marker_reached_through_a_link_counts(home: Path, ledger: Ledger) -> None:
    project = home / "work" / "app"
    (project / "secrets").mkdir(parents=True)
    (project / "Dockerfile").write_text("")
    (home / "secrets").symlink_to(project / "secrets")
    refused(ledger, home / "secrets" / "netrc", "holds Dockerfile")
    assert not (project / "secrets" / "netrc").exists()


def test_a_git_work_tree_refuses_the_write(home: Path, ledger: Ledger) -> None:
    repository = home / "src" / "tool"
    (repository / "deploy").mkdir(parents=True)
    git("init", "-q", cwd=repository)
    refused(ledger, repository / "deploy" / "netrc", r"holds \.git, so it is in a git work tree")


def test_a_git_file_counts_too(home: Path, ledger: Ledger) -> None:
    """A linked work tree or a submodule has a ``.git`` file, not a directory."""
    checkout = home / "src" / "tool-feature"
    checkout.mkdir(parents=True)
    (checkout / ".git").write_text("gitdir: /elsewhere/.git/worktrees/feature\n")
    refused(ledger, checkout / "netrc", r"holds \.git")


def test_the_override_allows_every_marker(home: Path, ledger: Ledger) -> None:
    project = home / "src" / "app"
    project.mkdir(parents=True)
    git("init", "-q", cwd=project)
    for marker in [*PROJECT, *BUILD]:
        (project / marker).write_text("")
    for writer in (files.write_netrc, files.write_pip_conf):
        path = writer(ledger, GRANT, project / "conf", allow_project_dir=True)
        assert path == project / "conf"
    assert files.write_pypirc(ledger, GRANT, path=project / "rc", allow_project_dir=True).exists()
    secret = files.write_docker_secret(ledger, GRANT, project / "s", allow_project_dir=True)
    assert secret.exists()
    assert sorted(ledger.paths()) == sorted([project / "conf", project / "rc", project / "s"])
    ledger.restore()
    assert sorted(p.name for p in project.iterdir()) == sorted([".git", *PROJECT, *BUILD])


def test_the_override_does_not_allow_a_link(home: Path, ledger: Ledger) -> None:
    (home / "real").write_text("")
    (home / "netrc").symlink_to(home / "real")
    with pytest.raises(FilesError, match="symbolic link"):
        files.write_docker_secret(ledger, GRANT, home / "netrc", allow_project_dir=True)
    assert (home / "real").read_text() == ""


# --- a home directory that is a dotfiles repository --------------------------------------------


@pytest.fixture
def dotfiles(home: Path) -> Path:
    git("init", "-q", cwd=home)
    (home / ".bashrc").write_text("# tracked\n")
    git("add", ".bashrc", cwd=home)
    return home


def test_untracked_dotfiles_in_a_home_git_work_tree_are_written(
    dotfiles: Path, ledger: Ledger
) -> None:
    assert files.write_netrc(ledger, GRANT, dotfiles / ".netrc").exists()
    assert files.write_pypirc(ledger, GRANT, path=dotfiles / ".pypirc").exists()
    pip = files.pip_conf_path(environ={"HOME": str(dotfiles)}, platform="linux")
    assert files.write_pip_conf(ledger, GRANT, pip).exists()


def test_a_dotfile_git_tracks_is_refused(dotfiles: Path, ledger: Ledger) -> None:
    (dotfiles / ".netrc").write_text("machine a login b password c\n")
    git("add", ".netrc", cwd=dotfiles)
    with pytest.raises(FilesError, match="git tracks this file"):
        files.write_netrc(ledger, GRANT, dotfiles / ".netrc")
    assert (dotfiles / ".netrc").read_text() == "machine a login b password c\n"
    assert ledger.paths() == []


def test_when_git_cannot_tell_a_dotfile_is_refused(
    dotfiles: Path, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(FilesError, match="git cannot tell"):
        files.write_netrc(ledger, GRANT, dotfiles / ".netrc")
    assert not (dotfiles / ".netrc").exists()


def test_in_a_home_git_work_tree_only_the_users_own_files_are_exempt(
    dotfiles: Path, ledger: Ledger
) -> None:
    (dotfiles / "build").mkdir()
    refused(ledger, dotfiles / "build" / "netrc", r"holds \.git")


def test_a_git_work_tree_below_home_is_no_exemption(home: Path, ledger: Ledger) -> None:
    config = home / ".config"
    config.mkdir()
    git("init", "-q", cwd=config)
    pip = files.pip_conf_path(environ={"HOME": str(home)}, platform="linux")
    with pytest.raises(FilesError, match=r"holds \.git"):
        files.write_pip_conf(ledger, GRANT, pip)
    assert not pip.exists()


# --- links --------------------------------------------------------------------------------------


def test_a_link_as_the_file_is_never_followed(home: Path, ledger: Ledger, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.write_bytes(b"machine a login x password y\n")
    (home / ".netrc").symlink_to(mine)
    with pytest.raises(FilesError, match="never writes through a link") as caught:
        files.write_netrc(ledger, GRANT, home / ".netrc")
    assert "\n" not in str(caught.value)
    assert (home / ".netrc").is_symlink(), "the link is not replaced either"
    assert mine.read_bytes() == b"machine a login x password y\n"
    assert ledger.paths() == []


def test_a_dangling_link_is_not_followed_either(home: Path, ledger: Ledger, tmp_path: Path) -> None:
    (home / "netrc").symlink_to(tmp_path / "created-through-the-link")
    with pytest.raises(FilesError, match="never writes through a link"):
        files.write_docker_secret(ledger, GRANT, home / "netrc")
    assert not (tmp_path / "created-through-the-link").exists()


def test_a_directory_link_of_the_user_is_followed(home: Path, ledger: Ledger) -> None:
    """A link the user made in their own directory (e.g. ``~/.config`` into a dotfiles
    checkout) is theirs: followed, and the ledger names the real path."""
    real = home / "dotfiles" / "config"
    real.mkdir(parents=True)
    (home / ".config").symlink_to(real)
    path = files.write_pip_conf(ledger, GRANT, home / ".config" / "pip" / "pip.conf")
    assert path == real / "pip" / "pip.conf"
    assert ledger.paths() == [path]


@as_root
def test_a_link_planted_in_a_shared_directory_is_not_followed(
    home: Path, ledger: Ledger, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    victim = home / "victim"
    victim.mkdir()
    (shared / "build").symlink_to(victim)
    os.lchown(shared / "build", NOBODY, NOBODY)  # planted by someone else
    refused(ledger, shared / "build" / "netrc", "someone else could have planted it")
    assert list(victim.iterdir()) == []


def test_the_link_rule_is_linuxs_protected_symlinks() -> None:
    me = os.geteuid()
    shared = os.stat_result((stat.S_IFDIR | 0o1777, 0, 0, 1, 0, 0, 0, 0, 0, 0))
    private = os.stat_result((stat.S_IFDIR | 0o700, 0, 0, 1, me, 0, 0, 0, 0, 0))
    other = NOBODY if me != NOBODY else 1
    theirs = os.stat_result((stat.S_IFLNK | 0o777, 0, 0, 1, other, 0, 0, 0, 0, 0))
    mine = os.stat_result((stat.S_IFLNK | 0o777, 0, 0, 1, me, 0, 0, 0, 0, 0))
    assert not safeio._may_follow(theirs, shared)
    assert safeio._may_follow(mine, shared)
    assert safeio._may_follow(theirs, private)


# --- directories others can write ---------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o703], ids=["world", "sticky-like-tmp", "o+w"])
def test_a_directory_everyone_can_write_is_refused(home: Path, ledger: Ledger, mode: int) -> None:
    shared = home / "shared"
    shared.mkdir()
    shared.chmod(mode)
    refused(ledger, shared / "netrc", "writable by every user.*choose a directory only you")


def test_a_private_directory_made_under_tmp_is_fine(ledger: Ledger, tmp_path: Path) -> None:
    assert files.write_docker_secret(ledger, GRANT, tmp_path / "new" / "netrc").exists()
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700


def test_a_group_writable_directory_of_ours_is_fine(home: Path, ledger: Ledger) -> None:
    """User-private groups make a group-writable home common: ours, so allowed."""
    home.chmod(0o770)
    assert files.write_netrc(ledger, GRANT, home / ".netrc").exists()


@as_root
@pytest.mark.parametrize(
    ("mode", "why"),
    [(0o775, "group-writable and owned by another user"), (0o755, "owned by another user")],
)
def test_a_directory_of_another_user_is_refused(
    home: Path, ledger: Ledger, mode: int, why: str
) -> None:
    theirs = home / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    theirs.chmod(mode)
    refused(ledger, theirs / "netrc", why)


@pytest.mark.parametrize(
    ("mode", "owner", "why"),
    [
        (0o777, "me", "is writable by every user"),
        (0o1777, "root", "is writable by every user (sticky, like /tmp)"),
        (0o770, "other", "is group-writable and owned by another user"),
        (0o755, "other", "is owned by another user"),
        (0o770, "me", None),
        (0o755, "root", None),
        (0o700, "me", None),
    ],
)
def test_who_can_write_a_directory(mode: int, owner: str, why: str | None) -> None:
    me = os.geteuid()
    uid = {"me": me, "root": 0, "other": NOBODY if me != NOBODY else 1}[owner]
    st = os.stat_result((stat.S_IFDIR | mode, 0, 0, 1, uid, 0, 0, 0, 0, 0))
    assert safeio.others_can_write(st) == why


# --- logout: a link planted after login ---------------------------------------------------------


def test_logout_does_not_follow_a_link_planted_as_the_file(
    home: Path, ledger: Ledger, tmp_path: Path
) -> None:
    path = home / ".netrc"
    files.write_netrc(ledger, GRANT, path)
    mine = tmp_path / "mine"
    mine.write_bytes(KEPT)
    path.unlink()
    path.symlink_to(mine)
    with pytest.raises(RestoreIncomplete) as caught:
        ledger.restore()
    assert [o.action for o in caught.value.outcomes] == [Action.FAILED]
    assert "never writes through a link" in caught.value.outcomes[0].detail
    assert path.is_symlink()
    assert mine.read_bytes() == KEPT
    assert ledger.paths() == [path], "still recorded: logout can run again once it is fixed"


def test_logout_does_not_follow_a_link_planted_in_the_files_path(
    home: Path, ledger: Ledger, tmp_path: Path
) -> None:
    secret = files.write_docker_secret(ledger, GRANT, home / "build" / "netrc")
    (home / "build").rename(home / "moved")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "netrc").write_bytes(KEPT)
    (home / "build").symlink_to(elsewhere)
    with pytest.raises(RestoreIncomplete) as caught:
        ledger.restore()
    assert "reached through a symbolic link" in caught.value.outcomes[0].detail
    assert (elsewhere / "netrc").read_bytes() == KEPT
    assert ledger.paths() == [secret]


def test_logout_refuses_a_directory_others_can_write_since(home: Path, ledger: Ledger) -> None:
    secret = files.write_docker_secret(ledger, GRANT, home / "build" / "netrc")
    before = secret.read_bytes()
    (home / "build").chmod(0o777)
    with pytest.raises(RestoreIncomplete) as caught:
        ledger.restore()
    assert "writable by every user" in caught.value.outcomes[0].detail
    assert secret.read_bytes() == before
    (home / "build").chmod(0o700)
    assert [o.action for o in ledger.restore()] == [Action.DELETED]


def test_placement_checks_name_the_file_and_the_marker(home: Path) -> None:
    (home / "app").mkdir()
    (home / "app" / "uv.lock").write_text("")
    with pytest.raises(FilesError) as caught:
        placement.check(home / "app" / "netrc", home=home)
    message = str(caught.value)
    assert message.startswith(f"refusing to write {home / 'app' / 'netrc'}: ")
    assert "uv.lock" in message
    assert "$RUNNER_TEMP" in message
