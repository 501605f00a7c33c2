"""``cabroker`` against a fake broker (a real HTTP server): the commands' flow, cache reuse and
refresh, GitHub Actions output, and every error's exit code and message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from cabroker import cli
from cabroker.broker import BrokerClient, Grant, TokenRequest
from cabroker.errors import BrokerRefused, BrokerUnavailable, UsageError
from cabroker.secret import Secret
from tests.support.oidc import b64url

ISSUER = "https://token.actions.githubusercontent.com"


def id_token(exp_in: int = 300, **claims: Any) -> Secret:
    """An unsigned-looking JWT (the fake broker does not verify; the client only reads it)."""
    payload = {"iss": ISSUER, "aud": "cabroker", "sub": "repo:acme/app", **claims}
    payload["exp"] = int(time.time()) + exp_in
    header = b64url(json.dumps({"alg": "RS256", "kid": "k"}).encode())
    return Secret(f"{header}.{b64url(json.dumps(payload).encode())}.c2ln")


class FakeBroker:
    """/v1/config, /v1/token and /v1/grants; answers can be replaced per test."""

    def __init__(self) -> None:
        self.tokens_issued = 0
        self.lifetime = timedelta(hours=1)
        self.token_answer: tuple[int, dict[str, Any] | None, dict[str, str]] | None = None
        self.requests: list[dict[str, Any]] = []
        self._server = make_server("127.0.0.1", 0, self, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        status, body, headers = self.answer(request)
        response = Response(json.dumps(body), status=status, headers=headers)
        response.content_type = "application/problem+json" if status >= 400 else "application/json"
        return response(environ, start_response)

    def answer(self, request: Request) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        if request.path == "/v1/config":
            return (
                200,
                {
                    "version": "1",
                    "issuers": [{"name": "github", "url": ISSUER, "audience": "cabroker"}],
                    "repositories": ["internal"],
                    "domain": "acme",
                    "domain_owner": "111122223333",
                    "region": "us-east-1",
                },
                {},
            )
        if request.path == "/v1/token":
            self.requests.append(request.get_json())
            if self.token_answer is not None:
                return self.token_answer
            self.tokens_issued += 1
            body = request.get_json() or {}
            access = body.get("access", "read")
            expires = datetime.now(UTC) + self.lifetime
            return (
                200,
                {
                    "token": f"catoken-{self.tokens_issued}-" + "x" * 40,
                    "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "username": "aws",
                    "repository": "internal",
                    "access": access,
                    "packages": body.get("packages", ["acme-*"] if access == "publish" else []),
                    "index_url": "https://acme-111122223333.d.codeartifact.us-east-1.amazonaws.com/pypi/internal/simple/",
                    "upload_url": "https://acme-111122223333.d.codeartifact.us-east-1.amazonaws.com/pypi/internal/",
                    "domain": "acme",
                    "domain_owner": "111122223333",
                    "region": "us-east-1",
                },
                {},
            )
        if request.path == "/v1/grants":
            return 200, {"issuer": "github", "subject": "repo:acme/app", "grants": []}, {}
        return 404, {"type": "urn:cabroker:problem:not-found", "detail": "no route"}, {}


@pytest.fixture
def broker() -> Iterator[FakeBroker]:
    fake = FakeBroker()
    yield fake
    fake.stop()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean user: its own HOME, config, cache and state; no CI around; file token store."""
    for name in ("GITHUB_ACTIONS", "GITHUB_ENV", "GITHUB_OUTPUT", "GITLAB_CI", "BUILDKITE",
                 "CIRCLECI", "CABROKER_URL", "CABROKER_ID_TOKEN", "CABROKER_ID_TOKEN_FILE",
                 "ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / ".config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / ".cache"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / ".state"))
    monkeypatch.setenv("CABROKER_TOKEN_STORE", "file")
    monkeypatch.setenv("CABROKER_AUDIENCE", "cabroker")  # the fake broker's, pinned
    monkeypatch.setattr("id._internal.oidc.ambient.detect_gcp", lambda audience: None)
    return tmp_path


