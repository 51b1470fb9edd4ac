"""Queries and subscriptions: the requests that read state and submit no command.

Owns the handlers of `orders.open`, `order.status`, `orders.history`, `fills`,
`balances`, `instruments`, `book.snapshot`, `reserves`, `subscribe`, `unsubscribe`,
`subscriptions` and the operator's `admin.withdrawals`. State comes from the read side and
the streams; answers that may show state go behind the commands before them (the
dispatcher's `_defer`), so no answer shows what is not yet durable. Called through the
dispatcher's method table.
"""

from functools import partial
from typing import TYPE_CHECKING, Any

import msgspec

from core.venue_core import now_us
from engine.instrument import unknown_symbol
from engine.reasons import ErrorCode
from engine.units import format_units
from gateway import limits, wire
from gateway.auth import require_scope
from gateway.market_data import Channel, Stream
from gateway.private_streams import balance_rows, order_view
from gateway.public_streams import tier
from gateway.sessions import Session
from gateway.sessions import key_of as _key

if TYPE_CHECKING:
    from gateway.dispatch import Dispatcher

E = ErrorCode


class ReserveLine(msgspec.Struct, frozen=True):
    """One asset: its supply against the custodian's latest attestation."""

    asset: str
    supply: str
    attested: str
    as_of: int  # µs of the attestation; 0: none
    covered: bool


class ReservesResult(msgspec.Struct, frozen=True):
    """The answer of `reserves` (and `GET /api/v1/reserves`)."""

    reserves: list[ReserveLine]


class WithdrawalLine(msgspec.Struct, frozen=True):
    """One pending withdrawal, as the operator confirms or voids it."""

    withdrawal_id: int
    account: int
    asset: str
    amount: str  # at the asset's scale (after a split, the rescaled amount)
    requested_at: int | None  # µs; None: requested before the venue kept it (session 26)


class WithdrawalsResult(msgspec.Struct, frozen=True):
    """The answer of `admin.withdrawals`: one page, and the cursor of the next (None: the
    last page)."""

    withdrawals: list[WithdrawalLine]
    next_after_withdrawal_id: int | None


