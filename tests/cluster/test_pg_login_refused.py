"""A core whose own PostgreSQL login is refused, as real processes (cluster/local.py: one NATS
node, PostgreSQL, two cores started by hand with DSNs of their own, no gateway).

The finding (carried since session 32): the refused core took the lease and waited for its
store as for a server down, renewing the lease for ever, and the healthy standby never took
over: libpq reports a refused login with no SQLSTATE, as it reports a server down. The core
now reads the SQLSTATE the server sent from libpq's VERBOSE message (`try_connect`): a
refused login (class 28, 3D000, 42501, or no password to give) gives the lease up at once,
saying why; any other failure is waited for."""

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
import types
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cluster.local import DATABASE, LocalCluster, Role
from cluster.postgres import PostgresServer, free_port
from core.cluster_core import DSN_FROM_FLAG, LEASE_TTL_S, ClusterCore, _StartGivenUp
from core.jetstream_journal import STREAM_DEFAULT
from settlement.pg_store import CONNECT_TIMEOUT_S, SQLSTATE_IN_MESSAGE, ConnectFailure, try_connect
from tests.sample_config import SAMPLE_CONFIG

ROLE = "core_a"  # the refused core's own role
# The healthy standby's takeover once the refused core gave the lease up: at once (the
# standby's next poll), plus its start and recovery on a busy machine. Without the fix it
# never came (the refused core renewed the lease for ever).
TAKEOVER_WITHIN_S = LEASE_TTL_S + 20
GIVE_UPS = 3  # the refused core's, alone with the stream
SILENT_S = 3.0  # `try_connect`'s time for each host, where one never answers
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


@contextlib.contextmanager
def two_cores_and_postgres() -> Iterator[tuple[LocalCluster, str]]:
    """A cluster of two cores (not started), NATS and PostgreSQL started, the ledger's
    database made: the cluster and a DSN whose login works; stopped and removed after."""
    directory = Path(tempfile.mkdtemp(prefix="venue-test-pg-login-"))
    directory.chmod(0o711)  # PostgreSQL runs as the postgres user inside it
    cluster = LocalCluster(
        directory, SAMPLE_CONFIG, nats_nodes=1, postgres=True, cores=2, gateways=0
    )
    try:
        assert cluster.postgres is not None
        cluster.nats.start()
        cluster.postgres.start()
        yield cluster, cluster.postgres.create_database(DATABASE)
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize(
    "refused", [refuse_by_password, refuse_by_role_gone], ids=["wrong-password", "role-gone"]
)
def test_a_core_whose_login_is_refused_gives_the_lease_up_to_a_healthy_standby(
    refused: Callable[[PostgresServer, str], str],
) -> None:
    with two_cores_and_postgres() as (cluster, good_dsn):
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


def test_a_refused_core_giving_the_lease_up_again_and_again_leaves_no_follower_behind() -> None:
    """The refused core alone with the stream (the healthy core that made it stopped): it
    takes the lease, gives it up, stands by, takes it again a term later, and so on. Each
    give-up replaced its warm copy without stopping the old one until session 36's review:
    a consumer on the stream, a venue copy and a snapshot writer more each time (consumers
    seen 1, 3, 4, ...); then, until its second review, stopped it and followed afresh,
    restoring its snapshot and replaying the stream again at each give-up, where the copy,
    taken by no start, could follow on. Its login fixed, it serves."""
    with two_cores_and_postgres() as (cluster, good_dsn):
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
            # the give-up's line alone (the start's check says "refused this core's login" too)
            wait_for_count(refused, "giving the lease up to a standby", give_ups)
            seen.append(consumers_on_the_stream(cluster))  # (for the message)
        assert settles_at_one(cluster), (seen, refused.log())
        # its copy kept following throughout: no start took it, nothing replayed onto it
        assert refused.log().count("standby following the stream") == 1, refused.log()
        with psycopg.connect(good_dsn, autocommit=True) as connection:
            # its DSN's password made right; a superuser, as the store's tables are postgres's
            connection.execute(f"ALTER ROLE {ROLE} SUPERUSER PASSWORD 'wrong'")
        cluster.wait_for(refused, "active at seq", TAKEOVER_WITHIN_S)


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


def decided(dsn: str, timeout_s: float = CONNECT_TIMEOUT_S) -> tuple[str | None, bool]:
    """The SQLSTATEs a connection to `dsn` failed with, as libpq's message says them (one
    per attempt it made that the server refused), and whether it is a refused login."""
    failure = try_connect(dsn, timeout_s)
    assert failure is not None, f"{dsn} connected"
    codes = sorted(set(SQLSTATE_IN_MESSAGE.findall(failure.message)))
    return " ".join(codes) or None, failure.refuses_login


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


