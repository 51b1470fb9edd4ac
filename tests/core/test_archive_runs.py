"""The venue's own journal archive (`[venue] journal_archive_dir`): after its periodic snapshots,
its finished segments a restart no longer needs move out, by `venue journal archive` run as
a child process.

A real venue in process on loopback (snapshots every fraction of a second), its journal in
64 KiB segments (`journal_segment_bytes`), real files and real child processes; then a
restart and `venue verify --archive` on what is left."""

import asyncio
import fcntl
import itertools
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from cli.main import main
from core import config as venue_config
from core import venue_core
from core.archive_runs import (
    CODE_ROOT,
    ArchiveRuns,
    child_environment,
    configured_problem,
    may_move,
)
from core.journal import segment_files
from core.journal_archive import ARCHIVE_LOCK_FILE
from core.verify import verify
from gateway.server import JOURNAL_FILE, VenueServer
from tests.conftest import Venue
from tests.core.test_journal_archive import write_segmented
from tests.sample_config import SAMPLE_CONFIG

SYMBOL = "AAPLx-USD"
SEGMENT_BYTES = 64 << 10  # the least the config takes: ~400 commands a segment
SEGMENTS_ARCHIVED_MIN = 3  # "several": the head and two more
WAIT_S = 60.0  # for the archive to catch up: a child process per run on a loaded machine
ROUND_COMMANDS = 2  # a resting sell and a taker's buy against it


def configured(data_dir: Path, archive_dir: Path | str) -> venue_config.VenueConfig:
    config = venue_config.load(SAMPLE_CONFIG)
    venue = msgspec.structs.replace(
        config.venue,
        journal_archive_dir=str(archive_dir),
        journal_segment_bytes=SEGMENT_BYTES,
        data_dir=str(data_dir),
    )
    return msgspec.structs.replace(config, venue=venue)


@pytest.fixture(autouse=True)
def frequent_snapshots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(venue_core, "SNAPSHOT_INTERVAL_S", 0.2)


async def started(config: venue_config.VenueConfig) -> Venue:
    server = VenueServer(config, Path(config.venue.data_dir))
    return Venue(server, await server.start("127.0.0.1", 0))


async def trade(venue: Venue, rounds: int) -> None:
    alpha = await venue.client("alpha")
    taker = await venue.client("taker")
    for _ in range(rounds):
        await alpha.place(SYMBOL, "sell", "1", "187.30")
        await taker.place(SYMBOL, "buy", "0.5", "187.30", tif="ioc")
    await alpha.close()
    await taker.close()


async def trade_until(venue: Venue, condition: Callable[[], bool], what: str) -> None:
    """Trade a few rounds at a time until `condition` holds (bounded): a snapshot is taken
    only after commands, and a segment goes once the oldest of the snapshots kept passes it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"not within {WAIT_S} s: {what}")
        await trade(venue, 25)
        await asyncio.sleep(0.1)


async def state_of(venue: Venue) -> tuple[str, Any, Any, Any]:
    """The engine's state hash, and what two accounts read of their balances and orders."""
    alpha = await venue.client("alpha")
    taker = await venue.client("taker")
    try:
        return (
            venue.server.venue.state_hash(),
            await alpha.balances(),
            await taker.balances(),
            await alpha.open_orders(),
        )
    finally:
        await alpha.close()
        await taker.close()


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(scenario(), WAIT_S * 2))


def run_once(runs: ArchiveRuns) -> None:
    """One snapshot's run, awaited to its end."""

    async def scenario() -> None:
        runs.after_snapshot()
        assert runs._task is not None
        await runs._task

    run(scenario)


def archived(to: Path) -> list[int]:
    return [seq for seq, _ in segment_files(to / JOURNAL_FILE)]


