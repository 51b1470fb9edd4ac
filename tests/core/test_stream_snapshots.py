"""Copies of a cluster's venue that start from a snapshot (core/stream_snapshots.py): a
gateway's replica restarted on its data directory, a standby core's warm copy on a former
active core's. Before session 33 both followed the stream from seq 1 at every start (~100 s
per million records). A real nats-server (one node), `ClusterCore`s and gateways
(`VenueServer` over `NatsBus`) in this process, a core's SQLite store."""

import asyncio
import gc
import logging
import os
import shutil
import socket
import sqlite3
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import msgspec
import nats
import nats.js.errors
import pytest

from cluster.nats import NatsCluster
from core import config as venue_config
from core import snapshots, stream_snapshots, venue_core
from core.cluster_core import ClusterCore, CodOrders, CoreGatewayPart, Follower, StandbySnapshots
from core.journal import DanglingLink, JournalLocked
from core.lease import key_held
from core.nats_bus import GATEWAY_LEASE_BUCKET, ClusterCodec, NatsBus, Origin
from core.sequencer import Executed
from core.snapshot_entries import OrderRecord
from core.venue_core import RecoveryRefused, VenueCore
from engine.commands import CancelOrder, Command, PlaceOrder
from engine.enums import Side
from engine.events import OrderAccepted
from engine.snapshot import Later, capture
from engine.snapshot import restore as restore_venue
from engine.venue import Venue, VenueConfig
from gateway.server import VenueServer
from settlement.ledger import Ledger
from settlement.store import SqliteLedgerStore
from tests.conftest import with_an_entry_not_decoding
from tests.engine import test_differential_ledger
from tests.sample_config import SAMPLE_CONFIG

SCENARIO_TIMEOUT_S = 60
WAIT_TRIES = 400  # x 0.05 s
RELEASE_TRIES = 100  # x 0.05 s: a lease's release is one NATS round trip
CONFIG = venue_config.load(SAMPLE_CONFIG)
RESTORED = "restored snapshot seq"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path / "nats", size=1) as started:
        yield started


async def trade(core: VenueCore, rounds: int, tag: str) -> None:
    """`rounds` trades between accounts 1 and 2 (fills, settlements, candles, the tape) and
    an order of account 3 placed and canceled (order history), all durable."""
    submit = core.sequencer.submit
    for number in range(rounds):
        for account, side in ((1, Side.BUY), (2, Side.SELL)):
            submit(order(account, side, 18_000, f"{tag}{number}"))
        rested = submit(order(3, Side.BUY, 17_000, f"{tag}{number}r"))
        order_id = next(e.order_id for e in rested.events if type(e) is OrderAccepted)
        submit(CancelOrder(account=3, order_id=order_id))
    await core.sequencer.drain()


def order(account: int, side: Side, price: int, cl_ord_id: str) -> PlaceOrder:
    return PlaceOrder(
        account=account,
        symbol="AAPLx-USD",
        side=side,
        price=price,
        qty=1_000_000,
        cl_ord_id=cl_ord_id,
    )


def gateway(data_dir: Path, url: str, name: str) -> VenueServer:
    return VenueServer(CONFIG, data_dir, bus=lambda listener: NatsBus(CONFIG, url, listener, name))


async def active_core(data_dir: Path, url: str, name: str) -> tuple[ClusterCore, VenueCore]:
    core = ClusterCore(CONFIG, data_dir, url, name)
    assert await core.wait_for_lease(asyncio.Event())
    started = await core.activate()
    assert started is not None
    return core, started


async def gateway_once(data_dir: Path, url: str) -> None:
    """A gateway on `data_dir` started and stopped: its stop writes its snapshot."""
    server = gateway(data_dir, url, "gw-once")
    await server.start("127.0.0.1", 0)
    await server.stop()


def restored(caplog: pytest.LogCaptureFixture) -> list[tuple[int, int]]:
    """(seq, records replayed after it) of each `restored snapshot` line logged."""
    return [
        (record.seq, record.replaying)  # type: ignore[attr-defined]
        for record in caplog.records
        if record.getMessage().startswith(RESTORED)
    ]


def seen(server: VenueServer) -> dict[str, Any]:
    """What a gateway derived from the stream: its venue's state hash and last seq, and its
    own part (private streams with their seqs and history, order history, candles, tape)."""
    return {
        "hash": server.venue.state_hash(),
        "seq": server.sequencer.last_seq,
        "gateway": server.gateway_image(),
    }


