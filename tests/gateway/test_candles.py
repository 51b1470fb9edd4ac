"""gateway.candles: bars per interval, the 24 h ticker, the snapshot image."""

import msgspec

from engine.enums import InstrumentKind, OrderStatus, Side
from engine.events import TradeExecuted
from engine.instrument import InstrumentSpec
from gateway.candles import BARS_KEPT_MAX, INTERVALS_US, Candles

MINUTE = INTERVALS_US["1m"]
DAY = INTERVALS_US["1d"]
T0 = 1_796_000_000 * 1_000_000 // DAY * DAY  # a UTC midnight, µs


def spec() -> InstrumentSpec:
    return InstrumentSpec(
        symbol="AAPLx-USD",
        kind=InstrumentKind.EQUITY,
        base="AAPLx",
        quote="USD",
        price_decimals=2,
        qty_decimals=6,
        price_tick=1,
        qty_step=1,
        min_qty=1,
        quote_decimals=6,
        min_notional=1,
        price_band_bps=1_000,
        reference_price=18_725,
    )


def test_a_trade_is_in_one_bar_of_every_interval() -> None:
    candles = Candles()
    candles.add("AAPLx-USD", T0 + 10, 18_730, 500_000)
    candles.add("AAPLx-USD", T0 + 20, 18_750, 250_000)
    candles.add("AAPLx-USD", T0 + 30, 18_720, 250_000)
    candles.add("AAPLx-USD", T0 + MINUTE + 5, 18_740, 100_000)
    one_minute = candles.result(spec(), "1m", 10)
    assert [msgspec.to_builtins(c) for c in one_minute.candles] == [
        {"t": T0 // 1000, "o": "187.30", "h": "187.50", "l": "187.20", "c": "187.20",
         "v": "1.000000"},
        {"t": (T0 + MINUTE) // 1000, "o": "187.40", "h": "187.40", "l": "187.40", "c": "187.40",
         "v": "0.100000"},
    ]  # fmt: skip
    for interval in ("5m", "1h", "1d"):
        [bar] = candles.result(spec(), interval, 10).candles
        assert (bar.t, bar.o, bar.h, bar.l, bar.c, bar.v) == (
            T0 // 1000,
            "187.30",
            "187.50",
            "187.20",
            "187.40",
            "1.100000",
        )
    assert len(candles.result(spec(), "1m", 1).candles) == 1  # the newest


def test_series_are_bounded_and_keep_the_newest() -> None:
    candles = Candles()
    for minute in range(BARS_KEPT_MAX + 10):
        candles.add("AAPLx-USD", T0 + minute * MINUTE, 18_700 + minute, 1)
    bars = candles.bars("AAPLx-USD", "1m", BARS_KEPT_MAX + 10)
    assert len(bars) == BARS_KEPT_MAX
    assert bars[0][0] == T0 + 10 * MINUTE and bars[-1][1] == 18_700 + BARS_KEPT_MAX + 9


def test_ticker_reads_the_24_hour_window() -> None:
    candles = Candles()
    candles.add("AAPLx-USD", T0, 20_000, 1_000_000)  # leaves the window below
    candles.add("AAPLx-USD", T0 + 2 * 60 * MINUTE, 18_000, 1_000_000)
    candles.add("AAPLx-USD", T0 + 3 * 60 * MINUTE, 19_800, 500_000)
    ticker = candles.ticker(spec(), T0 + DAY + 90 * MINUTE)
    assert msgspec.to_builtins(ticker) == {
        "symbol": "AAPLx-USD",
        "last": "198.00",
        "open": "180.00",
        "high": "198.00",
        "low": "180.00",
        "volume": "1.500000",
        "change": "18.00",
        "change_pct": "10.00",
        "trades": 2,
    }
    quiet = candles.ticker(spec(), T0 + 3 * DAY)
    assert (quiet.last, quiet.open, quiet.change, quiet.volume) == (
        "198.00",
        None,
        None,
        "0.000000",
    )


