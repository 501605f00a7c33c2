"""A read-only client of one upstream simple index: what an external connection fetches.

CodeArtifact answers for a package it does not hold by asking its upstream (for the devstack,
the local "public PyPI" of ``devstack.public``, never the internet).  ``UpstreamIndex`` reads a
project's files with pypi-simple (JSON preferred, HTML understood) and downloads a file,
checking its sha256.  Its session talks only to the origin (scheme, host, port) of the index
URL it was given: a page or a redirect pointing elsewhere raises ``OffOrigin`` before any
request leaves; proxies and ``.netrc`` from the environment are ignored.
"""

from __future__ import annotations

import hashlib
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import requests
from pypi_simple import ACCEPT_JSON_PREFERRED, NoSuchProjectError, PyPISimple
from pypi_simple.errors import UnsupportedContentTypeError, UnsupportedRepoVersionError

from devstack.simple import Distribution


class UpstreamError(Exception):
    """The upstream failed, answered something unusable, or sent a file that is not the one
    its page describes.  The caller answers 502/503; the message names the URL, never a secret.
    """


class HashMismatch(UpstreamError):
    """A downloaded file's sha256 is not the one the page listed."""


class OffOrigin(UpstreamError):
    """A request (a file URL or a redirect) would leave the upstream's origin."""


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of ``url``, default ports made explicit."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or ""), port


class PinnedSession(requests.Session):
    """A ``requests.Session`` that refuses to send anything outside one origin.

    Redirects go through ``send`` too, so they are held to the same origin.
    """

    def __init__(self, url: str) -> None:
        super().__init__()
        self.origin = origin(url)
        self.trust_env = False

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if request.url is None or origin(request.url) != self.origin:
            raise OffOrigin(f"refusing {request.url}: outside the upstream {self.origin}")
        return super().send(request, **kwargs)


class UpstreamIndex:
    """The simple index at ``url`` (e.g. ``http://127.0.0.1:PORT/simple/``)."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout
        self._session = PinnedSession(url)
        self._client = PyPISimple(url, session=self._session, accept=ACCEPT_JSON_PREFERRED)

    def project(self, name: str) -> list[Distribution] | None:
        """The files the upstream lists for project ``name``, or None if it has no such project.

        File URLs are absolute.  A file without a sha256 or a size on the page is left out: it
        could be neither verified nor described.  Raises ``UpstreamError`` on any other failure.
        """
        try:
            page = self._client.get_project_page(name, timeout=self.timeout)
        except NoSuchProjectError:
            return None
        except (
            requests.RequestException,
            UnsupportedContentTypeError,
            UnsupportedRepoVersionError,
            ValueError,
        ) as error:
            raise UpstreamError(f"upstream {self.url} failed for {name!r}: {error}") from error
        distributions = []
        for package in page.packages:
            sha256 = package.digests.get("sha256")
            if not sha256 or package.size is None:
                continue
            yanked: bool | str = package.is_yanked
            if package.is_yanked and package.yanked_reason:
                yanked = package.yanked_reason
            distributions.append(
                Distribution(
                    filename=package.filename,
                    url=package.url,
                    sha256=sha256.lower(),
                    size=package.size,
                    requires_python=package.requires_python,
                    yanked=yanked,
                    upload_time=package.upload_time,
                )
            )
        return distributions

    def download(self, url: str, sha256: str) -> bytes:
        """The file at ``url`` (on the upstream's origin), checked against ``sha256``.

        Raises ``HashMismatch`` if the bytes are not the expected ones, ``OffOrigin`` for a URL
        elsewhere, ``UpstreamError`` for HTTP or network failures.
        """
        try:
            response = self._session.get(url, timeout=self.timeout)
            response.raise_for_status()
        except OffOrigin:
            raise
        except requests.RequestException as error:
            raise UpstreamError(f"download of {url} failed: {error}") from error
        content = response.content
        actual = hashlib.sha256(content).hexdigest()
        if actual != sha256.lower():
            raise HashMismatch(f"{url}: sha256 {actual}, the index lists {sha256}")
        return content

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> UpstreamIndex:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
