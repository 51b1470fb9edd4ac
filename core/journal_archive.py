"""`venue journal archive --data-dir D --to DIR`: move the journal's old segments elsewhere.

Owns which segments may go and how they move. A segment may go once it is finished (the next
one exists: it was cut and fsynced before that was made, and is never written again) and its
last seq is at or below both the oldest snapshot file in the data directory and the newest
snapshot that checks out (header and CRC, and its per-account entries restore: the one a
restart takes, needing only the journal after it; a damaged or empty file moves nothing),
itself within the journal. Oldest first,
one at a time: copied to DIR under a `.tmp` name of its own (O_EXCL) and fsynced, the copy's
frames checked (CRC32, seqs from its first to its last), renamed and DIR fsynced, its size
and CRC32 read again and compared with the original's (taken as it was copied); only then is
the original removed and the data directory fsynced. So the journal left is always one run
of segments, and a crash leaves the original in place (and maybe its copy: the next run
checks the copy holds the same bytes, then removes the original). One run at a time: each
holds `ARCHIVE_LOCK_FILE` in the data directory and in DIR (a second is refused). Safe while
the venue runs: it touches no open segment, and a snapshot removed meanwhile only raises the
oldest seq. Limits: a run reads each segment it moves twice (the copy, then the copy again)
streams each newest snapshot's body once for its CRC (1 MiB reads), then reads the newest that
checks out whole to check its entries: memory rises to about that file's size (its
per-account maps kept undecoded, each entry decoded and dropped in turn) plus its engine
image, as a restart's read does.
"""

import argparse
import contextlib
import fcntl
import filecmp
import itertools
import os
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec

from cli.arguments import directory
from cli.failures import CommandFailed
from core import snapshots
from core.archive_runs import not_a_directory
from core.journal import (
    JournalCorruption,
    JournalError,
    check_segment,
    refuse_dangling_link,
    segment_files,
    segment_reaches,
)
from core.venue_core import JOURNAL_FILE

COPY_BUFFER_BYTES = 1 << 20  # a segment is up to ~1 GiB: copied in 1 MiB reads
# Held by a run in the data directory and in the archive directory: one run at a time on each
ARCHIVE_LOCK_FILE = ".journal-archive.lock"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(title="journal commands", required=True)
    archive_parser = commands.add_parser(
        "archive",
        help="move finished segments a restart no longer needs to another directory",
        description="Move the journal's finished segments whose records all come at or before"
        " the oldest snapshot in the data directory to --to: each copied, fsynced and its"
        " CRCs checked before the original is removed. Safe while the venue runs. One line per"
        " segment moved. Exit status: 0 done (or nothing to move); 2 it could not (no journal,"
        " a copy that does not check out: the original is kept).",
    )
    archive_parser.add_argument(
        "--data-dir",
        type=directory,
        default=Path("data"),
        help="the venue's data directory (default: data)",
    )
    archive_parser.add_argument(
        "--to",
        type=directory,
        required=True,
        help="the archive directory (made if missing; keep it: `venue verify --archive` reads"
        " it, and a recovery from before the oldest snapshot needs it back in the data dir)",
    )
    archive_parser.add_argument(
        "--existing",
        action="store_true",
        help="refuse a --to that is not a directory already, making none (the venue's own"
        " runs: through an unmounted disk's empty mount point, one made would be on the"
        " root disk)",
    )
    archive_parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    archive(
        args.data_dir, args.to, said=lambda line: print(line, flush=True), existing=args.existing
    )
    return 0


def _unsaid(line: str) -> None:
    """`archive`'s default `said`: the lines are its return value alone."""


