"""The shared token cache (DynamoDB + KMS, moto): sharing, single flight, expiry, failures.

Each ``SharedTokens`` here stands for one warm Lambda instance; they share moto's table. Time is
the fake :class:`Clock`'s (and the deadline's, through :func:`fake_deadline`): it moves only
when a test moves it, so no expectation depends on how fast the machine is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto import mock_aws
from moto.dynamodb.models.table import Table

from broker import deadline
from broker.grants import ResolvedGrant
from broker.identity import Identity
from broker.minted import MintedToken
from broker.problems import ServiceUnavailable
from broker.rules import Issuer
from broker.sharedcache import SharedCacheSettings, SharedTokens, Sharing
from tests.support.moto_atomic import AtomicItems

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kms import KMSClient

TABLE = "cabroker-cache"
SECRET = "ca-token-" + "s3cr3t" * 20


@pytest.fixture
def atomic_items(monkeypatch: pytest.MonkeyPatch) -> AtomicItems:
    items = AtomicItems()
    items.install(monkeypatch)
    return items


@pytest.fixture
def aws_clients(atomic_items: AtomicItems) -> Iterator[tuple[DynamoDBClient, KMSClient, str]]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        kms = boto3.client("kms", region_name="us-east-1")
        dynamodb.create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        )
        key = kms.create_key(Description="cache")["KeyMetadata"]["Arn"]
        yield dynamodb, kms, key


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@contextmanager
def fake_deadline(clock: Clock, seconds: float) -> Iterator[None]:
    """A request deadline ``seconds`` from now on ``clock``: the time left shrinks only when the
    test moves the clock (the real one is ``time.monotonic``, which moves on a loaded machine)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(deadline, "time", SimpleNamespace(monotonic=clock))
        with deadline.scope(seconds):
            yield


Make = Callable[..., SharedTokens]


@pytest.fixture
def make(aws_clients: tuple[Any, Any, str], clock: Clock) -> Make:
    dynamodb, kms, key = aws_clients

    def _make(
        sharing: Sharing = "subject",
        *,
        sleep: Callable[[float], None] | None = None,
        wait: float = 3.0,
        key_id: str | None = None,
        table: str = TABLE,
    ) -> SharedTokens:
        return SharedTokens(
            SharedCacheSettings(table, key_id or key, sharing, wait_seconds=wait),
            dynamodb=dynamodb,
            kms=kms,
            clock=clock,
            sleep=sleep or (lambda seconds: setattr(clock, "now", clock.now + seconds)),
        )

    return _make


ISSUER = Issuer(name="github", url="https://token.actions.githubusercontent.com", audience="x")


def identity(subject: str = "repo:acme/app:ref:refs/heads/main") -> Identity:
    return Identity(ISSUER, subject, {"sub": subject}, token_sha256="0" * 64)


def grant(repository: str = "internal", duration: int = 3600) -> ResolvedGrant:
    return ResolvedGrant("ci", repository, "publish", ("acme-*",), duration)


class Mints:
    """A mint function that counts its calls (the AssumeRole + GetAuthorizationToken pair)."""

    def __init__(
        self, clock: Clock, *, lifetime: int = 3600, until: Callable[[], None] | None = None
    ) -> None:
        self.calls = 0
        self.clock = clock
        self.lifetime = lifetime
        self.until = until  # returns when the mint may finish (an event, not a delay)
        self.lock = threading.Lock()

    def __call__(self) -> MintedToken:
        with self.lock:
            self.calls += 1
            n = self.calls
        if self.until is not None:
            self.until()
        return MintedToken(
            token=f"{SECRET}-{n}",
            expires_at=datetime.fromtimestamp(self.clock.now + self.lifetime, UTC),
            endpoint="https://acme-111122223333.d.codeartifact.us-east-1.amazonaws.com/pypi/internal/",
            session=f"github.minter-{n}",
        )


