"""Public streams: market-data subscriptions, their publications and the heartbeats.

Owns who follows which public stream (`book`, `trades`, `bbo`, `ticker`, `instruments`,
`candles`), grouped in audiences (the same streams, packed alike: a write built once for
each), the `MarketData` that turns released events into coalesced messages, each framed once
for all, and the candles it feeds (kept in snapshots by the server). Published after each
released batch and on the heartbeat tick, paced: at least `market_data_interval_ms` apart,
and the writes (one per subscriber) take at most `PUBLISH_SHARE_MAX` of the loop; what
changes in between is coalesced. A publication is written `WRITES_PER_TURN_MAX` subscribers
a loop turn (`_Spread`), trading going on between slices, and the next waits for it to end.
Invariant: each subscriber gets every update of its streams once, in order: one that joins
mid-publication starts from a snapshot at its seqs and is not sent it; one that changes its
subscriptions gets its share first; one due a heartbeat with its share to come gets none.
Limits: `limits.SUBSCRIPTIONS_*`.
"""

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import msgspec

from core.bus import ReadSide
from core.venue_core import now_us
from gateway import limits
from gateway.candles import Candles
from gateway.frames import text_frame
from gateway.market_data import BOOK_DEPTHS, Channel, MarketData, Message, Stream
from gateway.sessions import Session, Sessions, publication_write
from gateway.tape import Tape

