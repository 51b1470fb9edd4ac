"""The fast path of `gateway.transport` (`Connection._fast_frames`): whatever the bytes and
however they are split, the same messages, writes and close code as the library's path.

Each case is a client's byte stream after the handshake, fed to a real `Connection` (a real
`ServerProtocol` inside) whole, in every two-piece split and byte by byte, and compared with
the layer as it was before (`LibraryOnly`: the fast path off) reading one frame per read. (The
library alone drops the messages that share a read with a protocol error, as it reports
them after the error; the fast path serves every frame before the error, however the bytes
were split: as the library alone does when each frame comes in its own read.) A real
loopback server then sees a stream in two writes.
"""

import asyncio
import os
import struct
from typing import Any

from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.uri import parse_uri

from gateway import frames, transport

MAX_SIZE = 1_000
TIMEOUT_S = 5


class Recorder:
    """Keeps every message; answers "close me" by closing, anything else with an echo."""

    def __init__(self) -> None:
        self.messages: list[str | bytes] = []
        self.closed: list[int | None] = []

    def on_open(self, connection: transport.Connection) -> None:
        pass

    def on_frame(self, connection: transport.Connection, message: str | bytes) -> None:
        self.messages.append(message)
        if message == "close me":
            connection.close(4002, "asked to")
            return
        body = message.encode() if isinstance(message, str) else message
        connection.send_frames([frames.text_frame(b"echo:" + body)])

    def on_close(self, connection: transport.Connection) -> None:
        self.closed.append(connection.close_code)

    def on_http(self, connection: transport.Connection, request: Any) -> None:
        return None


class Socket:
    """The asyncio transport a connection writes to, keeping what it wrote."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        self.written.extend(bytes(chunk) for chunk in chunks)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


class LibraryOnly(transport.Connection):
    """The layer before the fast path: every byte through the library's parser."""

    def _idle(self) -> bool:
        return False


def masked(opcode: Opcode, payload: bytes, fin: bool = True) -> bytes:
    return Frame(opcode, payload, fin).serialize(mask=True, extensions=[])


def text(payload: str) -> bytes:
    return masked(Opcode.TEXT, payload.encode())


def long_header(payload: bytes, width: int) -> bytes:
    """A masked text frame whose length is written in 16 (126) or 64 bits (127) bits even
    when it is short: RFC 6455 asks for the shortest form, the library does not check."""
    mask = os.urandom(4)
    marker, packed = (
        (126, struct.pack("!H", len(payload)))
        if width == 16
        else (
            127,
            struct.pack("!Q", len(payload)),
        )
    )
    body = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    return bytes((0x81, 0x80 | marker)) + packed + mask + body


def unmasked(payload: bytes) -> bytes:
    return Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])


GOOD = text('{"id":1}') + text("é" * 80) + long_header(b"short", 16) + long_header(b"x", 64)
CASES = {
    "text frames": GOOD + text("last"),
    "control and fragments between text": (
        text("a")
        + masked(Opcode.PING, b"hi")
        + text("b")
        + masked(Opcode.TEXT, b"frag", fin=False)
        + masked(Opcode.PING, b"")
        + masked(Opcode.CONT, b"ment", fin=False)
        + masked(Opcode.CONT, b"ed")
        + masked(Opcode.BINARY, b"\x00\x01")
        + masked(Opcode.PONG, b"")
        + text("c" * 200)
    ),
    "a text frame inside a fragmented message": (
        masked(Opcode.TEXT, b"frag", fin=False) + text("not a continuation") + text("after")
    ),
    "a close frame, then more": text("a")
    + masked(Opcode.CLOSE, Close(1000, "bye").serialize())
    + text("ignored"),
    "oversize": text("a") + text("b" * (MAX_SIZE + 1)) + text("ignored"),
    "bad UTF-8": text("a") + masked(Opcode.TEXT, b"ok \xff\xfe") + text("ignored"),
    "unmasked": text("a") + unmasked(b"plain") + text("ignored"),
    "reserved bits": text("a") + bytes((0xC1,)) + text("x")[1:] + text("ignored"),
    "the handler closes": text("a")
    + text("close me")
    + text("ignored")
    + masked(Opcode.CLOSE, Close(1000, "").serialize()),
}


