"""A request whose command no core sequences for a long while, with real processes.

While no core is active (a long PostgreSQL outage: the active core exits 70 and the standby
waits for the store; or every core down) a gateway resends each command and answered nothing:
the client saw only its own timeout (the SDK's 30 s). Now a request owed `OUTCOME_WAIT_S` is
answered 504 `OUTCOME_UNKNOWN` (the queries behind it just after it), the command is still
resent, and once a core is back it runs once: its reports come on the account stream, and
nothing is answered twice. Here both cores are paused (no core sequences anything), then the
active one is killed and the standby takes over. One NATS node, SQLite ledgers, one gateway,
whose wait is `[venue] outcome_wait_ms` shortened to `WAIT_S` (the 20 s default is what a
failover must not reach; here no core is active, so a shorter bound only makes it sooner).
"""

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from client.sdk import VenueClient
from cluster.local import LocalCluster
from core.nats_bus import GATEWAY_LEASE_TTL_S, OUTCOME_WAIT_S, RESEND_AFTER_S, RESEND_CHECK_S
from gateway.limits import QUOTE_PLACE_WAIT_S
from tests.cluster.running import local_cluster
from tests.conftest import KEYS
from tests.sample_config import SAMPLE_CONFIG

SYMBOL = "AAPLx-USD"
CL_ORD_ID = "nocore-1"
# the gateway's bound: over a held requote's (refused first), well under the 20 s default
WAIT_S = 7.0
ANSWER_WITHIN_S = WAIT_S + 10  # the bound, its 0.5 s check, a busy machine
# The paused core's lease expires a TTL after its last renewal, then the standby takes over and
# the gateway's resend reaches it: a bound on the test, not a timing it asserts.
TAKEOVER_WITHIN_S = GATEWAY_LEASE_TTL_S + 40
TIMEOUT_S = 180
# After a first report, how long a second run of the command would take to show: a resend
# (every `RESEND_AFTER_S` while no outcome is back, checked every `RESEND_CHECK_S`) and more.
WATCH_AFTER_FIRST_S = RESEND_AFTER_S + RESEND_CHECK_S + 0.5


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    config = tmp_path_factory.mktemp("no-core") / "venue.toml"
    config.write_text(waiting(SAMPLE_CONFIG, WAIT_S))
    with local_cluster(
        "no-core", config, nats_nodes=1, postgres=False, cores=2, gateways=1
    ) as running:
        yield running


def waiting(path: Path, wait_s: float) -> str:
    """The config at `path` with its gateways' `outcome_wait_ms` set to `wait_s`."""
    text = path.read_text()
    assert text.count("[venue]\n") == 1 and "outcome_wait_ms" not in text
    return text.replace("[venue]\n", f"[venue]\noutcome_wait_ms = {round(wait_s * 1_000)}\n")


def quote(price: str) -> dict[str, Any]:
    return {"quote_set": "nc", "quotes": [{"symbol": SYMBOL, "bid_px": price, "bid_qty": "1"}]}


async def answered_in_order(requests: list[Any], order: list[int]) -> list[asyncio.Future[Any]]:
    """Send `requests` in order (each a coroutine); `order` gets each one's index as it is
    answered."""
    futures = []
    for index, request in enumerate(requests):
        future = asyncio.ensure_future(request)
        future.add_done_callback(lambda _, index=index: order.append(index))
        futures.append(future)
        await asyncio.sleep(0.05)  # sent, in this order
    return futures


async def exec_reports(client: VenueClient, cl_ord_id: str, within_s: float) -> list[Any]:
    """The private `exec` pushes of `cl_ord_id` until `WATCH_AFTER_FIRST_S` after the first
    one (bounded by `within_s`); fails on a response among the pushes (a request answered
    twice). Other pushes (heartbeats every second) do not prolong the watch: before, they
    kept it going to `within_s` (50 s)."""
    reports: list[Any] = []
    deadline = time.monotonic() + within_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            push = await client.next_push(left)
        except TimeoutError:
            break
        assert "status" not in push, f"a response nobody waits for: {push}"
        data = push.get("data", {}) if push.get("type") == "exec" else {}
        if data.get("cl_ord_id") == cl_ord_id or data.get("quote_set") == cl_ord_id:
            if not reports:
                deadline = min(deadline, time.monotonic() + WATCH_AFTER_FIRST_S)
            reports.append(data)
    return reports


