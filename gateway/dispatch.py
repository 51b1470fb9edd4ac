"""Request dispatch: the method table, and the handlers that turn requests into answers.

Owns what a request means: the checks in order (envelope, rate, logon and scope, params),
the commands it submits through the bus, the queries it answers from the read side, and
the answer itself, decided on arrival or once its commands are durable (`Pending`). Every
request gets exactly one answer, in request order: whatever is answered at once goes
behind the answers still owed on the connection. `Dispatcher.on_frame` takes any
session-like object and a frame and answers through the connection table, so other front
doors reuse it. Leaves to their own modules, called through its method table: logon
(`gateway.logon`), the keys `admin.issue_key` issues (`gateway.key_issuing`), the reads
(`gateway.queries`), the requests held behind a quote's place in flight
(`gateway.held_requests`), and the live quotes of `quote.mass` and which session placed each
open order (`gateway.placed_orders`).
"""

import logging
import sys
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from functools import partial
from itertools import repeat
from operator import attrgetter
from pathlib import Path
from typing import Any, cast

import msgspec

from core.bus import Bus, EmbeddedBus
from core.sequencer import Executed, pair_sides
from core.venue_core import now_us, rejection
from engine.commands import (
    ArmDeadMan,
    CancelAll,
    CancelOrder,
    Command,
    PlaceOrder,
    SetCancelOnDisconnect,
)
from engine.enums import CancelReason, OrderStatus, Side
from engine.events import (
    CommandRejected,
    DeadManTriggered,
    DividendPaid,
    OperationRepeated,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    SelfTradePrevented,
    SharesSplit,
    TradeExecuted,
    VenueAccountSwept,
    WithdrawalRequested,
)
from engine.instrument import InstrumentSpec, unknown_symbol
from engine.reasons import ErrorCode
from engine.units import format_units
from gateway import limits, wire
from gateway.auth import ApiKey, Authenticator, AuthError, require_scope
from gateway.held_requests import HeldRequests
from gateway.key_issuing import KeyIssuer, KeyRevoked
from gateway.logon import LOGON_ON_TRADE, Logons
from gateway.placed_orders import OwnMark, PlacedOrders, QuoteSlot
from gateway.private_streams import DMS_TRIGGERED, PrivateStreams
from gateway.public_streams import PublicStreams
from gateway.queries import Queries
from gateway.reports import PAIR_AMENDED_ONLY
from gateway.sessions import Session, Sessions
from gateway.sessions import key_of as _key

log = logging.getLogger("venue")
_time_ns = time.time_ns
_monotonic = time.monotonic  # how long a quote's place has been on its way (`HeldRequests.hold`)
E = ErrorCode

# `Pending.expected` of a request answered 504 before its outcome came back
# (`Dispatcher.answer_unknown`): no count of results reaches it, so none answers it again
# (but the key methods': `FINISHED_LATE`, `Pending.answered_unknown`)
ANSWERED_AS_UNKNOWN = sys.maxsize
# the requests whose finish runs when their outcome comes back after that 504: the key
# methods', so that a key whose id the engine took is stored, and one whose revocation's id
# it took revoked (`KeyIssuer`)
FINISHED_LATE = frozenset({"admin.issue_key", "admin.revoke_key"})
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
    "reserves",
    "subscribe",
    "unsubscribe",
    "subscriptions",
}


class Pending(msgspec.Struct, eq=False):
    """A request waiting for its command(s) to be durable. A struct, not a dataclass: one is
    made per request, and its `__init__` in C costs a third of the dataclass's Python one."""

    session: Session
    request_id: int | str | None  # None: a frame too broken to read an id from
    method: str
    t_in: int
    expected: int = 1  # commands (or barriers) still to come back
    # Each comes back as an `Executed` whose origin is this: emptied once answered, so that
    # the two are freed by reference counting, not left as a cycle for the collector.
    results: list[Executed] = msgspec.field(default_factory=list)
    answer: bytes | None = None  # a query's answer, computed when it arrived
    reply: bytes | None = None  # a whole response decided on arrival (a refusal from state)
    close_after: bool = False  # logout: close once the response is out
    close_code: int = 1000
    close_reason: str = "logged out"
    # never with `answer` or `reply`; a finish that returns None answers later itself
    finish: Callable[["Pending"], bytes | None] | None = None
    quote_set: str | None = None  # a quote.mass: the set its places belong to
    # answered 504 `OUTCOME_UNKNOWN` before its outcome came back (`answer_unknown`): an
    # issued key's finish still runs then (its key is stored), answering nothing
    answered_unknown: bool = False
    # What `unknown_reply` knows of ops not back, whatever the core did: an `order.batch`'s
    # ops refused here (never sent), by index; a quote set's `orders.cancel_all`: the order
    # of each cancel sent, in submit order (its results come back in that order)
    refused_ops: dict[int, CommandRejected] | None = None
    cancel_order_ids: tuple[int, ...] | None = None
    # A quote.mass's commands, each with its slot, and its params: only a refusal's place is
    # worked out of them (`_op_place`), not every request's; None: a plain requote's amends
    quote_plan: list[tuple[Command, QuoteSlot]] | None = None
    quote_params: Any = None


def _logon(dispatcher: "Dispatcher", session: Session, request: wire.Request, t_in: int) -> None:
    """`session.logon` in the dispatcher's table: `Logons.logon`."""
    dispatcher.logons.logon(session, request, t_in)


def _query(
    handler: Callable[[Queries, Session, wire.Request, int], None],
) -> Callable[["Dispatcher", Session, wire.Request, int], None]:
    """A handler of `Queries` in the dispatcher's table (queries are off the order path:
    the extra call costs nothing that matters)."""

    def on_dispatcher(
        dispatcher: "Dispatcher", session: Session, request: wire.Request, t_in: int
    ) -> None:
        handler(dispatcher.queries, session, request, t_in)

    return on_dispatcher


