"""cabroker.outputs: the variables for pip, uv, twine and poetry, each output format read back
by what reads it (the real sh/bash/dash, the real python-dotenv and a port of docker compose's
env_file parser, fish's and PowerShell's quoting rules, json, the runner's GITHUB_ENV and
GITHUB_OUTPUT reader), adversarial and Hypothesis-generated values included (read back
unchanged, or refused), and the real uv, pip and twine authenticating to a local index."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import dotenv
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
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
ROOT = Path(__file__).resolve().parents[2]
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
    "CRLF_INJECTION": "x\r\nOTHER=injected\n",
    "PERCENT": "100%25 %s %",
    "HASH": "# not a comment",
    "SPACES": "  padded  ",
    "EMPTY": "",
    "SMART_QUOTES": "it\u2019s \u2018quoted\u2019 \u201a\u201b",
    "UNICODE": "caf\u00e9 \u2603",
    "CONTROL": "\t\x01\x0b\x0c\x1b\x7f\x85\u2028\ufeff",
    "GLOB": "* ? [a] ~",
    "OPERATORS": "a; b && c | d > e",
    "EQUALS": "a=b==c",
}
# What a dotenv file carries (``${`` is refused there, see test_dotenv_truth_table).
DOTENV_NASTY = {
    **{k: v for k, v in NASTY.items() if k != "DOLLAR"},
    "DOLLAR": '$HOME $(id) `id` $$ "$x"',
}
# A fake secret: a refusal must name the variable, never show this.
CANARY = "fake-canary-value"


# Evaluate $1 in the shell, then run the rest: python printing the named variables as JSON.
EVAL = 'eval "$1"; shift; exec "$@"'
DUMP = "import json, os, sys; json.dump({k: os.environ[k] for k in sys.argv[1:]}, sys.stdout)"
# How a user loads the output: eval "$(cabroker env)", then the variable is used.
SH_PRINT = 'eval "$(cat "$1")"; printf %s "$V"'

# Hypothesis: any text, surrogates and control characters included, with the characters the
# formats treat specially (quotes, $, backslash, line breaks, NUL, `${`) made frequent.
SPECIAL = ["$", "${", "${A}", "'", '"', "\\", "`", "#", " ", "\t", "\n", "\r", "\r\n", "\0", "="]
ANY_TEXT = st.lists(
    st.one_of(st.sampled_from(SPECIAL), st.characters(exclude_categories=())), max_size=20
).map("".join)
# What every format can carry: no NUL, no lone surrogate.
CARRIED_TEXT = ANY_TEXT.filter(lambda v: "\0" not in v and not has_surrogate(v))


def has_surrogate(value: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in value)


def fixed(max_examples: int) -> settings:
    """Reproducible Hypothesis settings: the same examples on every run, no database."""
    return settings(max_examples=max_examples, deadline=None, derandomize=True, database=None)


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


def sh_prints(value: str, directory: Path) -> str:
    """``eval "$(cat script)"; printf %s "$V"`` in the real /bin/sh: what V holds."""
    script = directory / "script.sh"
    script.write_bytes(outputs.render({"V": value}, "sh").encode("utf-8"))
    done = subprocess.run(
        ["/bin/sh", "-c", SH_PRINT, "sh", str(script)],
        capture_output=True,
        check=True,
        env={"PATH": os.environ["PATH"], "HOME": "/nonexistent"},
    )
    return done.stdout.decode("utf-8")


@pytest.mark.parametrize("key", list(NASTY))
def test_sh_eval_then_printf_prints_the_value(key: str, tmp_path: Path) -> None:
    assert sh_prints(NASTY[key], tmp_path) == NASTY[key]


@fixed(60)
@given(value=CARRIED_TEXT)
def test_sh_property_any_value_reads_back(value: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        assert sh_prints(value, Path(directory)) == value


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


@pytest.mark.parametrize(
    ("value", "line"),
    [
        pytest.param("it's", "export A='it'\\''s'", id="quote closed, escaped, reopened"),
        pytest.param("$(id) `id` $HOME", "export A='$(id) `id` $HOME'", id="expansions literal"),
        pytest.param("a\nB=x", "export A='a\nB=x'", id="newline inside the quotes"),
    ],
)
def test_sh_lines_are_exports_with_single_quotes(value: str, line: str) -> None:
    assert outputs.render({"A": value}, "sh") == line + "\n"


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


# --- dotenv: the real python-dotenv, and docker compose's rules ---------------------------------


def read_python_dotenv(text: str) -> dict[str, str | None]:
    """``text`` as the real python-dotenv reads it from a file (``dotenv_values``: interpolation
    on, as by default; the file opened in text mode, so CR and CR LF become LF)."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / ".env"
        path.write_bytes(text.encode("utf-8"))
        return dict(dotenv.dotenv_values(path))


