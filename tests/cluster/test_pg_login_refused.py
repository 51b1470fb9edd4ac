"""A core whose own PostgreSQL login is refused, as real processes (cluster/local.py: one NATS
node, PostgreSQL, two cores started by hand with DSNs of their own, no gateway).

The finding (carried since session 32): the refused core took the lease and waited for its
store as for a server down, renewing the lease for ever, and the healthy standby never took
over: libpq reports a refused login with no SQLSTATE, as it reports a server down. The core
now asks the server whether it is up (libpq's ping: up and answering is a refusal of this
core's login) and gives the lease up at once, saying why."""

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from cluster.local import DATABASE, LocalCluster
from cluster.postgres import PostgresServer
from core.cluster_core import LEASE_TTL_S
from settlement.pg_store import refuses_login
from tests.sample_config import SAMPLE_CONFIG

ROLE = "core_a"  # the refused core's own role
# The healthy standby's takeover once the refused core gave the lease up: at once (the
# standby's next poll), plus its start and recovery on a busy machine. Without the fix it
# never came (the refused core renewed the lease for ever).
TAKEOVER_WITHIN_S = LEASE_TTL_S + 20


def refuse_by_password(cluster: LocalCluster, good_dsn: str) -> str:
    """`ROLE` with a password, asked for on loopback (`scram-sha-256` in pg_hba.conf, read
    before the cluster's `trust` lines); a DSN giving the wrong one."""
    assert cluster.postgres is not None
    with psycopg.connect(good_dsn, autocommit=True) as connection:
        connection.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD 'right'")
        hba = cluster.postgres.data_dir / "pg_hba.conf"
        rule = f"host all {ROLE} 127.0.0.1/32 scram-sha-256\n"
        hba.write_text(rule + hba.read_text())  # (written as root: the server reads it)
        connection.execute("SELECT pg_reload_conf()")
    return good_dsn.replace("postgres@", f"{ROLE}:wrong@")


def refuse_by_role_gone(cluster: LocalCluster, good_dsn: str) -> str:
    """A DSN naming a role the server does not have (dropped, or never made)."""
    return good_dsn.replace("postgres@", f"{ROLE}@")


@pytest.mark.parametrize(
    "refused", [refuse_by_password, refuse_by_role_gone], ids=["wrong-password", "role-gone"]
)
def test_a_core_whose_login_is_refused_gives_the_lease_up_to_a_healthy_standby(
    refused: Callable[[LocalCluster, str], str],
) -> None:
    directory = Path(tempfile.mkdtemp(prefix="venue-test-pg-login-"))
    directory.chmod(0o711)  # PostgreSQL runs as the postgres user inside it
    cluster = LocalCluster(
        directory, SAMPLE_CONFIG, nats_nodes=1, postgres=True, cores=2, gateways=0
    )
    try:
        assert cluster.postgres is not None
        cluster.nats.start()
        cluster.postgres.start()
        good_dsn = cluster.postgres.create_database(DATABASE)
        first, second = cluster.cores
        cluster.dsn = refused(cluster, good_dsn)
        cluster.start_role(first)
        cluster.wait_for(first, "holding the lease: active core")
        cluster.dsn = good_dsn
        cluster.start_role(second)
        cluster.wait_for(second, "active at seq", TAKEOVER_WITHIN_S)
        assert first.running(), first.log()  # a standby again, not gone
        log = first.log()
        assert "refused this core's login" in log, log
        assert "giving the lease up" in log, log
        assert "waiting for it, holding the lease" not in log, log
        time.sleep(1)  # the healthy core keeps it: the refused one stands by
        assert second.running() and "lost its lease" not in second.log()
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


def test_a_refused_login_is_told_from_a_server_down_or_starting() -> None:
    """`refuses_login`, the core's test, without the words: a role or database not there
    refused (the server answered), a server stopped or not accepting connections yet not
    (waited for), a login that works not."""
    directory = Path(tempfile.mkdtemp(prefix="venue-test-pg-login-"))
    directory.chmod(0o711)
    try:
        with PostgresServer(directory) as server:
            good_dsn = server.create_database(DATABASE)
            assert not refuses_login(good_dsn)
            assert refuses_login(good_dsn.replace("postgres@", f"{ROLE}@"))
            assert refuses_login(server.dsn("no_such_database"))
            port = server.port
            server.stop()
            assert not refuses_login(good_dsn)  # nothing listens
            server.start_not_accepting(port)  # it answers 57P03, as while it starts up
            assert not refuses_login(good_dsn)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
