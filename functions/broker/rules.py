"""The access-rules document: load, validate strictly, compile, match.

Rules are data compiled once at load (docs/admin.md, "Access rules").  A bad document is refused
as a whole with the rule's name, the field and the reason; the broker then refuses to serve
rather than fall open.  Matching works on claims that :mod:`broker.identity` has already
verified.

Claim constraints are anchored, case-sensitive globs in which ``*`` matches any run of
characters (``/`` included) and every other character stands for itself.  A constraint is one
pattern or a list of alternatives.  A string claim matches when a pattern matches it; a list
claim matches when any of its string elements does; every other type never matches, and a
missing claim never matches.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from . import names
from .settings import MAX_TOKEN_SECONDS, MIN_TOKEN_SECONDS, REPOSITORY_NAME, is_token_duration

Access = Literal["read", "publish"]
ACCESS_LEVELS: tuple[Access, ...] = ("read", "publish")
DEFAULT_MAX_DURATION = 3600
MAX_PACKAGE_PATTERNS = 20

_RULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ISSUER_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_SCOPES = ("openid",)
MAX_SCOPES = 16
# what a client sends in a form and shows in a message: printable ASCII, no white space
_WORD = re.compile(r"^[!-~]{1,1024}$")
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,128}$")


class RulesError(ValueError):
    """The rules document is invalid; the message names where and why."""


@dataclass(frozen=True)
class Issuer:
    name: str
    url: str
    audience: str
    client_id: str | None = None
    # Interactive login only (with client_id): a public "secret" an IdP requires on the device
    # flow's requests (Google), and the scopes the client asks for (openid among them).
    client_secret: str | None = None
    scopes: tuple[str, ...] = DEFAULT_SCOPES


@dataclass(frozen=True)
class Grant:
    repository: str
    access: Access
    packages: tuple[str, ...]  # normalized patterns; empty for read
    max_duration: int


@dataclass(frozen=True)
class ClaimConstraint:
    claim: str
    exact: frozenset[str]
    patterns: tuple[re.Pattern[str], ...]
    # The alternatives as the document writes them, in its order (to explain a mismatch).
    alternatives: tuple[str, ...] = ()

    def matches(self, value: object) -> bool:
        if isinstance(value, str):
            return self._matches_string(value)
        if isinstance(value, list):
            return any(isinstance(item, str) and self._matches_string(item) for item in value)
        return False

    def _matches_string(self, value: str) -> bool:
        return value in self.exact or any(p.fullmatch(value) for p in self.patterns)


@dataclass(frozen=True)
class Rule:
    name: str
    issuer: str
    constraints: tuple[ClaimConstraint, ...]
    grant: Grant

    def matches(self, issuer: str, claims: Mapping[str, Any]) -> bool:
        if issuer != self.issuer or not self.constraints:
            return False
        return all(c.claim in claims and c.matches(claims[c.claim]) for c in self.constraints)


@dataclass(frozen=True)
class RuleSet:
    issuers: Mapping[str, Issuer]
    rules: tuple[Rule, ...]

    def issuer_for_url(self, url: str) -> Issuer | None:
        for issuer in self.issuers.values():
            if issuer.url == url:
                return issuer
        return None

    def matching(self, issuer: str, claims: Mapping[str, Any]) -> list[Rule]:
        return [rule for rule in self.rules if rule.matches(issuer, claims)]

    def repositories(self) -> list[str]:
        return sorted({rule.grant.repository for rule in self.rules})


def check_served(rules: RuleSet, served: Iterable[str]) -> None:
    """Refuse a document that grants a repository the deployment does not serve (its
    TokenIssuerRole could not use a token for it); ``served`` empty means not checked."""
    allowed = list(served)
    if not allowed:
        return
    for rule in rules.rules:
        if rule.grant.repository not in allowed:
            raise RulesError(
                f"rule {rule.name!r}: field 'grant.repository': {rule.grant.repository!r} is not "
                f"a repository this deployment serves ({', '.join(allowed)})"
            )


# --------------------------------------------------------------------------- loading


class _StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate keys instead of keeping the last one."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise RulesError(f"keys must be plain values, at line {key_node.start_mark.line + 1}")
        if key in seen:
            raise RulesError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)


def _json_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise RulesError(f"duplicate key {key!r}")
        document[key] = value
    return document


def _json_document(text: str) -> tuple[bool, object]:
    """A document in JSON, read as JSON: PyYAML would read a surrogate-pair escape
    (``"\\ud83d\\ude80"``, as ``json.dumps`` writes characters outside the BMP) as two lone
    surrogates, so such a pattern could never match. Not JSON: ``(False, None)``."""
    if not text.lstrip().startswith("{"):
        return False, None
    try:
        return True, json.loads(text, object_pairs_hook=_json_without_duplicates)
    except (json.JSONDecodeError, RecursionError):  # e.g. a YAML flow mapping, {version: 1}
        return False, None


def parse(text: str) -> RuleSet:
    """Parse and validate a rules document (YAML or JSON)."""
    is_json, document = _json_document(text)
    if is_json:
        return compile_document(document)
    try:
        document = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise RulesError(f"not valid YAML: {exc}") from None
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:
        # Tags and values PyYAML cannot build (``!!int x``, ``2020-02-30``, deep nesting…).
        raise RulesError(f"not valid YAML: {type(exc).__name__}: {exc}") from None
    return compile_document(document)


def compile_document(document: object) -> RuleSet:
    doc = _mapping(document, "document")
    _only_keys(doc, {"version", "issuers", "rules"}, "document")
    if type(doc.get("version")) is not int or doc["version"] != 1:
        raise RulesError("document: field 'version' must be 1")
    issuers = _issuers(doc.get("issuers", {}))
    raw_rules = doc.get("rules", [])
    if not isinstance(raw_rules, list):
        raise RulesError("document: field 'rules' must be a list")
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_rules):
        rule = _rule(raw, index, issuers)
        if rule.name in seen:
            raise RulesError(f"rule {rule.name!r}: field 'name' is used by another rule")
        seen.add(rule.name)
        rules.append(rule)
    return RuleSet(issuers=issuers, rules=tuple(rules))


def _issuers(raw: object) -> dict[str, Issuer]:
    table = _mapping(raw, "document: field 'issuers'")
    issuers: dict[str, Issuer] = {}
    urls: set[str] = set()
    for name, spec in table.items():
        where = f"issuer {name!r}"
        if not isinstance(name, str) or not _ISSUER_NAME.fullmatch(name):
            raise RulesError(f"{where}: name must match {_ISSUER_NAME.pattern}")
        fields = _mapping(spec, where)
        _only_keys(fields, {"url", "audience", "client_id", "client_secret", "scopes"}, where)
        url = _string(fields.get("url"), f"{where}: field 'url'")
        reason = issuer_url_error(url)
        if reason:
            raise RulesError(f"{where}: field 'url' {reason}")
        if url in urls:
            raise RulesError(f"{where}: field 'url' is used by another issuer")
        urls.add(url)
        audience = _string(fields.get("audience"), f"{where}: field 'audience'")
        client_id = fields.get("client_id")
        if client_id is not None:
            client_id = _word(client_id, f"{where}: field 'client_id'")
        for login_only in ("client_secret", "scopes"):
            if client_id is None and login_only in fields:
                raise RulesError(
                    f"{where}: field {login_only!r} is for interactive login and needs 'client_id'"
                )
        client_secret = fields.get("client_secret")
        if client_secret is not None:
            client_secret = _word(client_secret, f"{where}: field 'client_secret'")
        issuers[name] = Issuer(
            name=name,
            url=url,
            audience=audience,
            client_id=client_id,
            client_secret=client_secret,
            scopes=_scopes(fields.get("scopes", list(DEFAULT_SCOPES)), f"{where}: field 'scopes'"),
        )
    return issuers


def _scopes(raw: object, where: str) -> tuple[str, ...]:
    """The OAuth scopes of an interactive login: distinct scope tokens, ``openid`` among them
    (without it there is no ID token), at most MAX_SCOPES."""
    if not isinstance(raw, list) or not raw or len(raw) > MAX_SCOPES:
        raise RulesError(f"{where} must be a list of 1 to {MAX_SCOPES} scopes")
    for scope in raw:
        if not isinstance(scope, str) or not _SCOPE.fullmatch(scope):
            raise RulesError(
                f"{where}: {scope!r} is not an OAuth scope (printable ASCII, no space, quote "
                "or backslash)"
            )
    if "openid" not in raw:
        raise RulesError(f"{where} must include 'openid' (without it there is no ID token)")
    if len(set(raw)) != len(raw):
        raise RulesError(f"{where} lists a scope twice")
    return tuple(raw)


def issuer_url_error(url: str) -> str | None:
    """Why ``url`` cannot be a trusted issuer, or ``None``.

    Issuers must be ``https://``; loopback hosts may use ``http://`` (docs/admin.md).
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return "must be a valid URL"
    if parts.query or parts.fragment or parts.username or parts.password:
        return "must not have a query, fragment or credentials"
    if not parts.hostname:
        return "must be an absolute URL"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return None
    return "must use https:// (http:// only for loopback hosts)"


