"""The broker's log lines of one request, found by its request id (docs/admin.md, "Why was
I denied?").

Every problem body the broker answers names the invocation's ``request_id``, and every log line
of that invocation carries it as ``function_request_id`` (API Gateway's request id, as
``correlation_id``, is accepted too). The lines are JSON objects, one per line: in a file (the
devstack's ``.devstack/broker.log``, which also holds other lines, JSON or not) or in
CloudWatch Logs (``logs:FilterLogEvents`` on the function's log group). A request's audit line
is the one with a ``decision``; :func:`render` prints it for an admin.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from cabroker_admin.errors import AdminError, UsageError, aws_call, aws_error, error_code

# Lambda's request ids are UUIDs and API Gateway's are short alphanumerics: letters, digits and
# hyphens, which is also all a CloudWatch filter pattern may be given here.
REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,99}$")
ID_FIELDS = ("function_request_id", "correlation_id")
DURATION = re.compile(r"^([1-9][0-9]{0,5})([mhd])$")
UNITS = {"m": "minutes", "h": "hours", "d": "days"}
MAX_PAGES = 500  # of FilterLogEvents: the search stops there, saying so
FUNCTION_LOG_GROUP = "BrokerFunctionLogGroup"  # template.yaml's logical id


class Logs(Protocol):
    """The one CloudWatch Logs call ``why`` makes."""

    def filter_log_events(self, **kwargs: Any) -> Mapping[str, Any]: ...


class StackResources(Protocol):
    """The one CloudFormation call ``why --stack`` makes."""

    def describe_stack_resource(
        self,
        *,
        StackName: str,  # noqa: N803
        LogicalResourceId: str,  # noqa: N803
    ) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class Found:
    """The log lines of one request (oldest first) and where they were looked for."""

    request_id: str
    where: str
    lines: tuple[dict[str, Any], ...]
    complete: bool = True  # False: the search stopped before the end (MAX_PAGES)

    @property
    def audit(self) -> dict[str, Any] | None:
        """The request's audit line: its last line with a ``decision``."""
        decided = [line for line in self.lines if "decision" in line]
        return decided[-1] if decided else None


def request_id(text: str) -> str:
    if not REQUEST_ID.fullmatch(text):
        raise UsageError(
            f"{text[:120]!r} is not a request id (letters, digits and hyphens, as the "
            "problem body's request_id)"
        )
    return text


def since(text: str) -> timedelta:
    """``30m``, ``12h`` or ``7d``."""
    match = DURATION.fullmatch(text.strip())
    if match is None:
        raise UsageError(f"--since {text!r} is not a duration such as 30m, 12h or 7d")
    return timedelta(**{UNITS[match.group(2)]: int(match.group(1))})


def of_request(line: Mapping[str, Any], wanted: str) -> bool:
    return any(line.get(name) == wanted for name in ID_FIELDS)


def in_file(path: Path, wanted: str) -> Found:
    """The lines of request ``wanted`` in a JSON-lines file; any other line is skipped."""
    try:
        with path.open(encoding="utf-8", errors="replace") as lines:
            found = tuple(line for line in _objects(lines) if of_request(line, wanted))
    except OSError as error:
        raise UsageError(f"{path}: cannot read: {error.strerror or error}") from None
    return Found(wanted, str(path), found)


def in_cloudwatch(logs: Logs, group: str, wanted: str, start_ms: int) -> Found:
    """The lines of request ``wanted`` in log group ``group`` since ``start_ms`` (epoch ms)."""
    pattern = " || ".join(f'($.{name} = "{wanted}")' for name in ID_FIELDS)
    arguments: dict[str, Any] = {
        "logGroupName": group,
        "filterPattern": "{ " + pattern + " }",
        "startTime": start_ms,
    }
    found: list[tuple[int, dict[str, Any]]] = []
    for _ in range(MAX_PAGES):
        try:
            page = logs.filter_log_events(**arguments)
        except ClientError as error:
            if error_code(error) == "ResourceNotFoundException":
                raise AdminError(f"log group {group}: not found") from None
            raise aws_error("logs:FilterLogEvents", f"log group {group}", error) from None
        except BotoCoreError as error:
            raise aws_error("logs:FilterLogEvents", f"log group {group}", error) from None
        for event in page.get("events", []):
            for line in _objects([str(event.get("message", ""))]):
                if of_request(line, wanted):
                    found.append((int(event.get("timestamp", 0)), line))
        token = page.get("nextToken")
        if not token:
            break
        arguments["nextToken"] = token
    else:
        return Found(wanted, group, _by_time(found), complete=False)
    return Found(wanted, group, _by_time(found))


def function_log_group(stacks: StackResources, stack: str) -> str:
    """The broker function's log group in a deployed stack (its BrokerFunctionLogGroup)."""
    answer = aws_call(
        "cloudformation:DescribeStackResource",
        f"stack {stack}",
        lambda: stacks.describe_stack_resource(
            StackName=stack, LogicalResourceId=FUNCTION_LOG_GROUP
        ),
    )
    name = str(answer.get("StackResourceDetail", {}).get("PhysicalResourceId", ""))
    if not name:
        raise AdminError(f"stack {stack}: no {FUNCTION_LOG_GROUP} (is it a cabroker stack?)")
    return name


