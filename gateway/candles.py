"""Candles: OHLCV bars at 1m, 5m, 1h and 1d built from the venue's own durable trades.

Owns the bars of every symbol and interval (integers: price and quantity units, the bar's
open time in µs), the 24 h ticker the REST API reads off the 1-minute bars, the bar shape on
the wire (`{"t": open_ms, "o", "h", "l", "c", "v"}`, decimal strings) and the image that a
snapshot keeps. Fed by `gateway.market_data` with the durable trades (appended to a list per
symbol, `waiting`, and added in one pass when read or when many wait), and on restart rebuilt
as snapshot image + journal replay (the server's `_restore` and `_replayed`), so candles
survive restarts exactly as the trades that made them. A bar exists only for an interval
that had a trade. A split rescales the symbol's bars (`split`), live, in replay alike.
Limits: BARS_KEPT_MAX bars per symbol and interval, oldest dropped; TRADES_WAITING_MAX trades
waiting per symbol.
"""

from collections import deque
from itertools import islice
from typing import Any

import msgspec

from engine.events import TradeExecuted
from engine.instrument import InstrumentSpec
from engine.units import INT64_MAX, format_units

INTERVALS_US = {  # the wire's names, oldest first is each series' order
    "1m": 60_000_000,
    "5m": 300_000_000,
    "1h": 3_600_000_000,
    "1d": 86_400_000_000,
}
BARS_KEPT_MAX = 1_440  # a day of 1m, five days of 5m, two months of 1h, four years of 1d
CANDLES_LIMIT_DEFAULT = 500  # a chart's width in bars
SNAPSHOT_BARS = 500  # a channel snapshot: a chart's worth, not the whole history
# a symbol's trades that may wait to join its bars (`Candles.waiting`): many per pass, little
# memory (the trades themselves are the events the publisher keeps anyway for a turn)
TRADES_WAITING_MAX = 1_000
TICKER_WINDOW_BARS = 1_440  # the 24 h ticker: the current minute and the 1,439 before it
CHANGE_PCT_DECIMALS = 2
US_PER_MS = 1_000

Bar = list[int]  # [open_us, open, high, low, close, volume]: price and quantity units


class Candle(msgspec.Struct, frozen=True):
    """One bar on the wire: open time (ms) and OHLCV as decimal strings."""

    t: int
    o: str
    h: str
    l: str  # noqa: E741 - the wire's name, as every exchange spells it
    c: str
    v: str


class CandlesResult(msgspec.Struct, frozen=True):
    """`GET /api/v1/candles` and the `candles` channel's `data`: bars oldest first."""

    symbol: str
    interval: str
    candles: list[Candle]


class Ticker(msgspec.Struct, frozen=True):
    """A symbol's last price and its 24 h window; None where the window had no trade."""

    symbol: str
    last: str | None
    open: str | None
    high: str | None
    low: str | None
    volume: str
    change: str | None
    change_pct: str | None
    trades: int


class _Current:
    """A symbol's bars that take its next trade, while it falls in the same minute: a
    minute lies within one bar of every longer interval, so one test covers them all.

    A trade updates the minute's bar and a trade count only; the longer bars, the count of
    the ticker's window and the last price are brought up to it (`Candles._sync`) before
    anything reads them: the minute lies within each longer bar, so its high, low and close
    are theirs too, and its volume adds to what each held before the minute. That saves
    three bars' updates a trade (most of `add`'s work on the publishing path).
    """

    __slots__ = ("bars", "before", "count", "end_us", "start_us", "trades")

    def __init__(self, start_us: int, bars: list[Bar], count: list[int]) -> None:
        self.start_us = start_us
        self.end_us = start_us + INTERVALS_US["1m"]
        self.bars = bars  # the newest bar of each interval, the minute's first
        self.count = count  # [minute, trades] of the ticker's window
        # the minute's trades not yet in `count`: while any, the longer bars, `count` and
        # the last price lag the minute's
        self.trades = 0
        minute = bars[0]
        self.before = [bar[5] - minute[5] for bar in bars[1:]]  # their volume before it

    def sync(self) -> None:
        """Bring the longer bars and the trade count up to the minute's."""
        minute = self.bars[0]
        high, low, close, volume = minute[2], minute[3], minute[4], minute[5]
        for bar, before in zip(self.bars[1:], self.before, strict=True):
            if high > bar[2]:
                bar[2] = high
            if low < bar[3]:
                bar[3] = low
            bar[4] = close
            bar[5] = before + volume
        self.count[1] += self.trades
        self.trades = 0


