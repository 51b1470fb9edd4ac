"""The cluster core's reading of the gateways' messages (core/cluster_core.py): a command it
cannot read (sent by a gateway of a later build) is refused on its own, journaled as refused,
while the other commands of the same message run. A real nats-server (one node, its own ports
and dir) and a `ClusterCore` in this process; the stream read back and replayed as a gateway's
replica (or a core of any later build) replays it; and a real gateway whose client is
answered, and which frees what it held for its refused command (a quote's slot, an amend or
cancel owed)."""

import asyncio
import logging
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import msgspec
import nats
import pytest

from client.sdk import VenueClient
from cluster.nats import NatsCluster
from core import config as venue_config
from core import nats_bus, snapshots
from core.cluster_core import LOGGED_GATEWAYS_MAX, ClusterCore
from core.jetstream_journal import STREAM_DEFAULT, SUBJECT_DEFAULT
from core.nats_bus import (
    CORE_COMMANDS,
    GATEWAY_COMMANDS,
    SUBMIT_SUBJECT,
    Origin,
    Record,
    Submission,
    Submissions,
    decode_record,
    encode_submissions,
)
from engine.commands import (
    AdvanceClock,
    AmendOrder,
    AmendPair,
    AnyCommand,
    ArmDeadMan,
    CancelOrder,
    Command,
    PlaceOrder,
    RefuseCancelOnDisconnect,
    RefuseUnreadCommand,
    SetCancelOnDisconnect,
    SetReserveStaleness,
    ShiftDeadManDeadlines,
    SweepVenueAccount,
)
from engine.enums import CancelReason, Side
from engine.events import CommandRejected, Event, OrderAccepted
from engine.reasons import ErrorCode
from engine.venue import Venue
from gateway.server import VenueServer
from settlement.ledger import Ledger
from tests.conftest import KEYS
from tests.sample_config import SAMPLE_CONFIG

SCENARIO_TIMEOUT_S = 60
SEQUENCED_WAIT_TRIES = 200  # x 0.05 s: the core takes a message within milliseconds
FUTURE_GATEWAY = "gw-later.1"  # a gateway of a later build than the core's
MARKER_GATEWAY = "gw-marker.1"  # sent after it: once sequenced, the message before it was read


class AuditBooks(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """A command of a later build, encoded as its gateway's `NatsBus` would send it: a tagged
    struct (a type this core does not know)."""

    ts_us: int = 0
    account: int


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path / "nats", size=1) as started:
        yield started


def place(cl_ord_id: str) -> PlaceOrder:
    return PlaceOrder(
        account=1,
        symbol="AAPLx-USD",
        side=Side.BUY,
        price=18_000,
        qty=1_000_000,
        cl_ord_id=cl_ord_id,
    )


def message(gateway: str, *commands: Any) -> bytes:
    items = [Submission(n, None, command) for n, command in enumerate(commands, start=1)]
    return encode_submissions(Submissions(gateway, items))


