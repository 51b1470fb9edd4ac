"""A core whose own PostgreSQL login is refused, as real processes (cluster/local.py: one NATS
node, PostgreSQL, two cores started by hand with DSNs of their own, no gateway).

The finding (carried since session 32): the refused core took the lease and waited for its
store as for a server down, renewing the lease for ever, and the healthy standby never took
over: libpq reports a refused login with no SQLSTATE, as it reports a server down. The core
now reads the SQLSTATE the server sent from libpq's VERBOSE message (`try_connect`): a
refused login (class 28, 3D000, 42501, or no password to give) gives the lease up at once,
saying why; any other failure is waited for."""

import contextlib
import json
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from cluster.local import DATABASE, LocalCluster, Role
from cluster.postgres import PostgresServer
from core.cluster_core import LEASE_TTL_S
from core.jetstream_journal import STREAM_DEFAULT
from settlement.pg_store import try_connect
from tests.sample_config import SAMPLE_CONFIG

ROLE = "core_a"  # the refused core's own role
# The healthy standby's takeover once the refused core gave the lease up: at once (the
# standby's next poll), plus its start and recovery on a busy machine. Without the fix it
# never came (the refused core renewed the lease for ever).
TAKEOVER_WITHIN_S = LEASE_TTL_S + 20
GIVE_UPS = 3  # the refused core's, alone with the stream
SETTLE_S = 15.0  # `settles_at_one`: the ordered consumer's inactive threshold, thrice


def refuse_by_password(server: PostgresServer, good_dsn: str) -> str:
    """`ROLE` with a password, asked for on loopback (`scram-sha-256` in pg_hba.conf, read
    before the cluster's `trust` lines); a DSN giving the wrong one."""
    with psycopg.connect(good_dsn, autocommit=True) as connection:
        connection.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD 'right'")
        hba = server.data_dir / "pg_hba.conf"
        rule = f"host all {ROLE} 127.0.0.1/32 scram-sha-256\n"
        hba.write_text(rule + hba.read_text())  # (written as root: the server reads it)
        connection.execute("SELECT pg_reload_conf()")
    return good_dsn.replace("postgres@", f"{ROLE}:wrong@")


def refuse_by_role_gone(server: PostgresServer, good_dsn: str) -> str:
    """A DSN naming a role the server does not have (dropped, or never made)."""
    return good_dsn.replace("postgres@", f"{ROLE}@")


