"""Review s20: hostile tests of `session.cod`'s re-mark (SetCancelOnDisconnect).

Real VenueServer on 127.0.0.1, raw websocket frames where the SDK would wait per request."""

import asyncio
import json
import time
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gateway.auth import sign_logon
from tests.conftest import KEYS, Venue

SYMBOL = "AAPLx-USD"
WAIT_S = 3.0


def slow_durability(venue: Venue, delay_s: float = 0.3) -> None:
    journal = venue.server.sequencer.journal
    commit = journal.commit_commands

    def slow_commit(batch: Any, encode_into: Any) -> None:
        time.sleep(delay_s)
        commit(batch, encode_into)

    journal.commit_commands = slow_commit  # type: ignore[method-assign]


def logon_frame(request_id: int) -> dict[str, Any]:
    key, secret = KEYS["alpha"]
    ts = time.time_ns() // 1_000
    sig = sign_logon(secret, key, ts, f"n-{ts}", 5_000)
    params = {"api_key": key, "ts": ts, "nonce": f"n-{ts}", "recv_window": 5_000, "sig": sig}
    return {"id": request_id, "method": "session.logon", "params": params}


def place_frame(request_id: int, price: str, cl_ord_id: str) -> dict[str, Any]:
    params = {"symbol": SYMBOL, "side": "buy", "type": "limit", "price": price, "qty": "1"}
    params |= {"tif": "gtc", "cl_ord_id": cl_ord_id}
    return {"id": request_id, "method": "order.place", "params": params}


async def answers(venue: Venue, frames: list[dict[str, Any]], count: int) -> list[Any]:
    """Send `frames` pipelined on one connection; the first `count` answers, in arrival order."""
    got: list[Any] = []
    async with connect(venue.url("trade")) as websocket:
        for frame in frames:
            await websocket.send(json.dumps(frame))
        try:
            async with asyncio.timeout(WAIT_S * 2):
                async for text in websocket:
                    message = json.loads(text)
                    if "status" in message:
                        got.append(message)
                        if len(got) == count:
                            break
        except ConnectionClosed:
            pass
    return got


def test_pipelined_session_cod_answers_keep_request_order(run_venue: Any) -> None:
    """A `session.cod` that re-marks open orders is answered once durable; a later one with
    nothing left to mark was answered at once, ahead of it: the client read `enabled: false`
    and then `enabled: true`, the reverse of the setting in force (off)."""

    async def scenario(venue: Venue) -> None:
        slow_durability(venue)
        frames = [
            logon_frame(0),
            place_frame(1, "186.00", "a"),
            {"id": 2, "method": "session.cod", "params": {"enabled": True}},  # marks `a`
            {"id": 3, "method": "order.cancel", "params": {"cl_ord_id": "a"}},
            {"id": 4, "method": "session.cod", "params": {"enabled": False}},  # nothing open
        ]
        got = await answers(venue, frames, 5)
        assert [m["id"] for m in got] == [0, 1, 2, 3, 4], [
            (m["id"], m.get("result")) for m in got
        ]

    run_venue(scenario)
