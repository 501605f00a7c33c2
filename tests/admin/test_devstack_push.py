"""The devstack pushes its rules file as an admin does (Devstack.update_rules →
cabroker_admin.rulesstore.push): checked first, a new version labelled live, nothing written
when unchanged, and a refused file leaves the parameter as it was (moto's SSM)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import pytest

from devstack.stack import Devstack
from tests.admin.conftest import PARAMETER, current_version, labelled, value

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

IDP = "http://127.0.0.1:4321"
RULES = """\
version: 1
issuers:
  corp: {url: "${idp}/corp", audience: cabroker, client_id: cabroker-cli}
rules:
  - name: engineers-read
    issuer: corp
    claims: {groups: engineering}
    grant: {repository: internal, access: read}
"""


def devstack(rules_file: Path, **state: Any) -> Devstack:
    """Just what update_rules reads of a running devstack."""
    fake = SimpleNamespace(
        aws=SimpleNamespace(url="https://ssm.us-east-1.amazonaws.com"),  # moto answers
        idp=SimpleNamespace(base_url=IDP),
        options=SimpleNamespace(rules_file=rules_file),
        state={
            "domain": "acme",
            "domain_owner": "123456789012",
            "rules_parameter": PARAMETER,
            "repositories": {"private": "internal", "store": "pypi-store"},
            **state,
        },
    )
    return cast(Devstack, fake)


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    return path


@pytest.mark.parametrize("state", [{}, {"private_repositories": ["internal", "staging"]}])
def test_update_rules_pushes_the_expanded_file(
    ssm: SSMClient, rules_file: Path, state: dict[str, Any]
) -> None:
    stack = devstack(rules_file, **state)
    Devstack.update_rules(stack)
    assert value(ssm) == RULES.replace("${idp}", IDP)
    assert labelled(ssm) == [1]
    Devstack.update_rules(stack)  # unchanged: nothing written
    assert current_version(ssm) == 1


def test_update_rules_refuses_a_file_the_broker_would_refuse(
    ssm: SSMClient, rules_file: Path
) -> None:
    stack = devstack(rules_file)
    Devstack.update_rules(stack)
    rules_file.write_text(RULES.replace("repository: internal", "repository: other"), "utf-8")
    with pytest.raises(SystemExit) as refused:
        Devstack.update_rules(stack)
    assert str(refused.value).startswith(f"{rules_file}: rule 'engineers-read'")
    assert str(refused.value).endswith(f"{PARAMETER} left as it was")
    assert (current_version(ssm), labelled(ssm)) == (1, [1])
