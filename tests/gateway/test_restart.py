"""Restarts: the venue comes back as it was, from a snapshot plus the journal after it."""

import asyncio
import errno
import http.client
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from core import config as venue_config
from core import snapshots
from core.venue_core import CLEAN_STOP_FILE, EPOCHS_FILE, lock_data_dir
from gateway.auth import sign_logon, sign_request
from gateway.server import VenueServer
from tests.conftest import KEYS, Venue, drain_pushes, next_push_not_heartbeat, start_venue
from tests.sample_config import SAMPLE_CONFIG

SYMBOL = "AAPLx-USD"


async def trade(data_dir: Path, rounds: int) -> tuple[str, int, list[dict[str, str]]]:
    venue = await start_venue(data_dir)
    alpha = await venue.client("alpha")
    taker = await venue.client("taker")
    for i in range(rounds):
        await alpha.place(SYMBOL, "sell", "0.3", f"187.{30 + i:02d}")
        await taker.place(SYMBOL, "buy", "0.1", f"187.{30 + i:02d}", tif="ioc")
    await alpha.subscribe_account()
    seq = (await next_push_not_heartbeat(alpha))["seq"]
    orders = (await alpha.open_orders())["orders"]
    state = venue.server.venue.state_hash()
    await alpha.close()
    await taker.close()
    await venue.server.stop()
    return state, seq, orders


