"""The order book of one instrument: resting orders by price-time priority.

Owns the resting orders and their arrangement: per side a dict of price levels, each level
a dict of orders in arrival order (time priority, O(1) cancel), and the level keys kept
sorted in a plain list by `bisect`. Keys are the price for asks and minus the price for
bids, so on both sides the smallest key is the best level. The list beats a `SortedList`
here: a new level costs one C-level bisect and memmove instead of a dozen Python calls. A
level emptied behind the best stays in the list, dormant, until an order comes to its price
again (no bisect either way) or the best reaches it; `DORMANT_LEVELS_MAX` bounds them.
Matching, validation and events belong to `engine.venue`; the book only keeps itself
consistent.
"""

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator
from itertools import islice

import msgspec

from engine.enums import (
    OrderStatus,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
)

# Dormant levels a side keeps at most: a churning book reopens most emptied prices soon;
# each costs ~200 bytes, and past this the side forgets them all in one pass over its keys.
DORMANT_LEVELS_MAX = 1_024


class Order(msgspec.Struct, gc=False, array_like=True):
    """A live order; mutable so that fills update it in place.

    A msgspec struct rather than a slots class: built in C, it costs a fraction of a Python
    `__init__` on the hot path. It holds no references back into the book (`gc=False`).
    """

    order_id: int
    account: int
    symbol: str
    side: Side
    order_type: OrderType
    tif: TimeInForce
    price: int
    qty: int
    leaves_qty: int
    cum_qty: int
    filled_value: int  # sum of price x qty over fills, for the average price
    post_only: bool
    stp: SelfTradePrevention
    cl_ord_id: str | None
    tag: str | None
    expire_at_us: int
    status: OrderStatus
    # Clearing's running totals (zero when the venue runs without a ledger):
    hold: int = 0  # what the order holds in the ledger: cash for a buy, base for a sell
    fee_exact: int = 0  # exact fees so far, in 1/(den x 10,000) quote units
    fees_paid: int = 0  # fees booked so far
    # Last, with a default: images written before it existed still load (see engine.snapshot).
    quote_set: str | None = None  # the `quote.mass` set it quotes for, if any
    cod: bool = False  # placed with cancel-on-disconnect on: canceled at a start after a crash


class Level:
    """All resting orders at one price, oldest first, and their total remaining quantity.

    A slots class, not a msgspec struct: `qty` changes on every add, fill and cancel, and
    the interpreter specializes attribute stores on slots but not on a struct's own setattr.
    """

    __slots__ = ("key", "orders", "price", "qty")

    def __init__(self, price: int, key: int) -> None:
        self.price = price
        self.key = key
        self.orders: dict[int, Order] = {}
        self.qty = 0


