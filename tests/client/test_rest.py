"""client.rest against a real venue on 127.0.0.1: keep-alive, the idle close, signing."""

import asyncio

import pytest

from client.rest import RestClient
from gateway import http
from tests.conftest import KEYS, Venue
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
