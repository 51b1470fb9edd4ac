"""Jurisdictions are assigned ISO 3166-1 alpha-2 codes: eligibility compares them as text, so a
code that names no country would slip past every exclusion."""

import pytest

from engine.commands import ListAsset, ListInstrument, OpenAccount
from engine.events import AccountOpened, CommandRejected, InstrumentListed
from engine.reasons import ErrorCode
from engine.venue import Venue
from settlement import jurisdictions
from settlement.ledger import Ledger
from tests.engine.conftest import make_spec


def venue_with_assets() -> Venue:
    venue = Venue(ledger=Ledger())
    for code in ("USD", "AAPLx"):
        venue.execute(ListAsset(ts_us=1, code=code, scale=6))
    return venue


@pytest.mark.parametrize("code", ["UK", "ZZ", "XX", "EU", "us", "U1"])
def test_an_account_in_no_assigned_jurisdiction_is_refused_and_not_opened(code: str) -> None:
    venue = venue_with_assets()
    events = venue.execute(
        OpenAccount(ts_us=2, account=7, name="fund", kyc_approved=True, jurisdiction=code)
    )
    assert len(events) == 1 and isinstance(events[0], CommandRejected)
    assert events[0].reason is ErrorCode.BAD_PARAM
    assert events[0].detail == jurisdictions.PROBLEM
    assert 7 not in venue.ledger.participants  # type: ignore[union-attr]


@pytest.mark.parametrize("code", ["GB", "US", "DE", "SG", "AX", "ZW"])
def test_an_account_in_an_assigned_jurisdiction_opens(code: str) -> None:
    venue = venue_with_assets()
    events = venue.execute(
        OpenAccount(ts_us=2, account=7, name="fund", kyc_approved=True, jurisdiction=code)
    )
    assert [type(e) for e in events] == [AccountOpened]


def test_an_instrument_excluding_no_assigned_jurisdiction_is_not_listed() -> None:
    venue = venue_with_assets()
    events = venue.execute(
        ListInstrument(ts_us=2, spec=make_spec(excluded_jurisdictions=("US", "UK")))
    )
    assert len(events) == 1 and isinstance(events[0], CommandRejected)
    assert events[0].reason is ErrorCode.BAD_PARAM
    assert events[0].detail == f"excluded_jurisdictions: {jurisdictions.PROBLEM}"
    assert not venue.markets
    listed = venue.execute(
        ListInstrument(ts_us=3, spec=make_spec(excluded_jurisdictions=("US", "GB")))
    )
    assert [type(e) for e in listed] == [InstrumentListed]


def test_the_list_is_the_249_assigned_codes() -> None:
    assert len(jurisdictions.ASSIGNED) == 249
    assert all(len(code) == 2 and code.isupper() for code in jurisdictions.ASSIGNED)
    assert {"GB", "US", "CN", "DE", "SG", "BQ", "SS", "CW", "SX"} <= jurisdictions.ASSIGNED
    assert not {"UK", "EU", "ZZ", "XK", "AN"} & jurisdictions.ASSIGNED  # unassigned or withdrawn
