"""What only `PostgresLedgerStore` has: its schema table, its locks, its TRUNCATE trigger.

The behaviour every store shares is in the contract suite (test_store_contract.py); this
adds what PostgreSQL brings of its own, on a real server (the `postgres_dsn` fixture).
"""

import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from cluster.postgres import PostgresServer
from settlement import pg_store
from settlement.pg_store import PostgresLedgerStore
from settlement.store import (
    BatchSequenceError,
    LedgerStore,
    LedgerStoreError,
    SqliteLedgerStore,
    batch_hash,
    batch_rows,
)
from settlement.transfers import FEE_INCOME, ISSUANCE, Transfer, TransferKind

WAIT_STEPS = 200  # x WAIT_STEP_S: how long a test waits for the other session to block
WAIT_STEP_S = 0.05
RECOVERY_SEEN_S = 30  # a restarted server answers "starting up" within this on a busy machine
TS_US = 1_700_000_000_000_000
# A server in recovery (hot standby off) says so, in English or German (`in_german`):
IN_RECOVERY = ("not accepting connections", "nimmt keine Verbindungen an")


def prepared(store: LedgerStore) -> LedgerStore:
    store.register_asset("USD", 6)
    for account_id, name in ((ISSUANCE, "issuance"), (FEE_INCOME, "fees"), (1, "p1"), (2, "p2")):
        store.register_account(account_id, name)
    return store


def payments(first_id: int, count: int, amount: int) -> list[Transfer]:
    kind = TransferKind.MINT
    return [
        Transfer(first_id + n, first_id + n, ISSUANCE, 1 + n % 2, "USD", amount, kind, TS_US)
        for n in range(count)
    ]


def test_a_database_from_another_schema_version_is_refused(postgres_dsn: str) -> None:
    PostgresLedgerStore(postgres_dsn).close()
    with psycopg.connect(postgres_dsn, autocommit=True) as raw:
        raw.execute("UPDATE ledger_schema SET version = 99")
    with pytest.raises(LedgerStoreError, match="schema version 99; this code reads 1"):
        PostgresLedgerStore(postgres_dsn)


def test_truncate_is_refused(postgres_dsn: str) -> None:
    store = prepared(PostgresLedgerStore(postgres_dsn))
    store.append_batch(payments(1, 2, 5))
    with (
        psycopg.connect(postgres_dsn, autocommit=True) as raw,
        pytest.raises(psycopg.errors.RaiseException, match="append-only: TRUNCATE refused"),
    ):
        raw.execute("TRUNCATE transfers, batches")
    assert store.last_transfer_id() == 2
    assert store.verify() == []
    store.close()


def test_the_same_batches_give_sqlite_s_head_hash_and_findings(
    postgres_dsn: str, tmp_path: Path
) -> None:
    stores = [
        prepared(PostgresLedgerStore(postgres_dsn)),
        prepared(SqliteLedgerStore(tmp_path / "ledger.sqlite")),
    ]
    for store in stores:
        store.append_batch(payments(1, 3, 100))
        store.append_batch(payments(4, 5, 2**60))  # 64-bit amounts encode alike too
    heads = {store.head_hash() for store in stores}
    assert len(heads) == 1
    with psycopg.connect(postgres_dsn, autocommit=True) as raw:
        raw.execute("DROP TRIGGER transfers_refuse_update ON transfers")
        raw.execute("UPDATE transfers SET amount = 99 WHERE transfer_id = 2")
    tampered = stores[1]
    assert isinstance(tampered, SqliteLedgerStore)
    sqlite_raw = tampered._connection  # the same tampering through SQLite's own driver
    sqlite_raw.execute("DROP TRIGGER transfers_refuse_update")
    sqlite_raw.execute("UPDATE transfers SET amount = 99 WHERE transfer_id = 2")
    findings = [store.verify() for store in stores]
    assert findings[0] == findings[1] == ["batch 1 (1..3) hash does not match its transfers"]
    for store in stores:
        store.close()


