"""The Lambda end to end, in process: handler → OIDC verification (live local issuer) → rules →
sts:AssumeRole (moto) → CodeArtifact (botocore Stubber, validated against the real model)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

from tests.conftest import GITHUB_CLAIMS, RULES, Answer, StsRecorder
from tests.support.codeartifact import FakeCodeArtifact
from tests.support.events import Context, http_event
from tests.support.faults import DeadlineContext
from tests.support.oidc import (
    IssuerServer,
    LocalIssuer,
    forge,
    hs256_with_public_key,
    private_key,
    public_jwk,
)

Call = Callable[..., Answer]
ENDPOINT = "https://acme-111122223333.d.codeartifact.us-east-1.amazonaws.com/pypi/internal/"
DOMAIN_ARN = "arn:aws:codeartifact:us-east-1:111122223333:domain/acme"
REPO_ARN = "arn:aws:codeartifact:us-east-1:111122223333:repository/acme/internal"
PACKAGE_ARN = "arn:aws:codeartifact:us-east-1:111122223333:package/acme/internal/pypi//"


def statements(policy: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in policy["Statement"]}


def assert_no_aws_call(sts_calls: StsRecorder, codeartifact: FakeCodeArtifact) -> None:
    assert sts_calls.calls == []
    assert codeartifact.calls == []


# --------------------------------------------------------------------------- happy paths


def test_publish_grant_defaults_from_the_single_matching_rule(
    call: Call, github_token: str, codeartifact: FakeCodeArtifact, sts_calls: StsRecorder
) -> None:
    answer = call("POST", "/v1/token", token=github_token)  # no body at all: every default
    assert answer.status == 200, answer.body
    assert answer.body == {
        "token": codeartifact.tokens[-1],
        "expires_at": answer.body["expires_at"],
        "username": "aws",
        "repository": "internal",
        "access": "publish",
        "packages": ["acme-*"],
        "index_url": ENDPOINT + "simple/",
        "upload_url": ENDPOINT,
        "domain": "acme",
        "domain_owner": "111122223333",
        "region": "us-east-1",
    }
    assert answer.body["expires_at"].endswith("Z")
    assert answer.headers["Cache-Control"] == "no-store"
    assert codeartifact.operations() == ["GetRepositoryEndpoint", "GetAuthorizationToken"]
    assert codeartifact.calls[-1].params == {
        "domain": "acme",
        "domainOwner": "111122223333",
        "durationSeconds": 3600,
    }
    (sent,) = sts_calls.calls
    assert sent["RoleArn"] == "arn:aws:iam::123456789012:role/TokenIssuerRole"
    assert sent["SourceIdentity"] == "github.repo-acme-app-ref-refs-heads-main"
    assert sent["RoleSessionName"] == sent["SourceIdentity"]
    # CodeArtifact was called with the assumed session's credentials, not the broker's own.
    assert codeartifact.calls[-1].access_key_id != "testing"


def test_publish_session_policy_is_narrowed_to_the_requested_packages(
    call: Call, github_token: str, sts_calls: StsRecorder
) -> None:
    body = {"access": "publish", "packages": ["acme-lib", "Acme_Tools*"], "duration_seconds": 900}
    answer = call("POST", "/v1/token", token=github_token, body=body)
    assert answer.status == 200, answer.body
    assert answer.body["packages"] == ["acme-lib", "acme-tools*"]
    (policy,) = sts_calls.policies()
    by_sid = statements(policy)
    assert set(by_sid) == {"Token", "Bearer", "Read", "Publish"}
    assert by_sid["Token"]["Resource"] == DOMAIN_ARN
    assert by_sid["Bearer"]["Condition"] == {
        "StringEquals": {"sts:AWSServiceName": "codeartifact.amazonaws.com"},
        "NumericLessThanEquals": {"sts:DurationSeconds": 900},
    }
    assert by_sid["Read"]["Resource"] == REPO_ARN
    assert by_sid["Publish"]["Resource"] == [PACKAGE_ARN + "acme-lib", PACKAGE_ARN + "acme-tools*"]
    assert by_sid["Publish"]["Action"] == [
        "codeartifact:PublishPackageVersion",
        "codeartifact:PutPackageMetadata",
    ]


def test_read_grant_for_a_corporate_identity_with_an_ec_key(
    call: Call, corp_token: str, codeartifact: FakeCodeArtifact, sts_calls: StsRecorder
) -> None:
    answer = call("POST", "/v1/token", token=corp_token, body={"access": "read"})
    assert answer.status == 200, answer.body
    assert answer.body["access"] == "read"
    assert answer.body["packages"] == []
    assert codeartifact.calls[-1].params["durationSeconds"] == 43200
    (policy,) = sts_calls.policies()
    assert set(statements(policy)) == {"Token", "Bearer", "Read"}  # nothing package-level
    assert sts_calls.calls[0]["SourceIdentity"] == "corp.alice@example.com"


def test_same_caller_and_grant_is_served_from_the_token_cache(
    call: Call, github_token: str, codeartifact: FakeCodeArtifact, sts_calls: StsRecorder
) -> None:
    first = call("POST", "/v1/token", token=github_token, body={})
    second = call("POST", "/v1/token", token=github_token, body={})
    assert first.status == second.status == 200
    assert second.body["token"] == first.body["token"]
    assert len(sts_calls.calls) == 1
    assert codeartifact.operations().count("GetAuthorizationToken") == 1


def test_repository_endpoint_is_cached_across_grants(
    call: Call, github_token: str, codeartifact: FakeCodeArtifact
) -> None:
    assert call("POST", "/v1/token", token=github_token, body={}).status == 200
    narrower = {"packages": ["acme-lib"]}
    assert call("POST", "/v1/token", token=github_token, body=narrower).status == 200
    assert codeartifact.operations() == [
        "GetRepositoryEndpoint",
        "GetAuthorizationToken",
        "GetAuthorizationToken",
    ]


def test_rotated_issuer_key_is_picked_up(
    call: Call, github: LocalIssuer, github_token: str
) -> None:
    assert call("POST", "/v1/token", token=github_token).status == 200
    github.keys = {"gh-2": private_key("gh-2")}  # the issuer rotates: old key gone
    rotated = github.mint("gh-2", **GITHUB_CLAIMS)
    answer = call("POST", "/v1/token", token=rotated)
    assert answer.status == 200, answer.body
    assert github.jwks_requests == 2


def test_grants_lists_what_the_caller_may_ask_for(call: Call, github_token: str) -> None:
    answer = call("GET", "/v1/grants", token=github_token)
    assert answer.status == 200
    assert answer.body == {
        "issuer": "github",
        "subject": "repo:acme/app:ref:refs/heads/main",
        "grants": [
            {
                "rule": "release-from-main",
                "repository": "internal",
                "access": "publish",
                "packages": ["acme-*"],
                "max_duration_seconds": 3600,
            }
        ],
    }


def test_config_needs_no_token_and_reveals_no_claims(
    call: Call, github: LocalIssuer, corp: LocalIssuer
) -> None:
    answer = call("GET", "/v1/config")
    assert answer.status == 200
    assert answer.body["issuers"] == [
        {"name": "github", "url": github.url, "audience": "codeartifact-broker"},
        {
            "name": "corp",
            "url": corp.url,
            "audience": "cabroker",
            "client_id": "cabroker-cli",
            "scopes": ["openid"],
        },
    ]
    assert answer.body["repositories"] == ["internal"]
    assert answer.body["limits"]["max_duration_seconds"] == 43200
    assert "refs/heads/main" not in json.dumps(answer.body)


# --------------------------------------------------------------------------- 401: identity


def _oversized(issuer: LocalIssuer) -> str:
    return issuer.mint(**GITHUB_CLAIMS, padding="x" * 9000)


def _attacker_jwk_header(issuer: LocalIssuer) -> str:
    attacker = private_key("attacker")
    jwk = public_jwk(attacker, "gh-1")
    return issuer.mint("gh-1", key=attacker, headers={"jwk": jwk}, **GITHUB_CLAIMS)


def _jku_header(issuer: LocalIssuer) -> str:
    return issuer.mint(headers={"jku": "https://attacker.example/jwks"}, **GITHUB_CLAIMS)


def _alg_none(issuer: LocalIssuer) -> str:
    return forge({"alg": "none", "typ": "JWT"}, issuer.claims(**GITHUB_CLAIMS))


def _hs256(issuer: LocalIssuer) -> str:
    return hs256_with_public_key(issuer, "gh-1", issuer.claims(**GITHUB_CLAIMS))


def _unknown_kid(issuer: LocalIssuer) -> str:
    return issuer.mint("gh-1", key=private_key("gh-unknown"), headers={"kid": "gh-9"})


def _untrusted(issuer: LocalIssuer, server: IssuerServer) -> str:
    evil = server.issuers.get("evil") or server.add("evil", "codeartifact-broker")
    evil.keys = {"gh-1": issuer.keys["gh-1"]}
    return evil.mint(**GITHUB_CLAIMS)


TokenMaker = Callable[[LocalIssuer, IssuerServer], str | None]
BAD_TOKENS: list[tuple[str, TokenMaker, str]] = [
    ("malformed", lambda i, s: "not-a-jwt", "not a signed JWT"),
    ("three garbage segments", lambda i, s: "a.b.c", "not a well-formed JWT"),
    ("alg none", lambda i, s: _alg_none(i), "algorithm 'none' is not accepted"),
    ("HS256 keyed with the public key", lambda i, s: _hs256(i), "'HS256' is not accepted"),
    ("jwk smuggled in header", lambda i, s: _attacker_jwk_header(i), "may not carry jwk"),
    ("jku in header", lambda i, s: _jku_header(i), "may not carry jku"),
    ("unknown kid after refresh", lambda i, s: _unknown_kid(i), "kid 'gh-9'"),
    ("untrusted issuer", _untrusted, "issuer is not trusted"),
    (
        "wrong iss (trailing slash)",
        lambda i, s: i.mint(iss=i.url + "/", **GITHUB_CLAIMS),
        "issuer is not trusted",
    ),
    (
        "wrong aud",
        lambda i, s: i.mint(aud="sts.amazonaws.com", **GITHUB_CLAIMS),
        "audience must be",
    ),
    (
        "expired",
        lambda i, s: i.mint(exp=int(time.time()) - 120, **GITHUB_CLAIMS),
        "has expired",
    ),
    (
        "not yet valid",
        lambda i, s: i.mint(nbf=int(time.time()) + 600, **GITHUB_CLAIMS),
        "not valid yet",
    ),
    (
        "issued in the future",
        lambda i, s: i.mint(iat=int(time.time()) + 600, **GITHUB_CLAIMS),
        "not valid yet",
    ),
    ("missing exp", lambda i, s: i.mint(exp=None, **GITHUB_CLAIMS), "'exp' claim"),
    ("missing sub", lambda i, s: i.mint(sub=None, **GITHUB_CLAIMS), "'sub' claim"),
    (
        "signed by another key with a known kid",
        lambda i, s: i.mint("gh-1", key=private_key("attacker"), **GITHUB_CLAIMS),
        "signature does not verify",
    ),
    ("oversized", lambda i, s: _oversized(i), "longer than 8192 bytes"),
    ("not ascii", lambda i, s: "a\ud800.b.c", "not a signed JWT"),
    ("payload not an object", lambda i, s: forge({"alg": "RS256", "kid": "gh-1"}, [1]), "JWT"),
]


@pytest.mark.parametrize(
    ("make", "reason"),
    [pytest.param(make, reason, id=name) for name, make, reason in BAD_TOKENS],
)
def test_bad_id_tokens_get_401_and_no_aws_call(
    call: Call,
    github: LocalIssuer,
    issuer_server: IssuerServer,
    sts_calls: StsRecorder,
    codeartifact: FakeCodeArtifact,
    make: TokenMaker,
    reason: str,
) -> None:
    token = make(github, issuer_server)
    answer = call("POST", "/v1/token", token=token, body={})
    assert answer.status == 401, answer.body
    assert answer.problem_type == "invalid-token"
    assert reason in answer.body["detail"]
    assert answer.headers["WWW-Authenticate"].startswith("Bearer ")
    assert_no_aws_call(sts_calls, codeartifact)


@pytest.mark.parametrize(
    ("headers", "slug"),
    [
        pytest.param({}, "missing-token", id="no header"),
        pytest.param({"Authorization": ""}, "missing-token", id="empty header"),
        pytest.param({"Authorization": "Basic YXdzOnNlY3JldA=="}, "invalid-token", id="basic"),
        pytest.param({"Authorization": "Bearer"}, "invalid-token", id="bearer without token"),
        pytest.param({"Authorization": "Token abc.def.ghi"}, "invalid-token", id="other scheme"),
    ],
)
@pytest.mark.parametrize("route", [("POST", "/v1/token"), ("GET", "/v1/grants")])
def test_missing_or_wrong_authorization_gets_401(
    call: Call,
    sts_calls: StsRecorder,
    codeartifact: FakeCodeArtifact,
    headers: dict[str, str],
    slug: str,
    route: tuple[str, str],
) -> None:
    answer = call(*route, headers=headers)
    assert answer.status == 401
    assert answer.problem_type == slug
    assert answer.headers["WWW-Authenticate"].startswith('Bearer realm="cabroker"')
    assert_no_aws_call(sts_calls, codeartifact)


def test_unknown_kids_refresh_the_jwks_at_most_once_per_interval(
    call: Call, github: LocalIssuer
) -> None:
    for _ in range(3):
        assert call("POST", "/v1/token", token=_unknown_kid(github)).status == 401
    assert github.jwks_requests == 2  # the first load, then one forced refresh


# --------------------------------------------------------------------------- 403 / 400: rules


NEAR_MISSES = [
    ("owner prefix", {"repository_owner": "acm"}),
    ("owner suffix", {"repository_owner": "acmex"}),
    ("owner case", {"repository_owner": "Acme"}),
    ("owner trailing newline", {"repository_owner": "acme\n"}),
    ("owner as list element of another", {"repository_owner": ["other"]}),
    ("owner not a string", {"repository_owner": 42}),
    ("ref of another branch", {"ref": "refs/heads/main-evil"}),
    ("ref prefix", {"ref": "refs/heads/mai"}),
    ("ref trailing newline", {"ref": "refs/heads/main\n"}),
    ("repository glob prefix", {"repository": "acme"}),
    ("repository glob case", {"repository": "ACME/app"}),
    ("repository glob embedded", {"repository": "evil/acme/app"}),
    ("claim missing", {"ref": None}),
]


@pytest.mark.parametrize("claims", [pytest.param(c, id=name) for name, c in NEAR_MISSES])
def test_near_miss_claims_match_no_rule(
    call: Call,
    github: LocalIssuer,
    sts_calls: StsRecorder,
    codeartifact: FakeCodeArtifact,
    claims: dict[str, Any],
) -> None:
    token = github.mint(**{**GITHUB_CLAIMS, **claims})
    answer = call("POST", "/v1/token", token=token, body={})
    assert answer.status == 403, answer.body
    assert answer.problem_type == "no-matching-rule"
    assert "acme" not in answer.body["detail"].replace("acme/app", "")  # no rule secrets
    assert_no_aws_call(sts_calls, codeartifact)


@pytest.mark.parametrize(
    ("body", "status", "slug", "reason"),
    [
        pytest.param(
            {"access": "publish", "packages": ["other-lib"]},
            403,
            "grant-exceeded",
            "for packages 'other-lib'",
            id="package outside the granted patterns",
        ),
        pytest.param(
            {"packages": ["*"]}, 403, "grant-exceeded", "'*'", id="widening to every package"
        ),
        pytest.param(
            {"packages": ["acme*"]}, 403, "grant-exceeded", "'acme*'", id="widening the prefix"
        ),
        pytest.param(
            {"packages": ["acme-*/../*"]}, 400, "invalid-request", "package name", id="path"
        ),
        pytest.param(
            {"packages": ['acme-"},{"Effect":"Allow']},
            400,
            "invalid-request",
            "package name",
            id="policy injection",
        ),
        pytest.param(
            {"packages": ["acme-?"]}, 400, "invalid-request", "package name", id="iam wildcard"
        ),
        pytest.param({"packages": []}, 400, "invalid-request", "non-empty", id="empty packages"),
        pytest.param(
            {"duration_seconds": 7200}, 403, "grant-exceeded", "7200 s", id="duration over cap"
        ),
        pytest.param(
            {"duration_seconds": "3600"}, 400, "invalid-request", "whole number", id="dur string"
        ),
        pytest.param(
            {"duration_seconds": True}, 400, "invalid-request", "whole number", id="dur bool"
        ),
        pytest.param(
            {"duration_seconds": 1000.5}, 400, "invalid-request", "whole number", id="dur float"
        ),
        pytest.param(
            {"duration_seconds": 60}, 400, "invalid-request", "900", id="duration under minimum"
        ),
        pytest.param(
            {"repository": "other"}, 403, "grant-exceeded", "'other'", id="unknown repository"
        ),
        pytest.param(
            {"repository": "../x"}, 400, "invalid-request", "repository", id="bad repository"
        ),
        pytest.param({"access": "admin"}, 400, "invalid-request", "'access'", id="bad access"),
        pytest.param(
            {"access": "read", "packages": ["acme-lib"]},
            400,
            "invalid-request",
            "publish only",
            id="packages with read",
        ),
        pytest.param({"extra": 1}, 400, "invalid-request", "unknown field", id="unknown field"),
        pytest.param([1, 2], 400, "invalid-request", "JSON object", id="json array"),
        pytest.param("read", 400, "invalid-request", "JSON object", id="json string"),
    ],
)
def test_requests_beyond_the_grant_or_malformed_get_no_token(
    call: Call,
    github_token: str,
    sts_calls: StsRecorder,
    codeartifact: FakeCodeArtifact,
    body: Any,
    status: int,
    slug: str,
    reason: str,
) -> None:
    answer = call("POST", "/v1/token", token=github_token, body=body)
    assert answer.status == status, answer.body
    assert answer.problem_type == slug
    assert reason in answer.body["detail"]
    assert "token" not in answer.body
    assert_no_aws_call(sts_calls, codeartifact)


def test_publish_with_a_read_grant_is_refused(
    call: Call, corp_token: str, sts_calls: StsRecorder, codeartifact: FakeCodeArtifact
) -> None:
    answer = call("POST", "/v1/token", token=corp_token, body={"access": "publish"})
    assert answer.status == 403
    assert answer.problem_type == "grant-exceeded"
    assert "publish access" in answer.body["detail"]
    assert_no_aws_call(sts_calls, codeartifact)


JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("raw_body", "headers", "status", "slug"),
    [
        pytest.param("{not json", JSON, 400, "invalid-request", id="malformed json"),
        pytest.param(
            '{"a": 1}',
            {"content-type": "text/plain"},
            415,
            "unsupported-media-type",
            id="wrong content type",
        ),
        pytest.param('{"a": 1}', {}, 415, "unsupported-media-type", id="no content type"),
        pytest.param(
            json.dumps({"packages": ["a" * 50] * 400}),
            JSON,
            413,
            "payload-too-large",
            id="oversized body",
        ),
        pytest.param("[" * 10000 + "]" * 10000, JSON, 413, "payload-too-large", id="deep"),
        pytest.param("[" * 3000 + "]" * 3000, JSON, 400, "invalid-request", id="nested"),
        pytest.param('{"a": 1e99999}', JSON, 400, "invalid-request", id="huge number"),
        pytest.param('{"a": "\ud800"}', JSON, 400, "invalid-request", id="lone surrogate"),
    ],
)
def test_bodies_that_are_not_json_objects(
    call: Call,
    github_token: str,
    sts_calls: StsRecorder,
    codeartifact: FakeCodeArtifact,
    raw_body: str,
    headers: dict[str, str],
    status: int,
    slug: str,
) -> None:
    answer = call("POST", "/v1/token", token=github_token, headers=headers, raw_body=raw_body)
    assert answer.status == status, answer.body
    assert answer.problem_type == slug
    assert_no_aws_call(sts_calls, codeartifact)


def test_base64_body_that_is_not_utf8(
    call: Call, github_token: str, sts_calls: StsRecorder, codeartifact: FakeCodeArtifact
) -> None:
    event_body = base64.b64encode(b"\xff\xfe{}").decode()
    answer = call(
        "POST", "/v1/token", token=github_token, headers=JSON, raw_body=event_body, base64_raw=True
    )
    assert answer.status == 400
    assert answer.problem_type == "invalid-request"
    assert_no_aws_call(sts_calls, codeartifact)


def test_ambiguous_request_lists_the_choices(
    call: Call, rules_file: Path, github: LocalIssuer, corp: LocalIssuer, corp_token: str
) -> None:
    extra = """\
  - name: engineers-publish-tools
    issuer: corp
    claims: {groups: engineering}
    grant: {repository: internal, access: publish, packages: ["tools-*"]}
