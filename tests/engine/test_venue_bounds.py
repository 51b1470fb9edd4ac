"""Hostile numbers in the venue: nothing an order may trade can leave what the codecs take.

An order's running totals (`filled_value`, and with a ledger its exact fees) are hashed and
snapshotted as msgpack integers (64 bits at most). Orders, amends and market orders whose
worst case could pass `Market.order_value_max` are refused with NOTIONAL_OUT_OF_RANGE and
change nothing; those at the bound trade, and the venue still hashes, snapshots and restores.
"""

from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import snapshot
from engine.commands import (
    AdvanceClock,
    AmendOrder,
    AttestReserves,
    Command,
    ConfirmWithdrawal,
    Deposit,
    ListAsset,
    ListInstrument,
    PlaceOrder,
    RequestWithdrawal,
    SetInstrumentStatus,
    SetReferencePrice,
    SplitShares,
)
from engine.enums import (
    CancelReason,
    InstrumentKind,
    InstrumentStatus,
    OrderType,
    Side,
    TimeInForce,
)
from engine.events import CommandRejected, Event, OrderCanceled, TradeExecuted
from engine.reasons import AMEND_PRECEDENCE, DEPOSIT_PRECEDENCE, PLACE_PRECEDENCE, ErrorCode
from engine.units import INT64_MAX, UNITS_MAX
from engine.venue import Venue, VenueConfig
from settlement.ledger import SUPPLY_MAX
from tests.engine.conftest import SYMBOL, Harness, make_spec
from tests.engine.test_clearing import Cleared
from tests.engine.test_custody import MATURITY_US, USD, Custodied, list_bill

BUY, SELL = Side.BUY, Side.SELL
E = ErrorCode
HIGH = 2**40  # a reference price far above SMALL_INT_MAX: every order takes the checks one by one


def rejection(events: list[Event]) -> ErrorCode | None:
    rejected = [e for e in events if isinstance(e, CommandRejected)]
    return rejected[0].reason if rejected else None


def still_whole(venue: Venue) -> str:
    """The venue hashes, snapshots and restores to the same hash; returns the hash."""
    state = venue.state_hash()
    restored = snapshot.restore(snapshot.decode(snapshot.encode(snapshot.capture(venue))))
    assert restored.state_hash() == state
    return state


def refused_unchanged(
    harness: Harness | Cleared | Custodied, command: Any, reason: ErrorCode
) -> None:
    """`command` is refused for `reason` and changes nothing but the clock."""
    before = still_whole(harness.venue)
    events = harness.do(command)
    assert len(events) == 1 and rejection(events) is reason, events
    harness.venue.ts_us -= 1
    assert still_whole(harness.venue) == before


def value_max(harness: Harness | Cleared) -> int:
    return harness.venue.markets[SYMBOL].order_value_max


def test_the_bound_fits_the_fees_of_a_whole_order_twice_over() -> None:
    harness = Harness(maker_fee_bps=7, taker_fee_bps=30)
    market = harness.venue.markets[SYMBOL]
    assert 2 * market.order_value_max * market.notional_num * 30 <= INT64_MAX
    assert Harness().venue.markets[SYMBOL].order_value_max == INT64_MAX // 2  # no fee, num 1


def test_a_limit_past_the_bound_is_refused_and_one_at_it_trades_whole() -> None:
    """The finding: price x qty past 64 bits with no notional cap crashed the hash."""
    harness = Harness(reference_price=HIGH, price_band_bps=1_000)
    qty = value_max(harness) // HIGH
    place = PlaceOrder(account=1, symbol=SYMBOL, side=BUY, price=HIGH, qty=qty + 1)
    refused_unchanged(harness, place, E.NOTIONAL_OUT_OF_RANGE)
    refused_unchanged(harness, msgspec.structs.replace(place, side=SELL), E.NOTIONAL_OUT_OF_RANGE)
    assert rejection(harness.place(1, SELL, HIGH, qty)) is None
    events = harness.place(2, BUY, HIGH, qty - 1)
    assert [e.qty for e in events if isinstance(e, TradeExecuted)] == [qty - 1]
    assert harness.venue.orders[1].filled_value == HIGH * (qty - 1)  # rests, hashed
    still_whole(harness.venue)


