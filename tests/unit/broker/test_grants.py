"""Resolving a request against the caller's matching rules: defaults, narrowing, ambiguity."""

from __future__ import annotations

import pytest

from broker.grants import TokenRequest, parse_token_request, resolve
from broker.problems import AmbiguousRequest, GrantExceeded, NoMatchingRule
from broker.rules import Rule, parse

RULES = parse(
    """\
version: 1
issuers:
  corp: {url: "https://login.example.com", audience: cabroker}
rules:
  - {name: read-12h, issuer: corp, claims: {groups: eng},
     grant: {repository: internal, access: read, max_duration: 43200}}
  - {name: read-1h, issuer: corp, claims: {groups: eng},
     grant: {repository: internal, access: read, max_duration: 3600}}
  - {name: tools, issuer: corp, claims: {groups: tools},
     grant: {repository: internal, access: publish, packages: ["tools-*", "cli"]}}
  - {name: other-repo, issuer: corp, claims: {groups: other},
     grant: {repository: other, access: read}}
"""
)


def rules_for(*groups: str) -> list[Rule]:
    return RULES.matching("corp", {"groups": list(groups)})


def test_rules_with_the_same_scope_are_one_choice_with_the_longest_duration() -> None:
    grant = resolve(rules_for("eng"), TokenRequest(), "alice")
    assert (grant.rule, grant.access, grant.duration_seconds) == ("read-12h", "read", 43200)


def test_publish_defaults_to_every_granted_pattern() -> None:
    grant = resolve(rules_for("tools"), TokenRequest(), "ci")
    assert grant.packages == ("tools-*", "cli")


def test_a_publish_rule_also_serves_read_without_packages() -> None:
    grant = resolve(rules_for("tools"), TokenRequest(access="read"), "ci")
    assert (grant.access, grant.packages) == ("read", ())


def test_requested_packages_narrow_the_grant() -> None:
    request = parse_token_request({"packages": ["Tools_Lint", "cli"]})
    assert resolve(rules_for("tools"), request, "ci").packages == ("tools-lint", "cli")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"packages": ["cli*"]}, id="prefix of an exact name"),
        pytest.param({"packages": ["tools*"]}, id="wider prefix"),
        pytest.param({"packages": ["tools-lint", "other"]}, id="one outside"),
        pytest.param({"duration_seconds": 3601}, id="over the default max_duration"),
        pytest.param({"repository": "other"}, id="repository of another rule"),
    ],
)
def test_requests_cannot_widen(body: dict[str, object]) -> None:
    with pytest.raises(GrantExceeded):
        resolve(rules_for("tools"), parse_token_request(body), "ci")


def test_different_scopes_are_ambiguous_and_listed() -> None:
    with pytest.raises(AmbiguousRequest) as ambiguous:
        resolve(rules_for("eng", "other"), TokenRequest(), "alice")
    assert ambiguous.value.extensions["choices"] == [
        {"repository": "internal", "access": "read", "packages": []},
        {"repository": "other", "access": "read", "packages": []},
    ]
    grant = resolve(rules_for("eng", "other"), TokenRequest(repository="other"), "alice")
    assert grant.rule == "other-repo"


def test_no_rule_says_who_and_not_the_rules() -> None:
    with pytest.raises(NoMatchingRule) as refused:
        resolve([], TokenRequest(), "issuer 'corp' subject 'mallory'")
    assert "mallory" in refused.value.detail
    assert "groups" not in refused.value.detail
