"""NATS JetStream nodes on loopback: one `nats-server -js` node, or a 3-node JetStream cluster.

Owns starting, stopping, killing (-9, for fault tests) and restarting `nats-server` processes,
each with free ports (client, cluster routes, monitoring), a config file and a `store_dir` in a
directory the caller gives; the tests and `venue serve --nats` use it. Leaves what runs on
JetStream (streams, KV buckets) to core/. Readiness is the monitoring port's `/healthz`
(JetStream up and, in a cluster, current with the meta leader), polled for at most
`READY_TIMEOUT_S`; a stop is SIGTERM, then SIGKILL after `STOP_TIMEOUT_S`.
"""

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Final

READY_TIMEOUT_S: Final = 30.0  # a cluster elects its meta leader in a few s on a busy machine
STOP_TIMEOUT_S: Final = 10.0  # a JetStream node flushes its stores on SIGTERM; then it is killed
POLL_S: Final = 0.05
# A journal record may be 1 MiB (core.journal.RECORD_BYTES_MAX) plus headers: NATS's default
# max_payload (1 MB) is just below it, so the nodes take up to 8 MB.
MAX_PAYLOAD_BYTES: Final = 8 << 20
CLUSTER_NAME: Final = "venue"
PR_SET_PDEATHSIG: Final = 1  # linux/prctl.h


class NatsError(Exception):
    """A node would not start, or its binary is missing."""


def nats_server_binary() -> str:
    """The `nats-server` to run: the PATH's, or Debian's /usr/sbin one (not on a user's PATH)."""
    found = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin")
    if found is None:
        raise NatsError("nats-server is not installed: run scripts/install-nats.sh (as root)")
    return found


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 now (held open together so they differ)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class NatsNode:
    """One nats-server process with JetStream, its config and store under `directory`."""

    def __init__(
        self,
        name: str,
        directory: Path,
        *,
        client_port: int,
        monitor_port: int,
        cluster_port: int | None = None,
        routes: Sequence[int] = (),
    ) -> None:
        self.name = name
        self.directory = directory
        self.client_port = client_port
        self.monitor_port = monitor_port
        self.cluster_port = cluster_port
        self.routes = list(routes)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def config_path(self) -> Path:
        return self.directory / "nats.conf"

    @property
    def log_path(self) -> Path:
        return self.directory / "nats.log"

    def write_config(self) -> None:
        store = self.directory / "jetstream"
        lines = [
            f"server_name: {self.name}",
            f"listen: 127.0.0.1:{self.client_port}",
            f"http: 127.0.0.1:{self.monitor_port}",
            f"max_payload: {MAX_PAYLOAD_BYTES}",
            f'jetstream {{ store_dir: "{store}" }}',
        ]
        if self.cluster_port is not None:
            routes = ", ".join(f"nats-route://127.0.0.1:{port}" for port in self.routes)
            lines.append(
                f"cluster {{ name: {CLUSTER_NAME}, listen: 127.0.0.1:{self.cluster_port},"
                f" routes: [{routes}] }}"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        """Start the process; returns once it runs. The config is written anew each time:
        a directory of an earlier run keeps its store, and its node listens on this run's
        ports (one left from a run on other ports had the node listen where nobody looked)."""
        if self.running:
            raise NatsError(f"{self.name} is running already")
        self.write_config()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [nats_server_binary(), "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a test's Ctrl-C is not the node's: stop() ends it
                preexec_fn=die_with_parent,
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def healthy(self) -> bool:
        """Whether `/healthz` says ok: JetStream up and (in a cluster) current."""
        url = f"http://127.0.0.1:{self.monitor_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not ended within `STOP_TIMEOUT_S`."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_S)
        self.process = None

    def kill(self) -> None:
        """kill -9, for fault tests: no flush, no goodbye to the cluster."""
        if self.process is None:
            return
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT_S)
        self.process = None


def die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the process that started it dies (Linux), so
    a test run killed by a timeout leaves no node behind. (Tied to the starting thread.)"""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def wait_ready(nodes: Sequence[NatsNode], timeout_s: float = READY_TIMEOUT_S) -> None:
    """Return once every node answers `/healthz` ok; `NatsError` (with its log) if not in time."""
    deadline = time.monotonic() + timeout_s
    waiting = list(nodes)
    while waiting:
        for node in list(waiting):
            if not node.running:
                raise NatsError(f"{node.name} exited: {_log_tail(node)}")
            if node.healthy():
                waiting.remove(node)
        if waiting and time.monotonic() > deadline:
            names = ", ".join(node.name for node in waiting)
            raise NatsError(f"{names} not ready within {timeout_s}s: {_log_tail(waiting[0])}")
        if waiting:
            time.sleep(POLL_S)


def _log_tail(node: NatsNode, lines: int = 8) -> str:
    try:
        return " | ".join(node.log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class NatsCluster:
    """One node or a JetStream cluster of several on loopback, under `directory`.

    `size=1` is a lone `nats-server -js`; `size=3` a cluster whose streams can be R=3. Use it
    as a context manager, or call `start()` and `stop()`.
    """

    def __init__(self, directory: Path, size: int = 1, ports: Sequence[int] = ()) -> None:
        """`ports`: the nodes' listening ports (`ports_needed(size)` of them: clients', then
        monitoring, then routes); none given, free ones."""
        if size < 1:
            raise ValueError(f"a cluster of {size} nodes")
        if ports and len(ports) != self.ports_needed(size):
            raise ValueError(f"{len(ports)} ports for {self.ports_needed(size)}")
        ports = list(ports) or free_ports(self.ports_needed(size))
        client_ports, monitor_ports = ports[:size], ports[size : 2 * size]
        route_ports = ports[2 * size :] if size > 1 else []
        # Every node routes to every cluster port, its own too: nats-server skips a route to self.
        self.nodes = [
            NatsNode(
                f"n{index + 1}",
                directory / f"n{index + 1}",
                client_port=client_ports[index],
                monitor_port=monitor_ports[index],
                cluster_port=route_ports[index] if route_ports else None,
                routes=route_ports,
            )
            for index in range(size)
        ]

    @staticmethod
    def ports_needed(size: int) -> int:
        """Ports a cluster of `size` nodes listens on: a client and a monitoring port each,
        and a route port each when they are more than one."""
        return 3 * size if size > 1 else 2

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """All nodes' URLs, comma-separated: what `nats.connect` and `--nats` take."""
        return ",".join(self.urls)

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> "NatsCluster":
        try:
            for node in self.nodes:
                node.start()
            wait_ready(self.nodes, timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None:
                node.process.terminate()  # all at once: they shut down in parallel
        for node in self.nodes:
            node.stop()

    def restart(self, index: int, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Start node `index` again (after `kill` or `stop`) and wait until it is current."""
        node = self.nodes[index]
        node.stop()
        node.start()
        wait_ready([node], timeout_s)

    def __enter__(self) -> "NatsCluster":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