class Dispatcher:
    """Requests in, commands to the bus and answers out.

    Past 400 lines for a reason: every request is routed, limited and checked here, and the
    trading ones (place, cancel, amend, batch, quote.mass) are handled here on the hot path
    with their answers built inline, a call from `on_frame` each: a module of their own
    would add a call and its look-ups per order. What stands alone has its module (decoding
    `wire`, limits, queries, order history, placed orders, logon, key issuing, held
    requests)."""

    # A plain requote as one `AmendPair` (session 31); False: as its two amends, planned side
    # by side (`_requote_each`), as before: the differential tests' reference path, and the
    # server's with `[gateway] requote_pairs = false` or once a core refused a pair unread
    # (`stop_requote_pairs`)
    requote_pairs = True

    def __init__(
        self,
        bus: Bus,
        connections: Sessions,
        private_streams: PrivateStreams,
        public: PublicStreams,
        auth: Authenticator,
        limiter: limits.RateLimiter,
        data_dir: Path,
        issued_keys: list[ApiKey],
        revocations: list[KeyRevoked],
    ) -> None:
        self.bus = bus
        self.reads = bus.reads
        self.connections = connections
        self.private_streams = private_streams
        self.public = public
        self.auth = auth
        self.limiter = limiter
        self.specs: dict[str, InstrumentSpec] = {}  # by symbol, for the wire's conversions
        self.scales: dict[str, int] = {}  # by asset code
        # embedded, a submitted command has run when `submit` returns; over a cluster's bus
        # its outcome comes back a hop later (`PlacedOrders.in_flight`)
        self.placed = PlacedOrders(self.reads, replica_lags=not isinstance(bus, EmbeddedBus))
        # over a cluster's bus, the requests that wait for a place, and the frames behind them
        self.held_requests = HeldRequests(self)
        # the same table: the server tests it per released batch, with one look-up
        self.held = self.held_requests.held
        self.queries = Queries(self)  # the read requests' handlers
        self.logons = Logons(self)  # `session.logon`, and a cluster's nonces
        # `admin.issue_key`: the keys issued at run time, and their state
        self.keys = KeyIssuer(self, data_dir, issued_keys, revocations)
        # The time for the commands a request makes, read as they are built: an embedded
        # core's `Sequencer.stamp_us` (set by the server), so `submit` need not copy each to
        # stamp it; 0 elsewhere (a cluster's core stamps what it is sent).
        self.stamp_us: Callable[[], int] = _unstamped
        # A request's commands with one origin, in one call where the bus has one (the
        # embedded core's `Sequencer.submit_all`); elsewhere a `submit` each.
        self.submit_all: Callable[[Iterable[Command], Pending], None] = getattr(
            bus, "submit_all", None
        ) or partial(_submit_each, bus)
        # A place's, an amend's and an order.batch's answers: a DUPLICATE_CL_ORD_ID names the
        # status of the order it names too (`first_status`): a `once` place's first order, so
        # a retry learns what became of it; else the open order holding the cl_ord_id, or
        # for an amend the amended order. Plain functions (closures), not partials: they run
        # for every order, and only a refusal reads `first_status`.
        self._finish_trade = _trade_answer(self.first_status)
        self._finish_batch = _batch_answer(self.first_status)
        self._finish_requote = self._requote_answer  # bound once: tested by `is` (tests)

    def _requote_answer(self, pending: Pending) -> bytes:
        """A plain requote's answer (`_requote_result`), sent after its bid's pushes and
        before its ask's, where it went when they were two commands: the request was
        answered as its last command was released, before that one's pushes. So its bid's
        pushes go now, and the release sends the rest after the answer."""
        (executed,) = pending.results
        pushes = executed.pushes
        bid_pushes = executed.bid_pushes
        if bid_pushes == 1:  # the usual: the bid's report (and hold) to the quoting account
            self.private_streams.publish_one(*pushes[0])  # no slice, no loop: ~2k instructions
            del pushes[0]
        elif bid_pushes:
            self.private_streams.publish_pushes(pushes[:bid_pushes])
            del pushes[:bid_pushes]
        return _requote_result(pending)

    def stop_requote_pairs(self) -> None:
        """A core of an earlier build refused an `AmendPair` of this gateway unread (its
        requote was answered 503, nothing done): plain requotes go as two amends, which every
        build reads, for the rest of this gateway's life. Said once, at warning."""
        if not self.requote_pairs:
            return
        self.requote_pairs = False
        log.warning(
            "a core cannot read AmendPair (an earlier build): plain requotes go as two amends"
            " from now on; restart this gateway once every core runs this build"
        )

    def first_status(self, account: int, order_id: int) -> str | None:
        """The status of the account's order `order_id` now (open, or closed and still in
        the account's retained history), or None: what a DUPLICATE_CL_ORD_ID's data adds to
        the order it names."""
        order = self.reads.orders.get(order_id)
        if order is not None and order.account == account:
            return str(order.status)
        record = self.private_streams.order_history.find(account, order_id, None)
        return record.status if record is not None else None

    def on_frame(self, session: Session, frame: str | bytes, charged: bool = False) -> None:
        """Answer one frame through `session`'s connection (the one entry for every front
        door). Never raises: whatever the frame, it gets its one answer, and the answers
        already owed on the connection keep coming (a raise would close it). `charged`: the
        front door charged it already (REST, `gateway.rest`).

        Decode the envelope, then check logon and scope, then the params, then handle (by
        method; anything else is an admin method): who may call a method is said before what
        is wrong with its params. One function for all of a well-formed request's: a frame is
        two Python calls from its handler, not four; any other frame is `_on_malformed`'s, in
        the same order (one type test tells them apart)."""
        if session.held is not None:  # over a cluster's bus: a request before it waits
            self.held_requests.hold_frame(session, frame, charged)
            return
        # Nothing sent behind a logout runs, nor anything read once the venue has decided to
        # close the connection (a slow consumer's 4002, a stop, a lost lease): its answer
        # could not be sent, and a `session.cod` off would slip in before the close.
        if session.deaf:
            return
        try:
            t_in = _time_ns() // 1_000  # `now_us`, inline: a call less per frame
            envelope, request = wire.decode(frame)
            if type(request) is not wire.Request:  # one test: the usual frame passes it
                self._on_malformed(session, envelope, request, charged, t_in)
                return
            key = session.key
            if not charged:  # every frame is charged, malformed or not: no flood unthrottled
                # (a method of fixed cost, the usual, looked up here: `_cost` is a call more)
                cost = _FIXED_COST_MILLI.get(request.method) or _sized_cost(request)
                bucket = session.account_bucket  # the key's, as its logon worked it out
                retry = self.limiter.charge_cost(session.id, bucket, cost, t_in)
                if retry:
                    self._rate_limited(session, request.id, retry, bucket, cost, t_in)
                    return
            # The usual request, a method its key's scopes allow, is let through here (as
            # `refusal` would: it refuses none of them); anything else is `refusal`'s.
            if key is None or _SCOPE_OF.get(request.method) not in key.scopes:
                refused = self.refusal(session, request.method)
                if refused is not None:  # behind the answers owed, like every other error
                    body = wire.error(request.id, refused.code, refused.message)
                    self._send_behind(session, body)
                    return
            handler = self._handlers.get(request.method) or Dispatcher._admin
            try:
                handler(self, session, request, t_in)
            except AssertionError:
                raise  # a broken invariant: crash loudly, recover by replay
            except Exception as failure:
                self._handler_failed(session, request, failure)
        except AssertionError:
            raise  # a broken invariant: crash loudly, recover by replay
        except Exception:  # a bug outside any handler: the answer says the outcome is unknown
            log.exception("frame failed on session %d", session.id)
            self._send_behind(session, wire.error(None, E.INTERNAL, "internal error"))

    def _on_malformed(
        self,
        session: Session,
        envelope: wire.Envelope | wire.Request | wire.WireError,
        request: wire.Request | wire.WireError,
        charged: bool,
        t_in: int,
    ) -> None:
        """`on_frame` of a frame that is no well-formed request, in the same order: charged
        (as a query), then its envelope's error, or else a refusal of its method, or else
        its params' error (`wire.decode` pairs a good envelope with that error)."""
        if not charged:
            bucket = session.account_bucket
            cost = _MALFORMED_COST_MILLI
            retry = self.limiter.charge_cost(session.id, bucket, cost, t_in)
            if retry:
                self._rate_limited(session, request.id, retry, bucket, cost, t_in)
                return
        if isinstance(envelope, wire.WireError):
            self._send_behind(session, wire.error_of(envelope))
            return
        refused = self.refusal(session, envelope.method)
        if refused is not None:  # behind the answers owed, like every other error
            self._send_behind(session, wire.error(envelope.id, refused.code, refused.message))
            return
        self._send_behind(session, wire.error_of(cast(wire.WireError, request)))

    def _rate_limited(
        self,
        session: Session,
        request_id: int | str | None,
        retry: int,
        bucket: int | None,
        cost: int,
        t_in: int,
    ) -> None:
        """Refuse a frame over its rate, at once (not behind the answers owed), saying which
        bucket refused it (`data.limit` and the words; since session 30, before, "slow down"
        alone): a bot on another of the account's connections may be the one spending it."""
        limit = self.limiter.refusing_limit(session.id, bucket, cost, t_in)
        words, data = limits.RATE_LIMITED_WORDS[limit], {"limit": limit}
        body = wire.error(request_id, E.RATE_LIMITED, words, data, 429, retry_after_ms=retry)
        self.connections.send(session, body)

    def refusal(self, session: Session, method: str) -> AuthError | None:
        """Why this session may not call `method` at all, whatever its params."""
        if method == "session.logon":
            return None if session.trade else AuthError(E.PERMISSION_DENIED, LOGON_ON_TRADE)
        if method in PUBLIC_METHODS:
            return None
        if session.key is None:
            where = "log on first" if session.trade else "log on at /ws/trade for this method"
            return AuthError(E.NOT_AUTHENTICATED, where)
        scope = _SCOPE_OF.get(method, "?")
        if scope == "?":  # not a method of the protocol: an admin.* name needs admin
            scope = _scope_of(method)
        if scope is None or scope in session.key.scopes:  # the test of `require_scope`
            return None
        try:
            require_scope(session.key, scope)
        except AuthError as refused:
            return refused
        return None

    def _send_behind(self, session: Session, body: bytes) -> None:
        """Send an answer decided now, but behind every answer the connection is owed for
        the requests before it (they wait for durability): answers keep request order."""
        pending = Pending(session, None, "", 0)
        pending.reply = body
        self.bus.barrier(pending)

    def _reply_error(
        self, session: Session, request: wire.Request, code: ErrorCode, msg: str, data: Any = None
    ) -> None:
        self.connections.send(session, wire.error(request.id, code, msg, data))

    def _reply(self, session: Session, request: wire.Request, result: Any, t_in: int) -> None:
        self.connections.send(session, wire.ok(request.id, result, t_in, now_us()))

    def _defer_error(
        self, session: Session, request: wire.Request, code: ErrorCode, msg: str, data: Any = None
    ) -> None:
        """Refuse on the state, but only once the commands that made that state are durable."""
        pending = Pending(session, request.id, request.method, 0)
        pending.reply = wire.error(request.id, code, msg, data)
        self.bus.barrier(pending)

    def _defer(self, session: Session, request: wire.Request, t_in: int, result: Any) -> None:
        """Answer a query after every command before it is durable (it may show them)."""
        pending = Pending(session, request.id, request.method, t_in)
        pending.answer = wire.encode(result)
        self.bus.barrier(pending)

    # session methods

    def _logout(self, session: Session, request: wire.Request, t_in: int) -> None:
        """Answered (and closed) behind everything still owed on this connection; the
        frames sent after it are not handled (`Session.deaf`): no answer of theirs would
        reach the client, and none may change what the close does (its cancel-on-disconnect)."""
        session.deaf = True
        pending = Pending(session, request.id, request.method, t_in, close_after=True)
        pending.answer = wire.encode({})
        self.bus.barrier(pending)

    def _status(self, session: Session, request: wire.Request, t_in: int) -> None:
        result = {
            "account": session.account,
            "scopes": sorted(session.key.scopes) if session.key else [],
            "cod": session.cod,
            "epoch": self.bus.epoch,
            "subscriptions": len(session.streams) + session.account_stream,
        }
        self._reply(session, request, result, t_in)

    def _ping(self, session: Session, request: wire.Request, t_in: int) -> None:
        self._reply(session, request, {"pong": t_in}, t_in)

    def _time(self, session: Session, request: wire.Request, t_in: int) -> None:
        self._reply(session, request, {"time": t_in}, t_in)

    def _cod(self, session: Session, request: wire.Request, t_in: int) -> None:
        """Turn the connection's cancel-on-disconnect on or off: the places sent from now on
        carry it (`_with_cod_mark`), and the open orders placed here before take it as their
        mark (`SetCancelOnDisconnect`, journaled; answered once durable), so that a start
        after a crash cancels what this connection's close would. Nothing to mark: nothing
        journaled, answered behind the answers owed (in request order: a client never reads
        an earlier setting after a later one). (Over a cluster's bus a place still on its way
        is marked when it comes back: `VenueServer._place_back`.)"""
        key = _key(session)
        require_scope(key, "trade")
        enabled = bool(request.params.enabled)  # type: ignore[attr-defined]
        changed, session.cod = enabled != session.cod, enabled
        orders = self.reads.orders
        placed = [order_id for order_id in session.placed if order_id in orders] if changed else []
        if not placed:  # behind the answers owed: an earlier `session.cod` may still wait
            self._defer(session, request, t_in, {"enabled": enabled})
            return
        command = SetCancelOnDisconnect(
            ts_us=self.stamp_us(), account=key.account, cod=enabled, order_ids=tuple(sorted(placed))
        )
        pending = Pending(session, request.id, request.method, t_in, finish=_cod_result)
        if enabled:
            self.placed.mark_sent(command.order_ids)
        self.bus.submit(command, pending)

    def _cancel_after(self, session: Session, request: wire.Request, t_in: int) -> None:
        """Arm (or with 0, disarm) the account's dead-man's switch: a command, so the one
        switch of the account is the venue's, whichever connection or gateway armed it."""
        require_scope(_key(session), "trade")
        account = _key(session).account
        timeout_ms: int = request.params.timeout_ms  # type: ignore[attr-defined]
        command = ArmDeadMan(ts_us=self.stamp_us(), account=account, timeout_ms=timeout_ms)
        finish = self._cancel_after_result
        pending = Pending(session, request.id, request.method, t_in, finish=finish)
        self.bus.submit(command, pending)

    def _cancel_after_result(self, pending: Pending) -> bytes:
        """`{timeout_ms, armed}`, as the switch now stands (the wire checked the timeout).
        Switches that were already due fired first (`Venue._arm_dead_man`): their accounts'
        connections hear `dms.triggered` now, before the cancels' pushes."""
        executed = pending.results[0]
        rejected = rejection(executed.events)
        if rejected is not None:
            data = wire.rejection_data(rejected)
            return wire.error(pending.request_id, rejected.reason, rejected.detail, data)
        for event in executed.events:
            if type(event) is DeadManTriggered:
                self.connections.push_to_account(event.account, DMS_TRIGGERED)
        timeout_ms = cast(ArmDeadMan, executed.command).timeout_ms
        result = {"timeout_ms": timeout_ms, "armed": bool(timeout_ms)}
        return wire.ok(pending.request_id, result, pending.t_in, now_us())

    def _trade(self, session: Session, request: wire.Request, t_in: int) -> None:
        key = session.key
        if key is None or "trade" not in key.scopes:  # `_key`, `require_scope`: every order's
            key = _key(session)  # they word the refusal
            require_scope(key, "trade")
        params = request.params
        command: Command | None = None
        if type(params) is wire.PlaceParams:  # the usual order, converted in one call
            command = wire.plain_place(params, self.specs, key.account, self.stamp_us())
        elif type(params) is wire.CancelAllParams and params.quote_set is not None:
            self._cancel_quote_set(session, request, t_in, key.account, params.quote_set)
            return
        if command is None:
            command = self._command(session, request, key.account)
            if command is None:
                return
        if session.cod:
            command = _with_cod_mark(command)
        pending = Pending(session, request.id, request.method, t_in, finish=self._finish_trade)
        self.bus.submit(command, pending)

    def _quote_mass(
        self, session: Session, request: wire.Request, t_in: int, in_turn: bool = False
    ) -> None:
        """Replace the quote set's bid and ask per symbol: post-only, expire_maker.

        The usual one, one quote whose bid and ask both move, is served here as one command
        of its two amends (`wire.plain_quote_units`, `PlacedOrders.amends`, `AmendPair`):
        about half the bytecodes of the general planning, `_requote_each`, which serves
        anything else (and words any error) with nothing done here. Over a cluster's bus,
        one that touches a quote whose place is in flight waits for it (`hold`); `in_turn`:
        served after waiting."""
        key = session.key
        if key is None or "trade" not in key.scopes:  # `_key`, `require_scope`: every requote's
            key = _key(session)  # they word the refusal
            require_scope(key, "trade")
        if not session.cod:
            self._reply_error(session, request, E.COD_REQUIRED, "enable session.cod first")
            return
        p: Any = request.params
        placed = self.placed
        if placed.placing and not in_turn:  # over a cluster's bus, places in flight
            scope = (key.account, p.quote_set, {quote.symbol for quote in p.quotes})
            serve = partial(self._quote_mass, session, request, t_in, True)
            if self._waits_for_places(session, request, scope, serve):
                return
        ts_us = self.stamp_us()  # one time for all its commands: none can run in between
        if len(p.quotes) == 1 and self.requote_pairs:
            quote = p.quotes[0]
            units = wire.plain_quote_units(quote, self.specs)
            pair = (
                None
                if units is None
                else placed.amends(key.account, p.quote_set, quote.symbol, units, ts_us)
            )
            if pair is not None:
                pending = Pending(
                    session,
                    request.id,
                    request.method,
                    t_in,
                    finish=self._finish_requote,
                    quote_set=p.quote_set,
                )
                self.bus.submit(pair, pending)
                if placed.replica_lags:  # over a cluster's bus: the next one's base
                    placed.sent((pair,), pending, _monotonic())
                owned = session.placed
                bid_id, ask_id = pair.bid_order_id, pair.ask_order_id
                if bid_id not in owned or ask_id not in owned:
                    self._take_cod(session, key.account, (bid_id, ask_id))
                placed.track_amends(bid_id, ask_id)  # the next quote.mass's base
                return
        self._requote_each(session, request, t_in, key.account, ts_us)

    def _requote_each(
        self, session: Session, request: wire.Request, t_in: int, account: int, ts_us: int
    ) -> None:
        """`quote.mass` side by side: per quote its `QuoteUnits`, per side a `requote` (a
        place, an amend, a cancel or nothing); nothing is submitted if any quote is wrong."""
        p: Any = request.params
        quote_set, requote = p.quote_set, self.placed.requote
        planned: list[tuple[Command, QuoteSlot]] = []
        kept_slots: list[QuoteSlot] = []  # the sides it quotes (not pulls): `_take_cod`
        for index, quote in enumerate(p.quotes):
            units = wire.quote_units(quote, self.specs)
            if isinstance(units, wire.WireError):
                msg = wire.placed_under(units.message, f"quotes[{index}]")
                self._reply_error(session, request, units.code, msg)
                return
            for side, price, qty in (
                (_BUY, units.bid_px, units.bid_qty),
                (_SELL, units.ask_px, units.ask_qty),
            ):
                if qty is None:
                    continue  # this side is not mentioned: left as it is
                slot = (account, quote_set, units.symbol, side)
                if qty:
                    kept_slots.append(slot)
                command = requote(slot, price or 0, qty, ts_us)
                if command is not None:
                    planned.append((command, slot))
                if self.placed.extra_quotes:  # the slot holds more than one: one is left
                    extras = self.placed.extra_cancels(slot, ts_us)
                    planned.extend((cancel, slot) for cancel in extras)
        pending = Pending(
            session,
            request.id,
            "quote.mass",  # its method, without a look-up: the bytecodes of `quote_plan`'s
            t_in,
            len(planned),
            finish=_batch_result,
            quote_set=quote_set,
            quote_plan=planned,
            quote_params=p,
        )
        if not planned:  # nothing to change: answered behind those owed, in request order
            self._send_behind(session, _batch_result(pending))
            self._take_cod_of_slots(session, account, kept_slots)
            return
        submit, track_quote = self.bus.submit, self.placed.track_quote
        for command, slot in planned:
            executed = submit(command, pending)
            track_quote(slot, executed.events)  # now: the next quote.mass builds on it
        if self.placed.replica_lags:  # over a cluster's bus: the next one's base
            self.placed.sent((command for command, _ in planned), pending, _monotonic())
        self._take_cod_of_slots(session, account, kept_slots)

    def _take_cod_of_slots(self, session: Session, account: int, slots: list[QuoteSlot]) -> None:
        """`_take_cod` of the live quotes of `slots` (amended or left as they are)."""
        quotes = self.placed.quotes
        kept = [quotes[slot] for slot in slots if slot in quotes]
        if kept:
            self._take_cod(session, account, kept)

    def _take_cod(self, session: Session, account: int, order_ids: Iterable[int]) -> None:
        """Quotes requoted for `session` (amended or left as they are; cod on: `quote.mass`
        requires it) that another connection placed take this one's cancel-on-disconnect
        instead (`take_cod`), and the mark says so in the stream: this gateway's now, the
        placing gateway's no more (`CodOrders`; `VenueServer.executed` there), so neither
        the other connection's close nor its gateway's death cancels them; this one's does."""
        moved = self.placed.take_cod(session, order_ids)
        if moved:
            mark = SetCancelOnDisconnect(
                ts_us=self.stamp_us(), account=account, cod=True, order_ids=moved
            )
            self.placed.mark_sent(moved)
            self.bus.submit(mark, OwnMark())

    def _waits_for_places(
        self,
        session: Session,
        request: wire.Request,
        scope: tuple[int, str, Collection[str] | None],
        serve: Callable[[], None],
    ) -> bool:
        """Over a cluster's bus: whether `request` is not served now because it touches a
        quote whose place is in flight (`scope`: account, quote set, symbols or None for
        all). It waits for the place (`HeldRequests.hold`), unless that place has been on its
        way for `limits.QUOTE_PLACE_WAIT_S` already: then it is refused at once."""
        since_s = self.placed.placing_since(*scope)
        if since_s is None:
            return False
        if _monotonic() - since_s >= limits.QUOTE_PLACE_WAIT_S:
            self.held_requests.refuse_unplaced(session, request, since_s)
        else:
            self.held_requests.hold(session, request, scope, serve, since_s)
        return True

    def _handler_failed(self, session: Session, request: wire.Request, failure: Exception) -> None:
        """A handler raised (called in its `except`): a refusal is answered as such; anything
        else is a bug, logged, and the client learns the outcome is unknown."""
        if isinstance(failure, AuthError):
            retry = failure.retry_after_ms  # a `RATE_LIMITED` logon: the key's nonces, its IP's
            data = None if failure.limit is None else {"limit": failure.limit}
            body = wire.error(request.id, failure.code, failure.message, data, retry_after_ms=retry)
            self.connections.send(session, body)
            return
        log.exception("request %r failed", request.method)
        body = wire.error(request.id, E.INTERNAL, "internal error: query the outcome")
        self._send_behind(session, body)

    def _cancel_quote_set(
        self,
        session: Session,
        request: wire.Request,
        t_in: int,
        account: int,
        quote_set: str,
        in_turn: bool = False,
    ) -> None:
        p: Any = request.params
        # refused in the words of the engine's cancel_all (not "0 canceled": a typo shows)
        if p.symbol is not None and p.symbol not in self.reads.markets:
            words = wire.at_field(unknown_symbol(p.symbol, self.reads.markets), "symbol")
            self._defer_error(session, request, E.UNKNOWN_SYMBOL, words)
            return
        placed = self.placed
        if placed.placing and not in_turn:  # over a cluster's bus, places in flight
            scope = (account, quote_set, None if p.symbol is None else (p.symbol,))
            go = partial(self._cancel_quote_set, session, request, t_in, account, quote_set, True)
            if self._waits_for_places(session, request, scope, go):
                return
        ts_us = self.stamp_us()
        # Every open order of the set, as the replica has them (each order keeps its set),
        # not only the live quotes tracked here: one left beside them by a race of two
        # places through two gateways is canceled too.
        commands = [
            CancelOrder(
                ts_us=ts_us,
                account=account,
                order_id=order.order_id,
                reason=CancelReason.MASS_CANCEL,
            )
            for order in sorted(self.reads.open_orders(account), key=_ORDER_ID)
            if order.quote_set == quote_set
            and not placed.canceling(order.order_id)  # (over a cluster's bus) pulled already
            and (p.symbol is None or order.symbol == p.symbol)
            and (p.side is None or order.side is p.side)
            and p.tag is None  # quotes carry no tag: a tag filter matches none of them
        ]
        pending = Pending(
            session,
            request.id,
            request.method,
            t_in,
            len(commands),
            finish=_canceled_count,
            cancel_order_ids=tuple(command.order_id for command in commands),
        )
        if not commands:  # behind the answers owed, in request order
            self._send_behind(session, _canceled_count(pending))
        for command in commands:
            self.bus.submit(command, pending)
        # over a cluster's bus: pulled, as requotes see them
        placed.sent(commands, pending, _monotonic())

    def _command(self, session: Session, request: wire.Request, account: int) -> Command | None:
        symbol = None
        if request.method == "order.amend":
            p: Any = request.params
            order = self.reads.find_order(account, p.order_id or 0, p.cl_ord_id)
            symbol = order.symbol if order is not None else None
            if order is None and (p.price is not None or p.qty is not None):
                # no symbol to read the units at: refused here, as the engine would refuse it
                reason = self.reads.missing_order_reason(account, p.order_id or 0, p.cl_ord_id)
                rejected = _unknown_order(account, p.order_id, p.cl_ord_id, reason)
                data = _refusal_data(rejected, self.first_status)  # as the engine's refusal
                words = _refusal_words(rejected, data)
                self._defer_error(session, request, rejected.reason, words, data)
                return None
        command = wire.to_command(
            request, self.specs, self.scales, account, order_symbol=symbol, ts_us=self.stamp_us()
        )
        if isinstance(command, wire.WireError):  # may hang on state (an unknown symbol)
            self._defer_error(session, request, command.code, command.message, command.data)
            return None
        return command

    def _batch(self, session: Session, request: wire.Request, t_in: int) -> None:
        """Up to 20 ops applied in order, one result each; a malformed op applies nothing."""
        key = session.key
        if key is None or "trade" not in key.scopes:  # `_key`, `require_scope`: every batch's
            key = _key(session)  # they word the refusal
            require_scope(key, "trade")
        ts_us = self.stamp_us()  # one time for all its commands: none can run in between
        account, specs, plain_place = key.account, self.specs, wire.plain_place
        ops = request.params.ops  # type: ignore[attr-defined]
        if _ONLY_PLACES.issuperset(map(type, ops)):  # the usual batch: converted in C
            args = map(_PARAMS, ops), repeat(specs), repeat(account), repeat(ts_us)
            places: list[Any] = [*map(plain_place, *args)]  # a PlaceOrder, or None
            if None not in places:  # (else as any batch, which says what is wrong)
                if session.cod:
                    places = [*map(_with_cod_mark, places)]
                pending = Pending(
                    session,
                    request.id,
                    request.method,
                    t_in,
                    len(places),
                    finish=self._finish_batch,
                )
                self.submit_all(places, pending)
                return
        planned: list[Command | CommandRejected] = []
        # The instrument each cl_ord_id was last given by an op of this batch (a place, or an
        # amend's new_cl_ord_id): an amend's price and qty are read at it, else at the order
        # the name gives now. A guess, as the ops have not run: an op refused when it runs
        # leaves the name where it was, and the engine then refuses the amend read at the
        # wrong instrument (`AmendOrder.symbol`) rather than apply it in those units.
        named: dict[str, str] = {}
        refused = False  # an op refused before it could become a command (`_unknown_order`)
        for index, op in enumerate(ops):
            if type(op) is wire.PlaceOp:  # the usual op: converted in one call, or as any op
                params = op.params
                if params.cl_ord_id is not None:
                    named[params.cl_ord_id] = params.symbol
                place = plain_place(params, specs, account, ts_us)
                if place is not None:
                    planned.append(place)
                    continue
            symbol = None
            if isinstance(op, wire.AmendOp):
                p = op.params
                symbol = named.get(p.cl_ord_id) if p.cl_ord_id is not None else None
                if symbol is None:
                    order = self.reads.find_order(key.account, p.order_id or 0, p.cl_ord_id)
                    symbol = None if order is None else order.symbol
                if symbol is not None and p.new_cl_ord_id is not None:
                    named[p.new_cl_ord_id] = symbol
                if symbol is None:
                    reason = self.reads.missing_order_reason(
                        key.account, p.order_id or 0, p.cl_ord_id
                    )
                    planned.append(_unknown_order(key.account, p.order_id, p.cl_ord_id, reason))
                    refused = True
                    continue
            command = wire.params_to_command(
                op.params, self.specs, self.scales, key.account, order_symbol=symbol, ts_us=ts_us
            )
            if isinstance(command, wire.WireError):  # malformed: nothing applied
                msg = wire.placed_under(command.message, f"ops[{index}].params")
                if msg == command.message:  # its words name no field: said of the op
                    msg = f"op {index}: {msg}"
                self._reply_error(session, request, command.code, msg, {"op": index})
                return
            planned.append(command)
        if session.cod:
            planned = [*map(_with_cod_mark, planned)]
        pending = Pending(
            session, request.id, request.method, t_in, len(planned), finish=self._finish_batch
        )
        if not refused:  # the usual batch: every op a command
            self.submit_all(cast(list[Command], planned), pending)
            return
        pending.refused_ops = {
            index: item for index, item in enumerate(planned) if type(item) is CommandRejected
        }
        for item in planned:
            if isinstance(item, CommandRejected):
                self.bus.barrier(pending, [item])
            else:
                self.bus.submit(item, pending)

    def _admin(self, session: Session, request: wire.Request, t_in: int) -> None:
        key = _key(session)
        require_scope(key, "admin")
        action = {"session": session.id, "account": key.account, "api_key": key.key}
        # As sent: an optional field left out (None, e.g. no `cl_op_id`) is not listed.
        params = {k: v for k, v in msgspec.to_builtins(request.params).items() if v is not None}
        if request.method == "admin.revoke_key":  # a secret pasted as the key stays out too
            params["api_key"] = self.auth.store.logged(params["api_key"])
        log.info("admin request", extra=action | {"method": request.method, "params": params})
        if request.method == "admin.issue_key":
            self.keys.issue(session, request, t_in)
            return
        if request.method == "admin.revoke_key":
            self.keys.revoke(session, request, t_in)
            return
        p: Any = request.params
        command = self._command(session, request, getattr(p, "account", key.account))
        if command is None:  # malformed: said so first, whatever its id
            return
        revoked_under = self.keys.revocation_under(p.cl_op_id)
        if revoked_under is not None:  # one the engine never saw: revoked before session 32
            self._reply_error(session, request, E.CL_OP_ID_REUSED, revoked_under)
            return
        finish: Callable[[Pending], bytes] = _admin_result
        if request.method in CORPORATE_METHODS:  # the answer sums the action up, in decimals
            finish = partial(_corporate_result, self.scales)
        elif request.method == "admin.sweep":  # the answer names the transfer
            finish = _sweep_result
        pending = Pending(session, request.id, request.method, t_in, finish=finish)
        self.bus.submit(command, pending)

    def answer_unknown(self, pending: Pending, message: str) -> None:
        """504 `OUTCOME_UNKNOWN` now (a batch partly back: 409, `unknown_reply`), for a
        request whose commands' outcome has not come back (a cluster's core silent too long,
        `outcomes_overdue`); its outcome, when it comes back, is pushed as ever but not
        answered again: `expected` is out of reach. Once only, and nothing for a closing
        session (nobody reads it) or a broken frame. An issued key's outcome is still
        awaited: its key is stored (`KeyIssuer._key_decided`)."""
        if pending.answered_unknown:
            return
        reply = self.unknown_reply(pending, message)  # before what came back is let go
        pending.answered_unknown = True
        if pending.method not in FINISHED_LATE:  # (one command: nothing came back of it yet)
            pending.expected = ANSWERED_AS_UNKNOWN
            pending.results.clear()  # what came back of a batch already: in `reply`
        session = pending.session
        if pending.request_id is not None and not session.closing:
            self.connections.send(session, reply)

    def unknown_reply(self, pending: Pending, message: str) -> bytes:
        """The answer of a request whose outcome has not (all) come back (`message` says
        why): 504 `OUTCOME_UNKNOWN`; but an `order.batch` or `quote.mass` of which some
        commands came back is partly done (409): those ops with their outcomes, each op
        after them 504 `OUTCOME_UNKNOWN` (outcomes come back in op order, so the known ones
        are the first) but for an op refused here, known whatever the core did (its own
        refusal); a quote set's `orders.cancel_all`, a count, is a 504 saying what is known
        (`_cancels_unknown`). Before, such a batch was 504 as a whole: its done ops' order
        ids lost. Never for a request answered already: once answered, `expected` is out of
        reach."""
        assert not pending.answered_unknown, f"request {pending.request_id!r} answered twice"
        if pending.cancel_order_ids is not None:
            return _cancels_unknown(pending, message)
        refused = pending.refused_ops or {}
        if pending.method not in _PER_OP_METHODS or not (pending.results or refused):
            return wire.error(pending.request_id, E.OUTCOME_UNKNOWN, message)
        status_of = self.first_status if pending.method == "order.batch" else None
        entries, _ = _op_entries(pending.results, status_of, pending)
        unknown = {"code": int(E.OUTCOME_UNKNOWN), "name": E.OUTCOME_UNKNOWN.name, "msg": message}
        for index in range(len(entries), pending.expected):
            # an op refused here is known, whatever happened to the ops before it
            rejected = refused.get(index)
            if rejected is None:
                entries.append({"status": 504, "error": unknown})
            else:
                refusal = [Executed(0, None, [rejected], None)]
                entries += _op_entries(refusal, status_of, pending, index)[0]
        body = {
            "id": pending.request_id,
            "status": 409,
            "result": {"results": entries},
            "t_in": pending.t_in,
            "t_out": now_us(),
        }
        return wire.encode(body)

    def answer(self, pending: Pending) -> None:
        """Answer a request whose `results` are all in (the release appends each as it comes
        back, and calls this for the last: no call per command of a batch)."""
        results = pending.results
        session = pending.session
        finish = pending.finish  # first: every order's; a pending has at most one of the three
        if finish is not None:
            reply = finish(pending)
            if reply is not None:  # (None: an issued key's, answered once it is stored)
                self.connections.send(session, reply)
        elif pending.reply is not None:
            self.connections.send(session, pending.reply)
        elif pending.answer is not None:
            result = msgspec.Raw(pending.answer)  # encoded when the query arrived
            self.connections.send(
                session, wire.ok(pending.request_id, result, pending.t_in, now_us())
            )
        results.clear()  # the cycle through each result's origin, broken (see `Pending`)
        if pending.close_after and not (
            pending.close_code == limits.LOGON_TIMEOUT_CLOSE_CODE and session.key is not None
        ):
            # (a logon-timeout close is dropped when the logon made it in before it)
            self.connections.close(session, pending.close_code, pending.close_reason)

    _handlers: dict[str, Callable[["Dispatcher", Session, wire.Request, int], None]] = {
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
        "orders.open": _query(Queries._open_orders),
        "order.status": _query(Queries._order_status),
        "orders.history": _query(Queries._orders_history),
        "fills": _query(Queries._fills),
        "balances": _query(Queries._balances),
        "instruments": _query(Queries._instruments),
        "book.snapshot": _query(Queries._book_snapshot),
        "reserves": _query(Queries._reserves),
        "admin.withdrawals": _query(Queries._withdrawals),
        "subscribe": _query(Queries._subscribe),
        "unsubscribe": _query(Queries._unsubscribe),
        "subscriptions": _query(Queries._subscriptions),
    }


