"""The devstack's other callers through the whole stack (HTTP API, broker, STS and CodeArtifact
stand-ins): GitHub's two sub formats, GitLab's fork merge-request pipelines, and an AWS workload
with an STS web identity token (ES384, keys at /.well-known/jwks.json). A few requests on the
session's devstack; the decisions themselves are covered in tests/unit/broker/test_claim_sets.py."""

from __future__ import annotations

from typing import Any

from devstack.claimsets import (
    aws_claims,
    github_claims,
    gitlab_claims,
    gitlab_fork_merge_request_claims,
)
from devstack.tools import Devstack, Tools, probe


def token(devstack: Devstack, issuer: str, claims: dict[str, Any], access: str) -> dict[str, Any]:
    status, body = devstack.broker(
        "POST", "/v1/token", devstack.id_token(issuer, claims), {"access": access}
    )
    return {"status": status, **body}


def test_an_aws_workload_in_another_account_reads(devstack: Devstack, tools: Tools) -> None:
    grant = token(devstack, "aws", aws_claims(), "read")
    assert grant["status"] == 200, grant.get("detail")
    tools.secrets.append(grant["token"])
    assert (grant["access"], grant["repository"]) == (
        "read",
        devstack.state["repositories"]["private"],
    )
    assert probe(grant["index_url"], grant["token"]) == 200
    refused = token(devstack, "aws", aws_claims(), "publish")
    assert (refused["status"], refused["type"]) == (403, "urn:cabroker:problem:grant-exceeded")
    stranger = token(devstack, "aws", aws_claims(role="someone-else"), "read")
    assert (stranger["status"], stranger["type"]) == (403, "urn:cabroker:problem:no-matching-rule")


def test_both_github_subject_formats_publish_alike(devstack: Devstack, tools: Tools) -> None:
    for sub_format in ("names", "ids"):
        grant = token(devstack, "github", github_claims("app", sub_format=sub_format), "publish")
        assert grant["status"] == 200, grant.get("detail")
        tools.secrets.append(grant["token"])
        assert grant["packages"] == ["acme-*"]


def test_gitlab_publishes_from_a_protected_ref_and_never_for_a_fork(
    devstack: Devstack, tools: Tools
) -> None:
    grant = token(devstack, "gitlab", gitlab_claims(), "publish")
    assert grant["status"] == 200, grant.get("detail")
    tools.secrets.append(grant["token"])
    assert grant["packages"] == ["acme-data-*"]
    fork = token(devstack, "gitlab", gitlab_fork_merge_request_claims(), "publish")
    assert (fork["status"], fork["type"]) == (403, "urn:cabroker:problem:no-matching-rule")
