"""The devstack's local "public PyPI": a few tiny wheels behind a simple index on loopback.

CodeArtifact's external connection points here instead of pypi.org, so the devstack never
touches the internet.  ``build_public_index`` writes the wheels; ``PublicIndex`` serves every
wheel and sdist in a directory, read afresh on each request:

- ``/simple/``            the project list (HTML or JSON, by ``Accept``; 406 if neither);
- ``/simple/<project>/``  its files; a name that is not normalized redirects (301) to the
                          normalized URL, as PyPI does; an unknown one is 404;
- ``/files/<filename>``   the file itself; only names listed in the directory are served.

Among the packages is a planted dependency-confusion package, ``acme-secrets`` 9.9.9: its name
falls under the internal prefix ``acme``, so the package-group origin controls of the
CodeArtifact stand-in must keep it out.  It only sets ``PLANTED = True``.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from werkzeug.exceptions import HTTPException, NotAcceptable, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from devstack import simple
from devstack.wheels import build_wheel

PLANTED_PROJECT = "acme-secrets"
# (name, version, summary, module body) of every package the public index starts with.
PUBLIC_PACKAGES: tuple[tuple[str, str, str, str], ...] = (
    ("tinyjson", "1.0.0", "A tiny JSON helper", "def dumps(value):\n    return repr(value)"),
    ("tinyjson", "1.1.0", "A tiny JSON helper", "def dumps(value):\n    return repr(value)"),
    (
        "leftpad-py",
        "0.1.0",
        "Pads strings on the left",
        "def leftpad(s, n):\n    return s.rjust(n)",
    ),
    (
        PLANTED_PROJECT,
        "9.9.9",
        "Planted dependency-confusion package (harmless marker)",
        "PLANTED = True",
    ),
)
DISTRIBUTION_SUFFIXES = (".whl", ".tar.gz")


def build_public_index(directory: Path) -> list[Path]:
    """Write the public index's wheels (``PUBLIC_PACKAGES``) into ``directory``."""
    return [
        build_wheel(directory, name, version, summary=summary, body=body)
        for name, version, summary, body in PUBLIC_PACKAGES
    ]


class _QuietHandler(WSGIRequestHandler):
    """werkzeug's handler without the per-request access log (errors are still logged)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class PublicIndex:
    """A WSGI app serving the distributions in ``directory``, and its loopback server."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._routes = Map(
            [
                Rule("/simple/", endpoint="index", methods=["GET"]),
                Rule("/simple/<project>/", endpoint="project", methods=["GET"]),
                Rule("/files/<filename>", endpoint="file", methods=["GET"]),
            ]
        )
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # --- serving ------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> PublicIndex:
        """Serve on ``host``:``port`` (0: any free port) from a background thread."""
        if self._server is not None:
            raise RuntimeError("the public index is already running")
        self._server = make_server(host, port, self, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="public-index", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; a no-op when not running."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        if self._server is None:
            raise RuntimeError("the public index is not running")
        return f"http://{self._server.host}:{self._server.server_port}"

    @property
    def simple_url(self) -> str:
        """The index URL to give pip, uv or ``UpstreamIndex``: ``http://host:port/simple/``."""
        return f"{self.url}/simple/"

    def __enter__(self) -> PublicIndex:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- the WSGI app -------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        try:
            endpoint, arguments = self._routes.bind_to_environ(environ).match()
            if endpoint == "index":
                response = self._index(request)
            elif endpoint == "project":
                response = self._project(request, arguments["project"])
            else:
                response = self._file(arguments["filename"])
        except HTTPException as error:
            return error(environ, start_response)
        return response(environ, start_response)

    def _index(self, request: Request) -> Response:
        content_type = _negotiate(request)
        projects = {simple.version_of(filename)[0] for filename in self._files()}
        return _page(simple.render_index(projects, content_type), content_type)

    def _project(self, request: Request, project: str) -> Response:
        name = simple.normalize(project)
        if project != name:
            return redirect(f"/simple/{name}/", code=301)
        files = sorted(f for f in self._files() if simple.version_of(f)[0] == name)
        if not files:
            raise NotFound(f"no project {name!r} on this index")
        content_type = _negotiate(request)
        distributions = [self._distribution(filename) for filename in files]
        return _page(simple.render_project(name, distributions, content_type), content_type)

    def _file(self, filename: str) -> Response:
        if filename not in self._files():
            raise NotFound(f"no file {filename!r} on this index")
        return Response(
            (self.directory / filename).read_bytes(), mimetype="application/octet-stream"
        )

    def _files(self) -> set[str]:
        """The distributions in the directory (their plain file names, nothing else)."""
        found = set()
        for path in self.directory.iterdir():
            if path.is_file() and path.name.endswith(DISTRIBUTION_SUFFIXES):
                try:
                    simple.version_of(path.name)
                except ValueError:
                    continue
                found.add(path.name)
        return found

    def _distribution(self, filename: str) -> simple.Distribution:
        content = (self.directory / filename).read_bytes()
        return simple.Distribution(
            filename=filename,
            url=f"../../files/{filename}",
            sha256=hashlib.sha256(content).hexdigest(),
            size=len(content),
        )


def _negotiate(request: Request) -> str:
    content_type = simple.negotiate(request.headers.get("Accept"))
    if content_type is None:
        raise NotAcceptable("this index serves text/html and application/vnd.pypi.simple.v1+*")
    return content_type


def _page(body: bytes, content_type: str) -> Response:
    return Response(
        body,
        headers={"Content-Type": simple.content_type_header(content_type), "Vary": "Accept"},
    )
