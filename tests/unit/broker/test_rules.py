"""Rules: the document's validation (each refusal names rule, field, reason) and claim matching
as truth tables."""

from __future__ import annotations

import json
from typing import Any

import pytest

from broker.rules import RulesError, glob_to_regex, parse

ISSUERS = """\
version: 1
issuers:
  github: {url: "https://token.actions.githubusercontent.com", audience: codeartifact-broker}
  corp: {url: "https://login.example.com", audience: cabroker, client_id: cabroker-cli}
"""


def document(rules: str) -> str:
    return ISSUERS + "rules:\n" + rules


def simple(name: str, grant: str, issuer: str = "github") -> str:
    """A one-rule document constrained on ``sub``, with the given grant fields."""
    return document(
        f"  - {{name: {name}, issuer: {issuer}, claims: {{sub: x}}, grant: {{{grant}}}}}\n"
    )


GOOD_RULE = """\
  - name: release
    issuer: github
    claims: {repository_owner: acme, ref: refs/heads/main, repository: "acme/*"}
    grant: {repository: internal, access: publish, packages: ["Acme_*"], max_duration: 3600}
"""


def test_a_good_document_compiles() -> None:
    rules = parse(document(GOOD_RULE))
    (rule,) = rules.rules
    assert rule.grant.packages == ("acme-*",)  # normalized at load
    assert rule.grant.max_duration == 3600
    assert rules.issuers["corp"].client_id == "cabroker-cli"
    assert rules.issuers["corp"].scopes == ("openid",)  # the default
    assert rules.issuers["corp"].client_secret is None
    assert rules.repositories() == ["internal"]


def test_an_interactive_issuer_may_name_its_scopes_and_a_public_client_secret() -> None:
    rules = parse(
        "version: 1\nissuers:\n  g: {url: 'https://accounts.google.com', audience: c, "
        "client_id: c, client_secret: GOCSPX-public, scopes: [openid, email, profile]}\n"
    )
    assert rules.issuers["g"].scopes == ("openid", "email", "profile")
    assert rules.issuers["g"].client_secret == "GOCSPX-public"


def test_json_is_accepted_as_yaml() -> None:
    text = (
        '{"version": 1, "issuers": {"corp": {"url": "https://login.example.com", '
        '"audience": "a"}}, "rules": [{"name": "r", "issuer": "corp", '
        '"claims": {"groups": "eng"}, "grant": {"repository": "internal", "access": "read"}}]}'
    )
    assert parse(text).rules[0].grant.max_duration == 3600


def test_json_keeps_characters_outside_the_bmp() -> None:
    """json.dumps writes them as surrogate-pair escapes, which PyYAML would read as two lone
    surrogates: a JSON document is read as JSON."""
    rule = {"name": "r", "issuer": "corp", "claims": {"ref": "refs/heads/\U0001f680*"}}
    rule["grant"] = {"repository": "internal", "access": "read"}
    issuers = {"corp": {"url": "https://login.example.com", "audience": "a"}}
    text = json.dumps({"version": 1, "issuers": issuers, "rules": [rule]})
    assert "\\ud83d" in text
    parsed = parse(text)
    assert parsed.matching("corp", {"ref": "refs/heads/\U0001f680-release"})
    assert parse("{version: 1}").rules == ()  # a YAML flow mapping is still YAML


