"""cabroker.identity: every source of an ID token, their order, and the checks made before one
is returned, with tokens from the devstack's IdP, GitHub Actions' token endpoint faked over
HTTP, GitLab's variables, and Buildkite's and CircleCI's tools faked on the PATH (all read by
the real ``id`` package)."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from cabroker.broker import BrokerConfig, Issuer
from cabroker.errors import IdentityError, UsageError
from cabroker.identity import SOURCES, Identity, obtain
from cabroker.jwt import unverified_claims
from devstack.idp import IdentityProvider
from tests.support.oidc import LocalIssuer, private_key

CLIENT_ID = "cabroker-cli"
GITHUB_AUDIENCE = "codeartifact-broker"
CORP_AUDIENCE = "cabroker"
REQUEST_TOKEN = "actions-request-token"
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
    "CODEARTIFACT_BROKER_ID_TOKEN",
)
HINTS = (
    "in a CI job, give it an ID token for audience 'codeartifact-broker': GitHub Actions "
    "`permissions: id-token: write`, GitLab CI "
    "`id_tokens: {CODEARTIFACT_BROKER_ID_TOKEN: {aud: codeartifact-broker}}`; "
    "or pass --id-token-file PATH or set CABROKER_ID_TOKEN"
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
def idp(shared: tuple[IdentityProvider, Clock]) -> IdentityProvider:
    """Issuers ``github`` (CI) and ``corp`` (device login for alice) and ``other`` (which the
    broker does not trust)."""
    idp, clock = shared
    clock.now = float(int(time.time()))
    idp.issuers.clear()
    idp.add("github", GITHUB_AUDIENCE)
    idp.add("corp", CORP_AUDIENCE, client_id=CLIENT_ID, users={"alice": {"groups": ["eng"]}})
    idp.add("other", GITHUB_AUDIENCE)
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
        Issuer("github", github.url, GITHUB_AUDIENCE),
    )


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
def env(monkeypatch: pytest.MonkeyPatch) -> Env:
    """No CI around the tests (even when they run in one), and a machine that is not GCE."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("id._internal.oidc.ambient._open", not_on_gce)
    return Env(monkeypatch)


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


@dataclass
class Client:
    """``obtain`` as the CLI calls it, with the test's clock and environment; every answer and
    every message is checked for tokens."""

    config: BrokerConfig
    env: Env
    secrets: list[str]
    now: float
    corp: LocalIssuer
    out: str = ""

    def approve(self, seconds: float) -> None:
        """The injected sleep of a device login: alice approves it."""
        [pending] = self.corp.pending()
        self.corp.approve(pending.user_code, "alice")

    def _call(self, kwargs: dict[str, Any]) -> Identity:
        stream = io.StringIO()
        try:
            return obtain(
                kwargs.pop("config", self.config),
                env=self.env.values,
                out=stream,
                clock=lambda: self.now,
                sleep=self.approve,
                **{"interactive": False, **kwargs},
            )
        finally:
            self.out = stream.getvalue()

    def get(self, **kwargs: Any) -> Identity:
        who = self._call(kwargs)
        assert repr(who.token) == f"<secret: {len(who.token)} characters>"
        self.shows_no_secret(self.out, extra=[who.token])
        return who

    def fail(self, **kwargs: Any) -> str:
        with pytest.raises(IdentityError) as caught:
            self._call(kwargs)
        message = str(caught.value)
        assert caught.value.exit_code == 5
        assert "\n" not in message  # one line
        self.shows_no_secret(message + self.out)
        return message

    def shows_no_secret(self, text: str, extra: list[str] | None = None) -> None:
        for secret in [*self.secrets, *(extra or [])]:
            assert secret not in text
            assert secret.rsplit(".", 1)[-1] not in text  # not even the signature


@pytest.fixture
def client(
    config: BrokerConfig, env: Env, secrets: list[str], idp: IdentityProvider, corp: LocalIssuer
) -> Client:
    return Client(config, env, secrets, idp.clock(), corp)


def mint(secrets: list[str], issuer: LocalIssuer, **claims: Any) -> str:
    token = str(issuer.mint(**claims))
    secrets.append(token)
    return token


def claims_of(who: Identity) -> dict[str, Any]:
    return unverified_claims(who.token)


def utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def fake_tool(tmp_path: Path, env: Env, name: str, output: str) -> None:
    """An executable ``name`` first on the PATH that prints ``output``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / name
    tool.write_text(f"#!/bin/sh\nprintf '%s\\n' '{output}'\n")
    tool.chmod(0o755)
    env.monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


# ------------------------------------------------------------------------- ambient (CI)


def test_github_actions(client: Client, github_actions: GitHubTokens, github: LocalIssuer) -> None:
    who = client.get()
    assert (who.source, who.issuer.name) == ("github-actions", "github")
    assert who.token == github_actions.issued[0]
    assert claims_of(who)["aud"] == GITHUB_AUDIENCE
    assert who.expires_at == datetime.fromtimestamp(claims_of(who)["exp"], UTC)
    # the audience of the issuer without a client_id is asked first, though listed second
    assert github_actions.audiences == [GITHUB_AUDIENCE]


def test_gitlab_ci(client: Client, env: Env, github: LocalIssuer, secrets: list[str]) -> None:
    token = mint(secrets, github)
    env.set(GITLAB_CI="true", CODEARTIFACT_BROKER_ID_TOKEN=token)
    who = client.get()
    assert (who.token, who.source, who.issuer.name) == (token, "gitlab-ci", "github")


def test_gitlab_ci_with_a_token_for_a_later_audience(
    client: Client, idp: IdentityProvider, env: Env, secrets: list[str]
) -> None:
    """Each distinct audience is asked for: the job declared only the second one."""
    ci = idp.add("ci", "ci-broker")
    config = config_of(*client.config.issuers, Issuer("ci", ci.url, "ci-broker"))
    token = mint(secrets, ci)
    env.set(GITLAB_CI="true", CI_BROKER_ID_TOKEN=token)
    who = client.get(config=config)
    assert (who.token, who.source, who.issuer.name) == (token, "gitlab-ci", "ci")


@pytest.mark.parametrize(
    ("tool", "variable", "source"),
    [
        pytest.param("buildkite-agent", "BUILDKITE", "buildkite", id="buildkite"),
        pytest.param("circleci", "CIRCLECI", "circleci", id="circleci"),
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
) -> None:
    token = mint(secrets, github)
    fake_tool(tmp_path, env, tool, token)
    env.set(**{variable: "true"})
    who = client.get()
    assert (who.token, who.source, who.issuer.name) == (token, source, "github")


def test_a_detector_without_a_variable_is_gcp(
    client: Client, github: LocalIssuer, secrets: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """GCP's detector alone looks at the machine rather than a variable."""
    token = mint(secrets, github)
    monkeypatch.setattr("id.detect_credential", lambda audience: token)
    assert client.get().source == "gcp"


def test_ambient_wins_over_file_and_env(
    client: Client,
    env: Env,
    github: LocalIssuer,
    corp: LocalIssuer,
    secrets: list[str],
    tmp_path: Path,
) -> None:
    path = tmp_path / "token"
    path.write_text(mint(secrets, corp))
    env.set(
        GITLAB_CI="true",
        CODEARTIFACT_BROKER_ID_TOKEN=mint(secrets, github),
        CABROKER_ID_TOKEN=mint(secrets, corp),
    )
    assert client.get(id_token_file=path).source == "gitlab-ci"


@pytest.mark.parametrize("interactive", [False, True], ids=["non-interactive", "interactive"])
def test_github_actions_without_id_token_permission(
    client: Client, env: Env, interactive: bool
) -> None:
    env.set(GITHUB_ACTIONS="true")  # no ACTIONS_ID_TOKEN_REQUEST_*: no `id-token: write`
    message = client.fail(interactive=interactive)
    assert message == (
        "GitHub Actions gave no usable ID token: GitHub: missing or insufficient OIDC token "
        "permissions, the ACTIONS_ID_TOKEN_REQUEST_TOKEN environment variable was unset; "
        "give the job `permissions: id-token: write`, or pass --id-token-file PATH"
    )
    assert client.out == ""  # no device login was started


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
    assert github_actions.audiences == [GITHUB_AUDIENCE, CORP_AUDIENCE]


def test_a_failing_ci_identity_gives_way_to_an_explicit_token(
    client: Client, env: Env, corp: LocalIssuer, secrets: list[str]
) -> None:
    env.set(GITHUB_ACTIONS="true", CABROKER_ID_TOKEN=mint(secrets, corp))
    who = client.get()
    assert (who.source, who.issuer.name) == ("env", "corp")


