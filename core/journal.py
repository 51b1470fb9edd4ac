"""The command journal: the venue's one source of truth, sequenced commands made durable.

Owns the `Journal` interface (a replicated log implements it later) and `FileJournal`,
append-only segment files of frames: 4-byte big-endian payload length, CRC32 of seq +
payload, 8-byte big-endian seq, payload. Leaves what a payload means to the sequencer (its
encoder writes each into the batch's buffer: `commit_commands`). Seqs start at 1 and are
strictly consecutive; a batch that breaks that is refused whole. `append` writes a batch
with one write, `sync` makes everything appended durable with one fsync (group commit), and
`replay` yields only what is durable. The file is grown ahead of its records,
`PREALLOCATE_BYTES` at a time (zeros, by fallocate), so a durable write only writes data:
when every write also grows the file, each must commit the new size to the filesystem's own
journal too, which cost ~30% more CPU and wall time per write (ext4, `bench.journal_bench`);
closing cuts the file back to its records. Opening rescans the file: zeros at its end are
that space, never written (cut without a word); a torn tail (a bad last frame with no valid
record after it, within what one crash can tear) is cut and reported in
`recovered_tail_bytes` (its bytes before those zeros); any other bad frame is
`JournalCorruption`. The file has no header of its own: a first frame whose header no writer
could have begun (`NotAJournal`), or a dangling symlink (`DanglingJournalLink`), is refused
untouched (`refuse_dangling_link` holds the data directory's other files to that rule). One
writer per file (flock); after a disk error the object refuses everything: reopen.
`read_only=True` opens for reading alongside no writer (a shared flock): it creates nothing
and leaves a torn tail for the writer to cut.
Segments: the file named (`journal.log`) is the first; once the open one holds
`SEGMENT_BYTES`, the next batch starts a new file named by its first seq (`segment_path`),
the full one cut to its records and fsynced first; the new file is made and locked under a
name no listing matches (`rotating_path`), then renamed, so no reader locks it first. Opening
checks that each follows on from the one before; only the last (open, locked) one may have a
torn tail or zeros. A finished segment never changes again, so `core.journal_archive` may move
it away: the journal then begins past seq 1 (`first_seq`) and a replay from before it is
refused.
Limits: `RECORD_BYTES_MAX` per payload, `UNSYNCED_BYTES_MAX` appended between syncs.
"""

import bisect
import contextlib
import dataclasses
import errno
import fcntl
import functools
import logging
import os
import re
import struct
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from os import PathLike
from pathlib import Path
from typing import Any, BinaryIO, Final, Protocol

RECORD_BYTES_MAX: Final = 1 << 20  # a command is a few KB; more is a bug, not an order
# A group commit is one event-loop turn (~1,000 commands of a few KB); this bounds a batch's
# memory and the tail a crash can tear, so a bad frame further from the end is corruption.
UNSYNCED_BYTES_MAX: Final = 32 << 20
# Grown by this much past the end of the last write: a write that fits is data alone.
PREALLOCATE_BYTES: Final = 4 << 20
READ_BUFFER_BYTES: Final = 1 << 20  # replay and the open scan read in 1 MiB: few syscalls
INDEX_STRIDE_RECORDS: Final = 4_096  # replay after a seq skips to within ~4,096 records of it
# A segment is finished at the first batch boundary past this: a file an archive can move,
# and one whose loss to a bad disk is bounded; ~2.2 hours at 1,000 commands/s of ~134 bytes.
SEGMENT_BYTES = 1 << 30
SEQ_DIGITS: Final = 15  # in a segment's name: 10**15 commands is 31,000 years at 1,000/s

_HEADER: Final = struct.Struct(">IIQ")  # payload length, CRC32(seq + payload), seq
_SEQ: Final = struct.Struct(">Q")
_LENGTH: Final = struct.Struct(">I")
HEADER_BYTES: Final = _HEADER.size
_CRC_FROM: Final = 8  # the CRC covers the frame from its seq field to its end
_NONZERO: Final = re.compile(rb"[^\x00]")
# The tail search only tries offsets holding a zero byte: a length's top byte is always zero.
assert RECORD_BYTES_MAX < 1 << 24, "the tail search needs each frame's first byte to be 0"

logger = logging.getLogger(__name__)


class JournalError(Exception):
    """The journal refused an argument, a limit was reached, or the file cannot be trusted."""


class JournalSequenceError(JournalError):
    """A batch's seqs do not continue the journal one by one."""


class RecordTooLargeError(JournalError):
    """A payload is longer than `RECORD_BYTES_MAX`."""


class BatchTooLargeError(JournalError):
    """Appending a batch would leave more than `UNSYNCED_BYTES_MAX` unsynced."""


class JournalLocked(JournalError):
    """Another process holds the file: a running venue, or a second one started on it."""

    def __init__(self, path: Path, why: str = "a venue running on its directory?") -> None:
        super().__init__(f"{path} is open by another writer or reader ({why})")
        self.path = path