def test_a_command_the_core_cannot_read_is_refused_alone_and_stays_refused_on_replay(
    node: NatsCluster, tmp_path: Path
) -> None:
    """Before: the whole message was dropped as malformed (the places with it too), sent again
    by its gateway every 2 s and dropped again, until a core of a later build took over."""
    config = venue_config.load(SAMPLE_CONFIG)
    unread = cast(AnyCommand, AuditBooks(account=1))
    later = message(FUTURE_GATEWAY, place("before"), unread, place("after"))

    async def scenario() -> tuple[list[Record], Venue]:
        core = ClusterCore(config, tmp_path / "core", node.url, "core-a")
        assert await core.wait_for_lease(asyncio.Event())
        venue_core = await core.activate()
        assert venue_core is not None
        client = await nats.connect(node.url)
        try:
            await client.publish(SUBMIT_SUBJECT, later)
            await client.publish(SUBMIT_SUBJECT, message(MARKER_GATEWAY, place("marker")))
            await client.flush()
            for _ in range(SEQUENCED_WAIT_TRIES):
                if core.codec.last_request.get(MARKER_GATEWAY) == 1:
                    break
                await asyncio.sleep(0.05)
            assert core.codec.last_request.get(MARKER_GATEWAY) == 1, "the marker never ran"
            await venue_core.sequencer.drain()  # every record durable in the stream
            records = await read_stream(client)
        finally:
            await client.close()
        await core.stop()
        return records, venue_core.venue

    records, core_venue = asyncio.run(asyncio.wait_for(scenario(), SCENARIO_TIMEOUT_S))
    sent = [(r.origin.request, r.command) for r in records if r.origin.gateway == FUTURE_GATEWAY]
    assert [request for request, _ in sent] == [1, 2, 3], "each item once, in order"
    assert [type(command) for _, command in sent] == [PlaceOrder, RefuseUnreadCommand, PlaceOrder]
    assert sent[1][1] == RefuseUnreadCommand(ts_us=sent[1][1].ts_us, kind="AuditBooks")

    # The stream replayed (a gateway's replica, a standby, a core of a later build that knows
    # AuditBooks): the places accepted, the unread command refused, the same state.
    rules = snapshots.first_rules(None, venue_config.reserve_staleness_max_us(config))
    replica = Venue(rules, Ledger())
    outcomes: dict[int, list[Event]] = {}
    for record in records:
        events = replica.execute(cast(Command, record.command))
        if record.origin.gateway == FUTURE_GATEWAY:
            outcomes[record.origin.request] = events
    for request in (1, 3):
        assert type(outcomes[request][0]) is OrderAccepted
    refusal = outcomes[2][-1]
    assert type(refusal) is CommandRejected and refusal.reason is ErrorCode.UNSUPPORTED_COMMAND
    assert "cannot read this command ('AuditBooks')" in refusal.detail
    assert replica.state_hash() == core_venue.state_hash()
    placed = {order.cl_ord_id for order in core_venue.orders.values()}
    assert {"before", "after", "marker"} <= placed


CORE_ONLY_SENT: list[Command] = [  # each as a gateway's request 1, by anyone on NATS
    ShiftDeadManDeadlines(since_us=0),  # every switch pushed back by the venue's age: off
    AdvanceClock(),
    SetReserveStaleness(staleness_max_us=1, withdrawals_held=True),
    RefuseUnreadCommand(kind="PlaceOrder"),
    RefuseCancelOnDisconnect(account=1, order_id=1),
]


GATEWAY_A, GATEWAY_B = "gw-a.1", "gw-b.1"


def cod_cancel(order_id: int) -> CancelOrder:
    return CancelOrder(account=1, order_id=order_id, reason=CancelReason.COD)