def test_a_restarted_gateway_replays_only_the_tail_and_sees_what_a_full_replay_sees(
    node: NatsCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A gateway stopped (its snapshot written), trading on, the gateway started again on
    its data directory: it restores the snapshot and replays the records after it only, and
    holds what the same gateway replaying the whole stream holds (its data directory copied
    without the snapshot: the push formats it keeps decide which history is resumable), and
    what a new gateway holds but for that. Before: every start replayed the whole stream
    (and `Replica.snapshot` raised NotImplementedError)."""
    caplog.set_level(logging.INFO, logger="venue")

    async def scenario(url: str) -> tuple[int, int, list[dict[str, Any]]]:
        core, started = await active_core(tmp_path / "core", url, "core")
        try:
            await trade(started, 20, "a")
            await gateway_once(tmp_path / "gw", url)
            image = snapshots.latest(tmp_path / "gw")
            assert image is not None, "the gateway's stop wrote no snapshot"
            without = shutil.ignore_patterns("snapshot-*")
            shutil.copytree(tmp_path / "gw", tmp_path / "full", ignore=without)
            await trade(started, 10, "b")  # the tail, after the snapshot
            servers = [gateway(tmp_path / name, url, name) for name in ("gw", "full", "new")]
            for server in servers:
                await server.start("127.0.0.1", 0)
            try:
                return image.seq, started.sequencer.last_seq, [seen(s) for s in servers]
            finally:
                for server in servers:
                    await server.stop()
        finally:
            await core.stop()

    at, last, (again, full, new) = asyncio.run(asyncio.wait_for(scenario(node.url), 60))
    assert restored(caplog) == [(at, last - at)]
    assert 0 < last - at < at
    assert again == full
    assert again["seq"] == new["seq"] == last
    assert again["hash"] == new["hash"]
    for part in ("private", "order_history", "candles", "tape", "last_exec_id"):
        assert again["gateway"][part] == new["gateway"][part], part
    private = again["gateway"]["private"]
    assert private["1"][0] > 0 and private["3"][0] > 0  # pushed to, before and after


def test_a_gateway_with_a_damaged_snapshot_replays_the_whole_stream(
    node: NatsCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The snapshot's body damaged after its write: the start says so, restores nothing
    and replays the stream from its start to the core's state."""
    caplog.set_level(logging.INFO, logger="venue")

    async def scenario(url: str) -> tuple[int, str, dict[str, Any]]:
        core, started = await active_core(tmp_path / "core", url, "core")
        try:
            await trade(started, 5, "a")
            await gateway_once(tmp_path / "gw", url)
            (path,) = tmp_path.joinpath("gw").glob("snapshot-*.bin")
            data = bytearray(path.read_bytes())
            data[-10] ^= 0xFF
            path.write_bytes(bytes(data))
            await trade(started, 2, "b")
            again = gateway(tmp_path / "gw", url, "gw")
            await again.start("127.0.0.1", 0)
            try:
                return started.sequencer.last_seq, started.venue.state_hash(), seen(again)
            finally:
                await again.stop()
        finally:
            await core.stop()

    last, core_hash, again = asyncio.run(asyncio.wait_for(scenario(node.url), 60))
    assert "ignored, damaged or half-written" in caplog.text
    assert f"no usable snapshot: replaying {last} records from the stream's start" in caplog.text
    assert not restored(caplog)
    assert again["seq"] == last and again["hash"] == core_hash


def test_a_gateway_whose_disk_refuses_its_snapshot_warns_and_stops_cleanly(
    node: NatsCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A snapshot the gateway's disk refuses (here its `.tmp` file's path taken by a
    directory: EISDIR, as a full disk's ENOSPC) is a warning, periodic or at the stop, as the
    core's: the gateway serves on and stops cleanly, no snapshot written."""
    caplog.set_level(logging.INFO, logger="venue")

    async def scenario(url: str) -> bool:
        core, started = await active_core(tmp_path / "core", url, "core")
        try:
            await trade(started, 2, "a")
            server = gateway(tmp_path / "gw", url, "gw")
            await server.start("127.0.0.1", 0)
            seq = server.sequencer.last_seq
            snapshots.path_for(tmp_path / "gw", seq).with_suffix(".tmp").mkdir()
            try:
                return await server.core._snapshot_or_warn()  # type: ignore[attr-defined,no-any-return]
            finally:
                await server.stop()
        finally:
            await core.stop()

    assert asyncio.run(asyncio.wait_for(scenario(node.url), SCENARIO_TIMEOUT_S)) is False
    assert caplog.text.count("snapshot not written") == 2  # the periodic one's, the stop's
    assert not list(tmp_path.joinpath("gw").glob("snapshot-*.bin"))


def test_a_gateway_s_snapshot_of_another_stream_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A gateway's data directory with a snapshot of an earlier stream (its NATS nodes'
    stores replaced), the new stream longer than that snapshot's seq: the record at its seq
    is another's, so the snapshot is passed over and the stream replayed from its start.
    Two streams, so two nats-servers one after the other (~4 s)."""
    caplog.set_level(logging.INFO, logger="venue")

    async def on_stream(url: str, name: str, rounds: int) -> tuple[int, str, dict[str, Any]]:
        core, started = await active_core(tmp_path / name, url, name)
        try:
            await trade(started, rounds, name)
            server = gateway(tmp_path / "gw", url, "gw")
            await server.start("127.0.0.1", 0)
            try:
                return started.sequencer.last_seq, started.venue.state_hash(), seen(server)
            finally:
                await server.stop()
        finally:
            await core.stop()

    with NatsCluster(tmp_path / "nats-1", size=1) as first:
        asyncio.run(asyncio.wait_for(on_stream(first.url, "one", 3), SCENARIO_TIMEOUT_S))
    image = snapshots.latest(tmp_path / "gw")
    assert image is not None
    with NatsCluster(tmp_path / "nats-2", size=1) as second:
        run = on_stream(second.url, "two", 6)
        last, core_hash, replayed = asyncio.run(asyncio.wait_for(run, SCENARIO_TIMEOUT_S))
    assert last > image.seq
    assert "snapshot not used: of another stream" in caplog.text
    assert not restored(caplog)
    assert replayed["seq"] == last and replayed["hash"] == core_hash


def test_a_standby_follows_from_its_own_snapshot_and_takes_over_with_the_active_s_state(
    node: NatsCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Core a active, then stopped (its snapshot written); core b takes over and trades on;
    a started again on its data directory stands by: its warm copy restores that snapshot
    and follows the records after it only. b stops: a takes over from the copy with b's
    state hash, its store caught up with every transfer. Before: the copy followed the
    stream from seq 1."""
    caplog.set_level(logging.INFO, logger="venue")

    async def scenario(url: str) -> tuple[int, int, int, str, str, tuple[int, int]]:
        first, started = await active_core(tmp_path / "a", url, "core-a")
        await trade(started, 10, "a")
        await first.stop()
        image = snapshots.latest(tmp_path / "a")
        assert image is not None
        second, active = await active_core(tmp_path / "b", url, "core-b")
        standby = ClusterCore(CONFIG, tmp_path / "a", url, "core-a")
        contending = asyncio.ensure_future(standby.wait_for_lease(asyncio.Event()))
        try:
            await trade(active, 5, "b")
            last = active.sequencer.last_seq
            for _ in range(WAIT_TRIES):
                if standby.follower.seq == last:
                    break
                await asyncio.sleep(0.05)
            assert standby.follower.seq == last, "the standby never followed the stream"
            active_hash = active.venue.state_hash()
            await second.stop()
            assert await asyncio.wait_for(contending, SCENARIO_TIMEOUT_S)
            core = await standby.activate()
            assert core is not None
            stored = await core._on_store(core.store.last_transfer_id)
            booked = (stored, core.ledger.last_transfer_id)
            taken = core.sequencer.last_seq, core.venue.state_hash()
            return image.seq, last, taken[0], active_hash, taken[1], booked
        finally:
            if not contending.done():
                contending.cancel()
            await standby.stop()

    run = asyncio.wait_for(scenario(node.url), SCENARIO_TIMEOUT_S)
    at, last, taken_seq, active_hash, taken_hash, (stored, booked) = asyncio.run(run)
    ((seq, replaying),) = restored(caplog)  # (b may have traded on after the copy's start)
    assert seq == at and replaying <= last - at
    b_s, a_s = [record for record in caplog.records if record.getMessage() == "recovered"]
    assert b_s.warm is False and a_s.warm is True  # type: ignore[attr-defined]
    assert taken_seq == last
    assert taken_hash == active_hash
    assert stored == booked


def test_a_core_s_own_recovery_passes_over_a_snapshot_of_another_stream_and_refuses_one_ahead(
    node: NatsCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A cluster core's cold recovery checks its snapshots as its standby and the gateways
    do (`latest_usable`): one past the stream's last record is refused, saying so (a stream
    that lost records must not be run on), and a gateway's, as before; its newest one
    stamped otherwise than the stream's record at its seq (another stream's) is logged and
    passed over for the older one, from which it replays the rest to the stream's state.
    Before: only the seq was checked, and the other stream's snapshot was restored as this
    stream's state."""
    caplog.set_level(logging.INFO, logger="venue")
    data_dir = tmp_path / "a"

    async def scenario(url: str) -> tuple[int, int, str, int, str, int]:
        first, started = await active_core(data_dir, url, "core-a")
        await trade(started, 3, "a")
        await first.stop()
        older = snapshots.latest(data_dir)
        second, started = await active_core(data_dir, url, "core-a")
        await trade(started, 3, "b")
        last, state_hash, ts_us = (
            started.sequencer.last_seq, started.venue.state_hash(), started.venue.ts_us
        )  # fmt: skip
        await second.stop()
        newest = snapshots.latest(data_dir)
        assert older is not None and newest is not None and older.seq < newest.seq == last
        gateway_s = newest.gateway | {stream_snapshots.STREAM_EPOCH_KEY: 1}
        refusals = (
            (msgspec.structs.replace(newest, seq=last + 5), f"{last + 5} is ahead of the stream"),
            (msgspec.structs.replace(newest, gateway=gateway_s), "a cluster gateway's snapshot"),
        )
        for refused, why in refusals:
            path = snapshots.write(data_dir, refused)
            third = ClusterCore(CONFIG, data_dir, url, "core-a")
            assert await third.wait_for_lease(asyncio.Event())
            with pytest.raises(RecoveryRefused, match=why):
                await third.activate()
            path.unlink()
        other = msgspec.structs.replace(newest.venue, ts_us=newest.venue.ts_us - 1_000)
        snapshots.write(data_dir, msgspec.structs.replace(newest, venue=other))
        fourth, recovered = await active_core(data_dir, url, "core-a")
        taken = recovered.sequencer.last_seq, recovered.venue.state_hash(), recovered.venue.ts_us
        await fourth.stop()
        return older.seq, last, state_hash, ts_us, *taken

    run = asyncio.wait_for(scenario(node.url), SCENARIO_TIMEOUT_S)
    older_seq, last, state_hash, ts_us, seq, recovered_hash, recovered_ts_us = asyncio.run(run)
    assert "snapshot not used: of another stream" in caplog.text
    recovered = [r for r in caplog.records if r.getMessage() == "recovered"][-1]
    assert recovered.snapshot_seq == older_seq  # type: ignore[attr-defined]
    assert (seq, recovered_hash, recovered_ts_us) == (last, state_hash, ts_us)


