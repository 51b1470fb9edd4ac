"""The cluster's roles as real processes: NATS JetStream, a core, a standby, two gateways.

One cluster per module (cluster/local.py: 3 NATS nodes, PostgreSQL, two cores, two gateways);
each test uses accounts and prices of its own so they do not depend on each other's orders.
"""

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from client.sdk import VenueClient
from cluster.local import LocalCluster
from tests.conftest import KEYS, ROOT, drain_pushes

SYMBOL = "AAPLx-USD"
TIMEOUT_S = 60


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    # under /tmp, enterable by others: PostgreSQL runs as the postgres user inside it
    directory = Path(tempfile.mkdtemp(prefix="venue-test-cluster-"))
    directory.chmod(0o711)
    try:
        with LocalCluster(directory, ROOT / "venue.toml") as running:
            yield running
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def client(url: str, who: str) -> VenueClient:
    connected = await VenueClient(url).connect()
    await connected.logon(*KEYS[who])
    return connected


def run(scenario: Any) -> Any:
    return asyncio.run(asyncio.wait_for(scenario, TIMEOUT_S))


def test_orders_through_gateway_a_fill_against_orders_rested_through_gateway_b(
    cluster: LocalCluster,
) -> None:
    a, b = cluster.gateways

    async def scenario() -> None:
        maker = await client(b.url, "alpha")
        taker = await client(a.url, "taker")
        watch_a = await VenueClient(a.url.replace("trade", "public")).connect()
        watch_b = await VenueClient(b.url.replace("trade", "public")).connect()
        try:
            await maker.subscribe_account()
            await taker.subscribe_account()
            await drain_pushes(maker)
            await drain_pushes(taker)
            rested = await maker.place(SYMBOL, "sell", "1", "190.10", cl_ord_id="rest-b")
            assert rested["status"] == "new"
            taken = await taker.place(SYMBOL, "buy", "0.4", "190.20", tif="ioc")
            assert taken["status"] == "filled"
            maker_pushes = await drain_pushes(maker, 1.0)
            taker_pushes = await drain_pushes(taker, 1.0)
            fills = [p for p in maker_pushes if p.get("data", {}).get("exec_type") == "trade"]
            taken_fills = [p for p in taker_pushes if p.get("data", {}).get("exec_type") == "trade"]
            assert [f["data"]["last_qty"] for f in fills] == ["0.400000"]
            assert [f["data"]["last_px"] for f in taken_fills] == ["190.10"]
            book_a = await watch_a.request("book.snapshot", {"symbol": SYMBOL, "depth": 10})
            book_b = await watch_b.request("book.snapshot", {"symbol": SYMBOL, "depth": 10})
            assert book_a["asks"] == book_b["asks"] and book_a["bids"] == book_b["bids"]
            assert ["190.10", "0.600000"] in [list(level) for level in book_a["asks"]]
        finally:
            for each in (maker, taker, watch_a, watch_b):
                await each.close()

    run(scenario())