class JournalCorruption(JournalError):
    """A bad frame that is not a torn tail: records after it may be lost, so we stop."""

    def __init__(self, path: Path, offset: int, detail: str) -> None:
        super().__init__(f"{path}: corrupt journal at byte {offset}: {detail}")
        self.path = path
        self.offset = offset


class JournalArchived(JournalError):
    """A replay from before the journal's first segment: its head was archived."""

    def __init__(self, path: Path, first_seq: int, after_seq: int) -> None:
        super().__init__(
            f"{path}: a replay after seq {after_seq} needs records from seq {after_seq + 1},"
            f" but the journal here begins at seq {first_seq} (the segments before were"
            " archived by `venue journal archive`): put them back from the archive"
            " directory into the data directory"
        )
        self.path = path
        self.first_seq = first_seq


class SegmentGone(JournalError):
    """A finished segment the journal found at its open is no longer there (archived)."""


class NotAJournal(JournalError):
    """The file's first bytes are no frame a writer began: some other file, never cut."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(
            f"{path}: not a journal (its first frame's header reads {detail}); left as it is:"
            " move it aside if it is not this venue's journal"
        )
        self.path = path


class DanglingLink(JournalError):
    """A data directory's file is a symlink to nothing: a file kept elsewhere that is missing
    (a disk not mounted), never made anew at the link's target nor taken for "none yet"."""

    def __init__(self, path: Path, target: str, instead: str) -> None:
        super().__init__(
            f"{path} is a symbolic link to {target}, which does not exist (is its disk"
            f" mounted?): not {instead}; restore it or remove the link"
        )
        self.path = path


class DanglingJournalLink(DanglingLink):
    """The journal is a symlink to nothing: a journal elsewhere that is missing."""

    def __init__(self, path: Path, target: str) -> None:
        super().__init__(path, target, "starting an empty journal there")


def refuse_dangling_link(path: Path, instead: str) -> None:
    """`DanglingLink` if `path` is a symlink to nothing (`instead`: what would have been done
    in its place, e.g. "starting an empty ledger there"); a link to a file that exists is
    followed, as the file itself would be."""
    if os.path.islink(path) and not os.path.exists(path):
        raise DanglingLink(path, os.readlink(path), instead)


class Sequenced(Protocol):
    """A sequenced command for `commit_commands`: its record is `seq` with `command`
    encoded; one whose `command` is None (the sequencer's barrier) has no record."""

    @property
    def seq(self) -> int: ...

    @property
    def command(self) -> Any: ...


# Writes a command's payload into the buffer, replacing what it held (msgspec's
# `Encoder.encode_into`).
EncodeInto = Callable[[Any, bytearray], None]


class Journal(Protocol):
    """A sequenced log of (seq, payload) records; seqs start at 1 and go up by one."""

    def append(self, records: Sequence[tuple[int, bytes]]) -> None:
        """Write a batch after the last record; it is durable only after `sync`."""
        ...

    def sync(self) -> None:
        """Make everything appended durable: one flush for all of it (group commit)."""
        ...

    def commit(self, records: Sequence[tuple[int, bytes]]) -> None:
        """`append` then `sync`: when this returns, the batch survives a crash."""
        ...

    def commit_commands(self, batch: Sequence[Sequenced], encode_into: EncodeInto) -> None:
        """`commit` of a record per command of `batch`, its payload made by `encode_into`."""
        ...

    def replay(self, after_seq: int = 0) -> Iterator[tuple[int, bytes]]:
        """Every durable record with a seq above `after_seq`, in seq order."""
        ...

    def last_seq(self) -> int:
        """The seq of the last record appended (durable after the next sync); 0 when empty."""
        ...

    def close(self) -> None:
        """Sync what is appended and release the journal; calling it twice is harmless."""
        ...


class _BadFrame(Exception):
    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(reason)
        self.offset = offset
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Segment:
    """One file of a journal: its records run from `first_seq` to `last_seq` in `end` bytes
    (`last_seq` is `first_seq - 1` for an empty one)."""

    path: Path
    first_seq: int
    last_seq: int
    end: int


def segment_path(first_path: Path, first_seq: int) -> Path:
    """The name of the segment whose first record is `first_seq`, after the first segment's
    (`journal.log`, seq 1: `journal.000000001234567.log` for seq 1,234,567)."""
    if first_seq == 1:
        return first_path
    return first_path.with_name(f"{first_path.stem}.{first_seq:0{SEQ_DIGITS}d}{first_path.suffix}")


def segment_files(first_path: str | PathLike[str]) -> list[tuple[int, Path]]:
    """(first seq, path) of each segment of the journal at `first_path` there is, in seq
    order; `DanglingJournalLink` for a segment that is a symlink to nothing."""
    first_path = Path(first_path)
    named = re.compile(
        re.escape(first_path.stem) + rf"\.(\d{{{SEQ_DIGITS}}})" + re.escape(first_path.suffix)
    )
    found = [(1, first_path)] if os.path.lexists(first_path) else []
    try:
        names = os.listdir(first_path.parent)
    except (FileNotFoundError, NotADirectoryError):  # no directory: no segment
        names = []
    for name in names:
        match = named.fullmatch(name)
        if match is not None:
            found.append((int(match.group(1)), first_path.parent / name))
    found.sort()
    for _, path in found:
        if os.path.islink(path) and not os.path.exists(path):
            raise DanglingJournalLink(path, os.readlink(path))
    return found


