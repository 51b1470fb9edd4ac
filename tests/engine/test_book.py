"""The order book: FIFO levels, sorted prices, the cached best, L2 depth and L3 order."""

import sys

from engine.book import DORMANT_LEVELS_MAX, Order, OrderBook
from engine.enums import OrderStatus, OrderType, SelfTradePrevention, Side, TimeInForce


def order(order_id: int, side: Side, price: int, qty: int) -> Order:
    return Order(
        order_id,
        1,
        "X",
        side,
        OrderType.LIMIT,
        TimeInForce.GTC,
        price,
        qty,
        qty,
        0,
        0,
        False,
        SelfTradePrevention.EXPIRE_TAKER,
        None,
        None,
        0,
        OrderStatus.NEW,
    )


def test_best_levels_on_both_sides() -> None:
    book = OrderBook("X")
    for o in (order(1, Side.BUY, 99, 5), order(2, Side.BUY, 101, 1), order(3, Side.BUY, 100, 2)):
        book.bids.add(o)
    for o in (order(4, Side.SELL, 105, 3), order(5, Side.SELL, 103, 4)):
        book.asks.add(o)
    assert book.best_bid() == (101, 1)
    assert book.best_ask() == (103, 4)
    assert book.depth(2) == ([(101, 1), (100, 2)], [(103, 4), (105, 3)])


def test_level_keeps_arrival_order_and_total() -> None:
    book = OrderBook("X")
    orders = [order(i, Side.SELL, 100, i) for i in (3, 1, 2)]
    for o in orders:
        book.asks.add(o)
    level = book.asks.best
    assert level is not None
    assert list(level.orders) == [3, 1, 2]
    assert level.qty == 6
    book.asks.remove(orders[1])
    assert list(level.orders) == [3, 2] and level.qty == 5


def test_removing_the_best_level_moves_best_on() -> None:
    book = OrderBook("X")
    high, low = order(1, Side.BUY, 101, 1), order(2, Side.BUY, 99, 1)
    book.bids.add(high)
    book.bids.add(low)
    book.bids.remove(high)
    assert book.best_bid() == (99, 1)
    assert len(book.bids) == 1
    book.bids.remove(low)
    assert book.best_bid() is None and len(book.bids) == 0 and not book.bids.keys


def test_l3_iteration_is_priority_order() -> None:
    book = OrderBook("X")
    for o in (order(1, Side.BUY, 99, 1), order(2, Side.BUY, 100, 1), order(3, Side.BUY, 100, 1)):
        book.bids.add(o)
    book.asks.add(order(4, Side.SELL, 101, 1))
    assert [o.order_id for o in book.iter_orders()] == [2, 3, 1, 4]
    assert [level.price for level in book.bids.iter_levels()] == [100, 99]


def test_depth_is_bounded() -> None:
    book = OrderBook("X")
    for i in range(10):
        book.asks.add(order(i + 1, Side.SELL, 100 + i, 1))
    bids, asks = book.depth(3)
    assert bids == [] and asks == [(100, 1), (101, 1), (102, 1)]


def test_moving_a_levels_last_order_to_a_new_price_rekeys_that_level() -> None:
    """The emptied level itself moves to the new price; sorted keys and best follow it."""
    book = OrderBook("X")
    a, b, c = order(1, Side.BUY, 100, 1), order(2, Side.BUY, 98, 2), order(3, Side.BUY, 96, 3)
    for o in (a, b, c):
        book.bids.add(o)
    best = book.bids.best
    book.bids.move(a, 97, 4)  # the best level's only order: best moves on to 98
    assert book.bids.levels[-97] is best and best.price == 97 and best.key == -97
    assert book.bids.keys == [-98, -97, -96] and book.best_bid() == (98, 2)
    assert book.depth(5)[0] == [(98, 2), (97, 4), (96, 3)]
    book.bids.move(c, 99, 3)  # a worse level's only order becomes the best
    assert book.best_bid() == (99, 3) and book.bids.keys == [-99, -98, -97]
    assert (a.price, a.leaves_qty, c.price) == (97, 4, 99)


def test_moving_an_order_within_or_between_kept_levels() -> None:
    book = OrderBook("X")
    a, b, c = order(1, Side.SELL, 100, 1), order(2, Side.SELL, 100, 2), order(3, Side.SELL, 102, 3)
    for o in (a, b, c):
        book.asks.add(o)
    book.asks.move(a, 100, 5)  # same price: to the back of its own level
    assert [o.order_id for o in book.iter_orders()] == [2, 1, 3] and book.best_ask() == (100, 7)
    book.asks.move(c, 100, 3)  # its level empties into one that exists: dropped (dormant)
    assert book.asks.keys == [100, 102] and list(book.asks.dormant) == [102]
    assert book.best_ask() == (100, 10) and len(book.asks) == 1
    only = order(4, Side.SELL, 105, 1)
    book.asks.add(only)
    book.asks.move(only, 105, 1)  # the only order of its level, back to the same price
    assert book.asks.keys == [100, 102, 105] and book.depth(5)[1] == [(100, 10), (105, 1)]


