"""Seeded engine workloads: command lists prepared in full before anything is timed.

Owns the benchmark instrument and one generator per workload. A generator drives a scratch
`Venue` while it writes commands, so it knows exactly which orders rest (to cancel or move
them) and what each command will do; the benchmark replays the same commands on a fresh
venue and gets the same events. Same name, ops and seed: the same commands.

- `mixed`: 82% price moves (AmendOrder), 9% gtc limits, 6% cancels, 3% ioc limits, on one
  book held near 1,000 resting orders over about 750 price levels.
- `addcancel`: 60% gtc limits, 40% cancels of a random resting order; nothing ever crosses.
- `cross`: gtc limits alternating buy and sell near the touch, about half crossing in full;
  the book holds near 1,000 orders.
"""

import random
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice

from engine.book import BookSide, Order
from engine.commands import (
    AmendOrder,
    AttestReserves,
    CancelOrder,
    Command,
    Deposit,
    ListAsset,
    ListInstrument,
    OpenAccount,
    PlaceOrder,
)
from engine.enums import InstrumentKind, Side, TimeInForce
from engine.events import CommandRejected, Event, TradeExecuted
from engine.instrument import InstrumentSpec
from engine.venue import Venue
from settlement.ledger import Ledger

SYMBOL = "AAPLx-USD"
# $187.25. Passive bids rest below it and passive asks above it, so only the orders a
# generator means to cross ever cross, and the book stays centred where it started.
CENTER_PRICE = 18_725
SPEC = InstrumentSpec(
    symbol=SYMBOL,
    kind=InstrumentKind.EQUITY,
    base="AAPLx",
    quote="USD",
    price_decimals=2,
    price_tick=1,
    qty_decimals=6,
    qty_step=1,
    min_qty=1,
    quote_decimals=2,
    min_notional=0,  # no BELOW_MIN_NOTIONAL rejects on small fractional orders
    price_band_bps=5_000,  # +-50%: ten times wider than any price a workload uses
    reference_price=CENTER_PRICE,
    maker_fee_bps=1,
    taker_fee_bps=3,
)

TS_START_US = 1_750_000_000_000_000  # June 2025; each command is one microsecond later
ACCOUNTS = 1_000  # ~1 open order each at steady state, far from the per-account limit
LOT = 10_000  # 0.01 share at qty_decimals 6
LOTS_MAX = 100  # order sizes are 1..100 lots: 0.01 to 1.00 share
WARM_ORDERS = 1_000  # resting orders placed by the setup, half a side each
# Passive prices are uniform over this many ticks on each side of CENTER_PRICE: 500 orders
# a side over 860 ticks occupy about 375 distinct levels, 750 in all.
PRICE_RANGE_TICKS = 860

MIXED_MOVE_PCT = 82
MIXED_GTC_PCT = 9
MIXED_CANCEL_PCT = 6  # the remaining 3% are ioc limits
# An ioc takes the best two makers in full above the target size and half of the best
# maker below it: 9% adds - 6% cancels - 3% x 2 or x 0 fills holds the book at the target.
MIXED_TARGET_ORDERS = 1_000
MIXED_IOC_MAKERS = 2

ADDCANCEL_ADD_PCT = 60  # the remaining 40% cancel a random resting order

CROSS_PCT = 50
CROSS_DEPTH_TICKS = 5  # a crossing limit is 0..4 ticks past the last level it needs
# Passive orders of `cross` rest 1..20 ticks behind the opposite best: they join near the
# touch, so levels keep emptying and refilling as the price wanders with the trades.
CROSS_RANGE_TICKS = 20
# A crossing order asks for twice its size while the side it takes from holds more than
# this many orders and for half of it below: consumption then matches the passive supply.
CROSS_TARGET_SIDE_ORDERS = WARM_ORDERS // 2


@dataclass(frozen=True)
class Workload:
    """A named, seeded command list: the setup to replay untimed, then the timed commands."""

    name: str
    ops: int
    seed: int
    setup: list[Command]  # list the instrument and warm the book; never timed
    commands: list[Command]  # exactly `ops` commands: the timed part
    rejected: int  # commands the scratch venue refused while generating (aim: none)

    def fresh_venue(self, ledger: bool = False) -> Venue:
        """A new venue with the setup applied: the state the timed commands start from.

        With `ledger`, the venue clears through a ledger (holds, DvP, fees) and every
        account is opened and funded first, so the same commands are accepted.
        """
        venue = Venue(ledger=Ledger()) if ledger else Venue()
        for command in (ledger_setup() if ledger else []) + self.setup:
            events = venue.execute(command)
            assert not any(isinstance(e, CommandRejected) for e in events), events
        return venue


