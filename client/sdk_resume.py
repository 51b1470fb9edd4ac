"""The SDK's session and resume: the logon, and the reopening of a connection that dropped.

Owns what keeps a `client.sdk.VenueClient` on the venue: the signed logon (sent again when
the venue says it may be: a nonce unchecked, a logon rate-limited), `resume()` (a new
connection that logs on again and follows again the streams of the last: COD, the private
stream from `since_seq`, the books and the other public streams), auto_resume's tries over
the venue's gateways (and `connect_any`'s, at the start), and the silence watch that drops
a connection whose gateway hangs. One resume at a time: a link that drops during a resume's
logon fails that try, and starts no other.
The socket, the requests and the pushes are VenueClient's, of which this is a part.
"""

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.protocol import State

from client.sdk_account_stream import AccountStream
from client.sdk_types import ConnectionLost, VenueError, venue_error
from client.urls import websocket_url
from engine.reasons import ErrorCode
from gateway.auth import LOGGED_ON_ALREADY, RECV_WINDOW_MS_DEFAULT, sign_logon
from gateway.market_data import LocalBook
from gateway.wire import SYMBOLS_PER_REQUEST_MAX

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

# The try whose `setup` the current context runs (its `_following`): that setup's requests
# are not held for it, in whichever task it runs them (asyncio.gather's, Python 3.11's
# wait_for's: children of the try's task, which copy its context). Set around `setup` only,
# so the reader's own tasks (a book's resync), made when it connected, are held.
_SETUP_OF: contextvars.ContextVar["asyncio.Future[BaseException | None] | None"] = (
    contextvars.ContextVar("setup_of", default=None)
)


@dataclass(eq=False)
class LogonSent:
    """One `session.logon` sent by `logon()` (or by `request()`: no key known), with its key
    and the connection it went out on (`over`, set as it leaves: a logon held behind a
    resume's goes out on the resumed connection, not the one it was called on). A logon is
    its connection's: its key is what a resume of THAT connection logs on with while it is
    in flight (unanswered, lost, cancelled, timed out, or waiting to be sent again after a
    NONCE_UNCHECKED or a 429), never a resume of another."""

    key: tuple[str, str] | None
    over: ClientConnection | None = None
    request_id: int | None = None  # its request's, set as it leaves: its answer's id
    # the logon in flight when `logon()` sent this one: what a refusal of this one proves
    # of it, read by its caller or late, is `_answered`'s one rule
    earlier: "LogonSent | None" = None
    # refused 429 or 503, which the venue may give before any handler runs: its refusal
    # proves nothing of `earlier`, which `_answered` walks back past it to (`_refusal_read`)
    proved_nothing: bool = False


# The logon that the current context's `logon()` is sending: `_request` notes it in flight
# over the connection it is sent on (a contextvar: a resume's own logon, in its task, and the
# caller's, in theirs, are each their own).
LOGON_BEING_SENT: contextvars.ContextVar[LogonSent | None] = contextvars.ContextVar(
    "logon_being_sent", default=None
)


