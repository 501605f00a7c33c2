"""The package-group grammar validator, as a truth table of the user guide's rules."""

from __future__ import annotations

import pytest

from infra.package_groups import main, pattern_error, pypi_prefix_pattern


@pytest.mark.parametrize(
    "pattern",
    [
        pytest.param("/*", id="all formats"),
        pytest.param("/npm/*", id="one format"),
        pytest.param("/pypi/*", id="all pypi"),
        pytest.param("/maven/com.anycompany~", id="namespace prefix"),
        pytest.param("/npm/space/*", id="namespace"),
        pytest.param("/npm/space/anycompany-ui~", id="name prefix"),
        pytest.param("/maven/org.apache.logging.log4j/log4j-core$", id="exact maven"),
        pytest.param("/pypi//acme~", id="pypi prefix"),
        pytest.param("/pypi//acme-lib$", id="pypi exact"),
        pytest.param("/npm//react$", id="npm without scope"),
        pytest.param("/maven/com.acme_~", id="underscore is a word character"),
    ],
)
def test_documented_patterns_are_valid(pattern: str) -> None:
    assert pattern_error(pattern) is None


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        pytest.param("pypi//acme~", "start with '/'", id="no leading slash"),
        pytest.param("/pypi//acme", "must end with", id="no suffix"),
        pytest.param("/pypi//acme-~", "word character", id="tilde after a hyphen"),
        pytest.param("/pypi//acme.~", "word character", id="tilde after a dot"),
        pytest.param("/pypi/~", "word character", id="tilde after a slash"),
        pytest.param("/pypi/acme/lib~", "no namespace", id="pypi namespace"),
        pytest.param("/pypi/acme~", "no namespace", id="pypi namespace prefix"),
        pytest.param("/python//acme~", "unknown package format", id="python is not a format"),
        pytest.param("/pypi//Acme_Lib$", "normalized", id="pypi name not normalized"),
        pytest.param("/pypi//acme*", "follow a '/'", id="star inside a component"),
        pytest.param("/pypi//acme/x/y$", "more components", id="too deep"),
        pytest.param("/maven//log4j$", "namespace", id="maven without namespace"),
        pytest.param("/pypi//ac me~", "invalid characters", id="space"),
        pytest.param("/pypi//acme$~", "word character", id="two suffixes"),
        pytest.param("/pypi//acme_tools~", "normalized", id="pypi prefix not normalized"),
        pytest.param("/pypi$", "format alone", id="format with dollar"),
        pytest.param("/pypi//$", "empty", id="empty name"),
    ],
)
def test_invalid_patterns_say_why(pattern: str, reason: str) -> None:
    error = pattern_error(pattern)
    assert error is not None
    assert reason in error


def test_prefix_pattern_and_script(capsys: pytest.CaptureFixture[str]) -> None:
    assert pypi_prefix_pattern("acme") == "/pypi//acme~"
    assert main(["acme", "acme-tools"]) == 0
    assert main(["acme-"]) == 1
    assert main(["acme_tools"]) == 1
    err = capsys.readouterr().err
    assert "word character" in err
    assert "write 'acme-tools'" in err
    assert main([]) == 1  # no prefix guards nothing: refuse rather than pass