def archive(
    data_dir: Path, to: Path, said: Callable[[str], None] = _unsaid, existing: bool = False
) -> list[str]:
    """Move every segment that may go (module docstring); one line per segment moved, each
    given to `said` as soon as its segment has moved (a run refused part way has said what
    it moved before: its lines would otherwise go with the refusal). `existing`: `to` must
    be a directory already (`not_a_directory`), none is made."""
    if data_dir.exists() and not data_dir.is_dir():
        raise CommandFailed(
            f"{data_dir}: not a directory: nothing to archive (give the --data-dir a venue"
            " ran with)"
        )
    if not data_dir.is_dir() or not segment_files(data_dir / JOURNAL_FILE):
        raise CommandFailed(f"{data_dir}: no journal ({JOURNAL_FILE}), nothing to archive")
    if to.exists() and to.resolve() == data_dir.resolve():
        raise CommandFailed(f"--to {to} is the data directory: give another directory")
    if existing and (missing := not_a_directory(to)) is not None:
        raise CommandFailed(f"--to {to}: {missing}")
    # (mkdir would say only "File exists" of either, which reads as if the directory were fine)
    for path in [*reversed(to.absolute().parents), to]:  # (a link on the way too)
        refuse_dangling_link(path, "making an archive directory there")
    if to.exists() and not to.is_dir():
        raise CommandFailed(f"--to {to}: not a directory (give the archive directory)")
    with _run_alone(data_dir, "data directory"):
        found = segment_files(data_dir / JOURNAL_FILE)  # listed again: under the lock
        kept_seq = kept_through(data_dir)
        if kept_seq is None:
            line = (
                "ok   nothing archived: no snapshot that checks out yet (a restart replays the"
                " whole journal)"
            )
            said(line)
            return [line]
        if not existing:
            to.mkdir(mode=0o700, parents=True, exist_ok=True)
        elif (missing := not_a_directory(to)) is not None:  # gone since (the snapshot's read)
            raise CommandFailed(f"--to {to}: {missing}")
        with _run_alone(to, "archive directory"):  # (its lock file: none made in a missing DIR)
            _remove_stale_copies(to)
            return _move_through(data_dir, found, kept_seq, to, said)


def _move_through(
    data_dir: Path,
    found: list[tuple[int, Path]],
    kept_seq: int,
    to: Path,
    said: Callable[[str], None],
) -> list[str]:
    """Move the finished segments of `found` whose records end at or before `kept_seq`."""
    lines: list[str] = []
    for (first_seq, path), (next_seq, _) in itertools.pairwise(found):
        if next_seq - 1 > kept_seq:
            break
        _move(path, first_seq, next_seq - 1, to)
        lines.append(f"ok   archived {path.name} (seqs {first_seq} to {next_seq - 1}) to {to}")
        said(lines[-1])
    first_kept = found[len(lines)][0]
    lines.append(
        f"ok   the journal in {data_dir} begins at seq {first_kept}; segments may go through"
        f" seq {kept_seq} (the oldest snapshot's, or the newest that checks out)"
    )
    said(lines[-1])
    return lines


@contextlib.contextmanager
def _run_alone(directory: Path, what: str) -> Iterator[None]:
    """Hold `directory`'s archive lock for the run, or `CommandFailed` if another run does:
    two runs at once (a cron overlap) could each remove an original the other copied, or
    clobber each other's copies. Both sides are locked: two runs to different archives would
    otherwise both move the same segments."""
    lock_path = directory / ARCHIVE_LOCK_FILE
    descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CommandFailed(
                f"another `venue journal archive` is running on the {what} {directory} (it"
                f" holds {lock_path}): nothing archived; run it again once that one ends"
            ) from None
        yield
    finally:
        os.close(descriptor)


def _remove_stale_copies(to: Path) -> None:
    """Remove half copies a run that stopped part way left in `to` (no run is copying now)."""
    for stale in to.glob(f"{Path(JOURNAL_FILE).stem}.*.tmp"):
        stale.unlink(missing_ok=True)


def kept_through(data_dir: Path) -> int | None:
    """The last seq a segment that goes may hold, or None (nothing may go): the oldest
    snapshot file's (by its name: the venue keeps the older ones to fall back on), and no
    later than the newest snapshot a restart would take (`newest_checked_snapshot_seq`),
    which must lie within the journal (else `CommandFailed`)."""
    oldest_seq = snapshots.oldest_named_seq(data_dir)
    newest_seq = newest_checked_snapshot_seq(data_dir)
    if oldest_seq is None or newest_seq is None:
        return None
    # Listed after the snapshot was found: a running venue may have rotated and written it
    # since the run's first listing, into a segment that listing did not have.
    segments = segment_files(data_dir / JOURNAL_FILE)
    first_seq, path = next(
        (segment for segment in reversed(segments) if segment[0] <= newest_seq), segments[0]
    )
    if not segment_reaches(path, first_seq, newest_seq):
        raise CommandFailed(
            f"{data_dir}: the newest snapshot that checks out is at seq {newest_seq}, which no"
            f" record of the journal reaches (its segment {path.name} ends before): a snapshot"
            " of another venue's journal? nothing archived"
        )
    return min(oldest_seq, newest_seq)


