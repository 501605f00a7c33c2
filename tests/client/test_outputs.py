"""cabroker.outputs: the variables for pip, uv, twine and poetry, each output format read back
by what reads it (sh/bash/dash, a dotenv parser, json, GitHub's GITHUB_ENV rules), and the real
uv, pip and twine authenticating to a local index with them."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from cabroker import outputs
from cabroker.broker import Grant
from cabroker.errors import FilesError, UsageError
from cabroker.secret import Secret
from devstack.public import PublicIndex
from devstack.wheels import build_wheel
from tests.devstack.test_wheels import tool_env

VENV_BIN = Path(sys.executable).parent
HOST = "acme-111122223333.d.codeartifact.us-east-1.amazonaws.com"
INDEX_URL = f"https://{HOST}/pypi/internal/simple/"
UPLOAD_URL = f"https://{HOST}/pypi/internal/"
# A made-up token with characters a URL's user info must percent-encode.
TOKEN = Secret("eyJ2ZXIiOjF9.tok/en+=%x")
EXPIRES = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)

READ_KEYS = [
    "PIP_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_INDEX_CODEARTIFACT_USERNAME",
    "UV_INDEX_CODEARTIFACT_PASSWORD",
    "POETRY_HTTP_BASIC_CODEARTIFACT_USERNAME",
    "POETRY_HTTP_BASIC_CODEARTIFACT_PASSWORD",
]
PUBLISH_KEYS = [
    "TWINE_REPOSITORY_URL",
    "TWINE_USERNAME",
    "TWINE_PASSWORD",
    "UV_PUBLISH_URL",
    "UV_PUBLISH_USERNAME",
    "UV_PUBLISH_PASSWORD",
    "POETRY_REPOSITORIES_CODEARTIFACT_URL",
]


def make_grant(
    access: str = "read",
    *,
    token: str = TOKEN,
    index_url: str = INDEX_URL,
    upload_url: str = UPLOAD_URL,
) -> Grant:
    return Grant(
        token=Secret(token),
        expires_at=EXPIRES,
        username="aws",
        repository="internal",
        access=access,
        packages=("acme-*",) if access == "publish" else (),
        index_url=index_url,
        upload_url=upload_url,
        domain="acme",
        domain_owner="111122223333",
        region="us-east-1",
    )


def redact(text: str, *secrets: str) -> str:
    """``text`` without the tokens, raw or percent-encoded, nor any 6+ character piece of them
    (a tool may quote a token cut at a URL delimiter), for assertion messages."""
    for secret in secrets or (TOKEN,):
        for form in (secret, quote(secret, safe="")):
            pieces = [form, *re.split(r"[/:@?#%+=]", form)]
            for piece in sorted(pieces, key=len, reverse=True):
                if len(piece) >= 6:
                    text = text.replace(piece, "<token>")
    return text


# --- a local index that wants aws:TOKEN ---------------------------------------------------------


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@dataclass
class AuthIndex:
    """The devstack's public index behind HTTP Basic ``aws:<token>``; ``POST /upload/`` takes
    an upload (twine, uv publish). Records (method, path, authenticated) of every request."""

    directory: Path
    token: str
    requests: list[tuple[str, str, bool]] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        with Request(environ) as request:
            return self._answer(request)(environ, start_response)

    def _answer(self, request: Request) -> Callable[[dict[str, Any], Any], Iterable[bytes]]:
        auth = request.authorization
        ok = (
            auth is not None
            and auth.type == "basic"
            and auth.username == "aws"
            and auth.password == self.token
        )
        self.requests.append((request.method, request.path, ok))
        if not ok:
            return Response("who are you?", 401, {"WWW-Authenticate": 'Basic realm="test"'})
        if request.method == "POST" and request.path == "/upload/":
            self.uploads.append(str(request.form.get("name")))
            return Response("OK")
        return PublicIndex(self.directory)

    @property
    def authenticated(self) -> bool:
        return bool(self.requests) and all(ok for _, _, ok in self.requests)


@contextmanager
def serving(directory: Path) -> Iterator[tuple[AuthIndex, str]]:
    """An :class:`AuthIndex` on a free loopback port: (the app, ``http://127.0.0.1:PORT``)."""
    app = AuthIndex(directory, TOKEN)
    server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield app, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass(frozen=True)
class Ran:
    returncode: int
    output: str  # stdout and stderr, tokens blanked out

    def __repr__(self) -> str:
        return f"<exit {self.returncode}>"


def run(args: list[str], env: Mapping[str, str]) -> Ran:
    done = subprocess.run(
        args, env=dict(env), capture_output=True, text=True, timeout=60, check=False
    )
    return Ran(done.returncode, redact(done.stdout + done.stderr))


# --- the variables ------------------------------------------------------------------------------


def test_read_grant_sets_the_default_index_never_an_extra_one() -> None:
    found = outputs.variables(make_grant("read"))
    assert list(found) == [*READ_KEYS, "CABROKER_TOKEN_EXPIRES_AT"]
    assert not any("EXTRA_INDEX" in key for key in found)
    assert found["UV_DEFAULT_INDEX"] == f"codeartifact={INDEX_URL}"
    assert found["UV_INDEX_CODEARTIFACT_USERNAME"] == "aws"
    assert found["POETRY_HTTP_BASIC_CODEARTIFACT_USERNAME"] == "aws"
    passwords = [found[k] for k in READ_KEYS if k.endswith("_PASSWORD")]
    same = passwords == [TOKEN, TOKEN]  # booleans only: a failure diff would show the token
    assert same, "a password is not the token"
    assert found["CABROKER_TOKEN_EXPIRES_AT"] == "2030-01-02T03:04:05Z"


def test_publish_grant_adds_the_upload_variables() -> None:
    found = outputs.variables(make_grant("publish"))
    assert list(found) == [*READ_KEYS, *PUBLISH_KEYS, "CABROKER_TOKEN_EXPIRES_AT"]
    for key in ("TWINE_REPOSITORY_URL", "UV_PUBLISH_URL", "POETRY_REPOSITORIES_CODEARTIFACT_URL"):
        assert found[key] == UPLOAD_URL
    assert found["TWINE_USERNAME"] == found["UV_PUBLISH_USERNAME"] == "aws"
    same = found["TWINE_PASSWORD"] == found["UV_PUBLISH_PASSWORD"] == TOKEN
    assert same, "a publish password is not the token"


def test_pip_index_url_carries_the_token_percent_encoded() -> None:
    url = outputs.variables(make_grant())["PIP_INDEX_URL"]
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.path) == ("https", HOST, "/pypi/internal/simple/")
    assert parts.username == "aws"
    decoded = unquote(parts.password or "") == TOKEN
    assert decoded, "the URL's password does not decode to the token"
    encoded = quote(TOKEN, safe="") in url and TOKEN not in url
    assert encoded, "'/', '+', '=', '%' must be percent-encoded in the URL"


