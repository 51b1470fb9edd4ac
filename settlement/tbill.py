"""Exact T-bill arithmetic: price, bank discount rate, investment rate, days and par proceeds.

Owns Treasury's formulas for bills quoted per 100 of face value, the longest term a bill
is listed with (`listing_term_problem`: checked by the config and `admin.list_instrument`) and
the range of a sane reference price (`price_range_units`); the ledger books the cash.
Prices are exact `Fraction`s per 100 face, or engine units at 6 decimals (98.676708 ->
98_676_708). Rates are exact `Fraction`s (0.05235) or integer percent units at `decimals`
(default 3: 5.235% -> 5_235). Every rounding is half up (toward +infinity) to the stated
scale, done once, on exact values; no floats anywhere. The long-form investment rate is
irrational, yet still correctly rounded: an integer square root gives a candidate that exact
rational comparisons confirm or move.
Invariants: 1 <= days <= 366; 0 < price <= 100 (100 is a zero rate); rates >= 0; year_days
is 365 or 366. Anything else raises ValueError with the reason.
"""

from datetime import date
from fractions import Fraction
from math import floor, isqrt

PAR_PRICE = 100  # Treasury quotes bills per 100 of face value
PRICE_DECIMALS = 6  # Treasury publishes bill prices to 6 decimals per 100 face
PRICE_UNITS_PER_WHOLE = 10**PRICE_DECIMALS
PAR_PRICE_UNITS = PAR_PRICE * PRICE_UNITS_PER_WHOLE  # 100.000000 -> 100_000_000
# The lowest price per 100 face a bill's reference price may have: there even a 52-week bill
# would yield over 80% a year (a discount rate near 50%); Treasury's bill rates have never
# passed 17%. Below it is a mistyped price (9.867671 for 98.67671), not a bill's.
PRICE_MIN = 50
RATE_DECIMALS = 3  # Treasury announces bill rates in percent to 3 decimals (5.235%)
RATE_DECIMALS_MAX = 12  # far finer than any quote; keeps the long-form square root small
DISCOUNT_YEAR_DAYS = 360  # the bank discount rate counts a 360-day year
YEAR_DAYS = 365  # the investment rate's year, unless the year after issue has a Feb 29
LEAP_YEAR_DAYS = 366
DAYS_TO_MATURITY_MAX = 366  # no bill runs longer than a year (52-week bills run 364 days)
CASH_DECIMALS_MAX = 18  # the engine's widest scale (engine.units.SCALE_MAX)
MICROSECONDS_PER_DAY = 86_400_000_000
# Digits kept beyond the requested scale when estimating the long-form square root: the rate's
# error is then under 2 x 366 / 10**12 of a percent unit (2r/y - 1 >= 1/366), so the
# estimate lands within one unit of the correct rounding and the exact check moves it once.
_SQUARE_ROOT_GUARD_DECIMALS = 12


def price_from_discount_rate(discount_rate: Fraction, days: int) -> Fraction:
    """The exact price per 100 face: P = 100 x (1 - d x r / 360)."""
    _check_days(days)
    _check_rate(discount_rate, "discount rate")
    price = PAR_PRICE * (1 - discount_rate * days / DISCOUNT_YEAR_DAYS)
    if price <= 0:
        raise ValueError(
            f"discount rate {_percent(discount_rate)} over {days} days leaves no positive price"
        )
    return price


def discount_rate_from_price(price: Fraction, days: int) -> Fraction:
    """The exact bank discount rate: d = (100 - P) / 100 x 360 / r."""
    _check_days(days)
    _check_price(price)
    return (PAR_PRICE - price) / PAR_PRICE * Fraction(DISCOUNT_YEAR_DAYS, days)


