"""Connections: each session's state, its bounded outbox of frames, writing and closing.

Owns the table of open sessions and how messages reach a peer: every message is framed
once and queued; once per loop turn every session with new messages gets them in one
`writev`, or its writer task waits for a paused peer's buffer to drain. A public
publication (`publish`) skips the queue of a session with nothing queued. An outbox that
fills up (`limits.SEND_QUEUE_MESSAGES_MAX`) is written at once if the peer's transport takes
writes (a burst). Full behind a paused transport it overflows (since session 25; before, it
was cut off at once): one command's thousands of pushes to a connection are queued in one
loop turn, before the client can read any. It may grow, every message counted in bytes then,
while the client takes `limits.SEND_QUEUE_DRAIN_MIN` of it in each `SEND_QUEUE_OVERFLOW_S`,
until a write takes it back under the cap; a client that takes less stopped reading:
`slow_consumer`, close 4002. So is one whose outbox would pass `limits.SEND_QUEUE_BYTES_MAX`
(an overflowing one, or a paused peer's that a large message, a snapshot, would take past
it). The rule lives on the rare path (`_queue`, the writes of a paused peer): `send`,
`fan_out_all`, `publish` and `flush_outboxes` are as they were. A packed session
(`?pack=1`) queues payloads, not frames, and each write sends them as one frame holding a
JSON array (`_write_packed`); the outbox counts messages either way. What a session asked
for (logon, streams) is kept here; what it means is the dispatcher's and the streams'
business.
"""

import asyncio
import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from core.venue_core import now_us
from engine.reasons import ErrorCode
from gateway import frames, limits, transport, wire
from gateway.auth import ApiKey, AuthError
from gateway.market_data import Stream

log = logging.getLogger("venue")

WRITE_BATCH_MAX = 256  # messages per write: bounds one writev and the memory it copies
# A packed frame's messages, in bytes: bounds the array a client must parse at once and the
# join that builds it (a single larger message still goes, alone in its array)
PACK_BYTES_MAX = 2**20
# A burst's packed frames handed to the transport in one call, in bytes (the call ends with
# the frame that reaches it): one system call for a stalled turn's frames, not one per frame;
# bounds what a peer's transport holds past its high-water mark to this and one frame
WRITE_BYTES_MAX = 2**20
CLOSE_TIMEOUT_S = 2  # a peer that cannot take its last messages in this time is cut off


@dataclass(eq=False)
class Session:
    """One websocket connection and what it has asked for."""

    id: int
    websocket: transport.Connection
    trade: bool  # /ws/trade (else /ws/public)
    packed: bool = False  # `?pack=1`: the outbox holds payloads, written as JSON arrays
    key: ApiKey | None = None
    # The account bucket its requests are charged to (`limits.account_bucket`), worked out
    # with `key` at its logon, so no request asks the key's scopes again; None before logon
    account_bucket: int | None = None
    cod: bool = False
    placed: set[int] = field(default_factory=set)  # open orders placed here, for COD
    streams: set[Stream] = field(default_factory=set)
    account_stream: bool = False
    outbox: deque[bytes] = field(default_factory=deque)  # frames (packed: payloads) to write
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # the writer task's turn
    dirty: bool = False  # has messages the next `_flush_outboxes` writes
    closing: bool = False
    # Frames read from now on are not handled nor answered: a `session.logout` came, or the
    # venue decided to close the connection (`Sessions.close`)
    deaf: bool = False
    # Over a cluster's bus, while a request of this connection waits for a place in flight
    # (`HeldRequests.hold`): the frames that came after it, to be handled in order after it,
    # each with whether its front door charged it already
    held: deque[tuple[str | bytes, bool]] | None = None
    held_bytes: int = 0  # the frames' sizes in `held`
    last_sent_us: int = 0
    logon_timer: asyncio.TimerHandle | None = None  # /ws/trade: closes it if nobody logs on
    writer: "asyncio.Task[None] | None" = None  # see `Sessions._write`
    # While its outbox is past `SEND_QUEUE_MESSAGES_MAX` behind a paused transport (a command's
    # burst, or a client that stopped reading: `Sessions._overflow`): the next check that the
    # client is draining it; the outbox's length had the client taken none since the last
    # check; and its bytes (counted per message queued, recounted at each check: what was
    # written since the last is still in)
    overflow: asyncio.TimerHandle | None = None
    overflow_queued: int = 0
    overflow_bytes: int = 0
    # The outbox's length at the overflow's last check (-1: none yet): a client whose backlog
    # did not shrink over a whole period is cut off, however much it took (see `limits`)
    overflow_checked: int = -1
    overflows: int = 0  # how many times it overflowed: the first is logged, the rest counted

    @property
    def account(self) -> int | None:
        return self.key.account if self.key else None


