"""``cabroker-admin rules explain|test|diff``: what the broker would decide, offline
(docs/admin.md, "Testing and explaining rules"). Nothing here reads AWS: a document is loaded
with the broker's acceptance check (:func:`broker.acceptance.accept`: every full grant fits in
a session policy for the domain, and every grant names one of ``--repositories`` when given),
and every decision is :func:`broker.explain.explain`'s for that domain (the chosen grant's
session policy must fit, as the broker checks at request time).

Exit codes: ``explain`` 0 when it printed a decision (allow or deny); ``test`` 0 when every
test passes, 1 when one fails; ``diff`` 0 whatever changed. All three: 1 when a rules document
is invalid, 2 for a wrong command line or TESTS document (bad JSON, an unknown issuer, a
missing file).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from broker.explain import NO_BODY, Explanation, explain
from broker.rules import RuleSet
from broker.scope import Domain
from cabroker_admin import evaluate, rulesdiff
from cabroker_admin.deployment import add_flags, domain_of, repositories_of
from cabroker_admin.errors import UsageError
from cabroker_admin.evaluate import RulesInvalid

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]

UNCHECKED = "claims from the ID token's payload: its signature was NOT checked"
ARROW = {
    "allow-to-deny": "allow → deny",
    "deny-to-allow": "deny → allow",
    "grant": "another grant",
    "rule": "another rule",
    "reason": "another reason",
}


def register(commands: Commands) -> None:
    explain_ = commands.add_parser(
        "explain",
        help="what the broker would decide for an identity and a request, and why",
        description="Decide, as the broker would, a POST /v1/token request by a caller of "
        "issuer NAME with the given claims, and show for every rule of that issuer whether it "
        "matched and, if not, which claim constraints failed and why. Offline: FILE is read "
        "with the broker's own parser; nothing is sent anywhere. Exit 0 when a decision "
        "(allow or deny) was printed, 1 when FILE is invalid, 2 for a wrong command line.",
    )
    explain_.add_argument("file", metavar="FILE", help="the rules document (YAML or JSON)")
    explain_.add_argument("--issuer", required=True, metavar="NAME", help="an issuer of FILE")
    identity = explain_.add_mutually_exclusive_group(required=True)
    identity.add_argument(
        "--claims",
        metavar="JSON|@PATH",
        help="the caller's claims: a JSON object, or @PATH of a file holding one",
    )
    identity.add_argument(
        "--id-token",
        metavar="@PATH",
        help="the claims of the ID token in the file PATH (its payload, decoded; the "
        "signature is NOT checked, and the token is never printed)",
    )
    explain_.add_argument(
        "--request",
        metavar="JSON|@PATH",
        help="the POST /v1/token body (default: none, which the broker reads as {})",
    )
    _format(explain_)
    _served(explain_)
    explain_.set_defaults(run=run_explain)

    test = commands.add_parser(
        "test",
        help="check that a rules file decides as a TESTS file expects",
        description="Decide every test of TESTS (an identity, a request, the expected "
        "decision) as the broker would with FILE; print each failing test with what happened "
        "instead, and 'N passed, M failed'. Exit 0 when all pass, 1 when one fails or FILE is "
        "invalid, 2 when TESTS is malformed or the command line is wrong.",
    )
    test.add_argument("file", metavar="FILE", help="the rules document (YAML or JSON)")
    test.add_argument("tests", metavar="TESTS", help="the tests (YAML or JSON)")
    _served(test)
    test.set_defaults(run=run_test)

    diff = commands.add_parser(
        "diff",
        help="what changes from one rules file to another",
        description="Without --tests: the issuers and rules added, removed or changed from "
        "OLD to NEW, and for each changed rule whether it grants more (widened), less "
        "(narrowed) or something else (changed). With --tests: the tests whose decision "
        "differs (allow → deny, deny → allow, another grant, rule or reason); their "
        "expectations do not matter. Exit 0 whatever changed, 1 when a document is invalid, "
        "2 for a wrong command line.",
    )
    diff.add_argument("old", metavar="OLD", help="the rules document before")
    diff.add_argument("new", metavar="NEW", help="the rules document after")
    diff.add_argument("--tests", metavar="TESTS", help="compare the decisions over these tests")
    _format(diff)
    _served(diff)
    diff.set_defaults(run=run_diff)


# --------------------------------------------------------------------------- explain


def run_explain(args: argparse.Namespace) -> int:
    if args.id_token is not None:
        claims, source = id_token_claims(args.id_token), UNCHECKED
    else:
        claims, source = json_object(args.claims, "--claims", "the caller's claims"), None
    body = NO_BODY if args.request is None else json_value(args.request, "--request")
    repositories, domain = _served_of(args)
    rules = _rules(args.file, repositories, domain)
    if args.issuer not in rules.issuers:
        known = ", ".join(repr(name) for name in rules.issuers) or "none"
        raise UsageError(f"--issuer {args.issuer!r} is not an issuer of {args.file} ({known})")
    explanation = explain(rules, args.issuer, claims, body, domain=domain)
    if args.format == "json":
        if source:
            print(f"cabroker-admin: note: {source}", file=sys.stderr)
        print(evaluate.dumps(explanation.to_json()))
        return 0
    print(f"{args.file}: issuer {args.issuer!r}")
    if source:
        print(source)
    print(decision_line(explanation))
    print(f"rules of issuer {args.issuer!r} ({len(explanation.rules)}):")
    for trace in explanation.rules:
        print(f"  {trace.name}: {'matched' if trace.matched else 'not matched'}")
        for failure in trace.failed:
            print(f"    claims.{failure.claim}: {failure.why}")
    return 0


def decision_line(explanation: Explanation) -> str:
    """``allow: rule 'x', read access to …`` or ``deny (slug): the broker's detail``."""
    if explanation.grant is not None:
        return f"allow: rule {explanation.rule!r}, {explanation.grant.describe()}"
    return f"deny ({explanation.reason}): {explanation.detail}"


