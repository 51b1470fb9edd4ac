"""Requests held behind a quote's place in flight, over a cluster's bus, and the frames behind them.

Owns `HeldRequests`: the request of each connection that waits for a place whose outcome has
not come back (`held`, by session), the frames its connection sends meanwhile
(`Session.held`, also behind a logon's nonce claim: `gateway.logon`), their wait's end
(served once the place is back, `resume_held`; refused 503 `QUOTE_PLACE_PENDING` after
`limits.QUOTE_PLACE_WAIT_S`), and their refusal at a stop or a lost lease. The frames held
are handled later in the order they came, through the dispatcher's `on_frame`, which decides
what waits (`Dispatcher._waits_for_places`). Bounded: one held request per connection, and
`limits.HELD_FRAMES_MAX` frames or `limits.HELD_BYTES_MAX` bytes behind it (past them, 1008).
Embedded, nothing is ever held.
"""

import asyncio
import time
from collections import deque
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from engine.reasons import ErrorCode
from gateway import limits, wire
from gateway.sessions import Session

if TYPE_CHECKING:
    from gateway.dispatch import Dispatcher

_monotonic = time.monotonic  # how long a quote's place has been on its way
E = ErrorCode

# what a request still held at a stop is answered (`refuse_held`)
NOT_EXECUTED_AT_STOP = "not executed: the venue is stopping; send it again after reconnecting"
NOT_EXECUTED_AT_LEASE_LOSS = (
    "not executed: the gateway lost its lease while this request waited behind a quote's place;"
    " send it again after reconnecting"
)


