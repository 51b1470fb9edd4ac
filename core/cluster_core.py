"""The core role of the cluster: the active core, or a standby waiting for the lease.

Owns `ClusterCore`, what `venue serve --role core --nats URL` runs. It contends for the
lease (core/lease.py); while another core holds it, it waits as a standby. Once it holds
the lease it runs a `VenueCore` whose journal is the JetStream stream (recovering from its
own latest snapshot and the stream, and catching the ledger store up, PostgreSQL or SQLite),
takes the gateways' commands from `SUBMIT_SUBJECT` (each gateway's request ids in order,
each once), sequences and executes them and appends each batch to the stream; the gateways
read the outcomes from the stream itself. The clock, snapshots and summaries run here only
(a standby snapshots its warm copy, in its own data directory: `StandbySnapshots`).
A core that cannot renew its lease in time stops at once (exit 70): a standby takes over,
and the stream's expected-last-sequence refuses any append it still had in flight. The lease
is renewed on a thread of its own (`core.lease_thread`): a takeover's recovery holds the
loop, for longer than a term after a busy minute without a snapshot. A core that takes the
lease while the ledger's PostgreSQL is down waits for it, renewing the lease, before it
recovers: the stream holds every acknowledged command, and the store is caught up from it;
one whose own login the server refuses gives the lease up at once, saying so at error.
Cancel-on-disconnect of a gateway that died: every core derives from the stream which gateway
placed each order marked cod (`CodOrders`); the active core cancels (reason cod) the open ones
of a gateway whose lease (core/nats_bus.py) is gone, as commands through the stream.
"""

import asyncio
import bisect
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, Final

import msgspec
import nats.errors
import psycopg
from nats.aio.client import Client
from nats.aio.msg import Msg

from core import config as venue_config
from core import snapshots, stream_snapshots, venue_core
from core.jetstream_journal import (
    STREAM_DEFAULT,
    SUBJECT_DEFAULT,
    JetStreamJournal,
    close_connection,
)
from core.journal import JournalError
from core.lease import key_held, open_bucket
from core.lease_thread import ThreadLease
from core.nats_bus import (
    CORE_ACTIVE_SUBJECT,
    GATEWAY_COMMANDS,
    GATEWAY_LEASE_BUCKET,
    GATEWAY_LEASE_TTL_S,
    PENDING_MESSAGES_MAX,
    SUBMIT_SUBJECT,
    ClusterCodec,
    Origin,
    Submissions,
    connect,
    decode_each_submission,
    decode_submissions,
    die,
    server_list,
    stamp_at,
)
from core.sequencer import Executed, describe_failure
from core.stream_follow import StreamFollow
from core.venue_core import RecoveryRefused, VenueCore, WarmStart
from engine.book import Order
from engine.commands import (
    CancelOrder,
    Command,
    PlaceOrder,
    RefuseCancelOnDisconnect,
    SetCancelOnDisconnect,
)
from engine.enums import CancelReason
from engine.events import CancelOnDisconnectSet, Event, OrderAccepted
from engine.snapshot import restore as restore_venue
from engine.venue import Venue
from settlement.ledger import Ledger
from settlement.pg_store import (
    CONNECT_TIMEOUT_S,
    ConnectFailure,
    PostgresLedgerStore,
    try_connect,
)
from settlement.store import LedgerStoreError, SqliteLedgerStore
from settlement.transfers import Transfer

log = logging.getLogger("venue.cluster")

# A dead core is replaced within ~10 s (plus its recovery). Shorter terms ended during the
# few seconds of leader election after a NATS node died (no renewal could land), so a
# node's death took the core down with it; at 10 s, renewed every second (core/lease.py), the
# holder rides out ~7 s without one.
LEASE_TTL_S: Final = 10.0
LEASE_POLL_S: Final = 0.1  # how often the active core checks its term; a standby polls 2x this
LEASE_REQUEST_TIMEOUT_S: Final = 1.0  # a lease write unanswered by then is unconfirmed
# How often the active core reads the leases of the gateways with cod orders open: a dead
# gateway's orders are canceled within its lease's TTL plus this. A periodic read, not a KV
# watch: the server expires a key by its TTL silently (nats-server 2.9 sends watchers no
# marker), and a core taking over must find the gateways that died before it was active.
GATEWAY_SCAN_S: Final = 1.0
# A core holding the lease while the ledger's PostgreSQL is down retries this often: from
# the minimum, doubling to the maximum (a refused connection costs ~1 ms; a restart takes s).
STORE_RETRY_MIN_S: Final = 0.25
STORE_RETRY_MAX_S: Final = 2.0
# A start whose store answers but fails its writes (a full disk: DiskFull) is tried again this
# often, doubling: each try after the first recovers cold (this core's snapshot, if any, and
# the stream after it: a standby's own are at most a minute old since session 34), seconds of
# CPU on a long stream, so less often than a connection is tried.
START_RETRY_MIN_S: Final = 1.0
START_RETRY_MAX_S: Final = 30.0
# Failed starts are retried holding the lease for this long at most (a few terms: a full disk
# freed by an operator within them keeps the core), then the lease is given up to a standby,
# whose store or role may fare better, and this core contends again as one.
START_HELD_MAX_S: Final = 3 * LEASE_TTL_S
# SQLSTATEs of a failed start that are the store's, not this core's, so worth the lease held:
# class 53 (insufficient resources: a full disk, its memory, its connections), class 08 (the
# connection lost) and a server shutting down or starting (57P01-57P03). Any other (a
# statement timeout of this core's role, a lock, a serialization failure) may fail this core
# alone, for ever: the lease is given up at once.
START_HELD_CLASSES: Final = ("53", "08")
START_HELD_STATES: Final = frozenset({"57P01", "57P02", "57P03"})
# How often a standby drops the transfers of its warm copy that the PostgreSQL store holds
# already (`Follower.trim`): the copy follows the stream from its start and kept every
# transfer for a takeover's catch-up, so a standby's memory grew by every trade the venue
# ever booked (up to ~0.7 KB a trade, measured), for as long as it stood by.
STANDBY_TRIM_S: Final = 30.0
# How long a standby's start retries reading the stream's record that checks its snapshot
# (`latest_usable`'s `stamp_retry_s`): 0, one try; `_follow` tries again at the next lease
# poll, which the 30 s of a core's own cold recovery (`STAMP_RETRY_S`) would hold up (a
# takeover, a SIGTERM waited ~35 s, not the lease's TTL, until session 34's second review).
STANDBY_STAMP_RETRY_S: Final = 0.0
PRUNE_MIN: Final = 1_024  # `CodOrders` drops closed orders once it holds twice its open ones
# Gateways whose last request id logged is kept, for refusals and for drops alike
# (`_first_logged`): a gateway sends an unanswered message again every 2 s, and it is logged
# once; a cluster runs a few gateways (a new id each process), so the oldest noted is
# forgotten past this.
LOGGED_GATEWAYS_MAX: Final = 64


def _stored_up_to(dsn: str) -> int:
    """The last transfer id the PostgreSQL store at `dsn` holds, read without writing."""
    store = PostgresLedgerStore(dsn, read_only=True)
    try:
        return store.last_transfer_id()
    finally:
        store.close()


