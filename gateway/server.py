"""The venue's websocket server: the assembly of the gateway's parts and the core, on one port.

Serves `/ws/trade` (logon, order entry, the private `account` stream, public channels) and
`/ws/public` (market data only). Every request gets exactly one response on its connection;
trading requests go through the bus to the core and are answered only once their command is
durable; queries are computed when they arrive and released behind the commands before
them, so no answer shows state that is not yet on disk. The parts: `gateway.sessions`
(connections and their outboxes), `gateway.dispatch` (requests), `gateway.private_streams`
(account pushes, cod, dms), `gateway.public_streams` (market data); the core is
`core.venue_core`, reached through `core.bus`. This class only wires them together, starts
and stops them, and is the core's listener: it routes each executed command and each durable
batch to the parts. The transport's callbacks are `gateway.connection_handler`'s; what a start
owes a run that did not stop cleanly is `gateway.unclean_stops`'.
"""

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from core import config as venue_config
from core.bus import Bus, EmbeddedBus
from core.journal import Journal
from core.sequencer import Executed, Sequencer
from core.venue_core import (
    DATA_DIR_MODE,
    JOURNAL_FILE,
    LEDGER_FILE,
    RecoveryRefused,
    VenueCore,
    load_json,
    now_us,
    warn_if_others_may_read,
)
from engine.commands import (
    AdvanceClock,
    AmendPair,
    ArmDeadMan,
    CancelOrder,
    Command,
    ListAsset,
    ListInstrument,
    PlaceOrder,
    RefuseCancelOnDisconnect,
    SetCancelOnDisconnect,
    SetOrderCaps,
)
from engine.enums import CancelReason, TimeInForce
from engine.events import CancelOnDisconnectSet, OrderAccepted, SharesSplit, TradeExecuted
from engine.venue import Venue
from gateway import limits, transport
from gateway.auth import ApiKey, Authenticator, KeyStore, KeyStoreError
from gateway.connection_handler import ConnectionHandler
from gateway.dispatch import Dispatcher, Pending
from gateway.key_issuing import (
    ISSUED_KEYS_FILE,
    REVOKED_KEYS_FILE,
    KeyRevoked,
    drop_revoked_keys,
)
from gateway.placed_orders import OwnMark
from gateway.private_streams import AccountSubscription, Notice, PrivateStreams, read_kept_files
from gateway.public_streams import PublicStreams
from gateway.rest import RestApi
from gateway.sessions import WRITE_BATCH_MAX, Session, Sessions
from gateway.unclean_stops import (
    cancel_on_disconnect_after_a_crash,
    first_seq_of_start,
    stop_unserved,
)
from settlement.ledger import Ledger

if TYPE_CHECKING:  # (not imported: the one-process venue does without NATS)
    from core.nats_bus import Overdue, Replica

# Commands that change what the gateway knows of instruments and assets, looked up by exact
# type (command classes are final): one set look-up per command, not three isinstance calls.
_REFERENCE_DATA_COMMANDS = frozenset({ListInstrument, ListAsset, SetOrderCaps})
_NEVER_RESTING = frozenset({TimeInForce.IOC, TimeInForce.FOK})  # what is left is canceled
# what a request owed core.nats_bus `OUTCOME_WAIT_S` is answered (504), with the seconds it
# waited; its command is still resent
OUTCOME_UNKNOWN_NO_CORE = (
    "no outcome: the core has not answered in {waited_s:.1f} s (a failover, or no core"
    " active), and the request may still be carried out: the gateway keeps sending it, and"
    " if it runs its reports come on the account stream; check it (order.status by"
    " cl_ord_id, orders.open) before sending it again"
)

__all__ = [
    "JOURNAL_FILE",
    "LEDGER_FILE",
    "WRITE_BATCH_MAX",
    "RecoveryRefused",
    "VenueServer",
    "now_us",
]


