"""The client's cost, measured in one run against one devstack:

- import time of the CLI (``python -X importtime -c 'import cabroker.cli'``, and of the keyring
  backend, which pip loads for every host);
- wall time of ``cabroker env`` with a warm cache (the token is cached: no broker call) and
  with a cold one (an ID token file, the broker, AWS calls to the stand-in);
- wall time of ``aws codeartifact login --tool pip`` (the AWS CLI, from .venv-awscli) against
  the same stand-in, the tool people use today.

Each is a fresh process, run N times; median and slowest are printed.
Run: ``.venv/bin/python bench/client_env.py [--runs 10] [--json]``; ``make bench`` runs it
(``--json``) for its one table (``bench/report.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from devstack.demo import ENGINEER_CLAIMS  # noqa: E402 - after the path set-up
from devstack.stack import Devstack, Options  # noqa: E402
from devstack.tools import Devstack as Running  # noqa: E402

BIN = Path(sys.executable).parent
AWS = ROOT / ".venv-awscli" / "bin" / "aws"
MODULES = ("cabroker.cli", "cabroker.keyring_backend")


def timed(
    command: list[str], env: dict[str, str], before: Callable[[], None] | None = None
) -> float:
    if before:
        before()
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{Path(command[0]).name} failed: {done.stderr.decode()[-500:]}")
    return elapsed * 1000


def import_ms(module: str, runs: int) -> float:
    """Median self+cumulative import time of ``module`` from -X importtime (microseconds → ms)."""
    totals = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            capture_output=True,
            text=True,
            check=True,
        )
        line = [ln for ln in done.stderr.splitlines() if ln.rstrip().endswith(f"| {module}")][-1]
        totals.append(int(line.split("|")[1]) / 1000)
    return statistics.median(totals)


def stats(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "slowest": max(samples)}


def summary(figures: dict[str, float]) -> str:
    return f"median {figures['median']:7.1f} ms   slowest {figures['slowest']:7.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    figures: dict[str, Any] = {
        "runs": args.runs,
        "import_ms": {m: import_ms(m, args.runs) for m in MODULES},
    }
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        options = Options(
            state_file=work / "state.json",
            work_dir=work,
            broker_log=work / "broker.log",
            watch_rules=False,
            throttle=False,
        )
        stack = Devstack(options)
        try:
            state = stack.start()
            running = Running(state)
            jwt = work / "alice.jwt"
            jwt.write_text(
                running.id_token("corp", {**ENGINEER_CLAIMS, "exp": int(time.time()) + 3600})
            )
            home = work / "home"
            env = {
                "PATH": os.environ["PATH"],
                "HOME": str(home),
                "XDG_CACHE_HOME": str(home / ".cache"),
                "XDG_CONFIG_HOME": str(home / ".config"),
                "XDG_STATE_HOME": str(home / ".state"),
                "CABROKER_TOKEN_STORE": "file",
                "CABROKER_URL": state["broker_url"],
                "CABROKER_AUDIENCE": state["issuers"]["corp"]["audience"],
            }
            command = [
                str(BIN / "cabroker"),
                "env",
                "--id-token-file",
                str(jwt),
                "--access",
                "read",
            ]
            cache = home / ".cache" / "cabroker"

            serial = iter(range(1_000_000))

            def forget() -> None:
                """Empty the client's cache and use a new subject, so the broker mints too."""
                for path in cache.glob("*"):
                    path.unlink()
                claims = {**ENGINEER_CLAIMS, "sub": f"alice-{next(serial)}"}
                jwt.write_text(running.id_token("corp", {**claims, "exp": int(time.time()) + 3600}))

            figures["env_cold_ms"] = stats([timed(command, env, forget) for _ in range(args.runs)])
            figures["env_warm_ms"] = stats([timed(command, env) for _ in range(args.runs)])
            figures["aws_login_ms"] = None  # skipped: no AWS CLI (make venv-awscli)
            if AWS.exists():
                aws_env = {
                    **env,
                    "AWS_ACCESS_KEY_ID": "devstack-admin",
                    "AWS_SECRET_ACCESS_KEY": "devstack-admin",
                    "AWS_DEFAULT_REGION": state["region"],
                    "AWS_CONFIG_FILE": os.devnull,
                    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                }
                login = [
                    str(AWS), "codeartifact", "login", "--tool", "pip",
                    "--domain", state["domain"], "--domain-owner", state["domain_owner"],
                    "--repository", state["repositories"]["private"],
                    "--endpoint-url", state["aws_endpoint_url"],
                ]  # fmt: skip
                figures["aws_login_ms"] = stats([timed(login, aws_env) for _ in range(args.runs)])
        finally:
            stack.stop()
    if args.json:
        print(json.dumps(figures))
        return 0
    rows = [(f"import {m}", f"{ms:.1f} ms") for m, ms in figures["import_ms"].items()]
    rows.append(("cabroker env, cold (new subject: broker mints)", summary(figures["env_cold_ms"])))
    rows.append(("cabroker env, warm cache", summary(figures["env_warm_ms"])))
    login_ms = figures["aws_login_ms"]
    rows.append(
        (
            "aws codeartifact login --tool pip",
            summary(login_ms) if login_ms else "skipped: make venv-awscli",
        )
    )
    width = max(len(name) for name, _ in rows)
    print(f"client: {args.runs} fresh processes each")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
