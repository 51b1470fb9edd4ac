"""T-bill arithmetic: worked 13- and 52-week examples, hand-worked yields, rounding, refusals."""

from collections.abc import Callable
from datetime import date
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from settlement.tbill import (
    DAYS_TO_MATURITY_MAX,
    MICROSECONDS_PER_DAY,
    PAR_PRICE_UNITS,
    RATE_DECIMALS_MAX,
    calendar_days_from_us,
    days_to_maturity,
    days_to_maturity_from_us,
    discount_rate_from_price,
    discount_rate_units_from_price_units,
    investment_rate_units_from_price,
    investment_rate_units_from_price_units,
    listing_term_problem,
    par_proceeds_units,
    price_from_discount_rate,
    price_from_units,
    price_to_units,
    price_units_from_discount_rate_units,
    rate_from_units,
    rate_to_units,
    year_days_after_issue,
)

days_st = st.integers(1, DAYS_TO_MATURITY_MAX)
year_days_st = st.sampled_from([365, 366])
# Up to 50% keeps every price positive for every term up to 366 days.
discount_rate_units_st = st.integers(0, 50_000)
price_units_st = st.integers(1, PAR_PRICE_UNITS)


def value_at_maturity(price: Fraction, rate: Fraction, days: int, year_days: int) -> Fraction:
    """What `price` grows to at `rate`, per Treasury's definition of the investment rate.

    Up to half a year: simple interest. Longer: half a year at the semiannual rate, then the
    rest of the term at simple interest. The module solves this for the rate; the tests only
    evaluate it, so they check the solution without sharing its algebra.
    """
    if 2 * days <= year_days:
        return price * (1 + rate * days / year_days)
    return price * (1 + rate / 2) * (1 + rate * (Fraction(days, year_days) - Fraction(1, 2)))


# Worked examples: a 13-week bill at 5.235% and a 52-week bill at 4.000%


def test_13_week_bill_price_from_discount_rate() -> None:
    # 100 x (1 - 0.05235 x 91 / 360) = 98.676708333...
    assert price_units_from_discount_rate_units(5_235, 91) == 98_676_708


def test_52_week_bill_price_and_long_form_investment_rate() -> None:
    # 100 x (1 - 0.04 x 364 / 360) = 95.9555555... -> 95.955556 (half up)
    assert price_units_from_discount_rate_units(4_000, 364) == 95_955_556
    # 364 > 182 days, so the quadratic form: 4.18287...% -> 4.183%
    assert investment_rate_units_from_price_units(95_955_556, 364) == 4_183
    assert investment_rate_units_from_price_units(95_955_556, 364, decimals=9) == 4_182_872_377


def test_13_week_bill_short_form_investment_rate() -> None:
    # (100 - 98.676708) / 98.676708 x 365 / 91 = 0.0537889... -> 5.379%
    assert investment_rate_units_from_price_units(98_676_708, 91) == 5_379


def test_discount_rate_back_from_the_price() -> None:
    # (100 - 98.676708) / 100 x 360 / 91 = 0.05234999... -> 5.235%
    assert discount_rate_units_from_price_units(98_676_708, 91) == 5_235
    assert discount_rate_units_from_price_units(95_955_556, 364) == 4_000


# Short-form yields worked by hand


@pytest.mark.parametrize(
    ("price", "days", "year_days", "rate_units"),
    [
        # 1 / 99 x 365 / 73 = 5 / 99 = 0.0505050... -> 5.051%
        (Fraction(99), 73, 365, 5_051),
        # 2 / 98 x 365 / 146 = 5 / 98 = 0.0510204... -> 5.102%
        (Fraction(98), 146, 365, 5_102),
        # 0.5 / 99.5 x 366 / 61 = 3 / 99.5 = 0.0301507... -> 3.015% (a leap year)
        (Fraction("99.5"), 61, 366, 3_015),
        # 2r = y: the quadratic term vanishes, so 183 days in a leap year is short form:
        # 1 / 99 x 366 / 183 = 2 / 99 = 0.0202020... -> 2.020%
        (Fraction(99), 183, 366, 2_020),
        # at par the yield is zero whatever the form
        (Fraction(100), 91, 365, 0),
        (Fraction(100), 364, 365, 0),
    ],
)
def test_short_form_by_hand(price: Fraction, days: int, year_days: int, rate_units: int) -> None:
    assert investment_rate_units_from_price(price, days, year_days) == rate_units


