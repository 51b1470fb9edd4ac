"""The double-entry ledger: assets, accounts, balances with holds, and atomic transfer chains.

Owns every balance of every account (participants and the venue's own accounts), what is
held of it, pending withdrawals (their methods in `settlement.withdrawals`), the reserve
attestations that bound supply, and the sequence of booked transfers. A chain of transfers
is checked whole and then applied whole; a refusal is returned as a `Refused` (a stable
reason name and a message), never raised, and changes nothing. Each asset sums to zero over
all accounts at every moment (minting debits the issuance account), and no mint lets a
supply pass `SUPPLY_MAX`, counting the cash the caller's T-bills will mint at maturity.
Pure: the store persists what `drain()` hands it.
"""

from collections.abc import Container, Iterable, Mapping

import msgspec

from settlement.refusals import Refused as Refused
from settlement.transfers import (
    FEE_INCOME,
    ISSUANCE,
    REDEMPTION,
    ROUNDING,
    VENUE_ACCOUNTS,
    Transfer,
    TransferKind,
)
from settlement.withdrawals import PENDING_WITHDRAWALS_MAX as PENDING_WITHDRAWALS_MAX
from settlement.withdrawals import FinishedWithdrawal, PendingWithdrawals
from settlement.withdrawals import Withdrawal as Withdrawal
from settlement.withdrawals import too_many_withdrawals_detail as too_many_withdrawals_detail

ASSET_CODE_LENGTH_MAX = 24  # "TB-2027-03-04" and equity tickers fit with room to spare
ASSET_SCALE_MAX = 18  # 10**18 units per whole is finer than any asset we hold
# The ledger store's limit (`settlement.store.ACCOUNT_NAME_CHARS_MAX`): a longer name taken
# here would be refused there after the answer, fatally, and at every start after it.
ACCOUNT_NAME_LENGTH_MAX = 200
CHAIN_LEGS_MAX = 64  # a trade has 2-6 legs; anything longer is a bug or an abuse
# The most of an asset there may ever be, counting the cash its T-bills will pay at maturity:
# the engine's UNITS_MAX. Every balance is at most that plus a little rounding, and each is
# snapshotted, hashed and stored as a signed 64-bit integer.
SUPPLY_MAX = 2**62
HOUR_US = 3_600_000_000  # staleness is read in hours (the config's reserve_staleness_hours)


class AssetSpec(msgspec.Struct, frozen=True, gc=False):
    code: str
    scale: int  # integer units per whole: 10**scale


class Participant(msgspec.Struct, frozen=True, gc=False):
    account_id: int
    name: str
    kyc_approved: bool
    jurisdiction: str  # ISO 3166 alpha-2, e.g. "US", "DE"


