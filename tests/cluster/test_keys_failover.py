"""A key issued after the death of the NATS node holding a gateway's keys consumer.

Every gateway learns the cluster's issued API keys by following the `VENUE_KEYS` stream with
an ordered consumer (core/cluster_keys.py), which is R=1: it dies with its node. nats-py
replaces it only 10 to 20 s later (two missed idle heartbeats, then a new consumer), so a key
issued meanwhile through another gateway was refused `BAD_SIGNATURE` at logon for that long
(and one issued through this very gateway too, before session 31: it learnt its own keys
from the stream only). Here the node hosting the consumer is killed alone (the leaders the
venue writes through moved off it first, so no election delays anything); a key stored on
the stream right after, as another gateway stores one, must log on well before nats-py's
own recovery. Three NATS nodes, SQLite ledger, one core, one gateway.
"""

import asyncio
import secrets
import time
from collections.abc import Iterator

import msgspec
import nats
import pytest

from client.sdk import VenueClient, VenueError
from cluster.local import LocalCluster
from core.cluster_keys import KEYS_STREAM, SharedKeys
from gateway.auth import ApiKey
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
            await admin.logon(*KEYS["admin"])  # the gateway serves
        finally:
            await admin.close()
        await asyncio.to_thread(cluster.nats.nodes[index].kill)
        key = ApiKey(f"key-{secrets.token_hex(8)}", secrets.token_hex(24), 3, frozenset({"read"}))
        await asyncio.wait_for(issued_elsewhere(cluster, key), ISSUE_TIMEOUT_S)
        return await seconds_to_logon(gateway.url, key.key, key.secret)

    waited_s = asyncio.run(scenario())
    assert waited_s < LOGON_WITHIN_S
    assert "stream consumer stalled: subscribing again" in gateway.log()
    cluster.nats.restart(index)


async def issued_elsewhere(cluster: LocalCluster, key: ApiKey) -> None:
    """Store `key` on the key stream as another gateway's `admin.issue_key` does
    (`KeyIssuer._share_key`): the gateway under test knows it only from the stream."""
    nc = await nats.connect(cluster.nats.urls)
    try:
        writer = SharedKeys(1, on_key=lambda _: None)
        writer._js = nc.jetstream(timeout=5.0)  # publish only: no stream followed
        await writer.publish(key.key, msgspec.json.encode(key))
    finally:
        await nc.close()
