"""The rules' issuers' keys, fetched during the Lambda's init rather than in the first request.

A cold start has full CPU during init, and the first request of a new instance would otherwise
wait for its issuer's discovery document and JWKS (two round trips).  :func:`at_init` loads the
rules and fetches every issuer they name, concurrently (one thread per issuer, at most
:data:`MAX_THREADS`), through :meth:`broker.identity.IssuerKeys.prefetch`: the download and the
checks a request makes, into the cache requests read.

It never fails init and never holds it long: the whole of it works to one deadline
(``BROKER_JWKS_PREFETCH_SECONDS``, :mod:`broker.deadline`: each fetch gets at most half the time
left, and a watchdog cuts its connection when that is over), init waits for no thread past it,
and every failure (settings or rules unusable, an issuer down, slow or answering nonsense) ends
in one log line, ``issuer keys not prefetched``, naming the issuers and why.  A failure is not
remembered: the first request for that issuer fetches as it always did.  A thread still
fetching when init stops waiting runs on (a daemon, bounded by the same deadline) into the first
request; what it fetches never replaces keys a request fetched meanwhile
(:meth:`broker.identity.IssuerKeys.prefetch`).

Skipped when the setting is 0, and under SnapStart (``AWS_LAMBDA_INITIALIZATION_TYPE`` is
``snap-start``): keys fetched into a snapshot would be as old as the snapshot when it is
restored, and the cache's TTL, counted on the monotonic clock, need not count the time between.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aws_lambda_powertools import Logger

from . import deadline, service
from .identity import FetchError, IssuerKeys
from .problems import BrokerError
from .rules import Issuer
from .settings import Settings, SettingsError

logger = Logger(service="cabroker", child=True)

MAX_THREADS = 8  # issuers fetched at once; a rules document names a handful
MAX_REASON_CHARS = 300  # of each reason on the log line

Wait = Callable[[threading.Event, float], bool]


def _wait(event: threading.Event, timeout: float) -> bool:
    return event.wait(timeout)


@dataclass
class Outcome:
    """What a prefetch did, by issuer name: fetched, failed (with why), or still running when
    its deadline passed (unfinished; the thread ends at its own deadline and is not waited for)."""

    fetched: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    unfinished: list[str] = field(default_factory=list)


def issuer_keys(
    keys: IssuerKeys,
    issuers: Sequence[Issuer],
    seconds: float,
    *,
    threads: int = MAX_THREADS,
    wait: Wait = _wait,
) -> Outcome:
    """Fetch each issuer's keys into ``keys``, concurrently, within ``seconds`` in all.

    Returns when every issuer is done or ``seconds`` have passed (``wait``, an
    :meth:`threading.Event.wait`, is replaced in tests); never raises for an issuer.
    """
    end = time.monotonic() + seconds
    pending = list(issuers)
    outcome = Outcome()
    lock = threading.Lock()
    done = threading.Event()
    to_do = len(pending)
    if to_do == 0:
        return outcome

    def work() -> None:
        nonlocal to_do
        # The worker's own deadline (a context variable does not follow a new thread): the
        # issuer fetches (broker.identity.http_fetcher) work to it as a request's do.
        with deadline.scope(end - time.monotonic()):
            while True:
                with lock:
                    if not pending:
                        return
                    issuer = pending.pop(0)
                reason = None
                try:
                    keys.prefetch(issuer)
                except FetchError as exc:
                    reason = str(exc)
                except Exception as exc:  # noqa: BLE001 - never init's failure; one log line
                    reason = f"{type(exc).__name__}: {exc}"
                with lock:
                    if reason is None:
                        outcome.fetched.append(issuer.name)
                    else:
                        outcome.failed[issuer.name] = reason[:MAX_REASON_CHARS]
                    to_do -= 1
                    if to_do == 0:
                        done.set()

    for number in range(min(threads, len(pending))):
        # Daemon threads: one stuck where no deadline reaches (DNS) cannot hold the process.
        threading.Thread(target=work, name=f"keys-prefetch-{number}", daemon=True).start()
    wait(done, max(0.0, end - time.monotonic()))
    with lock:  # a copy: a worker still running may finish later, unseen
        finished = set(outcome.fetched) | set(outcome.failed)
        unfinished = [issuer.name for issuer in issuers if issuer.name not in finished]
        return Outcome(list(outcome.fetched), dict(outcome.failed), unfinished)


def at_init(*, wait: Wait = _wait) -> Outcome | None:
    """At the cold start, after :func:`broker.service.prepare`: fetch the keys of every issuer
    the rules name into the broker's cache.  Never raises; logs one line (``issuer keys
    prefetched``, or ``issuer keys not prefetched`` with why); None when it fetched nothing."""
    if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start":
        logger.info("issuer keys not prefetched", extra={"reason": "SnapStart"})
        return None
    started = time.monotonic()
    try:
        # Checked first: with bad settings, service.current() would log them again.
        seconds = Settings.from_env(os.environ).jwks_prefetch_seconds
        if seconds <= 0:
            return None
        broker = service.current()
        # The rules were loaded by prepare() (a cache hit now); if that failed, trying again
        # works to the same deadline as the fetches.
        with deadline.scope(seconds):
            rules = broker.rules_loaded()
        outcome = issuer_keys(
            broker.issuer_keys,  # the cache requests read
            list(rules.issuers.values()),
            max(0.0, seconds - (time.monotonic() - started)),
            wait=wait,
        )
    except Exception as exc:  # noqa: BLE001 - init never fails for it; one log line
        if isinstance(exc, SettingsError):
            reason = "the broker's settings are invalid (logged once, as invalid broker settings)"
        elif isinstance(exc, BrokerError):
            reason = exc.detail
        else:
            reason = f"{type(exc).__name__}: {exc}"
        logger.warning(
            "issuer keys not prefetched",
            extra={"reason": reason[:MAX_REASON_CHARS], "duration_ms": _ms(started)},
        )
        return None
    line = {"fetched": outcome.fetched, "duration_ms": _ms(started)}
    if outcome.failed or outcome.unfinished:
        logger.warning(
            "issuer keys not prefetched",
            extra={
                **line,
                "failed": outcome.failed,
                "unfinished": outcome.unfinished,
                "reason": "the first request for these issuers fetches their keys",
            },
        )
    else:
        logger.info("issuer keys prefetched", extra=line)
    return outcome


def _ms(since: float) -> int:
    return round((time.monotonic() - since) * 1000)
