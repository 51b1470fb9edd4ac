"""Private pushes: engine events turned into each account's `exec`, `balance` and `settlement`.

Owns what an execution report needs beyond the event itself: per open order its static
fields (learned from `OrderAccepted`, updated by `OrderAmended`) and its running traded
value for `avg_px`, plus the venue-wide `exec_id` counter. Leaves `seq` to the server. Every
number is a decimal string at a fixed scale per instrument or asset, so equal values are
equal strings (`gateway.decimals`); `avg_px` has `AVG_PX_EXTRA_DECIMALS` more than the price.
Pushes are structs in PROTOCOL's envelope, `{"ch": "account", "seq", "epoch", "type", "ts",
"data"}` (`Push`, made with the epoch it is given and `seq` 0: the server sets that as it
sequences each push, `private_streams.sequence`); `data.type` is the order type. The exec
pushes that open or close an order are also listed apart (`order_reports`, what the order
history learns from). A command sends one `balance` per account and asset it changed, the
final state, in the place of its last change (docs/protocol.md §8.3). No push names another
participant's account: a settlement shows its recipient only its own legs, the counterparty
as `null`. Memory: an order is forgotten the moment it closes, so what is kept is bounded by
the venue's open orders (`VenueConfig.open_orders_per_account_max` each).
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import msgspec

from engine.book import Order
from engine.commands import Command, PlaceOrder
from engine.enums import CancelReason, Liquidity, OrderStatus, OrderType, Side
from engine.events import (
    AssetListed,
    BalanceChanged,
    CommandRejected,
    CorporateActionApplied,
    Event,
    InstrumentListed,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    SelfTradePrevented,
    TradeExecuted,
    TradeSettled,
)
from engine.instrument import InstrumentSpec
from engine.units import format_units
from gateway.decimals import Filler, plain_strings, plain_strings_at
from settlement.transfers import TransferKind

AVG_PX_EXTRA_DECIMALS = 4  # an average of fills is rarely on the tick; 4 more keep it honest
_AVG_PX_FACTOR: int = 10**AVG_PX_EXTRA_DECIMALS
ORDER_COMMANDS = frozenset({"place_order", "cancel_order", "amend_order"})
CLOSED = frozenset({OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED})
CHANNEL = "account"
# The event kinds of an amend that only amended (and moved a hold), and of two in turn: a
# requote's `AmendPair` (`ExecReporter.pair_reports`, `dispatch._requote_result`)
AMENDED_ONLY = ((OrderAmended,), (OrderAmended, BalanceChanged))
PAIR_AMENDED_ONLY = frozenset(bid + ask for bid in AMENDED_ONLY for ask in AMENDED_ONLY)
_replace = msgspec.structs.replace  # a struct copied with some fields changed, in C
# Enum fields go into the reports as their plain `str` values (a StrEnum's `_value_`, an
# instance attribute): msgspec encodes a str directly but an enum member through a lookup of
# its `value` property, a Python-level getattr per field of every push.
_NEW = OrderStatus.NEW._value_
_CANCELED = OrderStatus.CANCELED._value_
_EXPIRED = OrderStatus.EXPIRED._value_  # an expired order's, and a self-trade's prevented one
_STP = CancelReason.STP._value_
_LIMIT = OrderType.LIMIT._value_
_MAKER = Liquidity.MAKER._value_
_TAKER = Liquidity.TAKER._value_
# The member itself, read once (a member read from its class takes EnumType's slow attribute
# lookup, ~920 instructions a read: see gateway/market_data.py)
_LIMIT_ORDER = OrderType.LIMIT


# The pushes are typed structs, built positionally and encoded once by the server: a dict of
# two dozen keys per report, then its encoding, was most of the private stream's cost.
# Field order is the wire's key order (docs/protocol.md); `gc=False`: they hold no cycles.


class ExecReport(msgspec.Struct, gc=False):
    """`data` of an `exec` push: the order as it stands after one of its events."""

    exec_type: str
    status: str
    exec_id: int
    order_id: int | None
    cl_ord_id: str | None
    symbol: str | None
    side: str | None
    type: str | None
    tif: str | None
    price: str | None
    qty: str | None
    quote_qty: str | None
    leaves_qty: str | None
    cum_qty: str | None
    avg_px: str | None
    last_px: str | None
    last_qty: str | None
    liquidity: str | None
    trade_id: int | None
    fee: str | None
    fee_asset: str | None
    tag: str | None
    quote_set: str | None
    reason: str | None


class BalanceReport(msgspec.Struct, gc=False):
    """`data` of a `balance` push."""

    asset: str
    total: str
    available: str
    held: str


class Leg(msgspec.Struct, gc=False, rename={"from_": "from"}):
    """One transfer of a settlement as its viewer sees it (`null`: the counterparty)."""

    transfer_id: int
    kind: str
    from_: int | None
    to: int | None
    asset: str
    amount: str


class SettlementReport(msgspec.Struct, gc=False):
    """`data` of a `settlement` push: only the viewer's own legs."""

    settlement_id: int
    trade_id: int
    symbol: str
    legs: list[Leg]


class CorporateActionReport(msgspec.Struct, gc=False):
    """`data` of a `corporate_action` push."""

    kind: str
    symbol: str
    asset: str
    ratio: str | None
    amount_per_share: str | None
    holding_before: str
    holding_after: str
    cash_asset: str
    cash_received: str
    settlement_id: int


Report = ExecReport | BalanceReport | SettlementReport | CorporateActionReport


class Push(msgspec.Struct, gc=False):
    """One private push, the envelope as it goes on the wire: the reporter makes it with its
    epoch and `seq` 0, and the server sets `seq` as it sequences the push (one struct per
    push, encoded once: a second, sequenced copy of every push cost more than its encoding)."""

    ch: str
    seq: int
    epoch: int
    type: str
    ts: int
    data: Report


