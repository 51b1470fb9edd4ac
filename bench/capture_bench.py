"""The capture benchmark: how long taking a snapshot's image holds the event loop at the bounds.

Owns a state built in process as a long run leaves it at the bounds (docs/gateway.md "A long
run"): `ACCOUNTS` accounts whose private histories hold 500,000 events across them
(`PRIVATE_HISTORY_EVENTS_TOTAL_MAX`), 500,000 closed orders in the order history
(`CLOSED_ORDERS_TOTAL_MAX`), the engine's 1,000,000 closed order ids and some resting
orders. The parts are filled directly (not traded into: that would take minutes), with
payloads and records of the live shapes. It times what `VenueCore._capture` does on the loop
(the engine's image and the private streams' part of the gateway's), the median of
`--repeat`, both as taken at once (before session 34) and `later` (the cores' since), then
the writer's encode of each; with `--profile` it prints where the capture's time goes
(cProfile). With `--standby` it times a cluster standby's capture of its warm copy instead
(`Follower.capture`: the engine's image alone, at its 1,000,000 closed ids; a core's snapshot
holds no private streams) and the writer's encode of it. With `--restore` it writes the
state's snapshot instead and restores it in `--runs` fresh processes as `venue serve` does
(`restore`: its venue, then the private streams' part), each saying its memory (RSS, peak),
the time of the entries' check before it (`check_s`) and whether the state restored encodes
into the file's bytes again, beside the building process's. Run it as
`python -m bench.capture_bench`.
"""

import argparse
import cProfile
import gc
import json
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
import zlib
from pathlib import Path
from typing import Any, NamedTuple

from bench.environment import ROOT
from core import snapshots
from core.cluster_core import CodOrders, Follower
from core.nats_bus import ClusterCodec
from core.snapshot_entries import OrderRecord
from engine import snapshot as venue_snapshot
from engine.venue import Venue
from gateway import limits
from gateway.private_streams import PrivateStream, PrivateStreams
from gateway.sessions import Sessions
from settlement.ledger import Ledger

ACCOUNTS = 400  # the long run's funded accounts
ENGINE_CLOSED_IDS = 1_000_000  # `VenueConfig.closed_orders_retained_max`
# A push of the live shape: an execution report's JSON, ~360 bytes
PUSH = (
    b'{"ch":"account","seq":%d,"epoch":1765000000000000,"type":"exec","ts":1765000000123456,'
    b'"data":{"exec_type":"canceled","order_id":%d,"cl_ord_id":"c-%d","symbol":"AAPLx-USD",'
    b'"side":"buy","type":"limit","tif":"gtc","price":"101.25","qty":"3.000000",'
    b'"leaves_qty":"0.000000","cum_qty":"0.000000","avg_px":null,"status":"canceled",'
    b'"reason":"user","exec_id":%d}}'
)


class Bounds(NamedTuple):
    """How much the state holds (the defaults: the bounds)."""

    accounts: int = ACCOUNTS
    events: int = limits.PRIVATE_HISTORY_EVENTS_TOTAL_MAX  # across the private histories
    closed_orders: int = limits.CLOSED_ORDERS_TOTAL_MAX  # in the order history
    engine_ids: int = ENGINE_CLOSED_IDS  # in the engine's closed-order memory


def build(bounds: Bounds) -> tuple[Venue, PrivateStreams]:
    """A venue and private streams holding `bounds` (the module docstring)."""
    accounts = bounds.accounts
    venue = Venue()
    for order_id in range(1, bounds.engine_ids + 1):
        venue.closed_orders.add(order_id, order_id % accounts)
    directory = Path(tempfile.mkdtemp(prefix="capture-bench-"))
    bus: Any = types.SimpleNamespace(reads=None)  # (the image reads no venue)
    streams = PrivateStreams(bus, Sessions(), directory)
    each = bounds.events // accounts
    for account in range(accounts):
        stream = streams.streams[account] = PrivateStream(seq=each + 7)
        stream.history.extend(PUSH % (seq, seq, seq, seq) for seq in range(8, each + 8))
    history = streams.order_history
    for order_id in range(1, bounds.closed_orders + 1):
        history._keep(order_id % accounts, _record(order_id))
    for order_id in range(bounds.engine_ids + 1, bounds.engine_ids + 10_001):
        history.accepted_ts[order_id] = order_id  # open orders
    directory.rmdir()
    return venue, streams


def _record(order_id: int) -> OrderRecord:
    return OrderRecord(
        order_id, f"c-{order_id}", "AAPLx-USD", "buy", "limit", "gtc", "101.25", "3.000000",
        None, "0.000000", "3.000000", "101.25", "filled", None, None, order_id, order_id + 9,
    )  # fmt: skip