def ledger_setup() -> list[Command]:
    """Assets, reserves and every workload account, funded far beyond what it can spend."""
    cash = 10**15  # units of USD at the instrument's quote scale
    shares = 10**15  # units of AAPLx: a billion shares at qty_decimals 6
    commands: list[Command] = [
        ListAsset(ts_us=TS_START_US, code=SPEC.quote, scale=SPEC.quote_decimals),
        ListAsset(ts_us=TS_START_US, code=SPEC.base, scale=SPEC.qty_decimals),
        AttestReserves(
            ts_us=TS_START_US, asset=SPEC.quote, amount=cash * ACCOUNTS, as_of_us=TS_START_US
        ),
        AttestReserves(
            ts_us=TS_START_US, asset=SPEC.base, amount=shares * ACCOUNTS, as_of_us=TS_START_US
        ),
    ]
    for account in range(1, ACCOUNTS + 1):
        commands += [
            OpenAccount(
                ts_us=TS_START_US,
                account=account,
                name=f"bench-{account}",
                kyc_approved=True,
                jurisdiction="DE",
            ),
            Deposit(ts_us=TS_START_US, account=account, asset=SPEC.quote, amount=cash),
            Deposit(ts_us=TS_START_US, account=account, asset=SPEC.base, amount=shares),
        ]
    return commands


