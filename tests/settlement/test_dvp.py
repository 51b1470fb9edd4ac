"""Hold and DvP arithmetic: rounding on running totals, and holds that always cover a fill."""

import math
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from settlement.dvp import BPS, CashTerms

# AAPLx-USD: price in cents, qty in 1e-6 shares, USD at 6 decimals -> num/den = 1/100.
TERMS = CashTerms(num=1, den=100, maker_fee_bps=1, taker_fee_bps=5)


def test_buy_hold_is_cost_plus_worst_fee_rounded_up() -> None:
    # 187.25 x 0.333333 share = 62.41660425 USD; 5 bps of it = 0.031208302...
    assert TERMS.buy_hold(18_725, 333_333) == 62_416_605 + 31_209


@settings(deadline=None)  # no wall-clock limit: a loaded CI machine may stall any example
@given(
    price=st.integers(1, 2**40),
    qty=st.integers(1, 2**40),
    num=st.integers(1, 10**6),
    den=st.integers(1, 10**12),
    fee_bps=st.integers(0, BPS),
)
def test_buy_hold_is_exact_for_any_size(
    price: int, qty: int, num: int, den: int, fee_bps: int
) -> None:
    """Cost and worst fee, each rounded up, whatever the order in which it multiplies (one
    digit or many: prices and fractions far beyond the usual instrument's)."""
    terms = CashTerms(num, den, maker_fee_bps=0, taker_fee_bps=fee_bps)
    cost = Fraction(price * qty * num, den)
    assert terms.buy_hold(price, qty) == math.ceil(cost) + math.ceil(cost * fee_bps / BPS)


def test_quote_hold() -> None:
    assert TERMS.quote_hold(50_000_000) == 50_000_000 + 25_000


def test_buyer_pays_ceil_seller_receives_floor_of_running_totals() -> None:
    value = 18_725 * 1  # one micro-share: exact cash 187.25 units
    assert TERMS.paid_total(value) == 188
    assert TERMS.received_total(value) == 187
    value2 = value * 4  # four such fills: 749 exact, no rounding left
    assert TERMS.paid_total(value2) == TERMS.received_total(value2) == 749


fills = st.lists(
    st.tuples(st.integers(1, 20_000), st.integers(1, 2_000_000), st.booleans()),
    min_size=1,
    max_size=12,
)


@settings(deadline=None)
@given(limit=st.integers(20_000, 40_000), fills=fills)
def test_a_buy_hold_always_covers_its_fills(limit: int, fills: list) -> None:
    """Whatever the fills (at or below the limit), each spends no more than the hold frees."""
    total_qty = sum(qty for _, qty, _ in fills)
    hold = TERMS.buy_hold(limit, total_qty)
    value = fee_exact = paid = fees_paid = 0
    leaves = total_qty
    for price_below, qty, as_maker in fills:
        price = limit - price_below % limit
        value += price * qty
        rate = TERMS.maker_fee_bps if as_maker else TERMS.taker_fee_bps
        fee_exact += TERMS.fee_exact(price, qty, rate)
        spend = TERMS.paid_total(value) - paid + TERMS.fees_total(fee_exact) - fees_paid
        paid, fees_paid = TERMS.paid_total(value), TERMS.fees_total(fee_exact)
        leaves -= qty
        after = TERMS.buy_hold_after(value, fee_exact, paid, fees_paid, limit * leaves)
        assert 0 <= after <= hold - spend, (hold, spend, after)
        hold = after
    assert hold == 0  # nothing left to buy: nothing held
    exact_cash = Fraction(value, 100)
    assert paid - 1 < exact_cash <= paid
    assert fees_paid >= Fraction(fee_exact, 100 * BPS)
