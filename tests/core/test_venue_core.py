"""VenueCore's start from a standby's warm state and its clock (core/venue_core.py; the rest of
the core is tested through the server in tests/gateway and through the bus in
tests/core/test_bus.py)."""

import asyncio
import contextlib
import errno
import fcntl
import gc
import os
import resource
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO, Any, cast

import msgspec
import pytest

from core import config as venue_config
from core import snapshots, venue_core
from core.journal import FileJournal, JournalLocked
from core.ledger_writer import Bookings
from core.sequencer import decode_command
from core.venue_core import (
    CLOCK_TICK_S,
    CLOCK_WAKE_MIN_S,
    JOURNAL_FILE,
    LOCK_FILE,
    VenueCore,
    WarmStart,
    collector_paused,
    lock_data_dir,
    save_json,
    warn_if_others_may_read,
    write_durably,
)
from engine.commands import AmendPair, ArmDeadMan, CancelAll, CancelOrder, PlaceOrder
from engine.enums import Side
from engine.events import CommandRejected
from engine.reasons import ErrorCode
from engine.snapshot import capture
from engine.venue import Venue
from engine.venue import VenueConfig as EngineConfig
from settlement.ledger import Ledger
from tests.conftest import Venue as RunningVenue
from tests.core.test_bus import Recorder
from tests.sample_config import SAMPLE_CONFIG

SYMBOL = "AAPLx-USD"
ONE_SHARE = 1_000_000  # quantities are in millionths of a share

CONFIG = venue_config.load(SAMPLE_CONFIG)


def _core(data_dir: Path) -> VenueCore:
    recorder = Recorder()
    core = recorder.core = VenueCore(CONFIG, data_dir, recorder)
    return core


def _warm_from_journal(data_dir: Path, up_to_seq: int) -> WarmStart:
    """What a standby following the journal would hold after record `up_to_seq`."""
    ledger = Ledger()
    staleness = venue_config.reserve_staleness_max_us(CONFIG)
    venue = Venue(EngineConfig(reserve_staleness_max_us=staleness), ledger)
    journal = FileJournal(data_dir / JOURNAL_FILE)
    try:
        for seq, payload in journal.replay(0):
            if seq > up_to_seq:
                break
            venue.execute(decode_command(payload))
    finally:
        journal.close()
    return WarmStart(up_to_seq, venue, ledger.drain())


async def _journal_past_the_snapshot(data_dir: Path) -> tuple[int, int]:
    """A venue built and stopped (snapshot), then three commands and a crash (no snapshot)."""
    core = _core(data_dir)
    await core.start()
    await core.stop()
    snapshot_seq = core.sequencer.last_seq
    core = _core(data_dir)
    await core.start()
    for _ in range(3):
        core.sequencer.submit(CancelAll(account=1), None)
    await core.sequencer.drain()
    core.store_thread.close()
    core.sequencer.close()
    core._lock.close()  # as the crashed process's exit would: the data dir is free again
    return snapshot_seq, core.sequencer.last_seq


