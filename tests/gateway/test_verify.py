"""`venue verify`: a sound data directory passes every check; a tampered store fails one."""

import asyncio
import sqlite3
from pathlib import Path

from gateway import config as venue_config
from gateway.server import LEDGER_FILE
from gateway.verify import verify
from tests.gateway.conftest import ROOT, start_venue

SYMBOL = "AAPLx-USD"


def run_session(data_dir: Path) -> None:
    async def scenario() -> None:
        venue = await start_venue(data_dir)
        alpha = await venue.client("alpha")
        taker = await venue.client("taker")
        await alpha.place(SYMBOL, "sell", "1", "187.30")
        await taker.place(SYMBOL, "buy", "0.4", "187.30", tif="ioc")
        await alpha.close()
        await taker.close()
        await venue.server.stop()

    asyncio.run(scenario())


def test_a_sound_data_dir_passes_and_a_tampered_store_fails(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    run_session(data_dir)
    config = venue_config.load(ROOT / "venue.toml")
    lines = verify(data_dir, config)
    assert all(line.startswith("ok") for line in lines), lines
    assert any("snapshot at seq" in line for line in lines)
    raw = sqlite3.connect(data_dir / LEDGER_FILE)
    raw.execute("DROP TRIGGER transfers_refuse_update")
    raw.execute("UPDATE transfers SET amount = amount + 1 WHERE transfer_id = 3")
    raw.commit()
    raw.close()
    failed = [line for line in verify(data_dir, config) if line.startswith("FAIL")]
    assert any("hash does not match" in line for line in failed), failed