async def _followed(standby: ClusterCore, seq: int) -> None:
    """Until `standby`'s warm copy is at `seq` (bounded)."""
    for _ in range(WAIT_TRIES):
        if standby.follower.seq == seq:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the standby's copy at seq {standby.follower.seq}, not {seq}")


async def _written(data_dir: Path, seq: int) -> None:
    """Until `data_dir` holds a snapshot at `seq` (bounded)."""
    for _ in range(WAIT_TRIES):
        if snapshots.path_for(data_dir, seq).exists():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no snapshot at seq {seq} in {data_dir}")


def test_a_standby_never_active_writes_its_own_snapshots_and_restarts_from_them(
    node: NatsCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    """Core b, never active, stands by on its own data directory: it writes snapshots of its
    warm copy there at the core's cadence (the interval made short here); core c, standing by
    on the active core's directory, writes none there, saying so. b stopped, a trading on, b
    started again: its copy restores its own snapshot and follows only the records after it;
    a stopped, b takes over with a's state hash, its own store caught up with every transfer
    (the copy's kept transfers are the snapshot's undrained ones). Before: a standby never
    active wrote no snapshot, and each start followed the stream from seq 1."""
    caplog.set_level(logging.INFO, logger="venue")
    monkeypatch.setattr(venue_core, "SNAPSHOT_INTERVAL_S", 0.05)

    async def standing_by(data_dir: Path, url: str, name: str) -> tuple[ClusterCore, Any]:
        core = ClusterCore(CONFIG, data_dir, url, name)
        return core, asyncio.ensure_future(core.wait_for_lease(asyncio.Event()))

    async def first_standby(url: str, active: VenueCore) -> int:
        b, contending = await standing_by(tmp_path / "b", url, "core-b")
        c, squatting = await standing_by(tmp_path / "a", url, "core-c")
        try:
            await trade(active, 3, "a")
            last = active.sequencer.last_seq
            await _followed(b, last)
            await _written(tmp_path / "b", last)
            await _followed(c, last)
            for _ in range(WAIT_TRIES):
                if "standby writes no snapshots" in caplog.text:
                    break
                await asyncio.sleep(0.05)
            return last
        finally:
            for task in (contending, squatting):
                task.cancel()
            await b.stop()
            await c.stop()

    async def scenario(url: str) -> tuple[int, int, str, str, int, int]:
        first, active = await active_core(tmp_path / "a", url, "core-a")
        written = await first_standby(url, active)
        await trade(active, 2, "b")
        last = active.sequencer.last_seq
        b, contending = await standing_by(tmp_path / "b", url, "core-b")
        try:
            await _followed(b, last)
            active_hash = active.venue.state_hash()
            await first.stop()
            assert await asyncio.wait_for(contending, SCENARIO_TIMEOUT_S)
            core = await b.activate()
            assert core is not None
            stored = await core._on_store(core.store.last_transfer_id)
            taken_hash = core.venue.state_hash()
            return written, last, active_hash, taken_hash, stored, core.ledger.last_transfer_id
        finally:
            if not contending.done():
                contending.cancel()
            await b.stop()

    run = asyncio.wait_for(scenario(node.url), SCENARIO_TIMEOUT_S)
    written, last, active_hash, taken_hash, stored, booked = asyncio.run(run)
    warned = [r for r in caplog.records if r.getMessage().startswith("standby writes no")]
    assert [record.core for record in warned] == ["core-c"]  # type: ignore[attr-defined]
    assert restored(caplog) == [(written, last - written)]
    assert taken_hash == active_hash
    assert stored == booked > 0


def _gateway_snapshot(directory: Path, seq: int, ts_us: int, epoch: int) -> Path:
    """A gateway's snapshot at `seq` of an empty venue whose clock is at `ts_us`."""
    venue = Venue(VenueConfig(), Ledger())
    venue.ts_us = ts_us
    image = snapshots.Snapshot(seq, capture(venue), {stream_snapshots.STREAM_EPOCH_KEY: epoch})
    return snapshots.write(directory, image)


def _latest_usable(directory: Path, stamps: dict[int, int], last_seq: int) -> int | None:
    """The seq of the snapshot a gateway would take on a stream of `last_seq` records whose
    records' stamps are `stamps` (seq -> time)."""

    async def stamp_at(seq: int) -> int:
        return stamps[seq]

    found = stream_snapshots.latest_usable(directory, last_seq, stamp_at, gateway_s=True, who="gw")
    image = asyncio.run(found)
    return None if image is None else image.seq


def test_a_snapshot_that_cannot_be_read_or_decoded_is_passed_over_for_an_older_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The newest file not readable (a directory in its place: EISDIR, as an I/O error's
    EIO), then a newest one whose checksum is right but whose body is not a snapshot: each
    is passed over (logged) and the older usable one taken. Before: the read error, or the
    ValidationError, ended the whole search (a gateway replayed the whole stream) or the
    start (a gateway could not start, a standby crashed)."""
    stamps = {1: 100, 7: 700, 9: 900}
    _gateway_snapshot(tmp_path, 7, 700, 100)
    snapshots.path_for(tmp_path, 9).mkdir()
    assert _latest_usable(tmp_path, stamps, 9) == 7
    assert "snapshot not used: not read" in caplog.text
    snapshots.path_for(tmp_path, 9).rmdir()
    body = msgspec.msgpack.encode({"seq": 9, "venue": 3, "gateway": {}})
    header = snapshots.HEADER.pack(snapshots.MAGIC, 9, zlib.crc32(body), len(body))
    snapshots.path_for(tmp_path, 9).write_bytes(header + body)
    assert _latest_usable(tmp_path, stamps, 9) == 7
    assert "snapshot not used: does not decode" in caplog.text


def test_a_snapshot_whose_entry_does_not_decode_is_passed_over_for_an_older_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The review of session 34: the newest snapshot's per-account entry not decoding (a
    closed order's symbol not UTF-8, its checksum right) passed `read`, so a gateway took it
    over the good older one, failed to restore it and replayed the whole stream. Now it is
    passed over as a damaged file is (logged, naming the file, the map and the account), by
    a copy and by a core's own recovery (`strict`) alike."""
    stamps = {1: 100, 7: 700, 9: 900}
    _gateway_snapshot(tmp_path, 7, 700, 100)
    newest = _gateway_snapshot(tmp_path, 9, 900, 100)
    record = OrderRecord(
        1, None, "AAPLx-USD", "buy", "limit", "gtc", "1.00", "1", None, "0", "1", "1.00",
        "filled", None, None, 1, 2,
    )  # fmt: skip
    _rewritten(newest, {"order_history": {"accounts": {"3": [0, [record]]}}})
    account = with_an_entry_not_decoding(newest, ("order_history", "accounts"))
    assert _latest_usable(tmp_path, stamps, 9) == 7
    named = f"{newest}: the order_history.accounts entry of account {account} does not decode"
    assert f"snapshot not used: does not decode ({named}" in caplog.text
    shutil.rmtree(tmp_path)
    tmp_path.mkdir()

    async def stamp_at(seq: int) -> int:
        return stamps[seq]

    _core_snapshot(tmp_path, 7, 700)
    newest = _core_snapshot(tmp_path, 9, 900)
    _rewritten(newest, {"private": {"1": [1, [[1, b"push"]]]}})
    with_an_entry_not_decoding(newest, ("private",))
    assert _strict(tmp_path, stamp_at) == 7


def test_a_snapshot_of_another_venue_image_version_is_passed_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The newest snapshot's venue image of another version (a build's older or newer
    format): passed over (logged), the older one taken. Before: it was taken, and
    `restore_venue`'s assertion stopped the gateway's start, or crashed the standby."""
    _gateway_snapshot(tmp_path, 7, 700, 100)
    path = _gateway_snapshot(tmp_path, 9, 900, 100)
    image = snapshots.read(path)
    assert image is not None
    other = msgspec.structs.replace(image.venue, version=image.venue.version + 1)
    snapshots.write(tmp_path, msgspec.structs.replace(image, venue=other))
    assert _latest_usable(tmp_path, {1: 100, 7: 700, 9: 900}, 9) == 7
    assert "snapshot not used: of another venue image version" in caplog.text


def _rewritten(path: Path, gateway_part: dict[str, Any]) -> None:
    """The snapshot in `path` written again with `gateway_part` in its gateway part."""
    image = snapshots.read(path)
    assert image is not None
    part = image.gateway | gateway_part
    snapshots.write(path.parent, msgspec.structs.replace(image, gateway=part))


def test_a_gateway_whose_snapshot_fails_to_restore_replays_the_whole_stream(
    node: NatsCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A usable gateway snapshot whose gateway part fails to restore part way (its trades
    tape not a tape's, after its private streams, order history and candles were taken):
    the start says so and replays the whole stream, and holds what a new gateway holds.
    Before: the error stopped the gateway's start, at every start."""
    caplog.set_level(logging.INFO, logger="venue")

    async def scenario(url: str) -> tuple[int, list[dict[str, Any]]]:
        core, started = await active_core(tmp_path / "core", url, "core")
        try:
            await trade(started, 5, "a")
            await gateway_once(tmp_path / "gw", url)
            (path,) = tmp_path.joinpath("gw").glob("snapshot-*.bin")
            _rewritten(path, {"tape": {"symbols": [["AAPLx-USD", [{"not": "a trade"}]]]}})
            await trade(started, 2, "b")
            servers = [gateway(tmp_path / name, url, name) for name in ("gw", "new")]
            for server in servers:
                await server.start("127.0.0.1", 0)
            try:
                return started.sequencer.last_seq, [seen(server) for server in servers]
            finally:
                for server in servers:
                    await server.stop()
        finally:
            await core.stop()

    last, (again, new) = asyncio.run(asyncio.wait_for(scenario(node.url), SCENARIO_TIMEOUT_S))
    assert "snapshot not restored: ValidationError" in caplog.text
    assert not restored(caplog)
    assert again["seq"] == new["seq"] == last
    assert again["hash"] == new["hash"]
    for part in ("private", "order_history", "candles", "tape", "last_exec_id"):
        assert again["gateway"][part] == new["gateway"][part], part


