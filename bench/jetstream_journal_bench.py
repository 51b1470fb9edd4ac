"""The JetStream journal benchmark: durable records per second on 1 node (R=1) and 3 (R=3).

`python -m bench.jetstream_journal_bench [--records N] [--batch B] [--payload-bytes P]` starts
its own nats-servers on loopback in a temporary directory (cluster/nats.py), commits `records`
records through `JetStreamJournal` in batches of `batch` (one `sync` each, as the sequencer's
group commit), replays them, and prints one JSON line per shape. Numbers, not a test.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from cluster.nats import NatsCluster
from core.jetstream_journal import JetStreamJournal


def measure(servers: str, records: int, batch: int, payload_bytes: int) -> dict[str, object]:
    payload = bytes(index % 251 for index in range(payload_bytes))
    journal = JetStreamJournal(servers, stream="BENCH", subject="bench")
    batch_ms: list[float] = []
    try:
        started = time.perf_counter()
        for first in range(1, records + 1, batch):
            rows = [(seq, payload) for seq in range(first, min(first + batch, records + 1))]
            before = time.perf_counter()
            journal.commit(rows)
            batch_ms.append((time.perf_counter() - before) * 1e3)
        commit_s = time.perf_counter() - started
        started = time.perf_counter()
        replayed = sum(1 for _ in journal.replay())
        replay_s = time.perf_counter() - started
    finally:
        journal.close()
    batch_ms.sort()
    return {
        "records": records,
        "batch": batch,
        "payload_bytes": payload_bytes,
        "durable_records_per_sec": round(records / commit_s),
        "batch_ms": {
            "p50": round(batch_ms[len(batch_ms) // 2], 2),
            "p99": round(batch_ms[len(batch_ms) * 99 // 100], 2),
        },
        "replayed_records_per_sec": round(replayed / replay_s),
        "verified": replayed == records,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--payload-bytes", type=int, default=200)
    args = parser.parse_args(argv)
    for nodes in (1, 3):
        with tempfile.TemporaryDirectory(prefix="venue-bench-nats-") as directory:
            with NatsCluster(Path(directory), size=nodes) as cluster:
                result = measure(cluster.url, args.records, args.batch, args.payload_bytes)
            print(json.dumps({"nodes": nodes, "replicas": 3 if nodes >= 3 else 1, **result}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
