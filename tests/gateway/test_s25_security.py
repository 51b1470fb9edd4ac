"""Session 25's security review, as a hostile client of a real server on 127.0.0.1."""

import asyncio
import json
import time
from typing import Any

import websockets

from client.rest import RestClient
from client.sdk import VenueError
from gateway import limits
from gateway.auth import RECV_WINDOW_MS_DEFAULT, ApiKey, sign_logon
from gateway.logon import TOO_MANY_REFUSED
from tests.conftest import KEYS, Venue

BAD_LOGONS_PER_CONNECTION = 30
# Refusals the small bucket of the test lets through: its burst of 10 tokens at half a token
# each, plus what it refills (1 a second) in the few seconds the test may take on a busy box.
REFUSALS_LET_THROUGH_MAX = 20 + 10


def _bad_logon(request_id: int, nonce: str) -> str:
    params = {"api_key": KEYS["alpha"][0], "ts": time.time_ns() // 1_000, "nonce": nonce}
    params["sig"] = "0" * 64  # well formed, wrong: an HMAC is computed to find it so
    return json.dumps({"id": request_id, "method": "session.logon", "params": params})


async def _refused_logons(venue: Venue, tag: str) -> list[dict[str, Any]]:
    """The errors of `BAD_LOGONS_PER_CONNECTION` bad logons pipelined on one connection."""
    async with websockets.connect(venue.url("trade")) as websocket:
        for index in range(BAD_LOGONS_PER_CONNECTION):
            await websocket.send(_bad_logon(index, f"{tag}-{index}"))
        answers = [json.loads(await websocket.recv()) for _ in range(BAD_LOGONS_PER_CONNECTION)]
    return [answer for answer in answers if "error" in answer]


def test_refused_logons_are_charged_to_the_client_ips_bucket(run_venue: Any) -> None:
    """The finding: a refused logon was charged only to its connection's bucket (400 tokens,
    200 a second, half a token a logon), so one connection had 800 bad logons refused at
    once and 400 a second after, each an HMAC and a warning in the log, and one IP's 256
    connections 256 times that, where REST's refused signatures were held to the IP's
    bucket. Now they take from that bucket too (shared with REST), and once it is empty a
    logon is refused 429 before any HMAC, until it refills."""

    async def scenario(venue: Venue) -> None:
        logons = venue.server.dispatcher.logons
        assert logons.refusals_by_address is venue.server.unsigned_limiter, "one bucket per IP"
        small = limits.AddressBuckets(rate_per_s=1, burst=10)
        logons.refusals_by_address = venue.server.unsigned_limiter = small
        errors = [
            error
            for refused in await asyncio.gather(
                _refused_logons(venue, "a"), _refused_logons(venue, "b")
            )
            for error in refused
        ]
        assert len(errors) == 2 * BAD_LOGONS_PER_CONNECTION, "every bad logon is refused"
        names = [error["error"]["name"] for error in errors]
        assert 20 <= names.count("BAD_SIGNATURE") <= REFUSALS_LET_THROUGH_MAX, names
        limited = [error for error in errors if error["error"]["name"] == "RATE_LIMITED"]
        assert len(limited) + names.count("BAD_SIGNATURE") == len(errors), names
        assert all(error["error"]["msg"] == TOO_MANY_REFUSED for error in limited), limited
        # which bucket, machine-readably (since session 30; before, no `data`)
        assert all(error["error"]["data"] == {"limit": "ip"} for error in limited), limited
        assert all(error["status"] == 429 and error["retry_after_ms"] > 0 for error in limited)

        # the same bucket as REST's: a badly signed request from this address is 429 too
        rest = RestClient(f"http://127.0.0.1:{venue.port}", KEYS["alpha"][0], "not the secret")
        try:
            answer = await asyncio.to_thread(rest.get, "/api/v1/balances")
        finally:
            rest.close()
        assert answer.status == 429, answer.body
        assert answer.json()["error"]["data"] == {"limit": "ip"}, answer.body
        assert answer.json()["error"]["msg"] == "slow down: too many requests from your address"

        # a good logon waits for the bucket as a signed request does, then passes
        await asyncio.sleep(1.0)  # half a token refills in 0.5 s
        client = await venue.client()
        logged_on = await client.logon(*KEYS["alpha"])
        assert logged_on["account"] == 1, logged_on

    run_venue(scenario)


def test_a_good_logon_costs_the_ips_bucket_nothing(run_venue: Any) -> None:
    """Only refusals are charged: many good logons from one address are all taken."""

    async def scenario(venue: Venue) -> None:
        small = limits.AddressBuckets(rate_per_s=1, burst=1)
        venue.server.dispatcher.logons.refusals_by_address = small
        api_key, secret = KEYS["alpha"]
        for index in range(5):
            async with websockets.connect(venue.url("trade")) as websocket:
                ts = time.time_ns() // 1_000
                nonce = f"good-{index}"
                sig = sign_logon(secret, api_key, ts, nonce, RECV_WINDOW_MS_DEFAULT)
                params = {"api_key": api_key, "ts": ts, "nonce": nonce, "sig": sig}
                request = {"id": 1, "method": "session.logon", "params": params}
                await websocket.send(json.dumps(request))
                answer = json.loads(await websocket.recv())
                assert answer["status"] == 200, answer
        assert small.retry_after_ms("127.0.0.1", time.time_ns() // 1_000) == 0

    run_venue(scenario)


def test_a_read_only_key_cannot_take_the_connections_kept_for_trading(run_venue: Any) -> None:
    """The finding: the 16 connections per account were anyone's, so a key with only the read
    scope (one handed to a reporting tool) could hold all 16 and the account's trading key
    was refused at logon, `at most 16 connections per account`: a read key stopped trading.
    Now the last `CONNECTIONS_KEPT_FOR_TRADING` are kept for keys with the trade scope."""

    async def scenario(venue: Venue) -> None:
        reader = ApiKey(
            key="s25-reader", secret="s25-secret", account=3, scopes=frozenset({"read"})
        )
        venue.server.auth.store.add(reader)
        cap, kept = limits.CONNECTIONS_PER_ACCOUNT_MAX, limits.CONNECTIONS_KEPT_FOR_TRADING
        for _ in range(cap - kept):
            await (await venue.client()).logon(reader.key, reader.secret)
        refused = await venue.client()
        try:
            await refused.logon(reader.key, reader.secret)
        except VenueError as error:
            assert error.name == "PERMISSION_DENIED", error
            assert f"at most {cap - kept} connections per account for a read-only key" in str(error)
        else:
            raise AssertionError("a read-only key took a connection kept for trading")
        for _ in range(kept):  # the account's trading key still logs on, up to the cap
            traded = await venue.client("taker")
            await traded.place("AAPLx-USD", "buy", "1", "150.00")
        try:
            await (await venue.client()).logon(*KEYS["taker"])
        except VenueError as error:
            assert str(error).endswith(f"at most {cap} connections per account"), error
        else:
            raise AssertionError(f"a logon past the account's {cap} connections was taken")

    run_venue(scenario)


def test_a_connections_refused_logons_log_once_a_second(run_venue: Any, caplog: Any) -> None:
    """The finding: every refused logon wrote a warning, so one connection's flood of bad
    logons wrote hundreds of lines a second, where REST's refused signatures log at most
    once a second per connection. Now a connection's refusals within a second of its last
    line are counted into its next one (`refusals_unlogged`)."""

    async def scenario(venue: Venue) -> None:
        async with websockets.connect(venue.url("trade")) as websocket:
            for index in range(BAD_LOGONS_PER_CONNECTION):
                await websocket.send(_bad_logon(index, f"log-{index}"))
            for _ in range(BAD_LOGONS_PER_CONNECTION):
                assert json.loads(await websocket.recv())["status"] == 401
            await asyncio.sleep(1.1)  # past the interval: the next refusal is logged
            await websocket.send(_bad_logon(99, "log-late"))
            answer = json.loads(await websocket.recv())
            while "id" not in answer:  # a heartbeat, after a second of silence
                answer = json.loads(await websocket.recv())
            assert answer["status"] == 401, answer

    with caplog.at_level("WARNING", logger="venue"):
        run_venue(scenario)
    lines = [record for record in caplog.records if record.getMessage() == "logon refused"]
    assert len(lines) == 2, [record.__dict__.get("refusals_unlogged") for record in lines]
    assert [line.__dict__["refusals_unlogged"] for line in lines] == [
        0,
        BAD_LOGONS_PER_CONNECTION - 1,
    ]


def test_the_sdks_logon_waits_out_an_address_whose_refusals_are_spent(run_venue: Any) -> None:
    """A good logon from an address whose bucket of refused logons is spent (by a neighbour
    behind the same NAT, say) is refused 429 with `retry_after_ms`, nothing done: the SDK
    raised it at once, and with `auto_resume` each cost one of its few tries (review of
    session 25). It waits `retry_after_ms` and logs on."""

    async def scenario(venue: Venue) -> None:
        small = limits.AddressBuckets(rate_per_s=1, burst=10)
        venue.server.dispatcher.logons.refusals_by_address = small
        venue.server.unsigned_limiter = small
        errors = await _refused_logons(venue, "neighbour")
        assert any(error["error"]["name"] == "RATE_LIMITED" for error in errors), "spent"
        client = await venue.client()
        logged_on = await client.logon(*KEYS["alpha"])  # before: VenueError RATE_LIMITED
        assert logged_on["account"] == 1 and client.logon_retries >= 1, logged_on

    run_venue(scenario)


def test_an_operators_admin_key_may_hold_every_connection_of_its_account(run_venue: Any) -> None:
    """An operator's account has an admin key and no trading one (venue.toml's account 100):
    with the last 4 connections kept for trading keys only, they could never be used
    (review of session 25). They are kept for keys that trade or administer."""

    async def scenario(venue: Venue) -> None:
        cap = limits.CONNECTIONS_PER_ACCOUNT_MAX
        for _ in range(cap):  # before: the 13th refused, read-only's cap
            await venue.client("admin")
        with_one_more = await venue.client()
        try:
            await with_one_more.logon(*KEYS["admin"])
        except VenueError as error:
            assert f"at most {cap} connections per account" in str(error), error
        else:
            raise AssertionError("the account's cap held no more")

    run_venue(scenario)


def test_logons_refused_for_a_spent_address_are_counted_in_the_log(
    run_venue: Any, caplog: Any
) -> None:
    """Logons refused 429 because their address's bucket was spent were neither logged nor
    counted: the log went quiet just as a flood began (review of session 25). They are
    counted into the connection's next line like any refusal."""

    async def scenario(venue: Venue) -> int:
        small = limits.AddressBuckets(rate_per_s=1, burst=10)
        venue.server.dispatcher.logons.refusals_by_address = small
        venue.server.unsigned_limiter = small
        async with websockets.connect(venue.url("trade")) as websocket:
            for index in range(BAD_LOGONS_PER_CONNECTION):
                await websocket.send(_bad_logon(index, f"spent-{index}"))
            statuses = [
                json.loads(await websocket.recv())["status"]
                for _ in range(BAD_LOGONS_PER_CONNECTION)
            ]
            await asyncio.sleep(1.1)  # past the interval: the next refusal is logged
            await websocket.send(_bad_logon(99, "spent-late"))
            answer = json.loads(await websocket.recv())
            while "id" not in answer:  # a heartbeat, after a second of silence
                answer = json.loads(await websocket.recv())
        assert 429 in statuses, statuses
        return statuses.count(429)

    with caplog.at_level("WARNING", logger="venue"):
        limited = run_venue(scenario)
    lines = [record for record in caplog.records if record.getMessage() == "logon refused"]
    assert [line.__dict__["refusals_unlogged"] for line in lines] == [
        0,
        BAD_LOGONS_PER_CONNECTION - 1,  # before: less the `limited` 429s
    ], limited


def test_a_connections_refused_logons_not_logged_yet_are_logged_at_close(
    run_venue: Any, caplog: Any
) -> None:
    """Refused logons counted toward a connection's next line were dropped when it closed
    first (session 26): a flood that ended with a close showed only its first refusal. Every
    refusal is in a line now, once: each `logon refused` counts itself and
    `refusals_unlogged`, and `logons refused before close` the rest."""

    async def scenario(venue: Venue) -> None:
        errors = await _refused_logons(venue, "closing")
        assert len(errors) == BAD_LOGONS_PER_CONNECTION

    with caplog.at_level("WARNING", logger="venue"):
        run_venue(scenario)
    lines = [record for record in caplog.records if record.getMessage() == "logon refused"]
    at_close = [r for r in caplog.records if r.getMessage() == "logons refused before close"]
    counted = len(lines) + sum(r.__dict__["refusals_unlogged"] for r in lines + at_close)
    assert counted == BAD_LOGONS_PER_CONNECTION, (len(lines), len(at_close))
    assert len(at_close) <= 1


def test_refused_logons_not_logged_yet_are_logged_when_the_connection_logs_on(
    run_venue: Any, caplog: Any, monkeypatch: Any
) -> None:
    """Refusals a connection counted after its last `logon refused` line were logged only at
    its close, maybe hours after it logged on (review of session 26): now in one line at its
    logon, `logons refused before logon`, while it stays open. The logon's clock is frozen,
    so every refusal after the first falls within the first's second."""
    from gateway import logon

    frozen = time.time_ns() // 1_000
    monkeypatch.setattr(logon, "now_us", lambda: frozen)
    refused_count = 5

    async def scenario(venue: Venue) -> list[Any]:
        api_key, secret = KEYS["alpha"]
        async with websockets.connect(venue.url("trade")) as websocket:
            for index in range(refused_count):
                await websocket.send(_bad_logon(index, f"before-{index}"))
            ts = time.time_ns() // 1_000
            sig = sign_logon(secret, api_key, ts, "good", RECV_WINDOW_MS_DEFAULT)
            params = {"api_key": api_key, "ts": ts, "nonce": "good", "sig": sig}
            await websocket.send(
                json.dumps({"id": 99, "method": "session.logon", "params": params})
            )
            answers = [json.loads(await websocket.recv()) for _ in range(refused_count + 1)]
            assert answers[-1]["result"]["account"] == 1, answers[-1]
            said = [r for r in caplog.records if r.getMessage().startswith("logons refused")]
        return said

    with caplog.at_level("WARNING", logger="venue"):
        open_lines = run_venue(scenario)
    assert [(r.getMessage(), r.__dict__["refusals_unlogged"]) for r in open_lines] == [
        ("logons refused before logon", refused_count - 1)
    ]
    lines = [r for r in caplog.records if r.getMessage() == "logon refused"]
    assert [r.__dict__["refusals_unlogged"] for r in lines] == [0]
    assert not [r for r in caplog.records if r.getMessage() == "logons refused before close"]
