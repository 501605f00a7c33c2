"""``make demo``: the product's story with the real tools, one line per step, then teardown.

1. CI (GitHub identity, acme on main) gets a publish token and uploads acme-lib with twine,
   then a second version with ``uv publish``.
2. An engineer (corp identity, group engineering) gets a read token and installs acme-lib
   with pip and with ``uv pip install``, and a public package through the upstream.
3. What must fail fails, as the tools show it: upload with the read token, the publish token
   for another package, an expired token, a garbage token, a token for another repository,
   and the planted internal-name package from the public index.
4. An identity no rule matches gets 403 from the broker, with the reason.

Exit status 0 when every step went as expected, 1 otherwise.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from devstack.claimsets import github_claims
from devstack.tools import Devstack, Result, Secret, Tools, http_json, probe
from devstack.wheels import build_wheel

# A GitHub Actions job of acme/app on main, with every claim GitHub issues and the default
# ``sub`` of a repository created since 2026-07-15 (ids); devstack/rules.yaml matches the ids
# (owner acme 1001, repository acme/app 2001), never the names or ``sub``.
CI_CLAIMS = github_claims("app", ref="refs/heads/main", sub_format="ids")
ENGINEER_CLAIMS = {"sub": "alice", "email": "alice@acme.example", "groups": ["engineering"]}
EXPIRING_CLAIMS = {**ENGINEER_CLAIMS, "sub": "bob", "email": "bob@acme.example"}
CONTRACTOR_CLAIMS = {"sub": "mallory", "groups": ["contractors"]}
ACME_LIB_VERSIONS = ("1.0.0", "1.1.0")  # what CI publishes, in the demo and in ``make run``


@dataclass
class Step:
    title: str
    ok: bool
    detail: str


class Story:
    """The demo's steps over a running devstack; each returns a :class:`Step`."""

    def __init__(self, stack: Devstack, work: Path) -> None:
        self.stack = stack
        self.tools = Tools(work)
        self.work = work
        self.dist = work / "dist"
        self.dist.mkdir(parents=True, exist_ok=True)
        self.private = stack.state["repositories"]["private"]
        self.store = stack.state["repositories"]["store"]
        self.publish_token = Secret("")
        self.read_token = Secret("")
        self.upload_url = ""
        self.index_url = ""
        self.python = Path()

    def token(self, issuer: str, claims: Mapping[str, object], access: str) -> dict[str, object]:
        return broker_token(self.stack, issuer, claims, access)

    # --- 1. CI publishes --------------------------------------------------------------------

    def ci_publishes(self) -> list[Step]:
        published = publish_acme_lib(self.stack, self.tools, self.dist)
        self.publish_token = published.token
        self.upload_url = published.upload_url
        return published.steps

    # --- 2. an engineer installs -----------------------------------------------------------

    def engineer_installs(self) -> list[Step]:
        grant = self.token("corp", ENGINEER_CLAIMS, "read")
        self.read_token = Secret(str(grant["token"]))
        self.index_url = str(grant["index_url"])
        self.python = self.tools.venv("venv-pip")
        pip = self.tools.pip_install(self.python, self.index_url, self.read_token, "acme-lib")
        check = self.tools.python(self.python, "import acme_lib; print(acme_lib.__version__)")
        uv_python = self.tools.uv_venv("venv-uv")
        uv = self.tools.uv_pip_install(
            uv_python, self.index_url, self.read_token, "acme-lib==1.0.0", "tinyjson"
        )
        return [
            Step(
                f"an engineer gets a read token ({grant['repository']})",
                True,
                f"expires {grant['expires_at']}",
            ),
            _expect_ok(f"pip install acme-lib → {check.output.strip()}", pip),
            _expect_ok("uv pip install acme-lib==1.0.0 tinyjson (public, via upstream)", uv),
        ]

    # --- 3. what must fail ------------------------------------------------------------------

    def refusals(self) -> list[Step]:
        other = build_wheel(self.dist, "other-pkg", "1.0.0")
        extra = build_wheel(self.dist, "acme-lib", "2.0.0")
        # Another engineer's token: the broker's shared cache hands alice her own token again,
        # and expiring that one would expire the read token the next steps use.
        expired = Secret(str(self.token("corp", EXPIRING_CLAIMS, "read")["token"]))
        self.tools.secrets.append(expired)
        status, _, _ = http_json(
            "POST",
            self.stack.state["aws_endpoint_url"] + "/_devstack/tokens/expire",
            {"token": expired},
        )
        if status != 200:
            raise RuntimeError(f"the stand-in did not expire the token: {status}")
        store_index = self.stack.repository_url(self.store) + "simple/"
        project = f"{self.index_url}acme-lib/"
        python, tools, read = self.python, self.tools, self.read_token
        empty = tools.uv_venv("venv-empty")  # nothing installed: uv must ask the index
        return [
            _refused(
                "the read token cannot upload",
                tools.twine_upload(self.upload_url, read, extra),
                "403 Forbidden",
            ),
            _refused(
                "the publish token cannot upload other-pkg",
                tools.twine_upload(self.upload_url, self.publish_token, other),
                "403 Forbidden",
            ),
            _refused(
                "an expired token is refused",
                tools.uv_pip_install(empty, self.index_url, expired, "acme-lib"),
                "401 Unauthorized",
                probe(project, expired),
            ),
            _refused(
                "a garbage token is refused",
                tools.pip_download(python, self.index_url, "not-a-token", "acme-lib"),
                "No matching distribution found for acme-lib",
                probe(project, "not-a-token"),
            ),
            _refused(
                f"the read token cannot read {self.store}",
                tools.uv_pip_install(empty, store_index, read, "tinyjson"),
                "403 Forbidden",
            ),
            _refused(
                "acme-secrets from the public index is blocked",
                tools.pip_download(python, self.index_url, read, "acme-secrets"),
                "No matching distribution found for acme-secrets",
                probe(f"{self.index_url}acme-secrets/", read),
            ),
        ]

    # --- 4. no rule matches ----------------------------------------------------------------

    def stranger(self) -> Step:
        status, body = self.stack.broker(
            "POST", "/v1/token", self.stack.id_token("corp", CONTRACTOR_CLAIMS), {}
        )
        return Step(
            "a contractor gets no token",
            status == 403,
            f"{status}: {body.get('detail')}",
        )


