"""``cabroker login``: get a token (or reuse the cached one) and configure the tools you pick.

By default the token is cached (keyring, or a 0600 file in your cache directory) and nothing
else is written; in GitHub Actions the job's environment is configured (masked, GITHUB_ENV).
Opt in to files: --pip (user pip config), --pypirc, --netrc, --docker-secret PATH. They are
never written inside a git work tree, a Python project or a container build context (nor
through a symbolic link, nor in a directory others can write); --allow-project-dir lifts the
first rule only. The keyring backend (pip install 'cabroker[keyring]') serves the cached
token to pip, twine and uv with no token in any file. 'cabroker logout' undoes exactly what
login wrote.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..broker import Grant
from .common import (
    broker_option,
    describe,
    grant_for,
    grant_options,
    identity_options,
    plain,
)


def add(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "login",
        help="get a token and configure pip, uv, twine, poetry",
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    broker_option(parser)
    grant_options(parser)
    identity_options(parser)
    outputs = parser.add_argument_group("what to configure (opt-in; logout undoes it)")
    outputs.add_argument("--pip", action="store_true", help="the user-level pip config")
    outputs.add_argument("--pypirc", action="store_true", help="~/.pypirc (twine)")
    outputs.add_argument("--netrc", action="store_true", help="~/.netrc (pip, uv, poetry)")
    outputs.add_argument(
        "--docker-secret", type=Path, metavar="PATH", help="a netrc file for docker build --secret"
    )
    outputs.add_argument(
        "--github-env",
        action="store_true",
        help="append masked variables to $GITHUB_ENV (the default in GitHub Actions)",
    )
    outputs.add_argument("--name", default="codeartifact", help="index/repository name to use")
    outputs.add_argument(
        "--allow-project-dir",
        action="store_true",
        help="write the files even inside a git work tree, a Python project or a container "
        "build context (refused by default: a token there can be committed, packaged or "
        "copied into an image); links and directories others can write stay refused",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .. import outputs

    grant = grant_for(args)
    done = [f"token: {describe(grant)}"]
    in_actions = bool(os.environ.get("GITHUB_ACTIONS") and os.environ.get("GITHUB_ENV"))
    if args.github_env or in_actions:
        if not os.environ.get("GITHUB_ENV"):
            from ..errors import UsageError

            raise UsageError("--github-env needs $GITHUB_ENV (it is set in GitHub Actions)")
        variables = outputs.variables(grant, args.name)
        outputs.github_actions(variables, Path(os.environ["GITHUB_ENV"]), sys.stdout)
        _github_outputs(grant)
        done.append("GitHub Actions: pip, uv, twine and poetry variables set for later steps")
    done += _write_files(args, grant)
    for line in done:
        print(line)
    if len(done) == 1:
        print(
            'configure your shell with: eval "$(cabroker env)"  '
            "(or re-run with --pip / --pypirc / --netrc, or use the keyring backend)"
        )
    return 0


def _github_outputs(grant: object) -> None:
    """The action's step outputs, in the same injection-proof form as ``GITHUB_ENV``."""
    from .. import outputs

    path = os.environ.get("GITHUB_OUTPUT")
    if not path or not isinstance(grant, Grant):
        return
    outputs.github_outputs(outputs.step_outputs(grant), Path(path))


def _write_files(args: argparse.Namespace, grant: object) -> list[str]:
    from ..config import state_dir
    from ..targets import write_outputs

    if not isinstance(grant, Grant):
        return []
    targets = {
        "pip": args.pip,
        "pypirc": args.pypirc,
        "netrc": args.netrc,
        "docker-secret": args.docker_secret,
    }
    chosen = {name: value for name, value in targets.items() if value}
    if not chosen:
        return []
    written = write_outputs(
        grant,
        chosen,
        name=args.name,
        ledger=state_dir() / "ledger.json",
        allow_project_dir=args.allow_project_dir,
    )
    return [f"wrote {path}" for path in written]
