"""The outbound benchmark: `python -m bench.outbound_bench` — private pushes and market data
built in-process from a replay of engine events, without sockets.

Owns a replay of the `cross` workload on a venue with a ledger (every other command trades:
exec reports for both sides, balances, settlements), timed in two parts: the private stream
(`ExecReporter.reports`, order history, the sequenced envelope encoded and framed as the
server does) and the public one (`MarketData.on_events` and a flush per command, depth-10
book, trades, bbo and ticker followed). Reports process CPU µs per command, the figure that
the noisy shared machine disturbs least; `--profile` prints cProfile's top entries instead.
"""

import argparse
import cProfile
import pstats
import time
from collections.abc import Callable
from typing import Any

from bench import workloads
from engine.commands import Command
from engine.events import Event
from gateway import frames, wire
from gateway.market_data import Channel, MarketData, Stream
from gateway.order_history import OrderHistory
from gateway.reports import ExecReporter, Sequenced

EPOCH = 1
PROFILE_ENTRIES = 25  # enough to see where the time goes, short enough to read


class Replay:
    """One workload's commands executed once; their events replayed through the outbound path."""

    def __init__(self, ops: int, seed: int) -> None:
        workload = workloads.build("cross", ops, seed)
        venue = workload.fresh_venue(ledger=True)
        spec = workloads.SPEC
        self.market_data = MarketData.from_venue(venue, EPOCH)
        scales = {spec.quote: spec.quote_decimals, spec.base: spec.qty_decimals}
        self.reporter = ExecReporter(specs={spec.symbol: spec}, asset_scales=scales)
        for order in venue.book(spec.symbol).iter_orders():
            self.reporter.adopt(order)
        self.history = OrderHistory()
        self.batches: list[tuple[Command, list[Event]]] = [
            (command, venue.execute(command)) for command in workload.commands
        ]
        channels = (Channel.TRADES, Channel.BBO, Channel.TICKER)
        self.wanted = {Stream(Channel.BOOK, spec.symbol, 10)}
        self.wanted |= {Stream(channel, spec.symbol) for channel in channels}
        for stream in self.wanted:
            self.market_data.snapshot(stream, workloads.TS_START_US)
        self.pushes = 0

    def private(self) -> None:
        seqs: dict[int, int] = {}
        for command, events in self.batches:
            reports = self.reporter.reports(events, command=command)
            self.history.record(reports)
            for account, push in reports:
                seq = seqs[account] = seqs.get(account, 0) + 1
                message = Sequenced(push.ch, seq, EPOCH, push.type, push.ts, push.data)
                frames.text_frame(wire.encode(message))
            self.pushes += len(reports)

    def public(self) -> None:
        for command, events in self.batches:
            self.market_data.on_events(events)
            for message in self.market_data.flush(command.ts_us, self.wanted):
                frames.text_frame(message.payload)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=20_000, help="commands replayed")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="cProfile instead of timing")
    args = parser.parse_args()
    replay = Replay(args.ops, args.seed)
    result: dict[str, Any] = {"commands": len(replay.batches)}
    for name, part in (("private", replay.private), ("public", replay.public)):
        result[f"{name}_us_per_command"] = round(_cpu_us(part, args.profile) / args.ops, 2)
    result["pushes_per_command"] = round(replay.pushes / args.ops, 2)
    print(result)


def _cpu_us(part: Callable[[], None], profile: bool) -> float:
    if profile:
        profiler = cProfile.Profile()
        profiler.runcall(part)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(PROFILE_ENTRIES)
        return 0.0
    start = time.process_time()
    part()
    return (time.process_time() - start) * 1e6


if __name__ == "__main__":
    main()