def test_gitlab_ci_without_id_tokens(client: Client, env: Env) -> None:
    env.set(GITLAB_CI="true")
    assert client.fail() == (
        "GitLab CI gave no usable ID token: GitLab: Environment variable "
        "CODEARTIFACT_BROKER_ID_TOKEN not found; add "
        "`id_tokens: {CODEARTIFACT_BROKER_ID_TOKEN: {aud: codeartifact-broker}}` to the job, "
        "or pass --id-token-file PATH"
    )


def test_a_ci_token_from_an_issuer_the_broker_does_not_trust(
    client: Client, env: Env, other: LocalIssuer, corp: LocalIssuer, secrets: list[str]
) -> None:
    env.set(GITLAB_CI="true", CODEARTIFACT_BROKER_ID_TOKEN=mint(secrets, other))
    message = client.fail()
    assert message.startswith("GitLab CI gave no usable ID token: GitLab: Environment variable ")
    assert (
        f"its ID tokens come from issuers the broker does not trust ({other.url} for audience "
        f"'codeartifact-broker'); it trusts {corp.url} (corp), "
    ) in message


@pytest.mark.parametrize(
    ("issuer", "audiences", "trusted"),
    [
        pytest.param("github", [GITHUB_AUDIENCE], True, id="github"),
        pytest.param("corp", [CORP_AUDIENCE], False, id="corp: a GitHub token is not corp's"),
    ],
)
def test_the_issuer_restricts_ci_identities(
    client: Client, github_actions: GitHubTokens, issuer: str, audiences: list[str], trusted: bool
) -> None:
    if trusted:
        assert client.get(issuer=issuer).issuer.name == issuer
    else:
        assert "does not trust" in client.fail(issuer=issuer)
    assert github_actions.audiences == audiences


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
    assert (who.token, who.issuer.name) == (token, "github")
    assert who.source == ("env" if where == "CABROKER_ID_TOKEN" else "file")
    assert who.expires_at == datetime.fromtimestamp(client.now + 300, UTC)


def test_the_file_argument_wins_over_the_variables(
    client: Client,
    env: Env,
    github: LocalIssuer,
    corp: LocalIssuer,
    secrets: list[str],
    tmp_path: Path,
) -> None:
    path, other_path = tmp_path / "token", tmp_path / "other"
    path.write_text(mint(secrets, corp))
    other_path.write_text(mint(secrets, github))
    env.set(CABROKER_ID_TOKEN=mint(secrets, github), CABROKER_ID_TOKEN_FILE=str(other_path))
    who = client.get(id_token_file=path)
    assert (who.source, who.issuer.name) == ("file", "corp")


