from __future__ import annotations

import pytest

from broker.names import covers, normalize, normalize_pattern, pattern_error


@pytest.mark.parametrize(
    ("name", "normalized"),
    [
        ("Acme_Lib", "acme-lib"),
        ("acme.lib", "acme-lib"),
        ("acme--_.lib", "acme-lib"),
        ("ACME", "acme"),
    ],
)
def test_pep503_normalization(name: str, normalized: str) -> None:
    assert normalize(name) == normalized


@pytest.mark.parametrize(
    "pattern",
    ["acme-lib", "a", "acme-*", "acme_*", "acme*", "*", "A1.b_c-d", "x" * 100],
)
def test_valid_patterns(pattern: str) -> None:
    assert pattern_error(pattern) is None


@pytest.mark.parametrize(
    "pattern",
    [
        pytest.param("", id="empty"),
        pytest.param("acme-", id="trailing separator without star"),
        pytest.param("-acme", id="leading separator"),
        pytest.param("*acme", id="leading star"),
        pytest.param("ac*me", id="inner star"),
        pytest.param("acme**", id="double star"),
        pytest.param("acme-?", id="iam single-character wildcard"),
        pytest.param("acme/lib", id="slash"),
        pytest.param("acme:lib", id="colon"),
        pytest.param('acme"', id="quote"),
        pytest.param("acme lib", id="space"),
        pytest.param("acme-${aws:username}", id="policy variable"),
        pytest.param("acme\n", id="newline"),
        pytest.param("ácme", id="non-ascii"),
        pytest.param("x" * 101, id="too long"),
        pytest.param(1, id="not a string"),
    ],
)
def test_patterns_that_could_widen_or_inject_are_refused(pattern: object) -> None:
    assert pattern_error(pattern) is not None


def test_normalize_pattern_keeps_the_star() -> None:
    assert normalize_pattern("Acme_Tools*") == "acme-tools*"


@pytest.mark.parametrize(
    ("granted", "requested", "covered"),
    [
        pytest.param("acme-*", "acme-lib", True, id="name under prefix"),
        pytest.param("acme-*", "acme-tools*", True, id="narrower prefix"),
        pytest.param("acme-*", "acme-*", True, id="same prefix"),
        pytest.param("acme-*", "acme*", False, id="wider prefix"),
        pytest.param("acme-*", "*", False, id="everything"),
        pytest.param("acme-*", "acmecorp", False, id="name outside prefix"),
        pytest.param("acme-lib", "acme-lib", True, id="exact"),
        pytest.param("acme-lib", "acme-lib*", False, id="prefix of an exact grant"),
        pytest.param("acme-lib", "acme-lib2", False, id="other name"),
        pytest.param("*", "anything*", True, id="star covers all"),
    ],
)
def test_covers(granted: str, requested: str, covered: bool) -> None:
    assert covers(granted, requested) is covered
