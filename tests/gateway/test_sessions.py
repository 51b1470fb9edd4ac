"""gateway.sessions: a fan-out to many sessions and their flush (`Sessions.flush_outboxes`
writes the usual session inline, a packed one's one message framed once for all), against
real subscribers of a real server.

Each subscriber must get every public message, the same bytes, packed or not; a slow
consumer among many is still cut off (4002) while the others get everything.
"""

import asyncio
import json
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from engine.enums import OrderStatus, OrderType, SelfTradePrevention, Side, TimeInForce
from engine.events import InstrumentListed, OrderAccepted, TradeExecuted
from gateway import frames, limits, transport
from gateway import sessions as sessions_module
from gateway.market_data import Channel, MarketData, Stream
from gateway.public_streams import PublicStreams
from gateway.sessions import Session, Sessions
from tests.conftest import Venue
from tests.engine.conftest import make_spec
from tests.gateway.recording import Recorder
from tests.gateway.test_server_packed import (
    SYMBOL,
    WAIT_S,
    call,
    frames_until_quiet,
    public_updates,
    raw_client,
)
from tests.gateway.test_server_streams import (
    busy_trading,
    cut_a_stalled_reader_soon,
    cut_off,
    open_slow_consumer,
    trade_until_cut_off,
    wait_for_the_slow_consumer,
)

FOLLOWERS = 10  # packed, unpacked or both in one publication's flush
ORDERS = 20


async def all_until_quiet(followers: list[tuple[bool, Any]]) -> list[list[list[bytes]]]:
    """`frames_until_quiet` of each (packed, websocket), in order, waited for together: one
    after the other, each follower's quiet spell (0.3 s) came on top of the others'."""
    return await asyncio.gather(
        *(frames_until_quiet(websocket, packed) for packed, websocket in followers)
    )


@pytest.mark.parametrize("packed_share", [0, 1, 0.5], ids=["unpacked", "packed", "mixed"])
def test_many_subscribers_each_get_every_public_message(
    run_venue: Any, packed_share: float
) -> None:
    async def scenario(venue: Venue) -> None:
        packed_count = round(FOLLOWERS * packed_share)
        followers = [
            (index < packed_count, await raw_client(venue, "public", index < packed_count))
            for index in range(FOLLOWERS)
        ]
        for _, websocket in followers:
            await call(websocket, 1, "subscribe", ch="book", symbols=[SYMBOL], depth=10)
            await call(websocket, 2, "subscribe", ch="trades", symbols=[SYMBOL])
        await all_until_quiet(followers)  # the answers and the snapshots
        assert await busy_trading(venue, ORDERS) == ORDERS
        received = await all_until_quiet(followers)
        updates = [public_updates(frames) for frames in received]
        seqs = [json.loads(update)["seq"] for update in updates[0]]  # paced: may coalesce
        assert seqs and seqs == list(range(seqs[0], seqs[0] + len(seqs))), "no gap"
        assert all(got == updates[0] for got in updates), "the same messages, in order, to all"
        for _, websocket in followers:
            await websocket.close()

    run_venue(scenario)


