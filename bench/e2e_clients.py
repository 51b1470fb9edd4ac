"""The client processes of `venue bench e2e`: market makers, takers and passive subscribers.

Each runs as `python -m bench.e2e_clients ROLE ...` in its own process, so the clients share
neither the server's interpreter nor each other's. With the parent it speaks JSON lines: it
prints `{"ready": true}` once connected, logged on and subscribed; reads `go T` on stdin (T:
the wall-clock time at which every client starts its timetable); prints `{"progress": n}`
every `PROGRESS_S` (order actions acknowledged, or book messages received, so far); and
ends with `{"result": {...}}`.

Open loop: makers and takers send on a fixed timetable, request k at T + offset + k *
interval, whatever the answers so far. The parent staggers the clients' offsets over the
shortest interval: with one common start every client's request of a slot arrived with the
others', each waiting behind those read before it and all the clients waking at once on two
cores (at 500/s, from a client's write to the server's read p50 ~350 → ~120 µs, from its slot
to its write ~400 → ~200 µs; 2026-12-05): that was the benchmark's own latency, not the
venue's, at a rate evenly offered (`venue bench e2e --aligned` still runs it that way: it
also gives the server free group commits, so less CPU per action at low rates).

A timerfd read by the event loop wakes it at each slot (`bench.slot_clock`; asyncio's own
timers are only as fine as a millisecond), and the slots due are sent right in that wake-up;
a request's acknowledgement
latency is measured from its slot, so a stall anywhere (server, network or this process)
shows in the numbers instead of quietly delaying the sends after it. `service_us` is the
latency from the moment the request was actually written.

With `--symbols N` makers and takers spread their slots over N symbols (`bench_symbols`) and
a subscriber follows all N; book gaps are told per symbol, each book being its own stream.

Fill latency is the wall-clock time from the trade (the `ts` of the `exec` push, taken by
the server when it matched) to the push being read here; client and server share the clock.
"""

import argparse
import asyncio
import contextlib
import itertools
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from bench import wsclient
from bench.slot_clock import SlotClock
from gateway.auth import RECV_WINDOW_MS_DEFAULT, sign_logon

PROGRESS_S = 0.25  # how often a client tells the parent how far it is
BUCKET_S = 0.1  # throughput over time is counted in buckets this long
SETUP_TIMEOUT_S = 30.0  # connect, log on, subscribe: a second when all is well
CLOSE_S = 2.0
DRAIN_S = 10.0  # after the last slot: how long to wait for the last acknowledgements
SYMBOL = "AAPLx-USD"  # the first symbol; with `--symbols 1`, the default, the only one
BENCH_ASSET_FORMAT = "BENCH{:02d}x"  # the further stocks `venue bench e2e --symbols N` lists
TICK = 0.01
BEST_BID, BEST_ASK = 187.24, 187.26  # the makers' ladders start here, around 187.25
TAKER_PRICE = {"buy": "189.00", "sell": "185.50"}  # marketable through every maker level
TAKER_QTY = "0.01"  # ~1.9 USD: above min_notional, small enough to leave the makers stocked
MAKER_QTY = "5"
STATUS_MULTI = (200, 409)  # order.batch and quote.mass: one result per op inside


class ErrorBody(msgspec.Struct):
    name: str = "UNKNOWN"


class Frame(msgspec.Struct):
    """Whatever the server sends; only the fields a client here reads are decoded."""

    id: int | None = None
    status: int = 0
    result: msgspec.Raw = msgspec.Raw()  # empty when absent
    error: ErrorBody | None = None
    ch: str | None = None
    sym: str | None = None
    type: str | None = None
    ts: int = 0
    seq: int = 0
    prev_seq: int = 0
    data: msgspec.Raw = msgspec.Raw()
    t_in: int = 0  # the server's clock when it read the request, and when it answered
    t_out: int = 0


class OpResult(msgspec.Struct):
    status: int
    error: ErrorBody | None = None


