"""A cluster gateway that loses its lease answers the requests still waiting for the core.

A gateway whose lease lapses (cut off from NATS, frozen, or an election on the bucket's node
outlasting its term) closes every session with 1012 (docs/cluster.md, "Cancel-on-disconnect
when a gateway dies"). A request whose command was sent to the core and whose outcome had not
come back was closed over unanswered; now it is answered 504 `OUTCOME_UNKNOWN` first: it may
still be carried out, and the client checks it after reconnecting. One NATS node, SQLite
ledger, one core (paused here, so the outcome cannot come back), one gateway (frozen past its
lease's TTL).
"""

import asyncio
import signal
from collections.abc import Iterator

import pytest

from client.sdk import VenueClient, VenueError
from cluster.local import LocalCluster
from core.nats_bus import GATEWAY_LEASE_TTL_S
from tests.cluster.running import local_cluster
from tests.conftest import KEYS

SYMBOL = "AAPLx-USD"
FROZEN_S = GATEWAY_LEASE_TTL_S + 2.0  # past the TTL: the key expires, the renewal is refused
ANSWER_WITHIN_S = 10.0  # after the gateway wakes: its lease check runs every 0.1 s


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster("lease-loss", nats_nodes=1, postgres=False, cores=1, gateways=1) as running:
        yield running


def test_a_request_owed_when_the_gateways_lease_lapses_is_answered_outcome_unknown(
    cluster: LocalCluster,
) -> None:
    (gateway,) = cluster.gateways
    core = cluster.active_core()
    assert core is not None and core.process is not None
    assert gateway.process is not None

    async def scenario() -> None:
        # the gateway's own 1012 is under test: the SDK's drop of a silent connection is off
        taker = await VenueClient(gateway.url, silence_timeout_s=None).connect()
        await taker.logon(*KEYS["taker"])
        assert core.process is not None and gateway.process is not None
        core.process.send_signal(signal.SIGSTOP)  # nothing comes back from here on
        try:
            placing = asyncio.ensure_future(taker.place(SYMBOL, "buy", "0.01", "150.00"))
            await asyncio.sleep(0.5)  # sent to the core
            gateway.process.send_signal(signal.SIGSTOP)
            try:
                await asyncio.sleep(FROZEN_S)
            finally:
                gateway.process.send_signal(signal.SIGCONT)
            with pytest.raises(VenueError) as refused:
                await asyncio.wait_for(placing, ANSWER_WITHIN_S)
            assert (refused.value.status, refused.value.name) == (504, "OUTCOME_UNKNOWN")
            assert "check it" in str(refused.value)
            assert taker.websocket is not None
            await asyncio.wait_for(taker.websocket.wait_closed(), ANSWER_WITHIN_S)
            assert taker.websocket.close_code == 1012
        finally:
            core.process.send_signal(signal.SIGCONT)  # its term is over: it stops (exit 70)
            await taker.close()

    asyncio.run(scenario())
    assert "lease lost: closing sessions" in gateway.log()
