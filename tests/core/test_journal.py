"""The command journal: the contract every journal keeps, then the file's framing and recovery."""

import errno
import itertools
import logging
import os
import random
import select
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import NamedTuple

import pytest

from core import journal as journal_module
from core.journal import (
    HEADER_BYTES,
    RECORD_BYTES_MAX,
    BatchTooLargeError,
    DanglingJournalLink,
    FileJournal,
    JournalCorruption,
    JournalError,
    JournalLocked,
    JournalSequenceError,
    NotAJournal,
    RecordTooLargeError,
    measure,
)
from tests import interleave

ROOT = Path(__file__).resolve().parents[2]
Record = tuple[int, bytes]


def payload(seq: int) -> bytes:
    """A payload of 10 to 200 bytes that says which seq it belongs to."""
    return b"command %d " % seq * (1 + seq % 13)


def records(first: int, count: int) -> list[Record]:
    return [(seq, payload(seq)) for seq in range(first, first + count)]


def frame(seq: int, body: bytes) -> bytes:
    """The frame as the format defines it, built independently of the module."""
    seq_bytes = struct.pack(">Q", seq)
    return struct.pack(">II", len(body), zlib.crc32(seq_bytes + body)) + seq_bytes + body


def frame_offsets(written: list[Record]) -> dict[int, int]:
    offsets, offset = {}, 0
    for seq, body in written:
        offsets[seq] = offset
        offset += HEADER_BYTES + len(body)
    return offsets


# -- the file: framing ----------------------------------------------------------------------


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "commands.journal"


def write_journal(path: Path, batches: list[list[Record]]) -> list[Record]:
    journal = FileJournal(path)
    try:
        for batch in batches:
            journal.commit(batch)
    finally:
        journal.close()
    return [record for batch in batches for record in batch]


def test_the_file_holds_the_frames_back_to_back(path: Path) -> None:
    written = write_journal(path, [records(1, 3), [(4, b"")], records(5, 2)])
    assert path.read_bytes() == b"".join(frame(seq, body) for seq, body in written)


def test_a_refused_batch_leaves_the_file_as_it_was(path: Path) -> None:
    write_journal(path, [records(1, 3)])
    before = path.read_bytes()
    journal = FileJournal(path)
    try:
        with pytest.raises(JournalSequenceError):
            journal.commit([(4, b"a"), (6, b"b")])
        with pytest.raises(RecordTooLargeError):
            journal.commit([(4, b"a"), (5, bytes(RECORD_BYTES_MAX + 1))])
        assert path.read_bytes() == before
    finally:
        journal.close()
    assert path.read_bytes() == before


class Sequenced(NamedTuple):
    seq: int
    command: bytes | None  # None: a barrier, no record


def test_committed_commands_are_framed_like_records(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`commit_commands` writes the bytes `commit` writes for the same records, by either
    path: after plain appends (append and fsync) or alone (one O_DSYNC write)."""
    fsyncs: list[int] = []
    real_fsync = journal_module.os.fsync
    monkeypatch.setattr(journal_module.os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd)))

    def copy_into(command: bytes, buffer: bytearray) -> None:  # an encoder of bytes as they are
        buffer[:] = command

    journal = FileJournal(path)
    try:
        journal.commit_commands([Sequenced(1, payload(1))], copy_into)  # a new file: fsync
        fsyncs.clear()
        batch = [Sequenced(seq, body) for seq, body in records(2, 5)]
        journal.commit_commands([Sequenced(0, None), *batch, Sequenced(0, None)], copy_into)
        assert fsyncs == []
        journal.append(records(7, 1))
        journal.commit_commands([Sequenced(8, b""), Sequenced(9, payload(9))], copy_into)
        assert len(fsyncs) == 1
    finally:
        journal.close()
    expected = [(seq, b"" if seq == 8 else body) for seq, body in records(1, 9)]
    assert path.read_bytes() == b"".join(frame(seq, body) for seq, body in expected)


def test_a_missing_file_is_a_new_journal(path: Path) -> None:
    journal = FileJournal(path)
    try:
        assert (journal.last_seq(), journal.recovered_tail_bytes) == (0, 0)
        assert list(journal.replay()) == []
    finally:
        journal.close()
    assert path.exists()


def test_an_empty_file_is_a_new_journal(path: Path) -> None:
    path.write_bytes(b"")
    write_journal(path, [records(1, 2)])
    journal = FileJournal(path)
    try:
        assert list(journal.replay()) == records(1, 2)
    finally:
        journal.close()


def test_a_second_writer_is_refused(path: Path) -> None:
    journal = FileJournal(path)
    try:
        with pytest.raises(JournalError, match="another writer"):
            FileJournal(path)
    finally:
        journal.close()
    FileJournal(path).close()


def test_unsynced_bytes_are_bounded(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_module, "UNSYNCED_BYTES_MAX", 1_000)
    journal = FileJournal(path)
    try:
        journal.append([(1, bytes(600))])
        with pytest.raises(BatchTooLargeError, match="sync first"):
            journal.append([(2, bytes(400))])
        journal.sync()
        journal.append([(2, bytes(400))])
        assert journal.last_seq() == 2
    finally:
        journal.close()


# -- the file: torn tails and corruption ------------------------------------------------------

TORN_BATCHES = [records(1, 3), records(4, 3)]


def reopened(path: Path) -> tuple[int, list[Record], int]:
    """(recovered tail bytes, replay, last seq) of the journal at `path`, closed again."""
    journal = FileJournal(path)
    try:
        return journal.recovered_tail_bytes, list(journal.replay()), journal.last_seq()
    finally:
        journal.close()


def test_a_commit_is_one_synchronous_write_unless_appends_wait(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit with nothing unsynced before it writes through the O_DSYNC descriptor (no
    fsync); one after plain appends, or the first on a new file (whose name must be made
    durable too), appends and fsyncs; the file holds the same frames either way."""
    fsyncs: list[int] = []
    real_fsync = journal_module.os.fsync
    monkeypatch.setattr(journal_module.os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd)))
    journal = FileJournal(path)
    try:
        journal.commit(records(1, 2))  # a new file: its directory entry is synced too
        assert len(fsyncs) == 2
        fsyncs.clear()
        journal.commit(records(3, 3))
        assert fsyncs == []
        journal.append(records(6, 1))
        journal.commit(records(7, 2))  # record 6 waits unsynced: append and fsync all
        assert len(fsyncs) == 1
        fsyncs.clear()
        journal.commit(records(9, 1))
        assert fsyncs == []
    finally:
        journal.close()
    assert path.read_bytes() == b"".join(frame(seq, body) for seq, body in records(1, 9))
    assert reopened(path) == (0, records(1, 9), 9)


