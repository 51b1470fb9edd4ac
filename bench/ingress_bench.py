"""The ingress benchmark: `python -m bench.ingress_bench` — frame in to command submitted, and
the answer back out, in-process on a real `VenueServer`.

Owns a replay of the e2e mix as real masked client frames fed to the server's own connection
protocol objects (`gateway.transport.Connection`) over a fake transport that only collects
what is written: makers requote two levels with `quote.mass` (each requote amends both sides),
takers send marketable IOC `order.place`, or `order.batch` of 20 of them. Every client
connects packed (`?pack=1`) and follows its account stream, as those of `bench.e2e_clients`
do, so each request's private pushes are queued and written too (since session 29). One frame per
`data_received`, as a client at the e2e rate arrives; the journal commits (fsync) every
`WINDOW` requests, so answers go out as in the server; the collector is set as `venue serve`
sets it (`settle_heap`), and `gc_per_1000` counts its collections per 1,000 requests fed and
answered, `gc_us_per_request` the CPU time they took (cyclic garbage or container churn on
the path shows there). Reports per request, in µs of CPU:
`ingress` — the loop thread's CPU in `data_received` less the engine's `Venue.execute` and
the sequencer's `on_executed` listener (private pushes: other parts) and the measuring
wrappers' own cost, plus `Dispatcher.answer` (the answer built and queued; both timed by
`Meter`): the request path
this bench is about; `process` — all of the
process's CPU over the run (every thread: engine, pushes, journal), for scale. Medians of
`--runs`; `--profile` prints cProfile's top entries of the feeding instead; `--bytecodes`
counts the Python bytecodes of the feeding and the release per request, by function (a figure
the machine's load does not move, unlike CPU time; ~50 times slower: use a few hundred).
"""

import argparse
import asyncio
import collections
import cProfile
import gc
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri

from bench import server_process
from cli.serve import settle_heap
from core import config as venue_config
from gateway import transport
from gateway.auth import RECV_WINDOW_MS_DEFAULT, sign_logon
from gateway.server import VenueServer

WINDOW = 32  # requests between journal commits: a busy turn's worth
SYMBOL = "AAPLx-USD"
TAKER_PRICE = {"buy": "189.00", "sell": "185.50"}  # as bench.e2e_clients: through every level
TAKER_QTY = "0.01"
MAKER_QTY = "5"
BEST_BID, BEST_ASK = 187.24, 187.26
LEVELS = 2
BATCH = 20
ACCOUNT_BASE = 9_100
KINDS = ("quote", "place", "batch")
PROFILE_ENTRIES = 30
# Another thread (the store's) takes the GIL only when the loop waits (drain), not in the
# middle of a measured window, whose wall time would then hold its work.
SWITCH_INTERVAL_S = 0.5
# The fake clients never answer the server's keepalive pings (20 s, then 20 s for the pong): a
# run longer than that on a busy machine had its connections closed 1011 mid-run (EOFError).
KEEPALIVE_OFF_S = 24 * 3600.0
ENCODE = msgspec.json.encode


class FakeTransport:
    """What a connection writes to: kept nowhere but counted (uvloop's transport's calls),
    and the error responses among its frames (a run with any is not the e2e mix)."""

    def __init__(self) -> None:
        self.written = 0
        self.errors = 0
        self.closing = False
        self.protocol: asyncio.Protocol | None = None

    def _lost(self) -> None:
        if not self.closing and self.protocol is not None:  # as a socket's: gone next turn
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40_000) if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.written += len(data)
        self.errors += b'"error":' in data

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.written += len(chunk)
            # a frame, or a packed frame's body, per chunk (`gateway.sessions`)
            self.errors += b'"error":' in chunk

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self._lost()

    def abort(self) -> None:
        self._lost()


def masked(payload: bytes) -> bytes:
    """One client text frame, masked as a client must (RFC 6455 §5.3)."""
    return Frame(Opcode.TEXT, payload).serialize(mask=True, extensions=[])


def accounts_toml() -> str:
    lines = ["\n# added by bench.ingress_bench"]
    for index in range(4):  # two makers, two takers
        number = ACCOUNT_BASE + index
        lines.append(
            f'[[accounts]]\nid = {number}\nname = "ingress-{number}"\njurisdiction = "DE"\n'
            'kyc_approved = true\ndeposits = { USD = "100000", AAPLx = "1000" }'
        )
        lines.append(
            f'[[api_keys]]\nkey = "ingress-{index}"\nsecret = "ingress-secret-{index}"\n'
            f'account = {number}\nscopes = ["read", "trade"]'
        )
    return "\n\n".join(lines) + "\n"


