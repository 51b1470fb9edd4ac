"""The cluster's roles as real processes: NATS JetStream, a core, a standby, two gateways.

One cluster per module (cluster/local.py: 3 NATS nodes, PostgreSQL, two cores, two gateways);
each test uses accounts and prices of its own so they do not depend on each other's orders.
"""

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import nats
import pytest
from websockets.exceptions import ConnectionClosed

from bench.ingress_bench import masked
from client.sdk import VenueClient, VenueError
from cluster.local import LocalCluster
from core import config as venue_config
from core.jetstream_journal import STREAM_DEFAULT, JetStreamJournal
from core.nats_bus import Record, decode_record, server_list
from engine.commands import ArmDeadMan, PlaceOrder, ShiftDeadManDeadlines
from engine.events import DeadManArmed, DeadManTriggered, TradeExecuted
from engine.venue import Venue
from engine.venue import VenueConfig as EngineConfig
from gateway import limits
from settlement.ledger import Ledger
from settlement.pg_store import PostgresLedgerStore
from tests.cluster.running import local_cluster
from tests.conftest import KEYS, drain_pushes
from tests.gateway.test_tape import read_tape
from tests.sample_config import SAMPLE_CONFIG, sample_bill

SYMBOL = "AAPLx-USD"
QUOTED = "MSFTx-USD"  # quote.mass test's own book
TIMEOUT_S = 120


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster("cluster") as running:
        yield running


async def client(url: str, who: str) -> VenueClient:
    connected = await VenueClient(url).connect()
    await connected.logon(*KEYS[who])
    return connected


def run(scenario: Any) -> Any:
    """Run `scenario` bounded in time; on a timeout, say where every task was waiting."""

    async def bounded() -> Any:
        task = asyncio.ensure_future(scenario)
        done, _ = await asyncio.wait({task}, timeout=TIMEOUT_S)
        if not done:
            for waiting in asyncio.all_tasks():
                waiting.print_stack(file=sys.stderr)
            task.cancel()
            raise TimeoutError(f"the scenario took over {TIMEOUT_S} s: task stacks on stderr")
        return task.result()

    return asyncio.run(bounded())


def test_orders_through_gateway_a_fill_against_orders_rested_through_gateway_b(
    cluster: LocalCluster,
) -> None:
    a, b = cluster.gateways

    async def scenario() -> None:
        maker = await client(b.url, "alpha")
        taker = await client(a.url, "taker")
        watch_a = await VenueClient(a.url.replace("trade", "public")).connect()
        watch_b = await VenueClient(b.url.replace("trade", "public")).connect()
        try:
            await maker.subscribe_account()
            await taker.subscribe_account()
            await drain_pushes(maker)
            await drain_pushes(taker)
            rested = await maker.place(SYMBOL, "sell", "1", "190.10", cl_ord_id="rest-b")
            assert rested["status"] == "new"
            taken = await taker.place(SYMBOL, "buy", "0.4", "190.20", tif="ioc")
            assert taken["status"] == "filled"
            maker_pushes = await drain_pushes(maker, 1.0)
            taker_pushes = await drain_pushes(taker, 1.0)
            fills = [p for p in maker_pushes if p.get("data", {}).get("exec_type") == "trade"]
            taken_fills = [p for p in taker_pushes if p.get("data", {}).get("exec_type") == "trade"]
            assert [f["data"]["last_qty"] for f in fills] == ["0.400000"]
            assert [f["data"]["last_px"] for f in taken_fills] == ["190.10"]
            book_a = await watch_a.request("book.snapshot", {"symbol": SYMBOL, "depth": 10})
            book_b = await watch_b.request("book.snapshot", {"symbol": SYMBOL, "depth": 10})
            assert book_a["asks"] == book_b["asks"] and book_a["bids"] == book_b["bids"]
            assert ["190.10", "0.600000"] in [list(level) for level in book_a["asks"]]
        finally:
            for each in (maker, taker, watch_a, watch_b):
                await each.close()

    run(scenario())


KEY_LEARNT_WITHIN_S = 20.0  # the other gateway follows the key stream: well under a second


def test_a_key_issued_through_gateway_a_and_asked_again_through_b_is_the_same_key(
    cluster: LocalCluster,
) -> None:
    """`admin.issue_key` under a `cl_op_id` is remembered with the key on the cluster's key
    stream: sent again through the other gateway once it has the key, it is that key again
    (the operator retried elsewhere after a lost answer), not a second one."""
    a, b = cluster.gateways
    issue = {"account": 3, "scopes": ["read"], "cl_op_id": "roles-key-1"}

    async def logs_on_through_b(key: str, secret: str) -> None:
        deadline = time.monotonic() + KEY_LEARNT_WITHIN_S
        while True:
            reader = await VenueClient(b.url).connect()
            try:
                await reader.logon(key, secret)
                return
            except VenueError as refused:  # b has not learnt the key yet
                assert refused.name == "BAD_SIGNATURE" and time.monotonic() < deadline, refused
            finally:
                await reader.close()
            await asyncio.sleep(0.1)

    async def scenario() -> None:
        admin_a, admin_b = await client(a.url, "admin"), await client(b.url, "admin")
        try:
            first = await admin_a.request("admin.issue_key", issue)
            again_on_a = await admin_a.request("admin.issue_key", issue)
            await logs_on_through_b(first["api_key"], first["secret"])
            again_on_b = await admin_b.request("admin.issue_key", issue)
            for again in (again_on_a, again_on_b):
                assert again.pop("repeated") is True and isinstance(again.pop("done_at"), int)
                assert again == first
            other = await admin_b.request_raw("admin.issue_key", issue | {"scopes": ["trade"]})
            assert other["error"]["name"] == "CL_OP_ID_REUSED"
        finally:
            await admin_a.close()
            await admin_b.close()

    run(scenario())