def test_image_round_trips_through_the_snapshot_encoding() -> None:
    candles = Candles()
    for index in range(50):
        candles.add("AAPLx-USD", T0 + index * 7 * MINUTE, 18_700 + index, 3)
        candles.add("MSFTx-USD", T0 + index * 61 * MINUTE, 41_000 - index, 2)
    image = msgspec.msgpack.decode(msgspec.msgpack.encode(candles.image()))
    restored = Candles()
    restored.restore(image)
    assert restored.image() == candles.image()
    now = T0 + 60 * MINUTE
    assert restored.ticker(spec(), now) == candles.ticker(spec(), now)
    restored.restore(None)  # a snapshot from before candles
    assert restored.bars("AAPLx-USD", "1m", 10) == []


def test_a_volume_past_64_bits_survives_the_snapshot_encoding() -> None:
    """Trades of up to 2^62 units each add up past what msgpack's integers hold within
    one bar (two accounts trading a large supply back and forth): the image carries such a
    volume as a decimal string, and restoring it gives back the exact number."""
    candles = Candles()
    big = 2**62
    for index in range(6):
        candles.add("AAPLx-USD", T0 + index, 18_700, big)
    candles.add("MSFTx-USD", T0, 41_000, 2)
    image = msgspec.msgpack.decode(msgspec.msgpack.encode(candles.image()))
    restored = Candles()
    restored.restore(image)
    assert restored.bars("AAPLx-USD", "1m", 10) == candles.bars("AAPLx-USD", "1m", 10)
    assert candles.bars("AAPLx-USD", "1m", 1)[0][5] == 6 * big
    restored.add("AAPLx-USD", T0 + 7, 18_700, 1)  # and it keeps counting exactly
    candles.add("AAPLx-USD", T0 + 7, 18_700, 1)
    assert restored.bars("AAPLx-USD", "1h", 1) == candles.bars("AAPLx-USD", "1h", 1)
    assert restored.ticker(spec(), T0 + MINUTE) == candles.ticker(spec(), T0 + MINUTE)


def test_an_image_is_not_changed_by_later_trades_of_the_same_minute() -> None:
    """The snapshot encodes the image after an await: a trade meanwhile must not reach it."""
    candles = Candles()
    candles.add("AAPLx-USD", T0, 18_700, 3)
    candles.add("AAPLx-USD", T0 + 1, 18_710, 2)
    image = candles.image()
    frozen = msgspec.msgpack.encode(image)
    candles.add("AAPLx-USD", T0 + 2, 18_900, 5)  # same minute: changes the bars in place
    candles.bars("AAPLx-USD", "1h", 10)  # a read brings the longer bars up to it
    assert msgspec.msgpack.encode(image) == frozen


def test_bars_equal_a_naive_aggregation_of_random_trades() -> None:
    """The same-minute fast path and the slow path agree with OHLCV computed from scratch."""
    import random

    rng = random.Random(14)
    candles = Candles()
    trades = []
    ts = T0
    for _ in range(3_000):
        ts += rng.choice((0, 1, 1_000_000, 20_000_000, 7 * MINUTE, 2 * 3_600_000_000))
        trade = (ts, rng.randint(18_000, 19_000), rng.randint(1, 10**6))
        trades.append(trade)
        candles.add("AAPLx-USD", *trade)
    for interval, length in INTERVALS_US.items():
        naive: dict[int, list[int]] = {}
        for ts_us, price, qty in trades:
            t = ts_us - ts_us % length
            bar = naive.setdefault(t, [t, price, price, price, price, 0])
            bar[2], bar[3] = max(bar[2], price), min(bar[3], price)
            bar[4] = price
            bar[5] += qty
        expected = list(naive.values())[-BARS_KEPT_MAX:]
        assert candles.bars("AAPLx-USD", interval, BARS_KEPT_MAX) == expected, interval
    restored = Candles()
    restored.restore(candles.image())
    restored.add("AAPLx-USD", ts, 1, 1)  # after a restore the slow path takes it
    candles.add("AAPLx-USD", ts, 1, 1)
    assert restored.image() == candles.image()


