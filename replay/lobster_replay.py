"""The LOBSTER replay: one ticker's order flow through a `Venue`, checked row by row.

Owns the mapping of messages onto engine commands (type 1 a post-only limit order, 2 an
amend down, 3 a cancel, a run of 4s one IOC order, 7 a status), the synthetic orders that
stand for what the files never show, and the two checks: each row's top N levels against
our book, and each execution's filled order ids against the file's, where the queue is known.
Sans-I/O: it takes parsed messages and rows; reading and timing belong to `replay.lobster`.

Invariants: a price range the previous row showed changes only by replaying messages, so
each comparison there is a real check; the replay places orders of its own only to stand for
unseen ones (SYNTHETIC_ACCOUNT); every open order whose queue position may be wrong is in
`_uncertain`; the band never refuses a price of the file. Limits: RUN_MESSAGES_MAX messages
in one merged execution run, REFUSED_IDS_MAX refused orders remembered.
"""

from dataclasses import dataclass, field
from itertools import islice

from engine.book import BookSide, Level, Order, OrderBook
from engine.commands import (
    AmendOrder,
    CancelOrder,
    Command,
    ListInstrument,
    PlaceOrder,
    SetInstrumentStatus,
    SetReferencePrice,
)
from engine.enums import (
    InstrumentKind,
    InstrumentStatus,
    OrderStatus,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from engine.events import (
    CommandRejected,
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    TradeExecuted,
)
from engine.instrument import BAND_BPS_MAX, InstrumentSpec
from engine.market import Market
from engine.reasons import ErrorCode
from engine.venue import Venue, VenueConfig
from replay.lobster_format import (
    ASK_EMPTY_PRICE,
    BID_EMPTY_PRICE,
    BookRow,
    Message,
    MessageType,
)

SYNTHETIC_ACCOUNT = 1  # stands for orders the files never show: before the start, or unseen
FILE_ACCOUNT = 2  # every order a type 1 message submits
TAKER_ACCOUNT = 3  # the aggressor of each execution run
# A sweep rarely fills more than a few hundred orders; the bound keeps a damaged file with
# one timestamp throughout from being held in memory as a single run.
RUN_MESSAGES_MAX = 100_000
# Orders that leave the visible levels are never canceled by a level-N file; they wait in
# the book until their price is visible again. A busy day adds a few million orders.
OPEN_ORDERS_MAX = 10_000_000
# Orders the engine refused, whose later messages are skipped: a halt or a quoting period
# refuses what is sent during it, thousands on a busy day. Past the limit the oldest is
# forgotten (counted), and a message about it is then taken off the level's unknowns.
REFUSED_IDS_MAX = 1_000_000
CLOSED_ORDERS_RETAINED = 1_024  # the replay never asks about closed orders
DEFAULT_REFERENCE_PRICE = 1_000_000  # $100.0000, for a file that starts with no prices at all
ALL = 2**63  # a limit key past every level: the row shows the whole side
NOTHING = -(2**63)  # a limit key before every level: nothing of the side is known
HALT_STATUSES = {
    -1: InstrumentStatus.HALTED,  # no new orders; cancels go on
    0: InstrumentStatus.POST_ONLY,  # quoting resumes: orders rest, nothing trades
    1: InstrumentStatus.OPEN,
}
ADJUSTABLE_STATUSES = (InstrumentStatus.OPEN, InstrumentStatus.POST_ONLY)  # orders may rest
ASK_EMPTY_LEVEL = (ASK_EMPTY_PRICE, 0)
BID_EMPTY_LEVEL = (BID_EMPTY_PRICE, 0)
BUY = Side.BUY
SELL = Side.SELL
SUBMISSION = MessageType.SUBMISSION
EXECUTION = MessageType.EXECUTION
RUN_KINDS = (MessageType.EXECUTION, MessageType.HIDDEN_EXECUTION)
FILLED = OrderStatus.FILLED

VENUE_CONFIG = VenueConfig(
    open_orders_per_account_max=OPEN_ORDERS_MAX,
    closed_orders_retained_max=CLOSED_ORDERS_RETAINED,
)


def lobster_spec(symbol: str, reference_price: int) -> InstrumentSpec:
    """A Nasdaq stock as LOBSTER prices it: $0.0001 ticks, whole shares, nothing refused.

    The band is the widest the engine allows (`LobsterReplay` also moves the reference to
    any price it would refuse), and there is no minimum notional, so real orders are not
    rejected for being far from the last trade or small.
    """
    return InstrumentSpec(
        symbol=symbol,
        kind=InstrumentKind.EQUITY,
        base=symbol,
        quote="USD",
        price_decimals=4,
        price_tick=1,
        qty_decimals=0,
        qty_step=1,
        min_qty=1,
        quote_decimals=4,
        min_notional=0,
        price_band_bps=BAND_BPS_MAX,
        reference_price=reference_price,
    )


@dataclass
class ReplayCounts:
    """What the replay saw and how the engine's book compared with the exchange's."""

    levels: int
    messages: int = 0
    rows: int = 0  # rows compared: one per message, or per merged execution run
    rows_matched: int = 0
    rows_mid_run: int = 0  # rows inside a merged run: a book halfway through one order
    revealed: int = 0  # rows where depth beyond the previous row's N levels came into view
    executions: int = 0  # merged runs of visible executions
    executions_checked: int = 0  # runs over levels whose queues were fully known
    executions_matched: int = 0
    seeded_qty: int = 0  # synthetic quantity standing for the book before the first message
    revealed_qty_added: int = 0  # synthetic quantity added where depth came into view
    revealed_qty_removed: int = 0  # stale quantity removed there
    synthetic_qty_refused: int = 0  # synthetic quantity the engine refused (a crossed row)
    reassigned_qty: int = 0  # taken off other known orders: the one named was not where we had it
    unaccounted_qty: int = 0  # quantity messages removed that no order here could stand for
    refused_ids: int = 0  # messages skipped because they name an order the engine refused
    refused_ids_forgotten: int = 0  # refused ids dropped at REFUSED_IDS_MAX, oldest first
    duplicate_ids: int = 0  # type 1 messages reusing the id of an order still open
    first_row_mismatch: int | None = None  # line number of the first row that differed
    first_execution_mismatch: int | None = None  # line of the first message of that run
    refused_while_quoting: int = 0  # type 1s locking or crossing the book before a halt cross
    rejected: dict[str, int] = field(default_factory=dict)  # by the engine, by reason


class LobsterReplay:
    """Feed it every message with the row after it, in order; then `finish()`.

    Past 400 lines for a reason: each LOBSTER message type (submission, partial cancel,
    deletion, execution, hidden execution, halt) becomes venue commands, and the book is
    checked against the exchange's row by row; the orders the file does not show (seeded at
    the start, revealed, hidden, synthetic) must be kept in step with both, so all of it
    works on one replay's state (its order map, queues and counts)."""

    def __init__(self, symbol: str, levels: int, venue: Venue | None = None) -> None:
        assert levels > 0, "a file has at least one level"
        self.symbol = symbol
        self.levels = levels
        self.venue = venue if venue is not None else Venue(VENUE_CONFIG)
        self.counts = ReplayCounts(levels)
        self._book: OrderBook | None = None  # set by the seed, once the symbol is listed
        self._market: Market | None = None  # likewise
        self._status = InstrumentStatus.OPEN
        self._ts_us = 0
        self._file_of: dict[int, int] = {}  # engine order id -> the file's order id
        self._engine_of: dict[int, int] = {}  # the file's order id -> engine order id
        self._uncertain: set[int] = set()  # open orders whose place in the queue may be wrong
        # File id -> size left, of submissions the engine refused: later messages about them
        # are skipped rather than taken off other orders. An entry goes when those messages
        # use its size up, or when the file's id is reused by an order the engine accepted.
        self._refused: dict[int, int] = {}
        # Per side (by BookSide.sign: 1 asks, -1 bids), the key of the worst level the last
        # compared row showed (ALL: the whole side): keys up to it were visible, so every
        # change there is reported.
        self._visible_key_max = {1: NOTHING, -1: NOTHING}
        self._run: list[Message] = []
        self._run_row: BookRow | None = None

    # ----------------------------------------------------------------- entry points

    def feed(self, message: Message, row: BookRow) -> None:
        """Replay one message and compare the row after it (or hold it in an execution run)."""
        self.counts.messages += 1
        self._ts_us = message.time_ns // 1000
        if self._book is None:
            self._seed(message, row)
        run = self._run
        if run:
            first = run[0]
            if (
                message.kind in RUN_KINDS
                and message.time_ns == first.time_ns
                and message.direction == first.direction
                and len(run) < RUN_MESSAGES_MAX
            ):
                run.append(message)
                assert self._run_row is not None
                self._run_row.shown()  # never compared, but checked all the same
                self._run_row = row
                self.counts.rows_mid_run += 1
                return
            self._flush_run()
        if message.kind == EXECUTION:
            self._run = [message]
            self._run_row = row
            return
        self._apply(message)
        self._sync(row)

    def finish(self) -> ReplayCounts:
        """Replay a run still held at the end of the file; the counts are then final."""
        if self._run:
            self._flush_run()
        counts = self.counts
        assert counts.rows + counts.rows_mid_run == counts.messages, "a row is compared or mid-run"
        return counts

    # ----------------------------------------------------------------- the seed

    def _seed(self, first: Message, row: BookRow) -> None:
        """List the symbol and rest synthetic orders for the book before the first message.

        The first row is the book after the first message, so that message's effect is
        undone on it: a submission's size comes off its level, a cancellation's, deletion's
        or execution's goes back on. What the undone row shows becomes the previous row.
        """
        shown_asks, shown_bids = row.shown()
        asks = _undo(shown_asks, first, SELL)
        bids = _undo(shown_bids, first, BUY)
        reference = _reference_price(asks, bids, first)
        self._execute(ListInstrument(ts_us=self._ts_us, spec=lobster_spec(self.symbol, reference)))
        self._market = self.venue.markets[self.symbol]
        self._book = self._market.book
        for levels, side, shown in ((asks, SELL, shown_asks), (bids, BUY, shown_bids)):
            for price, size in levels:
                self.counts.seeded_qty += self._add_synthetic(side, price, size)
            sign = 1 if side is SELL else -1
            self._visible_key_max[sign] = self._seed_limit(levels, shown, sign)

    def _seed_limit(
        self, levels: list[tuple[int, int]], shown: list[tuple[int, int]], sign: int
    ) -> int:
        """How far the undone first row was visible: N levels, or all of a short side. If
        undoing a submission left fewer than N, a level past the row's N-th is unknown; up
        to there, the row is known, with the submission's level known to have been empty."""
        if len(levels) >= self.levels:
            return levels[self.levels - 1][0] * sign
        if len(shown) < self.levels:
            return ALL
        return shown[-1][0] * sign

    # ----------------------------------------------------------------- messages

    def _apply(self, message: Message) -> None:
        kind = message.kind
        if kind == SUBMISSION:
            self._submit(message)
        elif kind == MessageType.CANCELLATION:
            self._cancel_part(message)
        elif kind == MessageType.DELETION:
            self._delete(message)
        elif kind == MessageType.HALT:
            status = HALT_STATUSES[message.price]
            self._execute(SetInstrumentStatus(ts_us=self._ts_us, symbol=self.symbol, status=status))
            self._status = status
        # 5 and 6 (a hidden order or an auction traded alone): nothing visible changes.

    def _submit(self, message: Message) -> None:
        """A type 1: a post-only limit order, since a new LOBSTER order never takes
        (what an aggressive order takes arrives as executions, its rest as the new order)."""
        side = BUY if message.direction == 1 else SELL
        self._admit_to_band(side, message.price)
        events = self.venue.execute(
            PlaceOrder(
                ts_us=self._ts_us,
                account=FILE_ACCOUNT,
                symbol=self.symbol,
                side=side,
                price=message.price,
                qty=message.size,
                post_only=True,
            )
        )
        accepted = events[-1]
        refused = self._refused
        if type(accepted) is not OrderAccepted:
            if self._quoting_refused(accepted):
                self.counts.refused_while_quoting += 1
            else:
                self._account(events)
            refused.pop(message.order_id, None)  # a reused id goes to the back
            if len(refused) >= REFUSED_IDS_MAX:
                del refused[next(iter(refused))]
                self.counts.refused_ids_forgotten += 1
            refused[message.order_id] = message.size
            return
        if refused:
            refused.pop(message.order_id, None)  # later messages name the new order
        self._account(events)
        order_id = accepted.order_id
        older = self._engine_of.get(message.order_id)
        if older is not None:  # the file reuses the id of an open order: the older is anonymous
            self.counts.duplicate_ids += 1
            del self._file_of[older]
            self._uncertain.add(older)
        self._engine_of[message.order_id] = order_id
        self._file_of[order_id] = message.order_id
        sign = -1 if side is BUY else 1
        if message.price * sign > self._visible_key_max[sign]:  # placed where nothing was in view
            self._uncertain.add(order_id)

    def _quoting_refused(self, event: Event) -> bool:
        """Whether the engine refused a new order for locking or crossing the book while
        quoting before a halt cross, which Nasdaq allows: a limit of the replay, not an error."""
        return (
            self._status is InstrumentStatus.POST_ONLY
            and type(event) is CommandRejected
            and event.reason is ErrorCode.POST_ONLY_WOULD_TAKE
        )

    def _cancel_part(self, message: Message) -> None:
        """A type 2: amend the order down (priority kept); what it lacks comes off unknowns."""
        if self._skip_refused(message):
            return
        order = self._held(message)
        left = message.size
        if order is not None:
            take = min(left, order.leaves_qty)
            self._reduce(order, take)
            left -= take
        if left:
            self._reduce_unknown(message, left)

    def _delete(self, message: Message) -> None:
        """A type 3: cancel the order. If ours held a different size than the file deletes
        (our queue was wrong before), the difference is settled with unknown quantity."""
        if self._skip_refused(message):
            return
        order = self._held(message)
        left = message.size
        if order is not None:
            left -= order.leaves_qty
            self._cancel(order)
        if left > 0:
            self._reduce_unknown(message, left)
        elif left < 0:
            side = BUY if message.direction == 1 else SELL
            self._add_synthetic(side, message.price, -left)

    def _skip_refused(self, message: Message) -> bool:
        """Whether the message is about an order the engine refused (already counted). Its
        size comes off the refused order's; a deletion, or nothing left, ends the entry."""
        refused = self._refused
        left = refused.get(message.order_id)
        if left is None:
            return False
        self.counts.refused_ids += 1
        left -= message.size
        if left > 0 and message.kind != MessageType.DELETION:
            refused[message.order_id] = left
        else:
            del refused[message.order_id]
        return True

    def _held(self, message: Message) -> Order | None:
        """Our open order for the message's id, if it rests where the message says."""
        order_id = self._engine_of.get(message.order_id)
        if order_id is None:
            return None
        order = self.venue.find_order(FILE_ACCOUNT, order_id, None)
        side = BUY if message.direction == 1 else SELL
        if order is None or order.price != message.price or order.side is not side:
            return None
        return order

    # ----------------------------------------------------------------- executions

    def _flush_run(self) -> None:
        """One IOC order for a run of executions: the sum of the sizes at the worst price.

        Hidden executions (type 5) inside the run keep it together and add nothing, and so
        do executions of orders the engine refused: they never rested here.
        """
        run, row = self._run, self._run_row
        self._run, self._run_row = [], None
        assert row is not None, "a run always has the row after its last message"
        first = run[0]
        visible = [m for m in run if m.kind == EXECUTION and not self._skip_refused(m)]
        if not visible:
            self._sync(row)
            return
        maker = BUY if first.direction == 1 else SELL
        prices = [message.price for message in visible]
        price = min(prices) if maker is BUY else max(prices)
        assert self._book is not None
        known = self._queue_known(self._book.side(maker), price)
        self._admit_to_band(SELL if maker is BUY else BUY, price)
        command = PlaceOrder(
            ts_us=self._ts_us,
            account=TAKER_ACCOUNT,
            symbol=self.symbol,
            side=SELL if maker is BUY else BUY,
            tif=TimeInForce.IOC,
            price=price,
            qty=sum(message.size for message in visible),
            stp=SelfTradePrevention.NONE,
        )
        events = self.venue.execute(command)
        matched = self._fills(events) == _fills_named(visible)
        self._account(events)
        self._count_execution(known, matched, first)
        self._sync(row)

    def _fills(self, events: list[Event]) -> list[tuple[int, int]]:
        """(file's order id, quantity) the engine filled, in order, summed per order. A
        synthetic maker is named by its negated engine id: never a file's id."""
        filled: dict[int, int] = {}
        for event in events:
            if type(event) is TradeExecuted:
                order_id = self._file_of.get(event.maker_order_id, -event.maker_order_id)
                filled[order_id] = filled.get(order_id, 0) + event.qty
        return list(filled.items())

    def _queue_known(self, side: BookSide, price: int) -> bool:
        """Whether every level the run can reach was visible and holds only orders whose
        queue position is known: seen arriving and never out of view since."""
        limit_key = price * side.sign
        if limit_key > self._visible_key_max[side.sign]:
            return False
        uncertain = self._uncertain
        return all(uncertain.isdisjoint(level.orders) for level in side.levels_within(limit_key))

    def _count_execution(self, known: bool, matched: bool, first: Message) -> None:
        counts = self.counts
        counts.executions += 1
        if not known:
            return
        counts.executions_checked += 1
        if matched:
            counts.executions_matched += 1
        elif counts.first_execution_mismatch is None:
            counts.first_execution_mismatch = first.line

    # ----------------------------------------------------------------- rows

    def _sync(self, row: BookRow) -> None:
        """Take newly visible depth from the row, then compare the top N levels with it."""
        book = self._book
        assert book is not None
        counts = self.counts
        levels = self.levels
        revealed = False
        for side, raw, index in ((book.asks, row.asks, 0), (book.bids, row.bids, 1)):
            sign = side.sign
            price, size = raw[-1]
            limit = price * sign if size else ALL  # all N levels shown, or the whole side
            previous = self._visible_key_max[sign]
            if limit > previous:
                revealed |= self._reveal(side, row.shown()[index], previous, limit)
            elif limit < previous:
                self._hide(side, limit, previous)
            self._visible_key_max[sign] = limit
        counts.revealed += revealed
        counts.rows += 1
        if (
            _padded_depth(book.asks, levels, ASK_EMPTY_LEVEL) == row.asks
            and _padded_depth(book.bids, levels, BID_EMPTY_LEVEL) == row.bids
        ):
            counts.rows_matched += 1  # and the row is well formed, since our book is
            return
        asks, bids = row.shown()  # the row may write empty levels its own way
        if _depth(book.asks, levels) == asks and _depth(book.bids, levels) == bids:
            counts.rows_matched += 1
        elif counts.first_row_mismatch is None:
            counts.first_row_mismatch = row.line

    def _reveal(self, side: BookSide, shown: list[tuple[int, int]], low: int, high: int) -> bool:
        """Make keys in (low, high] what the row shows: they were out of view until now.
        Returns whether a level came into view: one the row shows, or one of ours it does not."""
        sign = side.sign
        wanted = {price: size for price, size in shown if low < price * sign <= high}
        present = [side.levels[key] for key in side.keys_between(low, high)]
        came_into_view = bool(wanted or present)
        counts = self.counts
        order_side = BUY if sign < 0 else SELL
        for level in present:
            size = wanted.pop(level.price, 0)
            if level.qty > size:
                counts.revealed_qty_removed += level.qty - size
                self._reduce_level(level, level.qty - size)
            elif level.qty < size:
                added = self._add_synthetic(order_side, level.price, size - level.qty)
                counts.revealed_qty_added += added
        for price, size in wanted.items():
            counts.revealed_qty_added += self._add_synthetic(order_side, price, size)
        return came_into_view

    def _hide(self, side: BookSide, low: int, high: int) -> None:
        """Keys in (low, high] have left view: what happens there now goes unreported."""
        uncertain = self._uncertain
        for key in side.keys_between(low, high):
            uncertain.update(side.levels[key].orders)

    # ----------------------------------------------------------------- book changes

    def _reduce_unknown(self, message: Message, qty: int) -> None:
        """Take `qty` that a message removes, but no order of ours stands for, off its level.

        Orders we cannot tell apart go first (synthetic, then uncertain). If they do not
        suffice, our queue disagreed with the exchange's earlier (an execution filled other
        orders here than there), and the rest comes off known orders: the level's total is
        what the file reports, and the execution check has already counted the disagreement.
        """
        assert self._book is not None
        side = self._book.side(BUY if message.direction == 1 else SELL)
        level = side.levels.get(message.price * side.sign)
        if level is not None:
            qty, known = self._reduce_level(level, qty)
            self.counts.reassigned_qty += known
        self.counts.unaccounted_qty += qty

    def _reduce_level(self, level: Level, qty: int) -> tuple[int, int]:
        """Take `qty` off the level: synthetic orders, then uncertain ones, then the rest, each
        oldest first. Returns (what could not be taken, what came off known orders)."""
        uncertain = self._uncertain

        def rank(order: Order) -> int:
            if order.account == SYNTHETIC_ACCOUNT:
                return 0
            return 1 if order.order_id in uncertain else 2

        known = 0
        for order in sorted(level.orders.values(), key=rank):
            if not qty:
                break
            take = min(qty, order.leaves_qty)
            if rank(order) == 2:
                known += take
            self._reduce(order, take)
            qty -= take
        return qty, known

    def _reduce(self, order: Order, qty: int) -> None:
        """Cancel `qty` of the order: all of it, or an amend down that keeps its priority."""
        if qty >= order.leaves_qty:
            self._cancel(order)
        elif qty > 0:
            amend = AmendOrder(
                ts_us=self._ts_us,
                account=order.account,
                order_id=order.order_id,
                qty=order.qty - qty,
            )
            self._while_open(amend)

    def _cancel(self, order: Order) -> None:
        self._execute(
            CancelOrder(ts_us=self._ts_us, account=order.account, order_id=order.order_id)
        )

    def _add_synthetic(self, side: Side, price: int, qty: int) -> int:
        """A synthetic order at the back of the level, standing for orders we never saw.
        Returns the quantity placed: none if the engine refused it (counted apart)."""
        self._admit_to_band(side, price)
        place = PlaceOrder(
            ts_us=self._ts_us,
            account=SYNTHETIC_ACCOUNT,
            symbol=self.symbol,
            side=side,
            price=price,
            qty=qty,
            post_only=True,  # a crossed row must not make the replay trade
        )
        accepted = self._while_open(place)[-1]
        if type(accepted) is not OrderAccepted:
            self.counts.synthetic_qty_refused += qty
            return 0
        self._uncertain.add(accepted.order_id)
        return qty

    def _admit_to_band(self, side: Side, price: int) -> None:
        """Move the reference price to `price` if the band would refuse an order there.

        The band guards a live market against mistyped prices; the exchange has accepted
        every price in the file already, and what the replay checks is the book, not bands.
        (At the widest band only a bid above twice the last trade would be refused.)
        """
        market = self._market
        assert market is not None
        if price > market.band_high if side is BUY else price < market.band_low:
            self._execute(SetReferencePrice(ts_us=self._ts_us, symbol=self.symbol, price=price))

    def _while_open(self, command: Command) -> list[Event]:
        """Run one of the replay's own book adjustments, even while trading is halted.

        A halted venue refuses amends and new orders, but a partial cancel (which the engine
        can only express as an amend down) or a synthetic order is not trading: for the
        length of the command the status is post_only, which lets both rest and none trade.
        """
        status = self._status
        if status in ADJUSTABLE_STATUSES:
            return self._execute(command)
        ts, symbol = self._ts_us, self.symbol
        self._execute(
            SetInstrumentStatus(ts_us=ts, symbol=symbol, status=InstrumentStatus.POST_ONLY)
        )
        events = self._execute(command)
        self._execute(SetInstrumentStatus(ts_us=ts, symbol=symbol, status=status))
        return events

    def _execute(self, command: Command) -> list[Event]:
        events = self.venue.execute(command)
        self._account(events)
        return events

    def _account(self, events: list[Event]) -> None:
        """Forget orders that have left the book; count refusals by reason."""
        for event in events:
            if isinstance(event, TradeExecuted):
                if event.maker_status is FILLED:
                    self._forget(event.maker_order_id)
            elif isinstance(event, OrderCanceled) or (
                isinstance(event, OrderAmended) and event.status is FILLED
            ):
                self._forget(event.order_id)
            elif isinstance(event, CommandRejected):
                reason = event.reason.name.lower()
                self.counts.rejected[reason] = self.counts.rejected.get(reason, 0) + 1

    def _forget(self, order_id: int) -> None:
        file_id = self._file_of.pop(order_id, None)
        if file_id is not None:
            del self._engine_of[file_id]
        self._uncertain.discard(order_id)


def _fills_named(executions: list[Message]) -> list[tuple[int, int]]:
    """(order id, size) the execution messages name, in order, summed per order."""
    named: dict[int, int] = {}
    for message in executions:
        named[message.order_id] = named.get(message.order_id, 0) + message.size
    return list(named.items())


def _depth(side: BookSide, levels: int) -> list[tuple[int, int]]:
    """`BookSide.depth`, read through the key list's own iterator: it runs on every row."""
    by_key = side.levels
    live = filter(by_key.__contains__, side.keys)  # a dormant level's key has no level
    return [(level.price, level.qty) for level in map(by_key.__getitem__, islice(live, levels))]


def _padded_depth(side: BookSide, levels: int, empty: tuple[int, int]) -> list[tuple[int, int]]:
    """The top levels as LOBSTER writes them: always N, empty ones as `empty`."""
    depth = _depth(side, levels)
    if len(depth) < levels:
        depth += [empty] * (levels - len(depth))
    return depth


def _undo(levels: list[tuple[int, int]], message: Message, side: Side) -> list[tuple[int, int]]:
    """One side of a row with the effect of `message` taken back."""
    if message.kind > EXECUTION or (message.direction == 1) != (side is BUY):
        return levels
    sizes = dict(levels)
    change = -message.size if message.kind == SUBMISSION else message.size
    sizes[message.price] = sizes.get(message.price, 0) + change
    sign = -1 if side is BUY else 1
    return sorted(((p, s) for p, s in sizes.items() if s > 0), key=lambda level: level[0] * sign)


def _reference_price(
    asks: list[tuple[int, int]], bids: list[tuple[int, int]], first: Message
) -> int:
    """The middle of the first book, else its only side, else the first message's price
    (a halt's Price is a code, not a price), else a guess: `_admit_to_band` corrects it."""
    if asks and bids:
        return (asks[0][0] + bids[0][0]) // 2
    if asks or bids:
        return (asks or bids)[0][0]
    return first.price if first.kind != MessageType.HALT else DEFAULT_REFERENCE_PRICE