def test_a_new_level_reuses_the_last_dropped_one_at_its_own_price() -> None:
    book = OrderBook("X")
    first, second = order(1, Side.SELL, 101, 2), order(2, Side.SELL, 103, 3)
    book.asks.add(first)
    book.asks.add(second)
    dropped = book.asks.best
    book.asks.remove(first)  # the best level empties: 103 is best now
    assert book.asks.spare is dropped and book.best_ask() == (103, 3)
    third = order(3, Side.SELL, 102, 4)
    book.asks.add(third)  # a new best level, built from the spare
    level = book.asks.best
    assert level is dropped and book.asks.spare is None
    assert (level.price, level.key, level.qty, list(level.orders)) == (102, 102, 4, [3])
    assert book.asks.keys == [102, 103] and book.depth(5)[1] == [(102, 4), (103, 3)]
    book.asks.add(order(4, Side.SELL, 104, 1))  # no spare: a fresh level
    assert book.asks.levels[104] is not dropped and book.asks.keys == [102, 103, 104]


def test_a_level_emptied_behind_the_best_stays_dormant_until_its_price_comes_back() -> None:
    book = OrderBook("X")
    orders = [order(i, Side.BUY, price, 1) for i, price in enumerate((100, 98, 97, 95), 1)]
    for o in orders:
        book.bids.add(o)
    behind = book.bids.levels[-98]
    book.bids.remove(orders[1])  # 98 empties behind the best: its key stays, dormant
    assert book.bids.keys == [-100, -98, -97, -95] and book.bids.dormant == {-98: behind}
    assert len(book.bids) == 3 and book.depth(5)[0] == [(100, 1), (97, 1), (95, 1)]
    assert [level.price for level in book.bids.iter_levels()] == [100, 97, 95]
    assert [level.price for level in book.bids.levels_within(-96)] == [100, 97]
    assert book.bids.keys_between(-101, -96) == [-100, -97]
    book.bids.add(order(5, Side.BUY, 98, 4))  # reopened in place: the same level, no bisect
    assert book.bids.levels[-98] is behind and not book.bids.dormant
    assert book.depth(5)[0] == [(100, 1), (98, 4), (97, 1), (95, 1)]


def test_the_best_emptying_forgets_the_dormant_keys_before_the_next_live_one() -> None:
    book = OrderBook("X")
    orders = [order(i, Side.SELL, price, 1) for i, price in enumerate((100, 101, 102, 103), 1)]
    for o in orders:
        book.asks.add(o)
    book.asks.remove(orders[1])
    book.asks.remove(orders[2])
    assert book.asks.keys == [100, 101, 102, 103] and set(book.asks.dormant) == {101, 102}
    book.asks.remove(orders[0])  # best moves on to 103, past the two dormant keys
    assert book.asks.keys == [103] and not book.asks.dormant and book.best_ask() == (103, 1)
    book.asks.remove(orders[3])
    assert book.asks.keys == [] and book.best_ask() is None


def test_dormant_levels_are_bounded() -> None:
    book = OrderBook("X")
    book.asks.add(order(1, Side.SELL, 1, 1))  # the best, kept throughout
    for i in range(DORMANT_LEVELS_MAX + 1):
        behind = order(i + 2, Side.SELL, i + 2, 1)
        book.asks.add(behind)
        book.asks.remove(behind)
        assert len(book.asks.dormant) == (i + 1 if i < DORMANT_LEVELS_MAX else 0)
    assert book.asks.keys == [1] and book.depth(5)[1] == [(1, 1)]


def test_a_dormant_level_frees_the_table_of_the_orders_it_held() -> None:
    book = OrderBook("X")
    book.asks.add(order(1, Side.SELL, 100, 1))
    many = [order(i, Side.SELL, 101, 1) for i in range(2, 1_002)]
    for o in many:
        book.asks.add(o)
    level = book.asks.levels[101]
    held = sys.getsizeof(level.orders)
    for o in many:
        book.asks.remove(o)
    assert book.asks.dormant == {101: level} and sys.getsizeof(level.orders) < held // 10


def test_moving_to_a_dormant_price_reopens_that_level() -> None:
    book = OrderBook("X")
    orders = [order(i, Side.SELL, price, 1) for i, price in enumerate((100, 101, 102, 103), 1)]
    for o in orders:
        book.asks.add(o)
    dormant = book.asks.levels[102]
    book.asks.remove(orders[2])  # 102 empties behind the best: dormant
    book.asks.move(orders[1], 102, 1)  # 101 empties too, into the dormant 102
    assert book.asks.levels[102] is dormant and list(dormant.orders) == [2]
    assert book.asks.keys == [100, 101, 102, 103] and set(book.asks.dormant) == {101}
    assert book.asks.dormant[101].qty == 0 and not book.asks.dormant[101].orders
    book.asks.add(order(5, Side.SELL, 100, 2))
    book.asks.move(orders[3], 101, 1)  # 103 keeps no order: the dormant 101 reopens
    assert book.asks.keys == [100, 101, 102, 103] and set(book.asks.dormant) == {103}
    book.asks.remove(book.asks.levels[100].orders[5])
    book.asks.move(orders[0], 103, 1)  # the best empties into the dormant 103: best moves on
    assert book.asks.keys == [101, 102, 103] and not book.asks.dormant
    assert book.depth(5)[1] == [(101, 1), (102, 1), (103, 1)] and book.best_ask() == (101, 1)