def newest_checked_snapshot_seq(data_dir: Path) -> int | None:
    """The seq of the newest snapshot in `data_dir` a restart would take, or None: its header
    and CRC check out (`snapshots.checked_seq`, streamed: a damaged file costs no more) and
    its per-account entries restore (`snapshots.check_entries`, as `snapshots.latest` checks
    them: a file whose checksum holds but whose entries do not decode is passed over by a
    restart, so it cannot stand for the records archived). Newest first, one read at a time."""
    for path in reversed(snapshots.named_oldest_first(data_dir)):
        try:
            seq = snapshots.checked_seq(path)
            if seq is None or seq != snapshots.named_seq(path):  # (a header naming another seq: no)
                continue
            snapshot = snapshots.read(path)
        except FileNotFoundError:  # pruned by the venue meanwhile, or a link to nothing
            continue
        if snapshot is None:
            continue
        try:
            snapshots.check_entries(snapshot)
        except msgspec.DecodeError:  # (a ValidationError too: logged by `latest` at a start)
            continue
        return seq
    return None


def _move(path: Path, first_seq: int, last_seq: int, to: Path) -> None:
    """Copy the finished segment `path` into `to`, check the copy, then remove `path`."""
    target = to / path.name
    if target.exists():  # a run before stopped after its rename: the same bytes, or refuse
        if not filecmp.cmp(path, target, shallow=False):
            raise CommandFailed(
                f"{target} exists and differs from {path}: left both as they are (another"
                " venue's archive in the same directory?)"
            )
        _check_copy(target, first_seq, last_seq)
        snapshots.fsync_directory(to)  # its rename durable before the original goes
    else:
        original = _copy_in(path, first_seq, last_seq, target)
        # Read again right before the original goes: a copy changed since its check (by
        # anything but this run) must not be all that is left.
        if _size_and_crc(target) != original:
            raise CommandFailed(
                f"{target} no longer holds the bytes of {path} (its size or CRC32 differs):"
                " the original is kept; remove the copy and run again"
            )
    path.unlink()
    snapshots.fsync_directory(path.parent)


def _copy_in(path: Path, first_seq: int, last_seq: int, target: Path) -> tuple[int, int]:
    """`path`'s bytes at `target`, checked, through a temporary name of this run alone; the
    size and CRC32 of the bytes read from `path` (the original is not read twice)."""
    descriptor, name = tempfile.mkstemp(prefix=f"{path.name}.", suffix=".tmp", dir=target.parent)
    temporary = Path(name)  # made O_EXCL, owner-only: it holds participants' orders
    crc = size = 0
    try:
        with os.fdopen(descriptor, "wb") as written, path.open("rb") as read:
            while chunk := read.read(COPY_BUFFER_BYTES):
                written.write(chunk)
                crc = zlib.crc32(chunk, crc)
                size += len(chunk)
            written.flush()
            os.fsync(written.fileno())
        _check_copy(temporary, first_seq, last_seq)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise
    snapshots.fsync_directory(target.parent)
    return size, crc


def _size_and_crc(path: Path) -> tuple[int, int]:
    """`path`'s size and the CRC32 of all its bytes."""
    crc = size = 0
    with path.open("rb") as file:
        while chunk := file.read(COPY_BUFFER_BYTES):
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
    return size, crc


def _check_copy(copy: Path, first_seq: int, last_seq: int) -> None:
    """The copy's frames check out and hold exactly `first_seq` to `last_seq`."""
    try:
        segment = check_segment(copy, first_seq)
    except JournalCorruption as bad:
        raise CommandFailed(f"the copy does not check out, the original is kept: {bad}") from None
    except JournalError as bad:
        raise CommandFailed(str(bad)) from None
    if segment.last_seq != last_seq:
        raise CommandFailed(
            f"{copy} holds seqs {first_seq} to {segment.last_seq}, not to {last_seq}: the"
            " original is kept"
        )
