"""A command's thousands of pushes to one connection are a burst, not a slow consumer.

Until session 25 an outbox that reached `SEND_QUEUE_MESSAGES_MAX` (4,096) behind a paused
socket was cut off at once (`slow_consumer`, 4002); but one command's pushes to a connection
are all queued in one turn of the loop, before the client can read any, so an
`orders.cancel_all` of 15,000 orders cut off a follower of the account stream that read as
fast as it could (about 10,000 reports passed). Now such an outbox overflows: it may grow, up
to `SEND_QUEUE_BYTES_MAX`, while the client drains at least `SEND_QUEUE_DRAIN_MIN` messages
every `SEND_QUEUE_OVERFLOW_S`. A client that stopped reading is still cut off, in that time
or at once past the bytes.

Real servers on 127.0.0.1 and real SDK or websocket clients, except the `Sessions` unit tests
at the end (a recording transport that takes every write), which pin the rule's edges.
"""

import asyncio
import json
import logging
import socket
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from client.sdk import VenueClient
from gateway import frames, limits, transport, wire
from gateway.sessions import Session, Sessions
from tests.conftest import KEYS, Venue, next_push_not_heartbeat
from tests.gateway.test_server_packed import logon
from tests.gateway.test_server_sessions import WAIT_S, eventually, place_op
from tests.gateway.test_server_streams import wait_for_the_slow_consumer

ORDERS = 15_000  # an account may hold 20,000; 4,096 pushes more than a socket takes cut it
BATCHES_IN_FLIGHT = 25  # order.batch requests sent before their answers are awaited
NOTICE = {"ch": "session", "type": "slow_consumer"}


async def place_many(alpha: VenueClient, count: int) -> None:
    """`count` resting bids of alpha's, 20 to an order.batch, 25 batches in flight at once."""
    ops = [place_op("buy", "0.01", "180.00") for _ in range(limits.BATCH_OPS_MAX)]
    per_round = limits.BATCH_OPS_MAX * BATCHES_IN_FLIGHT
    assert count % per_round == 0, f"{count} orders are not whole rounds of {per_round}"
    for _ in range(count // per_round):
        answers = await asyncio.gather(*(alpha.batch(ops) for _ in range(BATCHES_IN_FLIGHT)))
        assert all(answer["status"] == 200 for answer in answers), answers[0]


async def an_account_of_many_orders(venue: Venue) -> VenueClient:
    """Alpha, logged on, with `ORDERS` open orders (the rate limits lifted to place them)."""
    venue.server.limiter = limits.RateLimiter(10**6, 10**6, 10**6, 10**6)
    alpha = await venue.client("alpha")
    await place_many(alpha, ORDERS)
    return alpha


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "unpacked"])
def test_a_follower_that_reads_gets_every_report_of_a_cancel_all_of_15000_orders(
    run_venue: Any, packed: bool
) -> None:
    """Before session 25: the follower was cut off, 4002, after about 10,000 reports."""

    async def scenario(venue: Venue) -> tuple[list[int], int, list[dict[str, Any]], bool]:
        alpha = await an_account_of_many_orders(venue)
        follower = VenueClient(venue.url(), packed=packed)
        venue.clients.append(await follower.connect())
        await follower.logon(*KEYS["alpha"])
        await follower.subscribe_account()
        snapshot = await next_push_not_heartbeat(follower, WAIT_S)
        assert snapshot["type"] == "snapshot" and len(snapshot["orders"]) == ORDERS
        assert (await alpha.cancel_all())["canceled"] == ORDERS
        seqs: list[int] = []  # of every account push: the reports, the balances
        canceled = 0
        other: list[dict[str, Any]] = []  # a session push (slow_consumer), the SDK's notices
        while canceled < ORDERS and not other:
            push = await follower.next_push(WAIT_S)
            if push.get("ch") == "account":
                seqs.append(push["seq"])
                canceled += push["type"] == "exec" and push["data"]["exec_type"] == "canceled"
            elif push.get("ch") != "heartbeat":
                other.append(push)
        followed = [s for s in venue.server.sessions.values() if s.account_stream]
        return seqs, canceled, other, all(not s.closing and s.overflow is None for s in followed)

    seqs, canceled, other, open_and_drained = run_venue(scenario)
    assert other == [], "nothing but the account's pushes: no slow_consumer, no close"
    assert canceled == ORDERS and seqs == list(range(seqs[0], seqs[0] + len(seqs))), "no gap"
    assert open_and_drained, "the follower is still open, its outbox back under the cap"


