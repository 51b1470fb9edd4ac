"""The arithmetic of holds and delivery-versus-payment: exact, and rounded once per order.

Owns how much cash a buy order holds, what each fill moves (security, cash, fees) and how
much of a hold a fill releases. The exact cash of a fill is price x qty x num / den (see
`engine.instrument`), a fraction. Rounding is done on each order's running totals, never
per fill, so it cannot accumulate: a buyer has paid ceil(exact cash so far), a seller has
received floor(exact cash so far), and each has paid ceil(exact fees so far) (a seller's fee
is capped by that fill's proceeds, so a sale never needs cash it does not receive). What
the buyer pays beyond what the seller receives goes to the rounding account (and the
rounding account pays the rare negative difference), so every asset still sums to zero.

A buy holds the worst case of its remaining quantity at its limit price plus the highest
fee rate; after each fill the hold is reset to that worst case for what is left, which
never exceeds the old hold minus what the fill spent (ceil is monotone), so settlement
cannot fail for want of cash.
"""

BPS = 10_000  # fees are in basis points


def ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


class CashTerms:
    """The cash side of one instrument: its notional fraction and fee rates."""

    __slots__ = (
        "den",
        "den_up",
        "fee_bps_max",
        "fee_den",
        "fee_up",
        "maker_fee_bps",
        "num",
        "taker_fee_bps",
    )

    def __init__(self, num: int, den: int, maker_fee_bps: int, taker_fee_bps: int) -> None:
        assert num > 0 and den > 0, "notional fraction must be positive"
        assert 0 <= maker_fee_bps <= BPS and 0 <= taker_fee_bps <= BPS, "fee rates in bps"
        self.num = num
        self.den = den
        self.den_up = den - 1  # (cash + den_up) // den rounds cash up
        self.maker_fee_bps = maker_fee_bps
        self.taker_fee_bps = taker_fee_bps
        self.fee_bps_max = max(maker_fee_bps, taker_fee_bps)
        self.fee_den = den * BPS  # fees are kept exact in units of 1 / (den x BPS)
        self.fee_up = self.fee_den - 1  # (fee + fee_up) // fee_den rounds a fee up

    def buy_hold(self, price: int, qty: int) -> int:
        """Cash a fresh buy of `qty` at limit `price` must hold: cost and worst fee, rounded up."""
        # Each ceil a floor division of what is rounded plus den - 1, the fee's as two floor
        # divisions by one-digit divisors (one by den x BPS takes CPython's slow long path).
        # qty last: price x num and then x qty stay in CPython's one-digit fast path on the
        # usual instrument, where price x qty is two digits and two digits x num a general
        # product.
        cost = price * self.num * qty
        return (cost + self.den_up) // self.den + (
            cost * self.fee_bps_max + self.fee_up
        ) // self.den // BPS

    def quote_hold(self, quote_qty: int) -> int:
        """Cash a market buy by amount must hold: the amount and the worst fee on it."""
        return quote_qty + ceil_div(quote_qty * self.fee_bps_max, BPS)

    def buy_hold_after(
        self, value: int, fee_exact: int, paid: int, fees_paid: int, rest: int
    ) -> int:
        """The hold a buy keeps after fills: the worst case still to pay.

        `value` is the order's sum of price x qty so far, `fee_exact` its exact fees in
        1/fee_den units, `paid`/`fees_paid` what it has paid, `rest` the price x qty it may
        still trade at worst (limit price x leaves).
        """
        cash = ceil_div((value + rest) * self.num, self.den) - paid
        fees = ceil_div(fee_exact + rest * self.num * self.fee_bps_max, self.fee_den) - fees_paid
        return cash + fees

    def buy_hold_after_fills(self, value: int, fee_exact: int, fees_paid: int, rest: int) -> int:
        """`buy_hold_after` with what the buyer has paid worked out from `value` (its
        `paid_total`), all arithmetic inline: the hold of every buy that is amended."""
        num = self.num
        den = self.den
        cash = -(-(value + rest) * num // den) - -(-value * num // den)
        fees = -(-(fee_exact + rest * num * self.fee_bps_max) // self.fee_den) - fees_paid
        return cash + fees

    def fee_exact(self, price: int, qty: int, fee_bps: int) -> int:
        """The exact fee of one fill, in 1/fee_den units."""
        return price * qty * self.num * fee_bps

    def paid_total(self, value: int) -> int:
        """What a buyer has paid in all for fills worth `value` (sum of price x qty)."""
        return ceil_div(value * self.num, self.den)

    def received_total(self, value: int) -> int:
        """What a seller has received in all for fills worth `value`."""
        return value * self.num // self.den

    def fees_total(self, fee_exact: int) -> int:
        """What an order has owed in fees in all, for exact fees `fee_exact`."""
        return ceil_div(fee_exact, self.fee_den)
