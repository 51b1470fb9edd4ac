"""Clearing in the venue: listing, eligibility, holds and releases (DvP: test_dvp.py)."""

from typing import Any

import msgspec
import pytest

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
from engine.enums import InstrumentKind, OrderType, Side, TimeInForce
from engine.events import BalanceChanged, CommandRejected, Event, OrderAmended
from engine.reasons import ErrorCode
from engine.venue import Venue
from settlement.ledger import Ledger
from tests.engine.conftest import SYMBOL, kinds, make_spec

BUY, SELL = Side.BUY, Side.SELL
USD = 1_000_000  # one dollar in units
SHARE = 1_000_000  # one share in units


class Cleared:
    """A venue with a ledger: USD and AAPLx, accounts 1-3 (DE) and 4 (US), funded."""

    def __init__(self, **spec: Any) -> None:
        self.venue = Venue(ledger=Ledger())
        fields: dict[str, Any] = dict(maker_fee_bps=1, taker_fee_bps=5, min_notional=0)
        fields |= spec
        setup: list[Command] = [
            ListAsset(code="USD", scale=6),
            ListAsset(code="AAPLx", scale=6),
            ListInstrument(spec=make_spec(excluded_jurisdictions=("US",), **fields)),
            AttestReserves(asset="USD", amount=10**9 * USD, as_of_us=1),
            AttestReserves(asset="AAPLx", amount=10**6 * SHARE, as_of_us=1),
        ]
        for account, jurisdiction in ((1, "DE"), (2, "DE"), (3, "DE"), (4, "US")):
            setup += [
                OpenAccount(
                    account=account,
                    name=f"a{account}",
                    kyc_approved=True,
                    jurisdiction=jurisdiction,
                ),
                Deposit(account=account, asset="USD", amount=10_000 * USD),
                Deposit(account=account, asset="AAPLx", amount=100 * SHARE),
            ]
        for command in setup:
            events = self.do(command)
            assert not any(isinstance(e, CommandRejected) for e in events), events

    def do(self, command: Command) -> list[Event]:
        command = msgspec.structs.replace(command, ts_us=self.venue.ts_us + 1)
        events = self.venue.execute(command)
        self.venue.check_invariants()
        return events

    def place(self, account: int, side: Side, price: int, qty: int, **more: Any) -> list[Event]:
        return self.do(
            PlaceOrder(account=account, symbol=SYMBOL, side=side, price=price, qty=qty, **more)
        )

    def balance(self, account: int, asset: str) -> tuple[int, int]:
        balance = self.venue.ledger.balance(account, asset)  # type: ignore[union-attr]
        return balance.total, balance.held


def test_a_buy_holds_cost_and_worst_fee(cleared: Cleared) -> None:
    events = cleared.place(1, BUY, 10_000, 2 * SHARE)  # 200 USD at 100.00
    assert cleared.balance(1, "USD") == (10_000 * USD, 200 * USD + 100_000)  # + 5 bps
    changed = [e for e in events if isinstance(e, BalanceChanged)]
    assert [(e.account, e.asset, e.held) for e in changed] == [(1, "USD", 200_100_000)]
    cleared.place(2, SELL, 10_100, 3 * SHARE)
    assert cleared.balance(2, "AAPLx") == (100 * SHARE, 3 * SHARE)


def test_partial_fill_releases_price_improvement(cleared: Cleared) -> None:
    cleared.place(2, SELL, 9_900, 1 * SHARE)
    cleared.place(1, BUY, 10_000, 2 * SHARE)  # buys 1 at 99.00, rests 1 at 100.00
    total, held = cleared.balance(1, "USD")
    assert held == 100 * USD + 50_000  # the rest's worst case, improvement released
    assert total == 10_000 * USD - 99 * USD - 49_500  # taker fee on 99 USD
    cleared.do(CancelOrder(account=1, order_id=2))
    assert cleared.balance(1, "USD")[1] == 0


