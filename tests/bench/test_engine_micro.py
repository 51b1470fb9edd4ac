"""Micro-benchmarks of single engine commands on a warmed book (pytest-benchmark).

`make test` runs each once (`--benchmark-disable`) and checks its events; `make bench` times
them (`--benchmark-enable --benchmark-only`). Each round's setup, untimed, prepares exactly
what the timed command needs, so every round measures the same operation.
"""

import random
from collections.abc import Callable
from typing import Any

import pytest

from bench import workloads
from engine.commands import AmendOrder, CancelOrder, ListInstrument, PlaceOrder
from engine.enums import OrderStatus, Side, TimeInForce
from engine.events import Event, OrderAccepted, OrderAmended, OrderCanceled, TradeExecuted
from engine.venue import Venue

ROUNDS = 20_000  # single-command rounds when enabled: enough for a stable median
WARMUP_ROUNDS = 1_000
WARM_ORDERS = 1_000  # the book every benchmark starts from: half bids, half asks
ACCOUNTS = 1_000  # the warm book's owners
TRADER = ACCOUNTS + 1  # the benchmarks' account: no self-trade with the warm book
PLACERS = 100  # accounts the place benchmark rotates through: far from the open-order limit
MAKER = TRADER + PLACERS  # owns the levels the sweep takes: not the taker's account
LOT = workloads.LOT
CENTER = workloads.CENTER_PRICE
# The warm book rests from SPREAD_TICKS to SPREAD_TICKS + RANGE_TICKS away from the centre,
# so the sweep's levels fit inside the spread and are the best asks.
SPREAD_TICKS = 50
RANGE_TICKS = workloads.PRICE_RANGE_TICKS
SWEEP_LEVELS = 5
SWEEP_ASKS = [CENTER - SWEEP_LEVELS + i for i in range(SWEEP_LEVELS)]  # below every warm ask


class Bench:
    """A listed AAPLx-USD with a warm book of 1,000 orders, and a clock for commands."""

    def __init__(self) -> None:
        self.venue = Venue()
        self.ts_us = workloads.TS_START_US
        self.venue.execute(ListInstrument(ts_us=self.ts_us, spec=workloads.SPEC))
        rng = random.Random(5)
        for _ in range(WARM_ORDERS):
            side = rng.choice((Side.BUY, Side.SELL))
            offset = SPREAD_TICKS + rng.randrange(RANGE_TICKS)
            price = CENTER - offset if side is Side.BUY else CENTER + offset
            qty = rng.randint(1, workloads.LOTS_MAX) * LOT
            account = rng.randint(1, ACCOUNTS)
            self.venue.execute(self.place(side, price, qty, TimeInForce.GTC, account))

    def next_ts(self) -> int:
        self.ts_us += 1
        return self.ts_us

    def place(
        self, side: Side, price: int, qty: int, tif: TimeInForce, account: int = TRADER
    ) -> PlaceOrder:
        return PlaceOrder(
            ts_us=self.next_ts(),
            account=account,
            symbol=workloads.SYMBOL,
            side=side,
            tif=tif,
            price=price,
            qty=qty,
        )

    def rest(self, side: Side, price: int, account: int = TRADER) -> int:
        """Place a resting gtc order of one lot now, untimed; its order id."""
        events = self.venue.execute(self.place(side, price, LOT, TimeInForce.GTC, account))
        accepted = events[0]
        assert isinstance(accepted, OrderAccepted) and len(events) == 1, events
        return accepted.order_id


def _pedantic(benchmark: Any, bench: Bench, setup: Callable[[], Any]) -> list[Event]:
    """Time `venue.execute(command)` for the command each round's `setup` returns."""

    def arguments() -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (setup(),), {}

    events: list[Event] = benchmark.pedantic(
        bench.venue.execute,
        setup=arguments,
        rounds=ROUNDS,
        warmup_rounds=WARMUP_ROUNDS,
    )
    bench.venue.check_invariants()
    return events


@pytest.fixture
def bench() -> Bench:
    return Bench()


def test_place_resting_limit(benchmark: Any, bench: Bench) -> None:
    prices = [CENTER - SPREAD_TICKS - i for i in range(100)]  # joins the best 100 bid ticks
    rounds = iter(range(10**9))

    def setup() -> PlaceOrder:
        n = next(rounds)
        price = prices[n % len(prices)]
        return bench.place(Side.BUY, price, LOT, TimeInForce.GTC, TRADER + n % PLACERS)

    events = _pedantic(benchmark, bench, setup)
    assert len(events) == 1
    accepted = events[0]
    assert isinstance(accepted, OrderAccepted)
    assert bench.venue.orders[accepted.order_id].leaves_qty == LOT


def test_cancel(benchmark: Any, bench: Bench) -> None:
    def setup() -> CancelOrder:
        order_id = bench.rest(Side.BUY, CENTER - SPREAD_TICKS - 10)
        return CancelOrder(ts_us=bench.next_ts(), account=TRADER, order_id=order_id)

    events = _pedantic(benchmark, bench, setup)
    assert len(events) == 1
    canceled = events[0]
    assert isinstance(canceled, OrderCanceled)
    assert canceled.canceled_qty == LOT
    assert canceled.order_id not in bench.venue.orders


def test_amend_price_move(benchmark: Any, bench: Bench) -> None:
    order_id = bench.rest(Side.SELL, CENTER + SPREAD_TICKS + 10)
    order = bench.venue.orders[order_id]
    asks = [order.price, order.price + 1]  # two warm ask ticks: leave one, join the other

    def setup() -> AmendOrder:
        price = asks[1] if order.price == asks[0] else asks[0]
        return AmendOrder(ts_us=bench.next_ts(), account=TRADER, order_id=order_id, price=price)

    events = _pedantic(benchmark, bench, setup)
    assert len(events) == 1
    amended = events[0]
    assert isinstance(amended, OrderAmended)
    assert amended.order_id == order_id
    assert amended.price == order.price
    assert not amended.priority_kept


def test_sweep_through_levels(benchmark: Any, bench: Bench) -> None:
    def setup() -> PlaceOrder:
        for price in SWEEP_ASKS:
            bench.rest(Side.SELL, price, MAKER)
        return bench.place(Side.BUY, SWEEP_ASKS[-1], SWEEP_LEVELS * LOT, TimeInForce.IOC)

    events = _pedantic(benchmark, bench, setup)
    assert len(events) == 1 + SWEEP_LEVELS
    assert isinstance(events[0], OrderAccepted)
    trades = [e for e in events if isinstance(e, TradeExecuted)]
    assert [t.price for t in trades] == SWEEP_ASKS
    assert all(t.qty == LOT and t.maker_status is OrderStatus.FILLED for t in trades)
    assert trades[-1].taker_status is OrderStatus.FILLED
    best_ask = bench.venue.book(workloads.SYMBOL).asks.best
    assert best_ask is not None and best_ask.price > CENTER  # the sweep took every level