class ComposeExpands(AssertionError):
    """The value holds a ``$`` where docker compose substitutes variables."""


# compose-go dotenv/parser.go: the escapes expandEscapes decodes in double quotes (Go's \d is
# ASCII-only, hence [0-9]), and what strconv.UnquoteChar makes of each.
_COMPOSE_ESCAPE = re.compile(r'\\(?:[abcfnrtv$"\\]|0[0-9]{0,3})')
_GO_ESCAPES = {
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
    "\\": "\\", '"': '"',
}  # fmt: skip
_GO_SPACE = "\t\v\f\r \x85\xa0"  # compose-go's isSpace: spaces that are not a line break


def _compose_escape(match: re.Match[str]) -> str:
    text = match[0]
    if text == "\\$":
        return "$$"
    if text.startswith("\\0"):  # `\0ddd` is rewritten to Go's `\ddd` (three octal digits)
        digits = text[2:]
        if len(digits) == 3 and set(digits) <= set("01234567") and int(digits, 8) < 256:
            return chr(int(digits, 8))
        return "\\" + digits  # UnquoteChar fails: the rewritten match is kept
    return _GO_ESCAPES.get(text[1], text)  # `\c` fails UnquoteChar: kept as is


def _compose_substitute(value: str, key: str) -> str:
    """compose's template.Substitute ($NAME, ${...}, $$): any ``$`` left here is expanded."""
    if "$" in value:
        raise ComposeExpands(f"{key}: docker compose would substitute a '$'")
    return value


def parse_compose(text: str) -> dict[str, str]:
    """``text`` as docker compose v2 reads an ``env_file`` (compose-spec/compose-go,
    ``dotenv/parser.go``: parse, locateKeyName, extractVarValue, expandEscapes), ported line
    by line. Interpolation is not modelled: a ``$`` in a bare or double-quoted value raises
    :class:`ComposeExpands`, so a writer that relies on it finding no variable fails."""
    found: dict[str, str] = {}
    rest = text
    while True:
        start = next((i for i, c in enumerate(rest) if not (c.isspace() or c in _GO_SPACE)), -1)
        if start == -1:
            return found
        rest = rest[start:]
        if rest[0] == "#":
            rest = rest[rest.index("\n") :] if "\n" in rest else ""
            continue
        for index, char in enumerate(rest):
            if char in _GO_SPACE:
                continue
            if char in "=:\n":
                assert char == "=", f"{rest[:index]!r}: no value (inherited from the shell)"
                key, rest = rest[:index].rstrip(), rest[index + 1 :].lstrip(_GO_SPACE)
                break
            assert char.isalnum() or char in "_.-[]", f"unexpected {char!r} in a name"
        else:
            raise AssertionError("a name without '='")
        if not rest or rest[0] not in "'\"":
            line, _, rest = rest.partition("\n")
            line = line.split(" #", 1)[0].rstrip()
            found[key] = _compose_substitute(line, key)
            continue
        quote, chars, escaped = rest[0], "", False
        for index in range(1, len(rest)):
            char = rest[index]
            if char != quote:
                if not escaped and char == "\\":
                    escaped = True
                    continue
                if escaped:
                    escaped = False
                    chars += "\\"
                chars += char
                continue
            if escaped:  # \" or \' (whichever quote this is) stands for the quote
                escaped = False
                chars += char
                continue
            if quote == '"':
                chars = _compose_substitute(_COMPOSE_ESCAPE.sub(_compose_escape, chars), key)
            found[key] = chars
            rest = rest[index + 1 :]
            break
        else:
            raise AssertionError(f"{key}: unterminated quoted value")


