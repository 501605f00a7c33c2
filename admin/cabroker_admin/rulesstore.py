"""The rules parameter's lifecycle: check, push, history, pull, roll back (docs/admin.md,
"The rules lifecycle").

A document is checked by the broker's own :func:`broker.acceptance.accept` before anything is
written, so a document the broker would refuse never reaches the parameter. Every write is a
new version (SSM keeps the last 100), and the label ``live`` moves to the version written, so
the oldest version, which SSM drops at the limit, never carries a label and never blocks a
write (``ParameterMaxVersionLimitExceeded``). A rollback writes an earlier version's text as
a new version, checked again: the history stays append-only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal

from botocore.exceptions import BotoCoreError, ClientError

from broker.rules import RuleSet
from broker.scope import Domain
from cabroker_admin.deployment import accepted
from cabroker_admin.errors import AdminError, aws_call, aws_error, error_code

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

LABEL = "live"
MAX_BYTES = 8192  # an Advanced parameter's value; Intelligent-Tiering picks it over 4 KB
TIER: Final[Literal["Intelligent-Tiering"]] = "Intelligent-Tiering"
DESCRIPTION = (
    "Access rules of the cabroker broker (YAML, docs/admin.md). Written only by "
    "`cabroker-admin rules push` or `rollback`; the label 'live' marks the version they wrote."
)
KEPT_VERSIONS = 100


class RulesRefused(AdminError):
    """The document is not one the broker would serve; nothing was written."""


@dataclass(frozen=True)
class Plan:
    """What a push of a checked document would do."""

    parameter: str
    sha256: str
    rules: RuleSet
    current_version: int | None  # None: the parameter does not exist yet
    changed: bool


@dataclass(frozen=True)
class Pushed:
    parameter: str
    version: int
    changed: bool
    sha256: str


@dataclass(frozen=True)
class Version:
    number: int
    text: str
    modified: datetime | None
    user: str
    labels: tuple[str, ...]

    @property
    def sha256(self) -> str:
        return sha256(self.text)


@dataclass(frozen=True)
class RolledBack:
    source: int
    pushed: Pushed


def sha256(text: str) -> str:
    """The document's SHA-256, as the broker logs it with ``rules loaded``."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def check(text: str, domain: Domain, served: Iterable[str], origin: str) -> RuleSet:
    """The rules in ``text`` if the broker would serve them; else :class:`RulesRefused`, whose
    message starts with ``origin`` (a file, or a version of the parameter)."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        raise RulesRefused(
            f"{origin}: {size} bytes, over the {MAX_BYTES} bytes an SSM parameter holds; "
            "use broader claim patterns or fewer rules"
        )
    return accepted(text, origin, domain, served, RulesRefused)


def plan(
    ssm: SSMClient,
    parameter: str,
    text: str,
    domain: Domain,
    served: Iterable[str],
    origin: str = "the document",
) -> Plan:
    """Check ``text`` and compare it with the parameter's current value; writes nothing."""
    try:
        rules = check(text, domain, served, origin)
    except RulesRefused as error:
        raise RulesRefused(f"{error}; {parameter} left as it was") from None
    current = _current(ssm, parameter)
    return Plan(
        parameter=parameter,
        sha256=sha256(text),
        rules=rules,
        current_version=current[0] if current else None,
        changed=current is None or current[1] != text,
    )


def push(
    ssm: SSMClient,
    parameter: str,
    text: str,
    domain: Domain,
    served: Iterable[str],
    origin: str = "the document",
) -> Pushed:
    """Write ``text`` as the parameter's new version and move ``live`` to it, if the broker
    would serve it and it differs from the current value; else write nothing."""
    planned = plan(ssm, parameter, text, domain, served, origin)
    if not planned.changed and planned.current_version is not None:
        return Pushed(parameter, planned.current_version, changed=False, sha256=planned.sha256)
    written = aws_call(
        "ssm:PutParameter",
        parameter,
        lambda: ssm.put_parameter(
            Name=parameter,
            Value=text,
            Type="String",
            Overwrite=True,
            Tier=TIER,
            Description=DESCRIPTION,
        ),
    )
    version = int(written["Version"])
    _label(ssm, parameter, version)
    return Pushed(parameter, version, changed=True, sha256=planned.sha256)


