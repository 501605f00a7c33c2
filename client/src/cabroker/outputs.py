"""What the client prints: environment variables for pip, uv, twine and poetry.

Nothing here writes a file except :func:`github_actions` and :func:`github_outputs`, which
append to ``$GITHUB_ENV`` and ``$GITHUB_OUTPUT``.

- :func:`variables` is the one list of names and values, in a stable order. The private index is
  always the *default* index (``PIP_INDEX_URL``, uv's named ``UV_DEFAULT_INDEX``), never an
  extra one: with an extra index pip and uv would also ask PyPI for internal names.
- :func:`render` prints them for a shell (``sh``, ``fish``, ``powershell``), a ``dotenv`` file
  or ``json``; every format reads back to exactly the same values, or nothing is printed and
  a :class:`~cabroker.errors.UsageError` names the variable that format cannot carry.
- :func:`github_actions` masks the secret values in the job log, then appends the variables to
  the ``GITHUB_ENV`` file; :func:`github_outputs` appends the step outputs to ``GITHUB_OUTPUT``.
  Both files are written by one helper, in the multiline-safe ``NAME<<DELIMITER`` form.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO
from urllib.parse import quote, urlsplit, urlunsplit

from .broker import Grant
from .errors import FilesError, UsageError
from .secret import Secret

DEFAULT_NAME = "codeartifact"
FORMATS = ("sh", "fish", "powershell", "dotenv", "json")

# uv's rule for index names (its own error otherwise): ASCII letters, digits, ``-``, ``_``, ``.``.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# dotenv values written bare: what no dotenv reader splits, quotes, expands or comments out.
_DOTENV_BARE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
# PowerShell ends a single-quoted string at any of these, and doubles each to escape it.
_POWERSHELL_QUOTES = "'\u2018\u2019\u201a\u201b"


def check_name(name: str) -> str:
    """``name`` when it can name an index for uv, poetry and ``.pypirc``; else UsageError."""
    if not _NAME.fullmatch(name):
        raise UsageError(
            f"the index name {name!r} is not usable: use letters, digits, '-', '_' or '.' "
            "(for example 'codeartifact')"
        )
    return name


def env_name(name: str) -> str:
    """The form of an index name inside a variable name: ``my-index`` → ``MY_INDEX``.

    uv and poetry both upper-case the name and turn every other character into ``_``.
    """
    return re.sub(r"[^A-Z0-9]", "_", check_name(name).upper())


def index_url_with_credentials(grant: Grant) -> Secret:
    """The index URL with ``aws:<token>@`` in it, both percent-encoded (pip unquotes them)."""
    parts = urlsplit(grant.index_url)
    host = parts.netloc.rpartition("@")[2]
    userinfo = f"{quote(grant.username, safe='')}:{quote(grant.token, safe='')}"
    return Secret(urlunsplit(parts._replace(netloc=f"{userinfo}@{host}")))


def expires_at(grant: Grant) -> str:
    """The token's expiry as RFC 3339 UTC (``2026-01-02T03:04:05Z``)."""
    return grant.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")


def variables(grant: Grant, name: str = DEFAULT_NAME) -> dict[str, str]:
    """The environment that points pip, uv, twine and poetry at the grant's repository.

    Values carrying the token are :class:`Secret` (redacted repr). Publish grants add the
    upload variables. ``PIP_EXTRA_INDEX_URL`` is never set.
    """
    upper = env_name(name)
    token = Secret(grant.token)
    user = grant.username
    found: dict[str, str] = {
        "PIP_INDEX_URL": index_url_with_credentials(grant),
        "UV_DEFAULT_INDEX": f"{name}={grant.index_url}",
        f"UV_INDEX_{upper}_USERNAME": user,
        f"UV_INDEX_{upper}_PASSWORD": token,
        f"POETRY_HTTP_BASIC_{upper}_USERNAME": user,
        f"POETRY_HTTP_BASIC_{upper}_PASSWORD": token,
    }
    if grant.access == "publish":
        found.update(
            {
                "TWINE_REPOSITORY_URL": grant.upload_url,
                "TWINE_USERNAME": user,
                "TWINE_PASSWORD": token,
                "UV_PUBLISH_URL": grant.upload_url,
                "UV_PUBLISH_USERNAME": user,
                "UV_PUBLISH_PASSWORD": token,
                f"POETRY_REPOSITORIES_{upper}_URL": grant.upload_url,
            }
        )
    found["CABROKER_TOKEN_EXPIRES_AT"] = expires_at(grant)
    return found


