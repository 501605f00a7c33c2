"""Why was I denied? Every problem body names the request's id, the id its audit line carries
(``function_request_id``); a token denial's audit line holds the evaluation of the caller's
issuer's rules (bounded, never a token) while the caller's ``detail`` stays what it was."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from broker.explain import (
    AUDIT_MAX_CHARS,
    AUDIT_MAX_FAILURES,
    AUDIT_MAX_RULES,
    RuleTrace,
    audit_trace,
)
from broker.explain import Failure as TracedFailure
from tests.conftest import GITHUB_CLAIMS, Answer
from tests.support.events import Context, http_event
from tests.support.logs import LogLines
from tests.support.oidc import LocalIssuer


def ask(event: dict[str, Any], request_id: str) -> Answer:
    """One invocation of the real handler, as Lambda makes it with ``request_id``."""
    from broker import app

    raw = app.handler(event, Context(aws_request_id=request_id))  # type: ignore[arg-type]
    body = raw.get("body") or ""
    return Answer(raw["statusCode"], dict(raw.get("headers") or {}), json.loads(body), raw)


# --------------------------------------------------------------------------- request ids


@pytest.mark.usefixtures("broker")
@pytest.mark.parametrize(
    ("method", "path", "extra", "status", "problem"),
    [
        pytest.param("POST", "/v1/token", {}, 401, "missing-token", id="no-header"),
        pytest.param(
            "POST",
            "/v1/token",
            {"headers": {"Authorization": "Basic abc"}},
            401,
            "invalid-token",
            id="not-bearer",
        ),
        pytest.param("POST", "/v1/token", {"token": "a.b.c"}, 401, "invalid-token", id="bad-jwt"),
        pytest.param("GET", "/v1/grants", {}, 401, "missing-token", id="grants"),
        pytest.param("GET", "/nowhere", {}, 404, "not-found", id="no-route"),
        pytest.param("DELETE", "/v1/token", {}, 405, "method-not-allowed", id="wrong-method"),
    ],
)
def test_every_problem_names_the_request_id_its_log_lines_carry(
    log_lines: LogLines,
    method: str,
    path: str,
    extra: dict[str, Any],
    status: int,
    problem: str,
) -> None:
    request_id = f"4f1c2d3e-0000-4000-8000-{status:012d}"
    answer = ask(http_event(method, path, **extra), request_id)
    assert (answer.status, answer.problem_type) == (status, problem)
    assert answer.body["request_id"] == request_id
    assert {line.get("function_request_id") for line in log_lines.lines} <= {request_id}
    if status == 401:  # refused before any ID token was verified: still an audit line
        audit = log_lines.audit(request_id)
        assert (audit["message"], audit["decision"]) == ("authentication failed", "deny")


def test_each_token_denial_has_one_audit_line_under_the_problems_request_id(
    github: LocalIssuer,
    corp: LocalIssuer,
    broker: Any,
    log_lines: LogLines,
) -> None:
    tag = github.mint(**{**GITHUB_CLAIMS, "ref": "refs/tags/v1"})
    engineer = corp.mint(sub="alice", groups=["engineering"])
    cases = {
        "no-matching-rule": http_event("POST", "/v1/token", token=tag, body={}),
        "grant-exceeded": http_event(
            "POST", "/v1/token", token=engineer, body={"access": "publish"}
        ),
        "invalid-request": http_event("POST", "/v1/token", token=engineer, body={"nope": 1}),
        "unsupported-media-type": http_event(
            "POST", "/v1/token", token=engineer, raw_body="{}", headers={"content-type": "text/x"}
        ),
    }
    for number, (reason, event) in enumerate(cases.items()):
        request_id = f"aaaaaaaa-0000-4000-8000-{number:012d}"
        answer = ask(event, request_id)
        assert (answer.problem_type, answer.body["request_id"]) == (reason, request_id)
        audit = log_lines.audit(request_id)
        assert (audit["decision"], audit["reason"]) == ("deny", reason)
        assert audit["detail"] == answer.body["detail"]
        assert "evaluation" in audit
        assert "evaluation" not in answer.body
        assert audit["correlation_id"] == "req-1"  # API Gateway's id, which `why` takes too


# --------------------------------------------------------------------------- the evaluation


def test_a_denials_audit_line_says_which_constraint_failed_and_why(
    call: Any, github: LocalIssuer, log_lines: LogLines
) -> None:
    claims: dict[str, Any] = {
        "ref": "refs/tags/v1",
        "repository_owner": "evil",
        "repository": "evil/app",
    }
    token = github.mint(sub="repo:evil/app:ref:refs/tags/v1", **claims)
    answer = call("POST", "/v1/token", token=token, body={"access": "publish"})
    assert answer.status == 403
    audit = log_lines.audit(answer.body["request_id"])
    assert audit["requested"] == {"access": "publish"}
    assert audit["evaluation"] == {
        "rules": [
            {
                "name": "release-from-main",
                "matched": False,
                "failed": [
                    {"claim": "repository_owner", "why": "value 'evil' does not match 'acme'"},
                    {
                        "claim": "ref",
                        "why": "value 'refs/tags/v1' does not match 'refs/heads/main'",
                    },
                    {"claim": "repository", "why": "value 'evil/app' does not match 'acme/*'"},
                ],
            }
        ]
    }
    # The caller is told what was asked, never the rule or its patterns.
    for private in ("release-from-main", "refs/heads/main", "acme"):
        assert private not in answer.body["detail"]


def test_a_matched_rule_that_grants_too_little_is_traced_as_matched(
    call: Any, corp_token: str, log_lines: LogLines
) -> None:
    answer = call("POST", "/v1/token", token=corp_token, body={"access": "publish"})
    assert answer.problem_type == "grant-exceeded"
    audit = log_lines.audit(answer.body["request_id"])
    assert audit["evaluation"]["rules"] == [
        {"name": "engineers-read", "matched": True, "failed": []}
    ]


def test_an_allowed_request_has_no_evaluation(
    call: Any, github_token: str, log_lines: LogLines
) -> None:
    answer = call("POST", "/v1/token", token=github_token, body={})
    assert answer.status == 200
    audit = log_lines.audit("00000000-0000-4000-8000-000000000000")
    assert audit["decision"] == "allow"
    assert "evaluation" not in audit
    assert audit["requested"] == {}


MANY_RULES_HEAD = """\
version: 1
issuers:
  github: {{url: "{github}", audience: codeartifact-broker}}
  corp:   {{url: "{corp}", audience: cabroker, client_id: cabroker-cli}}
