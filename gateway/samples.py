"""The sample instruments the demo lists: tokenized equities and a T-bill, quoted in USD.

Until the gateway reads `venue.toml`, these are the venue's embedded defaults.
"""

from engine.enums import InstrumentKind
from engine.instrument import InstrumentSpec

USD_DECIMALS = 6  # the USD deposit token's scale


def equity(symbol: str, reference_price_cents: int) -> InstrumentSpec:
    """A fractional tokenized equity: cent ticks, 0.000001-share steps, a 10% band."""
    base = symbol.split("-")[0]
    return InstrumentSpec(
        symbol=symbol,
        kind=InstrumentKind.EQUITY,
        base=base,
        quote="USD",
        price_decimals=2,
        price_tick=1,
        qty_decimals=6,
        qty_step=1,
        min_qty=1,
        quote_decimals=USD_DECIMALS,
        min_notional=1_000_000,  # one dollar
        price_band_bps=1_000,
        reference_price=reference_price_cents,
        maker_fee_bps=1,
        taker_fee_bps=5,
    )


def tbill(symbol: str, maturity_us: int, reference_price: int) -> InstrumentSpec:
    """A T-bill quoted per 100 face to 6 decimals, traded in whole dollars of face value."""
    return InstrumentSpec(
        symbol=symbol,
        kind=InstrumentKind.TBILL,
        base=symbol.rsplit("-", 1)[0],
        quote="USD",
        price_decimals=6,
        price_tick=1,
        qty_decimals=0,
        qty_step=1,
        min_qty=100,
        quote_decimals=USD_DECIMALS,
        min_notional=100_000_000,  # one hundred dollars
        price_band_bps=100,
        reference_price=reference_price,
        maker_fee_bps=0,
        taker_fee_bps=1,
        maturity_us=maturity_us,
    )


MATURITY_2027_03_04_US = 1_804_118_400_000_000  # 2027-03-04 00:00 UTC

SAMPLE_INSTRUMENTS: tuple[InstrumentSpec, ...] = (
    equity("AAPLx-USD", 18_725),
    equity("MSFTx-USD", 41_210),
    equity("NVDAx-USD", 13_540),
    equity("SPYx-USD", 59_830),
    tbill("TB-2027-03-04-USD", MATURITY_2027_03_04_US, 98_676_708),
)
