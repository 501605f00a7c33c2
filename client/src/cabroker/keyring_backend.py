"""A keyring backend that answers pip, twine and uv with ``("aws", token)`` for the repository
hosts of the grants ``cabroker`` obtained, refreshing a grant shortly before it expires.

Installed through the ``keyring.backends`` entry point (priority 9, above the system keyrings,
which keyring's chainer still asks for every other host).  For a host that is not ours it
returns None after reading only the small ``hosts`` file of the token cache: nothing heavy is
imported and nothing else is read.  It never stores anything: ``set_password`` and
``delete_password`` raise ``NotImplementedError``, so the chainer moves on to the next keyring.

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

if TYPE_CHECKING:
    from .broker import Grant
    from .cache import TokenCache

log = logging.getLogger(__name__)

USERNAME = "aws"
REFRESH_MARGIN_SECONDS = 300.0

Fetcher = Callable[[str], "Grant | None"]


def service_host(service: str) -> str | None:
    """The lower-case host of what a tool passes as the service: a URL (pip, twine, uv), or a
    netloc, possibly with a user and a port (pip's second try)."""
    service = service.strip()
    if not service:
        return None
    return _cache.host_of(service if "://" in service else "//" + service)


def refresh_for_host(host: str) -> Grant | None:
    """The default fetcher: ``cabroker.api.refresh_for_host``, imported only when needed; None
    when it is not there."""
    try:
        refresh: Fetcher = importlib.import_module("cabroker.api").refresh_for_host
    except (ImportError, AttributeError) as error:
        log.debug("cabroker cannot refresh tokens here (%s)", error)
        return None
    return refresh(host)


class CabrokerKeyring(KeyringBackend):
    """``get_credential`` / ``get_password`` for the hosts in the token cache.

    ``cache`` (default: ``TokenCache.default()``, built on first use) and ``fetcher`` (host →
    a fresh grant or None; default: :func:`refresh_for_host`) are there for tests.  A grant the
    fetcher returns is expected to be in the cache already (``cabroker.api`` puts it there).
    """

    priority = 9

    def __init__(
        self,
        *,
        cache: TokenCache | None = None,
        fetcher: Fetcher | None = None,
        refresh_margin: float = REFRESH_MARGIN_SECONDS,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # keyring leaves it untyped
        self._cache = cache
        self._fetcher = fetcher if fetcher is not None else refresh_for_host
        self.refresh_margin = refresh_margin

    def _known_hosts(self) -> frozenset[str]:
        if self._cache is not None:
            return self._cache.known_hosts()
        return _cache.known_hosts()

    def token(self, service: str, username: str | None) -> str | None:
        """The token for ``service`` and ``username``, or None when it is not ours to answer."""
        if username and username != USERNAME:
            return None
        host = service_host(service)
        if host is None or host not in self._known_hosts():
            return None
        try:
            return self._token_for(host)
        except Exception as error:  # noqa: BLE001 - never break the tool that asked
            log.debug("cabroker has no token for %s (%s: %s)", host, type(error).__name__, error)
            return None

    def _token_for(self, host: str) -> str | None:
        cache = self._cache if self._cache is not None else _cache.TokenCache.default()
        grant = cache.find_by_host(host)
        if grant is None or grant.seconds_left() < self.refresh_margin:
            try:
                fresh = self._fetcher(host)
            except Exception as error:  # noqa: BLE001 - keep a cached grant still valid
                log.debug("refreshing the token for %s failed (%s)", host, type(error).__name__)
                fresh = None
            if fresh is not None and host in _cache.grant_hosts(fresh):
                grant = fresh
        if grant is None or grant.seconds_left() <= 0:
            return None
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