class _Driver:
    """Writes commands while executing them on a scratch venue, tracking what rests."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.venue = Venue()
        self.ts_us = TS_START_US
        self.setup: list[Command] = []
        self.commands = self.setup  # warm-up goes to the setup until `start_timed`
        self.rejected = 0
        # The resting order ids, indexable so that a random one costs O(1).
        self.resting: list[int] = []
        self.resting_at: dict[int, int] = {}
        self.send(ListInstrument(ts_us=self.ts_us, spec=SPEC))
        self.book = self.venue.book(SYMBOL)

    def start_timed(self) -> None:
        self.commands = []

    def send(self, command: Command) -> list[Event]:
        self.commands.append(command)
        events = self.venue.execute(command)
        orders = self.venue.orders
        for event in events:
            if type(event) is CommandRejected:
                self.rejected += 1
                continue
            if type(event) is TradeExecuted:
                touched: tuple[int, ...] = (event.maker_order_id, event.taker_order_id)
            else:
                touched = (getattr(event, "order_id", 0),)
            for order_id in touched:
                if order_id in orders:
                    self._track(order_id)
                elif order_id in self.resting_at:
                    self._untrack(order_id)
        return events

    def _track(self, order_id: int) -> None:
        if order_id not in self.resting_at:
            self.resting_at[order_id] = len(self.resting)
            self.resting.append(order_id)

    def _untrack(self, order_id: int) -> None:
        at = self.resting_at.pop(order_id)
        last = self.resting.pop()
        if last != order_id:  # move the last id into the hole
            self.resting[at] = last
            self.resting_at[last] = at

    def next_ts(self) -> int:
        self.ts_us += 1
        return self.ts_us

    def random_resting(self) -> Order:
        return self.venue.orders[self.resting[self.rng.randrange(len(self.resting))]]

    def random_side(self) -> Side:
        return Side.BUY if self.rng.random() < 0.5 else Side.SELL

    def random_qty(self) -> int:
        return self.rng.randint(1, LOTS_MAX) * LOT

    def random_account(self, avoid: set[int] | frozenset[int] = frozenset()) -> int:
        """An account, not one of `avoid` (makers a taker will meet: no self-trades)."""
        while True:
            account = self.rng.randint(1, ACCOUNTS)
            if account not in avoid:
                return account

    def passive_price(self, side: Side, range_ticks: int = PRICE_RANGE_TICKS) -> int:
        offset = 1 + self.rng.randrange(range_ticks)
        return CENTER_PRICE - offset if side is Side.BUY else CENTER_PRICE + offset

    def place(
        self, side: Side, price: int, qty: int, tif: TimeInForce, account: int = 0
    ) -> list[Event]:
        return self.send(
            PlaceOrder(
                ts_us=self.next_ts(),
                account=account or self.random_account(),
                symbol=SYMBOL,
                side=side,
                tif=tif,
                price=price,
                qty=qty,
            )
        )

    def place_passive(self, range_ticks: int = PRICE_RANGE_TICKS) -> None:
        side = self.random_side()
        price = self.passive_price(side, range_ticks)
        self.place(side, price, self.random_qty(), TimeInForce.GTC)

    def cancel_random(self) -> None:
        order = self.random_resting()
        self.send(CancelOrder(ts_us=self.next_ts(), account=order.account, order_id=order.order_id))

    def warm(self, range_ticks: int = PRICE_RANGE_TICKS) -> None:
        for _ in range(WARM_ORDERS):
            self.place_passive(range_ticks)

    def workload(self, name: str, ops: int, seed: int) -> Workload:
        assert len(self.commands) == ops, (name, len(self.commands), ops)
        return Workload(name, ops, seed, self.setup, self.commands, self.rejected)


def mixed(ops: int, seed: int) -> Workload:
    """The exchange-core mix on one symbol, at a steady ~1,000 orders over ~750 levels."""
    driver = _Driver(seed)
    driver.warm()
    driver.start_timed()
    rng = driver.rng
    for _ in range(ops):
        pct = rng.randrange(100)
        if pct < MIXED_MOVE_PCT:
            order = driver.random_resting()
            price = order.price
            while price == order.price:  # an amend that changes nothing is refused
                price = driver.passive_price(order.side)
            driver.send(
                AmendOrder(
                    ts_us=driver.next_ts(),
                    account=order.account,
                    order_id=order.order_id,
                    price=price,
                )
            )
        elif pct < MIXED_MOVE_PCT + MIXED_GTC_PCT:
            driver.place_passive()
        elif pct < MIXED_MOVE_PCT + MIXED_GTC_PCT + MIXED_CANCEL_PCT:
            driver.cancel_random()
        else:
            _ioc(driver)
    return driver.workload("mixed", ops, seed)


def _ioc(driver: _Driver) -> None:
    """An ioc limit through the whole opposite range, sized to hold the book at its target."""
    side = driver.random_side()
    opposite = driver.book.asks if side is Side.BUY else driver.book.bids
    makers = list(islice(opposite.iter_orders(), MIXED_IOC_MAKERS))
    if len(driver.resting) > MIXED_TARGET_ORDERS:
        qty = sum(maker.leaves_qty for maker in makers)
    else:
        makers = makers[:1]
        qty = makers[0].leaves_qty // 2 if makers else 0
    limit_ticks = PRICE_RANGE_TICKS + 1
    price = CENTER_PRICE + limit_ticks if side is Side.BUY else CENTER_PRICE - limit_ticks
    account = driver.random_account({maker.account for maker in makers})
    driver.place(side, price, max(qty, LOT), TimeInForce.IOC, account)


def addcancel(ops: int, seed: int) -> Workload:
    """Adds and cancels of random resting orders on a book that never crosses (it grows)."""
    driver = _Driver(seed)
    driver.warm()
    driver.start_timed()
    rng = driver.rng
    for _ in range(ops):
        if rng.randrange(100) < ADDCANCEL_ADD_PCT or not driver.resting:
            driver.place_passive()
        else:
            driver.cancel_random()
    return driver.workload("addcancel", ops, seed)


def cross(ops: int, seed: int) -> Workload:
    """Buy, sell, buy, ...: about half rest near the touch, the other half cross in full."""
    driver = _Driver(seed)
    driver.warm(CROSS_RANGE_TICKS)
    driver.start_timed()
    rng = driver.rng
    side = Side.SELL
    for _ in range(ops):
        side = Side.BUY if side is Side.SELL else Side.SELL
        opposite = driver.book.asks if side is Side.BUY else driver.book.bids
        qty = driver.random_qty()
        best = opposite.best
        if best is None or rng.randrange(100) >= CROSS_PCT:
            touch = CENTER_PRICE if best is None else best.price
            offset = 1 + rng.randrange(CROSS_RANGE_TICKS)
            price = touch - offset if side is Side.BUY else touch + offset
            driver.place(side, price, qty, TimeInForce.GTC)
            continue
        resting = sum(len(level.orders) for level in opposite.levels.values())
        wanted = 2 * qty if resting > CROSS_TARGET_SIDE_ORDERS else max(qty // 2, LOT)
        qty, last_price, accounts = _sweep(opposite, wanted)
        through = rng.randrange(CROSS_DEPTH_TICKS)
        price = last_price + through if side is Side.BUY else last_price - through
        driver.place(side, price, qty, TimeInForce.GTC, driver.random_account(accounts))
    return driver.workload("cross", ops, seed)


def _sweep(opposite: BookSide, wanted: int) -> tuple[int, int, set[int]]:
    """What a taker of `wanted` fills in full: min(wanted, all resting), the price of the
    last level it reaches, and the accounts of the makers it meets (to avoid self-trades).
    """
    available = 0
    price = 0
    accounts: set[int] = set()
    for level in opposite.iter_levels():
        price = level.price
        for maker in level.orders.values():
            available += maker.leaves_qty
            accounts.add(maker.account)
            if available >= wanted:
                return wanted, price, accounts
    return available, price, accounts


WORKLOADS: dict[str, Callable[[int, int], Workload]] = {
    "mixed": mixed,
    "addcancel": addcancel,
    "cross": cross,
}


def build(name: str, ops: int, seed: int) -> Workload:
    """The workload `name` with `ops` timed commands, from `seed`."""
    return WORKLOADS[name](ops, seed)