_Out = list[tuple[int, Push]]
# A balance's change in a command: (its push's place in the pushes, ts_us, total, held)
_Change = tuple[int, int, int, int]
# (event, its index, the command's events, the pushes so far): what every handler is given
# True from a handler: it took the next event too (a trade, its settlement right after it)
_Handler = Callable[[Any, int, Sequence[Event], _Out], bool | None]


class _Tracked:
    """What an execution report needs to know of an open order that its events do not say.

    `report` is the order's last report (`new`, `amended` or a fill's): every later report
    takes the order's fixed fields and decimal strings (price, qty, quote_qty) from it, so
    no fill formats or looks up what the order said; and an amend that leaves the order's
    quantities as they are (the usual requote moves only the price) takes their strings,
    `avg_px` too, from it. A slots class, not a struct: its fields are set at every fill and
    amend, and a slot's store is about half the cost of a `msgspec.Struct`'s (measured:
    callgrind, requote)."""

    __slots__ = ("account", "cum_qty", "leaves_qty", "qty", "report", "status", "symbol", "value")

    def __init__(
        self,
        account: int,
        symbol: str,
        report: "ExecReport",
        status: str,
        qty: int,
        leaves_qty: int,
        cum_qty: int,
        value: int,
    ) -> None:
        # positional values, not the event: no isinstance and no property calls per order;
        # the status as a plain string (see `_NEW`)
        self.account = account
        self.symbol = symbol  # the report's, typed as an order's: never None
        self.report = report
        self.status = status
        # the quantities `report` states (`qty` the order's, which only an amend changes)
        self.qty = qty
        self.leaves_qty = leaves_qty
        self.cum_qty = cum_qty
        self.value = value  # the sum of price x qty over fills: avg_px = value / cum_qty


_new_tracked = object.__new__  # a `_Tracked` not yet initialized (see `_on_accepted`)


