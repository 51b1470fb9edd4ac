"""Plain HTTP/1.1 on the websocket port: `h11` (sans-I/O) driven from `gateway.transport`.

Owns a connection that is not a websocket upgrade: request parsing with bodies, keep-alive
and pipelining (one request at a time: the next is read only once the last is answered, so
answers keep request order), `Expect: 100-continue`, the idle and body timeouts, body and
header limits, HTTP/1.0 and 1.1 only, 400/408/413/431/503/505 answers of its own, and a
close that waits for the answer in flight. What a request means is the handler's:
`on_request(connection, exchange)` answers with `exchange.respond` now or later; a handler
without it gets the websocket layer's seam, `on_http` (GET only, else 405). A handler's
`on_http_error(path, status, why) -> bytes | None` words this module's own 408, 413 and 503
for a path that is its (a JSON body: the REST API's errors); else they are plain text.
Flow control (as uvicorn's h11 protocol): reading pauses while a request is answered with
more bytes pipelined behind it, or when more than `BUFFERED_BYTES_MAX` are unread, and resumes
when h11 needs data; the next pipelined request waits while the transport is paused for
writing (`Connection.paused`), so one client that never reads holds bounded memory.
Invariant: exactly one response per request read; after a protocol error the connection
closes. The websocket path never enters this module (`transport.Connection.data_received`).
"""

import asyncio
import email.utils
import functools
import re
import time
from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import h11
from websockets.datastructures import Headers
from websockets.http11 import Request as WebsocketRequest

from gateway.wire import shortened

if TYPE_CHECKING:
    from gateway.transport import Connection

REQUEST_BODY_BYTES_MAX = 64 * 1024  # the largest request (a full quote.mass) is ~10 KiB
HEADER_BYTES_MAX = 16 * 1024  # h11's default: a request line and headers of that size
KEEPALIVE_IDLE_S = 15  # a keep-alive connection idle this long between requests is closed
BODY_TIMEOUT_S = 15  # a request's body must end this long after its head: 408, then closed
# unread request bytes past this pause reading: one whole request of the largest size
BUFFERED_BYTES_MAX = HEADER_BYTES_MAX + REQUEST_BODY_BYTES_MAX
REQUEST_LINE_BYTES_MAX = 8 * 1024  # the websocket layer's limit for one line of the request
HEAD_TOO_LARGE = f"the request line and headers are limited to {HEADER_BYTES_MAX} bytes"
BODY_TOO_LARGE = f"a request body is limited to {REQUEST_BODY_BYTES_MAX} bytes"
BOTH_FRAMINGS = "a request has a Content-Length or a Transfer-Encoding, not both"
STOPPING = "the venue is stopping"
CHUNKED_1_0 = "an HTTP/1.0 request has no Transfer-Encoding: send a Content-Length"
# h11 reads any `HTTP/d.d` request line and would answer it as 1.1: 1.0 and 1.1 are served.
HTTP_VERSIONS = (b"1.0", b"1.1")
_HEAD_END = re.compile(rb"\n\r?\n")  # the blank line after the headers, as h11 finds it
# Headers whose lines, when sent more than once, are one comma-separated list (RFC 9110 5.3):
# each proxy of a chain may add its own `X-Forwarded-For` line, the nearest one last.
LIST_HEADERS = frozenset({"x-forwarded-for"})
SERVER_HEADER = (b"server", b"tokenvenue")
# Answers with no content and no Content-Length (RFC 9110 8.6): a 304's would have to be the
# 200's length, and `Content-Length: 0` told a cache that freshens its copy from the 304's
# headers (RFC 9111 4.3.4) that the file is empty.
BODILESS_STATUSES = frozenset({204, 304})


