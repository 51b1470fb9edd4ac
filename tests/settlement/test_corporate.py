"""Dividends and splits in the ledger: exact per holder, conservation, reserves, properties."""

import math
from fractions import Fraction
from pathlib import Path

import msgspec
from hypothesis import example, given, settings
from hypothesis import strategies as st

from settlement.corporate import (
    DividendShort,
    Entitlement,
    LieuTerms,
    lieu_refusal,
    pay_dividend,
    plan_cash_in_lieu,
    split,
)
from settlement.ledger import SUPPLY_MAX, AssetSpec, Attestation, Ledger, Participant, Refused
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
    assert ledger.attest(Attestation("EQ", supply + attested_extra, 0)) is None
    assert ledger.attest(Attestation("USD", cash, 0)) is None
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


# ----------------------------------------------------------------- cash in lieu


def lieu_terms(step: int, price_num: int, price_den: int = 10**6) -> LieuTerms:
    """EQ (scale 6) priced in USD (scale 2) at price_num / price_den cents a unit."""
    return LieuTerms("USD", PAYER, step, price_num, price_den)


def test_a_reverse_split_pays_cash_in_lieu_of_what_falls_below_the_step() -> None:
    """1:10 with a step of 0.001 share at 100.01 USD a share: holders keep whole steps, the
    rest is burned and paid for, floor each, the payer's rounded-up total's residual to
    rounding; supply and cash add up to the unit."""
    ledger = ledger_with([1_234_567, 3_333_333, 10_000_000], 100_000)
    terms = lieu_terms(step=1_000, price_num=10_001)  # 100.01 USD a share: 10_001 / 10**6 a unit
    assert lieu_refusal(ledger, terms, 80) is None
    booked = split(ledger, "EQ", 1, 10, ts_us=5, lieu=terms)
    # 0.1234567 new shares keep 0.123; 0.004567 old shares given up x 100.01 = 0.4567... USD
    assert [e.holding_after for e in booked.entitlements] == [123_000, 333_000, 1_000_000]
    assert [e.cash for e in booked.entitlements] == [45, 33, 0]
    # exact 0.45674567 + 0.33333333 = 0.790079 USD: provided 0.80, 0.02 residual
    assert (booked.provided, booked.residual) == (80, 2)
    assert (booked.supply_before, booked.supply_after, booked.rounding_holding) == (
        14_567_900,
        1_456_000,
        0,
    )
    assert ledger.balance(PAYER, "USD").total == 100_000 - 80
    assert [ledger.balance(a, "USD").total for a in (1, 2, 3)] == [45, 33, 0]
    assert ledger.balance(ROUNDING, "USD").total == 2
    assert ledger.balance(ISSUANCE, "EQ").total == -1_456_000  # the fractions burned
    kinds = [t.kind for t in booked.transfers]
    assert kinds == [TransferKind.SPLIT] * 3 + [TransferKind.CASH_IN_LIEU] * 2 + [
        TransferKind.ROUNDING
    ]
    assert {t.chain_id for t in booked.transfers} == {booked.transfers[0].chain_id}
    assert all(line.covered for line in ledger.reserves_report())
    ledger.check_invariants()


def test_cash_in_lieu_keeps_rescaled_withdrawals_whole_and_floors_the_rest() -> None:
    """A holder's pending withdrawal (rescaled: floor(1.0005 / 10) = 0.10005) is kept whole,
    off the step; the rest of its holding is floored to the step."""
    ledger = ledger_with([3_333_333], 100_000)
    terms = msgspec.structs.replace(lieu_terms(1_000, 10_001), withdrawn={1: 100_050})
    plan = plan_cash_in_lieu(ledger, "EQ", 1, 10, terms)
    # 3.333333 - 1.0005 = 2.332833 old shares -> 0.2332833 new, floored to 0.233
    assert plan.entitlements == [Entitlement(1, 3_333_333, 333_050, 28)]  # 0.002833 x 100.01
    assert plan.provided == 29


