"""``python -m devstack run|demo``: the whole product on this machine (``make run``, ``make demo``).

run   start everything in the foreground, write the state file, print commands to try;
      Ctrl-C or SIGTERM stops it cleanly and removes the state file.
demo  start everything, tell the product's story with the real pip, twine and uv, stop.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from devstack.claimsets import AWS_ACCOUNT, AWS_ROLE, aws_claims
from devstack.demo import ACME_LIB_VERSIONS, publish_acme_lib
from devstack.gateway import stop_resource_tracker
from devstack.stack import SHADOW_RULES_FILE, Devstack, Options
from devstack.terminal import own_foreground
from devstack.tools import BIN, Tools
from devstack.tools import Devstack as Running


def _options(args: argparse.Namespace, **overrides: Any) -> Options:
    options = Options(port_base=args.port_base, instances=args.instances)
    for key, value in overrides.items():
        setattr(options, key, value)
    return options


def instructions(state: dict[str, Any], broker_log: Path | None = None) -> str:
    """Copy-paste commands for the running devstack (POSIX shell, python3 for JSON)."""
    github = state["issuers"]["github"]["mint_url"]
    corp = state["issuers"]["corp"]["mint_url"]
    broker = state["broker_url"]
    # A few of the claims GitHub issues (devstack/claimsets.py has them all): the rules match
    # the ids, the ref and the event (a push), never the names or sub.
    ci_claims = (
        '{"sub":"repo:acme@1001/app@2001:ref:refs/heads/main","repository":"acme/app",'
        '"repository_owner":"acme","repository_owner_id":"1001","repository_id":"2001",'
        '"ref":"refs/heads/main","ref_type":"branch","event_name":"push"}'
    )
    engineer = '{"sub":"alice","groups":["engineering"]}'
    field = "python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])'"
    aws_example = ""
    if "aws" in state["issuers"]:
        lambda_claims = json.dumps(aws_claims(), separators=(",", ":"))
        aws_example = (
            "\n  # An AWS Lambda's STS web identity token (GetWebIdentityToken; role "
            f"{AWS_ROLE} of account {AWS_ACCOUNT},\n"
            '  # docs/admin.md, "AWS workloads as callers"), then a read token:\n'
            f"  ID_TOKEN=$(curl -s -X POST {state['issuers']['aws']['mint_url']} "
            f"-d {shlex.quote(lambda_claims)} | {field} id_token)\n"
            f'  curl -s -X POST {broker}/v1/token -H "Authorization: Bearer $ID_TOKEN" \\\n'
            "       -H 'Content-Type: application/json' -d '{\"access\":\"read\"}'\n"
        )
    issuer_names = ",".join(state["issuers"])
    host = state["aws_endpoint_url"].split("//", 1)[1]
    index = f"{host}/pypi/{state['repositories']['private']}/simple/"
    private = state["repositories"]["private"]
    versions = " and ".join(ACME_LIB_VERSIONS)
    cabroker = shlex.quote(str(BIN / "cabroker"))
    python = shlex.quote(str(BIN / "python"))
    try_venv = '"$HOME/cabroker-try"'
    repositories = ", ".join(state["private_repositories"])
    admin = shlex.quote(str(BIN / "cabroker-admin"))
    shadow = ""
    if state.get("shadow_rules_parameter"):
        shadow = (
            "\nShadow rules: devstack/shadow-rules.yaml (saved edits too); where they decide "
            "otherwise,\nthe broker log's audit line says so (shadow_decision, shadow_rule)."
        )
    return f"""
The devstack is running (state: see DEVSTACK_STATE or .devstack/state.json).
  broker          {broker}
  AWS endpoint    {state["aws_endpoint_url"]}   (STS, IAM, SSM, CodeArtifact)
  identity (IdP)  {state["issuers"]["github"]["url"].rsplit("/", 1)[0]}/{{{issuer_names}}}
  public index    {state["public_index_url"]}
  environment     {state["environment"]} (samconfig.toml; DEVSTACK_ENV=NAME deploys another)
  repositories    {repositories} in domain {state["domain"]} (the first is the default)
  broker log      {broker_log or "this console"}   (JSON; here: one line per request)

