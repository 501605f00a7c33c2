"""The library: a CodeArtifact grant for this caller, from the cache or from the broker.

>>> from cabroker.api import get_grant
>>> grant = get_grant("https://broker.example", access="read")   # doctest: +SKIP
>>> grant.index_url, grant.expires_at                              # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .broker import BrokerClient, Grant, TokenRequest
from .cache import CacheKey, TokenCache, grant_scopes, serves
from .config import audiences, check_broker_url
from .errors import CabrokerError, IdentityError

if TYPE_CHECKING:
    from . import identity as identity_module
    from .identity import Identity

log = logging.getLogger(__name__)

REFRESH_MARGIN_SECONDS = 300


def browser_opener() -> Callable[[str], bool] | None:
    """``webbrowser.open`` when a browser can plausibly open here, else None."""
    if os.environ.get("CI") or not sys.stdout.isatty():
        return None
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return None
    import webbrowser  # deferred: a cached grant needs no browser

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
    audience: Sequence[str] = (),
    interactive: bool | None = None,
    out: TextIO | None = None,
    cache: TokenCache | None = None,
    min_seconds_left: float = REFRESH_MARGIN_SECONDS,
    refresh: bool = False,
    env: Mapping[str, str] | None = None,
) -> Grant:
    """A grant for this request and this caller: the cached one, when it was minted for the
    same identity and has ``min_seconds_left``, else a new one from the broker.

    The identity is found first (CI, ``id_token_file``, ``CABROKER_ID_TOKEN*``); a cached
    grant is returned only to the identity it was minted for (:attr:`Identity.binding`).
    With none of those, an identity this process still holds is used (:func:`_remembered`:
    the ID token file an earlier login read, or this account's last interactive login), and
    only then does a person log in again (``interactive``, or ``source="device"``).
    ``audience`` pins the ID-token audiences for this broker (:func:`config.audiences`).
    """
    from . import identity

    env = os.environ if env is None else env
    url = check_broker_url(broker_url, "the caller")
    cache = cache or TokenCache.default(env)
    client = BrokerClient(url)
    sources = identity.Sources(audiences(url, audience, env), client.config, env, issuer)
    request = (repository, access, tuple(packages))
    who = sources.without_login(source, id_token_file)
    logged_in = False
    if who is None:
        asked = [entry for entry in cache.entries() if entry[0].asks(url, *request)]
        mine, held = _remembered(sources, asked, None, issuer)
        fresh = [g for _, g in mine if g.seconds_left() > max(min_seconds_left, 0.0)]
        if fresh and not refresh:
            return max(fresh, key=lambda grant: grant.expires_at)
        who = held[0] if held else None
    if who is None:
        if interactive is None:
            interactive = sys.stdin.isatty()
        if source != "device" and not interactive:
            raise IdentityError(sources.nothing_found(interactive))
        who = sources.login(out or sys.stderr, browser_opener(), None, time.sleep)
        logged_in = True
    key = CacheKey(url, *request, identity=who.binding, source=_source(who))
    if not refresh and not logged_in:
        cached = cache.get(key, min_seconds_left)
        if cached is not None:
            return cached
    grant = client.token(
        who.token, TokenRequest(repository, access, request[2] or None, duration_seconds)
    )
    cache.put(key, grant)
    return grant


def _source(who: Identity) -> str:
    """Where ``who`` can be found again (:attr:`CacheKey.source`)."""
    if who.source in ("file", "device"):
        return f"{who.source}:{who.where}"
    return who.source


def _remembered(
    sources: identity_module.Sources,
    entries: list[tuple[CacheKey, Grant]],
    current: Identity | None,
    issuer: str | None = None,
) -> tuple[list[tuple[CacheKey, Grant]], list[Identity]]:
    """Which of ``entries`` belong to an identity this process holds, and the identities
    found in ID token files: ``current`` (the one found without a login, if any); the ID token
    file an entry's grant was minted from, when that file still holds the same identity; and,
    only without a current identity, this account's interactive logins (at ``issuer``, when
    named): an interactive login's tokens belong to the account that logged in."""
    mine: list[tuple[CacheKey, Grant]] = []
    held: dict[str, Identity] = {}
    for key, grant in entries:
        kind, _, where = key.source.partition(":")
        if current is not None and key.identity == current.binding:
            mine.append((key, grant))
        elif kind == "file":
            found = held.get(where) or _read(sources, Path(where))
            if found is not None and found.binding == key.identity:
                held[where] = found
                mine.append((key, grant))
        elif current is None and kind == "device" and issuer in (None, where):
            mine.append((key, grant))
    return mine, list(held.values())


def _read(sources: identity_module.Sources, path: Path) -> Identity | None:
    try:
        return sources.from_file(path)
    except CabrokerError:
        return None


def grant_for_url(
    url: str,
    *,
    cache: TokenCache | None = None,
    env: Mapping[str, str] | None = None,
    min_seconds_left: float = REFRESH_MARGIN_SECONDS,
) -> Grant | None:
    """For the keyring backend: the grant that serves ``url`` (same scheme, host, port and
    repository path) and belongs to an identity this process holds (:func:`_remembered`),
    refreshed through the broker when it has less than ``min_seconds_left``; None when there
    is none.  Never interactive."""
    from . import identity

    env = os.environ if env is None else env
    cache = cache or TokenCache.default(env)
    candidates = [(k, g) for k, g in cache.entries() if serves(grant_scopes(g), url)]
    mine: list[tuple[CacheKey, Grant]] = []
    for broker in dict.fromkeys(key.broker_url for key, _ in candidates):
        try:
            sources = identity.Sources(audiences(broker, (), env), BrokerClient(broker).config, env)
            current = sources.without_login(None, None)
        except CabrokerError as error:
            log.debug("no identity for %s (%s)", broker, type(error).__name__)
            continue
        ours = [(key, grant) for key, grant in candidates if key.broker_url == broker]
        mine += _remembered(sources, ours, current)[0]
    if not mine:
        return None
    key, grant = max(mine, key=lambda entry: entry[1].expires_at)
    if grant.seconds_left() < min_seconds_left:
        with contextlib.suppress(CabrokerError):
            kind, _, where = key.source.partition(":")
            grant = get_grant(
                key.broker_url,
                repository=key.repository,
                access=key.access,
                packages=key.packages,
                source={"file": "file", "env": "env", "device": None}.get(kind, "ambient"),
                id_token_file=Path(where) if kind == "file" else None,
                issuer=where if kind == "device" else None,
                interactive=False,
                cache=cache,
                min_seconds_left=min_seconds_left,
                env=env,
            )
    return grant if grant.seconds_left() > 0 else None