def test_insufficient_balance_changes_nothing(cleared: Cleared) -> None:
    before = cleared.venue.state_hash()
    events = cleared.place(3, BUY, 10_000, 100 * SHARE)  # 10,000 USD + fee > 10,000 USD
    assert isinstance(events[0], CommandRejected)
    assert events[0].reason is ErrorCode.INSUFFICIENT_BALANCE
    events = cleared.place(3, SELL, 10_000, 101 * SHARE)
    assert events[0].reason is ErrorCode.INSUFFICIENT_BALANCE  # type: ignore[union-attr]
    cleared.venue.ts_us -= 2
    assert cleared.venue.state_hash() == before


def test_ineligible_accounts_are_refused(cleared: Cleared) -> None:
    events = cleared.place(4, BUY, 10_000, SHARE)  # a US person: excluded
    assert events[0].reason is ErrorCode.NOT_ELIGIBLE  # type: ignore[union-attr]
    events = cleared.place(9, BUY, 10_000, SHARE)  # no such participant
    assert events[0].reason is ErrorCode.NOT_ELIGIBLE  # type: ignore[union-attr]
    cleared.do(OpenAccount(account=5, name="nokyc", kyc_approved=False, jurisdiction="DE"))
    events = cleared.place(5, BUY, 10_000, SHARE)
    assert events[0].reason is ErrorCode.NOT_ELIGIBLE  # type: ignore[union-attr]


def test_amend_adjusts_the_hold(cleared: Cleared) -> None:
    cleared.place(1, BUY, 10_000, SHARE)
    cleared.do(AmendOrder(account=1, order_id=1, price=5_000))
    assert cleared.balance(1, "USD")[1] == 50 * USD + 25_000
    events = cleared.do(AmendOrder(account=1, order_id=1, qty=1_000 * SHARE))
    assert events[0].reason is ErrorCode.INSUFFICIENT_BALANCE  # type: ignore[union-attr]
    cleared.place(2, SELL, 10_000, 5 * SHARE)
    cleared.do(AmendOrder(account=2, order_id=2, qty=2 * SHARE))
    assert cleared.balance(2, "AAPLx")[1] == 2 * SHARE


def test_market_buy_by_quote_holds_its_budget(cleared: Cleared) -> None:
    cleared.place(2, SELL, 10_000, 10 * SHARE)
    events = cleared.do(
        PlaceOrder(
            account=1,
            symbol=SYMBOL,
            side=BUY,
            order_type=OrderType.MARKET,
            tif=TimeInForce.IOC,
            quote_qty=250 * USD,
        )
    )
    changes = [e for e in events if isinstance(e, BalanceChanged) and e.account == 1]
    assert changes[0].held == 250 * USD + 125_000
    assert cleared.balance(1, "USD") == (10_000 * USD - 250 * USD - 125_000, 0)
    assert cleared.balance(1, "AAPLx") == (102_500_000, 0)


def test_the_state_hash_covers_balances(cleared: Cleared) -> None:
    other = Cleared()
    assert other.venue.state_hash() == cleared.venue.state_hash()
    cleared.do(Deposit(account=1, asset="USD", amount=1))
    other.do(Deposit(account=2, asset="USD", amount=1))  # same clock, another balance
    assert other.venue.state_hash() != cleared.venue.state_hash()


def test_a_first_order_remembers_the_position_an_ineligible_one_does_not(
    cleared: Cleared,
) -> None:
    """An account's position is remembered at its first accepted order, so that later orders,
    amends and cancels find their balance by account id; a remembered position also stands for
    eligibility, so an account refused as not eligible is never remembered."""
    positions = cleared.venue.markets[SYMBOL].positions
    cleared.place(4, BUY, 9_000, 1 * SHARE)  # a US account: NOT_ELIGIBLE
    cleared.place(4, BUY, 9_000, 1 * SHARE)
    assert 4 not in positions
    cleared.place(1, BUY, 9_000, 1 * SHARE)
    ledger = cleared.venue.ledger
    assert ledger is not None
    assert positions[1] == (ledger.balances[(1, "AAPLx")], ledger.balances[(1, "USD")])
    events = cleared.do(AmendOrder(account=1, order_id=1, price=9_100))
    held = [(e.asset, e.held) for e in events if isinstance(e, BalanceChanged)]
    assert held == [("USD", 91 * USD + 45_500)] == [("USD", cleared.balance(1, "USD")[1])]


