"""The active-core lease: its pure timing rules, then contenders on a real nats-server (one node
and a 3-node cluster per module, own ports and temp dirs): one holder at a time, renew by
compare-and-set, expiry by TTL, release, a standby taking over, a named holder's key taken
over; and a shared bucket of one key per holder (the gateways' leases), read by others with
`key_held`."""

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import nats
import pytest
from nats.js import JetStreamContext

from cluster.nats import NatsCluster
from core.lease import SAFE_FRACTION, Lease, LeaseError, LeaseState, key_held

T = TypeVar("T")
TTL_S = 1.0  # short, so an expiry test waits about a second
POLL_S = 0.1
LONG_TTL_S = 30.0  # a term no loaded machine outlasts in a test that needs one running
_buckets = itertools.count(1)

# -- the pure rules ----------------------------------------------------------------------------


def test_a_new_contender_holds_nothing() -> None:
    state = LeaseState(10.0)
    assert not state.held(0.0)
    assert not state.renew_due(100.0)
    assert state.revision is None


def test_a_term_runs_from_when_the_write_was_sent() -> None:
    state = LeaseState(10.0)
    state.won(revision=1, sent_at=100.0)
    assert state.held(100.0)
    assert not state.renew_due(100.9)
    assert state.renew_due(101.0)  # a tenth of the TTL in
    assert state.held(100.0 + 10.0 * SAFE_FRACTION - 0.001)
    assert not state.held(100.0 + 10.0 * SAFE_FRACTION)  # before the server can expire it


def test_a_renewal_starts_a_new_term_and_a_refusal_ends_it() -> None:
    state = LeaseState(10.0)
    state.won(1, 100.0)
    state.won(2, 105.0)
    assert state.held(112.0)
    assert state.revision == 2
    state.lost()
    assert not state.held(105.0)
    assert state.revision is None


def test_a_revision_never_goes_back() -> None:
    state = LeaseState(10.0)
    state.won(5, 0.0)
    with pytest.raises(AssertionError, match="revision 5 after 5"):
        state.won(5, 1.0)


def test_a_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError, match="TTL"):
        LeaseState(0)


# -- on a real server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path_factory.mktemp("nats1"), size=1) as started:
        yield started


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path_factory.mktemp("nats3"), size=3) as started:
        yield started


def with_jetstream(servers: NatsCluster, scenario: Callable[[JetStreamContext], Awaitable[T]]) -> T:
    """Run `scenario(js)` on a fresh connection, bounded in time."""

    async def main() -> T:
        client = await nats.connect(servers.urls)
        try:
            return await asyncio.wait_for(scenario(client.jetstream()), 30)
        finally:
            await client.close()

    return asyncio.run(main())


async def contenders(
    js: JetStreamContext,
    count: int,
    replicas: int = 1,
    bucket: str | None = None,
    ttl_s: float = TTL_S,
) -> list[Lease]:
    bucket = bucket or f"lease_{next(_buckets)}"
    return [
        await Lease.open(js, f"core-{index}", bucket=bucket, ttl_s=ttl_s, replicas=replicas)
        for index in range(count)
    ]


async def renewed_unanswered(lease: Lease) -> None:
    """A renewal of `lease` that NATS stores but whose answer never comes (a 1 s request
    timeout on a loaded machine): unconfirmed, so the old term still runs, at its revision."""
    stored = lease.js.publish

    async def stored_unanswered(*args: Any, **kwargs: Any) -> Any:
        await stored(*args, **kwargs)
        raise nats.errors.TimeoutError

    lease.js.publish = stored_unanswered  # type: ignore[method-assign]
    revision = lease.state.revision
    try:
        assert await lease.renew(), "unconfirmed: the old term still runs"
    finally:
        lease.js.publish = stored  # type: ignore[method-assign]
    assert lease.state.revision == revision


async def until_acquired(lease: Lease, tries: int = 50) -> int:
    """Try every `POLL_S` until `lease` holds; how many tries it took (bounded)."""
    for attempt in range(1, tries + 1):
        if await lease.try_acquire():
            return attempt
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"{lease.holder} never acquired the lease")


