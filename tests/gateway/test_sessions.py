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

from gateway import frames, limits, transport
from gateway.sessions import Session, Sessions
from tests.conftest import Venue
from tests.gateway.test_server_packed import (
    SYMBOL,
    WAIT_S,
    call,
    frames_until_quiet,
    public_updates,
    raw_client,
)
from tests.gateway.test_server_streams import busy_trading, open_slow_consumer

FOLLOWERS = 10  # packed, unpacked or both in one publication's flush
ORDERS = 20


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
        for packed, websocket in followers:
            await frames_until_quiet(websocket, packed)  # the answers and the snapshots
        assert await busy_trading(venue, ORDERS) == ORDERS
        received = [await frames_until_quiet(websocket, packed) for packed, websocket in followers]
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
    monkeypatch.setattr(limits, "SEND_QUEUE_MESSAGES_MAX", 16)

    async def scenario(venue: Venue) -> None:
        slow, session = await open_slow_consumer(venue)
        followers = [await raw_client(venue, "public", packed=True) for _ in range(FOLLOWERS)]
        for websocket in followers:
            await call(websocket, 1, "subscribe", ch="book", symbols=[SYMBOL], depth=1000)
            await frames_until_quiet(websocket, packed=True)
        assert await busy_trading(venue, 300) == 300
        assert session.closing, "the server gave up on the slow consumer"
        slow.transport.resume_reading()  # at once: a close not read in 2 s is an abort
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(WAIT_S):
                while True:
                    await slow.recv()
        assert slow.close_code == 4002
        seen = []  # publications are paced: turns may coalesce, but no update goes missing
        for websocket in followers:
            updates = public_updates(await frames_until_quiet(websocket, packed=True))
            seqs = [json.loads(update)["seq"] for update in updates]
            assert seqs and seqs == list(range(seqs[0], seqs[0] + len(seqs))), "no gap"
            seen.append(updates)
            await websocket.close()
        assert all(updates == seen[0] for updates in seen), "the same messages to all"

    run_venue(scenario)


class _Recorder:
    """A transport that keeps each write's frames (as handed over) and never closes."""

    def __init__(self) -> None:
        self.writes: list[list[bytes]] = []

    def writelines(self, data: Any) -> None:
        self.writes.append(list(data))

    def is_closing(self) -> bool:
        return False


def _packed_session(sessions: Sessions) -> tuple[Session, _Recorder]:
    listener = transport.Listener(None, ("/ws/public",), 2**20)  # type: ignore[arg-type]
    connection = transport.Connection(listener)
    recorder = _Recorder()
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
        assert third[1].writes[0][0] is second[1].writes[0][0], "framed once for both"
        for session, _ in (first, trader, second, single, third):
            assert not session.outbox

    asyncio.run(main())