Try it (another terminal):

  # An ID token, as GitHub Actions gets one for acme/app on main; then a publish token:
  ID_TOKEN=$(curl -s -X POST {github} -d {shlex.quote(ci_claims)} | {field} id_token)
  curl -s -X POST {broker}/v1/token -H "Authorization: Bearer $ID_TOKEN" \\
       -H 'Content-Type: application/json' -d '{{"access":"publish"}}'
{aws_example}
  # An engineer's ID token, a read token, and pip install through it:
  ID_TOKEN=$(curl -s -X POST {corp} -d {shlex.quote(engineer)} | {field} id_token)
  TOKEN=$(curl -s -X POST {broker}/v1/token -H "Authorization: Bearer $ID_TOKEN" \\
       -H 'Content-Type: application/json' -d '{{"access":"read"}}' | {field} token)
  pip install --index-url "http://aws:$TOKEN@{index}" tinyjson

  # What may this identity ask for?
  curl -s {broker}/v1/grants -H "Authorization: Bearer $ID_TOKEN"

  # The client, cabroker, and acme-lib ({versions} are published in {private}).
  # Interactive login (device flow): approve on {state["issuers"]["corp"]["url"]}/device or at
  # the prompt in this console (alice is an engineer, mallory is not). The device login's
  # audience is pinned: the client sends no ID token for an audience you did not accept for
  # this broker. Any directory works; pip is the one of a new virtualenv, {try_venv}:
  export CABROKER_URL={broker}
  export CABROKER_AUDIENCE={state["issuers"]["corp"]["audience"]}
  {cabroker} login --identity device
  {python} -m venv {try_venv}
  eval "$({cabroker} env)" && {try_venv}/bin/python -m pip install acme-lib
  {try_venv}/bin/python -m pip index versions acme-lib

Edit devstack/rules.yaml and save: the broker uses the new rules within seconds.{shadow}
A denial's problem body names its request_id; to see why it was denied:
  {admin} why REQUEST_ID --log-file {broker_log or ".devstack/broker.log"}
Ctrl-C stops everything.
"""


def publish_samples(state: dict[str, Any], work_dir: Path) -> None:
    """Publish acme-lib into the private repository as CI does in the demo, so that the
    printed commands have something private to install."""
    with tempfile.TemporaryDirectory(prefix="publish-", dir=work_dir) as work:
        published = publish_acme_lib(Running(state), Tools(Path(work)), Path(work) / "dist")
    failed = [step for step in published.steps if not step.ok]
    if failed:
        raise SystemExit("publishing acme-lib failed: " + "; ".join(s.detail for s in failed))


def run(args: argparse.Namespace) -> int:
    options = _options(args)
    options.broker_log = options.work_dir / "broker.log"
    if SHADOW_RULES_FILE.exists():
        options.shadow_rules_file = SHADOW_RULES_FILE
    options.work_dir.mkdir(parents=True, exist_ok=True)
    options.broker_log.write_text("", encoding="utf-8")  # this run's lines only
    stack = Devstack(options)
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with own_foreground():  # the terminal's Ctrl-C for the devstack alone, not make
        return _serve(stack, options.broker_log, stopping)


def _serve(stack: Devstack, broker_log: Path, stopping: threading.Event) -> int:
    try:
        started = time.monotonic()
        state = stack.start()
        publish_samples(state, stack.options.work_dir)
        if sys.stdin.isatty():
            stack.approve_from_console(sys.stdin, sys.stdout)
        print(instructions(state, broker_log))
        print(f"(started in {time.monotonic() - started:.1f} s)", flush=True)
        stopping.wait()
    finally:
        print("\nstopping…", flush=True)
        stack.stop()
        stop_resource_tracker()
    return 0


def demo(args: argparse.Namespace) -> int:
    from devstack.demo import run_story

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cabroker-devstack-") as work:
        options = _options(
            args,
            state_file=Path(work) / "state.json",
            work_dir=Path(work),
            broker_log=Path(work) / "broker.log",
            watch_rules=False,
        )
        stack = Devstack(options)
        try:
            state = stack.start()
            print(
                f"devstack up in {time.monotonic() - started:.1f} s: broker {state['broker_url']}"
            )
            passed = run_story(Running(state), lambda line: print(line, flush=True))
        finally:
            stack.stop()
    print(f"demo finished in {time.monotonic() - started:.1f} s (devstack stopped)")
    return 0 if passed else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["run", "demo"])
    parser.add_argument(
        "--port-base",
        type=int,
        default=0,
        help="fixed ports: broker, AWS, IdP, public index = N..N+3 (default: free ports)",
    )
    parser.add_argument("--instances", type=int, default=2, help="warm broker instances")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("devstack.gateway").setLevel(
        logging.INFO if args.command == "run" else logging.WARNING
    )
    return run(args) if args.command == "run" else demo(args)


if __name__ == "__main__":
    sys.exit(main())
