"""Crashes: SIGKILL the server at random moments under load; nothing acknowledged is lost.

Real processes: the server (`venue serve`) and a load client (`crash_client.py`) that logs
every acknowledgement and fill it receives. After `VENUE_CRASH_CYCLES` kills (10 by
default), the data directory must hold every acknowledged order and every received fill
exactly once, `venue verify` must pass (snapshot + journal equal a replay from zero; the
ledger store matches), and a client resuming with `since_seq` gets exactly what it missed.
"""

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from client.sdk import VenueClient
from core import config as venue_config
from core.journal import FileJournal
from core.sequencer import decode_command
from core.verify import verify
from engine.events import OrderAccepted, TradeExecuted
from engine.venue import Venue, VenueConfig
from gateway.server import JOURNAL_FILE
from settlement.ledger import Ledger
from tests.conftest import KEYS, ROOT, start_venue
from tests.gateway.test_restart import QUOTE, requote_and_pull
from tests.sample_config import SAMPLE_CONFIG

CYCLES = int(os.environ.get("VENUE_CRASH_CYCLES", "10"))
START_TIMEOUT_S = 20  # a restart replays the journal: seconds at most at this size
RUN_S = (0.3, 1.2)  # how long the load runs before each kill


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_growth(log_path: Path, client: subprocess.Popen[bytes]) -> None:
    """Until the client has logged something more this cycle (bounded): the load is on
    before the random run time starts, however slowly the processes started."""
    size = log_path.stat().st_size if log_path.exists() else 0
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and client.poll() is None:
        if log_path.exists() and log_path.stat().st_size > size:
            return
        time.sleep(0.02)


def start_server(data_dir: Path, port: int) -> subprocess.Popen[str]:
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "serve",
            "--config",
            str(SAMPLE_CONFIG),
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    assert server.stdout is not None
    while time.monotonic() < deadline:
        line = server.stdout.readline()
        if "listening" in line:
            return server
        if not line and server.poll() is not None:
            break
    server.kill()
    raise AssertionError(f"the server did not start: {server.stdout.read()}")


def replay(data_dir: Path) -> tuple[set[int], set[tuple[str, int]], Venue]:
    config = venue_config.load(SAMPLE_CONFIG)
    staleness = venue_config.reserve_staleness_max_us(config)
    venue = Venue(VenueConfig(reserve_staleness_max_us=staleness), Ledger())
    accepted: set[int] = set()
    trades: set[tuple[str, int]] = set()
    journal = FileJournal(data_dir / JOURNAL_FILE)
    for _, payload in journal.replay():
        for event in venue.execute(decode_command(payload)):
            if isinstance(event, OrderAccepted):
                accepted.add(event.order_id)
            elif isinstance(event, TradeExecuted):
                trades.add((event.symbol, event.trade_id))
    journal.close()
    return accepted, trades, venue


def test_nothing_acknowledged_is_lost_across_kills(tmp_path: Path) -> None:
    data_dir, log_path = tmp_path / "data", tmp_path / "client.jsonl"
    rng = random.Random(11)
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    for cycle in range(CYCLES):
        port = free_port()
        server = start_server(data_dir, port)
        client = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.gateway.crash_client",
                f"ws://127.0.0.1:{port}/ws/trade",
                str(log_path),
                str(cycle),
            ],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_growth(log_path, client)  # a loaded machine starts the client slowly
        time.sleep(rng.uniform(*RUN_S))
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        client.kill()
        client.wait(10)

    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    acks = [line for line in lines if line["kind"] == "ack"]
    fills = [line for line in lines if line["kind"] == "fill"]
    assert len(acks) > 5 * CYCLES, "the load should have been acknowledged many times"
    assert len(fills) > CYCLES, "and it should have traded"
    accepted, trades, venue = replay(data_dir)
    missing = [a["order_id"] for a in acks if a["order_id"] not in accepted]
    assert not missing, f"acknowledged orders lost: {missing[:10]}"
    received = [(SYMBOL_OF, f["trade_id"], f["account"]) for f in fills]
    assert len(received) == len(set(received)), "a fill was delivered twice"
    lost = [f for f in fills if (SYMBOL_OF, f["trade_id"]) not in trades]
    assert not lost, f"fills received but not in the journal: {lost[:5]}"
    venue.check_invariants()  # every asset sums to zero, holds equal reservations
    report = verify(data_dir, venue_config.load(SAMPLE_CONFIG))
    failed = [line for line in report if line.startswith("FAIL")]
    assert not failed or all("catches up" in line for line in failed), report

    replayed_hash = venue.state_hash()
    last_seen = max(x["seq"] for x in lines if x.get("account") == "alpha" and "seq" in x)

    async def resume() -> None:
        venue = await start_venue(data_dir)
        try:
            client = await venue.client("alpha")
            await client.subscribe_account(since_seq=last_seen)
            stream = venue.server.private[1]
            missed = [await client.next_push(2) for _ in range(stream.seq - last_seen)]
            assert [m["seq"] for m in missed] == list(range(last_seen + 1, stream.seq + 1))
            assert venue.server.venue.state_hash() == replayed_hash
            await client.close()
        finally:
            await venue.server.stop()

    asyncio.run(resume())
    after_catch_up = verify(data_dir, venue_config.load(SAMPLE_CONFIG))
    assert all(line.startswith("ok") for line in after_catch_up), after_catch_up


def test_a_quote_set_is_requoted_after_a_kill(tmp_path: Path) -> None:
    """SIGKILL while the maker is connected with cod on: no cancel-on-disconnect ran, so its
    quotes are open after the restart, and its next quote.mass of the set amends them (no
    second set of quotes beside them); cancel_all by quote set pulls them."""
    data_dir = tmp_path / "data"
    port = free_port()
    server = start_server(data_dir, port)

    async def scenario() -> None:
        maker = await VenueClient(f"ws://127.0.0.1:{port}/ws/trade").connect()
        try:
            await maker.logon(*KEYS["alpha"])
            await maker.request("session.cod", {"enabled": True})
            placed = await maker.request("quote.mass", {"quote_set": "mm1", "quotes": [QUOTE]})
        finally:
            server.send_signal(signal.SIGKILL)  # acknowledged: the quotes are in the journal
            server.wait(10)
        await maker.close()
        venue = await start_venue(data_dir)
        try:
            await requote_and_pull(venue, [r["result"]["order_id"] for r in placed["results"]])
        finally:
            await venue.server.stop()

    asyncio.run(scenario())


SYMBOL_OF = "AAPLx-USD"
