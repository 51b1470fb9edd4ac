"""A fresh venue built from its config: an entry the venue refuses is left out and said in a
warning that names it, not only counted."""

import asyncio
import logging
from pathlib import Path

import msgspec
import pytest

from core import config as venue_config
from core.venue_core import VenueCore
from tests.core.test_bus import Recorder
from tests.sample_config import SAMPLE_CONFIG


def test_a_refused_config_entry_is_a_warning_naming_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = venue_config.load(SAMPLE_CONFIG)
    first, *others = config.accounts
    again = msgspec.structs.replace(first, name="again", deposits={})  # the same account id
    config = msgspec.structs.replace(config, accounts=(first, again, *others))

    async def main() -> VenueCore:
        recorder = Recorder()
        core = recorder.core = VenueCore(config, tmp_path, recorder)
        await core.start()
        await core.stop()
        return core

    with caplog.at_level(logging.WARNING, logger="venue"):
        core = asyncio.run(main())
    refusals = [r for r in caplog.records if r.getMessage() == "config entry refused"]
    opened = [r for r in refusals if getattr(r, "command", None) == "open_account"]
    assert len(opened) == 1
    assert opened[0].account == first.id and opened[0].reason == "ACCOUNT_EXISTS"  # type: ignore[attr-defined]
    assert opened[0].detail == f"account {first.id} exists"  # type: ignore[attr-defined]
    assert len(refusals) == 1
    participants = core.ledger.participants
    assert participants[first.id].name == first.name and all(a.id in participants for a in others)
