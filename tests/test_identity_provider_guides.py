"""docs/identity-providers.md: every YAML example is a rules document the broker's own loader
accepts, each names one interactive issuer (a ``client_id`` whose ID tokens carry it as
``aud``), and the fields the page documents are the ones the loader keeps."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from broker.acceptance import accept
from broker.scope import Domain

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "identity-providers.md"
DOMAIN = Domain(partition="aws", region="us-east-1", owner="123456789012", name="acme")
SERVED = ("internal",)
YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.S | re.M)


def examples() -> list[str]:
    return YAML_BLOCK.findall(PAGE.read_text(encoding="utf-8"))


def test_the_page_has_an_example_for_each_identity_provider() -> None:
    names = sorted(name for text in examples() for name in yaml.safe_load(text)["issuers"])
    assert names == ["entra", "google", "keycloak", "okta", "okta"]


@pytest.mark.parametrize("text", examples(), ids=lambda text: text.split("\n", 3)[2].strip(": "))
def test_every_issuer_example_is_accepted_by_the_broker(text: str) -> None:
    rules = accept(text, DOMAIN, SERVED)
    raw = yaml.safe_load(text)["issuers"]
    assert rules.rules, "each example has a rule"
    for name, issuer in rules.issuers.items():
        assert issuer.client_id, f"{name}: an interactive issuer"
        assert issuer.audience == issuer.client_id, f"{name}: the ID token's aud is the client ID"
        assert issuer.client_secret == raw[name].get("client_secret")
        assert list(issuer.scopes) == raw[name].get("scopes", ["openid"])
        assert "openid" in issuer.scopes


def test_only_google_publishes_a_client_secret() -> None:
    secrets = {
        name: spec.get("client_secret")
        for text in examples()
        for name, spec in yaml.safe_load(text)["issuers"].items()
    }
    assert [name for name, secret in secrets.items() if secret] == ["google"]


def test_the_page_names_the_settings_the_client_reads() -> None:
    page = PAGE.read_text(encoding="utf-8")
    for name in ("CABROKER_SCOPES", "CABROKER_CLIENT_SECRET", "CABROKER_AUDIENCE", "/v1/config"):
        assert f"`{name}" in page or f"{name}`" in page, name
