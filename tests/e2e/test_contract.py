"""The API contract (functions/broker/openapi.yaml, served at GET /v1/openapi.json) checked by
schemathesis against the devstack's gateway with a bounded budget: no 5xx, no response that
breaks the schema, no undocumented status, with and without a valid identity."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from devstack.demo import CI_CLAIMS, ENGINEER_CLAIMS
from devstack.stack import Devstack as Stack
from devstack.stack import Options
from devstack.tools import Devstack

EXAMPLES = 60  # per operation and identity: the CI budget


@pytest.fixture(scope="module")
def contract_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devstack]:
    """A devstack of its own, throttling off (a fuzzer outruns the template's 20 requests/s;
    the 429 shape is still part of the contract)."""
    work = tmp_path_factory.mktemp("contract")
    stack = Stack(
        Options(
            state_file=work / "state.json",
            work_dir=work,
            broker_log=work / "broker.log",
            watch_rules=False,
            throttle=False,
        )
    )
    try:
        yield Devstack(stack.start())
    finally:
        stack.stop()


# Every default check runs except positive_data_acceptance (a schema-valid request may still be
# refused by the rules, 403, or be ambiguous among them, 400: by design); a schema-violating
# request may also be refused as too large (413, documented).
CHECKS = schemathesis.Config.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {"enabled": False},
            "negative_data_rejection": {
                "expected-statuses": [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]
            },
        }
    }
)
TOKEN_FIELD = re.compile(r'("token"\s*:\s*")[^"]*(")')
CONTRACT = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    derandomize=True,  # the same cases in every CI run
)


@pytest.fixture(scope="module")
def api(contract_stack: Devstack) -> Any:
    """The schema as the broker serves it (schemathesis' pytest loader does not work with
    pytest 9, so operations are driven with Hypothesis directly)."""
    return schemathesis.openapi.from_url(
        contract_stack.state["broker_url"] + "/v1/openapi.json", config=CHECKS
    )


@pytest.fixture(scope="module")
def identities(contract_stack: Devstack) -> dict[str, str]:
    return {
        "ci": contract_stack.id_token("github", CI_CLAIMS),
        "engineer": contract_stack.id_token("corp", ENGINEER_CLAIMS),
    }


def operations(api: Any) -> list[Any]:
    found = [result.ok() for result in api.get_all_operations()]
    # schemathesis leaves out the operation that serves the schema itself.
    assert {op.label for op in found} >= {"POST /v1/token", "GET /v1/grants", "GET /v1/config"}
    return found


def fuzz(operation: Any, headers: dict[str, str] | None, mode: GenerationMode) -> int:
    """Run the budget against one operation; return how many cases ran."""
    ran = 0

    @given(case=operation.as_strategy(generation_mode=mode))
    @CONTRACT
    def check(case: Any) -> None:
        nonlocal ran
        ran += 1
        try:
            case.call_and_validate(headers=headers)
        except Exception as failure:  # noqa: BLE001 - re-raised without the token it may show
            report = TOKEN_FIELD.sub(r"\1****\2", str(failure))
            raise AssertionError(report) from None

    check()
    return ran


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("who", ["anonymous", "ci", "engineer"])
def test_every_operation_keeps_the_contract(
    api: Any, identities: dict[str, str], who: str, mode: GenerationMode
) -> None:
    headers = None if who == "anonymous" else {"Authorization": f"Bearer {identities[who]}"}
    for operation in operations(api):
        if mode is GenerationMode.NEGATIVE and operation.label == "GET /v1/config":
            continue  # no input at all: nothing can be made invalid
        ran = fuzz(operation, headers, mode)
        print(f"{who} {mode.value} {operation.label}: {ran} cases")
        assert ran > 0


def test_the_document_describes_every_route(contract_stack: Devstack) -> None:
    import json
    import urllib.request

    with urllib.request.urlopen(
        contract_stack.state["broker_url"] + "/v1/openapi.json", timeout=30
    ) as response:
        document = json.loads(response.read())
    from broker.app import ROUTES

    assert set(document["paths"]) == set(ROUTES)
    for path, methods in ROUTES.items():
        assert {m.lower() for m in methods} == set(document["paths"][path])
    assert Path(__file__).resolve().parents[2].joinpath("functions/broker/openapi.yaml").exists()
