"""The private histories' trim: `python -m bench.histories_bench [--accounts N] [--json]`.

Owns one benchmark of `PrivateStreams.bound_histories`, the cut across accounts that runs in
one turn of the event loop at a check past `limits.PRIVATE_HISTORY_EVENTS_TOTAL_MAX`: the
histories of `--accounts` accounts are built just past that bound (not timed), then the one
call is timed, `--runs` times on fresh histories, the garbage collector off. Two shapes:
`even` (every account holds as many events, give or take one: every history is cut) and
`skewed` (1% of the accounts hold 90% of the events, as a few busy traders among many quiet
ones, in a seeded random order: few histories are cut, every one is counted). The report
gives the median and the range per shape, and the events dropped (the same whatever the
code: it is what is kept). The time is the thread's CPU time: other work on the machine
does not count, its cache misses do (the trim is mostly those: one stream after another).
"""

import argparse
import gc
import json
import random
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any

from gateway import limits
from gateway.private_streams import KeptFiles, PrivateStream, PrivateStreams
from gateway.sessions import Sessions

ACCOUNTS_DEFAULT = 10_000
ACCOUNTS_MAX = 1_000_000  # a history each: past it the build alone takes minutes
RUNS_DEFAULT = 5
RUNS_MAX = 100  # each run builds every history anew (seconds at the most accounts): ample
PAYLOAD = b'{"ch":"account","type":"exec"}'  # one object shared: the trim never reads it
SHAPES = ("even", "skewed")
BUSY_SHARE = 0.9  # the skewed shape: the busy accounts' share of the events
BUSY_EVERY = 100  # the skewed shape: one account in this many is busy


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--accounts", type=int, default=ACCOUNTS_DEFAULT, help=f"default {ACCOUNTS_DEFAULT:,}"
    )
    parser.add_argument(
        "--runs", type=int, default=RUNS_DEFAULT, help=f"default {RUNS_DEFAULT}, at most {RUNS_MAX}"
    )
    parser.add_argument("--json", action="store_true", help="one JSON line on stdout")


def problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments, in one line, or None."""
    if not 1 <= args.accounts <= ACCOUNTS_MAX:
        return f"--accounts must be 1..{ACCOUNTS_MAX:,}"
    if not 1 <= args.runs <= RUNS_MAX:
        return f"--runs must be 1..{RUNS_MAX}"
    return None


def lengths_of(shape: str, accounts: int, total: int) -> list[int]:
    """Each account's history length: `total` events in all, each within the per-account
    bound (fewer in all when the accounts cannot hold `total`)."""
    most = limits.PRIVATE_HISTORY_EVENTS_MAX
    if shape == "even":
        return [min(most, total // accounts + (i < total % accounts)) for i in range(accounts)]
    busy = max(1, accounts // BUSY_EVERY)
    busy_total = int(total * BUSY_SHARE)
    quiet = accounts - busy
    lengths = [min(most, busy_total // busy + (i < busy_total % busy)) for i in range(busy)]
    quiet_total = total - sum(lengths)
    if quiet:
        spread = [quiet_total // quiet + (i < quiet_total % quiet) for i in range(quiet)]
        rng = random.Random(0)  # the same run to run: pairs trade events, then shuffled
        for i in range(0, quiet - 1, 2):
            moved = rng.randint(0, spread[i])
            spread[i], spread[i + 1] = spread[i] - moved, spread[i + 1] + moved
        rng.shuffle(spread)  # (no runs for the sort to find)
        lengths += spread
    return lengths


def build(lengths: list[int]) -> PrivateStreams:
    """Private streams whose histories have `lengths`, their running count exact."""
    bus = types.SimpleNamespace(reads=types.SimpleNamespace(orders={}, markets={}))
    private = PrivateStreams(bus, Sessions(), Path("."), KeptFiles({}, []))  # reads no file
    for account, length in enumerate(lengths, 1):
        stream = private.streams[account] = PrivateStream()
        stream.history.extend([PAYLOAD] * length)
        stream.seq = stream.assigned = length
    private.events_kept_most = sum(lengths)
    return private


def measure(shape: str, accounts: int, runs: int) -> dict[str, Any]:
    """The trim's time (ms of the thread's CPU time) per run on fresh histories, and the
    events it dropped."""
    lengths = lengths_of(shape, accounts, limits.PRIVATE_HISTORY_EVENTS_TOTAL_MAX + 1)
    times_ms = []
    dropped = 0
    for _ in range(runs):
        private = build(lengths)
        gc.collect()
        gc.disable()
        try:
            start = time.thread_time()
            dropped = private.bound_histories()
            times_ms.append((time.thread_time() - start) * 1_000)
        finally:
            gc.enable()
    return {
        "shape": shape,
        "accounts": accounts,
        "events": sum(lengths),
        "dropped": dropped,
        "ms_median": round(statistics.median(times_ms), 2),
        "ms_min": round(min(times_ms), 2),
        "ms_max": round(max(times_ms), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.histories_bench", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    message = problem(args)
    if message is not None:
        print(f"histories_bench: {message}", file=sys.stderr)
        return 2
    results = [measure(shape, args.accounts, args.runs) for shape in SHAPES]
    if args.json:
        print(json.dumps(results))
        return 0
    for r in results:
        print(
            f"{r['shape']:>6}: {r['accounts']:,} accounts, {r['events']:,} events, "
            f"{r['dropped']:,} dropped: {r['ms_median']} ms median "
            f"({r['ms_min']}-{r['ms_max']}, {args.runs} runs)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