def investment_rate_units_from_price(
    price: Fraction, days: int, year_days: int = YEAR_DAYS, decimals: int = RATE_DECIMALS
) -> int:
    """The investment rate (bond-equivalent yield) in percent units at `decimals`, half up.

    Up to half a year (2r <= y, so r <= 182 for y = 365): i = (100 - P) / P x y / r.
    Longer: Treasury's quadratic form, the positive root of
    (r/y - 1/2) i^2 + (2r/y) i + 2 (1 - 100/P) = 0, which is
    i = (-2r/y + 2 sqrt((r/y)^2 - (2r/y - 1)(1 - 100/P))) / (2r/y - 1).
    At 2r = y the quadratic term vanishes and both forms agree.
    """
    _check_days(days)
    _check_price(price)
    _check_year_days(year_days)
    _check_decimals(decimals)
    units_per_rate = 100 * 10**decimals  # percent, then `decimals` more digits
    if 2 * days <= year_days:
        return _round_half_up((PAR_PRICE - price) / price * year_days / days * units_per_rate)
    years = Fraction(days, year_days)
    quadratic = 2 * years - 1  # > 0 on this branch
    linear = 2 * years
    constant = 1 - PAR_PRICE / price  # <= 0 since price <= 100
    discriminant = years * years - quadratic * constant  # >= years**2 > 0

    def at_most_rate(candidate: Fraction) -> bool:
        # candidate <= i  <=>  quadratic * candidate + linear <= 2 sqrt(discriminant)
        left = quadratic * candidate + linear
        return left <= 0 or left * left <= 4 * discriminant

    # Estimate from a fixed-point square root, then settle the rounding exactly: the result
    # is the largest k with (k - 1/2) / units_per_rate <= i.
    guard = 10 ** (decimals + _SQUARE_ROOT_GUARD_DECIMALS)
    root = Fraction(isqrt(floor(discriminant * guard * guard)), guard)
    units = _round_half_up((2 * root - linear) / quadratic * units_per_rate)
    for _ in range(3):
        if not at_most_rate(Fraction(2 * units - 1, 2 * units_per_rate)):
            units -= 1
        elif at_most_rate(Fraction(2 * units + 1, 2 * units_per_rate)):
            units += 1
        else:
            return units
    raise AssertionError(f"long-form rate estimate did not settle near {units} units")


def price_units_from_discount_rate_units(
    discount_rate_units: int, days: int, decimals: int = RATE_DECIMALS
) -> int:
    """The price in engine units (6 decimals per 100 face), rounded half up, from a quote."""
    price_units = price_to_units(
        price_from_discount_rate(rate_from_units(discount_rate_units, decimals), days)
    )
    if price_units <= 0:
        raise ValueError(f"discount rate units {discount_rate_units} round the price to zero")
    return price_units


def discount_rate_units_from_price_units(
    price_units: int, days: int, decimals: int = RATE_DECIMALS
) -> int:
    """The bank discount rate in percent units at `decimals`, rounded half up."""
    return rate_to_units(discount_rate_from_price(price_from_units(price_units), days), decimals)


def investment_rate_units_from_price_units(
    price_units: int, days: int, year_days: int = YEAR_DAYS, decimals: int = RATE_DECIMALS
) -> int:
    """The investment rate in percent units at `decimals` from a price in engine units."""
    return investment_rate_units_from_price(
        price_from_units(price_units), days, year_days, decimals
    )


def price_to_units(price: Fraction) -> int:
    """An exact price per 100 face as engine units at 6 decimals, rounded half up."""
    _check_price(price)
    return _round_half_up(price * PRICE_UNITS_PER_WHOLE)


def price_from_units(price_units: int) -> Fraction:
    """Engine price units (6 decimals per 100 face) as an exact price."""
    price = Fraction(price_units, PRICE_UNITS_PER_WHOLE)
    _check_price(price)
    return price


def rate_to_units(rate: Fraction, decimals: int = RATE_DECIMALS) -> int:
    """An exact rate (0.05235) as percent units at `decimals` (5_235), rounded half up."""
    _check_rate(rate, "rate")
    _check_decimals(decimals)
    return _round_half_up(rate * 100 * 10**decimals)


def rate_from_units(rate_units: int, decimals: int = RATE_DECIMALS) -> Fraction:
    """Percent units at `decimals` (5_235) as an exact rate (Fraction(1047, 20000))."""
    _check_decimals(decimals)
    rate = Fraction(rate_units, 100 * 10**decimals)
    _check_rate(rate, "rate")
    return rate


def days_to_maturity(settlement_date: date, maturity_date: date) -> int:
    """Calendar days from settlement to maturity; zero or negative once the bill has matured."""
    return (maturity_date - settlement_date).days


def days_to_maturity_from_us(settlement_us: int, maturity_us: int) -> int:
    """Whole days in maturity_us - settlement_us, rounded down: a partial day does not count.

    Equals `days_to_maturity` of the UTC dates when both instants share a time of day.
    """
    return (maturity_us - settlement_us) // MICROSECONDS_PER_DAY


