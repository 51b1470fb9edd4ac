"""`venue verify --nats URLS`: check a cluster's journal stream, one line per check.

Reads the JetStream stream (`VENUE_COMMANDS`) through an ephemeral pull consumer, as a core's
recovery does, and replays it with the cluster's record codec into a fresh venue: from seq 1
(`--from-start`), or from the oldest good snapshot in a core's `--data-dir`. Every snapshot
of that directory the replay passes is compared with the replay's state at its seq (state
hash), and the last seq and the state hash at the stream's end are reported. Read-only:
nothing is published to the stream, no KV bucket is opened, no snapshot file is touched
(a half-written `.tmp` is the core's to remove), so it runs while the cluster runs (it
replays what was acknowledged when it started) or is stopped. The ledger store is checked
against the replay with `--postgres DSN` (or the config's `ledger_postgres`; since session
32), else a `--sqlite` core's `ledger.sqlite` in `--data-dir` (since session 33): its
transfers up to the last it had booked when the check began, read before the stream, one
by one against those the replay books (`StoreCheck`; those before a snapshot summed by the
database, against the snapshot's balances), its own checks (hash chain, assets summing to
zero), and its balances against the replay's when the replay booked no more; read-only too
(a read-only session, no schema made; a SQLite store SQLite cannot open is `not checked`,
the rest checked still). Exits 1 on a FAIL line (a damaged store too); 2 when it cannot
check (NATS or a store unreadable, before or during the check, no stream or store, a
record that is not a cluster's).
"""

import argparse
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

from cli import progress
from cli.failures import CommandFailed
from core import config as venue_config
from core import snapshots
from core.jetstream_journal import STREAM_DEFAULT, JetStreamJournal
from core.journal import JournalError
from core.nats_bus import ClusterCodec
from core.sequencer import decode_record
from core.venue_core import LEDGER_FILE
from engine import snapshot as venue_snapshot
from engine.venue import Venue
from settlement.ledger import Ledger
from settlement.store import LedgerStore, LedgerStoreError, SqliteLedgerStore, has_wal
from settlement.transfers import Transfer

PROGRESS_EVERY = 4_096  # records between two moves of the bar


def run(args: argparse.Namespace) -> int:
    config = venue_config.load(args.config)
    dsn = config.venue.ledger_postgres if args.postgres is None else args.postgres
    lines = verify_stream(args.nats, args.data_dir, config, from_start=args.from_start, dsn=dsn)
    for line in lines:
        print(line)
    return 1 if any(line.startswith("FAIL") for line in lines) else 0


def verify_stream(
    servers: str,
    data_dir: Path | None,
    config: venue_config.VenueConfig,
    *,
    from_start: bool = False,
    dsn: str = "",
) -> list[str]:
    """One line per check, each "ok" or "FAIL"; `CommandFailed` if it cannot check. With
    `dsn`, the PostgreSQL ledger store there checked against the replay too; without, the
    SQLite one in `data_dir` if there is one."""
    # Read before the stream is opened: a core writes a snapshot once its records are
    # acknowledged, so on a running cluster none is past the end the replay will reach.
    found, damaged = _snapshots(data_dir)
    opened = _open_store(dsn, data_dir)  # before the stream, for the same reason
    store, unchecked = (None, [opened]) if isinstance(opened, str) else (opened, [])
    unreadable_errors = () if store is None else store.errors
    try:
        return _verify(servers, data_dir, config, from_start, found, damaged, store) + unchecked
    except unreadable_errors as unreadable:  # opened, then lost (PostgreSQL stopped)
        assert store is not None, "only a store's errors are caught"
        raise CommandFailed(f"cannot read {store.name}: {_one_line(unreadable)}") from None
    finally:
        if store is not None:
            store.close()


@dataclass(frozen=True)
class FoundSnapshot:
    """A good snapshot of the core's directory: its seq and its file, read again when it is
    replayed from or checked, then let go (held all at once, a long run's three snapshots
    of 1.5 GB took 11 GB of memory, as `venue verify`'s did)."""

    seq: int
    path: Path


