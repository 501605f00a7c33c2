"""Properties of the broker's pure decisions, over generated inputs (Hypothesis).

1. Claim matching: exact values match; a near-miss of a pattern (one edit, case, affixes,
   whitespace, a look-alike) matches only when a reference glob matcher says it should.
2. Session policies, evaluated by moto's IAM policy evaluator: nothing outside the grant's
   repository, access and package patterns is allowed.
3. Session policies fit in 2048 characters or fail with ``policy-too-large``, also through the
   Lambda handler.
4. The rules loader refuses each malformed document with a message naming the field, and loads
   every valid one.

Every test runs a fixed set of examples (``derandomize``) and prints how many it ran.
"""

from __future__ import annotations

import copy
import json
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.session import get_session
from hypothesis import assume, example, given, note
from hypothesis import strategies as st
from moto.iam.access_control import IAMPolicy, PermissionResult

from broker import rules as rules_module
from broker.grants import ResolvedGrant
from broker.problems import PolicyTooLarge
from broker.rules import RulesError, RuleSet, compile_document, parse
from broker.scope import Domain, check_fits, session_policy
from tests.conftest import GITHUB_CLAIMS, Answer, StsRecorder
from tests.support.oidc import LocalIssuer
from tests.unit.broker.strategies import (
    ACCOUNTS,
    ALNUM,
    DOMAIN_NAMES,
    DURATIONS,
    FILL_TEXT,
    GLOB_LITERALS,
    PARTITIONS,
    REGIONS,
    REPOSITORY_NAMES,
    Json,
    Tally,
    claim_globs,
    fixed,
    glob_matches,
    normalize,
    package_names,
    package_patterns,
    package_prefixes,
    rules_documents,
)

Call = Callable[..., Answer]
ISSUER_URL = "https://idp.example"
MAX_POLICY = 2048  # README: "a 2048-character session policy"


# =========================================================================== 1. claim matching


def one_constraint_document(claim: str, constraint: Json) -> dict[str, Any]:
    """A rules document with one rule, ``only``, constraining one claim."""
    return {
        "version": 1,
        "issuers": {"idp": {"url": ISSUER_URL, "audience": "aud"}},
        "rules": [
            {
                "name": "only",
                "issuer": "idp",
                "claims": {claim: constraint},
                "grant": {"repository": "internal", "access": "read"},
            }
        ],
    }


def one_constraint_rules(claim: str, constraint: Json) -> RuleSet:
    """That document, loaded by the real YAML loader."""
    document = one_constraint_document(claim, constraint)
    return parse(yaml.safe_dump(document, allow_unicode=False, sort_keys=False))


def matched(ruleset: RuleSet, claims: dict[str, Any], issuer: str = "idp") -> bool:
    names = [rule.name for rule in ruleset.matching(issuer, claims)]
    assert names in ([], ["only"])
    return names == ["only"]


@st.composite
def instance_of(draw: st.DrawFn, glob: str) -> tuple[str, list[bool]]:
    """A value the glob matches (each '*' filled in), and which characters are literal."""
    chars: list[str] = []
    literal: list[bool] = []
    for index, part in enumerate(glob.split("*")):
        if index:
            fill = draw(FILL_TEXT)
            chars.extend(fill)
            literal.extend([False] * len(fill))
        chars.extend(part)
        literal.extend([True] * len(part))
    return "".join(chars), literal


CLAIM_NAMES = st.one_of(
    st.sampled_from(["sub", "repository", "ref", "groups", "email", "job_workflow_ref"]),
    st.text(min_size=1, max_size=10),
)
CONSTRAINTS = st.lists(claim_globs(), min_size=1, max_size=4)


def as_constraint(alternatives: list[str], single: bool) -> Json:
    return alternatives[0] if single and len(alternatives) == 1 else alternatives


@fixed(250)
@given(claim=CLAIM_NAMES, alternatives=CONSTRAINTS, single=st.booleans(), data=st.data())
def test_a_value_each_alternative_matches_is_matched_and_only_as_a_string(
    claim: str, alternatives: list[str], single: bool, data: st.DataObject
) -> None:
    ruleset = one_constraint_rules(claim, as_constraint(alternatives, single))
    glob = data.draw(st.sampled_from(alternatives), label="alternative")
    value, _ = data.draw(instance_of(glob), label="value")
    junk = data.draw(st.lists(st.text(max_size=5), max_size=3), label="junk")
    assert matched(ruleset, {claim: value})
    # A list claim matches when any string element does, wherever it sits.
    assert matched(ruleset, {claim: [*junk, value, *junk]})
    # Other claims, another issuer, or the value in any non-string shape: never.
    assert not matched(ruleset, {claim + "_other": value})
    assert not matched(ruleset, {claim: value}, issuer="other")
    for shape in ([[value]], {"value": value}, None, True, 1, 1.5, []):
        assert not matched(ruleset, {claim: shape})


