"""Reserves and supply: custodians' attestations, mints against them, and the supply bound.

Owns the ledger's side of backing: recording a custodian's statement of an asset's reserves
(`Attestation`), the proof-of-reserves report, minting to a participant only against a
fresh statement that covers the new supply, and the bound no supply may pass
(`SUPPLY_MAX`), counting the cash unmatured T-bills will mint at maturity. `Ledger` has
these methods as its own (`Reserves` is one of its bases), so that every balance still
changes in one owner; this module keeps them apart from the rest of the ledger. Pure.
"""

from __future__ import annotations  # the ledger's types, imported for type checks only

from collections.abc import Container, Mapping
from typing import TYPE_CHECKING, Protocol

import msgspec

from settlement.refusals import Refused
from settlement.transfers import ISSUANCE, Transfer, TransferKind

if TYPE_CHECKING:
    from settlement.ledger import AssetSpec, Attestation, Leg, Participant

# The most of an asset there may ever be, counting the cash its T-bills will pay at maturity:
# the engine's UNITS_MAX. Every balance is at most that plus a little rounding, and each is
# snapshotted, hashed and stored as a signed 64-bit integer.
SUPPLY_MAX = 2**62
HOUR_US = 3_600_000_000  # staleness is read in hours (the config's reserve_staleness_hours)
# What the tokens of each unmatured T-bill pay at maturity: bill asset -> (cash asset, cash
# units per unit of face). The engine's markets say it (`Custody.redemptions`).
Redemptions = Mapping[str, tuple[str, int]]


class ReserveLine(msgspec.Struct, frozen=True, gc=False):
    """One asset's line of the proof-of-reserves report."""

    asset: str
    supply: int
    attested: int
    as_of_us: int
    covered: bool


class _Books(Protocol):
    """What of the ledger the reserves' methods use (`settlement.ledger.Ledger`)."""

    assets: dict[str, AssetSpec]
    participants: dict[int, Participant]
    attestations: dict[str, Attestation]

    def supply(self, asset: str) -> int: ...

    def supply_at_maturity(self, asset: str, redemptions: Redemptions) -> int: ...

    def supply_past_max(self, asset: str, amount: int, redemptions: Redemptions) -> str | None: ...

    def _restated(self, previous: Attestation) -> str: ...

    def book(self, legs: list[Leg], ts_us: int) -> list[Transfer] | Refused: ...


class Reserves:
    """The ledger's reserve and supply methods (its `attestations`, and supply as issuance
    mirrors it)."""

    def attest(
        self: _Books,
        attestation: Attestation,
        matured: Container[str] = (),
        *,
        before_split_refused: bool = True,
    ) -> Refused | None:
        """Record the custodian's latest reserves for an asset (not a matured bill's token).
        `before_split_refused` False takes a statement dated before the asset's latest split,
        as a journal written before that check holds them (`AttestReserves.split_checked`)."""
        if attestation.asset not in self.assets:
            return Refused("UNKNOWN_ASSET", f"unknown asset {attestation.asset}")
        # Before the checks of the statement itself: a matured bill's token takes none at
        # all, so that is what a statement of it (an old one, say) is refused for.
        if attestation.asset in matured:
            return Refused("ASSET_MATURED", _matured(attestation.asset))
        if attestation.amount < 0:
            return Refused("BAD_PARAM", "reserves cannot be negative")
        if attestation.amount > SUPPLY_MAX:  # more than could ever be minted against them
            return Refused("BAD_PARAM", f"reserves are at most {SUPPLY_MAX} units")
        previous = self.attestations.get(attestation.asset)
        if previous is not None and attestation.as_of_us < previous.as_of_us:
            scale = self.assets[attestation.asset].scale
            return Refused("BAD_PARAM", older_detail(previous, attestation.as_of_us, scale))
        if (
            before_split_refused
            and previous is not None
            and attestation.as_of_us < previous.split_at_us
        ):
            return Refused("BAD_PARAM", _before_split(attestation, previous.split_at_us))
        if previous is not None and _restates(previous, attestation):
            # The store keeps every statement by its moment: it would refuse another amount
            # for one it holds after the answer, fatally, and at every start after it.
            return Refused("BAD_PARAM", self._restated(previous))
        self.attestations[attestation.asset] = attestation
        return None

    def _restated(self: _Books, previous: Attestation) -> str:
        scale = self.assets[previous.asset].scale
        return (
            f"{previous.asset} reserves as of {previous.as_of_us} are recorded as"
            f" {decimal_text(previous.amount, scale)}: a statement for the same moment cannot"
            " say otherwise (a corrected one needs a later as_of)"
        )

    def reserves_report(self: _Books) -> list[ReserveLine]:
        """Proof of reserves: supply against the latest attestation, per asset."""
        lines = []
        for code in sorted(self.assets):
            attestation = self.attestations.get(code)
            attested = attestation.amount if attestation else 0
            supply = self.supply(code)
            as_of = attestation.as_of_us if attestation else 0
            lines.append(ReserveLine(code, supply, attested, as_of, supply <= attested))
        return lines

    # ----------------------------------------------------------------- supply

    def mint(
        self: _Books,
        account: int,
        asset: str,
        amount: int,
        ts_us: int,
        staleness_max_us: int,
        matured: Container[str] = (),
        redemptions: Redemptions | None = None,
    ) -> list[Transfer] | Refused:
        """Issue tokens to a participant against fresh reserves (never a matured bill's), as
        long as neither the asset nor the cash its bills pay at maturity can pass `SUPPLY_MAX`.
        """
        if account not in self.participants:
            return Refused("UNKNOWN_ACCOUNT", f"unknown account {account}")
        if asset not in self.assets:
            return Refused("UNKNOWN_ASSET", f"unknown asset {asset}")
        if asset in matured:
            return Refused("ASSET_MATURED", _matured(asset))
        attestation = self.attestations.get(asset)
        if attestation is None or ts_us - attestation.as_of_us > staleness_max_us:
            detail = stale_detail(asset, attestation, ts_us, staleness_max_us)
            return Refused("RESERVES_STALE", detail)
        supply = self.supply(asset)
        if supply + amount > attestation.amount:
            scale = self.assets[asset].scale
            return Refused("RESERVES_EXCEEDED", exceeded_detail(attestation, supply, amount, scale))
        past = self.supply_past_max(asset, amount, redemptions or {})
        if past is not None:
            return Refused("SUPPLY_OUT_OF_RANGE", past)
        return self.book([(ISSUANCE, account, asset, amount, TransferKind.MINT)], ts_us)

    def supply_at_maturity(self: _Books, asset: str, redemptions: Redemptions) -> int:
        """The supply of `asset` once every bill paying in it has paid par for its tokens out
        (a matured bill's: those its pending withdrawals hold, which a void redeems)."""
        par = sum(
            self.supply(bill) * per_unit
            for bill, (cash, per_unit) in redemptions.items()
            if cash == asset
        )
        return self.supply(asset) + par

    def supply_past_max(
        self: _Books, asset: str, amount: int, redemptions: Redemptions
    ) -> str | None:
        """Why `amount` more of `asset` would let a supply pass `SUPPLY_MAX` (its own, or at
        maturity, its own as cash or that of the cash it pays as a bill), or None."""
        if self.supply_at_maturity(asset, redemptions) + amount > SUPPLY_MAX:
            return f"the supply of {asset} would pass {SUPPLY_MAX} units"
        terms = redemptions.get(asset)
        if terms is not None:
            cash, per_unit = terms
            if self.supply_at_maturity(cash, redemptions) + amount * per_unit > SUPPLY_MAX:
                return (
                    f"{amount} {asset} would pay {amount * per_unit} {cash} units at maturity:"
                    f" the supply of {cash} would pass {SUPPLY_MAX} units"
                )
        return None


