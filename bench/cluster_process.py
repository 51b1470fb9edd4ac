"""The venue as a local cluster for `venue bench e2e --cluster`: ServerProcess's interface.

Owns `ClusterServer`: a `cluster.local.LocalCluster` (3 NATS nodes, one core, two gateways,
SQLite ledger like the embedded run, so the two differ by the bus alone) started and stopped
off the event loop, its gateways' URLs (the clients are spread over them), and the server
side's CPU time summed over every process of it (core, gateways, NATS nodes), with each
process's share over the measured window for the report.
"""

import asyncio
import os
import time
from pathlib import Path

from cluster.local import LocalCluster

CORES = 1  # a standby would only wait for the lease: it costs nothing to measure
GATEWAYS = 2
NATS_NODES = 3


class ClusterServer:
    """A local cluster started for one benchmark step, in `directory`."""

    def __init__(self, config: Path, directory: Path) -> None:
        self.cluster = LocalCluster(
            directory / "cluster",
            config,
            nats_nodes=NATS_NODES,
            postgres=False,
            cores=CORES,
            gateways=GATEWAYS,
            log_level="warning",
        )
        self.readings: list[tuple[float, dict[str, float]]] = []  # (wall time, CPU s by process)

    @property
    def urls(self) -> list[str]:
        return [gateway.url for gateway in self.cluster.gateways]

    async def start(self) -> str:
        await asyncio.to_thread(self.cluster.start)
        return self.urls[0]

    async def stop(self) -> bool:
        """SIGTERM to every process; True if every core and gateway stopped cleanly."""
        await asyncio.to_thread(self.cluster.stop)
        roles = [*self.cluster.cores, *self.cluster.gateways]
        return all("stopped cleanly" in role.log() for role in roles)

    def pids(self) -> dict[str, int]:
        found = {}
        for role in [*self.cluster.cores, *self.cluster.gateways]:
            if role.process is not None:
                found[role.name] = role.process.pid
        for node in self.cluster.nats.nodes:
            if node.process is not None:
                found[f"nats-{node.name}"] = node.process.pid
        return found

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of every process of the cluster so far; None off Linux."""
        by_process = {}
        for name, pid in self.pids().items():
            seconds = _cpu_seconds(pid)
            if seconds is None:
                return None
            by_process[name] = seconds
        self.readings.append((time.time(), by_process))
        return sum(by_process.values())

    def cpu_percent_by_process(self) -> dict[str, float]:
        """Each process's CPU over the first and last readings (the measured window), in %."""
        if len(self.readings) < 2:
            return {}
        (first_at, first), (last_at, last) = self.readings[0], self.readings[-1]
        window = last_at - first_at
        return {name: round(100 * (last[name] - first[name]) / window, 1) for name in last}

    def peak_rss_mb(self) -> float | None:
        """The processes' peak resident memory, summed (MiB)."""
        total = 0.0
        for pid in self.pids().values():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1]) / 1024
            except (OSError, ValueError, IndexError):
                return None
        return round(total, 1)

    def last_exception(self) -> str | None:
        for role in [*self.cluster.cores, *self.cluster.gateways]:
            lines = [line for line in role.log().splitlines() if "Error" in line]
            if lines:
                return f"{role.name}: {lines[-1]}"
        return None


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
