"""Operations in template.yaml: alarms on the four signals the README's runbook explains, each
notifying the optional SNS topic; a dashboard whose body is valid JSON naming this stack's API
and function; the token route's own throttling. Alike whether the stack creates the CodeArtifact
estate or attaches to one. Each check is proven by a mutation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.infra.cfn_eval import (
    Check,
    Mutation,
    Stack,
    Template,
    load,
    mutation_params,
    properties,
)

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
TOPIC = "arn:aws:sns:us-east-1:111122223333:pager"
SIGNALS = {
    "ApiErrorsAlarm": ("AWS/ApiGateway", "5xx"),
    "FunctionThrottlesAlarm": ("AWS/Lambda", "Throttles"),
    "MintLatencyAlarm": ("AWS/Lambda", "Duration"),
}
DENIAL_REASONS = {"invalid-token", "no-matching-rule", "grant-exceeded"}
ESTATES: tuple[dict[str, str], ...] = ({}, {"Estate": "Existing", "DomainOwner": "444455556666"})


def alarms_watch_the_runbook_signals(t: Template) -> list[str]:
    problems = []
    resources = t["Resources"]
    for name, (namespace, metric) in SIGNALS.items():
        props = resources.get(name, {}).get("Properties", {})
        if (props.get("Namespace"), props.get("MetricName")) != (namespace, metric):
            problems.append(f"{name} does not watch {namespace} {metric}")
    denials = resources.get("DenialsAlarm", {}).get("Properties", {})
    reasons = {
        dimension["Value"]
        for query in denials.get("Metrics", [])
        if "MetricStat" in query
        for dimension in query["MetricStat"]["Metric"]["Dimensions"]
        if dimension["Name"] == "reason"
    }
    if reasons != DENIAL_REASONS:
        problems.append(f"DenialsAlarm sums {sorted(reasons)}, not {sorted(DENIAL_REASONS)}")
    return problems


def alarms_notify_the_topic_only_when_given(t: Template) -> list[str]:
    problems = []
    cases = [
        ({**estate, **topic}, expected)
        for estate in ESTATES
        for topic, expected in (({}, None), ({"AlarmTopicArn": TOPIC}, [TOPIC]))
    ]
    for overrides, expected in cases:
        stack = Stack(t, overrides)
        for name, resource in stack.resources().items():
            if resource["Type"] != "AWS::CloudWatch::Alarm":
                continue
            props = stack.resolve(resource["Properties"])
            for key in ("AlarmActions", "OKActions"):
                if props.get(key) != expected:
                    problems.append(f"{name}.{key} is {props.get(key)} with {overrides}")
    return problems


def dashboard_is_json_for_this_stack(t: Template) -> list[str]:
    problems = []
    for estate in ESTATES:
        stack = Stack(t, estate)
        if not stack.exists("Resources", "Dashboard"):
            problems.append(f"{estate}: no dashboard")
            continue
        body = stack.resolve(t["Resources"]["Dashboard"]["Properties"]["DashboardBody"])
        try:
            widgets = json.loads(body)["widgets"]
        except (ValueError, KeyError) as error:
            problems.append(f"{estate}: the dashboard body is not JSON with widgets: {error}")
            continue
        text = json.dumps(widgets)
        problems += [
            f"{estate}: the dashboard never shows {ref}"
            for ref in ("<BrokerApi>", "<BrokerFunction>")
            if ref not in text
        ]
    return problems


def token_route_has_its_own_throttling(t: Template) -> list[str]:
    api = t["Resources"]["BrokerApi"]["Properties"]
    route = api.get("RouteSettings", {}).get("POST /v1/token", {})
    expected = {
        "ThrottlingRateLimit": {"Ref": "TokenThrottlingRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "TokenThrottlingBurstLimit"},
    }
    return [] if route == expected else [f"POST /v1/token route settings are {route}"]


CHECKS: list[Check] = [
    alarms_watch_the_runbook_signals,
    alarms_notify_the_topic_only_when_given,
    dashboard_is_json_for_this_stack,
    token_route_has_its_own_throttling,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_the_template_has_the_property(check: Check) -> None:
    assert check(load(TEMPLATE)) == []


MUTATIONS: list[Mutation] = [
    ("5xx alarm watches 4xx", lambda t: properties(t, "ApiErrorsAlarm").update(MetricName="4xx"),
     alarms_watch_the_runbook_signals),
    ("denials alarm drops a reason",
     lambda t: properties(t, "DenialsAlarm")["Metrics"].pop(), alarms_watch_the_runbook_signals),
    ("latency alarm never notifies",
     lambda t: properties(t, "MintLatencyAlarm").pop("AlarmActions"),
     alarms_notify_the_topic_only_when_given),
    ("dashboard body broken",
     lambda t: properties(t, "Dashboard").update(DashboardBody="{not json"),
     dashboard_is_json_for_this_stack),
    ("dashboard only with the estate created",
     lambda t: t["Resources"]["Dashboard"].update(Condition="CreateEstate"),
     dashboard_is_json_for_this_stack),
    ("token route throttling removed",
     lambda t: properties(t, "BrokerApi").pop("RouteSettings"), token_route_has_its_own_throttling),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "check"), mutation_params(MUTATIONS))
def test_each_check_catches_its_mutation(mutate: Any, check: Check) -> None:
    template = load(TEMPLATE)
    mutate(template)
    assert check(template) != []