def test_a_cod_cancel_of_an_order_whose_cod_another_gateway_took_is_refused_alike_on_replay(
    node: NatsCluster, tmp_path: Path
) -> None:
    """gw-a placed three orders with cod on; a connection on gw-b took the cod of two (its
    requote's mark), then turned cod off for one of them. gw-a's cod cancels, sent by a
    close that had not heard of the mark (the window of docs/protocol.md §4.3), are refused
    for those two and journaled as refused; its own third is canceled; gw-b's cod cancel
    cancels the one it holds. Before: gw-a's cancels canceled all three. A replay of the
    stream reaches the core's state hash."""
    config = venue_config.load(SAMPLE_CONFIG)
    sent: dict[str, int] = {}

    async def scenario() -> tuple[list[Record], Venue, list[list[str]]]:
        core = ClusterCore(config, tmp_path / "core", node.url, "core-a")
        assert await core.wait_for_lease(asyncio.Event())
        venue_core = await core.activate()
        assert venue_core is not None
        venue = venue_core.venue
        client = await nats.connect(node.url)

        async def sequenced(gateway: str, command: Command) -> None:
            sent[gateway] = request = sent.get(gateway, 0) + 1
            items = [Submission(request, None, cast(AnyCommand, command))]
            await client.publish(SUBMIT_SUBJECT, encode_submissions(Submissions(gateway, items)))
            for _ in range(SEQUENCED_WAIT_TRIES):
                if core.codec.last_request.get(gateway) == request:
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"{gateway}'s request {request} never ran")

        def still_open() -> list[str]:
            return sorted(str(order.cl_ord_id) for order in venue.orders.values())

        try:
            for name in ("taken", "unmarked", "own"):
                await sequenced(GATEWAY_A, msgspec.structs.replace(place(name), cod=True))
            ids = {order.cl_ord_id: order.order_id for order in venue.orders.values()}
            taken = (ids["taken"], ids["unmarked"])
            await sequenced(GATEWAY_B, SetCancelOnDisconnect(account=1, cod=True, order_ids=taken))
            unmark = SetCancelOnDisconnect(account=1, cod=False, order_ids=(ids["unmarked"],))
            await sequenced(GATEWAY_B, unmark)
            seen = [still_open()]
            for name in ("taken", "unmarked", "own"):
                await sequenced(GATEWAY_A, cod_cancel(ids[name]))
            seen.append(still_open())
            await sequenced(GATEWAY_B, cod_cancel(ids["taken"]))
            seen.append(still_open())
            await venue_core.sequencer.drain()
            records = await read_stream(client)
        finally:
            await client.close()
        await core.stop()
        return records, venue, seen

    records, core_venue, seen = asyncio.run(asyncio.wait_for(scenario(), SCENARIO_TIMEOUT_S))
    assert seen == [["own", "taken", "unmarked"], ["taken", "unmarked"], ["unmarked"]]
    cancels = [r.command for r in records if r.origin.gateway == GATEWAY_A][3:]
    assert [type(command) for command in cancels] == [
        RefuseCancelOnDisconnect,
        RefuseCancelOnDisconnect,
        CancelOrder,
    ]
    rules = snapshots.first_rules(None, venue_config.reserve_staleness_max_us(config))
    replica = Venue(rules, Ledger())
    for record in records:
        events = replica.execute(cast(Command, record.command))
        if type(record.command) is RefuseCancelOnDisconnect:
            # (no GTD order here and no bill matures within `RUNWAY_DAYS`: nothing comes due)
            assert events == [], "nothing happens, nothing is reported"
    assert replica.state_hash() == core_venue.state_hash()


def test_every_command_is_a_gateway_s_or_only_a_core_s() -> None:
    """A command type appended later must be placed: the core takes only a gateway's."""
    assert GATEWAY_COMMANDS.isdisjoint(CORE_COMMANDS)
    assert set(typing.get_args(AnyCommand)) == GATEWAY_COMMANDS | CORE_COMMANDS
    assert {type(command) for command in CORE_ONLY_SENT} == CORE_COMMANDS


def sharing_a_request_id(gateway: str, first: Command, unread: Any) -> bytes:
    """`first` and an item this core cannot read, both sent as the gateway's request 1."""
    items = [Submission(1, None, first), Submission(1, None, cast(AnyCommand, unread))]
    return encode_submissions(Submissions(gateway, items))


