"""The order book: FIFO levels, sorted prices, the cached best, L2 depth and L3 order."""

from engine.book import Order, OrderBook
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
