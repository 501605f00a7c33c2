"""Where the client's identity (an OIDC ID token) comes from.

Unless a source is named, :class:`Sources` tries in order:

1. ``ambient``: the CI system's own identity, found by the ``id`` package (GitHub Actions,
   GCP, Buildkite, GitLab CI, CircleCI), asked for the broker's audience
   (:func:`cabroker.config.audiences`: pinned, else the broker URL's origin);
2. ``file``: ``id_token_file``, else ``CABROKER_ID_TOKEN_FILE``; ``env``: ``CABROKER_ID_TOKEN``;
3. ``device``: interactive login (:mod:`cabroker.device`), only when ``interactive``.

Only the device login reads the broker's ``/v1/config`` (to learn the issuer and client id),
and it refuses an issuer whose audience the user has not accepted for this broker: an
unauthenticated answer never chooses which token the client obtains or sends.

Every token is checked before it is used: it is a JWT with an issuer, every ``aud`` value is an
audience of this broker, and it has not expired (the broker would answer 401; CodeArtifact
would answer a confusing 404 later).  Nothing here verifies a signature: that is the broker's
job.  Tokens are :class:`Secret` and never part of a message.

:attr:`Identity.binding` is the digest the token cache keys grants by: the same claims (but
for the per-token ones, :data:`PER_TOKEN_CLAIMS`) give the same grant from the broker's rules,
so a cached token is only ever handed back to the identity it was minted for.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .broker import BrokerConfig, Issuer
from .config import Audiences, login_settings, unsafe_url
from .errors import CabrokerError, IdentityError, UsageError
from .jwt import seconds_left, unverified_claims
from .logins import Logins
from .secret import Secret

if TYPE_CHECKING:
    import requests

SOURCES = ("ambient", "file", "env", "device")
TOKEN_ENV = "CABROKER_ID_TOKEN"  # noqa: S105 - a variable name
TOKEN_FILE_ENV = "CABROKER_ID_TOKEN_FILE"  # noqa: S105 - a variable name
MAX_TOKEN_FILE = 64 * 1024  # an ID token is a few kilobytes at most
# Claims that differ from one token to the next of the same identity: left out of the binding.
PER_TOKEN_CLAIMS = frozenset(
    {"iat", "exp", "nbf", "jti", "auth_time", "nonce", "at_hash", "c_hash", "uti", "rh", "sid"}
)


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

log = logging.getLogger(__name__)
_JWT_LIKE = re.compile(r"[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")


@dataclass(frozen=True)
class Identity:
    token: Secret  # the ID token
    iss: str
    audience: str  # the accepted audience it carries
    source: str  # github-actions, gitlab-ci, buildkite, circleci, gcp, file, env or device
    expires_at: datetime | None
    binding: str  # digest of the claims that decide a grant (see the module doc)
    where: str = ""  # the ID token file, for source "file"; the issuer name, for "device"


def binding(claims: Mapping[str, Any]) -> str:
    """The digest of everything in ``claims`` a rule could match, with the per-token claims
    left out: two tokens of one identity (same issuer, subject, repository, ref, groups…) give
    the same binding; any difference that could change the grant gives another."""
    kept = {name: value for name, value in claims.items() if name not in PER_TOKEN_CLAIMS}
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def obtain(
    audiences: Audiences,
    load_config: Callable[[], BrokerConfig],
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
    """An identity for the broker: from ``source`` (one of :data:`SOURCES`), or from the first
    source that has one, ending with a device login when ``interactive``."""
    sources = Sources(audiences, load_config, env, issuer, clock)
    found = sources.without_login(source, id_token_file)
    if found is not None:
        return found
    if source == "device" or interactive:
        return sources.login(out, open_browser, http, sleep)
    raise IdentityError(sources.nothing_found(interactive))


@dataclass
class Sources:
    """The identity sources for one broker (its :class:`Audiences`).  ``load_config`` (the
    broker's ``/v1/config``) is called only for a device login or a named ``issuer``."""

    audiences: Audiences
    load_config: Callable[[], BrokerConfig]
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    issuer_name: str | None = None
    clock: Callable[[], float] = time.time
    kept: Logins | None = None  # the interactive logins kept for reuse (default: the user's)
    _config: BrokerConfig | None = None

    def config(self) -> BrokerConfig:
        if self._config is None:
            self._config = self.load_config()
        return self._config

    def without_login(self, source: str | None, id_token_file: Path | None) -> Identity | None:
        """The identity from ``source``, or from the first source that has one without a
        person logging in; None when only a device login is left (``source`` None or
        ``device``).  A CI that is detected but gives no usable token is an error, not None:
        a CI job never falls back to an interactive login."""
        if source is not None and source not in SOURCES:
            raise UsageError(
                f"unknown identity source {source!r}; choose one of {', '.join(SOURCES)}"
            )
        if source == "device":
            return self.kept_login()
        if source == "ambient":
            found, problem = self.ambient()
            if found is None:
                raise IdentityError(problem or self.no_ci())
            return self._named(found)
        if source == "file":
            path = id_token_file or _path_from(self.env)
            if path is None:
                raise IdentityError(
                    f"no ID token file: pass --id-token-file PATH or set {TOKEN_FILE_ENV}"
                )
            return self._named(self.from_file(path))
        if source == "env":
            token = self.env.get(TOKEN_ENV, "").strip()
            if not token:
                raise IdentityError(f"{TOKEN_ENV} is not set: set it to an OIDC ID token (a JWT)")
            return self._named(self.from_env(token))
        found, ambient_problem = self.ambient()
        if found is None:
            found = self.explicit(id_token_file)
        if found is not None:
            return self._named(found)
        if ambient_problem is not None:
            # in a CI whose identity failed: say why, rather than start an interactive login
            raise IdentityError(ambient_problem)
        return self.kept_login()

    def logins(self) -> Logins:
        if self.kept is None:
            self.kept = Logins.default(self.env)
        return self.kept

    def kept_login(self) -> Identity | None:
        """The interactive login kept for this broker (at ``--issuer``, if named) while its ID
        token is valid and still for this broker only (:mod:`cabroker.logins`)."""
        try:
            found = self.logins().get(
                self.audiences.broker_url, self.issuer_name, self._wanted_scopes()
            )
        except CabrokerError as error:
            log.debug("no kept login (%s)", error.message)
            return None
        if found is None:
            return None
        name, token = found
        where = f"the login to {name} kept from earlier"
        try:
            return _with_where(self._check(token, where, "device", "log in again"), name)
        except IdentityError:
            return None

    def _wanted_scopes(self) -> tuple[str, ...] | None:
        """The scopes the user asks for now (``CABROKER_SCOPES``, or saved by ``cabroker
        configure``), if any: a login made with other scopes is not reused (it may lack the
        claims they add)."""
        try:
            return login_settings(self.audiences.broker_url, self.env).scopes
        except UsageError:
            return ()  # matches no kept login; the login that follows says what is wrong

    def _named(self, found: Identity) -> Identity:
        """``found``, when it comes from the issuer ``--issuer`` names (if it names one)."""
        if self.issuer_name is None:
            return found
        named = _trusted(self.config(), self.issuer_name)[0]
        if named.url != found.iss:
            raise IdentityError(
                f"the ID token from {found.where or found.source} was issued by "
                f"{_clean(found.iss)}, not by issuer {named.name} ({named.url}) as --issuer asks"
            )
        return found

    # ------------------------------------------------------------------ ambient

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
        import id as ambient_id  # deferred: a token file or a cache hit needs none of it

        audience = self.audiences.request
        try:
            credential = ambient_id.detect_credential(audience)
        except ambient_id.IdentityError as error:
            failure = _clean(str(error))
        else:
            if credential is None:
                return None, None  # no detector fired
            ci = self.ci()
            token = Secret(credential)
            return self._check(token, ci.title, ci.source, ci.renewal), None
        ci = self.ci()
        fix = ci.fix.format(audience=audience, variable=TOKEN_ENV)
        return None, (
            f"{ci.title} gave no usable ID token: {failure}; {fix}, or pass --id-token-file PATH"
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
        if not text:
            raise IdentityError(f"the ID token file {path} is empty: write an OIDC ID token to it")
        found = self._check(
            Secret(text), f"the file {path}", "file", f"write a fresh one to {path}"
        )
        return _with_where(found, str(path.absolute()))

    def from_env(self, token: str) -> Identity:
        return self._check(Secret(token), TOKEN_ENV, "env", f"set {TOKEN_ENV} to a fresh one")

    def _check(self, token: Secret, where: str, source: str, fix: str) -> Identity:
        """The identity, once ``token`` is a JWT with an issuer, for this broker only, and not
        expired."""
        claims = unverified_claims(token)
        if not claims:
            raise IdentityError(
                f"{where} does not hold a JWT (an OIDC ID token: three base64url parts "
                "separated by dots)"
            )
        iss = claims.get("iss")
        if not isinstance(iss, str) or not iss:
            raise IdentityError(f"the ID token from {where} has no issuer (no 'iss' claim)")
        aud = claims.get("aud")
        if not self.audiences.accepts(aud):
            raise IdentityError(
                f"the ID token from {where} is for audience {_clean(json.dumps(aud))}, not only "
                f"for this broker ({self.audiences.describe()}); cabroker sends no token another "
                f"service would accept. Ask for a token with audience "
                f"{self.audiences.request!r}, or, if your admins use another audience for this "
                "broker, pin it with --audience, CABROKER_AUDIENCE or 'cabroker configure URL "
                "--audience AUD'"
            )
        audience = aud if isinstance(aud, str) else str((aud or [""])[0])
        now = self.clock()
        left = seconds_left(token, now)
        expires_at = _utc(now + left) if left is not None else None
        if left is not None and left <= 0:
            when = expires_at.strftime("%Y-%m-%d %H:%M:%S UTC") if expires_at else "long ago"
            raise IdentityError(
                f"the identity token from {where} expired at {when} ({int(-left)} s ago); "
                f"get a fresh one: {fix}"
            )
        return Identity(token, iss, audience, source, expires_at, binding(claims), where)

    # ------------------------------------------------------------------ device

    def login_issuer(self) -> Issuer:
        """The issuer a device login would use, once it is known to be this broker's: its
        audience accepted for this broker, its URL https."""
        from . import device

        chosen = device.choose_issuer(self.config(), self.issuer_name)
        name = _clean(chosen.name)
        if chosen.audience not in self.audiences.accepted:
            import shlex

            audience = _clean(chosen.audience)
            raise IdentityError(
                f"the broker's interactive login ({name}, {_clean(chosen.url)}) issues ID "
                f"tokens for audience {audience!r}, which is not pinned for this broker; if "
                f"your admins publish that audience, pin it once: cabroker configure "
                f"{shlex.quote(self.audiences.broker_url)} --audience {shlex.quote(audience)}"
            )
        why = unsafe_url(chosen.url)
        if why is not None:
            raise IdentityError(f"the broker's interactive login issuer {name} is refused: {why}")
        return chosen

    def login(
        self,
        out: TextIO,
        open_browser: Callable[[str], bool] | None,
        http: requests.Session | None,
        sleep: Callable[[float], None],
    ) -> Identity:
        from . import device

        chosen = device.with_user_settings(
            self.login_issuer(), login_settings(self.audiences.broker_url, self.env)
        )
        token = device.login(
            chosen, out=out, open_browser=open_browser, http=http, sleep=sleep, clock=self.clock
        )
        where = f"the login to {chosen.name}"
        found = self._check(
            token, where, "device", "run the command again (and check this machine's clock)"
        )
        if found.iss != chosen.url:
            raise IdentityError(
                f"{where} returned an ID token issued by {_clean(found.iss)}, not {chosen.url}"
            )
        if found.expires_at is not None:
            try:  # one login serves every command while it is valid
                self.logins().put(
                    self.audiences.broker_url,
                    chosen.name,
                    token,
                    found.expires_at.timestamp(),
                    chosen.scopes,
                )
            except CabrokerError as error:
                log.debug("the login is not kept (%s)", error.message)
        return _with_where(found, chosen.name)

    # ------------------------------------------------------------------ messages

    def _ci_hints(self) -> str:
        audience = self.audiences.request
        return (
            f"give it an ID token for audience {audience!r}: GitHub Actions "
            f"`permissions: id-token: write`, GitLab CI "
            f"`id_tokens: {{{TOKEN_ENV}: {{aud: {audience}}}}}`; or pass --id-token-file PATH "
            f"or set {TOKEN_ENV}"
        )

    def nothing_found(self, interactive: bool) -> str:
        if not interactive:
            why = "interactive login is off (no terminal, or --non-interactive)"
        else:
            why = "no interactive login was possible"
        return (
            f"no identity found: no CI identity ({CI_TITLES}), no --id-token-file, "
            f"{TOKEN_ENV} or {TOKEN_FILE_ENV}, and {why}; in a CI job, {self._ci_hints()}"
        )


def _with_where(found: Identity, where: str) -> Identity:
    return replace(found, where=where)


def _trusted(config: BrokerConfig, name: str) -> tuple[Issuer, ...]:
    """The broker's issuer named ``name``."""
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