def test_a_core_only_command_sharing_a_request_id_with_an_unread_one_is_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Only the items the core itself replaced (by position) may be core-only commands.
    Before: the exemption was keyed by request id, so a `ShiftDeadManDeadlines` sent with an
    unreadable item of the same request id passed. Each drop is logged as a warning once,
    at debug when the same message comes again, in bounded memory. In-process: the core
    reads, nothing is sent."""
    config = venue_config.load(SAMPLE_CONFIG)
    core = ClusterCore(config, tmp_path / "core", "nats://127.0.0.1:26000", "core-a")
    unread = AuditBooks(account=1)
    caplog.set_level(logging.DEBUG, logger="venue.cluster")
    bypass = sharing_a_request_id("gw-rogue.1", ShiftDeadManDeadlines(since_us=0), unread)
    for _ in range(2):
        assert core._read(bypass) == Submissions("gw-rogue.1", [])
    levels = [r.levelno for r in caplog.records if "only a core makes" in r.getMessage()]
    assert levels == [logging.WARNING, logging.DEBUG]
    read = core._read(sharing_a_request_id("gw-later.2", place("a"), unread))
    assert [type(item.command) for item in read.items] == [PlaceOrder, RefuseUnreadCommand]
    for n in range(LOGGED_GATEWAYS_MAX):  # as many others: the first is forgotten
        core._read(message(f"gw-other.{n}", AdvanceClock()))
    assert len(core.drops_logged) == LOGGED_GATEWAYS_MAX
    assert "gw-rogue.1" not in core.drops_logged


def test_a_command_only_a_core_makes_sent_as_a_gateway_s_is_dropped(
    node: NatsCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: the core sequenced whatever came on `venue.submit`: a
    `ShiftDeadManDeadlines(since_us=0)` pushed every armed switch back by the venue's age
    (disabled), an `AdvanceClock` or `SetReserveStaleness` ran as the core's own. Now each is
    dropped, logged, with the rest of its message (so is a shift sent with an unread item
    of its request id); nothing changes, and the gateway id's request 1 is still free for
    that gateway's own command."""
    config = venue_config.load(SAMPLE_CONFIG)
    rogues = [f"gw-rogue.{n}" for n in range(len(CORE_ONLY_SENT))]
    caplog.set_level(logging.WARNING, logger="venue.cluster")

    async def scenario() -> list[Record]:
        core = ClusterCore(config, tmp_path / "core", node.url, "core-a")
        assert await core.wait_for_lease(asyncio.Event())
        venue_core = await core.activate()
        assert venue_core is not None
        client = await nats.connect(node.url)

        async def sequenced(gateway: str, *commands: Any) -> None:
            await client.publish(SUBMIT_SUBJECT, message(gateway, *commands))
            for _ in range(SEQUENCED_WAIT_TRIES):
                if core.codec.last_request.get(gateway) == len(commands):
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"{gateway}'s message never ran")

        try:
            await sequenced(MARKER_GATEWAY, ArmDeadMan(account=1, timeout_ms=600_000))
            armed = dict(venue_core.venue.dead_man_deadlines)
            for rogue, command in zip(rogues, CORE_ONLY_SENT, strict=True):
                await client.publish(SUBMIT_SUBJECT, message(rogue, command, place(rogue)))
            shift = ShiftDeadManDeadlines(since_us=0)
            bypass = sharing_a_request_id("gw-rogue.bypass", shift, AuditBooks(account=1))
            await client.publish(SUBMIT_SUBJECT, bypass)
            await sequenced("gw-marker.2", place("marker"))  # the rogues' were read before
            assert venue_core.venue.dead_man_deadlines == armed, "shifted by a gateway"
            await sequenced(rogues[0], place("own"))  # request 1 of that id: not taken
            await venue_core.sequencer.drain()
            records = await read_stream(client)
        finally:
            await client.close()
        await core.stop()
        return records

    records = asyncio.run(asyncio.wait_for(scenario(), SCENARIO_TIMEOUT_S))
    from_rogues = [r for r in records if r.origin.gateway.startswith("gw-rogue.")]
    assert [(r.origin, type(r.command)) for r in from_rogues] == [
        (Origin(rogues[0], 1), PlaceOrder)
    ]
    assert cast(PlaceOrder, from_rogues[0].command).cl_ord_id == "own"
    dropped = [r for r in caplog.records if "only a core makes" in r.getMessage()]
    assert sorted(r.__dict__["kind"] for r in dropped) == sorted(
        [type(command).__name__ for command in CORE_ONLY_SENT] + ["ShiftDeadManDeadlines"]
    )


