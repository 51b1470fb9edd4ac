"""`order.status` of closed orders and `orders.history`, end to end: a real server on
127.0.0.1, real clients, real journal and snapshot files, real restarts."""

import asyncio
import gc
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from client.sdk import VenueClient, VenueError
from tests.conftest import TEST_TIMEOUT_S, Venue, start_venue

SYMBOL = "AAPLx-USD"
OTHER = "MSFTx-USD"


async def refusal(call: Any) -> VenueError:
    with pytest.raises(VenueError) as refused:
        await call
    return refused.value


async def everything(client: VenueClient, page: int = 2) -> list[dict[str, Any]]:
    """The account's whole history, paged `page` at a time (bounded: 100 pages)."""
    orders: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        result = await client.order_history(before_order_id=cursor, limit=page)
        orders += result["orders"]
        cursor = result["next_before_order_id"]
        if cursor is None:
            return orders
    raise AssertionError("the history did not end within 100 pages")


def test_a_closed_order_answers_with_its_final_state(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        alpha = await venue.client("alpha")
        taker = await venue.client("taker")
        placed = await alpha.place(SYMBOL, "sell", "1", "187.30", cl_ord_id="s-1", tag="mm")
        await taker.place(SYMBOL, "buy", "0.4", "187.30", tif="ioc")
        before = await alpha.order_status(order_id=placed["order_id"])
        assert (before["status"], before["cum_qty"], before["closed_ts"]) == (
            "partially_filled",
            "0.400000",
            None,
        )
        await alpha.cancel(cl_ord_id="s-1")
        closed = await alpha.order_status(order_id=placed["order_id"])
        assert closed == {
            "order_id": placed["order_id"],
            "cl_ord_id": "s-1",
            "symbol": SYMBOL,
            "side": "sell",
            "type": "limit",
            "tif": "gtc",
            "price": "187.30",
            "qty": "1.000000",
            "quote_qty": None,
            "leaves_qty": "0.000000",
            "cum_qty": "0.400000",
            "avg_px": "187.300000",
            "status": "canceled",
            "reason": "user",
            "tag": "mm",
            "created_ts": before["created_ts"],
            "closed_ts": closed["closed_ts"],
            "quote_set": None,
            "expire_at": None,
        }
        assert before["created_ts"] < closed["closed_ts"]
        assert await alpha.order_status(cl_ord_id="s-1") == closed
        # An IOC taker was never open: it traded what it could and closed in one command.
        await alpha.place(OTHER, "sell", "0.2", "430.00")
        taken = await taker.place(OTHER, "buy", "0.5", "430.00", tif="ioc", cl_ord_id="t-1")
        status = await taker.order_status(cl_ord_id="t-1")
        assert (status["order_id"], status["status"]) == (taken["order_id"], "canceled")
        assert (status["cum_qty"], status["avg_px"], status["reason"]) == (
            "0.200000",
            "430.000000",
            "ioc_rest",
        )

    run_venue(scenario)


def test_a_reused_cl_ord_id_answers_for_the_latest_order(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        alpha = await venue.client("alpha")
        first = await alpha.place(SYMBOL, "sell", "1", "190.00", cl_ord_id="again")
        await alpha.cancel(cl_ord_id="again")
        second = await alpha.place(SYMBOL, "sell", "2", "191.00", cl_ord_id="again")
        assert (await alpha.order_status(cl_ord_id="again"))["order_id"] == second["order_id"]
        await alpha.cancel(cl_ord_id="again")
        latest = await alpha.order_status(cl_ord_id="again")
        assert (latest["order_id"], latest["status"]) == (second["order_id"], "canceled")
        assert (await alpha.order_status(order_id=first["order_id"]))["qty"] == "1.000000"

    run_venue(scenario)


def test_another_account_cannot_see_a_closed_order(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        alpha = await venue.client("alpha")
        beta = await venue.client("beta")
        placed = await alpha.place(SYMBOL, "sell", "1", "190.00", cl_ord_id="secret")
        await alpha.cancel(order_id=placed["order_id"])
        never = 10**9
        answers = []
        for params in (
            {"order_id": placed["order_id"]},
            {"order_id": never},
            {"cl_ord_id": "secret"},
            {"cl_ord_id": "never-used"},
        ):
            response = await beta.request_raw("order.status", params)
            answers.append({key: value for key, value in response.items() if key != "id"})
        assert answers[0] == answers[1], "an order of another account is as if it never was"
        assert answers[2] == answers[3]
        assert answers[0]["error"]["name"] == "UNKNOWN_ORDER"
        history = await beta.order_history()
        assert placed["order_id"] not in [o["order_id"] for o in history["orders"]]
        assert (await alpha.order_status(cl_ord_id="secret"))["status"] == "canceled"

    run_venue(scenario)


def test_beyond_the_bound_the_answer_says_the_order_is_older(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        venue.server.order_history.capacity = 2  # the real bound is 10,000 closed orders
        alpha = await venue.client("alpha")
        placed = []
        for index in range(3):
            placed.append(await alpha.place(SYMBOL, "sell", "1", "190.00", cl_ord_id=f"o{index}"))
            await alpha.cancel(cl_ord_id=f"o{index}")
        refused = await refusal(alpha.order_status(order_id=placed[0]["order_id"]))
        assert refused.name == "UNKNOWN_ORDER" and "older" in str(refused)
        assert (await alpha.order_status(order_id=placed[1]["order_id"]))["status"] == "canceled"
        closed = (await alpha.order_history(status="closed"))["orders"]
        assert [o["cl_ord_id"] for o in closed] == ["o2", "o1"]

    run_venue(scenario)


def test_orders_history_pages_and_filters(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        alpha = await venue.client("alpha")
        ids = []
        for index, symbol in enumerate((SYMBOL, OTHER, SYMBOL, OTHER, SYMBOL)):
            price = "190.00" if symbol == SYMBOL else "430.00"
            placed = await alpha.place(symbol, "sell", "1", price, cl_ord_id=f"h{index}")
            ids.append(placed["order_id"])
        for order_id in ids[1:3]:
            await alpha.cancel(order_id=order_id)
        whole = await everything(alpha)
        assert [o["order_id"] for o in whole] == ids[::-1], "newest first, open and closed"
        assert [o["status"] for o in whole] == ["new", "new", "canceled", "canceled", "new"]
        closed = await alpha.order_history(status="closed")
        assert [o["order_id"] for o in closed["orders"]] == [ids[2], ids[1]]
        opened = await alpha.order_history(status="open", symbol=SYMBOL)
        assert [o["order_id"] for o in opened["orders"]] == [ids[4], ids[0]]
        assert opened["next_before_order_id"] is None
        created = {o["order_id"]: o["created_ts"] for o in whole}
        window = await alpha.order_history(
            since_ts=created[ids[1]], until_ts=created[ids[3]] + 1, limit=10
        )
        expected = [i for i in ids[::-1] if created[ids[1]] <= created[i] <= created[ids[3]]]
        assert [o["order_id"] for o in window["orders"]] == expected
        assert (await refusal(alpha.order_history(symbol="NOPEx-USD"))).name == "UNKNOWN_SYMBOL"
        assert (await refusal(alpha.order_history(limit=0))).name == "BAD_PARAM"
        assert (await refusal(alpha.order_history(limit=1001))).name == "BAD_PARAM"
        assert (await refusal(alpha.order_history(status="done"))).name == "BAD_PARAM"
        refused = await refusal(alpha.order_history(since_ts=5, until_ts=5))
        assert refused.name == "BAD_PARAM" and "since_ts" in str(refused)

    run_venue(scenario)


def test_a_query_shows_the_commands_sent_before_it(run_venue: Any) -> None:
    """Sent back to back without waiting: the answers see the cancel, and come after it."""

    async def scenario(venue: Venue) -> None:
        alpha = await venue.client("alpha")
        placed = await alpha.place(SYMBOL, "sell", "1", "190.00")
        order_id = placed["order_id"]
        arrived: list[Any] = []  # response ids, in the order they came off the socket
        read = alpha._on_message

        def on_message(message: dict[str, Any]) -> None:
            arrived.append(message.get("id"))
            read(message)

        alpha._on_message = on_message  # type: ignore[method-assign]
        canceled, status, history = await asyncio.gather(
            alpha.request_raw("order.cancel", {"order_id": order_id}),
            alpha.request_raw("order.status", {"order_id": order_id}),
            alpha.request_raw("orders.history", {"status": "closed"}),
        )
        assert canceled["result"]["status"] == "canceled"
        assert status["result"]["status"] == "canceled"
        assert history["result"]["orders"][0]["order_id"] == order_id
        sent = [canceled["id"], status["id"], history["id"]]
        assert [i for i in arrived if i in sent] == sent, "each answer behind the cancel"

    run_venue(scenario)


def test_the_read_scope_is_needed(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        key = await admin.request("admin.issue_key", {"account": 3, "scopes": ["trade"]})
        trader = await venue.client()
        await trader.logon(key["api_key"], key["secret"])
        assert (await refusal(trader.order_history())).name == "PERMISSION_DENIED"

    run_venue(scenario)


# ----------------------------------------------------------------- restarts


async def trade(venue: Venue, round_: int) -> None:
    """Orders that rest, fill, partly fill, get amended and canceled, on two symbols."""
    alpha = await venue.client("alpha")
    taker = await venue.client("taker")
    base = 190 + round_
    for step in range(3):
        price = f"{base + step / 10:.2f}"
        await alpha.place(SYMBOL, "sell", "0.5", price, cl_ord_id=f"r{round_}s{step}")
    await taker.place(SYMBOL, "buy", "0.7", f"{base + 0.1:.2f}", tif="ioc", cl_ord_id=f"t{round_}")
    await alpha.amend(cl_ord_id=f"r{round_}s2", qty="0.8")
    gone = await alpha.place(OTHER, "buy", "1", "410.00", cl_ord_id=f"r{round_}b")
    await alpha.cancel(order_id=gone["order_id"])
    await alpha.close()
    await taker.close()


async def histories(venue: Venue) -> dict[str, Any]:
    """What each account sees: its whole history, and order.status of every order in it."""
    seen: dict[str, Any] = {}
    for who in ("alpha", "taker"):
        client = await venue.client(who)
        orders = await everything(client, page=3)
        statuses = [await client.order_status(order_id=o["order_id"]) for o in orders]
        by_cl_ord_id = [
            await client.order_status(cl_ord_id=o["cl_ord_id"]) for o in orders if o["cl_ord_id"]
        ]
        seen[who] = (orders, statuses, by_cl_ord_id)
        await client.close()
    return seen


@pytest.mark.parametrize("recovery", ["snapshot", "snapshot-and-tail", "journal"])
def test_the_history_is_the_same_after_a_restart(tmp_path: Path, recovery: str) -> None:
    data_dir, crashed = tmp_path / "data", tmp_path / "crashed"

    async def scenario() -> None:
        first = await start_venue(data_dir)
        await trade(first, 0)
        if recovery == "snapshot-and-tail":
            await first.server.snapshot()  # what the periodic task does
            await trade(first, 1)  # in the journal tail only
            await first.server.sequencer.drain()
            shutil.copytree(data_dir, crashed)  # the files as a SIGKILL would leave them
        before = await histories(first)
        assert len(before["alpha"][0]) >= 4 and len(before["taker"][0]) >= 1
        await first.server.stop()  # writes a snapshot of everything
        restart_dir = crashed if recovery == "snapshot-and-tail" else data_dir
        if recovery == "journal":
            for path in data_dir.glob("snapshot-*.bin"):
                path.unlink()
        second = await start_venue(restart_dir)
        try:
            assert await histories(second) == before
        finally:
            await second.server.stop()

    try:
        asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))
    finally:
        gc.collect()  # as tests/gateway/test_server_recovery.py: finalize leftovers now


def test_a_closed_gtd_order_keeps_its_expire_at(tmp_path: Path) -> None:
    """The finding: `expire_at` was null once a gtd order closed (no exec report carries it,
    and the history kept only what they carry). Kept now, canceled or expired, through a
    restart from a snapshot (the order open at the stop) and from the journal alone."""
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        first = await start_venue(data_dir)
        alpha = await first.client("alpha")
        now_us = time.time_ns() // 1_000
        later_us, soon_us = now_us + 3_600_000_000, now_us + 300_000
        canceled = await alpha.place(SYMBOL, "sell", "1", "195.00", tif="gtd", expire_at=later_us)
        await alpha.cancel(order_id=canceled["order_id"])
        expiring = await alpha.place(SYMBOL, "sell", "1", "196.00", tif="gtd", expire_at=soon_us)
        kept = await alpha.place(SYMBOL, "sell", "1", "197.00", tif="gtd", expire_at=later_us)
        for _ in range(100):  # bounded: the clock ticks every 50 ms
            status = await alpha.order_status(order_id=expiring["order_id"])
            if status["status"] == "expired":
                break
            await asyncio.sleep(0.05)
        await first.server.stop()  # `kept` open in the snapshot
        for recovery in ("snapshot", "journal"):
            if recovery == "journal":
                for path in data_dir.glob("snapshot-*.bin"):
                    path.unlink()
            venue = await start_venue(data_dir)
            client = await venue.client("alpha")
            if recovery == "snapshot":
                await client.cancel(order_id=kept["order_id"])
            expected = {
                canceled["order_id"]: ("canceled", "user", later_us),
                expiring["order_id"]: ("expired", "gtd", soon_us),
                kept["order_id"]: ("canceled", "user", later_us),
            }
            for order_id, fields in expected.items():
                status = await client.order_status(order_id=order_id)
                assert (status["status"], status["reason"], status["expire_at"]) == fields
            rows = {row["order_id"]: row for row in await everything(client, page=2)}
            assert {order_id: rows[order_id]["expire_at"] for order_id in expected} == {
                order_id: fields[2] for order_id, fields in expected.items()
            }
            await client.close()
            await venue.server.stop()

    try:
        asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))
    finally:
        gc.collect()
