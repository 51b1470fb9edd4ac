"""A whole cluster on loopback: NATS nodes, PostgreSQL, cores and gateways as real processes.

Owns `LocalCluster`, what `venue cluster` (cli/cluster.py) runs and the cluster tests reuse:
a NATS JetStream cluster (cluster/nats.py), optionally a throwaway PostgreSQL for the ledger
(cluster/postgres.py), an active core and standby cores (`venue serve --role core`) and
gateways (`venue serve --role gateway`), each process with its own log file and data
directory under one directory, on 127.0.0.1: free ports, or the consecutive ones from a first
port given (`ports_from`: a firewall's or a shared machine's known range). Waits are bounded:
a process is ready when its log says so. `kill` is SIGKILL (for fault tests), `terminate`
SIGTERM to one process; `stop` is SIGTERM to every process, gateways first, then cores, then
the services.
"""

import fcntl
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from cluster.nats import NatsCluster, die_with_parent, free_ports
from cluster.postgres import PostgresServer

READY_TIMEOUT_S: Final = 90.0  # a core's recovery plus a gateway's catch-up on a busy machine
STOP_TIMEOUT_S: Final = 20.0
POLL_S: Final = 0.05
# The lines of a long start's progress: a core's replay (core/recovery.py `ReplayProgress`, every
# 5 s) and a gateway's (core/nats_bus.py `Replica._replay`, every 10 s): each one seen gives a
# role `READY_TIMEOUT_S` more to be ready.
PROGRESS_LINES: Final = (" venue recovering ", " venue.cluster replica replaying the stream ")
DATABASE: Final = "venue_ledger"
GATEWAY_PORT_ATTEMPTS: Final = 3  # a gateway's port taken before it started: chosen again
EPHEMERAL_RANGE_FILE: Final = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOCK_FILE: Final = "cluster.lock"  # flocked by the cluster running in the directory
PORT_TAKEN: Final = "Address already in use"  # how `venue serve` says so (errno EADDRINUSE)


class ClusterError(RuntimeError):
    """A process of the cluster did not start, or stopped; the message quotes its log."""


def ports_from(first_port: int, count: int) -> list[int]:
    """The `count` consecutive ports from `first_port`, each free on 127.0.0.1 now; one
    taken, or a range past 65535, is a `ClusterError` naming it."""
    last_port = first_port + count - 1
    if first_port < 1 or last_port > 65_535:
        raise ClusterError(f"ports {first_port}-{last_port} are not within 1..65535")
    for port in range(first_port, last_port + 1):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
            try:
                probe.bind(("127.0.0.1", port))
            except OSError as taken:
                overlap = ephemeral_overlap([port])
                why = (
                    ""
                    if overlap is None
                    else f"; it lies in the range for outgoing connections ({overlap[0]}-"
                    f"{overlap[1]}), which may hold it a minute: a range below {overlap[0]}"
                    " avoids that"
                )
                raise ClusterError(
                    f"port {port} of {first_port}-{last_port} is taken ({taken.strerror}):"
                    f" give another first port, or free that one{why}"
                ) from None
    return list(range(first_port, last_port + 1))


@dataclass(eq=False)
class Role:
    """One `venue serve --role ...` process."""

    name: str
    role: str  # "core" or "gateway"
    log_path: Path
    port: int = 0  # a gateway's websocket port
    process: subprocess.Popen[bytes] | None = None
    log_from: int = 0  # where this start's lines begin in the log (a restart appends)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/trade"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        """What the process wrote since it was last started."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(self.log_from)
            return log.read().decode(errors="replace")


