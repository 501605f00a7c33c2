"""`cabroker-admin rules … --shadow` and `rules promote`: the shadow rules parameter
(/cabroker/STACK/shadow-rules) is checked and written as the rules are, and a promotion pushes
its document as the rules, through the same check (moto's SSM, a stand-in for
CloudFormation)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from broker.scope import Domain
from cabroker_admin import rulesstore
from tests.admin.conftest import DOMAIN, ELSEWHERE, ENGINEERS, PARAMETER, RELEASES, labelled, value
from tests.admin.test_cli import Stacks, one_error, run, use

if TYPE_CHECKING:
    from pathlib import Path

    from mypy_boto3_ssm import SSMClient

SHADOW = "/cabroker/cabroker/shadow-rules"


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Stacks:
    return use(monkeypatch, Stacks())


def shadow_value(ssm: SSMClient) -> str:
    return ssm.get_parameter(Name=SHADOW)["Parameter"]["Value"]


@pytest.mark.usefixtures("stack")
def test_push_shadow_writes_the_shadow_parameter_only(
    ssm: SSMClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rules-next.yaml"
    path.write_text(RELEASES, encoding="utf-8")
    code, out, _ = run(capsys, "rules", "push", str(path), "--stack", "cabroker", "--shadow")
    assert code == 0
    assert out.startswith(f"{SHADOW}: version 1 written and labelled live")
    assert shadow_value(ssm) == RELEASES
    assert [p["Name"] for p in ssm.describe_parameters()["Parameters"]] == [SHADOW]
    code, out, _ = run(capsys, "rules", "pull", "--stack", "cabroker", "--shadow")
    assert (code, out) == (0, RELEASES)
    code, out, _ = run(capsys, "rules", "history", "--stack", "cabroker", "--shadow")
    assert code == 0
    assert "served,live" in out


@pytest.mark.usefixtures("stack")
def test_a_shadow_document_is_checked_as_the_rules_are(
    ssm: SSMClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rules-next.yaml"
    path.write_text(ELSEWHERE, encoding="utf-8")
    code, _, err = run(capsys, "rules", "push", str(path), "--stack", "cabroker", "--shadow")
    assert code == 1
    assert f"{SHADOW} left as it was" in one_error(err)
    assert ssm.describe_parameters()["Parameters"] == []


def test_shadow_goes_with_stack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(ENGINEERS, encoding="utf-8")
    code, _, err = run(capsys, "rules", "push", str(path), "--parameter", PARAMETER, "--shadow")
    assert code == 2
    assert "--shadow goes with --stack" in one_error(err)


@pytest.mark.usefixtures("stack")
def test_promote_pushes_the_shadow_document_as_the_rules(
    ssm: SSMClient, capsys: pytest.CaptureFixture[str]
) -> None:
    rulesstore.push(ssm, PARAMETER, ENGINEERS, *served())
    rulesstore.push(ssm, SHADOW, RELEASES, *served())
    code, out, _ = run(capsys, "rules", "promote", "--stack", "cabroker", "--dry-run")
    assert code == 0
    assert "a promotion would write it as /cabroker/cabroker/rules's new version" in out
    assert value(ssm) == ENGINEERS
    code, out, _ = run(capsys, "rules", "promote", "--stack", "cabroker")
    assert code == 0
    assert out.startswith(f"{PARAMETER}: version 2 written with version 1 of {SHADOW}")
    assert (value(ssm), labelled(ssm), shadow_value(ssm)) == (RELEASES, [2], RELEASES)
    code, out, _ = run(capsys, "rules", "promote", "--stack", "cabroker")
    assert code == 0
    assert out.startswith(f"{PARAMETER}: unchanged, version 2 already holds")


@pytest.mark.usefixtures("stack")
def test_a_promotion_is_refused_as_a_push_is(
    ssm: SSMClient, capsys: pytest.CaptureFixture[str]
) -> None:
    rulesstore.push(ssm, PARAMETER, ENGINEERS, *served())
    # Written around the push path: a document the broker would refuse.
    ssm.put_parameter(Name=SHADOW, Value=ELSEWHERE, Type="String")
    code, _, err = run(capsys, "rules", "promote", "--stack", "cabroker")
    assert code == 1
    assert one_error(err).startswith(f"cabroker-admin: version 1 of {SHADOW}: ")
    assert value(ssm) == ENGINEERS


@pytest.mark.usefixtures("stack", "ssm")
def test_nothing_to_promote_is_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "rules", "promote", "--stack", "cabroker")
    assert code == 1
    assert one_error(err) == (
        f"cabroker-admin: {SHADOW}: no such SSM parameter (no rules were pushed yet)"
    )


def served() -> tuple[Domain, tuple[str, ...]]:
    """What the Stacks stand-in's outputs say the stack serves."""
    return DOMAIN, ("internal", "staging")