# ----------------------------------------------------------------- results


def _cod_result(pending: Pending) -> bytes:
    """`{enabled}` once the open orders' new marks are durable."""
    executed = pending.results[0]
    rejected = rejection(executed.events)
    if rejected is not None:  # (a bug: the ids are the connection's open orders, ascending)
        return wire.error(pending.request_id, rejected.reason, rejected.detail)
    enabled = cast(SetCancelOnDisconnect, executed.command).cod
    return wire.ok(pending.request_id, {"enabled": enabled}, pending.t_in, now_us())


def _with_cod_mark(command: Any) -> Any:
    """A place on a connection with cancel-on-disconnect on says so on its order (`cod`): a
    start after a crash, when no connection's cod ran, cancels it. Anything else as it is."""
    if type(command) is PlaceOrder:
        return msgspec.structs.replace(command, cod=True)
    return command


# Read once: a member read from its class is slow (see gateway/market_data.py)
_BUY, _SELL = Side.BUY, Side.SELL
_ORDER_ID = attrgetter("order_id")  # open orders in id order: the same cancels on every gateway
_ONLY_PLACES = frozenset({wire.PlaceOp})  # a batch of places alone: `Dispatcher._batch`
_PARAMS = attrgetter("params")  # a batch op's
# the methods answered per op (`{results}`): one partly done before an outage says so per op
_PER_OP_METHODS = frozenset({"order.batch", "quote.mass"})


