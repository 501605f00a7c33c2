"""Benchmark of the offline rules commands (``cabroker-admin rules test``, and the loading
every rules command does), printed as one table.

Generates a realistic document (``--rules`` rules over four issuers, GitHub Actions, GitLab
CI, a corporate IdP and Buildkite: claim constraints with globs and lists, GitHub and GitLab
matched by immutable ids (``repository_owner_id`` / ``repository_id``, ``job_namespace_id`` /
``job_project_id``) as their documentation advises, read and publish grants over eight
repositories) and ``--tests`` tests of it (allowed, narrowed, refused, exceeded), then times,
each the median of ``--runs`` runs:

- loading the document as a push checks it (the broker's parse and acceptance check);
- reading the tests document;
- running the tests (one :func:`broker.explain.explain` each);
- ``rules test`` in-process (the three above), and once as ``python -m cabroker_admin rules
  test`` in a new process (start-up and imports included).

Every generated test must pass: a failure is a bug of the generator or of the decision.

Run: ``.venv/bin/python bench/rules_admin.py [--rules 200] [--tests 1000] [--runs 5] [--json]``
(under a minute); ``make bench`` runs it (``--json``) for its one table (``bench/report.py``).
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

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "functions"), str(ROOT / "admin"), str(ROOT)]

from cabroker_admin import evaluate, lint  # noqa: E402 - after the path is set

REPOSITORIES = ("internal", "platform", "data", "ml", "web", "mobile", "security", "tools")
ISSUERS = {
    "github": {
        "url": "https://token.actions.githubusercontent.com",
        "audience": "https://broker.example.com",
    },
    "gitlab": {"url": "https://gitlab.example.com", "audience": "https://broker.example.com"},
    "corp": {
        "url": "https://login.example.com",
        "audience": "0oa1cabrokercli",
        "client_id": "0oa1cabrokercli",
    },
    "buildkite": {"url": "https://agent.buildkite.com", "audience": "https://broker.example.com"},
}
KINDS = tuple(ISSUERS)
# Immutable ids, as GitHub and GitLab advise matching (a name can be renamed and taken over).
GITHUB_OWNER_ID = "1001"  # acme's organization
GITLAB_NAMESPACE_ID = "3001"  # acme's group


def project_ids(base: int, index: int) -> tuple[str, str]:
    """Rule ``index``'s team's two repositories (GitHub) or projects (GitLab): unique ids."""
    return str(base + 2 * index + 1), str(base + 2 * index + 2)


def github_repository_ids(index: int) -> tuple[str, str]:
    return project_ids(2000, index)


def gitlab_project_ids(index: int) -> tuple[str, str]:
    return project_ids(4000, index)


def rule(index: int) -> dict[str, Any]:
    """Rule ``index``: its team's claims (unique to it) and grant."""
    team = f"team{index:03d}"
    kind = KINDS[index % len(KINDS)]
    repository = REPOSITORIES[index % len(REPOSITORIES)]
    publish = {
        "repository": repository,
        "access": "publish",
        "packages": [f"{team}-*", f"acme-{team}"],
    }
    if kind == "github":
        claims: dict[str, Any] = {
            "repository_owner_id": GITHUB_OWNER_ID,
            "repository_id": list(github_repository_ids(index)),
            "ref": ["refs/heads/main", "refs/tags/v*"],
        }
        grant: dict[str, Any] = {**publish, "max_duration": 3600}
    elif kind == "gitlab":
        claims = {
            "job_namespace_id": GITLAB_NAMESPACE_ID,
            "job_project_id": list(gitlab_project_ids(index)),
            "ref_protected": "true",
        }
        grant = {**publish, "max_duration": 1800}
    elif kind == "corp":
        claims = {"groups": [f"{team}-readers", f"{team}-admins"], "email": "*@acme.example"}
        grant = {"repository": repository, "access": "read", "max_duration": 43200}
    else:
        claims = {
            "organization_slug": "acme",
            "pipeline_slug": [f"{team}-build", f"{team}-release-*"],
            "build_branch": "main",
        }
        grant = {**publish, "max_duration": 900}
    return {"name": f"{kind}-{team}", "issuer": kind, "claims": claims, "grant": grant}


