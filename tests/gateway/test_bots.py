"""The bots and the live demo: a real server on 127.0.0.1, bots in-process, real files."""

import argparse
import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine.instrument import band_limits as engine_band_limits
from gateway import live_demo
from gateway.bots import MarketMaker, QuoteLevel, Taker, band_limits, quote_ladder
from tests.gateway.conftest import KEYS, ROOT, Venue

SYMBOL = "AAPLx-USD"
REFERENCE = Decimal("187.25")  # venue.toml's listed price for AAPLx-USD
BAND_BPS = 1_000  # venue.toml's band_pct = "10"
TICK = Decimal("0.01")
SPREAD_BPS = Decimal(20)
SIZE = Decimal(5)
LEVELS = 2
ALPHA = 1  # venue.toml's account of demo-mm-alpha
READY_TIMEOUT_S = 5.0


def _maker(venue: Venue) -> MarketMaker:
    return MarketMaker(
        venue.url(),
        *KEYS["alpha"],
        SYMBOL,
        SPREAD_BPS,
        SIZE,
        levels=LEVELS,
        interval_s=0.1,
        reference=REFERENCE,
        band_bps=BAND_BPS,
    )


# ----------------------------------------------------------------- pricing


def _sides(ladder: list[QuoteLevel]) -> tuple[list[Decimal], list[Decimal]]:
    """The ladder's bids and asks, every one of them present."""
    bids = [bid for bid, _ in ladder if bid is not None]
    asks = [ask for _, ask in ladder if ask is not None]
    assert len(bids) == len(asks) == len(ladder), f"a side is missing: {ladder}"
    return bids, asks


def test_a_flat_ladder_is_centred_on_the_tick_and_widens_by_level() -> None:
    bids, asks = _sides(quote_ladder(REFERENCE, SPREAD_BPS, 3, Decimal(0), SIZE, TICK))
    assert bids == sorted(bids, reverse=True) and len(set(bids)) == 3
    assert asks == sorted(asks) and len(set(asks)) == 3
    half = REFERENCE * SPREAD_BPS / 2 / 10_000
    assert REFERENCE - half - TICK < bids[0] <= REFERENCE - half
    assert REFERENCE + half <= asks[0] < REFERENCE + half + TICK
    assert all(price % TICK == 0 for price in bids + asks)


@pytest.mark.parametrize("inventory", [Decimal(5), Decimal(50), Decimal("0.5")])
def test_inventory_leans_the_ladder_against_the_position(inventory: Decimal) -> None:
    flat_bids, flat_asks = _sides(
        quote_ladder(REFERENCE, SPREAD_BPS, LEVELS, Decimal(0), SIZE, TICK)
    )
    long_bids, long_asks = _sides(
        quote_ladder(REFERENCE, SPREAD_BPS, LEVELS, inventory, SIZE, TICK)
    )
    short_bids, short_asks = _sides(
        quote_ladder(REFERENCE, SPREAD_BPS, LEVELS, -inventory, SIZE, TICK)
    )
    for level in range(LEVELS):
        assert long_bids[level] < flat_bids[level] < short_bids[level]  # long: sell, short: buy
        assert long_asks[level] < flat_asks[level] < short_asks[level]
        assert long_bids[level] < long_asks[level] and short_bids[level] < short_asks[level]


def test_the_lean_is_capped_so_a_huge_position_still_quotes_both_sides() -> None:
    huge = quote_ladder(REFERENCE, SPREAD_BPS, 1, Decimal(10**9), SIZE, TICK)
    bigger = quote_ladder(REFERENCE, SPREAD_BPS, 1, Decimal(10**12), SIZE, TICK)
    assert huge == bigger
    (bid, ask) = huge[0]
    assert bid is not None and ask is not None and bid < ask < REFERENCE


def test_sides_outside_the_band_are_pulled_and_the_rest_stay_inside() -> None:
    low, high = band_limits(REFERENCE, 15, TICK)  # room for level 1 (10 bps each way) only
    ladder = quote_ladder(REFERENCE, SPREAD_BPS, 3, Decimal(0), SIZE, TICK, (low, high))
    assert ladder[0][0] is not None and ladder[0][1] is not None
    assert ladder[1] == ladder[2] == (None, None)
    leaning = quote_ladder(REFERENCE, SPREAD_BPS, 1, Decimal(-50), SIZE, TICK, (low, high))
    assert leaning[0][0] is not None and leaning[0][1] is None  # the ask would leave the band
    for price in (p for level in ladder for p in level if p is not None):
        assert low <= price <= high


