"""The server's own text frames, written by the transport, read back by the library's client."""

import asyncio
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import connect

from gateway import frames, transport

SIZES = (0, 1, 125, 126, 127, 65_535, 65_536, 70_000)  # each side of each length encoding
TIMEOUT_S = 5


class OnOpen:
    """A transport handler that does one thing when a websocket opens."""

    def __init__(self, opened: Callable[[transport.Connection], None]) -> None:
        self.opened = opened

    def on_open(self, connection: transport.Connection) -> None:
        self.opened(connection)

    def on_frame(self, connection: transport.Connection, message: str | bytes) -> None:
        pass

    def on_close(self, connection: transport.Connection) -> None:
        pass

    def on_http(self, connection: transport.Connection, request: Any) -> None:
        return None


async def serve_and_connect(handler: OnOpen, use: Callable[[Any], Any]) -> Any:
    listener = await transport.serve(handler, "127.0.0.1", 0, routes=("/",), max_size=2**20)
    port = listener.sockets[0].getsockname()[1]
    try:
        async with (
            asyncio.timeout(TIMEOUT_S),
            connect(f"ws://127.0.0.1:{port}/", max_size=None, compression=None) as client,
        ):
            return await use(client)
    finally:
        await listener.close()


def test_frames_of_every_length_encoding_arrive_whole_and_in_order() -> None:
    messages = [(f"{i}:" + "x" * size)[:size].encode() for i, size in enumerate(SIZES)]
    written: list[bool] = []

    def opened(connection: transport.Connection) -> None:
        framed = [frames.text_frame(message) for message in messages]
        written.append(connection.send_frames(framed[:3]))  # two writes in a row
        written.append(connection.send_frames(framed[3:]))

    async def read(client: Any) -> list[str]:
        return [str(await client.recv()) for _ in messages]

    assert asyncio.run(serve_and_connect(OnOpen(opened), read)) == [m.decode() for m in messages]
    assert written == [True, True]


def test_nothing_is_written_once_the_connection_is_closed() -> None:
    outcome: list[bool] = []

    def opened(connection: transport.Connection) -> None:
        connection.close(1000)
        outcome.append(connection.send_frames([frames.text_frame(b"after close")]))

    async def wait(client: Any) -> None:
        await client.wait_closed()

    asyncio.run(serve_and_connect(OnOpen(opened), wait))
    assert outcome == [False]


def test_a_text_frame_header_carries_the_length_in_the_shortest_form() -> None:
    assert frames.text_frame(b"hi") == b"\x81\x02hi"
    assert frames.text_frame(b"x" * 126)[:4] == b"\x81\x7e\x00\x7e"
    assert frames.text_frame(b"x" * 65_536)[:10] == b"\x81\x7f" + (65_536).to_bytes(8, "big")


def test_array_frames_of_every_length_encoding_arrive_as_one_json_array() -> None:
    bodies = [b'"' + b"x" * (size - 2) + b'"' if size >= 2 else b"1" for size in SIZES]

    def opened(connection: transport.Connection) -> None:
        for body in bodies:
            connection.send_frames([frames.array_frame(body)])

    async def read(client: Any) -> list[str]:
        return [str(await client.recv()) for _ in bodies]

    received = asyncio.run(serve_and_connect(OnOpen(opened), read))
    assert received == [f"[{body.decode()}]" for body in bodies]


def test_a_frames_payload_is_what_it_was_built_from() -> None:
    for size in SIZES:
        payload = b"y" * size
        frame = frames.text_frame(payload)
        header = 2 if size <= 125 else 4 if size <= 0xFFFF else 10  # RFC 6455 §5.2
        assert frame[header:] == payload
