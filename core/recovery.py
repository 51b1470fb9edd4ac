"""A core's start: recovery (latest snapshot + journal tail), a standby's warm start, or a
fresh build from the config; the store's checks and catch-up; the engine rules journaled,
and the armed dead-man's switches shifted past the time no core was active.

Owns the one procedure `VenueCore.start` runs before anything is accepted, and the state it
needs only then (the transfers the store may lack). It sets the core's venue, ledger and
store as it finds them, and refuses a start the files disagree on through the core
(`VenueCore._refuse`), which then gives the data directory back. Made once per start.
A long replay says how far it is (`ReplayProgress`): a line every `PROGRESS_INTERVAL_S`.
A stop asked for meanwhile ends the start at its next safe point (`StartStopped`, before any
command of the start): within `PROGRESS_CHECK_RECORDS` records of a replay, or one
`CATCH_UP_CHUNK_TRANSFERS` of the store's catch-up.
"""

import bisect
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from core import config as venue_config
from core import snapshots, stream_snapshots
from core import venue_core as core_module
from core.journal import journal_bytes
from core.ledger_writer import LedgerWriter, open_store
from core.sequencer import Executed
from engine.commands import SetReserveStaleness, ShiftDeadManDeadlines
from engine.events import CommandRejected
from engine.reasons import ErrorCode
from engine.snapshot import restore as restore_venue
from engine.venue import Venue
from settlement.ledger import Ledger
from settlement.store import LedgerStore
from settlement.transfers import Transfer

if TYPE_CHECKING:
    from core.venue_core import VenueCore, WarmStart

log = logging.getLogger("venue")  # the core's log, as before the split
# A replay of millions of records takes minutes, and said nothing until `recovered`: one
# line every few seconds says it is alive, where it is and how long it has left, without
# filling the log (a short replay, the usual one, says nothing more than before).
PROGRESS_INTERVAL_S = 5.0
# The clock is read once per this many records, not per record: a replay runs ~100,000
# records a second, so the line is at most ~10 ms late.
PROGRESS_CHECK_RECORDS = 1_000
# The store's catch-up (its rebuild from the journal: every transfer) is handed to its thread
# in chunks of this many, a stop asked for checked between them: ~0.3 s of its writes each.
CATCH_UP_CHUNK_TRANSFERS = 100_000
# A venue recovered at a time ahead of this machine's clock by more than this is said at
# start: the sequencer never stamps a command earlier than the venue's time, so the venue's
# clock stands still until the machine's catches up (NTP keeps machines within milliseconds:
# a second is a clock that was wrong, or a data directory from a machine whose clock was).
CLOCK_BEHIND_WARN_US = 1_000_000
UNAPPLIED_WHY = (
    "the venue exists: [[assets]], [[instruments]], [[reserves]] and [[accounts]] build it once,"
    " on its first start; add these with venue admin list-asset, list-instrument,"
    " open-account (docs/configuration.md)"
)


class _ClockBehindSaid:
    """The venue time this process last warned of a clock behind at: a cluster core's start
    tried again (its store failing the catch-up, for `START_HELD_MAX_S`) recovers, cold, the
    same venue, whose time stands still, and said it at every try (until session 33). A
    venue recovered at another time (the stream went on meanwhile) is said again."""

    venue_ts_us: int | None = None


