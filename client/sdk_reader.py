"""The SDK's reader and push queue: every frame the venue sends, and what the caller reads.

Owns the reading of a `client.sdk.VenueClient`'s connection: each frame decoded (a packed
one, a JSON array, message by message, in order), a response handed to the request that
awaits it, a book message applied to its local book (a gap subscribed again), the private
stream's last seq noted for `since_seq` (and a resume's replay checked against the event
seen last: `client.sdk_account_stream`), a `shutdown` push's wait noted for the resume; and
the queue of everything else for `next_push`, bounded by `pushes_max` (past it the oldest are
dropped and the next read says so). At the connection's end, the requests waiting learn it
and auto_resume begins (but at the end of a connection on which a `session.logout` was
sent: a `logged_out` notice says so; nor after a logon timeout's close of one on which no
logon was sent: `gave_up`). The socket and the requests are VenueClient's, of which this is
a part.
"""

import asyncio
import time
from typing import TYPE_CHECKING, Any

import msgspec

from client.sdk_account_stream import AccountStream, Verdict
from client.sdk_types import ConnectionLost
from gateway.limits import LOGON_TIMEOUT_CLOSE_CODE, LOGON_TIMEOUT_S

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

    from client.sdk_resume import LogonSent
    from gateway.market_data import LocalBook

PUSH_QUEUE_MAX = 100_000  # pushes waiting for the caller before the oldest are dropped