def rotating_path(first_path: str | PathLike[str]) -> Path:
    """Where a writer makes its next segment before renaming it to `segment_path`: a name no
    listing of segments matches (`journal.log.next`), left only by a crash mid-rotation and
    removed when a writer opens the journal."""
    first_path = Path(first_path)
    return first_path.with_name(f"{first_path.name}.next")


def journal_bytes(first_path: str | PathLike[str]) -> int:
    """The bytes of every segment of the journal at `first_path` there is (0: none)."""
    total = 0
    for _, path in segment_files(first_path):
        with contextlib.suppress(FileNotFoundError):  # archived since it was listed
            total += path.stat().st_size
    return total


def check_segment(
    path: Path, first_seq: int, index: Callable[[int, int], None] | None = None
) -> Segment:
    """Every frame of a finished segment checks out, its seqs run on from `first_seq`, and
    nothing follows the last: its `Segment`, else `JournalCorruption` (a finished segment has
    no torn tail: it was cut and fsynced before the next began). `index` is given the seq
    and offset of its first record and of every `INDEX_STRIDE_RECORDS`th after."""
    size = os.stat(path).st_size
    expected = first_seq
    with open(path, "rb", buffering=READ_BUFFER_BYTES) as file:
        try:
            for offset, seq, _payload in _frames(file, 0, size):
                if seq != expected:
                    raise JournalCorruption(path, offset, f"seq {seq} where {expected} was due")
                if index is not None and (seq - first_seq) % INDEX_STRIDE_RECORDS == 0:
                    index(seq, offset)
                expected += 1
        except _BadFrame as bad:
            raise JournalCorruption(
                path, bad.offset, f"{bad.reason} in a finished segment (no tail is torn there)"
            ) from None
    return Segment(path, first_seq, expected - 1, size)


def _not_following(path: Path, first_seq: int, previous: Segment) -> JournalCorruption:
    """A segment whose first seq does not follow on from the one before: a gap or overlap."""
    if first_seq > previous.last_seq:
        how = f"seqs {previous.last_seq + 1} to {first_seq - 1} are missing"
    else:
        how = f"it overlaps it by {previous.last_seq - first_seq + 1} records"
    return JournalCorruption(
        path,
        0,
        f"a segment from seq {first_seq} after {previous.path.name}, which ends at seq"
        f" {previous.last_seq}: {how}",
    )