BAD_DOCUMENTS: list[tuple[str, str, str]] = [
    ("not yaml", "version: [1", "not valid YAML"),
    ("not a mapping", "- 1\n- 2\n", "document must be a mapping"),
    ("wrong version", "version: 2\n", "'version' must be 1"),
    ("unknown top-level field", "version: 1\nrule: []\n", "unknown field(s) rule"),
    ("duplicate key", ISSUERS + "issuers: {}\n", "duplicate key 'issuers'"),
    ("duplicate key in JSON", '{"version": 1, "rules": [], "rules": []}', "duplicate key 'rules'"),
    ("JSON that is not a rules document", '{"version": 1, "rule": []}', "unknown field(s) rule"),
    (
        "http issuer that is not loopback",
        "version: 1\nissuers:\n  x: {url: 'http://login.example.com', audience: a}\n",
        "issuer 'x': field 'url' must use https://",
    ),
    (
        "issuer with a query",
        "version: 1\nissuers:\n  x: {url: 'https://login.example.com?a=1', audience: a}\n",
        "must not have a query",
    ),
    (
        "issuer without audience",
        "version: 1\nissuers:\n  x: {url: 'https://login.example.com'}\n",
        "issuer 'x': field 'audience' must be a non-empty string",
    ),
    (
        "scopes without client_id",
        "version: 1\nissuers:\n  x: {url: 'https://a.example', audience: a, scopes: [openid]}\n",
        "issuer 'x': field 'scopes' is for interactive login and needs 'client_id'",
    ),
    (
        "client_secret without client_id",
        "version: 1\nissuers:\n  x: {url: 'https://a.example', audience: a, client_secret: s}\n",
        "issuer 'x': field 'client_secret' is for interactive login and needs 'client_id'",
    ),
    (
        "scopes without openid",
        "version: 1\nissuers:\n  x: {url: 'https://a.example', audience: a, client_id: c, "
        "scopes: [email]}\n",
        "issuer 'x': field 'scopes' must include 'openid'",
    ),
    (
        "a scope with a space",
        "version: 1\nissuers:\n  x: {url: 'https://a.example', audience: a, client_id: c, "
        "scopes: [openid, 'a b']}\n",
        "is not an OAuth scope",
    ),
    (
        "a scope twice",
        "version: 1\nissuers:\n  x: {url: 'https://a.example', audience: a, client_id: c, "
        "scopes: [openid, openid]}\n",
        "lists a scope twice",
    ),
    (
        "scopes not a list",
        "version: 1\nissuers:\n  x: {url: 'https://a.example', audience: a, client_id: c, "
        "scopes: openid}\n",
        "must be a list of 1 to 16 scopes",
    ),
    (
        "client_secret with white space",
        "version: 1\nissuers:\n  x: {url: 'https://a.example', audience: a, client_id: c, "
        "client_secret: 'a b'}\n",
        "field 'client_secret' must be 1 to 1024 printable ASCII characters, no white space",
    ),
    (
        "client_id not ASCII",
        "version: 1\nissuers:\n  x: {url: 'https://a.example', audience: a, client_id: 'cé'}\n",
        "field 'client_id' must be 1 to 1024 printable ASCII characters, no white space",
    ),
    (
        "scopes with a null client_id",
        "version: 1\nissuers:\n  x: {url: 'https://a.example', audience: a, client_id: null, "
        "scopes: [openid]}\n",
        "field 'scopes' is for interactive login and needs 'client_id'",
    ),
    (
        "empty client_secret",
        "version: 1\nissuers:\n  x: {url: 'https://a.example', audience: a, client_id: c, "
        "client_secret: ''}\n",
        "field 'client_secret' must be a non-empty string",
    ),
    (
        "two issuers with one url",
        "version: 1\nissuers:\n  x: {url: 'https://a.example', audience: a}\n"
        "  y: {url: 'https://a.example', audience: b}\n",
        "issuer 'y': field 'url' is used by another issuer",
    ),
    (
        "issuer name",
        "version: 1\nissuers:\n  Bad_Name: {url: 'https://a.example', audience: a}\n",
        "issuer 'Bad_Name': name must match",
    ),
    (
        "rule without claims",
        document("  - {name: open, issuer: github, grant: {repository: r1, access: read}}\n"),
        "rule 'open': field 'claims' must be a non-empty mapping",
    ),
    (
        "rule with empty claims",
        document(
            "  - {name: open, issuer: github, claims: {}, grant: {repository: r1, access: read}}\n"
        ),
        "rule 'open': field 'claims' must be a non-empty mapping",
    ),
    (
        "claim pattern that matches anything",
        document(
            "  - {name: any, issuer: github, claims: {sub: '**'}, "
            "grant: {repository: r1, access: read}}\n"
        ),
        "rule 'any': field 'claims.sub' must constrain the value",
    ),
    (
        "claim value that is a boolean",
        document(
            "  - {name: b, issuer: github, claims: {admin: true}, "
            "grant: {repository: r1, access: read}}\n"
        ),
        "rule 'b': field 'claims.admin' must be a non-empty string or a list of them (got bool",
    ),
    (
        "claim value that is a number",
        document(
            "  - {name: n, issuer: github, claims: {repository_id: 123}, "
            "grant: {repository: r1, access: read}}\n"
        ),
        "field 'claims.repository_id' must be a non-empty string or a list of them (got int",
    ),
    (
        "claim alternatives empty",
        document(
            "  - {name: e, issuer: github, claims: {sub: []}, "
            "grant: {repository: r1, access: read}}\n"
        ),
        "rule 'e': field 'claims.sub' must not be an empty list",
    ),
    (
        "unknown issuer",
        simple("u", "repository: r1, access: read", "gitlab"),
        "rule 'u': field 'issuer' must name one of the document's issuers",
    ),
    (
        "typo in a rule field",
        document(
            "  - {name: t, issuer: github, claim: {sub: x}, claims: {sub: x}, "
            "grant: {repository: r1, access: read}}\n"
        ),
        "rule 't': unknown field(s) claim",
    ),
    (
        "duplicate rule names",
        document(GOOD_RULE + GOOD_RULE),
        "rule 'release': field 'name' is used by another rule",
    ),
    (
        "rule without a name",
        document("  - {issuer: github, claims: {sub: x}, grant: {repository: r1, access: read}}\n"),
        "rule #1: field 'name' must match",
    ),
    (
        "access level",
        simple("a", "repository: r1, access: admin"),
        "rule 'a': field 'grant.access' must be 'read' or 'publish'",
    ),
    (
        "repository name",
        simple("a", "repository: 'a/b', access: read"),
        "rule 'a': field 'grant.repository' must be a CodeArtifact repository name",
    ),
    (
        "publish without packages",
        simple("p", "repository: r1, access: publish"),
        "rule 'p': field 'grant.packages' must be a non-empty list",
    ),
    (
        "packages on a read grant",
        document(
            "  - {name: p, issuer: github, claims: {sub: x}, "
            "grant: {repository: r1, access: read, packages: [a]}}\n"
        ),
        "rule 'p': field 'grant.packages' only applies to publish grants",
    ),
    (
        "package pattern with an inner star",
        document(
            "  - {name: p, issuer: github, claims: {sub: x}, "
            "grant: {repository: r1, access: publish, packages: ['a*b']}}\n"
        ),
        "rule 'p': field 'grant.packages': 'a*b' must be a package name",
    ),
    (
        "package pattern with a slash",
        document(
            "  - {name: p, issuer: github, claims: {sub: x}, "
            "grant: {repository: r1, access: publish, packages: ['a/b']}}\n"
        ),
        "'a/b' must be a package name",
    ),
    (
        "max_duration too long",
        document(
            "  - {name: d, issuer: github, claims: {sub: x}, "
            "grant: {repository: r1, access: read, max_duration: 86400}}\n"
        ),
        "rule 'd': field 'grant.max_duration' must be a whole number of seconds from 900 to 43200",
    ),
    (
        "max_duration as a string",
        document(
            "  - {name: d, issuer: github, claims: {sub: x}, "
            "grant: {repository: r1, access: read, max_duration: '3600'}}\n"
        ),
        "field 'grant.max_duration' must be a whole number",
    ),
    (
        "unknown grant field",
        document(
            "  - {name: g, issuer: github, claims: {sub: x}, "
            "grant: {repository: r1, access: read, domain: other}}\n"
        ),
        "rule 'g': field 'grant': unknown field(s) domain",
    ),
    ("rules not a list", ISSUERS + "rules: {}\n", "field 'rules' must be a list"),
]