def _waiting_on_batches(raw: psycopg.Connection) -> bool:
    query = (
        "SELECT count(*) FROM pg_locks JOIN pg_class ON pg_class.oid = pg_locks.relation"
        " WHERE pg_class.relname = 'batches' AND NOT pg_locks.granted"
    )
    row = raw.execute(query).fetchone()
    return row is not None and row[0] > 0


def test_a_second_writer_waits_for_the_first_and_then_sees_its_batch(postgres_dsn: str) -> None:
    store = prepared(PostgresLedgerStore(postgres_dsn))
    store.append_batch(payments(1, 2, 5))
    head = store.head_hash()
    theirs, mine = payments(3, 4, 7), payments(3, 4, 8)  # the same ids, other contents
    outcome: list[BaseException | bool] = []

    def append_mine() -> None:
        try:
            outcome.append(store.append_batch(mine))
        except BaseException as refused:
            outcome.append(refused)

    with psycopg.connect(postgres_dsn) as other, psycopg.connect(postgres_dsn) as watcher:
        other.execute("LOCK TABLE batches IN EXCLUSIVE MODE")  # another writer, mid-batch
        thread = threading.Thread(target=append_mine)
        thread.start()
        for _ in range(WAIT_STEPS):
            if outcome or _waiting_on_batches(watcher):
                break
            time.sleep(WAIT_STEP_S)
        assert not outcome, f"the second writer did not wait for the first: {outcome}"
        rows = batch_rows(theirs)
        with other.cursor() as cursor:
            cursor.executemany("INSERT INTO transfers VALUES (%s,%s,%s,%s,%s,%s,%s,%s)", rows)
        other.execute(
            "INSERT INTO batches VALUES (2, 3, 6, %s, %s)", (head, batch_hash(head, rows))
        )
        other.commit()
        thread.join(timeout=WAIT_STEPS * WAIT_STEP_S)
    assert len(outcome) == 1
    assert isinstance(outcome[0], BatchSequenceError)
    assert "already stored with different contents" in str(outcome[0])
    assert list(store.iter_transfers(after_id=2)) == theirs
    assert store.verify() == []
    store.close()


