"""CORS (`gateway/cors.py`) through a real server on 127.0.0.1: requests as a browser sends
them for a page of another origin, with http.client on a thread. Before session 26 no
answer let such a page read it, nor was its preflight answered: a browser app served from
another origin could not call the REST API at all."""

import asyncio
import http.client
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
import pytest

from client.rest import RestClient, RestResponse
from core import config as venue_config
from gateway import cors, limits
from gateway.server import VenueServer
from tests.conftest import KEYS, SAMPLE_CONFIG, TEST_TIMEOUT_S, Venue

APP = "https://app.example.com"
OTHER = "https://elsewhere.example.com"
SYMBOL = "AAPLx-USD"
ORDER = {"symbol": SYMBOL, "side": "buy", "type": "limit", "tif": "gtc", "price": "150.00"}
Scenario = Callable[[Venue], Awaitable[None]]


def run_with_origins(
    tmp_path: Path, origins: tuple[str, ...], scenario: Scenario, **limit_values: int
) -> None:
    """`scenario` against a venue whose `[gateway] cors_origins` lists `origins`."""

    async def main() -> None:
        config = venue_config.load(SAMPLE_CONFIG)
        gateway = venue_config.GatewaySection(cors_origins=origins)
        changed = msgspec.structs.replace(config.limits, **limit_values)
        config = msgspec.structs.replace(config, gateway=gateway, limits=changed)
        server = VenueServer(config, tmp_path / "d")
        venue = Venue(server, await server.start("127.0.0.1", 0))
        try:
            await asyncio.wait_for(scenario(venue), TEST_TIMEOUT_S)
        finally:
            await server.stop()

    asyncio.run(main())


def send(
    venue: Venue, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> RestResponse:
    """One request on a connection of its own, as sent; blocking."""
    connection = http.client.HTTPConnection("127.0.0.1", venue.port, timeout=TEST_TIMEOUT_S)
    try:
        connection.request(method, path, body=body or None, headers=headers)
        response = connection.getresponse()
        lowered = {name.lower(): value for name, value in response.getheaders()}
        return RestResponse(response.status, response.read(), lowered)
    finally:
        connection.close()


async def sent(venue: Venue, method: str, path: str, **headers: str) -> RestResponse:
    named = {name.replace("_", "-"): value for name, value in headers.items()}
    return await asyncio.to_thread(send, venue, method, path, named)


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    """What a browser sends before a signed request from a page of `origin`."""
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "content-type,x-api-key,x-nonce,x-recv-window,"
        "x-signature,x-timestamp",
    }


def allowed_origin(response: RestResponse) -> str | None:
    return response.headers.get("access-control-allow-origin")


async def preflighted(venue: Venue, path: str, origin: str, method: str) -> RestResponse:
    return await asyncio.to_thread(send, venue, "OPTIONS", path, preflight(origin, method))


def test_a_listed_origins_preflight_and_requests_are_allowed(tmp_path: Path) -> None:
    async def scenario(venue: Venue) -> None:
        answer = await preflighted(venue, "/api/v1/orders", APP, "POST")
        assert answer.status == 204 and answer.body == b"", answer
        assert allowed_origin(answer) == APP
        assert answer.headers["access-control-allow-methods"] == "GET, HEAD, POST"
        allowed = answer.headers["access-control-allow-headers"].lower().split(", ")
        assert set(allowed) >= {"content-type", "x-api-key", "x-timestamp", "x-nonce"}
        assert {"x-recv-window", "x-signature"} <= set(allowed)
        assert answer.headers["access-control-max-age"] == str(cors.PREFLIGHT_MAX_AGE_S)
        assert answer.headers["vary"] == "Origin"
        assert "access-control-allow-credentials" not in answer.headers
        one_order = await preflighted(venue, "/api/v1/orders/7", APP, "DELETE")
        assert one_order.headers["access-control-allow-methods"] == "DELETE, PATCH"
        document = await preflighted(venue, "/openapi.json", APP, "GET")
        assert (document.status, allowed_origin(document)) == (204, APP)
        assert document.headers["access-control-allow-methods"] == "GET, HEAD"
        # the signed request itself, as the page's script sends it after the preflight
        trader = RestClient(f"http://127.0.0.1:{venue.port}", *KEYS["taker"])
        body = json.dumps(ORDER | {"qty": "1"}).encode()
        signed = trader.signature("POST", "/api/v1/orders", "", body)
        headers = signed | {"Origin": APP, "Content-Type": "application/json"}
        placed = await asyncio.to_thread(send, venue, "POST", "/api/v1/orders", headers, body)
        assert placed.status == 200 and placed.json()["status"] == "new", placed
        assert allowed_origin(placed) == APP and placed.headers["vary"] == "Origin"
        assert placed.headers["access-control-expose-headers"] == "Retry-After"
        assert placed.headers["cache-control"] == "no-store"  # a signed route's, as before
        # refusals too, so that the page can read why
        unsigned = await sent(venue, "GET", "/api/v1/balances", Origin=APP)
        assert (unsigned.status, allowed_origin(unsigned)) == (401, APP)
        public = await sent(venue, "GET", f"/api/v1/ticker?symbol={SYMBOL}", Origin=APP)
        assert (public.status, allowed_origin(public)) == (200, APP)
        no_route = await preflighted(venue, "/api/v1/nothing", APP, "GET")
        assert (no_route.status, allowed_origin(no_route)) == (404, APP)
        trader.close()

    run_with_origins(tmp_path, (APP, "http://127.0.0.1:3000"), scenario)


