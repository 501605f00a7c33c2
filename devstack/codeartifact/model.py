"""The CodeArtifact stand-in's state: domains, repositories, package groups, packages, tokens.

A test double of the parts of AWS CodeArtifact this project uses (see devstack/README.md). The
semantics follow the CodeArtifact user guide where the project depends on them:

- a repository's packages are its own, then its upstreams' in order (depth first, each
  repository once), then its external connection's;
- the most specific package group that matches a package decides its origin controls:
  ``EXTERNAL_UPSTREAM`` (fetching from the external connection), ``INTERNAL_UPSTREAM`` (from
  upstream repositories) and ``PUBLISH``; ``INHERIT`` takes the parent group's mode and the
  root group ``/*`` allows everything;
- an authorization token is bound to the principal that asked for it, whose permissions are
  evaluated when the token is used, and expires on its own clock (not the session's).

All state lives in memory behind one lock; nothing here speaks HTTP.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from infra.package_groups import pattern_error

PYPI_CONNECTION = "public:pypi"
RESTRICTIONS = ("EXTERNAL_UPSTREAM", "INTERNAL_UPSTREAM", "PUBLISH")
MODES = ("ALLOW", "BLOCK", "ALLOW_SPECIFIC_REPOSITORIES", "INHERIT")
MIN_TOKEN_SECONDS = 900
MAX_TOKEN_SECONDS = 43200


class CodeArtifactError(Exception):
    """An API error with CodeArtifact's error code and HTTP status."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message


def not_found(what: str) -> CodeArtifactError:
    return CodeArtifactError("ResourceNotFoundException", 404, f"{what} not found")


def conflict(what: str) -> CodeArtifactError:
    return CodeArtifactError("ConflictException", 409, f"{what} already exists")


def invalid(message: str) -> CodeArtifactError:
    return CodeArtifactError("ValidationException", 400, message)


def now() -> datetime:
    return datetime.now(UTC)


class Principal(Protocol):
    """Who asked for a token; answers, at each use, whether an action is allowed."""

    @property
    def arn(self) -> str: ...

    @property
    def account(self) -> str: ...

    def allows(self, action: str, resource: str, context: dict[str, str] | None = None) -> bool: ...


@dataclass
class Asset:
    filename: str
    content: bytes
    sha256: str
    requires_python: str | None
    published: datetime


@dataclass
class PackageVersion:
    name: str  # normalized
    version: str
    origin: str  # INTERNAL (published here) or EXTERNAL (fetched through a connection)
    assets: dict[str, Asset] = field(default_factory=dict)


@dataclass
class Repository:
    name: str
    domain: Domain
    description: str = ""
    upstreams: list[str] = field(default_factory=list)
    external_connections: list[str] = field(default_factory=list)
    policy: str | None = None
    created: datetime = field(default_factory=now)
    packages: dict[str, dict[str, PackageVersion]] = field(default_factory=dict)

    @property
    def arn(self) -> str:
        d = self.domain
        return f"arn:aws:codeartifact:{d.region}:{d.owner}:repository/{d.name}/{self.name}"

    def package_arn(self, name: str) -> str:
        d = self.domain
        return (
            f"arn:aws:codeartifact:{d.region}:{d.owner}:package/{d.name}/{self.name}/pypi//{name}"
        )


@dataclass
class PackageGroup:
    pattern: str
    domain: Domain
    description: str = ""
    contact_info: str = ""
    modes: dict[str, str] = field(default_factory=lambda: dict.fromkeys(RESTRICTIONS, "INHERIT"))
    allowed: dict[str, set[str]] = field(
        default_factory=lambda: {name: set() for name in RESTRICTIONS}
    )
    created: datetime = field(default_factory=now)

    @property
    def arn(self) -> str:
        d = self.domain
        return f"arn:aws:codeartifact:{d.region}:{d.owner}:package-group/{d.name}{self.pattern}"

    def matches(self, name: str) -> bool:
        """Whether the PyPI package ``name`` (normalized) is in this group's pattern."""
        if self.pattern == "/*" or self.pattern == "/pypi/*":
            return True
        if self.pattern.startswith("/pypi//"):
            body, suffix = self.pattern[len("/pypi//") : -1], self.pattern[-1]
            return name == body if suffix == "$" else name.startswith(body)
        return False

    def specificity(self) -> tuple[int, int]:
        """Exact beats prefix beats format-wide beats the root; longer prefixes win."""
        suffix = self.pattern[-1]
        rank = {"$": 3, "~": 2}.get(suffix, 1 if self.pattern != "/*" else 0)
        return rank, len(self.pattern)


