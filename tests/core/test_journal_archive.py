"""`venue journal archive`: finished segments a restart no longer needs move out, checked.

A real venue in process on loopback, its journal in small segments (`SEGMENT_BYTES`
lowered), real files; then recovery and `venue verify` on what is left, with and without
the archive."""

import asyncio
import fcntl
import os
import tracemalloc
from pathlib import Path

import msgspec
import pytest

from cli.failures import CommandFailed
from cli.main import main
from core import config as venue_config
from core import journal as journal_module
from core import snapshots
from core.journal import FileJournal, segment_files
from core.journal_archive import ARCHIVE_LOCK_FILE, archive
from core.verify import verify
from engine.snapshot import capture
from engine.venue import Venue, VenueConfig
from gateway.server import JOURNAL_FILE
from settlement.ledger import Ledger
from tests import interleave
from tests.conftest import rewritten_snapshot, start_venue
from tests.sample_config import SAMPLE_CONFIG

SYMBOL = "AAPLx-USD"
SEGMENT_BYTES = 1_024  # a new segment every few commands
ROUNDS = 6  # of a resting sell and a taker's buy: commands enough for several segments
# A snapshot this big read whole stands out from a run's 1 MiB buffers (and is quick to write)
SNAPSHOT_FILLER_BYTES = 8 << 20


@pytest.fixture(autouse=True)
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_module, "SEGMENT_BYTES", SEGMENT_BYTES)


async def trade(venue: object, rounds: int) -> None:
    alpha = await venue.client("alpha")  # type: ignore[attr-defined]
    taker = await venue.client("taker")  # type: ignore[attr-defined]
    for _ in range(rounds):
        await alpha.place(SYMBOL, "sell", "1", "187.30")
        await taker.place(SYMBOL, "buy", "0.5", "187.30", tif="ioc")
    await alpha.close()
    await taker.close()


def traded_then_stopped(data_dir: Path) -> None:
    """A venue that traded `ROUNDS` and stopped: its snapshot at the stop, so the head may go."""

    async def run() -> None:
        venue = await start_venue(data_dir)
        try:
            await trade(venue, ROUNDS)
        finally:
            await venue.server.stop()

    asyncio.run(run())


def first_seqs(data_dir: Path) -> list[int]:
    return [seq for seq, _ in segment_files(data_dir / JOURNAL_FILE)]


def test_archived_while_running_then_recovered_and_verified(tmp_path: Path) -> None:
    data_dir, to = tmp_path / "data", tmp_path / "archive"
    config = venue_config.load(SAMPLE_CONFIG)

    async def running() -> tuple[list[str], str, int]:
        venue = await start_venue(data_dir)
        try:
            await trade(venue, ROUNDS)
            snapshot_seq = venue.server.core.sequencer.last_seq
            await venue.server.core.snapshot()
            moved = archive(data_dir, to)  # the venue running, its open segment locked
            await trade(venue, 2)  # and it goes on
            return moved, venue.server.venue.state_hash(), snapshot_seq
        finally:
            await venue.server.stop()

    before = first_seqs(data_dir) if data_dir.exists() else []
    assert before == []
    moved, state, snapshot_seq = asyncio.run(running())
    assert len(moved) >= 3, moved
    assert moved[0].startswith(f"ok   archived {JOURNAL_FILE} (seqs 1 to ")
    left = first_seqs(data_dir)
    assert left[0] > 1 and not (data_dir / JOURNAL_FILE).exists()
    archived = [seq for seq, _ in segment_files(to / JOURNAL_FILE)]
    assert archived[0] == 1 and archived[-1] < left[0] <= snapshot_seq + 1
    journal = FileJournal(data_dir / JOURNAL_FILE, read_only=True)
    try:
        assert journal.first_seq() == left[0]
    finally:
        journal.close()

    for later in data_dir.glob("snapshot-*.bin"):  # the stop's: recover as after a crash
        if int(later.name[9:29]) > snapshot_seq:
            later.unlink()

    async def restarted() -> str:
        # from the snapshot taken while running, and the segments after it
        venue = await start_venue(data_dir)
        try:
            return venue.server.venue.state_hash()
        finally:
            await venue.server.stop()

    assert asyncio.run(restarted()) == state
    lines = verify(data_dir, config)
    assert all(line.startswith("ok") for line in lines), lines
    assert any(f"begins at seq {first_seqs(data_dir)[0]} here" in line for line in lines)
    full = verify(data_dir, config, archive=to)
    assert all(line.startswith("ok") for line in full), full
    assert full[0].startswith("ok   journal: ") and " from seq " not in full[0]
    assert main(["verify", "--data-dir", str(data_dir), "--config", str(SAMPLE_CONFIG),
                 "--archive", str(to)]) == 0  # fmt: skip


