"""Public streams: market-data subscriptions, their flushes and the heartbeats.

Owns who follows which public stream (`book`, `trades`, `bbo`, `ticker`, `instruments`,
`candles`), the `MarketData` that turns released events into coalesced messages, each framed
once for all its subscribers (a packed one's array takes it as it is), and the candles it
feeds (kept in snapshots by the server). Subscribers that follow the same streams, packed
alike, are one audience: a publication's write is built once for each audience.
Published after every released batch and on the heartbeat tick (which also ages the tickers'
24 h windows), paced: two publications are at least `market_data_interval_ms` apart (the
venue's config, default 5 ms), and a publication's writes (one per subscriber) may take at
most `PUBLISH_SHARE_MAX` of the event loop's time, so under load the turns between two
publications are coalesced into one update per stream; a change after a quiet spell goes out
at once. Limits: `limits.SUBSCRIPTIONS_*`.
"""

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import msgspec

from core.bus import ReadSide
from core.venue_core import now_us
from gateway import limits
from gateway.candles import Candles
from gateway.frames import text_frame
from gateway.market_data import BOOK_DEPTHS, Channel, MarketData, Message, Stream
from gateway.sessions import Session, Sessions
from gateway.tape import Tape

# Fanning a turn's market data out costs one socket write per subscriber (~10-20 µs of
# kernel time each on loopback: 1,000 subscribers, 15 ms a publication). Published after
# every batch, that left the trading too little of the loop; paced, a publication costing
# c waits c * (1 - share) / share before the next, and what changed meanwhile is coalesced.
PUBLISH_SHARE_MAX = 0.5