def test_a_message_sent_again_logs_its_refusals_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A gateway sends a message again while its outcomes are not back (every 2 s): its
    refusals are a warning once, then debug; a later message's refusal is a warning again.
    Before: a warning at every resend. In-process: the core reads, nothing is sent."""
    config = venue_config.load(SAMPLE_CONFIG)
    core = ClusterCore(config, tmp_path / "core", "nats://127.0.0.1:25400", "core-a")
    unread = cast(AnyCommand, AuditBooks(account=1))
    first = message(FUTURE_GATEWAY, place("a"), unread)
    with_next = encode_submissions(
        Submissions(FUTURE_GATEWAY, [Submission(2, None, unread), Submission(3, None, unread)])
    )
    caplog.set_level(logging.DEBUG, logger="venue.cluster")
    for payload in (first, first, with_next, with_next):
        core._read(payload)
    levels = [r.levelno for r in caplog.records if "cannot read refused" in r.getMessage()]
    assert levels == [logging.WARNING, logging.DEBUG, logging.WARNING, logging.DEBUG]
    for n in range(LOGGED_GATEWAYS_MAX):  # as many others: the first is forgotten
        core._read(message(f"gw-other.{n}", unread))
    assert len(core.refusals_logged) == LOGGED_GATEWAYS_MAX
    assert FUTURE_GATEWAY not in core.refusals_logged


async def read_stream(client: Any) -> list[Record]:
    """Every record of the stream, in order."""
    js = client.jetstream(timeout=5.0)
    last_seq = (await js.stream_info(STREAM_DEFAULT)).state.last_seq
    messages = [await js.get_msg(STREAM_DEFAULT, seq) for seq in range(1, last_seq + 1)]
    return [decode_record(message.data) for message in messages]


def read_as_a_build_without(monkeypatch: pytest.MonkeyPatch, *missing: type) -> None:
    """The core reads the gateways' messages from now on as an earlier build without the
    `missing` commands did (so too one reads a later shape of a command it has: not at all);
    its decoders are the only part of such a build that differs here. None: as this build."""
    known = typing.Union[  # noqa: UP007 (a union built from a list of types)
        tuple(kind for kind in typing.get_args(AnyCommand) if kind not in missing)
    ]
    item = msgspec.defstruct(
        "EarlierSubmission",
        [("request", int), ("quote_set", str | None), ("command", known)],
        frozen=True,
        array_like=True,
    )
    whole = msgspec.defstruct(
        "EarlierSubmissions",
        [("gateway", str), ("items", list[item])],
        frozen=True,
        array_like=True,
    )
    monkeypatch.setattr(nats_bus, "_submissions_decoder", msgspec.msgpack.Decoder(whole))
    monkeypatch.setattr(nats_bus, "_submission_decoder", msgspec.msgpack.Decoder(item))


def test_a_client_of_a_later_gateway_is_answered_unsupported_and_the_gateway_goes_on(
    node: NatsCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The core reads submissions as session 25's build did (without `SweepVenueAccount`: its
    decoders are the only part of that build that differs here); the gateway, of this build,
    sends `admin.sweep`. Before: the sweep's message was dropped whole and sent again every
    2 s; the sweep, then every later request of that gateway, was answered 504
    `OUTCOME_UNKNOWN` (never sequenced) until a core that reads sweeps took over."""
    read_as_a_build_without(monkeypatch, SweepVenueAccount)  # as session 25's build
    config = venue_config.load(SAMPLE_CONFIG)
    sweep = {"venue_account": -2, "asset": "USD", "amount": "0.01", "account": 1}

    def bus(listener: Any) -> nats_bus.NatsBus:
        made = nats_bus.NatsBus(config, node.url, listener, "gw-26")
        made.outcome_wait_s = 2.0  # a request never sequenced is answered 504 soon (not 20 s)
        return made

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        core = ClusterCore(config, tmp_path / "core", node.url, "core-25")
        assert await core.wait_for_lease(asyncio.Event())
        assert await core.activate() is not None
        server = VenueServer(config, tmp_path / "gw", bus=bus)
        port = await server.start("127.0.0.1", 0)
        try:
            async with VenueClient(f"ws://127.0.0.1:{port}/ws/trade") as client:
                await client.logon(*KEYS["admin"])
                swept = await client.request_raw("admin.sweep", sweep)
            async with VenueClient(f"ws://127.0.0.1:{port}/ws/trade") as trader:
                await trader.logon(*KEYS["alpha"])
                order = {"symbol": "AAPLx-USD", "side": "buy", "type": "limit", "tif": "gtc"}
                placed = await trader.request_raw(
                    "order.place", order | {"qty": "1", "price": "180.00"}
                )
        finally:
            await server.stop()
            await core.stop()
        return swept, placed

    swept, placed = asyncio.run(asyncio.wait_for(scenario(), SCENARIO_TIMEOUT_S))
    assert (swept["status"], swept["error"]["name"]) == (503, "UNSUPPORTED_COMMAND"), swept
    assert swept["error"]["code"] == 9006
    assert "cannot read this command ('SweepVenueAccount')" in swept["error"]["msg"]
    assert placed["status"] == 200 and placed["result"]["status"] == "new", placed