class MultiResult(msgspec.Struct):
    results: list[OpResult]


class ExecData(msgspec.Struct):
    exec_type: str


class BookData(msgspec.Struct):
    bids: list[Any]
    asks: list[Any]


# The clients open packed connections (docs/protocol.md §2.2): a frame is a JSON array of
# the messages of a server loop turn, decoded in one call, not one frame and call per message
PACK_QUERY = "?pack=1"
DECODE_PACKED = msgspec.json.Decoder(list[Frame]).decode
DECODE_MULTI = msgspec.json.Decoder(MultiResult).decode
DECODE_EXEC = msgspec.json.Decoder(ExecData).decode
DECODE_BOOK = msgspec.json.Decoder(BookData).decode
ENCODE = msgspec.json.Encoder().encode


@dataclass
class Tally:
    """What one client sent and got back. `sent` counts order actions (a batch's ops)."""

    sent: int = 0
    requests: int = 0
    acked: int = 0
    rejected: int = 0
    unanswered: int = 0
    fills: int = 0
    book_messages: int = 0
    book_levels_sampled: int = 0  # level changes in the messages of the sampled connection
    book_messages_sampled: int = 0
    book_gaps: int = 0
    trade_messages: int = 0
    frames: int = 0  # frames read while counting (packed: each an array of messages) ...
    messages: int = 0  # ... and the messages in them
    errors: Counter[str] = field(default_factory=Counter)
    book_by_symbol: Counter[str] = field(default_factory=Counter)  # book messages per symbol
    ack_us: list[int] = field(default_factory=list)  # per request, from its slot
    service_us: list[int] = field(default_factory=list)  # per request, from its write
    server_us: list[int] = field(default_factory=list)  # per request, t_out - t_in
    fill_us: list[int] = field(default_factory=list)
    buckets: list[int] = field(default_factory=list)  # acked actions or book messages
    last_answer_s: float = 0.0  # from the first slot to the last answer
    cpu_s: float = 0.0  # this process's CPU time over `cpu_window_s` of its run
    cpu_window_s: float = 0.0

    def count_in_bucket(self, elapsed_s: float, amount: int) -> None:
        index = int(elapsed_s / BUCKET_S) if elapsed_s > 0 else 0
        if index >= len(self.buckets):
            self.buckets.extend([0] * (index + 1 - len(self.buckets)))
        self.buckets[index] += amount

    def progress(self) -> int:
        return self.acked + self.rejected + self.book_messages

    def report(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "requests": self.requests,
            "acked": self.acked,
            "rejected": self.rejected,
            "unanswered": self.unanswered,
            "fills": self.fills,
            "book_messages": self.book_messages,
            "book_levels_sampled": self.book_levels_sampled,
            "book_messages_sampled": self.book_messages_sampled,
            "book_gaps": self.book_gaps,
            "trade_messages": self.trade_messages,
            "frames": self.frames,
            "messages": self.messages,
            "errors": dict(self.errors),
            "book_by_symbol": dict(self.book_by_symbol),
            "ack_us": self.ack_us,
            "service_us": self.service_us,
            "server_us": self.server_us,
            "fill_us": self.fill_us,
            "buckets": self.buckets,
            "last_answer_s": round(self.last_answer_s, 6),
            "cpu_s": round(self.cpu_s, 6),
            "cpu_window_s": round(self.cpu_window_s, 6),
        }

    @contextlib.contextmanager
    def cpu_measured(self) -> Iterator[None]:
        """Count this process's CPU time while the block runs: does the client keep up?"""
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        try:
            yield
        finally:
            self.cpu_s += time.process_time() - cpu_before
            self.cpu_window_s += time.perf_counter() - wall_before


# ----------------------------------------------------------------- the timetable


@dataclass
class Request:
    """One scheduled request: what it carries and what the answer counts for."""

    method: str
    params: dict[str, Any]
    actions: int
    multi: bool  # answered with one result per op


