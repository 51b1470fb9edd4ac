"""The ledger's PostgreSQL down under a running cluster: real processes (cluster/local.py: one
NATS node, PostgreSQL, an active core and a standby, one gateway), PostgreSQL stopped until
the standby has taken the lease, then started again, with nothing restarted by hand.

The finding: the active core stopped (exit 70, its store's reconnection window over), the
standby took the lease, could not open the store and exited too (exit 2), and the cluster
had no core once PostgreSQL was back. A core holding the lease now waits for the store."""

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

from cli.main import main
from cluster.local import LocalCluster
from cluster.nats import free_ports
from core.cluster_core import LEASE_TTL_S
from settlement.pg_store import RECONNECT_WINDOW_S, PostgresLedgerStore
from tests.cli.test_pg_outage import trades
from tests.cluster.running import local_cluster
from tests.sample_config import SAMPLE_CONFIG

EXIT_WITHIN_S = RECONNECT_WINDOW_S + 10  # the store's window, then its failure, on a busy box
TAKEOVER_WITHIN_S = LEASE_TTL_S + 10  # the dead core's term runs out, then the standby's poll
SERVED_WITHIN_S = 20  # PostgreSQL back: the waiting core's next try (<= 2 s), then recovery
BOOKED_WITHIN_S = 10  # the store thread's gatherings, on a busy machine
TRADE_TIMEOUT_S = 10  # one trade's answers, while a core serves


def deliveries(dsn: str) -> int:
    store = PostgresLedgerStore(dsn)
    try:
        return sum(1 for transfer in store.iter_transfers() if transfer.kind.value == "delivery")
    finally:
        store.close()


def booked(dsn: str, acknowledged: int) -> int:
    """The deliveries in the store once it holds `acknowledged` of them (the store thread
    books a moment after the answers), or after `BOOKED_WITHIN_S`."""
    deadline = time.monotonic() + BOOKED_WITHIN_S
    while (count := deliveries(dsn)) < acknowledged and time.monotonic() < deadline:
        time.sleep(0.1)
    return count


def test_a_core_taking_the_lease_while_postgres_is_down_waits_then_serves() -> None:
    with local_cluster("pg-cluster", nats_nodes=1, postgres=True, cores=2, gateways=1) as cluster:
        assert cluster.postgres is not None and cluster.dsn is not None
        active, standby = cluster.cores
        port = cluster.gateways[0].port
        filled = asyncio.run(trades(port, 2))
        pg_port = cluster.postgres.port
        cluster.postgres.stop("fast")
        # Trades acknowledged from the stream while the store's writes fail: the store is
        # behind, and caught up from the stream by the core that takes over.
        filled += asyncio.run(asyncio.wait_for(trades(port, 1), TRADE_TIMEOUT_S))
        assert active.process is not None
        assert active.process.wait(EXIT_WITHIN_S) == 70  # its store's window ran out
        cluster.wait_for(standby, "holding the lease", TAKEOVER_WITHIN_S)
        cluster.wait_for(standby, "waiting for it, holding the lease", TAKEOVER_WITHIN_S)
        time.sleep(2)  # still down for a few of its retries: it keeps waiting
        assert standby.running()
        cluster.postgres.start(port=pg_port)
        cluster.wait_for(standby, "active at seq", SERVED_WITHIN_S)
        filled += asyncio.run(asyncio.wait_for(trades(port, 2), TRADE_TIMEOUT_S))
        log = standby.log()
        assert log.count("PostgreSQL cannot be opened") == 1, log  # one line per change
        assert "PostgreSQL answers: activating" in log
        # The trade sent during the outage may have executed with its answer lost.
        assert booked(cluster.dsn, filled) in (filled, filled + 1)
        assert main(["ledger", "verify", "--postgres", cluster.dsn]) == 0


def test_a_core_waiting_for_postgres_keeps_its_lease_and_stops_on_sigterm() -> None:
    """A core whose PostgreSQL never answers (nothing listens on its port) holds the lease
    past its TTL while it waits, and a SIGTERM then stops it cleanly (exit 0)."""
    directory = Path(tempfile.mkdtemp(prefix="venue-test-pg-cluster-"))
    cluster = LocalCluster(
        directory, SAMPLE_CONFIG, nats_nodes=1, postgres=False, cores=2, gateways=0
    )
    try:
        cluster.nats.start()
        cluster.dsn = f"postgresql://postgres@127.0.0.1:{free_ports(1)[0]}/venue_ledger"
        first, second = cluster.cores
        cluster.start_role(first)
        cluster.wait_for(first, "waiting for it, holding the lease")
        cluster.start_role(second)
        cluster.wait_for(second, "the lease is held: standby")
        time.sleep(LEASE_TTL_S + 2)  # past a term: renewed while it waits, not taken over
        assert first.running() and second.running()
        assert "holding the lease: active core" not in second.log()
        assert cluster.terminate(first) == 0, first.log()
        assert "stopped cleanly" in first.log()
        assert first.log().count("cannot be opened") == 1, first.log()
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)
