"""Decimal strings of integer units, remembered per scale: the outbound path's formatter.

A marketable order's pushes and book updates format dozens of prices and quantities, and
most of them (prices on the tick near the touch, order sizes, zero) recur all day; a dict
hit costs a fraction of `engine.units.format_units`. Owns one bounded table per scale;
formatting rules stay `format_units`'s, so a remembered string equals a fresh one.
Limit: `STRINGS_PER_SCALE_MAX` per table, emptied when full (values that never recur, such
as running balances, churn it instead of growing it); tables exist only for scales in use
(at most `engine.units.SCALE_MAX` + 1).
"""

from collections.abc import Callable

from engine.units import format_units

# ~100 bytes an entry: a few MB per scale in use holds every price within thousands of
# ticks of the touch and the sizes traders keep sending.
STRINGS_PER_SCALE_MAX = 20_000


class DecimalStrings(dict[int, str]):
    """units -> `format_units(units, scale)`; index it (`strings[units]`): a hit is one
    C-level dict lookup, a miss formats and remembers."""

    __slots__ = ("scale",)

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale

    def __missing__(self, units: int) -> str:
        if len(self) >= STRINGS_PER_SCALE_MAX:
            self.clear()
        text = self[units] = _text(units, self.scale)
        return text


# A plain table and the function that fills its misses: read `table.get(units) or
# fill(units)`. A hit is then one C-level lookup: CPython runs a dict subclass's subscript
# (`DecimalStrings`) through a generic slot, a method call, about 415 instructions a hit
# (callgrind) against about 150 for an exact dict's `get`. The private pushes use these.
Filler = Callable[[int], str]


def plain_strings(scale: int) -> tuple[dict[int, str], Filler]:
    """A new plain table of `scale` and its filler (bounded like a `DecimalStrings`)."""
    table: dict[int, str] = {}
    pattern = _pattern(scale)
    factor: int = 10**scale  # typed: `int ** int` is Any to mypy (a negative power is a float)

    def fill(units: int) -> str:
        if len(table) >= STRINGS_PER_SCALE_MAX:
            table.clear()
        if units >= 0:  # `_text`'s common case inlined: a call saved per miss
            # (running balances miss several times a trade)
            text = table[units] = pattern % divmod(units, factor)
            return text
        text = table[units] = format_units(units, scale)
        return text

    def fill_whole(units: int) -> str:  # scale 0: no point
        if len(table) >= STRINGS_PER_SCALE_MAX:
            table.clear()
        text = table[units] = format_units(units, 0)
        return text

    return table, (fill if scale else fill_whole)


_PLAIN: dict[int, tuple[dict[int, str], Filler]] = {}


def plain_strings_at(scale: int) -> tuple[dict[int, str], Filler]:
    """The shared plain table of `scale` and its filler (made on first use)."""
    pair = _PLAIN.get(scale)
    if pair is None:
        pair = _PLAIN[scale] = plain_strings(scale)
    return pair


def _pattern(scale: int) -> str:
    """The %-format of units at `scale` > 0 as `divmod(units, 10**scale)` splits them: the
    whole part, then the fraction zero-padded to `scale` digits (2: "%d.%02d"). One format
    of a divmod costs about three quarters of the digits split at the point (`_text`;
    callgrind over a running balance's values)."""
    return f"%d.%0{scale}d"


def _text(units: int, scale: int) -> str:
    """`format_units(units, scale)`, cut for the common case: misses are frequent (running
    balances, two or three a marketable order), and the decimal digits split at the point
    cost a third of a divmod, the big-int division behind it and an f-string with zfill."""
    if units >= 0 and scale:
        digits = str(units)
        if len(digits) > scale:
            return digits[:-scale] + "." + digits[-scale:]
        return "0." + digits.zfill(scale)
    return format_units(units, scale)


_TABLES: dict[int, DecimalStrings] = {}


def strings_at(scale: int) -> DecimalStrings:
    """The shared table of `scale` (made on first use)."""
    table = _TABLES.get(scale)
    if table is None:
        table = _TABLES[scale] = DecimalStrings(scale)
    return table