def test_a_slow_consumer_among_many_is_cut_off_and_the_others_get_everything(
    run_venue: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cut_a_stalled_reader_soon(monkeypatch)
    wait_for_the_slow_consumer(monkeypatch)

    async def scenario(venue: Venue) -> None:
        slow, session = await open_slow_consumer(venue)
        followers = [await raw_client(venue, "public", packed=True) for _ in range(FOLLOWERS)]
        for websocket in followers:
            await call(websocket, 1, "subscribe", ch="book", symbols=[SYMBOL], depth=1000)
        await all_until_quiet([(True, websocket) for websocket in followers])
        placed, answered = await trade_until_cut_off(venue, session)
        assert answered == placed, "the trader was answered every time"
        assert await cut_off(session), "the server gave up on the slow consumer"
        at_the_cut = await book_seq(venue)
        assert await busy_trading(venue, ORDERS) == ORDERS, "the fan-out goes on after the cut"
        slow.transport.resume_reading()
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(WAIT_S):
                while True:
                    await slow.recv()
        assert slow.close_code == 4002
        seen = []  # publications are paced: turns may coalesce, but no update goes missing
        everyone = [(True, websocket) for websocket in followers]
        received = await all_until_quiet(everyone)
        last = await book_seq(venue)  # publishes what still waits, if anything does
        assert last > at_the_cut
        more = await all_until_quiet(everyone)
        received = [its + later for its, later in zip(received, more, strict=True)]
        for websocket, its_frames in zip(followers, received, strict=True):
            updates = public_updates(its_frames)
            seqs = [json.loads(update)["seq"] for update in updates]
            assert seqs and seqs == list(range(seqs[0], seqs[0] + len(seqs))), "no gap"
            assert seqs[-1] >= last, "every follower got the publications after the cut"
            seen.append(updates)
            await websocket.close()
        assert all(updates == seen[0] for updates in seen), "the same messages to all"

    run_venue(scenario)


async def book_seq(venue: Venue) -> int:
    """The `book` stream's seq at the followers' tier (1,000): its last publication's."""
    client = await venue.client(endpoint="public")
    snapshot = await client.request("book.snapshot", {"symbol": SYMBOL, "depth": 1000})
    return int(snapshot["seq"])


def _packed_session(sessions: Sessions) -> tuple[Session, Recorder]:
    listener = transport.Listener(None, ("/ws/public",), 2**20)  # type: ignore[arg-type]
    connection = transport.Connection(listener)
    recorder = Recorder()
    connection.transport = recorder  # type: ignore[assignment]
    connection.is_open = True
    connection.packed = True
    return sessions.open(connection), recorder


def test_packed_outboxes_of_several_messages_are_framed_once_for_equal_ones() -> None:
    """A publication of several messages reaches each packed subscriber as one array frame,
    built once for a run of subscribers queued the same messages (they are dirty in a row: a
    publication's fan-out); a session queued others in between (a trader's answers and
    pushes) gets its own, and so does one of a single message after them."""

    async def main() -> None:
        sessions = Sessions()
        book, trades = b'{"ch":"book"}', b'{"ch":"trades"}'
        answer, push = b'{"id":1}', b'{"ch":"account"}'
        first, trader, second, third, single = (_packed_session(sessions) for _ in range(5))
        sessions.fan_out([first[0]], book)
        sessions.fan_out([first[0]], trades)
        sessions.send(trader[0], answer)
        sessions.send(trader[0], push)
        for session in (second[0], third[0]):
            sessions.fan_out([session], book)
            sessions.fan_out([session], trades)
        sessions.send(single[0], book)  # dirty after `third`: made so in this order
        sessions.flush_outboxes()
        both = frames.array_frame(book + b"," + trades)
        assert first[1].writes == [[both]] and second[1].writes == [[both]]
        assert trader[1].writes == [[frames.array_frame(answer + b"," + push)]]
        assert single[1].writes == [[frames.array_frame(book)]]
        assert third[1].writes == [[both]]
        assert third[1].chunks[0][1] is second[1].chunks[0][1], "joined once for both"
        for session, _ in (first, trader, second, single, third):
            assert not session.outbox

    asyncio.run(main())


def test_writes_held_by_their_caller_ask_for_no_flush_of_their_own() -> None:
    """Between `hold_writes` and `release_writes` (a released batch's answers and pushes) the
    sessions dirtied ask for no flush in the next turn: `release_writes` writes them, each in
    one write, and the loop has nothing left to run for them. Outside, the first dirtied
    session still asks for one."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        scheduled: list[Any] = []
        call_soon = loop.call_soon

        def counting_call_soon(callback: Any, *args: Any, **kwargs: Any) -> Any:
            scheduled.append(callback)
            return call_soon(callback, *args, **kwargs)

        loop.call_soon = counting_call_soon  # type: ignore[method-assign]
        sessions = Sessions()
        (first, first_writes), (second, second_writes) = (
            _packed_session(sessions) for _ in range(2)
        )
        scheduled.clear()  # the writer tasks' first steps
        answer, push = b'{"id":1}', b'{"ch":"account"}'
        sessions.hold_writes()
        sessions.send(first, answer)
        sessions.fan_out_all([first, second], [push])
        assert not scheduled, "held: no flush asked for"
        assert not first_writes.writes and not second_writes.writes
        sessions.release_writes()
        assert first_writes.writes == [[frames.array_frame(answer + b"," + push)]]
        assert second_writes.writes == [[frames.array_frame(push)]]
        assert not first.dirty and not second.dirty and not scheduled
        sessions.send(first, answer)  # not held: the next turn flushes
        assert scheduled == [sessions.flush_outboxes]
        await asyncio.sleep(0)
        assert first_writes.writes[-1] == [frames.array_frame(answer)]

    asyncio.run(main())


def _public_streams(sessions: Sessions) -> tuple[PublicStreams, Any]:
    """Public streams over one listed instrument, its market data fed by hand."""
    spec = make_spec()
    public = PublicStreams(sessions, None, 1, 0.0)  # type: ignore[arg-type]
    public.market_data = MarketData(1, public.candles)
    public.market_data.on_events([InstrumentListed(0, spec)])
    public.market_data.flush(0, {})
    return public, spec


def _a_bid_and_a_trade(spec: Any, order_id: int) -> list[Any]:
    """A bid that rests and a trade between orders the book never held: book and trades."""
    price, qty = spec.reference_price - spec.price_tick, spec.min_qty
    bid = OrderAccepted(
        1, order_id, 1, spec.symbol, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, price, qty,
        0, False, SelfTradePrevention.EXPIRE_TAKER, None, None, 0,
    )  # fmt: skip
    trade = TradeExecuted(
        1, spec.symbol, order_id, spec.reference_price, qty, Side.BUY, 0, 2, 0, qty,
        OrderStatus.FILLED, 0, 3, 0, qty, OrderStatus.FILLED,
    )  # fmt: skip
    return [bid, trade]


def _session(sessions: Sessions, packed: bool) -> tuple[Session, Recorder]:
    session, recorder = _packed_session(sessions)
    session.packed = session.websocket.packed = packed
    return session, recorder


def _payload(frame: bytes) -> bytes:
    """A server frame's payload: past its 2-byte header, or 4 with a 16-bit length."""
    return frame[4:] if frame[1] == frames.LENGTH_16 else frame[2:]


def test_a_publication_is_written_at_once_to_idle_followers_and_queued_behind_the_rest() -> None:
    """Followers of the same streams, packed alike, get one write built once for all; one
    with a message queued this turn gets the publication after it, in the same write; one
    whose peer is not reading keeps it queued for its writer; an unpacked one gets the
    frames of only the streams it follows, in the publication's order."""

    async def main() -> None:
        sessions = Sessions()
        public, spec = _public_streams(sessions)
        book, trades = Stream(Channel.BOOK, spec.symbol, 10), Stream(Channel.TRADES, spec.symbol)
        idle = [_session(sessions, packed=True) for _ in range(3)]
        busy, paused, plain = (_session(sessions, packed) for packed in (True, True, False))
        for session, _ in [*idle, busy, paused]:
            public.follow(session, [book, trades], 0)
        public.follow(plain[0], [book], 0)
        sessions.flush_outboxes()  # the snapshots
        for session, recorder in [*idle, busy, paused, plain]:
            recorder.writes.clear()
            session.last_sent_us = 0  # the heartbeat counts silence from the last write
        answer = b'{"id":7}'
        sessions.send(busy[0], answer)
        paused[0].websocket.paused = True
        public.market_data.on_events(_a_bid_and_a_trade(spec, 1))
        public.flush()
        published = public.market_data.seq(book), public.market_data.seq(trades)
        assert published == (2, 1), "one update of each stream"
        trade_update, book_update = paused[0].outbox  # the order of the publication
        assert json.loads(book_update)["ch"] == "book"
        both = frames.array_frame(trade_update + b"," + book_update)
        assert all(recorder.writes == [[both]] for _, recorder in idle)
        assert len({id(recorder.chunks[0][0]) for _, recorder in idle}) == 1, "built once"
        assert busy[1].writes == [
            [frames.array_frame(b",".join((answer, trade_update, book_update)))]
        ]
        assert not paused[1].writes and paused[0].wake.is_set(), "left to its writer task"
        assert plain[1].writes == [[frames.text_frame(book_update)]]
        for session, _ in [*idle, busy, plain]:
            assert not session.outbox and not session.dirty
            assert session.last_sent_us, "written now: no heartbeat due"

    asyncio.run(main())


def test_a_packed_publication_over_one_frame_is_split_as_the_outbox_path_splits_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Messages that would make a packed frame over `PACK_BYTES_MAX` go as the outbox writes
    them: several frames, none over the cap (a single larger message alone in its own)."""
    monkeypatch.setattr(sessions_module, "PACK_BYTES_MAX", 64)

    async def main() -> None:
        sessions = Sessions()
        public, spec = _public_streams(sessions)
        book, trades = Stream(Channel.BOOK, spec.symbol, 10), Stream(Channel.TRADES, spec.symbol)
        session, recorder = _session(sessions, packed=True)
        public.follow(session, [book, trades], 0)
        sessions.flush_outboxes()
        recorder.writes.clear()
        public.market_data.on_events(_a_bid_and_a_trade(spec, 1))
        public.flush()
        sent = [json.loads(_payload(frame)) for write in recorder.writes for frame in write]
        assert [[message["ch"] for message in array] for array in sent] == [["trades"], ["book"]]
        assert not session.outbox

    asyncio.run(main())


def test_the_audiences_are_the_followers_grouped_by_what_they_follow() -> None:
    """Each following session is in one audience, with those that follow the very same
    streams and are packed alike; a stream is wanted while someone follows it."""

    async def main() -> None:
        sessions = Sessions()
        public, spec = _public_streams(sessions)
        book, trades = Stream(Channel.BOOK, spec.symbol, 10), Stream(Channel.TRADES, spec.symbol)
        first, second, plain = (_session(sessions, packed)[0] for packed in (True, True, False))
        for session in (first, second, plain):
            public.follow(session, [book], 0)
        public.follow(first, [trades], 0)
        groups = {(audience.streams, audience.packed, frozenset(audience.sessions))
                  for hearing in public.audiences.values() for audience in hearing}  # fmt: skip
        assert groups == {
            (frozenset({book, trades}), True, frozenset({first})),
            (frozenset({book}), True, frozenset({second})),
            (frozenset({book}), False, frozenset({plain})),
        }
        public.unfollow(first, trades)
        assert set(public.audiences) == {book}, "trades: no one follows it"
        assert len(public.audiences[book]) == 2, "first joined second's audience"
        for session in (first, second, plain):
            public.leave(session)
        assert not public.audiences

    asyncio.run(main())


@pytest.mark.parametrize("bytes_max, calls", [(2**20, 1), (1, 3)], ids=["one-call", "per-frame"])
def test_a_packed_burst_goes_in_frames_split_as_before_handed_over_in_one_call(
    monkeypatch: pytest.MonkeyPatch, bytes_max: int, calls: int
) -> None:
    """An outbox over one frame's worth (a stalled turn's pushes) leaves in frames of up to
    `WRITE_BATCH_MAX` messages, in order, all in one call to the transport (one system call)
    until the call holds `WRITE_BYTES_MAX` bytes."""
    monkeypatch.setattr(sessions_module, "WRITE_BYTES_MAX", bytes_max)

    async def main() -> None:
        sessions = Sessions()
        session, recorder = _packed_session(sessions)
        batch_max = sessions_module.WRITE_BATCH_MAX
        messages = [b'{"n":%d}' % index for index in range(batch_max * 2 + 7)]
        for message in messages:
            sessions.send(session, message)
        sessions.flush_outboxes()
        assert len(recorder.writes) == calls
        sent = [frame for write in recorder.writes for frame in write]
        assert sent == [
            frames.array_frame(b",".join(messages[start : start + batch_max]))
            for start in range(0, len(messages), batch_max)
        ]
        assert not session.outbox

    asyncio.run(main())


def test_a_packed_bursts_call_counts_whole_frames_against_its_bytes_max(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`WRITE_BYTES_MAX` bounds the bytes a call hands over, each frame's header and brackets
    counted: a bound of the first frame's whole length sends it alone."""
    batch_max = sessions_module.WRITE_BATCH_MAX
    messages = [b'{"n":%d}' % index for index in range(batch_max * 2)]
    first = frames.array_frame(b",".join(messages[:batch_max]))
    monkeypatch.setattr(sessions_module, "WRITE_BYTES_MAX", len(first))

    async def main() -> None:
        sessions = Sessions()
        session, recorder = _packed_session(sessions)
        for message in messages:
            sessions.send(session, message)
        sessions.flush_outboxes()
        assert recorder.writes[0] == [first], "the bound reached: the call ends with this frame"
        assert len(recorder.writes) == 2 and not session.outbox

    asyncio.run(main())


