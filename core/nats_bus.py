"""The bus over NATS JetStream: the gateway side of the cluster, and the records both sides share.

Owns the journal record of the cluster (`ClusterCodec`: the stamped command and its origin as
plain data, the gateway's id and its request id, so the origin finds its way back), the
message a gateway sends the core (`Submissions`: every command of one loop turn), and
`NatsBus`, the gateway's bus: `submit` queues a command under a request id of this gateway
process and publishes the turn's commands as one NATS message on `SUBMIT_SUBJECT`; the core
sequences, executes and appends them to the stream (the journal). A `Replica` follows the
stream with an ordered consumer and runs the same engine over the same commands in the same
order, so every gateway derives the same events, private seqs, exec ids and order history;
a request is answered when the replica executed the record carrying its origin (the core's
outcome, durable on a quorum). Commands that do not come back within `RESEND_AFTER_S` (a
core died, a message was lost) are sent again, and so is everything owed the moment a core
announces it is active (`CORE_ACTIVE_SUBJECT`: a takeover's held requests are sequenced
within milliseconds, not on the resend timer); the core drops the request ids it has
sequenced already, so none runs twice. The core takes from a gateway only the commands a
gateway makes (`GATEWAY_COMMANDS`), never those only a core journals. A request owed
`OUTCOME_WAIT_S` (no core active) is answered as unknown by the listener
(`outcomes_overdue`), and its command is still resent.
Each gateway holds a lease of its own while it serves (key = its id in `GATEWAY_LEASE_BUCKET`):
the active core cancels the cod orders of a gateway whose lease is gone
(core/cluster_core.py), and a gateway that cannot renew it in time closes its sessions and
takes none until it holds it again. The nonces of logons and signed requests are claimed
cluster-wide through `nonces` (core/cluster_nonces.py), opened before the gateway serves.
"""

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, Protocol, cast

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from core import config as venue_config
from core import snapshots, stream_snapshots, venue_core
from core.bus import CoreListener, ReadSide
from core.cluster_keys import SharedKeys
from core.cluster_nonces import SharedNonces
from core.jetstream_journal import STREAM_DEFAULT, SUBJECT_DEFAULT, close_connection
from core.journal import JournalLocked
from core.lease import Lease, attempt
from core.sequencer import Executed, exit_fatally
from core.stream_follow import StreamFollow
from engine.commands import (
    UNREAD_KIND_MAX,
    AdvanceClock,
    AmendOrder,
    AmendPair,
    AnyCommand,
    ArmDeadMan,
    AttestReserves,
    CancelAll,
    CancelOrder,
    Command,
    ConfirmWithdrawal,
    Deposit,
    IssueKey,
    ListAsset,
    ListInstrument,
    MatureInstrument,
    OpenAccount,
    PayDividend,
    PlaceOrder,
    RefuseCancelOnDisconnect,
    RefuseUnreadCommand,
    RequestWithdrawal,
    RevokeKey,
    SetCancelOnDisconnect,
    SetInstrumentStatus,
    SetOrderCaps,
    SetReferencePrice,
    SetReserveStaleness,
    ShiftDeadManDeadlines,
    SplitShares,
    SweepVenueAccount,
    VoidWithdrawal,
)
from engine.events import Event
from engine.snapshot import capture as capture_venue
from engine.snapshot import restore as restore_venue
from engine.venue import Venue
from settlement.ledger import Ledger

log = logging.getLogger("venue.cluster")

SUBMIT_SUBJECT: Final = "venue.submit"  # gateways -> the active core (plain NATS, not stored)
# The active core -> the gateways, once it takes commands (its name; plain NATS, not stored):
# each sends at once what it holds, so a takeover's held re-arm is not left to the resend
# timer (up to 2.5 s: a dead-man's switch shifted past the outage may have less left).
CORE_ACTIVE_SUBJECT: Final = "venue.core.active"
RESEND_AFTER_S: Final = 2.0  # no outcome by then: the core may have died; send again
RESEND_CHECK_S: Final = 0.5
# A request whose command has been owed this long (sent, no outcome back: no core active, say
# a long PostgreSQL outage or every core down) is answered 504 OUTCOME_UNKNOWN, and its command
# is still resent. Longer than a takeover after kill -9 of the active core (its lease's 10 s
# TTL, the standby's 0.2 s poll, then a resend, at once on its announcement, within 2.5 s
# without: ~13 s at most), so a failover answers as usual even on a busy machine; well under
# the SDK's 30 s request timeout, so the client reads this answer, not its own timeout, with
# time left to check the request.
# The default of the gateway's `[venue] outcome_wait_ms` (a test of the 504 sets it shorter).
OUTCOME_WAIT_S: Final = venue_config.OUTCOME_WAIT_MS_DEFAULT / 1_000
START_TIMEOUT_S: Final = 60.0  # for the stream to exist, and for the gateway's lease
# A starting gateway's replica replays the whole stream (~10,000 records/s: docs/cluster.md),
# however long that takes while records come; it gives up only once none came for this long.
# Until session 33 the replay had START_TIMEOUT_S in all, so a gateway could not start at all
# on a stream of more than a minute's replay (under a million records: a busy day).
REPLAY_STALL_S: Final = 60.0
REPLAY_SAY_S: Final = 10.0  # how often a long replay says how far it is
DRAIN_TIMEOUT_S: Final = 10.0  # a stopping gateway waits this long for outcomes still owed
SUBMISSIONS_MAX: Final = 5_000  # commands per NATS message (well under max_payload)
PENDING_MESSAGES_MAX: Final = 1_000_000  # the replica's subscription buffer, in records
GATEWAY_LEASE_BUCKET: Final = "venue_gateways"  # one key per gateway process: its id
# A gateway whose lease is gone has its cod orders canceled by the core within about this
# (plus the core's scan). Not shorter, for the reason the core's is 10 s: a renewal cannot
# land during the few seconds of a NATS leader election, and a lapsed lease closes every
# session of the gateway; at 10 s, renewed every second, it rides out ~7 s without one.
GATEWAY_LEASE_TTL_S: Final = 10.0
GATEWAY_LEASE_POLL_S: Final = 0.1  # how often a gateway checks its term
# Why a gateway's data directory is refused (`Replica._lock_data_dir`).
GATEWAY_DIR_LOCKED: Final = (
    "another gateway, or a core, running on it? give each gateway its own --data-dir"
)
GATEWAY_ID_PATTERN: Final = re.compile(r"[-_=a-zA-Z0-9.]+")  # a KV key's characters


