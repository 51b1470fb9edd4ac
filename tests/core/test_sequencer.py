"""The sequencer: stamps, executes, group-commits, releases only durable outcomes, replays."""

import asyncio
import os
import subprocess
import sys
import threading
import time
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import msgspec
import pytest

from core import commit_watch
from core import sequencer as sequencer_module
from core.journal import EncodeInto, FileJournal, Sequenced
from core.sequencer import BATCH_COMMANDS_MAX, SWITCH_CLOCK_US, Executed, _batch_end
from engine.commands import (
    AmendPair,
    ArmDeadMan,
    CancelOrder,
    Command,
    ListInstrument,
    PlaceOrder,
)
from engine.enums import CancelReason, Side
from engine.events import CommandRejected, DeadManTriggered, OrderAccepted, TradeExecuted
from engine.venue import Venue
from tests.engine.conftest import SYMBOL, make_spec

Sequencer = sequencer_module.Sequencer  # every test runs with either commit (`commit_mode`)


@pytest.fixture(autouse=True, params=["on the journal's thread", "on the loop"])
def commit_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Each test twice: the journal's commit on its own thread, and on the loop."""
    on_loop = request.param == "on the loop"

    class InMode(sequencer_module.Sequencer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("commit_on_loop", on_loop)
            super().__init__(*args, **kwargs)

    monkeypatch.setitem(globals(), "Sequencer", InMode)
    return on_loop


class Clock:
    def __init__(self) -> None:
        self.now = 1_000

    def __call__(self) -> int:
        self.now += 5
        return self.now


def order(account: int, side: Side, price: int, qty: int = 10) -> PlaceOrder:
    return PlaceOrder(account=account, symbol=SYMBOL, side=side, price=price, qty=qty)


def test_outcomes_are_released_after_commit_in_order(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    released: list[list[Executed]] = []
    journal = FileJournal(path)

    def release(batch: list[Executed]) -> None:
        durable = [seq for seq, _ in journal.replay()]
        commands = [e for e in batch if e.command is not None]  # barriers have no seq
        assert all(e.seq in durable for e in commands), "released before it was durable"
        released.append(batch)

    async def session() -> Venue:
        venue = Venue()
        sequencer = Sequencer(venue, journal, Clock(), release)
        sequencer.submit(ListInstrument(spec=make_spec()), origin="list")
        first = [sequencer.submit(order(1, Side.SELL, 10_000 + i), origin=i) for i in range(5)]
        assert not released, "nothing leaves before the turn's batch is on disk"
        await sequencer.drain()
        sequencer.submit(order(2, Side.BUY, 10_010, qty=50), origin="taker")
        sequencer.barrier("query")
        await sequencer.drain()
        assert [e.seq for e in first] == [2, 3, 4, 5, 6]
        sequencer.close()
        return venue

    venue = asyncio.run(session())
    flat = [e for batch in released for e in batch]
    assert flat[-1].origin == "query" and flat[-1].command is None
    flat = flat[:-1]
    assert [e.seq for e in flat] == list(range(1, 8))
    assert len(released[0]) == 6, "one loop turn, one batch, one fsync"
    stamps = [e.command.ts_us for e in flat if e.command is not None]
    assert stamps == sorted(stamps) and len(stamps) == 7
    taker = flat[-1]
    assert taker.origin == "taker" and isinstance(taker.events[0], OrderAccepted)
    assert sum(isinstance(e, TradeExecuted) for e in taker.events) == 5

    replayed = Venue()
    recovered = Sequencer(replayed, FileJournal(path), Clock(), lambda batch: None)
    assert recovered.recover() == 7 and recovered.last_seq == 7
    assert replayed.state_hash() == venue.state_hash()
    recovered.close()


def test_each_batch_is_fed_where_it_is_committed_then_released_on_the_loop_once(
    tmp_path: Path, commit_mode: bool
) -> None:
    """On the journal's thread: fed there, handed back to the loop once. On the loop: fed and
    released there, with no hand-off at all."""
    seen: list[tuple[str, int, str]] = []  # (where, first seq, thread)

    def fed(batch: list[Executed]) -> None:
        seen.append(("durable", batch[0].seq, threading.current_thread().name))

    def release(batch: list[Executed]) -> None:
        seen.append(("released", batch[0].seq, threading.current_thread().name))

    async def session() -> list[Any]:
        loop = asyncio.get_running_loop()
        handed_back: list[Any] = []
        original = loop.call_soon_threadsafe

        def counted(callback: Any, *args: Any, **kwargs: Any) -> Any:
            handed_back.append(callback)
            return original(callback, *args, **kwargs)

        def refused(*args: Any) -> Any:
            raise AssertionError("no executor round trip on the commit path")

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        loop.run_in_executor = refused  # type: ignore[method-assign]
        sequencer = Sequencer(Venue(), FileJournal(tmp_path / "j"), Clock(), release, fed)
        sequencer.submit(ListInstrument(spec=make_spec()), origin="list")
        for turn in range(6):
            for index in range(3):
                sequencer.submit(order(1, Side.SELL, 10_000 + index), origin=(turn, index))
            await asyncio.sleep(0.001)  # the next turn: a batch in flight, more pending
        await sequencer.drain()
        sequencer.close()
        return handed_back

    handed_back = asyncio.run(session())
    released = [entry for entry in seen if entry[0] == "released"]
    durable = [entry for entry in seen if entry[0] == "durable"]
    hand_offs = 0 if commit_mode else len(released)
    assert len(released) >= 2 and len(handed_back) == hand_offs, "one hand-off a batch, or none"
    assert [seq for _, seq, _ in durable] == [seq for _, seq, _ in released]
    committer = "MainThread" if commit_mode else "journal"
    assert {name for _, _, name in durable} == {committer}
    assert {name for _, _, name in released} == {"MainThread"}
    for index, entry in enumerate(seen):  # each batch is fed to the store before release
        if entry[0] == "released":
            assert ("durable", entry[1], committer) in seen[:index]


def test_the_running_loop_is_asked_of_asyncio_once_per_loop_not_per_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`asyncio.get_running_loop()` makes a getpid system call: the sequencer keeps the loop
    while it runs, and asks again on the next loop (a restart in the same process)."""
    asked: list[asyncio.AbstractEventLoop] = []
    original = asyncio.get_running_loop

    def counted() -> asyncio.AbstractEventLoop:
        asked.append(original())
        return asked[-1]

    released: list[list[Executed]] = []
    sequencer = Sequencer(Venue(), FileJournal(tmp_path / "j"), Clock(), released.append)

    async def busy(first_price: int) -> None:
        if sequencer.last_seq == 0:
            sequencer.submit(ListInstrument(spec=make_spec()), origin="list")
        for turn in range(6):
            for index in range(3):
                sequencer.submit(order(1, Side.SELL, first_price + index), origin=(turn, index))
            await asyncio.sleep(0.001)  # the next turn: a batch in flight, more pending
        await sequencer.drain()

    monkeypatch.setattr(asyncio, "get_running_loop", counted)
    asyncio.run(busy(10_000))
    asyncio.run(busy(10_100))
    sequencer.close()
    assert len(released) >= 4, "batches on each loop"
    assert len(asked) == 2 and asked[0] is not asked[1], "once per loop"


def test_a_barrier_with_nothing_in_flight_is_released_without_the_journal(
    tmp_path: Path,
) -> None:
    released: list[Any] = []

    async def session() -> int:
        loop = asyncio.get_running_loop()
        handed_back: list[Any] = []
        original = loop.call_soon_threadsafe

        def counted(callback: Any, *args: Any, **kwargs: Any) -> Any:
            handed_back.append(callback)
            return original(callback, *args, **kwargs)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        sequencer = Sequencer(Venue(), FileJournal(tmp_path / "j"), Clock(), released.append)
        sequencer.barrier("query")
        await sequencer.drain()
        sequencer.close()
        return len(handed_back)

    assert asyncio.run(session()) == 0  # everything before the query is durable already
    assert [[e.origin for e in batch] for batch in released] == [["query"]]


# On the loop no batch is in flight across turns: the barrier would go out alone.
@pytest.mark.parametrize("commit_mode", ["on the journal's thread"], indirect=True)
def test_drain_ends_when_a_barrier_behind_a_batch_in_flight_is_released(tmp_path: Path) -> None:
    released: list[Any] = []

    async def session() -> None:
        sequencer = Sequencer(Venue(), FileJournal(tmp_path / "j"), Clock(), released.append)
        sequencer.submit(ListInstrument(spec=make_spec()), origin="list")
        await asyncio.sleep(0)  # the end of the turn: the batch goes to the journal
        draining = asyncio.create_task(sequencer.drain())
        await asyncio.sleep(0)  # drain waits for the batch in flight
        sequencer.barrier("query")  # released on its own once that batch is back
        await asyncio.wait_for(draining, 10)
        sequencer.close()

    asyncio.run(session())
    assert [[e.origin for e in batch] for batch in released] == [["list"], ["query"]]


class SlowDisk(FileJournal):
    """A file journal whose commits take `slow_s` longer while `slow` is set: a slow disk."""

    def __init__(self, path: Path, slow_s: float) -> None:
        super().__init__(path)
        self.slow_s = slow_s
        self.slow = False

    def commit_commands(self, batch: Sequence[Sequenced], encode_into: EncodeInto) -> None:
        super().commit_commands(batch, encode_into)
        if self.slow:
            time.sleep(self.slow_s)


@pytest.fixture
def small_windows(monkeypatch: pytest.MonkeyPatch) -> int:
    """The slow-commit watch samples every second commit, 8 samples a window: 16 commits."""
    monkeypatch.setattr(commit_watch, "SAMPLE_EVERY", 2)
    monkeypatch.setattr(commit_watch, "WINDOW_SAMPLES", 8)
    return 16


@pytest.mark.parametrize("commit_mode", ["on the loop"], indirect=True)
def test_commits_that_hold_the_loop_too_long_move_to_the_journals_thread(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, small_windows: int
) -> None:
    """A window with a quarter of its samples slow stays on the loop; one with more than half
    slow moves the next commits to the journal's thread, for good, and says so."""
    window = small_windows
    journal = SlowDisk(tmp_path / "journal", slow_s=0.04)
    fed_on: list[str] = []  # the thread each batch was committed and fed on
    released: list[int] = []

    def fed(batch: list[Executed]) -> None:
        fed_on.append(threading.current_thread().name)

    async def session() -> tuple[Venue, list[bool]]:
        venue = Venue()
        sequencer = Sequencer(
            venue,
            journal,
            Clock(),
            lambda batch: released.extend(e.seq for e in batch),
            on_durable=fed,
            slow_commit_s=0.02,
        )
        sequencer.submit(ListInstrument(spec=make_spec()), origin="list")  # commit 1
        await sequencer.drain()
        on_loop = []
        for commit in range(2, 2 * window + 9):  # a commit each: two windows, then 8 more
            # the first window: commits 8 and 16 slow (2 of its 8 samples); then every one
            journal.slow = commit > window or commit % 8 == 0
            sequencer.submit(order(1, Side.SELL, 10_000 + commit, qty=1), origin=commit)
            await sequencer.drain()
            on_loop.append(sequencer.commit_on_loop)
        sequencer.close()
        return venue, on_loop

    with caplog.at_level("WARNING", logger="venue.sequencer"):
        venue, on_loop = asyncio.run(session())
    moved_after = on_loop.index(False) + 2  # the commit that ended the second window
    assert moved_after == 2 * window and not any(on_loop[moved_after - 2 :])
    assert fed_on[:moved_after] == ["MainThread"] * moved_after, "2 slow samples of 8 stay"
    assert fed_on[moved_after:] == ["journal"] * 8, "then on the thread, never back"
    assert released == list(range(1, 2 * window + 9)), "every command, durable, in order"
    warnings = [r.getMessage() for r in caplog.records if "journal's thread" in r.getMessage()]
    assert warnings == [
        f"most of the last {window} journal commits held the event loop longer than 20.0 ms,"
        " waiting for the disk (or the ledger store): committing on the journal's thread"
        " from now on (to start that way, set [venue] commit_on_loop = false)"
    ]
    replayed = Venue()
    recovered = Sequencer(replayed, FileJournal(tmp_path / "journal"), Clock(), lambda b: None)
    assert recovered.recover() == 2 * window + 8
    assert replayed.state_hash() == venue.state_hash()
    recovered.close()


@pytest.mark.parametrize("commit_mode", ["on the loop"], indirect=True)
def test_commits_slow_for_want_of_a_core_stay_on_the_loop(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    small_windows: int,
) -> None:
    """An overloaded machine, not the disk: the loop's thread waited for a core (its run
    delay) for all the time the commits took, so they stay on the loop, unannounced."""
    # every moment spent waiting for a core: the run delay grows with the clock
    monkeypatch.setattr(
        commit_watch.SlowCommitWatch, "run_delay_s", lambda self: time.perf_counter()
    )
    journal = SlowDisk(tmp_path / "journal", slow_s=0.04)
    journal.slow = True

    async def session() -> bool:
        sequencer = Sequencer(Venue(), journal, Clock(), lambda batch: None, slow_commit_s=0.02)
        sequencer.submit(ListInstrument(spec=make_spec()), origin="list")
        for i in range(2 * small_windows):
            sequencer.submit(order(1, Side.SELL, 10_000 + i, qty=1), origin=i)
            await sequencer.drain()
        sequencer.close()
        return sequencer.commit_on_loop

    with caplog.at_level("WARNING", logger="venue.sequencer"):
        assert asyncio.run(session()), "every commit was slow, but for the CPU: on the loop"
    assert not [r for r in caplog.records if "journal's thread" in r.getMessage()]


def test_the_run_delay_is_the_second_field_of_the_threads_schedstat_in_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stat = tmp_path / "schedstat"
    stat.write_text("123000000 4500000000 7\n")  # cpu ns, run delay ns, timeslices
    monkeypatch.setattr(commit_watch, "SCHEDSTAT", str(stat))
    watch = commit_watch.SlowCommitWatch()
    assert watch.run_delay_s() == 4.5
    watch.close()


def test_the_run_delay_is_read_for_the_reading_thread_even_after_its_opener_ended() -> None:
    """`/proc/thread-self` names the thread that opened it: a read from another thread, or
    after that thread has ended, opens it again rather than failing (or reading another's)."""
    watch = commit_watch.SlowCommitWatch()
    in_thread: list[float] = []
    opener = threading.Thread(target=lambda: in_thread.append(watch.run_delay_s()))
    opener.start()
    opener.join()
    first = watch.run_delay_s()  # its opener is gone
    busy_until = time.perf_counter() + 0.02
    while time.perf_counter() < busy_until:
        pass
    second = watch.run_delay_s()
    assert in_thread[0] >= 0 and 0 <= first <= second
    assert not watch._no_schedstat, "read here, not given up"
    watch.close()


def test_a_commit_that_takes_a_second_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sequencer_module, "LONG_COMMIT_S", 0.2)  # a second, scaled down
    journal = SlowDisk(tmp_path / "journal", slow_s=0.3)

    async def session() -> None:
        sequencer = Sequencer(Venue(), journal, Clock(), lambda batch: None)
        sequencer.submit(ListInstrument(spec=make_spec()), origin="list")
        await sequencer.drain()  # quick: not logged
        journal.slow = True
        sequencer.submit_all([order(1, Side.SELL, 10_000), order(1, Side.SELL, 10_001)], "two")
        await sequencer.drain()
        sequencer.close()

    with caplog.at_level("WARNING", logger="venue.sequencer"):
        asyncio.run(session())
    logged = [r.getMessage() for r in caplog.records if "took" in r.getMessage()]
    assert len(logged) == 1 and logged[0].startswith("a journal commit of 2 commands took 0.")


def test_a_failed_commit_is_fatal_and_releases_nothing(tmp_path: Path) -> None:
    released: list[list[Executed]] = []
    fatal: list[BaseException | None] = []

    def broken(batch: list[Executed]) -> None:
        raise OSError("the store's queue is gone")

    async def session() -> None:
        journal = FileJournal(tmp_path / "j")
        sequencer = Sequencer(
            Venue(), journal, Clock(), released.append, broken, on_fatal=fatal.append
        )
        sequencer.submit(ListInstrument(spec=make_spec()), origin="list")
        with pytest.raises(OSError, match="queue is gone"):
            await sequencer.drain()
        sequencer.close()

    asyncio.run(session())
    assert not released and [str(f) for f in fatal] == ["the store's queue is gone"]


def test_a_failing_release_is_fatal_not_a_logged_callback_error(tmp_path: Path) -> None:
    fatal: list[BaseException | None] = []

    def broken_release(batch: list[Executed]) -> None:
        raise RuntimeError("a bug while answering")

    async def session() -> None:
        journal = FileJournal(tmp_path / "j")
        sequencer = Sequencer(Venue(), journal, Clock(), broken_release, on_fatal=fatal.append)
        sequencer.submit(ListInstrument(spec=make_spec()), origin="list")
        with pytest.raises(RuntimeError, match="a bug while answering"):
            await asyncio.wait_for(sequencer.drain(), 5)  # woken, not left spinning
        sequencer.close()

    asyncio.run(session())
    assert [str(f) for f in fatal] == ["a bug while answering"]


def test_a_batch_never_splits_the_commands_of_one_origin() -> None:
    # A notice announcing cancels is sent before them and only once all are durable, so
    # they must come back in one release even past BATCH_COMMANDS_MAX.
    group, other = object(), object()
    before = [Executed(seq, None, [], None) for seq in range(1, BATCH_COMMANDS_MAX)]
    grouped = [Executed(seq, None, [], group) for seq in range(5)]
    after = [Executed(0, None, [], other)]
    assert _batch_end(before + grouped + after) == len(before) + len(grouped)
    assert _batch_end(before + after + grouped) == BATCH_COMMANDS_MAX  # no group at the cut
    assert _batch_end(grouped) == len(grouped)


def test_a_turn_over_the_batch_cap_commits_in_two_batches_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A turn's commands up to `BATCH_COMMANDS_MAX` are one batch (the whole turn, taken as it
    is); more are cut at the cap, the rest committed next, and the commands submitted while
    the first batch is released join the second: every outcome once, in seq order."""
    monkeypatch.setattr(sequencer_module, "BATCH_COMMANDS_MAX", 4)
    released: list[list[int]] = []
    journal = FileJournal(tmp_path / "journal")

    async def session() -> None:
        sequencer = Sequencer(Venue(), journal, Clock(), lambda batch: None)
        sequencer.release = lambda batch: released.append([e.seq for e in batch])
        sequencer.submit(ListInstrument(spec=make_spec()), origin="list")
        await sequencer.drain()
        for price in range(6):  # one turn: over the cap of 4
            sequencer.submit(order(1, Side.SELL, 10_000 + price), origin=price)
        await sequencer.drain()
        for price in range(3):  # one turn within the cap: one batch
            sequencer.submit(order(1, Side.SELL, 10_100 + price), origin=price)
        await sequencer.drain()
        sequencer.close()

    asyncio.run(session())
    assert released == [[1], [2, 3, 4, 5], [6, 7], [8, 9, 10]]
    assert [seq for seq, _ in FileJournal(tmp_path / "journal").replay()] == list(range(1, 11))


class GatedJournal(FileJournal):
    """A real journal whose every commit (one write and flush) waits for the test to open
    its gate."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.syncing = threading.Semaphore(0)  # one release per fsync started
        self.gate = threading.Semaphore(0)  # one release lets one fsync finish
        self.synced: list[int] = []  # last seq made durable by each fsync

    def commit_commands(self, batch: Sequence[Sequenced], encode_into: EncodeInto) -> None:
        self.syncing.release()
        assert self.gate.acquire(timeout=10), "the test never opened the gate"
        super().commit_commands(batch, encode_into)
        self.synced.append(self.last_seq())


