"""Packed frames end to end (`?pack=1`, docs/protocol.md §2.2): a session's messages of a loop
turn in one frame holding a JSON array, the same messages byte for byte as an unpacked
session gets; the caps on a frame; slow consumers; bad options refused at the handshake."""

import asyncio
import json
import socket
from typing import Any

import msgspec
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway import sessions
from gateway.auth import RECV_WINDOW_MS_DEFAULT, sign_logon
from tests.conftest import KEYS, Venue
from tests.gateway.test_server_sessions import eventually, now_us
from tests.gateway.test_server_streams import (
    busy_trading,
    cut_a_stalled_reader_soon,
    cut_off,
    trade_until_cut_off,
    wait_for_the_slow_consumer,
)

SYMBOL = "AAPLx-USD"
WAIT_S = 3.0  # the most any single expected event may take on a busy 2-core machine
QUIET_S = 0.3  # no frame within this after the last: everything of the scenario is in
RAW_ARRAY = msgspec.json.Decoder(list[msgspec.Raw])


async def raw_client(venue: Venue, endpoint: str, packed: bool) -> ClientConnection:
    query = "?pack=1" if packed else ""
    return await connect(f"{venue.url(endpoint)}{query}", compression=None, max_size=None)


async def call(websocket: ClientConnection, request_id: int, method: str, **params: Any) -> None:
    await websocket.send(json.dumps({"id": request_id, "method": method, "params": params}))


async def logon(websocket: ClientConnection, who: str, packed: bool) -> None:
    """Log on and subscribe the account stream; their answers and snapshot are read."""
    api_key, secret = KEYS[who]
    ts = now_us()
    nonce = f"{ts}-{who}-{packed}"
    sig = sign_logon(secret, api_key, ts, nonce, RECV_WINDOW_MS_DEFAULT)
    logon_params = {"ts": ts, "nonce": nonce, "sig": sig, "recv_window": RECV_WINDOW_MS_DEFAULT}
    await call(websocket, 1, "session.logon", api_key=api_key, **logon_params)
    await call(websocket, 2, "subscribe", ch="account")
    wanted = {"answers": 0, "snapshot": False}
    while wanted["answers"] < 2 or not wanted["snapshot"]:
        for message in await messages(websocket, packed):
            decoded = json.loads(message)
            wanted["answers"] += decoded.get("id") in (1, 2)
            wanted["snapshot"] |= decoded.get("type") == "snapshot"


async def messages(websocket: ClientConnection, packed: bool) -> list[bytes]:
    """The messages of the next frame, each as the exact bytes the server sent."""
    async with asyncio.timeout(WAIT_S):
        frame = await websocket.recv(decode=False)
    if not packed:
        assert not frame.startswith(b"["), "an unpacked session gets one message per frame"
        return [frame]
    assert frame.startswith(b"[") and frame.endswith(b"]"), frame[:80]
    return [bytes(raw) for raw in RAW_ARRAY.decode(frame)]


async def frames_until_quiet(websocket: ClientConnection, packed: bool) -> list[list[bytes]]:
    """Every frame (as its messages) until none comes within `QUIET_S`."""
    received = []
    while True:
        try:
            async with asyncio.timeout(QUIET_S):
                frame = await websocket.recv(decode=False)
        except TimeoutError:
            return received
        received.append([bytes(r) for r in RAW_ARRAY.decode(frame)] if packed else [frame])


async def frames_through_a_trade(websocket: ClientConnection, packed: bool) -> list[list[bytes]]:
    """Every frame until one carries a trade (within `WAIT_S`), then until quiet: a pause
    of `QUIET_S` before the trade (a busy machine) does not cut the reading short."""
    received: list[list[bytes]] = []
    async with asyncio.timeout(WAIT_S):
        while not any(b'"ch":"trades"' in message for frame in received for message in frame):
            frame = await websocket.recv(decode=False)
            received.append([bytes(r) for r in RAW_ARRAY.decode(frame)] if packed else [frame])
    return received + await frames_until_quiet(websocket, packed)


def public_updates(received: list[list[bytes]]) -> list[bytes]:
    """The book updates and trades among the frames: what both subscribers are sent."""
    updates = []
    for frame in received:
        for message in frame:
            decoded = json.loads(message)
            if decoded.get("ch") in ("book", "trades") and decoded.get("type") != "snapshot":
                updates.append(message)
    return updates


