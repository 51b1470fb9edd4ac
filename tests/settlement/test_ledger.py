"""The ledger: atomic chains, holds, conservation, redemption at par and refusals (mints and
reserves: test_reserves.py; withdrawals: test_withdrawals.py)."""

import msgspec
import pytest

from settlement.ledger import AssetSpec, Attestation, Ledger, Participant, Refused
from settlement.store import ACCOUNT_NAME_CHARS_MAX
from settlement.transfers import FEE_INCOME, REDEMPTION, ROUNDING, TransferKind
from tests.settlement.conftest import DAY_US, reason

K = TransferKind


def test_a_chain_is_all_or_nothing(ledger: Ledger) -> None:
    before = {key: balance.total for key, balance in ledger.balances.items()}
    legs = [
        (2, 1, "AAPLx", 1_000_000, K.DELIVERY),
        (1, 2, "USD", 600_000_000, K.PAYMENT),  # more than account 1 has
    ]
    assert reason(ledger.book(legs, 5)) == "INSUFFICIENT_BALANCE"
    assert {key: balance.total for key, balance in ledger.balances.items()} == before
    booked = ledger.book([legs[0], (1, 2, "USD", 187_000_000, K.PAYMENT)], 5)
    assert not isinstance(booked, Refused)
    assert [t.chain_id for t in booked] == [3, 3] and [t.transfer_id for t in booked] == [3, 4]
    ledger.check_invariants()


def test_holds_reserve_and_spending_a_hold(ledger: Ledger) -> None:
    assert ledger.hold(1, "USD", 400_000_000)
    assert not ledger.hold(1, "USD", 100_000_001)  # only 100 left available
    assert ledger.balance(1, "USD").available == 100_000_000
    # a payment larger than what is free fails unless it spends the hold
    payment = [(1, 2, "USD", 300_000_000, K.PAYMENT), (1, FEE_INCOME, "USD", 1, K.FEE)]
    assert reason(ledger.book(payment, 6)) == "INSUFFICIENT_BALANCE"
    booked = ledger.book(payment, 6, spend=[(1, "USD", 300_000_001)])
    assert not isinstance(booked, Refused)
    balance = ledger.balance(1, "USD")
    assert (balance.total, balance.held) == (199_999_999, 99_999_999)
    ledger.release(1, "USD", 99_999_999)
    assert ledger.balance(1, "USD").available == 199_999_999
    ledger.check_invariants()


def test_redeem_at_par_pays_each_holder_once(ledger: Ledger) -> None:
    ledger.add_asset(AssetSpec("TB1", 0))
    ledger.attest(Attestation("TB1", 10_000, 0))
    ledger.mint(1, "TB1", 3_000, 1, DAY_US)
    ledger.mint(2, "TB1", 1_000, 1, DAY_US)
    usd_before = {a: ledger.balance(a, "USD").total for a in (1, 2)}
    booked = ledger.redeem_at_par("TB1", "USD", 1_000_000, 9)
    assert len({t.chain_id for t in booked}) == 1
    paid = [t for t in booked if t.kind is K.REDEMPTION]
    assert sorted(t.credit_account for t in paid) == [1, 2]
    assert ledger.balance(1, "USD").total - usd_before[1] == 3_000_000_000
    assert ledger.balance(2, "USD").total - usd_before[2] == 1_000_000_000
    assert ledger.supply("TB1") == 0 and ledger.holders("TB1") == []
    assert ledger.balance(REDEMPTION, "USD").total == 0
    assert ledger.redeem_at_par("TB1", "USD", 1_000_000, 10) == []
    ledger.check_invariants()


