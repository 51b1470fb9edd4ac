"""A listed instrument at run time: its spec, trading status, price band, book and trade ids.

Copies the few spec fields the matcher reads on every order onto itself, so the hot path
pays one attribute lookup for each, and keeps the band in step with the reference price.
With a ledger it also carries its cash terms and each trader's remembered (base, quote)
balances (`positions`): derived, so neither hashed nor snapshotted.
The per-order caps are the only spec fields that change after listing (`set_caps`). Under
any cap, `order_value_max` bounds what one order may trade, so its totals fit 64 bits.
"""

from msgspec.structs import replace

from engine.book import OrderBook
from engine.enums import InstrumentStatus
from engine.instrument import InstrumentSpec, band_limits
from engine.units import INT64_MAX, SMALL_INT_MAX, UNITS_MAX
from settlement.dvp import CashTerms
from settlement.ledger import Balance

# Bands remembered per market (`Market.set_reference_price`): the reference moves to every
# trade's last price, and a book trades over a few hundred distinct prices at a time. A full
# memo is dropped whole: at ~170 bytes an entry (measured), at most ~350 KB per market.
BANDS_MEMO_MAX = 2_048


class Market:
    __slots__ = (
        "band_high",
        "band_low",
        "bands",
        "book",
        "buy_price_max",
        "last_trade_id",
        "matured",
        "max_notional_scaled",
        "max_qty",
        "min_notional",
        "min_notional_scaled",
        "min_qty",
        "notional_den",
        "notional_free",
        "notional_max_plain",
        "notional_num",
        "order_value_max",
        "positions",
        "price_tick",
        "qty_max_plain",
        "qty_step",
        "reference_price",
        "sell_take_price_plain",
        "spec",
        "status",
        "steps_and_notional_free",
        "symbol",
        "terms",
        "unit_steps",
    )

    def __init__(self, spec: InstrumentSpec) -> None:
        self.spec = spec
        self.symbol = spec.symbol
        self.status = InstrumentStatus.OPEN
        self.book = OrderBook(spec.symbol)
        self.last_trade_id = 0
        self.matured = False  # a T-bill past maturity: redeemed, never trading again
        self.price_tick = spec.price_tick
        self.qty_step = spec.qty_step
        self.unit_steps = self.price_tick == 1 and self.qty_step == 1  # all on tick and step
        self.min_qty = spec.min_qty
        self.min_notional = spec.min_notional
        self.notional_num, self.notional_den = spec.notional_fraction
        self.min_notional_scaled = spec.min_notional * self.notional_den  # vs price x qty x num
        self.max_qty = spec.max_qty  # 0: no cap
        self.max_notional_scaled = spec.max_notional * self.notional_den  # 0: no cap
        # The most price x qty an order may trade in all, cap or no cap: its running sum
        # (`Order.filled_value`) and its exact fees (that x num x fee bps) are snapshotted and
        # hashed, so they must fit int64. Half of that: a passive amend (`Venue._amend`) checks
        # price x qty alone, not what the order traded, so its fills add at most one bound more.
        fee_bps_max = max(spec.maker_fee_bps, spec.taker_fee_bps, 1)
        self.order_value_max = INT64_MAX // (2 * self.notional_num * fee_bps_max)
        # The highest bid a sell of at most `SMALL_INT_MAX` may take without an exact check
        # of what it would trade there (`Venue._place`): a small-int compare per crossing sell.
        self.sell_take_price_plain = min(self.order_value_max // SMALL_INT_MAX, SMALL_INT_MAX)
        # Bounds folded for the one-expression check of a plain limit (`engine.venue`): the
        # caps with "no cap" as `order_value_max` (and no cap above it), and the band's high
        # no higher than that either (the band's low is at least a tick: above zero). The
        # price and qty bounds are also at most `SMALL_INT_MAX`, so that their compares stay
        # fast; a price or qty past it is still valid and only takes the checks one by one.
        self.qty_max_plain = self.notional_max_plain = self.buy_price_max = 0
        self.notional_free = self.steps_and_notional_free = False
        self._fold_caps()
        self.terms: CashTerms | None = None  # set when the venue clears through a ledger
        # Each account's (base, quote) balances, remembered by `Clearing.position` at its first
        # order or trade here (the ledger never removes or replaces a balance): one lookup by
        # account id per party of a trade or an order instead of one tuple-keyed lookup per
        # balance.
        # Derived from the ledger, so neither hashed nor snapshotted.
        self.positions: dict[int, tuple[Balance, Balance]] = {}
        self.reference_price = 0
        self.band_low = self.band_high = 0
        # (band_low, band_high, buy_price_max) by reference price: a function of the price
        # alone (band width and tick never change after listing), so neither hashed nor
        # snapshotted. A hit saves `band_limits` and `min`, three calls on every crossing order.
        self.bands: dict[int, tuple[int, int, int]] = {}
        self.set_reference_price(spec.reference_price)

    def set_reference_price(self, price: int) -> None:
        """Move the reference price and the band around it."""
        self.reference_price = price
        band = self.bands.get(price)
        if band is None:
            low, high = band_limits(price, self.spec.price_band_bps, self.price_tick)
            band = (low, high, min(high, SMALL_INT_MAX))
            if len(self.bands) >= BANDS_MEMO_MAX:
                self.bands.clear()
            self.bands[price] = band
        self.band_low, self.band_high, self.buy_price_max = band

    def below_min_notional(self, price: int, qty: int) -> bool:
        """Whether price x qty is worth less than the minimum notional (exact)."""
        return price * qty * self.notional_num < self.min_notional_scaled

    def above_max_notional(self, price: int, qty: int) -> bool:
        """Whether price x qty is worth more than the per-order cap (exact; no cap: False)."""
        cap = self.max_notional_scaled
        return cap > 0 and price * qty * self.notional_num > cap

    def set_caps(self, max_qty: int, max_notional: int) -> None:
        """Change the per-order caps; the spec, as published and snapshotted, follows."""
        self.spec = replace(self.spec, max_qty=max_qty, max_notional=max_notional)
        self.max_qty = max_qty
        self.max_notional_scaled = max_notional * self.notional_den
        self._fold_caps()

    def _fold_caps(self) -> None:
        self.qty_max_plain = min(self.max_qty or UNITS_MAX, SMALL_INT_MAX)
        value_max_scaled = self.order_value_max * self.notional_num
        self.notional_max_plain = min(
            self.max_notional_scaled or value_max_scaled, value_max_scaled
        )
        # No order within the other bounds of the plain check can break a notional limit:
        # no cap, the least such order (a tick times min_qty) worth the minimum, and the
        # largest (prices and quantities up to SMALL_INT_MAX) within `order_value_max`. The
        # check then skips two multiplications and two compares of numbers too large for the
        # interpreter's fast int compare.
        self.notional_free = (
            not self.max_notional_scaled
            and not self.below_min_notional(self.price_tick, self.min_qty)
            and SMALL_INT_MAX * self.qty_max_plain <= self.order_value_max
        )
        # Both of the plain check's last tests pass at once (one attribute read instead of
        # two on every plain order and amend): the usual market, on unit steps without caps.
        self.steps_and_notional_free = self.unit_steps and self.notional_free

    def above_value_max(self, price: int, qty: int, filled_value: int = 0) -> bool:
        """Whether an order that has traded `filled_value` and may trade `qty` more at up to
        `price` could pass `order_value_max` (what the venue can account for one order)."""
        return filled_value + price * qty > self.order_value_max

    def notional_units(self, price: int, qty: int) -> tuple[int, int]:
        """The exact notional of price x qty as (units, decimals), no finer than needed."""
        units, decimals = price * qty, self.spec.notional_decimals
        quote_decimals = self.spec.quote_decimals
        if decimals < quote_decimals:
            return units * 10 ** (quote_decimals - decimals), quote_decimals
        while decimals > quote_decimals and units % 10 == 0:
            units //= 10
            decimals -= 1
        return units, decimals
