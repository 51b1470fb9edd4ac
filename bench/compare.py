"""`venue bench engine --compare`: one seeded workload through every engine adapter.

Builds the workload once (`bench.workloads.build`); each available adapter in
`bench.adapters` then prepares it untimed and runs it once with a clock read around every
command, under the `--gc` policy of `bench.engine_bench`. Prints one table (ops/s,
p50/p99/max latency, traded quantity, whether it equals ours, throughput relative to ours
with the book only, then process CPU ns per command and ours ÷ its, the figures a shared
machine swings far less than the wall clock) and whether every adapter traded the same
total quantity: they must, since they run the same commands, so a difference is a bug in
one of them and the command exits 1. An adapter that cannot run a workload faithfully is
listed as skipped, with why.
"""

import argparse
import json
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from bench import stats, workloads
from bench.adapters import AdapterResult, EngineAdapter, all_adapters
from bench.adapters.thirdparty import Unsupported
from bench.engine_bench import (
    DEFAULT_OPS,
    DEFAULT_SEED,
    GC_MODES,
    _collector,
    _positive,
)
from cli import progress

BASELINE = "ours"  # the adapter every ratio is relative to
DEFAULT_GC = "disable"
PERCENTILES = {"p50": (50, 100), "p99": (99, 100)}  # nearest-rank fractions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--compare`, and the workload options unless `engine_bench` added them already."""
    parser.add_argument(
        "--compare", action="store_true", help="run the workload through every engine adapter"
    )
    shared: list[tuple[str, dict[str, Any]]] = [
        ("--workload", {"choices": sorted(workloads.WORKLOADS), "default": "mixed"}),
        ("--ops", {"type": _positive, "default": DEFAULT_OPS, "help": "timed commands"}),
        ("--seed", {"type": int, "default": DEFAULT_SEED}),
        ("--gc", {"choices": list(GC_MODES), "default": DEFAULT_GC, "help": "GC policy"}),
        ("--json", {"action": "store_true", "help": "print one JSON object"}),
    ]
    for flag, options in shared:
        with suppress(argparse.ArgumentError):  # there already: `engine_bench` added it
            parser.add_argument(flag, **options)


def run(args: argparse.Namespace) -> int:
    """With `--compare`, the comparison; without it, the plain engine benchmark."""
    if not args.compare:
        from bench import engine_bench

        return engine_bench.run(args)
    engines = all_adapters()
    with progress.bar(
        args.json, total=len(engines) + 1, desc=f"{args.workload}: workload", unit="engine"
    ) as shown:

        def ran(engine: str) -> None:  # the workload built, or an engine done (or skipped)
            shown.set_description_str(f"{args.workload}: {engine} done", refresh=False)
            shown.update(1)

        report = compare(
            args.workload, args.ops, args.seed, getattr(args, "gc", DEFAULT_GC), engines, ran
        )
    print(json.dumps(report) if args.json else table(report))
    return 0 if report["traded_qty_equal"] else 1


def compare(
    name: str,
    ops: int,
    seed: int,
    gc_mode: str = DEFAULT_GC,
    adapters: list[EngineAdapter] | None = None,
    ran: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run workload `name` through every available adapter; the report as a dict. `ran` is
    told as the workload is built and as each engine is done or skipped (progress)."""
    told = ran or (lambda engine: None)
    workload = workloads.build(name, ops, seed)
    told("the workload")
    results: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for adapter in all_adapters() if adapters is None else adapters:
        result = _run_adapter(adapter, workload, name, gc_mode, skipped)
        if result is not None:
            results.append(_row(adapter.name, result))
        told(adapter.name)
    base = next((r for r in results if r["engine"] == BASELINE), None)
    for row in results:
        row["ratio_to_ours"] = (
            round(row["ops_per_sec"] / base["ops_per_sec"], 3) if base is not None else None
        )
    for row in results:
        row["cpu_ratio_to_ours"] = (
            round(base["cpu_ns_per_op"] / row["cpu_ns_per_op"], 3)
            if base is not None and base["cpu_ns_per_op"] and row["cpu_ns_per_op"]
            else None
        )
    for row in results:
        row["traded_qty_equal"] = base is not None and row["traded_qty"] == base["traded_qty"]
    totals = {row["traded_qty"] for row in results}
    return {
        "workload": name,
        "ops": ops,
        "seed": seed,
        "gc": f"{gc_mode}: {GC_MODES[gc_mode]}",
        "results": results,
        "skipped": skipped,
        "traded_qty_equal": len(totals) == 1,
    }


def _run_adapter(
    adapter: EngineAdapter,
    workload: workloads.Workload,
    name: str,
    gc_mode: str,
    skipped: list[dict[str, str]],
) -> AdapterResult | None:
    """One engine's run of the workload; None, with the reason in `skipped`, if it cannot."""
    ok, reason = adapter.available()
    if not ok:
        skipped.append({"engine": adapter.name, "reason": reason})
        return None
    try:
        commands = adapter.prepare(workload)
    except Unsupported as unsupported:  # this engine cannot run this workload faithfully
        skipped.append({"engine": adapter.name, "reason": f"{name}: {unsupported}"})
        return None
    with _collector(gc_mode):
        return adapter.run(commands)


def _row(name: str, result: AdapterResult) -> dict[str, Any]:
    latencies = sorted(result.latencies_ns)
    assert latencies, f"{name} ran no commands"
    return {
        "engine": name,
        "ops": len(latencies),
        "seconds": round(result.seconds, 6),
        "ops_per_sec": round(len(latencies) / result.seconds),
        "latency_us": {
            **{key: stats.rank(latencies, *q) / 1000 for key, q in PERCENTILES.items()},
            "max": latencies[-1] / 1000,
        },
        "traded_qty": result.traded_qty,
        "cpu_ns_per_op": round(result.cpu_seconds * 1e9 / len(latencies)),
    }


def table(report: dict[str, Any]) -> str:
    """The report as a fixed-width table, then the skipped engines and the quantity check."""
    header = (
        f"{'engine':<14} {'ops/s':>11} {'p50 µs':>8} {'p99 µs':>8} {'max µs':>9} "
        f"{'traded qty':>16} {'qty equal':>9} {'vs ours':>8} {'cpu ns/op':>10} "
        f"{'cpu vs ours':>11}"
    )
    lines = [
        f"{report['workload']}: {report['ops']:,} ops, seed {report['seed']}, gc {report['gc']}",
        header,
        "-" * len(header),
    ]
    for row in report["results"]:
        latency = row["latency_us"]
        ratio = "-" if row["ratio_to_ours"] is None else f"{row['ratio_to_ours']:.3f}x"
        cpu = row["cpu_ratio_to_ours"]
        cpu_ratio = "-" if cpu is None else f"{cpu:.3f}x"
        lines.append(
            f"{row['engine']:<14} {row['ops_per_sec']:>11,} {latency['p50']:>8.3f} "
            f"{latency['p99']:>8.3f} {latency['max']:>9.1f} {row['traded_qty']:>16,} "
            f"{'yes' if row['traded_qty_equal'] else 'no':>9} {ratio:>8} "
            f"{row['cpu_ns_per_op']:>10,} {cpu_ratio:>11}"
        )
    lines += [f"skipped {s['engine']}: {s['reason']}" for s in report["skipped"]]
    if report["traded_qty_equal"]:
        lines.append("traded quantity: the same in every engine")
    else:
        totals = ", ".join(f"{r['engine']} {r['traded_qty']:,}" for r in report["results"])
        lines.append(f"traded quantity DIFFERS between engines: {totals}")
    return "\n".join(lines)
