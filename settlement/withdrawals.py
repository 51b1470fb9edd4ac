"""Pending withdrawals: tokens held until the custodian pays them out (confirm) or not (void).

Owns the ledger's two-phase burn: the `Withdrawal` record, requesting one (a hold),
confirming it (a burn back into issuance), voiding it (a release), rescaling it at a split,
and the rule that keeps it pending through corporate actions. `Ledger` has these methods as
its own (`PendingWithdrawals` is its base), so that every balance still changes in one
owner, under the same invariants; this module keeps them apart from the rest of the
ledger. It also remembers how the newest finished withdrawals ended (`FinishedWithdrawal`),
so that a confirm or void of one says whether it was confirmed or voided. Pure. Limits:
`PENDING_WITHDRAWALS_MAX` per account, `FINISHED_WITHDRAWALS_MAX` remembered.
"""

from typing import TYPE_CHECKING, Protocol

import msgspec

from settlement.refusals import Refused
from settlement.transfers import ISSUANCE, Transfer, TransferKind

if TYPE_CHECKING:
    from settlement.ledger import AssetSpec, Balance, Leg, Participant, Spend

PENDING_WITHDRAWALS_MAX = 100  # per account: a custodian pays out within a day
# How many finished withdrawals are remembered (the newest): an operator's second confirm or
# void of one comes within days, when a venue finishes far fewer; ~170 bytes each in memory
# (1.7 MB) and ~55 in each snapshot and state-hash encoding (550 KB).
FINISHED_WITHDRAWALS_MAX = 10_000


