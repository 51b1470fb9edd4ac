"""The REST API (docs/rest.md): HTTP requests turned into websocket requests, and back.

Owns the routing table (`ROUTES`), the signed-request check (`X-API-Key`, `X-Timestamp`,
`X-Nonce`, `X-Recv-Window`, `X-Signature`: the logon's rules over a payload that binds the
HTTP method, path, query and body) and `/openapi.json`, generated from `ROUTES` and the
msgspec structs the code decodes and encodes with. The reads the websocket has as channels
but not as methods (recent trades, ticker, candles) are `gateway.rest_reads`'s; the rest run
as the websocket method of the same name through the server's own frame path (decode,
scope, dispatch, durability), with a per-connection session whose answers become HTTP
responses (`_Answers`): same validation, same errors (`gateway.rest_errors`; those about a
body speak of the body), answered only once durable. Every request is charged here first
(`gateway.rest_limits`), refused or not, and not again by the dispatcher. A body is JSON,
sent as such (`Content-Type: application/json`, else 415).
Limits: bodies and headers in `gateway.http`; one request at a time per connection; a
body's params within the websocket's `MESSAGE_BYTES_MAX` once in their request (else 413).
"""

import asyncio
import functools
import logging
import math
import re
from typing import TYPE_CHECKING, Any, Final, NamedTuple
from urllib.parse import parse_qsl, unquote

import msgspec
import msgspec.inspect

from core.venue_core import now_us
from engine.reasons import ErrorCode
from gateway import wire
from gateway.auth import RECV_WINDOW_MS_DEFAULT, AuthError, claim_cluster_wide, sign_request
from gateway.candles import CandlesResult
from gateway.cors import Cors
from gateway.http import Exchange
from gateway.limits import QUERY_COST_MILLI, account_bucket, account_limit, cost_milli
from gateway.queries import ReservesResult
from gateway.rest_errors import (
    ErrorBody,
    ErrorResponse,
    error_body,
    respond_error,
    respond_limited,
    respond_not_allowed,
)

# `name as name`: names that moved out with their code, importable from here as before
from gateway.rest_limits import POLICY_VIOLATION as POLICY_VIOLATION
from gateway.rest_limits import RestCharges
from gateway.rest_reads import (
    LOCAL_READS,
    CandlesParams,
    PublicReads,
    TickerParams,
    TickersResult,
    TimeResult,
    TradesParams,
    TradesResult,
)
from gateway.rest_reads import Trade as Trade
from gateway.sessions import Session

if TYPE_CHECKING:
    from core.cluster_nonces import SharedNonces
    from gateway.server import VenueServer
    from gateway.transport import Connection

log = logging.getLogger("venue")
E = ErrorCode

API_PREFIX = "/api/v1"
OPENAPI_PATH = "/openapi.json"
JSON = "application/json"
BOOK_DEPTH_DEFAULT = 10  # the websocket's book.snapshot takes depth; REST defaults it
FILLS_LIMIT_DEFAULT = 100
SIGNED_HEADERS = ("x-api-key", "x-timestamp", "x-nonce", "x-signature")  # X-Recv-Window: 5000
SIGNING_HEADERS = (*SIGNED_HEADERS, "x-recv-window")  # each sent once at most
SENT_TWICE = "{} is sent more than once: send it once"
QUERY_NOT_UTF8 = "the query is not UTF-8 once its %-escapes are decoded"
QUERY_REPEATED = "the query parameter `{}` is repeated: send it once"
QUERY_NO_NAME = "a query parameter has no name: `={}`"  # msgspec: "unknown field ``"
# every query value is text: msgspec's `Expected `int`, got `str`` (before session 26) said
# nothing a client could act on
QUERY_NOT_INTEGER = "the query parameter `{}` is an integer, ASCII digits only: {!r}"
# and msgspec's `Expected `bool`, got `str`` likewise; it took "1", "0" and "TRUE" as well
QUERY_NOT_BOOLEAN = "the query parameter `{}` is true or false: {!r}"
QUERY_BOOLEANS: Final = {"true": True, "false": False}
# msgspec's words for a struct's fields, said of a query's parameters
QUERY_WORDS: Final = (
    ("Object missing required field", "missing the query parameter"),
    ("Object contains unknown field", "unknown query parameter"),
)
# BAD_SIGNATURE, for an unknown key as for a wrong signature (one answer), in a request's words
REQUEST_NOT_SIGNED = "X-API-Key unknown or X-Signature does not match the request's signed bytes"
PATH_ID_TOO_LARGE = f"Expected `int` <= {wire.INT_MAX} - at `{{}}` in the path"  # its name
TIMESTAMP_NOT_DIGITS = "X-Timestamp is an integer: µs since the epoch, ASCII digits only"
WINDOW_NOT_DIGITS = "X-Recv-Window is an integer: ms, ASCII digits only"
# `auth`'s refusals name a logon's params; a request sends them as headers. Each pair: the
# logon's words at the start of (or inside, `; ...`, `: ...`) a message, and the request's.
HEADER_WORDS: Final = (
    ("ts ", "X-Timestamp "),
    ("; ts ", "; X-Timestamp "),  # a timestamp in ms or s: `auth.unit_hint`, since session 26
    (": ts is in microseconds", ": X-Timestamp is in microseconds"),
    ("; recv_window ", "; X-Recv-Window "),
    ("recv_window ", "X-Recv-Window "),
    ("nonce ", "X-Nonce "),
    (" logons of this key", " signed requests and logons of this key"),
)
BODY_METHODS = ("POST", "PATCH")  # the methods whose params are a JSON body
# On every answer of a signed route: its URL is the same for every account and its signature
# is in X- headers no cache keys on, so a shared cache that kept one account's answer would
# serve it to the next caller of the URL.
PRIVATE_HEADERS = (("cache-control", "no-store"),)
BODY_TOO_DEEP = "the body nests arrays or objects too deeply to read"
BODY_NOT_OBJECT = "the body is one JSON object"
BODY_BLANK = "the body is only whitespace: send one JSON object, or no body"
# A body is JSON, which is UTF-8 (RFC 8259 8.1): another charset would be read wrongly.
NOT_JSON_TYPE = (
    "a request body is JSON: send it with Content-Type: application/json (charset utf-8,"
    " if any); this one's Content-Type is {}"
)
TYPE_SENT_TWICE = (
    "Content-Type is sent more than once: send one, application/json (charset utf-8, if any)"
)
REFUSAL_LOG_INTERVAL_US = 1_000_000  # a refused signature logs at most once a second per
# connection (the rest are counted into the next line): a flood must not flood the log
# `gateway.http`'s own answers, by status, with the code a REST error gives each: a body past
# the limit; a body late (never all read, as one that is not JSON); a request as the venue stops
HTTP_ERRORS: Final = {413: E.MESSAGE_TOO_BIG, 408: E.BAD_JSON, 503: E.SHUTTING_DOWN}
UTF8_NAMES: Final = ("utf-8", "utf8")  # a body's charset, if it names one: UTF-8 (or its alias)