def test_one_holder_at_a_time_and_renewal_keeps_it(node: NatsCluster) -> None:
    async def scenario(js: JetStreamContext) -> None:
        active, standby = await contenders(js, 2)
        assert await active.try_acquire()
        assert not await standby.try_acquire()
        for _ in range(8):  # renewals across two TTLs keep it; the standby keeps failing
            await asyncio.sleep(TTL_S / 4)  # well inside the TTL, even on a loaded machine
            assert await active.renew()
            assert not await standby.try_acquire()
        assert active.held() and not standby.held()
        assert await standby.holder_now() == "core-0"

    with_jetstream(node, scenario)


def test_a_renewal_with_a_stale_revision_is_refused(node: NatsCluster) -> None:
    async def scenario(js: JetStreamContext) -> None:
        active, impostor = await contenders(js, 2)
        assert await active.try_acquire()
        stale = active.state.revision
        assert await active.renew()
        assert stale is not None
        impostor.state.won(stale, time.monotonic())  # it claims the old revision
        assert not await impostor.renew()
        assert not impostor.held()
        assert await active.renew()

    with_jetstream(node, scenario)


def test_an_unrenewed_lease_expires_and_a_standby_takes_it(node: NatsCluster) -> None:
    async def scenario(js: JetStreamContext) -> None:
        active, standby = await contenders(js, 2)
        assert await active.try_acquire()
        await until_acquired(standby)  # the active stopped renewing: the TTL frees the key
        assert standby.held()
        assert not active.held()  # its own clock ended its term first
        assert not await active.renew()  # and the bucket confirms it is over
        assert await standby.holder_now() == "core-1"

    with_jetstream(node, scenario)


def test_a_released_lease_is_taken_at_once(node: NatsCluster) -> None:
    async def scenario(js: JetStreamContext) -> None:
        active, standby = await contenders(js, 2)
        assert await active.try_acquire()
        await active.release()
        assert not active.held()
        assert await standby.try_acquire()  # no TTL to wait for
        assert not await active.try_acquire()

    with_jetstream(node, scenario)


def test_a_release_after_a_renewal_stored_but_unanswered_frees_the_lease_at_once(
    node: NatsCluster,
) -> None:
    """A renewal lands but its answer never comes (a timeout on a loaded machine, or a clean
    stop's cancel of the keeper between the write and its answer): the release's delete,
    expecting the revision before it, was refused, and the lease stayed held a whole TTL by a
    holder that had stopped, so the next venue on the stream was refused at its start. The
    release deletes its own write that moved the key on; another's it leaves alone."""

    async def scenario(js: JetStreamContext) -> None:
        active, standby = await contenders(js, 2, ttl_s=LONG_TTL_S)  # in term till the release
        assert await active.try_acquire()
        await renewed_unanswered(active)
        await active.release()
        assert not active.held()
        assert await standby.try_acquire(), "released: no TTL to wait for"
        await standby.release()
        # a holder whose write was written over (taken over, here by hand) deletes nothing
        assert await active.try_acquire()
        await standby.kv.put(standby.key, b"core-1")
        await active.release()
        assert await active.holder_now() == "core-1"

    with_jetstream(node, scenario)


def test_a_release_after_its_term_leaves_a_same_named_successor_s_key_alone(
    node: NatsCluster,
) -> None:
    """Names need not be unique (two cores started without --name are both "core"): a holder
    frozen past its term, whose key expired and was taken by another of its name, deletes
    nothing when it is stopped. Before, its refused delete was retried over the last write
    bearing its name, the successor's live key, and a third contender took it beside it."""

    async def scenario(js: JetStreamContext) -> None:
        bucket = f"lease_{next(_buckets)}"
        frozen, successor, third = [
            await Lease.open(js, "core", bucket=bucket, ttl_s=TTL_S, replicas=1) for _ in range(3)
        ]
        assert await frozen.try_acquire()
        await until_acquired(successor)  # the frozen one stopped renewing: the TTL freed it
        await frozen.release()
        assert await successor.holder_now() == "core"
        assert not await third.try_acquire(), "the successor's key was deleted"
        assert await successor.renew() and successor.held()

    with_jetstream(node, scenario)


