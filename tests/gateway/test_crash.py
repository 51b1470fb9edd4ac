"""Crashes: SIGKILL the server at random moments under load; nothing acknowledged is lost.

Real processes: the server (`venue serve`) and a load client (`crash_client.py`) that logs
every acknowledgement and fill it receives. After `VENUE_CRASH_CYCLES` kills (10 by
default), the data directory must hold every acknowledged order and every received fill
exactly once, `venue verify` must pass (snapshot + journal equal a replay from zero; the
ledger store matches), and a client resuming with `since_seq` gets exactly what it missed.
"""

import asyncio
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client.sdk import VenueClient
from core import config as venue_config
from core.journal import FileJournal
from core.sequencer import decode_command
from core.verify import verify
from engine.commands import PlaceOrder
from engine.enums import Side
from engine.events import OrderAccepted, TradeExecuted
from engine.units import parse_units
from engine.venue import Venue, VenueConfig
from gateway.server import JOURNAL_FILE, VenueServer
from settlement.ledger import Ledger
from tests.conftest import KEYS, ROOT, drain_pushes, next_push_not_heartbeat, start_venue
from tests.conftest import Venue as RunningVenue
from tests.gateway.test_restart import QUOTE
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
            missed = [
                await next_push_not_heartbeat(client, 2) for _ in range(stream.seq - last_seen)
            ]
            assert [m["seq"] for m in missed] == list(range(last_seen + 1, stream.seq + 1))
            assert venue.server.venue.state_hash() == replayed_hash
            await client.close()
        finally:
            await venue.server.stop()

    asyncio.run(resume())
    after_catch_up = verify(data_dir, venue_config.load(SAMPLE_CONFIG))
    assert all(line.startswith("ok") for line in after_catch_up), after_catch_up


