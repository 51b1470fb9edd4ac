"""`venue verify --data-dir D`: prove the data directory is consistent, one line per check.

Replays the command journal from the first record into a fresh venue (when its head was
archived, `core.journal_archive`: from the oldest snapshot it can use, saying so, or from
seq 1 with the archived segments read from `--archive DIR` first), and checks that
the state at the newest snapshot's seq equals that snapshot, that the ledger store holds
exactly the transfers the replay booked (same ids, same balances) and verifies on its own
(hash chain, conservation). Replays under the engine's rules the journal's first record ran
under, as the server does (`snapshots.first_rules`: the reserve staleness decides deposits,
and every change of it is a journal record; the config's only for a journal begun before
that, with no snapshot, as it always was). Takes the server's
`venue.toml` (its `ledger_postgres`, or `--postgres DSN`, names a PostgreSQL store to check
instead of the data directory's SQLite file). Exits 1 if any check fails.
Changes nothing but one thing: a half-written snapshot `.tmp` left by a crash is removed (and
said). A damaged snapshot (recovery skips it) is a FAIL line naming it, as is one whose
per-account entry does not decode (`snapshots.check_entries`). Refuses, creating
nothing, a directory with no journal and one a running venue holds (its `venue.lock` and its
journal's flock). On a terminal the replay draws a progress bar on stderr (a long journal
takes minutes); stdout is only the checks. With `--nats` it checks a cluster's journal
stream instead, and its ledger store against it (PostgreSQL, or a `--sqlite` core's in its
`--data-dir`: `core.cluster_verify`).
"""

import argparse
import itertools
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import msgspec
import psycopg

from cli import progress
from cli.arguments import directory, dsn
from cli.failures import CommandFailed
from core import config as venue_config
from core import snapshots
from core.journal import (
    FileJournal,
    JournalError,
    JournalLocked,
    check_segment,
    segment_files,
    segment_records,
)
from core.ledger_cli import schema_problem
from core.sequencer import decode_record
from core.venue_core import JOURNAL_FILE, LEDGER_FILE, LOCK_FILE, lock_data_dir
from engine import snapshot as venue_snapshot
from engine.venue import Venue
from settlement.ledger import Ledger
from settlement.store import LedgerStore, LedgerStoreError, SqliteLedgerStore

PROGRESS_EVERY = 4_096  # records between two moves of the bar: cheap beside the replay


