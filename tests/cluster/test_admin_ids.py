"""An operator's `cl_op_id` sent at once through two gateways of a cluster is done once.

The finding: `admin.issue_key`'s ids were kept by each gateway, so the same id sent at the
same moment through two gateways (a retry through another gateway while the first try was
still on its way) issued two live keys, one of whose secret nobody kept. The id is decided
where commands are put in order now (the engine, `IssueKey`): one key, and the second copy
is answered with the first's key and secret, `repeated: true`, as a repeat through one
gateway. One NATS node, SQLite ledger, one core, two gateways.

And a key whose request was answered 504 `OUTCOME_UNKNOWN` (the core silent past the
outcome wait) is still stored when the engine's word comes back late: the request sent again
under its id gets it (`repeated: true`); it stored nothing, and every retry was answered 504.
Likewise a revocation under an id answered 504 revokes its key when the outcome comes back.
And (session 32) a revocation's id is one of the engine's admin ids, through either gateway.
"""

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from client.sdk import VenueClient, VenueError
from cluster.local import LocalCluster
from core import config
from core.nats_bus import NatsBus
from gateway.server import VenueServer
from tests.cluster.running import local_cluster
from tests.conftest import KEYS
from tests.sample_config import SAMPLE_CONFIG

TIMEOUT_S = 60.0  # the whole scenario: a few core round trips and a key stream's delivery
OUTCOME_WAIT_S = 0.5  # for the test: answered 504 at once, not after 20 s
ANSWER_WITHIN_S = 10.0  # the 504: its bound, plus the 0.5 s check, on a busy machine


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


def test_a_revocation_s_id_is_one_with_the_engine_s_admin_ids_across_gateways(
    cluster: LocalCluster,
) -> None:
    """The finding of session 31's review: a revocation's `cl_op_id` was kept apart from the
    engine's admin ids, so a deposit under it was minted, and a revocation under a deposit's
    id done. The engine takes it now (`RevokeKey`, through the core): through either gateway,
    either way round, `CL_OP_ID_REUSED`, nothing done."""
    deposit = {"account": 3, "asset": "USD", "amount": "5", "cl_op_id": "cluster-dep-1"}

    async def scenario() -> dict[str, dict[str, Any]]:
        first, second = [await admin_on(gateway.url) for gateway in cluster.gateways]
        out: dict[str, dict[str, Any]] = {}
        try:
            await first.request("admin.deposit", deposit)
            # (issued through the gateway that revokes it, which knows it at once)
            issued = await second.request("admin.issue_key", {"account": 3, "scopes": ["read"]})
            key = issued["api_key"]
            under_deposit = {"api_key": key, "cl_op_id": "cluster-dep-1"}
            out["under deposit"] = await second.request_raw("admin.revoke_key", under_deposit)
            revocation = {"api_key": key, "cl_op_id": "cluster-rv-1"}
            out["revoked"] = await second.request_raw("admin.revoke_key", revocation)
            under_revocation = deposit | {"cl_op_id": "cluster-rv-1"}
            out["deposit under it"] = await first.request_raw("admin.deposit", under_revocation)
            out["again"] = await first.request_raw("admin.deposit", deposit)
        finally:
            await first.close()
            await second.close()
        return out

    out = asyncio.run(asyncio.wait_for(scenario(), TIMEOUT_S))
    assert out["under deposit"]["error"]["name"] == "CL_OP_ID_REUSED", out
    assert out["revoked"]["status"] == 200, out
    assert out["deposit under it"]["error"]["name"] == "CL_OP_ID_REUSED", out
    assert out["again"]["result"]["repeated"] is True, out  # minted once, not again


def shortened(bus: NatsBus) -> NatsBus:
    """`bus` answering 504 after `OUTCOME_WAIT_S` (below `outcome_wait_ms`'s least, 6 s)."""
    bus.outcome_wait_s = OUTCOME_WAIT_S
    return bus


