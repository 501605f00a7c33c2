"""The broker's HTTP API (docs/api.md): ``/v1/config``, ``/v1/token``, ``/v1/grants``.

``requests`` is imported on first use, not at import time, so commands that never call the
broker (and the keyring backend for other hosts) stay cheap.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from . import __version__
from .config import DEFAULT_SCOPES, WORD, check_broker_url, scopes, unsafe_url
from .errors import BrokerRefused, BrokerUnavailable, UsageError
from .secret import Secret

if TYPE_CHECKING:
    import requests

USER_AGENT = f"cabroker/{__version__}"
PROBLEM_TYPES = "urn:cabroker:problem:"
T = TypeVar("T")


@dataclass(frozen=True)
class Issuer:
    name: str
    url: str
    audience: str
    client_id: str | None = None
    # for a device login: a public client secret the IdP requires (Google), and the scopes
    client_secret: str | None = None
    scopes: tuple[str, ...] = DEFAULT_SCOPES


@dataclass(frozen=True)
class BrokerConfig:
    """``GET /v1/config``: what a client needs before it has an identity."""

    issuers: tuple[Issuer, ...]
    repositories: tuple[str, ...]
    domain: str
    domain_owner: str
    region: str
    version: str
    limits: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> BrokerConfig:
        """The config in ``body``; ValueError (naming the field) when an issuer is not what a
        broker sends: its name, URL, audience and client id end up in messages and requests,
        so none may carry white space or control characters, and names are the broker's."""
        issuers = body.get("issuers", [])
        if not isinstance(issuers, list) or not all(isinstance(i, dict) for i in issuers):
            raise ValueError("the broker's config has unusable 'issuers'")
        return cls(
            issuers=tuple(
                Issuer(
                    _valid(i, "name", _ISSUER_NAME, what="issuers.name"),
                    _valid(i, "url", WORD, what="issuers.url"),
                    _valid(i, "audience", WORD, what="issuers.audience"),
                    _valid(i, "client_id", WORD, what="issuers.client_id")
                    if i.get("client_id") is not None
                    else None,
                    _valid(i, "client_secret", WORD, what="issuers.client_secret")
                    if i.get("client_secret") is not None
                    else None,
                    scopes(_list_or_none(i, "scopes", what="issuers.scopes"), "issuers.scopes"),
                )
                for i in issuers
            ),
            repositories=tuple(body.get("repositories", [])),
            domain=str(body.get("domain", "")),
            domain_owner=str(body.get("domain_owner", "")),
            region=str(body.get("region", "")),
            version=str(body.get("version", "")),
            limits=dict(body.get("limits", {})),
        )


@dataclass(frozen=True)
class Grant:
    """``POST /v1/token``'s answer: a CodeArtifact token and where to use it."""

    token: Secret
    expires_at: datetime
    username: str
    repository: str
    access: str
    packages: tuple[str, ...]
    index_url: str
    upload_url: str
    domain: str
    domain_owner: str
    region: str
    obtained_at: datetime | None = None  # when the client got it (kept in the cache)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Grant:
        """The grant in ``body``; ValueError (naming the field, never its value) when a field
        is missing or not what a broker sends: every string here ends up in a shell, a config
        file or an HTTP header, so none may carry credentials, line breaks or control
        characters, and the URLs must be https (http only to a loopback host)."""
        packages = body.get("packages") or []
        if not isinstance(packages, list):
            raise ValueError("the broker's answer has an unusable 'packages'")
        return cls(
            token=Secret(_valid(body, "token", _TOKEN)),
            expires_at=parse_time(_valid(body, "expires_at", _TIME)),
            username=_valid(body, "username", _NAME, default="aws"),
            repository=_valid(body, "repository", _NAME),
            access=_valid(body, "access", _ACCESS),
            packages=tuple(_valid({"p": p}, "p", _PATTERN, what="packages") for p in packages),
            index_url=_valid_url(body, "index_url"),
            upload_url=_valid_url(body, "upload_url"),
            domain=_valid(body, "domain", _NAME, default=""),
            domain_owner=_valid(body, "domain_owner", _NAME, default=""),
            region=_valid(body, "region", _NAME, default=""),
            obtained_at=parse_time(_valid(body, "obtained_at", _TIME))
            if body.get("obtained_at") is not None
            else None,
        )

    def lifetime(self) -> float | None:
        """Seconds from when the client got it to its expiry, when known."""
        if self.obtained_at is None:
            return None
        return (self.expires_at - self.obtained_at).total_seconds()

    def to_json(self) -> dict[str, Any]:
        return {
            "token": str(self.token),
            "expires_at": _rfc3339(self.expires_at),
            "username": self.username,
            "repository": self.repository,
            "access": self.access,
            "packages": list(self.packages),
            "index_url": self.index_url,
            "upload_url": self.upload_url,
            "domain": self.domain,
            "domain_owner": self.domain_owner,
            "region": self.region,
            **({"obtained_at": _rfc3339(self.obtained_at)} if self.obtained_at else {}),
        }

    def seconds_left(self, now: datetime | None = None) -> float:
        return (self.expires_at - (now or datetime.now(UTC))).total_seconds()


