"""Restarts: the venue comes back as it was, from a snapshot plus the journal after it."""

import asyncio
from pathlib import Path

from core import snapshots
from tests.conftest import KEYS, start_venue

SYMBOL = "AAPLx-USD"


async def trade(data_dir: Path, rounds: int) -> tuple[str, int, list[dict[str, str]]]:
    venue = await start_venue(data_dir)
    alpha = await venue.client("alpha")
    taker = await venue.client("taker")
    for i in range(rounds):
        await alpha.place(SYMBOL, "sell", "0.3", f"187.{30 + i:02d}")
        await taker.place(SYMBOL, "buy", "0.1", f"187.{30 + i:02d}", tif="ioc")
    await alpha.subscribe_account()
    seq = (await alpha.next_push())["seq"]
    orders = (await alpha.open_orders())["orders"]
    state = venue.server.venue.state_hash()
    await alpha.close()
    await taker.close()
    await venue.server.stop()
    return state, seq, orders


def test_clean_restart_restores_state_and_private_history(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        state, seq, orders_before = await trade(data_dir, rounds=5)
        assert snapshots.latest(data_dir) is not None, "a clean stop writes a snapshot"
        venue = await start_venue(data_dir)
        try:
            assert venue.server.venue.state_hash() == state
            client = await venue.client("alpha")
            await client.subscribe_account(since_seq=seq - 4)
            replayed = [await client.next_push() for _ in range(4)]
            assert [p["seq"] for p in replayed] == list(range(seq - 3, seq + 1))
            assert (await client.open_orders())["orders"] == orders_before
            await client.close()
        finally:
            await venue.server.stop()

    asyncio.run(scenario())


def test_restart_without_a_snapshot_replays_the_whole_journal(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        state, _, _ = await trade(data_dir, rounds=3)
        for path in data_dir.glob("snapshot-*.bin"):
            path.unlink()  # as if the process had died before writing any
        venue = await start_venue(data_dir)
        try:
            assert venue.server.venue.state_hash() == state
            assert KEYS  # the same keys log on again
            client = await venue.client("taker")
            balances = {b["asset"]: b["total"] for b in (await client.balances())["balances"]}
            assert balances["AAPLx"] == "20000.300000"
            await client.close()
        finally:
            await venue.server.stop()

    asyncio.run(scenario())


def test_a_corrupt_journal_refuses_to_start_and_says_where(tmp_path: Path) -> None:
    import subprocess
    import sys

    from gateway.server import JOURNAL_FILE
    from tests.conftest import ROOT

    data_dir = tmp_path / "data"
    asyncio.run(trade(data_dir, rounds=2))
    for path in data_dir.glob("snapshot-*.bin"):
        path.unlink()
    journal = data_dir / JOURNAL_FILE
    damaged = bytearray(journal.read_bytes())
    damaged[40] ^= 0xFF  # inside the first record, far from the tail
    journal.write_bytes(bytes(damaged))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "serve",
            "--config",
            str(ROOT / "venue.toml"),
            "--data-dir",
            str(data_dir),
            "--port",
            "0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2  # cli.failures: one line, exit 2
    assert "cannot start" in result.stderr and str(journal) in result.stderr
    assert "byte" in result.stderr


def test_recovery_from_a_snapshot_then_a_tail_that_trades_older_orders(tmp_path: Path) -> None:
    """A crash after a periodic snapshot: the tail fills an order that rested before it."""
    import shutil

    data_dir, crashed = tmp_path / "data", tmp_path / "crashed"

    async def scenario() -> None:
        venue = await start_venue(data_dir)
        alpha = await venue.client("alpha")
        taker = await venue.client("taker")
        await alpha.place(SYMBOL, "sell", "1", "187.30")
        await venue.server.snapshot()  # what the periodic task does
        await taker.place(SYMBOL, "buy", "1", "187.30", tif="ioc")  # in the tail only
        await venue.server.sequencer.drain()
        shutil.copytree(data_dir, crashed)  # the files as a SIGKILL would leave them
        state = venue.server.venue.state_hash()
        await alpha.close()
        await taker.close()
        await venue.server.stop()
        restarted = await start_venue(crashed)
        try:
            assert restarted.server.venue.state_hash() == state
        finally:
            await restarted.server.stop()

    asyncio.run(scenario())
