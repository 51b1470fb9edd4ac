"""The cluster's records and the core's once-and-in-order rule (pure parts of core/nats_bus.py
and core/cluster_core.py; the processes are tested in tests/cluster/test_roles.py), and the
order of a gateway replica's answers and its lease's end within one loop turn; and a gateway's
answer to a core's announcement, through a real nats-server."""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import msgspec
import nats
import pytest
from msgspec.structs import replace

from cluster.nats import NatsCluster
from core import config, nats_bus
from core.cluster_core import ClusterCore, CoreGatewayPart
from core.nats_bus import (
    CORE_ACTIVE_SUBJECT,
    OUTCOME_WAIT_S,
    SUBMIT_SUBJECT,
    ClusterCodec,
    NatsBus,
    Origin,
    Overdue,
    Submission,
    Submissions,
    decode_each_submission,
    decode_record,
    decode_submissions,
    encode_submissions,
)
from core.sequencer import Executed
from engine.commands import (
    UNREAD_KIND_MAX,
    AdvanceClock,
    CancelOrder,
    PlaceOrder,
    RefuseUnreadCommand,
)
from engine.enums import Side
from engine.events import OrderAccepted
from gateway.server import VenueServer
from tests.sample_config import SAMPLE_CONFIG

PLACE = PlaceOrder(account=1, symbol="AAPLx-USD", side=Side.BUY, price=18_700, qty=1, ts_us=5)


def test_a_record_carries_the_command_and_its_origin_as_plain_data() -> None:
    codec = ClusterCodec()
    payload = codec.encode(Executed(7, PLACE, [], Origin("gw-a.1", 3, "q1")))
    record = decode_record(payload)
    assert record.command == PLACE and record.origin == Origin("gw-a.1", 3, "q1")


def test_the_core_s_own_commands_and_local_origins_record_no_gateway() -> None:
    codec = ClusterCodec()
    for origin in (None, object()):  # a timer's, or whatever is not a cluster origin
        record = decode_record(codec.encode(Executed(1, AdvanceClock(ts_us=9), [], origin)))
        assert record.origin == Origin("", 0)


def test_each_gateway_s_requests_are_taken_once_and_in_order() -> None:
    codec = ClusterCodec()
    assert codec.is_next("gw-a.1", 1) and not codec.is_next("gw-a.1", 2)  # 1 comes first
    codec.seen(Origin("gw-a.1", 1))
    assert not codec.is_next("gw-a.1", 1)  # sent again: sequenced already
    assert codec.is_next("gw-a.1", 2)
    assert codec.is_next("gw-b.2", 1)  # each gateway process counts on its own


def test_replay_tells_the_codec_which_requests_were_sequenced() -> None:
    writer, reader = ClusterCodec(), ClusterCodec()
    payload = writer.encode(Executed(1, PLACE, [], Origin("gw-a.1", 41)))
    assert reader.decode(payload) == PLACE
    assert reader.is_next("gw-a.1", 42) and not reader.is_next("gw-a.1", 41)


def test_the_core_s_snapshot_part_keeps_the_last_request_per_gateway() -> None:
    codec = ClusterCodec()
    codec.seen(Origin("gw-a.1", 12))
    restored = ClusterCodec()
    CoreGatewayPart(restored).restore_gateway(CoreGatewayPart(codec).gateway_image())
    assert restored.is_next("gw-a.1", 13) and not restored.is_next("gw-a.1", 12)


def test_submissions_round_trip_in_order() -> None:
    sent = Submissions("gw-a.1", [Submission(1, None, PLACE), Submission(2, "q", PLACE)])
    assert decode_submissions(encode_submissions(sent)) == sent