def test_a_standby_whose_snapshot_fails_to_restore_follows_the_whole_stream(
    node: NatsCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A core's usable snapshot whose core part fails to restore (its cod orders not a
    list of pairs): the standby's warm copy says so and follows the stream from its start,
    to the active core's state; the core's codec and cod orders untouched by the attempt.
    Before: the error crashed the standby."""
    caplog.set_level(logging.INFO, logger="venue")

    async def scenario(url: str) -> tuple[int, str, int, str, dict[str, int], int]:
        first, started = await active_core(tmp_path / "a", url, "core-a")
        await trade(started, 3, "a")
        last, state_hash = started.sequencer.last_seq, started.venue.state_hash()
        await first.stop()
        (path,) = tmp_path.joinpath("a").glob("snapshot-*.bin")
        _rewritten(path, {"last_request": {"gw-x": 7}, "cod_orders": 5})
        codec, cod_orders = ClusterCodec(), CodOrders()
        staleness_us = venue_config.reserve_staleness_max_us(CONFIG)
        follower = Follower(codec, cod_orders, staleness_us, tmp_path / "a", "core-a")
        client = await nats.connect(url)
        try:
            await follower.start(client)
            for _ in range(WAIT_TRIES):
                if follower.seq == last:
                    break
                await asyncio.sleep(0.05)
            await follower.stop()
            copied = (follower.seq, follower.venue.state_hash())
            return last, state_hash, *copied, dict(codec.last_request), cod_orders.size
        finally:
            await client.close()

    run = asyncio.wait_for(scenario(node.url), SCENARIO_TIMEOUT_S)
    last, state_hash, seq, copied_hash, last_request, cod_size = asyncio.run(run)
    assert "snapshot not restored: TypeError" in caplog.text
    assert not restored(caplog)
    assert (seq, copied_hash) == (last, state_hash)
    assert "gw-x" not in last_request and cod_size == 0


def _drain(fifo: Path) -> None:
    """Read the named pipe `fifo` to its end: its writer, waiting in its open, goes on."""
    descriptor = os.open(fifo, os.O_RDONLY)
    try:
        while os.read(descriptor, 1 << 16):
            pass
    finally:
        os.close(descriptor)


def test_a_gateway_s_stop_releases_its_lease_before_it_writes_its_snapshot(
    node: NatsCluster, tmp_path: Path
) -> None:
    """The stop's snapshot held up (its `.tmp` file a named pipe nobody reads yet: the write
    waits in its open): the gateway's lease is released meanwhile, so the core's cod cancels
    for it wait for no disk write. (The pipe, read then, takes no fsync: the snapshot is not
    written, a warning.) Before: the lease was released only once the snapshot was written."""

    async def scenario(url: str) -> tuple[bool, bool]:
        core, started = await active_core(tmp_path / "core", url, "core")
        try:
            await trade(started, 2, "a")
            server = gateway(tmp_path / "gw", url, "gw")
            await server.start("127.0.0.1", 0)
            lease = cast(NatsBus, server.bus).lease
            assert lease is not None and lease.held()
            fifo = snapshots.path_for(tmp_path / "gw", server.sequencer.last_seq)
            os.mkfifo(fifo.with_suffix(".tmp"))
            stopping = asyncio.ensure_future(server.stop())
            for _ in range(RELEASE_TRIES):
                if not lease.held():
                    break
                await asyncio.sleep(0.05)
            released_first = not lease.held() and not stopping.done()
            if not stopping.done():
                await asyncio.to_thread(_drain, fifo.with_suffix(".tmp"))
            await stopping
            return released_first, lease.held()
        finally:
            await core.stop()

    run = asyncio.wait_for(scenario(node.url), SCENARIO_TIMEOUT_S)
    assert asyncio.run(run) == (True, False)


def test_a_gateway_holds_its_data_directory_refusing_a_second_and_removing_stray_files(
    node: NatsCluster, tmp_path: Path
) -> None:
    """A gateway's start locks its data directory (`venue.lock`, as a core's): a second
    gateway started on it is refused, saying so, and nothing of it runs; the half-written
    snapshot a crash left there is removed (no other writer can be mid-write). Before: the
    second ran beside the first, their snapshots written side by side, and a `.tmp` file
    was never removed."""
    stray = snapshots.path_for(tmp_path / "gw", 3).with_suffix(".tmp")

    async def scenario(url: str) -> tuple[bool, str]:
        core, started = await active_core(tmp_path / "core", url, "core")
        try:
            await trade(started, 1, "a")
            first = gateway(tmp_path / "gw", url, "gw-1")
            stray.write_bytes(b"half a snapshot")
            await first.start("127.0.0.1", 0)
            try:
                stray_left = stray.exists()
                second = gateway(tmp_path / "gw", url, "gw-2")
                with pytest.raises(JournalLocked) as refused:
                    await second.start("127.0.0.1", 0)
                return stray_left, str(refused.value)
            finally:
                await first.stop()
        finally:
            await core.stop()

    run = asyncio.wait_for(scenario(node.url), SCENARIO_TIMEOUT_S)
    stray_left, refusal = asyncio.run(run)
    assert not stray_left
    assert "give each gateway its own --data-dir" in refusal
    assert str(tmp_path / "gw" / "venue.lock") in refusal


def test_a_start_whose_stray_file_cannot_be_removed_lets_the_directory_go(
    node: NatsCluster, tmp_path: Path
) -> None:
    """A `.tmp` that cannot be removed (a directory of that name: EISDIR) fails the start,
    and the lock goes with it: the whole review's probe held it, so the next start in the
    process was refused as if a gateway ran there (session 33's second review)."""
    stray = snapshots.path_for(tmp_path / "gw", 3).with_suffix(".tmp")

    async def scenario(url: str) -> list[str]:
        core, started = await active_core(tmp_path / "core", url, "core")
        try:
            await trade(started, 1, "a")
            stray.mkdir(parents=True)
            first = gateway(tmp_path / "gw", url, "gw-1")
            with pytest.raises(IsADirectoryError):
                await first.start("127.0.0.1", 0)
            left = sorted(path.name for path in (tmp_path / "gw").iterdir())
            stray.rmdir()
            second = gateway(tmp_path / "gw", url, "gw-2")
            await second.start("127.0.0.1", 0)  # before: JournalLocked
            await second.stop()
            return left
        finally:
            await core.stop()

    left = asyncio.run(asyncio.wait_for(scenario(node.url), SCENARIO_TIMEOUT_S))
    assert left == [stray.name]  # its lock file removed with the lock


def test_a_gateways_snapshot_is_taken_with_the_collector_paused_and_says_its_capture(
    node: NatsCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the core's since the long run (session 33): the collector paused from the capture
    to the write, and `snapshot written` says `capture_ms`. The whole session's review found
    a gateway's snapshots, periodic and at its stop, taken with the collector on and saying
    no capture time."""
    said = snapshots.write_said
    seen: list[tuple[str, bool, float | None]] = []

    def recording(directory: Path, image: Any, said_by: Any, capture_ms: Any = None) -> Path:
        seen.append((said_by.name, gc.isenabled(), capture_ms))
        return said(directory, image, said_by, capture_ms)

    monkeypatch.setattr(snapshots, "write_said", recording)

    async def scenario(url: str) -> bool:
        core, started = await active_core(tmp_path / "core", url, "core")
        try:
            await trade(started, 2, "a")
            server = gateway(tmp_path / "gw", url, "gw-1")
            await server.start("127.0.0.1", 0)
            try:
                await server.core.snapshot()
                await server.core._snapshot_or_warn()
            finally:
                await server.stop()
            return gc.isenabled()
        finally:
            await core.stop()

    seen.clear()
    collecting_after = asyncio.run(asyncio.wait_for(scenario(node.url), SCENARIO_TIMEOUT_S))
    gateways = [(on, ms) for name, on, ms in seen if name == "venue.cluster"]  # not the core's
    assert [enabled for enabled, _ in gateways] == [False, False, False], seen  # two, the stop's
    assert all(capture_ms is not None and capture_ms >= 0 for _, capture_ms in gateways), seen
    assert collecting_after


def _left_running(before: set[asyncio.Task[Any]]) -> list[str]:
    """The tasks running now that were not `before` (nor this one)."""
    current = asyncio.current_task()
    return sorted(repr(task.get_coro()) for task in asyncio.all_tasks() - before - {current})


async def _none_left_running(before: set[asyncio.Task[Any]]) -> list[str]:
    """`_left_running`, once those that are ending have ended (bounded: a few loop turns)."""
    for _ in range(RELEASE_TRIES):
        if not _left_running(before):
            break
        await asyncio.sleep(0.05)
    return _left_running(before)


def _lock_free(data_dir: Path) -> bool:
    try:
        venue_core.lock_data_dir(data_dir).close()
    except JournalLocked:
        return False
    return True


def test_a_gateway_start_canceled_or_failing_after_its_replica_started_leaves_nothing_open(
    node: NatsCluster, tmp_path: Path
) -> None:
    """A gateway's start canceled during its replay (its stream follow's watch running), and
    one whose listen fails (the port taken) after its replica started: each closes its NATS
    connection, leaves no task running in the process and lets its data directory go.
    Before: the canceled start's NATS connection and its two tasks (the keys' watch, the
    stream follow's) ran on."""

    async def scenario(url: str) -> tuple[bool, list[list[str]], list[bool], list[bool]]:
        core, started = await active_core(tmp_path / "core", url, "core")
        try:
            await trade(started, 50, "a")
            before = asyncio.all_tasks()
            server = gateway(tmp_path / "gw", url, "gw-1")
            starting = asyncio.ensure_future(server.start("127.0.0.1", 0))
            replica = cast(Any, server.core)
            for _ in range(100_000):  # (loop turns: the watch is made as the replay begins)
                if len(replica._tasks) >= 2 or starting.done():
                    break
                await asyncio.sleep(0)
            replaying = not replica._caught_up.is_set()
            connection = server.bus.nc
            starting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await starting
            left = [await _none_left_running(before)]
            closed = [connection is not None and connection.is_closed]
            free = [_lock_free(tmp_path / "gw")]
            with socket.socket() as taken:
                taken.bind(("127.0.0.1", 0))
                taken.listen()
                server = gateway(tmp_path / "gw", url, "gw-2")
                with pytest.raises(OSError):
                    await server.start("127.0.0.1", taken.getsockname()[1])
            left.append(await _none_left_running(before))
            closed.append(server.bus.nc is None or server.bus.nc.is_closed)
            free.append(_lock_free(tmp_path / "gw"))
            return replaying, left, closed, free
        finally:
            await core.stop()

    run = asyncio.wait_for(scenario(node.url), SCENARIO_TIMEOUT_S)
    replaying, left, closed, free = asyncio.run(run)
    assert replaying, "canceled during the replay"
    assert left == [[], []]
    assert closed == [True, True]
    assert free == [True, True]


def _core_snapshot(directory: Path, seq: int, ts_us: int) -> Path:
    """A core's snapshot at `seq` of an empty venue whose clock is at `ts_us`."""
    venue = Venue(VenueConfig(), Ledger())
    venue.ts_us = ts_us
    return snapshots.write(directory, snapshots.Snapshot(seq, capture(venue), {}))


def _strict(directory: Path, stamp_at: Any, last_seq: int = 9) -> int | None:
    """The seq of the snapshot a core's own recovery takes (`strict`)."""
    found = stream_snapshots.latest_usable(
        directory, last_seq, stamp_at, gateway_s=False, who="core", strict=True
    )
    image = asyncio.run(found)
    return None if image is None else image.seq


def test_a_core_s_own_check_retries_a_record_not_read_and_never_passes_its_snapshot_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A core's own recovery (`strict`) reading the stream's record at its newest snapshot's
    seq: NATS not answering twice (a reconnect, a leader election), then answering: the
    read is retried and that snapshot taken. NATS not answering for longer than
    `STAMP_RETRY_S`, or a record that does not decode: the start fails (`StampUnread`), to
    be tried again. Before: the snapshot was passed over for an older one, or for a replay
    of the whole stream from seq 1, on one failed read."""
    _core_snapshot(tmp_path, 7, 700)
    _core_snapshot(tmp_path, 9, 900)
    failures = [nats.errors.TimeoutError(), nats.js.errors.ServiceUnavailableError(503)]
    stamps = {7: 700, 9: 900}

    async def brief_outage(seq: int) -> int:
        if failures:
            raise failures.pop()
        return stamps[seq]

    assert _strict(tmp_path, brief_outage) == 9
    assert not failures, "both failures were met"
    monkeypatch.setattr(stream_snapshots, "STAMP_RETRY_S", 0.3)

    async def down(seq: int) -> int:
        raise nats.errors.TimeoutError

    with pytest.raises(stream_snapshots.StampUnread, match="seq 9 was not read"):
        _strict(tmp_path, down)

    async def undecodable(seq: int) -> int:
        raise msgspec.DecodeError("not a record")

    with pytest.raises(stream_snapshots.StampUnread, match="not a record"):
        _strict(tmp_path, undecodable)


def test_a_core_s_own_check_refuses_a_snapshot_linked_to_nothing_or_not_read(
    tmp_path: Path,
) -> None:
    """A core's own recovery (`strict`): its newest snapshot a symbolic link to nothing (its
    disk not mounted) is refused in one line (`DanglingLink`: `venue serve` says `cannot
    start`, exit 2), and one that cannot be read (a directory in its place) raises the
    read's error, as `snapshots.survey` does for a one-process venue; a copy (not strict)
    passes both over. Before: the cluster core passed them over for an older snapshot."""

    async def stamp_at(seq: int) -> int:
        return {7: 700, 9: 900}[seq]

    _core_snapshot(tmp_path, 7, 700)
    newest = snapshots.path_for(tmp_path, 9)
    newest.symlink_to(tmp_path / "elsewhere" / newest.name)
    with pytest.raises(DanglingLink, match=r"symbolic link to .*not passing it over"):
        _strict(tmp_path, stamp_at)
    newest.unlink()
    newest.mkdir()
    with pytest.raises(IsADirectoryError):
        _strict(tmp_path, stamp_at)
    found = stream_snapshots.latest_usable(tmp_path, 9, stamp_at, gateway_s=False, who="copy")
    image = asyncio.run(found)
    assert image is not None and image.seq == 7


def test_a_standby_with_a_snapshot_ahead_of_the_stream_refuses_at_its_start(
    node: NatsCluster, tmp_path: Path
) -> None:
    """A standby whose data directory holds a snapshot past the stream's last record (the
    stream lost records, or the directory is another venue's) refuses at its start, saying
    so, as its takeover's recovery would. Before: it passed the snapshot over, followed the
    stream from seq 1 for its whole life and refused only at its takeover."""

    async def scenario(url: str) -> BaseException | None:
        first, started = await active_core(tmp_path / "a", url, "core-a")
        await trade(started, 2, "a")
        await first.stop()
        image = snapshots.latest(tmp_path / "a")
        assert image is not None
        (tmp_path / "b").mkdir()
        snapshots.write(tmp_path / "b", msgspec.structs.replace(image, seq=image.seq + 5))
        second, _ = await active_core(tmp_path / "a", url, "core-a")
        standby = ClusterCore(CONFIG, tmp_path / "b", url, "core-b")
        contending = asyncio.ensure_future(standby.wait_for_lease(asyncio.Event()))
        try:
            for _ in range(WAIT_TRIES):
                if contending.done() or standby.follower.following:
                    break
                await asyncio.sleep(0.05)
            assert contending.done(), "the standby follows the stream"
            return contending.exception()
        finally:
            contending.cancel()
            await standby.stop()
            await second.stop()

    refused = asyncio.run(asyncio.wait_for(scenario(node.url), SCENARIO_TIMEOUT_S))
    assert isinstance(refused, RecoveryRefused)
    assert "is ahead of the stream" in str(refused)


def test_a_sqlite_standby_s_snapshots_hold_only_the_transfers_its_own_store_lacks(
    node: NatsCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Core a, active, booked transfers 1..X into its own `ledger.sqlite`, then stopped (its
    snapshots removed: its copy follows the stream from seq 1); b, active, trades on. a,
    standing by on its directory, writes snapshots whose transfers are only those above X
    (what a takeover's catch-up books), its copy likewise; b stopped, a takes over with its
    store caught up with every transfer. Before: every snapshot held every transfer its
    copy had booked since its start (1..Y), without bound."""
    monkeypatch.setattr(venue_core, "SNAPSHOT_INTERVAL_S", 0.05)

    async def scenario(url: str) -> tuple[int, list[int], list[int], int, int, int]:
        first, started = await active_core(tmp_path / "a", url, "core-a")
        await trade(started, 3, "a")
        await first.stop()
        store = SqliteLedgerStore(tmp_path / "a" / "ledger.sqlite", read_only=True)
        stored = store.last_transfer_id()
        store.close()
        for path in (tmp_path / "a").glob("snapshot-*.bin"):
            path.unlink()
        second, active = await active_core(tmp_path / "b", url, "core-b")
        standby = ClusterCore(CONFIG, tmp_path / "a", url, "core-a")
        contending = asyncio.ensure_future(standby.wait_for_lease(asyncio.Event()))
        try:
            await trade(active, 2, "b")
            last, booked = active.sequencer.last_seq, active.ledger.last_transfer_id
            await _followed(standby, last)
            await _written(tmp_path / "a", last)
            image = snapshots.read(snapshots.path_for(tmp_path / "a", last))
            assert image is not None and image.venue.ledger is not None
            held = [transfer.transfer_id for transfer in image.venue.ledger.undrained]
            kept = [transfer.transfer_id for transfer in standby.follower.transfers]
            await second.stop()
            assert await asyncio.wait_for(contending, SCENARIO_TIMEOUT_S)
            core = await standby.activate()
            assert core is not None
            caught_up = await core._on_store(core.store.last_transfer_id)
            return stored, held, kept, booked, caught_up, core.ledger.last_transfer_id
        finally:
            if not contending.done():
                contending.cancel()
            await standby.stop()

    run = asyncio.wait_for(scenario(node.url), SCENARIO_TIMEOUT_S)
    stored, held, kept, booked, caught_up, taken = asyncio.run(run)
    assert 0 < stored < booked
    assert held == kept == list(range(stored + 1, booked + 1))
    assert caught_up == taken == booked


