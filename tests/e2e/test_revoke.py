"""Revoking one identity on the devstack, as an admin does it: two engineers hold read tokens;
`cabroker-admin revoke` (a subprocess, the standard AWS settings pointed at the devstack)
revokes one; that one's pip download of a public package through the private repository is
refused, and no new token is minted for it, while the other's works; `--list` shows the
revocation; `--lift` gives the access back. Every revocation is lifted at the end, so later
tests on the same devstack are unaffected."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from broker.tokens import session_name
from cabroker_admin import revoke
from devstack.provision import admin_session
from devstack.tools import Devstack, Tools, probe
from tests.support.admin import admin, eventually

# Engineers the devstack's rules grant read (corp, groups: engineering), used by no other test.
CAROL_SUB, DAVE_SUB = "revoke-e2e-carol", "revoke-e2e-dave"
CAROL = {"sub": CAROL_SUB, "groups": ["engineering"]}
DAVE = {"sub": DAVE_SUB, "groups": ["engineering"]}
STAMPED = session_name("corp", CAROL_SUB)  # what the broker stamps on carol's sessions
ID = revoke.revocation_id(STAMPED)


def token(devstack: Devstack, claims: dict[str, Any], duration: int) -> tuple[int, dict[str, Any]]:
    return devstack.broker(
        "POST",
        "/v1/token",
        devstack.id_token("corp", claims),
        {"access": "read", "duration_seconds": duration},
    )


def where(devstack: Devstack) -> list[str]:
    return [
        "--role-arn",
        devstack.state["token_issuer_role_arn"],
        "--region",
        devstack.state["region"],
    ]


@pytest.fixture
def lifted_at_the_end(devstack: Devstack) -> Iterator[None]:
    """Whatever a failing step left, no revocation of these identities outlives the test."""
    yield
    iam = admin_session(devstack.state["region"]).client(
        "iam", endpoint_url=devstack.state["aws_endpoint_url"]
    )
    revocations = revoke.Revocations(iam, devstack.state["token_issuer_role_arn"])
    ours = {ID, revoke.revocation_id(session_name("corp", DAVE_SUB))}
    for revocation in revocations.in_force():
        if revocation.id in ours:
            revocations.lift(revocation.id)


def test_a_revoked_identity_is_refused_and_another_is_not_until_lifted(
    devstack: Devstack, tools: Tools, lifted_at_the_end: None
) -> None:
    grants = {}
    for who, claims in (("carol", CAROL), ("dave", DAVE)):
        status, body = token(devstack, claims, 3600)
        assert status == 200, body.get("detail")
        tools.secrets.append(body["token"])
        grants[who] = body
    carol, dave = grants["carol"], grants["dave"]
    index = carol["index_url"]
    assert probe(index + "tinyjson/", carol["token"]) == 200
    assert probe(index + "tinyjson/", dave["token"]) == 200

    revoked = admin(
        devstack, "revoke", *where(devstack), "--issuer", "corp", "--subject", CAROL_SUB
    )
    assert revoked.returncode == 0, revoked.stderr
    assert f": {STAMPED} revoked, id {ID} (inline policy cabroker-revoke-{ID});" in revoked.stdout
    assert "remove the identity from the rules too" in revoked.stderr

    # carol's token, minted before, is refused at its next use; dave's is not.
    eventually("carol's token refused", lambda: probe(index + "tinyjson/", carol["token"]) == 403)
    python = tools.venv("revoke")
    refused = tools.pip_download(python, index, carol["token"], "tinyjson")
    assert not refused.ok, refused.output
    assert "No matching distribution found for tinyjson" in refused.output, refused.output
    # pip logs the index's answer at debug level only; uv names it.
    uv = tools.uv_pip_install(tools.uv_venv("revoked"), index, carol["token"], "tinyjson")
    assert not uv.ok, uv.output
    assert "403 Forbidden" in uv.output, uv.output
    works = tools.pip_download(python, dave["index_url"], dave["token"], "tinyjson")
    assert works.ok, works.last_lines()
    # A new token for carol (a duration never asked for, so no cache answers): CodeArtifact
    # denies the broker's new session for her, so she gets no token at all.
    status, body = token(devstack, CAROL, 1800)
    assert (status, body.get("type")) == (503, "urn:cabroker:problem:upstream-unavailable")
    assert "AccessDeniedException" in body["detail"]
    status, body = token(devstack, DAVE, 1800)
    assert status == 200, body.get("detail")
    tools.secrets.append(body["token"])

    listed = admin(devstack, "revoke", *where(devstack), "--list")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert [ID, STAMPED] in [[row[0], row[2]] for row in rows]
    assert STAMPED.replace("carol", "dave") not in listed.stdout

    lifted = admin(devstack, "revoke", *where(devstack), "--lift", ID)
    assert lifted.returncode == 0, lifted.stderr
    assert f"revocation {ID} of {STAMPED} lifted" in lifted.stdout
    eventually(
        "carol's token accepted again", lambda: probe(index + "tinyjson/", carol["token"]) == 200
    )
    again = tools.pip_download(python, index, carol["token"], "tinyjson")
    assert again.ok, again.last_lines()
    listed = admin(devstack, "revoke", *where(devstack), "--list")
    assert ID not in listed.stdout
