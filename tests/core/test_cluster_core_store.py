"""The cluster core's start on a PostgreSQL ledger store that answers but fails its writes (a
full disk: `DiskFull`). A takeover catches the store up from the stream; a store refusing
that write made the core exit 2 (`cannot start: the ledger store: could not extend file ...
No space left on device`), the lease given up to no one: the standby had taken over from an
active core that exited 70 on the same full disk, so no core was left, even once the disk had
room (session 32's trial). Now the core holds the lease and tries its start again, saying so,
and serves once the store takes the writes. A real nats-server (one node), a real PostgreSQL
whose `transfers` refuse inserts with the server's own `disk_full` error (a trigger: a full
disk in this process without a mount), `ClusterCore`s in this process."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import msgspec
import psycopg
import pytest

from cluster.nats import NatsCluster
from core import config as venue_config
from core.cluster_core import ClusterCore
from core.ledger_writer import open_store
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


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path / "nats", size=1) as started:
        yield started


def test_a_takeover_whose_store_refuses_its_catch_up_holds_the_lease_and_serves_after(
    node: NatsCluster, tmp_path: Path, postgres_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
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
