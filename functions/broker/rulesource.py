"""Where the rules document comes from: a file (devstack, tests) or an SSM parameter (AWS).

The document is compiled once per distinct text.  A document that does not validate makes the
broker refuse to serve (503 ``rules-unavailable``, an error log naming the problem); it never
falls back to older rules.  When SSM itself cannot be reached, the last document that did load
keeps serving for at most ``stale_seconds``, because an outage says nothing about the rules.

A shadow source (``shadow=True``, :mod:`broker.shadow`) behaves alike, but its log lines say
``shadow rules`` and that only the shadow evaluation is skipped: the broker serves on.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from .problems import RulesUnavailable
from .rules import RulesError, RuleSet, parse

if TYPE_CHECKING:
    from botocore.config import Config

logger = Logger(service="cabroker", child=True)

Loader = Callable[[], str]
Check = Callable[[RuleSet], None]  # raises RulesError for a document that cannot be served


class SourceError(Exception):
    """The rules document could not be read (file missing, SSM unreachable…)."""


class RulesSource:
    def __init__(
        self,
        load: Loader,
        description: str,
        *,
        check: Check | None = None,
        stale_seconds: float = 3600,
        clock: Callable[[], float] = time.monotonic,
        shadow: bool = False,
    ) -> None:
        self._load = load
        self._what = "shadow rules" if shadow else "rules"
        self._refusing = "the shadow evaluation is skipped" if shadow else "refusing to serve"
        self._description = description
        self._check = check
        self._stale = stale_seconds
        self._clock = clock
        self._digest: str | None = None
        self._rules: RuleSet | None = None
        self._loaded_at = float("-inf")
        self._error: str | None = None

    def current(self) -> RuleSet:
        try:
            text = self._load()
        except SourceError as exc:
            return self._stale_or_fail(str(exc))
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        if digest != self._digest:
            # Whatever happens, the outcome belongs to this text: never the previous rules.
            self._digest, self._rules = digest, None
            try:
                rules = parse(text)
                if self._check is not None:
                    self._check(rules)
            except RulesError as exc:
                self._error = str(exc)
            except Exception as exc:  # noqa: BLE001 - any failure means "invalid", never "open"
                self._error = f"the document could not be compiled ({type(exc).__name__})"
            else:
                self._rules, self._error = rules, None
                logger.info(
                    f"{self._what} loaded",
                    extra={
                        "source": self._description,
                        "sha256": digest,
                        "rules": len(rules.rules),
                        "issuers": sorted(rules.issuers),
                    },
                )
        if self._rules is None:
            logger.error(
                f"{self._what} document is invalid; {self._refusing}",
                extra={"source": self._description, "reason": self._error},
            )
            raise RulesUnavailable(
                "the broker's access rules are invalid; an admin has been alerted",
                retry_after=60,
            )
        self._loaded_at = self._clock()
        return self._rules

    def _stale_or_fail(self, reason: str) -> RuleSet:
        age = self._clock() - self._loaded_at
        if self._rules is not None and age <= self._stale:
            logger.warning(
                f"{self._what} source unavailable; serving the last {self._what} loaded",
                extra={"source": self._description, "reason": reason, "age_seconds": int(age)},
            )
            return self._rules
        logger.error(
            f"{self._what} source unavailable; {self._refusing}",
            extra={"source": self._description, "reason": reason},
        )
        raise RulesUnavailable(
            "the broker's access rules could not be loaded; try again shortly", retry_after=10
        )


def file_loader(path: str) -> Loader:
    def load() -> str:
        try:
            return Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"cannot read {path}: {exc}") from None

    return load


def ssm_loader(name: str, max_age: int, config: Config | None = None) -> Loader:
    """Read an SSM parameter through Powertools Parameters (cached for ``max_age`` seconds),
    with the broker's bounded timeouts and retries (``config``), not botocore's 60 s default,
    and within the request's deadline."""
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters.base import (  # type: ignore[attr-defined]
        DEFAULT_PROVIDERS,
    )
    from botocore.exceptions import BotoCoreError

    from .aws import with_deadline

    # Powertools' shared SSM provider, made here (unless one exists already: tests put theirs
    # there) so that it uses the broker's bounded timeouts and retries, and the deadline.
    if "ssm" not in DEFAULT_PROVIDERS:
        provider = parameters.SSMProvider(boto_config=config)
        with_deadline(provider.client)
        DEFAULT_PROVIDERS["ssm"] = provider

    def load() -> str:
        try:
            value = parameters.get_parameter(name, max_age=max_age)
        except (parameters.exceptions.GetParameterError, BotoCoreError) as exc:
            raise SourceError(f"cannot read SSM parameter {name}: {type(exc).__name__}") from None
        if not isinstance(value, str):
            raise SourceError(f"SSM parameter {name} is not a string")
        return value

    return load