def _unstamped() -> int:
    return 0  # the time of commands the core stamps itself


def _submit_each(bus: Bus, commands: Iterable[Command], origin: Pending) -> None:
    """`Sequencer.submit_all` on a bus without it: a `submit` each, in order."""
    submit = bus.submit
    for command in commands:
        submit(command, origin)


def _scope_of(method: str) -> str | None:
    """The scope a method needs beyond logon, if any."""
    if method in TRADE_SCOPE_METHODS:
        return "trade"
    if method in READ_METHODS:
        return "read"
    if method.startswith("admin."):
        return "admin"
    return None


_METHOD_COST_MILLI = {method: limits.cost_milli(method) for method in wire.METHODS}
_MALFORMED_COST_MILLI = limits.cost_milli("?")  # a frame that is no request: as a query
_SCOPE_OF = {method: _scope_of(method) for method in wire.METHODS}  # looked up per request
_OP_COST_MILLI: dict[type, int] = {
    op: limits.BATCH_OP_COST_MILLI[op.__struct_config__.tag]  # type: ignore[index]
    for op in (wire.PlaceOp, wire.CancelOp, wire.AmendOp)
}


# The cost of each method that costs the same whatever its params hold (not a batch or a
# quote.mass, which scale with their size): one look-up for the usual request.
_FIXED_COST_MILLI = {
    method: cost
    for method, cost in _METHOD_COST_MILLI.items()
    if wire.METHODS[method] not in (wire.BatchParams, wire.QuoteMassParams)
}