def secret_values(variables: Mapping[str, str]) -> list[str]:
    """The values to hide: every ``*_PASSWORD`` and every value that contains one of them
    (raw or percent-encoded, as in ``PIP_INDEX_URL``), first seen first."""
    passwords = [v for k, v in variables.items() if k.endswith("_PASSWORD") and v]
    forms = {form for p in passwords for form in (p, quote(p, safe=""))}
    found: list[str] = []
    for value in [*passwords, *variables.values()]:
        if value and value not in found and any(form in value for form in forms):
            found.append(value)
    return found


# --- rendering --------------------------------------------------------------------------------


def _unwritable(value: str) -> str | None:
    """Why no environment variable can hold ``value`` (so no format may print it), or None.

    NUL ends a C string (``execve``): a shell would cut or drop it. A lone surrogate is not
    text at all: it has no UTF-8 form, and printing it would write mangled bytes.
    """
    if "\0" in value:
        return "it contains a NUL character, which no environment variable can hold"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "it is not valid Unicode text (a lone surrogate)"
    return None


def _refused(key: str, fmt: str, reason: str) -> UsageError:
    """The error for a value ``fmt`` cannot carry: it names the variable, never the value."""
    other = "sh or json" if fmt == "dotenv" else "json"
    return UsageError(
        f"the value of {key} cannot be printed as --format {fmt} so that it reads back "
        f"unchanged ({reason}); use --format {other}"
    )


def _sh(value: str) -> str:
    # Inside POSIX single quotes every character is literal, newlines included; a ' ends them.
    return "'" + value.replace("'", "'\\''") + "'"


def _fish(value: str) -> str:
    # Inside fish's single quotes only \\ and \' are escapes; newlines are literal.
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _powershell(value: str) -> str:
    for quote_char in _POWERSHELL_QUOTES:
        value = value.replace(quote_char, quote_char * 2)
    return "'" + value + "'"


def _dotenv(key: str, value: str) -> str:
    """``value`` as python-dotenv 1.x and docker compose (v2, compose-go) both read it back.

    What the two readers do (python-dotenv's ``parser.py``/``variables.py``, compose-go's
    ``dotenv/parser.go``):

    - python-dotenv expands ``${NAME}`` and ``${NAME:-default}`` in *every* value, quoted with
      ``'`` or ``"`` or bare, and has no escape for it; in single quotes it also reads ``\\\\``
      and ``\\'`` as escapes; in double quotes ``\\\\ \\' \\" \\a \\b \\f \\n \\r \\t \\v``.
    - compose expands ``$NAME``, ``${...}`` and ``$$`` in bare and double-quoted values but
      never in single quotes; single quotes are literal except ``\\'``; double quotes read
      ``\\\\ \\" \\n \\r`` (and more) as escapes; a bare value ends at a line break or `` #``.

    So: bare when only ``[A-Za-z0-9_@%+=:,./-]``; else single quotes when the value has no
    ``'``, ``\\`` or line break; else double quotes with ``\\\\ \\" \\n \\r`` when it has no ``$``.
    Refused (UsageError): ``${`` anywhere, or ``$`` together with ``'``, ``\\`` or a line break.
    """
    if "${" in value:
        raise _refused(key, "dotenv", "python-dotenv expands '${' in any quoting")
    if _DOTENV_BARE.fullmatch(value):
        return value
    if not any(c in value for c in "'\\\n\r"):
        return "'" + value + "'"
    if "$" in value:
        raise _refused(
            key,
            "dotenv",
            "it has '$' and also a quote, backslash or line break, which only double quotes "
            "can hold, where docker compose expands '$'",
        )
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r") + '"'