rules:
"""


@pytest.fixture
def many_rules(rules_file: Path, github: LocalIssuer, corp: LocalIssuer) -> None:
    """30 rules of the github issuer, each with 8 claim constraints of long alternatives."""
    lines = [MANY_RULES_HEAD.format(github=github.url, corp=corp.url)]
    long = "x" * 80
    for number in range(30):
        claims = ", ".join(
            f'c{claim}: ["{long}{number}-{claim}-a", "{long}-b", "{long}-c", "{long}-d", '
            f'"{long}-e", "{long}-f", "{long}-g"]'
            for claim in range(8)
        )
        lines.append(
            f"  - name: rule-{number:02d}-{'n' * 40}\n"
            f"    issuer: github\n"
            f"    claims: {{{claims}}}\n"
            f"    grant: {{repository: internal, access: read}}\n"
        )
    rules_file.write_text("".join(lines), encoding="utf-8")


@pytest.mark.usefixtures("many_rules")
def test_the_evaluation_is_bounded(call: Any, github: LocalIssuer, log_lines: LogLines) -> None:
    claims: dict[str, Any] = {f"c{claim}": "y" * 300 for claim in range(8)}
    claims["c0"] = "x" * 80 + "7-0-a"  # rule 7 fails one constraint fewer: it comes first
    token = github.mint(**claims)
    answer = call("POST", "/v1/token", token=token, body={})
    assert answer.problem_type == "no-matching-rule"
    audit = log_lines.audit(answer.body["request_id"])
    evaluation = audit["evaluation"]
    assert len(evaluation["rules"]) == AUDIT_MAX_RULES
    assert evaluation["more_rules"] == 30 - AUDIT_MAX_RULES
    kept = [rule["name"][:7] for rule in evaluation["rules"]]
    assert kept == [f"rule-{n:02d}" for n in range(AUDIT_MAX_RULES)]  # in the document's order
    assert any(
        len(failure["why"]) == AUDIT_MAX_CHARS for failure in evaluation["rules"][0]["failed"]
    )
    for rule in evaluation["rules"]:
        assert len(rule["failed"]) == AUDIT_MAX_FAILURES
        failing = 7 if rule["name"].startswith("rule-07") else 8
        assert len(rule["failed"]) + rule["more_failed"] == failing
        for failure in rule["failed"]:
            assert len(failure["why"]) <= AUDIT_MAX_CHARS
    # The whole line stays a few KB, far below CloudWatch's 256 KB a log event.
    assert len(json.dumps(audit)) < 40_000


def test_audit_trace_keeps_the_closest_rules_in_document_order() -> None:
    def traced(name: str, failures: int) -> RuleTrace:
        failed = tuple(TracedFailure(f"c{n}", "value", "w" * 400) for n in range(failures))
        return RuleTrace(name=name, matched=failures == 0, failed=failed)

    traces = [traced("far", 3), traced("near", 1), traced("hit", 0), traced("farther", 4)]
    bounded = audit_trace(traces, max_rules=2, max_failures=1, max_chars=10)
    assert [rule["name"] for rule in bounded["rules"]] == ["near", "hit"]
    assert bounded["more_rules"] == 2
    near = bounded["rules"][0]
    assert near["failed"] == [{"claim": "c0", "why": "w" * 9 + "…"}]
    assert "more_failed" not in near
    everything = audit_trace(traces)
    assert [rule["name"] for rule in everything["rules"]] == ["far", "near", "hit", "farther"]
    assert "more_rules" not in everything


def test_an_evaluation_that_fails_never_changes_the_answer(
    call: Any,
    github: LocalIssuer,
    log_lines: LogLines,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from broker import explain

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in the trace")

    monkeypatch.setattr(explain, "explain", broken)
    token = github.mint(**{**GITHUB_CLAIMS, "ref": "refs/tags/v1"})
    answer = call("POST", "/v1/token", token=token, body={})
    assert answer.problem_type == "no-matching-rule"
    audit = log_lines.audit(answer.body["request_id"])
    assert "evaluation" not in audit
    assert "the evaluation trace failed" in log_lines.messages()
