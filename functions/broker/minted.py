"""A minted CodeArtifact token, as the caches keep it: never printed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class MintedToken:
    token: str
    expires_at: datetime
    endpoint: str  # the repository's PyPI endpoint, ending in "/"
    # RoleSessionName and SourceIdentity of the session that minted it: what CloudTrail shows
    # for everything the token does (with per-grant sharing, maybe another caller's session).
    session: str

    def __repr__(self) -> str:  # never print the token
        return (
            f"MintedToken(expires_at={self.expires_at.isoformat()}, endpoint={self.endpoint}, "
            f"session={self.session})"
        )
