"""devstack.simple: negotiation per PEP 691, and pages that pypi-simple reads back."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from packaging.version import Version
from pypi_simple import IndexPage, ProjectPage

from devstack.simple import (
    HTML,
    JSON,
    TEXT_HTML,
    Distribution,
    content_type_header,
    negotiate,
    normalize,
    render_index,
    render_project,
    version_of,
)

PAGE_URL = "http://index.test/simple/acme-lib/"
DISTRIBUTIONS = [
    Distribution(
        filename="acme_lib-1.0.0-py3-none-any.whl",
        url="../../files/acme_lib-1.0.0-py3-none-any.whl",
        sha256="a" * 64,
        size=1234,
        requires_python=">=3.8,<4",
        upload_time=datetime(2026, 11, 24, 18, 0, 1, 250000, tzinfo=UTC),
    ),
    Distribution(
        filename="acme_lib-1.10.0.tar.gz",
        url="https://files.test/acme_lib-1.10.0.tar.gz",
        sha256="b" * 64,
        size=99,
        yanked='broken: "bad" & <worse>',
    ),
    Distribution(
        filename="acme_lib-1.9.0-py3-none-any.whl",
        url="acme_lib-1.9.0-py3-none-any.whl",
        sha256="c" * 64,
        size=7,
        yanked=True,
        upload_time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
    ),
    Distribution(
        filename="acme_lib-2.0rc1-py3-none-any.whl",
        url="acme_lib-2.0rc1-py3-none-any.whl",
        sha256="d" * 64,
        size=8,
    ),
]


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, TEXT_HTML),
        ("", TEXT_HTML),
        ("*/*", TEXT_HTML),
        ("text/*", TEXT_HTML),
        ("application/*", HTML),
        (JSON, JSON),
        (HTML, HTML),
        ("TEXT/HTML", TEXT_HTML),
        # pip's and uv's header: JSON first
        (f"{JSON}, {HTML}; q=0.1, text/html; q=0.01", JSON),
        # pypi-simple's default: no preference between JSON and HTML, ties go to HTML
        (f"{JSON}, {HTML}, text/html;q=0.01", HTML),
        (f"{HTML};q=0.2, {JSON};q=0.9", JSON),
        (f"{JSON};q=0.5, */*;q=0.6", TEXT_HTML),
        # q=0 excludes a type even when a wildcard would admit it
        (f"{JSON};q=0, */*", TEXT_HTML),
        (f"text/html;q=0, {HTML};q=0, */*;q=0.1", JSON),
        (f"text/html;q=0, {HTML};q=0, {JSON};q=0, */*", None),
        ("text/html;q=0", None),
        ("application/json", None),
        ("image/png, text/plain", None),
        ("garbage", None),
    ],
)
def test_negotiate(accept: str | None, expected: str | None) -> None:
    assert negotiate(accept) == expected


def test_content_type_header() -> None:
    assert content_type_header(JSON) == JSON
    assert content_type_header(HTML) == f"{HTML}; charset=utf-8"
    assert content_type_header(TEXT_HTML) == "text/html; charset=utf-8"


def test_normalize_and_version_of() -> None:
    assert normalize("Acme_Lib.Core") == "acme-lib-core"
    assert version_of("Acme_Lib-1.0-py3-none-any.whl") == ("acme-lib", Version("1.0"))
    assert version_of("acme_lib-2.0rc1-1-cp311-cp311-manylinux_2_28_x86_64.whl") == (
        "acme-lib",
        Version("2.0rc1"),
    )
    assert version_of("acme-lib-1.0.post1.tar.gz") == ("acme-lib", Version("1.0.post1"))
    assert version_of("acme_lib-1.0.zip") == ("acme-lib", Version("1.0"))
    for bad in ("acme_lib-1.0.egg", "acme_lib.whl", "acme_lib-1.0-py3.whl", "README"):
        with pytest.raises(ValueError, match="Invalid"):
            version_of(bad)


@pytest.mark.parametrize("content_type", [HTML, TEXT_HTML])
def test_project_html_read_back_by_pypi_simple(content_type: str) -> None:
    body = render_project("Acme_Lib", DISTRIBUTIONS, content_type)
    page = ProjectPage.from_html("Acme_Lib", body, base_url=PAGE_URL, from_encoding="utf-8")
    assert page.repository_version == "1.1"
    assert [(p.filename, p.url, p.digests) for p in page.packages] == [
        (d.filename, url, {"sha256": d.sha256})
        for d, url in zip(
            DISTRIBUTIONS,
            [
                "http://index.test/files/acme_lib-1.0.0-py3-none-any.whl",
                "https://files.test/acme_lib-1.10.0.tar.gz",
                "http://index.test/simple/acme-lib/acme_lib-1.9.0-py3-none-any.whl",
                "http://index.test/simple/acme-lib/acme_lib-2.0rc1-py3-none-any.whl",
            ],
            strict=True,
        )
    ]
    assert [p.requires_python for p in page.packages] == [">=3.8,<4", None, None, None]
    assert [(p.is_yanked, p.yanked_reason) for p in page.packages] == [
        (False, None),
        (True, 'broken: "bad" & <worse>'),
        (True, ""),
        (False, None),
    ]
    assert [(p.project, p.version) for p in page.packages][:2] == [
        ("acme_lib", "1.0.0"),
        ("acme_lib", "1.10.0"),
    ]
    text = body.decode()
    assert '<meta name="pypi:repository-version" content="1.1">' in text
    assert 'data-requires-python="&gt;=3.8,&lt;4"' in text
    assert "<worse>" not in text


def test_project_json_read_back_by_pypi_simple() -> None:
    body = render_project("Acme_Lib", DISTRIBUTIONS, JSON)
    document = json.loads(body)
    assert document["meta"] == {"api-version": "1.1"}
    assert document["name"] == "acme-lib"
    assert document["versions"] == ["1.0.0", "1.9.0", "1.10.0", "2.0rc1"]
    assert document["files"][0]["upload-time"] == "2026-11-24T18:00:01.250000Z"
    assert document["files"][2]["upload-time"] == "2026-01-02T01:04:05.000000Z"
    assert "upload-time" not in document["files"][1]

    page = ProjectPage.from_json_data(document, base_url=PAGE_URL)
    assert page.project == "acme-lib"
    assert page.repository_version == "1.1"
    assert page.versions == ["1.0.0", "1.9.0", "1.10.0", "2.0rc1"]
    assert [p.url for p in page.packages] == [
        "http://index.test/files/acme_lib-1.0.0-py3-none-any.whl",
        "https://files.test/acme_lib-1.10.0.tar.gz",
        "http://index.test/simple/acme-lib/acme_lib-1.9.0-py3-none-any.whl",
        "http://index.test/simple/acme-lib/acme_lib-2.0rc1-py3-none-any.whl",
    ]
    assert [p.digests for p in page.packages] == [{"sha256": d.sha256} for d in DISTRIBUTIONS]
    assert [p.size for p in page.packages] == [1234, 99, 7, 8]
    assert [p.requires_python for p in page.packages] == [">=3.8,<4", None, None, None]
    assert [(p.is_yanked, p.yanked_reason) for p in page.packages] == [
        (False, None),
        (True, 'broken: "bad" & <worse>'),
        (True, None),
        (False, None),
    ]
    assert page.packages[0].upload_time == DISTRIBUTIONS[0].upload_time
    assert page.packages[2].upload_time == DISTRIBUTIONS[2].upload_time


def test_naive_upload_time_is_utc() -> None:
    naive = Distribution(
        "a-1.0.tar.gz", "a-1.0.tar.gz", "e" * 64, 1, upload_time=datetime(2026, 5, 6)
    )
    document = json.loads(render_project("a", [naive], JSON))
    assert document["files"][0]["upload-time"] == "2026-05-06T00:00:00.000000Z"


def test_empty_project_page() -> None:
    document = json.loads(render_project("a", [], JSON))
    assert (document["files"], document["versions"]) == ([], [])
    assert ProjectPage.from_html("a", render_project("a", [], HTML)).packages == []


def test_project_with_a_filename_that_is_no_distribution() -> None:
    odd = Distribution("notes.txt", "notes.txt", "f" * 64, 1)
    with pytest.raises(ValueError, match="Invalid"):
        render_project("a", [odd], JSON)


@pytest.mark.parametrize("content_type", [HTML, TEXT_HTML])
def test_index_html_read_back_by_pypi_simple(content_type: str) -> None:
    body = render_index(["Zeta", "acme_lib", "Acme.Lib", "tinyjson"], content_type)
    page = IndexPage.from_html(body)
    assert page.repository_version == "1.1"
    assert page.projects == ["acme-lib", "tinyjson", "zeta"]
    text = body.decode()
    assert '<a href="acme-lib/">acme-lib</a>' in text
    assert '<a href="zeta/">zeta</a>' in text


def test_index_json_read_back_by_pypi_simple() -> None:
    document = json.loads(render_index(["Zeta", "acme_lib", "Acme.Lib", "tinyjson"], JSON))
    assert document == {
        "meta": {"api-version": "1.1"},
        "projects": [{"name": "acme-lib"}, {"name": "tinyjson"}, {"name": "zeta"}],
    }
    page = IndexPage.from_json_data(document)
    assert (page.projects, page.repository_version) == (["acme-lib", "tinyjson", "zeta"], "1.1")


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", ""])
def test_render_refuses_other_content_types(content_type: str) -> None:
    with pytest.raises(ValueError, match="content type"):
        render_index(["a"], content_type)
    with pytest.raises(ValueError, match="content type"):
        render_project("a", [], content_type)
