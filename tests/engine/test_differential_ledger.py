"""Differential test of clearing and settlement: the engine with a ledger against a reference.

Every command goes to `Venue(config, Ledger())` and to
`tests.engine.reference_ledger.ReferenceClearedVenue` (the naive matcher of
`tests.engine.reference` plus a from-scratch reading of docs/settlement.md), and the two
event lists must be equal, command by command; every balance (total and held, of every
account in every asset) is compared every few hundred commands and at the end, and the
engine's invariants are checked every 100 commands.

The streams are built to reach every settlement path: an equity with maker/taker fees, odd
prices and quantities down to 10**-8 share (fills worth less than one cash unit, so rounding
legs go both ways and a seller's fee gets capped by its proceeds); a T-bill with a 3 bps taker
fee that matures mid-stream (then a second one is listed, and matures near the end); five
participants, one excluded from each instrument and one not KYC-approved, plus an account
never opened; orders sized against what the account has, so INSUFFICIENT_BALANCE is
frequent on place and amend; deposits against reserve attestations that go stale or run
short; withdrawals requested, confirmed, voided and refused; self-trades under every stp
mode.

To replay a failure: `commands(case, n)` rebuilds the first n commands of a case's stream.
"""

import random
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any, NamedTuple

import msgspec
import pytest

