"""The simple repository API, server side: PEP 503 HTML and PEP 691 JSON, API version 1.1.

What pip, uv and pypi-simple read from an index: the project list (``/simple/``) and one page
per project (``/simple/<name>/``) listing its files with their sha256, ``Requires-Python``,
yanked state (PEP 592), and in JSON their size, upload time and the project's versions
(PEP 700).  Both formats carry the same facts; ``negotiate`` picks one from the request's
``Accept`` header as PEP 691 describes, and the renderers return the body bytes.  Serving them
(routes, redirects to the normalized name, status codes) is the caller's business.

Names, versions and filenames are parsed by ``packaging``; the pages are written here because
no maintained library renders them.  The tests read them back with pypi-simple.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

from packaging.utils import (
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

API_VERSION = "1.1"
JSON = "application/vnd.pypi.simple.v1+json"
HTML = "application/vnd.pypi.simple.v1+html"
TEXT_HTML = "text/html"
# Ties go to the first: as on PyPI, a client that states no preference ("*/*") gets HTML.
CONTENT_TYPES = (TEXT_HTML, HTML, JSON)


@dataclass(frozen=True)
class Distribution:
    """One file of a project as a project page lists it.

    ``url`` is where to download it, relative to the project page or absolute; ``sha256`` is
    its hex digest.  ``yanked`` is False, True, or the reason it was yanked (PEP 592).  A naive
    ``upload_time`` is taken to be UTC.
    """

    filename: str
    url: str
    sha256: str
    size: int
    requires_python: str | None = None
    yanked: bool | str = False
    upload_time: datetime | None = None


def normalize(name: str) -> NormalizedName:
    """The PEP 503 normalized form of a project name: ``Acme_Lib`` → ``acme-lib``."""
    return canonicalize_name(name)


def version_of(filename: str) -> tuple[NormalizedName, Version]:
    """The (normalized name, version) a wheel or sdist filename declares.

    Raises ``ValueError`` (``packaging.utils.InvalidWheelFilename`` or
    ``InvalidSdistFilename``) for anything else.
    """
    if filename.endswith(".whl"):
        name, version, _build, _tags = parse_wheel_filename(filename)
        return name, version
    return parse_sdist_filename(filename)


def negotiate(accept: str | None) -> str | None:
    """The content type to answer an ``Accept`` header with, or None: answer 406.

    One of ``application/vnd.pypi.simple.v1+json``, ``application/vnd.pypi.simple.v1+html`` and
    ``text/html``.  Each gets the quality of the most specific media range that matches it (so
    ``…+json;q=0, */*`` excludes JSON); the highest quality above 0 wins, ties go to HTML.
    No header (or an empty one) means ``text/html``, as PEP 691 asks for old clients.
    """
    if accept is None or not accept.strip():
        return TEXT_HTML
    ranges = parse_accept_header(accept, MIMEAccept)
    best: str | None = None
    best_quality = 0.0
    for content_type in CONTENT_TYPES:
        quality = ranges.quality(content_type)
        if quality > best_quality:
            best, best_quality = content_type, quality
    return best


def content_type_header(content_type: str) -> str:
    """The ``Content-Type`` header for a body rendered as ``content_type`` (HTML gets a charset)."""
    return content_type if content_type == JSON else f"{content_type}; charset=utf-8"


def render_index(projects: Iterable[str], content_type: str) -> bytes:
    """The ``/simple/`` page: each project once, normalized and sorted, linked as ``name/``."""
    names = sorted({normalize(project) for project in projects})
    if _is_json(content_type):
        return _json(
            {"meta": {"api-version": API_VERSION}, "projects": [{"name": n} for n in names]}
        )
    links = "".join(f'    <a href="{escape(n)}/">{escape(n)}</a><br>\n' for n in names)
    return _html("Simple index", links)


def render_project(name: str, distributions: Sequence[Distribution], content_type: str) -> bytes:
    """The ``/simple/<name>/`` page listing ``distributions`` in the order given.

    JSON also lists the project's versions, parsed from the filenames and sorted by PEP 440
    (so every filename must be a wheel's or an sdist's: ``ValueError`` otherwise).
    """
    if _is_json(content_type):
        versions = sorted({version_of(d.filename)[1] for d in distributions})
        return _json(
            {
                "meta": {"api-version": API_VERSION},
                "name": normalize(name),
                "files": [_file_json(d) for d in distributions],
                "versions": [str(v) for v in versions],
            }
        )
    links = "".join(f"    {_anchor(d)}<br>\n" for d in distributions)
    return _html(f"Links for {name}", f"    <h1>Links for {escape(name)}</h1>\n{links}")


def _is_json(content_type: str) -> bool:
    if content_type == JSON:
        return True
    if content_type in (HTML, TEXT_HTML):
        return False
    raise ValueError(f"not a simple API content type: {content_type!r}")


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _html(title: str, body: str) -> bytes:
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">\n'
        f"    <title>{escape(title)}</title>\n"
        f"  </head>\n  <body>\n{body}  </body>\n</html>\n"
    ).encode()


def _anchor(distribution: Distribution) -> str:
    href = f"{distribution.url}#sha256={distribution.sha256}"
    attributes = f'href="{escape(href)}"'
    if distribution.requires_python is not None:
        attributes += f' data-requires-python="{escape(distribution.requires_python)}"'
    if distribution.yanked is not False:
        reason = "" if distribution.yanked is True else distribution.yanked
        attributes += f' data-yanked="{escape(reason)}"'
    return f"<a {attributes}>{escape(distribution.filename)}</a>"


def _file_json(distribution: Distribution) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "filename": distribution.filename,
        "url": distribution.url,
        "hashes": {"sha256": distribution.sha256},
        "requires-python": distribution.requires_python,
        "yanked": distribution.yanked,
        "size": distribution.size,
    }
    if distribution.upload_time is not None:
        entry["upload-time"] = _timestamp(distribution.upload_time)
    return entry


def _timestamp(moment: datetime) -> str:
    """PEP 700's ``yyyy-mm-ddThh:mm:ss.ffffffZ``, in UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