# On the loop nothing arrives during a commit: the loop waits for it.
@pytest.mark.parametrize("commit_mode", ["on the journal's thread"], indirect=True)
def test_a_batch_arriving_during_an_fsync_waits_for_its_own_fsync(tmp_path: Path) -> None:
    released: list[int] = []
    journal = GatedJournal(tmp_path / "j")

    async def turns_until(condition: Any) -> None:
        for _ in range(2_000):  # bounded: the journal thread answers in well under that
            if condition():
                return
            await asyncio.sleep(0.001)
        raise AssertionError("timed out")

    async def session() -> None:
        sequencer = Sequencer(
            Venue(), journal, Clock(), lambda batch: released.extend(e.seq for e in batch)
        )
        sequencer.submit(ListInstrument(spec=make_spec()), origin="first")
        await turns_until(lambda: journal.syncing.acquire(blocking=False))  # 1st fsync started
        sequencer.submit(order(1, Side.SELL, 10_000), origin="second")  # arrives meanwhile
        journal.gate.release()  # the first fsync returns: only seq 1 is durable
        await turns_until(lambda: released == [1])
        await turns_until(lambda: journal.syncing.acquire(blocking=False))  # 2nd fsync started
        for _ in range(20):
            await asyncio.sleep(0)
        assert released == [1], "seq 2 left before its own fsync"
        journal.gate.release()
        await sequencer.drain()
        assert released == [1, 2] and journal.synced == [1, 2]
        sequencer.close()

    asyncio.run(session())