_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{1,8192}")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{5,20}(Z|[+-][0-9]{2}:[0-9]{2})?")
_NAME = re.compile(r"[A-Za-z0-9._-]{0,255}")
_ACCESS = re.compile(r"read|publish")
_PATTERN = re.compile(r"[A-Za-z0-9._*?\[\]!-]{1,255}")
_ISSUER_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")  # the broker's own rule for issuer names


def _list_or_none(body: Mapping[str, Any], name: str, what: str) -> list[Any] | None:
    value = body.get(name)
    if value is not None and not isinstance(value, list):
        raise ValueError(f"the broker's config has unusable {what!r}")
    return value


def _valid(
    body: Mapping[str, Any],
    name: str,
    pattern: re.Pattern[str],
    *,
    default: str | None = None,
    what: str | None = None,
) -> str:
    value = body.get(name, default)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValueError(f"the broker's answer has an unusable {what or name!r}")
    return value


def _valid_url(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise ValueError(f"the broker's answer has no {name!r}")
    why = unsafe_url(value)
    if why is not None:
        raise ValueError(f"the broker's answer has an unusable {name!r}: {why}")
    return value


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class TokenRequest:
    """The optional fields of ``POST /v1/token``; None leaves the choice to the broker."""

    repository: str | None = None
    access: str | None = None
    packages: Sequence[str] | None = None
    duration_seconds: int | None = None

    def body(self) -> dict[str, Any]:
        fields = {
            "repository": self.repository,
            "access": self.access,
            "packages": list(self.packages) if self.packages else None,
            "duration_seconds": self.duration_seconds,
        }
        return {key: value for key, value in fields.items() if value is not None}


class BrokerClient:
    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = check_broker_url(url, "the caller")
        self.timeout = timeout
        self._session: requests.Session | None = None

    def _http(self) -> requests.Session:
        if self._session is None:
            import requests

            self._session = requests.Session()
            self._session.headers["User-Agent"] = USER_AGENT
            self._session.trust_env = True
        return self._session

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        import requests

        url = self.url + path
        try:
            response = self._http().request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as error:
            raise BrokerUnavailable(
                f"cannot reach the broker at {self.url} ({type(error).__name__}); check the URL "
                "(--broker-url, CABROKER_URL) and your network"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code == 200 and isinstance(body, dict):
            return body
        problem = body if isinstance(body, dict) else {}
        detail = _printable(str(problem.get("detail") or problem.get("message") or response.reason))
        status = response.status_code
        if status == 429 or status >= 500:
            wait = response.headers.get("Retry-After")
            hint = f"; try again in {wait} s" if wait else "; try again shortly"
            raise BrokerUnavailable(f"the broker is unavailable ({status}): {detail}{hint}")
        if status == 200 or not str(problem.get("type", "")).startswith(PROBLEM_TYPES):
            raise UsageError(
                f"{self.url} does not look like a cabroker broker: {method} {path} answered "
                f"{status} {_printable(str(response.reason), 80)} where a broker answers JSON (and "
                f"{PROBLEM_TYPES}… problems); check --broker-url or CABROKER_URL: it is the "
                "stack's BrokerUrl output, e.g. https://abc123.execute-api.REGION.amazonaws.com"
            )
        raise BrokerRefused(f"the broker refused ({status}): {detail}", status, problem)

    def config(self) -> BrokerConfig:
        return self._parse("config", BrokerConfig.from_json, self._call("GET", "/v1/config"))

    def token(self, id_token: str, request: TokenRequest | None = None) -> Grant:
        body = (request or TokenRequest()).body()
        answer = self._call(
            "POST", "/v1/token", json=body, headers={"Authorization": f"Bearer {id_token}"}
        )
        grant = self._parse("token", Grant.from_json, answer)
        return replace(grant, obtained_at=datetime.now(UTC).replace(microsecond=0))

    def _parse(self, what: str, parse: Callable[[dict[str, Any]], T], answer: dict[str, Any]) -> T:
        """``parse(answer)``, or BrokerUnavailable naming the field that is not what a broker
        sends (never its value)."""
        try:
            return parse(answer)
        except (KeyError, TypeError, ValueError) as error:
            reason = str(error) if isinstance(error, ValueError) else "a field is missing"
            raise BrokerUnavailable(
                f"the broker at {self.url} answered a {what} that cannot be used ({reason}); "
                "is the URL right? Tell the broker's operators"
            ) from None

    def grants(self, id_token: str) -> dict[str, Any]:
        return self._call("GET", "/v1/grants", headers={"Authorization": f"Bearer {id_token}"})


def _printable(text: str, limit: int = 300) -> str:
    """Another server's words for one line of ours: printable, short."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)[:limit]
