"""Hypothesis strategies and helpers shared by the property and fuzz tests of the broker.

Generators here follow the grammars the README documents (rules documents, claim globs, package
patterns, repository names, ARNs) but are written independently of the code under test: they
never call the validators they are meant to exercise, so a loosened validator cannot loosen
the data it is tested with.
"""

from __future__ import annotations

import base64
import functools
import re
import string
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st

Json = Any

# --------------------------------------------------------------------------- settings


def fixed(max_examples: int) -> settings:
    """Reproducible settings: the same examples on every run (CI), no example database."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@dataclass
class Tally:
    """Counts the cases a Hypothesis test ran, by outcome, and prints the totals."""

    name: str
    outcomes: Counter[str] = field(default_factory=Counter)

    def record(self, outcome: str) -> None:
        self.outcomes[outcome] += 1
        event(outcome)

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())

    def report(self, capsys: pytest.CaptureFixture[str]) -> None:
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(self.outcomes.items()))
        with capsys.disabled():
            print(f"\n[hypothesis] {self.name}: {self.total} cases ({detail})")


# --------------------------------------------------------------------------- names and patterns

ALNUM = string.ascii_letters + string.digits
NAME_CHARS = ALNUM + "._-"


def package_names(max_size: int = 100, min_size: int = 1) -> st.SearchStrategy[str]:
    """PEP 508 project names: letters, digits, '.', '_', '-', alphanumeric at both ends."""
    one = st.sampled_from(ALNUM)
    inner = st.text(NAME_CHARS, min_size=max(0, min_size - 2), max_size=max(0, max_size - 2))
    longer = st.builds(lambda a, b, c: a + b + c, one, inner, one)
    return longer if min_size > 1 else st.one_of(one, longer) if max_size > 1 else one


def package_prefixes(max_size: int = 99, min_size: int = 1) -> st.SearchStrategy[str]:
    """What may precede a trailing '*': alphanumeric first, then any name characters."""
    rest = st.text(NAME_CHARS, min_size=max(0, min_size - 1), max_size=max(0, max_size - 1))
    return st.builds(lambda a, b: a + b, st.sampled_from(ALNUM), rest)


def package_patterns(max_size: int = 100, min_size: int = 1) -> st.SearchStrategy[str]:
    """Every form the README allows: a name, a prefix followed by '*', or '*' alone."""
    names = package_names(max_size, min_size)
    if max_size < 2:
        return st.one_of(names, st.just("*"))
    prefixes = package_prefixes(max_size - 1, max(1, min_size - 1)).map(lambda p: p + "*")
    return st.one_of(names, prefixes, st.just("*"))


def normalize(name: str) -> str:
    """PEP 503, written out again here rather than imported from the code under test."""
    return re.sub(r"[-_.]+", "-", name).lower()


REPOSITORY_NAMES = st.text(NAME_CHARS, min_size=2, max_size=100).filter(lambda s: s[0] in ALNUM)
DURATIONS = st.integers(min_value=900, max_value=43200)
ISSUER_NAMES = st.from_regex(r"\A[a-z][a-z0-9-]{0,31}\Z")
RULE_NAMES = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
DOMAIN_NAMES = st.from_regex(r"\A[a-z][a-z0-9-]{0,20}[a-z0-9]\Z")
ACCOUNTS = st.from_regex(r"\A[0-9]{12}\Z")
REGIONS = st.sampled_from(
    ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2", "cn-north-1"]
)
PARTITIONS = st.sampled_from(["aws", "aws-cn", "aws-us-gov"])

_HOST_LABEL = st.from_regex(r"\A[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?\Z")
_PATH = st.lists(st.text(ALNUM + "-_.~", min_size=1, max_size=8), max_size=3).map(
    lambda parts: "".join("/" + p for p in parts)
)


@st.composite
def issuer_urls(draw: st.DrawFn) -> str:
    """https:// on any host, or http:// on a loopback host (the devstack's issuers)."""
    port = draw(st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}")))
    path = draw(_PATH)
    if draw(st.booleans()):
        loopback = draw(st.sampled_from(["127.0.0.1", "localhost", "[::1]"]))
        return f"http://{loopback}{port}{path}"
    labels = draw(st.lists(_HOST_LABEL, min_size=1, max_size=3))
    return "https://" + ".".join([*labels, "example"]) + port + path


# --------------------------------------------------------------------------- claim globs