# Look-alikes (escaped, as they are meant to be hard to see): Cyrillic and Greek letters, a
# hyphen, slash, dot and colon from other blocks, a no-break space, a mathematical digit, a
# decomposed accent, and back from Cyrillic to Latin.
LOOKALIKES = {
    "a": "\u0430", "c": "\u0441", "e": "\u0435", "o": "\u043e", "p": "\u0440", "x": "\u0445",
    "y": "\u0443", "i": "\u0456", "A": "\u0391", "B": "\u0392", "E": "\u0395", "H": "\u041d",
    "K": "\u039a", "M": "\u039c", "O": "\u039f", "T": "\u03a4", "-": "\u2010", "/": "\u2215",
    ".": "\u2024", ":": "\u2236", " ": "\u00a0", "1": "\U0001d7cf", "\u00e9": "e\u0301",
    "\u00df": "\u1e9e", "\u03a9": "\u2126", "\u0430": "a", "\u0435": "e", "\u043e": "o",
    "\u0440": "p", "\u0441": "c",
}  # fmt: skip
# A trailing newline first: "$" in a regular expression would let it through.
WHITESPACE = ["\n", " ", "\t", "\r\n", "\u00a0", "\u2003", "\u3000", "\u200b", "\ufeff"]
EDITS = ["insert", "delete", "substitute", "case", "prefix", "suffix", "whitespace", "lookalike"]


def lookalike(char: str) -> str | None:
    if char in LOOKALIKES:
        return LOOKALIKES[char]
    if "!" <= char <= "~":
        return chr(ord(char) + 0xFEE0)  # the fullwidth form, NFKC-equal to the ASCII one
    decomposed = unicodedata.normalize("NFD", char)
    return decomposed if decomposed != char else None


@st.composite
def near_miss(draw: st.DrawFn, value: str, literal: list[bool]) -> tuple[str, str]:
    """One edit of ``value``: (edit, edited value); aimed at literal characters half the time."""
    edit = draw(st.sampled_from(EDITS))
    positions = list(range(len(value)))
    literals = [i for i in positions if literal[i]]
    aim_at_literals = draw(st.booleans())
    if literals and aim_at_literals:
        positions = literals
    char = st.sampled_from(GLOB_LITERALS + "*")
    if edit == "insert":
        at = draw(st.integers(0, len(value)))
        return edit, value[:at] + draw(char) + value[at:]
    if edit == "prefix":
        return edit, draw(st.text(char, min_size=1, max_size=3)) + value
    if edit == "suffix":
        return edit, value + draw(st.text(char, min_size=1, max_size=3))
    if edit == "whitespace":
        space = draw(st.sampled_from(WHITESPACE))
        side = draw(st.sampled_from(["after", "before", "both"]))
        before, after = (space if side != "after" else ""), (space if side != "before" else "")
        return edit, before + value + after
    if edit == "case":
        positions = [i for i in positions if value[i].swapcase() != value[i]]
    elif edit == "lookalike":
        positions = [i for i in positions if lookalike(value[i]) is not None]
    assume(positions)
    at = draw(st.sampled_from(positions))
    if edit == "delete":
        return edit, value[:at] + value[at + 1 :]
    if edit == "substitute":
        replacement = draw(char.filter(lambda c: c != value[at]))
    elif edit == "case":
        replacement = value[at].swapcase()
    else:
        replacement = lookalike(value[at]) or ""
    return edit, value[:at] + replacement + value[at + 1 :]


def test_near_misses_are_matched_only_when_the_reference_matcher_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    tally = Tally("claim near-misses")

    @fixed(400)
    @given(claim=CLAIM_NAMES, alternatives=CONSTRAINTS, data=st.data())
    def check(claim: str, alternatives: list[str], data: st.DataObject) -> None:
        ruleset = one_constraint_rules(claim, alternatives)
        glob = data.draw(st.sampled_from(alternatives), label="alternative")
        value, literal = data.draw(instance_of(glob), label="value")
        edit, edited = data.draw(near_miss(value, literal), label="edit")
        expected = any(glob_matches(alternative, edited) for alternative in alternatives)
        note(f"edited value {edited!r}: reference says {'match' if expected else 'no match'}")
        assert matched(ruleset, {claim: edited}) is expected
        assert matched(ruleset, {claim: ["unrelated", edited]}) is expected
        tally.record(f"{edit}: {'still inside the glob' if expected else 'refused'}")

    check()
    tally.report(capsys)
    refused = sum(n for outcome, n in tally.outcomes.items() if outcome.endswith("refused"))
    assert refused >= tally.total // 2  # most edits must be real near-misses, of every kind
    assert all(any(o.startswith(e) for o in tally.outcomes) for e in EDITS)


ASTRAL = "\U0001f680"


@fixed(30)
@given(claim=CLAIM_NAMES, glob=claim_globs(), fill=FILL_TEXT)
@example(claim="ref", glob="refs/heads/" + ASTRAL + "*", fill="-release")
def test_a_json_rules_document_matches_like_the_same_document_in_yaml(
    claim: str, glob: str, fill: str
) -> None:
    document = one_constraint_document(claim, glob)
    ruleset = parse(json.dumps(document))  # README: "A YAML (or JSON) document"
    assert matched(ruleset, {claim: glob.replace("*", fill)})


