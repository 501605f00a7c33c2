"""bench/report.py (``make bench``): the one table from fixed figures, failed benchmarks as
rows, and each benchmark script's ``--json`` mode, run for real with tiny counts, read by the
report's row builders."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bench import report

BROKER: dict[str, Any] = {
    "python": "3.11.7",
    "requests": 1000,
    "import_runs": 10,
    "cold_import": {
        "default_tracing": "Active",
        "default": {"import_ms": 126.4, "wall_ms": 174.2},
        "detailed": {"import_ms": 283.0, "wall_ms": 416.9},
    },
    "request_ms": {
        "cache_hit": {"p50": 0.2812, "p99": 0.4634},
        "cache_miss": {"p50": 2.541, "p99": 48.87},
    },
    "package": {
        "path": ".aws-sam/build/BrokerFunction",
        "unzipped_bytes": 24_597_687,
        "zipped_bytes": 7_681_609,
        "built_at": "2026-11-24T20:53:41+00:00",
        "stale": False,
    },
}
DEVSTACK: dict[str, Any] = {
    "requests": 400,
    "clients": 4,
    "instances": 2,
    "start_seconds": 2.71,
    "uncached": {
        "rps": 126.4,
        "p50_ms": 30.31,
        "p99_ms": 194.6,
        "statuses": {"200": 399, "503": 1},
    },
    "cached": {"rps": 687.2, "p50_ms": 5.51, "p99_ms": 12.6, "statuses": {"200": 400}},
    "throttled": {"served_rps": 41.8, "sent_rps": 644.0, "statuses": {"200": 26, "429": 374}},
    "demo": {"seconds": 4.53, "passed": True},
}
CLIENT: dict[str, Any] = {
    "runs": 10,
    "import_ms": {"cabroker.cli": 26.6, "cabroker.keyring_backend": 58.8},
    "env_cold_ms": {"median": 129.2, "slowest": 204.6},
    "env_warm_ms": {"median": 57.2, "slowest": 63.8},
    "aws_login_ms": {"median": 643.8, "slowest": 703.1},
}
FLEET: dict[str, Any] = {
    "jobs": 1000,
    "repos": 100,
    "spread_seconds": 10.0,
    "distinct_grants": 100,
    "rows": [
        {
            "cache": "per-instance",
            "instances": 50,
            "get_authorization_token": 1350,
            "throttled": 540,
            "per_grant": 13.5,
            "assume_role": 887,
            "errors": {"503 upstream-unavailable": 77},
            "p50_ms": 5179.3,
            "p99_ms": 11032.5,
        },
        {  # a cache kind the report does not know of, with a figure it does not know of
            "cache": "shared",
            "instances": 50,
            "get_authorization_token": 100,
            "throttled": 0,
            "per_grant": 1.0,
            "assume_role": 100,
            "errors": {},
            "p50_ms": 61.25,
            "p99_ms": 140.0,
            "dynamodb_reads": 1000,
        },
    ],
}

COLD_START: dict[str, Any] = {
    "python": "3.11.7",
    "runs": 5,
    "delay_ms": 100.0,
    "load_average": {"before": [0.5, 0.6, 0.7], "after": [1.1, 0.8, 0.7]},
    "cold_start": {
        "1 issuer": {
            "off": {
                "init_ms": 412.3,
                "first_request_ms": 215.7,
                "issuer_requests_in_first_request": 2,
                "total_ms": 628.4,
            },
            "on": {
                "init_ms": 618.9,
                "first_request_ms": 4.12,
                "issuer_requests_in_first_request": 0,
                "total_ms": 623.0,
            },
        },
        "3 issuers": {
            "off": {
                "init_ms": 409.8,
                "first_request_ms": 214.2,
                "issuer_requests_in_first_request": 2,
                "total_ms": 624.1,
            },
            "on": {
                "init_ms": 631.5,
                "first_request_ms": 4.3,
                "issuer_requests_in_first_request": 0,
                "total_ms": 636.2,
            },
        },
        "3 issuers, 1 hanging": {
            "off": {
                "init_ms": 411.0,
                "first_request_ms": 216.0,
                "issuer_requests_in_first_request": 2,
                "total_ms": 627.0,
            },
            "on": {
                "init_ms": 2418.6,
                "first_request_ms": 4.25,
                "issuer_requests_in_first_request": 0.5,  # a median between two runs
                "total_ms": 2422.9,
            },
        },
    },
}
RULES_ADMIN: dict[str, Any] = {
    "python": "3.11.7",
    "rules": 200,
    "issuers": 4,
    "tests": 1000,
    "runs": 5,
    "rules_bytes": 52_310,
    "tests_bytes": 331_874,
    "ms": {
        "load": 118.1,
        "parse_tests": 152.07,
        "run_tests": 454.66,
        "test_in_process": 767.67,
        "test_cli": 1078.05,
        "check_in_process": 263.86,
        "check_cli": 538.47,
    },
    "findings": 150,
    "us_per_test": 454.66,
    "cli_output": "1000 passed, 0 failed",
}

RowsOf = Callable[[report.Figures], list[report.Row]]


def parse(table: str) -> list[list[str]]:
    """The table's cells, checking on the way that it is aligned and a valid Markdown table."""
    lines = table.splitlines()
    assert len({len(line) for line in lines}) == 1, "every line as wide as the others"
    assert all(line.startswith("|") and line.endswith("|") for line in lines)
    assert set(lines[1]) == {"|", "-"}, "the second line is Markdown's header rule"
    cells = [[c.strip() for c in line[1:-1].split(" | ")] for line in lines[:1] + lines[2:]]
    assert all(len(row) == 4 for row in cells)
    return cells


