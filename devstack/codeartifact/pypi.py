"""The stand-in's PyPI data plane, under ``/pypi/<repository>/``, as pip, uv and twine use it.

- ``GET  /pypi/<repo>/simple/``                               project list (PEP 503 / PEP 691)
- ``GET  /pypi/<repo>/simple/<project>/``                     project page (PEP 503 / PEP 691)
- ``GET  /pypi/<repo>/simple/<project>/<version>/<filename>`` a file (fetched on first use from
  the external connection when it is not local, and kept, as CodeArtifact does)
- ``POST /pypi/<repo>/``                                      legacy upload (twine, uv publish)

Every request needs HTTP Basic credentials ``aws:<token>`` with a token from
GetAuthorizationToken in the repository's domain, not expired, whose principal may
``codeartifact:ReadFromRepository`` on the repository (reads) or
``codeartifact:PublishPackageVersion`` on the package (uploads), evaluated at each request.
The answers to failures are in :data:`DENIALS`.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Request, Response

from devstack import simple
from devstack.upload import UploadError, parse_upload
from devstack.upstream import UpstreamError, UpstreamIndex

from .model import (
    Asset,
    CodeArtifact,
    CodeArtifactError,
    ExternalFile,
    ExternalProject,
    Repository,
    Token,
    now,
)

MAX_UPLOAD_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Denial:
    status: int
    message: str
    challenge: bool = False


# What CodeArtifact answers, by reason, as far as public reports show (devstack/README.md
# cites them): 401 with a Bearer and a Basic challenge for missing, unusable or expired
# credentials (pip then tries its keyring or prompts; twine and uv report the status), and 403
# (inferred: not documented) for a valid token whose principal lacks the permission.
DENIALS = {
    "missing": Denial(401, "Authentication is required: use 'aws' and a CodeArtifact token.", True),
    "username": Denial(401, "The username must be 'aws'.", True),
    "unknown": Denial(401, "The authorization token is not valid.", True),
    "expired": Denial(401, "The authorization token has expired.", True),
    "domain": Denial(401, "The authorization token is for another domain.", True),
    "read": Denial(403, "Not authorized to perform codeartifact:ReadFromRepository."),
    "publish": Denial(403, "Not authorized to perform codeartifact:PublishPackageVersion."),
}


class Refused(Exception):
    def __init__(self, denial: Denial, detail: str = "") -> None:
        super().__init__(denial.message)
        self.denial = denial
        self.detail = detail


def credentials(header: str | None) -> tuple[str, str] | None:
    """(username, password) of a Basic ``Authorization`` header, or None."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


