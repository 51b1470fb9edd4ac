"""Confirming or voiding a withdrawal only if it is the one the operator expects.

The finding (session 25): `ConfirmWithdrawal` and `VoidWithdrawal` named a withdrawal by its
bare id, so a mistyped id confirmed (burned, irreversibly) another account's withdrawal.
The operator may now say which withdrawal it expects (`expected_account`, `expected_asset`,
`expected_amount`); one that differs is refused, naming what the withdrawal really is, and
nothing changes. Nothing expected: as before.
"""

import pytest

from engine.commands import (
    ConfirmWithdrawal,
    Deposit,
    OperatorCommand,
    RequestWithdrawal,
    VoidWithdrawal,
)
from engine.events import CommandRejected, OperationRepeated, WithdrawalConfirmed, WithdrawalVoided
from engine.reasons import ErrorCode
from tests.engine.test_custody import USD, Custodied

Phase2 = type[ConfirmWithdrawal] | type[VoidWithdrawal]


def two_withdrawals() -> tuple[Custodied, int, int]:
    """Account 1 withdraws 60 USD, account 2 withdraws 25 USD: the venue and the two ids."""
    custodied = Custodied()
    ids = []
    for account, amount in ((1, 60 * USD), (2, 25 * USD)):
        custodied.ok(Deposit(account=account, asset="USD", amount=100 * USD))
        events = custodied.ok(RequestWithdrawal(account=account, asset="USD", amount=amount))
        ids.append(events[0].withdrawal.withdrawal_id)  # type: ignore[attr-defined]
    return custodied, ids[0], ids[1]


@pytest.mark.parametrize("command", [ConfirmWithdrawal, VoidWithdrawal])
@pytest.mark.parametrize(
    ("expected", "said"),
    [
        ({"expected_account": 1}, "account 1"),
        ({"expected_asset": "TB-X"}, "asset TB-X"),
        ({"expected_amount": 60 * USD}, "amount 60.000000"),
        (
            {"expected_account": 1, "expected_asset": "USD", "expected_amount": 60 * USD},
            "account 1",
        ),
    ],
)
def test_another_withdrawal_than_expected_is_refused_saying_what_it_is(
    command: Phase2, expected: dict[str, object], said: str
) -> None:
    """The mistyped id: account 2's withdrawal named where account 1's was meant."""
    custodied, _, theirs = two_withdrawals()
    ledger = custodied.venue.ledger
    assert ledger is not None
    before = ledger.image()
    events = custodied.do(command(withdrawal_id=theirs, **expected))  # type: ignore[arg-type]
    assert len(events) == 1 and isinstance(events[0], CommandRejected), events
    rejected = events[0]
    assert rejected.reason is ErrorCode.BAD_PARAM
    assert f"withdrawal {theirs} is account 2's 25.000000 USD" in rejected.detail
    assert said in rejected.detail and "nothing done" in rejected.detail
    assert rejected.account == 0  # not told to account 1 nor 2: it is the operator's
    assert ledger.image() == before  # nothing burned, nothing released


@pytest.mark.parametrize(
    ("command", "done"),
    [(ConfirmWithdrawal, WithdrawalConfirmed), (VoidWithdrawal, WithdrawalVoided)],
)
def test_the_withdrawal_expected_is_confirmed_or_voided(command: Phase2, done: type) -> None:
    custodied, mine, _ = two_withdrawals()
    expected = {"expected_account": 1, "expected_asset": "USD", "expected_amount": 60 * USD}
    events = custodied.ok(command(withdrawal_id=mine, **expected))  # type: ignore[arg-type]
    assert isinstance(events[0], done)
    ledger = custodied.venue.ledger
    assert ledger is not None and mine not in ledger.withdrawals


def test_an_unknown_withdrawal_is_unknown_whatever_is_expected() -> None:
    custodied, _, _ = two_withdrawals()
    command = ConfirmWithdrawal(withdrawal_id=99, expected_account=1)
    assert custodied.refused(command) is ErrorCode.UNKNOWN_WITHDRAWAL


def test_a_withdrawal_confirmed_without_expectations_is_confirmed_as_before() -> None:
    custodied, _, theirs = two_withdrawals()
    events = custodied.ok(ConfirmWithdrawal(withdrawal_id=theirs))
    assert isinstance(events[0], WithdrawalConfirmed) and custodied.total(2, "USD") == 75 * USD


def under(cl_op_id: str, command: OperatorCommand) -> OperatorCommand:
    import msgspec

    return msgspec.structs.replace(command, cl_op_id=cl_op_id)


def test_a_refused_expectation_is_not_remembered_and_a_repeat_is_answered() -> None:
    """Refused, the id is free: corrected, it passes; sent again, it is a repeat; with
    other expectations under the same id, `CL_OP_ID_REUSED`."""
    custodied, mine, _ = two_withdrawals()
    wrong = ConfirmWithdrawal(withdrawal_id=mine, expected_account=2)
    assert custodied.refused(under("op-1", wrong)) is ErrorCode.BAD_PARAM
    right = under("op-1", ConfirmWithdrawal(withdrawal_id=mine, expected_account=1))
    assert isinstance(custodied.ok(right)[0], WithdrawalConfirmed)
    assert isinstance(custodied.ok(right)[0], OperationRepeated)
    assert custodied.refused(under("op-1", wrong)) is ErrorCode.CL_OP_ID_REUSED
    bare = under("op-1", ConfirmWithdrawal(withdrawal_id=mine))
    assert custodied.refused(bare) is ErrorCode.CL_OP_ID_REUSED
