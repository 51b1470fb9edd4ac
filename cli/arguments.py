"""Argparse types for numeric flags: a value out of its flag's range is refused while the
flags are parsed, before anything connects or starts, in argparse's one line naming the flag.

`float()` and `Decimal()` both take 'nan' and 'inf', and a plain `type=float` lets them
through: every comparison with nan is false (so `seconds > 0` never stops a run) and a
Decimal nan raises `InvalidOperation` at its first comparison. Each type here takes only
finite numbers within its bounds.
"""

import argparse
import datetime
import math
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path


def float_within(
    low: float, high: float = math.inf, *, above_low: bool = False
) -> Callable[[str], float]:
    """A finite float from `low` (excluded with `above_low`) to `high`, both included."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        _check(text, value, low, high, above_low, finite=math.isfinite(value))
        return value

    return parse


def decimal_within(
    low: Decimal, high: Decimal | None = None, *, above_low: bool = False
) -> Callable[[str], Decimal]:
    """A finite decimal from `low` (excluded with `above_low`) to `high` (None: no bound)."""

    def parse(text: str) -> Decimal:
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        bound = math.inf if high is None else high
        _check(text, value, low, bound, above_low, finite=value.is_finite())
        return value

    return parse


def int_within(low: int, high: int) -> Callable[[str], int]:
    """A whole number from `low` to `high`, both included."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        _check(text, value, low, high, above_low=False, finite=True)
        return value

    return parse


def time_us(text: str) -> int:
    """A moment as the wire takes it, µs since the epoch: given so, in its 16 digits
    (`1796603420836019`), or as an ISO 8601 time with its zone (`2026-12-06T17:00:00Z`,
    `2026-12-06 17:00+01:00`), which an operator reads off a custodian's statement. Refused:
    a time without a zone, rather than taken in the machine's own; and digits that are not 16,
    which are no µs of our times (13 are ms, 10 s, 8 a date, `20261206`, that ISO reads too
    and was taken as 20 s after 1970 in session 28)."""
    if text.isascii() and text.isdigit():
        if len(text) != MICROSECONDS_DIGITS:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a time: µs since the epoch have {MICROSECONDS_DIGITS} digits"
                f" (e.g. 1796576400000000), or give an ISO 8601 time with its zone such as"
                f" {EXAMPLE_TIME}{_unit_slip(text)}"
            )
        return _within_our_times(text, int(text))
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither µs since the epoch nor an ISO 8601 time such as {EXAMPLE_TIME}"
        ) from None
    if moment.tzinfo is None:
        zoned = _with_time_of_day(text)
        raise argparse.ArgumentTypeError(
            f"{text!r} has no zone: add one, e.g. {zoned}Z for UTC or {zoned}+01:00"
        )
    return _within_our_times(text, (moment - EPOCH) // datetime.timedelta(microseconds=1))


# the unit a time of our years has in so many digits, and its factor to µs (ns: 1/1000)
_UNITS_BY_DIGITS = {
    10: ("seconds", 1_000_000, 1),
    13: ("milliseconds", 1_000, 1),
    19: ("nanoseconds", 1, 1_000),
}


# how far from now a time in another unit may be for its µs to be suggested: a statement's
# time or an expiry is this year's; `2026120617` (a date and hour) as seconds is 2034's
UNIT_SLIP_NEAR_US = 366 * 86_400 * 1_000_000


def _unit_slip(text: str) -> str:
    """`; it looks like milliseconds: did you mean 1796…000?` for digits of a time in s, ms
    or ns (10, 13 or 19 digits) within a year of now, else "": the µs meant, said rather
    than left to work out (since session 36, as the venue says of an `expire_at` or `as_of`
    so sent), and only a value this check takes (not `0000000001`'s 1000000)."""
    unit = _UNITS_BY_DIGITS.get(len(text))
    if unit is None:
        return ""
    name, times, per = unit
    meant = int(text) * times // per
    now_us = time.time_ns() // 1_000
    if not MICROSECONDS_MIN <= meant <= MICROSECONDS_MAX or abs(meant - now_us) > UNIT_SLIP_NEAR_US:
        return ""
    return f"; it looks like {name}: did you mean {meant}?"


# µs since the epoch have 16 digits from 2001-09-09 to 2286-11-20: every time the venue takes
MICROSECONDS_DIGITS = 16
MICROSECONDS_MIN = 10 ** (MICROSECONDS_DIGITS - 1)  # 2001-09-09T01:46:40Z
MICROSECONDS_MAX = 10**MICROSECONDS_DIGITS - 1  # 2286-11-20T17:46:39.999999Z


def _within_our_times(text: str, value_us: int) -> int:
    """`value_us`, if it has the 16 digits of the venue's times: 16 digits with leading
    zeros (`0000000000000000`) or an ISO time before 2001 (year 1 is negative µs) would pass
    as a time in 1970 or before, which no attestation or statement of ours is (session 28)."""
    if not MICROSECONDS_MIN <= value_us <= MICROSECONDS_MAX:
        first, last = _utc(MICROSECONDS_MIN), _utc(MICROSECONDS_MAX)
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time the venue takes: from {first} to {last} ({value_us} µs)"
        )
    return value_us


def _utc(value_us: int) -> str:
    return (EPOCH + datetime.timedelta(microseconds=value_us)).isoformat().replace("+00:00", "Z")


EXAMPLE_TIME = "2026-12-06T17:00:00Z"


def _with_time_of_day(text: str) -> str:
    """`text` so that a zone can be written after it: a date alone (`2026-12-06`) takes
    none (`2026-12-06Z` is no ISO time `fromisoformat` reads), its midnight does."""
    try:
        day = datetime.date.fromisoformat(text)
    except ValueError:
        return text
    return f"{day.isoformat()}T00:00"


EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def directory(text: str) -> Path:
    """A `--data-dir`: any path but the empty string, which `Path` reads as ".", so that an
    unset shell variable (`--data-dir "$DATA"`) would put a venue's files in the working
    directory."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path: give a directory")
    return Path(text)


def dsn(text: str) -> str:
    """A `--postgres` DSN: any text but the empty string, which read as "not given" would
    book an unset shell variable's venue (`--postgres "$DSN"`) into SQLite, and libpq reads
    as its local socket's defaults."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty DSN: give a PostgreSQL connection string")
    return text


def _check(
    text: str,
    value: float | Decimal,
    low: float | Decimal,
    high: float | Decimal,
    above_low: bool,
    finite: bool,
) -> None:
    """Refuse a value that is not finite or lies outside its bounds, saying which they are."""
    inside = finite and (value > low if above_low else value >= low) and value <= high
    if not inside:
        raise argparse.ArgumentTypeError(f"must be {_bounds(low, high, above_low)}, not {text}")


def _bounds(low: float | Decimal, high: float | Decimal, above_low: bool) -> str:
    if high == math.inf:
        return f"above {low}" if above_low else f"at least {low}"
    return f"within {'(' if above_low else '['}{low}, {high}]"
