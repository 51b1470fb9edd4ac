"""The venue's websocket server: sessions, dispatch, private and public streams, on one port.

Owns the process around the engine: `/ws/trade` (logon, order entry, the private `account`
stream, public channels) and `/ws/public` (market data only). Every request gets exactly one
response on its connection; trading requests go through the sequencer and are answered only
once their command is durable; queries are computed when they arrive and released behind
the commands before them, so no answer shows state that is not yet on disk. Each connection
has a bounded outbox of ready frames, written once per loop turn in one `writev` (or by its
writer task while the peer's buffer is full): a client that stops reading is told
`slow_consumer` and closed (4002) and never slows the engine or anyone else. Limits are in
`gateway.limits`; the wire shapes in `gateway.wire`, `gateway.reports`, `gateway.market_data`.
"""

import asyncio
import bisect
import logging
import os
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NoReturn, cast

import msgspec
from websockets.http11 import Request as HttpRequest
from websockets.http11 import Response as HttpResponse

from core import config as venue_config
from core import snapshots
from core.journal import FileJournal, JournalError
from core.ledger_writer import LedgerWriter
from core.sequencer import Executed, Sequencer
from core.store_thread import StoreThread
from engine.commands import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    Command,
    ListAsset,
    ListInstrument,
    PlaceOrder,
    SetOrderCaps,
)
from engine.enums import CancelReason, SelfTradePrevention, Side
from engine.events import (
    CommandRejected,
    DividendPaid,
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    SelfTradePrevented,
    SharesSplit,
    TradeExecuted,
    WithdrawalRequested,
)
from engine.instrument import InstrumentSpec
from engine.reasons import ErrorCode
from engine.snapshot import capture as capture_venue
from engine.snapshot import restore as restore_venue
from engine.units import format_units
from engine.venue import Venue
from engine.venue import VenueConfig as EngineConfig
from gateway import frames, limits, static, transport, wire
from gateway.auth import (
    RECV_WINDOW_MS_DEFAULT,
    ApiKey,
    Authenticator,
    AuthError,
    KeyStore,
    require_scope,
)
from gateway.market_data import Channel, MarketData, Stream
from gateway.order_history import OrderHistory
from gateway.reports import ExecReporter, Sequenced, anonymized
from settlement.ledger import Ledger
from settlement.store import SqliteLedgerStore

log = logging.getLogger("venue")
E = ErrorCode

JOURNAL_FILE = "journal.log"
LEDGER_FILE = "ledger.sqlite"
ISSUED_KEYS_FILE = "api_keys.json"  # keys issued at run time (owner-only permissions)
DEAD_MAN_FILE = "dead_man.json"  # armed dead-man's switches: account -> deadline (µs)
EPOCH_MAX = 2**63  # above any epoch (µs since 1970): a bisect key for "any epoch"
EPOCHS_FILE = "epochs.json"  # [first seq, epoch] per start: replayed history keeps its epoch
SNAPSHOT_INTERVAL_S = 60  # recovery replays at most a minute of journal after the snapshot
CLOCK_TICK_S = 0.05  # how often the venue's clock is advanced for gtd expiries and maturity
WRITE_BATCH_MAX = 256  # messages per write: bounds one writev and the memory it copies
CLOSE_TIMEOUT_S = 2  # a peer that cannot take its last messages in this time is cut off
REJECT_SUMMARY_INTERVAL_S = 60  # one log line a minute says how many rejects, by reason
PUBLIC_CHANNELS = {c.value for c in Channel}
LOGON_ON_TRADE = "log on at /ws/trade"
TRADING_METHODS = {"order.place", "order.cancel", "order.amend", "orders.cancel_all"}
# the account's queries: they need the read scope
READ_METHODS = {"orders.open", "order.status", "orders.history", "fills", "balances"}
TRADE_SCOPE_METHODS = TRADING_METHODS | {
    "order.batch",
    "quote.mass",
    "session.cod",
    "orders.cancel_after",
}
PUBLIC_METHODS = {  # served before logon, and on /ws/public
    "session.logon",
    "ping",
    "time",
    "instruments",
    "book.snapshot",
    "subscribe",
    "unsubscribe",
    "subscriptions",
}


def now_us() -> int:
    return time.time_ns() // 1_000


class RecoveryRefused(JournalError):
    """The data directory's files disagree in a way replay cannot settle: never guess."""


@dataclass(eq=False)
class Session:
    """One websocket connection and what it has asked for."""

    id: int
    websocket: transport.Connection
    trade: bool  # /ws/trade (else /ws/public)
    key: ApiKey | None = None
    cod: bool = False
    placed: set[int] = field(default_factory=set)  # open orders placed here, for COD
    streams: set[Stream] = field(default_factory=set)
    account_stream: bool = False
    outbox: deque[bytes] = field(default_factory=deque)  # websocket frames, ready to write
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # the writer task's turn
    dirty: bool = False  # has messages the next `_flush_outboxes` writes
    closing: bool = False
    last_sent_us: int = 0
    logon_timer: asyncio.TimerHandle | None = None  # /ws/trade: closes it if nobody logs on
    writer: "asyncio.Task[None] | None" = None  # see `VenueServer._write`

    @property
    def account(self) -> int | None:
        return self.key.account if self.key else None


@dataclass(eq=False)
class PrivateStream:
    """An account's private events: per-account seq, bounded history for since_seq replay.

    Seqs are given when a command executes (`assigned`); an event joins the history and
    reaches subscribers when its command is durable (`seq`: the last one released).
    """

    seq: int = 0
    assigned: int = 0
    history: deque[tuple[int, bytes]] = field(
        default_factory=lambda: deque(maxlen=limits.PRIVATE_HISTORY_EVENTS_MAX)
    )
    sessions: set[Session] = field(default_factory=set)


@dataclass(eq=False)
class Pending:
    """A request waiting for its command(s) to be durable."""

    session: Session
    request_id: int | str | None  # None: a frame too broken to read an id from
    method: str
    t_in: int
    expected: int = 1  # commands (or barriers) still to come back
    results: list[Executed] = field(default_factory=list)
    answer: bytes | None = None  # a query's answer, computed when it arrived
    reply: bytes | None = None  # a whole response decided on arrival (a refusal from state)
    close_after: bool = False  # logout: close once the response is out
    close_code: int = 1000
    close_reason: str = "logged out"
    finish: Callable[["Pending"], bytes] | None = None
    quote_set: str | None = None  # a quote.mass: the set its places belong to


@dataclass(eq=False)
class Notice:
    """A session push about the commands submitted with it as their origin: sent once they
    are all durable (the sequencer releases them in one batch), before their own pushes."""

    account: int
    message: dict[str, Any]
    sent: bool = False


@dataclass(eq=False)
class AccountSubscription:
    """A subscription to the private stream, waiting for what it saw to be durable."""

    session: Session
    account: int
    since_seq: int | None
    snapshot: bytes | None  # None: replay the history after since_seq instead


QuoteSlot = tuple[int, str, str, Side]  # account, quote set, symbol, side: one live quote