def test_refusals_say_why(ledger: Ledger) -> None:
    assert reason(ledger.book([(1, 2, "USD", 0, K.PAYMENT)], 8)) == "BAD_PARAM"
    assert reason(ledger.book([(1, 2, "EUR", 1, K.PAYMENT)], 8)) == "UNKNOWN_ASSET"
    assert reason(ledger.book([(1, 9, "USD", 1, K.PAYMENT)], 8)) == "UNKNOWN_ACCOUNT"
    assert reason(ledger.book([], 8)) == "BAD_PARAM"
    assert reason(ledger.book([(1, 1, "USD", 1, K.PAYMENT)], 8)) == "BAD_PARAM"
    assert reason(ledger.add_participant(Participant(0, "x", True, "DE"))) == "BAD_PARAM"
    assert reason(ledger.add_participant(Participant(1, "x", True, "DE"))) == "ACCOUNT_EXISTS"
    assert reason(ledger.add_asset(AssetSpec("USD", 6))) == "ASSET_EXISTS"
    # the store's limit: a longer name taken here was refused there, after the answer
    too_long = Participant(7, "n" * (ACCOUNT_NAME_CHARS_MAX + 1), True, "DE")
    assert reason(ledger.add_participant(too_long)) == "BAD_PARAM"
    assert 7 not in ledger.participants
    assert ledger.add_participant(Participant(7, "n" * ACCOUNT_NAME_CHARS_MAX, True, "DE")) is None


def test_drain_hands_over_each_transfer_once(ledger: Ledger) -> None:
    first = ledger.drain()
    assert [t.kind for t in first] == [K.MINT, K.MINT]
    assert ledger.drain() == []
    ledger.book([(1, 2, "USD", 5, K.PAYMENT)], 9)
    assert [t.transfer_id for t in ledger.drain()] == [3]


def test_settle_books_a_held_chain_without_rechecking(ledger: Ledger) -> None:
    assert ledger.hold(1, "USD", 100) and ledger.hold(2, "AAPLx", 7)
    legs = [
        (2, 1, "AAPLx", 7, K.DELIVERY),
        (1, 2, "USD", 99, K.PAYMENT),
        (1, FEE_INCOME, "USD", 1, K.FEE),
    ]
    booked = ledger.settle(legs, 10, spend=[(1, "USD", 100), (2, "AAPLx", 7)])
    assert [t.transfer_id for t in booked] == [3, 4, 5] and {t.chain_id for t in booked} == {3}
    assert ledger.balance(1, "USD").held == 0 and ledger.balance(2, "AAPLx").held == 0
    ledger.check_invariants()


def test_settle_crashes_on_an_unheld_overdraft(ledger: Ledger) -> None:
    with pytest.raises(AssertionError, match="overdrew"):
        ledger.settle([(1, 2, "USD", 500_000_001, K.PAYMENT)], 11, spend=[])


def _traded_twin(ledger: Ledger) -> Ledger:
    """A copy of `ledger` where both participants hold both assets, ready to trade."""
    twin = Ledger.from_image(ledger.image())
    assert not isinstance(twin.book([(1, 2, "USD", 1_000, K.PAYMENT)], 2), Refused)
    assert not isinstance(twin.book([(2, 1, "AAPLx", 10, K.DELIVERY)], 2), Refused)
    assert not isinstance(twin.book([(1, FEE_INCOME, "USD", 1, K.FEE)], 2), Refused)
    assert not isinstance(twin.book([(1, ROUNDING, "USD", 1, K.ROUNDING)], 2), Refused)
    return twin


def test_a_position_needs_both_balances_and_makes_neither(ledger: Ledger) -> None:
    """Account 2 has no USD yet: no position (`settle` makes the balance in leg order)."""
    before = msgspec.msgpack.encode(ledger.image())
    assert ledger.position(2, "AAPLx", "USD") is None
    assert msgspec.msgpack.encode(ledger.image()) == before
    twin = _traded_twin(ledger)
    position = twin.position(2, "AAPLx", "USD")
    assert position == (twin.balance(2, "AAPLx"), twin.balance(2, "USD"))


def test_a_refused_hold_creates_nothing(ledger: Ledger) -> None:
    before = msgspec.msgpack.encode(ledger.image())
    assert not ledger.hold(1, "AAPLx", 1)  # account 1 has no AAPLx at all
    assert reason(ledger.request_withdrawal(1, "AAPLx", 1)) == "INSUFFICIENT_BALANCE"
    assert msgspec.msgpack.encode(ledger.image()) == before