def test_a_gateway_s_stop_canceled_while_outcomes_are_owed_gives_its_lease_back(
    node: NatsCluster, tmp_path: Path
) -> None:
    """A gateway's stop canceled while it waits for outcomes still owed (no core active):
    its lease is given back (the core cancels its cod orders at once, not after the TTL),
    its connection closed. Before: the connection was closed and the lease left held."""

    async def scenario(url: str) -> tuple[bool, bool, bool]:
        core, _ = await active_core(tmp_path / "core", url, "core")
        server = gateway(tmp_path / "gw", url, "gw-1")
        await server.start("127.0.0.1", 0)
        await core.stop()
        replica = cast(Any, server.core)
        lease = server.bus.lease
        assert lease is not None
        server.bus.submit(order(1, Side.BUY, 18_000, "owed"), None)
        stopping = asyncio.ensure_future(replica.stop())
        for _ in range(20):  # (loop turns: into the drain)
            await asyncio.sleep(0)
        draining = not stopping.done()
        stopping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopping
        closed = server.bus.nc is not None and server.bus.nc.is_closed
        nc = await nats.connect(url)
        try:
            held = await key_held(nc.jetstream(), GATEWAY_LEASE_BUCKET, lease.key)
        finally:
            await nc.close()
        return draining, closed, held

    run = asyncio.wait_for(scenario(node.url), SCENARIO_TIMEOUT_S)
    draining, closed, held = asyncio.run(run)
    assert draining and closed
    assert not held