@pytest.mark.parametrize(
    ("text", "message"),
    [pytest.param(text, message, id=name) for name, text, message in BAD_DOCUMENTS],
)
def test_bad_documents_are_refused_with_rule_field_and_reason(text: str, message: str) -> None:
    with pytest.raises(RulesError) as refused:
        parse(text)
    assert message in str(refused.value)


def test_loopback_http_issuers_are_allowed_for_the_devstack() -> None:
    for url in ("http://127.0.0.1:8080/github", "http://localhost:9000", "http://[::1]:9000/x"):
        text = f"version: 1\nissuers:\n  x: {{url: '{url}', audience: a}}\nrules: []\n"
        assert parse(text).issuers["x"].url == url


# --------------------------------------------------------------------------- matching

MATCH_RULES = document(
    """\
  - name: release
    issuer: github
    claims: {repository_owner: acme, ref: [refs/heads/main, "refs/tags/v*"], repository: "acme/*"}
    grant: {repository: internal, access: publish, packages: ["acme-*"]}
  - name: engineers
    issuer: corp
    claims: {groups: engineering}
    grant: {repository: internal, access: read}
  - name: by-id
    issuer: corp
    claims: {repository_id: "123", admin: "True"}
    grant: {repository: internal, access: read}
"""
)
BASE = {"repository_owner": "acme", "ref": "refs/heads/main", "repository": "acme/app"}