# ----------------------------------------------------------------- the routing table


class Route(NamedTuple):
    method: str  # HTTP
    path: str  # "{order_id}" stands for a positive integer segment
    private: bool  # signed; the websocket method's scope applies
    runs_as: str  # the websocket method, or the name of a read served here
    params: type[wire.Params]  # what the query (GET, DELETE) or the body decodes into
    result: type[msgspec.Struct] | None  # the answer's schema; None: see `summary`
    summary: str
    defaults: tuple[tuple[str, Any], ...] = ()  # REST's defaults for params the method needs


ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/v1/instruments", False, "instruments", wire.InstrumentsParams, None,
          "Instruments: tick, step, band; T-bills with maturity and yield (docs/protocol.md "
          "`instruments`)"),
    Route("GET", "/api/v1/book", False, "book.snapshot", wire.BookSnapshotParams, None,
          "Order book snapshot by depth (docs/protocol.md `book.snapshot`)",
          (("depth", BOOK_DEPTH_DEFAULT),)),
    Route("GET", "/api/v1/trades", False, "trades", TradesParams, TradesResult,
          "Recent trades, newest last"),
    Route("GET", "/api/v1/ticker", False, "ticker", TickerParams, TickersResult,
          "Last price and the 24 h open, high, low, volume and change"),
    Route("GET", "/api/v1/candles", False, "candles", CandlesParams, CandlesResult,
          "OHLCV bars, oldest first"),
    Route("GET", "/api/v1/time", False, "time", wire.TimeParams, TimeResult,
          "The venue's clock (µs since the epoch): sign X-Timestamp by it"),
    Route("GET", "/api/v1/reserves", False, "reserves", wire.ReservesParams, ReservesResult,
          "Proof of reserves: each asset's supply against its latest attestation"),
    Route("GET", "/api/v1/balances", True, "balances", wire.BalancesParams, None,
          "Balances: total, available, held (docs/protocol.md `balances`)"),
    Route("GET", "/api/v1/orders", True, "orders.open", wire.OpenOrdersParams, None,
          "Open orders (docs/protocol.md `orders.open`)"),
    Route("GET", "/api/v1/orders/history", True, "orders.history", wire.OrdersHistoryParams,
          None, "Orders open and closed, newest first (docs/protocol.md `orders.history`)"),
    Route("GET", "/api/v1/fills", True, "fills", wire.FillsParams, None,
          "Fills (docs/protocol.md `fills`)", (("limit", FILLS_LIMIT_DEFAULT),)),
    Route("POST", "/api/v1/orders", True, "order.place", wire.PlaceParams, None,
          "Place an order: the params of `order.place` as the body"),
    Route("DELETE", "/api/v1/orders/{order_id}", True, "order.cancel", wire.CancelParams, None,
          "Cancel an order (docs/protocol.md `order.cancel`)"),
    Route("PATCH", "/api/v1/orders/{order_id}", True, "order.amend", wire.AmendParams, None,
          "Amend an order: `order.amend`'s params but the order id as the body"),
)  # fmt: skip
ORDER_IDS = ("order_id", "cl_ord_id")  # what names an order in the params of cancel, amend
_CL_ORD_ID_IN_PARAMS = "cl_ord_id names no order here: the path's order_id does"
_NAMED_BY_THE_PATH = {  # a cl_ord_id in the params of a route whose path names the order
    "order.cancel": _CL_ORD_ID_IN_PARAMS,
    "order.amend": f"{_CL_ORD_ID_IN_PARAMS}; to give the order a new cl_ord_id, send new_cl_ord_id",
}


def match(method: str, raw_path: str) -> tuple[Route | None, dict[str, int], list[str]]:
    """The route for `method raw_path`, the path's order id, and the methods the path
    allows. The path as sent is split at its slashes before each segment is decoded: an
    encoded slash (`%2F`) is part of a segment, not a separator, so no route has two names."""
    allowed: list[str] = []
    parts = [unquote(part) for part in raw_path.split("/")]
    for route in ROUTES:
        pattern = route.path.split("/")
        if len(pattern) != len(parts):
            continue
        found: dict[str, int] = {}
        for want, got in zip(pattern, parts, strict=True):
            if want == "{order_id}":  # a positive integer only (not the template's own text)
                order_id = _integer(got)
                if not order_id:
                    break
                found["order_id"] = order_id  # one past 2^53 is refused as its params are
            elif want != got:
                break
        else:
            if route.method == method or (route.method, method) == ("GET", "HEAD"):
                return route, found, allowed  # HEAD: the GET, answered without its body
            allowed += ["GET", "HEAD"] if route.method == "GET" else [route.method]
    return None, {}, allowed