def fresh_for(clock: Clock, duration: int = 3600) -> Callable[[MintedToken], bool]:
    return lambda minted: minted.expires_at.timestamp() - clock.now >= max(300, duration / 2)


def test_a_second_instance_gets_the_first_instances_token(make: Make, clock: Clock) -> None:
    one, two = make(), make()
    mint = Mints(clock)
    key = one.key(identity(), grant())
    first, source = one.get_or_mint(key, mint, fresh_for(clock))
    assert source == "minted"
    again, source = two.get_or_mint(key, mint, fresh_for(clock))
    assert source == "shared"
    assert again.token == first.token
    assert again.session == first.session == "github.minter-1"
    assert again.expires_at == first.expires_at.replace(microsecond=again.expires_at.microsecond)
    assert mint.calls == 1


def test_the_token_is_stored_encrypted_and_bound_to_its_item(
    make: Make, clock: Clock, aws_clients: tuple[Any, Any, str]
) -> None:
    dynamodb, _kms, _ = aws_clients
    cache = make()
    cache.get_or_mint(cache.key(identity(), grant()), Mints(clock), fresh_for(clock))
    items = dynamodb.scan(TableName=TABLE)["Items"]
    tokens = [item for item in items if item["pk"]["S"].startswith("token#")]
    assert len(tokens) == 1
    # only the ciphertext, its expiry and the TTL: endpoint and session are sealed with the token
    assert set(tokens[0]) == {"pk", "sealed", "expires_at", "ttl"}
    raw = repr(items).encode()
    assert SECRET.encode() not in raw
    assert SECRET.encode().hex().encode() not in raw
    assert identity().subject not in repr(items)  # the key is a digest
    # copied under another item's key, the ciphertext does not decrypt: no token is handed out
    other = cache.key(identity("repo:acme/other:ref:refs/heads/main"), grant())
    dynamodb.put_item(TableName=TABLE, Item={**tokens[0], "pk": {"S": f"token#{other}"}})
    mint = Mints(clock)
    found, source = make().get_or_mint(other, mint, fresh_for(clock))
    assert source == "minted"
    assert mint.calls == 1
    assert found.token == f"{SECRET}-1"


@pytest.mark.parametrize(
    ("sharing", "shared_between_subjects"), [("subject", False), ("grant", True)]
)
def test_sharing_per_subject_or_per_grant(
    make: Make, clock: Clock, sharing: Sharing, shared_between_subjects: bool
) -> None:
    one, two = make(sharing), make(sharing)
    mint = Mints(clock)
    alice, bob = identity("repo:acme/a:ref:refs/heads/main"), identity("repo:acme/b:x")
    one.get_or_mint(one.key(alice, grant()), mint, fresh_for(clock))
    _, source = two.get_or_mint(two.key(bob, grant()), mint, fresh_for(clock))
    assert (source == "shared") is shared_between_subjects
    # another grant never shares, whatever the sharing
    _, source = two.get_or_mint(two.key(alice, grant("other")), mint, fresh_for(clock))
    assert source == "minted"
    _, source = two.get_or_mint(two.key(alice, grant(duration=7200)), mint, fresh_for(clock))
    assert source == "minted"


def test_a_token_not_fresh_enough_for_the_caller_is_replaced(make: Make, clock: Clock) -> None:
    one, two = make(), make()
    mint = Mints(clock)
    key = one.key(identity(), grant())
    one.get_or_mint(key, mint, fresh_for(clock))
    clock.now += 1900  # 1700 s left: less than half of 3600
    found, source = two.get_or_mint(key, mint, fresh_for(clock))
    assert source == "minted"
    assert found.token.endswith("-2")
    _, source = one.get_or_mint(key, mint, fresh_for(clock))
    assert source == "shared"  # the replacement is what the table now holds


