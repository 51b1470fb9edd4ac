"""Snapshot files: atomic, checked, newest valid one wins; damaged or half-written ignored."""

import re
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from cli.serve import stop_failure
from core import snapshots
from core.journal import DanglingLink
from core.snapshot_entries import HISTORY_IMAGE
from engine import snapshot as venue_snapshot
from engine.venue import Venue
from tests.conftest import NOT_UTF8_MARK, rewritten_snapshot, with_an_entry_not_decoding
from tests.engine import test_differential


def venue_after(commands: int) -> Venue:
    case = test_differential.CASES[0]
    venue = Venue(case.config())
    for command in test_differential.commands(case, commands):
        venue.execute(command)
    return venue


def snapshot_of(venue: Venue, seq: int) -> snapshots.Snapshot:
    return snapshots.Snapshot(seq, venue_snapshot.capture(venue), {"last_exec_id": seq})


def test_write_then_read_back(tmp_path: Path) -> None:
    venue = venue_after(500)
    path = snapshots.write(tmp_path, snapshot_of(venue, 500))
    loaded = snapshots.latest(tmp_path)
    assert loaded is not None and loaded.seq == 500 and path.exists()
    assert venue_snapshot.restore(loaded.venue).state_hash() == venue.state_hash()
    assert not list(tmp_path.glob("*.tmp"))


def test_newest_valid_snapshot_wins_and_damaged_ones_are_ignored(tmp_path: Path) -> None:
    older, newer = venue_after(300), venue_after(600)
    snapshots.write(tmp_path, snapshot_of(older, 300))
    newest = snapshots.write(tmp_path, snapshot_of(newer, 600))
    loaded = snapshots.latest(tmp_path)
    assert loaded is not None and loaded.seq == 600
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # a half-written file
    loaded = snapshots.latest(tmp_path)
    assert loaded is not None and loaded.seq == 300
    flipped = bytearray(data)
    flipped[-10] ^= 0xFF  # one damaged byte in the body
    newest.write_bytes(bytes(flipped))
    assert snapshots.read(newest) is None
    (tmp_path / "snapshot-00000000000000000900.bin").write_bytes(b"short")
    loaded = snapshots.latest(tmp_path)
    assert loaded is not None and loaded.seq == 300


