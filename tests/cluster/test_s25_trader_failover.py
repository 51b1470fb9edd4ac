"""A trader's clients living through a cluster's faults, with real processes: the SDK's
auto_resume moving to another gateway when its own dies, and the REST client reading the
gateway's 504 `OUTCOME_UNKNOWN` while no core answers (not its own timeout first). One NATS
node, SQLite ledgers, one core, two gateways, on free loopback ports."""

import asyncio
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from client.rest import RestClient, RestConnectionLost, RestTimeout
from client.sdk import VenueClient
from cluster.local import LocalCluster
from core.config import OUTCOME_WAIT_MS_DEFAULT
from tests.cluster.running import local_cluster
from tests.conftest import KEYS

SYMBOL = "AAPLx-USD"
TIMEOUT_S = 120
HANDSHAKE_TIMEOUT_S = 10.0  # websockets' `open_timeout`, which the SDK keeps


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster("s25-trader", nats_nodes=1, postgres=False, cores=1, gateways=2) as running:
        yield running


async def account_seqs(client: VenueClient, after: int, count: int) -> list[int]:
    """The private stream's seqs of the next `count` events after `after` (bounded). The
    stream resumed on another gateway is the one seen (the same events, epoch and ts on
    every gateway): never read afresh from a snapshot (`client.sdk_account_stream`)."""
    seqs: list[int] = []
    async with asyncio.timeout(30):
        while len(seqs) < count:
            push = await client.pushes.get()
            assert push.get("type") != "account_restarted", push
            assert not after or push.get("type") != "snapshot", push  # (a first one: followed)
            if push.get("ch") == "account" and "seq" in push and push["seq"] > after:
                seqs.append(push["seq"])
    return seqs


async def notice(client: VenueClient, kind: str) -> dict[str, Any]:
    """The client's next own notice of `kind`, other pushes skipped (bounded)."""
    async with asyncio.timeout(30):
        while True:
            push = await client.pushes.get()
            if push.get("ch") == "client" and push.get("type") == kind:
                return push


def test_auto_resume_moves_to_another_gateway_when_its_own_is_killed(
    cluster: LocalCluster,
) -> None:
    """Before: auto_resume took one URL and tried only it, so kill -9 of the client's gateway
    ended in `gave_up` after ~8 s though the other gateway served all along (and the SDK had
    no way to name it)."""
    a, b = cluster.gateways

    async def scenario() -> None:
        trader = VenueClient(a.url, auto_resume=True, other_urls=[b.url])
        await trader.connect()
        await trader.logon(*KEYS["beta"])
        await trader.subscribe_account()
        first = await trader.place(SYMBOL, "buy", "1", price="120.00", cl_ord_id="s25ct-1")
        await account_seqs(trader, 0, 2)  # the order's report and balance: seen on A
        seen = trader.account_seq
        await asyncio.to_thread(cluster.kill, a)
        moved = await notice(trader, "resumed")
        assert moved["url"] == b.url and moved["from"] == a.url, moved
        assert trader.url == b.url and not trader.gave_up
        second = await trader.place(SYMBOL, "buy", "1", price="120.50", cl_ord_id="s25ct-2")
        seqs = await account_seqs(trader, seen, 2)
        assert seqs == [seen + 1, seen + 2], "the private stream goes on, no gap, nothing twice"
        open_ids = {order["order_id"] for order in (await trader.open_orders(SYMBOL))["orders"]}
        assert {first["order_id"], second["order_id"]} <= open_ids
        await trader.cancel_all(symbol=SYMBOL)
        await trader.close()

    asyncio.run(asyncio.wait_for(scenario(), TIMEOUT_S))


def test_a_rest_client_whose_gateway_died_sends_to_another(cluster: LocalCluster) -> None:
    """Its gateway killed (the first test's, or here), a REST client given the others goes on
    through the next: a refused connection sent nothing. Before: `ConnectionRefusedError`
    from every request, one URL being all it knew."""
    a, b = cluster.gateways
    cluster.kill(a)
    urls = [f"http://127.0.0.1:{gateway.port}" for gateway in (a, b)]
    rest = RestClient(urls[0], *KEYS["taker"], other_urls=urls[1:])
    order = {"symbol": SYMBOL, "side": "buy", "type": "limit", "tif": "gtc", "qty": "1"}
    placed = rest.post("/api/v1/orders", order | {"price": "119.00", "cl_ord_id": "s25ct-rest"})
    assert placed.status == 200, placed
    assert rest.base_url == urls[1]
    listed = rest.get("/api/v1/orders", symbol=SYMBOL).json()["orders"]
    assert [o["cl_ord_id"] for o in listed if o["cl_ord_id"] == "s25ct-rest"] == ["s25ct-rest"]
    assert rest.delete(f"/api/v1/orders/{placed.json()['order_id']}").status == 200
    alone = RestClient(urls[0], *KEYS["taker"])
    with pytest.raises(ConnectionRefusedError, match=f"GET /api/v1/balances not sent: .*{a.port}"):
        alone.get("/api/v1/balances")


