"""The websocket layer on loopback, driven by the websockets library's own client."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State

from gateway import frames, transport

TIMEOUT_S = 5
MAX_SIZE = 1_000


class Echo:
    """Answers each message with `text:<message>` or `binary:<message>`."""

    def __init__(self) -> None:
        self.opened: list[str] = []
        self.closed: list[int | None] = []
        self.http: list[str] = []

    def on_open(self, connection: transport.Connection) -> None:
        self.opened.append(connection.path)

    def on_frame(self, connection: transport.Connection, message: str | bytes) -> None:
        if message == "close me":
            connection.close(4002, "asked to")
            return
        kind = "text" if isinstance(message, str) else "binary"
        body = message.encode() if isinstance(message, str) else message
        connection.send_frames([frames.text_frame(kind.encode() + b":" + body)])

    def on_close(self, connection: transport.Connection) -> None:
        self.closed.append(connection.close_code)

    def on_http(self, connection: transport.Connection, request: Request) -> Response | None:
        self.http.append(request.path)
        return None


def run(scenario: Callable[[str, Echo, transport.Listener], Awaitable[Any]]) -> Echo:
    echo = Echo()

    async def main() -> None:
        listener = await transport.serve(
            echo, "127.0.0.1", 0, routes=("/ws/trade",), max_size=MAX_SIZE
        )
        port = listener.sockets[0].getsockname()[1]
        try:
            async with asyncio.timeout(TIMEOUT_S):
                await scenario(f"ws://127.0.0.1:{port}", echo, listener)
        finally:
            await listener.close()

    asyncio.run(main())
    return echo


async def closed_code(client: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed):
        await client.recv()
    return client.close_code


def test_text_binary_and_fragmented_messages_are_handed_over_whole() -> None:
    async def scenario(url: str, echo: Echo, listener: transport.Listener) -> None:
        async with connect(url + "/ws/trade", compression=None) as client:
            await client.send("héllo")
            assert await client.recv() == "text:héllo"
            await client.send(b"abc")
            assert await client.recv() == "binary:abc"
            await client.send(["frag", "men", "ted"])  # one message in three frames
            assert await client.recv() == "text:fragmented"
            pong = await client.ping()  # answered by the layer, not the handler
            await asyncio.wait_for(pong, TIMEOUT_S)
            await client.send("")
            assert await client.recv() == "text:"

    echo = run(scenario)
    assert echo.opened == ["/ws/trade"]
    assert echo.closed == [1000]


def test_other_paths_are_offered_to_the_http_handler_then_404() -> None:
    async def scenario(url: str, echo: Echo, listener: transport.Listener) -> None:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url + "/elsewhere"):
                pass
        assert refused.value.response.status_code == 404
        assert refused.value.response.body == transport.NOT_FOUND_TEXT.encode()

    echo = run(scenario)
    assert echo.http == ["/elsewhere"] and echo.opened == []


def test_invalid_utf8_in_a_text_frame_closes_1007() -> None:
    async def scenario(url: str, echo: Echo, listener: transport.Listener) -> None:
        async with connect(url + "/ws/trade") as client:
            invalid = Frame(Opcode.TEXT, b"\xff\xfe").serialize(mask=True, extensions=[])
            client.transport.write(invalid)
            assert await closed_code(client) == 1007

    echo = run(scenario)
    assert len(echo.closed) == 1  # the server closed TCP at once: it saw no close frame back


def test_a_message_over_max_size_closes_1009() -> None:
    async def scenario(url: str, echo: Echo, listener: transport.Listener) -> None:
        async with connect(url + "/ws/trade", max_size=None) as client:
            await client.send("x" * (MAX_SIZE - 5))  # "text:" + it fits the answer, not the rule
            assert (await client.recv()).startswith("text:")
            await client.send(["x" * 600, "x" * 600])  # fragments add up past the limit
            assert await closed_code(client) == 1009

    echo = run(scenario)
    assert len(echo.closed) == 1  # the server closed TCP at once: it saw no close frame back


def test_the_handler_closes_with_its_code_and_reason() -> None:
    async def scenario(url: str, echo: Echo, listener: transport.Listener) -> None:
        async with connect(url + "/ws/trade") as client:
            await client.send("close me")
            assert await closed_code(client) == 4002
            assert client.close_reason == "asked to"

    echo = run(scenario)
    assert echo.closed == [4002]


def test_nothing_is_written_once_the_connection_is_closing() -> None:
    written: list[bool] = []

    class Late(Echo):
        def on_frame(self, connection: transport.Connection, message: str | bytes) -> None:
            connection.close(1000)
            written.append(connection.send_frames([frames.text_frame(b"after close")]))

    async def main() -> None:
        listener = await transport.serve(Late(), "127.0.0.1", 0, routes=("/ws/trade",))
        port = listener.sockets[0].getsockname()[1]
        async with asyncio.timeout(TIMEOUT_S), connect(f"ws://127.0.0.1:{port}/ws/trade") as c:
            await c.send("x")
            assert await closed_code(c) == 1000
        await listener.close()

    asyncio.run(main())
    assert written == [False]


def test_a_stopping_listener_closes_its_connections_1001() -> None:
    async def scenario(url: str, echo: Echo, listener: transport.Listener) -> None:
        async with connect(url + "/ws/trade") as client:
            await client.send("hi")
            assert await client.recv() == "text:hi"
            closing = asyncio.create_task(listener.close())
            assert await closed_code(client) == 1001
            await closing

    echo = run(scenario)
    assert echo.closed == [1001]


def test_a_peer_that_does_not_read_pauses_the_connection_and_drain_waits() -> None:
    states: list[bool] = []

    class Flood(Echo):
        def on_frame(self, connection: transport.Connection, message: str | bytes) -> None:
            chunk = frames.text_frame(b"x" * 60_000)
            while not connection.paused:  # the peer reads nothing: the buffer fills
                connection.send_frames([chunk])
            states.append(connection.paused)
            connection.abort()

    async def main() -> None:
        listener = await transport.serve(Flood(), "127.0.0.1", 0, routes=("/ws/trade",))
        port = listener.sockets[0].getsockname()[1]
        async with asyncio.timeout(TIMEOUT_S):
            async with connect(f"ws://127.0.0.1:{port}/ws/trade", max_size=None) as c:
                await c.send("go")
                with pytest.raises(ConnectionClosed):
                    while True:
                        await c.recv()  # reads some, then the abort ends it
        await listener.close()

    asyncio.run(main())
    assert states == [True]


def test_a_peer_that_answers_no_ping_is_closed_1011() -> None:
    sent: list[int | None] = []

    class Watch(Echo):
        def on_close(self, connection: transport.Connection) -> None:
            close = connection.protocol.close_sent
            sent.append(close.code if close is not None else None)

    async def main() -> None:
        listener = await transport.serve(
            Watch(), "127.0.0.1", 0, routes=("/ws/trade",), ping_interval_s=0.05, ping_timeout_s=0.1
        )
        port = listener.sockets[0].getsockname()[1]
        async with asyncio.timeout(TIMEOUT_S):
            client = await connect(f"ws://127.0.0.1:{port}/ws/trade")
            client.transport.pause_reading()  # reads no ping, so answers none
            while not sent:
                await asyncio.sleep(0.05)
            client.transport.abort()  # it would wait for a close frame it cannot read
        await listener.close()

    asyncio.run(main())
    assert sent == [1011]


HANDSHAKE = (
    b"GET /ws/trade HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def raw_connection(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    port = int(url.rsplit(":", 1)[1])
    return await asyncio.open_connection("127.0.0.1", port)


def test_a_peer_that_keeps_sending_while_closing_is_still_cut_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(transport, "CLOSE_TIMEOUT_S", 0.3)

    async def scenario(url: str, echo: Echo, listener: transport.Listener) -> None:
        reader, writer = await raw_connection(url)
        writer.write(HANDSHAKE)
        await reader.readuntil(b"\r\n\r\n")  # upgraded; from now on it never reads
        closing = asyncio.ensure_future(listener.close())
        ping = Frame(Opcode.PING, b"still here").serialize(mask=True, extensions=[])
        for _ in range(40):  # 2 s of pings, each would push a re-armed deadline back
            if closing.done():
                break
            try:
                writer.write(ping)
            except (ConnectionError, RuntimeError):
                break
            await asyncio.sleep(0.05)
        assert closing.done(), "the close deadline was pushed back by the peer's frames"
        writer.close()

    run(scenario)


def test_a_handshake_that_arrives_while_stopping_opens_no_session() -> None:
    async def scenario(url: str, echo: Echo, listener: transport.Listener) -> None:
        reader, writer = await raw_connection(url)
        await asyncio.sleep(0.05)  # connected, handshake not sent yet
        closing = asyncio.ensure_future(listener.close())
        await asyncio.sleep(0)
        writer.write(HANDSHAKE)
        status = await reader.readline()
        assert status.startswith(b"HTTP/1.1 503"), status
        await asyncio.wait_for(closing, TIMEOUT_S)
        assert echo.opened == []
        writer.close()

    run(scenario)


class _Wire:
    """A transport that records writes and never reports closing by itself: only the
    connection's own open flag can stop `send_frames`."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def writelines(self, data: Any) -> None:
        self.written.extend(data)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 1)