def test_one_table_from_fixed_figures() -> None:
    rows = (
        report.broker_rows(BROKER)
        + report.devstack_rows(DEVSTACK)
        + report.client_rows(CLIENT)
        + report.fleet_rows(FLEET)
        + report.cold_start_rows(COLD_START)
        + report.rules_admin_rows(RULES_ADMIN)
    )
    cells = parse(report.render(rows))
    assert cells[0] == ["benchmark", "figure", "value", "notes"]
    table = {(b, f): (v, n) for b, f, v, n in cells[1:]}
    assert len(table) == len(cells) - 1, "no figure twice"

    def value(benchmark: str, figure: str) -> str:
        return table[benchmark, figure][0]

    def notes(benchmark: str, figure: str) -> str:
        return table[benchmark, figure][1]

    broker = "broker Lambda"
    default = "cold import broker.app, default deployment (ms, median of 10)"
    assert value(broker, default) == "126"
    assert "174 ms" in notes(broker, default)
    assert "Tracing=Active" in notes(broker, default)
    assert value(broker, "cold import broker.app, Tracing=Detailed (ms, median of 10)") == "283"
    assert value(broker, "POST /v1/token in-process, cache hit p50 / p99 (ms)") == "0.28 / 0.46"
    assert value(broker, "POST /v1/token in-process, cache miss p50 / p99 (ms)") == "2.54 / 48.9"
    assert value(broker, "function package (built zip, KB)") == "7,502"
    assert notes(broker, "function package (built zip, KB)") == (
        "24,021 KB unzipped; built 2026-11-24 20:53 UTC"
    )

    assert value("devstack", "devstack start, 2 broker instances (s)") == "2.7"
    assert value("devstack", "devstack tokens/s uncached / cached") == "126 / 687"
    assert "not 200: uncached 503: 1" in notes("devstack", "devstack tokens/s uncached / cached")
    throttled = "devstack tokens/s uncached, template throttling: served / sent"
    assert value("devstack", throttled) == "42 / 644"
    assert notes("devstack", throttled).endswith("200: 26, 429: 374")
    assert value("devstack", "demo story: real pip, twine, uv (s)") == "4.5"

    imports = "import cabroker.cli / cabroker.keyring_backend (ms, median of 10)"
    assert value("client", imports) == "26.6 / 58.8"
    assert value("client", "cabroker env cold (median ms)") == "129"
    assert value("client", "cabroker env warm (median ms)") == "57.2"
    login = "aws codeartifact login --tool pip (median ms)"
    assert value("client", login) == "644"
    assert "11.3 times cabroker env warm" in notes("client", login)

    assert value("fleet", "burst: CI jobs / repositories / spread (s)") == "1000 / 100 / 10.0"
    per_instance = "per-instance cache, N=50: GetAuthorizationToken calls (throttled)"
    assert value("fleet", per_instance) == "1,350 (540)"
    assert notes("fleet", per_instance) == (
        "13.5 per grant; AssumeRole 887; jobs failed: 503 upstream-unavailable: 77; "
        "p50 / p99 5,179 / 11,032 ms"
    )
    shared = "shared cache, N=50: GetAuthorizationToken calls (throttled)"
    assert value("fleet", shared) == "100 (0)"
    assert notes("fleet", shared) == (
        "1.0 per grant; AssumeRole 100; no job failed; p50 / p99 61.2 / 140 ms; "
        "dynamodb_reads 1,000"
    )
    assert [b for b, *_ in cells[1:]].count("fleet") == 3, "one line per fleet row, and the burst"

    cold = "cold start"
    expected = {
        "1 issuer": ("412 / 619", "216 / 4.12", "628 / 623", "2 / 0"),
        "3 issuers": ("410 / 632", "214 / 4.30", "624 / 636", "2 / 0"),
        "3 issuers, 1 hanging": ("411 / 2,419", "216 / 4.25", "627 / 2,423", "2 / 0.5"),
    }
    for scenario, (init, first, total, requests) in expected.items():
        assert value(cold, f"{scenario}: init, prefetch off / on (ms, median of 5)") == init
        assert value(cold, f"{scenario}: first request, prefetch off / on (ms, median of 5)") == (
            first
        )
        assert (
            value(cold, f"{scenario}: init + first request, prefetch off / on (ms, median of 5)")
            == total
        )
        assert (
            value(cold, f"{scenario}: issuer requests during the first request, prefetch off / on")
            == requests
        )
    hanging = "3 issuers, 1 hanging: init, prefetch off / on (ms, median of 5)"
    assert "issuer answering in 100 ms" in notes(cold, hanging)
    assert "BROKER_JWKS_PREFETCH_SECONDS=2" in notes(cold, hanging)
    assert [b for b, *_ in cells[1:]].count(cold) == 12, "four figures for each of 3 scenarios"

    admin = "rules admin"
    load = "load 200 rules: parse + acceptance check (ms, median of 5)"
    assert value(admin, load) == "118"
    assert "4 issuers" in notes(admin, load)
    assert "52,310 bytes" in notes(admin, load)
    assert value(admin, "read 1000 tests (ms, median of 5)") == "152"
    assert notes(admin, "read 1000 tests (ms, median of 5)") == "331,874 bytes of YAML"
    run = "run 1000 tests, explain each (ms, median of 5)"
    assert value(admin, run) == "455"
    assert notes(admin, run).startswith("455 µs a test")
    test = "rules test: in-process / python -m cabroker_admin (ms)"
    assert value(admin, test) == "768 / 1,078"
    assert notes(admin, test).endswith("1000 passed, 0 failed")
    check = "rules check, every lint: in-process / python -m cabroker_admin (ms)"
    assert value(admin, check) == "264 / 538"
    assert notes(admin, check).startswith("150 findings")
    assert [b for b, *_ in cells[1:]].count(admin) == 5