def test_clean_restart_restores_state_and_private_history(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        state, seq, orders_before = await trade(data_dir, rounds=5)
        assert snapshots.latest(data_dir) is not None, "a clean stop writes a snapshot"
        venue = await start_venue(data_dir)
        try:
            assert venue.server.venue.state_hash() == state
            client = await venue.client("alpha")
            await client.subscribe_account(since_seq=seq - 4)
            replayed = [await next_push_not_heartbeat(client) for _ in range(4)]
            assert [p["seq"] for p in replayed] == list(range(seq - 3, seq + 1))
            assert (await client.open_orders())["orders"] == orders_before
            await client.close()
        finally:
            await venue.server.stop()

    asyncio.run(scenario())


def test_restart_without_a_snapshot_replays_the_whole_journal(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        state, _, _ = await trade(data_dir, rounds=3)
        for path in data_dir.glob("snapshot-*.bin"):
            path.unlink()  # as if the process had died before writing any
        venue = await start_venue(data_dir)
        try:
            assert venue.server.venue.state_hash() == state
            assert KEYS  # the same keys log on again
            client = await venue.client("taker")
            balances = {b["asset"]: b["total"] for b in (await client.balances())["balances"]}
            assert balances["AAPLx"] == "20000.300000"
            await client.close()
        finally:
            await venue.server.stop()

    asyncio.run(scenario())


def test_a_start_whose_listen_fails_stops_the_core_it_started(tmp_path: Path) -> None:
    """The finding: a port taken between `venue serve`'s check and the bind failed the start
    after the core had started, and nothing stopped it: the journal stayed open, the data
    directory locked (a start after it, in the same process, was refused: venue.lock open),
    no snapshot and no clean-stop mark (the next start took it for a crash). The core is
    stopped as a clean stop does now, and the listen's error is the one raised."""
    data_dir = tmp_path / "data"
    with socket.socket() as taken:  # another process's listener, on the port asked for
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = VenueServer(venue_config.load(SAMPLE_CONFIG), data_dir)
        with pytest.raises(OSError) as failed:
            asyncio.run(server.start("127.0.0.1", taken.getsockname()[1]))
    assert failed.value.errno == errno.EADDRINUSE
    lock_data_dir(data_dir).close()  # let go (flocks of one process's two opens conflict)
    assert (data_dir / CLEAN_STOP_FILE).exists()
    assert snapshots.latest(data_dir) is not None, "stopped as a clean stop does"
    assert len(json.loads((data_dir / EPOCHS_FILE).read_bytes())) == 1  # built under it: kept

    async def restart() -> None:
        venue = await start_venue(data_dir)
        try:
            assert venue.server.core.sequencer.last_seq > 0  # the venue built by the first
        finally:
            await venue.server.stop()

    asyncio.run(restart())


def test_a_restart_whose_listen_fails_leaves_epochs_json_as_it_found_it(tmp_path: Path) -> None:
    """The finding (session 29's closing note, carried): a restart refused at its listen (the
    port taken since `venue serve` checked it) left its epoch in `epochs.json`, though it
    journaled nothing under it and never served. It is taken back now (before the stop lets
    the directory go); a start that journaled commands keeps it (the test above: a venue
    built from the config, whose records were executed under that epoch)."""
    data_dir = tmp_path / "data"

    async def start_and_stop() -> None:
        venue = await start_venue(data_dir)
        await venue.server.stop()

    asyncio.run(start_and_stop())
    before = (data_dir / EPOCHS_FILE).read_bytes()
    with socket.socket() as taken:  # another process's listener, on the port asked for
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = VenueServer(venue_config.load(SAMPLE_CONFIG), data_dir)
        with pytest.raises(OSError):
            asyncio.run(server.start("127.0.0.1", taken.getsockname()[1]))
    assert server.core.sequencer.last_seq > 0  # a restart: it recovered, then was refused
    assert (data_dir / EPOCHS_FILE).read_bytes() == before
    assert len(json.loads(before)) == 1  # the first start's entry alone


def test_a_corrupt_journal_refuses_to_start_and_says_where(tmp_path: Path) -> None:
    import subprocess
    import sys

    from gateway.server import JOURNAL_FILE
    from tests.conftest import ROOT

    data_dir = tmp_path / "data"
    asyncio.run(trade(data_dir, rounds=2))
    for path in data_dir.glob("snapshot-*.bin"):
        path.unlink()
    journal = data_dir / JOURNAL_FILE
    damaged = bytearray(journal.read_bytes())
    damaged[40] ^= 0xFF  # inside the first record, far from the tail
    journal.write_bytes(bytes(damaged))
    result = subprocess.run(
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
            "0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2  # cli.failures: one line, exit 2
    assert "cannot start" in result.stderr and str(journal) in result.stderr
    assert "byte" in result.stderr


def test_recovery_from_a_snapshot_then_a_tail_that_trades_older_orders(tmp_path: Path) -> None:
    """A crash after a periodic snapshot: the tail fills an order that rested before it."""
    import shutil

    data_dir, crashed = tmp_path / "data", tmp_path / "crashed"

    async def scenario() -> None:
        venue = await start_venue(data_dir)
        alpha = await venue.client("alpha")
        taker = await venue.client("taker")
        await alpha.place(SYMBOL, "sell", "1", "187.30")
        await venue.server.snapshot()  # what the periodic task does
        await taker.place(SYMBOL, "buy", "1", "187.30", tif="ioc")  # in the tail only
        await venue.server.sequencer.drain()
        shutil.copytree(data_dir, crashed)  # the files as a SIGKILL would leave them
        state = venue.server.venue.state_hash()
        await alpha.close()
        await taker.close()
        await venue.server.stop()
        restarted = await start_venue(crashed)
        try:
            assert restarted.server.venue.state_hash() == state
        finally:
            await restarted.server.stop()

    asyncio.run(scenario())


def test_a_recovery_under_another_push_format_answers_old_seqs_with_a_snapshot(
    tmp_path: Path,
) -> None:
    """Seqs of pushes rebuilt from the journal under another push format (here: as if an
    older version, one balance push per change, had first sent them) differ from those a
    client saw: a `since_seq` among them gets a snapshot, never a replay that would skip
    events; seqs sent after the recovery replay again."""
    import json
    import shutil

    from gateway.private_streams import PUSH_FORMAT, PUSH_FORMATS_FILE

    data_dir, older, same = tmp_path / "data", tmp_path / "older", tmp_path / "same"

    async def resumed(directory: Path, since_seq: int) -> list[tuple[str, int]]:
        """The first push after `since_seq`, then after a push of this start's."""
        venue = await start_venue(directory)
        try:
            alpha = await venue.client("alpha")
            await alpha.subscribe_account(since_seq=since_seq)
            first = await next_push_not_heartbeat(alpha)
            seen = [(first["type"], first["seq"])]
            await alpha.place(SYMBOL, "sell", "0.1", "199.00")  # exec new, then its balance
            while (push := await next_push_not_heartbeat(alpha))["type"] != "exec":
                pass
            await alpha.close()
            again = await venue.client("alpha")
            await again.subscribe_account(since_seq=push["seq"])
            replayed = await next_push_not_heartbeat(again)  # the balance after it, replayed
            seen.append((replayed["type"], replayed["seq"] - push["seq"]))
            await again.close()
            return seen
        finally:
            await venue.server.stop()

    async def scenario() -> None:
        venue = await start_venue(data_dir)
        alpha = await venue.client("alpha")
        taker = await venue.client("taker")
        for price in ("187.30", "187.31", "187.32"):
            await alpha.place(SYMBOL, "sell", "0.1", price)
        await taker.place(SYMBOL, "buy", "0.3", "187.32", tif="ioc")  # sweeps all three
        await alpha.subscribe_account()
        head = (await next_push_not_heartbeat(alpha))["seq"]
        await venue.server.sequencer.drain()
        for copy in (older, same):
            shutil.copytree(data_dir, copy)  # the files as a SIGKILL would leave them
            for path in copy.glob("snapshot-*.bin"):
                path.unlink()  # no snapshot yet: the whole journal is replayed
        await alpha.close()
        await taker.close()
        await venue.server.stop()
        assert json.loads((same / PUSH_FORMATS_FILE).read_text()) == [[1, PUSH_FORMAT]]
        (older / PUSH_FORMATS_FILE).write_text(json.dumps([[1, PUSH_FORMAT - 1]]))
        assert await resumed(same, head - 2) == [("balance", head - 1), ("balance", 1)]
        assert await resumed(older, head - 2) == [("snapshot", head), ("balance", 1)]

    asyncio.run(scenario())


QUOTE = {"symbol": SYMBOL, "bid_px": "187.00", "bid_qty": "1", "ask_px": "187.50", "ask_qty": "1"}
REQUOTE = QUOTE | {"bid_qty": "2", "ask_px": "187.60"}  # the bid grows, the ask moves


async def quote_and_leave(data_dir: Path) -> tuple[list[int], int, list[dict[str, Any]]]:
    """A maker quotes set mm1 and leaves them quoted (cod off again: the quotes outlive the
    connection, as a crash leaves them); the server stops. Its quotes' ids (bid, ask), the
    account seq before them and the pushes they made."""
    venue = await start_venue(data_dir)
    maker = await venue.client("alpha")
    await maker.subscribe_account()
    before = (await next_push_not_heartbeat(maker))["seq"]
    await maker.request("session.cod", {"enabled": True})
    placed = await maker.request("quote.mass", {"quote_set": "mm1", "quotes": [QUOTE]})
    pushes = await drain_pushes(maker)
    await maker.request("session.cod", {"enabled": False})
    await maker.close()
    await venue.server.stop()
    return [r["result"]["order_id"] for r in placed["results"]], before, pushes


async def requote_and_pull(venue: Venue, quotes: list[int]) -> None:
    """After the restart the maker's next quote.mass amends the same two orders (no second
    set of quotes), and cancel_all by quote set pulls them."""
    maker = await venue.client("alpha")
    await maker.request("session.cod", {"enabled": True})
    requoted = await maker.request("quote.mass", {"quote_set": "mm1", "quotes": [REQUOTE]})
    assert [r["result"]["order_id"] for r in requoted["results"]] == quotes
    orders = (await maker.open_orders())["orders"]
    assert [(o["order_id"], o["price"], o["leaves_qty"]) for o in orders] == [
        (quotes[0], "187.00", "2.000000"),
        (quotes[1], "187.60", "1.000000"),
    ]
    assert await maker.request("orders.cancel_all", {"quote_set": "mm1"}) == {"canceled": 2}
    assert (await maker.open_orders())["orders"] == []
    await maker.close()


def test_a_quote_set_is_requoted_after_a_clean_restart(tmp_path: Path) -> None:
    """From the snapshot the stop wrote: the quotes are the set's, and their fills say so."""
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        quotes, _, _ = await quote_and_leave(data_dir)
        venue = await start_venue(data_dir)
        try:
            maker = await venue.client("alpha")
            await maker.subscribe_account()
            await next_push_not_heartbeat(maker)  # the snapshot
            taker = await venue.client("taker")
            await taker.place(SYMBOL, "sell", "0.4", "187.00", tif="ioc")
            fill = next(p for p in await drain_pushes(maker) if p["type"] == "exec")
            assert (fill["data"]["exec_type"], fill["data"]["quote_set"]) == ("trade", "mm1")
            await taker.close()
            await maker.close()
            await requote_and_pull(venue, quotes)
        finally:
            await venue.server.stop()

    asyncio.run(scenario())


def test_a_quote_set_is_requoted_after_a_replay_of_the_journal(tmp_path: Path) -> None:
    """No snapshot (as after a crash before the first): the journal alone gives the quotes
    back, and the pushes rebuilt from it are those first sent, their quote set included."""
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        quotes, before, pushes = await quote_and_leave(data_dir)
        assert [p["data"]["quote_set"] for p in pushes if p["type"] == "exec"] == ["mm1"] * 2
        for path in data_dir.glob("snapshot-*.bin"):
            path.unlink()
        venue = await start_venue(data_dir)
        try:
            maker = await venue.client("alpha")
            await maker.subscribe_account(since_seq=before)
            assert await drain_pushes(maker) == pushes
            await maker.close()
            await requote_and_pull(venue, quotes)
        finally:
            await venue.server.stop()

    asyncio.run(scenario())


def post_signed(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """One POST /api/v1/orders sent with exactly these signature headers."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = headers | {"Content-Type": "application/json"}
        connection.request("POST", "/api/v1/orders", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_a_logon_or_request_signed_before_a_restart_is_not_taken_again(tmp_path: Path) -> None:
    """The finding: the nonces a key used are remembered in memory only, so once the venue
    restarted (cleanly or after a crash) a logon or a signed REST request seen before it was
    taken again within its window (up to 60 s): a connection logged on as the key by whoever
    had captured the frame, no secret needed, and an order placed twice. A message signed
    before the server started is now refused, TIMESTAMP_OUT_OF_WINDOW, saying why; one
    signed since passes as before."""
    data_dir = tmp_path / "data"
    key, secret = KEYS["taker"]
    window_ms = 60_000
    order = {"symbol": SYMBOL, "side": "buy", "type": "limit", "tif": "gtc"}
    body = json.dumps(order | {"price": "150.00", "qty": "1"}).encode()

    async def scenario() -> None:
        venue = await start_venue(data_dir)
        ts_us = time.time_ns() // 1_000  # signed while the first run serves
        logon = {
            "api_key": key,
            "ts": ts_us,
            "nonce": "seen-once",
            "recv_window": window_ms,
            "sig": sign_logon(secret, key, ts_us, "seen-once", window_ms),
        }
        path, nonce = "/api/v1/orders", "seen-once-rest"
        signature = sign_request(secret, key, ts_us, nonce, window_ms, "POST", path, "", body)
        headers = {
            "X-API-Key": key,
            "X-Timestamp": str(ts_us),
            "X-Nonce": nonce,
            "X-Recv-Window": str(window_ms),
            "X-Signature": signature,
        }
        first = await venue.client()
        assert (await first.request_raw("session.logon", logon))["status"] == 200
        assert (await asyncio.to_thread(post_signed, venue.port, body, headers))[0] == 200
        await first.close()
        await venue.server.stop()

        venue = await start_venue(data_dir)
        try:
            replayed = await venue.client()
            answer = await replayed.request_raw("session.logon", logon)
            assert answer["status"] == 401, answer
            assert answer["error"]["name"] == "TIMESTAMP_OUT_OF_WINDOW"
            assert "before this server started" in answer["error"]["msg"]
            status, refused = await asyncio.to_thread(post_signed, venue.port, body, headers)
            assert (status, refused["error"]["name"]) == (401, "TIMESTAMP_OUT_OF_WINDOW")
            taker = await venue.client("taker")  # a logon signed now passes
            assert len((await taker.open_orders())["orders"]) == 1, "placed once"
        finally:
            for client in venue.clients:
                await client.close()
            await venue.server.stop()

    asyncio.run(scenario())
