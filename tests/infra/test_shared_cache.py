"""The shared token cache and replay guard in template.yaml: created only when asked for, the
function's environment agrees with what the broker's settings accept, and the function's role
may touch the table and use the key for exactly what the code does, whether the stack creates the
CodeArtifact estate or attaches to one (the broker accepts the whole environment, the repositories
it serves included). Each check is proven by a mutation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from broker.settings import Settings
from broker.sharedcache import ENCRYPTION_PURPOSE
from tests.infra.cfn_eval import (
    Check,
    Mutation,
    Stack,
    Template,
    as_list,
    deploy,
    load,
    mutation_params,
    properties,
)

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
COMBINATIONS = [
    # SharedTokenCache, ReplayGuard → BROKER_SHARED_CACHE, BROKER_REPLAY_GUARD, table, key
    ("PerSubject", "Disabled", "subject", "false", True, True),
    ("PerGrant", "Disabled", "grant", "false", True, True),
    ("PerGrant", "Enabled", "grant", "true", True, True),
    ("Disabled", "Enabled", "off", "true", True, False),
    ("Disabled", "Disabled", "off", "false", False, False),
]
TABLE_ACTIONS = {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"}
# The estate created, and one that exists in another account; each with the repositories served.
ESTATES = [
    ({"Repositories": "internal,restricted"}, ("internal", "restricted")),
    (
        {"Estate": "Existing", "DomainOwner": "444455556666", "Repositories": "shared.lib"},
        ("shared.lib",),
    ),
]
SAMPLE_TABLE = "cabroker-CacheTable-1"
SAMPLE_KEY = "arn:aws:kms:us-east-1:111122223333:key/abc-123"


def _stack(t: Template, cache: str, guard: str) -> Stack:
    return Stack(t, {"SharedTokenCache": cache, "ReplayGuard": guard})


def _environment(stack: Stack) -> dict[str, Any]:
    function = stack.resolve(stack.template["Resources"]["BrokerFunction"]["Properties"])
    return dict(function["Environment"]["Variables"])


def _statements(stack: Stack) -> list[dict[str, Any]]:
    policy = stack.resolve(stack.template["Resources"]["BrokerFunctionPolicy"]["Properties"])
    return list(policy["PolicyDocument"]["Statement"])


def resources_and_environment_follow_the_parameters(t: Template) -> list[str]:
    problems = []
    for cache, guard, sharing, replay, has_table, uses_key in COMBINATIONS:
        stack = _stack(t, cache, guard)
        where = f"SharedTokenCache={cache} ReplayGuard={guard}"
        created = {name for name in ("CacheTable", "CacheKey") if stack.exists("Resources", name)}
        if created != ({"CacheTable", "CacheKey"} if has_table else set()):
            problems.append(f"{where}: creates {sorted(created)}")
        env = _environment(stack)
        expected = {
            "BROKER_SHARED_CACHE": sharing,
            "BROKER_REPLAY_GUARD": replay,
            "BROKER_CACHE_TABLE": "<CacheTable>" if has_table else "",
            "BROKER_CACHE_KEY_ID": "<CacheKey.Arn>" if uses_key else "",
        }
        actual = {name: env.get(name) for name in expected}
        if actual != expected:
            problems.append(f"{where}: environment {actual}, expected {expected}")
        # what the template sets, the broker accepts (deployed: the nested stacks' outputs are
        # concrete; the table and key get sample names), in either estate
        for estate, repositories in ESTATES:
            overrides = {"SharedTokenCache": cache, "ReplayGuard": guard, **estate}
            deployed = deploy(t, overrides).environment()
            concrete = {k: v for k, v in deployed.items() if k.startswith("BROKER_")}
            if has_table:
                concrete["BROKER_CACHE_TABLE"] = SAMPLE_TABLE
            if uses_key:
                concrete["BROKER_CACHE_KEY_ID"] = SAMPLE_KEY
            try:
                settings = Settings.from_env({**concrete, "AWS_REGION": "us-east-1"})
            except ValueError as error:
                problems.append(f"{where} {estate}: the broker refuses the settings: {error}")
                continue
            if (settings.shared_cache, settings.replay_guard) != (sharing, replay == "true"):
                problems.append(f"{where}: the broker reads {settings.shared_cache}")
            if settings.repositories != repositories:
                problems.append(f"{where} {estate}: the broker serves {settings.repositories}")
    return problems


def the_role_may_use_the_table_and_key_for_the_cache_only(t: Template) -> list[str]:
    problems = []
    for cache, guard, _, _, has_table, uses_key in COMBINATIONS:
        where = f"SharedTokenCache={cache} ReplayGuard={guard}"
        statements = _statements(_stack(t, cache, guard))
        table = [s for s in statements if any("dynamodb:" in a for a in as_list(s["Action"]))]
        kms = [s for s in statements if any("kms:" in a for a in as_list(s["Action"]))]
        via = [s for s in kms if "kms:ViaService" in s.get("Condition", {}).get("StringEquals", {})]
        keys = [s for s in kms if s not in via]
        if bool(table) != has_table or bool(keys) != uses_key or bool(via) != has_table:
            problems.append(
                f"{where}: {len(table)} table, {len(keys)} key, {len(via)} table-key statements"
            )
        for statement in via:  # DynamoDB's own use of the key for the table at rest
            service = statement["Condition"]["StringEquals"]["kms:ViaService"]
            if service != "dynamodb.us-east-1.amazonaws.com" or len(statement["Condition"]) != 1:
                problems.append(f"{where}: the table's key is usable through {service}")
            if statement["Resource"] != "<CacheKey.Arn>":
                problems.append(f"{where}: table-key statement on {statement['Resource']}")
        for statement in table:
            if set(as_list(statement["Action"])) != TABLE_ACTIONS:
                problems.append(f"{where}: table actions {statement['Action']}")
            if statement["Resource"] != "<CacheTable.Arn>":
                problems.append(f"{where}: table statement on {statement['Resource']}")
        for statement in keys:
            if set(as_list(statement["Action"])) != {"kms:Encrypt", "kms:Decrypt"}:
                problems.append(f"{where}: key actions {statement['Action']}")
            if statement["Resource"] != "<CacheKey.Arn>":
                problems.append(f"{where}: key statement on {statement['Resource']}")
            condition = statement.get("Condition", {}).get("StringEquals", {})
            if condition.get("kms:EncryptionContext:purpose") != ENCRYPTION_PURPOSE:
                problems.append(f"{where}: the key is usable outside the cache ({condition})")
    return problems


def the_table_expires_items_and_is_encrypted_by_the_key(t: Template) -> list[str]:
    stack = _stack(t, "PerSubject", "Disabled")
    table = stack.resolve(t["Resources"]["CacheTable"]["Properties"])
    key = stack.resolve(t["Resources"]["CacheKey"]["Properties"])
    problems = []
    if table.get("TimeToLiveSpecification") != {"AttributeName": "ttl", "Enabled": True}:
        problems.append(f"TTL is {table.get('TimeToLiveSpecification')} (the code writes ttl)")
    if table.get("KeySchema") != [{"AttributeName": "pk", "KeyType": "HASH"}]:
        problems.append(f"key schema is {table.get('KeySchema')} (the code uses pk)")
    sse = table.get("SSESpecification", {})
    if (sse.get("SSEEnabled"), sse.get("KMSMasterKeyId")) != (True, "<CacheKey>"):
        problems.append(f"the table is not encrypted by CacheKey: {sse}")
    if table.get("BillingMode") != "PAY_PER_REQUEST":
        problems.append("the table is provisioned: a burst would throttle on it")
    if key.get("EnableKeyRotation") is not True:
        problems.append("CacheKey does not rotate")
    return problems


CHECKS: list[Check] = [
    resources_and_environment_follow_the_parameters,
    the_role_may_use_the_table_and_key_for_the_cache_only,
    the_table_expires_items_and_is_encrypted_by_the_key,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_the_template_has_the_property(check: Check) -> None:
    assert check(load(TEMPLATE)) == []


def _env(t: Template) -> Any:
    return properties(t, "BrokerFunction")["Environment"]["Variables"]


def _policy(t: Template) -> Any:
    return properties(t, "BrokerFunctionPolicy")["PolicyDocument"]["Statement"]


MUTATIONS: list[Mutation] = [
    ("per-grant sharing set as per subject",
     lambda t: _env(t).update(BROKER_SHARED_CACHE={"Fn::If": ["SharedCacheOn", "subject", "off"]}),
     resources_and_environment_follow_the_parameters),
    ("table always created",
     lambda t: t["Resources"]["CacheTable"].pop("Condition"),
     resources_and_environment_follow_the_parameters),
    ("replay guard never on",
     lambda t: _env(t).update(BROKER_REPLAY_GUARD="false"),
     resources_and_environment_follow_the_parameters),
    ("repositories joined as the broker cannot read them",
     lambda t: _env(t).update(BROKER_REPOSITORIES={"Fn::Join": [";", {"Ref": "Repositories"}]}),
     resources_and_environment_follow_the_parameters),
    ("table statement allows Scan",
     lambda t: _policy(t)[2]["Fn::If"][1]["Action"].append("dynamodb:Scan"),
     the_role_may_use_the_table_and_key_for_the_cache_only),
    ("key usable for anything",
     lambda t: _policy(t)[4]["Fn::If"][1].pop("Condition"),
     the_role_may_use_the_table_and_key_for_the_cache_only),
    ("key usable for GenerateDataKey",
     lambda t: _policy(t)[4]["Fn::If"][1]["Action"].append("kms:GenerateDataKey"),
     the_role_may_use_the_table_and_key_for_the_cache_only),
    ("table's key usable through any service",
     lambda t: _policy(t)[3]["Fn::If"][1]["Condition"]["StringEquals"].update(
         {"kms:ViaService": "s3.us-east-1.amazonaws.com"}),
     the_role_may_use_the_table_and_key_for_the_cache_only),
    ("TTL attribute renamed",
     lambda t: properties(t, "CacheTable")["TimeToLiveSpecification"].update(
         AttributeName="expires"),
     the_table_expires_items_and_is_encrypted_by_the_key),
    ("key rotation off",
     lambda t: properties(t, "CacheKey").update(EnableKeyRotation=False),
     the_table_expires_items_and_is_encrypted_by_the_key),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "check"), mutation_params(MUTATIONS))
def test_each_check_catches_its_mutation(mutate: Any, check: Check) -> None:
    template = load(TEMPLATE)
    mutate(template)
    assert check(template) != []