def test_a_statement_past_its_timeout_is_an_error_and_writes_nothing(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that holds a write up (here another session's lock, outlasting a statement
    timeout shorter than the lock timeout) fails it instead of blocking the store forever."""
    monkeypatch.setattr(pg_store, "STATEMENT_TIMEOUT_MS", 200)
    store = prepared(PostgresLedgerStore(postgres_dsn))
    store.append_batch(payments(1, 2, 5))
    with psycopg.connect(postgres_dsn) as other:
        other.execute("LOCK TABLE batches IN EXCLUSIVE MODE")
        with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
            store.append_batch(payments(3, 2, 5))
        other.rollback()
    store.close()
    reopened = PostgresLedgerStore(postgres_dsn)
    assert [t.transfer_id for t in reopened.iter_transfers(after_id=0)] == [1, 2]
    reopened.close()


def test_the_connection_probes_a_silent_server(postgres_dsn: str) -> None:
    """Keepalives and the TCP user timeout are set on the store's connection."""
    store = PostgresLedgerStore(postgres_dsn)
    info = store._connection.info.get_parameters()
    (timeout,) = store._connection.execute("SHOW statement_timeout").fetchone() or ("",)
    store.close()
    assert info["keepalives"] == "1"
    assert info["tcp_user_timeout"] == str(pg_store.TCP_USER_TIMEOUT_MS)
    assert timeout == "1min"


def test_wait_until_up_gives_up_on_a_server_that_never_comes_up(
    stopped_postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A server still saying 57P03 when the window ends refuses the start, saying how long it
    was waited for and what it last said; the wait itself is one log line, not one a try."""
    stopped_postgres.start_not_accepting(stopped_postgres.port)
    with pytest.raises(psycopg.OperationalError) as refused:
        pg_store.wait_until_up(stopped_postgres.dsn(), wait_s=1.0)
    message = str(refused.value)
    assert message.startswith("PostgreSQL did not accept a connection within 1 s: connection")
    assert "the database system is not accepting connections" in message
    waits = [record for record in caplog.records if "not accepting connections yet" in record.msg]
    assert len(waits) == 1


def test_wait_until_up_does_not_wait_for_a_refused_login(postgres_server: PostgresServer) -> None:
    """A role (or password, or database) refused is raised as the driver said it, unwaited."""
    dsn = f"postgresql://no_such_role@127.0.0.1:{postgres_server.port}/postgres"
    with pytest.raises(psycopg.OperationalError) as refused:
        pg_store.wait_until_up(dsn, wait_s=60.0)
    assert str(refused.value).startswith("connection to server at ")  # not "did not accept"
    assert "28000" in str(refused.value)  # the SQLSTATE that decided it


@pytest.fixture(scope="module")
def german_locale() -> Iterator[Path]:
    """A directory holding de_DE.UTF-8 compiled (`localedef`: the machine may have only C),
    for `LOCPATH`; skipped where the locale's sources are not installed."""
    if shutil.which("localedef") is None or not Path("/usr/share/i18n/locales/de_DE").exists():
        pytest.skip("no localedef or no de_DE locale sources to compile a localized server's")
    directory = Path(tempfile.mkdtemp(prefix="venue-test-locale-"))
    directory.chmod(0o755)  # the server runs as the postgres user
    made = ["localedef", "-i", "de_DE", "-f", "UTF-8", str(directory / "de_DE.UTF-8")]
    subprocess.run(made, check=True, capture_output=True)
    for path in directory.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_wait_until_up_waits_for_a_localized_server_starting_up(
    stopped_postgres: PostgresServer, german_locale: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server whose messages are translated (`lc_messages`) answering 57P03 while it starts
    is waited for, by its SQLSTATE: until session 37 the wait matched English words, and a
    German server starting up refused `venue serve`'s start at once."""
    in_german(stopped_postgres, german_locale, monkeypatch)
    stopped_postgres.start_not_accepting(stopped_postgres.port)
    failure = pg_store.try_connect(stopped_postgres.dsn())
    assert failure is not None and failure.sqlstates == {"57P03"}, failure
    if "the database system" in failure.message:
        pytest.skip("this PostgreSQL has no German messages installed")
    promoted = threading.Timer(1.0, stopped_postgres.promote)
    promoted.start()
    try:
        assert pg_store.wait_until_up(stopped_postgres.dsn(), wait_s=60.0) is True
    finally:
        promoted.join()


def recovery_answered(server: PostgresServer) -> None:
    """Wait until the server refuses connections as a standby in recovery (57P03, "not
    accepting connections"), not as gone, nor as still "starting up": on a loaded machine
    that came first for a while, and a promote then was refused (not yet in standby mode)."""
    deadline = time.monotonic() + RECOVERY_SEEN_S
    while time.monotonic() < deadline:
        failure = pg_store.try_connect(server.dsn(), timeout_s=2)
        said = "" if failure is None else failure.said
        if any(words in said for words in IN_RECOVERY):  # (57P03 too while starting up)
            return
        time.sleep(WAIT_STEP_S)
    raise AssertionError(f"the server did not answer as restarting in {RECOVERY_SEEN_S} s")


def restart_held_in_recovery(server: PostgresServer, meanwhile: Callable[[], None]) -> None:
    """A crash restart that lasts as long as the test wants: stop the server at once, start
    it in recovery (a standby with no hot standby: it answers "not accepting connections"),
    run `meanwhile` on a helper thread once it answers so, then promote it. Returns once the
    server takes connections; runs on the server's owning thread (its start)."""
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        admin.execute("ALTER SYSTEM SET hot_standby = off")  # in recovery: no connections
    server.stop("immediate")
    (server.data_dir / "standby.signal").touch()  # recovery until promoted
    failures: list[BaseException] = []

    def hold_then_promote() -> None:
        try:
            recovery_answered(server)
            meanwhile()
        except BaseException as failure:
            failures.append(failure)
        promote = ["promote", "-D", str(server.data_dir), "-w"]
        server._run("pg_ctl", promote)  # no public promote: tests alone need one

    helper = threading.Thread(target=hold_then_promote)
    helper.start()
    try:
        server.start(port=server.port)  # returns once promoted
    finally:
        helper.join(2 * RECOVERY_SEEN_S)
        with psycopg.connect(server.dsn(), autocommit=True) as admin:
            admin.execute("ALTER SYSTEM RESET hot_standby")
    assert failures == []


def test_a_server_restarting_for_longer_than_the_window_is_waited_for(
    postgres_server: PostgresServer, postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The finding: a crash restart (an immediate stop, then the data directory's fsync, the
    WAL's replay and a checkpoint) took over the 5 s window on a loaded machine, and the
    write then failed (the venue stopped, exit 70) while PostgreSQL answered "starting up".
    Here the server stays in recovery until promoted, four windows after the write began:
    the write waits for it and is stored once."""
    monkeypatch.setattr(pg_store, "RECONNECT_WINDOW_S", 0.5)
    written_through_a_long_restart(postgres_server, postgres_dsn)


def test_a_localized_server_restarting_for_longer_than_the_window_is_waited_for(
    stopped_postgres: PostgresServer, german_locale: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As above, the server's messages in German (`lc_messages`): its restart is told by the
    SQLSTATE it answers (57P03); until session 37 by English words, and a translated
    server's restart had the short window alone, the write failing."""
    monkeypatch.setattr(pg_store, "RECONNECT_WINDOW_S", 0.5)
    in_german(stopped_postgres, german_locale, monkeypatch)
    stopped_postgres.start(stopped_postgres.port)
    dsn = stopped_postgres.create_database("ledger")
    failure = pg_store.try_connect(stopped_postgres.dsn("no_such_database"))
    assert failure is not None and failure.sqlstates == {"3D000"}, failure
    if "does not exist" in failure.message:
        pytest.skip("this PostgreSQL has no German messages installed")
    written_through_a_long_restart(stopped_postgres, dsn)


def test_a_restart_is_told_by_its_words_where_no_sqlstate_can_be_read(
    postgres_server: PostgresServer, postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where libpq's verbosity cannot be set (not Linux, two libpq loaded:
    `_error_verbosity_setter` None) no SQLSTATE is read, and a restart is told by libpq's
    English words, as before session 37: a server restarting for longer than the window is
    waited for. Session 37 dropped the words there, and the restart had the window alone."""
    monkeypatch.setattr(pg_store, "_error_verbosity_setter", lambda: None)
    monkeypatch.setattr(pg_store, "RECONNECT_WINDOW_S", 0.5)
    written_through_a_long_restart(postgres_server, postgres_dsn)


def in_german(server: PostgresServer, locale: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The (stopped) server's messages in German from its next start on."""
    monkeypatch.setenv("LOCPATH", str(locale))  # (the server's environment is ours)
    with (server.data_dir / "postgresql.auto.conf").open("a") as settings:
        settings.write("lc_messages = 'de_DE.UTF-8'\n")


def written_through_a_long_restart(server: PostgresServer, dsn: str) -> None:
    """A batch written while the server restarts in recovery for four windows: stored once."""
    store = prepared(PostgresLedgerStore(dsn))
    store.append_batch(payments(1, 2, 5))
    outcome: list[object] = []
    writer = threading.Thread(target=lambda: outcome.append(write(store)))

    def write_meanwhile() -> None:
        writer.start()
        time.sleep(4 * pg_store.RECONNECT_WINDOW_S)  # at least: more only waits longer

    restart_held_in_recovery(server, write_meanwhile)
    writer.join(RECOVERY_SEEN_S)
    assert outcome == [True]
    assert [t.transfer_id for t in store.iter_transfers(after_id=0)] == [1, 2, 3, 4]
    store.close()


def write(store: PostgresLedgerStore) -> object:
    """The second batch, or the error it raised."""
    try:
        return store.append_batch(payments(3, 2, 5))
    except psycopg.Error as failure:
        return failure


@pytest.mark.parametrize(
    ("attempts", "exhausted_at"),
    [
        # (seconds after the loss, server answered "restarting") of each failed attempt
        ([(1.0, False), (3.0, False), (5.0, False)], 5.0),  # gone: the window alone
        ([(0.3, False), (4.0, True), (9.0, True), (9.5, False)], None),  # a crash restart
        ([(0.3, False), (30.0, True), (34.0, False), (35.0, False)], 35.0),  # back, then gone
        ([(0.3, False), (59.9, True), (60.0, True)], 60.0),  # restarting for over a minute
    ],
)
def test_the_reconnect_window_counts_only_the_time_the_server_did_not_answer(
    attempts: list[tuple[float, bool]], exhausted_at: float | None
) -> None:
    window = pg_store.ReconnectWindow(100.0)
    ran_out = [
        at for at, restarting in attempts if window.exhausted(100.0 + at, restarting=restarting)
    ]
    assert ran_out[:1] == ([] if exhausted_at is None else [exhausted_at])


class _ClosingListener:
    """A listener on 127.0.0.1 that, to each connection, answers `reply` (b"": nothing) and
    closes it: a proxy whose backend is down (HAProxy, a cloud SQL proxy), a postmaster that
    cannot fork, as libpq meets them while it asks for SSL."""

    def __init__(self, reply: bytes) -> None:
        import socket

        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._reply = reply
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                accepted, _ = self._server.accept()
            except TimeoutError:
                continue
            with accepted:
                if self._reply:
                    accepted.settimeout(2)
                    accepted.recv(64)  # the SSL or GSS request
                    accepted.sendall(self._reply)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._server.close()


@pytest.mark.parametrize("sslmode", ["prefer", "require"])
@pytest.mark.parametrize("reply", [b"", b"E"], ids=["closed", "error-byte"])
def test_a_server_closing_the_connection_as_ssl_is_asked_for_is_waited_for(
    sslmode: str, reply: bytes
) -> None:
    """A listener that accepts and closes (or answers `E`) as libpq asks for SSL is the
    store's to wait out, never the operator's: until session 37's fix round any failure in
    the SSL start-up, no code, no password, was taken as libpq refusing the connection
    itself, and a core gave the lease up, `venue serve` exiting 2 at once."""
    listener = _ClosingListener(reply)
    try:
        dsn = f"host=127.0.0.1 port={listener.port} dbname=x user=x sslmode={sslmode}"
        failure = pg_store.try_connect(dsn, timeout_s=5)
        assert failure is not None
        assert not failure.refused, failure
        assert failure.unanswered == failure.attempts, failure
        with pytest.raises(psycopg.OperationalError, match="did not accept a connection"):
            pg_store.wait_until_up(dsn, wait_s=0.5)
    finally:
        listener.close()


def test_dsn_values_are_judged_without_connecting(tmp_path: Path) -> None:
    """Whether a connection libpq failed as it started failed on the DSN's values is decided
    from the values alone: until session 37's fix round a second connect with the host and
    port alone decided it, so a Unix-socket server appearing between the two (a boot) made a
    DSN whose server was merely not up yet "wrong", and `venue serve` exited 2 at once.
    Here a listener is on the socket as the values are judged: the values are fine."""
    import socket

    port = 5999
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(tmp_path / f".s.PGSQL.{port}"))
        listener.listen()
        attempt = {"host": str(tmp_path), "port": str(port), "dbname": "x"}
        assert not pg_store._values_refused(attempt)
        assert not pg_store._values_refused({**attempt, "sslmode": "verify-full"})
        # libpq reads a port as strtol does: a sign and spaces are taken (the re-review)
        assert not pg_store._values_refused({**attempt, "port": "+5999"})
        assert not pg_store._values_refused({**attempt, "port": " 5999 "})
    for wrong in ({"port": "abc"}, {"port": "0"}, {"port": "70000"}, {"sslmode": "bogus"}):
        assert pg_store._values_refused({**attempt, **wrong}), wrong
    for wrong in ({"gssencmode": "x"}, {"target_session_attrs": "x"}):
        assert pg_store._values_refused({**attempt, **wrong}), wrong
    # as libpq compares: its enums exactly (strcmp), a port as strtol reads one, not as int()
    # does (the whole-diff review: these were waited for, a core holding the lease for ever)
    for wrong in ({"sslmode": "REQUIRE"}, {"port": "5_432"}, {"port": "٥٤٣٢"}):
        assert pg_store._values_refused({**attempt, **wrong}), wrong
    assert not pg_store._values_refused({**attempt, "ssl_min_protocol_version": "TLSv1.2"})
