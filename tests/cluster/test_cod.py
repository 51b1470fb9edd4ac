"""Cancel-on-disconnect when a cluster gateway dies: its lease lapses, the active core cancels.

First the pure part (`CodOrders`, core/cluster_core.py), then real processes (cluster/local.py:
one NATS node, SQLite ledgers, an active core and a standby, two gateways, one cluster for the
module): a gateway killed with -9, then the gateway and the active core together, then a
gateway whose lease is taken from it. Each test uses prices of its own.
"""

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from typing import Any

import nats
import pytest
from websockets.exceptions import ConnectionClosed

from client.sdk import VenueClient
from cluster.local import LocalCluster, Role
from core.cluster_core import GATEWAY_SCAN_S, PRUNE_MIN, CodOrders, CoreGatewayPart
from core.lease import key_held
from core.nats_bus import GATEWAY_LEASE_BUCKET, GATEWAY_LEASE_TTL_S, ClusterCodec, Origin
from core.sequencer import Executed
from engine.book import Order
from engine.commands import CancelOrder, PlaceOrder, SetCancelOnDisconnect
from engine.enums import OrderStatus, OrderType, SelfTradePrevention, Side, TimeInForce
from engine.events import CancelOnDisconnectSet, Event, OrderAccepted
from tests.cluster.running import local_cluster
from tests.conftest import KEYS, drain_pushes

SYMBOL = "AAPLx-USD"
STP = SelfTradePrevention.EXPIRE_TAKER
TIMEOUT_S = 120
# The cancels are journaled within the lease's TTL and a scan or two of the core: wait well
# past that on a busy machine (a bound on the test, not a timing it asserts).
CANCELED_WITHIN_S = GATEWAY_LEASE_TTL_S + 20
TAKEOVER_WITHIN_S = 2 * GATEWAY_LEASE_TTL_S + 30  # the core's lease, then the gateway's


# -- which gateway placed which cod order (pure) ------------------------------------------------


def place(cod: bool) -> PlaceOrder:
    return PlaceOrder(account=1, symbol=SYMBOL, side=Side.BUY, price=100, qty=1, cod=cod)


def accepted(order_id: int) -> list[Event]:
    return [
        OrderAccepted(
            ts_us=0,
            order_id=order_id,
            account=1,
            symbol=SYMBOL,
            side=Side.BUY,
            order_type=OrderType.LIMIT,
            tif=TimeInForce.GTC,
            price=100,
            qty=1,
            quote_qty=0,
            post_only=False,
            stp=STP,
            cl_ord_id=None,
            tag=None,
            expire_at_us=0,
        )
    ]


def open_orders(*order_ids: int) -> dict[int, Order]:
    return {
        order_id: Order(
            order_id=order_id,
            account=1,
            symbol=SYMBOL,
            side=Side.BUY,
            order_type=OrderType.LIMIT,
            tif=TimeInForce.GTC,
            price=100,
            qty=1,
            leaves_qty=1,
            cum_qty=0,
            filled_value=0,
            post_only=False,
            stp=STP,
            cl_ord_id=None,
            tag=None,
            expire_at_us=0,
            status=OrderStatus.NEW,
            cod=True,
        )
        for order_id in order_ids
    }


def test_cod_orders_are_noted_per_gateway_only_when_placed_with_cod_on() -> None:
    cod = CodOrders()
    cod.note(Origin("gw-a.1", 1), place(True), accepted(10))
    cod.note(Origin("gw-a.1", 2), place(False), accepted(11))  # cod off: stays open
    cod.note(Origin("gw-b.2", 1), place(True), accepted(12))
    cod.note(Origin("", 0), place(True), accepted(13))  # the core's own: no gateway
    cod.note(Origin("gw-a.1", 3), place(True), [])  # refused: no order
    cod.note(Origin("gw-a.1", 4), CancelOrder(account=1, order_id=10), [])
    orders = open_orders(10, 11, 12, 13)
    assert [order.order_id for order in cod.open_orders_of("gw-a.1", orders)] == [10]
    assert [order.order_id for order in cod.open_orders_of("gw-b.2", orders)] == [12]
    assert cod.open_orders_of("gw-c.3", orders) == []