class Sessions:
    """The open sessions and their outboxes."""

    def __init__(self) -> None:
        self.sessions: dict[int, Session] = {}
        self._next_session = 0
        self._dirty: list[Session] = []  # sessions with messages to write this loop turn
        # The running loop, looked up once (`_dirtied`): in C `asyncio.get_running_loop`
        # checks the process id, a `getpid` system call per call (glibc does not cache it).
        self._loop: asyncio.AbstractEventLoop | None = None
        # The caller writes the outboxes before its callback returns (`hold_writes`): a
        # session dirtied meanwhile asks for no `flush_outboxes` of its own
        self._writes_held = False
        self._background: set[asyncio.Task[None]] = set()  # closes, spent switches: kept till done

    def next_id(self) -> int:
        """A session id no other session has had (REST connections take theirs here too)."""
        self._next_session += 1
        return self._next_session

    def open(self, connection: transport.Connection) -> Session:
        """A new connection's session, registered, with its writer task."""
        path = connection.path
        session = Session(
            self.next_id(), connection, connection.route == "/ws/trade", connection.packed
        )
        connection.context = session
        self.sessions[session.id] = session
        log.info(
            "connection opened", extra={"session": session.id, "peer": peer(session), "path": path}
        )
        session.writer = asyncio.create_task(self._write(session))
        return session

    def forget(self, session: Session) -> None:
        """The connection is closed: the session leaves the table."""
        closed = {"session": session.id, "peer": peer(session), "account": session.account}
        log.info("connection closed", extra=closed | {"code": session.websocket.close_code})
        self.sessions.pop(session.id, None)
        if session.overflow is not None:
            session.overflow.cancel()
            session.overflow = None

    def keep(self, task: "asyncio.Task[Any]") -> None:
        """Hold a background task until it is done (a task must be referenced)."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _write(self, session: Session) -> None:
        """Write what `flush_outboxes` left because the peer was not keeping up: wait for
        its socket buffer to drain, then write. Only this task ever waits on the socket."""
        websocket = session.websocket
        outbox = session.outbox
        packed = session.packed
        try:
            while True:
                await session.wake.wait()
                session.wake.clear()
                while outbox:
                    await websocket.drain()
                    if not _write_front(websocket, outbox, packed):
                        return
                    if session.overflow is not None:
                        _end_overflow_if_drained(session)
        except (OSError, asyncio.CancelledError):
            return  # the connection is gone: `on_close` cleans up the session

    def flush_outboxes(self) -> None:
        """Once per loop turn: every session with new messages gets them in one write.

        A session whose transport is paused (its peer reads slower than we write) is left
        to its writer task, which waits for the buffer to drain; both take from the front
        of the outbox only when they write, so messages keep their order. The usual session
        (open, taking writes, a turn's few frames, or a packed one's messages) is written
        inline here: two to four calls less than `_flush_outbox` per session, which every
        answer and push pays. A packed outbox equal to the one before it (a fan-out's
        sessions are dirty in a row) reuses its array frame:
        no join, no frame per subscriber. (Not in C: `attrgetter` and
        `setattr` over the sessions cost more instructions than the specialised attribute
        bytecodes of this loop, callgrind.)
        """
        if not self._dirty:  # the turn's call after a publication already wrote everything
            return
        dirty, self._dirty = self._dirty, []
        now = now_us()  # the heartbeat's clock: silence is counted from the last write
        last_payload = b""  # a packed session's one message, framed once for the next too
        last_payloads: tuple[bytes, ...] = ()  # or its several, likewise
        last_frames: tuple[bytes, ...] = ()
        oversized: tuple[bytes, ...] = ()  # several too large for one frame: split, not reused
        for session in dirty:
            session.dirty = False
            session.last_sent_us = now
            outbox = session.outbox
            websocket = session.websocket
            try:
                if (
                    session.closing
                    or websocket.paused
                    or not 0 < len(outbox) <= WRITE_BATCH_MAX  # 0: written mid-turn
                ):
                    self._flush_outbox(session)
                    continue
                if session.packed:  # `_write_packed`'s usual outbox
                    if len(outbox) == 1:
                        if outbox[0] is not last_payload:
                            last_payload = outbox[0]
                            last_payloads = ()
                            last_frames = (_array_of_one(last_payload),)
                    else:  # a publication's several messages: the same for every subscriber
                        payloads = tuple(outbox)
                        if payloads != last_payloads:
                            if payloads == oversized:  # joined once already: too large
                                self._flush_outbox(session)
                                continue
                            body = b",".join(payloads)
                            if len(body) + 2 > PACK_BYTES_MAX:  # + the array's brackets
                                oversized = payloads
                                self._flush_outbox(session)
                                continue
                            last_payload = b""
                            last_payloads = payloads
                            last_frames = frames.array_frame_parts(body)  # one frame
                    websocket.send_frames(last_frames)
                else:
                    websocket.send_frames(outbox)  # False: closing, nobody will read them
            except OSError:  # this peer's socket failed; its close is under way
                pass
            outbox.clear()

    def hold_writes(self) -> None:
        """The caller writes every outbox itself (`release_writes`) before its loop callback
        returns (a released batch): the sessions dirtied until then ask for no flush in the
        next turn. Saves a handle per released batch and, on a loop with nothing else to do,
        a turn of its own (an `epoll_wait` with a zero timeout) before it sleeps."""
        self._writes_held = True

    def release_writes(self) -> None:
        """Write what was queued since `hold_writes`, and every other outbox with news."""
        self._writes_held = False
        self.flush_outboxes()

    def _flush_outbox(self, session: Session) -> None:
        """Write the whole outbox now, or leave the rest to the writer task once paused."""
        outbox = session.outbox
        websocket = session.websocket
        packed = session.packed
        while outbox and not session.closing:  # a closing session's is flushed by `close`
            if websocket.paused:
                session.wake.set()
                return
            if not _write_front(websocket, outbox, packed):
                outbox.clear()  # the connection is closing: nobody will read them
                return
            if session.overflow is not None:
                _end_overflow_if_drained(session)

    def send(self, session: Session, message: bytes) -> None:
        """Queue a message (encoded JSON): framed, or as it is for a packed session.
        (`_queue`'s usual way inlined: a call less per answer and push.)"""
        item = message if session.packed else frames.text_frame(message)
        outbox = session.outbox
        if (
            session.closing
            or len(outbox) >= limits.SEND_QUEUE_MESSAGES_MAX
            or len(item) >= limits.LARGE_MESSAGE_BYTES
        ):
            self._queue(session, item)  # the rare ways: closing, full, or a large message
            return
        outbox.append(item)
        if not session.dirty:
            self._dirtied(session)

    def _queue(self, session: Session, item: bytes) -> None:
        """Queue a frame (packed: a payload). An outbox full behind a paused transport
        overflows (`_overflow`): it may grow, counted in bytes, while the client drains it;
        one that would pass `SEND_QUEUE_BYTES_MAX` is cut off at once."""
        if session.closing:
            return
        if session.overflow is not None:  # every message counted until it drains
            session.overflow_bytes += len(item)
            if session.overflow_bytes > limits.SEND_QUEUE_BYTES_MAX:
                self._cut_off(session)
                return
            session.overflow_queued += 1
        elif (
            _full(session, item)
            and not self._relieved(session)  # a peer that reads: written now
            and not self._overflow(session, item)  # else it may grow, within the bytes
        ):
            self._cut_off(session)
            return
        session.outbox.append(item)
        if not session.dirty:
            self._dirtied(session)

    def _overflow(self, session: Session, item: bytes) -> bool:
        """The outbox is full (or, with `item`, too large) behind a paused transport: one
        command's pushes are queued in one loop turn, before the client can read any, so
        this is a burst as often as a client that stopped reading. Counts its bytes and
        checks every `SEND_QUEUE_OVERFLOW_S` that the client drains it (`_check_overflow`);
        False if `item` would take it past `SEND_QUEUE_BYTES_MAX`: cut it off now."""
        size = sum(map(len, session.outbox)) + len(item)
        if size > limits.SEND_QUEUE_BYTES_MAX:
            return False
        session.overflow_bytes = size
        session.overflow_queued = len(session.outbox) + 1  # and `item`
        session.overflow_checked = -1
        session.overflows += 1
        self._arm_overflow(session)
        if session.overflows == 1:  # once a session: one hovering at the cap would flood it
            overflowing = {"session": session.id, "peer": peer(session)}
            log.info("outbox overflowing", extra=overflowing | {"queued": len(session.outbox)})
        return True

    def _arm_overflow(self, session: Session) -> None:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        session.overflow = loop.call_later(
            limits.SEND_QUEUE_OVERFLOW_S, self._check_overflow, session
        )

    def _check_overflow(self, session: Session) -> None:
        """An overflow's period is over: cut the client off unless it took at least
        `SEND_QUEUE_DRAIN_MIN` messages of its outbox in it and, past the first period, its
        outbox shrank since the last check; else the next period, its bytes recounted (what
        it took is out of them now)."""
        session.overflow = None
        outbox = session.outbox
        if session.closing or len(outbox) < limits.SEND_QUEUE_MESSAGES_MAX:
            return  # closed meanwhile, or drained
        taken = session.overflow_queued - len(outbox)
        # Past the first period (whose burst may still be queuing), the backlog must shrink:
        # a client that takes a steady share of a faster feed would else be kept, ever later,
        # until its outbox reached the bytes (review of session 25: 29 minutes behind).
        grew = 0 <= session.overflow_checked <= len(outbox)
        if taken < limits.SEND_QUEUE_DRAIN_MIN or grew:
            self._cut_off(session)
            return
        session.overflow_checked = len(outbox)
        session.overflow_queued = len(outbox)
        session.overflow_bytes = sum(map(len, outbox))
        self._arm_overflow(session)

    def _cut_off(self, session: Session) -> None:
        """A slow consumer: its outbox is dropped for the `slow_consumer` push, then it is
        closed, 4002."""
        if session.overflow is not None:
            session.overflow.cancel()
            session.overflow = None
        cut = {"session": session.id, "peer": peer(session), "account": session.account}
        log.warning("slow consumer cut off", extra=cut | {"queued": len(session.outbox)})
        session.outbox.clear()
        notice = wire.encode({"ch": "session", "type": "slow_consumer"})
        session.outbox.append(notice if session.packed else frames.text_frame(notice))
        self.close(session, 4002, "slow consumer")

    def _dirtied(self, session: Session) -> None:
        """A session's first message of this loop turn: it joins the turn's sessions to write,
        and the first of them asks for `flush_outboxes` in the loop's next turn, unless the
        writes are held (`hold_writes`: its caller flushes) (the callers test `session.dirty`
        first: a call only once per session and turn)."""
        session.dirty = True
        dirty = self._dirty
        dirty.append(session)
        if len(dirty) == 1 and not self._writes_held:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self.flush_outboxes)

    def _relieved(self, session: Session) -> bool:
        """A full outbox of a peer that is reading (its transport takes writes) is written
        now, mid-turn: a burst (a big batch released at once, after a stall) is not a slow
        consumer. True if that made room; a paused peer's outbox stays full: cut it off."""
        if session.websocket.paused:
            return False
        try:
            self._flush_outbox(session)
        except OSError:  # this peer's socket failed; its close is under way
            session.outbox.clear()
        return len(session.outbox) < limits.SEND_QUEUE_MESSAGES_MAX

    def fan_out(self, sessions: Iterable[Session], payload: bytes) -> None:
        """Queue one message for many sessions: `fan_out_all` of that one message."""
        self.fan_out_all(sessions, (payload,))

    def fan_out_all(self, sessions: Iterable[Session], payloads: Sequence[bytes]) -> None:
        """Queue several messages, in order, for many sessions (a command's pushes to one
        account): each message framed at most once (packed: not at all), per session a
        reference to each appended, together (a packed session's outbox is still written as
        one array frame by `flush_outboxes`), nothing else built. The rare cases (closing, an
        outbox these messages would fill) take `_queue`'s path, message by message, exactly as
        queuing them one at a time would."""
        framed: Sequence[bytes] = ()  # built for the first session that is not packed
        room = limits.SEND_QUEUE_MESSAGES_MAX - len(payloads)  # an outbox above it: too full
        for session in sessions:
            outbox = session.outbox
            if session.packed:
                items = payloads
            else:
                items = framed = framed or [frames.text_frame(payload) for payload in payloads]
            if session.closing or len(outbox) > room:
                self._queue_all(session, items)
                continue
            outbox.extend(items)
            if not session.dirty:
                self._dirtied(session)

    def publish(self, sessions: Iterable[Session], items: Sequence[bytes], packed: bool) -> None:
        """Send the same messages to many sessions alike packed (a public publication's
        audience): `items` are their frames (packed: their payloads). The write is built
        once; a session with nothing queued whose peer takes writes (the usual subscriber)
        is written at once, which spares it the outbox and the flush; any other queues them
        behind what it holds, as `fan_out` does."""
        self.publish_write(sessions, items, publication_write(items, packed))

    def publish_write(
        self, sessions: Iterable[Session], items: Sequence[bytes], write: Sequence[bytes] | None
    ) -> None:
        """`publish` with its write built already (`publication_write`): an audience written
        in slices, over several loop turns, builds it once."""
        if write is None:  # the outbox's path splits it
            for session in sessions:
                self._queue_all(session, items)
            return
        now = now_us()  # the heartbeat's clock: silence is counted from the last write
        for session in sessions:
            websocket = session.websocket
            if session.outbox or session.closing or websocket.paused:
                self._queue_all(session, items)
                continue
            session.last_sent_us = now
            # `websocket.send_frames(write)` inlined: its call was 40% of a subscriber's cost
            # (callgrind). Written only while open (closing: nobody would read it). Only here:
            # an audience holds websocket connections (`subscribe` is a websocket method),
            # while an outbox may be REST's stand-in (`rest._Answers`), which has no transport.
            transport: asyncio.Transport = websocket.transport  # type: ignore[assignment]
            if websocket.is_open and not transport.is_closing():  # open: it has a transport
                try:
                    transport.writelines(write)
                except OSError:  # this peer's socket failed; its close is under way
                    continue

    def _queue_all(self, session: Session, items: Sequence[bytes]) -> None:
        for item in items:
            self._queue(session, item)

    def push(self, session: Session, message: dict[str, Any]) -> None:
        self.send(session, wire.encode(message))

    def push_to_account(self, account: int, message: dict[str, Any]) -> None:
        """A session push to every connection logged on as `account`."""
        for session in list(self.sessions.values()):
            if session.account == account:
                self.push(session, message)

    def close(self, session: Session, code: int, reason: str) -> None:
        """Flush what is queued and close; a peer that does not read within
        `CLOSE_TIMEOUT_S` (a slow consumer) has its connection aborted instead."""
        session.closing = True
        session.deaf = True

        async def close_after_flush() -> None:
            websocket = session.websocket
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    while session.outbox and _write_front(
                        websocket, session.outbox, session.packed
                    ):
                        await websocket.drain()
                    websocket.close(code, reason)
                    await websocket.wait_closed()
            except (TimeoutError, OSError):
                websocket.abort()

        self.keep(asyncio.get_running_loop().create_task(close_after_flush()))