# --------------------------------------------------------------------------- test


def run_test(args: argparse.Namespace) -> int:
    cases = evaluate.parse_tests(evaluate.read_text(args.tests, "TESTS"), args.tests)
    repositories, domain = _served_of(args)
    rules = _rules(args.file, repositories, domain)
    results = evaluate.run(rules, cases, domain, origin=args.tests)
    failed = [result for result in results if not result.passed]
    for result in failed:
        got = result.explanation
        verb = "differs" if len(result.mismatches) == 1 else "differ"
        print(f"FAIL {result.case.name}: {', '.join(result.mismatches)} {verb}")
        print(f"  expected: {result.case.expect.describe()}")
        print(f"  got:      {decision_line(got)}")
        if not got.allowed:
            for trace in got.rules:
                for failure in trace.failed:
                    print(f"  rule {trace.name}: claims.{failure.claim}: {failure.why}")
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


# --------------------------------------------------------------------------- diff


def run_diff(args: argparse.Namespace) -> int:
    cases = None
    if args.tests is not None:
        cases = evaluate.parse_tests(evaluate.read_text(args.tests, "--tests"), args.tests)
    repositories, domain = _served_of(args)
    old, new = _rules(args.old, repositories, domain), _rules(args.new, repositories, domain)
    if cases is not None:
        changes = evaluate.decision_changes(old, new, cases, domain, origin=args.tests)
        if args.format == "json":
            print(
                evaluate.dumps(
                    {
                        "old": args.old,
                        "new": args.new,
                        "tests": len(cases),
                        "changes": [
                            {
                                "name": change.case.name,
                                "kind": change.kind,
                                "old": _decision_json(change.old),
                                "new": _decision_json(change.new),
                            }
                            for change in changes
                        ],
                    }
                )
            )
            return 0
        counted = f"{len(changes)} " + (
            "decision changes" if len(changes) == 1 else "decisions change"
        )
        print(f"{args.old} → {args.new}, over the {len(cases)} tests of {args.tests}: {counted}")
        for change in changes:
            print(f"  {change.case.name}: {ARROW[change.kind]}")
            print(f"    before: {decision_line(change.old)}")
            print(f"    after:  {decision_line(change.new)}")
        return 0
    found = rulesdiff.diff(old, new)
    if args.format == "json":
        print(evaluate.dumps({"old": args.old, "new": args.new, **found.to_json()}))
        return 0
    print(f"{args.old} → {args.new}:" + (" nothing granted differently" if found.empty else ""))
    for name in found.issuers_added:
        print(f"  issuer added: {name}")
    for name in found.issuers_removed:
        print(f"  issuer removed: {name}")
    for issuer in found.issuers_changed:
        print(f"  issuer changed: {issuer.name}: {'; '.join(issuer.changes)}")
    for verb, listed in (("added", found.rules_added), ("removed", found.rules_removed)):
        for rule in listed:
            grant = rulesdiff.describe_grant(rule.grant)
            print(f"  rule {verb}: {rule.name} (issuer {rule.issuer}): {grant}")
    for changed in found.rules_changed:
        print(f"  rule {changed.verdict}: {changed.name}")
        for item in changed.changes:
            print(f"    {item.what}: {item.detail}")
    print(f"  {found.rules_unchanged} rule{'' if found.rules_unchanged == 1 else 's'} unchanged")
    return 0


