"""The engine benchmark: `venue bench engine` (one workload) and `venue bench all` (a short run).

Owns the measurement. Commands are generated first (`bench.workloads`); each pass then
replays the setup on a fresh `Venue`, untimed, and times only the workload's commands with
the garbage collector collected, frozen and then disabled or throttled (`--gc`). Two passes
over the same commands: a throughput pass with one clock read before and after the loop
(`ops_per_sec` = ops / seconds; `cpu_ns_per_op` is the same loop in process CPU time, which
a shared machine swings far less than the wall clock), then a latency pass with
`time.perf_counter_ns` around every `execute` for the percentiles, which therefore include
one clock read (`timer_overhead_ns`).
`run_all` writes its results as JSON under `bench/results/` (gitignored).
"""

import argparse
import gc
import json
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import environment, stats, workloads
from cli import progress
from engine.events import CommandRejected
from engine.venue import Venue

DEFAULT_OPS = 1_000_000
DEFAULT_SEED = 1
ALL_OPS = 100_000  # per workload in `bench all`: about a second each, a few seconds in all
# The commands are built in memory before the clock starts and the book grows as they run:
# peak MiB per million ops (tracemalloc) mixed 258, mixed+ledger 293, addcancel 401, cross
# 417, cross+ledger 966. `bench all` runs every one, so the worst sets it: four million is
# ~3.8 GiB; twenty million, the old bound, needed ~19 GiB of the box's 23 (no swap).
OPS_MAX = 4_000_000
OPS_HELP = f"at most {OPS_MAX:,}: they are built in memory first"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
TIMER_SAMPLES = 100_000  # back-to-back clock reads to estimate what one costs
# Young-generation threshold for `--gc freeze`: a collection after 100,000 net new container
# objects instead of Python's 700, so a long-running engine could live with it.
GC_THRESHOLD_FROZEN = 100_000
GC_MODES = {
    "disable": "collect + freeze before each pass, collector disabled during it",
    "freeze": f"collect + freeze before each pass, threshold {GC_THRESHOLD_FROZEN} during it",
    "default": "collector untouched (Python defaults)",
}
PERCENTILES = {"p50": (50, 100), "p99": (99, 100), "p999": (999, 1000)}  # exact fractions
SEED_HELP = f"of the workload's random choices (default {DEFAULT_SEED})"
GC_HELP = "the garbage collector during a pass (default disable)"
# Issue 12's goal for the full venue path (holds + matching + DvP): at least this fraction
# of plain matching's throughput on the same workload in the same run.
VENUE_PATH_RATIO_GOAL = 0.67


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workload",
        choices=sorted(workloads.WORKLOADS),
        default="mixed",
        help="the command mix (default mixed; README, Benchmarks)",
    )
    parser.add_argument(
        "--ops",
        type=_positive,
        default=DEFAULT_OPS,
        help=f"timed commands (default {DEFAULT_OPS:,}; {OPS_HELP})",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=SEED_HELP)
    parser.add_argument("--gc", choices=list(GC_MODES), default="disable", help=GC_HELP)
    parser.add_argument(
        "--ledger", action="store_true", help="the full venue path: holds, matching, DvP"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object last")


def add_all_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ops",
        type=_positive,
        default=ALL_OPS,
        help=f"per workload (default {ALL_OPS:,}; {OPS_HELP})",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=SEED_HELP)
    parser.add_argument("--gc", choices=list(GC_MODES), default="disable", help=GC_HELP)
    parser.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help="results directory (default bench/results)"
    )


# A measurement's steps, each drawn as it ends on a terminal: the workload built, the timed
# pass, the latency pass. Between passes only: the bar never runs inside a timed loop.
MEASURE_STEPS = 3


def run(args: argparse.Namespace) -> int:
    with progress.bar(
        args.json,
        total=MEASURE_STEPS,
        desc=label_of(args.workload, args.ledger),
        bar_format=progress.STEPS_FORMAT,
    ) as shown:
        result = measure(
            args.workload, args.ops, args.seed, args.gc, args.ledger, lambda: shown.update(1)
        )
    if args.json:
        print(json.dumps(result))
    else:
        print(summary(result))
    return 0


def run_all(args: argparse.Namespace) -> int:
    run_all_results(args)
    return 0