def test_a_sqlite_standby_whose_own_store_file_is_not_a_store_it_reads_keeps_its_transfers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A `--sqlite` standby whose `ledger.sqlite` is empty (a core killed between creating
    the file and its schema) or of another schema version: its snapshots are written all the
    same, its transfers all kept (none trimmed), said once with why. Before: the store's
    refusal (`LedgerStoreError`) escaped the write, ending the standby's snapshots task and
    so the standby (`_fatal_unless_cancelled`)."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "ledger.sqlite").touch()
    (tmp_path / "other").mkdir()
    other = sqlite3.connect(tmp_path / "other" / "ledger.sqlite")
    other.execute("PRAGMA user_version = 99")
    other.close()

    async def writes(data_dir: Path) -> list[bool]:
        staleness_us = venue_config.reserve_staleness_max_us(CONFIG)
        follower = Follower(
            ClusterCodec(),
            CodOrders(),
            staleness_us,
            data_dir,
            "core-b",
            data_dir / "ledger.sqlite",
        )
        standby = StandbySnapshots(follower, data_dir, "core-b", follower.own_store)
        try:
            written = [await standby._write_or_warn()]
            follower.seq += 1  # (a second snapshot: the store read again, not said again)
            written.append(await standby._write_or_warn())
            return written
        finally:
            await standby.close(last=False)

    for kind, why in (("empty", "no schema"), ("other", "schema version 99")):
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="venue.cluster"):
            assert asyncio.run(writes(tmp_path / kind)) == [True, True]
        said = [r for r in caplog.records if "standby keeps its transfers" in r.getMessage()]
        assert [r.levelno for r in said] == [logging.WARNING, logging.DEBUG]
        assert why in said[0].getMessage()
        assert snapshots.path_for(tmp_path / kind, 1).exists()


