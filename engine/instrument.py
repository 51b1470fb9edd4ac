"""Instruments: the reference data of what trades, and the exact notional arithmetic on it.

An `InstrumentSpec` is immutable reference data as listed: units, tick, step, minimums,
price band, fees and the optional per-order caps (`max_qty`, `max_notional`; 0 = no cap).
Prices are integer units at `price_decimals` (T-bills: price per 100
face), quantities integer units at `qty_decimals` (T-bills: face value), notionals integer
units of the quote asset at `quote_decimals`. Notional = price x qty x num / den
(`notional_fraction`), an exact fraction; the engine compares with it, settlement rounds it
once. Every amount of a sound spec is at most `UNITS_MAX`, whatever path lists it (as on the
wire), and its maturity a positive int64 (T-bills) or 0. Also the checks a listing shares
wherever it enters: names and their case twins, the band around a reference price, a bill's
price range and a `max_notional` that would refuse every order.
"""

import threading
from collections import OrderedDict
from collections.abc import Iterable
from math import gcd
from typing import Any

import msgspec

from engine.enums import InstrumentKind
from engine.units import INT64_MAX, SCALE_MAX, UNITS_MAX, format_units
from settlement import tbill

SYMBOL_LENGTH_MAX = 32  # long enough for "AAPLx-USD" or "TB-2027-03-04-USD", short for logs
FEE_BPS_MAX = 1_000  # 10%: anything above is a configuration mistake
BAND_BPS_MAX = 10_000  # 100%: a band wider than that bounds nothing
TBILL_PRICE_PER = 100  # T-bills are quoted per 100 of face value


SUGGESTED_MAX = 3  # symbols a refusal names: enough for a few near ones, short to read
PREFIX_CHARS_MIN = 3  # a name typed alone ("AAPL") names its markets; "TB" names too many
TYPO_CHARS_MIN = 4  # a typo is looked for in more letters and digits: "SPY" is not "SPX"


def unknown_symbol(symbol: str, listed: Iterable[str] = ()) -> str:
    """The words of an `UNKNOWN_SYMBOL` refusal, one sentence wherever it is refused (the
    symbol quoted as Python quotes it: an odd character in it shows), naming the one of
    `listed` it differs from only by case (`aaplx-usd` for `AAPLx-USD`), else those a slip
    most likely meant (`likely_symbols`): symbols match exactly, which the bare refusal left
    to guess. `listed` holds only symbols the caller may see (every listed one is public);
    a dict's (the venue's markets, the gateway's specs) are looked up in its cached
    `SymbolIndex` (`_index_of`), not passed over on each refusal."""
    index = _index_of(listed)
    twin = index.case_twin(symbol)
    if twin is not None:
        return f"unknown symbol {symbol!r}: did you mean {twin!r}? (symbols match case and all)"
    likely = index.likely(symbol)
    if not likely:
        return f"unknown symbol {symbol!r}"
    named = [repr(name) for name in likely]
    choices = named[0] if len(named) == 1 else f"{', '.join(named[:-1])} or {named[-1]}"
    return f"unknown symbol {symbol!r}: did you mean {choices}?"


def likely_symbols(symbol: str, listed: Iterable[str]) -> list[str]:
    """The listed symbols (at most `SUGGESTED_MAX`, in order) a mistyped `symbol` most
    likely meant, compared by letters and digits alone, whatever their case: first those
    equal so (`AAPLX/USD`, `AAPLxUSD`), else those one typo away (`AAPL-USD`, a bill's
    date with a digit wrong or two swapped: `_one_typo_apart`), else those it begins
    (`AAPL`). See `SymbolIndex`."""
    return _index_of(listed).likely(symbol)


# The `SymbolIndex` of the few dicts refusals name symbols from (the venue's markets, the
# gateway's specs, market data's), built on the first refusal that needs one, not kept by
# the maps: their lookups on every command stay a plain dict's, and a venue no one mistypes
# at keeps no index. By the dict's id, with the dict itself held (so that id is not reused
# while cached), its len and its last key: these maps only grow (a delisted market stays),
# so a listing changes the len; a removal then an addition would change the last key. A
# listing is an admin command: an index (~20 µs a symbol) is built once per listing change
# and map, never per refusal. Least recently used first out, past `INDEXES_MAX` (a replaced
# map is held until then); a lock, as the engine and the gateway may refuse from two threads
# (an index is built outside it: two threads may each build one, the last kept).
INDEXES_MAX = 8
_indexes: "OrderedDict[int, tuple[dict[str, Any], int, str | None, SymbolIndex]]" = OrderedDict()
_indexes_lock = threading.Lock()


