"""Rules sources: a file, an SSM parameter (moto), a broken document, an unreachable source."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters

from broker.problems import RulesUnavailable
from broker.rules import RulesError, RuleSet
from broker.rulesource import RulesSource, SourceError, file_loader, ssm_loader

GOOD = """\
version: 1
issuers:
  corp: {url: "https://login.example.com", audience: cabroker}
rules:
  - {name: eng, issuer: corp, claims: {groups: eng}, grant: {repository: internal, access: read}}
"""
BROKEN = GOOD.replace("claims: {groups: eng}, ", "")


class Source:
    """A loader whose text and availability tests control, with a clock."""

    def __init__(self) -> None:
        self.text = GOOD
        self.down = False
        self.now = 0.0

    def load(self) -> str:
        if self.down:
            raise SourceError("unreachable")
        return self.text

    def clock(self) -> float:
        return self.now


def test_file_source(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(GOOD)
    source = RulesSource(file_loader(str(path)), "file")
    assert [r.name for r in source.current().rules] == ["eng"]


def test_missing_file_is_unavailable_not_open(tmp_path: Path) -> None:
    source = RulesSource(file_loader(str(tmp_path / "absent.yaml")), "file")
    with pytest.raises(RulesUnavailable):
        source.current()


def test_a_broken_document_refuses_to_serve_and_never_falls_back() -> None:
    fake = Source()
    source = RulesSource(fake.load, "fake", clock=fake.clock)
    assert source.current().rules
    fake.text = BROKEN
    with pytest.raises(RulesUnavailable) as refused:
        source.current()
    assert refused.value.status == 503
    fake.text = GOOD  # fixed: serves again
    assert source.current().rules


def test_the_check_hook_can_refuse_a_document() -> None:
    def refuse(_: RuleSet) -> None:
        raise RulesError("rule 'eng': too big")

    source = RulesSource(Source().load, "fake", check=refuse)
    with pytest.raises(RulesUnavailable):
        source.current()


def test_an_unreachable_source_serves_the_last_rules_for_a_bounded_time() -> None:
    fake = Source()
    source = RulesSource(fake.load, "fake", stale_seconds=600, clock=fake.clock)
    source.current()
    fake.down = True
    fake.now = 600
    assert source.current().rules
    fake.now = 601
    with pytest.raises(RulesUnavailable):
        source.current()


def test_an_unreachable_source_with_nothing_loaded_is_unavailable() -> None:
    fake = Source()
    fake.down = True
    with pytest.raises(RulesUnavailable):
        RulesSource(fake.load, "fake", clock=fake.clock).current()


@pytest.fixture
def ssm(aws: None) -> Iterator[None]:
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name="/cabroker/rules", Value=GOOD, Type="String"
    )
    yield
    parameters.clear_caches()  # type: ignore[no-untyped-call]


def test_ssm_source_reads_the_parameter_and_caches_it(ssm: None) -> None:
    load = ssm_loader("/cabroker/rules", max_age=60)
    assert load() == GOOD
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name="/cabroker/rules", Value=BROKEN, Type="String", Overwrite=True
    )
    assert load() == GOOD  # Powertools' cache: SSM is not asked again within max_age


def test_ssm_source_missing_parameter(ssm: None) -> None:
    with pytest.raises(SourceError, match="/cabroker/absent"):
        ssm_loader("/cabroker/absent", max_age=60)()


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(GOOD.replace("https://login.example.com", "https://[idp"), id="bad url"),
        pytest.param(GOOD + "? [x]\n: 1\n", id="unhashable key"),
        pytest.param(GOOD.replace("version: 1", "version: !!int one"), id="bad int tag"),
        pytest.param(GOOD + "when: 2020-02-30\n", id="impossible date"),
        pytest.param("version: 1\nrules: " + "[" * 5000 + "]" * 5000 + "\n", id="deep nesting"),
        pytest.param(GOOD.replace("version: 1", "version: true"), id="version true"),
    ],
)
def test_a_revoking_update_that_fails_oddly_never_leaves_the_old_rules_in_force(
    broken: str,
) -> None:
    fake = Source()
    source = RulesSource(fake.load, "fake", clock=fake.clock)
    assert source.current().rules
    fake.text = broken
    for _ in range(2):  # the second call must not find the old rules behind a cached digest
        with pytest.raises(RulesUnavailable):
            source.current()