def test_token_values_have_a_redacted_repr() -> None:
    found = outputs.variables(make_grant("publish"))
    hidden = TOKEN not in repr(found) and quote(TOKEN, safe="") not in repr(found)
    assert hidden, "a repr shows the token"


@pytest.mark.parametrize(
    ("name", "upper"),
    [
        pytest.param("codeartifact", "CODEARTIFACT", id="plain"),
        pytest.param("my-index", "MY_INDEX", id="dash becomes underscore"),
        pytest.param("corp.internal", "CORP_INTERNAL", id="dot becomes underscore"),
        pytest.param("Acme_2", "ACME_2", id="upper-cased, underscore and digits kept"),
    ],
)
def test_index_name_in_variable_names(name: str, upper: str) -> None:
    found = outputs.variables(make_grant("publish"), name)
    assert found["UV_DEFAULT_INDEX"] == f"{name}={INDEX_URL}"
    assert f"UV_INDEX_{upper}_PASSWORD" in found
    assert f"POETRY_HTTP_BASIC_{upper}_USERNAME" in found
    assert f"POETRY_REPOSITORIES_{upper}_URL" in found


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("my index", id="space"),
        pytest.param("a=b", id="equals would split UV_DEFAULT_INDEX"),
        pytest.param("-dash", id="leading dash"),
        pytest.param("caf\u00e9", id="non-ASCII"),
    ],
)
def test_unusable_index_names_are_refused(name: str) -> None:
    with pytest.raises(UsageError, match="index name"):
        outputs.variables(make_grant(), name)


# --- rendering ----------------------------------------------------------------------------------

NASTY = {
    "PLAIN": "https://example.com/pypi/simple/",
    "SINGLE": "it's",
    "DOUBLE": 'say "hi"',
    "DOLLAR": "$HOME ${HOME} $(id) `id`",
    "BACKSLASH": "a\\b\\\\c\\'d\\",
    "NEWLINES": "line one\nline two\n",
    "CR": "a\rb",
    "PERCENT": "100%25 %s %",
    "HASH": "# not a comment",
    "SPACES": "  padded  ",
    "EMPTY": "",
    "SMART_QUOTES": "it\u2019s \u2018quoted\u2019 \u201a\u201b",
    "UNICODE": "caf\u00e9 \u2603",
    "GLOB": "* ? [a] ~",
    "OPERATORS": "a; b && c | d > e",
    "EQUALS": "a=b==c",
}