# A quote.mass's cost by its number of quotes, as many as a decoded one may hold.
_QUOTE_MASS_COST_MILLI = tuple(
    limits.cost_milli("quote.mass", quotes) for quotes in range(wire.QUOTES_MAX + 1)
)


def _cost(request: wire.Request) -> int:
    """What a request costs in milli-tokens: a batch, the sum of its ops by kind."""
    return _FIXED_COST_MILLI.get(request.method) or _sized_cost(request)


def _sized_cost(request: wire.Request) -> int:
    """`_cost` of a request whose method is not of a fixed cost (`_FIXED_COST_MILLI`)."""
    params = request.params
    if type(params) is wire.QuoteMassParams:  # `cost_milli`'s clamp, looked up
        try:  # a decoded one holds at most QUOTES_MAX quotes: always in the table
            return _QUOTE_MASS_COST_MILLI[len(params.quotes)]
        except IndexError:
            return limits.cost_milli(request.method, len(params.quotes))
    if type(params) is wire.BatchParams:
        # A decoded batch holds 1..BATCH_OPS_MAX ops, so `batch_cost_milli` comes to the sum
        # of its ops' costs: summed here by op class, without a string per op.
        return sum(map(_OP_COST_MILLI.__getitem__, map(type, params.ops)))  # all in C
    cost = _METHOD_COST_MILLI.get(request.method)  # one look-up, not `cost_milli`'s clamping
    return limits.cost_milli(request.method) if cost is None else cost


