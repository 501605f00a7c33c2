"""``make bench``: every benchmark run once, its figures printed as one table.

Runs, one after another (never side by side: they would share the CPUs), each benchmark script
in its own process with ``--json``, and turns the figures into rows of one table with the
columns ``benchmark | figure | value | notes`` (aligned plain text that is also a Markdown
table), below one header line naming the machine and the date:

- ``bench/broker_request.py``: cold import of ``broker.app``, ``POST /v1/token`` in-process with
  AWS stubbed (cache hit and miss, p50/p99), the built function package's size;
- ``bench/devstack_tokens.py``: devstack start, tokens/s through the gateway, the demo story;
- ``bench/client_env.py``: the client's import time, ``cabroker env`` cold and warm against
  ``aws codeartifact login --tool pip``;
- ``bench/fleet.py``: the fleet simulation, one row per row of its JSON (whatever the cache);
- ``bench/cold_start.py``: a cold Lambda instance against an issuer answering in 100 ms, for
  each scenario (1 issuer, 3 issuers, 3 with one hanging): init, first request and the two
  together with the issuer-key prefetch off and on, and the issuer requests the first request
  waited for (5 fresh processes each, not the script's 9: about 30 s);
- ``bench/rules_admin.py``: ``cabroker-admin rules test`` and ``rules check`` on a 200-rule
  document with 1,000 tests: loading, reading the tests, running them, each command in-process
  and as a new process.

Progress goes to stderr, so stdout is the table alone. A benchmark that fails (exits non-zero,
times out, prints no JSON, or prints JSON without a figure the table needs) gets rows reading
``failed: <reason>``; the others still run, and the exit status is 1 at the end.

Run: ``make bench`` (or ``.venv/bin/python bench/report.py``).
"""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
COLUMNS = ("benchmark", "figure", "value", "notes")


class Row(NamedTuple):
    benchmark: str
    figure: str
    value: str
    notes: str = ""


Figures = Mapping[str, Any]


@dataclass(frozen=True)
class Benchmark:
    """One script run with ``--json``; ``rows`` turns its JSON object into table rows."""

    name: str
    command: Sequence[str]
    rows: Callable[[Figures], list[Row]]
    figures: Sequence[str]  # the figure names, for the rows of a failed run
    timeout: float  # seconds; a run takes about a third of it on a 2-core machine


# ------------------------------------------------------------------------- formatting


def ms(value: float) -> str:
    """Milliseconds with the precision that matters at their size."""
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def pair(first: str, second: str) -> str:
    return f"{first} / {second}"


