"""cabroker.config and the broker's answers: where a token may be sent, and what comes back.

A broker URL (from ``--broker-url``, ``CABROKER_URL``, the config file, ``cabroker configure``,
the library and :class:`BrokerClient` itself) must be https (http only to a loopback host),
with no user, password, query, fragment, white space or control character.  The audiences an
ID token may carry are the URL's origin and those the user pinned (for this very broker, when
saved in the config file).  A grant the broker answers is refused, naming the field and never
its value, when a field could carry credentials, a line break or a cleartext URL."""

from __future__ import annotations

import json
import threading
import tomllib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cabroker import api, cli
from cabroker.broker import BrokerClient, Grant
from cabroker.config import (
    Audiences,
    LoginSettings,
    audiences,
    broker_url,
    check_broker_url,
    config_file,
    login_settings,
    origin,
    read_config,
    save_broker_url,
    unsafe_url,
)
from cabroker.errors import BrokerUnavailable, UsageError
from cabroker.secret import Secret
from tests.support.oidc import forge

BROKER = "https://broker.example.com/prod"
ORIGIN = "https://broker.example.com"
HOST = "acme-111122223333.d.codeartifact.us-east-1.amazonaws.com"
# A made-up CodeArtifact token; its repr is redacted, and tests only look for it in messages.
CATOKEN = Secret("eyJ2ZXIiOjEsImlzdSI6MTcwMDAwMDAwMH0.c2VjcmV0LXRva2Vu+/=_-~")


