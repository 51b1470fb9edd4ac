"""`session.cod`'s re-mark (`SetCancelOnDisconnect`) under hostile sequences: pipelined
toggles answered in request order, and the engine's marks always equal to what the clean
closes of an account's connections would cancel (and to a replay's). A real `VenueServer` on
127.0.0.1, raw websocket frames where the SDK would wait per request."""

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
STEPS = 60  # random steps per seed: places, batches, quotes, amends, fills, toggles, closes
SEEDS = (1, 2, 3)


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
        assert [m["id"] for m in got] == [0, 1, 2, 3, 4], [(m["id"], m.get("result")) for m in got]

    run_venue(scenario)


# ----------------------------------------------------------------- randomized marks


def clean_close_would_cancel(venue: Venue, account: int) -> set[int]:
    """What the closes of the account's open connections would cancel now."""
    orders = venue.server.venue.orders
    return {
        order_id
        for session in venue.server.sessions.values()
        if session.account == account and session.cod
        for order_id in session.placed
        if order_id in orders
    }


def marked_of(venue: Venue, account: int) -> set[int]:
    engine = venue.server.venue
    return {i for i in engine.cod_order_ids() if engine.orders[i].account == account}


def test_marks_always_equal_what_the_clean_closes_would_cancel(tmp_path: Any) -> None:
    """Random steps on three connections of one account (places, batches, quotes, amends with
    new_cl_ord_id, cancels from another connection, fills by a taker, cod on and off, closes,
    logouts): after each, the orders marked cod (what a start after a crash cancels) are
    exactly the ones the closes of the open connections would cancel; and a replay of the
    journal gives the live state (hash and marks)."""
    import random

    from client.sdk import VenueClient, VenueError
    from core.sequencer import decode_command
    from engine.venue import Venue as Engine
    from engine.venue import VenueConfig
    from settlement.ledger import Ledger
    from tests.conftest import start_venue

    async def scenario(seed: int) -> None:
        rnd = random.Random(seed)
        venue = await start_venue(tmp_path / f"data{seed}")
        taker = await venue.client("taker")
        clients: list[VenueClient] = [await venue.client("alpha") for _ in range(3)]
        labels = iter(range(1, 10_000))
        most = 0

        async def settle() -> None:
            for _ in range(50):
                await asyncio.sleep(0.01)
                if marked_of(venue, 1) == clean_close_would_cancel(venue, 1):
                    return

        try:
            for step in range(STEPS):
                index = rnd.randrange(3)
                client = clients[index]
                action = rnd.random()
                price = f"{rnd.randint(18000, 18599) / 100:.2f}"
                try:
                    if action < 0.25:
                        await client.place(SYMBOL, "buy", "1", price, cl_ord_id=f"c{next(labels)}")
                    elif action < 0.32:
                        ops = [
                            {
                                "method": "order.place",
                                "params": {
                                    "symbol": SYMBOL,
                                    "side": "buy",
                                    "type": "limit",
                                    "tif": "gtc",
                                    "qty": "1",
                                    "price": price,
                                },
                            }
                            for _ in range(2)
                        ]
                        await client.batch(ops)
                    elif action < 0.40:
                        await client.request(
                            "quote.mass",
                            {
                                "quote_set": f"q{index}",
                                "quotes": [{"symbol": SYMBOL, "bid_px": price, "bid_qty": "1"}],
                            },
                        )
                    elif action < 0.55:
                        enabled = rnd.random() < 0.7
                        await client.request("session.cod", {"enabled": enabled})
                    elif action < 0.65:
                        opened = (await client.open_orders())["orders"]
                        if opened:
                            order = rnd.choice(opened)
                            await client.cancel(order["order_id"])
                    elif action < 0.75:
                        opened = (await client.open_orders())["orders"]
                        if opened:
                            order = rnd.choice(opened)
                            await client.amend(
                                order["order_id"],
                                qty=str(rnd.randint(1, 3)),
                                new_cl_ord_id=f"n{next(labels)}",
                            )
                    elif action < 0.83:
                        await taker.place(SYMBOL, "sell", "1", "180.00", tif="ioc")
                    elif action < 0.88:
                        await client.close()
                        clients[index] = await venue.client("alpha")
                    else:
                        await client.request("session.logout")
                        await client.close()
                        clients[index] = await venue.client("alpha")
                except VenueError:
                    pass  # a refusal (COD_REQUIRED, a quote rule): the marks must hold anyway
                await settle()
                assert marked_of(venue, 1) == clean_close_would_cancel(venue, 1), (seed, step)
                most = max(most, len(marked_of(venue, 1)))
            assert most > 1, f"seed {seed}: the walk never had two orders marked at once"
            live_marks = sorted(venue.server.venue.cod_order_ids())
        finally:
            for client in [*clients, taker]:
                await client.close()
            await venue.server.stop()
        live_hash = venue.server.venue.state_hash()
        engine = Engine(
            VenueConfig(
                reserve_staleness_max_us=venue.server.venue.config.reserve_staleness_max_us
            ),
            Ledger(),
        )
        from core.journal import FileJournal
        from gateway.server import JOURNAL_FILE

        journal = FileJournal(tmp_path / f"data{seed}" / JOURNAL_FILE)
        try:
            for _, payload in journal.replay():
                engine.execute(decode_command(payload))
        finally:
            journal.close()
        assert engine.state_hash() == live_hash
        assert sorted(engine.cod_order_ids()) == sorted(venue.server.venue.cod_order_ids())
        assert live_marks is not None

    for seed in SEEDS:
        asyncio.run(asyncio.wait_for(scenario(seed), 60))