# ----------------------------------------------------------------- records


class Origin(msgspec.Struct, frozen=True, array_like=True):
    """Who sent a command, as plain data: a gateway process and its request id (0 and ""
    for the core's own commands: clock ticks, the setup from the config)."""

    gateway: str
    request: int
    quote_set: str | None = None  # a quote.mass's set: exec reports name it on every gateway


class Record(msgspec.Struct, frozen=True, array_like=True):
    """One journal record of the cluster: the command as executed and where it came from."""

    origin: Origin
    command: AnyCommand


class Submission(msgspec.Struct, frozen=True, array_like=True):
    request: int
    quote_set: str | None
    command: AnyCommand


class Submissions(msgspec.Struct, frozen=True, array_like=True):
    """A gateway's commands of one loop turn, in order: one NATS message to the core."""

    gateway: str
    items: list[Submission]


CORE_ORIGIN: Final = Origin("", 0)

# The commands a gateway submits (gateway/wire.py's methods and admin calls, cod cancels,
# dead-man arms and dead_man.json's, key issuing). The others only a core journals: the
# clock's tick, its start's rules and switch shift, its refusals of an unread command and of
# a cod cancel whose order's cod another gateway took; one of those sent on `SUBMIT_SUBJECT`
# is dropped. Not a security boundary (whoever may publish there is trusted fully: it can
# send any gateway's commands): a guard against a mistake, a misbehaving or mismatched
# gateway that would, say, disable every dead-man's switch (`ShiftDeadManDeadlines(since_us=0)`)
# or move the clock.
GATEWAY_COMMANDS: Final[frozenset[type[Command]]] = frozenset(
    {
        PlaceOrder,
        CancelOrder,
        AmendOrder,
        AmendPair,
        CancelAll,
        ListInstrument,
        SetInstrumentStatus,
        SetReferencePrice,
        SetOrderCaps,
        MatureInstrument,
        ArmDeadMan,
        ListAsset,
        OpenAccount,
        AttestReserves,
        Deposit,
        RequestWithdrawal,
        ConfirmWithdrawal,
        VoidWithdrawal,
        PayDividend,
        SplitShares,
        SetCancelOnDisconnect,
        IssueKey,
        RevokeKey,
        SweepVenueAccount,
    }
)
CORE_COMMANDS: Final[frozenset[type[Command]]] = frozenset(
    {
        AdvanceClock,
        SetReserveStaleness,
        RefuseUnreadCommand,
        ShiftDeadManDeadlines,
        RefuseCancelOnDisconnect,
    }
)
_encoder = msgspec.msgpack.Encoder()
_record_decoder = msgspec.msgpack.Decoder(Record)
_submissions_decoder = msgspec.msgpack.Decoder(Submissions)


def encode_submissions(submissions: Submissions) -> bytes:
    return _encoder.encode(submissions)


def decode_submissions(payload: bytes) -> Submissions:
    return _submissions_decoder.decode(payload)


class _LooseSubmissions(msgspec.Struct, frozen=True, array_like=True):
    """A `Submissions` whose items are left unread, to be read one at a time."""

    gateway: str
    items: list[msgspec.Raw]


class _ItemHead(msgspec.Struct, frozen=True, array_like=True):
    """A `Submission` whose command is left unread: its request id and quote set."""

    request: int
    quote_set: str | None
    command: msgspec.Raw


class _Typed(msgspec.Struct, frozen=True):
    """A command's type tag (`Command`'s tag field), whatever its other fields."""

    type: str = ""


_loose_decoder = msgspec.msgpack.Decoder(_LooseSubmissions)
_submission_decoder = msgspec.msgpack.Decoder(Submission)
_head_decoder = msgspec.msgpack.Decoder(_ItemHead)
_typed_decoder = msgspec.msgpack.Decoder(_Typed)


def decode_each_submission(payload: bytes) -> tuple[Submissions, list[int]]:
    """`decode_submissions` of a message whose commands do not all decode (a gateway of a later
    build sent a command this one does not know): each item read on its own, one whose command
    cannot be read standing as a `RefuseUnreadCommand` of its type, under its request id; and
    the positions in the message of those (the items this core made, which its positions name
    alone: a request id may be sent twice). Raises as `decode_submissions` when the message or
    an item's request id or quote set cannot be read: damaged, not of a later build (none is
    taken)."""
    loose = _loose_decoder.decode(payload)
    items, unread = [], []
    for at, raw in enumerate(loose.items):
        try:
            items.append(_submission_decoder.decode(raw))
        except msgspec.ValidationError:
            head = _head_decoder.decode(raw)
            command = RefuseUnreadCommand(kind=_kind_of(head.command))
            items.append(Submission(head.request, head.quote_set, command))
            unread.append(at)
    return Submissions(loose.gateway, items), unread


def _kind_of(command: msgspec.Raw) -> str:
    """An unread command's type as sent (bounded), or "" if not even that can be read."""
    try:
        return _typed_decoder.decode(command).type[:UNREAD_KIND_MAX]
    except msgspec.DecodeError:  # a ValidationError too: not a map, no string tag
        return ""