def test_a_command_built_at_stamp_us_runs_as_it_is_and_any_other_is_stamped(
    tmp_path: Path,
) -> None:
    async def session() -> list[tuple[PlaceOrder, Executed]]:
        sequencer = Sequencer(Venue(), FileJournal(tmp_path / "journal"), Clock(), lambda b: None)
        sequencer.submit(ListInstrument(spec=make_spec()))
        built = msgspec.structs.replace(order(1, Side.SELL, 10_000), ts_us=sequencer.stamp_us())
        unstamped = order(1, Side.SELL, 10_001)
        stale = msgspec.structs.replace(order(1, Side.SELL, 10_002), ts_us=1)
        outcomes = [(command, sequencer.submit(command)) for command in (built, unstamped, stale)]
        await sequencer.drain()
        sequencer.close()
        return outcomes

    (built, kept), (unstamped, stamped), (stale, restamped) = asyncio.run(session())
    assert kept.command is built, "built at the sequencer's time: executed without a copy"
    assert stamped.command is not unstamped and stamped.command.ts_us >= built.ts_us
    assert restamped.command is not stale, "older than the venue's time: stamped anew"
    assert restamped.command.ts_us >= stamped.command.ts_us
    assert msgspec.structs.replace(restamped.command, ts_us=1) == stale


