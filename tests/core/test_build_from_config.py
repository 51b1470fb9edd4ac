"""A fresh venue built from its config: an entry the venue would refuse stops the start before
anything is journaled; only a bill that has matured since the config was written is left out,
and said in a warning that names it."""

import asyncio
import datetime
import logging
from pathlib import Path

import msgspec
import pytest

from core import config as venue_config
from core.venue_core import JOURNAL_FILE, RecoveryRefused, VenueCore
from tests.core.test_bus import Recorder
from tests.sample_config import SAMPLE_CONFIG


def start_and_stop(config: venue_config.VenueConfig, data_dir: Path) -> VenueCore:
    async def main() -> VenueCore:
        recorder = Recorder()
        core = recorder.core = VenueCore(config, data_dir, recorder)
        await core.start()
        await core.stop()
        return core

    return asyncio.run(main())


def test_a_refused_config_entry_stops_the_start_and_journals_nothing(tmp_path: Path) -> None:
    # built past `load`'s checks: the engine's refusal is the last line of defence
    config = venue_config.load(SAMPLE_CONFIG)
    first, *others = config.accounts
    again = msgspec.structs.replace(first, name="again", deposits={})  # the same account id
    config = msgspec.structs.replace(config, accounts=(first, again, *others))
    # refused with the data directory given back (its lock and store closed)
    with pytest.raises(RecoveryRefused, match=rf"config: \[\[accounts\]\] id {first.id} "):
        start_and_stop(config, tmp_path)
    journal = tmp_path / JOURNAL_FILE
    assert not journal.exists() or journal.stat().st_size == 0


def test_a_bill_matured_since_the_config_was_written_is_left_out_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = venue_config.load(SAMPLE_CONFIG)
    yesterday = datetime.datetime.now(datetime.UTC).date() - datetime.timedelta(days=1)
    bill = next(e for e in config.instruments if e.maturity is not None)
    matured = msgspec.structs.replace(bill, maturity=yesterday)
    instruments = tuple(matured if e is bill else e for e in config.instruments)
    config = msgspec.structs.replace(config, instruments=instruments)
    with caplog.at_level(logging.WARNING, logger="venue"):
        core = start_and_stop(config, tmp_path)
    refusals = [r for r in caplog.records if r.getMessage() == "config entry refused"]
    assert len(refusals) == 1
    assert refusals[0].reason == "MATURITY_PASSED"  # type: ignore[attr-defined]
    detail = refusals[0].detail  # type: ignore[attr-defined]
    assert bill.symbol in detail
    assert bill.symbol not in core.venue.markets
    assert all(e.symbol in core.venue.markets for e in instruments if e is not matured)
    assert {a.id for a in config.accounts} <= set(core.ledger.participants)
    # The finding: its token was listed, attested and minted all the same (no market, no
    # maturity to redeem it). It goes with the bill, and the warning says so.
    assert f"its asset {bill.base}, that asset's [[reserves]] and its deposits to" in detail
    assert bill.base not in core.ledger.assets
    assert bill.base not in core.ledger.attestations
    assert all(asset != bill.base for _, asset in core.ledger.balances)