class Exchange:
    """One request and its one response."""

    def __init__(self, driver: "HttpConnection", request: h11.Request, body: bytes) -> None:
        self._driver = driver
        self.connection = driver.connection
        self.method = request.method.decode("ascii", "replace")
        target = _origin_form(request.target.decode("ascii", "replace"))
        path, _, self.query = target.partition("?")
        self.target = target
        self.raw_path = path
        self.path = unquote(path)
        self.headers: dict[str, str] = {}  # names lower case (h11)
        # the names sent more than once (each keeps its last value here, but a list's lines
        # are joined in order, `LIST_HEADERS`): a router refuses them where two values would
        # be two meanings, e.g. who signed a request
        self.repeated: set[str] = set()
        for raw_name, raw_value in request.headers:
            name = raw_name.decode("latin-1")
            value = raw_value.decode("latin-1")
            if name in self.headers:
                self.repeated.add(name)
                if name in LIST_HEADERS:
                    value = f"{self.headers[name]}, {value}"
            self.headers[name] = value
        self.body = body
        self.answered = False
        # Headers every response to this request carries, whoever answers it (a router's)
        self.always_headers: Sequence[tuple[str, str]] = ()

    def respond(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Send the response (once; a second call is a bug)."""
        assert not self.answered, "one response per request"
        self.answered = True
        headers = [*headers, *self.always_headers] if self.always_headers else headers
        self._driver.respond(self, status, body, content_type, headers)


class HttpConnection:
    """The HTTP side of one TCP connection."""

    def __init__(self, connection: "Connection", serve: Callable[[Exchange], None]) -> None:
        self.connection = connection
        self.serve = serve
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=HEADER_BYTES_MAX)
        self.request: h11.Request | None = None
        self.body: list[bytes] = []
        self.body_bytes = 0
        self.in_flight: Exchange | None = None
        self.closing = False  # the listener is closing: close after the answer in flight
        self.timer: asyncio.TimerHandle | None = None
        self.reading = True  # the transport reads (not paused by `_pause_reading`)
        self.ended = False  # the peer sent EOF: nothing more to read, pause or resume

    # ----------------------------------------------------------------- input

    def receive(self, data: bytes) -> None:
        self.h11.receive_data(data)
        if data and (self.in_flight is not None or self.buffered_bytes() > BUFFERED_BYTES_MAX):
            self._pause_reading()  # pipelined behind an answer owed: read on when it is out
        self._next_events()

    def buffered_bytes(self) -> int:
        """Request bytes received and not yet read by h11."""
        return len(_unread(self.h11))

    def _next_events(self) -> None:
        while self.in_flight is None and not self._done():
            if self.connection.paused:  # the peer does not read: no new answer until it does
                self._pause_reading()
                return
            if self._head_too_large():
                self._fail(431, HEAD_TOO_LARGE)
                return
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as failure:
                self._fail(failure.error_status_hint, unreadable(str(failure)))
                return
            if event is h11.NEED_DATA:
                self._resume_reading()
                return
            if event is h11.PAUSED:
                self._pause_reading()
                return
            if not self._on_event(event):
                return

    def _head_too_large(self) -> bool:
        """The next request's head, unread, is past `HEADER_BYTES_MAX`. h11's own limit
        (`max_incomplete_event_size`) counts only a head still incomplete: one that arrives
        whole in one read would pass it, however large. O(1) while the unread bytes are
        within the limit (a head trickled byte by byte costs nothing more per byte); past
        it, the search stops at the head's end, and that head is parsed or refused next."""
        if self.h11.their_state is not h11.IDLE:
            return False  # a body, or the answer owed: no head is next
        unread = _unread(self.h11)
        if len(unread) <= HEADER_BYTES_MAX:
            return False
        return _HEAD_END.search(unread, 0, HEADER_BYTES_MAX) is None

    def writable(self) -> None:
        """The transport takes writes again: serve the next pipelined request, if any."""
        if self.in_flight is None:
            asyncio.get_running_loop().call_soon(self._next_events)

    def _pause_reading(self) -> None:
        transport = self.connection.transport
        if self.reading and not self.ended and transport and not transport.is_closing():
            self.reading = False
            transport.pause_reading()

    def _resume_reading(self) -> None:
        transport = self.connection.transport
        if not self.reading and not self.ended and transport and not transport.is_closing():
            self.reading = True
            transport.resume_reading()

    def _on_event(self, event: Any) -> bool:
        """Take one event; False when reading must stop here."""
        if isinstance(event, h11.Request):
            if event.http_version not in HTTP_VERSIONS:  # RFC 9110 15.6.6
                version = event.http_version.decode("ascii", "replace")
                self._fail(505, f"HTTP/{version} is not supported: send HTTP/1.1 or HTTP/1.0")
                return False
            if _both_framings(event):  # RFC 9112 6.1: refused, and the connection closed
                self._fail(400, BOTH_FRAMINGS)
                return False
            # RFC 9112 6.1: faulty framing, refused (a 1.0 proxy in front would read no body)
            if event.http_version == b"1.0" and _has_transfer_encoding(event):
                self._fail(400, CHUNKED_1_0)
                return False
            if _declared_length(event) > REQUEST_BODY_BYTES_MAX:  # refused before it is sent
                self._fail(413, BODY_TOO_LARGE, event)
                return False
            self._cancel_timer()
            self.timer = asyncio.get_running_loop().call_later(BODY_TIMEOUT_S, self._body_late)
            self.request, self.body, self.body_bytes = event, [], 0
            if self.h11.they_are_waiting_for_100_continue:  # `Expect: 100-continue`
                self._continue()
        elif isinstance(event, h11.Data):
            self.body_bytes += len(event.data)
            if self.body_bytes > REQUEST_BODY_BYTES_MAX:
                self._fail(413, BODY_TOO_LARGE, self.request)
                return False
            self.body.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            assert self.request is not None, "h11 gives the request before its end"
            self._cancel_timer()
            exchange = Exchange(self, self.request, b"".join(self.body))
            self.request, self.body = None, []
            self.in_flight = exchange
            if self.closing or self.connection.listener.closing or self.connection.closing:
                body, content_type = self._error_answer(exchange.path, 503, STOPPING)
                exchange.respond(503, body, content_type)
            else:
                self.serve(exchange)
            return False  # `respond` reads on
        elif isinstance(event, h11.ConnectionClosed):
            self._close_transport()
            return False
        return True

    def _continue(self) -> None:
        """Tell a client that waits for it before sending its body to send it (a client
        waits its own timeout for this, curl 1 s, or forever)."""
        continue_ = h11.InformationalResponse(
            status_code=100, headers=[SERVER_HEADER], reason=_reason(100)
        )
        data = self.h11.send(continue_)
        transport = self.connection.transport
        if data and transport is not None:
            transport.write(data)

    def _done(self) -> bool:
        transport = self.connection.transport
        return transport is None or transport.is_closing()

    # ----------------------------------------------------------------- output

    def respond(
        self,
        exchange: Exchange,
        status: int,
        body: bytes,
        content_type: str,
        headers: Sequence[tuple[str, str]],
    ) -> None:
        if exchange is not self.in_flight or self._done():
            return  # the connection went away while the answer was being made
        self.in_flight = None
        head = [SERVER_HEADER, _date_header(), (b"content-type", content_type.encode("latin-1"))]
        if status not in BODILESS_STATUSES:
            head.append((b"content-length", str(len(body)).encode()))
        head += [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        if self.closing or self.connection.listener.closing or self.connection.closing:
            head.append((b"connection", b"close"))
        try:
            data = self.h11.send(
                h11.Response(status_code=status, headers=head, reason=_reason(status))
            )
            if exchange.method != "HEAD":
                data = (data or b"") + (self.h11.send(h11.Data(data=body)) or b"")
            data = (data or b"") + (self.h11.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError:  # a response the protocol cannot take: not sent
            self.h11.send_failed()
            self._close_transport()
            return
        transport = self.connection.transport
        assert transport is not None, "answered only on a live connection"
        transport.write(data)
        self._next_cycle()

    def _next_cycle(self) -> None:
        if self.h11.our_state is h11.MUST_CLOSE or self.closing:
            self._close_transport()
            return
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            self._arm_idle_timer()
            # a pipelined request already read is served on the next turn, not in this
            # call: answers given at once must not recurse once per request
            asyncio.get_running_loop().call_soon(self._next_events)

    def _body_late(self) -> None:
        self.timer = None
        late = f"a request body must arrive within {BODY_TIMEOUT_S} s of its head"
        self._fail(408, late, self.request)

    def _fail(self, status: int, why: str, request: h11.Request | None = None) -> None:
        """A request we cannot read: answer it (if no response has begun), then close.
        `request`, its head if read, lets the handler word the answer (`_error_answer`)."""
        self.in_flight = None
        if self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            path = None if request is None else _decoded_path(request)
            body, content_type = self._error_answer(path, status, why)
            head = [
                SERVER_HEADER,
                _date_header(),
                (b"content-type", content_type.encode("latin-1")),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ]
            try:
                response = h11.Response(status_code=status, headers=head, reason=_reason(status))
                data = self.h11.send(response) or b""
                data += self.h11.send(h11.Data(data=body)) or b""
                data += self.h11.send(h11.EndOfMessage()) or b""
            except h11.LocalProtocolError:
                data = b""
            if data and self.connection.transport is not None:
                self.connection.transport.write(data)
        self._close_transport()

    def _error_answer(self, path: str | None, status: int, why: str) -> tuple[bytes, str]:
        """The body and content type of one of this module's own answers: the handler's
        words for a path of its (`on_http_error`: a REST path's JSON error, since session
        25), else `why` as plain text (h11's words may quote the request: shortened)."""
        words = getattr(self.connection.handler, "on_http_error", None)
        if path is not None and words is not None:
            body: bytes | None = words(path, status, why)
            if body is not None:
                return body, "application/json"
        return (shortened(why) + "\n").encode(), "text/plain"

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """The first bytes are ours: the handshake deadline becomes the idle deadline."""
        self._arm_idle_timer()

    def close(self) -> None:
        """Close once the answer in flight (if any) is out; aborted if that takes too long."""
        self.closing = True
        if self.in_flight is None:
            self._close_transport()
        else:
            self.connection._arm_close_deadline()

    def eof(self) -> bool | None:
        """The peer sent EOF: True keeps the transport open to write the answer owed."""
        self.ended = True
        self.receive(b"")
        return True if self.in_flight is not None else None

    def lost(self) -> None:
        self._cancel_timer()
        self.in_flight = None

    def _close_transport(self) -> None:
        self._cancel_timer()
        transport = self.connection.transport
        if transport is not None and not transport.is_closing():
            transport.close()

    def _arm_idle_timer(self) -> None:
        if self.connection.refusal is not None:  # over the caps: the transport's short
            return  # deadline for its one request stands, not the keep-alive's 15 s
        self._cancel_timer()
        if not self.connection.closing:  # the handshake deadline is the websocket's
            self.connection._cancel_timer()
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(KEEPALIVE_IDLE_S, self._close_transport)

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def _unread(connection: h11.Connection) -> bytes | bytearray:
    """The bytes h11 has received and not parsed yet, read in place. Its public
    `trailing_data` copies them on each call: checked at every read, that made a head
    trickled byte by byte cost quadratic work. h11 (0.16 here) keeps exactly them in a
    bytearray, `_receive_buffer._data`; should that change (no such bytearray, or one longer
    than the buffer says it holds), this takes the copy, correct but slower, and
    tests/gateway/test_http.py fails to say so."""
    buffer = getattr(connection, "_receive_buffer", None)
    data = getattr(buffer, "_data", None)
    if type(data) is bytearray and buffer is not None and len(data) == len(buffer):
        return data
    return connection.trailing_data[0]


def _origin_form(target: str) -> str:
    """The path and query of a request target: an absolute-form one (`http://host/path?q`,
    which RFC 9112 3.2.2 says a server must accept) loses its scheme and authority (`/` if
    it has no path); any other is as sent."""
    scheme, separator, rest = target.partition("://")
    if not separator or scheme.lower() not in ("http", "https"):
        return target
    authority_end = min((at for at in (rest.find("/"), rest.find("?")) if at >= 0), default=-1)
    if authority_end < 0:
        return "/"
    tail = rest[authority_end:]
    return tail if tail.startswith("/") else "/" + tail


def _decoded_path(request: h11.Request) -> str:
    """The request's path as `Exchange.path` has it: no query, %-escapes decoded."""
    target = _origin_form(request.target.decode("ascii", "replace"))
    return unquote(target.partition("?")[0])


def _declared_length(request: h11.Request) -> int:
    """The request's Content-Length, 0 if none (h11 has checked it is digits, one value)."""
    for name, value in request.headers:
        if name == b"content-length":
            digits = value.lstrip(b"0")  # more digits than the limit has: past it, unconverted
            if len(digits) > len(str(REQUEST_BODY_BYTES_MAX)):
                return REQUEST_BODY_BYTES_MAX + 1
            return int(digits or b"0")
    return 0


def _both_framings(request: h11.Request) -> bool:
    """The request has a Content-Length and a Transfer-Encoding: h11 would go by the
    latter, a proxy before us perhaps by the former (request smuggling)."""
    names = {name for name, _ in request.headers}
    return b"content-length" in names and b"transfer-encoding" in names


def _has_transfer_encoding(request: h11.Request) -> bool:
    """The request has a Transfer-Encoding (h11 has let only `chunked` through)."""
    return any(name == b"transfer-encoding" for name, _ in request.headers)


def _date_header() -> tuple[bytes, bytes]:
    """`Date` (RFC 9110 6.6.1: an origin server with a clock sends it in every 2xx, 3xx and
    4xx answer)."""
    return _date_of(int(time.time()))


@functools.lru_cache(maxsize=1)
def _date_of(second: int) -> tuple[bytes, bytes]:
    """The header for `second`: formatted once a second at most, a burst reuses it."""
    return (b"date", email.utils.formatdate(second, usegmt=True).encode())


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def websocket_request(exchange: Exchange) -> WebsocketRequest:
    """The request as the websocket layer's `on_http` seam takes it (path with query)."""
    headers = Headers()
    for name, value in exchange.headers.items():
        headers[name] = value
    return WebsocketRequest(exchange.target, headers)


def answer_with(exchange: Exchange, response: Any) -> None:
    """Send a `websockets.http11.Response` (from `on_http`) as this exchange's answer."""
    framing = {"content-length", "transfer-encoding", "connection", "content-type", "server"}
    framing.add("date")  # this layer's, on every answer
    content_type = response.headers.get("Content-Type", "text/plain; charset=utf-8")
    extra = [(name, value) for name, value in response.headers.raw_items()]
    extra = [(name, value) for name, value in extra if name.lower() not in framing]
    exchange.respond(response.status_code, bytes(response.body or b""), content_type, extra)


# h11 quotes the request with Python's notation for bytes: bytearray(b'...'), b'...' (a
# backslash only as an escape's start: a pattern where it may match two ways backtracks
# exponentially on a run of them)
_BYTES_QUOTED = re.compile(r"""(bytearray\()?b(['"])((?:\\.|(?!\2)[^\\])*)\2(?(1)\))""")


def unreadable(why: str) -> str:
    """h11's words for a request it cannot read, worded as the websocket handshake's are
    (`transport.UNREADABLE_HANDSHAKE`): what it quotes of the request without Python's
    notation for bytes, whose escapes (`\\x00`) it keeps. Before, the answer read
    `illegal header line: bytearray(b'X-API-Key: \\x00')`."""
    return "the request cannot be read: " + _BYTES_QUOTED.sub(r"\3", why)