def remark(cod: bool, *order_ids: int) -> tuple[SetCancelOnDisconnect, list[Event]]:
    """A connection of account 1 turned cod on or off: the command, and its event naming
    the orders that were open."""
    command = SetCancelOnDisconnect(account=1, cod=cod, order_ids=order_ids)
    return command, [CancelOnDisconnectSet(0, 1, cod, order_ids)]


def test_a_remark_adds_or_takes_away_the_gateways_cod_orders() -> None:
    """A session that turns cod on marks the open orders it placed (through its gateway), one
    that turns it off unmarks them: the gateway's death cancels what its closes would."""
    cod = CodOrders()
    cod.note(Origin("gw-a.1", 1), place(False), accepted(10))  # cod off: not noted
    cod.note(Origin("gw-a.1", 2), place(True), accepted(11))
    cod.note(Origin("gw-b.2", 1), place(True), accepted(12))
    cod.note(Origin("gw-a.1", 3), *remark(True, 10))  # turned on: 10 is canceled too
    cod.note(Origin("gw-a.1", 4), *remark(False, 11))  # turned off: 11 is kept
    cod.note(Origin("gw-b.2", 2), *remark(False, 13))  # no order of its own noted: nothing
    cod.note(Origin("", 0), *remark(True, 14))  # the core's own: no gateway
    orders = open_orders(10, 11, 12, 13, 14)
    assert [order.order_id for order in cod.open_orders_of("gw-a.1", orders)] == [10]
    assert [order.order_id for order in cod.open_orders_of("gw-b.2", orders)] == [12]
    cod.prune(orders)
    assert cod.by_gateway == {"gw-a.1": {10}, "gw-b.2": {12}} and cod.size == 2


def test_a_mark_from_another_gateway_moves_the_orders_to_it() -> None:
    """A connection on gw-b requoted quotes placed through gw-a and took their cod: gw-b's
    death cancels them now, and gw-a's no longer does (session 29: before, the mark added
    them to gw-b's set and left them in gw-a's, so gw-a's lease lapsing canceled them)."""
    cod = CodOrders()
    cod.note(Origin("gw-a.1", 1), place(True), accepted(10))
    cod.note(Origin("gw-a.1", 2), place(True), accepted(11))
    cod.note(Origin("gw-b.2", 1), *remark(True, 10))
    orders = open_orders(10, 11)
    assert [order.order_id for order in cod.open_orders_of("gw-a.1", orders)] == [11]
    assert [order.order_id for order in cod.open_orders_of("gw-b.2", orders)] == [10]


def test_a_cod_cancel_is_refused_when_the_order_s_cod_is_another_gateway_s() -> None:
    """Whose cod each order is, as the active core reads it at a cod cancel's turn: the
    gateway that placed it with cod on, or marked it last (a requote there took it), or
    unmarked it after taking it; an unmark sent through a gateway that had not heard of
    another's mark leaves the order that one's. An order no record named is the sender's
    (placed with cod off: its connection turned cod on and closed before the outcome)."""
    cod = CodOrders()
    for order_id in (10, 11, 12, 13):
        cod.note(Origin("gw-a.1", order_id), place(True), accepted(order_id))
    cod.note(Origin("gw-b.2", 1), *remark(True, 11, 12, 13))  # a requote on gw-b took them
    cod.note(Origin("gw-b.2", 2), *remark(False, 12))  # and turned cod off for one
    cod.note(Origin("gw-a.1", 5), *remark(False, 13))  # gw-a had not heard: 13 is gw-b's
    assert [cod.refuses("gw-a.1", order_id) for order_id in (10, 11, 12, 13, 14)] == [
        False,
        True,
        True,
        True,
        False,
    ]
    assert [cod.refuses("gw-b.2", order_id) for order_id in (10, 11, 12, 13, 14)] == [
        True,
        False,
        False,
        False,
        False,
    ]
    cod.note(Origin("gw-a.1", 6), *remark(True, 11))  # a requote on gw-a took 11 back
    assert not cod.refuses("gw-a.1", 11) and cod.refuses("gw-b.2", 11)
    again = CodOrders()
    again.restore(cod.image(), cod.holders_image())
    assert again.holders == cod.holders and again.by_gateway == cod.by_gateway
    older = CodOrders()  # a snapshot written before the holders: the marked ones' only
    older.restore(cod.image())
    assert older.holders == {10: "gw-a.1", 11: "gw-a.1", 13: "gw-b.2"}
    cod.prune(open_orders(11))  # (the holders of closed orders stay until they doubled)
    assert cod.image() == [("gw-a.1", [11])] and cod.holders[11] == "gw-a.1"


