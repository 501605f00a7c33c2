"""The rules lifecycle on the devstack, as an admin runs it: `cabroker-admin rules push` of a
document that lets a new pipeline in, the broker serving it; a push the broker would refuse is
refused (exit 1) with the parameter and the broker's answers unchanged; `rollback` brings the
previous rules back, and the pipeline is refused again. The rules are restored at the end, so
later tests on the same devstack see the devstack's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from broker.scope import Domain
from cabroker_admin import rulesstore
from devstack.provision import admin_session
from devstack.tools import Devstack
from tests.support.admin import admin, eventually

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

RULE = "rules-lifecycle-e2e"
# A pipeline the devstack's rules do not know: no rule matches it until the push.
CLAIMS = {
    "sub": "repo:acme/lifecycle:ref:refs/heads/e2e",
    "repository": "acme/lifecycle",
    "repository_owner": "acme",
    "ref": "refs/heads/e2e",
}


def served(devstack: Devstack) -> list[str]:
    state = devstack.state
    return list(state.get("private_repositories") or [state["repositories"]["private"]])


def where(devstack: Devstack) -> list[str]:
    state = devstack.state
    return ["--parameter", state["rules_parameter"], "--region", state["region"]]


def flags(devstack: Devstack) -> list[str]:
    """What the stack's outputs would give with --stack (the devstack has no CloudFormation)."""
    state = devstack.state
    return [
        *where(devstack),
        "--domain",
        state["domain"],
        "--domain-owner",
        state["domain_owner"],
        "--repositories",
        ",".join(served(devstack)),
    ]


def ssm_client(devstack: Devstack) -> SSMClient:
    session = admin_session(devstack.state["region"])
    return session.client("ssm", endpoint_url=devstack.state["aws_endpoint_url"])


def granted(devstack: Devstack) -> list[str]:
    """The rules that give the pipeline something (GET /v1/grants: mints nothing)."""
    status, body = devstack.broker("GET", "/v1/grants", devstack.id_token("github", CLAIMS))
    assert status == 200, body
    return [grant["rule"] for grant in body["grants"]]


@pytest.fixture
def original(devstack: Devstack) -> Iterator[str]:
    """The devstack's rules document, written back at the end if a step left another one."""
    ssm = ssm_client(devstack)
    parameter = devstack.state["rules_parameter"]
    text = ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
    yield text
    if ssm.get_parameter(Name=parameter)["Parameter"]["Value"] != text:
        domain = Domain(
            "aws",
            devstack.state["region"],
            devstack.state["domain_owner"],
            devstack.state["domain"],
        )
        rulesstore.push(ssm, parameter, text, domain, served(devstack), origin="the original")
        eventually("the original rules served again", lambda: RULE not in granted(devstack))


def with_rule(document: str, grant: dict[str, Any]) -> str:
    """``document`` with one more rule, for the pipeline, granting ``grant``."""
    parsed = yaml.safe_load(document)
    parsed["rules"] = [
        *parsed["rules"],
        {
            "name": RULE,
            "issuer": "github",
            "claims": {"repository": "acme/lifecycle", "ref": "refs/heads/e2e"},
            "grant": grant,
        },
    ]
    return yaml.safe_dump(parsed, sort_keys=False)


