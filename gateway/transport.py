"""The websocket layer: the `websockets` sans-I/O protocol driven from a plain asyncio.Protocol.

Owns the venue's TCP connections: the first request line says which layer reads them (a GET
of a websocket route as HTTP/1.1 or 1.0: the handshake, 400 if the library cannot read it;
anything else, another HTTP version included: plain HTTP/1.1 in `gateway.http`, whose
requests go to `Handler.on_request` if the handler has it, else to `on_http`, 404 by default),
the frame rules and limits of the library (a message over `max_size` closes 1009, protocol
errors 1002) plus UTF-8 of text messages (1007), pongs, keepalive pings (no answer within
`ping_timeout_s`: 1011), the closing handshake, flow control (`paused`, `drain`), the
peer's address and, at accept, the caps on open connections per IP and in total
(`limits.ConnectionCounts`: one past them is answered 503 at its first request, then
closed), and at the first request, the cap on public ones (a `public_routes` handshake here;
the handler's plain HTTP through `hold_public`), which keeps a share for trading sessions;
a connection not classified yet (nor logged on: the handler's `hold_trading`) waits in that
share only within its IP's allowance (`ConnectionCounts.admit_pending`).
Each whole message goes to `Handler.on_frame` inside `data_received`: no
task, queue or future per message, where the library's asyncio server spent most of its
per-frame time (`venue bench ws-layer`); the usual frame (whole, masked text) is read by
`_fast_frames` without the library's parser, every other one by the library as before.
What messages mean is the handler's.
Data frames are pre-built by the caller (`gateway.frames`) and written by `send_frames`
(or `Sessions.publish`, which inlines it per subscriber) only while open; control frames
come from the protocol; frames are whole, never interleaved.
A route's query may hold the connection's options (`?pack=1`: `packed`); anything else in it
is refused at the handshake with 400 (`handshake_options`).
"""

import asyncio
import struct
from collections.abc import Iterable
from typing import Any, Protocol, cast

from websockets.exceptions import InvalidMessage
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.streams import StreamReader

try:  # the library's own C helper; its pure-Python fallback where it is not built
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - the wheels ship it
    from websockets.frames import apply_mask  # type: ignore[attr-defined]

from gateway import http
from gateway.limits import (
    CONNECTION_REFUSED_RETRY_AFTER_S,
    CONNECTION_REFUSED_TIMEOUT_S,
    ConnectionCounts,
    address_key,
)
from gateway.wire import shortened

HANDSHAKE_TIMEOUT_S = 10  # a client that has not finished its opening handshake by then is cut
PING_INTERVAL_S = 20  # PROTOCOL (§4.2): the server pings every 20 s ...
PING_TIMEOUT_S = 20  # ... and closes with 1011 a peer that has not answered within 20 s
CLOSE_TIMEOUT_S = 2  # a peer that does not finish the closing handshake by then is cut off
GOING_AWAY = 1001  # the server is stopping
INTERNAL_ERROR = 1011
NOT_FOUND_TEXT = "use /ws/trade or /ws/public\n"
NOT_FOUND_TYPE = "text/plain; charset=utf-8"  # the 404's, as the connection handler's too
WEBSOCKET_HTTP_VERSIONS = (b"HTTP/1.1", b"HTTP/1.0")  # what the library's handshake reads
UNREADABLE_HANDSHAKE = "the request cannot be read: {why}\n"
PACK_OPTION = "pack"  # `?pack=1`: the session's messages of a loop turn in one frame (packed)
PACK_VALUES = {"0": False, "1": True}
# The fast path's frame: FIN set, no RSV bits (no extension is negotiated), opcode TEXT.
_TEXT_WHOLE = 0x81
_MASKED = 0x80
_MASKED_LENGTH_16 = _MASKED | 126  # a masked frame's second byte when a 16-bit length follows
_UNPACK_16 = struct.Struct("!H").unpack_from
_UNPACK_64 = struct.Struct("!Q").unpack_from
# A connection refused for too many open: when to try again (RFC 9110 10.2.3).
_RETRY_LATER = [("Retry-After", str(CONNECTION_REFUSED_RETRY_AFTER_S))]
_AT_EOF = StreamReader.at_eof.__code__  # where the library's parser waits between frames


