"""broker.explain: the broker's decision on a token request and why, rule by rule.

A truth table of failures (missing claim, each wrong type, values no pattern matches,
truncation), each decision (allow, and every denial reason), the JSON shape, and a property:
over generated documents, identities and requests, explain decides exactly as the broker's own
path does (``parse_token_request``, ``RuleSet.matching``, ``resolve``, and
:meth:`broker.service.Broker.token` itself), and its trace agrees with ``Rule.matches``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import explain as explain_module
from broker.explain import NO_BODY, Explanation, Failure, explain, failure_of
from broker.grants import parse_token_request, resolve
from broker.identity import Identity
from broker.problems import BrokerError, NoMatchingRule
from broker.rules import RuleSet, compile_document, parse
from broker.scope import Domain
from broker.service import Broker, Caller
from broker.settings import Settings
from tests.unit.broker.strategies import (
    DURATIONS,
    FILL_TEXT,
    REPOSITORY_NAMES,
    Json,
    Tally,
    fixed,
    json_values,
    package_patterns,
    rules_documents,
)

RULES = parse(
    """\
version: 1
issuers:
  corp: {url: "https://login.example.com", audience: cabroker}
  github: {url: "https://token.actions.githubusercontent.com", audience: "https://b.example"}
rules:
  - name: engineers-read
    issuer: corp
    claims: {groups: engineering}
    grant: {repository: internal, access: read, max_duration: 43200}
  - name: release
    issuer: github
    claims: {repository_owner: acme, ref: refs/heads/main}
    grant: {repository: internal, access: publish, packages: ["acme-*"]}
  - name: tools-publish
    issuer: corp
    claims: {groups: [tools, "tools-*"], email: "*@example.com"}
    grant: {repository: internal, access: publish, packages: ["tools-*", cli], max_duration: 3600}
  - name: other-read
    issuer: corp
    claims: {groups: other}
    grant: {repository: other, access: read}