def _unknown_order(
    account: int, order_id: int | None, cl_ord_id: str | None, reason: tuple[ErrorCode, str]
) -> CommandRejected:
    """The refusal of an amend whose order neither is open nor was placed earlier in a batch."""
    code, detail = reason
    return CommandRejected(0, "amend_order", code, detail, account, None, order_id or 0, cl_ord_id)


_CLOSED_EVENTS = frozenset({OrderCanceled, OrderExpired, SelfTradePrevented})
# The events `_outcome` reads; the rest (balances, settlements: most of a fill's) are passed
# over with one set look-up instead of five failed comparisons each.
_OUTCOME_EVENTS = _CLOSED_EVENTS | {OrderAccepted, TradeExecuted, OrderAmended, WithdrawalRequested}


# After an order's acceptance (a place) or amendment (an amend), events that `_plain_outcome`
# does not read: any of them sends the command to `_outcome`'s loop.
_UNPLAIN_EVENTS = _OUTCOME_EVENTS - {TradeExecuted}


def _plain_outcome(executed: Executed) -> "_Placed | _Amended | dict[str, Any]":
    """`_outcome` of the usual place or amend, read without a loop over its events: the first
    event accepts or amends the order, none after it is a second order event, a close or a
    withdrawal, and the last trade (if any) is the order's own as taker. Saves the loop's
    ~8 bytecodes per event (a marketable place has 8 or more: settlement and balances)."""
    events: list[Any] = executed.events
    if events:
        first = events[0]
        kind = type(first)
        # Only a place accepts an order (a cancel-all's answer is a count: it is told apart
        # from an amend alone, not at every place)
        if kind is OrderAccepted or (
            kind is OrderAmended and type(executed.command) is not CancelAll
        ):
            kinds = [*map(type, events)]
            if _UNPLAIN_EVENTS.isdisjoint(kinds[1:]):
                order_id = first.order_id
                if TradeExecuted in kinds:  # the last one says the order's status
                    kinds.reverse()  # in place: `index` finds the last one, without a copy
                    trade = events[~kinds.index(TradeExecuted)]
                    if trade.taker_order_id != order_id:
                        return _outcome(executed)
                    status = trade.taker_status
                else:  # (an `OrderAccepted`'s is a property: read only when it is the answer)
                    status = first.status
                if order_id:
                    if kind is OrderAccepted:
                        return _Placed(executed.seq, first.cl_ord_id, order_id, status)
                    return _Amended(executed.seq, order_id, status)
    return _outcome(executed)