@pytest.mark.parametrize(
    "refused", [refuse_by_password, refuse_by_role_gone], ids=["wrong-password", "role-gone"]
)
def test_a_core_whose_login_is_refused_gives_the_lease_up_to_a_healthy_standby(
    refused: Callable[[PostgresServer, str], str],
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
        cluster.dsn = refused(cluster.postgres, good_dsn)
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


def test_a_refused_core_giving_the_lease_up_again_and_again_leaves_no_follower_behind() -> None:
    """The refused core alone with the stream (the healthy core that made it stopped): it
    takes the lease, gives it up, stands by, takes it again a term later, and so on. Each
    give-up replaced its warm copy without stopping the old one until session 36's review:
    a consumer on the stream, a venue copy and a snapshot writer more each time (consumers
    seen 1, 3, 4, ...). Its login fixed, it serves."""
    directory = Path(tempfile.mkdtemp(prefix="venue-test-pg-login-"))
    directory.chmod(0o711)
    cluster = LocalCluster(
        directory, SAMPLE_CONFIG, nats_nodes=1, postgres=True, cores=2, gateways=0
    )
    try:
        assert cluster.postgres is not None
        cluster.nats.start()
        cluster.postgres.start()
        good_dsn = cluster.postgres.create_database(DATABASE)
        healthy, refused = cluster.cores
        cluster.dsn = good_dsn
        cluster.start_role(healthy)
        cluster.wait_for(healthy, "active at seq")  # the stream made
        cluster.dsn = refuse_by_password(cluster.postgres, good_dsn)
        cluster.start_role(refused)
        cluster.wait_for(refused, "standby following the stream")
        assert cluster.terminate(healthy) == 0, healthy.log()
        seen = []
        for give_ups in range(1, GIVE_UPS + 1):
            wait_for_count(refused, "refused this core's login", give_ups)
            wait_for_count(refused, "standby following the stream", give_ups + 1)
            seen.append(consumers_on_the_stream(cluster))  # (for the message)
        assert settles_at_one(cluster), (seen, refused.log())
        with psycopg.connect(good_dsn, autocommit=True) as connection:
            # its DSN's password made right; a superuser, as the store's tables are postgres's
            connection.execute(f"ALTER ROLE {ROLE} SUPERUSER PASSWORD 'wrong'")
        cluster.wait_for(refused, "active at seq", TAKEOVER_WITHIN_S)
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


def wait_for_count(role: Role, text: str, count: int) -> None:
    """Until `role`'s log holds `text` `count` times (a term and a start apart at most)."""
    deadline = time.monotonic() + TAKEOVER_WITHIN_S
    while role.log().count(text) < count:
        assert role.running(), role.log()
        assert time.monotonic() < deadline, f"{text!r} not {count} times: {role.log()}"
        time.sleep(0.2)


def consumers_on_the_stream(cluster: LocalCluster) -> int:
    """How many consumers the journal's stream has (NATS's monitoring endpoint)."""
    node = cluster.nats.nodes[0]
    url = f"http://127.0.0.1:{node.monitor_port}/jsz?streams=true"
    with urllib.request.urlopen(url, timeout=2.0) as response:
        details = json.load(response)
    for account in details.get("account_details", []):
        for stream in account.get("stream_detail", []):
            if stream["name"] == STREAM_DEFAULT:
                return int(stream["state"]["consumer_count"])
    raise AssertionError(f"no stream {STREAM_DEFAULT}: {details}")


def settles_at_one(cluster: LocalCluster) -> bool:
    """Whether the consumers come down to the standby's one within `SETTLE_S`: a stopped
    copy's consumer is deleted by the server once it has had no subscriber for its inactive
    threshold (nats-py's ordered consumer: 5 s); a copy left following never is."""
    deadline = time.monotonic() + SETTLE_S
    while consumers_on_the_stream(cluster) > 1:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_a_refused_login_is_told_from_a_server_down_starting_or_full() -> None:
    """`try_connect`, the core's test, by the SQLSTATE the server sent, not its words: a
    wrong password, a role or database not there, no CONNECT privilege refused (class 28,
    3D000, 42501), and no password given where one is asked; no slot left (53300), a server
    stopped, one not accepting connections yet (57P03) not: the store's, waited for (until
    session 36's review 53300 was taken for a refused login: the server answered); a login
    that works not."""
    directory = Path(tempfile.mkdtemp(prefix="venue-test-pg-login-"))
    directory.chmod(0o711)
    try:
        with PostgresServer(directory) as server:
            good_dsn = server.create_database(DATABASE)
            assert try_connect(good_dsn) is None
            wrong_password = refuse_by_password(server, good_dsn)
            assert decided(wrong_password) == ("28P01", True)
            # asked for a password, none given: the client gives up (no SQLSTATE)
            assert decided(wrong_password.replace(":wrong@", "@")) == (None, True)
            assert decided(good_dsn.replace("postgres@", "nobody@")) == ("28000", True)
            assert decided(server.dsn("no_such_database")) == ("3D000", True)
            with slots_taken(server, good_dsn) as full_dsn:
                assert decided(full_dsn) == ("53300", False)
            assert decided(refuse_by_privilege(server, good_dsn)) == ("42501", True)  # (last)
            port = server.port
            server.stop()
            assert decided(good_dsn) == (None, False)  # nothing listens
            server.start_not_accepting(port)  # it answers 57P03, as while it starts up
            assert decided(good_dsn) == ("57P03", False)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def decided(dsn: str) -> tuple[str | None, bool]:
    """The SQLSTATE a connection to `dsn` failed with, and whether it is a refused login."""
    failure = try_connect(dsn)
    assert failure is not None, f"{dsn} connected"
    return failure.sqlstate, failure.refuses_login


def refuse_by_privilege(server: PostgresServer, good_dsn: str) -> str:
    """A role that may log in but not connect to the database (42501)."""
    with psycopg.connect(good_dsn, autocommit=True) as connection:
        connection.execute("CREATE ROLE no_connect LOGIN")
        connection.execute(f"REVOKE CONNECT ON DATABASE {DATABASE} FROM PUBLIC")
    return good_dsn.replace("postgres@", "no_connect@")


@contextlib.contextmanager
def slots_taken(server: PostgresServer, good_dsn: str) -> Iterator[str]:
    """A role allowed one connection (`CONNECTION LIMIT`), which is held: a DSN whose next
    connection the server refuses with 53300 (too many connections), as it does a server's
    last slot taken (`max_connections`: the test server's is set on its command line)."""
    with psycopg.connect(good_dsn, autocommit=True) as connection:
        connection.execute("CREATE ROLE one_slot LOGIN CONNECTION LIMIT 1")
    full_dsn = good_dsn.replace("postgres@", "one_slot@")
    held = psycopg.connect(full_dsn)
    try:
        with pytest.raises(psycopg.OperationalError) as full:
            psycopg.connect(full_dsn).close()
        assert "too many connections" in str(full.value), full.value  # (the C locale's words)
        yield full_dsn
    finally:
        held.close()
