"""Shadow rules (broker.shadow): a second document decides every token request after the live
decision and never changes the answer; where it decides otherwise, the audit line says how
(``shadow_disagreement``, ``shadow_decision``, ``shadow_rule``, ``shadow_reason``…) and
``ShadowDisagreements`` counts it. An invalid, missing or failing shadow is logged, counted
(``ShadowErrors``) and skipped.

The property: over generated documents, identities and requests, the broker's answer (the
token response or the problem body) is the same without a shadow, with a valid one, an invalid
one, an unreadable one and one whose evaluation fails.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.explain import NO_BODY, explain
from broker.identity import Identity
from broker.minted import MintedToken
from broker.problems import BrokerError, problem_body
from broker.rules import RuleSet, compile_document, parse
from broker.rulesource import RulesSource, SourceError
from broker.service import Broker, Caller
from broker.settings import Settings, SettingsError
from broker.shadow import Shadow, decide, disagreement
from tests.conftest import GITHUB_CLAIMS, RULES
from tests.support.codeartifact import FakeCodeArtifact
from tests.support.logs import LogLines
from tests.support.oidc import LocalIssuer
from tests.unit.broker.strategies import Json, Tally, fixed, rules_documents
from tests.unit.broker.test_explain import bodies, claims_for

# --------------------------------------------------------------------------- through the handler


@pytest.fixture
def shadow_file(tmp_path: Path) -> Path:
    return tmp_path / "shadow-rules.yaml"


@pytest.fixture
def env(env: dict[str, str], shadow_file: Path) -> dict[str, str]:
    # A failed load is retried at the next request (the default waits a minute).
    return {
        **env,
        "BROKER_SHADOW_RULES_FILE": str(shadow_file),
        "BROKER_RULES_CACHE_SECONDS": "0",
        "BROKER_REPOSITORIES": "internal",
    }


def document(github: LocalIssuer, corp: LocalIssuer, *edits: tuple[str, str]) -> str:
    """The tests' live rules (tests/conftest.py RULES), edited."""
    text = RULES.format(github=github.url, corp=corp.url)
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    return text


def metrics(capfd: pytest.CaptureFixture[str], name: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if '"_aws"' in line]
    return [line for line in lines if name in line]


SHADOW_FIELDS = {"shadow_disagreement", "shadow_decision", "shadow_rule", "shadow_reason"}

CONTRACTORS = """\
  - name: contractors-read
    issuer: corp
    claims: {groups: contractors}
    grant: {repository: internal, access: read, max_duration: 3600}
"""


