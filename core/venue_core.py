"""The core role: the sequencer, the engine with its ledger, the store, snapshots, recovery.

Owns everything that would run in the core of a cluster: commands are taken in one total
order (the sequencer), executed on the `Venue`, journaled, and released as `Executed`
batches only once durable; the ledger writer books durable transfers on the store's
thread; snapshots, recovery (latest snapshot + journal tail), epochs, the clock tick and
reject counting. It knows nothing of connections: whoever sits on the other side of the
bus (`core.bus.CoreListener`) is told of each command as it executes and of each durable
batch, and gives its own part of a snapshot. Never two cores on one data dir: each holds an
exclusive flock on its `LOCK_FILE` for its life, whatever its journal (a JetStream journal
takes no file lock of its own). A start's procedure (recovery, a warm start, a build from the
config) is `core.recovery`'s.
"""

import asyncio
import bisect
import contextlib
import fcntl
import gc
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn, TypeVar

import msgspec

from core import config as venue_config
from core import recovery, snapshots
from core.archive_runs import ArchiveRuns
from core.bus import CoreListener
from core.journal import FileJournal, Journal, JournalError, JournalLocked, refuse_dangling_link
from core.ledger_writer import Bookings, LedgerWriter, bookings_of
from core.sequencer import Executed, RecordCodec, Sequencer
from core.store_thread import StoreThread
from core.stream_snapshots import StreamCheck
from engine.commands import AmendPair
from engine.events import CommandRejected, Event
from engine.reasons import ErrorCode
from engine.snapshot import capture as capture_venue
from engine.venue import Venue
from settlement.ledger import Ledger
from settlement.store import LedgerStore

log = logging.getLogger("venue")
T = TypeVar("T")

JOURNAL_FILE = "journal.log"
LEDGER_FILE = "ledger.sqlite"
LEDGER_FILE_SUFFIXES = ("", "-wal", "-shm", "-journal")  # the store's file and SQLite's own
EPOCH_MAX = 2**63  # above any epoch (µs since 1970): a bisect key for "any epoch"
EPOCHS_FILE = "epochs.json"  # [first seq, epoch] per start: replayed history keeps its epoch
LOCK_FILE = "venue.lock"  # flocked by the core for its life: one venue per data dir
# Written (durably) as the last thing a clean stop of the one-process venue does, and removed
# (durably) at its next start before anything is accepted: a start that finds none follows
# a crash, after which the orders placed with cancel-on-disconnect on are canceled.
CLEAN_STOP_FILE = "clean-stop"
# A data directory made by a start is its owner's alone, whatever the umask: it holds the
# participants' orders and balances (journal, snapshots, ledger) and the issued keys' secrets.
DATA_DIR_MODE = 0o700
# A warning of files open to others names this many (and counts all): a data directory
# holds a few files and up to the snapshots kept; the names say which kind, the count the rest.
OPEN_FILES_NAMED_MAX = 5
# Recovery replays about a minute of journal after the snapshot; more while the disk refuses
# snapshots (`_snapshot_or_warn`): all that came after the last one written.
SNAPSHOT_INTERVAL_S = 60
CLOCK_TICK_S = 0.05  # how often the venue's clock is advanced for gtd expiries and maturity
# The clock also wakes when a dead-man's switch is due sooner than its next tick (its deadline
# is what a market maker counts on; gtd expiries and maturities keep the tick: a canceled gtd
# order's expiry stays queued, and waking for each would journal an `AdvanceClock` that does
# nothing), but never sooner than this after its last wake: uvloop's timers are whole ms.
CLOCK_WAKE_MIN_S = 0.001
REJECT_SUMMARY_INTERVAL_S = 60  # one log line a minute says how many rejects, by reason
# Tries at the data directory's lock when each finds its file removed by a start that gave up
# between the open and the flock: more than a few such starts in a row are not plausible.
LOCK_ATTEMPTS_MAX = 8


def now_us() -> int:
    return time.time_ns() // 1_000


class RecoveryRefused(JournalError):
    """The data directory's files disagree in a way replay cannot settle: never guess."""


class StartStopped(Exception):
    """A stop was asked for (`venue serve`'s stop signals) while the venue started: the start
    stopped at its next safe point (`core.recovery`) and gave the data directory back, as a
    refused start does. Nothing was accepted yet, so nothing acknowledged is lost. The
    message says where the start was."""