# Streams read one frame a read, as a client at the e2e rate sends them: each read is one
# whole frame, which `Connection._one_frame` serves without the fast path's loop.
FRAME_PER_READ = {
    "lengths at the 7- and 16-bit bounds": [
        text(""),
        text("x" * 125),
        text("y" * 126),
        text("é" * 300),
        text("z" * MAX_SIZE),
        long_header(b"short", 16),
        long_header(b"x", 64),
        text("last"),
    ],
    "oversize alone": [text("a"), text("b" * (MAX_SIZE + 1)), text("ignored")],
    "bad UTF-8 alone": [text("a"), masked(Opcode.TEXT, b"ok \xff\xfe"), text("ignored")],
    "unmasked alone": [text("a"), unmasked(b"plain"), text("ignored")],
    "reserved bits alone": [text("a"), bytes((0xC1,)) + text("x")[1:], text("ignored")],
    "the handler closes": [text("close me"), text("ignored")],
    "control frames between": [
        text("a"),
        masked(Opcode.PING, b"hi"),
        text("b"),
        masked(Opcode.TEXT, b"frag", fin=False),
        masked(Opcode.CONT, b"ment"),
        text("c"),
    ],
}


def handshake() -> bytes:
    client = ClientProtocol(parse_uri("ws://127.0.0.1/ws/trade"))
    client.send_request(client.connect())
    return b"".join(client.data_to_send())


def outcome(kind: type[transport.Connection], pieces: list[bytes]) -> dict[str, Any]:
    """What the handler got, what was written after the 101 (one frame a write), the close
    code, and whether
    the fast path was on after the handshake."""

    async def main() -> dict[str, Any]:
        recorder = Recorder()
        listener = transport.Listener(recorder, ("/ws/trade",), MAX_SIZE)
        connection = kind(listener)
        socket = Socket()
        connection.connection_made(socket)  # type: ignore[arg-type]
        connection.data_received(handshake())
        fast_after_handshake = connection._fast
        socket.written.clear()
        for piece in pieces:
            if socket.closed:
                break  # the server closed TCP: nothing more is read
            connection.data_received(piece)
        connection.connection_lost(None)
        return {
            "messages": recorder.messages,
            # echoes and the protocol's frames (pongs, close) each in order; how they
            # interleave follows the reads: the protocol writes at the end of each read
            "echoes": [chunk for chunk in socket.written if chunk[:1] == b"\x81"],
            "control": [chunk for chunk in socket.written if chunk[:1] != b"\x81"],
            "close_code": connection.close_code,
            "closed": recorder.closed,
            "fast": fast_after_handshake,
        }

    return asyncio.run(main())


def splits(stream: bytes) -> list[list[bytes]]:
    """The stream whole, in every two-piece split, and byte by byte."""
    two = [[stream[:cut], stream[cut:]] for cut in range(1, len(stream))]
    return [[stream], *two, [bytes((byte,)) for byte in stream]]


def test_the_fast_path_is_on_once_open_and_off_in_the_library_only_layer() -> None:
    assert outcome(transport.Connection, [GOOD])["fast"] is True
    assert outcome(LibraryOnly, [GOOD])["fast"] is False


def test_every_split_of_every_case_gives_the_library_s_outcome() -> None:
    for name, stream in CASES.items():
        library = outcome(LibraryOnly, [bytes((byte,)) for byte in stream])  # a frame a read
        del library["fast"]
        for pieces in splits(stream):
            fast = outcome(transport.Connection, pieces)
            del fast["fast"]
            assert fast == library, (name, [len(piece) for piece in pieces])


def test_a_frame_a_read_gives_the_library_s_outcome() -> None:
    served: list[bool] = []

    class Counting(transport.Connection):
        def _one_frame(self, data: bytes) -> bool:
            served.append(super()._one_frame(data))
            return served[-1]

    for name, stream in FRAME_PER_READ.items():
        library = outcome(LibraryOnly, stream)
        fast = outcome(Counting, stream)
        del library["fast"], fast["fast"]
        assert fast == library, name
        if name.endswith("alone"):
            assert "ignored" not in fast["messages"] and sent_close(fast) is not None, name
    # the usual reads were served as one frame; a 64-bit length, an oversize frame or bad
    # UTF-8 was left to the loop (and from there to the library)
    assert served.count(True) >= 10 and served.count(False) >= 3


def sent_close(result: dict[str, Any]) -> int | None:
    """The code of the close frame the server sent, if it sent one."""
    for chunk in result["control"]:
        if chunk[0] == 0x88:
            return int.from_bytes(chunk[2:4], "big")
    return None