def shows_no_token(text: str) -> None:
    """CATOKEN is nowhere in ``text`` (a failure does not print either)."""
    hidden = CATOKEN not in text
    assert hidden, "the CodeArtifact token is shown"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A user of its own (HOME, config, cache, state), in the process environment too (the
    command line reads it); nothing about a broker set, no CI around."""
    values = {
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "CABROKER_TOKEN_STORE": "file",
    }
    for name in ("CABROKER_URL", "CABROKER_AUDIENCE", "CABROKER_ID_TOKEN",
                 "CABROKER_ID_TOKEN_FILE", "GITHUB_ACTIONS", "GITHUB_ENV", "GITHUB_OUTPUT",
                 "GITLAB_CI", "BUILDKITE", "CIRCLECI", "GOOGLE_SERVICE_ACCOUNT_NAME",
                 "ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("id._internal.oidc.ambient.detect_gcp", lambda audience: None)
    return values


def write_config(env: dict[str, str], text: str) -> Path:
    path = config_file(env)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def toml_string(value: str) -> str:
    """``value`` as a TOML basic string (JSON's escapes are TOML's, for these values)."""
    return json.dumps(value)


# ------------------------------------------------------------------------ broker URLs

CLEARTEXT = "it is http:// (cleartext); use https:// (http:// only for a loopback host)"
NOT_HTTPS = "it is not an https:// URL"
NOT_A_URL = "it is not a URL"
CREDENTIALS = "it holds a user name or password"
QUERY = "it has a query or fragment"
CONTROL = "it holds white space or control characters"

REFUSED = [
    pytest.param("http://broker.example.com", CLEARTEXT, id="http"),
    pytest.param("http://10.1.2.3:8080", CLEARTEXT, id="http to a private address"),
    pytest.param("http://localhost.evil.example", CLEARTEXT, id="http to localhost-something"),
    pytest.param("http://127.0.0.1.nip.io", CLEARTEXT, id="http to 127.0.0.1-something"),
    pytest.param("http://[::ffff:127.0.0.1]:3000", CLEARTEXT, id="http to a mapped address"),
    pytest.param("ftp://broker.example.com", NOT_HTTPS, id="ftp"),
    pytest.param("broker.example.com", NOT_HTTPS, id="no scheme"),
    pytest.param("https://", NOT_HTTPS, id="no host"),
    pytest.param("https://:443/prod", NOT_HTTPS, id="a port but no host"),
    pytest.param("https://broker.example.com:99999", NOT_A_URL, id="a port out of range"),
    pytest.param("https://[::1", NOT_A_URL, id="an unclosed bracket"),
    pytest.param("https://user:secret@broker.example.com", CREDENTIALS, id="user and password"),
    pytest.param("https://user@broker.example.com", CREDENTIALS, id="user"),
    pytest.param("https://:secret@broker.example.com", CREDENTIALS, id="password"),
    pytest.param("https://@broker.example.com", CREDENTIALS, id="an empty user"),
    pytest.param("http://127.0.0.1@evil.example", CREDENTIALS, id="loopback as the user"),
    pytest.param("https://broker.example.com/prod?stage=1", QUERY, id="a query"),
    pytest.param("https://broker.example.com/#prod", QUERY, id="a fragment"),
    pytest.param("https://broker.exa\nmple.com", CONTROL, id="a newline"),
    pytest.param("https://broker.example.com/a\rb", CONTROL, id="a carriage return"),
    pytest.param("https://broker.example.com/a\r\nX-Evil: 1", CONTROL, id="a header"),
    pytest.param("https://broker example.com", CONTROL, id="a space"),
    pytest.param("https://broker.example.com/\tprod", CONTROL, id="a tab"),
    pytest.param("https://broker.example.com/\x00", CONTROL, id="NUL"),
    pytest.param("https://broker.example.com/\x1b[2J", CONTROL, id="an escape sequence"),
    pytest.param("https://broker.example.com/a\u2028b", CONTROL, id="a line separator"),
    pytest.param("https://broker.example.com/\u00a0x", CONTROL, id="a no-break space"),
]

ACCEPTED = [
    pytest.param("https://broker.example.com", ORIGIN, id="https"),
    pytest.param("https://broker.example.com/prod/", BROKER, id="a path, trailing slash"),
    pytest.param(
        "https://abc123.execute-api.us-east-1.amazonaws.com/prod",
        "https://abc123.execute-api.us-east-1.amazonaws.com/prod",
        id="API Gateway",
    ),
    pytest.param("http://127.0.0.1:3000", "http://127.0.0.1:3000", id="127.0.0.1"),
    pytest.param("http://127.1.2.3:8080/", "http://127.1.2.3:8080", id="127.1.2.3"),
    pytest.param("http://localhost:3000", "http://localhost:3000", id="localhost"),
    pytest.param("http://LOCALHOST:3000", "http://LOCALHOST:3000", id="LOCALHOST"),
    pytest.param("http://[::1]:3000", "http://[::1]:3000", id="::1"),
    pytest.param("  https://broker.example.com/prod/\n", BROKER, id="blanks around"),
]


def refusal(where: str, why: str) -> str:
    return (
        f"the broker URL from {where} is refused: {why}; give its https:// address (the "
        "BrokerUrl stack output)"
    )


def from_flag(url: str, env: dict[str, str]) -> str:
    return broker_url(url, env)


def from_variable(url: str, env: dict[str, str]) -> str:
    return broker_url(None, {**env, "CABROKER_URL": url})


def from_file(url: str, env: dict[str, str]) -> str:
    write_config(env, f"broker_url = {toml_string(url)}\n")
    return broker_url(None, env)


def from_client(url: str, env: dict[str, str]) -> str:
    return BrokerClient(url).url


SOURCES: list[Any] = [
    pytest.param(from_flag, "--broker-url", id="--broker-url"),
    pytest.param(from_variable, "CABROKER_URL", id="CABROKER_URL"),
    pytest.param(from_file, None, id="config file"),
    pytest.param(from_client, "the caller", id="BrokerClient"),
]


@pytest.mark.parametrize(("read", "where"), SOURCES)
@pytest.mark.parametrize(("url", "why"), REFUSED)
def test_a_broker_url_is_refused_wherever_it_comes_from(
    env: dict[str, str],
    read: Callable[[str, dict[str, str]], str],
    where: str | None,
    url: str,
    why: str,
) -> None:
    with pytest.raises(UsageError) as caught:
        read(url, env)
    assert caught.value.exit_code == 2
    assert str(caught.value) == refusal(where or str(config_file(env)), why)
    assert unsafe_url(url.strip().rstrip("/")) == (None if why == QUERY else why)


@pytest.mark.parametrize(("url", "why"), REFUSED)
def test_a_broker_url_is_refused_by_the_library(env: dict[str, str], url: str, why: str) -> None:
    with pytest.raises(UsageError) as caught:
        api.get_grant(url, env=env, interactive=False)
    assert str(caught.value) == refusal("the caller", why)


@pytest.mark.parametrize(("url", "why"), REFUSED)
def test_configure_refuses_a_broker_url(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], url: str, why: str
) -> None:
    assert cli.main(["configure", url]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"cabroker: {refusal('the command line', why)}\n"
    assert captured.out == ""
    assert not config_file(env).exists()


@pytest.mark.parametrize(("read", "where"), SOURCES)
@pytest.mark.parametrize(("url", "expected"), ACCEPTED)
def test_https_and_loopback_http_are_accepted(
    env: dict[str, str],
    read: Callable[[str, dict[str, str]], str],
    where: str | None,
    url: str,
    expected: str,
) -> None:
    assert read(url, env) == expected


@pytest.mark.parametrize(("url", "expected"), ACCEPTED)
def test_configure_saves_an_accepted_url(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], url: str, expected: str
) -> None:
    assert cli.main(["configure", url]) == 0
    assert tomllib.loads(config_file(env).read_text(encoding="utf-8")) == {"broker_url": expected}
    assert broker_url(None, env) == expected
    assert capsys.readouterr().out == (
        f"saved the broker URL in {config_file(env)}\n"
        f"ID tokens sent to it must be for: {origin(expected)}\n"
    )


def test_the_flag_wins_over_the_variable_and_the_file(env: dict[str, str]) -> None:
    write_config(env, 'broker_url = "https://file.example.com"\n')
    variable = {**env, "CABROKER_URL": "https://variable.example.com"}
    assert broker_url("https://flag.example.com", variable) == "https://flag.example.com"
    assert broker_url(None, variable) == "https://variable.example.com"
    assert broker_url(None, env) == "https://file.example.com"


def test_a_bad_flag_is_refused_though_the_variable_is_good(env: dict[str, str]) -> None:
    with pytest.raises(UsageError, match="from --broker-url is refused"):
        broker_url("http://broker.example.com", {**env, "CABROKER_URL": ORIGIN})


def test_no_broker_url(env: dict[str, str]) -> None:
    with pytest.raises(UsageError) as caught:
        broker_url(None, env)
    assert str(caught.value) == (
        "no broker URL: pass --broker-url URL, set CABROKER_URL, or save it once with "
        "'cabroker configure URL'"
    )


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("broker_url = [", id="not TOML"),
        pytest.param('broker_url = "\\ud83d"', id="a surrogate escape"),
    ],
)
def test_an_unreadable_config_file(env: dict[str, str], text: str) -> None:
    path = write_config(env, text)
    with pytest.raises(UsageError, match=f"^cannot read {path}: .*; fix or delete it$"):
        read_config(env)


@pytest.mark.parametrize("url", ["https://broker.example.com?", "https://broker.example.com/p#"])
def test_an_empty_query_or_fragment_is_refused(url: str) -> None:
    with pytest.raises(UsageError, match=QUERY):
        check_broker_url(url, "--broker-url")


# ----------------------------------------------------------------------------- origin


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("https://broker.example.com/prod", ORIGIN, id="the path dropped"),
        pytest.param("https://broker.example.com:443/prod", ORIGIN, id="https default port"),
        pytest.param("http://localhost:80/", "http://localhost", id="http default port"),
        pytest.param("https://broker.example.com:8443/x", f"{ORIGIN}:8443", id="a port kept"),
        pytest.param("https://broker.example.com:80", f"{ORIGIN}:80", id="80 kept for https"),
        pytest.param("http://127.0.0.1:443", "http://127.0.0.1:443", id="443 kept for http"),
        pytest.param("https://Broker.EXAMPLE.com/Prod", ORIGIN, id="host in lower case"),
        pytest.param("HTTPS://broker.example.com", ORIGIN, id="scheme in lower case"),
        pytest.param("http://[::1]:3000/prod", "http://[::1]:3000", id="IPv6 with a port"),
        pytest.param("http://[::1]:80", "http://[::1]", id="IPv6, default port"),
    ],
)
def test_origin(url: str, expected: str) -> None:
    assert origin(url) == expected


# -------------------------------------------------------------------------- audiences


def save(env: dict[str, str], url: str, *pinned: str) -> None:
    text = f"broker_url = {toml_string(url)}\n"
    text += f"audiences = [{', '.join(toml_string(value) for value in pinned)}]\n"
    write_config(env, text)


def test_nothing_pinned_accepts_the_origin_only(env: dict[str, str]) -> None:
    assert audiences(BROKER, None, env) == Audiences(BROKER, (ORIGIN,), ORIGIN, ())
    assert audiences(BROKER, [], env) == Audiences(BROKER, (ORIGIN,), ORIGIN, ())


def test_the_flag_wins_over_the_variable_and_the_file_for_audiences(env: dict[str, str]) -> None:
    save(env, BROKER, "saved")
    variable = {**env, "CABROKER_AUDIENCE": "variable"}
    assert audiences(BROKER, ["flag-1", "flag-2"], variable) == Audiences(
        BROKER, ("flag-1", "flag-2", ORIGIN), "flag-1", ("flag-1", "flag-2")
    )
    assert audiences(BROKER, None, variable).pinned == ("variable",)
    assert audiences(BROKER, None, env).pinned == ("saved",)


def test_the_variable_is_comma_separated(env: dict[str, str]) -> None:
    found = audiences(BROKER, None, {**env, "CABROKER_AUDIENCE": " a , b,,a, "})
    assert found == Audiences(BROKER, ("a", "b", ORIGIN), "a", ("a", "b"))


def test_a_blank_variable_leaves_the_file(env: dict[str, str]) -> None:
    save(env, BROKER, "saved")
    assert audiences(BROKER, None, {**env, "CABROKER_AUDIENCE": "  "}).pinned == ("saved",)


@pytest.mark.parametrize(
    ("saved_for", "used"),
    [
        pytest.param(BROKER, True, id="this broker"),
        pytest.param(f"{BROKER}/", True, id="this broker, trailing slash"),
        pytest.param("https://broker.example.com/staging", False, id="another stage"),
        pytest.param(ORIGIN, False, id="the origin alone"),
        pytest.param("https://other.example.com/prod", False, id="another broker"),
        pytest.param("https://broker.example.com.evil.example/prod", False, id="a longer host"),
    ],
)
def test_saved_audiences_are_only_for_the_broker_they_were_saved_with(
    env: dict[str, str], saved_for: str, used: bool
) -> None:
    save(env, saved_for, "saved", "second")
    found = audiences(BROKER, None, env)
    if used:
        assert found == Audiences(BROKER, ("saved", "second", ORIGIN), "saved", ("saved", "second"))
    else:
        assert found == Audiences(BROKER, (ORIGIN,), ORIGIN, ())


def test_the_origin_pinned_is_not_accepted_twice(env: dict[str, str]) -> None:
    assert audiences(BROKER, [ORIGIN, "x"], env).accepted == (ORIGIN, "x")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param("two words", id="a space"),
        pytest.param("a\nb", id="a newline"),
        pytest.param("a\x1bb", id="an escape"),
        pytest.param("a" * 257, id="too long"),
    ],
)
def test_a_bad_audience_is_refused(env: dict[str, str], value: str) -> None:
    with pytest.raises(UsageError, match="from --audience is not an audience"):
        audiences(BROKER, [value], env)
    with pytest.raises(UsageError, match="from --audience is not an audience"):
        save_broker_url(BROKER, [value], env)
    if "," not in value and value.strip():
        with pytest.raises(UsageError, match="from CABROKER_AUDIENCE is not an audience"):
            audiences(BROKER, None, {**env, "CABROKER_AUDIENCE": value})
    assert not config_file(env).exists()


@pytest.mark.parametrize(
    ("aud", "accepted"),
    [
        pytest.param(ORIGIN, True, id="the origin"),
        pytest.param("pinned", True, id="a pinned one"),
        pytest.param([ORIGIN], True, id="a list of the origin"),
        pytest.param([ORIGIN, "pinned"], True, id="a list of accepted ones"),
        pytest.param("sts.amazonaws.com", False, id="another service"),
        pytest.param([ORIGIN, "sts.amazonaws.com"], False, id="the origin and another"),
        pytest.param(["sts.amazonaws.com", ORIGIN], False, id="another and the origin"),
        pytest.param([], False, id="an empty list"),
        pytest.param(None, False, id="none"),
        pytest.param("", False, id="an empty string"),
        pytest.param([ORIGIN, None], False, id="a null in the list"),
        pytest.param([ORIGIN, 1], False, id="a number in the list"),
        pytest.param([[ORIGIN]], False, id="a nested list"),
        pytest.param({"aud": ORIGIN}, False, id="an object"),
        pytest.param(1, False, id="a number"),
        pytest.param(f"{ORIGIN}/", False, id="the origin with a slash"),
        pytest.param(BROKER, False, id="the broker URL"),
        pytest.param("PINNED", False, id="another case"),
    ],
)
def test_accepts(env: dict[str, str], aud: object, accepted: bool) -> None:
    assert audiences(BROKER, ["pinned"], env).accepts(aud) is accepted


# ------------------------------------------------------------------ configure, saved


AWKWARD = [
    'quote"d',
    "back\\slash",
    "non-ASCII-äöü-日本",
    "single'quote",
    "tab-less\\t-escape",
    "https://idp.example.com/aud",
    "a=b#c[d]{e}",
]


def test_save_broker_url_round_trips_through_toml(env: dict[str, str]) -> None:
    path = save_broker_url(f"{BROKER}/", AWKWARD, env)
    assert path == config_file(env)
    assert tomllib.loads(path.read_text(encoding="utf-8")) == {
        "broker_url": BROKER,
        "audiences": AWKWARD,
    }
    assert audiences(BROKER, None, env) == Audiences(
        BROKER, (*AWKWARD, ORIGIN), AWKWARD[0], tuple(AWKWARD)
    )


@pytest.mark.parametrize(
    ("url", "audience"),
    [("https://broker.example.com/\U0001f680", "aud"), (BROKER, "aud-\U0001f680")],
    ids=["in the URL", "in an audience"],
)
def test_save_broker_url_round_trips_beyond_the_bmp(
    env: dict[str, str], url: str, audience: str
) -> None:
    save_broker_url(url, [audience], env)
    assert read_config(env) == {"broker_url": url, "audiences": [audience]}


def test_configure_pins_audiences_for_that_broker_only(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["configure", BROKER, "--audience", "corp-aud", "--audience", 'q"uote']
    assert cli.main(argv) == 0
    assert capsys.readouterr().out == (
        f"saved the broker URL in {config_file(env)}\n"
        f'ID tokens sent to it must be for: corp-aud, q"uote, {ORIGIN}\n'
    )
    assert audiences(BROKER, None, env).accepted == ("corp-aud", 'q"uote', ORIGIN)
    assert audiences("https://other.example.com", None, env).accepted == (
        "https://other.example.com",
    )
    # configured again, without --audience: the pins are gone
    assert cli.main(["configure", BROKER]) == 0
    assert read_config(env) == {"broker_url": BROKER}
    assert audiences(BROKER, None, env).accepted == (ORIGIN,)


def test_configure_keeps_a_device_logins_settings_for_that_broker_only(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["configure", BROKER, "--scope", "groups", "--scope", "email", "--client-secret", "p-1"]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.splitlines()[2:] == [
        "a device login to it asks for the scopes: openid groups email",
        "a device login to it sends the client secret you gave",
    ]
    assert read_config(env)["scopes"] == ["openid", "groups", "email"]
    assert login_settings(BROKER, env) == LoginSettings(("openid", "groups", "email"), "p-1")
    assert login_settings("https://other.example.com", env) == LoginSettings()
    # the environment wins over the file, each setting on its own
    with_scopes = {**env, "CABROKER_SCOPES": "profile"}
    assert login_settings(BROKER, with_scopes) == LoginSettings(("openid", "profile"), "p-1")
    # configured again without them: gone
    assert cli.main(["configure", BROKER]) == 0
    assert login_settings(BROKER, env) == LoginSettings()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scope", "a b"], "--scope is not a list of up to 16 OAuth scopes"),
        (["--client-secret", "two words"], "--client-secret must be 1 to 1024 printable ASCII"),
    ],
)
def test_configure_refuses_unusable_login_settings(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert cli.main(["configure", BROKER, *argv]) == 2
    assert message in capsys.readouterr().err
    assert not config_file(env).exists()


def test_a_hand_edited_config_with_unusable_login_settings_is_named(env: dict[str, str]) -> None:
    path = config_file(env)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'broker_url = "{BROKER}"\nscopes = ["a b"]\n', encoding="utf-8")
    with pytest.raises(UsageError, match=f"scopes in {path} is not a list"):
        login_settings(BROKER, env)


def test_configure_refuses_a_bad_audience(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["configure", BROKER, "--audience", "two words"]) == 2
    assert "from --audience is not an audience" in capsys.readouterr().err
    assert not config_file(env).exists()


# --------------------------------------------------------------------- the broker's grant


def answer(**changes: Any) -> dict[str, Any]:
    """A normal ``POST /v1/token`` answer, with ``changes`` (None: the field left out)."""
    body: dict[str, Any] = {
        "token": CATOKEN,
        "expires_at": "2099-01-02T03:04:05Z",
        "username": "aws",
        "repository": "internal",
        "access": "publish",
        "packages": ["acme-*", "acme_core"],
        "index_url": f"https://{HOST}/pypi/internal/simple/",
        "upload_url": f"https://{HOST}/pypi/internal/",
        "domain": "acme",
        "domain_owner": "111122223333",
        "region": "us-east-1",
    }
    body.update(changes)
    return {name: value for name, value in body.items() if value is not None}


def test_a_normal_grant_is_accepted() -> None:
    grant = Grant.from_json(answer())
    assert {**grant.to_json(), "token": "…"} == {**answer(), "token": "…"}
    assert (grant.token, grant.expires_at) == (CATOKEN, datetime(2099, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert repr(grant.token) == f"<secret: {len(CATOKEN)} characters>"


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"index_url": "http://127.0.0.1:9000/simple/"}, id="loopback http index"),
        pytest.param({"upload_url": "http://localhost:9000/"}, id="localhost http upload"),
        pytest.param({"packages": None}, id="no packages"),
        pytest.param({"packages": []}, id="empty packages"),
        pytest.param({"access": "read"}, id="read"),
        pytest.param({"username": None, "domain": None}, id="defaults"),
        pytest.param({"expires_at": "2099-01-02T03:04:05.123+02:00"}, id="an offset"),
    ],
)
def test_a_grant_may_vary(changes: dict[str, Any]) -> None:
    """Loopback http URLs (a local stack), no packages, the fields with defaults left out."""
    body = answer(**changes)
    expected = {
        **answer(),
        "username": "aws",
        "domain": "",
        "packages": [],
        **{name: value for name, value in body.items() if name != "expires_at"},
    }
    grant = Grant.from_json(body)
    assert grant.token == CATOKEN
    assert {**grant.to_json(), "expires_at": None, "token": "…"} == {
        **expected,
        "expires_at": None,
        "token": "…",
    }


STRING_FIELDS = [
    "token",
    "expires_at",
    "username",
    "repository",
    "access",
    "index_url",
    "upload_url",
    "domain",
    "domain_owner",
    "region",
]


def refused(body: dict[str, Any], field: str) -> str:
    """The message of ``Grant.from_json(body)``'s refusal, which names ``field``."""
    with pytest.raises(ValueError, match=r"^the broker's answer has") as caught:
        Grant.from_json(body)
    message = str(caught.value)
    assert f"'{field}'" in message
    return message