# =========================================================================== 2. session policy

CODEARTIFACT_OPERATIONS = sorted(get_session().get_service_model("codeartifact").operation_names)
ACTIONS = sorted(
    {f"codeartifact:{op}" for op in CODEARTIFACT_OPERATIONS}
    | {"codeartifact:ReadFromRepository", "codeartifact:PutPackageMetadata"}
    | {"sts:GetServiceBearerToken", "sts:AssumeRole", "sts:GetSessionToken"}
    | {"s3:GetObject", "iam:PassRole", "codecommit:GitPush", "kms:Decrypt"}
)
GRANT_ACTIONS = [
    "codeartifact:GetAuthorizationToken",
    "sts:GetServiceBearerToken",
    "codeartifact:ReadFromRepository",
    "codeartifact:GetRepositoryEndpoint",
    "codeartifact:PublishPackageVersion",
    "codeartifact:PutPackageMetadata",
]
SERVICES = st.sampled_from(
    [
        "codeartifact.amazonaws.com",
        "codeartifact.amazonaws.com",
        "Codeartifact.amazonaws.com",
        "codeartifact.amazonaws.com.cn",
        "s3.amazonaws.com",
        "sts.amazonaws.com",
        "",
    ]
)
NUMERIC = {
    "NumericLessThanEquals": lambda a, b: a <= b,
    "NumericLessThan": lambda a, b: a < b,
    "NumericEquals": lambda a, b: a == b,
    "NumericNotEquals": lambda a, b: a != b,
    "NumericGreaterThan": lambda a, b: a > b,
    "NumericGreaterThanEquals": lambda a, b: a >= b,
}


def arn(partition: str, region: str, owner: str, resource: str) -> str:
    return f"arn:{partition}:codeartifact:{region}:{owner}:{resource}"


def literal_for_moto(pattern: str) -> str:
    """moto turns a policy pattern into a regular expression by replacing '*' only, so a '.' in
    a repository name would match any character; IAM treats it literally.  Escaping the rest
    makes moto evaluate IAM's semantics ('?' never occurs: no name may contain it)."""
    return "*".join(re.escape(part) for part in pattern.split("*"))


def moto_ready(statement: dict[str, Any]) -> dict[str, Any]:
    ready = dict(statement)
    for element in ("Action", "Resource"):
        value = statement.get(element)
        if isinstance(value, str):
            ready[element] = literal_for_moto(value)
        elif isinstance(value, list):
            ready[element] = [literal_for_moto(v) for v in value]
    return ready


def conditions_hold(statement: dict[str, Any], context: dict[str, str]) -> bool:
    """The conditions moto skips: it evaluates StringEquals only.  Numeric operators are
    evaluated here; a missing key or any other operator fails closed."""
    for operator, table in statement.get("Condition", {}).items():
        if operator == "StringEquals":
            continue  # moto evaluated it
        compare = NUMERIC.get(operator)
        if compare is None:
            return False
        for key, bound in table.items():
            if key not in context or not compare(float(context[key]), float(bound)):
                return False
    return True


class Evaluator:
    """A session policy as moto's IAM evaluator sees it, one statement at a time (so that the
    conditions moto ignores can be applied to the statement that allowed a request)."""

    def __init__(self, policy: dict[str, Any]) -> None:
        self._statements = [
            (
                statement,
                IAMPolicy(
                    json.dumps({"Version": policy["Version"], "Statement": [moto_ready(statement)]})
                ),
            )
            for statement in policy["Statement"]
        ]

    def permits(self, action: str, resource: str, context: dict[str, str]) -> bool:
        allowed = False
        for statement, evaluator in self._statements:
            verdict = evaluator.is_action_permitted(
                action, resource, incoming_condition_values=context
            )
            if verdict == PermissionResult.DENIED and statement.get("Effect") == "Deny":
                return False
            if verdict == PermissionResult.PERMITTED and conditions_hold(statement, context):
                allowed = True
        return allowed


def covered(name: str, patterns: tuple[str, ...]) -> bool:
    """IAM's view of a package ARN's name against the grant's patterns: literal, case-sensitive,
    '*' only at the end (the README's grammar)."""
    return any(name.startswith(p[:-1]) if p.endswith("*") else name == p for p in patterns)


def expected_permission(
    grant: ResolvedGrant,
    domain: Domain,
    action: str,
    resource: str,
    service: str,
    duration: int,
) -> bool:
    """The README's "What a token can do" table, as an oracle."""
    own = arn(domain.partition, domain.region, domain.owner, "")
    if action == "sts:GetServiceBearerToken":
        return service == "codeartifact.amazonaws.com" and duration <= grant.duration_seconds
    if action == "codeartifact:GetAuthorizationToken":
        return resource == f"{own}domain/{domain.name}"
    if action in ("codeartifact:ReadFromRepository", "codeartifact:GetRepositoryEndpoint"):
        return resource == f"{own}repository/{domain.name}/{grant.repository}"
    if action in ("codeartifact:PublishPackageVersion", "codeartifact:PutPackageMetadata"):
        prefix = f"{own}package/{domain.name}/{grant.repository}/pypi//"
        return (
            grant.access == "publish"
            and resource.startswith(prefix)
            and covered(resource[len(prefix) :], grant.packages)
        )
    return False