class VenueCore:
    """The core's state and machinery around the pure engine, for one data dir."""

    # set by the start (`core.recovery.Recovery.run`), which opens the store first
    store: LedgerStore
    writer: LedgerWriter

    def __init__(
        self,
        config: venue_config.VenueConfig,
        data_dir: Path,
        listener: CoreListener,
        journal: Journal | None = None,
        codec: RecordCodec | None = None,
        stream_check: StreamCheck | None = None,
    ) -> None:
        """`journal`: the data dir's `FileJournal` unless given (the cluster's core passes a
        `JetStreamJournal`, a `codec` whose records carry each command's origin, and the
        `stream_check` its snapshots pass before recovery takes one: core/recovery.py)."""
        self.config = config
        self.data_dir = data_dir
        self.listener = listener
        self.stream_check = stream_check
        # What this start makes, so that a refused start takes it away again (`_give_back`):
        # an operator must not find a directory "used" by a venue that never ran.
        self._made_dirs = missing_dirs(data_dir)
        data_dir.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
        self._made_lock_file = not (data_dir / LOCK_FILE).exists()
        self._made_journal = journal is None and not os.path.lexists(data_dir / JOURNAL_FILE)
        self._made_store = False  # the SQLite store's file, made by this start (`_start`)
        self._made_epochs = not os.path.lexists(data_dir / EPOCHS_FILE)
        self._epoch_first_seq = 0  # this start's first seq, once its epoch is recorded
        self._replaced_epoch: tuple[int, int] | None = None  # an unused one ours replaced
        self._store_open = False  # closed before a refused start removes a file it made
        self._closed = False
        try:  # first: nothing in the directory is read before
            self._lock = lock_data_dir(data_dir)
        except JournalError:  # held by another venue, or a link to nothing
            if journal is not None:  # ours to close, as `stop` would have
                journal.close()
            raise
        try:
            self._set_up(config, data_dir, journal, codec)
        except BaseException:
            self._give_back()
            raise

    def _set_up(
        self,
        config: venue_config.VenueConfig,
        data_dir: Path,
        journal: Journal | None,
        codec: RecordCodec | None,
    ) -> None:
        # The rules a replay of the journal from its start begins under (`first_rules`): a
        # journal begun before they were journaled ran under the config's bound; one begun
        # since sets them in its first record (`Recovery._journal_rules`).
        rules = snapshots.first_rules(None, venue_config.reserve_staleness_max_us(config))
        self.ledger = Ledger()
        self.venue = Venue(rules, self.ledger)
        self.first_staleness_us = rules.reserve_staleness_max_us  # see `Snapshot`
        # How long the last capture held the event loop (ms): nothing is answered meanwhile
        self.capture_ms = 0.0
        # (first seq, epoch) of every earlier start, from the journal's point of view
        self.epochs: list[tuple[int, int]] = _load_epochs(data_dir / EPOCHS_FILE)
        self._recovering = False
        self.epoch = now_us()
        # The venue's own archive of the file journal's old segments, when configured
        self.archive_runs: ArchiveRuns | None = None
        if journal is None:
            segment_bytes = config.venue.journal_segment_bytes
            journal = FileJournal(data_dir / JOURNAL_FILE, segment_bytes=segment_bytes)
            if config.venue.journal_archive_dir:
                archive_dir = Path(config.venue.journal_archive_dir)
                self.archive_runs = ArchiveRuns(data_dir / JOURNAL_FILE, archive_dir)
        self.sequencer = Sequencer(
            self.venue,
            journal,
            now_us,
            self._release,
            on_durable=self._durable,
            on_executed=self._executed,
            codec=codec,
            commit_interval_s=config.venue.commit_interval_ms / 1_000,
            # The file's commit is one local write: cheaper waited for on the loop than handed
            # to a thread and back (unless configured off). JetStream's waits on the network.
            commit_on_loop=isinstance(journal, FileJournal) and config.venue.commit_on_loop,
        )
        # The store's SQLite connection lives on its own thread, like every write to it;
        # the journal's commit feeds it durable batches directly (`_durable`: on the loop for
        # the file journal, unless `commit_on_loop` is off; else on the journal's thread).
        self.store_thread: StoreThread[Bookings] = StoreThread(
            self._book, lambda failure: self.sequencer.on_fatal(failure)
        )
        self._tasks: list[asyncio.Task[None]] = []
        self.rejects: Counter[ErrorCode] = Counter()  # since the last summary line

    # ----------------------------------------------------------------- lifecycle

    async def start(
        self, warm: "WarmStart | None" = None, *, stop_requested: Callable[[], bool] | None = None
    ) -> None:
        """Recover the venue from the latest snapshot and the journal, or build it. A `warm`
        state (a standby's copy, kept from the journal) stands in for the snapshot when it
        is as new: only the journal after it is replayed. A start refused (or failed) gives
        the data directory back as it found it (`_give_back`); so does one told to stop
        (`stop_requested` true at one of its safe points: `StartStopped`)."""
        try:
            await recovery.Recovery(self, stop_requested).run(warm)
        except BaseException:
            await self._close_files()
            self._give_back()
            raise
        warn_if_others_may_read(self.data_dir)  # once started: a refusal stays one line

    def start_tasks(self) -> None:
        """The core's timers: the clock, periodic snapshots, the reject summaries."""
        for work in (self._clock(), self._periodic_snapshots(), self._reject_summaries()):
            self.keep_task(asyncio.create_task(work))

    def keep_task(self, task: "asyncio.Task[None]") -> None:
        """A task that runs till stop; its failure is fatal (a dead timer would go unnoticed)."""
        task.add_done_callback(self._check_task)
        self._tasks.append(task)

    async def snapshot(self) -> Path:
        """Write the state as of the last durable command, without stopping the venue."""
        with collector_paused():  # the image freed before it is back on
            return await self._write_snapshot(await self._capture())

    async def _capture(self) -> snapshots.Snapshot:
        """The state as of the last durable command, its transfers in the store."""
        await self.sequencer.drain()
        # Captured right after the drain, with no await between: every command the image
        # includes is durable, and its transfers are in the store before the file exists.
        started = time.perf_counter()
        image = self.image()
        self.capture_ms = round((time.perf_counter() - started) * 1e3, 1)
        await self._store_flushed()
        return image

    def image(self) -> snapshots.Snapshot:
        """The state now, as a snapshot writes it (`image_for_write`)."""
        return image_for_write(
            self.sequencer.last_seq, self.venue, self.listener, self.first_staleness_us
        )

    async def _write_snapshot(self, image: snapshots.Snapshot) -> Path:
        path: Path = await self._on_io(
            snapshots.write_said, self.data_dir, image, log, self.capture_ms
        )
        return path

    async def _refuse(self, why: str) -> NoReturn:
        """Close the files and refuse to start (`start` then gives the directory back)."""
        await self._close_files()
        raise RecoveryRefused(why)

    async def _close_files(self) -> None:
        """After a refused or failed start: close the store (on its thread), the store's
        thread and the journal; a second call does nothing. A store that does not close
        (its thread failed) stays marked open, so its file is kept."""
        if self._closed:
            return
        self._closed = True
        if self._store_open:
            try:
                await self._on_store(self.store.close)
                self._store_open = False
            except Exception as failure:  # the refusal's own error is the one to report
                log.warning("the ledger store did not close", extra={"error": repr(failure)})
        self.store_thread.close()
        self.sequencer.close()

    def _give_back(self) -> None:
        """After a refused start: remove what this start made that no venue needs, then let
        the directory go. The lock file is removed while still held, so that a start that
        opened it meanwhile finds it unlinked once it has the lock, and takes the new one
        (`lock_data_dir`); a journal this start made goes if it holds no record; the
        directories this start made go if nothing else is left in them. So does a SQLite
        store this start made, once closed: derived from the journal, it is rebuilt from it;
        and an epochs file it made, if it journaled nothing under its epoch."""
        if self._lock.closed:
            return
        if self._made_lock_file:
            (self.data_dir / LOCK_FILE).unlink(missing_ok=True)
        journal = self.data_dir / JOURNAL_FILE
        if self._made_journal and journal.is_file() and journal.stat().st_size == 0:
            journal.unlink()
        if self._made_store and not self._store_open:  # with SQLite's files beside it
            for suffix in LEDGER_FILE_SUFFIXES:
                (self.data_dir / f"{LEDGER_FILE}{suffix}").unlink(missing_ok=True)
        if self._made_epochs and self._executed_nothing():
            (self.data_dir / EPOCHS_FILE).unlink(missing_ok=True)
        self._lock.close()
        for directory in self._made_dirs:  # the deepest first
            try:
                directory.rmdir()
            except OSError:  # not empty (another start's files, or ours kept): left
                return

    def _executed_nothing(self) -> bool:
        """Whether this start journaled no command under the epoch it recorded (if any)."""
        return self._epoch_first_seq == 0 or self.sequencer.last_seq < self._epoch_first_seq

    def _check_task(self, task: "asyncio.Task[None]") -> None:
        if not task.cancelled() and task.exception() is not None:
            self.sequencer.on_fatal(task.exception())

    async def _on_io(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run on the journal's I/O thread (snapshot files)."""
        return await asyncio.get_running_loop().run_in_executor(self.sequencer.io, function, *args)

    async def _on_store(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run on the ledger store's thread, where its SQLite connection lives, after every
        batch booked so far."""
        return await asyncio.wrap_future(self.store_thread.call(function, *args))

    async def stop(self, *, mark_clean: bool = False) -> None:
        """Stop the timers, write a last snapshot, close the files (the gateway has drained
        and closed its connections first); with `mark_clean`, then say that this stop was
        clean (`CLEAN_STOP_FILE`), while the data directory is still ours."""
        for task in self._tasks:
            task.cancel()
        if self.archive_runs is not None:  # a run in flight ended: this stop's is the last
            await self.archive_runs.stop()
        self._log_rejects()
        await self.snapshot()
        await self._on_store(self.store.close)
        self.store_thread.close()
        self.sequencer.close()
        if mark_clean:
            self.mark_clean_stop()
        self._lock.close()

    def mark_clean_stop(self) -> None:
        """Say, durably, that the venue stops cleanly (read by `take_clean_stop_mark`)."""
        write_durably(self.data_dir / CLEAN_STOP_FILE, b"")

    def take_clean_stop_mark(self) -> bool:
        """Whether the last run stopped cleanly (`stop(mark_clean=True)`); the mark is removed
        durably, so that a crash of this run is not taken for a clean stop."""
        path = self.data_dir / CLEAN_STOP_FILE
        if not path.exists():
            return False
        path.unlink()
        snapshots.fsync_directory(self.data_dir)
        return True

    # ----------------------------------------------------------------- epochs

    def epoch_of(self, seq: int) -> int:
        """The epoch a command's private events were first sent in: this start's, or while
        recovering, that of the start which executed it (a journal written before epochs
        were recorded falls back to this start's)."""
        if not self._recovering:
            return self.epoch
        index = bisect.bisect_right(self.epochs, (seq, EPOCH_MAX)) - 1
        return self.epochs[index][1] if index >= 0 else self.epoch

    def _record_epoch(self) -> None:
        """Durably note that commands from the next seq on are this start's epoch."""
        first_seq = self.sequencer.last_seq + 1
        if self.epochs and self.epochs[-1][0] == first_seq:
            # the last start executed nothing: it is replaced, not kept (put back by
            # `forget_unused_epoch`)
            self._replaced_epoch = self.epochs.pop()
        self.epochs.append((first_seq, self.epoch))
        save_json(self.data_dir / EPOCHS_FILE, self.epochs)
        self._epoch_first_seq = first_seq

    def forget_unused_epoch(self) -> None:
        """Take this start's epoch back out of `epochs.json` if it journaled nothing under
        it: a start that failed before it served (its listen refused, the port taken since
        `venue serve` checked it) leaves the file as it found it (until session 30 its entry
        stayed, replaced by the next start's). One that journaled commands (a venue built
        from the config, the cod cancels after a crash, a rule or the switches' shift)
        keeps it: those records were executed under it, and every replay must give them
        that epoch. Called while the data directory is still held, before the stop."""
        if self._epoch_first_seq == 0 or not self._executed_nothing():
            return
        assert self.epochs[-1] == (self._epoch_first_seq, self.epoch), "ours is the last"
        self.epochs.pop()
        if self._replaced_epoch is not None:
            self.epochs.append(self._replaced_epoch)
        self._epoch_first_seq = 0
        if self._made_epochs:
            (self.data_dir / EPOCHS_FILE).unlink(missing_ok=True)
        else:
            save_json(self.data_dir / EPOCHS_FILE, self.epochs)

    # ----------------------------------------------------------------- outcomes

    def _executed(self, executed: Executed) -> None:
        """Right after a command executes: take its transfers, then tell the gateway."""
        # this command's alone; most (a requote's amend) book none: no call, no new list
        if self.ledger.undrained:
            executed.transfers = self.ledger.drain()
        if type(executed.command) is AmendPair:  # where its ask's events begin, read now
            executed.split = self.venue.pair_split
        self.listener.executed(executed)

    def _release(self, batch: list[Executed]) -> None:
        """Everything in `batch` is durable: count its rejects, hand it to the gateway."""
        for executed in batch:
            events = executed.events  # `rejection`, inline: this runs for every command
            if events and type(events[-1]) is CommandRejected and executed.command is not None:
                self._count_reject(events[-1])
            # an `AmendPair`'s bid's refusal is not its last event (`split`: 0 for the others)
            if executed.split and type(refused := events[executed.split - 1]) is CommandRejected:
                self._count_reject(refused)
        self.listener.released(batch)

    def _durable(self, batch: list[Executed]) -> None:
        """Where the batch was committed (the loop, for the file journal by default; else the
        journal's thread), right after it became durable: queue it for the ledger store,
        which books it on its own thread.

        Only durable commands reach the store (each command's transfers were taken from
        the ledger as it executed), so the store is never ahead of the journal; it is
        derived and idempotent, and caught up on every start. A store that falls behind
        blocks this call, and so the next commit (`store_thread.QUEUE_COMMANDS_MAX`): with the
        file journal, the loop. The store gets the batch's transfers and registrations
        (`bookings_of`), not the batch: the batch is freed here, where it is warm.
        """
        self.store_thread.book(bookings_of(batch), len(batch))

    def _book(self, batches: list[Bookings]) -> None:
        """On the store's thread, batches gathered over a while: registrations (assets,
        accounts, attestations) first, then the transfers naming them."""
        self.writer.book(batches)

    async def _store_flushed(self) -> None:
        """Wait until the store holds every transfer released so far (not those released
        while waiting: under steady load the queue is never empty)."""
        await self._on_store(lambda: None)  # runs after every batch queued before it

    # ----------------------------------------------------------------- timers

    async def _clock(self) -> None:
        while True:
            await asyncio.sleep(self._next_tick_s())
            self.sequencer.tick()

    def _next_tick_s(self) -> float:
        """Seconds until the clock's next tick: `CLOCK_TICK_S`, or less when a dead-man's
        switch is due before that, so it fires within about a millisecond of its deadline.
        Read once per wake, not per command: a switch armed during a sleep, due before that
        sleep ends (a `timeout_ms` under the tick's 50), fires at the wake."""
        due_in_us = self.sequencer.venue.next_switch_due_us() - self.sequencer.clock_us()
        return min(CLOCK_TICK_S, max(due_in_us / 1e6, CLOCK_WAKE_MIN_S))

    async def _periodic_snapshots(self) -> None:
        """Every `SNAPSHOT_INTERVAL_S` with commands since the last: a snapshot. One the disk
        refuses (full, read-only, an I/O error) is a warning, tried again at the next
        interval, not a stop (`snapshots.write_or_warn`). Until session 32 it was fatal: a
        cluster's active core with a full data directory exited 70 (`fatal: OSError: [Errno
        28] No space left on device`, no path) and its standby took over, ~10 s without
        answers."""
        await snapshots.periodically(
            lambda: SNAPSHOT_INTERVAL_S, lambda: self.sequencer.last_seq, self._snapshot_or_warn
        )

    async def _snapshot_or_warn(self) -> bool:
        """A periodic snapshot: written (True), or its disk's refusal logged (False). Only the
        file's write is forgiven: a journal's or store's failure met first is raised (fatal).
        One written starts the journal's archive, when configured (`ArchiveRuns`)."""
        with collector_paused():
            written = await self._snapshot_or_warn_paused()
        if written and self.archive_runs is not None:
            self.archive_runs.after_snapshot()
        return written

    async def _snapshot_or_warn_paused(self) -> bool:
        """`_snapshot_or_warn`'s work; its image dies with its frame."""
        image = await self._capture()
        written: bool = await self._on_io(
            snapshots.write_or_warn,
            self.data_dir,
            image,
            log,
            SNAPSHOT_INTERVAL_S,
            self.capture_ms,
        )
        return written

    def _count_reject(self, rejected: CommandRejected) -> None:
        """Counted for the summary line; one line each only at debug (checked first: cheap)."""
        self.rejects[rejected.reason] += 1
        if log.isEnabledFor(logging.DEBUG):
            fields = {"account": rejected.account, "command": rejected.command}
            reason = {"reason": rejected.reason.name.lower(), "detail": rejected.detail}
            log.debug("rejected", extra=fields | reason | {"symbol": rejected.symbol})

    def _log_rejects(self) -> None:
        """The rejects since the last summary, by reason (nothing when there were none)."""
        if self.rejects:
            counts = {reason.name.lower(): n for reason, n in sorted(self.rejects.items())}
            log.info("rejects", extra={"rejects": counts, "total": self.rejects.total()})
            self.rejects.clear()

    async def _reject_summaries(self) -> None:
        while True:
            await asyncio.sleep(REJECT_SUMMARY_INTERVAL_S)
            self._log_rejects()


def image_for_write(
    seq: int, venue: Venue, listener: CoreListener, first_staleness_us: int
) -> snapshots.Snapshot:
    """The snapshot of `venue` after record `seq` with `listener`'s part, taken on the event
    loop (nothing is answered meanwhile): its long parts (histories, closed orders) `Later`
    ones, references that trading (or a standby's following) does not change, made into their
    values by the writer thread. The active core's (`VenueCore.image`) and a standby's
    (`core.cluster_core.Follower.capture`)."""
    return snapshots.Snapshot(
        seq,
        capture_venue(venue, later=True),
        listener.gateway_image(later=True),
        first_staleness_us,
    )


@dataclass
class WarmStart:
    """A standby's state at takeover: the venue after record `seq`, every transfer it booked
    (the store may lag them: the store's catch-up takes what it lacks)."""

    seq: int
    venue: Venue
    transfers: list[Any]


def rejection(events: list[Event]) -> CommandRejected | None:
    last = events[-1] if events else None
    return last if isinstance(last, CommandRejected) else None


def lock_data_dir(data_dir: Path, *, shared: bool = False) -> IO[bytes]:
    """Flock `data_dir`'s `LOCK_FILE` (exclusive for a core, shared for a reader) and return
    the open file, which holds the lock until closed; `JournalLocked` if someone else holds it.
    A shared lock opens an existing file only (readers create nothing). An exclusive lock is
    on the file the directory names once it is held: a refused start removes the lock file
    it made while holding it (`VenueCore._give_back`), and a lock on that unlinked file would
    let two venues in, so it is taken again on the file there now."""
    path = data_dir / LOCK_FILE
    refuse_dangling_link(path, "making a lock file there")
    for _ in range(LOCK_ATTEMPTS_MAX):
        file = path.open("rb") if shared else path.open("ab")  # O_CLOEXEC: children lack it
        try:
            fcntl.flock(file, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            raise JournalLocked(path) from None
        if shared or _names(path, file):  # a reader's probe of a start that gave up: free
            return file
        file.close()
    raise JournalLocked(path)


def _names(path: Path, file: IO[bytes]) -> bool:
    """Whether `path` names the open `file` (not removed, nor replaced, since it was opened)."""
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(file.fileno())
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def warn_if_others_may_read(data_dir: Path) -> None:
    """Warn when `data_dir` or a file in it lets others in (group or other bits): one made
    before session 32 kept its 0755, and its journal and store their 0644, every
    participant's orders and balances readable by every local user (and a 0644 file stays
    readable through a directory chmod'ed 0711 by hand). Warned, not changed: the modes are
    the operator's (a backup agent's group, say). Never raises: it runs once the start is
    done, outside its clean-up (a file gone between the scan and its stat is no failure)."""
    try:
        mode = data_dir.stat().st_mode & 0o777
        files = _files_open_to_others(data_dir)
    except OSError as unread:
        log.warning("data directory's modes not checked", extra={"error": str(unread)})
        return
    if mode & 0o077 or files:
        why = f"readable by others: chmod -R go-rwx {data_dir} (it holds participants' data)"
        named = files[:OPEN_FILES_NAMED_MAX]
        log.warning(
            "data directory open to others",
            extra={"mode": oct(mode), "files": named, "files_open": len(files), "why": why},
        )


def _files_open_to_others(data_dir: Path) -> list[str]:
    """The names of the regular files directly in `data_dir` with group or other bits that
    hold something (not the empty `LOCK_FILE`, made 0644 as ever: it holds no data)."""
    found = []
    with os.scandir(data_dir) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                stat = entry.stat(follow_symlinks=False)
                if stat.st_mode & 0o077 and stat.st_size:
                    found.append(entry.name)
    return sorted(found)


def missing_dirs(path: Path) -> list[Path]:
    """`path` and its ancestors that do not exist yet, the deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def check_data_dir_free(data_dir: Path) -> None:
    """`JournalLocked` if another process holds `data_dir` (`lock_data_dir`), as `VenueCore`
    would say: for a start with work to do before it takes the lock (a lease), so that a
    second venue on the directory gets this answer first. Creates nothing."""
    if (data_dir / LOCK_FILE).exists():
        lock_data_dir(data_dir).close()


def _load_epochs(path: Path) -> list[tuple[int, int]]:
    return load_json(path, list[tuple[int, int]], [])


def load_json(path: Path, kind: type[T], empty: T) -> T:
    """What `save_json` wrote to `path` as a `kind`, or `empty` when there is no file; a file
    that does not decode (edited by hand, a damaged disk), or a symbolic link to nothing,
    refuses the start in one line."""
    refuse_dangling_link(path, "taking it for none yet")
    if not path.exists():
        return empty
    try:
        return msgspec.json.decode(path.read_bytes(), type=kind)
    except msgspec.DecodeError as failure:
        raise RecoveryRefused(f"{path} is damaged ({failure}): restore it from a backup") from None


@dataclass
class _CollectorPauses:
    """The pauses of the cyclic collector now open, and whether it ran before the first."""

    open: int = 0
    collecting_before: bool = True


_collector_pauses = _CollectorPauses()


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic collector off for the block (a snapshot's capture and write), then as it
    was. The image is millions of new tuples and lists at the bounds, all freed by reference
    counting once written; counted by the collector meanwhile, they set off passes over the
    whole heap, on the event loop, each longer as the heap grows (a long run: captures of
    0.8, 1.5 and 2.3 s in a row). The request path makes no cyclic garbage to wait for it
    (docs/gateway.md, "The garbage collector"). Pauses nest and may end in any order (a
    stop's snapshot begins while a periodic one, then cancelled, holds its pause): counted,
    the collector is back on, if it was on before the first, when the last ends."""
    pauses = _collector_pauses
    if not pauses.open:
        pauses.collecting_before = gc.isenabled()
        gc.disable()
    pauses.open += 1
    try:
        yield
    finally:
        pauses.open -= 1
        if not pauses.open and pauses.collecting_before:
            gc.enable()


def write_durably(path: Path, content: bytes) -> None:
    """Create `path` with `content`, both on disk (the file and its directory entry)."""
    with naming(path), path.open("wb") as file:
        file.write(content)
        file.flush()
        os.fsync(file.fileno())
    snapshots.fsync_directory(path.parent)


@contextlib.contextmanager
def naming(path: Path) -> Iterator[None]:
    """An `OSError` of a write or fsync to `path` with `path` as its file: the kernel's names
    none (`No space left on device` alone), and the operator must know which disk is full."""
    try:
        yield
    except OSError as failed:
        if failed.filename is not None or failed.errno is None:
            raise
        raise OSError(failed.errno, failed.strerror, str(path)) from failed


def save_json(path: Path, value: Any) -> None:
    """Write `value` as JSON atomically and durably, readable by the venue's user only (the
    issued keys hold secrets): the rename is made durable too, as `write_durably`'s file is
    (an issued key answered once stored must survive a power loss; every caller is a start's
    or an admin command's, none the order path's). A symbolic link to a file stays one: the
    file it names is replaced, beside it (a link to nothing is refused, as `load_json` refuses
    it). The copy is `NAME.tmp` beside it, never the file itself (a `path` that ends in .tmp
    had its own file truncated, then unlinked, by a failed write until session 28)."""
    refuse_dangling_link(path, "writing a new file there")
    path = Path(os.path.realpath(path))
    temporary = path.with_name(f"{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with naming(path), os.fdopen(descriptor, "wb") as file:
            os.fchmod(descriptor, 0o600)  # a copy left by a crash keeps its mode through O_CREAT
            file.write(msgspec.json.encode(value))
            file.flush()
            os.fsync(file.fileno())
    except BaseException:  # a full disk: the file as it was, and no half-written copy beside it
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, path)
    with naming(path.parent):
        snapshots.fsync_directory(path.parent)
