"""A real venue server on 127.0.0.1 (an ephemeral port, a temporary data dir) for e2e tests."""

import asyncio
import itertools
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from client.sdk import VenueClient
from cluster.postgres import PostgresServer
from core import config as venue_config
from gateway.server import VenueServer
from tests.sample_config import SAMPLE_CONFIG

ROOT = Path(__file__).resolve().parents[1]
KEYS = {
    "alpha": ("demo-mm-alpha", "demo-secret-mm-alpha"),
    "beta": ("demo-mm-beta", "demo-secret-mm-beta"),
    "taker": ("demo-taker", "demo-secret-taker"),
    "us": ("demo-us", "demo-secret-us"),
    "admin": ("demo-admin", "demo-secret-admin"),
}
TEST_TIMEOUT_S = 20  # every e2e test finishes well within this on a busy 2-core machine


class Venue:
    """The running server and a way to open logged-on clients to it."""

    def __init__(self, server: VenueServer, port: int) -> None:
        self.server = server
        self.port = port
        self.clients: list[VenueClient] = []

    def url(self, endpoint: str = "trade") -> str:
        return f"ws://127.0.0.1:{self.port}/ws/{endpoint}"

    async def client(self, who: str | None = None, endpoint: str = "trade") -> VenueClient:
        client = await VenueClient(self.url(endpoint)).connect()
        self.clients.append(client)
        if who is not None:
            await client.logon(*KEYS[who])
        return client


async def start_venue(data_dir: Path) -> Venue:
    config = venue_config.load(SAMPLE_CONFIG)
    server = VenueServer(config, data_dir)
    port = await server.start("127.0.0.1", 0)
    return Venue(server, port)


@pytest.fixture
def run_venue(tmp_path: Path) -> Callable[[Callable[[Venue], Awaitable[Any]]], Any]:
    """Run `scenario(venue)` against a fresh server, bounded in time, then stop it."""

    def run(scenario: Callable[[Venue], Awaitable[Any]]) -> Any:
        async def main() -> Any:
            venue = await start_venue(tmp_path / "data")
            try:
                return await asyncio.wait_for(scenario(venue), TEST_TIMEOUT_S)
            finally:
                for client in venue.clients:
                    await client.close()
                await venue.server.stop()

        return asyncio.run(main())

    return run


async def drain_pushes(client: VenueClient, wait_s: float = 0.3) -> list[dict[str, Any]]:
    """Every push that arrives within `wait_s` of the last one."""
    pushes = []
    while True:
        try:
            pushes.append(await client.next_push(wait_s))
        except TimeoutError:
            return pushes


_database_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL on a free loopback port, once per test module, stopped after it.

    Its directory is made under /tmp, not pytest's tmp_path: the server runs as the postgres
    user, who may not enter root's private pytest directories."""
    directory = Path(tempfile.mkdtemp(prefix="venue-test-pg-"))
    directory.chmod(0o711)
    server = PostgresServer(directory)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def stopped_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of the test's own, initialised and stopped (its `port` the last one it
    ran on), for a test that starts it as it needs; stopped and removed after."""
    directory = Path(tempfile.mkdtemp(prefix="venue-test-pg-"))
    directory.chmod(0o711)
    server = PostgresServer(directory)
    try:
        server.start()
        server.stop()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the module's server, dropped after the test (so the
    server's stop has little to checkpoint)."""
    name = f"test_{next(_database_numbers)}"
    yield postgres_server.create_database(name)
    postgres_server.drop_database(name)