# Literal characters of claim patterns: ASCII, regex and YAML metacharacters, whitespace and
# letters from other scripts (so look-alikes and case folding have something to bite on).
GLOB_LITERALS = (
    string.ascii_letters
    + string.digits
    + "/.-_:@ +?[](){}|^$\\#&!%,'\"\t\n"
    + "éÉßñøЖжаеорсΩω東京🚀"
)
LITERAL_TEXT = st.text(st.sampled_from(GLOB_LITERALS), max_size=6)
FILL_TEXT = st.text(st.sampled_from(GLOB_LITERALS), max_size=5)


def claim_globs() -> st.SearchStrategy[str]:
    """One alternative: literal segments joined by '*', never only stars."""
    return (
        st.lists(LITERAL_TEXT, min_size=1, max_size=4)
        .map("*".join)
        .filter(lambda glob: glob.strip("*") != "")
    )


def glob_matches(glob: str, value: str) -> bool:
    """Reference matcher for anchored globs where only '*' is special (no regular expressions).

    The classic greedy two-pointer algorithm, backtracking to the last star.
    """
    g = v = 0
    star, mark = -1, 0
    while v < len(value):
        if g < len(glob) and glob[g] != "*" and glob[g] == value[v]:
            g += 1
            v += 1
        elif g < len(glob) and glob[g] == "*":
            star, mark = g, v
            g += 1
        elif star != -1:
            g = star + 1
            mark += 1
            v = mark
        else:
            return False
    while g < len(glob) and glob[g] == "*":
        g += 1
    return g == len(glob)


# --------------------------------------------------------------------------- rules documents


@st.composite
def claim_constraints(draw: st.DrawFn) -> dict[str, Json]:
    names = draw(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=2, unique=True))
    constraints: dict[str, Json] = {}
    for name in names:
        globs = draw(st.lists(claim_globs(), min_size=1, max_size=2))
        constraints[name] = globs if len(globs) > 1 or draw(st.booleans()) else globs[0]
    return constraints


@st.composite
def grants(draw: st.DrawFn) -> dict[str, Json]:
    grant: dict[str, Json] = {"repository": draw(REPOSITORY_NAMES)}
    grant["access"] = draw(st.sampled_from(["read", "publish"]))
    if grant["access"] == "publish":
        # Few and short enough that the full grant always fits in a session policy.
        grant["packages"] = draw(st.lists(package_patterns(max_size=30), min_size=1, max_size=4))
    if draw(st.booleans()):
        grant["max_duration"] = draw(DURATIONS)
    return grant


# printable ASCII without white space (client ids and public secrets); OAuth scope tokens
WORDS = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20
)
SCOPES = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='"\\'),
    min_size=1,
    max_size=12,
)


@st.composite
def rules_documents(draw: st.DrawFn) -> dict[str, Json]:
    """A valid rules document, as the README's "Access rules" section describes it."""
    issuer_names = draw(st.lists(ISSUER_NAMES, min_size=1, max_size=2, unique=True))
    urls = draw(
        st.lists(issuer_urls(), min_size=len(issuer_names), max_size=len(issuer_names), unique=True)
    )
    issuers: dict[str, Json] = {}
    for name, url in zip(issuer_names, urls, strict=True):
        issuer: dict[str, Json] = {"url": url, "audience": draw(st.text(min_size=1, max_size=20))}
        if draw(st.booleans()):  # interactive login
            issuer["client_id"] = draw(WORDS)
            if draw(st.booleans()):
                issuer["client_secret"] = draw(WORDS)
            if draw(st.booleans()):
                others = draw(st.lists(SCOPES.filter(lambda s: s != "openid"), max_size=3))
                issuer["scopes"] = list(dict.fromkeys(["openid", *others]))
        issuers[name] = issuer
    rule_names = draw(st.lists(RULE_NAMES, min_size=1, max_size=3, unique=True))
    rules = [
        {
            "name": name,
            "issuer": draw(st.sampled_from(issuer_names)),
            "claims": draw(claim_constraints()),
            "grant": draw(grants()),
        }
        for name in rule_names
    ]
    return {"version": 1, "issuers": issuers, "rules": rules}


# --------------------------------------------------------------------------- JSON and bytes

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)


@functools.cache  # strategies are built once: building them is what costs
def json_values(max_leaves: int = 12) -> st.SearchStrategy[Json]:
    return st.recursive(
        JSON_SCALARS,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
