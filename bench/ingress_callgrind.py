"""Instructions per request on the server's request path, counted by callgrind: the load on
the machine does not move them, unlike the µs of `bench.ingress_bench`.

Owns one measured stretch of `bench.ingress_bench`'s setup (a real `VenueServer`, two maker
and two taker connections, packed, following their account streams): `--requests` of one
kind (`quote`: a maker's `quote.mass` of one quote, one `AmendPair`; `batch`: a taker's
`order.batch` of 20 marketable IOC orders), fed as frames in windows of
`ingress_bench.WINDOW` with the journal's commit and the answers' and pushes' writes after each
window, end to end in the process: every thread (the ledger store's writes of the trades are
flushed before the stretch ends). The stretch is marked by callgrind's client requests (zero
the counts, dump them), built with cc from valgrind/callgrind.h into a small library.
`python -m bench.ingress_callgrind KIND` runs itself under
`PYTHONHASHSEED=0 setarch -R valgrind --tool=callgrind` and prints the measured stretch's
instructions (Ir) per request: `{"kind": ..., "ir_per_request": ...}`; `--keep FILE` keeps
the stretch's dumps (FILE-01: the loop's thread, FILE-02: the ledger store's) for
`callgrind_annotate --inclusive=yes`. Only these two threads are counted (the journal commits
on the loop, as served on a local disk).
"""

import argparse
import asyncio
import contextlib
import ctypes
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from bench import ingress_bench, server_process
from cli.serve import settle_heap
from core import config as venue_config
from core import venue_core
from gateway.server import VenueServer

WARM_WINDOWS = 2  # windows of the same kind before the stretch: caches and look-ups settled
NEVER_SLOW_S = 3600.0  # under callgrind every commit is slow: keep them on the loop, as served
SWITCH_INTERVAL_S = 1000.0  # see `held_still`
MARKS_C = """#include <valgrind/callgrind.h>
void cg_zero(void) { CALLGRIND_ZERO_STATS; }
void cg_dump(void) { CALLGRIND_DUMP_STATS_AT("measured"); }
"""
STORE_THREAD = 2  # callgrind's number of the ledger store's thread: the first one started
MARKS_ENV = "VENUE_CALLGRIND_MARKS"  # the built library's path, for the run under callgrind


class Marks(Protocol):
    """Where the stretch starts and ends: the built library's calls, or no-ops in a test."""

    def cg_zero(self) -> object: ...

    def cg_dump(self) -> object: ...


def build_marks(directory: Path) -> Path:
    """The marks' library: its calls are no-ops outside callgrind."""
    source, library = directory / "marks.c", directory / "marks.so"
    source.write_text(MARKS_C)
    subprocess.run(["cc", "-O1", "-shared", "-fPIC", "-o", library, source], check=True)
    return library


@contextlib.contextmanager
def held_still() -> Iterator[None]:
    """What wall time decides held still while the stretch runs, put back after it (the test
    runs a stretch in a process that goes on): under callgrind a run takes a minute or more,
    and a periodic snapshot, or publications paced by the clock, would fall into the stretch
    in one run and not in the next."""
    switch_interval, snapshot_interval = sys.getswitchinterval(), venue_core.SNAPSHOT_INTERVAL_S
    # Threads take the GIL in turn only where the loop waits (its drains), not every few ms
    # of the wall time a run under callgrind stretches: each hand-off costs instructions
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    venue_core.SNAPSHOT_INTERVAL_S = int(NEVER_SLOW_S)
    try:
        yield
    finally:
        sys.setswitchinterval(switch_interval)
        venue_core.SNAPSHOT_INTERVAL_S = snapshot_interval