def _verify(
    servers: str,
    data_dir: Path | None,
    config: venue_config.VenueConfig,
    from_start: bool,
    found: list[FoundSnapshot],
    damaged: list[str],
    store: "StoreCheck | None",
) -> list[str]:
    lines = damaged_lines(damaged, data_dir)
    start = None if from_start or not found else found[0]
    try:
        journal = JetStreamJournal(servers, create=False)
    except JournalError as unreadable:
        raise CommandFailed(f"cannot read the journal stream: {unreadable}") from None
    try:
        last = journal.last_seq()
        lines += _replay(journal, start, found, config, store)
    except JournalError as unreadable:
        raise CommandFailed(f"stream {STREAM_DEFAULT}: {unreadable}") from None
    finally:
        journal.close()
    lines += [
        f"FAIL snapshot at seq {snapshot.seq} is ahead of the stream (last seq {last}): it is"
        " another cluster's, or the stream was replaced; a core would refuse to start on it"
        for snapshot in found
        if snapshot.seq > last
    ]
    if data_dir is None:
        lines.append("ok   snapshot: none checked (give a core's --data-dir to check its own)")
    elif not found and not damaged:
        lines.append(f"ok   snapshot: none in {data_dir} (a core there replays the whole stream)")
    return lines


def _replay(
    journal: JetStreamJournal,
    start: FoundSnapshot | None,
    found: list[FoundSnapshot],
    config: venue_config.VenueConfig,
    store: "StoreCheck | None" = None,
) -> list[str]:
    """Replay the stream after `start` (None: from seq 1), checking each of `found` on the
    way, and `store` against the transfers it books; the lines, the first naming what was
    read."""
    if start is None:
        staleness_us = venue_config.reserve_staleness_max_us(config)
        venue = Venue(snapshots.first_rules(None, staleness_us), Ledger())
        after, origin = 0, "from seq 1"
    else:
        venue = venue_snapshot.restore(_read_again(start).venue)  # its image let go at once
        after, origin = start.seq, f"from the snapshot at seq {start.seq}"
    ledger = venue.ledger
    assert ledger is not None, "a cluster's venue settles"
    if store is not None:
        store.start(ledger)
    due = {snapshot.seq: snapshot for snapshot in found if snapshot.seq > after}
    lines, codec, records, done = [], ClusterCodec(), 0, after
    last = journal.last_seq()
    with progress.bar(total=last - after, unit=" records", desc="verify: replaying") as bar:
        for seq, payload in journal.replay(after):
            command = decode_record(seq, payload, codec)  # not a cluster's: cannot check
            try:
                venue.execute(command)
            except Exception as failure:  # the state it ran on is not the one it was sequenced on
                lines.append(_unexecutable(seq, start, failure))
                break
            booked = ledger.drain()  # compared as they come, not kept: memory stays flat
            if store is not None and booked:
                store.compare(booked)
            records, done = records + 1, seq
            if seq in due:
                lines.append(_snapshot_check(venue, due[seq]))
            if not records % PROGRESS_EVERY:
                bar.update(PROGRESS_EVERY)
        bar.update(records % PROGRESS_EVERY)
    head = f"ok   stream {journal.stream}: {records} records replayed {origin}, last seq {done}"
    if done != last:
        return [head.replace("ok  ", "FAIL", 1) + f" of {last}", *lines]
    venue.check_invariants()
    replayed = f"ok   replay: invariants hold, state {venue.state_hash()} at seq {done}"
    stored = [] if store is None else store.finish(ledger)
    return [head, *lines, replayed, *stored]


def _unexecutable(seq: int, start: FoundSnapshot | None, failure: Exception) -> str:
    """The FAIL line of a record the replay cannot execute."""
    state = "the replay's state" if start is None else f"the snapshot at seq {start.seq}'s state"
    cause = (
        "that snapshot is not the state the stream reached there: move it out, or"
        " replay with --from-start"
        if start is not None
        else "the stream's commands do not replay on this build: a bug, report it"
    )
    return f"FAIL record {seq} does not execute on {state} ({failure!r}): {cause}"


