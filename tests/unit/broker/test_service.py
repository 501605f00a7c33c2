"""Audit logging: who and what for every decision, and never a token or an ID token anywhere."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import GITHUB_CLAIMS, Answer
from tests.support.codeartifact import FakeCodeArtifact
from tests.support.oidc import LocalIssuer

Call = Callable[..., Answer]


def audit_lines(records: list[logging.LogRecord]) -> list[dict[str, Any]]:
    """The audit records' fields (Powertools puts ``extra`` on the record)."""
    return [dict(r.__dict__) for r in records if getattr(r, "decision", None)]


def test_no_token_or_id_token_in_any_log_record(
    call: Call,
    github: LocalIssuer,
    corp: LocalIssuer,
    codeartifact: FakeCodeArtifact,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    good = github.mint(**GITHUB_CLAIMS)
    id_tokens = [
        good,
        github.mint(**{**GITHUB_CLAIMS, "repository_owner": "evil"}),  # 403
        github.mint(exp=1, **GITHUB_CLAIMS),  # 401 expired
        corp.mint(sub="alice", groups=["engineering"]),
    ]
    answers = [
        call("POST", "/v1/token", token=id_tokens[0], body={}),
        call("POST", "/v1/token", token=id_tokens[0], body={}),  # cache hit
        call("POST", "/v1/token", token=id_tokens[1], body={}),
        call("POST", "/v1/token", token=id_tokens[2], body={}),
        call("POST", "/v1/token", token=id_tokens[3], body={"access": "publish"}),
        call("GET", "/v1/grants", token=id_tokens[0]),
    ]
    codeartifact.failures["GetAuthorizationToken"] = ("ThrottlingException", 429)
    answers.append(call("POST", "/v1/token", token=id_tokens[3], body={}))
    assert [a.status for a in answers] == [200, 200, 403, 401, 403, 200, 503]

    output = capfd.readouterr()
    everything = output.out + output.err + caplog.text
    everything += "".join(json.dumps(r.__dict__, default=str) for r in caplog.records)
    assert codeartifact.tokens, "a CodeArtifact token was minted"
    for secret in [*codeartifact.tokens, *id_tokens]:
        assert secret not in everything
        # Nor any recognisable part of one (JWT segments, token prefixes).
        for part in secret.split("."):
            assert part[:32] not in everything
    for answer in answers[2:]:
        assert all(secret not in json.dumps(answer.body) for secret in id_tokens)

    audits = audit_lines(caplog.records)
    issued = [a for a in audits if a["decision"] == "allow"]
    assert len(issued) == 2
    assert issued[0]["issuer"] == "github"
    assert issued[0]["subject"] == "repo:acme/app:ref:refs/heads/main"
    assert issued[0]["rule"] == "release-from-main"
    assert issued[0]["repository"] == "internal"
    assert issued[0]["access"] == "publish"
    assert issued[0]["packages"] == ["acme-*"]
    assert issued[0]["expires_at"].endswith("Z")
    assert issued[0]["id_token_sha256"] == hashlib.sha256(good.encode()).hexdigest()
    assert [a["cached"] for a in issued] == [False, True]
    denied = [a for a in audits if a["decision"] == "deny"]
    assert {d["reason"] for d in denied} >= {"no-matching-rule", "grant-exceeded"}
    assert all(len(d["id_token_sha256"]) == 64 for d in denied)


def test_metrics_count_issued_tokens_and_denials(
    call: Call, github_token: str, capfd: pytest.CaptureFixture[str]
) -> None:
    call("POST", "/v1/token", token=github_token, body={})
    call("POST", "/v1/token", token=github_token, body={"duration_seconds": 9999})
    metrics = [json.loads(line) for line in capfd.readouterr().out.splitlines() if '"_aws"' in line]
    issued = [m for m in metrics if "TokensIssued" in m]
    denials = [m for m in metrics if "Denials" in m]
    assert issued[0]["access"] == "publish"
    assert denials[0]["reason"] == "grant-exceeded"
    assert issued[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "CodeArtifactBroker"


def test_v1_config_tells_a_device_login_its_scopes_and_public_secret_and_a_ci_issuer_neither() -> (
    None
):
    from broker.rules import Issuer
    from broker.service import public_issuer

    google = Issuer(
        "google", "https://accounts.google.com", "c", "c", "GOCSPX-x", ("openid", "email")
    )
    assert public_issuer(google) == {
        "name": "google",
        "url": "https://accounts.google.com",
        "audience": "c",
        "client_id": "c",
        "scopes": ["openid", "email"],
        "client_secret": "GOCSPX-x",
    }
    github = Issuer("github", "https://token.actions.githubusercontent.com", "a")
    assert public_issuer(github) == {"name": "github", "url": github.url, "audience": "a"}