def test_short_form_is_exact_at_fine_scales() -> None:
    # 5 / 99 = 0.05050505... -> 5.050505050505% at 12 decimals (the next digit is 0)
    assert investment_rate_units_from_price(Fraction(99), 73, decimals=12) == 5_050_505_050_505


# Rounding: half up, once, on exact values


@pytest.mark.parametrize(
    ("price", "units"),
    [
        (Fraction("99.0000005"), 99_000_001),  # a tie goes up
        (Fraction("99.00000049999"), 99_000_000),
        (Fraction(200, 3), 66_666_667),
        (Fraction(100), PAR_PRICE_UNITS),
    ],
)
def test_price_to_units_rounds_half_up(price: Fraction, units: int) -> None:
    assert price_to_units(price) == units


@pytest.mark.parametrize(
    ("rate", "units"),
    [
        (Fraction("0.052345"), 5_235),  # 5.2345% is a tie: up
        (Fraction("0.0523449999"), 5_234),
        (Fraction(1, 30), 3_333),
        (Fraction(0), 0),
    ],
)
def test_rate_to_units_rounds_half_up(rate: Fraction, units: int) -> None:
    assert rate_to_units(rate) == units


def test_units_to_exact_values() -> None:
    assert rate_from_units(5_235) == Fraction(1047, 20000)
    assert rate_from_units(5_235, decimals=0) == Fraction(5235, 100)
    assert price_from_units(98_676_708) == Fraction("98.676708")


# Days and proceeds


def test_days_to_maturity_between_dates() -> None:
    assert days_to_maturity(date(2024, 1, 4), date(2024, 4, 4)) == 91
    assert days_to_maturity(date(2023, 3, 2), date(2024, 2, 29)) == 364
    assert days_to_maturity(date(2024, 4, 4), date(2024, 4, 4)) == 0  # matures today


def test_days_to_maturity_from_timestamps_counts_whole_days() -> None:
    day = MICROSECONDS_PER_DAY
    settlement_us = 1_704_326_400_000_000  # 2024-01-04T00:00:00Z
    assert days_to_maturity_from_us(settlement_us, settlement_us + 91 * day) == 91
    assert days_to_maturity_from_us(settlement_us, settlement_us + 91 * day - 1) == 90
    assert days_to_maturity_from_us(settlement_us + 1, settlement_us + 91 * day) == 90
    assert days_to_maturity_from_us(settlement_us, settlement_us) == 0
    assert days_to_maturity_from_us(settlement_us + day, settlement_us) == -1  # matured


def test_calendar_days_from_timestamps_count_utc_dates() -> None:
    """As `days_to_maturity` of the two UTC dates, whatever the times of day."""
    day = MICROSECONDS_PER_DAY
    settlement_us = 1_704_326_400_000_000  # 2024-01-04T00:00:00Z
    assert calendar_days_from_us(settlement_us, settlement_us + 91 * day) == 91
    assert calendar_days_from_us(settlement_us + day - 1, settlement_us + 91 * day) == 91
    assert calendar_days_from_us(settlement_us, settlement_us + 92 * day - 1) == 91
    assert calendar_days_from_us(settlement_us, settlement_us + day - 1) == 0  # today