class FileJournal:
    """A `Journal` in append-only segment files, for one thread at a time.

    `path` names the first segment (the others are named after it: `segment_path`), and
    `segment_bytes` when the open one is full (default `SEGMENT_BYTES`). Disk failures
    surface as `OSError`; after one, the page cache and the file may disagree (a failed fsync
    cannot be retried safely), so this object refuses everything and the caller reopens the
    file, whose scan settles what is there.
    """

    def __init__(
        self,
        path: str | PathLike[str],
        *,
        read_only: bool = False,
        segment_bytes: int | None = None,
    ) -> None:
        if segment_bytes is None:  # read now: tests lower the module's constant
            segment_bytes = SEGMENT_BYTES
        if segment_bytes <= 0:
            raise ValueError(f"segment_bytes {segment_bytes} is not positive")
        self.path = Path(path)
        self.recovered_tail_bytes = 0
        self._segment_bytes = segment_bytes
        self._closed = False
        self._read_only = read_only
        self._failure: BaseException | None = None
        found = segment_files(self.path) or [(1, self.path)]  # none: the first, made here
        # The open (last) segment is the one a writer locks and writes, a reader locks shared
        self._open_first_seq, self._open_path = found[-1]
        if read_only:  # a missing file is FileNotFoundError: reading must not create it
            self._fd = os.open(self._open_path, os.O_RDONLY | os.O_CLOEXEC)
        else:
            self._fd = _open_or_create(self._open_path)
        # `commit` writes through a second descriptor opened O_DSYNC: the write returns
        # once the data (and the size that finds it) is on disk, as write + fdatasync would,
        # in one system call and one release of the GIL instead of two.
        self._dsync_fd = -1
        try:
            try:
                fcntl.flock(
                    self._fd, (fcntl.LOCK_SH if read_only else fcntl.LOCK_EX) | fcntl.LOCK_NB
                )
            except BlockingIOError:
                raise JournalLocked(self.path) from None
            if segment_files(self.path)[-1][1] != self._open_path:  # a writer began another
                raise JournalLocked(self.path, "a venue writing it moved on to a new segment")
            if not read_only:  # a crash mid-rotation left it; no other writer can be making it
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(rotating_path(self.path))
            # Seq of each indexed record, its segment and offset, so replay can skip what it
            # need not read.
            self._index_seqs: list[int] = []
            self._index_segments: list[int] = []
            self._index_offsets: list[int] = []
            self._segments = self._check_finished(found[:-1])
            size = os.fstat(self._fd).st_size
            # A file that is empty may have just been created, here or by a writer that
            # crashed before making its name durable: the first sync makes it so.
            self._directory_unsynced = size == 0 and not read_only
            end, last_seq = self._scan(size)
        except BaseException:
            os.close(self._fd)
            raise
        self._end = self._durable_end = end
        self._last_seq = self._durable_seq = last_seq
        self._allocated = end  # the file's size: records, then zeros set aside (preallocated)
        self._preallocating = not read_only  # off where the filesystem cannot
        if not read_only:
            self._dsync_fd = os.open(self._open_path, os.O_WRONLY | os.O_DSYNC | os.O_CLOEXEC)

    def _check_finished(self, found: list[tuple[int, Path]]) -> list[Segment]:
        """The finished segments, each checked whole and following on from the one before
        (and the open one from the last of them)."""
        segments: list[Segment] = []
        for first_seq, path in [*found, (self._open_first_seq, self._open_path)]:
            if segments and first_seq != segments[-1].last_seq + 1:
                raise _not_following(path, first_seq, segments[-1])
            if path == self._open_path:
                break
            number = len(segments)
            try:
                segment = check_segment(
                    path,
                    first_seq,
                    functools.partial(self._index, number),
                )
            except FileNotFoundError:
                raise JournalError(
                    f"{path} went while the journal was opened (an archive running?): open it again"
                ) from None
            if segment.end == 0:
                raise JournalCorruption(path, 0, "an empty segment before the last")
            segments.append(segment)
        return segments

    def _index(self, segment: int, seq: int, offset: int) -> None:
        """Note where record `seq` is: in segment number `segment`, at `offset`."""
        self._index_seqs.append(seq)
        self._index_segments.append(segment)
        self._index_offsets.append(offset)

    def first_seq(self) -> int:
        """The seq the journal's files begin at: 1, or past the segments archived."""
        return self._segments[0].first_seq if self._segments else self._open_first_seq

    # -- writing ------------------------------------------------------------------------

    def append(self, records: Sequence[tuple[int, bytes]]) -> None:
        self._check_usable()
        if records:
            data, last_seq = self._frame(records)
            self._finish_segment_if_full()
            self._write(data, last_seq, self._fd)

    def _frame(self, records: Sequence[tuple[int, bytes]]) -> tuple[bytes, int]:
        """The frames of `records` and the seq of the last."""
        crc32, pack_header, pack_seq = zlib.crc32, _HEADER.pack, _SEQ.pack
        expected = self._last_seq + 1
        parts: list[bytes] = []
        for seq, payload in records:
            if seq != expected:
                raise self._out_of_sequence(seq, expected)
            length = len(payload)
            if length > RECORD_BYTES_MAX:
                raise self._too_large(seq, length)
            parts.append(pack_header(length, crc32(payload, crc32(pack_seq(seq))), seq))
            parts.append(payload)
            expected += 1
        return b"".join(parts), expected - 1

    def _frame_commands(
        self, batch: Sequence[Sequenced], encode_into: EncodeInto
    ) -> tuple[bytearray, int]:
        """The frames of `batch`'s commands and the seq of the last. Each payload is encoded
        into one buffer, used again for the next, and copied onto the frames: a bytes object
        made, shrunk and freed per command (and a tuple to carry it) cost ~1,000 of a
        record's ~9,600 instructions in the journal's thread (callgrind, taker commands)."""
        crc32, pack_header, pack_seq = zlib.crc32, _HEADER.pack, _SEQ.pack
        expected = self._last_seq + 1
        data = bytearray()
        payload = bytearray()
        for entry in batch:
            command = entry.command
            if command is None:  # a barrier: nothing to journal
                continue
            seq = entry.seq
            if seq != expected:
                raise self._out_of_sequence(seq, expected)
            encode_into(command, payload)
            length = len(payload)
            if length > RECORD_BYTES_MAX:
                raise self._too_large(seq, length)
            data += pack_header(length, crc32(payload, crc32(pack_seq(seq))), seq)
            data += payload
            expected += 1
        return data, expected - 1

    def _out_of_sequence(self, seq: int, expected: int) -> JournalSequenceError:
        return JournalSequenceError(
            f"{self.path}: seq {seq} where {expected} was due; nothing of the batch written"
        )

    def _too_large(self, seq: int, length: int) -> RecordTooLargeError:
        return RecordTooLargeError(
            f"{self.path}: record {seq} is {length} bytes, over {RECORD_BYTES_MAX}"
        )

    def _write(self, data: bytes | bytearray, last_seq: int, fd: int) -> None:
        """Write the frames `data`, of the records up to `last_seq`, at the end through `fd`."""
        size = len(data)
        if self._end - self._durable_end + size > UNSYNCED_BYTES_MAX:
            raise BatchTooLargeError(
                f"{self.path}: {size} more bytes would leave over {UNSYNCED_BYTES_MAX} unsynced;"
                " sync first or send smaller batches"
            )
        if self._end + size > self._allocated and self._preallocating:
            self._preallocate(self._end + size + PREALLOCATE_BYTES)
        try:
            written = os.pwrite(fd, data, self._end)
            while written < size:  # only on a disk error or a signal: finish or fail loudly
                written += os.pwrite(fd, data[written:], self._end + written)
        except BaseException as error:
            self._failure = error
            raise
        first_seq = self._last_seq + 1
        if (
            not self._end
            or not self._index_seqs
            or first_seq - self._index_seqs[-1] >= INDEX_STRIDE_RECORDS
        ):
            self._index(len(self._segments), first_seq, self._end)
        self._end += size
        self._last_seq = last_seq

    def _preallocate(self, size: int) -> None:
        """Grow the file to `size` bytes of zeros ahead of the writes. Not synced: the first
        durable write into them commits the new size with its data, as appending did."""
        try:
            os.posix_fallocate(self._fd, self._allocated, size - self._allocated)
        except OSError as refused:  # a filesystem without it: append as before
            self._preallocating = False
            logger.info("%s: not preallocated (%s); each write grows the file", self.path, refused)
            return
        self._allocated = size

    def sync(self) -> None:
        self._check_usable()
        if self._durable_end == self._end and not self._directory_unsynced:
            return
        try:
            os.fsync(self._fd)
            if self._directory_unsynced:
                _fsync_directory(self.path.parent)
                self._directory_unsynced = False
        except BaseException as error:
            self._failure = error
            raise
        self._durable_end = self._end
        self._durable_seq = self._last_seq

    def commit(self, records: Sequence[tuple[int, bytes]]) -> None:
        self._check_usable()
        data, last_seq = self._frame(records)
        self._commit_frames(data, last_seq)

    def commit_commands(self, batch: Sequence[Sequenced], encode_into: EncodeInto) -> None:
        self._check_usable()
        data, last_seq = self._frame_commands(batch, encode_into)
        self._commit_frames(data, last_seq)

    def _commit_frames(self, data: bytes | bytearray, last_seq: int) -> None:
        """Write the frames `data` durably: one O_DSYNC write, or append and fsync all."""
        if data:
            self._finish_segment_if_full()
        if not data or self._durable_end != self._end or self._directory_unsynced:
            if data:  # unsynced appends first, or a new file's name: sync all
                self._write(data, last_seq, self._fd)
            self.sync()
            return
        self._write(data, last_seq, self._dsync_fd)  # durable on return (O_DSYNC)
        self._durable_end = self._end
        self._durable_seq = self._last_seq

    def _finish_segment_if_full(self) -> None:
        """At a batch boundary with all appended durable: once the open segment holds
        `segment_bytes`, finish it (cut to its records, fsynced) and open the next, named by
        its first seq, with the directory fsynced. A crash before the new file exists leaves
        the full one open (it is written on); after, an empty last segment: both reopen."""
        if self._end < self._segment_bytes or self._durable_end != self._end:
            return  # not full, or appends wait for their sync: they stay unreplayed till then
        first_seq = self._last_seq + 1
        path = segment_path(self.path, first_seq)
        try:
            if self._allocated > self._end:
                os.ftruncate(self._fd, self._end)
            os.fsync(self._fd)
            if self._directory_unsynced:
                _fsync_directory(self.path.parent)
            fd, dsync_fd = _create_locked_segment(path, rotating_path(self.path))
        except BaseException as error:
            self._failure = error
            raise
        self._segments.append(
            Segment(self._open_path, self._open_first_seq, self._last_seq, self._end)
        )
        os.close(self._dsync_fd)
        os.close(self._fd)
        self._fd, self._dsync_fd = fd, dsync_fd
        self._open_path, self._open_first_seq = path, first_seq
        self._durable_seq = self._last_seq
        self._end = self._durable_end = self._allocated = 0
        self._directory_unsynced = False
        finished = self._segments[-1].path
        logger.info("%s: finished at seq %d; goes on in %s", finished, self._last_seq, path.name)

    # -- reading ------------------------------------------------------------------------

    def replay(self, after_seq: int = 0) -> Iterator[tuple[int, bytes]]:
        self._check_usable(writing=False)
        if after_seq < 0:
            raise ValueError(f"after_seq {after_seq} is negative")
        # Captured now: records made durable while the replay runs are not part of it.
        end, last_seq = self._durable_end, self._durable_seq
        if after_seq >= last_seq:
            return iter(())
        if after_seq + 1 < self.first_seq():
            raise JournalArchived(self.path, self.first_seq(), after_seq)
        # The last indexed record at or before the first one wanted; all are below `end`.
        position = bisect.bisect_right(self._index_seqs, after_seq + 1) - 1
        assert position >= 0, f"no index entry at or before seq {after_seq + 1}"
        opened = Segment(self._open_path, self._open_first_seq, last_seq, end)
        return self._replay(
            [*self._segments, opened][self._index_segments[position] :],
            self._index_offsets[position],
            self._index_seqs[position],
            after_seq,
        )

    def _replay(
        self, segments: list[Segment], offset: int, seq_from: int, after_seq: int
    ) -> Iterator[tuple[int, bytes]]:
        expected = seq_from
        for segment in segments:
            try:
                for seq, payload in _segment_records(segment, offset, expected):
                    expected = seq + 1
                    if seq > after_seq:
                        yield seq, payload
            except SegmentGone:  # archived since this journal was opened: its head moved on
                raise JournalArchived(self.path, self._first_seq_on_disk(), after_seq) from None
            offset = 0

    def _first_seq_on_disk(self) -> int:
        """The seq the journal's files begin at now (an archive may have moved some since the
        open: `first_seq` is what the open found)."""
        found = segment_files(self.path)
        return found[0][0] if found else self._open_first_seq

    def last_seq(self) -> int:
        return self._last_seq

    def close(self) -> None:
        if self._closed:
            return
        try:
            if self._failure is None and not self._read_only:
                self.sync()
                if self._allocated > self._end:  # the space set aside goes: the file is its records
                    os.ftruncate(self._fd, self._end)
        finally:
            self._closed = True
            os.close(self._fd)
            if self._dsync_fd >= 0:
                os.close(self._dsync_fd)

    # -- opening ------------------------------------------------------------------------

    def _scan(self, size: int) -> tuple[int, int]:
        """Check every frame of the open segment; cut a torn tail. The end offset and last seq
        of what is good."""
        first_seq = expected = self._open_first_seq
        number = len(self._segments)
        with open(self._open_path, "rb", buffering=READ_BUFFER_BYTES) as file:
            try:
                for offset, seq, _payload in _frames(file, 0, size):
                    if seq != expected:
                        raise JournalCorruption(
                            self._open_path, offset, f"seq {seq} where {expected} was due"
                        )
                    if (seq - first_seq) % INDEX_STRIDE_RECORDS == 0:
                        self._index(number, seq, offset)
                    expected += 1
                return size, expected - 1
            except _BadFrame as bad:
                offset, reason = bad.offset, bad.reason
            if offset == 0:  # nothing good before it: it must at least be a frame begun
                file.seek(0)
                problem = _first_header_problem(file.read(HEADER_BYTES), first_seq)
                if problem is not None:
                    raise NotAJournal(self._open_path, problem)
            # What a crash can leave past the last good frame: a torn batch, then zeros set
            # aside for later writes (read whole, and searched whole: the zeros are not part
            # of the tear, and a valid record after them would make all of it corruption).
            rest = size - offset
            if rest > UNSYNCED_BYTES_MAX + PREALLOCATE_BYTES:
                raise self._too_far_to_be_torn(offset, reason, rest)
            file.seek(offset)
            region = file.read(rest)
        tail = len(region.rstrip(b"\0"))
        if not tail:  # zeros only: space set aside and never written, no record lost
            return self._cut_unused(offset, expected - 1)
        if tail > UNSYNCED_BYTES_MAX:
            raise self._too_far_to_be_torn(offset, reason, tail)
        found = _find_frame(region, expected)
        if found is not None:
            raise JournalCorruption(
                self._open_path,
                offset,
                f"{reason}, yet a valid record follows at byte {offset + found}",
            )
        # Nothing valid follows: the last write was cut short by a crash and never
        # acknowledged (acks wait for sync), so dropping it loses nothing promised.
        self.recovered_tail_bytes = tail
        if self._read_only:
            logger.warning(
                "%s: a torn tail of %d bytes at byte %d (%s), left for the writer to cut",
                self._open_path,
                tail,
                offset,
                reason,
            )
            return offset, expected - 1
        os.ftruncate(self._fd, offset)
        os.fsync(self._fd)
        logger.warning(
            "%s: cut a torn tail of %d bytes at byte %d (%s); the journal ends at seq %d",
            self._open_path,
            tail,
            offset,
            reason,
            expected - 1,
        )
        return offset, expected - 1

    def _too_far_to_be_torn(self, offset: int, reason: str, tail: int) -> JournalCorruption:
        return JournalCorruption(
            self._open_path,
            offset,
            f"{reason}, with {tail} bytes from there to the end: more than one crash can tear"
            f" ({UNSYNCED_BYTES_MAX}, and {PREALLOCATE_BYTES} set aside after it)",
        )

    def _cut_unused(self, end: int, last_seq: int) -> tuple[int, int]:
        """The file ends in zeros set aside for writes that never came (a crash, or a writer
        still running): the journal ends at `end`; the writer gives the space back."""
        if not self._read_only:
            os.ftruncate(self._fd, end)
            os.fsync(self._fd)
        return end, last_seq

    def _check_usable(self, writing: bool = True) -> None:
        if self._closed:
            raise JournalError(f"{self.path}: the journal is closed")
        if writing and self._read_only:
            raise JournalError(f"{self.path}: opened read-only")
        if self._failure is not None:
            raise JournalError(
                f"{self.path}: a disk error ({self._failure!r}) left the file unknown; reopen it"
            )


