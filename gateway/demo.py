"""`venue demo`: a short seeded trading session on the engine, printed as it happens.

Two market makers quote around each sample instrument's reference price and a taker sends
marketable orders; the demo prints each trade and then the top of every book. It shows the
engine working in one command until the websocket server takes over `make run`.
"""

import random

from engine.commands import CancelAll, Command, ListInstrument, PlaceOrder
from engine.enums import OrderType, Side, TimeInForce
from engine.events import TradeExecuted
from engine.instrument import InstrumentSpec
from engine.units import format_units
from engine.venue import Venue
from gateway.samples import SAMPLE_INSTRUMENTS

MAKERS = (1, 2)
TAKER = 3
TRADES_SHOWN_MAX = 12  # enough to see the flow without flooding the terminal
START_US = 1_798_761_600_000_000  # 2027-01-01 00:00 UTC; the demo's own clock


def run(seed: int, orders: int) -> int:
    rng = random.Random(seed)
    venue = Venue()
    clock = iter(range(START_US, START_US + 10 * orders + 10_000, 10))
    specs = {spec.symbol: spec for spec in SAMPLE_INSTRUMENTS}
    for spec in SAMPLE_INSTRUMENTS:
        venue.execute(ListInstrument(ts_us=next(clock), spec=spec))
    trades = shown = 0
    for _ in range(orders):
        spec = specs[rng.choice(list(specs))]
        for command in _next_orders(rng, spec, venue, next(clock)):
            for event in venue.execute(command):
                trades += isinstance(event, TradeExecuted)
                if isinstance(event, TradeExecuted) and shown < TRADES_SHOWN_MAX:
                    shown += 1
                    print(_trade_line(event, specs[event.symbol]))
        venue.check_invariants()
    print(f"... {trades} trades from {orders} rounds of orders\n")
    for spec in SAMPLE_INSTRUMENTS:
        print(_book_line(venue, spec))
    print("\nThe websocket server arrives with the gateway; this is the engine alone.")
    return 0


def _next_orders(rng: random.Random, spec: InstrumentSpec, venue: Venue, ts: int) -> list[Command]:
    """One round: a maker refreshes its quotes, or the taker crosses the spread."""
    reference = venue.markets[spec.symbol].reference_price
    lot = spec.min_qty * rng.randint(1, 50) if spec.qty_decimals == 0 else rng.randint(1, 10**6)
    if rng.random() < 0.7:
        maker = rng.choice(MAKERS)
        half_spread = max(spec.price_tick, reference // 2_000 // spec.price_tick * spec.price_tick)
        skew = rng.randint(-3, 3) * spec.price_tick
        return [
            CancelAll(ts_us=ts, account=maker, symbol=spec.symbol),
            _limit(ts, maker, spec, Side.BUY, reference - half_spread + skew, lot),
            _limit(ts, maker, spec, Side.SELL, reference + half_spread + skew, lot),
        ]
    side = rng.choice((Side.BUY, Side.SELL))
    return [
        PlaceOrder(
            ts_us=ts,
            account=TAKER,
            symbol=spec.symbol,
            side=side,
            order_type=OrderType.MARKET,
            tif=TimeInForce.IOC,
            qty=lot,
        )
    ]


def _limit(
    ts: int, account: int, spec: InstrumentSpec, side: Side, price: int, qty: int
) -> PlaceOrder:
    return PlaceOrder(
        ts_us=ts, account=account, symbol=spec.symbol, side=side, price=price, qty=qty
    )


def _trade_line(trade: TradeExecuted, spec: InstrumentSpec) -> str:
    price = format_units(trade.price, spec.price_decimals)
    qty = format_units(trade.qty, spec.qty_decimals)
    return f"trade #{trade.trade_id:<4} {spec.symbol:<18} {trade.taker_side:<4} {qty:>14} @ {price}"


def _book_line(venue: Venue, spec: InstrumentSpec) -> str:
    book = venue.book(spec.symbol)
    bid, ask = book.best_bid(), book.best_ask()

    def show(level: tuple[int, int] | None) -> str:
        if level is None:
            return "-"
        price = format_units(level[0], spec.price_decimals)
        return f"{format_units(level[1], spec.qty_decimals)} @ {price}"

    return f"{spec.symbol:<18} bid {show(bid):>28}   ask {show(ask):>28}"