def test_the_venue_archives_its_old_segments_by_itself(tmp_path: Path) -> None:
    data_dir, to = tmp_path / "data", tmp_path / "archive"
    to.mkdir()
    config = configured(data_dir, to)

    async def serving() -> tuple[str, Any, Any, Any]:
        venue = await started(config)
        try:
            several = SEGMENTS_ARCHIVED_MIN
            await trade_until(venue, lambda: len(archived(to)) >= several, "segments archived")
            await trade(venue, 5)  # trading goes on beside it
            runs = venue.server.core.archive_runs
            assert runs is not None and runs.failures == 0 and runs.runs >= 1
            return await state_of(venue)
        finally:
            await venue.server.stop()

    before = run(serving)
    moved = archived(to)
    left = [seq for seq, _ in segment_files(data_dir / JOURNAL_FILE)]
    assert moved[0] == 1 and not (data_dir / JOURNAL_FILE).exists()
    assert moved[-1] < left[0], "each segment in one place: moved, not copied"
    assert not list(to.glob("*.tmp"))

    async def restarted() -> tuple[str, Any, Any, Any]:
        venue = await started(config)
        try:
            return await state_of(venue)
        finally:
            await venue.server.stop()

    assert run(restarted) == before  # balances and orders as they were
    lines = verify(data_dir, config, archive=to)
    assert all(line.startswith("ok") for line in lines), lines
    assert main(["verify", "--data-dir", str(data_dir), "--config", str(SAMPLE_CONFIG),
                 "--archive", str(to)]) == 0  # fmt: skip


def test_a_failed_run_is_a_warning_and_the_next_snapshot_tries_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir, to = tmp_path / "data", tmp_path / "archive"
    to.write_text("not a directory")  # in the way: every run refused until it goes
    config = configured(data_dir, to)

    async def serving() -> tuple[str, Any, Any, Any]:
        venue = await started(config)
        runs = venue.server.core.archive_runs
        assert runs is not None
        try:
            await trade_until(venue, lambda: runs.failures >= 2, "runs refused")
            await trade(venue, 5)  # the venue trades on
            assert to.is_file() and (data_dir / JOURNAL_FILE).exists(), "nothing moved"
            to.unlink()  # the operator mends it: the next snapshot's run archives
            to.mkdir()
            await trade_until(venue, lambda: len(archived(to)) >= 2, "archived once mended")
            return await state_of(venue)
        finally:
            await venue.server.stop()

    with caplog.at_level(logging.WARNING, logger="venue.archive"):
        before = run(serving)
    warned = [record.getMessage() for record in caplog.records if record.name == "venue.archive"]
    assert warned and all(message.startswith("journal not archived: ") for message in warned)
    assert f"{to}" in warned[0] and "tried again after the next snapshot" in warned[0], warned

    async def restarted() -> tuple[str, Any, Any, Any]:
        venue = await started(config)
        try:
            return await state_of(venue)
        finally:
            await venue.server.stop()

    assert run(restarted) == before  # nothing lost
    lines = verify(data_dir, config, archive=to)
    assert all(line.startswith("ok") for line in lines), lines


def test_a_run_held_off_by_another_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir, to = tmp_path / "data", tmp_path / "archive"
    to.mkdir()
    config = configured(data_dir, to)

    async def serving() -> None:
        venue = await started(config)
        runs = venue.server.core.archive_runs
        assert runs is not None
        try:
            with (to / ARCHIVE_LOCK_FILE).open("a") as lock:  # an operator's cron run, say
                fcntl.flock(lock, fcntl.LOCK_EX)
                await trade_until(venue, lambda: runs.failures >= 1, "a run refused")
            assert archived(to) == []
        finally:
            await venue.server.stop()

    with caplog.at_level(logging.WARNING, logger="venue.archive"):
        run(serving)
    warned = [record.getMessage() for record in caplog.records if record.name == "venue.archive"]
    assert "another `venue journal archive` is running" in warned[0], warned


def test_nothing_may_move_before_a_snapshot_passes_a_finished_segment(tmp_path: Path) -> None:
    from core.journal import FileJournal

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    journal = FileJournal(data_dir / JOURNAL_FILE, segment_bytes=200)
    try:
        for seq in range(1, 10):
            journal.commit([(seq, b"x" * 100)])
    finally:
        journal.close()
    first_seqs = [seq for seq, _ in segment_files(data_dir / JOURNAL_FILE)]
    assert len(first_seqs) > 2
    assert not may_move(data_dir / JOURNAL_FILE)  # no snapshot
    (data_dir / f"snapshot-{first_seqs[1] - 2:020d}.bin").touch()  # (names alone count)
    assert not may_move(data_dir / JOURNAL_FILE), "the first segment ends one later"
    (data_dir / f"snapshot-{first_seqs[1] - 2:020d}.bin").rename(
        data_dir / f"snapshot-{first_seqs[1] - 1:020d}.bin"
    )
    assert may_move(data_dir / JOURNAL_FILE)