def test_a_key_revoked_through_gateway_a_is_closed_and_refused_on_b_even_restarted(
    cluster: LocalCluster,
) -> None:
    """`admin.revoke_key` through A puts a revocation on the key stream: B closes its live
    session of the key (4004) and refuses its logons; B started again (replaying the stream:
    the reason for its ~3 s restart) still refuses it, knows the key issued beside it, and
    answers the revocation sent again under its `cl_op_id` as the first (since session 31)."""
    a, b = cluster.gateways

    async def logs_on_through_b(key: str, secret: str) -> VenueClient:
        deadline = time.monotonic() + KEY_LEARNT_WITHIN_S
        while True:
            reader = await VenueClient(b.url).connect()
            try:
                await reader.logon(key, secret)
                return reader
            except VenueError as refused:  # b has not learnt the key yet
                assert refused.name == "BAD_SIGNATURE" and time.monotonic() < deadline, refused
                await reader.close()
            await asyncio.sleep(0.1)

    async def refused_through_b(key: str, secret: str) -> str:
        reader = await VenueClient(b.url).connect()
        try:
            with pytest.raises(VenueError) as refused:
                await reader.logon(key, secret)
            return refused.value.name
        finally:
            await reader.close()

    async def scenario() -> None:
        admin_a = await client(a.url, "admin")
        try:
            leaked = await admin_a.request("admin.issue_key", {"account": 3, "scopes": ["read"]})
            kept = await admin_a.request("admin.issue_key", {"account": 3, "scopes": ["read"]})
            key, secret = leaked["api_key"], leaked["secret"]
            reader = await logs_on_through_b(key, secret)
            await (await logs_on_through_b(kept["api_key"], kept["secret"])).close()
            revoked = await admin_a.request("admin.revoke_key", {"api_key": key, "cl_op_id": "r1"})
            assert revoked["api_key"] == key
            assert reader.websocket is not None
            await asyncio.wait_for(reader.websocket.wait_closed(), KEY_LEARNT_WITHIN_S)
            assert (reader.websocket.close_code, reader.websocket.close_reason) == (
                4004,
                "api key revoked",
            )
            await reader.close()
            assert await refused_through_b(key, secret) == "BAD_SIGNATURE"
            config_key = {"api_key": KEYS["taker"][0]}
            refused = await admin_a.request_raw("admin.revoke_key", config_key)
            assert refused["error"]["name"] == "BAD_PARAM", refused
            keys.extend([leaked, kept])
            answers.append(revoked)
        finally:
            await admin_a.close()

    async def after_the_restart() -> None:
        leaked, kept = keys
        assert await refused_through_b(leaked["api_key"], leaked["secret"]) == "BAD_SIGNATURE"
        await (await logs_on_through_b(kept["api_key"], kept["secret"])).close()
        admin_b = await client(b.url, "admin")
        try:
            again = {"api_key": leaked["api_key"], "cl_op_id": "r1"}
            assert await admin_b.request("admin.revoke_key", again) == answers[0] | {
                "repeated": True
            }
        finally:
            await admin_b.close()

    keys: list[dict[str, Any]] = []
    answers: list[dict[str, Any]] = []
    run(scenario())
    assert cluster.terminate(b) == 0, b.log()
    cluster.start_gateway(b)  # from this thread: the gateway dies with the thread that started it
    run(after_the_restart())


def test_quote_mass_through_a_gateway_amends_the_quote_it_placed(cluster: LocalCluster) -> None:
    """The gateway learns a placed quote's order id when its record comes back, so the next
    quote.mass amends that order rather than placing a second one."""
    gateway = cluster.gateways[0]

    async def scenario() -> None:
        maker = await client(gateway.url, "alpha")
        try:
            await maker.request("session.cod", {"enabled": True})
            quote = {"symbol": QUOTED, "bid_px": "400.00", "bid_qty": "1"}
            await maker.request("quote.mass", {"quote_set": "q", "quotes": [quote]})
            placed = (await maker.open_orders(QUOTED))["orders"]
            assert [(o["side"], o["price"]) for o in placed] == [("buy", "400.00")]
            moved = {"symbol": QUOTED, "bid_px": "400.50", "bid_qty": "2"}
            await maker.request("quote.mass", {"quote_set": "q", "quotes": [moved]})
            orders = (await maker.open_orders(QUOTED))["orders"]
            assert [(o["order_id"], o["price"], o["leaves_qty"]) for o in orders] == [
                (placed[0]["order_id"], "400.50", "2.000000")  # the same order, amended
            ]
        finally:
            await maker.close()

    run(scenario())


def test_pipelined_quote_mass_requests_through_a_gateway_end_where_the_last_one_said(
    cluster: LocalCluster,
) -> None:
    """A market maker requotes without waiting for the answers. The gateway's replica learns
    of its own amends a hop later, so each requote is decided on what was sent from here:
    none is refused as changing nothing (`AMEND_REJECTED`), none is skipped as quoted so
    already, and the quote ends where the last request put it."""
    gateway = cluster.gateways[0]

    def quote(bid_px: str) -> dict[str, Any]:  # both sides move: the usual requote's path
        ask_px = "420.50" if bid_px == "399.50" else "420.00"
        sides = {"bid_px": bid_px, "bid_qty": "1", "ask_px": ask_px, "ask_qty": "1"}
        return {"quote_set": "pipelined", "quotes": [{"symbol": QUOTED, **sides}]}

    async def scenario() -> None:
        maker = await client(gateway.url, "alpha")
        try:
            await maker.request("session.cod", {"enabled": True})
            await maker.request("quote.mass", quote("399.00"))  # answered once known here
            moves = ("399.50", "399.00", "399.50", "399.00", "399.50", "399.00")
            answers = await asyncio.gather(
                *(maker.request_raw("quote.mass", quote(bid)) for bid in moves)
            )
            for answer in answers:
                assert answer["status"] == 200, answer
                assert all(op["status"] == 200 for op in answer["result"]["results"]), answer
            orders = (await maker.open_orders(QUOTED))["orders"]
            mine = sorted((o["side"], o["price"]) for o in orders if o["price"] in PIPELINED)
            assert mine == [("buy", "399.00"), ("sell", "420.00")], orders
        finally:
            await maker.close()

    run(scenario())


PIPELINED = {"399.00", "399.50", "420.00", "420.50"}  # the pipelined test's quotes' prices


def _two_sided(quote_set: str, bid_px: str, ask_px: str, qty: str = "1") -> dict[str, Any]:
    sides = {"bid_px": bid_px, "bid_qty": qty, "ask_px": ask_px, "ask_qty": qty}
    return {"quote_set": quote_set, "quotes": [{"symbol": QUOTED, **sides}]}


async def _quotes_at(maker: VenueClient, prices: set[str]) -> list[tuple[str, str, str]]:
    orders = (await maker.open_orders(QUOTED))["orders"]
    return sorted((o["side"], o["price"], o["leaves_qty"]) for o in orders if o["price"] in prices)


def _all_done(answers: list[dict[str, Any]]) -> None:
    for answer in answers:
        assert answer["status"] == 200, answer
        assert all(op["status"] == 200 for op in answer["result"]["results"]), answer


def test_quote_mass_pipelined_onto_an_empty_slot_places_one_quote(cluster: LocalCluster) -> None:
    """Requotes sent before the first quote's place is back: the gateway cannot amend an
    order whose id it does not know yet, and a second place would leave the first on the
    book beside it. Each waits for the place in flight, then amends it: one quote per side,
    where the last request put it."""
    gateway = cluster.gateways[0]
    prices = {"398.00", "398.50", "421.00", "421.50"}

    async def scenario() -> None:
        maker = await client(gateway.url, "alpha")
        try:
            await maker.request("session.cod", {"enabled": True})
            moves = [("398.00", "421.50"), ("398.50", "421.00"), ("398.00", "421.50")]
            answers = await asyncio.gather(
                *(maker.request_raw("quote.mass", _two_sided("fresh", *m)) for m in moves)
            )
            _all_done(answers)
            assert await _quotes_at(maker, prices) == [
                ("buy", "398.00", "1.000000"),
                ("sell", "421.50", "1.000000"),
            ]
        finally:
            await maker.close()

    run(scenario())


