"""The live quotes of each `quote.mass` set, and who placed each open order through here.

Owns two small tables kept in step with the released events: each quote set's live quote
per symbol and side (so the next `quote.mass` amends or cancels it instead of placing anew;
over a cluster's bus the quotes placed through other gateways too, the set being the
account's, and the earlier of two places that crossed, `extra_quotes`), and the session
whose close cancels each open order (the one that placed it, or that requoted it since:
`take_cod`). Both forget an order as soon as it closes; neither is in snapshots. A quote's
set travels with its order (`PlaceOrder.quote_set`, journaled), so after a restart the
quotes are found again among the recovered open orders (`adopt_quotes`); the sessions are
not (a restart drops every connection): the orders carry a mark instead (`PlaceOrder.cod`,
and `SetCancelOnDisconnect`), by which a start after a crash cancels them (`gateway.server`).
"""

from collections import deque
from collections.abc import Collection, Iterable
from itertools import chain, compress
from operator import attrgetter
from typing import Any

from core.bus import ReadSide
from core.sequencer import Executed, pair_sides
from engine.commands import AmendOrder, AmendPair, CancelOrder, Command, PlaceOrder
from engine.enums import SelfTradePrevention, Side
from engine.events import (
    CommandRejected,
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    SelfTradePrevented,
    TradeExecuted,
)
from gateway.sessions import Session

# Events that close their order, looked up by exact type: this runs on every event of every
# released command, most of which (settlements, balances) close nothing, and one set look-up
# answers for them where a chain of isinstance calls made four. Event classes are final.
_CLOSING = frozenset({OrderCanceled, OrderExpired, SelfTradePrevented})
_CLOSING_OR_CHANGING = _CLOSING | {TradeExecuted, OrderAmended}  # one look-up for the others
_IS_CLOSING_OR_CHANGING = _CLOSING_OR_CHANGING.__contains__
_EVENTS_OF = attrgetter("events")  # an executed command's (a barrier's: none or a refusal)
QuoteSlot = tuple[int, str, str, Side]  # account, quote set, symbol, side: one live quote
_OWED_KINDS = frozenset({AmendOrder, CancelOrder})  # commands of a live quote sent from here
# Enum members read once, here: a member read from its class (`Side.BUY`) takes the slow
# attribute lookup EnumType gets for defining `__getattr__`, which CPython 3.11 cannot
# specialise (~920 instructions a read, callgrind); a module global is a cached load.
_BUY, _SELL = Side.BUY, Side.SELL


class OwnMark:
    """The origin of a `SetCancelOnDisconnect` the gateway sends of itself (a re-mark, a
    quote's cod taken by the connection that requotes it), told apart when it comes back
    from another gateway's, whose origin here is None (`VenueServer.executed`). One per
    mark, never shared: an origin names one request, and two marks sharing one would be
    taken for one request's commands (kept in one batch past its bound, `_batch_end`; told
    overdue once, `NatsBus.settle_overdue`)."""

    __slots__ = ()


