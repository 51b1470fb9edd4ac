"""Public streams: market-data subscriptions, their flushes and the heartbeats.

Owns who follows which public stream (`book`, `trades`, `bbo`, `ticker`, `instruments`,
`candles`), the `MarketData` that turns released events into coalesced messages, each framed
once for all its subscribers (a packed one's array takes it as it is), and the candles it
feeds (kept in snapshots by the server).
Published after every released batch and on the heartbeat tick (which also ages the tickers'
24 h windows), paced: a publication's writes (one per subscriber) may take at most
`PUBLISH_SHARE_MAX` of the event loop's time, so with many subscribers the turns between two
publications are coalesced into one update per stream. Limits: `limits.SUBSCRIPTIONS_*`.
"""

import asyncio
import time
from typing import Any

import msgspec

from core.bus import ReadSide
from core.venue_core import now_us
from gateway import limits
from gateway.candles import Candles
from gateway.market_data import BOOK_DEPTHS, Channel, MarketData, Stream
from gateway.sessions import Session, Sessions

# Fanning a turn's market data out costs one socket write per subscriber (~10-20 µs of
# kernel time each on loopback: 1,000 subscribers, 15 ms a publication). Published after
# every batch, that left the trading too little of the loop; paced, a publication costing
# c waits c * (1 - share) / share before the next, and what changed meanwhile is coalesced.
PUBLISH_SHARE_MAX = 0.5
PUBLISH_PAUSE_MIN_S = 0.0  # a floor for the pause (tests raise it to see turns coalesce)


class PublicStreams:
    """The public streams' subscribers and the market data they are sent."""

    def __init__(self, connections: Sessions, reads: ReadSide, epoch: int) -> None:
        self.connections = connections
        self.reads = reads
        # the streams someone follows (a stream's last subscriber gone, it is dropped): also
        # the streams `MarketData.flush` is told are wanted, not gathered at each publication
        self.subscribers: dict[Stream, set[Session]] = {}
        self.candles = Candles()  # kept in snapshots, rebuilt by replay: survive restarts
        self.market_data = MarketData(epoch, self.candles)
        self._next_at = 0.0  # time.monotonic() from which the next publication may start
        self._timer: asyncio.TimerHandle | None = None  # a publication waiting for its turn

    def start(self, epoch: int) -> None:
        """The venue is recovered or built: publish from its state."""
        self.market_data = MarketData.from_venue(self.reads.venue, epoch, self.candles)

    def follow(self, session: Session, streams: list[Stream], t_in: int) -> None:
        """Subscribe `session` to `streams`, each starting with its snapshot."""
        for stream in streams:
            session.streams.add(stream)
            self.subscribers.setdefault(stream, set()).add(session)
            self.connections.send(session, self.market_data.snapshot(stream, t_in).payload)

    def unfollow(self, session: Session, stream: Stream) -> None:
        session.streams.discard(stream)
        self._drop(session, stream)

    def leave(self, session: Session) -> None:
        """The session is gone: it follows nothing any more."""
        for public in session.streams:
            self._drop(session, public)

    def _drop(self, session: Session, stream: Stream) -> None:
        subscribers = self.subscribers.get(stream)
        if subscribers is not None:
            subscribers.discard(session)
            if not subscribers:
                del self.subscribers[stream]

    def publish(self) -> None:
        """What changed goes out now, or when the last publication's pause is over."""
        if self._timer is not None:
            return  # one is due: it will carry these changes too
        delay_s = self._next_at - time.monotonic()
        if delay_s <= 0:
            self.flush()
        else:
            self._timer = asyncio.get_running_loop().call_later(delay_s, self._publish_due)

    def _publish_due(self) -> None:
        self._timer = None
        self.flush()

    def publish_waiting(self) -> None:
        """A publication left waiting goes out now (the venue stops)."""
        if self._timer is not None:
            self._timer.cancel()
            self._publish_due()

    def flush(self) -> None:
        """Publish what changed since the last flush (coalesced per stream) and write it
        now, so that its cost, which sets the pause before the next, includes the writes."""
        started_s = time.thread_time()  # CPU time: the loop's, not another process's
        subscribers = self.subscribers  # its keys are the streams wanted
        messages = self.market_data.flush(now_us(), subscribers)
        for message in messages:
            followers = subscribers.get(message.stream)
            if followers:  # framed once for all its subscribers (packed ones: not at all)
                self.connections.fan_out(followers, message.payload)
        if messages:
            self.connections.flush_outboxes()
        cost_s = time.thread_time() - started_s
        pause_s = cost_s * (1 - PUBLISH_SHARE_MAX) / PUBLISH_SHARE_MAX
        self._next_at = time.monotonic() + max(PUBLISH_PAUSE_MIN_S, pause_s)

    async def heartbeats(self) -> None:
        interval_us = limits.HEARTBEAT_INTERVAL_S * 1_000_000
        while True:
            await asyncio.sleep(limits.HEARTBEAT_INTERVAL_S / 4)
            now = now_us()
            self.publish()  # also ages the tickers' 24 h windows
            for session in list(self.connections.sessions.values()):
                if now - session.last_sent_us >= interval_us:
                    self.connections.send(session, self.market_data.heartbeat(now, session.streams))

    def instrument_view(self, symbol: str) -> dict[str, Any]:
        message = self.market_data.snapshot(Stream(Channel.INSTRUMENTS, symbol), now_us())
        data: dict[str, Any] = msgspec.json.decode(message.payload)["data"]
        return data


def tier(depth: int | None) -> int:
    """The smallest published depth tier that covers `depth` (default 10)."""
    wanted = depth or BOOK_DEPTHS[0]
    return next((tier for tier in BOOK_DEPTHS if tier >= wanted), BOOK_DEPTHS[-1])