def _index_of(listed: Iterable[str]) -> "SymbolIndex":
    """The index of `listed`: a dict's cached (`_indexes`), any other's built for this one
    refusal (a pass over them: a list the caller made, as `venue admin`'s)."""
    if not isinstance(listed, dict):
        return SymbolIndex(listed)
    length, last = len(listed), next(reversed(listed), None)
    with _indexes_lock:
        cached = _indexes.get(id(listed))
        if cached is not None and cached[1] == length and cached[2] == last:
            _indexes.move_to_end(id(listed))
            return cached[3]
    index = SymbolIndex(listed)  # built outside the lock: another thread's refusal not held
    with _indexes_lock:
        _indexes[id(listed)] = (listed, length, last, index)
        _indexes.move_to_end(id(listed))
        while len(_indexes) > INDEXES_MAX:
            _indexes.popitem(last=False)
        return index


def _letters(name: str) -> str:
    """`name`'s letters and digits, folded: `AAPLX/USD` and `AAPLx-USD` both `aaplxusd`."""
    return "".join(char for char in name.casefold() if char.isalnum())


def _deletions(key: str) -> set[str]:
    """`key` with one character left out, each way."""
    return {key[:at] + key[at + 1 :] for at in range(len(key))}


class SymbolIndex:
    """What an `UNKNOWN_SYMBOL` refusal looks up: the listed symbols by their case-folded
    name, by their letters and digits (`_letters`: the key), by each key with one character
    left out, and the first `SUGGESTED_MAX` symbols (in order) of each key's prefixes. It
    is built once per listing change (`_index_of`), never per refusal: a refusal then costs
    lookups in the number of the input's characters, not a pass over every listed symbol
    (1-13 ms at 1,336-10,000 before session 36's review, on the event loop and in the
    engine). Its answers do not depend on the order symbols were added in,
    but for two listed symbols differing only by case (refused since session 30), the
    first added, as a pass over them in that order found: the same on replay and standby."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        listed = list(dict.fromkeys(names))  # each once, in the order listed
        self._folded: dict[str, str] = {}  # casefold -> the first listed
        for name in listed:
            self._folded.setdefault(name.casefold(), name)
        self._keyed: dict[str, list[str]] = {}  # key -> its symbols, sorted
        self._deleted: dict[str, list[str]] = {}  # a key less one character -> those keys
        self._prefixed: dict[str, list[str]] = {}  # a key's prefix -> its first symbols
        for name in sorted(listed):  # so each list is in order as it is filled
            self._add(name, _letters(name))

    def _add(self, name: str, key: str) -> None:
        """Index `name` (of `key`), after every listed symbol before it in order."""
        same = self._keyed.get(key)
        if same is not None:
            same.append(name)
        else:
            self._keyed[key] = [name]
            for deleted in _deletions(key):  # a set: each once
                self._deleted.setdefault(deleted, []).append(key)
        for end in range(PREFIX_CHARS_MIN, len(key) + 1):
            first = self._prefixed.get(key[:end])
            if first is None:
                self._prefixed[key[:end]] = [name]
            elif len(first) < SUGGESTED_MAX:
                first.append(name)

    def case_twin(self, symbol: str) -> str | None:
        """The listed symbol `symbol` differs from only by case, as `case_twin` finds it."""
        if len(symbol) > SYMBOL_LENGTH_MAX:  # a casefold is never shorter: none is so long
            return None
        twin = self._folded.get(symbol.casefold())
        return None if twin == symbol else twin

    def likely(self, symbol: str) -> list[str]:
        """`likely_symbols`: its work is bounded by the symbol's length (longer than any
        symbol's, it is compared with none), a few lookups per character."""
        if len(symbol) > SYMBOL_LENGTH_MAX:
            return []
        key = _letters(symbol)
        if not key:
            return []
        same = self._keyed.get(key)
        if same:
            return list(same[:SUGGESTED_MAX])
        if len(key) > TYPO_CHARS_MIN:  # in fewer, one typo makes another name
            near = sorted(name for other in self._near(key) for name in self._keyed[other])
            if near:
                return near[:SUGGESTED_MAX]
        if len(key) < PREFIX_CHARS_MIN:
            return []
        return list(self._prefixed.get(key, ()))

    def _near(self, key: str) -> list[str]:
        """The listed keys one typo from `key`: one typo (a character left out, added,
        changed, two swapped) leaves the two keys, or one and the other less a character,
        with a deletion in common; those found so are confirmed by `_one_typo_apart`."""
        found = set(self._deleted.get(key, ()))  # a character left out of the key
        for deleted in _deletions(key):
            if deleted in self._keyed:  # one added
                found.add(deleted)
            found.update(self._deleted.get(deleted, ()))  # one changed, or two swapped
        return [other for other in found if _one_typo_apart(key, other)]