def test_a_request_no_core_sequences_is_answered_outcome_unknown_and_runs_once_later(
    cluster: LocalCluster,
) -> None:
    """Before: no answer at all (the place, the query behind it) until a core came back."""
    assert QUOTE_PLACE_WAIT_S < WAIT_S < OUTCOME_WAIT_S  # the held requote is refused first
    gateway = cluster.gateways[0]
    active = cluster.active_core()
    assert active is not None and active.process is not None
    standby = next(core for core in cluster.cores if core is not active)
    assert standby.process is not None

    async def scenario() -> None:
        taker = await VenueClient(gateway.url).connect()
        await taker.logon(*KEYS["taker"])
        await taker.subscribe_account()
        maker = await VenueClient(gateway.url).connect()
        await maker.logon(*KEYS["alpha"])
        await maker.request("session.cod", {"enabled": True})  # quote.mass needs it
        await maker.subscribe_account()
        await asyncio.sleep(1)
        for client in (taker, maker):  # the snapshots
            while not client.pushes.empty():
                client.pushes.get_nowait()
        standby.process.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
        active.process.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
        order: list[int] = []
        try:
            started = time.monotonic()
            place, query = await answered_in_order(
                [
                    taker.request_raw("order.place", place_params(), ANSWER_WITHIN_S),
                    taker.request_raw("orders.open", {}, ANSWER_WITHIN_S),
                ],
                order,
            )
            quoting = asyncio.ensure_future(maker.request_raw("quote.mass", quote("150.00")))
            await asyncio.sleep(0.5)
            # a requote waits for the place, then is refused (503) after its own bound
            requote = await maker.request_raw("quote.mass", quote("150.50"), ANSWER_WITHIN_S)
            assert requote["error"]["name"] == "QUOTE_PLACE_PENDING", requote
            placed = await asyncio.wait_for(place, ANSWER_WITHIN_S)
            waited_s = time.monotonic() - started
            assert (placed["status"], placed["error"]["name"]) == (504, "OUTCOME_UNKNOWN"), placed
            assert "may still be carried out" in placed["error"]["msg"], placed
            assert "order.status" in placed["error"]["msg"], placed
            assert waited_s >= WAIT_S - 1, "answered before its bound"
            opened = await asyncio.wait_for(query, 5)
            assert opened["status"] == 200 and order == [0, 1], (opened, order)
            assert CL_ORD_ID not in str(opened["result"])  # as of when it arrived
            quoted = await asyncio.wait_for(quoting, ANSWER_WITHIN_S)
            assert quoted["error"]["name"] == "OUTCOME_UNKNOWN", quoted
        finally:
            await asyncio.to_thread(cluster.kill, active)  # its lease expires by its TTL
            standby.process.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
        # the standby takes over, and the resent place runs, once; the answer was given
        reports = await exec_reports(taker, CL_ORD_ID, TAKEOVER_WITHIN_S)
        assert [r["exec_type"] for r in reports] == ["new"], reports
        status = await taker.order_status(cl_ord_id=CL_ORD_ID)
        assert status["status"] == "new", status
        opened_now = (await taker.open_orders(SYMBOL))["orders"]
        assert [o["order_id"] for o in opened_now if o["cl_ord_id"] == CL_ORD_ID] == [
            reports[0]["order_id"]
        ]
        quotes = await exec_reports(maker, "nc", 5)
        assert [(q["exec_type"], q["price"]) for q in quotes] == [("new", "150.00")], quotes
        moved = await maker.request_raw("quote.mass", quote("151.00"))  # the slot is free
        assert moved["status"] == 200, moved
        for client in (taker, maker):  # nothing answered twice
            assert [p for p in drained(client) if "status" in p] == []
            await client.close()

    asyncio.run(asyncio.wait_for(scenario(), TIMEOUT_S))
    assert "no outcome in time" in gateway.log()
    assert "active at seq" in standby.log()


def place_params() -> dict[str, Any]:
    return {
        "symbol": SYMBOL,
        "side": "buy",
        "type": "limit",
        "tif": "gtc",
        "qty": "0.01",
        "price": "150.00",
        "cl_ord_id": CL_ORD_ID,
    }


def drained(client: VenueClient) -> list[dict[str, Any]]:
    pushes = []
    while not client.pushes.empty():
        pushes.append(client.pushes.get_nowait())
    return pushes
