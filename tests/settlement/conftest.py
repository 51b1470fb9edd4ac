"""Shared by the settlement tests: a funded ledger and the reason of a refusal."""

import pytest

from settlement.ledger import AssetSpec, Attestation, Ledger, Participant, Refused

DAY_US = 86_400_000_000


@pytest.fixture
def ledger() -> Ledger:
    ledger = Ledger()
    assert ledger.add_asset(AssetSpec("USD", 6)) is None
    assert ledger.add_asset(AssetSpec("AAPLx", 6)) is None
    for account in (1, 2):
        assert ledger.add_participant(Participant(account, f"p{account}", True, "DE")) is None
    assert ledger.attest(Attestation("USD", 1_000_000_000, 0)) is None
    assert ledger.attest(Attestation("AAPLx", 50_000_000, 0)) is None
    assert not isinstance(ledger.mint(1, "USD", 500_000_000, 1, DAY_US), Refused)
    assert not isinstance(ledger.mint(2, "AAPLx", 10_000_000, 1, DAY_US), Refused)
    return ledger


def reason(result: object) -> str:
    assert isinstance(result, Refused), result
    return result.reason