def test_a_publication_skips_a_connection_whose_close_has_begun() -> None:
    """`publish` writes an idle follower at once only while its connection is open and its
    transport is not closing (as `Connection.send_frames` would): the others get nothing and
    keep nothing queued; nobody will read them."""

    class _Closing(Recorder):
        def is_closing(self) -> bool:
            return True

    async def main() -> None:
        sessions = Sessions()
        open_one, closed_one, closing_one = (_session(sessions, packed=True) for _ in range(3))
        closed_one[0].websocket.is_open = False  # the closing handshake has begun
        closing = _Closing()
        closing_one[0].websocket.transport = closing  # type: ignore[assignment]
        audience = [open_one[0], closed_one[0], closing_one[0]]
        sessions.publish(audience, [b'{"ch":"book"}'], packed=True)
        assert open_one[1].writes == [[frames.array_frame(b'{"ch":"book"}')]]
        assert not closed_one[1].writes and not closing.writes
        assert not any(session.outbox for session in audience)

    asyncio.run(main())


def _outcome(sessions: Sessions, recorders: list[Recorder]) -> list[Any]:
    """What each session's peer got and what it still holds, once the turn is flushed."""
    sessions.flush_outboxes()
    return [
        (recorder.writes, list(session.outbox), session.closing)
        for session, recorder in zip(sessions.sessions.values(), recorders, strict=True)
    ]


