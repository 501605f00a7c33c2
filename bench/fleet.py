"""Fleet-scale token economics: a burst of CI jobs over N warm Lambda instances.

The real broker code (``broker.service.Broker``: ID token verification, rules, session policy,
token cache, botocore clients with the broker's retry configuration) runs in N instances, each
with its own caches, as Lambda keeps them. AWS is simulated *below* botocore: a ``before-send``
hook answers each HTTP attempt with the service's real wire format after a realistic latency,
so botocore's adaptive retries and the broker's error mapping are the real ones. The hook counts
every attempt and enforces CodeArtifact's quota of 40 GetAuthorizationToken calls per second per
region (a token bucket): over it, the attempt gets ``ThrottlingException`` (HTTP 429).

Each N runs twice: with the per-instance memory cache only, and with the shared cache
(``broker.sharedcache``: DynamoDB and KMS, here moto's server on a local port, a fresh table
for each run), per subject.

The burst: JOBS CI jobs from REPOS repositories (distinct OIDC subjects), arriving uniformly
within SPREAD seconds in real time; a job takes any idle instance (a queue), as Lambda does.
Printed per N: GetAuthorizationToken attempts and how many were throttled, AssumeRole calls,
jobs that got an error instead of a token, latency p50/p99 (arrival to answer), and calls per
distinct grant (subject and grant).

All N instances share this process's CPU (2 cores here), so latency includes contention a
real fleet would not have; the AWS call counts and throttles are the figures that transfer.

Run: ``.venv/bin/python bench/fleet.py [--jobs 1000] [--repos 100] [--spread 10]
[--instances 1 10 50] [--cache per-instance shared]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import queue
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
        "POWERTOOLS_LOG_LEVEL": "CRITICAL",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
)

from botocore.awsrequest import AWSResponse, HTTPHeaders  # noqa: E402 - after the env above

from broker import aws, service  # noqa: E402
from broker.problems import BrokerError  # noqa: E402
from broker.settings import Settings  # noqa: E402
from devstack.gateway import TokenBucket  # noqa: E402 - the same token bucket as the gateway
from tests.support.oidc import IssuerServer, private_key  # noqa: E402

CODEARTIFACT_TPS = 40  # GetAuthorizationToken, per account and region (CodeArtifact quotas)
LATENCY = {"AssumeRole": 0.030, "GetAuthorizationToken": 0.045, "GetRepositoryEndpoint": 0.030}


@dataclass
class SimulatedAws:
    """Answers botocore's HTTP attempts; counts them; throttles GetAuthorizationToken."""

    attempts: Counter[str] = field(default_factory=Counter)
    throttled: Counter[str] = field(default_factory=Counter)
    bucket: TokenBucket = field(
        default_factory=lambda: TokenBucket(CODEARTIFACT_TPS, CODEARTIFACT_TPS)
    )
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, request: Any, operation: str) -> AWSResponse:
        with self.lock:
            self.attempts[operation] += 1
        time.sleep(LATENCY.get(operation, 0.02))
        if operation == "GetAuthorizationToken" and not self.bucket.take():
            with self.lock:
                self.throttled[operation] += 1
            body = json.dumps({"message": "Rate exceeded"}).encode()
            headers = _headers("application/json", x_amzn_ErrorType="ThrottlingException")
            return AWSResponse(request.url, 429, headers, _Raw(body))
        expires = datetime.now(UTC) + timedelta(hours=1)
        if operation == "AssumeRole":
            body = (
                '<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
                "<AssumeRoleResult><Credentials><AccessKeyId>ASIAFLEETFLEETFLEET1</AccessKeyId>"
                "<SecretAccessKey>secret</SecretAccessKey><SessionToken>session</SessionToken>"
                f"<Expiration>{expires.strftime('%Y-%m-%dT%H:%M:%SZ')}</Expiration>"
                "</Credentials><AssumedRoleUser><AssumedRoleId>AROA:x</AssumedRoleId>"
                "<Arn>arn:aws:sts::123456789012:assumed-role/TokenIssuerRole/x</Arn>"
                "</AssumedRoleUser></AssumeRoleResult></AssumeRoleResponse>"
            ).encode()
            return AWSResponse(request.url, 200, _headers("text/xml"), _Raw(body))
        if operation == "GetAuthorizationToken":
            payload = {"authorizationToken": "t" * 64, "expiration": expires.timestamp()}
        else:
            payload = {
                "repositoryEndpoint": "https://acme-111122223333.d.codeartifact.us-east-1"
                ".amazonaws.com/pypi/internal/"
            }
        return AWSResponse(
            request.url, 200, _headers("application/json"), _Raw(json.dumps(payload).encode())
        )


