"""panva's oidc-provider (tests/interop/provider), started for a test run, and a person at a
browser who uses its own pages: the device code entry and confirmation, the login, the consent.

The provider is an OpenID Certified implementation we did not write: what our client and our
verifier do against it is what they do against an IdP that reads RFC 8628 and OpenID Connect
Discovery without our help.  Its test-only routes (``/_test/…``, server.mjs) do what an IdP's
operator does: rotate and retire signing keys, expire a pending code; and make the next pending
answers ``slow_down``, which oidc-provider defines but never sends.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests

from cabroker.broker import Issuer
from cabroker.device import login

HERE = Path(__file__).resolve().parent / "provider"
PUBLIC_CLIENT = "cabroker-cli"
# A client registered with a "secret" that is not one, as Google registers a device client.
SECRET_CLIENT, PUBLIC_SECRET = "cabroker-tv", "interop-public-secret"
ACCOUNTS = {"alice": ["engineering"], "bob": ["sales"]}
MISSING = (
    "the interop provider is not installed: run `make interop-deps` (npm ci in {here}; "
    "Node.js 18 or newer, from Debian's nodejs package when the machine has none)"
)


@dataclass
class Provider:
    """The running provider: its issuer URL and the operator's controls."""

    issuer: str
    process: subprocess.Popen[str]
    http: requests.Session = field(default_factory=requests.Session)

    def _control(self, route: str, **params: str) -> dict[str, Any]:
        answer = self.http.post(f"{self.issuer}/_test/{route}", params=params, timeout=10)
        answer.raise_for_status()
        body: dict[str, Any] = answer.json()
        return body

    def rotate(self) -> str:
        """A new signing key signs from now on; the old ones stay published.  Its kid."""
        return str(self._control("rotate")["kids"][0])

    def retire(self) -> list[str]:
        """Only the signing key stays published; the kids published now."""
        return [str(kid) for kid in self._control("retire")["kids"]]

    def slow_down(self, count: int = 1) -> None:
        """The next ``count`` answers that would be ``authorization_pending`` are ``slow_down``."""
        self._control("slow-down", count=str(count))

    def expire(self, user_code: str) -> None:
        """The pending login with ``user_code`` expires now."""
        self._control("expire", user_code=user_code)

    def published_kids(self) -> list[str]:
        discovery = self.http.get(f"{self.issuer}/.well-known/openid-configuration", timeout=10)
        jwks = self.http.get(discovery.json()["jwks_uri"], timeout=10).json()
        return [str(key["kid"]) for key in jwks["keys"]]


@contextmanager
def running_provider() -> Iterator[Provider]:
    """``node server.mjs`` on an ephemeral loopback port, until the block ends."""
    node = shutil.which("node")
    if node is None or not (HERE / "node_modules" / "oidc-provider").is_dir():
        raise RuntimeError(MISSING.format(here=HERE))
    process = subprocess.Popen(
        [node, "server.mjs"],
        cwd=HERE,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PORT": "0", "NODE_ENV": "test"},
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # one line once it listens; "" if it died
        if not line:
            process.wait(timeout=10)
            err = process.stderr.read() if process.stderr else ""
            raise RuntimeError(f"the interop provider did not start: {err[-2000:]}")
        with requests.Session() as http:
            yield Provider(issuer=json.loads(line)["issuer"], process=process, http=http)
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


# --------------------------------------------------------------------------- the person


class _Forms(HTMLParser):
    """The forms of a page: action, id and fields (inputs inside a form or pointing at it)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._open = {
                "action": attributes.get("action", ""),
                "id": attributes.get("id", ""),
                "fields": {},
            }
            self.forms.append(self._open)
        elif tag == "input" and attributes.get("name"):
            owner = attributes.get("form")
            form = next((f for f in self.forms if owner and f["id"] == owner), self._open)
            if form is not None:
                form["fields"][attributes["name"]] = attributes.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = None


@dataclass
class Person:
    """Someone at a browser, on the provider's own pages: cookies kept, every form read from
    the page and submitted as the browser would (hidden fields, CSRF token and all)."""

    http: requests.Session = field(default_factory=requests.Session)
    pages: list[str] = field(default_factory=list)  # the URLs seen, in order

    def _submit(self, page: requests.Response, **values: str) -> requests.Response:
        parser = _Forms()
        parser.feed(page.text)
        if not parser.forms:
            raise AssertionError(f"no form on {page.url}: {page.text[:500]}")
        form = parser.forms[0]
        fields = {**form["fields"], **{k: v for k, v in values.items() if k in form["fields"]}}
        if "confirm" in values and form["id"] == "op.deviceConfirmForm":
            fields["confirm"] = values["confirm"]
        if "abort" in values and form["id"] == "op.deviceConfirmForm":
            fields["abort"] = values["abort"]
        answer = self.http.post(urljoin(page.url, form["action"]), data=fields, timeout=10)
        self.pages.append(answer.url)
        return answer

    def _open(self, url: str) -> requests.Response:
        page = self.http.get(url, timeout=10)
        self.pages.append(page.url)
        return page

    def approve(self, url: str, login: str, user_code: str | None = None) -> str:
        """Open ``url`` (the verification URI, complete or not), enter ``user_code`` if the page
        asks for it, confirm, log in as ``login``, consent; the last page's text."""
        page = self._open(url)
        # the page with the code typed in, or the complete URI's page that posts it itself
        page = self._submit(page, **({"user_code": user_code} if user_code else {}))
        if "op.deviceConfirmForm" not in page.text:
            raise AssertionError(f"no confirmation page: {page.text[:500]}")
        page = self._submit(page, confirm="yes")  # "Continue": to the login
        page = self._submit(page, login=login, password="any")  # the login page
        page = self._submit(page)  # the consent page: "Continue"
        return _text(page.text)

    def deny(self, url: str) -> str:
        """Open ``url``, then "[ Abort ]" on the confirmation page; the last page's text."""
        page = self._submit(self._open(url))
        return _text(self._submit(page, abort="yes").text)


def _text(html: str) -> str:
    class Text(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.parts: list[str] = []
            self._skip = False

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self._skip = tag in {"style", "script"}

        def handle_endtag(self, tag: str) -> None:
            self._skip = False

        def handle_data(self, data: str) -> None:
            if not self._skip and data.strip():
                self.parts.append(data.strip())

    text = Text()
    text.feed(html)
    return " ".join(text.parts)


def logged_in(provider: Provider, who: str, client_id: str = PUBLIC_CLIENT) -> str:
    """An ID token from a device login of ``who`` to the provider, approved on its pages: the
    client's own login code, its waiting simulated (approved at the first wait)."""
    chosen = Issuer("op", provider.issuer, client_id, client_id, scopes=("openid", "groups"))
    out = io.StringIO()
    person = Person()

    def approve(_: float) -> None:
        url = next(line.strip() for line in out.getvalue().splitlines() if "user_code=" in line)
        person.approve(url, who)

    with requests.Session() as http:
        return login(chosen, out=out, http=http, sleep=approve, clock=lambda: 0.0)
