"""The venue port's connections: the transport's callbacks, and whether sessions are taken.

Owns what happens as a connection opens and closes (its session, the logon timeout, its
cancel-on-disconnect through the parts), each plain HTTP request's first stop (the REST API's,
else the web page's files, charged to the client IP's bucket), whom a request is from behind a
trusted proxy (`client_ip`), and a cluster gateway's sessions while it holds no lease
(`lease_lost`, `lease_held`). `VenueServer` builds it and hands it to `transport.serve`, which
calls it directly: no request or frame passes through one more call for it (a session's frames
go straight to the dispatcher, `on_open`).
"""

import asyncio
import dataclasses
import logging
from functools import partial
from typing import TYPE_CHECKING

from websockets.datastructures import Headers
from websockets.http11 import Request as HttpRequest
from websockets.http11 import Response as HttpResponse

from core.bus import Bus
from core.venue_core import now_us
from gateway import http, limits, static, transport
from gateway.dispatch import Dispatcher, Pending
from gateway.held_requests import NOT_EXECUTED_AT_LEASE_LOSS
from gateway.http import Exchange
from gateway.private_streams import PrivateStreams
from gateway.public_streams import PublicStreams
from gateway.sessions import Session, Sessions, peer

if TYPE_CHECKING:
    from gateway.rest import RestApi

# A cluster gateway whose lease lapsed closes its sessions with 1012 (service restart): the
# client reconnects, here once the lease is held again or to another gateway (protocol §11.2).
LEASE_LOST_CLOSE_CODE = 1012
LEASE_LOST_REASON = "gateway lost its lease"
OUTCOME_UNKNOWN_AT_LEASE_LOSS = (
    "no outcome: the gateway lost its lease before the core's answer came back, and the"
    " request may still be carried out; after reconnecting, check it (order.status,"
    " orders.open) before sending it again"
)

_log = logging.getLogger("venue")


