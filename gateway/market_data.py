"""Public market data: engine events in, channel messages out, each encoded once for all.

Owns a shadow L2 book per symbol built only from the events it is fed (never from the live
venue, which runs ahead of the journal), the `seq` of every stream, the snapshots and the
coalesced per-turn updates of `instruments`, `book`, `trades`, `bbo`, `ticker` and `candles`
(bars kept by `gateway.candles`, the trades tape by `gateway.tape`), and `LocalBook`, the
client side of `book`. Sockets, subscriptions and the clock are the server's: it feeds
`on_events`, calls `flush(now_us, wanted)` after each turn and sends each payload. Per event
only the shadow book's summed changes are noted; the flush applies them and builds each
message once.
Invariants: a stream's `seq` grows by one per message and an update's `prev_seq` is the seq
before it; a book snapshot is exactly the state at its seq, so equal (epoch, seq) mean equal
books. Book checksum: zlib.crc32 of the ASCII text `ASKS;BIDS`, each side's best 10 levels,
best first, as `price:qty` joined by `|`, in the decimal strings sent; for example
"100.10:2.000000;100.00:1.500000|99.90:3.000000". Limits are the named constants below.
"""

import datetime
import zlib
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from itertools import islice
from operator import neg
from typing import Any, NamedTuple

import msgspec
import orjson
from sortedcontainers import SortedDict

from engine.enums import InstrumentKind, InstrumentStatus, OrderType, Side, TimeInForce
from engine.events import (
    BalanceChanged,
    Event,
    InstrumentListed,
    InstrumentMatured,
    InstrumentStatusChanged,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderCapsSet,
    OrderExpired,
    ReferencePriceSet,
    SelfTradePrevented,
    SharesSplit,
    TradeExecuted,
    TradeSettled,
)
from engine.instrument import TBILL_PRICE_PER, InstrumentSpec, band_limits, unknown_symbol
from engine.units import format_units
from engine.venue import Venue
from gateway.candles import (
    INTERVALS_US,
    SNAPSHOT_BARS,
    TRADES_WAITING_MAX,
    Candles,
    CandlesResult,
    candle,
    split_price,
)
from gateway.decimals import DecimalStrings, strings_at
from gateway.tape import Tape
from settlement import tbill

# The tiers a book subscriber picks from: few, so each is diffed once per turn for everyone;
# 1,000 levels is a full view for market makers, beyond it order-by-order data is the tool.
BOOK_DEPTHS = (10, 25, 100, 1_000)
CHECKSUM_LEVELS = 10  # per side: where traders look; cheap to format in every message
TRADES_PER_MESSAGE_MAX = 1_000  # ~100 KB: a huge turn's sweep is split, never one giant frame
MINUTE_US = 60_000_000
DAY_US = 86_400_000_000
# Enum members read once, here: a member read from its class (`Side.BUY`) takes the slow
# attribute lookup EnumType gets for defining `__getattr__`, which CPython 3.11 cannot
# specialise (~920 instructions a read, callgrind); a module global is a cached load.
_LIMIT_ORDER, _GTC, _GTD = OrderType.LIMIT, TimeInForce.GTC, TimeInForce.GTD
_BUY = Side.BUY
TICKER_BUCKETS_MAX = 1_440  # one bucket per minute of the 24 h window: fixed memory per symbol
# per symbol and table (checksum texts, rows), ~150-250 bytes each: the levels near the touch
LEVEL_TEXTS_MAX = 10_000

assert min(BOOK_DEPTHS) >= CHECKSUM_LEVELS, "every tier must hold the checksummed levels"
assert list(BOOK_DEPTHS) == sorted(BOOK_DEPTHS), "tiers ascend: the deepest is computed once"

# What changed in a symbol during the turn, as bit flags. A book change sets `_BOOK` only on
# a symbol not yet touched (a membership test, not a lookup and a store per event); on one
# touched before, the flush finds it by the summed changes it left (`_Levels.delta`).
_BOOK = 1
_TRADES = 2
_REFERENCE = 4
_WINDOW = 8  # the ticker's 24 h window dropped a minute
_BOOK_TRADES = _BOOK | _TRADES  # a trade's


class Channel(StrEnum):
    """The public channels; `ch` on the wire."""

    INSTRUMENTS = "instruments"
    BOOK = "book"
    TRADES = "trades"
    BBO = "bbo"
    TICKER = "ticker"
    CANDLES = "candles"


CHANNELS = frozenset(Channel)


class Stream(NamedTuple):
    """What one subscription follows; `depth` is one of BOOK_DEPTHS for `book`, else 0;
    `interval` is one of `gateway.candles.INTERVALS_US` for `candles`, else ""."""

    channel: Channel
    symbol: str
    depth: int = 0
    interval: str = ""

    @property
    def name(self) -> str:
        """The key of this stream in a heartbeat: "book:AAPLx-USD:10", "trades:AAPLx-USD",
        "candles:AAPLx-USD:1m"."""
        if self.channel == Channel.BOOK:
            return f"book:{self.symbol}:{self.depth}"
        if self.channel == Channel.CANDLES:
            return f"candles:{self.symbol}:{self.interval}"
        return f"{self.channel}:{self.symbol}"


class Message(NamedTuple):
    """One encoded message of one stream, to be sent as is to each of its subscribers."""

    stream: Stream
    seq: int  # 0 on `ticker`, which has no sequence
    payload: bytes


Level = tuple[int, int]  # (price units, quantity units)
_NONE_PATCHED: list[int] = []  # `_Levels._resize`'s until it replaces a place (never changed)
# `Message(...)` runs the named tuple's Python `__new__`; tuple's own is C: a frame saved
_new_message = tuple.__new__


def book_checksum(bids: Sequence[Sequence[str]], asks: Sequence[Sequence[str]]) -> int:
    """CRC32 of the best CHECKSUM_LEVELS of each side, rows (price, qty) best first."""
    text = ";".join(
        "|".join(f"{row[0]}:{row[1]}" for row in islice(rows, CHECKSUM_LEVELS))
        for rows in (asks, bids)
    )
    return zlib.crc32(text.encode("ascii"))


def levels_checksum(bids: Sequence[Level], asks: Sequence[Level], spec: InstrumentSpec) -> int:
    """`book_checksum` of a book's own levels (best first, none empty), its text written
    straight from the remembered decimal strings rather than from rows built first."""
    prices = strings_at(spec.price_decimals)
    sizes = strings_at(spec.qty_decimals)
    text = ";".join(
        "|".join([f"{prices[price]}:{sizes[qty]}" for price, qty in side[:CHECKSUM_LEVELS]])
        for side in (asks, bids)
    )
    return zlib.crc32(text.encode("ascii"))


# ----------------------------------------------------------------- the shadow book