def test_submit_all_is_a_submit_of_each_command_in_turn(tmp_path: Path) -> None:
    """One call for a request's commands (a batch's ops): each keeps its own seq, stamp,
    events and journal record, exactly as submitted one by one, and they are released
    together with their origin."""

    async def session(name: str, together: bool) -> tuple[list[Executed], list[Any], str]:
        released: list[Executed] = []
        journal = FileJournal(tmp_path / name)
        venue = Venue()
        sequencer = Sequencer(venue, journal, Clock(), released.extend)
        sequencer.submit(ListInstrument(spec=make_spec()))
        stamp = sequencer.stamp_us()
        commands = [
            msgspec.structs.replace(order(1, Side.SELL, 10_000), ts_us=stamp),  # kept
            order(2, Side.BUY, 10_000, qty=4),  # unstamped: stamped by the sequencer
            msgspec.structs.replace(order(2, Side.BUY, 10_000, qty=3), ts_us=1),  # stale
        ]
        if together:
            sequencer.submit_all(commands, "request")
        else:
            for command in commands:
                sequencer.submit(command, "request")
        await sequencer.drain()
        sequencer.close()
        records = list(FileJournal(tmp_path / name).replay())
        return released, records, venue.state_hash()

    one_by_one, one_by_one_records, one_by_one_hash = asyncio.run(session("each", False))
    together, records, state_hash = asyncio.run(session("all", True))
    assert [(e.seq, e.command, e.events, e.origin) for e in together] == [
        (e.seq, e.command, e.events, e.origin) for e in one_by_one
    ]
    assert [e.seq for e in together] == [1, 2, 3, 4] and together[-1].origin == "request"
    assert records == one_by_one_records and len(records) == 4
    assert state_hash == one_by_one_hash