def history(ssm: SSMClient, parameter: str) -> list[Version]:
    """Every version SSM keeps of the parameter, oldest first."""
    versions: list[Version] = []
    token: str | None = None
    while True:
        arguments: dict[str, Any] = {"Name": parameter, "MaxResults": 50}
        if token:
            arguments["NextToken"] = token
        try:
            page = ssm.get_parameter_history(**arguments)
        except ClientError as error:
            if error_code(error) == "ParameterNotFound":
                break
            raise aws_error("ssm:GetParameterHistory", parameter, error) from None
        except BotoCoreError as error:
            raise aws_error("ssm:GetParameterHistory", parameter, error) from None
        for item in page.get("Parameters", []):
            versions.append(
                Version(
                    number=int(item.get("Version", 0)),
                    text=str(item.get("Value", "")),
                    modified=item.get("LastModifiedDate"),
                    user=str(item.get("LastModifiedUser", "")),
                    labels=tuple(item.get("Labels", [])),
                )
            )
        token = page.get("NextToken")
        if not token:
            break
    if not versions:
        raise AdminError(f"{parameter}: no such SSM parameter (no rules were pushed yet)")
    return sorted(versions, key=lambda version: version.number)


def pull(ssm: SSMClient, parameter: str, version: int | None = None) -> tuple[int, str]:
    """(version, text) of the current version, or of ``version``."""
    found = _get(ssm, parameter, version)
    if found is None:
        raise AdminError(f"{parameter}: no such SSM parameter (no rules were pushed yet)")
    return found


def rollback(
    ssm: SSMClient,
    parameter: str,
    domain: Domain,
    served: Iterable[str],
    to: int | None = None,
) -> RolledBack:
    """Write an earlier version's text as a new version (checked again) and move ``live``.

    Without ``to``: the newest version before the current one whose text differs from it (so
    two rollbacks in a row go back and forth between the last two documents)."""
    versions = history(ssm, parameter)
    current = versions[-1]
    if to is None:
        earlier = [v for v in reversed(versions[:-1]) if v.text != current.text]
        if not earlier:
            raise AdminError(
                f"{parameter}: no version before {current.number} holds another document; "
                "nothing to roll back to"
            )
        source = earlier[0]
    else:
        chosen = [v for v in versions if v.number == to]
        if not chosen:
            raise AdminError(_no_version(parameter, to))
        source = chosen[0]
    origin = f"version {source.number} of {parameter}"
    pushed = push(ssm, parameter, source.text, domain, served, origin=origin)
    return RolledBack(source=source.number, pushed=pushed)


def _current(ssm: SSMClient, parameter: str) -> tuple[int, str] | None:
    return _get(ssm, parameter, None)


def _get(ssm: SSMClient, parameter: str, version: int | None) -> tuple[int, str] | None:
    """(version, text), or None when the parameter does not exist."""
    name = parameter if version is None else f"{parameter}:{version}"
    try:
        found = ssm.get_parameter(Name=name)["Parameter"]
    except ClientError as error:
        if error_code(error) == "ParameterNotFound":
            return None
        if error_code(error) == "ParameterVersionNotFound":
            raise AdminError(_no_version(parameter, version)) from None
        raise aws_error("ssm:GetParameter", name, error) from None
    except BotoCoreError as error:
        raise aws_error("ssm:GetParameter", name, error) from None
    return int(found.get("Version", 0)), str(found.get("Value", ""))


def _label(ssm: SSMClient, parameter: str, version: int) -> None:
    answer = aws_call(
        "ssm:LabelParameterVersion",
        f"version {version} of {parameter} (written, but not labelled {LABEL!r})",
        lambda: ssm.label_parameter_version(
            Name=parameter, ParameterVersion=version, Labels=[LABEL]
        ),
    )
    if answer.get("InvalidLabels"):
        raise AdminError(f"{parameter}: SSM refused the label {LABEL!r} on version {version}")


def _no_version(parameter: str, version: int | None) -> str:
    return (
        f"{parameter}: no version {version} (SSM keeps the last {KEPT_VERSIONS} versions; "
        "`cabroker-admin rules history` lists them)"
    )
