"""What the server logs for an operator: a real `venue serve --log-format json` process, and
in-process checks (caplog) for what a subprocess cannot easily provoke."""

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from client.rest import RestClient
from client.sdk import VenueClient, VenueError
from gateway import limits
from gateway.auth import unknown_key_logged
from tests.conftest import KEYS, ROOT, Venue, start_venue
from tests.gateway.test_server_streams import cut_off, open_slow_consumer, trade_until_cut_off
from tests.sample_config import SAMPLE_CONFIG

RUN_TIMEOUT_S = 60
START_LINES_MAX = 20
SYMBOL = "AAPLx-USD"
SERVE = [sys.executable, "-m", "cli.main", "serve", "--config", str(SAMPLE_CONFIG)]
SERVE += ["--port", "0"]


async def operate(url: str) -> None:
    """A refused logon, a good one, a rejected order and an admin action."""
    intruder = await VenueClient(url).connect()
    with pytest.raises(VenueError):
        await intruder.logon(KEYS["taker"][0], "not-the-secret")
    await intruder.close()
    taker = await VenueClient(url).connect()
    await taker.logon(*KEYS["taker"])
    with pytest.raises(VenueError, match="INSUFFICIENT_BALANCE"):
        await taker.place(SYMBOL, "buy", "100000", "187.25")  # $18.7M: the taker has $5M
    await taker.close()
    admin = await VenueClient(url).connect()
    await admin.logon(*KEYS["admin"])
    await admin.request("admin.set_reference_price", {"symbol": SYMBOL, "price": "187.25"})
    await admin.close()