def test_quote_mass_pull_and_requote_pipelined_places_anew(cluster: LocalCluster) -> None:
    """A pull (size 0) and a requote sent without waiting between them: the requote is a new
    quote, not an amend of the order whose cancel is in flight (which the core refuses)."""
    gateway = cluster.gateways[0]
    prices = {"397.00", "397.50", "422.00", "422.50"}

    async def scenario() -> None:
        maker = await client(gateway.url, "alpha")
        try:
            await maker.request("session.cod", {"enabled": True})
            await maker.request("quote.mass", _two_sided("pulled", "397.00", "422.50"))
            answers = await asyncio.gather(
                maker.request_raw("quote.mass", _two_sided("pulled", "397.00", "422.50", "0")),
                maker.request_raw("quote.mass", _two_sided("pulled", "397.50", "422.00")),
            )
            _all_done(answers)
            assert await _quotes_at(maker, prices) == [
                ("buy", "397.50", "1.000000"),
                ("sell", "422.00", "1.000000"),
            ]
        finally:
            await maker.close()

    run(scenario())


def test_a_quote_sets_cancel_all_pipelined_behind_its_first_quote_cancels_it(
    cluster: LocalCluster,
) -> None:
    """`orders.cancel_all` of a quote set sent right behind the set's first `quote.mass`:
    the cancel waits for the place in flight, so the quote it would not have known of yet
    is canceled too, not left on the book."""
    gateway = cluster.gateways[0]
    prices = {"396.00", "423.00"}

    async def scenario() -> None:
        maker = await client(gateway.url, "alpha")
        try:
            await maker.request("session.cod", {"enabled": True})
            quoted, canceled = await asyncio.gather(
                maker.request_raw("quote.mass", _two_sided("swept", "396.00", "423.00")),
                maker.request_raw("orders.cancel_all", {"quote_set": "swept"}),
            )
            _all_done([quoted])
            assert canceled["status"] == 200 and canceled["result"] == {"canceled": 2}, canceled
            assert await _quotes_at(maker, prices) == []
        finally:
            await maker.close()

    run(scenario())


def _answer_order(connected: VenueClient) -> list[int]:
    """The ids of the answers `connected` receives from now on, in the order they arrive."""
    seen: list[int] = []
    on_message = connected._on_message

    def recording(message: dict[str, Any]) -> None:
        if "id" in message and "status" in message:
            seen.append(message["id"])
        on_message(message)

    connected._on_message = recording  # type: ignore[method-assign]
    return seen


def test_requests_pipelined_behind_a_waiting_quote_mass_keep_their_order(
    cluster: LocalCluster,
) -> None:
    """While a requote waits for its quote's place, the connection's later requests wait
    behind it: each is decided after it and answered after it. A no-op requote, a malformed
    request and an account-wide cancel-all (the kill switch) sent behind: the answers come in
    request order, and the cancel-all, the last request, leaves nothing on the book."""
    gateway = cluster.gateways[0]
    prices = {"395.00", "395.50", "424.00"}

    async def scenario() -> None:
        maker = await client(gateway.url, "beta")
        try:
            await maker.request("session.cod", {"enabled": True})
            seen = _answer_order(maker)
            bid = {"symbol": QUOTED, "bid_px": "395.00", "bid_qty": "1"}
            moved = _two_sided("killed", "395.50", "424.00")
            answers = await asyncio.gather(
                maker.request_raw("quote.mass", {"quote_set": "killed", "quotes": [bid]}),
                maker.request_raw("quote.mass", moved),  # waits for the bid's place
                maker.request_raw("quote.mass", moved),  # changes nothing
                maker.request_raw("orders.open", {"bogus": 1}),
                maker.request_raw("orders.cancel_all", {"symbol": QUOTED}),
            )
            assert [a["status"] for a in answers] == [200, 200, 200, 400, 200], answers
            assert answers[2]["result"]["results"] == [], "nothing to change"
            assert answers[4]["result"]["canceled"] == 2, answers[4]
            assert seen == sorted(seen), "answered in request order"
            assert await _quotes_at(maker, prices) == []
        finally:
            await maker.close()

    run(scenario())


def test_session_requests_behind_a_waiting_quote_mass_apply_after_it(
    cluster: LocalCluster,
) -> None:
    """`session.cod` off and `session.logout` sent right behind a requote that waits for its
    quote's place: the requote is decided with cod still on (not refused `COD_REQUIRED`),
    and answered before the logout closes the connection."""
    gateway = cluster.gateways[0]
    prices = {"394.00", "394.50", "425.00"}

    async def scenario() -> None:
        maker = await client(gateway.url, "beta")
        seen = _answer_order(maker)
        await maker.request("session.cod", {"enabled": True})
        bid = {"symbol": QUOTED, "bid_px": "394.00", "bid_qty": "1"}
        answers = await asyncio.gather(
            maker.request_raw("quote.mass", {"quote_set": "left", "quotes": [bid]}),
            maker.request_raw("quote.mass", _two_sided("left", "394.50", "425.00")),
            maker.request_raw("session.cod", {"enabled": False}),
            maker.request_raw("session.logout", {}),
        )
        assert [a["status"] for a in answers] == [200, 200, 200, 200], answers
        placed, requoted, _, logout = (answer["id"] for answer in answers)
        # (`session.cod` is answered as it is handled, not behind the commands owed)
        assert [i for i in seen if i != answers[2]["id"]][-3:] == [placed, requoted, logout]
        await maker.close()
        after = await client(gateway.url, "beta")
        try:  # cod was off at the close: the quotes stay, one per side, where the last put them
            assert await _quotes_at(after, prices) == [
                ("buy", "394.50", "1.000000"),
                ("sell", "425.00", "1.000000"),
            ]
            await after.request("orders.cancel_all", {"symbol": QUOTED})
        finally:
            await after.close()

    run(scenario())


def _resting_buy(price: str, cl_ord_id: str) -> dict[str, Any]:
    """A small buy far under the book (the subscription test's): it rests, trading nothing."""
    order = {"symbol": SYMBOL, "side": "buy", "type": "limit", "tif": "gtc", "qty": "0.01"}
    return order | {"price": price, "cl_ord_id": cl_ord_id}


WRITES_WAIT_TURNS = 100  # loop turns for a few requests' frames to be written (each takes one)


def _account_pushes_so_far(connected: VenueClient) -> list[dict[str, Any]]:
    """The account pushes queued on `connected` until now, taken off."""
    seen: list[dict[str, Any]] = []
    while not connected.pushes.empty():
        push = connected.pushes.get_nowait()
        if push.get("ch") == "account":
            seen.append(push)
    return seen


def _exec_seqs(pushes: list[dict[str, Any]], cl_ord_id: str) -> list[int]:
    """The seqs of the exec pushes among `pushes` of the order `cl_ord_id`."""
    return [
        push["seq"]
        for push in pushes
        if push["type"] == "exec" and push["data"]["cl_ord_id"] == cl_ord_id
    ]


