"""`venue.toml`: the venue's configuration, decoded strictly and turned into setup commands.

Owns the file's schema (unknown keys are errors, amounts are decimal strings converted
exactly at each asset's scale) and its translation into the engine commands that build the
venue from nothing: assets, instruments, reserves, accounts and their deposits. API keys
are handed to the gateway's authentication, never to the engine.
"""

import datetime
from pathlib import Path
from typing import Annotated

import msgspec

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
from engine.units import parse_units
from settlement import jurisdictions, tbill
from settlement.jurisdictions import is_jurisdiction

HOUR_US = 3_600_000_000


class VenueSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8765
    data_dir: str = "data"
    reserve_staleness_hours: int = 26
    ledger_postgres: str = ""  # a PostgreSQL DSN: the ledger store there; empty: SQLite file
    nats: str = ""  # NATS URL(s): the journal is a JetStream stream there; "": the file
    # when commands queued up behind the last journal commit (a busy venue), the next starts
    # no sooner than this after the previous one started (0: off); at most
    # core.sequencer.COMMIT_INTERVAL_S_MAX
    commit_interval_ms: Annotated[int, msgspec.Meta(ge=0, le=100)] = 0
    # the file journal's commit runs on the event loop, which waits for the write (cheaper
    # than a thread's hand-off on a disk that writes in ~0.1 ms); false: on a thread of its
    # own, for a disk so slow that the loop should not wait for it. Over NATS: a thread.
    commit_on_loop: bool = True
    # public market data goes out at most once per this interval: what changes within it is
    # coalesced into one update per stream (0: after every released batch, as far as the
    # fan-out's own pacing allows). A quiet venue's change still goes out at once.
    market_data_interval_ms: Annotated[int, msgspec.Meta(ge=0, le=1_000)] = 5


# A rate or burst of 0 or less would let no request through (a bucket that never refills
# or holds nothing): refused at load, not by every connection's first frame.
PositiveLimit = Annotated[int, msgspec.Meta(ge=1)]


class LimitsSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Request rates, in requests per second (a place costs 1, a cancel 0.25)."""

    connection_rate_per_s: PositiveLimit = 200
    connection_burst: PositiveLimit = 400
    account_rate_per_s: PositiveLimit = 500
    account_burst: PositiveLimit = 1_000


class AssetEntry(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    code: str
    scale: int


class InstrumentEntry(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    symbol: str
    kind: InstrumentKind
    base: str
    quote: str
    tick: str
    step: str
    min_qty: str
    min_notional: str
    band_pct: str
    reference_price: str
    maker_fee_bps: int = 0
    taker_fee_bps: int = 0
    maturity: datetime.date | None = None
    excluded_jurisdictions: tuple[str, ...] = ()
    max_qty: str | None = None  # per-order cap (fat-finger filter), base asset; absent: none
    max_notional: str | None = None  # per-order cap, quote asset; absent: none


class ReserveEntry(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    asset: str
    amount: str


class AccountEntry(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: int
    name: str
    jurisdiction: str
    kyc_approved: bool
    deposits: dict[str, str] = {}


class ApiKeyEntry(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    key: str
    secret: str
    account: int
    scopes: tuple[str, ...]


class VenueConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    venue: VenueSection = VenueSection()
    limits: LimitsSection = LimitsSection()
    assets: tuple[AssetEntry, ...] = ()
    instruments: tuple[InstrumentEntry, ...] = ()
    reserves: tuple[ReserveEntry, ...] = ()
    accounts: tuple[AccountEntry, ...] = ()
    api_keys: tuple[ApiKeyEntry, ...] = ()


class ConfigError(ValueError):
    """The configuration cannot be used; the message says where and why."""


def load(path: Path) -> VenueConfig:
    try:
        return msgspec.toml.decode(path.read_bytes(), type=VenueConfig)
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror or error}") from None
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise ConfigError(f"{path}: {error}") from None


def decimals_of(text: str) -> int:
    """How many decimals a decimal string is written with ("0.01" -> 2)."""
    return len(text.partition(".")[2])


def instrument_spec(entry: InstrumentEntry, scales: dict[str, int]) -> InstrumentSpec:
    """The engine's spec: prices at the tick's decimals, quantities at the base's scale."""
    if entry.base not in scales or entry.quote not in scales:
        raise ConfigError(f"{entry.symbol}: list the assets {entry.base} and {entry.quote}")
    price_decimals = decimals_of(entry.tick)
    qty_decimals = scales[entry.base]
    quote_decimals = scales[entry.quote]
    try:
        return InstrumentSpec(
            symbol=entry.symbol,
            kind=entry.kind,
            base=entry.base,
            quote=entry.quote,
            price_decimals=price_decimals,
            price_tick=parse_units(entry.tick, price_decimals),
            qty_decimals=qty_decimals,
            qty_step=parse_units(entry.step, qty_decimals),
            min_qty=parse_units(entry.min_qty, qty_decimals),
            quote_decimals=quote_decimals,
            min_notional=parse_units(entry.min_notional, quote_decimals),
            price_band_bps=parse_units(entry.band_pct, 2),  # percent to basis points
            reference_price=parse_units(entry.reference_price, price_decimals),
            maker_fee_bps=entry.maker_fee_bps,
            taker_fee_bps=entry.taker_fee_bps,
            maturity_us=_maturity_us(entry.maturity),
            excluded_jurisdictions=entry.excluded_jurisdictions,
            max_qty=_cap(entry.max_qty, qty_decimals),
            max_notional=_cap(entry.max_notional, quote_decimals),
        )
    except ValueError as error:
        raise ConfigError(f"{entry.symbol}: {error}") from None