def identity(index: int, matching: bool) -> dict[str, Any]:
    """Claims of a caller rule ``index`` matches (or, not ``matching``, a near miss)."""
    team = f"team{index:03d}"
    kind = KINDS[index % len(KINDS)]
    if kind == "github":
        claims: dict[str, Any] = {
            "sub": f"repo:acme/{team}-app:ref:refs/heads/main",
            "repository_owner_id": GITHUB_OWNER_ID,
            "repository": f"acme/{team}-app",
            "ref": "refs/heads/main" if matching else "refs/heads/feature",
            "repository_id": github_repository_ids(index)[1],
            "run_attempt": "1",
        }
    elif kind == "gitlab":
        claims = {
            "sub": f"project_path:acme/{team}/service:ref_type:branch:ref:main",
            "job_namespace_id": GITLAB_NAMESPACE_ID,
            "job_project_id": gitlab_project_ids(index)[1],
            "ref_protected": "true" if matching else "false",
            "pipeline_id": str(500_000 + index),
        }
    elif kind == "corp":
        claims = {
            "sub": f"00u{index:06d}",
            "groups": ["everyone", f"{team}-readers" if matching else f"{team}-guests"],
            "email": f"dev{index}@acme.example",
            "email_verified": True,
        }
    else:
        claims = {
            "sub": f"organization:acme:pipeline:{team}-build",
            "organization_slug": "acme",
            "pipeline_slug": f"{team}-release-2" if matching else f"{team}-deploy",
            "build_branch": "main",
            "build_number": index,
        }
    return claims


def document(rules: int) -> dict[str, Any]:
    return {"version": 1, "issuers": ISSUERS, "rules": [rule(i) for i in range(rules)]}


def tests(rules: int, count: int) -> dict[str, Any]:
    """``count`` tests over the rules, five kinds in turn: allowed as granted, narrowed to
    read, refused (a near miss of the claims), exceeded (over the maximum duration, or another
    repository), narrowed packages (publish) or publish asked of a read grant."""
    cases = []
    for number in range(count):
        index, variant = number % rules, (number // rules) % 5
        granted = rule(index)
        grant = granted["grant"]
        case: dict[str, Any] = {
            "name": f"test-{number:05d}",
            "issuer": granted["issuer"],
            "claims": identity(index, matching=variant != 2),
        }
        allow = {"decision": "allow", "rule": granted["name"], "repository": grant["repository"]}
        if variant == 0:
            expect = {
                **allow,
                "access": grant["access"],
                "packages": grant.get("packages", []),
                "max_duration": grant["max_duration"],
            }
        elif variant == 1:
            case["request"] = {"repository": grant["repository"], "access": "read"}
            expect = {**allow, "access": "read", "packages": []}
        elif variant == 2:
            expect = {"decision": "deny", "reason": "no-matching-rule"}
        elif variant == 3:
            if grant["max_duration"] < 43200:
                case["request"] = {"duration_seconds": grant["max_duration"] + 60}
            else:  # another repository than the rule's
                others = [r for r in REPOSITORIES if r != grant["repository"]]
                case["request"] = {"repository": others[index % len(others)]}
            expect = {"decision": "deny", "reason": "grant-exceeded"}
        elif grant["access"] == "publish":
            team = f"team{index:03d}"
            case["request"] = {"packages": [f"{team}-cli"], "duration_seconds": 900}
            expect = {**allow, "access": "publish", "packages": [f"{team}-cli"]}
        else:
            case["request"] = {"access": "publish"}
            expect = {"decision": "deny", "reason": "grant-exceeded"}
        case["expect"] = expect
        cases.append(case)
    return {"tests": cases}


def median_ms(runs: int, work: Callable[[], object]) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def measure(rules: int, count: int, runs: int) -> dict[str, Any]:
    rules_text = yaml.safe_dump(document(rules), sort_keys=False)
    tests_text = yaml.safe_dump(tests(rules, count), sort_keys=False)
    served = list(REPOSITORIES)

    def load() -> Any:
        return evaluate.load_rules(rules_text, "rules.yaml", served)

    def read_tests() -> Any:
        return evaluate.parse_tests(tests_text, "tests.yaml")

    loaded, cases = load(), read_tests()
    failed = [r.case.name for r in evaluate.run(loaded, cases) if not r.passed]
    if failed:
        raise SystemExit(f"generated tests fail: {', '.join(failed[:5])}")

    def test_command() -> Any:
        return evaluate.run(load(), read_tests())

    deployment = lint.Deployment(repositories=tuple(served), internal_prefixes=("acme",))

    def check_command() -> Any:
        return lint.check(rules_text, deployment)

    with tempfile.TemporaryDirectory() as tmp:
        rules_path, tests_path = Path(tmp) / "rules.yaml", Path(tmp) / "tests.yaml"
        rules_path.write_text(rules_text, encoding="utf-8")
        tests_path.write_text(tests_text, encoding="utf-8")
        command = [sys.executable, "-m", "cabroker_admin", "rules", "test"]
        command += [str(rules_path), str(tests_path), "--repositories", ",".join(served)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path[:3])}
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        cli_ms = (time.perf_counter() - started) * 1000
        if done.returncode != 0:
            raise SystemExit(f"cabroker-admin rules test failed: {done.stdout}{done.stderr}")
        check = [sys.executable, "-m", "cabroker_admin", "rules", "check", str(rules_path)]
        check += ["--repositories", ",".join(served), "--internal-prefixes", "acme"]
        started = time.perf_counter()
        checked = subprocess.run(check, capture_output=True, text=True, env=env, check=False)
        check_cli_ms = (time.perf_counter() - started) * 1000
        if checked.returncode not in (0, 1) or "CAB001" in checked.stdout:
            raise SystemExit(f"cabroker-admin rules check failed: {checked.stdout}{checked.stderr}")
    run_ms = median_ms(runs, lambda: evaluate.run(loaded, cases))
    return {
        "python": sys.version.split()[0],
        "rules": rules,
        "issuers": len(ISSUERS),
        "tests": count,
        "runs": runs,
        "rules_bytes": len(rules_text.encode()),
        "tests_bytes": len(tests_text.encode()),
        "ms": {
            "load": median_ms(runs, load),
            "parse_tests": median_ms(runs, read_tests),
            "run_tests": run_ms,
            "test_in_process": median_ms(runs, test_command),
            "test_cli": cli_ms,
            "check_in_process": median_ms(runs, check_command),
            "check_cli": check_cli_ms,
        },
        "findings": len(check_command().findings),
        "us_per_test": run_ms * 1000 / count,
        "cli_output": done.stdout.strip().splitlines()[-1],
    }


