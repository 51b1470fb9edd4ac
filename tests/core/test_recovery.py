"""core/recovery.py: what a start says while it replays a long journal, and of the file's
build entries it does not apply; what a start refused after its recovery, or stopped during
it, leaves."""

import asyncio
import logging
import sqlite3
from pathlib import Path

import msgspec
import pytest

from core import config as venue_config
from core import recovery, snapshots, stream_snapshots
from core.venue_core import RecoveryRefused, StartStopped, VenueCore, now_us
from engine.commands import SetReferencePrice
from gateway.server import VenueServer
from tests.conftest import start_venue
from tests.core.test_bus import Recorder
from tests.sample_config import SAMPLE_CONFIG

SYMBOL = "AAPLx-USD"
COMMANDS = 3_500  # replayed in well under a second, over three progress checks
BATCH = 500  # submitted, then made durable: the journal's group commit, as under load


async def _journal_of_many_commands(data_dir: Path) -> None:
    """A venue's journal holding `COMMANDS` more records; its snapshots removed, so that the
    next start replays the whole journal."""
    venue = await start_venue(data_dir)
    sequencer = venue.server.core.sequencer
    for first in range(0, COMMANDS, BATCH):
        for offset in range(BATCH):
            price = 18_000 + (first + offset) % 1_000
            sequencer.submit(SetReferencePrice(symbol=SYMBOL, price=price), origin=None)
        await sequencer.drain()
    await venue.server.stop()
    for snapshot in data_dir.glob("snapshot-*.bin"):
        snapshot.unlink()


def test_a_long_replay_says_how_far_it_is_every_interval_not_every_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The finding: a start replaying a long journal logged nothing until `recovered`, so
    an operator could not tell a slow replay from a hung one. With the interval at 0 every
    check logs: one line per `PROGRESS_CHECK_RECORDS` records, never one per record."""
    data_dir = tmp_path / "data"
    asyncio.run(_journal_of_many_commands(data_dir))
    monkeypatch.setattr(recovery, "PROGRESS_INTERVAL_S", 0.0)

    async def start_and_stop() -> None:
        venue = await start_venue(data_dir)
        await venue.server.stop()

    with caplog.at_level(logging.INFO, logger="venue"):
        asyncio.run(start_and_stop())
    [recovered] = [r.__dict__ for r in caplog.records if r.msg == "recovered"]
    total = recovered["replayed"]
    assert total > COMMANDS and recovered["snapshot_seq"] == 0
    lines = [r.__dict__ for r in caplog.records if r.msg == "recovering"]
    checks = range(recovery.PROGRESS_CHECK_RECORDS, total + 1, recovery.PROGRESS_CHECK_RECORDS)
    assert [line["replayed"] for line in lines] == list(checks)
    for line in lines:
        assert line["seq"] == line["replayed"]  # from the journal's start: seq = count
        assert line["of"] == total and line["journal_seq"] == recovered["journal_seq"]
        assert 0 < line["percent"] < 100 and line["per_s"] > 0
        assert line["left_s"] is not None and line["left_s"] >= 0


def test_a_store_rebuilt_from_the_journal_says_so_before_and_after(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The finding: after `recovered`, a store rebuilt from the journal (its file gone)
    booked every transfer with nothing said, however long it took. A restart whose store
    lacks nothing says nothing of it."""
    data_dir = tmp_path / "data"

    async def start_and_stop() -> None:
        venue = await start_venue(data_dir)
        await venue.server.stop()

    asyncio.run(start_and_stop())
    for path in data_dir.glob("ledger.sqlite*"):
        path.unlink()
    with caplog.at_level(logging.INFO, logger="venue"):
        asyncio.run(start_and_stop())
    said = [r.__dict__ for r in caplog.records if r.msg.startswith("ledger store ca")]
    assert [line["msg"] for line in said] == ["ledger store catching up", "ledger store caught up"]
    assert said[0]["store_last_transfer"] == 0 and said[0]["transfers"] > 0
    assert said[1]["transfers"] == said[0]["transfers"] and said[1]["ms"] >= 0
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="venue"):
        asyncio.run(start_and_stop())
    assert not [r for r in caplog.records if r.msg.startswith("ledger store ca")]


