"""A cluster gateway that loses its lease answers the frames held behind a quote's place.

Over a cluster's bus a requote of a quote whose place has not come back waits for it, and
every later frame of its connection waits behind it (`HeldRequests.hold`). A gateway whose
lease lapses closes every session with 1012; the place itself is answered 504
`OUTCOME_UNKNOWN` first, but the held requote and the frames behind it were dropped at the
close without an answer, though none of them ran. Each is now answered 503 `SHUTTING_DOWN`
("not executed"), in request order, before the close. The lease is taken from the gateway by
a write to its key (its next renewal, within a second, is refused): no freeze, so the held
requote's own wait (`QUOTE_PLACE_WAIT_S`) is still running. One NATS node, SQLite ledger, one
core (paused: the place never comes back), one gateway.
"""

import asyncio
import signal
from collections.abc import Iterator
from typing import Any

import nats
import pytest

from client.sdk import VenueClient
from cluster.local import LocalCluster
from core.nats_bus import GATEWAY_LEASE_BUCKET
from gateway.limits import QUOTE_PLACE_WAIT_S
from tests.cluster.running import local_cluster
from tests.conftest import KEYS

SYMBOL = "AAPLx-USD"
SENT_S = 0.3  # for frames sent to reach the gateway (and the place the core)
# The lease is lost at the renewal after the write (every second), well inside the held
# requote's own wait: the close, not that wait, must be what answers it.
ANSWERED_WITHIN_S = QUOTE_PLACE_WAIT_S - 2 * SENT_S


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster(
        "lease-loss-held", nats_nodes=1, postgres=False, cores=1, gateways=1
    ) as running:
        yield running


def bid(price: str) -> dict[str, Any]:
    return {"quote_set": "mm", "quotes": [{"symbol": SYMBOL, "bid_px": price, "bid_qty": "1"}]}


async def take_lease(cluster: LocalCluster) -> None:
    """Write over the only gateway's lease key: its next renewal is refused, its term over."""
    nc = await nats.connect(cluster.nats.urls)
    try:
        bucket = await nc.jetstream(timeout=2.0).key_value(GATEWAY_LEASE_BUCKET)
        (key,) = await bucket.keys()
        await bucket.put(key, b"intruder")
    finally:
        await nc.close()


def test_frames_held_behind_a_place_are_answered_not_executed_when_the_lease_is_lost(
    cluster: LocalCluster,
) -> None:
    (gateway,) = cluster.gateways
    core = cluster.active_core()
    assert core is not None and core.process is not None

    async def scenario() -> list[Any]:
        maker = await VenueClient(gateway.url).connect()
        await maker.logon(*KEYS["alpha"])
        await maker.request("session.cod", {"enabled": True})  # a quote.mass needs it
        assert core.process is not None
        core.process.send_signal(signal.SIGSTOP)  # nothing comes back from here on
        try:
            place = asyncio.ensure_future(maker.request_raw("quote.mass", bid("180.00")))
            await asyncio.sleep(SENT_S)  # sent to the core
            order = {"symbol": SYMBOL, "side": "buy", "type": "limit", "tif": "gtc"}
            held = [  # the requote waits for the place; the other two behind it
                asyncio.ensure_future(maker.request_raw("quote.mass", bid("180.50"))),
                asyncio.ensure_future(
                    maker.request_raw("order.place", order | {"qty": "1", "price": "150.00"})
                ),
                asyncio.ensure_future(maker.request_raw("balances", {})),
            ]
            await asyncio.sleep(SENT_S)
            await take_lease(cluster)
            gathering = asyncio.gather(place, *held, return_exceptions=True)
            answers = await asyncio.wait_for(gathering, ANSWERED_WITHIN_S)
            assert maker.websocket is not None
            await asyncio.wait_for(maker.websocket.wait_closed(), ANSWERED_WITHIN_S)
            assert maker.websocket.close_code == 1012
            return list(answers)
        finally:
            core.process.send_signal(signal.SIGCONT)
            await maker.close()

    place, *held = asyncio.run(scenario())
    assert not isinstance(place, BaseException), place
    assert (place["status"], place["error"]["name"]) == (504, "OUTCOME_UNKNOWN")
    for answer in held:
        assert not isinstance(answer, BaseException), f"held frame unanswered: {answer!r}"
        assert (answer["status"], answer["error"]["name"]) == (503, "SHUTTING_DOWN"), answer
        assert "not executed: the gateway lost its lease" in answer["error"]["msg"]
    assert "lease lost: closing sessions" in gateway.log()
