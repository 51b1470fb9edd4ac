"""An operator's `cl_op_id` sent at once through two gateways of a cluster is done once.

The finding: `admin.issue_key`'s ids were kept by each gateway, so the same id sent at the
same moment through two gateways (a retry through another gateway while the first try was
still on its way) issued two live keys, one of whose secret nobody kept. The id is decided
where commands are put in order now (the engine, `IssueKey`): one key, and the second copy
is answered with the first's key and secret, `repeated: true`, as a repeat through one
gateway. One NATS node, SQLite ledger, one core, two gateways.
"""

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from client.sdk import VenueClient
from cluster.local import LocalCluster
from tests.cluster.running import local_cluster
from tests.conftest import KEYS

TIMEOUT_S = 60.0  # the whole scenario: a few core round trips and a key stream's delivery


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster("adminids", nats_nodes=1, postgres=False, cores=1, gateways=2) as running:
        yield running


async def admin_on(url: str) -> VenueClient:
    connected = await VenueClient(url).connect()
    await connected.logon(*KEYS["admin"])
    return connected


def test_a_key_asked_at_once_through_two_gateways_under_one_id_is_issued_once(
    cluster: LocalCluster,
) -> None:
    issue = {"account": 3, "scopes": ["read", "trade"], "cl_op_id": "two-gateways-key-1"}

    async def scenario() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        admins = [await admin_on(gateway.url) for gateway in cluster.gateways]
        try:
            answers = await asyncio.gather(
                *(admin.request_raw("admin.issue_key", issue) for admin in admins)
            )
            again = await admins[1].request_raw("admin.issue_key", issue)
            holder = await VenueClient(cluster.gateways[0].url).connect()
            try:  # the one key works: its answer was made once it was stored
                await holder.logon(answers[0]["result"]["api_key"], answers[0]["result"]["secret"])
            finally:
                await holder.close()
            return answers, again
        finally:
            for admin in admins:
                await admin.close()

    answers, again = asyncio.run(asyncio.wait_for(scenario(), TIMEOUT_S))
    assert [answer["status"] for answer in answers] == [200, 200], answers
    results = [answer["result"] for answer in answers]
    assert sorted(result.get("repeated", False) for result in results) == [False, True]
    first = next(result for result in results if "repeated" not in result)
    repeated = next(result for result in results if "repeated" in result)
    assert isinstance(repeated.pop("done_at"), int) and repeated.pop("repeated") is True
    assert repeated == first  # the same key and secret: one key issued, not two
    assert again["result"]["api_key"] == first["api_key"] and again["result"]["repeated"]