"""
)
NEEDED = "where a string or a list of strings is needed"


def engineers_failure(value: object) -> Failure | None:
    claims = {} if value is _MISSING else {"groups": value}
    return failure_of(RULES.rules[0].constraints[0], claims)


_MISSING = object()


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    ("value", "kind", "why"),
    [
        pytest.param(_MISSING, "missing", "missing claim", id="missing"),
        pytest.param(7, "type", f"wrong type: a number, {NEEDED}", id="number"),
        pytest.param(1.5, "type", f"wrong type: a number, {NEEDED}", id="float"),
        pytest.param(True, "type", f"wrong type: a boolean, {NEEDED}", id="boolean"),
        pytest.param(None, "type", f"wrong type: null, {NEEDED}", id="null"),
        pytest.param({"a": "engineering"}, "type", f"wrong type: an object, {NEEDED}", id="object"),
        pytest.param(
            [1, {"x": 1}, 2],
            "type",
            f"wrong type: a list with no strings (of a number, an object), {NEEDED}",
            id="list without strings",
        ),
        pytest.param([], "value", "an empty list: nothing to match 'engineering'", id="empty list"),
        pytest.param(
            "Engineering", "value", "value 'Engineering' does not match 'engineering'", id="case"
        ),
        pytest.param(
            ["eng", 3],
            "value",
            "its value 'eng' does not match 'engineering'",
            id="list of one string",
        ),
        pytest.param(
            ["eng", "ops"],
            "value",
            "none of its 2 values 'eng', 'ops' matches 'engineering'",
            id="list of strings",
        ),
    ],
)
def test_each_kind_of_failure_is_named(value: object, kind: str, why: str) -> None:
    assert engineers_failure(value) == Failure("groups", cast(Any, kind), why)


@pytest.mark.parametrize("value", ["engineering", ["x", "engineering"], ["engineering", 1]])
def test_a_met_constraint_is_no_failure(value: object) -> None:
    assert engineers_failure(value) is None


def test_alternatives_are_shown_as_written_in_order() -> None:
    traced = explain(RULES, "corp", {"groups": "ops", "email": "a@example.org"})
    tools = next(trace for trace in traced.rules if trace.name == "tools-publish")
    assert tools.failed == (
        Failure("groups", "value", "value 'ops' does not match any of 'tools', 'tools-*'"),
        Failure("email", "value", "value 'a@example.org' does not match '*@example.com'"),
    )
    assert RULES.rules[2].constraints[0].alternatives == ("tools", "tools-*")


def test_long_values_are_truncated_and_many_are_counted() -> None:
    long = "x" * 500
    failure = engineers_failure(long)
    assert failure is not None
    assert long not in failure.why
    assert repr("x" * (explain_module.MAX_SHOWN_CHARS - 1)) + "…" in failure.why
    assert len(failure.why) < 120
    many = engineers_failure([f"g{i}" for i in range(12)])
    assert many is not None
    assert many.why == (
        "none of its 12 values 'g0', 'g1', 'g2', 'g3', 'g4' and 7 more matches 'engineering'"
    )


def test_a_why_is_one_line_whatever_the_value() -> None:
    failure = engineers_failure("a\nb\r\nc\u2028")
    assert failure is not None
    assert len(failure.why.splitlines()) == 1


def test_every_failing_constraint_of_every_rule_of_the_issuer_is_listed_in_order() -> None:
    traced = explain(RULES, "corp", {"groups": 3})
    assert [(t.name, t.matched, [f.claim for f in t.failed]) for t in traced.rules] == [
        ("engineers-read", False, ["groups"]),
        ("tools-publish", False, ["groups", "email"]),
        ("other-read", False, ["groups"]),
    ]


# --------------------------------------------------------------------------- decisions


def test_allow_names_the_rule_and_the_grant() -> None:
    allowed = explain(RULES, "corp", {"sub": "alice", "groups": ["engineering"]})
    assert (allowed.decision, allowed.rule, allowed.reason, allowed.detail) == (
        "allow",
        "engineers-read",
        None,
        None,
    )
    assert allowed.grant is not None
    assert allowed.grant.to_json() == {
        "repository": "internal",
        "access": "read",
        "packages": [],
        "duration_seconds": 43200,
        "max_duration": 43200,
    }
    first = allowed.rules[0]
    assert (first.name, first.matched, first.failed) == (
        "engineers-read",
        True,
        (),
    )


def test_a_request_narrows_the_grant_as_the_broker_does() -> None:
    claims = {"groups": ["tools"], "email": "ci@example.com"}
    allowed = explain(RULES, "corp", claims, {"packages": ["Tools_Lint"], "duration_seconds": 900})
    assert allowed.grant is not None
    assert (allowed.rule, allowed.grant.packages, allowed.grant.duration_seconds) == (
        "tools-publish",
        ("tools-lint",),
        900,
    )
    assert allowed.grant.max_duration == 3600
    assert "for packages 'tools-lint', 900 s (max_duration 3600)" in allowed.grant.describe()


@pytest.mark.parametrize(
    ("issuer", "claims", "body", "reason"),
    [
        pytest.param("corp", {"groups": "sales"}, NO_BODY, "no-matching-rule", id="no rule"),
        pytest.param(
            "corp", {"groups": "engineering"}, {"access": "publish"}, "grant-exceeded", id="more"
        ),
        pytest.param(
            "corp",
            {"groups": "engineering"},
            {"duration_seconds": 43201},
            "invalid-request",
            id="over the limit",
        ),
        pytest.param(
            "corp", {"groups": ["engineering", "other"]}, {}, "ambiguous-request", id="ambiguous"
        ),
        pytest.param("corp", {"groups": "engineering"}, None, "invalid-request", id="null body"),
        pytest.param("corp", {"groups": "engineering"}, [], "invalid-request", id="list body"),
        pytest.param(
            "corp", {"groups": "engineering"}, {"access": "write"}, "invalid-request", id="access"
        ),
        pytest.param("gitlab", {"groups": "engineering"}, {}, "invalid-token", id="issuer"),
    ],
)
def test_each_denial_has_the_brokers_reason(
    issuer: str, claims: dict[str, Any], body: object, reason: str
) -> None:
    denied = explain(RULES, issuer, claims, body)
    assert (denied.decision, denied.rule, denied.grant, denied.reason) == (
        "deny",
        None,
        None,
        reason,
    )
    assert denied.detail


def test_a_denial_says_what_the_broker_says() -> None:
    denied = explain(RULES, "corp", {"sub": "alice", "groups": "sales"})
    with pytest.raises(NoMatchingRule) as broker:
        resolve(
            RULES.matching("corp", {"groups": "sales"}),
            parse_token_request({}),
            "issuer 'corp' subject 'alice'",
        )
    assert denied.detail == broker.value.detail
    assert explain(RULES, "corp", {"groups": "sales"}, who="bob").detail == (
        "no access rule matches bob; ask an admin for access"
    )


def test_an_invalid_request_still_traces_the_rules() -> None:
    denied = explain(RULES, "corp", {"groups": "engineering"}, {"access": "write"})
    assert [t.name for t in denied.rules if t.matched] == ["engineers-read"]


def test_no_body_is_the_empty_request() -> None:
    claims = {"groups": "engineering"}
    assert explain(RULES, "corp", claims).outcome() == explain(RULES, "corp", claims, {}).outcome()


def test_an_unknown_issuer_is_refused_as_the_broker_refuses_its_tokens() -> None:
    denied = explain(RULES, "gitlab", {"groups": "engineering"})
    assert (denied.reason, denied.rules) == ("invalid-token", ())


def test_only_the_issuers_rules_are_traced_in_document_order() -> None:
    traced = explain(RULES, "github", {"repository_owner": "acme", "ref": "refs/heads/main"})
    assert [t.name for t in traced.rules] == ["release"]
    assert traced.rule == "release"


# --------------------------------------------------------------------------- JSON


def test_the_json_shape() -> None:
    denied = explain(RULES, "corp", {"groups": 3}).to_json()
    assert list(denied) == ["decision", "rule", "grant", "reason", "detail", "rules"]
    assert denied["rules"][0] == {
        "name": "engineers-read",
        "matched": False,
        "failed": [{"claim": "groups", "why": f"wrong type: a number, {NEEDED}"}],
    }
    allowed = explain(RULES, "corp", {"groups": "engineering"}).to_json()
    assert set(allowed["grant"]) == {
        "repository",
        "access",
        "packages",
        "duration_seconds",
        "max_duration",
    }
    assert json.loads(json.dumps(allowed)) == allowed


# --------------------------------------------------------------------------- the property


def _fill(draw: st.DrawFn, glob: str) -> str:
    """A value ``glob`` matches: each '*' replaced with generated text."""
    return "".join(
        part if i == 0 else draw(FILL_TEXT) + part for i, part in enumerate(glob.split("*"))
    )


@st.composite
def claims_for(draw: st.DrawFn, document: Mapping[str, Json]) -> dict[str, Json]:
    """Claims for the document's constraints: absent, values their patterns match (or not
    quite), lists of them, or anything JSON."""
    alternatives: dict[str, list[str]] = {}
    for rule in document["rules"]:
        for claim, value in rule["claims"].items():
            alternatives.setdefault(claim, []).extend(value if isinstance(value, list) else [value])
    claims: dict[str, Json] = {}
    if draw(st.booleans()):
        claims["sub"] = draw(st.text(max_size=10))
    for claim, globs in alternatives.items():
        choice = draw(
            st.sampled_from(["absent", "match", "match", "match", "near", "list", "json"])
        )
        if choice == "match":
            claims[claim] = _fill(draw, draw(st.sampled_from(globs)))
        elif choice == "near":
            claims[claim] = _fill(draw, draw(st.sampled_from(globs))) + draw(FILL_TEXT)
        elif choice == "list":
            claims[claim] = [
                _fill(draw, draw(st.sampled_from(globs)))
                if draw(st.booleans())
                else draw(json_values(3))
                for _ in range(draw(st.integers(0, 3)))
            ]
        elif choice == "json":
            claims[claim] = draw(json_values(4))
    return claims


@st.composite
def bodies(draw: st.DrawFn, document: Mapping[str, Json]) -> object:
    """No body, any JSON, or requests made of the document's grants (valid or not)."""
    grants = [rule["grant"] for rule in document["rules"]]
    kind = draw(st.sampled_from(["none", "json", "request", "request"]))
    if kind == "none":
        return NO_BODY
    if kind == "json":
        return draw(json_values(6))
    body: dict[str, Json] = {}
    grant = draw(st.sampled_from(grants))
    if draw(st.booleans()):
        body["repository"] = draw(st.one_of(st.just(grant["repository"]), REPOSITORY_NAMES))
    if draw(st.booleans()):
        body["access"] = draw(st.sampled_from(["read", "publish", "write"]))
    if draw(st.booleans()):
        granted = grant.get("packages") or ["x"]
        body["packages"] = draw(
            st.lists(st.one_of(st.sampled_from(granted), package_patterns(20)), max_size=3)
        )
    if draw(st.booleans()):
        body["duration_seconds"] = draw(
            st.one_of(st.just(grant.get("max_duration", 3600)), DURATIONS, st.integers(-5, 50000))
        )
    return body