def serve_and_operate(data_dir: Path) -> list[dict[str, Any]]:
    """Run `venue serve` at debug in JSON, operate on it, stop it; its log lines, parsed."""
    server = subprocess.Popen(
        [*SERVE, "--data-dir", str(data_dir), "--log-level", "debug", "--log-format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert server.stdout is not None
        url = ""
        for _ in range(START_LINES_MAX):
            line = server.stdout.readline()
            if line.startswith("tokenvenue listening:"):
                url = line.split()[2]
                break
        if url:
            asyncio.run(asyncio.wait_for(operate(url), RUN_TIMEOUT_S))
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=RUN_TIMEOUT_S)
    # with what it said: once (session 28, a busy machine) it did not start, and why was lost
    assert url, f"the server did not start (status {server.returncode}): {err}"
    assert server.returncode == 0, err
    return [json.loads(line) for line in err.splitlines()]  # every line is one JSON object


def test_serve_logs_what_an_operator_needs_as_json(tmp_path: Path) -> None:
    records = serve_and_operate(tmp_path / "data")
    for record in records:
        assert {"ts", "level", "logger", "msg"} <= record.keys(), record
        assert "not-the-secret" not in json.dumps(record)
        assert KEYS["taker"][1] not in json.dumps(record), "no secret is ever logged"

    def only(msg: str, **fields: Any) -> dict[str, Any]:
        found = [r for r in records if r["msg"] == msg and fields.items() <= r.items()]
        assert len(found) == 1, (msg, fields, [r["msg"] for r in records])
        return found[0]

    assert only("built from the config")["commands"] > 0
    opened = [r for r in records if r["msg"] == "connection opened"]
    assert len(opened) == 3 and all(r["peer"].startswith("127.0.0.1:") for r in opened)
    refused = only("logon refused", api_key=KEYS["taker"][0])
    assert refused["level"] == "warning" and refused["code"] == "bad_signature"
    only("logged on", account=3, api_key=KEYS["taker"][0])
    rejected = only("rejected", account=3, level="debug")
    assert rejected["reason"] == "insufficient_balance" and rejected["symbol"] == SYMBOL
    admin = only("admin request", method="admin.set_reference_price", account=100)
    assert admin["params"] == {"symbol": SYMBOL, "price": "187.25"}
    closed = [r for r in records if r["msg"] == "connection closed"]
    assert {r["account"] for r in closed} == {None, 3, 100}
    assert only("rejects")["rejects"] == {"insufficient_balance": 1}  # the summary, at stop
    snapshot = only("snapshot written")
    assert snapshot["bytes"] > 0 and snapshot["ms"] >= 0 and snapshot["seq"] > 0
    assert snapshot["capture_ms"] >= 0, "how long the capture held the event loop"


def test_a_restart_logs_its_recovery_and_removes_a_stray_snapshot_tmp(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"

    async def start_and_stop() -> None:
        venue = await start_venue(data_dir)
        await venue.server.stop()

    asyncio.run(start_and_stop())
    stray = data_dir / "snapshot-00000000000000000123.tmp"
    stray.write_bytes(b"half a snapshot")
    with caplog.at_level(logging.INFO):
        asyncio.run(start_and_stop())
    assert not stray.exists()
    removed = [r for r in caplog.records if r.msg == "removed a half-written snapshot"]
    assert [r.__dict__["path"] for r in removed] == [str(stray)]
    recovered = next(r for r in caplog.records if r.msg == "recovered")
    assert recovered.__dict__["snapshot_seq"] > 0 and recovered.__dict__["ms"] >= 0
    assert recovered.__dict__["journal_bytes"] == (data_dir / "journal.log").stat().st_size


def test_a_slow_consumer_cut_off_is_logged(
    run_venue: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(limits, "SEND_QUEUE_MESSAGES_MAX", 16)
    # cut 0.05 s after its outbox filled, not 2 s: within the trading (`limits` says why)
    monkeypatch.setattr(limits, "SEND_QUEUE_OVERFLOW_S", 0.05)

    async def scenario(venue: Venue) -> None:
        slow, session = await open_slow_consumer(venue)
        await trade_until_cut_off(venue, session)
        assert await cut_off(session)
        slow.transport.abort()  # gone: reading nothing, its close would wait out 10 s

    with caplog.at_level(logging.INFO, logger="venue"):
        run_venue(scenario)
    cut = [r for r in caplog.records if r.msg == "slow consumer cut off"]
    assert len(cut) == 1 and cut[0].levelname == "WARNING"
    assert cut[0].__dict__["peer"].startswith("127.0.0.1:")


def test_a_secret_sent_as_the_api_key_stays_out_of_the_log(
    run_venue: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The finding (session 32): a refused logon or REST request logged its API key whole,
    and a key unknown to the venue is often a secret typed in the key's place (key and secret
    swapped): the operator's log kept it. An unknown key is logged by its first characters
    now; a key of the venue's, an id, still whole."""
    key, secret = KEYS["alpha"]

    async def scenario(venue: Venue) -> None:
        for api_key in (secret, key):  # swapped; then the key with a wrong secret
            with pytest.raises(VenueError):
                async with VenueClient(venue.url()) as client:
                    await client.logon(api_key, "not-the-secret")
            rest = RestClient(f"http://127.0.0.1:{venue.port}", api_key, "not-the-secret")
            answer = await asyncio.to_thread(rest.get, "/api/v1/balances")
            assert answer.status == 401

    with caplog.at_level(logging.WARNING, logger="venue"):
        run_venue(scenario)
    refused = ("logon refused", "rest request refused")
    logged = [r.__dict__["api_key"] for r in caplog.records if r.msg in refused]
    assert logged == [unknown_key_logged(secret)] * 2 + [key] * 2
    assert unknown_key_logged(secret) == "demo-... (20 chars)"  # a quarter of it at most
    assert all(secret not in str(record.__dict__) for record in caplog.records)


def test_a_secret_pasted_as_the_key_to_revoke_stays_out_of_the_admin_request_log(
    run_venue: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The finding (session 32's secrets trial, left for this file's owner): `admin request`
    logged `admin.revoke_key`'s `api_key` as sent, so a secret pasted in the key's place (the
    key refused as unknown) stayed in the operator's log. Named as a refused logon names it."""
    _, secret = KEYS["alpha"]

    async def scenario(venue: Venue) -> None:
        async with VenueClient(venue.url()) as admin:
            await admin.logon(*KEYS["admin"])
            with pytest.raises(VenueError, match="BAD_PARAM"):
                await admin.request("admin.revoke_key", {"api_key": secret})

    with caplog.at_level(logging.INFO, logger="venue"):
        run_venue(scenario)
    asked = [r.__dict__["params"] for r in caplog.records if r.msg == "admin request"]
    assert asked == [{"api_key": unknown_key_logged(secret)}]
    assert all(secret not in str(record.__dict__) for record in caplog.records)
