"""The client SDK: typed results and events, and automatic resumption after a dropped link."""

import asyncio
import gc
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from client.sdk import BalanceUpdate, ExecReport, OrderResult, VenueClient, packed_url
from tests.conftest import KEYS, Venue

SYMBOL = "AAPLx-USD"


def test_results_and_events_are_typed(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        alpha = await venue.client("alpha")
        await alpha.subscribe_account()
        await alpha.next_push()  # the snapshot
        result = await alpha.place_order(SYMBOL, "sell", "0.5", "187.30", cl_ord_id="t1")
        assert isinstance(result, OrderResult) and result.status == "new"
        first = await alpha.next_account_event()
        assert isinstance(first.data, ExecReport)
        assert (first.data.exec_type, first.data.order_id, first.data.cl_ord_id) == (
            "new",
            result.order_id,
            "t1",
        )
        second = await alpha.next_account_event()
        assert isinstance(second.data, BalanceUpdate) and second.data.held == "0.500000"
        assert second.seq == first.seq + 1

    run_venue(scenario)


def test_a_dropped_connection_resumes_with_since_seq(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        alpha = VenueClient(venue.url(), auto_resume=True)
        await alpha.connect()
        venue.clients.append(alpha)
        await alpha.logon(*KEYS["alpha"])
        await alpha.subscribe_account()
        await alpha.next_push()  # the snapshot
        await alpha.place(SYMBOL, "sell", "1", "187.30")
        session = next(s for s in venue.server.sessions.values() if s.account == 1)
        seen_before = alpha.account_seq
        session.websocket.transport.abort()  # the network drops the link
        taker = await venue.client("taker")
        await taker.place(SYMBOL, "buy", "0.4", "187.30", tif="ioc")  # alpha misses this live
        for _ in range(50):  # bounded: up to 5 s for the reconnect
            if alpha.resumed:
                break
            await asyncio.sleep(0.1)
        assert alpha.resumed == 1
        seqs: list[int] = []
        while len(seqs) < 3:
            event = await alpha.next_account_event(3)
            seqs.append(event.seq)
        assert seqs[0] <= seen_before + 1 and seqs == list(range(seqs[0], seqs[0] + 3))
        assert max(seqs) > seen_before, "the fill made while it was away arrives"

    run_venue(scenario)


def test_the_sdk_opens_packed_connections_and_reads_them_as_before(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        packed = await venue.client("alpha")  # the default
        plain = VenueClient(venue.url(), packed=False)
        venue.clients.append(await plain.connect())
        await plain.logon(*KEYS["alpha"])
        assert sorted(s.packed for s in venue.server.sessions.values()) == [False, True]
        for client in (packed, plain):
            await client.subscribe_account()
        assert (await packed.next_push())["type"] == (await plain.next_push())["type"]
        await packed.place_order(SYMBOL, "sell", "0.5", "187.30", cl_ord_id="p1")
        events = {}
        for name, client in (("packed", packed), ("plain", plain)):
            events[name] = [await client.next_account_event() for _ in range(2)]
        assert events["packed"] == events["plain"], "the same events, in the same order"

    run_venue(scenario)


def test_packed_url_asks_for_packing_unless_the_query_says() -> None:
    assert packed_url("ws://h:1/ws/trade") == "ws://h:1/ws/trade?pack=1"
    assert packed_url("ws://h:1/ws/trade?x=1") == "ws://h:1/ws/trade?x=1&pack=1"
    assert packed_url("ws://h:1/ws/trade?pack=0") == "ws://h:1/ws/trade?pack=0"


async def dropped(venue: Venue, client: VenueClient, account: int = 1) -> None:
    """The server cuts `client`'s link (account `account`'s session); wait until it knows."""
    session = next(s for s in venue.server.sessions.values() if s.account == account)
    session.websocket.transport.abort()
    assert client.websocket is not None
    await asyncio.wait_for(client.websocket.wait_closed(), 5)


def test_a_request_that_cannot_be_sent_leaves_no_future_behind(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        unretrieved: list[str] = []
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: unretrieved.append(context["message"]))
        alpha = await venue.client("alpha")
        await dropped(venue, alpha)
        with pytest.raises((ConnectionError, ConnectionClosed)):
            await alpha.balances()
        assert alpha._waiting == {}, "the failed request's future was removed"
        await alpha.resume()  # a new connection, whose end fails whatever still waits
        assert "USD" in str(await alpha.balances())
        await alpha.close()
        gc.collect()
        await asyncio.sleep(0)
        loop.set_exception_handler(None)
        assert unretrieved == []

    run_venue(scenario)
