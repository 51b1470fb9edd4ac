"""Recovery end to end: stop a real server, start a new VenueServer on the same data dir.

What must survive a restart: open orders, balances, the engine's state (its state_hash), the
public book, the private streams (since_seq replay), and the ledger store, which must hold
every transfer exactly once however often the venue restarts. Also what a stop itself does:
clients are told, cancel-on-disconnect applies, and a stopped server runs nothing more.
Each test drives real servers on 127.0.0.1 with real clients and real files in tmp_path.
"""

import asyncio
import gc
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from cli.main import main as venue_cli
from client.sdk import VenueClient, VenueError
from core import venue_core
from engine.enums import Side
from settlement.store import SqliteLedgerStore
from tests.conftest import (
    KEYS,
    TEST_TIMEOUT_S,
    Venue,
    drain_pushes,
    next_push_not_heartbeat,
    start_venue,
)

SYMBOL = "AAPLx-USD"
OTHER = "MSFTx-USD"
WHO = ("alpha", "beta", "taker")
WAIT_S = 3.0  # the most any single expected event may take on a busy 2-core machine
# A switch armed before a restart: the stop, the start and a query come well before it fires
# (0.25 s at load 50; at 500 ms, a restart 0.5 s slower found it fired).
RESTART_SWITCH_MS = 2_000


# ----------------------------------------------------------------- helpers


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    try:
        asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))
    finally:
        # Finalize this test's leftovers (a stopped server's failed task, say) now, not
        # during a later test: a finalizer that logs in the middle of pytest's own ast
        # parsing trips a CPython 3.11 bug (SystemError: AST constructor recursion depth).
        gc.collect()


async def stop(venue: Venue) -> None:
    for client in venue.clients:
        await client.close()
    await venue.server.stop()


def account_events(pushes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in pushes if p.get("ch") == "account" and p.get("type") != "snapshot"]


async def views(venue: Venue) -> dict[str, Any]:
    """Each account's open orders and balances, as its own client sees them."""
    seen = {}
    for who in WHO:
        client = await venue.client(who)
        seen[who] = ((await client.open_orders())["orders"], (await client.balances())["balances"])
    return seen


async def trade_a_little(venue: Venue, round_: int) -> None:
    """Resting orders, fills, a partial fill, an amend and a cancel, on two symbols."""
    alpha, beta, taker = [await venue.client(who) for who in WHO]
    base = 187.30 + round_
    for step in range(3):
        await alpha.place(
            SYMBOL, "sell", "0.5", f"{base + step / 10:.2f}", cl_ord_id=f"r{round_}s{step}"
        )
    await beta.place(SYMBOL, "buy", "2", f"{base - 1:.2f}")
    gone = (await beta.place(OTHER, "buy", "1", "410.00"))["order_id"]
    await taker.place(SYMBOL, "buy", "0.7", f"{base + 0.1:.2f}", tif="ioc")  # 0.5 + 0.2
    await alpha.amend(cl_ord_id=f"r{round_}s2", qty="0.8")
    await beta.cancel(order_id=gone)
    await taker.place(OTHER, "sell", "0.25", "415.00")


# ----------------------------------------------------------------- state