def test_a_time_not_given_by_stamp_us_is_never_trusted_even_ahead_of_the_clock(
    tmp_path: Path,
) -> None:
    """A command stamped elsewhere (a cluster's gateway, a bad publisher) with a future time
    would move the venue's clock ahead (expiring every gtd order, maturing bills early): the
    sequencer stamps it with its own clock."""

    async def session() -> tuple[int, Executed]:
        clock = Clock()
        sequencer = Sequencer(Venue(), FileJournal(tmp_path / "journal"), clock, lambda b: None)
        sequencer.submit(ListInstrument(spec=make_spec()))
        now = sequencer.stamp_us()
        future = msgspec.structs.replace(order(1, Side.SELL, 10_000), ts_us=now + 86_400_000_000)
        executed = sequencer.submit(future)
        await sequencer.drain()
        sequencer.close()
        return now, executed

    now, executed = asyncio.run(session())
    assert now <= executed.command.ts_us < now + 60_000_000, "its own clock's time, not a day on"


def _frozen_loop_clock() -> list[float]:
    """The running loop's clock stopped at 100.0 s; the test moves it by hand (`now[0]`)."""
    now = [100.0]
    asyncio.get_running_loop().time = lambda: now[0]  # type: ignore[method-assign]
    return now


async def _until_released(released: list[list[Executed]], batches: int) -> None:
    """Turn the loop until the journal's thread has handed back `batches` batches (the loop's
    clock is frozen by the tests below, so no timer can do it; bounded: 2 s)."""
    for _ in range(2_000):
        if len(released) >= batches:
            return
        time.sleep(0.001)  # the journal's thread commits meanwhile
        await asyncio.sleep(0)
    raise AssertionError(f"{len(released)} of {batches} batches released")


def test_a_commit_interval_holds_a_busy_venues_next_commit_and_gathers_a_batch(
    tmp_path: Path, commit_mode: bool
) -> None:
    """With `commit_interval_s`, when commands queued up behind a commit (a busy venue; on
    the loop, when a commit started less than that ago), the next commit starts no sooner
    than that after the previous one started: what comes meanwhile joins it. An idle venue's
    command commits at once. The loop's clock is driven by hand, so nothing here depends on
    how fast the machine is."""
    released: list[list[Executed]] = []

    async def session() -> list[int]:
        now = _frozen_loop_clock()
        journal = FileJournal(tmp_path / "j")
        sequencer = Sequencer(Venue(), journal, Clock(), released.append, commit_interval_s=0.004)
        sequencer.submit(ListInstrument(spec=make_spec()), origin="list")
        await asyncio.sleep(0)  # the first commit leaves at once (none before it)
        sequencer.submit(order(1, Side.SELL, 10_000), origin="a")  # behind it: busy
        await _until_released(released, 1)
        sequencer.submit(order(1, Side.SELL, 10_001), origin="b")
        for _ in range(5):
            await asyncio.sleep(0)  # turns pass, the clock does not: the commit waits
        held = [journal.last_seq(), len(released)]
        now[0] += 0.004  # the interval has passed: the held-back commit goes
        await sequencer.drain()
        now[0] += 0.001  # idle now, and within the interval of the last commit: no wait
        sequencer.submit(order(1, Side.SELL, 10_002), origin="c")
        if commit_mode:  # on the loop the commits stay the interval apart: "c" waits for it
            for _ in range(5):
                await asyncio.sleep(0)
            assert len(released) == 2 and journal.last_seq() == 3
            now[0] += 0.003
        await _until_released(released, 3)
        sequencer.close()
        return held

    assert asyncio.run(session()) == [1, 1]
    assert [[e.origin for e in batch] for batch in released] == [["list"], ["a", "b"], ["c"]]


def test_a_commit_interval_holds_no_query_when_nothing_is_to_commit(
    tmp_path: Path, commit_mode: bool
) -> None:
    """A query's barrier with no command pending (all before it durable) is answered at once,
    not at the end of the interval; a `drain` while a commit is held waits on a future (it
    does not spin the loop through the interval)."""
    released: list[list[Executed]] = []

    async def session() -> tuple[bool, int]:
        now = _frozen_loop_clock()
        sequencer = Sequencer(
            Venue(), FileJournal(tmp_path / "j"), Clock(), released.append, commit_interval_s=0.1
        )
        sequencer.submit(ListInstrument(spec=make_spec()), origin="list")
        await asyncio.sleep(0)  # the commit started at 100.0: the interval runs to 100.1
        sequencer.barrier("query")  # behind the commit: busy, but nothing to commit
        await _until_released(released, 2)
        answered = [e.origin for batch in released for e in batch] == ["list", "query"]
        sequencer.submit(order(1, Side.SELL, 10_000), origin="a")
        # On the thread "a" commits at once (idle) and "b" queues behind it (busy); on the
        # loop the last commit started less than the interval ago: "a" waits, "b" joins it.
        await asyncio.sleep(0)
        sequencer.submit(order(1, Side.SELL, 10_001), origin="b")
        if not commit_mode:
            await _until_released(released, 3)
        draining = asyncio.ensure_future(sequencer.drain())
        for _ in range(5):
            await asyncio.sleep(0)
        waiting = len(sequencer._drained)  # the drain's future, not a loop of sleep(0)
        now[0] += 0.1
        await draining
        sequencer.close()
        return answered, waiting

    assert asyncio.run(session()) == (True, 1)
    origins = [[e.origin for e in batch] for batch in released]
    held = [["a", "b"]] if commit_mode else [["a"], ["b"]]
    assert origins == [["list"], ["query"], *held]


def test_a_held_commit_lets_the_queries_ahead_of_it_go_and_close_cancels_it(
    tmp_path: Path,
) -> None:
    """A busy venue's held commit holds its commands only: a query submitted before them
    (everything before it durable) is answered at once, and what its answer submits joins
    the held commit (under its one timer). Closed meanwhile, the held commit never starts on
    the closed journal (nothing of it was acknowledged)."""
    released: list[list[Executed]] = []
    fatal: list[BaseException | None] = []
    box: list[Any] = []

    def release(batch: list[Executed]) -> None:
        released.append(batch)
        if any(e.origin == "query" for e in batch):  # the answer's follow-up
            box[0].submit(order(1, Side.SELL, 10_001), origin="r")

    async def session() -> list[list[Any]]:
        now = _frozen_loop_clock()
        sequencer = Sequencer(
            Venue(),
            FileJournal(tmp_path / "j"),
            Clock(),
            release,
            on_fatal=fatal.append,
            commit_interval_s=0.05,
        )
        box.append(sequencer)
        sequencer.submit(ListInstrument(spec=make_spec()), origin="list")
        await asyncio.sleep(0)  # in flight
        sequencer.barrier("query")  # behind it, then a command: busy
        sequencer.submit(order(1, Side.SELL, 10_000), origin="a")
        await _until_released(released, 2)
        for _ in range(5):
            await asyncio.sleep(0)
        seen = [[e.origin for e in batch] for batch in released]
        sequencer.close()  # "a" and "r" are held: their timer goes with the journal
        now[0] += 1.0
        for _ in range(50):  # time for a wrongly started commit to fail and say so
            time.sleep(0.002)
            await asyncio.sleep(0)
        return seen

    assert asyncio.run(session()) == [["list"], ["query"]]
    assert len(released) == 2 and fatal == []