def test_the_refusal_says_the_bound_the_notional_and_the_price() -> None:
    harness = Harness(reference_price=HIGH, price_band_bps=1_000)
    qty = value_max(harness) // HIGH + 1
    refused = harness.place(1, BUY, HIGH, qty)[0]
    assert isinstance(refused, CommandRejected)
    decimals = 8  # price 2 + qty 6
    assert refused.facts == (
        ("max_notional", value_max(harness), decimals),
        ("notional", HIGH * qty, decimals),
        ("valued_at", HIGH, 2),
    )


def test_a_sell_that_would_take_bids_past_the_bound_is_refused() -> None:
    """Each bid is within the bound, and so is the sell at its own price; the sum of what
    it would take at the bids' prices is not. Before the fix the sweep crashed the hash."""
    harness = Harness(reference_price=HIGH, price_band_bps=10_000)  # band low: one tick
    qty = value_max(harness) // HIGH
    for account in (2, 3, 4):
        assert rejection(harness.place(account, BUY, HIGH, qty)) is None
    sweep = PlaceOrder(account=1, symbol=SYMBOL, side=SELL, price=1, qty=3 * qty)
    refused_unchanged(harness, sweep, E.NOTIONAL_OUT_OF_RANGE)
    market = msgspec.structs.replace(sweep, order_type=OrderType.MARKET, price=0)
    refused_unchanged(
        harness, msgspec.structs.replace(market, tif=TimeInForce.IOC), E.NOTIONAL_OUT_OF_RANGE
    )
    # what the bids can take in all at their price is fine, and trades
    assert rejection(harness.place(1, SELL, 1, qty)) is None
    still_whole(harness.venue)


def test_market_orders_are_valued_at_the_band_high_or_their_budget() -> None:
    harness = Harness(reference_price=HIGH, price_band_bps=1_000)
    band_high = harness.venue.markets[SYMBOL].band_high
    harness.place(2, SELL, HIGH, 10)  # liquidity, so only the bound can refuse
    by_qty = PlaceOrder(
        account=1,
        symbol=SYMBOL,
        side=BUY,
        order_type=OrderType.MARKET,
        tif=TimeInForce.IOC,
        price=0,
        qty=value_max(harness) // band_high + 1,
    )
    refused_unchanged(harness, by_qty, E.NOTIONAL_OUT_OF_RANGE)
    # quote units are 1/100 of price x qty units here: a budget of 2**62 buys 2**62 x 100
    by_quote = msgspec.structs.replace(by_qty, qty=0, quote_qty=2**62)
    refused_unchanged(harness, by_quote, E.NOTIONAL_OUT_OF_RANGE)


