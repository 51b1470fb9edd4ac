"""Corporate actions in the ledger: cash dividends and share splits, each one atomic chain.

Owns the exact arithmetic. A dividend pays each holder floor(holding x amount per share) in
cash units from a payer that must have the cash available; the payer provides the exact
total rounded up, and the residual (provided - paid) goes to the rounding account. A split
N:M rescales every holding to floor(holding x N / M) by minting from or burning to the
issuance account; supply becomes floor(supply x N / M) and what the floors leave over is
the rounding account's, so every asset still sums to zero; with cash in lieu (`LieuTerms`)
each holding is floored to the instrument's step instead, and what it gives up is burned
and paid in cash by a payer, floor each, the residual to the rounding account. The latest
attestation is rescaled (one microsecond later), so proof of reserves stays exact. The
split runs on an asset that nothing holds: the engine releases order holds first.
Pure; refusals are `Refused`, never raised.
"""

import msgspec

from settlement.ledger import Attestation, Ledger, Leg, Refused, decimal_text
from settlement.transfers import ISSUANCE, ROUNDING, Transfer, TransferKind

DIVIDEND = TransferKind.DIVIDEND
SPLIT = TransferKind.SPLIT
CASH_IN_LIEU = TransferKind.CASH_IN_LIEU
AMOUNT_MAX = 2**62  # the engine's UNITS_MAX: every balance fits a signed 64-bit integer


class DividendShort(Refused, frozen=True, gc=False):
    """`INSUFFICIENT_BALANCE`: the payer's available cash cannot cover the dividend (or a
    split's cash in lieu), with the numbers that say by how much, in cash units: what it
    `needed` (the exact total, rounded up) and what was `available`."""

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
    provided: int = 0  # cash in lieu: what the payer paid, the exact total rounded up
    residual: int = 0  # provided - what the holders received, to the rounding account


class LieuTerms(msgspec.Struct, frozen=True, gc=False):
    """How a split pays cash in lieu of the fractions below the step: each participant keeps
    its rescaled pending withdrawals (`withdrawn`, new units) plus the rest of its holding
    floored to `step`; what it gives up, counted in old units, is worth `price_num /
    price_den` cash units a unit (the reference price), paid by `payer`."""

    cash_asset: str
    payer: int
    step: int
    price_num: int
    price_den: int
    withdrawn: dict[int, int] = {}


class LieuPlan(msgspec.Struct, frozen=True, gc=False):
    """What a split with cash in lieu gives each participant, and what the payer provides."""

    entitlements: list[Entitlement]
    provided: int


def pay_dividend(
    ledger: Ledger,
    asset: str,
    cash_asset: str,
    payer: int,
    amount: int,
    amount_decimals: int,
    ts_us: int,
    unpaid_refused: bool = False,
) -> DividendBooked | Refused:
    """Pay `amount / 10**amount_decimals` cash per whole share to every participant holding
    `asset` (the payer excepted), from the payer's available cash, in one chain. A payer
    short of cash is refused with a `DividendShort`, which says by how much; with
    `unpaid_refused`, so is a dividend that pays no holder a unit but costs the payer one."""
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
    if unpaid_refused and provided and not paid:
        largest = max(total for _, total in holders)
        return Refused(
            "BAD_PARAM",
            _unpaid_detail(ledger, asset, cash_asset, amount, amount_decimals, largest, provided),
        )
    short = payer_short(ledger, payer, cash_asset, cash_scale, provided, "the dividend")
    if short is not None:
        return short
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