def test_a_follower_that_stopped_reading_is_still_cut_off_4002_within_the_overflow_period(
    run_venue: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same cancel_all to a follower that reads nothing (tiny socket buffers): cut off
    within `SEND_QUEUE_OVERFLOW_S` (2 s), its outbox never past `SEND_QUEUE_BYTES_MAX`, told
    `slow_consumer` last, closed 4002."""
    wait_for_the_slow_consumer(monkeypatch)  # it reads its last messages only at the end

    async def scenario(venue: Venue) -> tuple[bool, int, list[Any], int | None]:
        alpha = await an_account_of_many_orders(venue)
        before = set(venue.server.sessions)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", venue.port))
        sock.setblocking(False)
        stalled = await connect(
            venue.url(), sock=sock, max_queue=1, compression=None, max_size=None
        )
        await logon(stalled, "alpha", packed=False)  # and the account stream's snapshot
        (session_id,) = set(venue.server.sessions) - before
        session = venue.server.sessions[session_id]
        server_socket = session.websocket.transport.get_extra_info("socket")
        server_socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        stalled.transport.pause_reading()  # from here on it reads nothing
        assert (await alpha.cancel_all())["canceled"] == ORDERS
        peak = sum(map(len, session.outbox))

        async def cut_off() -> bool:
            return session.closing

        cut = await eventually(cut_off, limits.SEND_QUEUE_OVERFLOW_S + WAIT_S)
        stalled.transport.resume_reading()
        received = []
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(WAIT_S):
                while True:
                    received.append(json.loads(await stalled.recv()))
        return cut, peak, received, stalled.close_code

    cut, peak, received, close_code = run_venue(scenario)
    assert cut, "the client that stopped reading was never cut off"
    assert peak <= limits.SEND_QUEUE_BYTES_MAX, f"{peak / 2**20:.0f} MiB queued"
    assert close_code == 4002 and received[-1] == NOTICE
    assert len(received) < ORDERS, "what it did not read was dropped"


# ----------------------------------------------------------------- the rule's edges


class _Recorder:
    """A transport that takes every write (kept as the frames handed over)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def writelines(self, data: Any) -> None:
        self.writes.extend(data)

    def is_closing(self) -> bool:
        return False


def _paused_session(sessions: Sessions, packed: bool) -> tuple[Session, _Recorder]:
    """A session whose peer takes no more writes until `resume_writing`."""
    listener = transport.Listener(None, ("/ws/trade",), 2**20)  # type: ignore[arg-type]
    connection = transport.Connection(listener)
    recorder = _Recorder()
    connection.transport = recorder  # type: ignore[assignment]
    connection.is_open = True
    connection.packed = packed
    session = sessions.open(connection)
    connection.pause_writing()
    return session, recorder


def _small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "SEND_QUEUE_MESSAGES_MAX", 8)
    monkeypatch.setattr(limits, "SEND_QUEUE_DRAIN_MIN", 4)
    monkeypatch.setattr(limits, "SEND_QUEUE_OVERFLOW_S", 0.05)


def _push(number: int) -> bytes:
    return b'{"ch":"account","seq":%06d,"pad":"%s"}' % (number, b"x" * 60)  # all one size


def _notice(packed: bool) -> list[bytes]:
    notice = wire.encode(NOTICE)
    return [notice if packed else frames.text_frame(notice)]


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "unpacked"])
def test_a_full_outbox_behind_a_paused_peer_overflows_and_is_written_once_it_drains(
    monkeypatch: pytest.MonkeyPatch, packed: bool
) -> None:
    """Three times the cap queued in one turn (one `fan_out_all` and single pushes): kept,
    not cut; the peer takes them within the period, every one arrives, in order, and the
    overflow ends (no check left to cut it later)."""
    _small_limits(monkeypatch)
    pushes = [_push(number) for number in range(24)]

    async def main() -> tuple[bool, bool, int]:
        sessions = Sessions()
        session, recorder = _paused_session(sessions, packed)
        sessions.fan_out_all([session], pushes[:12])
        for push in pushes[12:]:
            sessions.send(session, push)
        overflowing = session.overflow is not None and not session.closing
        await asyncio.sleep(0)  # the turn's flush: the peer is paused, nothing written
        session.websocket.resume_writing()  # the peer read: its writer task writes it all
        await asyncio.sleep(limits.SEND_QUEUE_OVERFLOW_S * 3)
        messages = b"".join(recorder.writes).count(b'"seq"')
        return overflowing, session.closing or session.overflow is not None, messages

    overflowing, cut_or_still_overflowing, messages = asyncio.run(main())
    assert overflowing, "a full outbox behind a paused peer is not cut at once"
    assert not cut_or_still_overflowing and messages == len(pushes)


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "unpacked"])
def test_an_overflowing_outbox_the_peer_does_not_drain_is_cut_off_after_the_period(
    monkeypatch: pytest.MonkeyPatch, packed: bool
) -> None:
    _small_limits(monkeypatch)

    async def main() -> tuple[bool, list[bytes]]:
        sessions = Sessions()
        session, recorder = _paused_session(sessions, packed)
        for number in range(20):
            sessions.send(session, _push(number))
        at_once = session.closing
        await asyncio.sleep(limits.SEND_QUEUE_OVERFLOW_S * 3)
        assert session.closing, "cut off once the period passed without a drain"
        return at_once, recorder.writes  # `close` writes the notice, paused or not

    at_once, writes = asyncio.run(main())
    notice = _notice(packed)[0]
    assert not at_once and writes == [frames.array_frame(notice) if packed else notice]


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "unpacked"])
def test_an_overflowing_outbox_is_cut_off_at_once_past_its_bytes(
    monkeypatch: pytest.MonkeyPatch, packed: bool
) -> None:
    """Small messages (under `LARGE_MESSAGE_BYTES`) count too once it overflows: the
    message that would take it past `SEND_QUEUE_BYTES_MAX` cuts it off in the same turn."""
    _small_limits(monkeypatch)
    size = len(_push(0))
    monkeypatch.setattr(limits, "SEND_QUEUE_BYTES_MAX", size * 20)

    async def main() -> tuple[int, list[bytes]]:
        sessions = Sessions()
        session, _ = _paused_session(sessions, packed)
        sent = 0
        while not session.closing and sent < 100:
            sessions.send(session, _push(sent))
            sent += 1
        return sent, list(session.outbox)

    sent, outbox = asyncio.run(main())
    framing = 0 if packed else 2  # a text frame's header, as counted in the outbox
    assert sent == limits.SEND_QUEUE_BYTES_MAX // (size + framing) + 1, "cut by the one past"
    assert outbox == _notice(packed)


