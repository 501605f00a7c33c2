"""Token requests per second through the devstack's gateway, AWS calls going to the stand-in.

Starts the devstack in this process (moto, the CodeArtifact stand-in, the identity provider,
the gateway with its warm broker instances), pre-mints ID tokens (minting is the IdP's work,
not the broker's), then sends ``POST /v1/token`` from client threads over HTTP and prints:

- **uncached**: a new CI subject per request, so each one is AssumeRole on moto's STS plus
  GetRepositoryEndpoint and GetAuthorizationToken on the stand-in;
- **cached**: one identity over and over (the broker's token cache answers);

each with the template's throttling lifted (the machine's capacity) and, for the uncached case,
with it applied (what a deployed API with the default ThrottlingRateLimit would let through).

Also prints the devstack's start time and the time ``make demo``'s story takes.

Run: ``.venv/bin/python bench/devstack_tokens.py [--requests 400] [--clients 4]
[--skip throttled demo] [--json]``; ``make bench`` runs it (``--json``) for its one table
(``bench/report.py``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from devstack.demo import CI_CLAIMS, run_story  # noqa: E402 - after the path set-up
from devstack.stack import Devstack, Options  # noqa: E402
from devstack.tools import Devstack as Running  # noqa: E402
from devstack.tools import http_json  # noqa: E402


def measure(
    state: dict[str, object], tokens: list[str], clients: int
) -> tuple[float, float, float, dict[int, int]]:
    """(requests/s, p50 ms, p99 ms, statuses) for one POST /v1/token per ID token."""
    url = f"{state['broker_url']}/v1/token"
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    def call(token: str) -> None:
        started = time.perf_counter()
        status, _, _ = http_json(
            "POST", url, {"access": "publish"}, {"Authorization": f"Bearer {token}"}
        )
        latencies.append((time.perf_counter() - started) * 1000)
        statuses[status] = statuses.get(status, 0) + 1

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(call, tokens))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return len(tokens) / elapsed, statistics.median(ordered), p99, statuses


def with_stack(options: Options, body: Callable[[Devstack, dict[str, object]], None]) -> float:
    started = time.perf_counter()
    stack = Devstack(options)
    try:
        state = stack.start()
        up = time.perf_counter() - started
        body(stack, state)
    finally:
        stack.stop()
    return up


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument(
        "--skip",
        nargs="+",
        default=[],
        choices=["throttled", "demo"],
        help="leave out the throttled run or the demo story (each starts its own devstack)",
    )
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a template.yaml parameter, e.g. SharedTokenCache=Disabled (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    parameters = dict(item.split("=", 1) for item in args.parameter)
    figures: dict[str, Any] = {
        "requests": args.requests,
        "clients": args.clients,
        "instances": args.instances,
    }

    def options(work: Path, *, throttle: bool) -> Options:
        return Options(
            state_file=work / "state.json",
            work_dir=work,
            broker_log=work / "broker.log",
            watch_rules=False,
            instances=args.instances,
            throttle=throttle,
            parameters=parameters,
        )

    def tokens_for(running: Running, count: int, distinct: bool) -> list[str]:
        one = running.id_token("github", CI_CLAIMS)
        return [
            running.id_token("github", {**CI_CLAIMS, "sub": f"repo:acme/app-{i}:ref:main"})
            if distinct
            else one
            for i in range(count)
        ]

    def capacity(stack: Devstack, state: dict[str, object]) -> None:
        running = Running(dict(state))
        for label, distinct in (("uncached", True), ("cached", False)):
            tokens = tokens_for(running, args.requests, distinct)
            measure(state, tokens[:20], args.clients)  # warm both instances
            rps, p50, p99, statuses = measure(state, tokens, args.clients)
            figures[label] = {"rps": rps, "p50_ms": p50, "p99_ms": p99, "statuses": statuses}

    def throttled(stack: Devstack, state: dict[str, object]) -> None:
        running = Running(dict(state))
        tokens = tokens_for(running, args.requests, True)
        rps, _p50, _p99, statuses = measure(state, tokens, args.clients)
        served = rps * statuses.get(200, 0) / len(tokens)
        figures["throttled"] = {"served_rps": served, "sent_rps": rps, "statuses": statuses}

    def story(stack: Devstack, state: dict[str, object]) -> None:
        started = time.perf_counter()
        passed = run_story(Running(dict(state)), lambda line: None)
        figures["demo"] = {"seconds": time.perf_counter() - started, "passed": passed}

    with tempfile.TemporaryDirectory() as work:
        figures["start_seconds"] = with_stack(options(Path(work) / "a", throttle=False), capacity)
        if "throttled" not in args.skip:
            with_stack(options(Path(work) / "b", throttle=True), throttled)
        if "demo" not in args.skip:
            with_stack(options(Path(work) / "c", throttle=True), story)

    if args.json:
        print(json.dumps(figures))  # status codes become strings (JSON object keys)
        return 0
    rows = [
        (f"devstack start ({args.instances} broker instances)", f"{figures['start_seconds']:.1f} s")
    ]
    for label in ("uncached", "cached"):
        f = figures[label]
        rows.append(
            (
                f"POST /v1/token, {label}, no throttling",
                f"{f['rps']:6.0f} req/s   p50 {f['p50_ms']:5.1f} ms   p99 {f['p99_ms']:6.1f} ms   "
                f"{f['statuses']}",
            )
        )
    if "throttled" in figures:
        f = figures["throttled"]
        rows.append(
            (
                "POST /v1/token, uncached, template throttling",
                f"{f['served_rps']:6.0f} req/s served of {f['sent_rps']:.0f} sent   "
                f"{f['statuses']}",
            )
        )
    if "demo" in figures:
        f = figures["demo"]
        rows.append(
            (
                "demo story (real pip, twine, uv)",
                f"{f['seconds']:.1f} s" + ("" if f["passed"] else " (FAILED)"),
            )
        )
    width = max(len(name) for name, _ in rows)
    print(f"devstack: {args.requests} requests from {args.clients} client threads")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
