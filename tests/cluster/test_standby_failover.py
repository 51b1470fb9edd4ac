"""The standby core's warm copy across the death of the NATS node its stream consumer runs on.

A standby follows the stream with an ordered consumer (core/cluster_core.py `Follower`), R=1:
killed with its node, nats-py replaced it only 10 to 20 s later. The copy lagged meanwhile,
and a takeover then replayed every record it had missed, and took that much longer. Here the
node hosting the standby's consumer is killed alone (the leaders the venue writes through
moved off it first), orders go through for a few seconds, and the active core is stopped
cleanly (its lease released: the standby takes over at once, long before nats-py's own
recovery could have run): the standby's copy must have kept up (nothing replayed at its
takeover). The takeover's time (stop to the new core active) is printed, before and after
(`-s`). Three NATS nodes, SQLite ledger, two cores, one gateway.
"""

import asyncio
import re
import time
from collections.abc import Iterator

import pytest

from client.sdk import VenueClient
from cluster.local import LocalCluster, Role
from core.jetstream_journal import STREAM_DEFAULT
from tests.cluster.running import local_cluster
from tests.cluster.test_stream_failover import lead_elsewhere, monitor
from tests.conftest import KEYS

SYMBOL = "AAPLx-USD"
PRICE = "193.00"  # this module's own
# The takeover comes well under nats-py's 10 s after the kill: only the standby's own watch
# can have replaced its consumer by then. Orders go through after the kill until this many
# filled and the standby logged its new consumer made, or this long passed (it never will before
# the fix); then the records delivered through it get that long to arrive.
FILLS_AFTER_KILL = 5
LOAD_AFTER_KILL_MAX_S = 7.0  # + the settle and the stop: under 10 s
SETTLE_S = 0.5
RESUBSCRIBED = "stream consumer replaced"  # (a try refused is logged too, then tried again)
PACE_S = 0.1  # between orders: under the order rate limit
ANSWER_WITHIN_S = 7.0  # per order: the gateway's replica rides out the loss in ~1 s
TAKEOVER_WITHIN_S = 30.0
WAIT_S = 20.0  # for a consumer to show up
POLL_S = 0.05
RECOVERED = re.compile(r"recovered.*?replayed=(\d+).*?warm=(\w+).*?ms=([\d.]+)")


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster(
        "standby-failover", nats_nodes=3, postgres=False, cores=2, gateways=1
    ) as running:
        yield running


def standby_consumer_node(cluster: LocalCluster, standby: Role) -> str:
    """The node hosting the standby's consumer of the journal's stream: the one whose deliver
    subject the standby's connection (`venue-core-<name>`) subscribes to."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        consumers: dict[str, str] = {}  # deliver subject: hosting node
        subjects: set[str] = set()
        for node in cluster.nats.nodes:
            details = monitor(node, "jsz?consumers=true&config=true")
            for account in details.get("account_details", []):
                for stream in account.get("stream_detail", []):
                    if stream["name"] == STREAM_DEFAULT:
                        for consumer in stream.get("consumer_detail", []):
                            subject = consumer["config"].get("deliver_subject", "")
                            consumers[subject] = consumer["cluster"]["leader"]
            for connection in monitor(node, "connz?subs=1").get("connections", []):
                if connection.get("name") == f"venue-core-{standby.name}":
                    subjects |= set(connection.get("subscriptions_list", []))
        hosts = {node for subject, node in consumers.items() if subject in subjects}
        if len(hosts) == 1:
            return hosts.pop()
        time.sleep(0.2)
    raise AssertionError(f"no consumer of {STREAM_DEFAULT} for {standby.name} within {WAIT_S}s")


def test_a_standby_keeps_its_copy_through_the_death_of_its_consumers_node(
    cluster: LocalCluster,
) -> None:
    (gateway,) = cluster.gateways
    active = cluster.active_core()
    assert active is not None
    (standby,) = [core for core in cluster.cores if core is not active]
    doomed = standby_consumer_node(cluster, standby)
    asyncio.run(lead_elsewhere(cluster, doomed))
    index = next(i for i, node in enumerate(cluster.nats.nodes) if node.name == doomed)

    async def load() -> int:
        maker = await VenueClient(gateway.url).connect()
        taker = await VenueClient(gateway.url).connect()
        try:
            await maker.logon(*KEYS["beta"])
            await taker.logon(*KEYS["taker"])
            rested = await maker.place(SYMBOL, "sell", "100", PRICE, cl_ord_id="sb-rest")
            assert rested["status"] == "new"
            await asyncio.to_thread(cluster.nats.nodes[index].kill)
            stop_at = time.monotonic() + LOAD_AFTER_KILL_MAX_S
            filled = 0
            while filled < FILLS_AFTER_KILL or RESUBSCRIBED not in standby.log():
                if time.monotonic() > stop_at:
                    break
                placing = taker.place(SYMBOL, "buy", "0.01", PRICE, tif="ioc")
                result = await asyncio.wait_for(placing, ANSWER_WITHIN_S)
                assert result["status"] == "filled", result
                filled += 1
                await asyncio.sleep(PACE_S)
            return filled
        finally:
            await maker.close()
            await taker.close()

    filled = asyncio.run(load())
    time.sleep(SETTLE_S)
    stopping = time.monotonic()
    assert cluster.terminate(active) == 0
    cluster.wait_for(standby, "active at seq", timeout_s=TAKEOVER_WITHIN_S)
    takeover_s = time.monotonic() - stopping
    recovered = RECOVERED.search(standby.log())
    assert recovered is not None, standby.log()
    replayed, warm, replay_ms = int(recovered[1]), recovered[2], float(recovered[3])
    print(f"{filled} filled; takeover {takeover_s:.2f}s: replayed={replayed} ms={replay_ms}")
    assert filled >= FILLS_AFTER_KILL
    assert warm == "true"
    # one record may be on its way still: the one the active core wrote as it stopped
    assert replayed <= 1, f"the standby's copy lagged: {replayed} records replayed"
    assert RESUBSCRIBED in standby.log()
    cluster.nats.restart(index)
