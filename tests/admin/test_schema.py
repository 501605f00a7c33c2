"""The JSON Schema of rules documents (admin/cabroker_admin/rules.schema.json), for editors,
against the broker's loader: a document validates exactly when the loader accepts it, except
for the loader's checks a schema cannot express, which are listed here (``beyond_the_schema``)
and in the schema's ``$comment``, and each shown to be one.

The documents: the repository's rules files (rules.yaml, with its examples uncommented,
devstack/rules.yaml with its placeholders filled), the rules documents of docs/*.md, generated
valid documents (Hypothesis, the loader's own strategies), the loader's invalid examples
(tests/unit/broker/test_rules.py) and its generated malformed documents (the mutations of
tests/unit/broker/test_properties.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml
from hypothesis import given, note
from hypothesis import strategies as st

from broker import names
from broker import rules as rules_module
from broker.acceptance import accept
from broker.rules import RulesError
from broker.settings import MAX_TOKEN_SECONDS, MIN_TOKEN_SECONDS, REPOSITORY_NAME
from cabroker_admin.checkcli import schema_text
from cabroker_admin.lint import PLACEHOLDER_DOMAIN
from devstack.stack import expand_rules
from tests.admin.test_rules_file import uncommented
from tests.unit.broker.strategies import Tally, fixed, rules_documents
from tests.unit.broker.test_properties import MUTATIONS, dump, mutate
from tests.unit.broker.test_rules import BAD_DOCUMENTS

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "admin" / "cabroker_admin" / "rules.schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
DEFS: dict[str, Any] = SCHEMA["$defs"]


def ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    """``pattern`` as JSON Schema means it (ECMA-262), where ``$`` is the end of the text;
    Python's ``$`` also matches before a final newline. The schema's ``$`` only ends patterns
    (test_every_pattern_ends_with_its_only_dollar)."""
    del schema
    if not validator.is_type(instance, "string"):
        return
    python = pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern
    if not re.search(python, instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": ecma_pattern})
VALIDATOR = Validator(SCHEMA)


def schema_valid(data: Any) -> bool:
    return bool(VALIDATOR.is_valid(data))


def loader_error(text: str) -> str | None:
    """Why the broker refuses ``text`` (its parse and its session-policy check; no served
    repositories), or ``None`` when it accepts it."""
    try:
        accept(text, PLACEHOLDER_DOMAIN, ())
    except RulesError as error:
        return str(error)
    return None


def document_data(text: str) -> Any:
    """The document's data as a schema or a linter sees it: JSON as JSON (as the broker reads
    it), anything else as YAML (safe; duplicate keys keep the last, unlike the broker)."""
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            pass
    return yaml.safe_load(text)


def data_of(text: str) -> tuple[bool, Any]:
    """(parsed, the data) as an editor's schema validation sees the text."""
    try:
        return True, document_data(text)
    except yaml.YAMLError:
        return False, None


# --------------------------------------------------------------------------- the exclusions


def beyond_the_schema(data: Any, message: str) -> str | None:
    """Which of the loader's checks that no JSON Schema can express refused a document, or
    ``None``. These, and only these, may refuse a document the schema validates."""
    if "duplicate key" in message:
        return "duplicate keys (the text, not the data)"
    if "is used by another rule" in message or "is used by another issuer" in message:
        return "unique rule names and issuer URLs"
    if "over the 2048" in message:
        return "the session-policy size"
    if "must name one of the document's issuers" in message and _named_issuer_is_a_string(
        data, message
    ):
        return "a rule's issuer is declared"
    if _integral_float(data, message):
        return "1.0 where an integer is wanted"
    if _has_a_key_that_is_not_a_string(data):
        return "keys that are not strings"
    if "field 'url'" in message and (
        "must be a valid URL" in message
        or "must be an absolute URL" in message
        or _url_has_credentials(data, message)
    ):
        return "URL details (ports, hosts, credentials)"
    return None


def _rule_named(data: Any, message: str) -> Any:
    named = re.match(r"rule '([^']*)'", message)
    for rule in data.get("rules") or [] if isinstance(data, dict) else []:
        if named and isinstance(rule, dict) and rule.get("name") == named.group(1):
            return rule
    return None


