"""Public streams: market-data subscriptions, their flushes and the heartbeats.

Owns who follows which public stream (`book`, `trades`, `bbo`, `ticker`, `instruments`,
`candles`), the `MarketData` that turns released events into coalesced messages, each framed
once for all its subscribers, and the candles it feeds (kept in snapshots by the server).
Flushed after every released batch and on the heartbeat tick (which also ages the tickers'
24 h windows). Limits: `limits.SUBSCRIPTIONS_*`.
"""

import asyncio
from typing import Any

import msgspec

from core.bus import ReadSide
from core.venue_core import now_us
from gateway import frames, limits
from gateway.candles import Candles
from gateway.market_data import BOOK_DEPTHS, Channel, MarketData, Stream
from gateway.sessions import Session, Sessions


class PublicStreams:
    """The public streams' subscribers and the market data they are sent."""

    def __init__(self, connections: Sessions, reads: ReadSide, epoch: int) -> None:
        self.connections = connections
        self.reads = reads
        self.subscribers: dict[Stream, set[Session]] = {}
        self.candles = Candles()  # kept in snapshots, rebuilt by replay: survive restarts
        self.market_data = MarketData(epoch, self.candles)

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
        self.subscribers.get(stream, set()).discard(session)

    def leave(self, session: Session) -> None:
        """The session is gone: it follows nothing any more."""
        for public in session.streams:
            self.subscribers.get(public, set()).discard(session)

    def flush(self) -> None:
        wanted = {stream for stream, sessions in self.subscribers.items() if sessions}
        for message in self.market_data.flush(now_us(), wanted):
            frame = frames.text_frame(message.payload)  # once for all its subscribers
            for session in self.subscribers.get(message.stream, ()):
                self.connections.send_frame(session, frame)

    async def heartbeats(self) -> None:
        interval_us = limits.HEARTBEAT_INTERVAL_S * 1_000_000
        while True:
            await asyncio.sleep(limits.HEARTBEAT_INTERVAL_S / 4)
            now = now_us()
            self.flush()  # also ages the tickers' 24 h windows
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
