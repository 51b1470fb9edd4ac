"""The venue's embedded defaults: sample assets, instruments, reserves and demo accounts.

Tokenized equities and a T-bill quoted in the USD deposit token. Tokenized US equities are
not offered to US persons, and no tokenized asset to CN accounts. Until the gateway reads
`venue.toml`, these are what `make run` starts with.
"""

from engine.commands import (
    AttestReserves,
    Command,
    Deposit,
    ListAsset,
    ListInstrument,
    OpenAccount,
)
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
        excluded_jurisdictions=("US", "CN"),
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
        excluded_jurisdictions=("CN",),
    )


MATURITY_2027_03_04_US = 1_804_118_400_000_000  # 2027-03-04 00:00 UTC

SAMPLE_INSTRUMENTS: tuple[InstrumentSpec, ...] = (
    equity("AAPLx-USD", 18_725),
    equity("MSFTx-USD", 41_210),
    equity("NVDAx-USD", 13_540),
    equity("SPYx-USD", 59_830),
    tbill("TB-2027-03-04-USD", MATURITY_2027_03_04_US, 98_676_708),
)

# (account, name, jurisdiction): two market makers, a taker, and a US person who may hold
# T-bills but not tokenized US equities.
DEMO_PARTICIPANTS = (
    (1, "mm-alpha", "DE"),
    (2, "mm-beta", "GB"),
    (3, "taker", "FR"),
    (4, "us", "US"),
)
DEMO_CASH_UNITS = 5_000_000 * 10**USD_DECIMALS  # per participant
DEMO_BASE_WHOLES = 20_000  # shares, or dollars of face, per participant and instrument


def setup_commands(as_of_us: int) -> list[Command]:
    """Everything the sample venue needs before trading: assets, instruments, reserves, money."""
    commands: list[Command] = [ListAsset(code="USD", scale=USD_DECIMALS)]
    for spec in SAMPLE_INSTRUMENTS:
        commands.append(ListAsset(code=spec.base, scale=spec.qty_decimals))
    commands += [ListInstrument(spec=spec) for spec in SAMPLE_INSTRUMENTS]
    participants = len(DEMO_PARTICIPANTS)
    commands.append(
        AttestReserves(asset="USD", amount=participants * DEMO_CASH_UNITS, as_of_us=as_of_us)
    )
    for spec in SAMPLE_INSTRUMENTS:
        units = participants * DEMO_BASE_WHOLES * 10**spec.qty_decimals
        commands.append(AttestReserves(asset=spec.base, amount=units, as_of_us=as_of_us))
    for account, name, jurisdiction in DEMO_PARTICIPANTS:
        commands.append(
            OpenAccount(account=account, name=name, kyc_approved=True, jurisdiction=jurisdiction)
        )
        commands.append(Deposit(account=account, asset="USD", amount=DEMO_CASH_UNITS))
        for spec in SAMPLE_INSTRUMENTS:
            units = DEMO_BASE_WHOLES * 10**spec.qty_decimals
            commands.append(Deposit(account=account, asset=spec.base, amount=units))
    return commands