def _snapshots(data_dir: Path | None) -> tuple[list[FoundSnapshot], list[str]]:
    """The good snapshots in `data_dir`, oldest first, and what is wrong with each damaged one
    (`NAME is damaged`, or the path and the entry that does not restore). Each is
    read to check it, then let go: one held at a time, not all."""
    if data_dir is None:
        return [], []
    if not data_dir.is_dir():
        raise CommandFailed(f"{data_dir}: no such directory (give a core's --data-dir)")
    good, damaged = [], []
    for path, image in snapshots.survey(data_dir):
        if image is None:
            damaged.append(f"{path.name} is damaged")
        elif (undecoded := _undecoded(image)) is not None:  # passed over as damaged: a core's
            damaged.append(undecoded)  # recovery does (stream_snapshots); it names the file
        else:
            good.append(FoundSnapshot(image.seq, path))
        del image  # not held while the next one is read
    return sorted(good, key=lambda snapshot: snapshot.seq), damaged


def damaged_lines(damaged: list[str], data_dir: Path | None) -> list[str]:
    """A FAIL line for each damaged snapshot (`_snapshots`: what is wrong with it), one
    sentence: what, that recovery passes it over, what to do."""
    return [
        f"FAIL snapshot {what}: a core's recovery skips it (it starts from the newest good"
        f" snapshot, or replays the whole stream); move it out of {data_dir}"
        for what in damaged
    ]


def _undecoded(image: snapshots.Snapshot) -> str | None:
    """Why a per-account entry of `image` does not decode (`snapshots.check_entries`), or
    None when each does."""
    try:
        snapshots.check_entries(image)
    except msgspec.DecodeError as failure:  # (a ValidationError too)
        return str(failure)
    return None


def _read_again(found: FoundSnapshot) -> snapshots.Snapshot:
    """The snapshot `found` names, read again; `CommandFailed` if it is gone or changed (a
    running core keeps its newest three: run verify again)."""
    try:
        image = snapshots.read(found.path)
    except FileNotFoundError:
        image = None
    if image is None or image.seq != found.seq:
        raise CommandFailed(
            f"{found.path}: removed or changed while verify ran (a running core keeps its"
            " newest snapshots only): run verify again"
        )
    return image


def _snapshot_check(venue: Venue, found: FoundSnapshot) -> str:
    restored = venue_snapshot.restore(_read_again(found).venue).state_hash()  # then let go
    if restored == venue.state_hash():
        return f"ok   snapshot at seq {found.seq} equals the replay at that seq"
    return (
        f"FAIL snapshot at seq {found.seq} differs from the replay at that seq (state"
        f" {restored[:16]}, the replay's {venue.state_hash()[:16]}): the core"
        " that wrote it executed the stream otherwise (another build?); a core that"
        " recovers from it carries that state on: move it out so recovery replays the stream"
    )


def _open_store(dsn: str, data_dir: Path | None) -> "StoreCheck | str":
    """The ledger store to check, read-only, with its last transfer: the PostgreSQL one at
    `dsn`, else the SQLite one in `data_dir` (a `--sqlite` cluster's core's, since session
    33); else the line saying why none is checked (none there, or SQLite cannot open it:
    the stream and the snapshots are checked still); `CommandFailed` (cannot check) if
    PostgreSQL cannot be read, or the file holds no store this build reads."""
    if dsn:
        return _open_postgres(dsn)
    if data_dir is None:
        return "ok   store: none checked (give --postgres, or a --sqlite core's --data-dir)"
    path = data_dir / LEDGER_FILE
    if not (path.exists() or path.is_symlink()):  # a dangling link: refused
        return f"ok   store: none checked (no {LEDGER_FILE} in {data_dir}; --postgres names one)"
    name = f"the SQLite ledger store {path}"
    try:
        store = SqliteLedgerStore(path, read_only=True)
    except sqlite3.OperationalError as unopened:  # no access, or no -shm can be made for its -wal
        return f"ok   store: not checked ({_unopened(name, path, unopened)})"
    except (sqlite3.Error, LedgerStoreError) as unreadable:
        raise CommandFailed(f"cannot read {name}: {_one_line(unreadable)}") from None
    return _with_last(StoreCheck(store, 0, name, (sqlite3.Error, LedgerStoreError)))