async def stretch(kind: str, requests: int, config: Path, marks: Marks) -> None:
    """Set up as the ingress bench, warm, then the marked stretch of `requests` of `kind`."""
    with held_still(), tempfile.TemporaryDirectory(prefix="venue-bench-callgrind-") as name:
        directory = Path(name)
        config_path = server_process.unlimited_config(
            config, directory, ingress_bench.accounts_toml()
        )
        server = VenueServer(venue_config.load(config_path), directory / "data")
        await server.start("127.0.0.1", 0)
        server.sequencer.slow_commits.slow_s = NEVER_SLOW_S
        server.public.pause_min_s = 0.0  # a publication per released batch
        settle_heap()
        try:
            sequencer = server.core.sequencer
            on_executed = sequencer.on_executed
            bench = ingress_bench.Bench(server)
            # the bench's meters (wrappers reading a clock) are not the server's work
            del sequencer.venue.execute, server.dispatcher.answer  # instance attributes
            sequencer.on_executed = on_executed
            await server.sequencer.drain()
            for _ in range(ingress_bench.LEVELS):
                await bench.restock()
            windows = max(1, requests // ingress_bench.WINDOW)
            for _ in range(WARM_WINDOWS):
                await feed(bench, kind, ingress_bench.WINDOW)
            await bench.restock()
            work = [list(bench.requests(kind, ingress_bench.WINDOW)) for _ in range(windows)]
            await flush_store(server)
            clients = bench.makers + bench.takers
            written = [Written(client.transport) for client in clients]
            gc.collect()
            # callgrind counts per thread (--separate-threads): the loop's, and the ledger
            # store's (which writes the trades), each zeroed and dumped on its own thread
            await server.core._on_store(marks.cg_zero)
            marks.cg_zero()  # the loop's last: its stretch starts here
            for window in work:
                for connection, frame in window:
                    connection.data_received(frame)
                await server.sequencer.drain()
                await asyncio.sleep(0)  # the answers' writes
            await server.core._on_store(marks.cg_dump)  # after every batch of the stretch
            marks.cg_dump()
            errors = sum(chunks.errors() for chunks in written) + sum(
                client.transport.errors for client in clients
            )
            if errors:
                raise SystemExit(f"{errors} error responses: not the e2e mix")
        finally:
            await server.stop()


class Written:
    """What a fake transport is given, kept to be read after the stretch: the ingress bench's
    test of every chunk for an error (a substring search) is not the server's work."""

    def __init__(self, transport: ingress_bench.FakeTransport) -> None:
        self.chunks: list[bytes] = []
        transport.write = self.chunks.append  # type: ignore[method-assign,assignment]
        transport.writelines = self.chunks.extend  # type: ignore[method-assign,assignment]

    def errors(self) -> int:
        return sum(b'"error":' in chunk for chunk in self.chunks)


async def feed(bench: ingress_bench.Bench, kind: str, count: int) -> None:
    if kind != "quote":
        await bench.restock()
    for connection, frame in bench.requests(kind, count):
        connection.data_received(frame)
    await bench.server.sequencer.drain()
    await asyncio.sleep(0)


async def flush_store(server: VenueServer) -> None:
    """Wait until the ledger store's thread has written all it was given."""
    await server.core._store_flushed()


def measured_ir(path: Path) -> int:
    """The total Ir of the dump made at the stretch's end."""
    text = path.read_text()
    match = re.search(r"^summary: (\d+)", text, re.MULTILINE)
    assert match is not None, f"no totals in {path}"
    return int(match.group(1))


def run_under_callgrind(
    kind: str, requests: int, config: Path, keep: Path | None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="venue-callgrind-") as name:
        out = Path(name) / "cg.out"
        command = ["setarch", "-R", "valgrind", "--tool=callgrind", "--separate-threads=yes"]
        command += [f"--callgrind-out-file={out}", sys.executable, "-m", "bench.ingress_callgrind"]
        command += [kind, "--requests", str(requests), "--config", str(config), "--in-process"]
        marks = build_marks(Path(name))
        environment = os.environ | {"PYTHONHASHSEED": "0", MARKS_ENV: str(marks)}
        subprocess.run(command, check=True, env=environment, stderr=subprocess.DEVNULL)
        # cg.out.N-T: the stretch's dump of thread T (cg.out-T: the rest of its run)
        dumps = {int(path.name.rsplit("-", 1)[1]): path for path in Path(name).glob("cg.out.*-*")}
        assert set(dumps) == {1, STORE_THREAD}, f"dumps of threads {sorted(dumps)}"
        if keep is not None:
            for thread, path in dumps.items():
                Path(f"{keep}-{thread:02}").write_bytes(path.read_bytes())
        requests = max(1, requests // ingress_bench.WINDOW) * ingress_bench.WINDOW
        loop, store = measured_ir(dumps[1]), measured_ir(dumps[STORE_THREAD])
        return {
            "kind": kind,
            "ir_per_request": (loop + store) // requests,
            "loop_ir_per_request": loop // requests,
            "store_ir_per_request": store // requests,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("quote", "batch"))
    parser.add_argument("--requests", type=int, default=64, help="measured, whole windows")
    parser.add_argument("--config", type=Path, default=Path("venue.toml"))
    parser.add_argument("--keep", type=Path, help="keep the stretch's dump here")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_process:  # the run under callgrind
        marks = ctypes.CDLL(os.environ[MARKS_ENV])
        work = stretch(args.kind, args.requests, args.config, marks)
        server_process.run_async(work)  # type: ignore[arg-type]
        return
    config = args.config.resolve()
    print(json.dumps(run_under_callgrind(args.kind, args.requests, config, args.keep)))


if __name__ == "__main__":
    main()