def test_a_key_answered_unknown_is_stored_when_its_outcome_comes_back_late(
    tmp_path: Path,
) -> None:
    """The gateway in this process (its outcome wait shortened), the core paused while the key
    is asked for: answered 504, then the core resumed. Before, the late outcome stored nothing
    and the retry waited 20 s for the key, then was answered 504 too (every retry after)."""
    venue_config = config.load(SAMPLE_CONFIG)
    issue = {"account": 3, "scopes": ["read"], "cl_op_id": "unknown-key-1"}
    with local_cluster("keyunknown", nats_nodes=1, postgres=False, cores=1, gateways=0) as cluster:
        core = cluster.active_core()
        assert core is not None and core.process is not None
        core_process = core.process

        async def scenario() -> tuple[dict[str, Any], dict[str, Any], VenueServer]:
            server = VenueServer(
                venue_config,
                tmp_path / "gw",
                bus=lambda listener: shortened(
                    NatsBus(venue_config, cluster.nats.url, listener, "gw-k")
                ),
            )
            port = await server.start("127.0.0.1", 0)
            url = f"ws://127.0.0.1:{port}/ws/trade"
            try:
                admin = await admin_on(url)
                core_process.send_signal(signal.SIGSTOP)  # no outcome comes back until resumed
                try:
                    unknown = await admin.request_raw("admin.issue_key", issue, ANSWER_WITHIN_S)
                finally:
                    core_process.send_signal(signal.SIGCONT)
                again = await admin.request_raw("admin.issue_key", issue, TIMEOUT_S)
                if again["status"] == 200:  # the key works: it was stored
                    holder = await VenueClient(url).connect()
                    await holder.logon(again["result"]["api_key"], again["result"]["secret"])
                    await holder.close()
                    revoked[:] = await revoke_answered_unknown(url, admin, again["result"])
                await admin.close()
                return unknown, again, server
            finally:
                await server.stop()

        async def revoke_answered_unknown(
            url: str, admin: VenueClient, key: dict[str, Any]
        ) -> list[dict[str, Any]]:
            """Its revocation under an id (`RevokeKey`, since session 32) answered 504 too:
            the late outcome revokes the key all the same (before: not until asked again)."""
            revoke = {"api_key": key["api_key"], "cl_op_id": "unknown-revoke-1"}
            core_process.send_signal(signal.SIGSTOP)
            try:
                late = await admin.request_raw("admin.revoke_key", revoke, ANSWER_WITHIN_S)
            finally:
                core_process.send_signal(signal.SIGCONT)
            refused = await refused_at_logon(url, key["api_key"], key["secret"])
            return [late, refused, await admin.request_raw("admin.revoke_key", revoke, TIMEOUT_S)]

        revoked: list[dict[str, Any]] = []
        unknown, again, server = asyncio.run(asyncio.wait_for(scenario(), TIMEOUT_S * 2))
    assert unknown["error"]["name"] == "OUTCOME_UNKNOWN", unknown
    assert again["status"] == 200 and again["result"]["repeated"] is True, again
    stored = server.dispatcher.keys.keys_by_op[issue["cl_op_id"]]  # the key the engine took
    assert (stored.key, stored.secret) == (again["result"]["api_key"], again["result"]["secret"])
    late, refused, revoked_again = revoked
    assert late["error"]["name"] == "OUTCOME_UNKNOWN", late
    assert refused["name"] == "BAD_SIGNATURE", refused  # revoked, though not asked again
    assert revoked_again["result"]["repeated"] is True, revoked_again


async def refused_at_logon(url: str, api_key: str, secret: str) -> dict[str, Any]:
    """The refusal of a logon with the key, once it comes (up to 50 tries, 0.1 s apart)."""
    for _ in range(50):
        client = await VenueClient(url).connect()
        try:
            await client.logon(api_key, secret)
        except VenueError as refused:
            return {"name": refused.name}
        finally:
            await client.close()
        await asyncio.sleep(0.1)
    return {"name": "still logs on"}