def test_nothing_moves_without_a_snapshot_and_the_open_segment_never(tmp_path: Path) -> None:
    data_dir, to = tmp_path / "data", tmp_path / "archive"
    journal = FileJournal(data_dir / JOURNAL_FILE) if data_dir.mkdir() is None else None
    assert journal is not None
    try:
        for seq in range(1, 40):
            journal.commit([(seq, b"x" * 100)])
    finally:
        journal.close()
    assert len(first_seqs(data_dir)) > 3
    assert archive(data_dir, to) == [
        "ok   nothing archived: no snapshot that checks out yet (a restart replays the whole"
        " journal)"
    ]
    write_snapshot(data_dir, 39)
    before = first_seqs(data_dir)
    assert main(["journal", "archive", "--data-dir", str(data_dir), "--to", str(to)]) == 0
    assert first_seqs(data_dir) == before[-1:], "all finished ones went, the open one stayed"
    assert archive(data_dir, to)[-1].startswith(f"ok   the journal in {data_dir} begins at seq")


def archived_names(to: Path) -> list[str]:
    return sorted(path.name for path in to.iterdir() if path.name != ARCHIVE_LOCK_FILE)


def write_segmented(data_dir: Path, count: int) -> None:
    data_dir.mkdir()
    journal = FileJournal(data_dir / JOURNAL_FILE)
    try:
        for seq in range(1, count + 1):
            journal.commit([(seq, b"y" * 100)])
    finally:
        journal.close()
    write_snapshot(data_dir, count)


def write_snapshot(data_dir: Path, seq: int) -> Path:
    """A snapshot at `seq` that reads (CRC and body), of an empty venue."""
    image = snapshots.Snapshot(seq, capture(Venue(VenueConfig(), Ledger())), {})
    return snapshots.write(data_dir, image)


def test_a_damaged_or_empty_snapshot_moves_nothing(tmp_path: Path) -> None:
    # Its name alone moved the journal's head before: a venue with no good snapshot and its
    # head archived cannot restart (JournalArchived).
    data_dir, to = tmp_path / "data", tmp_path / "archive"
    write_segmented(data_dir, 40)
    good = write_snapshot(data_dir, 10)
    newest = data_dir / f"snapshot-{40:020d}.bin"
    body = bytearray(newest.read_bytes())
    body[-1] ^= 0xFF
    newest.write_bytes(bytes(body))
    empty = data_dir / f"snapshot-{39:020d}.bin"
    empty.write_bytes(b"")
    before = first_seqs(data_dir)
    lines = archive(data_dir, to)
    assert 1 < first_seqs(data_dir)[0] <= 11, "the head went, nothing past the good one"
    assert first_seqs(data_dir) == before[1:]
    good.unlink()  # only the damaged and the empty one left: nothing more goes
    left = first_seqs(data_dir)
    again = archive(data_dir, to)
    assert first_seqs(data_dir) == left
    assert lines[-1].endswith("seq 10 (the oldest snapshot's, or the newest that checks out)")
    assert again == [
        "ok   nothing archived: no snapshot that checks out yet (a restart replays the whole"
        " journal)"
    ]
    empty.unlink()
    newest.unlink()
    write_snapshot(data_dir, 41)  # past the journal's last record: refused, nothing moved
    with pytest.raises(CommandFailed, match="seq 41, which no record of the journal reaches"):
        archive(data_dir, to)
    assert first_seqs(data_dir) == left


def test_a_copy_that_does_not_check_out_keeps_the_original(tmp_path: Path) -> None:
    data_dir, to = tmp_path / "data", tmp_path / "archive"
    write_segmented(data_dir, 40)
    (_, first), (_, second) = segment_files(data_dir / JOURNAL_FILE)[:2]
    damaged = bytearray(second.read_bytes())
    damaged[-1] ^= 0xFF
    second.write_bytes(bytes(damaged))
    with pytest.raises(CommandFailed, match="the original is kept"):
        archive(data_dir, to)
    assert second.read_bytes() == damaged, "left as it was"
    assert not first.exists() and (to / first.name).exists(), "the good one before it moved"
    assert archived_names(to) == [first.name], "no copy left behind"


