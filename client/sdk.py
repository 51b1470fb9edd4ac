"""The Python client SDK: an asyncio connection to the venue with typed results and pushes.

Owns the client side of the wire: request ids and correlation (each request awaits its one
response), HMAC logon, the trading and query methods, subscriptions, and local books kept
in step with the public `book` channel (`gateway.market_data.LocalBook`: gaps, new epochs
and checksum mismatches trigger a fresh snapshot). Every push is queued for the caller
(`next_push`), book messages too once applied. A quick start that runs as written is in
docs/protocol.md §1 (a test runs it). On reconnect, `resume()` logs on again, enables
cancel-on-disconnect again (if it was on), resubscribes the private stream (if followed)
with `since_seq`, so no private event is missed while the server still retains it, and
follows the same public streams. A request on a closed or closing connection
raises `ConnectionLost` (a `ConnectionError`). It opens packed connections (`?pack=1`,
docs/protocol.md §2.2): each frame is a JSON array of messages, handed to the caller one
by one, in order.
"""

import asyncio
import itertools
import math
import time
from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import State

from client.rest import REFUSED_RETRIES_MAX, retry_after_s
from engine.reasons import ErrorCode
from gateway.auth import RECV_WINDOW_MS_DEFAULT, sign_logon
from gateway.market_data import BOOK_DEPTHS, LocalBook
from gateway.wire import SYMBOLS_PER_REQUEST_MAX

PUSH_QUEUE_MAX = 100_000  # pushes waiting for the caller before the oldest are dropped
REQUEST_TIMEOUT_S = 30.0  # a request unanswered by then raises RequestTimeout
# as a request's `timeout_s` or the client's `request_timeout_s`: wait for the answer however
# long it takes (a long admin command, a query that waits by design)
NO_TIMEOUT = math.inf
RECONNECT_DELAYS_S = (0.1, 0.3, 1.0, 2.0, 5.0)  # then it gives up and says so in a push
# The venue sends a heartbeat after 1 s without any frame (protocol §9.7): a connection silent
# this long has a gateway that hangs or a path that is cut (a machine lost sends no close),
# and is dropped so that auto_resume moves on; websockets' own pings took 20 to 40 s.
SILENCE_TIMEOUT_S = 10.0
SILENCE_CHECK_S = 1.0  # how often the silence is looked at
# A cluster gateway's logon refused 503 NONCE_UNCHECKED (NATS did not answer its nonce claim:
# a node down, a leader election of ~3 s) is signed again with a new nonce and sent again
# after each delay; then the refusal is raised. 7.75 s of pauses, plus per attempt up to 4 s
# of claim (a create, then a read when the key exists, each bounded by 2 s: 6 attempts,
# ~32 s at worst): longer than an election; each attempt within the request timeout.
LOGON_RETRY_DELAYS_S = (0.25, 0.5, 1.0, 2.0, 4.0)
# A logon refused 429 is sent again after its retry_after_ms this many times, all the waits
# within this long: a bucket refills within seconds, and the venue closes a connection not
# logged on 10 s after it opened (4001), so waiting longer would meet a closed connection.
LOGON_RATE_LIMITED_RETRIES_MAX = 3
LOGON_RATE_LIMITED_WAIT_MAX_S = 7.0
# requests that change no order, fund or setting: one whose answer never came is asked again
# safely; for any other the outcome is unknown (`outcome_unknown` on the errors below)
QUERY_METHODS = frozenset(
    {
        "ping",
        "time",
        "instruments",
        "book.snapshot",
        "reserves",
        "balances",
        "orders.open",
        "order.status",
        "orders.history",
        "fills",
        "subscribe",
        "unsubscribe",
        "subscriptions",
        "session.logon",
        "session.status",
    }
)
UNKNOWN_OUTCOME = (  # of an order method: the order's state says whether it was done
    "its outcome is unknown (the venue may have carried it out): check with order_status or"
    " open_orders before sending it again"
)
# Of an admin method, whose effect no order query shows: the venue does one at most once per
# `cl_op_id` (docs/protocol.md §10), so the answer is to send it again under the same one.
ADMIN_UNKNOWN_OUTCOME = (
    "its outcome is unknown (the venue may have carried it out): send it again with the same"
    " cl_op_id {cl_op_id!r}, which the venue does at most once (docs/protocol.md §10)"
)
ADMIN_UNKNOWN_OUTCOME_WITHOUT_ID = (
    "its outcome is unknown (the venue may have carried it out) and it had no cl_op_id: sent"
    " again it may be done twice, so check its effect first; send admin requests with a"
    " cl_op_id, and again with the same one, to have them done at most once"
    " (docs/protocol.md §10)"
)
ISSUE_KEY_UNKNOWN_OUTCOME = (  # no cl_op_id: a key issued is shown only once
    "its outcome is unknown (the venue may have issued the key, whose secret only the lost"
    " answer showed): issue another; with a cl_op_id, sent again under it, the same key would"
    " be shown again"
)


def unknown_outcome(method: str, params: Mapping[str, Any] | None) -> str:
    """What a caller can do about a request that may have been carried out, unanswered."""
    if method.startswith("admin."):
        cl_op_id = (params or {}).get("cl_op_id")
        if cl_op_id is None and method == "admin.issue_key":
            return ISSUE_KEY_UNKNOWN_OUTCOME
        if cl_op_id is None:
            return ADMIN_UNKNOWN_OUTCOME_WITHOUT_ID
        return ADMIN_UNKNOWN_OUTCOME.format(cl_op_id=cl_op_id)
    return UNKNOWN_OUTCOME


