"""A naive reference matcher for the differential test of `engine.venue.Venue`.

Written from docs/engine.md in the simplest way that could work, with no regard for speed:
per symbol one plain list of resting orders (plain dicts) in the order they joined the book,
the best order found by sorting that list, exact notionals as `Fraction`s, expiry by scanning
every open order. It shares nothing with the engine but the vocabulary (commands, events,
enums, reasons, the instrument spec and the unit bounds), so the two can only agree by both
being right. The few things docs/engine.md leaves open (the wording of `detail`, which ids a
rejection carries, the order of the admin cancels of a delisting) follow the engine's choices,
each marked "engine's choice" below.
"""

from fractions import Fraction
from typing import Any

from engine.commands import (
    AdvanceClock,
    AmendOrder,
    CancelAll,
    CancelOrder,
    ListInstrument,
    PlaceOrder,
    SetInstrumentStatus,
    SetReferencePrice,
)
from engine.enums import (
    CancelReason,
    InstrumentKind,
    InstrumentStatus,
    Liquidity,
    OrderStatus,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from engine.events import (
    CommandRejected,
    Event,
    InstrumentListed,
    InstrumentStatusChanged,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    ReferencePriceSet,
    SelfTradePrevented,
    TradeExecuted,
)
from engine.instrument import InstrumentSpec
from engine.reasons import ErrorCode
from engine.units import UNITS_MAX

E = ErrorCode
TEXT_MAX = 36  # cl_ord_id and tag: 1..36 characters

Order = dict[str, Any]
Market = dict[str, Any]


class ReferenceVenue:
    """Same interface as `engine.venue.Venue.execute`, same events, none of its machinery."""

    def __init__(
        self,
        open_orders_per_account_max: int = 20_000,
        closed_orders_retained_max: int = 1_000_000,
    ) -> None:
        self.open_max = open_orders_per_account_max
        self.closed_max = closed_orders_retained_max
        self.markets: dict[str, Market] = {}
        self.open: dict[int, Order] = {}  # every open (resting) order by id
        self.closed: dict[int, int] = {}  # order id -> account, oldest closed first
        self.last_order_id = 0
        self.ts = 0
        self.events: list[Event] = []

    # ------------------------------------------------------------------ entry point

    def execute(self, cmd: Any) -> list[Event]:
        assert cmd.ts_us >= self.ts, "time went backwards"
        self.ts = cmd.ts_us
        self.events = []
        self._expire_gtd()
        if isinstance(cmd, PlaceOrder):
            self._place(cmd)
        elif isinstance(cmd, CancelOrder):
            self._cancel(cmd)
        elif isinstance(cmd, AmendOrder):
            self._amend(cmd)
        elif isinstance(cmd, CancelAll):
            self._cancel_all(cmd)
        elif isinstance(cmd, ListInstrument):
            self._list(cmd)
        elif isinstance(cmd, SetInstrumentStatus):
            self._set_status(cmd)
        elif isinstance(cmd, SetReferencePrice):
            self._set_reference(cmd)
        else:
            assert isinstance(cmd, AdvanceClock), f"unknown command {cmd!r}"
        return self.events

    # ------------------------------------------------------------------ queries

    def state_summary(self) -> dict[str, list[tuple[int, int, Side, int, int, int]]]:
        """Per symbol, the resting orders in priority order: bids best first, then asks."""
        summary = {}
        for symbol in self.markets:
            rows = []
            for side in (Side.BUY, Side.SELL):
                for o in self.side_in_priority(symbol, side):
                    rows.append(
                        (o["id"], o["account"], o["side"], o["price"], o["leaves"], o["cum"])
                    )
            summary[symbol] = rows
        return summary

    def side_in_priority(self, symbol: str, side: Side) -> list[Order]:
        """One side of a book, best price first, then the order that joined the book first."""
        orders = [o for o in self.markets[symbol]["book"] if o["side"] == side]
        if side == Side.BUY:
            return sorted(orders, key=lambda o: -o["price"])  # stable: time order kept
        return sorted(orders, key=lambda o: o["price"])

    def account_open_orders(self, account: int) -> list[Order]:
        return [o for o in self.open.values() if o["account"] == account]

    def reference_price(self, symbol: str) -> int:
        return int(self.markets[symbol]["ref"])

    def band(self, symbol: str) -> tuple[int, int]:
        market = self.markets[symbol]
        return market["low"], market["high"]

    # ------------------------------------------------------------------ helpers

    def _reject(self, cmd: Any, name: str, reason: ErrorCode, detail: str, order_id: int = 0):
        # Engine's choice: the command's own account, symbol and cl_ord_id, when it has them.
        self.events.append(
            CommandRejected(
                self.ts,
                name,
                reason,
                detail,
                getattr(cmd, "account", 0),
                getattr(cmd, "symbol", None),
                order_id,
                getattr(cmd, "cl_ord_id", None),
            )
        )

    @staticmethod
    def notional(market: Market, price: int, qty: int) -> Fraction:
        """The exact value of price x qty in units of the quote asset."""
        spec: InstrumentSpec = market["spec"]
        per_face = 100 if spec.kind == InstrumentKind.TBILL else 1
        return Fraction(
            price * qty * 10**spec.quote_decimals,
            10 ** (spec.price_decimals + spec.qty_decimals) * per_face,
        )

    def _set_ref(self, market: Market, price: int) -> None:
        """Move the reference price and recompute the band around it (docs: 'The band')."""
        spec: InstrumentSpec = market["spec"]
        tick = spec.price_tick
        up = Fraction(price) * (1 + Fraction(spec.price_band_bps, 10_000))
        down = Fraction(price) * (1 - Fraction(spec.price_band_bps, 10_000))
        high = (int(up // 1) // tick) * tick  # floor, then down onto the tick
        low_units = -((-down.numerator) // down.denominator)  # ceil
        low = -((-low_units) // tick) * tick  # up onto the tick
        market["ref"] = price
        market["high"] = high
        market["low"] = max(low, tick)

    def _close(self, order: Order) -> None:
        """The order is no longer open: forget it but remember its owner by id."""
        self.open.pop(order["id"], None)
        self.closed[order["id"]] = order["account"]
        while len(self.closed) > self.closed_max:  # the last `closed_max` closed orders
            del self.closed[next(iter(self.closed))]

    def _unbook(self, order: Order) -> None:
        book = self.markets[order["symbol"]]["book"]
        for i, o in enumerate(book):
            if o is order:
                del book[i]
                return
        raise AssertionError(f"order {order['id']} is not in its book")

    def _find(self, account: int, order_id: int, cl_ord_id: str | None) -> Order | None:
        for o in self.open.values():
            if o["account"] != account:
                continue
            if cl_ord_id is not None:
                if o["cl_ord_id"] == cl_ord_id:
                    return o
            elif o["id"] == order_id:
                return o
        return None

    def _reject_missing(self, cmd: Any, name: str) -> None:
        if cmd.cl_ord_id is None and self.closed.get(cmd.order_id) == cmd.account:
            self._reject(cmd, name, E.ORDER_NOT_OPEN, "the order is closed", cmd.order_id)
        else:
            self._reject(cmd, name, E.UNKNOWN_ORDER, "no such order", cmd.order_id)

    def _best(self, symbol: str, side: Side) -> Order | None:
        orders = self.side_in_priority(symbol, side)
        return orders[0] if orders else None

    @staticmethod
    def _within(side: Side, maker_price: int, limit: int) -> bool:
        """Whether a taker on `side` with this limit price reaches a maker at maker_price."""
        return maker_price <= limit if side == Side.BUY else maker_price >= limit

    @staticmethod
    def _opposite(side: Side) -> Side:
        return Side.SELL if side == Side.BUY else Side.BUY

    # ------------------------------------------------------------------ time

    def _expire_gtd(self) -> None:
        due = [
            o
            for o in self.open.values()
            if o["tif"] == TimeInForce.GTD and o["expire_at"] <= self.ts
        ]
        for o in sorted(due, key=lambda o: (o["expire_at"], o["id"])):
            self._unbook(o)
            expired = o["leaves"]
            o["leaves"] = 0
            o["status"] = OrderStatus.EXPIRED
            self._close(o)
            self.events.append(
                OrderExpired(
                    self.ts, o["id"], o["account"], o["symbol"], CancelReason.GTD, expired, o["cum"]
                )
            )

    # ------------------------------------------------------------------ place

    @staticmethod
    def _shape_problem(cmd: PlaceOrder) -> str | None:
        """docs 'Orders' table; the wording and the order of the checks are the engine's."""

        def bad_text(text: str | None) -> bool:
            return text is not None and not 1 <= len(text) <= TEXT_MAX

        if cmd.account <= 0 or cmd.side not in (Side.BUY, Side.SELL):
            return "account must be positive and side buy or sell"
        if cmd.stp not in list(SelfTradePrevention):
            return "unknown stp mode"
        if not (0 <= cmd.qty <= UNITS_MAX and 0 <= cmd.price <= UNITS_MAX):
            return "price and qty must be within range"
        if bad_text(cmd.cl_ord_id) or bad_text(cmd.tag):
            return "cl_ord_id and tag may have 1..36 characters"
        # docs: gtd needs expire_at_us > 0, other tifs must not have one (0 is "absent").
        if cmd.expire_at_us <= 0 if cmd.tif == TimeInForce.GTD else cmd.expire_at_us != 0:
            return "expire_at is required for gtd and only for gtd"
        if cmd.order_type == OrderType.LIMIT:
            if cmd.price <= 0 or cmd.qty <= 0 or cmd.quote_qty != 0:
                return "a limit order needs a positive price and qty and no quote_qty"
            if cmd.tif not in list(TimeInForce):
                return "unknown tif"
            if cmd.post_only and cmd.tif not in (TimeInForce.GTC, TimeInForce.GTD):
                return "post_only needs tif gtc or gtd"
            return None
        if cmd.order_type != OrderType.MARKET:
            return "order type must be limit or market"
        if cmd.price != 0:
            return "a market order has no price"
        if cmd.tif not in (TimeInForce.IOC, TimeInForce.FOK):
            return f"a market order is ioc or fok, not {cmd.tif}: it never rests"
        if cmd.post_only:
            return "a market order is never post_only: it takes"
        if (cmd.qty > 0) == (cmd.quote_qty > 0) or not 0 <= cmd.quote_qty <= UNITS_MAX:
            return "a market order needs exactly one of qty and quote_qty"
        if cmd.quote_qty > 0 and (cmd.side != Side.BUY or cmd.tif != TimeInForce.IOC):
            return "quote_qty is for ioc market buys only"
        return None

    def _place(self, cmd: PlaceOrder) -> None:
        name = "place_order"
        problem = self._shape_problem(cmd)
        if problem is not None:
            return self._reject(cmd, name, E.BAD_PARAM, problem)
        market = self.markets.get(cmd.symbol)
        if market is None:
            return self._reject(cmd, name, E.UNKNOWN_SYMBOL, f"unknown symbol {cmd.symbol!r}")
        spec: InstrumentSpec = market["spec"]
        sym = cmd.symbol
        status = market["status"]
        is_limit = cmd.order_type == OrderType.LIMIT
        rests = is_limit and cmd.tif in (TimeInForce.GTC, TimeInForce.GTD)
        if status == InstrumentStatus.DELISTED:
            return self._reject(cmd, name, E.INSTRUMENT_DELISTED, f"{sym} is delisted")
        if status == InstrumentStatus.HALTED:
            return self._reject(cmd, name, E.INSTRUMENT_HALTED, f"{sym} is halted")
        if status == InstrumentStatus.CANCEL_ONLY:
            return self._reject(cmd, name, E.CANCEL_ONLY, f"{sym} accepts only cancels")
        if status == InstrumentStatus.POST_ONLY and not cmd.post_only:
            return self._reject(cmd, name, E.POST_ONLY_MODE, f"{sym} accepts only post-only orders")
        if cmd.tif == TimeInForce.GTD and cmd.expire_at_us <= cmd.ts_us:
            return self._reject(cmd, name, E.INVALID_EXPIRE_AT, "expire_at is not in the future")
        if cmd.cl_ord_id is not None:
            live = self._find(cmd.account, 0, cmd.cl_ord_id)
            if live is not None:
                detail = f"cl_ord_id {cmd.cl_ord_id!r} is in use"
                return self._reject(cmd, name, E.DUPLICATE_CL_ORD_ID, detail, live["id"])
        if cmd.price % spec.price_tick != 0:
            return self._reject(cmd, name, E.INVALID_PRICE_TICK, "price is not on the tick")
        if cmd.qty % spec.qty_step != 0:
            return self._reject(cmd, name, E.INVALID_QTY_STEP, "qty is not a multiple of the step")
        if cmd.quote_qty == 0 and cmd.qty < spec.min_qty:
            return self._reject(cmd, name, E.BELOW_MIN_QTY, "qty is below the minimum")
        if is_limit:
            outside = (
                cmd.price > market["high"] if cmd.side == Side.BUY else cmd.price < market["low"]
            )
            if outside:
                return self._reject(cmd, name, E.PRICE_BAND, "price is outside the band")
            if self.notional(market, cmd.price, cmd.qty) < spec.min_notional:
                return self._reject(
                    cmd, name, E.BELOW_MIN_NOTIONAL, "notional is below the minimum"
                )
        elif cmd.quote_qty > 0:
            if cmd.quote_qty < spec.min_notional:
                return self._reject(
                    cmd, name, E.BELOW_MIN_NOTIONAL, "quote_qty is below the minimum notional"
                )
        elif self.notional(market, market["ref"], cmd.qty) < spec.min_notional:
            return self._reject(
                cmd,
                name,
                E.BELOW_MIN_NOTIONAL,
                "notional at the reference price is below the minimum",
            )
        if rests and len(self.account_open_orders(cmd.account)) >= self.open_max:
            return self._reject(
                cmd, name, E.TOO_MANY_OPEN_ORDERS, "the account has too many open orders"
            )

        market_limit = market["high"] if cmd.side == Side.BUY else market["low"]
        limit = cmd.price if is_limit else market_limit  # a market order's limit: the band
        opposite = self._opposite(cmd.side)
        best = self._best(sym, opposite)
        crosses = best is not None and self._within(cmd.side, best["price"], limit)
        if cmd.post_only and crosses:
            return self._reject(cmd, name, E.POST_ONLY_WOULD_TAKE, "the order would take")
        if cmd.tif == TimeInForce.FOK and not self._fok_fillable(cmd, limit):
            return self._reject(cmd, name, E.FOK_NOT_FILLABLE, "not enough liquidity")
        if not is_limit and not crosses:
            return self._reject(
                cmd, name, E.MARKET_NO_LIQUIDITY, "nothing to trade within the band"
            )

        self.last_order_id += 1
        order: Order = {
            "id": self.last_order_id,
            "account": cmd.account,
            "symbol": sym,
            "side": cmd.side,
            "tif": cmd.tif,
            "price": cmd.price,
            "qty": cmd.qty,
            "leaves": cmd.qty,
            "cum": 0,
            "status": OrderStatus.NEW,
            "post_only": cmd.post_only,
            "stp": cmd.stp,
            "cl_ord_id": cmd.cl_ord_id,
            "tag": cmd.tag,
            "expire_at": cmd.expire_at_us,
        }
        self.events.append(
            OrderAccepted(
                self.ts,
                order["id"],
                cmd.account,
                sym,
                cmd.side,
                cmd.order_type,
                cmd.tif,
                cmd.price,
                cmd.qty,
                cmd.quote_qty,
                cmd.post_only,
                cmd.stp,
                cmd.cl_ord_id,
                cmd.tag,
                cmd.expire_at_us,
            )
        )
        still_open = self._match(market, order, limit, cmd.quote_qty) if crosses else True
        if not still_open:
            self._close(order)
        elif rests:
            market["book"].append(order)
            self.open[order["id"]] = order
        else:
            canceled = order["leaves"]
            order["leaves"] = 0
            order["status"] = OrderStatus.CANCELED
            self.events.append(
                OrderCanceled(
                    self.ts,
                    order["id"],
                    order["account"],
                    sym,
                    CancelReason.IOC_REST,
                    canceled,
                    order["cum"],
                )
            )
            self._close(order)
        return None

    def _fok_fillable(self, cmd: PlaceOrder, limit: int) -> bool:
        available = 0
        for maker in self.side_in_priority(cmd.symbol, self._opposite(cmd.side)):
            if not self._within(cmd.side, maker["price"], limit):
                break
            if maker["account"] == cmd.account and cmd.stp != SelfTradePrevention.NONE:
                if cmd.stp == SelfTradePrevention.EXPIRE_MAKER:
                    continue  # it would be expired, not traded
                break  # the taker would be expired here
            available += maker["leaves"]
        return available >= cmd.qty

    # ------------------------------------------------------------------ matching

    def _match(self, market: Market, taker: Order, limit: int, quote_qty: int) -> bool:
        """Trade the taker against the book; True when it is still open afterwards."""
        symbol = market["spec"].symbol
        step = market["spec"].qty_step
        budget = Fraction(quote_qty)
        last_price = 0
        still_open = True
        while True:
            makers = self.side_in_priority(symbol, self._opposite(taker["side"]))
            if not makers or not self._within(taker["side"], makers[0]["price"], limit):
                break
            maker = makers[0]
            price = maker["price"]
            if maker["account"] == taker["account"] and taker["stp"] != SelfTradePrevention.NONE:
                stp = taker["stp"]
                if stp in (SelfTradePrevention.EXPIRE_MAKER, SelfTradePrevention.EXPIRE_BOTH):
                    self._prevent(maker, Liquidity.MAKER, taker["id"])
                    self._unbook(maker)
                    self._close(maker)
                if stp in (SelfTradePrevention.EXPIRE_TAKER, SelfTradePrevention.EXPIRE_BOTH):
                    self._prevent(taker, Liquidity.TAKER, maker["id"])
                    still_open = False
                    break
                continue
            if quote_qty:
                step_cost = self.notional(market, price, step)
                qty = min(int(budget // step_cost) * step, maker["leaves"])
                if qty == 0:
                    break  # this level is too dear for one step: stop here
            else:
                qty = min(taker["leaves"], maker["leaves"])
            maker["leaves"] -= qty
            maker["cum"] += qty
            maker["status"] = (
                OrderStatus.FILLED if maker["leaves"] == 0 else (OrderStatus.PARTIALLY_FILLED)
            )
            taker["cum"] += qty
            if quote_qty:
                budget -= self.notional(market, price, qty)
                done = budget < step_cost
            else:
                taker["leaves"] -= qty
                done = taker["leaves"] == 0
            taker["status"] = OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED
            market["trade_id"] += 1
            last_price = price
            self.events.append(
                TradeExecuted(
                    self.ts,
                    symbol,
                    market["trade_id"],
                    price,
                    qty,
                    taker["side"],
                    maker["id"],
                    maker["account"],
                    maker["leaves"],
                    maker["cum"],
                    maker["status"],
                    taker["id"],
                    taker["account"],
                    taker["leaves"],
                    taker["cum"],
                    taker["status"],
                )
            )
            if maker["leaves"] == 0:
                self._unbook(maker)
                self._close(maker)
            if done:
                still_open = False
                break
        if last_price:
            self._set_ref(market, last_price)
        return still_open

    def _prevent(self, order: Order, liquidity: Liquidity, counter_id: int) -> None:
        prevented = order["leaves"]
        order["leaves"] = 0
        order["status"] = OrderStatus.EXPIRED
        self.events.append(
            SelfTradePrevented(
                self.ts,
                order["id"],
                order["account"],
                order["symbol"],
                prevented,
                order["cum"],
                liquidity,
                counter_id,
            )
        )

    # ------------------------------------------------------------------ cancel

    def _cancel_one(self, order: Order, reason: CancelReason) -> None:
        self._unbook(order)
        canceled = order["leaves"]
        order["leaves"] = 0
        order["status"] = OrderStatus.CANCELED
        self._close(order)
        self.events.append(
            OrderCanceled(
                self.ts,
                order["id"],
                order["account"],
                order["symbol"],
                reason,
                canceled,
                order["cum"],
            )
        )

    def _cancel(self, cmd: CancelOrder) -> None:
        name = "cancel_order"
        if cmd.order_id < 0 or (cmd.order_id > 0) == (cmd.cl_ord_id is not None):
            return self._reject(cmd, name, E.BAD_PARAM, "give exactly one of order_id, cl_ord_id")
        order = self._find(cmd.account, cmd.order_id, cmd.cl_ord_id)
        if order is None:
            return self._reject_missing(cmd, name)
        self._cancel_one(order, cmd.reason)
        return None

    def _cancel_all(self, cmd: CancelAll) -> None:
        name = "cancel_all"
        if cmd.account <= 0 or (cmd.side is not None and cmd.side not in (Side.BUY, Side.SELL)):
            return self._reject(cmd, name, E.BAD_PARAM, "bad account or side")
        if cmd.symbol is not None and cmd.symbol not in self.markets:
            return self._reject(cmd, name, E.UNKNOWN_SYMBOL, f"unknown symbol {cmd.symbol!r}")
        chosen = [
            o
            for o in self.account_open_orders(cmd.account)
            if (cmd.symbol is None or o["symbol"] == cmd.symbol)
            and (cmd.side is None or o["side"] == cmd.side)
            and (cmd.tag is None or o["tag"] == cmd.tag)
        ]
        for order in sorted(chosen, key=lambda o: o["id"]):  # in the order they were accepted
            self._cancel_one(order, cmd.reason)
        return None

    # ------------------------------------------------------------------ amend

    def _amend(self, cmd: AmendOrder) -> None:
        name = "amend_order"
        one_id = (cmd.order_id > 0) != (cmd.cl_ord_id is not None)
        in_range = cmd.order_id >= 0 and 0 <= cmd.price <= UNITS_MAX and 0 <= cmd.qty <= UNITS_MAX
        if not one_id or not in_range:
            return self._reject(cmd, name, E.BAD_PARAM, "one of order_id, cl_ord_id; no negatives")
        new_cl = cmd.new_cl_ord_id
        nothing = cmd.price == 0 and cmd.qty == 0 and new_cl is None
        if nothing or (new_cl is not None and not 1 <= len(new_cl) <= TEXT_MAX):
            return self._reject(cmd, name, E.BAD_PARAM, "give price, qty or a new cl_ord_id")
        order = self._find(cmd.account, cmd.order_id, cmd.cl_ord_id)
        if order is None:
            return self._reject_missing(cmd, name)
        market = self.markets[order["symbol"]]
        spec: InstrumentSpec = market["spec"]
        sym = order["symbol"]
        status = market["status"]
        price = cmd.price or order["price"]
        qty = cmd.qty or order["qty"]
        renames = new_cl is not None and new_cl != order["cl_ord_id"]

        def refuse(reason: ErrorCode, detail: str) -> None:
            # Engine's choice: an amend's rejection carries the target order's id.
            self._reject(cmd, name, reason, detail, order["id"])

        if status == InstrumentStatus.HALTED:
            return refuse(E.INSTRUMENT_HALTED, f"{sym} is halted")
        if status == InstrumentStatus.CANCEL_ONLY:
            return refuse(E.CANCEL_ONLY, f"{sym} accepts only cancels")
        if price == order["price"] and qty == order["qty"] and not renames:
            return refuse(E.AMEND_REJECTED, "the amend changes nothing")
        if renames and self._find(order["account"], 0, new_cl) is not None:
            return refuse(E.DUPLICATE_CL_ORD_ID, f"cl_ord_id {new_cl!r} is in use")
        if price % spec.price_tick != 0:
            return refuse(E.INVALID_PRICE_TICK, "price is not on the tick")
        if qty % spec.qty_step != 0:
            return refuse(E.INVALID_QTY_STEP, "qty is not a multiple of the step")
        done = qty <= order["cum"]
        if not done:
            if qty < spec.min_qty:
                return refuse(E.BELOW_MIN_QTY, "qty is below the minimum")
            outside = price > market["high"] if order["side"] == Side.BUY else price < market["low"]
            if outside:
                return refuse(E.PRICE_BAND, "price is outside the band")
            if self.notional(market, price, qty) < spec.min_notional:
                return refuse(E.BELOW_MIN_NOTIONAL, "notional is below the minimum")
            best = self._best(sym, self._opposite(order["side"]))
            if best is not None and self._within(order["side"], best["price"], price):
                if status == InstrumentStatus.POST_ONLY:
                    return refuse(E.POST_ONLY_MODE, f"{sym} accepts only post-only orders")
                if order["post_only"]:
                    return refuse(E.POST_ONLY_WOULD_TAKE, "the amended order would take")

        # Applying it.
        if renames:
            order["cl_ord_id"] = new_cl
        keeps_priority = price == order["price"] and qty <= order["qty"]
        if done:
            self._unbook(order)
            order["qty"] = order["cum"]  # docs: done at what traded; the price stays the old one
            order["leaves"] = 0
            order["status"] = OrderStatus.FILLED
            self._close(order)
        elif keeps_priority:
            order["leaves"] -= order["qty"] - qty
            order["qty"] = qty
        else:
            self._unbook(order)
            order["price"] = price
            order["qty"] = qty
            order["leaves"] = qty - order["cum"]
        self.events.append(
            OrderAmended(
                self.ts,
                order["id"],
                order["account"],
                sym,
                order["price"],
                order["qty"],
                order["leaves"],
                order["cum"],
                order["status"],
                keeps_priority,
                order["cl_ord_id"],
            )
        )
        if done or keeps_priority:
            return None
        best = self._best(sym, self._opposite(order["side"]))
        crosses = best is not None and self._within(order["side"], best["price"], price)
        if crosses and not self._match(market, order, price, 0):
            self._close(order)
            return None
        market["book"].append(order)  # the back of its new level
        return None

    # ------------------------------------------------------------------ operators

    def _list(self, cmd: ListInstrument) -> None:
        name = "list_instrument"
        spec = cmd.spec
        problem = spec.problem() if isinstance(spec, InstrumentSpec) else "spec is missing"
        if problem is not None:
            return self._reject(cmd, name, E.BAD_PARAM, problem)
        if spec.symbol in self.markets:
            return self._reject(cmd, name, E.INSTRUMENT_EXISTS, spec.symbol)
        market: Market = {
            "spec": spec,
            "status": InstrumentStatus.OPEN,
            "trade_id": 0,
            "book": [],
        }
        self._set_ref(market, spec.reference_price)
        self.markets[spec.symbol] = market
        self.events.append(InstrumentListed(self.ts, spec))
        return None

    def _operable(self, cmd: Any, name: str) -> Market | None:
        market = self.markets.get(cmd.symbol)
        if market is None:
            self._reject(cmd, name, E.UNKNOWN_SYMBOL, f"unknown symbol {cmd.symbol!r}")
            return None
        if market["status"] == InstrumentStatus.DELISTED:
            detail = f"{cmd.symbol} is delisted, which is final: nothing about it changes any more"
            self._reject(cmd, name, E.INSTRUMENT_DELISTED, detail)
            return None
        return market

    def _set_status(self, cmd: SetInstrumentStatus) -> None:
        name = "set_instrument_status"
        if cmd.status not in list(InstrumentStatus):
            detail = f"status {cmd.status!r} is not one of {', '.join(InstrumentStatus)}"
            return self._reject(cmd, name, E.BAD_PARAM, detail)
        market = self._operable(cmd, name)
        if market is None:
            return None
        market["status"] = cmd.status
        self.events.append(InstrumentStatusChanged(self.ts, cmd.symbol, cmd.status))
        if cmd.status == InstrumentStatus.DELISTED:
            # Engine's choice: bids then asks, each in priority order.
            for side in (Side.BUY, Side.SELL):
                for order in self.side_in_priority(cmd.symbol, side):
                    self._cancel_one(order, CancelReason.ADMIN)
        return None

    def _set_reference(self, cmd: SetReferencePrice) -> None:
        name = "set_reference_price"
        if not 0 < cmd.price <= UNITS_MAX:
            return self._reject(cmd, name, E.BAD_PARAM, "price must be positive")
        market = self._operable(cmd, name)
        if market is None:
            return None
        if cmd.price % market["spec"].price_tick != 0:
            return self._reject(cmd, name, E.INVALID_PRICE_TICK, "price is not on the tick")
        self._set_ref(market, cmd.price)
        self.events.append(ReferencePriceSet(self.ts, cmd.symbol, cmd.price))
        return None