def _decision_json(explanation: Explanation) -> dict[str, Any]:
    return {k: v for k, v in explanation.to_json().items() if k != "rules"}


# --------------------------------------------------------------------------- inputs


def json_value(raw: str, flag: str) -> Any:
    """The JSON of a ``JSON|@PATH`` option, as the broker decodes a body (no NaN, no
    Infinity); not JSON: a :class:`UsageError` naming the option (and the file)."""
    where, text = flag, raw
    if raw.startswith("@"):
        where, text = f"{flag} {raw}", evaluate.read_text(raw[1:], flag)
    try:
        return json.loads(text, parse_constant=_not_json)
    except (ValueError, RecursionError) as error:
        raise UsageError(f"{where}: not JSON: {error}") from None


def json_object(raw: str, flag: str, what: str) -> dict[str, Any]:
    value = json_value(raw, flag)
    if not isinstance(value, dict):
        raise UsageError(f"{flag}: must be a JSON object ({what})")
    return value


def id_token_claims(raw: str) -> dict[str, Any]:
    """The payload of the JWT in the file ``@PATH``, decoded and NOT verified. No message
    ever quotes the token or a part of it."""
    if not raw.startswith("@"):
        raise UsageError(
            "--id-token takes @PATH, a file holding the token (a token on the command line "
            "would be kept in the shell's history)"
        )
    where = f"--id-token {raw}"
    parts = evaluate.read_text(raw[1:], "--id-token").strip().split(".")
    if len(parts) != 3:
        raise UsageError(f"{where}: not a JWT (header.payload.signature): {len(parts)} parts")
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload.decode("utf-8"), parse_constant=_not_json)
    except (binascii.Error, ValueError, RecursionError):
        raise UsageError(f"{where}: its payload is not base64url-encoded JSON") from None
    if not isinstance(claims, dict):
        raise UsageError(f"{where}: its payload is not a JSON object")
    return claims


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def _rules(path: str, repositories: Sequence[str], domain: Domain) -> RuleSet:
    text = evaluate.read_text(path, "rules file", RulesInvalid)
    return evaluate.load_rules(text, path, repositories, domain)


def _format(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--format", choices=("text", "json"), default="text", help="the output (default: text)"
    )


def _served(command: argparse.ArgumentParser) -> None:
    given = command.add_argument_group(
        "the acceptance check",
        "A document is checked as the broker and a push check it: every grant fits in a "
        "session policy (for the domain the flags name, else a placeholder domain) and, with "
        "--repositories, names one of them. A decision's grant must fit too, as the broker "
        "checks at request time (else policy-too-large).",
    )
    add_flags(given)


def _served_of(args: argparse.Namespace) -> tuple[Sequence[str], Domain]:
    return repositories_of(args), domain_of(args)
