"""A quote set is the account's on every gateway of a cluster, not the gateway's it was quoted on.

A market maker whose gateway dies resumes on another (the SDK's `auto_resume`, the bots) and
requotes its set there. That gateway knew only the quotes placed through itself, so it
placed a second quote per side beside the first (both live until the dead gateway's lease
lapsed, ~11 s: twice the size the maker meant to show), and `orders.cancel_all {quote_set}`
through it canceled none of them. Found by session 29's market-maker trial.

Real parts: one nats-server, a `ClusterCore` and two gateways in this process, websocket
clients.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from client.sdk import VenueClient
from cluster.nats import NatsCluster
from core import config as venue_config
from core import nats_bus
from core.cluster_core import ClusterCore
from gateway.server import VenueServer
from tests.conftest import KEYS, drain_pushes
from tests.sample_config import SAMPLE_CONFIG

SYMBOL = "AAPLx-USD"
SCENARIO_TIMEOUT_S = 60
TRIES = 100  # x 0.05 s: for the other gateway's replica to show a command's outcome
RACE_TRIES = 5  # two places sent at once through two gateways: tries until they cross
HISTORY_ROUNDS = 10  # quotes placed and pulled before a gateway starts
QUOTE = {"symbol": SYMBOL, "bid_px": "180.00", "bid_qty": "1", "ask_px": "181.00", "ask_qty": "1"}


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path / "nats", size=1) as started:
        yield started


def gateway(node: NatsCluster, tmp_path: Path, name: str) -> VenueServer:
    """A cluster gateway named `name` on `node`, not started."""
    config = venue_config.load(SAMPLE_CONFIG)

    def new_bus(listener: Any) -> nats_bus.NatsBus:
        return nats_bus.NatsBus(config, node.url, listener, name)

    return VenueServer(config, tmp_path / name, bus=new_bus)


@contextlib.asynccontextmanager
async def core_and_two_gateways(
    node: NatsCluster,
    tmp_path: Path,
    servers: list[VenueServer] | None = None,
    cores: list[ClusterCore] | None = None,
) -> AsyncIterator[list[int]]:
    """An active core and two gateways on `node`: the gateways' ports (the servers appended
    to `servers`, the core to `cores`, when given)."""
    config = venue_config.load(SAMPLE_CONFIG)
    core = ClusterCore(config, tmp_path / "core", node.url, "core-a")
    assert await core.wait_for_lease(asyncio.Event())
    assert await core.activate() is not None
    if cores is not None:
        cores.append(core)
    started: list[VenueServer] = []
    ports = []
    try:
        for name in ("gw-a", "gw-b"):
            started.append(gateway(node, tmp_path, name))
            ports.append(await started[-1].start("127.0.0.1", 0))
        if servers is not None:
            servers.extend(started)
        yield ports
    finally:
        for server in started:
            await server.stop()
        await core.stop()


async def maker_on(port: int) -> VenueClient:
    maker = await VenueClient(f"ws://127.0.0.1:{port}/ws/trade").connect()
    await maker.logon(*KEYS["alpha"])
    await maker.request("session.cod", {"enabled": True})
    return maker


async def open_quotes(
    client: VenueClient, count: int, quote_set: str = "mm"
) -> list[tuple[int, str, str]]:
    """The open orders of `quote_set` (id, side, price) once there are `count` of them."""
    quotes: list[tuple[int, str, str]] = []
    for _ in range(TRIES):
        orders = (await client.open_orders(SYMBOL))["orders"]
        quotes = [
            (o["order_id"], o["side"], o["price"]) for o in orders if o["quote_set"] == quote_set
        ]
        if len(quotes) == count:
            return quotes
        await asyncio.sleep(0.05)
    raise AssertionError(f"not {count} quotes of {quote_set}: {quotes}")


def test_a_requote_through_another_gateway_amends_the_sets_quotes_and_a_mass_cancel_pulls_them(
    node: NatsCluster, tmp_path: Path
) -> None:
    """Quoted through gateway A, requoted through gateway B: B amends A's two quotes (one
    live quote per side, as on one gateway); then `orders.cancel_all {quote_set}` through B
    cancels them both."""

    async def scenario() -> None:
        async with core_and_two_gateways(node, tmp_path) as (port_a, port_b):
            on_a, on_b = await maker_on(port_a), await maker_on(port_b)
            try:
                placed = await on_a.request("quote.mass", {"quote_set": "mm", "quotes": [QUOTE]})
                ids = sorted(entry["result"]["order_id"] for entry in placed["results"])
                assert len(ids) == 2
                await open_quotes(on_b, 2)  # B's replica has both places
                requote = {"quote_set": "mm", "quotes": [QUOTE | {"bid_px": "180.10"}]}
                requoted = await on_b.request("quote.mass", requote)
                assert [entry["result"]["order_id"] for entry in requoted["results"]] == ids[:1]
                quotes = await open_quotes(on_b, 2)
                assert sorted(quotes) == [(ids[0], "buy", "180.10"), (ids[1], "sell", "181.00")]
                pulled = await on_b.request("orders.cancel_all", {"quote_set": "mm"})
                assert pulled == {"canceled": 2}
                await open_quotes(on_a, 0)
            finally:
                await on_a.close()
                await on_b.close()

    asyncio.run(asyncio.wait_for(scenario(), SCENARIO_TIMEOUT_S))


async def raced_places(on_a: VenueClient, on_b: VenueClient, quote_set: str) -> bool:
    """The set quoted through both gateways at once: whether the places crossed (each
    gateway placed before its replica had the other's place: four quotes, two per slot),
    read from the two answers (four order ids placed; else one amended the other's quotes),
    so a try that did not cross costs two requests, not a wait for a count never reached."""
    answers = await asyncio.gather(
        on_a.request("quote.mass", {"quote_set": quote_set, "quotes": [QUOTE]}),
        on_b.request(
            "quote.mass", {"quote_set": quote_set, "quotes": [QUOTE | {"bid_px": "179.00"}]}
        ),
    )
    ids = {entry["result"]["order_id"] for answer in answers for entry in answer["results"]}
    return len(ids) == 4


async def crossed(on_a: VenueClient, on_b: VenueClient, name: str) -> str:
    """A quote set whose places crossed (`raced_places`), once both gateways' replicas have
    its four quotes; tried `RACE_TRIES` times at most: if they never cross, the test fails
    saying so, well within `SCENARIO_TIMEOUT_S`."""
    for attempt in range(RACE_TRIES):
        quote_set = f"{name}{attempt}"
        if await raced_places(on_a, on_b, quote_set):
            for client in (on_a, on_b):  # (each answer came once its own gateway had its own)
                await open_quotes(client, 4, quote_set)
            return quote_set
        await on_a.request("orders.cancel_all", {"quote_set": quote_set})
    raise AssertionError(
        f"the places of {name!r} never crossed in {RACE_TRIES} tries (each time one gateway's"
        " replica had the other's place already): nothing of the race was tested"
    )


def test_places_crossed_on_two_gateways_leave_nothing_unreachable(
    node: NatsCluster, tmp_path: Path
) -> None:
    """Two places of one slot in flight at once through two gateways: both are accepted. Both
    gateways track the same (the later per slot, the earlier beside it); a requote through
    either amends the later and cancels the earlier, so one quote per slot is left; and
    `orders.cancel_all {quote_set}` cancels every open order of the set, tracked or not.
    Before: each gateway tracked the later only, and the earlier stayed open out of reach of
    every gateway's requotes and mass cancels."""

    async def scenario() -> None:
        servers: list[VenueServer] = []
        async with core_and_two_gateways(node, tmp_path, servers) as (port_a, port_b):
            on_a, on_b = await maker_on(port_a), await maker_on(port_b)
            try:
                requoted_set = await crossed(on_a, on_b, "mm")
                four = sorted(await open_quotes(on_b, 4, requoted_set))
                tables = [
                    (placed.quotes, placed.quote_slots, placed.extra_quotes)
                    for placed in (server.dispatcher.placed for server in servers)
                ]
                assert tables[0] == tables[1]  # the same stream, the same tables
                earlier = {side: order_id for order_id, side, _ in reversed(four)}
                extras = [
                    order_id
                    for slot, order_ids in tables[0][2].items()
                    if slot[1] == requoted_set
                    for order_id in order_ids
                ]
                assert sorted(extras) == sorted(earlier.values())  # each side's earlier quote
                later = {side: order_id for order_id, side, _ in four}  # the higher id per side
                requote = QUOTE | {"bid_px": "180.10", "ask_px": "181.10"}
                await on_b.request("quote.mass", {"quote_set": requoted_set, "quotes": [requote]})
                left = await open_quotes(on_a, 2, requoted_set)
                assert sorted(left) == [
                    (later["buy"], "buy", "180.10"),
                    (later["sell"], "sell", "181.10"),
                ]
                pulled_set = await crossed(on_a, on_b, "pull")
                pulled = await on_a.request("orders.cancel_all", {"quote_set": pulled_set})
                assert pulled == {"canceled": 4}
                await open_quotes(on_b, 0, pulled_set)
            finally:
                await on_a.close()
                await on_b.close()

    asyncio.run(asyncio.wait_for(scenario(), SCENARIO_TIMEOUT_S))


def test_a_catching_up_gateway_tracks_no_closed_quote_and_a_live_one_forgets_them(
    node: NatsCluster, tmp_path: Path
) -> None:
    """A gateway's tables of other gateways' quotes hold the open ones only: a live gateway
    forgets a quote once it closes, and one that starts after a history of quotes placed and
    pulled tracks none of them while its replica catches up (nothing is forgotten then:
    before, its tables grew with the whole history), then finds the one set still open."""

    async def scenario() -> None:
        servers: list[VenueServer] = []
        async with core_and_two_gateways(node, tmp_path, servers) as (port_a, _):
            placed_b = servers[1].dispatcher.placed
            on_a = await maker_on(port_a)
            try:
                for _ in range(HISTORY_ROUNDS):
                    await on_a.request("quote.mass", {"quote_set": "old", "quotes": [QUOTE]})
                    await on_a.request("orders.cancel_all", {"quote_set": "old"})
                await on_a.request("quote.mass", {"quote_set": "mm", "quotes": [QUOTE]})
                ids = sorted(order_id for order_id, _, _ in await open_quotes(on_a, 2))
                for _ in range(TRIES):  # B has the last place (and so every close before it)
                    if sorted(placed_b.quote_slots) == ids:
                        break
                    await asyncio.sleep(0.05)
                assert sorted(placed_b.quote_slots) == ids  # the closed ones forgotten
                late = gateway(node, tmp_path, "gw-c")
                await late.core.start()  # caught up with the stream, not yet serving
                try:
                    placed_c = late.dispatcher.placed
                    assert placed_c.quotes == {} and placed_c.quote_slots == {}
                    placed_c.adopt_quotes()  # as `VenueServer.start` does next
                    assert sorted(placed_c.quote_slots) == ids
                finally:
                    await late.core.stop()
            finally:
                await on_a.close()

    asyncio.run(asyncio.wait_for(scenario(), SCENARIO_TIMEOUT_S))


def test_a_requote_through_another_gateway_takes_the_quotes_cancel_on_disconnect(
    node: NatsCluster, tmp_path: Path
) -> None:
    """Quoted through A, requoted through B: the quotes' cod moves to B's connection, so
    A's connection closing leaves them open (before: its close canceled them, reason cod,
    though B requoted them), and B's closing cancels them."""

    async def scenario() -> None:
        async with core_and_two_gateways(node, tmp_path) as (port_a, port_b):
            on_a, on_b = await maker_on(port_a), await maker_on(port_b)
            try:
                await on_a.request("quote.mass", {"quote_set": "mm", "quotes": [QUOTE]})
                ids = sorted(order_id for order_id, _, _ in await open_quotes(on_b, 2))
                requote = {"quote_set": "mm", "quotes": [QUOTE | {"bid_px": "180.10"}]}
                await on_b.request("quote.mass", requote)
                # A command answered through A: A's replica has run B's mark (sequenced before
                # it), so A's close sends no cancel. Closed before that, A still held the cod
                # and its close sent cancels, which the core refuses (the window, protocol.md
                # §4.3: the next test).
                sync = {"quote_set": "sync", "quotes": [QUOTE | {"bid_px": "170.00"}]}
                await on_a.request("quote.mass", sync)
                await on_a.close()
                again_a = await maker_on(port_a)
                try:
                    # a command through A: sequenced after its closed connection's cancels
                    probe = {"quote_set": "probe", "quotes": [QUOTE | {"bid_px": "170.00"}]}
                    await again_a.request("quote.mass", probe)
                    left = sorted(await open_quotes(again_a, 2))
                    assert left == [(ids[0], "buy", "180.10"), (ids[1], "sell", "181.00")]
                    await on_b.close()
                    await open_quotes(again_a, 0)  # B's close canceled them
                finally:
                    await again_a.close()
            finally:
                await on_a.close()
                await on_b.close()

    asyncio.run(asyncio.wait_for(scenario(), SCENARIO_TIMEOUT_S))


class HeldReplica:
    """The records the stream delivers to a gateway's replica, held (its consumer lagging)
    until `release` runs them on it, in order, as they came: the replica itself is real."""

    def __init__(self, server: VenueServer, monkeypatch: pytest.MonkeyPatch) -> None:
        self.replica = cast(nats_bus.Replica, server.core)
        self.run = self.replica._execute
        self.held: list[tuple[int, bytes]] = []
        self.monkeypatch = monkeypatch
        monkeypatch.setattr(self.replica, "_execute", self._hold)

    def _hold(self, seq: int, payload: bytes) -> None:
        self.held.append((seq, payload))

    def release(self) -> None:
        self.monkeypatch.setattr(self.replica, "_execute", self.run)
        for seq, payload in self.held:
            self.run(seq, payload)


async def until(condition: Any, what: str) -> None:
    """Wait until `condition()` holds (bounded: `TRIES`, failing with `what`)."""
    for _ in range(TRIES):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never: {what}")


def test_the_placing_connection_closing_before_its_gateway_heard_of_the_requote_cancels_nothing(
    node: NatsCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window of protocol.md §4.3, made deterministic: A's replica is held from before
    B's requote until A's connection has closed and the cod cancels its close sent (A had
    not heard of B's mark) were sequenced. The core refuses them (the quotes' cod was B's),
    so the requoted quotes stay open, no report of them and no `cod.triggered` reach
    anyone, each gateway's account stream is the same and gap-free, and the core and both
    replicas reach the same state hash. Before: the core ran the cancels, and the quotes B
    had requoted were canceled (reason cod)."""

    async def scenario() -> None:
        servers: list[VenueServer] = []
        cores: list[ClusterCore] = []
        async with core_and_two_gateways(node, tmp_path, servers, cores) as (port_a, port_b):
            core, (server_a, server_b) = cores[0], servers
            gateway_a, gateway_b = server_a.bus.gateway_id, server_b.bus.gateway_id
            on_a, on_b = await maker_on(port_a), await maker_on(port_b)
            watcher = await maker_on(port_a)  # the account's other connection on A
            try:
                await on_a.request("quote.mass", {"quote_set": "mm", "quotes": [QUOTE]})
                ids = sorted(order_id for order_id, _, _ in await open_quotes(on_b, 2))
                await watcher.subscribe_account()
                held = HeldReplica(server_a, monkeypatch)
                requote = {"quote_set": "mm", "quotes": [QUOTE | {"bid_px": "180.10"}]}
                await on_b.request("quote.mass", requote)
                marked_b = core.cod_orders.by_gateway
                await until(lambda: set(ids) <= marked_b.get(gateway_b, set()), "B's mark")
                sent = core.codec.last_request[gateway_a]
                await on_a.close()  # A's tables still give the quotes' cod to this connection
                await until(lambda: core.codec.last_request[gateway_a] == sent + 2, "A's cancels")
                held.release()
                probe = {"quote_set": "probe", "quotes": [QUOTE | {"bid_px": "170.00"}]}
                await watcher.request("quote.mass", probe)  # A has run all before it
                orders = (await watcher.open_orders(SYMBOL))["orders"]
                left = sorted((o["order_id"], o["price"]) for o in orders if o["quote_set"] == "mm")
                assert left == [(ids[0], "180.10"), (ids[1], "181.00")], "canceled cod"
                pushes = await drain_pushes(watcher)
                assert not [p for p in pushes if p.get("type") == "cod.triggered"]
                reports = [p["data"] for p in pushes if p.get("type") == "exec"]
                assert not [r for r in reports if r["exec_type"] == "canceled"]
                assert core.core is not None
                last_seq = core.core.sequencer.last_seq
                replicas = (server_a.core, server_b.core)
                caught_up = "both replicas at the core's last record"
                await until(
                    lambda: all(r.sequencer.last_seq == last_seq for r in replicas), caught_up
                )
                streams = [
                    {a: list(s.entries()) for a, s in server.private_streams.streams.items()}
                    for server in servers
                ]
                assert streams[0] == streams[1]
                for entries in streams[0].values():
                    seqs = [seq for seq, _ in entries]
                    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a gap"
                venues = (core.core.venue, server_a.core.venue, server_b.core.venue)
                assert len({venue.state_hash() for venue in venues}) == 1
            finally:
                for connection in (on_a, on_b, watcher):
                    await connection.close()

    asyncio.run(asyncio.wait_for(scenario(), SCENARIO_TIMEOUT_S))


def no_marks_on_their_way(servers: list[VenueServer]) -> bool:
    """Whether every gateway has had each of its own cod marks back from the stream (a count
    left over would keep an order in a gateway's tables that another's mark took)."""
    return not any(server.dispatcher.placed.own_marks for server in servers)


def test_a_requote_on_the_placing_gateway_sequenced_after_anothers_keeps_the_quotes_cod(
    node: NatsCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """X on A quotes; Y on B requotes (B's mark); Z on A requotes before A heard of B's mark
    (A's mark, sequenced after B's: the core's holder is A); Y closes before B heard of A's
    mark, and the core refuses B's cancels. A, hearing B's mark with its own still on its
    way, keeps the quotes with Z, so Z's close cancels them. Before: A gave them up to B's
    mark, and after X, Y and Z had all closed the quotes stayed open (the reviewer's race)."""

    async def scenario() -> None:
        servers: list[VenueServer] = []
        cores: list[ClusterCore] = []
        async with core_and_two_gateways(node, tmp_path, servers, cores) as (port_a, port_b):
            core, (server_a, server_b) = cores[0], servers
            gateway_a, gateway_b = server_a.bus.gateway_id, server_b.bus.gateway_id
            holders = core.cod_orders.holders
            x, y, z = await maker_on(port_a), await maker_on(port_b), await maker_on(port_a)
            watcher = await maker_on(port_a)  # the account's other connection on A
            try:
                await x.request("quote.mass", {"quote_set": "mm", "quotes": [QUOTE]})
                ids = sorted(order_id for order_id, _, _ in await open_quotes(y, 2))
                held_a = HeldReplica(server_a, monkeypatch)
                requote_b = {"quote_set": "mm", "quotes": [QUOTE | {"bid_px": "180.10"}]}
                await y.request("quote.mass", requote_b)
                await until(lambda: all(holders.get(i) == gateway_b for i in ids), "B's mark")
                held_b = HeldReplica(server_b, monkeypatch)
                requote_a = {"quote_set": "mm", "quotes": [QUOTE | {"bid_px": "180.20"}]}
                answer_z = asyncio.ensure_future(z.request("quote.mass", requote_a))
                await until(lambda: all(holders.get(i) == gateway_a for i in ids), "A's mark")
                sent_b = core.codec.last_request[gateway_b]
                await y.close()  # B still gives the quotes' cod to Y: it sends cancels
                refused = "B's cancels sequenced"
                await until(lambda: core.codec.last_request[gateway_b] == sent_b + 2, refused)
                held_a.release()
                held_b.release()
                await answer_z
                placed_on = server_a.dispatcher.placed.placed_on
                assert [i for i in ids if i not in placed_on] == [], "A gave up Z's quotes"
                await until(lambda: no_marks_on_their_way(servers), "own marks back")
                await x.close()
                probe = {"quote_set": "probe", "quotes": [QUOTE | {"bid_px": "170.00"}]}
                await watcher.request("quote.mass", probe)  # A has run all before it
                await open_quotes(watcher, 2)  # Z's quotes still open: X's close left them
                await z.close()
                await open_quotes(watcher, 0)  # Z's close canceled them
            finally:
                for connection in (x, y, z, watcher):
                    await connection.close()

    asyncio.run(asyncio.wait_for(scenario(), SCENARIO_TIMEOUT_S))


def test_cod_turned_off_and_on_before_the_gateway_heard_of_a_requote_keeps_the_quotes_cod(
    node: NatsCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other order of events that ends with the core's holder A though A heard B's
    mark last: X on A quotes, Y on B requotes (B's mark), and X turns cod off and on before
    A heard of it (A's unmark and mark, sequenced after B's: the core's holder is A). A
    keeps the quotes with X, so X's close cancels them. Before: A gave them up to B's mark
    and B to A's, and after X and Y had closed the quotes stayed open."""

    async def scenario() -> None:
        servers: list[VenueServer] = []
        cores: list[ClusterCore] = []
        async with core_and_two_gateways(node, tmp_path, servers, cores) as (port_a, port_b):
            core, (server_a, server_b) = cores[0], servers
            gateway_a, gateway_b = server_a.bus.gateway_id, server_b.bus.gateway_id
            holders = core.cod_orders.holders
            x, y, watcher = await maker_on(port_a), await maker_on(port_b), await maker_on(port_a)
            try:
                await x.request("quote.mass", {"quote_set": "mm", "quotes": [QUOTE]})
                ids = sorted(order_id for order_id, _, _ in await open_quotes(y, 2))
                held_a = HeldReplica(server_a, monkeypatch)
                requote_b = {"quote_set": "mm", "quotes": [QUOTE | {"bid_px": "180.10"}]}
                await y.request("quote.mass", requote_b)
                await until(lambda: all(holders.get(i) == gateway_b for i in ids), "B's mark")
                sent_a = core.codec.last_request[gateway_a]
                off = asyncio.ensure_future(x.request("session.cod", {"enabled": False}))
                on = asyncio.ensure_future(x.request("session.cod", {"enabled": True}))
                marked = "A's unmark and mark sequenced"
                await until(lambda: core.codec.last_request[gateway_a] == sent_a + 2, marked)
                assert all(holders.get(i) == gateway_a for i in ids)
                held_a.release()
                await off
                await on
                await until(lambda: no_marks_on_their_way(servers), "own marks back")
                probe = {"quote_set": "probe", "quotes": [QUOTE | {"bid_px": "170.00"}]}
                await y.request("quote.mass", probe)  # B has run A's marks
                await y.close()  # B's tables no longer give Y the quotes: no cancel
                await watcher.request("quote.mass", probe)  # A has run all before it
                await open_quotes(watcher, 2)
                await x.close()
                await open_quotes(watcher, 0)  # X's close canceled them
            finally:
                for connection in (x, y, watcher):
                    await connection.close()

    asyncio.run(asyncio.wait_for(scenario(), SCENARIO_TIMEOUT_S))


def test_a_requote_as_one_command_is_applied_by_every_gateway_and_the_standby(
    node: NatsCluster, tmp_path: Path
) -> None:
    """A plain requote through either gateway is one `AmendPair` (its two results share its
    seq): the active core journals it, the other gateway's replica and a standby core's copy
    apply it, and every copy of the venue (the core's, the two replicas', the standby's)
    reaches the same state hash."""

    async def scenario() -> None:
        cores: list[ClusterCore] = []
        servers: list[VenueServer] = []
        async with core_and_two_gateways(node, tmp_path, servers, cores) as (port_a, port_b):
            standby = ClusterCore(venue_config.load(SAMPLE_CONFIG), tmp_path / "b", node.url, "b")
            stopping = asyncio.Event()
            contending = asyncio.create_task(standby.wait_for_lease(stopping))
            on_a, on_b = await maker_on(port_a), await maker_on(port_b)
            try:
                placed = await on_a.request("quote.mass", {"quote_set": "mm", "quotes": [QUOTE]})
                order_ids = [entry["result"]["order_id"] for entry in placed["results"]]
                seqs = []
                for client, cents in ((on_a, 10), (on_b, 20), (on_a, 30)):  # both sides move
                    await open_quotes(client, 2)  # its gateway's replica has the last one
                    moved = QUOTE | {"bid_px": f"180.{cents}", "ask_px": f"181.{cents}"}
                    answer = await client.request(
                        "quote.mass", {"quote_set": "mm", "quotes": [moved]}
                    )
                    pair = {entry["result"]["seq"] for entry in answer["results"]}
                    assert len(answer["results"]) == 2 and len(pair) == 1, answer  # one command
                    amended = [entry["result"]["order_id"] for entry in answer["results"]]
                    assert amended == order_ids, answer  # the bid's entry, then the ask's
                    seqs += pair
                venue = cores[0].core.venue if cores[0].core is not None else None
                assert venue is not None
                last = cores[0].core.sequencer.last_seq  # type: ignore[union-attr]
                assert last >= seqs[-1]  # (after it: the cod marks the requotes took)
                copies = [server.core.venue for server in servers] + [standby.follower.venue]
                for _ in range(TRIES):  # until the replicas and the standby are there
                    if standby.follower.seq == last and all(
                        server.core.last_seq == last for server in servers
                    ):
                        break
                    await asyncio.sleep(0.05)
                assert not standby.follower.broken
                assert {copy.state_hash() for copy in copies} == {venue.state_hash()}
                quotes = await open_quotes(on_b, 2)
                assert sorted(price for _, _, price in quotes) == ["180.30", "181.30"]
            finally:
                await on_a.close()
                await on_b.close()
                stopping.set()
                assert not await contending
                await standby.stop()

    asyncio.run(asyncio.wait_for(scenario(), SCENARIO_TIMEOUT_S))
