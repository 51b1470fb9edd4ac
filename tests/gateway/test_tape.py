"""The trades tape survives restarts: a clean stop, a kill -9 (snapshot + journal tail) and a
replay of the journal alone each bring back the same tape, on REST and the `trades` channel.

Real processes: the server is `venue serve` on a data directory, stopped with SIGTERM or
SIGKILL and started again on it; the clients talk to it over loopback.
"""

import asyncio
import json
import signal
import subprocess
import urllib.request
from collections import deque
from pathlib import Path
from typing import Any

import msgspec

from client.sdk import VenueClient
from engine.enums import OrderStatus, Side
from engine.events import TradeExecuted
from gateway.tape import TRADES_RECENT_MAX, Tape
from tests.conftest import KEYS, next_push_not_heartbeat
from tests.gateway.test_crash import free_port, start_server
from tests.gateway.test_server_streams import place_params

SYMBOL = "AAPLx-USD"
SWEPT = 60  # more than the tape keeps: its limit drops the oldest
STOP_TIMEOUT_S = 20


def trade_event(trade_id: int, ts_us: int = 1_000) -> TradeExecuted:
    return TradeExecuted(
        ts_us, SYMBOL, trade_id, 18_730 + trade_id, 100_000, Side.BUY,
        10, 1, 0, 100_000, OrderStatus.FILLED, 20, 2, 0, 100_000, OrderStatus.FILLED,
    )  # fmt: skip


def test_an_image_holds_the_unflushed_trades_after_the_tape_and_restores_in_place() -> None:
    tape = Tape()
    held = tape.recent(SYMBOL)  # as the publisher holds it
    for trade_id in range(1, TRADES_RECENT_MAX + 1):
        tape.add(trade_event(trade_id))
    image = tape.image({SYMBOL: [trade_event(TRADES_RECENT_MAX + 1)], "MSFTx-USD": []})
    restored = Tape()
    restored.recent(SYMBOL).append(trade_event(999))  # stale: replaced by the image
    kept = restored.recent(SYMBOL)
    restored.restore(msgpack_round_trip(image))
    assert restored.recent(SYMBOL) is kept, "the deque the publisher holds is refilled"
    assert list(kept) == [trade_event(i) for i in range(2, TRADES_RECENT_MAX + 2)]
    assert restored.recent("MSFTx-USD") == deque()
    restored.restore(None)  # a snapshot from before the tape was kept
    assert not kept and held is tape.recent(SYMBOL)


def msgpack_round_trip(image: dict[str, Any]) -> Any:
    """As the snapshot file stores it."""
    return msgspec.msgpack.decode(msgspec.msgpack.encode(image))


async def make_trades(port: int, first_price_cents: int, swept: int, sells: int) -> None:
    """`swept` sells of alpha's taken by one buy of the taker (a sweep: one command, one
    time), then `sells` single trades in which the taker sells (a time each)."""
    url = f"ws://127.0.0.1:{port}/ws/trade"
    maker, taker = await VenueClient(url).connect(), await VenueClient(url).connect()
    try:
        await maker.logon(*KEYS["alpha"])
        await taker.logon(*KEYS["taker"])
        prices = [f"{(first_price_cents + i) / 100:.2f}" for i in range(swept)]
        for start in range(0, swept, 20):
            ops = [
                {"method": "order.place", "params": place_params("sell", "0.1", price)}
                for price in prices[start : start + 20]
            ]
            await maker.request("order.batch", {"ops": ops})
        if swept:
            await taker.place(SYMBOL, "buy", f"{swept / 10:.1f}", prices[-1], tif="ioc")
        for i in range(sells):
            price = f"{(first_price_cents - 100 - i) / 100:.2f}"
            await maker.place(SYMBOL, "buy", "0.2", price)
            await taker.place(SYMBOL, "sell", "0.2", price, tif="ioc")
    finally:
        await maker.close()
        await taker.close()


async def read_tape(
    port: int, symbol: str = SYMBOL
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The tape as REST's `GET /api/v1/trades` and a `trades` subscription's snapshot show it."""
    url = f"http://127.0.0.1:{port}/api/v1/trades?symbol={symbol}&limit={TRADES_RECENT_MAX}"
    with urllib.request.urlopen(url, timeout=5) as answer:
        rest: list[dict[str, Any]] = json.loads(answer.read())["trades"]
    public = await VenueClient(f"ws://127.0.0.1:{port}/ws/public").connect()
    try:
        await public.request("subscribe", {"ch": "trades", "symbols": [symbol]})
        snapshot = await next_push_not_heartbeat(public)
        assert (snapshot["ch"], snapshot["type"]) == ("trades", "snapshot"), snapshot
    finally:
        await public.close()
    return rest, snapshot["data"]


def restart(server: subprocess.Popen[str], data_dir: Path, port: int, kill: bool) -> Any:
    server.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    server.wait(STOP_TIMEOUT_S)
    return start_server(data_dir, port)


def test_the_tape_survives_a_clean_stop_a_kill_and_a_replay_of_the_journal(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    server = start_server(data_dir, port)
    try:
        asyncio.run(make_trades(port, 18_701, SWEPT, sells=3))
        rest, snapshot = asyncio.run(read_tape(port))
        assert len(rest) == TRADES_RECENT_MAX and rest == snapshot
        assert [t["taker_side"] for t in rest[-4:]] == ["buy", "sell", "sell", "sell"]
        assert rest[0]["trade_id"] == SWEPT + 3 - TRADES_RECENT_MAX + 1

        server = restart(server, data_dir, port, kill=False)  # the stop writes a snapshot
        assert list(data_dir.glob("snapshot-*.bin"))
        assert asyncio.run(read_tape(port)) == (rest, rest), "after a clean stop"

        asyncio.run(make_trades(port, 18_801, 0, sells=2))  # the journal's tail
        after, _ = asyncio.run(read_tape(port))
        assert after == rest[2:] + after[-2:] and after[-1]["trade_id"] == SWEPT + 5
        server = restart(server, data_dir, port, kill=True)
        assert asyncio.run(read_tape(port)) == (after, after), "snapshot + journal tail"

        server.send_signal(signal.SIGKILL)
        server.wait(STOP_TIMEOUT_S)
        for path in data_dir.glob("snapshot-*.bin"):
            path.unlink()  # the journal alone
        server = start_server(data_dir, port)
        assert asyncio.run(read_tape(port)) == (after, after), "a replay of the journal"
    finally:
        server.kill()
        server.wait(STOP_TIMEOUT_S)
