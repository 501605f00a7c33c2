"""The ``samconfig.toml`` environments, as the devstack deploys them (``DEVSTACK_ENV=NAME``).

``sam deploy --config-env NAME`` deploys ``template.yaml`` with the parameter overrides of
``[NAME.deploy.parameters]``; the devstack deploys the same template with the same overrides,
so every environment an admin deploys is one the devstack has run. ``parameter_overrides`` is
read in the forms SAM CLI accepts and this repository uses: one string of ``Key=Value`` pairs
separated by spaces (values may be quoted), or a list of such strings
(tests/devstack/test_environments.py checks that SAM CLI reads each environment the same way).
"""

from __future__ import annotations

import shlex
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMCONFIG = ROOT / "samconfig.toml"
DEFAULT = "default"


class SamconfigError(ValueError):
    """The environment is not in samconfig.toml, or its overrides cannot be read."""


def names(path: Path = SAMCONFIG) -> list[str]:
    """The environments that deploy (have ``[NAME.deploy.parameters]``), in file order."""
    config = _load(path)
    return [name for name, table in config.items() if isinstance(table, dict) and "deploy" in table]


def parameter_overrides(name: str, path: Path = SAMCONFIG) -> dict[str, str]:
    """``[name.deploy.parameters].parameter_overrides`` as template parameter values."""
    config = _load(path)
    known = names(path)
    if name not in known:
        raise SamconfigError(
            f"DEVSTACK_ENV={name!r} is not an environment of {path.name} "
            f"(its environments: {', '.join(known)})"
        )
    raw: Any = config[name]["deploy"].get("parameters", {}).get("parameter_overrides", [])
    items = raw if isinstance(raw, list) else [raw]
    overrides: dict[str, str] = {}
    for item in items:
        if not isinstance(item, str):
            raise SamconfigError(f"{path.name} [{name}]: parameter_overrides holds {item!r}")
        for pair in shlex.split(item):
            key, equals, value = pair.partition("=")
            if not equals or not key:
                raise SamconfigError(
                    f"{path.name} [{name}]: {pair!r} in parameter_overrides is not Key=Value"
                )
            overrides[key] = value
    return overrides


def _load(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise SamconfigError(f"cannot read {path}: {error}") from None
