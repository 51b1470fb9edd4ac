"""A bot given several gateways (`--url` repeated): it resumes on another when dropped.

A real venue in-process on 127.0.0.1; the primary gateway is a relay in front of it (plain
asyncio, bytes both ways), which the test takes down as a gateway dies.
"""

import argparse
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest

from cli.failures import CommandFailed
from client import bots
from client.bots import MarketMaker
from tests.conftest import KEYS, Venue

SYMBOL = "AAPLx-USD"
ALPHA = 1  # venue.toml's account of demo-mm-alpha
READY_TIMEOUT_S = 5.0


@pytest.mark.parametrize("add", [bots.add_market_maker_arguments, bots.add_taker_arguments])
def test_url_repeated_names_the_primary_first_and_the_other_gateways(add: Any) -> None:
    """The finding (session 26): `--url` took one value (a second replaced the first), so a
    bot could not name a cluster's other gateways."""
    parser = argparse.ArgumentParser()
    add(parser)
    required = ["--symbol", SYMBOL, "--spread", "10", "--size", "1", "--rate", "1"]
    urls = ["ws://a/ws/trade", "ws://b/ws/trade", "ws://c/ws/trade"]
    known, _ = parser.parse_known_args([*(f"--url={url}" for url in urls), *required])
    assert (known.url, known.other_urls) == (urls[0], urls[1:])
    alone, _ = parser.parse_known_args(required)
    assert (alone.url, alone.other_urls, bots._other_urls(alone)) == (bots.URL_DEFAULT, None, [])
    bad, _ = parser.parse_known_args(["--url", "ws://a/ws/trade", "--url", "ws://b/x", *required])
    with pytest.raises(CommandFailed, match="ws://b/x: the path must be /ws/trade"):
        bots._other_urls(bad)


@asynccontextmanager
async def relay(port: int) -> AsyncIterator[tuple[str, Any]]:
    """A gateway in front of the venue at `port`: its URL, and a call that kills it (its
    listener closed, every connection through it cut without a word)."""
    links: list[asyncio.StreamWriter] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65_536):
            writer.write(data)
            await writer.drain()

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
        links.extend((writer, upstream_writer))
        await asyncio.gather(
            pipe(reader, upstream_writer), pipe(upstream_reader, writer), return_exceptions=True
        )
        for end in (writer, upstream_writer):
            end.transport.abort()

    server = await asyncio.start_server(accepted, "127.0.0.1", 0)

    def kill() -> None:
        server.close()
        for writer in links:
            writer.transport.abort()

    try:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws/trade", kill
    finally:
        kill()
        await server.wait_closed()


def test_a_maker_whose_gateway_dies_resumes_on_another_and_keeps_quoting(
    run_venue: Any,
) -> None:
    """The finding (session 26): a bot took one URL, its connection's end stopped it (exit
    1), and its client had no other gateway to go to. Given others, it resumes on one with
    COD on again, quotes on, and pulls its quotes when stopped."""

    async def scenario(venue: Venue) -> None:
        async with relay(venue.port) as (primary, kill):
            maker = MarketMaker(
                primary, *KEYS["alpha"], SYMBOL, Decimal(20), Decimal(5), listed={},
                reference=Decimal("187.25"), other_urls=[venue.url()],
            )  # fmt: skip
            stop = asyncio.Event()
            running = asyncio.create_task(maker.run(stop))
            await asyncio.wait_for(maker.quoting.wait(), READY_TIMEOUT_S)
            kill()  # the gateway dies: its connections end, it refuses new ones
            for _ in range(200):  # bounded: the resume's first round, then a round of quotes
                if maker.client.resumed and maker.client.url == venue.url() and maker.requotes:
                    break
                await asyncio.sleep(0.05)
            requotes = maker.requotes
            for _ in range(100):
                if maker.requotes > requotes + 1:
                    break
                await asyncio.sleep(0.05)
            assert maker.client.url == venue.url() and maker.requotes > requotes + 1
            assert len(venue.server.venue.open_orders(ALPHA)) == 2, "quoting on the other"
            assert (await maker.client.request("session.status"))["cod"] is True
            stop.set()
            await asyncio.wait_for(running, READY_TIMEOUT_S)
            assert maker.lost is None, maker.lost
            assert not venue.server.venue.open_orders(ALPHA), "pulled on stop"

    run_venue(scenario)