def test_amends_count_what_the_order_traded() -> None:
    harness = Harness(reference_price=HIGH, price_band_bps=1_000)
    qty = value_max(harness) // HIGH
    harness.place(1, BUY, HIGH, qty)  # order 1
    harness.place(2, SELL, HIGH, qty // 2)  # fills half of it
    order = harness.venue.orders[1]
    assert order.filled_value == HIGH * (qty // 2)
    # a new qty still within the bound at its price alone, but not with what it traded
    lower = HIGH // 2
    amend = AmendOrder(account=1, order_id=1, price=lower, qty=qty * 19 // 10)
    assert lower * (qty * 19 // 10) <= value_max(harness)
    refused_unchanged(harness, amend, E.NOTIONAL_OUT_OF_RANGE)
    assert rejection(harness.do(AmendOrder(account=1, order_id=1, price=lower))) is None
    still_whole(harness.venue)


def test_a_sell_amended_into_high_bids_is_valued_at_them() -> None:
    harness = Harness(reference_price=HIGH, price_band_bps=10_000)
    qty = value_max(harness) // HIGH
    for account in (2, 3):
        harness.place(account, BUY, HIGH // 2, qty)
    harness.place(1, SELL, HIGH, qty // 2)  # order 3 rests above the bids
    # within the bound at its new price, not at the bids it would take
    amend = AmendOrder(account=1, order_id=3, price=HIGH // 4, qty=3 * qty)
    refused_unchanged(harness, amend, E.NOTIONAL_OUT_OF_RANGE)
    assert rejection(harness.do(AmendOrder(account=1, order_id=3, price=HIGH // 4))) is None
    still_whole(harness.venue)


def test_the_new_reason_is_in_both_precedence_lists() -> None:
    assert PLACE_PRECEDENCE.count(E.NOTIONAL_OUT_OF_RANGE) == 2  # own price; bids it takes
    assert AMEND_PRECEDENCE.count(E.NOTIONAL_OUT_OF_RANGE) == 1
    assert E.NOTIONAL_OUT_OF_RANGE == 4015


# ----------------------------------------------------------------- with a ledger and fees


@pytest.fixture
def rich() -> Cleared:
    """Fees 1 and 5 bps; accounts 1 and 2 hold 2**60 USD units and 2**60 share units."""
    cleared = Cleared()
    for asset in ("USD", "AAPLx"):
        cleared.do(AttestReserves(asset=asset, amount=SUPPLY_MAX, as_of_us=cleared.venue.ts_us + 1))
        for account in (1, 2):
            assert (
                rejection(cleared.do(Deposit(account=account, asset=asset, amount=2**60))) is None
            )
    return cleared


def test_with_a_ledger_an_order_at_the_bound_pays_its_fees_and_the_venue_snapshots(
    rich: Cleared,
) -> None:
    """Exact fees are the order's value x num x bps: past 64 bits long before the value
    itself. An order at the bound takes all but one unit (at the taker's 5 bps) and rests
    with every total still fitting: a bound without the fee rate fails here."""
    price = 10_000
    qty = value_max(rich) // price
    past = PlaceOrder(account=1, symbol=SYMBOL, side=BUY, price=price, qty=qty + 1)
    refused_unchanged(rich, past, E.NOTIONAL_OUT_OF_RANGE)
    assert rejection(rich.place(2, SELL, price, qty - 1)) is None
    events = rich.place(1, BUY, price, qty)
    assert [e.qty for e in events if isinstance(e, TradeExecuted)] == [qty - 1]
    resting = rich.venue.orders[max(rich.venue.orders)]
    assert resting.fee_exact == price * (qty - 1) * 5 > 2**61
    still_whole(rich.venue)


# ----------------------------------------------------------------- precedence


def test_place_at_its_own_price_comes_before_too_many_open_orders() -> None:
    harness = Harness(VenueConfig(open_orders_per_account_max=1), reference_price=HIGH)
    harness.place(1, BUY, HIGH // 2, 1)  # the account's one open order
    qty = value_max(harness) // HIGH + 1
    place = PlaceOrder(account=1, symbol=SYMBOL, side=BUY, price=HIGH, qty=qty)
    refused_unchanged(harness, place, E.NOTIONAL_OUT_OF_RANGE)
    place = msgspec.structs.replace(place, qty=qty - 1)  # within the bound: the next reason
    refused_unchanged(harness, place, E.TOO_MANY_OPEN_ORDERS)


def test_a_sell_at_the_bids_comes_after_insufficient_balance_and_post_only(rich: Cleared) -> None:
    price = 10_000
    qty = value_max(rich) // price
    assert rejection(rich.place(2, BUY, price, qty)) is None
    # within the bound at its own price, not at the bid it would take
    sweep = PlaceOrder(account=1, symbol=SYMBOL, side=SELL, price=9_000, qty=qty + 1)
    assert 9_000 * (qty + 1) <= value_max(rich) < price * (qty + 1)
    refused_unchanged(rich, sweep, E.NOTIONAL_OUT_OF_RANGE)
    short = msgspec.structs.replace(sweep, account=3)  # holds 100 shares
    refused_unchanged(rich, short, E.INSUFFICIENT_BALANCE)
    post_only = msgspec.structs.replace(sweep, post_only=True)
    refused_unchanged(rich, post_only, E.POST_ONLY_WOULD_TAKE)
    fok = msgspec.structs.replace(sweep, tif=TimeInForce.FOK)  # could not fill whole either
    refused_unchanged(rich, fok, E.NOTIONAL_OUT_OF_RANGE)


def test_an_amend_past_the_bound_comes_before_insufficient_balance(rich: Cleared) -> None:
    assert rejection(rich.place(3, BUY, 10_000, 1)) is None  # account 3 holds 10,000 USD
    order_id = max(rich.venue.orders)
    qty = value_max(rich) // 10_000 + 1  # past the bound, and far past its cash
    amend = AmendOrder(account=3, order_id=order_id, qty=qty)
    refused_unchanged(rich, amend, E.NOTIONAL_OUT_OF_RANGE)
    refused_unchanged(rich, msgspec.structs.replace(amend, qty=qty - 1), E.INSUFFICIENT_BALANCE)


# ----------------------------------------------------------------- supply


def usd_supply(custodied: Custodied) -> int:
    return custodied.venue.ledger.supply("USD")  # type: ignore[union-attr]


def test_a_bill_supply_whose_par_passes_64_bits_is_refused_before_maturity() -> None:
    """The finding: 4e13 face of a bill in dollars, paid in micro-dollars at maturity, is 4e19
    units of cash; the maturity booked it, and then state_hash and the snapshot raised. Now
    the deposit that would let the par pass SUPPLY_MAX is refused, and one up to it matures
    into exactly SUPPLY_MAX units of cash."""
    custodied = Custodied()
    list_bill(custodied)  # TB-X: face in whole dollars, paid in USD at 6 decimals
    custodied.ok(AttestReserves(asset="TB-X", amount=4 * 10**13, as_of_us=custodied.venue.ts_us))
    too_much = Deposit(account=1, asset="TB-X", amount=2 * 10**13)
    refused_unchanged(custodied, too_much, E.SUPPLY_OUT_OF_RANGE)
    face = SUPPLY_MAX // USD  # par per face unit: 10**6 USD units
    custodied.ok(Deposit(account=1, asset="TB-X", amount=face))
    refused_unchanged(custodied, Deposit(account=2, asset="TB-X", amount=1), E.SUPPLY_OUT_OF_RANGE)
    room = SUPPLY_MAX - face * USD  # what the par leaves of the cash's room
    refused_unchanged(
        custodied, Deposit(account=2, asset="USD", amount=room + 1), E.SUPPLY_OUT_OF_RANGE
    )
    custodied.ok(Deposit(account=2, asset="USD", amount=room))
    custodied.do(AdvanceClock(), ts=MATURITY_US)
    assert usd_supply(custodied) == SUPPLY_MAX
    assert custodied.total(1, "USD") == face * USD
    still_whole(custodied.venue)


def test_a_matured_bill_no_longer_counts_its_par() -> None:
    custodied = Custodied()
    list_bill(custodied)
    custodied.ok(AttestReserves(asset="TB-X", amount=10**6, as_of_us=custodied.venue.ts_us))
    custodied.ok(Deposit(account=1, asset="TB-X", amount=10**6))
    custodied.do(AdvanceClock(), ts=MATURITY_US)  # pays 10**12 USD units: now USD's own
    custodied.ok(AttestReserves(asset="USD", amount=SUPPLY_MAX, as_of_us=MATURITY_US))
    custodied.ok(Deposit(account=2, asset="USD", amount=SUPPLY_MAX - 10**12))
    assert usd_supply(custodied) == SUPPLY_MAX
    still_whole(custodied.venue)


def test_a_bill_listed_on_a_token_whose_par_would_pass_the_bound_is_refused() -> None:
    """Minted before its bill was listed, a token pays nothing yet; listing the bill would
    make its par due at maturity."""
    custodied = Custodied()
    custodied.ok(ListAsset(code="TB-Y", scale=0))
    custodied.ok(AttestReserves(asset="TB-Y", amount=SUPPLY_MAX, as_of_us=custodied.venue.ts_us))
    face = SUPPLY_MAX // USD + 1
    custodied.ok(Deposit(account=1, asset="TB-Y", amount=face))
    bill = make_spec(
        symbol="TB-Y-USD",
        kind=InstrumentKind.TBILL,
        base="TB-Y",
        price_decimals=6,
        qty_decimals=0,
        reference_price=98_000_000,
        maturity_us=MATURITY_US,
    )
    refused_unchanged(custodied, ListInstrument(spec=bill), E.BAD_PARAM)
    custodied.ok(RequestWithdrawal(account=1, asset="TB-Y", amount=1))
    custodied.ok(ConfirmWithdrawal(withdrawal_id=1))  # now its par fits exactly
    custodied.ok(ListInstrument(spec=bill))
    custodied.do(AdvanceClock(), ts=MATURITY_US)
    assert usd_supply(custodied) == (face - 1) * USD <= SUPPLY_MAX
    still_whole(custodied.venue)


def test_reserves_past_the_supply_bound_are_refused() -> None:
    custodied = Custodied()
    past = AttestReserves(asset="USD", amount=SUPPLY_MAX + 1, as_of_us=custodied.venue.ts_us)
    refused_unchanged(custodied, past, E.BAD_PARAM)
    custodied.ok(msgspec.structs.replace(past, amount=SUPPLY_MAX))


def test_the_supply_reason_comes_last_for_a_deposit() -> None:
    assert DEPOSIT_PRECEDENCE[-2:] == (E.RESERVES_EXCEEDED, E.SUPPLY_OUT_OF_RANGE)
    assert E.SUPPLY_OUT_OF_RANGE == 7008


def test_the_bound_holds_where_the_notional_check_is_skipped() -> None:
    """With fees, the bound is below what the plain check's price and qty limits allow
    (2^30 each); a market with no cap and no minimum (`notional_free`) must still refuse an
    order past it rather than skip the notional check."""
    harness = Harness(maker_fee_bps=7, taker_fee_bps=30, reference_price=2**29)
    market = harness.venue.markets[SYMBOL]
    price = 2**29
    qty = market.order_value_max // price + 1
    assert qty < 2**30 and not market.max_notional_scaled  # within the plain check's limits
    place = PlaceOrder(account=1, symbol=SYMBOL, side=SELL, price=price, qty=qty)
    refused_unchanged(harness, place, E.NOTIONAL_OUT_OF_RANGE)
    assert rejection(harness.place(1, SELL, price, qty - 1)) is None
    still_whole(harness.venue)


# ----------------------------------------------------------------- corporate actions


def within_the_bound(venue: Venue) -> None:
    """Every resting order's worst case (what it traded plus the rest at its price) is
    within its market's `order_value_max`."""
    for market in venue.markets.values():
        for order in market.book.iter_orders():
            assert not market.above_value_max(order.price, order.leaves_qty, order.filled_value)


def test_a_split_cancels_a_sell_it_would_take_past_the_bound() -> None:
    """The finding: a 1000:1 split keeps a sell at one tick (its price rounds up to it) with
    1000 times the quantity. 10 million shares at 1.00 rested within the bound; after the
    split, 10 billion at 1.00 are worth 1e18 price x qty units, and buyers taking them
    pushed the order's totals past 64 bits (state_hash raised OverflowError)."""
    cleared = Cleared(price_tick=100, price_band_bps=10_000)  # band low: one tick (1.00)
    venue = cleared.venue
    big = 10**13  # 10 million shares
    assert (
        rejection(cleared.do(AttestReserves(asset="AAPLx", amount=2 * big, as_of_us=100))) is None
    )
    assert rejection(cleared.do(Deposit(account=1, asset="AAPLx", amount=big))) is None
    assert rejection(cleared.place(1, SELL, 100, big)) is None  # 1e15: within the bound
    assert rejection(cleared.place(2, SELL, 100, 10**8)) is None  # 100 shares
    held, small = sorted(venue.orders)
    cleared.do(SetInstrumentStatus(symbol=SYMBOL, status=InstrumentStatus.HALTED))
    events = cleared.do(SplitShares(symbol=SYMBOL, ratio_new=1_000, ratio_old=1))
    assert rejection(events) is None
    canceled = [e for e in events if isinstance(e, OrderCanceled)]
    assert [(e.order_id, e.reason) for e in canceled] == [(held, CancelReason.CORPORATE_ACTION)]
    assert venue.orders[small].leaves_qty == 10**11 and venue.orders[small].price == 100
    assert cleared.balance(1, "AAPLx") == ((big + 10**8) * 1_000, 0)  # all free again
    within_the_bound(venue)
    still_whole(venue)


def test_a_split_cancels_an_order_whose_fills_it_would_take_past_units_max() -> None:
    """The finding: a split multiplies cum_qty (every fill of the order's life, which can
    pass the supply) and so qty by N / M with no bound. A buy that bought 2e16 units over
    round trips, with a small rest within `order_value_max`, came out of a 1000:1 split
    with cum_qty 2e19, and state_hash and snapshots raised OverflowError."""
    cleared = Cleared(price_band_bps=10_000)  # band low: one tick (0.01)
    venue = cleared.venue

    def ok(command: Command) -> None:
        assert rejection(cleared.do(command)) is None

    shares = 4 * 10**15  # 1000 x shares is within SUPPLY_MAX: the split itself is allowed
    ok(AttestReserves(asset="AAPLx", amount=shares + 4 * 10**8, as_of_us=venue.ts_us + 1))
    ok(AttestReserves(asset="USD", amount=2**62, as_of_us=venue.ts_us + 1))
    ok(Deposit(account=2, asset="AAPLx", amount=shares - 10**8))  # 2 now holds `shares`
    for account in (1, 2):
        ok(Deposit(account=account, asset="USD", amount=2**60))
    ok(PlaceOrder(account=1, symbol=SYMBOL, side=BUY, price=1, qty=3 * 10**16))
    buy = max(venue.orders)
    for _ in range(5):  # 2 sells into 1's bid at 1; 1 sells them back into 2's bid at 2
        ok(
            PlaceOrder(
                account=2, symbol=SYMBOL, side=SELL, price=1, qty=shares, tif=TimeInForce.IOC
            )
        )
        ok(PlaceOrder(account=2, symbol=SYMBOL, side=BUY, price=2, qty=shares))
        ok(
            PlaceOrder(
                account=1, symbol=SYMBOL, side=SELL, price=2, qty=shares, tif=TimeInForce.IOC
            )
        )
    order = venue.orders[buy]
    assert order.cum_qty == 5 * shares
    ok(SetReferencePrice(symbol=SYMBOL, price=10_000))
    ok(AmendOrder(account=1, order_id=buy, price=1_000, qty=order.cum_qty + 1_000))
    assert order.cum_qty * 1_000 > UNITS_MAX  # a rest of 1000 at 10.00: within the bound
    market = venue.markets[SYMBOL]
    assert not market.above_value_max(order.price, order.leaves_qty, order.filled_value)
    ok(SetInstrumentStatus(symbol=SYMBOL, status=InstrumentStatus.HALTED))
    events = cleared.do(SplitShares(symbol=SYMBOL, ratio_new=1_000, ratio_old=1))
    assert rejection(events) is None
    canceled = [e for e in events if isinstance(e, OrderCanceled)]
    assert [(e.order_id, e.reason) for e in canceled] == [(buy, CancelReason.CORPORATE_ACTION)]
    assert buy not in venue.orders
    for market in venue.markets.values():
        for resting in market.book.iter_orders():
            assert resting.cum_qty <= resting.qty <= UNITS_MAX
    within_the_bound(venue)
    still_whole(venue)


# ----------------------------------------------------------------- listing


@pytest.mark.parametrize(
    "field", ["reference_price", "min_qty", "min_notional", "max_qty", "max_notional"]
)
def test_a_listing_with_a_number_past_units_max_is_refused(field: str) -> None:
    """Only the wire bounded these: a listing by another path (config, admin, a corporate
    action) with reference_price 2**64 was listed, and then state_hash raised. The tick and
    the step are bounded with them: the reference price and min_qty are their multiples."""
    harness = Harness()
    other = "B-USD"
    spec = make_spec(symbol=other, **{field: UNITS_MAX + 1})
    assert spec.problem() is not None
    refused_unchanged(harness, ListInstrument(spec=spec), E.BAD_PARAM)
    assert other not in harness.venue.markets
    at_most = make_spec(symbol=other, **{field: UNITS_MAX})
    assert rejection(harness.do(ListInstrument(spec=at_most))) is None
    still_whole(harness.venue)


@pytest.mark.parametrize("maturity_us", [INT64_MAX + 1, 2**64, -1])
def test_a_listing_with_a_maturity_past_int64_is_refused(maturity_us: int) -> None:
    """The finding: maturity_us was unbounded, so a bill listed with maturity_us 2**64 by a
    direct engine command (the wire and config parse a date) made state_hash raise. It is a
    time: a positive int64 for a bill, 0 for the others."""
    harness = Harness()
    bill = "TB-Z-USD"

    def spec(maturity: int, kind: InstrumentKind = InstrumentKind.TBILL) -> Any:
        return make_spec(
            symbol=bill,
            kind=kind,
            base="TB-Z",
            price_decimals=6,
            qty_decimals=0,
            reference_price=98_000_000,
            maturity_us=maturity,
        )

    for bad in (spec(maturity_us), spec(maturity_us, InstrumentKind.EQUITY)):
        assert bad.problem() is not None
        refused_unchanged(harness, ListInstrument(spec=bad), E.BAD_PARAM)
    assert bill not in harness.venue.markets
    assert rejection(harness.do(ListInstrument(spec=spec(INT64_MAX)))) is None
    still_whole(harness.venue)


def test_an_amend_that_lowers_what_the_order_may_trade_is_never_refused_for_the_bound() -> None:
    """The finding: an order may have traded up to twice the bound (a requote checks price x
    qty alone), and then even an amend down of its qty at the same price was refused
    NOTIONAL_OUT_OF_RANGE, while a new price was accepted."""
    harness = Harness(
        maker_fee_bps=7, taker_fee_bps=30, reference_price=2**36, price_band_bps=10_000
    )
    market = harness.venue.markets[SYMBOL]
    bound = market.order_value_max
    high = market.band_high
    assert rejection(harness.place(1, BUY, high, bound // high)) is None
    order = harness.venue.orders[max(harness.venue.orders)]
    harness.place(2, SELL, high, order.qty - 1)  # nearly all of the bound traded
    qty = 2**30 - 1  # a checked amend: what it traded plus qty at 1 is within the bound
    checked = AmendOrder(account=1, order_id=order.order_id, price=1, qty=qty)
    assert rejection(harness.do(checked)) is None
    requote = AmendOrder(account=1, order_id=order.order_id, price=bound // qty)
    assert rejection(harness.do(requote)) is None  # price x qty within the bound
    harness.place(3, SELL, bound // qty, qty - order.cum_qty - 10, tif=TimeInForce.IOC)
    assert order.filled_value > bound and order.leaves_qty == 10
    down = AmendOrder(account=1, order_id=order.order_id, qty=qty - 5)
    assert rejection(harness.do(down)) is None
    assert order.leaves_qty == 5
    up = AmendOrder(account=1, order_id=order.order_id, qty=qty)  # raises it again: refused
    refused_unchanged(harness, up, E.NOTIONAL_OUT_OF_RANGE)
    # more qty at a price that keeps the rest's worth: a later requote (price x qty within
    # the bound) could then give all of that qty a price worth the bound again
    wider = msgspec.structs.replace(up, price=order.price // 2)
    refused_unchanged(harness, wider, E.NOTIONAL_OUT_OF_RANGE)
    still_whole(harness.venue)


# ----------------------------------------------------------------- property


def hostile_commands() -> st.SearchStrategy[list[Command]]:
    """Orders and amends sized at and around the bound of a fee-paying market whose prices
    reach past SMALL_INT_MAX (reference 2**36, band 100%): each path, fast or checked."""
    bound = INT64_MAX // (2 * 30)  # fees 7 and 30 bps, num 1
    prices = st.sampled_from([1, 2**20, 2**27, 2**30 - 1, 2**30, 2**36, 2**37 - 1])
    sizes = st.sampled_from([1, 2**20, 2**30 - 1, 2**30, 2**40])

    @st.composite
    def command(draw: Any) -> Command:
        price, side = draw(prices), draw(st.sampled_from([BUY, SELL]))
        qty = max(bound // price + draw(st.integers(-1, 1)), 1) if draw(st.booleans()) else 0
        qty = qty or draw(sizes)
        kind = draw(st.integers(0, 9))
        if kind < 5:
            tif = draw(st.sampled_from([TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK]))
            return PlaceOrder(
                account=draw(st.integers(1, 3)),
                symbol=SYMBOL,
                side=side,
                price=price,
                qty=qty,
                tif=tif,
            )
        if kind < 6:
            return PlaceOrder(
                account=1,
                symbol=SYMBOL,
                side=side,
                order_type=OrderType.MARKET,
                tif=TimeInForce.IOC,
                qty=qty,
            )
        order_id = draw(st.integers(1, 12))
        new_price, new_qty = draw(st.sampled_from([(price, 0), (0, qty), (price, qty)]))
        return AmendOrder(
            account=draw(st.integers(1, 3)), order_id=order_id, price=new_price, qty=new_qty
        )

    return st.lists(command(), min_size=1, max_size=30)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_commands())
def test_whatever_is_accepted_the_venue_can_account(commands: list[Command]) -> None:
    """After any stream, the state hashes, and every open order's worst case stays within
    twice the bound, as `order_value_max` plans: what it traded plus the rest at its price,
    and plus the rest at the highest price a requote (price x qty alone) may give it."""
    harness = Harness(
        maker_fee_bps=7, taker_fee_bps=30, reference_price=2**36, price_band_bps=10_000
    )
    market = harness.venue.markets[SYMBOL]
    twice = 2 * market.order_value_max
    for command in commands:
        harness.do(command)
        harness.venue.state_hash()
        for order in market.book.iter_orders():
            assert order.filled_value + order.price * order.leaves_qty <= twice, order
            requoted = market.order_value_max * order.leaves_qty  # over order.qty
            assert order.filled_value * order.qty + requoted <= twice * order.qty, order
    still_whole(harness.venue)