def test_closed_orders_are_not_returned_and_pruning_forgets_them() -> None:
    cod = CodOrders()
    for order_id in range(1, 4):
        cod.note(Origin("gw-a.1", order_id), place(True), accepted(order_id))
    cod.note(Origin("gw-b.2", 1), place(True), accepted(4))
    orders = open_orders(2)
    assert [order.order_id for order in cod.open_orders_of("gw-a.1", orders)] == [2]
    cod.prune(orders)
    assert cod.by_gateway == {"gw-a.1": {2}} and cod.size == 1


def test_the_map_is_pruned_once_it_grows_past_its_bound() -> None:
    cod = CodOrders()
    for order_id in range(1, PRUNE_MIN + 1):
        cod.note(Origin("gw-a.1", order_id), place(True), accepted(order_id))
        cod.prune_when_grown(open_orders(order_id))  # only the last one is open
    assert cod.size == 1


def test_the_holders_are_pruned_only_once_they_doubled() -> None:
    """The gateway scan prunes every second: the holders (one per cod order) are rebuilt
    only once they doubled since their last prune, not on every scan (100k open cod orders:
    each scan's prune took about twice main's). Bound: twice the open ones, or `PRUNE_MIN`."""
    cod = CodOrders()
    for order_id in range(1, PRUNE_MIN):
        cod.note(Origin("gw-a.1", order_id), place(True), accepted(order_id))
    cod.prune(open_orders(1))
    assert cod.image() == [("gw-a.1", [1])]
    assert len(cod.holders) == PRUNE_MIN - 1  # not grown to its bound: left as it was
    for order_id in range(PRUNE_MIN, 2 * PRUNE_MIN):
        cod.note(Origin("gw-a.1", order_id), place(True), accepted(order_id))
        cod.prune(open_orders(1, order_id))
        assert len(cod.holders) <= 2 * PRUNE_MIN
    assert not cod.refuses("gw-a.1", 1) and cod.refuses("gw-b.2", 1)


def test_the_image_restores_the_same_map() -> None:
    cod = CodOrders()
    cod.note(Origin("gw-b.2", 1), place(True), accepted(7))
    cod.note(Origin("gw-a.1", 1), place(True), accepted(5))
    again = CodOrders()
    again.restore(cod.image())
    assert again.by_gateway == cod.by_gateway and again.image() == [
        ("gw-a.1", [5]),
        ("gw-b.2", [7]),
    ]


def test_every_core_derives_the_map_alike_live_and_from_a_replay() -> None:
    """The active core notes a place with its live origin; a replay (no origin on the
    outcome) with the origin of the record just decoded."""
    command = place(True)
    live_codec = ClusterCodec()
    live = CoreGatewayPart(live_codec, CodOrders())
    live.executed(Executed(1, command, accepted(5), Origin("gw-a.1", 1)))
    payload = live_codec.encode(Executed(1, command, [], Origin("gw-a.1", 1)))
    replay_codec = ClusterCodec()
    replaying = CoreGatewayPart(replay_codec, CodOrders())
    decoded = replay_codec.decode(payload)
    replaying.executed(Executed(1, decoded, accepted(5), None))  # as `Sequencer.recover` calls
    replaying.replayed([Executed(1, decoded, accepted(5), None)])
    assert live.cod_orders.by_gateway == replaying.cod_orders.by_gateway == {"gw-a.1": {5}}
    restored = CoreGatewayPart(ClusterCodec(), CodOrders())
    restored.restore_gateway(live.gateway_image())
    assert restored.cod_orders.by_gateway == {"gw-a.1": {5}}
    # a re-mark, live and replayed, and its image
    unmark, unmarked = remark(False, 5)
    mark, marked = remark(True, 6)
    for seq, (command, events) in enumerate(((unmark, unmarked), (mark, marked)), start=2):
        live.executed(Executed(seq, command, events, Origin("gw-a.1", seq)))
        payload = live_codec.encode(Executed(seq, command, [], Origin("gw-a.1", seq)))
        decoded = replay_codec.decode(payload)
        replaying.replayed([Executed(seq, decoded, events, None)])
    assert live.cod_orders.by_gateway == replaying.cod_orders.by_gateway == {"gw-a.1": {6}}
    restored.restore_gateway(live.gateway_image())
    assert restored.cod_orders.by_gateway == {"gw-a.1": {6}}


