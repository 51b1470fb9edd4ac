"""Corporate actions in the ledger: cash dividends and share splits, each one atomic chain.

Owns the exact arithmetic. A dividend pays each holder floor(holding x amount per share) in
cash units from a payer that must have the cash available; the payer provides the exact
total rounded up, and the residual (provided - paid) goes to the rounding account. A split
N:M rescales every holding to floor(holding x N / M) by minting from or burning to the
issuance account; supply becomes floor(supply x N / M) and what the floors leave over is
the rounding account's, so every asset still sums to zero. The latest attestation is
rescaled the same way (one microsecond later), so proof of reserves stays exact. The split
runs on an asset that nothing holds: the engine releases order holds first.
Pure; refusals are `Refused`, never raised.
"""

import msgspec

from settlement.ledger import Attestation, Ledger, Leg, Refused, decimal_text
from settlement.transfers import ISSUANCE, ROUNDING, Transfer, TransferKind

DIVIDEND = TransferKind.DIVIDEND
SPLIT = TransferKind.SPLIT
AMOUNT_MAX = 2**62  # the engine's UNITS_MAX: every balance fits a signed 64-bit integer


class DividendShort(Refused, frozen=True, gc=False):
    """`INSUFFICIENT_BALANCE`: the payer's available cash cannot cover the dividend, with the
    numbers that say by how much, in cash units: what it `needed` (the exact total, rounded
    up) and what was `available`."""

    needed: int
    available: int


class Entitlement(msgspec.Struct, frozen=True, gc=False):
    """One participant's part: its holding before and after, and the cash it received."""

    account: int
    holding_before: int
    holding_after: int
    cash: int


class DividendBooked(msgspec.Struct, frozen=True, gc=False):
    entitlements: list[Entitlement]
    shares_total: int
    provided: int
    residual: int
    transfers: list[Transfer]


class SplitBooked(msgspec.Struct, frozen=True, gc=False):
    entitlements: list[Entitlement]
    supply_before: int
    supply_after: int
    rounding_holding: int
    transfers: list[Transfer]
    attestation: Attestation | None  # the rescaled one, when the asset had one


def pay_dividend(
    ledger: Ledger,
    asset: str,
    cash_asset: str,
    payer: int,
    amount: int,
    amount_decimals: int,
    ts_us: int,
) -> DividendBooked | Refused:
    """Pay `amount / 10**amount_decimals` cash per whole share to every participant holding
    `asset` (the payer excepted), from the payer's available cash, in one chain. A payer
    short of cash is refused with a `DividendShort`, which says by how much."""
    if payer not in ledger.participants:
        return Refused("UNKNOWN_ACCOUNT", f"unknown payer account {payer}")
    share_scale = ledger.assets[asset].scale
    cash_scale = ledger.assets[cash_asset].scale
    numerator = amount * 10**cash_scale
    denominator = 10 ** (amount_decimals + share_scale)
    holders = [(account, total) for account, total in ledger.holders(asset) if account != payer]
    shares_total = sum(total for _, total in holders)
    provided = -(-shares_total * numerator // denominator)  # the exact total, rounded up
    entitlements = [
        Entitlement(account, total, total, total * numerator // denominator)
        for account, total in holders
    ]
    paid = sum(e.cash for e in entitlements)
    balance = ledger.balances.get((payer, cash_asset))
    available = balance.available if balance is not None else 0
    if available < provided:
        return DividendShort(
            "INSUFFICIENT_BALANCE",
            f"payer {payer} has {decimal_text(available, cash_scale)} {cash_asset} available,"
            f" the dividend needs {decimal_text(provided, cash_scale)}",
            provided,
            available,
        )
    legs: list[Leg] = [(payer, e.account, cash_asset, e.cash, DIVIDEND) for e in entitlements]
    legs = [leg for leg in legs if leg[3]]
    if provided > paid:
        legs.append((payer, ROUNDING, cash_asset, provided - paid, TransferKind.ROUNDING))
    booked = _book(ledger, legs, ts_us)
    return DividendBooked(entitlements, shares_total, provided, provided - paid, booked)


def split_problem(ledger: Ledger, asset: str, ratio_new: int, ratio_old: int) -> str | None:
    """Why the asset cannot be split N:M (a number would pass the maximum), or None."""
    supply = ledger.supply(asset)
    attestation = ledger.attestations.get(asset)
    attested = attestation.amount if attestation is not None else 0
    if max(supply, attested) * ratio_new // ratio_old > AMOUNT_MAX:
        return f"the split would take the supply of {asset} past {AMOUNT_MAX} units"
    return None


def split(ledger: Ledger, asset: str, ratio_new: int, ratio_old: int, ts_us: int) -> SplitBooked:
    """Rescale every holding of `asset` by ratio_new / ratio_old, flooring each participant's
    and giving the rounding account the rest, and the attestation with it."""
    supply = ledger.supply(asset)
    supply_after = supply * ratio_new // ratio_old
    entitlements = []
    legs: list[Leg] = []
    rounding_before = 0
    for (account, code), balance in sorted(ledger.balances.items()):
        if code != asset or account == ISSUANCE or not balance.total:
            continue
        assert not balance.held, f"account {account} still holds {asset} at a split"
        if account == ROUNDING:
            rounding_before = balance.total
            continue
        assert account > 0, f"venue account {account} holds the equity {asset}"
        after = balance.total * ratio_new // ratio_old
        entitlements.append(Entitlement(account, balance.total, after, 0))
        legs += _rescale_leg(account, asset, balance.total, after)
    rounding_after = supply_after - sum(e.holding_after for e in entitlements)
    assert rounding_after >= 0, f"a split of {asset} left the rounding account short"
    legs += _rescale_leg(ROUNDING, asset, rounding_before, rounding_after)
    booked = _book(ledger, legs, ts_us)
    assert ledger.supply(asset) == supply_after, f"a split of {asset} missed its supply"
    attestation = ledger.attestations.get(asset)
    if attestation is not None:
        rescaled = attestation.amount * ratio_new // ratio_old
        attestation = Attestation(asset, rescaled, attestation.as_of_us + 1, ts_us)
        ledger.attestations[asset] = attestation
    return SplitBooked(entitlements, supply, supply_after, rounding_after, booked, attestation)


def _rescale_leg(account: int, asset: str, before: int, after: int) -> list[Leg]:
    if after > before:
        return [(ISSUANCE, account, asset, after - before, SPLIT)]
    if after < before:
        return [(account, ISSUANCE, asset, before - after, SPLIT)]
    return []


def _book(ledger: Ledger, legs: list[Leg], ts_us: int) -> list[Transfer]:
    """Book a chain checked beforehand; nothing to move books nothing."""
    if not legs:
        return []
    booked = ledger.book(legs, ts_us, legs_max=len(legs))
    assert not isinstance(booked, Refused), f"a corporate action failed to book: {booked}"
    return booked
