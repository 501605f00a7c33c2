"""Interactive logins kept for reuse: one device login serves every command while its ID token
is valid, instead of a person logging in again for ``grants`` right after ``login``.

Each login is the ID token an interactive login returned, kept per broker and issuer, with its
expiry.  It is stored as safely as the tokens (:func:`cabroker.cache.default_store`: the system
keyring under the service ``cabroker-login``, within its size limit, else ``logins.json``, mode
0600), is checked again on every use like any other ID token (its audience this broker's, not
expired), and is forgotten when it expires or at ``cabroker logout``.  A CI job never reads it:
:class:`cabroker.identity.Sources` asks for it only when no CI is detected.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from .cache import RawEntries, Store, default_store, locked
from .errors import FilesError
from .secret import Secret

log = logging.getLogger(__name__)

LOGINS_FILE = "logins.json"
KEYRING_SERVICE = "cabroker-login"


def _key(broker_url: str, issuer: str) -> str:
    return json.dumps([broker_url.rstrip("/"), issuer], separators=(",", ":"))


class Logins:
    """The kept logins, in a :class:`cabroker.cache.Store` (keyed by broker URL and issuer
    name)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @classmethod
    def default(cls, env: Mapping[str, str] = os.environ) -> Logins:
        return cls(default_store(env, LOGINS_FILE, KEYRING_SERVICE))

    def get(
        self,
        broker_url: str,
        issuer: str | None = None,
        scopes: tuple[str, ...] | None = None,
    ) -> tuple[str, Secret] | None:
        """The issuer name and ID token of the login kept for ``broker_url`` (at ``issuer``,
        when named; made with ``scopes``, when given) that expires last; None when there is
        none still valid."""
        try:
            entries, _ = self.store.read()
        except FilesError as error:
            log.debug("%s: no kept login", error.message)
            return None
        now = datetime.now(UTC).timestamp()
        found = [
            (float(entry["expires"]), str(entry["issuer"]), Secret(str(entry["id_token"])))
            for key, entry in entries.items()
            if _usable(entry, now)
            and _broker_of(key) == broker_url.rstrip("/")
            and (issuer is None or entry["issuer"] == issuer)
            and (scopes is None or entry.get("scopes") == list(scopes))
        ]
        if not found:
            return None
        _, name, token = max(found, key=lambda item: item[0])
        return name, token

    def put(
        self,
        broker_url: str,
        issuer: str,
        id_token: str,
        expires: float,
        scopes: tuple[str, ...] = ("openid",),
    ) -> None:
        """Keep a login (replacing the one kept for that broker and issuer), with the scopes
        it asked for: a login with other scopes (``CABROKER_SCOPES``) does not reuse it."""

        def change(entries: RawEntries) -> RawEntries:
            entries[_key(broker_url, issuer)] = {
                "issuer": issuer,
                "id_token": str(id_token),
                "expires": expires,
                "scopes": list(scopes),
            }
            return entries

        self._update(change)

    def clear(self) -> None:
        self._update(lambda entries: {})

    def _update(self, change: Callable[[RawEntries], RawEntries]) -> None:
        try:
            with locked(self.store.directory):
                previous, _ = self.store.read()
                now = datetime.now(UTC).timestamp()
                kept = {k: v for k, v in change(dict(previous)).items() if _usable(v, now)}
                if kept != previous:
                    self.store.write(kept, previous)
        except OSError as error:
            raise FilesError(
                f"cannot keep the login in {self.store.directory} ({error.strerror or error}); "
                "check that directory's permissions"
            ) from None


def _broker_of(key: str) -> str | None:
    """The broker URL of a stored key, or None when the key is not one of ours."""
    try:
        fields = json.loads(key)
    except ValueError:
        return None
    return fields[0] if isinstance(fields, list) and fields and isinstance(fields[0], str) else None


def _usable(entry: object, now: float) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("issuer"), str)
        and isinstance(entry.get("id_token"), str)
        and isinstance(entry.get("expires"), int | float)
        and not isinstance(entry.get("expires"), bool)
        and float(entry["expires"]) > now
    )