SERVE_REFUSALS = [
    ({"journal_archive_dir": "DATA"}, "is the data directory: give another directory"),
    ({"journal_archive_dir": "FILE"}, "not a directory"),
    ({"journal_archive_dir": "FILE/below"}, "which is not a directory"),
    ({"journal_archive_dir": "LINK"}, "which does not exist (is its disk mounted?)"),
    ({"journal_archive_dir": "LINK/below"}, "LINK is a symbolic link to NOWHERE, which does not"),
    ({"journal_archive_dir": "MISSING"}, "MISSING': no such directory (is its disk mounted?"),
    ({"journal_segment_bytes": 1_000}, "Expected `int` >= 65536"),
    ({"journal_segment_bytes": 8 << 30}, "Expected `int` <= 4294967296"),
    ({"nats": "nats://127.0.0.1:1", "journal_archive_dir": "x"}, "JetStream stream"),
]


@pytest.mark.parametrize(("venue", "said"), SERVE_REFUSALS)
def test_serve_refuses_a_bad_archive_setting_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], venue: dict[str, Any], said: str
) -> None:
    data_dir = tmp_path / "data"
    (tmp_path / "FILE").write_text("x")
    (tmp_path / "LINK").symlink_to(tmp_path / "nowhere")
    names = {
        "DATA": str(data_dir),
        "FILE": str(tmp_path / "FILE"),
        "LINK": str(tmp_path / "LINK"),
        "NOWHERE": str(tmp_path / "nowhere"),
        "MISSING": str(tmp_path / "cold" / "journal"),  # (/mnt/cold, its disk not mounted)
    }
    said = _toml(said, names).strip('"')
    lines = [f"{key} = {_toml(value, names)}" for key, value in venue.items()]
    sample = SAMPLE_CONFIG.read_text().replace("[venue]\n", "[venue]\n" + "\n".join(lines) + "\n")
    config_path = tmp_path / "venue.toml"
    config_path.write_text(sample)
    status = main(["serve", "--config", str(config_path), "--data-dir", str(data_dir),
                   "--port", "0"])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 2 and said in err and len(err.strip().splitlines()) == 1, err
    assert "journal_" in err, "names the key"
    assert not data_dir.exists(), "nothing made"


def _toml(value: Any, names: dict[str, str]) -> str:
    if isinstance(value, int):
        return str(value)
    for name, path in names.items():
        value = value.replace(name, path)
    return f'"{value}"'


def test_the_problem_of_a_sound_setting_is_none(tmp_path: Path) -> None:
    (tmp_path / "cold" / "journal").mkdir(parents=True)
    config = configured(tmp_path / "data", tmp_path / "cold" / "journal")
    assert configured_problem(config.venue, tmp_path / "data", "") is None
    config = configured(tmp_path / "data", "")
    assert configured_problem(config.venue, tmp_path / "data", "nats://x:1") is not None


SLOW_RUN = "import pathlib, sys, time; pathlib.Path(sys.argv[1]).write_text('x'); time.sleep(600)"


class SlowRuns(ArchiveRuns):
    """Runs that never end by themselves (a copy to a hung disk, say), there to be stopped."""

    def command(self) -> list[str]:
        started = self.archive_dir / "started"
        return [sys.executable, "-c", SLOW_RUN, str(started)]


def test_a_stop_ends_a_run_in_flight_and_starts_no_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir, to = tmp_path / "data", tmp_path / "archive"
    data_dir.mkdir()
    to.mkdir()
    monkeypatch.setattr("core.archive_runs.may_move", lambda journal: True)
    runs = SlowRuns(data_dir / JOURNAL_FILE, to)

    async def scenario() -> None:
        runs.after_snapshot()
        for _ in range(int(WAIT_S / 0.05)):  # the child has begun, and the run holds it
            if runs._child is not None and (to / "started").exists():
                break
            await asyncio.sleep(0.05)
        child = runs._child
        assert child is not None and child.returncode is None
        runs.after_snapshot()  # one at a time: no second run
        assert runs.runs == 1
        await runs.stop()
        assert child.returncode is not None, "ended"
        runs.after_snapshot()  # stopped: no more
        assert runs.runs == 1 and runs.failures == 0

    run(scenario)