def dotenv_refuses(value: str) -> bool:
    """The documented rule: ``${`` anywhere (python-dotenv expands it in any quoting), ``$``
    with a quote, backslash or line break (only double quotes hold those, where compose
    expands ``$``), or what no environment variable holds (NUL, a lone surrogate)."""
    if "\0" in value or has_surrogate(value) or "${" in value:
        return True
    return "$" in value and any(c in value for c in "'\\\n\r")


def read_dotenv_both(text: str) -> dict[str, str]:
    """``text`` read by python-dotenv and by docker compose; they must agree."""
    python = read_python_dotenv(text)
    compose = parse_compose(text)
    same = python == compose
    assert same, "python-dotenv and docker compose read different values"
    return compose


@pytest.mark.parametrize(
    ("fmt", "parse", "values"),
    [
        pytest.param("fish", parse_fish, NASTY, id="fish"),
        pytest.param("powershell", parse_powershell, NASTY, id="powershell"),
        pytest.param("dotenv", read_python_dotenv, DOTENV_NASTY, id="dotenv: python-dotenv"),
        pytest.param("dotenv", parse_compose, DOTENV_NASTY, id="dotenv: docker compose"),
        pytest.param("json", json.loads, NASTY, id="json"),
    ],
)
def test_format_reads_back_every_value(fmt: str, parse: Any, values: dict[str, str]) -> None:
    assert parse(outputs.render(values, fmt)) == values
    real = outputs.variables(make_grant("publish"))
    same = parse(Secret(outputs.render(real, fmt))) == real  # Secret: a redacted argument
    assert same, f"{fmt} read other values back"


@pytest.mark.parametrize(
    ("value", "line"),
    [
        pytest.param("https://aws:a%2Fb@h/simple/", "K=https://aws:a%2Fb@h/simple/", id="URL bare"),
        pytest.param("a b", "K='a b'", id="space single-quoted"),
        pytest.param("$HOME", "K='$HOME'", id="dollar single-quoted, never expanded"),
        pytest.param("$(id) `id` $$", "K='$(id) `id` $$'", id="substitutions single-quoted"),
        pytest.param('say "hi" $x', "K='say \"hi\" $x'", id="double quotes and $ single-quoted"),
        pytest.param("#x", "K='#x'", id="hash single-quoted, never a comment"),
        pytest.param("", "K=''", id="empty"),
        pytest.param("it's", 'K="it\'s"', id="quote double-quoted"),
        pytest.param("a\\b", 'K="a\\\\b"', id="backslash escaped"),
        pytest.param("a\\", 'K="a\\\\"', id="trailing backslash escaped"),
        pytest.param("a\nb", 'K="a\\nb"', id="newline escaped"),
        pytest.param("a\r\nB=x", 'K="a\\r\\nB=x"', id="CR LF escaped, no second entry"),
        pytest.param("'\"", 'K="\'\\""', id="both quotes double-quoted"),
        pytest.param("${HOME}", None, id="${ refused: python-dotenv expands it even in '...'"),
        pytest.param("a${", None, id="a bare ${ refused too"),
        pytest.param("it's $HOME", None, id='quote and $ refused: compose expands $ in "..."'),
        pytest.param("a\\$b", None, id="backslash and $ refused"),
        pytest.param("$a\nb", None, id="newline and $ refused"),
        pytest.param("a\0b", None, id="NUL refused"),
        pytest.param("a\ud800b", None, id="lone surrogate refused"),
    ],
)
def test_dotenv_truth_table(value: str, line: str | None) -> None:
    if line is None:
        assert dotenv_refuses(value)
        with pytest.raises(UsageError, match=r"^the value of K cannot be printed as --format"):
            outputs.render({"K": value}, "dotenv")
        return
    assert not dotenv_refuses(value)
    text = outputs.render({"K": value, "Z": "end"}, "dotenv")
    assert text == f"{line}\nZ=end\n"
    assert read_dotenv_both(text) == {"K": value, "Z": "end"}