"""
    rules_file.write_text(RULES.format(github=github.url, corp=corp.url) + extra)
    answer = call("POST", "/v1/token", token=corp_token, body={})
    assert answer.status == 400
    assert answer.problem_type == "ambiguous-request"
    assert answer.body["choices"] == [
        {"repository": "internal", "access": "read", "packages": []},
        {"repository": "internal", "access": "publish", "packages": ["tools-*"]},
    ]
    narrowed = call("POST", "/v1/token", token=corp_token, body={"access": "read"})
    assert narrowed.status == 200, narrowed.body


# --------------------------------------------------------------------------- 503: upstreams


@pytest.mark.parametrize(
    ("operation", "code", "status"),
    [
        pytest.param("GetAuthorizationToken", "ThrottlingException", 429, id="codeartifact 429"),
        pytest.param("GetRepositoryEndpoint", "InternalServerException", 500, id="endpoint 500"),
        pytest.param("GetAuthorizationToken", "AccessDeniedException", 403, id="kill switch"),
    ],
)
def test_codeartifact_failures_are_503_with_retry_after(
    call: Call,
    github_token: str,
    codeartifact: FakeCodeArtifact,
    operation: str,
    code: str,
    status: int,
) -> None:
    codeartifact.failures[operation] = (code, status)
    answer = call("POST", "/v1/token", token=github_token, body={})
    assert answer.status == 503
    assert answer.problem_type == "upstream-unavailable"
    assert int(answer.headers["Retry-After"]) > 0
    assert code in answer.body["detail"]


def test_sts_throttling_is_503_with_retry_after(
    call: Call, github_token: str, sts_client: Any, codeartifact: FakeCodeArtifact
) -> None:
    with Stubber(sts_client) as stub:
        stub.add_client_error("assume_role", "Throttling", "Rate exceeded", 400)
        answer = call("POST", "/v1/token", token=github_token, body={})
    assert answer.status == 503
    assert answer.headers["Retry-After"] == "2"
    assert "throttled" in answer.body["detail"]
    assert codeartifact.calls == []


def test_jwks_down_on_a_cold_cache_is_503(
    call: Call, github: LocalIssuer, github_token: str
) -> None:
    github.down = True
    answer = call("POST", "/v1/token", token=github_token, body={})
    assert answer.status == 503
    assert answer.problem_type == "issuer-unavailable"
    assert "Retry-After" in answer.headers


def test_jwks_garbage_on_a_cold_cache_is_503(
    call: Call, github: LocalIssuer, github_token: str
) -> None:
    github.garbage = True
    answer = call("POST", "/v1/token", token=github_token, body={})
    assert answer.status == 503
    assert answer.problem_type == "issuer-unavailable"


class TestStaleKeys:
    @pytest.fixture
    def jwks_ttl(self) -> float:
        return 0  # every request wants fresh keys, so an outage shows at once

    def test_jwks_down_with_a_warm_cache_still_serves(
        self, call: Call, github: LocalIssuer, github_token: str
    ) -> None:
        assert call("POST", "/v1/token", token=github_token, body={}).status == 200
        github.down = True
        answer = call("POST", "/v1/token", token=github_token, body={})
        assert answer.status == 200, answer.body


def test_invalid_rules_document_refuses_to_serve(
    call: Call, rules_file: Path, github_token: str, codeartifact: FakeCodeArtifact
) -> None:
    rules_file.write_text("version: 1\nrules:\n  - name: open\n    issuer: github\n")
    answer = call("POST", "/v1/token", token=github_token, body={})
    assert answer.status == 503
    assert answer.problem_type == "rules-unavailable"
    assert call("GET", "/v1/config").status == 503
    assert codeartifact.calls == []


# --------------------------------------------------------------------------- routing


@pytest.mark.parametrize(
    ("method", "path", "status", "slug"),
    [
        pytest.param("GET", "/v1/token", 405, "method-not-allowed", id="GET token"),
        pytest.param("DELETE", "/v1/grants", 405, "method-not-allowed", id="DELETE grants"),
        pytest.param("GET", "/v2/token", 404, "not-found", id="unknown path"),
        pytest.param("GET", "/", 404, "not-found", id="root"),
    ],
)
def test_unknown_routes_and_methods_are_problems(
    call: Call, method: str, path: str, status: int, slug: str
) -> None:
    answer = call(method, path)
    assert answer.status == status
    assert answer.problem_type == slug
    if status == 405:
        assert answer.headers["Allow"]


def test_an_unexpected_bug_is_a_500_problem_without_a_traceback(
    call: Call, github_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from broker import service

    def explode(*_: Any) -> None:
        raise KeyError("internal detail")

    monkeypatch.setattr(service.Broker, "token", explode)
    answer = call("POST", "/v1/token", token=github_token, body={})
    assert answer.status == 500
    assert answer.problem_type == "internal-error"
    assert "internal detail" not in json.dumps(answer.body)
    assert "Traceback" not in json.dumps(answer.body)


def test_bad_settings_answer_503_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    from broker import service
    from tests.conftest import invoke
    from tests.support.events import http_event

    service.use(None)
    monkeypatch.delenv("BROKER_RULES_FILE", raising=False)
    answer = invoke(http_event("GET", "/v1/config"))
    assert answer.status == 503
    assert answer.problem_type == "upstream-unavailable"
    assert "misconfigured" in answer.body["detail"]


def test_cold_start_in_lambda_builds_the_broker_and_loads_rules(
    env: dict[str, str], aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    from broker import app, service

    service.use(None)
    for name, value in {**env, "AWS_LAMBDA_FUNCTION_NAME": "broker"}.items():
        monkeypatch.setenv(name, value)
    try:
        importlib.reload(app)
        built = service.current()
        assert built.rules_loaded().rules[0].name == "release-from-main"
    finally:
        service.use(None)
        monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME")
        importlib.reload(app)


def test_cold_start_with_bad_settings_does_not_crash_the_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib

    from broker import app, service

    service.use(None)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "broker")
    try:
        importlib.reload(app)  # logs "invalid broker settings", must not raise
    finally:
        service.use(None)
        monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME")
        importlib.reload(app)


# --------------------------------------------------------------------------- the deadline


@dataclass
class ContextWithoutTime:
    """A Lambda context as some stand-ins pass it: no get_remaining_time_in_millis."""

    function_name: str = "broker"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:broker"
    aws_request_id: str = "00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize(
    ("make_context", "expected"),
    [
        pytest.param(lambda: DeadlineContext(remaining_ms=3000), 3.0, id="3 s left"),
        pytest.param(Context, 10.0, id="the template's Timeout"),
        pytest.param(ContextWithoutTime, None, id="a context that does not say"),
    ],
)
def test_the_handler_works_to_the_lambda_deadline_less_the_margin(
    broker: Any,
    monkeypatch: pytest.MonkeyPatch,
    make_context: Callable[[], object],
    expected: float | None,
) -> None:
    from broker import app, deadline, service

    seen: list[float | None] = []
    config = service.Broker.config

    def observed(self: service.Broker) -> dict[str, Any]:
        seen.append(deadline.remaining())
        return config(self)

    monkeypatch.setattr(service.Broker, "config", observed)
    raw = app.handler(http_event("GET", "/v1/config"), make_context())  # type: ignore[arg-type]
    assert raw["statusCode"] == 200
    if expected is None:
        assert seen == [None]
    else:
        left = seen[0]
        assert left is not None
        assert expected - deadline.MARGIN_SECONDS - 0.2 < left <= expected - deadline.MARGIN_SECONDS
    assert deadline.remaining() is None  # the scope ends with the invocation


def test_a_request_with_no_time_left_is_a_503_problem_and_no_aws_call(
    call: Call, github_token: str, sts_calls: StsRecorder, codeartifact: FakeCodeArtifact
) -> None:
    from broker import app

    assert call("GET", "/v1/config").status == 200  # rules loaded; no issuer keys yet
    no_time = DeadlineContext(remaining_ms=0)
    event = http_event("POST", "/v1/token", token=github_token)
    raw = app.handler(event, no_time)  # type: ignore[arg-type]
    assert raw["statusCode"] == 503
    assert raw["headers"]["Content-Type"] == "application/problem+json"
    assert raw["headers"]["Retry-After"] == "5"
    assert json.loads(raw["body"])["type"] == "urn:cabroker:problem:issuer-unavailable"
    assert_no_aws_call(sts_calls, codeartifact)