def normalized_pattern(pattern: str) -> str:
    return normalize(pattern[:-1]) + "*" if pattern.endswith("*") else normalize(pattern)


@st.composite
def resolved_grants(draw: st.DrawFn) -> ResolvedGrant:
    access = draw(st.sampled_from(["read", "publish"]))
    packages: tuple[str, ...] = ()
    if access == "publish":
        raw = draw(st.lists(package_patterns(max_size=40), min_size=1, max_size=6))
        packages = tuple(dict.fromkeys(normalized_pattern(p) for p in raw))
    return ResolvedGrant(
        rule="generated",
        repository=draw(REPOSITORY_NAMES.filter(lambda r: len(r) <= 60)),
        access=access,  # type: ignore[arg-type]
        packages=packages,
        duration_seconds=draw(DURATIONS),
    )


DOMAINS = st.builds(Domain, partition=PARTITIONS, region=REGIONS, owner=ACCOUNTS, name=DOMAIN_NAMES)


@st.composite
def near(draw: st.DrawFn, name: str) -> str:
    """Another name one edit away: a character more, less or changed, or its case."""
    how = draw(st.sampled_from(["append", "drop", "change", "case", "prepend"]))
    char = draw(st.sampled_from(ALNUM + "-._"))
    if how == "append" or len(name) < 2:
        return name + char
    if how == "prepend":
        return char + name
    at = draw(st.integers(0, len(name) - 1))
    if how == "drop":
        return name[:at] + name[at + 1 :]
    if how == "case" and name.swapcase() != name:
        return name.swapcase()
    return name[:at] + (char if char != name[at] else "Z") + name[at + 1 :]


@st.composite
def resources(draw: st.DrawFn, grant: ResolvedGrant, domain: Domain) -> list[str]:
    """ARNs around the grant: its own, and others' (partition, region, account, domain,
    repository, format, namespace), with package names inside and outside its patterns."""
    d, r = domain.name, grant.repository
    own = (domain.partition, domain.region, domain.owner)
    elsewhere = [
        (draw(PARTITIONS.filter(lambda p: p != domain.partition)), domain.region, domain.owner),
        (domain.partition, draw(REGIONS.filter(lambda g: g != domain.region)), domain.owner),
        (domain.partition, domain.region, draw(ACCOUNTS.filter(lambda a: a != domain.owner))),
    ]
    other_domain, other_repo = draw(near(d)), draw(near(r))
    names: list[str] = []
    for pattern in grant.packages or ("acme-*", "tools"):
        stem = pattern.rstrip("*")
        suffix = draw(st.text(ALNUM + "-._", max_size=8))
        names += [stem + suffix, stem, (stem + suffix).upper(), stem.replace("-", "_") + suffix]
        if stem:
            names += [draw(near(stem)), stem[:-1], draw(near(stem)) + suffix]
    names += [draw(package_names(30)), "*", ""]
    candidates = [
        arn(*own, f"domain/{d}"),
        arn(*own, f"domain/{other_domain}"),
        arn(*own, f"domain/{d}/{r}"),
        arn(*own, f"repository/{d}/{r}"),
        arn(*own, f"repository/{d}/{other_repo}"),
        arn(*own, f"repository/{other_domain}/{r}"),
        arn(*own, f"repository/{d}/{r}/x"),
        "*",
        draw(st.text(ALNUM + ":/-_.*", max_size=30)),
    ]
    for place in elsewhere:
        candidates += [
            arn(*place, f"domain/{d}"),
            arn(*place, f"repository/{d}/{r}"),
            arn(*place, f"package/{d}/{r}/pypi//{names[0]}"),
        ]
    for name in names:
        candidates += [
            arn(*own, f"package/{d}/{r}/pypi//{name}"),
            arn(*own, f"package/{d}/{other_repo}/pypi//{name}"),
            arn(*own, f"package/{other_domain}/{r}/pypi//{name}"),
            arn(*own, f"package/{d}/{r}/npm//{name}"),
            arn(*own, f"package/{d}/{r}/pypi/ns/{name}"),
            arn(*own, f"package/{d}/{r}/pypi/{name}"),
        ]
    return list(dict.fromkeys(candidates))