def test_a_price_amend_moves_the_hold_or_is_refused_when_it_cannot_grow(cleared: Cleared) -> None:
    cleared.place(3, BUY, 10_000, 99 * SHARE)  # 9,900 USD + fee held of 10,000
    cleared.place(3, SELL, 10_900, 10 * SHARE)
    before = cleared.balance(3, "USD")
    events = cleared.do(AmendOrder(account=3, order_id=1, price=10_100, qty=99 * SHARE))
    refused = events[0]
    assert isinstance(refused, CommandRejected) and refused.reason is ErrorCode.INSUFFICIENT_BALANCE
    assert dict((name, units) for name, units, _ in refused.facts)["needed"] == 99 * USD + 49_500
    assert cleared.balance(3, "USD") == before and cleared.venue.orders[1].price == 10_000
    events = cleared.do(AmendOrder(account=3, order_id=1, price=9_000))  # the hold shrinks
    assert kinds(events) == ["OrderAmended", "BalanceChanged"]
    assert cleared.balance(3, "USD")[1] == cleared.venue.orders[1].hold == 8_910 * USD + 4_455_000
    events = cleared.do(AmendOrder(account=3, order_id=2, price=10_800))  # a sell keeps its hold
    assert kinds(events) == ["OrderAmended"] and cleared.balance(3, "AAPLx")[1] == 10 * SHARE