def test_a_commands_answer_and_pushes_come_in_one_frame_as_an_unpacked_session_gets_them(
    run_venue: Any,
) -> None:
    async def scenario(venue: Venue) -> None:
        alpha = await venue.client("alpha")
        await alpha.place(SYMBOL, "sell", "0.5", "187.30")
        packed = await raw_client(venue, "trade", packed=True)
        witness = await raw_client(venue, "trade", packed=False)  # the same account
        await logon(packed, "taker", packed=True)
        await logon(witness, "taker", packed=False)
        order = {"symbol": SYMBOL, "side": "buy", "type": "limit", "tif": "ioc"}
        await call(packed, 7, "order.place", qty="0.2", price="187.30", **order)

        first = await messages(packed, packed=True)
        answer = json.loads(first[0])
        assert answer["id"] == 7 and answer["status"] == 200, answer
        pushes = first[1:]
        kinds = [json.loads(push)["type"] for push in pushes]
        assert "exec" in kinds and "settlement" in kinds and "balance" in kinds, kinds
        # the witness is sent the same pushes, one per frame, the same bytes in the same order
        seen = [message for frame in await frames_until_quiet(witness, False) for message in frame]
        assert seen == pushes
        assert await frames_until_quiet(packed, packed=True) == [], "all of it in one frame"
        for websocket in (packed, witness):
            await websocket.close()

    run_venue(scenario)


def test_a_commands_answer_leaves_before_the_market_data_it_made(run_venue: Any) -> None:
    """A released batch's answers and pushes are written at once and its publication follows
    in the next turn, so they never wait for every subscriber's write: a packed session that
    also follows the book gets its answer in one frame and the book update in a later one."""

    async def scenario(venue: Venue) -> None:
        packed = await raw_client(venue, "trade", packed=True)
        await logon(packed, "alpha", packed=True)
        await call(packed, 3, "subscribe", ch="book", symbols=[SYMBOL], depth=10)
        await frames_until_quiet(packed, packed=True)  # its answer and the snapshot
        order = {"symbol": SYMBOL, "side": "sell", "type": "limit", "tif": "gtc"}
        await call(packed, 4, "order.place", qty="0.5", price="187.40", **order)

        frames = [
            [json.loads(m) for m in frame] for frame in await frames_until_quiet(packed, True)
        ]
        assert frames[0][0]["id"] == 4 and frames[0][0]["status"] == 200, frames[0][0]
        assert [m for m in frames[0] if m.get("ch") == "account"], "the pushes come with it"
        assert not [m for m in frames[0] if m.get("ch") == "book"], "not the market data"
        book = [m for frame in frames[1:] for m in frame if m.get("ch") == "book"]
        assert [m["type"] for m in book] == ["update"], frames
        await packed.close()

    run_venue(scenario)