class PlacedOrders:
    """The live quotes and the placing session of each open order placed here."""

    def __init__(self, reads: ReadSide, replica_lags: bool = False) -> None:
        self.reads = reads
        self.quotes: dict[QuoteSlot, int] = {}  # each live quote's order id
        self.quote_slots: dict[int, QuoteSlot] = {}  # and back: forgotten when it closes
        self.placed_on: dict[int, Session] = {}  # open order id -> the session that placed it
        # This gateway's marks with cod on (`mark_sent`) not yet back from the stream, per
        # order: another gateway's mark coming back meanwhile was sequenced before ours, so
        # ours wins on the cores too and the order stays with our session (`marked_elsewhere`).
        self.own_marks: dict[int, int] = {}
        # Over a cluster's bus the replica (`reads`) learns of the amends sent from here a hop
        # later, and a market maker requotes without waiting: each quote's last amend sent is
        # what the next requote builds on until its outcome comes back (`sent`,
        # `_outcomes_back`). Decided on the replica, a requote back to the price the replica
        # still shows was skipped as "quoted so already", and one to the price already sent
        # was refused at the core as changing nothing (`AMEND_REJECTED`). Embedded, every
        # command has run when `submit` returns: nothing is ever in flight.
        self.replica_lags = replica_lags
        # order id -> [its last amend or cancel sent (None once an amend owed was refused:
        # where the core has it is unknown until all are back), the origins whose outcome
        # is owed]. A quote whose cancel is owed is gone as far as requotes are concerned.
        self.in_flight: dict[int, list[Any]] = {}
        # Over a cluster's bus, the slots whose place is in flight, each with when it was sent
        # (monotonic seconds): its order id is known only once it is back, so a requote of the
        # slot can neither amend it nor place a second quote beside it (which would stay on
        # the book). Such a request waits for it (`placing_since`; the dispatcher holds its
        # connection's requests meanwhile), for a bounded time (`limits.QUOTE_PLACE_WAIT_S`):
        # the slot itself stays marked until the outcome is back, however long that takes.
        self.placing: dict[QuoteSlot, float] = {}
        # The slots that hold more than one live quote: their earlier quotes, oldest first.
        # Over a cluster's bus two places of one slot can cross (sent through two gateways at
        # once, or a resend landing after the other gateway's place): the later is the live
        # quote, and none of the others is left unreachable: the slot's next requote cancels
        # them (`extra_cancels`), and if the live quote closes first the latest open one
        # takes its place (`forget_quote`). Empty but after such a race.
        self.extra_quotes: dict[QuoteSlot, list[int]] = {}

    def requote(self, slot: QuoteSlot, price: int, qty: int, ts_us: int = 0) -> Command | None:
        """The command that makes the slot's live quote `qty` at `price` (0: pulled), at
        `ts_us` (0: for the sequencer to stamp)."""
        account, quote_set, symbol, side = slot
        order = self.reads.orders.get(self.quotes.get(slot, 0))
        owed = None
        if order is not None and self.in_flight:
            owed = self.in_flight.get(order.order_id)
            if owed is not None and type(owed[0]) is CancelOrder:
                order = None  # pulled, its cancel owed: the core has it no more, or soon not
        if order is None or order.account != account:
            if not qty:
                return None
            return PlaceOrder(
                ts_us=ts_us,
                account=account,
                symbol=symbol,
                side=side,
                price=price,
                qty=qty,
                post_only=True,
                stp=SelfTradePrevention.EXPIRE_MAKER,
                quote_set=quote_set,  # on the order: found again after a restart
                cod=True,  # quote.mass requires cod: canceled at a start after a crash
            )
        if not qty:
            return CancelOrder(ts_us=ts_us, account=account, order_id=order.order_id)
        if owed is not None:  # where the core will have it, not yet the replica
            sent = owed[0]
            if sent is not None and sent.price == price and sent.qty - order.cum_qty == qty:
                return None  # (unknown, after a refusal: amended, never skipped unsaid)
        elif order.price == price and order.leaves_qty == qty:
            return None  # already quoted exactly so: keep its place in the queue
        # Quotes are sizes on display: the amended total is what traded plus the new size.
        return AmendOrder(
            ts_us=ts_us,
            account=account,
            order_id=order.order_id,
            price=price,
            qty=order.cum_qty + qty,
        )

    def adopt_quotes(self) -> None:
        """After a recovery: the live quotes are the open orders that carry a quote set. In
        order id order, so that if a slot holds two (pipelined over a cluster's bus), the
        later one is its live quote, as `track_quote` made it before the restart. Built
        afresh: a cluster gateway's replica, catching up, tracked the quotes placed through
        other gateways (`VenueServer._adopt_quote`) without the closes that came after."""
        self.quotes.clear()
        self.quote_slots.clear()
        self.extra_quotes.clear()
        orders = self.reads.orders
        for order_id in sorted(orders):
            order = orders[order_id]
            if order.quote_set is not None:
                slot = (order.account, order.quote_set, order.symbol, order.side)
                earlier = self.quotes.get(slot)
                if earlier is not None:
                    self.extra_quotes.setdefault(slot, []).append(earlier)
                self.quotes[slot] = order_id
                self.quote_slots[order_id] = slot

    def extra_cancels(self, slot: QuoteSlot, ts_us: int) -> list[CancelOrder]:
        """The cancels of the slot's earlier live quotes (`extra_quotes`), but those whose
        cancel is on its way already: a requote of the slot leaves it one quote."""
        extras = self.extra_quotes.get(slot)
        if not extras:
            return []
        orders, account = self.reads.orders, slot[0]
        return [
            CancelOrder(ts_us=ts_us, account=account, order_id=order_id)
            for order_id in extras
            if order_id in orders and not self.canceling(order_id)
        ]

    def amends(
        self,
        account: int,
        quote_set: str,
        symbol: str,
        units: tuple[int, int, int, int],
        ts_us: int,
    ) -> AmendPair | None:
        """`requote` of both sides of the usual requote (`units`: bid price and size, ask
        price and size), when both live quotes move: the bid's amend and the ask's, as
        `requote` makes them, in one command (`AmendPair`), without a slot tuple and a call
        per side. None for anything else (a side to place, pull or leave as it is):
        `requote` it side by side."""
        bid_px, bid_qty, ask_px, ask_qty = units
        if not bid_qty or not ask_qty:
            return None
        if self.extra_quotes and any(
            (account, quote_set, symbol, side) in self.extra_quotes for side in (_BUY, _SELL)
        ):
            return None  # a side holds more than one quote: `requote` and `extra_cancels`
        orders, quotes = self.reads.orders, self.quotes
        bid = orders.get(quotes.get((account, quote_set, symbol, _BUY), 0))
        ask = orders.get(quotes.get((account, quote_set, symbol, _SELL), 0))
        if bid is None or ask is None or bid.account != account or ask.account != account:
            return None
        if self.in_flight and (bid.order_id in self.in_flight or ask.order_id in self.in_flight):
            return None  # decided on what was sent from here: `requote`, side by side
        if (bid.price == bid_px and bid.leaves_qty == bid_qty) or (
            ask.price == ask_px and ask.leaves_qty == ask_qty
        ):
            return None  # a side quoted exactly so already keeps its place: no amend for it
        return AmendPair(
            ts_us=ts_us,
            account=account,
            bid_order_id=bid.order_id,
            bid_price=bid_px,
            bid_qty=bid.cum_qty + bid_qty,
            ask_order_id=ask.order_id,
            ask_price=ask_px,
            ask_qty=ask.cum_qty + ask_qty,
        )

    def sent(self, commands: Iterable[Command], origin: Any, now_s: float) -> None:
        """Commands were submitted for `origin` (the request) at `now_s` (monotonic): over a
        cluster's bus, each amend or cancel is its order's last sent, and its outcome is
        owed, until it comes back (`_outcomes_back`); a quote's place holds its slot until it
        is back (`place_back`). Embedded, nothing to remember."""
        if not self.replica_lags:
            return
        in_flight = self.in_flight
        command: Any
        for command in _amends_of(commands):
            kind = type(command)
            if kind in _OWED_KINDS:
                owed = in_flight.get(command.order_id)
                if owed is None:
                    in_flight[command.order_id] = [command, deque((origin,))]
                    continue
                if type(owed[0]) is not CancelOrder:  # a cancel sent is final
                    owed[0] = command
                owed[1].append(origin)
            elif kind is PlaceOrder and command.quote_set is not None:
                slot = (command.account, command.quote_set, command.symbol, command.side)
                self.placing.setdefault(slot, now_s)

    def place_back(self, slot: QuoteSlot) -> None:
        """The outcome of the place in flight on `slot` is in the replica: the slot is free."""
        self.placing.pop(slot, None)

    def blocked(self, account: int, quote_set: str, symbols: Collection[str] | None) -> bool:
        """Whether a place is in flight on a slot of the quote set's `symbols` (None: any)."""
        return self.placing_since(account, quote_set, symbols) is not None

    def placing_since(
        self, account: int, quote_set: str, symbols: Collection[str] | None
    ) -> float | None:
        """When the oldest place in flight on a slot of the quote set's `symbols` (None: any)
        was sent (monotonic seconds); None when none is."""
        return min(
            (
                sent_s
                for slot, sent_s in self.placing.items()
                if slot[0] == account
                and slot[1] == quote_set
                and (symbols is None or slot[2] in symbols)
            ),
            default=None,
        )

    def canceling(self, order_id: int) -> bool:
        """Whether a cancel of the order was sent from here and is not back yet."""
        owed = self.in_flight.get(order_id) if self.in_flight else None
        return owed is not None and type(owed[0]) is CancelOrder

    def _outcomes_back(self, batch: list[Executed]) -> None:
        """A released batch holds outcomes of amends sent from here (told by their origin,
        the request's: another gateway's amends, or an amend sent here some other way, are
        not counted). Once every amend sent for an order is back, the replica shows what
        they did (amended, or refused and left as it was): the next requote builds on it.
        One refused meanwhile leaves the core's price unknown until then: the next requotes
        amend rather than trust the last amend sent (a refusal is answered; a skip is not)."""
        in_flight = self.in_flight
        for executed in _sides_of(batch):
            command: Any = executed.command
            if type(command) in _OWED_KINDS:
                owed = in_flight.get(command.order_id)
                if owed is not None and executed.origin in owed[1]:
                    owed[1].remove(executed.origin)
                    if not owed[1]:
                        del in_flight[command.order_id]
                    elif type(owed[0]) is not CancelOrder and any(
                        type(event) is CommandRejected for event in executed.events
                    ):
                        owed[0] = None

    def track_amends(self, bid_order_id: int, ask_order_id: int) -> None:
        """`track_quote` after the two amends of the usual requote (`amends`), once both ran
        (an amend accepts no order; a post-only quote's amend never trades, so neither
        closes the other side): each quote is forgotten if its amend closed it (filled, or
        refused and pulled). One call and one look-up of the open orders for the two."""
        orders = self.reads.orders
        if bid_order_id not in orders:
            self.forget_quote(bid_order_id)
        if ask_order_id not in orders:
            self.forget_quote(ask_order_id)

    def forget_closed(self, batch: list[Executed]) -> None:
        """Orders that closed in a released batch no longer need cancel-on-disconnect.

        Once per batch, not per command: the events of all its commands are gathered in C,
        so a command that closes nothing here (a requote's amend, most of them) costs no
        call and no look at its events in Python."""
        if self.in_flight:  # over a cluster's bus, amends sent from here whose outcome is due
            self._outcomes_back(batch)
        placed_on, quote_slots = self.placed_on, self.quote_slots
        if not placed_on and not quote_slots:
            return  # nothing placed here is open: nothing to forget
        events = [*chain.from_iterable(map(_EVENTS_OF, batch))]
        # Only the events that may close an order, picked in C (`compress`): the balances and
        # settlements, most events of a fill, are never looked at here (~8 bytecodes each).
        checked: Iterable[Any] = compress(events, map(_IS_CLOSING_OR_CHANGING, map(type, events)))
        for event in checked:
            kind = type(event)
            if kind is TradeExecuted:
                # an order placed elsewhere (an IOC taker, another gateway's) is not looked up
                order_id = event.maker_order_id
                if not event.maker_leaves_qty and (
                    order_id in placed_on or order_id in quote_slots
                ):
                    self.forget_order(order_id)
                order_id = event.taker_order_id
                if not event.taker_leaves_qty and (
                    order_id in placed_on or order_id in quote_slots
                ):
                    self.forget_order(order_id)
            elif kind is OrderAmended:
                if not event.leaves_qty:
                    self.forget_order(event.order_id)
            else:  # a close (`compress` let nothing else through)
                self.forget_order(event.order_id)

    def track_placed(self, session: Session, events: list[Event]) -> None:
        """Orders placed on a connection are known at once to its cancel-on-disconnect: the
        one a `PlaceOrder` accepted (`events` are a place's: only a place accepts an order),
        unless it is closed already (an IOC filled or expired at once has nothing to cancel,
        and would be tracked only to be forgotten at release)."""
        for event in events:
            if type(event) is OrderAccepted:
                order_id = event.order_id
                if order_id in self.reads.orders:
                    session.placed.add(order_id)
                    self.placed_on[order_id] = session
                return

    def take_cod(self, session: Session, order_ids: Iterable[int]) -> tuple[int, ...]:
        """A connection with cod on requotes quotes another connection placed (here, or
        through another gateway): their cancel-on-disconnect moves to it, so the other's
        close no longer cancels them and its own does. The ids moved, ascending: the caller
        marks them as this gateway's (`SetCancelOnDisconnect`, an `OwnMark`)."""
        orders, placed_on = self.reads.orders, self.placed_on
        moved = []
        for order_id in order_ids:
            if order_id in session.placed or order_id not in orders:
                continue
            earlier = placed_on.get(order_id)
            if earlier is not None:
                earlier.placed.discard(order_id)
            placed_on[order_id] = session
            session.placed.add(order_id)
            moved.append(order_id)
        return tuple(sorted(moved))

    def mark_sent(self, order_ids: Iterable[int]) -> None:
        """A mark with cod on of these orders (`SetCancelOnDisconnect`) is on its way from
        here: called before its `submit` (embedded, it comes back within the call)."""
        own_marks = self.own_marks
        for order_id in order_ids:
            own_marks[order_id] = own_marks.get(order_id, 0) + 1

    def mark_back(self, order_ids: Iterable[int]) -> None:
        """A mark `mark_sent` counted came back from the stream (executed or refused)."""
        own_marks = self.own_marks
        for order_id in order_ids:
            left = own_marks.pop(order_id, 0) - 1
            if left > 0:
                own_marks[order_id] = left

    def marked_elsewhere(self, order_ids: Iterable[int]) -> None:
        """Another gateway's connection took these orders' cancel-on-disconnect (`take_cod`
        there): this gateway's sessions no longer cancel them when they close. Not an order
        this gateway has a mark of on its way (`own_marks`): that mark is sequenced after
        this one, so the cores give the order back to this gateway, whose session keeps it
        (dropped here, no close would cancel it: the core refuses the other's cancel)."""
        own_marks = self.own_marks
        for order_id in order_ids:
            if order_id in own_marks:
                continue
            session = self.placed_on.pop(order_id, None)
            if session is not None:
                session.placed.discard(order_id)

    def forget_session(self, session: Session) -> None:
        """The session is gone: its orders have nobody left to cancel them on disconnect."""
        for order_id in session.placed:
            self.placed_on.pop(order_id, None)

    def track_quote(self, slot: QuoteSlot, events: list[Event]) -> None:
        """The quote a place on `slot` accepted is its live quote; one still open there
        before it is kept among the slot's `extra_quotes` (a race of two places)."""
        for event in events:
            if type(event) is OrderAccepted:
                accepted, earlier = event.order_id, self.quotes.get(slot)
                if earlier is not None and earlier != accepted and earlier in self.reads.orders:
                    self.extra_quotes.setdefault(slot, []).append(earlier)
                self.quotes[slot] = accepted
                self.quote_slots[accepted] = slot
        order_id = self.quotes.get(slot)
        if order_id is not None and order_id not in self.reads.orders:
            self.forget_quote(order_id)  # pulled, filled or refused: no live quote

    def forget_quote(self, order_id: int) -> None:
        if self.in_flight:
            self.in_flight.pop(order_id, None)  # closed: no outcome of it is owed any more
        slot = self.quote_slots.pop(order_id, None)
        if slot is None:
            return
        if self.quotes.get(slot) == order_id:
            del self.quotes[slot]
            if self.extra_quotes:
                self._promote_extra(slot)
        elif self.extra_quotes:
            extras = self.extra_quotes.get(slot)
            if extras is not None and order_id in extras:
                extras.remove(order_id)
                if not extras:
                    del self.extra_quotes[slot]

    def _promote_extra(self, slot: QuoteSlot) -> None:
        """The slot's live quote closed: its latest earlier quote still open, if any, is the
        live quote now (so the next requote amends it rather than place one beside it)."""
        extras = self.extra_quotes.get(slot)
        orders = self.reads.orders
        while extras:
            order_id = extras.pop()
            if order_id in orders:
                self.quotes[slot] = order_id
                break
        if not extras:
            self.extra_quotes.pop(slot, None)

    def forget_order(self, order_id: int) -> None:
        self.forget_quote(order_id)
        if self.own_marks:
            self.own_marks.pop(order_id, None)  # closed: a mark still on its way changes nothing
        session = self.placed_on.pop(order_id, None)
        if session is not None:
            session.placed.discard(order_id)


def _amends_of(commands: Iterable[Command]) -> Iterable[Command]:
    """The commands, an `AmendPair` as its two amends (each owed on its own order)."""
    for command in commands:
        if type(command) is AmendPair:
            yield from command.sides()
        else:
            yield command


def _sides_of(batch: list[Executed]) -> Iterable[Executed]:
    """The batch's outcomes, an `AmendPair`'s as its two amends' (`pair_sides`)."""
    for executed in batch:
        if type(executed.command) is AmendPair:
            yield from pair_sides(executed)
        else:
            yield executed
