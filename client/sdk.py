"""The Python client SDK: an asyncio connection to the venue with typed results and pushes.

Owns the client side of the wire: the socket (open, close, the handshake's retries) and the
requests on it (request ids and correlation: each request awaits its one response, held
while a resume logs on, timed out). Its parts: the reader and the queue of pushes for the
caller (`next_push`; book messages too, once applied to the local books,
client/sdk_reader.py), the calls (trading, queries, subscriptions and local books,
client/sdk_calls.py), the logon and `resume()` (client/sdk_resume.py), the typed results and
errors (client/sdk_types.py); every public name is importable from here. A quick start that
runs as written is in docs/protocol.md §1 (a test runs it). A request on a closed or closing
connection raises `ConnectionLost` (a `ConnectionError`). It opens packed connections
(`?pack=1`, docs/protocol.md §2.2): each frame is a JSON array of messages, handed to the
caller one by one, in order.
"""

import asyncio
import itertools
import math
import time
import weakref
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import State

from client.rest import REFUSED_RETRIES_MAX, json_encoded, retry_after_s
from client.sdk_account_stream import AccountStream
from client.sdk_calls import Calls
from client.sdk_reader import PUSH_QUEUE_MAX, Reading
from client.sdk_resume import (
    _SETUP_OF,
    LOGON_BEING_SENT,
    LOGON_RATE_LIMITED_RETRIES_MAX,
    LOGON_RATE_LIMITED_WAIT_MAX_S,
    LOGON_RETRY_DELAYS_S,
    SILENCE_CHECK_S,
    LogonSent,
    Resuming,
    _subscriptions,
)
from client.sdk_types import (
    ADMIN_UNKNOWN_OUTCOME,
    ADMIN_UNKNOWN_OUTCOME_WITHOUT_ID,
    ISSUE_KEY_UNKNOWN_OUTCOME,
    QUERY_METHODS,
    STATE_UNKNOWN_OUTCOME,
    UNKNOWN_OUTCOME,
    AccountEvent,
    BalanceUpdate,
    ConnectionLost,
    ExecReport,
    OrderResult,
    PartlyDone,
    PushesDropped,
    RequestTimeout,
    RequestTooLarge,
    SettlementLeg,
    SettlementReport,
    VenueError,
    account_event,
    unknown_outcome,
    venue_error,
)
from client.urls import EXAMPLE_URL, websocket_url
from gateway.market_data import LocalBook
from gateway.wire import MESSAGE_BYTES_MAX

__all__ = [  # the SDK's public names, wherever they are defined (client.sdk_*)
    "ADMIN_UNKNOWN_OUTCOME",
    "ADMIN_UNKNOWN_OUTCOME_WITHOUT_ID",
    "CLOSE_TIMEOUT_S",
    "EXAMPLE_URL",
    "ISSUE_KEY_UNKNOWN_OUTCOME",
    "LOGON_RATE_LIMITED_RETRIES_MAX",
    "LOGON_RATE_LIMITED_WAIT_MAX_S",
    "LOGON_RETRY_DELAYS_S",
    "NO_TIMEOUT",
    "PUSH_QUEUE_MAX",
    "QUERY_METHODS",
    "RECONNECT_DELAYS_S",
    "REQUEST_TIMEOUT_S",
    "RESUME_BUDGET_S",
    "SILENCE_CHECK_S",
    "SILENCE_TIMEOUT_S",
    "STATE_UNKNOWN_OUTCOME",
    "UNKNOWN_OUTCOME",
    "AccountEvent",
    "BalanceUpdate",
    "ConnectionLost",
    "ExecReport",
    "OrderResult",
    "PartlyDone",
    "PushesDropped",
    "RequestTimeout",
    "RequestTooLarge",
    "SettlementLeg",
    "SettlementReport",
    "VenueClient",
    "VenueError",
    "_subscriptions",
    "account_event",
    "packed_url",
    "unknown_outcome",
]

