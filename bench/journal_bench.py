"""The journal benchmark: `venue bench journal` — durable commands per second with group commit.

Owns the command line around `core.journal.measure`: a fresh journal file in a temporary
directory, records of a command's typical size, one fsync per batch. `--sequencer` measures
the venue's commit path instead: a `Sequencer` on a venue with a ledger, fed the `mixed`
workload at `--rate` commands/s from an event loop, group-committing as the server does;
it reports the journal thread's CPU per command and per fsync, the commands each fsync
carried, and the time from submit to release; on a terminal a bar counts the commands
submitted (stderr; not with `--json`).
"""

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from bench import workloads
from bench.store_bench import percentiles
from cli import progress
from cli.failures import CommandFailed
from core.journal import (
    HEADER_BYTES,
    RECORD_BYTES_MAX,
    UNSYNCED_BYTES_MAX,
    EncodeInto,
    FileJournal,
    Sequenced,
    measure,
)
from core.sequencer import COMMIT_INTERVAL_S_MAX, Executed, Sequencer
from engine.venue import Venue
from settlement.ledger import Ledger

SEQUENCER_OPTIONS = {"rate": 4_000, "commands": 16_000, "commit_interval_ms": 0.0}  # defaults
FILE_OPTIONS = {"records": 200_000, "batch": 1_000, "payload_bytes": 100}  # without --sequencer
# The records are listed in memory before the clock starts, ~100 bytes each: fifty million is
# ~5 GiB, and a zero too many no longer runs the machine out of memory.
RECORDS_MAX = 50_000_000
# What one run may write to its temporary journal, frames included: 8 GiB is ten times the
# defaults' largest sensible run, and leaves the disk (with any venue's journal on it) room.
JOURNAL_FILE_BYTES_MAX = 8 << 30
# `--sequencer` builds its commands first, and the venue with a ledger they run on grows
# with them: ~674 MiB a million at its peak (tracemalloc, paced or not), so six million is
# ~3.9 GiB, as much as the other benchmarks' bounds allow.
COMMANDS_MAX = 6_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--records",
        type=int,
        help=f"(default 200,000; at most {RECORDS_MAX:,}: they are listed in memory first)",
    )
    parser.add_argument("--batch", type=int, help="records per fsync (default 1,000)")
    parser.add_argument("--payload-bytes", type=int, help="about a PlaceOrder (default 100)")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    path = parser.add_argument_group("--sequencer: the commit path, paced")
    path.add_argument("--sequencer", action="store_true", help="sequencer + journal thread")
    path.add_argument("--rate", type=int, help="commands/s submitted (default 4,000)")
    path.add_argument(
        "--commands",
        type=int,
        help=f"commands submitted (default 16,000; at most {COMMANDS_MAX:,}: they are built in"
        " memory first)",
    )
    path.add_argument(
        "--commit-interval-ms", type=float, help="the sequencer's, as configured (default 0)"
    )


class CountingJournal(FileJournal):
    """A `FileJournal` that counts its durable writes: the commits (an O_DSYNC write, or an
    append and an fsync) and the syncs made outside a commit."""

    syncs = 0
    _committing = False

    def commit(self, records: Sequence[tuple[int, bytes]]) -> None:
        with self._counted():
            super().commit(records)

    def commit_commands(self, batch: Sequence[Sequenced], encode_into: EncodeInto) -> None:
        with self._counted():  # the sequencer's commit (see `FileJournal.commit_commands`)
            super().commit_commands(batch, encode_into)

    @contextmanager
    def _counted(self) -> Iterator[None]:
        """One durable write, whichever the path; a `sync` inside it is not another."""
        self.syncs += 1
        self._committing = True
        try:
            yield
        finally:
            self._committing = False

    def sync(self) -> None:
        self.syncs += not self._committing
        super().sync()