@pytest.mark.parametrize("side", [BUY, SELL])
@pytest.mark.parametrize(("ticks", "size"), [(-1, 5), (1, 5), (1, 7), (-2, 3), (0, 6), (1, 120)])
def test_a_requote_of_a_traded_order_moves_as_the_checks_one_by_one_would(
    side: Side, ticks: int, size: int
) -> None:
    """A quote's amend of an order that has traded asks for what traded plus the new size
    at a new price: `_amend` moves it at once (a buy's hold: the worst case of the rest on
    top of what it paid). Its events and the state after are those of `_amend_checked`,
    also where the price stays or the hold does not fit (120 shares: more than account 1
    has of either asset)."""
    outcomes = []
    for amend in ("_amend", "_amend_checked"):
        cleared = Cleared()
        venue = cleared.venue
        cleared.place(2, SELL, 10_100, 10 * SHARE)
        cleared.place(2, BUY, 9_900, 10 * SHARE)
        price = 9_950 if side is BUY else 10_050
        cleared.place(1, side, price, 5 * SHARE)
        order = venue.orders[3]
        cleared.place(3, SELL if side is BUY else BUY, price, SHARE // 4, tif=TimeInForce.IOC)
        assert order.cum_qty == SHARE // 4
        venue._handlers[AmendOrder] = getattr(venue, amend)
        qty = order.cum_qty + size * SHARE
        events = cleared.do(AmendOrder(account=1, order_id=3, price=price + ticks, qty=qty))
        outcomes.append((events, venue.state_hash()))
    assert outcomes[0] == outcomes[1]
    refused = [e for e in outcomes[0][0] if isinstance(e, CommandRejected)]
    assert [e.reason for e in refused] == ([ErrorCode.INSUFFICIENT_BALANCE] if size > 100 else [])


@pytest.mark.parametrize("side", [BUY, SELL])
@pytest.mark.parametrize("price", [0, 1])  # none given, or the order's own
# Shares left to trade, after a fill or none: 0 completes the traded order, 6 grows it.
@pytest.mark.parametrize(
    ("traded", "size"), [(False, 3), (False, 1), (False, 6), (True, 3), (True, 1), (True, 0)]
)
def test_a_size_cut_keeps_its_place_as_the_checks_one_by_one_would(
    side: Side, traded: bool, price: int, size: int
) -> None:
    """A quote's size cut asks, at its price or none, for what traded plus a smaller size:
    `_amend` keeps its place at once (a buy's hold: the worst case of the rest, on top of
    what it paid if it traded). Its events and the state after are those of
    `_amend_checked`, also where the amend completes the order or grows it."""
    outcomes = []
    for amend in ("_amend_checked", "_amend"):  # the shortcut's venue last, looked at below
        cleared = Cleared()
        venue = cleared.venue
        resting = 9_950 if side is BUY else 10_050
        cleared.place(1, side, resting, 5 * SHARE)
        cleared.place(2, side, resting, 5 * SHARE)
        order = venue.orders[1]
        if traded:
            cleared.place(3, SELL if side is BUY else BUY, resting, SHARE // 4, tif=TimeInForce.IOC)
            assert order.cum_qty == SHARE // 4
        venue._handlers[AmendOrder] = getattr(venue, amend)
        qty = order.cum_qty + size * SHARE
        events = cleared.do(AmendOrder(account=1, order_id=1, price=price * resting, qty=qty))
        outcomes.append((events, venue.state_hash()))
    assert outcomes[0] == outcomes[1]
    amended = outcomes[1][0][0]
    assert isinstance(amended, OrderAmended) and amended.priority_kept is (size < 5)
    if 0 < size < 5:
        assert list(venue.book(SYMBOL).side(side).best.orders) == [1, 2]  # type: ignore[union-attr]
        held = cleared.balance(1, "USD" if side is BUY else "AAPLx")[1]
        assert held == venue.orders[1].hold < (5 * SHARE if side is SELL else 5 * 100 * USD)


def test_an_order_taking_the_checks_one_by_one_holds_from_the_traders_balance(
    cleared: Cleared,
) -> None:
    """A post-only or gtd order skips the one-expression checks that look the remembered
    position up; it still holds from the account's balance after a trade."""
    cleared.place(2, SELL, 10_000, 1 * SHARE)
    cleared.place(1, BUY, 10_000, 1 * SHARE)  # account 1 has traded: a remembered position
    assert 1 in cleared.venue.markets[SYMBOL].positions
    events = cleared.place(1, BUY, 9_000, 1 * SHARE, post_only=True)
    held = [(e.asset, e.held) for e in events if isinstance(e, BalanceChanged)]
    assert held == [("USD", 90 * USD + 45_000)]  # + 5 bps worst fee
    events = cleared.place(1, SELL, 10_500, 1 * SHARE, tif=TimeInForce.GTD, expire_at_us=10**9)
    held = [(e.asset, e.held) for e in events if isinstance(e, BalanceChanged)]
    assert held == [("AAPLx", 1 * SHARE)]


def test_a_bill_token_on_a_second_instrument_is_refused_naming_the_token_and_its_bill() -> None:
    """A T-bill whose token already trades elsewhere was refused as "the bill token of
    AAPLx-USD trades on that instrument only": AAPLx-USD is no bill, and the token shared
    (USD) went unnamed (found by session 25's operator explorer). Each refusal now names the
    token and the bill it belongs to."""
    cleared = Cleared()
    maturity_us = 1_000 * 3_600_000_000
    bill = dict(kind=InstrumentKind.TBILL, price_decimals=6, reference_price=98_676_708)
    usd_bill = make_spec(
        symbol="TB-USD", base="USD", quote="AAPLx", maturity_us=maturity_us, **bill
    )
    refused = cleared.do(ListInstrument(spec=usd_bill))
    assert isinstance(refused[0], CommandRejected), refused
    assert refused[0].detail == (
        "USD already trades on AAPLx-USD: a T-bill's token trades on its own instrument only"
        " (give TB-USD a token of its own)"
    )
    assert kinds(cleared.do(ListAsset(code="TB-X", scale=6))) == ["AssetListed"]
    own = make_spec(symbol="TB-X-USD", base="TB-X", maturity_us=maturity_us, **bill)
    assert kinds(cleared.do(ListInstrument(spec=own))) == ["InstrumentListed"]
    priced_in_bills = make_spec(symbol="AAPLx-TBX", quote="TB-X")
    refused = cleared.do(ListInstrument(spec=priced_in_bills))
    assert isinstance(refused[0], CommandRejected), refused
    assert refused[0].detail == "TB-X is the bill token of TB-X-USD: it trades there only"
