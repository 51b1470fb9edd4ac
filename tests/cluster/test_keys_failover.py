"""A key issued after the death of the NATS node holding a gateway's keys consumer.

Every gateway learns the cluster's issued API keys by following the `VENUE_KEYS` stream with
an ordered consumer (core/cluster_keys.py), which is R=1: it dies with its node. nats-py
replaces it only 10 to 20 s later (two missed idle heartbeats, then a new consumer), so a key
issued meanwhile, even through this very gateway (it learns its own keys from the stream
too), was refused `BAD_SIGNATURE` at logon for that long. Here the node hosting the consumer
is killed alone (the leaders the venue writes through moved off it first, so no election
delays anything); a key issued right after must log on well before nats-py's own recovery.
Three NATS nodes, SQLite ledger, one core, one gateway.
"""

import asyncio
import time
from collections.abc import Iterator

import pytest

from client.sdk import VenueClient, VenueError
from cluster.local import LocalCluster
from core.cluster_keys import KEYS_STREAM
from tests.cluster.running import local_cluster
from tests.cluster.test_stream_failover import LED_STREAMS, consumer_node, lead_elsewhere
from tests.conftest import KEYS

# nats-py replaces the lost consumer 10 to 20 s after the loss; the gateway's own watch ~1 s
# after a key is stored past the last it learnt. A bound on the test between the two.
LOGON_WITHIN_S = 6.0
RETRY_S = 0.1  # between logons refused while the key is not known yet
ISSUE_TIMEOUT_S = 30.0  # the key is stored on the stream's quorum: no election here


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster(
        "keys-failover", nats_nodes=3, postgres=False, cores=1, gateways=1
    ) as running:
        yield running


async def seconds_to_logon(url: str, key: str, secret: str) -> float:
    """How long after now a logon with `key` succeeds through `url`; LOGON_WITHIN_S past
    that, fails (each refusal must be the unknown key's)."""
    start = time.monotonic()
    while time.monotonic() - start < LOGON_WITHIN_S:
        reader = await VenueClient(url).connect()
        try:
            await reader.logon(key, secret)
            assert (await reader.request("session.status", {}))["account"] == 3
            return time.monotonic() - start
        except VenueError as refused:
            assert refused.name == "BAD_SIGNATURE", refused  # what an unknown key gets
        finally:
            await reader.close()
        await asyncio.sleep(RETRY_S)
    raise AssertionError(f"key {key} refused for {LOGON_WITHIN_S}s after it was issued")


def test_a_key_issued_after_the_death_of_the_keys_consumers_node_logs_on_at_once(
    cluster: LocalCluster,
) -> None:
    (gateway,) = cluster.gateways
    doomed = consumer_node(cluster, KEYS_STREAM)
    asyncio.run(lead_elsewhere(cluster, doomed, (*LED_STREAMS, KEYS_STREAM)))
    index = next(i for i, node in enumerate(cluster.nats.nodes) if node.name == doomed)

    async def scenario() -> float:
        admin = await VenueClient(gateway.url).connect()
        try:
            await admin.logon(*KEYS["admin"])
            await asyncio.to_thread(cluster.nats.nodes[index].kill)
            issuing = admin.request("admin.issue_key", {"account": 3, "scopes": ["read"]})
            issued = await asyncio.wait_for(issuing, ISSUE_TIMEOUT_S)
        finally:
            await admin.close()
        return await seconds_to_logon(gateway.url, issued["api_key"], issued["secret"])

    waited_s = asyncio.run(scenario())
    assert waited_s < LOGON_WITHIN_S
    assert "stream consumer stalled: subscribing again" in gateway.log()
    cluster.nats.restart(index)
