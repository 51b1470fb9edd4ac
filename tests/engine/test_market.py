"""The run-time market: its band follows the reference price through a bounded memo."""

from engine import market as market_module
from engine.instrument import band_limits
from engine.market import Market
from engine.units import UNITS_MAX
from tests.engine.conftest import make_spec


def test_band_follows_every_reference_price_memo_hit_or_miss() -> None:
    spec = make_spec(price_tick=5, reference_price=10_000, price_band_bps=1_000)
    market = Market(spec)
    for price in [10_000, 10_005, 9_995, 10_005, 10_000, 12_345 * 5]:  # misses, then hits
        market.set_reference_price(price)
        low, high = band_limits(price, spec.price_band_bps, spec.price_tick)
        assert (market.reference_price, market.band_low, market.band_high) == (price, low, high)
        assert market.buy_price_max == min(high, UNITS_MAX)


def test_band_memo_is_bounded() -> None:
    market = Market(make_spec(price_tick=1, reference_price=10_000))
    bound = market_module.BANDS_MEMO_MAX
    for price in range(10_000, 10_000 + 2 * bound + 1):
        market.set_reference_price(price)
        assert len(market.bands) <= bound
    price = 10_000 + 2 * bound
    assert market.bands[price] == (market.band_low, market.band_high, market.buy_price_max)
