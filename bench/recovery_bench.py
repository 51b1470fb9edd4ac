"""The recovery benchmark: `venue bench recovery` — how fast a venue comes back after a stop.

Owns two measurements, both on files in a temporary directory. Replay: a seeded `mixed`
workload of `--commands` commands (on the full venue path, with a ledger) is journaled as
the server would, then the time to read, decode and execute the whole journal into a fresh
venue is measured (commands replayed per second). Snapshot: a venue with `--orders` resting
orders is captured, encoded and written atomically, then read back and restored; the file
size and each time are reported.
"""

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from bench import workloads
from cli import progress
from cli.failures import CommandFailed
from core import snapshots
from core.journal import FileJournal
from core.sequencer import decode_command, encode_command
from engine import snapshot as venue_snapshot
from engine.commands import PlaceOrder
from engine.enums import Side
from engine.venue import Venue, VenueConfig
from settlement.ledger import Ledger

JOURNAL_BATCH = 1_000  # records per fsync while writing the journal to replay
MAX_RESTING_PER_ACCOUNT = 20_000  # the engine's default open-orders limit
# Both are held in memory whole: the commands and the venue replaying them ~210 MiB a million
# at the peak (tracemalloc), a venue's resting orders ~1.3 GiB a million (the default's,
# snapshotted). These bounds keep a zero too many from running the machine out of memory
# (~4.1 and ~5 GiB).
COMMANDS_MAX = 20_000_000
ORDERS_MAX = 4_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--commands",
        type=int,
        default=200_000,
        help=f"journal to replay (default 200,000; at most {COMMANDS_MAX:,}: held in memory)",
    )
    parser.add_argument(
        "--orders",
        type=int,
        default=1_000_000,
        help=f"resting, for snapshots (default 1,000,000; at most {ORDERS_MAX:,}: held in memory)",
    )
    parser.add_argument("--seed", type=int, default=1, help="of the commands (default 1)")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")


def measure_replay(commands: int, seed: int, directory: Path) -> dict[str, object]:
    workload = workloads.build("mixed", commands, seed)
    stream = workloads.ledger_setup() + workload.setup + workload.commands
    journal = FileJournal(directory / "journal.log")
    for start in range(0, len(stream), JOURNAL_BATCH):
        batch = stream[start : start + JOURNAL_BATCH]
        journal.commit([(start + i + 1, encode_command(c)) for i, c in enumerate(batch)])
    journal.close()
    started = time.perf_counter()
    venue = Venue(ledger=Ledger())
    journal = FileJournal(directory / "journal.log")
    replayed = 0
    for _, payload in journal.replay():
        venue.execute(decode_command(payload))
        replayed += 1
    seconds = time.perf_counter() - started
    journal.close()
    return {
        "journal_commands": replayed,
        "replay_seconds": round(seconds, 3),
        "replay_commands_per_sec": round(replayed / seconds),
    }


def resting_venue(orders: int, seed: int) -> Venue:
    """A book-only venue with `orders` resting orders spread over both sides, none crossing."""
    rng = random.Random(seed)
    venue = Venue(VenueConfig(open_orders_per_account_max=MAX_RESTING_PER_ACCOUNT))
    for command in workloads.build("addcancel", 1, seed).setup[:1]:  # the listing only
        venue.execute(command)
    centre = workloads.CENTER_PRICE
    accounts = orders // (MAX_RESTING_PER_ACCOUNT // 2) + 1
    for i in range(orders):
        side = Side.BUY if i % 2 else Side.SELL
        offset = rng.randint(1, 2_000)
        price = centre - offset if side is Side.BUY else centre + offset
        venue.execute(
            PlaceOrder(
                ts_us=workloads.TS_START_US,
                account=i % accounts + 1,
                symbol=workloads.SYMBOL,
                side=side,
                price=price,
                qty=workloads.LOT,
            )
        )
    return venue


def measure_snapshot(orders: int, seed: int, directory: Path) -> dict[str, object]:
    venue = resting_venue(orders, seed)
    assert len(venue.orders) == orders, "every order should rest"
    started = time.perf_counter()
    image = snapshots.Snapshot(orders, venue_snapshot.capture(venue), {})
    path = snapshots.write(directory, image)
    write_seconds = time.perf_counter() - started
    started = time.perf_counter()
    loaded = snapshots.latest(directory)
    assert loaded is not None
    restored = venue_snapshot.restore(loaded.venue)
    load_seconds = time.perf_counter() - started
    assert len(restored.orders) == orders
    return {
        "snapshot_orders": orders,
        "snapshot_bytes": path.stat().st_size,
        "snapshot_write_seconds": round(write_seconds, 3),
        "snapshot_load_seconds": round(load_seconds, 3),
    }


def run(args: argparse.Namespace) -> int:
    if min(args.commands, args.orders) <= 0:
        raise CommandFailed("--commands and --orders must be positive")
    for flag, value, most in (
        ("--commands", args.commands, COMMANDS_MAX),
        ("--orders", args.orders, ORDERS_MAX),
    ):
        if value > most:
            raise CommandFailed(f"{flag} {value:,}: at most {most:,} (held in memory whole)")
    with (
        tempfile.TemporaryDirectory(prefix="venue-bench-recovery-") as directory,
        progress.bar(
            args.json, total=2, desc="recovery: replay", bar_format=progress.STEPS_FORMAT
        ) as shown,
    ):
        result = measure_replay(args.commands, args.seed, Path(directory))
        shown.set_description_str("recovery: snapshot", refresh=False)
        shown.update(1)
        snapshot_dir = Path(directory) / "snapshots"
        snapshot_dir.mkdir()
        result |= measure_snapshot(args.orders, args.seed, snapshot_dir)
        shown.update(1)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:<28} {value:,}" if isinstance(value, int) else f"{key:<28} {value}")
    return 0
