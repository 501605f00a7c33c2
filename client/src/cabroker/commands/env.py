"""``cabroker env``: print shell exports that point pip, uv, twine and poetry at the repository.

Nothing is written: ``eval "$(cabroker env)"`` configures the current shell only.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys

from .common import broker_option, grant_for, grant_options, identity_options, plain

FORMATS = ("sh", "fish", "powershell", "dotenv", "json")
TOOLS = {"pip": "PIP_", "uv": "UV_", "twine": "TWINE_", "poetry": "POETRY_"}


def installed_tools() -> list[str]:
    """The tools on this machine: pip always (it reads its variables even when absent)."""
    found = ["pip"]
    for tool in ("uv", "twine", "poetry"):
        if shutil.which(tool) or importlib.util.find_spec(tool) is not None:
            found.append(tool)
    return found


def select(variables: dict[str, str], tools: list[str]) -> dict[str, str]:
    prefixes = tuple(TOOLS[tool] for tool in tools)
    return {
        k: v for k, v in variables.items() if k.startswith(prefixes) or k.startswith("CABROKER_")
    }


def add(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "env",
        help="print shell exports for pip, uv, twine and poetry",
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    broker_option(parser)
    grant_options(parser)
    identity_options(parser)
    parser.add_argument("--format", choices=FORMATS, default="sh", help="output syntax (sh)")
    parser.add_argument(
        "--tools",
        metavar="LIST",
        help="comma-separated subset of pip,uv,twine,poetry (default: the installed ones)",
    )
    parser.add_argument(
        "--name", default="codeartifact", help="the index name in uv/poetry variables"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .. import outputs

    tools = args.tools.split(",") if args.tools else installed_tools()
    unknown = sorted(set(tools) - set(TOOLS))
    if unknown:
        from ..errors import UsageError

        raise UsageError(f"unknown tool(s) {', '.join(unknown)}: choose from {', '.join(TOOLS)}")
    grant = grant_for(args)
    variables = select(outputs.variables(grant, args.name), tools)
    sys.stdout.write(outputs.render(variables, args.format))
    return 0