def plan_cash_in_lieu(
    ledger: Ledger, asset: str, ratio_new: int, ratio_old: int, terms: LieuTerms
) -> LieuPlan:
    """Each participant's holding after an N:M split with cash in lieu, and its cash.

    A holding h keeps its rescaled pending withdrawals w' and the rest floored to the step:
    after = w' + floor((h x N - w' x M) / (M x step)) x step. It gives up h - after x M / N
    old units (exact, a fraction), paid floor(that x price) cash units; the payer provides
    the exact total rounded up. The payer's own fraction is burned with no cash: it would
    pay itself."""
    entitlements = []
    exact_total = 0  # cash x N x price_den, summed exactly
    for account, total in _participants(ledger, asset):
        kept = terms.withdrawn.get(account, 0)
        free = total * ratio_new - kept * ratio_old  # new units x M, never negative
        assert free >= 0, f"account {account}'s withdrawals pass its {asset} at a split"
        after = kept + free // (ratio_old * terms.step) * terms.step
        given_up = (total * ratio_new - after * ratio_old) * terms.price_num  # x N x den
        if account == terms.payer:
            given_up = 0
        exact_total += given_up
        cash = given_up // (ratio_new * terms.price_den)
        entitlements.append(Entitlement(account, total, after, cash))
    provided = -(-exact_total // (ratio_new * terms.price_den))
    return LieuPlan(entitlements, provided)


def _unpaid_detail(
    ledger: Ledger,
    asset: str,
    cash_asset: str,
    amount: int,
    amount_decimals: int,
    largest: int,
    provided: int,
) -> str:
    """Why a dividend that pays nobody is refused: the amount as given, the largest holding
    (owed less than a cash unit), and the unit the payer would give away for nothing."""
    cash_scale = ledger.assets[cash_asset].scale
    unit = decimal_text(1, cash_scale)
    holding = decimal_text(largest, ledger.assets[asset].scale)
    return (
        f"a dividend of {decimal_text(amount, amount_decimals)} {cash_asset} a share pays no"
        f" holder anything: even the largest holding, {holding} {asset}, is owed less than"
        f" {unit} {cash_asset}, the cash's smallest unit, and the"
        f" payer would give {decimal_text(provided, cash_scale)} {cash_asset} to the rounding"
        " account for"
        " nothing; check amount_per_share"
    )


def lieu_refusal(ledger: Ledger, terms: LieuTerms, provided: int) -> Refused | None:
    """Why the payer cannot pay a split's cash in lieu of `provided` units, or None: no payer
    named while cash is due, an unknown one, or one short of available cash."""
    scale = ledger.assets[terms.cash_asset].scale
    due = f"{decimal_text(provided, scale)} {terms.cash_asset}"
    if terms.payer and terms.payer not in ledger.participants:
        return Refused("UNKNOWN_ACCOUNT", f"unknown payer account {terms.payer}")
    if not provided:
        return None
    if not terms.payer:
        return Refused(
            "BAD_PARAM",
            f"the split leaves fractions below the step worth {due} in cash in lieu:"
            " name the account that pays it (payer)",
        )
    short = payer_short(ledger, terms.payer, terms.cash_asset, scale, provided, "the cash in lieu")
    if short is not None:
        return short
    return None


def split(
    ledger: Ledger,
    asset: str,
    ratio_new: int,
    ratio_old: int,
    ts_us: int,
    lieu: LieuTerms | None = None,
) -> SplitBooked:
    """Rescale every holding of `asset` by ratio_new / ratio_old, and the attestation with it.

    Without `lieu`, each participant's holding is floored to the unit and the rounding
    account gets the rest, so the supply becomes floor(supply x N / M). With it, each is
    floored as `plan_cash_in_lieu` says, the fractions are burned and paid for in cash (one
    `cash_in_lieu` leg per holder paid, a `rounding` leg for the residual), all in one chain;
    the payer's cash was checked beforehand (`lieu_refusal`)."""
    supply = ledger.supply(asset)
    for (account, code), balance in ledger.balances.items():
        assert code != asset or not balance.held, f"account {account} holds {asset} at a split"
    rounding = ledger.balances.get((ROUNDING, asset))
    rounding_before = rounding.total if rounding is not None else 0
    rounding_after = rounding_before * ratio_new // ratio_old
    if lieu is None:
        entitlements = [
            Entitlement(account, total, total * ratio_new // ratio_old, 0)
            for account, total in _participants(ledger, asset)
        ]
        supply_after = supply * ratio_new // ratio_old
        rounding_after = supply_after - sum(e.holding_after for e in entitlements)
        assert rounding_after >= 0, f"a split of {asset} left the rounding account short"
        provided = 0
    else:
        plan = plan_cash_in_lieu(ledger, asset, ratio_new, ratio_old, lieu)
        entitlements, provided = plan.entitlements, plan.provided
        supply_after = rounding_after + sum(e.holding_after for e in entitlements)
        assert supply_after <= supply * ratio_new // ratio_old, f"a split minted {asset}"
    legs: list[Leg] = []
    for e in entitlements:
        legs += _rescale_leg(e.account, asset, e.holding_before, e.holding_after)
    legs += _rescale_leg(ROUNDING, asset, rounding_before, rounding_after)
    paid = sum(e.cash for e in entitlements)
    if lieu is not None:
        legs += [
            (lieu.payer, e.account, lieu.cash_asset, e.cash, CASH_IN_LIEU)
            for e in entitlements
            if e.cash
        ]
        if provided > paid:
            legs.append(
                (lieu.payer, ROUNDING, lieu.cash_asset, provided - paid, TransferKind.ROUNDING)
            )
    booked = _book(ledger, legs, ts_us)
    assert ledger.supply(asset) == supply_after, f"a split of {asset} missed its supply"
    attestation = ledger.attestations.get(asset)
    if attestation is not None:
        rescaled = attestation.amount * ratio_new // ratio_old
        attestation = Attestation(asset, rescaled, attestation.as_of_us + 1, ts_us)
        ledger.attestations[asset] = attestation
    return SplitBooked(
        entitlements,
        supply,
        supply_after,
        rounding_after,
        booked,
        attestation,
        provided,
        provided - paid,
    )


def _participants(ledger: Ledger, asset: str) -> list[tuple[int, int]]:
    """(account, total) of every participant holding `asset` (available and held), by
    account."""
    holders = []
    for (account, code), balance in sorted(ledger.balances.items()):
        if code != asset or account in (ISSUANCE, ROUNDING) or not balance.total:
            continue
        assert account > 0, f"venue account {account} holds the equity {asset}"
        holders.append((account, balance.total))
    return holders


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


def payer_short(
    ledger: Ledger, payer: int, cash_asset: str, scale: int, provided: int, purpose: str
) -> DividendShort | None:
    """None if `payer` has `provided` of `cash_asset` available, else the refusal saying what
    it has and what `purpose` (a dividend, cash in lieu) needs."""
    balance = ledger.balances.get((payer, cash_asset))
    available = balance.available if balance is not None else 0
    if available >= provided:
        return None
    return DividendShort(
        "INSUFFICIENT_BALANCE",
        f"payer {payer} has {decimal_text(available, scale)} {cash_asset} available,"
        f" {purpose} needs {decimal_text(provided, scale)}",
        provided,
        available,
    )
