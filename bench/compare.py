"""`venue bench engine --compare`: one seeded workload through every engine adapter.

Builds the workload once (`bench.workloads.build`); each available adapter in
`bench.adapters` then prepares it untimed and runs it with a clock read around every
command, under the `--gc` policy of `bench.engine_bench`, `--rounds` times, the adapters
taking turns within each round. Prints one table (ops/s, p50/p99/max latency, traded
quantity, whether it equals ours, throughput relative to ours with the book only, then
process CPU ns per command and ours ÷ its, the figures a shared machine swings far less than
the wall clock) and whether every adapter traded the same total quantity: they must, since
they run the same commands, so a difference is a bug in one of them and the command exits 1.
An adapter that cannot run a workload faithfully is listed as skipped, with why. Ours runs
both with and without the ledger (`ours+ledger`, `ours`), so `--ledger` is refused here.

Rounds: a single run of each engine, one after the other, leaves their ratio to whatever the
shared machine did in between (ours alone swung 1,835-2,666 ns per `addcancel` command in
one sitting while the peer held 1,890-2,205). With rounds, each engine's row is its median
round (by CPU per command), each ratio the median of the rounds' own ratios (two engines of
one round ran seconds apart), and the table gives every round's figure and the ratios' range.
"""

import argparse
import json
import statistics
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
    OPS_HELP,
    _collector,
    _positive,
)
from cli import progress
from cli.failures import CommandFailed

