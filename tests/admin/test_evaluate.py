"""`cabroker-admin rules explain` and `rules test`, as an admin runs them: offline, exit 0 a
decision printed or every test passed, 1 a failing test or an invalid document, 2 a wrong
command line or TESTS document; every error one line, and an ID token never printed."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from tests.admin.conftest import BROKEN, ELSEWHERE, ENGINEERS, RELEASES
from tests.admin.test_cli import one_error, run

GITHUB = """\
  github: {url: "https://token.actions.githubusercontent.com", audience: "https://b.example"}
"""
# RELEASES (corp: engineers-read, release-from-main) and a GitHub rule with a claim glob.
RULES = RELEASES.replace("issuers:\n", "issuers:\n" + GITHUB) + (
    """\
  - name: main-publishes
    issuer: github
    claims: {repository_owner: acme, ref: refs/heads/main, repository: "acme/*"}
    grant: {repository: internal, access: publish, packages: ["acme-*"], max_duration: 1800}
"""
)
TESTS = """\
tests:
  - name: engineers-read
    issuer: corp
    claims: {sub: alice, groups: [engineering]}
    expect: {decision: allow, rule: engineers-read, repository: internal, access: read,
             packages: [], max_duration: 43200}
  - name: release-publishes-acme
    issuer: corp
    claims: {groups: release}
    request: {packages: [Acme_Lib], duration_seconds: 900}
    expect: {decision: allow, access: publish, packages: [acme-lib]}
  - name: main-publishes
    issuer: github
    claims: {repository_owner: acme, ref: refs/heads/main, repository: acme/app}
    expect: {decision: allow, rule: main-publishes, max_duration: 1800}
  - name: tags-are-refused
    issuer: github
    claims: {repository_owner: acme, ref: refs/tags/v1, repository: acme/app}
    expect: {decision: deny, reason: no-matching-rule}
  - name: read-cannot-publish
    issuer: corp
    claims: {groups: engineering}
    request: {access: publish}
    expect: {decision: deny, reason: grant-exceeded}
