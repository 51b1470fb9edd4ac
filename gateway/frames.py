"""Writing a session's queued messages to its socket: many websocket frames, one system call.

The websockets library's asyncio server wrote each message with its own `transport.write`,
after an async context and a frame object per message; at tens of thousands of pushes a
second that was a large share of the server's time (profiled under `venue bench e2e`).
A server's frames are unmasked (RFC 6455 §5.3) and ours are never compressed, so a text
frame is a two-to-ten byte header and the payload: the server frames each message once
(`text_frame`; a public message once for all its subscribers), and
`gateway.transport.Connection.send_frames` hands a session's queued frames to the socket at
once (uvloop writes them with one writev). Control frames (ping, pong, close) stay with the
protocol; frames are whole, so the two never interleave inside one. A packed session's
messages of a write go out as one frame holding a JSON array of them: `array_frame` for one
message and for a publication written at once to its idle followers (one frame for all of
them); `array_frame_parts` (the header, the joined body, the bracket: the body not copied
again) for a queued outbox of several messages and each frame of a burst.
"""

import struct

OPCODE_TEXT_FIN = 0x81  # FIN bit + opcode 1 (text): one unfragmented text message
LENGTH_7_MAX = 125
LENGTH_16_MAX = 0xFFFF
LENGTH_16, LENGTH_64 = 126, 127  # the 7-bit length values announcing a longer length field
OPEN_BRACKET = ord("[")
# an array frame's header and its "[": looked up or packed by a pre-built Struct, not built
# from a tuple or a format string per frame (about a third of `array_frame`'s time)
_ARRAY_HEADS_7 = [bytes((OPCODE_TEXT_FIN, size, OPEN_BRACKET)) for size in range(LENGTH_7_MAX + 1)]
_pack_array_head_16 = struct.Struct("!BBHB").pack
_pack_array_head_64 = struct.Struct("!BBQB").pack
# a text frame's header, likewise: every push and answer is framed
_TEXT_HEADS_7 = [bytes((OPCODE_TEXT_FIN, size)) for size in range(LENGTH_7_MAX + 1)]
_pack_text_head_16 = struct.Struct("!BBH").pack
_pack_text_head_64 = struct.Struct("!BBQ").pack


def array_frame(body: bytes) -> bytes:
    """One text frame carrying the JSON array `[` + `body` + `]` (`body`: messages joined
    by commas), built with one copy of the body."""
    return b"".join(array_frame_parts(body))


def array_frame_parts(body: bytes) -> tuple[bytes, bytes, bytes]:
    """`array_frame` in its three parts (the header with `[`, `body`, `]`), for a write that
    takes several buffers (uvloop's `writelines`: one writev): the body is not copied. A
    packed session's write of a turn's pushes is most of a megabyte at a taker's rate."""
    size = len(body) + 2
    if size <= LENGTH_7_MAX:
        head = _ARRAY_HEADS_7[size]
    elif size <= LENGTH_16_MAX:
        head = _pack_array_head_16(OPCODE_TEXT_FIN, LENGTH_16, size, OPEN_BRACKET)
    else:
        head = _pack_array_head_64(OPCODE_TEXT_FIN, LENGTH_64, size, OPEN_BRACKET)
    return head, body, _CLOSE_BRACKET


_CLOSE_BRACKET = b"]"


def text_frame(payload: bytes) -> bytes:
    """One unmasked, unfragmented text frame carrying `payload` (UTF-8 JSON)."""
    size = len(payload)
    if size <= LENGTH_7_MAX:
        return _TEXT_HEADS_7[size] + payload
    if size <= LENGTH_16_MAX:
        return _pack_text_head_16(OPCODE_TEXT_FIN, LENGTH_16, size) + payload
    return _pack_text_head_64(OPCODE_TEXT_FIN, LENGTH_64, size) + payload
