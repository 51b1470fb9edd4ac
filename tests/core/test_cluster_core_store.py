"""The cluster core's start on a PostgreSQL ledger store that answers but fails its writes (a
full disk: `DiskFull`). A takeover catches the store up from the stream; a store refusing
that write made the core exit 2 (`cannot start: the ledger store: could not extend file ...
No space left on device`), the lease given up to no one: the standby had taken over from an
active core that exited 70 on the same full disk, so no core was left, even once the disk had
room (session 32's trial). Now the core holds the lease and tries its start again, saying so,
and serves once the store takes the writes; a start the store fails otherwise (a statement
timeout of one core's role) gives the lease up to a standby. A real nats-server (one node), a
real PostgreSQL whose `transfers` refuse inserts with the server's own `disk_full` or
`query_canceled` error (a trigger: a full disk or one role's timeout in this process without
a mount or a slow query), `ClusterCore`s in this process."""

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path

import msgspec
import psycopg
import psycopg.errors
import pytest
from psycopg.conninfo import make_conninfo

from cluster.nats import NatsCluster
from cluster.postgres import PostgresServer
from core import cluster_core, venue_core
from core import config as venue_config
from core.cluster_core import ClusterCore, held_through
from core.ledger_writer import open_store
from core.venue_core import VenueCore, now_us
from engine.commands import PlaceOrder
from engine.enums import Side
from tests.sample_config import SAMPLE_CONFIG

SCENARIO_TIMEOUT_S = 60
WAIT_TRIES = 400  # x 0.05 s: the first try fails within a second, on a busy machine more
REFUSE_TRANSFERS = """
CREATE FUNCTION refuse_as_full() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION 'could not extend file: No space left on device'
    USING ERRCODE = 'disk_full'; END $$ LANGUAGE plpgsql;
CREATE TRIGGER full_disk BEFORE INSERT ON transfers FOR EACH ROW EXECUTE FUNCTION refuse_as_full();
"""
DISK_FREED = "DROP TRIGGER full_disk ON transfers"
# Core b's connections (`options`) time out on every insert into `transfers`: its role's
# statement_timeout, which a takeover's catch-up chunk always exceeds (session 32's review).
CANCEL_CORE_B = """
CREATE FUNCTION cancel_core_b() RETURNS trigger AS $$
BEGIN
    IF current_setting('tokenvenue.core', true) = 'b' THEN
        RAISE EXCEPTION 'canceling statement due to statement timeout'
            USING ERRCODE = 'query_canceled';
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER core_b_timeout BEFORE INSERT ON transfers
    FOR EACH ROW EXECUTE FUNCTION cancel_core_b();
"""
CORE_B_OPTIONS = "-c tokenvenue.core=b"
HOUR_US = 3_600_000_000
TAIL_ORDERS = 3  # placed after the standby stopped following: replayed onto its warm copy


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path / "nats", size=1) as started:
        yield started