HANDSHAKE = (
    b"GET /ws/trade HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@pytest.mark.parametrize(
    "frame",
    [
        Frame(Opcode.CLOSE, b"\x03\xe8"),  # the peer closes (1000)
        Frame(Opcode.TEXT, b"\xff\xfe"),  # invalid UTF-8: the library fails it, 1007
        Frame(Opcode.TEXT, b"close me"),  # the handler closes, 4002
    ],
    ids=["peer-close", "invalid-utf8", "handler-close"],
)
def test_send_frames_stops_when_the_protocol_leaves_open(frame: Frame) -> None:
    """`send_frames` reads a plain flag, not the library's state: every way out of OPEN
    (a frame the library reads, `close`) must clear it, even before the transport closes."""

    async def main() -> None:
        listener = transport.Listener(Echo(), ("/ws/trade",), MAX_SIZE)
        connection = transport.Connection(listener)
        wire = _Wire()
        connection.connection_made(wire)  # type: ignore[arg-type]
        assert not connection.is_open and not connection.send_frames([b"early"])
        connection.data_received(HANDSHAKE)
        assert connection.is_open and connection.send_frames([b"open"])
        connection.data_received(frame.serialize(mask=True, extensions=[]))
        assert connection.protocol.state is not State.OPEN
        assert not connection.is_open
        assert not connection.send_frames([b"after"])
        assert b"after" not in wire.written and b"open" in wire.written
        connection.connection_lost(None)
        assert not connection.is_open

    asyncio.run(main())