# `_plain_outcome`'s results and an order.batch's entry of one (`_op_entries`): structs, not
# dicts, encode as the dicts `_outcome` makes, their field names encoded once (callgrind:
# -0.5% of a batch of 20's instructions)
class _Placed(msgspec.Struct, gc=False):
    seq: int
    cl_ord_id: str | None
    order_id: int
    status: OrderStatus


class _Amended(msgspec.Struct, gc=False):
    seq: int
    order_id: int
    status: OrderStatus


class _Done(msgspec.Struct, gc=False):
    status: int
    result: _Placed | _Amended | dict[str, Any]


def _outcome(executed: Executed) -> dict[str, Any]:
    """What a command did, for its response: the order's id and status after it."""
    result: dict[str, Any] = {"seq": executed.seq}
    order_id = 0
    status = None
    # One type look-up per event instead of a chain of isinstance calls: most events of a
    # fill (settlements, balances) match none, and event classes are never subclassed.
    events: list[Any] = executed.events
    for event in events:
        kind = type(event)
        if kind not in _OUTCOME_EVENTS:
            continue
        if kind is OrderAccepted:
            order_id, status = event.order_id, event.status
            result["cl_ord_id"] = event.cl_ord_id
        elif kind is TradeExecuted:
            if event.taker_order_id == order_id:
                status = event.taker_status
        elif kind in _CLOSED_EVENTS:
            if not order_id and _closes_own(executed.command, event):
                order_id = event.order_id
            if event.order_id == order_id:
                status = event.status
        elif kind is OrderAmended:
            order_id, status = event.order_id, event.status
        elif kind is WithdrawalRequested:
            result["withdrawal_id"] = event.withdrawal.withdrawal_id
    if order_id:
        result["order_id"] = order_id
    if status is not None:
        result["status"] = status
    if type(executed.command) is CancelAll:  # about many orders: just how many
        return {"seq": executed.seq, "canceled": _own_cancels(executed)}
    return result


def _closes_own(command: Any, event: Any) -> bool:
    """Whether a closing event is the command's own, not a gtd expiry or a maturity that
    came due before it (another account's order, or another order of the same account)."""
    if event.account != getattr(command, "account", None):
        return False
    kind = type(command)
    if kind is CancelOrder or kind is CancelAll:  # its cancels, not a maturity's in it
        named = kind is CancelAll or not command.order_id or event.order_id == command.order_id
        return type(event) is OrderCanceled and event.reason is command.reason and named
    return True


def _own_cancels(executed: Executed) -> int:
    """How many orders the command itself canceled: a maturity that came due in it cancels
    other accounts' orders too, and their number is theirs (not the caller's) to know."""
    command = executed.command
    return sum(type(e) is OrderCanceled and _closes_own(command, e) for e in executed.events)


StatusOf = Callable[[int, int], str | None]  # (account, order id) -> its status, if known


def _trade_answer(status_of: StatusOf | None) -> Callable[[Pending], bytes]:
    """A trading command's answer (`Pending.finish`), its refusal's data naming the status
    `status_of` gives of the order a DUPLICATE_CL_ORD_ID names."""

    def trade_result(pending: Pending) -> bytes:
        executed = pending.results[0]
        events = executed.events  # `rejection`, inline: this runs for every order
        if events and type(events[-1]) is CommandRejected:
            rejected: CommandRejected = events[-1]
            data = _refusal_data(rejected, status_of)
            words = _refusal_words(rejected, data)
            return wire.error(pending.request_id, rejected.reason, words, data)
        t_out = _time_ns() // 1_000  # `now_us`, inline: a call less per answer
        return wire.ok(pending.request_id, _plain_outcome(executed), pending.t_in, t_out)

    return trade_result


# A trading command's answer without the status of a DUPLICATE_CL_ORD_ID's order (an admin
# command's refusal).
_trade_result = _trade_answer(None)


CORPORATE_METHODS = frozenset({"admin.pay_dividend", "admin.split"})


def _admin_result(pending: Pending) -> bytes:
    """An admin command's answer: as a trading command's (`{seq}`, a withdrawal's id), or,
    for one sent again under the `cl_op_id` it was done with, that it was done before."""
    executed = pending.results[0]
    summary = executed.events[-1] if executed.events else None
    if type(summary) is not OperationRepeated:
        return _trade_result(pending)
    result = _repeated(executed.seq, summary)
    if isinstance(summary.outcome, WithdrawalRequested):
        result["withdrawal_id"] = summary.outcome.withdrawal.withdrawal_id
    return wire.ok(pending.request_id, result, pending.t_in, now_us())


def _sweep_result(pending: Pending) -> bytes:
    """A sweep's answer: `{seq, transfer_id}` (the first one's, for one done before)."""
    executed = pending.results[0]
    events = executed.events
    summary = events[-1] if events else None
    if type(summary) is OperationRepeated:
        result = _repeated(executed.seq, summary)
        swept = summary.outcome
    else:
        swept = next((e for e in events if type(e) is VenueAccountSwept), None)
        if swept is None:  # refused: said as every command's refusal
            return _trade_result(pending)
        result = {"seq": executed.seq}
    assert isinstance(swept, VenueAccountSwept), f"a sweep answered by {swept!r}"
    result["transfer_id"] = swept.transfer_id
    return wire.ok(pending.request_id, result, pending.t_in, now_us())


def _repeated(seq: int, repeated: OperationRepeated) -> dict[str, Any]:
    """The fields that say a command was done before: this request's `seq` (its journal
    record changed nothing), and when the first one was done."""
    return {"seq": seq, "repeated": True, "done_at": repeated.done_at_us}


def _corporate_result(scales: Mapping[str, int], pending: Pending) -> bytes:
    """A dividend's or a split's totals, as decimal strings at the assets' scales."""
    executed = pending.results[0]
    rejected = rejection(executed.events)
    if rejected is not None:  # with its numbers (a payer short of cash), as `_trade_result`
        data = wire.rejection_data(rejected)
        return wire.error(pending.request_id, rejected.reason, rejected.detail, data)
    summary: Any = executed.events[-1]
    result: dict[str, Any] = {"seq": executed.seq}
    if type(summary) is OperationRepeated:  # done before: the totals it was done with
        result = _repeated(executed.seq, summary)
        summary = summary.outcome
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
        if summary.cash_asset:  # entered with cash in lieu (none journaled before it was)
            cash = scales[summary.cash_asset]
            result |= {
                "payer": summary.payer or None,
                "cash_asset": summary.cash_asset,
                "cash_in_lieu_provided": format_units(summary.cash_provided, cash),
                "cash_in_lieu_paid": format_units(summary.cash_paid, cash),
                "cash_in_lieu_residual": format_units(summary.cash_residual, cash),
            }
    return wire.ok(pending.request_id, result, pending.t_in, now_us())


def _cancels_unknown(pending: Pending, message: str) -> bytes:
    """The 504 of a quote set's `orders.cancel_all` whose cancels have not all come back:
    its answer is a count, so no per-op entries; `data` says what is known, the orders
    canceled so far (`canceled`) and the orders whose cancel is owed (`unknown_order_ids`:
    they may still be canceled), and `msg` counts them."""
    sent = pending.cancel_order_ids or ()
    back = len(pending.results)
    canceled = sum(map(_own_cancels, pending.results))
    owed = list(sent[back:])
    if back:
        came = f"{back} came back ({canceled} canceled), the others' orders are in"
    else:
        came = "none came back: their orders are in"
    words = f"{message}; of the quote set's {len(sent)} cancels {came} data.unknown_order_ids"
    data = {"canceled": canceled, "unknown_order_ids": owed}
    return wire.error(pending.request_id, E.OUTCOME_UNKNOWN, words, data)


