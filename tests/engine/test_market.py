"""The run-time market: its band follows the reference price through a bounded memo, and
the bounds it folds for the venue's fast checks stay small ints."""

from collections.abc import Callable

from engine import market as market_module
from engine.commands import AmendOrder, SetOrderCaps
from engine.enums import Side, TimeInForce
from engine.events import CommandRejected, TradeExecuted
from engine.instrument import band_limits
from engine.market import Market
from engine.reasons import ErrorCode
from engine.units import SMALL_INT_MAX
from tests.engine.conftest import SYMBOL, Harness, kinds, make_spec


def test_band_follows_every_reference_price_memo_hit_or_miss() -> None:
    spec = make_spec(price_tick=5, reference_price=10_000, price_band_bps=1_000)
    market = Market(spec)
    for price in [10_000, 10_005, 9_995, 10_005, 10_000, 12_345 * 5]:  # misses, then hits
        market.set_reference_price(price)
        low, high = band_limits(price, spec.price_band_bps, spec.price_tick)
        assert (market.reference_price, market.band_low, market.band_high) == (price, low, high)
        assert market.buy_price_max == min(high, SMALL_INT_MAX)


def test_band_memo_is_bounded() -> None:
    market = Market(make_spec(price_tick=1, reference_price=10_000))
    bound = market_module.BANDS_MEMO_MAX
    for price in range(10_000, 10_000 + 2 * bound + 1):
        market.set_reference_price(price)
        assert len(market.bands) <= bound
    price = 10_000 + 2 * bound
    assert market.bands[price] == (market.band_low, market.band_high, market.buy_price_max)


def test_fast_path_bounds_stay_small_ints() -> None:
    market = Market(make_spec(reference_price=SMALL_INT_MAX, price_band_bps=5_000))
    assert market.band_high > SMALL_INT_MAX and market.buy_price_max == SMALL_INT_MAX
    assert market.qty_max_plain == SMALL_INT_MAX  # no cap: the rest take the checks one by one
    market.set_caps(max_qty=1_000, max_notional=0)
    assert market.qty_max_plain == 1_000


def test_prices_and_qtys_past_the_fast_bounds_trade_as_before(
    make_harness: Callable[..., Harness],
) -> None:
    """Above `SMALL_INT_MAX` the one-expression checks of place and amend say "look closer";
    the checks one by one accept the order, the amend and the trade all the same."""
    price = SMALL_INT_MAX + 1
    harness = make_harness(reference_price=price, price_band_bps=5_000)
    big = SMALL_INT_MAX + 7
    assert kinds(harness.place(1, Side.SELL, price + 5, big)) == ["OrderAccepted"]
    assert kinds(harness.place(2, Side.BUY, price - 5, big)) == ["OrderAccepted"]
    amended = harness.do(AmendOrder(account=1, order_id=1, price=price + 1))
    assert kinds(amended) == ["OrderAmended"]
    taken = harness.place(3, Side.BUY, price + 1, big, tif=TimeInForce.IOC)
    assert kinds(taken) == ["OrderAccepted", "TradeExecuted"]
    trade = taken[-1]
    assert isinstance(trade, TradeExecuted) and (trade.price, trade.qty) == (price + 1, big)


def test_notional_free_only_when_no_order_can_break_a_notional_limit() -> None:
    """Notional units are price x qty / 100 here: the least order (a tick of 1 x min_qty
    of 100) is worth 1 unit, so a minimum of 1 can never refuse it and one of 2 can."""
    assert Market(make_spec(min_qty=100, min_notional=0)).notional_free
    assert Market(make_spec(min_qty=100, min_notional=1)).notional_free
    assert not Market(make_spec(min_qty=100, min_notional=2)).notional_free
    assert not Market(make_spec(price_tick=5, min_qty=100, min_notional=6)).notional_free
    assert Market(make_spec(price_tick=5, min_qty=100, min_notional=5)).notional_free
    market = Market(make_spec(min_qty=100, min_notional=1))
    market.set_caps(max_qty=0, max_notional=1_000)
    assert not market.notional_free  # a cap can refuse
    market.set_caps(max_qty=0, max_notional=0)
    assert market.notional_free


def test_steps_and_notional_free_only_on_unit_steps_with_no_notional_limit() -> None:
    """The folded flag of the plain checks: both the step test and the notional test free,
    following the caps as `notional_free` does."""
    assert Market(make_spec(min_qty=1, min_notional=0)).steps_and_notional_free
    assert not Market(make_spec(price_tick=5, min_qty=100, min_notional=5)).steps_and_notional_free
    assert not Market(make_spec(qty_step=100, min_qty=100)).steps_and_notional_free
    assert not Market(make_spec(min_qty=1, min_notional=2)).steps_and_notional_free
    market = Market(make_spec(min_qty=1, min_notional=0))
    market.set_caps(max_qty=0, max_notional=1_000)
    assert not market.steps_and_notional_free  # a cap can refuse
    market.set_caps(max_qty=0, max_notional=0)
    assert market.steps_and_notional_free


def test_a_cap_set_on_a_notional_free_market_refuses_above_it(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness(min_qty=100, min_notional=0)
    assert kinds(harness.place(1, Side.BUY, 10_000, 20_000)) == ["OrderAccepted"]  # 2,000,000
    harness.do(SetOrderCaps(symbol=SYMBOL, max_notional=1_500_000))
    refused = harness.place(1, Side.BUY, 10_000, 20_000)
    assert isinstance(refused[0], CommandRejected)
    assert refused[0].reason is ErrorCode.ABOVE_MAX_NOTIONAL
    assert kinds(harness.place(1, Side.BUY, 10_000, 10_000)) == ["OrderAccepted"]  # 1,000,000


def test_a_minimum_a_least_order_falls_short_of_still_refuses(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness(min_qty=100, min_notional=2)
    accepted = harness.place(1, Side.BUY, 9_500, 100)  # 9_500 x 100 / 100 = 9,500: enough
    assert kinds(accepted) == ["OrderAccepted"]
    harness = make_harness(min_qty=100, min_notional=9_501)
    refused = harness.place(1, Side.BUY, 9_500, 100)
    assert isinstance(refused[0], CommandRejected)
    assert refused[0].reason is ErrorCode.BELOW_MIN_NOTIONAL