@dataclass
class Domain:
    name: str
    owner: str
    region: str
    encryption_key: str | None = None
    policy: str | None = None
    created: datetime = field(default_factory=now)
    repositories: dict[str, Repository] = field(default_factory=dict)
    groups: dict[str, PackageGroup] = field(default_factory=dict)

    @property
    def arn(self) -> str:
        return f"arn:aws:codeartifact:{self.region}:{self.owner}:domain/{self.name}"

    def __post_init__(self) -> None:
        root = PackageGroup("/*", self, description="The root package group.")
        root.modes = dict.fromkeys(RESTRICTIONS, "ALLOW")
        self.groups["/*"] = root

    def group_for(self, name: str) -> PackageGroup:
        """The most specific group that matches package ``name`` (the root group at worst)."""
        matching = [group for group in self.groups.values() if group.matches(name)]
        return max(matching, key=PackageGroup.specificity)

    def restriction(self, name: str, restriction: str, repository: str) -> bool:
        """Whether origin control ``restriction`` lets ``repository`` take package ``name``."""
        candidates = sorted(
            (g for g in self.groups.values() if g.matches(name)),
            key=PackageGroup.specificity,
            reverse=True,
        )
        for group in candidates:
            mode = group.modes[restriction]
            if mode == "INHERIT":
                continue
            if mode == "ALLOW_SPECIFIC_REPOSITORIES":
                return repository in group.allowed[restriction]
            return mode == "ALLOW"
        return True


@dataclass(frozen=True)
class Token:
    """An authorization token as the stand-in keeps it: never the token itself, its digest."""

    domain: str
    owner: str
    principal: Principal
    expires: datetime


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class ExternalFile:
    """A file the external connection offers."""

    filename: str
    url: str
    sha256: str
    requires_python: str | None
    size: int


# Fetches a project from the external connection: name → {version: [files]}, or None when the
# public index does not have it.
ExternalProject = dict[str, list[ExternalFile]]
ExternalFetch = Callable[[str], ExternalProject | None]
ExternalDownload = Callable[[str, str], bytes]


@dataclass(frozen=True)
class ListedFile:
    """One file of a package as a repository lists it (local, or offered by a connection)."""

    version: str
    sha256: str
    requires_python: str | None
    size: int
    local: bool


@dataclass
class Listing:
    """A package as a repository serves it: its files by name."""

    name: str
    files: dict[str, ListedFile]