def test_a_payer_is_needed_known_and_funded_for_cash_in_lieu() -> None:
    ledger = ledger_with([1_234_567], 40)
    terms = lieu_terms(1_000, 10_001)
    nobody = msgspec.structs.replace(terms, payer=0)
    assert lieu_refusal(ledger, nobody, 0) is None  # nothing due: nobody needed
    missing = lieu_refusal(ledger, nobody, 46)
    assert missing is not None and missing.reason == "BAD_PARAM"
    assert missing.detail == (
        "the split leaves fractions below the step worth 0.46 USD in cash in lieu:"
        " name the account that pays it (payer)"
    )
    unknown = lieu_refusal(ledger, msgspec.structs.replace(terms, payer=77), 0)
    assert unknown == Refused("UNKNOWN_ACCOUNT", "unknown payer account 77")
    short = lieu_refusal(ledger, terms, 46)
    assert isinstance(short, DividendShort) and (short.needed, short.available) == (46, 40)
    assert short.detail == "payer 99 has 0.40 USD available, the cash in lieu needs 0.46"


@settings(max_examples=300, deadline=None)
@given(
    holdings=st.lists(st.integers(0, 10**12), min_size=1, max_size=8),
    ratio=st.tuples(st.integers(1, 1_000), st.integers(1, 1_000)).filter(lambda r: r[0] != r[1]),
    step=st.sampled_from([1, 7, 1_000, 10**6]),
    price_num=st.integers(1, 10**9),
    price_den=st.sampled_from([1, 10**4, 10**6, 10**8]),
    rounding_before=st.integers(0, 10**4),
)
# Found by CI: a reverse split leaving a whole holding in cash, worth more than 10**15 cents.
@example([41_851_492], (1, 42), 10**6, 23_894_011, 1, 0)
# Five holders each owed about 10**18 cents: more cash than the ledger lets there be.
@example([10**9] * 5, (1, 1_000), 10**6, 10**9, 1, 0)
def test_cash_in_lieu_conserves_supply_and_cash_for_any_holdings_and_ratio(
    holdings: list[int],
    ratio: tuple[int, int],
    step: int,
    price_num: int,
    price_den: int,
    rounding_before: int,
) -> None:
    """Every holding ends on the step, less than a step below its exact rescaled value; the
    shares it gives up leave the supply; each holder is paid floor(its exact value), the
    payer provides the exact total rounded up and the rounding account takes the rest: both
    assets sum to zero and the reserves still cover the supply."""
    new, old = ratio
    # Each holder gives up less than a step of new shares, step * old / new of its old ones,
    # and never more than it holds: fund the payer for that at the price, and no more (the
    # ledger's amounts are bounded, by SUPPLY_MAX: past it, no payer can have the cash).
    needed_max = 1 + sum(
        min(held, step * old // new + 1) * price_num // price_den + 1 for held in holdings
    )
    funding = min(needed_max, SUPPLY_MAX)
    ledger = ledger_with([*holdings, rounding_before], funding)
    rounder = len(holdings) + 1  # its holding becomes the rounding account's
    if rounding_before:
        ledger.book([(rounder, ROUNDING, "EQ", rounding_before, TransferKind.ROUNDING)], 1)
    terms = lieu_terms(step, price_num, price_den)
    supply = ledger.supply("EQ")
    plan = plan_cash_in_lieu(ledger, "EQ", new, old, terms)
    if plan.provided > funding:  # only past SUPPLY_MAX: the split is refused, the payer short
        short = lieu_refusal(ledger, terms, plan.provided)
        assert isinstance(short, DividendShort) and short.available == funding
        return
    assert lieu_refusal(ledger, terms, plan.provided) is None
    booked = split(ledger, "EQ", new, old, ts_us=2, lieu=terms)
    exact_total = Fraction(0)
    for e in booked.entitlements:
        exact_after = Fraction(e.holding_before * new, old)
        assert e.holding_after % step == 0 and 0 <= exact_after - e.holding_after < step
        exact_cash = (exact_after - e.holding_after) * Fraction(old, new) * price_num / price_den
        assert e.cash == int(exact_cash)  # floor: both are non-negative
        exact_total += exact_cash
    assert booked.provided == math.ceil(exact_total)
    paid = sum(e.cash for e in booked.entitlements)
    assert booked.residual == booked.provided - paid <= len(booked.entitlements)
    assert ledger.balance(PAYER, "USD").total == funding - booked.provided
    assert ledger.balance(ROUNDING, "USD").total == booked.residual
    assert booked.rounding_holding == rounding_before * new // old
    assert ledger.supply("EQ") == booked.supply_after <= supply * new // old
    assert booked.supply_after == booked.rounding_holding + sum(
        e.holding_after for e in booked.entitlements
    )
    assert all(line.covered for line in ledger.reserves_report())
    ledger.check_invariants()