def test_band_limits_match_the_engine() -> None:
    for reference, bps, tick in (
        (REFERENCE, 1_000, TICK),
        (Decimal("98.676708"), 100, Decimal("0.000001")),
        (Decimal("0.05"), 9_999, TICK),
    ):
        low, high = engine_band_limits(int(reference / tick), bps, 1)  # in ticks
        assert band_limits(reference, bps, tick) == (low * tick, high * tick)


# ----------------------------------------------------------------- bots on a real server


def test_maker_quotes_both_sides_the_taker_fills_and_stopping_pulls_the_quotes(
    run_venue: Any,
) -> None:
    async def scenario(venue: Venue) -> None:
        maker = _maker(venue)
        taker = Taker(venue.url(), *KEYS["taker"], [SYMBOL], rate_per_s=20, seed=3)
        stop = asyncio.Event()
        maker_task = asyncio.create_task(maker.run(stop))
        await asyncio.wait_for(maker.quoting.wait(), READY_TIMEOUT_S)
        public = await venue.client(endpoint="public")
        await public.subscribe_book(SYMBOL)
        book = public.books[SYMBOL]
        while len(book.bids()) < LEVELS or len(book.asks()) < LEVELS:
            await public.next_push()
        widest = REFERENCE * SPREAD_BPS * LEVELS / 2 / 10_000 + TICK
        for price, qty in book.bids():
            assert REFERENCE - widest <= Decimal(price) < REFERENCE and Decimal(qty) == SIZE
        for price, qty in book.asks():
            assert REFERENCE < Decimal(price) <= REFERENCE + widest and Decimal(qty) == SIZE

        taker_task = asyncio.create_task(taker.run(stop))
        await asyncio.sleep(1.5)
        stop.set()
        await asyncio.gather(maker_task, taker_task)

        assert taker.fills > 0 and maker.fills > 0
        assert not maker.refusals
        assert set(taker.refusals) <= {"MARKET_NO_LIQUIDITY"}  # a book emptied by its last order
        assert not venue.server.venue.open_orders(ALPHA)
        alpha = await venue.client("alpha")
        rows = (await alpha.balances())["balances"]
        base = next(Decimal(r["total"]) for r in rows if r["asset"] == "AAPLx")
        assert maker.inventory == base - Decimal(20_000)  # venue.toml's deposit
        bought = sum(taker.filled_qty.values())
        assert abs(maker.inventory) <= bought

    run_venue(scenario)


def test_cancelling_the_maker_task_pulls_its_quotes(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        maker = _maker(venue)
        task = asyncio.create_task(maker.run(asyncio.Event()))
        await asyncio.wait_for(maker.quoting.wait(), READY_TIMEOUT_S)
        assert len(venue.server.venue.open_orders(ALPHA)) == 2 * LEVELS
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not venue.server.venue.open_orders(ALPHA)

    run_venue(scenario)


def test_a_dead_maker_connection_is_pulled_by_cancel_on_disconnect(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        maker = _maker(venue)
        task = asyncio.create_task(maker.run(asyncio.Event()))
        await asyncio.wait_for(maker.quoting.wait(), READY_TIMEOUT_S)
        assert maker.client.websocket is not None
        maker.client.websocket.transport.abort()  # no goodbye, no pull: only COD is left
        await asyncio.wait_for(task, READY_TIMEOUT_S)
        probe = await venue.client("alpha")
        while (await probe.open_orders(SYMBOL))["orders"]:
            await asyncio.sleep(0.05)  # COD runs when the server notices the disconnect

    run_venue(scenario)


# ----------------------------------------------------------------- the live demo


def test_the_live_demo_trades_and_verifies_its_ledger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = argparse.Namespace(
        port=0, data_dir=tmp_path / "demo", seconds=2.0, config=ROOT / "venue.toml"
    )
    assert live_demo.run(args) == 0
    out = capsys.readouterr().out
    status_lines = [line for line in out.splitlines() if line.startswith("[")]
    assert status_lines and "trades" in status_lines[-1]
    total = next(line for line in out.splitlines() if line.endswith(" trades"))
    assert int(total.split()[0]) > 0
    assert "left on the book: 0 levels, 0 open orders" in out
    assert "verified" in out
