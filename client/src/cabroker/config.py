"""Where the broker is, and where the client keeps its files.

The broker URL comes from, in order: ``--broker-url``, ``CABROKER_URL``, the user config file
(``broker_url = "https://…"`` in ``config.toml``, written by ``cabroker configure``).
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path

from .errors import UsageError


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
    path = config_file(env)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise UsageError(f"cannot read {path}: {error}; fix or delete it") from None


def broker_url(flag: str | None, env: Mapping[str, str] = os.environ) -> str:
    url = flag or env.get("CABROKER_URL") or read_config(env).get("broker_url")
    if not url or not isinstance(url, str):
        raise UsageError(
            "no broker URL: pass --broker-url URL, set CABROKER_URL, "
            "or save it once with 'cabroker configure URL'"
        )
    return url.rstrip("/")


def save_broker_url(url: str, env: Mapping[str, str] = os.environ) -> Path:
    """Write ``broker_url`` into the user config file (keeping nothing else: it holds only that)."""
    if not url.startswith(("https://", "http://")):
        raise UsageError(f"{url!r} is not a broker URL (https://…)")
    path = config_file(env)
    path.parent.mkdir(parents=True, exist_ok=True)
    escaped = url.replace("\\", "\\\\").replace('"', '\\"')
    path.write_text(f'broker_url = "{escaped}"\n', encoding="utf-8")
    return path