async def acquired_unanswered(lease: Lease) -> None:
    """An acquire of `lease` that NATS stores but whose answer never comes: not held."""
    stored = lease.js.publish

    async def stored_unanswered(*args: Any, **kwargs: Any) -> Any:
        await stored(*args, **kwargs)
        raise nats.errors.TimeoutError

    lease.js.publish = stored_unanswered  # type: ignore[method-assign]
    try:
        assert not await lease.try_acquire(), "unconfirmed: not held"
    finally:
        lease.js.publish = stored  # type: ignore[method-assign]
    assert await lease.holder_now() == lease.holder, "stored all the same"


def test_an_acquire_stored_but_unanswered_is_held_at_the_next_try(node: NatsCluster) -> None:
    """An acquire lands but its answer never comes (1 s of request timeout on a loaded
    machine): the next try finds the key's last write ours (our token) and holds from it.
    Before, it saw the key held, by its own name: a venue waited a TTL for it to expire ("held
    under this venue's name ... waiting for it to expire"), a core stood by as a standby."""

    async def scenario(js: JetStreamContext) -> None:
        active, other = await contenders(js, 2, ttl_s=LONG_TTL_S)
        await acquired_unanswered(active)
        assert not await other.try_acquire()
        assert await active.try_acquire(), "its own stored write: held"
        assert active.held()
        assert await active.renew()
        assert not await other.try_acquire()
        await active.release()
        assert await other.try_acquire(), "released at once"

    with_jetstream(node, scenario)