def test_a_takeover_whose_store_refuses_its_catch_up_holds_the_lease_and_serves_after(
    node: NatsCluster,
    tmp_path: Path,
    postgres_dsn: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stream was built by a core whose clock was an hour ahead: the takeover's clock is
    behind the venue's time, said once, not at each try of its start (until session 33)."""
    sqlite_config = venue_config.load(SAMPLE_CONFIG)
    venue = msgspec.structs.replace(sqlite_config.venue, ledger_postgres=postgres_dsn)
    postgres_config = msgspec.structs.replace(sqlite_config, venue=venue)
    open_store(tmp_path / "unused.sqlite", postgres_dsn).close()  # its tables made
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(REFUSE_TRANSFERS)

    async def scenario() -> tuple[int, int]:
        # the stream's first core: built from the config (deposits: transfers), then stopped
        first = ClusterCore(sqlite_config, tmp_path / "core-a", node.url, "core-a")
        assert await first.wait_for_lease(asyncio.Event())
        with monkeypatch.context() as ahead:  # the sequencer takes its clock when made
            ahead.setattr(venue_core, "now_us", lambda: now_us() + HOUR_US)
            started = await first.activate()
        assert started is not None
        booked = started.ledger.last_transfer_id
        await first.stop()  # the lease given up
        second = ClusterCore(postgres_config, tmp_path / "core-b", node.url, "core-b")
        assert await second.wait_for_lease(asyncio.Event())
        activating = asyncio.ensure_future(second.activate())
        try:
            for _ in range(WAIT_TRIES):
                if activating.done() or "failed the start" in caplog.text:
                    break
                await asyncio.sleep(0.05)
            assert not activating.done(), activating.result()  # main: DiskFull raised
            assert "failed the start" in caplog.text
            assert second.lease is not None and second.lease.held()
            with psycopg.connect(postgres_dsn, autocommit=True) as connection:
                connection.execute(DISK_FREED)
            core = await asyncio.wait_for(activating, SCENARIO_TIMEOUT_S)
            assert core is not None
            store = open_store(tmp_path / "unused.sqlite", postgres_dsn)
            try:
                return booked, store.last_transfer_id()
            finally:
                store.close()
        finally:
            if not activating.done():
                activating.cancel()
            await second.stop()

    booked, stored = asyncio.run(asyncio.wait_for(scenario(), SCENARIO_TIMEOUT_S * 2))
    assert booked > 0 and stored == booked
    assert caplog.text.count("failed the start") >= 1  # so the start was tried twice at least
    said = [record for record in caplog.records if "clock is behind" in record.message]
    assert len(said) == 1, [record.ahead_s for record in said]


def with_store(config: venue_config.VenueConfig, dsn: str) -> venue_config.VenueConfig:
    """`config` with its ledger store the PostgreSQL at `dsn`."""
    venue = msgspec.structs.replace(config.venue, ledger_postgres=dsn)
    return msgspec.structs.replace(config, venue=venue)


async def wait_until(done: "asyncio.Future[bool]") -> None:
    """Until `done` finished (bounded: `WAIT_TRIES`)."""
    for _ in range(WAIT_TRIES):
        if done.done():
            return
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("failure", "held"),
    [
        (psycopg.errors.DiskFull, True),  # class 53: the store's resources
        (psycopg.errors.OutOfMemory, True),
        (psycopg.errors.TooManyConnections, True),
        (psycopg.errors.ConnectionFailure, True),  # class 08: the connection lost
        (psycopg.errors.AdminShutdown, True),  # 57P01-57P03: the server stops or starts
        (psycopg.errors.CannotConnectNow, True),
        (psycopg.OperationalError, True),  # no SQLSTATE: libpq lost the connection
        (psycopg.errors.QueryCanceled, False),  # a statement timeout: maybe this role's alone
        (psycopg.errors.LockNotAvailable, False),
        (psycopg.errors.SerializationFailure, False),
        (psycopg.errors.ProgramLimitExceeded, False),
        (psycopg.errors.IoError, False),
    ],
)
def test_a_start_is_retried_holding_the_lease_only_for_the_store_s_resources_or_connection(
    failure: type[psycopg.OperationalError], held: bool
) -> None:
    assert held_through(failure("failed")) is held


def started_cores(data_dir: Path) -> list[VenueCore]:
    """The `VenueCore`s on `data_dir` still alive (garbage collected first). A core standing
    by after a failed start held that try's (its venue, ledger and the warm copy it replayed
    onto) for its whole wait, in the give-up's traceback, until session 32's second review."""
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, VenueCore) and o.data_dir == data_dir]


