"""A lean websocket client for the load generators of `venue bench e2e`.

The benchmark's clients share the machine with the server they measure (two cores here),
so every microsecond a client spends reading is one the server does not get. The
websockets library's asyncio client spends tens of microseconds of Python on each message
it receives (frame objects, an assembler, a queue, a task switch); at tens of thousands of
messages a second the load generators alone filled the second core and starved the
server. This client does only what a load generator needs, in a plain `asyncio.Protocol`:

- the opening handshake (RFC 6455 §4.1), checking `Sec-WebSocket-Accept`;
- text frames out, masked with a fresh random key as a client must (§5.3), using the
  websockets library's C `apply_mask`;
- frames in, unmasked (a server never masks): text messages are handed to `on_message`
  whole (the venue never fragments or compresses), pings are answered with pongs, and a
  close frame is echoed and ends the connection (§5.5.1).

The server side stays on the websockets library; this is a test instrument, not a client SDK
(that is `client.sdk`).
"""

import asyncio
import base64
import hashlib
import os
import struct
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

try:
    from websockets.speedups import apply_mask
except ImportError:  # the C extension is not built everywhere: the library's Python one
    from websockets.frames import apply_mask  # type: ignore[attr-defined]

ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
HANDSHAKE_BYTES_MAX = 16_384
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
FIN = 0x80
MASK = 0x80
LENGTH_7_MAX, LENGTH_16_MAX = 125, 0xFFFF
CLOSE_NORMAL = 1000
MESSAGE_BYTES_MAX = 64 * 2**20  # far above any venue message: a larger length is garbage


class HandshakeError(ConnectionError):
    """The server did not switch protocols the way RFC 6455 says it must."""


class LeanConnection(asyncio.Protocol):
    """One client connection; `on_message(payload)` is called for each text message."""

    def __init__(self, host: str, path: str, on_message: Callable[[bytes], None]) -> None:
        self.host = host
        self.path = path
        self.on_message = on_message
        self.key = base64.b64encode(os.urandom(16))
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.close_sent = False  # after our close frame we send nothing more (§5.5.1)
        self.close_received = False  # after theirs, their frames end
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.close_code: int | None = None  # the code of the server's close frame, if any

    # ----------------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        request = (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {self.key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        self.transport.write(request.encode())

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded and not self._upgrade():
            return
        self._frames()

    def connection_lost(self, exc: Exception | None) -> None:
        failure = exc or ConnectionError("the connection closed")
        if not self.opened.done():
            self.opened.set_exception(failure)
        if not self.closed.done():
            self.closed.set_result(None)

    # ----------------------------------------------------------------- sending

    def send(self, payload: bytes) -> None:
        """Send one text message (a no-op once the connection is closing)."""
        self._send_frame(OP_TEXT, payload)

    def close(self, code: int = CLOSE_NORMAL) -> None:
        """Send a close frame; the server answers and closes the TCP connection."""
        self._send_frame(OP_CLOSE, struct.pack("!H", code))

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing() or self.close_sent:
            return
        self.close_sent = opcode == OP_CLOSE
        size = len(payload)
        if size <= LENGTH_7_MAX:
            header = struct.pack("!BB", FIN | opcode, MASK | size)
        elif size <= LENGTH_16_MAX:
            header = struct.pack("!BBH", FIN | opcode, MASK | 126, size)
        else:
            header = struct.pack("!BBQ", FIN | opcode, MASK | 127, size)
        mask = os.urandom(4)
        self.transport.write(header + mask + apply_mask(payload, mask))

    # ----------------------------------------------------------------- receiving

    def _upgrade(self) -> bool:
        """Read the handshake response once it is whole; True when the protocol switched."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > HANDSHAKE_BYTES_MAX:
                self._fail(HandshakeError("the handshake response is too long"))
            return False
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        del self.buffer[: end + 4]
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        expected = base64.b64encode(hashlib.sha1(self.key + ACCEPT_GUID).digest()).decode()
        if not head[0].startswith("HTTP/1.1 101"):
            self._fail(HandshakeError(f"the server answered {head[0]!r}"))
            return False
        if headers.get("sec-websocket-accept") != expected:
            self._fail(HandshakeError("Sec-WebSocket-Accept does not match the key"))
            return False
        self.upgraded = True
        self.opened.set_result(None)
        return True

    def _frames(self) -> None:
        """Hand over every whole frame in the buffer; keep a partial one for later."""
        buffer = self.buffer
        position, available = 0, len(buffer)
        while available - position >= 2 and not self.close_received:
            first, second = buffer[position], buffer[position + 1]
            length, start = second & 0x7F, position + 2
            if length == 126:
                if available - position < 4:
                    break
                length, start = int.from_bytes(buffer[start : start + 2]), start + 2
            elif length == 127:
                if available - position < 10:
                    break
                length, start = int.from_bytes(buffer[start : start + 8]), start + 8
            if length > MESSAGE_BYTES_MAX:
                self._fail(ConnectionError(f"a frame of {length:,} bytes from the server"))
                return
            end = start + length
            if end > available:
                break
            if second & MASK or not first & FIN:
                self._fail(ConnectionError("a masked or fragmented frame from the server"))
                return
            self._frame(first & 0x0F, bytes(buffer[start:end]))
            position = end
        del buffer[:position]

    def _frame(self, opcode: int, payload: bytes) -> None:
        if opcode in (OP_TEXT, OP_BINARY):
            self.on_message(payload)
        elif opcode == OP_PING:
            self._send_frame(OP_PONG, payload)
        elif opcode == OP_CLOSE:
            self.close_received = True
            self.close_code = int.from_bytes(payload[:2]) if len(payload) >= 2 else None
            self._send_frame(OP_CLOSE, payload[:2])  # echoed, unless we closed first
            if self.transport is not None:
                self.transport.close()

    def _fail(self, failure: Exception) -> None:
        if not self.opened.done():
            self.opened.set_exception(failure)
        self.abort()


async def connect(url: str, on_message: Callable[[bytes], None]) -> LeanConnection:
    """Open a `ws://` connection and complete the handshake."""
    parts = urlsplit(url)
    if parts.scheme != "ws" or parts.hostname is None:
        raise ValueError(f"not a ws:// URL: {url}")
    port = parts.port or 80
    loop = asyncio.get_running_loop()
    host = f"{parts.hostname}:{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")  # `?pack=1`
    _, connection = await loop.create_connection(
        lambda: LeanConnection(host, target, on_message), parts.hostname, port
    )
    await connection.opened
    return connection
