"""CodeArtifact package-group patterns: the documented grammar, checked offline.

Nothing else checks these (cfn-lint treats ``Pattern`` as a plain string), and CodeArtifact only
refuses a bad one at deploy time. A pattern is a package path (``/FORMAT/NAMESPACE/NAME``) with
the unspecified tail left out and one terminating suffix:

- ``$`` matches the full coordinate:          ``/pypi//acme-lib$``
- ``~`` matches a prefix of the last component: ``/pypi//acme~``, ``/maven/com.acme~``
- ``*`` matches every value of the next component: ``/*``, ``/pypi/*``, ``/npm/space/*``

Rules from the user guide: ``~`` must follow a word character; formats without namespaces
(pypi, nuget, cargo, ruby) have an empty namespace section (``/pypi//name``); formats with them
(maven, generic, swift, npm) need the namespace when a name is given (npm's may be empty:
``/npm//react``); PyPI and NuGet names are matched normalized, so patterns must be normalized.

Run as a script to check the internal prefixes a deployment is configured with::

    python infra/package_groups.py acme acme-tools   # exit 0, or 1 with a reason per prefix
"""

from __future__ import annotations

import re
import sys

FORMATS = frozenset({"npm", "pypi", "maven", "nuget", "generic", "ruby", "swift", "cargo"})
NO_NAMESPACE = frozenset({"pypi", "nuget", "ruby", "cargo"})
EMPTY_NAMESPACE_ALLOWED = NO_NAMESPACE | {"npm"}
_COMPONENT = re.compile(r"^[A-Za-z0-9._@-]+$")
_WORD_END = re.compile(r"\w$", re.ASCII)
_PEP503 = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def pattern_error(pattern: str) -> str | None:
    """Why ``pattern`` is not a valid package-group definition, or ``None``."""
    if not pattern.startswith("/"):
        return "must start with '/'"
    if pattern == "/*":
        return None
    suffix, body = pattern[-1], pattern[1:-1]
    if suffix not in "$~*":
        return "must end with '$' (exact), '~' (prefix) or '*' (all values)"
    parts = body.split("/")
    if suffix == "*":
        if not body.endswith("/"):
            return "'*' must follow a '/' (it stands for a whole component)"
        parts = parts[:-1]
    fmt = parts[0]
    if fmt not in FORMATS:
        return f"unknown package format {fmt!r} (one of {', '.join(sorted(FORMATS))})"
    if len(parts) > 3:
        return "has more components than format, namespace and name"
    if suffix == "~" and not _WORD_END.search(body):
        return "'~' must follow a word character (letter, digit or '_')"
    if len(parts) == 1:
        return None if suffix == "*" else "a format alone takes '/*' (e.g. '/pypi/*')"
    namespace = parts[1]
    name = parts[2] if len(parts) == 3 else None
    if fmt in NO_NAMESPACE and namespace:
        return f"{fmt} packages have no namespace: write '/{fmt}//NAME'"
    if name is None:
        if fmt in NO_NAMESPACE:
            return f"{fmt} patterns name a package: '/{fmt}//NAME~' or '/{fmt}//NAME$'"
        return None if _COMPONENT.fullmatch(namespace) else "the namespace has invalid characters"
    if not namespace and fmt not in EMPTY_NAMESPACE_ALLOWED:
        return f"{fmt} patterns that name a package must give its namespace"
    if namespace and not _COMPONENT.fullmatch(namespace):
        return "the namespace has invalid characters"
    if not name or not _COMPONENT.fullmatch(name):
        return "the name is empty or has invalid characters"
    if fmt in {"pypi", "nuget"} and not _PEP503.fullmatch(name):
        return f"{fmt} names are matched normalized: write {normalize(name)!r}"
    return None


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pypi_prefix_pattern(prefix: str) -> str:
    """The group pattern guarding every PyPI package whose name starts with ``prefix``."""
    return f"/pypi//{prefix}~"


def main(prefixes: list[str]) -> int:
    bad = 0
    for prefix in prefixes:
        reason = pattern_error(pypi_prefix_pattern(prefix))
        if reason:
            bad += 1
            print(f"{pypi_prefix_pattern(prefix)}: {reason}", file=sys.stderr)
    return 1 if bad or not prefixes else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