def test_packed_and_unpacked_subscribers_get_the_same_public_messages(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        followers = {packed: await raw_client(venue, "public", packed) for packed in (True, False)}
        for websocket in followers.values():
            await call(websocket, 1, "subscribe", ch="book", symbols=[SYMBOL], depth=10)
            await call(websocket, 2, "subscribe", ch="trades", symbols=[SYMBOL])
        for packed, websocket in followers.items():
            await frames_until_quiet(websocket, packed)  # the answers and the snapshots
        assert await busy_trading(venue, 20) == 20
        taker = await venue.client("taker")
        await taker.place(SYMBOL, "buy", "0.05", "200.00", tif="ioc")
        # read together: an update later than both quiet spells reaches neither reading
        both = await asyncio.gather(
            *(frames_through_a_trade(websocket, packed) for packed, websocket in followers.items())
        )
        received = dict(zip(followers, both, strict=True))
        # changes close together may be coalesced (the fan-out paces itself by its cost, so a
        # slow machine coalesces more): how many updates is not fixed, that both get the
        # same ones is
        updates = public_updates(received[True])
        assert [json.loads(update)["ch"] for update in updates].count("book") >= 2, updates
        assert updates == public_updates(received[False])
        for websocket in followers.values():
            await websocket.close()

    run_venue(scenario)


@pytest.mark.parametrize("messages_max, bytes_max", [(4, 900), (3, 2**20)])
def test_a_turn_of_many_messages_goes_out_in_frames_within_the_caps(
    run_venue: Any, monkeypatch: pytest.MonkeyPatch, messages_max: int, bytes_max: int
) -> None:
    monkeypatch.setattr(sessions, "WRITE_BATCH_MAX", messages_max)
    monkeypatch.setattr(sessions, "PACK_BYTES_MAX", bytes_max)

    async def scenario(venue: Venue) -> None:
        packed = await raw_client(venue, "trade", packed=True)
        witness = await raw_client(venue, "trade", packed=False)
        await logon(packed, "alpha", packed=True)
        await logon(witness, "alpha", packed=False)
        ops = [
            {
                "method": "order.place",
                "params": {"symbol": SYMBOL, "side": "sell", "type": "limit", "tif": "gtc"}
                | {"qty": "0.01", "price": f"{190 + i / 100:.2f}"},
            }
            for i in range(12)
        ]
        await call(packed, 9, "order.batch", ops=ops)
        received = await frames_until_quiet(packed, packed=True)
        flat = [message for frame in received for message in frame]
        answers = [m for m in flat if json.loads(m).get("id") == 9]
        pushes = [m for m in flat if m not in answers]
        assert len(answers) == 1 and len(pushes) >= 12  # the answer and its 12 orders' pushes
        assert len(received) >= len(flat) / messages_max
        for frame in received:
            assert 1 <= len(frame) <= messages_max
            assert len(frame) == 1 or sum(len(m) + 1 for m in frame) + 1 <= bytes_max
        seen = [message for frame in await frames_until_quiet(witness, False) for message in frame]
        assert seen == pushes, "the same pushes, in the same order"
        for websocket in (packed, witness):
            await websocket.close()

    run_venue(scenario)


async def open_packed_slow_consumer(venue: Venue) -> tuple[ClientConnection, Any]:
    """A packed /ws/public connection that will not read: tiny buffers (`open_slow_consumer`)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", venue.port))
    sock.setblocking(False)
    url = f"{venue.url('public')}?pack=1"
    websocket = await connect(url, sock=sock, max_queue=1, compression=None)

    async def registered() -> bool:
        return any(not s.trade for s in venue.server.sessions.values())

    assert await eventually(registered)
    session = next(s for s in venue.server.sessions.values() if not s.trade)
    assert session.packed
    server_socket = session.websocket.transport.get_extra_info("socket")
    server_socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    session.websocket.transport.set_write_buffer_limits(high=4096)
    for channel in ("book", "bbo", "trades"):
        params: dict[str, Any] = {"ch": channel, "symbols": [SYMBOL]}
        if channel == "book":
            params["depth"] = 1000
        await websocket.send(json.dumps({"id": channel, "method": "subscribe", "params": params}))
    websocket.transport.pause_reading()  # from here on it reads nothing
    return websocket, session


def test_a_packed_slow_consumer_is_still_told_and_closed_4002(
    run_venue: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cut_a_stalled_reader_soon(monkeypatch)
    wait_for_the_slow_consumer(monkeypatch)

    async def scenario(venue: Venue) -> None:
        slow, session = await open_packed_slow_consumer(venue)
        placed, answered = await trade_until_cut_off(venue, session)
        assert answered == placed, "the trader was answered every time"
        assert await cut_off(session), "the server gave up on the slow consumer"
        slow.transport.resume_reading()
        received = []
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(WAIT_S):
                while True:
                    received.extend(json.loads(await slow.recv()))
        assert slow.close_code == 4002
        assert received[-1] == {"ch": "session", "type": "slow_consumer"}
        updates = [m for m in received if m.get("ch") == "book" and m.get("type") == "update"]
        assert len(updates) < placed, "what did not fit was dropped, not queued without bound"

    run_venue(scenario)


@pytest.mark.parametrize(
    "query, said",
    [
        ("pack=2", b"pack must be 0 or 1, not '2'"),
        ("pack=", b"pack must be 0 or 1, not ''"),
        ("pack", b"unknown query option 'pack'"),
        ("packed=1", b"unknown query option 'packed=1'"),
        ("pack=1&pack=1", b"pack is given twice"),
        ("pack=1&x=2", b"unknown query option 'x=2'"),
    ],
)
def test_a_bad_query_is_refused_400_at_the_handshake(
    run_venue: Any, query: str, said: bytes
) -> None:
    async def scenario(venue: Venue) -> None:
        for endpoint in ("trade", "public"):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(f"{venue.url(endpoint)}?{query}"):
                    pass
            assert refused.value.response.status_code == 400
            assert said in refused.value.response.body
        assert not venue.server.sessions, "nothing was opened"

    run_venue(scenario)


def test_pack_0_is_the_unpacked_wire(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        async with connect(f"{venue.url('public')}?pack=0", compression=None) as websocket:
            await call(websocket, 1, "ping")
            answer = await messages(websocket, packed=False)
            assert json.loads(answer[0])["id"] == 1
            assert not any(s.packed for s in venue.server.sessions.values())

    run_venue(scenario)


def test_a_packed_frame_with_its_brackets_stays_within_the_byte_cap() -> None:
    """The cap is on the whole array, brackets and commas included: messages whose joined
    body is one byte under the cap no longer fit together (the frame would be 1 over)."""
    from collections import deque

    cap = sessions.PACK_BYTES_MAX
    half = (cap - 1) // 2  # two of them joined by a comma: cap - 1 or cap bytes
    messages = deque([b"x" * half, b"y" * (cap - 2 - half)])
    assert len(b",".join(messages)) == cap - 1
    assert sessions._count_within(messages, 2) == 1
    fitting = deque([b"x" * half, b"y" * (cap - 3 - half)])
    assert len(b",".join(fitting)) + 2 == cap
    assert sessions._count_within(fitting, 2) == 2