def test_a_session_policy_allows_nothing_outside_its_grant(
    capsys: pytest.CaptureFixture[str],
) -> None:
    tally = Tally("session policy x moto IAM evaluator")
    decisions = {"permitted": 0, "refused": 0}

    @fixed(100)
    @given(grant=resolved_grants(), domain=DOMAINS, data=st.data())
    def check(grant: ResolvedGrant, domain: Domain, data: st.DataObject) -> None:
        try:
            evaluator = Evaluator(json.loads(session_policy(grant, domain)))
        except PolicyTooLarge:
            tally.record("too large")
            return
        arns = data.draw(resources(grant, domain), label="resources")
        actions = data.draw(
            st.lists(st.sampled_from(ACTIONS), min_size=2, max_size=6, unique=True),
            label="actions",
        )
        service = data.draw(SERVICES, label="sts:AWSServiceName")
        granted = grant.duration_seconds
        duration = data.draw(
            st.one_of(
                st.sampled_from([granted, granted + 1, granted - 1, 43200, 43201, 0]),
                st.integers(0, 100_000),
            ),
            label="sts:DurationSeconds",
        )
        context = {"sts:AWSServiceName": service, "sts:DurationSeconds": str(duration)}
        for action in [*GRANT_ACTIONS, *actions]:
            for resource in arns:
                verdict = evaluator.permits(action, resource, context)
                expected = expected_permission(grant, domain, action, resource, service, duration)
                assert verdict is expected, (action, resource, context)
                decisions["permitted" if verdict else "refused"] += 1
        tally.record(grant.access)

    check()
    tally.report(capsys)
    with capsys.disabled():
        print(f"[hypothesis]   (action, resource) decisions checked: {decisions}")
    # Both kinds of grant are well represented (the split depends on the drawn examples).
    assert tally.outcomes["publish"] >= 20
    assert tally.outcomes["read"] >= 20
    assert decisions["permitted"] > 500
    assert decisions["refused"] > 10 * decisions["permitted"]


# =========================================================================== 3. policy size


def package_arn(domain: Domain, repository: str, pattern: str) -> str:
    return arn(domain.partition, domain.region, domain.owner, "") + (
        f"package/{domain.name}/{repository}/pypi//{pattern}"
    )


# Lists of every length up to the limit, of patterns of every allowed length (Hypothesis alone
# favours short ones, which always fit).
MAX_PATTERNS = rules_module.MAX_PACKAGE_PATTERNS
SIZES = st.one_of(st.integers(2, 100), st.integers(70, 100))
SIZED_PATTERNS = st.one_of(
    SIZES.flatmap(lambda size: package_names(size, min_size=size)),
    SIZES.flatmap(lambda size: package_prefixes(size - 1, min_size=size - 1)).map(
        lambda prefix: prefix + "*"
    ),
    package_patterns(),
)
PATTERN_LISTS = st.one_of(st.integers(1, MAX_PATTERNS), st.integers(12, MAX_PATTERNS)).flatmap(
    lambda count: st.lists(SIZED_PATTERNS, min_size=count, max_size=count)
)


def fits(grant: ResolvedGrant, domain: Domain) -> bool:
    """True when a policy comes back (checked), False for the documented refusal; anything
    else propagates and fails the test."""
    refused: PolicyTooLarge | None = None
    try:
        policy = session_policy(grant, domain)
    except PolicyTooLarge as error:
        refused = error
    if refused is not None:
        assert (refused.status, refused.slug) == (400, "policy-too-large")
        return False
    # Only ASCII can occur, so characters, UTF-8 bytes and AWS's count are one number.
    assert policy.isascii()
    assert len(policy) <= MAX_POLICY, len(policy)
    statements = {s["Sid"]: s for s in json.loads(policy)["Statement"]}
    if grant.access == "publish":  # every pattern is there: nothing dropped to make it fit
        expected = [package_arn(domain, grant.repository, p) for p in grant.packages]
        assert statements["Publish"]["Resource"] == expected
    else:
        assert "Publish" not in statements
    return True


def test_a_session_policy_fits_in_2048_characters_or_is_refused_as_documented(
    capsys: pytest.CaptureFixture[str],
) -> None:
    tally = Tally("session policy size")

    @fixed(300)
    @given(
        domain=DOMAINS,
        repository=REPOSITORY_NAMES,
        raw=PATTERN_LISTS,
        duration=DURATIONS,
    )
    def check(domain: Domain, repository: str, raw: list[str], duration: int) -> None:
        packages = rules_module.package_patterns(raw, "packages")  # as a request's are
        read = ResolvedGrant("r", repository, "read", (), duration)
        assert fits(read, domain)  # a read grant always fits
        outcomes = [
            fits(ResolvedGrant("r", repository, "publish", packages[:count], duration), domain)
            for count in range(1, len(packages) + 1)
        ]
        # Any single pattern fits; a longer list never fits when a shorter one did not.
        assert outcomes[0]
        assert outcomes == sorted(outcomes, reverse=True)
        if not outcomes[-1]:
            # And the refusal is not premature: the longest list that fit, plus the next
            # pattern's ARN, really is over the limit.
            count = outcomes.index(False)
            fitting = ResolvedGrant("r", repository, "publish", packages[:count], duration)
            document = json.loads(session_policy(fitting, domain))
            (publish,) = (s for s in document["Statement"] if s["Sid"] == "Publish")
            publish["Resource"].append(package_arn(domain, repository, packages[count]))
            assert len(json.dumps(document, separators=(",", ":"))) > MAX_POLICY
        tally.record("fits" if outcomes[-1] else "policy-too-large")

    check()
    tally.report(capsys)
    assert tally.outcomes["fits"] >= 50
    assert tally.outcomes["policy-too-large"] >= 50