# -- real processes ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster("cod", nats_nodes=1, postgres=False, cores=2, gateways=2) as running:
        yield running


def run(scenario: Any) -> Any:
    return asyncio.run(asyncio.wait_for(scenario, TIMEOUT_S))


async def client(url: str, who: str) -> VenueClient:
    # The gateway's own close is under test (a frozen one's 1012, say): the SDK's drop of a
    # connection silent 10 s would come first, so it is off.
    connected = await VenueClient(url, silence_timeout_s=None).connect()
    await connected.logon(*KEYS[who])
    return connected


async def held(who: VenueClient) -> dict[str, str]:
    rows = (await who.request("balances"))["balances"]
    return {row["asset"]: row["held"] for row in rows}


async def open_ids(who: VenueClient) -> list[int]:
    return sorted(order["order_id"] for order in (await who.open_orders(SYMBOL))["orders"])


async def cod_cancels(watcher: VenueClient, count: int, within_s: float) -> list[dict[str, Any]]:
    """The exec reports canceling with reason cod that arrive on `watcher`'s private stream,
    until `count` have come (bounded by `within_s`)."""
    canceled: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while len(canceled) < count and (left := deadline - loop.time()) > 0:
        try:
            push = await watcher.next_push(left)
        except TimeoutError:
            break
        data = push.get("data", {}) if push.get("type") == "exec" else {}
        if data.get("exec_type") == "canceled" and data.get("reason") == "cod":
            canceled.append(data)
    return canceled


async def pushes_for(watcher: VenueClient, seconds: float) -> list[dict[str, Any]]:
    pushes: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            pushes.append(await watcher.next_push(left))
        except TimeoutError:
            break
    return pushes


async def place_both_kinds(url: str, price: str) -> tuple[VenueClient, VenueClient, list[int]]:
    """On `url`: alpha with cod on rests two buys, beta with cod off rests one sell; the ids
    of alpha's orders."""
    alpha = await client(url, "alpha")
    beta = await client(url, "beta")
    await alpha.request("session.cod", {"enabled": True})
    ids = [(await alpha.place(SYMBOL, "buy", "1", price))["order_id"] for _ in range(2)]
    sell = await beta.place(SYMBOL, "sell", "1", "999.00")
    assert sell["status"] == "new"
    return alpha, beta, ids


async def watch(url: str, who: str) -> VenueClient:
    watcher = await client(url, who)
    await watcher.subscribe_account()
    await drain_pushes(watcher)  # the snapshot
    return watcher


def restart(cluster: LocalCluster, gateway: Role) -> None:
    cluster.start_role(gateway)
    cluster.wait_for(gateway, "replica at seq", timeout_s=120)


def test_kill_9_of_a_gateway_cancels_its_cod_sessions_orders_and_no_others(
    cluster: LocalCluster,
) -> None:
    a, b = cluster.gateways

    async def scenario() -> None:
        watcher = await watch(b.url, "alpha")
        held_before = await held(watcher)
        alpha, beta, ids = await place_both_kinds(a.url, "150.00")
        assert await held(alpha) != held_before  # the buys hold cash
        beta_open = await open_ids(beta)
        await asyncio.to_thread(cluster.kill, a)  # both sessions still open on it
        canceled = await cod_cancels(watcher, len(ids), CANCELED_WITHIN_S)
        assert sorted(report["order_id"] for report in canceled) == ids
        assert not set(ids) & set(await open_ids(watcher))
        assert await held(watcher) == held_before  # the holds are released
        beta_on_b = await client(b.url, "beta")
        assert await open_ids(beta_on_b) == beta_open  # cod off: it stays open
        for each in (watcher, beta_on_b, alpha, beta):
            await each.close()

    run(scenario())
    active = cluster.active_core()
    assert active is not None and "its cod orders canceled" in active.log()
    restart(cluster, a)


