"""The journal benchmark: `venue bench journal` — durable commands per second with group commit.

Owns the command line around `core.journal.measure`: a fresh journal file in a temporary
directory, records of a command's typical size, one fsync per batch.
"""

import argparse
import json
import tempfile
from pathlib import Path

from core.journal import measure


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1_000, help="records per fsync")
    parser.add_argument("--payload-bytes", type=int, default=100, help="about a PlaceOrder")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")


def run(args: argparse.Namespace) -> int:
    if min(args.records, args.batch, args.payload_bytes) <= 0:
        raise SystemExit("--records, --batch and --payload-bytes must be positive")
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