INTEGER_DIGITS_MAX = len(str(wire.INT_MAX))  # 16: a longer integer is past every limit


def _integer(text: str) -> int | None:
    """`text` as an integer if it is ASCII digits only, else None. One longer than
    `INTEGER_DIGITS_MAX` digits (leading zeros aside) comes back as 2^53, past every range it
    is then checked against, so it is refused as any out-of-range value is; converting it
    would be wasted work, and over 4,300 digits Python refuses (a 500 it would be)."""
    if not (text.isascii() and text.isdigit()):
        return None
    digits = text.lstrip("0")
    return int(digits or "0") if len(digits) <= INTEGER_DIGITS_MAX else wire.INT_MAX + 1


# ----------------------------------------------------------------- serving


class RestApi:
    """The REST side of one server: routes a request, checks its signature, answers it.

    Routing, the signature and the answers share the one exchange's state and stay here;
    what a request is charged is `RestCharges` (gateway/rest_limits.py), the public reads
    served here `PublicReads` (gateway/rest_reads.py), given REST's clock as an input."""

    def __init__(self, server: "VenueServer") -> None:
        self.server = server
        self.cors = Cors(server.config.gateway.cors_origins)
        self.reads = PublicReads(server)
        self.charges = RestCharges(server)
        self._openapi: bytes | None = None
        self._claim_tasks: set[asyncio.Task[None]] = set()  # one per connection at most

    def serve(self, connection: "Connection", exchange: Exchange) -> bool:
        """Answer `exchange` if it is ours (`/api/...`, `/openapi.json`); else False."""
        path = exchange.path
        if path != OPENAPI_PATH and not path.startswith("/api/"):
            return False
        exchange.always_headers = self.cors.headers(exchange.headers)
        answers = self._answers(connection)
        if self.cors.is_preflight(exchange.method, exchange.headers):
            self._serve_preflight(answers, exchange)
            return True
        if path == OPENAPI_PATH:
            self._serve_openapi(answers, exchange)
            return True
        try:
            self._serve(answers, exchange)
        except AssertionError:
            raise  # a broken invariant: crash loudly, recover by replay
        except Exception:  # a bug here: the client learns the outcome is unknown
            log.exception("rest request %s %s failed", exchange.method, path)
            if not exchange.answered:
                respond_error(exchange, E.INTERNAL, "internal error: query the outcome")
        return True

    def refuse(self, exchange: Exchange, refusal: str, headers: list[tuple[str, str]]) -> bool:
        """Answer a request of ours on a connection past the caps on open connections: 503
        `TOO_MANY_CONNECTIONS` with `headers` (Retry-After), as every REST error is a JSON
        body; False if the request is not ours (the transport answers it in plain text).
        Before, a REST client got the transport's plain text, which it could not parse."""
        path = exchange.path
        if path != OPENAPI_PATH and not path.startswith("/api/"):
            return False
        exchange.always_headers = self.cors.headers(exchange.headers)
        exchange.respond(503, error_body(E.TOO_MANY_CONNECTIONS, refusal), headers=headers)
        return True

    def http_error(self, path: str, status: int, why: str) -> bytes | None:
        """The JSON error for one of `gateway.http`'s own answers (`HTTP_ERRORS`) to a path
        of ours, as every REST error is; None for another path (its plain text stands).
        Before session 25 a REST client got these as plain text it could not parse."""
        code = HTTP_ERRORS.get(status)
        if code is None or (path != OPENAPI_PATH and not path.startswith("/api/")):
            return None
        return error_body(code, why)

    def _serve_preflight(self, answers: "_Answers", exchange: Exchange) -> None:
        """A listed origin's preflight (`gateway.cors`), charged to its connection's and
        client IP's buckets as a request with no route is and answered 204 with the path's
        methods; a path with no route is 404 as for any method. Unsigned, it proves nothing:
        its connection takes a public place (`RestCharges.as_public`); with none left it is
        answered all the same, then closed, so the signed request the browser sends next goes
        on a new connection, which waits in the reserve as any does (never refused 503: a
        browser app still trades during the flood the reserve is kept for). Before session 27
        it kept its place in the reserve: a connection sending only preflights held one for
        good."""
        self.charges.as_public(answers)
        if self.charges.refused_by_rate(answers, exchange, QUERY_COST_MILLI, True, now_us()):
            return
        if exchange.path == OPENAPI_PATH:
            allowed = ["GET", "HEAD"]
        else:
            allowed = match(exchange.method, exchange.raw_path)[2]
        if not allowed:
            respond_error(exchange, E.UNKNOWN_METHOD, f"no route {exchange.path}", 404)
            return
        exchange.respond(204, b"", headers=self.cors.preflight(allowed))

    def _serve_openapi(self, answers: "_Answers", exchange: Exchange) -> None:
        """The OpenAPI document; another method than GET or HEAD is refused as on any route.
        Charged as a read served here, as every request is: ~17 KB for a request of ~60 bytes
        would otherwise be an amplifier without a limit."""
        if self._refused_a_place(answers, exchange):
            return
        if self.charges.refused_by_rate(answers, exchange, QUERY_COST_MILLI, True, now_us()):
            return
        if exchange.method not in ("GET", "HEAD"):
            respond_not_allowed(exchange, ["GET", "HEAD"])
            return
        if self._openapi is None:
            self._openapi = msgspec.json.encode(openapi())
        exchange.respond(200, self._openapi)

    def closed(self, connection: "Connection") -> None:
        answers: _Answers | None = connection.context
        if answers is not None:
            self._log_unlogged(answers)
            self.server.handler.disconnected(answers.session)

    def _log_unlogged(self, answers: "_Answers") -> None:
        """The refused signatures a closed connection had counted toward a next line that
        will not come, in one line of their own, if any (before session 26 they went
        unsaid: a flood that ended with its connection's close showed only its first line)."""
        if answers.refusals_unlogged:
            where = answers.unlogged_peer or _peer(answers)
            left = {"peer": where, "refusals_unlogged": answers.refusals_unlogged}
            log.warning("rest requests refused before close", extra=left)
            answers.refusals_unlogged, answers.unlogged_peer = 0, None

    def _answers(self, connection: "Connection") -> "_Answers":
        if connection.context is None:
            connection.context = _Answers(self.server, connection)
        answers: _Answers = connection.context
        return answers

    def _serve(self, answers: "_Answers", exchange: Exchange) -> None:
        """Charge, route, check the signature, the params, then run the method. Every request
        is charged first, refused or not, as every websocket frame is: the connection's bucket
        here (who sent it is not proven yet), the account's once the signature is good, the
        client IP's if it is unsigned or its signature is refused."""
        route, in_path, allowed = match(exchange.method, exchange.raw_path)
        if route is not None and route.private:
            exchange.always_headers = (*exchange.always_headers, *PRIVATE_HEADERS)
        session = answers.session
        session.key = None
        cost = cost_milli(route.runs_as) if route is not None else QUERY_COST_MILLI
        unsigned = route is None or not route.private
        if unsigned and self._refused_a_place(answers, exchange):
            return
        if self.charges.refused_by_rate(answers, exchange, cost, unsigned, now_us()):
            return
        if not unsigned and self.charges.address_spent(answers, exchange, cost, now_us()):
            return
        if route is None:
            if allowed:
                respond_not_allowed(exchange, allowed)
                return
            respond_error(exchange, E.UNKNOWN_METHOD, f"no route {exchange.path}", 404)
            return
        if route.private:  # who may call is said before what is wrong with the params
            refused = self._check_signature(answers, exchange)
            if refused is not None:
                self._refuse_signature(answers, exchange, refused, cost)
                return
            nonces = self.server.dispatcher.logons.shared_nonces
            if nonces is None:
                answers.connection.hold_trading()  # a trading session's: the reserve is for it
            else:  # a cluster's gateway: not used on another one? (a trader's once it is not)
                task = asyncio.ensure_future(
                    self._serve_claimed(nonces, answers, exchange, route, in_path, cost)
                )
                self._claim_tasks.add(task)
                task.add_done_callback(self._claimed)
                return
        self._serve_signed(answers, exchange, route, in_path, cost)

    def _refused_a_place(self, answers: "_Answers", exchange: Exchange) -> bool:
        """Count an unsigned request's connection among the public ones, or answer it 503
        `TOO_MANY_CONNECTIONS` and close it (True): the public connections are at their cap,
        the rest of `connections_max` is kept for trading sessions (a connection that sent a
        validly signed request is one: it needs no place). A public read signed anyway (the
        REST client signs every request when it has a key) makes its connection a trader's
        when its signature is good, so a trader whose new connection starts with a read is
        not refused: its signature is checked only then, when no public place is left."""
        connection = answers.connection
        refusal = connection.hold_public()
        if refusal is None:
            return False
        if "x-api-key" in exchange.headers and self._check_signature(answers, exchange) is None:
            answers.session.key = None  # served as the public read it is
            connection.hold_trading()
            return False
        connection.refuse(exchange, refusal)
        return True

    def _refuse_signature(
        self, answers: "_Answers", exchange: Exchange, refused: AuthError, cost: int
    ) -> None:
        """Answer a private request whose signature is refused: 429 if its client IP's
        bucket is empty (`RestCharges.refused_by_address`), else its refusal. Not a trading
        session's, its connection needs a public place: with none left, it is closed after
        this answer (the refusal says more than a 503 would: the client can mend its
        signature)."""
        self.charges.as_public(answers)
        if self.charges.refused_by_address(answers, exchange, cost, now_us()):
            return
        if refused.retry_after_ms is not None:  # the nonces
            respond_limited(exchange, refused.retry_after_ms, refused.limit, refused.message)
            return
        respond_error(exchange, refused.code, refused.message)

    async def _serve_claimed(
        self,
        nonces: "SharedNonces",
        answers: "_Answers",
        exchange: Exchange,
        route: Route,
        in_path: dict[str, int],
        cost: int,
    ) -> None:
        """`_serve`'s rest once the request's nonce is claimed cluster-wide; refused as a
        replay if another gateway (or this one) used it, 503 if that could not be checked.
        Only then is its connection a trader's: a replay is refused as a bad signature is
        (charged to its client IP, its connection public)."""
        api_key, nonce = exchange.headers["x-api-key"], exchange.headers["x-nonce"]
        try:
            await claim_cluster_wide(nonces, self.server.auth, api_key, nonce)
        except AuthError as refused:
            self._log_refusal(answers, api_key, exchange, refused)
            if answers.connection.closed.done():
                return  # gone meanwhile: nothing to answer, no place to count
            if refused.code is E.NONCE_REUSED:
                self._refuse_signature(answers, exchange, _in_header_words(refused), cost)
            elif refused.code is E.BAD_SIGNATURE:  # its key revoked meanwhile: an unknown key's
                said = AuthError(E.BAD_SIGNATURE, REQUEST_NOT_SIGNED)
                self._refuse_signature(answers, exchange, said, cost)
            else:  # unchecked: the venue's, not the client's, so charged nothing more
                respond_error(exchange, refused.code, refused.message)
            return
        if answers.connection.closed.done():
            return  # the client went away meanwhile: nothing is done for a request unanswerable
        answers.connection.hold_trading()
        try:
            self._serve_signed(answers, exchange, route, in_path, cost)
        except AssertionError:
            raise  # a broken invariant: crash loudly (`_claimed`), recover by replay
        except Exception:  # a bug here: the client learns the outcome is unknown
            log.exception("rest request %s %s failed", exchange.method, exchange.path)
            if not exchange.answered:
                respond_error(exchange, E.INTERNAL, "internal error: query the outcome")

    def _claimed(self, task: "asyncio.Task[None]") -> None:
        self._claim_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.server.bus.on_fatal(task.exception())

    def _serve_signed(
        self,
        answers: "_Answers",
        exchange: Exchange,
        route: Route,
        in_path: dict[str, int],
        cost: int,
    ) -> None:
        """`_serve` past the signature: charge the account, check the params, run the method."""
        session = answers.session
        if route.private:
            key = session.key
            assert key is not None, "a good signature names its key"
            # a read-only key's share of its account's bucket, as on the websocket
            bucket = account_bucket(key.account, key.scopes)
            retry = self.server.limiter.charge_account(bucket, cost, now_us())
            if retry:
                respond_limited(exchange, retry, account_limit(bucket))
                return
            # The scope before the params, as the websocket checks it (protocol §3): before
            # session 35 a key without it got the params' 400 first, its 403 only if they were
            # well formed.
            refused = self.server.dispatcher.refusal(session, route.runs_as)
            if refused is not None:
                respond_error(exchange, refused.code, refused.message)
                return
        if route.method in BODY_METHODS and exchange.body:
            content_type = exchange.headers.get("content-type")
            if "content-type" in exchange.repeated:  # two types: how is the body to be read?
                respond_error(exchange, E.BAD_JSON, TYPE_SENT_TWICE, 415)
                return
            if not _is_json_type(content_type):
                shown = "missing" if content_type is None else repr(content_type)
                respond_error(exchange, E.BAD_JSON, NOT_JSON_TYPE.format(shown), 415)
                return
        params = _params(route, exchange, in_path)
        if isinstance(params, wire.WireError):
            respond_error(exchange, params.code, params.message)
            return
        if route.runs_as in LOCAL_READS:
            answers.exchange = exchange
            self._local_read(answers, route, params)
            return
        envelope = {"id": answers.request_id + 1, "method": route.runs_as, "params": params}
        frame = msgspec.json.encode(envelope)
        if len(frame) > wire.MESSAGE_BYTES_MAX:  # the dispatcher's words would be a frame's
            respond_error(exchange, E.MESSAGE_TOO_BIG, _body_too_big(frame, params), 413)
            return
        answers.exchange = exchange
        answers.request_id += 1
        self.server.dispatcher.on_frame(session, frame, charged=True)

    def _check_signature(self, answers: "_Answers", exchange: Exchange) -> AuthError | None:
        headers = exchange.headers
        missing = [name for name in SIGNED_HEADERS if not headers.get(name)]
        if missing:
            names = ", ".join(_header_name(name) for name in missing)
            return AuthError(E.NOT_AUTHENTICATED, f"sign the request: missing {names}")
        for name in SIGNING_HEADERS:
            if name in exchange.repeated:  # which value signed? a proxy may read the first
                return AuthError(E.BAD_PARAM, SENT_TWICE.format(_header_name(name)))
        ts_us = _integer(headers["x-timestamp"])
        window = _integer(headers.get("x-recv-window", str(RECV_WINDOW_MS_DEFAULT)))
        if ts_us is None:
            return AuthError(E.BAD_PARAM, TIMESTAMP_NOT_DIGITS)
        if window is None:
            return AuthError(E.BAD_PARAM, WINDOW_NOT_DIGITS)
        api_key, nonce, sig = headers["x-api-key"], headers["x-nonce"], headers["x-signature"]
        body = exchange.body

        def signature_with(secret: str) -> str:
            return sign_request(
                secret, api_key, ts_us, nonce, window, exchange.method,
                exchange.raw_path, exchange.query, body,
            )  # fmt: skip

        server = self.server
        try:
            key = server.auth.check(api_key, ts_us, nonce, window, sig, now_us(), signature_with)
        except AuthError as refused:
            self._log_refusal(answers, api_key, exchange, refused)
            if refused.code is E.BAD_SIGNATURE:  # `auth` words it for a logon's `sig`
                return AuthError(E.BAD_SIGNATURE, REQUEST_NOT_SIGNED)
            return _in_header_words(refused)
        answers.session.key = key
        return None

    def _log_refusal(
        self, answers: "_Answers", api_key: str, exchange: Exchange, refused: AuthError
    ) -> None:
        now = now_us()
        where = self._peer(answers, exchange)
        if now < answers.refusal_logged_us + REFUSAL_LOG_INTERVAL_US:
            answers.refusals_unlogged += 1
            answers.unlogged_peer = _refused_from(answers.unlogged_peer, where, answers)
            return
        who = {
            "peer": where,
            "api_key": self.server.auth.store.logged(api_key),
            "path": wire.shortened(exchange.path),
        }
        more = {"code": refused.code.name.lower(), "refusals_unlogged": answers.refusals_unlogged}
        log.warning("rest request refused", extra=who | more)
        answers.refusal_logged_us, answers.refusals_unlogged = now, 0
        answers.unlogged_peer = None

    def _peer(self, answers: "_Answers", exchange: Exchange) -> str:
        """The peer's `host:port`, for the log; behind a trusted proxy, `client via
        host:port` (each request's own: a proxy's connection carries many clients')."""
        where = _peer(answers)
        forwarded = exchange.headers.get("x-forwarded-for")
        client = self.server.handler.client_ip(answers.connection, forwarded)
        peer = answers.connection.peer
        return where if not peer or client == str(peer[0]) else f"{client} via {where}"

    def _local_read(self, answers: "_Answers", route: Route, params: dict[str, Any]) -> None:
        """A read the websocket has no method for (charged in `_serve`), answered as its
        queries are (`gateway.rest_reads`)."""
        now = now_us()
        answers.request_id += 1
        result = self.reads.result(route.runs_as, params, route.params, now)
        if isinstance(result, wire.WireError):
            answer = wire.error(answers.request_id, result.code, result.message)
        else:  # market data and candles hold durable trades only
            answer = wire.ok(answers.request_id, result, now, now_us())
        self.server.connections.send(answers.session, answer)