@pytest.mark.parametrize(
    ("issuer", "claims", "expected"),
    [
        pytest.param("github", BASE, ["release"], id="exact and glob match"),
        pytest.param("github", {**BASE, "ref": "refs/tags/v1.2"}, ["release"], id="alternative"),
        pytest.param("github", {**BASE, "ref": "refs/tags/x1"}, [], id="alternative miss"),
        pytest.param("github", {**BASE, "repository_owner": "acm"}, [], id="prefix"),
        pytest.param("github", {**BASE, "repository_owner": "acmee"}, [], id="suffix"),
        pytest.param("github", {**BASE, "repository_owner": "ACME"}, [], id="case"),
        pytest.param("github", {**BASE, "repository_owner": "acme\n"}, [], id="trailing newline"),
        pytest.param("github", {**BASE, "repository_owner": " acme"}, [], id="leading space"),
        pytest.param("github", {**BASE, "repository": "acme/"}, ["release"], id="glob empty tail"),
        pytest.param("github", {**BASE, "repository": "acme"}, [], id="glob needs the slash"),
        pytest.param("github", {**BASE, "repository": "xacme/app"}, [], id="glob anchored"),
        pytest.param(
            "github", {**BASE, "repository": "acme/app\nevil"}, ["release"], id="glob star spans"
        ),
        pytest.param("github", {**BASE, "repository_owner": None}, [], id="null claim"),
        pytest.param("github", {**BASE, "repository_owner": 1}, [], id="number claim"),
        pytest.param("github", {**BASE, "repository_owner": True}, [], id="bool claim"),
        pytest.param("github", {**BASE, "repository_owner": {"a": "acme"}}, [], id="object"),
        pytest.param(
            "github", {**BASE, "repository_owner": ["x", "acme"]}, ["release"], id="list any"
        ),
        pytest.param("github", {**BASE, "repository_owner": [1, ["acme"]]}, [], id="list nested"),
        pytest.param("github", {k: v for k, v in BASE.items() if k != "ref"}, [], id="missing"),
        pytest.param("corp", BASE, [], id="claims match but issuer differs"),
        pytest.param("corp", {"groups": ["staff", "engineering"]}, ["engineers"], id="groups"),
        pytest.param("corp", {"groups": "engineering"}, ["engineers"], id="string group"),
        pytest.param("corp", {"groups": ["Engineering"]}, [], id="group case"),
        pytest.param("corp", {"groups": []}, [], id="empty list"),
        pytest.param(
            "corp", {"repository_id": "123", "admin": "True"}, ["by-id"], id="quoted values"
        ),
        pytest.param("corp", {"repository_id": 123, "admin": "True"}, [], id="int never str"),
        pytest.param("corp", {"repository_id": "123", "admin": True}, [], id="bool never str"),
        pytest.param("corp", {"repository_id": [123], "admin": "True"}, [], id="int element"),
    ],
)
def test_claim_matching_truth_table(
    issuer: str, claims: dict[str, Any], expected: list[str]
) -> None:
    rules = parse(MATCH_RULES)
    present = {k: v for k, v in claims.items() if v is not None}
    assert [rule.name for rule in rules.matching(issuer, present)] == expected


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        pytest.param("a.b", "a.b", True, id="dot is literal"),
        pytest.param("a.b", "axb", False, id="dot is not a wildcard"),
        pytest.param("a?", "ab", False, id="question mark is literal"),
        pytest.param("a[b]*", "a[b]c", True, id="brackets are literal"),
        pytest.param("*-prod", "x-prod", True, id="leading star"),
        pytest.param("*-prod", "x-prod\n", False, id="no match before newline"),
        pytest.param("a*c", "abbbc", True, id="inner star"),
        pytest.param("(a|b)*", "a", False, id="regex syntax is literal"),
    ],
)
def test_globs_are_literal_except_star(pattern: str, value: str, matches: bool) -> None:
    assert bool(glob_to_regex(pattern).fullmatch(value)) is matches