def test_auto_resume_leaves_a_gateway_that_hangs(cluster: LocalCluster) -> None:
    """A gateway stopped (SIGSTOP: hung, or its machine cut off) closes nothing: the client
    drops the connection once it is silent `silence_timeout_s` (the venue's heartbeats come
    every second) and resumes on another gateway. Before: websockets' pings noticed after 20
    to 40 s, and meanwhile every request waited for its 30 s timeout."""
    a, b = cluster.gateways
    if not a.running():  # the tests before killed it
        cluster.start_gateway(a)
    assert b.process is not None

    async def scenario() -> None:
        trader = VenueClient(b.url, auto_resume=True, other_urls=[a.url], silence_timeout_s=3)
        await trader.connect()
        await trader.logon(*KEYS["beta"])
        await trader.subscribe_account()
        b.process.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
        try:
            silent = await notice(trader, "silent")
            silent_s = time.monotonic()
            assert silent["url"] == b.url and silent["silent_s"] >= 3, silent
            moved = await notice(trader, "resumed")
            assert moved["url"] == a.url, moved
            # Straight to the other gateway: before, the first try went back to the hung one
            # and waited out its handshake first. A bound under that wait (so that it tells
            # the two apart, whatever the load), far above a resume's few round trips.
            resumed_in_s = time.monotonic() - silent_s
            assert resumed_in_s < HANDSHAKE_TIMEOUT_S - 2, resumed_in_s
            assert (await trader.request("session.status"))["account"] is not None
        finally:
            cluster.kill(b)  # a stopped process dies of SIGKILL too
        await trader.close()

    asyncio.run(asyncio.wait_for(scenario(), TIMEOUT_S))


def test_a_rest_order_while_no_core_answers_gets_the_gateways_504_not_a_bare_timeout(
    cluster: LocalCluster,
) -> None:
    """Before: the REST client waited 10 s for an answer and the gateway answers 504 at 20 s
    (`[venue] outcome_wait_ms`), so a POST during a failover raised `TimeoutError: timed out`, not a
    word about the order. Runs last: it leaves the cluster without a core."""
    gateway = next(role for role in cluster.gateways if role.running())
    core = cluster.cores[0]
    assert core.process is not None
    rest = RestClient(f"http://127.0.0.1:{gateway.port}", *KEYS["taker"])
    order = {"symbol": SYMBOL, "side": "buy", "type": "limit", "tif": "gtc"}
    core.process.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        answer = rest.post("/api/v1/orders", order | {"qty": "1", "price": "121.00"})
        waited_s = time.monotonic() - started
    finally:
        cluster.kill(core)
    assert answer.status == 504 and answer.json()["error"]["name"] == "OUTCOME_UNKNOWN", answer
    assert waited_s >= OUTCOME_WAIT_MS_DEFAULT / 1000 - 1, waited_s


def test_a_request_unanswered_within_the_timeout_says_its_outcome_is_unknown() -> None:
    """A server that takes the request and never answers: a POST's `RestTimeout` says the
    order may have been placed and how to check; a GET's only that no answer came. Before: a
    bare `TimeoutError: timed out` from the socket."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        accepted: list[socket.socket] = []
        taker = threading.Thread(target=lambda: accepted.extend(server.accept()[0] for _ in "pg"))
        taker.start()
        port = server.getsockname()[1]
        rest = RestClient(f"http://127.0.0.1:{port}", timeout_s=0.5)
        with pytest.raises(RestTimeout, match=r"outcome is unknown .* before sending it again"):
            rest.post("/api/v1/orders", {"symbol": SYMBOL})
        with pytest.raises(RestTimeout) as read:
            rest.get("/api/v1/balances")
        assert not read.value.outcome_unknown and "outcome" not in str(read.value)
        taker.join(5)
        for connection in accepted:
            connection.close()


def test_a_connection_broken_before_the_answer_says_the_outcome_is_unknown() -> None:
    """A server that reads the request and closes without answering (a gateway killed with
    the order on its way): `RestConnectionLost` says the order may have been placed. Before:
    http.client's bare `RemoteDisconnected`, not a word about the order."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()

        def read_then_close() -> None:
            connection, _ = server.accept()
            connection.recv(65536)
            connection.close()

        closer = threading.Thread(target=read_then_close)
        closer.start()
        rest = RestClient(f"http://127.0.0.1:{server.getsockname()[1]}")
        with pytest.raises(RestConnectionLost, match="before the answer to POST") as lost:
            rest.post("/api/v1/orders", {"symbol": SYMBOL})
        assert lost.value.outcome_unknown and "outcome is unknown" in str(lost.value)
        closer.join(5)


def test_a_silence_timeout_of_zero_is_refused_before_anything() -> None:
    """0 would drop every connection at its first check."""
    with pytest.raises(ValueError, match="silence_timeout_s must be above 0, not 0"):
        VenueClient("ws://127.0.0.1:48230/ws/trade", silence_timeout_s=0)