class Client:
    """A websocket connection made on the server's listener, fed frames directly."""

    def __init__(self, server: VenueServer, packed: bool) -> None:
        listener = server._server
        assert listener is not None, "start the server first"
        self.connection = transport.Connection(listener)
        self.transport = FakeTransport()
        self.transport.protocol = self.connection
        self.connection.connection_made(self.transport)  # type: ignore[arg-type]
        query = "?pack=1" if packed else ""
        client = ClientProtocol(parse_uri(f"ws://127.0.0.1/ws/trade{query}"))
        client.send_request(client.connect())
        self.connection.data_received(b"".join(client.data_to_send()))
        self.ids = iter(range(1, 10**9))

    def frame(self, method: str, params: dict[str, Any]) -> bytes:
        return masked(ENCODE({"id": next(self.ids), "method": method, "params": params}))

    def logon(self, key: str, secret: str) -> None:
        ts = time.time_ns() // 1_000
        nonce = f"ingress-{ts}-{key}"
        logon = {"api_key": key, "ts": ts, "nonce": nonce, "recv_window": RECV_WINDOW_MS_DEFAULT}
        logon["sig"] = sign_logon(secret, key, ts, nonce, RECV_WINDOW_MS_DEFAULT)
        self.connection.data_received(self.frame("session.logon", logon))


def quote_params(maker: int, slot: int) -> dict[str, Any]:
    """As `bench.e2e_clients.maker_requests`: level slot % 2, one tick out and back."""
    level, turn = slot % LEVELS, slot // LEVELS
    offset = (level + turn % 2) * 0.01
    quote = {
        "symbol": SYMBOL,
        "bid_px": f"{BEST_BID - offset:.2f}",
        "bid_qty": MAKER_QTY,
        "ask_px": f"{BEST_ASK + offset:.2f}",
        "ask_qty": MAKER_QTY,
    }
    return {"quote_set": f"ingress-{maker}-{level}", "quotes": [quote]}


def order_params(number: int) -> dict[str, Any]:
    side = "buy" if number % 2 == 0 else "sell"
    return {"symbol": SYMBOL, "side": side, "type": "limit", "tif": "ioc"} | {
        "price": TAKER_PRICE[side],
        "qty": TAKER_QTY,
    }


class Meter:
    """Loop-thread time spent inside wrapped callables (others' parts, or the answer).

    Wall-clock (`perf_counter`, ~0.1 µs a read): a thread-CPU clock read is a system call
    (~2.5 µs here) and would swamp what it measures. `Bench.run` scales it to CPU by the
    window's CPU-to-wall ratio (time the machine gave to other processes spreads evenly).
    """

    def __init__(self) -> None:
        self.spent_s = 0.0
        self.calls = 0

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        clock = time.perf_counter

        def timed(*args: Any) -> Any:
            start = clock()
            try:
                return function(*args)
            finally:
                self.spent_s += clock() - start
                self.calls += 1

        return timed


def wrapper_overhead_s(calls: int = 20_000) -> float:
    """What a `Meter` wrapper adds around each call outside what it measures: taken off the
    request path's figure per wrapped call."""
    meter = Meter()
    noop = meter.wrap(lambda: None)
    start = time.perf_counter()
    for _ in range(calls):
        noop()
    return (time.perf_counter() - start - meter.spent_s) / calls