class Withdrawal(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """Tokens held until the custodian pays them out (confirm) or does not (void).

    `held_through_actions`: the withdrawal stays pending through a split of its asset
    (rescaled to new shares) and a maturity of its bill (not paid par): the custodian may
    already have paid it out, and only the operator's confirm or void says which. False on
    withdrawals requested before that rule (their journals void them there, and must replay
    as they ran); left out of the encoding then, so those encode, hash and snapshot as before
    the field existed."""

    withdrawal_id: int
    account: int
    asset: str
    amount: int
    held_through_actions: bool = False
    # When it was requested (µs), for the operator's list; 0 on withdrawals whose command
    # did not ask for it (`RequestWithdrawal.requested_at_kept`: every one before it),
    # left out of the encoding then, so those encode, hash and snapshot as before.
    requested_at_us: int = 0


class FinishedWithdrawal(msgspec.Struct, frozen=True, gc=False):
    """How a withdrawal ended: confirmed (burned) or not (voided: released), and when.
    Remembered only where the confirm or void asked (`finish_kept`), so that a journal
    written before replays, hashes and snapshots as it did."""

    withdrawal_id: int
    confirmed: bool
    finished_at_us: int


class _Books(Protocol):
    """What of the ledger the withdrawals' methods use (`settlement.ledger.Ledger`)."""

    participants: "dict[int, Participant]"
    assets: "dict[str, AssetSpec]"
    balances: "dict[tuple[int, str], Balance]"
    withdrawals: dict[int, Withdrawal]
    finished_withdrawals: dict[int, FinishedWithdrawal]
    last_withdrawal_id: int

    def hold(self, account: int, asset: str, amount: int) -> bool: ...

    def release(self, account: int, asset: str, amount: int) -> None: ...

    def book(
        self, legs: "list[Leg]", ts_us: int, spend: "list[Spend]" = ..., legs_max: int = ...
    ) -> list[Transfer] | Refused: ...


class PendingWithdrawals:
    """The ledger's withdrawal methods (its `withdrawals`, `last_withdrawal_id`)."""

    def request_withdrawal(
        self: _Books,
        account: int,
        asset: str,
        amount: int,
        held_through_actions: bool = False,
        requested_at_us: int = 0,
    ) -> Withdrawal | Refused:
        """Phase one of a burn: hold the tokens until the custodian pays out. `requested_at_us`
        (0: not kept) is recorded on the withdrawal, for the operator's list."""
        if amount <= 0:
            return Refused("BAD_PARAM", "withdrawal amounts must be positive")
        if account not in self.participants:
            return Refused("UNKNOWN_ACCOUNT", f"unknown account {account}")
        if asset not in self.assets:
            return Refused("UNKNOWN_ASSET", f"unknown asset {asset}")
        pending = sum(1 for w in self.withdrawals.values() if w.account == account)
        if pending >= PENDING_WITHDRAWALS_MAX:
            return Refused("BAD_PARAM", too_many_withdrawals_detail(account))
        if not self.hold(account, asset, amount):
            balance = self.balances.get((account, asset))  # a get: a refusal creates no row
            available = balance.available if balance is not None else 0
            return Refused(
                "INSUFFICIENT_BALANCE",
                f"account {account} has {available} {asset} units available, {amount} asked",
            )
        self.last_withdrawal_id += 1
        withdrawal = Withdrawal(
            self.last_withdrawal_id, account, asset, amount, held_through_actions, requested_at_us
        )
        self.withdrawals[withdrawal.withdrawal_id] = withdrawal
        return withdrawal

    def hold_through_actions(self: _Books) -> None:
        """Keep every pending withdrawal pending through corporate actions from now on, as
        one requested today is: also those requested before that rule, which a split or a
        maturity voided (paying them twice if the custodian had paid them out). Changes no
        balance: their tokens stay held as they were."""
        for withdrawal_id, withdrawal in self.withdrawals.items():
            if not withdrawal.held_through_actions:
                held = msgspec.structs.replace(withdrawal, held_through_actions=True)
                self.withdrawals[withdrawal_id] = held

    def pending_before_actions_held(self: _Books) -> bool:
        """Whether a pending withdrawal was requested before withdrawals were held through
        corporate actions (`hold_through_actions` has not marked it)."""
        return any(not w.held_through_actions for w in self.withdrawals.values())

    def confirm_withdrawal(
        self: _Books, withdrawal_id: int, ts_us: int, remember: bool = False
    ) -> list[Transfer] | Refused:
        """Phase two: the custodian paid out; burn the held tokens back into issuance.
        `remember`: keep that it was confirmed (`FinishedWithdrawal`)."""
        withdrawal = self.withdrawals.get(withdrawal_id)
        if withdrawal is None:
            return _not_pending(self, withdrawal_id)
        account, asset, amount = withdrawal.account, withdrawal.asset, withdrawal.amount
        legs: list[Leg] = [(account, ISSUANCE, asset, amount, TransferKind.BURN)]
        booked = self.book(legs, ts_us, spend=[(account, asset, amount)])
        assert not isinstance(booked, Refused), f"a held withdrawal failed to burn: {booked}"
        del self.withdrawals[withdrawal_id]
        if remember:
            _remember(self, FinishedWithdrawal(withdrawal_id, True, ts_us))
        return booked

    def void_withdrawal(
        self: _Books, withdrawal_id: int, ts_us: int = 0, remember: bool = False
    ) -> Withdrawal | Refused:
        """Phase two, the other way: nothing was paid out; release the hold. `remember`:
        keep that it was voided, at `ts_us` (`FinishedWithdrawal`)."""
        withdrawal = self.withdrawals.pop(withdrawal_id, None)
        if withdrawal is None:
            return _not_pending(self, withdrawal_id)
        self.release(withdrawal.account, withdrawal.asset, withdrawal.amount)
        if remember:
            _remember(self, FinishedWithdrawal(withdrawal_id, False, ts_us))
        return withdrawal

    def rescale_withdrawal(self: _Books, withdrawal_id: int, amount: int) -> Withdrawal | None:
        """A split: the pending withdrawal now holds `amount` units (new shares) of its
        asset, its old hold having been released before the split rescaled the balances;
        with nothing left to hold (`amount` 0) it is dropped, and None returned."""
        withdrawal = self.withdrawals[withdrawal_id]
        if amount == 0:
            del self.withdrawals[withdrawal_id]
            return None
        rescaled = msgspec.structs.replace(withdrawal, amount=amount)
        held = self.hold(withdrawal.account, withdrawal.asset, amount)
        assert held, f"{withdrawal} cannot hold its rescaled {amount}"
        self.withdrawals[withdrawal_id] = rescaled
        return rescaled

    def check_finished_withdrawals(self: _Books) -> None:
        """Assert the finished withdrawals remembered are within their bound, each under its
        own id, none of them pending."""
        finished = self.finished_withdrawals
        assert len(finished) <= FINISHED_WITHDRAWALS_MAX, f"{len(finished)} finished kept"
        for withdrawal_id, done in finished.items():
            assert done.withdrawal_id == withdrawal_id, f"{done} filed under {withdrawal_id}"
            assert withdrawal_id not in self.withdrawals, f"withdrawal {withdrawal_id} finished"

    def withdrawal_holds(self: _Books) -> dict[tuple[int, str], int]:
        """What pending withdrawals hold, per (account, asset)."""
        held: dict[tuple[int, str], int] = {}
        for w in self.withdrawals.values():
            held[(w.account, w.asset)] = held.get((w.account, w.asset), 0) + w.amount
        return held


def too_many_withdrawals_detail(account: int) -> str:
    """Why an account can request no more withdrawals, and what frees one."""
    return (
        f"at most {PENDING_WITHDRAWALS_MAX} pending withdrawals: account {account} has"
        f" {PENDING_WITHDRAWALS_MAX}; confirm or void one of them first"
    )


def _remember(books: _Books, done: FinishedWithdrawal) -> None:
    """Remember how a withdrawal ended, forgetting the oldest past the bound."""
    finished = books.finished_withdrawals
    finished[done.withdrawal_id] = done
    if len(finished) > FINISHED_WITHDRAWALS_MAX:
        del finished[next(iter(finished))]


def _not_pending(books: _Books, withdrawal_id: int) -> Refused:
    """Why a confirm or void of `withdrawal_id` does nothing: it was confirmed or voided
    (if that is remembered), else there is no such pending withdrawal."""
    done = books.finished_withdrawals.get(withdrawal_id)
    if done is None:
        return Refused("UNKNOWN_WITHDRAWAL", f"no pending withdrawal {withdrawal_id}")
    if done.confirmed:
        reason, how = "WITHDRAWAL_ALREADY_CONFIRMED", "confirmed (its tokens burned)"
    else:
        reason, how = "WITHDRAWAL_ALREADY_VOIDED", "voided (its hold released)"
    detail = (
        f"withdrawal {withdrawal_id} was {how} at {done.finished_at_us} µs: it is no longer"
        " pending; nothing done"
    )
    return Refused(reason, detail)