# ----------------------------------------------------------------- requests into params


@functools.cache
def _integer_fields(params: type[wire.Params]) -> frozenset[str]:
    """The fields of a params struct that hold an integer (or nothing)."""
    info = msgspec.inspect.type_info(params)
    assert isinstance(info, msgspec.inspect.StructType), f"{params} is a struct"
    return frozenset(field.name for field in info.fields if _is_integer(field.type))


@functools.cache
def _boolean_fields(params: type[wire.Params]) -> frozenset[str]:
    """The fields of a params struct that hold true or false."""
    info = msgspec.inspect.type_info(params)
    assert isinstance(info, msgspec.inspect.StructType), f"{params} is a struct"
    return frozenset(
        field.name for field in info.fields if _is_kind(field.type, msgspec.inspect.BoolType)
    )


def _is_integer(kind: msgspec.inspect.Type) -> bool:
    return _is_kind(kind, msgspec.inspect.IntType)


def _is_kind(kind: msgspec.inspect.Type, wanted: type[msgspec.inspect.Type]) -> bool:
    if isinstance(kind, msgspec.inspect.UnionType):
        return any(isinstance(member, wanted) for member in kind.types)
    return isinstance(kind, wanted)


def _params(
    route: Route, exchange: Exchange, in_path: dict[str, int]
) -> dict[str, Any] | wire.WireError:
    """The request's params as the websocket method takes them: from the query (GET, DELETE)
    or the JSON body (POST, PATCH), checked against the method's struct; what the struct
    does not check (decimals, symbols, state) is the method's own business."""
    if route.method in ("POST", "PATCH"):
        if exchange.query:
            return wire.WireError(
                None, E.BAD_PARAM, "the params go in the JSON body, not the query"
            )
        try:
            params = msgspec.json.decode(exchange.body or b"{}")
        except msgspec.DecodeError as failure:
            if not exchange.body.strip():  # msgspec: "Input data was truncated"
                return wire.WireError(None, E.BAD_JSON, BODY_BLANK)
            if _OUT_OF_RANGE.search(str(failure)):  # JSON all the same
                if not exchange.body.lstrip().startswith(b"{"):
                    return wire.WireError(None, E.BAD_JSON, BODY_NOT_OBJECT)
                return _number_out_of_range(route, exchange.body)
            problem = _root_words(wire.json_problem(failure, exchange.body or b""))
            return wire.WireError(None, E.BAD_JSON, f"the body is not JSON: {problem}")
        except RecursionError:  # msgspec's guard against nesting that would exhaust the stack
            return wire.WireError(None, E.BAD_JSON, BODY_TOO_DEEP)
        if not isinstance(params, dict):
            return wire.WireError(None, E.BAD_JSON, BODY_NOT_OBJECT)
    else:
        if exchange.body:
            return wire.WireError(None, E.BAD_PARAM, f"a {route.method} request has no body")
        try:  # strictly: a %-escape that is no UTF-8 would be read as U+FFFD, unsaid
            pairs = parse_qsl(exchange.query, keep_blank_values=True, errors="strict")
        except UnicodeDecodeError:
            return wire.WireError(None, E.BAD_PARAM, QUERY_NOT_UTF8)
        params = dict(pairs)
        if len(params) != len(pairs):
            return wire.WireError(None, E.BAD_PARAM, QUERY_REPEATED.format(_repeated(pairs)))
        if "" in params:  # `?=x`
            return wire.WireError(None, E.BAD_PARAM, QUERY_NO_NAME.format(params[""]))
        for name, value in route.defaults:
            params.setdefault(name, str(value))
        for name in _integer_fields(route.params).intersection(params):
            # read here, digits as digits ("05" too, as a path's order id): `convert` reads
            # "1e3" and "2.99..." as well, and refuses "05" as JSON would, saying nothing why
            text = params[name]
            number = _integer(text.removeprefix("-"))
            if number is None:
                return wire.WireError(None, E.BAD_PARAM, QUERY_NOT_INTEGER.format(name, text))
            params[name] = -number if text.startswith("-") else number
        for name in _boolean_fields(route.params).intersection(params):
            text = params[name]
            if text not in QUERY_BOOLEANS:  # exactly as JSON spells them, as the docs say
                return wire.WireError(None, E.BAD_PARAM, QUERY_NOT_BOOLEAN.format(name, text))
            params[name] = QUERY_BOOLEANS[text]
        try:  # "10" -> 10, "true" -> True, as the struct's field types say
            decoded = msgspec.convert(params, route.params, strict=False)
        except msgspec.ValidationError as failure:
            missing = str(failure).startswith("Object missing required field")
            text = wire.enum_choices(str(failure), route.params)
            text = text.replace("`$.", "`").replace(" - at `$`", "")
            for struct_words, query_words in QUERY_WORDS:  # a query has parameters, not fields
                text = text.replace(struct_words, query_words)
            return wire.WireError(None, E.MISSING_PARAM if missing else E.BAD_PARAM, text)
        params = {k: v for k, v in msgspec.to_builtins(decoded).items() if v is not None}
    # The path names the order: a cl_ord_id beside it was told "give only one of order_id
    # and cl_ord_id" before session 35, of an order_id the params did not hold. A null one
    # is none, as a null optional param is (an `order_id` of null is still refused below).
    if in_path and params.get("cl_ord_id") is not None:
        words = _NAMED_BY_THE_PATH.get(route.runs_as, _CL_ORD_ID_IN_PARAMS)
        return wire.WireError(None, E.BAD_PARAM, words)
    for name, value in in_path.items():
        if name in params:
            return wire.WireError(None, E.BAD_PARAM, f"{name} is in the path, not the params")
        if value > wire.INT_MAX:  # said here: the dispatcher would name the frame's `params.`
            return wire.WireError(None, E.BAD_PARAM, PATH_ID_TOO_LARGE.format(name))
        params[name] = value
    return params


