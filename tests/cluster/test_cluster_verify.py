"""`venue verify --nats`: a cluster's stream replayed and checked against a core's snapshots,
read-only, on a real nats-server (one node: a small stream)."""

import asyncio
import shutil
import sqlite3
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import msgspec
import nats
import psycopg
import pytest

from cli.main import main as venue_cli
from cluster.nats import NatsCluster
from cluster.postgres import PostgresServer
from core import cluster_verify, snapshots
from core import config as venue_config
from core.cluster_verify import verify_stream
from core.jetstream_journal import JetStreamJournal, JournalStreamMissing
from core.journal import FileJournal
from core.nats_bus import ClusterCodec
from core.sequencer import Executed, decode_record
from engine import snapshot as venue_snapshot
from engine.venue import Venue as EngineVenue
from gateway.server import JOURNAL_FILE, LEDGER_FILE
from settlement.ledger import Ledger
from settlement.pg_store import PostgresLedgerStore
from settlement.store import SqliteLedgerStore
from settlement.transfers import Transfer
from tests.conftest import start_venue, with_an_entry_not_decoding
from tests.sample_config import SAMPLE_CONFIG

SYMBOL = "AAPLx-USD"
# a bound on one check of the small stream (done in about a second): past it, it loops
VERIFY_BOUND_S = 60.0


def trade_in_one_process(data_dir: Path) -> None:
    """A venue session with a trade: its journal becomes the stream, its snapshot a core's."""

    async def scenario() -> None:
        venue = await start_venue(data_dir)
        alpha = await venue.client("alpha")
        taker = await venue.client("taker")
        await alpha.place(SYMBOL, "sell", "1", "187.30")
        await taker.place(SYMBOL, "buy", "0.4", "187.30", tif="ioc")
        await alpha.close()
        await taker.close()
        await venue.server.stop()

    asyncio.run(scenario())


def publish_as_cluster_records(data_dir: Path, url: str) -> int:
    """The file journal's commands written to the stream as a core writes them; the last seq."""
    codec, records = ClusterCodec(), []
    journal = FileJournal(data_dir / JOURNAL_FILE, read_only=True)
    for seq, payload in journal.replay():
        records.append((seq, codec.encode(Executed(seq, decode_record(seq, payload), [], None))))
    journal.close()
    stream = JetStreamJournal(url)
    stream.commit(records)
    stream.close()
    return records[-1][0]


def stream_last_seq(url: str) -> int:
    stream = JetStreamJournal(url, create=False)
    try:
        return stream.last_seq()
    finally:
        stream.close()


