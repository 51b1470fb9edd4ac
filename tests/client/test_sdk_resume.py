"""The SDK's connection lifecycle: its close, and auto_resume's tries, budget and logon.

Real parts only: the venue in-process on 127.0.0.1, and for a venue that hangs a plain
asyncio server that takes the TCP connection and never answers a byte.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from websockets.protocol import State

from client.sdk import VenueClient
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
