"""Function settings, read from ``BROKER_*`` environment variables and validated once.

The required variables are a fixed contract (docs/admin.md, "Settings"); the optional knobs all have
defaults and are listed in docs/admin.md.  Anything wrong is reported with the variable's name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
DOMAIN_NAME = re.compile(r"^[a-z][a-z0-9-]{0,48}[a-z0-9]$")
ACCOUNT_ID = re.compile(r"^\d{12}$")
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")

SHARED_CACHE = ("off", "subject", "grant")
KMS_KEY = re.compile(r"^(arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/[\w/-]+|[\w/-]{1,256})$")
TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
REPOSITORY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,99}$")

MIN_TOKEN_SECONDS = 900
MAX_TOKEN_SECONDS = 43200


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    rules_file: str | None
    rules_parameter: str | None
    role_arn: str
    domain: str
    domain_owner: str
    region: str
    rules_cache_seconds: int = 60
    jwks_cache_seconds: int = 600
    jwks_min_refresh_seconds: int = 60
    jwks_stale_seconds: int = 3600
    http_timeout_seconds: float = 3.0
    # How long the cold start's init may spend fetching the rules' issuers' keys (0: it does not).
    jwks_prefetch_seconds: float = 2.0
    clock_leeway_seconds: int = 60
    max_id_token_bytes: int = 8192
    max_body_bytes: int = 16384
    token_cache_margin_seconds: int = 300
    token_cache_size: int = 1024
    endpoint_cache_seconds: int = 3600
    aws_max_attempts: int = 3
    cache_table: str | None = None  # DynamoDB: the shared token cache and the replay guard
    cache_key_id: str | None = None  # KMS key that encrypts the shared cache's tokens
    shared_cache: str = "off"  # off, subject or grant (sharedcache.py)
    replay_guard: bool = False
    aws_connect_timeout_seconds: float = 1.0
    aws_read_timeout_seconds: float = 3.0
    # The private repositories this deployment serves (TokenIssuerRole's set); rules that grant
    # another one are refused. Empty: not checked (a broker configured before the setting).
    repositories: tuple[str, ...] = ()
    # A second rules document, evaluated after every live decision and never changing it
    # (broker.shadow): at most one of the two; neither, no shadow evaluation.
    shadow_rules_file: str | None = None
    shadow_rules_parameter: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        rules_file = env.get("BROKER_RULES_FILE") or None
        rules_parameter = env.get("BROKER_RULES_PARAMETER") or None
        if (rules_file is None) == (rules_parameter is None):
            raise SettingsError("set exactly one of BROKER_RULES_FILE and BROKER_RULES_PARAMETER")
        shadow_file = env.get("BROKER_SHADOW_RULES_FILE") or None
        shadow_parameter = env.get("BROKER_SHADOW_RULES_PARAMETER") or None
        if shadow_file is not None and shadow_parameter is not None:
            raise SettingsError(
                "set at most one of BROKER_SHADOW_RULES_FILE and BROKER_SHADOW_RULES_PARAMETER"
            )
        table, key_id, shared, replay = _shared_table(env)
        return cls(
            rules_file=rules_file,
            rules_parameter=rules_parameter,
            role_arn=_matching(env, "BROKER_ROLE_ARN", ROLE_ARN, "an IAM role ARN"),
            domain=_matching(env, "BROKER_DOMAIN", DOMAIN_NAME, "a CodeArtifact domain name"),
            domain_owner=_matching(
                env, "BROKER_DOMAIN_OWNER", ACCOUNT_ID, "a 12-digit AWS account id"
            ),
            region=_region(env),
            rules_cache_seconds=_int(env, "BROKER_RULES_CACHE_SECONDS", 60, 0, 3600),
            jwks_cache_seconds=_int(env, "BROKER_JWKS_CACHE_SECONDS", 600, 0, 86400),
            jwks_min_refresh_seconds=_int(env, "BROKER_JWKS_MIN_REFRESH_SECONDS", 60, 0, 3600),
            jwks_stale_seconds=_int(env, "BROKER_JWKS_STALE_SECONDS", 3600, 0, 86400),
            http_timeout_seconds=_float(env, "BROKER_HTTP_TIMEOUT_SECONDS", 3.0, 0.1, 30.0),
            jwks_prefetch_seconds=_float(env, "BROKER_JWKS_PREFETCH_SECONDS", 2.0, 0.0, 5.0),
            clock_leeway_seconds=_int(env, "BROKER_CLOCK_LEEWAY_SECONDS", 60, 0, 300),
            max_id_token_bytes=_int(env, "BROKER_MAX_ID_TOKEN_BYTES", 8192, 512, 65536),
            max_body_bytes=_int(env, "BROKER_MAX_BODY_BYTES", 16384, 256, 1048576),
            token_cache_margin_seconds=_int(env, "BROKER_TOKEN_CACHE_MARGIN_SECONDS", 300, 0, 3600),
            token_cache_size=_int(env, "BROKER_TOKEN_CACHE_SIZE", 1024, 0, 100000),
            endpoint_cache_seconds=_int(env, "BROKER_ENDPOINT_CACHE_SECONDS", 3600, 0, 86400),
            aws_max_attempts=_int(env, "BROKER_AWS_MAX_ATTEMPTS", 3, 1, 10),
            cache_table=table,
            cache_key_id=key_id,
            shared_cache=shared,
            replay_guard=replay,
            aws_connect_timeout_seconds=_float(
                env, "BROKER_AWS_CONNECT_TIMEOUT_SECONDS", 1.0, 0.1, 30.0
            ),
            aws_read_timeout_seconds=_float(env, "BROKER_AWS_READ_TIMEOUT_SECONDS", 3.0, 0.1, 60.0),
            repositories=_repositories(env),
            shadow_rules_file=shadow_file,
            shadow_rules_parameter=shadow_parameter,
        )


def _matching(env: Mapping[str, str], name: str, pattern: re.Pattern[str], what: str) -> str:
    value = env.get(name, "")
    if not value:
        raise SettingsError(f"{name} is required ({what})")
    if not pattern.fullmatch(value):
        raise SettingsError(f"{name}={value!r} is not {what}")
    return value


def _shared_table(env: Mapping[str, str]) -> tuple[str | None, str | None, str, bool]:
    """The shared cache's table and key, its sharing, and the replay guard, checked together."""
    table = env.get("BROKER_CACHE_TABLE") or None
    key_id = env.get("BROKER_CACHE_KEY_ID") or None
    shared = env.get("BROKER_SHARED_CACHE") or "off"
    if shared not in SHARED_CACHE:
        raise SettingsError(
            f"BROKER_SHARED_CACHE={shared!r} is not one of {', '.join(SHARED_CACHE)}"
        )
    replay_raw = (env.get("BROKER_REPLAY_GUARD") or "false").lower()
    if replay_raw not in ("true", "false"):
        raise SettingsError(f"BROKER_REPLAY_GUARD={replay_raw!r} is not true or false")
    replay = replay_raw == "true"
    if table is not None and not TABLE_NAME.fullmatch(table):
        raise SettingsError(f"BROKER_CACHE_TABLE={table!r} is not a DynamoDB table name")
    if key_id is not None and not KMS_KEY.fullmatch(key_id):
        raise SettingsError(f"BROKER_CACHE_KEY_ID={key_id!r} is not a KMS key id, ARN or alias")
    if shared != "off" and (table is None or key_id is None):
        raise SettingsError(
            f"BROKER_SHARED_CACHE={shared} needs BROKER_CACHE_TABLE and BROKER_CACHE_KEY_ID"
        )
    if replay and table is None:
        raise SettingsError("BROKER_REPLAY_GUARD=true needs BROKER_CACHE_TABLE")
    return table, key_id, shared, replay