def statuses(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{status}: {count}" for status, count in sorted(counts.items()))


def kib(size: int) -> str:
    return f"{size / 1024:,.0f}"


# ------------------------------------------------------------------ figures into rows

BROKER = "broker Lambda"
BROKER_FIGURES = (
    "cold import broker.app, default deployment (ms, median of {runs})",
    "cold import broker.app, Tracing=Detailed (ms, median of {runs})",
    "POST /v1/token in-process, cache hit p50 / p99 (ms)",
    "POST /v1/token in-process, cache miss p50 / p99 (ms)",
    "function package (built zip, KB)",
)


def broker_rows(f: Figures) -> list[Row]:
    runs, requests = f["import_runs"], f["requests"]
    off, on = f["cold_import"]["default"], f["cold_import"]["detailed"]
    hit, miss = f["request_ms"]["cache_hit"], f["request_ms"]["cache_miss"]
    in_process = f"{requests} requests through broker.app.handler, AWS stubbed"
    rows = [
        Row(
            BROKER,
            BROKER_FIGURES[0].format(runs=runs),
            ms(off["import_ms"]),
            f"Tracing={f['cold_import']['default_tracing']} (the template's default), "
            f"-X importtime, cumulative; whole `python -c` {ms(off['wall_ms'])} ms",
        ),
        Row(
            BROKER,
            BROKER_FIGURES[1].format(runs=runs),
            ms(on["import_ms"]),
            f"Powertools Tracer and the X-Ray SDK; whole `python -c` {ms(on['wall_ms'])} ms",
        ),
        Row(
            BROKER,
            BROKER_FIGURES[2],
            pair(ms(hit["p50"]), ms(hit["p99"])),
            f"{in_process}; RS256 verified",
        ),
        Row(
            BROKER,
            BROKER_FIGURES[3],
            pair(ms(miss["p50"]), ms(miss["p99"])),
            f"{in_process}; a new subject each, so a mint",
        ),
    ]
    package = f["package"]
    if package is None:
        rows.append(Row(BROKER, BROKER_FIGURES[4], "not built: run make build"))
    else:
        built = datetime.fromisoformat(package["built_at"]).strftime("%Y-%m-%d %H:%M UTC")
        notes = f"{kib(package['unzipped_bytes'])} KB unzipped; built {built}"
        if package.get("stale"):
            notes += ", functions/ changed since"
        rows.append(Row(BROKER, BROKER_FIGURES[4], kib(package["zipped_bytes"]), notes))
    return rows


DEVSTACK = "devstack"
DEVSTACK_FIGURES = (
    "devstack start, {instances} broker instances (s)",
    "devstack tokens/s uncached / cached",
    "devstack tokens/s uncached, template throttling: served / sent",
    "demo story: real pip, twine, uv (s)",
)


def devstack_rows(f: Figures) -> list[Row]:
    uncached, cached = f["uncached"], f["cached"]
    latency = (
        f"p50 / p99 ms uncached {ms(uncached['p50_ms'])} / {ms(uncached['p99_ms'])}, "
        f"cached {ms(cached['p50_ms'])} / {ms(cached['p99_ms'])}"
    )
    refused = {
        f"{label} {status}": count
        for label, figures in (("uncached", uncached), ("cached", cached))
        for status, count in figures["statuses"].items()
        if str(status) != "200"
    }
    notes = f"{f['requests']} requests over HTTP, {f['clients']} threads, no throttling; {latency}"
    if refused:
        notes += f"; not 200: {statuses(refused)}"
    rows = [
        Row(
            DEVSTACK,
            DEVSTACK_FIGURES[0].format(instances=f["instances"]),
            f"{f['start_seconds']:.1f}",
            "moto, CodeArtifact stand-in, IdP, gateway; provisioned from the templates",
        ),
        Row(
            DEVSTACK,
            DEVSTACK_FIGURES[1],
            pair(f"{uncached['rps']:.0f}", f"{cached['rps']:.0f}"),
            notes,
        ),
    ]
    throttled = f.get("throttled")
    if throttled is not None:
        rows.append(
            Row(
                DEVSTACK,
                DEVSTACK_FIGURES[2],
                pair(f"{throttled['served_rps']:.0f}", f"{throttled['sent_rps']:.0f}"),
                f"the template's ThrottlingRateLimit; {statuses(throttled['statuses'])}",
            )
        )
    demo = f.get("demo")
    if demo is not None:
        seconds = f"{demo['seconds']:.1f}"
        rows.append(
            Row(DEVSTACK, DEVSTACK_FIGURES[3], seconds)
            if demo["passed"]
            else Row(DEVSTACK, DEVSTACK_FIGURES[3], f"failed: the story did not pass ({seconds} s)")
        )
    return rows


CLIENT = "client"
CLIENT_FIGURES = (
    "import cabroker.cli / cabroker.keyring_backend (ms, median of {runs})",
    "cabroker env cold (median ms)",
    "cabroker env warm (median ms)",
    "aws codeartifact login --tool pip (median ms)",
)


def client_rows(f: Figures) -> list[Row]:
    runs, imports = f["runs"], f["import_ms"]
    cold, warm, login = f["env_cold_ms"], f["env_warm_ms"], f["aws_login_ms"]
    each = f"a fresh process each of {runs}"
    rows = [
        Row(
            CLIENT,
            CLIENT_FIGURES[0].format(runs=runs),
            pair(ms(imports["cabroker.cli"]), ms(imports["cabroker.keyring_backend"])),
            "-X importtime, cumulative; pip loads the keyring backend per host",
        ),
        Row(
            CLIENT,
            CLIENT_FIGURES[1],
            ms(cold["median"]),
            f"slowest {ms(cold['slowest'])} ms; a new subject each, so the broker mints",
        ),
        Row(
            CLIENT,
            CLIENT_FIGURES[2],
            ms(warm["median"]),
            f"slowest {ms(warm['slowest'])} ms; {each}; token cached, no broker call",
        ),
    ]
    if login is None:
        rows.append(Row(CLIENT, CLIENT_FIGURES[3], "skipped: run make venv-awscli"))
    else:
        ratio = login["median"] / warm["median"]
        rows.append(
            Row(
                CLIENT,
                CLIENT_FIGURES[3],
                ms(login["median"]),
                f"slowest {ms(login['slowest'])} ms; same stand-in; "
                f"{ratio:.1f} times cabroker env warm",
            )
        )
    return rows


FLEET = "fleet"
FLEET_FIGURES = ("burst: CI jobs / repositories / spread (s)",)
FLEET_ROW_KEYS = {
    "cache",
    "instances",
    "get_authorization_token",
    "throttled",
    "per_grant",
    "assume_role",
    "errors",
    "p50_ms",
    "p99_ms",
}


def extra(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def fleet_rows(f: Figures) -> list[Row]:
    rows = [
        Row(
            FLEET,
            FLEET_FIGURES[0],
            f"{f['jobs']} / {f['repos']} / {extra(f['spread_seconds'])}",
            f"{f['distinct_grants']} distinct grants; real broker code, simulated AWS and "
            "quota; latency includes CPU contention",
        )
    ]
    for row in f["rows"]:  # every row, whatever its cache kind: the figures are generic
        errors = row.get("errors") or {}
        notes = [
            f"{extra(row.get('per_grant', '?'))} per grant",
            f"AssumeRole {extra(row.get('assume_role', '?'))}",
            f"jobs failed: {statuses(errors)}" if errors else "no job failed",
            f"p50 / p99 {ms(row['p50_ms'])} / {ms(row['p99_ms'])} ms"
            if "p50_ms" in row and "p99_ms" in row
            else "",
            *(f"{key} {extra(value)}" for key, value in row.items() if key not in FLEET_ROW_KEYS),
        ]
        rows.append(
            Row(
                FLEET,
                f"{row.get('cache', '?')} cache, N={row.get('instances', '?')}: "
                "GetAuthorizationToken calls (throttled)",
                f"{extra(row.get('get_authorization_token', '?'))} "
                f"({extra(row.get('throttled', '?'))})",
                "; ".join(note for note in notes if note),
            )
        )
    return rows


COLD_START = "cold start"
COLD_START_SCENARIOS = ("1 issuer", "3 issuers", "3 issuers, 1 hanging")
COLD_START_FIGURES = tuple(
    f"{scenario}: {figure}"
    for scenario in COLD_START_SCENARIOS
    for figure in (
        "init, prefetch off / on (ms, median of {runs})",
        "first request, prefetch off / on (ms, median of {runs})",
        "init + first request, prefetch off / on (ms, median of {runs})",
        "issuer requests during the first request, prefetch off / on",
    )
)
COLD_START_NOTES = {
    "1 issuer": "the rules name one issuer",
    "3 issuers": "the rules name three, fetched side by side: init waits for the slowest",
    "3 issuers, 1 hanging": "the last never answers: init waits for it within the prefetch's "
    "deadline (BROKER_JWKS_PREFETCH_SECONDS=2; a fetch gets half the time left)",
}


def count(value: float) -> str:
    """A median of counts: whole unless it fell between two."""
    return f"{value:g}"


def cold_start_rows(f: Figures) -> list[Row]:
    runs, delay = f["runs"], f["delay_ms"]
    rows = []
    for number, scenario in enumerate(COLD_START_SCENARIOS):  # a scenario missing fails
        off, on = f["cold_start"][scenario]["off"], f["cold_start"][scenario]["on"]
        figures = COLD_START_FIGURES[number * 4 : number * 4 + 4]
        cells = (
            (
                pair(ms(off["init_ms"]), ms(on["init_ms"])),
                "import broker.app in a fresh process with AWS_LAMBDA_FUNCTION_NAME set; "
                f"issuer answering in {ms(delay)} ms; {COLD_START_NOTES[scenario]}",
            ),
            (
                pair(ms(off["first_request_ms"]), ms(on["first_request_ms"])),
                "GET /v1/grants through broker.app.handler, RS256 verified, no AWS call",
            ),
            (
                pair(ms(off["total_ms"]), ms(on["total_ms"])),
                "median of the sums: what the first caller of a new instance waits, less "
                "the interpreter's start",
            ),
            (
                pair(
                    count(off["issuer_requests_in_first_request"]),
                    count(on["issuer_requests_in_first_request"]),
                ),
                "discovery and JWKS requests the first request waited for (the issuer's log)",
            ),
        )
        rows += [
            Row(COLD_START, figure.format(runs=runs), value, notes)
            for figure, (value, notes) in zip(figures, cells, strict=True)
        ]
    return rows


RULES_ADMIN = "rules admin"
RULES_ADMIN_FIGURES = (
    "load {rules} rules: parse + acceptance check (ms, median of {runs})",
    "read {tests} tests (ms, median of {runs})",
    "run {tests} tests, explain each (ms, median of {runs})",
    "rules test: in-process / python -m cabroker_admin (ms)",
    "rules check, every lint: in-process / python -m cabroker_admin (ms)",
)


def rules_admin_rows(f: Figures) -> list[Row]:
    times, runs = f["ms"], f["runs"]
    names = [
        name.format(rules=f["rules"], tests=f["tests"], runs=runs) for name in RULES_ADMIN_FIGURES
    ]
    return [
        Row(
            RULES_ADMIN,
            names[0],
            ms(times["load"]),
            f"{f['issuers']} issuers (GitHub, GitLab, a corporate IdP, Buildkite); "
            f"{f['rules_bytes']:,} bytes of YAML",
        ),
        Row(RULES_ADMIN, names[1], ms(times["parse_tests"]), f"{f['tests_bytes']:,} bytes of YAML"),
        Row(
            RULES_ADMIN,
            names[2],
            ms(times["run_tests"]),
            f"{f['us_per_test']:,.0f} µs a test; allowed, narrowed, refused, exceeded",
        ),
        Row(
            RULES_ADMIN,
            names[3],
            pair(ms(times["test_in_process"]), ms(times["test_cli"])),
            f"in-process: the three above, median of {runs}; the command: once, wall, a new "
            f"process; {f['cli_output']}",
        ),
        Row(
            RULES_ADMIN,
            names[4],
            pair(ms(times["check_in_process"]), ms(times["check_cli"])),
            f"{f['findings']} findings; in-process median of {runs}, the command once",
        ),
    ]


# ------------------------------------------------------------------------ running

_JWT = re.compile(r"eyJ[\w-]+(?:\.[\w-]*)+")
_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')
_PLACEHOLDER = re.compile(r"\{\w+\}")  # {runs}, {instances}… in a figure's name


def redact(text: str) -> str:
    """No token or ID token reaches the output, even inside an error message."""
    return _JWT.sub("<redacted>", text)


def reason_of(stderr: str, returncode: int) -> str:
    """One line: the error's last line, where in this repository it was raised, the status."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if not lines:
        return f"exit {returncode}, nothing on stderr"
    last = lines[-1]
    ours = [
        f"{Path(m[1]).relative_to(ROOT)}:{m[2]} {m[3]}"
        for m in map(_FRAME.search, lines)
        if m and Path(m[1]).is_relative_to(ROOT) and ".venv" not in Path(m[1]).parts
    ]
    where = f" at {ours[-1]}" if ours else ""
    return redact(f"{last[:160]}{where} (exit {returncode})")


def execute(command: Sequence[str], timeout: float) -> tuple[int, str, str]:
    """(status, stdout, stderr); on timeout the process group is ended and TimeoutError raised."""
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: on timeout, end what it started too
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
                process.communicate(timeout=5)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue
        raise TimeoutError(f"timed out after {timeout:.0f} s") from None
    return process.returncode, out, err


def failed_rows(benchmark: Benchmark, reason: str) -> list[Row]:
    names = [_PLACEHOLDER.sub("N", name) for name in benchmark.figures]
    names = names or ["(every figure)"]
    first = Row(benchmark.name, names[0], f"failed: {reason}")
    return [first, *(Row(benchmark.name, name, "failed (see above)") for name in names[1:])]


def measure(benchmark: Benchmark, log: Callable[[str], None]) -> tuple[list[Row], bool]:
    """The benchmark's rows, and whether it succeeded."""
    script = f"{benchmark.name} ({' '.join(Path(part).name for part in benchmark.command[1:])})"
    log(f"bench: {script} …")
    started = time.perf_counter()
    try:
        status, out, err = execute(benchmark.command, benchmark.timeout)
        if status != 0:
            raise RuntimeError(reason_of(err, status))
        objects = [line for line in out.splitlines() if line.startswith("{")]
        if not objects:
            raise RuntimeError("no JSON object on stdout")
        try:
            rows = [
                row._replace(benchmark=benchmark.name)
                for row in benchmark.rows(json.loads(objects[-1]))
            ]
        except (KeyError, TypeError, ValueError) as error:
            raise RuntimeError(f"unexpected JSON: {type(error).__name__} {error}") from None
    except (RuntimeError, TimeoutError, OSError) as error:
        reason = redact(str(error))
        log(f"bench: {script} failed after {time.perf_counter() - started:.0f} s: {reason}")
        return failed_rows(benchmark, reason), False
    log(f"bench: {script} done in {time.perf_counter() - started:.0f} s")
    ok = not any(row.value.startswith("failed") for row in rows)
    return rows, ok


def benchmarks() -> list[Benchmark]:
    python = sys.executable

    def script(name: str, *args: str) -> list[str]:
        return [python, str(BENCH / name), "--json", *args]

    return [
        # The script's defaults: 1000 requests; 10 cold imports (its default is 7).
        Benchmark(
            BROKER,
            script("broker_request.py", "--import-runs", "10"),
            broker_rows,
            BROKER_FIGURES,
            120,
        ),
        Benchmark(DEVSTACK, script("devstack_tokens.py"), devstack_rows, DEVSTACK_FIGURES, 150),
        Benchmark(CLIENT, script("client_env.py"), client_rows, CLIENT_FIGURES, 120),
        Benchmark(FLEET, script("fleet.py"), fleet_rows, FLEET_FIGURES, 180),
        # 5 cold instances a figure, not the script's 9: about 30 s rather than 50.
        Benchmark(
            COLD_START,
            script("cold_start.py", "--runs", "5"),
            cold_start_rows,
            COLD_START_FIGURES,
            90,
        ),
        # The script's defaults: 200 rules, 1000 tests, 5 runs.
        Benchmark(
            RULES_ADMIN, script("rules_admin.py"), rules_admin_rows, RULES_ADMIN_FIGURES, 120
        ),
    ]


# ------------------------------------------------------------------------ the table


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def render(rows: Iterable[Row]) -> str:
    """An aligned plain-text table that is also a Markdown table."""
    body = [tuple(cell(text) for text in row) for row in rows]
    widths = [max(len(c[i]) for c in [COLUMNS, *body]) for i in range(len(COLUMNS))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(COLUMNS), rule, *(line(c) for c in body)])


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for entry in info:
                if entry.startswith("model name"):
                    return entry.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def header(now: datetime) -> str:
    return (
        f"make bench, {now.strftime('%Y-%m-%d %H:%M UTC')}: {os.cpu_count()} CPUs ({cpu_model()}, "
        f"{platform.machine()}), Python {platform.python_version()}, {platform.system()}"
    )


def main(selected: Sequence[Benchmark] | None = None) -> int:
    def log(message: str) -> None:
        print(redact(message), file=sys.stderr, flush=True)

    started = time.perf_counter()
    now = datetime.now(UTC)
    rows: list[Row] = []
    ok = True
    for benchmark in benchmarks() if selected is None else selected:
        measured, succeeded = measure(benchmark, log)
        rows.extend(measured)
        ok = ok and succeeded
    print(header(now))
    print()
    print(render(rows))
    log(f"bench: {time.perf_counter() - started:.0f} s in all" + ("" if ok else "; some failed"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