def _full(session: Session, item: bytes) -> bool:
    """Whether the outbox has no room for `item`: `SEND_QUEUE_MESSAGES_MAX` messages, or a
    large message would take a paused peer's past `SEND_QUEUE_BYTES_MAX`."""
    return len(session.outbox) >= limits.SEND_QUEUE_MESSAGES_MAX or _too_many_bytes(session, item)


def _too_many_bytes(session: Session, item: bytes) -> bool:
    """Whether `item`, if a large message, would take the outbox of a peer that stopped taking
    writes past `SEND_QUEUE_BYTES_MAX` (the outbox is counted only then: rarely)."""
    if len(item) < limits.LARGE_MESSAGE_BYTES or not session.websocket.paused:
        return False
    return sum(map(len, session.outbox)) + len(item) > limits.SEND_QUEUE_BYTES_MAX


def _end_overflow_if_drained(session: Session) -> None:
    """A write took an overflowing outbox back under `SEND_QUEUE_MESSAGES_MAX`: the client
    kept up; its messages go uncounted again (`Sessions.send`'s usual way)."""
    if len(session.outbox) < limits.SEND_QUEUE_MESSAGES_MAX and session.overflow is not None:
        session.overflow.cancel()
        session.overflow = None


def peer(session: Session) -> str:
    """The peer's `host:port`, for the log; behind a trusted proxy, `client via host:port`."""
    address = session.websocket.peer
    where = f"{address[0]}:{address[1]}" if address else "?"
    client = session.websocket.client_ip
    return where if client is None else f"{client} via {where}"