def table(figures: dict[str, Any]) -> list[tuple[str, str]]:
    ms, rules, count, runs = figures["ms"], figures["rules"], figures["tests"], figures["runs"]
    return [
        (
            "rules document",
            f"{rules} rules, {figures['issuers']} issuers, {figures['rules_bytes']:,} bytes",
        ),
        ("tests document", f"{count} tests, {figures['tests_bytes']:,} bytes"),
        (f"load: parse + acceptance check (median of {runs})", f"{ms['load']:.1f} ms"),
        (f"read the tests (median of {runs})", f"{ms['parse_tests']:.1f} ms"),
        (
            f"run {count} tests, explain each (median of {runs})",
            f"{ms['run_tests']:.1f} ms ({figures['us_per_test']:.0f} µs a test)",
        ),
        (f"`rules test` in-process (median of {runs})", f"{ms['test_in_process']:.1f} ms"),
        ("`python -m cabroker_admin rules test` (once, wall)", f"{ms['test_cli']:.0f} ms"),
        (
            f"`rules check` with every lint, in-process (median of {runs})",
            f"{ms['check_in_process']:.1f} ms ({figures['findings']} findings)",
        ),
        ("`python -m cabroker_admin rules check` (once, wall)", f"{ms['check_cli']:.0f} ms"),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rules", type=int, default=200)
    parser.add_argument("--tests", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    figures = measure(args.rules, args.tests, args.runs)
    if args.json:
        print(json.dumps(figures))
        return
    rows = table(figures)
    width = max(len(name) for name, _ in rows)
    print(f"{'benchmark':<{width}}  result")
    print(f"{'-' * width}  {'-' * 30}")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(json.dumps({"python": figures["python"]}))


if __name__ == "__main__":
    main()
