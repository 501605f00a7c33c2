"""The cold start's key prefetch (broker.prefetch): it fills the cache requests read, so the first
request fetches nothing; an issuer down, hanging or answering nonsense, rules or settings
unusable: init still succeeds, within its deadline, and the first request fetches as before.

No test waits on the wall clock: hanging issuers are fakes blocked on events, deadlines that
pass are a ``wait`` that says so, concurrency is proven with barriers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from broker import deadline, prefetch, service
from broker.identity import FetchError, IssuerKeys, http_fetcher
from broker.problems import InvalidToken
from broker.rules import Issuer
from broker.settings import Settings, SettingsError
from tests.conftest import GITHUB_CLAIMS, Answer, invoke
from tests.support.codeartifact import FakeClients, FakeCodeArtifact
from tests.support.events import http_event
from tests.support.logs import LogLines
from tests.support.oidc import LocalIssuer, private_key, public_jwk

ROOT = Path(__file__).resolve().parents[3]
EVENT_TIMEOUT = 30  # a backstop for a broken implementation, never a timing assertion


def wait_or_fail(event: threading.Event) -> None:
    assert event.wait(EVENT_TIMEOUT), "the other thread never got there"


def issuer(name: str) -> Issuer:
    return Issuer(name=name, url=f"https://{name}.example.com", audience="cabroker")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeIssuers:
    """Discovery and JWKS of any ``issuer(name)``, counted; ``before`` runs in each fetch, with
    the URL, after the document is read and before it is answered (to block, fail or record)."""

    def __init__(self) -> None:
        self.keys: dict[str, list[Any]] = {}
        self.fetches: list[str] = []
        self.before: Callable[[str], None] = lambda url: None
        self._lock = threading.Lock()

    def publish(self, name: str, *kids: str) -> None:
        self.keys[name] = [public_jwk(private_key(f"rsa-{kid}"), kid) for kid in kids]

    def __call__(self, url: str) -> Mapping[str, Any]:
        with self._lock:
            self.fetches.append(url)
        host = url.split("/")[2]
        name = host.split(".")[0]
        # The document as it is now, delivered after ``before``: a slow fetch answers old keys.
        document: Mapping[str, Any]
        if url.endswith("/.well-known/openid-configuration"):
            document = {"issuer": f"https://{host}", "jwks_uri": f"https://{host}/keys"}
        else:
            document = {"keys": list(self.keys[name])}
        self.before(url)
        return document


@pytest.fixture
def idps() -> FakeIssuers:
    fake = FakeIssuers()
    for name in ("one", "two", "three"):
        fake.publish(name, "a")
    return fake


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys(idps: FakeIssuers, clock: Clock) -> IssuerKeys:
    return IssuerKeys(idps, ttl=600, min_refresh_interval=60, stale_if_error=3600, clock=clock)


def passed(event: threading.Event, timeout: float) -> bool:
    """A ``wait`` for which the deadline has passed at once."""
    return event.is_set()


# --------------------------------------------------------------------------- issuer_keys


def test_prefetched_keys_serve_requests_without_a_fetch(
    keys: IssuerKeys, idps: FakeIssuers
) -> None:
    outcome = prefetch.issuer_keys(keys, [issuer("one"), issuer("two")], 2.0)
    assert sorted(outcome.fetched) == ["one", "two"]
    assert outcome.failed == {}
    assert outcome.unfinished == []
    fetched = len(idps.fetches)
    assert fetched == 4  # discovery and JWKS of each
    assert keys.key(issuer("one"), "a", "RS256") is not None
    assert keys.key(issuer("two"), "a", "RS256") is not None
    assert len(idps.fetches) == fetched


def test_issuers_are_fetched_side_by_side(keys: IssuerKeys, idps: FakeIssuers) -> None:
    # Each discovery fetch waits until all three are under way: only concurrent fetches pass.
    together = threading.Barrier(3)

    def meet(url: str) -> None:
        if url.endswith("openid-configuration"):
            together.wait(EVENT_TIMEOUT)

    idps.before = meet
    outcome = prefetch.issuer_keys(keys, [issuer("one"), issuer("two"), issuer("three")], 60)
    assert sorted(outcome.fetched) == ["one", "three", "two"]


def test_threads_are_bounded_and_each_takes_the_next_issuer(
    keys: IssuerKeys, idps: FakeIssuers
) -> None:
    threads: set[str] = set()
    idps.before = lambda url: threads.add(threading.current_thread().name)
    issuers = [issuer("one"), issuer("two"), issuer("three")]
    outcome = prefetch.issuer_keys(keys, issuers, 60, threads=2)
    assert sorted(outcome.fetched) == ["one", "three", "two"]
    assert len(threads) <= 2
    assert all(name.startswith("keys-prefetch-") for name in threads)


def test_a_hanging_issuer_does_not_hold_init_past_its_deadline(
    keys: IssuerKeys, idps: FakeIssuers
) -> None:
    entered, release = threading.Event(), threading.Event()
    seen: dict[str, float | None] = {}
    waited: list[float] = []

    def hang(url: str) -> None:
        if url.startswith("https://one."):
            seen["left"] = deadline.remaining()
            entered.set()
            wait_or_fail(release)
            raise FetchError(f"{url} took longer than it may")

    def deadline_passes(event: threading.Event, timeout: float) -> bool:
        waited.append(timeout)
        wait_or_fail(entered)
        return event.is_set()

    idps.before = hang
    try:
        outcome = prefetch.issuer_keys(
            keys, [issuer("one"), issuer("two")], 60.0, wait=deadline_passes
        )
    finally:
        release.set()
    assert "one" in outcome.unfinished
    assert "one" not in outcome.fetched
    # init waited no longer than the deadline, and the fetch itself works to it (the real
    # fetcher cuts its connection there: test_identity, test_faults)
    (timeout,) = waited
    assert 0 < timeout <= 60.0
    left = seen["left"]
    assert left is not None
    assert 0 < left <= 60.0


def test_a_failed_prefetch_leaves_no_back_off_for_the_first_request(
    keys: IssuerKeys, idps: FakeIssuers, clock: Clock
) -> None:
    down = True

    def maybe_down(url: str) -> None:
        if down:
            raise FetchError(f"{url} is unreachable")

    idps.before = maybe_down
    outcome = prefetch.issuer_keys(keys, [issuer("one")], 2.0)
    assert outcome.fetched == []
    assert outcome.failed == {
        "one": "https://one.example.com/.well-known/openid-configuration is unreachable"
    }
    down = False
    # At the same instant (the clock has not moved): a back-off would answer 503 here.
    assert keys.key(issuer("one"), "a", "RS256") is not None
    assert idps.fetches[-1] == "https://one.example.com/keys"


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(ValueError("not JSON"), id="ValueError"),
        pytest.param(RuntimeError("a bug"), id="any exception"),
    ],
)
def test_any_failure_is_the_issuers_outcome_never_an_exception(
    keys: IssuerKeys, idps: FakeIssuers, failure: Exception
) -> None:
    def fail(url: str) -> None:
        raise failure

    idps.before = fail
    outcome = prefetch.issuer_keys(keys, [issuer("one")], 2.0)
    assert outcome.failed == {"one": f"{type(failure).__name__}: {failure}"}


def test_a_prefetch_never_replaces_keys_a_request_fetched_since_it_started(
    keys: IssuerKeys, idps: FakeIssuers, clock: Clock
) -> None:
    """The issuer drops key a while a prefetch is reading its old JWKS; a request meanwhile
    fetches the new one. The prefetch, finishing last, must not bring key a back."""
    entered, release = threading.Event(), threading.Event()
    stalled: list[str] = []

    def stall_the_prefetch(url: str) -> None:
        if url.endswith("/keys") and not stalled:
            stalled.append(threading.current_thread().name)
            entered.set()
            wait_or_fail(release)

    idps.before = stall_the_prefetch
    slow = threading.Thread(target=keys.prefetch, args=(issuer("one"),))
    slow.start()
    try:
        wait_or_fail(entered)
        idps.publish("one", "b")  # rotated: a is gone
        clock.now += 1
        # The request does not wait for the prefetch (it holds no lock while it fetches).
        assert keys.key(issuer("one"), "b", "RS256") is not None
    finally:
        release.set()
    slow.join(EVENT_TIMEOUT)
    assert not slow.is_alive()
    with pytest.raises(InvalidToken, match="not among"):
        keys.key(issuer("one"), "a", "RS256")


def test_fresh_keys_are_not_fetched_again(keys: IssuerKeys, idps: FakeIssuers) -> None:
    keys.key(issuer("one"), "a", "RS256")
    fetched = len(idps.fetches)
    assert keys.prefetch(issuer("one")) is False
    assert len(idps.fetches) == fetched


def test_no_issuers_no_threads(keys: IssuerKeys) -> None:
    assert prefetch.issuer_keys(keys, [], 2.0, wait=passed) == prefetch.Outcome()


# --------------------------------------------------------------------------- at_init


@pytest.fixture
def lambda_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The function's environment in os.environ (at_init reads it, as the Lambda's init does),
    with the longest prefetch the setting allows: the local issuers answer at once, and a loaded
    machine must not turn that into a missed deadline."""
    for name, value in {**env, "BROKER_JWKS_PREFETCH_SECONDS": "5"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_LAMBDA_INITIALIZATION_TYPE", raising=False)
    return env


class Counting:
    """The broker's real fetcher (service.http_fetcher), counting the URLs it fetched."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.fetches: list[str] = []
        real = http_fetcher  # what service.py wires (its own import of it is replaced)

        def make(timeout: float) -> Callable[[str], Mapping[str, Any]]:
            fetch = real(timeout)

            def counted(url: str) -> Mapping[str, Any]:
                self.fetches.append(url)
                return fetch(url)

            return counted

        monkeypatch.setattr(service, "http_fetcher", make)


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> Counting:
    return Counting(monkeypatch)


@pytest.fixture
def cold_broker(
    lambda_env: dict[str, str], counting: Counting, sts_client: Any, codeartifact: FakeCodeArtifact
) -> Iterator[service.Broker]:
    """The process's broker as the Lambda's init builds it (service.current()), its fetches
    counted; AWS is moto and the CodeArtifact stand-in."""
    built = service.Broker.from_settings(
        Settings.from_env(os.environ), FakeClients(sts_client, codeartifact.client)
    )
    service.use(built)
    yield built
    service.use(None)


def grants(token: str) -> Answer:
    return invoke(http_event("GET", "/v1/grants", token=token))


def test_init_prefetches_so_the_first_request_fetches_nothing(
    cold_broker: service.Broker,
    counting: Counting,
    github: LocalIssuer,
    corp: LocalIssuer,
    log_lines: LogLines,
) -> None:
    service.prepare()
    outcome = prefetch.at_init()
    assert outcome is not None
    assert sorted(outcome.fetched) == ["corp", "github"]
    assert len(counting.fetches) == 4
    assert github.jwks_requests == corp.jwks_requests == 1
    (line,) = [line for line in log_lines.lines if "prefetch" in str(line["message"])]
    assert line["message"] == "issuer keys prefetched"
    assert sorted(line["fetched"]) == ["corp", "github"]

    answer = grants(github.mint(**GITHUB_CLAIMS))
    assert answer.status == 200, answer.body
    assert len(counting.fetches) == 4  # the first request fetched nothing
    assert github.jwks_requests == 1


def test_an_issuer_down_at_init_is_fetched_by_the_first_request(
    cold_broker: service.Broker, counting: Counting, github: LocalIssuer, log_lines: LogLines
) -> None:
    github.down = True
    outcome = prefetch.at_init()
    assert outcome is not None
    assert outcome.fetched == ["corp"]
    assert list(outcome.failed) == ["github"]
    (line,) = [line for line in log_lines.lines if "prefetch" in str(line["message"])]
    assert line["message"] == "issuer keys not prefetched"
    assert line["level"] == "WARNING"
    assert list(line["failed"]) == ["github"]
    assert line["fetched"] == ["corp"]
    assert "exception" not in line  # no traceback

    github.down = False
    answer = grants(github.mint(**GITHUB_CLAIMS))  # at once: no back-off was left behind
    assert answer.status == 200, answer.body
    assert github.jwks_requests == 1


def test_the_setting_turns_it_off(
    cold_broker: service.Broker, counting: Counting, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROKER_JWKS_PREFETCH_SECONDS", "0")
    assert prefetch.at_init() is None
    assert counting.fetches == []


def test_snapstart_is_not_prefetched_into_a_snapshot(
    cold_broker: service.Broker,
    counting: Counting,
    monkeypatch: pytest.MonkeyPatch,
    log_lines: LogLines,
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start")
    assert prefetch.at_init() is None
    assert counting.fetches == []
    assert "issuer keys not prefetched" in log_lines.messages()


def test_rules_unreadable_at_init_fail_nothing(
    cold_broker: service.Broker,
    counting: Counting,
    rules_file: Path,
    log_lines: LogLines,
    github_token: str,
) -> None:
    rules_file.unlink()
    service.prepare()
    assert prefetch.at_init() is None
    assert counting.fetches == []
    (line,) = [line for line in log_lines.lines if "prefetch" in str(line["message"])]
    assert line["message"] == "issuer keys not prefetched"
    assert "rules" in line["reason"]
    assert grants(github_token).problem_type == "rules-unavailable"  # as without the prefetch


def test_bad_settings_at_init_are_logged_once(
    lambda_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, log_lines: LogLines
) -> None:
    monkeypatch.setenv("BROKER_DOMAIN", "Not A Domain")
    service.use(None)
    try:
        service.prepare()
        assert prefetch.at_init() is None
    finally:
        service.use(None)
    messages = log_lines.messages()
    assert messages.count("invalid broker settings") == 1
    assert messages.count("issuer keys not prefetched") == 1


@pytest.mark.parametrize(("value", "seconds"), [(None, 2.0), ("0", 0.0), ("0.5", 0.5), ("5", 5.0)])
def test_the_setting(env: dict[str, str], value: str | None, seconds: float) -> None:
    extra = {} if value is None else {"BROKER_JWKS_PREFETCH_SECONDS": value}
    assert Settings.from_env({**env, **extra}).jwks_prefetch_seconds == seconds


@pytest.mark.parametrize("value", ["-1", "5.5", "soon"])
def test_the_setting_is_bounded_well_inside_lambdas_init_limit(
    env: dict[str, str], value: str
) -> None:
    with pytest.raises(SettingsError, match="BROKER_JWKS_PREFETCH_SECONDS"):
        Settings.from_env({**env, "BROKER_JWKS_PREFETCH_SECONDS": value})


# --------------------------------------------------------------------------- a real cold start


@pytest.fixture
def silent_issuer() -> Iterator[str]:
    """An issuer URL whose server accepts connections and never answers a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                return
            accepted.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/silent"
    finally:
        stop.set()
        server.close()
        for connection in accepted:
            connection.close()


def cold_import(env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """``import broker.app`` in a fresh process, as Lambda's init runs it."""
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BROKER_")},
        **env,
        "AWS_LAMBDA_FUNCTION_NAME": "BrokerFunction",
        "PYTHONPATH": str(ROOT / "functions"),
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
    return subprocess.run(
        [sys.executable, "-c", "import broker.app"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,  # a backstop: the figure that matters is that init ends at all
        check=False,
    )


def test_a_cold_start_with_a_silent_issuer_and_a_missing_issuer_still_starts(
    env: dict[str, str], rules_file: Path, silent_issuer: str
) -> None:
    rules_file.write_text(
        "version: 1\n"
        "issuers:\n"
        f"  silent: {{url: '{silent_issuer}', audience: cabroker}}\n"
        "  gone: {url: 'http://127.0.0.1:9/gone', audience: cabroker}\n"
        "rules:\n"
        "  - {name: r1, issuer: silent, claims: {sub: x},\n"
        "     grant: {repository: internal, access: read}}\n"
        "  - {name: r2, issuer: gone, claims: {sub: x},\n"
        "     grant: {repository: internal, access: read}}\n"
    )
    done = cold_import({**env, "BROKER_JWKS_PREFETCH_SECONDS": "0.5"})
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if "prefetch" in line]
    assert len(lines) == 1, done.stdout
    assert lines[0]["message"] == "issuer keys not prefetched"
    # each failed, or was still waiting when the half second was over (on a loaded machine)
    assert set(lines[0]["failed"]) | set(lines[0]["unfinished"]) == {"gone", "silent"}
    assert lines[0]["fetched"] == []
    assert "Traceback" not in done.stdout + done.stderr


def test_a_cold_start_without_its_rules_still_starts(env: dict[str, str], rules_file: Path) -> None:
    rules_file.unlink()
    done = cold_import(env)
    assert done.returncode == 0, done.stderr
    messages = [json.loads(line)["message"] for line in done.stdout.splitlines() if line]
    assert messages == ["rules source unavailable; refusing to serve"]  # once; nothing to fetch
    assert "Traceback" not in done.stdout + done.stderr


def test_a_cold_start_with_invalid_rules_logs_them_once_and_fetches_nothing(
    env: dict[str, str], rules_file: Path
) -> None:
    """Init's check of the rules says what is wrong once (an alarm counts that line); with
    nothing usable to fetch, the prefetch adds no second line."""
    rules_file.write_text("version: 2\n")
    done = cold_import(env)
    assert done.returncode == 0, done.stderr
    messages = [json.loads(line)["message"] for line in done.stdout.splitlines() if line]
    assert messages == ["rules document is invalid; refusing to serve"]  # once, and no more