def _stored_in_file(path: Path) -> int:
    """The last transfer id the SQLite store at `path` holds (0: no file yet), read without
    writing."""
    if not path.exists():
        return 0
    store = SqliteLedgerStore(path, read_only=True)
    try:
        return store.last_transfer_id()
    finally:
        store.close()


def _transfer_id(transfer: Transfer) -> int:
    return transfer.transfer_id


def held_through(failed: psycopg.OperationalError) -> bool:
    """Whether a start that failed so is retried holding the lease (`START_HELD_CLASSES`,
    `START_HELD_STATES`); no SQLSTATE at all: libpq lost the connection, as when refused."""
    state = failed.sqlstate
    return state is None or state[:2] in START_HELD_CLASSES or state in START_HELD_STATES


class _StartGivenUp(Exception):
    """The start failed in a way that is not waited out holding the lease (`held_through`),
    or for longer than `START_HELD_MAX_S`: the lease is to be given up to a standby."""


async def _checked_unless_stopped(dsn: str, stopping: asyncio.Event) -> ConnectFailure | None:
    """`try_connect(dsn)` on a thread, awaited until it ends or `stopping` is set, whichever
    comes first: one check takes up to `CONNECT_TIMEOUT_S` for each host of the DSN and each
    address of a host's name (a host that takes TCP and never answers), and until session
    36's third review a stop waited for it (19.5 s seen with two such hosts). Left to end
    alone then: it gives up and closes its connection within `STOP_LOOK_S`, so the
    executor's threads, joined as the loop closes, do not hold the stop. Its result, once
    stopped, is not read."""
    abandoned = threading.Event()
    loop = asyncio.get_running_loop()
    checking = loop.run_in_executor(None, try_connect, dsn, CONNECT_TIMEOUT_S, abandoned.is_set)
    stopped = asyncio.ensure_future(stopping.wait())
    either: set[asyncio.Future[Any]] = {checking, stopped}
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if not checking.done():
        abandoned.set()
        checking.add_done_callback(lambda future: future.exception())  # (none is logged)
        return None
    return checking.result()


# Where a core's DSN came from, as its lines name it for the operator to fix (`dsn_setting`)
DSN_FROM_FLAG: Final = "this core's --postgres DSN"


def dsn_from_config(config_path: Path) -> str:
    """`ClusterCore.dsn_setting` for a DSN the config's `ledger_postgres` gave (no --postgres)."""
    return f"ledger_postgres in {config_path}"


def store_refusal(
    refused: ConnectFailure, setting: str = DSN_FROM_FLAG, starting: bool = False
) -> tuple[str, str]:
    """What is wrong with a store `refused` (`ConnectFailure.refused`) and what the operator
    is to do, for one line: the give-up's, or the start's refusal (`starting`); `setting`
    names where the DSN came from (`ClusterCore.dsn_setting`). libpq's words said once: until
    session 38 a DSN wrong read "DSN is wrong (the DSN is wrong: ...)"."""
    if refused.dsn_wrong:
        again = "start it again" if setting == DSN_FROM_FLAG else "start this core again"
        return (
            f"the ledger store's PostgreSQL DSN is wrong ({refused.reason})",
            f"fix {setting} and {again}",
        )
    then = "" if starting else ", and it contends again"
    return (
        f"the ledger store's PostgreSQL is up but refused this core's login ({refused.said})",
        f"fix {setting}, its password (PGPASSWORD, ~/.pgpass) or the"
        f" server's roles and pg_hba.conf{then}",
    )


def notes_cod(command: Command | None) -> bool:
    """Whether `CodOrders.note` can learn anything from a record of `command`: a place with
    cod on, or a re-mark (the cores test each record before a call)."""
    if type(command) is PlaceOrder:
        return command.cod
    return type(command) is SetCancelOnDisconnect


class CodOrders:
    """Which gateway placed each open order marked cod (placed with cod on, or marked since
    by `SetCancelOnDisconnect`, and not unmarked since), derived from the stream (the
    record's `Origin` and the order ids its events name), so every core, a standby's copy
    included, knows it alike. Orders close without being removed here: a reader filters by
    the venue's open orders, and `prune` drops the closed ones (bound: at most twice the
    open cod orders, or `PRUNE_MIN`, between prunes).
    It also knows whose cod each such order is (`holders`: the gateway that placed it with
    cod on or marked or unmarked it last, unmarked ones included), by which the active core
    refuses a cod cancel sent through another gateway (`refuses`)."""

    def __init__(self) -> None:
        self.by_gateway: dict[str, set[int]] = {}
        self.holders: dict[int, str] = {}  # order id -> gateway; closed ones until a prune
        self.size = 0
        self._prune_at = PRUNE_MIN
        self._holders_prune_at = PRUNE_MIN

    def note(self, origin: Origin | None, command: Command, events: list[Event]) -> None:
        """A record executed: remember the order it placed, if placed with cod on; or the
        orders it marked or unmarked (a connection of that gateway turned cod on or off: the
        orders are the ones it placed, so through that gateway; or, since session 29, one
        that requoted quotes placed through another gateway took their cod: a mark moves
        them from any other gateway's set, which before named none of them)."""
        if not notes_cod(command) or origin is None:
            return
        if not origin.gateway:
            return  # the core's own commands: no gateway's sessions
        for event in events:
            if type(event) is OrderAccepted:
                self.by_gateway.setdefault(origin.gateway, set()).add(event.order_id)
                self.holders[event.order_id] = origin.gateway
                self.size += 1
            elif type(event) is CancelOnDisconnectSet:
                self.size += len(event.order_ids)
                if event.cod:  # the gateway's now, and no other's: a requote there took it
                    for gateway, order_ids in self.by_gateway.items():
                        if gateway != origin.gateway:
                            order_ids.difference_update(event.order_ids)
                    self.by_gateway.setdefault(origin.gateway, set()).update(event.order_ids)
                    self.holders.update(dict.fromkeys(event.order_ids, origin.gateway))
                else:
                    self.by_gateway.get(origin.gateway, set()).difference_update(event.order_ids)
                    for order_id in event.order_ids:  # an unmark sent before its gateway
                        # heard that another's connection took the order leaves it that one's
                        self.holders.setdefault(order_id, origin.gateway)

    def refuses(self, gateway: str, order_id: int) -> bool:
        """Whether a cod cancel of `order_id` sent through `gateway` is to be refused: the
        order's cod is another gateway's (a connection there requoted it and took it, and
        maybe turned cod off since), so the connection closing on `gateway` no longer holds
        it; its gateway had not heard so when the close sent the cancel. An order none of
        these records named (placed with cod off, not marked since) is the sender's."""
        holder = self.holders.get(order_id)
        return holder is not None and holder != gateway

    def prune(self, orders: dict[int, Order]) -> None:
        """Forget the orders no longer open (and gateways left with none); the holders only
        once they doubled since their last prune (the gateway scan prunes every second: a
        rebuild of every holder each time doubled its cost). A closed order's holder left
        meanwhile only decides whether a cod cancel of it, which closes nothing, is refused."""
        if len(self.holders) >= self._holders_prune_at:
            self._prune_holders(orders)
        for gateway, order_ids in list(self.by_gateway.items()):
            still_open = {order_id for order_id in order_ids if order_id in orders}
            if still_open:  # (not `intersection_update(orders)`: it walks every open order)
                self.by_gateway[gateway] = still_open
            else:
                del self.by_gateway[gateway]
        self.size = sum(len(order_ids) for order_ids in self.by_gateway.values())
        self._prune_at = max(PRUNE_MIN, 2 * self.size)

    def _prune_holders(self, orders: dict[int, Order]) -> None:
        self.holders = {
            order_id: gateway for order_id, gateway in self.holders.items() if order_id in orders
        }
        self._holders_prune_at = max(PRUNE_MIN, 2 * len(self.holders))

    def prune_when_grown(self, orders: dict[int, Order]) -> None:
        if self.size >= self._prune_at:
            self.prune(orders)

    def open_orders_of(self, gateway: str, orders: dict[int, Order]) -> list[Order]:
        """The gateway's cod orders still open, by order id."""
        placed = self.by_gateway.get(gateway, ())
        return [orders[order_id] for order_id in sorted(placed) if order_id in orders]

    def image(self) -> list[tuple[str, list[int]]]:
        return [(gateway, sorted(ids)) for gateway, ids in sorted(self.by_gateway.items())]

    def holders_image(self) -> list[tuple[str, list[int]]]:
        by_holder: dict[str, list[int]] = {}
        for order_id, gateway in sorted(self.holders.items()):
            by_holder.setdefault(gateway, []).append(order_id)
        return sorted(by_holder.items())

    def restore(
        self,
        image: list[tuple[str, list[int]]],
        holders: list[tuple[str, list[int]]] | None = None,
    ) -> None:
        """Take an image back; `holders` None (a snapshot written before them): each marked
        order's holder is its gateway (the unmarked ones' are unknown: not refused)."""
        self.by_gateway = {gateway: set(order_ids) for gateway, order_ids in image}
        self.holders = {
            order_id: gateway
            for gateway, order_ids in (image if holders is None else holders)
            for order_id in order_ids
        }
        self.size = sum(len(order_ids) for order_ids in self.by_gateway.values())
        self._holders_prune_at = max(PRUNE_MIN, 2 * len(self.holders))