def test_push_refuse_and_roll_back_on_the_devstack(
    devstack: Devstack, original: str, tmp_path: Path
) -> None:
    ssm = ssm_client(devstack)
    parameter = devstack.state["rules_parameter"]
    status, body = devstack.broker(
        "POST", "/v1/token", devstack.id_token("github", CLAIMS), {"access": "read"}
    )
    assert (status, body.get("type")) == (403, "urn:cabroker:problem:no-matching-rule")

    # Push: the pipeline gets a read token once the broker has read the new version.
    document = with_rule(original, {"repository": served(devstack)[0], "access": "read"})
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(document, encoding="utf-8")
    pushed = admin(devstack, "rules", "push", str(rules_file), *flags(devstack))
    assert pushed.returncode == 0, pushed.stderr
    assert "written and labelled live" in pushed.stdout
    assert f"sha256 {rulesstore.sha256(document)}" in pushed.stdout
    version = ssm.get_parameter(Name=parameter)["Parameter"]["Version"]
    eventually("the pushed rule served", lambda: RULE in granted(devstack))
    status, body = devstack.broker(
        "POST", "/v1/token", devstack.id_token("github", CLAIMS), {"access": "read"}
    )
    assert status == 200, body.get("detail")
    assert body["token"]

    # A document the broker would refuse (a repository it does not serve) is not written.
    refused_file = tmp_path / "refused.yaml"
    refused_file.write_text(
        with_rule(original, {"repository": "not-served-e2e", "access": "read"}), "utf-8"
    )
    refused = admin(devstack, "rules", "push", str(refused_file), *flags(devstack))
    assert (refused.returncode, refused.stdout) == (1, "")
    (line,) = refused.stderr.splitlines()
    assert line.startswith(f"cabroker-admin: {refused_file}: rule '{RULE}'")
    assert "'not-served-e2e' is not a repository this deployment serves" in line
    assert line.endswith(f"{parameter} left as it was")
    found = ssm.get_parameter(Name=parameter)["Parameter"]
    assert (found["Version"], found["Value"]) == (version, document)
    assert RULE in granted(devstack)

    history = admin(devstack, "rules", "history", *where(devstack))
    assert history.returncode == 0, history.stderr
    assert history.stdout.splitlines()[-1].split()[0] == str(version)
    assert "served,live" in history.stdout.splitlines()[-1]

    # Rollback: the previous document again, as a new version; the pipeline is refused again.
    rolled = admin(devstack, "rules", "rollback", *flags(devstack))
    assert rolled.returncode == 0, rolled.stderr
    assert f"version {version + 1} written with version {version - 1}'s document" in rolled.stdout
    assert ssm.get_parameter(Name=parameter)["Parameter"]["Value"] == original
    eventually("the pipeline refused again", lambda: RULE not in granted(devstack))
    status, body = devstack.broker(
        "POST", "/v1/token", devstack.id_token("github", CLAIMS), {"access": "read"}
    )
    assert (status, body.get("type")) == (403, "urn:cabroker:problem:no-matching-rule")
    pulled = admin(devstack, "rules", "pull", *where(devstack))
    assert (pulled.returncode, pulled.stdout) == (0, original)


def test_an_invalid_document_written_around_the_push_fails_closed_until_rolled_back(
    devstack: Devstack, original: str
) -> None:
    """Someone writes the parameter directly (the console, `aws ssm put-parameter`) with a
    document the broker refuses: every request answers 503 rules-unavailable, never a token
    or a fall-open; `cabroker-admin rules rollback` brings the last good document back."""
    ssm = ssm_client(devstack)
    parameter = devstack.state["rules_parameter"]
    invalid = with_rule(original, {"repository": "not-served-e2e", "access": "read"})
    ssm.put_parameter(Name=parameter, Value=invalid, Type="String", Overwrite=True)

    def answer() -> tuple[int, str | None]:
        status, body = devstack.broker(
            "POST", "/v1/token", devstack.id_token("github", CLAIMS), {"access": "read"}
        )
        return status, body.get("type")

    eventually("the broker refusing to serve", lambda: answer()[0] == 503)
    assert answer() == (503, "urn:cabroker:problem:rules-unavailable")

    rolled = admin(devstack, "rules", "rollback", *flags(devstack))
    assert rolled.returncode == 0, rolled.stderr
    assert ssm.get_parameter(Name=parameter)["Parameter"]["Value"] == original
    eventually("the broker serving again", lambda: answer()[0] != 503)
    assert answer() == (403, "urn:cabroker:problem:no-matching-rule")