@pytest.mark.parametrize("queued", [0, 5, 8], ids=["usual", "filled-by-them", "full"])
@pytest.mark.parametrize("paused", [False, True], ids=["reading", "paused"])
@pytest.mark.parametrize("closing", [False, True], ids=["open", "closing"])
def test_a_commands_pushes_handed_over_at_once_leave_as_one_fan_out_each_would_send_them(
    monkeypatch: pytest.MonkeyPatch, queued: int, paused: bool, closing: bool
) -> None:
    """`fan_out_all` (a command's pushes to an account's sessions, one call) queues, writes,
    cuts off and closes exactly as one `fan_out` per push: the same frames to each peer (a
    packed one's in one array), the same left queued, the same slow consumers (an outbox
    the pushes would fill: written at once if its peer reads, cut off if paused)."""
    monkeypatch.setattr(limits, "SEND_QUEUE_MESSAGES_MAX", 8)
    pushes = [b'{"ch":"account","seq":%d}' % seq for seq in range(1, 5)]

    async def deliver(at_once: bool) -> list[Any]:
        sessions = Sessions()
        opened = [_session(sessions, packed) for packed in (True, False, True, False)]
        for session, _ in opened:
            for index in range(queued):
                sessions.send(session, b'{"id":%d}' % index)  # this turn's answers, queued
            session.websocket.paused = paused
            session.closing = closing
        audience = [session for session, _ in opened]
        if at_once:
            sessions.fan_out_all(audience, pushes)
        else:
            for push in pushes:
                sessions.fan_out(audience, push)
        return _outcome(sessions, [recorder for _, recorder in opened])

    async def main() -> None:
        assert await deliver(at_once=True) == await deliver(at_once=False)

    asyncio.run(main())


def test_a_commands_pushes_are_framed_once_for_all_the_sessions_not_packed() -> None:
    async def main() -> None:
        sessions = Sessions()
        pushes = [b'{"seq":1}', b'{"seq":2}']
        plain = [_session(sessions, packed=False)[0] for _ in range(2)]
        packed = _session(sessions, packed=True)[0]
        sessions.fan_out_all([*plain, packed], pushes)
        assert list(plain[0].outbox) == [frames.text_frame(push) for push in pushes]
        assert all(a is b for a, b in zip(plain[0].outbox, plain[1].outbox, strict=True))
        assert list(packed.outbox) == pushes
        assert sessions._dirty == [*plain, packed], "each queued for this turn's write once"

    asyncio.run(main())