def setup_commands(
    config: VenueConfig, now_us: int, *, check_bill_terms: bool = True
) -> list[Command]:
    """The commands that build the configured venue from nothing at `now_us`, in order;
    ConfigError for what no venue could take (an unknown asset, a bill more than a year out
    from `now_us`: checked only with `check_bill_terms`, as a venue that already exists
    does not list the config's bills again)."""
    scales = {asset.code: asset.scale for asset in config.assets}
    commands: list[Command] = [
        ListAsset(code=asset.code, scale=asset.scale) for asset in config.assets
    ]
    for entry in config.instruments:
        if not all(map(is_jurisdiction, entry.excluded_jurisdictions)):
            raise ConfigError(f"{entry.symbol}: excluded_jurisdictions: {jurisdictions.PROBLEM}")
    specs = [instrument_spec(entry, scales) for entry in config.instruments]
    for spec in specs:
        if check_bill_terms:
            _check_bill_term(spec, now_us)
    commands += [ListInstrument(spec=spec) for spec in specs]
    for reserve in config.reserves:
        amount = _amount(reserve.amount, reserve.asset, scales)
        commands.append(AttestReserves(asset=reserve.asset, amount=amount, as_of_us=now_us))
    for account in config.accounts:
        if not is_jurisdiction(account.jurisdiction):
            raise ConfigError(f"account {account.id}: {jurisdictions.PROBLEM}")
        commands.append(
            OpenAccount(
                account=account.id,
                name=account.name,
                kyc_approved=account.kyc_approved,
                jurisdiction=account.jurisdiction,
            )
        )
        for asset, text in account.deposits.items():
            amount = _amount(text, asset, scales)
            commands.append(Deposit(account=account.id, asset=asset, amount=amount))
    return commands


def _check_bill_term(spec: InstrumentSpec, now_us: int) -> None:
    """A bill maturing further out than any T-bill runs is a mistyped date: the venue does not
    start on it (`admin.list_instrument` refuses it too, `tbill.listing_term_problem`). A bill
    that has matured since the config was written is left out at the build instead, with a
    warning (`VenueCore._build_from_config`): the config was right, and has aged."""
    if spec.maturity_us:
        problem = tbill.listing_term_problem(now_us, spec.maturity_us)
        if problem is not None:
            raise ConfigError(f"{spec.symbol}: {problem}")


def reserve_staleness_max_us(config: VenueConfig) -> int:
    return config.venue.reserve_staleness_hours * HOUR_US


def _amount(text: str, asset: str, scales: dict[str, int]) -> int:
    if asset not in scales:
        raise ConfigError(f"unknown asset {asset}")
    try:
        return parse_units(text, scales[asset])
    except ValueError as error:
        raise ConfigError(f"{asset} amount: {error}") from None


def _cap(text: str | None, decimals: int) -> int:
    return 0 if text is None else parse_units(text, decimals)


def _maturity_us(maturity: datetime.date | None) -> int:
    if maturity is None:
        return 0
    midnight = datetime.datetime.combine(maturity, datetime.time(), datetime.UTC)
    return int(midnight.timestamp()) * 1_000_000