REQUEST_TIMEOUT_S = 30.0  # a request unanswered by then raises RequestTimeout
# as a request's `timeout_s` or the client's `request_timeout_s`: wait for the answer however
# long it takes (a long admin command, a query that waits by design)
NO_TIMEOUT = math.inf
# auto_resume's waits before each round of tries (every URL in turn): quick for a blip, then
# every 2 s; 29.4 s in all, twice a gateway's restart or a core's takeover (10-15 s)
RECONNECT_DELAYS_S = (0.1, 0.3, 1.0) + (2.0,) * 14
# No round of tries begins this long after the drop, or after the venue's reconnect_in_ms
# (a `shutdown` push's wait, itself at most this long; a round under way is finished): the
# delays' sum bounds the waits, this the time that tries to hung gateways take too.
RESUME_BUDGET_S = 30.0
# The venue sends a heartbeat after 1 s without any frame (protocol §9.7): a connection silent
# this long has a gateway that hangs or a path that is cut (a machine lost sends no close),
# and is dropped so that auto_resume moves on; websockets' own pings took 20 to 40 s.
SILENCE_TIMEOUT_S = 10.0
# A venue answers a closing handshake within a round trip; one that does not in this long
# hangs (SIGSTOPped, its machine lost) and the transport is dropped: websockets waited 10 s,
# which a bot asked to stop, or a resume closing the old link, sat out.
CLOSE_TIMEOUT_S = 2.0


def packed_url(url: str) -> str:
    """`url` asking for packed frames (`pack=1`), unless its query already says."""
    query = url.partition("?")[2]
    if any(option.startswith("pack=") for option in query.split("&")):
        return url
    return f"{url}&pack=1" if query else f"{url}?pack=1"


