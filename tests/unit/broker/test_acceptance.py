"""What the broker accepts as rules (broker.acceptance): the same check at every load, before
an admin's push, and in the devstack."""

from __future__ import annotations

from typing import Any

import pytest

from broker.acceptance import accept
from broker.rules import RulesError
from broker.scope import Domain

DOMAIN = Domain(partition="aws", region="eu-west-1", owner="111122223333", name="acme")


def document(repository: str, packages: str = "['acme-*']") -> str:
    return (
        "version: 1\nissuers:\n  corp: {url: 'https://login.example.com', audience: a}\n"
        "rules:\n  - {name: team, issuer: corp, claims: {groups: team}, grant: "
        f"{{repository: {repository}, access: publish, packages: {packages}}}}}\n"
    )


def test_a_grant_of_a_served_repository_is_accepted() -> None:
    rules = accept(document("restricted"), DOMAIN, ["internal", "restricted"])
    assert rules.repositories() == ["restricted"]


def test_a_grant_of_a_repository_the_deployment_does_not_serve_is_refused() -> None:
    with pytest.raises(RulesError) as refused:
        accept(document("pypi-store"), DOMAIN, ["internal", "restricted"])
    assert str(refused.value) == (
        "rule 'team': field 'grant.repository': 'pypi-store' is not a repository this "
        "deployment serves (internal, restricted)"
    )


def test_without_a_declared_set_any_repository_is_accepted() -> None:
    assert accept(document("anything"), DOMAIN, []).repositories() == ["anything"]


def test_a_grant_that_cannot_fit_a_session_policy_is_refused() -> None:
    patterns = "[" + ", ".join(f"acme-a-very-long-package-name-{i:02d}" for i in range(20)) + "]"
    with pytest.raises(RulesError, match=r"rule 'team': field 'grant\.packages'"):
        accept(document("internal", patterns), DOMAIN, ["internal"])


def test_an_invalid_document_is_refused_by_the_loader() -> None:
    with pytest.raises(RulesError, match="version"):
        accept("version: 2\n", DOMAIN, ["internal"])


def test_the_broker_refuses_to_serve_rules_for_a_repository_it_does_not_serve() -> None:
    """The service wires the same check into its rules source: fail closed, 503."""
    from broker.acceptance import check
    from broker.problems import RulesUnavailable
    from broker.rulesource import RulesSource

    source = RulesSource(
        lambda: document("other"), "test", check=lambda rules: check(rules, DOMAIN, ["internal"])
    )
    with pytest.raises(RulesUnavailable):
        source.current()


class TestTheDeployedBrokerChecksItsRules:
    """Broker.from_settings wires the acceptance check with BROKER_REPOSITORIES: rules that
    grant a repository the deployment does not serve make the broker fail closed."""

    @pytest.fixture
    def env(self, env: dict[str, str]) -> dict[str, str]:
        return {**env, "BROKER_REPOSITORIES": "restricted"}  # tests/conftest.py grants internal

    def test_every_request_is_refused_503(self, call: Any, github_token: str) -> None:
        answer = call("POST", "/v1/token", token=github_token, body={})
        assert (answer.status, answer.problem_type) == (503, "rules-unavailable")


class TestTheServedRepositoriesAreServed:
    @pytest.fixture
    def env(self, env: dict[str, str]) -> dict[str, str]:
        return {**env, "BROKER_REPOSITORIES": "internal,restricted"}

    def test_a_token_is_minted(self, call: Any, github_token: str) -> None:
        assert call("POST", "/v1/token", token=github_token, body={}).status == 200