def render(variables: Mapping[str, str], fmt: str) -> str:
    """``variables`` as ``fmt`` (one of :data:`FORMATS`), one assignment a line.

    Every value reads back unchanged by what reads the format (sh, fish, PowerShell,
    python-dotenv and docker compose, any JSON parser), or the whole output is refused with a
    :class:`UsageError` that names the variable (never its value) and nothing is printed.
    """
    for key in variables:
        if not _VARIABLE.fullmatch(key):
            raise ValueError(f"{key!r} is not an environment variable name")
    if fmt == "json":
        return json.dumps(dict(variables), indent=2) + "\n"
    if fmt not in FORMATS:
        raise UsageError(f"unknown output format {fmt!r}: choose from {', '.join(FORMATS)}")
    for key, value in variables.items():
        reason = _unwritable(value)
        if reason is not None:
            raise _refused(key, fmt, reason)
    lines: list[str]
    if fmt == "sh":
        lines = [f"export {k}={_sh(v)}" for k, v in variables.items()]
    elif fmt == "fish":
        lines = [f"set -gx {k} {_fish(v)}" for k, v in variables.items()]
    elif fmt == "powershell":
        lines = [f"$env:{k} = {_powershell(v)}" for k, v in variables.items()]
    else:
        lines = [f"{k}={_dotenv(k, v)}" for k, v in variables.items()]
    return "".join(line + "\n" for line in lines)


# --- GitHub Actions ---------------------------------------------------------------------------

# A step output's name (what ``steps.<id>.outputs.<name>`` can address).
_OUTPUT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def _command_data(value: str) -> str:
    """A workflow command's data escaped as the runner unescapes it (actions/toolkit)."""
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _delimiter() -> str:
    import secrets  # deferred: only GitHub Actions needs it, and cabroker env is hot

    return f"ghadelimiter_{secrets.token_hex(16)}"


def _append_github_file(path: Path, entries: Mapping[str, str], what: str) -> None:
    """Append ``entries`` to the runner's file-command file ``path`` (``what`` is
    ``GITHUB_ENV`` or ``GITHUB_OUTPUT``), each as ``NAME<<DELIMITER``, the value, ``DELIMITER``.

    The runner reads a value up to the first line equal to its delimiter, so each delimiter is
    random and checked to occur in neither the name nor the value: no value, whatever lines it
    holds, can end its block early and start another entry. Every entry is checked before
    anything is written, and the file is appended as bytes (no newline translation on Windows).
    A value that ends with a carriage return is refused: a Windows runner reads CR LF as one
    line break and would drop it.
    """
    blocks = []
    for name, value in entries.items():
        reason = _unwritable(value)
        if reason is None and value.endswith("\r"):
            reason = "it ends with a carriage return, which a Windows runner would drop"
        if reason is not None:
            raise FilesError(f"cannot write {name} to {what} unchanged: {reason}")
        delimiter = _delimiter()
        while delimiter in value or delimiter in name:
            delimiter = _delimiter()
        blocks.append(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
    try:
        with path.open("ab") as handle:
            handle.write("".join(blocks).encode("utf-8"))
    except OSError as error:
        raise FilesError(
            f"cannot append to the {what} file {path} ({error.strerror}): "
            "run this inside a GitHub Actions step, or use --format sh"
        ) from None


def github_actions(variables: Mapping[str, str], env_file: Path, out: TextIO) -> None:
    """Mask the secret values (``::add-mask::`` on ``out``), then append every variable to
    ``env_file`` (``$GITHUB_ENV``) as ``NAME<<DELIMITER``/value/``DELIMITER``.

    The masks are printed and flushed before the file is touched, so no later step can print
    a value unmasked. Each delimiter is random and occurs in neither the name nor the value.
    """
    for key in variables:
        if not _VARIABLE.fullmatch(key):
            raise ValueError(f"{key!r} is not an environment variable name")
    for value in secret_values(variables):
        for line in dict.fromkeys([value, *value.splitlines()]):
            if line.strip():
                out.write(f"::add-mask::{_command_data(line)}\n")
    out.flush()
    _append_github_file(env_file, variables, "GITHUB_ENV")


def step_outputs(grant: Grant) -> dict[str, str]:
    """The GitHub Action's step outputs (action.yml ``outputs``): no secret among them."""
    return {
        "index-url": grant.index_url,
        "upload-url": grant.upload_url,
        "expires-at": expires_at(grant),
    }


def github_outputs(values: Mapping[str, str], output_file: Path) -> None:
    """Append step outputs to ``output_file`` (``$GITHUB_OUTPUT``) in the same
    ``NAME<<DELIMITER`` form as :func:`github_actions`: a value cannot add or change another
    output. Nothing is masked: outputs must hold no secret (:func:`step_outputs`)."""
    for name in values:
        if not _OUTPUT_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a step output name")
    _append_github_file(output_file, values, "GITHUB_OUTPUT")
