"""The rules parameter's lifecycle (cabroker_admin.rulesstore) on moto's SSM: a push writes a
checked document as a new version labelled live, an unchanged one writes nothing, a refused one
leaves the parameter as it was, and a rollback writes an earlier document again."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from cabroker_admin import rulesstore
from cabroker_admin.errors import AdminError
from cabroker_admin.rulesstore import RulesRefused, history, pull, push, rollback
from tests.admin.conftest import (
    BROKEN,
    DOMAIN,
    ELSEWHERE,
    ENGINEERS,
    NOTHING,
    PARAMETER,
    RELEASES,
    SERVED,
    current_version,
    labelled,
    value,
)

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient


def test_the_first_push_creates_the_parameter_labelled_live(ssm: SSMClient) -> None:
    pushed = push(ssm, PARAMETER, ENGINEERS, DOMAIN, SERVED)
    assert pushed == rulesstore.Pushed(PARAMETER, 1, True, rulesstore.sha256(ENGINEERS))
    found = ssm.get_parameter(Name=PARAMETER)["Parameter"]
    assert (found["Value"], found["Type"]) == (ENGINEERS, "String")
    assert labelled(ssm) == [1]
    described = ssm.describe_parameters()["Parameters"][0]
    assert "cabroker-admin rules push" in described.get("Description", "")


def test_a_push_writes_a_new_version_and_moves_the_label(ssm: SSMClient) -> None:
    push(ssm, PARAMETER, NOTHING, DOMAIN, SERVED)
    pushed = push(ssm, PARAMETER, ENGINEERS, DOMAIN, SERVED)
    assert (pushed.version, pushed.changed) == (2, True)
    assert value(ssm) == ENGINEERS
    assert labelled(ssm) == [2]


def test_an_unchanged_document_writes_nothing(ssm: SSMClient) -> None:
    push(ssm, PARAMETER, ENGINEERS, DOMAIN, SERVED)
    pushed = push(ssm, PARAMETER, ENGINEERS, DOMAIN, SERVED)
    assert (pushed.version, pushed.changed) == (1, False)
    assert current_version(ssm) == 1


def test_a_push_over_a_parameter_written_another_way_is_a_new_version(ssm: SSMClient) -> None:
    ssm.put_parameter(Name=PARAMETER, Value=NOTHING, Type="String")  # as the template did
    assert push(ssm, PARAMETER, ENGINEERS, DOMAIN, SERVED).version == 2
    assert labelled(ssm) == [2]


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (BROKEN, "not valid YAML"),
        (ELSEWHERE, "'elsewhere' is not a repository this deployment serves (internal)"),
        ("version: 2\n", "field 'version' must be 1"),
        ("", "document must be a mapping"),
    ],
)
def test_an_invalid_document_is_refused_and_nothing_is_written(
    ssm: SSMClient, document: str, reason: str
) -> None:
    push(ssm, PARAMETER, ENGINEERS, DOMAIN, SERVED)
    with pytest.raises(RulesRefused) as refused:
        push(ssm, PARAMETER, document, DOMAIN, SERVED, origin="rules.yaml")
    message = str(refused.value)
    assert message.startswith("rules.yaml: ")
    assert reason in message
    assert message.endswith(f"; {PARAMETER} left as it was")
    assert "\n" not in message
    assert (current_version(ssm), value(ssm), labelled(ssm)) == (1, ENGINEERS, [1])


def test_an_invalid_first_document_creates_no_parameter(ssm: SSMClient) -> None:
    with pytest.raises(RulesRefused):
        push(ssm, PARAMETER, ELSEWHERE, DOMAIN, SERVED)
    assert ssm.describe_parameters()["Parameters"] == []


def test_a_rule_whose_session_policy_cannot_fit_is_refused(ssm: SSMClient) -> None:
    patterns = ", ".join(f'"acme-package-with-a-long-name-{n:02d}-*"' for n in range(20))
    document = RELEASES.replace('packages: ["acme-*"]', f"packages: [{patterns}]")
    with pytest.raises(RulesRefused, match="session policy"):
        push(ssm, PARAMETER, document, DOMAIN, SERVED)


def test_a_document_over_8_kb_is_refused_before_it_is_parsed(ssm: SSMClient) -> None:
    padding = "".join(f"# {'x' * 76}\n" for _ in range(110))  # comments: valid, but too long
    document = padding + ENGINEERS
    rulesstore.check(ENGINEERS + padding[: 8192 - len(ENGINEERS)], DOMAIN, SERVED, "at limit")
    with pytest.raises(RulesRefused, match=r"big\.yaml: \d+ bytes, over the 8192 bytes"):
        push(ssm, PARAMETER, document, DOMAIN, SERVED, origin="big.yaml")
    assert ssm.describe_parameters()["Parameters"] == []


def test_a_document_over_4_kb_is_written(ssm: SSMClient) -> None:
    document = ENGINEERS + "".join(f"# {'x' * 76}\n" for _ in range(60))
    assert 4096 < len(document.encode()) <= 8192
    assert push(ssm, PARAMETER, document, DOMAIN, SERVED).changed
    assert value(ssm) == document


def test_the_plan_checks_and_compares_without_writing(ssm: SSMClient) -> None:
    planned = rulesstore.plan(ssm, PARAMETER, ENGINEERS, DOMAIN, SERVED)
    assert (planned.current_version, planned.changed, len(planned.rules.rules)) == (None, True, 1)
    assert ssm.describe_parameters()["Parameters"] == []
    push(ssm, PARAMETER, ENGINEERS, DOMAIN, SERVED)
    planned = rulesstore.plan(ssm, PARAMETER, ENGINEERS, DOMAIN, SERVED)
    assert (planned.current_version, planned.changed) == (1, False)


def test_rollback_writes_the_previous_document_as_a_new_version(ssm: SSMClient) -> None:
    push(ssm, PARAMETER, ENGINEERS, DOMAIN, SERVED)
    push(ssm, PARAMETER, RELEASES, DOMAIN, SERVED)
    done = rollback(ssm, PARAMETER, DOMAIN, SERVED)
    assert (done.source, done.pushed.version, done.pushed.changed) == (1, 3, True)
    assert value(ssm) == ENGINEERS
    assert [value(ssm, n) for n in (1, 2, 3)] == [ENGINEERS, RELEASES, ENGINEERS]  # append-only
    assert labelled(ssm) == [3]
    # A second rollback goes back to what the first one replaced.
    assert rollback(ssm, PARAMETER, DOMAIN, SERVED).source == 2
    assert value(ssm) == RELEASES


def test_rollback_skips_versions_that_hold_the_current_document(ssm: SSMClient) -> None:
    push(ssm, PARAMETER, NOTHING, DOMAIN, SERVED)
    push(ssm, PARAMETER, ENGINEERS, DOMAIN, SERVED)
    ssm.put_parameter(Name=PARAMETER, Value=ENGINEERS, Type="String", Overwrite=True)
    assert rollback(ssm, PARAMETER, DOMAIN, SERVED).source == 1
    assert value(ssm) == NOTHING


def test_rollback_to_a_given_version(ssm: SSMClient) -> None:
    for document in (NOTHING, ENGINEERS, RELEASES):
        push(ssm, PARAMETER, document, DOMAIN, SERVED)
    done = rollback(ssm, PARAMETER, DOMAIN, SERVED, to=1)
    assert (done.source, done.pushed.version) == (1, 4)
    assert value(ssm) == NOTHING


def test_rollback_to_the_current_document_writes_nothing(ssm: SSMClient) -> None:
    push(ssm, PARAMETER, NOTHING, DOMAIN, SERVED)
    push(ssm, PARAMETER, ENGINEERS, DOMAIN, SERVED)
    done = rollback(ssm, PARAMETER, DOMAIN, SERVED, to=2)
    assert (done.pushed.version, done.pushed.changed) == (2, False)


def test_rollback_refuses_a_version_that_is_no_longer_accepted(ssm: SSMClient) -> None:
    # Version 1 was written when the deployment served "elsewhere"; it no longer does.
    push(ssm, PARAMETER, ELSEWHERE, DOMAIN, ("internal", "elsewhere"))
    push(ssm, PARAMETER, ENGINEERS, DOMAIN, SERVED)
    with pytest.raises(RulesRefused, match=f"^version 1 of {PARAMETER}: .*'elsewhere'"):
        rollback(ssm, PARAMETER, DOMAIN, SERVED)
    assert (current_version(ssm), value(ssm), labelled(ssm)) == (2, ENGINEERS, [2])


def test_rollback_refuses_a_broken_version_written_another_way(ssm: SSMClient) -> None:
    ssm.put_parameter(Name=PARAMETER, Value=BROKEN, Type="String")
    push(ssm, PARAMETER, ENGINEERS, DOMAIN, SERVED)
    with pytest.raises(RulesRefused, match="not valid YAML"):
        rollback(ssm, PARAMETER, DOMAIN, SERVED)
    assert current_version(ssm) == 2


def test_rollback_needs_an_earlier_document(ssm: SSMClient) -> None:
    push(ssm, PARAMETER, ENGINEERS, DOMAIN, SERVED)
    with pytest.raises(AdminError, match="nothing to roll back to"):
        rollback(ssm, PARAMETER, DOMAIN, SERVED)
    with pytest.raises(AdminError, match=r"no version 7 .*last 100 versions"):
        rollback(ssm, PARAMETER, DOMAIN, SERVED, to=7)


def test_history_lists_every_version_with_its_label(ssm: SSMClient) -> None:
    for document in (NOTHING, ENGINEERS, RELEASES):
        push(ssm, PARAMETER, document, DOMAIN, SERVED)
    versions = history(ssm, PARAMETER)
    assert [(v.number, v.text, v.labels) for v in versions] == [
        (1, NOTHING, ()),
        (2, ENGINEERS, ()),
        (3, RELEASES, ("live",)),
    ]
    assert versions[0].sha256 == rulesstore.sha256(NOTHING)
    assert all(v.modified is not None for v in versions)


def test_history_of_a_missing_parameter(ssm: SSMClient) -> None:
    with pytest.raises(AdminError, match=f"{PARAMETER}: no such SSM parameter"):
        history(ssm, PARAMETER)


def test_pull_reads_the_current_or_a_given_version(ssm: SSMClient) -> None:
    push(ssm, PARAMETER, ENGINEERS, DOMAIN, SERVED)
    push(ssm, PARAMETER, RELEASES, DOMAIN, SERVED)
    assert pull(ssm, PARAMETER) == (2, RELEASES)
    assert pull(ssm, PARAMETER, 1) == (1, ENGINEERS)
    with pytest.raises(AdminError, match="no version 9"):
        pull(ssm, PARAMETER, 9)
    with pytest.raises(AdminError, match="no such SSM parameter"):
        pull(ssm, "/cabroker/absent/rules")


def test_the_label_never_blocks_a_write_at_the_version_limit(ssm: SSMClient) -> None:
    """SSM keeps 100 versions and cannot drop a labelled oldest one; live moves, so it never
    stays on the oldest."""
    documents = [NOTHING, ENGINEERS]
    for n in range(105):
        push(ssm, PARAMETER, documents[n % 2], DOMAIN, SERVED)
    versions = history(ssm, PARAMETER)
    assert (len(versions), versions[0].number, versions[-1].number) == (100, 6, 105)
    assert labelled(ssm) == [105]