def test_other_origins_are_not_allowed(tmp_path: Path) -> None:
    async def scenario(venue: Venue) -> None:
        for origin in (OTHER, "null", APP + ".evil.example", "http://app.example.com"):
            answer = await preflighted(venue, "/api/v1/orders", origin, "POST")
            assert answer.status == 405, (origin, answer)  # an OPTIONS request, as before
            assert allowed_origin(answer) is None and answer.headers["vary"] == "Origin"
            read = await sent(venue, "GET", "/api/v1/ticker", Origin=origin)
            assert read.status == 200 and allowed_origin(read) is None, (origin, read)
        # an origin as browsers serialize it is matched whatever the case it is listed in
        local = await sent(venue, "GET", "/api/v1/time", Origin="http://127.0.0.1:3000")
        assert allowed_origin(local) == "http://127.0.0.1:3000"
        # the web page's own paths are not the REST API's
        page = await sent(venue, "GET", "/", Origin=APP)
        assert allowed_origin(page) is None

    run_with_origins(tmp_path, (APP, "HTTP://127.0.0.1:3000"), scenario)


def test_with_no_origin_listed_nothing_is_added(tmp_path: Path) -> None:
    async def scenario(venue: Venue) -> None:
        answer = await preflighted(venue, "/api/v1/orders", APP, "POST")
        assert answer.status == 405 and answer.headers["allow"] == "GET, HEAD, POST", answer
        read = await sent(venue, "GET", "/api/v1/ticker", Origin=APP)
        assert read.status == 200
        assert not [name for name in read.headers if name.startswith("access-control-")]
        assert "vary" not in read.headers

    run_with_origins(tmp_path, (), scenario)