class ExecReporter:
    """Turns the events of each executed command into private pushes, per account.

    Past 400 lines for a measured reason: the hot reports (`new`, `amended`, `trade` and the
    closing ones) each build their 24-field `ExecReport` inline, one positional call, rather
    than through one shared helper (a frame and a dozen attribute reads per report, callgrind)."""

    def __init__(
        self,
        specs: Mapping[str, InstrumentSpec] | None = None,
        asset_scales: Mapping[str, int] | None = None,
        last_exec_id: int = 0,
    ) -> None:
        self.specs: dict[str, InstrumentSpec] = {}
        # symbol -> its decimal strings, made at first use: the server may set `specs` and
        # `asset_scales` directly (a venue restored from a snapshot lists nothing anew)
        self.formats: dict[str, _Formats] = {}
        self.asset_scales: dict[str, int] = dict(asset_scales or {})
        # asset -> its balances' decimal strings (`_balance_strings`), apart from the shared
        # tables: running balances churn a table, and holds and untouched totals recur
        self.balance_strings: dict[str, tuple[dict[int, str], Filler]] = {}
        for spec in (specs or {}).values():
            self._learn_spec(spec)
        self.last_exec_id = last_exec_id
        self.orders: dict[int, _Tracked] = {}
        # One bound handler per event type but `BalanceChanged` (inlined in `reports`): a dict
        # lookup on `type(event)` instead of an isinstance chain. Events without one: no push.
        self._handlers: dict[type, _Handler] = {
            TradeExecuted: self._on_trade,
            TradeSettled: self._on_settled,
            OrderAccepted: self._on_accepted,
            OrderCanceled: self._on_canceled,
            OrderExpired: self._on_expired,
            SelfTradePrevented: self._on_self_trade_prevented,
            OrderAmended: self._on_amended,
            CommandRejected: self._on_rejected,
            CorporateActionApplied: self._on_corporate_action,
            InstrumentListed: self._on_instrument_listed,
            AssetListed: self._on_asset_listed,
        }
        # the call in progress (`reports`): its command, quote set and epoch
        self._command: Command | None = None
        self._quote_set: str | None = None
        self._epoch = 0
        # (symbol, trade id) -> its settlement's pushes, built with the trade's reports (the
        # same pass over the legs finds the fees) and sent when the settlement comes
        self._settlements: dict[tuple[str, int], list[tuple[int, Push]]] = {}
        # the call in progress's balances (see `reports`), which a settlement's handler adds to
        self._changed: dict[tuple[int, str], _Change] = {}
        # The exec pushes of the last `reports` call that accept or close an order: all that
        # `OrderHistory.record` learns from, without walking the balances and settlements.
        self.order_reports: list[tuple[int, Push]] = []

    def adopt(
        self, order: Order, quote_set: str | None = None, spec: InstrumentSpec | None = None
    ) -> None:
        """Track an order that is already open (a venue restored from a snapshot). `spec`:
        its instrument's, if the reporter has not learned it yet (a restore adopts first)."""
        spec = spec or self.specs[order.symbol]
        # the fields its later reports take from it (see `_Tracked`), its quantities as they
        # stand; the rest is theirs
        report = ExecReport(
            "new",
            order.status._value_,
            0,
            order.order_id,
            order.cl_ord_id,
            order.symbol,
            order.side._value_,
            order.order_type._value_,
            order.tif._value_,
            format_units(order.price, spec.price_decimals)
            if order.order_type is OrderType.LIMIT
            else None,
            format_units(order.qty, spec.qty_decimals),
            None,  # only a market buy has a quote budget, and market orders never rest
            format_units(order.leaves_qty, spec.qty_decimals),
            format_units(order.cum_qty, spec.qty_decimals),
            _avg_px(order.filled_value, order.cum_qty, spec),
            None,
            None,
            None,
            None,
            None,
            None,
            order.tag,
            quote_set,
            None,
        )
        self.orders[order.order_id] = _Tracked(
            order.account,
            order.symbol,
            report,
            order.status._value_,
            order.qty,
            order.leaves_qty,
            order.cum_qty,
            order.filled_value,
        )

    def pair_reports(
        self, events: list[Event], split: int, epoch: int
    ) -> tuple[list[tuple[int, Push]], list[tuple[int, Push]]]:
        """`reports` of an `AmendPair`'s two amends, its events the bid's up to `split` and
        the ask's after: the bid's pushes and the ask's, and the orders either opened or
        closed in `order_reports` (the two amends' in turn). When both only amended (and
        moved a hold), as a requote's do, their reports in one call, as `reports` makes them
        (its first case, twice). An amend's pushes use neither a command nor a quote set."""
        typed: list[Any] = events  # their kinds are told by the tuple: no narrowing
        if tuple(map(type, typed)) in PAIR_AMENDED_ONLY:
            if self.order_reports:  # a new list only when the last one was used
                self.order_reports = []
            amended = self._amended
            bid = [amended(typed[0], epoch)]
            change = typed[1]
            if split == 2 and change.account > 0:  # the hold of the bid moved
                bid.append(self._balance(change, epoch))
            ask = [amended(typed[split], epoch)]
            change = typed[-1]
            if len(typed) > split + 1 and change.account > 0:  # (a size change of the ask)
                ask.append(self._balance(change, epoch))
            return bid, ask
        bid = self.reports(events[:split], None, None, epoch)
        bid_orders = self.order_reports
        ask = self.reports(events[split:], None, None, epoch)  # a new `order_reports` if used
        if bid_orders and bid_orders is not self.order_reports:
            self.order_reports = bid_orders + self.order_reports
        return bid, ask

    def reports(
        self,
        events: Sequence[Event],
        command: Command | None = None,
        quote_set: str | None = None,
        epoch: int = 0,
    ) -> list[tuple[int, Push]]:
        """The pushes of one command's events, in order, each with the account it is for.

        `command`, when given, fills the order fields of a rejected `PlaceOrder`; `quote_set`
        tags the order these events accept (a `quote.mass` place); `epoch` is the pushes'
        (set as each is built: a struct's attribute store per push saved in `sequence`).
        """
        if self.order_reports:  # a new list only when the last one was used
            self.order_reports = []
        count = len(events)
        first = events[0] if count else None
        if type(first) is OrderAmended:  # most commands: a maker's requote
            if count == 1:
                return [self._amended(first, epoch)]
            change = events[1]
            if count == 2 and type(change) is BalanceChanged:  # the hold of a buy moved
                if change.account > 0:  # (the venue's own accounts have no stream)
                    return [self._amended(first, epoch), self._balance(change, epoch)]
                return [self._amended(first, epoch)]
        elif count == 2 and type(first) is OrderAccepted:  # an order that rests, and its hold
            change = events[1]
            if type(change) is BalanceChanged:  # no loop, no table of balances for its one
                self._quote_set = quote_set
                self._epoch = epoch
                accepted: list[Any] = []
                self._on_accepted(first, 0, events, accepted)
                if change.account > 0:
                    accepted.append(self._balance(change, epoch))
                return accepted
        # A balance is pushed once, in the place of the command's last change of it
        # (docs/protocol.md §8.3): `balances` maps (account, asset) to that change (`_Change`:
        # the length of `out` when it came, its place, then what its `BalanceChanged`, or the
        # `TradeSettled` that carries it, says), moved to the end at each change: so its order
        # is that of the last changes, and the places never decrease along it.
        out: list[Any] = []
        self._command = command
        self._quote_set = quote_set
        self._epoch = epoch
        handlers = self._handlers
        balances: dict[tuple[int, str], _Change] = {}
        self._changed = balances  # where a settlement's handler puts the balances it carries
        typed: Sequence[Any] = events  # each handler knows its event's type: no narrowing
        steps = enumerate(typed)
        for index, event in steps:
            kind = type(event)
            if kind is BalanceChanged:
                # the most frequent event (a trade changes four balances), inlined: no call
                if event.account > 0:  # the venue's own accounts have no stream
                    key = (event.account, event.asset)
                    # changed again: its push moves to this change (`in`, not a `pop` call)
                    if key in balances:
                        del balances[key]  # noqa: RUF051
                    balances[key] = len(out), event.ts_us, event.total, event.held
                continue
            handler = handlers.get(kind)
            if handler is not None and handler(event, index, events, out):
                next(steps)  # taken with this one: no dispatch, no call for it
        if self._settlements:
            self._settlements.clear()
        if balances:
            self._balances(out, reversed(balances.items()), epoch)
        return out

    def _balances(
        self, out: list[Any], changes: Iterable[tuple[tuple[int, str], _Change]], epoch: int
    ) -> None:
        """Each balance's last change in the command, ((account, asset), `_Change`), becomes
        its push, inserted at its place. One call per command, not per balance (a trade
        changes four). `changes` come last first (places never increase along them, equal
        places in reverse order), so every place is still that of `out` as it was."""
        strings_of = self.balance_strings
        for (account, asset), (place, ts_us, total, held) in changes:
            try:  # a subscript, not `get` and a test: a try costs nothing unless raised
                strings, fill = strings_of[asset]
            except KeyError:  # the asset's first balance
                strings, fill = self._balance_strings(asset)
            available = total - held  # not `BalanceChanged.available`: a property's call
            data = BalanceReport(
                asset,
                strings.get(total) or fill(total),
                strings.get(available) or fill(available),
                strings.get(held) or fill(held),
            )
            out.insert(place, (account, Push(CHANNEL, 0, epoch, "balance", ts_us, data)))

    def _balance(self, change: BalanceChanged, epoch: int) -> tuple[int, Push]:
        """The push of one balance as `change` left it: `_balances` for a requote's one
        balance (a bid's hold), without its loop over (key, change) tuples made for it. The
        same lines as that loop's body, on purpose: a method both call cost a trade's reports
        ~1% more instructions (measured, session 24)."""
        asset = change.asset
        try:  # a subscript (see `_balances`)
            strings, fill = self.balance_strings[asset]
        except KeyError:
            strings, fill = self._balance_strings(asset)
        total, held = change.total, change.held
        available = total - held  # not `BalanceChanged.available`: a property's call
        data = BalanceReport(
            asset,
            strings.get(total) or fill(total),
            strings.get(available) or fill(available),
            strings.get(held) or fill(held),
        )
        return change.account, Push(CHANNEL, 0, epoch, "balance", change.ts_us, data)

    # ----------------------------------------------------------------- the handlers

    def _on_trade(self, event: Any, index: int, events: Sequence[Event], out: _Out) -> bool:
        # The clearing books a trade's settlement right after it: when it is the very next
        # event, its pushes follow the trade's at once (their place either way) and that
        # event is taken with the trade (True): no search, no table of pending pushes.
        following = index + 1
        settled = events[following] if following < len(events) else None
        if (
            type(settled) is TradeSettled
            and settled.trade_id == event.trade_id
            and settled.symbol == event.symbol
        ):
            pushes, maker_fee, taker_fee = self._settlement(settled, event)
            self._trade(event, maker_fee, taker_fee, out)
            out += pushes
            self._settled_balances(settled, len(out))
            return True
        settled = _settlement_of(events, index, event)
        if settled is None:  # a venue without a ledger: no fees
            self._trade(event, 0, 0, out)
            return False
        pushes, maker_fee, taker_fee = self._settlement(settled, event)
        self._settlements[(event.symbol, event.trade_id)] = pushes
        self._trade(event, maker_fee, taker_fee, out)
        return False

    def _on_settled(self, event: Any, index: int, events: Sequence[Event], out: _Out) -> None:
        # a settlement apart from its trade (one right after it is taken by `_on_trade`)
        pushes = self._settlements.pop((event.symbol, event.trade_id), None)
        out += self._settlement(event, None)[0] if pushes is None else pushes
        self._settled_balances(event, len(out))

    def _settled_balances(self, settled: TradeSettled, place: int) -> None:
        """The balances a settlement carries change at `place`, right after its pushes (where
        a `BalanceChanged` of each came): the buyer's base and quote, then the seller's. Each
        is taken from the event here, as `_Change`: no call of `TradeSettled.balance` and no
        test of the event's type per balance pushed."""
        balances = self._changed
        buyer, seller, base, quote = settled.buyer, settled.seller, settled.base, settled.quote
        ts_us = settled.ts_us
        buyer_base, buyer_quote = (buyer, base), (buyer, quote)
        seller_base, seller_quote = (seller, base), (seller, quote)
        # changed before in the command: its push moves to this change, so first out of the
        # table, then back in at its end, in this order (a self-trade's two, once each)
        for key in (buyer_base, buyer_quote, seller_base, seller_quote):
            if key in balances:
                del balances[key]
        balances[buyer_base] = place, ts_us, settled.buyer_base_total, settled.buyer_base_held
        balances[buyer_quote] = place, ts_us, settled.buyer_quote_total, settled.buyer_quote_held
        if seller != buyer:
            balances[seller_base] = (
                place,
                ts_us,
                settled.seller_base_total,
                settled.seller_base_held,
            )
            balances[seller_quote] = (
                place,
                ts_us,
                settled.seller_quote_total,
                settled.seller_quote_held,
            )

    def _on_accepted(self, event: Any, index: int, events: Sequence[Event], out: _Out) -> None:
        # `_report` inlined for a new order (nothing filled: leaves = qty, avg_px 0): a call
        # frame and a dozen attribute reads fewer on every accepted order
        try:  # a subscript (see `_balances`)
            formats = self.formats[event.symbol]
        except KeyError:
            formats = self._formats(event.symbol)
        qty = formats.qty.get(event.qty) or formats.qty_fill(event.qty)
        self.last_exec_id = exec_id = self.last_exec_id + 1
        data = ExecReport(
            "new",
            _NEW,
            exec_id,
            event.order_id,
            event.cl_ord_id,
            event.symbol,
            event.side._value_,
            event.order_type._value_,
            event.tif._value_,
            (formats.price.get(event.price) or formats.price_fill(event.price))
            if event.order_type is _LIMIT_ORDER
            else None,
            qty,
            (formats.quote.get(event.quote_qty) or formats.quote_fill(event.quote_qty))
            if event.quote_qty
            else None,
            qty,
            formats.qty_zero,
            formats.avg_px_zero,
            None,
            None,
            None,
            None,
            None,
            None,
            event.tag,
            self._quote_set,
            None,
        )
        # The new report is the template of the order's later ones (see `_Tracked`). Made
        # without `_Tracked.__init__`: a class call runs its Python `__init__` in a frame of
        # its own, and its eight stores cost the same here.
        self.orders[event.order_id] = tracked = _new_tracked(_Tracked)
        tracked.account = event.account
        tracked.symbol = event.symbol
        tracked.report = data
        tracked.status = _NEW
        tracked.qty = tracked.leaves_qty = event.qty
        tracked.cum_qty = tracked.value = 0
        report = event.account, Push(CHANNEL, 0, self._epoch, "exec", event.ts_us, data)
        out.append(report)
        self.order_reports.append(report)

    # The closing reports: a handler per event type, so each knows its exec type and status
    # (no isinstance chain, no `status` property) and takes the reason as its plain value (an
    # enum's `value` is a Python-level descriptor, two frames a read).

    def _on_canceled(self, event: Any, index: int, events: Sequence[Event], out: _Out) -> None:
        self._closed(event, "canceled", _CANCELED, event.reason._value_, out)

    def _on_expired(self, event: Any, index: int, events: Sequence[Event], out: _Out) -> None:
        self._closed(event, "expired", _EXPIRED, event.reason._value_, out)

    def _on_self_trade_prevented(
        self, event: Any, index: int, events: Sequence[Event], out: _Out
    ) -> None:
        data = self._closed(event, "stp", _EXPIRED, _STP, out)
        data.liquidity = event.liquidity._value_  # before the server encodes the push

    def _on_amended(self, event: Any, index: int, events: Sequence[Event], out: _Out) -> None:
        out.append(self._amended(event, self._epoch))

    def _amended(self, event: OrderAmended, epoch: int) -> tuple[int, Push]:
        """The report of an amend: the most frequent push (a maker's requote), so built from
        the event's own values in one call, without `_report`'s frame (the usual requote's:
        its template copied with what changed, `_replace`). An amended order
        rests, so it is a limit order without a quote budget (market orders never rest).
        Its cum_qty is the event's: an amend fills nothing, but a split's amend rescales the
        filled quantity into new shares (and so the average price). The report is the
        order's new template (`_Tracked.report`): its new price, qty and cl_ord_id."""
        try:  # subscripts, not `get` and a test (see `_balances`)
            tracked = self.orders[event.order_id]
        except KeyError:
            tracked = self._tracked(event.order_id, "OrderAmended")  # fails: never seen open
        tracked.status = status = event.status._value_
        template = tracked.report
        try:
            formats = self.formats[tracked.symbol]
        except KeyError:
            formats = self._formats(tracked.symbol)
        qty_units, leaves, cum = event.qty, event.leaves_qty, event.cum_qty
        price = event.price
        price_text = formats.price.get(price) or formats.price_fill(price)
        self.last_exec_id = exec_id = self.last_exec_id + 1
        if qty_units == tracked.qty and leaves == tracked.leaves_qty and cum == tracked.cum_qty:
            # the usual requote moves only the price: the quantities' strings, and the
            # average price of a partly filled quote, are those of the order's last report
            if template.last_px is None:  # a `new` or `amended` one: no fill's fields
                # so the report is the template with five fields changed, copied in C: 32
                # bytecodes and ~210 instructions (callgrind) less than 24 arguments read
                # from it one by one
                tracked.report = data = _replace(
                    template,
                    exec_type="amended",
                    status=status,
                    exec_id=exec_id,
                    cl_ord_id=event.cl_ord_id,
                    price=price_text,
                )
                # (never closing: the order's quantities are those of its open last report)
                return tracked.account, Push("account", 0, epoch, "exec", event.ts_us, data)
            qty_text, leaves_text = template.qty, template.leaves_qty
            cum_text, avg_px_text = template.cum_qty, template.avg_px
        else:
            tracked.qty, tracked.leaves_qty, tracked.cum_qty = qty_units, leaves, cum
            qty = formats.qty
            qty_text = qty.get(qty_units) or formats.qty_fill(qty_units)
            leaves_text = qty.get(leaves) or formats.qty_fill(leaves)
            if cum:
                avg_px = _avg_px_units(tracked.value, cum)
                cum_text = qty.get(cum) or formats.qty_fill(cum)
                avg_px_text = formats.avg_px.get(avg_px) or formats.avg_px_fill(avg_px)
            else:  # a quote not yet filled: both strings made once per instrument
                cum_text, avg_px_text = formats.qty_zero, formats.avg_px_zero
        tracked.report = data = ExecReport(
            "amended",
            status,
            exec_id,
            template.order_id,
            event.cl_ord_id,
            template.symbol,
            template.side,
            template.type,
            template.tif,
            price_text,
            qty_text,
            None,  # quote_qty: a market buy's only
            leaves_text,
            cum_text,
            avg_px_text,
            None,
            None,
            None,
            None,
            None,
            None,
            template.tag,
            template.quote_set,
            None,
        )
        report = tracked.account, Push("account", 0, epoch, "exec", event.ts_us, data)
        if status in CLOSED:
            del self.orders[event.order_id]
            self.order_reports.append(report)
        return report

    def _on_rejected(self, event: Any, index: int, events: Sequence[Event], out: _Out) -> None:
        if event.command in ORDER_COMMANDS and event.account > 0:
            out.append(self._rejected(event, self._command, self._quote_set))

    def _on_corporate_action(
        self, event: Any, index: int, events: Sequence[Event], out: _Out
    ) -> None:
        out.append((event.account, self._corporate_action(event)))

    def _on_instrument_listed(
        self, event: Any, index: int, events: Sequence[Event], out: _Out
    ) -> None:
        self._learn_spec(event.spec)

    def _on_asset_listed(self, event: Any, index: int, events: Sequence[Event], out: _Out) -> None:
        self.asset_scales[event.spec.code] = event.spec.scale
        self.formats.clear()  # a fee's scale is its quote asset's
        self.balance_strings.pop(event.spec.code, None)

    # ----------------------------------------------------------------- order events

    def _trade(
        self, trade: TradeExecuted, maker_fee: int, taker_fee: int, out: list[tuple[int, Push]]
    ) -> None:
        """One report for the maker's account, then one for the taker's."""
        try:  # subscripts, not `get` and a test (see `_balances`)
            formats = self.formats[trade.symbol]
        except KeyError:
            formats = self._formats(trade.symbol)
        # what both reports say alike, formatted once per trade
        price, qty_units, trade_id = trade.price, trade.qty, trade.trade_id
        qty, qty_fill = formats.qty, formats.qty_fill
        last_px = formats.price.get(price) or formats.price_fill(price)
        last_qty = qty.get(qty_units) or qty_fill(qty_units)
        # the avg_px of an order filled only at this price (a maker's always is, but for an
        # amend to another price between fills; a taker's first fill): no division
        at_price = price * _AVG_PX_FACTOR
        avg_px_at_price = formats.avg_px.get(at_price) or formats.avg_px_fill(at_price)
        value = price * qty_units
        exec_id = self.last_exec_id
        orders = self.orders
        epoch, ts_us = self._epoch, trade.ts_us
        for liquidity, order_id, leaves, cum, status, fee in (
            (
                _MAKER,
                trade.maker_order_id,
                trade.maker_leaves_qty,
                trade.maker_cum_qty,
                trade.maker_status._value_,
                maker_fee,
            ),
            (
                _TAKER,
                trade.taker_order_id,
                trade.taker_leaves_qty,
                trade.taker_cum_qty,
                trade.taker_status._value_,
                taker_fee,
            ),
        ):
            try:
                tracked = orders[order_id]
            except KeyError:
                tracked = self._tracked(order_id, "trade")  # fails: never seen open
            order_value = tracked.value + value
            if order_value == price * cum:
                avg_px_text = avg_px_at_price
            else:
                avg_px = _avg_px_units(order_value, cum)
                avg_px_text = formats.avg_px.get(avg_px) or formats.avg_px_fill(avg_px)
            exec_id += 1
            # the whole report in one constructor call, the order's own fields as its last
            # report gave them (`_Tracked.report`): no formatting
            template = tracked.report
            data = ExecReport(
                "trade",
                status,
                exec_id,
                order_id,
                template.cl_ord_id,
                template.symbol,
                template.side,
                template.type,
                template.tif,
                template.price,
                template.qty,
                template.quote_qty,
                qty.get(leaves) or qty_fill(leaves),
                qty.get(cum) or qty_fill(cum),
                avg_px_text,
                last_px,
                last_qty,
                liquidity,
                trade_id,
                formats.fee.get(fee) or formats.fee_fill(fee),
                formats.fee_asset,
                template.tag,
                template.quote_set,
                None,
            )
            report = tracked.account, Push(CHANNEL, 0, epoch, "exec", ts_us, data)
            out.append(report)
            if status in CLOSED:  # forgotten: nothing of it is kept (the usual IOC taker)
                del orders[order_id]
                self.order_reports.append(report)
            else:  # what its later reports need (see `_Tracked`)
                tracked.value, tracked.leaves_qty, tracked.cum_qty = order_value, leaves, cum
                tracked.status = status
                tracked.report = data
        self.last_exec_id = exec_id

    def _closed(
        self,
        event: OrderCanceled | OrderExpired | SelfTradePrevented,
        exec_type: str,
        status: str,
        reason: str,
        out: _Out,
    ) -> ExecReport:
        """The report of an order that left the book (a taker's ioc rest, a cancel), made from
        its last report in one call (`_from_template`); the order is forgotten."""
        try:  # a pop, not `_tracked` and a `del` (see `_balances`)
            tracked = self.orders.pop(event.order_id)
        except KeyError:
            tracked = self._tracked(event.order_id, type(event).__name__)  # fails: never open
        try:
            formats = self.formats[tracked.symbol]
        except KeyError:
            formats = self._formats(tracked.symbol)
        template = tracked.report  # the order's own fields (see `_Tracked`)
        cum = event.cum_qty
        if cum == tracked.cum_qty:  # as its last report says: closing fills nothing
            cum_text, avg_px_text = template.cum_qty, template.avg_px
        else:
            avg_px = _avg_px_units(tracked.value, cum)
            cum_text = formats.qty.get(cum) or formats.qty_fill(cum)
            avg_px_text = formats.avg_px.get(avg_px) or formats.avg_px_fill(avg_px)
        self.last_exec_id = exec_id = self.last_exec_id + 1
        # leaves_qty: nothing is left open
        data = _from_template(
            template, exec_type, status, exec_id, formats.qty_zero, cum_text, avg_px_text, reason
        )
        report = tracked.account, Push(CHANNEL, 0, self._epoch, "exec", event.ts_us, data)
        out.append(report)
        self.order_reports.append(report)
        return data

    def _rejected(
        self, event: CommandRejected, command: Command | None, quote_set: str | None
    ) -> tuple[int, Push]:
        """A refused place, cancel or amend; the order, if open, is as it was."""
        reason = event.reason.name
        place_refused = event.command == "place_order"
        tracked = None if place_refused else self.orders.get(event.order_id)
        if tracked is not None and tracked.account == event.account:
            data = self._report(tracked, "rejected", reason)
            return tracked.account, Push(CHANNEL, 0, self._epoch, "exec", event.ts_us, data)
        place = command if place_refused and isinstance(command, PlaceOrder) else None
        spec = self.specs.get(event.symbol or "")
        data = ExecReport(
            "rejected",
            OrderStatus.REJECTED.value,
            self._next_exec_id(),
            None if place_refused or not event.order_id else event.order_id,
            event.cl_ord_id,
            event.symbol,
            place.side.value if place else None,
            place.order_type.value if place else None,
            place.tif.value if place else None,
            _price(place.price, spec) if place and place.price else None,
            _qty(place.qty, spec) if place else None,
            _quote(place.quote_qty, spec) if place and place.quote_qty else None,
            _qty(0, spec),
            _qty(0, spec),
            _avg_px(0, 0, spec),
            None,
            None,
            None,
            None,
            None,
            None,
            place.tag if place else None,
            quote_set if place else None,
            reason,
        )
        return event.account, Push(CHANNEL, 0, self._epoch, "exec", event.ts_us, data)

    def _report(self, order: _Tracked, exec_type: str, reason: str | None = None) -> ExecReport:
        """An open order's report as it stands, without a trade's fields (a refused cancel or
        amend's)."""
        formats = self.formats.get(order.symbol) or self._formats(order.symbol)
        qty, qty_fill = formats.qty, formats.qty_fill
        avg_px = _avg_px_units(order.value, order.cum_qty) if order.cum_qty else 0
        self.last_exec_id += 1
        return _from_template(
            order.report,  # the order's own fields (see `_Tracked`)
            exec_type,
            order.status,  # a plain str (see `_NEW`)
            self.last_exec_id,
            qty.get(order.leaves_qty) or qty_fill(order.leaves_qty),
            qty.get(order.cum_qty) or qty_fill(order.cum_qty),
            formats.avg_px.get(avg_px) or formats.avg_px_fill(avg_px),
            reason,
        )

    # ----------------------------------------------------------------- ledger events

    def _corporate_action(self, event: CorporateActionApplied) -> Push:
        """A holder's part in a dividend or a split (docs/corporate-actions.md)."""
        scale = self._scale(event.asset)
        is_split = event.kind == "split"
        data = CorporateActionReport(
            event.kind,
            event.symbol,
            event.asset,
            f"{event.ratio_new}:{event.ratio_old}" if is_split else None,
            None if is_split else format_units(event.amount, event.amount_decimals),
            format_units(event.holding_before, scale),
            format_units(event.holding_after, scale),
            event.cash_asset,
            format_units(event.cash_received, self._scale(event.cash_asset)),
            event.settlement_id,
        )
        return Push(CHANNEL, 0, self._epoch, "corporate_action", event.ts_us, data)

    def _settlement(
        self, event: TradeSettled, trade: TradeExecuted | None
    ) -> tuple[list[tuple[int, Push]], int, int]:
        """The settlement to every participant of the trade, each seeing only its own legs,
        with the other participant anonymous (`null`); the venue's accounts are named. With
        its trade: also (maker fee, taker fee) in quote units, found in the same pass."""
        # Each leg is formatted once and viewed by its one or two participants as it is
        # read: one `Leg` per view, none built for the venue's accounts (which get no push).
        # The kind is taken as its plain value once per leg (see `_NEW`).
        maker = taker = 0  # 0: no participant (a settlement without its trade)
        if trade is not None:
            maker, taker = trade.maker_account, trade.taker_account
        views: dict[int, list[Leg]] = {maker: [], taker: []} if trade is not None else {}
        maker_fee = taker_fee = 0
        fee = TransferKind.FEE._value_
        strings_of = self.balance_strings
        for leg in event.transfers:
            debit, credit, asset = leg.debit_account, leg.credit_account, leg.asset
            kind = leg.kind._value_  # plain, see `_NEW`
            try:  # a subscript (see `_balances`)
                strings, fill = strings_of[asset]
            except KeyError:
                strings, fill = self._balance_strings(asset)
            units = leg.amount
            amount = strings.get(units) or fill(units)
            if debit > 0 and credit > 0 and credit != debit:
                # between two participants (a trade's delivery and payment): each sees the
                # other as null; written out, as half of a trade's legs are these
                transfer_id = leg.transfer_id
                try:  # subscripts (see `_balances`): a trade's participants have their views
                    seen = views[debit]
                except KeyError:
                    seen = views[debit] = []
                seen.append(Leg(transfer_id, kind, debit, None, asset, amount))
                try:
                    seen = views[credit]
                except KeyError:
                    seen = views[credit] = []
                seen.append(Leg(transfer_id, kind, None, credit, asset, amount))
                continue
            # Past the test above, one side at most is a participant and the other is the
            # venue's (<= 0) or the same account: `_as_seen_by` names both, no test per leg.
            if debit > 0:  # the debit side's, to the venue (a fee, a rounding) or itself
                if kind == fee:  # each fee leg is its payer's (`_fees` for a self-trade)
                    if debit == maker:
                        maker_fee += units
                    elif debit == taker:
                        taker_fee += units
                try:
                    seen = views[debit]
                except KeyError:
                    seen = views[debit] = []
                seen.append(Leg(leg.transfer_id, kind, debit, credit, asset, amount))
            elif credit > 0:  # the credit side's, from the venue (a rebate)
                try:
                    seen = views[credit]
                except KeyError:
                    seen = views[credit] = []
                seen.append(Leg(leg.transfer_id, kind, debit, credit, asset, amount))
        out = []
        for account, seen in views.items():
            if account > 0:
                data = SettlementReport(event.settlement_id, event.trade_id, event.symbol, seen)
                out.append(
                    (account, Push(CHANNEL, 0, self._epoch, "settlement", event.ts_us, data))
                )
        if trade is not None and maker == taker:  # a self-trade: whose fee leg is whose
            maker_fee, taker_fee = _fees(trade, event, self.specs[trade.symbol])
        return out, maker_fee, taker_fee

    # ----------------------------------------------------------------- bookkeeping

    def _learn_spec(self, spec: InstrumentSpec) -> None:
        self.specs[spec.symbol] = spec
        self.asset_scales.setdefault(spec.base, spec.qty_decimals)
        self.asset_scales.setdefault(spec.quote, spec.quote_decimals)
        self.formats.pop(spec.symbol, None)

    def _formats(self, symbol: str) -> "_Formats":
        spec = self.specs[symbol]
        formats = self.formats[symbol] = _Formats(spec, self._scale(spec.quote))
        return formats

    def _balance_strings(self, asset: str) -> tuple[dict[int, str], Filler]:
        strings = self.balance_strings[asset] = plain_strings(self._scale(asset))
        return strings

    def _scale(self, asset: str) -> int:
        scale = self.asset_scales.get(asset)
        assert scale is not None, f"no scale known for asset {asset}"
        return scale

    def _tracked(self, order_id: int, what: str) -> _Tracked:
        tracked = self.orders.get(order_id)
        assert tracked is not None, f"{what} of order {order_id}, which was never seen open"
        return tracked

    def _next_exec_id(self) -> int:
        self.last_exec_id += 1
        return self.last_exec_id


