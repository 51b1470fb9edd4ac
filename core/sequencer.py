"""The sequencer: one ordered stream of commands into the venue, released only when durable.

Owns time and order. Each submitted command is stamped with the next sequence number and
the time (never earlier than the previous command's), executed on the `Venue` at once, and
added to the journal batch of the current event-loop turn. At the end of the turn the batch
is encoded, written and made durable in one go (group commit); one batch is in flight at a
time, and the next leaves at the end of the turn after it comes back. Where the commit runs
is the caller's choice (`commit_on_loop`):

- on the loop, for a journal whose commit is a local write (the file journal: one O_DSYNC
  write, ~0.1 ms here): the loop waits for it, then releases the batch at once. The commands
  that arrive meanwhile are read in the next turn, together, and make the next batch. No
  thread hand-off: at 4,000-5,000 actions/s it costs 12-13% less server CPU per action than
  the thread, and the ack latency is lower too (docs/gateway.md);
- on the journal's thread, for a journal whose commit waits on the network (JetStream), or
  a file on a disk too slow for the loop to wait (`[venue] commit_on_loop = false`, or
  found out at run time: most of a window of commits held the loop too long for the disk's
  sake, `core.commit_watch`):
  later commands go on executing into the next batch meanwhile, and the thread hands the
  batch back to the loop once (`call_soon_threadsafe`: no executor futures, no task).

When a batch is durable it goes to `on_durable` (derived stores) and then the outputs of its
commands go to `release` in order; commands submitted one after another with the same origin are
never split between batches, so their outcomes are released together. So nothing leaves
the process before its command is on disk, and the journal holds exactly what was
executed: replaying it rebuilds the same state. `commit_interval_s` (0: off) holds a
busy venue's next commit back until that long after the previous one started: fewer,
larger batches for CPU, paid in latency (docs/configuration.md, `commit_interval_ms`). Busy
means commands queued up behind a commit on the thread; on the loop, where nothing can
queue up behind one, a commit that started less than the interval ago.
"""

import asyncio
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, cast

import msgspec

from core.commit_watch import SLOW_COMMIT_S, SlowCommitWatch
from core.journal import Journal, JournalError
from engine.commands import AdvanceClock, AmendPair, AnyCommand, Command
from engine.events import CommandRejected, Event
from engine.venue import REFUSED_UNREAD, Venue

log = logging.getLogger("venue.sequencer")

BATCH_COMMANDS_MAX = 10_000  # one fsync covers at most this many; the rest wait a turn
COMMIT_INTERVAL_S_MAX = 0.1  # a commit held back longer would be felt as an outage, not a lag
LONG_COMMIT_S = 1.0  # a commit this long is logged, wherever it runs: the venue stood still
# While a dead-man's switch is armed, a quiet venue's clock is journaled at least this often:
# a venue that goes down counts its outage from its last command (`ShiftDeadManDeadlines`),
# so this bounds how much time a switch can be given back beyond the outage itself.
SWITCH_CLOCK_US = 1_000_000


class Executed(msgspec.Struct):
    """A command as executed: its sequence number, stamped form, events and who sent it.

    A barrier (`command` None, no sequence number) carries no command: it is released with
    the batch it joined, after every command submitted before it. A struct, not a dataclass:
    one is made per command and per barrier, and its `__init__` in C costs ~0.2 µs against
    the dataclass's ~0.6 (Python code with two list factories).
    """

    seq: int
    command: Command | None
    events: list[Event]
    origin: Any  # whatever the submitter needs to route the outcome (a request, a timer)
    pushes: list[Any] = msgspec.field(default_factory=list)  # outputs made at execution
    # ledger transfers it booked: set by the core as it executes (an empty tuple until then,
    # shared, rather than a list per command that is replaced at once)
    transfers: Sequence[Any] = ()
    # An `AmendPair`'s: where its ask's events begin (`Venue.pair_split`, read right after
    # it executed: `VenueCore._executed`, a cluster gateway's `Replica`), and how many of
    # `pushes` are its bid's (the gateway's `PrivateStreams.assign_pair`); 0 for any other
    split: int = 0
    bid_pushes: int = 0