class VenueServer:
    def __init__(self, config: venue_config.VenueConfig, data_dir: Path) -> None:
        self.config = config
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        staleness = venue_config.reserve_staleness_max_us(config)
        self.ledger = Ledger()
        self.venue = Venue(EngineConfig(reserve_staleness_max_us=staleness), self.ledger)
        self.auth = Authenticator(KeyStore(config.api_keys))
        self.issued_keys = _load_keys(data_dir / ISSUED_KEYS_FILE)  # by admin.issue_key
        self.dead_man_deadlines = _load_deadlines(data_dir / DEAD_MAN_FILE)
        # (first seq, epoch) of every earlier start, from the journal's point of view
        self.epochs: list[tuple[int, int]] = _load_epochs(data_dir / EPOCHS_FILE)
        self._recovering = False
        for key in self.issued_keys:
            self.auth.store.add(key)
        rates = config.limits
        self.limiter = limits.RateLimiter(
            rates.connection_rate_per_s,
            rates.connection_burst,
            rates.account_rate_per_s,
            rates.account_burst,
        )
        self.reporter = ExecReporter()
        self.order_history = OrderHistory()  # closed orders, for order.status and orders.history
        self.sessions: dict[int, Session] = {}
        self.private: dict[int, PrivateStream] = {}
        self.subscribers: dict[Stream, set[Session]] = {}
        self.dead_man: dict[int, asyncio.TimerHandle] = {}
        self.specs: dict[str, InstrumentSpec] = {}  # by symbol, for the wire's conversions
        self.scales: dict[str, int] = {}  # by asset code
        self.quotes: dict[QuoteSlot, int] = {}  # each live quote's order id
        self.quote_slots: dict[int, QuoteSlot] = {}  # and back: forgotten when it closes
        self.placed_on: dict[int, Session] = {}  # open order id -> the session that placed it
        self._next_session = 0
        self._dirty: list[Session] = []  # sessions with messages to write this loop turn
        self._background: set[asyncio.Task[None]] = set()  # closes, spent switches: kept till done
        self.epoch = now_us()
        journal = FileJournal(data_dir / JOURNAL_FILE)
        self.sequencer = Sequencer(
            self.venue,
            journal,
            now_us,
            self._release,
            on_durable=self._durable,
            on_executed=self._executed,
        )
        self.market_data = MarketData(self.epoch)
        self._to_store: list[Any] = []  # at start: transfers the store may not hold yet
        # The store's SQLite connection lives on its own thread, like every write to it;
        # the journal's thread feeds it durable batches directly (`_durable`).
        self.store_thread: StoreThread[list[Executed]] = StoreThread(
            self._book, lambda failure: self.sequencer.on_fatal(failure)
        )
        self._server: transport.Listener | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.rejects: Counter[ErrorCode] = Counter()  # since the last summary line

    # ----------------------------------------------------------------- lifecycle

    async def start(self, host: str, port: int) -> int:
        """Recover or build the venue, then listen; the port actually bound."""
        self.store = await self._on_store(SqliteLedgerStore, self.data_dir / LEDGER_FILE)
        self.writer = await self._on_store(LedgerWriter, self.store)
        started = time.perf_counter()
        snapshots.remove_stray(self.data_dir)  # ours alone: the journal's flock is held
        image = snapshots.latest(self.data_dir)
        journal_seq = self.sequencer.journal.last_seq()
        if image is not None and image.seq > journal_seq:
            await self._refuse(
                f"the snapshot at seq {image.seq} is ahead of the journal (last seq"
                f" {journal_seq}) in {self.data_dir}: was the journal truncated or restored"
                " from an older copy? `venue verify` says what to do"
            )
        if image is not None:
            self._restore(image)
        self._learn_reference_data()
        after = image.seq if image is not None else 0
        self._to_store.extend(self.ledger.drain())  # what the image had not stored yet
        self._recovering = True
        try:
            replayed = self.sequencer.recover(after, on_replayed=self._replayed)
        finally:
            self._recovering = False
        self._record_epoch()
        await self._refuse_store_ahead()
        if image is not None or replayed:
            elapsed_ms = round((time.perf_counter() - started) * 1e3, 1)
            journal = {
                "journal_seq": self.sequencer.last_seq,
                "journal_bytes": self._journal_bytes(),
            }
            fields = {"snapshot_seq": after, "replayed": replayed, **journal}
            log.info("recovered", extra=fields | {"ms": elapsed_ms})
            await self._catch_up_store()
        else:
            await self._build_from_config()
        self.market_data = MarketData.from_venue(self.venue, self.epoch)
        self._server = await transport.serve(
            self,
            host,
            port,
            routes=("/ws/trade", "/ws/public"),
            max_size=limits.FRAME_BYTES_HARD_MAX,  # up to it, an oversize frame is answered
        )
        for account in self.dead_man_deadlines:  # armed before a restart: armed again
            self._arm_dead_man(account)
        work_list = (
            self._clock(),
            self._heartbeats(),
            self._periodic_snapshots(),
            self._reject_summaries(),
        )
        for work in work_list:
            task = asyncio.create_task(work)
            task.add_done_callback(self._check_task)  # a dead timer would go unnoticed
            self._tasks.append(task)
        bound: int = next(iter(self._server.sockets)).getsockname()[1]
        return bound

    def _restore(self, image: snapshots.Snapshot) -> None:
        """Take the state a snapshot holds: the venue and the private streams."""
        self.venue = restore_venue(image.venue)
        assert self.venue.ledger is not None, "snapshots of this server always hold a ledger"
        self.ledger = self.venue.ledger
        self.sequencer.venue = self.venue
        self.reporter.last_exec_id = image.gateway["last_exec_id"]
        for order in self.venue.orders.values():  # before the journal tail trades them
            self.reporter.adopt(order)
        for account, (seq, history) in image.gateway["private"].items():
            stream = self.private.setdefault(int(account), PrivateStream())
            stream.seq = stream.assigned = seq
            stream.history.extend((s, anonymized(int(account), bytes(p))) for s, p in history)
        self.order_history.restore(image.gateway.get("order_history"))

    def _replayed(self, batch: list[Executed]) -> None:
        """A command replayed from the journal: rebuild the private history it made."""
        for executed in batch:
            self._publish_private(executed)
            self._to_store.extend(executed.transfers)

    async def snapshot(self) -> Path:
        """Write the state as of the last durable command, without stopping the venue."""
        await self.sequencer.drain()
        # Captured right after the drain, with no await between: every command the image
        # includes is durable, and its transfers are in the store before the file exists.
        image = snapshots.Snapshot(
            self.sequencer.last_seq,
            capture_venue(self.venue),
            {
                "last_exec_id": self.reporter.last_exec_id,
                "private": {
                    str(account): (stream.seq, list(stream.history))
                    for account, stream in self.private.items()
                },
                "order_history": self.order_history.image(),
            },
        )
        await self._store_flushed()
        started = time.perf_counter()
        path: Path = await self._on_io(snapshots.write, self.data_dir, image)
        elapsed_ms = round((time.perf_counter() - started) * 1e3, 1)
        size = path.stat().st_size
        log.info(
            "snapshot written",
            extra={"seq": image.seq, "bytes": size, "ms": elapsed_ms, "path": str(path)},
        )
        return path

    def _journal_bytes(self) -> int:
        return (self.data_dir / JOURNAL_FILE).stat().st_size

    async def _refuse(self, why: str) -> NoReturn:
        """Give the files back (the journal's lock too) and refuse to start."""
        await self._on_store(self.store.close)
        self.store_thread.close()
        self.sequencer.close()
        raise RecoveryRefused(why)

    async def _refuse_store_ahead(self) -> None:
        """A store holding transfers the journal never booked means the journal lost
        commands (truncated, or an older copy): writing on would book new transfers under
        ids the store already holds, so refuse and let the operator decide."""
        stored = await self._on_store(self.store.last_transfer_id)
        if stored > self.ledger.last_transfer_id:
            await self._refuse(
                f"the ledger store holds transfers up to {stored} but the journal (last seq"
                f" {self.sequencer.last_seq}) books only up to {self.ledger.last_transfer_id}"
                f" in {self.data_dir}: `venue verify --data-dir {self.data_dir}` says what to do"
            )

    async def _catch_up_store(self) -> None:
        """After a restart: book into the store every transfer it had not stored yet."""
        stored = await self._on_store(self.store.last_transfer_id)
        booked = [t for t in self._to_store if t.transfer_id > stored]
        self._to_store.clear()
        await self._on_store(self.writer.register_ledger, self.ledger)
        await self._on_store(self.writer.write, booked)

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

    async def _build_from_config(self) -> None:
        commands = venue_config.setup_commands(self.config, now_us())
        for command in commands:
            self.sequencer.submit(command, origin=None)
        await self.sequencer.drain()
        log.info("built from the config", extra={"commands": len(commands)})

    async def stop(self) -> None:
        """Answer what is owed, tell sessions, stop accepting, flush, close the files."""
        await self.sequencer.drain()  # answers owed to connections go out before they close
        for session in list(self.sessions.values()):
            self._push(session, {"ch": "session", "type": "shutdown", "reconnect_in_ms": 1000})
        if self._server is not None:
            self._flush_outboxes()  # the shutdown pushes go out before the close frames
            await self._server.close()  # every connection closed with 1001
        for task in self._tasks:
            task.cancel()
        for timer in self.dead_man.values():
            timer.cancel()  # a stopped venue takes no more commands
        self.dead_man.clear()
        self._log_rejects()
        await self.snapshot()
        await self._on_store(self.store.close)
        self.store_thread.close()
        self.sequencer.close()

    def _learn_reference_data(self) -> None:
        """The specs and scales the wire converts with, as the venue has them now."""
        for symbol, market in self.venue.markets.items():
            self.reporter.specs[symbol] = self.specs[symbol] = market.spec
        for code, asset in self.ledger.assets.items():
            self.reporter.asset_scales[code] = self.scales[code] = asset.scale

    # ----------------------------------------------------------------- connections

    # the `transport.Handler` callbacks

    def on_http(
        self, connection: transport.Connection, request: HttpRequest
    ) -> HttpResponse | None:
        return static.respond(request)  # the web page; other paths: None, 404

    def on_open(self, connection: transport.Connection) -> None:
        self._next_session += 1
        path = connection.path
        session = Session(self._next_session, connection, path == "/ws/trade")
        connection.context = session
        self.sessions[session.id] = session
        log.info(
            "connection opened", extra={"session": session.id, "peer": _peer(session), "path": path}
        )
        session.writer = asyncio.create_task(self._write(session))
        if session.trade:
            session.logon_timer = asyncio.get_running_loop().call_later(
                limits.LOGON_TIMEOUT_S, self._logon_timeout, session
            )

    def on_frame(self, connection: transport.Connection, message: str | bytes) -> None:
        self._on_frame(connection.context, message)

    def on_close(self, connection: transport.Connection) -> None:
        session: Session = connection.context
        if session.logon_timer is not None:
            session.logon_timer.cancel()
        self._disconnected(session)
        if session.writer is not None:
            session.writer.cancel()

    def _logon_timeout(self, session: Session) -> None:
        if session.key is None and not session.closing:
            log.info("logon timeout", extra={"session": session.id, "peer": _peer(session)})
            # behind the answers still owed (queries wait for durability), then closed
            closing = Pending(session, None, "", 0, close_after=True, close_code=4001)
            closing.close_reason = "logon timeout"
            self.sequencer.barrier(closing)

    def _disconnected(self, session: Session) -> None:
        closed = {"session": session.id, "peer": _peer(session), "account": session.account}
        log.info("connection closed", extra=closed | {"code": session.websocket.close_code})
        self.sessions.pop(session.id, None)
        self.limiter.drop_connection(session.id)
        for public in session.streams:
            self.subscribers.get(public, set()).discard(session)
        if session.account is not None:
            private = self.private.get(session.account)
            if private is not None:
                private.sessions.discard(session)
        for order_id in session.placed:
            self.placed_on.pop(order_id, None)
        if session.cod and session.placed and session.account is not None:
            account = session.account
            notice = Notice(account, {"ch": "session", "type": "cod.triggered"})
            for order_id in sorted(session.placed):
                command = CancelOrder(account=account, order_id=order_id, reason=CancelReason.COD)
                self.sequencer.submit(command, origin=notice)

    async def _write(self, session: Session) -> None:
        """Write what `_flush_outboxes` left because the peer was not keeping up: wait for
        its socket buffer to drain, then write. Only this task ever waits on the socket."""
        websocket = session.websocket
        outbox = session.outbox
        try:
            while True:
                await session.wake.wait()
                session.wake.clear()
                while outbox:
                    await websocket.drain()
                    if not websocket.send_frames(_take(outbox)):
                        return
        except (OSError, asyncio.CancelledError):
            return  # the connection is gone: `on_close` cleans up the session

    def _flush_outboxes(self) -> None:
        """Once per loop turn: every session with new messages gets them in one write.

        A session whose transport is paused (its peer reads slower than we write) is left
        to its writer task, which waits for the buffer to drain; both take from the front
        of the outbox only when they write, so messages keep their order.
        """
        dirty, self._dirty = self._dirty, []
        for session in dirty:
            session.dirty = False
            try:
                self._flush_outbox(session)
            except OSError:  # this peer's socket failed; its close is under way
                session.outbox.clear()

    def _flush_outbox(self, session: Session) -> None:
        """Write the whole outbox now, or leave the rest to the writer task once paused."""
        outbox = session.outbox
        while outbox and not session.closing:  # a closing session's is flushed by `_close`
            if session.websocket.paused:
                session.wake.set()
                return
            if not session.websocket.send_frames(_take(outbox)):
                outbox.clear()  # the connection is closing: nobody will read them
                return

    def _send(self, session: Session, message: bytes) -> None:
        """Queue a message (encoded JSON)."""
        self._send_frame(session, frames.text_frame(message))

    def _send_frame(self, session: Session, frame: bytes) -> None:
        """Queue a websocket frame (a message sent to many is framed once); a full outbox
        means the client stopped reading: cut it off."""
        if session.closing:
            return
        if len(session.outbox) >= limits.SEND_QUEUE_MESSAGES_MAX:
            cut = {"session": session.id, "peer": _peer(session), "account": session.account}
            log.warning("slow consumer cut off", extra=cut | {"queued": len(session.outbox)})
            session.outbox.clear()
            notice = wire.encode({"ch": "session", "type": "slow_consumer"})
            session.outbox.append(frames.text_frame(notice))
            self._close(session, 4002, "slow consumer")
            return
        session.outbox.append(frame)
        session.last_sent_us = now_us()
        if not session.dirty:
            session.dirty = True
            self._dirty.append(session)
            if len(self._dirty) == 1:
                asyncio.get_running_loop().call_soon(self._flush_outboxes)

    def _push(self, session: Session, message: dict[str, Any]) -> None:
        self._send(session, wire.encode(message))

    def _close(self, session: Session, code: int, reason: str) -> None:
        """Flush what is queued and close; a peer that does not read within
        `CLOSE_TIMEOUT_S` (a slow consumer) has its connection aborted instead."""
        session.closing = True

        async def close_after_flush() -> None:
            websocket = session.websocket
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    while session.outbox and websocket.send_frames(_take(session.outbox)):
                        await websocket.drain()
                    websocket.close(code, reason)
                    await websocket.wait_closed()
            except (TimeoutError, OSError):
                websocket.abort()

        closer = asyncio.get_running_loop().create_task(close_after_flush())
        self._background.add(closer)  # a task must be referenced until it is done
        closer.add_done_callback(self._background.discard)

    # ----------------------------------------------------------------- requests

    def _on_frame(self, session: Session, frame: str | bytes) -> None:
        """Answer one frame. Never raises: whatever the frame, it gets its one answer, and
        the answers already owed on the connection keep coming (a raise would close it)."""
        try:
            self._serve_frame(session, frame)
        except AssertionError:
            raise  # a broken invariant: crash loudly, recover by replay
        except Exception:  # a bug outside any handler: the answer says the outcome is unknown
            log.exception("frame failed on session %d", session.id)
            self._send_behind(session, wire.error(None, E.INTERNAL, "internal error"))

    def _serve_frame(self, session: Session, frame: str | bytes) -> None:
        """Decode the envelope, then check logon and scope, then the params, then handle:
        who may call a method is said before what is wrong with its params."""
        t_in = now_us()
        envelope, request = wire.decode(frame)
        # Every frame is charged, malformed or not, so no flood goes unthrottled.
        cost = _cost(request) if isinstance(request, wire.Request) else limits.cost_milli("?")
        retry = self.limiter.charge_cost(session.id, session.account, cost, t_in)
        if retry:
            body = wire.error(
                request.id, E.RATE_LIMITED, "slow down", retry_after_ms=retry, status=429
            )
            self._send(session, body)
            return
        if isinstance(envelope, wire.WireError):
            self._send_behind(session, wire.error_of(envelope))
            return
        refused = self._refusal(session, envelope.method)
        if refused is not None:  # behind the answers owed, like every other error
            self._send_behind(session, wire.error(envelope.id, refused.code, refused.message))
            return
        if isinstance(request, wire.WireError):
            self._send_behind(session, wire.error_of(request))
            return
        self._dispatch(session, request, t_in)

    def _refusal(self, session: Session, method: str) -> AuthError | None:
        """Why this session may not call `method` at all, whatever its params."""
        if method == "session.logon":
            return None if session.trade else AuthError(E.PERMISSION_DENIED, LOGON_ON_TRADE)
        if method in PUBLIC_METHODS:
            return None
        if session.key is None:
            where = "log on first" if session.trade else "log on at /ws/trade for this method"
            return AuthError(E.NOT_AUTHENTICATED, where)
        scope = _scope_of(method)
        try:
            if scope is not None:
                require_scope(session.key, scope)
        except AuthError as refused:
            return refused
        return None

    def _dispatch(self, session: Session, request: wire.Request, t_in: int) -> None:
        method = request.method
        handler = self._handlers.get(method) or VenueServer._admin
        try:
            handler(self, session, request, t_in)
        except AuthError as refused:
            self._reply_error(session, request, refused.code, refused.message)
        except AssertionError:
            raise  # a broken invariant: crash loudly, recover by replay
        except Exception:  # a bug in a handler: the client learns the outcome is unknown
            log.exception("request %r failed", request.method)
            body = wire.error(request.id, E.INTERNAL, "internal error: query the outcome")
            self._send_behind(session, body)

    def _send_behind(self, session: Session, body: bytes) -> None:
        """Send an answer decided now, but behind every answer the connection is owed for
        the requests before it (they wait for durability): answers keep request order."""
        pending = Pending(session, None, "", 0)
        pending.reply = body
        self.sequencer.barrier(pending)

    def _reply_error(
        self, session: Session, request: wire.Request, code: ErrorCode, msg: str, data: Any = None
    ) -> None:
        self._send(session, wire.error(request.id, code, msg, data))

    def _reply(self, session: Session, request: wire.Request, result: Any, t_in: int) -> None:
        self._send(session, wire.ok(request.id, result, t_in, now_us()))

    def _defer_error(
        self, session: Session, request: wire.Request, code: ErrorCode, msg: str, data: Any = None
    ) -> None:
        """Refuse on the state, but only once the commands that made that state are durable."""
        pending = Pending(session, request.id, request.method, 0)
        pending.reply = wire.error(request.id, code, msg, data)
        self.sequencer.barrier(pending)

    def _defer(self, session: Session, request: wire.Request, t_in: int, result: Any) -> None:
        """Answer a query after every command before it is durable (it may show them)."""
        pending = Pending(session, request.id, request.method, t_in)
        pending.answer = wire.encode(result)
        self.sequencer.barrier(pending)

    # session methods

    def _logon(self, session: Session, request: wire.Request, t_in: int) -> None:
        if not session.trade:
            self._reply_error(session, request, E.PERMISSION_DENIED, LOGON_ON_TRADE)
            return
        if session.key is not None:
            self._reply_error(session, request, E.BAD_PARAM, "this connection is logged on")
            return
        p: Any = request.params
        window = p.recv_window if p.recv_window is not None else RECV_WINDOW_MS_DEFAULT
        try:
            key = self.auth.logon(p.api_key, p.ts, p.nonce, window, p.sig, t_in)
        except AuthError as refused:  # the key names who tried; the signature stays out
            self._log_logon_refused(session, p.api_key, refused.code, refused.message)
            raise
        connected = sum(1 for other in self.sessions.values() if other.account == key.account)
        if connected >= limits.CONNECTIONS_PER_ACCOUNT_MAX:
            msg = f"at most {limits.CONNECTIONS_PER_ACCOUNT_MAX} connections per account"
            self._log_logon_refused(session, p.api_key, E.PERMISSION_DENIED, msg)
            self._reply_error(session, request, E.PERMISSION_DENIED, msg)
            return
        session.key = key
        logged_on = {"session": session.id, "peer": _peer(session), "account": key.account}
        log.info("logged on", extra=logged_on | {"api_key": key.key})
        self._reply(session, request, {"account": key.account, "scopes": sorted(key.scopes)}, t_in)

    def _log_logon_refused(self, session: Session, api_key: str, code: ErrorCode, why: str) -> None:
        refused = {"session": session.id, "peer": _peer(session), "api_key": api_key}
        log.warning("logon refused", extra=refused | {"code": code.name.lower(), "reason": why})

    def _logout(self, session: Session, request: wire.Request, t_in: int) -> None:
        """Answered (and closed) behind everything still owed on this connection."""
        pending = Pending(session, request.id, request.method, t_in, close_after=True)
        pending.answer = wire.encode({})
        self.sequencer.barrier(pending)

    def _status(self, session: Session, request: wire.Request, t_in: int) -> None:
        result = {
            "account": session.account,
            "scopes": sorted(session.key.scopes) if session.key else [],
            "cod": session.cod,
            "epoch": self.epoch,
            "subscriptions": len(session.streams) + session.account_stream,
        }
        self._reply(session, request, result, t_in)

    def _ping(self, session: Session, request: wire.Request, t_in: int) -> None:
        self._reply(session, request, {"pong": t_in}, t_in)

    def _time(self, session: Session, request: wire.Request, t_in: int) -> None:
        self._reply(session, request, {"time": t_in}, t_in)

    def _cod(self, session: Session, request: wire.Request, t_in: int) -> None:
        require_scope(_key(session), "trade")
        session.cod = bool(request.params.enabled)  # type: ignore[attr-defined]
        self._reply(session, request, {"enabled": session.cod}, t_in)

    def _cancel_after(self, session: Session, request: wire.Request, t_in: int) -> None:
        require_scope(_key(session), "trade")
        account = _key(session).account
        timeout_ms: int = request.params.timeout_ms  # type: ignore[attr-defined]
        if timeout_ms:
            self.dead_man_deadlines[account] = t_in + timeout_ms * 1_000
        else:
            self.dead_man_deadlines.pop(account, None)
        # durable before the answer: an armed switch survives a restart (and fires late
        # rather than never if the venue was down past its deadline)
        _save_json(self.data_dir / DEAD_MAN_FILE, self.dead_man_deadlines)
        self._arm_dead_man(account)
        self._reply(session, request, {"timeout_ms": timeout_ms, "armed": bool(timeout_ms)}, t_in)

    def _epoch_of(self, seq: int) -> int:
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
            self.epochs.pop()  # the last start executed nothing: it is replaced, not kept
        self.epochs.append((first_seq, self.epoch))
        _save_json(self.data_dir / EPOCHS_FILE, self.epochs)

    def _arm_dead_man(self, account: int) -> None:
        """(Re)start the account's timer for its deadline, or stop it if it has none."""
        timer = self.dead_man.pop(account, None)
        if timer is not None:
            timer.cancel()
        deadline_us = self.dead_man_deadlines.get(account)
        if deadline_us is not None:
            delay_s = max(0.0, (deadline_us - now_us()) / 1_000_000)
            self.dead_man[account] = asyncio.get_running_loop().call_later(
                delay_s, self._dead_man_fired, account
            )

    def _dead_man_fired(self, account: int) -> None:
        self.dead_man.pop(account, None)
        notice = Notice(account, {"ch": "session", "type": "dms.triggered"})
        self.sequencer.submit(CancelAll(account=account, reason=CancelReason.DMS), origin=notice)
        self.dead_man_deadlines.pop(account, None)
        # spent, but only on disk once its cancel is durable: a crash in between fires it
        # again at the next start (canceling nothing new) rather than never
        spent = asyncio.get_running_loop().create_task(self._save_dead_man_after_drain())
        self._background.add(spent)
        spent.add_done_callback(self._background.discard)

    async def _save_dead_man_after_drain(self) -> None:
        await self.sequencer.drain()
        _save_json(self.data_dir / DEAD_MAN_FILE, self.dead_man_deadlines)

    # trading

    def _trade(self, session: Session, request: wire.Request, t_in: int) -> None:
        key = _key(session)
        require_scope(key, "trade")
        quote_set = getattr(request.params, "quote_set", None)
        if request.method == "orders.cancel_all" and quote_set is not None:
            self._cancel_quote_set(session, request, t_in, key.account, quote_set)
            return
        command = self._command(session, request, key.account)
        if command is None:
            return
        pending = Pending(session, request.id, request.method, t_in, finish=_trade_result)
        self.sequencer.submit(command, origin=pending)

    def _quote_mass(self, session: Session, request: wire.Request, t_in: int) -> None:
        """Replace the quote set's bid and ask per symbol: post-only, expire_maker."""
        key = _key(session)
        require_scope(key, "trade")
        if not session.cod:
            self._reply_error(session, request, E.COD_REQUIRED, "enable session.cod first")
            return
        p: Any = request.params
        planned: list[tuple[Command, QuoteSlot]] = []
        for quote in p.quotes:
            units = wire.quote_units(quote, self.specs)
            if isinstance(units, wire.WireError):
                self._reply_error(session, request, units.code, units.message)
                return
            for side, price, qty in (
                (Side.BUY, units.bid_px, units.bid_qty),
                (Side.SELL, units.ask_px, units.ask_qty),
            ):
                if qty is None:
                    continue  # this side is not mentioned: left as it is
                slot = (key.account, p.quote_set, units.symbol, side)
                command = self._requote(slot, price or 0, qty)
                if command is not None:
                    planned.append((command, slot))
        pending = Pending(
            session,
            request.id,
            request.method,
            t_in,
            len(planned),
            finish=_batch_result,
            quote_set=p.quote_set,
        )
        if not planned:
            self._send(session, _batch_result(pending))
            return
        for command, slot in planned:
            executed = self.sequencer.submit(command, origin=pending)
            self._track_quote(slot, executed.events)  # now: the next quote.mass builds on it

    def _requote(self, slot: QuoteSlot, price: int, qty: int) -> Command | None:
        """The command that makes the slot's live quote `qty` at `price` (0: pulled)."""
        account, _, symbol, side = slot
        order = self.venue.orders.get(self.quotes.get(slot, 0))
        if order is None or order.account != account:
            if not qty:
                return None
            return PlaceOrder(
                account=account,
                symbol=symbol,
                side=side,
                price=price,
                qty=qty,
                post_only=True,
                stp=SelfTradePrevention.EXPIRE_MAKER,
            )
        if not qty:
            return CancelOrder(account=account, order_id=order.order_id)
        if order.price == price and order.leaves_qty == qty:
            return None  # already quoted exactly so: keep its place in the queue
        # Quotes are sizes on display: the amended total is what traded plus the new size.
        return AmendOrder(
            account=account, order_id=order.order_id, price=price, qty=order.cum_qty + qty
        )

    def _cancel_quote_set(
        self, session: Session, request: wire.Request, t_in: int, account: int, quote_set: str
    ) -> None:
        p: Any = request.params
        commands = [
            CancelOrder(account=account, order_id=order_id, reason=CancelReason.MASS_CANCEL)
            for (owner, name, symbol, side), order_id in self.quotes.items()
            if owner == account
            and name == quote_set
            and order_id in self.venue.orders
            and (p.symbol is None or symbol == p.symbol)
            and (p.side is None or side is p.side)
            and p.tag is None  # quotes carry no tag: a tag filter matches none of them
        ]
        pending = Pending(
            session, request.id, request.method, t_in, len(commands), finish=_canceled_count
        )
        if not commands:
            self._send(session, _canceled_count(pending))
        for command in commands:
            self.sequencer.submit(command, origin=pending)

    def _command(self, session: Session, request: wire.Request, account: int) -> Command | None:
        symbol = None
        if request.method == "order.amend":
            p: Any = request.params
            order = self.venue.find_order(account, p.order_id or 0, p.cl_ord_id)
            symbol = order.symbol if order is not None else None
            if order is None and (p.price is not None or p.qty is not None):
                # no symbol to read the units at: refused here, as the engine would refuse it
                code, msg = self.venue.missing_order_reason(account, p.order_id or 0, p.cl_ord_id)
                data = {"order_id": p.order_id} if p.order_id else None
                self._defer_error(session, request, code, msg, data)
                return None
        command = wire.to_command(request, self.specs, self.scales, account, order_symbol=symbol)
        if isinstance(command, wire.WireError):  # may hang on state (an unknown symbol)
            self._defer_error(session, request, command.code, command.message)
            return None
        return command

    def _batch(self, session: Session, request: wire.Request, t_in: int) -> None:
        """Up to 20 ops applied in order, one result each; a malformed op applies nothing."""
        key = _key(session)
        require_scope(key, "trade")
        planned: list[Command | CommandRejected] = []
        placed_here: dict[str, str] = {}  # cl_ord_id -> symbol, for amends of earlier ops
        for index, op in enumerate(request.params.ops):  # type: ignore[attr-defined]
            symbol = None
            if isinstance(op, wire.AmendOp):
                p = op.params
                order = self.venue.find_order(key.account, p.order_id or 0, p.cl_ord_id)
                symbol = order.symbol if order is not None else placed_here.get(p.cl_ord_id or "")
                if symbol is None:
                    reason = self.venue.missing_order_reason(
                        key.account, p.order_id or 0, p.cl_ord_id
                    )
                    planned.append(_unknown_order(key.account, p.order_id, p.cl_ord_id, reason))
                    continue
            elif isinstance(op, wire.PlaceOp) and op.params.cl_ord_id is not None:
                placed_here[op.params.cl_ord_id] = op.params.symbol
            command = wire.params_to_command(
                op.params, self.specs, self.scales, key.account, order_symbol=symbol
            )
            if isinstance(command, wire.WireError):  # malformed: nothing applied
                msg = f"op {index}: {command.message}"
                self._reply_error(session, request, command.code, msg, {"op": index})
                return
            planned.append(command)
        pending = Pending(
            session, request.id, request.method, t_in, len(planned), finish=_batch_result
        )
        for item in planned:
            if isinstance(item, CommandRejected):
                self.sequencer.barrier(pending, [item])
            else:
                self.sequencer.submit(item, origin=pending)

    def _admin(self, session: Session, request: wire.Request, t_in: int) -> None:
        key = _key(session)
        require_scope(key, "admin")
        action = {"session": session.id, "account": key.account, "api_key": key.key}
        params = msgspec.to_builtins(request.params)
        log.info("admin request", extra=action | {"method": request.method, "params": params})
        if request.method == "admin.issue_key":
            self._issue_key(session, request, t_in)
            return
        p: Any = request.params
        command = self._command(session, request, getattr(p, "account", key.account))
        if command is None:
            return
        finish: Callable[[Pending], bytes] = _admin_result
        if request.method in CORPORATE_METHODS:  # the answer sums the action up, in decimals
            finish = partial(_corporate_result, self.scales)
        pending = Pending(session, request.id, request.method, t_in, finish=finish)
        self.sequencer.submit(command, origin=pending)

    def _issue_key(self, session: Session, request: wire.Request, t_in: int) -> None:
        p: Any = request.params
        if p.account not in self.ledger.participants:
            self._defer_error(session, request, E.UNKNOWN_ACCOUNT, f"no account {p.account}")
            return
        key = ApiKey(
            f"key-{secrets.token_hex(8)}", secrets.token_hex(24), p.account, frozenset(p.scopes)
        )
        self.auth.store.add(key)
        self.issued_keys.append(key)
        _save_json(self.data_dir / ISSUED_KEYS_FILE, self.issued_keys)  # before the answer
        issued = {"api_key": key.key, "account": key.account, "scopes": sorted(key.scopes)}
        log.info("api key issued", extra=issued | {"by": _key(session).account})
        result = {"api_key": key.key, "secret": key.secret, "account": key.account}
        self._reply(session, request, result | {"scopes": sorted(key.scopes)}, t_in)

    # queries (answered behind the commands before them)

    def _open_orders(self, session: Session, request: wire.Request, t_in: int) -> None:
        symbol = request.params.symbol  # type: ignore[attr-defined]
        orders = [
            self._order_view(o)
            for o in self.venue.open_orders(_key(session).account)
            if symbol is None or o.symbol == symbol
        ]
        self._defer(session, request, t_in, {"orders": orders})

    def _order_status(self, session: Session, request: wire.Request, t_in: int) -> None:
        """An open order, else a closed one from the account's retained history."""
        p: Any = request.params
        account = _key(session).account
        history = self.order_history
        order = self.venue.find_order(account, p.order_id or 0, p.cl_ord_id)
        if order is not None:
            spec = self.venue.markets[order.symbol].spec
            self._defer(session, request, t_in, history.open_record(order, spec))
            return
        record = history.find(account, p.order_id, p.cl_ord_id)
        if record is None:
            msg = history.unknown(account, p.order_id)
            self._defer_error(session, request, E.UNKNOWN_ORDER, msg)
            return
        self._defer(session, request, t_in, record)

    def _orders_history(self, session: Session, request: wire.Request, t_in: int) -> None:
        """The account's orders, open and closed, newest first, one page at a time."""
        p: Any = request.params
        if p.symbol is not None and p.symbol not in self.venue.markets:
            self._defer_error(session, request, E.UNKNOWN_SYMBOL, f"no symbol {p.symbol}")
            return
        account = _key(session).account
        orders, cursor = self.order_history.page(
            account,
            self.venue.open_orders(account),
            self.specs,
            status=p.status,
            symbol=p.symbol,
            since_ts=p.since_ts,
            until_ts=p.until_ts,
            before_order_id=p.before_order_id,
            limit=p.limit,
        )
        self._defer(session, request, t_in, {"orders": orders, "next_before_order_id": cursor})

    def _fills(self, session: Session, request: wire.Request, t_in: int) -> None:
        p: Any = request.params
        stream = self.private.get(_key(session).account) or PrivateStream()
        since = p.since_seq or 0
        fills: list[Any] = []
        for seq, payload in stream.history:
            if seq > since and b'"exec_type":"trade"' in payload and len(fills) < p.limit:
                fills.append(msgspec.json.decode(payload))
        self._defer(session, request, t_in, {"fills": fills})

    def _balances(self, session: Session, request: wire.Request, t_in: int) -> None:
        account = _key(session).account
        self._defer(session, request, t_in, {"balances": self._balance_rows(account)})

    def _instruments(self, session: Session, request: wire.Request, t_in: int) -> None:
        rows = [self._instrument_view(symbol) for symbol in sorted(self.venue.markets)]
        self._defer(session, request, t_in, {"instruments": rows})

    def _book_snapshot(self, session: Session, request: wire.Request, t_in: int) -> None:
        p: Any = request.params
        stream = Stream(Channel.BOOK, p.symbol, _tier(p.depth))
        problem = self.market_data.problem(stream)
        if problem is not None:
            self._reply_error(session, request, E.UNKNOWN_SYMBOL, problem)
            return
        message = msgspec.json.decode(self.market_data.snapshot(stream, t_in).payload)
        self._reply(session, request, message["data"] | {"seq": message["seq"]}, t_in)

    # subscriptions

    def _subscribe(self, session: Session, request: wire.Request, t_in: int) -> None:
        p: Any = request.params
        if p.ch == "account":
            self._subscribe_account(session, request, t_in, p.since_seq)
            return
        symbols = p.symbols or sorted(self.venue.markets)
        streams = [
            Stream(Channel(p.ch), s, _tier(p.depth) if p.ch == "book" else 0) for s in symbols
        ]
        for stream in streams:
            problem = self.market_data.problem(stream)
            if problem is not None:
                self._reply_error(session, request, E.UNKNOWN_SYMBOL, problem)
                return
        if len(session.streams | set(streams)) > limits.SUBSCRIPTIONS_PER_CONNECTION_MAX:
            self._reply_error(session, request, E.TOO_MANY_SUBSCRIPTIONS, "too many")
            return
        self._reply(session, request, {"subscribed": [s.name for s in streams]}, t_in)
        for stream in streams:
            session.streams.add(stream)
            self.subscribers.setdefault(stream, set()).add(session)
            self._send(session, self.market_data.snapshot(stream, t_in).payload)

    def _subscribe_account(
        self, session: Session, request: wire.Request, t_in: int, since_seq: int | None
    ) -> None:
        """Replay from since_seq, or a snapshot, then live: taken now, sent when durable."""
        if session.key is None:
            self._reply_error(session, request, E.NOT_AUTHENTICATED, "log on first")
            return
        require_scope(session.key, "read")
        account = session.key.account
        stream = self.private.setdefault(account, PrivateStream())
        seq = stream.assigned  # every event up to here is in the state read below
        self._reply(session, request, {"subscribed": ["account"], "seq": seq}, t_in)
        oldest = stream.history[0][0] if stream.history else stream.seq + 1
        snapshot = None
        if since_seq is None or not oldest - 1 <= since_seq <= seq:
            snapshot = wire.encode(
                {
                    "ch": "account",
                    "type": "snapshot",
                    "epoch": self.epoch,
                    "seq": seq,
                    "orders": [self._order_view(o) for o in self.venue.open_orders(account)],
                    "balances": self._balance_rows(account),
                }
            )
        self.sequencer.barrier(AccountSubscription(session, account, since_seq, snapshot))

    def _join_account_stream(self, joining: "AccountSubscription") -> None:
        """Everything up to the snapshot's seq is durable now: send it (or the missed
        events) and from here on every new private event of the account."""
        session = joining.session
        if session.id not in self.sessions:
            return  # gone before its subscription took effect
        stream = self.private[joining.account]
        if joining.snapshot is not None:
            self._send(session, joining.snapshot)
        else:
            for seq, payload in stream.history:
                if seq > (joining.since_seq or 0):
                    self._send(session, payload)
        session.account_stream = True
        stream.sessions.add(session)

    def _unsubscribe(self, session: Session, request: wire.Request, t_in: int) -> None:
        p: Any = request.params
        removed = []
        if p.ch == "account" and session.account is not None:
            session.account_stream = False
            self.private.get(session.account, PrivateStream()).sessions.discard(session)
            removed.append("account")
        for stream in list(session.streams):
            if stream.channel.value == p.ch and (not p.symbols or stream.symbol in p.symbols):
                session.streams.discard(stream)
                self.subscribers.get(stream, set()).discard(session)
                removed.append(stream.name)
        self._reply(session, request, {"unsubscribed": removed}, t_in)

    def _subscriptions(self, session: Session, request: wire.Request, t_in: int) -> None:
        names = sorted(s.name for s in session.streams)
        names += ["account"] if session.account_stream else []
        self._reply(session, request, {"subscriptions": names}, t_in)

    # ----------------------------------------------------------------- outcomes

    def _release(self, batch: list[Executed]) -> None:
        """Everything in `batch` is durable: answer, push privately, publish."""
        market_data = self.market_data
        for executed in batch:
            pending = executed.origin
            events = executed.events
            if isinstance(pending, Pending):
                self._answer(pending, executed)
            elif isinstance(pending, AccountSubscription):
                self._join_account_stream(pending)
            elif isinstance(pending, Notice) and not pending.sent:  # before the cancels' pushes
                pending.sent = True
                self._notify_account(pending.account, pending.message)
            if executed.command is None:
                continue
            rejected = _rejection(events)
            if rejected is not None:
                self._count_reject(rejected)
            self._forget_closed(events)
            self._publish_private(executed)
            market_data.on_events(events)
        self._flush_public()

    def _answer(self, pending: Pending, executed: Executed) -> None:
        pending.results.append(executed)
        if len(pending.results) < pending.expected:
            return
        session = pending.session
        if pending.reply is not None:
            self._send(session, pending.reply)
        elif pending.answer is not None:
            result = msgspec.Raw(pending.answer)  # encoded when the query arrived
            self._send(session, wire.ok(pending.request_id, result, pending.t_in, now_us()))
        elif pending.finish is not None:
            self._send(session, pending.finish(pending))
        if pending.close_after and not (pending.close_code == 4001 and session.key is not None):
            # (a logon-timeout close is dropped when the logon made it in before it)
            self._close(session, pending.close_code, pending.close_reason)

    def _executed(self, executed: Executed) -> None:
        """Right after a command executes: its private pushes get their seqs (in execution
        order, so an account snapshot taken now is exact), and orders placed on a connection
        are known at once to its cancel-on-disconnect."""
        pending = executed.origin
        events = executed.events
        executed.transfers = self.ledger.drain()  # this command's alone
        if isinstance(executed.command, ListInstrument | ListAsset | SetOrderCaps):
            self._learn_reference_data()
        quote_set = pending.quote_set if isinstance(pending, Pending) else None
        reports = self.reporter.reports(events, command=executed.command, quote_set=quote_set)
        self.order_history.record(reports)  # on replay too: so the history is rebuilt
        private = self.private
        pushes = executed.pushes
        epoch = self._epoch_of(executed.seq) if reports else 0
        for account, push in reports:
            stream = private.get(account)
            if stream is None:  # not setdefault: that would build a stream for every push
                stream = private[account] = PrivateStream()
            seq = stream.assigned = stream.assigned + 1
            message = Sequenced(push.ch, seq, epoch, push.type, push.ts, push.data)
            pushes.append((account, seq, wire.encode(message)))
        if isinstance(pending, Pending):
            for event in events:
                if isinstance(event, OrderAccepted):
                    pending.session.placed.add(event.order_id)
                    self.placed_on[event.order_id] = pending.session

    def _forget_closed(self, events: list[Event]) -> None:
        """Orders that closed no longer need cancel-on-disconnect."""
        for event in events:
            if isinstance(event, OrderCanceled | OrderExpired | SelfTradePrevented):
                self._forget_order(event.order_id)
            elif isinstance(event, TradeExecuted):
                if not event.maker_leaves_qty:
                    self._forget_order(event.maker_order_id)
                if not event.taker_leaves_qty:
                    self._forget_order(event.taker_order_id)
            elif isinstance(event, OrderAmended) and not event.leaves_qty:
                self._forget_order(event.order_id)

    def _track_quote(self, slot: QuoteSlot, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, OrderAccepted):
                self.quotes[slot] = event.order_id
                self.quote_slots[event.order_id] = slot
        order_id = self.quotes.get(slot)
        if order_id is not None and order_id not in self.venue.orders:
            self._forget_quote(order_id)  # pulled, filled or refused: no live quote

    def _forget_quote(self, order_id: int) -> None:
        slot = self.quote_slots.pop(order_id, None)
        if slot is not None and self.quotes.get(slot) == order_id:
            del self.quotes[slot]

    def _forget_order(self, order_id: int) -> None:
        self._forget_quote(order_id)
        session = self.placed_on.pop(order_id, None)
        if session is not None:
            session.placed.discard(order_id)

    def _publish_private(self, executed: Executed) -> None:
        """The command is durable: its private events join the history and go out."""
        for account, seq, payload in executed.pushes:
            stream = self.private[account]
            stream.seq = seq
            stream.history.append((seq, payload))
            if stream.sessions:
                frame = frames.text_frame(payload)
                for session in stream.sessions:
                    self._send_frame(session, frame)

    def _notify_account(self, account: int, message: dict[str, Any]) -> None:
        for session in list(self.sessions.values()):
            if session.account == account:
                self._push(session, message)

    def _flush_public(self) -> None:
        wanted = {stream for stream, sessions in self.subscribers.items() if sessions}
        for message in self.market_data.flush(now_us(), wanted):
            frame = frames.text_frame(message.payload)  # once for all its subscribers
            for session in self.subscribers.get(message.stream, ()):
                self._send_frame(session, frame)

    def _durable(self, batch: list[Executed]) -> None:
        """On the journal's thread, right after the batch's fsync: queue it for the ledger
        store, which books it on its own thread without a trip through the event loop.

        Only durable commands reach the store (each command's transfers were taken from
        the ledger as it executed), so the store is never ahead of the journal; it is
        derived and idempotent, and caught up on every start. A store that falls behind
        blocks this call, and so the next commit (`store_thread.QUEUE_BATCHES_MAX`).
        """
        self.store_thread.book(batch)

    def _book(self, batches: list[list[Executed]]) -> None:
        """On the store's thread, batches gathered over a while: registrations (assets,
        accounts, attestations) first, then the transfers naming them."""
        self.writer.observe(event for batch in batches for e in batch for event in e.events)
        self.writer.write([t for batch in batches for e in batch for t in e.transfers])

    async def _store_flushed(self) -> None:
        """Wait until the store holds every transfer released so far (not those released
        while waiting: under steady load the queue is never empty)."""
        await self._on_store(lambda: None)  # runs after every batch queued before it

    # ----------------------------------------------------------------- timers

    async def _clock(self) -> None:
        while True:
            await asyncio.sleep(CLOCK_TICK_S)
            self.sequencer.tick()

    async def _periodic_snapshots(self) -> None:
        last_seq = self.sequencer.last_seq
        while True:
            await asyncio.sleep(SNAPSHOT_INTERVAL_S)
            if self.sequencer.last_seq != last_seq:
                last_seq = self.sequencer.last_seq
                await self.snapshot()

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

    async def _heartbeats(self) -> None:
        interval_us = limits.HEARTBEAT_INTERVAL_S * 1_000_000
        while True:
            await asyncio.sleep(limits.HEARTBEAT_INTERVAL_S / 4)
            now = now_us()
            self._flush_public()  # also ages the tickers' 24 h windows
            for session in list(self.sessions.values()):
                if now - session.last_sent_us >= interval_us:
                    self._send(session, self.market_data.heartbeat(now, session.streams))

    # ----------------------------------------------------------------- views

    def _order_view(self, order: Any) -> dict[str, Any]:
        spec = self.venue.markets[order.symbol].spec
        return {
            "order_id": order.order_id,
            "cl_ord_id": order.cl_ord_id,
            "symbol": order.symbol,
            "side": order.side,
            "type": order.order_type,
            "tif": order.tif,
            "price": format_units(order.price, spec.price_decimals),
            "qty": format_units(order.qty, spec.qty_decimals),
            "leaves_qty": format_units(order.leaves_qty, spec.qty_decimals),
            "cum_qty": format_units(order.cum_qty, spec.qty_decimals),
            "status": order.status,
            "tag": order.tag,
        }

    def _balance_rows(self, account: int) -> list[dict[str, Any]]:
        rows = []
        balances = self.ledger.balances
        for asset in sorted(self.ledger.assets):  # a few dozen assets, not every balance
            balance = balances.get((account, asset))
            if balance is None:
                continue
            scale = self.ledger.assets[asset].scale
            rows.append(
                {
                    "asset": asset,
                    "total": format_units(balance.total, scale),
                    "available": format_units(balance.available, scale),
                    "held": format_units(balance.held, scale),
                }
            )
        return rows

    def _instrument_view(self, symbol: str) -> dict[str, Any]:
        message = self.market_data.snapshot(Stream(Channel.INSTRUMENTS, symbol), now_us())
        data: dict[str, Any] = msgspec.json.decode(message.payload)["data"]
        return data

    _handlers: dict[str, Callable[["VenueServer", Session, wire.Request, int], None]] = {
        "session.logon": _logon,
        "session.logout": _logout,
        "session.status": _status,
        "ping": _ping,
        "time": _time,
        "session.cod": _cod,
        "orders.cancel_after": _cancel_after,
        "order.place": _trade,
        "order.cancel": _trade,
        "order.amend": _trade,
        "orders.cancel_all": _trade,
        "order.batch": _batch,
        "quote.mass": _quote_mass,
        "orders.open": _open_orders,
        "order.status": _order_status,
        "orders.history": _orders_history,
        "fills": _fills,
        "balances": _balances,
        "instruments": _instruments,
        "book.snapshot": _book_snapshot,
        "subscribe": _subscribe,
        "unsubscribe": _unsubscribe,
        "subscriptions": _subscriptions,
    }