@st.composite
def cases(draw: st.DrawFn) -> tuple[RuleSet, str, dict[str, Json], object]:
    document = draw(rules_documents())
    rules = compile_document(document)
    known = draw(st.integers(0, 9)) < 9
    issuer = draw(st.sampled_from(sorted(rules.issuers))) if known else "unknown"
    return rules, issuer, draw(claims_for(document)), draw(bodies(document))


def broker_path(
    rules: RuleSet, issuer: str, claims: Mapping[str, Any], body: object
) -> tuple[Any, ...]:
    """The decision as broker.service.Broker.token makes it, step by step."""
    try:
        request = parse_token_request({} if body is NO_BODY else body)
        grant = resolve(
            rules.matching(issuer, claims),
            request,
            f"issuer {issuer!r} subject {claims.get('sub')!r}",
        )
    except BrokerError as refused:
        return ("deny", None, None, refused.slug, refused.detail)
    return ("allow", grant.rule, grant.key(), None, None)


class _Minted(Exception):
    """What the stand-in minter raises with the grant it was asked to mint."""


class _Minter:
    def token(self, identity: Identity, grant: Any, policy: str) -> Any:
        raise _Minted(grant)


SETTINGS = Settings.from_env(
    {
        "BROKER_RULES_FILE": "unused.yaml",
        "BROKER_ROLE_ARN": "arn:aws:iam::123456789012:role/TokenIssuerRole",
        "BROKER_DOMAIN": "acme",
        "BROKER_DOMAIN_OWNER": "111122223333",
        "AWS_REGION": "us-east-1",
    }
)