# msgspec's words for a number past what it reads without a type (an integer of thousands of
# digits, `1e400`), placed by msgspec only as `$[...]`: the body is JSON all the same
_OUT_OF_RANGE = re.compile(r"^(Integer value|Number) out of range")


def _number_out_of_range(route: Route, body: bytes) -> wire.WireError:
    """What is wrong with a body holding a number msgspec reads only against the params'
    type, in the websocket's words for the same params (`Number out of range - at `qty``,
    `BAD_PARAM`). Before session 26: `BAD_JSON`, `the body is not JSON: Integer value out of
    range - at `$[...]``, neither true nor placed."""
    said = wire.decode_params(wire.Envelope(0, route.runs_as, msgspec.Raw(body)))
    if isinstance(said, wire.WireError):
        return wire.WireError(None, said.code, _body_words(said.message))
    return wire.WireError(None, E.BAD_PARAM, "a number in the body is out of range")


def _repeated(pairs: list[tuple[str, str]]) -> str:
    """The first name of the query's that is given twice (one is)."""
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            return name
        seen.add(name)
    raise AssertionError("a query with a repeated name has one")


def _is_json_type(content_type: str | None) -> bool:
    """Whether a Content-Type says JSON: `application/json`, with a charset of UTF-8 if any
    (`utf8` too, the alias many clients send; RFC 8259 defines no parameter; others are let
    through, as they change nothing)."""
    if content_type is None:
        return False
    media_type, *parameters = content_type.split(";")
    if media_type.strip().lower() != JSON:
        return False
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in UTF8_NAMES:
            return False
    return True