def _before_split(attestation: Attestation, split_at_us: int) -> str:
    return (
        f"{attestation.asset} was split at {split_at_us}: a statement as of"
        f" {attestation.as_of_us}, before the split, counts its old shares (attest one as of"
        " the split or later)"
    )


def _restates(previous: Attestation, attestation: Attestation) -> bool:
    """Whether `attestation` gives another amount for the moment of `previous` (the same
    amount again is a retry, and is taken)."""
    return attestation.as_of_us == previous.as_of_us and attestation.amount != previous.amount


def older_detail(latest: Attestation, as_of_us: int, scale: int) -> str:
    """Why a statement older than the latest is refused, saying the latest (its moment and
    amount, which may be a split's rescaled one) so that the operator sees what to date after."""
    amount = decimal_text(latest.amount, scale)
    return (
        f"an attestation older than the latest one: {latest.asset}'s latest is as of"
        f" {latest.as_of_us} µs ({amount}), this one as of {as_of_us} µs; a new"
        " statement needs a later as_of"
    )


def stale_detail(
    asset: str, attestation: Attestation | None, ts_us: int, staleness_max_us: int
) -> str:
    """Why a deposit finds no fresh attestation, with the figures the operator needs: how
    old the latest is against the bound (hours, to a tenth), or that there is none."""
    said = f"no fresh reserve attestation for {asset}"
    if attestation is None:
        return f"{said}: it has none; attest its reserves first"
    age_us = ts_us - attestation.as_of_us
    age, bound = f"{age_us / HOUR_US:.1f} h", f"{staleness_max_us / HOUR_US:.1f} h"
    if age == bound:  # just past the bound: to the second, not "24.0 h old, past the 24.0 h"
        age, bound = f"{age_us // 1_000_000:,} s", f"{staleness_max_us // 1_000_000:,} s"
    return (
        f"{said}: the latest, as of {attestation.as_of_us} µs, is {age} old, past the"
        f" {bound} a deposit allows (reserve staleness); attest its reserves again"
    )


def exceeded_detail(attestation: Attestation, supply: int, amount: int, scale: int) -> str:
    """Why a deposit would pass the reserves, in the asset's decimals: what is out, what the
    deposit adds, and what the custodian attests."""
    return (
        f"supply of {attestation.asset} would exceed its reserves:"
        f" {decimal_text(supply, scale)} out plus this {decimal_text(amount, scale)} is"
        f" {decimal_text(supply + amount, scale)}, past the"
        f" {decimal_text(attestation.amount, scale)} attested as of {attestation.as_of_us} µs"
    )


def decimal_text(units: int, scale: int) -> str:
    """Whole units of an asset at `scale` as its decimal text (an operator reads these)."""
    if not scale:
        return str(units)
    whole, fraction = divmod(units, 10**scale)
    return f"{whole}.{fraction:0{scale}d}"


def _matured(asset: str) -> str:
    return f"{asset} is a matured T-bill: it was redeemed at par and can never trade again"