def decode_record(payload: bytes) -> Record:
    return _record_decoder.decode(payload)


class ClusterCodec:
    """The cluster's `RecordCodec`; remembers the last request id sequenced per gateway
    (from replay and from execution), so a command sent again is recognised."""

    def __init__(self) -> None:
        self.last_request: dict[str, int] = {}
        self.decoded_origin: Origin | None = None  # the last record's (cod orders read it)

    def encode(self, executed: Executed) -> bytes:
        origin = executed.origin if isinstance(executed.origin, Origin) else CORE_ORIGIN
        return _encoder.encode(Record(origin, cast(AnyCommand, executed.command)))

    def decode(self, payload: bytes) -> Command:
        record = _record_decoder.decode(payload)
        self.seen(record.origin)
        self.decoded_origin = record.origin
        return cast(Command, record.command)

    def seen(self, origin: Origin) -> None:
        if origin.gateway:
            self.last_request[origin.gateway] = origin.request

    def is_next(self, gateway: str, request: int) -> bool:
        """Whether `request` is the gateway's next: an earlier one is a command sent again
        (sequenced already), a later one follows a lost message (it comes again with it)."""
        return request == self.last_request.get(gateway, 0) + 1


def server_list(servers: str | Sequence[str]) -> list[str]:
    items = servers.split(",") if isinstance(servers, str) else list(servers)
    return [item.strip() for item in items if item.strip()]


async def connect(servers: Sequence[str], name: str) -> Client:
    """A connection that keeps reconnecting (a node killed: the others take over)."""
    return await nats.connect(
        list(servers),
        name=name,
        connect_timeout=5.0,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.2,
        error_cb=_error_log(),  # one per connection
    )


# The same NATS error again within this long is counted, not logged: nats-py reports every
# failed (re)connect attempt, one each `reconnect_time_wait` (0.2 s), so a node down for a
# minute logged ~300 identical lines a process.
NATS_ERROR_REPEAT_LOG_S: Final = 10.0


def _error_log() -> Callable[[Exception], Awaitable[None]]:
    """A connection's error callback (a coroutine function, as nats-py requires): logs a NATS
    error, and the same error (by its repr) again only after `NATS_ERROR_REPEAT_LOG_S`,
    saying how often it came meanwhile."""
    last_text, last_logged_s, repeats = "", 0.0, 0

    async def log_error(error: Exception) -> None:
        nonlocal last_text, last_logged_s, repeats
        text, now_s = repr(error), time.monotonic()
        if text == last_text and now_s - last_logged_s < NATS_ERROR_REPEAT_LOG_S:
            repeats += 1
            return
        if text == last_text and repeats:
            log.warning("nats: %s (%d more times since last logged)", text, repeats)
        else:
            log.warning("nats: %s", text)
        last_text, last_logged_s, repeats = text, now_s, 0

    return log_error


def die(failure: BaseException | None) -> None:
    """Crash loudly; a gateway rebuilds its replica from the stream when started again."""
    log.critical("fatal: %r; stopping", failure)
    exit_fatally(failure)


# ----------------------------------------------------------------- the gateway's replica


class GatewayListener(CoreListener, Protocol):
    """A cluster gateway's listener (`VenueServer`): the core's, and its lease's turns."""

    data_dir: Path  # the gateway's own: its replica's snapshots are kept there

    def forget_gateway(self) -> None:
        """Forget what `restore_gateway` took (it may have failed part way): as at start."""

    def lease_lost(self) -> None:
        """The gateway's lease lapsed: the core may be canceling its sessions' cod orders."""

    def lease_held(self) -> None:
        """The gateway holds its lease again: it may serve sessions."""

    def placed_with_cod(self, executed: Executed) -> None:
        """A place with cod on came back (after `executed`): its outcome arrives a hop after
        it was sent, so the session that sent it may have closed meanwhile."""

    def outcomes_overdue(self, settled: "list[Overdue | Executed]") -> None:
        """In order: origins whose commands have been owed `OUTCOME_WAIT_S` (`Overdue`: to be
        answered as unknown now; their outcomes come back later as usual, through `executed`
        and `released`, and must not be answered again), and the barriers behind them, due
        now (released as `released` does)."""

    def pair_refused_unread(self) -> None:
        """The core refused one of this gateway's `AmendPair`s unread (a core of an earlier
        build is active): plain requotes go as two amends from now on."""

    def is_client_request(self, origin: Any) -> bool:
        """True when `origin` is a client's request, answered as unknown when overdue (so a
        stop need not wait for its outcome); False for the gateway's own commands (a closed
        session's cod cancels, dead-man arms), whose outcomes a stop waits for."""


