"""A cold Lambda instance's init and first request, with the issuer-key prefetch off and on.

A local OIDC issuer (discovery and JWKS over HTTP on 127.0.0.1) answers every request after
``--delay`` (100 ms): an issuer across the internet.  Each run is a fresh Python process, as a
new Lambda instance is: it imports ``broker.app`` with ``AWS_LAMBDA_FUNCTION_NAME`` set, so the
init (settings, rules, and with the prefetch its issuers' keys) runs as in Lambda, then answers
one ``GET /v1/grants`` through ``broker.app.handler`` (the ID token verified for real, RS256; no
AWS call, so the figure is the issuer's share of a first request, not STS's or CodeArtifact's).
Runs alternate off and on; the table shows medians of ``--runs`` each:

- init: ``import broker.app`` (what Lambda reports as Init Duration, less the interpreter's own
  start);
- first request: the handler's time for the instance's first request;
- issuer requests during it: what the first request had to wait for (from the issuer's log).

Three scenarios: the rules name 1 issuer; 3 issuers (the first one signs the token), so the
prefetch's concurrency shows: init waits for the slowest, not for the sum; and 3 issuers of which
the last never answers (it hangs), the prefetch's cost: init waits until that issuer's fetch is
cut (each fetch gets at most half the time left of ``BROKER_JWKS_PREFETCH_SECONDS``, 2 s: about
1.3 s in all) while the first request needs only the first issuer.

Run: ``.venv/bin/python bench/cold_start.py [--runs 9] [--delay 0.1] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parent.parent
AUDIENCE = "cabroker"
KID = "bench-1"

# The child: one cold instance. Prints one JSON line (the last) with its figures.
CHILD = """
import json, sys, time
started = time.perf_counter()
import broker.app
initialised = time.perf_counter()
initialised_at = time.time()
from tests.support.events import Context, http_event
event = http_event("GET", "/v1/grants", token=sys.argv[1])
before = time.perf_counter()
answer = broker.app.handler(event, Context())
answered = time.perf_counter()
print(json.dumps({
    "init_ms": (initialised - started) * 1000,
    "first_request_ms": (answered - before) * 1000,
    "initialised_at": initialised_at,
    "status": answer["statusCode"],
    "body": answer["body"][:300],
}))
"""


HANG_SECONDS = 30.0  # a hanging issuer's answer: far past any deadline


class SlowIssuers:
    """Issuers ``/i0`` … ``/i<n-1>`` on one local server, each answering after ``delay``, the
    last ``hanging`` of them after :data:`HANG_SECONDS`; every request's arrival time is kept."""

    def __init__(self, count: int, delay: float, hanging: int = 0) -> None:
        self.hanging = {f"i{number}" for number in range(count - hanging, count)}
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.delay = delay
        self.arrivals: list[float] = []
        self._lock = threading.Lock()
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = json.dumps({"keys": [{**jwk, "kid": KID, "use": "sig", "alg": "RS256"}]})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._server.server_port}"
        self.urls = [f"{self.base}/i{number}" for number in range(count)]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuers = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with issuers._lock:
                    issuers.arrivals.append(time.time())
                name, _, rest = self.path.lstrip("/").partition("/")
                # the issuer's round trip
                time.sleep(HANG_SECONDS if name in issuers.hanging else issuers.delay)
                if rest == ".well-known/openid-configuration":
                    url = f"{issuers.base}/{name}"
                    body = json.dumps({"issuer": url, "jwks_uri": f"{url}/keys"})
                elif rest == "keys":
                    body = issuers.jwks
                else:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    @contextmanager
    def running(self) -> Iterator[SlowIssuers]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()

    def token(self) -> str:
        now = int(time.time())
        claims = {
            "iss": self.urls[0],
            "aud": AUDIENCE,
            "sub": "repo:acme/app:ref:refs/heads/main",
            "repository_owner_id": "1001",
            "repository_id": "2001",
            "iat": now,
            "exp": now + 3600,
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": KID})

    def requests_after(self, moment: float) -> int:
        with self._lock:
            return sum(1 for arrival in self.arrivals if arrival > moment)


def rules(urls: list[str]) -> str:
    lines = ["version: 1", "issuers:"]
    lines += [f"  i{n}: {{url: '{url}', audience: {AUDIENCE}}}" for n, url in enumerate(urls)]
    lines += [
        "rules:",
        "  - name: release",
        "    issuer: i0",
        "    claims: {repository_id: '2001'}",  # the immutable id, not the name in sub
        "    grant: {repository: internal, access: read}",
    ]
    return "\n".join(lines) + "\n"


def cold_run(issuers: SlowIssuers, rules_file: Path, prefetch: bool) -> dict[str, float]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "functions"), str(ROOT)]),
        "PYTHONDONTWRITEBYTECODE": "1",  # as Lambda's read-only code: no .pyc written
        "AWS_LAMBDA_FUNCTION_NAME": "cold-start-bench",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "ERROR",
        "POWERTOOLS_METRICS_NAMESPACE": "CodeArtifactBroker",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "BROKER_RULES_FILE": str(rules_file),
        "BROKER_ROLE_ARN": "arn:aws:iam::123456789012:role/TokenIssuerRole",
        "BROKER_DOMAIN": "acme",
        "BROKER_DOMAIN_OWNER": "111122223333",
        "BROKER_JWKS_PREFETCH_SECONDS": "2" if prefetch else "0",
    }
    done = subprocess.run(
        [sys.executable, "-c", CHILD, issuers.token()],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise SystemExit(f"the cold instance failed: {done.stderr[-1500:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    if figures["status"] != 200:
        raise SystemExit(f"the first request answered {figures['status']}: {figures['body']}")
    return {
        "init_ms": figures["init_ms"],
        "first_request_ms": figures["first_request_ms"],
        "issuer_requests_in_first_request": issuers.requests_after(figures["initialised_at"]),
    }


def measure(count: int, hanging: int, delay: float, runs: int) -> dict[str, dict[str, float]]:
    """Medians of ``runs`` cold instances each, prefetch off and on (alternating)."""
    samples: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    with (
        SlowIssuers(count, delay, hanging).running() as issuers,
        tempfile.TemporaryDirectory() as tmp,
    ):
        rules_file = Path(tmp) / "rules.yaml"
        rules_file.write_text(rules(issuers.urls), encoding="utf-8")
        cold_run(issuers, rules_file, prefetch=False)  # once, unmeasured: the OS's file cache
        for _ in range(runs):
            for mode in ("off", "on"):
                samples[mode].append(cold_run(issuers, rules_file, prefetch=mode == "on"))
                print(".", end="", file=sys.stderr, flush=True)
    result: dict[str, dict[str, float]] = {}
    for mode, runs_of_mode in samples.items():
        result[mode] = {
            name: statistics.median(run[name] for run in runs_of_mode)
            for name in ("init_ms", "first_request_ms", "issuer_requests_in_first_request")
        }
        result[mode]["total_ms"] = statistics.median(
            run["init_ms"] + run["first_request_ms"] for run in runs_of_mode
        )
    return result


SCENARIOS = (("1 issuer", 1, 0), ("3 issuers", 3, 0), ("3 issuers, 1 hanging", 3, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="cold instances per figure")
    parser.add_argument("--delay", type=float, default=0.1, help="the issuer's answer, seconds")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()

    load_before = os.getloadavg()
    figures = {
        label: measure(count, hanging, args.delay, args.runs) for label, count, hanging in SCENARIOS
    }
    print(file=sys.stderr)
    load_after = os.getloadavg()
    if args.json:
        print(
            json.dumps(
                {
                    "python": sys.version.split()[0],
                    "runs": args.runs,
                    "delay_ms": args.delay * 1000,
                    "load_average": {"before": load_before, "after": load_after},
                    "cold_start": figures,
                }
            )
        )
        return

    print(
        f"cold start, issuer answering in {args.delay * 1000:.0f} ms, median of {args.runs} "
        f"fresh processes each; python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    rows = [("figure", "prefetch off (before)", "prefetch on (after)")]
    for label, by_mode in figures.items():
        off, on = by_mode["off"], by_mode["on"]
        rows += [
            (
                f"{label}: init (import broker.app)",
                f"{off['init_ms']:.0f} ms",
                f"{on['init_ms']:.0f} ms",
            ),
            (
                f"{label}: first request (GET /v1/grants)",
                f"{off['first_request_ms']:.1f} ms",
                f"{on['first_request_ms']:.1f} ms",
            ),
            (
                f"{label}: init + first request",
                f"{off['total_ms']:.0f} ms",
                f"{on['total_ms']:.0f} ms",
            ),
            (
                f"{label}: issuer requests in the first request",
                f"{off['issuer_requests_in_first_request']:.0f}",
                f"{on['issuer_requests_in_first_request']:.0f}",
            ),
        ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for number, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if number == 0:
            print("  ".join("-" * width for width in widths))


if __name__ == "__main__":
    main()
