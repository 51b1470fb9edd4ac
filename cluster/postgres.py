"""A throwaway PostgreSQL on loopback: the ledger store's database for tests and local clusters.

Owns starting and stopping one server: `initdb` into a directory of its own under the one
the caller gives, a free port on 127.0.0.1, its unix socket inside that directory, trust
auth for the `postgres` user on loopback only. PostgreSQL refuses to run as root, so as
root every server command runs as the `postgres` user (runuser) and the directory is
chowned to it; as anyone else, as that user. The server (`postgres -D`) is a child of the
process that starts it, not a daemon: it gets SIGINT (a fast shutdown) when its parent dies, so
a test run killed by a timeout leaves no server behind (tied to the starting thread, as
cluster/nats.py's nodes). Waiting is bounded; a server that does not stop fast is killed.
Databases are created on demand and named by the caller.
Debian keeps the server binaries off the PATH, under /usr/lib/postgresql/<version>/bin
(scripts/install-postgres.sh installs them); `VENUE_PG_BIN` names another directory.
"""

import contextlib
import ctypes
import os
import pwd
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

import psycopg

SERVER_USER: Final = "postgres"  # the Debian package's user; the database superuser too
DEBIAN_BIN_GLOB: Final = "/usr/lib/postgresql/*/bin"
START_TIMEOUT_S: Final = 60  # initdb and a first start on a busy 2-core machine take seconds
STOP_TIMEOUT_S: Final = 30  # a fast shutdown rolls back and checkpoints; longer is stuck
COMMAND_TIMEOUT_S: Final = 120  # initdb writes ~40 MB and fsyncs it
PORT_ATTEMPTS: Final = 3  # a free port can be taken between the probe and the bind
READY_POLL_S: Final = 0.1  # between connection attempts while the server starts
PR_SET_PDEATHSIG: Final = 1  # linux/prctl.h
STOP_MODES: Final = ("fast", "immediate")  # pg_ctl's "smart" waits for clients to leave
DATABASE_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")  # no quoting needed, 63 bytes max


class PostgresError(RuntimeError):
    """The server could not be set up, started or reached; the message says why."""