def _objects(lines: Iterator[str] | Sequence[str]) -> Iterator[dict[str, Any]]:
    for text in lines:
        text = text.strip()
        if not text.startswith("{"):
            continue
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, dict):
            yield value


def _by_time(found: list[tuple[int, dict[str, Any]]]) -> tuple[dict[str, Any], ...]:
    return tuple(line for _, line in sorted(found, key=lambda item: item[0]))


# --------------------------------------------------------------------------- printing


def render(found: Found) -> str:
    """What an admin reads: the decision, who, what was asked, what the caller was told, the
    evaluation of the caller's issuer's rules, and the shadow rules' decision if it differed."""
    out = [f"request {found.request_id} ({found.where})"]
    audit = found.audit
    if audit is None:
        out.append("no decision was logged for this request (it failed before one was made)")
        out += _notable(found.lines)
        return "\n".join(out)
    if audit.get("timestamp"):
        out.append(f"at:       {audit['timestamp']}")
    out.append(f"decision: {_decision(audit)}")
    out.append(f"who:      {_who(audit)}")
    if audit.get("message") == "token issued" or "requested" in audit:
        out.append(f"asked:    {_asked(audit.get('requested'))}")
    elif audit.get("message") == "token denied":
        out.append("asked:    (the request's body was refused before it was read)")
    if audit.get("decision") == "allow":
        out.append(f"granted:  {_granted(audit)}")
    if audit.get("detail"):
        out.append(f"told:     {audit['detail']}")
    evaluation = audit.get("evaluation")
    if isinstance(evaluation, dict):
        out += _evaluation(str(audit.get("issuer", "?")), evaluation)
    if audit.get("shadow_disagreement"):
        out += _shadow(audit)
    out += _notable(found.lines)
    return "\n".join(out)


def _decision(audit: Mapping[str, Any]) -> str:
    if audit.get("decision") == "allow":
        return f"allow by rule {audit.get('rule')!r}"
    reason = audit.get("reason") or "?"
    if audit.get("message") == "authentication failed":
        return f"deny: authentication failed: {reason}"
    return f"deny ({reason})"


def _who(audit: Mapping[str, Any]) -> str:
    digest = audit.get("id_token_sha256")
    token = f" (ID token sha256 {str(digest)[:16]}…)" if digest else ""
    if "issuer" not in audit:
        return "not identified (no verified ID token)" + token
    return f"issuer {audit.get('issuer')!r}, subject {audit.get('subject')!r}{token}"


def _asked(requested: object) -> str:
    if not isinstance(requested, dict) or not requested:
        return "nothing named (every field defaults from the matching rule)"
    return ", ".join(f"{name} {json.dumps(value)}" for name, value in requested.items())


def _granted(audit: Mapping[str, Any]) -> str:
    packages = audit.get("packages") or []
    named = f" for packages {', '.join(map(repr, packages))}" if packages else ""
    return (
        f"{audit.get('access')} access to repository {audit.get('repository')!r}{named}, "
        f"{audit.get('duration_seconds')} s (expires {audit.get('expires_at')})"
    )


def _evaluation(issuer: str, evaluation: Mapping[str, Any]) -> list[str]:
    rules = [rule for rule in evaluation.get("rules", []) if isinstance(rule, dict)]
    more = int(evaluation.get("more_rules", 0) or 0)
    out = [f"rules of issuer {issuer!r} ({len(rules) + more}):"]
    if not rules and not more:
        out.append("  none: no rule names this issuer")
    for rule in rules:
        out.append(f"  {rule.get('name')}: {'matched' if rule.get('matched') else 'not matched'}")
        for failure in rule.get("failed", []):
            out.append(f"    claims.{failure.get('claim')}: {failure.get('why')}")
        if rule.get("more_failed"):
            out.append(f"    and {rule['more_failed']} more failing constraints")
    if more:
        out.append(f"  and {more} more rules, further from matching (not logged)")
    return out


def _shadow(audit: Mapping[str, Any]) -> list[str]:
    kind = audit.get("shadow_disagreement")
    if audit.get("shadow_decision") == "allow":
        grant = audit.get("shadow_grant") or {}
        packages = grant.get("packages") or []
        named = f" for packages {', '.join(map(repr, packages))}" if packages else ""
        decided = (
            f"allow by rule {audit.get('shadow_rule')!r}: {grant.get('access')} access to "
            f"repository {grant.get('repository')!r}{named}, {grant.get('duration_seconds')} s"
        )
    else:
        decided = f"deny ({audit.get('shadow_reason')})"
    out = [f"shadow:   the shadow rules would {decided} [{kind}]"]
    evaluation = audit.get("shadow_evaluation")
    if isinstance(evaluation, dict):
        issuer = str(audit.get("issuer", "?"))
        out += ["  " + line for line in _evaluation(issuer, evaluation)]
    return out


def _notable(lines: Sequence[Mapping[str, Any]]) -> list[str]:
    """The request's warnings and errors (a failed dependency, a bug's traceback's summary)."""
    shown = [
        line
        for line in lines
        if str(line.get("level", "")).upper() in ("WARNING", "ERROR", "CRITICAL")
    ]
    out = ["log lines of the request, warnings and errors:"] if shown else []
    for line in shown:
        reason = line.get("reason") or line.get("exception_name") or ""
        said = f"  {line.get('level')}: {line.get('message')}"
        out.append(said + (f": {reason}" if reason else ""))
    return out