def test_a_held_commit_goes_when_its_timer_fires_a_hair_short_of_the_interval(
    tmp_path: Path,
) -> None:
    """uvloop's timers and clock are whole milliseconds: the hold's timer may fire while the
    loop's time is a hair short of the interval's end. The commit goes then; asked again
    whether to wait, it would be held again for nothing, turn after turn."""
    released: list[list[Executed]] = []

    async def session() -> None:
        now = _frozen_loop_clock()
        sequencer = Sequencer(
            Venue(), FileJournal(tmp_path / "j"), Clock(), released.append, commit_interval_s=0.004
        )
        sequencer.submit(ListInstrument(spec=make_spec()), origin="list")
        await asyncio.sleep(0)  # the first commit leaves at once, at 100.0
        sequencer.submit(order(1, Side.SELL, 10_000), origin="a")  # held until 100.004
        await _until_released(released, 1)
        for _ in range(5):
            await asyncio.sleep(0)
        assert len(released) == 1
        now[0] = 100.004 - 5e-10  # the timer is due within the clock's resolution (1 ns)
        await _until_released(released, 2)
        sequencer.close()

    asyncio.run(session())
    assert [[e.origin for e in batch] for batch in released] == [["list"], ["a"]]


@pytest.mark.parametrize("interval_s", [-0.001, 0.2])
def test_a_commit_interval_out_of_bounds_is_refused(tmp_path: Path, interval_s: float) -> None:
    journal = FileJournal(tmp_path / "j")
    try:
        with pytest.raises(ValueError, match="commit_interval_s"):
            Sequencer(Venue(), journal, Clock(), lambda b: None, commit_interval_s=interval_s)
    finally:
        journal.close()


def test_a_place_journaled_before_quote_sets_existed_replays_without_one() -> None:
    from core.sequencer import decode_command, encode_command

    quote = PlaceOrder(
        ts_us=1, account=1, symbol=SYMBOL, side=Side.BUY, price=1, qty=1, quote_set="mm1"
    )
    assert decode_command(encode_command(quote)) == quote
    record = msgspec.msgpack.decode(encode_command(quote))
    del record["quote_set"]  # as the journal of an earlier build holds it
    old = decode_command(msgspec.msgpack.encode(record))
    assert old == msgspec.structs.replace(quote, quote_set=None)


def test_a_place_journals_its_cod_mark_only_when_it_has_one() -> None:
    from core.sequencer import decode_command, encode_command

    place = PlaceOrder(ts_us=1, account=1, symbol=SYMBOL, side=Side.BUY, price=1, qty=1)
    assert "cod" not in msgspec.msgpack.decode(encode_command(place)), "no byte for it"
    marked = msgspec.structs.replace(place, cod=True)
    assert decode_command(encode_command(marked)) == marked


def test_a_cod_remark_is_journaled_and_the_earlier_records_keep_their_bytes() -> None:
    """`SetCancelOnDisconnect` is appended to the journal's commands: it round-trips, and a
    place and a cancel encode to the bytes earlier builds wrote (so their journals replay)."""
    from core.sequencer import decode_command, encode_command
    from engine.commands import SetCancelOnDisconnect

    remark = SetCancelOnDisconnect(ts_us=3, account=1, cod=True, order_ids=(1, 2))
    assert decode_command(encode_command(remark)) == remark
    place = PlaceOrder(ts_us=1, account=1, symbol=SYMBOL, side=Side.BUY, price=1, qty=1, cod=True)
    cancel = CancelOrder(ts_us=2, account=1, order_id=7, reason=CancelReason.COD)
    written_before = {  # by the build before the command existed
        place: "de0008a474797065aa506c6163654f72646572a574735f757301a76163636f756e7401a673796d"
        "626f6ca94141504c782d555344a473696465a3627579a5707269636501a371747901a3636f64c3",
        cancel: "86a474797065ab43616e63656c4f72646572a574735f757302a76163636f756e7401a86f72646572"
        "5f696407a9636c5f6f72645f6964c0a6726561736f6ea3636f64",
    }
    for command, hex_bytes in written_before.items():
        assert encode_command(command).hex() == hex_bytes
        assert decode_command(bytes.fromhex(hex_bytes)) == command


def test_a_tick_advances_the_clock_once_a_dead_mans_deadline_has_passed(tmp_path: Path) -> None:
    """Only then: a re-armed switch's old deadline, or a disarmed one's, journals nothing."""
    clock = Clock()

    async def session() -> list[Executed]:
        venue = Venue()
        executed: list[Executed] = []
        sequencer = Sequencer(
            venue,
            FileJournal(tmp_path / "journal"),
            clock,
            lambda b: None,
            on_executed=executed.append,
        )
        sequencer.submit(ArmDeadMan(account=1, timeout_ms=1))  # deadline: its time + 1 ms
        sequencer.submit(ArmDeadMan(account=2, timeout_ms=1))
        sequencer.submit(ArmDeadMan(account=2, timeout_ms=0))
        sequencer.tick()  # 5 µs later: not due
        clock.now += 1_000
        sequencer.tick()  # due: account 1's switch fires
        sequencer.tick()  # nothing more is due
        await sequencer.drain()
        sequencer.close()
        return executed

    executed = asyncio.run(session())
    assert [type(e.command).__name__ for e in executed] == [
        "ArmDeadMan",
        "ArmDeadMan",
        "ArmDeadMan",
        "AdvanceClock",
    ]
    assert executed[-1].events == [DeadManTriggered(executed[-1].command.ts_us, 1)]  # type: ignore[union-attr]