# Evaluate $1 in the shell, then run the rest: python printing the named variables as JSON.
EVAL = 'eval "$1"; shift; exec "$@"'
DUMP = "import json, os, sys; json.dump({k: os.environ[k] for k in sys.argv[1:]}, sys.stdout)"


def test_sh_reads_back_every_value() -> None:
    script = outputs.render(NASTY, "sh")
    for shell in ("sh", "bash", "dash"):
        if shutil.which(shell) is None:
            continue
        done = subprocess.run(
            [shell, "-c", EVAL, shell, script, sys.executable, "-c", DUMP, *NASTY],
            capture_output=True,
            text=True,
            check=True,
            env={"PATH": os.environ["PATH"], "HOME": "/nonexistent"},
        )
        assert json.loads(done.stdout) == NASTY, shell


def test_sh_reads_back_the_real_variables() -> None:
    found = outputs.variables(make_grant("publish"))
    script = Secret(outputs.render(found, "sh"))  # a redacted repr, should it be reported
    shell = shutil.which("sh") or "/bin/sh"
    done = subprocess.run(
        [shell, "-c", EVAL, "sh", script, sys.executable, "-c", DUMP, *found],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, redact(done.stderr)
    same = json.loads(done.stdout) == found
    assert same, "the shell read other values back"


def test_sh_lines_are_exports_with_single_quotes() -> None:
    assert outputs.render({"A": "it's"}, "sh") == "export A='it'\\''s'\n"


def parse_fish(text: str) -> dict[str, str]:
    """``set -gx K '...'`` lines as fish reads them: in single quotes only \\\\ and \\' escape."""
    found: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        head = re.compile(r"set -gx ([A-Za-z_][A-Za-z0-9_]*) '").match(text, pos)
        assert head, redact(text[pos:])
        pos, value = head.end(), ""
        while text[pos] != "'":
            if text[pos] == "\\" and text[pos + 1] in "\\'":
                pos += 1
            value += text[pos]
            pos += 1
        assert text[pos + 1] == "\n"
        found[head[1]] = value
        pos += 2
    return found


def parse_powershell(text: str) -> dict[str, str]:
    """``$env:K = '...'`` lines as PowerShell reads them: any single quotation mark
    (ASCII or typographic) ends the string, and two in a row stand for the second one."""
    quotes = "'\u2018\u2019\u201a\u201b"
    found: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        head = re.compile(r"\$env:([A-Za-z_][A-Za-z0-9_]*) = '").match(text, pos)
        assert head, redact(text[pos:])
        pos, value = head.end(), ""
        while True:
            if text[pos] in quotes:
                if text[pos + 1] in quotes:
                    value += text[pos + 1]
                    pos += 2
                    continue
                break
            value += text[pos]
            pos += 1
        assert text[pos + 1] == "\n"
        found[head[1]] = value
        pos += 2
    return found


def _unescape(match: re.Match[str]) -> str:
    return {"n": "\n", "r": "\r"}.get(match[1], match[1])


def parse_dotenv(text: str) -> dict[str, str]:
    """The dotenv dialect ``render`` promises: bare, '...' literal, or "..." with \\\\ \\" \\n
    \\r escapes; one assignment a line."""
    found: dict[str, str] = {}
    for line in text.split("\n"):
        if not line:
            continue
        key, equals, raw = line.partition("=")
        assert equals, redact(line)
        ok = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) is not None
        assert ok, redact(line)
        if raw.startswith("'"):
            ok = re.fullmatch(r"'[^']*'", raw) is not None
            assert ok, redact(line)
            found[key] = raw[1:-1]
        elif raw.startswith('"'):
            ok = re.fullmatch(r'"(?:[^"\\]|\\[\\"nr])*"', raw) is not None
            assert ok, redact(line)
            found[key] = re.sub(r"\\(.)", _unescape, raw[1:-1])
        else:
            ok = re.fullmatch(r"[^\s'\"#$`\\]+", raw) is not None
            assert ok, redact(line)
            found[key] = raw
    return found