@pytest.fixture
def cluster_with_core_dir(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A NATS node holding a small stream, a core's data directory with its snapshot at the
    stream's end, and that last seq."""
    data_dir, core_dir = tmp_path / "data", tmp_path / "core-a"
    trade_in_one_process(data_dir)
    core_dir.mkdir()
    for snapshot in data_dir.glob("snapshot-*.bin"):
        shutil.copy(snapshot, core_dir)
    with NatsCluster(tmp_path / "nats", size=1) as cluster:
        yield cluster.url, core_dir, publish_as_cluster_records(data_dir, cluster.url)


def test_a_sound_stream_passes_from_the_start_and_from_a_snapshot(
    cluster_with_core_dir: tuple[str, Path, int],
) -> None:
    url, core_dir, last = cluster_with_core_dir
    config = venue_config.load(SAMPLE_CONFIG)
    image = snapshots.latest(core_dir)
    assert image is not None and image.seq == last
    lines = verify_stream(url, core_dir, config, from_start=True)
    assert all(line.startswith("ok") for line in lines), lines
    assert f"{last} records replayed from seq 1, last seq {last}" in lines[0]
    assert f"ok   snapshot at seq {last} equals the replay at that seq" in lines
    final_hash = venue_snapshot.restore(image.venue).state_hash()
    assert f"ok   replay: invariants hold, state {final_hash} at seq {last}" in lines
    lines = verify_stream(url, core_dir, config)  # from the snapshot: nothing after it
    assert all(line.startswith("ok") for line in lines), lines
    assert f"0 records replayed from the snapshot at seq {last}" in lines[0]
    assert f"ok   replay: invariants hold, state {final_hash} at seq {last}" in lines
    assert venue_cli(["verify", "--nats", url, "--data-dir", str(core_dir)]) == 0
    assert stream_last_seq(url) == last  # nothing written
    assert asyncio.run(stream_names(url)) == ["VENUE_COMMANDS"]  # no KV bucket made


def test_verify_holds_one_snapshot_at_a_time(
    cluster_with_core_dir: tuple[str, Path, int],
) -> None:
    """The review of the soak: `venue verify --nats` still read every snapshot first and
    held them all through the replay (`venue verify`'s fix was not applied here). Now each
    is read to survey it, let go, and read again when replayed from or checked: about two
    snapshots' bulk at once (four with three held), as tracemalloc counts it."""
    url, core_dir, last = cluster_with_core_dir
    final = snapshots.latest(core_dir)
    assert final is not None and last > 3
    padding = 8 * 2**20  # each snapshot's bulk, far above the venue's own few hundred KB
    for seq in (2, 3, last):  # the older two hold the final state: their checks fail
        gateway = final.gateway | {"padding": bytes(padding)}  # verify reads no gateway part
        snapshots.write(core_dir, msgspec.structs.replace(final, seq=seq, gateway=gateway))
    assert len(list(core_dir.glob("snapshot-*.bin"))) == 3
    config = venue_config.load(SAMPLE_CONFIG)
    tracemalloc.start()
    try:
        lines = verify_stream(url, core_dir, config, from_start=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert f"ok   snapshot at seq {last} equals the replay at that seq" in lines, lines
    assert sum(line.startswith("FAIL snapshot at seq") for line in lines) == 2, lines
    assert peak < 3 * padding, f"{peak / padding:.1f} snapshots' bulk at once"


async def stream_names(url: str) -> list[str]:
    nc = await nats.connect(url)
    try:
        return sorted(info.config.name or "" for info in await nc.jetstream().streams_info())
    finally:
        await nc.close()


def test_a_snapshot_whose_state_differs_from_the_stream_fails_in_words(
    cluster_with_core_dir: tuple[str, Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    """A snapshot written by hand at seq 2 holding the stream's final state: its hash is not
    the replay's at seq 2 (from the start), and record 3 does not execute on it (from it, the
    oldest snapshot): each a FAIL line in words, exit 1; nothing is written to the stream."""
    url, core_dir, last = cluster_with_core_dir
    config = venue_config.load(SAMPLE_CONFIG)
    final = snapshots.latest(core_dir)
    assert final is not None and last > 2
    snapshots.write(core_dir, msgspec.structs.replace(final, seq=2))
    lines = verify_stream(url, core_dir, config, from_start=True)
    failed = [line for line in lines if line.startswith("FAIL")]
    assert len(failed) == 1 and failed[0].startswith(
        "FAIL snapshot at seq 2 differs from the replay at that seq"
    ), lines
    assert f"ok   snapshot at seq {last} equals the replay at that seq" in lines
    capsys.readouterr()
    assert venue_cli(["verify", "--nats", url, "--data-dir", str(core_dir)]) == 1
    out = capsys.readouterr().out
    assert "FAIL stream VENUE_COMMANDS: 0 records replayed from the snapshot at seq 2" in out
    assert "FAIL record 3 does not execute on the snapshot at seq 2's state" in out
    assert stream_last_seq(url) == last


def test_no_stream_or_no_nats_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with NatsCluster(tmp_path / "nats", size=1) as cluster:
        assert venue_cli(["verify", "--nats", cluster.url, "--from-start"]) == 2
        assert "stream VENUE_COMMANDS does not exist" in capsys.readouterr().err
        assert stream_missing(cluster.url)  # verify did not create it
    assert venue_cli(["verify", "--nats", "nats//127.0.0.1:1"]) == 2
    assert "--nats" in capsys.readouterr().err


def stream_missing(url: str) -> bool:
    try:
        stream_last_seq(url)
    except JournalStreamMissing:
        return True
    return False


def test_a_damaged_snapshot_and_one_ahead_of_the_stream_are_named(
    cluster_with_core_dir: tuple[str, Path, int],
) -> None:
    url, core_dir, last = cluster_with_core_dir
    final = snapshots.latest(core_dir)
    assert final is not None
    snapshots.write(core_dir, msgspec.structs.replace(final, seq=last + 5))
    damaged = snapshots.path_for(core_dir, 3)
    damaged.write_bytes(b"TVSNAP01 not a snapshot")
    before = sorted((path.name, path.read_bytes()) for path in core_dir.iterdir())
    lines = verify_stream(url, core_dir, venue_config.load(SAMPLE_CONFIG))
    failed = [line for line in lines if line.startswith("FAIL")]
    assert len(failed) == 2, lines
    assert failed[0].startswith(f"FAIL snapshot {damaged.name} is damaged")
    assert failed[1].startswith(f"FAIL snapshot at seq {last + 5} is ahead of the stream")
    assert f"ok   snapshot at seq {last} equals the replay at that seq" not in lines  # the start
    assert sorted((path.name, path.read_bytes()) for path in core_dir.iterdir()) == before


def test_a_stream_of_one_process_venue_records_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`venue serve --nats` writes the bare command: not a cluster's record, exit 2."""
    data_dir = tmp_path / "data"
    trade_in_one_process(data_dir)
    journal = FileJournal(data_dir / JOURNAL_FILE, read_only=True)
    records = list(journal.replay())
    journal.close()
    with NatsCluster(tmp_path / "nats", size=1) as cluster:
        stream = JetStreamJournal(cluster.url)
        stream.commit(records)
        stream.close()
        assert venue_cli(["verify", "--nats", cluster.url, "--from-start"]) == 2
        assert "journal record 1 is not a cluster's record" in capsys.readouterr().err


# ----------------------------------------------------------------- the ledger store (--postgres)


def store_in_postgres(
    data_dir: Path,
    server: PostgresServer,
    name: str,
    change: Callable[[list[Transfer]], list[Transfer]] = list,
) -> str:
    """A PostgreSQL ledger store (database `name`) holding the one-process venue's booked
    transfers as `change` leaves them, as a core books them; its DSN."""
    booked = read_booked(data_dir)
    dsn = server.create_database(name)
    book_into(PostgresLedgerStore(dsn), booked, change)
    return dsn


Booked = tuple[list[Transfer], dict[str, int], dict[int, str]]


def read_booked(data_dir: Path) -> Booked:
    """The one-process venue's booked transfers, its assets and its accounts."""
    source = SqliteLedgerStore(data_dir / LEDGER_FILE)
    transfers, assets, accounts = list(source.iter_transfers()), source.assets(), source.accounts()
    source.close()
    return transfers, assets, accounts


def book_into(
    store: SqliteLedgerStore | PostgresLedgerStore,
    booked: Booked,
    change: Callable[[list[Transfer]], list[Transfer]],
) -> None:
    """Book `booked` into `store` (then closed), its transfers as `change` leaves them, as a
    core books them."""
    transfers, assets, accounts = booked
    for code, scale in assets.items():
        store.register_asset(code, scale)
    for account, account_name in accounts.items():
        store.register_account(account, account_name)
    assert store.append_batch(change(transfers))
    store.close()


def test_the_postgres_ledger_store_is_checked_against_the_replay(
    cluster_with_core_dir: tuple[str, Path, int],
    postgres_server: PostgresServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The finding of session 31: `venue verify --nats` checked no ledger store (`--postgres`
    was refused with it). Now the store's transfers, up to its last, against those the replay
    books, one by one, and the balances: a sound store passes, from seq 1 and from a
    snapshot; one a core has not caught up yet passes, saying so; one whose transfer differs
    from the replay's, or that holds a transfer the stream never booked, FAILs in words
    (exit 1); nothing is written to the store."""
    url, core_dir, _ = cluster_with_core_dir
    data_dir = core_dir.parent / "data"
    config = venue_config.load(SAMPLE_CONFIG)
    sound = store_in_postgres(data_dir, postgres_server, "verify_sound")
    lines = verify_stream(url, core_dir, config, from_start=True, dsn=sound)
    assert all(line.startswith("ok") for line in lines), lines
    booked = int(lines[-1].rpartition(" ")[2])
    assert lines[-3:] == [
        "ok   store: hash chain intact, every asset sums to 0",
        f"ok   store: transfers 1 to {booked} equal the replay's, one by one",
        f"ok   store: every balance equals the replay's at transfer {booked}",
    ]
    lines = verify_stream(url, core_dir, config, dsn=sound)  # from the snapshot at the end
    assert lines[-1] == f"ok   store: every balance equals the replay's at transfer {booked}"
    assert venue_cli(["verify", "--nats", url, "--postgres", sound, "--from-start"]) == 0

    behind = store_in_postgres(data_dir, postgres_server, "verify_behind", lambda t: t[:-1])
    lines = verify_stream(url, None, config, dsn=behind)
    assert all(line.startswith("ok") for line in lines), lines
    assert f"booked up to transfer {booked - 1} when the check began" in lines[-2]

    def later(transfers: list[Transfer]) -> list[Transfer]:
        last = transfers[-1]
        return [*transfers[:-1], msgspec.structs.replace(last, ts_us=last.ts_us + 1)]

    differs = store_in_postgres(data_dir, postgres_server, "verify_differs", later)
    capsys.readouterr()
    assert venue_cli(["verify", "--nats", url, "--postgres", differs, "--from-start"]) == 1
    out = capsys.readouterr().out
    assert f"FAIL store: transfer {booked} is not the one the replay books" in out

    def more(transfers: list[Transfer]) -> list[Transfer]:
        last = transfers[-1]
        back = msgspec.structs.replace(
            last,
            transfer_id=last.transfer_id + 1,
            chain_id=last.transfer_id + 1,
            debit_account=last.credit_account,
            credit_account=last.debit_account,
        )
        return [*transfers, back]

    ahead = store_in_postgres(data_dir, postgres_server, "verify_ahead", more)
    lines = verify_stream(url, None, config, dsn=ahead)
    assert [line for line in lines if line.startswith("FAIL")] == [
        f"FAIL store is ahead of the stream: it holds transfers up to {booked + 1}, the replay"
        f" books only up to {booked}: it is another venue's store, or the stream was replaced"
    ]
    store = PostgresLedgerStore(sound)
    assert store.last_transfer_id() == booked  # read only
    store.close()


def test_a_ledger_store_it_cannot_read_is_refused_in_one_line(
    cluster_with_core_dir: tuple[str, Path, int],
    postgres_server: PostgresServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Exit 2, as for a stream it cannot read: PostgreSQL not answering, or a database with
    no ledger store, which the check does not make one of."""
    url, _, _ = cluster_with_core_dir
    nobody = "postgresql://venue@127.0.0.1:1/ledger?connect_timeout=2"
    assert venue_cli(["verify", "--nats", url, "--postgres", nobody]) == 2
    assert "cannot read the PostgreSQL ledger store" in capsys.readouterr().err
    empty = postgres_server.create_database("verify_empty")
    assert venue_cli(["verify", "--nats", url, "--postgres", empty]) == 2
    assert "no ledger store in this database" in capsys.readouterr().err
    with psycopg.connect(empty) as connection:
        made = connection.execute("SELECT to_regclass('ledger_schema')").fetchone()
    assert made == (None,)  # no schema made


def store_in_sqlite(
    data_dir: Path, core_dir: Path, change: Callable[[list[Transfer]], list[Transfer]] = list
) -> Path:
    """The one-process venue's booked transfers, as `change` leaves them, in a SQLite ledger
    store in `core_dir` (replacing any), as a `venue cluster --sqlite` core books them."""
    booked = read_booked(data_dir)
    path = core_dir / LEDGER_FILE
    for old in core_dir.glob(f"{LEDGER_FILE}*"):
        old.unlink()
    book_into(SqliteLedgerStore(path), booked, change)
    return path


def test_a_sqlite_cluster_core_s_ledger_store_is_checked_from_its_data_dir(
    cluster_with_core_dir: tuple[str, Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    """Session 32 left it to `venue ledger verify`, which checks the store alone: `venue
    verify --nats --data-dir CORE` checked a `--sqlite` core's snapshots, not its store. Now
    its ledger.sqlite is checked against the replay as a PostgreSQL store is, read-only: a
    sound one passes (from seq 1 and from the snapshot), one that differs FAILs (exit 1), a
    file that is no store is refused in one line (exit 2) and left as it was."""
    url, core_dir, _ = cluster_with_core_dir
    data_dir = core_dir.parent / "data"
    config = venue_config.load(SAMPLE_CONFIG)
    path = store_in_sqlite(data_dir, core_dir)
    written = path.read_bytes()
    lines = verify_stream(url, core_dir, config, from_start=True)
    assert all(line.startswith("ok") for line in lines), lines
    booked = int(lines[-1].rpartition(" ")[2])
    assert lines[-3:] == [
        "ok   store: hash chain intact, every asset sums to 0",
        f"ok   store: transfers 1 to {booked} equal the replay's, one by one",
        f"ok   store: every balance equals the replay's at transfer {booked}",
    ]
    assert venue_cli(["verify", "--nats", url, "--data-dir", str(core_dir)]) == 0  # from it
    assert f"every balance equals the replay's at transfer {booked}" in capsys.readouterr().out
    assert path.read_bytes() == written  # read only

    def first_larger(transfers: list[Transfer]) -> list[Transfer]:
        first = transfers[0]
        return [msgspec.structs.replace(first, amount=first.amount + 1), *transfers[1:]]

    store_in_sqlite(data_dir, core_dir, first_larger)
    assert venue_cli(["verify", "--nats", url, "--data-dir", str(core_dir)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL store balances at transfer {booked} differ from the snapshot's" in out, out

    for old in core_dir.glob(f"{LEDGER_FILE}*"):
        old.unlink()
    path.touch()  # a file left empty by a crash: no store, and none made of it
    assert venue_cli(["verify", "--nats", url, "--data-dir", str(core_dir)]) == 2
    err = capsys.readouterr().err
    assert f"cannot read the SQLite ledger store {path}: no ledger store" in err, err
    assert path.read_bytes() == b""


def test_a_sqlite_store_sqlite_cannot_write_beside_is_read_or_said_not_checked(
    cluster_with_core_dir: tuple[str, Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    """Session 33's review: a `mode=ro` open of a WAL store makes its -wal and -shm, so a copy
    of a core's directory that cannot be written (another user's, a read-only mount) failed
    the whole check, exit 2 (`attempt to write a readonly database`), and a writable one got
    both files. With no -wal (nothing writes it) the store is read making nothing; with one,
    a store SQLite cannot open is `not checked`, the stream and the snapshots checked still;
    no store is said too. A -shm that leads nowhere stands for a directory SQLite cannot write
    (the tests may run as root, whom a directory's mode does not stop)."""
    url, core_dir, last = cluster_with_core_dir
    path = store_in_sqlite(core_dir.parent / "data", core_dir)
    shm = core_dir / f"{LEDGER_FILE}-shm"
    shm.symlink_to(core_dir / "nowhere" / "shm")
    listing = sorted(core_dir.iterdir())
    assert venue_cli(["verify", "--nats", url, "--data-dir", str(core_dir)]) == 0
    out = capsys.readouterr().out
    assert "ok   store: every balance equals the replay's at transfer" in out, out
    assert sorted(core_dir.iterdir()) == listing  # no -wal made (a -shm: none could be)

    (core_dir / f"{LEDGER_FILE}-wal").touch()  # a core has it open
    command = ["verify", "--nats", url, "--data-dir", str(core_dir), "--from-start"]
    assert venue_cli(command) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"ok   snapshot at seq {last} equals the replay at that seq" in lines, lines
    assert lines[-1].startswith(
        f"ok   store: not checked (cannot open the SQLite ledger store {path}: unable to open"
        f" database file; its -wal is there (a core has it open, or stopped without closing"
        f" it), which SQLite reads only with a -shm it can write beside it: check as a user"
        f" that can write {core_dir}"
    ), lines

    for made in core_dir.glob(f"{LEDGER_FILE}*"):
        made.unlink()
    config = venue_config.load(SAMPLE_CONFIG)
    lines = verify_stream(url, core_dir, config)
    none_there = f"ok   store: none checked (no {LEDGER_FILE} in {core_dir}; --postgres names one)"
    assert lines[-1] == none_there, lines
    lines = verify_stream(url, None, config)
    none_named = "ok   store: none checked (give --postgres, or a --sqlite core's --data-dir)"
    assert lines[-1] == none_named, lines


def claim_one_more(dsn: str, row: tuple[object, ...] | None = None) -> None:
    """Damage a store as only a broken disk or a hand would: a batches row claiming one
    transfer past its last (the one the replay books last: the store is made without it),
    and, given, that transfer's `row` (else the transfer missing)."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        batch_no, last, digest = connection.execute(
            "SELECT batch_no, last_transfer_id, hash FROM batches ORDER BY batch_no DESC LIMIT 1"
        ).fetchone()  # type: ignore[misc]
        if row is not None:
            columns = "transfer_id, chain_id, debit_account, credit_account, asset, amount"
            connection.execute(
                f"INSERT INTO transfers ({columns}, kind, ts_us) VALUES (%s, %s, %s, %s, %s, %s,"
                " %s, %s)",
                (last + 1, *row),
            )
        connection.execute(
            "INSERT INTO batches (batch_no, first_transfer_id, last_transfer_id, prev_hash,"
            " hash) VALUES (%s, %s, %s, %s, %s)",
            (batch_no + 1, last + 1, last + 1, digest, b"\x00" * 32),
        )


def within_bound(check: Callable[[], list[str]]) -> list[str]:
    """`check()`'s lines, run in a thread given a bound (a loop that never ends fails the
    test instead of hanging the run)."""
    outcome: list[list[str] | BaseException] = []

    def run() -> None:
        try:
            outcome.append(check())
        except BaseException as failure:
            outcome.append(failure)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(VERIFY_BOUND_S)
    assert outcome, f"not done after {VERIFY_BOUND_S} s: it loops"
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def test_a_damaged_or_lost_store_is_a_fail_or_a_refusal_in_words(
    cluster_with_core_dir: tuple[str, Path, int],
    postgres_server: PostgresServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The findings of session 32's review: from a snapshot, a store whose batches name a
    transfer its transfers table lacks looped forever (`StoreCheck.start`); a transfer of a
    kind this build cannot read was a ValueError traceback, exit 1 with no FAIL line; a store
    lost once opened (PostgreSQL stopped) a psycopg traceback. Now FAIL lines (exit 1), and
    a store lost is `cannot read` (exit 2), as one that cannot be opened."""
    url, core_dir, _ = cluster_with_core_dir
    data_dir = core_dir.parent / "data"
    config = venue_config.load(SAMPLE_CONFIG)
    short = store_in_postgres(data_dir, postgres_server, "verify_short", lambda t: t[:-1])
    claim_one_more(short)
    with psycopg.connect(short) as connection:
        row = connection.execute("SELECT max(transfer_id) FROM transfers").fetchone()
    assert row is not None
    (last,) = row
    ended = f"FAIL store: its transfers end at {last}, its batches say {last + 1}"
    for start in (False, True):  # from the snapshot at the end (looped), from seq 1

        def check(from_start: bool = start) -> list[str]:
            return verify_stream(url, core_dir, config, from_start=from_start, dsn=short)

        lines = within_bound(check)
        assert any(line.startswith(ended) for line in lines), lines

    bogus = store_in_postgres(data_dir, postgres_server, "verify_bogus", lambda t: t[:-1])
    claim_one_more(bogus, (last + 1, 3, 4, "USD", 1, "bogus", 1))
    capsys.readouterr()
    command = ["verify", "--nats", url, "--data-dir", str(core_dir), "--postgres", bogus]
    assert venue_cli(command) == 1
    out = capsys.readouterr().out
    assert f"FAIL store: the transfer after {last} cannot be read" in out, out

    lost = store_in_postgres(data_dir, postgres_server, "verify_lost")
    opened = cluster_verify._open_postgres

    def open_then_lose(dsn: str) -> cluster_verify.StoreCheck:
        """The store opened, then lost: its tables gone under the check."""
        store = opened(dsn)
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute("DROP TABLE transfers CASCADE")
        return store

    monkeypatch.setattr(cluster_verify, "_open_postgres", open_then_lose)
    assert venue_cli(["verify", "--nats", url, "--postgres", lost, "--from-start"]) == 2
    assert "cannot read the PostgreSQL ledger store" in capsys.readouterr().err


def snapshot_part_way(data_dir: Path, core_dir: Path, config: venue_config.VenueConfig) -> int:
    """A core's snapshot (the only one in `core_dir`) of the state after the first record that
    books a transfer, as a core writes it; the last transfer it holds."""
    staleness_us = venue_config.reserve_staleness_max_us(config)
    venue = EngineVenue(snapshots.first_rules(None, staleness_us), Ledger())
    ledger = venue.ledger
    assert ledger is not None
    journal = FileJournal(data_dir / JOURNAL_FILE, read_only=True)
    try:
        for seq, payload in journal.replay():
            venue.execute(decode_record(seq, payload))
            ledger.drain()  # to the store, as a core's ledger writer takes them
            if ledger.last_transfer_id:
                break
    finally:
        journal.close()
    core_dir.mkdir()
    image = snapshots.Snapshot(seq, venue_snapshot.capture(venue), {}, staleness_us)
    snapshots.write(core_dir, image)
    return ledger.last_transfer_id


def test_a_store_is_checked_from_a_snapshot_part_way_through_the_stream(
    cluster_with_core_dir: tuple[str, Path, int], postgres_server: PostgresServer
) -> None:
    """From a snapshot part-way (the earlier tests' is at the stream's end, so no transfer was
    compared after one): a sound store's transfers after it are compared one by one; one whose
    transfers before it differ (a larger amount: its own checks pass) FAILs on the balances
    at the snapshot (before: `ok`, those transfers only summed, the store a transfer behind
    the replay so no balance compared); one whose batches outrun its transfers FAILs."""
    url, core_a, _ = cluster_with_core_dir
    data_dir, core_dir = core_a.parent / "data", core_a.parent / "core-b"
    config = venue_config.load(SAMPLE_CONFIG)
    at_snapshot = snapshot_part_way(data_dir, core_dir, config)
    sound = store_in_postgres(data_dir, postgres_server, "verify_part_sound")
    lines = verify_stream(url, core_dir, config, dsn=sound)
    assert all(line.startswith("ok") for line in lines), lines
    booked = int(lines[-1].rpartition(" ")[2])
    assert at_snapshot + 1 < booked  # (a transfer after the snapshot that is not the last)
    compared = f"ok   store: transfers {at_snapshot + 1} to {booked} equal the replay's, one by one"
    assert compared in lines

    def first_larger_and_last_missing(transfers: list[Transfer]) -> list[Transfer]:
        first = transfers[0]
        return [msgspec.structs.replace(first, amount=first.amount + 1), *transfers[1:-1]]

    differs = store_in_postgres(
        data_dir, postgres_server, "verify_part_differs", first_larger_and_last_missing
    )
    lines = verify_stream(url, core_dir, config, dsn=differs)
    assert [line for line in lines if line.startswith("FAIL")] == [
        f"FAIL store balances at transfer {at_snapshot} differ from the snapshot's: the store"
        " was booked from another stream, or damaged"
    ], lines

    short = store_in_postgres(data_dir, postgres_server, "verify_part_short", lambda t: t[:-1])
    claim_one_more(short)
    lines = within_bound(lambda: verify_stream(url, core_dir, config, dsn=short))
    ended = f"FAIL store: its transfers end at {booked - 1}, its batches say {booked}"
    assert any(line.startswith(ended) for line in lines), lines

    # a transfer gone from the middle (as only a hand could: the store's triggers refuse it),
    # at the snapshot's last or after it: said as missing (before session 33's review, the
    # first "its transfers end at N - 1, its batches say" the last, the other "not the one
    # the replay books")
    for gone in (at_snapshot, at_snapshot + 1):
        delete_transfer(store_in_sqlite(data_dir, core_dir), gone)
        lines = within_bound(lambda: verify_stream(url, core_dir, config))
        missing = (
            f"FAIL store: transfer {gone} is missing (its batches say it holds transfers up"
            f" to {booked}): the store is damaged"
        )
        assert missing in lines, lines  # (and the store's own check: its batch's hash)
        assert not any("its transfers end" in line or "not the one" in line for line in lines)


def delete_transfer(path: Path, transfer_id: int) -> None:
    """Damage a SQLite store as only a hand would: its triggers dropped, a transfer deleted."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        query = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        for (trigger,) in connection.execute(query).fetchall():
            connection.execute(f"DROP TRIGGER {trigger}")
        connection.execute("DELETE FROM transfers WHERE transfer_id = ?", (transfer_id,))
    finally:
        connection.close()


def test_a_snapshot_entry_that_does_not_decode_is_a_damaged_one(tmp_path: Path) -> None:
    """The review of session 34: a snapshot whose per-account entry does not decode (its
    checksum right) passed the check of a core's snapshots, which its recovery passes over
    now (core/stream_snapshots.py). Verify counts it damaged, naming the file, the map and
    the account, and checks the older one instead (read in process: no stream needed)."""
    venue = EngineVenue(snapshots.first_rules(None, 0), Ledger())
    for seq in (7, 9):
        gateway = {"private": {"1": (1, [(1, b"push")])}}
        newest = snapshots.write(
            tmp_path, snapshots.Snapshot(seq, venue_snapshot.capture(venue), gateway)
        )
    account = with_an_entry_not_decoding(newest, ("private",))
    found, damaged = cluster_verify._snapshots(tmp_path)
    assert [snapshot.seq for snapshot in found] == [7]
    (why,) = damaged
    assert why.startswith(f"{newest}: the private entry of account {account} does not decode")
    (line,) = cluster_verify.damaged_lines(damaged, tmp_path)
    named = f"FAIL snapshot {newest}: the private entry of account {account} does not decode ("
    assert line.startswith(named) and " is damaged" not in line, line
    assert line.endswith(
        f": a core's recovery skips it (it starts from the newest good snapshot,"
        f" or replays the whole stream); move it out of {tmp_path}"
    ), line
