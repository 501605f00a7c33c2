"""The AWS stand-in: moto's server (STS, IAM, SSM) and the CodeArtifact stand-in on one port.

One endpoint for every service, as ``AWS_ENDPOINT_URL`` expects:

- ``/pypi/...``                                   the CodeArtifact PyPI data plane;
- requests signed for the ``codeartifact`` service  the CodeArtifact control plane;
- everything else                                  moto's own dispatcher.

The CodeArtifact stand-in runs in this process so that it reads moto's IAM and STS state
directly (see :mod:`devstack.codeartifact.principals`).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
from typing import Any

from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from devstack.codeartifact.control import ControlPlane
from devstack.codeartifact.model import CodeArtifact
from devstack.codeartifact.principals import CREDENTIAL
from devstack.codeartifact.pypi import DataPlane
from devstack.upstream import UpstreamIndex

ACCOUNT = DEFAULT_ACCOUNT_ID


def service_of(environ: dict[str, Any]) -> str | None:
    """The service a SigV4-signed request is for (its credential scope), or None."""
    match = CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
    return match.group(3) if match else None


class AwsStandIn:
    """moto and the CodeArtifact stand-in behind one WSGI server on 127.0.0.1."""

    def __init__(
        self, region: str, public_index_url: str, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.region = region
        self.codeartifact = CodeArtifact(region)
        self._moto = DomainDispatcherApplication(create_backend_app)
        self._server: BaseWSGIServer = make_server(host, port, self, threaded=True)
        self.url = f"http://{host}:{self._server.server_port}"
        self._control = ControlPlane(self.codeartifact, ACCOUNT, self.url)
        self._data = DataPlane(self.codeartifact, UpstreamIndex(public_index_url))
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="aws-stand-in", daemon=True
        )

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO", "").startswith("/_devstack/"):
            return self._admin(environ, start_response)
        if environ.get("PATH_INFO", "").startswith("/pypi/"):
            return self._data(environ, start_response)
        if service_of(environ) == "codeartifact":
            return self._control(environ, start_response)
        return self._moto(environ, start_response)

    def _admin(self, environ: dict[str, Any], start_response: Any) -> Any:
        """Test-double controls, loopback only: ``POST /_devstack/tokens/expire {"token"}``."""
        request = Request(environ)
        if not ipaddress.ip_address(request.remote_addr or "0.0.0.0").is_loopback:  # noqa: S104
            response = Response("loopback only\n", status=403)
        elif request.method == "POST" and request.path == "/_devstack/tokens/expire":
            body = request.get_json(silent=True) or {}
            found = self.codeartifact.expire(str(body.get("token", "")))
            response = Response(
                json.dumps({"expired": found}),
                status=200 if found else 404,
                content_type="application/json",
            )
        else:
            response = Response("no such control\n", status=404)
        return response(environ, start_response)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
