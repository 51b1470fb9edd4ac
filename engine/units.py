"""Exact conversion between decimal strings and the integer units the engine computes in.

A value at scale `s` is an integer count of 10**-s: "187.25" at scale 2 is 18725. Parsing
is strict: plain notation only (digits, at most one point, no sign, exponent or spaces),
and a digit beyond the scale that is not zero raises `PrecisionError`; nothing is ever
rounded. Trailing zeros past the scale are accepted since they lose nothing. Values are
bounded by `UNITS_MAX` so that every amount fits a signed 64-bit SQLite INTEGER, scales by
`SCALE_MAX`. Also the one guess about time units every entry point shares: a µs time that
`looks_like_milliseconds`.
"""

UNITS_MAX = 2**62  # headroom under int64: sums of a few amounts still fit SQLite INTEGER
# The largest integer every codec and store of the venue takes: msgpack (journal, snapshots,
# the state hash) and SQLite INTEGER / PostgreSQL BIGINT are signed 64-bit at most.
INT64_MAX = 2**63 - 1
# The largest int CPython 3.11 compares on its fast path (one 30-bit digit): against a
# larger bound every compare takes the slow path (~130 instructions more).
SMALL_INT_MAX = 2**30 - 1
SCALE_MAX = 18  # 10**18 units per whole already exceeds every asset we trade


class PrecisionError(ValueError):
    """The text has more decimals than the scale allows."""


def parse_units(text: str, scale: int) -> int:
    """Parse a non-negative plain decimal string into integer units at `scale`."""
    if not 0 <= scale <= SCALE_MAX:
        raise ValueError(f"scale {scale} is outside 0..{SCALE_MAX}")
    whole, point, fraction = text.partition(".")
    if not whole.isdigit() or not whole.isascii() or (point and not fraction):
        raise ValueError(f"{text!r} is not a plain decimal number")
    if fraction and (not fraction.isdigit() or not fraction.isascii()):
        raise ValueError(f"{text!r} is not a plain decimal number")
    kept, excess = fraction[:scale], fraction[scale:]
    if excess.strip("0"):
        raise PrecisionError(f"{text!r} has more than {scale} decimals")
    units: int = int(whole) * 10**scale + (int(kept.ljust(scale, "0")) if scale else 0)
    if units > UNITS_MAX:
        raise ValueError(f"{text!r} is too large")
    return units


def format_units(units: int, scale: int) -> str:
    """Format integer units at `scale` with exactly `scale` decimals ("18725", 2 -> "187.25")."""
    if units < 0:
        return "-" + format_units(-units, scale)
    if scale == 0:
        return str(units)
    # every report field goes through here: zfill is about twice as fast as a nested format
    whole, fraction = divmod(units, _POWERS[scale])
    return f"{whole}.{str(fraction).zfill(scale)}"


_POWERS = tuple(10**scale for scale in range(SCALE_MAX + 1))


# 1e12 ms is September 2001. A time at least that large yet 100 to 10,000 times smaller than
# now was sent in milliseconds (a time near now in ms is a thousandth of it in µs).
MILLISECONDS_EPOCH_MIN = 10**12


def looks_like_milliseconds(time_us: int, now_us: int) -> bool:
    """Whether a time given as µs was most likely sent in milliseconds."""
    return time_us >= MILLISECONDS_EPOCH_MIN and time_us * 100 <= now_us < time_us * 10_000


# 1e9 s is September 2001 too; a time in seconds is a millionth of it in µs
SECONDS_EPOCH_MIN = 10**9


def looks_like_seconds(time_us: int, now_us: int) -> bool:
    """Whether a time given as µs was most likely sent in seconds (100,000 to 10,000,000
    times smaller than now, as `looks_like_milliseconds` takes 100 to 10,000)."""
    return SECONDS_EPOCH_MIN <= time_us < MILLISECONDS_EPOCH_MIN and (
        time_us * 100_000 <= now_us < time_us * 10_000_000
    )


def unit_slip(field: str, time_us: int, now_us: int, *, seconds: bool = True) -> str | None:
    """Why a µs time (`field`: `expire_at`, `as_of`) that was most likely sent in
    milliseconds or (unless not `seconds`) seconds is refused, naming the µs of that time;
    None for any other."""
    if looks_like_milliseconds(time_us, now_us):
        return _slip_words(field, time_us, "milliseconds", time_us * 1_000)
    return seconds_slip(field, time_us, now_us) if seconds else None


def seconds_slip(field: str, time_us: int, now_us: int) -> str | None:
    """`unit_slip` for a time most likely sent in seconds alone."""
    if not looks_like_seconds(time_us, now_us):
        return None
    return _slip_words(field, time_us, "seconds", time_us * 1_000_000)


def _slip_words(field: str, time_us: int, unit: str, meant: int) -> str:
    return f"{field} {time_us} looks like {unit}; {field} is in microseconds: did you mean {meant}?"
