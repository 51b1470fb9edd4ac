"""A logon or signed REST request captured and replayed through another gateway of the cluster.

Each gateway remembered only the nonces it had seen itself, so the very bytes of a logon sent
to gateway A, sent again to gateway B within their window, logged a second session on without
the secret; a signed POST placed its order twice. The nonces are claimed cluster-wide now
(core/cluster_nonces.py): B refuses the replay 401 `NONCE_REUSED`, as A refuses one through
itself. One NATS node, SQLite ledger, one core, two gateways.
"""

import asyncio
import http.client
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect

from client.rest import RestClient, RestResponse
from client.sdk import VenueClient
from cluster.local import LocalCluster
from gateway.auth import RECV_WINDOW_MS_DEFAULT, RECV_WINDOW_MS_MAX, sign_logon
from tests.cluster.running import local_cluster
from tests.conftest import KEYS
from tests.gateway.test_public_streams import until

TIMEOUT_S = 30.0  # for each answer: one NATS round trip, or a core's outcome


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster("nonces", nats_nodes=1, postgres=False, cores=1, gateways=2) as running:
        yield running


def logon_frame(
    who: str, nonce: str, request_id: int = 1, window_ms: int = RECV_WINDOW_MS_DEFAULT
) -> bytes:
    """A `session.logon` frame as a client sends it, signed now."""
    api_key, secret = KEYS[who]
    ts = time.time_ns() // 1_000
    sig = sign_logon(secret, api_key, ts, nonce, window_ms)
    params = {"api_key": api_key, "ts": ts, "nonce": nonce, "recv_window": window_ms}
    return json.dumps(
        {"id": request_id, "method": "session.logon", "params": params | {"sig": sig}}
    ).encode()


async def answers(url: str, frames: list[bytes]) -> list[dict[str, Any]]:
    """Send `frames` at once on a new connection to `url`: their answers, in order (the
    pushes among them, heartbeats, left out)."""
    async with connect(url) as websocket:
        for frame in frames:
            await websocket.send(frame.decode())
        got: list[dict[str, Any]] = []
        while len(got) < len(frames):
            message = json.loads(await asyncio.wait_for(websocket.recv(), TIMEOUT_S))
            if "ch" not in message:
                got.append(message)
        return got


def refusal(answer: dict[str, Any]) -> tuple[int | None, str | None]:
    """An answer's status and error name (None: not an error)."""
    return answer.get("status"), answer.get("error", {}).get("name")


def test_a_logon_frame_replayed_through_another_gateway_is_refused(cluster: LocalCluster) -> None:
    a, b = cluster.gateways
    captured = logon_frame("taker", "captured-logon")

    async def scenario() -> tuple[list[Any], list[Any], list[Any]]:
        first = await answers(a.url, [captured])
        replayed = await answers(b.url, [captured])
        again = await answers(a.url, [captured])
        return first, replayed, again

    first, replayed, again = asyncio.run(scenario())
    assert first[0]["status"] == 200, first
    assert refusal(replayed[0]) == (401, "NONCE_REUSED"), replayed  # main: 200, logged on
    assert refusal(again[0]) == (401, "NONCE_REUSED"), again


def test_frames_sent_behind_a_logon_are_served_logged_on(cluster: LocalCluster) -> None:
    """The nonce's claim takes a round trip to NATS; the frames pipelined behind the logon
    wait for it, and are answered in order as the logged-on session's."""
    _, b = cluster.gateways
    frames = [
        logon_frame("alpha", "pipelined-logon"),
        json.dumps({"id": 2, "method": "session.status", "params": {}}).encode(),
    ]
    logged_on, status = asyncio.run(answers(b.url, frames))
    assert (logged_on["id"], logged_on["status"]) == (1, 200), logged_on
    assert (status["id"], status["result"]["account"]) == (2, logged_on["result"]["account"])