def test_a_quote_s_refused_place_amend_or_cancel_frees_what_the_gateway_held_for_it(
    node: NatsCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command of a known type in a shape the core cannot read is refused as
    `RefuseUnreadCommand`; the gateway that sent it clears what it holds for it as for any
    refusal. Before: its replica saw the refusal, not the command sent, so a refused quote's
    place kept its slot in flight (the next quote.mass waited 5 s, then 503
    `QUOTE_PLACE_PENDING`), a refused amend stayed the quote's last sent (a requote to its
    price was skipped as quoted so already) and a refused cancel kept the quote pulled (a
    later cancel of the set canceled nothing)."""
    config = venue_config.load(SAMPLE_CONFIG)

    def bus(listener: Any) -> nats_bus.NatsBus:
        return nats_bus.NatsBus(config, node.url, listener, "gw-27")

    def quote(price: str) -> dict[str, Any]:
        bid = {"symbol": "AAPLx-USD", "bid_px": price, "bid_qty": "1"}
        return {"quote_set": "mm", "quotes": [bid]}

    async def scenario() -> dict[str, Any]:
        core = ClusterCore(config, tmp_path / "core", node.url, "core-earlier")
        assert await core.wait_for_lease(asyncio.Event())
        assert await core.activate() is not None
        server = VenueServer(config, tmp_path / "gw", bus=bus)
        port = await server.start("127.0.0.1", 0)
        out: dict[str, Any] = {}
        try:
            async with VenueClient(f"ws://127.0.0.1:{port}/ws/trade") as maker:
                await maker.logon(*KEYS["alpha"])
                await maker.request("session.cod", {"enabled": True})
                request = maker.request_raw
                read_as_a_build_without(monkeypatch, PlaceOrder)
                out["place refused"] = await request("quote.mass", quote("180.00"))
                read_as_a_build_without(monkeypatch, AmendOrder, CancelOrder)
                out["placed"] = await request("quote.mass", quote("180.00"))
                out["amend refused"] = await request("quote.mass", quote("181.00"))
                out["cancel refused"] = await request("orders.cancel_all", {"quote_set": "mm"})
                read_as_a_build_without(monkeypatch)
                out["amended"] = await request("quote.mass", quote("181.00"))
                out["open"] = await maker.request("orders.open", {})
                out["canceled"] = await request("orders.cancel_all", {"quote_set": "mm"})
                out["open after"] = await maker.request("orders.open", {})
        finally:
            await server.stop()
            await core.stop()
        return out

    out = asyncio.run(asyncio.wait_for(scenario(), SCENARIO_TIMEOUT_S))
    assert out["placed"]["status"] == 200, out["placed"]  # before: 503 QUOTE_PLACE_PENDING
    for step, kind in (("place refused", "PlaceOrder"), ("amend refused", "AmendOrder")):
        (refused,) = out[step]["result"]["results"]
        assert refused["error"]["name"] == "UNSUPPORTED_COMMAND", (step, out[step])
        assert f"cannot read this command ('{kind}')" in refused["error"]["msg"]
    (placed,) = out["placed"]["result"]["results"]
    assert out["cancel refused"]["result"] == {"canceled": 0}  # a count: the quote stays
    (amended,) = out["amended"]["result"]["results"]  # before: skipped, the price unchanged
    assert amended["result"]["order_id"] == placed["result"]["order_id"], out["amended"]
    assert [(o["order_id"], o["price"]) for o in out["open"]["orders"]] == [
        (placed["result"]["order_id"], "181.00")
    ]
    assert out["canceled"]["result"] == {"canceled": 1}  # before: 0, the quote thought pulled
    assert out["open after"]["orders"] == []


def test_a_cluster_gateway_warns_of_a_data_directory_open_to_others(
    node: NatsCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The finding (session 32): only a core's start (`VenueCore.start`) warned, and a cluster
    gateway's directory, which holds the issued keys' secrets (`api_keys.json`), never did."""
    config = venue_config.load(SAMPLE_CONFIG)
    gateway_dir = tmp_path / "gw"
    gateway_dir.mkdir()
    gateway_dir.chmod(0o755)  # as one made before session 32

    def bus(listener: Any) -> nats_bus.NatsBus:
        return nats_bus.NatsBus(config, node.url, listener, "gw-32")

    async def scenario() -> None:
        core = ClusterCore(config, tmp_path / "core", node.url, "core-32")
        assert await core.wait_for_lease(asyncio.Event())
        assert await core.activate() is not None
        server = VenueServer(config, gateway_dir, bus=bus)
        try:
            await server.start("127.0.0.1", 0)
        finally:
            await server.stop()
            await core.stop()

    with caplog.at_level(logging.WARNING, logger="venue"):
        asyncio.run(asyncio.wait_for(scenario(), SCENARIO_TIMEOUT_S))
    warned = [r for r in caplog.records if r.msg == "data directory open to others"]
    assert [(r.__dict__["mode"], r.__dict__["files"]) for r in warned] == [("0o755", [])]
    assert str(gateway_dir) in warned[0].__dict__["why"]