"""
# The tests of issuer corp alone (ENGINEERS names no other issuer).
CORP_TESTS = "tests:\n" + "".join(
    "  - name: " + case for case in TESTS.split("  - name: ")[1:] if "issuer: corp" in case
)


def write(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.fixture
def rules(tmp_path: Path) -> str:
    return write(tmp_path, "rules.yaml", RULES)


def explain(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    return run(capsys, "rules", "explain", *argv)


# --------------------------------------------------------------------------- explain


def test_explain_prints_an_allow_with_the_rule_the_grant_and_each_rule(
    rules: str, capsys: pytest.CaptureFixture[str]
) -> None:
    claims = json.dumps({"sub": "alice", "groups": ["engineering", "staff"]})
    code, out, err = explain(capsys, rules, "--issuer", "corp", "--claims", claims)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"{rules}: issuer 'corp'",
        "allow: rule 'engineers-read', read access to repository 'internal', 43200 s "
        "(max_duration 43200)",
        "rules of issuer 'corp' (2):",
        "  engineers-read: matched",
        "  release-from-main: not matched",
        "    claims.groups: none of its 2 values 'engineering', 'staff' matches 'release'",
    ]


def test_explain_prints_a_deny_with_the_reason_and_each_failing_constraint(
    rules: str, capsys: pytest.CaptureFixture[str]
) -> None:
    claims = json.dumps({"sub": "ci", "repository_owner": "acme", "ref": "refs/tags/v1"})
    code, out, _ = explain(capsys, rules, "--issuer", "github", "--claims", claims)
    assert code == 0
    assert out.splitlines()[1:] == [
        "deny (no-matching-rule): no access rule matches issuer 'github' subject 'ci'; ask an "
        "admin for access",
        "rules of issuer 'github' (1):",
        "  main-publishes: not matched",
        "    claims.ref: value 'refs/tags/v1' does not match 'refs/heads/main'",
        "    claims.repository: missing claim",
    ]


def test_explain_takes_claims_and_a_request_from_files_and_prints_json(
    rules: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    claims = write(tmp_path, "claims.json", json.dumps({"groups": "release"}))
    request = write(tmp_path, "request.json", json.dumps({"packages": ["acme-lib"]}))
    code, out, err = explain(
        capsys, rules, "--issuer", "corp", "--claims", f"@{claims}", "--request", f"@{request}",
        "--format", "json",
    )  # fmt: skip
    assert (code, err) == (0, "")
    decided = json.loads(out)
    assert list(decided) == ["decision", "rule", "grant", "reason", "detail", "rules"]
    assert (decided["decision"], decided["rule"], decided["grant"]["packages"]) == (
        "allow",
        "release-from-main",
        ["acme-lib"],
    )
    assert decided["rules"] == [
        {
            "name": "engineers-read",
            "matched": False,
            "failed": [{"claim": "groups", "why": "value 'release' does not match 'engineering'"}],
        },
        {"name": "release-from-main", "matched": True, "failed": []},
    ]


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        ('{"access": "write"}', "invalid-request"),
        ("[]", "invalid-request"),
        ('{"access": "publish"}', "grant-exceeded"),
    ],
)
def test_explain_exits_0_for_a_deny(
    rules: str, capsys: pytest.CaptureFixture[str], request_: str, reason: str
) -> None:
    code, out, _ = explain(
        capsys, rules, "--issuer", "corp", "--claims", '{"groups": "engineering"}',
        "--request", request_, "--format", "json",
    )  # fmt: skip
    assert code == 0
    assert (json.loads(out)["decision"], json.loads(out)["reason"]) == ("deny", reason)


def unsigned_jwt(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def test_explain_reads_an_id_tokens_claims_says_it_is_unchecked_and_never_prints_it(
    rules: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = unsigned_jwt({"sub": "alice", "groups": ["engineering"], "iss": "x"})
    path = write(tmp_path, "token", token + "\n")
    code, out, err = explain(capsys, rules, "--issuer", "corp", "--id-token", f"@{path}")
    assert (code, err) == (0, "")
    assert "its signature was NOT checked" in out.splitlines()[1]
    assert "allow: rule 'engineers-read'" in out
    code, out, err = explain(
        capsys, rules, "--issuer", "corp", "--id-token", f"@{path}", "--format", "json"
    )
    assert code == 0
    assert json.loads(out)["decision"] == "allow"
    assert "signature was NOT checked" in one_error(err)
    for part in token.split("."):
        assert not part or part not in out + err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not-a-token", "not a JWT (header.payload.signature): 1 parts"),
        ("a.!!!.c", "its payload is not base64url-encoded JSON"),
        ("a.b.c.d.e", "not a JWT (header.payload.signature): 5 parts"),
        ("e30." + base64.urlsafe_b64encode(b"[1]").decode().rstrip("=") + ".", "not a JSON object"),
    ],
)
def test_a_malformed_id_token_is_a_usage_error_that_quotes_nothing_of_it(
    rules: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = write(tmp_path, "token", content)
    code, out, err = explain(capsys, rules, "--issuer", "corp", "--id-token", f"@{path}")
    assert (code, out) == (2, "")
    line = one_error(err)
    assert line.startswith(f"cabroker-admin: --id-token @{path}: ")
    assert message in line
    assert content not in line


def test_an_id_token_on_the_command_line_is_refused_and_not_echoed(
    rules: str, capsys: pytest.CaptureFixture[str]
) -> None:
    token = unsigned_jwt({"sub": "alice"})
    code, _, err = explain(capsys, rules, "--issuer", "corp", "--id-token", token)
    assert code == 2
    assert "--id-token takes @PATH" in one_error(err)
    assert token not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--claims", "{x"], "--claims: not JSON: Expecting property name"),
        (["--claims", "[1]"], "--claims: must be a JSON object"),
        (["--claims", '{"a": NaN}'], "--claims: not JSON: NaN is not JSON"),
        (["--claims", "@/nonexistent/claims.json"], "--claims /nonexistent/claims.json: cannot"),
        (["--claims", "{}", "--request", "{"], "--request: not JSON"),
        (["--claims", "{}", "--issuer", "gitlab"], "--issuer 'gitlab' is not an issuer of"),
        (["--claims", "{}", "--domain", "A b"], "--domain 'A b' is not a CodeArtifact domain"),
        (
            ["--claims", "{}", "--repositories", "internal", "--domain-owner", "12"],
            "--domain-owner '12' is not a 12-digit AWS account id",
        ),
        (["--claims", "{}", "--repositories", ","], "--repositories: "),
    ],
)
def test_explain_usage_errors_exit_2_with_one_line(
    rules: str, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    issuer = [] if "--issuer" in argv else ["--issuer", "corp"]
    code, out, err = explain(capsys, rules, *issuer, *argv)
    assert (code, out) == (2, "")
    assert message in one_error(err)


def test_explain_names_a_missing_file_and_an_unknown_issuer(
    rules: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = explain(capsys, "/nonexistent/rules.yaml", "--issuer", "corp", "--claims", "{}")
    assert code == 2
    assert one_error(err) == (
        "cabroker-admin: rules file /nonexistent/rules.yaml: cannot read: No such file or directory"
    )
    code, _, err = explain(capsys, rules, "--issuer", "nope", "--claims", "{}")
    assert code == 2
    assert one_error(err) == (
        f"cabroker-admin: --issuer 'nope' is not an issuer of {rules} ('github', 'corp')"
    )


def test_explain_needs_an_issuer_and_claims(rules: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert explain(capsys, rules, "--claims", "{}")[0] == 2
    assert explain(capsys, rules, "--issuer", "corp")[0] == 2
    assert explain(capsys, rules, "--issuer", "corp", "--claims", "{}", "--id-token", "@x")[0] == 2


def test_explain_exits_1_for_an_invalid_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = write(tmp_path, "broken.yaml", BROKEN)
    code, out, err = explain(capsys, broken, "--issuer", "corp", "--claims", "{}")
    assert (code, out) == (1, "")
    assert one_error(err).startswith(f"cabroker-admin: {broken}: not valid YAML: ")
    (tmp_path / "latin1.yaml").write_bytes("version: 1 # é\n".encode("latin-1"))
    code, _, err = explain(
        capsys, str(tmp_path / "latin1.yaml"), "--issuer", "corp", "--claims", "{}"
    )
    assert code == 1
    assert "not UTF-8 text (at byte offset 13)" in one_error(err)


def test_with_repositories_explain_applies_the_acceptance_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = write(tmp_path, "elsewhere.yaml", ELSEWHERE)
    argv = [elsewhere, "--issuer", "corp", "--claims", '{"groups": "engineering"}']
    assert explain(capsys, *argv)[0] == 0  # parsed only
    code, _, err = explain(capsys, *argv, "--repositories", "internal,restricted")
    assert code == 1
    assert one_error(err) == (
        f"cabroker-admin: {elsewhere}: rule 'engineers-read': field 'grant.repository': "
        "'elsewhere' is not a repository this deployment serves (internal, restricted)"
    )
    code, _, _ = explain(
        capsys, *argv, "--repositories", "elsewhere", "--domain", "acme", "--domain-owner",
        "123456789012",
    )  # fmt: skip
    assert code == 0


def test_the_rules_group_lists_the_offline_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "rules", "--help")
    assert code == 0
    for command in ("explain", "test", "diff"):
        assert command in out
    code, out, _ = run(capsys, "rules", "explain", "--help")
    assert code == 0
    assert "NOT checked" in out


# --------------------------------------------------------------------------- test


def rules_test(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    return run(capsys, "rules", "test", *argv)


def test_every_test_passing_exits_0_with_the_summary(
    rules: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tests = write(tmp_path, "tests.yaml", TESTS)
    assert rules_test(capsys, rules, tests) == (0, "5 passed, 0 failed\n", "")
    served = ["--repositories", "internal", "--domain", "acme", "--domain-owner", "123456789012"]
    assert rules_test(capsys, rules, tests, *served)[0] == 0


def test_a_failing_test_is_printed_with_what_happened_instead(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The corp tests against ENGINEERS (no release rule).
    engineers = write(tmp_path, "engineers.yaml", ENGINEERS)
    tests = write(tmp_path, "tests.yaml", CORP_TESTS)
    code, out, err = rules_test(capsys, engineers, tests)
    assert (code, err) == (1, "")
    assert out.splitlines() == [
        "FAIL release-publishes-acme: decision differs",
        "  expected: decision allow, access publish, packages acme-lib",
        "  got:      deny (no-matching-rule): no access rule matches issuer 'corp' subject "
        "None; ask an admin for access",
        "  rule engineers-read: claims.groups: value 'release' does not match 'engineering'",
        "2 passed, 1 failed",
    ]


def test_a_test_of_the_wrong_grant_names_each_field_that_differs(
    rules: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tests = write(
        tmp_path,
        "tests.yaml",
        "tests:\n  - name: wrong\n    issuer: corp\n    claims: {groups: engineering}\n"
        "    expect: {decision: allow, rule: other, max_duration: 3600, access: read}\n",
    )
    code, out, _ = rules_test(capsys, rules, tests)
    assert code == 1
    assert out.splitlines()[0] == "FAIL wrong: rule, max_duration differ"
    assert out.splitlines()[-1] == "0 passed, 1 failed"


ONE = "tests:\n  - name: one\n    issuer: corp\n    claims: {groups: engineering}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tests: []\n", "field 'tests' must be a non-empty list of tests"),
        ("- 1\n", "must be a mapping with the field 'tests'"),
        ("tests: [1]\ncases: 2\n", "unknown field(s) cases"),
        ("tests: [1]\n", "test #1 must be a mapping"),
        ("tests:\n  - issuer: corp\n", "test #1: field 'name' must be a non-empty string"),
        (ONE, "test 'one': field 'expect' is missing"),
        (
            ONE + "    expect: {decision: allow}\n    extra: 1\n",
            "test 'one': unknown field(s) extra",
        ),
        (
            ONE + "    expect: {decision: maybe}\n",
            "test 'one': field 'expect.decision' must be 'allow' or 'deny'",
        ),
        (ONE + "    expect: allow\n", "test 'one': field 'expect' must be a mapping"),
        (ONE + "    expect: {decision: allow, grant: x}\n", "field 'expect.grant' is unknown"),
        (
            ONE + "    expect: {decision: deny, rule: x}\n",
            "field 'expect.rule' goes with decision allow only",
        ),
        (
            ONE + "    expect: {decision: allow, reason: grant-exceeded}\n",
            "field 'expect.reason' goes with decision deny only",
        ),
        (ONE + "    expect: {decision: deny, reason: nope}\n", "field 'expect.reason' must be one"),
        (ONE + "    expect: {decision: allow, access: write}\n", "'expect.access' must be 'read'"),
        (
            ONE + "    expect: {decision: allow, max_duration: 1h}\n",
            "field 'expect.max_duration' must be a whole number of seconds",
        ),
        (
            ONE + "    expect: {decision: allow, packages: ['a b']}\n",
            "test 'one': field 'expect.packages': 'a b' ",
        ),
        (
            ONE + "    expect: {decision: allow, rule: 7}\n",
            "field 'expect.rule' must be a non-empty string",
        ),
        (
            ONE + "    request: [1]\n    expect: {decision: allow}\n",
            "field 'request' must be a mapping",
        ),
        (
            ONE.replace("{groups: engineering}", "{iat: 2024-01-01}")
            + "    expect: {decision: deny}\n",
            "test 'one': field 'claims.iat' holds a date, which is not JSON (quote it)",
        ),
        (
            ONE.replace("{groups: engineering}", "engineering") + "    expect: {decision: deny}\n",
            "test 'one': field 'claims' must be a mapping",
        ),
        (
            ONE.replace("issuer: corp", "issuer: 7") + "    expect: {decision: deny}\n",
            "field 'issuer' must be a non-empty string",
        ),
        (
            ONE
            + "    expect: {decision: deny}\n"
            + ONE.split("\n", 1)[1]
            + "    expect: {decision: deny}\n",
            "test 'one': field 'name' is used by another test",
        ),
        (ONE + "    claims: {}\n", "not valid YAML: duplicate key 'claims' at line 5"),
        ("tests: [\n", "not valid YAML: "),
    ],
)
def test_a_malformed_tests_document_exits_2_naming_the_test_and_field(
    rules: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    tests = write(tmp_path, "tests.yaml", text)
    code, out, err = rules_test(capsys, rules, tests)
    assert (code, out) == (2, "")
    line = one_error(err)
    assert line.startswith(f"cabroker-admin: {tests}")
    assert message in line


def test_rules_test_exit_codes_for_files(
    rules: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tests = write(tmp_path, "tests.yaml", TESTS)
    broken = write(tmp_path, "broken.yaml", BROKEN)
    assert rules_test(capsys, broken, tests)[0] == 1
    code, _, err = rules_test(capsys, rules, str(tmp_path / "missing.yaml"))
    assert code == 2
    assert one_error(err).startswith("cabroker-admin: TESTS ")
    assert rules_test(capsys, rules)[0] == 2