def repository_names(listed: str) -> tuple[str, ...]:
    """Comma-separated repository names, in order, each valid (ValueError names the one that is
    not); a repository named twice counts once. The broker's BROKER_REPOSITORIES and the admin
    tools read a deployment's repositories with it."""
    names = [name.strip() for name in listed.split(",")] if listed.strip() else []
    for name in names:
        if not REPOSITORY_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a CodeArtifact repository name")
    return tuple(dict.fromkeys(names))


def _repositories(env: Mapping[str, str]) -> tuple[str, ...]:
    """BROKER_REPOSITORIES, which may be unset (nothing checked)."""
    try:
        return repository_names(env.get("BROKER_REPOSITORIES") or "")
    except ValueError as error:
        raise SettingsError(f"BROKER_REPOSITORIES: {error}") from None


def _region(env: Mapping[str, str]) -> str:
    value = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or ""
    if not REGION.fullmatch(value):
        raise SettingsError(f"AWS_REGION={value!r} is not an AWS region")
    return value


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    return int(_number(env, name, default, low, high, int, "a whole number"))


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    return _number(env, name, default, low, high, float, "a number")


def _number(
    env: Mapping[str, str],
    name: str,
    default: float,
    low: float,
    high: float,
    parse: type[int] | type[float],
    what: str,
) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not {what}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}={value} is outside {low}..{high}")
    return value


def is_token_duration(value: object) -> bool:
    """A CodeArtifact token lifetime: whole seconds from 900 to 43200 (never a bool)."""
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and MIN_TOKEN_SECONDS <= value <= MAX_TOKEN_SECONDS
    )
