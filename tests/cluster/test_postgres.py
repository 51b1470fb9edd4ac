"""`cluster.postgres`: a real throwaway PostgreSQL on loopback, started, used and stopped."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
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


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped by its new parent, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def test_the_server_is_a_child_that_dies_with_its_parent(directory: Path) -> None:
    """A test run killed with -9 leaves no server behind (pg_ctl's daemon outlived it)."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from cluster.postgres import PostgresServer\n"
        "server = PostgresServer(Path(sys.argv[1])).start()\n"
        "print(server.process.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    root = Path(__file__).resolve().parents[2]
    runner = subprocess.Popen(
        [sys.executable, "-c", script, str(directory)],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        assert runner.stdout is not None
        postmaster = int(runner.stdout.readline())
        assert _parent_of(postmaster) == runner.pid
    finally:
        runner.kill()
        runner.wait(30)
    for _ in range(600):  # bounded: a fast shutdown of an idle server takes well under 60 s
        if not _alive(postmaster):
            break
        time.sleep(0.1)
    assert not _alive(postmaster), "the server outlived the process that started it"


def test_a_started_server_is_our_child_and_reaped_on_stop(directory: Path) -> None:
    server = PostgresServer(directory).start()
    try:
        assert server.process is not None
        pid = server.process.pid
        assert _parent_of(pid) == os.getpid()
    finally:
        server.stop()
    assert server.process is None and not _alive(pid)