@pytest.mark.parametrize("field", [*STRING_FIELDS, "packages"])
@pytest.mark.parametrize(
    "where",
    [
        pytest.param(lambda value: value + "\n", id="a trailing newline"),
        pytest.param(lambda value: value + "\r", id="a trailing CR"),
        pytest.param(lambda value: value[:4] + "\r\nX-Injected: 1\r\n" + value[4:], id="a header"),
        pytest.param(lambda value: value + "\x1b[2J", id="an escape sequence"),
        pytest.param(lambda value: value + "\u2028", id="a line separator"),
    ],
)
def test_a_line_break_or_control_character_in_any_field_is_refused(
    field: str, where: Callable[[str], str]
) -> None:
    body = answer()
    if field == "packages":
        body["packages"] = ["acme-*", where("acme_core")]
    else:
        body[field] = where(body[field])
    message = refused(body, field)
    assert "\n" not in message
    assert "\r" not in message
    shows_no_token(message)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("index_url", f"http://{HOST}/pypi/internal/simple/", id="http index"),
        pytest.param("upload_url", f"http://{HOST}/pypi/internal/", id="http upload"),
        pytest.param("index_url", "http://10.0.0.1/simple/", id="http to a private address"),
        pytest.param("index_url", "http://localhost.evil.example/simple/", id="localhost-ish"),
        pytest.param("upload_url", f"https://aws:{CATOKEN}@{HOST}/pypi/", id="credentials"),
        pytest.param("upload_url", f"https://aws@{HOST}/pypi/", id="a user"),
        pytest.param("index_url", f"https://x@{HOST}@evil.example/", id="two hosts"),
        pytest.param("index_url", "file:///etc/passwd", id="a file URL"),
        pytest.param("index_url", "/pypi/internal/simple/", id="a path"),
        pytest.param("index_url", "", id="empty"),
        pytest.param("index_url", f"https://{HOST}/a b/", id="a space"),
        pytest.param("index_url", None, id="missing"),
        pytest.param("upload_url", ["https://x/"], id="a list"),
    ],
)
def test_a_grant_url_that_could_leak_the_token_is_refused(field: str, value: object) -> None:
    message = refused(answer(**{field: value}) if value is not None else _without(field), field)
    shows_no_token(message)