def test_a_run_refused_part_way_logs_what_it_moved_then_the_refusal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("core.journal.SEGMENT_BYTES", 1_024)
    data_dir, to = tmp_path / "data", tmp_path / "archive"
    write_segmented(data_dir, 40)  # 100-byte records in 1 KiB segments, a snapshot at 40
    found = segment_files(data_dir / JOURNAL_FILE)
    to.mkdir()
    (to / found[2][1].name).write_bytes(b"another venue's")
    runs = ArchiveRuns(data_dir / JOURNAL_FILE, to)

    with caplog.at_level(logging.INFO, logger="venue.archive"):
        run_once(runs)
    said = [(record.levelname, record.getMessage(), record.__dict__) for record in caplog.records]
    assert said[0][:2] == ("INFO", "journal archived")
    assert said[0][2]["segments"] == [
        f"{path.name} (seqs {seq} to {next_seq - 1})"
        for (seq, path), (next_seq, _) in itertools.pairwise(found[:3])
    ]
    assert said[1][0] == "WARNING" and "differs" in said[1][1] and runs.failures == 1


PLANTED = "import pathlib; pathlib.Path(__file__).with_name('ran').write_text('planted')"


def planted_in(directory: Path) -> Path:
    """A `cli` package in `directory` whose `cli.main`, imported, writes `cli/ran`: what a
    stranger could leave in a directory the venue is started from (`cd /tmp && venue serve`)."""
    (directory / "cli").mkdir(parents=True)
    (directory / "cli" / "__init__.py").write_text("")
    (directory / "cli" / "main.py").write_text(PLANTED)
    return directory / "cli" / "ran"


def test_a_run_from_a_checkout_imports_its_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The run's own interpreter flags, from a working directory holding a planted `cli`:
    # `python -m` (and -c) put the working directory first on the path, ahead of the checkout.
    monkeypatch.delenv("PYTHONPATH", raising=False)
    ran = planted_in(tmp_path / "cwd")
    environment = child_environment()
    assert environment["PYTHONPATH"] == str(CODE_ROOT)
    command = ArchiveRuns(tmp_path / JOURNAL_FILE, tmp_path / "archive").command()
    flags = command[: command.index("-m")]
    found = subprocess.run(
        [*flags, "-c", "import cli.main; print(cli.main.__file__)"],
        env=environment,
        capture_output=True,
        text=True,
        cwd=tmp_path / "cwd",
        timeout=60,
        check=True,
    )
    assert found.stdout.strip() == str(CODE_ROOT / "cli" / "main.py")
    assert not ran.exists()


def test_a_run_does_not_run_code_planted_in_the_venues_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("core.journal.SEGMENT_BYTES", 1_024)
    data_dir, to = tmp_path / "data", tmp_path / "archive"
    write_segmented(data_dir, 40)  # 100-byte records in 1 KiB segments, a snapshot at 40
    to.mkdir()
    ran = planted_in(tmp_path / "cwd")
    monkeypatch.chdir(tmp_path / "cwd")  # the venue's own working directory
    runs = ArchiveRuns(data_dir / JOURNAL_FILE, to)

    run_once(runs)
    assert not ran.exists(), "the planted cli/main.py ran as the venue's user"
    assert runs.failures == 0 and len(archived(to)) >= 2, "the checkout's own command ran"


def test_a_stop_while_the_run_looks_at_the_journal_starts_no_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir, to = tmp_path / "data", tmp_path / "archive"
    data_dir.mkdir()
    to.mkdir()
    looking = threading.Event()

    def slow_may_move(journal: Path) -> bool:  # (a listing on a slow disk)
        looking.set()
        time.sleep(0.5)
        return True

    monkeypatch.setattr("core.archive_runs.may_move", slow_may_move)
    runs = SlowRuns(data_dir / JOURNAL_FILE, to)

    async def scenario() -> None:
        runs.after_snapshot()
        await asyncio.to_thread(looking.wait, WAIT_S)
        await asyncio.sleep(0.05)
        await runs.stop()  # no child yet: nothing to end; none is to start after it
        assert runs._task is not None and runs._task.done()

    run(scenario)
    assert runs.runs == 0 and not (to / "started").exists(), "no child started"