def pair_sides(executed: Executed) -> tuple[Executed, Executed]:
    """An executed `AmendPair` as the two `AmendOrder`s it did, each with its own events and
    the pair's seq and origin: what a command of each would have given. One refused whole
    (by a core of an earlier build that could not read it: `RefuseUnreadCommand`, all its
    events the bid's, `split` at their end) gives the ask that refusal too; an ask with no
    events is a broken invariant otherwise."""
    pair = cast(AmendPair, executed.command)
    bid, ask = pair.sides()
    events, split, seq, origin = executed.events, executed.split, executed.seq, executed.origin
    bid_events, ask_events = events[:split], events[split:]
    if not ask_events:  # refused unread: the ask's outcome is that refusal (an amend has one)
        refusal = events[-1] if events else None
        assert type(refusal) is CommandRejected and refusal.command == REFUSED_UNREAD, (
            f"an AmendPair's ask has no events at seq {seq}, and it was not refused unread"
        )
        ask_events = [refusal]
    return (
        Executed(seq, bid, bid_events, origin),
        Executed(seq, ask, ask_events, origin),
    )


Release = Callable[[list[Executed]], None]
# A replay's progress: (the seq reached, the records replayed so far).
Progress = Callable[[int, int], None]
_ToJournal = tuple[list[Executed], asyncio.AbstractEventLoop]

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(AnyCommand)


def describe_failure(failure: BaseException | None) -> str:
    """A failure on one log line: its type and message (a driver's message spans lines)."""
    if failure is None:
        return "None"
    message = " ".join(str(failure).split())
    return f"{type(failure).__name__}: {message}" if message else type(failure).__name__


# None in a venue. Set by the tests alone (tests/conftest.py): a test that reaches the fatal
# path then fails by itself, where the exit would end the whole pytest run with 70 unreported.
fatal_hook: Callable[[BaseException | None], None] | None = None


def exit_fatally(failure: BaseException | None) -> None:
    """End the process at once with 70, once the failure is logged: nothing after a broken
    invariant or lost durability may run (not even `finally` clauses). Under pytest, the
    `fatal_hook` instead (it returns)."""
    if fatal_hook is not None:
        fatal_hook(failure)
        return
    logging.shutdown()
    os._exit(70)


# Held by the first failure that ends the process, for good (`os._exit` ends it holding it):
# a second one, on another thread (the loop's call into a ledger store whose thread just
# failed), waits there for the end instead of logging a second fatal line.
_dying = threading.Lock()


def _die(failure: BaseException | None) -> None:
    """Crash loudly, in one line: recovery is by replay of what is durable (ARCHITECTURE
    rule 7). One line for the process: a failure that races the first to it logs nothing
    (until session 30 the ledger store's thread and the loop could each log one)."""
    with _dying:  # let go only where `exit_fatally` returns (`fatal_hook`, under tests)
        log.critical(
            "fatal: %s; stopping so that recovery replays the journal", describe_failure(failure)
        )
        exit_fatally(failure)


def _batch_end(pending: list[Executed]) -> int:
    """Where the next batch ends: at most `BATCH_COMMANDS_MAX`, but never between commands
    of one origin (a request's or a notice's), so they are released together."""
    end = min(len(pending), BATCH_COMMANDS_MAX)
    while end < len(pending) and pending[end].origin is not None:
        if pending[end].origin is not pending[end - 1].origin:
            break
        end += 1
    return end


class RecordCodec(Protocol):
    """How a journal record is made from an executed command and read back (replay)."""

    def encode(self, executed: Executed) -> bytes: ...

    def decode(self, payload: bytes) -> Command: ...


def encode_command(command: Command) -> bytes:
    return _encoder.encode(command)


def decode_command(payload: bytes) -> Command:
    command: Command = _decoder.decode(payload)
    return command


class UnreadableRecord(JournalError):
    """A journal record that does not decode as this venue's kind of record: written by the
    other kind (a `venue serve --nats` stream taken over by a cluster's core, or the
    reverse), by a newer version, or damaged. Replay (and `venue verify`) stops there with
    nothing of it executed."""

    def __init__(self, seq: int, cluster: bool, failure: Exception) -> None:
        reader, other = (
            ("a cluster's", "`venue serve --nats`")
            if cluster
            else (
                "a one-process venue's",
                "a cluster's core",
            )
        )
        super().__init__(
            f"journal record {seq} is not {reader} record ({failure}): it was written by"
            f" {other} or by a newer version of the venue, or it is damaged; a cluster and"
            " `venue serve --nats` each need a NATS (stream) of their own"
        )


