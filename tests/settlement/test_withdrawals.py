"""Pending withdrawals (`settlement.withdrawals`): requested as a hold, confirmed as a burn or
voided as a release, and refusals that say what was asked."""

from settlement.ledger import Ledger, Refused, Withdrawal
from tests.settlement.conftest import reason


def test_withdrawal_is_two_phase(ledger: Ledger) -> None:
    first = ledger.request_withdrawal(2, "AAPLx", 4_000_000)
    assert isinstance(first, Withdrawal)
    assert ledger.balance(2, "AAPLx").available == 6_000_000
    assert ledger.withdrawal_holds() == {(2, "AAPLx"): 4_000_000}
    assert ledger.void_withdrawal(first.withdrawal_id) == first
    assert ledger.balance(2, "AAPLx").available == 10_000_000
    assert reason(ledger.void_withdrawal(first.withdrawal_id)) == "UNKNOWN_WITHDRAWAL"
    second = ledger.request_withdrawal(2, "AAPLx", 4_000_000)
    assert isinstance(second, Withdrawal)
    assert not isinstance(ledger.confirm_withdrawal(second.withdrawal_id, 7), Refused)
    assert reason(ledger.confirm_withdrawal(second.withdrawal_id, 7)) == "UNKNOWN_WITHDRAWAL"
    assert ledger.supply("AAPLx") == 6_000_000
    assert reason(ledger.request_withdrawal(2, "AAPLx", 6_000_001)) == "INSUFFICIENT_BALANCE"
    ledger.check_invariants()


def test_a_short_withdrawal_says_what_is_available_and_what_was_asked(ledger: Ledger) -> None:
    """It said `lacks 10000001`: the amount asked, worded as if it were the shortfall."""
    refused = ledger.request_withdrawal(2, "AAPLx", 10_000_001)
    assert isinstance(refused, Refused) and refused.reason == "INSUFFICIENT_BALANCE"
    assert refused.detail == "account 2 has 10000000 AAPLx units available, 10000001 asked"
