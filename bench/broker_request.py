"""Benchmarks of the broker Lambda, printed as one table.

- cold import of ``broker.app`` (``python -X importtime``, median of several fresh processes);
- per-request in-process time through ``broker.app.handler`` with AWS stubbed (botocore Stubber
  for STS and CodeArtifact), p50/p99 over N requests: token-cache hits, and cache misses (a new
  subject each time, so every request assumes a role, builds a CodeArtifact client and mints);
  ID tokens are verified for real (RS256) against a local issuer;
- the size of the built function package, when ``sam build`` has run.

Run: ``.venv/bin/python bench/broker_request.py [--requests 1000] [--import-runs 7] [--json]``;
``make bench`` runs it (``--json``) for its one table (``bench/report.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "functions"), str(ROOT)]

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_METRICS_NAMESPACE": "CodeArtifactBroker",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
)


# Whether the function imports Powertools Tracer (the X-Ray SDK) for each value of the template's
# Tracing parameter (POWERTOOLS_TRACE_DISABLED; tests/infra/test_template.py keeps them in step).
TRACER_BY_TRACING = {"Active": False, "Detailed": True, "PassThrough": False}


def default_tracing() -> str:
    """The template's default Tracing value: what a deployment with no overrides runs."""
    from devstack.cfn_yaml import load

    template = load(ROOT / "template.yaml")
    return str(template["Parameters"]["Tracing"]["Default"])


def cold_import(runs: int, tracer: bool) -> tuple[float, float]:
    """Median cumulative import time of broker.app and median process wall time, in ms."""
    imports, walls = [], []
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "functions"),
        "POWERTOOLS_TRACE_DISABLED": "false" if tracer else "true",
    }
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import broker.app"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        walls.append((time.perf_counter() - started) * 1000)
        for line in done.stderr.splitlines():
            parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
            if len(parts) == 3 and parts[2] == "broker.app":
                imports.append(int(parts[1]) / 1000)
    return statistics.median(imports), statistics.median(walls)


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered), p99


def request_times(requests: int) -> dict[str, tuple[float, float]]:
    import boto3
    from botocore.stub import Stubber

    from broker import app, service
    from broker.settings import Settings
    from tests.support.codeartifact import FakeClients, FakeCodeArtifact
    from tests.support.events import Context, http_event
    from tests.support.oidc import IssuerServer, private_key

    server = IssuerServer()
    github = server.add("github", "codeartifact-broker")
    github.keys = {"gh-1": private_key("gh-1")}
    # As GitHub's token carries them: names and their immutable ids; the rule matches the ids.
    claims: dict[str, Any] = {
        "repository_owner": "acme",
        "repository_owner_id": "1001",
        "repository": "acme/app",
        "repository_id": "2001",
        "ref": "refs/heads/main",
    }
    results: dict[str, tuple[float, float]] = {}
    with server.running(), tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "rules.yaml"
        rules.write_text(
            "version: 1\n"
            f"issuers:\n  github: {{url: '{github.url}', audience: codeartifact-broker}}\n"
            "rules:\n  - name: release\n    issuer: github\n"
            "    claims: {repository_owner_id: '1001', repository_id: '2001',"
            " ref: refs/heads/main}\n"
            "    grant: {repository: internal, access: publish, packages: ['acme-*']}\n"
        )
        settings = Settings.from_env(
            {
                "BROKER_RULES_FILE": str(rules),
                "BROKER_ROLE_ARN": "arn:aws:iam::123456789012:role/TokenIssuerRole",
                "BROKER_DOMAIN": "acme",
                "BROKER_DOMAIN_OWNER": "111122223333",
                "AWS_REGION": "us-east-1",
                "BROKER_TOKEN_CACHE_SIZE": str(2 * requests + 100),
            }
        )
        sts = boto3.client("sts", region_name="us-east-1")
        stubber = Stubber(sts)
        stubber.activate()
        credentials = {
            "AccessKeyId": "ASIABENCHBENCHBENCH1",
            "SecretAccessKey": "secret",
            "SessionToken": "session",
            "Expiration": "2030-01-01T00:00:00Z",
        }
        service.use(
            service.Broker.from_settings(settings, FakeClients(sts, FakeCodeArtifact().client))
        )
        context = Context()

        def timed(token: str) -> float:
            event = http_event("POST", "/v1/token", token=token, body={})
            started = time.perf_counter()
            answer = app.handler(event, context)  # type: ignore[arg-type]
            elapsed = (time.perf_counter() - started) * 1000
            assert answer["statusCode"] == 200, answer["body"]
            return elapsed

        def run(make_token: Callable[[int], str], n: int) -> list[float]:
            tokens = [make_token(i) for i in range(n)]  # signing is not part of the request
            for _ in range(n):
                stubber.add_response("assume_role", {"Credentials": credentials})
            return [timed(t) for t in tokens]

        cached_token = github.mint(**claims)
        with contextlib.redirect_stdout(io.StringIO()):  # the broker's EMF metric lines
            run(lambda i: cached_token, 50)  # warm: JWKS fetched, endpoint cached, first mint
            results["token, cache hit"] = percentiles(run(lambda i: cached_token, requests))
            results["token, cache miss (mint)"] = percentiles(
                run(lambda i: github.mint(sub=f"subject-{i}", **claims), requests)
            )
        service.use(None)
    return results


