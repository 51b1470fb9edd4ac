"""Reserves and supply (`settlement.reserves`): mints only against a fresh attestation that
covers them, mirrored in issuance, and refusals that give the figures."""

from settlement.ledger import Attestation, Ledger, stale_detail
from settlement.transfers import ISSUANCE
from tests.settlement.conftest import DAY_US, reason
from tests.settlement.test_s25_reserves_refusals import HOUR_US


def test_mint_mirrors_supply_in_issuance(ledger: Ledger) -> None:
    assert ledger.balance(1, "USD").total == 500_000_000
    assert ledger.supply("USD") == 500_000_000
    assert ledger.balance(ISSUANCE, "USD").total == -500_000_000
    ledger.check_invariants()


def test_mint_is_bounded_by_fresh_reserves(ledger: Ledger) -> None:
    assert reason(ledger.mint(1, "USD", 500_000_001, 2, DAY_US)) == "RESERVES_EXCEEDED"
    assert reason(ledger.mint(1, "USD", 1, DAY_US + 1, DAY_US)) == "RESERVES_STALE"
    assert reason(ledger.mint(1, "MSFTx", 1, 2, DAY_US)) == "UNKNOWN_ASSET"
    assert reason(ledger.mint(7, "USD", 1, 2, DAY_US)) == "UNKNOWN_ACCOUNT"
    assert ledger.supply("USD") == 500_000_000  # nothing changed
    assert reason(ledger.attest(Attestation("USD", 10, -1))) == "BAD_PARAM"  # older
    report = {line.asset: line for line in ledger.reserves_report()}
    assert report["USD"].supply == 500_000_000 and report["USD"].covered


def test_a_statement_just_past_the_bound_is_told_to_the_second() -> None:
    """To a tenth of an hour, a statement 26 h and 3 s old read "26.0 h old, past the 26.0 h"
    (review of session 25): just past the bound, both are said to the second."""
    latest = Attestation(asset="GOOGx", amount=1, as_of_us=0)
    just = stale_detail("GOOGx", latest, 26 * HOUR_US + 3_000_000, 26 * HOUR_US)
    assert "is 93,603 s old, past the 93,600 s a deposit allows" in just, just
    far = stale_detail("GOOGx", latest, 27 * HOUR_US, 26 * HOUR_US)
    assert "is 27.0 h old, past the 26.0 h a deposit allows" in far, far