BASELINE = "ours"  # the adapter every ratio is relative to
DEFAULT_GC = "disable"
PERCENTILES = {"p50": (50, 100), "p99": (99, 100)}  # nearest-rank fractions
ENGINE_COLUMN_MIN = 14  # the engine names' column: wider for a longer name (matching-engine)
DEFAULT_ROUNDS = 3  # the "medians of at least three runs", within one run
# Each round runs every engine over the whole workload again: past a dozen or so the median
# hardly moves while the run keeps growing; twenty leaves room and stops a zero too many.
ROUNDS_MAX = 20
# Said under the table: "ours ÷ X" reads either way (a speed or a cost), and the README's
# tables give ours' speed ÷ the peer's, the inverse of this column for a peer's row.
RATIOS_LEGEND = (
    "vs ours: its ops/s ÷ ours; cpu vs ours: ours' CPU ns/op ÷ its (above 1x: faster than ours)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--compare`, and the workload options unless `engine_bench` added them already."""
    parser.add_argument(
        "--compare", action="store_true", help="run the workload through every engine adapter"
    )
    shared: list[tuple[str, dict[str, Any]]] = [
        ("--workload", {"choices": sorted(workloads.WORKLOADS), "default": "mixed"}),
        (
            "--ops",
            {"type": _positive, "default": DEFAULT_OPS, "help": f"timed commands; {OPS_HELP}"},
        ),
        ("--seed", {"type": int, "default": DEFAULT_SEED}),
        ("--gc", {"choices": list(GC_MODES), "default": DEFAULT_GC, "help": "GC policy"}),
        ("--json", {"action": "store_true", "help": "print one JSON object"}),
    ]
    parser.add_argument(
        "--rounds",
        type=_rounds,
        help=f"--compare: run every engine this often, taking turns; medians reported"
        f" (default {DEFAULT_ROUNDS}, at most {ROUNDS_MAX})",
    )
    for flag, options in shared:
        with suppress(argparse.ArgumentError):  # there already: `engine_bench` added it
            parser.add_argument(flag, **options)


def run(args: argparse.Namespace) -> int:
    """With `--compare`, the comparison; without it, the plain engine benchmark."""
    rounds = getattr(args, "rounds", None)
    if not args.compare:
        if rounds is not None:  # not silently ignored: one run, not the medians asked for
            raise CommandFailed("--rounds: only with --compare (the turns the engines take)")
        from bench import engine_bench

        return engine_bench.run(args)
    if getattr(args, "ledger", False):  # not silently ignored: every engine runs as before
        raise CommandFailed(
            "--ledger: not with --compare (it runs ours both ways: the rows ours, the book only,"
            " and ours+ledger, the full venue path)"
        )
    engines = all_adapters()
    rounds = rounds or DEFAULT_ROUNDS
    with progress.bar(
        args.json,
        total=len(engines) * rounds + 1,
        desc=f"{args.workload}: workload",
        unit="engine run",
    ) as shown:

        def ran(engine: str) -> None:  # the workload built, or an engine done (or skipped)
            shown.set_description_str(f"{args.workload}: {engine} done", refresh=False)
            shown.update(1)

        gc_mode = getattr(args, "gc", DEFAULT_GC)
        report = compare(args.workload, args.ops, args.seed, gc_mode, engines, ran, rounds)
    print(json.dumps(report) if args.json else table(report))
    return 0 if report["traded_qty_equal"] else 1


def compare(
    name: str,
    ops: int,
    seed: int,
    gc_mode: str = DEFAULT_GC,
    adapters: list[EngineAdapter] | None = None,
    ran: Callable[[str], None] | None = None,
    rounds: int = 1,
) -> dict[str, Any]:
    """Run workload `name` through every available adapter, `rounds` times (the adapters
    taking turns in each round); the report as a dict. `ran` is told as the workload is built
    and as each engine's run is done or skipped (progress)."""
    told = ran or (lambda engine: None)
    workload = workloads.build(name, ops, seed)
    told("the workload")
    engines = all_adapters() if adapters is None else adapters
    runs: dict[str, list[dict[str, Any]]] = {}  # each engine's rows, one a round
    skipped: list[dict[str, str]] = []
    for _ in range(rounds):
        for adapter in engines:
            if any(s["engine"] == adapter.name for s in skipped):
                told(adapter.name)  # unavailable or unsupported: once is enough to know
                continue
            result = _run_adapter(adapter, workload, name, gc_mode, skipped)
            if result is not None:
                runs.setdefault(adapter.name, []).append(_row(adapter.name, result))
            told(adapter.name)
    results = [_median_row(rows) for rows in runs.values()]
    base = runs.get(BASELINE)
    for row, rows in zip(results, runs.values(), strict=True):
        _add_ratios(row, rows, base)
    totals = {row["traded_qty"] for rows in runs.values() for row in rows}
    return {
        "workload": name,
        "ops": ops,
        "seed": seed,
        "gc": f"{gc_mode}: {GC_MODES[gc_mode]}",
        "rounds": rounds,
        "results": results,
        "skipped": skipped,
        "traded_qty_equal": len(totals) == 1,
    }


def _median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """An engine's median round by CPU per command (the lower middle of an even count),
    with every round's CPU per command beside it."""
    ordered = sorted(rows, key=lambda row: row["cpu_ns_per_op"])
    median = dict(ordered[(len(ordered) - 1) // 2])
    median["rounds_cpu_ns_per_op"] = [row["cpu_ns_per_op"] for row in rows]
    return median


def _add_ratios(
    row: dict[str, Any], rows: list[dict[str, Any]], base: list[dict[str, Any]] | None
) -> None:
    """Ours ÷ this engine's, by throughput and by CPU per command: the median of the rounds'
    ratios, each of one round's two runs; the CPU ratios' range too. Whether every round
    traded what ours did."""
    if base is None:
        row["ratio_to_ours"] = row["cpu_ratio_to_ours"] = None
        row["cpu_ratio_range"] = None
        row["traded_qty_equal"] = False
        return
    pairs = list(zip(rows, base, strict=True))
    throughput = [mine["ops_per_sec"] / ours["ops_per_sec"] for mine, ours in pairs]
    row["ratio_to_ours"] = round(statistics.median(throughput), 3)
    cpu = [
        ours["cpu_ns_per_op"] / mine["cpu_ns_per_op"]
        for mine, ours in pairs
        if ours["cpu_ns_per_op"] and mine["cpu_ns_per_op"]
    ]
    row["cpu_ratio_to_ours"] = round(statistics.median(cpu), 3) if cpu else None
    row["cpu_ratio_range"] = [round(min(cpu), 3), round(max(cpu), 3)] if cpu else None
    row["traded_qty_equal"] = all(mine["traded_qty"] == ours["traded_qty"] for mine, ours in pairs)


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
    width = max(ENGINE_COLUMN_MIN, *(len(row["engine"]) for row in report["results"]))
    header = (
        f"{'engine':<{width}} {'ops/s':>11} {'p50 µs':>8} {'p99 µs':>8} {'max µs':>9} "
        f"{'traded qty':>16} {'qty equal':>9} {'vs ours':>8} {'cpu ns/op':>10} "
        f"{'cpu vs ours':>11}"
    )
    rounds = report.get("rounds", 1)
    title = f"{report['workload']}: {report['ops']:,} ops, seed {report['seed']}, gc {report['gc']}"
    if rounds > 1:
        title += f"; {rounds} rounds, each engine's median round (cpu vs ours: the rounds' median)"
    lines = [
        title,
        header,
        "-" * len(header),
    ]
    for row in report["results"]:
        latency = row["latency_us"]
        ratio = "-" if row["ratio_to_ours"] is None else f"{row['ratio_to_ours']:.3f}x"
        cpu = row["cpu_ratio_to_ours"]
        cpu_ratio = "-" if cpu is None else f"{cpu:.3f}x"
        lines.append(
            f"{row['engine']:<{width}} {row['ops_per_sec']:>11,} {latency['p50']:>8.3f} "
            f"{latency['p99']:>8.3f} {latency['max']:>9.1f} {row['traded_qty']:>16,} "
            f"{'yes' if row['traded_qty_equal'] else 'no':>9} {ratio:>8} "
            f"{row['cpu_ns_per_op']:>10,} {cpu_ratio:>11}"
        )
    lines.append(RATIOS_LEGEND)
    if rounds > 1:
        lines += [_rounds_line(row) for row in report["results"]]
    lines += [f"skipped {s['engine']}: {s['reason']}" for s in report["skipped"]]
    if report["traded_qty_equal"]:
        lines.append("traded quantity: the same in every engine")
    else:
        totals = ", ".join(f"{r['engine']} {r['traded_qty']:,}" for r in report["results"])
        lines.append(f"traded quantity DIFFERS between engines: {totals}")
    return "\n".join(lines)


def _rounds_line(row: dict[str, Any]) -> str:
    """One engine's CPU ns per command in every round, and its CPU ratios' range."""
    each = " / ".join(f"{ns:,}" for ns in row["rounds_cpu_ns_per_op"])
    line = f"rounds of {row['engine']}: cpu ns/op {each}"
    if row["cpu_ratio_range"] is not None and row["engine"] != BASELINE:
        low, high = row["cpu_ratio_range"]
        line += f"; cpu vs ours {low:.3f}x-{high:.3f}x"
    return line


def _rounds(text: str) -> int:
    """An argparse type: a whole number of rounds, 1 to `ROUNDS_MAX` (the ops' type said
    "at most 20,000,000 (the commands are built in memory first)" of rounds)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= ROUNDS_MAX:
        raise argparse.ArgumentTypeError(
            f"1 to {ROUNDS_MAX} (each round runs every engine again), not {value:,}"
        )
    return value