class VenueClient(Calls, Resuming, Reading):
    """One connection. With `auto_resume`, a connection that drops (but one on which a
    `session.logout` was sent, or asked while the link was down: its end is told by a
    `logged_out` notice; and one closed for its logon timeout, 4001, with no logon sent on
    it: a `gave_up` notice at once) is reopened (a round of
    tries over every URL after each of `reconnect_delays_s`, none begun `resume_budget_s`
    after the drop, or after the venue's `reconnect_in_ms`; then a `gave_up` notice, at once
    if a try is refused for what it asked, a logon for its key), logged on again and
    resubscribed with since_seq. A logon refused 503 `NONCE_UNCHECKED` (a
    cluster gateway could not check its nonce) is signed anew and sent again after each of
    `logon_retry_delays_s`, then raised. A handshake refused 503 with `Retry-After` (too many
    connections from this address) is tried again after it, up to `refused_retries_max` times,
    then raised (`InvalidStatus`). `other_urls` are the same venue's other gateways (a
    cluster's, docs/cluster.md): after a try at the current URL fails, auto_resume tries the
    next, in turn (after a `shutdown` push, the next first, past its `reconnect_in_ms`), so
    a client whose gateway died resumes on another with `since_seq` (the private stream's
    seqs are the same on every gateway); `url` is the one connected last.
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

    It is one connection: the socket and the requests in flight are here; the reader and
    the pushes are `Reading` (client/sdk_reader.py), the calls that name requests (`place`
    ... `subscribe_book`) `Calls` (client/sdk_calls.py), the logon and the resume
    `Resuming` (client/sdk_resume.py), mixed in because all of them share the socket and
    the session it remembers (credentials, COD, streams); their state is set up here, in
    one place."""

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
        resume_budget_s: float = RESUME_BUDGET_S,
    ) -> None:
        if pushes_max < 1:  # asyncio.Queue(0) would have no bound at all
            raise ValueError(f"pushes_max must be at least 1, not {pushes_max}")
        self.url = websocket_url(url)
        # every gateway auto_resume may reopen on, in the order tried: `url` first
        others = (websocket_url(other) for other in other_urls)
        self.urls = (url, *(other for other in others if other != url))
        self.request_timeout_s = request_timeout_s  # checked: see the property
        self.packed = packed
        self.auto_resume = auto_resume
        self.reconnect_delays_s = tuple(reconnect_delays_s)
        _check_timeout("resume_budget_s", resume_budget_s)
        # no round of tries begins this long after the drop (or the reconnect_in_ms wait)
        self.resume_budget_s = resume_budget_s
        # the `reconnect_in_ms` of the connection's `shutdown` push, in s (None: none came)
        self._reconnect_in_s: float | None = None
        self.logon_retry_delays_s = tuple(logon_retry_delays_s)
        self.logon_retries = 0  # logons sent again after NONCE_UNCHECKED, for tests and logs
        self.refused_retries_max = refused_retries_max
        self.refused_retries = 0  # handshakes tried again after a 503 with Retry-After
        self.resumed = 0  # how many times the connection was reopened
        self.gave_up = False  # auto_resume tried every delay and failed; connect() clears it
        self._gave_up_on: Exception | None = None  # the failure it gave up on (its last)
        self._closing = False
        # how many times close() was called: a connect_any or resume() notes it as it
        # starts, and gives up once it has moved (its `_connect` resets `_closing`)
        self._closes = 0
        # the waits of tries that close() cuts short (a handshake's Retry-After): one a try
        self._close_waiters: set[asyncio.Future[None]] = set()
        self.websocket: ClientConnection | None = None
        self.pushes: asyncio.Queue[dict[str, Any]] = asyncio.Queue(pushes_max)
        self.pushes_dropped = 0  # unread pushes dropped, the queue being full, since the start
        self._dropped_untold = 0  # of those, how many no `pushes_dropped` notice told yet
        self._account_dropped_untold: tuple[int, int] | None = None  # (count, first seq)
        self.books: dict[str, LocalBook] = {}  # symbol -> the local book kept in sync
        self.account_seq = 0  # the last private seq seen, for since_seq on reconnect
        self._account_stream = AccountStream()  # what a resume's replay is checked against
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
        # What the connection carries, which a resume of it sets up again on the next (and
        # `connect()` forgets): the key logged on over it (or of a logon in flight over it:
        # `_carry_the_logon_in_flight`), COD, the private stream, the books, the other streams
        self._credentials: tuple[str, str] | None = None
        self._account_followed = False  # subscribed to the private stream (resume() again)
        self._account: int | None = None  # the last logon's: another's starts account_seq anew
        self._cod_enabled = False  # session.cod on for this connection: resume() turns it on
        # the connection on which a `session.logout` was sent (and not refused): its end,
        # whatever its close code (or none: the link dropped), is the session's, not resumed
        self._logout_sent_on: ClientConnection | None = None
        # the last `session.logon` sent and not answered yet (or lost), with the connection
        # it went out on, and the connection a logon succeeded on: a 4001 close of the first's
        # is a slow logon's, resumed with its key, unless the second is the same connection
        self._logon_in_flight: LogonSent | None = None
        self._logged_on_over: ClientConnection | None = None
        # every logon sent over this connection whose answer was not read yet, by request id:
        # one whose caller gave up on it is answered all the same, and that answer, read as
        # it comes (`_late_answer`), says whether it logged on
        self._logons_unanswered: dict[int, LogonSent] = {}
        self._book_depths: dict[str, int] = {}
        # the connection each local book's subscription was answered on (`subscribe_book`): a
        # book of a connection gone is never put back in `books` (`_restore_book`)
        self._books_fed_over: weakref.WeakKeyDictionary[LocalBook, ClientConnection | None] = (
            weakref.WeakKeyDictionary()
        )
        # the other public streams followed (`trades:{sym}`, `candles:{sym}:{interval}`, ...),
        # by name, in the order subscribed: resume() follows them again
        self._streams: dict[str, None] = {}
        # the symbols a resume stopped following, the venue no longer listing them (each told
        # by an `unlisted` notice too, which a full queue may drop): read it back here; a
        # `subscribe_book` of the symbol answered, or `connect()`, takes it out
        self.unlisted: set[str] = set()
        self._resuming: asyncio.Task[None] | None = None
        # while a resume connects and logs on: its outcome (the failure, or None), which
        # requests wait for but its setup's own (`_SETUP_OF`); `_follower`, the try's task
        self._following: asyncio.Future[BaseException | None] | None = None
        self._follower: asyncio.Task[Any] | None = None
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
        """Open a new connection. The logon, cancel-on-disconnect and the subscriptions are
        the connection's: a new one starts without them, and `resume()` sets up again only
        what the connection it replaces had (a user's own `connect()` after `close()`
        forgets the last one's: `_start_afresh`)."""
        self._start_afresh()
        return await self._connect()

    def _start_afresh(self) -> None:
        """Forget what the last connection carried, for a connection of the caller's own
        (`connect()`, a `connect_any` try): its resume logs on with its own logon's key only
        and follows only what was subscribed on it, as it turns COD on only if enabled on it
        (before session 36, after close() and connect() under the same account, a resume
        followed again the last connection's private stream, books and other streams,
        unasked; and one before any logon logged on with the last connection's key). The
        books no connection follows any longer are dropped from `books`."""
        self._credentials = None
        self._cod_enabled = False
        self._account_followed = False
        self._book_depths.clear()
        self.books.clear()
        self._streams.clear()
        self.unlisted.clear()
        self._account_stream.restarting = False  # (its re-follow, if any, was the last's)

    async def _connect(self, url: str | None = None, closes: int | None = None) -> "VenueClient":
        """Open a connection to `url` (default: `self.url`), which becomes `self.url` once
        open (until then, messages name the gateway of the connection that closed). A try's
        (`closes`: close()'s count as it began) gives up once close() is called (`_open`)."""
        self._closing = False
        url = self.url if url is None else url
        # the last connection's notes: its reader has ended (no dead connection kept)
        self._logout_sent_on = self._logon_in_flight = self._logged_on_over = None
        self._logons_unanswered.clear()
        self.websocket = await self._open(packed_url(url) if self.packed else url, closes)
        self.url = url
        self.gave_up, self._gave_up_on = False, None
        self._dropped_silent = False  # this one is not (read before it by a resume)
        self._reconnect_in_s = None  # nor stopping
        self._last_frame_s = time.monotonic()
        self._reader = asyncio.create_task(self._read())
        return self

    async def _open(self, url: str, closes: int | None = None) -> ClientConnection:
        """The websocket to `url`; a handshake refused 503 with `Retry-After` (the address
        has the venue's most connections: nothing opened) tried again after it, up to
        `refused_retries_max` times; then, or any other refusal, raised. A try's (`closes`
        noted) raises the refusal as soon as close() is called: no handshake after it."""
        retries = 0
        while True:
            try:
                return await connect(
                    url, max_size=None, compression=None, close_timeout=CLOSE_TIMEOUT_S
                )
            except InvalidStatus as error:
                refused = error
                answer = refused.response
                delay_s = retry_after_s(answer.status_code, answer.headers.get("Retry-After"))
                if delay_s is None or retries >= self.refused_retries_max:
                    _note_the_answer(refused)
                    raise
            retries += 1
            self.refused_retries += 1
            if not await self._waited_unless_closed(delay_s, closes):
                raise refused  # (`_try` says close() was called)

    async def _waited_unless_closed(self, delay_s: float, closes: int | None) -> bool:
        """Wait `delay_s`, or less: False as soon as close() has been called since `closes`
        was noted (None: nothing noted, the whole wait)."""
        if closes is None:
            await asyncio.sleep(delay_s)
            return True
        closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._close_waiters.add(closed)
        try:
            if self._closes == closes:
                await asyncio.wait({closed}, timeout=delay_s)
        finally:
            self._close_waiters.discard(closed)
        return self._closes == closes

    async def close(self) -> None:
        """Close the connection and stop what would reopen it: auto_resume's rounds, and a
        `connect_any` or a `resume()` under way in another task (each raises ConnectionLost,
        nothing left open; at once if it waits out a handshake's `Retry-After`). The closing
        handshake, for at most `CLOSE_TIMEOUT_S`; then the transport is dropped (a venue that
        hangs)."""
        self._closes += 1  # a try under way sees it once its connect or setup is done
        for waiter in self._close_waiters:  # and one waiting out a Retry-After at once
            if not waiter.done():
                waiter.set_result(None)
        await self._close()

    async def _close(self) -> None:
        """Close the connection and stop auto_resume's rounds, but, unlike `close()`, no try
        of a `connect_any` or a `resume()`: a try's own close, of the last link before it
        reconnects or of the one it gives up on."""
        self._closing = True
        resuming = self._resuming
        if resuming is not None and resuming is not asyncio.current_task():
            resuming.cancel()  # closed by the caller: no reconnect behind their back
            await asyncio.gather(resuming, return_exceptions=True)
        if self.websocket is not None:
            await _close_within(self.websocket, CLOSE_TIMEOUT_S)
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
        if response["status"] == 409 and "result" in response:  # some commands were done
            raise PartlyDone(method, response["result"]["results"])
        if response["status"] != 200:
            raise venue_error(response)
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
        anything is sent. Before `connect()` it is `ConnectionLost` (not sent). While a
        resume logs on (`resume()`, auto_resume), a request is held until it has, then sent
        on the new connection (before: 401 NOT_AUTHENTICATED); `ConnectionLost` (not sent)
        if the resume fails or takes `timeout_s`. A request whose frame is past the venue's
        `MESSAGE_BYTES_MAX` raises `RequestTooLarge` (a `VenueError`) at once, not sent.
        A `session.logout` asked while the link is down (auto_resume waiting between tries,
        or given up; a resume's try that failed while it was held) is not sent, and ends the
        session all the same (`_log_out_while_down`): `ConnectionLost` (not sent) says so."""
        if self.websocket is None and self._following is None:
            message = f"{method} not sent: not connected to {self.url}; call connect() first"
            raise ConnectionLost(message, method, sent=False)
        if timeout_s is None:
            timeout_s = self.request_timeout_s
        else:
            _check_timeout("timeout_s", timeout_s)
        limit_s = None if timeout_s is None or timeout_s == NO_TIMEOUT else timeout_s
        if method == "session.logout" and self._link_is_down():
            await self._log_out_while_down()
        request_id = next(self._ids)
        deadline = asyncio.timeout(limit_s)
        held = True
        try:
            async with deadline:  # the send too: it waits while the venue reads nothing
                await self._after_the_logon(method)
                held = False
                response = await self._request(request_id, method, params)
        except TimeoutError:
            if limit_s is None or not deadline.expired():
                raise
            if held and method == "session.logout":  # the resume would log on again
                await self._log_out_while_down(held_s=limit_s)
            if held:
                message = f"{method} not sent: a resume was still logging on {limit_s:g} s later"
                raise ConnectionLost(message, method, False, hint=self._reopening()) from None
            raise RequestTimeout(method, request_id, limit_s, params) from None
        if response["status"] == 200:
            self._note_what_resume_restores(method, params, response["result"])
        elif method == "session.logout":  # refused (rate-limited, say): the session goes on
            self._logout_sent_on = None
        return response

    def _note_what_resume_restores(
        self, method: str, params: Mapping[str, Any] | None, result: Any
    ) -> None:
        """Note what an answered request turned on or off that `resume()` sets up again on a
        new connection: COD, the private stream, the books and the other public streams.
        Here, not in `request()`, so that `request_raw()` counts too (before session 35 a
        `session.cod` or `subscribe` sent through it was not followed again on resume)."""
        if method == "session.cod":  # resume() sets it again
            self._cod_enabled = result["enabled"]
            return
        if method not in ("subscribe", "unsubscribe"):
            return
        channel = (params or {}).get("ch")
        if channel == "account":  # resume() follows it again, only if followed
            self._account_followed = method == "subscribe"
        elif channel == "book" and method == "unsubscribe":
            self._forget_books(result["unsubscribed"])  # not followed on resume
        elif channel not in (None, "book"):
            self._note_streams(method, result)  # resume() follows them again

    async def _after_the_logon(self, method: str) -> None:
        """Hold a request made while a resume logs on (but the resume's own: the logon and the
        resubscriptions, a connect_any's `setup`, from whichever task they run in) until it
        has; if it failed, raise ConnectionLost (not sent)."""
        following = self._following
        if following is None or _SETUP_OF.get() is following:
            return
        failure = await asyncio.shield(following)  # (a timeout cancels this wait, not it)
        if failure is not None and method == "session.logout":  # the link is still down
            await self._log_out_while_down()
        if failure is not None:
            message = f"{method} not sent: the resume failed ({failure!r})"
            raise ConnectionLost(message, method, False, hint=self._reopening())

    def _link_is_down(self) -> bool:
        """The connection has closed (or is closing) and no resume's try is setting up a new
        one (auto_resume waits between tries, gave up, or is off; the client was closed)."""
        websocket = self.websocket
        return (
            websocket is not None
            and websocket.state is not State.OPEN
            and (self._following is None)
        )

    async def _log_out_while_down(self, held_s: float | None = None) -> NoReturn:
        """End the session for a `session.logout` that meets the link down, or is held
        `held_s` by a resume still logging on when its timeout passes: the link's end ended
        the session at the venue (cancel-on-disconnect fired, if on), so what is left of
        logging out is to stop what would log on again, as `close()` does (auto_resume's
        rounds, a `resume()` under way, its connection closed), and say so: a `logged_out`
        notice, and `ConnectionLost` (not sent). Before the re-review of session 35 it was
        only "not sent", and auto_resume then logged on again, cancel-on-disconnect on; a
        held one's timeout, before session 36."""
        url = self.url
        await self.close()
        self._queue({"ch": "client", "type": "logged_out", "url": url})
        held = "" if held_s is None else f" (held {held_s:g} s by a resume, now stopped)"
        message = (
            f"session.logout not sent{held}: the connection to {url} had closed, which ended its"
            " session (its cancel-on-disconnect fired, if on): the client is logged out,"
            " auto_resume stopped; connect() and logon() begin a new session"
        )
        raise ConnectionLost(message, "session.logout", sent=False)

    async def _request(
        self, request_id: int, method: str, params: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        assert self.websocket is not None, "connect first"
        frame = json_encoded({"id": request_id, "method": method, "params": params or {}})
        if len(frame) > MESSAGE_BYTES_MAX:  # the venue's answer would have no id, or it closes
            raise RequestTooLarge(method, len(frame))
        if method == "session.logout":  # noted before it leaves: the link may drop after it
            self._logout_sent_on = self.websocket
        elif method == "session.logon" and self.websocket.state is State.OPEN:
            # in flight over this connection (its answer may not come before the 4001 close),
            # with its key if `logon()` sends it; not on a closed one, where it is not sent
            sent = LOGON_BEING_SENT.get() or LogonSent(None)
            sent.over, sent.request_id = self.websocket, request_id
            self._logon_in_flight = self._logons_unanswered[request_id] = sent
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        read = False
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
                response = await future
                read = True  # (a logon's answer: its caller reads it)
                return response
            except ConnectionLost as lost:
                message = f"the connection to {self.url} closed before the answer to {method}"
                raise ConnectionLost(message, method, sent=True, params=params) from lost
        finally:  # answered, failed or given up on: nothing is left waiting for it
            self._waiting.pop(request_id, None)
            if not future.done():
                future.cancel()
            elif not future.cancelled() and future.exception() is None:  # (retrieved)
                if read:
                    self._logons_unanswered.pop(request_id, None)
                else:  # answered as its caller gave up on it (cancelled, timed out): noted
                    # all the same, and queued as an answer nobody awaits is (until session
                    # 37's re-review it was lost to the caller: an order's id with it)
                    self._late_answer(future.result())
                    self._queue(future.result())

    def _reopening(self) -> str:
        """What reopens a closed connection: auto_resume under way, or given up, or resume()."""
        if self.gave_up:
            return " and auto_resume gave up reopening it; call resume() to try again"
        if self._resuming is not None and not self._resuming.done():
            return "; auto_resume is reopening it"
        return "; resume() reopens it"


ANSWER_NOTED_MAX = 200  # characters of a refused handshake's body worth showing: a sentence


def _note_the_answer(refused: InvalidStatus) -> None:
    """Add the venue's words to a refused handshake: its `str` is only `server rejected
    WebSocket connection: HTTP 404`, while the venue's body says what to do (`use /ws/trade
    or /ws/public` for a mistyped path)."""
    try:
        body = refused.response.body.decode() if refused.response.body else ""
    except UnicodeDecodeError:  # not the venue's plain text: nothing worth showing
        return
    words = _printable(body)
    if words and len(words) <= ANSWER_NOTED_MAX:
        refused.add_note(f"the venue answered: {words}")


def _printable(text: str) -> str:
    """`text` with each run of unprintable characters (controls, an escape sequence's ESC,
    bidi overrides) and whitespace one space: the note is printed with the traceback, and
    whatever answered at the URL (not always the venue) must not drive the terminal."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


async def _close_within(websocket: ClientConnection, timeout_s: float) -> None:
    """Close `websocket`, dropping its transport if that takes `timeout_s`: websockets' own
    close timeout starts only once the close frame is written, which a venue that reads
    nothing may never let happen."""
    try:
        async with asyncio.timeout(timeout_s):
            await websocket.close()
    except TimeoutError:
        websocket.transport.abort()


def _check_timeout(name: str, timeout_s: float) -> None:
    """A timeout must be above 0: 0 would give up before the answer could come, yet perhaps
    after the request left (its outcome unknown). NaN is refused too."""
    if not timeout_s > 0:
        raise ValueError(
            f"{name} must be above 0, not {timeout_s!r}: NO_TIMEOUT (math.inf) waits without a"
            " limit"
        )