BUILD = ROOT / ".aws-sam" / "build" / "BrokerFunction"  # where `sam build` (make build) puts it


def package_bytes() -> dict[str, Any] | None:
    """The built package's size unzipped and zipped (deflate, as ``sam deploy`` uploads it),
    when it was built and whether ``functions/`` changed since; None when ``sam build`` has not
    run."""
    if not BUILD.is_dir():
        return None
    files = [f for f in BUILD.rglob("*") if f.is_file()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for f in files:
            archive.write(f, f.relative_to(BUILD))
    built = BUILD.stat().st_mtime
    sources = (ROOT / "functions").rglob("*")
    stale = any(f.stat().st_mtime > built for f in sources if "__pycache__" not in f.parts)
    return {
        "path": str(BUILD.relative_to(ROOT)),
        "unzipped_bytes": sum(f.stat().st_size for f in files),
        "zipped_bytes": buffer.tell(),
        "built_at": datetime.fromtimestamp(built, UTC).isoformat(timespec="seconds"),
        "stale": stale,
    }


def package_size() -> str:
    package = package_bytes()
    if package is None:
        return "n/a (run `make build` first)"
    unzipped, zipped = package["unzipped_bytes"], package["zipped_bytes"]
    return f"{unzipped / 1e6:.1f} MB unzipped, {zipped / 1e6:.1f} MB zipped"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--import-runs", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()

    imports: dict[str, dict[str, float] | str] = {"default_tracing": default_tracing()}
    for key, tracer in (("default", TRACER_BY_TRACING[default_tracing()]), ("detailed", True)):
        import_ms, wall_ms = cold_import(args.import_runs, tracer)
        imports[key] = {"import_ms": import_ms, "wall_ms": wall_ms}
    times = request_times(args.requests)
    if args.json:
        hit, miss = times["token, cache hit"], times["token, cache miss (mint)"]
        print(
            json.dumps(
                {
                    "python": sys.version.split()[0],
                    "requests": args.requests,
                    "import_runs": args.import_runs,
                    "cold_import": imports,
                    "request_ms": {
                        "cache_hit": {"p50": hit[0], "p99": hit[1]},
                        "cache_miss": {"p50": miss[0], "p99": miss[1]},
                    },
                    "package": package_bytes(),
                }
            )
        )
        return

    rows: list[tuple[str, Any]] = []
    labels = (
        ("default", f"default deployment (Tracing={imports['default_tracing']})"),
        ("detailed", "Tracing=Detailed (X-Ray SDK)"),
    )
    for key, label in labels:
        figures = imports[key]
        assert isinstance(figures, dict)
        import_ms, wall_ms = figures["import_ms"], figures["wall_ms"]
        rows.append((f"cold import of broker.app, {label} (median)", f"{import_ms:.0f} ms"))
        rows.append((f"python -c 'import broker.app', {label} (wall)", f"{wall_ms:.0f} ms"))
    for name, (p50, p99) in times.items():
        rows.append((f"{name}, {args.requests} requests", f"p50 {p50:.2f} ms, p99 {p99:.2f} ms"))
    rows.append(("built function package", package_size()))
    width = max(len(name) for name, _ in rows)
    print(f"{'benchmark':<{width}}  result")
    print(f"{'-' * width}  {'-' * 30}")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(json.dumps({"python": sys.version.split()[0]}))


if __name__ == "__main__":
    main()