def capture(venue: Venue, streams: PrivateStreams, later: bool) -> tuple[Any, dict[str, Any]]:
    """What the core takes on the loop: the engine's image and the gateway's (its private
    streams' part: the candles and the tape are bounded small); `later`: as the cores do
    since session 34, the long parts as `Later` ones, made by the writer."""
    return venue_snapshot.capture(venue, later), streams.image(later)


def measure(venue: Venue, streams: PrivateStreams, later: bool, repeat: int) -> list[float]:
    """Each capture's milliseconds, the collector paused as the cores pause it."""
    times = []
    for _ in range(repeat):
        gc.disable()
        started = time.perf_counter()
        image = capture(venue, streams, later)
        times.append(round((time.perf_counter() - started) * 1e3, 1))
        del image
        gc.enable()
    return times


def standby_copy(bounds: Bounds) -> Follower:
    """A standby's warm copy holding the engine's closed ids of `bounds` (and a ledger, as
    every core's venue has)."""
    follower = Follower(ClusterCodec(), CodOrders(), staleness_us=0)
    venue = follower.venue = Venue(ledger=Ledger())
    assert venue.ledger is not None
    follower.ledger = venue.ledger
    for order_id in range(1, bounds.engine_ids + 1):
        venue.closed_orders.add(order_id, order_id % bounds.accounts)
    return follower


def standby(bounds: Bounds, repeat: int) -> dict[str, Any]:
    """The standby's capture at `bounds` (each one's ms, the collector paused as the standby
    pauses it; the median), then the writer's encode of one: its ms, bytes and CRC32."""
    follower = standby_copy(bounds)
    times = []
    for _ in range(repeat):
        gc.disable()
        started = time.perf_counter()
        image, _ = follower.capture()
        times.append(round((time.perf_counter() - started) * 1e3, 1))
        del image
        gc.enable()
    image, _ = follower.capture()
    started = time.perf_counter()
    body = snapshots.encode(image)
    encode_ms = round((time.perf_counter() - started) * 1e3, 1)
    result = {"capture_ms": statistics.median(times), "captures_ms": times}
    result |= {"encode_ms": encode_ms, "bytes": len(body), "crc32": zlib.crc32(body)}
    print(f"standby: capture_ms median {result['capture_ms']} of {times}; encoded in")
    print(f"  {encode_ms} ms (the writer's part): {len(body):,} bytes, CRC32 {result['crc32']:08x}")
    return result


def memory_mb() -> dict[str, float]:
    """This process's resident memory now and at its peak (`/proc/self/status`), in MB."""
    fields = {"VmRSS": "rss_mb", "VmHWM": "peak_mb"}
    found: dict[str, float] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in fields:
            found[fields[name]] = round(int(value.split()[0]) / 1024, 1)  # (kB)
    return found


def restore(directory: Path) -> dict[str, Any]:
    """Restore the snapshot in `directory` as `venue serve` does (`core.recovery`: the
    newest file read, its venue restored, then the gateway's part: here the private streams',
    the whole of this state's), the image let go; this process's memory then, how long it
    took (`restore_s`, the whole start's part: `snapshots.latest` checks the newest file's
    entries, `snapshots.check_entries`, before it is taken; `check_s` is that check timed
    once more, alone: the share of `restore_s` it is), whether the state restored encodes into
    the file's bytes again, its engine's state hash."""
    started = time.perf_counter()
    image = snapshots.latest(directory)
    assert image is not None, f"no snapshot in {directory}"
    checking = time.perf_counter()
    snapshots.check_entries(image)
    check_s = time.perf_counter() - checking
    seq = image.seq
    venue = venue_snapshot.restore(image.venue)
    reads = types.SimpleNamespace(markets=venue.markets, orders=venue.orders)
    streams = PrivateStreams(types.SimpleNamespace(reads=reads), Sessions(), directory)
    streams.restore(image.gateway)
    del image
    gc.collect()
    restore_s = time.perf_counter() - started - check_s  # (the second check not counted)
    result: dict[str, Any] = {"restore_s": round(restore_s, 2), "check_s": round(check_s, 2)}
    result |= memory_mb()
    result["record_strings"] = _distinct_strings(streams)
    result["state_hash"] = venue.state_hash()
    body = snapshots.encode(snapshots.Snapshot(seq, *capture(venue, streams, later=False)))
    (path,) = directory.glob("snapshot-*.bin")
    result["same_bytes"] = body == path.read_bytes()[snapshots.HEADER.size :]
    return result


