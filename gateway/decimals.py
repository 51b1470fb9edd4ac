"""Decimal strings of integer units, remembered per scale: the outbound path's formatter.

A marketable order's pushes and book updates format dozens of prices and quantities, and
most of them (prices on the tick near the touch, order sizes, zero) recur all day; a dict
hit costs a fraction of `engine.units.format_units`. Owns one bounded table per scale;
formatting rules stay `format_units`'s, so a remembered string equals a fresh one.
Limit: `STRINGS_PER_SCALE_MAX` per table, emptied when full (values that never recur, such
as running balances, churn it instead of growing it); tables exist only for scales in use
(at most `engine.units.SCALE_MAX` + 1).
"""

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
        scale = self.scale
        if units >= 0 and scale:
            # `format_units` inlined and cut: misses are frequent (running balances, two or
            # three a marketable order), and the decimal digits split at the point cost a
            # third of a divmod, the big-int division behind it and an f-string with zfill
            digits = str(units)
            if len(digits) > scale:
                text = digits[:-scale] + "." + digits[-scale:]
            else:
                text = "0." + digits.zfill(scale)
        else:
            text = format_units(units, scale)
        self[units] = text
        return text


_TABLES: dict[int, DecimalStrings] = {}


def strings_at(scale: int) -> DecimalStrings:
    """The shared table of `scale` (made on first use)."""
    table = _TABLES.get(scale)
    if table is None:
        table = _TABLES[scale] = DecimalStrings(scale)
    return table