@pytest.mark.parametrize(
    ("rows", "figures", "names"),
    [
        (report.cold_start_rows, COLD_START, report.COLD_START_FIGURES),
        (report.rules_admin_rows, RULES_ADMIN, report.RULES_ADMIN_FIGURES),
        (report.broker_rows, BROKER, report.BROKER_FIGURES),
        (report.client_rows, CLIENT, report.CLIENT_FIGURES),
    ],
)
def test_the_rows_are_the_figures_a_failed_run_names(
    rows: RowsOf, figures: dict[str, Any], names: tuple[str, ...]
) -> None:
    """Each figure the report lists (and names in a failed run's rows) is a row, in order."""
    formats = {"runs": figures.get("import_runs", figures.get("runs"))}
    formats |= {key: figures[key] for key in ("rules", "tests") if key in figures}
    assert [row.figure for row in rows(figures)] == [name.format(**formats) for name in names]


def without(figures: dict[str, Any], *path: str) -> dict[str, Any]:
    """A deep copy of ``figures`` without the figure at ``path``."""
    copy: dict[str, Any] = json.loads(json.dumps(figures))
    parent = copy
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    return copy


COLD = (report.cold_start_rows, report.COLD_START_FIGURES)
ADMIN = (report.rules_admin_rows, report.RULES_ADMIN_FIGURES)


