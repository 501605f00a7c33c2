"""`cabroker-admin why REQUEST_ID`: the audit line of one request, from a JSON-lines file (the
devstack's broker log) or CloudWatch Logs (a Stubber-backed client), printed for an admin:
exit 0 found, 1 not found, 2 a wrong command line."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from cabroker_admin import auditlog, whycli
from tests.admin.test_cli import one_error, run

REQUEST = "8c4e711c-2ae5-4806-abbd-44e86177f5f7"
OTHER = "0b7a2c1d-0000-4000-8000-000000000001"
CORRELATION = "d75e224825a549b4"
DENIED: dict[str, Any] = {
    "level": "INFO",
    "message": "token denied",
    "timestamp": "2026-12-05 12:46:40,708+0000",
    "service": "cabroker",
    "function_request_id": REQUEST,
    "correlation_id": CORRELATION,
    "issuer": "github",
    "subject": "repo:acme/app:ref:refs/tags/v1",
    "id_token_sha256": "5edc18689b7f96c6ce410fd1b4f3be24121150b4ce90abd4c0c2c659f33d75a2",
    "requested": {"access": "publish"},
    "decision": "deny",
    "reason": "no-matching-rule",
    "detail": "no access rule matches issuer 'github' subject 'repo:acme/app:ref:refs/tags/v1'",
    "evaluation": {
        "rules": [
            {
                "name": "release-from-main",
                "matched": False,
                "failed": [
                    {"claim": "ref", "why": "value 'refs/tags/v1' does not match 'refs/heads/main'"}
                ],
                "more_failed": 2,
            },
            {"name": "docs-read", "matched": True, "failed": []},
        ],
        "more_rules": 3,
    },
    "shadow_disagreement": "deny-to-allow",
    "shadow_decision": "allow",
    "shadow_rule": "tags-publish",
    "shadow_grant": {
        "repository": "internal",
        "access": "publish",
        "packages": ["acme-*"],
        "duration_seconds": 3600,
        "max_duration": 3600,
    },
}
ALLOWED: dict[str, Any] = {
    "level": "INFO",
    "message": "token issued",
    "timestamp": "2026-12-05 12:46:41,000+0000",
    "function_request_id": OTHER,
    "issuer": "corp",
    "subject": "alice",
    "id_token_sha256": "ab" * 32,
    "requested": {},
    "rule": "engineers-read",
    "repository": "internal",
    "access": "read",
    "packages": [],
    "duration_seconds": 43200,
    "decision": "allow",
    "expires_at": "2026-12-06T00:46:41Z",
    "shadow_disagreement": "allow-to-deny",
    "shadow_decision": "deny",
    "shadow_reason": "no-matching-rule",
    "shadow_evaluation": {
        "rules": [
            {
                "name": "engineers-read",
                "matched": False,
                "failed": [{"claim": "groups", "why": "missing claim"}],
            }
        ]
    },
}

EXPECTED_DENIAL = "\n".join(
    [
        f"request {REQUEST} ({{where}})",
        "at:       2026-12-05 12:46:40,708+0000",
        "decision: deny (no-matching-rule)",
        "who:      issuer 'github', subject 'repo:acme/app:ref:refs/tags/v1' "
        "(ID token sha256 5edc18689b7f96c6…)",
        'asked:    access "publish"',
        "told:     no access rule matches issuer 'github' subject 'repo:acme/app:ref:refs/tags/v1'",
        "rules of issuer 'github' (5):",
        "  release-from-main: not matched",
        "    claims.ref: value 'refs/tags/v1' does not match 'refs/heads/main'",
        "    and 2 more failing constraints",
        "  docs-read: matched",
        "  and 3 more rules, further from matching (not logged)",
        "shadow:   the shadow rules would allow by rule 'tags-publish': publish access to "
        "repository 'internal' for packages 'acme-*', 3600 s [deny-to-allow]",
        "log lines of the request, warnings and errors:",
        "  WARNING: serving stale issuer keys: the keys could not be fetched",
        "",
    ]
)


@pytest.fixture
def broker_log(tmp_path: Path) -> Path:
    """A devstack broker log: the function's JSON lines, EMF metrics, the gateway's access
    log, lines of other requests, and lines that are not JSON at all."""
    lines = [
        json.dumps({"level": "INFO", "message": "rules loaded", "function_request_id": OTHER}),
        "Traceback (most recent call last):",
        json.dumps(
            {
                "level": "WARNING",
                "message": "serving stale issuer keys",
                "reason": "the keys could not be fetched",
                "function_request_id": REQUEST,
            }
        ),
        '{"_aws": {"Timestamp": 1}, "Denials": [1.0], "reason": "no-matching-rule"}',
        json.dumps(DENIED),
        '{"ip": "127.0.0.1", "httpMethod": "POST", "path": "/v1/token", "status": 403}',
        '{"truncated": ',
        "[1, 2]",
        json.dumps(ALLOWED),
    ]
    path = tmp_path / "broker.log"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_denial_is_explained_from_the_devstack_log(
    broker_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "why", REQUEST, "--log-file", str(broker_log))
    assert (code, err) == (0, "")
    assert out == EXPECTED_DENIAL.format(where=broker_log)


def test_api_gateways_request_id_finds_it_too(
    broker_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "why", CORRELATION, "--log-file", str(broker_log))
    assert code == 0
    assert "decision: deny (no-matching-rule)" in out


def test_an_allowed_request_and_the_shadow_that_would_deny_it(
    broker_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "why", OTHER, "--log-file", str(broker_log))
    assert code == 0
    assert out.splitlines()[1:] == [
        "at:       2026-12-05 12:46:41,000+0000",
        "decision: allow by rule 'engineers-read'",
        f"who:      issuer 'corp', subject 'alice' (ID token sha256 {'ab' * 8}…)",
        "asked:    nothing named (every field defaults from the matching rule)",
        "granted:  read access to repository 'internal', 43200 s (expires 2026-12-06T00:46:41Z)",
        "shadow:   the shadow rules would deny (no-matching-rule) [allow-to-deny]",
        "  rules of issuer 'corp' (1):",
        "    engineers-read: not matched",
        "      claims.groups: missing claim",
    ]


def test_json_prints_the_requests_lines(
    broker_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "why", REQUEST, "--log-file", str(broker_log), "--format", "json")
    assert code == 0
    document = json.loads(out)
    assert document["audit"] == DENIED
    assert [line["message"] for line in document["lines"]] == [
        "serving stale issuer keys",
        "token denied",
    ]


def write(path: Path, *lines: Mapping[str, Any]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def test_a_request_refused_before_its_id_token_was_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write(
        tmp_path / "broker.log",
        {
            "level": "INFO",
            "message": "authentication failed",
            "function_request_id": REQUEST,
            "decision": "deny",
            "reason": "send the OIDC ID token as 'Authorization: Bearer <ID token>'",
        },
    )
    code, out, _ = run(capsys, "why", REQUEST, "--log-file", str(log))
    assert code == 0
    assert out.splitlines()[1:] == [
        "decision: deny: authentication failed: send the OIDC ID token as "
        "'Authorization: Bearer <ID token>'",
        "who:      not identified (no verified ID token)",
    ]


def test_a_request_that_failed_before_a_decision_shows_its_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write(
        tmp_path / "broker.log",
        {
            "level": "ERROR",
            "message": "rules document is invalid; refusing to serve",
            "reason": "rule 'x': field 'grant' is required",
            "function_request_id": REQUEST,
        },
    )
    code, out, _ = run(capsys, "why", REQUEST, "--log-file", str(log))
    assert code == 0
    assert out.splitlines()[1:] == [
        "no decision was logged for this request (it failed before one was made)",
        "log lines of the request, warnings and errors:",
        "  ERROR: rules document is invalid; refusing to serve: rule 'x': field 'grant' is "
        "required",
    ]


def test_a_request_not_in_the_file_is_exit_1(
    broker_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = "ffffffff-0000-4000-8000-000000000000"
    code, out, err = run(capsys, "why", missing, "--log-file", str(broker_log))
    assert (code, out) == (1, "")
    assert one_error(err) == f"cabroker-admin: request {missing}: no log line in {broker_log}"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["why", "x' || 1", "--log-file", "f"], "is not a request id"),
        (["why", REQUEST, "--log-file", "/nowhere/broker.log"], "/nowhere/broker.log: cannot read"),
        (["why", REQUEST, "--log-group", "g", "--since", "1w"], "--since '1w' is not a duration"),
        (["why", REQUEST, "--log-file", "f", "--region", "eu-west-1"], "--region goes with"),
        (["why", REQUEST, "--stack", "1bad"], "--stack '1bad' is not a CloudFormation stack"),
    ],
)
def test_a_wrong_command_line_is_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert message in one_error(err)


def test_one_source_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "why", REQUEST)
    assert code == 2
    assert "one of the arguments --stack --log-group --log-file is required" in err


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("12h", 43200), ("7d", 604800)])
def test_since_durations(text: str, seconds: int) -> None:
    assert auditlog.since(text).total_seconds() == seconds


# --------------------------------------------------------------------------- CloudWatch Logs

GROUP = "/aws/lambda/cabroker-BrokerFunction-AbC123"
PATTERN = f'{{ ($.function_request_id = "{REQUEST}") || ($.correlation_id = "{REQUEST}") }}'


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    client = boto3.client("logs", region_name="us-east-1")
    with Stubber(client) as stubber:
        monkeypatch.setattr(whycli, "_logs", lambda session: client)
        yield stubber
        stubber.assert_no_pending_responses()


def event(line: Mapping[str, Any], timestamp: int) -> dict[str, Any]:
    return {"logStreamName": "s", "timestamp": timestamp, "message": json.dumps(line) + "\n"}


def test_cloudwatch_is_searched_page_by_page(
    logs: Stubber, capsys: pytest.CaptureFixture[str]
) -> None:
    warning = {
        "level": "WARNING",
        "message": "serving stale issuer keys",
        "reason": "the keys could not be fetched",
        "function_request_id": REQUEST,
    }
    expected = {"logGroupName": GROUP, "filterPattern": PATTERN, "startTime": ANY}
    logs.add_response(
        "filter_log_events",
        {"events": [event(DENIED, 20)], "nextToken": "page-2"},
        expected,
    )
    logs.add_response(
        "filter_log_events",
        {"events": [event(warning, 10), {"timestamp": 30, "message": "START RequestId: x"}]},
        {**expected, "nextToken": "page-2"},
    )
    code, out, err = run(capsys, "why", REQUEST, "--log-group", GROUP)
    assert (code, err) == (0, "")
    assert out == EXPECTED_DENIAL.format(where=GROUP)


def test_stack_finds_the_functions_log_group(
    logs: Stubber, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cloudformation = boto3.client("cloudformation", region_name="us-east-1")
    with Stubber(cloudformation) as stacks:
        stacks.add_response(
            "describe_stack_resource",
            {
                "StackResourceDetail": {
                    "LogicalResourceId": "BrokerFunctionLogGroup",
                    "PhysicalResourceId": GROUP,
                    "ResourceType": "AWS::Logs::LogGroup",
                    "LastUpdatedTimestamp": "2026-12-01T00:00:00Z",
                    "ResourceStatus": "CREATE_COMPLETE",
                }
            },
            {"StackName": "cabroker", "LogicalResourceId": "BrokerFunctionLogGroup"},
        )
        monkeypatch.setattr(whycli, "_stacks", lambda session: cloudformation)
        logs.add_response(
            "filter_log_events",
            {"events": [event(DENIED, 20)]},
            {"logGroupName": GROUP, "filterPattern": PATTERN, "startTime": ANY},
        )
        code, out, _ = run(capsys, "why", REQUEST, "--stack", "cabroker")
    assert code == 0
    assert out.startswith(f"request {REQUEST} ({GROUP})\n")


def test_nothing_found_in_cloudwatch_is_exit_1(
    logs: Stubber, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.add_response("filter_log_events", {"events": []})
    code, out, err = run(capsys, "why", REQUEST, "--log-group", GROUP, "--since", "2h")
    assert (code, out) == (1, "")
    assert one_error(err) == (
        f"cabroker-admin: request {REQUEST}: no log line in the last 2h in {GROUP}"
    )


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("ResourceNotFoundException", f"cabroker-admin: log group {GROUP}: not found"),
        (
            "AccessDeniedException",
            f"cabroker-admin: logs:FilterLogEvents on log group {GROUP} failed: "
            "AccessDeniedException: not allowed",
        ),
    ],
)
def test_a_cloudwatch_error_is_one_line(
    logs: Stubber, capsys: pytest.CaptureFixture[str], code: str, message: str
) -> None:
    logs.add_client_error("filter_log_events", code, "not allowed")
    exit_code, _, err = run(capsys, "why", REQUEST, "--log-group", GROUP)
    assert exit_code == 1
    assert one_error(err) == message


class _Endless:
    """FilterLogEvents that always has another page (a huge log group, a long --since)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def filter_log_events(self, **kwargs: Any) -> Mapping[str, Any]:
        self.calls.append(kwargs)
        events = [event(DENIED, 1)] if len(self.calls) == 1 else []
        return {"events": events, "nextToken": f"page-{len(self.calls)}"}


def test_the_search_stops_after_max_pages_and_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    endless = _Endless()
    monkeypatch.setattr(whycli, "_logs", lambda session: endless)
    monkeypatch.setattr(auditlog, "MAX_PAGES", 3)
    code, out, err = run(capsys, "why", REQUEST, "--log-group", GROUP, "--since", "30m")
    assert code == 0
    assert "decision: deny (no-matching-rule)" in out
    assert "searched 3 pages without reaching the end" in one_error(err)
    assert len(endless.calls) == 3
    start = endless.calls[0]["startTime"]
    assert all(call["startTime"] == start for call in endless.calls)
