"""client.rest against a real venue on 127.0.0.1: keep-alive, the idle close, signing."""

import ast
import asyncio
import math
import os
import re
import resource
import socket
import ssl
import threading
import time
from decimal import Decimal
from typing import Any

import pytest

from client import rest as rest_client
from client.rest import RestClient, RestConnectionLost, RestNotSent, RestTimeout
from engine.reasons import ErrorCode
from gateway import http
from tests.conftest import KEYS, ROOT, Venue
from tests.gateway.test_rest import Run, base


def test_a_get_after_the_server_closed_the_idle_connection_reconnects(
    run_venue: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "KEEPALIVE_IDLE_S", 0.05)

    async def scenario(venue: Venue) -> None:
        trader = RestClient(base(venue), *KEYS["taker"])
        assert (await asyncio.to_thread(trader.get, "/api/v1/balances")).status == 200
        listener = venue.server._server
        assert listener is not None
        for _ in range(200):  # bounded: the idle timer closes it within a few turns
            if not listener.connections:
                break
            await asyncio.sleep(0.01)
        assert not listener.connections
        again = await asyncio.to_thread(trader.get, "/api/v1/balances")  # signed anew
        assert again.status == 200
        trader.close()

    run_venue(scenario)


def test_an_order_after_the_server_closed_the_idle_connection_is_sent_on_a_new_one(
    run_venue: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The finding (session 25): after the venue closed the kept-alive connection (idle 15
    s), a POST, PATCH or DELETE was written into it and raised BrokenPipeError or
    RemoteDisconnected (only a GET was sent again), so a bot quiet for 15 s could not place,
    amend or cancel, and could not tell whether it had. The client now sees the close
    before sending and opens a new connection; each request is done once."""
    monkeypatch.setattr(http, "KEEPALIVE_IDLE_S", 0.05)

    async def idle_closed(venue: Venue) -> None:
        listener = venue.server._server
        assert listener is not None
        for _ in range(200):  # bounded: the idle timer closes it within a few turns
            if not listener.connections:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the venue kept the idle connection open")

    async def scenario(venue: Venue) -> None:
        trader = RestClient(base(venue), *KEYS["taker"])
        assert (await asyncio.to_thread(trader.get, "/api/v1/balances")).status == 200
        await idle_closed(venue)
        order = {"symbol": "AAPLx-USD", "side": "buy", "type": "limit", "tif": "gtc"}
        order |= {"price": "180.00", "qty": "1", "cl_ord_id": "idle-1"}
        placed = await asyncio.to_thread(trader.post, "/api/v1/orders", order)
        assert placed.status == 200, placed  # main: BrokenPipeError
        order_id = placed.json()["order_id"]
        await idle_closed(venue)
        amended = await asyncio.to_thread(
            trader.patch, f"/api/v1/orders/{order_id}", {"price": "181.00"}
        )
        assert amended.status == 200, amended
        await idle_closed(venue)
        canceled = await asyncio.to_thread(trader.delete, f"/api/v1/orders/{order_id}")
        assert (canceled.status, canceled.json()["status"]) == (200, "canceled"), canceled
        history = await asyncio.to_thread(trader.get, "/api/v1/orders/history")
        assert [row["cl_ord_id"] for row in history.json()["orders"]] == ["idle-1"]
        trader.close()

    run_venue(scenario)


def test_a_client_whose_clock_is_off_signs_by_the_venues_after_sync_clock(
    run_venue: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The finding (session 25): a machine whose clock is a minute off had every signed REST
    request refused `TIMESTAMP_OUT_OF_WINDOW`, and REST had no way to ask the venue's clock
    (the web page and the SDK sign by the websocket's `time`). `GET /api/v1/time` answers it;
    `RestClient.sync_clock()` signs by it from then on."""
    skew_us = -60_000_000  # this "machine" is a minute slow
    monkeypatch.setattr(rest_client, "wall_clock_us", lambda: time.time_ns() // 1_000 + skew_us)

    async def scenario(venue: Venue) -> None:
        trader = RestClient(base(venue), *KEYS["taker"])
        refused = await asyncio.to_thread(trader.get, "/api/v1/balances")
        assert (refused.status, refused.error_code()) == (401, ErrorCode.TIMESTAMP_OUT_OF_WINDOW)
        offset_us = await asyncio.to_thread(trader.sync_clock)  # main: no such route, 404
        assert abs(offset_us + skew_us) < 5_000_000, offset_us  # a minute, give or take
        assert (await asyncio.to_thread(trader.get, "/api/v1/balances")).status == 200
        clock = (await asyncio.to_thread(trader.get, "/api/v1/time")).json()
        assert abs(clock["time"] - time.time_ns() // 1_000) < 5_000_000, clock
        trader.close()

    run_venue(scenario)


def test_sync_clock_halves_the_answered_attempt_not_a_retrys_wait(run_venue: Run) -> None:
    """`sync_clock` took the middle of the whole request, waits between retries included: a
    first attempt refused 503 `TOO_MANY_CONNECTIONS` with `Retry-After: 1` put the venue's
    clock ~0.5 s off (review of session 25), and a proxy's longer `Retry-After` past any recv
    window. It halves the round trip of the attempt answered."""

    async def scenario(venue: Venue) -> None:
        assert venue.server._server is not None
        counts = venue.server._server.counts
        cap = counts.per_ip_max
        counts.per_ip_max = counts.open_from("127.0.0.1")  # full: the first attempt is refused
        asyncio.get_running_loop().call_later(0.3, setattr, counts, "per_ip_max", cap)
        trader = RestClient(base(venue), *KEYS["taker"])
        offset_us = await asyncio.to_thread(trader.sync_clock)  # waits the 1 s Retry-After
        assert trader.refused_retries == 1
        # the venue's clock is this machine's: the offset is the round trip's error at most
        assert abs(offset_us) < 250_000, offset_us  # before: ~500,000
        trader.close()

    run_venue(scenario)


def test_a_kept_alive_connection_is_reused_whatever_its_descriptor_number(
    run_venue: Run,
) -> None:
    """Whether a kept-alive connection was closed by the venue was asked with `select`,
    which refuses a descriptor of 1,024 or more: a bot with that many files or sockets open
    got ValueError from its second request on every connection (review of session 25)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2_048:
        pytest.skip(f"the hard limit of open files ({hard}) leaves no descriptor past 1,024")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2_048), hard))
    held: list[int] = []

    async def scenario(venue: Venue) -> None:
        try:
            while not held or held[-1] < 1_100:  # the client's socket comes after these
                held.append(os.open(os.devnull, os.O_RDONLY))
            trader = RestClient(base(venue), *KEYS["taker"])
            first = await asyncio.to_thread(trader.get, "/api/v1/balances")
            assert first.status == 200, first
            assert trader._connection is not None and trader._connection.sock is not None
            assert trader._connection.sock.fileno() >= 1_024
            second = await asyncio.to_thread(trader.get, "/api/v1/balances")  # before: ValueError
            assert second.status == 200, second
            trader.close()
        finally:
            for fd in held:
                os.close(fd)

    try:
        run_venue(scenario)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_an_unreachable_gateway_is_left_for_the_next_with_nothing_sent(
    run_venue: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a refused connection moved a request to the next gateway: one whose host could
    not be reached (its connect timing out, or `No route to host`) waited the whole timeout
    and was reported as a request whose outcome is unknown, or raised a bare OSError, and
    no other gateway was tried (review of session 25). Nothing was sent: it moves on, and
    with no gateway left it is `RestNotSent`."""
    lost = {9: TimeoutError("timed out"), 7: OSError(113, "No route to host")}  # by port
    real = socket.create_connection

    def create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> Any:
        if address[1] in lost:
            raise lost[address[1]]
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    order = {"symbol": "AAPLx-USD", "side": "buy", "type": "limit", "tif": "gtc"}

    async def scenario(venue: Venue) -> None:
        for port in lost:
            trader = RestClient(
                f"http://127.0.0.1:{port}", *KEYS["taker"], other_urls=[base(venue)]
            )
            placed = await asyncio.to_thread(
                trader.post, "/api/v1/orders", order | {"price": "180.00", "qty": "1"}
            )
            assert placed.status == 200 and trader.base_url == base(venue), placed
            trader.close()
            alone = RestClient(f"http://127.0.0.1:{port}", *KEYS["taker"])
            with pytest.raises(RestNotSent, match="POST /api/v1/orders not sent") as not_sent:
                await asyncio.to_thread(alone.post, "/api/v1/orders", order)
            assert not_sent.value.outcome_unknown is False

    run_venue(scenario)


def test_an_https_url_is_spoken_over_tls_never_in_the_clear(run_venue: Run) -> None:
    """`RestClient("https://…")` sent its signed requests as plain HTTP, to port 80 when the
    URL named none (session 23): a venue behind a TLS proxy was spoken to in the clear. It
    speaks TLS now; the venue on loopback serves plain HTTP, so the handshake fails, before
    any request is sent. A URL of another scheme is refused at once."""

    async def scenario(venue: Venue) -> None:
        trader = RestClient(f"https://127.0.0.1:{venue.port}", *KEYS["taker"])
        with pytest.raises(ssl.SSLError):  # main: 200, the balances sent in the clear
            await asyncio.to_thread(trader.get, "/api/v1/balances")
        trader.close()
        assert (RestClient("https://venue.example").port, RestClient("http://h").port) == (443, 80)
        with pytest.raises(ValueError, match="http:// or https://"):
            RestClient(f"ws://127.0.0.1:{venue.port}")
        # a key without its secret (or the reverse) is refused at once (session 25); it was
        # taken, and its first request failed an assertion, `a key signs`
        for key, secret in ((KEYS["taker"][0], None), (None, KEYS["taker"][1])):
            with pytest.raises(ValueError, match="give both, or neither"):
                RestClient(base(venue), key, secret)

    run_venue(scenario)


def test_decimal_values_in_a_body_are_sent_as_decimal_strings_as_the_sdk_sends_them(
    run_venue: Run,
) -> None:
    """The finding (a trader keeping prices as `Decimal`, as money should be): the SDK's
    `place(..., qty=Decimal("1.5"))` placed the order (msgspec writes a Decimal as its
    string), while `RestClient.post` with the same params raised `TypeError: Object of type
    Decimal is not JSON serializable`. The REST client now encodes its bodies as the SDK does."""

    async def scenario(venue: Venue) -> None:
        trader = RestClient(base(venue), *KEYS["taker"])
        order = {"symbol": "AAPLx-USD", "side": "buy", "type": "limit", "tif": "gtc"}
        placed = await asyncio.to_thread(
            trader.post,
            "/api/v1/orders",
            order | {"price": Decimal("180.00"), "qty": Decimal("1.5")},
        )
        assert placed.status == 200, placed.body
        path = f"/api/v1/orders/{placed.json()['order_id']}"
        amended = await asyncio.to_thread(trader.patch, path, {"qty": Decimal("2")})
        assert amended.status == 200, amended.body
        [left] = (await asyncio.to_thread(trader.get, "/api/v1/orders")).json()["orders"]
        assert (left["price"], left["qty"]) == ("180.00", "2.000000")

    run_venue(scenario)


def test_a_number_json_cannot_carry_is_refused_before_anything_is_sent(run_venue: Run) -> None:
    """The review's finding: msgspec writes a float NaN or infinity as `null`, which the
    venue reads as a field not given, so `patch(path, {"qty": "2", "price": nan})` amended
    the qty and dropped the price, unsaid (with `json.dumps`, before session 35, the body was
    `NaN`: 400 BAD_JSON). Such a number is a ValueError naming where it is, nothing sent."""

    async def scenario(venue: Venue) -> None:
        trader = RestClient(base(venue), *KEYS["taker"])
        order = {"symbol": "AAPLx-USD", "side": "buy", "type": "limit", "tif": "gtc"}
        placed = await asyncio.to_thread(
            trader.post, "/api/v1/orders", order | {"price": "180.00", "qty": "1"}
        )
        assert placed.status == 200, placed.body
        path = f"/api/v1/orders/{placed.json()['order_id']}"
        batch = {"ops": [{"q": [-math.inf]}]}
        asked = [
            (trader.patch, path, {"qty": "2", "price": float("nan")}, "price is nan"),
            (
                trader.post,
                "/api/v1/orders",
                order | {"qty": "1", "price": math.inf},
                "price is inf",
            ),
            (trader.post, "/api/v1/orders/batch", batch, "ops[0].q[0] is -inf"),
            # a tuple stays a tuple in `to_builtins` (the re-review: it went out as null)
            (
                trader.post,
                "/api/v1/orders/batch",
                {"ops": ({"q": (1.0, math.nan)},)},
                "ops[0].q[1] is nan",
            ),
        ]
        for send, where, body, words in asked:
            with pytest.raises(ValueError) as refused:
                await asyncio.to_thread(send, where, body)
            assert str(refused.value).startswith(f"{words}: JSON has no NaN or infinity"), words
        [left] = (await asyncio.to_thread(trader.get, "/api/v1/orders")).json()["orders"]
        assert (left["price"], left["qty"]) == ("180.00", "1.000000")

    run_venue(scenario)


def test_a_path_without_its_leading_slash_is_refused_before_anything_is_sent(
    run_venue: Run,
) -> None:
    """The finding: `get("api/v1/balances")` sent `GET api/v1/balances`, which is no path,
    and the venue's answer was the web page's 404, `use /ws/trade or /ws/public`, which says
    nothing of the slash. It is a ValueError at once, nothing sent (no nonce spent)."""

    async def scenario(venue: Venue) -> None:
        trader = RestClient(base(venue), *KEYS["taker"])
        for call in (
            lambda: trader.get("api/v1/balances"),
            lambda: trader.post("api/v1/orders", {}),
            lambda: trader.delete("api/v1/orders/1"),
        ):
            with pytest.raises(ValueError) as refused:
                await asyncio.to_thread(call)
            assert "a path starts with '/', such as '/api/v1/balances'" in str(refused.value)
        assert (await asyncio.to_thread(trader.get, "/api/v1/balances")).status == 200

    run_venue(scenario)


def test_a_query_written_into_the_path_is_signed_as_sent(run_venue: Run) -> None:
    """`get("/api/v1/orders?symbol=…")` signed the whole target as the path and an empty
    query, where the venue signs the path and the query apart (docs/rest.md): 401
    BAD_SIGNATURE for a well-formed request (found in session 23). The query in the path is
    signed as the query now, before the one given as keywords."""

    async def scenario(venue: Venue) -> None:
        trader = RestClient(base(venue), *KEYS["taker"])
        listed = await asyncio.to_thread(trader.get, "/api/v1/orders?symbol=AAPLx-USD")
        assert (listed.status, listed.json()) == (200, {"orders": []}), listed  # main: 401
        both = await asyncio.to_thread(trader.get, "/api/v1/orders/history?status=open", limit=5)
        assert both.status == 200, both
        trader.close()

    run_venue(scenario)


def test_a_request_refused_for_too_many_connections_is_sent_again_after_retry_after(
    run_venue: Run,
) -> None:
    """Refused 503 `TOO_MANY_CONNECTIONS` (the address has the venue's most open connections;
    nothing done), a request is sent again on a new connection after the `Retry-After`, a
    bounded number of times; then the refusal is returned. (Before: returned at once.)"""

    async def scenario(venue: Venue) -> None:
        assert venue.server._server is not None
        counts = venue.server._server.counts
        cap = counts.per_ip_max
        counts.per_ip_max = counts.open_from("127.0.0.1")  # full: the next one is refused
        asyncio.get_running_loop().call_later(0.3, setattr, counts, "per_ip_max", cap)
        trader = RestClient(base(venue), *KEYS["taker"])
        answer = await asyncio.to_thread(trader.get, "/api/v1/balances")  # waits 1 s
        assert (answer.status, trader.refused_retries) == (200, 1), answer
        open_before = counts.open_from("127.0.0.1")
        trader.close()
        for _ in range(500):  # until the server has seen it close: bounded, 5 s
            if counts.open_from("127.0.0.1") < open_before:
                break
            await asyncio.sleep(0.01)
        counts.per_ip_max = counts.open_from("127.0.0.1")
        bounded = RestClient(base(venue), refused_retries_max=1)
        answer = await asyncio.to_thread(bounded.get, "/api/v1/ticker")
        assert (answer.status, answer.error_code(), bounded.refused_retries) == (503, 9005, 1)
        assert answer.header("retry-after") == "1"
        counts.per_ip_max = cap

    run_venue(scenario)


def test_the_bound_on_retries_after_too_many_connections_is_per_request(run_venue: Run) -> None:
    """`refused_retries_max` bounds the retries of one request: each request refused 503
    `TOO_MANY_CONNECTIONS` may be sent again that many times. (Before, it bounded the
    client's whole life: once it had retried that often, every later refusal was returned
    at once, a long-lived client giving up on a venue that would take it a second later.)"""

    async def scenario(venue: Venue) -> None:
        assert venue.server._server is not None
        counts = venue.server._server.counts
        cap = counts.per_ip_max
        trader = RestClient(base(venue), *KEYS["taker"], refused_retries_max=1)
        for attempt in (1, 2):
            open_now = counts.open_from("127.0.0.1")
            counts.per_ip_max = open_now  # full: the next one is refused
            asyncio.get_running_loop().call_later(0.3, setattr, counts, "per_ip_max", cap)
            answer = await asyncio.to_thread(trader.get, "/api/v1/balances")  # waits 1 s
            assert (answer.status, trader.refused_retries) == (200, attempt), answer.body
            trader.close()  # the next request needs a new connection, refused again
            for _ in range(500):  # until the server has seen it close: bounded, 5 s
                if counts.open_from("127.0.0.1") == open_now:
                    break
                await asyncio.sleep(0.01)

    run_venue(scenario)


def test_a_lost_answer_to_a_place_with_once_says_to_send_it_again() -> None:
    """A place sent with `once` and its cl_ord_id runs at most once (docs/rest.md), yet its
    lost answer said, as any other's, to look the order up before sending it again. Now it
    says to send the same request again; a place without `once` is told to look first."""
    order = {"symbol": "AAPLx-USD", "side": "buy", "type": "limit", "tif": "gtc"}
    once = order | {"price": "180.00", "qty": "1", "cl_ord_id": "r-1", "once": True}
    bodies = [once, order | {"cl_ord_id": "r-1"}, order | {"once": True}]
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        held: list[socket.socket] = []

        def read_then_close() -> None:  # the last one is held open: its answer never comes
            for index in range(len(bodies) + 1):
                connection, _ = server.accept()
                connection.recv(65_536)
                if index < len(bodies):
                    connection.close()
                else:
                    held.append(connection)

        closer = threading.Thread(target=read_then_close)
        closer.start()
        rest = RestClient(f"http://127.0.0.1:{server.getsockname()[1]}", timeout_s=0.2)
        said = []
        for body in bodies:
            with pytest.raises(RestConnectionLost) as lost:
                rest.post("/api/v1/orders", body)
            said.append(str(lost.value))
        with pytest.raises(RestTimeout) as late:
            rest.post("/api/v1/orders", once)
        closer.join(5)
        for connection in held:
            connection.close()
    again = "it was sent with once, so send the same request again: it runs at most once"
    assert again in said[0] and again in str(late.value)
    for message in said[1:]:  # no once, or no cl_ord_id to know it by: look first
        assert again not in message and "before sending it again" in message


MAKE_RUN_BASE = "http://127.0.0.1:8765"  # venue.toml's host and port, as the docs write them


def test_the_docs_python_example_answers_what_the_doc_shows(run_venue: Run) -> None:
    """docs/rest.md's RestClient example, taken from the doc and run against a fresh venue of
    `make run`'s config, answers exactly the dict its comment shows. The doc said seq 49 for
    the first order of a fresh venue: it has been 50 since a new journal's first record is its
    reserve staleness bound (found by the newcomer's trial of session 30)."""
    text = (ROOT / "docs" / "rest.md").read_text()
    found = re.search(r"```python\n(.*?\.json\(\)\n)# (\{.*?\})\n```", text, re.DOTALL)
    assert found is not None, "docs/rest.md has no python example with its answer"
    code, shown = found.groups()
    assert code.count(MAKE_RUN_BASE) == 1 and code.count("\napi.post(") == 1
    script = code.replace(MAKE_RUN_BASE, "{base}").replace("\napi.post(", "\nanswer = api.post(")

    async def scenario(venue: Venue) -> None:
        namespace: dict[str, Any] = {}
        await asyncio.to_thread(exec, script.replace("{base}", base(venue)), namespace)
        namespace["api"].close()
        assert namespace["answer"] == ast.literal_eval(shown)

    run_venue(scenario)