def requote(bid_px: str, ask_px: str) -> dict[str, Any]:
    """A plain requote's params: quote set "mm"'s AAPLx-USD bid and ask, 1 each."""
    both = {"symbol": "AAPLx-USD", "bid_px": bid_px, "bid_qty": "1"}
    return {"quote_set": "mm", "quotes": [both | {"ask_px": ask_px, "ask_qty": "1"}]}


async def requotes_through_an_earlier_core(
    config: venue_config.VenueConfig,
    tmp_path: Path,
    url: str,
    monkeypatch: pytest.MonkeyPatch,
    bids: tuple[str, str, str] = ("180.10", "180.20", "180.30"),
) -> dict[str, Any]:
    """A gateway of this build and a core reading as a build before `AmendPair`: a quote is
    placed, then requoted three times (`bids`; each ask 1.00 above), then the open orders
    read."""
    core = ClusterCore(config, tmp_path / "core", url, "core-earlier")
    assert await core.wait_for_lease(asyncio.Event())
    assert await core.activate() is not None

    def bus(listener: Any) -> nats_bus.NatsBus:
        return nats_bus.NatsBus(config, url, listener, "gw-31")

    server = VenueServer(config, tmp_path / "gw", bus=bus)
    port = await server.start("127.0.0.1", 0)
    out: dict[str, Any] = {}
    try:
        async with VenueClient(f"ws://127.0.0.1:{port}/ws/trade") as maker:
            await maker.logon(*KEYS["alpha"])
            await maker.request("session.cod", {"enabled": True})
            out["placed"] = await maker.request_raw("quote.mass", requote("180.00", "181.00"))
            read_as_a_build_without(monkeypatch, AmendPair)
            for step, prices in zip(("first", "next", "last"), bids, strict=True):
                ask_px = f"181{prices[3:]}"
                out[step] = await maker.request_raw("quote.mass", requote(prices, ask_px))
            out["open"] = await maker.request("orders.open", {})
    finally:
        await server.stop()
        await core.stop()
    return out


def amended_by_two_commands(answer: dict[str, Any], order_ids: list[int]) -> bool:
    """`answer` amended both quotes (`order_ids`), each by a command of its own (two seqs)."""
    entries = answer["result"]["results"]
    assert [entry["result"]["order_id"] for entry in entries] == order_ids, answer
    return len({entry["result"]["seq"] for entry in entries}) == 2