def _body_too_big(frame: bytes, params: dict[str, Any]) -> str:
    """Why a body within `REQUEST_BODY_BYTES_MAX` is too big all the same: its params,
    re-encoded into the request they run as, pass `MESSAGE_BYTES_MAX`."""
    overhead = len(frame) - len(msgspec.json.encode(params))
    return (
        f"the request body is too large: {len(frame) - overhead} bytes as JSON without"
        f" spaces, over the {wire.MESSAGE_BYTES_MAX - overhead} this route takes"
    )


def _in_header_words(refused: AuthError) -> AuthError:
    """A logon's refusal (`ts is ... behind`, `recv_window must be ...`, `nonce already
    used`) said of the request's headers (`X-Timestamp is ...`): a REST user sends no `ts`.
    Before session 25 the logon's words were sent as they were."""
    message = refused.message
    for logon_words, request_words in HEADER_WORDS:
        if logon_words[0] in ";: ":  # inside the message
            message = message.replace(logon_words, request_words)
        elif message.startswith(logon_words):
            message = request_words + message.removeprefix(logon_words)
    return AuthError(refused.code, message, refused.retry_after_ms, refused.limit)


def _body_words(message: str) -> str:
    """An error about a body's params as the dispatcher words it for a frame (`- at `params``,
    `- at `params.qty``), said of the body (`- in the body`, `- at `qty``)."""
    if message.endswith(_AT_PARAMS):
        return message.removesuffix(_AT_PARAMS) + " - in the body"
    return _field_words(message)