class HeldRequests:
    """The requests waiting for places, and the frames behind them, for the dispatcher."""

    def __init__(self, dispatcher: "Dispatcher") -> None:
        self.connections = dispatcher.connections
        self.placed = dispatcher.placed
        # the dispatcher's: the frames held, handled in turn; a served request's failure
        self._on_frame = dispatcher.on_frame
        self._handler_failed = dispatcher._handler_failed
        # the connections whose requests wait for a place: the request, its scope and how to
        # serve it
        self.held: dict[Session, tuple[wire.Request, Any, Callable[[], None]]] = {}

    def hold(
        self,
        session: Session,
        request: wire.Request,
        scope: tuple[int, str, Collection[str] | None],
        serve: Callable[[], None],
        since_s: float,
    ) -> None:
        """Over a cluster's bus: `request` touches a quote whose place is in flight since
        `since_s` (`scope`: account, quote set, symbols or None for all), so it can neither
        amend that quote (its order id is not known yet) nor place a second. It waits for
        the place, and every later frame of its connection waits behind it (`hold_frame`),
        so the connection's requests are still handled in the order they came, none decided
        on what a later one did. `resume_held` serves it once the place is back; if the
        place is not back `limits.QUOTE_PLACE_WAIT_S` after it was sent, `_wait_over`
        refuses it (a core failing over, or none active: its outcome may take long)."""
        self.held[session] = (request, scope, serve)
        session.held = deque()
        session.held_bytes = 0
        self._check_wait_at(since_s, session, request)

    def _check_wait_at(self, since_s: float, session: Session, request: wire.Request) -> None:
        """`_wait_over` once a place sent at `since_s` has waited its time."""
        left_s = since_s + limits.QUOTE_PLACE_WAIT_S - _monotonic()
        asyncio.get_running_loop().call_later(max(left_s, 0.0), self._wait_over, session, request)

    def _wait_over(self, session: Session, request: wire.Request) -> None:
        """A held request's wait is over: refused at once if a place it waits for is still
        not back after `limits.QUOTE_PLACE_WAIT_S`, then the frames held behind it are
        handled in order (each may wait again, or be refused at once likewise). Nothing if
        it was served or dropped meanwhile; waits on if its oldest place came back but a
        later one is still on its way and has time left."""
        entry = self.held.get(session)
        if entry is None or entry[0] is not request:
            return  # served once its place came back, or dropped with its connection
        if session.closing or self.connections.sessions.get(session.id) is not session:
            self._abandon(session)
            return
        since_s = self.placed.placing_since(*entry[1])
        if since_s is None:
            return  # back in the batch being released: `resume_held` serves it next
        if _monotonic() - since_s < limits.QUOTE_PLACE_WAIT_S:
            self._check_wait_at(since_s, session, request)
            return
        del self.held[session]
        later, session.held = session.held, None
        self.refuse_unplaced(session, request, since_s)
        self.handle_later(session, later)

    def refuse_unplaced(self, session: Session, request: wire.Request, since_s: float) -> None:
        """503 `QUOTE_PLACE_PENDING`, nothing done: a quote the request touches is still on
        its way to the core. At once, not behind the answers owed: the place's own answer is
        one of them, and it may be long in coming (a core failing over)."""
        waited_s = _monotonic() - since_s
        message = (
            f"not executed: a quote of this set was sent {waited_s:.1f} s ago and its place has"
            " no outcome from the core yet; send it again once that place has an outcome (its"
            " quote.mass answered, not 504; or its report on the account stream)"
        )
        self.connections.send(session, wire.error(request.id, E.QUOTE_PLACE_PENDING, message))

    def hold_frame(self, session: Session, frame: str | bytes, charged: bool) -> None:
        held = session.held
        assert held is not None
        if session.closing:  # what it held is dropped: nothing after it may run either
            return
        held.append((frame, charged))
        session.held_bytes += len(frame)
        if len(held) > limits.HELD_FRAMES_MAX or session.held_bytes > limits.HELD_BYTES_MAX:
            self._abandon(session)  # pipelined far past a wait: a flood, held in memory
            self.connections.close(session, 1008, "too many requests behind a waiting quote")

    def _abandon(self, session: Session) -> None:
        """Drop what `session` holds, for good: it is closing, and none of its later frames
        may run ahead of the dropped ones (`session.held` stays set: `hold_frame` drops
        them as they come, till the close)."""
        self.held.pop(session, None)
        if session.held is not None:
            session.held.clear()

    def resume_held(self) -> None:
        """Serve the requests that waited for places now back (called once the released
        batch that brought them back is answered, so their answers come after), then the
        frames that came after each, in order, until one has to wait again. A connection
        that closed or is closing meanwhile is dropped: nobody would read the answers, and
        its cancel-on-disconnect pulls what it placed."""
        for session, (request, scope, serve) in list(self.held.items()):
            if session.closing or self.connections.sessions.get(session.id) is not session:
                self._abandon(session)
                continue
            if self.placed.blocked(*scope):
                continue
            del self.held[session]
            later, session.held = session.held, None
            self._serve_held(session, request, serve)
            self.handle_later(session, later)

    def handle_later(self, session: Session, later: deque[tuple[str | bytes, bool]] | None) -> None:
        """The frames held behind a request now served or refused, in order, until one has
        to wait again (the rest wait behind it)."""
        while later:
            if session.held is not None:  # one of them waits again: the rest behind it
                session.held.extend(later)
                break
            frame, charged = later.popleft()
            self._on_frame(session, frame, charged)

    def refuse_held(self) -> None:
        """The venue is stopping and its connections close next (`VenueServer.stop`, once
        its drain is over): each request still waiting for a place (one that did not come
        back in the drain) and every frame held behind it is answered 503 `SHUTTING_DOWN`,
        in request order (up to a held `session.logout`: frames after one are never
        answered): none of them ran, and the trader learns so instead of an unknown
        outcome. At once, not behind the answers owed: the place they waited for may go
        unanswered at the close. Nothing after them runs (`_abandon`)."""
        for session in list(self.held):
            self.refuse_held_of(session, NOT_EXECUTED_AT_STOP)

    def refuse_held_of(self, session: Session, message: str) -> None:
        """What `session` holds, refused as `refuse_held` says, with `message`: its close
        comes next (a stop, or its gateway's lost lease). Nothing if it holds nothing."""
        entry = self.held.get(session)
        if entry is None:
            return
        later = list(session.held or ())
        self._abandon(session)
        if session.closing:
            return  # nobody reads its answers
        send = self.connections.send
        send(session, wire.error(entry[0].id, E.SHUTTING_DOWN, message))
        for frame, _ in later:  # (an unreadable frame's id is null, as ever)
            envelope = wire.decode_envelope(frame)
            send(session, wire.error(envelope.id, E.SHUTTING_DOWN, message))
            if getattr(envelope, "method", None) == "session.logout":
                break  # what a client sends after its logout is never answered

    def _serve_held(
        self, session: Session, request: wire.Request, serve: Callable[[], None]
    ) -> None:
        """`serve` a request that waited, answering its failures as `on_frame` does."""
        try:
            serve()
        except AssertionError:
            raise  # a broken invariant: crash loudly, recover by replay
        except Exception as failure:  # (an AuthError: its key revoked while it waited)
            self._handler_failed(session, request, failure)

    def forget_held(self, session: Session) -> None:
        """The connection closed: what it held is never served."""
        self.held.pop(session, None)
        session.held = None