STAR_RULES = """\
version: 1
issuers:
  github: {{url: "{github}", audience: codeartifact-broker}}
rules:
  - name: everything
    issuer: github
    claims: {{repository_owner: acme}}
    grant: {{repository: internal, access: publish, packages: ["*"], max_duration: 43200}}
"""


def test_the_handler_answers_200_or_policy_too_large_for_any_pattern_list(
    call: Call,
    rules_file: Path,
    github: LocalIssuer,
    sts_calls: StsRecorder,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rules_file.write_text(STAR_RULES.format(github=github.url))
    token = github.mint(**GITHUB_CLAIMS)
    tally = Tally("POST /v1/token policy size")

    @fixed(60)
    @given(
        raw=PATTERN_LISTS,
        duration=st.one_of(st.none(), DURATIONS),
    )
    def check(raw: list[str], duration: int | None) -> None:
        body: dict[str, Any] = {"access": "publish", "packages": raw}
        if duration is not None:
            body["duration_seconds"] = duration
        before = len(sts_calls.calls)
        answer = call("POST", "/v1/token", token=token, body=body)
        status = answer.status
        if status == 200:
            assert answer.headers["Content-Type"] == "application/json"
            for sent in sts_calls.calls[before:]:
                assert len(sent["Policy"]) <= MAX_POLICY
            tally.record("200")
        else:
            problem = answer.body if isinstance(answer.body, dict) else {}
            assert (status, answer.problem_type) == (400, "policy-too-large"), problem
            tally.record("400 policy-too-large")

    check()
    tally.report(capsys)
    assert tally.outcomes["200"] >= 10
    assert tally.outcomes["400 policy-too-large"] >= 10


# =========================================================================== 4. rules loader

LOADER_DOMAIN = Domain(partition="aws", region="us-east-1", owner="111122223333", name="acme")


def load(document: Json) -> RuleSet:
    """What the broker does with a document: compile, then refuse grants that cannot fit."""
    ruleset = compile_document(document)
    check_fits(ruleset, LOADER_DOMAIN)
    return ruleset


def load_yaml(text: str) -> RuleSet:
    ruleset = parse(text)
    check_fits(ruleset, LOADER_DOMAIN)
    return ruleset


def dump(document: Json) -> str:
    # libyaml's emitter when present (faster); either way plain YAML any admin could write.
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(document, Dumper=dumper, allow_unicode=False, sort_keys=False)


@fixed(120)
@given(document=rules_documents())
def test_every_valid_document_loads_as_written(document: dict[str, Any]) -> None:
    for ruleset in (load(copy.deepcopy(document)), load_yaml(dump(document))):
        assert {
            name: (issuer.url, issuer.audience, issuer.client_id)
            for name, issuer in ruleset.issuers.items()
        } == {
            name: (spec["url"], spec["audience"], spec.get("client_id"))
            for name, spec in document["issuers"].items()
        }
        assert [rule.name for rule in ruleset.rules] == [r["name"] for r in document["rules"]]
        for rule, raw in zip(ruleset.rules, document["rules"], strict=True):
            assert rule.issuer == raw["issuer"]
            assert [c.claim for c in rule.constraints] == list(raw["claims"])
            grant = raw["grant"]
            expected = tuple(
                dict.fromkeys(normalized_pattern(p) for p in grant.get("packages", []))
            )
            assert (
                rule.grant.repository,
                rule.grant.access,
                rule.grant.packages,
                rule.grant.max_duration,
            ) == (grant["repository"], grant["access"], expected, grant.get("max_duration", 3600))


BAD_URLS = [
    "http://login.example.com",
    "http://127.0.0.2:8080",
    "ftp://login.example.com",
    "file:///etc/passwd",
    "login.example.com",
    "https://",
    "https:///path",
    "https://login.example.com?tenant=1",
    "https://login.example.com#x",
    "https://user:pw@login.example.com",
    "https://login.example.com:99999",
    "https://login.example.com:port",
    "https://[::1",
]
BAD_PATTERNS = [
    "a*b", "*a", "**", "acme**", "a?", "a/b", "a b", "", "-a", "a-", "_a*", "a:b", 'a"', "a" * 101,
    "ä", "acme-*/../*",
]  # fmt: skip
BAD_REPOSITORIES = ["a", "-ab", "a/b", "a b", "ab:", "é" * 3, "a" * 101, "", 5, None, ["internal"]]
BAD_DURATIONS = [899, 43201, 0, -3600, "3600", 3600.0, True, None, 10**30, [3600]]
NOT_STRINGS = st.sampled_from([5, 1.5, True, None, ["x"], {"x": "y"}])
KEYS = st.text(ALNUM + "_-", min_size=1, max_size=10)


def _issuer(data: st.DataObject, document: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = data.draw(st.sampled_from(sorted(document["issuers"])), label="issuer")
    spec: dict[str, Any] = document["issuers"][name]
    return name, spec


def _rule(data: st.DataObject, document: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    index = data.draw(st.integers(0, len(document["rules"]) - 1), label="rule")
    rule: dict[str, Any] = document["rules"][index]
    return index, rule


def mutate(data: st.DataObject, document: dict[str, Any], kind: str) -> tuple[str, ...]:
    """Apply one mutation of ``kind`` in place; return what the error must mention."""
    draw = data.draw
    if kind == "version":
        if draw(st.booleans()):
            del document["version"]
        else:
            document["version"] = draw(st.sampled_from([0, 2, True, "1", 1.0, None, [1]]))
        return ("'version'",)
    if kind == "top-level key":
        key = draw(KEYS.filter(lambda k: k not in ("version", "issuers", "rules")))
        document[key] = draw(NOT_STRINGS)
        return ("document", "unknown field", key)
    if kind == "issuers type":
        document["issuers"] = draw(st.sampled_from([[], "github", 1, None]))
        return ("'issuers'",)
    if kind == "rules type":
        document["rules"] = draw(st.sampled_from([{}, "rule", 1, None]))
        return ("'rules'",)
    if kind == "issuer name":
        old, spec = _issuer(data, document)
        new = draw(st.sampled_from(["GitHub", "1github", "git_hub", "a" * 33, "", "-x", 7]))
        document["issuers"] = {(new if n == old else n): s for n, s in document["issuers"].items()}
        return (f"issuer {new!r}", "name")
    if kind == "issuer type":
        name, _ = _issuer(data, document)
        document["issuers"][name] = draw(st.sampled_from(["https://x.example", 1, None, []]))
        return (f"issuer {name!r}",)
    if kind == "issuer key":
        name, spec = _issuer(data, document)
        known = ("url", "audience", "client_id", "client_secret", "scopes")
        key = draw(KEYS.filter(lambda k: k not in known))
        spec[key] = "x"
        return (f"issuer {name!r}", "unknown field", key)
    if kind in ("issuer url", "issuer audience", "issuer client_id"):
        name, spec = _issuer(data, document)
        field = kind.split()[1]
        bad: list[Any] = [5, True, ["x"], {"a": "b"}, ""]
        if field == "url":
            bad += BAD_URLS
        if field != "client_id" and draw(st.booleans()):
            spec.pop(field)
        else:
            spec[field] = draw(st.sampled_from(bad))
        return (f"issuer {name!r}", f"'{field}'")
    if kind == "duplicate issuer url":
        names = sorted(document["issuers"])
        if len(names) == 1:
            url = document["issuers"][names[0]]["url"]
            document["issuers"]["zz-copy"] = {"url": url, "audience": "a"}
            return ("issuer 'zz-copy'", "'url'")
        first, second = draw(st.lists(st.sampled_from(names), min_size=2, max_size=2, unique=True))
        order = list(document["issuers"])
        later = second if order.index(second) > order.index(first) else first
        earlier = first if later == second else second
        document["issuers"][later]["url"] = document["issuers"][earlier]["url"]
        return (f"issuer {later!r}", "'url'")
    if kind == "rule type":
        index, _ = _rule(data, document)
        document["rules"][index] = draw(st.sampled_from(["rule", 1, None, []]))
        return (f"rule #{index + 1}",)
    if kind == "rule name":
        index, rule = _rule(data, document)
        if draw(st.booleans()):
            del rule["name"]
        else:
            rule["name"] = draw(st.sampled_from(["", "-x", "a b", "a/b", "x" * 65, 5, None]))
        return (f"rule #{index + 1}", "'name'")
    if kind == "duplicate rule name":
        index, rule = _rule(data, document)
        document["rules"].append({**copy.deepcopy(rule)})
        return (f"rule {rule['name']!r}", "'name'")
    if kind == "rule key":
        _, rule = _rule(data, document)
        key = draw(KEYS.filter(lambda k: k not in ("name", "issuer", "claims", "grant")))
        rule[key] = "x"
        return (f"rule {rule['name']!r}", "unknown field", key)
    if kind == "rule issuer":
        _, rule = _rule(data, document)
        unknown = KEYS.filter(lambda k: k not in document["issuers"])
        choice: Any = draw(st.one_of(unknown, NOT_STRINGS, st.just("missing")))
        if choice == "missing":
            del rule["issuer"]
        else:
            rule["issuer"] = choice
        return (f"rule {rule['name']!r}", "'issuer'")
    if kind == "claims":
        _, rule = _rule(data, document)
        choice = draw(st.sampled_from(["missing", {}, [], "sub", None, 1]))
        if choice == "missing":
            del rule["claims"]
        else:
            rule["claims"] = choice
        return (f"rule {rule['name']!r}", "'claims'")
    if kind == "claim value":
        _, rule = _rule(data, document)
        claim = draw(st.sampled_from(list(rule["claims"])))
        bad_value = draw(
            st.one_of(
                # not NOT_STRINGS: its ["x"] is a list of alternatives, a valid claim value
                st.sampled_from([5, 1.5, True, None, {"x": "y"}]),
                st.sampled_from(["", "*", "**", "***", [], [""], ["*"], [5]]),
                claim_globs().map(lambda good: [good, None]),
            )
        )
        rule["claims"][claim] = bad_value
        return (f"rule {rule['name']!r}", f"'claims.{claim}'")
    if kind == "claim name":
        _, rule = _rule(data, document)
        rule["claims"][draw(st.sampled_from([5, "", True, None]))] = "x"
        return (f"rule {rule['name']!r}", "claim names")
    if kind == "grant type":
        _, rule = _rule(data, document)
        if draw(st.booleans()):
            del rule["grant"]
        else:
            rule["grant"] = draw(st.sampled_from(["read", 1, None, []]))
        return (f"rule {rule['name']!r}", "'grant'")
    if kind == "grant key":
        _, rule = _rule(data, document)
        key = draw(KEYS.filter(lambda k: k not in rules_module.Grant.__dataclass_fields__))
        rule["grant"][key] = "x"
        return (f"rule {rule['name']!r}", "'grant'", "unknown field", key)
    if kind == "grant repository":
        _, rule = _rule(data, document)
        if draw(st.booleans()):
            del rule["grant"]["repository"]
        else:
            rule["grant"]["repository"] = draw(st.sampled_from(BAD_REPOSITORIES))
        return (f"rule {rule['name']!r}", "'grant.repository'")
    if kind == "grant access":
        _, rule = _rule(data, document)
        bad_access = st.sampled_from(["missing", "write", "admin", "READ", "Read", "", None, 1])
        choice = draw(st.one_of(bad_access, st.just(["read"])))
        if choice == "missing":
            del rule["grant"]["access"]
        else:
            rule["grant"]["access"] = choice
        rule["grant"].pop("packages", None)  # so only the access is wrong
        return (f"rule {rule['name']!r}", "'grant.access'")
    if kind == "grant packages":
        _, rule = _rule(data, document)
        grant = rule["grant"]
        if grant["access"] == "read":
            grant["packages"] = draw(st.sampled_from([["acme-*"], [], None, "acme"]))
        else:
            choice = draw(
                st.one_of(
                    st.sampled_from(["missing", [], "acme-*", None, 5, {"acme": 1}]),
                    st.sampled_from(BAD_PATTERNS).map(lambda bad: ["acme-*", bad]),
                    NOT_STRINGS.map(lambda bad: [bad]),
                    st.just([f"p{i}" for i in range(21)]),
                    # Valid patterns, but too many long ones to fit in a session policy.
                    st.just([f"p{i:02d}-" + "x" * 90 + "*" for i in range(20)]),
                )
            )
            if choice == "missing":
                del grant["packages"]
            else:
                grant["packages"] = choice
        return (f"rule {rule['name']!r}", "'grant.packages'")
    if kind == "grant max_duration":
        _, rule = _rule(data, document)
        rule["grant"]["max_duration"] = draw(st.sampled_from(BAD_DURATIONS))
        return (f"rule {rule['name']!r}", "'grant.max_duration'")
    raise AssertionError(kind)


MUTATIONS = [
    "version",
    "top-level key",
    "issuers type",
    "rules type",
    "issuer name",
    "issuer type",
    "issuer key",
    "issuer url",
    "issuer audience",
    "issuer client_id",
    "duplicate issuer url",
    "rule type",
    "rule name",
    "duplicate rule name",
    "rule key",
    "rule issuer",
    "claims",
    "claim value",
    "claim name",
    "grant type",
    "grant key",
    "grant repository",
    "grant access",
    "grant packages",
    "grant max_duration",
]


def test_every_malformed_document_is_refused_naming_the_field(
    capsys: pytest.CaptureFixture[str],
) -> None:
    tally = Tally("rules loader mutations")

    def refused_naming_the_field(kind: str) -> None:
        # One run per kind of mutation, so each gets its share of examples.
        @fixed(10)
        @given(document=rules_documents(), data=st.data())
        def check(document: dict[str, Any], data: st.DataObject) -> None:
            note(f"mutation: {kind}")
            fragments = mutate(data, document, kind)
            loaders: dict[str, Callable[[], RuleSet]] = {
                "compile_document": lambda: load(copy.deepcopy(document)),
                "YAML": lambda: load_yaml(dump(document)),
            }
            for entry, loader in loaders.items():
                with pytest.raises(RulesError) as refused:
                    loader()
                message = str(refused.value)
                missing = [fragment for fragment in fragments if fragment not in message]
                assert not missing, f"{kind} via {entry}: {message!r} does not mention {missing}"
            tally.record(kind)

        check()

    for kind in MUTATIONS:
        refused_naming_the_field(kind)
    tally.report(capsys)
    assert set(tally.outcomes) == set(MUTATIONS)


@fixed(30)
@given(document=rules_documents(), key=st.sampled_from(["version", "issuers", "rules"]))
def test_a_duplicate_key_in_the_text_is_refused_naming_it(
    document: dict[str, Any], key: str
) -> None:
    text = dump(document) + f"{key}: {json.dumps(document[key])}\n"
    with pytest.raises(RulesError, match=f"duplicate key '{key}'"):
        load_yaml(text)