@fixed(400)
@given(value=ANY_TEXT)
def test_dotenv_property_reads_back_unchanged_or_refuses(value: str) -> None:
    """Any value, through the real python-dotenv and compose's rules: read back identical,
    with no other entry, or refused (exactly the documented cases), never silently changed."""
    values = {"A": value, "Z": "end"}
    if dotenv_refuses(value):
        with pytest.raises(
            UsageError, match=r"^the value of A cannot be printed as --format dotenv"
        ):
            outputs.render(values, "dotenv")
        return
    assert read_dotenv_both(outputs.render(values, "dotenv")) == values


def test_a_refusal_names_the_variable_never_the_value() -> None:
    for fmt, value in [
        ("dotenv", f"${{{CANARY}}}"),
        ("dotenv", f"{CANARY}'$"),
        ("sh", f"{CANARY}\0"),
        ("fish", f"{CANARY}\0"),
        ("powershell", f"{CANARY}\0"),
        ("dotenv", f"{CANARY}\ud800"),
    ]:
        with pytest.raises(UsageError) as caught:
            outputs.render({"FIRST": "ok", "SECRET_VALUE": value}, fmt)
        assert "SECRET_VALUE" in caught.value.message
        assert CANARY not in caught.value.message, fmt
        assert caught.value.exit_code == 2


@pytest.mark.parametrize("fmt", ["sh", "fish", "powershell", "dotenv"])
@pytest.mark.parametrize("value", ["a\0b", "\ud800"], ids=["NUL", "lone surrogate"])
def test_what_no_environment_variable_holds_is_refused(fmt: str, value: str) -> None:
    with pytest.raises(UsageError, match="the value of V cannot be printed"):
        outputs.render({"OK": "1", "V": value}, fmt)


def test_json_carries_every_value() -> None:
    values = {**NASTY, "NUL": "a\0b", "SURROGATE": "\ud800"}
    assert json.loads(outputs.render(values, "json")) == values


@fixed(200)
@given(value=CARRIED_TEXT)
def test_fish_and_powershell_property_any_value_reads_back(value: str) -> None:
    values = {"A": value, "Z": "end"}
    assert parse_fish(outputs.render(values, "fish")) == values
    assert parse_powershell(outputs.render(values, "powershell")) == values


@pytest.mark.parametrize(
    ("fmt", "value", "line"),
    [
        pytest.param("fish", "it's a\\b", "set -gx A 'it\\'s a\\\\b'", id="fish \\' and \\\\"),
        pytest.param("fish", "$(id)\n", "set -gx A '$(id)\n'", id="fish substitutions literal"),
        pytest.param("powershell", "it's", "$env:A = 'it''s'", id="powershell ' doubled"),
        pytest.param(
            "powershell", "\u2019$(id)", "$env:A = '\u2019\u2019$(id)'", id="powershell \u2019"
        ),
    ],
)
def test_fish_and_powershell_quoting(fmt: str, value: str, line: str) -> None:
    assert outputs.render({"A": value}, fmt) == line + "\n"


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