def _headers(content_type: str, **extra: str) -> HTTPHeaders:
    headers = HTTPHeaders()
    headers["Content-Type"] = content_type
    for key, value in extra.items():
        headers[key.replace("_", "-")] = value
    return headers


class _Raw:
    """The raw body botocore reads from an AWSResponse."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body

    def read(self, *_: Any, **__: Any) -> bytes:
        return self.body


class SimulatedClients(aws.Clients):
    """The broker's own clients (retry mode, timeouts), with HTTP answered by ``SimulatedAws``."""

    def __init__(self, settings: Settings, simulated: SimulatedAws) -> None:
        super().__init__(settings)
        self.simulated = simulated
        self._hook(self.sts)

    def _hook(self, client: Any) -> Any:
        def send(request: Any, **kwargs: Any) -> AWSResponse:
            operation = kwargs["event_name"].rsplit(".", 1)[-1]
            return self.simulated.answer(request, operation)

        client.meta.events.register("before-send", send)
        return client

    def codeartifact(self, credentials: Any) -> Any:
        return self._hook(super().codeartifact(credentials))


class SharedAws:
    """moto's server for DynamoDB and KMS: the shared cache's table and key, new per run."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        # the broker's own clients (aws.Clients.client) find it through the standard variables
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = os.environ["AWS_ENDPOINT_URL_KMS"] = self.url
        self._runs = 0

    def fresh_table(self) -> dict[str, str]:
        import boto3

        self._runs += 1
        table = f"fleet-{self._runs}"
        boto3.client("dynamodb", endpoint_url=self.url, region_name="us-east-1").create_table(
            TableName=table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        )
        kms = boto3.client("kms", endpoint_url=self.url, region_name="us-east-1")
        key = kms.create_key()["KeyMetadata"]["Arn"]
        return {
            "BROKER_CACHE_TABLE": table,
            "BROKER_CACHE_KEY_ID": key,
            "BROKER_SHARED_CACHE": "subject",
        }

    def stop(self) -> None:
        self._server.stop()


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


def simulate(
    settings: Settings, tokens: Sequence[tuple[float, str]], instances: int
) -> dict[str, Any]:
    simulated = SimulatedAws()
    brokers = [
        service.Broker.from_settings(settings, SimulatedClients(settings, simulated))
        for _ in range(instances)
    ]
    jobs: queue.Queue[tuple[float, str] | None] = queue.Queue()
    outcome = Outcome()

    def instance(broker: service.Broker) -> None:
        while (job := jobs.get()) is not None:
            arrived, id_token = job
            try:
                broker.token(broker.authenticate(id_token), {})
            except BrokerError as error:
                with outcome.lock:
                    outcome.errors[f"{error.status} {error.slug}"] += 1
            with outcome.lock:
                outcome.latencies.append((time.monotonic() - arrived) * 1000)

    workers = [threading.Thread(target=instance, args=(b,), daemon=True) for b in brokers]
    for worker in workers:
        worker.start()
    started = time.monotonic()
    for offset, id_token in tokens:
        delay = started + offset - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        jobs.put((time.monotonic(), id_token))
    for _ in workers:
        jobs.put(None)
    for worker in workers:
        worker.join()
    ordered = sorted(outcome.latencies)
    return {
        "attempts": simulated.attempts,
        "throttled": simulated.throttled["GetAuthorizationToken"],
        "errors": outcome.errors,
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "seconds": time.monotonic() - started,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--repos", type=int, default=100)
    parser.add_argument("--spread", type=float, default=10.0)
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument(
        "--cache", nargs="+", choices=["per-instance", "shared"], default=["per-instance", "shared"]
    )
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    server = IssuerServer()
    github = server.add("github", "codeartifact-broker")
    github.keys = {"gh-1": private_key("gh-1")}
    rows: list[dict[str, Any]] = []
    with server.running(), tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "rules.yaml"
        rules.write_text(
            "version: 1\n"
            f"issuers:\n  github: {{url: '{github.url}', audience: codeartifact-broker}}\n"
            "rules:\n  - name: ci-publish\n    issuer: github\n"
            "    claims: {repository_owner_id: '1001'}\n"
            "    grant: {repository: internal, access: publish, packages: ['acme-*']}\n"
        )
        base = {
            "BROKER_RULES_FILE": str(rules),
            "BROKER_ROLE_ARN": "arn:aws:iam::123456789012:role/TokenIssuerRole",
            "BROKER_DOMAIN": "acme",
            "BROKER_DOMAIN_OWNER": "111122223333",
            "AWS_REGION": "us-east-1",
        }
        rng = random.Random(7)
        subjects = [f"repo:acme/app-{i}:ref:refs/heads/main" for i in range(args.repos)]
        minted = {
            s: github.mint(
                sub=s,
                repository_owner="acme",
                repository_owner_id="1001",
                exp=int(time.time()) + 900,
            )
            for s in subjects
        }
        burst = sorted(
            (rng.uniform(0, args.spread), minted[rng.choice(subjects)]) for _ in range(args.jobs)
        )
        distinct = len({token for _, token in burst})
        shared_aws = SharedAws() if "shared" in args.cache else None
        try:
            for cache in args.cache:
                for count in args.instances:
                    env = dict(base)
                    if cache == "shared" and shared_aws is not None:
                        env.update(shared_aws.fresh_table())
                    with contextlib.redirect_stdout(io.StringIO()):  # the broker's EMF lines
                        result = simulate(Settings.from_env(env), burst, count)
                    attempts = result["attempts"]
                    rows.append(
                        {
                            "cache": cache,
                            "instances": count,
                            "get_authorization_token": attempts["GetAuthorizationToken"],
                            "throttled": result["throttled"],
                            "per_grant": attempts["GetAuthorizationToken"] / distinct,
                            "assume_role": attempts["AssumeRole"],
                            "errors": dict(result["errors"]),
                            "p50_ms": result["p50"],
                            "p99_ms": result["p99"],
                        }
                    )
        finally:
            if shared_aws is not None:
                shared_aws.stop()
    if args.json:
        figures = {"jobs": args.jobs, "repos": args.repos, "spread_seconds": args.spread}
        print(json.dumps({**figures, "distinct_grants": distinct, "rows": rows}))
        return 0
    print(
        f"fleet: {args.jobs} CI jobs from {args.repos} repositories ({distinct} distinct grants) "
        f"within {args.spread:.0f} s; CodeArtifact allows {CODEARTIFACT_TPS} "
        "GetAuthorizationToken/s"
    )
    for row in rows:
        print(
            f"  {row['cache']:<12} N={row['instances']:<3} GetAuthorizationToken "
            f"{row['get_authorization_token']:5d} attempts ({row['throttled']:4d} throttled, "
            f"{row['per_grant']:4.1f} per grant)  AssumeRole {row['assume_role']:5d}  "
            f"errors {row['errors'] or 0}  p50 {row['p50_ms']:6.1f} ms  "
            f"p99 {row['p99_ms']:7.1f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
