"""Python package names and name patterns, as CodeArtifact and IAM see them.

A pattern is a PEP 503-normalizable project name, optionally ending in ``*`` (a prefix match);
``*`` alone means every package.  Nothing else is accepted: no ``?``, no inner ``*``, no
characters that mean something in an ARN or a policy (``/``, ``:``, ``"``, ``$``, spaces…), so a
pattern can never widen a grant or inject into the session policy.
"""

from __future__ import annotations

import re

# PEP 508 names: letters, digits, ".", "_" and "-", starting and ending with a letter or digit.
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")
# A prefix may end with a separator ("acme-*"), but must start with a letter or digit.
_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SEPARATORS = re.compile(r"[-_.]+")
MAX_PATTERN_LENGTH = 100


def normalize(name: str) -> str:
    """PEP 503 normalization: lowercase, runs of ``-``, ``_`` and ``.`` become one ``-``."""
    return _SEPARATORS.sub("-", name).lower()


def pattern_error(pattern: object) -> str | None:
    """Why ``pattern`` is not a valid package pattern, or ``None`` when it is."""
    if not isinstance(pattern, str):
        return "must be a string"
    if not pattern:
        return "must not be empty"
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"must be at most {MAX_PATTERN_LENGTH} characters"
    if pattern == "*":
        return None
    if pattern.endswith("*"):
        if _PREFIX.fullmatch(pattern[:-1]):
            return None
        return (
            "must be a package name prefix followed by a single trailing '*' "
            "(letters, digits, '.', '_' and '-')"
        )
    if _NAME.fullmatch(pattern):
        return None
    return "must be a package name (letters, digits, '.', '_' and '-') or a prefix ending in '*'"


def normalize_pattern(pattern: str) -> str:
    """Normalize a valid pattern; the trailing ``*`` survives."""
    if pattern.endswith("*"):
        return normalize(pattern[:-1]) + "*"
    return normalize(pattern)


def covers(granted: str, requested: str) -> bool:
    """Whether every name matched by ``requested`` is matched by ``granted``.

    Both must be normalized patterns.
    """
    if granted.endswith("*"):
        # "acme-*" covers "acme-lib" and "acme-x*", never "acme*" (which also matches "acmecorp").
        return requested.startswith(granted[:-1])
    return requested == granted
