"""``cabroker login``'s file targets from the command line: a project, git work tree or build
context is refused (exit 7, one line) unless ``--allow-project-dir``; a link never is allowed;
``logout`` refuses a link planted after login."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cabroker import cli
from tests.client.test_cli import FakeBroker, broker, home, run, token_file

__all__ = ["broker", "home"]  # fixtures, used by name

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX links")


def login(broker: FakeBroker, home: Path) -> tuple[str, ...]:
    return ("login", "--broker-url", broker.url, "--id-token-file", str(token_file(home)))


def test_help_names_the_override(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["login", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--allow-project-dir" in text
    assert "git work tree" in text
    assert "build context" in text


def test_a_build_context_needs_the_override(
    broker: FakeBroker, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    context = home / "work" / "image"
    context.mkdir(parents=True)
    (context / "Dockerfile").write_text("FROM python:3.12\n")
    target = context / "netrc"
    code, _, err = run(capsys, *login(broker, home), "--docker-secret", str(target))
    assert code == 7
    assert err.count("\n") == 1, "one line"
    assert "a container build context" in err
    assert "--allow-project-dir" in err
    assert not target.exists()
    code, out, _ = run(
        capsys, *login(broker, home), "--docker-secret", str(target), "--allow-project-dir"
    )
    assert code == 0, out
    assert f"wrote {target}" in out
    assert run(capsys, "logout")[0] == 0
    assert not target.exists()


def test_a_git_work_tree_needs_the_override(
    broker: FakeBroker, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repository = home / "src" / "app"
    repository.mkdir(parents=True)
    (repository / ".git").mkdir()
    target = repository / "ci" / "netrc"
    code, _, err = run(capsys, *login(broker, home), "--docker-secret", str(target))
    assert code == 7
    assert "git work tree" in err
    assert not target.exists()


def test_a_link_is_refused_even_with_the_override(
    broker: FakeBroker, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = home / "elsewhere"
    real.write_text("machine a login b password c\n")
    (home / ".netrc").symlink_to(real)
    code, _, err = run(capsys, *login(broker, home), "--netrc", "--allow-project-dir")
    assert code == 7
    assert err.count("\n") == 1
    assert "symbolic link" in err
    assert real.read_text() == "machine a login b password c\n"


def test_logout_refuses_a_link_planted_after_login(
    broker: FakeBroker, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, *login(broker, home), "--netrc")[0] == 0
    real = home / "elsewhere"
    real.write_text("machine a login b password c\n")
    (home / ".netrc").unlink()
    (home / ".netrc").symlink_to(real)
    code, _, err = run(capsys, "logout")
    assert code == 7
    assert err.count("\n") == 1
    assert "symbolic link" in err
    assert "run logout again" in err
    assert real.read_text() == "machine a login b password c\n"
