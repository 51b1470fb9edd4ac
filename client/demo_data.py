"""The demos' data directories: what a demo may delete there, and what it must not.

Both demos (`venue demo`, `venue demo-engine`) start afresh each run, deleting what the
previous run left. Owns the rule that keeps that from deleting a venue's data: a demo
clears a directory only if nothing holds it (a running venue or demo locks its journal)
and only if what is there was left by a demo (`MARKER`, written when a demo claims a
directory). A venue's own data directory, running or stopped, is refused with a message.
"""

import os
from pathlib import Path

from cli.failures import CommandFailed, check_data_dir
from core.journal import FileJournal, JournalError, JournalLocked, segment_files
from core.venue_core import EPOCHS_FILE, LOCK_FILE, lock_data_dir
from gateway.server import JOURNAL_FILE, LEDGER_FILE

# What a venue keeps in its data directory: the journal (its first segment, then those named
# by their first seq), the ledger store (with SQLite's -wal and -shm) and state snapshots
# (core.snapshots: snapshot-<seq>.bin, and .tmp)
JOURNAL_SEGMENTS = f"{Path(JOURNAL_FILE).stem}.*{Path(JOURNAL_FILE).suffix}"
VENUE_FILES = (JOURNAL_FILE, JOURNAL_SEGMENTS, f"{LEDGER_FILE}*", "snapshot-*")
# and what a demo clears of it: with the epochs of the starts, which name seqs of the journal
DEMO_CLEARS = (*VENUE_FILES, EPOCHS_FILE)
MARKER = "demo-data"  # written by a demo into the directory it claims
MARKER_TEXT = "This directory holds a venue demo's data: each demo run deletes and rewrites it.\n"


def claim(data_dir: Path, clear: tuple[str, ...] = DEMO_CLEARS) -> None:
    """Make `data_dir` the demo's: refuse it if in use or if it holds a venue's data that no
    demo left there; else delete the files matching `clear` and mark it as a demo's."""
    check_data_dir(data_dir)
    _refuse_if_in_use(data_dir)
    marked = (data_dir / MARKER).is_file()
    if not marked:
        found = sorted(path.name for pattern in VENUE_FILES for path in data_dir.glob(pattern))
        if found:
            raise CommandFailed(
                f"{data_dir} holds a venue's data ({', '.join(found[:3])}), not a demo's: the "
                "demo deletes what it finds there, so give another --data-dir (or delete the "
                "directory yourself if it is an old demo's)"
            )
    # Owner-only, as a venue makes its own: it holds the demo's participants' data (and a
    # 0755 one had every start warn of a directory open to others).
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if marked:  # the demo's own, maybe made before session 32 (0755): closed as a new one
        data_dir.chmod(0o700)
        (data_dir / MARKER).chmod(0o600)
    for pattern in clear:
        for path in data_dir.glob(pattern):
            path.unlink(missing_ok=True)
    if not marked:
        _write_owner_only(data_dir / MARKER, MARKER_TEXT)


def _write_owner_only(path: Path, text: str) -> None:
    """`text` in a new `path`, 0600 as the venue's own files (a start warns of one open to
    others in its data directory)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


def disown(data_dir: Path) -> None:
    """A venue is served from `data_dir` (`venue serve`): what it writes there is no demo's
    to delete, whoever made the directory."""
    (data_dir / MARKER).unlink(missing_ok=True)


def _refuse_if_in_use(data_dir: Path) -> None:
    """A venue (or demo) running on `data_dir` keeps its files: a demo must not delete them.
    Every running core holds `venue.lock` (a cluster's core has no journal file here)."""
    journal = data_dir / JOURNAL_FILE
    try:
        if (data_dir / LOCK_FILE).exists():
            lock_data_dir(data_dir, shared=True).close()
        if segment_files(journal):
            FileJournal(journal, read_only=True).close()
    except JournalLocked:
        msg = f"{data_dir} is in use by a running venue: give another --data-dir"
        raise CommandFailed(msg) from None
    except JournalError:
        pass  # damaged: nobody holds it; whether it may go is the marker's to say