def test_the_outcomes_are_what_the_protocol_says() -> None:
    """The comparison above is against the right thing: spot checks of the library's path."""
    whole = {name: outcome(transport.Connection, [stream]) for name, stream in CASES.items()}
    assert whole["text frames"]["messages"] == ['{"id":1}', "é" * 80, "short", "x", "last"]
    assert sent_close(whole["text frames"]) is None
    mixed = whole["control and fragments between text"]
    assert mixed["messages"] == ["a", "b", "fragmented", b"\x00\x01", "c" * 200]
    assert frames.text_frame(b"echo:b") in mixed["echoes"]
    assert mixed["control"] == [b"\x8a\x02hi", b"\x8a\x00"]  # the pongs
    assert sent_close(whole["a text frame inside a fragmented message"]) == 1002
    assert sent_close(whole["oversize"]) == 1009
    assert sent_close(whole["bad UTF-8"]) == 1007
    assert sent_close(whole["unmasked"]) == 1002
    assert sent_close(whole["reserved bits"]) == 1002
    assert sent_close(whole["the handler closes"]) == 4002
    for name in ("oversize", "bad UTF-8", "unmasked", "reserved bits", "the handler closes"):
        assert "ignored" not in whole[name]["messages"], name
    assert whole["a close frame, then more"]["messages"] == ["a"]
    assert whole["a close frame, then more"]["close_code"] == 1000


def test_a_loopback_server_reads_a_stream_in_two_writes_as_one() -> None:
    stream = CASES["control and fragments between text"] + text("close me")
    cut = len(stream) // 2 + 3  # inside a frame

    async def main() -> Recorder:
        recorder = Recorder()
        listener = await transport.serve(
            recorder, "127.0.0.1", 0, routes=("/ws/trade",), max_size=MAX_SIZE
        )
        port = listener.sockets[0].getsockname()[1]
        try:
            async with asyncio.timeout(TIMEOUT_S):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(handshake())
                await reader.readuntil(b"\r\n\r\n")
                writer.write(stream[:cut])
                await writer.drain()
                await asyncio.sleep(0.05)  # likely its own read on the server
                writer.write(stream[cut:])
                await reader.readuntil(b"\x88\x0a\x0f\xa2asked to")  # its close: 4002
                writer.write(masked(Opcode.CLOSE, Close(4002, "asked to").serialize()))
                await reader.read()  # until the server closes TCP
                writer.close()
        finally:
            await listener.close()
        return recorder

    recorder = asyncio.run(main())
    assert recorder.messages == ["a", "b", "fragmented", b"\x00\x01", "c" * 200, "close me"]
    assert recorder.closed == [4002]


def _after_handshake(kind: type[transport.Connection], script: Any) -> dict[str, Any]:
    """Run `script(connection, socket)` on an open connection; what it saw."""

    async def main() -> dict[str, Any]:
        recorder = Recorder()
        connection = kind(transport.Listener(recorder, ("/ws/trade",), MAX_SIZE))
        socket = Socket()
        connection.connection_made(socket)  # type: ignore[arg-type]
        connection.data_received(handshake())
        socket.written.clear()
        script(connection, socket)
        seen = {"close_rcvd": connection.protocol.close_rcvd, "partial": len(connection._partial)}
        connection.connection_lost(None)
        return seen | {"close_code": connection.close_code, "messages": recorder.messages}

    return asyncio.run(main())


def test_a_close_begun_between_the_reads_of_a_frame_reads_on_from_its_start() -> None:
    """The server closes (the venue stops, a logon timeout) while the fast path holds the
    start of a frame: the library then reads the frame from its start, so the peer's close
    reply that follows is understood (1001 received, not a garbled frame: 1006)."""
    frame = text("hello world, a text frame")
    reply = masked(Opcode.CLOSE, Close(1001, "").serialize())

    def script(connection: transport.Connection, socket: Socket) -> None:
        connection.data_received(frame[:10])
        connection.close(1001)
        connection.data_received(frame[10:] + reply)

    fast = _after_handshake(transport.Connection, script)
    library = _after_handshake(LibraryOnly, script)
    assert fast == library
    assert fast["close_rcvd"] == Close(1001, "") and fast["partial"] == 0


def test_a_frame_in_many_small_reads_is_buffered_not_reparsed_per_read() -> None:
    """The incomplete frame grows in place; it is parsed again only once it is whole."""
    frame = text("x" * (MAX_SIZE - 10))
    parsed: list[int] = []

    class Counting(transport.Connection):
        def _take_partial(self) -> bytes:
            parsed.append(len(self._partial))
            return super()._take_partial()

    def script(connection: transport.Connection, socket: Socket) -> None:
        for start in range(0, len(frame), 7):
            connection.data_received(frame[start : start + 7])

    seen = _after_handshake(Counting, script)
    assert seen["messages"] == ["x" * (MAX_SIZE - 10)]
    # parsed again once its header was in (the second read), then only when whole
    assert parsed == [14, len(frame)]