# ----------------------------------------------------------------- results


def _load_keys(path: Path) -> list[ApiKey]:
    if not path.exists():
        return []
    return msgspec.json.decode(path.read_bytes(), type=list[ApiKey])


def _load_epochs(path: Path) -> list[tuple[int, int]]:
    if not path.exists():
        return []
    return msgspec.json.decode(path.read_bytes(), type=list[tuple[int, int]])


def _load_deadlines(path: Path) -> dict[int, int]:
    if not path.exists():
        return {}
    return msgspec.json.decode(path.read_bytes(), type=dict[int, int])


def _save_json(path: Path, value: Any) -> None:
    """Write `value` as JSON atomically and durably, readable by the venue's user only (the
    issued keys hold secrets)."""
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(msgspec.json.encode(value))
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def _peer(session: Session) -> str:
    """The peer's `host:port`, for the log."""
    address = session.websocket.peer
    return f"{address[0]}:{address[1]}" if address else "?"


def _key(session: Session) -> ApiKey:
    if session.key is None:
        raise AuthError(E.NOT_AUTHENTICATED, "log on first")
    return session.key


def _scope_of(method: str) -> str | None:
    """The scope a method needs beyond logon, if any."""
    if method in TRADE_SCOPE_METHODS:
        return "trade"
    if method in READ_METHODS:
        return "read"
    if method.startswith("admin."):
        return "admin"
    return None