def anonymized(viewer: int, payload: bytes) -> bytes:
    """A stored private push as `viewer` may see it now: a settlement written before
    counterparties were anonymous (in an older snapshot's history) loses the legs that are
    not the viewer's and the other participant's id; anything else is returned as it is."""
    if b'"type":"settlement"' not in payload:
        return payload
    push = msgspec.json.decode(payload)
    legs = push["data"]["legs"]
    legs[:] = [leg for leg in legs if viewer in (leg["from"], leg["to"])]
    for leg in legs:
        for end in ("from", "to"):
            if leg[end] is not None:  # None: already anonymous
                leg[end] = _as_seen_by(viewer, leg[end])
    return msgspec.json.encode(push)


def _as_seen_by(viewer: int, account: int) -> int | None:
    """An account id as `viewer` may see it: its own and the venue's (<= 0); on a lit venue
    the counterparty is anonymous (None)."""
    return account if account == viewer or account <= 0 else None


class _Formats:
    """One instrument's decimal strings (`gateway.decimals`), looked up by the reports: per
    field a plain table, read `table.get(units) or fill(units)`, and its filler."""

    __slots__ = (
        "avg_px",
        "avg_px_fill",
        "avg_px_zero",
        "fee",
        "fee_asset",
        "fee_fill",
        "price",
        "price_fill",
        "qty",
        "qty_fill",
        "qty_zero",
        "quote",
        "quote_fill",
    )

    def __init__(self, spec: InstrumentSpec, fee_scale: int) -> None:
        self.price, self.price_fill = plain_strings_at(spec.price_decimals)
        self.qty, self.qty_fill = plain_strings_at(spec.qty_decimals)
        self.quote, self.quote_fill = plain_strings_at(spec.quote_decimals)
        avg_px_scale = spec.price_decimals + AVG_PX_EXTRA_DECIMALS
        self.avg_px, self.avg_px_fill = plain_strings_at(avg_px_scale)
        self.fee, self.fee_fill = plain_strings_at(fee_scale)  # the quote asset's own scale
        self.fee_asset = spec.quote
        self.qty_zero = format_units(0, spec.qty_decimals)  # every new order's cum_qty
        self.avg_px_zero = format_units(0, avg_px_scale)  # and its avg_px