def _field_words(message: str) -> str:
    """A field of the params said as REST's request names it (`- at `qty``, of the body or
    of the query), not as the dispatcher words it for a frame (`- at `params.qty``)."""
    return message.replace("- at `params.", "- at `")


def _root_words(problem: str) -> str:
    """`wire.json_problem`'s words for where a body's fault is said of the body: it names
    the root of the JSON read by msgspec's `$` (the body here, a frame on the websocket)."""
    if problem.endswith(_IN_ROOT_KEY):
        return problem.removesuffix(_IN_ROOT_KEY) + " - in a key of the body"
    if problem.endswith(_AT_ROOT):
        return problem.removesuffix(_AT_ROOT) + " - in the body"
    return problem


_AT_PARAMS = " - at `params`"
_AT_PARAM_FIELD = b" - at `params."  # a field's place in an answer's error, as sent
_IN_ROOT_KEY = " - in a key of `$`"
_AT_ROOT = " - at `$`"
_error_decoder = msgspec.json.Decoder(ErrorBody)


# ----------------------------------------------------------------- answers into responses


class _Answer(msgspec.Struct, frozen=True):
    id: int | str | None
    status: int
    result: msgspec.Raw = msgspec.Raw(b"null")
    error: msgspec.Raw = msgspec.Raw(b"")  # empty: none
    retry_after_ms: int | None = None


_answer_decoder = msgspec.json.Decoder(_Answer)


