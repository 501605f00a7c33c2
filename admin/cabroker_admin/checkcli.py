"""``cabroker-admin rules check`` and ``rules schema`` (docs/admin.md, "Checking rules").

``check`` is offline: it reads a rules file, asks the broker's own acceptance check whether it
would serve it (one error, exit 1, if not) and lints it (:mod:`cabroker_admin.lint`). Exit
codes: 0 the broker would serve it (warnings allowed), 1 it would not, or ``--strict`` and a
warning, 2 a wrong command line or an unreadable file. ``schema`` prints the JSON Schema of
rules documents, for editors.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from cabroker_admin import lint
from cabroker_admin.deployment import add_flags, domain_of, repositories_of
from cabroker_admin.errors import UsageError

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]

SCHEMA = "rules.schema.json"  # beside this module, in the wheel too


def register(commands: Commands) -> None:
    check = commands.add_parser(
        "check",
        help="validate a rules file with the broker's loader and lint it (offline)",
        description="Check FILE as the broker would (an invalid document is one error naming "
        "the rule, the field and the reason: exit 1), then lint it: warnings about rules the "
        "broker serves as written but that are probably not what was meant (docs/admin.md, "
        "'Checking rules', lists the codes). Exit 0 when the broker would serve it, warnings "
        "or not; 1 when it would not, or with --strict when there is a warning; 2 for a wrong "
        "command line. Nothing is read from AWS.",
    )
    check.add_argument(
        "file", metavar="FILE", help="the rules document (YAML or JSON); - for stdin"
    )
    check.add_argument("--strict", action="store_true", help="exit 1 on warnings too (for CI)")
    check.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text: one line per finding and a summary; json: a list of findings",
    )
    deployment = check.add_argument_group(
        "the deployment",
        "What the stack serves, as far as given: with --repositories a grant of another "
        "repository is an error, as the broker makes it; with --internal-prefixes a publish "
        "pattern outside them is a warning. The session-policy size depends a little on the "
        "domain: without --domain and the others it is computed for a placeholder domain.",
    )
    deployment.add_argument(
        "--internal-prefixes",
        metavar="A,B",
        help="the normalized internal prefixes the package groups guard (InternalPrefixes)",
    )
    add_flags(deployment)
    check.set_defaults(run=run_check)

    schema = commands.add_parser(
        "schema",
        help="print the JSON Schema of rules documents, for editors",
        description="Print the JSON Schema (draft 2020-12) of rules documents, e.g. "
        "`cabroker-admin rules schema > rules.schema.json` for an editor's YAML support. It "
        "checks the document's shape; `rules check` checks everything the broker checks.",
    )
    schema.set_defaults(run=run_schema)


def run_check(args: argparse.Namespace) -> int:
    deployment = deployment_of(args)
    origin = "stdin" if args.file == "-" else args.file
    data = _read(args.file, origin)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        message = f"not UTF-8 text (at byte offset {error.start})"
        result = lint.Result(None, (lint.Finding("CAB001", None, message, "save it as UTF-8"),))
    else:
        result = lint.check(text, deployment)
    if args.format == "json":
        print(json.dumps([finding.as_json() for finding in result.findings], indent=2))
    else:
        for finding in result.findings:
            print(finding.line(origin))
        print(summary(origin, result, args.strict))
    return exit_code(result, args.strict)


def run_schema(args: argparse.Namespace) -> int:
    del args
    sys.stdout.write(schema_text())
    return 0


def schema_text() -> str:
    return resources.files("cabroker_admin").joinpath(SCHEMA).read_text(encoding="utf-8")


def exit_code(result: lint.Result, strict: bool) -> int:
    severities = {finding.severity for finding in result.findings}
    if "error" in severities or (strict and "warning" in severities):
        return 1
    return 0


def summary(origin: str, result: lint.Result, strict: bool) -> str:
    if result.rules is None:
        return f"{origin}: invalid: the broker would refuse it"
    counts = [finding.severity for finding in result.findings]
    warnings, notes = counts.count("warning"), counts.count("info")
    verdict = (
        f"{origin}: valid ({len(result.rules.rules)} rules, {len(result.rules.issuers)} issuers)"
    )
    found = f"{warnings} warning{'s' * (warnings != 1)}, {notes} note{'s' * (notes != 1)}"
    failing = "; failing (--strict)" if strict and warnings else ""
    return f"{verdict}; {found}{failing}"


def deployment_of(args: argparse.Namespace) -> lint.Deployment:
    prefixes = None
    if args.internal_prefixes is not None:
        prefixes = internal_prefixes(args.internal_prefixes)
    return lint.Deployment(
        domain=domain_of(args), repositories=repositories_of(args), internal_prefixes=prefixes
    )


def internal_prefixes(listed: str) -> tuple[str, ...]:
    """Comma-separated internal prefixes, each as the stack's InternalPrefixes takes it."""
    prefixes = [prefix.strip() for prefix in listed.split(",") if prefix.strip()]
    if not prefixes:
        raise UsageError("--internal-prefixes names no prefix")
    for prefix in prefixes:
        if not lint.INTERNAL_PREFIX.fullmatch(prefix):
            raise UsageError(
                f"--internal-prefixes: {prefix!r} is not a normalized package-name prefix "
                "(lowercase letters and digits, single '-' between them)"
            )
    return tuple(dict.fromkeys(prefixes))


def _read(file: str, origin: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as error:
        raise UsageError(f"{origin}: cannot read: {error.strerror or error}") from None
