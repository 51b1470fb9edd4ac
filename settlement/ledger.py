"""The double-entry ledger: assets, accounts, balances with holds, and atomic transfer chains.

Owns every balance of every account (participants and the venue's own accounts), what is
held of it, the reserve attestations that bound supply, and the sequence of booked
transfers. A chain of transfers is checked whole and then applied whole: if any leg would
take a participant below zero or below what it holds, nothing is applied and the refusal is
returned, never raised. Each asset sums to zero over all accounts at every moment (minting
debits the issuance account). Pure: the store persists what `drain()` hands it.
"""

from collections.abc import Iterable

import msgspec

from settlement.transfers import ISSUANCE, VENUE_ACCOUNTS, Transfer, TransferKind

ASSET_CODE_LENGTH_MAX = 24  # "TB-2027-03-04" and equity tickers fit with room to spare
CHAIN_LEGS_MAX = 64  # a trade has 4-6 legs; a T-bill redemption is chunked per holder


class AssetSpec(msgspec.Struct, frozen=True, gc=False):
    code: str
    scale: int  # integer units per whole: 10**scale


class Participant(msgspec.Struct, frozen=True, gc=False):
    account_id: int
    name: str
    kyc_approved: bool
    jurisdiction: str  # ISO 3166 alpha-2, e.g. "US", "DE"


class Attestation(msgspec.Struct, frozen=True, gc=False):
    """A custodian's statement: this much of the asset is held in reserve, as of then."""

    asset: str
    amount: int
    as_of_us: int


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