def _settlement_of(
    events: Sequence[Event], index: int, trade: TradeExecuted
) -> TradeSettled | None:
    """The settlement of the trade at `index`: the clearing books it right after the match."""
    # usually the very next event: an index loop, not a generator per trade
    for position in range(index + 1, len(events)):
        event = events[position]
        if type(event) is TradeSettled and event.trade_id == trade.trade_id:
            if event.symbol == trade.symbol:
                return event
        elif type(event) is TradeExecuted:
            return None  # a venue without a ledger: the next trade came first
    return None


def _fees(
    trade: TradeExecuted, settled: TradeSettled | None, spec: InstrumentSpec
) -> tuple[int, int]:
    """(maker fee, taker fee) of one trade in quote units, from its settlement's fee legs
    (`_settlement` finds them in its own pass over the legs; it asks here for a self-trade)."""
    if settled is None:
        return 0, 0
    taker_buys = trade.taker_side is Side.BUY
    buyer, seller = (
        (trade.taker_account, trade.maker_account)
        if taker_buys
        else (trade.maker_account, trade.taker_account)
    )
    if buyer != seller:
        # one pass, no list or generator per trade: each fee leg is its payer's
        buyer_fee = seller_fee = 0
        for leg in settled.transfers:
            if leg.kind is TransferKind.FEE:
                if leg.debit_account == buyer:
                    buyer_fee += leg.amount
                elif leg.debit_account == seller:
                    seller_fee += leg.amount
        return (seller_fee, buyer_fee) if taker_buys else (buyer_fee, seller_fee)
    fee_legs = [leg for leg in settled.transfers if leg.kind is TransferKind.FEE]
    if len(fee_legs) == 2:  # a self-trade: the buyer's fee leg comes first
        buyer_fee, seller_fee = fee_legs[0].amount, fee_legs[1].amount
    else:
        # One leg of a self-trade: the buyer's unless the buyer's rate is zero. (Ambiguous
        # only when both rates are set and one fee rounded to nothing; then it is the buyer's.)
        buyer_bps = spec.taker_fee_bps if taker_buys else spec.maker_fee_bps
        amount = fee_legs[0].amount if fee_legs else 0
        buyer_fee, seller_fee = (amount, 0) if buyer_bps else (0, amount)
    return (seller_fee, buyer_fee) if taker_buys else (buyer_fee, seller_fee)