from engine.commands import (
    AdvanceClock,
    AmendOrder,
    AttestReserves,
    CancelAll,
    CancelOrder,
    Command,
    ConfirmWithdrawal,
    Deposit,
    ListAsset,
    ListInstrument,
    OpenAccount,
    PlaceOrder,
    RequestWithdrawal,
    SetInstrumentStatus,
    SetReferencePrice,
    VoidWithdrawal,
)
from engine.enums import (
    CancelReason,
    InstrumentKind,
    InstrumentStatus,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from engine.events import CommandRejected, Event, InstrumentMatured, TradeSettled
from engine.instrument import InstrumentSpec
from engine.reasons import ErrorCode
from engine.venue import Venue, VenueConfig
from settlement.ledger import Ledger
from settlement.transfers import ROUNDING, TransferKind
from tests.engine.reference_ledger import ReferenceClearedVenue

BUY, SELL = Side.BUY, Side.SELL
GTC, IOC, FOK, GTD = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.GTD
MARKET = OrderType.MARKET
STATUS = InstrumentStatus
E = ErrorCode

USD_UNIT = 10**6  # USD at 6 decimals
SHARE = 10**8  # the equity token at 8 decimals
CASH, EQUITY_ASSET = "USD", "ODDx"
EQUITY = "ODDx-USD"
BILL_ASSETS = ("TB-2026-09-30", "TB-2027-03-31")  # the second is listed once the first matured
FIRST_MATURITY_US = 100_000_000_000  # far beyond the stream's own clock: reached by a jump
STALENESS_US = 200_000  # a short reserve staleness, so that deposits do go stale

# (account, name, KYC-approved, jurisdiction)
PARTICIPANTS = (
    (1, "alice", True, "US"),
    (2, "bruno", True, "DE"),
    (3, "chen", True, "CN"),  # excluded from the equity
    (4, "dana", False, "US"),  # not KYC-approved: trades nothing
    (5, "ellis", True, "GB"),  # excluded from the bills
)
OPENED = tuple(p[0] for p in PARTICIPANTS)
NEVER_OPENED = 9
CL_ORD_IDS = ("a", "b", "c", "d")
TAGS = ("t1", "t2")
INVARIANTS_EVERY = 100
BALANCES_EVERY = 300


def equity_spec(symbol: str = EQUITY, **more: Any) -> InstrumentSpec:
    """An $18.3457 stock: tick 0.0001, step 10**-8 share (0.18 cash units), fees 1 / 5 bps."""
    fields: dict[str, Any] = dict(
        symbol=symbol,
        kind=InstrumentKind.EQUITY,
        base=symbol.split("-")[0],
        quote=CASH,
        price_decimals=4,
        price_tick=1,
        qty_decimals=8,
        qty_step=1,
        min_qty=1_000,
        quote_decimals=6,
        min_notional=10_000,  # one cent
        price_band_bps=500,
        reference_price=183_457,
        maker_fee_bps=1,
        taker_fee_bps=5,
        excluded_jurisdictions=("CN",),
    )
    fields.update(more)
    return InstrumentSpec(**fields)


def bill_spec(asset: str, maturity_us: int) -> InstrumentSpec:
    """Per 100 face to 6 decimals on a 0.000025 tick, whole dollars of face, fees 0 / 3 bps."""
    return InstrumentSpec(
        symbol=f"{asset}-USD",
        kind=InstrumentKind.TBILL,
        base=asset,
        quote=CASH,
        price_decimals=6,
        price_tick=25,
        qty_decimals=0,
        qty_step=1,
        min_qty=100,
        quote_decimals=6,
        min_notional=100 * USD_UNIT,
        price_band_bps=100,
        reference_price=98_765_425,
        maker_fee_bps=0,
        taker_fee_bps=3,
        maturity_us=maturity_us,
        excluded_jurisdictions=("GB",),
    )


def notch(symbol: str) -> int:
    """The price step the generator moves in: odd on the equity, 80 ticks on a bill."""
    return 37 if symbol == EQUITY else 2_000


class Stream:
    """Builds one command at a time from a seeded RNG and the reference's current state."""

    def __init__(self, seed: int, ref: ReferenceClearedVenue, count: int) -> None:
        self.rng = random.Random(seed)
        self.ref = ref
        self.ts = 1_000_000
        self.produced = 0
        self.fresh = 0  # counter for new asset codes and account ids
        # Command index -> the bill that matures then: the clock jumps to its maturity.
        self.maturing = {int(count * 0.45): 0, int(count * 0.9): 1}
        self.bill = 0  # the live bill
        self.pending: list[Command] = []
        self._setup()

    # --------------------------------------------------------------- scripted parts

    def _setup(self) -> None:
        ts = self.ts
        self.pending += [
            ListAsset(ts_us=ts, code=CASH, scale=6),
            ListAsset(ts_us=ts, code=EQUITY_ASSET, scale=8),
            ListAsset(ts_us=ts, code=BILL_ASSETS[0], scale=0),
            *(
                OpenAccount(ts_us=ts, account=a, name=n, kyc_approved=k, jurisdiction=j)
                for a, n, k, j in PARTICIPANTS
            ),
            AttestReserves(ts_us=ts, asset=CASH, amount=400_000 * USD_UNIT, as_of_us=ts),
            AttestReserves(ts_us=ts, asset=EQUITY_ASSET, amount=20_000 * SHARE, as_of_us=ts),
            AttestReserves(ts_us=ts, asset=BILL_ASSETS[0], amount=400_000, as_of_us=ts),
            ListInstrument(ts_us=ts, spec=equity_spec()),
            ListInstrument(ts_us=ts, spec=bill_spec(BILL_ASSETS[0], FIRST_MATURITY_US)),
        ]
        for account in OPENED:
            self.pending += [
                Deposit(ts_us=ts, account=account, asset=CASH, amount=20_000 * USD_UNIT + account),
                Deposit(ts_us=ts, account=account, asset=EQUITY_ASSET, amount=300 * SHARE + 7),
                Deposit(ts_us=ts, account=account, asset=BILL_ASSETS[0], amount=20_000),
            ]

    def _maturity(self, which: int) -> None:
        """A withdrawal of the bill left pending, the clock to maturity, then the next bill."""
        asset = BILL_ASSETS[which]
        holders = [a for a in OPENED if self.ref.available(a, asset) > 0]
        if holders:
            account = self.rng.choice(holders)
            amount = max(self.ref.available(account, asset) // 3, 1)
            self.pending.append(
                RequestWithdrawal(ts_us=self.ts, account=account, asset=asset, amount=amount)
            )
        self.ts = FIRST_MATURITY_US * (which + 1)
        self.pending.append(AdvanceClock(ts_us=self.ts))
        if which + 1 == len(BILL_ASSETS):
            self.bill = -1
            return
        self.bill = which + 1
        nxt = BILL_ASSETS[self.bill]
        ts = self.ts
        self.pending += [
            ListAsset(ts_us=ts, code=nxt, scale=0),
            AttestReserves(ts_us=ts, asset=nxt, amount=300_000, as_of_us=ts),
            ListInstrument(ts_us=ts, spec=bill_spec(nxt, FIRST_MATURITY_US * (self.bill + 1))),
        ]
        self.pending += [
            Deposit(ts_us=ts, account=account, asset=nxt, amount=15_000) for account in OPENED
        ]

    # --------------------------------------------------------------- state views

    def live_symbols(self) -> list[str]:
        symbols = [EQUITY]
        if self.bill >= 0:
            symbols.append(f"{BILL_ASSETS[self.bill]}-USD")
        return [s for s in symbols if s in self.ref.markets]

    def pick_symbol(self) -> str:
        rng = self.rng
        if rng.random() < 0.03:
            return rng.choice(("NOPE-USD", f"{BILL_ASSETS[0]}-USD"))  # unknown or matured
        live = self.live_symbols()
        return EQUITY if len(live) == 1 or rng.random() < 0.6 else live[1]

    def spec(self, symbol: str) -> InstrumentSpec:
        market = self.ref.markets.get(symbol)
        return market["spec"] if market else equity_spec()

    def listed_assets(self) -> list[str]:
        return list(self.ref.assets)

    def some_asset(self) -> str:
        """Mostly cash, then the equity, the live bill; now and then any listed asset."""
        rng = self.rng
        if rng.random() < 0.05:
            return rng.choice(self.listed_assets())
        live = [CASH, CASH, EQUITY_ASSET]
        if self.bill >= 0:
            live.append(BILL_ASSETS[self.bill])
        return rng.choice(live)

    def some_trader(self, symbol: str) -> int:
        """Mostly an account that may trade `symbol`; sometimes any, or one never opened."""
        rng = self.rng
        if rng.random() < 0.1:
            return rng.choice((*OPENED, NEVER_OPENED))
        return rng.choice((1, 2, 5) if symbol == EQUITY else (1, 2, 3))

    def price_near(self, symbol: str, side: Side) -> int:
        rng = self.rng
        if symbol not in self.ref.markets:
            return 183_457
        tick = self.spec(symbol).price_tick
        step = notch(symbol)
        ref = self.ref.reference_price(symbol)
        low, high = self.ref.band(symbol)
        passive = -1 if side is BUY else 1
        jitter = tick * rng.randint(0, 3)
        roll = rng.random()
        if roll < 0.6:
            price = ref + passive * step * rng.randint(-1, 8) + jitter
        elif roll < 0.8:
            price = ref - passive * step * rng.randint(1, 6) + jitter
        elif roll < 0.88:
            price = ref + passive * step * rng.randint(9, 40)
        elif roll < 0.95:
            price = ref - passive * step * rng.randint(7, 40)
        elif roll < 0.98:  # on or just outside the band
            price = (
                high + tick * rng.randint(0, 3) if side is BUY else low - tick * rng.randint(0, 3)
            )
        else:
            price = ref + rng.randint(1, tick - 1) if tick > 1 else ref  # off the tick
        return max(price, tick)

    def unit_cash(self, symbol: str, price: int) -> Fraction:
        """The exact cash of one quantity unit at `price`, with the worst fee on it."""
        spec = self.spec(symbol)
        fee = Fraction(max(spec.maker_fee_bps, spec.taker_fee_bps), 10_000)
        return self.ref.notional(self.ref.markets[symbol], price, 1) * (1 + fee)

    def affordable(self, symbol: str, account: int, side: Side, price: int) -> int:
        spec = self.spec(symbol)
        if side is SELL:
            return self.ref.available(account, spec.base)
        return int(self.ref.available(account, spec.quote) / self.unit_cash(symbol, price))

    def qty_for(self, symbol: str, account: int, side: Side, price: int) -> int:
        """Sized against what the account has: often too much, sometimes tiny remainders."""
        rng = self.rng
        if symbol not in self.ref.markets:
            return 1_000
        spec = self.spec(symbol)
        unit = self.unit_cash(symbol, price)
        roll = rng.random()
        if roll < 0.42:  # between 30 cents and 400 dollars' worth
            qty = int(USD_UNIT * Fraction(10 ** rng.uniform(-0.5, 2.6)) / unit)
        elif roll < 0.78:
            qty = int(self.affordable(symbol, account, side, price) * rng.uniform(0.2, 1.25))
        elif roll < 0.9:  # the leaves of the best opposite order, give or take a few units
            best = self.ref.side_in_priority(symbol, SELL if side is BUY else BUY)
            leaves = best[0]["leaves"] if best else spec.min_qty * 20
            qty = leaves + rng.randint(-6, 6) * spec.qty_step
        elif roll < 0.95:
            qty = int(self.affordable(symbol, account, side, price) * rng.uniform(1.5, 5)) + 99
        else:  # around the minimum notional
            qty = int(spec.min_notional / unit) + rng.randint(-50, 300)
        if rng.random() < 0.95:  # mostly above the minimums
            least = max(spec.min_qty, int(spec.min_notional / (unit / 2)))
            qty = max(qty, least + rng.randint(0, 99) * spec.qty_step)
        qty = qty // spec.qty_step * spec.qty_step
        return max(qty, spec.qty_step)

    def some_open_order(self) -> dict[str, Any] | None:
        orders = self.ref.open
        return orders[self.rng.choice(list(orders))] if orders else None

    def some_order_id(self) -> int:
        last = self.ref.last_order_id
        return self.rng.randint(max(last - 300, 1), last + 2)

    # --------------------------------------------------------------- commands

    def next(self) -> Command:
        self.produced += 1
        if self.produced in self.maturing:
            self._maturity(self.maturing[self.produced])
        if self.pending:
            return self.pending.pop(0)
        reopen = self.reopen()
        if reopen is not None:
            return reopen
        rng = self.rng
        roll = rng.random()
        self.ts += 0 if roll < 0.3 else rng.randint(1, 100) if roll < 0.8 else rng.randint(1, 4000)
        crowded = len(self.ref.open) > 150
        weights: tuple[tuple[Callable[[], Command], float], ...] = (
            (self._place, 46 if not crowded else 22),
            (self._cancel, 5 if not crowded else 25),
            (self._amend, 15),
            (self._cancel_all, 0.5 if not crowded else 5),
            (self._advance, 2),
            (self._set_reference, 1),
            (self._set_status, 1),
            (self._deposit, 6),
            (self._attest, 2),
            (self._request_withdrawal, 2.5),
            (self._confirm_withdrawal, 1.2),
            (self._void_withdrawal, 0.8),
            (self._reference_data, 0.6),
        )
        make = rng.choices([w[0] for w in weights], [w[1] for w in weights])[0]
        return make()

    def reopen(self) -> Command | None:
        """Bring a live instrument back to open now and then, so that trading goes on."""
        for symbol in self.live_symbols():
            if self.ref.markets[symbol]["status"] != STATUS.OPEN and self.rng.random() < 0.05:
                return SetInstrumentStatus(ts_us=self.ts, symbol=symbol, status=STATUS.OPEN)
        return None

    def _place(self) -> Command:
        rng = self.rng
        symbol = self.pick_symbol()
        side = rng.choice((BUY, SELL))
        account = self.some_trader(symbol)
        status = self.ref.markets[symbol]["status"] if symbol in self.ref.markets else None
        fields: dict[str, Any] = dict(
            ts_us=self.ts,
            account=account,
            symbol=symbol,
            side=side,
            stp=rng.choices(list(SelfTradePrevention), (40, 20, 20, 20))[0],
        )
        if rng.random() < 0.2:
            fields["cl_ord_id"] = rng.choice(CL_ORD_IDS)
        if rng.random() < 0.2:
            fields["tag"] = rng.choice(TAGS)
        if rng.random() < 0.16 and status is not STATUS.POST_ONLY:  # market
            fields["order_type"] = MARKET
            if side is BUY and rng.random() < 0.45:
                fields["tif"] = IOC
                cash = self.ref.available(account, CASH)
                budget = int(cash * rng.uniform(0.02, 1.15)) if rng.random() < 0.6 else 0
                fields["quote_qty"] = budget or rng.randint(1, 300 * USD_UNIT)
            else:
                fields["tif"] = IOC if rng.random() < 0.7 else FOK
                high_or_low = (
                    self.ref.band(symbol)[side is BUY] if symbol in self.ref.markets else 1
                )
                fields["qty"] = self.qty_for(symbol, account, side, high_or_low)
            return PlaceOrder(**fields)
        price = self.price_near(symbol, side)
        fields["price"] = price
        fields["qty"] = self.qty_for(symbol, account, side, price)
        fields["tif"] = rng.choices((GTC, IOC, FOK, GTD), (60, 12, 8, 20))[0]
        post_only = status is STATUS.POST_ONLY and rng.random() < 0.8
        if fields["tif"] in (GTC, GTD) and (post_only or rng.random() < 0.08):
            fields["post_only"] = True
        if fields["tif"] is GTD:
            fields["expire_at_us"] = self.ts + rng.randint(
                1, rng.choice((30_000, 300_000, 3_000_000))
            )
        return PlaceOrder(**fields)

    def _cancel(self) -> Command:
        rng = self.rng
        order = self.some_open_order()
        roll = rng.random()
        if order is not None and roll < 0.7:
            return CancelOrder(ts_us=self.ts, account=order["account"], order_id=order["id"])
        if order is not None and order["cl_ord_id"] is not None and roll < 0.8:
            return CancelOrder(
                ts_us=self.ts, account=order["account"], cl_ord_id=order["cl_ord_id"]
            )
        return CancelOrder(ts_us=self.ts, account=rng.choice(OPENED), order_id=self.some_order_id())

    def _amend(self) -> Command:
        rng = self.rng
        order = self.some_open_order()
        if order is None or rng.random() < 0.04:
            return AmendOrder(
                ts_us=self.ts, account=rng.choice(OPENED), order_id=self.some_order_id(), qty=7
            )
        fields: dict[str, Any] = dict(ts_us=self.ts, account=order["account"])
        if order["cl_ord_id"] is not None and rng.random() < 0.3:
            fields["cl_ord_id"] = order["cl_ord_id"]
        else:
            fields["order_id"] = order["id"]
        symbol = order["symbol"]
        spec = self.spec(symbol)
        step = notch(symbol)
        side = order["side"]
        toward = 1 if side is BUY else -1
        p = rng.random()
        if p < 0.35:
            price = 0
        elif p < 0.45:
            price = order["price"]
        elif p < 0.7:
            price = order["price"] + step * rng.randint(-4, 4) + spec.price_tick * rng.randint(0, 2)
        elif p < 0.9:  # at or through the opposite best
            best = self.ref.side_in_priority(symbol, SELL if side is BUY else BUY)
            anchor = best[0]["price"] if best else order["price"]
            price = anchor + toward * step * rng.randint(-1, 3)
        else:
            price = self.price_near(symbol, side)
        qty, cum = order["qty"], order["cum"]
        q = rng.random()
        if q < 0.3:
            new_qty = 0
        elif q < 0.4:
            new_qty = qty
        elif q < 0.55:
            new_qty = int(qty * rng.uniform(0.3, 0.99))
        elif q < 0.65:  # a tiny rest on top of what traded
            new_qty = cum + rng.randint(1, 8) * spec.qty_step
        elif q < 0.7 and cum:
            new_qty = cum - rng.randint(0, 2) * spec.qty_step  # at most what traded: done
        elif q < 0.88:
            new_qty = int(qty * rng.uniform(1.05, 3))
        else:
            new_qty = int(qty * rng.uniform(3, 20))  # mostly more than the account has
        fields["price"] = max(price, 0)
        fields["qty"] = max(new_qty // spec.qty_step * spec.qty_step, 0)
        if rng.random() < 0.05:
            fields["new_cl_ord_id"] = rng.choice(CL_ORD_IDS)
        if not (fields["price"] or fields["qty"] or "new_cl_ord_id" in fields):
            fields["qty"] = qty + spec.qty_step
        return AmendOrder(**fields)

    def _cancel_all(self) -> Command:
        rng = self.rng
        fields: dict[str, Any] = dict(ts_us=self.ts, account=rng.choice(OPENED))
        if rng.random() < 0.5:
            fields["symbol"] = self.pick_symbol()
        if rng.random() < 0.4:
            fields["side"] = rng.choice((BUY, SELL))
        if rng.random() < 0.3:
            fields["tag"] = rng.choice(TAGS)
        return CancelAll(**fields)

    def _advance(self) -> Command:
        self.ts += self.rng.randint(0, 40_000)
        return AdvanceClock(ts_us=self.ts)

    def _set_reference(self) -> Command:
        symbol = self.rng.choice(self.live_symbols())
        ref = self.ref.reference_price(symbol)
        price = max(ref + notch(symbol) * self.rng.randint(-10, 10), self.spec(symbol).price_tick)
        return SetReferencePrice(ts_us=self.ts, symbol=symbol, price=price)

    def _set_status(self) -> Command:
        rng = self.rng
        symbol = rng.choice(self.live_symbols())  # matured bills stay cancel_only
        status = rng.choices(
            (STATUS.OPEN, STATUS.HALTED, STATUS.CANCEL_ONLY, STATUS.POST_ONLY), (45, 15, 12, 28)
        )[0]
        return SetInstrumentStatus(ts_us=self.ts, symbol=symbol, status=status)

    # --------------------------------------------------------------- custody

    def typical(self, asset: str) -> int:
        """A deposit of `asset`: some dollars, some shares or some face, never round."""
        rng = self.rng
        if asset == CASH:
            return rng.randint(20, 3_000) * USD_UNIT + rng.randint(0, USD_UNIT)
        if asset == EQUITY_ASSET:
            return rng.randint(1, 2_000) * SHARE // 100 + rng.randint(0, SHARE // 1_000)
        return rng.randint(100, 5_000)

    def _deposit(self) -> Command:
        rng = self.rng
        roll = rng.random()
        account = rng.choice(OPENED)
        asset = self.some_asset()
        amount = self.typical(asset)
        if roll < 0.04:
            account = rng.choice((NEVER_OPENED, -1, 0))
        elif roll < 0.08:
            asset = "EURx"
        elif roll < 0.11:
            amount = rng.choice((0, -amount))
        elif roll < 0.2:  # on the edge of staleness: just fresh, or just stale
            latest = self.ref.attestations.get(asset)
            edge = latest.as_of_us + STALENESS_US + rng.randint(0, 1) if latest else 0
            self.ts = max(self.ts, edge)
        return Deposit(ts_us=self.ts, account=account, asset=asset, amount=amount)

    def _attest(self) -> Command:
        rng = self.rng
        asset = self.some_asset()
        supply = self.ref.supply(asset)
        roll = rng.random()
        amount = supply + self.typical(asset) * rng.randint(0, 25)
        as_of = self.ts
        if roll < 0.15:  # short of what is out already, or just about
            amount = max(supply - self.typical(asset) * rng.randint(-1, 2), 0)
        elif roll < 0.22:
            amount = -rng.randint(1, 100)
        elif roll < 0.27:
            asset = "EURx"
        elif roll < 0.35:  # as of long ago: older than the latest, or stale at once
            latest = self.ref.attestations.get(asset)
            as_of = (latest.as_of_us if latest else self.ts) - rng.randint(1, 3 * STALENESS_US)
        elif roll < 0.40:  # as of the latest's moment: the same amount (a retry) or another
            latest = self.ref.attestations.get(asset)
            if latest is not None:
                as_of = latest.as_of_us
                amount = rng.choice((latest.amount, amount))
        return AttestReserves(ts_us=self.ts, asset=asset, amount=amount, as_of_us=as_of)

    def _request_withdrawal(self) -> Command:
        rng = self.rng
        roll = rng.random()
        account = rng.choice(OPENED)
        asset = self.some_asset()
        available = self.ref.available(account, asset)
        amount = int(available * rng.uniform(0.05, 1.3)) or rng.randint(1, 100)
        if roll < 0.04:
            account = rng.choice((NEVER_OPENED, -2))
        elif roll < 0.08:
            asset = "EURx"
        elif roll < 0.12:
            amount = rng.choice((0, -amount))
        return RequestWithdrawal(ts_us=self.ts, account=account, asset=asset, amount=amount)

    def some_withdrawal_id(self) -> int:
        pending = list(self.ref.pending)
        if pending and self.rng.random() < 0.75:
            return self.rng.choice(pending)
        return self.rng.randint(0, self.ref.last_withdrawal_id + 2)

    def _confirm_withdrawal(self) -> Command:
        return ConfirmWithdrawal(ts_us=self.ts, withdrawal_id=self.some_withdrawal_id())

    def _void_withdrawal(self) -> Command:
        return VoidWithdrawal(ts_us=self.ts, withdrawal_id=self.some_withdrawal_id())

    def _reference_data(self) -> Command:
        """Assets, accounts and instruments: mostly refused, sometimes new."""
        rng = self.rng
        ts = self.ts
        kind, roll = rng.randint(0, 2), rng.random()
        if kind == 0:
            if roll < 0.4:
                return ListAsset(ts_us=ts, code=rng.choice(self.listed_assets()), scale=6)
            if roll < 0.7:
                code, scale = rng.choice((("", 2), ("X" * 25, 2), ("OK", 19), ("OK", -1)))
                return ListAsset(ts_us=ts, code=code, scale=scale)
            self.fresh += 1
            return ListAsset(ts_us=ts, code=f"NEW{self.fresh}", scale=rng.randint(0, 18))
        if kind == 1:
            if roll < 0.4:
                return OpenAccount(
                    ts_us=ts,
                    account=rng.choice(OPENED),
                    name="again",
                    kyc_approved=True,
                    jurisdiction="US",
                )
            if roll < 0.7:
                account, jurisdiction = rng.choice(((0, "US"), (-5, "US"), (6, "USA"), (6, "U")))
                return OpenAccount(
                    ts_us=ts,
                    account=account,
                    name="bad",
                    kyc_approved=True,
                    jurisdiction=jurisdiction,
                )
            self.fresh += 1
            return OpenAccount(
                ts_us=ts,
                account=100 + self.fresh,
                name="new",
                kyc_approved=rng.random() < 0.5,
                jurisdiction=rng.choice(("US", "FR", "CN")),
            )
        spec = rng.choice(
            (
                equity_spec(),  # exists
                equity_spec("ZZZx-USD"),  # its base asset is not listed
                equity_spec("ODDy-USD", base=EQUITY_ASSET, qty_decimals=6),  # scale mismatch
                equity_spec("ODDz-USD", base=EQUITY_ASSET, quote_decimals=2),  # scale mismatch
                equity_spec("BADx-USD", price_tick=0),  # unsound
                # A bill whose face units (10**-8) are finer than the cash units (10**-6).
                msgspec.structs.replace(
                    bill_spec(EQUITY_ASSET, FIRST_MATURITY_US), symbol="TBX-USD", qty_decimals=8
                ),
            )
        )
        return ListInstrument(ts_us=ts, spec=spec)


class Case(NamedTuple):
    seed: int
    count: int

    def config(self) -> VenueConfig:
        return VenueConfig(reserve_staleness_max_us=STALENESS_US)

    def reference(self) -> ReferenceClearedVenue:
        return ReferenceClearedVenue(STALENESS_US)


CASES: tuple[Case, ...] = tuple(Case(seed, 40_000) for seed in range(11, 16))


def commands(case: Case, count: int) -> list[Command]:
    """The first `count` commands of a case's stream, to replay a failure by hand."""
    ref = case.reference()
    stream = Stream(case.seed, ref, case.count)
    result = []
    for _ in range(count):
        command = stream.next()
        ref.execute(command)
        result.append(command)
    return result


# --------------------------------------------------------------------------- coverage

EXPECTED: set[tuple[str, object]] = {
    ("place_order", E.NOT_ELIGIBLE),
    ("place_order", E.INSUFFICIENT_BALANCE),
    ("amend_order", E.INSUFFICIENT_BALANCE),
    *(
        ("deposit", r)
        for r in (
            E.BAD_PARAM,
            E.UNKNOWN_ACCOUNT,
            E.UNKNOWN_ASSET,
            E.RESERVES_STALE,
            E.RESERVES_EXCEEDED,
        )
    ),
    *(
        ("request_withdrawal", r)
        for r in (E.BAD_PARAM, E.UNKNOWN_ACCOUNT, E.UNKNOWN_ASSET, E.INSUFFICIENT_BALANCE)
    ),
    ("confirm_withdrawal", E.UNKNOWN_WITHDRAWAL),
    ("void_withdrawal", E.UNKNOWN_WITHDRAWAL),
    ("list_asset", E.BAD_PARAM),
    ("list_asset", E.ASSET_EXISTS),
    ("open_account", E.BAD_PARAM),
    ("open_account", E.ACCOUNT_EXISTS),
    ("attest_reserves", E.UNKNOWN_ASSET),
    ("attest_reserves", E.BAD_PARAM),
    ("list_instrument", E.BAD_PARAM),
    ("list_instrument", E.INSTRUMENT_EXISTS),
    ("TradeSettled", "rounding to the venue"),
    ("TradeSettled", "rounding from the venue"),
    ("TradeSettled", "fee"),
    ("TradeSettled", "self-trade"),
    ("TradeSettled", "seller fee capped"),
    ("InstrumentMatured", "paid holders"),
    ("OrderCanceled", CancelReason.MATURITY),
    ("OrderCanceled", CancelReason.IOC_REST),
    ("OrderExpired", CancelReason.GTD),
    ("SelfTradePrevented", "maker"),
    ("SelfTradePrevented", "taker"),
    *(
        (name, None)
        for name in (
            "Deposited",
            "WithdrawalRequested",
            "WithdrawalConfirmed",
            "WithdrawalVoided",
            "AssetListed",
            "AccountOpened",
            "ReservesAttested",
            "InstrumentListed",
            "OrderAmended",
            "BalanceChanged",
        )
    ),
}


def coverage_keys(event: Event) -> list[tuple[str, object]]:
    if isinstance(event, CommandRejected):
        return [(event.command, event.reason)]
    name = type(event).__name__
    if isinstance(event, TradeSettled):
        keys: list[tuple[str, object]] = [(name, None)]
        for t in event.transfers:
            if t.kind is TransferKind.ROUNDING:
                direction = "to" if t.credit_account == ROUNDING else "from"
                keys.append((name, f"rounding {direction} the venue"))
            elif t.kind is TransferKind.FEE:
                keys.append((name, "fee"))
        if not any(t.kind is TransferKind.DELIVERY for t in event.transfers):
            keys.append((name, "self-trade"))
        return keys
    if isinstance(event, InstrumentMatured) and event.holders:
        return [(name, "paid holders")]
    reason = getattr(event, "reason", None) or getattr(event, "liquidity", None)
    return [(name, reason)]


# --------------------------------------------------------------------------- the test


def without_facts(events: list[Event]) -> list[Event]:
    """The events with rejections' explaining numbers left out: the reference has none
    (tests/engine/test_venue.py checks them)."""
    return [
        msgspec.structs.replace(e, facts=(), asset=None) if isinstance(e, CommandRejected) else e
        for e in events
    ]


def describe(events: list[Event]) -> str:
    return "\n".join(f"    {event!r}" for event in events) or "    (none)"


def engine_balances(venue: Venue) -> dict[tuple[int, str], tuple[int, int]]:
    assert venue.ledger is not None
    return {key: (b.total, b.held) for key, b in venue.ledger.balances.items() if b.total or b.held}


def compare_balances(case: Case, venue: Venue, ref: ReferenceClearedVenue, where: str) -> None:
    got, want = engine_balances(venue), ref.nonzero_balances()
    if got == want:
        return
    lines = [f"{case}: balances differ {where} (account, asset): engine / reference"]
    for key in sorted(set(got) | set(want)):
        if got.get(key) != want.get(key):
            lines.append(f"  {key}: {got.get(key)} / {want.get(key)}")
    pytest.fail("\n".join(lines))


def run(case: Case) -> set[tuple[str, object]]:
    venue = Venue(case.config(), Ledger())
    ref = case.reference()
    stream = Stream(case.seed, ref, case.count)
    seen: set[tuple[str, object]] = set()
    for index in range(case.count):
        command = stream.next()
        got = without_facts(venue.execute(command))
        want = ref.execute(command)
        if got != want or [type(e) for e in got] != [type(e) for e in want]:
            pytest.fail(
                f"{case}: command #{index} differs\n"
                f"  command: {command!r}\n"
                f"  engine:\n{describe(got)}\n"
                f"  reference:\n{describe(want)}\n"
                f"  replay: commands({case!r}, {index + 1})"
            )
        for event in got:
            seen.update(coverage_keys(event))
        if index % INVARIANTS_EVERY == 0:
            venue.check_invariants()
            ref.check()
        if index % BALANCES_EVERY == 0:
            compare_balances(case, venue, ref, f"after command #{index} {command!r}")
    venue.check_invariants()
    ref.check()
    compare_balances(case, venue, ref, "at the end")
    if ref.seller_fees_capped:
        seen.add(("TradeSettled", "seller fee capped"))
    return seen


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"seed{c.seed}")
def test_settlement_agrees_with_reference(case: Case) -> None:
    started = time.perf_counter()
    seen = run(case)
    missing = EXPECTED - seen
    assert not missing, f"{case}: the stream never produced {sorted(map(str, missing))}"
    elapsed = time.perf_counter() - started
    print(f"{case}: {case.count} commands in {elapsed:.1f} s")


def test_a_replay_rebuilds_the_same_stream() -> None:
    case = Case(11, 400)
    first, again = commands(case, 400), commands(case, 400)
    assert msgspec.json.encode(first) == msgspec.json.encode(again)
