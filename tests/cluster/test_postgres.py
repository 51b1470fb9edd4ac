"""`cluster.postgres`: a real throwaway PostgreSQL on loopback, started, used and stopped."""

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cluster.postgres import PostgresError, PostgresServer, server_bin_dir


@pytest.fixture
def directory() -> Iterator[Path]:
    """A directory the postgres user may enter (pytest's tmp_path is private to root)."""
    made = Path(tempfile.mkdtemp(prefix="venue-test-pg-"))
    made.chmod(0o711)
    yield made
    shutil.rmtree(made, ignore_errors=True)


def query(dsn: str, sql: str) -> object:
    with psycopg.connect(dsn, autocommit=True) as connection:
        row = connection.execute(sql).fetchone()
    assert row is not None
    return row[0]


def test_the_server_binaries_are_found() -> None:
    found = server_bin_dir()
    assert all((found / name).is_file() for name in ("initdb", "pg_ctl", "postgres"))


def test_a_server_starts_serves_a_new_database_and_stops(directory: Path) -> None:
    server = PostgresServer(directory)
    with server:
        dsn = server.create_database("ledger_one")
        assert dsn == f"postgresql://postgres@127.0.0.1:{server.port}/ledger_one"
        assert query(dsn, "SELECT current_database()") == "ledger_one"
        assert query(dsn, "SHOW listen_addresses") == "127.0.0.1"
        assert query(dsn, "SHOW unix_socket_directories") == str(server.socket_dir)
    assert not (server.data_dir / "postmaster.pid").exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=5)
    server.stop()  # stopping a stopped server is harmless


def test_a_restarted_server_keeps_its_databases(directory: Path) -> None:
    with PostgresServer(directory) as server:
        dsn = server.create_database("kept")
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (42)")
    with PostgresServer(directory) as again:  # no initdb this time; a new free port
        assert query(again.dsn("kept"), "SELECT n FROM t") == 42
        again.drop_database("kept")
        with pytest.raises(psycopg.OperationalError, match="does not exist"):
            psycopg.connect(again.dsn("kept"), connect_timeout=5)


@pytest.mark.parametrize("name", ["Upper", "semi;colon", "", "x" * 64, "1starts_with_digit"])
def test_a_database_name_needing_quotes_is_refused(directory: Path, name: str) -> None:
    server = PostgresServer(directory)  # refused before any server is needed
    with pytest.raises(PostgresError, match="is not lower-case letters"):
        server.create_database(name)


@pytest.mark.skipif(os.geteuid() != 0, reason="as root only: the server then runs as postgres")
def test_a_directory_the_server_user_cannot_enter_is_refused(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(PostgresError, match="cannot reach"):
        PostgresServer(private / "inner").start()
