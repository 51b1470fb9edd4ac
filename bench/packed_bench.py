"""The packed-frames benchmark: `python -m bench.packed_bench` — a turn's messages to one
session written one frame each or packed in one JSON array (`?pack=1`), and read back.

Owns one measurement: a real `gateway.transport` listener on 127.0.0.1 whose sessions are
the server's own `gateway.sessions.Sessions`, one unpacked and one packed connection of the
e2e load generators' lean client (`bench.wsclient`), and real private pushes (replayed by
`bench.outbound_bench.Replay`, `--workload`). Each turn queues `--messages` pushes for a
session (`Sessions.send`) and writes them (`flush_outboxes`); the client decodes each
message as the e2e clients do (`--client lean`: msgspec into `bench.e2e_clients.Frame`) or
as the SDK does (`--client sdk`: the websockets library's client, `msgspec.json.decode`).
Server and client share one event loop thread; it reports that thread's CPU
(`time.thread_time`: user and system) per turn on each side: the server's (queue, frame,
write) and then the client's (the loop's polling, the read, the parse, the decode, up to the
turn's last message), with the two kinds of session interleaved turn by turn so the shared
machine's noise falls on both alike.
"""

import argparse
import asyncio
import statistics
import time
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect

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
    """A client that decodes what it reads, as the e2e clients do (`lean`: `bench.wsclient`)
    or as the SDK does (`sdk`: the websockets library's asyncio client and a reader task),
    and says when a turn's messages are all in."""

    def __init__(self, packed: bool) -> None:
        self.packed = packed
        self.messages = 0
        self.wanted = 0
        self.arrived = asyncio.Event()
        self.lean: wsclient.LeanConnection | None = None
        self.library: ClientConnection | None = None
        self.task: asyncio.Task[None] | None = None

    async def open(self, url: str, kind: str) -> None:
        if kind == "lean":
            self.lean = await wsclient.connect(url, self.on_message)
            return
        self.library = await connect(url, max_size=None, compression=None)
        self.task = asyncio.get_running_loop().create_task(self.read())

    async def read(self) -> None:
        assert self.library is not None
        async for frame in self.library:
            decoded = msgspec.json.decode(frame)  # the SDK's decode, then one dict per message
            self.count(len(decoded) if type(decoded) is list else 1)

    def on_message(self, payload: bytes) -> None:
        self.count(len(DECODE_PACKED(payload)) if self.packed else bool(DECODE_ONE(payload)))

    def count(self, messages: int) -> None:
        self.messages += messages
        if self.messages >= self.wanted:
            self.arrived.set()

    def close(self) -> None:
        if self.lean is not None:
            self.lean.abort()
        if self.task is not None:
            self.task.cancel()


async def run(messages: int, turns: int, workload: str, kind: str = "lean") -> dict[str, Any]:
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
            await reader.open(f"ws://127.0.0.1:{port}/ws/trade?pack={int(packed)}", kind)
        while len(handler.by_route) < 2:
            await asyncio.sleep(0.01)
        server_s: dict[bool, list[float]] = {False: [], True: []}
        client_s: dict[bool, list[float]] = {False: [], True: []}
        for turn in range(turns):
            batch = [payloads[(turn * messages + i) % len(payloads)] for i in range(messages)]
            for packed in (turn % 2 == 0, turn % 2 == 1):  # who goes first alternates
                reader = readers[packed]
                session = handler.by_route[packed]
                reader.wanted = reader.messages + messages
                reader.arrived.clear()
                started = time.thread_time()
                for payload in batch:
                    handler.sessions.send(session, payload)
                handler.sessions.flush_outboxes()
                written = time.thread_time()
                async with asyncio.timeout(READ_TIMEOUT_S):
                    await reader.arrived.wait()
                server_s[packed].append(written - started)
                client_s[packed].append(time.thread_time() - written)
        result: dict[str, Any] = {
            "workload": workload,
            "client": kind,
            "messages_per_turn": messages,
        }
        for packed, name in ((False, "frames"), (True, "packed")):
            result[f"server_us_per_turn_{name}"] = _median_us(server_s[packed])
            result[f"client_us_per_turn_{name}"] = _median_us(client_s[packed])
        return result
    finally:
        for reader in readers.values():
            reader.close()
        await listener.close()


def _median_us(seconds: list[float]) -> float:
    return round(statistics.median(seconds) * 1e6, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10, help="messages per turn")
    parser.add_argument("--turns", type=int, default=2_000)
    parser.add_argument("--workload", choices=("cross", "requote"), default="cross")
    parser.add_argument("--client", choices=("lean", "sdk"), default="lean")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # not built for every platform: plain asyncio then
        print(asyncio.run(run(args.messages, args.turns, args.workload, args.client)))
        return
    print(uvloop.run(run(args.messages, args.turns, args.workload, args.client)))


if __name__ == "__main__":
    main()
