"""The benchmark's lean websocket client against the websockets library's server on loopback."""

import asyncio
import base64
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from bench import wsclient

SIZES = (0, 1, 125, 126, 127, 65_535, 65_536, 70_000)  # each side of each length encoding
TIMEOUT_S = 5


def _on(handler: Callable[[ServerConnection], Awaitable[None]], test: Any) -> None:
    """Run `test(url)` against a server calling `handler` for each connection."""

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
            port = server.sockets[0].getsockname()[1]
            async with asyncio.timeout(TIMEOUT_S):
                await test(f"ws://127.0.0.1:{port}/ws/test")

    asyncio.run(main())


async def _echo(websocket: ServerConnection) -> None:
    async for message in websocket:
        await websocket.send(message)


def test_messages_of_every_length_encoding_round_trip() -> None:
    async def test(url: str) -> None:
        received: list[bytes] = []
        connection = await wsclient.connect(url, received.append)
        sent = [bytes([65 + i]) * size for i, size in enumerate(SIZES)]
        for payload in sent:
            connection.send(payload)  # masked by the client, unmasked by the server
        while len(received) < len(sent):
            await asyncio.sleep(0.01)
        assert received == sent
        connection.close()
        await connection.closed
        assert connection.close_code == 1000  # the server echoed our close

    _on(_echo, test)


def test_a_ping_is_answered_with_a_pong() -> None:
    pongs: list[float] = []

    async def pinger(websocket: ServerConnection) -> None:
        waiter = await websocket.ping(b"are you there")
        pongs.append(await waiter)  # the latency, once the matching pong arrives
        await websocket.send("pong seen")

    async def test(url: str) -> None:
        received: list[bytes] = []
        connection = await wsclient.connect(url, received.append)
        while not received:
            await asyncio.sleep(0.01)
        assert received == [b"pong seen"] and len(pongs) == 1
        connection.close()
        await connection.closed

    _on(pinger, test)


def test_the_servers_close_code_is_kept_and_the_connection_ends() -> None:
    async def closer(websocket: ServerConnection) -> None:
        await websocket.close(4002, "slow consumer")

    async def test(url: str) -> None:
        connection = await wsclient.connect(url, lambda _: None)
        await connection.closed
        assert connection.close_code == 4002
        connection.send(b"too late")  # a no-op on a closed connection, not an error

    _on(closer, test)


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "answered"),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: bm90IHRoZSByaWdodCBrZXk=\r\n\r\n",
            "Sec-WebSocket-Accept",
        ),
    ],
)
def test_a_server_that_does_not_switch_properly_is_refused(response: bytes, reason: str) -> None:
    async def main() -> None:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(response)
            await writer.drain()
            await reader.read()  # until the client hangs up
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server, asyncio.timeout(TIMEOUT_S):
            with pytest.raises(wsclient.HandshakeError, match=reason):
                await wsclient.connect(f"ws://127.0.0.1:{port}/", lambda _: None)

    asyncio.run(main())


def test_only_ws_urls_are_accepted() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="ws://"):
            await wsclient.connect("http://127.0.0.1:1/", lambda _: None)

    asyncio.run(main())


class _Transport:
    """Records what the client writes; stands in for a socket in the byte-level tests."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


def _server_frame(opcode: int, payload: bytes) -> bytes:
    """An unmasked frame as a server sends it."""
    size = len(payload)
    if size <= 125:
        return bytes((0x80 | opcode, size)) + payload
    if size <= 0xFFFF:
        return bytes((0x80 | opcode, 126)) + size.to_bytes(2, "big") + payload
    return bytes((0x80 | opcode, 127)) + size.to_bytes(8, "big") + payload


def _opened() -> tuple[wsclient.LeanConnection, _Transport, list[bytes]]:
    """A connection whose handshake has completed over a recording transport."""
    received: list[bytes] = []
    connection = wsclient.LeanConnection("h:1", "/", received.append)
    transport = _Transport()
    connection.connection_made(transport)  # type: ignore[arg-type]
    accept = base64.b64encode(hashlib.sha1(connection.key + wsclient.ACCEPT_GUID).digest())
    connection.data_received(
        b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    assert connection.opened.done() and connection.opened.exception() is None
    return connection, transport, received


def test_frames_split_at_every_byte_are_reassembled() -> None:
    async def main() -> None:
        connection, _, received = _opened()
        sent = [bytes([97 + i]) * size for i, size in enumerate(SIZES)]
        stream = b"".join(_server_frame(1, payload) for payload in sent)
        for offset in range(len(stream)):  # the worst case: one byte per read
            connection.data_received(stream[offset : offset + 1])
        assert received == sent

    asyncio.run(main())


def test_a_close_is_sent_once_and_nothing_follows_it() -> None:
    async def main() -> None:
        connection, transport, received = _opened()
        connection.close()
        connection.close()
        connection.send(b"after our close")
        writes = len(transport.written)
        # the server echoes our close, then (wrongly) a message: neither gets an answer
        connection.data_received(_server_frame(8, b"\x03\xe8") + _server_frame(1, b"late"))
        assert len(transport.written) == writes == 2  # the handshake and one close frame
        assert transport.written[1][0] == 0x88  # FIN + close
        assert connection.close_code == 1000 and received == []

    asyncio.run(main())