def test_every_bar_is_current_when_read_between_trades_of_one_minute() -> None:
    """A trade updates the minute's bar and the longer bars follow when read (`_Current`):
    each read, image and split in the middle of a minute sees every trade so far."""
    import random

    from gateway.candles import split_price

    rng = random.Random(15)
    candles = Candles()
    naive: dict[str, dict[int, list[int]]] = {interval: {} for interval in INTERVALS_US}
    ts = T0
    for index in range(2_000):
        ts += rng.choice((0, 1, 1_000_000, 1_000_000, 20_000_000, 7 * MINUTE))
        price, qty = rng.randint(18_000, 19_000), rng.randint(1, 10**6)
        candles.add("AAPLx-USD", ts, price, qty)
        for interval, length in INTERVALS_US.items():
            t = ts - ts % length
            bar = naive[interval].setdefault(t, [t, price, price, price, price, 0])
            bar[2], bar[3] = max(bar[2], price), min(bar[3], price)
            bar[4] = price
            bar[5] += qty
        if index % 97 == 0:  # an image mid-minute holds every bar as it is now
            series = {(s, i): bars for s, i, bars in candles.image()["series"]}
            for interval, bars in naive.items():
                assert series[("AAPLx-USD", interval)][-1] == list(bars.values())[-1]
        if index % 331 == 0:  # a 2:1 split mid-minute rescales what the trades so far made
            candles.split("AAPLx-USD", 2, 1, 1)
            for bars in naive.values():
                for bar in bars.values():
                    bar[1:5] = [split_price(units, 2, 1, 1) for units in bar[1:5]]
                    bar[5] = bar[5] * 2 // 1
        interval = rng.choice(list(INTERVALS_US))
        newest = list(naive[interval].values())[-1]
        assert candles.bars("AAPLx-USD", interval, 1) == [newest], (index, interval)
    for interval, bars in naive.items():
        expected = list(bars.values())[-BARS_KEPT_MAX:]
        assert candles.bars("AAPLx-USD", interval, BARS_KEPT_MAX) == expected, interval