class DataPlane:
    """A WSGI application serving every repository of the stand-in under /pypi/."""

    def __init__(self, state: CodeArtifact, upstream: UpstreamIndex) -> None:
        self.state = state
        self.upstream = upstream

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        with Request(environ) as request:
            request.max_content_length = MAX_UPLOAD_BYTES + 1024 * 1024
            response = self.respond(request)
        return response(environ, start_response)

    def respond(self, request: Request) -> Response:
        parts = request.path.strip("/").split("/")  # pypi, repo, simple, project, version, file
        if len(parts) < 2 or parts[0] != "pypi":
            return _text(404, "Not found.")
        try:
            token = self._token(request)
            repository = self._repository(token, parts[1])
            if request.method == "POST" and len(parts) == 2:
                return self._upload(request, token, repository)
            if request.method not in ("GET", "HEAD") or len(parts) < 3 or parts[2] != "simple":
                return _text(404, "Not found.")
            self._require(token, "codeartifact:ReadFromRepository", repository.arn, "read")
            return self._read(request, repository, parts[3:])
        except Refused as refused:
            denial = refused.denial
            realm = f"{self._realm(parts[1])}"
            challenge = f'Bearer realm="{realm}", Basic realm="{realm}"'
            headers = {"WWW-Authenticate": challenge} if denial.challenge else {}
            return _text(denial.status, denial.message + refused.detail, headers)
        except CodeArtifactError as error:
            return _text(error.status, error.message)
        except UpstreamError as error:
            return _text(502, f"The external connection failed: {error}")

    # --- access ---------------------------------------------------------------------------

    def _realm(self, repository: str) -> str:
        domains = [name for (_, name) in self.state.domains]
        return f"{domains[0] if len(domains) == 1 else 'codeartifact'}/{repository}"

    def _token(self, request: Request) -> Token:
        pair = credentials(request.headers.get("Authorization"))
        if pair is None:
            raise Refused(DENIALS["missing"])
        username, password = pair
        if username != "aws":
            raise Refused(DENIALS["username"])
        token = self.state.token(password)
        if token is None:
            raise Refused(DENIALS["unknown"])
        if token.expires <= now():
            raise Refused(DENIALS["expired"])
        return token

    def _repository(self, token: Token, name: str) -> Repository:
        domain = self.state.domains.get((token.owner, token.domain))
        if domain is None:
            raise Refused(DENIALS["domain"])
        repository = domain.repositories.get(name)
        if repository is None:
            raise CodeArtifactError("ResourceNotFoundException", 404, f"No repository {name}.")
        return repository

    @staticmethod
    def _require(token: Token, action: str, resource: str, reason: str) -> None:
        if not token.principal.allows(action, resource):
            raise Refused(DENIALS[reason], f" ({token.principal.arn} on {resource})")

    # --- reads ----------------------------------------------------------------------------

    def _external(self, name: str) -> ExternalProject | None:
        distributions = self.upstream.project(name)
        if distributions is None:
            return None
        project: ExternalProject = {}
        for dist in distributions:
            _, version = simple.version_of(dist.filename)
            project.setdefault(str(version), []).append(
                ExternalFile(dist.filename, dist.url, dist.sha256, dist.requires_python, dist.size)
            )
        return project

    def _read(self, request: Request, repository: Repository, rest: list[str]) -> Response:
        content_type = simple.negotiate(request.headers.get("Accept"))
        if not rest or rest == [""]:
            if content_type is None:
                return _text(406, "Not acceptable.")
            names = self._projects(repository)
            return _page(simple.render_index(names, content_type), content_type)
        name = simple.normalize(rest[0])
        match rest[1:]:
            case [version, filename] if version and filename:
                return self._file(repository, name, version, filename)
            case [] | [""]:
                pass
            case _:  # a version without a file, or deeper paths
                return _text(404, "Not found.")
        if content_type is None:
            return _text(406, "Not acceptable.")
        listing = self.state.listing(repository, name, self._external)
        if not listing.files:
            return _text(404, f"No package {name} in repository {repository.name}.")
        distributions = [
            simple.Distribution(
                filename=filename,
                url=f"{file.version}/{filename}",
                sha256=file.sha256,
                size=file.size,
                requires_python=file.requires_python,
            )
            for filename, file in sorted(listing.files.items())
        ]
        return _page(simple.render_project(name, distributions, content_type), content_type)

    def _projects(self, repository: Repository) -> list[str]:
        names: set[str] = set()
        pending, seen = [repository], set()
        while pending:
            current = pending.pop()
            if current.name in seen:
                continue
            seen.add(current.name)
            names.update(current.packages)
            pending += [current.domain.repositories[u] for u in current.upstreams]
        return sorted(names)

    def _file(self, repository: Repository, name: str, version: str, filename: str) -> Response:
        listing = self.state.listing(repository, name, self._external)
        listed = listing.files.get(filename)
        if listed is None or listed.version != version:
            return _text(404, f"No file {filename} of {name} {version}.")
        asset = self._local(repository, name, version, filename, set())
        if asset is None:
            asset = self.state.fetch_external(
                repository, name, version, filename, self._external, self.upstream.download
            )
        if asset is None:
            return _text(404, f"No file {filename} of {name} {version}.")
        return Response(
            asset.content,
            content_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    def _local(
        self, repository: Repository, name: str, version: str, filename: str, seen: set[str]
    ) -> Asset | None:
        if repository.name in seen:
            return None
        seen.add(repository.name)
        package = repository.packages.get(name, {}).get(version)
        if package is not None and filename in package.assets:
            return package.assets[filename]
        for upstream in repository.upstreams:
            found = self._local(
                repository.domain.repositories[upstream], name, version, filename, seen
            )
            if found is not None:
                return found
        return None

    # --- uploads ----------------------------------------------------------------------------

    def _upload(self, request: Request, token: Token, repository: Repository) -> Response:
        claimed = simple.normalize(request.form.get("name", "") or "-")
        self._require(  # before reading the file: a caller without the right learns nothing
            token,
            "codeartifact:PublishPackageVersion",
            repository.package_arn(claimed),
            "publish",
        )
        try:
            upload = parse_upload(request.form, request.files, max_bytes=MAX_UPLOAD_BYTES)
        except UploadError as error:  # the reason in the status line: twine shows only that
            return _text(error.status, error.message, status_line=error.status_line)
        self._require(
            token,
            "codeartifact:PublishPackageVersion",
            repository.package_arn(upload.name),
            "publish",
        )
        asset = Asset(upload.filename, upload.content, upload.sha256, upload.requires_python, now())
        self.state.publish(repository, upload.name, upload.version, asset)
        return _text(200, f"Published {upload.filename} to {repository.name}.")


def _text(
    status: int, message: str, headers: dict[str, str] | None = None, status_line: str = ""
) -> Response:
    response = Response(message + "\n", status=status, content_type="text/plain", headers=headers)
    if status_line:
        response.status = status_line
    return response


def _page(body: bytes, content_type: str) -> Response:
    return Response(body, content_type=content_type, headers={"Vary": "Accept"})