def test_a_preflight_is_charged_as_a_request_with_no_route(tmp_path: Path) -> None:
    """A flood of preflights costs what any unsigned request costs: 0.5 tokens each, from a
    connection's bucket as small as it may be here (refilled at 1 token a second)."""
    burst = -(-limits.REQUEST_COST_MILLI_MAX // limits.MILLI)
    charged = 2 * burst  # preflights that fit in the bucket

    async def scenario(venue: Venue) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", venue.port, timeout=TEST_TIMEOUT_S)

        def flood() -> list[int]:
            statuses = []
            for _ in range(charged + 40):  # bounded: the refill adds 2 a second
                connection.request("OPTIONS", "/api/v1/orders", headers=preflight(APP))
                response = connection.getresponse()
                response.read()
                statuses.append(response.status)
                if response.status != 204:
                    break
            return statuses

        try:
            statuses = await asyncio.to_thread(flood)
        finally:
            connection.close()
        assert set(statuses[:charged]) == {204} and statuses[-1] == 429, statuses[-3:]

    run_with_origins(tmp_path, (APP,), scenario, connection_rate_per_s=1, connection_burst=burst)


def test_a_connection_refused_at_the_caps_is_told_so_readably(tmp_path: Path) -> None:
    """The 503 of a connection past the caps on open connections is REST's too: the page
    reads it (and its Retry-After) instead of a failed request."""

    async def scenario(venue: Venue) -> None:
        held = await asyncio.open_connection("127.0.0.1", venue.port)  # the IP's one place
        try:
            refused = await sent(venue, "GET", "/api/v1/time", Origin=APP)
        finally:
            held[1].close()
        assert (refused.status, allowed_origin(refused)) == (503, APP), refused
        assert refused.json()["error"]["name"] == "TOO_MANY_CONNECTIONS"

    run_with_origins(tmp_path, (APP,), scenario, connections_per_ip_max=1)


def test_cors_origins_are_checked_at_load(tmp_path: Path) -> None:
    for entry, words in [
        ("*", "'*' is not allowed: list each origin"),
        ("null", "'null' is not allowed"),
        ("https://app.example.com/", "no path, no trailing slash"),
        ("app.example.com", "http:// or https:// and a host"),
        ("https://app.example.com:0", "its port is not within 1..65535"),
    ]:
        path = tmp_path / "venue.toml"
        path.write_text(f'[gateway]\ncors_origins = ["{entry}"]\n')
        with pytest.raises(venue_config.ConfigError) as refused:
            venue_config.load(path)
        assert "[gateway] cors_origins: " in str(refused.value), str(refused.value)
        assert words in str(refused.value), (entry, str(refused.value))


def test_an_origin_is_compared_as_browsers_send_it() -> None:
    assert venue_config.cors_origin("HTTPS://App.Example.COM:443") == APP
    assert venue_config.cors_origin("http://[::1]:8080") == "http://[::1]:8080"
    assert venue_config.cors_origin("http://localhost:80") == "http://localhost"
    policy = cors.Cors([APP])
    assert policy.listed({"origin": APP}) == APP
    assert policy.listed({"origin": "https://APP.example.com"}) == "https://APP.example.com"
    assert policy.listed({"origin": OTHER}) is None and policy.listed({}) is None


def test_a_listed_origins_preflight_holds_no_reserve_place_beyond_its_answer(
    tmp_path: Path,
) -> None:
    """A preflight proves nothing (it is unsigned), so its connection takes a public place:
    with one free, the signed request the browser sends next on that connection is served
    (and makes it a trader's). With the public places full (5 of 10, held by keep-alive
    reads) it is answered 204 all the same, then closed (`Connection: close`), so it holds
    no place in the reserve: the IP's one place there (`pending_per_ip_max` 1) goes to the
    browser's next connection, whose signed request is served. Before session 27 the
    preflight's connection kept that place for as long as it sent a preflight every 15 s,
    and the signed request on the next connection was refused 503 TOO_MANY_CONNECTIONS.
    (Before session 26's follow-up the preflight itself was refused 503 then.) A trading
    session's connection (the first, once its order is signed) needs no public place: its
    preflight, the places full, is answered 204 and leaves it open for its next order."""

    async def scenario(venue: Venue) -> None:
        def connect(source: str = "127.0.0.1") -> http.client.HTTPConnection:
            return http.client.HTTPConnection(
                "127.0.0.1", venue.port, timeout=TEST_TIMEOUT_S, source_address=(source, 0)
            )

        readers = [connect() for _ in range(5)]
        early, app, browser_next, other = connect(), connect(), connect(), connect("127.0.0.2")
        trader = RestClient(f"http://127.0.0.1:{venue.port}", *KEYS["taker"])

        def on(connection: http.client.HTTPConnection, method: str, path: str,
               headers: dict[str, str], body: bytes = b"") -> RestResponse:  # fmt: skip
            connection.request(method, path, body=body or None, headers=headers)
            response = connection.getresponse()
            lowered = {name.lower(): value for name, value in response.getheaders()}
            return RestResponse(response.status, response.read(), lowered)

        def place(connection: http.client.HTTPConnection, qty: str) -> RestResponse:
            body = json.dumps(ORDER | {"qty": qty}).encode()
            signed = trader.signature("POST", "/api/v1/orders", "", body)
            headers = signed | {"Origin": APP, "Content-Type": "application/json"}
            return on(connection, "POST", "/api/v1/orders", headers, body)

        def browse() -> dict[str, RestResponse]:
            answers = {"early preflight": on(early, "OPTIONS", "/api/v1/orders", preflight(APP))}
            answers["early order"] = place(early, "1")  # on the preflight's connection
            for reader in readers:  # each a public place, kept open
                assert on(reader, "GET", "/api/v1/time", {}).status == 200
            answers["full"] = on(other, "GET", "/api/v1/time", {})  # its IP's own allowance
            answers["preflight"] = on(app, "OPTIONS", "/api/v1/orders", preflight(APP))
            answers["order"] = place(browser_next, "2")  # app still open, if the venue let it
            # a trader's connection needs no public place: its preflight leaves it open
            answers["trader's preflight"] = on(early, "OPTIONS", "/api/v1/orders", preflight(APP))
            answers["trader's order"] = place(early, "3")
            return answers

        try:
            answers = await asyncio.to_thread(browse)
        finally:
            for connection in (*readers, early, app, browser_next, other):
                connection.close()
            trader.close()
        early = answers["early preflight"]
        assert (early.status, early.headers.get("connection")) == (204, None), early
        assert answers["early order"].json()["status"] == "new", answers["early order"]
        full = answers["full"]
        assert full.json()["error"]["name"] == "TOO_MANY_CONNECTIONS", full  # no place left
        placed = answers["order"]  # before: 503, the IP's reserve place held by `app`
        assert placed.status == 200 and placed.json()["status"] == "new", placed
        assert allowed_origin(placed) == APP
        answer = answers["preflight"]
        assert (answer.status, allowed_origin(answer)) == (204, APP), answer
        assert answer.headers.get("connection") == "close", answer
        again = answers["trader's preflight"]  # the public places still full
        assert (again.status, again.headers.get("connection")) == (204, None), again
        assert answers["trader's order"].json()["status"] == "new", answers["trader's order"]

    run_with_origins(
        tmp_path,
        (APP,),
        scenario,
        connections_max=10,
        connections_reserved_pct=50,
        pending_per_ip_max=1,
    )
