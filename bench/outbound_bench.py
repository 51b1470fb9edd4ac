"""The outbound benchmark: `python -m bench.outbound_bench` — private pushes and market data
built in-process from a replay of engine events, without sockets.

Owns a replay of the `cross` workload on a venue with a ledger (every other command trades:
exec reports for both sides, balances, settlements), timed in two parts: the private stream
(`ExecReporter.reports`, order history, the sequenced envelope encoded and framed as the
server does) and the public one (`MarketData.on_events` and a flush per command, depth-10
book, trades, bbo and ticker followed). Reports process CPU µs per command, the figure that
the noisy shared machine disturbs least; `--profile` prints cProfile's top entries instead.

`--fan-out N` measures the other half of the public side instead: a real server on
127.0.0.1 with N `/ws/public` subscribers (the e2e benchmark's, reading in this process),
and `--publications` publications of one book update each, fed straight to its market data.
It reports the event loop's CPU time (user and system, `getrusage` of the thread) spent
inside `PublicStreams.flush` per subscriber, and the book messages a second that cost
allows when publishing may take `PUBLISH_SHARE_MAX` of the loop, to set against the issue's
500,000; every subscriber must receive every update, without a gap.
"""

import argparse
import asyncio
import cProfile
import pstats
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import e2e_clients, workloads
from core import config as venue_config
from engine.commands import Command
from engine.enums import CancelReason, OrderType, SelfTradePrevention, Side, TimeInForce
from engine.events import Event, OrderAccepted, OrderCanceled
from gateway import frames, public_streams, wire
from gateway.market_data import Channel, MarketData, Stream
from gateway.order_history import OrderHistory
from gateway.reports import ExecReporter, Sequenced

EPOCH = 1
PROFILE_ENTRIES = 25  # enough to see where the time goes, short enough to read
FAN_OUT_SYMBOL = e2e_clients.SYMBOL  # the one the e2e subscribers follow
FAN_OUT_READ_TIMEOUT_S = 30.0  # every subscriber reads a publication well within this
FAN_OUT_ORDER_BASE = 1 << 40  # the fed orders' ids, clear of the venue's own
FAN_OUT_LEVELS = 5  # the fed orders cycle over these bid levels: every one a top change


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


def fan_out(subscribers: int, publications: int) -> dict[str, Any]:
    """`--fan-out`: the loop's CPU per subscriber of a publication, real sockets."""
    try:
        import uvloop
    except ImportError:  # not built for every platform: plain asyncio then
        return asyncio.run(_fan_out(subscribers, publications))
    return uvloop.run(_fan_out(subscribers, publications))


async def _fan_out(subscribers: int, publications: int) -> dict[str, Any]:
    from gateway.server import VenueServer  # the server only for this part

    with tempfile.TemporaryDirectory() as data_dir:
        config = venue_config.load(Path(__file__).resolve().parents[1] / "venue.toml")
        server = VenueServer(config, Path(data_dir))
        port = await server.start("127.0.0.1", 0)
        try:
            return await _publish_to(
                server, f"ws://127.0.0.1:{port}/ws/public", subscribers, publications
            )
        finally:
            await server.stop()


async def _publish_to(server: Any, url: str, subscribers: int, publications: int) -> dict[str, Any]:
    tally = e2e_clients.Tally()
    followers = [e2e_clients.Subscriber(url, tally, sampled=False) for _ in range(subscribers)]
    await asyncio.gather(*(follower.open() for follower in followers))
    await asyncio.gather(*(follower.snapshot.wait() for follower in followers))
    for follower in followers:
        follower.counting = True
    public = server.public
    spec = server.reads.venue.markets[FAN_OUT_SYMBOL].spec
    user_s = system_s = 0.0
    for index in range(publications):
        public.market_data.on_events(_book_change(spec, index))
        before = resource.getrusage(resource.RUSAGE_THREAD)
        public.flush()
        after = resource.getrusage(resource.RUSAGE_THREAD)
        user_s += after.ru_utime - before.ru_utime
        system_s += after.ru_stime - before.ru_stime
        async with asyncio.timeout(FAN_OUT_READ_TIMEOUT_S):
            while tally.book_messages < (index + 1) * subscribers:
                await asyncio.sleep(0)
    for follower in followers:
        if follower.connection is not None:
            follower.connection.abort()
    per_publication_s = (user_s + system_s) / publications
    share = public_streams.PUBLISH_SHARE_MAX
    return {
        "subscribers": subscribers,
        "publications": publications,
        "book_messages": tally.book_messages,
        "book_gaps": tally.book_gaps,
        "errors": dict(tally.errors),
        "loop_cpu_ms_per_publication": round(per_publication_s * 1e3, 3),
        "user_us_per_subscriber": round(user_s / publications / subscribers * 1e6, 2),
        "system_us_per_subscriber": round(system_s / publications / subscribers * 1e6, 2),
        "book_messages_per_sec_max": round(share * subscribers / per_publication_s),
    }


def _book_change(spec: Any, index: int) -> list[Event]:
    """One bid joins a level near the touch and the one fed before it leaves: each
    publication carries one book update (two level changes) to every subscriber."""
    price = spec.reference_price - spec.price_tick * (1 + index % FAN_OUT_LEVELS)
    order_id = FAN_OUT_ORDER_BASE + index
    accepted = OrderAccepted(
        0,
        order_id,
        0,
        spec.symbol,
        Side.BUY,
        OrderType.LIMIT,
        TimeInForce.GTC,
        price,
        spec.min_qty * (1 + index % 3),
        0,
        False,
        SelfTradePrevention.EXPIRE_TAKER,
        None,
        None,
        0,
    )
    if not index:
        return [accepted]
    canceled = OrderCanceled(0, order_id - 1, 0, spec.symbol, CancelReason.USER, 0, 0)
    return [accepted, canceled]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=20_000, help="commands replayed")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="cProfile instead of timing")
    parser.add_argument("--fan-out", type=int, default=0, metavar="N", help="subscribers")
    parser.add_argument("--publications", type=int, default=200, help="with --fan-out")
    args = parser.parse_args()
    if args.fan_out:
        print(fan_out(args.fan_out, args.publications))
        return
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