def _one_typo_apart(typed: str, other: str) -> bool:
    """Whether one typo makes `typed` of `other`: a character left out, added or changed,
    or two side by side swapped. Two make another bill's date (`tb20270506usd` for
    `tb20270304usd`), not a slip. Linear in the length, its comparisons in C."""
    if abs(len(typed) - len(other)) > 1 or typed == other:
        return False
    at = 0
    while at < len(typed) and at < len(other) and typed[at] == other[at]:
        at += 1
    if len(typed) > len(other):  # one added
        return typed[at + 1 :] == other[at:]
    if len(typed) < len(other):  # one left out
        return typed[at:] == other[at + 1 :]
    if typed[at + 1 :] == other[at + 1 :]:  # one changed
        return True
    swapped = typed[at : at + 2] == other[at : at + 2][::-1]
    return swapped and typed[at + 2 :] == other[at + 2 :]


def is_name(text: str) -> bool:
    """Printable ASCII without spaces, as a symbol or asset code must be: a name then reads
    the same in every error, log line and terminal, and "AAPLx-USD " or one with a newline
    cannot list a market that looks like another."""
    return text.isascii() and text.isprintable() and " " not in text


def case_twin(name: str, names: Iterable[str]) -> str | None:
    """The one of `names` that differs from `name` only by case ("USD" for "usd"), or None:
    two such assets (or instruments) read alike to a user ("100 usd"), so a new one is
    refused where it enters (the config, `admin.list_asset`, `admin.list_instrument`).
    `name` itself is not its own twin."""
    folded = name.casefold()
    return next((other for other in names if other != name and other.casefold() == folded), None)


def case_twin_refusal(name: str, names: Iterable[str], said: str) -> str | None:
    """Why `name` is refused beside its case twin among `names` (`case_twin`), or None.
    `said` words the listed one ("asset {} exists")."""
    twin = case_twin(name, names)
    if twin is None:
        return None
    return (
        f"{said.format(twin)}: {name} differs from it only by case, and users could not tell"
        " the two apart"
    )


class InstrumentSpec(msgspec.Struct, frozen=True, gc=False):
    symbol: str
    kind: InstrumentKind
    base: str
    quote: str
    price_decimals: int
    price_tick: int
    qty_decimals: int
    qty_step: int
    min_qty: int
    quote_decimals: int
    min_notional: int
    price_band_bps: int
    reference_price: int
    maker_fee_bps: int = 0
    taker_fee_bps: int = 0
    maturity_us: int = 0  # T-bills only: when it pays par
    excluded_jurisdictions: tuple[str, ...] = ()
    max_qty: int = 0  # per-order cap on qty (fat-finger filter); 0: no cap
    max_notional: int = 0  # per-order cap on notional, quote units; 0: no cap

    @property
    def notional_fraction(self) -> tuple[int, int]:
        """(num, den) with notional units = price units x qty units x num / den, reduced."""
        per = TBILL_PRICE_PER if self.kind is InstrumentKind.TBILL else 1
        num = 10**self.quote_decimals
        den = 10 ** (self.price_decimals + self.qty_decimals) * per
        common = gcd(num, den)
        return num // common, den // common

    def problem(self) -> str | None:
        """Why this spec cannot be listed, or None when it is sound."""
        if not self.symbol or len(self.symbol) > SYMBOL_LENGTH_MAX or not is_name(self.symbol):
            return f"symbol must have 1..{SYMBOL_LENGTH_MAX} printable ASCII characters, no spaces"
        if not self.base or not self.quote or self.base == self.quote:
            return "base and quote must be two different assets"
        for name in ("price_decimals", "qty_decimals", "quote_decimals"):
            if not 0 <= getattr(self, name) <= SCALE_MAX:
                return f"{name} must be within 0..{SCALE_MAX}"
        if self.price_tick <= 0 or self.qty_step <= 0:
            return "price_tick and qty_step must be positive"
        if self.min_qty <= 0 or self.min_qty % self.qty_step:
            return "min_qty must be a positive multiple of qty_step"
        if self.min_notional < 0:
            return "min_notional must not be negative"
        # The wire's bound on every amount, here too for listings by any other path (config,
        # admin): the spec is snapshotted and hashed. It bounds the tick and the step with
        # them, as the reference price and min_qty are their multiples.
        for name in ("reference_price", "min_qty", "min_notional"):
            if getattr(self, name) > UNITS_MAX:
                return f"{name} must be at most {UNITS_MAX} units"
        if not 0 < self.price_band_bps <= BAND_BPS_MAX:
            return f"price_band_bps must be within 1..{BAND_BPS_MAX}"
        if self.reference_price <= 0 or self.reference_price % self.price_tick:
            return "reference_price must be a positive multiple of price_tick"
        if not (0 <= self.maker_fee_bps <= FEE_BPS_MAX and 0 <= self.taker_fee_bps <= FEE_BPS_MAX):
            return f"fees must be within 0..{FEE_BPS_MAX} bps"
        # a time, hashed and snapshotted like one: a signed 64-bit integer (the venue's times
        # all fit one; its "never due" is 2^63)
        if not 0 <= self.maturity_us <= INT64_MAX:
            return f"maturity_us must be within 0..{INT64_MAX}"
        if (self.kind is InstrumentKind.TBILL) != (self.maturity_us > 0):
            return "a T-bill needs a maturity and only a T-bill has one"
        return self.caps_problem()

    def caps_problem(self) -> str | None:
        """Why the per-order caps are unsound (a cap below its minimum), or None."""
        if self.max_qty < 0 or self.max_notional < 0:
            return "max_qty and max_notional must not be negative (0: no cap)"
        if self.max_qty > UNITS_MAX or self.max_notional > UNITS_MAX:
            return f"max_qty and max_notional must be at most {UNITS_MAX} units"
        if self.max_qty and self.max_qty < self.min_qty:
            return "max_qty must be at least min_qty"
        if self.max_notional and self.max_notional < self.min_notional:
            return "max_notional must be at least min_notional"
        return None

    @property
    def notional_decimals(self) -> int:
        """The decimals at which price units x qty units is the exact notional."""
        per_decimals = 2 if self.kind is InstrumentKind.TBILL else 0  # per 100 face
        return self.price_decimals + self.qty_decimals + per_decimals