def standby_takes_over(
    node: NatsCluster, tmp_path: Path, postgres_dsn: str, refusal: str, freed: str | None
) -> tuple[int, int]:
    """Core b (its connections' `CORE_B_OPTIONS`) takes the lease first and fails its start
    (`refusal`, run on the store), core c contends meanwhile; once c holds the lease (the
    store's `freed` run first, if any), c's start must serve, and b waits as a standby until
    stopped. The transfers the stream booked, and the store's last, after."""
    sqlite_config = venue_config.load(SAMPLE_CONFIG)
    core_b_dsn = make_conninfo(postgres_dsn, options=CORE_B_OPTIONS)
    open_store(tmp_path / "unused.sqlite", postgres_dsn).close()  # its tables made
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(refusal)

    async def scenario() -> tuple[int, int]:
        first = ClusterCore(sqlite_config, tmp_path / "core-a", node.url, "core-a")
        assert await first.wait_for_lease(asyncio.Event())
        started = await first.activate()
        assert started is not None
        booked = started.ledger.last_transfer_id
        await first.stop()
        stopping_b = asyncio.Event()
        core_b = ClusterCore(with_store(sqlite_config, core_b_dsn), tmp_path / "b", node.url, "b")
        core_c = ClusterCore(with_store(sqlite_config, postgres_dsn), tmp_path / "c", node.url, "c")
        assert await core_b.wait_for_lease(stopping_b)  # nobody else contends yet
        contending = asyncio.ensure_future(core_c.wait_for_lease(asyncio.Event()))
        activating_b = asyncio.ensure_future(core_b.activate(stopping_b))
        try:
            await wait_until(contending)
            assert contending.done(), "core c never took the lease: core b held it"
            assert contending.result()
            assert not started_cores(tmp_path / "b"), "b's failed try is held while it stands by"
            # c took the lease b gave up (its delete), not one left to expire: b still waits
            # out its term (no lease of its own yet) before it contends again
            assert core_b.lease is None, "c took the lease only after b's term"
            if freed is not None:
                with psycopg.connect(postgres_dsn, autocommit=True) as connection:
                    connection.execute(freed)
            assert await core_c.activate() is not None
            assert not activating_b.done(), "core b waits as a standby"
            stopping_b.set()
            assert await asyncio.wait_for(activating_b, SCENARIO_TIMEOUT_S) is None
            store = open_store(tmp_path / "unused.sqlite", postgres_dsn)
            try:
                return booked, store.last_transfer_id()
            finally:
                store.close()
        finally:
            for task in (contending, activating_b):
                if not task.done():
                    task.cancel()
            await core_b.stop()
            await core_c.stop()

    return asyncio.run(asyncio.wait_for(scenario(), SCENARIO_TIMEOUT_S * 2))