def test_a_release_after_an_acquire_stored_but_unanswered_frees_the_lease_at_once(
    node: NatsCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """A start refused after its acquire went unanswered gives the lease back: its write,
    landed, is deleted; before, it held the key a TTL under a run that had stopped. The log
    says it gives it back (not that it holds it)."""

    async def scenario(js: JetStreamContext) -> None:
        refused, other = await contenders(js, 2, ttl_s=LONG_TTL_S)
        await acquired_unanswered(refused)
        with caplog.at_level(logging.INFO, logger="venue.cluster"):
            await refused.release()
        assert await other.try_acquire(), "given back at once"

    with_jetstream(node, scenario)
    assert "giving back the lease our write whose answer never came took" in caplog.text
    assert "holding the lease" not in caplog.text, caplog.text


async def unanswered(
    lease: Lease,
    write: Callable[[], Awaitable[bool]],
    stored: bool,
    waited: Callable[[], None] = lambda: None,
) -> None:
    """`write` (an acquire or take-over of `lease`) left unanswered: NATS stores it or not;
    `waited` is called as the request's timeout passes (a fake clock moved by it)."""
    publish = lease.js.publish

    async def timed_out(*args: Any, **kwargs: Any) -> Any:
        if stored:
            await publish(*args, **kwargs)
        waited()
        raise nats.errors.TimeoutError

    lease.js.publish = timed_out  # type: ignore[method-assign]
    try:
        assert not await write(), "unconfirmed: not held"
    finally:
        lease.js.publish = publish  # type: ignore[method-assign]


class FakeClock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_term_held_from_an_unanswered_acquire_counts_from_when_it_was_sent(
    node: NatsCluster,
) -> None:
    """The term adopted is counted from the unanswered write's sending, not from the try that
    found it stored: the server's TTL ran from the storing, which was no sooner."""

    async def scenario(js: JetStreamContext) -> None:
        (active,) = await contenders(js, 1, ttl_s=LONG_TTL_S)
        active._clock = clock = FakeClock()
        sent_at = clock.now

        def timeout_passes() -> None:  # a term counted from the timeout would start 1 s late
            clock.now += 1.0

        await unanswered(active, active.try_acquire, stored=True, waited=timeout_passes)
        clock.now += 2.0
        assert await active.try_acquire()
        assert active.state.term is not None and active.state.term.sent_at == sent_at
        clock.now = sent_at + LONG_TTL_S * SAFE_FRACTION
        assert not active.held(), "its term ends 0.8 TTL after the unanswered write was sent"

    with_jetstream(node, scenario)


def test_an_unanswered_acquire_is_not_held_from_once_its_term_would_be_over(
    node: NatsCluster,
) -> None:
    """Past 0.8 TTL of the unanswered write's sending, a term from it would be over: the next
    try does not hold from it (the key expires by its TTL as before)."""

    async def scenario(js: JetStreamContext) -> None:
        (active,) = await contenders(js, 1, ttl_s=LONG_TTL_S)
        active._clock = clock = FakeClock()
        await unanswered(active, active.try_acquire, stored=True)
        clock.now += LONG_TTL_S * SAFE_FRACTION
        assert not await active.try_acquire(), "a term over is not held"
        assert not active.held()

    with_jetstream(node, scenario)


def test_a_take_over_stored_but_unanswered_is_held_at_the_next_try(node: NatsCluster) -> None:
    async def scenario(js: JetStreamContext) -> None:
        old, restarted, other = await contenders(js, 3, ttl_s=LONG_TTL_S)
        assert await old.try_acquire()
        await unanswered(restarted, lambda: restarted.take_over(old.holder), stored=True)
        assert await restarted.holder_now() == restarted.holder, "stored all the same"
        assert await restarted.try_acquire(), "its own stored take-over: held"
        assert not await other.try_acquire()
        await restarted.release()
        assert await other.try_acquire(), "released at once"

    with_jetstream(node, scenario)


def test_a_namesake_whose_own_acquire_was_never_stored_does_not_hold_another_s_write(
    node: NatsCluster,
) -> None:
    """Two contenders of one name (two cores started without --name): the one whose acquire
    went unanswered, never stored, finds the key held by the other's write (its name, not its
    token) and does not hold from it."""

    async def scenario(js: JetStreamContext) -> None:
        bucket = f"lease_{next(_buckets)}"
        first, namesake = [
            await Lease.open(js, "core", bucket=bucket, ttl_s=LONG_TTL_S) for _ in range(2)
        ]
        await unanswered(namesake, namesake.try_acquire, stored=False)
        assert await first.try_acquire()
        assert not await namesake.try_acquire(), "its namesake's write is not its own"
        assert not namesake.held()
        assert await first.renew()

    with_jetstream(node, scenario)


def test_an_unanswered_take_over_does_not_hold_from_our_own_write_stored_before_it(
    node: NatsCluster,
) -> None:
    """Only a write stored after the unanswered one's expected revision can be it: our older
    write still on the key (a term given up while it stayed) is not held from."""

    async def scenario(js: JetStreamContext) -> None:
        (active,) = await contenders(js, 1, ttl_s=LONG_TTL_S)
        assert await active.try_acquire()
        active.state.lost()  # its term given up; its write stays on the key
        await unanswered(active, lambda: active.take_over(active.holder), stored=False)
        assert not await active.try_acquire(), "the older write is not the unanswered one"
        assert not active.held()

    with_jetstream(node, scenario)


def test_a_renewal_refused_by_our_own_stored_unanswered_renewal_keeps_the_term(
    node: NatsCluster,
) -> None:
    """A renewal lands but its answer never comes (1 s of request timeout on a loaded
    machine): the next one, refused because the key moved on, finds that write ours (it
    carries our token, `Lease.writer`, and is the key's last) and renews from it.
    Before, the term ended, and a core or venue exited mid-run holding the key a TTL."""

    async def scenario(js: JetStreamContext) -> None:
        active, standby = await contenders(js, 2, ttl_s=LONG_TTL_S)  # in term throughout
        assert await active.try_acquire()
        first = active.state.revision
        await renewed_unanswered(active)
        assert await active.renew(), "refused by our own stored write: adopted, then renewed"
        assert active.held() and active.state.revision is not None
        assert first is not None and active.state.revision > first
        assert not await standby.try_acquire()
        assert await active.renew()

    with_jetstream(node, scenario)


def test_a_renewal_after_its_term_does_not_adopt_a_same_named_successor_s_write(
    node: NatsCluster,
) -> None:
    """A holder frozen past its term, whose key another of its name took after the TTL: its
    renewal is refused and its term over, the successor's write not taken for its own."""

    async def scenario(js: JetStreamContext) -> None:
        bucket = f"lease_{next(_buckets)}"
        frozen, successor = [
            await Lease.open(js, "core", bucket=bucket, ttl_s=TTL_S, replicas=1) for _ in range(2)
        ]
        assert await frozen.try_acquire()
        await until_acquired(successor)
        assert not await frozen.renew() and not frozen.held()
        assert await successor.renew() and successor.held()

    with_jetstream(node, scenario)


@pytest.mark.parametrize("shared", [False, True])
def test_a_same_named_holder_after_a_delete_by_hand_keeps_the_lease_alone(
    node: NatsCluster, shared: bool
) -> None:
    """An operator deletes the key (`nats kv del`) while A holds it, and B, of A's name, takes
    it: A's next renewal is refused and its term ends, B's write not taken for A's own; B keeps
    the lease, and A's release leaves it. Before, A (still in term) adopted B's write and B
    adopted A's: both held "core", renewing over each other round after round."""

    async def scenario(js: JetStreamContext) -> None:
        bucket = f"lease_{next(_buckets)}"
        a, b = [
            await Lease.open(js, "core", bucket=bucket, ttl_s=LONG_TTL_S, key="core", shared=shared)
            for _ in range(2)
        ]
        assert await a.try_acquire()
        await a.kv.delete("core")  # by hand
        assert await b.try_acquire()
        assert not await a.renew() and not a.held()
        for _ in range(3):
            assert await b.renew() and b.held()
            assert not await a.try_acquire() and not a.held()
        await a.release()
        assert await b.renew() and b.held() and await b.holder_now() == "core"

    with_jetstream(node, scenario)


def test_a_holder_whose_clock_stood_still_past_the_ttl_leaves_a_same_named_successor_alone(
    node: NatsCluster,
) -> None:
    """A's machine suspended past the TTL (CLOCK_MONOTONIC does not count a suspend): NATS
    expires the key and B, of A's name, takes it, while A's clock says its term still runs.
    A's next renewal is refused and its term ends; B keeps the lease. Before, A took B's write
    for its own (read "within its term") and both renewed over each other."""

    async def scenario(js: JetStreamContext) -> None:
        bucket = f"lease_{next(_buckets)}"
        a, b = [
            await Lease.open(js, "core", bucket=bucket, ttl_s=TTL_S, replicas=1) for _ in range(2)
        ]
        suspended = 0.0
        a._clock = lambda: time.monotonic() - suspended
        assert await a.try_acquire()
        start = time.monotonic()
        await until_acquired(b)  # A asleep meanwhile
        suspended = time.monotonic() - start  # resumed: its clock did not advance
        assert a.held(), "A's clock says its term runs"
        assert not await a.renew() and not a.held()
        assert await b.renew() and b.held()
        assert not await a.try_acquire()
        assert await b.renew() and b.held()

    with_jetstream(node, scenario)


def test_a_refused_renewal_whose_follow_up_read_fails_ends_the_term(
    node: NatsCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The renewal is refused, and the read of the key's last write (to tell our own stored
    unanswered write from another's) is not answered: unknown is not ours, so the term ends
    and the error is raised (`attempt` logs it). Before, the term ran on."""
    import core.lease as lease_module

    async def scenario(js: JetStreamContext) -> None:
        active, other = await contenders(js, 2, ttl_s=LONG_TTL_S)
        assert await active.try_acquire()
        await other.kv.put(other.key, b"core-1")  # the key moved on: the renewal is refused

        async def unanswered(*args: Any, **kwargs: Any) -> Any:
            raise nats.errors.TimeoutError

        monkeypatch.setattr(lease_module, "_last_write", unanswered)
        with pytest.raises(nats.errors.TimeoutError):
            await active.renew()
        assert not active.held() and active.state.term is None

    with_jetstream(node, scenario)


def test_a_stop_canceling_the_read_after_a_refusal_still_frees_the_lease(
    node: NatsCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A renewal lands unanswered; the next, refused by it, is canceled by a stop while it
    reads the key's last write: the term is left to the release, which deletes that write of
    ours (told by our token), so a standby takes the lease at once. Before (session 36's
    review), the cancel ended the term and the release deleted nothing: the key held a TTL."""
    import core.lease as lease_module

    async def scenario(js: JetStreamContext) -> None:
        active, standby = await contenders(js, 2, ttl_s=LONG_TTL_S)
        assert await active.try_acquire()
        await renewed_unanswered(active)
        reading = asyncio.Event()
        last_write = lease_module._last_write

        async def read_held(*args: Any, **kwargs: Any) -> Any:
            reading.set()
            await asyncio.sleep(LONG_TTL_S)  # a read that lasts till the stop cancels it
            return await last_write(*args, **kwargs)

        monkeypatch.setattr(lease_module, "_last_write", read_held)
        renewal = asyncio.create_task(active.renew())
        await asyncio.wait_for(reading.wait(), 5)
        renewal.cancel()
        with pytest.raises(asyncio.CancelledError):
            await renewal
        monkeypatch.setattr(lease_module, "_last_write", last_write)
        await active.release()
        assert await standby.try_acquire(), "our own unanswered write was left holding the key"

    with_jetstream(node, scenario)


def test_in_a_shared_bucket_a_refusal_whose_follow_up_read_fails_keeps_the_term(
    node: NatsCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gateway's key is its own (a per-run id): a renewal refused by its own unanswered
    write, whose read of the key is not answered either, keeps the term (its clock ends it),
    and the next renewal reads again and renews. Ending it closed every session of the
    gateway, and its own write held the key from it a TTL (session 36's review)."""
    import core.lease as lease_module

    async def scenario(js: JetStreamContext) -> None:
        _, (a,) = await holders(js, ["gw-a.1"])
        assert await a.try_acquire()
        await renewed_unanswered(a)
        last_write = lease_module._last_write

        async def unanswered(*args: Any, **kwargs: Any) -> Any:
            raise nats.errors.TimeoutError

        monkeypatch.setattr(lease_module, "_last_write", unanswered)
        with pytest.raises(nats.errors.TimeoutError):
            await a.renew()
        assert a.held(), "the term of a key nobody else writes ended on a read not answered"
        monkeypatch.setattr(lease_module, "_last_write", last_write)
        assert await a.renew() and a.held()

    with_jetstream(node, scenario)


def test_a_take_over_writes_over_only_the_named_holders_last_write(node: NatsCluster) -> None:
    """`take_over` names the holder it knows stopped: a key held by anyone else is left, and
    the taken one's holder finds its next renewal refused (the key moved on)."""

    async def scenario(js: JetStreamContext) -> None:
        old, other, restarted = await contenders(js, 3)
        assert await old.try_acquire()
        assert not await restarted.take_over("core-1")  # not who holds it
        assert await restarted.holder_now() == "core-0"
        assert await restarted.take_over("core-0")
        assert restarted.held() and await restarted.holder_now() == "core-2"
        assert not await old.renew()  # had it been alive, told at its next renewal
        assert not await other.try_acquire()
        assert await restarted.renew()  # a held term renews as usual
        await restarted.release()
        assert not await other.take_over("core-2")  # released: free, `try_acquire`'s

    with_jetstream(node, scenario)


def test_a_bucket_with_another_ttl_is_refused(node: NatsCluster) -> None:
    async def scenario(js: JetStreamContext) -> None:
        await Lease.open(js, "a", bucket="lease_ttl", ttl_s=TTL_S)
        with pytest.raises(LeaseError, match=r"expires keys after 1\.0 s, not the lease's 2\.0 s"):
            await Lease.open(js, "b", bucket="lease_ttl", ttl_s=2.0)

    with_jetstream(node, scenario)


def test_on_three_nodes_racing_contenders_get_one_holder_each_round(cluster: NatsCluster) -> None:
    """Five cores race for an R=3 lease, then again after it expires: one winner per round."""

    async def scenario(js: JetStreamContext) -> list[int]:
        leases = await contenders(js, 5, replicas=3)
        winners = []
        for _ in range(2):
            won = await asyncio.gather(*(lease.try_acquire() for lease in leases))
            assert won.count(True) == 1
            winner = won.index(True)
            assert [lease.held() for lease in leases].count(True) == 1
            winners.append(winner)
            loser = leases[(winner + 1) % 5]
            await until_acquired(loser)  # after the TTL, as the winner does not renew
            assert not leases[winner].held()
            await loser.release()
        return winners

    with_jetstream(cluster, scenario)


def test_on_three_nodes_concurrent_renewals_of_one_revision_have_one_winner(
    cluster: NatsCluster,
) -> None:
    """Five contenders all claim the holder's revision and renew at once, ten rounds: one wins
    each. (kv.update's per-key check let 3 to 5 win on nats-server 2.9.10: issue 4320.)"""

    async def scenario(js: JetStreamContext) -> None:
        leases = await contenders(js, 5, replicas=3)
        assert await leases[0].try_acquire()
        holder = leases[0]
        for _ in range(10):
            revision = holder.state.revision
            assert revision is not None
            for lease in leases:
                if lease is not holder:
                    lease.state.won(revision, time.monotonic())
            renewed = await asyncio.gather(*(lease.renew() for lease in leases))
            assert renewed.count(True) == 1
            holder = leases[renewed.index(True)]
            assert [lease.state.revision is not None for lease in leases].count(True) == 1

    with_jetstream(cluster, scenario)


def bucket_replicas(js: JetStreamContext, bucket: str) -> Awaitable[int]:
    async def read() -> int:
        info = await js.stream_info(f"KV_{bucket}")
        return info.config.num_replicas or 1

    return read()


def test_the_bucket_has_the_cluster_s_replicas_by_default(
    node: NatsCluster, cluster: NatsCluster
) -> None:
    async def open_default(js: JetStreamContext) -> int:
        bucket = f"lease_{next(_buckets)}"
        await Lease.open(js, "core", bucket=bucket, ttl_s=TTL_S)
        return await bucket_replicas(js, bucket)

    assert with_jetstream(node, open_default) == 1
    assert with_jetstream(cluster, open_default) == 3


# -- a shared bucket: one key per holder (the gateways') --------------------------------------


async def holders(js: JetStreamContext, names: list[str]) -> tuple[str, list[Lease]]:
    bucket = f"gateways_{next(_buckets)}"
    return bucket, [
        await Lease.open(js, name, bucket=bucket, ttl_s=TTL_S, key=name, shared=True)
        for name in names
    ]


def test_in_a_shared_bucket_each_holder_holds_and_renews_its_own_key(node: NatsCluster) -> None:
    """With the whole-stream check, a renewal would be refused once another key was written."""

    async def scenario(js: JetStreamContext) -> None:
        bucket, (a, b) = await holders(js, ["gw-a.1", "gw-b.2"])
        assert not await key_held(js, bucket, "gw-a.1")  # never written
        assert await a.try_acquire()
        assert await b.try_acquire()
        for _ in range(4):
            await asyncio.sleep(TTL_S / 4)
            assert await a.renew()
            assert await b.renew()
        assert a.held() and b.held()
        assert await key_held(js, bucket, "gw-a.1") and await key_held(js, bucket, "gw-b.2")

    with_jetstream(node, scenario)


def test_in_a_shared_bucket_an_unrenewed_key_expires_while_the_others_live(
    node: NatsCluster,
) -> None:
    async def scenario(js: JetStreamContext) -> None:
        bucket, (dead, alive) = await holders(js, ["gw-a.1", "gw-b.2"])
        assert await dead.try_acquire()
        assert await alive.try_acquire()
        for _ in range(50):  # the dead one stops renewing: the TTL removes its key
            await asyncio.sleep(POLL_S)
            if alive.state.renew_due(time.monotonic()):
                assert await alive.renew()
            if not await key_held(js, bucket, "gw-a.1"):
                break
        else:
            raise AssertionError("the unrenewed key never expired")
        assert await key_held(js, bucket, "gw-b.2")
        assert not await dead.renew()  # the bucket confirms its term is over
        assert await until_acquired(dead) >= 1  # and it can hold it again (key absent)
        assert await key_held(js, bucket, "gw-a.1")

    with_jetstream(node, scenario)


def test_in_a_shared_bucket_a_released_key_is_unheld_at_once_and_can_be_held_again(
    node: NatsCluster,
) -> None:
    async def scenario(js: JetStreamContext) -> None:
        bucket, (a, b) = await holders(js, ["gw-a.1", "gw-b.2"])
        assert await a.try_acquire()
        assert await b.try_acquire()
        await a.release()
        assert not await key_held(js, bucket, "gw-a.1")  # a delete marker, not a holder
        assert await key_held(js, bucket, "gw-b.2")
        assert await a.try_acquire()  # over its own delete marker
        assert await key_held(js, bucket, "gw-a.1")

    with_jetstream(node, scenario)


def test_in_a_shared_bucket_a_renewal_stored_but_unanswered_does_not_end_the_term(
    node: NatsCluster,
) -> None:
    """The renewal lands but its answer never comes: the next one, refused because the key
    moved on (by our own write: nobody else writes it), takes that write's revision and
    renews, so a live gateway does not drop its sessions over one late answer."""

    async def scenario(js: JetStreamContext) -> None:
        _, (a, b) = await holders(js, ["gw-a.1", "gw-b.2"])
        assert await a.try_acquire() and await b.try_acquire()
        first = a.state.revision
        await renewed_unanswered(a)
        assert await a.renew(), "refused by our own stored write: adopted, then renewed"
        assert a.held() and a.state.revision is not None and a.state.revision > first
        assert await b.renew(), "the other holder's key is untouched"
        # a key someone else's write moved on (here: deleted) still ends the term
        await b.kv.delete("gw-a.1")
        assert not await a.renew() and not a.held()

    with_jetstream(node, scenario)


@pytest.mark.parametrize("cancels", [1, 2])
def test_a_lease_write_runs_to_its_end_however_often_its_caller_is_canceled(cancels: int) -> None:
    """`ThreadLease._to_the_end`: a write that may take the lease is not cut off on the lease's
    thread by a canceled caller (a stop racing the take), nor by a second cancel while it is
    waited for (review of session 29: the second one cut it off); the cancel is raised once
    the write is done."""
    from core.lease_thread import ThreadLease

    async def scenario() -> list[str]:
        lease = ThreadLease(
            ["nats://127.0.0.1:1"],
            "holder",
            connect=lambda servers, name: None,  # type: ignore[arg-type,return-value]
            ttl_s=10,
            poll_s=1,
            request_timeout_s=1,
            on_lost=lambda error: None,
        )
        ended: list[str] = []

        async def write() -> None:  # on the lease's thread: the write, then its answer
            try:
                await asyncio.sleep(0.3)
                ended.append("answered")
            except asyncio.CancelledError:
                ended.append("cut off")
                raise

        task = asyncio.ensure_future(lease._to_the_end(write()))
        await asyncio.sleep(0.05)
        for _ in range(cancels):
            task.cancel()
            await asyncio.sleep(0.05)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
        await lease.release()
        return ended

    assert asyncio.run(scenario()) == ["answered"]