def _distinct_strings(streams: PrivateStreams) -> int:
    """The distinct string objects in the order history's records but their cl_ord_ids (the
    live history shares one per value: a handful here)."""
    seen: set[int] = set()
    for history in streams.order_history.accounts.values():
        for record in history.closed.values():
            seen.update(id(getattr(record, name)) for name in ("symbol", "price", "status"))
    return len(seen)


def restores(venue: Venue, streams: PrivateStreams, runs: int) -> dict[str, Any]:
    """The built state's memory, then its snapshot written and restored in `runs` fresh
    processes (`--restore-from`), each one's result and the medians."""
    gc.collect()
    result: dict[str, Any] = {"built": memory_mb(), "state_hash": venue.state_hash()}
    directory = Path(tempfile.mkdtemp(prefix="restore-bench-"))
    try:
        snapshots.write(directory, snapshots.Snapshot(1, *capture(venue, streams, later=True)))
        command = [sys.executable, "-m", "bench.capture_bench", "--restore-from", str(directory)]
        runs_made = []
        for _ in range(runs):
            out = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
            runs_made.append(json.loads(out.stdout.splitlines()[-1]))
    finally:
        shutil.rmtree(directory)
    result["restored"] = runs_made
    for name in ("rss_mb", "peak_mb", "restore_s", "check_s"):
        result[f"{name}_median"] = statistics.median(run[name] for run in runs_made)
    result["same_bytes"] = all(run["same_bytes"] for run in runs_made)
    # The engine's state hash; the gateway's part is compared by its bytes (`same_bytes`)
    result["same_state_hash"] = all(run["state_hash"] == result["state_hash"] for run in runs_made)
    built = result["built"]["rss_mb"]
    print(f"built: RSS {built} MB; restored in a fresh process ({runs} runs, medians):")
    print(f"  RSS {result['rss_mb_median']} MB, peak {result['peak_mb_median']} MB, in")
    print(f"  {result['restore_s_median']} s; the entries' check (a cluster gateway's, first):")
    print(f"  {result['check_s_median']} s; encodes into the file's bytes again (the engine's")
    print(f"  and the gateway's parts): {result['same_bytes']}; the engine's state hash the")
    print(f"  built one's: {result['same_state_hash']}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="captures timed (default 5)")
    parser.add_argument("--accounts", type=int, default=ACCOUNTS, help=f"(default {ACCOUNTS})")
    parser.add_argument("--scale", type=float, default=1.0, help="of the bounds (default 1)")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top entries")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--restore", action="store_true", help="write, restore: memory")
    parser.add_argument("--runs", type=int, default=3, help="restores (default 3)")
    parser.add_argument("--standby", action="store_true", help="a standby's capture instead")
    parser.add_argument("--restore-from", type=Path, help=argparse.SUPPRESS)  # (a run's)
    arguments = parser.parse_args(argv)
    if arguments.restore_from is not None:
        print(json.dumps(restore(arguments.restore_from)))
        return 0
    full = Bounds()
    scaled = Bounds(arguments.accounts, *(round(n * arguments.scale) for n in full[1:]))
    if arguments.standby:
        standing_by = standby(scaled, arguments.repeat)
        if arguments.json:
            print(json.dumps(standing_by))
        return 0
    venue, streams = build(scaled)
    if arguments.restore:
        restored = restores(venue, streams, arguments.runs)
        if arguments.json:
            print(json.dumps(restored))
        return 0
    result: dict[str, Any] = {}
    for later in (False, True):
        times = measure(venue, streams, later, arguments.repeat)
        started = time.perf_counter()
        body = snapshots.encode(snapshots.Snapshot(1, *capture(venue, streams, later)))
        encode_ms = round((time.perf_counter() - started) * 1e3, 1)
        name = "later" if later else "at_once"
        result[name] = {"capture_ms": statistics.median(times), "encode_ms": encode_ms}
        result[name] |= {"captures_ms": times, "bytes": len(body), "crc32": zlib.crc32(body)}
        crc = result[name]["crc32"]
        print(f"{name}: capture_ms median {statistics.median(times)} of {times}; encoded in")
        print(f"  {encode_ms} ms (the writer's part): {len(body):,} bytes, CRC32 {crc:08x}")
        if arguments.profile:
            profiler = cProfile.Profile()
            profiler.runcall(capture, venue, streams, later)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(8)
    result["same_bytes"] = result["at_once"]["crc32"] == result["later"]["crc32"]
    if arguments.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