def segment_records(segment: Segment) -> Iterator[tuple[int, bytes]]:
    """(seq, payload) of each record of a finished `segment` (as `check_segment` gave it)."""
    return _segment_records(segment, 0, segment.first_seq)


def segment_reaches(path: Path, first_seq: int, seq: int) -> bool:
    """Whether the segment `path`, which begins at `first_seq`, holds frames that check out
    from its start through record `seq`. Takes no lock: a segment being written is read as it
    is now, up to a torn tail or the zeros set aside (what a writer adds meanwhile only adds)."""
    if seq < first_seq:
        return True
    expected = first_seq
    with open(path, "rb", buffering=READ_BUFFER_BYTES) as file, contextlib.suppress(_BadFrame):
        for _offset, found, _payload in _frames(file, 0, os.fstat(file.fileno()).st_size):
            if found != expected:
                return False
            if found == seq:
                return True
            expected += 1
    return False


def _segment_records(segment: Segment, offset: int, seq_from: int) -> Iterator[tuple[int, bytes]]:
    """(seq, payload) of the durable frames of `segment` from `offset`, the first `seq_from`."""
    expected = seq_from
    try:
        with open(segment.path, "rb", buffering=READ_BUFFER_BYTES) as file:
            for frame_offset, seq, payload in _frames(file, offset, segment.end):
                if seq != expected:
                    raise JournalCorruption(
                        segment.path, frame_offset, f"seq {seq} where {expected} was due"
                    )
                expected += 1
                yield seq, payload
    except _BadFrame as bad:
        # Durable bytes that no longer check out changed under us: never a torn tail.
        raise JournalCorruption(segment.path, bad.offset, bad.reason) from None
    except FileNotFoundError:
        raise SegmentGone(f"{segment.path}: gone while the journal was open (archived?)") from None