# Fanning a turn's market data out costs one socket write per subscriber (~10-20 µs of
# kernel time each on loopback: 1,000 subscribers, 15 ms a publication). Published after
# every batch, that left the trading too little of the loop; paced, a publication costing
# c starts the next no sooner than c / share after it started (written uninterrupted: a
# pause of c * (1 - share) / share after it), and what changed meanwhile is coalesced.
PUBLISH_SHARE_MAX = 0.5
# A publication's writes per loop turn; the rest go on in the next turns (`call_soon`), so a
# trader's frame that arrives meanwhile is read and answered after ~1 ms of writes (100 at
# 6-15 µs each), not after all of them (1,000 subscribers: ~15 ms, issue 12). Few enough
# subscribers are written in the publication's own turn, as before.
WRITES_PER_TURN_MAX = 100


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
        # the publication whose writes are still going on, turn by turn; the next one waits
        # for it (`_wanted`): its seqs follow this one's, and nobody may get them first
        self._spread: _Spread | None = None
        self._wanted = False  # a publication was asked for while one was being written
        self._turn: asyncio.Handle | None = None  # the spread publication's next slice

    def start(self, epoch: int) -> None:
        """The venue is recovered or built: publish from its state."""
        self.market_data = MarketData.from_venue(self.reads.venue, epoch, self.candles, self.tape)

    def follow(self, session: Session, streams: list[Stream], t_in: int) -> None:
        """Subscribe `session` to `streams`, each starting with its snapshot."""
        self._write_ahead(session)  # its share of a publication still being written, first
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
        """`session` now follows `streams`: it leaves its audience for the one of those (its
        share of a publication still being written, written first: the streams it follows
        no more end with that update, and those it keeps neither miss nor repeat it)."""
        self._write_ahead(session)
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
        for the publication, which writes its first `WRITES_PER_TURN_MAX` subscribers before
        it returns, the rest in the next turns)."""
        if self._timer is not None:
            return  # one is due: it will carry these changes too
        if self._spread is not None:
            self._wanted = True  # the one being written asks for it when it is done
            return
        delay_s = self._next_at - time.monotonic()
        if delay_s <= 0:
            self.flush()
            return
        self._timer = self._running_loop().call_later(delay_s, self._publish_due)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None or not loop.is_running():
            loop = self._loop = asyncio.get_running_loop()
        return loop

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
        if waiting and self._spread is None and time.monotonic() >= self._paced_at:
            self._publish_now()  # (changed: a release under way)
        return self.market_data

    def publish_waiting(self) -> None:
        """What is waiting goes out now, all of it written before this returns (the venue
        stops): the rest of a publication being written, then a new one."""
        self._wanted = False  # published here
        self._write_rest()
        self._publish_now()
        self._write_rest()

    def _publish_now(self) -> None:
        """A publication left waiting goes out now (no spread one may be under way)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush()

    def flush(self) -> None:
        """Publish what changed since the last flush (coalesced per stream) and write it:
        its first `WRITES_PER_TURN_MAX` subscribers now, the rest in the next turns; its
        cost, writes included, sets the pause before the next."""
        assert self._spread is None, "a publication overtook one still being written"
        started_s = time.thread_time()  # CPU time: the loop's, not another process's
        messages = self.market_data.flush(now_us(), self.audiences)  # keys: the streams wanted
        if not messages:
            return  # nothing went out: the next change need not wait (a heartbeat's tick)
        spread = self._spread = _Spread(self._writes(messages), time.monotonic())
        spread.cost_s = time.thread_time() - started_s
        self._write_turn()

    def _write_turn(self) -> None:
        """Write the next `WRITES_PER_TURN_MAX` subscribers of the publication; the rest go
        on in the next loop turn, after what came in meanwhile (a trader's order)."""
        self._turn = None
        spread = self._spread
        assert spread is not None, "a slice of no publication"
        started_s = time.thread_time()
        done = spread.write(self.connections, WRITES_PER_TURN_MAX)
        self.connections.flush_outboxes()  # those that queued them
        spread.cost_s += time.thread_time() - started_s
        if done:
            self._written()
            return
        self._turn = self._running_loop().call_soon(self._write_turn)

    def _written(self) -> None:
        """The publication is written out: pace the next, which may be waiting already.

        A publication that took `cost` of the loop's CPU starts the next no sooner than
        cost / `PUBLISH_SHARE_MAX` after it started (its writes uninterrupted: a pause of
        `cost` after them; spread among the trading, the pause shrinks by the turns the
        trading took meanwhile), nor sooner than `pause_min_s` after it started (the `ts`
        its messages carry), nor before it is written out."""
        spread = self._spread
        assert spread is not None
        self._spread = None
        self._paced_at = spread.started_s + spread.cost_s / PUBLISH_SHARE_MAX
        self._next_at = max(self._paced_at, spread.started_s + self.pause_min_s)
        if self._wanted:
            # in a turn of its own (not also carrying this last slice, `MarketData.flush`
            # and the next's first slice), paced as `publish` would
            self._wanted = False
            delay_s = max(0.0, self._next_at - time.monotonic())
            self._timer = self._running_loop().call_later(delay_s, self._publish_due)

    def _write_rest(self) -> None:
        """Write whatever is left of the publication now, in this turn."""
        spread = self._spread
        if spread is None:
            return
        if self._turn is not None:
            self._turn.cancel()
            self._turn = None
        started_s = time.thread_time()
        spread.write(self.connections, None)
        self.connections.flush_outboxes()
        spread.cost_s += time.thread_time() - started_s
        self._written()

    def _write_ahead(self, session: Session) -> None:
        """`session`'s share of the publication being written, written now (it changes what
        it follows: the streams it leaves end with this update, those it keeps go on)."""
        spread = self._spread
        if spread is not None:
            spread.write_ahead(self.connections, session)

    def _writes(self, messages: list[Message]) -> list["_Write"]:
        """Each audience's write: the messages of the streams it follows, in their order,
        each message framed once for all (a packed audience's array once for its sessions),
        and its sessions as of now (one that joins later starts from a snapshot at these
        seqs: it must not be sent them)."""
        audiences = self.audiences
        heard: list[_Audience] = []  # the audiences with messages, in the order first heard
        for message in messages:
            for audience in audiences.get(message.stream, ()):
                if not audience.payloads:
                    heard.append(audience)
                audience.payloads.append(message.payload)
        text_frames: dict[bytes, bytes] = {}  # payload -> its frame, for the unpacked
        writes: list[_Write] = []
        for audience in heard:
            payloads, audience.payloads = audience.payloads, []
            if not audience.packed:
                payloads = [
                    text_frames.get(payload) or text_frames.setdefault(payload, text_frame(payload))
                    for payload in payloads
                ]
            write = publication_write(payloads, audience.packed)
            writes.append(_Write(audience, list(audience.sessions), payloads, write))
        return writes

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
        have the page hear the venue at once rather than after a quiet second. A connection
        whose share of a publication under way is still to be written gets none: that share
        reaches it in its slice, a few turns on (a heartbeat names the last publication's
        seqs: it must hold them already)."""
        now = now_us()
        self.publish()  # also ages the tickers' 24 h windows
        spread = self._spread
        for session in list(self.connections.sessions.values()):
            if now - session.last_sent_us < quiet_us:
                continue
            if spread is not None and spread.to_come(session):
                # its share is a frame in a few turns: no heartbeat (it would name seqs the
                # session lacks), and no write ahead (on a quiet market every subscriber is
                # quiet: that would write the whole publication in this one turn)
                continue
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


class _Write(NamedTuple):
    """One audience's share of a publication: its sessions when it was published, their
    messages (frames, or a packed audience's payloads) and the write built of them."""

    audience: _Audience
    sessions: list[Session]
    items: list[bytes]
    write: Sequence[bytes] | None


class _Spread:
    """A publication being written, a slice of its subscribers per loop turn: the next
    session to write is `sessions[position]` of `writes[index]`. A session written ahead of
    its place (`write_ahead`) is skipped when its place comes."""

    __slots__ = ("ahead", "cost_s", "index", "places", "position", "started_s", "writes")

    def __init__(self, writes: list[_Write], started_s: float) -> None:
        self.writes = writes
        self.index = 0
        self.position = 0
        self.ahead: set[Session] = set()
        # each session's (index, position), built when first asked (most publications are
        # asked nothing): one lookup each after that, not a scan of a 1,000-long list
        self.places: dict[Session, tuple[int, int]] | None = None
        self.started_s = started_s  # time.monotonic() when it was published
        self.cost_s = 0.0  # the loop thread's CPU spent on it so far

    def write(self, connections: Sessions, count_max: int | None) -> bool:
        """Write up to `count_max` more sessions (None: all); True once all are written."""
        writes = self.writes
        left = count_max
        while self.index < len(writes):
            _, sessions, items, write = writes[self.index]
            start = self.position
            end = len(sessions) if left is None else min(len(sessions), start + left)
            chunk = sessions[start:end]
            if self.ahead:
                chunk = [session for session in chunk if session not in self.ahead]
            connections.publish_write(chunk, items, write)
            if end < len(sessions):
                self.position = end
                return False
            self.index += 1
            self.position = 0
            if left is not None:
                left -= end - start
                if left <= 0:
                    return self.index == len(writes)
        return True

    def to_come(self, session: Session) -> bool:
        """Whether `session` has a place in the publication not yet written (nor ahead)."""
        return self._write_to_come(session) is not None

    def write_ahead(self, connections: Sessions, session: Session) -> None:
        """Write `session` now if its place in the publication is still to come."""
        index = self._write_to_come(session)
        if index is not None:
            self.ahead.add(session)
            _, _, items, write = self.writes[index]
            connections.publish_write((session,), items, write)

    def _write_to_come(self, session: Session) -> int | None:
        """The index of the write that has `session`'s place still to come, if any (none:
        written already, in its slice or ahead, or it joined after the publication, its
        snapshot holding these seqs)."""
        places = self.places
        if places is None:
            places = self.places = {
                member: (index, position)
                for index, write in enumerate(self.writes)
                for position, member in enumerate(write.sessions)
            }
        place = places.get(session)
        if place is None or session in self.ahead or place < (self.index, self.position):
            return None
        return place[0]


def tier(depth: int | None) -> int:
    """The smallest published depth tier that covers `depth` (default 10)."""
    wanted = depth or BOOK_DEPTHS[0]
    return next((tier for tier in BOOK_DEPTHS if tier >= wanted), BOOK_DEPTHS[-1])