def test_an_expired_item_is_never_handed_out(make: Make, clock: Clock) -> None:
    """DynamoDB's TTL deletes late: the reader checks expiry itself."""
    one = make()
    mint = Mints(clock, lifetime=900)
    key = one.key(identity(), grant())
    one.get_or_mint(key, mint, lambda _: True)
    clock.now += 901
    found, source = make().get_or_mint(key, mint, lambda _: True)
    assert source == "minted"
    assert found.token.endswith("-2")


def test_an_older_token_never_replaces_a_longer_lived_one(make: Make, clock: Clock) -> None:
    cache = make()
    key = cache.key(identity(), grant())
    cache.get_or_mint(key, Mints(clock, lifetime=7200), fresh_for(clock))
    # a caller wanting more than what is there mints a shorter-lived token: the table keeps
    # the longer one
    cache.get_or_mint(key, Mints(clock, lifetime=3600), lambda _: False)
    found, source = make().get_or_mint(key, Mints(clock), fresh_for(clock))
    assert source == "shared"
    assert found.expires_at.timestamp() == pytest.approx(clock.now + 7200, abs=1)


def test_concurrent_misses_on_many_instances_mint_once(make: Make, clock: Clock) -> None:
    """Eight instances miss at once: one takes the lease and mints, the seven others wait.

    Nothing here depends on speed. The clock stands still, so no waiter's budget runs out and
    no lease lapses however slow the machine; the mint finishes only once the seven others have
    each found the lease taken, so every run exercises the waiting (never a lucky order in which
    the instances simply ran one after another).
    """
    instances = [make(sleep=time.sleep) for _ in range(8)]
    refused: set[int] = set()
    turned_away = threading.Condition()

    def count_refusals(index: int, cache: SharedTokens) -> None:
        take = cache._lease

        def lease(key: str, lease: str) -> bool:
            if take(key, lease):
                return True
            with turned_away:
                refused.add(index)
                turned_away.notify_all()
            return False

        cache._lease = lease  # type: ignore[method-assign]

    for index, cache in enumerate(instances):
        count_refusals(index, cache)

    def all_others_waiting() -> None:
        with turned_away:
            turned_away.wait_for(lambda: len(refused) == len(instances) - 1, timeout=60)

    mint = Mints(clock, until=all_others_waiting)
    key = instances[0].key(identity(), grant())
    results: list[tuple[MintedToken, str]] = []
    start = threading.Barrier(len(instances))

    def run(cache: SharedTokens) -> None:
        start.wait()
        results.append(cache.get_or_mint(key, mint, fresh_for(clock)))

    threads = [threading.Thread(target=run, args=(c,), daemon=True) for c in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)  # a hang guard only: a correct run takes well under a second
    assert not any(thread.is_alive() for thread in threads)
    assert len(refused) == len(instances) - 1  # all seven did wait on the lease
    assert mint.calls == 1
    assert sorted(source for _, source in results) == ["minted"] + ["shared"] * 7
    assert {minted.token for minted, _ in results} == {f"{SECRET}-1"}