def test_a_copy_left_by_a_run_that_stopped_before_the_removal_is_taken(tmp_path: Path) -> None:
    data_dir, to = tmp_path / "data", tmp_path / "archive"
    write_segmented(data_dir, 40)
    (_, first) = segment_files(data_dir / JOURNAL_FILE)[0]
    to.mkdir()
    (to / first.name).write_bytes(first.read_bytes())  # renamed, then the run stopped
    (to / f"{first.name}.tmp").write_bytes(b"half")  # and an older run's half copy
    archive(data_dir, to)
    assert not first.exists()
    assert not (to / f"{first.name}.tmp").exists(), "the half copy removed"
    journal = FileJournal(data_dir / JOURNAL_FILE)
    try:
        assert journal.last_seq() == 40
    finally:
        journal.close()


def test_a_different_file_of_the_same_name_in_the_archive_is_refused(tmp_path: Path) -> None:
    data_dir, to = tmp_path / "data", tmp_path / "archive"
    write_segmented(data_dir, 40)
    (_, first) = segment_files(data_dir / JOURNAL_FILE)[0]
    to.mkdir()
    (to / first.name).write_bytes(b"another venue's")
    with pytest.raises(CommandFailed, match="differs"):
        archive(data_dir, to)
    assert first.exists()


def test_a_run_that_fails_part_way_says_what_it_moved_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Its lines were printed only once every segment had moved: a run refused at its third
    # segment said the refusal alone, and the two segments it had moved went unsaid
    data_dir, to = tmp_path / "data", tmp_path / "archive"
    write_segmented(data_dir, 40)
    found = segment_files(data_dir / JOURNAL_FILE)
    assert len(found) > 4
    to.mkdir()
    (to / found[2][1].name).write_bytes(b"another venue's")
    assert main(["journal", "archive", "--data-dir", str(data_dir), "--to", str(to)]) == 2
    out, err = capsys.readouterr()
    assert [line.split(" (seqs")[0] for line in out.splitlines()] == [
        f"ok   archived {found[0][1].name}",
        f"ok   archived {found[1][1].name}",
    ], out
    assert "differs" in err and first_seqs(data_dir)[0] == found[2][0]


def test_verify_of_an_archived_head_needs_a_snapshot_or_the_archive(tmp_path: Path) -> None:
    data_dir, to = tmp_path / "data", tmp_path / "archive"
    config = venue_config.load(SAMPLE_CONFIG)

    traded_then_stopped(data_dir)
    archive(data_dir, to)
    kept = sorted(data_dir.glob("snapshot-*.bin"))
    for snapshot in kept:  # damaged: the refusal names them
        snapshot.write_bytes(b"not a snapshot")
    with pytest.raises(CommandFailed, match=f"not good: {kept[-1].name}.*give --archive DIR"):
        verify(data_dir, config)
    for snapshot in kept:
        snapshot.unlink()
    with pytest.raises(CommandFailed, match=r"seq \d+: give --archive DIR"):
        verify(data_dir, config)
    lines = verify(data_dir, config, archive=to)
    assert all(line.startswith("ok") for line in lines), lines
    head = to / JOURNAL_FILE
    head.rename(tmp_path / "lost")
    with pytest.raises(CommandFailed, match="no archived segment from seq 1"):
        verify(data_dir, config, archive=to)


def test_verify_with_an_archive_that_holds_no_head_says_so(tmp_path: Path) -> None:
    # Each said only `DIR: its segments end at seq 0, the journal in the data directory begins
    # at seq N`: a wrong path, a file, the data directory itself, an empty directory alike
    data_dir, to = tmp_path / "data", tmp_path / "archive"
    config = venue_config.load(SAMPLE_CONFIG)

    traded_then_stopped(data_dir)
    archive(data_dir, to)
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    refused = {
        tmp_path / "missing": "no such directory",
        tmp_path / "file": "not a directory",
        tmp_path / "empty": f"no archived segment from seq 1 ({JOURNAL_FILE})",
        data_dir: f"no archived segment from seq 1 ({JOURNAL_FILE})",
    }
    for wrong, said in refused.items():
        with pytest.raises(CommandFailed) as failed:
            verify(data_dir, config, archive=wrong)
        assert str(failed.value).startswith(f"--archive {wrong}: {said}"), failed.value
        assert "where `venue journal archive` moved the head" in str(failed.value)