class Attestation(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """A custodian's statement: this much of the asset is held in reserve, as of then.

    One a split rescaled (`settlement.corporate.split`) says when: a statement dated before
    that counts the old shares, and is refused. Left out of its encoding when 0 (none), so
    every other attestation encodes, hashes and snapshots as before it existed."""

    asset: str
    amount: int
    as_of_us: int
    split_at_us: int = 0  # the time of the split that rescaled it; 0: none did


class ReserveLine(msgspec.Struct, frozen=True, gc=False):
    """One asset's line of the proof-of-reserves report."""

    asset: str
    supply: int
    attested: int
    as_of_us: int
    covered: bool


class LedgerImage(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """Everything a ledger holds, for snapshots (see `Ledger.image` and `Ledger.from_image`).
    The finished withdrawals are left out of the encoding while there are none, so that an
    image (and the state hash) of a ledger without them is as before they existed."""

    assets: list[AssetSpec]
    participants: list[Participant]
    balances: list[tuple[int, str, int, int]]  # account, asset, total, held
    attestations: list[Attestation]
    withdrawals: list[Withdrawal]
    last_transfer_id: int
    last_chain_id: int
    last_withdrawal_id: int
    undrained: list[Transfer]  # booked but not yet handed to the store
    finished_withdrawals: list[FinishedWithdrawal] = []  # oldest first


class Balance:
    """One account's position in one asset. `held` is reserved for open orders/withdrawals."""

    __slots__ = ("held", "total")

    def __init__(self) -> None:
        self.total = 0
        self.held = 0

    @property
    def available(self) -> int:
        return self.total - self.held


Leg = tuple[int, int, str, int, TransferKind]  # debit account, credit account, asset, amount, kind
# What the tokens of each unmatured T-bill pay at maturity: bill asset -> (cash asset, cash
# units per unit of face). The engine's markets say it (`Custody.redemptions`).
Redemptions = Mapping[str, tuple[str, int]]
Spend = tuple[int, str, int]  # account, asset, amount of a hold a chain uses up


class Ledger(PendingWithdrawals):
    """Balances changed only by booked chains of transfers, holds and releases.

    Every way a balance changes (holds, releases, DvP, mint, burn, withdrawals, redemptions,
    corporate actions) goes through this one owner of the balances, so that each keeps the
    same invariants (docs/settlement.md); the withdrawals' methods are written apart, in
    `settlement.withdrawals` (its base), which keeps this class near 400 lines."""

    def __init__(self) -> None:
        self.assets: dict[str, AssetSpec] = {}
        self.participants: dict[int, Participant] = {}
        self.balances: dict[tuple[int, str], Balance] = {}
        self.attestations: dict[str, Attestation] = {}
        self.withdrawals: dict[int, Withdrawal] = {}
        # how the newest finished withdrawals ended, oldest first (`settlement.withdrawals`)
        self.finished_withdrawals: dict[int, FinishedWithdrawal] = {}
        self.last_transfer_id = 0
        self.last_chain_id = 0
        self.last_withdrawal_id = 0
        # Booked since the last `drain`, in id order; the engine's `Clearing.settle` books a
        # trade's chain itself (the legs of `settle` written out) and appends its transfers.
        self.undrained: list[Transfer] = []
        # (rounding, fee income) balances per cash asset, for those trades, None for one not
        # made yet: derived from `balances` (`balance` forgets an asset's pair when it makes one
        # of them), so neither imaged nor hashed.
        self.venue_cash: dict[str, tuple[Balance | None, Balance | None]] = {}

    def image(self) -> LedgerImage:
        return LedgerImage(
            list(self.assets.values()),
            list(self.participants.values()),
            [(a, asset, b.total, b.held) for (a, asset), b in self.balances.items()],
            list(self.attestations.values()),
            list(self.withdrawals.values()),
            self.last_transfer_id,
            self.last_chain_id,
            self.last_withdrawal_id,
            list(self.undrained),
            list(self.finished_withdrawals.values()),
        )

    @classmethod
    def from_image(cls, image: LedgerImage) -> "Ledger":
        ledger = cls()
        ledger.assets = {spec.code: spec for spec in image.assets}
        ledger.participants = {p.account_id: p for p in image.participants}
        for account, asset, total, held in image.balances:
            balance = ledger.balance(account, asset)
            balance.total, balance.held = total, held
        ledger.attestations = {a.asset: a for a in image.attestations}
        ledger.withdrawals = {w.withdrawal_id: w for w in image.withdrawals}
        ledger.last_transfer_id = image.last_transfer_id
        ledger.last_chain_id = image.last_chain_id
        ledger.last_withdrawal_id = image.last_withdrawal_id
        ledger.undrained = list(image.undrained)
        ledger.finished_withdrawals = {f.withdrawal_id: f for f in image.finished_withdrawals}
        ledger.check_invariants()
        return ledger

    # ----------------------------------------------------------------- reference data

    def add_asset(self, spec: AssetSpec) -> Refused | None:
        if not spec.code or len(spec.code) > ASSET_CODE_LENGTH_MAX:
            return Refused("BAD_PARAM", f"asset codes have 1..{ASSET_CODE_LENGTH_MAX} characters")
        if not 0 <= spec.scale <= ASSET_SCALE_MAX:
            return Refused("BAD_PARAM", f"asset scale must be within 0..{ASSET_SCALE_MAX}")
        if spec.code in self.assets:
            return Refused("ASSET_EXISTS", f"asset {spec.code} exists")
        self.assets[spec.code] = spec
        return None

    def add_participant(self, participant: Participant) -> Refused | None:
        if participant.account_id <= 0:
            return Refused("BAD_PARAM", "participant account ids are positive")
        if len(participant.jurisdiction) != 2:
            return Refused("BAD_PARAM", "jurisdiction is a two-letter country code")
        if len(participant.name) > ACCOUNT_NAME_LENGTH_MAX:
            detail = f"account names have at most {ACCOUNT_NAME_LENGTH_MAX} characters"
            return Refused("BAD_PARAM", detail)
        if participant.account_id in self.participants:
            return Refused("ACCOUNT_EXISTS", f"account {participant.account_id} exists")
        self.participants[participant.account_id] = participant
        return None

    def attest(
        self,
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

    def _restated(self, previous: Attestation) -> str:
        scale = self.assets[previous.asset].scale
        return (
            f"{previous.asset} reserves as of {previous.as_of_us} are recorded as"
            f" {decimal_text(previous.amount, scale)}: a statement for the same moment cannot"
            " say otherwise (a corrected one needs a later as_of)"
        )

    # ----------------------------------------------------------------- queries

    def balance(self, account: int, asset: str) -> Balance:
        """The account's balance in `asset`, created empty on first use."""
        key = (account, asset)
        balance = self.balances.get(key)
        if balance is None:
            balance = self.balances[key] = Balance()
            if account in (ROUNDING, FEE_INCOME):  # `Clearing.settle` must look again
                self.venue_cash.pop(asset, None)
        return balance

    def supply(self, asset: str) -> int:
        """Tokens in circulation: minus what the issuance account has given out."""
        balance = self.balances.get((ISSUANCE, asset))
        return -balance.total if balance is not None else 0

    def holders(self, asset: str) -> list[tuple[int, int]]:
        """(participant, total) of everyone holding some of `asset`, by account id."""
        return sorted(
            (account, balance.total)
            for (account, code), balance in self.balances.items()
            if code == asset and account > 0 and balance.total > 0
        )

    def reserves_report(self) -> list[ReserveLine]:
        """Proof of reserves: supply against the latest attestation, per asset."""
        lines = []
        for code in sorted(self.assets):
            attestation = self.attestations.get(code)
            attested = attestation.amount if attestation else 0
            supply = self.supply(code)
            as_of = attestation.as_of_us if attestation else 0
            lines.append(ReserveLine(code, supply, attested, as_of, supply <= attested))
        return lines

    def drain(self) -> list[Transfer]:
        """Transfers booked since the last drain, in order, for the store."""
        booked, self.undrained = self.undrained, []
        return booked

    def first_undrained_id(self) -> int:
        """The id of the first transfer booked since the last drain (the next one's if none):
        a store that holds less than the ids before it cannot be caught up from here."""
        if self.undrained:
            return self.undrained[0].transfer_id
        return self.last_transfer_id + 1

    # ----------------------------------------------------------------- holds

    def hold(self, account: int, asset: str, amount: int) -> bool:
        """Reserve `amount` of the account's available balance; False (nothing held) if short."""
        assert amount >= 0, f"negative hold {amount}"
        balance = self.balances.get((account, asset))
        if balance is None:
            return amount == 0  # nothing to hold from: a refusal must not create a row
        if balance.total - balance.held < amount:
            return False
        balance.held += amount
        return True

    def release(self, account: int, asset: str, amount: int) -> None:
        """Give back part of a hold."""
        balance = self.balances[(account, asset)]
        assert 0 <= amount <= balance.held, f"release {amount} of {balance.held} held"
        balance.held -= amount

    # ----------------------------------------------------------------- booking

    def refusal(
        self, legs: Iterable[Leg], spend: Iterable[Spend] = (), legs_max: int = CHAIN_LEGS_MAX
    ) -> Refused | None:
        """Why this chain cannot be booked, or None. `spend` are holds the chain uses up."""
        change: dict[tuple[int, str], int] = {}
        count = 0
        for debit, credit, asset, amount, _ in legs:
            count += 1
            if amount <= 0:
                return Refused("BAD_PARAM", f"transfer amounts must be positive, not {amount}")
            if debit == credit:
                return Refused("BAD_PARAM", f"account {debit} cannot pay itself")
            if asset not in self.assets:
                return Refused("UNKNOWN_ASSET", f"unknown asset {asset}")
            for account in (debit, credit):
                if account not in self.participants and account not in VENUE_ACCOUNTS:
                    return Refused("UNKNOWN_ACCOUNT", f"unknown account {account}")
            change[(debit, asset)] = change.get((debit, asset), 0) - amount
            change[(credit, asset)] = change.get((credit, asset), 0) + amount
        if not 0 < count <= legs_max:
            return Refused("BAD_PARAM", f"a chain has 1..{legs_max} legs")
        spent = {(account, asset): amount for account, asset, amount in spend}
        for (account, asset), delta in change.items():
            if account < 0 or delta >= 0:
                continue
            balance = self.balances.get((account, asset)) or Balance()
            free = balance.total - balance.held + spent.get((account, asset), 0)
            if free + delta < 0:
                return Refused(
                    "INSUFFICIENT_BALANCE", f"account {account} lacks {-(free + delta)} {asset}"
                )
        return None

    def book(
        self,
        legs: list[Leg],
        ts_us: int,
        spend: Iterable[Spend] = (),
        legs_max: int = CHAIN_LEGS_MAX,
    ) -> list[Transfer] | Refused:
        """Apply a chain of legs atomically: the booked transfers, or why nothing was booked.

        `spend` lists holds the chain uses up: they are released as the legs debit the same
        funds, as when a fill spends what its order held.
        """
        spend = list(spend)
        refused = self.refusal(legs, spend, legs_max)
        if refused is not None:
            return refused
        for account, asset, amount in spend:
            self.release(account, asset, amount)
        self.last_chain_id = chain_id = self.last_chain_id + 1
        booked = []
        for debit, credit, asset, amount, kind in legs:
            self.last_transfer_id += 1
            self.balance(debit, asset).total -= amount
            self.balance(credit, asset).total += amount
            booked.append(
                Transfer(self.last_transfer_id, chain_id, debit, credit, asset, amount, kind, ts_us)
            )
        self.undrained.extend(booked)
        return booked

    def settle(self, legs: list[Leg], ts_us: int, spend: Iterable[Spend]) -> list[Transfer]:
        """Book a chain that holds already guarantee (a trade's DvP), without re-checking it.

        The hot path of every trade: the holds were checked when the orders were accepted,
        so the legs are applied directly, and a participant left below zero or below what it
        holds is a broken invariant (an assertion), not a refusal.
        """
        balances = self.balances
        for account, asset, amount in spend:
            balance = balances[(account, asset)]
            balance.held -= amount
            assert balance.held >= 0, f"account {account} spent more {asset} than it held"
        self.last_chain_id = chain_id = self.last_chain_id + 1
        transfer_id = self.last_transfer_id
        booked = []
        for debit, credit, asset, amount, kind in legs:
            transfer_id += 1
            assert debit != credit, f"account {debit} paying itself"
            source = balances.get((debit, asset)) or self.balance(debit, asset)
            source.total -= amount
            target = balances.get((credit, asset)) or self.balance(credit, asset)
            target.total += amount
            if debit > 0:
                assert source.total >= source.held, f"account {debit} overdrew {asset}"
            booked.append(
                Transfer(transfer_id, chain_id, debit, credit, asset, amount, kind, ts_us)
            )
        self.last_transfer_id = transfer_id
        self.undrained.extend(booked)
        return booked

    def position(self, account: int, base: str, quote: str) -> tuple[Balance, Balance] | None:
        """The account's (base, quote) balances if both exist, else None (nothing is made).

        What the engine's `Clearing.settle` books a trade party's legs against; callers may
        remember it, as balances are never removed or replaced.
        """
        balances = self.balances
        base_balance = balances.get((account, base))
        quote_balance = balances.get((account, quote))
        if base_balance is None or quote_balance is None:
            return None
        return base_balance, quote_balance

    def find_venue_cash(self, quote: str) -> tuple[Balance | None, Balance | None]:
        """The venue's rounding and fee balances in `quote` (None: not made yet), remembered.

        Balances are never removed or replaced, so a balance found stays valid for good; one
        not made yet is looked up again once `balance` makes it (it forgets the pair). Trades
        whose fills are all worth whole cash units never make the rounding balance: they
        book in `Clearing.settle` without it, and without looking for it on every trade.
        """
        venue = self.venue_cash[quote] = (
            self.balances.get((ROUNDING, quote)),
            self.balances.get((FEE_INCOME, quote)),
        )
        return venue

    # ----------------------------------------------------------------- supply

    def mint(
        self,
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

    def supply_at_maturity(self, asset: str, redemptions: Redemptions) -> int:
        """The supply of `asset` once every bill paying in it has paid par for its tokens out
        (a matured bill's: those its pending withdrawals hold, which a void redeems)."""
        par = sum(
            self.supply(bill) * per_unit
            for bill, (cash, per_unit) in redemptions.items()
            if cash == asset
        )
        return self.supply(asset) + par

    def supply_past_max(self, asset: str, amount: int, redemptions: Redemptions) -> str | None:
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

    def redeem_at_par(
        self,
        asset: str,
        cash_asset: str,
        cash_per_unit: int,
        ts_us: int,
        holders: list[tuple[int, int]] | None = None,
    ) -> list[Transfer]:
        """Burn every holder's available `asset` and pay each `cash_per_unit` cash per unit,
        atomically (or only `holders`' given amounts: a withdrawal voided after maturity).

        Cash is minted into the redemption account against the par proceeds and paid out
        from there, in one chain; each holder appears exactly once. What a pending
        withdrawal holds is not redeemed: the custodian may have paid it out already. Returns
        [] if nobody holds the asset.
        """
        if holders is None:
            holders = [
                (account, self.balances[(account, asset)].available)
                for account, _ in self.holders(asset)
                if self.balances[(account, asset)].available > 0
            ]
        if not holders:
            return []
        par_total = sum(amount for _, amount in holders) * cash_per_unit
        legs: list[Leg] = [(ISSUANCE, REDEMPTION, cash_asset, par_total, TransferKind.MINT)]
        for account, amount in holders:
            legs.append((account, ISSUANCE, asset, amount, TransferKind.BURN))
            legs.append(
                (REDEMPTION, account, cash_asset, amount * cash_per_unit, TransferKind.REDEMPTION)
            )
        booked = self.book(legs, ts_us, legs_max=len(legs))
        assert not isinstance(booked, Refused), f"redemption failed: {booked}"
        return booked

    # ----------------------------------------------------------------- checks

    def check_invariants(self) -> None:
        """Assert conservation per asset, no participant below zero, holds that add up."""
        sums: dict[str, int] = {}
        for (account, asset), balance in self.balances.items():
            sums[asset] = sums.get(asset, 0) + balance.total
            assert balance.held >= 0, f"account {account} holds {balance.held} {asset}"
            if account > 0:
                assert balance.held <= balance.total, (
                    f"account {account} holds {balance.held} of {balance.total} {asset}"
                )
            else:
                assert balance.held == 0, f"venue account {account} holds {asset}"
        for asset, total in sums.items():
            assert total == 0, f"{asset} sums to {total}, not zero"
        self.check_finished_withdrawals()


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