class Queries:
    """The read requests' handlers, answering through the dispatcher."""

    def __init__(self, dispatcher: "Dispatcher") -> None:
        self.reads = dispatcher.reads
        self.private_streams = dispatcher.private_streams
        self.public = dispatcher.public
        self.bus = dispatcher.bus
        self.specs = dispatcher.specs  # by symbol, shared: learned as instruments list
        # the dispatcher's ways to answer, in request order
        self._reply = dispatcher._reply
        self._reply_error = dispatcher._reply_error
        self._defer = dispatcher._defer
        self._defer_error = dispatcher._defer_error

    # queries (answered behind the commands before them)

    def _open_orders(self, session: Session, request: wire.Request, t_in: int) -> None:
        symbol = request.params.symbol  # type: ignore[attr-defined]
        if symbol is not None and symbol not in self.reads.markets:  # as `orders.history`
            words = wire.at_field(unknown_symbol(symbol, self.reads.markets), "symbol")
            self._defer_error(session, request, E.UNKNOWN_SYMBOL, words)
            return
        orders = [
            order_view(self.reads, o)
            for o in self.reads.open_orders(_key(session).account)
            if symbol is None or o.symbol == symbol
        ]
        self._defer(session, request, t_in, {"orders": orders})

    def _order_status(self, session: Session, request: wire.Request, t_in: int) -> None:
        """An open order, else a closed one from the account's retained history."""
        p: Any = request.params
        account = _key(session).account
        history = self.private_streams.order_history
        order = self.reads.find_order(account, p.order_id or 0, p.cl_ord_id)
        if order is not None:
            spec = self.reads.markets[order.symbol].spec
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
        if p.symbol is not None and p.symbol not in self.reads.markets:
            words = wire.at_field(unknown_symbol(p.symbol, self.reads.markets), "symbol")
            self._defer_error(session, request, E.UNKNOWN_SYMBOL, words)
            return
        account = _key(session).account
        orders, cursor = self.private_streams.order_history.page(
            account,
            self.reads.open_orders(account),
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
        account = _key(session).account
        fills = self.private_streams.fills(
            account, p.since_seq or 0, p.limit, p.before_seq, p.newest_first
        )
        self._defer(session, request, t_in, {"fills": fills})

    def _balances(self, session: Session, request: wire.Request, t_in: int) -> None:
        account = _key(session).account
        self._defer(session, request, t_in, {"balances": balance_rows(self.reads, account)})

    def _instruments(self, session: Session, request: wire.Request, t_in: int) -> None:
        rows = [self.public.instrument_view(symbol) for symbol in sorted(self.reads.markets)]
        self._defer(session, request, t_in, {"instruments": rows})

    def _reserves(self, session: Session, request: wire.Request, t_in: int) -> None:
        """Proof of reserves: each asset's supply against its latest attestation."""
        ledger = self.reads.ledger
        lines = []
        for line in ledger.reserves_report():
            scale = ledger.assets[line.asset].scale
            supply, attested = format_units(line.supply, scale), format_units(line.attested, scale)
            lines.append(ReserveLine(line.asset, supply, attested, line.as_of_us, line.covered))
        self._defer(session, request, t_in, ReservesResult(lines))  # the ledger runs ahead

    def _withdrawals(self, session: Session, request: wire.Request, t_in: int) -> None:
        """The pending withdrawals (of one account, if given), oldest first, a page at a
        time: the operator's (admin scope), for it to confirm or void the right one."""
        p: Any = request.params
        if p.account is not None and not self.reads.is_participant(p.account):
            self._defer_error(session, request, E.UNKNOWN_ACCOUNT, f"no account {p.account}")
            return
        ledger = self.reads.ledger
        after = p.after_withdrawal_id or 0
        lines: list[WithdrawalLine] = []
        cursor = None
        for withdrawal_id in sorted(ledger.withdrawals):  # in id order already: a pass
            withdrawal = ledger.withdrawals[withdrawal_id]
            if withdrawal_id <= after or p.account not in (None, withdrawal.account):
                continue
            if len(lines) == p.limit:  # one more there: the page is not the last
                cursor = lines[-1].withdrawal_id
                break
            amount = format_units(withdrawal.amount, ledger.assets[withdrawal.asset].scale)
            requested_at = withdrawal.requested_at_us or None
            line = WithdrawalLine(
                withdrawal_id, withdrawal.account, withdrawal.asset, amount, requested_at
            )
            lines.append(line)
        self._defer(session, request, t_in, WithdrawalsResult(lines, cursor))

    def _book_snapshot(self, session: Session, request: wire.Request, t_in: int) -> None:
        """Answered behind the commands before it, with the book as of then (the market data
        holds them once they are durable)."""
        from gateway.dispatch import Pending  # (the dispatcher imports this module)

        p: Any = request.params
        stream = Stream(Channel.BOOK, p.symbol, tier(p.depth))
        pending = Pending(session, request.id, request.method, t_in)
        pending.finish = partial(self._book_snapshot_answer, stream)
        self.bus.barrier(pending)

    def _book_snapshot_answer(self, stream: Stream, pending: Any) -> bytes:
        market_data = self.public.current()
        problem = market_data.problem(stream, "params.symbol")
        if problem is not None:
            return wire.error(pending.request_id, E.UNKNOWN_SYMBOL, problem)
        message = msgspec.json.decode(market_data.snapshot(stream, pending.t_in).payload)
        result = message["data"] | {"seq": message["seq"]}
        return wire.ok(pending.request_id, result, pending.t_in, now_us())

    # subscriptions

    def _subscribe(self, session: Session, request: wire.Request, t_in: int) -> None:
        p: Any = request.params
        if p.ch == "account":
            self._subscribe_account(session, request, t_in, p.since_seq)
            return
        # a symbol named twice is one stream: one name in the answer, one snapshot
        symbols = sorted(self.reads.markets) if p.symbols is None else dict.fromkeys(p.symbols)
        streams = [
            Stream(Channel(p.ch), s, tier(p.depth) if p.ch == "book" else 0, p.interval or "")
            for s in symbols
        ]
        for stream in streams:
            problem = self.public.market_data.problem(stream, _symbol_at(p.symbols, stream))
            if problem is not None:
                self._reply_error(session, request, E.UNKNOWN_SYMBOL, problem)
                return
        if len(session.streams | set(streams)) > limits.SUBSCRIPTIONS_PER_CONNECTION_MAX:
            self._reply_error(session, request, E.TOO_MANY_SUBSCRIPTIONS, "too many")
            return
        self._reply(session, request, {"subscribed": [s.name for s in streams]}, t_in)
        self.public.follow(session, streams, t_in)

    def _subscribe_account(
        self, session: Session, request: wire.Request, t_in: int, since_seq: int | None
    ) -> None:
        """Replay from since_seq, or a snapshot, then live: taken now, sent when durable."""
        if session.key is None:  # /ws/public cannot log on: it is told where to (§2.1)
            where = "log on first" if session.trade else "log on at /ws/trade for this channel"
            self._reply_error(session, request, E.NOT_AUTHENTICATED, where)
            return
        require_scope(session.key, "read")
        account = session.key.account
        seq, subscription = self.private_streams.subscription(session, account, since_seq)
        # followed from now on (an `unsubscribe` before it joins, once durable, undoes it)
        session.account_stream = True
        self._reply(session, request, {"subscribed": ["account"], "seq": seq}, t_in)
        self.bus.barrier(subscription)

    def _unsubscribe(self, session: Session, request: wire.Request, t_in: int) -> None:
        p: Any = request.params
        removed = []
        if p.ch == "account" and session.account_stream:  # (not followed: nothing removed)
            session.account_stream = False
            self.private_streams.leave(session)
            removed.append("account")
        depth = tier(p.depth) if p.ch == "book" and p.depth is not None else 0  # 0: every tier
        # sorted by name, as `subscriptions` lists them: the set's own order is the process's
        for stream in sorted(session.streams, key=lambda stream: stream.name):
            if (
                stream.channel.value == p.ch
                and (p.symbols is None or stream.symbol in p.symbols)
                and (not depth or stream.depth == depth)
                and (p.interval is None or stream.interval == p.interval)
            ):
                self.public.unfollow(session, stream)
                removed.append(stream.name)
        self._reply(session, request, {"unsubscribed": removed}, t_in)

    def _subscriptions(self, session: Session, request: wire.Request, t_in: int) -> None:
        names = sorted(s.name for s in session.streams)
        names += ["account"] if session.account_stream else []
        self._reply(session, request, {"subscriptions": names}, t_in)


def _symbol_at(symbols: tuple[str, ...] | None, stream: Stream) -> str | None:
    """Where `stream`'s symbol is in a subscribe's `symbols` (its first naming: a symbol
    named twice is one stream), as a refusal of it says: `params.symbols[1]`."""
    if symbols is None:
        return None  # every symbol listed: none unknown
    return f"params.symbols[{symbols.index(stream.symbol)}]"