def test_a_requote_an_earlier_core_cannot_read_is_refused_whole_then_sent_as_two_amends(
    node: NatsCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """A gateway of this build sends a plain requote as one `AmendPair`; a core of a build
    before it cannot read it and refuses it (`RefuseUnreadCommand`): both of its ops are
    answered 503 `UNSUPPORTED_COMMAND` (nothing done), what the gateway held for the two
    amends is freed, and the gateway sends every later plain requote as two amends, said
    once at warning. Before the fallback: every requote through it was refused while that
    core was active (the makers could not move their quotes)."""
    config = venue_config.load(SAMPLE_CONFIG)
    caplog.set_level(logging.WARNING, logger="venue")
    # the next requote asks again for the refused one's prices: what the gateway held for the
    # refused pair must be freed, or it would take those prices as done and skip a side
    bids = ("180.10", "180.10", "180.30")
    run = requotes_through_an_earlier_core(config, tmp_path, node.url, monkeypatch, bids)
    out = asyncio.run(asyncio.wait_for(run, SCENARIO_TIMEOUT_S))
    placed = [entry["result"]["order_id"] for entry in out["placed"]["result"]["results"]]
    refused = out["first"]["result"]["results"]
    assert [entry["error"]["name"] for entry in refused] == ["UNSUPPORTED_COMMAND"] * 2, refused
    assert "cannot read this command ('AmendPair')" in refused[0]["error"]["msg"]
    for step in ("next", "last"):  # before: refused as the first (503, nothing done)
        assert amended_by_two_commands(out[step], placed), out[step]
    assert sorted((o["order_id"], o["price"]) for o in out["open"]["orders"]) == [
        (placed[0], "180.30"),
        (placed[1], "181.30"),
    ]
    said = [r.getMessage() for r in caplog.records if "cannot read AmendPair" in r.getMessage()]
    assert len(said) == 1 and "restart this gateway once every core runs" in said[0], said


def test_a_gateway_set_to_send_no_pairs_requotes_through_an_earlier_core(
    node: NatsCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`[gateway] requote_pairs = false` (a rolling upgrade's setting): the gateway sends
    every plain requote as two amends, which a core of an earlier build reads: none is
    refused, not even the first."""
    config = venue_config.load(SAMPLE_CONFIG)
    gateway = msgspec.structs.replace(config.gateway, requote_pairs=False)
    config = msgspec.structs.replace(config, gateway=gateway)
    run = requotes_through_an_earlier_core(config, tmp_path, node.url, monkeypatch)
    out = asyncio.run(asyncio.wait_for(run, SCENARIO_TIMEOUT_S))
    placed = [entry["result"]["order_id"] for entry in out["placed"]["result"]["results"]]
    for step in ("first", "next", "last"):  # the first: before, refused 503
        assert amended_by_two_commands(out[step], placed), out[step]


NO_STREAM = "no stream to follow yet"


def test_a_standby_says_once_that_it_has_no_stream_to_follow_then_again_once_it_lost_it(
    node: NatsCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A standby's every lease poll (0.2 s) tries to follow the stream: while there is none
    yet (no active core made it) or NATS is down, it says so at info the first time, at debug
    after; once it followed, then lost the stream (a new warm copy, after a failed start gave
    the lease up: `_stand_by_again`), at info once more. Before: at info at every poll, five
    lines a second in an operator's log for as long as it lasted."""
    caplog.set_level(logging.DEBUG, logger="venue.cluster")
    config = venue_config.load(SAMPLE_CONFIG)

    def said() -> list[int]:
        levels = [r.levelno for r in caplog.records if r.getMessage().startswith(NO_STREAM)]
        caplog.clear()
        return levels

    async def polls(core: ClusterCore, count: int) -> list[bool]:
        return [await core._follow() for _ in range(count)]

    async def scenario() -> list[tuple[list[bool], list[int]]]:
        core = ClusterCore(config, tmp_path / "core", node.url, "core-b")
        core.nc = await nats.connect(node.url)
        js = core.nc.jetstream(timeout=5.0)
        seen = []
        try:
            seen.append((await polls(core, 3), said()))  # no stream yet
            await js.add_stream(name=STREAM_DEFAULT, subjects=[SUBJECT_DEFAULT])
            seen.append((await polls(core, 1), said()))  # followed
            await core.follower.stop()
            core.follower = core._new_follower()  # as `_stand_by_again` starts afresh
            await js.delete_stream(STREAM_DEFAULT)
            seen.append((await polls(core, 2), said()))  # lost
            node.stop()
            seen.append((await polls(core, 1), said()))  # NATS down
        finally:
            await core.stop()
        return seen

    no, yes = False, True
    assert asyncio.run(asyncio.wait_for(scenario(), SCENARIO_TIMEOUT_S)) == [
        ([no, no, no], [logging.INFO, logging.DEBUG, logging.DEBUG]),
        ([yes], []),
        ([no, no], [logging.INFO, logging.DEBUG]),
        ([no], [logging.DEBUG]),
    ]