def test_a_bill_may_be_listed_at_most_366_calendar_days_out() -> None:
    day = MICROSECONDS_PER_DAY
    listed_us = 1_704_326_400_000_000 + day // 2  # 2024-01-04, noon
    maturity_us = 1_704_326_400_000_000 + 366 * day  # 2025-01-04: 366 days, a leap year's
    assert listing_term_problem(listed_us, maturity_us) is None
    assert listing_term_problem(listed_us, maturity_us + day - 1) is None
    assert listing_term_problem(listed_us, maturity_us + day) == (
        "matures 367 days after today (UTC), more than the 366 a T-bill may run"
        " (52-week bills run 364 days)"
    )


@pytest.mark.parametrize(
    ("issue", "year_days"),
    [
        (date(2023, 3, 1), 366),  # the year after runs through 2024-02-29
        (date(2023, 2, 28), 365),  # ends on 2024-02-28, the day before
        (date(2024, 1, 4), 366),
        (date(2024, 2, 29), 365),  # issued on the leap day itself: the next is in 2028
        (date(2024, 3, 1), 365),
        (date(2099, 6, 1), 365),  # 2100 is not a leap year
    ],
)
def test_year_days_after_issue(issue: date, year_days: int) -> None:
    assert year_days_after_issue(issue) == year_days


@pytest.mark.parametrize(
    ("face_units", "face_decimals", "cash_decimals", "cash_units"),
    [
        (1_000_000, 0, 6, 1_000_000_000_000),  # $1,000,000 face pays $1,000,000.000000
        (12_345, 2, 2, 12_345),
        (12_345, 2, 6, 123_450_000),
        (1_234_567, 6, 2, 123),  # 1.234567 pays 1.23: never above par
        (0, 2, 6, 0),
    ],
)
def test_par_proceeds(
    face_units: int, face_decimals: int, cash_decimals: int, cash_units: int
) -> None:
    assert par_proceeds_units(face_units, face_decimals, cash_decimals) == cash_units