class VenueServer:
    """The one-process venue: the gateway's parts around an embedded core; or a cluster's
    gateway, the same parts around a replica of the core fed over NATS (core.nats_bus)."""

    def __init__(
        self,
        config: venue_config.VenueConfig,
        data_dir: Path,
        journal: Journal | None = None,
        bus: Callable[["VenueServer"], Bus] | None = None,
    ) -> None:
        """By default an embedded core on `data_dir`, its journal the file there unless
        `journal` is given (e.g. JetStream). `bus` makes the bus to a core elsewhere, given
        this server as the core's listener (a cluster's gateway passes `NatsBus`'s)."""
        self.config = config
        self.data_dir = data_dir
        # The data directory's files the gateway reads first: a key both in the config and in
        # the issued keys' file (KeyStoreError), a damaged file or a link to nothing refuses the
        # start before the data directory or its journal is made.
        self.auth = Authenticator(KeyStore(config.api_keys), started_us=now_us())
        # by admin.issue_key; those of admin.revoke_key out (in both files only if the venue
        # stopped between its two saves: revoked, as the first one says; taken out of
        # api_keys.json below, once the data directory is locked)
        self.revocations = load_json(data_dir / REVOKED_KEYS_FILE, list[KeyRevoked], [])
        revoked = {revocation.revoked for revocation in self.revocations}
        issued = _load_keys(data_dir / ISSUED_KEYS_FILE)
        self.issued_keys = [key for key in issued if key.key not in revoked]
        _add_issued_keys(self.auth.store, self.issued_keys, data_dir / ISSUED_KEYS_FILE)
        kept = read_kept_files(data_dir)  # likewise: the dead-man and push-format files
        if bus is not None:  # an embedded core makes its directory (and takes it back if refused)
            data_dir.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
        if bus is None:
            self.core = VenueCore(config, data_dir, self, journal=journal)
            self.bus: Bus = EmbeddedBus(self.core)
            if len(self.issued_keys) < len(issued):  # the data directory is ours (locked)
                drop_revoked_keys(data_dir, self.issued_keys)  # (no revoked secret left)
        else:
            self.bus = bus(self)
            self.core = cast(VenueCore, self.bus.core)  # a replica, standing where the core is
        self._embedded = bus is None  # the one-process venue: its own core and data directory
        self.reads = self.bus.reads
        rates = config.limits
        limiter = limits.RateLimiter(
            rates.connection_rate_per_s,
            rates.connection_burst,
            rates.account_rate_per_s,
            rates.account_burst,
        )
        page_limiter = limits.AddressBuckets()  # the web page's files, per client IP
        # REST's unsigned requests, per client IP: the per-connection rate times one IP's
        # connections would be its budget otherwise
        self.unsigned_limiter = limits.AddressBuckets(
            rates.unsigned_rate_per_ip_per_s,
            rates.unsigned_rate_per_ip_per_s * limits.UNSIGNED_BURST_PER_IP_FACTOR,
        )
        # whose X-Forwarded-For names the client (`client_ip`); never the connection caps'
        proxies = limits.TrustedProxies(
            venue_config.trusted_networks(config.limits.trusted_proxies)
        )
        self.connections = Sessions()
        self.private_streams = PrivateStreams(self.bus, self.connections, data_dir, kept)
        self.public = PublicStreams(
            self.connections,
            self.reads,
            self.bus.epoch,
            pause_min_s=config.venue.market_data_interval_ms / 1_000,
        )
        self.dispatcher = Dispatcher(
            self.bus,
            self.connections,
            self.private_streams,
            self.public,
            self.auth,
            limiter,
            data_dir,
            self.issued_keys,
            self.revocations,
        )
        self.dispatcher.requote_pairs = config.gateway.requote_pairs
        # one bucket per IP for refused logons and REST's refused or unsigned requests alike
        self.dispatcher.logons.refusals_by_address = self.unsigned_limiter
        if bus is None:  # commands are built at the time the core will stamp them with
            self.dispatcher.stamp_us = self.core.sequencer.stamp_us
        # over a cluster's bus outcomes come back a hop later: a placed quote's order id too
        self._quotes_from_outcomes = self.dispatcher.placed.replica_lags
        # the parts' tables, under the names the tests and tools know (never reassigned)
        self.sessions = self.connections.sessions
        self.private = self.private_streams.streams
        self.order_history = self.private_streams.order_history
        self.quotes = self.dispatcher.placed.quotes
        self.quote_slots = self.dispatcher.placed.quote_slots
        self._server: transport.Listener | None = None
        self.rest = RestApi(self)  # /api/v1/... and /openapi.json on the same port
        # the transport's callbacks: connections, plain HTTP, sessions without a lease
        self.handler = ConnectionHandler(
            self.bus,
            self.connections,
            self.dispatcher,
            self.private_streams,
            self.public,
            self.rest,
            proxies,
            page_limiter,
        )

    # the core's state, read through it (a restore replaces the venue and the ledger)

    @property
    def venue(self) -> Venue:
        return self.core.venue

    @property
    def ledger(self) -> Ledger:
        return self.core.ledger

    @property
    def sequencer(self) -> Sequencer:
        return self.core.sequencer

    @property
    def epoch(self) -> int:
        return self.core.epoch

    @property
    def limiter(self) -> limits.RateLimiter:
        return self.dispatcher.limiter

    @limiter.setter
    def limiter(self, limiter: limits.RateLimiter) -> None:
        self.dispatcher.limiter = limiter

    # ----------------------------------------------------------------- lifecycle

    async def start(
        self, host: str, port: int, *, stop_requested: Callable[[], bool] | None = None
    ) -> int:
        """Recover or build the venue, then listen; the port actually bound. An embedded
        core's start asks `stop_requested` at its safe points (`VenueCore.start`)."""
        first_seq = first_seq_of_start(self.core)
        if self._embedded:
            await self.core.start(stop_requested=stop_requested)
        else:  # a replica of the stream: its wait for NATS is `_unless_stopped`'s to end
            await self.core.start()
            # as an embedded core's start does: a gateway's directory holds the issued keys
            warn_if_others_may_read(self.data_dir)
        cod_done = not self._embedded  # the crash's cod cancels are made (a cluster's: its core)
        try:
            self.dispatcher.placed.adopt_quotes()  # the quote sets' live quotes, as recovered
            if not self._embedded:  # no await from here to `go_live`: no record comes between
                first_seq = first_seq_of_start(self.core)  # after what its replica replayed
            self.private_streams.record_push_format(first_seq)
            self.public.start(self.bus.epoch)
            if not self._embedded:  # its market data built: the replica's records are published
                cast("Replica", self.core).go_live()
            if self._embedded:  # the first commands of this start, if any
                await cancel_on_disconnect_after_a_crash(self.core, self.bus, first_seq)
                cod_done = True
            await self.private_streams.arm_switches_of_dead_man_file()  # an older venue's
            self._server = await transport.serve(
                self.handler,
                host,
                port,
                routes=("/ws/trade", "/ws/public"),
                max_size=limits.FRAME_BYTES_HARD_MAX,  # up to it, an oversize frame is answered
                counts=limits.ConnectionCounts(
                    self.config.limits.connections_per_ip_max,
                    self.config.limits.connections_max,
                    reserved_pct=self.config.limits.connections_reserved_pct,
                    pending_per_ip_max=self.config.limits.pending_per_ip_max,
                ),
                public_routes=("/ws/public",),  # /ws/trade: closed unless it logs on in 10 s
            )
        except BaseException:
            await stop_unserved(self.core, embedded=self._embedded, cod_done=cod_done)
            raise
        self.core.start_tasks()
        self.core.keep_task(asyncio.create_task(self.public.heartbeats()))
        bound: int = next(iter(self._server.sockets)).getsockname()[1]
        return bound

    async def snapshot(self) -> Path:
        """Write the state as of the last durable command, without stopping the venue."""
        return await self.core.snapshot()

    async def stop(self) -> None:
        """Answer what is owed, tell sessions, stop accepting, flush, close the files."""
        await self.bus.drain()  # answers owed to connections go out before they close
        self.public.publish_waiting()  # and the market data still waiting
        # a cluster's gateway: requests still waiting for a place are refused, not executed
        self.dispatcher.held_requests.refuse_held()
        for session in list(self.sessions.values()):
            self._push(session, {"ch": "session", "type": "shutdown", "reconnect_in_ms": 1000})
        if self._server is not None:
            self.connections.flush_outboxes()  # the shutdown pushes go out before the closes
            await self._server.close()  # every connection closed with 1001
        if self._embedded:  # the last thing it does: this stop was clean, cod ran
            await self.core.stop(mark_clean=True)
        else:
            await self.core.stop()

    def _learn_reference_data(self) -> None:
        """The specs and scales the wire converts with, as the venue has them now."""
        reporter = self.private_streams.reporter
        for symbol, market in self.reads.markets.items():
            reporter.specs[symbol] = self.dispatcher.specs[symbol] = market.spec
        for code, asset in self.reads.ledger.assets.items():
            reporter.asset_scales[code] = self.dispatcher.scales[code] = asset.scale

    # ----------------------------------------------------------------- a cluster's lease

    def lease_lost(self) -> None:
        """A cluster gateway's lease lapsed (core.nats_bus): its sessions are closed, and
        none taken until `lease_held` (`ConnectionHandler.lease_lost`)."""
        self.handler.lease_lost()

    def lease_held(self) -> None:
        self.handler.lease_held()

    def pair_refused_unread(self) -> None:
        """A core of an earlier build refused this gateway's `AmendPair` unread: its plain
        requotes go as two amends for the rest of its life (`Dispatcher.requote_pairs`)."""
        self.dispatcher.stop_requote_pairs()

    def outcomes_overdue(self, settled: "list[Overdue | Executed]") -> None:
        """A cluster gateway's requests owed too long (core.nats_bus `OUTCOME_WAIT_S`: no core
        active), answered 504 `OUTCOME_UNKNOWN` at once, in order with the barriers behind
        them (queries, errors decided on arrival), released now as any batch is."""
        due: list[Executed] = []
        for item in settled:
            if type(item) is Executed:
                due.append(item)
                continue
            if due:  # the barriers before it first: answers keep request order
                self.released(due)
                due = []
            overdue = cast("Overdue", item)
            if type(overdue.origin) is Pending:  # (a cod cancel's: nobody to answer)
                message = OUTCOME_UNKNOWN_NO_CORE.format(waited_s=overdue.waited_s)
                self.dispatcher.answer_unknown(overdue.origin, message)
        self.released(due)  # (flushes the outboxes, with none due too)

    def is_client_request(self, origin: Any) -> bool:
        """Overdue, a client's request is answered `OUTCOME_UNKNOWN` (`outcomes_overdue`); a
        cod cancel's or a dead-man arm's origin is no request: a stop waits for its outcome."""
        return type(origin) is Pending

    def placed_with_cod(self, executed: Executed) -> None:
        """A cluster gateway's place with cod on came back from the core: if its session
        closed meanwhile (say on a lost lease, with the place in flight), that close's cod
        cancels left it out, so it is canceled now, as the close would have done."""
        pending = executed.origin
        if type(pending) is not Pending or pending.session.id in self.sessions:
            return  # another gateway's, or its session is open: its close will cancel it
        if not pending.session.cod:
            return  # turned off before the close: the close canceled nothing
        for event in executed.events:
            if type(event) is OrderAccepted and event.order_id in self.reads.orders:
                cancel = CancelOrder(
                    account=event.account, order_id=event.order_id, reason=CancelReason.COD
                )
                self.bus.submit(cancel, None)

    def _push(self, session: Session, message: dict[str, Any]) -> None:
        self.connections.push(session, message)

    # ----------------------------------------------------------------- the core's listener

    def executed(self, executed: Executed) -> None:
        """Right after a command executes: its private pushes get their seqs (in execution
        order, so an account snapshot taken now is exact), and orders placed on a connection
        are known at once to its cancel-on-disconnect."""
        pending = executed.origin
        kind = type(executed.command)
        if kind is AmendPair:  # a plain requote: nothing below is for it
            if type(pending) is Pending:  # live, of this start's epoch (as below)
                self.private_streams.assign_pair(executed, self.core.epoch)
            else:
                self.private_streams.assign_pair(executed, self.bus.epoch_of(executed.seq))
            return
        if kind in _REFERENCE_DATA_COMMANDS:
            self._learn_reference_data()
        if type(pending) is not Pending:  # a timer's, a notice's, a cluster record's, a replay's
            quote_set = getattr(pending, "quote_set", None)
            command = executed.command
            if kind is PlaceOrder:
                if quote_set is None:  # replayed: it names its set
                    quote_set = cast(PlaceOrder, command).quote_set
                if quote_set is not None and self._quotes_from_outcomes:  # another gateway's
                    self._adopt_quote(cast(PlaceOrder, command), quote_set, executed.events)
            if kind is SetCancelOnDisconnect:
                if pending is None:  # another gateway's mark
                    self._marked_elsewhere(executed.events)
                elif type(pending) is OwnMark:
                    self._own_mark_back(cast(SetCancelOnDisconnect, command))
            if kind is AdvanceClock or kind is ArmDeadMan:  # may have fired dead-man's switches
                self.private_streams.dead_man_notice(executed)
            self.private_streams.assign(executed, quote_set, self.bus.epoch_of(executed.seq))
            return
        # A request of this gateway's runs live, never in a recovery: its pushes are of this
        # start's epoch (`epoch_of`'s answer, without its call per command).
        self.private_streams.assign(executed, pending.quote_set, self.core.epoch)
        # only a place accepts an order: no call for the rest (most commands are amends)
        if kind is PlaceOrder:
            # An IOC or FOK never rests (`Venue._place`): none is open once it has run, so
            # cancel-on-disconnect has nothing to track (a taker's orders: no call for them).
            if executed.command.tif not in _NEVER_RESTING:  # type: ignore[union-attr]
                self.dispatcher.placed.track_placed(pending.session, executed.events)
            if self._quotes_from_outcomes:  # over a cluster's bus: back a hop after it was sent
                self._place_back(cast(PlaceOrder, executed.command), pending, executed.events)
        elif kind is SetCancelOnDisconnect:  # a connection's `session.cod`
            self._own_mark_back(cast(SetCancelOnDisconnect, executed.command))

    def _marked_elsewhere(self, events: list[Any]) -> None:
        """Another gateway's connection took these orders' cod: ours no longer has it. The
        orders its event names (the ones still open), as the cores' `CodOrders` takes them."""
        for event in events:
            if type(event) is CancelOnDisconnectSet and event.cod:
                self.dispatcher.placed.marked_elsewhere(event.order_ids)

    def _own_mark_back(self, mark: SetCancelOnDisconnect) -> None:
        """One of this gateway's marks came back: counted (`mark_sent`) when cod is on."""
        if mark.cod:
            self.dispatcher.placed.mark_back(mark.order_ids)

    def _adopt_quote(self, command: PlaceOrder, quote_set: str, events: list[Any]) -> None:
        """A quote placed through another gateway of the cluster (the account's connection
        there, or the one it had before it resumed here) is its slot's live quote here too:
        the next `quote.mass` of the set through this gateway amends or pulls it, and
        `orders.cancel_all {quote_set}` cancels it, rather than place a second quote beside
        it (which stayed on the book, unseen by the set's requests here). Not while the
        replica catches up at a start: nothing closes there (`released` is not called), the
        tables would grow with the stream's whole history, and `adopt_quotes` builds them from
        the open orders once it is caught up."""
        if not getattr(self.core, "live", True):  # (a cluster's replica; embedded: no call)
            return
        slot = (command.account, quote_set, command.symbol, command.side)
        self.dispatcher.placed.track_quote(slot, events)

    def _place_back(self, command: PlaceOrder, pending: Pending, events: list[Any]) -> None:
        """Over NATS a place's outcome comes back a hop after it was sent (the outcome
        `submit` returned was a stub): a quote.mass learns its placed quote's order id only
        now, and an order placed before its connection turned cod on or off (its session's
        `SetCancelOnDisconnect` could not list it) takes the setting now (`_remark`)."""
        quote_set = pending.quote_set
        if quote_set is not None:
            slot = (command.account, quote_set, command.symbol, command.side)
            placed = self.dispatcher.placed
            placed.track_quote(slot, events)
            placed.place_back(slot)  # requests held for it go once this batch is answered
        if command.cod != pending.session.cod:
            self._remark(pending.session, events)

    def _remark(self, session: Session, events: list[Any]) -> None:
        """The order a place accepted was marked as its connection's cod setting was when it
        was sent, and the setting changed since: it takes the setting now, as the
        connection's re-mark would have given it, so that the gateway's death cancels what
        its close would. If the connection has closed meanwhile with cod on, its close left
        the order out: it is canceled now, as `placed_with_cod` does for a marked one."""
        for event in events:
            if type(event) is OrderAccepted and event.order_id in self.reads.orders:
                account, order_id = event.account, event.order_id
                command: Command
                if session.cod and session.id not in self.sessions:
                    reason = CancelReason.COD
                    command = CancelOrder(account=account, order_id=order_id, reason=reason)
                else:
                    command = SetCancelOnDisconnect(
                        account=account, cod=session.cod, order_ids=(order_id,)
                    )
                    if session.cod:
                        self.dispatcher.placed.mark_sent(command.order_ids)
                self.bus.submit(command, OwnMark())  # (not another gateway's when it is back)
                return

    def released(self, batch: list[Executed]) -> None:
        """Everything in `batch` is durable: answer, push privately, publish.

        The answers and pushes are written at once, as the batch's last step (one write per
        session, `Sessions.hold_writes`), then the market data is published (now, or when the
        publications' pause is over): nothing is left for the next turn, so a quiet loop goes
        back to sleep at once. A packed session that also follows public streams gets the two
        in two frames."""
        connections = self.connections
        connections.hold_writes()
        try:
            self._answer_and_push(batch)
        finally:
            connections.release_writes()
        self.public.publish()

    def _answer_and_push(self, batch: list[Executed]) -> None:
        """Queue `batch`'s answers and private pushes, feed its events to the market data."""
        dispatcher = self.dispatcher
        # For the whole batch at once: nothing below reads what was placed here (a closed
        # connection's cancel-on-disconnect runs in a later callback, `on_close`).
        dispatcher.placed.forget_closed(batch)
        private_streams = self.private_streams
        market_data = self.public.market_data
        for executed in batch:
            pending = executed.origin
            kind = type(pending)  # the origins' classes are final: an `is` each, no isinstance
            if kind is Pending:
                results = pending.results
                results.append(executed)
                if len(results) >= pending.expected:  # its last: the request is answered
                    dispatcher.answer(pending)
            elif kind is AccountSubscription:
                private_streams.join(pending)
            elif kind is Notice and not pending.sent and _tells(executed):  # before the pushes
                pending.sent = True
                for account in pending.accounts:
                    self.connections.push_to_account(account, pending.message)
            if executed.command is None:
                continue
            private_streams.publish(executed)
            market_data.on_events(executed.events)
        if dispatcher.held:  # over a cluster's bus: requests that waited for places now back
            # (after this batch's answers: theirs come after them)
            dispatcher.held_requests.resume_held()

    def replayed(self, batch: list[Executed]) -> None:
        """A command replayed from the journal: rebuild the private history, the candles
        and the trades tape it made."""
        candles = self.public.candles
        tape = self.public.tape
        for executed in batch:
            self.private_streams.replayed(executed)
            for event in executed.events:
                if type(event) is TradeExecuted:
                    candles.add(event.symbol, event.ts_us, event.price, event.qty)
                    tape.add(event)
                elif type(event) is SharesSplit:  # as MarketData._split does live
                    for market in self.reads.markets.values():
                        if market.spec.base == event.asset:
                            spec = market.spec
                            candles.split(
                                spec.symbol, event.ratio_new, event.ratio_old, spec.price_tick
                            )

    def gateway_image(self, later: bool = False) -> dict[str, Any]:
        public = self.public
        images = {"candles": public.candles.image(), "tape": public.market_data.tape_image()}
        return self.private_streams.image(later) | images

    def restore_gateway(self, image: dict[str, Any]) -> None:
        self.private_streams.restore(image)
        self.public.candles.restore(image.get("candles"))
        self.public.tape.restore(image.get("tape"))
        self._learn_reference_data()

    def forget_gateway(self) -> None:
        """A cluster gateway's snapshot that failed to restore, perhaps part way: its part
        as before it (its replica replays the whole stream instead)."""
        self.private_streams.forget()
        self.public.candles.restore(None)
        self.public.tape.restore(None)


def _load_keys(path: Path) -> list[ApiKey]:
    return load_json(path, list[ApiKey], [])


def _add_issued_keys(store: KeyStore, issued: list[ApiKey], path: Path) -> None:
    """Add the keys issued at run time; a clash says which file holds the second one."""
    for key in issued:
        try:
            store.add(key)
        except KeyStoreError as clash:
            raise KeyStoreError(
                f"{path}: {clash} (in the config's [[api_keys]] too, or twice in this file:"
                " remove one)"
            ) from None


def _tells(executed: Executed) -> bool:
    """Whether a command that carries a `Notice` sends it: not the core's refusal of a cod
    cancel (its order's cod was another gateway's by then: nothing was canceled, so a
    close all of whose cancels were refused tells the account's other connections nothing)."""
    return type(executed.command) is not RefuseCancelOnDisconnect