def test_a_tightened_shadow_names_whom_it_would_lock_out(
    call: Any,
    github: LocalIssuer,
    corp: LocalIssuer,
    github_token: str,
    shadow_file: Path,
    log_lines: LogLines,
    capfd: pytest.CaptureFixture[str],
) -> None:
    tightened = ("ref: refs/heads/main", "ref: refs/heads/release")
    shadow_file.write_text(document(github, corp, tightened), encoding="utf-8")
    answer = call("POST", "/v1/token", token=github_token, body={"access": "publish"})
    assert answer.status == 200  # the live rules answer
    audit = log_lines.audit("00000000-0000-4000-8000-000000000000")
    assert audit["decision"] == "allow"
    assert {key: audit.get(key) for key in SHADOW_FIELDS} == {
        "shadow_disagreement": "allow-to-deny",
        "shadow_decision": "deny",
        "shadow_rule": None,
        "shadow_reason": "no-matching-rule",
    }
    assert audit["shadow_evaluation"] == {
        "rules": [
            {
                "name": "release-from-main",
                "matched": False,
                "failed": [
                    {
                        "claim": "ref",
                        "why": "value 'refs/heads/main' does not match 'refs/heads/release'",
                    }
                ],
            }
        ]
    }
    (counted,) = metrics(capfd, "ShadowDisagreements")
    assert counted["kind"] == "allow-to-deny"
    assert counted["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "CodeArtifactBroker"


@pytest.mark.parametrize(
    ("edits", "who", "body", "status", "expected"),
    [
        pytest.param(
            [("rules:\n", "rules:\n" + CONTRACTORS)],
            "contractor",
            {},
            403,
            {
                "shadow_disagreement": "deny-to-allow",
                "shadow_decision": "allow",
                "shadow_rule": "contractors-read",
                "shadow_reason": None,
            },
            id="deny-to-allow",
        ),
        pytest.param(
            [("access: read, max_duration: 43200", "access: read, max_duration: 3600")],
            "engineer",
            {},
            200,
            {
                "shadow_disagreement": "grant",
                "shadow_decision": "allow",
                "shadow_rule": "engineers-read",
                "shadow_reason": None,
            },
            id="another-grant",
        ),
        pytest.param(
            [("name: engineers-read", "name: engineers-read-v2")],
            "engineer",
            {},
            200,
            {
                "shadow_disagreement": "rule",
                "shadow_decision": "allow",
                "shadow_rule": "engineers-read-v2",
                "shadow_reason": None,
            },
            id="another-rule",
        ),
        pytest.param(
            [("  corp:   {url", "  staff:  {url"), ("issuer: corp", "issuer: staff")],
            "engineer",
            {},
            200,
            {},
            id="issuer-renamed-agrees",
        ),
        pytest.param(
            [
                ('  corp:   {url: "{corp}", audience: cabroker, client_id: cabroker-cli}\n', ""),
                ("issuer: corp", "issuer: github"),
            ],
            "engineer",
            {},
            200,
            {
                "shadow_disagreement": "allow-to-deny",
                "shadow_decision": "deny",
                "shadow_rule": None,
                "shadow_reason": "invalid-token",
            },
            id="issuer-dropped",
        ),
        pytest.param(
            [("audience: cabroker,", "audience: other,")],
            "engineer",
            {},
            200,
            {
                "shadow_disagreement": "allow-to-deny",
                "shadow_decision": "deny",
                "shadow_rule": None,
                "shadow_reason": "invalid-token",
            },
            id="audience-changed",
        ),
        pytest.param(
            [("access: read, max_duration: 43200", "access: read, max_duration: 3600")],
            "engineer",
            {"access": "publish"},
            403,
            {},
            id="both-deny-agree",
        ),
        pytest.param([], "engineer", {}, 200, {}, id="same-document-agrees"),
    ],
)
def test_each_kind_of_disagreement_is_on_the_audit_line(
    call: Any,
    github: LocalIssuer,
    corp: LocalIssuer,
    shadow_file: Path,
    log_lines: LogLines,
    capfd: pytest.CaptureFixture[str],
    edits: list[tuple[str, str]],
    who: str,
    body: dict[str, Any],
    status: int,
    expected: dict[str, Any],
) -> None:
    edits = [(old.replace("{corp}", corp.url), new) for old, new in edits]
    shadow_file.write_text(document(github, corp, *edits), encoding="utf-8")
    groups = ["contractors"] if who == "contractor" else ["engineering"]
    token = corp.mint(sub="alice", groups=groups)
    answer = call("POST", "/v1/token", token=token, body=body)
    assert answer.status == status
    audit = log_lines.audit("00000000-0000-4000-8000-000000000000")
    if expected:  # the log leaves out the fields that are None
        assert {key: audit.get(key) for key in SHADOW_FIELDS} == expected
    else:
        assert not SHADOW_FIELDS & set(audit)
    counted = [m["kind"] for m in metrics(capfd, "ShadowDisagreements")]
    assert counted == ([expected["shadow_disagreement"]] if expected else [])
    if expected.get("shadow_decision") == "allow":
        assert audit["shadow_grant"]["repository"] == "internal"
    if expected.get("shadow_reason") == "invalid-token":
        assert audit["shadow_evaluation"] == {"rules": []}


@pytest.mark.parametrize(
    ("content", "logged"),
    [
        pytest.param("version: 1\nrules: [\n", "shadow rules document is invalid", id="invalid"),
        pytest.param(None, "shadow rules source unavailable", id="missing"),
        pytest.param(
            "version: 1\nissuers:\n  x: {url: 'https://x.example', audience: a}\nrules:\n"
            "  - {name: r, issuer: x, claims: {sub: s}, "
            "grant: {repository: other, access: read}}\n",
            "shadow rules document is invalid",
            id="refused-by-the-acceptance-check",
        ),
    ],
)
def test_a_broken_shadow_is_logged_counted_and_skipped(
    call: Any,
    github_token: str,
    corp: LocalIssuer,
    shadow_file: Path,
    log_lines: LogLines,
    capfd: pytest.CaptureFixture[str],
    content: str | None,
    logged: str,
) -> None:
    if content is not None:
        shadow_file.write_text(content, encoding="utf-8")
    allowed = call("POST", "/v1/token", token=github_token, body={})
    denied = call("POST", "/v1/token", token=corp.mint(sub="m", groups=["x"]), body={})
    assert (allowed.status, denied.problem_type) == (200, "no-matching-rule")
    assert any(message.startswith(logged) for message in log_lines.messages())
    assert all(not SHADOW_FIELDS & set(line) for line in log_lines.lines)
    errors = metrics(capfd, "ShadowErrors")
    assert [m["reason"] for m in errors] == ["rules-unavailable"] * 2  # each attempt counted


def test_a_failing_shadow_evaluation_never_changes_the_answer(
    call: Any,
    github: LocalIssuer,
    corp: LocalIssuer,
    github_token: str,
    shadow_file: Path,
    log_lines: LogLines,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from broker import shadow

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in the shadow")

    monkeypatch.setattr(shadow, "decide", broken)
    shadow_file.write_text(document(github, corp), encoding="utf-8")
    assert call("POST", "/v1/token", token=github_token, body={}).status == 200
    assert "shadow evaluation failed" in log_lines.messages()
    assert [m["reason"] for m in metrics(capfd, "ShadowErrors")] == ["evaluation-failed"]


def test_no_token_or_id_token_in_any_log_line_with_a_shadow(
    call: Any,
    github: LocalIssuer,
    corp: LocalIssuer,
    shadow_file: Path,
    codeartifact: FakeCodeArtifact,
    log_lines: LogLines,
    capfd: pytest.CaptureFixture[str],
) -> None:
    shadow_file.write_text(
        document(github, corp, ("ref: refs/heads/main", "ref: refs/heads/x")), encoding="utf-8"
    )
    id_tokens = [
        github.mint(**GITHUB_CLAIMS),
        github.mint(**{**GITHUB_CLAIMS, "ref": "refs/tags/v1"}),
        corp.mint(sub="alice", groups=["engineering"]),
    ]
    for id_token in id_tokens:
        call("POST", "/v1/token", token=id_token, body={})
        call("POST", "/v1/token", token=id_token, body={"access": "publish"})
        call("POST", "/v1/token", token=id_token, raw_body="{", headers={"content-type": "x/y"})
    assert codeartifact.tokens
    everything = capfd.readouterr().out + json.dumps(log_lines.lines)
    assert "shadow_disagreement" in everything
    for secret in [*codeartifact.tokens, *id_tokens]:
        for part in secret.split("."):
            assert part[:32] not in everything


def test_at_most_one_shadow_document_is_configured(env: dict[str, str]) -> None:
    both = {**env, "BROKER_SHADOW_RULES_PARAMETER": "/cabroker/x/shadow-rules"}
    with pytest.raises(SettingsError, match="at most one of BROKER_SHADOW_RULES_FILE"):
        Settings.from_env(both)
    settings = Settings.from_env({**env, "BROKER_SHADOW_RULES_FILE": ""})
    assert (settings.shadow_rules_file, settings.shadow_rules_parameter) == (None, None)


# --------------------------------------------------------------------------- the Shadow itself

LIVE = parse(
    """\
version: 1
issuers:
  corp: {url: "https://login.example.com", audience: cabroker}
rules:
  - name: engineers-read
    issuer: corp
    claims: {groups: engineering}
    grant: {repository: internal, access: read, max_duration: 43200}
"""
)


def identity(claims: Mapping[str, Any], rules: RuleSet = LIVE) -> Identity:
    issuer = rules.issuers["corp"]
    full = {"sub": "alice", "aud": issuer.audience, **claims}
    return Identity(issuer, "alice", full, "0" * 64)


def test_a_failed_load_is_retried_only_after_the_retry_period() -> None:
    now = [0.0]
    loads: list[float] = []

    def load() -> str:
        loads.append(now[0])
        raise SourceError("not pushed yet")

    shadow = Shadow(RulesSource(load, "test", shadow=True), retry_seconds=60, clock=lambda: now[0])
    for moment in (0.0, 30.0, 59.9, 60.0, 61.0, 120.5):
        now[0] = moment
        assert shadow.rules() is None
    assert loads == [0.0, 60.0, 120.5]


def test_the_shadow_maps_the_issuer_by_its_url() -> None:
    renamed = parse(
        """\
version: 1
issuers:
  staff: {url: "https://login.example.com", audience: cabroker}
rules:
  - name: staff-read
    issuer: staff
    claims: {groups: engineering}
    grant: {repository: internal, access: read, max_duration: 43200}
"""
    )
    caller = identity({"groups": ["engineering"]})
    live = explain(LIVE, "corp", caller.claims)
    shadow = decide(renamed, caller, {}, "who")
    assert (shadow.decision, shadow.rule) == ("allow", "staff-read")
    assert disagreement(live, shadow) == "rule"
    several = identity({"groups": ["engineering"], "aud": ["cabroker", "other"]})
    refused = decide(renamed, several, {}, "who")  # no azp: the broker would refuse it too
    assert (refused.decision, refused.reason) == ("deny", "invalid-token")


# --------------------------------------------------------------------------- the property


class _Minter:
    """Mints a token that names the grant, so two answers compare whole."""

    def token(self, identity: Identity, grant: Any, policy: str) -> tuple[MintedToken, str]:
        minted = MintedToken(
            token=f"token-{grant.rule}-{grant.duration_seconds}",
            expires_at=datetime(2030, 1, 1, tzinfo=UTC),
            endpoint=f"https://example.com/pypi/{grant.repository}/",
            session="corp.alice",
        )
        return minted, "minted"


SETTINGS = Settings.from_env(
    {
        "BROKER_RULES_FILE": "unused.yaml",
        "BROKER_ROLE_ARN": "arn:aws:iam::123456789012:role/TokenIssuerRole",
        "BROKER_DOMAIN": "acme",
        "BROKER_DOMAIN_OWNER": "111122223333",
        "AWS_REGION": "us-east-1",
    }
)


class _BrokenShadow(Shadow):
    def rules(self) -> RuleSet | None:
        raise RuntimeError("a bug")


def answer(shadow: Shadow | None, caller: Caller, body: object) -> tuple[str, Any]:
    broker = Broker(
        SETTINGS,
        rules=cast(Any, None),
        verifier=cast(Any, None),
        minter=cast(Any, _Minter()),
        shadow=shadow,
    )
    try:
        return "token", broker.token(caller, body)
    except BrokerError as refused:
        return "problem", problem_body(refused, "/v1/token", "request-id")


def fixed_source(text: str) -> Shadow:
    return Shadow(RulesSource(lambda: text, "test", shadow=True), retry_seconds=0)


def unreadable() -> str:
    raise SourceError("cannot read")


@st.composite
def variations(draw: st.DrawFn, rule: dict[str, Json], suffix: str) -> dict[str, Json] | None:
    """The rule as it is, dropped (None), renamed, granting for another duration, or with
    one claim constraint only (matching more)."""
    varied = {**rule, "issuer": rule["issuer"] + suffix}
    change = draw(st.sampled_from(["same", "same", "drop", "rename", "duration", "loosen"]))
    if change == "loosen":
        first = next(iter(rule["claims"]))
        varied["claims"] = {first: rule["claims"][first]}
    if change == "drop":
        return None
    if change == "rename":
        varied["name"] = rule["name"] + "-v2"
    if change == "duration":
        grant = dict(rule["grant"])
        grant["max_duration"] = 900 if grant.get("max_duration") != 900 else 1800
        varied["grant"] = grant
    return varied


@st.composite
def shadow_cases(draw: st.DrawFn) -> tuple[RuleSet, Identity, object, str]:
    """Live rules, a verified caller of one of their issuers, a request, and a shadow document
    over the same issuers (under their own names, or renamed: a variation of the live rules,
    or others), or without them. The claims and the request are made for either document."""
    live_document = draw(rules_documents())
    live = compile_document(live_document)
    shadow_document = draw(rules_documents())
    names = sorted(live_document["issuers"])
    rename = draw(st.sampled_from(["same", "same", "renamed", "foreign"]))
    if rename != "foreign":
        suffix = "-v2" if rename == "renamed" else ""
        shadow_document["issuers"] = {
            f"{n}{suffix}": dict(live_document["issuers"][n]) for n in names
        }
        for rule in shadow_document["rules"]:
            rule["issuer"] = draw(st.sampled_from(names)) + suffix
        if draw(st.booleans()):  # a variation of the live rules themselves
            shadow_document["rules"] = [
                varied
                for rule in live_document["rules"]
                if (varied := draw(variations(rule, suffix))) is not None
            ]
    both = {"rules": live_document["rules"] + shadow_document["rules"]}
    issuer = live.issuers[draw(st.sampled_from(names))]
    claims: dict[str, Json] = {"aud": issuer.audience, **draw(claims_for(both))}
    caller = Identity(issuer, str(claims.get("sub") or "s"), claims, "0" * 64)
    body = draw(bodies(both))
    return live, caller, {} if body is NO_BODY else body, json.dumps(shadow_document)


def test_a_shadow_never_changes_an_answer(
    capsys: pytest.CaptureFixture[str], log_lines: LogLines
) -> None:
    tally = Tally("shadow rules never change an answer")

    @fixed(300)
    @given(case=shadow_cases())
    def check(case: tuple[RuleSet, Identity, object, str]) -> None:
        live, caller_identity, body, shadow_text = case
        caller = Caller(caller_identity, live)
        log_lines.lines.clear()
        alone = answer(None, caller, body)
        assert answer(fixed_source(shadow_text), caller, body) == alone
        shadowed = [line for line in log_lines.lines if "decision" in line][-1]
        kind = shadowed.get("shadow_disagreement")
        if kind in ("allow-to-deny", "grant", "rule"):
            assert alone[0] == "token"
        if kind == "deny-to-allow":
            assert alone[0] == "problem"
        tally.record(f"{alone[0]}: {kind or 'agrees'}")
        assert answer(fixed_source("version: 1\nrules: [\n"), caller, body) == alone
        unavailable = Shadow(RulesSource(unreadable, "test", shadow=True), retry_seconds=0)
        assert answer(unavailable, caller, body) == alone
        broken = _BrokenShadow(RulesSource(unreadable, "test", shadow=True), retry_seconds=0)
        assert answer(broken, caller, body) == alone

    check()
    tally.report(capsys)
    seen = set(tally.outcomes)
    wanted = {"token: agrees", "problem: agrees", "token: allow-to-deny", "problem: deny-to-allow"}
    assert wanted <= seen, seen
    assert {"token: grant", "token: rule"} & seen, seen  # each kind: the handler tests above