def _cost(request: wire.Request) -> int:
    """What a request costs in milli-tokens: a batch, the sum of its ops by kind."""
    params = request.params
    if type(params) is wire.BatchParams:
        methods = (type(op).__struct_config__.tag for op in params.ops)  # tags are methods
        return limits.batch_cost_milli(cast("Iterator[str]", methods))
    if type(params) is wire.QuoteMassParams:
        return limits.cost_milli(request.method, len(params.quotes))
    return limits.cost_milli(request.method)


def _tier(depth: int | None) -> int:
    """The smallest published depth tier that covers `depth` (default 10)."""
    from gateway.market_data import BOOK_DEPTHS

    wanted = depth or BOOK_DEPTHS[0]
    return next((tier for tier in BOOK_DEPTHS if tier >= wanted), BOOK_DEPTHS[-1])


def _unknown_order(
    account: int, order_id: int | None, cl_ord_id: str | None, reason: tuple[ErrorCode, str]
) -> CommandRejected:
    """The refusal of an amend whose order neither is open nor was placed earlier in a batch."""
    code, detail = reason
    return CommandRejected(0, "amend_order", code, detail, account, None, order_id or 0, cl_ord_id)


def _rejection(events: list[Event]) -> CommandRejected | None:
    last = events[-1] if events else None
    return last if isinstance(last, CommandRejected) else None