class Resuming:
    """The logon and the resume of `VenueClient` (a mixin of it)."""

    if TYPE_CHECKING:  # VenueClient's, which the resume uses
        url: str
        urls: tuple[str, ...]
        auto_resume: bool
        reconnect_delays_s: tuple[float, ...]
        logon_retry_delays_s: tuple[float, ...]
        logon_retries: int
        resumed: int
        gave_up: bool
        _gave_up_on: Exception | None
        silence_timeout_s: float | None
        resume_budget_s: float
        _reconnect_in_s: float | None
        silences: int
        account_seq: int
        _account_stream: AccountStream
        _ids: Iterator[int]
        _credentials: tuple[str, str] | None
        _logon_in_flight: LogonSent | None
        _logged_on_over: ClientConnection | None
        _logons_unanswered: dict[int, LogonSent]
        _cod_enabled: bool
        _account_followed: bool
        _account: int | None
        unlisted: set[str]
        _book_depths: dict[str, int]
        books: dict[str, LocalBook]
        _streams: dict[str, None]
        _dropped_silent: bool
        _last_frame_s: float
        _following: asyncio.Future[BaseException | None] | None
        websocket: ClientConnection | None
        _reader: asyncio.Task[None] | None
        _resuming: asyncio.Task[None] | None
        _follower: asyncio.Task[Any] | None
        _closes: int

        async def request(
            self,
            method: str,
            params: Mapping[str, Any] | None = None,
            timeout_s: float | None = None,
        ) -> Any: ...

        async def close(self) -> None: ...

        async def _close(self) -> None: ...

        async def _connect(self, url: str | None = None, closes: int | None = None) -> Any: ...

        def _start_afresh(self) -> None: ...

        def _reopening(self) -> str: ...

        def _queue(self, message: dict[str, Any]) -> None: ...

        def _follow_account_afresh(self, why: str) -> None: ...

        async def subscribe_account(self, since_seq: int | None = None) -> Any: ...

        async def subscribe_book(self, symbol: str, depth: int = ...) -> Any: ...

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
        at once. Sent again only on the connection it was refused on: a resume of one that
        closed meanwhile (the venue's logon timeout, 4001, say) logs on with this key, and
        its answer is then the session's (`session.status`), or the refusal of the key by
        that resume's logon (401, 403; auto_resume given up at a 503 or 429, a link's
        failure: ConnectionLost) (`_logged_on_by_its_resume`; since session 36: before, the
        retry went out on the resumed connection, logged on as the account before after a
        close/connect, which refused it). A resume logs on with the key of the connection it
        replaces: the one that logged on over it, else that of a logon still in flight over
        it (`LogonSent`), which a later logon refused for its key (401, 403) proves did not
        log on, and one refused "this connection is logged on" proves did (`_answered`);
        the answer of one given up on, read as it comes, says so first (`_late_answer`)."""
        key = (api_key, secret)
        earlier = self._logon_in_flight  # (given up on by its caller, say: `_answered`)
        nonce_delays_s = iter(self.logon_retry_delays_s)
        limited = 0
        limited_waited_s = 0.0
        sent: LogonSent | None = None
        while True:
            if sent is not None and not self._still_open(sent):
                return await self._logged_on_by_its_resume(sent)
            sent = LogonSent(key, earlier=earlier)
            being_sent = LOGON_BEING_SENT.set(sent)
            try:
                answer = await self.request("session.logon", self._logon_params(api_key, secret))
            except VenueError as refused:
                _refusal_read(sent, refused)
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
                    # answered: no longer in flight, so the venue's logon timeout (4001) of its
                    # connection is not a slow logon's, to be resumed (the whole-diff review of
                    # session 35: it was, as the last account or as none)
                    self._answered(sent, earlier, refused)
                    raise
            # (ConnectionLost, RequestTimeout, cancelled: its outcome unknown, it may have run;
            # it stays in flight over its connection, whose resume logs on with its key)
            else:
                self._note_the_account(answer)
                self._credentials = key  # logged on: a resume of this connection logs on so
                self._logged_on_over = sent.over
                self._answered(sent)
                return answer
            finally:
                LOGON_BEING_SENT.reset(being_sent)
            await asyncio.sleep(delay_s)
            self.logon_retries += 1

    def _answered(
        self, sent: LogonSent, earlier: LogonSent | None = None, refused: VenueError | None = None
    ) -> None:
        """`sent` is no longer in flight (unless a later logon's is). Refused "this connection
        is logged on" (BAD_PARAM, §1) over a connection not known to be, it proves that
        `earlier`, in flight over the same connection before it (its caller gave up on it:
        cancelled, timed out), logged on there: the connection is noted logged on with its
        key (before the review of session 36, that refusal erased the only note of its key,
        and the next drop was resumed with no logon, COD nor stream). Refused for its key
        (401, 403: the logon handler's refusals after that check), it proves that `earlier`
        did not log on (the venue handles a connection's logons in order): `earlier` is
        dropped too (before session 36's second review it was kept, and the resume logged on
        with a key refused, and gave up). Refused otherwise (a 429 or 503 the venue may give
        before any handler runs, the account's bucket, say), it proves nothing of `earlier`:
        it stays in flight (until the third review it was dropped, though the connection
        may be logged on, and the next drop was resumed with no logon). `earlier` is the
        nearest logon before `sent` still unanswered, past those answered so (a third logon's
        429 saw the second's, read late, and dropped the first: session 37's re-review)."""
        if self._logon_in_flight is not sent:
            return
        self._logon_in_flight = None
        over = sent.over
        while earlier is not None and earlier.proved_nothing and not self._unanswered(earlier):
            earlier = earlier.earlier
        if earlier is None or over is None or earlier.over is not over or refused is None:
            return
        if not self._unanswered(earlier):  # its own answer, read by now, said what it did
            return
        if _logged_on_already(refused):
            if self._logged_on_over is not over:
                self._logged_on_over = over
                if earlier.key is not None:
                    self._credentials = earlier.key
        elif refused.status not in (401, 403):
            self._logon_in_flight = earlier  # (its outcome as unknown as before `sent`)

    def _unanswered(self, sent: LogonSent) -> bool:
        """Whether no answer to `sent` was read yet (by its caller, or late: `_late_answer`)."""
        return sent.request_id is not None and self._logons_unanswered.get(sent.request_id) is sent

    def _late_answer(self, response: dict[str, Any]) -> None:
        """An answer nobody awaits: if it is a logon's whose caller gave up on it (cancelled,
        timed out), over the live connection, it says whether that logon logged on, and as
        which account. Noted as the caller's own answer would be: the key a resume logs on
        with, the account whose `account_seq` it is (before session 37 it was only queued,
        and the resume guessed: after two logons given up on, of different keys, the later's
        key, though the earlier had logged on; the key of one refused 401 if the next was
        refused 429; after close() and connect() under another account, the account as the
        last answered, so the private stream subscribed over it was not followed again)."""
        request_id = response.get("id")
        if type(request_id) is not int:  # (null: the error of a frame the venue could not read)
            return
        sent = self._logons_unanswered.get(request_id)
        if sent is None or sent.over is not self.websocket:
            return
        del self._logons_unanswered[request_id]
        if response.get("status") != 200:  # refused: it did not log on; of the one before
            # it, what its caller's reading would prove (before session 37's review a 429
            # or 503 from before any handler, read late, dropped that one from flight)
            refused = venue_error(response)
            _refusal_read(sent, refused)
            self._answered(sent, sent.earlier, refused)
            return
        if self._logon_in_flight is sent:
            self._logon_in_flight = None
        self._note_the_account(response.get("result"))
        if sent.key is not None:
            self._credentials = sent.key
        self._logged_on_over = sent.over

    def _still_open(self, sent: LogonSent) -> bool:
        """Whether the connection `sent` was refused on (for now) is still the one, open."""
        websocket = sent.over
        return websocket is None or (websocket is self.websocket and websocket.state is State.OPEN)

    async def _logged_on_by_its_resume(self, sent: LogonSent) -> Any:
        """`sent` waited to be sent again on a connection that has closed: a resume of that
        connection logs on with its key (`_carry_the_logon_in_flight`), so it is not sent on
        the next (the resume's: it refused it, "this connection is logged on", session 36's
        finding). auto_resume's outcome is waited for: the session's status if it logged on
        with this key; the refusal of the key its logon with this key met (401, 403: not a
        link's failure, a 503 or 429, `_link_failure`), if auto_resume gave up at it (since
        session 36's review: before, ConnectionLost, the refusal said only in the `gave_up`
        notice; and until its second review, a 503 or 429 too, as if the key were refused);
        else ConnectionLost, not sent again (auto_resume off or given up otherwise, chained
        to its failure, or this logon a try's own, whose failure moves the resume on)."""
        resumed = (
            self.auto_resume
            and _SETUP_OF.get() is None  # (a try's setup: waiting for the try, a deadlock)
            and await self.wait_resumed()
            and self._logged_on_over is self.websocket
            and self._credentials == sent.key
        )
        if resumed:
            return await self.request("session.status")
        gave_up_on = self._gave_up_on if self.auto_resume and self.gave_up else None
        if isinstance(gave_up_on, VenueError) and self._its_key_was_refused(sent, gave_up_on):
            raise gave_up_on  # (before the review of session 36: ConnectionLost, unsaid)
        message = (
            f"session.logon not sent again: the connection to {self.url} on which it waited to"
            " be sent again closed; a resume of that connection logs on with its key"
        )
        lost = ConnectionLost(message, "session.logon", sent=False, hint=self._reopening())
        raise lost from gave_up_on

    def _its_key_was_refused(self, sent: LogonSent, failure: VenueError) -> bool:
        """Whether the last try of the resume failed at its logon with `sent`'s key: logged on
        with none (`_connect` forgot the last), the key carried being that one, and `failure`
        a refusal of the key (401, 403), not a link's (a 503 or 429 its retries did not
        outlast: since session 36's second review)."""
        carried = self._logged_on_over is None and self._credentials == sent.key
        return carried and not _link_failure(failure)

    def _carry_the_logon_in_flight(self) -> None:
        """Before a resume replaces the connection: the key it logs on with is the one that
        logged on over that connection, else that of a logon in flight over it (lost,
        cancelled, timed out, between its retries), else the one it was opened to log on
        with (a resume's connection: the key of the one it replaced), or none (one of the
        caller's own: `connect()` forgot the last one's). Before session 36, the key of the
        last logon that succeeded on any connection, or lost on one not logged on: after
        close() and connect() under another key whose logon was being retried past the
        venue's logon timeout, the account before."""
        sent, websocket = self._logon_in_flight, self.websocket
        if sent is None or sent.key is None or sent.over is not websocket:
            return
        if self._logged_on_over is not websocket:  # (which the venue would have refused it)
            self._credentials = sent.key

    def _note_the_account(self, answer: Any) -> None:
        """A logon of another account than the last (a client closed and connected again
        under another key) starts the private stream's resume afresh: the last account's
        `account_seq` is not this one's `since_seq` (before session 35 it was, and a seq
        ahead of this account's got a snapshot instead of the events missed, at every
        resume), nor is its stream followed again unless subscribed under this one."""
        account = answer.get("account") if isinstance(answer, dict) else None
        if account != self._account and self._account is not None:
            self.account_seq = 0
            self._account_stream.forget()
            self._account_followed = False
        self._account = account

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
        """Reconnect and set up again what the connection it replaces had: log on again
        (with the key logged on over it, or of a logon in flight over it:
        `_carry_the_logon_in_flight`), enable cancel-on-disconnect again (if `session.cod`
        enabled it on it), resubscribe the private stream with since_seq (if it was followed:
        missed events are replayed), the books and the other public streams followed on it
        (a connection of the caller's own, `connect()`, starts without any), but those of a
        symbol the venue no longer lists (refused UNKNOWN_SYMBOL: dropped once the rest is
        followed, each put in `unlisted` and told by an `unlisted` notice: `_drop_unlisted`).
        If a step fails (a logon refused, say), the new connection is closed before the
        failure is raised: a request then raises `ConnectionLost`, never meets a connection
        that is not logged on, and the venue's close of such a connection starts no new
        resume. `url`: reopen on that gateway (another of the venue's), which becomes `url`
        once open; by default the last one. Requests of other tasks meanwhile wait for it
        (`request_raw`). Cancelled, it closes the new connection too; stopped by `close()`
        (in another task), even while it closes the old link, it raises ConnectionLost."""
        if url is not None:
            url = websocket_url(url)  # as `VenueClient` checks its own (not `?pack=1`'s words)
        closes = self._closes  # noted first: a close() while the old link closes stops it too
        await self._close()  # (its reader's end starts no resume: the client is closing)
        self._carry_the_logon_in_flight()  # (its answer, if it came, was read by then)
        await self._try(url, self._follow_again, closes)

    async def _try(
        self, url: str | None, setup: Callable[[], Awaitable[Any]] | None, closes: int
    ) -> None:
        """One try of a resume or of `connect_any`: a connection to `url` (None: `self.url`)
        and `setup` on it. Meanwhile requests but `setup`'s are held (`_following`), and a
        drop starts no auto_resume (this try fails instead: one resume at a time). A try that
        fails, or is cancelled, closes its connection before it raises: none is left open
        half set up (not logged on, COD off, streams not followed). One that `close()`
        stopped (called since `closes` was noted) raises ConnectionLost."""
        following = self._following = asyncio.get_running_loop().create_future()
        self._follower = asyncio.current_task()
        failure: BaseException | None = None
        try:
            self._check_not_closed(closes)
            await self._connect(url, closes)  # not `connect`: it keeps the last one's COD
            self._check_not_closed(closes)  # (`_connect` reset `_closing`)
            if setup is not None:
                await self._set_up(setup, following)
            self._check_not_closed(closes)
        except BaseException as error:  # cancelled too: held requests are told
            failure = error
            await self._close()
            if isinstance(error, Exception) and self._closes != closes:
                # whatever failed (a request on the link it closed, say), close() is why
                message = f"not connected to {url or self.url}: close() was called meanwhile"
                failure = ConnectionLost(message, "connect", sent=False)
                raise failure from (None if isinstance(error, _ClosedMeanwhile) else error)
            raise
        finally:
            if self._following is following:
                self._following = self._follower = None
            following.set_result(failure)

    @staticmethod
    async def _set_up(
        setup: Callable[[], Awaitable[Any]], following: "asyncio.Future[BaseException | None]"
    ) -> None:
        """Run a try's `setup`, its requests (and those of tasks it starts) not held."""
        token = _SETUP_OF.set(following)
        try:
            await setup()
        finally:
            _SETUP_OF.reset(token)

    def _check_not_closed(self, closes: int) -> None:
        """Stop a try if `close()` was called since `closes` was noted (`_try` says so)."""
        if self._closes != closes:
            raise _ClosedMeanwhile

    async def wait_resumed(self) -> bool:
        """After a request raised `ConnectionLost`: wait until no resume is pending
        (auto_resume's rounds, within its budget; a `resume()` logging on) and say whether
        the connection is back, logged on and following again what it followed, but the
        streams of symbols the venue no longer lists (see `unlisted`) (True), or
        not (False: auto_resume is off, whatever the connection; it gave up; the client was
        closed). Cancelling this wait leaves the resume be."""
        if not self.auto_resume:
            return False
        while (pending := self._pending()) is not None:  # each ends within its budget
            await asyncio.wait({pending})  # (a resume cancelled by close(): not raised here)
        websocket = self.websocket
        return websocket is not None and websocket.state is State.OPEN and not self.gave_up

    def _pending(self) -> "asyncio.Future[Any] | None":
        """What a resume still waits for, but the calling task's own: a closing link's reader
        (its end starts auto_resume), auto_resume's rounds, a `resume()`'s outcome."""
        current = asyncio.current_task()
        websocket, reader = self.websocket, self._reader
        closing = websocket is not None and websocket.state is not State.OPEN
        if closing and reader is not None and not reader.done() and reader is not current:
            return reader
        resuming, following = self._resuming, self._following
        if resuming is not None and not resuming.done() and resuming is not current:
            return resuming
        if following is not None and not following.done() and self._follower is not current:
            return following
        return None

    def _resume_pending(self) -> bool:
        """A resume is under way: auto_resume's rounds, or a `resume()` connecting and
        logging on."""
        resuming = self._resuming
        return self._following is not None or (resuming is not None and not resuming.done())

    async def connect_any(self, setup: Callable[[], Awaitable[Any]] | None = None) -> Any:
        """Open a connection on the first of `urls` that answers and run `setup` on it (the
        caller's logon and subscriptions, say), in rounds as auto_resume's: every one of
        `urls` in turn at once, then again after each of `reconnect_delays_s` (with
        auto_resume off, that one round), no round begun once `resume_budget_s` has passed.
        A try that fails for the link (refused, a handshake refused, a drop or a timeout,
        a 503 answer: the venue stopping) closes its connection, and the next is made; any
        other failure (a logon refused, say) is raised at once, and the last one when no try
        is left. Each try is a resume's (`_try`): a drop during `setup` fails it, and starts
        no auto_resume; `close()` (in another task) stops it, raising ConnectionLost.
        Cancelled, it leaves nothing open. Returns the client, as `connect()`."""
        delays_s = (0.0, *self.reconnect_delays_s) if self.auto_resume else (0.0,)
        started_s = time.monotonic()
        closes = self._closes  # a close() from now on stops it
        failure: BaseException | None = None
        for round_index, delay_s in enumerate(delays_s):
            if not await self._wait_for_round(round_index, delay_s, started_s):
                break
            for url in self.urls:
                try:
                    self._start_afresh()  # as connect(): no logon, COD nor streams yet
                    await self._try(url, setup, closes)
                    return self
                except Exception as error:  # (its connection closed already)
                    if self._closes != closes or not _link_failure(error):
                        raise
                    failure = error
        assert failure is not None, "a first round always begins"
        raise failure

    async def _wait_for_round(self, round_index: int, delay_s: float, started_s: float) -> bool:
        """Wait before the round `round_index` of tries: `delay_s`, cut to what is left of
        `resume_budget_s` since `started_s` (so that no round begins past it); False, at
        once, if nothing is left (a first round always begins)."""
        left_s = self.resume_budget_s - (time.monotonic() - started_s)
        if round_index and left_s <= 0:
            return False
        await asyncio.sleep(max(min(delay_s, left_s), 0.0))
        return True

    async def _follow_again(self) -> None:
        """On a new connection: the logon, cancel-on-disconnect, the private stream, the books
        and the other public streams of the last. The streams refused UNKNOWN_SYMBOL are
        dropped once all the rest is followed (`_drop_unlisted`): a try that fails after
        such a refusal drops nothing of what is followed, and the next try (perhaps on a
        gateway that lists the symbol) follows them again (before session 37's review they
        were forgotten at the refusal, whatever became of the try); the refused book alone
        leaves `books` at its refusal (`_restore_book`: its levels, the closed connection's,
        are stale) until a try follows it again."""
        unlisted: list[tuple[str, VenueError]] = []
        if self._credentials is not None:
            await self.logon(*self._credentials)
            if self._cod_enabled:  # COD is the connection's: a new one starts without it
                await self.request("session.cod", {"enabled": True})
            if self._account_followed:
                since_seq = self._account_stream.since_seq(self.account_seq)
                answer = await self.subscribe_account(since_seq=since_seq)
                if self._account_stream.short_of(answer["seq"]):
                    seen = f"the private stream ends at {answer['seq']}, short of {since_seq + 1}"
                    self._follow_account_afresh(seen)
        # A copy: the user may follow or drop a book while this awaits (the dict changing size
        # raised RuntimeError, and the resume closed the new connection for it). A book dropped
        # meanwhile is not followed again. Only the tiers the venue answered (`subscribe_book`):
        # one asked for meanwhile goes out once this is done.
        for symbol, depth in list(self._book_depths.items()):
            if self._book_depths.get(symbol) != depth:
                continue
            try:
                await self._follow_book_again(symbol, depth)
            except VenueError as error:
                if error.code != ErrorCode.UNKNOWN_SYMBOL:
                    raise
                unlisted.append((f"book:{symbol}:{depth}", error))
        for params in _subscriptions(self._streams):
            await self._follow_streams_again(params, unlisted)
        for stream, refused in unlisted:
            self._drop_unlisted(stream, refused)

    async def _follow_book_again(self, symbol: str, depth: int) -> None:
        """Subscribe the book of `symbol` again at the tier answered, into a fresh local book
        (but one of another tier asked for since, held behind this: that book stays)."""
        book = self.books.get(symbol)
        if book is not None and book.depth != depth:  # another tier's, held behind this
            params = {"ch": "book", "symbols": [symbol], "depth": depth}
            await self.request("subscribe", params)  # (the local book stays the last's)
        else:
            await self.subscribe_book(symbol, depth)

    async def _follow_streams_again(
        self, params: dict[str, Any], unlisted: list[tuple[str, VenueError]]
    ) -> None:
        """Subscribe public streams again (one channel's, several symbols); refused for a
        symbol the venue no longer lists, each symbol again alone, so that those it lists
        are followed and only the others noted in `unlisted` (`_drop_unlisted`)."""
        try:
            await self.request("subscribe", params)
        except VenueError as refused:
            if refused.code != ErrorCode.UNKNOWN_SYMBOL:
                raise
            if len(params["symbols"]) == 1:
                unlisted.append((_stream_name(params), refused))
                return
            for symbol in params["symbols"]:
                await self._follow_streams_again({**params, "symbols": [symbol]}, unlisted)

    def _drop_unlisted(self, stream: str, refused: VenueError) -> None:
        """A stream the resume could not follow again, the venue no longer listing its
        symbol (a venue started again without it, UNKNOWN_SYMBOL): not a failure of the
        resume, which goes on with the others (before session 37 it failed, and auto_resume
        gave up: the whole session lost for one symbol). The stream is forgotten (a book
        leaves `books`), its symbol goes into `unlisted` (read back there: the notice may be
        dropped from a full queue, or skipped by `next_account_event`) and an `unlisted`
        notice tells the caller. A gateway of a cluster that does not list the symbol yet
        (its config behind the others') refuses it alike: the stream is dropped too."""
        symbol = stream.split(":")[1]
        self.unlisted.add(symbol)
        if stream.startswith("book:"):
            self._book_depths.pop(symbol, None)
            self.books.pop(symbol, None)
        self._streams.pop(stream, None)
        notice = {"type": "unlisted", "sym": symbol, "stream": stream, "error": str(refused)}
        self._queue({"ch": "client", **notice})

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
        """Rounds of tries, each after the next of `reconnect_delays_s` (the first after the
        `reconnect_in_ms` of a `shutdown` push, if longer): a round tries every one of `urls`
        in turn, the one dropped first (a blip), or the next if it hangs (dropped as silent)
        or said it stops. No round begins once `resume_budget_s` has passed since the drop,
        or since the end of the `reconnect_in_ms` wait (a wait cut to what is left); none
        either after a try that failed for what it asked, not its link (a logon refused for
        its key, say: the same again on any gateway). A `resumed` notice says where it
        resumed if not there; a `gave_up` one, the last failure."""
        dropped_url = self.url
        stopping = self._reconnect_in_s is not None  # a `shutdown` push came
        reconnect_in_s = self._reconnect_in_s or 0.0
        first_url = self._next_url(dropped_url) if self._dropped_silent or stopping else dropped_url
        if reconnect_in_s:  # the venue is not back before: none of the budget is spent on it
            await asyncio.sleep(reconnect_in_s)
        started_s = time.monotonic()
        failure: Exception | None = None
        tried_url = first_url
        for round_index, delay_s in enumerate(self.reconnect_delays_s):
            wait_s = max(delay_s - reconnect_in_s, 0.0) if round_index == 0 else delay_s
            if not await self._wait_for_round(round_index, wait_s, started_s):
                break
            for tried_url in self._round_from(first_url):
                try:
                    await self.resume(tried_url)
                except Exception as error:  # refused, 503 while the venue stops, logon, ...
                    failure = error
                    if _link_failure(error):
                        continue
                    break  # refused for what it asked: no round would do better
                self.resumed += 1
                if self.url != dropped_url:  # in words: the session now lives elsewhere
                    notice = {"type": "resumed", "url": self.url, "from": dropped_url}
                    self._queue({"ch": "client", **notice})
                return
            if failure is not None and not _link_failure(failure):
                break
        self.gave_up, self._gave_up_on = True, failure
        self._queue({"ch": "client", "type": "gave_up", "url": tried_url, "error": repr(failure)})

    def _round_from(self, url: str) -> list[str]:
        """Every one of `urls` once, in turn, from `url` (first, if not one of them: a
        gateway `resume(url)` chose)."""
        if url not in self.urls:
            return [url, *self.urls]
        index = self.urls.index(url)
        return [*self.urls[index:], *self.urls[:index]]

    def _next_url(self, url: str) -> str:
        """The gateway after `url` in `urls` (the same again if it is alone)."""
        index = self.urls.index(url) if url in self.urls else -1
        return self.urls[(index + 1) % len(self.urls)]


class _ClosedMeanwhile(Exception):
    """A try's own signal that `close()` was called while it ran (`_try` raises
    ConnectionLost for it)."""


def _logged_on_already(refused: VenueError) -> bool:
    """Whether a logon was refused for its connection being logged on already: a BAD_PARAM,
    the code of any malformed param too, so told apart by the venue's words (`gateway.auth`'s,
    which its logon handler sends)."""
    return refused.code == ErrorCode.BAD_PARAM and str(refused).endswith(f": {LOGGED_ON_ALREADY}")


def _refusal_read(sent: LogonSent, refused: VenueError) -> None:
    """Mark `sent` if its refusal proves nothing of the logons before it: neither "this
    connection is logged on" nor a refusal of its key (401, 403), the logon handler's, but a
    429 or 503 the venue may give before any handler runs."""
    sent.proved_nothing = not _logged_on_already(refused) and refused.status not in (401, 403)


def _link_failure(error: BaseException) -> bool:
    """A try failed for its link, not for what was asked: another gateway, or the same one
    later, may do (the socket refused or cut, the handshake refused, no answer in time, a
    503: the venue stopping or not ready; a 429 the logon's own retries did not outlast: the
    address's bucket, which a NAT neighbour may have spent, refills)."""
    if isinstance(error, VenueError):
        return error.status in (429, 503)
    return isinstance(error, OSError | InvalidHandshake | ConnectionClosed | TimeoutError)


def _stream_name(params: Mapping[str, Any]) -> str:
    """The name of the one stream that `subscribe` params of one symbol follow (as the
    venue names it: `trades:{sym}`, `candles:{sym}:{interval}`)."""
    name = f"{params['ch']}:{params['symbols'][0]}"
    return f"{name}:{params['interval']}" if "interval" in params else name


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