def test_a_restart_names_the_build_entries_its_file_added_that_the_venue_lacks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The finding (session 28): an operator who adds an instrument (with its asset) and an
    account to the file of a venue that exists and restarts it was told nothing; the market
    was simply not there. A restart on the file it was built from says nothing of it."""
    data_dir = tmp_path / "data"
    built = venue_config.load(SAMPLE_CONFIG)
    gold = msgspec.structs.replace(
        built.instruments[0], symbol="GOLDx-USD", base="GOLDx", reference_price="2000"
    )
    edited = msgspec.structs.replace(
        built,
        assets=(*built.assets, msgspec.structs.replace(built.assets[1], code="GOLDx")),
        instruments=(*built.instruments, gold),
        accounts=(*built.accounts, msgspec.structs.replace(built.accounts[-1], id=77)),
    )

    async def start_and_stop(config: venue_config.VenueConfig) -> None:
        server = VenueServer(config, data_dir)
        await server.start("127.0.0.1", 0)
        await server.stop()

    for config in (built, edited, built):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="venue"):
            asyncio.run(start_and_stop(config))
        said = [r.__dict__ for r in caplog.records if r.msg == "config entries not applied"]
        if config is not edited:
            assert said == []
            continue
        [line] = said
        assert line["instruments"] == ["GOLDx-USD"]
        assert line["assets"] == ["GOLDx"]
        assert line["accounts"] == [77]
        assert "venue admin list-asset, list-instrument, open-account" in line["why"]


def _damage_table(store: Path, table: str) -> None:
    """Overwrite the root page of `table` in the SQLite file `store` (closed, its WAL merged)
    with 0xFF: the file opens and its other tables read, but a read of `table` fails
    (`database disk image is malformed`), as a store damaged on its disk does."""
    reader = sqlite3.connect(store)
    try:
        page_bytes = reader.execute("PRAGMA page_size").fetchone()[0]
        query = "SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = ?"
        root_page = reader.execute(query, (table,)).fetchone()[0]
    finally:
        reader.close()
    with store.open("r+b") as file:
        file.seek((root_page - 1) * page_bytes)
        file.write(b"\xff" * page_bytes)


def test_a_start_refused_after_its_recovery_leaves_epochs_json_as_it_found_it(
    tmp_path: Path,
) -> None:
    """The finding (session 28's closing note): a restart refused after the journal was
    replayed (here a store whose `assets` table is damaged, read first by the store's
    catch-up) had recorded its epoch already: `epochs.json` gained an entry for a start that
    never ran. It is recorded now after the last refusal, before the start's first command:
    the refused start leaves every file of the data directory as it found it."""
    data_dir = tmp_path / "data"

    async def start_and_stop() -> None:
        venue = await start_venue(data_dir)
        await venue.server.stop()

    asyncio.run(start_and_stop())
    _damage_table(data_dir / "ledger.sqlite", "assets")
    before = {path.name: path.read_bytes() for path in data_dir.iterdir()}
    with pytest.raises(sqlite3.DatabaseError, match="malformed"):
        asyncio.run(start_and_stop())
    after = {path.name: path.read_bytes() for path in data_dir.iterdir()}
    assert after.keys() == before.keys()
    assert after["epochs.json"] == before["epochs.json"]  # one start's entry, the first's
    assert after == before


def test_a_stop_asked_for_during_the_replay_ends_the_start_leaving_the_directory_as_found(
    tmp_path: Path,
) -> None:
    """`venue serve`'s stop signals reach a start at its safe points (`stop_requested`): in a
    replay, at the next progress check; the start gives the data directory back, as a refused
    one does. Here the stop is asked for once the replay has begun."""
    data_dir = tmp_path / "data"
    asyncio.run(_journal_of_many_commands(data_dir))
    before = {path.name: path.read_bytes() for path in data_dir.iterdir()}

    async def start() -> None:
        server = VenueServer(venue_config.load(SAMPLE_CONFIG), data_dir)
        await server.start("127.0.0.1", 0, stop_requested=lambda: server.core._recovering)

    checked = recovery.PROGRESS_CHECK_RECORDS
    with pytest.raises(StartStopped, match=f"while replaying the journal, at seq {checked} of"):
        asyncio.run(start())
    assert {path.name: path.read_bytes() for path in data_dir.iterdir()} == before


def test_a_stop_asked_for_before_a_build_leaves_no_data_directory(tmp_path: Path) -> None:
    data_dir = tmp_path / "new" / "data"

    async def start() -> None:
        server = VenueServer(venue_config.load(SAMPLE_CONFIG), data_dir)
        await server.start("127.0.0.1", 0, stop_requested=lambda: True)

    with pytest.raises(StartStopped, match="before its recovery"):
        asyncio.run(start())
    assert list(tmp_path.iterdir()) == []


def test_a_venue_recovered_ahead_of_this_machine_s_clock_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Session 32's trial: a data directory written while the clock was an hour ahead, started
    with the clock right, stamped every command at the venue's time, which stood still (a
    dead-man's switch armed for 2 s had not fired 5 s later), and said nothing. Now one
    warning, with how far ahead; none when the clock is not behind; and once per process
    for one venue time: a start tried again (a cluster core's, its store failing the
    catch-up) said it at every try until session 33."""
    hour_us = 3_600_000_000

    async def start_and_stop(ahead_us: int) -> None:
        recorder = Recorder()
        core = recorder.core = VenueCore(venue_config.load(SAMPLE_CONFIG), tmp_path, recorder)
        core.sequencer.clock_us = lambda: now_us() + ahead_us
        await core.start()
        await core.stop()

    caplog.set_level(logging.WARNING, logger="venue")
    asyncio.run(start_and_stop(hour_us))  # built while the clock was an hour ahead
    asyncio.run(start_and_stop(hour_us))  # recovered with the clock as it was: not behind
    assert not [record for record in caplog.records if "clock is behind" in record.message]
    asyncio.run(start_and_stop(0))  # the clock put right
    asyncio.run(start_and_stop(0))  # started again in this process: the venue's time stood still
    (warning,) = [record for record in caplog.records if "clock is behind" in record.message]
    assert 3_500 < warning.ahead_s <= 3_600, warning.ahead_s


def test_a_cluster_gateway_s_snapshot_in_a_core_s_data_directory_is_refused(
    tmp_path: Path,
) -> None:
    """A core started on a directory whose newest snapshot is a cluster gateway's (it holds
    the stream's epoch; a gateway's directory given to a core): refused, naming the file,
    the directory as found. Before: restored as a core's, without the core's part (the last
    request id per gateway, the cod orders)."""
    data_dir = tmp_path / "data"

    async def start_and_stop() -> None:
        venue = await start_venue(data_dir)
        await venue.server.stop()

    asyncio.run(start_and_stop())
    image = snapshots.latest(data_dir)
    assert image is not None
    gateway_part = image.gateway | {stream_snapshots.STREAM_EPOCH_KEY: 1}
    snapshots.write(data_dir, msgspec.structs.replace(image, gateway=gateway_part))
    before = {path.name: path.read_bytes() for path in data_dir.iterdir()}
    path = snapshots.path_for(data_dir, image.seq)
    with pytest.raises(RecoveryRefused, match=f"{path} is a cluster gateway's snapshot"):
        asyncio.run(start_and_stop())
    assert {path.name: path.read_bytes() for path in data_dir.iterdir()} == before