class Handler(Protocol):
    """What the layer calls; every callback runs on the event loop and must not block."""

    def on_open(self, connection: "Connection") -> None:
        """The websocket is open. The handler may set `connection.deliver` here: what each
        message goes to from then on (`on_frame` until it does)."""

    def on_frame(self, connection: "Connection", message: str | bytes) -> None:
        """One whole message: `str` from a text frame (valid UTF-8), `bytes` from binary."""

    def on_close(self, connection: "Connection") -> None: ...

    def on_http(self, connection: "Connection", request: Request) -> Response | None:
        """A GET for a path that is not a websocket route; None: 404. A handler may also
        have `on_request(connection, exchange) -> bool` (any method, with its body; answered
        through `exchange.respond`, now or later; False hands it to `on_http`) and
        `on_http_closed(connection)` (a plain HTTP connection is gone): `gateway.http`; and
        `on_refused(connection, exchange, refusal, headers) -> bool` (a request refused for
        the caps, `refusal` saying which, to be answered 503 with `headers`: True if the
        handler answered it in its own words, False for the transport's plain text)."""


class Connection(asyncio.Protocol):
    """One TCP connection: first an HTTP request, then (if upgraded) a websocket.

    Just past 400 lines: the protocol callbacks, the fast frame reader, the closing handshake
    and its timers all work on the one connection's state (the module docstring says why
    the websocket library's protocol is driven from here)."""

    def __init__(self, listener: "Listener") -> None:
        self.listener = listener
        self.handler = listener.handler
        self.protocol = ServerProtocol(max_size=listener.max_size)
        self.transport: asyncio.Transport | None = None
        self.request: Request | None = None
        self.path = ""  # the request's target, query included
        self.route = ""  # its path: the websocket route
        self.packed = False  # `?pack=1`: a loop turn's messages go out as one JSON array
        self.peer: Any = None  # (host, port) as the socket says
        # the client's IP as a trusted proxy named it (`X-Forwarded-For`), set by the handler
        # when the websocket opens, for the logs; None: the peer is the client
        self.client_ip: str | None = None
        # Why the connection is refused (too many open: `ConnectionCounts`), answered 503 to
        # its first request; None once admitted, and then its IP, counted until it closes.
        self.refusal: str | None = None
        self.counted_ip: str | None = None
        self.refused_held = False  # refused, and counted among those held to be answered
        self.public_held = False  # admitted, and counted among the public connections too
        self.trading = False  # a trading session's (signed REST, logged on): never public
        # Not classified yet (nor logged on) and waiting in the reserve: its IP, counted by
        # `ConnectionCounts.admit_pending` until it is classified or closes; else None.
        self.pending_ip: str | None = None
        self.context: Any = None  # the handler's own state for this connection
        self.paused = False
        self.opened = False  # upgraded: the handler saw `on_open`
        # The protocol's state is OPEN, kept by `_write_protocol` (every library call that can
        # change the state is followed by it) and `connection_lost`: `send_frames` and the
        # read path's fast frames read this plain attribute, not the library's `state`
        # property (a Python call per write and per request).
        self.is_open = False
        self._fragments: list[bytes] = []
        self._fragment_is_text = False
        self._drained: asyncio.Future[None] | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._timer: asyncio.TimerHandle | None = None  # handshake, keepalive or close deadline
        self._ping_sent = False
        self._close_deadline_set = False  # armed once: a chattering peer cannot push it back
        # `_fast_frames` reads the frames: open, and the library between frames (`_idle`).
        self._fast = False
        self._partial = bytearray()  # the fast path's incomplete last frame, until the rest
        self._partial_need = 0  # arrives: its whole length, once its header is in (else 0)
        # Until the request line is in: a `_Sniffer`. Then None for a websocket (the hot
        # path tests only this), or the HTTP connection.
        self.http: http.HttpConnection | _Sniffer | None = _Sniffer(self)

    # ----------------------------------------------------------------- what the handler uses

    def deliver(self, message: str | bytes) -> None:
        """Where each whole message goes: `handler.on_frame` with this connection, unless the
        handler's `on_open` sets the connection's own `deliver` (say a `partial` of what its
        `on_frame` would call: a Python call less per request)."""
        self.handler.on_frame(self, message)

    @property
    def closing(self) -> bool:
        """Its close has begun (the listener's or the handler's)."""
        return self._close_deadline_set

    @property
    def close_code(self) -> int | None:
        return self.protocol.close_code

    def send_frames(self, frames: Iterable[bytes]) -> bool:
        """Write pre-built frames (or a frame in parts: `frames.array_frame_parts`) in one
        call (uvloop: one writev); the transport buffers what the socket does not take, and
        the caller watches `paused`. False, writing nothing, once the connection is not open:
        its close is under way."""
        transport = self.transport
        if not self.is_open or transport is None or transport.is_closing():
            return False
        transport.writelines(frames)
        return True

    async def drain(self) -> None:
        """Wait until the transport takes writes again; ConnectionError if it is gone."""
        if self.closed.done():
            raise ConnectionError("the connection is closed")
        if not self.paused:
            return
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._drained)

    def close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake; aborted if the peer has not closed in CLOSE_TIMEOUT_S.
        Plain HTTP: closed once the answer in flight is out."""
        if self.http is not None:
            self.http.close()
            return
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(code, reason)
            self._write_protocol()
        self._arm_close_deadline()

    def _arm_close_deadline(self) -> None:
        if not self.closed.done() and not self._close_deadline_set:
            self._close_deadline_set = True
            self._set_timer(CLOSE_TIMEOUT_S, self.abort)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def wait_closed(self) -> None:
        await asyncio.shield(self.closed)

    def hold_public(self) -> str | None:
        """Count this connection among the public ones (`ConnectionCounts.admit_public`:
        those that may not use the share of the cap kept for trading sessions), once: None,
        or why it may not be one, which the caller answers (`refuse`). A trading session's
        connection, or one counted already, is let through; so is a closed one, which counts
        nothing any more (an answer decided after a close, a cluster's nonce claim, say)."""
        if self.public_held or self.trading or self.closed.done():
            return None
        refusal = self.listener.counts.admit_public()
        self.public_held = refusal is None
        if self.public_held:
            self._release_pending()
        return refusal

    def hold_trading(self) -> None:
        """This connection is a trading session's (a validly signed REST request, a logon):
        it needs no public place from now on, and gives back the one it held, if any, or its
        place among its IP's waiting in the reserve."""
        self.trading = True
        self._release_pending()
        if self.public_held:
            self.public_held = False
            self.listener.counts.release_public()

    def _admit(self, ip: str) -> str | None:
        """Count a new connection from `ip` (`ConnectionCounts`): None, or why it is refused.
        Not a trading session's yet, it waits in the reserve within its IP's allowance
        (`admit_pending`), else in a public place if one is free, else it is refused: so
        connections that never log on (or stall their first request) cannot fill the reserve."""
        counts = self.listener.counts
        refusal = counts.admit(ip)
        if refusal is not None:
            return refusal
        refusal = counts.admit_pending(ip)
        if refusal is None:
            self.pending_ip = ip
        elif counts.admit_public() is None:
            self.public_held = True
        else:
            counts.release(ip)
            return refusal
        self.counted_ip = ip
        return None

    def _release_pending(self) -> None:
        if self.pending_ip is not None:
            self.listener.counts.release_pending(self.pending_ip)
            self.pending_ip = None

    def refuse(self, exchange: http.Exchange, refusal: str) -> None:
        """Answer a plain HTTP request refused for the caps (`refusal` says which) 503 with
        `Retry-After`, in the handler's words if it has its own (`on_refused`), else as
        plain text; then close the connection."""
        assert isinstance(self.http, http.HttpConnection), "served by plain HTTP"
        self.http.closing = True
        on_refused = getattr(self.handler, "on_refused", None)
        if on_refused is None or not on_refused(self, exchange, refusal, _RETRY_LATER):
            exchange.respond(503, f"{refusal}\n".encode(), "text/plain", _RETRY_LATER)

    # ----------------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.peer = transport.get_extra_info("peername")
        self.listener.connections.add(self)
        # (host, port, ...); None: a unix socket. Counted by its key: an IPv6 host by its /64
        ip = address_key(str(self.peer[0])) if self.peer else ""
        self.refusal = self._admit(ip)
        if self.refusal is None:
            self._set_timer(HANDSHAKE_TIMEOUT_S, self.abort)
        elif self.listener.counts.hold_refused():  # briefly: for the request it answers
            self.refused_held = True
            self._set_timer(CONNECTION_REFUSED_TIMEOUT_S, self.abort)
        else:  # too many refused at once already: no answer
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.http is None:  # a websocket: the hot path
            if self._fast and self.is_open:  # a close may have begun
                # The usual read, one whole frame, is served here: a call less than through
                # `_fast_frames`, which reads any other.
                if (
                    not self._partial
                    and len(data) >= 6
                    and data[0] == _TEXT_WHOLE
                    and self._one_frame(data)
                ):
                    return
                data = self._fast_frames(data)
                if not data:
                    return
            elif self._partial:  # a close began between reads: the library reads on from
                data = self._take_partial() + data  # the start of the frame the fast path held
            self.protocol.receive_data(data)
            self._events()
            self._fast = self._idle()
        else:
            self.http.receive(data)

    def _fast_frames(self, data: bytes) -> bytes:
        """Whole, masked, unfragmented text frames, read here and not by the library; what
        is left (from the first other frame on) goes to the library, as all of it did before.

        Saves the library's per-frame generators, buffer copies, `Frame` and event list (about
        half of the layer's CPU per frame). Only frames the library would pass unchanged are
        taken: FIN and TEXT with no RSV bits, masked, within `max_size`, valid UTF-8, while
        the connection is open and no fragmented message is under way (`_idle`); a control
        frame, a fragment, an oversize or unmasked frame, bad UTF-8 or anything after a close
        is the library's, so its limits and close codes (1002, 1007, 1009) are unchanged. The
        incomplete end of a fast frame waits in `_partial` (at most `max_size` + 14 bytes).
        """
        if self._partial:
            self._partial += data  # appended, not copied whole per read: a frame sent in
            if len(self._partial) < self._partial_need:  # many small segments stays linear
                return b""
            data = self._take_partial()
        size = len(data)
        position = 0
        size_max = self.listener.max_size
        deliver = self.deliver
        need = 0  # the incomplete frame's whole length, once its header is in
        while size - position >= 2:
            head2 = data[position + 1]
            if data[position] != _TEXT_WHOLE or not head2 & _MASKED:
                return data[position:]
            length = head2 & 0x7F
            start = position + 6  # the 2-byte head and the 4-byte mask
            if length == 126:
                start += 2
                if start > size:
                    break
                (length,) = _UNPACK_16(data, position + 2)
            elif length == 127:
                start += 8
                if start > size:
                    break
                (length,) = _UNPACK_64(data, position + 2)
            if length > size_max:
                return data[position:]  # the library closes it: 1009
            end = start + length
            if end > size:
                need = end - position
                break
            try:
                text = apply_mask(data[start:end], data[start - 4 : start]).decode()
            except UnicodeDecodeError:
                return data[position:]  # the library's frame, `_message`'s 1007
            position = end
            deliver(text)
            if not self.is_open:  # closed by the handler: what follows
                self._fast = False  # is the library's, which discards it
                return data[position:]
        if position < size:
            self._partial[:] = data[position:]
            self._partial_need = need
        return b""

    def _one_frame(self, data: bytes) -> bool:
        """Serve `data` (6 bytes or more, the first a whole text frame's) if it is exactly one
        fast frame (masked, within `max_size`, valid UTF-8: as the loop of `_fast_frames`
        reads it) with a 7- or 16-bit length; False, having read nothing, for anything else
        (the loop decides). Saves the loop's bookkeeping for the usual read."""
        head2 = data[1]
        if head2 == _MASKED_LENGTH_16:
            (length,) = _UNPACK_16(data, 2)
            start = 8
        elif _MASKED <= head2 < _MASKED_LENGTH_16:
            length = head2 & 0x7F
            start = 6
        else:
            return False
        if start + length != len(data) or length > self.listener.max_size:
            return False
        try:
            text = apply_mask(data[start:], data[start - 4 : start]).decode()
        except UnicodeDecodeError:
            return False  # the loop hands it to the library: 1007
        self.deliver(text)
        if not self.is_open:  # closed by the handler: nothing follows
            self._fast = False
        return True

    def _take_partial(self) -> bytes:
        data = bytes(self._partial)
        self._partial.clear()
        self._partial_need = 0
        return data

    def _idle(self) -> bool:
        """The library is between frames of an open connection with no fragmented message
        under way (its parser waits in `at_eof`, its buffer empty): the next frame may be
        read by `_fast_frames`. False whenever that cannot be told."""
        protocol = self.protocol
        if protocol.state is not State.OPEN or protocol.current_size is not None:
            return False
        if protocol.reader.buffer or self._partial:
            return False
        waiting: Any = protocol.parser
        while waiting.gi_yieldfrom is not None:
            waiting = waiting.gi_yieldfrom
        return bool(waiting.gi_code is _AT_EOF)

    def choose_layer(self, first: bytes, line_end: int) -> None:
        """Hand the connection to the websocket layer (a GET of one of its routes) or to
        plain HTTP (anything else), once the request line is in (`_Sniffer`)."""
        method, _, rest = first[: max(line_end, 0)].rstrip(b"\r").partition(b" ")
        raw_target, _, version = rest.partition(b" ")
        target = raw_target.decode("ascii", "replace")
        # another version (`HTTP/1.2`), which the library would drop unanswered, is plain
        # HTTP's to refuse: 505, as for any other path
        upgrade = method == b"GET" and version in WEBSOCKET_HTTP_VERSIONS
        if upgrade and target.partition("?")[0] in self.listener.routes:
            self.http = None
            self.data_received(first)
            return
        self.http = http.HttpConnection(self, self._serve_http)
        self.http.start()
        self.http.receive(first)

    def _serve_http(self, exchange: http.Exchange) -> None:
        if self.refusal is not None:  # too many connections: answered, then closed
            self.refuse(exchange, self.refusal)
            return
        on_request = getattr(self.handler, "on_request", None)
        if on_request is not None and on_request(self, exchange):
            return
        if exchange.method not in ("GET", "HEAD"):
            exchange.respond(405, b"method not allowed\n", "text/plain", [("allow", "GET")])
            return
        response = self.handler.on_http(self, http.websocket_request(exchange))
        if response is None:
            exchange.respond(404, NOT_FOUND_TEXT.encode(), NOT_FOUND_TYPE)
        else:
            http.answer_with(exchange, response)

    def eof_received(self) -> bool | None:
        if self.http is not None:  # HTTP: kept open for writing while an answer is owed
            return self.http.eof()
        self._fast = False
        if self._partial:  # the library sees the incomplete frame, as it would have
            self.protocol.receive_data(self._take_partial())
        self.protocol.receive_eof()
        self._events()
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.connections.discard(self)
        if self.counted_ip is not None:
            self.listener.counts.release(self.counted_ip)
            self.counted_ip = None
        elif self.refused_held:
            self.listener.counts.release_refused()
            self.refused_held = False
        if self.public_held:
            self.listener.counts.release_public()
            self.public_held = False
        self._release_pending()
        if self._timer is not None:
            self._timer.cancel()
        if self.http is not None:
            self.http.lost()
            on_http_closed = getattr(self.handler, "on_http_closed", None)
            if on_http_closed is not None and isinstance(self.http, http.HttpConnection):
                on_http_closed(self)
        if self.protocol.state is not State.CLOSED:
            self.protocol.receive_eof()  # the library's close code: 1006, abnormal closure
        self.is_open = False
        self.paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(ConnectionError("the connection is closed"))
            self._drained.exception()  # retrieved: nobody may be waiting
        self.closed.set_result(None)
        if self.opened:
            self.handler.on_close(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self._drained is not None:
            if not self._drained.done():
                self._drained.set_result(None)
            self._drained = None
        if isinstance(self.http, http.HttpConnection):  # plain HTTP reads on: `gateway.http`
            self.http.writable()

    # ----------------------------------------------------------------- events

    def _events(self) -> None:
        protocol = self.protocol
        for event in protocol.events_received():
            if type(event) is Frame:
                # the usual frame, a whole text message: straight to the handler
                if event.opcode is Opcode.TEXT and event.fin:
                    self._message(bytes(event.data), True)
                else:
                    self._frame(event)
            elif isinstance(event, Request):
                self._handshake(event)
        # A data frame leaves the protocol nothing to send while it is open (no pong, no
        # close): `_write_protocol`'s two library calls are skipped on the hot path.
        if protocol.writes or protocol.state is not State.OPEN:
            if self.request is None and protocol.handshake_exc is not None:
                self._refuse_unreadable_handshake(protocol.handshake_exc)
            self._write_protocol()

    def _refuse_unreadable_handshake(self, failure: Exception) -> None:
        """Answer 400 to an upgrade request the library could not read, which it closes
        unanswered (it answers only a line or headers too long, 414 and 431, itself). A
        request cut short by the peer's close gets nothing: nobody reads an answer."""
        transport = self.transport
        why = failure.__cause__
        if not isinstance(failure, InvalidMessage) or transport is None or transport.is_closing():
            return
        if why is None or isinstance(why, EOFError):
            return
        # escaped: the library's words quote the request, which may hold control characters
        quoted = shortened(str(why)).encode("unicode_escape").decode("ascii")
        transport.write(
            self.protocol.reject(400, UNREADABLE_HANDSHAKE.format(why=quoted)).serialize()
        )

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                self._message(bytes(frame.data), opcode is Opcode.TEXT)
            else:
                self._fragments = [bytes(frame.data)]
                self._fragment_is_text = opcode is Opcode.TEXT
        elif opcode is Opcode.CONT:  # the library checks the order and the total size
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                data, self._fragments = b"".join(self._fragments), []
                self._message(data, self._fragment_is_text)
        elif opcode is Opcode.PONG:
            self._ping_sent = False

    def _message(self, data: bytes, is_text: bool) -> None:
        if self.protocol.state is not State.OPEN:
            return  # after a close: the library discards what follows too
        if is_text:
            try:
                text = data.decode()
            except UnicodeDecodeError as invalid:
                self.protocol.fail(1007, f"{invalid.reason} at position {invalid.start}")
                return
            self.deliver(text)
        else:
            self.deliver(data)

    def _handshake(self, request: Request) -> None:
        self.request = request
        self.path = request.path
        self.route, _, query = request.path.partition("?")
        if self.listener.closing or self._close_deadline_set:  # stopping: no new sessions
            response = self.protocol.reject(503, "the venue is stopping\n")
        elif self.refusal is not None:  # too many connections
            response = self.protocol.reject(503, f"{self.refusal}\n")
            response.headers.update(_RETRY_LATER)
        elif self.route in self.listener.routes:
            try:
                self.packed = handshake_options(query)
            except ValueError as bad:
                response = self.protocol.reject(400, f"{bad}\n")
            else:
                response = self._accept_or_refuse(request)
        else:
            response = self.handler.on_http(self, request) or self.protocol.reject(
                404, NOT_FOUND_TEXT
            )
        self.protocol.send_response(response)
        self._write_protocol()  # the 101 leaves before anything `on_open` sends
        if self.protocol.state is State.OPEN:
            self.opened = True
            self._set_timer(self.listener.ping_interval_s, self._keepalive)
            self.handler.on_open(self)

    def _accept_or_refuse(self, request: Request) -> Response:
        """The handshake's answer: 101, or 503 with `Retry-After` for a public route's when
        the public connections are at their cap (the rest is kept for trading sessions)."""
        refusal = self.hold_public() if self.route in self.listener.public_routes else None
        if refusal is None:
            return self.protocol.accept(request)
        response = self.protocol.reject(503, f"{refusal}\n")
        response.headers.update(_RETRY_LATER)
        return response

    def _write_protocol(self) -> None:
        """Write what the protocol has to send; its empty chunk means: close TCP."""
        transport = self.transport
        assert transport is not None, "written only after connection_made"
        self.is_open = self.protocol.state is State.OPEN
        for data in self.protocol.data_to_send():
            if data:
                transport.write(data)
            else:
                transport.close()  # a server closes the TCP connection first (RFC 6455 §7.1.1)
        if self.protocol.close_expected():
            self._arm_close_deadline()

    def _keepalive(self) -> None:
        if self.protocol.state is not State.OPEN:
            return
        if self._ping_sent:  # no pong to the last ping within PING_TIMEOUT_S
            self.protocol.fail(INTERNAL_ERROR, "keepalive ping timeout")
            self._write_protocol()
            return
        self._ping_sent = True
        self.protocol.send_ping(b"")
        self._write_protocol()
        self._set_timer(self.listener.ping_timeout_s, self._keepalive)

    def _set_timer(self, delay_s: float, callback: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(delay_s, callback)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def handshake_options(query: str) -> bool:
    """The options of a websocket route's query: whether the session is packed. ValueError,
    saying what is wrong, for an unknown option, a repeated one or a value other than 0/1."""
    packed: bool | None = None
    for option in query.split("&") if query else ():
        name, equals, value = option.partition("=")
        if name != PACK_OPTION or not equals:
            raise ValueError(f"unknown query option {option[:40]!r}: the only one is pack=0|1")
        if packed is not None:
            raise ValueError("pack is given twice")
        if value not in PACK_VALUES:
            raise ValueError(f"pack must be 0 or 1, not {value[:40]!r}")
        packed = PACK_VALUES[value]
    return bool(packed)


class _Sniffer:
    """A connection's first bytes, until its request line says which layer reads it."""

    in_flight = None

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.first = bytearray()

    def receive(self, data: bytes) -> None:
        first = self.first
        first += data
        # searched from the new bytes on, so a request line trickled byte by byte is searched
        # once, not once per byte; its end is the LF, after a CR or not (RFC 9112 2.2)
        line_end = first.find(b"\n", len(first) - len(data))
        if line_end >= 0 or len(first) > http.REQUEST_LINE_BYTES_MAX:
            self.connection.choose_layer(bytes(first), line_end)

    def eof(self) -> bool | None:
        return None  # closed before a whole request line: nothing to answer

    def close(self) -> None:
        # a request arriving before the deadline is still answered: 503
        self.connection._arm_close_deadline()

    def lost(self) -> None:
        pass


class Listener:
    """The listening socket and its open connections."""

    def __init__(
        self,
        handler: Handler,
        routes: Iterable[str],
        max_size: int,
        ping_interval_s: float = PING_INTERVAL_S,
        ping_timeout_s: float = PING_TIMEOUT_S,
        counts: ConnectionCounts | None = None,
        public_routes: Iterable[str] = (),
    ) -> None:
        self.handler = handler
        self.routes = frozenset(routes)
        # the routes whose connections are public (`Connection.hold_public` at the handshake)
        self.public_routes = frozenset(public_routes)
        self.max_size = max_size
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s
        self.connections: set[Connection] = set()
        self.counts = counts or ConnectionCounts()  # admitted ones, per IP and in total
        self.server: asyncio.Server | None = None
        self.closing = False  # `close` has begun: handshakes still in flight are refused

    @property
    def sockets(self) -> Any:
        assert self.server is not None, "listen first"
        return self.server.sockets

    async def close(self) -> None:
        """Stop listening, close every connection with 1001, wait until they are gone."""
        self.closing = True
        if self.server is not None:
            self.server.close()
        for connection in list(self.connections):
            connection.close(GOING_AWAY)
        await asyncio.gather(*(connection.wait_closed() for connection in list(self.connections)))
        if self.server is not None:
            await self.server.wait_closed()


async def serve(
    handler: Handler,
    host: str,
    port: int,
    *,
    routes: Iterable[str],
    max_size: int = 2**20,
    ping_interval_s: float = PING_INTERVAL_S,
    ping_timeout_s: float = PING_TIMEOUT_S,
    counts: ConnectionCounts | None = None,
    public_routes: Iterable[str] = (),
) -> Listener:
    """Listen on `host:port`; websocket upgrades on `routes`, other requests to `on_http`.
    `counts` caps the open connections (per IP, in total, the public ones among them:
    `gateway.limits` defaults); a handshake on one of `public_routes` makes a public one."""
    listener = Listener(
        handler, routes, max_size, ping_interval_s, ping_timeout_s, counts, public_routes
    )
    loop = asyncio.get_running_loop()
    listener.server = await loop.create_server(lambda: Connection(listener), host, port)
    return listener