def test_a_files_check_without_decoding_agrees_with_its_read(tmp_path: Path) -> None:
    path = snapshots.write(tmp_path, snapshot_of(venue_after(100), 100))
    data = path.read_bytes()
    flipped = bytearray(data)
    flipped[-10] ^= 0xFF
    wrong_magic = b"TVSNAP99" + data[8:]
    for contents, seq in [
        (data, 100),
        (data[: len(data) // 2], None),  # half-written
        (bytes(flipped), None),  # a damaged byte in the body
        (data + b"more", None),  # longer than its header says
        (wrong_magic, None),
        (b"short", None),
        (b"", None),
    ]:
        path.write_bytes(contents)
        assert snapshots.checked_seq(path) == seq
        read = snapshots.read(path)
        assert (read.seq if read is not None else None) == seq, "as `read` decides"


def test_only_the_newest_few_are_kept(tmp_path: Path) -> None:
    venue = venue_after(50)
    for seq in range(1, snapshots.SNAPSHOTS_KEPT + 3):
        snapshots.write(tmp_path, snapshot_of(venue, seq))
    kept = sorted(p.name for p in tmp_path.glob("snapshot-*.bin"))
    assert len(kept) == snapshots.SNAPSHOTS_KEPT
    assert kept[-1] == snapshots.path_for(tmp_path, snapshots.SNAPSHOTS_KEPT + 2).name


def test_a_snapshot_linked_to_nothing_is_refused_and_one_linked_to_a_file_followed(
    tmp_path: Path,
) -> None:
    """As the journal's rule: a snapshot kept on a disk not mounted now is not passed over
    as if never written (recovery would silently start from an older state); a link to a
    file is read as the file."""
    elsewhere = tmp_path / "other-disk"
    elsewhere.mkdir()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    kept = snapshots.write(elsewhere, snapshot_of(venue_after(100), 100))
    snapshots.path_for(data_dir, 100).symlink_to(kept)
    loaded = snapshots.latest(data_dir)
    assert loaded is not None and loaded.seq == 100
    gone = elsewhere / "snapshot-gone.bin"
    dangling = snapshots.path_for(data_dir, 200)
    dangling.symlink_to(gone)
    with pytest.raises(DanglingLink, match=f"^{dangling} is a symbolic link to {gone}, which"):
        snapshots.latest(data_dir)
    assert not gone.exists()


def test_a_stray_temporary_file_linked_to_nothing_is_removed(tmp_path: Path) -> None:
    stray = tmp_path / "snapshot-00000000000000000007.tmp"
    stray.symlink_to(tmp_path / "nowhere")
    assert snapshots.remove_stray(tmp_path) == [stray]
    assert not stray.is_symlink()


def test_an_older_snapshot_not_removed_is_named_by_the_error(tmp_path: Path) -> None:
    """Review of session 32: `SnapshotUnsettled` dropped the name of the file that failed, so
    a stop whose cleanup failed said `the stop failed: Permission denied`, no file. The older
    file here is a directory of that name: its unlink fails (EISDIR), as root too."""
    venue = venue_after(50)
    unremovable = snapshots.path_for(tmp_path, 0)
    unremovable.mkdir()
    (unremovable / "kept").touch()
    for seq in range(1, snapshots.SNAPSHOTS_KEPT):
        snapshots.write(tmp_path, snapshot_of(venue, seq))
    with pytest.raises(snapshots.SnapshotUnsettled) as unsettled:
        snapshots.write(tmp_path, snapshot_of(venue, snapshots.SNAPSHOTS_KEPT))
    assert unsettled.value.step == "an older snapshot not removed"
    assert unsettled.value.filename == str(unremovable)
    assert str(unremovable) in str(unsettled.value)
    assert stop_failure(unsettled.value, tmp_path).startswith(f"{unremovable}: ")


def test_a_snapshot_is_its_owners_alone_even_over_a_spare_a_crash_left(tmp_path: Path) -> None:
    """Session 32: a snapshot holds every participant's balances and orders, so it is 0600
    whatever the umask; a `.tmp` a crash left (0644, from before) keeps its mode through
    O_CREAT, so the mode is set again on the open file (the whole-diff review: untested)."""
    venue = venue_after(100)
    spare = snapshots.path_for(tmp_path, 100).with_suffix(".tmp")
    spare.write_bytes(b"torn")
    spare.chmod(0o644)
    written = snapshots.write(tmp_path, snapshot_of(venue, 100))
    assert oct(written.stat().st_mode & 0o777) == "0o600"


def gateway_of_many_accounts(accounts: int, events: int) -> dict[str, object]:
    """A gateway image shaped as the server's: per account its private history and its
    closed orders, the maps keyed by account."""
    push = b'{"ch":"account","seq":%d,"type":"exec","data":{"order_id":"%d"}}'
    return {
        "last_exec_id": accounts * events,
        "private": {
            str(account): (events, [(seq, push % (seq, seq)) for seq in range(1, events + 1)])
            for account in range(accounts)
        },
        "order_history": {
            "accepted_ts": [],
            "closing": list(range(accounts)),
            "accounts": {str(account): [0, [[account, "x"]] * events] for account in range(16)},
        },
        "resume_floors": {},
        "sixteen": dict.fromkeys(map(str, range(16)), 1),  # a map 16's header
        "wide": dict.fromkeys(map(str, range(2**16)), 1),  # a map 32's header
    }


def test_a_snapshot_is_encoded_in_pieces_into_the_same_bytes() -> None:
    """The soak's finding: one msgspec call encoded the whole snapshot, holding the GIL the
    while (a long run's 335 MB: ~2 s without an answer). Now the gateway's maps are encoded
    an account at a time, into the bytes the one call makes, so every snapshot reads alike."""
    venue = venue_after(500)
    gateway = gateway_of_many_accounts(accounts=200, events=50)
    snapshot = snapshots.Snapshot(500, venue_snapshot.capture(venue), gateway, 7)
    whole = msgspec.msgpack.encode(snapshot)
    pieces = list(snapshots.pieces(snapshot))
    assert b"".join(pieces) == whole == snapshots.encode(snapshot)
    one_account = len(msgspec.msgpack.encode(gateway["private"]["0"]))  # type: ignore[index]
    venue_part = len(msgspec.msgpack.encode(snapshot.venue))
    assert max(map(len, pieces)) <= max(one_account, venue_part), "no piece holds two accounts"
    assert len(whole) > 20 * max(one_account, venue_part)


def test_a_snapshot_is_written_piece_by_piece_without_its_whole_body_in_memory(
    tmp_path: Path,
) -> None:
    """The review of the soak: `write` joined the pieces into the body first, so the body
    was held twice at once (the pieces, then their join) and the CRC read it once more. Now
    each piece goes to the file as it is made, its CRC32 counted on the way: the same
    bytes, and no more memory than about one account's part (tracemalloc's count)."""
    venue = venue_after(500)
    padding = 256 * 1024
    gateway = {"private": {str(account): bytes(padding) for account in range(32)}}  # 8 MB
    snapshot = snapshots.Snapshot(500, venue_snapshot.capture(venue), gateway, 7)
    whole = msgspec.msgpack.encode(snapshot)
    tracemalloc.start()
    try:
        path = snapshots.write(tmp_path, snapshot)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    header = snapshots.HEADER.pack(snapshots.MAGIC, 500, zlib.crc32(whole), len(whole))
    assert path.read_bytes() == header + whole
    assert snapshots.read(path) == snapshot
    assert peak < 4 * padding, f"{peak / len(whole):.2f} of the body at once"


def test_a_snapshot_that_cannot_be_encoded_leaves_no_temporary_file(tmp_path: Path) -> None:
    """The re-review's finding: the body is encoded while it is written, and only an
    `OSError` removed the `.tmp`; a value the encoder refuses, raised mid-write, left the
    half-written file behind (till the next start's `remove_stray`)."""
    venue = venue_after(20)
    gateway = {"last_exec_id": 1, "unencodable": object()}  # after a piece already written
    with pytest.raises(TypeError):
        snapshots.write(tmp_path, snapshots.Snapshot(20, venue_snapshot.capture(venue), gateway))
    assert list(tmp_path.iterdir()) == [], "no .tmp, no snapshot"


def test_a_read_snapshot_decodes_its_per_account_maps_an_entry_at_a_time(tmp_path: Path) -> None:
    """Session 34: a restarted venue held twice the memory it had. `read` decoded the whole
    image at once (every account's history and closed orders, ~3x the file as objects),
    beside the state restored from it, and the allocator kept the heap they had spread over.
    Now the per-account maps stay their bytes (one copy each) until their restore takes an
    entry (`DecodedOnRead`, `entries_as`): what a read holds is about the file's size
    (tracemalloc's count; 3.1x before), its entries read back as written, and the snapshot
    read encodes into the file's bytes again."""
    venue = venue_after(50)
    gateway = gateway_of_many_accounts(accounts=40, events=50)
    del gateway["wide"]  # (its 65,536 small entries decoded at once: not the point here)
    path = snapshots.write(tmp_path, snapshots.Snapshot(50, venue_snapshot.capture(venue), gateway))
    tracemalloc.start()
    try:
        image = snapshots.read(path)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert image is not None
    assert held < 1.5 * path.stat().st_size, f"{held / path.stat().st_size:.1f}x the file held"
    private = image.gateway["private"]
    accounts = image.gateway["order_history"]["accounts"]
    assert type(private) is type(accounts) is snapshots.DecodedOnRead
    as_written = msgspec.msgpack.decode(msgspec.msgpack.encode(gateway))
    assert private == as_written["private"] and accounts == as_written["order_history"]["accounts"]
    typed = dict(snapshots.entries_as(private, tuple[int, list[tuple[int, bytes]]]))
    assert typed == msgspec.convert(
        as_written["private"], dict[str, tuple[int, list[tuple[int, bytes]]]]
    )
    assert image.gateway["order_history"]["closing"] == list(range(40))
    body = path.read_bytes()[snapshots.HEADER.size :]
    assert snapshots.encode(image) == body, "a read snapshot encodes into its file's bytes"


def test_an_entry_that_does_not_decode_is_found_by_the_check_naming_the_file_and_account(
    tmp_path: Path,
) -> None:
    """The review of session 34: with the per-account maps decoded an entry at a time by
    their restore, a bad entry (its checksum right) passed `read`, and only the restore
    failed on it, in a message naming no file and no account. Now `check_entries` decodes
    each entry as its restore will, one at a time and none kept (tracemalloc's peak: about
    one account's entry, not the maps'), and raises naming the map, the account and the
    file, as a restore taking the entry (`entries_as`) does."""
    venue = venue_after(50)
    gateway = gateway_of_many_accounts(accounts=40, events=50)
    for name in ("order_history", "wide"):  # (its records not `OrderRecord`s; not the point)
        del gateway[name]
    path = snapshots.write(tmp_path, snapshots.Snapshot(50, venue_snapshot.capture(venue), gateway))
    image = snapshots.read(path)
    assert image is not None
    tracemalloc.start()
    try:
        snapshots.check_entries(image)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.2 * path.stat().st_size, f"{peak / path.stat().st_size:.2f}x the file"
    account = with_an_entry_not_decoding(path, ("private",))
    image = snapshots.read(path)
    assert image is not None, "its checksum holds: `read` takes it"
    named = re.escape(f"{path}: the private entry of account {account} does not decode (Expected")
    with pytest.raises(msgspec.ValidationError, match=named):
        snapshots.check_entries(image)
    with pytest.raises(msgspec.ValidationError, match=named):
        dict(snapshots.entries_as(image.gateway["private"], HISTORY_IMAGE))


def a_snapshot_of_two_accounts(directory: Path, seq: int) -> Path:
    """A snapshot whose per-account maps hold accounts 7 and 8, each entry sound."""
    gateway = {
        "private": {"7": (2, [(1, b"a"), (2, b"b")]), "8": (1, [(1, b"c")])},
        "order_history": {"accounts": {"7": (0, []), "8": (0, [])}},
    }
    venue = venue_after(20)
    return snapshots.write(
        directory, snapshots.Snapshot(seq, venue_snapshot.capture(venue), gateway)
    )


@pytest.mark.parametrize("keys", [("private",), ("order_history", "accounts")])
def test_a_map_key_not_utf8_makes_the_file_damaged_naming_it(
    tmp_path: Path, keys: tuple[str, ...], caplog: pytest.LogCaptureFixture
) -> None:
    """The re-review of session 34: an account key that is not UTF-8 made `read` raise
    msgspec's bare error, naming no file, and `venue verify` end in a traceback. Now the file
    is damaged, as one whose checksum fails is: logged by name, passed over for the older."""
    older = a_snapshot_of_two_accounts(tmp_path, 10)
    newest = a_snapshot_of_two_accounts(tmp_path, 20)

    def key_not_utf8(gateway: dict[str, Any]) -> None:
        part = gateway
        for key in keys:
            part = part[key]
        part[NOT_UTF8_MARK] = part.pop("7")

    rewritten_snapshot(newest, key_not_utf8)
    assert snapshots.read(newest) is None
    assert f"{newest}: ignored, its gateway part does not decode" in caplog.text
    assert [(path, image is None) for path, image in snapshots.survey(tmp_path)] == [
        (newest, True),
        (older, False),
    ]
    latest = snapshots.latest(tmp_path)
    assert latest is not None and latest.seq == 10


@pytest.mark.parametrize("keys", [("private",), ("order_history", "accounts")])
def test_the_check_finds_an_account_key_that_is_not_an_account_id(
    tmp_path: Path, keys: tuple[str, ...]
) -> None:
    """The re-review of session 34: a key `"abc"` passed `check_entries`, and the restore's
    `int(account)` failed on it (a ValueError naming nothing)."""
    path = a_snapshot_of_two_accounts(tmp_path, 10)

    def key_not_an_id(gateway: dict[str, Any]) -> None:
        part = gateway
        for key in keys:
            part = part[key]
        part["abc"] = part.pop("8")

    rewritten_snapshot(path, key_not_an_id)
    image = snapshots.read(path)
    assert image is not None
    where = ".".join(keys)
    named = f"{path}: the {where} entry of account abc does not restore (its key 'abc' is not an"
    with pytest.raises(msgspec.ValidationError, match=re.escape(named)):
        snapshots.check_entries(image)


def test_the_check_finds_private_seqs_that_are_not_contiguous(tmp_path: Path) -> None:
    """The re-review of session 34: a private history whose seqs skip (or do not end at its
    stream's seq) passed `check_entries`, and the restore's assertion failed on it."""
    path = a_snapshot_of_two_accounts(tmp_path, 10)

    def seqs_skipping(gateway: dict[str, Any]) -> None:
        gateway["private"]["7"] = [7, [[1, b"a"], [7, b"b"]]]

    rewritten_snapshot(path, seqs_skipping)
    image = snapshots.read(path)
    assert image is not None
    named = f"{path}: the private entry of account 7 does not restore (its seqs are not"
    with pytest.raises(msgspec.ValidationError, match=re.escape(named)):
        snapshots.check_entries(image)


def test_latest_passes_over_a_snapshot_whose_entry_does_not_decode_naming_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The re-review of session 34: a one-process start took the newest snapshot without the
    check and failed in its restore (a traceback, exit 1). Now `latest` passes such a file
    over for the older one, as it passes a damaged one, with a warning naming it."""
    a_snapshot_of_two_accounts(tmp_path, 10)
    newest = a_snapshot_of_two_accounts(tmp_path, 20)
    account = with_an_entry_not_decoding(newest, ("private",))
    latest = snapshots.latest(tmp_path)
    assert latest is not None and latest.seq == 10
    assert f"{newest}: ignored, {newest}: the private entry of account {account}" in caplog.text


def test_a_file_not_named_as_a_snapshot_is_neither_read_nor_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The reviewer: `survey` and the pruning took any `snapshot-*.bin` by the names' order,
    where the archive's bound takes only `path_for`'s names: a stray `snapshot-old.bin` came
    first for a restart (which might then need archived segments) and was kept by the
    pruning while a real snapshot went. Ignored now, said by name."""
    venue = venue_after(4)
    stray = tmp_path / "snapshot-old.bin"
    snapshots.write(tmp_path, snapshot_of(venue, 1)).rename(stray)  # one that reads
    written = [snapshots.write(tmp_path, snapshot_of(venue, seq)) for seq in (2, 3, 4, 5)]
    assert stray.exists(), "not pruned: not the venue's to remove"
    assert sorted(tmp_path.glob("snapshot-0*.bin")) == written[-snapshots.SNAPSHOTS_KEPT :]
    assert [path for path, _ in snapshots.survey(tmp_path)] == written[:0:-1]
    latest = snapshots.latest(tmp_path)
    assert latest is not None and latest.seq == 5
    assert f"{stray}: ignored, not a snapshot's name" in caplog.text