class Ledger:
    """Balances changed only by booked chains of transfers, holds and releases."""

    def __init__(self) -> None:
        self.assets: dict[str, AssetSpec] = {}
        self.participants: dict[int, Participant] = {}
        self.balances: dict[tuple[int, str], Balance] = {}
        self.attestations: dict[str, Attestation] = {}
        self.last_transfer_id = 0
        self.last_chain_id = 0
        self._undrained: list[Transfer] = []

    # ----------------------------------------------------------------- reference data

    def add_asset(self, spec: AssetSpec) -> str | None:
        """Register an asset; returns why not, or None."""
        if not spec.code or len(spec.code) > ASSET_CODE_LENGTH_MAX:
            return f"asset code must have 1..{ASSET_CODE_LENGTH_MAX} characters"
        if not 0 <= spec.scale <= 18:
            return "asset scale must be within 0..18"
        if spec.code in self.assets:
            return f"asset {spec.code} exists"
        self.assets[spec.code] = spec
        return None

    def add_participant(self, participant: Participant) -> str | None:
        """Open a participant account; returns why not, or None."""
        if participant.account_id <= 0:
            return "participant account ids are positive"
        if participant.account_id in self.participants:
            return f"account {participant.account_id} exists"
        self.participants[participant.account_id] = participant
        return None

    def attest(self, attestation: Attestation) -> str | None:
        """Record the custodian's latest reserves for an asset; returns why not, or None."""
        if attestation.asset not in self.assets:
            return f"unknown asset {attestation.asset}"
        if attestation.amount < 0:
            return "reserves cannot be negative"
        previous = self.attestations.get(attestation.asset)
        if previous is not None and attestation.as_of_us < previous.as_of_us:
            return "an attestation older than the latest one"
        self.attestations[attestation.asset] = attestation
        return None

    # ----------------------------------------------------------------- queries

    def balance(self, account: int, asset: str) -> Balance:
        """The account's balance in `asset`, created empty on first use."""
        key = (account, asset)
        balance = self.balances.get(key)
        if balance is None:
            balance = self.balances[key] = Balance()
        return balance

    def supply(self, asset: str) -> int:
        """Tokens in circulation: minus what the issuance account has given out."""
        balance = self.balances.get((ISSUANCE, asset))
        return -balance.total if balance is not None else 0

    def drain(self) -> list[Transfer]:
        """Transfers booked since the last drain, in order, for the store."""
        booked, self._undrained = self._undrained, []
        return booked

    # ----------------------------------------------------------------- holds

    def hold(self, account: int, asset: str, amount: int) -> bool:
        """Reserve `amount` of the account's available balance; False (nothing held) if short."""
        assert amount >= 0, f"negative hold {amount}"
        balance = self.balance(account, asset)
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
        self, legs: Iterable[Leg], spend_held: Iterable[tuple[int, str, int]] = ()
    ) -> str | None:
        """Why this chain cannot be booked, or None. `spend_held` are holds it consumes."""
        change: dict[tuple[int, str], int] = {}
        count = 0
        for debit, credit, asset, amount, _ in legs:
            count += 1
            if amount <= 0:
                return f"transfer amounts must be positive, not {amount}"
            if asset not in self.assets:
                return f"unknown asset {asset}"
            for account in (debit, credit):
                if account not in self.participants and account not in VENUE_ACCOUNTS:
                    return f"unknown account {account}"
            change[(debit, asset)] = change.get((debit, asset), 0) - amount
            change[(credit, asset)] = change.get((credit, asset), 0) + amount
        if not 0 < count <= CHAIN_LEGS_MAX:
            return f"a chain has 1..{CHAIN_LEGS_MAX} legs"
        held_spent = {(a, s): n for a, s, n in spend_held}
        for (account, asset), delta in change.items():
            if account < 0 or delta >= 0:
                continue
            balance = self.balances.get((account, asset)) or Balance()
            free = balance.total - balance.held + held_spent.get((account, asset), 0)
            if free + delta < 0:
                return f"account {account} lacks {-(free + delta)} units of {asset}"
        return None

    def book(
        self,
        legs: list[Leg],
        ts_us: int,
        spend_held: Iterable[tuple[int, str, int]] = (),
    ) -> list[Transfer] | str:
        """Apply a chain of legs atomically; the booked transfers, or why nothing was booked.

        `spend_held` lists (account, asset, amount) holds the chain uses up: they are
        released as the legs debit the same funds, as when a fill spends an order's hold.
        """
        spend = list(spend_held)
        refusal = self.refusal(legs, spend)
        if refusal is not None:
            return refusal
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
        self._undrained.extend(booked)
        return booked

    # ----------------------------------------------------------------- supply

    def mint(
        self, account: int, asset: str, amount: int, ts_us: int, staleness_max_us: int
    ) -> list[Transfer] | str:
        """Issue tokens to a participant against fresh reserves; the transfer, or why not."""
        attestation = self.attestations.get(asset)
        if attestation is None:
            return f"no reserves attested for {asset}"
        if ts_us - attestation.as_of_us > staleness_max_us:
            return f"the reserve attestation for {asset} is stale"
        if self.supply(asset) + amount > attestation.amount:
            return f"supply of {asset} would exceed attested reserves"
        return self.book([(ISSUANCE, account, asset, amount, TransferKind.MINT)], ts_us)

    def request_withdrawal(self, account: int, asset: str, amount: int) -> str | None:
        """Phase one of a burn: hold the tokens. Returns why not, or None."""
        if amount <= 0:
            return "withdrawal amounts must be positive"
        if account not in self.participants:
            return f"unknown account {account}"
        if not self.hold(account, asset, amount):
            return f"account {account} lacks {amount} available units of {asset}"
        return None

    def confirm_withdrawal(
        self, account: int, asset: str, amount: int, ts_us: int
    ) -> list[Transfer] | str:
        """Phase two: burn the held tokens back into issuance."""
        legs: list[Leg] = [(account, ISSUANCE, asset, amount, TransferKind.BURN)]
        return self.book(legs, ts_us, spend_held=[(account, asset, amount)])

    def void_withdrawal(self, account: int, asset: str, amount: int) -> None:
        """Phase two, the other way: the custodian did not pay out; release the hold."""
        self.release(account, asset, amount)

    # ----------------------------------------------------------------- checks

    def check_invariants(self) -> None:
        """Assert conservation per asset and that no participant is below zero or over-held."""
        sums: dict[str, int] = {}
        for (account, asset), balance in self.balances.items():
            sums[asset] = sums.get(asset, 0) + balance.total
            assert balance.held >= 0, f"account {account} holds {balance.held} {asset}"
            if account > 0:
                assert balance.held <= balance.total, (
                    f"account {account} holds {balance.held} of {balance.total} {asset}"
                )
        for asset, total in sums.items():
            assert total == 0, f"{asset} sums to {total}, not zero"