class Replica:
    """The venue's state on a gateway: engine and ledger in memory, fed from the stream.

    Stands where `VenueCore` stands in the one-process venue (`VenueServer.core`): started,
    stopped, read through a `ReadSide`; it writes no journal or store. It keeps snapshots in
    the gateway's data directory, as the core does in its own (same file format, interval
    and rules: core/snapshots.py): its venue, the gateway's part (`gateway_image`) and the
    stream's epoch, at its last seq; a start restores the newest usable one
    (core/stream_snapshots.py) and replays only the stream after it.
    """

    def __init__(self, bus: "NatsBus", listener: GatewayListener, staleness_us: int) -> None:
        # The rules a stream begins under (`first_rules`): one begun since the rules are
        # journaled sets the core's in its first record, whatever `staleness_us` (this
        # gateway's config) says; one begun before ran under the config's bound.
        self._first_rules = rules = snapshots.first_rules(None, staleness_us)
        self.first_staleness_us = rules.reserve_staleness_max_us  # see `Snapshot`
        self.ledger = Ledger()
        self.venue = Venue(rules, self.ledger)
        self.bus = bus
        self.listener = listener
        self.last_seq = 0
        self.epoch = 0  # the stream's first command's time: the same on every gateway
        # Executing records live (answering and publishing them): from `go_live`, once the
        # server's market data is built from the venue; until then, replaying them.
        self.live = False
        self._replay_until = 0
        self._caught_up = asyncio.Event()
        self._released: list[Executed] = []
        self._flush_handle: asyncio.Handle | None = None  # the turn's `_flush`, scheduled
        self._tasks: list[asyncio.Task[None]] = []
        # Snapshot files are written off the loop, one at a time: a periodic write canceled
        # by the stop runs on in its thread, and the stop's (of the same seq, perhaps) waits
        # for it rather than write the same `.tmp` file beside it.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="venue-gateway-snapshots")
        self._stopped = False  # its last snapshot written: the writer is shut down
        self._lock: IO[bytes] | None = None  # the data directory's, while it runs
        self._follow: StreamFollow | None = None  # the stream's consumer, once started

    @property
    def sequencer(self) -> "Replica":
        return self  # `last_seq`, for what reads `server.sequencer.last_seq`

    async def start(self) -> None:
        """Hold the data directory, restore its newest usable snapshot and follow the stream
        from the record after it (none: from its first record); return once caught up."""
        made_lock = self._lock_data_dir()
        try:
            await self._follow_the_stream()
        except BaseException:  # (a stop while it waits for NATS too; a cancel, as in a test)
            try:
                await self._let_nats_go()
            finally:
                self._give_back(made_lock)
            raise

    async def _follow_the_stream(self) -> None:
        """`start`'s work, once the data directory is held."""
        bus = self.bus
        bus.nc = await connect(bus.servers, f"venue-gateway-{bus.gateway_id}")
        await bus.keys.start(bus.nc)  # every issued key known before any logon
        self.keep_task(asyncio.create_task(bus.keys.watch()))  # and each one issued later
        await bus.nonces.start(bus.nc)  # logons claim their nonces cluster-wide
        await self.hear_cores(bus.nc)
        js = bus.nc.jetstream(timeout=5.0)
        self._replay_until = await _wait_for_stream(js)
        await self._restore_latest(js)
        # a consumer lost with its node (kill -9 of a NATS node) is replaced within ~2 s, not
        # left to nats-py's 10 s checks: meanwhile this gateway answers nothing
        follow = StreamFollow(
            bus.nc,
            STREAM_DEFAULT,
            SUBJECT_DEFAULT,
            self._on_message,
            lambda: self.last_seq,
            pending_msgs_limit=PENDING_MESSAGES_MAX,
        )
        self._follow = follow  # before its start: a cancel inside it unsubscribes it too
        await follow.start()
        self.keep_task(asyncio.create_task(follow.watch()))
        await self._replay()
        log.info("replica caught up", extra={"seq": self.last_seq, "gateway": bus.gateway_id})
        await self._hold_lease(bus.nc)  # before it serves: every order it places is covered
        self.keep_task(asyncio.create_task(self._keep_lease()))

    async def _let_nats_go(self) -> None:
        """After a start that failed or was canceled (its process may go on: `venue cluster`'s
        roles are processes, but a test's or an embedding's are not): its tasks canceled and
        ended, its lease given back if taken, its NATS connection closed. Until session 34 the
        connection and the keys' and the stream follow's watches ran on in the process."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._release_lease()
        await self._close_connection()

    async def _release_lease(self) -> None:
        """Give the gateway's lease back, if taken: the core cancels its cod orders at once,
        not after the TTL. Unanswered, it expires by its TTL; a second call does nothing."""
        if self.bus.lease is not None:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await self.bus.lease.release()

    async def _close_connection(self) -> None:
        """Unsubscribe the stream's and the keys' consumers, then close the connection: a
        consumer's heartbeat check (nats-py's, a task) ends at its unsubscribe, and ran on
        for up to two heartbeats (10 s) after a close alone."""
        bus = self.bus
        if bus.nc is None:
            return
        if not bus.nc.is_closed:
            await bus.keys.stop()
            if self._follow is not None:
                await self._follow.stop()
        await close_connection(bus.nc)

    def _lock_data_dir(self) -> bool:
        """Hold the gateway's data directory for its life, as a core holds its own (the same
        `venue.lock`): a second gateway (or a core) on it is refused, so this one alone writes
        snapshots there, and the `.tmp` files a crash left mid-write are removed. Whether
        this start made the lock file."""
        data_dir = self.listener.data_dir
        made = not (data_dir / venue_core.LOCK_FILE).exists()
        try:
            self._lock = venue_core.lock_data_dir(data_dir)
        except JournalLocked:
            raise JournalLocked(data_dir / venue_core.LOCK_FILE, GATEWAY_DIR_LOCKED) from None
        try:
            snapshots.remove_stray(data_dir)
        except BaseException:  # (one that cannot be removed: the directory let go again)
            self._give_back(made)
            raise
        return made

    def _give_back(self, made_lock: bool) -> None:
        """A start that failed or was stopped: the directory let go, the lock file it made
        removed (while held, as a core's refused start does: `lock_data_dir` takes the file
        the directory names), so a directory this start made is left empty."""
        assert self._lock is not None
        if made_lock:
            (self.listener.data_dir / venue_core.LOCK_FILE).unlink(missing_ok=True)
        self._lock.close()
        self._lock = None

    def go_live(self) -> None:
        """Execute the records after the last executed live: answered, pushed and published.
        The server calls it once its market data is built from the venue (`VenueServer.start`);
        until then every record, those that came during the lease's round trips too, is
        replayed, as the market data would know none of the markets to publish it in."""
        assert self._caught_up.is_set(), "a replica goes live once caught up with the stream"
        self.live = True

    async def _restore_latest(self, js: Any) -> None:
        """Take the newest usable snapshot in the gateway's data directory (its venue, the
        gateway's part, its seq and the stream's epoch), and say how much is left to replay."""
        gateway = self.bus.gateway_id
        image = await stream_snapshots.latest_usable(
            self.listener.data_dir,
            self._replay_until,
            lambda seq: stamp_at(js, seq),
            gateway_s=True,
            who=gateway,
        )
        if image is None:
            log.info(
                "no usable snapshot: replaying %d records from the stream's start",
                self._replay_until,
                extra={"gateway": gateway},
            )
            return
        try:
            self._restore(image)
        except Exception as failed:  # a snapshot is a cache: the stream holds every record
            log.warning(
                "snapshot not restored: %r; replaying %d records from the stream's start",
                failed,
                self._replay_until,
                extra={"gateway": gateway, "seq": image.seq},
            )
            self._forget_restored()
            return
        if self.last_seq >= self._replay_until:
            self._caught_up.set()
        replaying = self._replay_until - image.seq
        log.info(
            "restored snapshot seq %d, replaying %d records",
            image.seq,
            replaying,
            extra={"gateway": gateway, "seq": image.seq, "replaying": replaying},
        )

    def _restore(self, image: snapshots.Snapshot) -> None:
        """Take `image`'s venue, the gateway's part, its seq and the stream's epoch."""
        venue = restore_venue(image.venue)
        assert venue.ledger is not None, "a replica's snapshot always holds its ledger"
        self.venue, self.ledger = venue, venue.ledger
        self.first_staleness_us = image.first_staleness_us
        self.epoch = image.gateway[stream_snapshots.STREAM_EPOCH_KEY]
        self.last_seq = image.seq
        self.listener.restore_gateway(image.gateway)

    def _forget_restored(self) -> None:
        """Back to the state before `_restore` (which may have failed part way): an empty
        venue under the rules a stream begins under, and the gateway's part forgotten."""
        self.ledger = Ledger()
        self.venue = Venue(self._first_rules, self.ledger)
        self.first_staleness_us = self._first_rules.reserve_staleness_max_us
        self.epoch = self.last_seq = 0
        self.listener.forget_gateway()

    async def _replay(self) -> None:
        """Until the replica has executed every record the stream held at its start, saying
        how far it is every `REPLAY_SAY_S`; a `TimeoutError` once no record came for
        `REPLAY_STALL_S` (a stream that stopped delivering, not a long one)."""
        started = moved_at = said_at = time.monotonic()
        seen = first = self.last_seq
        while not self._caught_up.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._caught_up.wait(), REPLAY_SAY_S / 10)
            now = time.monotonic()
            if self.last_seq != seen:
                seen, moved_at = self.last_seq, now
            elif now - moved_at >= REPLAY_STALL_S and not self._caught_up.is_set():
                raise TimeoutError(
                    f"the stream's replay stopped at seq {seen} of {self._replay_until}:"
                    f" no record for {REPLAY_STALL_S:g} s"
                )
            if now - said_at >= REPLAY_SAY_S and not self._caught_up.is_set():
                said_at = now
                per_s = round((seen - first) / (now - started))
                fields = {"seq": seen, "of": self._replay_until, "per_s": per_s}
                log.info(
                    "replica replaying the stream", extra=fields | {"gateway": self.bus.gateway_id}
                )

    async def _hold_lease(self, nc: Client) -> None:
        """Take this gateway's lease (its key is new: at once), bounded."""
        bus = self.bus
        js = nc.jetstream(timeout=1.0)
        replicas = 3 if len(bus.servers) >= 3 else 1
        bus.lease = lease = await Lease.open(
            js,
            bus.gateway_id,
            bucket=GATEWAY_LEASE_BUCKET,
            ttl_s=GATEWAY_LEASE_TTL_S,
            replicas=replicas,
            key=bus.gateway_id,
            shared=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not await attempt(lease.try_acquire):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no lease for gateway {bus.gateway_id} in {START_TIMEOUT_S}s")
            await asyncio.sleep(GATEWAY_LEASE_POLL_S)
        log.info("holding the gateway lease", extra={"gateway": bus.gateway_id})

    async def _keep_lease(self) -> None:
        """Renew the lease; when its term ends unrenewed, stop serving until it is held again
        (the core may already be canceling the sessions' cod orders)."""
        lease = self.bus.lease
        assert lease is not None
        serving = True
        while True:
            await asyncio.sleep(GATEWAY_LEASE_POLL_S)
            if lease.state.renew_due(time.monotonic()):
                await attempt(lease.renew)  # not confirmed: the term runs on to its end
            if lease.held():
                if not serving:
                    serving = True
                    log.info("gateway lease held again: serving", extra={"gateway": lease.key})
                    self.listener.lease_held()
                continue
            if serving:
                serving = False
                log.warning("gateway lease lost: its term ended", extra={"gateway": lease.key})
                # outcomes executed this turn are answered first: the close comes next, and a
                # flush after it would answer sessions already closing (lost answers)
                self.flush_now()
                self.listener.lease_lost()
            await attempt(lease.try_acquire)

    def start_tasks(self) -> None:
        """Timers run on the active core only; the gateway resends lost commands, answers
        the requests owed too long, and keeps snapshots of its replica."""
        self.keep_task(asyncio.create_task(self.bus.resend_lost()))
        self.keep_task(asyncio.create_task(self._periodic_snapshots()))

    def keep_task(self, task: "asyncio.Task[None]") -> None:
        task.add_done_callback(self._check_task)
        self._tasks.append(task)

    def _check_task(self, task: "asyncio.Task[None]") -> None:
        if not task.cancelled() and task.exception() is not None:
            die(task.exception())

    async def snapshot(self) -> Path:
        """Write the replica's state as of its last record executed (raises as
        `snapshots.write` when the disk refuses it). As the core's, with the collector paused
        from the capture to the write (`venue_core.collector_paused`)."""
        with venue_core.collector_paused():  # the image freed with the frame before it is on
            return await self._snapshot_paused()

    async def _snapshot_paused(self) -> Path:
        image, capture_ms = self._capture()
        loop = asyncio.get_running_loop()
        data_dir = self.listener.data_dir
        path: Path = await loop.run_in_executor(
            self._writer, snapshots.write_said, data_dir, image, log, capture_ms
        )
        return path

    def _capture(self) -> tuple[snapshots.Snapshot, float]:
        """The state as of the last record executed, taken on the loop between two records,
        and how long that held the loop (ms). What this turn executed is released first: the
        private streams' history and the market data take a record's pushes and trades at
        its release, not at its execution, and a snapshot holds them for every record up to
        its seq."""
        self.flush_now()
        started = time.perf_counter()
        gateway = self.listener.gateway_image(later=True)
        gateway[stream_snapshots.STREAM_EPOCH_KEY] = self.epoch
        venue = capture_venue(self.venue, later=True)
        image = snapshots.Snapshot(self.last_seq, venue, gateway, self.first_staleness_us)
        return image, round((time.perf_counter() - started) * 1e3, 1)

    async def _snapshot_or_warn(self) -> bool:
        """A periodic snapshot (`snapshots.write_or_warn`: a refusal is a warning), the
        collector paused as in `snapshot`."""
        with venue_core.collector_paused():
            return await self._snapshot_or_warn_paused()

    async def _snapshot_or_warn_paused(self) -> bool:
        image, capture_ms = self._capture()
        loop = asyncio.get_running_loop()
        interval_s = venue_core.SNAPSHOT_INTERVAL_S
        data_dir = self.listener.data_dir
        written: bool = await loop.run_in_executor(
            self._writer, snapshots.write_or_warn, data_dir, image, log, interval_s, capture_ms
        )
        return written

    async def _periodic_snapshots(self) -> None:
        """As the core's: every `SNAPSHOT_INTERVAL_S` with records since the last."""
        await snapshots.periodically(
            lambda: venue_core.SNAPSHOT_INTERVAL_S, lambda: self.last_seq, self._snapshot_or_warn
        )

    async def stop(self) -> None:
        """After the sessions closed: their cod cancels are durable (bounded wait), the lease
        is released, so the core cancels what is left at once rather than after the TTL (nor
        after a disk write), then a last snapshot is written (a refusal is a warning). A stop
        that fails or is canceled on the way gives the lease back, closes the connection and
        lets the directory go all the same (since session 34; the lease since its review)."""
        try:
            await self.bus.drain()
            for task in self._tasks:
                task.cancel()
            await self._release_lease()
            # (a start that failed: nothing to keep, nor the directory to keep it in)
            if self._caught_up.is_set() and self._lock is not None and not self._stopped:
                self._stopped = True
                await self._snapshot_or_warn()
                self._writer.shutdown(wait=False)
        finally:
            for task in self._tasks:
                task.cancel()
            try:
                try:
                    await self._release_lease()  # (done already, unless the drain raised)
                finally:
                    await self._close_connection()
            finally:
                if self._lock is not None:  # let go last: no write of this gateway is left
                    self._lock.close()
                    self._lock = None

    async def hear_cores(self, nc: Client) -> None:
        """Send what is owed whenever a core announces itself (`_on_core_active`)."""
        await nc.subscribe(CORE_ACTIVE_SUBJECT, cb=self._on_core_active)

    async def _on_core_active(self, message: Msg) -> None:
        """A core became active and takes commands: what this gateway holds (sent while none
        was, or to the core that died) goes to it now, not at the next resend."""
        self.bus.send_again("a core is active: sending again")

    async def _on_message(self, message: Msg) -> None:
        """One record of the stream: execute it as the core did. nats-py only logs what a
        callback raises, so a failure here (a broken invariant) is made fatal."""
        try:
            self._execute(message.metadata.sequence.stream, message.data)
        except BaseException as failure:
            die(failure)

    def _execute(self, seq: int, payload: bytes) -> None:
        if seq <= self.last_seq:
            return  # delivered again after the consumer was reset
        assert seq == self.last_seq + 1, f"stream gap before {seq} (at {self.last_seq})"
        record = decode_record(payload)
        command = cast(Command, record.command)
        if seq == 1:
            self.epoch = command.ts_us
        events = self.venue.execute(command)
        self.ledger.drain()  # the core books transfers; here they only must not pile up
        self.last_seq = seq
        origin, barriers, sent = self.bus.outcome_of(record.origin)
        if type(command) is RefuseUnreadCommand and sent is not None:
            # the core refused this gateway's own command unread: the listener is told of the
            # command sent, so what it holds for it (a quote's slot, an amend or cancel owed)
            # is freed as for any refusal; the replica ran the journaled refusal, as all do
            sent = msgspec.structs.replace(sent, ts_us=command.ts_us)
            executed = Executed(seq, sent, events, origin)
            if type(sent) is AmendPair:  # its one refusal is the bid's; the ask's is the same
                executed.split = len(events)
                self.listener.pair_refused_unread()
        else:
            executed = Executed(seq, command, events, origin)
            if type(command) is AmendPair:  # where its ask's events begin, read now
                executed.split = self.venue.pair_split
        self.listener.executed(executed)
        if origin is not None and type(command) is PlaceOrder and command.cod:
            self.listener.placed_with_cod(executed)  # its session may have closed meanwhile
        if not self.live:
            self.listener.replayed([executed])
            if seq >= self._replay_until:
                self._caught_up.set()
            return
        self._released.append(executed)
        self._released.extend(barriers)
        self._schedule_flush()

    def release_barriers(self, barriers: list[Executed]) -> None:
        self._released.extend(barriers)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)

    def flush_now(self) -> None:
        """Release now what this turn executed, if anything (not at the turn's end)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush()

    def _flush(self) -> None:
        """The turn's records are executed: answer, push and publish them in one batch."""
        self._flush_handle = None
        batch, self._released = self._released, []
        try:
            self.listener.released(batch)
        except BaseException as failure:
            die(failure)
        self.bus.progressed()