def _canceled_count(pending: Pending) -> bytes:
    canceled = sum(map(_own_cancels, pending.results))
    return wire.ok(pending.request_id, {"canceled": canceled}, pending.t_in, now_us())


# The answer of a plain requote whose two amends both went through (`_requote_result`): the
# bytes `_batch_result` encodes for it, with the id (JSON), the seqs, order ids and statuses,
# and the times filled in.
_REQUOTE_ANSWER = (
    b'{"id":%b,"status":200,"result":{"results":['
    b'{"status":200,"result":{"seq":%d,"order_id":%d,"status":"%b"}},'
    b'{"status":200,"result":{"seq":%d,"order_id":%d,"status":"%b"}}]},"t_in":%d,"t_out":%d}'
)
_STATUS_BYTES = {status: status.encode() for status in OrderStatus}
_encode_json = msgspec.json.Encoder().encode  # `wire.encode` without its call: an id's JSON
assert all(wire.encode(status) == b'"%b"' % text for status, text in _STATUS_BYTES.items())


def _requote_result(pending: Pending) -> bytes:
    """`_batch_result` of a plain requote (`Dispatcher._quote_mass`), one `AmendPair` whose
    events are the bid's amend's then the ask's (`Executed.split`): when both amends only
    amended, the answer is filled into `_REQUOTE_ANSWER` (saves two outcome dicts, two
    result dicts and the loop: ~200 bytecodes); anything else, `_batch_result` of the two
    amends (`pair_sides`). The event kinds are told by one tuple made in C and one set
    look-up (each amend's kinds and the split agree: an amend amends one order)."""
    (executed,) = pending.results
    events: list[Any] = executed.events
    # (the kinds of both amends' that only amended: all that `_REQUOTE_ANSWER` can say)
    if tuple(map(type, events)) in PAIR_AMENDED_ONLY:
        bid_amended, ask_amended = events[0], events[executed.split]
        if bid_amended.order_id and ask_amended.order_id:
            seq = executed.seq
            return _REQUOTE_ANSWER % (
                _encode_json(pending.request_id),
                seq,
                bid_amended.order_id,
                _STATUS_BYTES[bid_amended.status],
                seq,
                ask_amended.order_id,
                _STATUS_BYTES[ask_amended.status],
                pending.t_in,
                _time_ns() // 1_000,  # `now_us`, inline
            )
    pending.results[:] = pair_sides(executed)
    return _batch_result(pending)


# The refusals whose data names the status of the order they name (`_refusal_data`): a
# duplicate cl_ord_id's order, and a closed order a cancel or amend named (the engine keeps
# only whose it was; the account's retained history says how it closed: since session 28).
_STATUS_NAMED = frozenset({ErrorCode.DUPLICATE_CL_ORD_ID, ErrorCode.ORDER_NOT_OPEN})


def _refusal_data(rejected: CommandRejected, status_of: StatusOf | None) -> dict[str, Any] | None:
    """`wire.rejection_data`, and for a duplicate cl_ord_id or a closed order the named
    order's status (of the account's own order only: the engine refuses so for no other)."""
    data = wire.rejection_data(rejected)
    if status_of is not None and data and rejected.reason in _STATUS_NAMED:
        status = status_of(rejected.account, rejected.order_id)
        if status is not None:
            data["status"] = status
    return data


# The field of the params each of these engine refusals is about: the engine says what is
# wrong, the gateway where (`_refusal_words`), so its refusal records stay as they were.
_FIELD_REFUSED = {
    ErrorCode.INVALID_PRICE_TICK: "price",
    ErrorCode.INVALID_QTY_STEP: "qty",
    ErrorCode.UNKNOWN_SYMBOL: "symbol",
}


def _at_top(field: str) -> str:
    """Where a field of a request's own params is: the field (`params.price`)."""
    return field


def _refusal_words(
    rejected: CommandRejected,
    data: dict[str, Any] | None,
    place: Callable[[str], str] = _at_top,
) -> str:
    """The refusal's `msg`: the engine's words, and for a closed order how it closed when
    the data says (`the order is closed: filled`); a refusal of a field (`_FIELD_REFUSED`)
    ends with where it is, `place` of the field, as the gateway's own refusals do (since
    session 30; before, a tick, step or unknown-symbol refusal named no place)."""
    words = rejected.detail
    if rejected.reason is ErrorCode.ORDER_NOT_OPEN and data and "status" in data:
        words = f"{words}: {data['status']}"
    field = _FIELD_REFUSED.get(rejected.reason)
    if field is not None:
        words = wire.at_field(words, place(field))
    return words


def _batch_answer(status_of: StatusOf | None) -> Callable[[Pending], bytes]:
    """An order.batch's or a quote.mass's answer (`Pending.finish`), each refusal's data
    naming the status `status_of` gives of the order a DUPLICATE_CL_ORD_ID names."""

    def batch_result(pending: Pending) -> bytes:
        results, failed = _op_entries(pending.results, status_of, pending)
        body = {
            "id": pending.request_id,
            "status": 409 if failed else 200,
            "result": {"results": results},
            "t_in": pending.t_in,
            "t_out": _time_ns() // 1_000,  # `now_us`, inline
        }
        return wire.encode(body)

    return batch_result


def _op_entries(
    done: list[Executed], status_of: StatusOf | None, pending: Pending, start: int = 0
) -> tuple[list[Any], int]:
    """The entries of a batch's answer for the commands `done` of `pending`, the first its
    `start`th (each its status and its result or error), and how many of them were refused."""
    results: list[Any] = []
    failed = 0
    for executed in done:
        events = executed.events  # `rejection`, inline: this runs for every op of a batch
        if not events or type(events[-1]) is not CommandRejected:
            results.append(_Done(200, _plain_outcome(executed)))
        else:
            rejected: CommandRejected = events[-1]
            failed += 1
            data = _refusal_data(rejected, status_of)
            error = {
                "code": int(rejected.reason),
                "name": rejected.reason.name,
                # its index counted only here: a batch's entries are counted for every op
                "msg": _refusal_words(rejected, data, _op_place(pending, start + len(results))),
            }
            if data is not None:
                error["data"] = data
            results.append({"status": wire.rejection_status(rejected.reason), "error": error})
    return results, failed


# An order.batch's answer without the status of a DUPLICATE_CL_ORD_ID's order (a quote.mass's).
_batch_result = _batch_answer(None)

# A quote's fields of a side's price and qty, which the engine's refusals call `price`, `qty`
_QUOTE_FIELDS = {
    ("bid", "price"): "bid_px",
    ("bid", "qty"): "bid_qty",
    ("ask", "price"): "ask_px",
    ("ask", "qty"): "ask_qty",
}
_PLAIN_REQUOTE_SIDES = ("bid", "ask")  # `Dispatcher._quote_mass`'s two amends, of quotes[0]
_SIDE_NAMES = {Side.BUY: "bid", Side.SELL: "ask"}


def _op_place(pending: Pending, index: int) -> Callable[[str], str]:
    """Where a field of the `index`th command of `pending` is in its params: in an
    order.batch's op (`ops[1].params.qty`), in a quote.mass's quote (`quotes[1].bid_px`:
    the quote and side the command is of), else the params' own (`qty`)."""
    if pending.method == "order.batch":
        return f"ops[{index}].params.{{}}".format
    if pending.method != "quote.mass":
        return _at_top
    quote, side = _quote_side(pending, index)
    return lambda field: f"quotes[{quote}].{_QUOTE_FIELDS.get((side, field), field)}"


def _quote_side(pending: Pending, index: int) -> tuple[int, str]:
    """The quote (its index in the params) and the side the `index`th command of a quote.mass
    `pending` is of: its slot's symbol names the quote, as a quote.mass gives a symbol once."""
    if pending.quote_plan is None:
        return 0, _PLAIN_REQUOTE_SIDES[index]
    _, (_, _, symbol, side) = pending.quote_plan[index]
    quotes = pending.quote_params.quotes
    quote = next(at for at, given in enumerate(quotes) if given.symbol == symbol)
    return quote, _SIDE_NAMES[side]