# ----------------------------------------------------------------- trading clients


class Trader:
    """One logged-on `/ws/trade` connection sending `compose(k)` at slot k, open loop."""

    def __init__(self, url: str, compose: Callable[[int], Request], tally: Tally) -> None:
        self.url = url
        self.compose = compose
        self.tally = tally
        self.connection: wsclient.LeanConnection | None = None
        self.ids = itertools.count(1)
        self.pending: dict[int, tuple[float, float, Request]] = {}
        self.setup: dict[int, asyncio.Future[Frame]] = {}
        self.origin = 0.0  # perf_counter of the common start (throughput is counted from it)
        self.clock: SlotClock | None = None  # the timetable's, while it runs
        self.sent = 0  # slots sent so far
        self.all_sent: asyncio.Future[None] | None = None
        self.counting = False

    async def open(self, key: str, secret: str, cod: bool) -> None:
        self.connection = await wsclient.connect(self.url + PACK_QUERY, self.on_message)
        self.connection.closed.add_done_callback(self.on_closed)
        ts = time.time_ns() // 1_000
        nonce = f"bench-{ts}"
        logon = {"api_key": key, "ts": ts, "nonce": nonce, "recv_window": RECV_WINDOW_MS_DEFAULT}
        logon["sig"] = sign_logon(secret, key, ts, nonce, RECV_WINDOW_MS_DEFAULT)
        await self.call("session.logon", logon)
        if cod:  # quote.mass requires it, and a real market maker wants it anyway
            await self.call("session.cod", {"enabled": True})
        await self.call("subscribe", {"ch": "account"})

    async def call(self, method: str, params: dict[str, Any]) -> Frame:
        """A setup request, answered before the timetable starts."""
        assert self.connection is not None
        request_id = next(self.ids)
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self.setup[request_id] = future
        self.connection.send(ENCODE({"id": request_id, "method": method, "params": params}))
        frame = await future
        if frame.status != 200:
            name = frame.error.name if frame.error else "?"
            raise SystemExit(f"{method} refused: {frame.status} {name}")
        return frame

    async def run(self, origin: float, interval_s: float, slots: int, offset_s: float) -> None:
        """Send every slot, the first `offset_s` after `origin`, then wait (bounded) for the
        answers still out."""
        self.origin = origin
        self.counting = True
        loop = asyncio.get_running_loop()
        self.all_sent = loop.create_future()
        self.clock = SlotClock(loop, origin + offset_s, interval_s, slots, self.on_due)
        self.clock.start()
        try:
            await self.all_sent
            deadline = time.perf_counter() + DRAIN_S
            while self.pending and time.perf_counter() < deadline:
                await asyncio.sleep(0.005)
        finally:
            self.clock.stop()
        gave_up = time.perf_counter()
        for slot, written, request in self.pending.values():
            self.tally.unanswered += request.actions
            self.tally.errors["UNANSWERED"] += request.actions
            # a lower bound of its latency, so a loss never flatters the percentiles
            self.tally.ack_us.append(round((gave_up - slot) * 1e6))
            self.tally.service_us.append(round((gave_up - written) * 1e6))
        self.pending.clear()

    def on_due(self, due: int) -> None:
        """Slots up to `due` are due (the clock's wake-up): send them now, in this callback.
        A failure here ends `run` with it (a loop callback's error would only be logged, and
        `run` would wait for the slots forever)."""
        all_sent = self.all_sent
        assert all_sent is not None
        try:
            self._send_due(due, all_sent)
        except Exception as failure:
            if not all_sent.done():
                all_sent.set_exception(failure)

    def _send_due(self, due: int, all_sent: asyncio.Future[None]) -> None:
        connection, clock = self.connection, self.clock
        assert connection is not None and clock is not None
        if connection.closed.done():  # what is still pending counts as unanswered
            if not all_sent.done():
                all_sent.set_result(None)
            return
        while self.sent < due:
            request = self.compose(self.sent)
            request_id = next(self.ids)
            frame = {"id": request_id, "method": request.method, "params": request.params}
            self.pending[request_id] = (clock.slot_s(self.sent), time.perf_counter(), request)
            self.tally.sent += request.actions
            self.tally.requests += 1
            self.sent += 1
            connection.send(ENCODE(frame))
        if self.sent == clock.slots and not all_sent.done():
            all_sent.set_result(None)

    def on_message(self, payload: bytes) -> None:
        frames = DECODE_PACKED(payload)
        if self.counting:
            self.tally.frames += 1
            self.tally.messages += len(frames)
        for frame in frames:
            self.on_frame(frame)

    def on_closed(self, _: object) -> None:
        if self.counting:
            self.tally.errors["CONNECTION_LOST"] += 1
        for future in self.setup.values():
            if not future.done():
                future.set_exception(ConnectionError("the connection closed"))

    def on_frame(self, frame: Frame) -> None:
        if frame.id is not None:
            future = self.setup.pop(frame.id, None)
            if future is not None:
                future.set_result(frame)
                return
            entry = self.pending.pop(frame.id, None)
            if entry is not None:
                self.answered(frame, *entry)
        elif frame.ch == "account" and frame.type == "exec" and self.counting:
            if DECODE_EXEC(frame.data).exec_type == "trade":
                self.tally.fills += 1
                self.tally.fill_us.append(time.time_ns() // 1_000 - frame.ts)
        elif frame.ch == "session" and frame.type == "slow_consumer":
            self.tally.errors["SLOW_CONSUMER"] += 1

    def answered(self, frame: Frame, slot: float, written: float, request: Request) -> None:
        now = time.perf_counter()
        tally = self.tally
        tally.ack_us.append(round((now - slot) * 1e6))
        tally.service_us.append(round((now - written) * 1e6))
        tally.server_us.append(frame.t_out - frame.t_in)
        if request.multi and frame.status in STATUS_MULTI and frame.result:
            results = DECODE_MULTI(frame.result).results
            acked = 0
            for op in results:
                if op.status == 200:
                    acked += 1
                else:
                    tally.errors[op.error.name if op.error else str(op.status)] += 1
            # quote.mass answers only the sides it changed; a side left as it was is done
            acked += request.actions - len(results)
        elif frame.status == 200:
            acked = request.actions
        else:
            acked = 0
            tally.errors[frame.error.name if frame.error else str(frame.status)] += request.actions
        tally.acked += acked
        tally.rejected += request.actions - acked
        tally.count_in_bucket(now - self.origin, acked)
        tally.last_answer_s = now - self.origin


def bench_symbols(count: int) -> list[str]:
    """The symbols a run trades and follows: `SYMBOL`, then `count - 1` stocks named after
    `BENCH_ASSET_FORMAT` (`venue bench e2e` lists them in its server's config)."""
    assert count >= 1, "a run trades at least one symbol"
    return [SYMBOL, *(f"{BENCH_ASSET_FORMAT.format(number)}-USD" for number in range(1, count))]


def taker_requests(batch: int, symbols: list[str]) -> Callable[[int], Request]:
    """Marketable IOC limit orders over `symbols` round-robin, each symbol's sides
    alternating (order n: symbol n % N, buy on even rounds n // N: with one symbol, sides
    alternate as they always did); `batch` > 1 sends them in order.batch."""

    def order(number: int) -> dict[str, Any]:
        symbol_number, turn = number % len(symbols), number // len(symbols)
        side = "buy" if turn % 2 == 0 else "sell"
        params = {"symbol": symbols[symbol_number], "side": side, "type": "limit", "tif": "ioc"}
        return params | {
            "price": TAKER_PRICE[side],
            "qty": TAKER_QTY,
        }

    def compose(slot: int) -> Request:
        if batch == 1:
            return Request("order.place", order(slot), 1, multi=False)
        ops = [{"method": "order.place", "params": order(slot * batch + i)} for i in range(batch)]
        return Request("order.batch", {"ops": ops}, batch, multi=True)

    return compose


def maker_requests(index: int, levels: int, symbols: list[str]) -> Callable[[int], Request]:
    """quote.mass: slot k requotes symbol k % N at ladder level (k // N) % levels (one quote
    set per level, quoting every symbol), moving it one tick out and back on alternate turns,
    so every requote changes the book. Each symbol's top level is quoted in the first N
    slots, so takers find liquidity on every symbol as soon as they can with one."""

    def compose(slot: int) -> Request:
        symbol_number, round_number = slot % len(symbols), slot // len(symbols)
        level, turn = round_number % levels, round_number // levels
        offset = (level + turn % 2) * TICK
        quote = {
            "symbol": symbols[symbol_number],
            "bid_px": f"{BEST_BID - offset:.2f}",
            "bid_qty": MAKER_QTY,
            "ask_px": f"{BEST_ASK + offset:.2f}",
            "ask_qty": MAKER_QTY,
        }
        params = {"quote_set": f"bench-{index}-{level}", "quotes": [quote]}
        return Request("quote.mass", params, 2, multi=True)

    return compose


# ----------------------------------------------------------------- subscribers


class Subscriber:
    """One `/ws/public` connection following the book (depth 10) and the trades of every
    symbol of the run, one subscribe per channel; book gaps are told per symbol (each
    symbol's book is a stream of its own, with its own `seq`)."""

    def __init__(
        self, url: str, tally: Tally, sampled: bool, symbols: tuple[str, ...] = (SYMBOL,)
    ) -> None:
        self.url = url
        self.tally = tally
        self.sampled = sampled  # count the levels in each book message (costly: one in many)
        self.symbols = symbols
        self.book_seq: dict[str, int] = {}  # the last book seq of each symbol
        self.snapshotted: set[str] = set()  # the symbols whose book snapshot came
        self.origin = 0.0
        self.counting = False
        self.snapshot = asyncio.Event()
        self.connection: wsclient.LeanConnection | None = None

    async def open(self) -> None:
        self.connection = await wsclient.connect(self.url + PACK_QUERY, self.on_message)
        self.connection.closed.add_done_callback(self.on_closed)
        for request_id, channel in ((1, "book"), (2, "trades")):
            params = {"ch": channel, "symbols": list(self.symbols), "depth": 10}
            self.connection.send(
                ENCODE({"id": request_id, "method": "subscribe", "params": params})
            )

    def on_message(self, payload: bytes) -> None:
        frames = DECODE_PACKED(payload)
        if self.counting:
            self.tally.frames += 1
            self.tally.messages += len(frames)
        for frame in frames:
            if frame.ch == "book":
                self.on_book(frame)
            elif frame.ch == "trades" and self.counting:
                self.tally.trade_messages += 1
            elif frame.ch == "session" and frame.type == "slow_consumer":
                self.tally.errors["SLOW_CONSUMER"] += 1

    def on_closed(self, _: object) -> None:
        if self.counting:
            assert self.connection is not None
            self.tally.errors[f"CLOSED_{self.connection.close_code}"] += 1

    def on_book(self, frame: Frame) -> None:
        symbol = frame.sym or ""
        if frame.type == "snapshot":
            self.book_seq[symbol] = frame.seq
            self.snapshotted.add(symbol)
            if len(self.snapshotted) == len(self.symbols):
                self.snapshot.set()  # every symbol's book has its snapshot
        else:
            # an update that does not follow its book's last message, or that comes before
            # the book's snapshot (nothing to apply it to), is a gap
            if frame.prev_seq != self.book_seq.get(symbol):
                self.tally.book_gaps += 1
            self.book_seq[symbol] = frame.seq
        if not self.counting:
            return
        tally = self.tally
        tally.book_messages += 1
        tally.book_by_symbol[symbol] += 1
        tally.count_in_bucket(time.perf_counter() - self.origin, 1)
        if self.sampled and frame.data:
            book = DECODE_BOOK(frame.data)
            tally.book_levels_sampled += len(book.bids) + len(book.asks)
            tally.book_messages_sampled += 1


# ----------------------------------------------------------------- the process


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e_clients")
    parser.add_argument("role", choices=("maker", "taker", "subscriber"))
    parser.add_argument("--url", required=True, help="the server's ws://.../ws/trade")
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="requests per second")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--offset", type=float, default=0.0, help="s from T to the first slot")
    parser.add_argument("--key", default="")
    parser.add_argument("--secret", default="")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--symbols", type=int, default=1, help="how many symbols: bench_symbols")
    return parser


