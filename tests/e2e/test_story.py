"""The product's story end to end: plain HTTP to the broker, real twine, uv and pip against the
devstack's CodeArtifact stand-in (issue 5's story; ``make demo`` tells the same one)."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.request
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from devstack.demo import CI_CLAIMS, CONTRACTOR_CLAIMS, ENGINEER_CLAIMS, EXPIRING_CLAIMS
from devstack.tools import Devstack, Result, Secret, Tools, http_json, probe
from devstack.wheels import build_wheel

JSON = "application/vnd.pypi.simple.v1+json"


def grant(
    devstack: Devstack, issuer: str, claims: Mapping[str, Any], access: str
) -> dict[str, Any]:
    status, body = devstack.broker(
        "POST", "/v1/token", devstack.id_token(issuer, claims), {"access": access}
    )
    assert status == 200, body.get("detail")
    return body


def page(url: str, token: str) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"Accept": JSON})
    request.add_header("Authorization", "Basic " + _basic(token))
    with urllib.request.urlopen(request, timeout=30) as response:
        document: dict[str, Any] = json.loads(response.read())
        return document


def _basic(token: str) -> str:
    import base64

    return base64.b64encode(f"aws:{token}".encode()).decode()


def refused(result: Result, shows: str) -> None:
    assert not result.ok, result.output
    assert shows in result.output, result.output


# --- 1. CI publishes ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def publish(devstack: Devstack, tools: Tools) -> dict[str, Any]:
    body = grant(devstack, "github", CI_CLAIMS, "publish")
    tools.secrets.append(body["token"])
    return body


@pytest.fixture(scope="module")
def wheels(dist: Path) -> dict[str, Path]:
    return {
        version: build_wheel(dist, "acme-lib", version, summary="acme's shared library")
        for version in ("1.0.0", "1.1.0")
    }


@pytest.fixture(scope="module")
def published(tools: Tools, publish: dict[str, Any], wheels: dict[str, Path]) -> dict[str, Result]:
    return {
        "twine": tools.twine_upload(publish["upload_url"], publish["token"], wheels["1.0.0"]),
        "uv": tools.uv_publish(publish["upload_url"], publish["token"], wheels["1.1.0"]),
    }


def test_ci_gets_a_publish_token_for_its_packages(
    devstack: Devstack, publish: dict[str, Any]
) -> None:
    assert publish["access"] == "publish"
    assert publish["packages"] == ["acme-*"]
    assert publish["repository"] == devstack.state["repositories"]["private"]
    assert publish["username"] == "aws"
    assert publish["upload_url"] == devstack.repository_url(publish["repository"])
    assert publish["index_url"] == publish["upload_url"] + "simple/"


def test_twine_uploads(published: dict[str, Result]) -> None:
    assert published["twine"].ok, published["twine"].output


def test_uv_publish_uploads(published: dict[str, Result]) -> None:
    assert published["uv"].ok, published["uv"].output


def test_uploads_are_served_with_their_hashes(
    published: dict[str, Result], publish: dict[str, Any], wheels: dict[str, Path]
) -> None:
    project = page(publish["index_url"] + "acme-lib/", publish["token"])
    served = {file["filename"]: file["hashes"]["sha256"] for file in project["files"]}
    assert served == {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in wheels.values()
    }
    assert project["versions"] == ["1.0.0", "1.1.0"]


def test_the_same_file_again_is_accepted_and_different_bytes_conflict(
    tools: Tools,
    publish: dict[str, Any],
    published: dict[str, Result],
    wheels: dict[str, Path],
    tmp_path: Path,
) -> None:
    again = tools.twine_upload(publish["upload_url"], publish["token"], wheels["1.0.0"])
    assert again.ok, again.output
    changed = build_wheel(tmp_path, "acme-lib", "1.0.0", body="CHANGED = True\n")
    refused(tools.twine_upload(publish["upload_url"], publish["token"], changed), "409 Conflict")


# --- 2. an engineer installs ---------------------------------------------------------------


@pytest.fixture(scope="module")
def read(devstack: Devstack, tools: Tools) -> dict[str, Any]:
    body = grant(devstack, "corp", ENGINEER_CLAIMS, "read")
    tools.secrets.append(body["token"])
    return body


def test_pip_installs_the_private_package(
    tools: Tools, read: dict[str, Any], published: dict[str, Result]
) -> None:
    python = tools.venv("pip-venv")
    installed = tools.pip_install(python, read["index_url"], read["token"], "acme-lib")
    assert installed.ok, installed.output
    check = tools.python(python, "import acme_lib; print(acme_lib.__version__)")
    assert check.output.strip() == "1.1.0"


def test_uv_installs_private_and_public_packages(
    tools: Tools, read: dict[str, Any], published: dict[str, Result]
) -> None:
    python = tools.uv_venv("uv-venv")
    installed = tools.uv_pip_install(
        python, read["index_url"], read["token"], "acme-lib==1.0.0", "tinyjson"
    )
    assert installed.ok, installed.output
    check = tools.python(
        python, "import acme_lib, tinyjson; print(acme_lib.__version__, tinyjson.__version__)"
    )
    assert check.output.split() == ["1.0.0", "1.1.0"]


def test_a_public_package_comes_through_the_upstream_with_the_public_hash(
    devstack: Devstack, read: dict[str, Any]
) -> None:
    public = json.loads(
        urllib.request.urlopen(
            urllib.request.Request(
                devstack.state["public_index_url"] + "tinyjson/", headers={"Accept": JSON}
            ),
            timeout=30,
        ).read()
    )
    private = page(read["index_url"] + "tinyjson/", read["token"])
    assert {f["filename"]: f["hashes"] for f in private["files"]} == {
        f["filename"]: f["hashes"] for f in public["files"]
    }


# --- 3. what must fail, fails ---------------------------------------------------------------


def test_the_read_token_cannot_upload(
    tools: Tools, read: dict[str, Any], dist: Path, published: dict[str, Result]
) -> None:
    wheel = build_wheel(dist, "acme-lib", "3.0.0")
    refused(tools.twine_upload(read["upload_url"], read["token"], wheel), "403 Forbidden")


def test_the_publish_token_cannot_upload_another_package(
    tools: Tools, publish: dict[str, Any], dist: Path
) -> None:
    wheel = build_wheel(dist, "other-pkg", "1.0.0")
    refused(tools.twine_upload(publish["upload_url"], publish["token"], wheel), "403 Forbidden")
    refused(tools.uv_publish(publish["upload_url"], publish["token"], wheel), "403 Forbidden")


def test_an_expired_token_is_refused(devstack: Devstack, tools: Tools, published: Any) -> None:
    token = Secret(grant(devstack, "corp", EXPIRING_CLAIMS, "read")["token"])
    tools.secrets.append(token)
    index = devstack.repository_url(devstack.state["repositories"]["private"]) + "simple/"
    assert probe(index + "acme-lib/", token) == 200
    status, _, _ = http_json(
        "POST", devstack.state["aws_endpoint_url"] + "/_devstack/tokens/expire", {"token": token}
    )
    assert status == 200
    assert probe(index + "acme-lib/", token) == 401
    refused(
        tools.uv_pip_install(tools.uv_venv("expired"), index, token, "acme-lib"),
        "401 Unauthorized",
    )


def test_a_garbage_token_is_refused(devstack: Devstack, tools: Tools) -> None:
    index = devstack.repository_url(devstack.state["repositories"]["private"]) + "simple/"
    assert probe(index + "acme-lib/", "garbage") == 401
    python = tools.venv("garbage")
    refused(
        tools.pip_download(python, index, "garbage", "acme-lib"),
        "No matching distribution found for acme-lib",
    )


def test_missing_credentials_get_a_challenge(devstack: Devstack) -> None:
    index = devstack.repository_url(devstack.state["repositories"]["private"]) + "simple/"
    status, _, headers = http_json("GET", index + "acme-lib/")
    assert status == 401
    challenge = {k.lower(): v for k, v in headers.items()}["www-authenticate"]
    assert 'Basic realm="' in challenge
    assert 'Bearer realm="' in challenge


def test_a_token_for_another_repository_is_refused(
    devstack: Devstack, tools: Tools, read: dict[str, Any]
) -> None:
    store = devstack.repository_url(devstack.state["repositories"]["store"]) + "simple/"
    assert probe(store + "tinyjson/", read["token"]) == 403
    refused(
        tools.uv_pip_install(tools.uv_venv("other-repo"), store, read["token"], "tinyjson"),
        "403 Forbidden",
    )


def test_the_planted_internal_name_is_never_taken_from_the_public_index(
    devstack: Devstack, tools: Tools, read: dict[str, Any]
) -> None:
    public = devstack.state["public_index_url"] + "acme-secrets/"
    assert urllib.request.urlopen(public, timeout=30).status == 200
    assert probe(read["index_url"] + "acme-secrets/", read["token"]) == 404
    refused(
        tools.pip_download(tools.venv("planted"), read["index_url"], read["token"], "acme-secrets"),
        "No matching distribution found for acme-secrets",
    )


# --- 4. no rule, no token -------------------------------------------------------------------


def test_an_identity_no_rule_matches_gets_403_and_why(devstack: Devstack) -> None:
    status, body = devstack.broker(
        "POST", "/v1/token", devstack.id_token("corp", CONTRACTOR_CLAIMS), {}
    )
    assert status == 403
    assert body["type"] == "urn:cabroker:problem:no-matching-rule"
    assert "no access rule matches issuer 'corp'" in body["detail"]


# --- the gateway ------------------------------------------------------------------------------


def test_the_gateway_throttles_as_the_template_says(devstack: Devstack) -> None:
    url = devstack.state["broker_url"] + "/v1/config"

    def call(_: int) -> tuple[int, dict[str, Any]]:
        status, body, _headers = http_json("GET", url)
        return status, body

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(call, range(200)))
    throttled = [body for status, body in answers if status == 429]
    assert throttled, "200 requests at once should exceed the template's burst of 40"
    assert throttled[0] == {"message": "Too Many Requests"}
    assert {status for status, _ in answers} <= {200, 429}
    time.sleep(2.5)  # let the bucket refill (rate 20/s, burst 40) for any later test


# --- operations ---------------------------------------------------------------------------------


def test_the_kill_switch_a_deny_on_token_issuer_role_stops_every_outstanding_token(
    devstack: Devstack, tools: Tools, read: dict[str, Any]
) -> None:
    """README runbook: one Deny on TokenIssuerRole invalidates every token already issued,
    because CodeArtifact evaluates the session's permissions at each request."""
    from devstack.provision import admin_session

    index = read["index_url"] + "tinyjson/"
    assert probe(index, read["token"]) == 200
    iam = admin_session(devstack.state["region"]).client(
        "iam", endpoint_url=devstack.state["aws_endpoint_url"]
    )
    role = devstack.state["token_issuer_role_arn"].rsplit("/", 1)[-1]
    deny = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Action": "codeartifact:*", "Resource": "*"}],
    }
    iam.put_role_policy(RoleName=role, PolicyName="kill-switch", PolicyDocument=json.dumps(deny))
    try:
        assert probe(index, read["token"]) == 403
        refused(
            tools.uv_pip_install(
                tools.uv_venv("killed"), read["index_url"], read["token"], "tinyjson"
            ),
            "403 Forbidden",
        )
    finally:
        iam.delete_role_policy(RoleName=role, PolicyName="kill-switch")
    assert probe(index, read["token"]) == 200