def _rule(raw: object, index: int, issuers: Mapping[str, Issuer]) -> Rule:
    fields = _mapping(raw, f"rule #{index + 1}")
    name = fields.get("name")
    if not isinstance(name, str) or not _RULE_NAME.fullmatch(name):
        raise RulesError(f"rule #{index + 1}: field 'name' must match {_RULE_NAME.pattern}")
    where = f"rule {name!r}"
    _only_keys(fields, {"name", "issuer", "claims", "grant"}, where)
    issuer = fields.get("issuer")
    if not isinstance(issuer, str) or issuer not in issuers:
        raise RulesError(f"{where}: field 'issuer' must name one of the document's issuers")
    constraints = _constraints(fields.get("claims"), where)
    grant = _grant(fields.get("grant"), where)
    return Rule(name=name, issuer=issuer, constraints=constraints, grant=grant)


def _constraints(raw: object, where: str) -> tuple[ClaimConstraint, ...]:
    if not isinstance(raw, dict) or not raw:
        raise RulesError(
            f"{where}: field 'claims' must be a non-empty mapping (a rule without claim "
            "constraints would match every identity of its issuer)"
        )
    constraints = []
    for claim, value in raw.items():
        field = f"{where}: field 'claims.{claim}'"
        if not isinstance(claim, str) or not claim:
            raise RulesError(f"{where}: claim names must be non-empty strings")
        alternatives = value if isinstance(value, list) else [value]
        if not alternatives:
            raise RulesError(f"{field} must not be an empty list")
        exact: set[str] = set()
        patterns: list[re.Pattern[str]] = []
        for alternative in alternatives:
            if not isinstance(alternative, str) or not alternative:
                raise RulesError(
                    f"{field} must be a non-empty string or a list of them "
                    f"(got {type(alternative).__name__}; only string claims can be matched, "
                    "boolean and number claims never match)"
                )
            if alternative.strip("*") == "":
                raise RulesError(f"{field} must constrain the value; '*' alone matches anything")
            if "*" in alternative:
                patterns.append(glob_to_regex(alternative))
            else:
                exact.add(alternative)
        constraints.append(
            ClaimConstraint(claim, frozenset(exact), tuple(patterns), tuple(alternatives))
        )
    return tuple(constraints)


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile an anchored, case-sensitive glob in which only ``*`` is special."""
    body = ".*".join(re.escape(part) for part in pattern.split("*"))
    # \A and \Z: "$" would also match before a trailing newline.
    return re.compile(rf"\A{body}\Z", re.DOTALL)


def _grant(raw: object, where: str) -> Grant:
    fields = _mapping(raw, f"{where}: field 'grant'")
    where = f"{where}: field 'grant"
    _only_keys(fields, {"repository", "access", "packages", "max_duration"}, where + "'")
    repository = fields.get("repository")
    if not isinstance(repository, str) or not REPOSITORY_NAME.fullmatch(repository):
        raise RulesError(f"{where}.repository' must be a CodeArtifact repository name")
    access = fields.get("access")
    if access not in ACCESS_LEVELS:
        raise RulesError(f"{where}.access' must be 'read' or 'publish'")
    packages: tuple[str, ...] = ()
    if access == "publish":
        packages = package_patterns(fields.get("packages"), f"{where}.packages'")
    elif "packages" in fields:
        raise RulesError(
            f"{where}.packages' only applies to publish grants (read is repository-wide)"
        )
    max_duration = fields.get("max_duration", DEFAULT_MAX_DURATION)
    if not is_token_duration(max_duration):
        raise RulesError(
            f"{where}.max_duration' must be a whole number of seconds from "
            f"{MIN_TOKEN_SECONDS} to {MAX_TOKEN_SECONDS}"
        )
    return Grant(
        repository=repository,
        access=access,
        packages=packages,
        max_duration=max_duration,
    )


def package_patterns(raw: object, field: str) -> tuple[str, ...]:
    """Validate and normalize a non-empty list of package patterns, keeping order, no repeats."""
    if not isinstance(raw, list) or not raw:
        raise RulesError(f"{field} must be a non-empty list of package patterns (e.g. 'acme-*')")
    if len(raw) > MAX_PACKAGE_PATTERNS:
        raise RulesError(f"{field} may list at most {MAX_PACKAGE_PATTERNS} patterns")
    normalized: list[str] = []
    for pattern in raw:
        reason = names.pattern_error(pattern)
        if reason:
            raise RulesError(f"{field}: {pattern!r} {reason}")
        value = names.normalize_pattern(pattern)
        if value not in normalized:
            normalized.append(value)
    return tuple(normalized)


def _mapping(raw: object, where: str) -> dict[Any, Any]:
    if not isinstance(raw, dict):
        raise RulesError(f"{where} must be a mapping")
    return raw


def _string(raw: object, where: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise RulesError(f"{where} must be a non-empty string")
    return raw


def _word(raw: object, where: str) -> str:
    """What a client sends in a form and shows in a message (a client id, a public client
    secret): printable ASCII without white space, as clients accept it (cabroker.broker)."""
    text = _string(raw, where)
    if not _WORD.fullmatch(text):
        raise RulesError(f"{where} must be 1 to 1024 printable ASCII characters, no white space")
    return text


def _only_keys(fields: Mapping[Any, Any], allowed: Iterable[str], where: str) -> None:
    unknown = sorted(str(key) for key in fields if key not in set(allowed))
    if unknown:
        raise RulesError(f"{where}: unknown field(s) {', '.join(unknown)}")