def send(port: int, method: str, path: str, body: bytes, headers: dict[str, str]) -> Any:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    try:
        connection.request(method, path, body=body or None, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_a_signed_post_replayed_through_another_gateway_places_nothing(
    cluster: LocalCluster,
) -> None:
    a, b = cluster.gateways
    trader = RestClient(f"http://127.0.0.1:{a.port}", *KEYS["beta"])
    order = {"symbol": "AAPLx-USD", "side": "buy", "type": "limit", "tif": "gtc"}
    body = json.dumps(order | {"price": "101.00", "qty": "1"}).encode()
    captured = trader.signature("POST", "/api/v1/orders", "", body)
    captured["Content-Type"] = "application/json"

    status, placed = send(a.port, "POST", "/api/v1/orders", body, captured)
    assert status == 200, placed
    status, replayed = send(b.port, "POST", "/api/v1/orders", body, captured)
    assert (status, refusal(replayed)[1]) == (401, "NONCE_REUSED"), replayed  # main: placed
    listed = send(
        a.port, "GET", "/api/v1/orders", b"", trader.signature("GET", "/api/v1/orders", "", b"")
    )
    assert [o["order_id"] for o in listed[1]["orders"]] == [placed["order_id"]]


def test_the_sdk_and_the_rest_client_get_through_a_nats_outage_signing_again(
    cluster: LocalCluster,
) -> None:
    """The SDK raised the first 503 `NONCE_UNCHECKED` of a logon (session 23); it signs again
    with a new nonce and retries, a bounded number of times with backoff
    (`LOGON_RETRY_DELAYS_S`): a logon started while NATS is down logs on once it is back.
    `client.rest` returned the 503 of a signed request at once (session 23); it signs the
    request again alike (`NONCE_RETRY_DELAYS_S`): one sent during the outage is answered once
    NATS is back (a read: the gateway answers it alone, where an order would wait on the
    core's own recovery). Kills the cluster's NATS too (restarted before either can pass)."""
    _, b = cluster.gateways
    trader = RestClient(f"http://127.0.0.1:{b.port}", *KEYS["taker"])

    async def both_across_an_outage() -> tuple[Any, int, RestResponse]:
        async with VenueClient(b.url) as client:
            cluster.nats.nodes[0].kill()
            try:
                logging_on = asyncio.ensure_future(client.logon(*KEYS["us"]))
                reading = asyncio.ensure_future(asyncio.to_thread(trader.get, "/api/v1/balances"))

                # the first claims go unanswered (2 s), are refused and retried: waited for, not
                # slept 2.5 s, which left NATS's restart racing a loaded gateway's refusals
                def retrying() -> bool:
                    return client.logon_retries >= 1 and trader.nonce_retries >= 1

                assert await until(retrying, TIMEOUT_S), "not both refused while NATS was down"
            finally:
                await asyncio.to_thread(cluster.nats.restart, 0)
            logged_on = await asyncio.wait_for(logging_on, TIMEOUT_S)
            return logged_on, client.logon_retries, await asyncio.wait_for(reading, TIMEOUT_S)

    result, retries, read = asyncio.run(both_across_an_outage())
    assert "account" in result and retries >= 1
    assert read.status == 200 and trader.nonce_retries >= 1, read  # main: 503, no retry
    assert "balances" in read.json()
    trader.close()


def test_with_nats_down_a_logon_and_a_signed_request_are_refused_503_not_let_through(
    cluster: LocalCluster,
) -> None:
    """NATS gone (the one node killed): no gateway can tell whether a nonce was used through
    another, so a logon and a signed request are refused 503 `NONCE_UNCHECKED`, nothing
    done, rather than accepted unchecked. Once NATS is back, the very logon frame refused
    logs on (session 23; before, its nonce was spent by the refused claim: 401
    `NONCE_REUSED`). Last in the module: it kills the cluster's NATS."""
    _, b = cluster.gateways
    trader = RestClient(f"http://127.0.0.1:{b.port}", *KEYS["beta"])
    refused_frame = logon_frame("taker", "nats-down", window_ms=RECV_WINDOW_MS_MAX)
    cluster.nats.nodes[0].kill()
    try:
        (logon,) = asyncio.run(answers(b.url, [refused_frame]))
        body = b'{"symbol": "AAPLx-USD", "side": "buy", "type": "limit", "price": "1", "qty": "1"}'
        headers = trader.signature("POST", "/api/v1/orders", "", body)
        status, placed = send(b.port, "POST", "/api/v1/orders", body, headers)
    finally:
        cluster.nats.restart(0)
    assert refusal(logon) == (503, "NONCE_UNCHECKED"), logon
    assert (status, refusal(placed)[1]) == (503, "NONCE_UNCHECKED"), placed
    assert "sign again with a new nonce" in logon["error"]["msg"]
    assert "send the same signed message again" in logon["error"]["msg"]
    assert sent_again_until_checked(b.url, refused_frame)["status"] == 200


def sent_again_until_checked(url: str, frame: bytes) -> dict[str, Any]:
    """The answer to `frame` sent again (on a new connection each time) until it is no
    longer 503 `NONCE_UNCHECKED`: the gateway reconnects to the restarted node within a
    second or two. Bounded: the frame's window (60 s) and `TIMEOUT_S`."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        (answer,) = asyncio.run(answers(url, [frame]))
        if refusal(answer) != (503, "NONCE_UNCHECKED") or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)