def _outcome(executed: Executed) -> dict[str, Any]:
    """What a command did, for its response: the order's id and status after it."""
    result: dict[str, Any] = {"seq": executed.seq}
    order_id = 0
    status = None
    for event in executed.events:
        if isinstance(event, OrderAccepted):
            order_id, status = event.order_id, event.status
            result["cl_ord_id"] = event.cl_ord_id
        elif isinstance(event, TradeExecuted) and event.taker_order_id == order_id:
            status = event.taker_status
        elif isinstance(event, OrderCanceled | OrderExpired | SelfTradePrevented):
            if not order_id:
                order_id = event.order_id
            if event.order_id == order_id:
                status = event.status
        elif isinstance(event, OrderAmended):
            order_id, status = event.order_id, event.status
        elif isinstance(event, WithdrawalRequested):
            result["withdrawal_id"] = event.withdrawal.withdrawal_id
    if order_id:
        result["order_id"] = order_id
    if status is not None:
        result["status"] = status
    if isinstance(executed.command, CancelAll):  # about many orders: just how many
        canceled = sum(isinstance(e, OrderCanceled) for e in executed.events)
        return {"seq": executed.seq, "canceled": canceled}
    return result


def _trade_result(pending: Pending) -> bytes:
    executed = pending.results[0]
    rejected = _rejection(executed.events)
    if rejected is not None:
        data = wire.rejection_data(rejected)
        return wire.error(pending.request_id, rejected.reason, rejected.detail, data)
    return wire.ok(pending.request_id, _outcome(executed), pending.t_in, now_us())


