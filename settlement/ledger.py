"""The double-entry ledger: assets, accounts, balances with holds, and atomic transfer chains.

Owns every balance of every account (participants and the venue's own accounts), what is
held of it, pending withdrawals (their methods in `settlement.withdrawals`), the reserve
attestations that bound supply (with the mints, in `settlement.reserves`), and the sequence
of booked transfers. A chain of transfers is checked whole and then applied whole; a
refusal is returned as a `Refused` (a stable reason name and a message), never raised, and
changes nothing. Each asset sums to zero over
all accounts at every moment (minting debits the issuance account), and no mint lets a
supply pass `SUPPLY_MAX`, counting the cash the caller's T-bills will mint at maturity.
Pure: the store persists what `drain()` hands it.
"""

from collections.abc import Iterable

import msgspec

from settlement.refusals import Refused as Refused
from settlement.reserves import HOUR_US as HOUR_US
from settlement.reserves import SUPPLY_MAX as SUPPLY_MAX
from settlement.reserves import Redemptions as Redemptions
from settlement.reserves import ReserveLine as ReserveLine
from settlement.reserves import Reserves
from settlement.reserves import decimal_text as decimal_text
from settlement.reserves import exceeded_detail as exceeded_detail
from settlement.reserves import older_detail as older_detail
from settlement.reserves import stale_detail as stale_detail
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
Spend = tuple[int, str, int]  # account, asset, amount of a hold a chain uses up


class Ledger(Reserves, PendingWithdrawals):
    """Balances changed only by booked chains of transfers, holds and releases.

    Every way a balance changes (holds, releases, DvP, mint, burn, withdrawals, redemptions,
    corporate actions) goes through this one owner of the balances, so that each keeps the
    same invariants (docs/settlement.md). Two parts are written apart, in its bases:
    reserves, mints and the supply bound (`settlement.reserves`) and the withdrawals
    (`settlement.withdrawals`), which keeps this class within 400 lines."""

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