def _consecutive(seqs: list[int]) -> bool:
    return seqs == list(range(seqs[0], seqs[0] + len(seqs)))


async def _in_one_write(
    connected: VenueClient, requests: list[tuple[str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """`requests` pipelined, their frames written to the socket at once: the gateway reads
    them in one read and handles them in one turn of its loop (before any answer from the
    core can come back). Sent one write each, a loaded gateway could read the second after
    the first's record came back. Their answers."""
    assert connected.websocket is not None
    transport = connected.websocket.transport
    write = transport.write
    held: list[bytes] = []
    transport.write = held.append  # type: ignore[method-assign]
    try:
        answers = [asyncio.ensure_future(connected.request_raw(*request)) for request in requests]
        for _ in range(WRITES_WAIT_TURNS):
            if len(held) >= len(requests):
                break
            await asyncio.sleep(0)
        assert len(held) >= len(requests), f"{len(held)} of {len(requests)} frames written"
    finally:
        del transport.write  # the transport's own again
    write(b"".join(held))
    return await asyncio.gather(*answers)


async def _place_and_subscribe(
    taker: VenueClient, subscribe: dict[str, Any], prices: tuple[str, str], names: tuple[str, str]
) -> tuple[int, list[dict[str, Any]]]:
    """An `order.place` and a `subscribe` pipelined in one write, then a second place; the
    subscription's seq and every account push until `orders.open` answered (behind their
    pushes)."""
    placed, subscribed = await _in_one_write(
        taker, [("order.place", _resting_buy(prices[0], names[0])), ("subscribe", subscribe)]
    )
    assert placed["status"] == 200 and subscribed["status"] == 200, subscribed
    await taker.request("order.place", _resting_buy(prices[1], names[1]))
    await taker.request("orders.open", {"symbol": SYMBOL})
    return subscribed["result"].get("seq", 0), _account_pushes_so_far(taker)


def test_an_account_subscription_pipelined_behind_a_place_misses_none_of_its_events(
    cluster: LocalCluster,
) -> None:
    """`subscribe {ch: account}` sent right behind an `order.place`: the gateway's snapshot
    is of its replica, without the place still in flight, whose events come back before the
    subscription joins the stream. They follow the snapshot, each once and in seq order, on a
    first subscription, a second one (snapshot) and one resuming from `since_seq`. Before:
    they went to nobody (first: snapshot 7, then 10 on; again: 12 and 13 lost). Both frames
    go in one write, so the gateway handles the subscribe before the place can come back.
    Sent as two writes, a loaded gateway read the subscribe after the place's record three
    times in a row (session 37): the race this test is about was missed, the test failed."""
    gateway = cluster.gateways[0]

    async def scenario() -> None:
        taker = await client(gateway.url, "taker")
        last_seq = 0  # the last account event seen
        try:
            for step, resume in enumerate((False, False, True)):
                names = (f"sub-{step}", f"sub-{step}b")
                prices = (f"10{step}.00", f"10{step}.05")
                subscribe = {"ch": "account"} | ({"since_seq": last_seq} if resume else {})
                seq, seen = await _place_and_subscribe(taker, subscribe, prices, names)
                if resume:
                    raced, last_seq = _check_resumed(seen, last_seq, names)
                else:
                    raced, last_seq = _check_from_snapshot(seen, seq, names)
                assert raced, f"step {step}: the subscribe came after the place's events"
        finally:
            await taker.request("orders.cancel_all", {"symbol": SYMBOL})
            await taker.close()

    run(scenario())


def _check_from_snapshot(
    seen: list[dict[str, Any]], seq: int, names: tuple[str, str]
) -> tuple[bool, int]:
    """A snapshot subscription's pushes: the snapshot at the answer's seq, then every event
    after it once and in order, the second place's among them, and the first place's too
    unless the snapshot holds its order (the race missed). (raced, the last seq)."""
    start = max(i for i, push in enumerate(seen) if push["type"] == "snapshot")
    snapshot, after = seen[start], seen[start + 1 :]
    seqs = [push["seq"] for push in seen[start:]]
    assert seqs[0] == seq and _consecutive(seqs), seen
    assert _exec_seqs(after, names[1]), seen
    raced = bool(_exec_seqs(after, names[0]))
    in_snapshot = any(order["cl_ord_id"] == names[0] for order in snapshot["orders"])
    assert raced != in_snapshot, (raced, in_snapshot, seen)
    return raced, seqs[-1]


def _check_resumed(
    seen: list[dict[str, Any]], since_seq: int, names: tuple[str, str]
) -> tuple[bool, int]:
    """A resumption after `since_seq` of a session following already: every event after it
    once and in order from the replay's first on; before that only events it sends again
    (the first place's, live, if the subscribe came after them). (raced, the last seq)."""
    seqs = [push["seq"] for push in seen]
    replay_from = max(i for i, s in enumerate(seqs) if s == since_seq + 1)
    assert _consecutive(seqs[replay_from:]), seen
    assert set(seqs[:replay_from]) <= set(seqs[replay_from:]), seen
    for name in names:
        assert _exec_seqs(seen[replay_from:], name), (name, seen)
    return replay_from == 0, seqs[-1]


def test_a_flood_behind_a_waiting_quote_mass_closes_1008_and_nothing_after_it_runs(
    cluster: LocalCluster,
) -> None:
    """More than `HELD_FRAMES_MAX` frames sent behind a requote that waits for its quote's
    place: the connection is closed with 1008, and what it held is dropped, together with
    every frame after it (a cancel-all in the held part, then a cod-off and a place after
    the flood: none of them runs, so cod, still on, pulls the quote at the close)."""
    gateway = cluster.gateways[0]
    prices = {"301.00", "301.50", "450.00", "300.11"}

    async def scenario() -> None:
        maker = await client(gateway.url, "alpha")
        await maker.request("session.cod", {"enabled": True})
        frames = []

        def frame(method: str, params: dict[str, Any]) -> bytes:
            body = {"id": 1_000 + len(frames), "method": method, "params": params}
            return masked(msgspec.json.encode(body))

        bid = {"symbol": QUOTED, "bid_px": "301.00", "bid_qty": "1"}
        frames.append(frame("quote.mass", {"quote_set": "flood", "quotes": [bid]}))
        frames.append(frame("quote.mass", _two_sided("flood", "301.50", "450.00")))  # waits
        frames.append(frame("orders.cancel_all", {}))
        frames += [frame("ping", {}) for _ in range(limits.HELD_FRAMES_MAX + 1)]
        frames.append(frame("session.cod", {"enabled": False}))
        place = {"symbol": QUOTED, "side": "buy", "type": "limit", "tif": "gtc", "qty": "1"}
        frames.append(frame("order.place", place | {"price": "300.11"}))
        websocket = maker.websocket
        assert websocket is not None
        websocket.transport.write(b"".join(frames))  # one write: all of it arrives at once
        await asyncio.wait_for(websocket.wait_closed(), ANSWER_TIMEOUT_S)
        assert websocket.close_code == 1008, websocket.close_code
        await maker.close()
        after = await client(gateway.url, "alpha")
        try:  # the close's cod cancels run when the server sees the close: maybe after this
            left = await _quotes_at(after, prices)
            for _ in range(COD_POLLS):
                if not left:
                    break
                await asyncio.sleep(COD_POLL_S)
                left = await _quotes_at(after, prices)
            assert left == []
        finally:
            await after.close()

    run(scenario())


COD_POLLS, COD_POLL_S = 40, 0.25  # a close's cod cancels, seen from another connection


# ----------------------------------------------------------------- faults under load

ORDERS_PER_LOOP = 40
LOOPS = 4
FAULT_AFTER_ACKS = 30
ANSWER_TIMEOUT_S = 30  # a takeover answers in ~10 s on a busy machine


@dataclass
class Trading:
    """What the clients saw: the taker's acknowledged orders, the maker's private pushes."""

    acked: dict[str, dict[str, Any]] = field(default_factory=dict)  # cl_ord_id -> result
    unknown: set[str] = field(default_factory=set)  # sent, connection lost before the answer
    timed_out: set[str] = field(default_factory=set)  # no answer within ANSWER_TIMEOUT_S
    maker_pushes: list[dict[str, Any]] = field(default_factory=list)
    taker_pushes: list[dict[str, Any]] = field(default_factory=list)


async def trade_through_fault(
    taker_url: str, maker_url: str, tag: str, price: str, fault: Callable[[], None]
) -> tuple[Trading, VenueClient, VenueClient]:
    """The maker rests a sell on its gateway; the taker sends `LOOPS` x `ORDERS_PER_LOOP` ioc
    buys against it through its own; `fault` runs (in a thread) once `FAULT_AFTER_ACKS` are in."""
    seen = Trading()
    maker = await client(maker_url, "beta")
    taker = await client(taker_url, "taker")
    await maker.subscribe_account()
    await taker.subscribe_account()
    seen.maker_pushes.extend(await drain_pushes(maker))
    seen.taker_pushes.extend(await drain_pushes(taker))
    rested = await maker.place(SYMBOL, "sell", "100", price, cl_ord_id=f"{tag}-rest")
    assert rested["status"] == "new"
    enough = asyncio.Event()

    async def loop(index: int) -> None:
        for number in range(ORDERS_PER_LOOP):
            cl_ord_id = f"{tag}-{index}-{number}"
            seen.unknown.add(cl_ord_id)
            placing = taker.place(SYMBOL, "buy", "0.01", price, tif="ioc", cl_ord_id=cl_ord_id)
            try:
                result = await asyncio.wait_for(placing, ANSWER_TIMEOUT_S)
            except (ConnectionError, ConnectionClosed):
                return  # its gateway died: the outcome of this one is unknown
            except VenueError as unknown:  # its gateway lost its lease: answered, then 1012
                assert unknown.name == "OUTCOME_UNKNOWN", unknown
                return
            except TimeoutError:
                seen.timed_out.add(cl_ord_id)
                return
            seen.unknown.discard(cl_ord_id)
            seen.acked[cl_ord_id] = result
            if len(seen.acked) >= FAULT_AFTER_ACKS:
                enough.set()

    reading = True  # not task.cancel(): Python 3.11's wait_for can swallow a cancel

    async def pushes(who: VenueClient, into: list[dict[str, Any]]) -> None:
        while reading:
            with contextlib.suppress(TimeoutError):
                into.append(await who.next_push(0.5))

    readers = [
        asyncio.create_task(pushes(maker, seen.maker_pushes)),
        asyncio.create_task(pushes(taker, seen.taker_pushes)),
    ]
    loops = [asyncio.create_task(loop(index)) for index in range(LOOPS)]
    await asyncio.wait_for(enough.wait(), ANSWER_TIMEOUT_S)  # the cluster works before the fault
    await asyncio.to_thread(fault)
    await asyncio.gather(*loops)
    await asyncio.sleep(1.0)  # the last pushes
    reading = False
    await asyncio.gather(*readers)
    return seen, maker, taker


def account_events(pushes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in pushes if p.get("ch") == "account" and p.get("type") != "snapshot"]


def contiguous(pushes: list[dict[str, Any]]) -> list[int]:
    events = [p["seq"] for p in account_events(pushes)]
    assert events == list(range(events[0], events[0] + len(events))), "a gap or a repeat"
    return events


def stream_records(cluster: LocalCluster) -> list[tuple[int, Record]]:
    journal = JetStreamJournal(cluster.nats.url, create=False)
    try:
        return [(seq, decode_record(payload)) for seq, payload in journal.replay(0)]
    finally:
        journal.close()


def check_no_loss_no_duplicate(cluster: LocalCluster, seen: Trading, tag: str) -> Ledger:
    """Every acknowledged order is in the stream once; no command ran twice; the ledger the
    stream rebuilds is what the store holds (verified) and what the gateways report."""
    records = stream_records(cluster)
    origins = [(r.origin.gateway, r.origin.request) for _, r in records if r.origin.gateway]
    assert len(origins) == len(set(origins)), "a gateway's request sequenced twice"
    placed = [
        r.command.cl_ord_id
        for _, r in records
        if isinstance(r.command, PlaceOrder) and (r.command.cl_ord_id or "").startswith(tag)
    ]
    assert len(placed) == len(set(placed)), "an order placed twice"
    assert set(seen.acked) <= set(placed), "an acknowledged order is not in the journal"
    config = venue_config.load(SAMPLE_CONFIG)
    ledger = Ledger()
    venue = Venue(
        EngineConfig(reserve_staleness_max_us=venue_config.reserve_staleness_max_us(config)),
        ledger,
    )
    acked_ids = {result["order_id"] for result in seen.acked.values()}
    filled_units = 0
    for _, record in records:
        for event in venue.execute(record.command):
            if isinstance(event, TradeExecuted) and event.taker_order_id in acked_ids:
                filled_units += event.qty
    assert {result["status"] for result in seen.acked.values()} == {"filled"}
    acked_units = len(seen.acked) * 10_000  # 0.01 each, at the qty scale 10^6
    assert filled_units == acked_units, "acknowledged fills differ from the journal's"
    assert cluster.dsn is not None
    store = PostgresLedgerStore(cluster.dsn)
    try:
        deadline = time.monotonic() + 30
        while store.last_transfer_id() < ledger.last_transfer_id and time.monotonic() < deadline:
            time.sleep(0.2)
        assert store.last_transfer_id() == ledger.last_transfer_id
        assert store.verify() == []
        booked = {key: total for key, total in store.balances().items() if total}
        rebuilt = {key: b.total for key, b in ledger.balances.items() if b.total}
        assert booked == rebuilt
    finally:
        store.close()
    return ledger


REPLAY_WAIT_S = 20.0  # a replay may wait behind the stream's failover, past a quiet second


async def account_events_until(client: VenueClient, count: int) -> list[dict[str, Any]]:
    """The account events (not heartbeats, not the snapshot) that arrive until `count` have
    come or `REPLAY_WAIT_S` has passed: the caller's comparison decides whether they are all
    there and the same."""
    events: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + REPLAY_WAIT_S
    while len(events) < count and (left := deadline - loop.time()) > 0:
        try:
            push = await client.next_push(left)
        except TimeoutError:
            break
        events += account_events([push])
    return events


async def client_when_serving(url: str, who: str) -> VenueClient:
    """Log on through `url`, reconnecting (bounded) while its gateway closes new connections
    at once (1012: its lease lapsed in the fault and it does not hold it again yet)."""
    for _ in range(100):
        try:
            return await client(url, who)
        except (ConnectionError, ConnectionClosed):
            await asyncio.sleep(0.1)
    return await client(url, who)


async def resume_elsewhere(url: str, who: str, seen: list[dict[str, Any]]) -> None:
    """Reconnect to `url` with since_seq from before the fault: the same events, same bytes."""
    events = contiguous(seen)
    since = events[len(events) // 2]
    again = await client_when_serving(url, who)
    try:
        await again.subscribe_account(since_seq=since)
        expected = [p for p in account_events(seen) if p["seq"] > since]
        replayed = await account_events_until(again, len(expected))
        # what arrived after the readers stopped is replayed too: compare what both have
        assert len(replayed) >= len(expected)
        for mine, theirs in zip(expected, replayed, strict=False):
            assert mine == theirs, f"another gateway's history differs: {mine} != {theirs}"
    finally:
        await again.close()


def test_kill_9_of_the_active_core_under_load_the_standby_takes_over(
    cluster: LocalCluster,
) -> None:
    a, b = cluster.gateways
    active = cluster.active_core()
    assert active is not None
    standby = next(core for core in cluster.cores if core is not active)

    async def scenario() -> Trading:
        seen, maker, taker = await trade_through_fault(
            a.url, b.url, "corekill", "191.00", lambda: cluster.kill(active)
        )
        try:
            assert seen.unknown == set(), "a request went unanswered through the takeover"
            assert len(seen.acked) == LOOPS * ORDERS_PER_LOOP
            contiguous(seen.maker_pushes)
            contiguous(seen.taker_pushes)
            await resume_elsewhere(a.url, "beta", seen.maker_pushes)
            await resume_elsewhere(b.url, "taker", seen.taker_pushes)
        finally:
            await maker.close()
            await taker.close()
        return seen

    seen = run(scenario())
    assert "active at seq" in standby.log()
    assert "warm=true" in standby.log(), "the standby replayed the stream instead of its copy"
    check_no_loss_no_duplicate(cluster, seen, "corekill")
    cluster.start_role(active)  # back as the standby
    cluster.wait_for(active, "waiting for the lease")


def test_kill_9_of_a_gateway_under_load_its_clients_resume_on_the_other(
    cluster: LocalCluster,
) -> None:
    a, b = cluster.gateways

    async def scenario() -> Trading:
        seen, maker, taker = await trade_through_fault(
            a.url, b.url, "gwkill", "192.00", lambda: cluster.kill(a)
        )
        try:
            assert len(seen.acked) >= FAULT_AFTER_ACKS
            assert seen.timed_out <= seen.unknown, "a request on a live connection went unanswered"
            assert len(seen.acked) + len(seen.unknown) <= LOOPS * ORDERS_PER_LOOP
            before = contiguous(seen.taker_pushes)
            again = await client(b.url, "taker")  # the taker's gateway is gone: the other one
            try:
                await again.subscribe_account(since_seq=before[-1])
                missed = account_events(await drain_pushes(again, 1.0))
            finally:
                await again.close()
            contiguous(seen.taker_pushes + missed)  # nothing lost, nothing twice, same seqs
            contiguous(seen.maker_pushes)
        finally:
            await maker.close()
            await taker.close()
        return seen

    seen = run(scenario())
    check_no_loss_no_duplicate(cluster, seen, "gwkill")
    cluster.start_role(a)
    cluster.wait_for(a, "replica at seq", timeout_s=120)


async def stream_leader(cluster: LocalCluster) -> str:
    nc = await nats.connect(cluster.nats.urls)
    try:
        info = await nc.jetstream().stream_info(STREAM_DEFAULT)
        assert info.cluster is not None and info.cluster.leader is not None
        return info.cluster.leader
    finally:
        await nc.close()


def test_kill_9_of_the_stream_leaders_nats_node_under_load(cluster: LocalCluster) -> None:
    a, b = cluster.gateways
    leader = asyncio.run(stream_leader(cluster))
    index = next(i for i, node in enumerate(cluster.nats.nodes) if node.name == leader)

    async def scenario() -> Trading:
        seen, maker, taker = await trade_through_fault(
            a.url, b.url, "natskill", "193.00", lambda: cluster.nats.nodes[index].kill()
        )
        try:
            # Every acknowledged order and fill must survive exactly once (checked below), and
            # every request is answered: a gateway whose stream consumer died with the node
            # made a new one (before: no answer within ANSWER_TIMEOUT_S, 1 of 3 full-suite
            # runs); one whose lease lapsed in the election answers OUTCOME_UNKNOWN, then
            # closes 1012 (before: closed unanswered). docs/cluster.md, "Limits".
            assert seen.timed_out == set(), "a request on a live connection went unanswered"
            assert len(seen.acked) >= FAULT_AFTER_ACKS
            assert len(seen.acked) + len(seen.unknown) <= LOOPS * ORDERS_PER_LOOP
            contiguous(seen.maker_pushes)
            contiguous(seen.taker_pushes)
            await resume_elsewhere(a.url, "beta", seen.maker_pushes)
        finally:
            await maker.close()
            await taker.close()
        return seen

    seen = run(scenario())
    check_no_loss_no_duplicate(cluster, seen, "natskill")
    cluster.nats.restart(index)


async def logon_when_known(url: str, key: str, secret: str) -> VenueClient:
    """Log on with a key issued through another gateway: that gateway answered once the key
    was stored on the stream; this one learns it when it follows the stream (bounded)."""
    for _ in range(50):
        connected = await VenueClient(url).connect()
        try:
            await connected.logon(key, secret)
            return connected
        except VenueError as refused:
            assert refused.name == "BAD_SIGNATURE", refused  # what an unknown key gets
            await connected.close()
            await asyncio.sleep(0.1)
    raise AssertionError(f"key {key} never logged on through {url}")


def test_a_key_issued_through_gateway_a_logs_on_through_gateway_b_and_after_its_restart(
    cluster: LocalCluster,
) -> None:
    a, b = cluster.gateways

    async def issue_and_use() -> dict[str, Any]:
        admin = await client(a.url, "admin")
        try:
            issued = await admin.request("admin.issue_key", {"account": 3, "scopes": ["read"]})
        finally:
            await admin.close()
        reader = await logon_when_known(b.url, issued["api_key"], issued["secret"])
        try:
            assert (await reader.request("session.status", {}))["account"] == 3
        finally:
            await reader.close()
        return issued

    issued = run(issue_and_use())
    cluster.kill(b)  # a gateway started later reads every key before it serves
    cluster.start_role(b)
    cluster.wait_for(b, "replica at seq", timeout_s=120)

    async def after_restart() -> None:
        reader = await VenueClient(b.url).connect()
        try:
            await reader.logon(issued["api_key"], issued["secret"])
            assert (await reader.request("session.status", {}))["account"] == 3
        finally:
            await reader.close()

    run(after_restart())


# ----------------------------------------------------------------- the dead-man's switch

DMS_BILL = sample_bill("TB-2027-03-04-USD")  # account 4, a US person, trades the bills only
DMS_SWITCH_MS = 1_500
DMS_WAIT_S = 15.0  # past a switch's deadline, for its cancels to show on a busy 2-core box


async def dms_pushes(client: VenueClient, timeout_s: float) -> list[dict[str, Any]]:
    """Pushes until a `dms.triggered` one, that one included (bounded)."""
    pushes: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while not pushes or pushes[-1].get("type") != "dms.triggered":
        left = deadline - time.monotonic()
        assert left > 0, f"no dms.triggered within {timeout_s} s: {pushes}"
        pushes.append(await client.next_push(left))
    return pushes


def test_a_switch_armed_through_gateway_a_and_disarmed_through_b_does_not_fire(
    cluster: LocalCluster,
) -> None:
    """One switch per account, the venue's: disarmed through B, A has none left to fire."""
    a, b = cluster.gateways

    async def scenario() -> None:
        on_a, on_b = await client(a.url, "us"), await client(b.url, "us")
        try:
            placed = (await on_a.place(DMS_BILL, "buy", "100", "98.000000"))["order_id"]
            await on_a.request("orders.cancel_after", {"timeout_ms": DMS_SWITCH_MS})
            disarmed = await on_b.request("orders.cancel_after", {"timeout_ms": 0})
            assert disarmed == {"timeout_ms": 0, "armed": False}
            await asyncio.sleep(DMS_SWITCH_MS / 1_000 + 1.0)  # past the disarmed deadline
            for each in (on_a, on_b):
                orders = (await each.open_orders(DMS_BILL))["orders"]
                assert placed in [o["order_id"] for o in orders]
                pushes = await drain_pushes(each, 0.05)
                assert [p for p in pushes if p.get("type") == "dms.triggered"] == []
        finally:
            await on_a.close()
            await on_b.close()

    run(scenario())


def test_a_switch_armed_through_gateway_a_fires_after_a_is_killed(cluster: LocalCluster) -> None:
    """The switch is the venue's: with A dead (and not started again) the active core's
    clock fires it, and B, which executes that tick too, tells its connections."""
    a, b = cluster.gateways

    async def scenario() -> None:
        on_a, on_b = await client(a.url, "us"), await client(b.url, "us")
        try:
            placed = (await on_a.place(DMS_BILL, "buy", "100", "98.100000"))["order_id"]
            armed = await on_a.request("orders.cancel_after", {"timeout_ms": DMS_SWITCH_MS})
            assert armed == {"timeout_ms": DMS_SWITCH_MS, "armed": True}
            cluster.kill(a)
            await dms_pushes(on_b, DMS_SWITCH_MS / 1_000 + DMS_WAIT_S)
            gave_up = time.monotonic() + DMS_WAIT_S
            while (await on_b.open_orders(DMS_BILL))["orders"]:
                assert time.monotonic() < gave_up, "the account's orders outlived the switch"
                await asyncio.sleep(0.05)
            status = await on_b.order_status(placed)
            assert (status["status"], status["reason"]) == ("canceled", "dms")
        finally:
            await on_b.close()
            with contextlib.suppress(ConnectionClosed, OSError):
                await on_a.close()

    run(scenario())
    cluster.start_role(a)
    cluster.wait_for(a, "replica at seq", timeout_s=120)


# Much shorter than any takeover after kill -9 (the lease's TTL, 10 s, less at most a second
# since its last renewal), and than a gateway's resend timer (2 s, checked every 0.5 s): the
# re-arm it held reaches the new core when the core announces itself, in milliseconds.
TAKEOVER_SWITCH_MS = 1_000
# The diligent maker's re-arm interval: its switch has ~0.9 s left at the last record before
# the kill, far more than the announcement's milliseconds on a loaded machine.
REARM_EVERY_S = 0.1
TAKEOVER_WAIT_S = 30.0  # for the standby to be active after the kill, on a busy 2-core box


@dataclass
class Takeover:
    """What the stream check needs: the last seq before the kill, and the two accounts."""

    killed_after_seq: int = 0
    diligent: int = 0
    lazy: int = 0


def test_a_switch_shorter_than_a_core_takeover_keeps_a_re_arming_maker_s_orders(
    cluster: LocalCluster,
) -> None:
    """kill -9 of the active core, two accounts' switches armed for 1 s: `us` re-arms every
    0.1 s through B (each request held until a core is active, then sent at once), `taker`
    stops. The new core's first record shifts both by the time no core was active
    (`ShiftDeadManDeadlines`): us's orders are kept; taker's are canceled (dms) once its
    remaining time since the last record before the kill has passed after the takeover.
    Before, both switches fired at the takeover, whatever us re-armed. With the shift but no
    announcement, us's held re-arm waited for B's resend timer (sequenced 224-2019 ms after
    the shift, measured) and often came too late: us's switch fired in about half the
    takeovers in 18 tries (it survived 9)."""
    a, b = cluster.gateways
    active = cluster.active_core()
    assert active is not None
    takeover = Takeover()

    async def scenario() -> None:
        diligent, lazy = await client(b.url, "us"), await client(a.url, "taker")
        arm = {"timeout_ms": TAKEOVER_SWITCH_MS}
        stopping = asyncio.Event()

        async def rearm() -> None:  # until stopped: bounded by the scenario's TIMEOUT_S
            while not stopping.is_set():
                with contextlib.suppress(VenueError):  # a 504 OUTCOME_UNKNOWN: re-armed anew
                    await diligent.request("orders.cancel_after", arm)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), REARM_EVERY_S)

        try:
            takeover.diligent = (await diligent.request("session.status"))["account"]
            takeover.lazy = (await lazy.request("session.status"))["account"]
            kept = (await diligent.place(DMS_BILL, "buy", "100", "98.200000"))["order_id"]
            canceled = (await lazy.place(SYMBOL, "buy", "1", "180.00"))["order_id"]
            await diligent.request("orders.cancel_after", arm)
            await lazy.request("orders.cancel_after", arm)
            takeover.killed_after_seq = await stream_last_seq(cluster)
            cluster.kill(active)
            rearming = asyncio.create_task(rearm())
            await dms_pushes(lazy, TAKEOVER_WAIT_S + TAKEOVER_SWITCH_MS / 1_000 + DMS_WAIT_S)
            stopping.set()
            await rearming
            status = await lazy.order_status(canceled)
            assert (status["status"], status["reason"]) == ("canceled", "dms")
            orders = (await diligent.open_orders(DMS_BILL))["orders"]
            assert kept in [o["order_id"] for o in orders], "the re-armed switch fired"
            pushes = await drain_pushes(diligent, 0.05)
            assert [p for p in pushes if p.get("type") == "dms.triggered"] == []
            await diligent.request("orders.cancel_after", {"timeout_ms": 0})  # for later tests
            await diligent.cancel(kept)
        finally:
            await diligent.close()
            await lazy.close()

    run(scenario())
    cluster.start_role(active)  # back as the standby
    cluster.wait_for(active, "waiting for the lease")
    check_shift_in_the_stream(cluster, takeover)


async def stream_last_seq(cluster: LocalCluster) -> int:
    connection = await nats.connect(servers=server_list(cluster.nats.url))
    try:
        info = await connection.jetstream(timeout=5.0).stream_info(STREAM_DEFAULT)
        return int(info.state.last_seq)
    finally:
        await connection.close()


def check_shift_in_the_stream(cluster: LocalCluster, takeover: Takeover) -> None:
    """The journal's times: the new core's first record shifts the lazy switch, whose
    deadline fell while no core was active, by that time, so it fires its remaining time
    (since the last record before the kill) after the takeover, and not before; the
    diligent's never fires."""
    pairs = stream_records(cluster)
    records = [record for _, record in pairs]
    at = next(
        i
        for i, (seq, r) in enumerate(pairs)
        if seq > takeover.killed_after_seq and isinstance(r.command, ShiftDeadManDeadlines)
    )
    shift = records[at].command
    assert shift.since_us == records[at - 1].command.ts_us, "from the last record before"
    lazy_arm = [
        r.command
        for r in records[:at]
        if isinstance(r.command, ArmDeadMan) and r.command.account == takeover.lazy
    ][-1]
    deadline_us = lazy_arm.ts_us + TAKEOVER_SWITCH_MS * 1_000
    assert shift.since_us < deadline_us < shift.ts_us, "the deadline fell in the outage"
    shifted_us = deadline_us + shift.ts_us - shift.since_us
    config = venue_config.load(SAMPLE_CONFIG)
    staleness_us = venue_config.reserve_staleness_max_us(config)
    venue = Venue(EngineConfig(reserve_staleness_max_us=staleness_us), Ledger())
    fired: list[DeadManTriggered] = []
    for i, record in enumerate(records):
        events = venue.execute(record.command)
        if i == at:
            assert DeadManArmed(shift.ts_us, takeover.lazy, shifted_us) in events
        if i >= at:
            fired += [e for e in events if isinstance(e, DeadManTriggered)]
    ours = [e for e in fired if e.account in (takeover.lazy, takeover.diligent)]
    assert [e.account for e in ours] == [takeover.lazy], "the diligent's never fired"
    assert ours[0].ts_us >= shifted_us


def test_case_twin_assets_listed_at_once_through_a_gateway_list_one(
    cluster: LocalCluster,
) -> None:
    """Each gateway checks a listing against its own replica, which learns of a listing only
    once the core's record comes back: two case twins sent back to back both passed that
    check, and both were listed. The engine checks again where listings are serialized."""
    gateway = cluster.gateways[0]

    async def scenario() -> list[dict[str, Any]]:
        admin = await client(gateway.url, "admin")
        try:
            return await asyncio.gather(
                *(
                    admin.request_raw("admin.list_asset", {"code": code, "scale": 2})
                    for code in ("Twin", "TWIN")
                )
            )
        finally:
            await admin.close()

    listed, twin = run(scenario())
    assert listed["status"] == 200, listed
    assert twin["status"] == 400 and twin["error"]["name"] == "ASSET_EXISTS", twin
    assert "differs from it only by case" in twin["error"]["msg"], twin


# ----------------------------------------------------------------- the trades tape

TAPE_SYMBOL = "SPYx-USD"  # this test's own book


def test_a_restarted_gateway_shows_the_trades_tape_it_showed_before(cluster: LocalCluster) -> None:
    """A gateway keeps no snapshot: it rebuilds the tape from the stream at its start."""
    a, b = cluster.gateways

    async def trade_and_read() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        maker, taker = await client(a.url, "alpha"), await client(a.url, "taker")
        try:
            for price in ("598.10", "598.20", "598.30"):
                await maker.place(TAPE_SYMBOL, "sell", "0.5", price)
            await taker.place(TAPE_SYMBOL, "buy", "1.5", "598.30", tif="ioc")  # a sweep
            await maker.place(TAPE_SYMBOL, "buy", "0.2", "598.00")
            await taker.place(TAPE_SYMBOL, "sell", "0.2", "598.00", tif="ioc")
        finally:
            await maker.close()
            await taker.close()
        for _ in range(100):  # bounded: gateway b publishes the stream's trades at once
            tape = await read_tape(b.port, TAPE_SYMBOL)
            if len(tape[0]) == 4:
                return tape
            await asyncio.sleep(0.1)
        raise AssertionError(f"gateway b shows {tape[0]}")

    rest, snapshot = run(trade_and_read())
    assert rest == snapshot
    assert [(t["price"], t["taker_side"]) for t in rest] == [
        ("598.10", "buy"), ("598.20", "buy"), ("598.30", "buy"), ("598.00", "sell"),
    ]  # fmt: skip
    cluster.kill(b)
    cluster.start_role(b)
    cluster.wait_for(b, "replica at seq", timeout_s=120)
    assert run(read_tape(b.port, TAPE_SYMBOL)) == (rest, rest)


# ----------------------------------------------------------------- operators' retries


def test_a_deposit_sent_through_both_gateways_under_one_cl_op_id_is_done_once(
    cluster: LocalCluster,
) -> None:
    """An operator's retry may go through another gateway than the first try (a gateway
    dropped the connection): the engine, where the core puts commands in order, remembers
    the id, so of two copies sent at once through each gateway one deposits and the other
    answers that it was done; the account is credited once."""
    deposit = {"account": 2, "asset": "USD", "amount": "123", "cl_op_id": "cluster-dep-1"}

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        admins = [await client(gateway.url, "admin") for gateway in cluster.gateways]
        beta = await client(cluster.gateways[0].url, "beta")
        try:
            before = await beta.balances()
            answers = await asyncio.gather(
                *(admin.request_raw("admin.deposit", deposit) for admin in admins)
            )
            await asyncio.sleep(0.5)  # both replicas have the record
            return answers, [before, await beta.balances()]
        finally:
            for connected in (*admins, beta):
                await connected.close()

    answers, (before, after) = run(scenario())
    assert [a["status"] for a in answers] == [200, 200], answers
    assert sorted("repeated" in a["result"] for a in answers) == [False, True], answers
    had = {b["asset"]: float(b["total"]) for b in before["balances"]}
    has = {b["asset"]: float(b["total"]) for b in after["balances"]}
    assert has["USD"] - had.get("USD", 0.0) == 123  # once, not twice