def test_a_start_failing_for_one_core_alone_gives_the_lease_up_to_a_standby(
    node: NatsCluster, tmp_path: Path, postgres_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: core b retried its start holding the lease for ever, every try timed out by
    its role, and core c, whose connections work, waited as a standby for ever."""
    booked, stored = standby_takes_over(node, tmp_path, postgres_dsn, CANCEL_CORE_B, None)
    assert booked > 0 and stored == booked
    assert "failed the start (sqlstate 57014:" in caplog.text
    assert "giving the lease up to a standby" in caplog.text


def test_a_start_failing_for_the_store_s_resources_too_long_gives_the_lease_up(
    node: NatsCluster,
    tmp_path: Path,
    postgres_dsn: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A full disk is retried holding the lease, but not past `START_HELD_MAX_S` (three
    terms; 0.3 s here, tries 0.2 s apart): then a standby gets a turn."""
    monkeypatch.setattr(cluster_core, "START_RETRY_MIN_S", 0.2)
    monkeypatch.setattr(cluster_core, "START_HELD_MAX_S", 0.3)
    freed = DISK_FREED
    booked, stored = standby_takes_over(node, tmp_path, postgres_dsn, REFUSE_TRANSFERS, freed)
    assert booked > 0 and stored == booked
    held = "failed the start (sqlstate 53100: could not extend file: No space left on device"
    assert f"{held} CONTEXT" in caplog.text
    assert "s, holding the lease" in caplog.text
    assert "giving the lease up to a standby" in caplog.text


def test_a_start_retried_after_a_failed_warm_one_recovers_cold_to_the_active_s_state(
    node: NatsCluster, tmp_path: Path, postgres_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The failed first try took the standby's warm copy and replayed the stream's tail onto
    it; a second try reusing that copy would replay the tail twice (orders placed twice)."""
    sqlite_config = venue_config.load(SAMPLE_CONFIG)
    open_store(tmp_path / "unused.sqlite", postgres_dsn).close()  # its tables made
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(REFUSE_TRANSFERS)

    async def scenario() -> tuple[str, str, int]:
        first = ClusterCore(sqlite_config, tmp_path / "core-a", node.url, "core-a")
        assert await first.wait_for_lease(asyncio.Event())
        started = await first.activate()
        assert started is not None
        second = ClusterCore(with_store(sqlite_config, postgres_dsn), tmp_path / "b", node.url, "b")
        contending = asyncio.ensure_future(second.wait_for_lease(asyncio.Event()))
        activating: asyncio.Future[object] | None = None
        try:
            built = started.sequencer.last_seq
            for _ in range(WAIT_TRIES):
                if second.follower.seq == built:
                    break
                await asyncio.sleep(0.05)
            assert second.follower.seq == built > 0, "the standby never followed the build"
            await second.follower.stop()  # it lags from here: the tail is not in its copy
            for number in range(TAIL_ORDERS):
                started.sequencer.submit(place(f"tail-{number}"))
            await started.sequencer.drain()
            active_hash = started.venue.state_hash()
            await first.stop()
            assert await asyncio.wait_for(contending, SCENARIO_TIMEOUT_S)
            activating = asyncio.ensure_future(second.activate())
            for _ in range(WAIT_TRIES):
                if activating.done() or "failed the start" in caplog.text:
                    break
                await asyncio.sleep(0.05)
            assert not activating.done(), activating.result()
            with psycopg.connect(postgres_dsn, autocommit=True) as connection:
                connection.execute(DISK_FREED)
            core = await asyncio.wait_for(activating, SCENARIO_TIMEOUT_S)
            assert core is not None
            return active_hash, core.venue.state_hash(), len(core.venue.orders)
        finally:
            for task in (contending, activating):
                if task is not None and not task.done():
                    task.cancel()
            await second.stop()

    active_hash, taken_hash, orders = asyncio.run(
        asyncio.wait_for(scenario(), SCENARIO_TIMEOUT_S * 2)
    )
    assert orders == TAIL_ORDERS
    assert taken_hash == active_hash


def place(cl_ord_id: str) -> PlaceOrder:
    return PlaceOrder(
        account=1,
        symbol="AAPLx-USD",
        side=Side.BUY,
        price=18_000,
        qty=1_000_000,
        cl_ord_id=cl_ord_id,
    )


def standby_trimmed_then_takes_over(
    node: NatsCluster, tmp_path: Path, dsn: str, takeover_dsn: str
) -> tuple[int, int, int, str, str]:
    """Core a active on the store at `dsn`, core b standing by on it until its warm copy has
    dropped every transfer that store holds (`Follower.trim`, every 0.05 s here); then a
    stops and b takes over on the store at `takeover_dsn`. The transfers a booked, those b's
    copy kept at the takeover, the takeover store's last after, and both state hashes."""
    config = with_store(venue_config.load(SAMPLE_CONFIG), dsn)

    async def scenario() -> tuple[int, int, int, str, str]:
        first = ClusterCore(config, tmp_path / "core-a", node.url, "core-a")
        assert await first.wait_for_lease(asyncio.Event())
        started = await first.activate()
        assert started is not None
        booked = started.ledger.last_transfer_id
        built = started.sequencer.last_seq
        second = ClusterCore(config, tmp_path / "core-b", node.url, "core-b")
        contending = asyncio.ensure_future(second.wait_for_lease(asyncio.Event()))
        try:
            for _ in range(WAIT_TRIES):
                follower = second.follower
                if follower.seq == built and not follower.transfers:
                    break
                await asyncio.sleep(0.05)
            kept = len(second.follower.transfers)
            assert second.follower.seq == built > 0, "the standby never followed the build"
            active_hash = started.venue.state_hash()
            second.config = with_store(config, takeover_dsn)
            await first.stop()
            assert await asyncio.wait_for(contending, SCENARIO_TIMEOUT_S)
            core = await second.activate()
            assert core is not None
            store = open_store(tmp_path / "unused.sqlite", takeover_dsn)
            try:
                stored = store.last_transfer_id()
            finally:
                store.close()
            return booked, kept, stored, active_hash, core.venue.state_hash()
        finally:
            if not contending.done():
                contending.cancel()
            await second.stop()

    return asyncio.run(asyncio.wait_for(scenario(), SCENARIO_TIMEOUT_S * 2))


def test_a_standby_drops_the_transfers_its_store_holds_and_takes_over_whole(
    node: NatsCluster, tmp_path: Path, postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the warm copy kept every transfer since the stream began, for a takeover's
    catch-up, so a standby's memory grew by every trade the venue ever booked."""
    monkeypatch.setattr(cluster_core, "STANDBY_TRIM_S", 0.05)
    booked, kept, stored, active_hash, taken_hash = standby_trimmed_then_takes_over(
        node, tmp_path, postgres_dsn, postgres_dsn
    )
    assert booked > 0 and kept == 0
    assert stored == booked
    assert taken_hash == active_hash


def test_a_takeover_onto_a_store_behind_the_standby_s_trimmed_copy_recovers_cold(
    node: NatsCluster,
    tmp_path: Path,
    postgres_dsn: str,
    postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The store replaced by an older copy (here: an empty one) while b stood by: b's copy
    no longer holds the transfers that store lacks, so b replays the stream from its start
    and books them all; taking the copy, its catch-up booked nothing and left a gap."""
    monkeypatch.setattr(cluster_core, "STANDBY_TRIM_S", 0.05)
    older = postgres_server.create_database("test_older_copy")
    try:
        open_store(tmp_path / "unused.sqlite", older).close()  # its tables made, empty
        booked, kept, stored, active_hash, taken_hash = standby_trimmed_then_takes_over(
            node, tmp_path, postgres_dsn, older
        )
    finally:
        postgres_server.drop_database("test_older_copy")
    assert booked > 0 and kept == 0
    assert stored == booked
    assert taken_hash == active_hash
    assert "the ledger store is behind the standby's copy: recovering cold" in caplog.text


def test_a_standby_that_cannot_read_its_store_says_so_once_and_keeps_its_transfers(
    node: NatsCluster,
    tmp_path: Path,
    postgres_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A wrong DSN (here: a database that does not exist) shows while the core stands by,
    once, not only at a takeover (session 33's review: the first version said it at debug)."""
    monkeypatch.setattr(cluster_core, "STANDBY_TRIM_S", 0.05)
    sqlite_config = venue_config.load(SAMPLE_CONFIG)
    wrong = make_conninfo(postgres_dsn, dbname="no_such_database")

    async def scenario() -> int:
        first = ClusterCore(sqlite_config, tmp_path / "core-a", node.url, "core-a")
        assert await first.wait_for_lease(asyncio.Event())
        started = await first.activate()
        assert started is not None
        second = ClusterCore(with_store(sqlite_config, wrong), tmp_path / "b", node.url, "b")
        stopping = asyncio.Event()
        contending = asyncio.ensure_future(second.wait_for_lease(stopping))
        try:
            for _ in range(WAIT_TRIES):
                if caplog.text.count("standby keeps its transfers") and second._trim_failure_said:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # ten more tries
            return len(second.follower.transfers)
        finally:
            stopping.set()
            await contending
            await second.stop()
            await first.stop()

    kept = asyncio.run(asyncio.wait_for(scenario(), SCENARIO_TIMEOUT_S * 2))
    assert kept > 0
    said = [r for r in caplog.records if "standby keeps its transfers" in r.getMessage()]
    assert [r.levelname for r in said][:1] == ["WARNING"], said
    assert sum(r.levelname == "WARNING" for r in said) == 1
    assert "no_such_database" in said[0].getMessage()