class Reading:
    """The reader and the push queue of `VenueClient` (a mixin of it)."""

    if TYPE_CHECKING:  # VenueClient's, which the reader uses
        websocket: ClientConnection | None
        auto_resume: bool
        resume_budget_s: float
        pushes: asyncio.Queue[dict[str, Any]]
        pushes_dropped: int
        books: dict[str, LocalBook]
        account_seq: int
        _account_stream: AccountStream
        resyncs: int
        _dropped_untold: int
        _account_dropped_untold: tuple[int, int] | None
        _waiting: dict[int, asyncio.Future[dict[str, Any]]]
        _closing: bool
        _resuming: asyncio.Task[None] | None
        _reconnect_in_s: float | None
        _last_frame_s: float
        _logout_sent_on: ClientConnection | None
        _logon_in_flight: LogonSent | None
        url: str
        gave_up: bool

        async def _watch_silence(self, websocket: ClientConnection) -> None: ...

        def _resume_pending(self) -> bool: ...

        async def _resume_with_backoff(self) -> None: ...

        def _resync_book(self, symbol: str) -> None: ...

        def _follow_account_afresh(self, why: str) -> None: ...

        def _late_answer(self, response: dict[str, Any]) -> None: ...

    async def next_push(self, timeout_s: float = 5.0) -> dict[str, Any]:
        """The next message nobody awaited, oldest first, as the decoded JSON object.

        That is every push: the private stream (`ch: "account"`: the snapshot, then `exec`,
        `balance`, `settlement`, ...), each public channel followed (book messages too, once
        applied to `books`), `session` pushes, a response whose request nobody awaits, and
        the client's own notices `{"ch": "client", "type": "error" | "gave_up" |
        "book_resync_failed" | "pushes_dropped" | "resumed" | "silent" | "logged_out" |
        "unlisted" | "account_restarted" | "account_restart_failed", ...}`
        (`resumed`: auto_resume reopened on another of `urls` than the one dropped, `url`
        and `from`; `silent`: the connection to `url` sent nothing for `silent_s` and was
        dropped; `logged_out`: the connection to `url` on which a `session.logout` was sent
        has ended, and is not resumed, or a logout was asked while the link was down;
        `unlisted`: a resume could not follow `stream` again, the venue no longer listing
        `sym`, and went on without it, its book gone from `books`; the symbol is kept in
        `unlisted` too, to read back should this notice be dropped; `account_restarted`: a
        resume's replay was not of the private stream seen, a venue started afresh, and the
        stream is followed again from a snapshot; `account_restart_failed`: that failed).
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
        websocket = self.websocket
        assert websocket is not None
        watching = asyncio.get_running_loop().create_task(self._watch_silence(websocket))
        try:
            async for frame in websocket:
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
            logged_out = self._logout_sent_on is websocket
            if logged_out:  # the caller ended the session: whatever closed it, no resume
                self._queue({"ch": "client", "type": "logged_out", "url": self.url})
            # A link that drops while a resume logs on over it fails that resume's try, which
            # goes on with the next: a second resume would be one that no close() could stop.
            if (
                self.auto_resume
                and not self._closing
                and not logged_out
                and not self._resume_pending()
            ):
                self._resume_unless_logon_timed_out(websocket)

    def _resume_unless_logon_timed_out(self, websocket: "ClientConnection") -> None:
        """Start auto_resume's rounds, but not for a connection the venue closed for its
        logon timeout (4001) on which no logon was sent: one never logged on, which a new
        one would repeat every 10 s for as long as the client runs (before session 35 it
        did, unsaid: each such resume succeeded); a `gave_up` notice says why instead. One
        whose logon was sent is resumed: that logon was merely slow (a cluster's nonce
        claim, the logon's own NONCE_UNCHECKED retries), and the resume logs on with its
        key (before the re-review of session 35 it was given up on too)."""
        received = websocket.protocol.close_rcvd
        in_flight = self._logon_in_flight
        logon_sent = in_flight is not None and in_flight.over is websocket
        if received is None or received.code != LOGON_TIMEOUT_CLOSE_CODE or logon_sent:
            self._resuming = asyncio.get_running_loop().create_task(self._resume_with_backoff())
            return
        self.gave_up = True
        error = (
            f"the venue closed the connection {LOGON_TIMEOUT_CLOSE_CODE} ({received.reason!r}):"
            f" it was not logged on within {LOGON_TIMEOUT_S:g} s of opening, and a new one"
            " would be closed alike, so auto_resume does not reopen it: log on within that"
            " time of connect(), or follow the public streams on /ws/public"
        )
        self._queue({"ch": "client", "type": "gave_up", "url": self.url, "error": error})

    def _on_message(self, message: dict[str, Any]) -> None:
        if "id" in message and "status" in message:
            future = self._waiting.pop(message["id"], None) if message["id"] is not None else None
            if future is not None and not future.done():
                future.set_result(message)
            else:  # nobody waits for it (an unreadable frame's error, or a late answer)
                self._late_answer(message)
                self._queue(message)
            return
        channel = message.get("ch")
        book = self.books.get(message.get("sym", "")) if channel == "book" else None
        if book is not None and message.get("depth") == book.depth:  # (not another tier's)
            sync = book.apply(message)
            if sync.resync:
                self.resyncs += 1
                self._resync_book(message["sym"])
        if channel == "account":
            verdict = self._account_stream.admit(message)
            if verdict is not Verdict.KEEP:
                if verdict is Verdict.CHANGED:
                    seq = message.get("seq")
                    self._follow_account_afresh(f"its seq {seq} is not the event seen at {seq}")
                return  # (SEEN: the resume's overlap, read already; STALE: the snapshot sums it)
        if channel == "account" and message.get("type") == "snapshot":
            # the stream's state as of its seq, whatever came before: a venue started afresh
            # (another data directory) counts its seqs from the start again (before session
            # 37 the highest seen was kept, and the next resume's since_seq, past the new
            # venue's, skipped the events up to it)
            self.account_seq = message["seq"]
        elif channel == "account" and "seq" in message:
            self.account_seq = max(self.account_seq, message["seq"])
        elif channel == "session" and message.get("type") == "shutdown":
            self._reconnect_in_s = self._reconnect_in(message.get("reconnect_in_ms"))
        self._queue(message)

    def _reconnect_in(self, reconnect_in_ms: Any) -> float | None:
        """A `shutdown` push's `reconnect_in_ms` in s, at most the resume's budget; a value
        that is no count of ms (a venue's bug) is not obeyed: the resume's delays apply."""
        if type(reconnect_in_ms) is not int or reconnect_in_ms < 0:
            error = f"a shutdown push's reconnect_in_ms is no count of ms: {reconnect_in_ms!r}"
            self._queue({"ch": "client", "type": "error", "error": error})
            return None
        return min(reconnect_in_ms / 1_000, self.resume_budget_s)

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