class BytecodeCount:
    """Python bytecodes executed, by function (`sys.settrace` with opcode events), while
    enabled: in the feeding, and in the release of what was fed (`traced`) while `active`."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.active = False

    def _trace(self, frame: Any, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        code = frame.f_code
        key = "/".join(code.co_filename.split("/")[-2:]) + ":" + code.co_name
        counts = self.counts

        def opcodes(frame: Any, event: str, arg: Any) -> Any:
            if event == "opcode":
                counts[key] += 1
            return opcodes

        return opcodes

    def enable(self) -> None:
        sys.settrace(self._trace)

    def disable(self) -> None:
        sys.settrace(None)

    def traced(self, function: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            if not self.active:
                return function(*args)
            self.enable()
            try:
                return function(*args)
            finally:
                self.disable()

        return call

    def summary(self, requests: int) -> dict[str, Any]:
        """Per request: all bytecodes, those outside the engine and the ledger (the pure
        parts: other benches' business) and this bench's own wrappers, and the top functions
        of those."""
        outside = {k: v for k, v in self.counts.items() if not k.startswith(NOT_THIS_PATH)}
        top = sorted(outside.items(), key=lambda item: -item[1])[:BYTECODE_ENTRIES]
        return {
            "bytecodes_per_request": round(sum(self.counts.values()) / requests, 1),
            "outside_engine_per_request": round(sum(outside.values()) / requests, 1),
            "top": {name: round(count / requests, 1) for name, count in top},
        }


NOT_THIS_PATH = ("engine/", "settlement/", "sortedcontainers/", "bench/")
BYTECODE_ENTRIES = 25


class Bench:
    """A started server with two maker and two taker connections: packed, each following its
    account stream, as e2e's (`as_e2e`); else plain, following nothing (as before session 29:
    `tests/gateway/test_answer_digest.py`'s answers were pinned so)."""

    def __init__(self, server: VenueServer, as_e2e: bool = True) -> None:
        self.server = server
        listener = server._server
        assert listener is not None, "start the server first"
        listener.ping_interval_s = listener.ping_timeout_s = KEEPALIVE_OFF_S  # before connecting
        self.makers = [Client(server, as_e2e), Client(server, as_e2e)]
        self.takers = [Client(server, as_e2e), Client(server, as_e2e)]
        for index, client in enumerate(self.makers + self.takers):
            client.logon(f"ingress-{index}", f"ingress-secret-{index}")
        for maker in self.makers:
            maker.connection.data_received(maker.frame("session.cod", {"enabled": True}))
        if as_e2e:  # their pushes are queued and written
            for client in self.makers + self.takers:
                client.connection.data_received(client.frame("subscribe", {"ch": "account"}))
        self.slot = 0
        self.collections = 0  # by the collector, while a window is fed and answered
        self.others = Meter()  # the engine and the executed-listener: not this path
        self.answers = Meter()  # Dispatcher.answer: this path
        self.overhead_s = wrapper_overhead_s()
        sequencer = server.core.sequencer
        sequencer.venue.execute = self.others.wrap(sequencer.venue.execute)  # type: ignore[method-assign]
        assert sequencer.on_executed is not None
        sequencer.on_executed = self.others.wrap(sequencer.on_executed)
        dispatcher = server.dispatcher
        dispatcher.answer = self.answers.wrap(dispatcher.answer)  # type: ignore[method-assign]

    def requests(self, kind: str, count: int) -> Iterator[tuple[transport.Connection, bytes]]:
        """`count` frames of `kind`, built before the clock starts."""
        for _ in range(count):
            self.slot += 1
            slot = self.slot
            if kind == "quote":
                maker = slot % 2
                client = self.makers[maker]
                yield client.connection, client.frame("quote.mass", quote_params(maker, slot // 2))
            elif kind == "place":
                client = self.takers[slot % 2]
                yield client.connection, client.frame("order.place", order_params(slot // 2))
            else:
                client = self.takers[slot % 2]
                ops = [
                    {"method": "order.place", "params": order_params(slot * BATCH + i)}
                    for i in range(BATCH)
                ]
                yield client.connection, client.frame("order.batch", {"ops": ops})

    async def restock(self) -> None:
        """Both makers requote both levels (untimed): the takers always find liquidity."""
        for connection, frame in self.requests("quote", 2 * LEVELS):
            connection.data_received(frame)
        await self.server.sequencer.drain()

    async def run(
        self, kind: str, count: int, profiler: cProfile.Profile | BytecodeCount | None
    ) -> dict[str, Any]:
        work = [list(self.requests(kind, WINDOW)) for _ in range(count // WINDOW)]
        ingress_s = process_s = 0.0
        collections = 0
        GC_PAUSES.spent_s = 0.0
        for window in work:
            if kind != "quote":  # untimed: its engine work and answers are not counted
                await self.restock()
            self.others.spent_s = self.answers.spent_s = 0.0
            self.others.calls = 0
            collected_before = _collections()
            process_start = time.process_time()
            cpu_start, wall_start = time.thread_time(), time.perf_counter()
            if isinstance(profiler, BytecodeCount):
                profiler.active = True  # the release of this window's requests, too
            if profiler is not None:
                profiler.enable()
            for connection, frame in window:
                connection.data_received(frame)
            if profiler is not None:
                profiler.disable()
            fed_cpu_s = time.thread_time() - cpu_start
            cpu_per_wall = fed_cpu_s / (time.perf_counter() - wall_start)
            await self.server.sequencer.drain()
            await asyncio.sleep(0)  # the answers' writes
            if isinstance(profiler, BytecodeCount):
                profiler.active = False
            process_s += time.process_time() - process_start
            collections += _collections() - collected_before
            others_s = self.others.spent_s + self.others.calls * self.overhead_s
            ingress_s += fed_cpu_s + (self.answers.spent_s - others_s) * cpu_per_wall
        requests = len(work) * WINDOW
        return {
            "ingress_us_per_request": ingress_s * 1e6 / requests,
            "process_us_per_request": process_s * 1e6 / requests,
            "gc_per_1000": collections * 1_000 / requests,
            "gc_us_per_request": GC_PAUSES.spent_s * 1e6 / requests,
        }


class GcPauses:
    """CPU time inside the collector (a `gc.callbacks` entry; the thread's CPU clock, as the
    wall clock counts the time the machine gave to others): it stops the whole loop."""

    def __init__(self) -> None:
        self.spent_s = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.thread_time()
        else:
            self.spent_s += time.thread_time() - self._started


GC_PAUSES = GcPauses()


def _collections() -> int:
    """Collections of any generation so far (each begins with the young one)."""
    return sum(generation["collections"] for generation in gc.get_stats())


async def measure(
    count: int,
    kinds: list[str],
    profile: bool,
    config: Path = Path("venue.toml"),
    bytecodes: bool = False,
) -> dict[str, Any]:
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    with tempfile.TemporaryDirectory(prefix="venue-bench-ingress-") as name:
        directory = Path(name)
        config_path = server_process.unlimited_config(config, directory, accounts_toml())
        server = VenueServer(venue_config.load(config_path), directory / "data")
        await server.start("127.0.0.1", 0)
        settle_heap()  # as `venue serve` does once serving
        gc.callbacks.append(GC_PAUSES)
        try:
            bench = Bench(server)
            await server.sequencer.drain()
            for _ in range(LEVELS):
                await bench.restock()
            result: dict[str, Any] = {}
            counter = BytecodeCount() if bytecodes else None
            if counter is not None:  # the release runs in this loop callback
                sequencer = server.sequencer
                sequencer._committed = counter.traced(sequencer._committed)  # type: ignore[method-assign]
            for kind in kinds:
                profiler: cProfile.Profile | BytecodeCount | None = (
                    cProfile.Profile() if profile else None
                )
                if counter is not None:
                    counter.counts.clear()
                    profiler = counter
                result[kind] = await bench.run(kind, count, profiler)
                if counter is not None:
                    result[kind] |= counter.summary(count // WINDOW * WINDOW)
                if isinstance(profiler, cProfile.Profile):
                    print(f"--- {kind}")
                    stats = pstats.Stats(profiler).sort_stats("tottime")
                    stats.print_stats(PROFILE_ENTRIES)
            clients = bench.makers + bench.takers
            result["errors"] = sum(client.transport.errors for client in clients)
            return result
        finally:
            gc.callbacks.remove(GC_PAUSES)
            await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4_000, help="per kind and run")
    parser.add_argument("--runs", type=int, default=3, help="the median is reported")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated")
    parser.add_argument("--config", type=Path, default=Path("venue.toml"))
    parser.add_argument("--profile", action="store_true", help="cProfile the feeding, once")
    parser.add_argument(
        "--bytecodes", action="store_true", help="count bytecodes per request, once (slow)"
    )
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    if args.profile:
        server_process.run_async(measure(args.requests, kinds, True, args.config))
        return
    if args.bytecodes:
        result = server_process.run_async(
            measure(args.requests, kinds, False, args.config, bytecodes=True)
        )
        for kind in kinds:
            figures = result[kind]
            keep = ("bytecodes_per_request", "outside_engine_per_request", "top")
            print(ENCODE({"kind": kind} | {name: figures[name] for name in keep}).decode())
        return
    samples: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    for _ in range(args.runs):
        result = server_process.run_async(measure(args.requests, kinds, False, args.config))
        if result["errors"]:
            raise SystemExit(f"{result['errors']} error responses: not the e2e mix")
        for kind in kinds:
            samples[kind].append(result[kind])
    table = {}
    for kind, runs in samples.items():
        table[kind] = {
            figure: round(statistics.median(run[figure] for run in runs), 2)
            for figure in (
                "ingress_us_per_request",
                "process_us_per_request",
                "gc_per_1000",
                "gc_us_per_request",
            )
        } | {"ingress_runs": [round(run["ingress_us_per_request"], 2) for run in runs]}
    print(ENCODE({"pid": os.getpid(), **table}).decode())


if __name__ == "__main__":
    main()
