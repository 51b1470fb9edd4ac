"""A quote set is the account's on every gateway of a cluster, not the gateway's it was quoted on.

A market maker whose gateway dies resumes on another (the SDK's `auto_resume`, the bots) and
requotes its set there. That gateway knew only the quotes placed through itself, so it
placed a second quote per side beside the first (both live until the dead gateway's lease
lapsed, ~11 s: twice the size the maker meant to show), and `orders.cancel_all {quote_set}`
through it canceled none of them. Found by session 29's market-maker trial.

Real parts: one nats-server, a `ClusterCore` and two gateways in this process, websocket
clients.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from client.sdk import VenueClient
from cluster.nats import NatsCluster
from core import config as venue_config
from core import nats_bus
from core.cluster_core import ClusterCore
from gateway.server import VenueServer
from tests.conftest import KEYS
from tests.sample_config import SAMPLE_CONFIG

SYMBOL = "AAPLx-USD"
SCENARIO_TIMEOUT_S = 60
TRIES = 100  # x 0.05 s: for the other gateway's replica to show a command's outcome
QUOTE = {"symbol": SYMBOL, "bid_px": "180.00", "bid_qty": "1", "ask_px": "181.00", "ask_qty": "1"}


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path / "nats", size=1) as started:
        yield started


@contextlib.asynccontextmanager
async def core_and_two_gateways(node: NatsCluster, tmp_path: Path) -> AsyncIterator[list[int]]:
    """An active core and two gateways on `node`: the gateways' ports."""
    config = venue_config.load(SAMPLE_CONFIG)
    core = ClusterCore(config, tmp_path / "core", node.url, "core-a")
    assert await core.wait_for_lease(asyncio.Event())
    assert await core.activate() is not None
    servers, ports = [], []
    try:
        for name in ("gw-a", "gw-b"):

            def new_bus(listener: Any, name: str = name) -> nats_bus.NatsBus:
                return nats_bus.NatsBus(config, node.url, listener, name)

            servers.append(VenueServer(config, tmp_path / name, bus=new_bus))
            ports.append(await servers[-1].start("127.0.0.1", 0))
        yield ports
    finally:
        for server in servers:
            await server.stop()
        await core.stop()


async def maker_on(port: int) -> VenueClient:
    maker = await VenueClient(f"ws://127.0.0.1:{port}/ws/trade").connect()
    await maker.logon(*KEYS["alpha"])
    await maker.request("session.cod", {"enabled": True})
    return maker


async def open_quotes(client: VenueClient, count: int) -> list[tuple[int, str, str]]:
    """The open orders of the set `mm` (id, side, price) once there are `count` of them."""
    quotes: list[tuple[int, str, str]] = []
    for _ in range(TRIES):
        orders = (await client.open_orders(SYMBOL))["orders"]
        quotes = [(o["order_id"], o["side"], o["price"]) for o in orders if o["quote_set"] == "mm"]
        if len(quotes) == count:
            return quotes
        await asyncio.sleep(0.05)
    raise AssertionError(f"not {count} quotes of mm: {quotes}")


def test_a_requote_through_another_gateway_amends_the_sets_quotes_and_a_mass_cancel_pulls_them(
    node: NatsCluster, tmp_path: Path
) -> None:
    """Quoted through gateway A, requoted through gateway B: B amends A's two quotes (one
    live quote per side, as on one gateway); then `orders.cancel_all {quote_set}` through B
    cancels them both."""

    async def scenario() -> None:
        async with core_and_two_gateways(node, tmp_path) as (port_a, port_b):
            on_a, on_b = await maker_on(port_a), await maker_on(port_b)
            try:
                placed = await on_a.request("quote.mass", {"quote_set": "mm", "quotes": [QUOTE]})
                ids = sorted(entry["result"]["order_id"] for entry in placed["results"])
                assert len(ids) == 2
                await open_quotes(on_b, 2)  # B's replica has both places
                requote = {"quote_set": "mm", "quotes": [QUOTE | {"bid_px": "180.10"}]}
                requoted = await on_b.request("quote.mass", requote)
                assert [entry["result"]["order_id"] for entry in requoted["results"]] == ids[:1]
                quotes = await open_quotes(on_b, 2)
                assert sorted(quotes) == [(ids[0], "buy", "180.10"), (ids[1], "sell", "181.00")]
                pulled = await on_b.request("orders.cancel_all", {"quote_set": "mm"})
                assert pulled == {"canceled": 2}
                await open_quotes(on_a, 0)
            finally:
                await on_a.close()
                await on_b.close()

    asyncio.run(asyncio.wait_for(scenario(), SCENARIO_TIMEOUT_S))