_admin_result = _trade_result
CORPORATE_METHODS = frozenset({"admin.pay_dividend", "admin.split"})


def _corporate_result(scales: Mapping[str, int], pending: Pending) -> bytes:
    """A dividend's or a split's totals, as decimal strings at the assets' scales."""
    executed = pending.results[0]
    rejected = _rejection(executed.events)
    if rejected is not None:
        return wire.error(pending.request_id, rejected.reason, rejected.detail)
    summary = executed.events[-1]
    result: dict[str, Any] = {"seq": executed.seq}
    if isinstance(summary, DividendPaid):
        cash = scales[summary.cash_asset]
        result |= {
            "symbol": summary.symbol,
            "asset": summary.asset,
            "cash_asset": summary.cash_asset,
            "payer": summary.payer,
            "amount_per_share": format_units(summary.amount, summary.amount_decimals),
            "holders": summary.holders,
            "shares_total": format_units(summary.shares_total, scales[summary.asset]),
            "provided": format_units(summary.provided, cash),
            "paid_total": format_units(summary.paid_total, cash),
            "residual": format_units(summary.residual, cash),
            "settlement_id": summary.settlement_id,
        }
    elif isinstance(summary, SharesSplit):
        scale = scales[summary.asset]
        result |= {
            "symbol": summary.symbol,
            "asset": summary.asset,
            "ratio": f"{summary.ratio_new}:{summary.ratio_old}",
            "holders": summary.holders,
            "supply_before": format_units(summary.supply_before, scale),
            "supply_after": format_units(summary.supply_after, scale),
            "rounding_holding": format_units(summary.rounding_holding, scale),
            "orders_amended": summary.orders_amended,
            "orders_canceled": summary.orders_canceled,
            "settlement_id": summary.settlement_id,
        }
    return wire.ok(pending.request_id, result, pending.t_in, now_us())


def _canceled_count(pending: Pending) -> bytes:
    canceled = sum(
        isinstance(event, OrderCanceled)
        for executed in pending.results
        for event in executed.events
    )
    return wire.ok(pending.request_id, {"canceled": canceled}, pending.t_in, now_us())


def _batch_result(pending: Pending) -> bytes:
    results = []
    failed = 0
    for executed in pending.results:
        rejected = _rejection(executed.events)
        if rejected is None:
            results.append({"status": 200, "result": _outcome(executed)})
        else:
            failed += 1
            error = {
                "code": int(rejected.reason),
                "name": rejected.reason.name,
                "msg": rejected.detail,
            }
            data = wire.rejection_data(rejected)
            if data is not None:
                error["data"] = data
            results.append({"status": wire.rejection_status(rejected.reason), "error": error})
    body = {
        "id": pending.request_id,
        "status": 409 if failed else 200,
        "result": {"results": results},
        "t_in": pending.t_in,
        "t_out": now_us(),
    }
    return wire.encode(body)


def _take(outbox: deque[bytes]) -> list[bytes]:
    """Up to `WRITE_BATCH_MAX` messages from the front of an outbox."""
    return [outbox.popleft() for _ in range(min(len(outbox), WRITE_BATCH_MAX))]