@pytest.mark.parametrize(
    ("rows_and_names", "figures"),
    [
        (COLD, without(COLD_START, "cold_start", "3 issuers, 1 hanging")),
        (COLD, without(COLD_START, "cold_start", "3 issuers", "on")),
        (COLD, without(COLD_START, "cold_start", "1 issuer", "off", "total_ms")),
        (COLD, without(COLD_START, "cold_start", "1 issuer", "on", "first_request_ms")),
        (COLD, without(COLD_START, "cold_start", "3 issuers", "off", "init_ms")),
        (
            COLD,
            without(COLD_START, "cold_start", "1 issuer", "on", "issuer_requests_in_first_request"),
        ),
        (COLD, without(COLD_START, "delay_ms")),
        (ADMIN, without(RULES_ADMIN, "ms", "check_cli")),
        (ADMIN, without(RULES_ADMIN, "ms", "run_tests")),
        (ADMIN, without(RULES_ADMIN, "findings")),
        (ADMIN, without(RULES_ADMIN, "us_per_test")),
    ],
)
def test_a_missing_figure_fails_the_benchmark(
    rows_and_names: tuple[RowsOf, tuple[str, ...]],
    figures: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Not a row left out: the benchmark's every row reads failed, and the exit status is 1."""
    rows, names = rows_and_names
    printed = python(f"print({json.dumps(json.dumps(figures))})")
    benchmark = report.Benchmark("partial", printed, rows, names, 30)
    assert report.main([benchmark]) == 1
    cells = parse("\n".join(capsys.readouterr().out.splitlines()[2:]))
    values = [v for _, _, v, _ in cells[1:]]
    assert len(values) == len(benchmark.figures)
    assert values[0].startswith("failed: unexpected JSON: KeyError")
    assert set(values[1:]) == {"failed (see above)"}
    assert "{" not in "".join(f for _, f, _, _ in cells[1:]), "placeholders read N"


def test_not_built_skipped_and_failed_demo_rows() -> None:
    rows = (
        report.broker_rows({**BROKER, "package": None})
        + report.client_rows({**CLIENT, "aws_login_ms": None})
        + report.devstack_rows({**DEVSTACK, "demo": {"seconds": 9.0, "passed": False}})
    )
    found = {row.figure: row.value for row in rows}
    assert found["function package (built zip, KB)"] == "not built: run make build"
    assert found["aws codeartifact login --tool pip (median ms)"] == "skipped: run make venv-awscli"
    demo = found["demo story: real pip, twine, uv (s)"]
    assert demo == "failed: the story did not pass (9.0 s)"


def test_a_pipe_in_a_cell_does_not_split_it() -> None:
    cells = parse(report.render([report.Row("a|b", "figure", "1", "x | y")]))
    assert cells[1] == ["a\\|b", "figure", "1", "x \\| y"]


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_failures_become_rows_and_the_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
    benchmarks = [
        report.Benchmark(
            "fine", python(f"print('noise'); print({json.dumps(json.dumps(CLIENT))})"),
            report.client_rows, report.CLIENT_FIGURES, 30,
        ),
        report.Benchmark(
            "crashes", python(f"raise SystemExit('cannot mint for {jwt}')"),
            report.client_rows, ("first", "second"), 30,
        ),
        report.Benchmark(
            "hangs", python("import time; time.sleep(60)"), report.client_rows, ("only",), 1
        ),
        report.Benchmark("silent", python("pass"), report.client_rows, ("only",), 30),
        report.Benchmark("other JSON", python("print('{}')"), report.client_rows, ("only",), 30),
    ]  # fmt: skip
    started = time.monotonic()
    assert report.main(benchmarks) == 1
    assert time.monotonic() - started < 20, "the hanging one was ended at its timeout"
    out, err = capsys.readouterr()
    assert out.startswith("make bench, ")
    assert "CPUs" in out.splitlines()[0]
    assert "Python" in out.splitlines()[0]
    assert out.splitlines()[1] == ""
    cells = parse("\n".join(out.splitlines()[2:]))
    found = {(b, f): v for b, f, v, _ in cells[1:]}
    assert found["fine", "cabroker env warm (median ms)"] == "57.2"
    assert found["crashes", "first"] == "failed: cannot mint for <redacted> (exit 1)"
    assert found["crashes", "second"] == "failed (see above)"
    assert found["hangs", "only"] == "failed: timed out after 1 s"
    assert found["silent", "only"] == "failed: no JSON object on stdout"
    assert found["other JSON", "only"] == "failed: unexpected JSON: KeyError 'runs'"
    assert "eyJ" not in out + err
    assert "noise" not in out, "only the table on stdout"
    assert "bench: crashes" in err, "progress on stderr"


def test_all_succeeding_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    fine = report.Benchmark(
        "fine", python(f"print({json.dumps(json.dumps(FLEET))})"), report.fleet_rows, (), 30
    )
    assert report.main([fine]) == 0
    assert "shared cache, N=50" in capsys.readouterr().out


# ------------------------------------------- each script's --json mode, for real, tiny counts

TINY = {
    "broker_request.py": ["--requests", "20", "--import-runs", "1"],
    "devstack_tokens.py": [
        "--requests",
        "10",
        "--clients",
        "2",
        "--instances",
        "1",
        "--skip",
        "throttled",
        "demo",
    ],
    "client_env.py": ["--runs", "1"],
    "fleet.py": ["--jobs", "20", "--repos", "5", "--spread", "0.2", "--instances", "2"],
    "cold_start.py": ["--runs", "1", "--delay", "0.01"],
    "rules_admin.py": ["--rules", "8", "--tests", "40", "--runs", "1"],
}
ROWS = {
    "broker_request.py": report.broker_rows,
    "devstack_tokens.py": report.devstack_rows,
    "client_env.py": report.client_rows,
    "fleet.py": report.fleet_rows,
    "cold_start.py": report.cold_start_rows,
    "rules_admin.py": report.rules_admin_rows,
}


@pytest.fixture(scope="module")
def outputs() -> Iterator[dict[str, tuple[int, str, str]]]:
    """Every script's (status, stdout, stderr), all run side by side to save time."""
    running = {
        name: subprocess.Popen(
            [sys.executable, str(report.BENCH / name), "--json", *args],
            cwd=report.ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in TINY.items()
    }
    try:
        done = {}
        for name, process in running.items():
            out, err = process.communicate(timeout=90)
            done[name] = (process.returncode, out, err)
        yield done
    finally:
        for process in running.values():
            process.kill()
            process.communicate()


@pytest.mark.parametrize("script", sorted(TINY))
def test_json_mode_prints_one_object_the_report_reads(
    script: str, outputs: dict[str, tuple[int, str, str]]
) -> None:
    status, out, err = outputs[script]
    assert status == 0, err[-2000:]
    lines = out.splitlines()
    assert len(lines) == 1, f"stdout is the JSON object alone: {lines[:3]}"
    figures = json.loads(lines[0])
    rows = ROWS[script](figures)
    assert rows
    assert not [row for row in rows if row.value.startswith("failed")]
    if (report.ROOT / ".venv-awscli" / "bin" / "aws").exists():  # make test builds it
        assert not [row for row in rows if row.value.startswith("skipped")]
    if script == "broker_request.py":
        hit, miss = figures["request_ms"]["cache_hit"], figures["request_ms"]["cache_miss"]
        assert 0 < hit["p50"] <= hit["p99"]
        assert 0 < miss["p50"] <= miss["p99"]
        assert hit["p50"] < miss["p50"], "a cache hit is cheaper than a mint"
        assert figures["requests"] == 20
    elif script == "devstack_tokens.py":
        assert figures["uncached"]["statuses"] == {"200": 10}
        assert figures["cached"]["statuses"] == {"200": 10}
        assert "demo" not in figures
        assert "throttled" not in figures
    elif script == "client_env.py":
        assert figures["runs"] == 1
        assert 0 < figures["env_warm_ms"]["median"] < figures["env_cold_ms"]["median"]
    elif script == "cold_start.py":
        assert figures["runs"] == 1
        assert len(rows) == len(report.COLD_START_FIGURES)
        for scenario in report.COLD_START_SCENARIOS:
            off, on = figures["cold_start"][scenario]["off"], figures["cold_start"][scenario]["on"]
            assert on["issuer_requests_in_first_request"] == 0, "the prefetch fetched the keys"
            assert off["issuer_requests_in_first_request"] > 0, "without it, the request does"
    elif script == "rules_admin.py":
        assert (figures["rules"], figures["tests"], figures["runs"]) == (8, 40, 1)
        assert figures["cli_output"] == "40 passed, 0 failed"
        assert len(rows) == len(report.RULES_ADMIN_FIGURES)
    else:
        assert {row["instances"] for row in figures["rows"]} == {2}
        assert len(rows) == 1 + len(figures["rows"])