def say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def wait_for_go() -> float:
    """Read `go T` from the parent; return the perf_counter value at wall-clock time T."""
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    word, _, start = line.partition(" ")
    if word != "go":
        raise SystemExit(f"expected 'go T' from the parent, got {line!r}")
    return time.perf_counter() + (float(start) - time.time())


async def report_progress(tally: Tally) -> None:
    while True:
        await asyncio.sleep(PROGRESS_S)
        say({"progress": tally.progress()})


async def run_trader(args: argparse.Namespace) -> Tally:
    tally = Tally()
    symbols = bench_symbols(args.symbols)
    compose = (
        taker_requests(args.batch, symbols)
        if args.role == "taker"
        else maker_requests(args.index, args.levels, symbols)
    )
    trader = Trader(args.url, compose, tally)
    async with asyncio.timeout(SETUP_TIMEOUT_S):
        await trader.open(args.key, args.secret, cod=args.role == "maker")
    say({"ready": True})
    origin = await wait_for_go()
    slots = max(1, round(args.duration * args.rate))
    progress = asyncio.get_running_loop().create_task(report_progress(tally))
    try:
        with tally.cpu_measured():
            await trader.run(origin, 1 / args.rate, slots, args.offset)
    finally:
        progress.cancel()
        trader.counting = False
        if trader.connection is not None:
            await close(trader.connection)
    return tally