@pytest.mark.parametrize(
    ("seq", "into_frame"),
    [(6, 1), (6, 8), (6, 15), (6, HEADER_BYTES), (6, HEADER_BYTES + 5), (6, -1), (5, 3), (4, 20)],
)
def test_a_torn_tail_is_cut_and_appending_continues(
    path: Path, seq: int, into_frame: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The file ends `into_frame` bytes into record `seq` (negative: that far before its end).
    The tear is counted up to its last non-zero byte: zeros at the end of the file are what
    the journal sets aside for writes (a tear of zeros alone is cut without a word)."""
    written = write_journal(path, TORN_BATCHES)
    offsets = frame_offsets(written)
    frame_bytes = HEADER_BYTES + len(payload(seq))
    kept = into_frame % frame_bytes
    cut = offsets[seq] + kept
    with path.open("r+b") as file:
        torn = len(file.read()[offsets[seq] : cut].rstrip(b"\0"))
        file.truncate(cut)
    with caplog.at_level(logging.WARNING, logger="core.journal"):
        recovered, replayed, last_seq = reopened(path)
    assert recovered == torn
    assert replayed == written[: seq - 1]
    assert last_seq == seq - 1
    if torn:
        assert f"torn tail of {torn} bytes at byte {offsets[seq]}" in caplog.text
    else:
        assert "torn" not in caplog.text
    assert path.stat().st_size == offsets[seq]
    more = records(seq, 4)
    write_journal(path, [more])
    assert reopened(path) == (0, written[: seq - 1] + more, seq + 3)


def test_a_cut_at_a_frame_boundary_is_no_tear(path: Path) -> None:
    written = write_journal(path, TORN_BATCHES)
    with path.open("r+b") as file:
        file.truncate(frame_offsets(written)[5])
    assert reopened(path) == (0, written[:4], 4)


def flip_byte(path: Path, offset: int) -> None:
    with path.open("r+b") as file:
        file.seek(offset)
        value = file.read(1)[0]
        file.seek(offset)
        file.write(bytes([value ^ 0x40]))


def test_a_bad_crc_in_the_last_record_is_cut(path: Path) -> None:
    written = write_journal(path, TORN_BATCHES)
    flip_byte(path, path.stat().st_size - 1)
    recovered, replayed, last_seq = reopened(path)
    assert recovered == HEADER_BYTES + len(payload(6))
    assert (replayed, last_seq) == (written[:5], 5)


@pytest.mark.parametrize(
    ("seq", "into_frame"),
    [(2, HEADER_BYTES + 3), (2, 4), (2, 9), (2, 0), (5, 2), (1, 3)],
    ids=["payload", "crc", "seq", "length-top", "length", "first-length"],
)
def test_a_bad_frame_before_the_tail_is_corruption(path: Path, seq: int, into_frame: int) -> None:
    """A damaged frame followed by good ones: stop, name the place, change nothing."""
    written = write_journal(path, TORN_BATCHES)
    offset = frame_offsets(written)[seq]
    flip_byte(path, offset + into_frame)
    before = path.read_bytes()
    with pytest.raises(JournalCorruption) as raised:
        FileJournal(path)
    assert (raised.value.path, raised.value.offset) == (path, offset)
    assert str(path) in str(raised.value)
    assert f"at byte {offset}:" in str(raised.value)
    assert path.read_bytes() == before


def test_a_length_pointing_past_the_end_is_corruption_when_records_follow(path: Path) -> None:
    """Trusting the length would cut every record after it as a 'torn' tail."""
    written = write_journal(path, TORN_BATCHES)
    offset = frame_offsets(written)[2]
    with path.open("r+b") as file:
        file.seek(offset)
        file.write(struct.pack(">I", RECORD_BYTES_MAX))
    with pytest.raises(JournalCorruption, match=f"at byte {offset}: a record cut short"):
        FileJournal(path)


@pytest.mark.parametrize("seq", [1, 5])
def test_a_zeroed_record_before_a_good_one_is_corruption(path: Path, seq: int) -> None:
    """A block that never reached the disk, with later ones that did: no way to tell what was
    acknowledged, so it is not cut as a torn tail."""
    written = write_journal(path, TORN_BATCHES)
    offset = frame_offsets(written)[seq]
    with path.open("r+b") as file:
        file.seek(offset)
        file.write(bytes(HEADER_BYTES + len(payload(seq))))
    with pytest.raises(JournalCorruption, match=f"at byte {offset}: a CRC32 mismatch, yet"):
        FileJournal(path)


def test_a_bad_frame_far_from_the_end_is_corruption(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More bytes after a bad frame than one crash can tear: corruption, even if none check out."""
    written = write_journal(path, TORN_BATCHES)
    monkeypatch.setattr(journal_module, "UNSYNCED_BYTES_MAX", 100)
    offset = frame_offsets(written)[2]
    with path.open("r+b") as file:
        file.truncate(offset + 200)
        file.seek(offset)
        file.write(b"\xff" * 200)
    with pytest.raises(JournalCorruption, match="more than one crash can tear"):
        FileJournal(path)


@pytest.mark.parametrize("filler", [b"\x00", b"\xff", b"\x00\x00\x00\x07garbage"])
def test_a_tail_of_junk_after_the_last_record_is_cut(path: Path, filler: bytes) -> None:
    """A crash can leave a longer file than was written: zeros (the space the journal sets
    aside, not counted as torn), or old disk contents."""
    written = write_journal(path, TORN_BATCHES)
    size = path.stat().st_size
    junk = (filler * 5_000)[:5_000]
    with path.open("ab") as file:
        file.write(junk)
    assert reopened(path) == (len(junk.rstrip(b"\0")), written, 6)
    assert path.stat().st_size == size


NOT_JOURNALS = {
    "random": random.Random(20261206).randbytes(5_000),
    "text": b"# my notes\n" * 40,
    "one-byte": b"\xff",
    "short": b"\x00\x00\x01\x00\xaa\xbb\xcc\xdd\x00\x00\x00\x00\x07",
    "seq-7": frame(7, b"a command")[:-1],
    "long-length": struct.pack(">IIQ", RECORD_BYTES_MAX + 1, 0, 1) + b"x" * 100,
}


@pytest.mark.parametrize("read_only", [False, True], ids=["writer", "reader"])
@pytest.mark.parametrize("content", NOT_JOURNALS.values(), ids=NOT_JOURNALS.keys())
def test_a_file_that_is_no_journal_is_refused_untouched(
    path: Path, content: bytes, read_only: bool
) -> None:
    """The testers' finding: a file of random bytes shorter than `UNSYNCED_BYTES_MAX` was
    taken for a torn first frame and cut to nothing. Its first header must be one a writer
    began (a length's zero top byte, seq 1), or zeros where a block never reached the disk."""
    path.write_bytes(content)
    with pytest.raises(NotAJournal, match=f"^{path}: not a journal \\(its first frame's header"):
        FileJournal(path, read_only=read_only)
    assert path.read_bytes() == content


@pytest.mark.parametrize("kept", [1, 3, 4, 9, HEADER_BYTES, HEADER_BYTES + 4, -1])
def test_a_torn_first_frame_is_still_cut(path: Path, kept: int) -> None:
    """What a crash can leave of the first write: a prefix of its frame, or its first block
    zeros (never written) and a later one written: a journal still, cut to nothing."""
    torn = frame(1, payload(1))[:kept]
    path.write_bytes(torn)
    assert reopened(path) == (len(torn.rstrip(b"\0")), [], 0)
    assert path.read_bytes() == b""
    written = frame(1, payload(1)) + frame(2, payload(2))
    path.write_bytes(bytes(HEADER_BYTES + 4) + written[HEADER_BYTES + 4 : -1])
    assert reopened(path) == (len(written) - 1, [], 0)
    assert path.read_bytes() == b""


def test_a_dangling_symlink_is_refused_and_its_target_never_made(tmp_path: Path) -> None:
    """The testers' finding: the writer followed a symlink to nothing and made a new, empty
    journal at its target (a disk not mounted: the venue would start again from seq 1)."""
    target = tmp_path / "elsewhere" / "journal.log"
    link = tmp_path / "journal.log"
    link.symlink_to(target)
    with pytest.raises(DanglingJournalLink, match=f"^{link} is a symbolic link to {target},"):
        FileJournal(link)
    assert not target.exists() and link.is_symlink()
    target.parent.mkdir()
    with pytest.raises(DanglingJournalLink):
        FileJournal(link)
    assert not target.exists()
    written = write_journal(target, [records(1, 3)])
    assert reopened(link) == (0, written, 3), "a link to a journal is followed"


def test_a_valid_frame_with_the_wrong_seq_is_corruption(path: Path) -> None:
    path.write_bytes(frame(1, b"a") + frame(2, b"b") + frame(4, b"d"))
    with pytest.raises(JournalCorruption, match=r"at byte 34: seq 4 where 3 was due"):
        FileJournal(path)


def test_replay_notices_durable_bytes_changed_under_it(path: Path) -> None:
    journal = FileJournal(path)
    try:
        journal.commit(records(1, 5))
        offset = frame_offsets(records(1, 5))[3]
        flip_byte(path, offset + HEADER_BYTES)
        with pytest.raises(JournalCorruption, match=f"at byte {offset}: a CRC32 mismatch"):
            list(journal.replay())
    finally:
        journal.close()


# -- the benchmark --------------------------------------------------------------------------


def test_measure_commits_and_verifies(path: Path) -> None:
    result = measure(records=2_500, batch=1_000, payload_bytes=100, path=path)
    assert result["records"] == 2_500
    assert result["fsyncs"] == 3
    assert result["verified"] is True
    batch_ms = result["batch_ms"]
    assert isinstance(batch_ms, dict)
    assert set(batch_ms) == {"p50", "p99", "max"}
    assert path.stat().st_size == 2_500 * (HEADER_BYTES + 100)
    with pytest.raises(FileExistsError):
        measure(records=1, batch=1, payload_bytes=1, path=path)


# -- preallocation: the file grows ahead of its records ---------------------------------------

STEP_BYTES = 5_000  # PREALLOCATE_BYTES in these tests: a growth every ~7 commits of ~700 bytes


def frames_of(written: list[Record]) -> bytes:
    return b"".join(frame(seq, body) for seq, body in written)


def test_the_file_grows_ahead_of_its_records_and_closes_to_them(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "PREALLOCATE_BYTES", STEP_BYTES)
    journal = FileJournal(path)
    written: list[Record] = []
    sizes = set()
    try:
        for first in range(1, 211, 7):
            journal.commit(records(first, 7))
            written += records(first, 7)
            end = len(frames_of(written))
            contents = path.read_bytes()
            assert end <= len(contents) <= end + STEP_BYTES  # one step at most past the writes
            assert contents == frames_of(written) + bytes(len(contents) - end)
            sizes.add(len(contents))
    finally:
        journal.close()
    assert len(sizes) <= 30 // 5, "the file grows in steps, not with every write"
    assert path.read_bytes() == frames_of(written)
    assert reopened(path) == (0, written, 210)


def crashed_copy(path: Path, tmp_path: Path, written: list[Record]) -> Path:
    """The file as a crash of its writer leaves it (the records, then the zeros set aside),
    copied while the writer still holds it."""
    journal = FileJournal(path)
    try:
        journal.commit(written)
        copy = tmp_path / "crashed.journal"
        copy.write_bytes(path.read_bytes())
    finally:
        journal.close()
    assert len(copy.read_bytes()) > len(frames_of(written)), "zeros were set aside"
    return copy


def test_the_zeros_a_crash_leaves_are_no_torn_tail(
    path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    written = records(1, 40)
    copy = crashed_copy(path, tmp_path, written)
    size = copy.stat().st_size
    with caplog.at_level(logging.INFO, logger="core.journal"):
        reader = FileJournal(copy, read_only=True)
        try:
            assert (reader.recovered_tail_bytes, list(reader.replay())) == (0, written)
        finally:
            reader.close()
        assert copy.stat().st_size == size, "reading changed nothing"
        assert reopened(copy) == (0, written, 40)
    assert caplog.text == "", "zeros set aside are not worth a word"
    assert copy.read_bytes() == frames_of(written), "the writer gave the space back"
    more = records(41, 3)
    write_journal(copy, [more])
    assert reopened(copy) == (0, written + more, 43)


def test_a_write_torn_into_the_space_set_aside_is_cut(
    path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    written = records(1, 40)
    copy = crashed_copy(path, tmp_path, written)
    end = len(frames_of(written))
    torn = frame(41, payload(41))[:30]  # a frame cut short, zeros after it
    with copy.open("r+b") as file:
        file.seek(end)
        file.write(torn)
    torn_bytes = len(torn.rstrip(b"\0"))
    with caplog.at_level(logging.WARNING, logger="core.journal"):
        assert reopened(copy) == (torn_bytes, written, 40)
    assert f"cut a torn tail of {torn_bytes} bytes at byte {end}" in caplog.text
    assert copy.read_bytes() == frames_of(written)


@pytest.mark.parametrize("zeros", [500, 1_500, 2_500])
def test_a_valid_record_after_zeros_is_corruption_however_far(
    path: Path, monkeypatch: pytest.MonkeyPatch, zeros: int
) -> None:
    """The review's finding: past the tear window and the space set aside, a valid record
    after a run of zeros was never searched for, and cut with the zeros as a torn tail."""
    monkeypatch.setattr(journal_module, "UNSYNCED_BYTES_MAX", 1_000)
    monkeypatch.setattr(journal_module, "PREALLOCATE_BYTES", 1_000)
    written = records(1, 3)
    path.write_bytes(frames_of(written) + bytes(zeros) + frame(4, payload(4)))
    with pytest.raises(JournalCorruption):
        FileJournal(path)


def test_without_fallocate_each_write_grows_the_file(
    path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(journal_module.os, "posix_fallocate", refuse)
    journal = FileJournal(path)
    written: list[Record] = []
    try:
        with caplog.at_level(logging.INFO, logger="core.journal"):
            for first in range(1, 30, 3):
                journal.commit(records(first, 3))
                written += records(first, 3)
                assert path.read_bytes() == frames_of(written)
    finally:
        journal.close()
    assert caplog.text.count("not preallocated") == 1
    assert reopened(path) == (0, written, 30)


# -- a real crash ---------------------------------------------------------------------------

# Commits batches of 1 to 37 records for ever, printing the last seq once `commit` returns;
# in segments of the bytes given (0: the default).
CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
from core.journal import FileJournal

def payload(seq):
    return b"command %d " % seq * (1 + seq % 13)

journal = FileJournal(sys.argv[2], segment_bytes=int(sys.argv[3]) or None)
seq = journal.last_seq()
while True:
    size = 1 + seq % 37
    journal.commit([(s, payload(s)) for s in range(seq + 1, seq + size + 1)])
    seq += size
    print(seq, flush=True)
"""
KILLS = 5
# Each kill lands after a random count of acknowledgements, up to what a disk's fsynced
# commits acknowledged in 0.3 s: counted, not timed, so that a faster file system (tmpfs:
# four times the commits) does not make the journal each replay reads larger.
ACKS_BEFORE_KILL_MAX = 700
ACKS_WAIT_S = 2.0  # a child that has not printed them by then is killed anyway


def read_acks(child: subprocess.Popen[bytes], count: int, within_s: float) -> bytes:
    """What the child prints until `count` acknowledgements or `within_s` (it commits on
    meanwhile), read from the pipe itself so that `communicate` reads the rest after it."""
    assert child.stdout is not None
    fd, chunks, seen = child.stdout.fileno(), [], 0
    deadline = time.monotonic() + within_s
    while seen < count and (left_s := deadline - time.monotonic()) > 0:
        if not select.select([fd], [], [], left_s)[0]:
            break
        chunk = os.read(fd, 65536)
        if not chunk:  # the child ended: the assertion on its exit says how
            break
        chunks.append(chunk)
        seen += chunk.count(b"\n")
    return b"".join(chunks)


# 0: one file; 64 KiB: a new segment every ~30 batches, so kills land in rotations too.
@pytest.mark.parametrize("segment_bytes", [0, 64 << 10])
def test_a_killed_writer_loses_nothing_it_acknowledged(path: Path, segment_bytes: int) -> None:
    rng = random.Random(20270101)
    acknowledged = 0
    for kill in range(KILLS):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(ROOT), str(path), str(segment_bytes)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            read = read_acks(child, rng.randint(1, ACKS_BEFORE_KILL_MAX), ACKS_WAIT_S)
            child.send_signal(signal.SIGKILL)
            out, err = child.communicate()
            out = read + out
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.returncode == -signal.SIGKILL, err.decode()
        acks = out.split(b"\n")[:-1]  # what follows the last newline was cut short
        if acks:
            acknowledged = max(acknowledged, int(acks[-1]))
        journal = FileJournal(path)
        try:
            replayed = list(journal.replay())
            assert journal.last_seq() == len(replayed)
        finally:
            journal.close()
        assert [seq for seq, _ in replayed] == list(range(1, len(replayed) + 1)), kill
        assert all(body == payload(seq) for seq, body in replayed), kill
        assert len(replayed) >= acknowledged, (kill, len(replayed), acknowledged)
    assert acknowledged > 0, "no child acknowledged a record: nothing was checked"
    if segment_bytes:
        assert len(journal_module.segment_files(path)) > KILLS, "segments were written"


# -- read-only: what `venue verify` opens ----------------------------------------------------


def test_read_only_creates_nothing_and_refuses_writes(path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        FileJournal(path, read_only=True)
    assert not path.exists()
    written = write_journal(path, [records(1, 3)])
    reader = FileJournal(path, read_only=True)
    try:
        assert list(reader.replay()) == written and reader.last_seq() == 3
        with pytest.raises(JournalError, match="read-only"):
            reader.append(records(4, 1))
    finally:
        reader.close()
    assert path.read_bytes() == b"".join(frame(seq, body) for seq, body in written)


def test_read_only_leaves_a_torn_tail_for_the_writer(path: Path) -> None:
    written = write_journal(path, TORN_BATCHES)
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size - 3)
    size = path.stat().st_size
    reader = FileJournal(path, read_only=True)
    try:
        assert reader.recovered_tail_bytes > 0
        assert list(reader.replay()) == written[:-1]
    finally:
        reader.close()
    assert path.stat().st_size == size, "reading changed nothing"


def test_a_reader_and_a_writer_exclude_each_other(path: Path) -> None:
    write_journal(path, [records(1, 2)])
    writer = FileJournal(path)
    try:
        with pytest.raises(JournalLocked):
            FileJournal(path, read_only=True)
    finally:
        writer.close()
    reader = FileJournal(path, read_only=True)
    try:
        with pytest.raises(JournalLocked):
            FileJournal(path)
        FileJournal(path, read_only=True).close()  # readers share
    finally:
        reader.close()


# -- segments ------------------------------------------------------------------------------

SEGMENT_BYTES = 600  # a few records of `payload` per segment: a new file every few batches


def write_segments(path: Path, count: int, batch: int = 3) -> list[Record]:
    journal = FileJournal(path, segment_bytes=SEGMENT_BYTES)
    try:
        for first in range(1, count + 1, batch):
            journal.commit(records(first, min(batch, count + 1 - first)))
    finally:
        journal.close()
    return records(1, count)


def segment_names(path: Path) -> list[str]:
    return [found.name for _, found in journal_module.segment_files(path)]


def test_a_full_segment_is_finished_at_a_batch_boundary_and_the_next_named_by_its_seq(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.log"
    written = write_segments(path, 60)
    segments = journal_module.segment_files(path)
    assert len(segments) > 3 and segments[0] == (1, path)
    assert all(found.name == f"journal.{first:015d}.log" for first, found in segments[1:]), (
        "each later segment is named by its first seq"
    )
    for (first, found), (after, _) in itertools.pairwise(segments):
        # each finished segment holds exactly its records, whole batches, past the size
        body = found.read_bytes()
        assert body == frames_of(written[first - 1 : after - 1])
        assert len(body) >= SEGMENT_BYTES and (after - 1) % 3 == 0
    journal = FileJournal(path, segment_bytes=SEGMENT_BYTES)
    try:
        assert journal.first_seq() == 1 and journal.last_seq() == 60
        for after in range(61):  # every start point: within a segment, at its edges, the end
            assert list(journal.replay(after)) == written[after:]
        journal.commit(records(61, 2))  # the writer goes on in the last segment
    finally:
        journal.close()
    assert reopened(path) == (0, records(1, 62), 62)


def test_commands_append_and_sync_finish_segments_too(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    journal = FileJournal(path, segment_bytes=SEGMENT_BYTES)
    try:
        for first in range(1, 43, 3):
            batch = [Sequenced(seq, payload(seq)) for seq in range(first, first + 3)]
            journal.commit_commands(
                batch, lambda command, into: into.__setitem__(slice(None), command)
            )
        journal.append(records(43, 50))  # appends wait for their sync, whatever the size
        assert list(journal.replay(42)) == []
        journal.sync()
        journal.append(records(93, 1))  # the next boundary after the sync finishes it
        journal.sync()
    finally:
        journal.close()
    assert len(segment_names(path)) > 4
    assert reopened(path) == (0, records(1, 93), 93)


def test_a_gap_or_an_overlap_between_segments_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    write_segments(path, 30)
    segments = journal_module.segment_files(path)
    (second_seq, second), (third_seq, _) = segments[1], segments[2]
    moved = tmp_path / "aside"
    second.rename(moved)
    with pytest.raises(
        JournalCorruption, match=f"seqs {second_seq} to {third_seq - 1} are missing"
    ):
        FileJournal(path)
    moved.rename(journal_module.segment_path(path, second_seq - 1))  # named one seq early
    with pytest.raises(JournalCorruption, match="overlaps"):
        FileJournal(path, read_only=True)


def test_only_the_last_segment_may_have_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    write_segments(path, 30)
    segments = journal_module.segment_files(path)
    last = segments[-1][1]
    with last.open("ab") as file:
        file.write(frame(31, payload(31))[:-3])  # a torn write at the end of the open one
    journal = FileJournal(path)
    try:
        assert journal.recovered_tail_bytes == HEADER_BYTES + len(payload(31)) - 3
        assert journal.last_seq() == 30
    finally:
        journal.close()
    finished = segments[1][1]
    with finished.open("ab") as file:
        file.write(frame(99, b"x")[:-1])
    before = {found: found.read_bytes() for _, found in segments}
    with pytest.raises(JournalCorruption, match="in a finished segment"):
        FileJournal(path)
    assert {found: found.read_bytes() for _, found in segments} == before, "nothing cut"


def test_a_crash_before_the_next_segment_exists_leaves_the_full_one_open(tmp_path: Path) -> None:
    # The directory as a crash leaves it just before a segment is finished: the full one
    # with the zeros set aside after its records, no next file.
    path = tmp_path / "journal.log"
    journal = FileJournal(path, segment_bytes=SEGMENT_BYTES)
    try:
        journal.commit(records(1, 12))
        crashed = tmp_path / "crashed" / "journal.log"
        crashed.parent.mkdir()
        crashed.write_bytes(path.read_bytes())
    finally:
        journal.close()
    assert crashed.stat().st_size > len(frames_of(records(1, 12))), "zeros set aside"
    journal = FileJournal(crashed, segment_bytes=SEGMENT_BYTES)
    try:
        assert journal.last_seq() == 12 and journal.recovered_tail_bytes == 0
        journal.commit(records(13, 1))  # finishes the full one first
    finally:
        journal.close()
    assert segment_names(crashed) == ["journal.log", "journal.000000000000013.log"]
    assert crashed.read_bytes() == frames_of(records(1, 12))
    assert reopened(crashed) == (0, records(1, 13), 13)


def test_a_crash_after_the_next_segment_exists_leaves_it_empty_and_open(tmp_path: Path) -> None:
    # Finished and fsynced before the next file is made: the crash leaves it whole, and the
    # next one empty (its first write never came).
    path = tmp_path / "journal.log"
    write_journal(path, [records(1, 12)])
    empty = journal_module.segment_path(path, 13)
    empty.touch(mode=0o600)
    journal = FileJournal(path, segment_bytes=SEGMENT_BYTES)
    try:
        assert journal.last_seq() == 12
        assert list(journal.replay(5)) == records(6, 7)
        journal.commit(records(13, 2))
    finally:
        journal.close()
    assert empty.read_bytes() == frames_of(records(13, 2))
    assert reopened(path) == (0, records(1, 14), 14)
    # an empty file before the last is no crash's doing
    journal_module.segment_path(path, 15).write_bytes(b"")
    empty.write_bytes(b"")
    with pytest.raises(JournalCorruption):
        FileJournal(path)


def test_a_segment_whose_first_frame_is_not_its_seq_is_not_a_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    write_journal(path, [records(1, 12)])
    wrong = journal_module.segment_path(path, 13)
    wrong.write_bytes(b"\x01" * 40)
    with pytest.raises(NotAJournal):
        FileJournal(path)
    assert wrong.read_bytes() == b"\x01" * 40, "left as it is"


def test_with_its_head_moved_away_the_journal_begins_past_seq_1(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    written = write_segments(path, 30)
    (_, head), (second_seq, _) = journal_module.segment_files(path)[:2]
    head.rename(tmp_path / "archived.log")
    journal = FileJournal(path, segment_bytes=SEGMENT_BYTES)
    try:
        assert journal.first_seq() == second_seq and journal.last_seq() == 30
        assert list(journal.replay(second_seq - 1)) == written[second_seq - 1 :]
        with pytest.raises(journal_module.JournalArchived, match=f"begins at seq {second_seq}"):
            journal.replay(second_seq - 2)
        journal.commit(records(31, 3))
    finally:
        journal.close()
    assert not path.exists(), "the first segment is not made anew"


def test_a_replay_of_segments_archived_since_the_open_says_so(tmp_path: Path) -> None:
    # `venue journal archive` moves finished segments while the venue's writer has them open
    path = tmp_path / "journal.log"
    written = write_segments(path, 30)
    journal = FileJournal(path, segment_bytes=SEGMENT_BYTES)
    try:
        (_, head), (second_seq, second) = journal_module.segment_files(path)[:2]
        head.rename(tmp_path / "archived-head.log")
        second.rename(tmp_path / "archived-second.log")
        third_seq = journal_module.segment_files(path)[0][0]
        with pytest.raises(journal_module.JournalArchived, match=f"begins at seq {third_seq}"):
            list(journal.replay(0))
        with pytest.raises(journal_module.JournalArchived, match=f"after seq {second_seq}"):
            list(journal.replay(second_seq))
        assert list(journal.replay(third_seq - 1)) == written[third_seq - 1 :]
        journal.commit(records(31, 3))
    finally:
        journal.close()


def test_the_open_segment_is_locked_whichever_it_is(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    write_segments(path, 30)
    journal = FileJournal(path, segment_bytes=SEGMENT_BYTES)
    try:
        with pytest.raises(JournalLocked):
            FileJournal(path)
        with pytest.raises(JournalLocked):
            FileJournal(path, read_only=True)
        journal.commit(records(31, 12))
        journal.commit(records(43, 1))  # on to another segment: the lock goes with it
        assert len(segment_names(path)) > 4
        with pytest.raises(JournalLocked):
            FileJournal(path)
    finally:
        journal.close()
    reader = FileJournal(path, read_only=True)
    try:
        assert [seq for seq, _ in reader.replay(38)] == [39, 40, 41, 42, 43]
    finally:
        reader.close()


def test_a_segment_that_is_a_dangling_symlink_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    write_segments(path, 30)
    _, last = journal_module.segment_files(path)[-1]
    last.unlink()
    last.symlink_to(tmp_path / "elsewhere" / last.name)
    with pytest.raises(DanglingJournalLink):
        FileJournal(path)
    assert not (tmp_path / "elsewhere").exists()


def test_a_reader_opening_mid_rotation_never_takes_the_new_segment_from_the_writer(
    tmp_path: Path,
) -> None:
    # The writer's rotation makes the next file, then locks it: a reader opening in between
    # (race.py's interleaving, made exact) must not list it and lock it shared first.
    path = tmp_path / "journal.log"
    writer = FileJournal(path, segment_bytes=1)  # every commit finishes the segment
    readers: list[FileJournal] = []
    refused: list[JournalLocked] = []

    def open_a_reader(_flock: tuple[object, ...]) -> None:
        try:
            readers.append(FileJournal(path, read_only=True))
        except JournalLocked as locked:
            refused.append(locked)

    try:
        writer.commit(records(1, 1))
        for seq in range(2, 6):
            interleave.at_next("fcntl.flock", open_a_reader)  # the rotation's flock of the next
            writer.commit(records(seq, 1))
            while readers:  # one that got in holds its lock until here
                readers.pop().close()
        assert len(refused) == 4, "mid-rotation, a reader finds the writer's lock"
    finally:
        left = interleave.disarm()
        for reader in readers:
            reader.close()
        writer.close()
    assert not left, "each rotation's flock ran its step"
    assert len(segment_names(path)) == 5 and not journal_module.rotating_path(path).exists()
    assert reopened(path) == (0, records(1, 5), 5)


def test_a_rotation_a_crash_interrupted_is_cleaned_up_and_a_failed_one_can_reopen(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.log"
    write_journal(path, [records(1, 3)])
    leftover = journal_module.rotating_path(path)
    leftover.write_bytes(b"")  # a crash between making the next file and its rename
    assert segment_names(path) == ["journal.log"], "no listing takes it for a segment"
    writer = FileJournal(path, segment_bytes=1)
    try:
        assert not leftover.exists(), "the writer's open removes it"
        # a rotation that fails after making its file (its name taken by a directory)
        journal_module.segment_path(path, 4).mkdir()
        with pytest.raises(FileExistsError):
            writer.commit(records(4, 1))
        with pytest.raises(JournalError, match="reopen"):
            writer.commit(records(4, 1))
    finally:
        writer.close()
    journal_module.segment_path(path, 4).rmdir()
    assert not leftover.exists()
    writer = FileJournal(path, segment_bytes=1)  # (a lock left after a rename: the test below)
    try:
        writer.commit(records(4, 2))
    finally:
        writer.close()
    assert reopened(path) == (0, records(1, 5), 5)


def test_a_rotation_whose_directory_fsync_fails_after_its_rename_leaves_no_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new segment is renamed into place, then the data directory's fsync fails (EIO):
    the failed writer must not keep a descriptor locking that segment, or a reopen once it
    is closed finds the journal locked (by nothing that runs)."""
    path = tmp_path / "journal.log"
    writer = FileJournal(path, segment_bytes=1)
    try:
        writer.commit(records(1, 1))
        real_fsync_directory = journal_module._fsync_directory

        def failing(directory: Path) -> None:
            if journal_module.segment_path(path, 2).exists():  # after the rotation's rename
                raise OSError(errno.EIO, "injected: the directory's fsync failed")
            real_fsync_directory(directory)

        monkeypatch.setattr(journal_module, "_fsync_directory", failing)
        with pytest.raises(OSError, match="injected"):
            writer.commit(records(2, 1))
        monkeypatch.setattr(journal_module, "_fsync_directory", real_fsync_directory)
    finally:
        writer.close()
    assert segment_names(path)[-1] == journal_module.segment_path(path, 2).name
    writer = FileJournal(path, segment_bytes=1)  # the renamed segment: empty, not locked
    try:
        writer.commit(records(2, 2))
    finally:
        writer.close()
    assert reopened(path) == (0, records(1, 3), 3)