def test_kill_9_of_a_gateway_cancels_what_the_closes_would_once_sessions_turned_cod_on_or_off(
    cluster: LocalCluster,
) -> None:
    """The marks follow `session.cod` through the stream (`SetCancelOnDisconnect`), so the
    core cancels, at the gateway's death, what the sessions' closes would have: an order
    placed with cod off by a session that turned it on since (and one whose place was still
    on its way to the core when it did: marked when it came back), not one placed with cod
    on by a session that turned it off since."""
    a, b = cluster.gateways
    active = cluster.active_core()
    assert active is not None and active.process is not None

    async def scenario() -> None:
        watcher = await watch(b.url, "alpha")
        on_later = await client(a.url, "alpha")
        off_later = await client(a.url, "alpha")
        in_flight = await client(a.url, "alpha")
        marked = [(await on_later.place(SYMBOL, "buy", "1", "156.00"))["order_id"]]
        assert await on_later.request("session.cod", {"enabled": True}) == {"enabled": True}
        await off_later.request("session.cod", {"enabled": True})
        kept = (await off_later.place(SYMBOL, "buy", "1", "156.10"))["order_id"]
        assert await off_later.request("session.cod", {"enabled": False}) == {"enabled": False}
        active.process.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
        try:
            placing = asyncio.ensure_future(in_flight.place(SYMBOL, "buy", "1", "156.20"))
            await asyncio.sleep(0.5)  # sent to the core, which sequences nothing now
            turning_on = asyncio.ensure_future(
                in_flight.request("session.cod", {"enabled": True})  # nothing back to mark yet
            )
            await asyncio.sleep(0.2)
        finally:
            active.process.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
        marked.append((await placing)["order_id"])
        assert await turning_on == {"enabled": True}
        await in_flight.open_orders(SYMBOL)  # behind its re-mark, sent as the place came back
        await asyncio.to_thread(cluster.kill, a)
        canceled = await cod_cancels(watcher, len(marked), CANCELED_WITHIN_S)
        assert sorted(report["order_id"] for report in canceled) == marked
        later = await pushes_for(watcher, 3 * GATEWAY_SCAN_S)  # the core's scans, after
        assert [p for p in later if p.get("data", {}).get("exec_type") == "canceled"] == []
        still_open = await open_ids(watcher)
        assert kept in still_open and not set(marked) & set(still_open)
        await watcher.request("order.cancel", {"order_id": kept})
        for each in (watcher, on_later, off_later, in_flight):
            await each.close()

    run(scenario())
    restart(cluster, a)


def test_a_core_taking_over_cancels_the_cod_orders_of_a_gateway_that_died_meanwhile(
    cluster: LocalCluster,
) -> None:
    a, b = cluster.gateways
    active = cluster.active_core()
    assert active is not None
    standby = next(core for core in cluster.cores if core is not active)

    async def scenario() -> None:
        watcher = await watch(b.url, "alpha")
        alpha, beta, ids = await place_both_kinds(a.url, "151.00")
        await asyncio.to_thread(cluster.kill, a)
        await asyncio.to_thread(cluster.kill, active)  # no core active when the lease expires
        canceled = await cod_cancels(watcher, len(ids), TAKEOVER_WITHIN_S)
        assert sorted(report["order_id"] for report in canceled) == ids
        assert not set(ids) & set(await open_ids(watcher))
        for each in (watcher, alpha, beta):
            await each.close()

    run(scenario())
    assert "active at seq" in standby.log() and "its cod orders canceled" in standby.log()
    cluster.start_role(active)  # back as the standby
    cluster.wait_for(active, "waiting for the lease")
    restart(cluster, a)