def server_bin_dir() -> Path:
    """The directory holding initdb, pg_ctl and postgres: the newest Debian version's."""
    override = os.environ.get("VENUE_PG_BIN")
    candidates = [Path(override)] if override else _debian_bin_dirs()
    for candidate in candidates:
        if all((candidate / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return candidate
    raise PostgresError(
        "PostgreSQL's server binaries (initdb, pg_ctl, postgres) are not installed:"
        " run scripts/install-postgres.sh (Debian's postgresql package)"
    )


def _debian_bin_dirs() -> list[Path]:
    found = Path("/").glob(DEBIAN_BIN_GLOB.lstrip("/"))
    return sorted(found, key=lambda path: _version_key(path.parent.name), reverse=True)


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit()) or (0,)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PostgresServer:
    """One PostgreSQL server in `directory`/postgres; `start()`, `create_database()`, `stop()`."""

    def __init__(self, directory: Path) -> None:
        self.home = Path(directory).resolve() / "postgres"
        self.data_dir = self.home / "data"
        self.socket_dir = self.home / "socket"
        self.log_file = self.home / "server.log"
        self.port = 0
        self._bin = server_bin_dir()
        self._as_server_user = os.geteuid() == 0
        self.process: subprocess.Popen[bytes] | None = None  # the postmaster, our child

    # ----------------------------------------------------------------- lifecycle

    def start(self, port: int = 0) -> "PostgresServer":
        """Initialise (first time) and start the server; returns once it takes connections.
        On `port` if given (a restart keeps its clients' DSNs), else on a free one."""
        self._prepare_home()
        if not (self.data_dir / "PG_VERSION").exists():
            initdb = ["-D", str(self.data_dir), "-U", SERVER_USER, "--auth=trust"]
            self._run("initdb", [*initdb, "--encoding=UTF8", "--locale=C", "--no-instructions"])
        if port:
            self.port = port
            self._start_server()
            return self
        for attempt in range(PORT_ATTEMPTS):
            self.port = free_port()
            try:
                self._start_server()
                return self
            except PostgresError:
                self._kill()
                if attempt == PORT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable: the last attempt raises")

    def stop(self, mode: str = "fast") -> None:
        """Stop: `fast` rolls back open transactions and checkpoints, `immediate` quits at
        once (crash recovery at the next start); kill when that fails."""
        if mode not in STOP_MODES:
            raise PostgresError(f"stop mode {mode!r} is not one of {', '.join(STOP_MODES)}")
        if not (self.data_dir / "postmaster.pid").exists():
            return
        try:
            self._run(
                "pg_ctl",
                ["stop", "-D", str(self.data_dir), "-m", mode, "-w", "-t", str(STOP_TIMEOUT_S)],
            )
        except PostgresError:
            self._kill()
        self._reap()

    def restart(self, mode: str = "fast") -> None:
        """Stop (`mode` as `stop`) and start again on the same port."""
        port = self.port
        self.stop(mode)
        self.start(port)

    def start_not_accepting(self, port: int) -> None:
        """Start the initialised (stopped) server on `port` as a standby with hot standby off:
        it answers every connection "the database system is not accepting connections"
        (SQLSTATE 57P03, as while it starts up) until `promote()`. Returns once it runs."""
        (self.data_dir / "standby.signal").write_bytes(b"")
        with (self.data_dir / "postgresql.auto.conf").open("a") as settings:
            settings.write("hot_standby = off\n")
        self.port = port
        self._start_server(ready=False)

    def promote(self) -> None:
        """End a standby's recovery (`start_not_accepting`): it takes connections from now."""
        self._run("pg_ctl", ["promote", "-D", str(self.data_dir), "-w", "-t", str(START_TIMEOUT_S)])
        with (self.data_dir / "postgresql.auto.conf").open("a") as settings:
            settings.write("hot_standby = on\n")  # the next start of this directory as usual

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- databases

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SERVER_USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, *, reuse: bool = False) -> str:
        """Create an empty database; its DSN. With `reuse`, one that exists (a restart's, in
        the same directory) is kept as it is, rather than refused."""
        if not DATABASE_NAME.fullmatch(name):
            raise PostgresError(f"database name {name!r} is not lower-case letters, digits, _")
        with psycopg.connect(self.dsn(), autocommit=True) as connection:
            found = "SELECT 1 FROM pg_database WHERE datname = %s"
            if reuse and connection.execute(found, (name,)).fetchone() is not None:
                return self.dsn(name)
            connection.execute(f"CREATE DATABASE {name}")  # name checked above: no injection
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, ending the sessions still on it."""
        if not DATABASE_NAME.fullmatch(name):
            raise PostgresError(f"database name {name!r} is not lower-case letters, digits, _")
        with psycopg.connect(self.dsn(), autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    # ----------------------------------------------------------------- internals

    def _prepare_home(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if not self._as_server_user:
            return
        try:
            user = pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise PostgresError(
                f"no {SERVER_USER} user to run the server as (PostgreSQL refuses root):"
                " run scripts/install-postgres.sh"
            ) from None
        for path in (self.home, self.socket_dir):
            os.chown(path, user.pw_uid, user.pw_gid)
            path.chmod(0o700)
        probe = subprocess.run(
            ["runuser", "-u", SERVER_USER, "--", "test", "-w", str(self.home)], check=False
        )
        if probe.returncode != 0:
            raise PostgresError(
                f"the {SERVER_USER} user cannot reach {self.home}: give a directory whose"
                " parents others may enter (e.g. one made under /tmp, mode 0711)"
            )

    def _start_server(self, ready: bool = True) -> None:
        """Run the postmaster as our child and wait until it takes connections (`ready`), or
        until it has written its pid file."""
        command = [str(self._bin / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        command += ["-k", str(self.socket_dir), "-c", "listen_addresses=127.0.0.1"]
        command += ["-c", "max_connections=50"]
        user = pwd.getpwnam(SERVER_USER) if self._as_server_user else None
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.home,  # the server user may not be allowed in the caller's directory
                env={**os.environ, "LC_ALL": "C"},
                user=user.pw_uid if user else None,
                group=user.pw_gid if user else None,
                extra_groups=[] if user else None,
                start_new_session=True,  # a test's Ctrl-C is not the server's: stop() ends it
                preexec_fn=_stop_with_parent,  # runs after the switch to the server user
            )
        if ready:
            self._wait_ready()
        else:
            self._wait_running()

    def _wait_ready(self) -> None:
        assert self.process is not None, "started just before"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PostgresError(f"postgres exited ({self.process.returncode}): {self._why('')}")
            try:
                psycopg.connect(self.dsn(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                time.sleep(READY_POLL_S)
        raise PostgresError(f"postgres did not take connections in {START_TIMEOUT_S} s")

    def _wait_running(self) -> None:
        """Until the postmaster listens (its pid file's status line says so)."""
        assert self.process is not None, "started just before"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PostgresError(f"postgres exited ({self.process.returncode}): {self._why('')}")
            with contextlib.suppress(OSError):
                lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
                if len(lines) >= 8 and lines[7].strip() in ("starting", "standby", "ready"):
                    return
            time.sleep(READY_POLL_S)
        raise PostgresError(f"postgres did not start in {START_TIMEOUT_S} s")

    def _reap(self) -> None:
        """Wait for our postmaster child once it is stopped (no zombie left)."""
        if self.process is None:
            return
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_S)
        self.process = None

    def _run(self, program: str, arguments: list[str]) -> None:
        command = [str(self._bin / program), *arguments]
        if self._as_server_user:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        try:
            subprocess.run(
                command,
                check=True,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT_S,
                cwd=self.home,  # the server user may not be allowed in the caller's directory
                env={**os.environ, "LC_ALL": "C"},
            )
        except subprocess.CalledProcessError as failed:
            raise PostgresError(f"{program} failed: {self._why(failed.stderr)}") from None
        except subprocess.TimeoutExpired:
            raise PostgresError(f"{program} did not finish in {COMMAND_TIMEOUT_S} s") from None

    def _why(self, stderr: str) -> str:
        lines = [line for line in stderr.strip().splitlines() if line]
        log_tail = self._log_tail()
        return "; ".join(lines[-3:] + log_tail) or "no message"

    def _log_tail(self) -> list[str]:
        try:
            return self.log_file.read_text(errors="replace").strip().splitlines()[-3:]
        except OSError:
            return []

    def _kill(self) -> None:
        """SIGKILL the postmaster named in postmaster.pid, if any (a failed start or stop)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        self._reap()
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        with contextlib.suppress(ProcessLookupError):  # it died on its own meanwhile
            os.kill(pid, signal.SIGKILL)
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)


def _stop_with_parent() -> None:
    """In the child before exec: SIGINT (fast shutdown) it when the thread that started it
    dies (Linux). Set after the switch to the server user, which would clear it."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGINT)
