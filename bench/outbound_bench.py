"""The outbound benchmark: `python -m bench.outbound_bench` — private pushes and market data
built in-process from a replay of engine events, without sockets.

Owns a replay of one workload (`--workload`) on a venue with a ledger, timed in two parts:
the private stream (`ExecReporter.reports`, order history, each push sequenced, encoded and
framed as the server does) and the public one (`MarketData.on_events` and a flush per
command, depth-10 book, trades, bbo and ticker followed). Workloads: `cross` (every other
command trades: exec reports for both sides, balances, settlements), `mixed` (82% price
amends of random resting orders over 1,000 accounts) and `requote` (the e2e makers' moves:
two accounts moving a 5-level ladder of `quote.mass` quotes one tick out and back, each amend
an `OrderAmended` and its hold's `BalanceChanged`; one command in ten a taker's ioc; each
side an `AmendOrder` of its own, as before session 31, where the e2e makers' requotes are one
`AmendPair` each, pushed through `PrivateStreams.assign_pair`). Reports
process CPU µs per command, the figure that the noisy shared machine disturbs least;
`--profile` prints cProfile's top entries instead.

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
from engine.commands import AmendOrder, Command, ListInstrument, PlaceOrder
from engine.enums import CancelReason, OrderType, SelfTradePrevention, Side, TimeInForce
from engine.events import CommandRejected, Event, OrderAccepted, OrderCanceled
from engine.venue import Venue
from gateway import frames, public_streams
from gateway.market_data import Channel, MarketData, Stream
from gateway.order_history import OrderHistory
from gateway.private_streams import PrivateStream, sequence
from gateway.reports import ExecReporter
from settlement.ledger import Ledger

EPOCH = 1
PROFILE_ENTRIES = 25  # enough to see where the time goes, short enough to read
FAN_OUT_SYMBOL = e2e_clients.SYMBOL  # the one the e2e subscribers follow
FAN_OUT_READ_TIMEOUT_S = 30.0  # every subscriber reads a publication well within this
FAN_OUT_ORDER_BASE = 1 << 40  # the fed orders' ids, clear of the venue's own
FAN_OUT_LEVELS = 5  # the fed orders cycle over these bid levels: every one a top change
WORKLOADS = ("cross", "mixed", "requote")

# `requote`: the shape of `venue bench e2e`'s makers and takers (bench.e2e_clients)
REQUOTE_MAKERS = (1, 2)
REQUOTE_TAKERS = (3, 4)
REQUOTE_LEVELS = 5  # quote sets per maker, one ladder level each
REQUOTE_QTY = 500_000  # 0.5 share at qty_decimals 6, each side of each level
REQUOTE_TAKER_EVERY = 10  # one command in ten is a taker's ioc
REQUOTE_TAKER_QTY = REQUOTE_QTY // 2  # a taker takes half of the best quote

Batch = tuple[Command, list[Event], str | None]  # a command, its events, its quote set


class Replay:
    """One workload's commands executed once; their events replayed through the outbound path."""

    def __init__(self, ops: int, seed: int, workload: str = "cross") -> None:
        spec = workloads.SPEC
        scales = {spec.quote: spec.quote_decimals, spec.base: spec.qty_decimals}
        self.reporter = ExecReporter(specs={spec.symbol: spec}, asset_scales=scales)
        self.history = OrderHistory()
        self.streams: dict[int, PrivateStream] = {}
        # the last replay's pushes (account, seq, bytes), kept only if asked (the tests): the
        # server keeps a bounded history, not every push
        self.keep_payloads = False
        self.payloads: list[tuple[int, int, bytes]] = []
        if workload == "requote":
            requoter = Requoter(seed)
            venue = requoter.venue
        else:
            built = workloads.build(workload, ops, seed)
            venue = built.fresh_venue(ledger=True)
        self.market_data = MarketData.from_venue(venue, EPOCH)
        for order in venue.book(spec.symbol).iter_orders():
            quote_set = requoter.quote_sets.get(order.order_id) if workload == "requote" else None
            self.reporter.adopt(order, quote_set)
        if workload == "requote":
            self.batches: list[Batch] = requoter.run(ops)
        else:
            self.batches = [(command, venue.execute(command), None) for command in built.commands]
        channels = (Channel.TRADES, Channel.BBO, Channel.TICKER)
        self.wanted = {Stream(Channel.BOOK, spec.symbol, 10)}
        self.wanted |= {Stream(channel, spec.symbol) for channel in channels}
        for stream in self.wanted:
            self.market_data.snapshot(stream, workloads.TS_START_US)
        self.pushes = 0

    def private(self) -> None:
        """As `PrivateStreams.assign` then `publish` (to one subscriber) do per command."""
        reporter, history, streams = self.reporter, self.history, self.streams
        text_frame = frames.text_frame
        kept = self.payloads
        for command, events, quote_set in self.batches:
            reports = reporter.reports(events, command=command, quote_set=quote_set, epoch=EPOCH)
            if reporter.order_reports:
                history.record(reporter.order_reports)
            gathered: list[tuple[PrivateStream, list[bytes]]] = []
            sequence(reports, streams, gathered)
            for _, payloads in gathered:
                for payload in payloads:
                    text_frame(payload)
            self.pushes += len(reports)
            if self.keep_payloads:  # in the order the reports came (`sequence` gathers them)
                taken = {id(stream): iter(payloads) for stream, payloads in gathered}
                kept += [
                    (account, push.seq, next(taken[id(streams[account])]))
                    for account, push in reports
                ]

    def public(self) -> None:
        for command, events, _ in self.batches:
            self.market_data.on_events(events)
            for message in self.market_data.flush(command.ts_us, self.wanted):
                frames.text_frame(message.payload)