def calendar_days_from_us(from_us: int, to_us: int) -> int:
    """Calendar days from the UTC date of `from_us` to that of `to_us`: `days_to_maturity` of
    the two dates, whatever their times of day (Unix time counts every UTC day as 86,400 s)."""
    return to_us // MICROSECONDS_PER_DAY - from_us // MICROSECONDS_PER_DAY


def listing_term_problem(listed_us: int, maturity_us: int) -> str | None:
    """Why a bill listed at `listed_us` cannot mature at `maturity_us`: more than
    DAYS_TO_MATURITY_MAX calendar days away, no bill Treasury issues (its yield could not
    even be quoted). None when it can; a maturity not after the listing is the caller's."""
    days = calendar_days_from_us(listed_us, maturity_us)
    if days <= DAYS_TO_MATURITY_MAX:
        return None
    return (
        f"matures {days} days after today (UTC), more than the {DAYS_TO_MATURITY_MAX} a T-bill"
        " may run (52-week bills run 364 days)"
    )


def price_range_units(price_decimals: int) -> tuple[int, int]:
    """The lowest and highest price a bill's reference price may have (`PRICE_MIN`, par), in
    units at `price_decimals` per 100 face: checked by the config, `admin.list_instrument`
    and `admin.set_reference_price` (`engine.instrument.bill_price_problem`)."""
    unit: int = 10**price_decimals
    return PRICE_MIN * unit, PAR_PRICE * unit


def year_days_after_issue(issue_date: date) -> int:
    """366 when the year after `issue_date` (issue excluded, anniversary included) has a Feb 29."""
    if (issue_date.month, issue_date.day) == (2, 29):
        return YEAR_DAYS  # the next Feb 29 is four years on
    anniversary = issue_date.replace(year=issue_date.year + 1)
    return (anniversary - issue_date).days


def par_proceeds_units(face_units: int, face_decimals: int, cash_decimals: int) -> int:
    """The cash paid at maturity for `face_units` of face value: par, i.e. the face itself.

    Rescaled from `face_decimals` to `cash_decimals`, rounded down when the cash scale is
    coarser: a holder is never paid more than par; the caller books the remainder.
    """
    if face_units < 0:
        raise ValueError(f"face quantity {face_units} is negative")
    for name, scale in (("face_decimals", face_decimals), ("cash_decimals", cash_decimals)):
        if not 0 <= scale <= CASH_DECIMALS_MAX:
            raise ValueError(f"{name} {scale} is outside 0..{CASH_DECIMALS_MAX}")
    rescale: int = 10 ** abs(cash_decimals - face_decimals)
    if cash_decimals >= face_decimals:
        return face_units * rescale
    return face_units // rescale


def _round_half_up(value: Fraction) -> int:
    # floor(x + 1/2): ties go up, toward +infinity; exact on any rational
    return floor(value + Fraction(1, 2))


def _percent(rate: Fraction) -> str:
    # for error messages only: exact, so a rate like 1/30 shows as 10/3% rather than rounded
    return f"{rate * 100}%"


def _check_days(days: int) -> None:
    if not 1 <= days <= DAYS_TO_MATURITY_MAX:
        raise ValueError(f"days to maturity {days} is outside 1..{DAYS_TO_MATURITY_MAX}")


def _check_price(price: Fraction) -> None:
    if not 0 < price <= PAR_PRICE:
        raise ValueError(
            f"price {price} per 100 face is outside (0, {PAR_PRICE}]: "
            "a bill cannot be free, and above par its rates would be negative"
        )


def _check_rate(rate: Fraction, name: str) -> None:
    if rate < 0:
        raise ValueError(f"{name} {_percent(rate)} is negative")


def _check_year_days(year_days: int) -> None:
    if year_days not in (YEAR_DAYS, LEAP_YEAR_DAYS):
        raise ValueError(f"year_days {year_days} must be {YEAR_DAYS} or {LEAP_YEAR_DAYS}")


def _check_decimals(decimals: int) -> None:
    if not 0 <= decimals <= RATE_DECIMALS_MAX:
        raise ValueError(f"rate decimals {decimals} is outside 0..{RATE_DECIMALS_MAX}")