def decode_record(seq: int, payload: bytes, codec: "RecordCodec | None" = None) -> Command:
    """Journal record `seq` as a command: the one-process venue's (no `codec`) or as `codec`
    reads it; `UnreadableRecord` if it is not such a record."""
    try:
        return decode_command(payload) if codec is None else codec.decode(payload)
    except msgspec.DecodeError as failure:  # a ValidationError too
        raise UnreadableRecord(seq, codec is not None, failure) from None


class Sequencer:
    def __init__(
        self,
        venue: Venue,
        journal: Journal,
        clock_us: Callable[[], int],
        release: Release,
        on_durable: Release | None = None,
        on_executed: Callable[[Executed], None] | None = None,
        on_fatal: Callable[[BaseException | None], None] | None = None,
        codec: "RecordCodec | None" = None,
        commit_interval_s: float = 0.0,
        commit_on_loop: bool = False,
        slow_commit_s: float = SLOW_COMMIT_S,
    ) -> None:
        if not 0 <= commit_interval_s <= COMMIT_INTERVAL_S_MAX:
            raise ValueError(
                f"commit_interval_s {commit_interval_s} is not within 0 to {COMMIT_INTERVAL_S_MAX}"
            )
        self.venue = venue
        # None: a journal record is the stamped command alone (the embedded venue); the
        # cluster's records carry the command's origin too (core.nats_bus).
        self.codec = codec
        self.on_executed = on_executed  # sees each command right after it executes
        self.on_fatal = on_fatal or _die  # a broken invariant or lost durability
        self.journal = journal
        self.clock_us = clock_us
        self.release = release
        # Each batch once durable and before its release (on the journal's thread, or on the
        # loop with `commit_on_loop`); it may block (a derived store's backpressure), which
        # holds back the next commit (and with `commit_on_loop`, the loop).
        self.on_durable = on_durable
        self.commit_on_loop = commit_on_loop
        self.slow_commits = SlowCommitWatch(slow_commit_s)  # on the loop: too slow for it?
        self.last_seq = journal.last_seq()
        self._stamped_us = -1  # the last time `stamp_us` gave (-1: none; 0 is "unstamped")
        self._pending: list[Executed] = []
        self._flush_scheduled = False
        self.commit_interval_s = commit_interval_s
        self._commit_started_s = float("-inf")  # the loop's time the last commit started
        self._held = False  # pending commands wait for the commit interval (a timer is set)
        self._busy = False  # commands queued up behind the last commit: the venue is busy
        self._hold: asyncio.TimerHandle | None = None  # the held commit's timer
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop it last ran on
        self._in_flight: list[Executed] | None = None  # the batch being committed
        self._failure: BaseException | None = None  # the commit that failed: fatal
        self._drained: list[asyncio.Future[None]] = []  # `drain` callers, woken when idle
        # The journal's thread takes (batch, loop) and gives the batch back on that loop;
        # None stops it. At most one batch is in it at a time.
        self._to_journal: queue.SimpleQueue[_ToJournal | None] = queue.SimpleQueue()
        self._journal_thread: threading.Thread | None = None
        self.io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="io")  # snapshot files

    def recover(
        self,
        after_seq: int = 0,
        on_replayed: Release | None = None,
        on_progress: Progress | None = None,
        progress_records: int = 1_000,
    ) -> int:
        """Replay the journal after `after_seq` into the venue; how many commands it held.

        `on_replayed` sees each replayed command with its events (to rebuild derived state,
        such as private event history); nothing is released to anyone. `on_progress` gets
        the seq reached and the count so far once every `progress_records` records: counted
        here, since a call per record cost a replay ~3%.
        """
        assert progress_records > 0, f"progress every {progress_records} records"
        replayed = 0
        progress_at = progress_records  # one comparison a record; the rest once every so many
        self.last_seq = after_seq
        for seq, payload in self.journal.replay(after_seq):
            assert seq == self.last_seq + 1, f"journal gap before {seq}"
            command = decode_record(seq, payload, self.codec)
            events = self.venue.execute(command)
            self.last_seq = seq
            replayed += 1
            executed = Executed(seq, command, events, None)
            if self.on_executed is not None:
                self.on_executed(executed)
            if on_replayed is not None:
                on_replayed([executed])
            if replayed == progress_at and on_progress is not None:
                progress_at += progress_records
                on_progress(seq, replayed)
        assert self.last_seq == self.journal.last_seq(), "the snapshot is newer than the journal"
        return replayed

    def stamp_us(self) -> int:
        """The time a command built now executes at: the clock's, never earlier than the
        venue's. A command built with it for `submit` is not copied to be stamped."""
        clock = self.clock_us()  # `_now_us`, inline: a call less per request
        venue_us = self.venue.ts_us
        self._stamped_us = stamp = clock if clock > venue_us else venue_us
        return stamp

    def _now_us(self) -> int:
        clock = self.clock_us()
        venue_us = self.venue.ts_us
        return clock if clock > venue_us else venue_us

    def submit(self, command: Command, origin: Any = None) -> Executed:
        """Stamp and execute `command` now; its outcome is released once it is durable.

        A command built with the last `stamp_us()` (in this process) keeps its `ts_us`,
        unless a later command ran before it: it saves a copy of the command (~0.25 µs).
        Any other is stamped by a copy, as the journal must hold it: a time from elsewhere (a
        cluster's gateway, another process) is never trusted, so it cannot move the venue's
        clock ahead.

        A failure while executing is a broken invariant: the venue's state may be half
        changed, so it is fatal (`on_fatal`), never answered and carried on from.
        """
        ts_us = command.ts_us
        if ts_us != self._stamped_us or ts_us < self.venue.ts_us:
            command = msgspec.structs.replace(command, ts_us=self._now_us())
        try:
            executed = Executed(self.last_seq + 1, command, self.venue.execute(command), origin)
            if self.on_executed is not None:
                self.on_executed(executed)
        except BaseException as failure:
            self.on_fatal(failure)
            raise
        self.last_seq = executed.seq
        self._pending.append(executed)
        if not self._flush_scheduled:  # once a turn: the call is skipped for the rest
            self._schedule()
        return executed

    def submit_all(self, commands: Iterable[Command], origin: Any) -> None:
        """`submit` of each command in turn, all with one origin (a batch's ops, a requote's
        two amends): one call for them all, each still its own seq, journal record and
        outcome (~17 bytecodes less a command than a call of `submit` each)."""
        venue, on_executed, pending = self.venue, self.on_executed, self._pending
        try:
            for command in commands:
                ts_us = command.ts_us
                if ts_us != self._stamped_us or ts_us < venue.ts_us:  # as `submit` stamps
                    command = msgspec.structs.replace(command, ts_us=self._now_us())
                executed = Executed(self.last_seq + 1, command, venue.execute(command), origin)
                if on_executed is not None:
                    on_executed(executed)
                self.last_seq = executed.seq
                pending.append(executed)
        except BaseException as failure:
            self.on_fatal(failure)
            raise
        if not self._flush_scheduled:
            self._schedule()

    def _schedule(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._running_loop().call_soon(self._start_commit)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """The loop this runs on: the last one asyncio gave while that one still runs (one
        venue runs on one loop at a time). `asyncio.get_running_loop()` makes a getpid system
        call each time, and this is asked about three times a batch (~0.75 a request at
        4,000/s, where a batch is about a request); `is_running` is a flag."""
        loop = self._loop
        if loop is None or not loop.is_running():
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def _held_back(self) -> bool:
        """Hold the pending commands until the commit interval is over (`commit_interval_s`).

        Asked only when commands queued up behind the last commit (a busy venue: an idle
        one's command commits at once, so a quiet venue's acks wait for nothing; on the loop,
        always: the wait is then what is left of the interval, none after a quiet spell), at
        the end of the turn, when the batch is known: with no command pending (queries' barriers
        only, everything before them durable) nothing is held, and queries' barriers ahead
        of the first command go at once (unless they are that command's own request's)."""
        loop = self._running_loop()
        wait_s = self._commit_started_s + self.commit_interval_s - loop.time()
        pending = self._pending
        first = next((i for i, e in enumerate(pending) if e.command is not None), None)
        if wait_s <= 0 or first is None:
            return False
        end, origin = first, pending[first].origin  # a request's outcomes stay together
        while end and origin is not None and pending[end - 1].origin is origin:
            end -= 1
        # Held from here on: what the barriers' release submits joins the held commit (a
        # `_schedule` now would start a second hold and leave this timer behind).
        self._flush_scheduled = self._held = True
        if self._hold is not None:
            self._hold.cancel()
        # When it fires, the commit goes: not asked again whether to wait, because the loop's
        # clock (whole milliseconds on uvloop) may still be a hair short of the interval's end.
        self._hold = loop.call_later(wait_s, self._start_commit, True)
        if end:  # nothing in flight: everything before these barriers is durable
            barriers = pending[:end]
            del pending[:end]
            self._release(barriers)
        return True

    def barrier(self, origin: Any, events: list[Event] | None = None) -> None:
        """Release `origin` once everything submitted so far is durable (for queries).

        `events` travel with it unexecuted: an answer decided without the venue (a batch op
        refused before it could become a command) keeps its place in the order.
        """
        self._pending.append(Executed(0, None, events or [], origin))
        self._schedule()

    def tick(self) -> None:
        """Let time pass in the venue when something (a gtd expiry, a maturity, a dead-man's
        switch's deadline) is due, or when a switch is armed and nothing was sequenced for
        `SWITCH_CLOCK_US`: a restart or a takeover then knows, within that, when the venue
        stopped, and gives the switches back the outage, not the whole time since the last
        order (before session 29 a switch on a quiet venue could get its full timeout back)."""
        venue, now_us = self.venue, self.clock_us()
        if venue.next_due_us() <= now_us or (
            venue.dead_man_deadlines and now_us - venue.ts_us >= SWITCH_CLOCK_US
        ):
            self.submit(AdvanceClock(), origin=None)

    def _start_commit(self, held_over: bool = False) -> None:
        """Commit the next batch (on the loop, or on the journal's thread), unless one is in
        flight on the thread (then it goes when that one comes back: meanwhile the pending
        commands grow a batch). `held_over`: the commit interval's timer, which waited."""
        self._flush_scheduled = self._held = False
        busy, self._busy = self._busy or self.commit_on_loop, False
        if (
            busy
            and self.commit_interval_s
            and not held_over
            and self._in_flight is None
            and self._held_back()
        ):
            return
        while self._in_flight is None and self._pending:
            pending = self._pending
            if len(pending) <= BATCH_COMMANDS_MAX:  # the usual turn: all of it, not copied
                batch, self._pending = pending, []
            else:
                end = _batch_end(pending)
                batch = pending[:end]
                del pending[:end]
            # a command first (the usual), else any: barriers alone are released at once
            if batch[0].command is not None or any(e.command is not None for e in batch):
                self._send_to_journal(batch)
                return
            # Barriers only, and nothing in flight: all before them is durable already.
            self._release(batch)
        if self._drained and self._in_flight is None:
            self._wake_drains(None)  # nothing in flight, nothing pending: drained

    def _send_to_journal(self, batch: list[Executed]) -> None:
        self._in_flight = batch
        if self.commit_interval_s:
            self._commit_started_s = self._running_loop().time()
        if self.commit_on_loop:  # the loop waits for the write: released as it returns
            sampled = self.slow_commits.starting()
            failure = self._commit(batch)
            # measured as the commit ends (`finished` cannot raise), acted on once released
            move_off = sampled and failure is None and self.slow_commits.finished()
            self._committed(batch, failure)
            if move_off:
                self._move_commits_off_loop()
            return
        if self._journal_thread is None:
            self._journal_thread = threading.Thread(
                target=self._journal_work, name="journal", daemon=True
            )
            self._journal_thread.start()
        self._to_journal.put((batch, self._running_loop()))

    def _journal_work(self) -> None:
        """The journal's thread: commit each batch and hand it back to its loop once. A
        failure leaves the outcome of commands unknown: it goes back too, to be fatal there."""
        while (item := self._to_journal.get()) is not None:
            batch, loop = item
            failure = self._commit(batch)
            loop.call_soon_threadsafe(self._committed, batch, failure)
            if failure is not None:
                return

    def _move_commits_off_loop(self) -> None:
        """The next batches commit on the journal's thread (started with the first), for the
        rest of the run: measured on the thread, a commit's time includes its waits for the
        GIL, so it could not tell a fast disk again."""
        self.commit_on_loop = False
        window = self.slow_commits.window_commits
        log.warning(
            "most of the last %d journal commits held the event loop longer than %.1f ms,"
            " waiting for the disk (or the ledger store): committing on the journal's thread"
            " from now on (to start that way, set [venue] commit_on_loop = false)",
            window,
            self.slow_commits.slow_s * 1_000,
        )

    def _commit(self, batch: list[Executed]) -> BaseException | None:
        """Encode `batch` and write it durably, then feed `on_durable`: the failure, if any.
        One that takes `LONG_COMMIT_S` or more is logged: the venue stood still meanwhile."""
        started_s = time.perf_counter()
        try:
            codec = self.codec
            if codec is None:  # the journal encodes each command into its batch's buffer
                self.journal.commit_commands(batch, _encoder.encode_into)
            else:
                records = [(e.seq, codec.encode(e)) for e in batch if e.command is not None]
                if records:
                    self.journal.commit(records)
            if self.on_durable is not None:
                self.on_durable(batch)
        except BaseException as error:  # a Ctrl-C on the loop too: the outcome is unknown
            return error
        took_s = time.perf_counter() - started_s
        if took_s >= LONG_COMMIT_S:
            log.warning(
                "a journal commit of %d commands took %.3f s (the write and the ledger store's"
                " backpressure): no command was answered meanwhile",
                sum(executed.command is not None for executed in batch),
                took_s,
            )
        return None

    def _committed(self, batch: list[Executed], failure: BaseException | None) -> None:
        """On the loop: the batch is durable (or failed); release it and send the next (at
        the end of the next turn, when the requests read in it have joined it)."""
        if failure is not None:
            self._failure = failure  # a later `drain` fails too: nothing more will commit
            self._wake_drains(failure)
            self.on_fatal(failure)
            return
        self._in_flight = None
        self._release(batch)
        if self._pending:
            # The next batch goes at the end of the next turn, not now: the requests read
            # in that turn join it, so a busy venue fsyncs fewer, larger batches.
            self._busy = True  # (and with an interval, waits for it: `_held_back`)
            self._schedule()
        elif self._drained:
            self._wake_drains(None)  # nothing in flight, nothing pending: drained

    def _release(self, batch: list[Executed]) -> None:
        """Hand a durable batch's outcomes out. This runs in a loop callback, where asyncio
        would only log an exception and go on with half a batch answered: a failure here is
        a bug, so it is fatal like any broken invariant (recovery replays the journal)."""
        try:
            self.release(batch)
        except BaseException as failure:
            self._failure = failure
            if self._hold is not None:  # a held commit must not start after a fatal failure
                self._hold.cancel()
            self._wake_drains(failure)
            self.on_fatal(failure)
            raise

    def _wake_drains(self, failure: BaseException | None) -> None:
        waiting, self._drained = self._drained, []
        for future in waiting:
            if future.done():
                continue
            if failure is None:
                future.set_result(None)
            else:
                future.set_exception(failure)

    async def drain(self) -> bool:
        """Wait until everything submitted so far is durable and released (then True: the
        bus's `drain`, which over NATS may give up)."""
        while True:
            if self._failure is not None:  # here or before this call: nothing more releases
                raise self._failure
            if not (self._pending or self._flush_scheduled or self._in_flight is not None):
                return True
            if self._in_flight is not None or self._held:  # woken when all is released
                waiter = self._running_loop().create_future()
                self._drained.append(waiter)
                await waiter
            else:
                await asyncio.sleep(0)

    def journal_cpu_seconds(self) -> float:
        """CPU time the journal's thread has used so far (for benchmarks); 0 before it starts."""
        thread = self._journal_thread
        if thread is None or thread.ident is None:
            return 0.0
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))

    def close(self) -> None:
        if self._hold is not None:  # a held commit must not start on a closed journal
            self._hold.cancel()
        if self._journal_thread is not None:
            self._to_journal.put(None)
            self._journal_thread.join()
            self._journal_thread = None
        self.io.shutdown(wait=True)
        self.journal.close()
        self.slow_commits.close()