def _unopened(name: str, path: Path, error: sqlite3.OperationalError) -> str:
    """Why SQLite could not open the store at `path`, and what lets it."""
    why = f"cannot open {name}: {_one_line(error)}"
    if has_wal(path.resolve()):  # beside the file a link leads to, as SQLite keeps it
        return (
            f"{why}; its -wal is there (a core has it open, or stopped without closing it),"
            f" which SQLite reads only with a -shm it can write beside it: check as a user"
            f" that can write {path.parent}, or once the core has closed it"
        )
    return f"{why}; check as a user that can read it"


def _open_postgres(dsn: str) -> "StoreCheck":
    import psycopg

    from settlement.pg_store import PostgresLedgerStore

    name, errors = "the PostgreSQL ledger store", (psycopg.Error, LedgerStoreError)
    try:
        store = PostgresLedgerStore(dsn, read_only=True)
    except errors as unreadable:
        raise CommandFailed(f"cannot read {name}: {_one_line(unreadable)}") from None
    return _with_last(StoreCheck(store, 0, name, errors))


def _with_last(check: "StoreCheck") -> "StoreCheck":
    """`check` with its store's last transfer read (closed if that fails)."""
    try:
        check.stored_last = check.store.last_transfer_id()
    except check.errors as unreadable:
        check.close()
        raise CommandFailed(f"cannot read {check.name}: {_one_line(unreadable)}") from None
    return check


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


