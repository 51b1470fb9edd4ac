"""The `once` memory's cost per place: `python -m bench.once_bench [--places N] [--json]`.

Owns one benchmark of `engine.once` through the venue: `--places` ioc buys with `once` and a
fresh cl_ord_id each (an empty book: each is accepted, then expires) from `--accounts`
accounts in turn, one millisecond of venue time apart, so the memory fills to `venue_max`
and then forgets its oldest at every place, as a busy venue's does. Each `Venue.execute`
is timed alone with the thread's CPU clock, the garbage collector off (its own pauses are
not the memory's), and the report gives the mean, the p99.99 and the max per place, and the
commands past a millisecond: a memory that rehashes all it holds at once shows there.
`--plain` times the same places without `once`, for what the memory adds to each.
Nothing is timed but `execute`: each command is built between two readings of the clock.
"""

import argparse
import gc
import json
import statistics
import sys
import time
from itertools import pairwise
from typing import Any

from bench.workloads import CENTER_PRICE, SPEC, SYMBOL, TS_START_US
from engine.commands import ListInstrument, PlaceOrder
from engine.enums import Side, TimeInForce
from engine.once import ONCE_PLACED_VENUE_MAX, OnceLimits
from engine.venue import Venue, VenueConfig

PLACES_DEFAULT = 1_000_000  # four times the memory's default `venue_max`
PLACES_MAX = 20_000_000  # ~10 µs each: past half an hour a run is not a benchmark
ACCOUNTS_DEFAULT = 50  # 5,000 places each when full: far from an account's own limit
STEP_US = 1_000  # a place a millisecond: the 10-minute window holds 600,000 of them
STALL_NS = 1_000_000  # a command past a millisecond is a stall worth naming
CLOCK_READS = 10_000  # back-to-back clock readings, for the cost of one


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--places", type=int, default=PLACES_DEFAULT, help=f"default {PLACES_DEFAULT:,}"
    )
    parser.add_argument(
        "--accounts", type=int, default=ACCOUNTS_DEFAULT, help=f"default {ACCOUNTS_DEFAULT}"
    )
    parser.add_argument(
        "--venue-max",
        type=int,
        default=ONCE_PLACED_VENUE_MAX,
        help=f"the memory's venue_max (default {ONCE_PLACED_VENUE_MAX:,})",
    )
    parser.add_argument("--plain", action="store_true", help="the same places without once")
    parser.add_argument("--json", action="store_true", help="one JSON line on stdout")


def problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments, in one line, or None."""
    if not 1 <= args.places <= PLACES_MAX:
        return f"--places must be 1..{PLACES_MAX:,}"
    if args.accounts < 1:
        return "--accounts must be at least 1"
    if args.venue_max < 1:
        return "--venue-max must be at least 1"
    return None


def place(number: int, accounts: int, once: bool) -> PlaceOrder:
    """The `number`th place: an ioc buy below every ask (there are none), its own cl_ord_id."""
    return PlaceOrder(
        ts_us=TS_START_US + number * STEP_US,
        account=1 + number % accounts,
        symbol=SYMBOL,
        side=Side.BUY,
        price=CENTER_PRICE,
        qty=1,
        tif=TimeInForce.IOC,
        cl_ord_id=f"bench-once-{number:012d}",  # 23 characters, as the memory's sizes assume
        once=once,
    )


def clock_ns() -> int:
    """The median cost of one reading of the thread's CPU clock."""
    clock = time.thread_time_ns
    readings = [clock() for _ in range(CLOCK_READS)]
    return int(statistics.median(b - a for a, b in pairwise(readings)))


def run(places: int, accounts: int, venue_max: int, once: bool) -> dict[str, Any]:
    """Time each place; the figures in ns, less one clock reading each."""
    venue = Venue(VenueConfig(once_limits=OnceLimits(venue_max=venue_max)))
    venue.execute(ListInstrument(ts_us=TS_START_US, spec=SPEC))
    clock, execute = time.thread_time_ns, venue.execute
    overhead = clock_ns()
    costs = [0] * places
    gc.collect()
    gc.disable()
    try:
        for number in range(places):
            command = place(number, accounts, once)
            started = clock()
            execute(command)
            costs[number] = clock() - started - overhead
    finally:
        gc.enable()
    assert venue.last_order_id == places, "every place was accepted"
    ranked = sorted(costs)
    stalls = [(number, cost) for number, cost in enumerate(costs) if cost >= STALL_NS]
    return {
        "places": places,
        "accounts": accounts,
        "venue_max": venue_max,
        "once": once,
        "remembered": venue.once_placed.count,
        "clock_ns": overhead,
        "mean_ns": round(sum(costs) / places),
        "p50_ns": ranked[places // 2],
        "p9999_ns": ranked[min(places - 1, places * 9_999 // 10_000)],
        "max_ns": ranked[-1],
        "stalls": len(stalls),
        "worst": sorted(stalls, key=lambda stall: -stall[1])[:5],  # (place number, ns)
    }


def render(result: dict[str, Any]) -> str:
    kind = "once" if result["once"] else "plain"
    worst = ", ".join(f"#{number:,}: {cost / 1e6:.1f} ms" for number, cost in result["worst"])
    return "\n".join(
        [
            f"{result['places']:,} {kind} places, {result['accounts']} accounts, venue_max "
            f"{result['venue_max']:,} ({result['remembered']:,} remembered at the end)",
            f"CPU per place: mean {result['mean_ns']:,} ns, p50 {result['p50_ns']:,}, "
            f"p99.99 {result['p9999_ns']:,}, max {result['max_ns']:,} "
            f"(less {result['clock_ns']:,} ns a clock reading)",
            f"places past {STALL_NS // 1_000_000} ms: {result['stalls']}"
            + (f" (worst {worst})" if worst else ""),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.once_bench", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    if message := problem(args):
        print(f"once_bench: {message}", file=sys.stderr)
        return 2
    result = run(args.places, args.accounts, args.venue_max, once=not args.plain)
    print(json.dumps(result) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