class _Listener:
    """A gateway's listener that records what the replica tells it, in order."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def executed(self, executed: Executed) -> None:
        pass

    def placed_with_cod(self, executed: Executed) -> None:
        pass

    def replayed(self, batch: list[Executed]) -> None:
        pass

    def released(self, batch: list[Executed]) -> None:
        self.calls += [f"answered seq {executed.seq}" for executed in batch]

    def lease_lost(self) -> None:
        self.calls.append("lease lost: sessions closed")

    def lease_held(self) -> None:
        pass

    def pair_refused_unread(self) -> None:
        pass

    def outcomes_overdue(self, settled: list[Overdue | Executed]) -> None:
        for item in settled:
            kind = "unknown" if type(item) is Overdue else "released"
            self.calls.append(f"{kind} {item.origin}")

    def is_client_request(self, origin: Any) -> bool:
        return origin != "cod cancel"  # the test's names: a client's, but for this one


class _LeaseEndingAsARecordComesBack:
    """A gateway's lease whose term is found over in the loop turn in which a record came
    back and was executed (`record`, called at the first check): what a lapse and an outcome
    arriving together (one read of the NATS socket) make."""

    key = "gw-t.1"

    def __init__(self, record: Callable[[], None]) -> None:
        self.state = SimpleNamespace(renew_due=lambda now: False)
        self._record: Callable[[], None] | None = record

    def held(self) -> bool:
        if self._record is not None:
            self._record, record = None, self._record
            record()
        return False

    async def try_acquire(self) -> bool:
        return False


def test_an_outcome_back_in_the_turn_the_gateways_lease_ends_is_answered_before_the_close() -> None:
    """Before: the close came first and the answer, released at the turn's end, went to a
    session already closing (lost, not even `OUTCOME_UNKNOWN`: it was no longer owed)."""
    listener = _Listener()
    bus = NatsBus(config.load(SAMPLE_CONFIG), "nats://127.0.0.1:4222", listener, "gw-t")
    replica = bus.core
    replica.live = True
    payload = ClusterCodec().encode(Executed(1, PLACE, [], Origin("gw-other.1", 1)))
    bus.lease = cast(Any, _LeaseEndingAsARecordComesBack(lambda: replica._execute(1, payload)))

    async def keep_lease_until_lost() -> None:
        keeping = asyncio.create_task(replica._keep_lease())
        for _ in range(100):  # bounded: the first check is due after one poll (0.1 s)
            await asyncio.sleep(0.05)
            if "lease lost: sessions closed" in listener.calls:
                break
        await asyncio.sleep(0)  # the turn's end: where the flush was scheduled
        keeping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeping

    asyncio.run(keep_lease_until_lost())
    assert listener.calls == ["answered seq 1", "lease lost: sessions closed"]


class _Publisher:
    """What the bus publishes to NATS (nothing here sequences it: no core is active)."""

    def __init__(self) -> None:
        self.published: list[Submissions] = []

    async def publish(self, subject: str, payload: bytes) -> None:
        self.published.append(decode_submissions(payload))


def test_requests_owed_too_long_are_told_in_order_once_and_still_resent() -> None:
    """Before: nothing was ever told, and the barriers behind them waited for good."""
    listener = _Listener()
    bus = NatsBus(config.load(SAMPLE_CONFIG), "nats://127.0.0.1:4222", listener, "gw-t")
    publisher = _Publisher()
    bus.nc = cast(Any, publisher)
    bus.core.live = True

    async def owe_then_come_back() -> None:
        bus.submit(PLACE, "place")
        bus.barrier("query")
        await asyncio.sleep(0)  # the turn's end: sent
        sent_s = bus._waiting[0].sent_s
        bus.settle_overdue(sent_s + OUTCOME_WAIT_S - 0.1)
        assert listener.calls == [] and bus.owed() == ["place", "query"]
        bus.settle_overdue(sent_s + OUTCOME_WAIT_S)
        assert listener.calls == ["unknown place", "released query"]
        assert bus.owed() == []  # a lease lost now answers none of them again
        bus.settle_overdue(sent_s + OUTCOME_WAIT_S * 2)
        assert len(listener.calls) == 2, "told once"
        assert [s.request for s in bus._unanswered] == [1]  # still resent until it is back
        payload = ClusterCodec().encode(Executed(1, PLACE, [], Origin(bus.gateway_id, 1)))
        bus.core._execute(1, payload)  # its outcome, late: released as ever, once
        bus.core.flush_now()
        assert listener.calls[2:] == ["answered seq 1"] and not bus._waiting

    asyncio.run(owe_then_come_back())


def test_a_requests_commands_are_overdue_together_told_once(monkeypatch: Any) -> None:
    """Review of s28-batch504: a batch's commands are sent microseconds apart, and a check
    between their deadlines marked the first overdue (its request answered) but not the
    later ones: `owed` still listed the request, and a lost lease answered it again (a
    second answer to one request id, or with an op back meanwhile, a reply of ~9.2e18 ops)."""
    from core import nats_bus

    clock = [100.0]
    monkeypatch.setattr(nats_bus.time, "monotonic", lambda: clock[0])
    listener = _Listener()
    bus = NatsBus(config.load(SAMPLE_CONFIG), "nats://127.0.0.1:4222", listener, "gw-t")
    bus.nc = cast(Any, _Publisher())
    bus.core.live = True

    async def batch_then_a_check_between_its_deadlines() -> None:
        batch = ["the batch"]  # one origin for its three commands, as `Pending` is
        for _ in range(3):  # a microsecond apart each, as one loop turn sends them
            bus.submit(PLACE, batch)
            clock[0] += 0.000_001
        clock[0] += 1.0
        bus.submit(PLACE, "place")  # another request, a second later
        await asyncio.sleep(0)  # the turn's end: sent
        first_s = bus._waiting[0].sent_s
        assert bus._waiting[2].sent_s > first_s  # the window: the first is due, not the last
        bus.settle_overdue(first_s + OUTCOME_WAIT_S)
        assert listener.calls == ["unknown ['the batch']"], "told once, as a whole"
        assert bus.owed() == ["place"]  # before: the batch too, to be answered again
        bus.settle_overdue(first_s + OUTCOME_WAIT_S + 0.5)  # the batch's last one due now
        assert listener.calls == ["unknown ['the batch']"], "not told again"
        assert [s.request for s in bus._unanswered] == [1, 2, 3, 4]  # all still resent

    asyncio.run(batch_then_a_check_between_its_deadlines())


SENT_WAIT_S = 5.0  # bounds each wait for a message NATS delivers within milliseconds


def test_a_core_s_announcement_sends_what_is_owed_at_once(tmp_path: Path) -> None:
    """A command sent while no core took it is owed, its last progress now; the resend timer
    (`resend_lost`) does not run here, so nothing but the announcement can send it again. A
    core's `CORE_ACTIVE_SUBJECT`, heard through the gateway's own subscription
    (`Replica.hear_cores`), sends it again at once. Before: it waited for that timer, up to
    `RESEND_AFTER_S` + `RESEND_CHECK_S` (2.5 s) later."""
    bus = NatsBus(config.load(SAMPLE_CONFIG), "nats://127.0.0.1:4222", _Listener(), "gw-t")
    bus.core.live = True

    async def owe_then_announce(url: str) -> None:
        sent: asyncio.Queue[Submissions] = asyncio.Queue()

        async def on_submit(message: Any) -> None:
            sent.put_nowait(decode_submissions(message.data))

        core_side = await nats.connect(url)
        bus.nc = await nats.connect(url)
        try:
            await core_side.subscribe(SUBMIT_SUBJECT, cb=on_submit)
            await core_side.flush()
            await bus.core.hear_cores(bus.nc)
            await bus.nc.flush()  # subscribed at the server before the announcement
            bus.submit(PLACE, "place")
            first = await asyncio.wait_for(sent.get(), SENT_WAIT_S)
            await core_side.publish(CORE_ACTIVE_SUBJECT, b"core-b")
            assert await asyncio.wait_for(sent.get(), SENT_WAIT_S) == first
        finally:
            await bus.nc.close()
            await core_side.close()

    with NatsCluster(tmp_path / "nats", size=1) as node:
        asyncio.run(owe_then_announce(node.url))


def test_the_outcome_wait_is_the_configs_outcome_wait_ms() -> None:
    """`[venue] outcome_wait_ms` sets the bound (a test of the 504 with real processes waits
    less); `OUTCOME_WAIT_S` is its default."""
    loaded = config.load(SAMPLE_CONFIG)
    assert NatsBus(loaded, "nats://127.0.0.1:4222", _Listener()).outcome_wait_s == OUTCOME_WAIT_S
    shorter = msgspec.structs.replace(loaded.venue, outcome_wait_ms=7_000)
    listener = _Listener()
    bus = NatsBus(msgspec.structs.replace(loaded, venue=shorter), "nats://x:4222", listener)
    bus.nc = cast(Any, _Publisher())
    bus.core.live = True

    async def owe() -> None:
        bus.submit(PLACE, "place")
        await asyncio.sleep(0)  # the turn's end: sent
        sent_s = bus._waiting[0].sent_s
        bus.settle_overdue(sent_s + 6.9)
        assert listener.calls == []
        bus.settle_overdue(sent_s + 7.0)
        assert listener.calls == ["unknown place"]

    asyncio.run(owe())


@pytest.mark.parametrize("wait_ms", [5_999, 29_001])
def test_an_outcome_wait_out_of_its_bounds_stops_the_start(tmp_path: Path, wait_ms: int) -> None:
    """Under a held requote's 5 s (which must be refused before the 504) or past the SDK's
    30 s request timeout: refused at load, naming the key."""
    path = tmp_path / "venue.toml"
    path.write_text(f"[venue]\noutcome_wait_ms = {wait_ms}\n")
    with pytest.raises(config.ConfigError, match="outcome_wait_ms"):
        config.load(path)


def test_a_nats_error_repeated_at_every_reconnect_attempt_is_logged_once_a_while(
    monkeypatch: Any, caplog: Any
) -> None:
    """nats-py reports each failed reconnect attempt (every 0.2 s): the same error is logged
    once per `NATS_ERROR_REPEAT_LOG_S`, with how often it came meanwhile; another at once."""
    from core import nats_bus

    clock = [100.0]
    monkeypatch.setattr(nats_bus.time, "monotonic", lambda: clock[0])
    log_error = nats_bus._error_log()
    refused = ConnectionRefusedError(111, "Connection refused")
    with caplog.at_level("WARNING", logger="venue.cluster"):
        for _ in range(50):  # ten seconds of attempts, 0.2 s apart
            asyncio.run(log_error(refused))
            clock[0] += 0.19
        assert len(caplog.records) == 1
        asyncio.run(log_error(TimeoutError()))  # another error: at once
        assert len(caplog.records) == 2
        asyncio.run(log_error(refused))  # it changed in between: logged again
        assert len(caplog.records) == 3
        for _ in range(3):
            asyncio.run(log_error(refused))
        clock[0] += nats_bus.NATS_ERROR_REPEAT_LOG_S
        asyncio.run(log_error(refused))
    assert len(caplog.records) == 4
    assert "3 more times since last logged" in caplog.records[-1].getMessage()


def test_a_stop_waits_for_no_outcome_answered_as_unknown_but_for_every_other() -> None:
    """Found in session 23: a gateway stopping (SIGTERM) with a request answered 504
    `OUTCOME_UNKNOWN` (no core active) waited out `DRAIN_TIMEOUT_S` (10 s, twice: for the
    answers, then for the closes' cod cancels) for an outcome its client had its answer
    for. A command owed to no client yet (a cod cancel, sent after) is still waited for."""
    bus = NatsBus(config.load(SAMPLE_CONFIG), "nats://127.0.0.1:4222", _Listener(), "gw-t")
    bus.nc = cast(Any, _Publisher())
    bus.core.live = True

    async def stop_after_an_unknown_outcome() -> None:
        bus.submit(PLACE, "place")
        await asyncio.sleep(0)  # the turn's end: sent
        bus.settle_overdue(bus._waiting[0].sent_s + OUTCOME_WAIT_S)  # answered 504
        assert await asyncio.wait_for(bus.drain(), 1.0)  # main: TimeoutError (10 s)
        bus.submit(PLACE, "cod cancel")
        bus.barrier("query")
        await asyncio.sleep(0)
        bus.settle_overdue(bus._waiting[1].sent_s + OUTCOME_WAIT_S)  # overdue: nobody to tell
        assert not bus._idle.is_set(), "its outcome is still owed: a stop waits (bounded)"
        for seq in (1, 2):  # both come back, in order: nothing is owed any more
            payload = ClusterCodec().encode(Executed(seq, PLACE, [], Origin(bus.gateway_id, seq)))
            bus.core._execute(seq, payload)
        bus.core.flush_now()
        assert await asyncio.wait_for(bus.drain(), 1.0) and not bus._waiting

    asyncio.run(stop_after_an_unknown_outcome())


class _LaterCommand(msgspec.Struct, frozen=True, tag="AuditBooks", kw_only=True):
    """A command of a later build than this one, as its gateway encodes it."""

    ts_us: int = 0
    account: int


def test_a_message_with_an_unread_command_is_read_item_by_item() -> None:
    later = cast(Any, _LaterCommand(account=1))
    sent = Submissions("gw-a.1", [Submission(1, None, PLACE), Submission(2, "q", later)])
    payload = encode_submissions(sent)
    with pytest.raises(msgspec.ValidationError):
        decode_submissions(payload)
    read, unread = decode_each_submission(payload)
    refused = Submission(2, "q", RefuseUnreadCommand(kind="AuditBooks"))
    assert read == Submissions("gw-a.1", [Submission(1, None, PLACE), refused]) and unread == [1]


def test_an_unread_command_s_type_is_kept_bounded_or_empty() -> None:
    long_type = "X" * (UNREAD_KIND_MAX + 10)
    for command, kind in (({"type": long_type}, "X" * UNREAD_KIND_MAX), (5, ""), ({}, "")):
        payload = msgspec.msgpack.encode(["gw-a.1", [[1, None, command]]])
        read, _ = decode_each_submission(payload)
        assert read.items == [Submission(1, None, RefuseUnreadCommand(kind=kind))]


def test_an_item_whose_request_id_cannot_be_read_leaves_the_whole_message_unread() -> None:
    """Damaged, not of a later build: none of its commands is taken (as before)."""
    place = msgspec.to_builtins(PLACE)
    payload = msgspec.msgpack.encode(["gw-a.1", [[1, None, place], ["two", None, {}]]])
    with pytest.raises(msgspec.ValidationError):
        decode_each_submission(payload)


LONG_STREAM_ORDERS = 3_000  # placed and canceled: 6,000 records, replayed in ~0.5 s or more
RESTING = PlaceOrder(account=1, symbol="AAPLx-USD", side=Side.BUY, price=18_000, qty=1_000_000)


def test_a_gateway_replays_a_stream_longer_than_its_start_bound_saying_how_far_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A starting gateway's replica replays the whole stream. Before: the replay had
    `START_TIMEOUT_S` (60 s) in all, so on a stream of more than a minute's replay (under a
    million records) a gateway could not start at all, and said nothing meanwhile. Here the
    bound is 0.2 s and the stream takes longer to replay; it gives up only when no record
    comes for `REPLAY_STALL_S`."""
    monkeypatch.setattr(nats_bus, "START_TIMEOUT_S", 0.2)
    monkeypatch.setattr(nats_bus, "REPLAY_SAY_S", 0.05)
    venue_config = config.load(SAMPLE_CONFIG)

    async def scenario(url: str) -> tuple[int, int]:
        core = ClusterCore(venue_config, tmp_path / "core", url, "core")
        assert await core.wait_for_lease(asyncio.Event())
        started = await core.activate()
        assert started is not None
        try:
            for number in range(LONG_STREAM_ORDERS):
                placed = started.sequencer.submit(replace(RESTING, cl_ord_id=f"o{number}"))
                order_id = next(e.order_id for e in placed.events if type(e) is OrderAccepted)
                started.sequencer.submit(CancelOrder(account=1, order_id=order_id))
                if number % 500 == 499:
                    await started.sequencer.drain()
            await started.sequencer.drain()
            last = started.sequencer.last_seq
            gateway = VenueServer(
                venue_config,
                tmp_path / "gw",
                bus=lambda listener: NatsBus(venue_config, url, listener, "gw-long"),
            )
            await gateway.start("127.0.0.1", 0)
            try:
                return last, gateway.sequencer.last_seq
            finally:
                await gateway.stop()
        finally:
            await core.stop()

    with NatsCluster(tmp_path / "nats", size=1) as node:
        caplog.set_level(logging.INFO, logger="venue")
        last, replayed = asyncio.run(asyncio.wait_for(scenario(node.url), 120))
    assert replayed == last > 2 * LONG_STREAM_ORDERS
    assert "replica replaying the stream" in caplog.text


class _OnMessage(logging.Handler):
    """Calls `then` when a record with the message `message` is logged (in the logging
    thread: here the loop's, so an asyncio event may be set)."""

    def __init__(self, message: str, then: Callable[[], None]) -> None:
        super().__init__()
        self.message, self.then = message, then

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == self.message:
            self.then()


def test_records_that_come_while_a_gateway_takes_its_lease_are_replayed_not_published(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A gateway's start, its replica caught up, waits for its lease (held here by another
    holder) while the core executes more records: they are replayed as those before, and the
    first record executed live is the one after them (its push format's first seq). Before:
    they were executed live into the market data the server builds only once the replica's
    start returned, which knew no market: `KeyError`, the gateway died (exit 70; 1 start in
    10 under a steady flow of orders)."""
    from tests.core.test_stream_snapshots import WAIT_TRIES, active_core, gateway, seen, trade

    caplog.set_level(logging.INFO, logger="venue")  # (its "replica caught up" line)
    caught_up = asyncio.Event()
    handler = _OnMessage("replica caught up", caught_up.set)

    async def scenario(url: str) -> tuple[int, dict[str, Any], dict[str, Any], int]:
        core, started = await active_core(tmp_path / "core", url, "core")
        server = gateway(tmp_path / "gw", url, "gw")
        client = await nats.connect(url)
        starting: asyncio.Future[int] | None = None
        try:
            await trade(started, 2, "a")
            lease = await nats_bus.Lease.open(
                client.jetstream(),
                "gw-before",
                bucket=nats_bus.GATEWAY_LEASE_BUCKET,
                ttl_s=nats_bus.GATEWAY_LEASE_TTL_S,
                key=cast(NatsBus, server.bus).gateway_id,
                shared=True,
            )
            assert await lease.try_acquire()
            starting = asyncio.ensure_future(server.start("127.0.0.1", 0))
            await asyncio.wait_for(caught_up.wait(), 30)
            await trade(started, 2, "b")  # trades, candles, the tape: the markets' data
            last = started.sequencer.last_seq
            for _ in range(WAIT_TRIES):
                if server.sequencer.last_seq == last or starting.done():
                    break
                await asyncio.sleep(0.05)
            assert server.sequencer.last_seq == last, "the records never reached the replica"
            assert not starting.done(), "the gateway did not wait for its lease"
            await lease.release()
            await starting
            first_live = server.private_streams.push_formats[-1][0]
            fresh = gateway(tmp_path / "fresh", url, "fresh")  # all of it replayed
            await fresh.start("127.0.0.1", 0)
            try:
                return last, seen(server), seen(fresh), first_live
            finally:
                await fresh.stop()
        finally:
            if starting is not None and starting.done() and not starting.exception():
                await server.stop()
            elif starting is not None:
                starting.cancel()
            await client.close()
            await core.stop()

    logging.getLogger("venue").addHandler(handler)
    try:
        with NatsCluster(tmp_path / "nats", size=1) as node:
            run = asyncio.wait_for(scenario(node.url), 60)
            last, replayed, fresh, first_live = asyncio.run(run)
    finally:
        logging.getLogger("venue").removeHandler(handler)
    assert first_live == last + 1
    assert replayed["seq"] == fresh["seq"] == last
    assert replayed["hash"] == fresh["hash"]
    for part in ("candles", "tape"):
        assert replayed["gateway"][part] == fresh["gateway"][part], part
    assert replayed["gateway"]["tape"], "no trade in the tape"