# Refusals


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: price_from_discount_rate(Fraction("0.05"), 0), "days to maturity 0"),
        (lambda: price_from_discount_rate(Fraction("0.05"), -7), "days to maturity -7"),
        (lambda: price_from_discount_rate(Fraction("0.05"), 367), "days to maturity 367"),
        (lambda: price_from_discount_rate(Fraction("-0.01"), 91), "discount rate -1% is negative"),
        (lambda: price_from_discount_rate(Fraction(1), 360), "leaves no positive price"),
        (lambda: price_units_from_discount_rate_units(-1, 91), "is negative"),
        (lambda: discount_rate_from_price(Fraction(101), 91), "price 101 per 100 face"),
        (lambda: discount_rate_from_price(Fraction(0), 91), "price 0 per 100 face"),
        (lambda: discount_rate_from_price(Fraction(-5), 91), "price -5 per 100 face"),
        (lambda: discount_rate_units_from_price_units(100_000_001, 91), "outside \\(0, 100\\]"),
        (lambda: investment_rate_units_from_price(Fraction(99), 0), "days to maturity 0"),
        (lambda: investment_rate_units_from_price(Fraction(99), 91, 360), "year_days 360"),
        (lambda: investment_rate_units_from_price(Fraction(99), 91, decimals=-1), "decimals -1"),
        (
            lambda: investment_rate_units_from_price(Fraction(99), 91, decimals=13),
            f"0..{RATE_DECIMALS_MAX}",
        ),
        (lambda: investment_rate_units_from_price_units(0, 364), "price 0 per 100 face"),
        (lambda: rate_to_units(Fraction(-1, 1000)), "rate -1/10% is negative"),
        (lambda: rate_from_units(-5), "is negative"),
        (lambda: price_to_units(Fraction(0)), "price 0"),
        (lambda: par_proceeds_units(-1, 0, 2), "face quantity -1 is negative"),
        (lambda: par_proceeds_units(1, 19, 2), "face_decimals 19"),
        (lambda: par_proceeds_units(1, 2, -1), "cash_decimals -1"),
    ],
)
def test_invalid_inputs_raise_value_error(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_limits_are_inclusive() -> None:
    assert price_from_discount_rate(Fraction(0), 1) == 100
    assert price_units_from_discount_rate_units(1_000, DAYS_TO_MATURITY_MAX) == 98_983_333
    assert investment_rate_units_from_price_units(1, 366, 366) > 0  # absurd, yet defined


# Properties, without a deadline: tests never assert on wall-clock time, and a loaded CI
# machine (2 cores) can stall any example past hypothesis's default 200 ms.


@settings(deadline=None)
@given(discount_rate_units_st, days_st)
def test_discount_rate_survives_a_trip_through_the_price(rate_units: int, days: int) -> None:
    # a rate step moves the price by 1000 x r / 360 >= 2.7 units, more than the 0.5 a price
    # rounding loses, so the quoted rate always comes back
    price_units = price_units_from_discount_rate_units(rate_units, days)
    assert 0 < price_units <= PAR_PRICE_UNITS
    assert discount_rate_units_from_price_units(price_units, days) == rate_units


@settings(deadline=None)
@given(st.fractions(min_value=Fraction(1, 10**6), max_value=100, max_denominator=10**9), days_st)
def test_exact_price_discount_price_round_trip(price: Fraction, days: int) -> None:
    assert price_from_discount_rate(discount_rate_from_price(price, days), days) == price


# A bill below half of par is a rate of 50%+: far past any quote, and where a rounded-up rate
# can leave no positive price at all (a refusal tested above), so the round trip stops here.
@settings(deadline=None)
@given(st.integers(PAR_PRICE_UNITS // 2, PAR_PRICE_UNITS), days_st)
def test_price_survives_a_trip_through_the_rate_within_a_rate_step(
    price_units: int, days: int
) -> None:
    rate_units = discount_rate_units_from_price_units(price_units, days)
    back = price_units_from_discount_rate_units(rate_units, days)
    # half a rate step is 500 x r / 360 price units; the price rounding adds half a unit
    assert abs(back - price_units) * 720 <= 1_000 * days + 360


@settings(deadline=None)
@given(discount_rate_units_st, discount_rate_units_st, days_st, year_days_st)
def test_higher_discount_rate_lower_price_higher_yield(
    rate_a: int, rate_b: int, days: int, year_days: int
) -> None:
    low, high = sorted((rate_a, rate_b))
    exact_low = price_from_discount_rate(rate_from_units(low), days)
    exact_high = price_from_discount_rate(rate_from_units(high), days)
    assert (exact_high < exact_low) == (high > low)
    price_low = price_units_from_discount_rate_units(low, days)
    price_high = price_units_from_discount_rate_units(high, days)
    assert price_high <= price_low
    yield_low = investment_rate_units_from_price_units(price_low, days, year_days)
    yield_high = investment_rate_units_from_price_units(price_high, days, year_days)
    assert yield_high >= yield_low


@settings(deadline=None)
@given(price_units_st, days_st, year_days_st, st.integers(0, RATE_DECIMALS_MAX))
def test_investment_rate_is_correctly_rounded(
    price_units: int, days: int, year_days: int, decimals: int
) -> None:
    # Half up: the true rate i satisfies (k - 1/2) / scale <= i < (k + 1/2) / scale, checked
    # by growing the price at both bounds, never by solving for i.
    price = price_from_units(price_units)
    units = investment_rate_units_from_price(price, days, year_days, decimals)
    scale = 100 * 10**decimals
    below = Fraction(2 * units - 1, 2 * scale)
    above = Fraction(2 * units + 1, 2 * scale)
    assert value_at_maturity(price, below, days, year_days) <= 100
    assert value_at_maturity(price, above, days, year_days) > 100


@settings(deadline=None)
@given(price_units_st, days_st, year_days_st)
def test_investment_rate_is_at_least_the_discount_rate(
    price_units: int, days: int, year_days: int
) -> None:
    # the discount rate divides by par and a 360-day year, the investment rate by the price
    # and a longer year, so it is never the smaller of the two
    investment = investment_rate_units_from_price_units(price_units, days, year_days, 9)
    assert investment >= discount_rate_units_from_price_units(price_units, days, 9)
