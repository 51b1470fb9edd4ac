"""`venue serve --nats` started on a data directory whose snapshot is not of the stream, or on
a stream of other subjects, as real processes (a nats-server and the venue, on free ports in
the test's temp directory).

The finding (carried since session 34): the start checked only the snapshot's seq against the
stream's last, so a data directory kept across a stream reset, or given another venue's
stream longer than its own, restored its snapshot and replayed the other venue's records on
it, and served that mix over its own ledger store and keys. The start now checks its
snapshot as a cluster core checks its own (`stream_snapshots.latest_usable`, strict: the
stream's record at the snapshot's seq carries the snapshot's venue time), and refuses one
of another stream, its data directory being another venue's."""

import asyncio
import signal
import subprocess
from pathlib import Path

import nats
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from cluster.nats import NatsCluster
from core.jetstream_journal import DUPLICATE_WINDOW_S, STREAM_DEFAULT, JetStreamJournal
from tests.cli.test_main import RUN_TIMEOUT_S, SERVE, START_LINES_MAX, _env
from tests.cli.test_serve_nats import (
    expect_line,
    nats_node,
    place_resting_orders,
    start,
    start_core,
    stop,
)

__all__ = ["nats_node"]  # the fixture, used by name


async def delete_stream(url: str) -> None:
    """The journal's stream deleted, as an operator resetting NATS would (or its stores
    replaced): its next venue begins a new stream from seq 1."""
    nc = await nats.connect(url)
    try:
        await nc.jetstream(timeout=5.0).delete_stream(STREAM_DEFAULT)
    finally:
        await nc.close()


def stream_last_seq(url: str) -> int:
    journal = JetStreamJournal(url, create=False)
    try:
        return journal.last_seq()
    finally:
        journal.close()


def run_to_its_end(tmp_path: Path, data_dir: Path, url: str) -> subprocess.CompletedProcess[str]:
    """`venue serve --nats` on `data_dir`; stopped (and so failing the test) if it serves."""
    server = subprocess.Popen(
        [*SERVE, "--port", "0", "--data-dir", str(data_dir), "--nats", url],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    assert server.stdout is not None
    said = []
    for _ in range(START_LINES_MAX):  # bounded: it listens, or it ends (its pipe closed)
        line = server.stdout.readline()
        if line.startswith("tokenvenue listening:"):
            stop(server, signal.SIGTERM)
            raise AssertionError(f"it served on a snapshot of another stream: {line}")
        said.append(line)
        if not line:
            break
    out, errors = server.communicate(timeout=RUN_TIMEOUT_S)
    return subprocess.CompletedProcess(server.args, server.returncode, "".join(said) + out, errors)


def test_a_venue_whose_snapshot_is_of_another_stream_is_refused(
    tmp_path: Path, nats_node: NatsCluster
) -> None:
    """A's snapshot (written at its clean stop); the stream reset and B's venue begun on it,
    longer than A's; A started again there is refused in one line, changing nothing."""
    first_dir, other_dir = tmp_path / "venue-a", tmp_path / "venue-b"
    server, url = start(tmp_path, first_dir, "--nats", nats_node.url)
    try:
        asyncio.run(asyncio.wait_for(place_resting_orders(url, 1), 30))
    finally:
        stop(server, signal.SIGTERM)
    snapshot_seq = stream_last_seq(nats_node.url)
    asyncio.run(delete_stream(nats_node.url))
    server, url = start(tmp_path, other_dir, "--nats", nats_node.url)
    try:
        asyncio.run(asyncio.wait_for(place_resting_orders(url, 4), 30))
    finally:
        stop(server, signal.SIGTERM)
    last_seq = stream_last_seq(nats_node.url)
    assert last_seq > snapshot_seq  # not "ahead of the stream": the seq alone passes
    before = sorted(path.name for path in first_dir.iterdir())
    result = run_to_its_end(tmp_path, first_dir, nats_node.url)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    line = result.stderr.splitlines()[-1]  # after the lease's log line: the refusal's own
    assert line.startswith("venue: cannot start: the snapshot at seq"), line
    assert f"seq {snapshot_seq} in {first_dir} was not written from this stream" in line, line
    assert "of another stream" in line, line
    assert sorted(path.name for path in first_dir.iterdir()) == before
    assert stream_last_seq(nats_node.url) == last_seq  # nothing journaled


def test_a_venue_whose_snapshot_meets_a_cluster_s_stream_is_refused_at_its_record(
    tmp_path: Path, nats_node: NatsCluster
) -> None:
    """A's snapshot; the stream reset and a cluster's core begun on it (its records carry
    each command's origin): A started again there is refused at the record that checks its
    snapshot, which does not decode as a one-process venue's."""
    data_dir = tmp_path / "venue-a"
    server, _ = start(tmp_path, data_dir, "--nats", nats_node.url)
    stop(server, signal.SIGTERM)
    snapshot_seq = stream_last_seq(nats_node.url)
    asyncio.run(delete_stream(nats_node.url))
    core = start_core(tmp_path, "core-a", nats_node.url)
    try:
        expect_line(core.stdout, "active at seq")
    finally:
        stop(core, signal.SIGTERM)
    assert stream_last_seq(nats_node.url) >= snapshot_seq  # the same config's venue built
    result = run_to_its_end(tmp_path, data_dir, nats_node.url)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    line = result.stderr.splitlines()[-1]
    assert line.startswith(f"venue: cannot start: the stream's record at seq {snapshot_seq}"), line
    assert "is the stream another venue's" in line, line


async def make_stream_on(url: str, subjects: list[str]) -> None:
    """`VENUE_COMMANDS` made as the journal makes it, but taking `subjects` (another venue's,
    or a tool's)."""
    config = StreamConfig(
        name=STREAM_DEFAULT,
        subjects=subjects,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        num_replicas=1,
        discard=DiscardPolicy.NEW,
        duplicate_window=DUPLICATE_WINDOW_S,
        deny_delete=True,
        deny_purge=True,
    )
    nc = await nats.connect(url)
    try:
        await nc.jetstream(timeout=5.0).add_stream(config)
    finally:
        await nc.close()


def test_a_venue_on_a_stream_of_other_subjects_is_refused_at_once(
    tmp_path: Path, nats_node: NatsCluster
) -> None:
    """A stream of the journal's name that does not take the journal's subject alone: before,
    the venue built itself, published its first record to no stream for 30 s (a warning
    every 0.25 s) and stopped, exit 70, `record 1 not acknowledged`, its data directory made."""
    asyncio.run(make_stream_on(nats_node.url, ["other.commands"]))
    data_dir = tmp_path / "venue"
    result = run_to_its_end(tmp_path, data_dir, nats_node.url)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    line = result.stderr.splitlines()[-1]
    assert line.startswith(f"venue: cannot start: stream {STREAM_DEFAULT} takes subjects"), line
    assert "venue.commands" in line and "other.commands" in line, line
    assert not data_dir.exists()
