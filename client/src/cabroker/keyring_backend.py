"""A keyring backend that answers pip, twine and uv with ``("aws", token)`` for the repository
endpoints of the grants ``cabroker`` obtained, refreshing a grant shortly before it expires.

Installed through the ``keyring.backends`` entry point (priority 9, above the system keyrings,
which keyring's chainer still asks for every other URL).  It answers only for the exact
repository endpoint of a grant: same scheme (https; http only to a loopback host), host, port
and repository path (:func:`cabroker.cache.serves`), never for the same host name over http,
on another port, or for a bare host name; and only with a grant minted for the identity this
process has (:func:`cabroker.api.grant_for_url`).  For a URL that is not ours it returns None
after reading only the small ``scopes`` file of the token cache: nothing heavy is imported and
nothing else is read.  It never stores anything: ``set_password`` and ``delete_password`` raise
``NotImplementedError``, so the chainer moves on to the next keyring.

    pip install --keyring-provider import --index-url https://aws@<repository endpoint> …
    uv pip install --keyring-provider subprocess --index-url https://aws@<endpoint> …
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from keyring.backend import KeyringBackend
from keyring.credentials import Credential, SimpleCredential

from . import cache as _cache
from .config import unsafe_url

if TYPE_CHECKING:
    from .broker import Grant

log = logging.getLogger(__name__)

USERNAME = "aws"

Fetcher = Callable[[str], "Grant | None"]


def service_url(service: str) -> str | None:
    """The URL a tool passes as the service, without its user name, when it is one a token
    may go to (https, or http to a loopback host); None for a bare host name or anything else."""
    service = service.strip()
    if "://" not in service:
        return None  # pip's second try passes a bare netloc: no scheme, no path, not ours
    scheme, _, rest = service.partition("://")
    netloc, slash, path = rest.partition("/")
    url = f"{scheme}://{netloc.rpartition('@')[2]}{slash}{path}"
    return url if unsafe_url(url) is None else None


def grant_for_url(url: str) -> Grant | None:
    """The default fetcher: ``cabroker.api.grant_for_url``, imported only when needed; None
    when it is not there."""
    try:
        fetch: Fetcher = importlib.import_module("cabroker.api").grant_for_url
    except (ImportError, AttributeError) as error:
        log.debug("cabroker cannot serve tokens here (%s)", error)
        return None
    return fetch(url)


class CabrokerKeyring(KeyringBackend):
    """``get_credential`` / ``get_password`` for the repository endpoints in the token cache.

    ``scopes`` (default: the cache's ``scopes`` file, read at each call) and ``fetcher`` (URL →
    the caller's grant for it or None; default: :func:`grant_for_url`) are there for tests.
    """

    priority = 9

    def __init__(
        self,
        *,
        scopes: Callable[[], frozenset[str]] | None = None,
        fetcher: Fetcher | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # keyring leaves it untyped
        self._scopes = scopes if scopes is not None else _cache.known_scopes
        self._fetcher = fetcher if fetcher is not None else grant_for_url

    def token(self, service: str, username: str | None) -> str | None:
        """The token for ``service`` and ``username``, or None when it is not ours to answer."""
        if username and username != USERNAME:
            return None
        url = service_url(service)
        if url is None or not _cache.serves(self._scopes(), url):
            return None
        try:
            grant = self._fetcher(url)
        except Exception as error:  # noqa: BLE001 - never break the tool that asked
            log.debug("cabroker has no token for %s (%s)", url, type(error).__name__)
            return None
        if grant is None or grant.seconds_left() <= 0:
            return None
        if not _cache.serves(_cache.grant_scopes(grant), url):
            return None  # a fetcher's grant for another endpoint is never handed out
        return grant.token

    # --- the keyring API ------------------------------------------------------------------

    def get_credential(self, service: str, username: str | None) -> Credential | None:
        token = self.token(service, username)
        return None if token is None else SimpleCredential(USERNAME, token)

    def get_password(self, service: str, username: str) -> str | None:
        return self.token(service, username)

    def set_password(self, service: str, username: str, password: str) -> None:
        raise NotImplementedError("cabroker's keyring only reads: run 'cabroker login'")

    def delete_password(self, service: str, username: str) -> None:
        raise NotImplementedError("cabroker's keyring only reads: run 'cabroker logout'")