def test_a_quiet_venue_with_an_armed_switch_journals_its_clock_each_second(
    tmp_path: Path,
) -> None:
    """A restart or takeover counts the outage from the last command sequenced: while a switch
    is armed the clock is journaled at least every `SWITCH_CLOCK_US`, so that command is at
    most that old when the venue goes down. Nothing is journaled for it with no switch armed.
    Before session 29 nothing was, and a switch got back all the time since the last order."""
    clock = Clock()

    async def session() -> list[Executed]:
        executed: list[Executed] = []
        sequencer = Sequencer(
            Venue(),
            FileJournal(tmp_path / "journal"),
            clock,
            lambda b: None,
            on_executed=executed.append,
        )
        sequencer.submit(ArmDeadMan(account=1, timeout_ms=600_000))
        armed_us = clock.now
        clock.now = armed_us + SWITCH_CLOCK_US - 100
        sequencer.tick()  # quiet for less than the bound: nothing
        clock.now = armed_us + SWITCH_CLOCK_US
        sequencer.tick()  # quiet for the bound: the clock is journaled
        sequencer.tick()  # and not again at once
        clock.now += SWITCH_CLOCK_US
        sequencer.tick()  # a second later, once more
        sequencer.submit(ArmDeadMan(account=1, timeout_ms=0))  # disarmed
        clock.now += 10 * SWITCH_CLOCK_US
        sequencer.tick()  # nothing armed: a quiet venue journals nothing
        await sequencer.drain()
        sequencer.close()
        return executed

    executed = asyncio.run(session())
    names = [type(e.command).__name__ for e in executed]
    assert names == ["ArmDeadMan", "AdvanceClock", "AdvanceClock", "ArmDeadMan"]
    assert all(e.events == [] for e in executed[1:3]), "a clock tick changes nothing else"


@pytest.mark.parametrize("written_by_cluster", [False, True])
def test_a_record_of_the_other_venue_kind_refuses_the_replay_in_one_line(
    tmp_path: Path, written_by_cluster: bool
) -> None:
    """A one-process venue's journal read by a cluster's core (or the reverse: they may share
    a NATS stream one after the other) is refused as a `JournalError` naming the record,
    not a decoder's traceback, and nothing of it is executed."""
    from core.journal import JournalError
    from core.nats_bus import ClusterCodec
    from core.sequencer import UnreadableRecord

    path = tmp_path / "journal"
    writer_codec = ClusterCodec() if written_by_cluster else None

    async def write() -> None:
        sequencer = Sequencer(
            Venue(), FileJournal(path), Clock(), lambda b: None, codec=writer_codec
        )
        sequencer.submit(ListInstrument(spec=make_spec()), origin=None)
        await sequencer.drain()
        sequencer.close()

    asyncio.run(write())
    reader_codec = None if written_by_cluster else ClusterCodec()
    venue = Venue()
    reader = Sequencer(venue, FileJournal(path), Clock(), lambda b: None, codec=reader_codec)
    with pytest.raises(UnreadableRecord) as refused:
        reader.recover()
    reader.close()
    assert isinstance(refused.value, JournalError)
    message = str(refused.value)
    assert "record 1" in message and "venue serve --nats" in message, message
    assert not venue.markets and reader.last_seq == 0


def test_a_replay_reports_its_progress_once_every_so_many_records(tmp_path: Path) -> None:
    """The review of session 26: recovery's progress was told of every replayed record (a
    call each, ~3% of a replay); the recover loop counts, and calls it once every
    `progress_records` records with the seq reached and the count so far."""
    path = tmp_path / "journal"

    async def write() -> None:
        sequencer = Sequencer(Venue(), FileJournal(path), Clock(), lambda batch: None)
        sequencer.submit(ListInstrument(spec=make_spec()), origin=None)
        for i in range(10):
            sequencer.submit(order(1, Side.SELL, 10_000 + i), origin=None)
        await sequencer.drain()
        sequencer.close()

    asyncio.run(write())
    reached: list[tuple[int, int]] = []
    recovered = Sequencer(Venue(), FileJournal(path), Clock(), lambda batch: None)
    count = recovered.recover(
        on_progress=lambda seq, count: reached.append((seq, count)), progress_records=3
    )
    assert count == 11 and reached == [(3, 3), (6, 6), (9, 9)]
    recovered.close()


TWO_FAILURES_AT_ONCE = """
import logging, sys, threading, time
from core import sequencer

original_exit = sequencer.exit_fatally
def slow_exit(failure):  # the first failure's exit held back, as a slow log flush may
    time.sleep(0.3)
    original_exit(failure)
sequencer.exit_fatally = slow_exit
logging.basicConfig(level=logging.INFO, stream=sys.stdout)
first, second = (
    threading.Thread(target=sequencer._die, args=(RuntimeError(f"failure {n}"),)) for n in (1, 2)
)
first.start()
time.sleep(0.05)
second.start()
time.sleep(5)
print("still running")
"""