class _Levels:
    """One side of the shadow book: total quantity per price, prices kept best first.

    The best levels are remembered between flushes (`depth`) and dropped only when a change
    lands within them: a turn that touched one side, or only deeper levels, reuses the
    other's list and checksum text instead of walking the sorted keys and formatting again.
    A remembered list is replaced, never changed in place, so a tier may keep it as its state.
    Changes are summed per price (`add`, `take`) and applied by `settle` at the flush, once
    the events of the turn are in: an order that arrives and trades away within the turn (a
    marketable limit order), or a quote moved out and back, then never enters the sorted
    keys, nor makes the best levels stale.
    A flush whose changes only resized levels among the remembered ones keeps which places it
    patched (`_patch`), so a tier that held the list before gets its update from them
    (`changes`) instead of comparing every level it holds.
    The keys are a plain list kept sorted by `bisect`, as `engine.book`'s are (and no longer
    than the engine's): a level that comes or goes costs a C bisect and memmove, not the
    dozen Python calls of a `SortedList`.
    """

    __slots__ = (
        "_patch",
        "_places",
        "_segments",
        "_text",
        "_text_of",
        "_texts",
        "_top",
        "_top_max",
        "delta",
        "keys",
        "qty",
        "sign",
    )

    def __init__(self, side: Side, texts: "_LevelTexts") -> None:
        self.sign = -1 if side is Side.BUY else 1  # smallest key is the best, as in engine.book
        self._texts = texts  # the market's, shared by both sides
        self.qty: dict[int, int] = {}
        self.keys: list[int] = []  # price * sign of every level, ascending: the best first
        self.delta: dict[int, int] = {}  # price -> change not yet applied
        self._top: list[Level] | None = None  # the best `_top_max` levels, or None: stale
        self._top_max = 0
        self._places: dict[int, int] | None = None  # price -> index in `_top`, made on use
        # the last `_resize`: the list it copied, its copy and the places it replaced there
        self._patch: tuple[list[Level], list[Level], list[int]] | None = None
        self._text = ""  # the checksum text of `_text_of`'s best CHECKSUM_LEVELS levels
        self._text_of: list[Level] | None = None
        self._segments: list[str] = []  # its "price:qty" parts ("" to join them again)

    def add(self, price: int, qty: int) -> None:
        delta = self.delta
        delta[price] = delta.get(price, 0) + qty

    def take(self, price: int, qty: int) -> None:
        delta = self.delta
        delta[price] = delta.get(price, 0) - qty

    def settle(self) -> None:
        """Apply the changes summed since the last settle (those that cancel out: none).

        One loop for all of them (no call per price), and the levels that only changed size
        are patched into one copy of the remembered list (`_resize`) rather than one each."""
        qty = self.qty
        resized: list[Level] = []
        for price, change in self.delta.items():
            if not change:
                continue
            total = qty.get(price, 0) + change
            assert total >= 0, f"level {price} would go negative"
            if total == change:  # a new level
                qty[price] = total
                insort(self.keys, price * self.sign)
            elif total:  # the usual fill or added order: the level keeps its place
                qty[price] = total
                resized.append((price, total))
                continue
            else:
                del qty[price]
                keys = self.keys
                del keys[bisect_left(keys, price * self.sign)]
            self._moved(price)
        self.delta.clear()
        if resized and self._top is not None:
            self._resize(resized)

    def _moved(self, price: int) -> None:
        """The level at `price` changed: the remembered best levels are stale if it is among
        them (or they were the whole side, which a new level may join anywhere)."""
        top = self._top
        if top is None:
            return
        sign = self.sign
        if len(top) < self._top_max or price * sign <= top[-1][0] * sign:
            self._top = None

    def _resize(self, resized: list[Level]) -> None:
        """Levels kept their places with new quantities: the remembered list, where it holds
        them, is copied once with those entries replaced instead of being built again from
        the sorted keys (a level's place is the same before and after a move elsewhere:
        `_moved` dropped the list if a move could shift it)."""
        top = self._top
        assert top is not None
        places = self._places
        if places is None:  # (`dict(zip(map(...), count()))`: more instructions, callgrind)
            places = self._places = {level[0]: index for index, level in enumerate(top)}
        new_top: list[Level] | None = None
        patched: list[int] = _NONE_PATCHED  # the places replaced in `new_top`
        segments: list[str] | None = None  # the checksum text's parts, if one is replaced
        text_kept = self._text_of is top
        for level in resized:
            index = places.get(level[0])
            if index is None:  # it lies below them all (a short list holds every level)
                continue
            if new_top is None:  # replaced, never changed: tiers may hold the old
                new_top = top.copy()
                patched = []
            new_top[index] = level
            patched.append(index)
            if text_kept and index < CHECKSUM_LEVELS:  # one part looked up, not ten
                if segments is None:
                    segments = self._segments.copy()
                segments[index] = self._texts[level]
        if new_top is None:
            return
        self._top = new_top
        self._patch = (top, new_top, patched)
        if text_kept:
            self._text_of = new_top
            if segments is not None:
                self._segments = segments
                self._text = ""

    def depth(self, levels_max: int) -> list[Level]:
        """The best `levels_max` levels as (price, total quantity), best first (shared: do
        not change it)."""
        top = self._top
        if top is None or levels_max > self._top_max:
            keys = self.keys[:levels_max]  # C throughout: no Python frame
            prices = keys if self.sign > 0 else list(map(neg, keys))
            top = list(zip(prices, map(self.qty.__getitem__, prices), strict=True))
            self._top = top
            self._places = None
            self._top_max = levels_max
        return top if len(top) <= levels_max else top[:levels_max]

    def changes(self, before: list[Level], after: list[Level]) -> list[Level]:
        """The levels a tier sends so that `before` becomes `after` (both lists this side
        gave it), best first: new totals, and 0 for the gone. When the last `_resize` made
        `after` out of `before`, only the places it replaced differ, each in a new size."""
        patch = self._patch
        if patch is not None and patch[0] is before and patch[1] is after:
            places = patch[2]
            if len(places) > 1:
                places.sort()
            return list(map(after.__getitem__, places))
        if before == after:
            return []
        old = dict(before)
        changes = [(p, q) for p, q in after if old.pop(p, None) != q]
        if old:  # levels that left the top: deleted or pushed below the depth
            changes.extend((p, 0) for p in old)
            changes.sort(reverse=self.sign < 0)  # prices are distinct: quantities never decide
        return changes

    def check_remembered(self) -> None:
        """Assert the remembered best levels and checksum parts are what they stand for."""
        top = self._top
        if top is None:
            return
        keys = self.keys[: self._top_max]
        assert top == [(key * self.sign, self.qty[key * self.sign]) for key in keys], "stale"
        if self._text_of is top:
            head = top[:CHECKSUM_LEVELS]
            assert self._segments == [self._texts[level] for level in head], "stale text"
        if self._places is not None:
            assert self._places == {level[0]: i for i, level in enumerate(top)}, "stale places"
        if self._patch is not None:  # what `changes` takes for a tier's update
            before, after, places = self._patch
            pairs = enumerate(zip(before, after, strict=True))
            assert sorted(places) == [i for i, (old, new) in pairs if old != new], "bad patch"

    def best(self) -> Level | None:
        top = self._top  # when remembered, any length holds the best
        if top is None:
            top = self.depth(1)
        return top[0] if top else None

    def checksum_text(self) -> str:
        """This side's part of the book checksum (`levels_checksum`), joined again only
        when its best levels changed."""
        text = self._text  # joined from `_segments`, the parts of `_text_of`'s levels
        if text and self._text_of is self._top:  # the usual untouched side: nothing to look at
            return text
        top = self._top  # a tier's flush made it (every tier holds the checksummed levels)
        if top is None or self._top_max < CHECKSUM_LEVELS:
            self.depth(CHECKSUM_LEVELS)
            top = self._top
            assert top is not None
        if top is not self._text_of:
            self._text_of = top
            head = top if len(top) <= CHECKSUM_LEVELS else top[:CHECKSUM_LEVELS]
            self._segments = list(map(self._texts.__getitem__, head))
            self._text = ""
        if not self._text:
            self._text = "|".join(self._segments)
        return self._text


class _LevelTexts(dict[Level, str]):
    """(price, qty) -> "price:qty" in the decimal strings sent, a level's part of the book
    checksum text: a level near the touch keeps its size for many turns, and a dict hit
    costs a fraction of formatting it. Emptied when full (`LEVEL_TEXTS_MAX`)."""

    __slots__ = ("prices", "sizes")

    def __init__(self, prices: DecimalStrings, sizes: DecimalStrings) -> None:
        super().__init__()
        self.prices = prices
        self.sizes = sizes

    def __missing__(self, level: Level) -> str:
        if len(self) >= LEVEL_TEXTS_MAX:
            self.clear()
        text = self[level] = f"{self.prices[level[0]]}:{self.sizes[level[1]]}"
        return text


