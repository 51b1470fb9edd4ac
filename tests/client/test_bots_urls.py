"""A bot given several gateways (`--url` repeated): it starts on the first that answers,
and resumes on another when dropped.

A real venue in-process on 127.0.0.1; the primary gateway is a relay in front of it (plain
asyncio, bytes both ways, tests/client/test_sdk_resume.py), which the test takes down as a
gateway dies, or which drops the link at the logon.
"""

import argparse
import asyncio
import socket
from decimal import Decimal
from typing import Any

import pytest
from websockets.protocol import State

from cli.failures import CommandFailed
from client import bots
from client.bots import MarketMaker, Taker
from tests.client.test_sdk_resume import refusing_servers, relay, until
from tests.conftest import KEYS, TEST_TIMEOUT_S, Venue

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


def test_a_maker_whose_gateway_dies_resumes_on_another_and_keeps_quoting(
    run_venue: Any,
) -> None:
    """The finding (session 26): a bot took one URL, its connection's end stopped it (exit
    1), and its client had no other gateway to go to. Given others, it resumes on one with
    COD on again, quotes on, and pulls its quotes when stopped."""

    async def scenario(venue: Venue) -> None:
        async with relay(venue.port) as path:
            maker = MarketMaker(
                path.url, *KEYS["alpha"], SYMBOL, Decimal(20), Decimal(5), listed={},
                reference=Decimal("187.25"), other_urls=[venue.url()],
            )  # fmt: skip
            stop = asyncio.Event()
            running = asyncio.create_task(maker.run(stop))
            await asyncio.wait_for(maker.quoting.wait(), READY_TIMEOUT_S)
            path.kill()  # the gateway dies: its connections end, it refuses new ones
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


def _unreachable_url() -> str:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        return f"ws://127.0.0.1:{probe.getsockname()[1]}/ws/trade"


@pytest.mark.parametrize("first", ["down", "dropped at the logon"])
def test_a_bot_starts_on_the_next_gateway_when_the_first_fails_it(
    run_venue: Any, first: str
) -> None:
    """The finding (session 26's review): a bot given several `--url` connected to the
    first only, so one down stopped it at once (exit 1), and so did a drop during its
    setup (the logon, the subscriptions). It tries each in turn, within the resume's
    budget, until one answers and stays up through the setup."""

    async def scenario(venue: Venue) -> None:
        async with relay(venue.port, cut_at_logon={0}) as path:
            primary = _unreachable_url() if first == "down" else path.url
            maker = MarketMaker(
                primary, *KEYS["alpha"], SYMBOL, Decimal(20), Decimal(5), listed={},
                reference=Decimal("187.25"), other_urls=[venue.url()],
            )  # fmt: skip
            stop = asyncio.Event()
            running = asyncio.create_task(maker.run(stop))
            quoting = asyncio.create_task(maker.quoting.wait())
            await asyncio.wait(
                (running, quoting), timeout=READY_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
            )
            assert maker.quoting.is_set(), f"not quoting: {maker.lost or running}"
            assert maker.client.url == venue.url()
            assert (await maker.client.request("session.status"))["cod"] is True
            stop.set()
            await asyncio.wait_for(running, READY_TIMEOUT_S)
            assert maker.lost is None, maker.lost

    run_venue(scenario)


def test_a_bot_asked_to_stop_while_its_client_resumes_stops_at_once(run_venue: Any) -> None:
    """The finding (session 26's review): a Ctrl-C or the end of --seconds while the bot
    waited for its client's resume (up to 30 s) cut it short after STOP_GRACE_S, "still
    waiting for the venue", exit 1. It stops as asked, its close ending the resume."""

    async def scenario(venue: Venue) -> None:
        async with refusing_servers(1) as (others, _):
            maker = MarketMaker(
                venue.url(), *KEYS["alpha"], SYMBOL, Decimal(20), Decimal(5), listed={},
                reference=Decimal("187.25"), other_urls=others,
            )  # fmt: skip
            stop = asyncio.Event()
            running = asyncio.create_task(bots._run_until_stopped(maker.run(stop), stop))
            await asyncio.wait_for(maker.quoting.wait(), READY_TIMEOUT_S)
            assert venue.server._server is not None
            venue.server._server.closing = True  # every try refused: the resume goes on
            session = next(s for s in venue.server.sessions.values() if s.account == ALPHA)
            session.websocket.transport.abort()
            await asyncio.sleep(1.0)  # five rounds' intervals: the bot waits for the resume
            stop.set()
            assert await asyncio.wait_for(running, 2 * bots.STOP_GRACE_S), "cut short"
            assert maker.lost is None, maker.lost
            assert maker.client.websocket is not None
            assert not maker.client.auto_resume or not await maker.client.wait_resumed()
            venue.server._server.closing = False

    run_venue(scenario)


@pytest.mark.parametrize("kind", ["market maker", "taker"])
def test_a_bot_asked_to_stop_while_it_starts_stops_at_once(kind: str) -> None:
    """The finding (session 26's second review): a bot's start (connect_any, its rounds
    over every gateway for up to 30 s) did not watch `stop`, so a Ctrl-C or the end of
    --seconds then was cut short after STOP_GRACE_S, "still waiting for the venue", exit 1.
    It stops as asked, its start cancelled, nothing left open; since session 32 it says it
    never traded (exit 1: a run that never reached the venue is no success), not that it was
    cut short waiting."""

    async def scenario() -> None:
        async with refusing_servers(2) as (urls, hits):
            bot: MarketMaker | Taker
            if kind == "taker":
                bot = Taker(urls[0], *KEYS["taker"], [SYMBOL], 1.0, other_urls=urls[1:])
            else:
                bot = MarketMaker(
                    urls[0], *KEYS["alpha"], SYMBOL, Decimal(20), Decimal(5), listed={},
                    reference=Decimal("187.25"), other_urls=urls[1:],
                )  # fmt: skip
            stop = asyncio.Event()
            running = asyncio.create_task(bots._run_until_stopped(bot.run(stop), stop))
            assert await until(lambda: hits[1] >= 2), "not trying every gateway in rounds"
            stop.set()
            assert await asyncio.wait_for(running, 2 * bots.STOP_GRACE_S), "cut short"
            assert bot.lost is not None and "never traded" in bot.lost, bot.lost
            assert "still waiting" not in bot.lost, bot.lost
            websocket = bot.client.websocket
            assert websocket is None or websocket.state is State.CLOSED

    asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))