def broker_token(
    stack: Devstack, issuer: str, claims: Mapping[str, object], access: str
) -> dict[str, object]:
    """The broker's token answer for an ID token minted at ``issuer`` with ``claims``."""
    status, body = stack.broker(
        "POST", "/v1/token", stack.id_token(issuer, claims), {"access": access}
    )
    if status != 200:
        raise RuntimeError(f"the broker answered {status}: {body.get('detail')}")
    return body


@dataclass
class Published:
    """What CI's publishing left: its publish token, the upload URL, and one step per action."""

    token: Secret
    upload_url: str
    steps: list[Step]


def publish_acme_lib(stack: Devstack, tools: Tools, dist: Path) -> Published:
    """CI (GitHub identity, acme/app on main) gets a publish token and uploads acme-lib
    1.0.0 with twine and 1.1.0 with ``uv publish``: chapter 1 of the demo, and what ``make run``
    publishes before it prints its commands (re-uploading the same bytes succeeds)."""
    grant = broker_token(stack, "github", CI_CLAIMS, "publish")
    token = Secret(str(grant["token"]))
    tools.secrets.append(token)
    upload_url = str(grant["upload_url"])
    first, second = (
        build_wheel(dist, "acme-lib", version, summary="acme's shared library")
        for version in ACME_LIB_VERSIONS
    )
    twine = tools.twine_upload(upload_url, token, first)
    uv = tools.uv_publish(upload_url, token, second)
    steps = [
        Step(
            f"CI gets a publish token for {grant['packages']} ({grant['repository']})",
            True,
            f"expires {grant['expires_at']}",
        ),
        _expect_ok(f"twine upload acme-lib {ACME_LIB_VERSIONS[0]}", twine),
        _expect_ok(f"uv publish acme-lib {ACME_LIB_VERSIONS[1]}", uv),
    ]
    return Published(token, upload_url, steps)


def _expect_ok(title: str, result: Result) -> Step:
    return Step(title, result.ok, "ok" if result.ok else result.last_lines())


def _refused(title: str, result: Result, shows: str, status: int | None = None) -> Step:
    """A step that must fail, showing ``shows``; ``status`` is what the index answered."""
    seen = shows in result.output
    line = next((ln for ln in result.output.splitlines() if shows in ln), result.last_lines(1))
    prefix = f"HTTP {status}; " if status is not None else ""
    return Step(title, not result.ok and seen, prefix + line.strip())


def run_story(stack: Devstack, say: Callable[[str], None]) -> bool:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cabroker-demo-") as work:
        story = Story(stack, Path(work))
        chapters: list[tuple[str, Callable[[], list[Step]]]] = [
            ("1. CI publishes", story.ci_publishes),
            ("2. An engineer installs", story.engineer_installs),
            ("3. What must fail, fails", story.refusals),
            ("4. No rule, no token", lambda: [story.stranger()]),
        ]
        passed = True
        for title, chapter in chapters:
            say(f"\n{title}")
            for step in chapter():
                passed &= step.ok
                mark = "✓" if step.ok else "✗"
                say(f"  {mark} {step.title}: {step.detail}")
    say(f"\nstory {'passed' if passed else 'FAILED'} in {time.monotonic() - started:.1f} s")
    return passed