def broker_token(
    rules: RuleSet, issuer: str, claims: Mapping[str, Any], body: object
) -> tuple[Any, ...]:
    """The decision of broker.service.Broker.token itself (minting stood in for)."""
    broker = Broker(
        SETTINGS, rules=cast(Any, None), verifier=cast(Any, None), minter=cast(Any, _Minter())
    )
    subject = claims.get("sub")
    identity = Identity(rules.issuers[issuer], cast(str, subject), claims, "0" * 64)
    try:
        broker.token(Caller(identity, rules), {} if body is NO_BODY else body)
    except _Minted as minted:
        grant = minted.args[0]
        return ("allow", grant.rule, grant.key(), None, None)
    except BrokerError as refused:
        return ("deny", None, None, refused.slug, refused.detail)
    raise AssertionError("the stand-in minter always raises")


def outcome(explained: Explanation) -> tuple[Any, ...]:
    grant = explained.grant
    key = None
    if grant is not None:
        key = (grant.repository, grant.access, grant.packages, grant.duration_seconds)
    return (explained.decision, explained.rule, key, explained.reason, explained.detail)


def test_explain_decides_exactly_as_the_broker(capsys: pytest.CaptureFixture[str]) -> None:
    tally = Tally("explain decides as the broker")

    @fixed(400)
    @given(case=cases())
    def check(case: tuple[RuleSet, str, dict[str, Json], object]) -> None:
        rules, issuer, claims, body = case
        explained = explain(rules, issuer, claims, body, domain=Domain.of(SETTINGS))
        if issuer not in rules.issuers:
            assert (explained.reason, explained.rules) == ("invalid-token", ())
            tally.record("unknown issuer")
            return
        assert outcome(explained) == broker_path(rules, issuer, claims, body)
        assert outcome(explained) == broker_token(rules, issuer, claims, body)
        own = [rule for rule in rules.rules if rule.issuer == issuer]
        assert [t.name for t in explained.rules] == [rule.name for rule in own]
        for rule, traced in zip(own, explained.rules, strict=True):
            assert traced.matched == rule.matches(issuer, claims)
            assert traced.matched == (not traced.failed)
            assert {f.claim for f in traced.failed} <= {c.claim for c in rule.constraints}
            assert all(len(f.why.splitlines()) == 1 for f in traced.failed)
        tally.record(explained.reason or "allow")
        for kind in {f.kind for t in explained.rules for f in t.failed}:
            tally.record(f"failure: {kind}")

    check()
    tally.report(capsys)
    seen = set(tally.outcomes)
    wanted = {"allow", "no-matching-rule", "grant-exceeded", "invalid-request", "unknown issuer"}
    assert wanted | {"failure: missing", "failure: type", "failure: value"} <= seen, seen