def read_github_file(text: str, *, windows: bool = False) -> list[tuple[str, str]]:
    """The runner's reading of a GITHUB_ENV or GITHUB_OUTPUT file, every entry in order
    (actions/runner src/Runner.Worker/FileCommandManager.cs, EnvFileKeyValuePairs, ported):
    ``NAME=VALUE`` lines and ``NAME<<DELIMITER`` blocks, whichever of ``=`` and ``<<`` comes
    first; a block's value ends before the first line equal to its delimiter. On Windows a
    line ends at CR LF as well as LF."""
    entries: list[tuple[str, str]] = []
    index = 0

    def read_line() -> tuple[str | None, str | None]:
        nonlocal index
        if index >= len(text):
            return None, None
        start, lf = index, text.find("\n", index)
        if lf < 0:
            index = len(text)
            return text[start:], None
        crlf = text.find("\r\n", index)
        if windows and 0 <= crlf < lf:
            index = crlf + 2
            return text[start:crlf], "\r\n"
        index = lf + 1
        return text[start:lf], "\n"

    line, _ = read_line()
    while line is not None:
        if line:
            equals, heredoc = line.find("="), line.find("<<")
            if equals >= 0 and (heredoc < 0 or equals < heredoc):
                key, value = line.split("=", 1)
            else:
                assert heredoc >= 0, "invalid line"
                key, delimiter = line.split("<<", 1)
                assert key, "empty name"
                assert delimiter, "empty delimiter"
                start = end = index
                current, newline = read_line()
                while current != delimiter:
                    assert current is not None, "matching delimiter not found"
                    assert newline is not None, "EOF marker missing new line"
                    end = index - len(newline)
                    current, newline = read_line()
                value = text[start:end] if end > start else ""
            entries.append((key, value))
        line, _ = read_line()
    return entries


def parse_github_env(text: str) -> dict[str, str]:
    return dict(read_github_file(text))


def read_back(path: Path) -> str:
    """The file's text as the runner reads it: bytes decoded, no newline translation."""
    return path.read_bytes().decode("utf-8")


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
    read = parse_github_env(Secret(read_back(env_file)))
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
    text = read_back(env_file)
    assert text == (
        "MULTI<<ghadelimiter_2\nfirst\nEOF\nlast\n\nghadelimiter_2\n"
        "PLAIN<<ghadelimiter_3\nEOF is a word\nghadelimiter_3\n"
    )
    assert parse_github_env(text) == values