def test_a_kill_cancels_at_the_restart_the_orders_placed_with_cod_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGKILL: no connection's cancel-on-disconnect ran. The restart cancels, before anyone
    can trade, every open order placed with cod on (an order's, a batch's, a quote.mass's),
    reason cod, reported on the account stream; those placed with cod off stay open."""
    data_dir = tmp_path / "data"
    port = free_port()
    server = start_server(data_dir, port)

    async def scenario() -> None:
        url = f"ws://127.0.0.1:{port}/ws/trade"
        maker, plain = await VenueClient(url).connect(), await VenueClient(url).connect()
        try:
            await maker.logon(*KEYS["alpha"])
            await plain.logon(*KEYS["beta"])
            await maker.subscribe_account()
            before = (await next_push_not_heartbeat(maker))["seq"]
            await maker.request("session.cod", {"enabled": True})
            marked = [(await maker.place(SYMBOL_OF, "buy", "1", "186.00"))["order_id"]]
            places = [
                {"method": "order.place", "params": _plain_place("buy", price)}
                for price in ("185.50", "185.60")
            ]
            amend = {"method": "order.amend", "params": {"order_id": marked[0], "qty": "2"}}
            for ops in (places, [*places, amend]):  # places alone; any batch (amend, cancel)
                batch = await maker.request("order.batch", {"ops": ops})
                marked += [r["result"]["order_id"] for r in batch["results"][:2]]
            quotes = await maker.request("quote.mass", {"quote_set": "mm1", "quotes": [QUOTE]})
            marked += [r["result"]["order_id"] for r in quotes["results"]]
            kept = (await plain.place(SYMBOL_OF, "sell", "1", "188.00"))["order_id"]
        finally:
            server.send_signal(signal.SIGKILL)  # acknowledged: the orders are in the journal
            server.wait(10)
        await maker.close()
        await plain.close()
        with caplog.at_level(logging.INFO, logger="venue"):
            venue = await start_venue(data_dir)
        try:
            alpha, beta = await venue.client("alpha"), await venue.client("beta")
            assert (await alpha.open_orders())["orders"] == []
            for order_id in marked:
                status = await alpha.order_status(order_id)
                assert (status["status"], status["reason"]) == ("canceled", "cod")
            await alpha.subscribe_account(since_seq=before)
            canceled = [
                p["data"]
                for p in await drain_pushes(alpha)
                if p["type"] == "exec" and p["data"]["exec_type"] == "canceled"
            ]
            assert [(c["order_id"], c["reason"]) for c in canceled] == [
                (order_id, "cod") for order_id in sorted(marked)
            ]
            assert [o["order_id"] for o in (await beta.open_orders())["orders"]] == [kept]
            (line,) = [r for r in caplog.records if "after an unclean stop" in r.getMessage()]
            assert line.levelno == logging.INFO and line.__dict__["canceled"] == len(marked)
            await requote_after_the_kill(venue, marked[-2:])
        finally:
            await venue.server.stop()

    asyncio.run(scenario())


def _plain_place(side: str, price: str) -> dict[str, str]:
    limit = {"type": "limit", "tif": "gtc"}
    return limit | {"symbol": SYMBOL_OF, "side": side, "qty": "1", "price": price}


async def requote_after_the_kill(venue: RunningVenue, canceled_quotes: list[int]) -> None:
    """The set's quotes were canceled: its next quote.mass places new ones."""
    maker = await venue.client("alpha")
    await maker.request("session.cod", {"enabled": True})
    placed = await maker.request("quote.mass", {"quote_set": "mm1", "quotes": [QUOTE]})
    new = [r["result"]["order_id"] for r in placed["results"]]
    assert len(new) == 2 and not set(new) & set(canceled_quotes)
    assert {o["order_id"] for o in (await maker.open_orders())["orders"]} == set(new)
    await maker.close()


def test_a_kill_cancels_what_a_clean_close_cancels_once_cod_is_turned_on_after_the_place(
    tmp_path: Path,
) -> None:
    """An order placed with cod off, still open when its connection turns cod on, is
    canceled by that connection's clean close; a kill -9 closes no connection, and the
    restart cancels it all the same (`SetCancelOnDisconnect` marked it, journaled), reason
    cod, on the account stream. An order placed on another connection with cod off stays."""
    data_dir = tmp_path / "data"
    port = free_port()
    server = start_server(data_dir, port)

    async def scenario() -> None:
        url = f"ws://127.0.0.1:{port}/ws/trade"
        alpha, other = await VenueClient(url).connect(), await VenueClient(url).connect()
        try:
            await alpha.logon(*KEYS["alpha"])
            await other.logon(*KEYS["alpha"])
            await alpha.subscribe_account()
            before = (await next_push_not_heartbeat(alpha))["seq"]
            placed = (await alpha.place(SYMBOL_OF, "buy", "1", "186.00"))["order_id"]
            assert await alpha.request("session.cod", {"enabled": True}) == {"enabled": True}
            kept = (await other.place(SYMBOL_OF, "buy", "1", "185.00"))["order_id"]
        finally:
            server.send_signal(signal.SIGKILL)  # acknowledged: in the journal, and cod on too
            server.wait(10)
        await alpha.close()
        await other.close()

        venue = await start_venue(data_dir)
        try:
            watcher = await venue.client("alpha")
            assert [o["order_id"] for o in (await watcher.open_orders())["orders"]] == [kept]
            status = await watcher.order_status(placed)
            assert (status["status"], status["reason"]) == ("canceled", "cod")
            await watcher.subscribe_account(since_seq=before)
            canceled = [
                (p["data"]["order_id"], p["data"]["reason"])
                for p in await drain_pushes(watcher)
                if p["type"] == "exec" and p["data"]["exec_type"] == "canceled"
            ]
            assert canceled == [(placed, "cod")]
        finally:
            await venue.server.stop()

    asyncio.run(scenario())


def test_a_clean_stop_and_a_kill_after_it_keep_what_cod_turned_off_left_open(
    tmp_path: Path,
) -> None:
    """An order placed with cod on by a connection that then turned cod off outlives the
    connection and a clean stop, as ever; turning cod off took its mark away
    (`SetCancelOnDisconnect`), so a kill of the next run (an unclean stop) keeps it open
    too: the crash path and the clean path agree."""
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        first = await start_venue(data_dir)
        alpha = await first.client("alpha")
        await alpha.request("session.cod", {"enabled": True})
        unmarked = (await alpha.place(SYMBOL_OF, "buy", "1", "186.00"))["order_id"]
        await alpha.request("session.cod", {"enabled": False})
        plain = (await alpha.place(SYMBOL_OF, "buy", "1", "185.00"))["order_id"]
        await alpha.close()
        await first.server.stop()  # clean

        port = free_port()
        server = start_server(data_dir, port)
        try:
            alpha = await VenueClient(f"ws://127.0.0.1:{port}/ws/trade").connect()
            await alpha.logon(*KEYS["alpha"])
            orders = (await alpha.open_orders())["orders"]
            assert [o["order_id"] for o in orders] == [unmarked, plain], "the clean stop kept both"
        finally:
            server.send_signal(signal.SIGKILL)
            server.wait(10)
        await alpha.close()

        venue = await start_venue(data_dir)
        try:
            alpha = await venue.client("alpha")
            orders = (await alpha.open_orders())["orders"]
            assert [o["order_id"] for o in orders] == [unmarked, plain], "the kill kept both"
        finally:
            await venue.server.stop()

    asyncio.run(scenario())


def place_marked_as_an_earlier_build_left_it(venue: RunningVenue, price: str) -> None:
    """An open order marked cod on no open connection: what a journal of a build before
    `SetCancelOnDisconnect` holds when a connection turned cod off after placing it (its
    clean close kept the order, and its mark)."""
    server = venue.server
    spec = server.venue.markets[SYMBOL_OF].spec
    place = PlaceOrder(
        ts_us=server.dispatcher.stamp_us(),
        account=1,
        symbol=SYMBOL_OF,
        side=Side.BUY,
        price=parse_units(price, spec.price_decimals),
        qty=parse_units("1", spec.qty_decimals),
        cod=True,
    )
    server.bus.submit(place, None)


SYMBOL_OF = "AAPLx-USD"


def test_a_start_that_cannot_listen_leaves_the_last_clean_stop_standing(tmp_path: Path) -> None:
    """A start after a clean stop takes the stop's mark away before it listens; when it then
    cannot listen (the port taken), it accepted nothing: it stops as a clean stop, so the next
    start must not take that clean stop for a crash and cancel what cod had left open."""
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        first = await start_venue(data_dir)
        place_marked_as_an_earlier_build_left_it(first, "186.00")  # kept by a clean stop
        await first.server.stop()  # clean

        server = VenueServer(venue_config.load(SAMPLE_CONFIG), data_dir)
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            with pytest.raises(OSError):
                await server.start("127.0.0.1", taken.getsockname()[1])
        # the failed start stopped its core itself, as a clean stop (gateway.server)

        venue = await start_venue(data_dir)
        try:
            assert venue.server.venue.cod_order_ids() != [], "marked, and still open"
            alpha = await venue.client("alpha")
            assert len((await alpha.open_orders())["orders"]) == 1
        finally:
            await venue.server.stop()

    asyncio.run(scenario())


DMS_TIMEOUT_MS = 3_000  # the switch of the kill test: armed well past the kill


def test_a_dead_mans_switch_survives_a_kill_in_the_journal_and_fires_at_its_deadline(
    tmp_path: Path,
) -> None:
    """Armed and acknowledged, then SIGKILL: the switch is in the journal (no file of the
    gateway's holds it), and the restarted venue fires it at its deadline by its clock
    alone: the account's orders canceled with reason dms, nobody asking."""
    data_dir = tmp_path / "data"
    port = free_port()
    server = start_server(data_dir, port)

    async def scenario() -> None:
        alpha = await VenueClient(f"ws://127.0.0.1:{port}/ws/trade").connect()
        try:
            await alpha.logon(*KEYS["alpha"])
            placed = (await alpha.place(SYMBOL_OF, "buy", "1", "186.00"))["order_id"]
            armed = await alpha.request("orders.cancel_after", {"timeout_ms": DMS_TIMEOUT_MS})
            assert armed == {"timeout_ms": DMS_TIMEOUT_MS, "armed": True}
        finally:
            server.send_signal(signal.SIGKILL)  # acknowledged: the switch is in the journal
            server.wait(10)
        await alpha.close()
        assert not (data_dir / "dead_man.json").exists()
        *_, replayed = replay(data_dir)
        (deadline_us,) = replayed.dead_man_deadlines.values()
        assert list(replayed.dead_man_deadlines) == [1] and replayed.orders[placed].account == 1

        venue = await start_venue(data_dir)
        try:
            watcher = await venue.client("alpha")
            gave_up = time.monotonic() + DMS_TIMEOUT_MS / 1_000 + 5
            while (await watcher.open_orders())["orders"]:
                assert time.monotonic() < gave_up, "the order outlived the switch"
                await asyncio.sleep(0.05)
            status = await watcher.order_status(placed)
            assert (status["status"], status["reason"]) == ("canceled", "dms")
            assert venue.server.venue.dead_man_deadlines == {}, "spent"
            assert venue.server.venue.ts_us >= deadline_us
        finally:
            await venue.server.stop()

    asyncio.run(scenario())