class PublicStreams:
    """The public streams' subscribers and the market data they are sent."""

    def __init__(
        self, connections: Sessions, reads: ReadSide, epoch: int, pause_min_s: float
    ) -> None:
        self.connections = connections
        # the least time between two publications (`market_data_interval_ms`): the changes
        # of the turns in between are coalesced, whatever the fan-out costs
        self.pause_min_s = pause_min_s
        self.reads = reads
        # the audiences that hear each stream someone follows (its last subscriber gone, it is
        # dropped): also the streams `MarketData.flush` is told are wanted
        self.audiences: dict[Stream, list[_Audience]] = {}
        self._audience_of: dict[Session, _Audience] = {}  # a following session's audience
        self._audience_by_kind: dict[tuple[frozenset[Stream], bool], _Audience] = {}
        self.candles = Candles()  # kept in snapshots, rebuilt by replay: survive restarts
        self.tape = Tape()  # the trades tape: the same
        self.market_data = MarketData(epoch, self.candles, self.tape)
        self._next_at = 0.0  # time.monotonic() from which the next publication may start
        self._paced_at = 0.0  # the same, by the fan-out's cost alone (what a query may force)
        self._timer: asyncio.TimerHandle | None = None  # a publication waiting for its turn
        self._loop: asyncio.AbstractEventLoop | None = None  # (`get_running_loop`: a getpid)

    def start(self, epoch: int) -> None:
        """The venue is recovered or built: publish from its state."""
        self.market_data = MarketData.from_venue(self.reads.venue, epoch, self.candles, self.tape)

    def follow(self, session: Session, streams: list[Stream], t_in: int) -> None:
        """Subscribe `session` to `streams`, each starting with its snapshot."""
        for stream in streams:
            session.streams.add(stream)
            self.connections.send(session, self.market_data.snapshot(stream, t_in).payload)
        self._regroup(session, session.streams)

    def unfollow(self, session: Session, stream: Stream) -> None:
        session.streams.discard(stream)
        self._regroup(session, session.streams)

    def leave(self, session: Session) -> None:
        """The session is gone: it follows nothing any more."""
        self._regroup(session, ())

    def _regroup(self, session: Session, streams: Iterable[Stream]) -> None:
        """`session` now follows `streams`: it leaves its audience for the one of those."""
        before = self._audience_of.pop(session, None)
        if before is not None:
            before.sessions.discard(session)
            if not before.sessions:
                self._retire(before)
        kind = (frozenset(streams), session.packed)
        if not kind[0]:
            return
        audience = self._audience_by_kind.get(kind)
        if audience is None:
            audience = self._audience_by_kind[kind] = _Audience(*kind)
            for stream in audience.streams:
                self.audiences.setdefault(stream, []).append(audience)
        audience.sessions.add(session)
        self._audience_of[session] = audience

    def _retire(self, audience: "_Audience") -> None:
        """An audience's last session is gone: no stream is heard by it any more."""
        del self._audience_by_kind[audience.streams, audience.packed]
        for stream in audience.streams:
            hearing = self.audiences[stream]
            hearing.remove(audience)
            if not hearing:
                del self.audiences[stream]

    def publish(self) -> None:
        """What changed goes out now, or when the last publication's pause is over. A
        released batch calls it after its answers and pushes are written (they do not wait
        for the publication, which writes every subscriber before it returns)."""
        if self._timer is not None:
            return  # one is due: it will carry these changes too
        delay_s = self._next_at - time.monotonic()
        if delay_s <= 0:
            self.flush()
            return
        loop = self._loop
        if loop is None or not loop.is_running():
            loop = self._loop = asyncio.get_running_loop()
        self._timer = loop.call_later(delay_s, self._publish_due)

    def _publish_due(self) -> None:
        self._timer = None
        self.flush()

    def current(self) -> MarketData:
        """The market data a query reads: a publication left waiting goes out first (a
        client whose order was acknowledged finds it in `book.snapshot`), before the
        interval is over but not before the fan-out's own pause: queries cannot make the
        publications take more of the loop than `PUBLISH_SHARE_MAX`. Within that pause the
        query reads the last publication, as every subscriber does."""
        waiting = self._timer is not None or self.market_data.changed()
        if waiting and time.monotonic() >= self._paced_at:  # (changed: a release under way)
            self.publish_waiting()
        return self.market_data

    def publish_waiting(self) -> None:
        """A publication left waiting goes out now (the venue stops; a query reads)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush()

    def flush(self) -> None:
        """Publish what changed since the last flush (coalesced per stream) and write it
        now, so that its cost, which sets the pause before the next, includes the writes."""
        started_s = time.thread_time()  # CPU time: the loop's, not another process's
        messages = self.market_data.flush(now_us(), self.audiences)  # keys: the streams wanted
        if not messages:
            return  # nothing went out: the next change need not wait (a heartbeat's tick)
        self._send(messages)
        self.connections.flush_outboxes()  # those that queued them
        cost_s = time.thread_time() - started_s
        pause_s = cost_s * (1 - PUBLISH_SHARE_MAX) / PUBLISH_SHARE_MAX
        now_s = time.monotonic()
        self._paced_at = now_s + pause_s
        self._next_at = now_s + max(self.pause_min_s, pause_s)

    def _send(self, messages: list[Message]) -> None:
        """Each audience gets the messages of the streams it follows, in their order, each
        message framed once for all (a packed audience's array once for its sessions)."""
        audiences = self.audiences
        heard: list[_Audience] = []  # the audiences with messages, in the order first heard
        for message in messages:
            for audience in audiences.get(message.stream, ()):
                if not audience.payloads:
                    heard.append(audience)
                audience.payloads.append(message.payload)
        text_frames: dict[bytes, bytes] = {}  # payload -> its frame, for the unpacked
        for audience in heard:
            payloads, audience.payloads = audience.payloads, []
            if not audience.packed:
                payloads = [
                    text_frames.get(payload) or text_frames.setdefault(payload, text_frame(payload))
                    for payload in payloads
                ]
            self.connections.publish(audience.sessions, payloads, audience.packed)

    async def heartbeats(self) -> None:
        interval_us = limits.HEARTBEAT_INTERVAL_S * 1_000_000
        while True:
            await asyncio.sleep(limits.HEARTBEAT_INTERVAL_S / 4)
            self.send_heartbeats(interval_us)

    def send_heartbeats(self, quiet_us: int) -> None:
        """Publish what is pending, then a heartbeat to each connection sent nothing for
        `quiet_us` (the loop's 1 s, protocol §9.7). 0 sends one now to every connection that this
        call's publication did not write to (that one was just sent a frame): the
        browser tests, which move a page's clock on in jumps under its 5 s silence watchdog,
        have the page hear the venue at once rather than after a quiet second."""
        now = now_us()
        self.publish()  # also ages the tickers' 24 h windows
        for session in list(self.connections.sessions.values()):
            if now - session.last_sent_us >= quiet_us:
                self.connections.send(session, self.market_data.heartbeat(now, session.streams))

    def instrument_view(self, symbol: str) -> dict[str, Any]:
        message = self.current().snapshot(Stream(Channel.INSTRUMENTS, symbol), now_us())
        data: dict[str, Any] = msgspec.json.decode(message.payload)["data"]
        return data


class _Audience:
    """The sessions that follow the very same streams, packed alike: a publication's
    messages for them are gathered, and their write built, once for all of them."""

    __slots__ = ("packed", "payloads", "sessions", "streams")

    def __init__(self, streams: frozenset[Stream], packed: bool) -> None:
        self.streams = streams
        self.packed = packed
        self.sessions: set[Session] = set()
        self.payloads: list[bytes] = []  # a publication's, while it is being sent


def tier(depth: int | None) -> int:
    """The smallest published depth tier that covers `depth` (default 10)."""
    wanted = depth or BOOK_DEPTHS[0]
    return next((tier for tier in BOOK_DEPTHS if tier >= wanted), BOOK_DEPTHS[-1])
