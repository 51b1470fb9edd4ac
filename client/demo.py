"""`venue demo-engine`: a short seeded trading session on the venue, printed as it happens.

Two market makers quote around each sample instrument's reference price and a taker sends
marketable orders; every trade settles at once in the ledger, and the booked transfers go
to the SQLite ledger store in the data directory. The demo prints trades as they happen,
then the top of every book and the participants' balances. It shows the venue working in
one command until the websocket server takes over `make run`.
"""

import datetime
import random
from pathlib import Path

import msgspec

from cli.failures import CommandFailed
from client import demo_data
from core import config as venue_config
from core.ledger_cli import LEDGER_FILE
from core.ledger_writer import LedgerWriter
from engine.commands import CancelAll, Command, PlaceOrder
from engine.enums import OrderType, Side, TimeInForce
from engine.events import CommandRejected, Event, TradeExecuted
from engine.instrument import InstrumentSpec
from engine.units import format_units
from engine.venue import Venue, VenueConfig
from settlement import tbill
from settlement.ledger import Ledger
from settlement.store import SqliteLedgerStore

MAKERS = (1, 2)
TAKER = 3
TRADES_SHOWN_MAX = 12  # enough to see the flow without flooding the terminal
START_US = 1_798_761_600_000_000  # 2027-01-01 00:00 UTC; the demo's own clock
TICK_US = 10  # the demo clock's step per command


def demo_start_us(config: venue_config.VenueConfig) -> int:
    """The demo clock's start: `START_US`, or the first midnight from which the config's
    furthest bill is no more than a bill's longest term away (`tbill.DAYS_TO_MATURITY_MAX`),
    so that a config whose bills were rolled forward still lists them all."""
    maturities = [entry.maturity for entry in config.instruments if entry.maturity is not None]
    if not maturities:
        return START_US
    first_day = max(maturities) - datetime.timedelta(days=tbill.DAYS_TO_MATURITY_MAX)
    midnight = datetime.datetime.combine(first_day, datetime.time(), datetime.UTC)
    return max(START_US, int(midnight.timestamp()) * 1_000_000)


def check_tradable(config: venue_config.VenueConfig, config_path: Path) -> None:
    """Refuse, before the data directory is touched, a config the session cannot trade on:
    no instruments, or not the accounts it trades as (`MAKERS`, `TAKER`). Without them the
    demo reported "0 trades" (every order refused) as if that were the venue's answer, or
    failed with a traceback."""
    if not config.instruments:
        raise CommandFailed(
            f"{config_path}: no [[instruments]]: the demo trades those the config lists"
        )
    listed = {account.id for account in config.accounts}
    missing = [str(account) for account in (*MAKERS, TAKER) if account not in listed]
    if missing:
        raise CommandFailed(
            f"{config_path}: no [[accounts]] with id {', '.join(missing)}: the demo trades as"
            f" accounts {MAKERS[0]} and {MAKERS[1]} (makers) and {TAKER} (the taker)"
        )


def run(seed: int, orders: int, data_dir: Path, config_path: Path) -> int:
    rng = random.Random(seed)
    config = venue_config.load_to_build(config_path)  # the demo builds a venue
    check_tradable(config, config_path)
    ledger = Ledger()
    staleness = venue_config.reserve_staleness_max_us(config)
    venue = Venue(VenueConfig(reserve_staleness_max_us=staleness), ledger)
    # the demo's session starts from nothing each time, in a directory no venue uses
    demo_data.claim(data_dir, clear=(f"{LEDGER_FILE}*",))
    path = data_dir / LEDGER_FILE
    store = SqliteLedgerStore(path)
    writer = LedgerWriter(store)

    def execute(command: Command) -> list[Event]:
        events = venue.execute(msgspec.structs.replace(command, ts_us=next(clock)))
        writer.observe(events)
        return events

    start_us = demo_start_us(config)
    clock = iter(range(start_us, start_us + TICK_US * (orders * 3 + 1_000), TICK_US))
    for command in venue_config.setup_commands(config, now_us=start_us):
        rejected = [e for e in execute(command) if isinstance(e, CommandRejected)]
        if rejected:
            raise SystemExit(f"{config_path}: {rejected[0].detail}")
    specs = {symbol: market.spec for symbol, market in venue.markets.items()}
    trades = shown = accepted = 0
    refused: CommandRejected | None = None  # the first order refused
    for _ in range(orders):
        spec = specs[rng.choice(list(specs))]
        for command in _next_orders(rng, spec, venue, ts=0):
            events = execute(command)
            if type(command) is PlaceOrder:
                rejection = next((e for e in events if isinstance(e, CommandRejected)), None)
                accepted += rejection is None
                refused = refused or rejection
            for event in events:
                if isinstance(event, TradeExecuted):
                    trades += 1
                    if shown < TRADES_SHOWN_MAX:
                        shown += 1
                        print(_trade_line(event, specs[event.symbol]))
        writer.flush(ledger)
    venue.check_invariants()
    if not accepted and refused is not None:  # the accounts hold nothing to trade, say
        store.close()
        raise CommandFailed(
            f"{config_path}: every order the demo placed was refused, the first"
            f" ({refused.reason.name.lower()}): {refused.detail}"
        )
    print(f"... {trades} trades from {orders} rounds of orders, each settled at once\n")
    for spec in specs.values():
        print(_book_line(venue, spec))
    print()
    for account in config.accounts:
        for asset in ("USD",):
            balance = ledger.balance(account.id, asset)
            scale = ledger.assets[asset].scale
            print(f"{account.name:<10} {asset} {format_units(balance.total, scale):>18}")
    problems = store.verify()
    store.close()
    print(f"\nledger store: {path} ({problems or 'verified'})")
    print(f"try: .venv/bin/venue ledger balances --data-dir {data_dir}   (or reserves, verify)")
    return 0 if not problems else 1


def _next_orders(rng: random.Random, spec: InstrumentSpec, venue: Venue, ts: int) -> list[Command]:
    """One round: a maker refreshes its quotes, or the taker crosses the spread."""
    reference = venue.markets[spec.symbol].reference_price
    lot = (
        spec.min_qty * rng.randint(10, 50) if spec.qty_decimals == 0 else rng.randint(10**4, 10**6)
    )
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

    def show(level: tuple[int, int] | None) -> str:
        if level is None:
            return "-"
        price = format_units(level[0], spec.price_decimals)
        return f"{format_units(level[1], spec.qty_decimals)} @ {price}"

    return f"{spec.symbol:<18} bid {show(book.best_bid()):>28}   ask {show(book.best_ask()):>28}"