# A full grant that fits (one pattern) and a request it covers that does not (20 long names).
LONG_NAMES = [f"acme-a-very-long-package-name-number-{i:02d}" for i in range(20)]


def test_a_grant_too_large_for_a_session_policy_is_refused_as_the_broker_refuses_it() -> None:
    claims = {"sub": "x", "repository_owner": "acme", "ref": "refs/heads/main"}
    body = {"packages": LONG_NAMES}
    explained = explain(RULES, "github", claims, body, domain=Domain.of(SETTINGS))
    assert (explained.decision, explained.reason, explained.grant) == (
        "deny",
        "policy-too-large",
        None,
    )
    assert "over the 2048" in (explained.detail or "")
    assert outcome(explained) == broker_token(RULES, "github", claims, body)
    assert [t.matched for t in explained.rules] == [True]
    # Without a domain the size is not checked: the grant the rules resolve.
    unchecked = explain(RULES, "github", claims, body)
    assert unchecked.allowed
    assert unchecked.grant is not None
    assert len(unchecked.grant.packages) == 20


def test_the_brokers_denial_trace_and_shadow_check_the_policy_size_too() -> None:
    from broker.service import _explained
    from broker.shadow import decide

    claims = {
        "sub": "x",
        "aud": "https://b.example",
        "repository_owner": "acme",
        "ref": "refs/heads/main",
    }
    body = {"packages": LONG_NAMES}
    identity = Identity(RULES.issuers["github"], "x", claims, "0" * 64)
    domain = Domain.of(SETTINGS)
    live = _explained(Caller(identity, RULES), body, domain)
    assert live is not None
    assert live.reason == "policy-too-large"
    shadow = decide(RULES, identity, body, "who", domain=domain)
    assert shadow.reason == "policy-too-large"
    assert decide(RULES, identity, body, "who").allowed  # no domain: not checked


def test_entra_ids_groups_overage_is_named_as_such() -> None:
    """A user in too many groups gets an ID token whose groups are only referenced (OpenID
    Connect Core §5.6.2): the denial says so instead of "missing claim"."""
    claims = {
        "_claim_names": {"groups": "src1"},
        "_claim_sources": {"src1": {"endpoint": "https://graph.microsoft.com/v1.0/users/x"}},
    }
    traced = explain(RULES, "corp", claims)
    engineers = next(trace for trace in traced.rules if trace.name == "engineers-read")
    assert engineers.failed == (Failure("groups", "missing", explain_module.OVERAGE),)
    assert "Entra ID" in explain_module.OVERAGE
    # a reference to another claim changes nothing for this one
    other = explain(RULES, "corp", {"_claim_names": {"roles": "src1"}})
    engineers = next(trace for trace in other.rules if trace.name == "engineers-read")
    assert engineers.failed == (Failure("groups", "missing", "missing claim"),)