class BookSide:
    """One side of a book. `best` is cached so the matcher reads it without a search."""

    __slots__ = ("best", "dormant", "keys", "levels", "sign", "spare")

    def __init__(self, side: Side) -> None:
        self.sign = -1 if side is Side.BUY else 1
        self.levels: dict[int, Level] = {}  # the live levels: each holds an order
        # Sorted ascending: every live key, best first, and every dormant one behind it.
        self.keys: list[int] = []
        # Levels emptied behind the best, by key: their keys stay in `keys`, so that the
        # next order at that price reopens the level without a bisect (~900 instructions
        # to take a key out, ~750 to put it back). Not state: every reader skips them.
        self.dormant: dict[int, Level] = {}
        self.best: Level | None = None
        # The last best level dropped, empty, for the next new level: reusing it saves ~2,000
        # instructions (a Python `__init__`, a dict, a deallocation of each). Not state.
        self.spare: Level | None = None

    def add(self, order: Order) -> None:
        """Append `order` at the back of its price level, creating the level if needed."""
        key = order.price * self.sign
        level = self.levels.get(key)
        if level is None:
            level = self.new_level(order.price, key)
        level.orders[order.order_id] = order
        level.qty += order.leaves_qty

    def new_level(self, price: int, key: int) -> Level:
        """Open an empty level at `price` (its `key`), moving `best` to it if it is better."""
        dormant = self.dormant
        if dormant:
            level = dormant.pop(key, None)
            if level is not None:  # its key is in place, behind the best
                self.levels[key] = level
                return level
        level = self.spare
        if level is None:
            level = Level(price, key)
        else:
            self.spare = None
            level.price = price
            level.key = key
        self.levels[key] = level
        insort(self.keys, key)
        best = self.best
        if best is None or key < best.key:
            self.best = level
        return level

    def remove(self, order: Order) -> None:
        """Take `order` out of its level, dropping the level when it empties."""
        level = self.levels[order.price * self.sign]
        del level.orders[order.order_id]
        level.qty -= order.leaves_qty
        if not level.orders:
            self.drop_level(level)

    def move(self, order: Order, price: int, leaves_qty: int) -> None:
        """Move a resting order to the back of the level at `price` with `leaves_qty` left.

        `remove` then `add` in one call: the hot path of a price amend.
        """
        sign = self.sign
        levels = self.levels
        level = levels[order.price * sign]
        orders = level.orders
        del orders[order.order_id]
        level.qty -= order.leaves_qty
        order.price = price
        # A price amend keeps the quantity: skip the store then (a store on a msgspec struct
        # is never specialised, ~280 instructions; the compare is specialised, a dozen).
        if leaves_qty != order.leaves_qty:
            order.leaves_qty = leaves_qty
        key = price * sign
        target = levels.get(key)
        # The dormant cases (most moves of a churning book: half reopen a dormant level, half
        # leave one behind the best) are `new_level` and `drop_level` written out: a Python
        # call costs ~450 instructions, more than either body.
        if target is None:
            target = self.dormant.pop(key, None)
            if target is not None:
                levels[key] = target  # reopened: its key is in place, behind the best
            else:
                if orders or level is self.best:
                    if not orders:  # the best goes to `spare`
                        self.drop_level(level)
                    target = self.new_level(price, key)
                else:  # an emptied level behind the best moves to a price no level holds
                    target = self.rekey_level(level, price, key)
                target.orders[order.order_id] = order
                target.qty += leaves_qty
                return
        if not orders and target is not level:
            if level is self.best:
                self.drop_level(level)
            else:  # behind the best: dormant, as `drop_level` leaves it
                old_key = level.key
                del levels[old_key]
                dormant = self.dormant
                dormant[old_key] = level
                orders.clear()  # free the table of the most orders it held
                if len(dormant) > DORMANT_LEVELS_MAX:
                    self.forget_dormant()
        target.orders[order.order_id] = order
        target.qty += leaves_qty

    def rekey_level(self, level: Level, price: int, key: int) -> Level:
        """Move an empty level behind the best to a `price` (its `key`) no level holds.

        What `drop_level` then `new_level` would do with a fresh level, without building
        one (~2,000 instructions: a Python `__init__`, a dict, two deallocations).
        """
        assert level is not self.best, "rekeying the best level"
        levels = self.levels
        keys = self.keys
        del levels[level.key]
        del keys[bisect_left(keys, level.key)]
        level.price = price
        level.key = key
        levels[key] = level
        insort(keys, key)
        best = self.best
        if best is None or key < best.key:
            self.best = level
        return level

    def drop_level(self, level: Level) -> None:
        """Forget an empty level and move `best` on if it was the best."""
        key = level.key
        levels = self.levels
        del levels[key]
        if self.best is not level:  # behind the best: dormant, its key stays in place
            dormant = self.dormant
            dormant[key] = level
            # Emptied, its dict keeps the table of the most orders it held: free it.
            level.orders.clear()
            if len(dormant) > DORMANT_LEVELS_MAX:
                self.forget_dormant()
            return
        keys = self.keys
        dormant = self.dormant
        if dormant:  # the next live key may come after dormant ones: forget those
            end = 1
            while end < len(keys) and keys[end] in dormant:
                del dormant[keys[end]]
                end += 1
            del keys[:end]
        else:
            del keys[0]
        self.best = levels[keys[0]] if keys else None
        self.spare = level

    def forget_dormant(self) -> None:
        """Take every dormant level's key out of `keys` (one pass)."""
        dormant = self.dormant
        self.keys[:] = [key for key in self.keys if key not in dormant]
        dormant.clear()

    def depth(self, levels_max: int) -> list[tuple[int, int]]:
        """The best `levels_max` levels as (price, total quantity), best first."""
        return [(level.price, level.qty) for level in islice(self.iter_levels(), levels_max)]

    def iter_levels(self) -> Iterator[Level]:
        """Every level, best first."""
        levels = self.levels
        for key in self.keys:
            level = levels.get(key)
            if level is not None:  # not dormant
                yield level

    def keys_between(self, low: int, high: int) -> list[int]:
        """The level keys in (low, high], best first."""
        keys = self.keys
        levels = self.levels
        between = keys[bisect_right(keys, low) : bisect_right(keys, high)]
        return [key for key in between if key in levels]

    def levels_within(self, limit_key: int) -> Iterator[Level]:
        """The levels with a key up to `limit_key` (those a taker reaches), best first."""
        keys = self.keys
        levels = self.levels
        for key in keys[: bisect_right(keys, limit_key)]:
            level = levels.get(key)
            if level is not None:  # not dormant
                yield level

    def iter_orders(self) -> Iterator[Order]:
        """Every resting order in priority order (L3): best level first, oldest first."""
        for level in self.iter_levels():
            yield from level.orders.values()

    def __len__(self) -> int:
        return len(self.levels)


class OrderBook:
    """The bids and asks of one instrument."""

    __slots__ = ("asks", "bids", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.bids = BookSide(Side.BUY)
        self.asks = BookSide(Side.SELL)

    def side(self, side: Side) -> BookSide:
        return self.bids if side is Side.BUY else self.asks

    def best_bid(self) -> tuple[int, int] | None:
        """(price, quantity) of the best bid, or None."""
        best = self.bids.best
        return None if best is None else (best.price, best.qty)

    def best_ask(self) -> tuple[int, int] | None:
        """(price, quantity) of the best ask, or None."""
        best = self.asks.best
        return None if best is None else (best.price, best.qty)

    def depth(self, levels_max: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Top-N L2 depth: (bids, asks), each best first."""
        return self.bids.depth(levels_max), self.asks.depth(levels_max)

    def iter_orders(self) -> Iterator[Order]:
        """L3: every resting order, bids then asks, each in priority order."""
        yield from self.bids.iter_orders()
        yield from self.asks.iter_orders()