class OrderResult(msgspec.Struct, frozen=True):
    """The result of order.place / order.cancel / order.amend: the order after the command."""

    seq: int  # the venue's command sequence number
    order_id: int | None = None
    status: str | None = None
    cl_ord_id: str | None = None


class ExecReport(msgspec.Struct, frozen=True):
    """An execution report (`type: "exec"`), FIX-style; decimals are strings as sent. The
    order's fields are None in a `rejected` report about no open order (protocol 8.2)."""

    exec_type: str
    status: str
    exec_id: int
    order_id: int | None
    symbol: str | None
    side: str | None
    type: str | None
    tif: str | None
    qty: str | None
    leaves_qty: str | None
    cum_qty: str | None
    cl_ord_id: str | None = None
    price: str | None = None
    avg_px: str | None = None
    last_px: str | None = None
    last_qty: str | None = None
    liquidity: str | None = None
    trade_id: int | None = None
    fee: str | None = None
    fee_asset: str | None = None
    tag: str | None = None
    quote_set: str | None = None
    reason: str | None = None


class BalanceUpdate(msgspec.Struct, frozen=True):
    asset: str
    total: str
    available: str
    held: str


class SettlementLeg(msgspec.Struct, frozen=True, rename={"source": "from", "target": "to"}):
    transfer_id: int
    kind: str
    source: int | None  # None: the counterparty, who is anonymous
    target: int | None
    asset: str
    amount: str


class SettlementReport(msgspec.Struct, frozen=True):
    settlement_id: int
    trade_id: int
    symbol: str
    legs: list[SettlementLeg]


class AccountEvent(msgspec.Struct, frozen=True):
    """One event of the private stream, its payload typed by `type`."""

    seq: int
    epoch: int
    type: str
    data: ExecReport | BalanceUpdate | SettlementReport | dict[str, Any]
    ts: int = 0


_PAYLOADS: dict[str, type[msgspec.Struct]] = {
    "exec": ExecReport,
    "balance": BalanceUpdate,
    "settlement": SettlementReport,
}


def packed_url(url: str) -> str:
    """`url` asking for packed frames (`pack=1`), unless its query already says."""
    query = url.partition("?")[2]
    if any(option.startswith("pack=") for option in query.split("&")):
        return url
    return f"{url}&pack=1" if query else f"{url}?pack=1"


def account_event(push: dict[str, Any]) -> AccountEvent | None:
    """The typed form of a private-stream push (None for snapshots and other channels).

    Unknown fields are ignored, as the protocol asks of clients.
    """
    if push.get("ch") != "account" or "data" not in push:
        return None
    kind = _PAYLOADS.get(push.get("type", ""))
    data: Any = msgspec.convert(push["data"], kind) if kind is not None else push["data"]
    return AccountEvent(push["seq"], push["epoch"], push["type"], data, push.get("ts", 0))


class VenueError(Exception):
    """The venue answered a request with an error; `code`, `name`, `status` as sent, and a
    429's `retry_after_ms` (when a retry passes; None on other errors), also in the message."""

    def __init__(
        self,
        status: int,
        code: int,
        name: str,
        msg: str,
        data: Any = None,
        retry_after_ms: int | None = None,
    ) -> None:
        text = f"{status} {name} ({code}): {msg}"
        if retry_after_ms is not None:
            text += f" (retry after {retry_after_ms} ms)"
        super().__init__(text)
        self.status = status
        self.code = code
        self.name = name
        self.data = data
        self.retry_after_ms = retry_after_ms


class PartlyDone(VenueError):
    """A 409 answer: an `order.batch` or `quote.mass` of which some commands were refused
    (all of them, perhaps) and the others done. `results` is the answer's list, one entry
    per command with its own `status` and `result` or `error` (docs/protocol.md §5.4, §5.5):
    what was done (a quote placed, say) is in it, so look before sending it again. `name` is
    `PARTLY_DONE` and `code` 0: the protocol gives a 409 no code of its own."""

    def __init__(self, method: str, results: list[dict[str, Any]]) -> None:
        refused = [(i, r.get("error", {})) for i, r in enumerate(results) if r["status"] != 200]
        text = f"{method} partly done: {len(results) - len(refused)} of {len(results)} done"
        if refused:
            index, error = refused[0]
            text += (
                f", {len(refused)} refused, the first (#{index}) {error.get('name', '?')}:"
                f" {error.get('msg', '')}; see .results"
            )
        super().__init__(409, 0, "PARTLY_DONE", text)
        self.method = method
        self.results = results


class ConnectionLost(ConnectionError):
    """A request met a closed connection (`sent` False: it never left, nothing happened) or
    its connection closed before the answer (`sent` True: for a request not in
    QUERY_METHODS, `outcome_unknown`). The message says which, and whether auto_resume is
    reopening the connection or gave up; of an outcome unknown, what to do about it (for an
    order method, check the order; for an admin method, send it again under its `cl_op_id`:
    `unknown_outcome`)."""

    def __init__(
        self,
        message: str,
        method: str,
        sent: bool,
        params: Mapping[str, Any] | None = None,
        hint: str = "",
    ) -> None:
        self.reason = message  # what happened, without the advice (a caller may give its own)
        message += hint  # how to reopen the connection, in the SDK's terms
        self.outcome_unknown = sent and method not in QUERY_METHODS
        if self.outcome_unknown:
            message += f": {unknown_outcome(method, params)}"
        super().__init__(message)
        self.method = method
        self.sent = sent


