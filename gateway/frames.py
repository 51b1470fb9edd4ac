"""Writing a session's queued messages to its socket: many websocket frames, one system call.

The websockets library writes each message with its own `transport.write`, after an async
context and a frame object per message; at tens of thousands of pushes a second that was a
large share of the server's time (profiled under `venue bench e2e`). A server's frames are
unmasked (RFC 6455 §5.3) and ours are never compressed (`compression=None`), so a text
frame is a two-to-ten byte header and the payload: the server frames each message once
(`text_frame`; a public message once for all its subscribers) and `write_frames` hands a
session's queued frames to the transport at once (uvloop writes them with one writev); the
caller honours the transport's flow control (`paused`, `drain()`) as the library would.
Control frames (ping, pong, close) stay with the library; frames are whole, so the two
never interleave inside one.
"""

import struct
from collections.abc import Sequence

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

OPCODE_TEXT_FIN = 0x81  # FIN bit + opcode 1 (text): one unfragmented text message
LENGTH_7_MAX = 125
LENGTH_16_MAX = 0xFFFF
LENGTH_16, LENGTH_64 = 126, 127  # the 7-bit length values announcing a longer length field


def text_frame(payload: bytes) -> bytes:
    """One unmasked, unfragmented text frame carrying `payload` (UTF-8 JSON)."""
    size = len(payload)
    if size <= LENGTH_7_MAX:
        return bytes((OPCODE_TEXT_FIN, size)) + payload
    if size <= LENGTH_16_MAX:
        return struct.pack("!BBH", OPCODE_TEXT_FIN, LENGTH_16, size) + payload
    return struct.pack("!BBQ", OPCODE_TEXT_FIN, LENGTH_64, size) + payload


def is_open(websocket: ServerConnection) -> bool:
    return websocket.protocol.state is State.OPEN and not websocket.transport.is_closing()


def write_frames(websocket: ServerConnection, frames: Sequence[bytes]) -> bool:
    """Write `frames` (from `text_frame`) in one go; the transport buffers what the socket
    does not take at once, and its owner watches `websocket.paused` for flow control.

    False (nothing written) if the connection is no longer open: its close is under way.
    """
    if not is_open(websocket):
        return False
    websocket.transport.writelines(frames)
    return True