def _without(field: str) -> dict[str, Any]:
    body = answer()
    del body[field]
    return body


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(f"{CATOKEN} x", id="a space"),
        pytest.param(f"{CATOKEN}\n", id="a trailing newline"),
        pytest.param(f"\n{CATOKEN}", id="a leading newline"),
        pytest.param(f"{CATOKEN}\tx", id="a tab"),
        pytest.param(f"{CATOKEN}\x00", id="NUL"),
        pytest.param(f"{CATOKEN}é", id="non-ASCII"),
        pytest.param(f"{CATOKEN}:x", id="a colon (basic auth)"),
        pytest.param(f"{CATOKEN}@x", id="an at sign"),
        pytest.param(f"{CATOKEN}'x", id="a quote"),
        pytest.param(f"{CATOKEN}$(x)", id="a command substitution"),
        pytest.param("", id="empty"),
        pytest.param("a" * 8193, id="too long"),
        pytest.param(12345, id="a number"),
        pytest.param(None, id="missing"),
    ],
)
def test_a_token_that_is_not_one_is_refused(token: object) -> None:
    body = answer(token=token) if token is not None else _without("token")
    message = refused(body, "token")
    shows_no_token(message)


@pytest.mark.parametrize("access", ["admin", "READ", "read ", "", "readpublish", "publish\n", 1])
def test_access_is_read_or_publish(access: object) -> None:
    refused(answer(access=access), "access")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("repository", "internal/../other", id="a slash in repository"),
        pytest.param("repository", None, id="no repository"),
        pytest.param("username", "aws:x", id="a colon in username"),
        pytest.param("domain", "acme;rm", id="a semicolon in domain"),
        pytest.param("expires_at", "tomorrow", id="not a time"),
        pytest.param("packages", "acme-*", id="packages not a list"),
        pytest.param("packages", ["acme *"], id="a space in a package"),
        pytest.param("packages", [7], id="a number in packages"),
    ],
)
def test_other_fields_are_checked(field: str, value: object) -> None:
    refused(answer(**{field: value}) if value is not None else _without(field), field)