DESCRIPTION = (
    "Check a stopped venue's data directory without changing it: replay the journal from seq"
    " 1 (invariants, state hash), compare the newest snapshot with the replay, and check the"
    " ledger store (hash chain, every asset sums to zero, balances equal the replay's); a"
    " journal whose head was archived (`venue journal archive`) from the oldest snapshot it"
    " can use, or from seq 1 with --archive DIR. One"
    " line per check, `ok` or `FAIL` with what to do. Exit status: 0 every check ok; 1 a"
    " FAIL; 2 it could not check (no such directory, a file, a damaged journal, a running venue on"
    " the directory: stop it, or verify a copy). With --nats URLS: a cluster's journal stream"
    " instead, read-only, running or stopped (--data-dir: a core's, whose snapshots it checks;"
    " --postgres DSN, or a --sqlite core's --data-dir: the ledger store, checked against the"
    " replay;"
    ' docs/cluster.md, "Verifying the stream").'
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.add_argument(
        "--data-dir",
        type=directory,
        default=None,
        help="the venue's data directory (default: data); with --nats, a core's (its snapshots"
        " and, with no PostgreSQL store, its ledger.sqlite)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=Path("venue.toml"),
        help="the venue's config, for its rules (default: venue.toml)",
    )
    parser.add_argument(
        "--postgres",
        metavar="DSN",
        type=dsn,
        default=None,
        help="the PostgreSQL ledger store to check (default: the config's ledger_postgres)",
    )
    parser.add_argument(
        "--nats",
        metavar="URLS",
        default=None,
        help="a cluster's NATS servers: check its journal stream instead (docs/cluster.md)",
    )
    parser.add_argument(
        "--archive",
        metavar="DIR",
        type=directory,
        default=None,
        help="where `venue journal archive` moved the journal's head: replay from seq 1",
    )
    parser.add_argument(
        "--from-start",
        action="store_true",
        help="with --nats: replay from seq 1, not from the oldest snapshot in --data-dir",
    )


def run(args: argparse.Namespace) -> int:
    if args.nats is not None:
        return _run_cluster(args)
    if args.from_start:
        raise CommandFailed("--from-start is for --nats (a data directory replays from seq 1)")
    config = venue_config.load(args.config)
    lines = verify(args.data_dir or Path("data"), config, args.postgres, args.archive)
    for line in lines:
        print(line)
    return 1 if any(line.startswith("FAIL") for line in lines) else 0


def _run_cluster(args: argparse.Namespace) -> int:
    """`--nats`: the cluster's stream (nats-py imported only then)."""
    from cli.serve import check_nats_urls
    from core import cluster_verify

    check_nats_urls(args.nats, "--nats")
    return cluster_verify.run(args)


def verify(
    data_dir: Path,
    config: venue_config.VenueConfig,
    postgres_dsn: str | None = None,
    archive: Path | None = None,
) -> list[str]:
    """One line per check, each starting "ok" or "FAIL"; `CommandFailed` if it cannot start.
    `archive`: the directory the journal's head was archived to (replayed from seq 1)."""
    journal = _open_journal(data_dir)
    lines = []
    try:
        lines += [
            f"ok   removed {path.name}, left by a crash"
            for path in snapshots.remove_stray(data_dir)
        ]
        image, damaged, undecoded, good = _snapshots(data_dir)
        first = journal.first_seq()
        if first == 1 or archive is not None:
            ledger = Ledger()
            staleness_us = venue_config.reserve_staleness_max_us(config)
            venue = Venue(snapshots.first_rules(image, staleness_us), ledger)
            head = _archived(archive, first) if archive is not None else iter(())
            after = 0
        else:
            base = _oldest_usable(data_dir, good, first, damaged + undecoded)
            venue = venue_snapshot.restore(base.venue)
            assert venue.ledger is not None, "snapshots of this server always hold a ledger"
            ledger, head, after = venue.ledger, iter(()), base.seq
            del base  # restored: not held beside `image` through the replay
            lines.append(
                f"ok   journal: begins at seq {first} here (the segments before are archived):"
                f" checked from the snapshot at seq {after} (--archive DIR: from seq 1)"
            )
            if image is not None and image.seq == after:
                lines.append(f"ok   snapshot at seq {after}: the check starts from it")
        lines += [
            f"FAIL snapshot {name} is damaged: recovery skips it (it starts from the newest"
            f" good snapshot, or replays the whole journal); move it out of {data_dir}"
            for name in damaged
        ]
        lines += [
            f"FAIL snapshot {why}: recovery skips it (it starts from the newest good snapshot,"
            f" or replays the whole journal); move it out of {data_dir}"
            for why in undecoded
        ]
        records = 0
        last = journal.last_seq()
        # the archived head (if any) runs to the journal's first seq here
        replay = itertools.chain(head, journal.replay(max(after, first - 1)))
        bar = progress.bar(
            total=last - after, unit=" records", desc="verify: replaying the journal"
        )
        with bar:
            for seq, payload in replay:
                venue.execute(decode_record(seq, payload))
                records += 1
                if image is not None and seq == image.seq:
                    lines.append(_snapshot_check(venue, image))
                if not records % PROGRESS_EVERY:
                    bar.update(PROGRESS_EVERY)
            bar.update(records % PROGRESS_EVERY)
        torn = journal.recovered_tail_bytes
    finally:
        journal.close()
    since = f" from seq {after + 1}" if after else ""
    lines.insert(0, f"ok   journal: {records} records replayed{since}, last seq {last}")
    if torn:
        lines.insert(1, f"ok   journal: a torn tail of {torn} bytes (the server cuts it at start)")
    if image is None:
        if not damaged:
            lines.append("ok   snapshot: none yet (recovery replays the whole journal)")
    elif image.seq > last:
        lines.append(f"FAIL snapshot at seq {image.seq} is ahead of the journal ({last})")
    venue.check_invariants()
    lines.append(f"ok   replay: invariants hold, state {venue.state_hash()[:16]}")
    dsn = config.venue.ledger_postgres if postgres_dsn is None else postgres_dsn
    lines += _store_checks(data_dir, ledger, last, dsn)
    return lines


def _open_journal(data_dir: Path) -> FileJournal:
    """The journal, read-only; refuses a directory with nothing to verify or in use."""
    path = data_dir / JOURNAL_FILE
    if data_dir.exists() and not data_dir.is_dir():
        raise CommandFailed(
            f"{data_dir}: not a directory: nothing to verify (give the --data-dir a venue ran with)"
        )
    if not data_dir.is_dir():
        raise CommandFailed(f"{data_dir}: no such directory: nothing to verify")
    try:
        if (data_dir / LOCK_FILE).exists():  # held by any running venue, whatever its journal
            lock_data_dir(data_dir, shared=True).close()  # the journal's own lock covers the run
        found = segment_files(path)
        if not found or (found == [(1, path)] and path.stat().st_size == 0):
            raise CommandFailed(
                f"{data_dir}: no journal ({JOURNAL_FILE}), nothing to verify"
                " (give the --data-dir a venue ran with)"
            )
        return FileJournal(path, read_only=True)
    except JournalLocked:
        raise CommandFailed(
            f"{data_dir} is in use by a running venue: stop it first, or verify a copy"
        ) from None


def _snapshots(
    data_dir: Path,
) -> tuple[snapshots.Snapshot | None, list[str], list[str], list[Path]]:
    """The newest snapshot that reads (the one recovery starts from), the names
    of the damaged ones, newest first, for each whose per-account entries do not decode,
    why (`snapshots.check_entries`: the file's checksum holds, recovery passes it over as
    damaged, `snapshots.latest`), and the paths of the good ones (they read and decode),
    oldest first. Each older one is read to check it, then let go: at most two are held at
    once, not all (a long run's three 1.5 GB snapshots took 11 GB)."""
    newest: snapshots.Snapshot | None = None
    damaged: list[str] = []
    undecoded: list[str] = []
    good: list[Path] = []
    for path, snapshot in snapshots.survey(data_dir):
        if snapshot is None:
            damaged.append(path.name)
            continue
        try:
            snapshots.check_entries(snapshot)
        except msgspec.DecodeError as failure:  # (a ValidationError too)
            undecoded.append(str(failure))  # (naming the file, the map and the account)
        else:
            good.insert(0, path)
            newest = snapshot if newest is None else newest  # recovery passes the others over
        del snapshot  # not held while the next one is read
    return newest, damaged, undecoded, good


def _oldest_usable(
    data_dir: Path, good: list[Path], first_seq: int, unusable: list[str]
) -> snapshots.Snapshot:
    """The oldest good snapshot a journal beginning at `first_seq` follows on from; else
    `CommandFailed`, saying which snapshots are there but not good (`unusable`: the damaged
    ones' names, why the others' entries do not restore)."""
    for path in good:
        snapshot = snapshots.read(path)
        if snapshot is not None and snapshot.seq >= first_seq - 1:
            return snapshot
    not_good = f" (not good: {'; '.join(unusable)})" if unusable else ""
    raise CommandFailed(
        f"{data_dir}: the journal begins at seq {first_seq} (its head was archived) and no good"
        f" snapshot here is at or after seq {first_seq - 1}{not_good}: give --archive DIR,"
        " where `venue journal archive` moved the head"
    )


def _archived(archive: Path, first_seq: int) -> Iterator[tuple[int, bytes]]:
    """The records before `first_seq`, from the segments archived in `archive`, each checked
    whole before its records are given; `CommandFailed` if they do not run from seq 1 to it
    (an archive with no head at all, named as what it is: a wrong path, a file, the data
    directory, an empty directory)."""
    head_problem = _archive_head_problem(archive) if first_seq > 1 else None
    if head_problem is not None:
        raise CommandFailed(
            f"--archive {archive}: {head_problem}: give the directory where `venue journal"
            " archive` moved the head"
        )
    expected = 1
    for seq, path in segment_files(archive / JOURNAL_FILE):
        if seq >= first_seq:
            break
        if seq != expected:
            raise CommandFailed(f"{archive}: no archived segment from seq {expected}")
        try:
            segment = check_segment(path, seq)
        except JournalError as bad:
            raise CommandFailed(f"{archive}: {bad}") from None
        yield from segment_records(segment)
        expected = segment.last_seq + 1
    if expected != first_seq:
        raise CommandFailed(
            f"{archive}: its segments end at seq {expected - 1}, the journal in the data"
            f" directory begins at seq {first_seq}"
        )


def _archive_head_problem(archive: Path) -> str | None:
    """Why `archive` holds no archived head at all, or None: it is no directory, or no
    segment there begins at seq 1."""
    if not archive.exists():
        return "no such directory"
    if not archive.is_dir():
        return "not a directory"
    if not os.path.lexists(archive / JOURNAL_FILE):
        return f"no archived segment from seq 1 ({JOURNAL_FILE})"
    return None


def _snapshot_check(venue: Venue, image: snapshots.Snapshot) -> str:
    restored = venue_snapshot.restore(image.venue)
    if restored.state_hash() == venue.state_hash():
        return f"ok   snapshot at seq {image.seq} equals the replay at that seq"
    return f"FAIL snapshot at seq {image.seq} differs from the replay at that seq"


def _open_store(data_dir: Path, postgres_dsn: str) -> LedgerStore | str:
    """The store to check, or the FAIL line saying why it cannot be read."""
    if postgres_dsn:
        from settlement.pg_store import PostgresLedgerStore

        try:
            return PostgresLedgerStore(postgres_dsn, read_only=True)  # a check: reads only
        except (psycopg.Error, LedgerStoreError) as unreadable:
            return f"FAIL store: PostgreSQL: {' '.join(str(unreadable).split())}"
    path = data_dir / LEDGER_FILE
    if not path.is_file():
        return f"FAIL store: no ledger store at {path}; {_rebuild(data_dir)}"
    try:
        found = schema_problem(path)
        if found is not None:
            return f"FAIL store: {path}: {found}"
        return SqliteLedgerStore(path)
    except (sqlite3.DatabaseError, LedgerStoreError) as unreadable:
        return f"FAIL store: {path}: {unreadable}; {_rebuild(data_dir)}"


def _store_checks(
    data_dir: Path, ledger: Ledger, journal_seq: int, postgres_dsn: str = ""
) -> list[str]:
    store = _open_store(data_dir, postgres_dsn)
    if isinstance(store, str):
        return [store]
    try:
        problems = store.verify()
        stored_last = store.last_transfer_id()
        stored_balances = store.balances()
    finally:
        store.close()
    lines = [f"FAIL store: {problem}" for problem in problems]
    if not problems:
        lines.append(f"ok   store: {stored_last} transfers, hash chain intact, assets sum to 0")
    booked = {key: b.total for key, b in ledger.balances.items() if b.total}
    if stored_last > ledger.last_transfer_id:
        lines.append(
            f"FAIL store is ahead of the journal: it holds transfers up to {stored_last}, the"
            f" journal (last seq {journal_seq}) books only up to {ledger.last_transfer_id}."
            " The journal was truncated or restored from an older copy: put back the newer"
            f" journal if there is one; else, to trust this journal, {_rebuild(data_dir)}"
        )
    elif stored_last != ledger.last_transfer_id:
        lines.append(
            f"FAIL store holds transfers up to {stored_last}, the replay booked up to "
            f"{ledger.last_transfer_id} (the server catches up when it next starts: from"
            " the journal after the newest snapshot, or from the journal's start if the"
            " store lacks transfers booked before that snapshot)"
        )
    elif stored_balances != booked:
        lines.append("FAIL store balances differ from the replayed ledger")
    else:
        lines.append("ok   store: every balance equals the replayed ledger's")
    return lines


def _rebuild(data_dir: Path) -> str:
    """How to rebuild the store from the journal (derived data, always rebuildable)."""
    return (
        f"rebuild it from the journal: stop the venue, move {LEDGER_FILE}* and snapshot-*.bin"
        f" out of {data_dir}, put back any journal segments archived from it, and start it"
        " (it replays the journal from seq 1 into a new store)"
    )