class StreamStandIn:
    """nats-py's JetStream context as a standby's start reads it (`stream_info`, `get_msg`):
    a stream of `last_seq` records whose reads `answer` (returns or raises), counted."""

    def __init__(self, last_seq: int, answer: Any) -> None:
        self.last_seq = last_seq
        self.answer = answer
        self.reads = 0

    async def stream_info(self, stream: str) -> Any:
        return SimpleNamespace(state=SimpleNamespace(last_seq=self.last_seq))

    async def get_msg(self, stream: str, seq: int) -> Any:
        self.reads += 1
        return self.answer(seq)


def _standby_s_check(data_dir: Path, js: StreamStandIn) -> BaseException | None:
    """What a standby's start raises checking its newest snapshot in `data_dir`, if any."""
    staleness_us = venue_config.reserve_staleness_max_us(CONFIG)
    follower = Follower(ClusterCodec(), CodOrders(), staleness_us, data_dir, "core-b")
    try:
        asyncio.run(follower._latest_usable(js, data_dir))
    except Exception as raised:
        return raised
    return None


def test_a_standby_s_start_reads_its_snapshot_s_record_once_and_tries_again_at_its_next_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NATS not answering the read of the record at a standby's newest snapshot's seq: the
    standby's start reads it once and raises `StampUnread` (its lease poll tries again);
    `latest_usable` honours its retry budget (0: one try; a core's cold recovery keeps
    `STAMP_RETRY_S`). Before: the standby retried for `STAMP_RETRY_S` (30 s) inside its
    lease poll, so a takeover or a SIGTERM waited ~35 s, not the lease's TTL."""
    monkeypatch.setattr(stream_snapshots, "STAMP_RETRY_S", 0.3)  # (a retry: > 1 read)
    _core_snapshot(tmp_path, 9, 900)

    def down(seq: int) -> Any:
        raise nats.errors.TimeoutError

    js = StreamStandIn(9, down)
    raised = _standby_s_check(tmp_path, js)
    assert isinstance(raised, stream_snapshots.StampUnread), raised
    assert js.reads == 1, "read once, not retried"
    assert not raised.undecoded
    reads: list[int] = []

    async def counted(seq: int) -> int:
        reads.append(seq)
        raise nats.errors.TimeoutError

    once = stream_snapshots.latest_usable(
        tmp_path, 9, counted, gateway_s=False, who="core", strict=True, stamp_retry_s=0
    )
    with pytest.raises(stream_snapshots.StampUnread, match="try again once NATS answers"):
        asyncio.run(once)
    assert reads == [9]


