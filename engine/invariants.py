"""Whole-state checks of the venue: run by tests and paranoid mode after every command.

Each check is an `assert` whose message says what broke; a failure is a bug, never an input
error. Covers: books never crossed; level keys, totals and the cached best agree with the
orders; every open order is in exactly one level and in every index; gtd orders are queued;
every armed dead-man's switch is queued, and the queue's head is one; the operators'
remembered ids (`engine.operations`) are within their bounds. With a ledger: what each
account holds is exactly what its open orders and pending withdrawals reserve (a buy at
least its worst case, a sell its leaves), and the ledger's own (`Ledger.check_invariants`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.book import BookSide, Order
from engine.enums import OrderStatus, Side, TimeInForce

if TYPE_CHECKING:
    from engine.market import Market
    from engine.venue import Venue

OPEN_STATUSES = (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)


def check_venue(venue: Venue) -> None:
    resting: dict[int, Order] = {}
    for symbol, market in venue.markets.items():
        assert market.symbol == symbol, f"market {symbol} is filed under another name"
        for order in _check_market(market):
            assert order.order_id not in resting, f"order {order.order_id} rests twice"
            resting[order.order_id] = order
    _check_indexes(venue, resting)
    _check_dead_man_switches(venue)
    venue.operations.check_invariants()
    if venue.ledger is not None:
        _check_holds(venue, resting)
        venue.ledger.check_invariants()


def _check_dead_man_switches(venue: Venue) -> None:
    queue, armed = venue.dead_man_queue, venue.dead_man_deadlines
    queued = set(queue)
    for account, deadline_us in armed.items():
        assert account > 0 and deadline_us > 0, f"switch of {account} at {deadline_us}"
        assert (deadline_us, account) in queued, f"the switch of {account} is not queued"
    assert not queue or armed.get(queue[0][1]) == queue[0][0], "the queue's head is disarmed"


def _check_holds(venue: Venue, resting: dict[int, Order]) -> None:
    """What each account holds is exactly what its open orders and withdrawals reserve."""
    assert venue.clearing is not None and venue.ledger is not None
    expected = venue.ledger.withdrawal_holds()
    for order in resting.values():
        market = venue.markets[order.symbol]
        if order.side is Side.BUY:
            asset = market.spec.quote
            worst = venue.clearing.buy_hold_for(order, market, order.price, order.leaves_qty)
            assert order.hold >= worst, f"{order} holds {order.hold}, may need {worst}"
        else:
            asset = market.spec.base
            assert order.hold == order.leaves_qty, f"{order} holds {order.hold} of its base"
        expected[(order.account, asset)] = expected.get((order.account, asset), 0) + order.hold
    for (account, asset), balance in venue.ledger.balances.items():
        wanted = expected.pop((account, asset), 0)
        assert balance.held == wanted, (
            f"account {account} holds {balance.held} {asset}, not {wanted}"
        )
    assert not any(expected.values()), f"holds without balances: {expected}"


def _check_market(market: Market) -> list[Order]:
    book = market.book
    orders = _check_side(market, book.bids) + _check_side(market, book.asks)
    bid, ask = book.best_bid(), book.best_ask()
    assert bid is None or ask is None or bid[0] < ask[0], f"{market.symbol} is crossed"
    return orders


def _check_side(market: Market, side: BookSide) -> list[Order]:
    symbol = market.symbol
    assert sorted([*side.levels, *side.dormant]) == side.keys, f"{symbol}: level keys out of step"
    assert not side.levels.keys() & side.dormant.keys(), f"{symbol}: a level live and dormant"
    for key, level in side.dormant.items():
        assert level.key == key and not level.orders and not level.qty, f"{symbol}: {key} dormant"
    assert not side.keys or side.keys[0] in side.levels, f"{symbol}: the first key is dormant"
    expected_best = side.levels[side.keys[0]] if side.keys else None
    assert side.best is expected_best, f"{symbol}: cached best level is stale"
    orders: list[Order] = []
    for key, level in side.levels.items():
        assert level.key == key == level.price * side.sign, f"{symbol}: level {key} misfiled"
        assert level.orders, f"{symbol}: empty level {level.price} kept"
        total = sum(order.leaves_qty for order in level.orders.values())
        assert level.qty == total, f"{symbol}: level {level.price} says {level.qty}, has {total}"
        for order_id, order in level.orders.items():
            assert order_id == order.order_id, f"order {order_id} filed under another id"
            assert order.symbol == symbol and order.price == level.price, f"{order} misplaced"
            expected_sign = -1 if order.side is Side.BUY else 1
            assert side.sign == expected_sign, f"{order} on the wrong side"
            assert order.leaves_qty > 0, f"{order} rests with nothing left"
            assert order.cum_qty + order.leaves_qty == order.qty, f"{order} quantities disagree"
            assert order.status in OPEN_STATUSES, f"{order} rests while {order.status}"
            assert order.price % market.price_tick == 0, f"{order} is off the tick"
            assert order.leaves_qty % market.qty_step == 0, f"{order} is off the step"
            orders.append(order)
    return orders


def _check_indexes(venue: Venue, resting: dict[int, Order]) -> None:
    assert venue.orders.keys() == resting.keys(), "open-order index differs from the books"
    for order_id, order in venue.orders.items():
        assert resting[order_id] is order, f"order {order_id} indexed as another object"
    by_account = {
        order_id: order
        for orders in venue.account_orders.values()
        for order_id, order in orders.items()
    }
    assert by_account.keys() == resting.keys(), "account index differs from the books"
    for account, orders in venue.account_orders.items():
        assert orders, f"account {account} kept with no orders"
        assert all(o.account == account for o in orders.values()), f"account {account} misfiled"
    named = {(o.account, o.cl_ord_id): o for o in resting.values() if o.cl_ord_id is not None}
    assert venue.cl_ord_index == named, "client order id index differs from the books"
    queued = set(venue.gtd_queue)
    for order in resting.values():
        assert order.order_id <= venue.last_order_id, f"{order} has an id from the future"
        if order.tif is TimeInForce.GTD:
            assert (order.expire_at_us, order.order_id) in queued, f"{order} is not queued"
            assert order.expire_at_us > venue.ts_us, f"{order} outlived its expire_at"