def bill_price_problem(spec: InstrumentSpec, price: int) -> str | None:
    """Why `price` (units at the spec's price decimals, per 100 face) cannot be this T-bill's
    reference price, or None (always for an equity): above par, where a bill sold at a
    discount and paid par at maturity would have negative rates, or below
    `tbill.PRICE_MIN`, a mistyped price. Checked where a price enters (the config,
    `admin.list_instrument`, `admin.set_reference_price`), not in the engine: a journal
    that set such a price before the check existed must replay as it was accepted."""
    if spec.kind is not InstrumentKind.TBILL:
        return None
    low, high = tbill.price_range_units(spec.price_decimals)
    decimals = spec.price_decimals
    said = f"{spec.symbol} reference_price {format_units(price, decimals)}"
    if price > high:
        return (
            f"{said} is above par ({format_units(high, decimals)} per 100 of face): a T-bill"
            " is sold at a discount and pays par at maturity; above par its rates would be"
            " negative"
        )
    if price < low:
        return (
            f"{said} is below {format_units(low, decimals)} per 100 of face, where a bill would"
            " yield over 80% a year however long it runs: a mistyped price (a misplaced"
            " decimal point?)"
        )
    return None


def notional_cap_problem(spec: InstrumentSpec, band_low: int) -> str | None:
    """Why `spec.max_notional` would refuse every order, or None (no cap, or one that lets a
    lot trade): below one lot's value, min_qty at `band_low` (the lowest price in the band),
    exact as `Market.above_max_notional` checks it. The words name the smallest cap that
    allows one lot. The engine checks it on `SetOrderCaps` (when the command says so); a
    listing's caps are checked where they enter (the config, `admin.list_instrument`): a
    journal that listed such a cap before the check existed must replay as it was accepted."""
    num, den = spec.notional_fraction
    smallest = -(-band_low * spec.min_qty * num // den)  # rounded up to a quote unit
    if not 0 < spec.max_notional < smallest:
        return None
    quote_decimals = spec.quote_decimals
    return (
        f"max_notional {format_units(spec.max_notional, quote_decimals)} is below one lot's"
        f" value: {format_units(spec.min_qty, spec.qty_decimals)} (min_qty) at the band's low"
        f" {format_units(band_low, spec.price_decimals)} is worth"
        f" {format_units(smallest, quote_decimals)}, the smallest cap that allows one lot"
    )


def listed_band_low(spec: InstrumentSpec) -> int:
    """The band's low around the reference price the spec lists with."""
    return band_limits(spec.reference_price, spec.price_band_bps, spec.price_tick)[0]


def band_limits(reference_price: int, band_bps: int, tick: int) -> tuple[int, int]:
    """The lowest sell and highest buy price allowed around `reference_price`, on ticks."""
    high = reference_price * (10_000 + band_bps) // 10_000 // tick * tick
    low = -(-reference_price * (10_000 - band_bps) // 10_000) if band_bps < 10_000 else 0
    low = max(-(-low // tick) * tick, tick)
    return low, high
