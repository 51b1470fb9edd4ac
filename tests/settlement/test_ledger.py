"""The ledger: atomic chains, holds, conservation, and supply bounded by attested reserves."""

import pytest

from settlement.ledger import AssetSpec, Attestation, Ledger, Participant
from settlement.transfers import FEE_INCOME, ISSUANCE, TransferKind

DAY_US = 86_400_000_000
K = TransferKind


@pytest.fixture
def ledger() -> Ledger:
    ledger = Ledger()
    assert ledger.add_asset(AssetSpec("USD", 6)) is None
    assert ledger.add_asset(AssetSpec("AAPLx", 6)) is None
    for account in (1, 2):
        assert ledger.add_participant(Participant(account, f"p{account}", True, "DE")) is None
    assert ledger.attest(Attestation("USD", 1_000_000_000, 0)) is None
    assert ledger.attest(Attestation("AAPLx", 50_000_000, 0)) is None
    assert not isinstance(ledger.mint(1, "USD", 500_000_000, 1, DAY_US), str)
    assert not isinstance(ledger.mint(2, "AAPLx", 10_000_000, 1, DAY_US), str)
    return ledger


def test_mint_mirrors_supply_in_issuance(ledger: Ledger) -> None:
    assert ledger.balance(1, "USD").total == 500_000_000
    assert ledger.supply("USD") == 500_000_000
    assert ledger.balance(ISSUANCE, "USD").total == -500_000_000
    ledger.check_invariants()


def test_mint_is_bounded_by_fresh_reserves(ledger: Ledger) -> None:
    assert "exceed" in str(ledger.mint(1, "USD", 500_000_001, 2, DAY_US))
    assert "stale" in str(ledger.mint(1, "USD", 1, DAY_US + 1, DAY_US))
    assert "no reserves" in str(ledger.mint(1, "MSFTx", 1, 2, DAY_US))
    assert ledger.supply("USD") == 500_000_000  # nothing changed
    assert ledger.attest(Attestation("USD", 10, -1)) is not None  # older than the latest


def test_a_chain_is_all_or_nothing(ledger: Ledger) -> None:
    before = {key: balance.total for key, balance in ledger.balances.items()}
    legs = [
        (2, 1, "AAPLx", 1_000_000, K.DELIVERY),
        (1, 2, "USD", 600_000_000, K.PAYMENT),  # more than account 1 has
    ]
    refusal = ledger.book(legs, 5)
    assert isinstance(refusal, str) and "account 1 lacks" in refusal
    assert {key: balance.total for key, balance in ledger.balances.items()} == before
    booked = ledger.book([legs[0], (1, 2, "USD", 187_000_000, K.PAYMENT)], 5)
    assert not isinstance(booked, str)
    assert [t.chain_id for t in booked] == [3, 3] and [t.transfer_id for t in booked] == [3, 4]
    ledger.check_invariants()


def test_holds_reserve_and_spending_a_hold(ledger: Ledger) -> None:
    assert ledger.hold(1, "USD", 400_000_000)
    assert not ledger.hold(1, "USD", 100_000_001)  # only 100 left available
    assert ledger.balance(1, "USD").available == 100_000_000
    # a payment larger than what is free fails unless it spends the hold
    payment = [(1, 2, "USD", 300_000_000, K.PAYMENT), (1, FEE_INCOME, "USD", 1, K.FEE)]
    assert isinstance(ledger.book(payment, 6), str)
    booked = ledger.book(payment, 6, spend_held=[(1, "USD", 300_000_001)])
    assert not isinstance(booked, str)
    balance = ledger.balance(1, "USD")
    assert (balance.total, balance.held) == (199_999_999, 99_999_999)
    ledger.release(1, "USD", 99_999_999)
    assert ledger.balance(1, "USD").available == 199_999_999
    ledger.check_invariants()


def test_withdrawal_is_two_phase(ledger: Ledger) -> None:
    assert ledger.request_withdrawal(2, "AAPLx", 4_000_000) is None
    assert ledger.balance(2, "AAPLx").available == 6_000_000
    ledger.void_withdrawal(2, "AAPLx", 4_000_000)
    assert ledger.balance(2, "AAPLx").available == 10_000_000
    assert ledger.request_withdrawal(2, "AAPLx", 4_000_000) is None
    assert not isinstance(ledger.confirm_withdrawal(2, "AAPLx", 4_000_000, 7), str)
    assert ledger.supply("AAPLx") == 6_000_000
    assert ledger.request_withdrawal(2, "AAPLx", 6_000_001) is not None
    ledger.check_invariants()


def test_refusals_say_why(ledger: Ledger) -> None:
    assert "positive" in str(ledger.book([(1, 2, "USD", 0, K.PAYMENT)], 8))
    assert "unknown asset" in str(ledger.book([(1, 2, "EUR", 1, K.PAYMENT)], 8))
    assert "unknown account" in str(ledger.book([(1, 9, "USD", 1, K.PAYMENT)], 8))
    assert "legs" in str(ledger.book([], 8))
    assert ledger.add_participant(Participant(0, "x", True, "DE")) is not None
    assert ledger.add_asset(AssetSpec("USD", 6)) is not None


def test_drain_hands_over_each_transfer_once(ledger: Ledger) -> None:
    first = ledger.drain()
    assert [t.kind for t in first] == [K.MINT, K.MINT]
    assert ledger.drain() == []
    ledger.book([(1, 2, "USD", 5, K.PAYMENT)], 9)
    assert [t.transfer_id for t in ledger.drain()] == [3]