class Requoter:
    """Writes the `requote` workload while executing it on a venue with a ledger."""

    def __init__(self, seed: int) -> None:
        del seed  # the ladder is deterministic; the seed is taken for the common interface
        self.venue = Venue(ledger=Ledger())
        self.ts_us = workloads.TS_START_US
        for command in [*workloads.ledger_setup(), ListInstrument(ts_us=self.ts_us, spec=SPEC)]:
            self._execute(command)
        # (maker, level, side) -> the live quote's order id; order id -> its quote set
        self.quotes: dict[tuple[int, int, Side], int] = {}
        self.quote_sets: dict[int, str] = {}
        for maker in REQUOTE_MAKERS:
            for level in range(REQUOTE_LEVELS):
                for side in (Side.BUY, Side.SELL):
                    self._execute(self._requote(maker, level, side, 0), (maker, level, side))

    def run(self, ops: int) -> list[Batch]:
        """`ops` timed commands and their events: makers' requotes, every tenth a taker's."""
        batches: list[Batch] = []
        for index in range(ops):
            if index % REQUOTE_TAKER_EVERY == REQUOTE_TAKER_EVERY - 1:
                command, quote_set, slot = self._take(index), None, None
            else:
                # quote.mass k: the bid, then the ask of maker k % 2's level k // 2 % 5
                requote = index - index // REQUOTE_TAKER_EVERY
                maker = REQUOTE_MAKERS[requote // 2 % len(REQUOTE_MAKERS)]
                level = requote // (2 * len(REQUOTE_MAKERS)) % REQUOTE_LEVELS
                turn = 1 + requote // (2 * len(REQUOTE_MAKERS) * REQUOTE_LEVELS)  # 0: the setup
                side = Side.BUY if requote % 2 == 0 else Side.SELL
                slot = (maker, level, side)
                command, quote_set = self._requote(*slot, turn), _quote_set(maker, level)
            batches.append((command, self._execute(command, slot), quote_set))
        return batches

    def _requote(self, maker: int, level: int, side: Side, turn: int) -> Command:
        """As `gateway.placed_orders` makes it: amend the live quote, or place a new one."""
        offset = 1 + level + turn % 2  # one tick out and back on alternate turns
        price = CENTER - offset if side is Side.BUY else CENTER + offset
        order = self.venue.orders.get(self.quotes.get((maker, level, side), 0))
        if order is None:
            return PlaceOrder(
                ts_us=self._next_ts(),
                account=maker,
                symbol=SPEC.symbol,
                side=side,
                price=price,
                qty=REQUOTE_QTY,
                post_only=True,
                stp=SelfTradePrevention.EXPIRE_MAKER,
            )
        qty = order.cum_qty + REQUOTE_QTY  # quotes are sizes on display
        return AmendOrder(
            ts_us=self._next_ts(), account=maker, order_id=order.order_id, price=price, qty=qty
        )

    def _take(self, index: int) -> Command:
        side = Side.BUY if index // REQUOTE_TAKER_EVERY % 2 else Side.SELL
        through = REQUOTE_LEVELS + 2  # a limit past every level: the best quote fills it
        return PlaceOrder(
            ts_us=self._next_ts(),
            account=REQUOTE_TAKERS[index // REQUOTE_TAKER_EVERY % len(REQUOTE_TAKERS)],
            symbol=SPEC.symbol,
            side=side,
            tif=TimeInForce.IOC,
            price=CENTER + through if side is Side.BUY else CENTER - through,
            qty=REQUOTE_TAKER_QTY,
        )

    def _execute(self, command: Command, slot: tuple[int, int, Side] | None = None) -> list[Event]:
        """Execute `command`; a quote it places becomes the live one of `slot`."""
        events = self.venue.execute(command)
        assert not any(type(event) is CommandRejected for event in events), events
        if slot is not None and isinstance(command, PlaceOrder):
            order_id = next(event.order_id for event in events if type(event) is OrderAccepted)
            self.quotes[slot] = order_id
            self.quote_sets[order_id] = _quote_set(*slot[:2])
        return events

    def _next_ts(self) -> int:
        self.ts_us += 1
        return self.ts_us


SPEC = workloads.SPEC
CENTER = workloads.CENTER_PRICE


def _quote_set(maker: int, level: int) -> str:
    return f"bench-{maker}-{level}"


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
        public.publish_waiting()  # every subscriber written now, not a slice a turn
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
    parser.add_argument("--workload", choices=WORKLOADS, default="cross")
    parser.add_argument("--profile", action="store_true", help="cProfile instead of timing")
    parser.add_argument("--fan-out", type=int, default=0, metavar="N", help="subscribers")
    parser.add_argument("--publications", type=int, default=200, help="with --fan-out")
    args = parser.parse_args()
    if args.fan_out:
        print(fan_out(args.fan_out, args.publications))
        return
    replay = Replay(args.ops, args.seed, args.workload)
    result: dict[str, Any] = {"workload": args.workload, "commands": len(replay.batches)}
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
