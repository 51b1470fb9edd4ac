"""The packed-frames benchmark: `python -m bench.packed_bench` — a turn's messages to one
session written one frame each or packed in one JSON array (`?pack=1`), and read back.

Owns one measurement: a real `gateway.transport` listener on 127.0.0.1 whose sessions are
the server's own `gateway.sessions.Sessions`, one unpacked and one packed connection of the
e2e load generators' lean client (`bench.wsclient`), and real private pushes (replayed by
`bench.outbound_bench.Replay`, `--workload`). Each turn queues `--messages` pushes for a
session (`Sessions.send`) and writes them (`flush_outboxes`); the client decodes each
message as the e2e clients do (msgspec, `bench.e2e_clients.Frame`). It reports the event
loop thread's CPU (`time.thread_time`: user and system) per turn on each side, server (queue,
frame, write) and client (read, parse, decode), with the two kinds of session interleaved
turn by turn so the shared machine's noise falls on both alike.
"""

import argparse
import asyncio
import statistics
import time
from typing import Any

import msgspec

from bench import e2e_clients, wsclient
from bench.outbound_bench import Replay
from gateway import transport
from gateway.sessions import Session, Sessions

READ_TIMEOUT_S = 10.0  # a turn's messages arrive well within this on loopback
DECODE_ONE = msgspec.json.Decoder(e2e_clients.Frame).decode
DECODE_PACKED = e2e_clients.DECODE_PACKED


class Opened:
    """The transport handler: each websocket becomes a session of the server's `Sessions`."""

    def __init__(self) -> None:
        self.sessions = Sessions()
        self.by_route: dict[bool, Session] = {}

    def on_open(self, connection: transport.Connection) -> None:
        session = self.sessions.open(connection)
        self.by_route[session.packed] = session

    def on_frame(self, connection: transport.Connection, message: str | bytes) -> None:
        pass

    def on_close(self, connection: transport.Connection) -> None:
        self.sessions.forget(connection.context)

    def on_http(self, connection: transport.Connection, request: Any) -> None:
        return None


class Reader:
    """A client that counts and decodes what it reads, and the CPU that took."""

    def __init__(self, packed: bool) -> None:
        self.packed = packed
        self.messages = 0
        self.cpu_s = 0.0
        self.connection: wsclient.LeanConnection | None = None

    async def open(self, port: int, path: str) -> None:
        reader = self

        class Timed(wsclient.LeanConnection):
            def data_received(self, data: bytes) -> None:  # a read: frames parsed, decoded
                started = time.thread_time()
                super().data_received(data)
                reader.cpu_s += time.thread_time() - started

        loop = asyncio.get_running_loop()
        host = f"127.0.0.1:{port}"
        _, self.connection = await loop.create_connection(
            lambda: Timed(host, path, self.on_message), "127.0.0.1", port
        )
        await self.connection.opened

    def on_message(self, payload: bytes) -> None:
        if self.packed:
            self.messages += len(DECODE_PACKED(payload))
        else:
            DECODE_ONE(payload)
            self.messages += 1


async def run(messages: int, turns: int, workload: str) -> dict[str, Any]:
    replay = Replay(2_000, 7, workload)
    replay.keep_payloads = True
    replay.private()
    payloads = [payload for _, _, payload in replay.payloads]
    handler = Opened()
    listener = await transport.serve(handler, "127.0.0.1", 0, routes=("/ws/trade",))
    port = listener.sockets[0].getsockname()[1]
    readers = {packed: Reader(packed) for packed in (False, True)}
    try:
        for packed, reader in readers.items():
            await reader.open(port, f"/ws/trade?pack={int(packed)}")
        while len(handler.by_route) < 2:
            await asyncio.sleep(0.01)
        server_s: dict[bool, list[float]] = {False: [], True: []}
        client_s: dict[bool, list[float]] = {False: [], True: []}
        for turn in range(turns):
            batch = [payloads[(turn * messages + i) % len(payloads)] for i in range(messages)]
            for packed in (turn % 2 == 0, turn % 2 == 1):  # who goes first alternates
                reader = readers[packed]
                session = handler.by_route[packed]
                wanted = reader.messages + messages
                before_client = reader.cpu_s
                started = time.thread_time()
                for payload in batch:
                    handler.sessions.send(session, payload)
                handler.sessions.flush_outboxes()
                server_s[packed].append(time.thread_time() - started)
                async with asyncio.timeout(READ_TIMEOUT_S):
                    while reader.messages < wanted:
                        await asyncio.sleep(0)
                client_s[packed].append(reader.cpu_s - before_client)
        result: dict[str, Any] = {"workload": workload, "messages_per_turn": messages}
        for packed, name in ((False, "frames"), (True, "packed")):
            result[f"server_us_per_turn_{name}"] = _median_us(server_s[packed])
            result[f"client_us_per_turn_{name}"] = _median_us(client_s[packed])
        return result
    finally:
        for reader in readers.values():
            if reader.connection is not None:
                reader.connection.abort()
        await listener.close()


def _median_us(seconds: list[float]) -> float:
    return round(statistics.median(seconds) * 1e6, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10, help="messages per turn")
    parser.add_argument("--turns", type=int, default=2_000)
    parser.add_argument("--workload", choices=("cross", "requote"), default="cross")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # not built for every platform: plain asyncio then
        print(asyncio.run(run(args.messages, args.turns, args.workload)))
        return
    print(uvloop.run(run(args.messages, args.turns, args.workload)))


if __name__ == "__main__":
    main()