class CoreGatewayPart:
    """The core's listener: no sessions here (the gateways push from the stream); it keeps
    the cod orders per gateway (`CodOrders`). Its part of a snapshot is the last request id
    sequenced per gateway, so a command a gateway sends again after a restart from that
    snapshot is still recognised, and those cod orders."""

    def __init__(self, codec: ClusterCodec, cod_orders: CodOrders | None = None) -> None:
        self.codec = codec
        self.cod_orders = CodOrders() if cod_orders is None else cod_orders

    def executed(self, executed: Executed) -> None:
        # Only a place with cod on or a re-mark is noted: two type tests for the others. A
        # replayed command comes with no origin (its record's is noted in `replayed`).
        command = executed.command
        if (
            (type(command) is PlaceOrder and command.cod) or type(command) is SetCancelOnDisconnect
        ) and type(executed.origin) is Origin:
            self.cod_orders.note(executed.origin, command, executed.events)

    def released(self, batch: list[Executed]) -> None:
        pass

    def replayed(self, batch: list[Executed]) -> None:
        for executed in batch:  # one at a time, right after its record was decoded
            if executed.command is not None:
                self.cod_orders.note(self.codec.decoded_origin, executed.command, executed.events)

    def gateway_image(self, later: bool = False) -> dict[str, Any]:
        image = {"last_request": dict(self.codec.last_request)}
        cod_orders = self.cod_orders
        return image | {"cod_orders": cod_orders.image(), "cod_holders": cod_orders.holders_image()}

    def restore_gateway(self, image: dict[str, Any]) -> None:
        self.codec.last_request.update(image.get("last_request", {}))
        self.cod_orders.restore(image.get("cod_orders", []), image.get("cod_holders"))