def token_file(home: Path, name: str = "id.jwt", **claims: Any) -> Path:
    path = home / name
    path.write_text(id_token(**claims))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_login_caches_and_reuses_the_token_until_refresh(
    broker: FakeBroker, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jwt = str(token_file(home))
    code, out, _ = run(capsys, "login", "--broker-url", broker.url, "--id-token-file", jwt)
    assert code == 0
    assert "read on internal" in out
    assert "expires at" in out
    assert run(capsys, "login", "--broker-url", broker.url, "--id-token-file", jwt)[0] == 0
    assert broker.tokens_issued == 1, "the cached token is reused"
    assert (
        run(capsys, "login", "--broker-url", broker.url, "--id-token-file", jwt, "--refresh")[0]
        == 0
    )
    assert broker.tokens_issued == 2


def test_each_request_shape_is_cached_apart(
    broker: FakeBroker, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jwt = str(token_file(home))
    base = ("login", "--broker-url", broker.url, "--id-token-file", jwt)
    assert run(capsys, *base, "--access", "read")[0] == 0
    assert run(capsys, *base, "--access", "publish", "--packages", "acme-*")[0] == 0
    assert broker.tokens_issued == 2
    assert broker.requests[-1] == {"access": "publish", "packages": ["acme-*"]}


def test_the_broker_url_comes_from_flag_env_or_saved_config(
    broker: FakeBroker,
    home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    jwt = str(token_file(home))
    code, _, err = run(capsys, "login", "--id-token-file", jwt)
    assert code == 2
    assert "no broker URL" in err
    assert run(capsys, "configure", broker.url)[0] == 0
    assert run(capsys, "login", "--id-token-file", jwt)[0] == 0
    monkeypatch.setenv("CABROKER_URL", "http://127.0.0.1:9")
    assert run(capsys, "login", "--id-token-file", jwt, "--refresh")[0] == 4


def test_github_actions_login_masks_then_exports(
    broker: FakeBroker,
    home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env_file, output_file = home / "github_env", home / "github_output"
    monkeypatch.setenv("GITHUB_ENV", str(env_file))
    monkeypatch.setenv("GITHUB_OUTPUT", str(output_file))
    jwt = str(token_file(home))
    code, out, _ = run(
        capsys, "login", "--broker-url", broker.url, "--id-token-file", jwt, "--github-env"
    )
    assert code == 0
    masks = [line for line in out.splitlines() if line.startswith("::add-mask::")]
    assert masks, "the token is masked"
    assert out.index("::add-mask::") < out.index("token:")
    written = env_file.read_text()
    assert "PIP_INDEX_URL<<" in written
    assert "UV_INDEX_CODEARTIFACT_PASSWORD<<" in written
    assert "index-url<<" in output_file.read_text()
    assert "catoken" not in output_file.read_text()


def test_env_prints_the_chosen_tools_in_the_chosen_format(
    broker: FakeBroker, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jwt = str(token_file(home))
    code, out, _ = run(
        capsys, "env", "--broker-url", broker.url, "--id-token-file", jwt, "--tools", "uv",
        "--format", "json",
    )  # fmt: skip
    assert code == 0
    names = set(json.loads(out))
    assert "UV_DEFAULT_INDEX" in names
    assert not any(name.startswith("PIP_") for name in names)
    code, _, err = run(capsys, "env", "--broker-url", broker.url, "--tools", "npm")
    assert code == 2
    assert "unknown tool" in err


def test_status_lists_tokens_and_warns_of_expiry(
    broker: FakeBroker, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "status")
    assert code == 6
    assert "no token cached" in out
    jwt = str(token_file(home))
    run(capsys, "login", "--broker-url", broker.url, "--id-token-file", jwt)
    code, out, _ = run(capsys, "status")
    assert code == 0
    assert "read on internal" in out
    assert f"for     the identity in the ID token file {jwt}" in out
    assert "warning" not in out  # an hour left of an hour


@pytest.mark.parametrize(
    ("lifetime_minutes", "warned"),
    [
        pytest.param(15, False, id="a short-lived token, just minted: no warning"),
        pytest.param(9, True, id="under 10 minutes left"),
        pytest.param(12 * 60, False, id="a 12 h token, just minted"),
    ],
)
def test_status_warns_near_the_end_of_a_tokens_life(
    broker: FakeBroker,
    home: Path,
    capsys: pytest.CaptureFixture[str],
    lifetime_minutes: int,
    warned: bool,
) -> None:
    broker.lifetime = timedelta(minutes=lifetime_minutes)
    jwt = str(token_file(home))
    assert run(capsys, "login", "--broker-url", broker.url, "--id-token-file", jwt)[0] == 0
    _, out, _ = run(capsys, "status")
    assert ("warning: expires in" in out) is warned


def problem(slug: str, detail: str) -> dict[str, Any]:
    return {"type": f"urn:cabroker:problem:{slug}", "detail": detail}


REFUSALS = [
    (403, problem("no-matching-rule", "no access rule matches you"), {}, 3, "no access rule"),
    (400, problem("ambiguous-request", "choose one of: read, publish"), {}, 3, "choose one of"),
    (401, problem("invalid-token", "the ID token has expired"), {}, 3, "the ID token has expired"),
    (503, problem("upstream-unavailable", "AWS down"), {"Retry-After": "7"}, 4, "try again in 7 s"),
    (429, {"message": "Too Many Requests"}, {}, 4, "Too Many Requests"),
]


@pytest.mark.parametrize(("status", "body", "headers", "exit_code", "says"), REFUSALS)
def test_broker_problems_become_exit_codes_with_the_detail(
    broker: FakeBroker,
    home: Path,
    capsys: pytest.CaptureFixture[str],
    status: int,
    body: dict[str, Any],
    headers: dict[str, str],
    exit_code: int,
    says: str,
) -> None:
    broker.token_answer = (status, body, headers)
    jwt = str(token_file(home))
    code, _, err = run(capsys, "login", "--broker-url", broker.url, "--id-token-file", jwt)
    assert code == exit_code
    assert says in err
    assert err.count("\n") == 1, "one line"
    assert "Traceback" not in err


def test_identity_failures_exit_5(
    broker: FakeBroker, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "login", "--broker-url", broker.url, "--non-interactive")
    assert code == 5
    assert "id-token" in err or "identity" in err
    expired = str(token_file(home, exp_in=-60))
    code, _, err = run(capsys, "login", "--broker-url", broker.url, "--id-token-file", expired)
    assert code == 5
    assert "expired" in err


def test_a_token_never_reaches_the_terminal_or_an_error(
    broker: FakeBroker, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jwt_path = token_file(home)
    jwt = jwt_path.read_text()
    _, out, err = run(capsys, "login", "--broker-url", broker.url, "--id-token-file", str(jwt_path))
    assert jwt not in out + err
    assert "catoken" not in out + err
    broker.token_answer = (500, {"detail": "boom"}, {})
    _, out, err = run(
        capsys, "login", "--broker-url", broker.url, "--id-token-file", str(jwt_path), "--refresh"
    )
    assert jwt not in out + err


def test_the_broker_client_maps_answers(broker: FakeBroker, home: Path) -> None:
    client = BrokerClient(broker.url)
    grant = client.token(id_token(), TokenRequest(access="publish", packages=("acme-*",)))
    assert isinstance(grant, Grant)
    assert repr(grant.token).startswith("<secret")
    broker.token_answer = (403, problem("no-matching-rule", "no"), {})
    with pytest.raises(BrokerRefused) as refused:
        client.token(id_token())
    assert refused.value.status == 403
    with pytest.raises(BrokerUnavailable):
        BrokerClient("http://127.0.0.1:9").config()
    with pytest.raises(UsageError):
        BrokerClient("ftp://broker")
    with pytest.raises(UsageError):
        BrokerClient("http://broker.example")


def test_help_is_for_newcomers(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    for words in ("cabroker login", 'eval "$(cabroker env)"', "exit codes", "logout"):
        assert words in text


def test_a_file_that_cannot_be_written_exits_7_and_says_why(
    broker: FakeBroker, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = home / "work" / "app"
    project.mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'app'\n")
    jwt = str(token_file(home))
    login = ("login", "--broker-url", broker.url, "--id-token-file", jwt)
    code, _, err = run(capsys, *login, "--docker-secret", str(project / "netrc"))
    assert code == 7
    assert "project" in err
    assert not (project / "netrc").exists()


def test_grants_shows_what_the_identity_may_ask_for(
    broker: FakeBroker, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jwt = str(token_file(home))
    code, out, _ = run(capsys, "grants", "--broker-url", broker.url, "--id-token-file", jwt)
    assert code == 0
    assert "nothing: no rule matches you" in out
    code, out, _ = run(
        capsys, "grants", "--broker-url", broker.url, "--id-token-file", jwt, "--json"
    )
    assert json.loads(out)["subject"] == "repo:acme/app"


def test_a_cached_token_goes_only_to_the_identity_it_was_minted_for(
    broker: FakeBroker, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A self-hosted runner whose HOME outlives jobs: the release job's publish token is never
    handed to a later job of another repository; the broker is asked, and may refuse."""
    release = str(token_file(home, "release.jwt", sub="repo:acme/app:ref:refs/heads/main"))
    publish = ("login", "--broker-url", broker.url, "--access", "publish")
    assert run(capsys, *publish, "--id-token-file", release)[0] == 0
    assert broker.tokens_issued == 1
    again = str(token_file(home, "again.jwt", sub="repo:acme/app:ref:refs/heads/main", jti="2"))
    assert run(capsys, *publish, "--id-token-file", again)[0] == 0
    assert broker.tokens_issued == 1, "the same identity in a new ID token: the cached grant"
    later = str(token_file(home, "later.jwt", sub="repo:acme/other:ref:refs/heads/feature"))
    broker.token_answer = (403, problem("no-matching-rule", "no access rule matches you"), {})
    code, out, err = run(capsys, *publish, "--id-token-file", later)
    assert code == 3
    assert "catoken" not in out + err
    assert len(broker.requests) == 2, "the broker was asked for the later job"


@pytest.mark.parametrize(
    "claim",
    [
        pytest.param({"ref": "refs/heads/feature"}, id="another ref"),
        pytest.param({"environment": "staging"}, id="another environment"),
        pytest.param({"groups": ["ops"]}, id="other groups"),
        pytest.param({"iss": "https://gitlab.example"}, id="another issuer"),
    ],
)
def test_any_claim_a_rule_could_match_is_another_identity(
    broker: FakeBroker, home: Path, capsys: pytest.CaptureFixture[str], claim: dict[str, Any]
) -> None:
    base = ("env", "--broker-url", broker.url, "--format", "json", "--id-token-file")
    first = str(token_file(home, "first.jwt", ref="refs/heads/main", groups=["eng"]))
    assert run(capsys, *base, first)[0] == 0
    other = str(
        token_file(home, "other.jwt", **{"ref": "refs/heads/main", "groups": ["eng"], **claim})
    )
    assert run(capsys, *base, other)[0] == 0
    assert broker.tokens_issued == 2


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://broker.example", id="cleartext"),
        pytest.param("https://user:pw@broker.example", id="credentials"),
        pytest.param("https://broker.example/?x=1", id="a query"),
        pytest.param("ftp://broker.example", id="another scheme"),
    ],
)
def test_an_unsafe_broker_url_is_refused_before_anything_is_sent(
    home: Path, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    jwt = str(token_file(home))
    code, _, err = run(capsys, "login", "--broker-url", url, "--id-token-file", jwt)
    assert code == 2
    assert "broker URL" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("status", "body"),
    [
        pytest.param(404, {"message": "Not Found"}, id="API Gateway's 404: a wrong URL"),
        pytest.param(404, None, id="a web server's 404 page"),
        pytest.param(403, {"detail": "forbidden"}, id="a proxy's problem, not a broker's"),
        pytest.param(200, None, id="a page that is not JSON"),
    ],
)
def test_a_url_that_is_not_a_broker_says_so(
    broker: FakeBroker,
    home: Path,
    capsys: pytest.CaptureFixture[str],
    status: int,
    body: dict[str, Any] | None,
) -> None:
    broker.token_answer = (status, body, {})
    jwt = str(token_file(home))
    code, _, err = run(capsys, "login", "--broker-url", broker.url, "--id-token-file", jwt)
    assert code == 2
    assert "does not look like a cabroker broker" in err
    assert "BrokerUrl" in err
    assert err.count("\n") == 1


def test_a_broker_url_ending_in_v1_is_the_broker(
    broker: FakeBroker, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jwt = str(token_file(home))
    code, _, err = run(capsys, "login", "--broker-url", broker.url + "/v1/", "--id-token-file", jwt)
    assert code == 0, err
    assert broker.tokens_issued == 1


@pytest.mark.parametrize("seconds", ["10", "899", "43201", "1h", "-900"])
def test_a_duration_out_of_range_is_a_usage_error_before_any_request(
    broker: FakeBroker, home: Path, capsys: pytest.CaptureFixture[str], seconds: str
) -> None:
    jwt = str(token_file(home))
    with pytest.raises(SystemExit) as stopped:
        cli.main(
            ["login", "--broker-url", broker.url, "--id-token-file", jwt, "--duration", seconds]
        )
    assert stopped.value.code == 2
    assert "900 (15 min) to 43200 (12 h)" in capsys.readouterr().err
    assert broker.requests == []


@pytest.mark.parametrize("command", ["login", "env", "configure", "status", "logout", "grants"])
def test_help_is_plain_text(capsys: pytest.CaptureFixture[str], command: str) -> None:
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    assert "``" not in capsys.readouterr().out


def test_logout_says_exported_variables_stay_valid(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "logout")
    assert code == 0
    assert "stays valid until it expires" in out


def test_a_reader_that_stops_reading_gets_no_traceback(tmp_path: Path) -> None:
    """``cabroker status | head``: the pipe closes before the output is written."""
    script = (
        "import os, sys\n"
        "read, write = os.pipe()\n"
        "os.close(read)\n"
        "os.dup2(write, sys.stdout.fileno())\n"
        "from cabroker.cli import main\n"
        "sys.exit(main(['status']))\n"
    )
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "CABROKER_TOKEN_STORE": "file",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert (done.returncode, done.stderr) == (141, "")