def _frames(file: BinaryIO, offset: int, end: int) -> Iterator[tuple[int, int, bytes]]:
    """(offset, seq, payload) of each frame from `offset` to `end`; `_BadFrame` at a bad one."""
    crc32, unpack_header = zlib.crc32, _HEADER.unpack
    file.seek(offset)
    while offset < end:
        if end - offset < HEADER_BYTES:
            raise _BadFrame(offset, f"a header cut short at {end - offset} of {HEADER_BYTES} bytes")
        header = file.read(HEADER_BYTES)
        if len(header) != HEADER_BYTES:  # the file shrank under us
            raise _BadFrame(offset, f"the file ends at {offset + len(header)}, before {end}")
        length, crc, seq = unpack_header(header)
        if length > RECORD_BYTES_MAX:
            raise _BadFrame(offset, f"a length of {length} bytes, over {RECORD_BYTES_MAX}")
        if end - offset - HEADER_BYTES < length:
            left = end - offset - HEADER_BYTES
            raise _BadFrame(offset, f"a record cut short at {left} of {length} bytes")
        payload = file.read(length)
        if len(payload) != length or crc32(payload, crc32(header[_CRC_FROM:])) != crc:
            raise _BadFrame(offset, "a CRC32 mismatch")
        yield offset, seq, payload
        offset += HEADER_BYTES + length