def _named_issuer_is_a_string(data: Any, message: str) -> bool:
    rule = _rule_named(data, message)
    return rule is not None and isinstance(rule.get("issuer"), str)


def _integral_float(data: Any, message: str) -> bool:
    def integral(value: Any) -> bool:
        return isinstance(value, float) and value.is_integer()

    if "'version' must be 1" in message and isinstance(data, dict):
        return integral(data.get("version"))
    rule = _rule_named(data, message)
    if "'grant.max_duration'" in message and rule is not None:
        grant = rule.get("grant")
        return isinstance(grant, dict) and integral(grant.get("max_duration"))
    return False


def _has_a_key_that_is_not_a_string(data: Any) -> bool:
    if isinstance(data, dict):
        return any(
            not isinstance(key, str) or _has_a_key_that_is_not_a_string(value)
            for key, value in data.items()
        )
    if isinstance(data, list):
        return any(map(_has_a_key_that_is_not_a_string, data))
    return False


def _url_has_credentials(data: Any, message: str) -> bool:
    named = re.match(r"issuer '([^']*)'", message)
    issuers = data.get("issuers") if isinstance(data, dict) else None
    if not named or not isinstance(issuers, dict):
        return False
    spec = issuers.get(named.group(1))
    url = spec.get("url") if isinstance(spec, dict) else None
    return isinstance(url, str) and "@" in url.split("//", 1)[-1].split("/", 1)[0]


def agree(text: str) -> str:
    """Assert that the schema and the loader agree on ``text`` (but for the exclusions);
    return the outcome: accepted, refused, or the exclusion."""
    error = loader_error(text)
    parsed, data = data_of(text)
    valid = parsed and schema_valid(data)
    if error is None:
        assert valid, f"the loader accepts, the schema refuses: {text!r}"
        return "accepted"
    if not valid:
        return "refused"
    excluded = beyond_the_schema(data, error)
    assert excluded, f"the loader refuses ({error}), the schema validates: {text!r}"
    return f"excluded: {excluded}"


# --------------------------------------------------------------------------- the schema itself


def test_the_schema_is_a_draft_2020_12_schema() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_rules_schema_prints_the_schema_file() -> None:
    assert schema_text() == SCHEMA_PATH.read_text(encoding="utf-8")


def test_every_pattern_ends_with_its_only_dollar() -> None:
    patterns = re.findall(r'"pattern": "((?:[^"\\]|\\.)*)"', SCHEMA_PATH.read_text("utf-8"))
    assert len(patterns) >= 5
    for pattern in patterns:
        assert "$" not in pattern[:-1], pattern


def test_its_names_and_limits_are_the_loaders() -> None:
    rule = DEFS["rule"]["properties"]
    grant = DEFS["grant"]["properties"]
    assert DEFS["issuer-name"]["pattern"] == rules_module._ISSUER_NAME.pattern
    assert rule["name"]["pattern"] == rules_module._RULE_NAME.pattern
    assert grant["repository"]["pattern"] == REPOSITORY_NAME.pattern
    assert grant["access"]["enum"] == list(rules_module.ACCESS_LEVELS)
    assert grant["packages"]["maxItems"] == rules_module.MAX_PACKAGE_PATTERNS
    assert grant["max_duration"]["minimum"] == MIN_TOKEN_SECONDS
    assert grant["max_duration"]["maximum"] == MAX_TOKEN_SECONDS
    assert grant["max_duration"]["default"] == rules_module.DEFAULT_MAX_DURATION
    assert DEFS["package-pattern"]["maxLength"] == names.MAX_PATTERN_LENGTH
    assert set(SCHEMA["properties"]) == {"version", "issuers", "rules"}
    assert set(rule) == {"name", "issuer", "claims", "grant"}
    assert set(grant) == set(rules_module.Grant.__dataclass_fields__)
    assert set(DEFS["issuer"]["properties"]) == set(rules_module.Issuer.__dataclass_fields__) - {
        "name"
    }


# --------------------------------------------------------------------------- valid documents


FIELDS = {"version", "issuers", "rules"}


