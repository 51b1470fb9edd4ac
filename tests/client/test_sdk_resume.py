"""The SDK's connection lifecycle: its close, and auto_resume's tries, budget and logon.

Real parts only: the venue in-process on 127.0.0.1, and for a venue that hangs a plain
asyncio server that takes the TCP connection and never answers a byte.
"""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.protocol import State

from client import sdk
from client.sdk import ConnectionLost, VenueClient, VenueError
from gateway import limits
from gateway.auth import KeyStore
from tests.conftest import KEYS, Venue

SYMBOL = "AAPLx-USD"


def test_close_on_a_frozen_venue_drops_the_link_instead_of_waiting_10_s(run_venue: Any) -> None:
    """The finding (session 26): `close()` waited websockets' close timeout, 10 s, on a venue
    that took the connection but never answered the closing handshake (SIGSTOPped, say); a
    bot asked to stop sat it out. It now waits `CLOSE_TIMEOUT_S`, then drops the transport."""

    async def scenario(venue: Venue) -> None:
        alpha = await venue.client("alpha")
        session = next(s for s in venue.server.sessions.values() if s.account == 1)
        session.websocket.transport.pause_reading()  # frozen: the close frame is never read
        await asyncio.wait_for(alpha.close(), 5)  # before: TimeoutError (10 s)
        assert alpha.websocket is not None and alpha.websocket.state is State.CLOSED
        session.websocket.transport.resume_reading()  # the venue thaws and sees it gone

    run_venue(scenario)