def _first_header_problem(head: bytes, first_seq: int = 1) -> str | None:
    """Why `head`, a segment's first bytes (up to a header), cannot be the start of its first
    frame, written whole or torn; None if it can. A tear leaves a prefix of what was written,
    or zeros where a block never reached the disk; the first frame's length has a zero top
    byte (`RECORD_BYTES_MAX`) and its seq is `first_seq` (1 for the first segment): 16 random
    bytes pass with odds of 2**-72."""
    if not head.strip(b"\0"):
        return None
    length = _LENGTH.unpack_from(head)[0] if len(head) >= _LENGTH.size else None
    if head[0] != 0 or (length is not None and length > RECORD_BYTES_MAX):
        said = f"a length beginning {head.hex()}" if length is None else f"a length of {length}"
        return f"{said} bytes, over {RECORD_BYTES_MAX}"
    seq_bytes = head[_CRC_FROM:]
    if seq_bytes != _SEQ.pack(first_seq)[: len(seq_bytes)]:
        if len(seq_bytes) == _SEQ.size:
            return f"seq {_SEQ.unpack(seq_bytes)[0]} where {first_seq} was due"
        return f"a seq beginning {seq_bytes.hex()}, not seq {first_seq}"
    return None


def _open_or_create(path: Path) -> int:
    """A descriptor for reading and writing `path`, created if missing; `DanglingJournalLink`
    for a symlink to nothing (O_EXCL refuses to create through a link): a journal kept on
    another disk that is not there now would otherwise start again from seq 1."""
    flags = os.O_RDWR | os.O_CLOEXEC
    try:
        return os.open(path, flags)
    except FileNotFoundError:
        pass
    try:
        # Owner-only whatever the umask: the journal holds every participant's orders.
        return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if os.path.islink(path) and not os.path.exists(path):
            raise DanglingJournalLink(path, os.readlink(path)) from None
        return os.open(path, flags)  # made meanwhile by another opener: its flock decides