def test_a_warm_state_as_new_as_the_journal_is_taken_and_nothing_replayed(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        _, last_seq = await _journal_past_the_snapshot(tmp_path)
        warm = _warm_from_journal(tmp_path, last_seq)
        expected = warm.venue.state_hash()
        core = _core(tmp_path)
        await core.start(warm)
        assert core.venue is warm.venue and core.sequencer.last_seq == last_seq
        assert core.venue.state_hash() == expected
        await core.stop()

    asyncio.run(main())


def test_a_warm_state_older_than_the_snapshot_is_not_used(tmp_path: Path) -> None:
    async def main() -> None:
        snapshot_seq, last_seq = await _journal_past_the_snapshot(tmp_path)
        stale = _warm_from_journal(tmp_path, snapshot_seq - 1)
        expected = _warm_from_journal(tmp_path, last_seq).venue.state_hash()
        core = _core(tmp_path)
        await core.start(stale)
        assert core.venue is not stale.venue and core.sequencer.last_seq == last_seq
        assert core.venue.state_hash() == expected
        await core.stop()

    asyncio.run(main())


def test_the_clock_wakes_at_a_switchs_deadline_when_it_comes_before_the_next_tick(
    tmp_path: Path,
) -> None:
    """A switch fires within about a millisecond of its deadline, not at the next tick."""

    async def main() -> None:
        core = _core(tmp_path)
        await core.start()
        now = [core.sequencer.clock_us()]
        core.sequencer.clock_us = lambda: now[0]
        try:
            assert core._next_tick_s() == CLOCK_TICK_S, "nothing due: the usual tick"
            core.sequencer.submit(ArmDeadMan(account=1, timeout_ms=30), None)
            assert core._next_tick_s() == pytest.approx(0.030)
            now[0] += 29_800  # 0.2 ms before the deadline: no sooner than the floor
            assert core._next_tick_s() == CLOCK_WAKE_MIN_S
            now[0] += 1_000  # past it: the next wake fires it
            assert core._next_tick_s() == CLOCK_WAKE_MIN_S
            core.sequencer.tick()
            assert core.venue.dead_man_deadlines == {}, "the tick fired the switch"
            assert core._next_tick_s() == CLOCK_TICK_S, "nothing due any more"
            core.sequencer.submit(ArmDeadMan(account=1, timeout_ms=60_000), None)
            assert core._next_tick_s() == CLOCK_TICK_S, "due long after the next tick"
            await core.sequencer.drain()
        finally:
            await core.stop()

    asyncio.run(main())


def test_the_store_thread_is_handed_each_batchs_bookings_not_the_batch(tmp_path: Path) -> None:
    """The ledger store's thread gets what it books (registrations, transfers), never the
    journal batch: the batch is freed on the loop, where it is warm, not on the store's
    thread (which freeing it cost a third of that thread's CPU under load)."""

    async def main() -> None:
        core = _core(tmp_path)
        handed: list[object] = []
        book = core.store_thread.book
        core.store_thread.book = lambda item, commands: (handed.append(item), book(item, commands))[
            1
        ]  # type: ignore[method-assign]
        await core.start()  # a first start: the config's listings and accounts, journaled
        try:
            core.sequencer.submit(CancelAll(account=1), None)
            await core.sequencer.drain()
            await core._store_flushed()
            assert handed and all(type(item) is Bookings for item in handed)
            assert any(item.registering for item in handed)  # type: ignore[attr-defined]
            stored = await core._on_store(core.store.last_transfer_id)
            assert stored == core.ledger.last_transfer_id > 0
            accounts = await core._on_store(core.store.accounts)
            assert {account for account in accounts if account > 0} == set(core.ledger.participants)
            assert await core._on_store(core.store.verify) == []
        finally:
            await core.stop()

    asyncio.run(main())


def test_the_lock_is_taken_again_when_its_file_was_removed_before_the_flock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused start removes the lock file it made while holding it; a start that opened
    that file just before must not hold a lock on a file no longer in the directory (a third
    start would lock the new file: two venues on one directory). It locks the file there now."""
    path = tmp_path / LOCK_FILE
    path.touch()
    real_flock = fcntl.flock
    removals = []

    def removed_first(file: IO[bytes], operation: int) -> None:
        if not removals:  # as the start that gave up does, between this one's open and flock
            removals.append(os.fstat(file.fileno()).st_ino)
            path.unlink()
            path.touch()
        real_flock(file, operation)

    monkeypatch.setattr(fcntl, "flock", removed_first)
    held = lock_data_dir(tmp_path)
    try:
        assert os.fstat(held.fileno()).st_ino == path.stat().st_ino
        monkeypatch.setattr(fcntl, "flock", real_flock)
        with pytest.raises(JournalLocked):
            lock_data_dir(tmp_path)
    finally:
        held.close()


def test_each_command_carries_its_own_transfers_and_each_refusal_is_counted_once(
    tmp_path: Path,
) -> None:
    """A command that books nothing carries no transfers (the shared empty tuple), one that
    books carries its own, each transfer once; the rejects counted at release are the
    commands' refusals, wherever they stand in a batch, not a barrier's refused op."""

    async def main() -> None:
        core = _core(tmp_path)
        recorder = core.listener
        assert isinstance(recorder, Recorder)
        await core.start()  # built from the config: listings, accounts, deposits
        booked = [t.transfer_id for e in recorder.seen_executed for t in e.transfers]
        assert booked == list(range(1, core.ledger.last_transfer_id + 1)) and booked
        for executed in recorder.seen_executed:
            assert executed.transfers or executed.transfers == ()
        refused = CommandRejected(
            ts_us=0, command="place_order", reason=ErrorCode.UNKNOWN_SYMBOL, detail="", account=1
        )
        sequencer = core.sequencer
        sequencer.submit(CancelOrder(account=1, order_id=999_999), None)  # refused
        sequencer.submit(CancelAll(account=1), None)
        sequencer.barrier(object(), [refused])  # an op refused before it was a command
        sequencer.submit(CancelOrder(account=2, order_id=999_998), None)  # refused
        await sequencer.drain()
        assert dict(core.rejects) == {ErrorCode.UNKNOWN_ORDER: 2}
        # A requote as one command counts each side's refusal: the bid's is not its last
        # event when its ask was done
        resting = [
            sequencer.submit(
                PlaceOrder(account=2, symbol=SYMBOL, side=side, price=price, qty=ONE_SHARE),
                None,
            ).events[0]
            for side, price in ((Side.BUY, 18_000), (Side.SELL, 19_000))
        ]
        bid_id, ask_id = (cast(Any, accepted).order_id for accepted in resting)
        for bid, ask in ((999_997, ask_id), (bid_id, 999_996)):  # the bid refused, the ask
            pair = AmendPair(
                account=2, bid_order_id=bid, bid_price=18_010, ask_order_id=ask, ask_price=19_010
            )
            sequencer.submit(pair, None)
        await sequencer.drain()
        assert dict(core.rejects) == {ErrorCode.UNKNOWN_ORDER: 4}
        core.rejects.clear()
        # A trade right after commands that booked nothing: its transfers are its own, the
        # next ids, none skipped or carried twice.
        last_before = core.ledger.last_transfer_id
        seen_before = len(recorder.seen_executed)
        for account, side in ((1, Side.SELL), (2, Side.BUY)):
            sequencer.submit(
                PlaceOrder(account=account, symbol=SYMBOL, side=side, price=18_700, qty=ONE_SHARE),
                None,
            )
        await sequencer.drain()
        resting, trade = recorder.seen_executed[seen_before:]
        assert resting.transfers == () or [t.transfer_id for t in resting.transfers] == [
            last_before + 1 + index for index in range(len(resting.transfers))
        ]
        booked_now = [t.transfer_id for e in (resting, trade) for t in e.transfers]
        assert trade.transfers and booked_now == list(
            range(last_before + 1, core.ledger.last_transfer_id + 1)
        )
        await core.stop()

    asyncio.run(main())


class FsyncRefusals:
    """`os.fsync` refusing, as a full disk does (ENOSPC), the descriptors `picks` chooses
    while `on` (from the core's start on); the path of each refused one noted."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, picks: Callable[[str, int], bool]) -> None:
        self.on = False
        self.refused: list[str] = []
        real = os.fsync

        def fsync(descriptor: int) -> None:
            path = os.readlink(f"/proc/self/fd/{descriptor}")
            if self.on and picks(path, descriptor):
                self.refused.append(path)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real(descriptor)

        monkeypatch.setattr(os, "fsync", fsync)


def a_snapshot_s_file(path: str, descriptor: int) -> bool:
    return Path(path).name.startswith("snapshot-") and path.endswith(".tmp")


async def _until(condition: Callable[[], bool]) -> bool:
    for _ in range(500):  # x 0.01 s
        if condition():
            return True
        await asyncio.sleep(0.01)
    return False


async def _refused_then_written(
    data_dir: Path, refusals: FsyncRefusals, said: Callable[[], bool]
) -> None:
    """A periodic snapshot refused (`said` true: its warning logged), then, refusals off,
    written at the next interval; no fatal failure meanwhile."""
    fatals: list[BaseException | None] = []
    core = _core(data_dir)
    await core.start()
    core.sequencer.on_fatal = fatals.append
    refusals.on = True
    try:
        seq = core.sequencer.last_seq + 1  # the command's, which the next snapshot is at
        core.start_tasks()
        await asyncio.sleep(0)  # the timers begin, at the seq before the command
        core.sequencer.submit(CancelAll(account=1), None)
        await core.sequencer.drain()
        assert await _until(lambda: bool(fatals) or said())
        assert not fatals, fatals
        assert refusals.refused, "nothing refused"
        assert not list(data_dir.glob("*.tmp")), "the half-written file is gone"
        refusals.on = False
        assert await _until(lambda: snapshots.path_for(data_dir, seq).exists() or bool(fatals))
        assert not fatals, fatals
    finally:
        await core.stop()


def test_a_periodic_snapshot_the_disk_refuses_is_a_warning_and_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The finding (session 32's trial): a cluster's active core whose data directory was
    full stopped itself at its next periodic snapshot (`fatal: OSError: [Errno 28] No space
    left on device`, exit 70) though its journal held every command. Now a warning, the
    half-written file gone, and the snapshot written at the next interval once it can be.
    The refusal: the `.tmp` file's fsync, written and refused (a full disk's ENOSPC)."""
    monkeypatch.setattr(venue_core, "SNAPSHOT_INTERVAL_S", 0.01)
    refusals = FsyncRefusals(monkeypatch, a_snapshot_s_file)
    said = lambda: "snapshot not written" in caplog.text  # noqa: E731
    asyncio.run(_refused_then_written(tmp_path, refusals, said))
    assert all(path.endswith(".tmp") for path in refusals.refused)


def test_a_periodic_snapshot_whose_directory_sync_fails_says_it_was_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Review of session 32: a failure after the file's rename (the directory's fsync, an
    older file's removal) was logged `snapshot not written` though the file was there."""
    monkeypatch.setattr(venue_core, "SNAPSHOT_INTERVAL_S", 0.01)
    data_dir = str(tmp_path)
    refusals = FsyncRefusals(monkeypatch, lambda path, descriptor: path == data_dir)
    said = lambda: "snapshot written, but its directory not synced" in caplog.text  # noqa: E731
    asyncio.run(_refused_then_written(tmp_path, refusals, said))
    assert "snapshot not written" not in caplog.text
    assert list(tmp_path.glob("snapshot-*.bin")), "the file of the refused sync is there"


@contextlib.contextmanager
def files_capped_at(size_bytes: int) -> Iterator[None]:
    """This process's files may not grow past `size_bytes` (RLIMIT_FSIZE, SIGXFSZ ignored): a
    write past it fails in the kernel with EFBIG and no file name, as a full disk's does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    before = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, before)


def test_a_failed_write_of_a_data_file_names_it_and_leaves_it_as_it_was(tmp_path: Path) -> None:
    """The finding (session 28): on a full disk, a start's `epochs.json` write failed with the
    kernel's `No space left on device` and no file, which `venue serve` then reported as
    `cannot start on 127.0.0.1:PORT: ...`, the port's fault; and it left `epochs.tmp`."""
    path = tmp_path / "epochs.json"
    save_json(path, [1])
    with pytest.raises(OSError) as failed, files_capped_at(4):
        save_json(path, list(range(100)))
    assert failed.value.errno == errno.EFBIG
    assert failed.value.filename == str(path)
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["epochs.json"]
    assert path.read_bytes() == b"[1]"
    with pytest.raises(OSError) as failed, files_capped_at(4):
        write_durably(tmp_path / "clean-stop", b"0123456789")
    assert failed.value.filename == str(tmp_path / "clean-stop")


def test_a_failed_write_of_a_json_file_named_dot_tmp_leaves_it_as_it_was(tmp_path: Path) -> None:
    """The review's finding (session 28): `save_json`'s copy was the path with its suffix
    made `.tmp`, so for `keys.tmp` the file itself: opened with O_TRUNC, then unlinked when
    the write failed, the good file lost."""
    path = tmp_path / "keys.tmp"
    save_json(path, [1])
    with pytest.raises(OSError) as failed, files_capped_at(4):
        save_json(path, list(range(100)))
    assert failed.value.errno == errno.EFBIG
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["keys.tmp"]
    assert path.read_bytes() == b"[1]"
    save_json(path, [2])
    assert path.read_bytes() == b"[2]"


def test_save_json_makes_its_rename_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The review's finding (session 28): the file was fsynced but not its directory after
    the rename, as `write_durably`'s is, so a power loss could lose an issued key already
    answered. The kernel's fsync is watched (still called), not replaced."""
    synced: list[str] = []
    real_fsync = os.fsync

    def watched(descriptor: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", watched)
    save_json(tmp_path / "api_keys.json", [1])
    directory = os.path.realpath(tmp_path)
    assert synced[-1] == directory, synced  # the directory, after the file's own
    assert (tmp_path / "api_keys.json").read_bytes() == b"[1]"


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    before = os.umask(mask)
    try:
        yield
    finally:
        os.umask(before)


def test_a_started_venues_data_directory_and_data_files_are_its_owners_alone(
    tmp_path: Path,
) -> None:
    """Under the usual umask 022 the journal, snapshot and ledger store were 0644 in a 0755
    directory until session 32: every local user could read every participant's orders and
    balances. Empty files (locks, the clean-stop mark) hold nothing to read."""
    data_dir = tmp_path / "data"

    async def main() -> None:
        core = _core(data_dir)
        await core.start()
        core.sequencer.submit(CancelAll(account=1), None)
        await core.sequencer.drain()
        await core.stop()

    with umask(0o022):
        asyncio.run(main())
    assert data_dir.stat().st_mode & 0o777 == 0o700
    held = {path.name: path.stat() for path in data_dir.iterdir() if path.stat().st_size}
    assert {JOURNAL_FILE, "ledger.sqlite"} <= held.keys()
    assert any(name.startswith("snapshot-") for name in held)
    assert {name: oct(stat.st_mode & 0o777) for name, stat in held.items()} == {
        name: "0o600" for name in held
    }


def test_a_start_on_a_data_directory_open_to_others_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A directory made before session 32 keeps its 0755 (and its files their 0644): the
    start says so, with the command that closes it; a directory it makes itself, nothing."""
    opened, closed = tmp_path / "opened", tmp_path / "closed"
    opened.mkdir(mode=0o755)
    opened.chmod(0o755)

    async def start_and_stop(data_dir: Path) -> None:
        core = _core(data_dir)
        await core.start()
        await core.stop()

    with caplog.at_level("WARNING", logger="venue"):
        asyncio.run(start_and_stop(opened))
        asyncio.run(start_and_stop(closed))
    warned = [r for r in caplog.records if r.msg == "data directory open to others"]
    assert [(r.__dict__["mode"], r.__dict__["why"]) for r in warned] == [
        ("0o755", f"readable by others: chmod -R go-rwx {opened} (it holds participants' data)")
    ]


def test_a_start_warns_of_files_open_to_others_in_a_closed_data_directory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The finding (session 32): only the directory's mode was looked at, and a 0644 journal
    of an earlier session stays readable through a directory chmod'ed 0711 (or by a process
    that already holds it): the files are named now."""
    data_dir = tmp_path / "data"

    async def start_and_stop() -> None:
        core = _core(data_dir)
        await core.start()
        await core.stop()

    asyncio.run(start_and_stop())  # makes the directory 0700 and its files 0600
    journal = data_dir / JOURNAL_FILE
    journal.chmod(0o644)
    with caplog.at_level("WARNING", logger="venue"):
        asyncio.run(start_and_stop())
    warned = [r for r in caplog.records if r.msg == "data directory open to others"]
    assert [(r.__dict__["mode"], r.__dict__["files"]) for r in warned] == [
        ("0o700", [journal.name])
    ]


def test_the_modes_warning_never_fails_a_started_venue(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Session 32's whole-diff review: the warning runs once a start is done, outside its
    clean-up, so an OSError there (a file gone between the scan and its stat, the directory
    unreadable) would leave a started core uncleaned (a cluster gateway its lease held): it
    says it could not check, and returns."""
    with caplog.at_level("WARNING", logger="venue"):
        warn_if_others_may_read(tmp_path / "gone")
    assert [r.msg for r in caplog.records] == ["data directory's modes not checked"]


def test_a_json_file_saved_over_a_stale_copy_is_its_owners_alone(tmp_path: Path) -> None:
    """The whole-diff review of session 32: `save_json`'s copy is opened with O_CREAT, which
    keeps the mode of a `NAME.tmp` left there (0644): `api_keys.json` then came out 0644."""
    target = tmp_path / "api_keys.json"
    stale = tmp_path / "api_keys.json.tmp"
    stale.write_bytes(b"[]")
    stale.chmod(0o644)
    save_json(target, [])
    assert oct(target.stat().st_mode & 0o777) == "0o600"


def test_no_collection_runs_while_a_snapshot_is_taken(
    run_venue: Callable[[Callable[[RunningVenue], Awaitable[Any]]], Any],
) -> None:
    """The soak's finding: at the bounds the image is millions of new tuples, and the passes
    of the collector they set off over the whole heap held the event loop up to 2.3 s. With
    the collector off from capture to written (and on again after), none runs meanwhile."""

    async def scenario(venue: RunningVenue) -> None:
        alpha = await venue.client("alpha")
        for i in range(5):
            await alpha.place("AAPLx-USD", "buy", "1", f"186.{i:02d}")
        during: list[str] = []

        def seen(phase: str, info: dict[str, int]) -> None:
            frame = sys._getframe(1)
            while frame is not None:
                if frame.f_code.co_name in ("_capture", "gateway_image", "capture", "write"):
                    during.append(frame.f_code.co_name)
                    return
                frame = frame.f_back  # type: ignore[assignment]

        thresholds = gc.get_threshold()
        gc.set_threshold(1, 1, 1)  # a pass at every new container: the capture makes many
        gc.callbacks.append(seen)
        try:
            assert await venue.server.snapshot() is not None
        finally:
            gc.callbacks.remove(seen)
            gc.set_threshold(*thresholds)
        assert during == [], f"collections while the snapshot was taken: {set(during)}"
        assert gc.isenabled(), "the collector is back on"

    run_venue(scenario)


def test_the_collectors_pauses_nest_and_may_end_in_any_order() -> None:
    """The review's finding: a stop's snapshot began while a periodic one held the pause
    (`stop` cancels the periodic one, then snapshots); the stop's saw the collector off, and
    the cancelled periodic one, ending first, turned it back on under the stop's capture."""
    assert gc.isenabled()
    periodic, stopping = collector_paused(), collector_paused()
    try:
        periodic.__enter__()
        stopping.__enter__()
        periodic.__exit__(None, None, None)
        assert not gc.isenabled(), "off while the stop's snapshot is taken"
        stopping.__exit__(None, None, None)
        assert gc.isenabled(), "on again once the last pause ended"
        with collector_paused(), collector_paused():
            assert not gc.isenabled()
        assert gc.isenabled()
    finally:
        gc.enable()


async def _trade_a_round(maker: Any, taker: Any, round_: int) -> None:
    """Orders that rest, are canceled and are filled: pushes to both accounts' histories and
    closed orders in both order histories and in the engine's memory."""
    rested = await maker.place("AAPLx-USD", "buy", "1", f"185.{round_:02d}")
    await maker.cancel(order_id=rested["order_id"])
    await maker.place("AAPLx-USD", "sell", "1", f"187.{round_:02d}", cl_ord_id=f"o-{round_}")
    await taker.place("AAPLx-USD", "buy", "1", f"187.{round_:02d}", tif="ioc")


def test_a_snapshots_image_is_written_as_taken_though_trading_goes_on_before_its_write(
    run_venue: Callable[[Callable[[RunningVenue], Awaitable[Any]]], Any], tmp_path: Path
) -> None:
    """Session 34: taking the image held the event loop 0.6-1.3 s at the bounds, making every
    history entry and closed order into a new tuple. Now the core takes references that
    trading does not change (a history's pushes copied by one C call, the engine's sealed
    chunks) and the writer makes them into the values: trading goes on between the capture
    and the write, and the file holds the bytes of the image taken at once at the capture."""

    async def scenario(venue: RunningVenue) -> None:
        alpha, beta = await venue.client("alpha"), await venue.client("beta")
        for round_ in range(4):
            await _trade_a_round(alpha, beta, round_)
        server, core = venue.server, venue.server.core
        await core.sequencer.drain()
        at_once = snapshots.Snapshot(
            core.sequencer.last_seq,
            capture(core.venue),
            server.gateway_image(),
            core.first_staleness_us,
        )
        image = core.image()  # no await between: the same state
        expected = snapshots.encode(at_once)
        histories_before = [len(s.history) for s in server.private_streams.streams.values()]
        for round_ in range(4, 8):
            await _trade_a_round(alpha, beta, round_)
        histories = [len(s.history) for s in server.private_streams.streams.values()]
        assert histories != histories_before, "pushes joined the histories after the capture"
        path = snapshots.write(tmp_path / "written", image)
        assert path.read_bytes()[snapshots.HEADER.size :] == expected
        assert snapshots.read(path) == msgspec.msgpack.decode(expected, type=snapshots.Snapshot)

    (tmp_path / "written").mkdir()
    run_venue(scenario)
