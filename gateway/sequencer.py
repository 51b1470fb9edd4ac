"""The sequencer: one ordered stream of commands into the venue, released only when durable.

Owns time and order. Each submitted command is stamped with the next sequence number and
the time (never earlier than the previous command's), executed on the `Venue` at once, and
added to the journal batch of the current event-loop turn. At the end of the turn the batch
is written and fsynced in a worker thread (group commit) while later commands go on
executing into the next batch; when a batch is durable, the outputs of its commands are
handed to `release` in order; commands submitted one after another with the same origin
are never split between batches, so their outcomes are released together. So nothing
leaves the process before its command is on disk, and the journal holds exactly what was
executed: replaying it rebuilds the same state.
"""

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import msgspec

from engine.commands import AdvanceClock, AnyCommand, Command
from engine.events import Event
from engine.venue import Venue
from gateway.journal import Journal

log = logging.getLogger("venue.sequencer")

BATCH_COMMANDS_MAX = 10_000  # one fsync covers at most this many; the rest wait a turn


@dataclass(slots=True)
class Executed:
    """A command as executed: its sequence number, stamped form, events and who sent it.

    A barrier (`command` None, no sequence number) carries no command: it is released with
    the batch it joined, after every command submitted before it.
    """

    seq: int
    command: Command | None
    events: list[Event]
    origin: Any  # whatever the submitter needs to route the outcome (a request, a timer)
    pushes: list[Any] = field(default_factory=list)  # outputs prepared at execution, sent later
    transfers: list[Any] = field(default_factory=list)  # ledger transfers it booked


Release = Callable[[list[Executed]], None]

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(AnyCommand)


def _die(failure: BaseException | None) -> None:
    """Crash loudly: recovery is by replay of what is durable (ARCHITECTURE rule 7)."""
    log.critical("fatal: %r; stopping so that recovery replays the journal", failure)
    logging.shutdown()
    os._exit(70)


def _batch_end(pending: list[Executed]) -> int:
    """Where the next batch ends: at most `BATCH_COMMANDS_MAX`, but never between commands
    of one origin (a request's or a notice's), so they are released together."""
    end = min(len(pending), BATCH_COMMANDS_MAX)
    while end < len(pending) and pending[end].origin is not None:
        if pending[end].origin is not pending[end - 1].origin:
            break
        end += 1
    return end


def encode_command(command: Command) -> bytes:
    return _encoder.encode(command)


def decode_command(payload: bytes) -> Command:
    command: Command = _decoder.decode(payload)
    return command


class Sequencer:
    def __init__(
        self,
        venue: Venue,
        journal: Journal,
        clock_us: Callable[[], int],
        release: Release,
        after_durable: Callable[[], Awaitable[None]] | None = None,
        on_executed: Callable[[Executed], None] | None = None,
        on_fatal: Callable[[BaseException | None], None] | None = None,
    ) -> None:
        self.venue = venue
        self.on_executed = on_executed  # sees each command right after it executes
        self.on_fatal = on_fatal or _die  # a broken invariant or lost durability
        self.journal = journal
        self.clock_us = clock_us
        self.release = release
        self.after_durable = after_durable
        self.last_seq = journal.last_seq()
        self._pending: list[Executed] = []
        self._flush_scheduled = False
        self._committing: asyncio.Task[None] | None = None
        self.io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")  # ordered I/O

    def recover(self, after_seq: int = 0, on_replayed: Release | None = None) -> int:
        """Replay the journal after `after_seq` into the venue; how many commands it held.

        `on_replayed` sees each replayed command with its events (to rebuild derived state,
        such as private event history); nothing is released to anyone.
        """
        replayed = 0
        self.last_seq = after_seq
        for seq, payload in self.journal.replay(after_seq):
            assert seq == self.last_seq + 1, f"journal gap before {seq}"
            command = decode_command(payload)
            events = self.venue.execute(command)
            self.last_seq = seq
            replayed += 1
            executed = Executed(seq, command, events, None)
            if self.on_executed is not None:
                self.on_executed(executed)
            if on_replayed is not None:
                on_replayed([executed])
        assert self.last_seq == self.journal.last_seq(), "the snapshot is newer than the journal"
        return replayed

    def submit(self, command: Command, origin: Any = None) -> Executed:
        """Stamp and execute `command` now; its outcome is released once it is durable.

        A failure while executing is a broken invariant: the venue's state may be half
        changed, so it is fatal (`on_fatal`), never answered and carried on from.
        """
        ts = max(self.clock_us(), self.venue.ts_us)
        stamped = msgspec.structs.replace(command, ts_us=ts)
        try:
            executed = Executed(self.last_seq + 1, stamped, self.venue.execute(stamped), origin)
            if self.on_executed is not None:
                self.on_executed(executed)
        except BaseException as failure:
            self.on_fatal(failure)
            raise
        self.last_seq = executed.seq
        self._pending.append(executed)
        self._schedule()
        return executed

    def _schedule(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._start_commit)

    def barrier(self, origin: Any, events: list[Event] | None = None) -> None:
        """Release `origin` once everything submitted so far is durable (for queries).

        `events` travel with it unexecuted: an answer decided without the venue (a batch op
        refused before it could become a command) keeps its place in the order.
        """
        self._pending.append(Executed(0, None, events or [], origin))
        self._schedule()

    def tick(self) -> None:
        """Let time pass in the venue when something (a gtd expiry, a maturity) is due."""
        now = self.clock_us()
        venue = self.venue
        due = (venue.gtd_queue and venue.gtd_queue[0][0] <= now) or (
            venue.maturities and venue.maturities[0][0] <= now
        )
        if due:
            self.submit(AdvanceClock(), origin=None)

    def _start_commit(self) -> None:
        self._flush_scheduled = False
        if self._committing is None or self._committing.done():
            self._committing = asyncio.get_running_loop().create_task(self._commit_all())
            self._committing.add_done_callback(self._check_commit)

    def _check_commit(self, task: "asyncio.Task[None]") -> None:
        """A journal or store failure leaves the outcome of commands unknown: fatal."""
        if not task.cancelled() and task.exception() is not None:
            self.on_fatal(task.exception())

    async def _commit_all(self) -> None:
        """Commit batch after batch until nothing is pending; one fsync per batch."""
        loop = asyncio.get_running_loop()
        while self._pending:
            end = _batch_end(self._pending)
            batch = self._pending[:end]
            del self._pending[:end]
            records = [(e.seq, encode_command(e.command)) for e in batch if e.command]
            if records:
                await loop.run_in_executor(self.io, self.journal.commit, records)
            self.release(batch)
            if self.after_durable is not None:
                await self.after_durable()

    async def drain(self) -> None:
        """Wait until everything submitted so far is durable and released."""
        while (
            self._pending
            or self._flush_scheduled
            or (self._committing is not None and not self._committing.done())
        ):
            if self._committing is not None and not self._committing.done():
                await self._committing
            else:
                await asyncio.sleep(0)

    def close(self) -> None:
        self.io.shutdown(wait=True)
        self.journal.close()