def docs_rules_documents() -> list[tuple[str, str]]:
    """Every ```yaml block of README.md and docs/*.md that is a rules document."""
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        blocks = re.findall(r"```yaml\n(.*?)```", page.read_text(encoding="utf-8"), re.S)
        for number, block in enumerate(blocks, start=1):
            data = yaml.safe_load(block)
            keys = set(data) if isinstance(data, dict) else set()
            if "version" in keys and keys & {"issuers", "rules"} and keys <= FIELDS:
                found.append((f"{page.name} yaml block {number}", block))
    return found


def repository_documents() -> list[tuple[str, str]]:
    rules = (ROOT / "rules.yaml").read_text(encoding="utf-8")
    devstack = expand_rules(
        ROOT / "devstack" / "rules.yaml", "http://127.0.0.1:8080", ["internal", "restricted"]
    )
    return [
        ("rules.yaml", rules),
        ("rules.yaml, examples uncommented", uncommented(rules)),
        ("devstack/rules.yaml", devstack),
        *docs_rules_documents(),
    ]


def test_the_docs_hold_rules_documents() -> None:
    """The documents the schema is checked on include the admin page's and each identity
    provider's (a block that stops being a whole document is noticed here)."""
    assert [name for name, _ in docs_rules_documents()] == [
        "admin.md yaml block 1",
        *(f"identity-providers.md yaml block {number}" for number in range(1, 6)),
    ]


@pytest.mark.parametrize(
    ("name", "text"), repository_documents(), ids=[n for n, _ in repository_documents()]
)
def test_the_repositorys_rules_documents_validate(name: str, text: str) -> None:
    assert loader_error(text) is None, name
    assert agree(text) == "accepted"


@fixed(150)
@given(document=rules_documents())
def test_every_generated_valid_document_validates(document: dict[str, Any]) -> None:
    assert agree(json.dumps(document)) == "accepted"
    assert agree(dump(document)) == "accepted"


# --------------------------------------------------------------------------- invalid documents

# The loader's examples the schema cannot refuse, and why.
BEYOND = {
    "duplicate key": "duplicate keys (the text, not the data)",
    "duplicate key in JSON": "duplicate keys (the text, not the data)",
    "two issuers with one url": "unique rule names and issuer URLs",
    "duplicate rule names": "unique rule names and issuer URLs",
    "unknown issuer": "a rule's issuer is declared",
}


@pytest.mark.parametrize(
    ("name", "text"),
    [(name, text) for name, text, _ in BAD_DOCUMENTS],
    ids=[name for name, _, _ in BAD_DOCUMENTS],
)
def test_the_loaders_invalid_examples_fail_both(name: str, text: str) -> None:
    outcome = agree(text)
    if name in BEYOND:
        assert outcome == f"excluded: {BEYOND[name]}"
    else:
        assert outcome == "refused"


def test_every_generated_malformed_document_fails_both_but_for_the_exclusions(
    capsys: pytest.CaptureFixture[str],
) -> None:
    tally = Tally("schema against the loader's mutations")

    def both_refuse(kind: str) -> None:
        @fixed(10)
        @given(document=rules_documents(), data=st.data())
        def check(document: dict[str, Any], data: st.DataObject) -> None:
            note(f"mutation: {kind}")
            mutate(data, document, kind)
            outcomes = {agree(json.dumps(document)), agree(dump(document))}
            assert "accepted" not in outcomes
            for outcome in outcomes:
                tally.record(f"{kind}: {outcome}")

        check()

    for kind in MUTATIONS:
        if kind in ("claim name", "issuer name"):  # non-string keys: not JSON
            both_refuse_yaml_only(kind, tally)
        else:
            both_refuse(kind)
    tally.report(capsys)
    refused = {outcome.split(": ", 1)[0] for outcome in tally.outcomes if "refused" in outcome}
    # Every mutation the schema can see is refused by it at least once.
    assert refused >= set(MUTATIONS) - {"duplicate issuer url", "duplicate rule name"}


def both_refuse_yaml_only(kind: str, tally: Tally) -> None:
    """Mutations that may write a key that is not a string: YAML only (json.dumps would turn
    the key into a string)."""

    @fixed(30)  # most write a key that is not a string (excluded); enough are refused
    @given(document=rules_documents(), data=st.data())
    def check(document: dict[str, Any], data: st.DataObject) -> None:
        note(f"mutation: {kind}")
        mutate(data, document, kind)
        outcome = agree(dump(document))
        assert outcome != "accepted"
        tally.record(f"{kind}: {outcome}")

    check()