@pytest.mark.parametrize(("taken", "cut"), [(2, True), (10, False)], ids=["trickle", "reader"])
def test_each_period_the_peer_must_drain_enough_of_an_overflowing_outbox(
    monkeypatch: pytest.MonkeyPatch, taken: int, cut: bool
) -> None:
    """30 messages queued at once (the cap is 8), then each period the feed adds 3 and the
    peer takes `taken`: 2 is a trickle (under `SEND_QUEUE_DRAIN_MIN`, 4), cut off at the
    period's check, not kept until the bytes run out; 10 is a reader, kept until its outbox
    is back under the cap. (The checks are run by hand: no race with
    the test's own sleeps.)"""
    _small_limits(monkeypatch)
    monkeypatch.setattr(limits, "SEND_QUEUE_OVERFLOW_S", 3_600)

    async def main() -> tuple[bool, bool]:
        sessions = Sessions()
        session, _ = _paused_session(sessions, packed=False)
        sent = 0
        for _ in range(30):
            sessions.send(session, _push(sent))
            sent += 1
        for _ in range(5):  # periods
            for _ in range(3):
                sessions.send(session, _push(sent))
                sent += 1
            for _ in range(min(taken, len(session.outbox))):
                session.outbox.popleft()
            if session.overflow is None or session.closing:
                break
            session.overflow.cancel()
            sessions._check_overflow(session)  # the period is over
        return session.closing, session.overflow is None

    closing, overflow_over = asyncio.run(main())
    assert closing is cut and overflow_over


def test_a_peer_that_takes_enough_yet_falls_behind_the_feed_is_cut_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A peer taking 5 a period (above `SEND_QUEUE_DRAIN_MIN`, 4) of a feed adding 8 passed
    every check while its outbox grew, until the bytes ran out: in a real venue minutes of
    stale feed and ~32 MiB a connection (review of session 25). Past the first period its
    backlog must shrink: it is cut at the second check. An overflow is logged once a
    session, however often it recurs."""
    _small_limits(monkeypatch)
    monkeypatch.setattr(limits, "SEND_QUEUE_OVERFLOW_S", 3_600)

    async def main() -> tuple[int, bool]:
        sessions = Sessions()
        session, _ = _paused_session(sessions, packed=False)
        sent = checks = 0
        for _ in range(12):
            sessions.send(session, _push(sent))
            sent += 1
        while checks < 5 and not session.closing:
            for _ in range(8):
                sessions.send(session, _push(sent))
                sent += 1
            for _ in range(5):
                session.outbox.popleft()
            assert session.overflow is not None
            session.overflow.cancel()
            sessions._check_overflow(session)  # the period is over
            checks += 1
        return checks, session.closing

    with caplog.at_level(logging.INFO, logger="venue"):
        checks, closing = asyncio.run(main())
    assert (checks, closing) == (2, True)  # before: never cut within the 5 periods
    logged = [r.message for r in caplog.records].count("outbox overflowing")
    assert logged == 1


def test_an_overflow_that_recurs_is_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A reader hovering at the cap ends its overflow at each write and starts another with
    the next push: one log line each time, 40 a second at a busy feed (review of session
    25). The first is logged; the rest are not."""
    _small_limits(monkeypatch)

    async def main() -> int:
        sessions = Sessions()
        session, _ = _paused_session(sessions, packed=False)
        for number in range(9):
            sessions.send(session, _push(number))
        for cycle in range(20):
            session.outbox.popleft()
            session.outbox.popleft()
            session.overflow = None  # as a write that took it under the cap ends it
            sessions.send(session, _push(100 + cycle))
            sessions.send(session, _push(200 + cycle))
        return session.overflows

    with caplog.at_level(logging.INFO, logger="venue"):
        overflows = asyncio.run(main())
    assert overflows == 21
    assert [r.message for r in caplog.records].count("outbox overflowing") == 1
