"""The server's own frame writer, read back by the websockets library's client."""

import asyncio

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from gateway import frames

SIZES = (0, 1, 125, 126, 127, 65_535, 65_536, 70_000)  # each side of each length encoding
TIMEOUT_S = 5


def test_frames_of_every_length_encoding_arrive_whole_and_in_order() -> None:
    messages = [(f"{i}:" + "x" * size)[:size].encode() for i, size in enumerate(SIZES)]
    written: list[bool] = []

    async def handler(websocket: ServerConnection) -> None:
        framed = [frames.text_frame(message) for message in messages]
        written.append(frames.write_frames(websocket, framed[:3]))  # two writes in a row
        written.append(frames.write_frames(websocket, framed[3:]))
        await websocket.wait_closed()

    async def main() -> list[str]:
        async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
            port = server.sockets[0].getsockname()[1]
            async with (
                asyncio.timeout(TIMEOUT_S),
                connect(f"ws://127.0.0.1:{port}", max_size=None) as client,
            ):
                return [str(await client.recv()) for _ in messages]

    assert asyncio.run(main()) == [m.decode() for m in messages]
    assert written == [True, True]


def test_nothing_is_written_once_the_connection_is_closed() -> None:
    outcome: list[bool] = []

    async def handler(websocket: ServerConnection) -> None:
        await websocket.close()
        outcome.append(frames.write_frames(websocket, [frames.text_frame(b"after close")]))

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with asyncio.timeout(TIMEOUT_S), connect(f"ws://127.0.0.1:{port}") as client:
                await client.wait_closed()

    asyncio.run(main())
    assert outcome == [False]


def test_a_text_frame_header_carries_the_length_in_the_shortest_form() -> None:
    assert frames.text_frame(b"hi") == b"\x81\x02hi"
    assert frames.text_frame(b"x" * 126)[:4] == b"\x81\x7e\x00\x7e"
    assert frames.text_frame(b"x" * 65_536)[:10] == b"\x81\x7f" + (65_536).to_bytes(8, "big")