def test_a_look_at_a_hung_disk_is_said_and_the_stop_does_not_wait_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The re-review (session 35): the venue looked at the archive's disk in a thread of its
    own before the run's child started; hung there (a stale NFS mount), nothing was said,
    as only a child's run was, and the stop awaited the thread for ever. The venue looks only
    at its journal now (the child at the archive: `--existing`), a look that lasts is said,
    and the stop gives it up after `STOP_WAIT_S`; the look's thread is a daemon of its own,
    so the loop's end does not wait for it either (the next re-review: in the default
    executor, `asyncio.run`'s end joined it)."""
    data_dir, to = tmp_path / "data", tmp_path / "archive"
    data_dir.mkdir()
    to.mkdir()
    released = threading.Event()

    def hung_may_move(journal: Path) -> bool:
        released.wait(WAIT_S)  # (bounded: the test lets it go at its end)
        return False

    monkeypatch.setattr("core.archive_runs.may_move", hung_may_move)
    monkeypatch.setattr("core.archive_runs.RUN_LONG_S", 0.0)
    monkeypatch.setattr("core.archive_runs.STOP_WAIT_S", 0.2)
    runs = ArchiveRuns(data_dir / JOURNAL_FILE, to)

    async def scenario() -> None:
        runs.after_snapshot()
        await asyncio.sleep(0.05)
        runs.after_snapshot()  # the next snapshot: the look still under way
        stopped = asyncio.create_task(runs.stop())
        done, _ = await asyncio.wait([stopped], timeout=WAIT_S / 2)
        assert done, "the stop waited for the hung look"
        assert runs._task is not None and runs._task.cancelled()

    with caplog.at_level(logging.WARNING, logger="venue.archive"):
        run(scenario)  # its end joins no thread still looking (the re-review: it did)
    looking = [thread for thread in threading.enumerate() if thread.name == "venue-archive-look"]
    alive = bool(looking) and looking[0].is_alive()  # read before it is let go
    released.set()
    assert alive, "the loop's end waited for the look"
    said = [record.getMessage() for record in caplog.records if record.name == "venue.archive"]
    assert any(line.startswith("journal archive still running after") for line in said), said
    assert runs.runs == 0


def test_a_run_that_lasts_is_said_at_each_snapshot_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir, to = tmp_path / "data", tmp_path / "archive"
    data_dir.mkdir()
    to.mkdir()
    monkeypatch.setattr("core.archive_runs.may_move", lambda journal: True)
    monkeypatch.setattr("core.archive_runs.RUN_LONG_S", 0.0)
    runs = SlowRuns(data_dir / JOURNAL_FILE, to)

    async def scenario() -> None:
        runs.after_snapshot()
        for _ in range(int(WAIT_S / 0.05)):
            if runs._child is not None and (to / "started").exists():
                break
            await asyncio.sleep(0.05)
        runs.after_snapshot()
        await runs.stop()

    with caplog.at_level(logging.WARNING, logger="venue.archive"):
        run(scenario)
    warned = [record.getMessage() for record in caplog.records if record.name == "venue.archive"]
    assert len(warned) == 1 and warned[0].startswith("journal archive still running after "), warned


@pytest.mark.parametrize("gone", ["directory", "link on the way"])
def test_a_run_whose_archive_directory_has_gone_makes_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, gone: str
) -> None:
    # The reviewer: an unmounted disk's mount point is an empty directory, and the run's
    # mkdir made the archive on the root disk; a link to the unmounted disk on the way was
    # said as mkdir's "File exists".
    monkeypatch.setattr("core.journal.SEGMENT_BYTES", 1_024)
    data_dir = tmp_path / "data"
    write_segmented(data_dir, 40)
    (tmp_path / "cold").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "unmounted")
    to = tmp_path / ("cold" if gone == "directory" else "link") / "journal"
    runs = ArchiveRuns(data_dir / JOURNAL_FILE, to)

    with caplog.at_level(logging.INFO, logger="venue.archive"):
        run_once(runs)
    warned = [record.getMessage() for record in caplog.records if record.name == "venue.archive"]
    said = (
        f"{to}: no such directory (is its disk mounted?"
        if gone == "directory"
        else f"{tmp_path / 'link'} is a symbolic link to {tmp_path / 'unmounted'}, which does not"
    )
    assert len(warned) == 1 and warned[0].startswith("journal not archived: "), warned
    assert said in warned[0], warned
    assert not to.exists() and not (tmp_path / "unmounted").exists(), "none made"
    assert runs.failures == 1 and len(segment_files(data_dir / JOURNAL_FILE)) > 2
