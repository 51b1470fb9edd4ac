"""`gateway/public_streams.py`: a publication written over several loop turns.

A publication's writes go out `WRITES_PER_TURN_MAX` subscribers a turn (here one, so a
handful of subscribers make a publication of many turns). Every test runs a real
VenueServer on 127.0.0.1 with real websocket clients, and checks each subscriber's `book`
messages: a snapshot, then updates whose `prev_seq` is the seq before (no gap, no repeat).
What must happen in the middle of a publication is made to happen there by order, not by
time: the publication is started (`PublicStreams.current`, as a query does) and the frames
handled in the same turn, through the dispatcher every frame goes through.
"""

import asyncio
import json
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gateway import limits, public_streams, sessions
from gateway.market_data import Channel, Stream
from gateway.sessions import Session
from tests.conftest import Venue
from tests.gateway.test_server_streams import read_to_its_close

SYMBOL = "AAPLx-USD"
BOOK = Stream(Channel.BOOK, SYMBOL, 10)
WAIT_S = 5.0  # the most any single expected event may take on a busy 2-core machine
ORDERS_TO_CUT_MAX = 380  # asks from 199.99 down a tick each, above the 190.00 placed after


class Feed:
    """A raw /ws/public connection whose every message is kept, and logged in `log` (shared
    by the feeds of a test: the order in which the clients read them)."""

    def __init__(self, name: str, websocket: ClientConnection, log: list[tuple[str, Any]]):
        self.name = name
        self.websocket = websocket
        self.messages: list[dict[str, Any]] = []
        self.log = log
        self.closed = asyncio.get_running_loop().create_future()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for frame in self.websocket:
                message = json.loads(frame)
                self.messages.append(message)
                self.log.append((self.name, message))
        except ConnectionClosed:
            pass
        self.closed.set_result(self.websocket.close_code)

    def book(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("ch") == "book"]

    def last_book_seq(self) -> int:
        book = self.book()
        return book[-1]["seq"] if book else 0


async def open_feed(venue: Venue, name: str, log: list[tuple[str, Any]]) -> Feed:
    return Feed(name, await connect(venue.url("public"), compression=None), log)


def server_session(venue: Venue, feed: Feed) -> Session:
    """The server's session of `feed`'s connection (found by the client's port)."""
    port = feed.websocket.local_address[1]
    return next(s for s in venue.server.sessions.values() if s.websocket.peer[1] == port)


def request(method: str, params: dict[str, Any], request_id: str) -> str:
    return json.dumps({"id": request_id, "method": method, "params": params})


BOOK_PARAMS = {"ch": "book", "symbols": [SYMBOL], "depth": 10}


async def subscribe(feed: Feed, params: dict[str, Any]) -> None:
    await feed.websocket.send(request("subscribe", params, f"sub-{params['ch']}"))
    assert await until(lambda: any(m.get("id") == f"sub-{params['ch']}" for m in feed.messages))


async def until(check: Callable[[], bool], timeout_s: float = WAIT_S) -> bool:
    """Poll `check` until it holds (True) or `timeout_s` has passed (False)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


def assert_gap_free(feed: Feed) -> list[int]:
    """Each book update continues the last book message (no gap, no repeat); the updates'
    seqs."""
    seq = None
    updates = []
    for message in feed.book():
        if message["type"] == "snapshot":
            seq = message["seq"]
            continue
        assert seq is not None, f"{feed.name}: an update before any snapshot"
        assert message["prev_seq"] == seq, f"{feed.name}: {message['prev_seq']} after {seq}"
        seq = message["seq"]
        updates.append(seq)
    return updates


def one_write_a_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(public_streams, "WRITES_PER_TURN_MAX", 1, raising=False)  # (main: none)


async def publish_now(venue: Venue) -> int:
    """Start the publication of what waits, as a query does once the fan-out's pause is
    over; the book's seq it publishes."""
    public = venue.server.public
    public._paced_at = 0.0  # the pause of the last fan-out is over
    public.current()
    return public.market_data.seq(BOOK)