@pytest.mark.parametrize("side", ["data", "archive"])
def test_a_second_run_at_once_is_refused_and_moves_nothing(tmp_path: Path, side: str) -> None:
    # Two runs at once (a cron overlap) shared one fixed `.tmp` name and no lock: one's
    # O_TRUNC could empty the other's checked copy before its original was removed.
    data_dir, to = tmp_path / "data", tmp_path / "archive"
    write_segmented(data_dir, 40)
    held_dir = data_dir if side == "data" else to
    held_dir.mkdir(exist_ok=True)
    before = first_seqs(data_dir)
    held = os.open(held_dir / ARCHIVE_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the other run, mid-way
        with pytest.raises(CommandFailed, match="another `venue journal archive` is running"):
            archive(data_dir, to)
        if side == "data":  # to another archive: refused as well
            with pytest.raises(CommandFailed, match="another `venue journal archive`"):
                archive(data_dir, tmp_path / "elsewhere")
        assert first_seqs(data_dir) == before
    finally:
        os.close(held)
    assert len(archive(data_dir, to)) > 1 and first_seqs(data_dir) != before, "then it runs"


def test_a_copy_changed_after_its_check_keeps_the_original(tmp_path: Path) -> None:
    data_dir, to = tmp_path / "data", tmp_path / "archive"
    write_segmented(data_dir, 40)
    (_, first) = segment_files(data_dir / JOURNAL_FILE)[0]
    original = first.read_bytes()

    def emptied(rename: tuple[object, ...]) -> None:  # as another run's O_TRUNC did
        os.truncate(str(rename[0]), 0)

    interleave.at_next("os.rename", emptied)  # the checked copy's rename into place
    try:
        with pytest.raises(CommandFailed, match="the original is kept"):
            archive(data_dir, to)
    finally:
        left = interleave.disarm()
    assert not left
    assert first.read_bytes() == original, "kept"
    assert (to / first.name).stat().st_size == 0


def test_a_rotation_and_snapshot_while_the_run_starts_is_no_refusal(tmp_path: Path) -> None:
    # The run listed the segments, then the venue rotated and wrote a snapshot in the new
    # segment before the run read it: the segment it had seen open does not reach that
    # snapshot's seq, and the run refused ("another venue's snapshot?") a venue running well.
    data_dir, to = tmp_path / "data", tmp_path / "archive"
    data_dir.mkdir()
    writer = FileJournal(data_dir / JOURNAL_FILE, segment_bytes=600)  # the running venue's
    try:
        for seq in range(1, 41):
            writer.commit([(seq, b"y" * 100)])
        write_snapshot(data_dir, 38)
        open_before = segment_files(data_dir / JOURNAL_FILE)[-1][0]

        def venue_goes_on(_: tuple[object, ...]) -> None:  # after the run's listing
            for seq in range(41, 47):
                writer.commit([(seq, b"y" * 100)])
            write_snapshot(data_dir, 46)

        interleave.at_next("os.scandir", venue_goes_on)  # its first look for snapshots
        lines = archive(data_dir, to)
        assert not interleave.disarm(), "the venue went on mid-run"
        assert segment_files(data_dir / JOURNAL_FILE)[-1][0] > open_before, "it rotated"
        assert lines[-1].endswith("seq 38 (the oldest snapshot's, or the newest that checks out)")
        assert first_seqs(data_dir)[0] > 1, "the segments through seq 38 went"
        assert writer.last_seq() == 46
    finally:
        writer.close()


def test_a_damaged_newest_snapshot_is_streamed_not_read_whole(tmp_path: Path) -> None:
    # A run reads whole only the snapshot that checks out (its entries are checked, as a
    # restart checks them); a damaged one's header and CRC, streamed, rule it out.
    data_dir, to = tmp_path / "data", tmp_path / "archive"
    write_segmented(data_dir, 60)
    (data_dir / f"snapshot-{60:020d}.bin").unlink()
    write_snapshot(data_dir, 30)
    filler = {"filler": msgspec.msgpack.encode(b"z" * SNAPSHOT_FILLER_BYTES)}
    image = snapshots.Snapshot(60, capture(Venue(VenueConfig(), Ledger())), filler)
    damaged = snapshots.write(data_dir, image)
    del image, filler
    with damaged.open("r+b") as file:  # a byte of its body flipped: its CRC no longer holds
        file.seek(-1, os.SEEK_END)
        last = file.read(1)
        file.seek(-1, os.SEEK_END)
        file.write(bytes([last[0] ^ 0xFF]))
    tracemalloc.start()
    try:
        lines = archive(data_dir, to)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_bytes < SNAPSHOT_FILLER_BYTES // 2, "the damaged snapshot was never held whole"
    assert lines[-1].endswith("seq 30 (the oldest snapshot's, or the newest that checks out)")


def test_a_copy_a_stopped_run_left_is_made_durable_before_the_original_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its rename may not have reached the disk (the run stopped before fsyncing DIR): removing
    # the original first, a power cut could leave neither.
    data_dir, to = tmp_path / "data", tmp_path / "archive"
    write_segmented(data_dir, 40)
    (_, first) = segment_files(data_dir / JOURNAL_FILE)[0]
    to.mkdir()
    (to / first.name).write_bytes(first.read_bytes())  # renamed, then the run stopped
    synced: list[Path] = []
    real_fsync_directory = snapshots.fsync_directory

    def recorded(directory: Path) -> None:  # (the real fsync, its directory noted)
        synced.append(Path(directory))
        real_fsync_directory(directory)

    monkeypatch.setattr(snapshots, "fsync_directory", recorded)
    synced_at_removal: list[list[Path]] = []
    interleave.at_next("os.remove", lambda args: synced_at_removal.append(list(synced)))
    archive(data_dir, to)
    assert synced_at_removal and to in synced_at_removal[0], "DIR fsynced before the unlink"
    assert not first.exists()


def test_a_snapshot_whose_entries_do_not_restore_stands_for_nothing(tmp_path: Path) -> None:
    # Its header and CRC check out, but a restart passes it over (`snapshots.latest`): it
    # moved the head before, and the restart then found no snapshot and no journal head.
    data_dir, to = tmp_path / "data", tmp_path / "archive"
    write_segmented(data_dir, 40)
    newest = data_dir / f"snapshot-{40:020d}.bin"
    rewritten_snapshot(newest, lambda gateway: gateway.update(private={"1": ["a seq", []]}))
    assert snapshots.checked_seq(newest) == 40 and snapshots.latest(data_dir) is None
    before = first_seqs(data_dir)
    assert archive(data_dir, to)[0].startswith("ok   nothing archived: no snapshot that checks")
    assert first_seqs(data_dir) == before
    write_snapshot(data_dir, 10)  # an older one a restart takes: the head up to it may go
    archive(data_dir, to)
    left = first_seqs(data_dir)
    assert 1 < left[0] <= 11 and snapshots.latest(data_dir) is not None


@pytest.mark.parametrize("kind", ["file", "link to nothing", "link on the way"])
def test_an_archive_path_that_is_no_directory_is_refused_in_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    # Both said only `DIR: File exists` (mkdir's words), which reads as if DIR were fine; a
    # link to nothing on the way was said so too (the reviewer)
    data_dir, to = tmp_path / "data", tmp_path / "archive"
    write_segmented(data_dir, 12)
    if kind == "file":
        to.write_text("a file")
        said = f"venue: --to {to}: not a directory (give the archive directory)\n"
    else:
        to.symlink_to(tmp_path / "unmounted")
        if kind == "link on the way":
            to = to / "journal"
        said = (
            f"venue: {tmp_path / 'archive'} is a symbolic link to {tmp_path / 'unmounted'},"
            " which does not exist (is its disk mounted?): not making an archive directory"
            " there; restore it or remove the link\n"
        )
    assert main(["journal", "archive", "--data-dir", str(data_dir), "--to", str(to)]) == 2
    assert capsys.readouterr().err == said
    assert first_seqs(data_dir)[0] == 1 and not (tmp_path / "unmounted").exists()


def test_existing_makes_no_archive_directory_gone_while_the_run_reads_its_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The review of the lead's commits (session 35): `--existing` checked DIR at its start,
    then made it all the same once the newest snapshot was read (seconds on a large venue):
    a disk unmounted meanwhile got the archive made under its empty mount point, on the root
    disk. Gone by then, DIR is refused and none is made."""
    data = tmp_path / "data"
    data.mkdir()
    (data / JOURNAL_FILE).write_bytes(b"")
    mount = tmp_path / "mnt-cold"  # a mount point: there while its disk is not mounted too
    to = mount / "venue-journal"
    to.mkdir(parents=True)

    def unmounted_meanwhile(data_dir: Path) -> int:
        to.rmdir()
        return 0

    monkeypatch.setattr("core.journal_archive.kept_through", unmounted_meanwhile)
    with pytest.raises(CommandFailed, match="no such directory"):
        archive(data, to, existing=True)
    assert not to.exists(), "made on the root disk"
