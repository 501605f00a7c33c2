"""The library: a CodeArtifact grant for this caller, from the cache or from the broker.

>>> from cabroker.api import get_grant
>>> grant = get_grant("https://broker.example", access="read")   # doctest: +SKIP
>>> grant.index_url, grant.expires_at                              # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
import webbrowser
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

from .broker import BrokerClient, Grant, TokenRequest
from .cache import CacheKey, TokenCache, grant_hosts

REFRESH_MARGIN_SECONDS = 300


def browser_opener() -> Callable[[str], bool] | None:
    """``webbrowser.open`` when a browser can plausibly open here, else None."""
    if os.environ.get("CI") or not sys.stdout.isatty():
        return None
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return None
    return webbrowser.open


def get_grant(
    broker_url: str,
    *,
    repository: str | None = None,
    access: str | None = None,
    packages: Sequence[str] = (),
    duration_seconds: int | None = None,
    source: str | None = None,
    id_token_file: Path | None = None,
    issuer: str | None = None,
    interactive: bool | None = None,
    out: TextIO | None = None,
    cache: TokenCache | None = None,
    min_seconds_left: float = REFRESH_MARGIN_SECONDS,
    refresh: bool = False,
    env: Mapping[str, str] | None = None,
) -> Grant:
    """A grant for this request: the cached one while it has ``min_seconds_left``, else a new
    one from the broker with an identity from the first source that has one."""
    from . import identity

    cache = cache or TokenCache.default()
    key = CacheKey(broker_url, repository, access, tuple(packages))
    if not refresh:
        cached = cache.get(key, min_seconds_left)
        if cached is not None:
            return cached
    client = BrokerClient(broker_url)
    config = client.config()
    who = identity.obtain(
        config,
        source=source,
        id_token_file=id_token_file,
        env=os.environ if env is None else env,
        issuer=issuer,
        interactive=sys.stdin.isatty() if interactive is None else interactive,
        out=out or sys.stderr,
        open_browser=browser_opener(),
    )
    request = TokenRequest(repository, access, tuple(packages) or None, duration_seconds)
    grant = client.token(who.token, request)
    cache.put(key, grant)
    return grant


def refresh_for_host(host: str) -> Grant | None:
    """For the keyring backend: a fresh grant for the repository host a tool asks about,
    asked again the way the cached one was (its broker, repository, access, packages)."""
    cache = TokenCache.default()
    matching = [(key, grant) for key, grant in cache.entries() if host in grant_hosts(grant)]
    if not matching:
        return None
    key, _ = max(matching, key=lambda entry: entry[1].expires_at)
    return get_grant(
        key.broker_url,
        repository=key.repository,
        access=key.access,
        packages=key.packages,
        cache=cache,
    )