class Candles:
    """Every symbol's bars, per interval, and its trade counts per minute."""

    def __init__(self) -> None:
        self._series: dict[tuple[str, str], deque[Bar]] = {}
        self._trades: dict[str, deque[list[int]]] = {}  # symbol -> [minute, trades] for 24 h
        self._last: dict[str, int] = {}  # symbol -> last trade price
        self._current: dict[str, _Current] = {}  # derived: rebuilt by the next trade
        # symbol -> the publisher's durable trades not yet in the bars (`waiting`); each list
        # is kept for good (the publisher holds it) and emptied in place
        self._waiting: dict[str, list[TradeExecuted]] = {}

    def waiting(self, symbol: str) -> list[TradeExecuted]:
        """Where the publisher appends `symbol`'s durable trades, oldest first, instead of
        calling `add` for each: they join the bars in one pass (`catch_up`), before anything
        reads the bars or the image, or when TRADES_WAITING_MAX wait (the publisher's)."""
        waiting = self._waiting.get(symbol)
        if waiting is None:
            waiting = self._waiting[symbol] = []
        return waiting

    def catch_up(self, symbol: str) -> None:
        """The trades waiting for `symbol` join its bars, as one `add` each would: a trade
        in the current minute (nearly all) updates its bar inline, the trade count once."""
        waiting = self._waiting.get(symbol)
        if not waiting:
            return
        current = self._current.get(symbol)
        bar: Bar = []
        start_us = end_us = price = 0  # no current minute: the next trade takes `_add`'s way
        if current is not None:
            bar, start_us, end_us = current.bars[0], current.start_us, current.end_us
        counted = 0  # trades in `bar` not yet in `current.trades`
        for trade in waiting:
            if start_us <= trade.ts_us < end_us:
                price = trade.price
                if price > bar[2]:
                    bar[2] = price
                elif price < bar[3]:  # high >= low: a price is never beyond both
                    bar[3] = price
                bar[5] += trade.qty
                counted += 1
                continue
            if counted:  # a new minute (or a clock step back): the last one's close first
                assert current is not None
                bar[4] = price
                current.trades += counted
                counted = 0
            self._add(symbol, trade.ts_us, trade.price, trade.qty)
            current = self._current.get(symbol)
            if current is not None:
                bar, start_us, end_us = current.bars[0], current.start_us, current.end_us
        if counted:
            assert current is not None
            bar[4] = price  # also the last price, which `_sync_longer` copies
            current.trades += counted  # also marks the longer bars stale
        waiting.clear()

    def add(self, symbol: str, ts_us: int, price: int, qty: int) -> None:
        """One durable trade (replay's way; the publisher's are `waiting`)."""
        self.catch_up(symbol)
        self._add(symbol, ts_us, price, qty)

    def _add(self, symbol: str, ts_us: int, price: int, qty: int) -> None:
        """One trade, after those waiting: the same minute takes the fast way."""
        current = self._current.get(symbol)
        if current is not None and current.start_us <= ts_us < current.end_us:
            bar = current.bars[0]  # the minute's; the longer ones follow at `sync`
            if price > bar[2]:
                bar[2] = price
            elif price < bar[3]:  # high >= low: a price is never beyond both
                bar[3] = price
            bar[4] = price  # also the last price, which `_sync` copies (a dict store saved)
            bar[5] += qty
            current.trades += 1  # also marks the longer bars stale (`_sync`)
            return
        self._sync_longer(symbol)
        bars = [self._add_to(symbol, interval, ts_us, price, qty) for interval in INTERVALS_US]
        counts = self._trades.get(symbol)
        if counts is None:
            counts = self._trades[symbol] = deque(maxlen=TICKER_WINDOW_BARS)
        minute = ts_us // INTERVALS_US["1m"]
        if counts and counts[-1][0] >= minute:
            counts[-1][1] += 1
        else:
            counts.append([minute, 1])
        self._last[symbol] = price
        if bars[0][0] == minute * INTERVALS_US["1m"]:  # not a clock step back
            self._current[symbol] = _Current(bars[0][0], bars, counts[-1])

    def _add_to(self, symbol: str, interval: str, ts_us: int, price: int, qty: int) -> Bar:
        key = (symbol, interval)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = deque(maxlen=BARS_KEPT_MAX)
        open_us = ts_us - ts_us % INTERVALS_US[interval]
        if series and series[-1][0] >= open_us:  # same bar (or a clock step back: kept)
            bar = series[-1]
            bar[2] = max(bar[2], price)
            bar[3] = min(bar[3], price)
            bar[4] = price
            bar[5] += qty
        else:
            bar = [open_us, price, price, price, price, qty]
            series.append(bar)
        return bar

    def _sync(self, symbol: str) -> None:
        """The symbol's bars, trade count and last price brought up to its every durable
        trade: what waits is added, then `_sync_longer`."""
        self.catch_up(symbol)
        self._sync_longer(symbol)

    def _sync_longer(self, symbol: str) -> None:
        """The symbol's longer bars, trade count and last price brought up to its current
        minute (see `_Current`)."""
        current = self._current.get(symbol)
        if current is not None and current.trades:
            current.sync()
            self._last[symbol] = current.bars[0][4]

    def bars(self, symbol: str, interval: str, limit: int) -> list[Bar]:
        """The newest `limit` bars, oldest first."""
        self._sync(symbol)
        series = self._series.get((symbol, interval), deque())
        return [list(bar) for bar in islice(series, max(0, len(series) - limit), None)]

    def result(self, spec: InstrumentSpec, interval: str, limit: int) -> CandlesResult:
        bars = self.bars(spec.symbol, interval, limit)
        return CandlesResult(spec.symbol, interval, [candle(bar, spec) for bar in bars])

    def ticker(self, spec: InstrumentSpec, now_us: int) -> Ticker:
        """The last price and the 24 h window (the current minute and the 1,439 before it)."""
        symbol = spec.symbol
        self._sync(symbol)
        first_minute = now_us // INTERVALS_US["1m"] - TICKER_WINDOW_BARS + 1
        first_us = first_minute * INTERVALS_US["1m"]
        window = [b for b in self._series.get((symbol, "1m"), ()) if b[0] >= first_us]
        trades = sum(n for minute, n in self._trades.get(symbol, ()) if minute >= first_minute)
        last = self._last.get(symbol)
        pd = spec.price_decimals
        volume = format_units(sum(b[5] for b in window), spec.qty_decimals)
        last_text = None if last is None else format_units(last, pd)
        if not window or last is None:
            return Ticker(symbol, last_text, None, None, None, volume, None, None, 0)
        opened = window[0][1]
        change = last - opened
        # percent of the open at CHANGE_PCT_DECIMALS, rounded half up, in integers: exact
        scaled = 2 * change * 100 * 10**CHANGE_PCT_DECIMALS
        pct = (scaled + opened) // (2 * opened) if opened else 0
        return Ticker(
            symbol,
            last_text,
            format_units(opened, pd),
            format_units(max(b[2] for b in window), pd),
            format_units(min(b[3] for b in window), pd),
            volume,
            format_units(change, pd),
            format_units(pct, CHANGE_PCT_DECIMALS),
            trades,
        )

    def minutes(self, symbol: str) -> list[list[int]]:
        """The 1-minute bars as the `ticker` channel's buckets, oldest first:
        [minute, high, low, volume, trades] (what it rebuilds its 24 h window from)."""
        self._sync(symbol)
        counts = {minute: n for minute, n in self._trades.get(symbol, ())}
        minute_us = INTERVALS_US["1m"]
        return [
            [bar[0] // minute_us, bar[2], bar[3], bar[5], counts.get(bar[0] // minute_us, 0)]
            for bar in self._series.get((symbol, "1m"), ())
        ]

    def last(self, symbol: str) -> int:
        """The last trade price, 0 before any."""
        self._sync(symbol)
        return self._last.get(symbol, 0)

    def split(self, symbol: str, ratio_new: int, ratio_old: int, tick: int) -> None:
        """Rescale the symbol's bars at an N:M split (`admin.split`), as the engine rescales
        the reference price: each price x M/N down to the tick (at least one tick), so high
        >= open, close >= low still hold; each volume x N/M rounded down to a unit (an
        order's `cum_qty` is rounded down to the qty step instead: a bar sums many trades)."""
        self._sync(symbol)
        self._current.pop(symbol, None)  # its volumes before the minute are rescaled too
        for interval in INTERVALS_US:
            for bar in self._series.get((symbol, interval), ()):
                bar[1:5] = [split_price(units, ratio_new, ratio_old, tick) for units in bar[1:5]]
                bar[5] = bar[5] * ratio_new // ratio_old
        if symbol in self._last:
            self._last[symbol] = split_price(self._last[symbol], ratio_new, ratio_old, tick)

    # ----------------------------------------------------------------- snapshots

    def image(self) -> dict[str, Any]:
        """Everything kept, as JSON-ready builtins (the snapshot's `gateway["candles"]`).

        A copy down to each bar: the snapshot is encoded later, on another thread, while
        trades go on changing the current bars in place (a shared bar would carry a trade
        the snapshot's seq does not include, and replay would count it twice)."""
        for symbol in self._waiting:
            self.catch_up(symbol)
        for symbol in self._current:
            self._sync_longer(symbol)
        # in key order: the bars' own order follows which symbol was read first (`catch_up`),
        # and the same trades must give the same image however they were read
        series, trades = self._series, self._trades
        return {
            "series": [[*key, [_bar_image(bar) for bar in series[key]]] for key in sorted(series)],
            "trades": [[s, [list(count) for count in trades[s]]] for s in sorted(trades)],
            "last": dict(self._last),
        }

    def restore(self, image: dict[str, Any] | None) -> None:
        """Take an `image()`; None (a snapshot from before candles) starts empty."""
        self._series, self._trades, self._last, self._current = {}, {}, {}, {}
        for waiting in self._waiting.values():  # replaced too; the lists are the publisher's
            waiting.clear()
        if image is None:
            return
        for symbol, interval, bars in image["series"]:
            for bar in bars:
                if type(bar[5]) is str:  # a volume past 64 bits (`_bar_image`)
                    bar[5] = int(bar[5])
            self._series[(symbol, interval)] = deque(bars, maxlen=BARS_KEPT_MAX)
        for symbol, counts in image["trades"]:
            self._trades[symbol] = deque(counts, maxlen=TICKER_WINDOW_BARS)
        self._last = {symbol: int(price) for symbol, price in image["last"].items()}


def _bar_image(bar: Bar) -> list[int | str]:
    """A copy of `bar` for a snapshot. Its volume is a sum of trades of up to `UNITS_MAX`
    each, so it can pass what msgpack's integers hold: such a volume goes as a decimal string
    (`restore` turns it back)."""
    if bar[5] <= INT64_MAX:
        return list(bar)
    return [*bar[:5], str(bar[5])]


def split_price(units: int, ratio_new: int, ratio_old: int, tick: int) -> int:
    """A past trade price after an N:M split: x M/N down to the tick, at least one tick
    (the engine's rule for the reference price, engine/splits.py)."""
    return max(units * ratio_old // (ratio_new * tick) * tick, tick)


def candle(bar: Bar, spec: InstrumentSpec) -> Candle:
    pd = spec.price_decimals
    open_us, o, h, low, c, v = bar
    return Candle(
        open_us // US_PER_MS,
        format_units(o, pd),
        format_units(h, pd),
        format_units(low, pd),
        format_units(c, pd),
        format_units(v, spec.qty_decimals),
    )