class LocalCluster:
    """`nats_nodes` NATS nodes, PostgreSQL (when `postgres`), `cores` cores (the first to
    start is active, the rest standby) and `gateways` gateways, under `directory`."""

    def __init__(
        self,
        directory: Path,
        config_path: Path,
        *,
        nats_nodes: int = 3,
        postgres: bool = True,
        cores: int = 2,
        gateways: int = 2,
        log_level: str = "info",
        first_port: int | None = None,
        say: Callable[[str], None] = lambda line: None,
    ) -> None:
        """`first_port`: every port the cluster listens on is one of the consecutive ports
        from it (`ports_needed`), checked free at once; else free ones. `say` is told each
        step of `start` as it is done (a start takes tens of seconds)."""
        self.directory = directory
        self.config_path = config_path
        self.log_level = log_level
        self.say = say
        nats_count = NatsCluster.ports_needed(nats_nodes)
        fixed = (
            []
            if first_port is None
            else ports_from(first_port, self.ports_needed(nats_nodes, postgres, gateways))
        )
        self.fixed_ports = fixed  # empty: free ports, a gateway's chosen again if taken
        self.nats = NatsCluster(directory / "nats", size=nats_nodes, ports=fixed[:nats_count])
        self.postgres = PostgresServer(directory / "postgres") if postgres else None
        self.postgres_port = fixed[nats_count] if fixed and postgres else 0  # 0: a free one
        self.dsn: str | None = None
        self.lock: IO[str] | None = None  # `LOCK_FILE`, held from `start` to `stop`
        self.cores = [
            Role(f"core-{chr(ord('a') + i)}", "core", directory / f"core-{i}.log")
            for i in range(cores)
        ]
        ports = fixed[len(fixed) - gateways :] if fixed else free_ports(gateways)
        self.gateways = [
            Role(f"gw-{chr(ord('a') + i)}", "gateway", directory / f"gw-{i}.log", port)
            for i, port in enumerate(ports)
        ]

    @staticmethod
    def ports_needed(nats_nodes: int, postgres: bool, gateways: int) -> int:
        """How many ports a cluster of this shape listens on: the NATS nodes' (their order
        first), PostgreSQL's, then one per gateway."""
        return NatsCluster.ports_needed(nats_nodes) + int(postgres) + gateways

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> "LocalCluster":
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o711)  # PostgreSQL runs as the postgres user inside it
        self.lock = hold_directory(self.directory)  # before anything there is touched
        try:
            self.check_nats_shape()
            self.nats.start()
            self.say(f"NATS up ({len(self.nats.nodes)} nodes): {self.nats.url}")
            if self.postgres is not None:
                self.postgres.start(self.postgres_port)
                # a directory of an earlier run: its ledger goes on with its stream
                self.dsn = self.postgres.create_database(DATABASE, reuse=True)
                self.say(f"PostgreSQL up: 127.0.0.1:{self.postgres.port}")
            for index, core in enumerate(self.cores):
                self.start_role(core)
                self.wait_for(core, "active at seq" if index == 0 else "waiting for the lease")
                self.say(f"core {core.name} {'active' if index == 0 else 'standby'}")
            for gateway in self.gateways:
                self.start_gateway(gateway)
                self.say(f"gateway {gateway.name} up: {gateway.url}")
        except BaseException:
            self.stop()
            raise
        return self

    def check_nats_shape(self) -> None:
        """Refuse NATS nodes other in number than the stores an earlier run left here: the
        stream is in those stores, and a cluster of another size does not find it (one node's
        store joined by two new nodes showed an empty stream, and the core refused its own
        snapshot as "ahead of the journal"; one node of three has no quorum)."""
        stores = sorted((self.directory / "nats").glob("n*/jetstream"))
        wanted = len(self.nats.nodes)
        if stores and len(stores) != wanted:
            raise ClusterError(
                f"{self.directory} holds the stream of a cluster of {len(stores)} NATS"
                f" node(s), not {wanted}: give --nats-nodes {len(stores)}, or another --dir"
            )

    def start_gateway(self, gateway: Role) -> None:
        """Start a gateway and wait until it serves. Its port was chosen free before the NATS
        nodes, PostgreSQL and the cores started, and their outgoing connections may have been
        given it as their local port since: a start refused for a port taken is tried again
        on another, a bounded number of times (not with `fixed_ports`: the operator chose
        them, and the error names the port)."""
        for attempt in range(1, GATEWAY_PORT_ATTEMPTS + 1):
            self.start_role(gateway)
            try:
                self.wait_for(gateway, "tokenvenue gateway")
                return
            except ClusterError:
                port_taken = not gateway.running() and PORT_TAKEN in gateway.log()
                if not port_taken or attempt == GATEWAY_PORT_ATTEMPTS or self.fixed_ports:
                    raise
            gateway.port = free_ports(1)[0]

    def start_role(self, role: Role) -> None:
        """Start (or start again) one core or gateway process."""
        command = [sys.executable, "-m", "cli.main", "serve", "--role", role.role]
        command += ["--nats", self.nats.url, "--name", role.name, "--config", str(self.config_path)]
        command += ["--data-dir", str(self.directory / role.name), "--log-level", self.log_level]
        if role.role == "gateway":
            command += ["--host", "127.0.0.1", "--port", str(role.port)]
        if self.dsn is not None:
            command += ["--postgres", self.dsn]
        role.log_from = role.log_path.stat().st_size if role.log_path.exists() else 0
        with open_owner_only(role.log_path) as log:
            role.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).resolve().parents[1],
                env=os.environ | {"PYTHONUNBUFFERED": "1"},
                # Stopped by this process only, in order (`stop`): a terminal's Ctrl-C is
                # not theirs too. And when this process dies (kill -9), SIGTERM: a role left
                # behind would hold its port and wait for NATS, which went with it, forever.
                start_new_session=True,
                preexec_fn=die_with_parent,
            )

    def wait_for(self, role: Role, text: str, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until `role`'s log holds `text`; a process that exits first is an error, and so is
        one whose log holds neither `text` nor a new progress line (`PROGRESS_LINES`: a long
        replay says how far it is every 5 or 10 s) for `timeout_s`. Any other line does not
        count: a role retrying for ever (NATS unreachable, say) logs a line every 10 s."""
        deadline = time.monotonic() + timeout_s
        logged = role.log()
        progressed = _progress_lines(logged)
        while text not in logged:
            if not role.running():
                raise ClusterError(f"{role.name} stopped: {_tail(role.log())}")
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"{role.name}: no {text!r} nor progress within {timeout_s}s: {_tail(logged)}"
                )
            time.sleep(POLL_S)
            logged = role.log()
            if (now_progressed := _progress_lines(logged)) != progressed:
                progressed, deadline = now_progressed, time.monotonic() + timeout_s

    def kill(self, role: Role) -> None:
        """SIGKILL, as a machine dying would stop it."""
        if role.process is not None and role.process.poll() is None:
            role.process.send_signal(signal.SIGKILL)
            role.process.wait(STOP_TIMEOUT_S)

    def terminate(self, role: Role) -> int | None:
        """SIGTERM, as an operator stops it cleanly; its exit status."""
        if role.process is None or role.process.poll() is not None:
            return None if role.process is None else role.process.returncode
        role.process.terminate()
        return role.process.wait(STOP_TIMEOUT_S)

    def stop(self) -> None:
        """Every process this object started, in order; then the directory's lock, if held.
        PostgreSQL only if it is this object's child: `pg_ctl stop` on the data directory of a
        cluster whose start was refused (another's runs there) would stop the other's. (The
        roles and NATS nodes each signal only their own process; a test that starts pieces by
        hand, without `start`, has them stopped too.)"""
        # The gateways, then the cores, each group signaled at once and then waited for: a
        # group of roles ignoring SIGTERM costs `STOP_TIMEOUT_S` once, not once a role.
        for group in (self.gateways, self.cores):
            running = [role.process for role in group if role.process and role.running()]
            for process in running:
                process.terminate()
            for process in running:
                try:
                    process.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(STOP_TIMEOUT_S)
        if self.postgres is not None and self.postgres.process is not None:
            self.postgres.stop()
        self.nats.stop()
        if self.lock is not None:
            self.lock.close()  # the flock goes with the descriptor
            self.lock = None

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- where things are

    def active_core(self) -> Role | None:
        """The core whose log says it became active last, among those running."""
        active = [core for core in self.cores if core.running() and "active at seq" in core.log()]
        return active[-1] if active else None

    def exited(self) -> list[tuple[str, str, Path]]:
        """The cores, NATS nodes and PostgreSQL started and since exited, each with how it
        ended and its log (gateways are not watched here: `venue cluster` ends with them)."""
        ended: list[tuple[str, subprocess.Popen[bytes] | None, Path]] = [
            (f"core {core.name}", core.process, core.log_path) for core in self.cores
        ]
        ended += [(f"NATS {node.name}", node.process, node.log_path) for node in self.nats.nodes]
        if self.postgres is not None:
            ended.append(("PostgreSQL", self.postgres.process, self.postgres.log_file))
        return [
            (name, how_it_ended(process.returncode), log)
            for name, process, log in ended
            if process is not None and process.poll() is not None
        ]

    def describe(self) -> list[str]:
        lines = [f"NATS ({len(self.nats.nodes)}-node JetStream): {self.nats.url}"]
        if self.dsn is not None:
            lines.append(f"ledger store (PostgreSQL): {self.dsn}")
        for core in self.cores:
            lines.append(f"core {core.name}: log {core.log_path}")
        for gateway in self.gateways:
            lines.append(f"gateway {gateway.name}: {gateway.url}  (log {gateway.log_path})")
        return lines


def ephemeral_overlap(ports: list[int]) -> tuple[int, int] | None:
    """The kernel's range of ports for outgoing connections (Linux), if `ports` reach into
    it: any process's connection may be given one of them as its local port, and hold it
    (TIME_WAIT: a minute) when a server of the cluster comes to bind it."""
    outgoing = ephemeral_range()
    if outgoing is None:
        return None
    low, high = outgoing
    overlaps = bool(ports) and ports[0] <= high and ports[-1] >= low
    return (low, high) if overlaps else None


def ephemeral_range() -> tuple[int, int] | None:
    """The kernel's range of ports for outgoing connections; None where it cannot be read
    (not Linux)."""
    try:
        low, high = map(int, EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return None
    return low, high


def hold_directory(directory: Path) -> IO[str]:
    """Lock `directory`'s `LOCK_FILE` for this process's cluster, and write its pid there;
    a `ClusterError` naming the holder if another process's cluster runs in it (whose NATS
    store, PostgreSQL and roles' data directories a second would share). The lock is the
    open file's: it goes when the file is closed or the process ends, kill -9 included."""
    lock = (directory / LOCK_FILE).open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "?"
        lock.close()
        raise ClusterError(
            f"{directory} is in use by a running cluster (pid {holder}): stop it first,"
            " or give another --dir"
        ) from None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def how_it_ended(returncode: int) -> str:
    """`exit status 1`, or `killed by SIGKILL` for a negative `Popen.returncode`."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


def _progress_lines(logged: str) -> int:
    return sum(logged.count(line) for line in PROGRESS_LINES)


def _tail(text: str, lines: int = 12) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def open_owner_only(path: Path) -> IO[bytes]:
    """`path` opened to append to, made readable by its owner only whatever the umask: a
    role's log names accounts, API keys and admin requests, and the cluster's directory lets
    every local user reach a file whose name is known (0711, for PostgreSQL's user). A log
    left by an earlier run (0644 before session 32) is closed too: it is the venue's own."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    try:
        # the mode given to open() applies only to a file it creates; a log the operator
        # pointed elsewhere (a link to a shared file, /dev/null) is left as it is
        if stat.S_ISREG(os.fstat(fd).st_mode) and not os.path.islink(path):
            os.fchmod(fd, 0o600)
        return os.fdopen(fd, "ab")
    except BaseException:
        os.close(fd)
        raise