@pytest.mark.parametrize(
    ("fmt", "parse"),
    [
        pytest.param("fish", parse_fish, id="fish"),
        pytest.param("powershell", parse_powershell, id="powershell"),
        pytest.param("dotenv", parse_dotenv, id="dotenv"),
        pytest.param("json", json.loads, id="json"),
    ],
)
def test_format_reads_back_every_value(fmt: str, parse: Any) -> None:
    assert parse(outputs.render(NASTY, fmt)) == NASTY
    real = outputs.variables(make_grant("publish"))
    same = parse(Secret(outputs.render(real, fmt))) == real  # Secret: a redacted argument
    assert same, f"{fmt} read other values back"


@pytest.mark.parametrize(
    ("value", "line"),
    [
        pytest.param("https://aws:a%2Fb@h/simple/", "K=https://aws:a%2Fb@h/simple/", id="URL bare"),
        pytest.param("a b", "K='a b'", id="space single-quoted"),
        pytest.param("$HOME", "K='$HOME'", id="dollar single-quoted, never expanded"),
        pytest.param("#x", "K='#x'", id="hash single-quoted, never a comment"),
        pytest.param("", "K=''", id="empty"),
        pytest.param("it's", 'K="it\'s"', id="quote double-quoted"),
        pytest.param("a\\b", 'K="a\\\\b"', id="backslash escaped"),
        pytest.param("a\nb", 'K="a\\nb"', id="newline escaped"),
    ],
)
def test_dotenv_quoting(value: str, line: str) -> None:
    assert outputs.render({"K": value}, "dotenv") == line + "\n"


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_reads_back_every_value() -> None:  # pragma: no cover - needs fish
    script = outputs.render(NASTY, "fish") + f"exec {sys.executable} -c '{DUMP}' " + " ".join(NASTY)
    fish = str(shutil.which("fish"))
    done = subprocess.run([fish, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == NASTY


@pytest.mark.skipif(shutil.which("pwsh") is None, reason="pwsh is not installed")
def test_powershell_reads_back_every_value() -> None:  # pragma: no cover - needs pwsh
    keys = ",".join(f"'{key}'" for key in NASTY)
    script = outputs.render(NASTY, "powershell") + (
        f"$o = @{{}}; foreach ($k in @({keys})) "
        "{ $o[$k] = [Environment]::GetEnvironmentVariable($k) }; $o | ConvertTo-Json -Compress"
    )
    done = subprocess.run(
        [str(shutil.which("pwsh")), "-NoProfile", "-Command", script],
        capture_output=True,
        text=True,
        check=True,
    )
    read = {k: v or "" for k, v in json.loads(done.stdout).items()}
    assert read == NASTY


def test_unknown_format_and_bad_names_are_refused() -> None:
    with pytest.raises(UsageError, match="choose from sh, fish, powershell, dotenv, json"):
        outputs.render({"A": "1"}, "yaml")
    with pytest.raises(ValueError, match="not an environment variable name"):
        outputs.render({"A B": "1"}, "sh")


# --- GitHub Actions -----------------------------------------------------------------------------


def parse_github_env(text: str) -> dict[str, str]:
    """The runner's reading of a GITHUB_ENV file: ``K=V`` lines and ``K<<DELIM`` blocks."""
    found: dict[str, str] = {}
    lines = text.split("\n")
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line:
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, index)
            found[key] = "\n".join(lines[index:end])
            index = end + 1
        else:
            key, value = line.split("=", 1)
            found[key] = value
    return found


def unescape_command(data: str) -> str:
    return data.replace("%0A", "\n").replace("%0D", "\r").replace("%25", "%")


class Watched(io.StringIO):
    """Output that notes, at every write, how big the env file was."""

    def __init__(self, env_file: Path) -> None:
        super().__init__()
        self.env_file = env_file
        self.sizes: list[int] = []

    def write(self, text: str) -> int:
        self.sizes.append(self.env_file.stat().st_size)
        return super().write(text)


def test_github_actions_masks_first_then_appends_every_variable(tmp_path: Path) -> None:
    env_file = tmp_path / "github_env"
    env_file.write_text("EARLIER=kept\n")
    found = outputs.variables(make_grant("publish"))
    out = Watched(env_file)
    outputs.github_actions(found, env_file, out)
    assert out.sizes, "nothing masked"
    assert set(out.sizes) == {len("EARLIER=kept\n")}, "masks come first"
    lines = out.getvalue().splitlines()
    assert all(line.startswith("::add-mask::") for line in lines)
    masked = {unescape_command(line.removeprefix("::add-mask::")) for line in lines}
    same = masked == {TOKEN, found["PIP_INDEX_URL"]}
    assert same, "the token and PIP_INDEX_URL, and only they, are masked"
    read = parse_github_env(Secret(env_file.read_text()))
    assert read.pop("EARLIER") == "kept"
    same = read == found
    assert same, "GITHUB_ENV reads back other values"


def test_github_actions_escapes_percent_in_masks(tmp_path: Path) -> None:
    out = io.StringIO()
    outputs.github_actions({"X_PASSWORD": "50%25off\nnext"}, tmp_path / "env", out)
    assert out.getvalue().splitlines() == [
        "::add-mask::50%2525off%0Anext",
        "::add-mask::50%2525off",
        "::add-mask::next",
    ]


def test_github_actions_multiline_values_and_delimiter_collisions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / "env"
    delimiters = iter(["EOF", "EOF", "ghadelimiter_2", "ghadelimiter_3"])
    monkeypatch.setattr(outputs, "_delimiter", lambda: next(delimiters))
    values = {"MULTI": "first\nEOF\nlast\n", "PLAIN": "EOF is a word"}
    outputs.github_actions(values, env_file, io.StringIO())
    text = env_file.read_text()
    assert text == (
        "MULTI<<ghadelimiter_2\nfirst\nEOF\nlast\n\nghadelimiter_2\n"
        "PLAIN<<ghadelimiter_3\nEOF is a word\nghadelimiter_3\n"
    )
    assert parse_github_env(text) == values


def test_github_actions_delimiters_are_random(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    outputs.github_actions({"A": "1", "B": "2"}, env_file, io.StringIO())
    heads = re.findall(r"^[AB]<<(.+)$", env_file.read_text(), re.MULTILINE)
    assert len(heads) == len(set(heads)) == 2
    assert all(re.fullmatch(r"ghadelimiter_[0-9a-f]{32}", head) for head in heads)


def test_github_actions_unwritable_env_file_is_a_files_error(tmp_path: Path) -> None:
    with pytest.raises(FilesError, match="GITHUB_ENV"):
        outputs.github_actions({"A": "1"}, tmp_path / "missing" / "env", io.StringIO())


# --- the real tools read the variables ----------------------------------------------------------


def test_uv_uses_the_named_default_index_with_its_credentials(
    auth_index: tuple[AuthIndex, str], tmp_path: Path
) -> None:
    app, url = auth_index
    found = outputs.variables(make_grant(index_url=f"{url}/simple/"))
    requirements = tmp_path / "requirements.in"
    requirements.write_text("tinyjson\n")
    uv = [str(VENV_BIN / "uv"), "pip", "compile", str(requirements), "--no-header"]
    uv += ["--python", sys.executable]
    env = {**tool_env(tmp_path), **{k: v for k, v in found.items() if k.startswith("UV_")}}
    done = run(uv, env)
    assert done.returncode == 0, done.output
    assert "tinyjson==1.1.0" in done.output
    assert app.authenticated, app.requests
    # The control: a wrong password is refused, so the run above really authenticated.
    app.requests.clear()
    env["UV_INDEX_CODEARTIFACT_PASSWORD"] = "wrong"
    refused = run(uv, {**env, "UV_CACHE_DIR": str(tmp_path / "cache2")})
    assert refused.returncode != 0, refused.output
    assert not any(ok for _, _, ok in app.requests)


def test_pip_uses_pip_index_url_with_the_encoded_token(
    auth_index: tuple[AuthIndex, str], tmp_path: Path
) -> None:
    app, url = auth_index
    found = outputs.variables(make_grant(index_url=f"{url}/simple/"))
    env = {**tool_env(tmp_path), "PIP_INDEX_URL": found["PIP_INDEX_URL"], "PIP_NO_CACHE_DIR": "1"}
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(tmp_path / "dl")]
    done = run([*pip, "tinyjson"], env)
    assert done.returncode == 0, done.output
    assert (tmp_path / "dl" / "tinyjson-1.1.0-py3-none-any.whl").is_file()
    assert app.authenticated, app.requests


def test_twine_and_uv_publish_use_the_publish_variables(
    auth_index: tuple[AuthIndex, str], tmp_path: Path
) -> None:
    app, url = auth_index
    found = outputs.variables(make_grant("publish", upload_url=f"{url}/upload/"))
    wheel = build_wheel(tmp_path / "dist", "acme-lib", "1.0.0")
    env = {**tool_env(tmp_path), **found}
    twine = run([str(VENV_BIN / "twine"), "upload", "--disable-progress-bar", str(wheel)], env)
    assert twine.returncode == 0, twine.output
    uv = run([str(VENV_BIN / "uv"), "publish", str(wheel)], env)
    assert uv.returncode == 0, uv.output
    assert app.uploads == ["acme-lib", "acme-lib"]
    assert app.authenticated, app.requests