# --------------------------------------------------------------------------- the exclusions


ISSUER = "version: 1\nissuers:\n  corp: {url: 'https://login.example.com', audience: a}\n"


def one_rule(grant: str, issuer: str = "corp") -> str:
    rule = f"{{name: r, issuer: {issuer}, claims: {{groups: eng}}, grant: {{{grant}}}}}"
    return ISSUER + f"rules:\n  - {rule}\n"


EXCLUDED = [
    pytest.param(
        "version: 1.0\n", "1.0 where an integer is wanted", id="version written with a fraction"
    ),
    pytest.param(
        one_rule("repository: internal, access: read, max_duration: 3600.0"),
        "1.0 where an integer is wanted",
        id="max_duration written with a fraction",
    ),
    pytest.param(
        one_rule("repository: internal, access: read", issuer="elsewhere"),
        "a rule's issuer is declared",
        id="an undeclared issuer",
    ),
    pytest.param(
        one_rule(
            "repository: internal, access: publish, packages: ["
            + ", ".join(f"p{i:02d}-{'x' * 90}*" for i in range(20))
            + "]"
        ),
        "the session-policy size",
        id="a grant too large for a session policy",
    ),
    pytest.param(
        "version: 1\nissuers:\n  corp: {url: 'https://login.example.com:99999', audience: a}\n",
        "URL details (ports, hosts, credentials)",
        id="a port out of range",
    ),
    pytest.param(
        "version: 1\nissuers:\n  corp: {url: 'https://user@login.example.com', audience: a}\n",
        "URL details (ports, hosts, credentials)",
        id="credentials in the URL",
    ),
    pytest.param(
        ISSUER + "rules:\n  - {name: r, issuer: corp, claims: {1: x}, "
        "grant: {repository: internal, access: read}}\n",
        "keys that are not strings",
        id="a claim name that is a number",
    ),
]


@pytest.mark.parametrize(("text", "why"), EXCLUDED)
def test_each_exclusion_is_a_loader_check_the_schema_cannot_make(text: str, why: str) -> None:
    assert loader_error(text) is not None
    assert agree(text) == f"excluded: {why}"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("version: 1\nissuers:\n  corp: {url: 'https://login.example.com?', "
                     "audience: a}\n", id="an empty query"),
        pytest.param("version: 1\nissuers:\n  corp: {url: 'HTTP://LocalHost:8080/x', "
                     "audience: a}\n", id="loopback in capitals"),
        pytest.param(ISSUER + "rules: []\n", id="no rules"),
        pytest.param(one_rule("repository: internal, access: read, max_duration: 43200"),
                     id="the longest duration"),
        pytest.param(ISSUER.replace("audience: a", "audience: a, client_id: null"),
                     id="a null client_id"),
    ],
)  # fmt: skip
def test_what_the_loader_accepts_at_the_edges_validates(text: str) -> None:
    assert agree(text) == "accepted"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param("version: 1\nissuers:\n  corp: {url: 'https://a.example?x=1', audience: a}\n",
                     "url", id="a query"),
        pytest.param("version: 1\nissuers:\n  corp: {url: 'http://10.0.0.1', audience: a}\n",
                     "url", id="http on another host"),
        pytest.param(one_rule("repository: internal, access: read, packages: [a]"), "packages",
                     id="packages on a read grant"),
        pytest.param(one_rule("repository: internal, access: publish"), "packages",
                     id="publish without packages"),
        pytest.param(one_rule('repository: "internal\\n", access: read'), "repository",
                     id="a name ending in a newline"),
        pytest.param(one_rule("repository: internal, access: publish, packages: ['a-*-b']"),
                     "packages", id="a star inside a pattern"),
    ],
)  # fmt: skip
def test_what_the_loader_refuses_at_the_edges_the_schema_refuses(text: str, field: str) -> None:
    error = loader_error(text)
    assert error is not None
    assert field in error
    assert agree(text) == "refused"