def test_a_clean_stop_of_a_gateway_releases_its_lease_and_cancels_its_cod_orders_once(
    cluster: LocalCluster,
) -> None:
    """SIGTERM: the sessions' close cancels their cod orders (as in one process), durably,
    then the lease is released at once (not left to expire); nothing is canceled twice."""
    a, b = cluster.gateways

    async def scenario() -> None:
        key = await gateway_key(cluster, a)
        watcher = await watch(b.url, "alpha")
        alpha, beta, ids = await place_both_kinds(a.url, "153.00")
        beta_open = await open_ids(beta)
        nc = await nats.connect(cluster.nats.url)
        try:
            assert await key_held(nc.jetstream(), GATEWAY_LEASE_BUCKET, key)
            assert await asyncio.to_thread(cluster.terminate, a) == 0
            assert not await key_held(nc.jetstream(), GATEWAY_LEASE_BUCKET, key)  # no TTL wait
        finally:
            await nc.close()
        canceled = await cod_cancels(watcher, len(ids), CANCELED_WITHIN_S)
        assert sorted(report["order_id"] for report in canceled) == ids
        later = await pushes_for(watcher, 3 * GATEWAY_SCAN_S)  # the core's scans, after
        assert [p for p in later if p.get("data", {}).get("exec_type") == "rejected"] == []
        beta_on_b = await client(b.url, "beta")
        assert await open_ids(beta_on_b) == beta_open
        for each in (watcher, beta_on_b, alpha, beta):
            await each.close()

    run(scenario())
    assert "stopped cleanly" in a.log()
    restart(cluster, a)


async def gateway_key(cluster: LocalCluster, gateway: Role) -> str:
    """The id (and lease key) the gateway's log names for its current start."""
    line = next(line for line in gateway.log().splitlines() if "holding the gateway lease" in line)
    return line.rsplit("gateway=", 1)[1].split()[0]


def test_a_gateway_frozen_past_its_lease_closes_its_sessions_with_1012_then_serves_again(
    cluster: LocalCluster,
) -> None:
    """SIGSTOP past the TTL (a frozen machine, a long pause: cut off): the core cancels the
    gateway's cod orders meanwhile; woken, the gateway finds its term over, closes its
    sessions (1012) and serves again once it holds its lease again."""
    a, b = cluster.gateways

    async def scenario() -> None:
        key = await gateway_key(cluster, a)
        watcher = await watch(b.url, "alpha")
        alpha, beta, ids = await place_both_kinds(a.url, "154.00")
        beta_open = await open_ids(beta)
        assert a.process is not None
        a.process.send_signal(signal.SIGSTOP)
        try:
            canceled = await cod_cancels(watcher, len(ids), CANCELED_WITHIN_S)
        finally:
            a.process.send_signal(signal.SIGCONT)
        assert sorted(report["order_id"] for report in canceled) == ids
        for session in (alpha, beta):
            assert session.websocket is not None
            await asyncio.wait_for(session.websocket.wait_closed(), CANCELED_WITHIN_S)
            assert session.websocket.close_code == 1012
            assert session.websocket.close_reason == "gateway lost its lease"
        beta_again = None
        for _ in range(100):  # closed at once (1012) until it holds its lease again
            try:
                beta_again = await client(a.url, "beta")
                break
            except (ConnectionError, ConnectionClosed):
                await asyncio.sleep(0.1)
        assert beta_again is not None, "the gateway never served again"
        assert await open_ids(beta_again) == beta_open  # cod off: it stays open
        nc = await nats.connect(cluster.nats.url)
        try:
            assert await key_held(nc.jetstream(), GATEWAY_LEASE_BUCKET, key)
        finally:
            await nc.close()
        for each in (watcher, alpha, beta, beta_again):
            await each.close()

    run(scenario())
    assert "gateway lease lost" in a.log()
    for role in [*cluster.gateways, *cluster.cores]:
        assert "Traceback" not in role.log(), role.name


def test_a_cod_place_whose_session_closed_before_its_outcome_came_back_is_canceled(
    cluster: LocalCluster,
) -> None:
    """Over NATS a place's outcome comes back a hop later: a session that closes meanwhile
    (the core paused here; a lost lease, a client gone) has its order canceled when it does."""
    a, b = cluster.gateways
    active = cluster.active_core()
    assert active is not None and active.process is not None

    async def scenario() -> None:
        watcher = await watch(b.url, "alpha")
        alpha = await client(a.url, "alpha")
        await alpha.request("session.cod", {"enabled": True})
        active.process.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
        try:
            placing = asyncio.ensure_future(alpha.place(SYMBOL, "buy", "1", "155.00"))
            await asyncio.sleep(0.5)  # sent to the core, which sequences nothing now
            await alpha.close()  # its cod cancels: nothing placed yet
            with contextlib.suppress(ConnectionError):
                await placing
        finally:
            active.process.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
        canceled = await cod_cancels(watcher, 1, CANCELED_WITHIN_S)
        assert [report["price"] for report in canceled] == ["155.00"]
        await watcher.close()

    run(scenario())