@asynccontextmanager
async def frozen_server() -> AsyncIterator[str]:
    """A server that accepts TCP connections and never answers (a hung gateway's machine);
    its URL, on a port of its own."""
    held: list[asyncio.StreamWriter] = []

    async def accepted(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # never read, never written, never closed until the end

    server = await asyncio.start_server(accepted, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}/ws/trade"
    finally:
        server.close()
        for writer in held:
            writer.transport.abort()
        await server.wait_closed()


async def logged_on(venue: Venue, **options: Any) -> VenueClient:
    client = VenueClient(venue.url(), auto_resume=True, **options)
    venue.clients.append(await client.connect())
    await client.logon(*KEYS["alpha"])
    return client


@asynccontextmanager
async def refusing_servers(count: int) -> AsyncIterator[tuple[list[str], list[int]]]:
    """`count` servers that close each connection at once (gateways that refuse), their
    URLs, and how many connections each was tried with."""
    hits = [0] * count
    servers = []

    def refuse(index: int) -> Any:
        async def accepted(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            hits[index] += 1
            writer.transport.abort()

        return accepted

    for index in range(count):
        servers.append(await asyncio.start_server(refuse(index), "127.0.0.1", 0))
    ports = [server.sockets[0].getsockname()[1] for server in servers]
    try:
        yield [f"ws://127.0.0.1:{port}/ws/trade" for port in ports], hits
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()


async def until(done: Any, tries: int = 200, pause_s: float = 0.05) -> bool:
    """Whether `done()` came true within `tries` looks (bounded in count and time)."""
    for _ in range(tries):
        if done():
            return True
        await asyncio.sleep(pause_s)
    return bool(done())


def test_auto_resume_tries_every_gateway_in_turn_not_only_the_first_four(
    run_venue: Any,
) -> None:
    """The finding (session 26): auto_resume made one try after each of its 5 delays, the
    dropped URL first, so with more than 4 other URLs it never tried some of them (and gave
    up on a cluster that served there). Now each round tries every URL in turn."""

    async def scenario(venue: Venue) -> None:
        async with refusing_servers(5) as (others, hits):
            alpha = await logged_on(venue, other_urls=others)
            assert venue.server._server is not None
            venue.server._server.closing = True  # its own gateway answers 503 meanwhile
            session = next(s for s in venue.server.sessions.values() if s.account == 1)
            session.websocket.transport.abort()
            assert await until(lambda: all(hits)), f"gateways never tried: {hits}"
            venue.server._server.closing = False
            assert await until(lambda: alpha.resumed == 1), "resumed on its own gateway"
            assert alpha.url == venue.url() and not alpha.gave_up

    run_venue(scenario)


def test_auto_resume_waits_the_reconnect_in_ms_of_a_shutdown_push(run_venue: Any) -> None:
    """The finding (session 26): a stopping venue's `shutdown` push says when to come back
    (`reconnect_in_ms`, protocol §4.5) and auto_resume tried after 0.1 s regardless. (A
    resume before the time it said would fail this test; a slow machine cannot.)"""

    async def scenario(venue: Venue) -> None:
        alpha = await logged_on(venue)
        alpha._on_message({"ch": "session", "type": "shutdown", "reconnect_in_ms": 1500})
        session = next(s for s in venue.server.sessions.values() if s.account == 1)
        session.websocket.transport.abort()
        await asyncio.sleep(0.7)  # the default first delay (0.1 s) is long past
        assert alpha.resumed == 0, "resumed before the venue's reconnect_in_ms"
        assert await until(lambda: alpha.resumed == 1)

    run_venue(scenario)


def test_auto_resume_rides_out_a_restart_or_a_takeover_by_default() -> None:
    """A gateway's restart or a core's takeover takes 10-15 s: the default tries span
    twice that (before, 8.4 s of delays in all), and the budget bounds them."""
    client = VenueClient("ws://127.0.0.1:9/ws/trade", auto_resume=True)
    assert sum(client.reconnect_delays_s) >= 25
    assert client.resume_budget_s == sdk.RESUME_BUDGET_S == 30


def test_auto_resume_gives_up_once_its_budget_is_spent(run_venue: Any) -> None:
    """However many delays are left, no round of tries begins once `resume_budget_s` has
    passed since the drop; then the `gave_up` notice."""

    async def scenario(venue: Venue) -> None:
        alpha = await logged_on(venue, reconnect_delays_s=(0.05,) * 10_000, resume_budget_s=0.5)
        assert venue.server._server is not None
        venue.server._server.closing = True
        session = next(s for s in venue.server.sessions.values() if s.account == 1)
        session.websocket.transport.abort()
        notice = await alpha.next_push(5)  # 10,000 rounds would take minutes
        assert (notice["type"], alpha.gave_up) == ("gave_up", True)
        assert "503" in notice["error"]

    run_venue(scenario)


async def logons_spent(venue: Venue) -> None:
    """The address's bucket of refused logons emptied (1 a second, 2 at once): the next
    logon, good or not, is refused 429 with `retry_after_ms`, which the SDK waits out."""
    small = limits.AddressBuckets(rate_per_s=1, burst=2)
    venue.server.dispatcher.logons.refusals_by_address = small
    venue.server.unsigned_limiter = small
    neighbour = await venue.client()  # another client behind the same address
    bad = {"api_key": KEYS["alpha"][0], "ts": time.time_ns() // 1_000, "sig": "0" * 64}
    for index in range(10):
        answer = await neighbour.request_raw("session.logon", bad | {"nonce": f"n-{index}"})
        if answer["error"]["name"] == "RATE_LIMITED":
            return
    raise AssertionError("the bucket of refused logons was never spent")


async def resuming_until_connected(client: VenueClient) -> "asyncio.Task[None]":
    """`client.resume()` under way, past its connect (its logon not done: it waits out a
    429 whose retry is not yet sent)."""
    old = client.websocket
    resuming = asyncio.create_task(client.resume())
    assert await until(lambda: client.websocket is not old or resuming.done(), pause_s=0.005)
    assert not resuming.done() and client.logon_retries == 0, "past the logon already"
    return resuming


def test_a_request_during_a_resumes_logon_is_held_until_it_is_done(run_venue: Any) -> None:
    """The finding (session 26): a request sent while a resume was connected but not yet
    logged on went out on the new connection and got 401 NOT_AUTHENTICATED ("log on
    first") though the caller had logged on. It is held until the logon is done."""

    async def scenario(venue: Venue) -> None:
        alpha = await venue.client("alpha")
        await logons_spent(venue)
        resuming = await resuming_until_connected(alpha)
        balances = await alpha.balances()  # before: VenueError 401 NOT_AUTHENTICATED
        assert "USD" in str(balances)
        await resuming
        assert alpha.logon_retries >= 1, "the request came before the logon was done"

    run_venue(scenario)


def test_a_request_held_by_a_resume_that_fails_raises_connection_lost_unsent(
    run_venue: Any,
) -> None:
    async def scenario(venue: Venue) -> None:
        alpha = await venue.client("alpha")
        await logons_spent(venue)
        venue.server.auth.store = KeyStore()  # the venue is back without the key
        resuming = await resuming_until_connected(alpha)
        with pytest.raises(ConnectionLost, match="balances not sent") as lost:
            await alpha.balances()  # before: VenueError 401 NOT_AUTHENTICATED
        assert (lost.value.sent, lost.value.outcome_unknown) == (False, False)
        with pytest.raises(VenueError):
            await resuming  # its logon refused

    run_venue(scenario)


def test_wait_resumed_says_whether_the_connection_came_back(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        alpha = await logged_on(venue, reconnect_delays_s=(0.05,) * 3)
        session = next(s for s in venue.server.sessions.values() if s.account == 1)
        session.websocket.transport.abort()
        with pytest.raises(ConnectionLost):
            await alpha.request("balances")
        assert await alpha.wait_resumed() and alpha.resumed == 1
        assert "USD" in str(await alpha.balances())
        assert venue.server._server is not None
        venue.server._server.closing = True  # now every try is refused 503
        session = next(s for s in venue.server.sessions.values() if s.account == 1)
        session.websocket.transport.abort()
        with pytest.raises(ConnectionLost):
            await alpha.request("balances")
        assert not await alpha.wait_resumed() and alpha.gave_up
        venue.server._server.closing = False
        plain = await venue.client("beta")  # auto_resume off: nothing to wait for
        await plain.close()
        assert not await plain.wait_resumed()

    run_venue(scenario)


@pytest.mark.parametrize("wrong", [None, "1000", -5, 1.5, True])
def test_a_shutdown_push_without_a_count_of_ms_is_told_and_not_obeyed(wrong: Any) -> None:
    client = VenueClient("ws://127.0.0.1:9/ws/trade", auto_resume=True)
    client._on_message({"ch": "session", "type": "shutdown", "reconnect_in_ms": wrong})
    assert client._reconnect_in_s is None  # the resume's own delays apply
    notice = client.pushes.get_nowait()
    assert notice["type"] == "error" and "reconnect_in_ms is no count of ms" in notice["error"]
    assert client.pushes.get_nowait()["type"] == "shutdown"  # the push itself, as ever
    client._on_message({"ch": "session", "type": "shutdown", "reconnect_in_ms": 10**9})
    assert client._reconnect_in_s == client.resume_budget_s  # at most the budget