def test_instances_racing_for_the_lease_get_it_once(
    make: Make, clock: Clock, atomic_items: AtomicItems, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The single flight rests on DynamoDB's conditional write being atomic: of two instances
    putting the lease at once, one gets it. The first put is held between reading the item and
    writing it until the second has either finished (moto alone: both would get the lease) or
    had to wait its turn (as in DynamoDB, and here through :class:`AtomicItems`)."""
    one, two = make(), make()
    key = one.key(identity(), grant())
    moved = threading.Event()  # the second put finished, or is waiting its turn
    atomic_items.on_contention = moved.set
    paused: list[bool] = []
    read = Table.get_item

    def get_item(table: Table, *args: Any, **kwargs: Any) -> Any:
        current = read(table, *args, **kwargs)
        with atomic_items_guard:
            first = not paused
            paused.append(True)
        if first:
            assert moved.wait(timeout=60), "the second put neither finished nor waited"
        return current

    atomic_items_guard = threading.Lock()
    monkeypatch.setattr(Table, "get_item", get_item)
    taken: dict[str, bool] = {}

    def race(name: str, cache: SharedTokens) -> None:
        taken[name] = cache._lease(key, name)
        moved.set()

    threads = [
        threading.Thread(target=race, args=pair, daemon=True)
        for pair in [("one", one), ("two", two)]
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(taken.values()) == [False, True]


def test_a_waiter_gives_up_and_mints_when_the_minter_never_delivers(
    make: Make, clock: Clock
) -> None:
    dead = make()
    key = dead.key(identity(), grant())
    assert dead._lease(key, "dead")  # an instance took the lease, then died
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.now += seconds

    mint = Mints(clock)
    _found, source = make(sleep=sleep, wait=1.0).get_or_mint(key, mint, fresh_for(clock))
    assert source == "minted"
    assert mint.calls == 1
    assert 1.0 <= sum(sleeps) <= 1.3  # waited its budget, polling, then minted
    assert sleeps[:3] == [0.025, 0.05, 0.1]


def test_a_dead_minters_lease_lapses(make: Make, clock: Clock) -> None:
    dead = make()
    key = dead.key(identity(), grant())
    assert dead._lease(key, "dead")
    other = make()
    assert not other._lease(key, "other")
    assert dead._lease(key, "dead")  # a retried put of our own lease is still ours
    clock.now += 5.1
    assert other._lease(key, "other")


def test_a_failed_mint_releases_the_lease(make: Make, clock: Clock) -> None:
    one = make()
    key = one.key(identity(), grant())

    def failing() -> MintedToken:
        raise ServiceUnavailable("codeartifact:GetAuthorizationToken is throttled", 2)

    with pytest.raises(ServiceUnavailable):
        one.get_or_mint(key, failing, fresh_for(clock))
    assert make()._lease(key, "next")  # at once, without waiting for it to lapse


def test_the_wait_is_bounded_by_the_request_deadline(make: Make, clock: Clock) -> None:
    dead = make()
    key = dead.key(identity(), grant())
    assert dead._lease(key, "dead")
    waited: list[float] = []

    def sleep(seconds: float) -> None:
        waited.append(seconds)
        clock.now += seconds

    # on the fake clock: with the real one, a loaded machine could spend the half second
    # between here and the first look at the deadline, and the table would not be asked at all
    with fake_deadline(clock, 2.0):
        make(sleep=sleep, wait=3.0).get_or_mint(key, Mints(clock), fresh_for(clock))
    assert 0 < sum(waited) <= 1.2  # half the time left, so minting itself still fits
    assert sum(waited) >= 1.0  # and all of that half


def test_with_little_time_left_the_table_is_not_asked(
    make: Make, clock: Clock, aws_clients: tuple[Any, Any, str]
) -> None:
    dynamodb, _, _ = aws_clients
    cache = make()
    with deadline.scope(1.0):
        _, source = cache.get_or_mint(
            cache.key(identity(), grant()), Mints(clock), fresh_for(clock)
        )
    assert source == "minted"
    assert dynamodb.scan(TableName=TABLE)["Items"] == []


def test_without_dynamodb_every_instance_mints_for_itself(
    make: Make, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    cache = make(table="no-such-table")
    mint = Mints(clock)
    found, source = cache.get_or_mint(cache.key(identity(), grant()), mint, fresh_for(clock))
    assert source == "minted"
    assert mint.calls == 1
    assert found.token.startswith(SECRET)
    assert SECRET not in caplog.text


def test_without_kms_the_instance_mints_and_caches_nothing(
    make: Make, clock: Clock, aws_clients: tuple[Any, Any, str]
) -> None:
    dynamodb, _, key_id = aws_clients
    cache = make(key_id=key_id.rsplit("/", 1)[0] + "/00000000-0000-0000-0000-000000000000")
    mint = Mints(clock)
    key = cache.key(identity(), grant())
    _, source = cache.get_or_mint(key, mint, fresh_for(clock))
    assert source == "minted"
    assert not [i for i in dynamodb.scan(TableName=TABLE)["Items"] if "sealed" in i]
    assert cache._lease(key, "next")  # the lease was released although sharing failed


def test_a_deadline_problem_is_not_swallowed(make: Make, clock: Clock) -> None:
    """Only DynamoDB's and KMS's own failures fall back to minting; the deadline's 503 and
    bugs pass through."""
    cache = make()

    def out_of_time(**_: Any) -> None:
        raise ServiceUnavailable("out of time", 1)

    cache._dynamodb.meta.events.register("before-call.dynamodb.GetItem", out_of_time)
    try:
        with pytest.raises(ServiceUnavailable, match="out of time"):
            cache.get_or_mint(cache.key(identity(), grant()), Mints(clock), fresh_for(clock))
    finally:
        cache._dynamodb.meta.events.unregister("before-call.dynamodb.GetItem", out_of_time)


def test_the_minted_token_never_prints() -> None:
    minted = Mints(Clock())()
    assert SECRET not in repr(minted)
    assert SECRET not in str(minted)
    assert "session=github.minter-1" in repr(minted)


def test_keys_are_stable_and_distinct(make: Make) -> None:
    cache = make()
    a = cache.key(identity(), grant())
    assert a == make().key(identity(), grant())
    assert len({a, cache.key(identity("b"), grant()), make("grant").key(identity(), grant())}) == 3
    assert len(a) == 64
    other_stack = SharedCacheSettings(TABLE, "k", "subject", namespace=("arn:other-role",))
    assert SharedTokens(other_stack, dynamodb=None, kms=None).key(identity(), grant()) != a  # type: ignore[arg-type]


def test_a_token_delivered_while_taking_the_lease_is_not_minted_again(
    make: Make, clock: Clock
) -> None:
    """The waiter read a miss; the minter then wrote and released; the waiter's lease now
    succeeds, and it must read again rather than mint a second token."""
    minter, waiter = make(), make()
    key = waiter.key(identity(), grant())
    delivered = Mints(clock)()
    take = waiter._lease

    def lease_after_delivery(k: str, lease: str) -> bool:
        minter._write(k, delivered)
        return take(k, lease)

    waiter._lease = lease_after_delivery  # type: ignore[method-assign,assignment]
    mint = Mints(clock)
    found, source = waiter.get_or_mint(key, mint, fresh_for(clock))
    assert (source, mint.calls, found.token) == ("shared", 0, delivered.token)
    assert make()._lease(key, "next")  # released


def test_out_of_time_while_sharing_still_hands_out_the_token(make: Make, clock: Clock) -> None:
    cache = make()

    def out_of_time(**_: Any) -> None:
        raise ServiceUnavailable("out of time", 1)

    cache._kms.meta.events.register("before-call.kms.Encrypt", out_of_time)
    try:
        found, source = cache.get_or_mint(
            cache.key(identity(), grant()), Mints(clock), fresh_for(clock)
        )
    finally:
        cache._kms.meta.events.unregister("before-call.kms.Encrypt", out_of_time)
    assert source == "minted"
    assert found.token.startswith(SECRET)
    assert make()._lease(cache.key(identity(), grant()), "next")


def test_a_malformed_item_is_a_miss_not_a_failure(
    make: Make, clock: Clock, aws_clients: tuple[Any, Any, str]
) -> None:
    dynamodb, _, _ = aws_clients
    cache = make()
    key = cache.key(identity(), grant())
    dynamodb.put_item(
        TableName=TABLE,
        Item={"pk": {"S": f"token#{key}"}, "expires_at": {"N": str(clock.now + 3600)}},
    )
    mint = Mints(clock)
    _, source = cache.get_or_mint(key, mint, fresh_for(clock))
    assert source == "minted"
    assert mint.calls == 1
