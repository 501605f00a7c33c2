"""Secrets (ID tokens, CodeArtifact tokens) as strings whose repr never shows them."""

from __future__ import annotations


class Secret(str):
    """A token: ``repr`` is redacted, so logs, tracebacks and test reports never show it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<secret: {len(self)} characters>"
