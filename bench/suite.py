"""`venue bench all` (and `make bench`): a short run of every benchmark, in a few minutes.

Owns the selection and the sizes: the engine's three workloads with and without the ledger,
the ledger store and the journal at reduced sizes, and two end-to-end runs (one order per
message, then batches). Each part writes its own result files under `bench/results/`
(engine-*.json, e2e-*); this module prints one summary and writes `all-<time>.json` with
the headline numbers of every part, next to the environment they were measured in.
"""

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import e2e_bench, e2e_report, engine_bench, environment, server_process, store_bench
from cli.failures import CommandFailed
from core import journal

PARTS = ("engine", "store", "journal", "e2e")
STORE_TRADES, STORE_BATCH = 50_000, 1_000
JOURNAL_RECORDS, JOURNAL_BATCH, JOURNAL_PAYLOAD = 100_000, 1_000, 100
E2E_RUNS = (  # (rate, batch): one order per message, then twenty
    (1_000, 1),
    (4_000, 20),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    engine_bench.add_all_arguments(parser)
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}"
    )
    parser.add_argument(
        "--e2e-duration", type=float, default=5.0, help="seconds per e2e run (default 5)"
    )
    parser.add_argument(
        "--config", type=Path, default=Path("venue.toml"), help="e2e's (default venue.toml)"
    )


def run(args: argparse.Namespace) -> int:
    parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if not parts:
        raise CommandFailed(f"--parts: name at least one of {', '.join(PARTS)}")
    if unknown:
        raise CommandFailed(f"--parts: no part {', '.join(unknown)} (of {', '.join(PARTS)})")
    if "e2e" in parts:  # checked before the other parts run, not after
        if not 0 < args.e2e_duration <= e2e_bench.DURATION_S_MAX:
            raise CommandFailed(
                f"--e2e-duration must be in (0, {e2e_bench.DURATION_S_MAX:g}] seconds"
            )
        server_process.check_config(args.config)
    e2e_report.check_out(args.out)  # every part writes there, the first after a few seconds
    steps: dict[str, Callable[[argparse.Namespace], Any]] = {
        "engine": _engine,
        "store": _store,
        "journal": _journal,
        "e2e": _e2e,
    }
    headlines = {part: steps[part](args) for part in PARTS if part in parts}
    report = environment.describe("all") | {"results": headlines}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"all-{environment.stamp(report['created_utc'])}"
    path = environment.free_base(args.out, stem).with_suffix(".json")
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


def _engine(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [
        {
            "workload": engine_bench.label(result),
            "ops_per_sec": result["ops_per_sec"],
            "p99_us": result["latency_us"]["p99"],
        }
        for result in engine_bench.run_all_results(args)
    ]


def _store(_: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="venue-bench-store-") as directory:
        result = store_bench.measure(STORE_TRADES, STORE_BATCH, Path(directory))
    print(
        f"store: {result['trades_per_sec']:,} trades/s, CPU {result['cpu_us_per_trade']} µs/trade"
        f" (batch {STORE_BATCH}, fsync each)"
    )
    return result


def _journal(_: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="venue-bench-journal-") as directory:
        path = Path(directory) / "j"
        result = journal.measure(JOURNAL_RECORDS, JOURNAL_BATCH, JOURNAL_PAYLOAD, path)
    print(f"journal: {result['durable_records_per_sec']:,} durable records/s")
    return result


def _e2e(args: argparse.Namespace) -> list[dict[str, Any]]:
    headlines = []
    for rate, batch in E2E_RUNS:
        load = e2e_bench.Load(args.e2e_duration, rate, 2, 2, 10, batch)
        try:
            result = server_process.run_async(e2e_bench.measure(load, args.config, True))
        except e2e_bench.ClientFailed as failed:
            raise SystemExit(f"venue bench all: e2e: {failed}") from None
        report = environment.describe("e2e") | {"result": {"mode": "rate"} | result}
        written = e2e_report.write(report, args.out)
        print(e2e_report.summary(result))  # its last line: server CPU per acked action
        print(f"wrote {written[-1]}")
        headlines.append(e2e_bench.headline(result))
    return headlines
