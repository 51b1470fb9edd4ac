"""Jurisdictions are assigned ISO 3166-1 alpha-2 codes where input enters (a request's params,
the config): eligibility compares them as text, so a code that names no country ("UK" for
GB) would slip past every exclusion. The engine takes any two letters, as it always has, so a
journal written before the check replays the same."""

from pathlib import Path

import pytest

from core import config
from core.venue_core import now_us
from engine.commands import OpenAccount
from engine.events import AccountOpened
from engine.reasons import ErrorCode
from engine.venue import Venue
from gateway import wire
from gateway.wire import Request
from settlement import jurisdictions
from settlement.ledger import Ledger
from tests.gateway.test_wire import MINIMAL, frame, refused
from tests.sample_config import SAMPLE_CONFIG

UNASSIGNED = ["UK", "ZZ", "XX", "EU", "AN"]  # AN: the Netherlands Antilles, withdrawn


@pytest.mark.parametrize("code", UNASSIGNED)
def test_an_account_in_no_assigned_jurisdiction_is_refused_with_the_reason(code: str) -> None:
    error = refused(
        frame("admin.open_account", MINIMAL["admin.open_account"] | {"jurisdiction": code})
    )
    assert (error.code, error.message) == (ErrorCode.BAD_PARAM, jurisdictions.PROBLEM)


@pytest.mark.parametrize("code", ["GB", "US", "DE", "SG", "AX", "ZW"])
def test_an_account_in_an_assigned_jurisdiction_is_a_request(code: str) -> None:
    decoded = wire.decode_request(
        frame("admin.open_account", MINIMAL["admin.open_account"] | {"jurisdiction": code})
    )
    assert isinstance(decoded, Request)


def test_an_instrument_excluding_no_assigned_jurisdiction_is_refused() -> None:
    listing = MINIMAL["admin.list_instrument"]
    error = refused(
        frame("admin.list_instrument", listing | {"excluded_jurisdictions": ["US", "UK"]})
    )
    assert error.code is ErrorCode.BAD_PARAM
    assert error.message == f"excluded_jurisdictions: {jurisdictions.PROBLEM}"
    fine = frame("admin.list_instrument", listing | {"excluded_jurisdictions": ["US", "GB"]})
    assert isinstance(wire.decode_request(fine), Request)


def test_a_config_with_an_unassigned_jurisdiction_is_refused_naming_the_entry(
    tmp_path: Path,
) -> None:
    text = SAMPLE_CONFIG.read_text()
    account = config.load(SAMPLE_CONFIG).accounts[0]
    astray = tmp_path / "venue.toml"
    astray.write_text(
        text.replace(f'jurisdiction = "{account.jurisdiction}"', 'jurisdiction = "UK"', 1)
    )
    with pytest.raises(config.ConfigError, match=f"account {account.id}: .*ISO 3166-1"):
        config.setup_commands(config.load(astray), now_us())
    excluding = tmp_path / "excluding.toml"
    excluding.write_text(
        text.replace('excluded_jurisdictions = ["US", "CN"]', 'excluded_jurisdictions = ["UK"]', 1)
    )
    with pytest.raises(config.ConfigError, match=r"excluded_jurisdictions: .*ISO 3166-1"):
        config.setup_commands(config.load(excluding), now_us())


def test_the_engine_still_opens_any_two_letters_so_old_journals_replay_the_same() -> None:
    venue = Venue(ledger=Ledger())
    events = venue.execute(
        OpenAccount(ts_us=1, account=7, name="f", kyc_approved=True, jurisdiction="UK")
    )
    assert [type(e) for e in events] == [AccountOpened]


def test_the_list_is_the_249_assigned_codes() -> None:
    assert len(jurisdictions.ASSIGNED) == 249
    assert all(len(code) == 2 and code.isupper() for code in jurisdictions.ASSIGNED)
    assert {"GB", "US", "CN", "DE", "SG", "BQ", "SS", "CW", "SX"} <= jurisdictions.ASSIGNED
    assert not set(UNASSIGNED) & jurisdictions.ASSIGNED
