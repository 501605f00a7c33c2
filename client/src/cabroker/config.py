"""Where the broker is, which ID-token audiences belong to it, and where the client keeps files.

The broker URL comes from, in order: ``--broker-url``, ``CABROKER_URL``, the user config file
(``broker_url = "https://…"`` in ``config.toml``, written by ``cabroker configure``).  Wherever
it comes from it must be ``https://`` (``http://`` only for a loopback host: a local stack), with
no user, password, query or fragment: a token never crosses the network in clear.

The audiences (:func:`audiences`) are the only ``aud`` values an ID token the client sends may
carry: the broker URL's own origin (``https://broker.example.com``) always, plus those the user
pinned for this broker with ``--audience``, ``CABROKER_AUDIENCE`` (comma-separated) or
``cabroker configure URL --audience AUD`` (kept in ``config.toml`` beside that URL only).  The
broker's unauthenticated ``/v1/config`` can never add one: whoever answers at the broker URL
cannot make the client mint, or hand over, an ID token meant for another service.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .errors import UsageError

AUDIENCE_ENV = "CABROKER_AUDIENCE"
# a device login's scopes and public client secret, over the broker's (cabroker.device)
SCOPES_ENV = "CABROKER_SCOPES"
CLIENT_SECRET_ENV = "CABROKER_CLIENT_SECRET"  # noqa: S105 - a variable's name
DEFAULT_SCOPES = ("openid",)
MAX_SCOPES = 16  # as the broker's rules allow
WORD = re.compile(r"[!-~]{1,1024}")  # printable ASCII, no white space
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,128}")  # RFC 6749 §3.3 scope-token
URL_ENV = "CABROKER_URL"
MAX_AUDIENCE = 256


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or Path.home())


def config_dir(env: Mapping[str, str] = os.environ) -> Path:
    if sys.platform == "win32" and env.get("APPDATA"):
        return Path(env["APPDATA"]) / "cabroker"
    return Path(env.get("XDG_CONFIG_HOME") or _home(env) / ".config") / "cabroker"


def state_dir(env: Mapping[str, str] = os.environ) -> Path:
    """Where the ledger of written files lives (what ``logout`` undoes)."""
    if sys.platform == "win32" and env.get("LOCALAPPDATA"):
        return Path(env["LOCALAPPDATA"]) / "cabroker" / "State"
    return Path(env.get("XDG_STATE_HOME") or _home(env) / ".local" / "state") / "cabroker"


def config_file(env: Mapping[str, str] = os.environ) -> Path:
    return config_dir(env) / "config.toml"


def read_config(env: Mapping[str, str] = os.environ) -> dict[str, object]:
    import tomllib  # deferred, like every import here that a cached grant does not need

    path = config_file(env)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise UsageError(f"cannot read {path}: {error}; fix or delete it") from None


# --- a device login's settings -----------------------------------------------------------------


def scopes(value: object, what: str) -> tuple[str, ...]:
    """OAuth scopes from the broker's config (a list) or the user's (a space-separated string);
    ``openid`` first, whether or not it was listed: without it there is no ID token. ValueError
    (naming ``what``) for anything that is not a list of scope tokens."""
    if value is None:
        return DEFAULT_SCOPES
    listed = value.split() if isinstance(value, str) else value
    chosen = tuple(dict.fromkeys(["openid", *listed])) if isinstance(listed, list) else ()
    if (
        not chosen
        or len(chosen) > MAX_SCOPES
        or not all(isinstance(scope, str) and _SCOPE.fullmatch(scope) for scope in chosen)
    ):
        raise ValueError(
            f"{what} is not a list of up to {MAX_SCOPES} OAuth scopes, openid included "
            "(printable ASCII words without quotes or backslashes)"
        )
    return chosen


def is_word(text: str) -> bool:
    """Printable ASCII without white space, at most 1024 characters: what may go in a form
    and a message (an issuer's URL, audience, client id or public client secret)."""
    return WORD.fullmatch(text) is not None


@dataclass(frozen=True)
class LoginSettings:
    """What the user sets over the broker's description of its interactive issuer (None: the
    broker's): the scopes to ask for, and a public client secret the IdP requires."""

    scopes: tuple[str, ...] | None = None
    client_secret: str | None = None


def login_settings(url: str, env: Mapping[str, str] = os.environ) -> LoginSettings:
    """The device-login settings for the broker at ``url``: each from ``CABROKER_SCOPES`` /
    ``CABROKER_CLIENT_SECRET``, else from the config file beside this very URL (``cabroker
    configure URL --scope S --client-secret X``), else None.  UsageError when one is unusable."""
    config: dict[str, object] | None = None

    def saved(key: str) -> tuple[object, str] | None:
        nonlocal config
        if config is None:
            config = read_config(env)
        same_broker = str(config.get("broker_url", "")).rstrip("/") == url.rstrip("/")
        return (config[key], str(config_file(env))) if same_broker and key in config else None

    chosen_scopes: tuple[str, ...] | None = None
    if env.get(SCOPES_ENV, "").strip():
        chosen_scopes = _checked_scopes(env[SCOPES_ENV], SCOPES_ENV)
    elif (found := saved("scopes")) is not None:
        chosen_scopes = _checked_scopes(found[0], f"scopes in {found[1]}")
    secret: str | None = None
    if env.get(CLIENT_SECRET_ENV, "").strip():
        secret = check_client_secret(env[CLIENT_SECRET_ENV].strip(), CLIENT_SECRET_ENV)
    elif (found := saved("client_secret")) is not None:
        secret = check_client_secret(found[0], f"client_secret in {found[1]}")
    return LoginSettings(chosen_scopes, secret)


def _checked_scopes(value: object, where: str) -> tuple[str, ...]:
    try:
        return scopes(value, where)
    except ValueError as error:
        raise UsageError(str(error)) from None


def check_client_secret(value: object, where: str) -> str:
    if not isinstance(value, str) or not is_word(value):
        raise UsageError(f"{where} must be 1 to 1024 printable ASCII characters, no white space")
    return value


# --- URLs -------------------------------------------------------------------------------------


def is_loopback(host: str | None) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1: a host whose traffic never leaves this machine."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def unsafe_url(url: str) -> str | None:
    """Why ``url`` may not carry a token, or None when it may: https (http only to a loopback
    host), a host, no credentials, and no white space or control character anywhere."""
    if not url.isprintable() or any(ch.isspace() for ch in url):
        return "it holds white space or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return "it is not a URL"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "it is not an https:// URL"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "it holds a user name or password"
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        return "it is http:// (cleartext); use https:// (http:// only for a loopback host)"
    return None


def check_broker_url(url: str, where: str) -> str:
    """``url`` without trailing slashes or a trailing ``/v1`` (the API's own prefix, which the
    client adds), or UsageError naming ``where`` it came from."""
    url = url.strip().rstrip("/").removesuffix("/v1").rstrip("/")
    why = unsafe_url(url)
    if why is None:
        parts = urlsplit(url)
        if parts.query or parts.fragment or "?" in url or "#" in url:
            why = "it has a query or fragment"
    if why is not None:
        raise UsageError(
            f"the broker URL from {where} is refused: {why}; "
            "give its https:// address (the BrokerUrl stack output)"
        )
    return url


def origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, lower case, the default port left out."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default = {"https": 443, "http": 80}.get(parts.scheme)
    port = f":{parts.port}" if parts.port is not None and parts.port != default else ""
    return f"{parts.scheme}://{host}{port}"


def broker_url(flag: str | None, env: Mapping[str, str] = os.environ) -> str:
    if flag:
        return check_broker_url(flag, "--broker-url")
    if env.get(URL_ENV):
        return check_broker_url(env[URL_ENV], URL_ENV)
    url = read_config(env).get("broker_url")
    if not url or not isinstance(url, str):
        raise UsageError(
            "no broker URL: pass --broker-url URL, set CABROKER_URL, "
            "or save it once with 'cabroker configure URL'"
        )
    return check_broker_url(url, str(config_file(env)))


# --- audiences --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Audiences:
    """The ``aud`` values an ID token for this broker may carry.

    ``request`` is the one a CI is asked for: the first pinned audience, else the origin.
    """

    broker_url: str
    accepted: tuple[str, ...]
    request: str
    pinned: tuple[str, ...]

    def accepts(self, aud: object) -> bool:
        """Whether an ``aud`` claim (a string, or a list of them) is for this broker only:
        every value it names is accepted."""
        values = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        return bool(values) and all(
            isinstance(value, str) and value in self.accepted for value in values
        )

    def describe(self) -> str:
        return ", ".join(repr(audience) for audience in self.accepted)


def check_audience(value: str, where: str) -> str:
    value = value.strip()
    if not value or len(value) > MAX_AUDIENCE or not value.isprintable() or " " in value:
        raise UsageError(
            f"the audience {value[:40]!r} from {where} is not an audience "
            f"(1 to {MAX_AUDIENCE} printable characters, no spaces)"
        )
    return value


def audiences(
    url: str, flag: Sequence[str] | None = None, env: Mapping[str, str] = os.environ
) -> Audiences:
    """The audiences of the broker at ``url``: pinned by ``--audience`` (``flag``), else by
    ``CABROKER_AUDIENCE``, else in the config file beside this very URL; and its origin."""
    pinned: list[str] = []
    if flag:
        pinned = [check_audience(value, "--audience") for value in flag]
    elif any(value.strip() for value in env.get(AUDIENCE_ENV, "").split(",")):
        pinned = [
            check_audience(value, AUDIENCE_ENV)
            for value in env[AUDIENCE_ENV].split(",")
            if value.strip()
        ]
    else:
        config = read_config(env)
        saved = config.get("audiences")
        same_broker = str(config.get("broker_url", "")).rstrip("/") == url.rstrip("/")
        if same_broker and isinstance(saved, list):
            where = str(config_file(env))
            pinned = [check_audience(str(value), where) for value in saved]
    own = origin(url)
    accepted = tuple(dict.fromkeys([*pinned, own]))
    return Audiences(url, accepted, pinned[0] if pinned else own, tuple(dict.fromkeys(pinned)))


def save_broker_url(
    url: str,
    audience: Sequence[str] = (),
    env: Mapping[str, str] = os.environ,
    login: LoginSettings = LoginSettings(),
) -> Path:
    """Write ``broker_url`` (and the audiences pinned for it, and any device-login settings)
    into the user config file; it holds only those."""
    url = check_broker_url(url, "the command line")
    pinned = [check_audience(value, "--audience") for value in audience]
    path = config_file(env)
    path.parent.mkdir(parents=True, exist_ok=True)
    # JSON strings (not ASCII-escaped: TOML has no surrogate pairs) are valid TOML basic
    # strings for everything check_* lets through.
    text = f"broker_url = {json.dumps(url, ensure_ascii=False)}\n"
    if pinned:
        values = ", ".join(json.dumps(value, ensure_ascii=False) for value in pinned)
        text += f"audiences = [{values}]\n"
    if login.scopes is not None:
        text += f"scopes = [{', '.join(json.dumps(scope) for scope in login.scopes)}]\n"
    if login.client_secret is not None:
        text += f"client_secret = {json.dumps(login.client_secret)}\n"
    path.write_text(text, encoding="utf-8")
    return path