async def stamp_at(js: Any, seq: int) -> int:
    """The time of the stream's record `seq` (its command's stamp), read by one message get."""
    message = await js.get_msg(STREAM_DEFAULT, seq)
    return int(decode_record(message.data).command.ts_us)


async def _wait_for_stream(js: Any) -> int:
    """The stream's last seq once it holds at least one record (the core built the venue)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            info = await js.stream_info(STREAM_DEFAULT)
            if info.state.last_seq >= 1:
                return int(info.state.last_seq)
        except (nats.js.errors.NotFoundError, nats.errors.TimeoutError):
            pass
        except nats.js.errors.ServiceUnavailableError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no venue on stream {STREAM_DEFAULT} within {START_TIMEOUT_S}s")
        await asyncio.sleep(0.2)


# ----------------------------------------------------------------- the bus


@dataclass(slots=True, eq=False)
class _Waiting:
    """A command sent to the core (request > 0) or a barrier behind the commands before it."""

    request: int
    origin: Any
    events: list[Event] | None = None
    sent_s: float = 0.0  # a command's first send (monotonic): `OUTCOME_WAIT_S` counts from it
    overdue: bool = False  # its origin was told as unknown (`NatsBus.settle_overdue`)
    answered: bool = False  # overdue, and a client's request: answered already (504)


@dataclass(slots=True, frozen=True, eq=False)
class Overdue:
    """A request (its origin) whose command has been owed `OUTCOME_WAIT_S`: its outcome is
    unknown, and it is answered so (`GatewayListener.outcomes_overdue`)."""

    origin: Any
    waited_s: float  # since its command was first sent


class NatsBus:
    """The gateway's bus to a core over NATS; the `EmbeddedBus` interface."""

    def __init__(
        self,
        config: venue_config.VenueConfig,
        servers: str | Sequence[str],
        listener: GatewayListener,
        gateway_id: str | None = None,
    ) -> None:
        # Unique per process: request ids start over at 1 in each, and the core tells
        # a command sent again from a new one by (gateway id, request id). It is the key of
        # the gateway's lease too: a restarted gateway is a new one.
        self.gateway_id = f"{gateway_id or 'gw'}.{secrets.token_hex(4)}"
        if not GATEWAY_ID_PATTERN.fullmatch(self.gateway_id):
            raise ValueError(f"a gateway name of letters, digits, '-', '_', '=', '.': {gateway_id}")
        self.servers = server_list(servers)
        self.nc: Client | None = None
        self.lease: Lease | None = None  # held while it serves (`Replica.start`)
        self.core = Replica(self, listener, venue_config.reserve_staleness_max_us(config))
        # issued API keys, cluster-wide; the gateway's dispatcher sets `on_key`
        self.keys = SharedKeys(3 if len(self.servers) >= 3 else 1, on_key=_no_key_listener)
        # nonces of logons and signed requests, claimed cluster-wide: a replay through
        # another gateway is refused as one through this one is (core/cluster_nonces.py)
        self.nonces = SharedNonces(3 if len(self.servers) >= 3 else 1)
        self.reads = ReadSide(cast(Any, self.core))
        self.outcome_wait_s = config.venue.outcome_wait_ms / 1_000  # `OUTCOME_WAIT_S` by default
        self._request = 0
        self._waiting: deque[_Waiting] = deque()  # in submit order
        self._unsent: list[Submission] = []
        self._unanswered: deque[Submission] = deque()  # sent, no outcome yet
        self._send_scheduled = False
        self._last_progress = time.monotonic()
        # Set while every entry of `_waiting` is a request answered as unknown already: what
        # `drain` waits for (those are answered; their outcomes may take a core's return).
        self._idle = asyncio.Event()
        self._idle.set()
        self._answered_waiting = 0  # entries of `_waiting` whose `answered` is set

    @property
    def epoch(self) -> int:
        return self.core.epoch

    def epoch_of(self, seq: int) -> int:
        return self.core.epoch  # the stream's seqs never start over

    def on_fatal(self, failure: BaseException | None) -> None:
        die(failure)

    def submit(self, command: Command, origin: Any = None) -> Executed:
        """Send `command` to the core; its outcome comes back through the replica. The
        `Executed` returned is a placeholder: events are known only once it comes back."""
        self._request += 1
        now_s = time.monotonic()
        if not self._unanswered and not self._unsent:
            self._last_progress = now_s  # the resend clock starts now
        self._waiting.append(_Waiting(self._request, origin, sent_s=now_s))
        quote_set = getattr(origin, "quote_set", None)
        self._unsent.append(Submission(self._request, quote_set, cast(AnyCommand, command)))
        self._idle.clear()
        if not self._send_scheduled:
            self._send_scheduled = True
            asyncio.get_running_loop().call_soon(self._send)
        return Executed(0, command, [], origin)

    def barrier(self, origin: Any, events: list[Event] | None = None) -> None:
        """Release `origin` behind every command this gateway submitted before it."""
        if self._waiting:
            self._waiting.append(_Waiting(0, origin, events))
            self._idle.clear()  # owed to its client: behind the commands before it
        else:
            self.core.release_barriers([Executed(0, None, events or [], origin)])

    async def drain(self) -> bool:
        """Wait (bounded) until every command submitted so far has come back, but for the
        requests answered as unknown already (`settle_overdue`: their clients have their
        answer): False when some had not after `DRAIN_TIMEOUT_S` (no core active, NATS
        unreachable)."""
        try:
            await asyncio.wait_for(self._idle.wait(), DRAIN_TIMEOUT_S)
        except TimeoutError:
            log.warning("outcomes still owed", extra={"commands": len(self._unanswered)})
            return False
        return True

    def owed(self) -> list[Any]:
        """The origins still waiting for their outcome, in submit order, each once (a
        request of several commands is waiting until its last is back), but for those
        answered as unknown already (`settle_overdue`)."""
        origins: dict[int, Any] = {}
        for waiting in self._waiting:
            if waiting.origin is not None and not waiting.overdue:  # (answered as unknown)
                origins.setdefault(id(waiting.origin), waiting.origin)
        return list(origins.values())

    def outcome_of(self, origin: Origin) -> tuple[Any, list[Executed], Command | None]:
        """The local origin of a record (None when another gateway sent it), the barriers now
        due behind it, and the command this gateway sent under it (None: another's)."""
        if origin.gateway != self.gateway_id:
            return (origin if origin.quote_set is not None else None), [], None
        sent = None
        unanswered = self._unanswered
        while unanswered and unanswered[0].request <= origin.request:
            sent = unanswered.popleft()
        self._last_progress = time.monotonic()
        waiting = self._waiting
        early = self._due_barriers()  # barriers before it were due already
        assert waiting and waiting[0].request == origin.request, "outcomes out of order"
        head = waiting.popleft()
        self._answered_waiting -= head.answered
        command: Command | None = None  # annotated, not cast: this runs for every own record
        if sent is not None and sent.request == origin.request:
            command = sent.command
        return head.origin, early + self._due_barriers(), command

    def _due_barriers(self) -> list[Executed]:
        due = []
        while self._waiting and self._waiting[0].request == 0:
            barrier = self._waiting.popleft()
            due.append(Executed(0, None, barrier.events or [], barrier.origin))
        return due

    def progressed(self) -> None:
        if len(self._waiting) == self._answered_waiting:  # none, or only answered ones
            self._idle.set()

    def _send(self) -> None:
        self._send_scheduled = False
        items, self._unsent = self._unsent, []
        self._unanswered.extend(items)
        self._publish(items)

    def _publish(self, items: list[Submission]) -> None:
        assert self.nc is not None, "the bus is started before requests come"
        for start in range(0, len(items), SUBMISSIONS_MAX):
            chunk = items[start : start + SUBMISSIONS_MAX]
            payload = encode_submissions(Submissions(self.gateway_id, chunk))
            task = asyncio.ensure_future(self.nc.publish(SUBMIT_SUBJECT, payload))
            task.add_done_callback(_log_failed_publish)

    async def resend_lost(self) -> None:
        """Send again what has not come back for a while (the core sequences each once), and
        answer what has been owed for too long (`settle_overdue`)."""
        while True:
            await asyncio.sleep(RESEND_CHECK_S)
            self.settle_overdue(time.monotonic())
            if time.monotonic() - self._last_progress > RESEND_AFTER_S:
                self.send_again("sending again")

    def send_again(self, why: str) -> None:
        """Send every command owed again, now (the core drops those it sequenced already)."""
        if self._unanswered:
            log.warning(why, extra={"commands": len(self._unanswered)})
            self._last_progress = time.monotonic()
            self._publish(list(self._unanswered))

    def settle_overdue(self, now_s: float) -> None:
        """Tell the listener of each request owed `outcome_wait_s` at `now_s` (`Overdue`), in
        submit order with the barriers behind them, which are due now (they waited for the
        answers before them, which these are) and leave the queue. The overdue commands stay
        in it (still resent; their outcomes come back in order, as every one's) and are not
        told again. A request's commands are overdue together, told once: a batch's are sent
        microseconds apart, and a check between their deadlines left the later ones owed, so
        a lost lease answered the request again (`owed`). Stops at the first command not
        overdue (nor of a request told): the later ones are younger."""
        waiting, wait_s = self._waiting, self.outcome_wait_s
        if not waiting or (waiting[0].request and now_s - waiting[0].sent_s < wait_s):
            return  # nothing owed, or nothing owed long (the usual case: one test)
        settled: list[Overdue | Executed] = []
        kept: list[_Waiting] = []  # the overdue commands at its head, back in the queue after
        told: Any = None  # the origin of the last overdue command: its request's others follow
        while waiting:
            head = waiting[0]
            origin = head.origin
            if head.request == 0:
                settled.append(Executed(0, None, head.events or [], origin))
            elif head.overdue or now_s - head.sent_s >= wait_s or _same(origin, told):
                if not head.overdue:
                    head.overdue = True
                    head.answered = self.core.listener.is_client_request(origin)
                    self._answered_waiting += head.answered
                    if not _same(origin, told):  # (a request's first command: told once)
                        settled.append(Overdue(origin, now_s - head.sent_s))
                told = origin
                kept.append(head)
            else:
                break
            waiting.popleft()
        waiting.extendleft(reversed(kept))
        if settled:
            log.warning("no outcome in time", extra={"requests": len(settled)})
            self.core.flush_now()  # outcomes already back are answered first, in order
            self.core.listener.outcomes_overdue(settled)
            self.progressed()


def _same(origin: Any, told: Any) -> bool:
    """Whether a command's `origin` is the request `told` (None: the gateway's own command,
    each one of its own)."""
    return origin is not None and origin is told


def _no_key_listener(payload: bytes) -> None:
    log.warning("an issued key arrived before the gateway listened for keys")


def _log_failed_publish(task: "asyncio.Future[None]") -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("publish failed (sent again later): %r", task.exception())