class _Answers:
    """A REST connection as the server's dispatch sees it: a session whose 'websocket' turns
    each answer frame into the HTTP response of the request in flight."""

    def __init__(self, server: "VenueServer", connection: "Connection") -> None:
        self.connection = connection
        self.exchange: Exchange | None = None
        self.request_id = 0
        self.refusal_logged_us = -REFUSAL_LOG_INTERVAL_US  # the first refusal is logged
        self.refusals_unlogged = 0
        # whom those refusals were from, as `rest request refused` names them (`RestApi._peer`:
        # behind a trusted proxy, `client via host:port`), for the line at close; None: none
        self.unlogged_peer: str | None = None
        session_id = server.connections.next_id()
        self.session = Session(session_id, self, trade=True)  # type: ignore[arg-type]

    # what the server's outbox writer uses of a websocket connection
    paused = False
    close_code = None

    @property
    def peer(self) -> Any:
        return self.connection.peer

    @property
    def client_ip(self) -> None:
        """None: the connection's one client is not known behind a proxy (its requests may
        be many clients'); each request's is logged with it (`RestApi._peer`)."""
        return None

    def send_frames(self, frames: list[bytes]) -> bool:
        for frame in frames:
            self._answer(_payload(frame))
        return True

    async def drain(self) -> None:
        return None

    def close(self, code: int, reason: str = "") -> None:
        self.connection.close(code, reason)

    def abort(self) -> None:
        self.connection.abort()

    async def wait_closed(self) -> None:
        await self.connection.wait_closed()

    def _answer(self, payload: bytes) -> None:
        exchange = self.exchange
        if exchange is None or exchange.answered:
            return  # not an answer to the request in flight (no other frame is sent here)
        answer = _answer_decoder.decode(payload)
        if answer.id is not None and answer.id != self.request_id:
            return
        self.exchange = None
        if not len(answer.error):
            exchange.respond(answer.status, bytes(answer.result))
            return
        error = bytes(answer.error)
        if exchange.method in BODY_METHODS:  # its params were the body: say so
            said = _error_decoder.decode(error)
            error = msgspec.json.encode(msgspec.structs.replace(said, msg=_body_words(said.msg)))
        elif _AT_PARAM_FIELD in error:  # its params were the query: a field is named alone
            said = _error_decoder.decode(error)
            error = msgspec.json.encode(msgspec.structs.replace(said, msg=_field_words(said.msg)))
        body = b'{"error":' + error
        headers: list[tuple[str, str]] = []
        if answer.retry_after_ms is not None:
            body += b',"retry_after_ms":' + str(answer.retry_after_ms).encode()
            headers.append(("retry-after", str(math.ceil(answer.retry_after_ms / 1000))))
        exchange.respond(answer.status, body + b"}", headers=headers)


def _payload(frame: bytes) -> bytes:
    """The payload of a server text frame built by `gateway.frames.text_frame`."""
    length = frame[1] & 0x7F
    if length == 126:
        return frame[4:]
    if length == 127:
        return frame[10:]
    return frame[2:]


def _header_name(name: str) -> str:
    return "-".join(part.capitalize() if part != "api" else "API" for part in name.split("-"))


def _peer(answers: _Answers) -> str:
    address = answers.connection.peer
    return f"{address[0]}:{address[1]}" if address else "?"


def _refused_from(said: str | None, peer: str, answers: _Answers) -> str:
    """Whom refusals from `said` (None: none yet) and from `peer` were from: the one client,
    or, behind a proxy whose connection carries several, `clients via host:port`."""
    if said is None or said == peer:
        return peer
    return f"clients via {_peer(answers)}"


# ----------------------------------------------------------------- OpenAPI


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of `ROUTES`, with the schemas of the structs they name."""
    types: list[Any] = [ErrorResponse]
    for route in ROUTES:
        types.append(route.params)
        if route.result is not None:
            types.append(route.result)
    refs, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}"
    )
    _ecma_patterns(components)
    schema_of = dict(zip([id(t) for t in types], refs, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        operation = _operation(route, schema_of, components)
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tokenvenue REST API",
            "version": "1",
            "description": "docs/rest.md; errors carry docs/protocol.md's codes and names.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                name: {"type": "apiKey", "in": "header", "name": _header_name(name)}
                for name in SIGNED_HEADERS
            },
        },
    }


def _ecma_patterns(node: Any) -> None:
    """JSON Schema's `pattern` is an ECMA-262 regular expression, which has no `\\Z`: the
    code's patterns end in it (Python's `$` would let a trailing line feed through), and
    ECMA-262's `$` (no multiline flag) is exactly the end of the input."""
    if isinstance(node, dict):
        pattern = node.get("pattern")
        if isinstance(pattern, str) and pattern.endswith("\\Z"):
            node["pattern"] = pattern.removesuffix("\\Z") + "$"
        for value in node.values():
            _ecma_patterns(value)
    elif isinstance(node, list):
        for value in node:
            _ecma_patterns(value)


def _operation(
    route: Route, schema_of: dict[int, Any], components: dict[str, Any]
) -> dict[str, Any]:
    error = {"application/json": {"schema": schema_of[id(ErrorResponse)]}}
    result: dict[str, Any] = {"type": "object"}
    if route.result is not None:
        result = schema_of[id(route.result)]
    operation: dict[str, Any] = {
        "operationId": route.runs_as.replace(".", "_") + "_" + route.method.lower(),
        "summary": route.summary,
        "responses": {
            "200": {"description": "OK", "content": {JSON: {"schema": result}}},
            "default": {"description": "an error", "content": error},
        },
    }
    if route.private:
        operation["security"] = [{name: [] for name in SIGNED_HEADERS}]
    parameters: list[dict[str, Any]] = []
    if "{order_id}" in route.path:
        parameters.append(
            {"name": "order_id", "in": "path", "required": True,
             "schema": {"type": "integer", "minimum": 1}}
        )  # fmt: skip
    params_schema = components[route.params.__name__]
    # the path names the order: its ids in the params too are refused (400), so not listed
    named = ORDER_IDS if "{order_id}" in route.path else ()
    if route.method in ("POST", "PATCH"):
        body = schema_of[id(route.params)]
        if named:
            properties = params_schema.get("properties", {}).items()
            body = params_schema | {"properties": {k: v for k, v in properties if k not in named}}
        operation["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    else:
        required = set(params_schema.get("required", ())) - {name for name, _ in route.defaults}
        for name, schema in params_schema.get("properties", {}).items():
            if name in named:
                continue
            parameters.append(
                {"name": name, "in": "query", "required": name in required, "schema": schema}
            )
    if parameters:
        operation["parameters"] = parameters
    return operation
