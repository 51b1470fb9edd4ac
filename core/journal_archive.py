"""`venue journal archive --data-dir D --to DIR`: move the journal's old segments elsewhere.

Owns which segments may go and how they move. A segment may go once it is finished (the next
one exists: it was cut and fsynced before that was made, and is never written again) and its
last seq is at or below both the oldest snapshot file in the data directory and the newest
snapshot that reads (CRC and body: the one a restart takes, needing only the journal after
it; a damaged or empty file moves nothing), itself within the journal. Oldest first, one at
a time: copied to DIR under a `.tmp` name and fsynced, the copy's frames checked (CRC32, seqs
from its first to its last), renamed and DIR fsynced; only then is the original removed and
the data directory fsynced. So the journal left is always one run of segments, and a crash
leaves the original in place (and maybe its copy: the next run checks the copy holds the
same bytes, then removes the original). Safe while the venue runs: it touches no open
segment, and a snapshot removed meanwhile only raises the oldest seq. Limits: one archive at
a time per data directory; a run reads the newest good snapshot whole (as a restart does).
"""

import argparse
import contextlib
import filecmp
import itertools
import os
import shutil
from pathlib import Path

import msgspec

from cli.arguments import directory
from cli.failures import CommandFailed
from core import snapshots
from core.journal import (
    JournalCorruption,
    JournalError,
    check_segment,
    segment_files,
    segment_reaches,
)
from core.venue_core import JOURNAL_FILE

COPY_BUFFER_BYTES = 1 << 20  # a segment is up to ~1 GiB: copied in 1 MiB reads


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
    archive_parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    for line in archive(args.data_dir, args.to):
        print(line)
    return 0


def archive(data_dir: Path, to: Path) -> list[str]:
    """Move every segment that may go (module docstring); one line per segment moved."""
    found = segment_files(data_dir / JOURNAL_FILE) if data_dir.is_dir() else []
    if not found:
        raise CommandFailed(f"{data_dir}: no journal ({JOURNAL_FILE}), nothing to archive")
    if to.exists() and to.resolve() == data_dir.resolve():
        raise CommandFailed(f"--to {to} is the data directory: give another directory")
    kept_seq = kept_through(data_dir, found)
    if kept_seq is None:
        return [
            "ok   nothing archived: no snapshot that reads yet (a restart replays the whole"
            " journal)"
        ]
    to.mkdir(mode=0o700, parents=True, exist_ok=True)
    lines = []
    for (first_seq, path), (next_seq, _) in itertools.pairwise(found):
        if next_seq - 1 > kept_seq:
            break
        _move(path, first_seq, next_seq - 1, to)
        lines.append(f"ok   archived {path.name} (seqs {first_seq} to {next_seq - 1}) to {to}")
    first_kept = found[len(lines)][0]
    lines.append(
        f"ok   the journal in {data_dir} begins at seq {first_kept}; segments may go through"
        f" seq {kept_seq} (the oldest snapshot's, or the newest that reads)"
    )
    return lines


def kept_through(data_dir: Path, found: list[tuple[int, Path]]) -> int | None:
    """The last seq a segment that goes may hold, or None (nothing may go): the oldest
    snapshot file's (by its name: the venue keeps the older ones to fall back on), and no
    later than the newest snapshot that reads (its CRC and body check out: the one a restart
    would take), which must lie within the journal (else `CommandFailed`)."""
    oldest_seq = oldest_snapshot_seq(data_dir)
    newest_seq = newest_readable_snapshot_seq(data_dir)
    if oldest_seq is None or newest_seq is None:
        return None
    open_first_seq, open_path = found[-1]
    if not segment_reaches(open_path, open_first_seq, newest_seq):
        raise CommandFailed(
            f"{data_dir}: the newest snapshot that reads is at seq {newest_seq}, past the"
            " journal's last record (another venue's snapshot?): nothing archived"
        )
    return min(oldest_seq, newest_seq)


def oldest_snapshot_seq(data_dir: Path) -> int | None:
    """The seq of the oldest snapshot file in `data_dir` (by its name), or None."""
    seqs = [_snapshot_seq(path) for path in data_dir.glob("snapshot-*.bin")]
    known = [seq for seq in seqs if seq is not None]
    return min(known) if known else None


def newest_readable_snapshot_seq(data_dir: Path) -> int | None:
    """The seq of the newest snapshot in `data_dir` that reads whole (`snapshots.read`: CRC
    and decode), or None. Newest first, one at a time: memory for one snapshot at most."""
    named = [path for path in data_dir.glob("snapshot-*.bin") if _snapshot_seq(path) is not None]
    for path in sorted(named, reverse=True):
        try:
            snapshot = snapshots.read(path)
        except FileNotFoundError:  # pruned by the venue meanwhile, or a link to nothing
            continue
        except msgspec.MsgspecError:  # its CRC checks out, its body is no snapshot of ours
            continue
        if snapshot is not None:
            return snapshot.seq
    return None


def _snapshot_seq(path: Path) -> int | None:
    digits = path.name.removeprefix("snapshot-").removesuffix(".bin")
    if not digits.isdigit() or snapshots.path_for(path.parent, int(digits)) != path:
        return None
    return int(digits)


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
    else:
        temporary = to / f"{path.name}.tmp"
        try:
            _copy(path, temporary)
            _check_copy(temporary, first_seq, last_seq)
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            raise
        snapshots.fsync_directory(to)
    path.unlink()
    snapshots.fsync_directory(path.parent)


def _copy(source: Path, copy: Path) -> None:
    """`source`'s bytes in a new file `copy`, fsynced; owner-only: it holds participants'
    orders."""
    descriptor = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(descriptor, "wb") as written, source.open("rb") as read:
        shutil.copyfileobj(read, written, COPY_BUFFER_BYTES)
        written.flush()
        os.fsync(written.fileno())


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