# ---------------------------------------------- a bad grant through the client: exit code 4


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"token": f"{CATOKEN} and more"}, "token", id="token"),
        pytest.param({"token": f"{CATOKEN}\r\nSet-Cookie: x"}, "token", id="token with CRLF"),
        pytest.param({"upload_url": f"https://aws:{CATOKEN}@{HOST}/"}, "upload_url", id="upload"),
        pytest.param({"index_url": f"http://{HOST}/simple/?{CATOKEN}"}, "index_url", id="index"),
        pytest.param({"repository": f"{CATOKEN}\n"}, "repository", id="repository"),
        pytest.param({"access": CATOKEN}, "access", id="access"),
    ],
)
def test_the_client_turns_a_bad_grant_into_exit_code_4(
    monkeypatch: pytest.MonkeyPatch, changes: dict[str, Any], field: str
) -> None:
    def call(self: BrokerClient, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        assert (method, path) == ("POST", "/v1/token")
        return answer(**changes)

    monkeypatch.setattr(BrokerClient, "_call", call)
    with pytest.raises(BrokerUnavailable) as caught:
        BrokerClient(BROKER).token("id-token")
    message = str(caught.value)
    assert caught.value.exit_code == 4
    assert message.startswith(
        f"the broker at {BROKER} answered a token that cannot be used (the broker's answer has "
    )
    assert f"'{field}'" in message
    assert message.endswith("); is the URL right? Tell the broker's operators")
    shows_no_token(message)
    assert "\n" not in message


def test_a_grant_without_fields_is_exit_code_4(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BrokerClient, "_call", lambda self, method, path, **kwargs: {})
    with pytest.raises(BrokerUnavailable) as caught:
        BrokerClient(BROKER).token("id-token")
    assert caught.value.exit_code == 4


class BadBroker:
    """A broker on 127.0.0.1 that answers ``POST /v1/token`` with ``grant``."""

    def __init__(self) -> None:
        self.grant: dict[str, Any] = answer()
        self.calls: list[str] = []
        broker = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                broker.calls.append(self.path)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                data = json.dumps(broker.grant).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"


@pytest.fixture
def bad_broker() -> Iterator[BadBroker]:
    broker = BadBroker()
    thread = threading.Thread(
        target=broker.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield broker
    finally:
        broker.server.shutdown()
        broker.server.server_close()


def test_login_with_a_bad_grant_exits_4_and_caches_nothing(
    env: dict[str, str],
    bad_broker: BadBroker,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    id_token = forge(
        {"alg": "RS256", "kid": "k"},
        {"iss": "https://idp.example", "aud": bad_broker.url, "sub": "me"},
    )
    path = tmp_path / "id-token"
    path.write_text(id_token)
    bad_broker.grant = answer(index_url=f"http://{HOST}/pypi/internal/simple/")
    argv = ["login", "--broker-url", bad_broker.url, "--id-token-file", str(path)]
    assert cli.main([*argv, "--non-interactive"]) == 4
    captured = capsys.readouterr()
    assert captured.err == (
        f"cabroker: the broker at {bad_broker.url} answered a token that cannot be used (the "
        "broker's answer has an unusable 'index_url': it is http:// (cleartext); use https:// "
        "(http:// only for a loopback host)); is the URL right? Tell the broker's operators\n"
    )
    shows_no_token(captured.out + captured.err)
    assert bad_broker.calls == ["/v1/token"]
    cached = Path(env["XDG_CACHE_HOME"])
    assert not any(
        CATOKEN in p.read_text(errors="replace") for p in cached.rglob("*") if p.is_file()
    )
    # the same broker's good answer is taken
    bad_broker.grant = answer()
    assert cli.main([*argv, "--non-interactive"]) == 0
    shows_no_token(capsys.readouterr().out)


# --- /v1/config: what it says is printed and requested, so it is checked too ---------------

GOOD_ISSUER = {
    "name": "corp",
    "url": "https://login.example",
    "audience": "cli",
    "client_id": "cli",
}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("name", "corp\x1b[2J", id="an escape sequence in the name"),
        pytest.param("name", "Corp Login", id="a name the broker never gives"),
        pytest.param("url", "https://login.example/\nx", id="a line break in the URL"),
        pytest.param("audience", "a b", id="a space in the audience"),
        pytest.param("client_id", "cli\x07", id="a bell in the client id"),
        pytest.param("audience", 7, id="an audience that is not a string"),
    ],
)
def test_a_config_issuer_that_could_drive_the_terminal_is_refused(
    monkeypatch: pytest.MonkeyPatch, field: str, value: object
) -> None:
    from cabroker.broker import BrokerConfig

    body = {"issuers": [{**GOOD_ISSUER, field: value}]}
    with pytest.raises(ValueError, match=f"issuers.{field}"):
        BrokerConfig.from_json(body)
    monkeypatch.setattr(BrokerClient, "_call", lambda self, method, path, **kw: body)
    with pytest.raises(BrokerUnavailable, match="config that cannot be used") as refused:
        BrokerClient("https://broker.example.com").config()
    assert refused.value.exit_code == 4
    assert str(value) not in refused.value.message


def test_a_normal_config_is_accepted() -> None:
    from cabroker.broker import BrokerConfig

    config = BrokerConfig.from_json(
        {"issuers": [GOOD_ISSUER, {**GOOD_ISSUER, "name": "gh-1", "client_id": None}]}
    )
    assert [issuer.name for issuer in config.issuers] == ["corp", "gh-1"]
    assert config.issuers[1].client_id is None