def test_a_refused_login_is_told_on_each_of_libpq_s_attempts_with_ssl_or_not() -> None:
    """A server taking this core's role over SSL alone (`hostssl` lines, as a managed
    PostgreSQL forcing SSL): with libpq's default sslmode (prefer) a wrong password is
    refused twice, 28P01 with SSL, then 28000 without (no line takes it). Until session 36's
    second review the two codes made no one code, and the login was waited for as a server
    down, for ever: a refusal is one where every code read refuses."""
    directory = Path(tempfile.mkdtemp(prefix="venue-test-pg-login-"))
    directory.chmod(0o711)
    try:
        with PostgresServer(directory) as server:
            good_dsn = server.create_database(DATABASE)
            wrong_password = refuse_by_password_over_ssl_alone(server, good_dsn)
            assert try_connect(wrong_password.replace(":wrong@", ":right@")) is None
            assert decided(wrong_password) == ("28000 28P01", True)  # (prefer: both)
            assert decided(with_option(wrong_password, "sslmode=require")) == ("28P01", True)
            assert decided(with_option(wrong_password, "sslmode=disable")) == ("28000", True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_a_refused_login_is_told_across_several_hosts_each_given_its_own_time() -> None:
    """A DSN of several hosts (`host=a,b port=A,B`, libpq's form for a primary and its
    replicas): each host is given `timeout_s` of its own, as psycopg's connect gives it;
    until session 36's second review one deadline held for them all, a first host that
    takes the TCP connection and never answers used it up, and the core waited for ever
    where psycopg would have reached the second. A host that never answers says nothing:
    the refusal is the answering hosts' alone."""
    directory = Path(tempfile.mkdtemp(prefix="venue-test-pg-login-"))
    directory.chmod(0o711)
    try:
        with PostgresServer(directory) as server, silent_listener() as silent_port:
            server.create_database(DATABASE)
            refuse_by_password(server, server.dsn(DATABASE))
            closed_port = free_port()

            def hosts(first_port: int, user: str, database: str = DATABASE) -> str:
                ports = f"port={first_port},{server.port}"
                return f"host=127.0.0.1,127.0.0.1 {ports} dbname={database} user={user}"

            assert try_connect(hosts(silent_port, "postgres"), SILENT_S) is None
            assert try_connect(hosts(closed_port, "postgres"), SILENT_S) is None
            wrong_password = hosts(silent_port, f"{ROLE} password=wrong")
            assert decided(wrong_password, SILENT_S) == ("28P01", True)
            assert decided(hosts(closed_port, "nobody"), SILENT_S) == ("28000", True)
            # a host with no answer: said in the error line (a primary down, its replica
            # refusing the role), each attempt counted
            role_not_there = try_connect(hosts(closed_port, "nobody"), SILENT_S)
            assert role_not_there is not None
            assert "1 of 2 attempts did not answer" in role_not_there.said, role_not_there
            no_database = hosts(silent_port, "postgres", "no_such_database")
            assert decided(no_database, SILENT_S) == ("3D000", True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_a_connection_failing_as_ssl_is_set_up_is_waited_for() -> None:
    """libpq giving up as it sets up SSL, the server saying nothing (`sslmode=require`
    against a server without SSL, a server certificate that fails `verify-ca`): no SQLSTATE,
    as a server down, and waited for as one (the core holding the lease). Session 37 took it
    for the operator's by libpq's state (SSL start-up) and gave the lease up; its fix round
    took that out: a proxy whose backend is down, or a postmaster that cannot fork, fails in
    that same state (tests/settlement/test_pg_store.py, a listener that closes)."""
    directory = Path(tempfile.mkdtemp(prefix="venue-test-pg-login-"))
    directory.chmod(0o711)
    try:
        with PostgresServer(directory) as server:
            good_dsn = server.create_database(DATABASE)
            no_ssl = with_option(good_dsn, "sslmode=require")
            assert decided(no_ssl) == (None, False)
            stranger = directory / "stranger.crt"  # a CA that did not sign the server's
            made = ["-new", "-x509", "-days", "2", "-nodes", "-subj", "/CN=stranger"]
            key = ["-keyout", str(directory / "stranger.key"), "-out", str(stranger)]
            subprocess.run(["openssl", "req", *made, *key], check=True, capture_output=True)
            refuse_by_password_over_ssl_alone(server, good_dsn)  # (SSL on)
            assert try_connect(no_ssl) is None
            wrong_ca = with_option(good_dsn, f"sslmode=verify-ca&sslrootcert={stranger}")
            failure = try_connect(wrong_ca)
            assert failure is not None and not failure.refused, failure
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def refuse_by_password_over_ssl_alone(server: PostgresServer, good_dsn: str) -> str:
    """The server with SSL on (a certificate of its own) taking `ROLE` over SSL alone, with
    a password (`hostssl`), and refusing it without (`hostnossl ... reject`); a DSN giving
    the wrong password, libpq's sslmode left as it is."""
    data = server.data_dir
    certificate = ["-out", str(data / "server.crt"), "-keyout", str(data / "server.key")]
    made = ["-new", "-x509", "-days", "2", "-nodes", "-subj", "/CN=localhost"]
    subprocess.run(["openssl", "req", *made, *certificate], check=True, capture_output=True)
    owner = data.stat()  # (the server's user owns its data directory)
    for name in ("server.crt", "server.key"):
        os.chown(data / name, owner.st_uid, owner.st_gid)
        (data / name).chmod(0o600)
    with psycopg.connect(good_dsn, autocommit=True) as connection:
        connection.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD 'right'")
        connection.execute("ALTER SYSTEM SET ssl = on")
    hba = data / "pg_hba.conf"
    rules = (
        f"hostssl all {ROLE} 127.0.0.1/32 scram-sha-256\nhostnossl all {ROLE} 127.0.0.1/32 reject\n"
    )
    hba.write_text(rules + hba.read_text())
    server.restart()
    return good_dsn.replace("postgres@", f"{ROLE}:wrong@")


def with_option(dsn: str, option: str) -> str:
    """`dsn` (a URL) with one more `name=value`."""
    return dsn + ("&" if "?" in dsn else "?") + option


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A port that takes TCP connections and never answers (a host hung, a firewall's
    tarpit): a client waits there till its own timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_a_refused_login_is_one_every_answer_refuses() -> None:
    """The rule over libpq's attempts together (`ConnectFailure.refuses_login`): every code
    read refuses and at least one answer came; any other code (a host starting, one full)
    makes it the store's, waited for; attempts that had no answer say nothing."""
    assert ConnectFailure(frozenset({"28P01", "28000"}), "").refuses_login
    assert ConnectFailure(frozenset(), "", no_password=True).refuses_login
    assert not ConnectFailure(frozenset({"28P01", "57P03"}), "").refuses_login
    assert not ConnectFailure(frozenset({"53300"}), "", no_password=True).refuses_login
    assert not ConnectFailure(frozenset(), "").refuses_login


def core_waiting_for(dsn: str) -> Any:
    """A core's `_wait_for_store` on `dsn`, as a cluster's core runs it (its own config and
    name alone: the rest of a core is not reached)."""
    venue = types.SimpleNamespace(ledger_postgres=dsn)
    config = types.SimpleNamespace(venue=venue)
    core = types.SimpleNamespace(config=config, name="core-x", dsn_setting=DSN_FROM_FLAG)
    core._say_store_refused = lambda failure: ClusterCore._say_store_refused(core, failure)
    return core


def test_a_stop_does_not_wait_for_a_store_check_under_way() -> None:
    """Two hosts that take TCP and never answer: one check is `CONNECT_TIMEOUT_S` for each
    (20 s). Until session 36's third review a stop waited for the check under way to end
    (19.5 s seen); now `_wait_for_store` returns at the stop and the check ends at its next
    look (the whole run, the executor's threads joined, within one host's time)."""
    with silent_listener() as first, silent_listener() as second:
        dsn = f"host=127.0.0.1,127.0.0.1 port={first},{second} dbname=x user=y"

        async def stopped_while_checking() -> bool:
            stopping = asyncio.Event()
            waiting = asyncio.ensure_future(
                ClusterCore._wait_for_store(core_waiting_for(dsn), stopping)
            )
            await asyncio.sleep(0.5)  # the check under way, on the first host
            stopping.set()
            return await waiting

        started = time.monotonic()
        assert asyncio.run(stopped_while_checking()) is False
        assert time.monotonic() - started < CONNECT_TIMEOUT_S


@pytest.mark.parametrize(
    "dsn",
    [
        "host=a..b dbname=x",  # an empty label: Python's name encoding refuses it
        f"host={'a' * 64}.example dbname=x",  # a label over 63 characters
        "host=a,b,c port=1,2 dbname=x",  # ports not matching the hosts
        "nonsense",  # not key=value
        "host=127.0.0.1 dbname=x no_such_option=1",
        "host=127.0.0.1 port=abc dbname=x",  # libpq refuses it as it starts connecting
        "host=127.0.0.1 dbname=x sslmode=bogus",  # likewise
    ],
    ids=[
        "empty-label",
        "long-label",
        "ports-and-hosts",
        "not-key-value",
        "unknown-option",
        "port-not-a-number",
        "sslmode-not-libpq-s",
    ],
)
def test_a_wrong_dsn_is_said_and_gives_the_lease_up(
    dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A DSN that cannot be tried at all (its text, its hosts' names as Python encodes them,
    its hosts and ports not matching): until session 36's third review a name that Python
    cannot encode raised out of `try_connect`, a bare traceback stopping the core, and a
    DSN refused by psycopg was waited for as a server down. Now a failure saying the DSN is
    wrong, and the core gives the lease up saying so at error, as for a refused login."""
    failure = try_connect(dsn)
    assert failure is not None and failure.dsn_wrong, failure
    assert not failure.refuses_login
    with caplog.at_level(logging.ERROR, logger="venue.cluster"), pytest.raises(_StartGivenUp):
        asyncio.run(ClusterCore._wait_for_store(core_waiting_for(dsn), asyncio.Event()))
    assert "DSN is wrong (" in caplog.text, caplog.text
    assert caplog.text.count("is wrong") == 1, caplog.text  # until session 38 said twice