class _LevelRows(dict[Level, list[str]]):
    """(price, qty) -> [price, qty], a level's row in a book message (qty 0: "0", a level
    gone), shared by every message that sends it (never changed): one dict hit a level
    instead of two and a list built. Emptied when full (`LEVEL_TEXTS_MAX`)."""

    __slots__ = ("prices", "sizes")

    def __init__(self, prices: DecimalStrings, sizes: DecimalStrings) -> None:
        super().__init__()
        self.prices = prices
        self.sizes = sizes

    def __missing__(self, level: Level) -> list[str]:
        if len(self) >= LEVEL_TEXTS_MAX:
            self.clear()
        price, qty = level
        row = self[level] = [self.prices[price], self.sizes[qty] if qty else "0"]
        return row


class _Resting:
    """An order in the shadow book: enough to take its quantity out again."""

    __slots__ = ("leaves", "levels", "price")

    def __init__(self, levels: _Levels, price: int, leaves: int) -> None:
        self.levels = levels
        self.price = price
        self.leaves = leaves


class _State:
    """A stream's sequence, the time and value of its state at that seq, and its snapshot."""

    __slots__ = ("cache", "seq", "sequenced", "stream", "template", "ts_us", "value")

    def __init__(self, stream: Stream, value: Any, ts_us: int) -> None:
        self.stream = stream
        self.seq = 0
        self.ts_us = ts_us
        self.value = value  # book: (bids, asks) or None while no one follows the stream
        self.cache: bytes | None = None  # the encoded snapshot at `seq`
        self.template = b""  # an update's bytes with its seq, ts and data left to fill in
        self.sequenced = stream.channel != Channel.TICKER  # ticker messages carry no seq

    def advance(self, value: Any, ts_us: int) -> None:
        self.seq += 1
        self.value = value
        self.ts_us = ts_us
        self.cache = None


class _Ticker:
    """Last price and the 24 h high, low and volume, kept in per-minute buckets.

    The window is the current minute and the 1,439 before it: 23 h 59 min to 24 h of trades.
    """

    __slots__ = ("buckets", "closed", "last_price")

    def __init__(self) -> None:
        # [minute, high, low, volume, trades], oldest first; a new minute pushes out the
        # minute 24 h before it, so maxlen is also the window.
        self.buckets: deque[list[int]] = deque(maxlen=TICKER_BUCKETS_MAX)
        self.closed: tuple[int, int, int, int] | None = None  # all buckets but the newest
        self.last_price = 0

    def add_trades(self, trades: list[TradeExecuted]) -> None:
        """A turn's trades, in one call: those in the current minute's bucket (nearly all)
        update it here, the others take `add`'s way."""
        buckets = self.buckets
        bucket: list[int] = []
        start_us = end_us = 0  # the newest bucket's minute; none yet: each trade takes `add`'s
        if buckets:
            bucket = buckets[-1]
            start_us = bucket[0] * MINUTE_US
            end_us = start_us + MINUTE_US
        for trade in trades:
            price = trade.price
            if start_us <= trade.ts_us < end_us:
                if price > bucket[1]:
                    bucket[1] = price
                elif price < bucket[2]:  # high >= low: a price is never beyond both
                    bucket[2] = price
                bucket[3] += trade.qty
                bucket[4] += 1
            else:
                self.add(trade.ts_us, price, trade.qty)
                bucket = buckets[-1]
                start_us = bucket[0] * MINUTE_US
                end_us = start_us + MINUTE_US
        self.last_price = trades[-1].price

    def add(self, ts_us: int, price: int, qty: int) -> None:
        minute = ts_us // MINUTE_US
        buckets = self.buckets
        if buckets and buckets[-1][0] == minute:
            bucket = buckets[-1]
            bucket[1] = max(bucket[1], price)
            bucket[2] = min(bucket[2], price)
            bucket[3] += qty
            bucket[4] += 1
        else:
            assert not buckets or buckets[-1][0] < minute, "trades arrive in time order"
            buckets.append([minute, price, price, qty, 1])
            self.closed = None
        self.last_price = price

    def rebuild(self, buckets: list[list[int]], last_price: int) -> None:
        """Start from the candles' 1-minute bars (`Candles.minutes`), as after a restart."""
        self.buckets.clear()
        self.buckets.extend(buckets)
        self.closed = None
        self.last_price = last_price

    def split(self, ratio_new: int, ratio_old: int, tick: int) -> None:
        """Rescale the window at an N:M split, by the candles' rule (`split_price`)."""
        for bucket in self.buckets:
            bucket[1] = split_price(bucket[1], ratio_new, ratio_old, tick)
            bucket[2] = split_price(bucket[2], ratio_new, ratio_old, tick)
            bucket[3] = bucket[3] * ratio_new // ratio_old
        if self.last_price:
            self.last_price = split_price(self.last_price, ratio_new, ratio_old, tick)
        self.closed = None

    def expire(self, now_us: int) -> bool:
        """Drop the minutes that left the window; whether any did."""
        first_kept = now_us // MINUTE_US - TICKER_BUCKETS_MAX + 1
        buckets = self.buckets
        if not buckets or buckets[0][0] >= first_kept:
            return False
        while buckets and buckets[0][0] < first_kept:
            buckets.popleft()
        self.closed = None
        return True

    def data(self, spec: InstrumentSpec, now_us: int, matured: bool = False) -> dict[str, Any]:
        high, low, volume, trades = 0, 0, 0, 0
        if self.buckets:
            if self.closed is None:  # recomputed at most once per bucket added or dropped
                older = list(islice(self.buckets, len(self.buckets) - 1))
                self.closed = (
                    max((b[1] for b in older), default=0),
                    min((b[2] for b in older), default=0),
                    sum(b[3] for b in older),
                    sum(b[4] for b in older),
                )
            newest = self.buckets[-1]
            high, low, volume, trades = self.closed
            high = max(high, newest[1])
            low = min(low, newest[2]) if low else newest[2]
            volume += newest[3]
            trades += newest[4]
        prices = strings_at(spec.price_decimals)  # prices recur; the volume rarely does
        data: dict[str, Any] = {
            "last": prices[self.last_price] if self.last_price else None,
            "high": prices[high] if trades else None,
            "low": prices[low] if trades else None,
            "volume": format_units(volume, spec.qty_decimals),
            "trades": trades,
        }
        if spec.kind is InstrumentKind.TBILL:
            data["yield"] = bill_yield(spec, self.last_price, now_us, matured)  # the last price
        return data