def test_a_restart_restores_orders_balances_book_and_state_hash(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        first = await start_venue(data_dir)
        await trade_a_little(first, 0)
        before = await views(first)
        watcher = await first.client("us")
        book_before = await watcher.request("book.snapshot", {"symbol": SYMBOL, "depth": 100})
        state = first.server.venue.state_hash()
        last_order_id = first.server.venue.last_order_id
        last_trade_id = first.server.venue.markets[SYMBOL].last_trade_id
        await stop(first)

        second = await start_venue(data_dir)
        try:
            assert second.server.venue.state_hash() == state
            assert await views(second) == before
            watcher = await second.client("us")
            book_after = await watcher.request("book.snapshot", {"symbol": SYMBOL, "depth": 100})
            assert (book_after["bids"], book_after["asks"]) == (
                book_before["bids"],
                book_before["asks"],
            )
            assert book_after["checksum"] == book_before["checksum"]
            assert second.server.epoch != first.server.epoch, "a new epoch: seqs start over"
            # The venue goes on where it stopped: ids continue, nothing is reused.
            alpha, taker = await second.client("alpha"), await second.client("taker")
            placed = await alpha.place(SYMBOL, "sell", "0.1", "187.35")
            assert placed["order_id"] == last_order_id + 1
            await taker.place(SYMBOL, "buy", "0.1", "187.35", tif="ioc")
            assert second.server.venue.markets[SYMBOL].last_trade_id == last_trade_id + 1
        finally:
            await stop(second)

    run(scenario)


def test_the_ledger_store_holds_every_transfer_exactly_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    ledgers = []

    async def scenario() -> None:
        for round_ in range(3):
            venue = await start_venue(data_dir)
            await trade_a_little(venue, round_)
            admin = await venue.client("admin")
            await admin.request("admin.deposit", {"account": 1, "asset": "USD", "amount": "10"})
            withdrawal = await admin.request(
                "admin.withdraw", {"account": 2, "asset": "USD", "amount": "3"}
            )
            await admin.request(
                "admin.confirm_withdrawal", {"withdrawal_id": withdrawal["withdrawal_id"]}
            )
            await stop(venue)
            ledger = venue.server.ledger
            totals = {key: b.total for key, b in ledger.balances.items() if b.total}
            ledgers.append((ledger.last_transfer_id, totals))
            if round_ == 0:  # as if the process had died before its snapshot was written
                for path in data_dir.glob("snapshot-*.bin"):
                    path.unlink()
        quiet = await start_venue(data_dir)  # a restart that books nothing adds nothing
        await stop(quiet)

    run(scenario)
    assert venue_cli(["ledger", "verify", "--data-dir", str(data_dir)]) == 0
    last_transfer_id, totals = ledgers[-1]
    assert capsys.readouterr().out.startswith(f"ok: {last_transfer_id} transfers")
    assert [count for count, _ in ledgers] == sorted(set(count for count, _ in ledgers))
    store = SqliteLedgerStore(data_dir / "ledger.sqlite")
    try:
        ids = [transfer.transfer_id for transfer in store.iter_transfers()]
        assert ids == list(range(1, last_transfer_id + 1)), "each transfer once, none missing"
        assert store.balances() == totals, "the store adds up to the venue's own ledger"
    finally:
        store.close()


# ----------------------------------------------------------------- the private stream


@pytest.mark.parametrize(
    "with_snapshot",
    [
        pytest.param(True, id="from-snapshot"),
        pytest.param(False, id="from-journal"),
    ],
)
def test_the_private_stream_resumes_across_a_restart(tmp_path: Path, with_snapshot: bool) -> None:
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        first = await start_venue(data_dir)
        alpha = await first.client("alpha")
        witness = await first.client("alpha")
        taker = await first.client("taker")
        for client in (alpha, witness):
            await client.subscribe_account()
            await next_push_not_heartbeat(client)
        await alpha.place(SYMBOL, "sell", "1", "187.30")
        await drain_pushes(alpha)
        last_seen = alpha.account_seq
        await alpha.close()
        await taker.place(SYMBOL, "buy", "0.4", "187.30", tif="ioc")  # missed by alpha
        await witness.place(OTHER, "buy", "1", "410.00")
        missed = [p for p in account_events(await drain_pushes(witness)) if p["seq"] > last_seen]
        assert len(missed) >= 4
        await stop(first)
        if not with_snapshot:
            for path in data_dir.glob("snapshot-*.bin"):
                path.unlink()

        second = await start_venue(data_dir)
        try:
            back = await second.client("alpha")
            subscribed = await back.subscribe_account(since_seq=last_seen)
            assert subscribed["seq"] == missed[-1]["seq"], "the seq goes on across the restart"
            replayed = account_events(await drain_pushes(back))
            assert [p["seq"] for p in replayed] == [p["seq"] for p in missed]
            assert [(p["type"], p["data"]) for p in replayed] == [
                (p["type"], p["data"]) for p in missed
            ], "exactly the missed events, once each"
            # docs/protocol.md §8.1: replayed "exactly as first sent", keeping their epoch.
            assert replayed == missed
            taker = await second.client("taker")
            await taker.place(SYMBOL, "buy", "0.1", "187.30", tif="ioc")
            live = account_events(await drain_pushes(back))
            assert [p["seq"] for p in live] == list(
                range(missed[-1]["seq"] + 1, missed[-1]["seq"] + 1 + len(live))
            )
            assert {p["epoch"] for p in live} == {second.server.epoch}
            exec_ids = [p["data"]["exec_id"] for p in missed + live if p["type"] == "exec"]
            assert exec_ids == sorted(set(exec_ids)), "exec ids are never reused"
        finally:
            await stop(second)

    run(scenario)


# ----------------------------------------------------------------- what a stop does


def test_a_stop_tells_clients_and_closes_them_1001(tmp_path: Path) -> None:
    async def scenario() -> None:
        venue = await start_venue(tmp_path / "data")
        trader = await venue.client("alpha")
        public = await venue.client(endpoint="public")
        await venue.server.stop()
        for client in (trader, public):
            pushes = await drain_pushes(client, 0.3)
            assert {"ch": "session", "type": "shutdown", "reconnect_in_ms": 1000} in pushes
            assert client.websocket is not None
            await asyncio.wait_for(client.websocket.wait_closed(), 3)
            assert client.websocket.close_code == 1001
            await client.close()
        with pytest.raises(OSError):  # nothing listens any more
            await VenueClient(venue.url()).connect()

    run(scenario)


HELD_PLACE = {"symbol": SYMBOL, "side": "sell", "type": "limit", "tif": "gtc", "qty": "1"}


async def _requote_held(
    server: Any, maker: Any, *behind: tuple[str, dict[str, Any] | None]
) -> "asyncio.Future[list[Any]]":
    """Send a requote that waits for a place marked in flight (one that never comes back,
    as when the core is unreachable) and `behind` it the requests given (method, params),
    which the connection holds; their answers (or failures), once all are held."""
    session = next(s for s in server.sessions.values() if s.account == 1)
    server.dispatcher.placed.placing[(1, "held", SYMBOL, Side.BUY)] = time.monotonic()  # not back
    bid = {"symbol": SYMBOL, "bid_px": "186.00", "bid_qty": "1"}
    sending = [
        maker.request_raw("quote.mass", {"quote_set": "held", "quotes": [bid]}),  # waits
        *(maker.request_raw(method, params) for method, params in behind),
    ]
    answering = asyncio.gather(*sending, return_exceptions=True)
    for _ in range(300):  # bounded: up to 3 s for the frames to arrive
        if session.held is not None and len(session.held) == len(behind):
            break
        await asyncio.sleep(0.01)
    assert session.held is not None and len(session.held) == len(behind), "held behind it"
    return answering


def test_requests_held_at_a_stop_are_answered_not_executed_before_the_close(
    tmp_path: Path,
) -> None:
    """A cluster's gateway holds a requote whose quote's place is in flight, and every frame
    of its connection behind it (`HeldRequests.hold`). Here a slot marked as placing stands
    for a place whose outcome the stop's drain does not get (the core unreachable): at the
    stop the requote and the two requests behind it are each answered 503 `SHUTTING_DOWN`
    (before: nothing, the close came first), in request order, before the `shutdown` push
    and the 1001 close; none of them ran."""

    async def scenario() -> None:
        venue = await start_venue(tmp_path / "data")
        server = venue.server
        maker = await venue.client("alpha")
        await maker.request("session.cod", {"enabled": True})
        seen: list[Any] = []  # what the client read, in order: answers' ids, pushes' types
        on_message = maker._on_message

        def recording(message: dict[str, Any]) -> None:
            seen.append(message.get("id", message.get("type")))
            on_message(message)

        maker._on_message = recording  # type: ignore[method-assign]
        answering = await _requote_held(
            server, maker, ("order.place", HELD_PLACE | {"price": "187.30"}), ("balances", None)
        )
        await server.stop()
        answers = await asyncio.wait_for(answering, WAIT_S)
        assert [(a["status"], a["error"]["name"]) for a in answers] == [(503, "SHUTTING_DOWN")] * 3
        assert all("not executed" in a["error"]["msg"] for a in answers), answers
        ids = [answer["id"] for answer in answers]
        assert seen[-4:] == [*ids, "shutdown"], seen  # in request order, then the push
        assert maker.websocket is not None
        await asyncio.wait_for(maker.websocket.wait_closed(), WAIT_S)
        assert maker.websocket.close_code == 1001
        await maker.close()
        assert not [o for o in server.reads.orders.values() if o.account == 1], "none ran"

    run(scenario)


def test_a_held_logout_is_the_last_request_answered_at_a_stop(tmp_path: Path) -> None:
    """Frames sent after a logout are never answered (protocol §4.2): held behind a
    waiting requote at a stop, the requote and the logout are answered 503 `SHUTTING_DOWN`,
    the place sent after the logout is not (its caller sees the connection close), and
    nothing ran."""

    async def scenario() -> None:
        venue = await start_venue(tmp_path / "data")
        server = venue.server
        maker = await venue.client("alpha")
        await maker.request("session.cod", {"enabled": True})
        answering = await _requote_held(
            server,
            maker,
            ("session.logout", None),
            ("order.place", HELD_PLACE | {"price": "187.30"}),
        )
        await server.stop()
        requote, logout, after = await asyncio.wait_for(answering, WAIT_S)
        for answer in (requote, logout):
            assert (answer["status"], answer["error"]["name"]) == (503, "SHUTTING_DOWN"), answer
        assert isinstance(after, Exception), after  # no answer: the close came instead
        await maker.close()
        assert not [o for o in server.reads.orders.values() if o.account == 1], "none ran"

    run(scenario)


def test_cod_orders_are_canceled_by_a_stop_and_stay_canceled(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        first = await start_venue(data_dir)
        cod = await first.client("alpha")
        await cod.request("session.cod", {"enabled": True})
        for price in ("186.00", "186.10"):
            await cod.place(SYMBOL, "buy", "1", price)
        plain = await first.client("alpha")
        kept = (await plain.place(SYMBOL, "buy", "1", "185.00"))["order_id"]
        await plain.subscribe_account()
        seq_before_stop = (await next_push_not_heartbeat(plain))["seq"]
        await first.server.stop()
        for client in first.clients:
            await client.close()

        second = await start_venue(data_dir)
        try:
            alpha = await second.client("alpha")
            assert [o["order_id"] for o in (await alpha.open_orders())["orders"]] == [kept]
            await alpha.subscribe_account(since_seq=seq_before_stop)
            canceled = [
                p["data"]
                for p in account_events(await drain_pushes(alpha))
                if p["type"] == "exec" and p["data"]["exec_type"] == "canceled"
            ]
            assert [data["reason"] for data in canceled] == ["cod", "cod"]
        finally:
            await stop(second)

    run(scenario)


def test_a_stopped_server_executes_nothing_more(tmp_path: Path) -> None:
    async def scenario() -> None:
        venue = await start_venue(tmp_path / "data")
        alpha = await venue.client("alpha")
        await alpha.place(SYMBOL, "buy", "1", "186.00")
        await alpha.request("orders.cancel_after", {"timeout_ms": 300})
        await stop(venue)
        state = venue.server.venue.state_hash()
        await asyncio.sleep(0.6)  # past the switch's timeout
        assert venue.server.venue.state_hash() == state, "a command ran after the stop"

    run(scenario)


def test_the_dead_mans_switch_still_fires_after_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        first = await start_venue(data_dir)
        alpha = await first.client("alpha")
        await alpha.place(SYMBOL, "buy", "1", "186.00")
        await alpha.request("orders.cancel_after", {"timeout_ms": RESTART_SWITCH_MS})
        await stop(first)
        second = await start_venue(data_dir)
        try:
            watcher = await second.client("alpha")
            assert len((await watcher.open_orders())["orders"]) == 1, "fired too early"
            gave_up = time.monotonic() + RESTART_SWITCH_MS / 1_000 + WAIT_S
            while (await watcher.open_orders())["orders"]:
                assert time.monotonic() < gave_up, "orders outlived the switch"
                await asyncio.sleep(0.05)
        finally:
            await stop(second)

    run(scenario)


def test_the_time_a_venue_was_down_does_not_count_against_a_switch(tmp_path: Path) -> None:
    """The switch's deadline passed while the venue was down: the start shifts it by the
    time down (`ShiftDeadManDeadlines`, before any other command), so it fires its remaining
    time after the start, not at the first tick; once fired it is spent."""
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        first = await start_venue(data_dir)
        alpha = await first.client("alpha")
        placed = (await alpha.place(SYMBOL, "buy", "1", "186.00"))["order_id"]
        await alpha.request("orders.cancel_after", {"timeout_ms": 300})
        (deadline_us,) = first.server.venue.dead_man_deadlines.values()
        await stop(first)
        await asyncio.sleep(0.4)  # the venue is down when the deadline passes
        restarted_us = time.time_ns() // 1_000
        assert restarted_us > deadline_us
        second = await start_venue(data_dir)
        try:
            # read before any await: the start's own tick may come at the next one
            shifted = list(second.server.venue.dead_man_deadlines.values())
            assert shifted and shifted[0] > restarted_us, "the time down counted"
            watcher = await second.client("alpha")
            for _ in range(40):  # bounded: 2 s
                if (await watcher.open_orders())["orders"] == []:
                    break
                await asyncio.sleep(0.05)
            assert (await watcher.order_status(placed))["reason"] == "dms", "it must fire"
        finally:
            await stop(second)
        third = await start_venue(data_dir)  # and, spent, it fires no more
        try:
            assert third.server.venue.dead_man_deadlines == {}
        finally:
            await stop(third)

    run(scenario)


def test_a_quiet_venue_gives_a_switch_back_its_outage_not_its_whole_timeout(
    tmp_path: Path,
) -> None:
    """Nothing is sequenced after the arm, yet the clock is journaled each second while the
    switch is armed (`SWITCH_CLOCK_US`): the restart counts the time down from that tick, so
    the switch keeps about what it had left when the venue stopped. Before session 29 the
    shift ran from the arm itself, handing back its whole 3 s after 2 s had passed."""
    data_dir = tmp_path / "data"
    timeout_ms = 3_000

    async def scenario() -> None:
        first = await start_venue(data_dir)
        alpha = await first.client("alpha")
        await alpha.place(SYMBOL, "buy", "1", "186.00")
        await alpha.request("orders.cancel_after", {"timeout_ms": timeout_ms})
        await asyncio.sleep(2.0)  # quiet: only the clock's ticks are sequenced meanwhile
        await stop(first)
        restarted_us = time.time_ns() // 1_000
        second = await start_venue(data_dir)
        try:
            (deadline_us,) = second.server.venue.dead_man_deadlines.values()
            left_ms = (deadline_us - restarted_us) // 1_000
            assert left_ms < timeout_ms - 400, f"{left_ms} ms left: the quiet time came back"
        finally:
            await stop(second)

    run(scenario)


def test_a_rearm_at_once_after_a_restart_does_not_save_orders_whose_switch_was_due_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The switch was due before the venue stopped (its clock not ticking, and an order
    command after the deadline, which fires none): the time down is not what made it due,
    so the start does not shift it. A client re-arms the moment the venue is back, before
    the clock's first tick: the switch fires first (its orders canceled, reason dms, and
    `dms.triggered` on the re-arming connection), then the new one holds."""
    data_dir = tmp_path / "data"
    # the clock neither ticks nor wakes for a passed deadline: only the re-arm fires it
    monkeypatch.setattr(venue_core.VenueCore, "_next_tick_s", lambda core: 3_600)

    async def scenario() -> None:
        first = await start_venue(data_dir)
        alpha = await first.client("alpha")
        placed = (await alpha.place(SYMBOL, "buy", "1", "186.00"))["order_id"]
        await alpha.request("orders.cancel_after", {"timeout_ms": 200})
        (deadline_us,) = first.server.venue.dead_man_deadlines.values()
        for _ in range(40):  # bounded: 2 s (the deadline is 0.2 s on)
            if time.time_ns() // 1_000 > deadline_us:
                break
            await asyncio.sleep(0.05)
        await alpha.place(SYMBOL, "buy", "1", "185.90")  # the last command: after the deadline
        assert first.server.venue.dead_man_deadlines == {1: deadline_us}, "not fired yet"
        await stop(first)
        second = await start_venue(data_dir)
        try:
            assert second.server.venue.dead_man_deadlines == {1: deadline_us}, "not shifted"
            alpha = await second.client("alpha")
            await alpha.request("orders.cancel_after", {"timeout_ms": 600_000})
            assert (await alpha.order_status(placed))["reason"] == "dms"
            pushes = await drain_pushes(alpha)
            assert {"ch": "session", "type": "dms.triggered"} in pushes
            assert list(second.server.venue.dead_man_deadlines) == [1], "armed anew"
        finally:
            await stop(second)

    run(scenario)


def test_a_disarmed_switch_stays_disarmed_after_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        first = await start_venue(data_dir)
        alpha = await first.client("alpha")
        await alpha.place(SYMBOL, "buy", "1", "186.00")
        await alpha.request("orders.cancel_after", {"timeout_ms": 300})
        await alpha.request("orders.cancel_after", {"timeout_ms": 0})
        await stop(first)
        second = await start_venue(data_dir)
        try:
            await asyncio.sleep(0.6)  # past the deadline it no longer has
            watcher = await second.client("alpha")
            assert len((await watcher.open_orders())["orders"]) == 1
        finally:
            await stop(second)

    run(scenario)


def test_switches_an_older_venue_kept_in_dead_man_json_are_armed_in_the_venue(
    tmp_path: Path,
) -> None:
    """A data directory from before the switch was venue state: at start, each switch in
    `dead_man.json` the venue has not armed is armed through it (a deadline that passed
    while down fires at once, as it did), then the file is gone; one the venue armed since
    (a start that died before removing the file) keeps the venue's deadline."""
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        first = await start_venue(data_dir)
        alpha, beta = await first.client("alpha"), await first.client("beta")
        taker = await first.client("taker")
        alphas = (await alpha.place(SYMBOL, "buy", "1", "186.00"))["order_id"]
        betas = (await beta.place(SYMBOL, "buy", "1", "186.10"))["order_id"]
        takers = (await taker.place(SYMBOL, "buy", "1", "186.20"))["order_id"]
        await taker.request("orders.cancel_after", {"timeout_ms": 600_000})
        (taker_deadline,) = first.server.venue.dead_man_deadlines.values()
        await stop(first)
        now = time.time_ns() // 1_000
        older = {1: now - 1_000_000, 2: now + 400_000, 3: now + 1_000}  # alpha's passed
        (data_dir / "dead_man.json").write_bytes(json.dumps(older).encode())

        second = await start_venue(data_dir)
        try:
            assert not (data_dir / "dead_man.json").exists()
            armed = second.server.venue.dead_man_deadlines
            # the venue's own, shifted by the time down (the file's 1 ms is not taken)
            assert armed.get(2, 0) >= older[2] and armed[3] > taker_deadline
            watcher = await second.client("alpha")
            gave_up = time.monotonic() + WAIT_S
            while alphas in {o["order_id"] for o in (await watcher.open_orders())["orders"]}:
                assert time.monotonic() < gave_up, "a deadline passed while down must fire"
                await asyncio.sleep(0.05)
            assert (await watcher.order_status(alphas))["reason"] == "dms"
            beta = await second.client("beta")
            while (await beta.open_orders())["orders"]:
                assert time.monotonic() < gave_up + 0.4, "beta's switch must fire"
                await asyncio.sleep(0.05)
            assert (await beta.order_status(betas))["reason"] == "dms"
            taker = await second.client("taker")
            assert [o["order_id"] for o in (await taker.open_orders())["orders"]] == [takers]
        finally:
            await stop(second)

    run(scenario)


def test_an_issued_api_key_still_logs_on_after_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        first = await start_venue(data_dir)
        admin = await first.client("admin")
        issued = await admin.request("admin.issue_key", {"account": 3, "scopes": ["read"]})
        reader = await first.client()
        await reader.logon(issued["api_key"], issued["secret"])
        await stop(first)
        second = await start_venue(data_dir)
        try:
            reader = await second.client()
            try:
                assert (await reader.logon(issued["api_key"], issued["secret"]))["account"] == 3
            except VenueError as refused:
                raise AssertionError(f"the issued key was refused: {refused}") from None
            assert KEYS["taker"][0] != issued["api_key"]
        finally:
            await stop(second)

    run(scenario)


def test_history_replayed_from_the_journal_keeps_the_epoch_of_each_start(
    tmp_path: Path,
) -> None:
    """Two starts' events, rebuilt from the journal alone by a third: each keeps its own."""
    data_dir = tmp_path / "data"

    async def one_start(price: str) -> tuple[int, list[dict[str, Any]]]:
        venue = await start_venue(data_dir)
        try:
            alpha = await venue.client("alpha")
            await alpha.subscribe_account()
            await next_push_not_heartbeat(alpha)  # the snapshot
            await alpha.place(SYMBOL, "buy", "1", price)
            return venue.server.epoch, account_events(await drain_pushes(alpha))
        finally:
            await stop(venue)

    async def scenario() -> None:
        first_epoch, first = await one_start("186.00")
        second_epoch, second = await one_start("185.00")
        assert first and second and first_epoch != second_epoch
        for path in data_dir.glob("snapshot-*.bin"):
            path.unlink()  # the third start rebuilds every event from the journal
        third = await start_venue(data_dir)
        try:
            back = await third.client("alpha")
            await back.subscribe_account(since_seq=first[0]["seq"] - 1)
            replayed = account_events(await drain_pushes(back))
            assert replayed == first + second  # exactly as first sent, epochs included
            assert {p["epoch"] for p in first} == {first_epoch}
            assert {p["epoch"] for p in second} == {second_epoch}
        finally:
            await stop(third)

    run(scenario)