def publication_write(items: Sequence[bytes], packed: bool) -> Sequence[bytes] | None:
    """The frames one write sends for `items` (frames, or a packed session's payloads) as
    `_write_front` would send them; None if that takes more than one write."""
    if len(items) > WRITE_BATCH_MAX:
        return None
    if not packed:
        return items
    if len(items) == 1:  # alone in its array, whatever its size
        return (frames.array_frame(items[0]),)
    body = b",".join(items)
    if len(body) + 2 > PACK_BYTES_MAX:  # + the array's brackets
        return None
    return (frames.array_frame(body),)


def _write_front(websocket: transport.Connection, outbox: deque[bytes], packed: bool) -> bool:
    """Write up to `WRITE_BATCH_MAX` messages from the front of an outbox in one call and
    take them out; False (the outbox untouched) once the connection is not open. The usual
    outbox (a turn's few messages) is handed over whole: no list is built for it."""
    if packed:
        return _write_packed(websocket, outbox)
    if len(outbox) <= WRITE_BATCH_MAX:
        if not websocket.send_frames(outbox):
            return False
        outbox.clear()
        return True
    batch = list(islice(outbox, WRITE_BATCH_MAX))
    if not websocket.send_frames(batch):
        return False
    for _ in range(WRITE_BATCH_MAX):
        outbox.popleft()
    return True