async def until_spread_done(venue: Venue) -> None:
    public = venue.server.public
    assert await until(lambda: getattr(public, "_spread", None) is None), "never written out"


async def book_feeds_with_a_change_waiting(
    venue: Venue, count: int, log: list[tuple[str, Any]]
) -> tuple[Any, list[Feed]]:
    """`count` feeds following the book, publications made only when the test asks, one
    published after a quiet spell and a change waiting for the next: (alpha, the feeds)."""
    venue.server.public.pause_min_s = 3_600
    alpha = await venue.client("alpha")
    feeds = [await open_feed(venue, f"feed{i}", log) for i in range(count)]
    for feed in feeds:
        await subscribe(feed, BOOK_PARAMS)
    await alpha.place(SYMBOL, "buy", "1", "186.00")  # after a quiet spell: out at once
    await until_spread_done(venue)
    await alpha.place(SYMBOL, "buy", "1", "186.10")  # waits for the test (or the interval)
    return alpha, feeds


# ----------------------------------------------------------------- tests


def test_subscriptions_changed_mid_publication_neither_miss_nor_repeat_an_update(
    run_venue: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the middle of a publication: connections that followed nothing, or only trades,
    subscribe to the book (a snapshot at the publication's seq, not that update after it);
    one unsubscribes (it gets the update it was owed, then the answer, then nothing); one
    subscribes again to the book it follows (the update, then the new snapshot: not the
    snapshot, then an update it already holds)."""
    one_write_a_turn(monkeypatch)

    async def scenario(venue: Venue) -> None:
        public = venue.server.public
        public.pause_min_s = 3_600  # publications only when the test asks
        alpha = await venue.client("alpha")
        log: list[tuple[str, Any]] = []
        feeds = [await open_feed(venue, f"feed{i}", log) for i in range(8)]
        for feed in feeds[:5]:
            await subscribe(feed, BOOK_PARAMS)
        joiners = feeds[5:]  # the first follows the trades, the others nothing yet
        await subscribe(joiners[0], {"ch": "trades", "symbols": [SYMBOL]})
        await alpha.place(SYMBOL, "buy", "1", "186.00")  # after a quiet spell: out at once
        await until_spread_done(venue)
        await alpha.place(SYMBOL, "buy", "1", "186.10")  # waits for the test

        seq = await publish_now(venue)  # one subscriber written, the rest in the next turns
        spread = public._spread
        assert spread is not None, "the publication is being written"
        pending = {id(s) for s in spread.writes[0].sessions[spread.position :]}
        leaver, again = [f for f in feeds[:5] if id(server_session(venue, f)) in pending][:2]
        dispatcher = venue.server.dispatcher
        for joiner in joiners:
            dispatcher.on_frame(
                server_session(venue, joiner), request("subscribe", BOOK_PARAMS, "j")
            )
        dispatcher.on_frame(server_session(venue, leaver), request("unsubscribe", BOOK_PARAMS, "l"))
        dispatcher.on_frame(server_session(venue, again), request("subscribe", BOOK_PARAMS, "a"))
        assert public._spread is spread, "all three came while it was being written"
        await until_spread_done(venue)

        await alpha.place(SYMBOL, "buy", "1", "186.20")
        last = await publish_now(venue)
        assert last == seq + 1
        following = [f for f in feeds if f is not leaver]
        assert await until(lambda: all(f.last_book_seq() == last for f in following))
        for feed in feeds:
            assert_gap_free(feed)
        for joiner in joiners:
            assert [m["seq"] for m in joiner.book()] == [seq, last], "snapshot at seq, then next"
            assert [m["type"] for m in joiner.book()] == ["snapshot", "update"]
        answered = [m.get("id") for m in leaver.messages].index("l")
        assert leaver.messages[answered - 1]["seq"] == seq, "the owed update, then the answer"
        assert not [m for m in leaver.messages[answered:] if m.get("ch") == "book"]
        assert [(m["type"], m["seq"]) for m in again.book()[-3:]] == [
            ("update", seq),
            ("snapshot", seq),
            ("update", last),
        ]

    run_venue(scenario)


def test_a_traders_order_is_answered_while_a_publication_is_being_written(
    run_venue: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An order that arrives while a long publication is written is read and answered
    between its slices: its answer reaches the trader before the last subscriber's update of
    that publication (before: after every subscriber's, the fan-out being one loop turn)."""
    one_write_a_turn(monkeypatch)

    async def scenario(venue: Venue) -> None:
        log: list[tuple[str, Any]] = []
        alpha, feeds = await book_feeds_with_a_change_waiting(venue, 30, log)

        async def place_and_log() -> None:
            placed = await alpha.place(SYMBOL, "buy", "1", "185.00")
            log.append(("trader", placed))

        placing = asyncio.create_task(place_and_log())
        await asyncio.sleep(0)  # the order is sent
        seq = await publish_now(venue)
        await placing
        assert await until(lambda: all(f.last_book_seq() >= seq for f in feeds))
        readers = [i for i, (name, m) in enumerate(log) if m.get("seq") == seq]
        assert len(readers) == len(feeds), "every subscriber got the publication's update"
        answered = next(i for i, (name, _) in enumerate(log) if name == "trader")
        assert answered < readers[-1], "answered before the publication was written out"
        for feed in feeds:
            assert_gap_free(feed)

    run_venue(scenario)


def test_a_slow_consumer_cut_off_mid_publication_leaves_the_others_gap_free(
    run_venue: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A consumer that stopped reading is cut off (4002, `slow_consumer` last) in the first
    slice of a publication; the subscribers written in the next turns get every update."""
    one_write_a_turn(monkeypatch)
    monkeypatch.setattr(limits, "SEND_QUEUE_MESSAGES_MAX", 16)
    monkeypatch.setattr(limits, "SEND_QUEUE_BYTES_MAX", 16 * 1024)  # past it: cut at once
    monkeypatch.setattr(sessions, "CLOSE_TIMEOUT_S", 20)  # it reads its last messages below

    async def scenario(venue: Venue) -> None:
        public = venue.server.public
        public.pause_min_s = 0.0  # a publication per order
        slow, slow_session = await open_slow_consumer(venue)
        log: list[tuple[str, Any]] = []
        feeds = [await open_feed(venue, f"feed{i}", log) for i in range(4)]
        for feed in feeds:  # an audience heard after the slow consumer's (made before)
            await subscribe(feed, {"ch": "book", "symbols": [SYMBOL], "depth": 1000})
        cut_with_writes_left: list[bool] = []  # at the cut: others still to be written?
        cut_off = venue.server.connections._cut_off

        def observed_cut_off(session: Session) -> None:
            spread = public._spread  # the others' audience is written after the slow one's
            cut_with_writes_left.append(
                spread is not None and spread.index < len(spread.writes) - 1
            )
            cut_off(session)

        monkeypatch.setattr(venue.server.connections, "_cut_off", observed_cut_off)
        alpha = await venue.client("alpha")
        # Until its outbox passes the byte cap (~120 updates on a quiet machine; under load
        # orders coalesce into fewer publications, and 120 orders once left 14,204 bytes).
        for i in range(ORDERS_TO_CUT_MAX):
            await alpha.place(SYMBOL, "sell", "0.01", f"{199.99 - i / 100:.2f}")
            if slow_session.closing:
                break
        assert slow_session.closing, "the slow consumer was cut off"
        assert cut_with_writes_left == [True], "in a publication, the others still to write"
        await alpha.place(SYMBOL, "sell", "0.01", "190.00")
        await until_spread_done(venue)
        public.publish_waiting()  # the last order's change too (its publication may wait)
        last = public.market_data.seq(Stream(Channel.BOOK, SYMBOL, 1000))
        assert await until(lambda: all(f.last_book_seq() == last for f in feeds))
        for feed in feeds:
            assert len(assert_gap_free(feed)) >= 2

        received = await read_to_its_close(slow)
        assert slow.close_code == 4002
        assert received[-1] == {"ch": "session", "type": "slow_consumer"}
        seq = None
        for message in received:
            if message.get("ch") == "book" and message.get("depth") == 1000:
                assert seq is None or message["prev_seq"] == seq, "its own prefix is gap-free"
                seq = message["seq"]
        assert seq is not None and seq < last, "what did not fit was dropped"

    run_venue(scenario)


async def open_slow_consumer(venue: Venue) -> tuple[ClientConnection, Session]:
    """A /ws/public connection that will not read (tiny socket buffers on both ends) and
    follows the book (1,000 levels), the bbo and the trades."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", venue.port))
    sock.setblocking(False)
    websocket = await connect(venue.url("public"), sock=sock, max_queue=1, compression=None)
    port = websocket.local_address[1]
    assert await until(
        lambda: any(s.websocket.peer[1] == port for s in venue.server.sessions.values())
    )
    session = next(s for s in venue.server.sessions.values() if s.websocket.peer[1] == port)
    server_socket = session.websocket.transport.get_extra_info("socket")
    server_socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    session.websocket.transport.set_write_buffer_limits(high=2048)  # paused soon
    for channel in ("book", "bbo", "trades"):
        params: dict[str, Any] = {"ch": channel, "symbols": [SYMBOL]}
        if channel == "book":
            params["depth"] = 1000
        await websocket.send(request("subscribe", params, channel))
    assert await until(lambda: len(session.streams) == 3)
    websocket.transport.pause_reading()  # from here on it reads nothing
    return websocket, session


def test_a_heartbeat_names_no_seq_its_session_was_not_yet_sent(
    run_venue: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A silent subscriber due a heartbeat while its update is still to be written gets the
    update first: a heartbeat's seqs never run ahead of what the connection holds."""
    one_write_a_turn(monkeypatch)

    async def scenario(venue: Venue) -> None:
        public = venue.server.public
        log: list[tuple[str, Any]] = []
        _, feeds = await book_feeds_with_a_change_waiting(venue, 4, log)
        seq = await publish_now(venue)
        spread = public._spread
        assert spread is not None
        pending = spread.writes[0].sessions[spread.position :]
        for session in pending:
            session.last_sent_us = 0  # silent for long: due a heartbeat
        public.send_heartbeats(limits.HEARTBEAT_INTERVAL_S * 1_000_000)
        await until_spread_done(venue)
        assert await until(lambda: all(f.last_book_seq() == seq for f in feeds))
        for feed in feeds:
            assert_gap_free(feed)
            held = 0
            for message in feed.messages:
                if message.get("ch") == "book":
                    held = message["seq"]
                elif message.get("ch") == "heartbeat":
                    assert message["seqs"][BOOK.name] <= held, "a seq it was not sent"

    run_venue(scenario)


def test_the_interval_is_counted_from_a_publications_start_not_its_last_slice(
    run_venue: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`market_data_interval_ms` spaces the publications' starts (the `ts` their messages
    carry): a publication written over many turns does not add their time to the pause."""
    one_write_a_turn(monkeypatch)

    async def scenario(venue: Venue) -> None:
        public = venue.server.public
        alpha = await venue.client("alpha")
        log: list[tuple[str, Any]] = []
        for feed in [await open_feed(venue, f"feed{i}", log) for i in range(4)]:
            await subscribe(feed, BOOK_PARAMS)
        public.pause_min_s = 3_600
        await alpha.place(SYMBOL, "buy", "1", "186.00")
        await until_spread_done(venue)
        await alpha.place(SYMBOL, "buy", "1", "186.10")
        await publish_now(venue)
        spread = public._spread
        assert spread is not None, "written over several turns"
        await until_spread_done(venue)
        assert public._next_at == spread.started_s + public.pause_min_s

    run_venue(scenario)


def test_a_heartbeat_on_a_quiet_market_writes_one_slice_of_its_publication_not_all(
    run_venue: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The heartbeat's tick starts a publication after a quiet spell, when every subscriber
    is due a heartbeat: its turn writes the publication's first slice, not every subscriber
    ahead of its place (the stall the slices are there to end); those whose place is still
    to come get no heartbeat (it would name seqs they lack), their update in their slice."""
    one_write_a_turn(monkeypatch)

    async def scenario(venue: Venue) -> None:
        public = venue.server.public
        log: list[tuple[str, Any]] = []
        _, feeds = await book_feeds_with_a_change_waiting(venue, 6, log)
        assert public._timer is not None
        public._timer.cancel()  # the interval is over by the heartbeat's tick
        public._timer = None
        public._next_at = 0.0
        subscribers = [server_session(venue, feed) for feed in feeds]
        for session in venue.server.sessions.values():
            session.last_sent_us = 0  # a quiet market: every connection is due a heartbeat
        public.send_heartbeats(limits.HEARTBEAT_INTERVAL_S * 1_000_000)
        assert public._spread is not None, "the tick started a publication"
        written = [session for session in subscribers if session.last_sent_us != 0]
        assert len(written) == public_streams.WRITES_PER_TURN_MAX, "only its first slice"
        seq = public.market_data.seq(BOOK)
        await until_spread_done(venue)
        assert await until(lambda: all(f.last_book_seq() == seq for f in feeds))
        for feed in feeds:
            assert_gap_free(feed)
            assert_heartbeats_name_held_seqs(feed)

    run_venue(scenario)


def test_a_publication_asked_for_meanwhile_starts_in_a_turn_after_the_last_slice(
    run_venue: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A publication asked for while one is being written starts in a turn of its own: the
    last slice's turn does not also carry `MarketData.flush` and the next's first slice.
    The slices are written here by hand, one a call, so the turns are the test's."""
    one_write_a_turn(monkeypatch)

    async def scenario(venue: Venue) -> None:
        public = venue.server.public
        log: list[tuple[str, Any]] = []
        alpha, feeds = await book_feeds_with_a_change_waiting(venue, 4, log)
        await publish_now(venue)
        spread = public._spread
        assert spread is not None and public._turn is not None
        public._turn.cancel()  # held mid-publication: the next order's changes must wait
        await alpha.place(SYMBOL, "buy", "1", "186.20")
        assert public._wanted, "asked for while the last one is being written"
        public.pause_min_s = 0.0  # the next may go as soon as this one is written
        while public._spread is spread:
            public._write_turn()
            if public._spread is spread and public._turn is not None:
                public._turn.cancel()
        assert public._spread is None, "the next publication started in the last slice's turn"
        assert public._timer is not None, "the next publication is due"
        assert await until(lambda: public._timer is None), "the next publication went out"
        await until_spread_done(venue)
        seq = public.market_data.seq(BOOK)
        assert await until(lambda: all(f.last_book_seq() == seq for f in feeds))
        for feed in feeds:
            assert len(assert_gap_free(feed)) >= 3  # the three orders' updates, none lost

    run_venue(scenario)


def assert_heartbeats_name_held_seqs(feed: Feed) -> None:
    """Every heartbeat `feed` got names a book seq it held already."""
    held = 0
    for message in feed.messages:
        if message.get("ch") == "book":
            held = message["seq"]
        elif message.get("ch") == "heartbeat":
            assert message["seqs"][BOOK.name] <= held, f"{feed.name}: a seq it was not sent"
