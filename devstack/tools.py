"""Driving the devstack as its users do: HTTP calls to the broker, and the real pip, twine and
uv in subprocesses.  Shared by ``make demo`` (:mod:`devstack.demo`) and the end-to-end tests.

Tokens never reach a terminal or a test report from here: every captured output goes through
:func:`redact`, and :class:`Secret` keeps tokens out of reprs.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import venv
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

TOOL_TIMEOUT = 120
BIN = Path(sys.executable).parent


class Secret(str):
    """A token: its repr is redacted, so a failing assertion never prints it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<secret: {len(self)} characters>"


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` without the given secrets (and without terminal colour codes)."""
    text = ANSI.sub("", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "****")
    return text


def http_json(
    method: str,
    url: str,
    body: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, JSON body, headers) of one request; HTTP errors are answers too."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - local URLs
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"{}"), dict(response.headers)
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            payload = {"raw": raw.decode(errors="replace")}
        return error.code, payload, dict(error.headers)


def probe(url: str, token: str) -> int:
    """The status an index answers for ``url`` with ``aws:<token>`` (what the tools saw)."""
    credentials = base64.b64encode(f"aws:{token}".encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {credentials}"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


@dataclass
class Devstack:
    """The running devstack, as its state file describes it."""

    state: dict[str, Any]

    @classmethod
    def from_file(cls, path: Path) -> Devstack:
        return cls(json.loads(path.read_text(encoding="utf-8")))

    def id_token(self, issuer: str, claims: Mapping[str, Any]) -> Secret:
        status, body, _ = http_json("POST", self.state["issuers"][issuer]["mint_url"], claims)
        if status != 200:
            raise RuntimeError(f"minting at {issuer} failed: {status} {body}")
        return Secret(body["id_token"])

    def broker(
        self, method: str, path: str, id_token: str, body: Mapping[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        status, payload, _ = http_json(
            method,
            self.state["broker_url"] + path,
            body,
            {"Authorization": f"Bearer {id_token}"},
        )
        if "token" in payload:
            payload["token"] = Secret(payload["token"])
        return status, payload

    def repository_url(self, repository: str) -> str:
        return f"{self.state['aws_endpoint_url']}/pypi/{repository}/"


def with_credentials(url: str, token: str) -> str:
    """``url`` with ``aws:<token>`` in it, as pip takes an index URL with credentials."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"aws:{token}@{parts.netloc}"))


@dataclass
class Result:
    """A finished tool run; ``output`` is stdout and stderr, redacted."""

    command: str
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def last_lines(self, count: int = 3) -> str:
        lines = [line for line in self.output.splitlines() if line.strip()]
        return "\n".join(lines[-count:])


@dataclass
class Tools:
    """The real pip (in its own venv), twine and uv, isolated from the user's configuration."""

    work: Path
    secrets: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.home = self.work / "home"
        self.home.mkdir(parents=True, exist_ok=True)

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        keep = ("PATH", "LANG", "LC_ALL", "SYSTEMROOT", "TMPDIR")
        env = {k: v for k, v in os.environ.items() if k in keep}
        env.update(
            {
                "HOME": str(self.home),
                "XDG_CONFIG_HOME": str(self.home / ".config"),
                "XDG_CACHE_HOME": str(self.home / ".cache"),
                "PIP_CONFIG_FILE": os.devnull,
                "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                "PIP_NO_INPUT": "1",
                "PIP_NO_CACHE_DIR": "1",
                "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
                "TWINE_NON_INTERACTIVE": "1",
                "UV_NO_CONFIG": "1",
                "UV_NO_CACHE": "1",
                "UV_KEYRING_PROVIDER": "disabled",
                "UV_PYTHON_DOWNLOADS": "never",
                "NO_COLOR": "1",
            }
        )
        env.update(extra or {})
        return env

    def run(self, command: Sequence[str], env: Mapping[str, str] | None = None) -> Result:
        completed = subprocess.run(  # noqa: S603 - our own tools, no shell
            list(command),
            capture_output=True,
            text=True,
            env=self.environment(env),
            timeout=TOOL_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        output = redact(completed.stdout + completed.stderr, self.secrets)
        shown = redact(
            " ".join(Path(command[0]).name if i == 0 else c for i, c in enumerate(command)),
            self.secrets,
        )
        return Result(shown, completed.returncode, output)

    def venv(self, name: str) -> Path:
        """A fresh virtualenv with pip (from the standard library's ensurepip, offline)."""
        path = self.work / name
        if path.exists():
            shutil.rmtree(path)
        venv.EnvBuilder(with_pip=True, clear=True).create(path)
        return path / "bin" / "python"

    def uv_venv(self, name: str) -> Path:
        """A fresh, empty virtualenv made by uv (fast; no pip in it)."""
        path = self.work / name
        result = self.run(
            [str(BIN / "uv"), "venv", "--quiet", "--python", sys.executable, str(path)]
        )
        if not result.ok:
            raise RuntimeError(f"uv venv failed: {result.last_lines()}")
        return path / "bin" / "python"

    def pip_install(self, python: Path, index_url: str, token: str, *requirements: str) -> Result:
        self.secrets.append(token)
        return self.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--index-url",
                with_credentials(index_url, token),
                *requirements,
            ]
        )

    def uv_pip_install(
        self, python: Path, index_url: str, token: str, *requirements: str
    ) -> Result:
        self.secrets.append(token)
        return self.run(
            [
                str(BIN / "uv"),
                "pip",
                "install",
                "--python",
                str(python),
                "--index-url",
                with_credentials(index_url, token),
                *requirements,
            ]
        )

    def twine_upload(self, upload_url: str, token: str, *files: Path) -> Result:
        self.secrets.append(token)
        return self.run(
            [
                str(BIN / "twine"),
                "--no-color",
                "upload",
                "--disable-progress-bar",
                "--repository-url",
                upload_url,
                *map(str, files),
            ],
            env={"TWINE_USERNAME": "aws", "TWINE_PASSWORD": token},
        )

    def uv_publish(self, upload_url: str, token: str, *files: Path) -> Result:
        self.secrets.append(token)
        return self.run(
            [str(BIN / "uv"), "publish", "--publish-url", upload_url, *map(str, files)],
            env={"UV_PUBLISH_USERNAME": "aws", "UV_PUBLISH_PASSWORD": token},
        )

    def pip_download(self, python: Path, index_url: str, token: str, *requirements: str) -> Result:
        """pip fetching (never "already installed"), for checks that must reach the index."""
        self.secrets.append(token)
        return self.run(
            [
                str(python),
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--dest",
                str(self.work / "dl"),
                "--index-url",
                with_credentials(index_url, token),
                *requirements,
            ]
        )

    def python(self, python: Path, code: str) -> Result:
        return self.run([str(python), "-c", code])