def test_the_last_price_and_trade_counts_are_current_when_read_mid_minute() -> None:
    """A same-minute trade leaves the last price and the window's trade count to be brought
    up when read (`_Current`): `last`, `ticker`, `minutes` and `image` each see every trade."""
    candles = Candles()
    for count, price in enumerate((18_730, 18_750, 18_720, 18_740), start=1):
        candles.add("AAPLx-USD", T0 + count, price, 100)
        assert candles.last("AAPLx-USD") == price
        assert candles.ticker(spec(), T0 + MINUTE // 2).trades == count
        assert candles.minutes("AAPLx-USD")[0][3:] == [100 * count, count]
        image = candles.image()
        assert image["last"] == {"AAPLx-USD": price}
        assert image["trades"] == [["AAPLx-USD", [[T0 // MINUTE, count]]]]


def _trade(ts_us: int, price: int, qty: int) -> TradeExecuted:
    return TradeExecuted(
        ts_us=ts_us,
        symbol="AAPLx-USD",
        trade_id=1,
        price=price,
        qty=qty,
        taker_side=Side.BUY,
        maker_order_id=1,
        maker_account=1,
        maker_leaves_qty=0,
        maker_cum_qty=qty,
        maker_status=OrderStatus.FILLED,
        taker_order_id=2,
        taker_account=2,
        taker_leaves_qty=0,
        taker_cum_qty=qty,
        taker_status=OrderStatus.FILLED,
    )


def test_waiting_trades_make_the_bars_of_one_add_each_whenever_read() -> None:
    """The publisher's trades wait in a list and join the bars in one pass per turn
    (`catch_up`), across minutes and clock steps back; any read or image before that sees
    them: the same bars, ticker and image as an `add` per trade."""
    import random

    rng = random.Random(16)
    batched, one_by_one = Candles(), Candles()
    waiting = batched.waiting("AAPLx-USD")
    ts = T0
    for index in range(3_000):
        step = rng.choice((0, 1, 1_000_000, 1_000_000, 20_000_000, 7 * MINUTE, -5 * MINUTE))
        ts = max(T0, ts + step)
        price, qty = rng.randint(18_000, 19_000), rng.randint(1, 10**6)
        waiting.append(_trade(ts, price, qty))
        one_by_one.add("AAPLx-USD", ts, price, qty)
        read = rng.randrange(12)
        if read == 0:
            batched.catch_up("AAPLx-USD")  # the publisher's flush
            assert not waiting
        elif read == 1:
            assert batched.image() == one_by_one.image()
        elif read == 2:
            assert batched.ticker(spec(), ts) == one_by_one.ticker(spec(), ts)
        elif read == 3:
            assert batched.last("AAPLx-USD") == one_by_one.last("AAPLx-USD")
        elif read == 4 and index % 7 == 0:  # a split after trades still waiting rescales them
            batched.split("AAPLx-USD", 2, 1, 1)
            one_by_one.split("AAPLx-USD", 2, 1, 1)
        for interval in INTERVALS_US:
            if rng.randrange(50) == 0:
                assert batched.bars("AAPLx-USD", interval, 5) == one_by_one.bars(
                    "AAPLx-USD", interval, 5
                )
    assert batched.image() == one_by_one.image()


def test_a_restore_drops_the_trades_waiting() -> None:
    """A restore replaces everything kept: a trade waiting from before is not added on top
    of the image (the publisher's list stays the one it holds)."""
    source = Candles()
    source.add("AAPLx-USD", T0, 18_700, 3)
    candles = Candles()
    waiting = candles.waiting("AAPLx-USD")
    waiting.append(_trade(T0 + 1, 18_800, 5))
    candles.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(source.image())))
    assert candles.image() == source.image()
    assert candles.waiting("AAPLx-USD") is waiting


def test_the_publisher_adds_the_waiting_trades_when_many_wait() -> None:
    """Nobody reads the candles: at a flush with TRADES_WAITING_MAX trades waiting they join
    the bars, so the list stays bounded, and the bars are those of an `add` per trade."""
    from engine.events import InstrumentListed
    from gateway.candles import TRADES_WAITING_MAX
    from gateway.market_data import MarketData

    market_data = MarketData(epoch=1)
    market_data.on_events([InstrumentListed(T0, spec())])
    one_by_one = Candles()
    waiting = market_data.candles.waiting("AAPLx-USD")
    longest = 0
    for index in range(3 * TRADES_WAITING_MAX):
        ts = T0 + index * 1_000_000
        market_data.on_events([_trade(ts, 18_700 + index % 50, 10)])
        one_by_one.add("AAPLx-USD", ts, 18_700 + index % 50, 10)
        longest = max(longest, len(waiting))
        market_data.flush(ts, set())
        assert len(waiting) < TRADES_WAITING_MAX
    assert longest == TRADES_WAITING_MAX  # they did wait, until that many
    assert market_data.candles.image() == one_by_one.image()


def test_the_image_is_the_same_whichever_symbol_was_read_first() -> None:
    """Trades of two symbols, the second read first (its waiting trades join its bars before
    the first's): the image equals that of one `add` per trade in trading order."""
    added, waited = Candles(), Candles()
    for symbol in ("MSFTx-USD", "AAPLx-USD"):
        added.add(symbol, T0, 18_700, 3)
        waited.waiting(symbol).append(_trade(T0, 18_700, 3))
    waited.bars("AAPLx-USD", "1m", 5)
    assert waited.image() == added.image()
    assert added.image()["series"][0][0] == "AAPLx-USD"