def _write_packed(websocket: transport.Connection, outbox: deque[bytes]) -> bool:
    """Write the front of a packed session's outbox as JSON-array frames, each of up to
    `WRITE_BATCH_MAX` messages and `PACK_BYTES_MAX` bytes, and take them out; False (the
    outbox untouched) once the connection is not open. Saves the client a frame (and a
    JSON parse) per message, and the server a frame header and an iovec per message."""
    count = len(outbox)
    if count == 1:  # a turn of one message (a fan-out's usual): nothing to join
        if not websocket.send_frames((_array_of_one(outbox[0]),)):
            return False
        outbox.clear()
        return True
    if count <= WRITE_BATCH_MAX:
        body = b",".join(outbox)  # the usual outbox: joined whole, one frame
        if len(body) + 2 <= PACK_BYTES_MAX:  # + the array's brackets
            if not websocket.send_frames(frames.array_frame_parts(body)):  # one frame
                return False
            outbox.clear()
            return True
    return _write_packed_burst(websocket, outbox)


def _write_packed_burst(websocket: transport.Connection, outbox: deque[bytes]) -> bool:
    """More than one frame's worth (a burst: a stalled turn's thousands of pushes): the
    front's frames, split as one at a time would be, handed over in one call until it holds
    `WRITE_BYTES_MAX` bytes, so the peer's socket gets one system call, not one per frame."""
    batch: list[bytes] = []
    size = taken = 0
    queued = len(outbox)
    while taken < queued and size < WRITE_BYTES_MAX:
        payloads = list(islice(outbox, taken, taken + WRITE_BATCH_MAX))
        count = len(payloads)
        body = b",".join(payloads)
        if len(body) + 2 > PACK_BYTES_MAX and count > 1:  # + the array's brackets
            count = _count_within(payloads, count)
            body = b",".join(payloads[:count])
        head, body, close = frames.array_frame_parts(body)  # one frame, the body not copied
        batch += (head, body, close)
        size += len(head) + len(body) + len(close)  # the frame's bytes, as before it was parted
        taken += count
    if not websocket.send_frames(batch):
        return False
    if taken == queued:
        outbox.clear()
    else:
        for _ in range(taken):
            outbox.popleft()
    return True


_one_payload = b""  # the last message framed alone by `_array_of_one`, and its frame
_one_frame = frames.array_frame(b"")


def _array_of_one(payload: bytes) -> bytes:
    """The packed frame of one message, kept for the next session sent the same `bytes`: a
    public message fanned out to packed subscribers is framed once for all of them, not once
    per subscriber (the message is held until another replaces it)."""
    global _one_payload, _one_frame
    if payload is not _one_payload:
        _one_payload, _one_frame = payload, frames.array_frame(payload)
    return _one_frame


def _count_within(outbox: Iterable[bytes], count: int) -> int:
    """How many of the first `count` messages fit one packed frame's `PACK_BYTES_MAX` (at
    least one: a message over the cap goes alone)."""
    size = 1  # the array's two brackets, and n messages take n - 1 commas
    for taken, message in enumerate(islice(outbox, count)):
        size += len(message) + 1
        if size > PACK_BYTES_MAX:
            return max(taken, 1)
    return count


def key_of(session: Session) -> ApiKey:
    if session.key is None:
        raise AuthError(ErrorCode.NOT_AUTHENTICATED, "log on first")
    return session.key