def run_all_results(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every workload with and without the ledger: print a table, write the JSON, return them."""
    runs = [(name, ledger) for ledger in (False, True) for name in sorted(workloads.WORKLOADS)]
    with progress.bar(
        getattr(args, "json", False),
        total=MEASURE_STEPS * len(runs),
        desc="engine",
        bar_format=progress.STEPS_FORMAT,
    ) as shown:
        results = [
            measure(name, args.ops, args.seed, args.gc, ledger, lambda: shown.update(1))
            for name, ledger in runs
        ]
    print(table(results))
    print(venue_path_ratios(results))
    report = environment.describe("engine") | {
        "parameters": {"ops": args.ops, "seed": args.seed, "gc": args.gc},
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"engine-{environment.stamp(report['created_utc'])}"
    path = environment.free_base(args.out, stem).with_suffix(".json")
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return results


def measure(
    name: str,
    ops: int,
    seed: int,
    gc_mode: str = "disable",
    ledger: bool = False,
    on_step: Callable[[], object] | None = None,
) -> dict[str, Any]:
    """Generate the workload, then time it twice on fresh venues; the result as a dict.

    With `ledger`, the venue runs the full path: holds, matching and DvP settlement.
    `on_step` is called as each of the `MEASURE_STEPS` ends (a progress bar's).
    """
    step = on_step or (lambda: None)
    workload = workloads.build(name, ops, seed)
    commands = workload.commands
    step()

    venue = workload.fresh_venue(ledger)
    execute = venue.execute
    with _collector(gc_mode):
        cpu_started = time.process_time_ns()
        started = time.perf_counter_ns()
        for command in commands:
            execute(command)
        seconds = (time.perf_counter_ns() - started) / 1e9
        cpu_ns = time.process_time_ns() - cpu_started
    throughput_end = _fingerprint(venue)
    del venue, execute  # free the first book before the second pass builds its own
    step()

    venue = workload.fresh_venue(ledger)
    execute = venue.execute
    clock = time.perf_counter_ns
    latencies = [0] * ops
    rejected = 0
    with _collector(gc_mode):
        for i, command in enumerate(commands):
            started = clock()
            events = execute(command)
            latencies[i] = clock() - started
            if events and type(events[-1]) is CommandRejected:  # a rejection is the last event
                rejected += 1
    if _fingerprint(venue) != throughput_end:
        raise RuntimeError("the two passes ended in different states: not deterministic")
    step()

    latencies.sort()
    market = venue.markets[workloads.SYMBOL]
    return {
        "workload": name,
        "ledger": ledger,
        "ops": ops,
        "seconds": round(seconds, 6),
        "ops_per_sec": round(ops / seconds),
        "cpu_ns_per_op": round(cpu_ns / ops),
        "latency_us": {
            **{key: stats.rank(latencies, *q) / 1000 for key, q in PERCENTILES.items()},
            "max": latencies[-1] / 1000,
            "mean": round(sum(latencies) / ops / 1000, 3),
        },
        "seed": seed,
        "rejected": rejected,
        "trades": market.last_trade_id,
        "resting_orders_end": len(venue.orders),
        "price_levels_end": len(market.book.bids) + len(market.book.asks),
        "setup_commands": len(workload.setup),
        "gc": f"{gc_mode}: {GC_MODES[gc_mode]}",
        "timer_overhead_ns": _timer_overhead_ns(),
        "python": platform.python_version(),
    }


def summary(result: dict[str, Any]) -> str:
    latency = result["latency_us"]
    return "\n".join(
        [
            f"{label(result)}: {result['ops']:,} ops in {result['seconds']:.3f} s = "
            f"{result['ops_per_sec']:,} ops/s (seed {result['seed']}); "
            f"process CPU {result['cpu_ns_per_op']:,} ns per op",
            f"latency per execute, µs: p50 {latency['p50']}  p99 {latency['p99']}  "
            f"p99.9 {latency['p999']}  max {latency['max']}  "
            f"(includes a clock read of ~{result['timer_overhead_ns']} ns)",
            f"end: {result['resting_orders_end']:,} resting orders on "
            f"{result['price_levels_end']:,} levels; {result['trades']:,} trades, "
            f"{result['rejected']:,} rejected",
            f"gc: {result['gc']}; Python {result['python']}",
        ]
    )


def table(results: list[dict[str, Any]]) -> str:
    header = (
        f"{'workload':<18} {'ops':>9} {'ops/s':>11} {'p50 µs':>8} {'p99 µs':>8} "
        f"{'p99.9 µs':>9} {'max µs':>9} {'rejected':>8}"
    )
    lines = [header, "-" * len(header)]
    for result in results:
        latency = result["latency_us"]
        lines.append(
            f"{label(result):<18} {result['ops']:>9,} {result['ops_per_sec']:>11,} "
            f"{latency['p50']:>8.3f} {latency['p99']:>8.3f} {latency['p999']:>9.3f} "
            f"{latency['max']:>9.1f} {result['rejected']:>8,}"
        )
    return "\n".join(lines)


def venue_path_ratios(results: list[dict[str, Any]]) -> str:
    """One line per workload run both ways: the venue path's throughput over plain matching,
    and the same ratio in process CPU time where the results have it. The goal is judged on
    the CPU ratio when there is one: the wall clock of a pass takes in whatever else a shared
    machine ran meanwhile (one preempted plain pass read a venue path 4x faster than the
    book alone, "meets the goal"), its process CPU time far less."""
    plain = {r["workload"]: r for r in results if not r["ledger"]}
    lines = []
    for result in results:
        name = result["workload"]
        if result["ledger"] and name in plain:
            lines.append(_venue_path_ratio(name, plain[name], result))
    return "\n".join(lines)


def _venue_path_ratio(name: str, plain: dict[str, Any], ledger: dict[str, Any]) -> str:
    """The ratio line of one workload (see venue_path_ratios)."""
    ratio = ledger["ops_per_sec"] / plain["ops_per_sec"]
    line = f"{name}: venue path (holds + DvP) / plain = {ratio:.3f}"
    judged, by = ratio, ""
    if ledger.get("cpu_ns_per_op") and plain.get("cpu_ns_per_op"):
        judged = plain["cpu_ns_per_op"] / ledger["cpu_ns_per_op"]
        line += f" by the wall clock, {judged:.3f} in process CPU time"
        by = ", judged by CPU time"
    verdict = "meets" if judged >= VENUE_PATH_RATIO_GOAL else "below"
    return f"{line} ({verdict} the goal of {VENUE_PATH_RATIO_GOAL}{by})"


def label(result: dict[str, Any]) -> str:
    """The workload's name, marked when it ran the full venue path."""
    return label_of(result["workload"], result["ledger"])


def label_of(workload: str, ledger: bool) -> str:
    return f"{workload}+ledger" if ledger else workload


@contextmanager
def _collector(mode: str) -> Iterator[None]:
    """Run the body under the chosen GC policy and restore the interpreter's afterwards."""
    if mode == "default":
        yield
        return
    threshold = gc.get_threshold()
    gc.collect()
    gc.freeze()  # the setup's objects move out of every generation: no collection scans them
    if mode == "disable":
        gc.disable()
    else:
        gc.set_threshold(GC_THRESHOLD_FROZEN, *threshold[1:])
    try:
        yield
    finally:
        gc.enable()
        gc.set_threshold(*threshold)
        gc.unfreeze()


def _fingerprint(venue: Venue) -> tuple[int, int, int]:
    """Cheap evidence that two runs ended alike: order and trade counters, resting orders."""
    trades = sum(market.last_trade_id for market in venue.markets.values())
    return venue.last_order_id, trades, len(venue.orders)


def _timer_overhead_ns() -> int:
    """The median cost of one `perf_counter_ns` read, measured back to back."""
    clock = time.perf_counter_ns
    samples = []
    for _ in range(TIMER_SAMPLES):
        started = clock()
        samples.append(clock() - started)
    samples.sort()
    return samples[len(samples) // 2]


def _positive(text: str) -> int:
    """An argparse type: a whole number above zero, at most `OPS_MAX` (argparse's own error
    for a word named this function: "invalid _positive value")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    if value > OPS_MAX:
        raise argparse.ArgumentTypeError(
            f"at most {OPS_MAX:,} (the commands are built in memory first: ~1 GiB a million"
            f" with cross --ledger), not {value:,}"
        )
    return value