class _Market:
    """Everything market data keeps about one symbol."""

    __slots__ = (
        "asks",
        "bbo",
        "bids",
        "books",
        "candles",
        "instrument",
        "instrument_inputs",
        "level_rows",
        "level_texts",
        "matured",
        "pending",
        "prices",
        "recent",
        "reference_price",
        "sizes",
        "spec",
        "status",
        "ticked",
        "ticker",
        "ticker_state",
        "trades",
        "waiting",
    )

    def __init__(
        self,
        spec: InstrumentSpec,
        status: InstrumentStatus,
        ts_us: int,
        waiting: list[TradeExecuted],
        recent: deque[TradeExecuted],
    ) -> None:
        symbol = spec.symbol
        self.spec = spec
        self.status = status
        self.matured = False  # a T-bill matured (at its date or early, `admin.mature`)
        # the decimal strings of its prices and quantities (a spec's decimals never change)
        self.prices = strings_at(spec.price_decimals)
        self.sizes = strings_at(spec.qty_decimals)
        self.level_texts = _LevelTexts(self.prices, self.sizes)
        self.level_rows = _LevelRows(self.prices, self.sizes)
        self.reference_price = spec.reference_price  # as the engine moves it: trades, operators
        self.bids = _Levels(Side.BUY, self.level_texts)
        self.asks = _Levels(Side.SELL, self.level_texts)
        self.books = {
            depth: _State(Stream(Channel.BOOK, symbol, depth), None, ts_us) for depth in BOOK_DEPTHS
        }
        self.bbo = _State(Stream(Channel.BBO, symbol), (None, None), ts_us)
        self.instrument = _State(Stream(Channel.INSTRUMENTS, symbol), None, ts_us)
        self.instrument_inputs = _ReferenceInputs(spec, status, self.reference_price, 0, None)
        self.start_instrument(ts_us)
        self.trades = _State(Stream(Channel.TRADES, symbol), None, ts_us)
        self.pending: list[TradeExecuted] = []  # this turn's trades, published at flush
        # how many of `pending` the ticker holds already: those before a split (`_split`)
        self.ticked = 0
        self.waiting = waiting  # the trades the candles have yet to add (`Candles.waiting`)
        self.recent = recent  # the tape's (`Tape.recent`), kept across restarts
        self.ticker = _Ticker()
        self.ticker_state = _State(Stream(Channel.TICKER, symbol), None, ts_us)
        # value: the open time (µs) of the newest bar sent, so an update also carries the
        # final state of the bar that was current at the last flush
        self.candles = {
            interval: _State(Stream(Channel.CANDLES, symbol, 0, interval), 0, ts_us)
            for interval in INTERVALS_US
        }

    def levels(self, side: Side) -> _Levels:
        return self.bids if side is Side.BUY else self.asks

    def bbo_value(self) -> tuple[Level | None, Level | None]:
        return self.bids.best(), self.asks.best()

    def start_instrument(self, ts_us: int) -> None:
        """The instruments stream's value, as of now, with no update."""
        self.instrument_inputs = _reference_inputs(self, ts_us)
        self.instrument.value = _reference(self.instrument_inputs)


class _ReferenceInputs(NamedTuple):
    spec: InstrumentSpec
    status: InstrumentStatus
    reference_price: int
    day: int  # UTC days since the epoch for a bill (its yield moves with it), else 0
    bill_yield: Any  # a bill's yield that day (`bill_yield`), else None

    def same_value(self, other: "_ReferenceInputs") -> bool:
        """The stream's value is the same: equal inputs, the day aside (what a new day
        changes is the yield, compared itself: a bill without one sends nothing new)."""
        return self[:3] == other[:3] and self.bill_yield == other.bill_yield


def _reference_inputs(market: "_Market", now_us: int) -> _ReferenceInputs:
    """What the instruments stream's value is made of: equal inputs make equal values (its
    numbers are these, formatted; a bill's yield moves with the UTC date), so comparing them
    tells whether the stream changed without building the value nobody may read."""
    spec = market.spec
    if spec.kind is not InstrumentKind.TBILL:
        return _ReferenceInputs(spec, market.status, market.reference_price, 0, None)
    reference_price = market.reference_price
    day = now_us // DAY_US
    priced = bill_yield(spec, reference_price, now_us, market.matured)
    return _ReferenceInputs(spec, market.status, reference_price, day, priced)


def _reference(inputs: _ReferenceInputs) -> dict[str, Any]:
    # Built when the stream moved and someone follows it, or for a snapshot: its decimals
    # are remembered strings (the spec's own never change).
    spec, status, reference_price = inputs.spec, inputs.status, inputs.reference_price
    prices = strings_at(spec.price_decimals)
    sizes = strings_at(spec.qty_decimals)
    amounts = strings_at(spec.quote_decimals)
    band_low, band_high = band_limits(reference_price, spec.price_band_bps, spec.price_tick)
    data: dict[str, Any] = {
        "symbol": spec.symbol,
        "kind": str(spec.kind),
        "base": spec.base,
        "quote": spec.quote,
        "price_decimals": spec.price_decimals,
        "qty_decimals": spec.qty_decimals,
        "tick": prices[spec.price_tick],
        "step": sizes[spec.qty_step],
        "min_qty": sizes[spec.min_qty],
        "min_notional": amounts[spec.min_notional],
        "maker_fee_bps": spec.maker_fee_bps,
        "taker_fee_bps": spec.taker_fee_bps,
        "status": str(status),
        "reference_price": prices[reference_price],
        "band_low": prices[band_low],  # the lowest price a sell may have
        "band_high": prices[band_high],  # the highest price a buy may have
        "max_qty": sizes[spec.max_qty] if spec.max_qty else None,
        "max_notional": amounts[spec.max_notional] if spec.max_notional else None,
    }
    if spec.kind is InstrumentKind.TBILL:
        data["maturity"] = spec.maturity_us  # µs; it pays par then
        data["face"] = str(TBILL_PRICE_PER)  # prices are per this much face; qty is face value
        data["yield"] = inputs.bill_yield  # at the reference price, on the inputs' date
    return data


def bill_yield(
    spec: InstrumentSpec, price: int, now_us: int, matured: bool = False
) -> dict[str, Any] | None:
    """How bill traders read a price: per 100 face, bank discount rate and investment yield.

    Rates are percent with Treasury's 3 decimals, rounded half up (`settlement.tbill`). Days
    are calendar days from today's UTC date (trades settle at once) to the maturity date, as
    Treasury counts them; the investment yield's year has 366 days when
    the year after today's UTC date holds a Feb 29 (the quote's date stands in for the issue
    date). None when there is no price, the bill matures today or has matured (at its date,
    or early: `matured`, as `admin.mature` leaves it whatever the date says), or has more
    than 366 days left, or the price is above par (the rates would be negative).
    """
    if matured:
        return None
    today = _utc_date(now_us)
    days = tbill.days_to_maturity(today, _utc_date(spec.maturity_us))
    per_100 = Fraction(price, 10**spec.price_decimals)
    if not price or not 1 <= days <= tbill.DAYS_TO_MATURITY_MAX or per_100 > tbill.PAR_PRICE:
        return None
    year_days = tbill.year_days_after_issue(today)
    discount = tbill.rate_to_units(tbill.discount_rate_from_price(per_100, days))
    investment = tbill.investment_rate_units_from_price(per_100, days, year_days)
    return {
        "price_per_100": format_units(price, spec.price_decimals),
        "days_to_maturity": days,
        "discount_rate_pct": format_units(discount, tbill.RATE_DECIMALS),
        "investment_yield_pct": format_units(investment, tbill.RATE_DECIMALS),
    }