def test_both_variables_is_ambiguous(
    client: Client, env: Env, github: LocalIssuer, secrets: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "token"
    path.write_text(mint(secrets, github))
    env.set(CABROKER_ID_TOKEN=mint(secrets, github), CABROKER_ID_TOKEN_FILE=str(path))
    assert client.fail() == (
        "both CABROKER_ID_TOKEN and CABROKER_ID_TOKEN_FILE are set: unset one of them"
    )


def test_a_token_from_an_issuer_the_broker_does_not_trust(
    client: Client,
    env: Env,
    other: LocalIssuer,
    github: LocalIssuer,
    corp: LocalIssuer,
    secrets: list[str],
) -> None:
    env.set(CABROKER_ID_TOKEN=mint(secrets, other))
    assert client.fail() == (
        f"the ID token from CABROKER_ID_TOKEN was issued by {other.url}, which the broker does "
        f"not trust; it trusts {corp.url} (corp), {github.url} (github)"
    )


def test_a_token_for_another_audience(
    client: Client, env: Env, github: LocalIssuer, secrets: list[str]
) -> None:
    env.set(CABROKER_ID_TOKEN=mint(secrets, github, aud=["sigstore", "pypi"]))
    assert client.fail() == (
        "the ID token from CABROKER_ID_TOKEN is for audience ['sigstore', 'pypi'], but the "
        f"broker expects 'codeartifact-broker' from {github.url}; ask for a token with that "
        "audience"
    )


def test_a_list_audience_that_holds_the_brokers_is_fine(
    client: Client, env: Env, github: LocalIssuer, secrets: list[str]
) -> None:
    env.set(CABROKER_ID_TOKEN=mint(secrets, github, aud=["sigstore", GITHUB_AUDIENCE]))
    assert client.get().issuer.name == "github"


def test_the_issuer_restricts_file_and_env(
    client: Client, env: Env, github: LocalIssuer, corp: LocalIssuer, secrets: list[str]
) -> None:
    env.set(CABROKER_ID_TOKEN=mint(secrets, github))
    assert client.get(issuer="github").issuer.name == "github"
    assert client.fail(issuer="corp") == (
        f"the ID token from CABROKER_ID_TOKEN was issued by {github.url}, not by issuer corp "
        f"({corp.url}) as --issuer asks"
    )


def test_an_unknown_issuer_name(client: Client) -> None:
    assert client.fail(issuer="gihtub") == (
        "the broker has no issuer named 'gihtub'; its issuers: corp, github"
    )


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
        env.set(
            GITHUB_ACTIONS="true",
            ACTIONS_ID_TOKEN_REQUEST_URL=url,
            ACTIONS_ID_TOKEN_REQUEST_TOKEN=REQUEST_TOKEN,
        )
    elif source == "gitlab-ci":
        env.set(GITLAB_CI="true", CODEARTIFACT_BROKER_ID_TOKEN=mint(secrets, github, **expired))
    elif source == "file":
        path.write_text(mint(secrets, github, **expired))
        kwargs["id_token_file"] = path
    elif source == "env":
        env.set(CABROKER_ID_TOKEN=mint(secrets, github, **expired))
    else:
        shared_clock = idp.clock
        assert isinstance(shared_clock, Clock)
        shared_clock.now = client.now - 390  # the IdP signs as if 390 s ago
        kwargs["interactive"] = True
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


def test_nothing_found_without_a_terminal_fails_fast(client: Client) -> None:
    assert client.fail() == (
        "no identity found: no CI identity (GitHub Actions, GCP, Buildkite, GitLab CI, "
        "CircleCI), no --id-token-file, CABROKER_ID_TOKEN or CABROKER_ID_TOKEN_FILE, and "
        f"interactive login is off (no terminal, or --non-interactive); {HINTS}"
    )
    assert client.out == ""
    assert client.corp.pending() == []


def test_nothing_found_logs_in_interactively(client: Client) -> None:
    who = client.get(interactive=True)
    assert (who.source, who.issuer.name) == ("device", "corp")
    assert (claims_of(who)["sub"], claims_of(who)["groups"]) == ("alice", ["eng"])
    assert who.expires_at == datetime.fromtimestamp(client.now + 300, UTC)
    assert "/corp/device?user_code=" in client.out


def test_a_named_device_source_logs_in_without_a_terminal(client: Client) -> None:
    assert client.get(source="device", interactive=False).source == "device"


def test_interactive_but_the_broker_offers_no_login(client: Client, github: LocalIssuer) -> None:
    config = config_of(Issuer("github", github.url, GITHUB_AUDIENCE))
    message = client.fail(config=config, interactive=True)
    assert message.startswith("no identity found: ")
    assert "and the broker offers no interactive login; " in message


def test_interactive_but_the_named_issuer_offers_no_login(client: Client) -> None:
    message = client.fail(interactive=True, issuer="github")
    assert "and issuer github offers no interactive login; " in message
    assert client.corp.pending() == []


def test_interactive_with_several_issuers_to_log_in_to(
    client: Client, idp: IdentityProvider
) -> None:
    okta = idp.add("okta", CORP_AUDIENCE, client_id=CLIENT_ID, users={"bob": {}})
    config = config_of(*client.config.issuers, Issuer("okta", okta.url, CORP_AUDIENCE, CLIENT_ID))
    assert client.fail(config=config, interactive=True) == (
        "the broker offers interactive login with several issuers (corp, okta); "
        "choose one with --issuer NAME"
    )
    assert client.get(config=config, interactive=True, issuer="corp").issuer.name == "corp"


# ----------------------------------------------------------------------- named sources


def test_a_named_source_is_the_only_one_tried(
    client: Client, env: Env, github: LocalIssuer, secrets: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "token"
    path.write_text(mint(secrets, github))
    env.set(GITLAB_CI="true", CODEARTIFACT_BROKER_ID_TOKEN=mint(secrets, github))
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


def test_an_unknown_source(client: Client) -> None:
    with pytest.raises(UsageError) as caught:
        client.get(source="keyring")
    assert str(caught.value) == (
        "unknown identity source 'keyring'; choose one of ambient, file, env, device"
    )
    assert SOURCES == ("ambient", "file", "env", "device")


def test_a_broker_that_trusts_no_issuer(client: Client) -> None:
    assert client.fail(config=config_of()) == (
        "the broker trusts no issuer (its /v1/config lists none)"
    )
