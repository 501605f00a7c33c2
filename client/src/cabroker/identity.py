"""Where the client's identity (an OIDC ID token) comes from (design.md section 6).

Unless a source is named, :func:`obtain` tries in order:

1. ``ambient``: the CI system's own identity, found by the ``id`` package (GitHub Actions,
   GCP, Buildkite, GitLab CI, CircleCI), asked for each audience of the broker's issuers;
2. ``file``: ``id_token_file``, else ``CABROKER_ID_TOKEN_FILE``; ``env``: ``CABROKER_ID_TOKEN``;
3. ``device``: interactive login (:mod:`cabroker.device`), only when ``interactive``.

Without an identity it fails fast with one line that says what was tried and how to give a CI
job an ID token.  Every token is checked before it is returned: it is a JWT, its issuer is one
the broker trusts, its audience is that issuer's, and it has not expired (the broker would
answer 401; CodeArtifact would answer a confusing 404 later).  Nothing here verifies a
signature: that is the broker's job.  Tokens are :class:`Secret` and never part of a message.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import id as ambient_id

from . import device
from .broker import BrokerConfig, Issuer
from .errors import IdentityError, UsageError
from .jwt import seconds_left, unverified_claims
from .secret import Secret

if TYPE_CHECKING:
    import requests

SOURCES = ("ambient", "file", "env", "device")
TOKEN_ENV = "CABROKER_ID_TOKEN"  # noqa: S105 - a variable name
TOKEN_FILE_ENV = "CABROKER_ID_TOKEN_FILE"  # noqa: S105 - a variable name
MAX_TOKEN_FILE = 64 * 1024  # an ID token is a few kilobytes at most


@dataclass(frozen=True)
class CI:
    """A CI system the ``id`` package detects: the variable its detector keys on."""

    variable: str | None  # None: detected without a variable (GCP's machine type)
    source: str
    title: str
    fix: str  # how to give a job an ID token; {audience} and {variable} are filled in
    renewal: str = "run the step again (and check this machine's clock)"


# In the order ``id.detect_credential`` tries them, so the first whose variable is set is the
# one that answered.  GCP is detected by GOOGLE_SERVICE_ACCOUNT_NAME or by the machine itself.
CI_SYSTEMS = (
    CI(
        "GITHUB_ACTIONS",
        "github-actions",
        "GitHub Actions",
        "give the job `permissions: id-token: write`",
    ),
    CI(
        "GOOGLE_SERVICE_ACCOUNT_NAME",
        "gcp",
        "GCP",
        "let the service account mint ID tokens (roles/iam.serviceAccountOpenIdTokenCreator)",
    ),
    CI(
        "BUILDKITE",
        "buildkite",
        "Buildkite",
        "put buildkite-agent on the PATH and allow the pipeline to request OIDC tokens",
    ),
    CI(
        "GITLAB_CI",
        "gitlab-ci",
        "GitLab CI",
        "add `id_tokens: {{{variable}: {{aud: {audience}}}}}` to the job",
        "GitLab mints id_tokens when the job starts: run the job again, or run cabroker "
        "earlier in it",
    ),
    CI(
        "CIRCLECI",
        "circleci",
        "CircleCI",
        "put the circleci CLI on the PATH and run the job in a context",
    ),
)
GCP = CI_SYSTEMS[1]
CI_TITLES = ", ".join(ci.title for ci in CI_SYSTEMS)

_NOT_ENV_CHARS = re.compile(r"[^A-Z0-9_]|^[^A-Z_]")  # as id's GitLab detector names variables
_JWT_LIKE = re.compile(r"[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")


@dataclass(frozen=True)
class Identity:
    token: Secret  # the ID token
    issuer: Issuer  # the broker's issuer (``/v1/config``) that issued it
    source: str  # github-actions, gitlab-ci, buildkite, circleci, gcp, file, env or device
    expires_at: datetime | None


def obtain(
    config: BrokerConfig,
    *,
    source: str | None = None,
    id_token_file: Path | None = None,
    env: Mapping[str, str] = os.environ,
    issuer: str | None = None,
    interactive: bool,
    out: TextIO,
    open_browser: Callable[[str], bool] | None = None,
    http: requests.Session | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Identity:
    """An identity for ``config``'s broker: from ``source`` (one of :data:`SOURCES`), or from
    the first source that has one.  ``issuer`` (a name from ``config``) restricts every source
    to that issuer.  ``env`` is where ``CABROKER_ID_TOKEN*`` and the CI markers are read; the
    ``id`` package itself reads ``os.environ`` (the same mapping outside tests).  A named
    ``device`` source logs in even when ``interactive`` is false: it never reads from stdin."""
    if source is not None and source not in SOURCES:
        raise UsageError(f"unknown identity source {source!r}; choose one of {', '.join(SOURCES)}")
    issuers = _trusted(config, issuer)
    if not issuers:
        raise IdentityError("the broker trusts no issuer (its /v1/config lists none)")
    sources = _Sources(issuers, config, issuer, env, clock)

    if source == "ambient":
        found, problem = sources.ambient()
        if found is not None:
            return found
        raise IdentityError(problem or sources.no_ci())
    if source == "file":
        path = id_token_file or _path_from(env)
        if path is None:
            raise IdentityError(
                f"no ID token file: pass --id-token-file PATH or set {TOKEN_FILE_ENV}"
            )
        return sources.from_file(path)
    if source == "env":
        token = env.get(TOKEN_ENV, "").strip()
        if not token:
            raise IdentityError(f"{TOKEN_ENV} is not set: set it to an OIDC ID token (a JWT)")
        return sources.from_env(token)
    if source == "device":
        return sources.from_device(out, open_browser, http, sleep)

    found, ambient_problem = sources.ambient()
    if found is not None:
        return found
    explicit = sources.explicit(id_token_file)
    if explicit is not None:
        return explicit
    if ambient_problem is not None:
        # in a CI whose identity failed: say why, rather than start an interactive login
        raise IdentityError(ambient_problem)
    if interactive and any(candidate.client_id for candidate in issuers):
        return sources.from_device(out, open_browser, http, sleep)
    raise IdentityError(sources.nothing_found(interactive))


@dataclass(frozen=True)
class _Sources:
    issuers: tuple[Issuer, ...]
    config: BrokerConfig
    issuer_name: str | None
    env: Mapping[str, str]
    clock: Callable[[], float]

    # ------------------------------------------------------------------ ambient

    def audiences(self) -> list[str]:
        """Distinct audiences to ask a CI for: issuers without a client_id first (CI issuers;
        those with one are usually people's IdPs), each group in the broker's order."""
        ordered = sorted(self.issuers, key=lambda issuer: issuer.client_id is not None)
        return list(dict.fromkeys(issuer.audience for issuer in ordered))

    def ci(self) -> CI:
        """The CI whose detector answered: the first, in ``id``'s order, whose variable is set;
        GCP when none is (its detector alone looks at the machine, not at a variable)."""
        for ci in CI_SYSTEMS:
            if ci.variable and self.env.get(ci.variable):
                return ci
        return GCP

    def ambient(self) -> tuple[Identity | None, str | None]:
        """The CI's identity, or None and why a detected CI gave none we can use (None when
        no CI was detected)."""
        failures: list[str] = []
        untrusted: list[str] = []
        for audience in self.audiences():
            try:
                credential = ambient_id.detect_credential(audience)
            except ambient_id.IdentityError as error:
                failures.append(_clean(str(error)))
                continue
            if credential is None:
                return None, None  # no detector fired: detection does not depend on audience
            token = Secret(credential)
            iss = unverified_claims(token).get("iss")
            matches = [i for i in self.issuers if i.audience == audience and i.url == iss]
            if matches:
                ci = self.ci()
                return self._accept(token, matches[0], ci.source, ci.title, ci.renewal), None
            untrusted.append(f"{_clean(str(iss))} for audience {audience!r}")
        ci = self.ci()
        audience = self.audiences()[0]
        variable = _NOT_ENV_CHARS.sub("_", audience.upper()) + "_ID_TOKEN"
        fix = ci.fix.format(audience=audience, variable=variable)
        found = [f"{failures[0]}"] if failures else []
        if untrusted:
            found.append(
                f"its ID tokens come from issuers the broker does not trust "
                f"({'; '.join(untrusted)}); it trusts {self._trusted_list()}"
            )
        return None, (
            f"{ci.title} gave no usable ID token: {'; '.join(found)}; {fix}, "
            "or pass --id-token-file PATH"
        )

    def no_ci(self) -> str:
        return (
            f"no CI identity found (cabroker detects {CI_TITLES}); in a CI job, {self._ci_hints()}"
        )

    # ------------------------------------------------------------- file, env

    def explicit(self, id_token_file: Path | None) -> Identity | None:
        """``id_token_file``, else ``CABROKER_ID_TOKEN_FILE`` or ``CABROKER_ID_TOKEN``."""
        if id_token_file is not None:
            return self.from_file(id_token_file)
        path = _path_from(self.env)
        token = self.env.get(TOKEN_ENV, "").strip()
        if path is not None and token:
            raise IdentityError(f"both {TOKEN_ENV} and {TOKEN_FILE_ENV} are set: unset one of them")
        if path is not None:
            return self.from_file(path)
        if token:
            return self.from_env(token)
        return None

    def from_file(self, path: Path) -> Identity:
        try:
            with path.open("rb") as file:
                raw = file.read(MAX_TOKEN_FILE + 1)
            text = raw.decode("utf-8").strip()
        except OSError as error:
            reason = error.strerror or type(error).__name__
            raise IdentityError(f"cannot read the ID token file {path}: {reason}") from None
        except UnicodeDecodeError:
            raise IdentityError(f"the ID token file {path} does not hold a JWT") from None
        if len(raw) > MAX_TOKEN_FILE:
            raise IdentityError(f"the ID token file {path} does not hold a JWT (it is too big)")
        where = f"the file {path}"
        if not text:
            raise IdentityError(f"the ID token file {path} is empty: write an OIDC ID token to it")
        return self._check(Secret(text), where, "file", f"write a fresh one to {path}")

    def from_env(self, token: str) -> Identity:
        return self._check(Secret(token), TOKEN_ENV, "env", f"set {TOKEN_ENV} to a fresh one")

    def _check(self, token: Secret, where: str, source: str, fix: str) -> Identity:
        claims = unverified_claims(token)
        if not claims:
            raise IdentityError(
                f"{where} does not hold a JWT (an OIDC ID token: three base64url parts "
                "separated by dots)"
            )
        iss = claims.get("iss")
        if not isinstance(iss, str) or not iss:
            raise IdentityError(f"the ID token from {where} has no issuer (no 'iss' claim)")
        from_issuer = [i for i in self.issuers if i.url == iss]
        if not from_issuer:
            if self.issuer_name is not None:
                named = self.issuers[0]
                raise IdentityError(
                    f"the ID token from {where} was issued by {_clean(iss)}, not by issuer "
                    f"{named.name} ({named.url}) as --issuer asks"
                )
            raise IdentityError(
                f"the ID token from {where} was issued by {_clean(iss)}, which the broker does "
                f"not trust; it trusts {self._trusted_list()}"
            )
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        matching = [i for i in from_issuer if i.audience in audiences]
        if not matching:
            expected = " or ".join(repr(i.audience) for i in from_issuer)
            raise IdentityError(
                f"the ID token from {where} is for audience {_clean(str(aud))}, but the broker "
                f"expects {expected} from {_clean(iss)}; ask for a token with that audience"
            )
        return self._accept(token, matching[0], source, where, fix)

    # ------------------------------------------------------------------ device

    def from_device(
        self,
        out: TextIO,
        open_browser: Callable[[str], bool] | None,
        http: requests.Session | None,
        sleep: Callable[[float], None],
    ) -> Identity:
        chosen = device.choose_issuer(self.config, self.issuer_name)
        token = device.login(
            chosen, out=out, open_browser=open_browser, http=http, sleep=sleep, clock=self.clock
        )
        return self._accept(
            token,
            chosen,
            "device",
            f"the login to {chosen.name}",
            "run the command again (and check this machine's clock)",
        )

    # ------------------------------------------------------------------ common

    def _accept(self, token: Secret, issuer: Issuer, source: str, where: str, fix: str) -> Identity:
        """The identity, once its token is known not to have expired."""
        now = self.clock()
        left = seconds_left(token, now)
        expires_at = _utc(now + left) if left is not None else None
        if left is not None and left <= 0:
            when = expires_at.strftime("%Y-%m-%d %H:%M:%S UTC") if expires_at else "long ago"
            raise IdentityError(
                f"the identity token from {where} expired at {when} ({int(-left)} s ago); "
                f"get a fresh one: {fix}"
            )
        return Identity(token, issuer, source, expires_at)

    def _trusted_list(self) -> str:
        return ", ".join(f"{i.url} ({i.name})" for i in self.issuers)

    def _ci_hints(self) -> str:
        audience = self.audiences()[0]
        variable = _NOT_ENV_CHARS.sub("_", audience.upper()) + "_ID_TOKEN"
        return (
            f"give it an ID token for audience {audience!r}: GitHub Actions "
            f"`permissions: id-token: write`, GitLab CI "
            f"`id_tokens: {{{variable}: {{aud: {audience}}}}}`; or pass --id-token-file PATH "
            f"or set {TOKEN_ENV}"
        )

    def nothing_found(self, interactive: bool) -> str:
        if not interactive:
            why = "interactive login is off (no terminal, or --non-interactive)"
        elif self.issuer_name is not None:
            why = f"issuer {self.issuer_name} offers no interactive login"
        else:
            why = "the broker offers no interactive login"
        return (
            f"no identity found: no CI identity ({CI_TITLES}), no --id-token-file, "
            f"{TOKEN_ENV} or {TOKEN_FILE_ENV}, and {why}; in a CI job, {self._ci_hints()}"
        )


def _trusted(config: BrokerConfig, name: str | None) -> tuple[Issuer, ...]:
    """The broker's issuers, or only the one named ``name``."""
    if name is None:
        return config.issuers
    named = tuple(issuer for issuer in config.issuers if issuer.name == name)
    if not named:
        known = ", ".join(issuer.name for issuer in config.issuers) or "none"
        raise IdentityError(f"the broker has no issuer named {name!r}; its issuers: {known}")
    return named


def _path_from(env: Mapping[str, str]) -> Path | None:
    value = env.get(TOKEN_FILE_ENV, "").strip()
    return Path(value) if value else None


def _utc(timestamp: float) -> datetime | None:
    try:
        return datetime.fromtimestamp(timestamp, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _clean(text: str, limit: int = 300) -> str:
    """Another component's words for one line of ours: no token, no control characters."""
    text = _JWT_LIKE.sub("<redacted>", text)
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