def _utc_date(ts_us: int) -> datetime.date:
    return datetime.datetime.fromtimestamp(ts_us // 1_000_000, datetime.UTC).date()


_UPDATE = b',"seq":%d,"prev_seq":%d,"ts":%d,"data":%b}'  # after the head: seq, seq - 1, ts, data
_TICKER_UPDATE = b',"ts":%d,"data":%b}'  # ticker has no seq: its head runs to "ts"


def _checksum(market: "_Market") -> int:
    """`levels_checksum` of the market's book, from each side's remembered text."""
    text = f"{market.asks.checksum_text()};{market.bids.checksum_text()}"
    return zlib.crc32(text.encode("ascii"))


def _trade_rows(trades: Iterable[TradeExecuted], market: "_Market") -> list[dict[str, Any]]:
    # `taker_side` as it is: a `Side` is a str, which orjson writes as its value ("buy")
    prices = market.prices
    sizes = market.sizes
    return [
        {
            "trade_id": t.trade_id,
            "price": prices[t.price],
            "qty": sizes[t.qty],
            "taker_side": t.taker_side,
            "ts": t.ts_us,
        }
        for t in trades
    ]


def _rows(levels: Iterable[Level], market: "_Market") -> list[list[str]]:
    # Levels near the touch recur every turn: their rows are remembered (`_LevelRows`).
    return list(map(market.level_rows.__getitem__, levels))  # in C: no bytecode a level


# ----------------------------------------------------------------- the publisher


class MarketData:
    """Public channels of the venue, fed by its durable events, flushed once per turn.

    Past 400 lines for a reason: the channels share one pass over each command's events (the
    hot loop of the public side), the per-symbol state it updates, and the coalescing and
    snapshot rules that must agree with it; the pieces that stand alone are their own
    classes (`_Levels` per book side, `_Ticker`, `_Market`, `Candles`).

    The server calls `on_events` with each released command's events, then `flush` with the
    streams that have subscribers, and sends each returned payload to all of them; a new
    subscriber gets `snapshot(stream)` first and then the stream's later messages.
    """

    def __init__(
        self, epoch: int, candles: Candles | None = None, tape: Tape | None = None
    ) -> None:
        self.epoch = epoch
        self.candles = Candles() if candles is None else candles  # the server's: they persist
        self.tape = Tape() if tape is None else tape  # the server's too
        self._markets: dict[str, _Market] = {}
        self._orders: dict[int, _Resting] = {}  # resting orders; as many as the venue holds
        self._touched: dict[str, int] = {}  # symbol -> what changed this turn (flags)
        self._minute = -1  # of the last flush: the ticker windows move once a minute
        # the rare events' (the trading path's are `on_events`' own)
        self._handlers: dict[type[Event], Callable[[Any], None]] = {
            InstrumentListed: self._listed,
            InstrumentStatusChanged: self._status_changed,
            ReferencePriceSet: self._reference_set,
            OrderCapsSet: self._caps_set,
            SharesSplit: self._split,
            InstrumentMatured: self._matured,
        }

    @classmethod
    def from_venue(
        cls, venue: Venue, epoch: int, candles: Candles | None = None, tape: Tape | None = None
    ) -> "MarketData":
        """Start from a venue whose every command is durable (after recovery, say).

        `candles` and `tape` (restored from the snapshot and the journal) go on from where
        they were, and each ticker's 24 h window is rebuilt from the candles, so it agrees
        with REST's.
        """
        market_data = cls(epoch, candles, tape)
        for market in venue.markets.values():
            kept = market_data._list(market.spec, market.status, venue.ts_us)
            symbol = market.spec.symbol
            kept.ticker.rebuild(
                market_data.candles.minutes(symbol), market_data.candles.last(symbol)
            )
            kept.reference_price = market.reference_price
            kept.matured = market.matured
            kept.start_instrument(venue.ts_us)
            for order in market.book.iter_orders():
                market_data._rest(kept, order.order_id, order.side, order.price, order.leaves_qty)
            kept.bids.settle()
            kept.asks.settle()
            kept.bbo.value = kept.bbo_value()
        market_data._touched.clear()
        return market_data

    # ----------------------------------------------------------------- input

    def on_events(self, events: Iterable[Event]) -> None:
        """Apply durable engine events; what they change goes out at the next `flush`.

        The four events of the trading path (amends, accepts, trades, cancels) are handled
        here, inline, rather than by a method each: per event that saves a handler looked up
        in a dict and a call (~25 bytecodes of the ~75 a requote's amend cost; a trade's
        too), and the maps are loaded once per command; the ledger's events, as many again
        (most of a trade's), are passed over at the first test. The rarer ones go to their
        methods in `_handlers`.
        (Bytecodes are not instructions: `type(event)` is a specialised call, cheaper than
        `event.__class__`; filtering the ledger's events out with `compress` and `map`, a
        defaultdict's `+=` and a diff by set differences each cut bytecodes and cost more
        instructions, callgrind.)"""
        orders = self._orders
        touched = self._touched
        markets = self._markets
        event: Any  # its class is tested by `is` on a local, which mypy does not narrow
        for event in events:
            kind = type(event)
            if kind is BalanceChanged or kind is TradeSettled:
                continue  # the ledger's, most of a trade's events: nothing public
            if kind is OrderAmended:  # a requoting maker's every command
                resting = orders.get(event.order_id)
                assert resting is not None, f"amended order {event.order_id} is not in the book"
                delta = resting.levels.delta
                delta[resting.price] = delta.get(resting.price, 0) - resting.leaves
                leaves = event.leaves_qty
                if leaves:
                    price = resting.price = event.price
                    resting.leaves = leaves
                    delta[price] = delta.get(price, 0) + leaves
                else:
                    del orders[event.order_id]
                if event.symbol not in touched:  # see `_BOOK`: no flag added to a touched one
                    touched[event.symbol] = _BOOK
            elif kind is TradeExecuted:  # both sides' fills, the tape, candles, reference
                maker = orders.get(event.maker_order_id)
                if maker is not None:
                    delta = maker.levels.delta
                    price = maker.price
                    leaves = event.maker_leaves_qty
                    delta[price] = delta.get(price, 0) - (maker.leaves - leaves)
                    if leaves:
                        maker.leaves = leaves
                    else:
                        del orders[event.maker_order_id]
                taker = orders.get(event.taker_order_id)  # a gtc or gtd limit order rests
                if taker is not None:
                    delta = taker.levels.delta
                    price = taker.price
                    leaves = event.taker_leaves_qty
                    delta[price] = delta.get(price, 0) - (taker.leaves - leaves)
                    if leaves:
                        taker.leaves = leaves
                    else:
                        del orders[event.taker_order_id]
                symbol = event.symbol
                market = markets[symbol]
                market.pending.append(event)
                market.waiting.append(event)  # the candles' (see `Candles.waiting`)
                price = event.price
                if market.reference_price == price:
                    touched[symbol] = touched.get(symbol, 0) | _BOOK_TRADES
                else:  # the engine's band follows the last trade
                    market.reference_price = price
                    touched[symbol] = touched.get(symbol, 0) | _BOOK_TRADES | _REFERENCE
            elif kind is OrderAccepted:
                if event.order_type is not _LIMIT_ORDER or (
                    event.tif is not _GTC and event.tif is not _GTD
                ):
                    continue  # never rests; its trades are seen from the makers' side
                # It rests at once with its whole quantity; the trades, cancels and expiries
                # that follow in the same command take out what does not stay, before any
                # flush.
                symbol = event.symbol
                market = markets[symbol]
                levels = market.bids if event.side is _BUY else market.asks
                price = event.price
                orders[event.order_id] = _Resting(levels, price, event.qty)
                delta = levels.delta
                delta[price] = delta.get(price, 0) + event.qty
                if symbol not in touched:
                    touched[symbol] = _BOOK
            elif kind is OrderCanceled or kind is OrderExpired or kind is SelfTradePrevented:
                resting = orders.pop(event.order_id, None)
                if resting is not None:
                    delta = resting.levels.delta
                    delta[resting.price] = delta.get(resting.price, 0) - resting.leaves
                    if event.symbol not in touched:
                        touched[event.symbol] = _BOOK
            else:
                handler = self._handlers.get(kind)
                if handler is not None:
                    handler(event)

    def _settle(self) -> None:
        """The touched books take their summed changes (see `_Levels`): at the flush, so the
        changes of every command of a turn are applied together."""
        markets = self._markets
        touched = self._touched
        for symbol, flags in touched.items():
            market = markets[symbol]
            if market.bids.delta or market.asks.delta:
                touched[symbol] = flags | _BOOK  # settled here, still sent at the flush
            if market.bids.delta:
                market.bids.settle()
            if market.asks.delta:
                market.asks.settle()

    def tape_image(self) -> dict[str, Any]:
        """The tape as a snapshot keeps it: with the trades released but not yet flushed."""
        return self.tape.image({symbol: m.pending for symbol, m in self._markets.items()})

    def changed(self) -> bool:
        """Whether events fed since the last flush changed anything (the next flush looks)."""
        return bool(self._touched)

    def _market(self, symbol: str) -> _Market:
        market = self._markets.get(symbol)
        assert market is not None, f"an event for {symbol!r}, which was never listed"
        return market

    def _touch(self, symbol: str, flags: int) -> None:
        self._touched[symbol] = self._touched.get(symbol, 0) | flags

    def _list(self, spec: InstrumentSpec, status: InstrumentStatus, ts_us: int) -> _Market:
        assert spec.symbol not in self._markets, f"{spec.symbol} listed twice"
        waiting = self.candles.waiting(spec.symbol)
        recent = self.tape.recent(spec.symbol)
        market = self._markets[spec.symbol] = _Market(spec, status, ts_us, waiting, recent)
        return market

    def _rest(self, market: _Market, order_id: int, side: Side, price: int, qty: int) -> None:
        levels = market.levels(side)
        self._orders[order_id] = _Resting(levels, price, qty)
        levels.add(price, qty)

    def _listed(self, event: InstrumentListed) -> None:
        self._list(event.spec, InstrumentStatus.OPEN, event.ts_us)
        self._touch(event.spec.symbol, _REFERENCE)

    def _status_changed(self, event: InstrumentStatusChanged) -> None:
        self._market(event.symbol).status = event.status
        self._touch(event.symbol, _REFERENCE)

    def _matured(self, event: InstrumentMatured) -> None:
        """A bill redeemed at par (at its maturity or early): no yield from now on, on the
        instruments stream nor the ticker, whatever days its date still counts."""
        self._market(event.symbol).matured = True
        self._touch(event.symbol, _REFERENCE | _WINDOW)

    def _reference_set(self, event: ReferencePriceSet) -> None:
        self._market(event.symbol).reference_price = event.price
        self._touch(event.symbol, _REFERENCE)

    def _caps_set(self, event: OrderCapsSet) -> None:
        market = self._market(event.symbol)
        market.spec = msgspec.structs.replace(
            market.spec, max_qty=event.max_qty, max_notional=event.max_notional
        )
        self._touch(event.symbol, _REFERENCE)

    def _split(self, event: SharesSplit) -> None:
        """Past prices and volumes of every market of the asset in post-split units: the
        candles, and the ticker's window in place, each with this turn's trades before the
        split (in pre-split units, as if they had been flushed in a turn of their own; the
        tape still publishes them at the flush, at their prices). Each candles stream's
        seq moves with no update: a subscriber sees the gap and subscribes again for the
        rescaled bars (the client rule)."""
        new, old = event.ratio_new, event.ratio_old
        for symbol, market in self._markets.items():
            if market.spec.base != event.asset:
                continue
            self.candles.split(symbol, new, old, market.spec.price_tick)  # its `waiting` too
            if len(market.pending) > market.ticked:
                market.ticker.add_trades(market.pending[market.ticked :])
                market.ticked = len(market.pending)
            market.ticker.split(new, old, market.spec.price_tick)
            for state in market.candles.values():
                state.advance(state.value, event.ts_us)
            self._touch(symbol, _WINDOW)

    # ----------------------------------------------------------------- output

    def flush(self, now_us: int, wanted: Container[Stream]) -> list[Message]:
        """One message per stream in `wanted` that changed since the last flush.

        `wanted` holds the streams that have subscribers. Only symbols touched since the
        last flush are looked at. Per symbol the order is instruments, trades, book (tiers
        ascending), bbo, ticker. A book stream not wanted at a flush that changes its symbol
        stops being kept; its next snapshot starts it again at a new seq.
        """
        minute = now_us // MINUTE_US
        if minute != self._minute:
            self._minute = minute
            for symbol, market in self._markets.items():
                if market.ticker.expire(now_us):
                    self._touch(symbol, _WINDOW)
                if market.spec.kind is InstrumentKind.TBILL:  # days to maturity tick down
                    self._touch(symbol, _REFERENCE | _WINDOW)
        out: list[Message] = []
        markets = self._markets
        for symbol, flags in self._touched.items():
            market = markets[symbol]
            if flags == _BOOK:  # the usual turn: orders came, went or moved; none traded
                self._flush_book(market, now_us, wanted, out)
                continue
            if not flags & _BOOK and (market.bids.delta or market.asks.delta):
                flags |= _BOOK  # a book change after the turn's first event, of another kind
            if flags & _REFERENCE:
                self._flush_instrument(market, now_us, wanted, out)
            if flags & _TRADES:
                self._flush_trades(market, now_us, wanted, out)
            if flags & _BOOK:
                self._flush_book(market, now_us, wanted, out)
            if flags & (_TRADES | _WINDOW):
                self._flush_ticker(market, now_us, wanted, out)
            if flags & _TRADES:
                self._flush_candles(market, now_us, wanted, out)
        self._touched.clear()
        return out

    def _encode(self, state: _State, kind: str, ts_us: int, data: Any) -> bytes:
        stream = state.stream
        body: dict[str, Any] = {"ch": str(stream.channel), "sym": stream.symbol}
        if stream.channel == Channel.BOOK:
            body["depth"] = stream.depth
        elif stream.channel == Channel.CANDLES:
            body["interval"] = stream.interval
        body["type"] = kind
        body["epoch"] = self.epoch
        if stream.channel != Channel.TICKER:
            body["seq"] = state.seq
            if kind == "update":
                body["prev_seq"] = state.seq - 1
        body["ts"] = ts_us
        body["data"] = data
        return orjson.dumps(body)

    def _update(self, state: _State, now_us: int, data: Any) -> Message:
        """An update, its keys as `_encode`'s (orjson writes no spaces): the fixed ones are
        encoded once per stream, which saves a dict of eight keys and their encoding, and
        the rest filled in by one bytes `%` (half the cost of an f-string encoded and two
        concatenations)."""
        template = state.template or self._template(state)
        seq = state.seq
        if state.sequenced:
            payload = template % (seq, seq - 1, now_us, orjson.dumps(data))
        else:
            payload = template % (now_us, orjson.dumps(data))
        return _new_message(Message, (state.stream, seq, payload))

    def _template(self, state: _State) -> bytes:
        """`{"ch":..,"sym":..,[depth|interval],"type":"update","epoch":E` then `_UPDATE` (or
        `_TICKER_UPDATE`); a JSON string holds no unescaped quote, so the first `,"seq":` is
        the key's, and a `%` in the head is doubled so that it stays itself."""
        follows = b',"seq":' if state.sequenced else b',"ts":'
        head = self._encode(state, "update", 0, None).partition(follows)[0]
        rest = _UPDATE if state.sequenced else _TICKER_UPDATE
        state.template = head.replace(b"%", b"%%") + rest
        return state.template

    def _flush_instrument(
        self, market: _Market, now_us: int, wanted: Container[Stream], out: list[Message]
    ) -> None:
        kept = market.instrument_inputs
        if (
            market.reference_price == kept.reference_price
            and market.status is kept.status
            and market.spec == kept.spec
            and (market.spec.kind is not InstrumentKind.TBILL or kept.day == now_us // DAY_US)
            and not (market.matured and kept.bill_yield is not None)  # (matured: no yield)
        ):
            return  # the usual way out: no tuple built to compare
        inputs = market.instrument_inputs = _reference_inputs(market, now_us)
        if inputs.same_value(kept):
            return
        state = market.instrument
        if state.stream in wanted:
            value = _reference(inputs)
            state.advance(value, now_us)
            out.append(self._update(state, now_us, value))
        else:  # the seq moves; the value is built if a snapshot asks for it
            state.advance(None, now_us)

    def _flush_trades(
        self, market: _Market, now_us: int, wanted: Container[Stream], out: list[Message]
    ) -> None:
        trades = market.pending
        market.pending = []
        if market.ticked:  # a split of this turn put the trades before it in the ticker
            trades_after = trades[market.ticked :]
            market.ticked = 0
            if trades_after:
                market.ticker.add_trades(trades_after)
        elif trades:
            market.ticker.add_trades(trades)
        market.recent.extend(trades)  # formatted only if a snapshot shows them
        state = market.trades
        # The seq moves whether or not anyone watches, so a seq names one tape.
        if state.stream not in wanted:  # nothing is formatted
            for _ in range(0, len(trades), TRADES_PER_MESSAGE_MAX):
                state.advance(None, now_us)
            return
        rows = _trade_rows(trades, market)
        if 0 < len(trades) <= TRADES_PER_MESSAGE_MAX:  # the usual turn: one message, no slice
            state.advance(None, now_us)
            out.append(self._update(state, now_us, rows))
            return
        for start in range(0, len(trades), TRADES_PER_MESSAGE_MAX):
            state.advance(None, now_us)
            out.append(self._update(state, now_us, rows[start : start + TRADES_PER_MESSAGE_MAX]))

    def _flush_book(
        self, market: _Market, now_us: int, wanted: Container[Stream], out: list[Message]
    ) -> None:
        """The book's summed changes settle (see `_Levels`), then the tiers' updates go out
        (ascending) and bbo's, which reads the best levels the tiers took."""
        bid_levels, ask_levels = market.bids, market.asks
        if bid_levels.delta:
            bid_levels.settle()
        if ask_levels.delta:
            ask_levels.settle()
        live: list[_State] = []
        for state in market.books.values():  # (`map(wanted.__contains__, ...)`: more instr.)
            if state.stream in wanted:
                live.append(state)
            elif state.value is not None:  # no one follows it: stop keeping its levels
                state.value = None
                state.cache = None
        if live:
            bids, asks = self._flush_tiers(market, live, now_us, out)
            bbo = (bids[0] if bids else None, asks[0] if asks else None)
        else:
            bbo = market.bbo_value()
        state = market.bbo
        if bbo != state.value:
            state.seq += 1  # `advance`, inlined: a call saved per move of the best levels
            state.value = bbo
            state.ts_us = now_us
            state.cache = None
            if state.stream in wanted:
                out.append(self._update(state, now_us, _bbo_data(bbo, market)))

    def _flush_tiers(
        self, market: _Market, live: list[_State], now_us: int, out: list[Message]
    ) -> tuple[list[Level], list[Level]]:
        """An update per followed tier that changed; the deepest tier's levels, returned."""
        deepest = live[-1].stream.depth
        bid_levels, ask_levels = market.bids, market.asks
        bids = bid_levels.depth(deepest)
        asks = ask_levels.depth(deepest)
        checksum: int | None = None
        for state in live:
            depth = state.stream.depth
            if depth == deepest:  # the usual single tier: `depth` cut the lists to it
                now_bids, now_asks = bids, asks
            else:
                now_bids = bids if len(bids) <= depth else bids[:depth]
                now_asks = asks if len(asks) <= depth else asks[:depth]
            if state.value is None:
                # Wanted but never snapshotted: no subscriber can hold its state, so it
                # starts silently; its first subscriber's snapshot shows it.
                state.advance((now_bids, now_asks), now_us)
                continue
            before_bids, before_asks = state.value
            # a side whose best levels were not touched is the very list the tier holds
            bid_changes = (
                [] if before_bids is now_bids else bid_levels.changes(before_bids, now_bids)
            )
            ask_changes = (
                [] if before_asks is now_asks else ask_levels.changes(before_asks, now_asks)
            )
            if not bid_changes and not ask_changes:
                continue  # the change was deeper than this tier
            if checksum is None:
                checksum = _checksum(market)
            state.seq += 1  # `advance`, inlined: a call saved per message
            state.value = (now_bids, now_asks)
            state.ts_us = now_us
            state.cache = None
            data = {
                "bids": _rows(bid_changes, market) if bid_changes else bid_changes,
                "asks": _rows(ask_changes, market) if ask_changes else ask_changes,
                "checksum": checksum,
            }
            out.append(self._update(state, now_us, data))
        return bids, asks

    def _flush_ticker(
        self, market: _Market, now_us: int, wanted: Container[Stream], out: list[Message]
    ) -> None:
        state = market.ticker_state
        if state.stream not in wanted:
            state.value = None
            return
        data = market.ticker.data(market.spec, now_us, market.matured)
        if data != state.value:
            state.value = data
            out.append(self._update(state, now_us, data))

    def _flush_candles(
        self, market: _Market, now_us: int, wanted: Container[Stream], out: list[Message]
    ) -> None:
        """Every interval's bars changed (a trade is in each): the seq moves whether or not
        anyone watches; an update holds the bars from the one current at the last flush on.
        The trades wait to join the bars until one is read or many wait (`Candles.waiting`)."""
        if len(market.waiting) >= TRADES_WAITING_MAX:
            self.candles.catch_up(market.spec.symbol)
        for interval, state in market.candles.items():
            if state.stream not in wanted:  # the seq moves; the bars are not even looked at
                state.seq += 1  # `advance` with the same value, inlined: 4 calls a trade turn
                state.ts_us = now_us
                state.cache = None
                continue
            bars = self.candles.bars(market.spec.symbol, interval, 2)
            since_us = state.value
            state.advance(bars[-1][0], now_us)
            shown = [bar for bar in bars if bar[0] >= since_us] or bars[-1:]
            out.append(
                self._update(state, now_us, self._candles_data(market.spec, interval, shown))
            )

    def _candles_data(self, spec: InstrumentSpec, interval: str, bars: list[list[int]]) -> Any:
        result = CandlesResult(spec.symbol, interval, [candle(bar, spec) for bar in bars])
        return msgspec.to_builtins(result)

    # ----------------------------------------------------------------- queries

    def problem(self, stream: Stream, symbol_at: str | None = None) -> str | None:
        """Why `stream` cannot be subscribed to, or None. An unknown symbol's words end with
        its place when the query says where it is (`symbol_at`: `params.symbols[1]`, as
        a command's refusal does since session 30)."""
        if stream.channel not in CHANNELS:
            return f"unknown channel {stream.channel!r}"
        if stream.symbol not in self._markets:
            words = unknown_symbol(stream.symbol, self._markets)
            return words if symbol_at is None else f"{words} - at `{symbol_at}`"
        if stream.channel == Channel.BOOK:
            if stream.depth not in BOOK_DEPTHS:
                return f"depth must be one of {', '.join(map(str, BOOK_DEPTHS))}"
        elif stream.depth:
            return "depth applies to the book channel only"
        if stream.channel == Channel.CANDLES:
            if stream.interval not in INTERVALS_US:
                return f"interval must be one of {', '.join(INTERVALS_US)}"
        elif stream.interval:
            return "interval applies to the candles channel only"
        return None

    def snapshot(self, stream: Stream, now_us: int) -> Message:
        """The state of `stream` as of its current seq, for a new subscriber.

        It is the state as of the last flush (or, for a book nobody followed, as of now
        under a new seq); the stream's next update continues it. Encoded once per seq.
        """
        problem = self.problem(stream)
        if problem is not None:
            raise ValueError(problem)
        market = self._markets[stream.symbol]
        spec = market.spec
        channel = stream.channel
        if channel == Channel.TICKER:
            if market.ticker.expire(now_us):
                self._touch(stream.symbol, _WINDOW)  # the other subscribers hear of it too
            ticker = market.ticker.data(spec, now_us, market.matured)
            return Message(stream, 0, self._encode(market.ticker_state, "snapshot", now_us, ticker))
        state = self._state(stream)
        if channel == Channel.BOOK and state.value is None:
            depth = stream.depth  # no one followed it: start from the shadow book now
            self._settle()  # with the changes fed since the last flush
            state.advance((market.bids.depth(depth), market.asks.depth(depth)), now_us)
        elif channel == Channel.INSTRUMENTS and state.value is None:  # moved unfollowed
            state.value = _reference(market.instrument_inputs)
        if state.cache is None:
            data: Any = state.value
            if channel == Channel.BOOK:
                bid_rows = _rows(state.value[0], market)
                ask_rows = _rows(state.value[1], market)
                checksum = book_checksum(bid_rows, ask_rows)
                data = {"bids": bid_rows, "asks": ask_rows, "checksum": checksum}
            elif channel == Channel.TRADES:
                data = _trade_rows(market.recent, market)
            elif channel == Channel.BBO:
                data = _bbo_data(state.value, market)
            elif channel == Channel.CANDLES:
                bars = self.candles.bars(spec.symbol, stream.interval, SNAPSHOT_BARS)
                data = self._candles_data(spec, stream.interval, bars)
            state.cache = self._encode(state, "snapshot", state.ts_us, data)
        return Message(stream, state.seq, state.cache)

    def _state(self, stream: Stream) -> _State:
        market = self._markets[stream.symbol]
        channel = stream.channel
        if channel == Channel.BOOK:
            return market.books[stream.depth]
        if channel == Channel.TRADES:
            return market.trades
        if channel == Channel.BBO:
            return market.bbo
        if channel == Channel.INSTRUMENTS:
            return market.instrument
        if channel == Channel.CANDLES:
            return market.candles[stream.interval]
        return market.ticker_state

    def seq(self, stream: Stream) -> int:
        """The seq of the stream's last message (0 before any, and always on `ticker`)."""
        return 0 if stream.channel == Channel.TICKER else self._state(stream).seq

    def heartbeat(self, now_us: int, streams: Iterable[Stream]) -> bytes:
        """What a connection gets after 1 s of silence: the last seq of each subscription.

        `{"ch": "heartbeat", "epoch": E, "ts": µs, "seqs": {"book:AAPLx-USD:10": 123, ...}}`;
        `ticker` subscriptions have no seq and are left out.
        """
        seqs = {s.name: self.seq(s) for s in streams if s.channel != Channel.TICKER}
        return orjson.dumps({"ch": "heartbeat", "epoch": self.epoch, "ts": now_us, "seqs": seqs})

    def check_invariants(self) -> None:
        """Assert the shadow books are sound; after a flush, every kept tier is current."""
        totals: dict[tuple[int, int], int] = {}
        for resting in self._orders.values():
            assert resting.leaves > 0, "a resting order with nothing left"
            key = (id(resting.levels), resting.price)
            totals[key] = totals.get(key, 0) + resting.leaves
        for symbol, market in self._markets.items():
            for levels in (market.bids, market.asks):
                assert not levels.delta, f"{symbol}: changes left unsettled after a flush"
                levels.check_remembered()
                keys = sorted(price * levels.sign for price in levels.qty)
                assert levels.keys == keys, f"{symbol}: keys and levels differ"
                for price, qty in levels.qty.items():
                    assert qty > 0, f"{symbol}: empty level {price}"
                    assert totals.get((id(levels), price)) == qty, f"{symbol}: level {price}"
            bid, ask = market.bbo_value()
            assert bid is None or ask is None or bid[0] < ask[0], f"{symbol}: book crossed"
            if self._touched:
                continue
            assert not market.pending and not market.ticked, f"{symbol}: trades left unflushed"
            for depth, state in market.books.items():
                if state.value is not None:
                    current = (market.bids.depth(depth), market.asks.depth(depth))
                    assert state.value == current, f"{symbol}: tier {depth} is stale"


def _bbo_data(value: tuple[Level | None, Level | None], market: "_Market") -> dict[str, Any]:
    bid, ask = value
    rows = market.level_rows  # a best level is never empty: its row is [price, qty]
    return {"bid": None if bid is None else rows[bid], "ask": None if ask is None else rows[ask]}


# ----------------------------------------------------------------- the client side


class BookSync(StrEnum):
    """What applying a `book` message to a `LocalBook` did."""

    APPLIED = "applied"
    STALE_IGNORED = "stale_ignored"  # an update at or before the local seq: already in
    AWAITING_SNAPSHOT = "awaiting_snapshot"  # out of sync: updates wait for a snapshot
    SEQ_GAP = "seq_gap"  # prev_seq is not the local seq: a message was missed
    EPOCH_CHANGED = "epoch_changed"  # the venue restarted: seqs start over
    CHECKSUM_MISMATCH = "checksum_mismatch"  # the local book differs from the venue's

    @property
    def resync(self) -> bool:
        """Whether the subscriber must resubscribe and start from a new snapshot."""
        # While awaiting a snapshot the resync is already under way: ask for it only once.
        return self not in (BookSync.APPLIED, BookSync.STALE_IGNORED, BookSync.AWAITING_SNAPSHOT)


class LocalBook:
    """A subscriber's copy of one (symbol, depth) book stream, checked after every message.

    Levels are kept as the decimal strings received, ordered by their value.
    """

    def __init__(self, symbol: str, depth: int) -> None:
        self.symbol = symbol
        self.depth = depth
        self.epoch = 0
        self.seq = 0
        self.synced = False
        self._bids = SortedDict()  # -price -> (price, qty): the best bid first
        self._asks = SortedDict()  # price -> (price, qty): the best ask first

    def bids(self) -> list[tuple[str, str]]:
        return list(self._bids.values())

    def asks(self) -> list[tuple[str, str]]:
        return list(self._asks.values())

    def checksum(self) -> int:
        return book_checksum(self._bids.values(), self._asks.values())

    def apply(self, message: Mapping[str, Any]) -> BookSync:
        """Apply a decoded `book` message of this stream; say what happened."""
        if (message["ch"], message["sym"], message["depth"]) != ("book", self.symbol, self.depth):
            raise ValueError("the message belongs to another stream")
        data = message["data"]
        if message["type"] == "snapshot":
            self._bids.clear()
            self._asks.clear()
            self.epoch = message["epoch"]
            self.synced = True
        elif not self.synced:
            return BookSync.AWAITING_SNAPSHOT
        elif message["epoch"] != self.epoch:
            self.synced = False
            return BookSync.EPOCH_CHANGED
        elif message["seq"] <= self.seq:
            return BookSync.STALE_IGNORED
        elif message["prev_seq"] != self.seq:
            self.synced = False
            return BookSync.SEQ_GAP
        _apply_rows(self._bids, data["bids"], -1, self.depth)
        _apply_rows(self._asks, data["asks"], 1, self.depth)
        self.seq = message["seq"]
        if self.checksum() != data["checksum"]:
            self.synced = False
            return BookSync.CHECKSUM_MISMATCH
        return BookSync.APPLIED


def _apply_rows(side: Any, rows: Iterable[Sequence[str]], sign: int, depth: int) -> None:
    for price, qty in rows:
        key = Decimal(price) * sign
        if Decimal(qty):
            side[key] = (price, qty)
        else:
            side.pop(key, None)
    while len(side) > depth:  # the server sends the push-outs; this only bounds a bad peer
        side.popitem()