def test_two_failures_at_once_end_the_process_in_one_fatal_line(tmp_path: Path) -> None:
    # The ledger store's thread fails, and the loop's next call into it fails a moment later:
    # each was fatal on its own thread, and both logged (a crash test read two lines).
    script = tmp_path / "two_failures.py"
    script.write_text(TWO_FAILURES_AT_ONCE)
    root = Path(__file__).resolve().parents[2]
    ended = subprocess.run(
        [sys.executable, str(script)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ended.returncode == 70, ended
    fatal = [line for line in ended.stdout.splitlines() if "fatal:" in line]
    assert fatal == [
        "CRITICAL:venue.sequencer:fatal: RuntimeError: failure 1; stopping so that recovery"
        " replays the journal"
    ], ended.stdout


# ----------------------------------------------------------------- a requote as one command


def _requotes(as_pairs: bool) -> list[list[Command]]:
    """Two accounts quote a bid and an ask each (orders 1-4), then requote them turn by
    turn: as `AmendPair`s, or as their two `AmendOrder`s. Among them a side refused (an
    amend of the other account's order, a negative price) and a bid moved across the other
    account's ask (an amend that crosses trades)."""
    turns: list[list[Command]] = [
        [ListInstrument(spec=make_spec())],
        [order(1, Side.BUY, 9_990), order(1, Side.SELL, 10_010)],
        [order(2, Side.BUY, 9_980), order(2, Side.SELL, 10_020)],
    ]
    moves = [
        (1, (1, 9_991, 10), (2, 10_050, 12)),
        (2, (3, 9_981, 10), (4, 10_021, 10)),
        (1, (1, 9_992, 12), (4, 10_012, 10)),  # the ask named is account 2's: refused
        (2, (3, -5, 10), (4, 10_022, 10)),  # a negative price: the bid refused
        (1, (1, 10_022, 10), (2, 10_051, 10)),  # the bid crosses account 2's ask: trades
    ]
    for account, (bid_id, bid_price, bid_qty), (ask_id, ask_price, ask_qty) in moves:
        pair = AmendPair(
            account=account,
            bid_order_id=bid_id,
            bid_price=bid_price,
            bid_qty=bid_qty,
            ask_order_id=ask_id,
            ask_price=ask_price,
            ask_qty=ask_qty,
        )
        turns.append([pair] if as_pairs else [*pair.sides()])
    return turns


def _journaled(path: Path, turns: list[list[Command]]) -> tuple[Venue, list[Executed]]:
    """`turns` submitted (a journal batch each, its commands stamped with one time, as a
    request's are) to a venue journaling into `path`."""
    executed: list[Executed] = []

    async def session() -> Venue:
        venue = Venue()
        sequencer = Sequencer(venue, FileJournal(path), Clock(), executed.extend)
        for turn in turns:
            ts_us = sequencer.stamp_us()
            for command in turn:
                sequencer.submit(msgspec.structs.replace(command, ts_us=ts_us), origin=None)
            await sequencer.drain()
        sequencer.close()
        return venue

    return asyncio.run(session()), executed


def test_a_journal_of_amend_pairs_replays_to_the_state_of_their_two_amends(
    tmp_path: Path,
) -> None:
    """A journal whose requotes are `AmendPair` records (one record each) replays to the
    state its venue had, and that state is the one of the same requotes journaled as two
    `AmendOrder`s each (the same events, in order); a side refused among them."""
    pairs_venue, pairs = _journaled(tmp_path / "pairs", _requotes(True))
    amends_venue, amends = _journaled(tmp_path / "amends", _requotes(False))
    assert pairs_venue.state_hash() == amends_venue.state_hash()
    assert [event for e in pairs for event in e.events] == [
        event for e in amends for event in e.events
    ]
    assert len(amends) - len(pairs) == 5  # one record a requote, not two
    kinds = {type(event) for e in pairs for event in e.events}
    assert CommandRejected in kinds and TradeExecuted in kinds
    replayed = Venue()
    recovered = Sequencer(replayed, FileJournal(tmp_path / "pairs"), Clock(), lambda b: None)
    assert recovered.recover() == len(pairs)
    recovered.close()
    assert replayed.state_hash() == pairs_venue.state_hash()


def test_a_build_without_amend_pairs_refuses_a_journal_holding_one_at_that_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build before `AmendPair` (its decoder, the union without it) stops its replay at the
    first such record with an `UnreadableRecord` naming it, nothing of it executed: it never
    replays past a requote it cannot do (docs/cluster.md, the upgrade order)."""
    from core.sequencer import UnreadableRecord
    from engine.commands import AnyCommand

    _, pairs = _journaled(tmp_path / "pairs", _requotes(True))
    first_pair = next(e.seq for e in pairs if type(e.command) is AmendPair)
    older = tuple(kind for kind in typing.get_args(AnyCommand) if kind is not AmendPair)
    decoder = msgspec.msgpack.Decoder(Union[older])  # noqa: UP007 (a union of a tuple)
    monkeypatch.setattr(sequencer_module, "_decoder", decoder)
    venue = Venue()
    reader = Sequencer(venue, FileJournal(tmp_path / "pairs"), Clock(), lambda b: None)
    with pytest.raises(UnreadableRecord, match=f"record {first_pair} "):
        reader.recover()
    reader.close()
    assert reader.last_seq == first_pair - 1


def test_a_build_without_revoke_key_refuses_its_record_loudly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A key revocation's id journaled (`RevokeKey`, session 32) is a record no earlier build
    reads: its replay stops there with an `UnreadableRecord` naming it, as at an `AmendPair`,
    rather than skip it (its state would lack the id)."""
    from core.sequencer import UnreadableRecord, decode_record, encode_command
    from engine.commands import AnyCommand, RevokeKey

    record = encode_command(RevokeKey(ts_us=5, api_key="key-a", cl_op_id="rv-1"))
    assert decode_record(7, record) == RevokeKey(ts_us=5, api_key="key-a", cl_op_id="rv-1")
    older = tuple(kind for kind in typing.get_args(AnyCommand) if kind is not RevokeKey)
    decoder = msgspec.msgpack.Decoder(Union[older])  # noqa: UP007 (a union of a tuple)
    monkeypatch.setattr(sequencer_module, "_decoder", decoder)
    with pytest.raises(UnreadableRecord, match="record 7 "):
        decode_record(7, record)


def test_a_pair_refused_unread_gives_its_ask_the_refusal_and_no_other_pair_an_empty_ask() -> None:
    """`pair_sides`: a pair refused whole (`RefuseUnreadCommand`: every event the bid's, its
    split at their end) gives its ask that refusal, not what came due before it (before: the
    bid's events, a dead-man's firing included, again); any other pair whose ask has no
    events is a broken invariant (before: the bid's events, taken silently)."""
    from core.sequencer import pair_sides
    from engine.reasons import ErrorCode
    from engine.venue import REFUSED_UNREAD

    pair = AmendPair(ts_us=5, account=1, bid_order_id=10, ask_order_id=11, bid_qty=1, ask_qty=1)
    fired = DeadManTriggered(ts_us=5, account=2)
    refusal = CommandRejected(5, REFUSED_UNREAD, ErrorCode.UNSUPPORTED_COMMAND, "unread", 1)
    refused = Executed(7, pair, [fired, refusal], "origin", split=2)
    bid, ask = pair_sides(refused)
    assert (bid.events, ask.events) == ([fired, refusal], [refusal])
    assert (bid.seq, ask.seq, ask.origin) == (7, 7, "origin")
    assert (bid.command, ask.command) == pair.sides()
    rejected = CommandRejected(5, "amend", ErrorCode.UNKNOWN_ORDER, "no such order", 1)
    with pytest.raises(AssertionError, match="not refused unread"):
        pair_sides(Executed(8, pair, [rejected], "origin", split=1))