class RequestTimeout(TimeoutError):
    """No answer to a request within its timeout. It may have reached the venue: for a
    request not in QUERY_METHODS `outcome_unknown` is True and the message says so, and what
    to do about it (`unknown_outcome`). A late answer, if one comes, is queued as a push
    (`next_push`)."""

    def __init__(
        self,
        method: str,
        request_id: int,
        timeout_s: float,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        message = f"no answer to {method} (id {request_id}) within {timeout_s:g} s"
        self.outcome_unknown = method not in QUERY_METHODS
        if self.outcome_unknown:
            message += f": {unknown_outcome(method, params)}"
        super().__init__(message)
        self.method = method
        self.request_id = request_id
        self.timeout_s = timeout_s


class PushesDropped(Exception):
    """Private-stream events were dropped unread: the push queue was full (`pushes_max`,
    the oldest go first). `count` of them, the first with account `seq` `first_seq`."""

    def __init__(self, count: int, first_seq: int, pushes_max: int) -> None:
        super().__init__(
            f"{count} private-stream events from seq {first_seq} on were dropped unread, the"
            f" push queue being full ({pushes_max:,} pushes): read pushes sooner;"
            " subscribe_account() sends the account's state now (a snapshot)"
        )
        self.count = count
        self.first_seq = first_seq


class VenueClient:
    """One connection. With `auto_resume`, a connection that drops is reopened (one try
    after each of `reconnect_delays_s`, then a `gave_up` notice), logged on again and
    resubscribed with since_seq. A logon refused 503 `NONCE_UNCHECKED` (a cluster gateway
    could not check its nonce) is signed anew and sent again after each of
    `logon_retry_delays_s`, then raised. A handshake refused 503 with `Retry-After` (too many
    connections from this address) is tried again after it, up to `refused_retries_max` times,
    then raised (`InvalidStatus`). `other_urls` are the same venue's other gateways (a
    cluster's, docs/cluster.md): after a try at the current URL fails, auto_resume tries the
    next, in turn, so a client whose gateway died resumes on another with `since_seq` (the
    private stream's seqs are the same on every gateway); `url` is the one connected last.
    A connection that sends no frame for `silence_timeout_s` (the venue sends a heartbeat
    after 1 s of quiet) is dropped, with a `silent` notice: a hung gateway or a cut path.
    `packed` (the default) asks for packed frames: fewer frames
    to read, the same messages. A request unanswered within `request_timeout_s`
    raises `RequestTimeout`; `request(..., timeout_s=)` overrides it for one call. NO_TIMEOUT
    (math.inf) waits without a limit, for one call or, as `request_timeout_s`, for all (None
    there means the same); a timeout of 0 or less is a ValueError. At most `pushes_max`
    pushes wait unread; past that the oldest are dropped, and the next `next_push` says so
    (a `pushes_dropped` notice), the next `next_account_event` too if private-stream events
    were among them (`PushesDropped`).

    Past 400 lines (638 since session 25, 461 before it) with a reason, and a split due: it
    is one connection, and its requests, reader, pushes, subscriptions and resume all share
    the socket, the requests in flight and the session it remembers (credentials, COD,
    streams). The trading calls (`place` ... `balances`, thin wrappers of `request`) and the
    resume (`resume`, `_follow_again`, `_resume_with_backoff`, `_watch_silence`) are the
    parts to move out first."""

    def __init__(
        self,
        url: str,
        auto_resume: bool = False,
        packed: bool = True,
        *,
        reconnect_delays_s: Iterable[float] = RECONNECT_DELAYS_S,
        request_timeout_s: float | None = REQUEST_TIMEOUT_S,
        logon_retry_delays_s: Iterable[float] = LOGON_RETRY_DELAYS_S,
        refused_retries_max: int = REFUSED_RETRIES_MAX,
        pushes_max: int = PUSH_QUEUE_MAX,
        other_urls: Iterable[str] = (),
        silence_timeout_s: float | None = SILENCE_TIMEOUT_S,
    ) -> None:
        if pushes_max < 1:  # asyncio.Queue(0) would have no bound at all
            raise ValueError(f"pushes_max must be at least 1, not {pushes_max}")
        self.url = url
        # every gateway auto_resume may reopen on, in the order tried: `url` first
        self.urls = (url, *(other for other in other_urls if other != url))
        self.request_timeout_s = request_timeout_s  # checked: see the property
        self.packed = packed
        self.auto_resume = auto_resume
        self.reconnect_delays_s = tuple(reconnect_delays_s)
        self.logon_retry_delays_s = tuple(logon_retry_delays_s)
        self.logon_retries = 0  # logons sent again after NONCE_UNCHECKED, for tests and logs
        self.refused_retries_max = refused_retries_max
        self.refused_retries = 0  # handshakes tried again after a 503 with Retry-After
        self.resumed = 0  # how many times the connection was reopened
        self.gave_up = False  # auto_resume tried every delay and failed; connect() clears it
        self._closing = False
        self.websocket: ClientConnection | None = None
        self.pushes: asyncio.Queue[dict[str, Any]] = asyncio.Queue(pushes_max)
        self.pushes_dropped = 0  # unread pushes dropped, the queue being full, since the start
        self._dropped_untold = 0  # of those, how many no `pushes_dropped` notice told yet
        self._account_dropped_untold: tuple[int, int] | None = None  # (count, first seq)
        self.books: dict[str, LocalBook] = {}  # symbol -> the local book kept in sync
        self.account_seq = 0  # the last private seq seen, for since_seq on reconnect
        self.resyncs = 0
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        if silence_timeout_s is not None:  # 0 would drop every connection at once
            _check_timeout("silence_timeout_s", silence_timeout_s)
        # a connection that sent no frame for this long is dropped (None: never)
        self.silence_timeout_s = silence_timeout_s
        self.silences = 0  # connections dropped for their silence, for tests and logs
        self._dropped_silent = False  # the last connection was dropped as silent
        self._last_frame_s = 0.0  # time.monotonic() when the connection last sent a frame
        self._credentials: tuple[str, str] | None = None
        self._account_followed = False  # subscribed to the private stream (resume() again)
        self._cod_enabled = False  # session.cod on for this connection: resume() turns it on
        self._book_depths: dict[str, int] = {}
        # the other public streams followed (`trades:{sym}`, `candles:{sym}:{interval}`, ...),
        # by name, in the order subscribed: resume() follows them again
        self._streams: dict[str, None] = {}
        self._resuming: asyncio.Task[None] | None = None
        self._resyncing: set[asyncio.Task[Any]] = set()  # books subscribed again after a gap

    @property
    def request_timeout_s(self) -> float | None:
        """Every request's timeout but one given its own `timeout_s` (NO_TIMEOUT or None:
        none). Set at construction or later, it is checked alike: 0 or less (or NaN) is a
        ValueError, and the timeout in force is left as it was."""
        return self._request_timeout_s

    @request_timeout_s.setter
    def request_timeout_s(self, timeout_s: float | None) -> None:
        if timeout_s is not None:
            _check_timeout("request_timeout_s", timeout_s)
        self._request_timeout_s = timeout_s

    async def connect(self) -> "VenueClient":
        """Open a new connection. Cancel-on-disconnect is the connection's: a new one starts
        without it, and `resume()` turns it on again only where the last connection had it
        (a user's own `connect()` after `close()` forgets it)."""
        self._cod_enabled = False
        return await self._connect()

    async def _connect(self, url: str | None = None) -> "VenueClient":
        """Open a connection to `url` (default: `self.url`), which becomes `self.url` once
        open (until then, messages name the gateway of the connection that closed)."""
        self._closing = False
        url = self.url if url is None else url
        self.websocket = await self._open(packed_url(url) if self.packed else url)
        self.url = url
        self.gave_up = False
        self._dropped_silent = False  # this one is not (read before it by a resume)
        self._last_frame_s = time.monotonic()
        self._reader = asyncio.create_task(self._read())
        return self

    async def _open(self, url: str) -> ClientConnection:
        """The websocket to `url`; a handshake refused 503 with `Retry-After` (the address
        has the venue's most connections: nothing opened) tried again after it, up to
        `refused_retries_max` times; then, or any other refusal, raised."""
        retries = 0
        while True:
            try:
                return await connect(url, max_size=None, compression=None)
            except InvalidStatus as refused:
                answer = refused.response
                delay_s = retry_after_s(answer.status_code, answer.headers.get("Retry-After"))
                if delay_s is None or retries >= self.refused_retries_max:
                    raise
            retries += 1
            self.refused_retries += 1
            await asyncio.sleep(delay_s)

    async def close(self) -> None:
        self._closing = True
        resuming = self._resuming
        if resuming is not None and resuming is not asyncio.current_task():
            resuming.cancel()  # closed by the caller: no reconnect behind their back
            await asyncio.gather(resuming, return_exceptions=True)
        if self.websocket is not None:
            await self.websocket.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def __aenter__(self) -> "VenueClient":
        return await self.connect()

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # ----------------------------------------------------------------- requests

    async def request(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """Send one request and return its result, or raise `VenueError` (`PartlyDone`, a
        `VenueError`, for a 409: some of a batch's or `quote.mass`'s commands done; and see
        `request_raw`)."""
        response = await self.request_raw(method, params, timeout_s)
        channel = (params or {}).get("ch") if method in ("subscribe", "unsubscribe") else None
        if channel == "account" and response["status"] == 200:  # resume() follows it again
            self._account_followed = method == "subscribe"  # only if followed
        if channel == "book" and method == "unsubscribe" and response["status"] == 200:
            self._forget_books(response["result"]["unsubscribed"])  # not followed on resume
        if channel not in (None, "account", "book") and response["status"] == 200:
            self._note_streams(method, response["result"])  # resume() follows them again
        if method == "session.cod" and response["status"] == 200:  # resume() sets it again
            self._cod_enabled = response["result"]["enabled"]
        if response["status"] == 409 and "result" in response:  # some commands were done
            raise PartlyDone(method, response["result"]["results"])
        if response["status"] != 200:
            error = response.get("error", {})
            raise VenueError(
                response["status"],
                error.get("code", 0),
                error.get("name", "?"),
                error.get("msg", ""),
                error.get("data"),
                response.get("retry_after_ms"),
            )
        return response.get("result")

    async def request_raw(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Send one request and return the whole response envelope, whatever its status.

        Raises `ConnectionLost` (a `ConnectionError`) when the connection is closed or
        closes before the answer, and `RequestTimeout` (a `TimeoutError`) when no answer
        comes within `timeout_s` (None: the client's `request_timeout_s`; NO_TIMEOUT: wait
        however long it takes). A `timeout_s` of 0 or less is a ValueError, raised before
        anything is sent. Before `connect()` it is `ConnectionLost` (not sent)."""
        if self.websocket is None:
            message = f"{method} not sent: not connected to {self.url}; call connect() first"
            raise ConnectionLost(message, method, sent=False)
        if timeout_s is None:
            timeout_s = self.request_timeout_s
        else:
            _check_timeout("timeout_s", timeout_s)
        limit_s = None if timeout_s is None or timeout_s == NO_TIMEOUT else timeout_s
        request_id = next(self._ids)
        deadline = asyncio.timeout(limit_s)
        try:
            async with deadline:  # the send too: it waits while the venue reads nothing
                return await self._request(request_id, method, params)
        except TimeoutError:
            if limit_s is None or not deadline.expired():
                raise
            raise RequestTimeout(method, request_id, limit_s, params) from None

    async def _request(
        self, request_id: int, method: str, params: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        assert self.websocket is not None, "connect first"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        frame = msgspec.json.encode({"id": request_id, "method": method, "params": params or {}})
        try:
            was_open = self.websocket.state is State.OPEN
            try:
                await self.websocket.send(frame, text=True)
            except ConnectionClosed as closed:
                if was_open:  # closed while sending (its drain): the frame may have left
                    message = f"the connection to {self.url} closed while {method} was being sent"
                    raise ConnectionLost(message, method, sent=True, params=params) from closed
                message = f"{method} not sent: the connection to {self.url} is closed ({closed})"
                raise ConnectionLost(message, method, False, hint=self._reopening()) from closed
            try:
                return await future
            except ConnectionLost as lost:
                message = f"the connection to {self.url} closed before the answer to {method}"
                raise ConnectionLost(message, method, sent=True, params=params) from lost
        finally:  # answered, failed or given up on: nothing is left waiting for it
            self._waiting.pop(request_id, None)
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()  # retrieved: no "Future exception was never retrieved"

    def _reopening(self) -> str:
        """What reopens a closed connection: auto_resume under way, or given up, or resume()."""
        if self.gave_up:
            return " and auto_resume gave up reopening it; call resume() to try again"
        if self._resuming is not None and not self._resuming.done():
            return "; auto_resume is reopening it"
        return "; resume() reopens it"

    async def logon(self, api_key: str, secret: str) -> Any:
        """Log on with the key; refused 503 `NONCE_UNCHECKED` (nothing done), signed again
        with a new nonce and sent again after each of `logon_retry_delays_s` (the venue says
        either that or the same message may be sent again: a new nonce is taken through any
        gateway, after a reconnect too). Refused 429 `RATE_LIMITED` (nothing done: the
        address's bucket of refused logons is spent, say by a neighbour behind the same NAT,
        or the key's live nonces), sent again after its `retry_after_ms`, up to
        `LOGON_RATE_LIMITED_RETRIES_MAX` times within `LOGON_RATE_LIMITED_WAIT_MAX_S` in all
        (since session 25: before, raised at once, and
        each such refusal cost `auto_resume` one of its tries). Any other refusal is raised
        at once."""
        self._credentials = (api_key, secret)
        nonce_delays_s = iter(self.logon_retry_delays_s)
        limited = 0
        limited_waited_s = 0.0
        while True:
            try:
                return await self.request("session.logon", self._logon_params(api_key, secret))
            except VenueError as refused:
                delay_s: float | None = None
                if refused.code == ErrorCode.NONCE_UNCHECKED:
                    delay_s = next(nonce_delays_s, None)
                elif (
                    refused.code == ErrorCode.RATE_LIMITED
                    and refused.retry_after_ms is not None
                    and limited < LOGON_RATE_LIMITED_RETRIES_MAX
                    and limited_waited_s + refused.retry_after_ms / 1_000
                    <= LOGON_RATE_LIMITED_WAIT_MAX_S
                ):
                    limited += 1
                    delay_s = refused.retry_after_ms / 1_000
                    limited_waited_s += delay_s
                if delay_s is None:
                    raise
            await asyncio.sleep(delay_s)
            self.logon_retries += 1

    def _logon_params(self, api_key: str, secret: str) -> dict[str, Any]:
        """A logon's params, signed now with a nonce of its own."""
        ts = time.time_ns() // 1_000
        nonce = f"{ts}-{next(self._ids)}"
        sig = sign_logon(secret, api_key, ts, nonce, RECV_WINDOW_MS_DEFAULT)
        return {
            "api_key": api_key,
            "ts": ts,
            "nonce": nonce,
            "sig": sig,
            "recv_window": RECV_WINDOW_MS_DEFAULT,
        }

    async def resume(self, url: str | None = None) -> None:
        """Reconnect, log on again (if `logon` was called), enable cancel-on-disconnect again
        (if `session.cod` enabled it), resubscribe the private stream with since_seq (if it
        was followed: missed events are replayed), the books and the other public streams.
        If a step fails (a logon refused, say), the new connection is closed before the
        failure is raised: a request then raises `ConnectionLost`, never meets a connection
        that is not logged on, and the venue's close of such a connection starts no new
        resume. `url`: reopen on that gateway (another of the venue's), which becomes `url`
        once open; by default the last one."""
        auto_resume, self.auto_resume = self.auto_resume, False  # not while we close it
        try:
            await self.close()
        finally:
            self.auto_resume = auto_resume
        await self._connect(url)  # not `connect`: it keeps the last connection's COD to restore
        try:
            await self._follow_again()
        except Exception:
            await self.close()
            raise

    async def _follow_again(self) -> None:
        """On a new connection: the logon, cancel-on-disconnect, the private stream, the books
        and the other public streams of the last."""
        if self._credentials is not None:
            await self.logon(*self._credentials)
            if self._cod_enabled:  # COD is the connection's: a new one starts without it
                await self.request("session.cod", {"enabled": True})
            if self._account_followed:
                await self.subscribe_account(since_seq=self.account_seq)
        # A copy: the user may follow or drop a book while this awaits (the dict changing size
        # raised RuntimeError, and the resume closed the new connection for it). A book dropped
        # meanwhile is not followed again.
        for symbol, depth in list(self._book_depths.items()):
            if self._book_depths.get(symbol) == depth:
                await self.subscribe_book(symbol, depth)
        for params in _subscriptions(self._streams):
            await self.request("subscribe", params)

    def _note_streams(self, method: str, result: Mapping[str, Any]) -> None:
        """Remember the public streams (not books) a subscribe added, forget those an
        unsubscribe removed, by the names the venue answered."""
        if method == "subscribe":
            self._streams.update(dict.fromkeys(result["subscribed"]))
        else:
            for name in result["unsubscribed"]:
                self._streams.pop(name, None)

    # trading

    async def place(
        self,
        symbol: str,
        side: str,
        qty: str | None = None,
        price: str | None = None,
        type: str = "limit",
        tif: str = "gtc",
        **more: Any,
    ) -> Any:
        params = {"symbol": symbol, "side": side, "type": type, "tif": tif, **more}
        if qty is not None:
            params["qty"] = qty
        if price is not None:
            params["price"] = price
        return await self.request("order.place", params)

    async def place_order(
        self, symbol: str, side: str, qty: str | None = None, price: str | None = None, **more: Any
    ) -> OrderResult:
        """`place`, with the result typed."""
        return msgspec.convert(await self.place(symbol, side, qty, price, **more), OrderResult)

    async def next_account_event(self, timeout_s: float = 5.0) -> AccountEvent:
        """The next private-stream event, typed; other pushes on the way are skipped. Raises
        `PushesDropped` once if private-stream events were dropped unread (a full queue)."""
        async with asyncio.timeout(timeout_s):
            while True:
                if self._account_dropped_untold is not None:
                    (count, first_seq), self._account_dropped_untold = (
                        self._account_dropped_untold,
                        None,
                    )
                    raise PushesDropped(count, first_seq, self.pushes.maxsize)
                event = account_event(await self.pushes.get())
                if event is not None:
                    return event

    async def cancel(self, order_id: int | None = None, cl_ord_id: str | None = None) -> Any:
        return await self.request("order.cancel", _ids_of(order_id, cl_ord_id))

    async def amend(
        self, order_id: int | None = None, cl_ord_id: str | None = None, **changes: Any
    ) -> Any:
        return await self.request("order.amend", _ids_of(order_id, cl_ord_id) | changes)

    async def batch(self, ops: list[dict[str, Any]]) -> dict[str, Any]:
        """Up to 20 ops; the whole envelope (status 200 or 409 with a result per op)."""
        return await self.request_raw("order.batch", {"ops": ops})

    async def cancel_all(self, **filters: Any) -> Any:
        return await self.request("orders.cancel_all", filters)

    async def open_orders(self, symbol: str | None = None) -> Any:
        return await self.request("orders.open", {"symbol": symbol} if symbol else {})

    async def order_status(self, order_id: int | None = None, cl_ord_id: str | None = None) -> Any:
        """One of the account's orders, open or closed (while the venue retains it): a
        closed one has its final `status`, `avg_px`, `reason` and `closed_ts`."""
        return await self.request("order.status", _ids_of(order_id, cl_ord_id))

    async def order_history(
        self,
        status: str = "all",
        symbol: str | None = None,
        since_ts: int | None = None,
        until_ts: int | None = None,
        before_order_id: int | None = None,
        limit: int = 100,
    ) -> Any:
        """One page of the account's orders, newest first: `{orders, next_before_order_id}`;
        pass `next_before_order_id` back as `before_order_id` for the next page (it is None
        after the last). `status` is "open", "closed" or "all"; times are µs."""
        params: dict[str, Any] = {"status": status, "limit": limit}
        optional = {
            "symbol": symbol,
            "since_ts": since_ts,
            "until_ts": until_ts,
            "before_order_id": before_order_id,
        }
        params.update((name, value) for name, value in optional.items() if value is not None)
        return await self.request("orders.history", params)

    async def balances(self) -> Any:
        return await self.request("balances")

    # subscriptions

    async def subscribe_account(self, since_seq: int | None = None) -> Any:
        params: dict[str, Any] = {"ch": "account"}
        if since_seq is not None:
            params["since_seq"] = since_seq
        return await self.request("subscribe", params)

    async def subscribe_book(self, symbol: str, depth: int = BOOK_DEPTHS[0]) -> Any:
        """Follow a symbol's book; the venue serves the smallest depth tier covering `depth`.
        One tier per symbol is kept in `books` (the last asked for; messages of another tier
        still followed are only queued). A subscription the venue refuses is forgotten (the
        tier followed before, if any, is kept), so that `resume()` does not ask for it again."""
        tier = next((t for t in BOOK_DEPTHS if t >= depth), BOOK_DEPTHS[-1])
        before = self._book_depths.get(symbol), self.books.get(symbol)
        self._book_depths[symbol] = tier
        self.books[symbol] = LocalBook(symbol, tier)  # before the answer: its snapshot follows
        try:
            return await self.request(
                "subscribe", {"ch": "book", "symbols": [symbol], "depth": depth}
            )
        except VenueError:  # refused (an unknown symbol, say): nothing was subscribed
            if before[0] is None or before[1] is None:
                self._book_depths.pop(symbol, None)
                self.books.pop(symbol, None)
            else:
                self._book_depths[symbol], self.books[symbol] = before[0], before[1]
            raise

    def _forget_books(self, names: Iterable[str]) -> None:
        """Unsubscribed book streams (`book:{sym}:{tier}`): the local books of those tiers
        are no longer kept nor followed again by `resume()`."""
        for name in names:
            symbol, _, tier = name.removeprefix("book:").rpartition(":")
            if str(self._book_depths.get(symbol)) == tier:
                del self._book_depths[symbol]
                self.books.pop(symbol, None)

    async def next_push(self, timeout_s: float = 5.0) -> dict[str, Any]:
        """The next message nobody awaited, oldest first, as the decoded JSON object.

        That is every push: the private stream (`ch: "account"`: the snapshot, then `exec`,
        `balance`, `settlement`, ...), each public channel followed (book messages too, once
        applied to `books`), `session` pushes, a response whose request nobody awaits, and
        the client's own notices `{"ch": "client", "type": "error" | "gave_up" |
        "book_resync_failed" | "pushes_dropped" | "resumed" | "silent", ...}` (`resumed`:
        auto_resume reopened on another of `urls` than the one dropped, `url` and `from`;
        `silent`: the connection to `url` sent nothing for `silent_s` and was dropped).
        Raises `TimeoutError` when nothing arrives within `timeout_s`. At most `pushes_max`
        (`PUSH_QUEUE_MAX`) wait; past that the oldest are dropped, and the next call returns
        `{"ch": "client", "type": "pushes_dropped", "count": N}` first (with
        `account_events` and `first_account_seq` when private-stream events were among them).
        """
        if self._dropped_untold:
            return self._dropped_notice()
        return await asyncio.wait_for(self.pushes.get(), timeout_s)

    def _dropped_notice(self) -> dict[str, Any]:
        """The notice of the pushes dropped since the last one told."""
        notice: dict[str, Any] = {"ch": "client", "type": "pushes_dropped"}
        notice["count"], self._dropped_untold = self._dropped_untold, 0
        if self._account_dropped_untold is not None:
            notice["account_events"], notice["first_account_seq"] = self._account_dropped_untold
            self._account_dropped_untold = None
        return notice

    # ----------------------------------------------------------------- reading

    async def _read(self) -> None:
        assert self.websocket is not None
        watching = asyncio.get_running_loop().create_task(self._watch_silence(self.websocket))
        try:
            async for frame in self.websocket:
                self._last_frame_s = time.monotonic()
                try:
                    decoded = msgspec.json.decode(frame)
                except ValueError as failure:  # one bad frame only
                    self._queue({"ch": "client", "type": "error", "error": repr(failure)})
                    continue
                # a packed frame is an array of messages, in the order they were sent
                for message in decoded if type(decoded) is list else (decoded,):
                    try:
                        self._on_message(message)
                    except (ValueError, KeyError, TypeError, AttributeError) as failure:
                        self._queue({"ch": "client", "type": "error", "error": repr(failure)})
        except Exception:  # the connection ended; waiting requests learn it below
            pass
        finally:
            watching.cancel()
            for future in self._waiting.values():
                if not future.done():
                    # a signal to `_request`, which words it for its request
                    future.set_exception(ConnectionLost("the connection closed", "", sent=False))
            self._waiting.clear()
            if self.auto_resume and not self._closing:
                self._resuming = asyncio.get_running_loop().create_task(self._resume_with_backoff())

    async def _watch_silence(self, websocket: ClientConnection) -> None:
        """Drop `websocket` once it has sent no frame for `silence_timeout_s` (its reader then
        ends as for any close: requests waiting raise `ConnectionLost`, auto_resume begins),
        saying so in a `silent` notice. A check that comes late (this loop was blocked, and
        frames may wait unread) looks again instead."""
        timeout_s = self.silence_timeout_s
        if timeout_s is None:
            return
        checked_s = time.monotonic()
        while True:
            await asyncio.sleep(SILENCE_CHECK_S)
            now_s = time.monotonic()
            late = now_s - checked_s > 2 * SILENCE_CHECK_S
            checked_s = now_s
            if not late and now_s - self._last_frame_s >= timeout_s:
                break
        self.silences += 1
        self._dropped_silent = True  # its gateway hangs: a resume begins with the next one
        silent_s = round(now_s - self._last_frame_s, 1)
        self._queue({"ch": "client", "type": "silent", "url": self.url, "silent_s": silent_s})
        websocket.transport.abort()  # no closing handshake: the other end does not answer

    async def _resume_with_backoff(self) -> None:
        """One try after each delay: the URL of the last connection first (a blip; the next
        one first if it was dropped as silent: that gateway hangs), then,
        after each failure, the next of `urls` (its gateway may have died: before, every try
        went to the dead one and the client gave up on a cluster that was serving). A
        `resumed` notice says where it resumed; a `gave_up` notice, the last failure."""
        failure: Exception | None = None
        dropped_url = tried_url = self.url
        if self._dropped_silent:  # a hung gateway takes the handshake's 10 s to refuse it
            tried_url = self._next_url(dropped_url)
        for delay in self.reconnect_delays_s:
            await asyncio.sleep(delay)
            if failure is not None:
                tried_url = self._next_url(tried_url)
            try:
                await self.resume(tried_url)
            except Exception as error:  # refused, 503 while the venue stops, logon, ...
                failure = error
                continue
            self.resumed += 1
            if self.url != dropped_url:  # in words: the session now lives on another gateway
                notice = {"type": "resumed", "url": self.url, "from": dropped_url}
                self._queue({"ch": "client", **notice})
            return
        self.gave_up = True
        self._queue({"ch": "client", "type": "gave_up", "url": tried_url, "error": repr(failure)})

    def _next_url(self, url: str) -> str:
        """The gateway after `url` in `urls` (the same again if it is alone)."""
        index = self.urls.index(url) if url in self.urls else -1
        return self.urls[(index + 1) % len(self.urls)]

    def _on_message(self, message: dict[str, Any]) -> None:
        if "id" in message and "status" in message:
            future = self._waiting.pop(message["id"], None) if message["id"] is not None else None
            if future is not None and not future.done():
                future.set_result(message)
            else:
                self._queue(message)  # nobody waits for it (an unreadable frame's error, say)
            return
        channel = message.get("ch")
        book = self.books.get(message.get("sym", "")) if channel == "book" else None
        if book is not None and message.get("depth") == book.depth:  # (not another tier's)
            sync = book.apply(message)
            if sync.resync:
                self.resyncs += 1
                self._resync_book(message["sym"])
        if channel == "account" and "seq" in message:
            self.account_seq = max(self.account_seq, message["seq"])
        self._queue(message)

    def _resync_book(self, symbol: str) -> None:
        """Subscribe the book again after a gap, in the background; if that fails (the
        connection closed meanwhile, a timeout), a client notice says so, `book_resync_failed`
        (a resume subscribes the books again)."""
        task = asyncio.get_running_loop().create_task(
            self.subscribe_book(symbol, self._book_depths[symbol])
        )
        self._resyncing.add(task)
        task.add_done_callback(partial(self._resynced, symbol))

    def _resynced(self, symbol: str, task: "asyncio.Task[Any]") -> None:
        self._resyncing.discard(task)
        if task.cancelled():
            return
        failure = task.exception()  # retrieved: never "Task exception was never retrieved"
        if failure is not None:
            notice = {"type": "book_resync_failed", "sym": symbol, "error": repr(failure)}
            self._queue({"ch": "client", **notice})

    def _queue(self, message: dict[str, Any]) -> None:
        if self.pushes.full():  # the caller is not reading pushes: keep the newest, and say so
            self._dropped(self.pushes.get_nowait())
        self.pushes.put_nowait(message)

    def _dropped(self, message: dict[str, Any]) -> None:
        """Count a push dropped unread, for the next notice (and a private-stream event for
        the next `next_account_event`, which raises `PushesDropped`)."""
        self.pushes_dropped += 1
        self._dropped_untold += 1
        if message.get("ch") == "account" and "seq" in message:
            count, first_seq = self._account_dropped_untold or (0, message["seq"])
            self._account_dropped_untold = (count + 1, first_seq)


def _subscriptions(names: Iterable[str]) -> list[dict[str, Any]]:
    """The `subscribe` params that follow the named public streams again: one request per
    channel (and candle interval), at most `SYMBOLS_PER_REQUEST_MAX` symbols each."""
    symbols_by_kind: dict[tuple[str, str | None], list[str]] = {}
    for name in names:
        channel, _, rest = name.partition(":")
        symbol, interval = rest.rpartition(":")[::2] if channel == "candles" else (rest, None)
        symbols_by_kind.setdefault((channel, interval), []).append(symbol)
    requests = []
    for (channel, interval), symbols in symbols_by_kind.items():
        for start in range(0, len(symbols), SYMBOLS_PER_REQUEST_MAX):
            params: dict[str, Any] = {"ch": channel}
            params["symbols"] = symbols[start : start + SYMBOLS_PER_REQUEST_MAX]
            if interval is not None:
                params["interval"] = interval
            requests.append(params)
    return requests


def _check_timeout(name: str, timeout_s: float) -> None:
    """A timeout must be above 0: 0 would give up before the answer could come, yet perhaps
    after the request left (its outcome unknown). NaN is refused too."""
    if not timeout_s > 0:
        raise ValueError(
            f"{name} must be above 0, not {timeout_s!r}: NO_TIMEOUT (math.inf) waits without a"
            " limit"
        )


def _ids_of(order_id: int | None, cl_ord_id: str | None) -> dict[str, Any]:
    """The order's names as given: both (which the venue refuses, BAD_PARAM) or neither
    (MISSING_PARAM) are sent as they are, never one dropped for the other."""
    ids: dict[str, Any] = {}
    if order_id is not None:
        ids["order_id"] = order_id
    if cl_ord_id is not None:
        ids["cl_ord_id"] = cl_ord_id
    return ids