def _create_locked_segment(path: Path, temporary: Path) -> tuple[int, int]:
    """A new empty segment at `path`, locked by this writer before any listing finds it, and
    a second descriptor for O_DSYNC writes. Made under `temporary` (no segment's name), locked,
    then renamed: made under its own name, a reader opening meanwhile could list it and lock it
    shared before this writer's exclusive lock, which would then fail (the writer refusing
    everything from then on)."""
    fd = dsync_fd = -1
    try:
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # before the old one's goes
        dsync_fd = os.open(temporary, os.O_WRONLY | os.O_DSYNC | os.O_CLOEXEC)
        if os.path.lexists(path):  # only the open segment can be the last: never overwrite
            raise FileExistsError(errno.EEXIST, "a segment already has this name", str(path))
        os.rename(temporary, path)
        _fsync_directory(path.parent)
    except BaseException:
        for opened in (fd, dsync_fd):  # a leaked one would hold the new segment's lock
            if opened >= 0:
                os.close(opened)
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return fd, dsync_fd


def _find_frame(region: bytes, seq_min: int) -> int | None:
    """Where in `region` after its first byte a frame with a plausible seq checks out."""
    size = len(region)
    # Frames written after the bad one carry the seqs after it, each taking 16 bytes at least.
    seq_max = seq_min + size // HEADER_BYTES
    view = memoryview(region)
    position = region.find(0, 1)
    while 0 <= position <= size - HEADER_BYTES:
        length, crc, seq = _HEADER.unpack_from(region, position)
        if seq == 0:  # skip a run of zeros at once: a frame's seq has a non-zero byte
            nonzero = _NONZERO.search(region, position + _CRC_FROM)
            if nonzero is None:
                return None
            position = region.find(0, max(position + 1, nonzero.start() - HEADER_BYTES + 1))
            continue
        frame_end = position + HEADER_BYTES + length
        if (
            seq_min <= seq <= seq_max
            and frame_end <= size
            and zlib.crc32(view[position + _CRC_FROM : frame_end]) == crc
        ):
            return position
        position = region.find(0, position + 1)
    return None


def encoded_records(batch: Sequence[Sequenced], encode_into: EncodeInto) -> list[tuple[int, bytes]]:
    """The (seq, payload) records of `batch`'s commands: `commit_commands` for a journal
    that takes whole records."""
    payload = bytearray()
    records: list[tuple[int, bytes]] = []
    for entry in batch:
        if entry.command is not None:
            encode_into(entry.command, payload)
            records.append((entry.seq, bytes(payload)))
    return records


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def measure(
    records: int, batch: int, payload_bytes: int, path: str | PathLike[str]
) -> dict[str, object]:
    """Commit `records` records of `payload_bytes` to a new journal at `path`, `batch` per fsync.

    Returns durable records per second over the whole run and the time per batch (append and
    sync) at p50, p99 and max, in ms; `verified` says a reopened journal replays them all.
    """
    if records <= 0 or batch <= 0 or not 0 <= payload_bytes <= RECORD_BYTES_MAX:
        raise ValueError(f"records {records}, batch {batch}, payload_bytes {payload_bytes}")
    if os.path.lexists(path):
        raise FileExistsError(f"{path} exists; the benchmark writes a new journal")
    payload = bytes(index % 251 for index in range(payload_bytes))
    batches = [
        [(seq, payload) for seq in range(start + 1, min(start + batch, records) + 1)]
        for start in range(0, records, batch)
    ]
    batch_ms: list[float] = []
    journal = FileJournal(path)
    try:
        started = time.perf_counter()
        for rows in batches:
            before = time.perf_counter()
            journal.commit(rows)
            batch_ms.append((time.perf_counter() - before) * 1e3)
        seconds = time.perf_counter() - started
    finally:
        journal.close()
    reopened = FileJournal(path)
    try:
        replayed = sum(1 for _ in reopened.replay())
        verified = replayed == records == reopened.last_seq()
    finally:
        reopened.close()
    batch_ms.sort()
    return {
        "records": records,
        "batch": batch,
        "payload_bytes": payload_bytes,
        "fsyncs": len(batches),
        "seconds": round(seconds, 6),
        "durable_records_per_sec": round(records / seconds),
        "batch_ms": {
            "p50": round(batch_ms[len(batch_ms) // 2], 3),
            "p99": round(batch_ms[len(batch_ms) * 99 // 100], 3),
            "max": round(batch_ms[-1], 3),
        },
        "verified": verified,
    }