def test_github_actions_delimiters_are_random(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    outputs.github_actions({"A": "1", "B": "2"}, env_file, io.StringIO())
    heads = re.findall(r"^[AB]<<(.+)$", read_back(env_file), re.MULTILINE)
    assert len(heads) == len(set(heads)) == 2
    assert all(re.fullmatch(r"ghadelimiter_[0-9a-f]{32}", head) for head in heads)


def test_github_actions_unwritable_env_file_is_a_files_error(tmp_path: Path) -> None:
    with pytest.raises(FilesError, match="GITHUB_ENV"):
        outputs.github_actions({"A": "1"}, tmp_path / "missing" / "env", io.StringIO())


# Values that try to end their entry early and start another (or to rewrite one).
ADVERSARIAL = [
    pytest.param("https://h/simple/\nupload-url=https://evil.example/", id="newline then NAME=x"),
    pytest.param("x\nOTHER<<EOF\ny\nEOF", id="newline then a heredoc"),
    pytest.param("x\r\nOTHER=x", id="CR LF then NAME=x"),
    pytest.param("x\rOTHER=x", id="CR then NAME=x"),
    pytest.param("a\r\rb\r\n", id="CRs inside, LF last"),
    pytest.param("\n\n", id="only newlines"),
    pytest.param("", id="empty"),
    pytest.param("ghadelimiter_", id="the delimiter's prefix"),
]


@pytest.mark.parametrize("value", ADVERSARIAL)
@pytest.mark.parametrize("windows", [False, True], ids=["linux runner", "windows runner"])
def test_github_files_never_let_a_value_add_an_entry(
    value: str, windows: bool, tmp_path: Path
) -> None:
    env_file, output_file = tmp_path / "env", tmp_path / "output"
    outputs.github_actions({"INDEX": value, "LAST": "kept"}, env_file, io.StringIO())
    outputs.github_outputs({"index-url": value, "expires-at": "kept"}, output_file)
    env = read_github_file(read_back(env_file), windows=windows)
    assert env == [("INDEX", value), ("LAST", "kept")]
    output = read_github_file(read_back(output_file), windows=windows)
    assert output == [("index-url", value), ("expires-at", "kept")]


def test_github_outputs_delimiter_never_occurs_in_the_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output_file = tmp_path / "output"
    delimiters = iter(["EOF", "ghadelimiter_9"])
    monkeypatch.setattr(outputs, "_delimiter", lambda: next(delimiters))
    value = "a\nEOF\nindex-url=https://evil.example/"
    outputs.github_outputs({"upload-url": value}, output_file)
    text = read_back(output_file)
    assert text == f"upload-url<<ghadelimiter_9\n{value}\nghadelimiter_9\n"
    assert read_github_file(text) == [("upload-url", value)]


def test_github_outputs_are_the_step_outputs_of_the_action(tmp_path: Path) -> None:
    output_file = tmp_path / "output"
    output_file.write_text("earlier=kept\n")
    grant = make_grant("publish")
    outputs.github_outputs(outputs.step_outputs(grant), output_file)
    assert read_github_file(read_back(output_file)) == [
        ("earlier", "kept"),
        ("index-url", INDEX_URL),
        ("upload-url", UPLOAD_URL),
        ("expires-at", "2030-01-02T03:04:05Z"),
    ]
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert set(outputs.step_outputs(grant)) == set(action["outputs"])


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param("x\r", "carriage return", id="trailing CR: a Windows runner drops it"),
        pytest.param("a\0b", "NUL", id="NUL"),
        pytest.param("\udc80", "surrogate", id="lone surrogate"),
    ],
)
def test_github_files_refuse_what_would_change_and_write_nothing(
    value: str, reason: str, tmp_path: Path
) -> None:
    env_file, output_file = tmp_path / "env", tmp_path / "output"
    with pytest.raises(FilesError, match=f"cannot write B to GITHUB_ENV unchanged: .*{reason}"):
        outputs.github_actions({"A": "1", "B": value}, env_file, io.StringIO())
    assert not env_file.exists(), "nothing is written when one value is refused"
    with pytest.raises(FilesError, match=f"cannot write b to GITHUB_OUTPUT unchanged: .*{reason}"):
        outputs.github_outputs({"a": "1", "b": value}, output_file)
    assert not output_file.exists()


def test_github_outputs_refuse_names_the_runner_would_misread(tmp_path: Path) -> None:
    for name in ["", "a=b", "a<<b", "a\nb", "-x"]:
        with pytest.raises(ValueError, match="not a step output name"):
            outputs.github_outputs({name: "1"}, tmp_path / "output")


@fixed(300)
@given(value=ANY_TEXT, windows=st.booleans())
def test_github_files_property_read_back_or_refuse(value: str, windows: bool) -> None:
    with tempfile.TemporaryDirectory() as directory:
        env_file = Path(directory) / "env"
        values = {"A": value, "Z": "end"}
        if "\0" in value or has_surrogate(value) or value.endswith("\r"):
            with pytest.raises(FilesError, match="cannot write A to GITHUB_ENV unchanged"):
                outputs.github_actions(values, env_file, io.StringIO())
            return
        outputs.github_actions(values, env_file, io.StringIO())
        assert read_github_file(read_back(env_file), windows=windows) == list(values.items())


def test_login_writes_step_outputs_with_the_shared_helper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cabroker.commands import login

    hostile = make_grant(token="fake-token", index_url=f"{INDEX_URL}\nregistry=https://evil/")
    monkeypatch.setattr(login, "grant_for", lambda args: hostile)
    monkeypatch.setenv("GITHUB_ENV", str(tmp_path / "env"))
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "output"))
    args = argparse.Namespace(
        github_env=True, name="codeartifact", pip=False, pypirc=False, netrc=False,
        docker_secret=None,
    )  # fmt: skip
    assert login.run(args) == 0
    capsys.readouterr()
    entries = read_github_file(read_back(tmp_path / "output"))
    assert entries == list(outputs.step_outputs(hostile).items())


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