class StoreCheck:
    """The ledger store's transfers up to `stored_last` (its last when the check began, read
    before the stream: every one of them is from a record the stream holds, so the replay
    reaches it), each against the one the replay books under its id; and the sums of them
    all, for the balances. Reads the store's transfers as the replay goes, in pages (never
    all at once); those before a snapshot the replay starts from are summed by the database
    (`sum_through`; until session 33 read one by one). `name` says which store it is in
    errors, `errors` what its driver raises when it cannot be read."""

    def __init__(
        self,
        store: LedgerStore,
        stored_last: int,
        name: str = "the PostgreSQL ledger store",
        errors: tuple[type[Exception], ...] = (LedgerStoreError,),
    ) -> None:
        self.store = store
        self.stored_last = stored_last
        self.name = name
        self.errors = errors
        self.stored: Iterator[Transfer] = iter(())  # from `start`, after the snapshot's
        self.balances: dict[tuple[int, str], int] = {}  # of the store's transfers read
        self.first_compared = 0  # the first transfer compared (0: none yet)
        self.compared_last = 0
        self.difference: str | None = None  # the first transfer that differs, in words

    def close(self) -> None:
        self.store.close()

    def start(self, ledger: Ledger) -> None:
        """The replay books after `ledger`'s last transfer (a snapshot's): the store's
        transfers up to it are summed by the database, and, when the store holds them all,
        their balances compared with the snapshot's (nothing else checks those transfers)."""
        replay_last = ledger.last_transfer_id
        through = min(replay_last, self.stored_last)
        self.stored = self.store.iter_transfers(after_id=through)
        if not through:
            return
        summed = self.store.sum_through(through)
        if summed.unknown_kind is not None:  # as `transfer_of` would have refused to read it
            transfer_id, kind = summed.unknown_kind
            self.difference = _unreadable(transfer_id - 1, f"{kind!r} is not a valid TransferKind")
            return
        if summed.last_id < through:  # damaged: a transfer its batches name is not there
            self.difference = (
                _missing(summed.last_id + 1, self.stored_last)
                if through < self.stored_last  # more follow: a gap, not the end
                else _ended(summed.last_id, self.stored_last)
            )
            return
        self.balances, self.compared_last = dict(summed.balances), through
        if through == replay_last and self._balances() != _totals(ledger):
            self.difference = (
                f"FAIL store balances at transfer {replay_last} differ from the snapshot's:"
                " the store was booked from another stream, or damaged"
            )

    def compare(self, booked: list[Transfer]) -> None:
        for transfer in booked:
            if self.difference is not None or transfer.transfer_id > self.stored_last:
                return
            stored = self._next_stored()
            if stored is None:  # (`difference` says why)
                return
            if stored.transfer_id != transfer.transfer_id:  # a later one: the replay's not there
                self.difference = _missing(transfer.transfer_id, self.stored_last)
                return
            if stored != transfer:
                self.difference = (
                    f"FAIL store: transfer {transfer.transfer_id} is not the one the replay"
                    f" books ({_described(stored)}; the replay's: {_described(transfer)}):"
                    " the store was booked from another stream, or damaged"
                )
                return
            self.first_compared = self.first_compared or transfer.transfer_id

    def _next_stored(self) -> Transfer | None:
        """The store's next transfer, summed; None, the `difference` saying why, when there
        is none up to `stored_last`, or it cannot be read."""
        try:
            stored = next(self.stored, None)
        except ValueError as undecodable:  # `transfer_of`: a kind this build does not know
            self.difference = _unreadable(self.compared_last, str(undecodable))
            return None
        if stored is None:
            self.difference = _ended(self.compared_last, self.stored_last)
            return None
        self.compared_last = stored.transfer_id
        for account, sign in ((stored.credit_account, 1), (stored.debit_account, -1)):
            key = (account, stored.asset)
            self.balances[key] = self.balances.get(key, 0) + sign * stored.amount
        return stored

    def finish(self, ledger: Ledger) -> list[str]:
        """The store's lines, once the replay is done (`ledger` its ledger at the end)."""
        problems = self.store.verify()
        lines = [f"FAIL store: {problem}" for problem in problems]
        if not problems:
            lines.append("ok   store: hash chain intact, every asset sums to 0")
        stored_last, booked_last = self.stored_last, ledger.last_transfer_id
        if self.difference is not None:
            return [*lines, self.difference]
        if stored_last > booked_last:
            return [
                *lines,
                f"FAIL store is ahead of the stream: it holds transfers up to {stored_last},"
                f" the replay books only up to {booked_last}: it is another venue's store,"
                " or the stream was replaced",
            ]
        if self.first_compared:
            lines.append(
                f"ok   store: transfers {self.first_compared} to {stored_last} equal the"
                " replay's, one by one"
            )
        if stored_last < booked_last:
            lines.append(
                f"ok   store: booked up to transfer {stored_last} when the check began, the"
                f" replay up to {booked_last} (the active core books the rest as it goes; a"
                " core catches the store up when it starts): balances not compared"
            )
            return lines
        if self._balances() != _totals(ledger):
            return [*lines, "FAIL store balances differ from the replay's"]
        return [*lines, f"ok   store: every balance equals the replay's at transfer {stored_last}"]

    def _balances(self) -> dict[tuple[int, str], int]:
        """The sums of the store's transfers read so far, but the zeros."""
        return {key: amount for key, amount in self.balances.items() if amount}


def _unreadable(after_id: int, why: str) -> str:
    return (
        f"FAIL store: the transfer after {after_id} cannot be read ({why}): the store is"
        " damaged, or written by a later build"
    )


def _ended(last_id: int, stored_last: int) -> str:
    return (
        f"FAIL store: its transfers end at {last_id}, its batches say {stored_last}: the store"
        " is damaged"
    )


def _missing(transfer_id: int, stored_last: int) -> str:
    return (
        f"FAIL store: transfer {transfer_id} is missing (its batches say it holds transfers up"
        f" to {stored_last}): the store is damaged"
    )


def _totals(ledger: Ledger) -> dict[tuple[int, str], int]:
    """`ledger`'s balances (available and held), but the zeros: as the store sums them."""
    return {key: balance.total for key, balance in ledger.balances.items() if balance.total}


def _described(transfer: Transfer | None) -> str:
    if transfer is None:
        return "none"
    return (
        f"{transfer.amount} {transfer.asset} from {transfer.debit_account} to"
        f" {transfer.credit_account}, {transfer.kind}, chain {transfer.chain_id}"
    )
