from __future__ import annotations

import pytest

from broker.settings import Settings, SettingsError

GOOD = {
    "BROKER_RULES_FILE": "/etc/rules.yaml",
    "BROKER_ROLE_ARN": "arn:aws:iam::123456789012:role/TokenIssuerRole",
    "BROKER_DOMAIN": "acme",
    "BROKER_DOMAIN_OWNER": "111122223333",
    "AWS_REGION": "eu-west-1",
}


def test_defaults() -> None:
    settings = Settings.from_env(GOOD)
    assert settings.rules_file == "/etc/rules.yaml"
    assert settings.rules_parameter is None
    assert settings.max_id_token_bytes == 8192
    assert settings.token_cache_margin_seconds == 300


def test_served_repositories_are_read_in_order() -> None:
    assert Settings.from_env(GOOD).repositories == ()
    settings = Settings.from_env({**GOOD, "BROKER_REPOSITORIES": "internal, restricted"})
    assert settings.repositories == ("internal", "restricted")
    repeated = Settings.from_env({**GOOD, "BROKER_REPOSITORIES": "internal,restricted,internal"})
    assert repeated.repositories == ("internal", "restricted")


def test_knobs_are_read() -> None:
    settings = Settings.from_env({**GOOD, "BROKER_JWKS_CACHE_SECONDS": "30"})
    assert settings.jwks_cache_seconds == 30


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"BROKER_RULES_FILE": ""}, "exactly one of", id="no rules source"),
        pytest.param(
            {"BROKER_RULES_PARAMETER": "/cabroker/rules"}, "exactly one of", id="two sources"
        ),
        pytest.param({"BROKER_ROLE_ARN": ""}, "BROKER_ROLE_ARN is required", id="no role"),
        pytest.param({"BROKER_ROLE_ARN": "TokenIssuerRole"}, "BROKER_ROLE_ARN=", id="role name"),
        pytest.param({"BROKER_DOMAIN": "Acme!"}, "BROKER_DOMAIN=", id="domain"),
        pytest.param({"BROKER_DOMAIN_OWNER": "1234"}, "BROKER_DOMAIN_OWNER=", id="owner"),
        pytest.param({"AWS_REGION": "mars"}, "AWS_REGION=", id="region"),
        pytest.param({"BROKER_JWKS_CACHE_SECONDS": "ten"}, "whole number", id="not a number"),
        pytest.param({"BROKER_CLOCK_LEEWAY_SECONDS": "3600"}, "outside 0..300", id="range"),
        pytest.param({"BROKER_HTTP_TIMEOUT_SECONDS": "x"}, "not a number", id="float"),
        pytest.param({"BROKER_REPOSITORIES": "internal,bad name"}, "'bad name'", id="repository"),
    ],
)
def test_bad_settings_name_the_variable(change: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({**GOOD, **change})
