"""What the client prints: environment variables for pip, uv, twine and poetry.

Nothing here writes a file except :func:`github_actions`, which appends to ``$GITHUB_ENV``.

- :func:`variables` is the one list of names and values, in a stable order. The private index is
  always the *default* index (``PIP_INDEX_URL``, uv's named ``UV_DEFAULT_INDEX``), never an
  extra one: with an extra index pip and uv would also ask PyPI for internal names.
- :func:`render` prints them for a shell (``sh``, ``fish``, ``powershell``), a ``dotenv`` file
  or ``json``; every format reads back to exactly the same values.
- :func:`github_actions` masks the secret values in the job log, then appends the variables to
  the ``GITHUB_ENV`` file in the multiline-safe ``NAME<<DELIMITER`` form.
"""

from __future__ import annotations

import json
import re
import secrets
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


def _sh(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def _fish(value: str) -> str:
    # Inside fish's single quotes only \\ and \' are escapes.
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _powershell(value: str) -> str:
    for quote_char in _POWERSHELL_QUOTES:
        value = value.replace(quote_char, quote_char * 2)
    return "'" + value + "'"


def _dotenv(value: str) -> str:
    """Bare when safe; single quotes (literal in docker compose and python-dotenv) when the
    value has no ``'``, ``\\`` or line break; else double quotes with ``\\\\ \\" \\n \\r``."""
    if _DOTENV_BARE.fullmatch(value):
        return value
    if not any(c in value for c in "'\\\n\r"):
        return "'" + value + "'"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r") + '"'


def render(variables: Mapping[str, str], fmt: str) -> str:
    """``variables`` as ``fmt`` (one of :data:`FORMATS`), one assignment a line."""
    for key in variables:
        if not _VARIABLE.fullmatch(key):
            raise ValueError(f"{key!r} is not an environment variable name")
    if fmt == "json":
        return json.dumps(dict(variables), indent=2) + "\n"
    lines: list[str]
    if fmt == "sh":
        lines = [f"export {k}={_sh(v)}" for k, v in variables.items()]
    elif fmt == "fish":
        lines = [f"set -gx {k} {_fish(v)}" for k, v in variables.items()]
    elif fmt == "powershell":
        lines = [f"$env:{k} = {_powershell(v)}" for k, v in variables.items()]
    elif fmt == "dotenv":
        lines = [f"{k}={_dotenv(v)}" for k, v in variables.items()]
    else:
        raise UsageError(f"unknown output format {fmt!r}: choose from {', '.join(FORMATS)}")
    return "".join(line + "\n" for line in lines)


# --- GitHub Actions ---------------------------------------------------------------------------


def _command_data(value: str) -> str:
    """A workflow command's data escaped as the runner unescapes it (actions/toolkit)."""
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _delimiter() -> str:
    return f"ghadelimiter_{secrets.token_hex(16)}"


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
    blocks = []
    for key, value in variables.items():
        delimiter = _delimiter()
        while delimiter in value or delimiter in key:
            delimiter = _delimiter()
        blocks.append(f"{key}<<{delimiter}\n{value}\n{delimiter}\n")
    try:
        with env_file.open("a", encoding="utf-8") as handle:
            handle.write("".join(blocks))
    except OSError as error:
        raise FilesError(
            f"cannot append to the GITHUB_ENV file {env_file} ({error.strerror}): "
            "run this inside a GitHub Actions step, or use --format sh"
        ) from None