class CodeArtifact:
    """The whole stand-in's state, per account and region."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.domains: dict[tuple[str, str], Domain] = {}
        self._tokens: dict[str, Token] = {}
        self._lock = threading.RLock()

    @contextmanager
    def locked(self) -> Iterator[None]:
        with self._lock:
            yield

    # --- control plane -------------------------------------------------------------------

    def create_domain(self, name: str, owner: str, encryption_key: str | None) -> Domain:
        with self._lock:
            if (owner, name) in self.domains:
                raise conflict(f"domain {name}")
            domain = Domain(name, owner, self.region, encryption_key)
            self.domains[(owner, name)] = domain
            return domain

    def domain(self, name: str, owner: str) -> Domain:
        domain = self.domains.get((owner, name))
        if domain is None:
            raise not_found(f"domain {name} (owner {owner})")
        return domain

    def create_repository(
        self, domain: Domain, name: str, description: str, upstreams: list[str]
    ) -> Repository:
        with self._lock:
            if name in domain.repositories:
                raise conflict(f"repository {name}")
            for upstream in upstreams:
                if upstream not in domain.repositories:
                    raise not_found(f"upstream repository {upstream}")
            repository = Repository(name, domain, description, list(upstreams))
            domain.repositories[name] = repository
            return repository

    def repository(self, domain: Domain, name: str) -> Repository:
        repository = domain.repositories.get(name)
        if repository is None:
            raise not_found(f"repository {name} in domain {domain.name}")
        return repository

    def associate_external_connection(self, repository: Repository, connection: str) -> None:
        if connection != PYPI_CONNECTION:
            raise invalid(f"the stand-in only connects to {PYPI_CONNECTION}, not {connection}")
        with self._lock:
            if repository.external_connections:
                raise invalid("a repository has at most one external connection")
            repository.external_connections.append(connection)

    def create_package_group(
        self, domain: Domain, pattern: str, description: str, contact_info: str
    ) -> PackageGroup:
        reason = pattern_error(pattern)
        if reason:
            raise invalid(f"package group {pattern!r} {reason}")
        if not (pattern == "/*" or pattern.startswith("/pypi/")):
            raise invalid("the stand-in serves PyPI packages only: patterns start with /pypi/")
        with self._lock:
            if pattern in domain.groups:
                raise conflict(f"package group {pattern}")
            group = PackageGroup(pattern, domain, description, contact_info)
            domain.groups[pattern] = group
            return group

    def package_group(self, domain: Domain, pattern: str) -> PackageGroup:
        group = domain.groups.get(pattern)
        if group is None:
            raise not_found(f"package group {pattern}")
        return group

    def update_origin_configuration(
        self,
        group: PackageGroup,
        modes: dict[str, str],
        add: list[tuple[str, str]],
        remove: list[tuple[str, str]],
    ) -> None:
        """Validate everything first, then apply: a refused update changes nothing."""
        for restriction, mode in modes.items():
            if restriction not in RESTRICTIONS or mode not in MODES:
                raise invalid(f"origin restriction {restriction}={mode} is not valid")
        for _repository, restriction in add + remove:
            if restriction not in RESTRICTIONS:
                raise invalid(f"originRestrictionType {restriction} is not valid")
        for repository, _ in add:
            self.repository(group.domain, repository)
        with self._lock:
            group.modes.update(modes)
            for repository, restriction in add:
                group.allowed[restriction].add(repository)
            for repository, restriction in remove:
                group.allowed[restriction].discard(repository)

    # --- tokens ----------------------------------------------------------------------------

    def issue_token(
        self, domain: Domain, principal: Principal, duration: int, session_expiry: datetime | None
    ) -> tuple[str, datetime]:
        if duration == 0 and session_expiry is None:
            raise invalid("durationSeconds 0 (the session's expiry) needs temporary credentials")
        if duration == 0 and session_expiry is not None:
            expires = session_expiry
        elif MIN_TOKEN_SECONDS <= duration <= MAX_TOKEN_SECONDS:
            expires = now() + timedelta(seconds=duration)
        else:
            raise invalid(
                f"durationSeconds must be 0 or {MIN_TOKEN_SECONDS} to {MAX_TOKEN_SECONDS}"
            )
        token = secrets.token_urlsafe(96)
        with self._lock:
            self._tokens[token_digest(token)] = Token(domain.name, domain.owner, principal, expires)
            self._forget_expired()
        return token, expires

    def token(self, token: str) -> Token | None:
        """The token's record (expired ones included, so callers can say why), or None."""
        return self._tokens.get(token_digest(token))

    def expire(self, token: str) -> bool:
        """Make ``token`` expired now (the devstack's stand-in for waiting 15 minutes)."""
        with self._lock:
            record = self._tokens.get(token_digest(token))
            if record is None:
                return False
            self._tokens[token_digest(token)] = replace(record, expires=now())
            return True

    def _forget_expired(self) -> None:
        horizon = now() - timedelta(hours=1)
        for digest in [d for d, t in self._tokens.items() if t.expires < horizon]:
            del self._tokens[digest]

    # --- packages ----------------------------------------------------------------------------

    def publish(
        self, repository: Repository, name: str, version: str, asset: Asset
    ) -> PackageVersion:
        """Store an uploaded asset; PUBLISH origin controls and duplicates are refused."""
        with self._lock:
            if not repository.domain.restriction(name, "PUBLISH", repository.name):
                group = repository.domain.group_for(name)
                raise CodeArtifactError(
                    "AccessDeniedException",
                    403,
                    f"package group {group.pattern} does not allow publishing {name} "
                    f"to repository {repository.name}",
                )
            versions = repository.packages.setdefault(name, {})
            package = versions.setdefault(version, PackageVersion(name, version, "INTERNAL"))
            if package.origin != "INTERNAL":
                raise conflict(f"{name} {version} came from an upstream; version")
            existing = package.assets.get(asset.filename)
            if existing is not None and existing.sha256 != asset.sha256:
                raise conflict(f"asset {asset.filename} of {name} {version} (different content);")
            if existing is not None:
                return package  # the same bytes again: accepted, as CodeArtifact does
            package.assets[asset.filename] = asset
            return package

    def listing(self, repository: Repository, name: str, external: ExternalFetch) -> Listing:
        """What ``repository`` serves for package ``name``: its own versions, then what its
        upstreams and external connections add, as the package's origin controls allow."""
        listing = Listing(name, {})
        seen: set[str] = set()
        self._collect(repository, repository, name, external, listing, seen, top=True)
        return listing

    def _collect(
        self,
        start: Repository,
        repository: Repository,
        name: str,
        external: ExternalFetch,
        listing: Listing,
        seen: set[str],
        *,
        top: bool,
    ) -> None:
        if repository.name in seen:
            return
        seen.add(repository.name)
        domain = repository.domain
        for version, package in repository.packages.get(name, {}).items():
            for filename, asset in package.assets.items():
                listing.files.setdefault(
                    filename,
                    ListedFile(
                        version, asset.sha256, asset.requires_python, len(asset.content), True
                    ),
                )
        # INTERNAL_UPSTREAM governs taking the package from upstream repositories only; a
        # repository's own external connection is governed by EXTERNAL_UPSTREAM alone.
        if not top or domain.restriction(name, "INTERNAL_UPSTREAM", start.name):
            for upstream in repository.upstreams:
                if upstream in domain.repositories:
                    upstream_repository = domain.repositories[upstream]
                    self._collect(
                        start, upstream_repository, name, external, listing, seen, top=False
                    )
        if repository.external_connections and domain.restriction(
            name, "EXTERNAL_UPSTREAM", repository.name
        ):
            project = external(name)
            for version, files in (project or {}).items():
                for file in files:
                    listing.files.setdefault(
                        file.filename,
                        ListedFile(version, file.sha256, file.requires_python, file.size, False),
                    )

    def fetch_external(
        self,
        repository: Repository,
        name: str,
        version: str,
        filename: str,
        external: ExternalFetch,
        download: ExternalDownload,
    ) -> Asset | None:
        """Fetch an asset through the first repository in the chain with an external
        connection and keep it there, as CodeArtifact does; None if the chain cannot."""
        holder = self._connected(repository, repository, name, set())
        if holder is None:
            return None
        project = external(name) or {}
        for file in project.get(version, []):
            if file.filename == filename:
                content = download(file.url, file.sha256)
                asset = Asset(filename, content, file.sha256, file.requires_python, now())
                with self._lock:
                    versions = holder.packages.setdefault(name, {})
                    package = versions.setdefault(
                        version, PackageVersion(name, version, "EXTERNAL")
                    )
                    package.assets.setdefault(filename, asset)
                return asset
        return None

    def _connected(
        self, start: Repository, repository: Repository, name: str, seen: set[str]
    ) -> Repository | None:
        """The first repository from ``repository`` whose external connection may serve
        ``name``: its own, then (if INTERNAL_UPSTREAM lets ``start`` use upstreams) theirs."""
        if repository.name in seen:
            return None
        seen.add(repository.name)
        domain = repository.domain
        if repository.external_connections and domain.restriction(
            name, "EXTERNAL_UPSTREAM", repository.name
        ):
            return repository
        if repository is start and not domain.restriction(name, "INTERNAL_UPSTREAM", start.name):
            return None
        for upstream in repository.upstreams:
            if upstream in domain.repositories:
                found = self._connected(start, domain.repositories[upstream], name, seen)
                if found is not None:
                    return found
        return None

    def describe(self) -> dict[str, Any]:
        """A summary for the devstack's console and state file."""
        return {
            f"{owner}/{name}": sorted(domain.repositories)
            for (owner, name), domain in self.domains.items()
        }