async def close(connection: wsclient.LeanConnection) -> None:
    """Close politely; a server that does not answer within `CLOSE_S` is cut off."""
    connection.close()
    try:
        async with asyncio.timeout(CLOSE_S):
            await connection.closed
    except TimeoutError:
        connection.abort()


async def run_subscribers(args: argparse.Namespace) -> Tally:
    tally = Tally()
    public_url = args.url.replace("/ws/trade", "/ws/public")
    symbols = bench_symbols(args.symbols)
    followers = [
        Subscriber(public_url, tally, i == 0, tuple(symbols)) for i in range(args.connections)
    ]
    async with asyncio.timeout(SETUP_TIMEOUT_S):
        await asyncio.gather(*(follower.open() for follower in followers))
        await asyncio.gather(*(follower.snapshot.wait() for follower in followers))
    say({"ready": True})
    origin = await wait_for_go()
    await asyncio.sleep(max(0.0, origin - time.perf_counter()))
    for follower in followers:
        follower.origin, follower.counting = origin, True
    progress = asyncio.get_running_loop().create_task(report_progress(tally))
    with tally.cpu_measured():
        await asyncio.sleep(args.duration)
    for follower in followers:
        follower.counting = False
    progress.cancel()
    await asyncio.gather(*(close(f.connection) for f in followers if f.connection is not None))
    return tally


async def main_async(args: argparse.Namespace) -> None:
    runner = run_subscribers if args.role == "subscriber" else run_trader
    tally = await runner(args)
    say({"result": tally.report()})


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        import uvloop
    except ImportError:  # not built for every platform: plain asyncio then
        asyncio.run(main_async(args))
    else:
        uvloop.run(main_async(args))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