def _price(units: int, spec: InstrumentSpec | None) -> str | None:
    return None if spec is None else format_units(units, spec.price_decimals)


def _qty(units: int, spec: InstrumentSpec | None) -> str | None:
    return None if spec is None else format_units(units, spec.qty_decimals)


def _quote(units: int, spec: InstrumentSpec | None) -> str | None:
    return None if spec is None else format_units(units, spec.quote_decimals)


def _avg_px(value: int, cum_qty: int, spec: InstrumentSpec | None) -> str | None:
    """value / cum_qty in price units, rounded half to even at the extra decimals."""
    if spec is None:
        return None
    return format_units(_avg_px_units(value, cum_qty), spec.price_decimals + AVG_PX_EXTRA_DECIMALS)


def _from_template(
    template: ExecReport,
    exec_type: str,
    status: str,
    exec_id: int,
    leaves_qty: str | None,
    cum_qty: str | None,
    avg_px: str | None,
    reason: str | None,
) -> ExecReport:
    """A report without a trade's fields (a close, a refused cancel or amend): the order's own
    fields as its last report (`template`) gave them, the rest as given."""
    return ExecReport(
        exec_type,
        status,
        exec_id,
        template.order_id,
        template.cl_ord_id,
        template.symbol,
        template.side,
        template.type,
        template.tif,
        template.price,
        template.qty,
        template.quote_qty,
        leaves_qty,
        cum_qty,
        avg_px,
        None,  # last_px .. fee_asset: a trade's
        None,
        None,
        None,
        None,
        None,
        template.tag,
        template.quote_set,
        reason,
    )


def _avg_px_units(value: int, cum_qty: int) -> int:
    """value / cum_qty in units of the avg_px scale (price decimals + the extra ones),
    rounded half to even; 0 before any fill."""
    if not cum_qty:
        return 0
    quotient, remainder = divmod(value * _AVG_PX_FACTOR, cum_qty)
    if 2 * remainder > cum_qty or (2 * remainder == cum_qty and quotient % 2):
        quotient += 1
    return quotient