async def measure_sequencer(
    commands: int,
    rate: int,
    path: Path,
    commit_interval_ms: float = 0.0,
    submitted: Callable[[int], object] = lambda count: None,
) -> dict[str, object]:
    """Submit `commands` at `rate`/s in 1 ms ticks; the journal thread's CPU and the latency.
    `submitted` is told each tick's commands once submitted (progress, on the loop between
    ticks: in the process's CPU figure, not the journal thread's).

    The commit runs on the journal's thread, as it does over NATS, so that its CPU can be
    told apart; the venue commits the file journal on the loop (docs/gateway.md), where the
    same work is part of the process's CPU (`process_cpu_us_per_command`)."""
    workload = workloads.build("mixed", commands, seed=1)
    latencies_ms: list[float] = []

    def release(batch: list[Executed]) -> None:
        now = time.perf_counter()
        latencies_ms.extend((now - e.origin) * 1e3 for e in batch if isinstance(e.origin, float))

    journal = CountingJournal(path)
    sequencer = Sequencer(
        Venue(ledger=Ledger()),
        journal,
        lambda: time.time_ns() // 1000,
        release,
        commit_interval_s=commit_interval_ms / 1_000,
        commit_on_loop=False,  # its own thread: its CPU is measured apart
    )
    for command in workloads.ledger_setup() + workload.setup:
        sequencer.submit(command)
    await sequencer.drain()
    cpu_before, syncs_before = sequencer.journal_cpu_seconds(), journal.syncs
    process_cpu_before = time.process_time()
    per_tick = max(1, rate // 1_000)
    started = time.perf_counter()
    for index in range(0, commands, per_tick):
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tick = workload.commands[index : index + per_tick]
        for command in tick:
            sequencer.submit(command, origin=time.perf_counter())
        submitted(len(tick))
    await sequencer.drain()
    seconds = time.perf_counter() - started
    cpu_seconds = sequencer.journal_cpu_seconds() - cpu_before
    process_cpu_seconds = time.process_time() - process_cpu_before
    fsyncs = max(journal.syncs - syncs_before, 1)
    sequencer.close()
    return {
        "sequencer": True,
        "commands": commands,
        "rate": rate,
        "seconds": round(seconds, 6),
        "fsyncs": fsyncs,
        "commands_per_fsync": round(commands / fsyncs, 2),
        "journal_thread_cpu_us_per_command": round(cpu_seconds * 1e6 / commands, 2),
        "journal_thread_cpu_us_per_fsync": round(cpu_seconds * 1e6 / fsyncs, 1),
        "commit_interval_ms": commit_interval_ms,
        # the feeding loop's pacing included: compare runs of one rate only
        "process_cpu_us_per_command": round(process_cpu_seconds * 1e6 / commands, 2),
        "release_latency_ms": percentiles(latencies_ms),
        "verified": len(latencies_ms) == commands,
    }


def run(args: argparse.Namespace) -> int:
    if args.sequencer:
        if given := _given(args, FILE_OPTIONS):  # not silently ignored
            raise CommandFailed(f"{given}: not with --sequencer (it journals real commands)")
        return run_sequencer(args)
    if given := _given(args, SEQUENCER_OPTIONS):  # not silently ignored
        raise CommandFailed(f"{given}: only with --sequencer (they pace its commit path)")
    for name, default in FILE_OPTIONS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if min(args.records, args.batch, args.payload_bytes) <= 0:
        raise CommandFailed("--records, --batch and --payload-bytes must be positive")
    if args.records > RECORDS_MAX:
        raise CommandFailed(
            f"--records {args.records:,}: at most {RECORDS_MAX:,} (they are listed in memory first)"
        )
    check_journal_limits(args.records, args.batch, args.payload_bytes)
    with tempfile.TemporaryDirectory(prefix="venue-bench-journal-") as directory:
        result = measure(args.records, args.batch, args.payload_bytes, Path(directory) / "j")
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"journal: {result['durable_records_per_sec']:,} durable records/s "
            f"({result['records']:,} records, {result['fsyncs']} fsyncs, "
            f"batch p50 {result['batch_ms']['p50']} ms)"  # type: ignore[index]
        )
    return 0 if result["verified"] else 1


def _given(args: argparse.Namespace, options: Mapping[str, object]) -> str:
    """The flags of `options` given on the command line, as typed; "" if none."""
    given = [name for name in options if getattr(args, name) is not None]
    return ", ".join("--" + name.replace("_", "-") for name in given)


def check_journal_limits(records: int, batch: int, payload_bytes: int) -> None:
    """Refuse a record or a batch the journal itself would refuse, naming the flags: else a
    traceback (a record over `RECORD_BYTES_MAX`) or, after the records were built, the
    journal's error about a temporary file and a sync no flag asks for."""
    if payload_bytes > RECORD_BYTES_MAX:
        raise CommandFailed(
            f"--payload-bytes {payload_bytes:,}: over the journal's {RECORD_BYTES_MAX:,} bytes"
            " a record"
        )
    file_bytes = records * (HEADER_BYTES + payload_bytes)
    if file_bytes > JOURNAL_FILE_BYTES_MAX:
        raise CommandFailed(
            f"--records {records:,} of --payload-bytes {payload_bytes:,}: {file_bytes:,} bytes"
            f" of journal with the frames, over the {JOURNAL_FILE_BYTES_MAX:,} a run may write"
            " to its temporary directory: fewer or smaller records"
        )
    batch_bytes = min(batch, records) * (HEADER_BYTES + payload_bytes)
    if batch_bytes > UNSYNCED_BYTES_MAX:
        raise CommandFailed(
            f"--batch {batch:,} of --payload-bytes {payload_bytes:,}: {batch_bytes:,} bytes a"
            f" batch with the frames, over the {UNSYNCED_BYTES_MAX:,} the journal writes between"
            " two fsyncs: fewer or smaller records a batch"
        )


def run_sequencer(args: argparse.Namespace) -> int:
    for name, default in SEQUENCER_OPTIONS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if min(args.commands, args.rate) <= 0:
        raise CommandFailed("--commands and --rate must be positive")
    if args.commands > COMMANDS_MAX:
        raise CommandFailed(
            f"--commands {args.commands:,}: at most {COMMANDS_MAX:,} (they are built in memory"
            " first, and the venue they run on grows: ~0.7 GiB a million)"
        )
    if not 0 <= args.commit_interval_ms <= COMMIT_INTERVAL_S_MAX * 1_000:
        raise CommandFailed(f"--commit-interval-ms must be 0 to {COMMIT_INTERVAL_S_MAX * 1_000:g}")
    with (
        tempfile.TemporaryDirectory(prefix="venue-bench-journal-") as directory,
        progress.bar(
            args.json, total=args.commands, desc="journal (sequencer)", unit="command"
        ) as shown,
    ):
        result = asyncio.run(
            measure_sequencer(
                args.commands,
                args.rate,
                Path(directory) / "j",
                args.commit_interval_ms,
                shown.update,
            )
        )
    latency = result["release_latency_ms"]
    assert isinstance(latency, dict)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"journal (sequencer): {args.commands:,} commands at {args.rate:,}/s in"
            f" {result['fsyncs']:,} fsyncs ({result['commands_per_fsync']} each); journal thread"
            f" CPU {result['journal_thread_cpu_us_per_command']} µs/command,"
            f" {result['journal_thread_cpu_us_per_fsync']} µs/fsync, process CPU"
            f" {result['process_cpu_us_per_command']} µs/command; submit to release"
            f" p50 {latency['p50']} ms, p99 {latency['p99']} ms"
        )
    return 0 if result["verified"] else 1
