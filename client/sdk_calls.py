"""The SDK's calls: trading, queries and subscriptions, each a thin wrapper of a request.

Owns the methods that name the protocol's requests (`place` ... `balances`), the typed
reading of the private stream (`next_account_event`), and what the subscriptions remember
for a resume: the books followed (one depth tier per symbol, a refused one forgotten, a gap
subscribed again in the background) and the other public streams by name. The connection,
its requests and its pushes are `client.sdk.VenueClient`'s, of which this is a part.
"""

import asyncio
import weakref
from collections.abc import Iterable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import msgspec
from websockets.asyncio.client import ClientConnection
from websockets.protocol import State

from client.sdk_account_stream import AccountStream
from client.sdk_types import (
    AccountEvent,
    ConnectionLost,
    OrderResult,
    PushesDropped,
    VenueError,
    account_event,
)
from engine.reasons import ErrorCode
from gateway.market_data import BOOK_DEPTHS, LocalBook

# The pauses between tries of a private stream's re-follow refused (`_subscribe_account_afresh`)
ACCOUNT_AFRESH_PAUSES_S = (0.5, 1.0, 2.0)


class Calls:
    """The trading, query and subscription calls of `VenueClient` (a mixin of it)."""

    if TYPE_CHECKING:  # VenueClient's, which these calls use
        books: dict[str, LocalBook]
        pushes: asyncio.Queue[dict[str, Any]]
        resyncs: int
        account_seq: int
        _account_stream: AccountStream
        _account_dropped_untold: tuple[int, int] | None
        _book_depths: dict[str, int]
        _books_fed_over: weakref.WeakKeyDictionary[LocalBook, ClientConnection | None]
        _streams: dict[str, None]
        unlisted: set[str]
        _resyncing: set[asyncio.Task[Any]]
        websocket: ClientConnection | None

        async def request(
            self,
            method: str,
            params: Mapping[str, Any] | None = None,
            timeout_s: float | None = None,
        ) -> Any: ...

        async def request_raw(
            self,
            method: str,
            params: Mapping[str, Any] | None = None,
            timeout_s: float | None = None,
        ) -> dict[str, Any]: ...

        def _queue(self, message: dict[str, Any]) -> None: ...

    # ----------------------------------------------------------------- trading

    async def place(
        self,
        symbol: str,
        side: str,
        qty: str | None = None,
        price: str | None = None,
        type: str = "limit",
        tif: str | None = None,
        *,
        once: bool = False,
        **more: Any,
    ) -> Any:
        """Place an order (`more`: the other params, `cl_ord_id=` and so on). Without a `tif`
        a limit order is `gtc` and a market order `ioc` (before session 35, `gtc` for both,
        which the venue refuses a market order). With `once`
        (it needs a `cl_ord_id`) the venue places it at most once per cl_ord_id: after a
        `ConnectionLost` with `outcome_unknown` or a 504 `OUTCOME_UNKNOWN`, send the same call
        again (within 10 minutes: the venue forgets it then); a repeat is refused
        `DUPLICATE_CL_ORD_ID` naming the first order and its status in `VenueError.data`
        (docs/protocol.md §2.4)."""
        if tif is None:
            tif = "ioc" if type == "market" else "gtc"
        params = {"symbol": symbol, "side": side, "type": type, "tif": tif, **more}
        if qty is not None:
            params["qty"] = qty
        if price is not None:
            params["price"] = price
        if once:  # sent only when asked: a place without it is as it always was
            params["once"] = True
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
        """Up to 20 ops; the whole envelope, whatever its status: 200, or 409 with a result
        per op (an op whose outcome a cluster's gateway does not know yet: 504
        `OUTCOME_UNKNOWN` in it), or an error for the whole batch (400: a malformed op,
        nothing applied; 504 `OUTCOME_UNKNOWN`: no op's outcome known)."""
        return await self.request_raw("order.batch", {"ops": ops})

    async def cancel_all(self, **filters: Any) -> Any:
        """`{seq, canceled}`, or `{canceled}` with `quote_set=`. In a cluster at an outage, a
        quote set's cancels may come back in part: a `VenueError` 504 `OUTCOME_UNKNOWN` whose
        `data` is `{canceled, unknown_order_ids}` (the orders whose cancel may still run)."""
        return await self.request("orders.cancel_all", filters)

    async def open_orders(self, symbol: str | None = None) -> Any:
        """The open orders, of `symbol` if given (sent as given: `""` is the venue's to
        refuse; before session 35 it was dropped, and every open order listed)."""
        return await self.request("orders.open", {} if symbol is None else {"symbol": symbol})

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

    async def fills(
        self,
        limit: int = 100,
        since_seq: int | None = None,
        before_seq: int | None = None,
        newest_first: bool = False,
    ) -> list[dict[str, Any]]:
        """Up to `limit` of the account's fills still retained (their `exec` pushes, `seq`
        included), with a seq above `since_seq` and below `before_seq`: oldest first (page on
        with the last `seq` as `since_seq`), or `newest_first` (your last `limit` fills; page
        back with the last `seq` as `before_seq`)."""
        params: dict[str, Any] = {"limit": limit}
        optional = {"since_seq": since_seq, "before_seq": before_seq}
        params.update((name, value) for name, value in optional.items() if value is not None)
        if newest_first:
            params["newest_first"] = True
        fills: list[dict[str, Any]] = (await self.request("fills", params))["fills"]
        return fills

    async def balances(self) -> Any:
        return await self.request("balances")

    # ----------------------------------------------------------------- subscriptions

    async def subscribe_account(self, since_seq: int | None = None) -> Any:
        params: dict[str, Any] = {"ch": "account"}
        if since_seq is not None:
            params["since_seq"] = since_seq
        return await self.request("subscribe", params)

    async def subscribe_book(self, symbol: str, depth: int = BOOK_DEPTHS[0]) -> Any:
        """Follow a symbol's book; the venue serves the smallest depth tier covering `depth`.
        One tier per symbol is kept in `books` (the last asked for; messages of another tier
        still followed are only queued). `resume()` follows again only a subscription the
        venue answered (noted then): not one it refused (the tier followed before, if any,
        is kept), nor one whose outcome is unknown, `ConnectionLost` (not sent, the link
        down, or its answer lost), `RequestTimeout` or cancelled (the caller, told so,
        subscribes again), nor one still unanswered when a resume's try sets up (held
        behind its logon: it goes out on the resumed connection once set up). Since session
        36: before, such a book was noted as it was asked for, and a resume followed it,
        failing (and auto_resume giving up, the session lost) if the venue refused it, a
        symbol mistyped."""
        tier = next((t for t in BOOK_DEPTHS if t >= depth), BOOK_DEPTHS[-1])
        before = self.books.get(symbol)
        book = self.books[symbol] = LocalBook(symbol, tier)  # before the answer: its snapshot
        try:  # follows it
            answer = await self.request(
                "subscribe", {"ch": "book", "symbols": [symbol], "depth": depth}
            )
        except BaseException as failure:  # nothing subscribed, or not known to be
            self._restore_book(symbol, book, before, unlisted=_unlisted(failure))
            raise
        self._book_depths[symbol] = tier  # answered: followed again by a resume
        self.unlisted.discard(symbol)
        self._books_fed_over[book] = self.websocket
        return answer

    def _restore_book(
        self, symbol: str, book: LocalBook, before: LocalBook | None, unlisted: bool = False
    ) -> None:
        """The book of `symbol` after a subscription (of `book`) that subscribed nothing, or
        is not known to have (unless another replaced `book` since): the one before, if the
        live connection feeds it and it is synced. Never a book of a connection gone (one a
        resume did not replace: `subscribe_book` of another tier held behind its logon): a
        fresh one of the tier answered, subscribed again on the live connection (before
        session 36's second review, the old one was put back, still synced, never given the
        new connection's snapshot: stale). Never the stale levels of one not synced (a gap's,
        whose resync failed): `book`, empty, of its tier, awaiting its snapshot (before that
        review, the gapped book's levels were put back). One not synced of another tier: if
        that tier was answered, its snapshot may have come while `book` was kept (ignored):
        a fresh one, subscribed again (until session 36's third review, an empty one awaiting
        a snapshot that had come: empty for good); else a fresh one awaiting the snapshot
        of its subscribe still unanswered. Refused for its symbol, which the venue no longer
        lists (`unlisted`: started again without it), a book of a connection gone is not
        subscribed again (refused alike: a `book_resync_failed` notice besides the resume's
        `unlisted`, since session 37) but dropped."""
        if self.books.get(symbol) is not book:
            return
        websocket = self.websocket
        gone = before is not None and self._books_fed_over.get(before, websocket) is not websocket
        if before is None or (gone and unlisted):
            self.books.pop(symbol, None)
        elif gone:
            self._follow_on_the_live_connection(symbol)
        elif before.synced:
            self.books[symbol] = before
        elif before.depth == book.depth:
            pass  # `book`, of the same tier: the next snapshot of that tier is its
        elif self._book_depths.get(symbol) == before.depth:
            self._follow_on_the_live_connection(symbol)
        else:
            self.books[symbol] = LocalBook(symbol, before.depth)

    def _follow_on_the_live_connection(self, symbol: str) -> None:
        """A fresh local book of the tier of `symbol` answered (which the last resume
        followed), subscribed again for its snapshot if the link is up (else the resume to
        come follows it); none if no tier was answered."""
        tier = self._book_depths.get(symbol)
        if tier is None:
            self.books.pop(symbol, None)
            return
        self.books[symbol] = LocalBook(symbol, tier)
        websocket = self.websocket
        if websocket is not None and websocket.state is State.OPEN:
            self._resync_book(symbol)

    def _forget_books(self, names: Iterable[str]) -> None:
        """Unsubscribed book streams (`book:{sym}:{tier}`): the local books of those tiers
        are no longer kept nor followed again by `resume()`."""
        for name in names:
            symbol, _, tier = name.removeprefix("book:").rpartition(":")
            if str(self._book_depths.get(symbol)) == tier:
                del self._book_depths[symbol]
                self.books.pop(symbol, None)

    def _note_streams(self, method: str, result: Mapping[str, Any]) -> None:
        """Remember the public streams (not books) a subscribe added, forget those an
        unsubscribe removed, by the names the venue answered. A symbol followed again so is
        out of `unlisted` (since session 38; before, only a `subscribe_book` took it out)."""
        if method == "subscribe":
            self._streams.update(dict.fromkeys(result["subscribed"]))
            for name in result["subscribed"]:  # "trades:AAPLx-USD": listed, followed again
                self.unlisted.discard(name.split(":")[1] if ":" in name else name)
        else:
            for name in result["unsubscribed"]:
                self._streams.pop(name, None)

    def _resync_book(self, symbol: str) -> None:
        """Subscribe the book again after a gap, in the background (into a fresh, empty local
        book). If that fails, a client notice says so, `book_resync_failed`, and the book
        stays empty, not synced, until a snapshot of its tier comes: the late answer's, if
        the venue answers it after a `RequestTimeout` (the link up: no resume comes); a
        resume's, if the link dropped (auto_resume, `resume()`); else none: subscribe_book
        again (the gapped book's stale levels are never put back)."""
        task = asyncio.get_running_loop().create_task(
            self.subscribe_book(symbol, self.books[symbol].depth)
        )
        self._resyncing.add(task)
        task.add_done_callback(partial(self._resynced, symbol))

    def _follow_account_afresh(self, why: str) -> None:
        """A resume's replay is not of the stream seen (`client.sdk_account_stream`), `why`:
        a venue started afresh. Say so (`account_restarted`), and follow the stream again
        from a snapshot, in the background, on this connection (`_subscribe_account_afresh`);
        until it comes, `account_seq` is 0, so that a resume meanwhile asks for every event
        the venue still holds."""
        self.account_seq = 0
        error = (
            f"{why}: the venue is not the one seen (started afresh?); the private stream is"
            " followed again from a snapshot"
        )
        self._queue({"ch": "client", "type": "account_restarted", "error": error})
        websocket = self.websocket
        task = asyncio.get_running_loop().create_task(self._subscribe_account_afresh(websocket))
        self._resyncing.add(task)
        task.add_done_callback(partial(self._account_followed_afresh, websocket))

    async def _subscribe_account_afresh(self, websocket: ClientConnection | None) -> None:
        """`subscribe_account()` on `websocket`, tried again after a refusal that heals (429,
        503: its `retry_after_ms`, else `ACCOUNT_AFRESH_PAUSES_S`), as the stream's pushes
        are dropped until its snapshot. It ends once the snapshot has come (a late answer's),
        or `websocket` is no longer the client's open link (a resume follows the stream from
        `account_seq` 0; a connection of the caller's own, `connect()`, follows what it
        subscribes), silently, as on a lost link; a resume's setup still under way on it (a
        book followed again) holds the request until it is done. Any other refusal, the last one, or
        no answer in time raise: `account_restart_failed` says so (`_account_followed_afresh`)."""
        stream = self._account_stream
        for pause_s in (*ACCOUNT_AFRESH_PAUSES_S, None):
            if not stream.restarting or not self._is_the_open_link(websocket):
                return  # (a closed one's request would be held, and sent on the next link)
            try:
                await self.subscribe_account()
                return
            except ConnectionLost:
                return  # the link dropped: the resume follows the stream
            except VenueError as refused:
                if pause_s is None or refused.status not in (429, 503):
                    raise
                retry_after_ms = refused.retry_after_ms
                await asyncio.sleep(retry_after_ms / 1_000 if retry_after_ms else pause_s)

    def _account_followed_afresh(
        self, websocket: ClientConnection | None, task: "asyncio.Task[Any]"
    ) -> None:
        """Say a re-follow's failure, if its connection is still the client's and the stream
        still waits for its snapshot (another connection's resume follows it)."""
        self._resyncing.discard(task)
        if task.cancelled():
            return
        failure = task.exception()  # retrieved: never "Task exception was never retrieved"
        current = self._is_the_open_link(websocket)
        if failure is not None and current and self._account_stream.restarting:
            error = f"{failure!r}: call subscribe_account() to follow the stream again"
            self._queue({"ch": "client", "type": "account_restart_failed", "error": error})

    def _is_the_open_link(self, websocket: ClientConnection | None) -> bool:
        return (
            websocket is self.websocket and websocket is not None and websocket.state is State.OPEN
        )

    def _resynced(self, symbol: str, task: "asyncio.Task[Any]") -> None:
        self._resyncing.discard(task)
        if task.cancelled():
            return
        failure = task.exception()  # retrieved: never "Task exception was never retrieved"
        if failure is not None:
            notice = {"type": "book_resync_failed", "sym": symbol, "error": repr(failure)}
            self._queue({"ch": "client", **notice})


def _unlisted(failure: BaseException) -> bool:
    """A refusal of a symbol the venue does not list (UNKNOWN_SYMBOL)."""
    return isinstance(failure, VenueError) and failure.code == ErrorCode.UNKNOWN_SYMBOL


def _ids_of(order_id: int | None, cl_ord_id: str | None) -> dict[str, Any]:
    """The order's names as given: both (which the venue refuses, BAD_PARAM) or neither
    (MISSING_PARAM) are sent as they are, never one dropped for the other."""
    ids: dict[str, Any] = {}
    if order_id is not None:
        ids["order_id"] = order_id
    if cl_ord_id is not None:
        ids["cl_ord_id"] = cl_ord_id
    return ids