class ConnectionHandler:
    """The transport's handler for `/ws/trade`, `/ws/public` and plain HTTP on one port."""

    def __init__(
        self,
        bus: Bus,
        connections: Sessions,
        dispatcher: Dispatcher,
        private_streams: PrivateStreams,
        public: PublicStreams,
        rest: "RestApi",
        proxies: limits.TrustedProxies,
        page_limiter: limits.AddressBuckets,
    ) -> None:
        self.bus = bus
        self.connections = connections
        self.sessions = connections.sessions
        self.dispatcher = dispatcher
        self.private_streams = private_streams
        self.public = public
        self.rest = rest
        # whose X-Forwarded-For names the client (`client_ip`); never the connection caps'
        self.proxies = proxies
        self.page_limiter = page_limiter  # the web page's files, per client IP
        # False while a cluster gateway holds no lease: its sessions are closed, and new ones
        # too as they open (the core may be canceling their cod orders meanwhile)
        self.serving = True

    def on_http(
        self, connection: transport.Connection, request: HttpRequest
    ) -> HttpResponse | None:
        refused = self._charge_page_request(connection, request)
        if refused is not None:
            return refused
        return static.respond(request)  # the web page; other paths: None, 404

    def client_ip(self, connection: transport.Connection, forwarded_for: str | None) -> str:
        """Whom a request on `connection` is from: its peer's IP, or, from a trusted proxy
        (`[limits] trusted_proxies`), the client its `X-Forwarded-For` names."""
        peer_ip = str(connection.peer[0]) if connection.peer else ""
        return self.proxies.client_ip(peer_ip, forwarded_for)

    def _charge_page_request(
        self, connection: transport.Connection, request: HttpRequest
    ) -> HttpResponse | None:
        """Charge a request that is neither REST nor websocket (the web page's files, a
        404) to its client IP's bucket: None if it fits, else the 429 that answers it.
        Without it such requests were served uncharged, as fast as a client sent them."""
        ip = self.client_ip(connection, forwarded_for(request.headers))
        retry_after_ms = self.page_limiter.take(limits.address_key(ip), now_us())
        if retry_after_ms == 0:
            return None
        return static.too_many_requests(retry_after_ms)

    def on_request(self, connection: transport.Connection, exchange: Exchange) -> bool:
        """A plain HTTP request: the REST API's if it is under /api/; else, on a connection
        that may be a public one (503 if not: `hold_public`), the web page's if it is one of
        its paths asked with another method than GET or HEAD (its own 405, with the page's
        headers); else `on_http`'s (GET, HEAD) or the transport's. A websocket handshake here
        (at a path that has no websocket) is the transport's 404, whatever the path serves."""
        handshake = _is_websocket_handshake(exchange)
        if not handshake and self.rest.serve(connection, exchange):
            return True
        refusal = connection.hold_public()
        if refusal is not None:
            connection.refuse(exchange, refusal)
            return True
        if handshake:  # a page or an API answer, 200, would read as a refusal saying nothing
            page = http.websocket_request(exchange)
            response = self._charge_page_request(connection, page)
            if response is None:
                exchange.respond(404, transport.NOT_FOUND_TEXT.encode(), transport.NOT_FOUND_TYPE)
            else:
                http.answer_with(exchange, response)
            return True
        if exchange.method in ("GET", "HEAD"):
            return False
        # `websocket_request` asks as GET (HEAD is a GET whose body `http` leaves out)
        asked = dataclasses.replace(http.websocket_request(exchange), method=exchange.method)
        response = self._charge_page_request(connection, asked) or static.respond(asked)
        if response is None:
            return False
        http.answer_with(exchange, response)
        return True

    def on_refused(
        self,
        connection: transport.Connection,
        exchange: Exchange,
        refusal: str,
        headers: list[tuple[str, str]],
    ) -> bool:
        """A request refused for the caps on connections (`refusal` says which): a REST
        request is answered in REST's words (its JSON error); others are left to the
        transport's plain text."""
        return self.rest.refuse(exchange, refusal, headers)

    def on_http_error(self, path: str, status: int, why: str) -> bytes | None:
        """`gateway.http`'s own 408, 413 or 503 for `path`: a REST path's in REST's words
        (its JSON error); None for others (plain text)."""
        return self.rest.http_error(path, status, why)

    def on_http_closed(self, connection: transport.Connection) -> None:
        self.rest.closed(connection)

    def on_open(self, connection: transport.Connection) -> None:
        if self.proxies.networks and connection.request is not None:  # behind a proxy: logs
            client = self.client_ip(connection, forwarded_for(connection.request.headers))
            peer_ip = str(connection.peer[0]) if connection.peer else ""
            connection.client_ip = None if client == peer_ip else client
        session = self.connections.open(connection)
        # Its messages go straight to the dispatcher (`on_frame`, without the call through it)
        connection.deliver = partial(self.dispatcher.on_frame, session)  # type: ignore[method-assign]
        if not self.serving:
            self.connections.close(session, LEASE_LOST_CLOSE_CODE, LEASE_LOST_REASON)
        elif session.trade:
            session.logon_timer = asyncio.get_running_loop().call_later(
                limits.LOGON_TIMEOUT_S, self._logon_timeout, session
            )

    def on_frame(self, connection: transport.Connection, message: str | bytes) -> None:
        self.dispatcher.on_frame(connection.context, message)

    def on_close(self, connection: transport.Connection) -> None:
        session: Session = connection.context
        if session.logon_timer is not None:
            session.logon_timer.cancel()
        self.disconnected(session)
        if session.writer is not None:
            session.writer.cancel()

    def _logon_timeout(self, session: Session) -> None:
        if session.key is None and not session.closing:
            log_fields = {"session": session.id, "peer": peer(session)}
            _log.info("logon timeout", extra=log_fields)
            # behind the answers still owed (queries wait for durability), then closed
            closing = Pending(
                session, None, "", 0, close_after=True, close_code=limits.LOGON_TIMEOUT_CLOSE_CODE
            )
            closing.close_reason = "logon timeout"
            self.bus.barrier(closing)

    def disconnected(self, session: Session) -> None:
        """Forget a closed session everywhere (its cancel-on-disconnect last): at its
        connection's close, or a REST request's session once answered (`RestApi`)."""
        self.connections.forget(session)
        self.dispatcher.limiter.drop_connection(session.id)
        self.public.leave(session)
        self.private_streams.leave(session)
        self.dispatcher.placed.forget_session(session)
        self.dispatcher.held_requests.forget_held(session)
        self.dispatcher.logons.closed(session)  # its refusals not logged yet
        self.private_streams.cancel_on_disconnect(session)

    # ----------------------------------------------------------------- a cluster's lease

    def lease_lost(self) -> None:
        """A cluster gateway's lease lapsed (core.nats_bus): close every session, each
        running its cancel-on-disconnect as any close does, and take none until `lease_held`."""
        self.serving = False
        _log.warning("lease lost: closing sessions", extra={"sessions": len(self.sessions)})
        owed = self._owed_by_session()
        for session in list(self.sessions.values()):
            if not session.closing:
                for pending in owed.get(session.id, ()):  # in request order, before the close
                    # 504, or a batch's 409 with the outcomes back already (`unknown_reply`)
                    reply = self.dispatcher.unknown_reply(pending, OUTCOME_UNKNOWN_AT_LEASE_LOSS)
                    self.connections.send(session, reply)
                # then what waited behind a place (sent after it): not executed, none of it
                self.dispatcher.held_requests.refuse_held_of(session, NOT_EXECUTED_AT_LEASE_LOSS)
                self.connections.close(session, LEASE_LOST_CLOSE_CODE, LEASE_LOST_REASON)

    def _owed_by_session(self) -> dict[int, list[Pending]]:
        """The requests still waiting for the core's outcome, by session: a close would
        leave them unanswered (the outcome comes back to a closed session, if at all). Not
        those answered as unknown already (`Dispatcher.answer_unknown`): one answer each."""
        owed: dict[int, list[Pending]] = {}
        for origin in self.bus.owed():
            if type(origin) is not Pending or origin.answered_unknown:
                continue  # a cod cancel's (nobody to answer), or answered already
            if origin.request_id is not None:
                owed.setdefault(origin.session.id, []).append(origin)
        return owed

    def lease_held(self) -> None:
        self.serving = True


def forwarded_for(headers: Headers) -> str | None:
    """The request's `X-Forwarded-For`: its lines joined in order if sent more than once (a
    chain of proxies, each adding its own line: one list, RFC 9110 5.3, the nearest hop
    last), so the walk from its right (`TrustedProxies.client_ip`) passes every trusted hop.
    Before, only the last line was read: behind two proxies the client was the farther one."""
    values = headers.get_all("X-Forwarded-For")
    return ", ".join(values) if values else None


def _is_websocket_handshake(exchange: Exchange) -> bool:
    """A GET asking to upgrade to a websocket (RFC 6455 4.1: `Upgrade: websocket`, any
    case): a websocket client, which reads nothing of a page or an API answer but its status
    (before session 35 it was served as a plain GET: `ws://host:8765/` got the page, 200)."""
    if exchange.method != "GET":
        return False
    tokens = exchange.headers.get("upgrade", "").lower().split(",")
    return "websocket" in (token.strip() for token in tokens)
