"""A naive price-time book, independent of `engine/`: the yardstick a real engine beats.

Per side a plain dict of price -> list of orders, oldest first; the best price is found by
a linear scan of the keys on every look. It supports what the workloads send: gtc and ioc
limits, cancels, and amends of price or qty (a new price or a larger qty loses time
priority; a smaller qty keeps it; a qty at or below what traded completes the order). It
trusts its input: no validation, no self-trade prevention (the workloads never self-trade).
Order ids are counted from 1 per accepted order, as the venue counts them.
"""

from collections.abc import Sequence

from bench.adapters.base import AdapterResult, time_each
from bench.workloads import Workload
from engine.commands import AmendOrder, CancelOrder, Command, ListInstrument, PlaceOrder
from engine.enums import OrderType, Side, TimeInForce

PLACE = 0
CANCEL = 1
AMEND = 2
RESTING_TIFS = (TimeInForce.GTC, TimeInForce.IOC)


class NaiveOrder:
    __slots__ = ("buy", "cum", "leaves", "order_id", "price", "qty")

    def __init__(self, order_id: int, buy: bool, price: int, qty: int) -> None:
        self.order_id = order_id
        self.buy = buy
        self.price = price
        self.qty = qty
        self.leaves = qty
        self.cum = 0


class NaiveBook:
    """One instrument's book; `apply` takes a converted command, returns what it traded."""

    def __init__(self) -> None:
        self.bids: dict[int, list[NaiveOrder]] = {}
        self.asks: dict[int, list[NaiveOrder]] = {}
        self.orders: dict[int, NaiveOrder] = {}
        self.last_order_id = 0

    def apply(self, command: tuple[int, ...]) -> int:
        op = command[0]
        if op == PLACE:
            _, buy, price, qty, ioc = command
            return self.place(bool(buy), price, qty, bool(ioc))
        if op == CANCEL:
            self.cancel(command[1])
            return 0
        _, order_id, price, qty = command
        return self.amend(order_id, price, qty)

    def place(self, buy: bool, price: int, qty: int, ioc: bool) -> int:
        self.last_order_id += 1
        order = NaiveOrder(self.last_order_id, buy, price, qty)
        traded = self._match(order)
        if order.leaves and not ioc:
            self._rest(order)
        return traded

    def cancel(self, order_id: int) -> None:
        order = self.orders.get(order_id)
        if order is not None:
            self._unrest(order)

    def amend(self, order_id: int, price: int, qty: int) -> int:
        order = self.orders.get(order_id)
        if order is None:
            return 0
        price = price or order.price
        qty = qty or order.qty
        if price == order.price and qty == order.qty:
            return 0  # the venue refuses an amend that changes nothing
        if qty <= order.cum:  # amended down to what traded: done
            self._unrest(order)
            return 0
        if price == order.price and qty < order.qty:  # keeps its place in the queue
            order.leaves -= order.qty - qty
            order.qty = qty
            return 0
        self._unrest(order)
        order.price = price
        order.qty = qty
        order.leaves = qty - order.cum
        traded = self._match(order)
        if order.leaves:
            self._rest(order)
        return traded

    def _match(self, taker: NaiveOrder) -> int:
        opposite = self.asks if taker.buy else self.bids
        traded = 0
        while taker.leaves and opposite:
            best = min(opposite) if taker.buy else max(opposite)
            if (best > taker.price) if taker.buy else (best < taker.price):
                break
            level = opposite[best]
            maker = level[0]
            qty = min(taker.leaves, maker.leaves)
            maker.leaves -= qty
            maker.cum += qty
            taker.leaves -= qty
            taker.cum += qty
            traded += qty
            if not maker.leaves:
                level.pop(0)
                del self.orders[maker.order_id]
                if not level:
                    del opposite[best]
        return traded

    def _rest(self, order: NaiveOrder) -> None:
        side = self.bids if order.buy else self.asks
        side.setdefault(order.price, []).append(order)
        self.orders[order.order_id] = order

    def _unrest(self, order: NaiveOrder) -> None:
        side = self.bids if order.buy else self.asks
        level = side[order.price]
        level.remove(order)
        if not level:
            del side[order.price]
        del self.orders[order.order_id]


def convert(command: Command) -> tuple[int, ...] | None:
    """The naive form of an engine command; None for what a single book ignores."""
    if type(command) is PlaceOrder:
        if command.order_type is not OrderType.LIMIT or command.tif not in RESTING_TIFS:
            raise ValueError(f"the naive book takes gtc and ioc limits only: {command}")
        if command.post_only:
            raise ValueError(f"the naive book has no post-only orders: {command}")
        buy = command.side is Side.BUY
        ioc = command.tif is TimeInForce.IOC
        return (PLACE, int(buy), command.price, command.qty, int(ioc))
    if type(command) is CancelOrder:
        return (CANCEL, command.order_id)
    if type(command) is AmendOrder:
        return (AMEND, command.order_id, command.price, command.qty)
    if type(command) is ListInstrument:
        return None
    raise ValueError(f"the naive book cannot run {type(command).__name__}")


class NaiveAdapter:
    """`NaiveBook` fed the workload's commands, converted before the clock starts."""

    name = "naive"

    def __init__(self) -> None:
        self.book: NaiveBook | None = None

    def available(self) -> tuple[bool, str]:
        return True, ""

    def prepare(self, workload: Workload) -> Sequence[object]:
        self.book = NaiveBook()
        for command in workload.setup:
            converted = convert(command)
            if converted is not None:
                self.book.apply(converted)
        return [c for c in map(convert, workload.commands) if c is not None]

    def run(self, commands: Sequence[object]) -> AdapterResult:
        assert self.book is not None, "prepare() first"
        seconds, latencies, outputs, cpu_seconds = time_each(self.book.apply, commands)
        self.book = None
        traded = 0
        for qty in outputs:
            assert isinstance(qty, int), qty
            traded += qty
        return AdapterResult(seconds, latencies, traded, cpu_seconds)
