"""Dividends and splits in the ledger: exact per holder, conservation, reserves, properties."""

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from settlement.corporate import DividendShort, pay_dividend, split
from settlement.ledger import AssetSpec, Attestation, Ledger, Participant, Refused
from settlement.store import SqliteLedgerStore
from settlement.transfers import ISSUANCE, ROUNDING, TransferKind

PAYER = 99


def ledger_with(holdings: list[int], cash: int, attested_extra: int = 0) -> Ledger:
    ledger = Ledger()
    ledger.add_asset(AssetSpec("EQ", 6))
    ledger.add_asset(AssetSpec("USD", 2))
    for account in [*range(1, len(holdings) + 1), PAYER]:
        ledger.add_participant(Participant(account, f"p{account}", True, "DE"))
    supply = sum(holdings)
    ledger.attest(Attestation("EQ", supply + attested_extra, 0))
    ledger.attest(Attestation("USD", cash, 0))
    for account, amount in enumerate(holdings, start=1):
        if amount:
            assert not isinstance(ledger.mint(account, "EQ", amount, 0, 10), Refused)
    if cash:
        assert not isinstance(ledger.mint(PAYER, "USD", cash, 0, 10), Refused)
    return ledger


def test_a_dividend_the_payer_cannot_fund_says_both_amounts_in_decimals() -> None:
    """An operator reads the refusal: the cash in decimals (USD at 2 here), not in units."""
    ledger = ledger_with([1_000_000, 3_000_000], 150)  # 4 shares, 1.50 USD
    refused = pay_dividend(ledger, "EQ", "USD", PAYER, 5, 1, ts_us=5)  # 0.5 a share: 2.00
    assert isinstance(refused, Refused) and refused.reason == "INSUFFICIENT_BALANCE"
    assert refused.detail == "payer 99 has 1.50 USD available, the dividend needs 2.00"
    assert isinstance(refused, DividendShort)  # and the numbers, in cash units
    assert (refused.needed, refused.available) == (200, 150)


def test_a_dividend_books_one_chain_with_the_residual_to_rounding() -> None:
    ledger = ledger_with([1_234_567, 3_333_333, 10_000_000], 100_000)
    booked = pay_dividend(ledger, "EQ", "USD", PAYER, 2_475, 4, ts_us=5)
    assert not isinstance(booked, Refused)
    assert [e.cash for e in booked.entitlements] == [30, 82, 247]
    assert (booked.provided, booked.residual) == (361, 2)
    assert {t.chain_id for t in booked.transfers} == {booked.transfers[0].chain_id}
    assert [t.kind for t in booked.transfers] == [TransferKind.DIVIDEND] * 3 + [
        TransferKind.ROUNDING
    ]
    assert ledger.balance(ROUNDING, "USD").total == 2
    ledger.check_invariants()


def test_a_split_mints_and_burns_against_issuance() -> None:
    ledger = ledger_with([3, 5, 7], 0, attested_extra=1)
    booked = split(ledger, "EQ", 1, 2, ts_us=5)  # 3 -> 1, 5 -> 2, 7 -> 3: supply 15 -> 7
    assert [e.holding_after for e in booked.entitlements] == [1, 2, 3]
    assert (booked.supply_before, booked.supply_after, booked.rounding_holding) == (15, 7, 1)
    assert all(t.kind is TransferKind.SPLIT for t in booked.transfers)
    # 16 / 2, one microsecond later, marked with the split's time (older statements: refused)
    assert booked.attestation == Attestation("EQ", 8, 1, split_at_us=5)
    assert ledger.balance(ISSUANCE, "EQ").total == -7
    ledger.check_invariants()


@settings(max_examples=200, deadline=None)
@given(
    holdings=st.lists(st.integers(0, 10**12), min_size=1, max_size=8),
    ratios=st.lists(st.tuples(st.integers(1, 50), st.integers(1, 50)), min_size=1, max_size=3),
    amount=st.integers(1, 10**6),
    decimals=st.integers(0, 8),
)
def test_corporate_actions_conserve_every_asset_and_keep_reserves_exact(
    holdings: list[int], ratios: list[tuple[int, int]], amount: int, decimals: int
) -> None:
    ledger = ledger_with(holdings, 10**15)
    for new, old in ratios:
        if new == old:
            continue
        before = {a: ledger.balance(a, "EQ").total for a in range(1, len(holdings) + 1)}
        booked = split(ledger, "EQ", new, old, ts_us=1)
        for entitlement in booked.entitlements:
            assert entitlement.holding_after == before[entitlement.account] * new // old
        assert booked.supply_after == booked.supply_before * new // old
        assert all(line.covered for line in ledger.reserves_report())
        ledger.check_invariants()
    holders = dict(ledger.holders("EQ"))
    cash_before = ledger.balance(PAYER, "USD").total
    booked_cash = pay_dividend(ledger, "EQ", "USD", PAYER, amount, decimals, ts_us=2)
    if isinstance(booked_cash, Refused):
        assert booked_cash.reason == "INSUFFICIENT_BALANCE"
        assert ledger.balance(PAYER, "USD").total == cash_before
        return
    for entitlement in booked_cash.entitlements:
        exact = holders[entitlement.account] * amount * 100
        assert entitlement.cash == exact // 10 ** (decimals + 6)
    assert cash_before - ledger.balance(PAYER, "USD").total == booked_cash.provided
    assert 0 <= booked_cash.residual <= len(booked_cash.entitlements)
    ledger.check_invariants()


def test_the_store_keeps_dividend_and_split_transfers_and_rebuilds_the_balances(
    tmp_path: Path,
) -> None:
    ledger = ledger_with([1_234_567, 3_333_333, 10_000_000], 100_000)
    assert not isinstance(pay_dividend(ledger, "EQ", "USD", PAYER, 2_475, 4, ts_us=5), Refused)
    split(ledger, "EQ", 3, 2, ts_us=6)
    split(ledger, "EQ", 1, 7, ts_us=7)
    store = SqliteLedgerStore(tmp_path / "ledger.sqlite")
    try:
        for code, spec in ledger.assets.items():
            store.register_asset(code, spec.scale)
        for account in [*ledger.participants, ISSUANCE, ROUNDING]:
            store.register_account(account, f"account {account}")
        store.append_batch(ledger.drain())
        assert store.verify() == []
        booked = {key: b.total for key, b in ledger.balances.items() if b.total}
        assert store.balances() == booked
        kinds = {t.kind for t in store.iter_transfers()}
        assert {TransferKind.DIVIDEND, TransferKind.SPLIT, TransferKind.ROUNDING} <= kinds
    finally:
        store.close()