def test_a_standby_whose_snapshot_s_record_does_not_decode_refuses_its_start(
    tmp_path: Path,
) -> None:
    """The stream's record at a standby's newest snapshot's seq does not decode (another
    venue's stream, a later build's): no later try reads it, so the standby's start is
    refused (`RecoveryRefused`: exit 2) saying what to do. Before: `StampUnread`, which the
    lease poll took for NATS not answering yet: the newest snapshot read and decoded again
    every 0.2 s, logged at INFO, for ever."""
    _core_snapshot(tmp_path, 9, 900)
    js = StreamStandIn(9, lambda seq: SimpleNamespace(data=b"\x01 not a record"))
    raised = _standby_s_check(tmp_path, js)
    assert isinstance(raised, RecoveryRefused), raised
    assert "seq 9 was not read" in str(raised)
    assert "move that snapshot away" in str(raised).lower()
    assert js.reads == 1


def test_a_core_s_own_check_passes_over_a_snapshot_pruned_since_the_directory_was_read(
    tmp_path: Path,
) -> None:
    """A core's own check (`strict`) on a directory shared with the active core: a snapshot
    the active core pruned between the glob and its read is gone, not damaged, and passed
    over (here the newest is of another stream, the older one pruned meanwhile: none
    usable). Before: `FileNotFoundError`, which a standby's poll does not catch."""
    older = _core_snapshot(tmp_path, 7, 700)
    _core_snapshot(tmp_path, 9, 900)

    async def pruning(seq: int) -> int:
        older.unlink(missing_ok=True)  # the active core prunes as the newest is checked
        return {7: 700, 9: 901}[seq]

    assert _strict(tmp_path, pruning) is None
    assert not older.exists()


async def _followed_records(follower: Follower, commands: list[Command]) -> None:
    """`commands` as the stream's next records, each a gateway's (its request id the seq; every
    fifth place with cod on), delivered to `follower` as its consumer delivers them."""
    codec = ClusterCodec()
    for command in commands:
        seq = follower.seq + 1
        if type(command) is PlaceOrder and seq % 5 == 0:
            command = msgspec.structs.replace(command, cod=True)
        record = codec.encode(Executed(seq, command, [], Origin("gw-t", seq)))
        metadata = SimpleNamespace(sequence=SimpleNamespace(stream=seq))
        await follower._on_message(cast(Any, SimpleNamespace(metadata=metadata, data=record)))
    assert not follower.broken


def _captured_at_once(follower: Follower) -> bytes:
    """The snapshot of the copy as a standby captured it before session 35, whole at once on
    its loop (its venue's image, the transfers it keeps as the ledger's undrained ones, the
    core's part), encoded: the bytes a standby writes for that state."""
    venue = capture(follower.venue)
    assert venue.ledger is not None
    ledger = msgspec.structs.replace(venue.ledger, undrained=list(follower.transfers))
    part = CoreGatewayPart(follower.codec, follower.cod_orders).gateway_image()
    venue = msgspec.structs.replace(venue, ledger=ledger)
    image = snapshots.Snapshot(follower.seq, venue, part, follower.first_staleness_us)
    return snapshots.encode(image)


def test_a_standby_s_snapshot_is_written_as_captured_though_its_copy_follows_on_meanwhile(
    tmp_path: Path,
) -> None:
    """Session 35: a standby captured its copy at once on its event loop, a new pair per
    closed order id (~60-90 ms at the engine's million, during which its lease poll and its
    following of the stream waited). Now it captures as the active core does (`Later` parts,
    references that following the stream does not change, made by the writer thread): its
    copy follows records on (closing orders, sealing and dropping chunks, booking transfers,
    marking cod) while the write waits, and the file holds the bytes of the copy captured at
    once, as before, which restore to the copy's state at the capture."""
    case = test_differential_ledger.CASES[0]
    commands = test_differential_ledger.commands(case, 3_000)
    data_dir = tmp_path / "b"
    config = msgspec.structs.replace(case.config(), closed_orders_retained_max=250)
    staleness_us = config.reserve_staleness_max_us
    follower = Follower(ClusterCodec(), CodOrders(), staleness_us, data_dir, "core-b")
    follower.venue = Venue(config, follower.ledger)  # chunks sealed, then forgotten, soon

    async def scenario() -> tuple[snapshots.Snapshot, bytes, bytes, tuple[bytes, bytes]]:
        await _followed_records(follower, commands[:2_000])
        expected, state_hash = _captured_at_once(follower), follower.venue.state_hash()
        taken: list[snapshots.Snapshot] = []
        capture_of = follower.capture

        def capturing() -> tuple[snapshots.Snapshot, float]:
            image, capture_ms = capture_of()
            taken.append(image)
            return image, capture_ms

        follower.capture = capturing  # type: ignore[method-assign]
        standby = StandbySnapshots(follower, data_dir, "core-b")
        writer_free = threading.Event()
        standby._writer.submit(writer_free.wait, SCENARIO_TIMEOUT_S)  # the write waits
        try:
            writing = asyncio.ensure_future(standby._write_or_warn())
            for _ in range(WAIT_TRIES):
                if taken:
                    break
                await asyncio.sleep(0.01)
            closed_before = list(follower.venue.closed_orders.items())
            await _followed_records(follower, commands[2_000:])
            assert list(follower.venue.closed_orders.items()) != closed_before, "followed on"
            writer_free.set()
            assert await writing
        finally:
            writer_free.set()
            await standby.close(last=False)
        path = snapshots.path_for(data_dir, taken[0].seq)
        written = snapshots.read(path)
        assert written is not None
        hashes = (restore_venue(written.venue).state_hash(), state_hash)
        return taken[0], expected, path.read_bytes()[snapshots.HEADER.size :], hashes

    image, expected, body, (restored, captured) = asyncio.run(
        asyncio.wait_for(scenario(), SCENARIO_TIMEOUT_S)
    )
    assert isinstance(image.venue.closed_orders, Later), "references, made by the writer"
    assert image.seq == 2_000 and follower.seq == 3_000
    assert image.gateway["cod_orders"] and image.venue.ledger is not None
    assert image.venue.ledger.undrained, "the transfers the copy keeps"
    assert body == expected
    assert restored == captured, "restores to the copy's state at the capture"


def test_a_file_not_named_as_a_snapshot_is_passed_over_by_a_core_and_a_gateway(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The re-review (session 35): a file journal's restart and pruning took only files named
    as snapshots (`snapshots.named_oldest_first`), a cluster's copies any `snapshot-*.bin`
    newest by name, so a stray `snapshot-old.bin` (sorting after the 20 digits) was read
    first: a link to nothing stopped a core's start (strict), an older copy was taken over the
    newest. It is passed over, logged, by a core and a gateway alike."""
    stamps = {1: 100, 7: 700}

    async def stamp_at(seq: int) -> int:
        return stamps[seq]

    _core_snapshot(tmp_path, 7, 700)
    (tmp_path / "snapshot-old.bin").symlink_to(tmp_path / "unmounted")
    assert _strict(tmp_path, stamp_at) == 7  # before: DanglingLink, the start refused
    assert "snapshot-old.bin: ignored, not a snapshot's name" in caplog.text
    (tmp_path / "snapshot-old.bin").unlink()
    shutil.rmtree(tmp_path)
    tmp_path.mkdir()
    _gateway_snapshot(tmp_path, 1, 100, 100)
    shutil.copy(_gateway_snapshot(tmp_path, 7, 700, 100), tmp_path / "snapshot-copy.bin")
    snapshots.path_for(tmp_path, 7).unlink()  # the stray, a copy of a snapshot since pruned
    assert _latest_usable(tmp_path, stamps, 7) == 1  # before: 7, of a file not its name's