class Recovery:
    """One start of `core`: what `run` recovers or builds, in the order it always had."""

    def __init__(self, core: "VenueCore", stop_requested: Callable[[], bool] | None = None) -> None:
        """`stop_requested`: asked at the start's safe points (`_stop_if_requested`)."""
        self.core = core
        self._stop_requested = stop_requested or _never
        # the core's parts that a start never replaces (its venue, ledger and store it does)
        self.config = core.config
        self.data_dir = core.data_dir
        self.sequencer = core.sequencer
        self.listener = core.listener
        self._to_store: list[Any] = []  # at start: transfers the store may not hold yet
        self._progress = ReplayProgress(0, 0)  # `run` makes the one its replay reports

    async def run(self, warm: "WarmStart | None") -> None:
        """Recover, take `warm`, or build (`VenueCore.start` says which when)."""
        started = time.perf_counter()
        self._stop_if_requested("before its recovery")
        snapshots.remove_stray(self.data_dir)  # ours alone: venue.lock is held
        image = await self._latest_snapshot()  # before the store: a refusal makes no store
        if image is not None:  # also for a replay from the journal's start (store behind)
            self._replay_from_first_rules(image)
        dsn = self.config.venue.ledger_postgres
        core = self.core
        ledger_file = self.data_dir / core_module.LEDGER_FILE
        core._made_store = not dsn and not os.path.lexists(ledger_file)
        core.store = await core._on_store(open_store, ledger_file, dsn)
        core._store_open = True
        core.writer = await core._on_store(LedgerWriter, core.store)
        journal_seq = self.sequencer.journal.last_seq()
        if image is not None and image.seq > journal_seq:
            await self.core._refuse(
                f"the snapshot at seq {image.seq} is ahead of the journal (last seq"
                f" {journal_seq}) in {self.data_dir}: was the journal truncated or restored"
                " from an older copy? `venue verify` says what to do"
            )
        after = image.seq if image is not None else 0
        usable = warm is not None and warm.seq > 0 and warm.seq >= after
        if warm is not None and usable and not await self._store_behind_warm(warm):
            self._take_warm(warm)
            after = warm.seq
        else:
            warm = None  # older than the snapshot, empty, or ahead of the store: not used
            if image is not None:
                venue = restore_venue(image.venue)
                if await self._store_behind(venue, image.seq):
                    image, after = None, 0  # the journal from its start, as a rebuild would
                else:
                    self._restore(image, venue)
        restored = image is not None
        # A read snapshot keeps its per-account maps' bytes (`snapshots.DecodedOnRead`, most of
        # its file's): freed before the replay, not held through it and the store's catch-up
        image = None
        self._to_store.extend(self.core.ledger.drain())  # what the image had not stored yet
        self.core._recovering = True
        self._progress = ReplayProgress(after, self.sequencer.journal.last_seq())
        try:
            replayed = self.sequencer.recover(
                after,
                on_replayed=self._replayed,
                on_progress=self._replay_progress,
                progress_records=PROGRESS_CHECK_RECORDS,
            )
        finally:
            self.core._recovering = False
        self._stop_if_requested(f"after replaying the journal to seq {self.sequencer.last_seq}")
        await self._refuse_store_ahead()
        if restored or warm is not None or replayed:
            elapsed_ms = round((time.perf_counter() - started) * 1e3, 1)
            journal = {
                "journal_seq": self.sequencer.last_seq,
                "journal_bytes": self._journal_bytes(),
            }
            fields = {"snapshot_seq": after, "replayed": replayed, "warm": warm is not None}
            fields |= journal
            log.info("recovered", extra=fields | {"ms": elapsed_ms})
            self._say_unapplied_entries()
            self._say_clock_behind()
            await self._catch_up_store()
            self._stop_if_requested("after the ledger store's catch-up")  # the last chance
            # After the last refusal (the store's, in its catch-up too), before the first
            # command: a refused start leaves epochs.json as it found it (until session 29 it
            # was recorded before the catch-up, whose refusal left this start's entry).
            self.core._record_epoch()
            await self._journal_outage()  # the first command of the start (see there)
            await self._journal_rules(building=False)
        else:
            await self._build_from_config()

    def _say_clock_behind(self) -> None:
        """Warn when the recovered venue's time is ahead of this machine's clock: until the
        clock catches up, every command is stamped at the venue's time, which stands still,
        so nothing time-driven happens (gtd expiries, dead-man's switches, T-bill maturity,
        the reserve staleness bound): the operator's clock to fix, said once, in numbers
        (once per process for one venue time: `_ClockBehindSaid`). Until session 32 nothing
        was said (a switch armed for 2 s stayed armed an hour)."""
        clock_us, venue_us = self.sequencer.clock_us(), self.sequencer.venue.ts_us
        ahead_us = venue_us - clock_us
        if ahead_us <= CLOCK_BEHIND_WARN_US or _ClockBehindSaid.venue_ts_us == venue_us:
            return
        _ClockBehindSaid.venue_ts_us = venue_us
        log.warning(
            "this machine's clock is behind the venue's time: the venue's clock stands still"
            " until it catches up (no gtd expiry, dead-man's switch or maturity fires"
            " meanwhile); check the clock (NTP), or whether the data came from a machine whose"
            " clock was ahead",
            extra={"ahead_s": round(ahead_us / 1e6, 1), "venue_ts_us": venue_us},
        )

    def _replay_progress(self, seq: int, count: int) -> None:
        """Every `PROGRESS_CHECK_RECORDS` records replayed: the progress line, if due, and a
        stop asked for meanwhile (a replay of millions of records holds the loop for
        minutes, and a supervisor's SIGTERM must not wait for its end, nor kill it)."""
        self._progress.reached(seq, count)
        last_seq = self._progress.last_seq
        self._stop_if_requested(f"while replaying the journal, at seq {seq} of {last_seq}")

    async def _latest_snapshot(self) -> snapshots.Snapshot | None:
        """The snapshot to recover from: the newest that passes `snapshots.latest`'s checks;
        a cluster core's (its journal a stream: `VenueCore.stream_check`), the newest usable
        one by the rules its standby and the gateways follow (core/stream_snapshots.py: one
        of another stream or venue image version is logged and passed over for an older
        one, or none), but one past the stream's last record is refused, as one ahead of a
        file journal is, and so are a link to nothing, a file not read and a record not read
        to check it (`strict`); a one-process venue's on a stream (`venue serve --nats`)
        refuses one of another stream too (`StreamCheck.other_stream_refused`). A cluster
        gateway's is refused either way."""
        check = self.core.stream_check
        if check is None:
            image = snapshots.latest(self.data_dir)
            if image is not None and stream_snapshots.STREAM_EPOCH_KEY in image.gateway:
                await self._refuse_gateway_s(image)
            return image
        last_seq = self.sequencer.journal.last_seq()
        try:
            return await stream_snapshots.latest_usable(
                self.data_dir,
                last_seq,
                check.stamp_at,
                gateway_s=False,
                who=check.who,
                strict=True,
                other_stream_refused=check.other_stream_refused,
            )
        except stream_snapshots.Refused as refused:
            await self.core._refuse(refused.explained(self.data_dir, last_seq))

    async def _refuse_gateway_s(self, image: snapshots.Snapshot) -> NoReturn:
        """A cluster gateway's snapshot in a core's data directory (a gateway's directory
        given to a core): its core part (the last request id per gateway, the cod orders) is
        not in it, so it is not restored as if it were a core's."""
        path = snapshots.path_for(self.data_dir, image.seq)
        await self.core._refuse(
            f"{path} is a cluster gateway's snapshot, not a core's: is {self.data_dir} a"
            " gateway's data directory? Give the core its own, or move that file away"
        )

    def _stop_if_requested(self, where: str) -> None:
        """`StartStopped` if a stop was asked for: called only where the start has written
        nothing it would leave half done, and before its first command, so that
        `VenueCore.start` gives the data directory back as a refused start does."""
        if self._stop_requested():
            raise core_module.StartStopped(where)

    def _say_unapplied_entries(self) -> None:
        """A warning naming the build tables' entries the recovered venue lacks: an operator
        who adds an instrument, asset or account to the file of a venue that exists and
        restarts it is told that it was not applied, and how to apply it, instead of finding
        the market missing (until session 28 a restart said nothing of them)."""
        venue, ledger = self.core.venue, self.core.ledger
        missing = venue_config.unapplied_entries(
            self.config, venue.markets, ledger.assets, ledger.participants, core_module.now_us()
        )
        if missing:
            fields: dict[str, Any] = dict(missing)
            fields["why"] = UNAPPLIED_WHY
            log.warning("config entries not applied", extra=fields)

    def _replay_from_first_rules(self, image: snapshots.Snapshot) -> None:
        """Replay (when the journal is replayed from its first record) under the engine's
        rules that record ran under (`snapshots.first_rules`), never the config's: the
        reserve staleness decided which deposits the journal accepted, and each change of it
        since is a journal record (`_journal_rules`)."""
        configured_us = venue_config.reserve_staleness_max_us(self.config)
        rules = snapshots.first_rules(image, configured_us)
        self.core.first_staleness_us = rules.reserve_staleness_max_us
        self.core.ledger = Ledger()
        self.core.venue = Venue(rules, self.core.ledger)
        self.sequencer.venue = self.core.venue

    async def _journal_rules(self, *, building: bool) -> None:
        """Journal the config's reserve staleness bound (`SetReserveStaleness`) before any
        command of this start but the switches' shift (`_journal_outage`): always when
        `building` (a new journal's first record says what it runs under, whatever a copy's
        config says), on the first start of a journal begun before (its mark: every
        cl_op_id remembered and every pending withdrawal held through corporate actions from
        here on; also on a start holding a withdrawal requested before that rule), and when
        the venue runs under another bound (an edit of `reserve_staleness_hours`, or in a
        cluster a takeover by a core configured otherwise: said in a warning). Deposits from
        here on are decided under it, those before stand, and every replay decides each the
        same."""
        configured_us = venue_config.reserve_staleness_max_us(self.config)
        rules = self.core.venue.config
        running_us = rules.reserve_staleness_max_us
        # Begun before, or restored from an image of then that holds withdrawals of before
        # (an image written since the archive of cl_op_ids but before the mark says nothing
        # of its rules): the mark keeps those pending through a maturity.
        begun_before = (
            rules.operations_retained_max != 0 or self.core.ledger.pending_before_actions_held()
        )
        if not building and not begun_before and running_us == configured_us:
            return
        mark = SetReserveStaleness(staleness_max_us=configured_us, withdrawals_held=True)
        executed = self.sequencer.submit(mark, origin=None)
        await self.sequencer.drain()
        fields = {"seq": executed.seq, "hours": configured_us // venue_config.HOUR_US}
        if running_us == configured_us:
            said = "built" if building else "journal begun before its rules were journaled"
            log.info(f"reserve staleness journaled: {said}", extra=fields)
            return
        log.warning(
            "reserve staleness changed: venue.reserve_staleness_hours differs from the bound"
            " the venue ran under (in a cluster, every core must be configured alike: each"
            " takeover by one configured otherwise changes it again)",
            extra=fields | {"hours_before": running_us // venue_config.HOUR_US},
        )

    async def _journal_outage(self) -> None:
        """Let the time no core was active not count against the armed dead-man's switches
        (`ShiftDeadManDeadlines`): from the last command sequenced, whose time every replica
        knows, to now. Before any other command of this start, so a re-arm sent during the
        outage (a cluster's gateways hold it until a core is active) is not sequenced after
        a deadline that passed while none could be. Journaled only when it shifts a switch:
        a venue without one journals what it always did. A one-process venue restarting on
        its journal does it too, by the same code: while it was down nothing traded either."""
        venue = self.core.venue
        since_us = venue.ts_us
        now_us = self.sequencer.stamp_us()
        shifted = sum(
            1 for deadline_us in venue.dead_man_deadlines.values() if deadline_us > since_us
        )
        if not shifted or now_us <= since_us:
            return
        command = ShiftDeadManDeadlines(ts_us=now_us, since_us=since_us)
        executed = self.sequencer.submit(command, origin=None)
        assert executed.command == command, "the shift is journaled as built"
        await self.sequencer.drain()
        fields = {"seq": executed.seq, "switches": shifted}
        log.info(
            "dead-man's switches shifted by the time no core was active",
            extra=fields | {"outage_ms": (now_us - since_us) // 1_000},
        )

    def _restore(self, image: snapshots.Snapshot, venue: Venue) -> None:
        """Take the state a snapshot holds: its `venue`, then the gateway's part of it."""
        self.core.venue = venue
        assert self.core.venue.ledger is not None, "snapshots of this server always hold a ledger"
        self.core.ledger = self.core.venue.ledger
        self.sequencer.venue = self.core.venue
        self.listener.restore_gateway(image.gateway)

    def _take_warm(self, warm: "WarmStart") -> None:
        """Take a standby's state: its venue, and the transfers it saw (for the store)."""
        self.core.venue = warm.venue
        assert self.core.venue.ledger is not None, "a warm venue always holds its ledger"
        self.core.ledger = self.core.venue.ledger
        self.sequencer.venue = self.core.venue
        self._to_store.extend(warm.transfers)

    def _replayed(self, batch: list[Executed]) -> None:
        """A command replayed from the journal: rebuild what the gateway derived from it."""
        self.listener.replayed(batch)
        for executed in batch:
            self._to_store.extend(executed.transfers)

    def _journal_bytes(self) -> int:
        # none: the journal is a stream
        return journal_bytes(self.data_dir / core_module.JOURNAL_FILE)

    async def _store_behind(self, venue: Venue, snapshot_seq: int) -> bool:
        """Whether the ledger store lacks transfers that the snapshot's `venue` booked and
        handed to it before the snapshot (a store restored from an older copy): recovering
        from the snapshot could not book them, and the store's next batch would leave a gap.
        Recovery then replays the journal from its start instead, as a rebuild would."""
        assert venue.ledger is not None, "snapshots of this server always hold a ledger"
        stored = await self.core._on_store(self.core.store.last_transfer_id)
        first = venue.ledger.first_undrained_id()
        if stored + 1 >= first:
            return False
        log.warning(
            "the ledger store is behind the snapshot: recovering from the journal's start",
            extra={"store_last_transfer": stored, "snapshot_seq": snapshot_seq,
                   "missing_transfers": f"{stored + 1}..{first - 1}"},
        )  # fmt: skip
        return True

    async def _store_behind_warm(self, warm: "WarmStart") -> bool:
        """Whether the ledger store lacks transfers booked before the first one the standby's
        copy kept: it drops those the store held (`Follower.trim`), so a store restored from
        an older copy since could not be caught up from it. The takeover then recovers cold
        (its snapshot, or the stream from its start, as `_store_behind` decides)."""
        assert warm.venue.ledger is not None, "a warm venue always holds its ledger"
        kept = warm.transfers
        first = kept[0].transfer_id if kept else warm.venue.ledger.last_transfer_id + 1
        stored = await self.core._on_store(self.core.store.last_transfer_id)
        if stored + 1 >= first:
            return False
        missing = f"{stored + 1}..{first - 1}"
        log.warning(
            "the ledger store is behind the standby's copy: recovering cold",
            extra={"store_last_transfer": stored, "missing_transfers": missing},
        )
        return True

    async def _refuse_store_ahead(self) -> None:
        """A store holding transfers the journal never booked means the journal lost
        commands (truncated, or an older copy): writing on would book new transfers under
        ids the store already holds, so refuse and let the operator decide."""
        stored = await self.core._on_store(self.core.store.last_transfer_id)
        if stored > self.core.ledger.last_transfer_id:
            await self.core._refuse(
                f"the ledger store holds transfers up to {stored} but the journal (last seq"
                f" {self.sequencer.last_seq}) books only up to {self.core.ledger.last_transfer_id}"
                f" in {self.data_dir}: `venue verify --data-dir {self.data_dir}` says what to do"
            )

    async def _refuse_another_venue_s_store(self, stored: int) -> None:
        """Refuse a store whose last transfer is not the one the journal books under its id,
        where this start booked that id (no usable snapshot: the journal from its start): the
        store is another venue's (a data directory or database reused across a stream's
        reset), and the catch-up would book this venue's transfers onto its chain. A snapshot
        is checked against the stream itself; a directory with none but a store was not,
        until session 37. One transfer read: each carries its time to the microsecond."""
        to_store = self._to_store
        at = bisect.bisect_left(to_store, stored, key=_transfer_id)
        if stored == 0 or at == len(to_store) or to_store[at].transfer_id != stored:
            return  # not booked by this start: the snapshot's, checked with it
        found = await self.core._on_store(_stored_transfer, self.core.store, stored)
        if found == to_store[at]:
            return
        where = (
            "its database (--postgres)"
            if self.config.venue.ledger_postgres
            else f"{core_module.LEDGER_FILE} in {self.data_dir}"
        )
        await self.core._refuse(
            f"the ledger store holds another venue's transfers: its transfer {stored} is not"
            f" the one the journal (last seq {self.sequencer.last_seq}) books under that id:"
            f" {where} was written by another venue or stream; give this venue a store of"
            " its own (an empty database, or move the ledger file aside: it is rebuilt from"
            " the journal)"
        )

    async def _catch_up_store(self) -> None:
        """After a restart: book into the store every transfer it had not stored yet, said
        before and after when there are any (a store rebuilt from the journal books them
        all, which takes a while after `recovered`, where it said nothing)."""
        stored = await self.core._on_store(self.core.store.last_transfer_id)
        await self._refuse_another_venue_s_store(stored)
        booked = [t for t in self._to_store if t.transfer_id > stored]
        self._to_store.clear()
        await self.core._on_store(self.core.writer.register_ledger, self.core.ledger)
        if not booked:
            return
        started = time.perf_counter()
        fields = {"store_last_transfer": stored, "transfers": len(booked)}
        log.info("ledger store catching up", extra=fields)
        for first in range(0, len(booked), CATCH_UP_CHUNK_TRANSFERS):
            chunk = booked[first : first + CATCH_UP_CHUNK_TRANSFERS]
            await self.core._on_store(self.core.writer.write, chunk)
            done = f"{first + len(chunk)} of {len(booked)} transfers booked"
            self._stop_if_requested(f"while catching the ledger store up ({done})")
        elapsed_ms = round((time.perf_counter() - started) * 1e3, 1)
        log.info("ledger store caught up", extra=fields | {"ms": elapsed_ms})

    async def _build_from_config(self) -> None:
        """A fresh venue: the config's setup, each command as the venue answers it. The
        setup is rehearsed first (`setup_commands`): a config the venue would refuse any of
        stops the start (`RecoveryRefused`, the files given back) before anything is
        journaled. Only a bill that has matured since the config was written is left out,
        with its token, the token's reserves and deposits unless another instrument names
        the token (`matured_bills`), and said in a warning for each bill; one maturing
        between then and its listing is refused (`TOLERATED_REFUSALS`) and said likewise."""
        now = core_module.now_us()
        try:
            commands = venue_config.setup_commands(self.config, now)
        except venue_config.ConfigError as invalid:  # the files are ours: give them back
            await self.core._refuse(f"config: {invalid}")
        for left in venue_config.matured_bills(self.config, now):
            fields = {"command": "list_instrument", "reason": ErrorCode.MATURITY_PASSED.name}
            fields |= {"symbol": left.symbol, "detail": left.detail()}
            log.warning("config entry refused", extra=fields)
        self._stop_if_requested("before building the venue from the config")  # the last
        self.core._record_epoch()  # after the config's refusal, before the first command
        await self._journal_rules(building=True)  # first: the setup's deposits are under it
        for command in commands:
            executed = self.sequencer.submit(command, origin=None)
            for refused in executed.events:
                if not isinstance(refused, CommandRejected):
                    continue
                if refused.reason not in venue_config.TOLERATED_REFUSALS:
                    # the rehearsal took it: the engine and its rehearsal disagree (a bug)
                    await self.sequencer.drain()
                    await self.core._refuse(f"config {venue_config.refusal_text(refused)}")
                log.warning("config entry refused", extra=_refusal_fields(refused))
        await self.sequencer.drain()
        log.info("built from the config", extra={"commands": len(commands)})


def _transfer_id(transfer: Transfer) -> int:
    return transfer.transfer_id


def _stored_transfer(store: LedgerStore, transfer_id: int) -> Transfer | None:
    """The store's transfer `transfer_id` (run on the store's thread)."""
    return next(iter(store.iter_transfers(after_id=transfer_id - 1)), None)


def _never() -> bool:
    return False


def _refusal_fields(refused: CommandRejected) -> dict[str, Any]:
    """What an operator needs to find the refused entry: the command, whose, and why."""
    fields: dict[str, Any] = {"command": refused.command, "reason": refused.reason.name}
    if refused.account:
        fields["account"] = refused.account
    if refused.symbol is not None:
        fields["symbol"] = refused.symbol
    return fields | {"detail": refused.detail}


class ReplayProgress:
    """How far a replay of the journal from `after_seq` to `last_seq` is: logged as
    `recovering` at most every `PROGRESS_INTERVAL_S` (told, and the clock read, once per
    `PROGRESS_CHECK_RECORDS` records: `Sequencer.recover` counts), with the seq reached, the
    records replayed of how many, the rate and the seconds left at that rate."""

    def __init__(self, after_seq: int, last_seq: int) -> None:
        self.after_seq = after_seq
        self.last_seq = last_seq
        self.started = self.said = time.monotonic()
        self.count = 0

    def reached(self, seq: int, count: int) -> None:
        """`count` records replayed, the last at `seq`: a line if the interval is over."""
        self.count = count
        now = time.monotonic()
        if now - self.said < PROGRESS_INTERVAL_S:
            return
        self.said = now
        total = self.last_seq - self.after_seq
        elapsed_s = now - self.started
        per_s = self.count / elapsed_s if elapsed_s > 0 else 0.0
        left_s = (total - self.count) / per_s if per_s > 0 else None
        fields: dict[str, Any] = {"seq": seq, "journal_seq": self.last_seq}
        fields |= {"replayed": self.count}
        fields |= {"of": total, "percent": round(100 * self.count / max(total, 1), 1)}
        fields |= {"per_s": round(per_s), "elapsed_s": round(elapsed_s, 1)}
        fields |= {"left_s": None if left_s is None else round(left_s, 1)}
        log.info("recovering", extra=fields)