class Follower:
    """A standby's warm copy of the venue: every record of the stream executed as it comes,
    so a takeover replays only what the follower had not seen (`WarmStart`). Its codec is
    the core's: the last request id per gateway is known at takeover too. It starts from the
    core's own newest usable snapshot in `data_dir` (its venue, the core's part and the
    transfers not known stored), following the stream after it; none usable
    (core/stream_snapshots.py), from the stream's start. It writes its own snapshots there
    while it follows (`StandbySnapshots`), in the format an active core writes."""

    def __init__(
        self,
        codec: ClusterCodec,
        cod_orders: CodOrders,
        staleness_us: int,
        data_dir: Path | None = None,
        name: str = "standby",
        own_store: Path | None = None,
    ) -> None:
        # The rules a stream begins under (`first_rules`): one begun since the rules are
        # journaled sets the active core's in its first record, whatever `staleness_us`
        # (this standby's config) says; one begun before ran under the config's bound.
        self.ledger = Ledger()
        self.venue = Venue(snapshots.first_rules(None, staleness_us), self.ledger)
        self._staleness_us = staleness_us
        self.first_staleness_us = self.venue.config.reserve_staleness_max_us  # see `Snapshot`
        self.codec = codec
        self.cod_orders = cod_orders
        self.seq = 0
        self.transfers: list[Any] = []  # for the store's catch-up, as a replay keeps them
        self.broken = False  # a gap seen: the takeover falls back to a cold replay
        self.data_dir = data_dir
        self.name = name
        self.own_store = own_store  # a `--sqlite` core's store: its snapshots trim against it
        self._follow: StreamFollow | None = None
        self._watch: asyncio.Task[None] | None = None
        self._snapshots: StandbySnapshots | None = None

    async def start(self, nc: Client) -> None:
        """Follow the stream from the record after the copy's last (a copy that has none yet
        starts from its newest usable snapshot first). Through `StreamFollow`: the ordered
        consumer dies with its NATS node, and nats-py replaced it only 10 to 20 s later; the
        copy lagged meanwhile, so a takeover then replayed all it had missed."""
        if self.seq == 0 and self.data_dir is not None:
            await self._restore_latest(nc, self.data_dir)
        follow = StreamFollow(
            nc,
            STREAM_DEFAULT,
            SUBJECT_DEFAULT,
            self._on_message,
            lambda: self.seq,
            pending_msgs_limit=PENDING_MESSAGES_MAX,
        )
        await follow.start(LEASE_REQUEST_TIMEOUT_S * 5)
        self._follow = follow
        self._watch = asyncio.create_task(follow.watch())
        if self.data_dir is not None and self._snapshots is None:
            self._snapshots = StandbySnapshots(self, self.data_dir, self.name, self.own_store)

    async def _restore_latest(self, nc: Client, data_dir: Path) -> None:
        """Take the newest usable snapshot of this core (its venue, the core's part: the last
        request id per gateway and the cod orders, and the transfers it had not stored, which
        a takeover's catch-up books as it would those the copy books after). A NATS error
        is raised (`StampUnread` too): `_follow` tries again at the next poll. Checked as the
        takeover's recovery will check the directory (`strict`): what it would refuse (a
        snapshot ahead of the stream, a gateway's, a link to nothing, a record at its seq that
        does not decode) is refused now, at the standby's start (`RecoveryRefused`), not after
        a life of following from seq 1 (nor, for a record not decoded, tried again for ever
        every poll, the newest snapshot read and decoded each time)."""
        js = nc.jetstream(timeout=LEASE_REQUEST_TIMEOUT_S * 5)
        image, last_seq = await self._latest_usable(js, data_dir)
        if image is None:
            fields = {"core": self.name}
            log.info(
                "standby follows the stream from its start (%d records)", last_seq, extra=fields
            )
            return
        try:  # (the codec and cod orders are the core's: tried on copies first)
            venue = restore_venue(image.venue)
            CoreGatewayPart(ClusterCodec(), CodOrders()).restore_gateway(image.gateway)
        except Exception as failed:  # a snapshot is a cache: the stream holds every record
            log.warning(
                "snapshot not restored: %r; standby follows the stream from its start (%d records)",
                failed,
                last_seq,
                extra={"core": self.name, "seq": image.seq},
            )
            return
        assert venue.ledger is not None, "a core's snapshot always holds its ledger"
        self.venue, self.ledger = venue, venue.ledger
        rules = snapshots.first_rules(image, self._staleness_us)
        self.first_staleness_us = rules.reserve_staleness_max_us
        CoreGatewayPart(self.codec, self.cod_orders).restore_gateway(image.gateway)
        self.transfers.extend(self.ledger.drain())
        self.seq = image.seq
        replaying = last_seq - image.seq
        log.info(
            "restored snapshot seq %d, replaying %d records",
            image.seq,
            replaying,
            extra={"core": self.name, "seq": image.seq, "replaying": replaying},
        )

    async def _latest_usable(
        self, js: Any, data_dir: Path
    ) -> tuple[snapshots.Snapshot | None, int]:
        """`latest_usable` (strict) and the stream's last seq, read again once if a snapshot is
        past it: on a directory shared with the active core (warned against, yet seen), one
        it wrote after the first read is not ahead of the stream. A record read once
        (`STANDBY_STAMP_RETRY_S`): one not read raises `StampUnread`, tried again next poll."""
        for last_read in (False, True):
            last_seq = int((await js.stream_info(STREAM_DEFAULT)).state.last_seq)
            try:
                image = await stream_snapshots.latest_usable(
                    data_dir,
                    last_seq,
                    lambda seq: stamp_at(js, seq),
                    gateway_s=False,
                    who=self.name,
                    strict=True,
                    stamp_retry_s=STANDBY_STAMP_RETRY_S,
                )
                return image, last_seq
            except stream_snapshots.Refused as refused:
                if last_read or refused.why == stream_snapshots.GATEWAY_S:
                    raise RecoveryRefused(refused.explained(data_dir, last_seq)) from None
            except stream_snapshots.StampUnread as unread:
                if unread.undecoded:  # no later try reads it: the operator's to settle
                    raise RecoveryRefused(str(unread)) from None
                raise
        raise AssertionError("the loop returns or raises")

    @property
    def following(self) -> bool:
        return self._follow is not None

    def trim(self, stored: int) -> int:
        """Drop the transfers the ledger store holds already (ids up to `stored`): a
        takeover's catch-up books only those above the store's last. How many went."""
        transfers = self.transfers  # in id order, as the venue booked them
        held = bisect.bisect_right(transfers, stored, key=_transfer_id)
        del transfers[:held]
        return held

    def capture(self) -> tuple[snapshots.Snapshot, float]:
        """The copy as a core's snapshot at its last seq (its venue, the core's part), and how
        long taking it held the loop (ms). Taken as the active core takes its own
        (`venue_core.image_for_write`): the long parts references that following the stream
        does not change, made by the writer thread; until session 35 a pair per closed order
        id was made on the loop (~60-90 ms at the engine's million, the lease poll and the
        following waiting meanwhile). The transfers it keeps for a takeover's catch-up
        are the image's undrained ones (copied: the copy books more), as the active core's
        not stored yet are: a start from it (a standby's, or a cold recovery) books them, or
        replays the stream from its start when the store lacks older ones
        (`Recovery._store_behind`)."""
        started = time.perf_counter()
        part = CoreGatewayPart(self.codec, self.cod_orders)
        image = venue_core.image_for_write(self.seq, self.venue, part, self.first_staleness_us)
        venue = image.venue
        assert venue.ledger is not None, "a warm venue always holds its ledger"
        ledger = msgspec.structs.replace(venue.ledger, undrained=list(self.transfers))
        image = msgspec.structs.replace(image, venue=msgspec.structs.replace(venue, ledger=ledger))
        return image, round((time.perf_counter() - started) * 1e3, 1)

    async def stop(self, *, last_snapshot: bool = False) -> WarmStart | None:
        """Stop following and writing snapshots (`last_snapshot`: a standby's own stop, which
        writes one more of a copy gone on since its last, as an active core's stop does; a
        takeover's does not wait for one); the state so far, unless it cannot be trusted."""
        self._stop_watching()
        if self._follow is not None:
            await self._follow.stop()
            self._follow = None
        if self._snapshots is not None:  # (the data directory let go: the takeover's next)
            await self._snapshots.close(last=last_snapshot)
        return None if self.broken else WarmStart(self.seq, self.venue, self.transfers)

    def _stop_watching(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def _break(self) -> None:
        """The copy cannot be trusted: the takeover replays cold. Nothing is followed any
        more (the watch would subscribe again, forever, past a seq that never moves)."""
        self.broken = True
        self._stop_watching()

    async def _on_message(self, message: Msg) -> None:
        if self.broken:
            return
        seq = message.metadata.sequence.stream
        if seq <= self.seq:
            return  # delivered again after the consumer was reset
        if seq != self.seq + 1:
            self._break()
            log.warning("standby saw a gap: will replay", extra={"seq": seq, "at": self.seq})
            return
        try:
            command = self.codec.decode(message.data)
            events = self.venue.execute(command)
        except Exception as failure:  # the active core executed it: a bug here, not there
            self._break()
            log.error("standby could not execute seq %d: %r; will replay", seq, failure)
            return
        # the rest: no call (`notes_cod`, inline)
        if (type(command) is PlaceOrder and command.cod) or type(command) is SetCancelOnDisconnect:
            self.cod_orders.note(self.codec.decoded_origin, command, events)
            self.cod_orders.prune_when_grown(self.venue.orders)
        self.transfers.extend(self.ledger.drain())
        self.seq = seq


class StandbySnapshots:
    """A standby's own snapshots of its warm copy (`Follower.capture`), in its own data
    directory, at the active core's cadence (every `SNAPSHOT_INTERVAL_S` with records since
    the last, and at its clean stop): its restart, and its cold recovery once active, follow
    the stream from there, not from seq 1 (until session 34 a core never active wrote none).
    Written under the directory's `venue.lock`, taken at the first write and held until
    `close` (which a takeover's `VenueCore`, taking it next, waits for): a standby on a
    directory another process holds (the active core's, a gateway's) writes none there,
    saying so once. One at a time, off the loop; a broken copy is not written. A `--sqlite`
    core's store (`own_store`) is its own file, which nobody writes while the standby holds
    the directory: its last transfer id is read once, and the copy keeps (and its snapshots
    hold) only the transfers above it, those a takeover's catch-up books; until session 34's
    review every snapshot held every transfer the copy had booked since its start."""

    def __init__(
        self, follower: Follower, data_dir: Path, name: str, own_store: Path | None = None
    ) -> None:
        self.follower = follower
        self.data_dir = data_dir
        self.name = name
        self._own_store = own_store
        self._stored: int | None = None  # `own_store`'s last transfer id, once read
        self._store_failure_said = False
        self._lock: IO[bytes] | None = None
        self._refused = False  # the directory another's: none written
        self._closed = False
        self._written_seq = follower.seq  # (a restored snapshot of this seq is there)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="venue-standby-snapshots")
        self._periodic = asyncio.ensure_future(
            snapshots.periodically(
                lambda: venue_core.SNAPSHOT_INTERVAL_S, lambda: follower.seq, self._write_or_warn
            )
        )
        self._periodic.add_done_callback(_fatal_unless_cancelled)

    async def close(self, *, last: bool) -> None:
        """Stop writing (`last`: one more first, if the copy went on since the last written),
        wait for a write under way, and let the directory go. A second call does nothing."""
        if self._closed:
            return
        self._closed = True
        self._periodic.cancel()
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await self._periodic
            if last and self.follower.seq != self._written_seq:
                await self._write_or_warn()
        finally:  # (a write that raised: the directory let go all the same)
            await asyncio.get_running_loop().run_in_executor(self._writer, _nothing)
            self._writer.shutdown(wait=False)
            if self._lock is not None:
                self._lock.close()
                self._lock = None

    async def _write_or_warn(self) -> bool:
        """A snapshot of the copy: written (True), or not (a refusal of the disk a warning:
        `snapshots.write_or_warn`), the collector paused as for the core's."""
        if self.follower.broken or not self._held():
            return False
        await self._trim_to_own_store()
        with venue_core.collector_paused():
            return await self._write_paused()

    async def _trim_to_own_store(self) -> None:
        """Drop the copy's transfers its own SQLite store holds (`Follower.trim`, as
        `ClusterCore._trim_follower` does against PostgreSQL). A store not read keeps them
        all, said once, read again at the next write: a file the store does not read too (no
        schema: a core killed between creating it and its schema; another schema version),
        which until session 34's second review ended the writes and so the standby."""
        if self._own_store is None:
            return
        if self._stored is None:
            loop = asyncio.get_running_loop()
            try:
                self._stored = await loop.run_in_executor(
                    self._writer, _stored_in_file, self._own_store
                )
            except (OSError, sqlite3.Error, LedgerStoreError) as unread:
                level = logging.DEBUG if self._store_failure_said else logging.WARNING
                self._store_failure_said = True
                log.log(level, "standby keeps its transfers: %s not read (%s)", self._own_store,
                        unread, extra={"core": self.name})  # fmt: skip
                return
        self.follower.trim(self._stored)

    async def _write_paused(self) -> bool:
        image, capture_ms = self.follower.capture()
        interval_s = venue_core.SNAPSHOT_INTERVAL_S
        written: bool = await asyncio.get_running_loop().run_in_executor(
            self._writer, snapshots.write_or_warn, self.data_dir, image, log, interval_s, capture_ms
        )
        if written:
            self._written_seq = image.seq
        return written

    def _held(self) -> bool:
        """Whether this standby holds its data directory, taken (and its stray `.tmp` files
        removed) at the first call; held by another, said once and never tried again."""
        if self._lock is not None or self._refused:
            return not self._refused
        try:
            self.data_dir.mkdir(mode=venue_core.DATA_DIR_MODE, parents=True, exist_ok=True)
            self._lock = venue_core.lock_data_dir(self.data_dir)
            snapshots.remove_stray(self.data_dir)
        except (JournalError, OSError) as held:  # (JournalLocked: another process's)
            self._refused = True
            if self._lock is not None:
                self._lock.close()
                self._lock = None
            log.warning(
                "standby writes no snapshots: its data directory is not its own (%s); give each"
                " core its own --data-dir",
                held,
                extra={"core": self.name, "data_dir": str(self.data_dir)},
            )
            return False
        return True


def _fatal_unless_cancelled(task: "asyncio.Task[None]") -> None:
    """A task that ended otherwise than canceled raised: a bug here (the disk's refusals are
    warnings), crashing loudly as a core's or a gateway's periodic snapshot's does."""
    if not task.cancelled() and task.exception() is not None:
        die(task.exception())


def _nothing() -> None:
    """Run on a writer's thread: done once every write handed to it before is done."""


class ClusterCore:
    """One core process: standby until it holds the lease, then the venue's sequencer."""

    def __init__(
        self,
        config: venue_config.VenueConfig,
        data_dir: Path,
        servers: str | Sequence[str],
        name: str,
        dsn_setting: str = DSN_FROM_FLAG,
    ) -> None:
        self.config = config
        self.dsn_setting = dsn_setting  # where its DSN came from, for the operator to fix
        self.data_dir = data_dir
        self.servers = server_list(servers)
        self.name = name
        self.codec = ClusterCodec()
        self.cod_orders = CodOrders()
        self._trim_failure_said = False  # `_trim_follower`'s first failure logged
        self._no_stream_said = False  # `_follow`'s failure logged since it last followed
        self.refusals_logged: dict[str, int] = {}  # gateway -> its last refused request logged
        self.drops_logged: dict[str, int] = {}  # gateway -> its last dropped request logged
        self.core: VenueCore | None = None
        self.nc: Client | None = None
        self.lease: ThreadLease | None = None
        self.follower = self._new_follower()

    def _new_follower(self) -> Follower:
        staleness_us = venue_config.reserve_staleness_max_us(self.config)
        own_store = (
            None if self.config.venue.ledger_postgres else self.data_dir / venue_core.LEDGER_FILE
        )
        return Follower(
            self.codec, self.cod_orders, staleness_us, self.data_dir, self.name, own_store
        )

    async def store_refused(self, stopping: asyncio.Event) -> str | None:
        """The start's check of the ledger store's DSN, before this core contends: for a DSN
        wrong, what is wrong and what to do (the start is refused: it cannot change while
        the core runs), else None. A login refused (`refuses_login`) is said
        at error and the start goes on: the server's side may be fixed meanwhile (a role, a
        `pg_hba.conf` rule, an LDAP back), and holding the lease the core gives it up
        (`_wait_for_store`); a store down, starting or unreachable is said at warning, waited
        for once the lease is held. Until session 37 a typo was found only once the core
        held the lease (given up, and taken again a term later, for as long as it ran)."""
        dsn = self.config.venue.ledger_postgres
        if not dsn:
            return None
        failure = await _checked_unless_stopped(dsn, stopping)
        if failure is None or stopping.is_set():
            return None
        if failure.dsn_wrong:
            what, fix = store_refusal(failure, self.dsn_setting)
            return f"{what}: {fix}"
        if failure.refuses_login:
            what, fix = store_refusal(failure, self.dsn_setting, starting=True)
            log.error(
                "%s: this core starts, and gives the lease up while refused; %s",
                what,
                fix,
                extra={"core": self.name},
            )
            return None
        log.warning(
            "the ledger store's PostgreSQL does not take this core's connection at its start"
            " (%s): starting; holding the lease, this core waits for it",
            failure.said,
            extra={"core": self.name},
        )
        return None

    async def wait_for_lease(self, stopping: asyncio.Event) -> bool:
        """Contend until this core holds the lease (True) or `stopping` is set (False)."""
        nc = self.nc or await self._connect_unless(stopping)  # connected: contending again
        if nc is None:
            return False
        self.nc = nc
        js = self.nc.jetstream(timeout=LEASE_REQUEST_TIMEOUT_S)
        replicas = 3 if len(self.servers) >= 3 else 1
        self.lease = ThreadLease(
            self.servers,
            self.name,
            connect=connect,
            ttl_s=LEASE_TTL_S,
            poll_s=LEASE_POLL_S,
            request_timeout_s=LEASE_REQUEST_TIMEOUT_S,
            on_lost=die,  # "<name> lost its lease: stopping"
            replicas=replicas,
            thread_name=f"venue-core-{self.name}-lease",
        )
        if not await self._open_unless(self.lease, stopping):
            return False
        await open_bucket(js, GATEWAY_LEASE_BUCKET, GATEWAY_LEASE_TTL_S, replicas)  # read later
        announced = False
        following = self.follower.following
        trimming: asyncio.Task[None] | None = None
        trimmed_at = time.monotonic()
        try:
            while not stopping.is_set():
                if await self.lease.try_acquire():
                    log.info("holding the lease: active core", extra={"core": self.name})
                    return True
                if not announced:  # the holder: a core, or a one-process venue (`serve --nats`)
                    announced = await self._announce_standby()
                if not following:
                    following = await self._follow()
                elif trimming is None and time.monotonic() - trimmed_at >= STANDBY_TRIM_S:
                    # on a task of its own: a store slow to answer delays no lease poll
                    trimming = asyncio.ensure_future(self._trim_follower())
                if trimming is not None and trimming.done():
                    trimming, trimmed_at = None, time.monotonic()
                await asyncio.sleep(LEASE_POLL_S * 2)
            return False
        finally:
            if trimming is not None:  # the warm copy is the takeover's from here
                trimming.cancel()

    async def _announce_standby(self) -> bool:
        """Say once who holds the lease (True once said)."""
        assert self.lease is not None
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            holder = await self.lease.holder_now()
            log.info("the lease is held: standby", extra={"core": self.name, "holder": holder})
            return True
        return False

    async def _trim_follower(self) -> None:
        """Drop the warm copy's transfers the PostgreSQL store holds already (`STANDBY_TRIM_S`).
        A `--sqlite` core's store is its own file, written only while it is active: there the
        copy keeps them all (docs/cluster.md)."""
        dsn = self.config.venue.ledger_postgres
        follower = self.follower
        if not dsn or not follower.transfers:
            return
        loop = asyncio.get_running_loop()
        try:
            stored = await loop.run_in_executor(None, _stored_up_to, dsn)
        except Exception as unread:  # down, refused, its tables not made yet: kept till then
            # said once a start (a wrong DSN or password shows here long before a takeover),
            # then quietly at each try
            level = logging.DEBUG if self._trim_failure_said else logging.WARNING
            self._trim_failure_said = True
            text = " ".join(str(unread).split()) or type(unread).__name__
            log.log(level, "standby keeps its transfers: the ledger store not read (%s)", text)
            return
        if follower is self.follower:  # (not replaced meanwhile)
            follower.trim(stored)

    @staticmethod
    async def _open_unless(lease: ThreadLease, stopping: asyncio.Event) -> bool:
        """Open `lease` (True), or give it back, its open canceled, once `stopping` is set
        first (False): its connection tries for ever while NATS is down, and a stop during a
        give-up (`_stand_by_again`) waited behind it until session 32's second review."""
        opening = asyncio.ensure_future(lease.open())
        stopped = asyncio.ensure_future(stopping.wait())
        await asyncio.wait((opening, stopped), return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if opening.done():
            opening.result()  # its error raised
            return True
        opening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await opening
        await lease.release()
        return False

    async def _connect_unless(self, stopping: asyncio.Event) -> Client | None:
        """A connection to NATS, or None once `stopping` is set first: the connection tries
        for ever (a core may start before its NATS nodes), so SIGTERM or Ctrl-C must end the
        wait, not be left waiting behind it."""
        connecting = asyncio.ensure_future(connect(self.servers, f"venue-core-{self.name}"))
        stopped = asyncio.ensure_future(stopping.wait())
        await asyncio.wait((connecting, stopped), return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if connecting.done():
            return connecting.result()
        connecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await connecting
        return None

    async def activate(
        self,
        stopping: asyncio.Event | None = None,
        stop_requested: Callable[[], bool] | None = None,
    ) -> VenueCore | None:
        """Recover the venue from the stream and start taking the gateways' commands; first wait,
        holding the lease, for a PostgreSQL ledger store to answer (None: `stopping` was set
        meanwhile), and try again, holding it, a start the store answers but fails for want
        of a resource or of its connection (a full disk refusing the catch-up's writes:
        `held_through`; `START_RETRY_MIN_S`, doubling, for `START_HELD_MAX_S` at most). A start
        the store fails otherwise (a statement timeout of this core's role), or for longer,
        gives the lease up and contends again as a standby (`_stand_by_again`): until
        session 32's review it held the lease for ever, and a healthy standby never took
        over. Any other start refused or failed (its store damaged, its data directory held,
        a snapshot ahead of the stream) gives the lease up before its error is raised: a standby
        takes over at once, not once the term ends (until session 29 it waited the whole TTL,
        renewed meanwhile by this process's lease thread); so does one stopped (`stop_requested`
        true at a safe point of its recovery: `StartStopped`; until session 30 a takeover's
        replay ran to its end first). A cleanup that fails itself is logged, and the start's own
        error raised: a `core.stop()` that fails then skips the lease's release (`stop` releases
        it after the core's stop), and the standby waits out the term, as before session 29."""
        assert self.nc is not None and self.lease is not None, "the lease is held first"
        try:
            return await self._activate(stopping, stop_requested)
        except BaseException:
            try:
                await self.stop()  # the lease, the connection, and a core that had started
            except BaseException as failure:  # a cancel too: the start's error is the one
                log.warning(  # to report (a CancelledError raised here hid it)
                    "the core did not stop cleanly after its failed start",
                    extra={"core": self.name, "error": describe_failure(failure)},
                )
            raise  # the start's own error, the one being handled

    async def _activate(
        self, stopping: asyncio.Event | None, stop_requested: Callable[[], bool] | None
    ) -> VenueCore | None:
        stopping = stopping or asyncio.Event()
        while True:
            assert self.nc is not None and self.lease is not None, "the lease is held first"
            await self.lease.keep()  # on its thread: renewed while the recovery holds this loop
            try:
                return await self._try_starts(stopping, stop_requested)
            except _StartGivenUp:  # left before standing by: its traceback held the failed
                pass  # try's frames (its VenueCore, venue, ledger, warm copy) for the standby
            if not await self._stand_by_again(stopping):
                return None

    async def _try_starts(
        self, stopping: asyncio.Event, stop_requested: Callable[[], bool] | None
    ) -> VenueCore | None:
        """Start once the store answers, again after a failure `held_through` the lease, for
        `START_HELD_MAX_S` at most (`_StartGivenUp` raised then, and for any other)."""
        retry_s = START_RETRY_MIN_S
        tries = 0
        give_up_at: float | None = None
        while await self._wait_for_store(stopping):
            warm = None
            if tries == 0:  # the warm copy once: a failed start may have replayed onto it
                warm = await self._replace_follower()  # so held by that start alone
            tries += 1
            try:
                return await self._start_core(warm, stop_requested)
            except psycopg.OperationalError as failed:  # answering, yet failing the start
                now = time.monotonic()
                give_up_at = give_up_at or now + START_HELD_MAX_S
                held = held_through(failed) and now < give_up_at
                self._say_start_failed(failed, tries, retry_s if held else None)
                if not held:
                    raise _StartGivenUp from failed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), retry_s)
            retry_s = min(retry_s * 2, START_RETRY_MAX_S)
        return None

    def _say_start_failed(
        self, failed: psycopg.OperationalError, tries: int, retry_s: float | None
    ) -> None:
        then = (
            "giving the lease up to a standby"
            if retry_s is None
            else f"trying again in {retry_s:.0f} s, holding the lease"
        )
        log.warning(
            "the ledger store's PostgreSQL failed the start (sqlstate %s: %s): %s",
            failed.sqlstate or "none",
            " ".join(str(failed).split()),
            then,
            extra={"core": self.name, "tries": tries},
        )

    async def _stand_by_again(self, stopping: asyncio.Event) -> bool:
        """Give the lease up, follow the stream as a standby, and contend again after a term
        (`LEASE_TTL_S`), in which a standby polling every 0.2 s takes the lease; True once
        held again, False once `stopping` is set. A copy still following (given up before
        any start took it: a refused login) follows on, unless broken (a gap: it would be
        replayed cold); else afresh, with a new codec and cod orders too (a failed start may
        have replayed onto them). Until session 36's
        second review every give-up followed afresh, restoring the snapshot and replaying
        the stream again at each refused login's give-up."""
        assert self.lease is not None
        await self.lease.release()
        self.lease = None
        if not self.follower.following or self.follower.broken:
            self.codec = ClusterCodec()  # (the old copy keeps its own till it stops)
            self.cod_orders = CodOrders()
            await self._replace_follower()
            await self._follow()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), LEASE_TTL_S)
        if stopping.is_set():  # not contending again: a stop must not wait for NATS
            return False
        return await self.wait_for_lease(stopping)

    async def _replace_follower(self) -> WarmStart | None:
        """Stop the warm copy (its consumer on the stream, its snapshots' task, thread and hold
        on the data directory) and put a new one in its place, not following yet; the old
        one's state (`Follower.stop`). Every replacement goes through here: a give-up for a
        refused login came while the copy still followed, and until session 36's review
        left it running, one consumer and venue copy more at each give-up, its directory
        lock in the way of this core's own later start."""
        warm = await self.follower.stop()
        self.follower = self._new_follower()
        return warm

    async def _start_core(
        self, warm: WarmStart | None, stop_requested: Callable[[], bool] | None
    ) -> VenueCore:
        """Recover (from `warm`, or cold), then take the gateways' commands."""
        assert self.nc is not None, "connected first"
        loop = asyncio.get_running_loop()
        if warm is None:
            self.cod_orders.restore([])  # rebuilt by the cold recovery (snapshot, replay)
        journal = await loop.run_in_executor(None, JetStreamJournal, self.servers)
        try:
            js = self.nc.jetstream(timeout=LEASE_REQUEST_TIMEOUT_S * 5)
            core = VenueCore(
                self.config,
                self.data_dir,
                CoreGatewayPart(self.codec, self.cod_orders),
                journal=journal,
                codec=self.codec,
                stream_check=stream_snapshots.StreamCheck(lambda seq: stamp_at(js, seq), self.name),
            )
        except BaseException:  # refused before its start (a damaged epochs.json): not closed
            await loop.run_in_executor(None, journal.close)  # (a second close does nothing)
            raise
        # refused or stopped: its files closed and the data directory given back
        await core.start(warm, stop_requested=stop_requested)
        self.core = core  # started: what a failure from here on stops
        core.start_tasks()
        await self.nc.subscribe(SUBMIT_SUBJECT, cb=self._on_submissions)
        await self._announce()
        core.keep_task(asyncio.create_task(self._watch_gateways()))
        log.info("active", extra={"core": self.name, "seq": core.sequencer.last_seq})
        return core

    async def _announce(self) -> None:
        """Tell the gateways a core takes commands (`CORE_ACTIVE_SUBJECT`): each sends what
        it holds at once. After the subscription, on the same connection, so NATS has it
        before any gateway hears this; not sent (NATS reconnecting), they resend on their
        timer as before."""
        assert self.nc is not None
        try:
            await self.nc.publish(CORE_ACTIVE_SUBJECT, self.name.encode())
        except (nats.errors.Error, TimeoutError) as unsent:
            log.warning("the gateways not told a core is active: %r", unsent)

    async def _wait_for_store(self, stopping: asyncio.Event) -> bool:
        """Until the ledger's PostgreSQL accepts a connection (True) or `stopping` is set
        (False), retrying with backoff: the stream holds every acknowledged command, so the
        store is caught up once it answers, and a core that exited instead (exit 2) left the
        cluster with no core once the standbys had tried too. The lease is renewed on its
        own thread meanwhile, so no standby takes over. One line when it is unreachable, one
        when it answers. A server up that refuses this core's login (the SQLSTATE it sent:
        `ConnectFailure.refuses_login`), or a DSN that cannot be tried (`dsn_wrong`), is not
        waited for: `_StartGivenUp`, said at error (until session 36 a refusal was waited
        for, holding the lease for ever). The SQLite file (no DSN) is always reachable."""
        dsn = self.config.venue.ledger_postgres
        if not dsn:
            return True
        delay_s = STORE_RETRY_MIN_S
        waited = False
        while not stopping.is_set():
            failure = await _checked_unless_stopped(dsn, stopping)
            if stopping.is_set():
                return False
            if failure is None:
                if waited:
                    log.info("the ledger store's PostgreSQL answers: activating")
                return True
            # Down, starting up, unreachable, out of slots: waited for. Or up, refusing this
            # core's login (`ConnectFailure.refuses_login`, by the SQLSTATE the server sent),
            # or its DSN wrong: not this core's to wait for while a standby could serve.
            if failure.refused:
                self._say_store_refused(failure)
                raise _StartGivenUp
            if not waited:
                log.warning(
                    "the ledger store's PostgreSQL cannot be opened (%s): waiting for it,"
                    " holding the lease",
                    failure.said,
                    extra={"core": self.name},
                )
                waited = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay_s)
            delay_s = min(delay_s * 2, STORE_RETRY_MAX_S)
        return False

    def _say_store_refused(self, refused: ConnectFailure) -> None:
        """Said at error, at once, each time it comes: the cluster has no active core while
        this one holds the lease, and only its operator can fix its login or its DSN."""
        what, fix = store_refusal(refused, self.dsn_setting)
        log.error("%s: giving the lease up to a standby; %s", what, fix, extra={"core": self.name})

    async def _follow(self) -> bool:
        """Start the warm copy once the stream exists (the active core creates it). Tried at
        every lease poll until it follows: that it cannot yet (no stream, NATS down) is said
        at info once, then at debug, and at info again only once it followed and then
        started afresh (`_stand_by_again`); until session 35, at info at every poll."""
        assert self.nc is not None
        try:
            await self.follower.start(self.nc)
        except (nats.errors.Error, TimeoutError, stream_snapshots.StampUnread) as not_yet:
            level = logging.DEBUG if self._no_stream_said else logging.INFO
            self._no_stream_said = True
            log.log(level, "no stream to follow yet: %r", not_yet, extra={"core": self.name})
            return False
        self._no_stream_said = False
        log.info("standby following the stream", extra={"core": self.name})
        return True

    async def stop(self) -> None:
        """Stop taking commands, flush, snapshot, give the lease up for a standby."""
        if self.core is not None:
            await self.core.stop()
        else:
            await self.follower.stop(last_snapshot=True)  # a standby's
        if self.lease is not None:
            await self.lease.release()
        if self.nc is not None:  # NATS down: nothing left to flush (it raised until s32)
            await close_connection(self.nc)

    async def _watch_gateways(self) -> None:
        """Every `GATEWAY_SCAN_S`: cancel the open cod orders of each gateway whose lease is
        gone (expired: it died or was cut off; deleted: it stopped). Its key once gone stays
        gone (a late renewal is refused), unless the gateway takes it again, which it does
        only after its term ended and it closed its sessions."""
        assert self.nc is not None and self.core is not None
        js = self.nc.jetstream(timeout=LEASE_REQUEST_TIMEOUT_S)
        while True:
            await asyncio.sleep(GATEWAY_SCAN_S)
            self.cod_orders.prune(self.core.venue.orders)
            for gateway in list(self.cod_orders.by_gateway):
                try:
                    held = await key_held(js, GATEWAY_LEASE_BUCKET, gateway)
                except (nats.errors.Error, TimeoutError) as unanswered:
                    log.warning("gateway lease not read: %r", unanswered)
                    break  # NATS is busy (an election): the next scan reads again
                if not held:
                    self._cancel_on_disconnect(gateway)

    def _cancel_on_disconnect(self, gateway: str) -> None:
        """Cancel (reason cod) every open order placed with cod on through `gateway`: in one
        loop turn after reading the venue, so each is open when its cancel executes."""
        assert self.core is not None and self.lease is not None
        if not self.lease.held():
            die(RuntimeError(f"core {self.name}: the lease's term ended"))
        submit = self.core.sequencer.submit
        orders = self.cod_orders.open_orders_of(gateway, self.core.venue.orders)
        for order in orders:
            order_id = order.order_id
            submit(CancelOrder(account=order.account, order_id=order_id, reason=CancelReason.COD))
        log.info(
            "a gateway's lease is gone: its cod orders canceled",
            extra={"gateway": gateway, "canceled": len(orders)},
        )

    async def _on_submissions(self, message: Msg) -> None:
        """A gateway's commands of one turn: each request id once, in order (nats-py only
        logs what a callback raises, so a failure while executing is made fatal here)."""
        try:
            submissions = self._read(message.data)
        except msgspec.DecodeError as malformed:  # a ValidationError too
            log.warning("malformed submissions dropped: %s", malformed)
            return
        try:
            self._sequence(submissions.gateway, submissions.items)
        except BaseException as failure:
            die(failure)

    def _read(self, payload: bytes) -> Submissions:
        """A gateway's message read whole (the usual case: one decode), or, when some of its
        commands cannot be read (a gateway of a later build), item by item: those are
        refused on their own, journaled as refused (`RefuseUnreadCommand`), so every replay,
        whatever its build, refuses them too; the others run as sent. Cut before any
        command only a core makes (`_gateway_s_part`)."""
        replaced: list[int] = []
        try:
            submissions = decode_submissions(payload)
        except msgspec.ValidationError as unread:
            submissions, replaced = decode_each_submission(payload)
            refused = [submissions.items[at].request for at in replaced]
            self._log_refused(submissions.gateway, refused, unread)
        return self._gateway_s_part(submissions, replaced)

    def _log_refused(self, gateway: str, refused: list[int], unread: Exception) -> None:
        """Log the refusals of a message: a warning the first time, at debug when the
        gateway sends it again (its outcomes not back within 2 s), in bounded memory."""
        first = _first_logged(self.refusals_logged, gateway, max(refused, default=0))
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "commands this core cannot read refused (%s): the gateway runs a later build",
            unread,
            extra={"gateway": gateway, "refused": refused},
        )

    def _gateway_s_part(self, submissions: Submissions, replaced: list[int]) -> Submissions:
        """`submissions` up to its first command of a type no gateway makes (not in
        `GATEWAY_COMMANDS`), but for the refusals this core made of unread ones, at the
        positions `replaced` (by position: an item sent with the same request id is not
        exempt): that one is dropped, logged (once per message, as `_log_refused`), with the
        rest of the message (its request id is never sequenced, so none after it would be).
        Dropped, not refused in the journal: nothing changes, and no request id is taken."""
        for at, item in enumerate(submissions.items):
            kind = type(item.command)
            if kind not in GATEWAY_COMMANDS and at not in replaced:
                first = _first_logged(self.drops_logged, submissions.gateway, item.request)
                log.log(
                    logging.WARNING if first else logging.DEBUG,
                    "a command only a core makes, sent as a gateway's, dropped with the rest"
                    " of its message",
                    extra={
                        "gateway": submissions.gateway,
                        "request": item.request,
                        "kind": kind.__name__,
                    },
                )
                return Submissions(submissions.gateway, submissions.items[:at])
        return submissions

    def _sequence(self, gateway: str, items: list[Any]) -> None:
        assert self.core is not None and self.lease is not None
        if not self.lease.held():
            die(RuntimeError(f"core {self.name}: the lease's term ended"))
        codec = self.codec
        submit = self.core.sequencer.submit
        for item in items:
            if not codec.is_next(gateway, item.request):
                continue  # sent again (sequenced already), or after a lost one
            origin = Origin(gateway, item.request, item.quote_set)
            codec.seen(origin)
            command = item.command
            if type(command) is CancelOrder and command.reason is _COD:
                command = self._cod_cancel_or_refusal(gateway, command)
            submit(command, origin)

    def _cod_cancel_or_refusal(self, gateway: str, cancel: CancelOrder) -> Command:
        """A gateway's cod cancel as sequenced: itself, or its refusal when the order's cod
        is another gateway's by now (`CodOrders.refuses`: journaled, so every replica and
        replay keeps the order open alike, and the sending gateway reports nothing)."""
        if not self.cod_orders.refuses(gateway, cancel.order_id):
            return cancel
        return RefuseCancelOnDisconnect(account=cancel.account, order_id=cancel.order_id)


_COD = CancelReason.COD  # a global's read: the enum class's attribute costs ~6x (3.11)


def _first_logged(logged: dict[str, int], gateway: str, request: int) -> bool:
    """Whether `gateway`'s `request` is past the last one noted in `logged` (a new message, to
    log as a warning; a message sent again is not), noting it if so; the gateway noted
    longest ago is forgotten past `LOGGED_GATEWAYS_MAX`."""
    if gateway in logged and request <= logged[gateway]:
        return False
    logged.pop(gateway, None)  # noted anew: the last to be forgotten
    logged[gateway] = request
    if len(logged) > LOGGED_GATEWAYS_MAX:
        del logged[next(iter(logged))]
    return True
