"""The one-process venue's lease (`VenueLease`) on a real nats-server (one node per test, own
ports and temp dir): a second venue refused naming the holder, taken at once after a release,
a restart under the same name waiting for its crashed run's key (unless it can prove that run
gone: taken over at once), a lost term told."""

import asyncio
import logging
import os
import socket
import subprocess
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from cluster.nats import NatsCluster, free_ports, nats_server_binary
from core.jetstream_journal import JournalUnavailable
from core.journal import DanglingLink, JournalError
from core.lease import BUCKET_DEFAULT, KEY_DEFAULT, Lease, _Unconfirmed
from core.venue_lease import (
    LEASE_LOCK_FILE,
    LEASE_RUNS_FILE,
    OWN_KEY_WAIT_FACTOR,
    DataDirRuns,
    LeaseHeld,
    VenueLease,
    _identity,
    holder_name,
)

TTL_S = 2.0  # short, so an expiry takes ~2 s; renewals every ~0.7 s, the term ends at 1.6 s
SCENARIO_TIMEOUT_S = 30


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path / "nats", size=1) as started:
        yield started


class Losses:
    """What `on_lost` was told (on the lease's thread)."""

    def __init__(self) -> None:
        self.failures: list[BaseException] = []
        self.told = threading.Event()

    def __call__(self, failure: BaseException) -> None:
        self.failures.append(failure)
        self.told.set()


def run(scenario: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(scenario, SCENARIO_TIMEOUT_S))


def test_a_holder_name_is_the_machine_and_the_data_directory(tmp_path: Path) -> None:
    name = holder_name(tmp_path / "data")
    assert name.startswith("venue serve on ") and name.endswith(f"(data dir {tmp_path}/data)")
    assert holder_name(tmp_path / "data") == name  # a restart there has the same name


def test_a_second_venue_is_refused_naming_the_holder_and_takes_it_once_released(
    node: NatsCluster,
) -> None:
    losses = Losses()

    async def scenario() -> None:
        first = VenueLease(node.url, "venue a", ttl_s=TTL_S, on_lost=losses)
        await first.take()
        second = VenueLease(node.url, "venue b", ttl_s=TTL_S, on_lost=losses)
        with pytest.raises(LeaseHeld, match="is held by venue a: another venue"):
            await second.take()
        assert await first.holder_now() == "venue a"
        await first.release()
        # Not refused: the release deleted the key (held, it would refuse "venue b" at once).
        third = VenueLease(node.url, "venue b", ttl_s=TTL_S, on_lost=losses)
        await third.take()
        assert await third.holder_now() == "venue b"
        await third.release()
        await third.release()  # a second release does nothing

    run(scenario())
    assert losses.failures == []


def test_a_restart_under_the_same_name_waits_for_its_crashed_runs_key(
    node: NatsCluster, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        client = await nats.connect(node.url)  # a run that took the lease, then died
        crashed = await Lease.open(client.jetstream(), "venue a", ttl_s=TTL_S)
        assert await crashed.try_acquire()
        await client.close()  # no release: its key expires by the TTL
        other = VenueLease(node.url, "venue b", ttl_s=TTL_S, on_lost=Losses())
        with pytest.raises(LeaseHeld, match="held by venue a"):  # not its name: refused
            await other.take()
        restarted = VenueLease(node.url, "venue a", ttl_s=TTL_S, on_lost=Losses())
        await restarted.take()  # its own name: it waits for the key to expire, then holds it
        assert await restarted.holder_now() == "venue a"
        await restarted.release()

    with caplog.at_level(logging.WARNING, logger="venue.cluster"):
        run(scenario())
    wait_s = TTL_S * OWN_KEY_WAIT_FACTOR
    assert f"waiting up to {wait_s:g} s for it to expire" in caplog.text


async def crashed_run(url: str, data_dir: Path, identity: str | None) -> str:
    """A run of `data_dir` that took the lease and died (its key left to expire), recorded in
    the directory's runs under `identity` (None: that of the directory's lease lock, as the
    run would have recorded it); its holder name."""
    name = f"{holder_name(data_dir)} run 0123456789abcdef"
    client = await nats.connect(url)
    crashed = await Lease.open(client.jetstream(), name, ttl_s=TTL_S)
    assert await crashed.try_acquire()
    await client.close()  # no release: its key expires by the TTL
    data_dir.mkdir(parents=True, exist_ok=True)
    if identity is None:
        with (data_dir / LEASE_LOCK_FILE).open("ab") as lock:
            identity = _identity(lock)
    (data_dir / LEASE_RUNS_FILE).write_text(f"{identity} {name}\n")
    return name


def venue_lease(url: str, data_dir: Path, losses: Losses) -> VenueLease:
    """`venue serve --nats`'s lease on `data_dir`, as `cli.serve` makes it."""
    return VenueLease(url, holder_name(data_dir), ttl_s=TTL_S, on_lost=losses, data_dir=data_dir)


# What `VenueLease.take` logs when it waits for a key to expire, and when it takes the key of
# a run it knows stopped: how a test tells a take at once from one that waited, unclocked.
WAITED = "waiting up to"
TOOK_OVER = "took the lease over from a run of this data directory that is gone"
OWN_WRITE_HELD = "holding the lease from our write whose answer never came"


async def logged_take(lease: VenueLease, caplog: pytest.LogCaptureFixture) -> str:
    """What `lease.take()` logged on venue.cluster, at INFO and above."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="venue.cluster"):
        await lease.take()
    return caplog.text


def test_a_restart_takes_over_at_once_the_key_of_its_directorys_run_that_is_gone(
    node: NatsCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The run recorded on the directory's lease lock, which the restart now holds: it
    stopped, so its key is taken over without waiting for the TTL."""
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        await crashed_run(node.url, data_dir, None)
        restarted = venue_lease(node.url, data_dir, Losses())
        logged = await logged_take(restarted, caplog)
        assert TOOK_OVER in logged and WAITED not in logged, logged  # before: the whole TTL
        assert await restarted.holder_now() == restarted.holder
        await restarted.release()

    run(scenario())


def test_a_run_recorded_on_another_lock_file_or_kernel_is_waited_for(
    node: NatsCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A record it cannot prove stopped (a directory copied from another machine, another
    boot): the key is left to expire, as before."""
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        await crashed_run(node.url, data_dir, "another-boot:1:2")
        restarted = venue_lease(node.url, data_dir, Losses())
        logged = await logged_take(restarted, caplog)
        assert WAITED in logged and TOOK_OVER not in logged, logged  # waited for the expiry
        assert await restarted.holder_now() == restarted.holder
        await restarted.release()

    run(scenario())


def test_a_start_whose_acquire_landed_unanswered_holds_it_without_a_warning(
    node: NatsCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    """Its first write's answer never came (a loaded machine), the write stored: the key is
    this run's own, held from at the next try. The log does not take it for another run's key
    left by an unclean stop, to wait for."""
    data_dir = tmp_path / "data"
    write = Lease._write
    unanswered: list[int] = []

    async def first_unanswered(lease: Lease, *args: Any, **kwargs: Any) -> int:
        revision = await write(lease, *args, **kwargs)
        if not unanswered:
            unanswered.append(revision)
            raise _Unconfirmed
        return revision

    async def scenario() -> None:
        monkeypatch.setattr(Lease, "_write", first_unanswered)
        started = venue_lease(node.url, data_dir, Losses())
        logged = await logged_take(started, caplog)
        assert unanswered, "its first write was stored, unanswered"
        assert "did not stop cleanly" not in logged and WAITED not in logged, logged
        assert OWN_WRITE_HELD in logged, logged
        assert await started.holder_now() == started.holder
        await started.release()

    run(scenario())


def test_a_live_run_of_the_directory_is_never_taken_over(node: NatsCluster, tmp_path: Path) -> None:
    """A run that still renews holds the directory's lease lock: a second start on the
    directory (past the data directory's own lock, say started in the instant before the
    first took it) is refused, though the first's name is recorded there."""
    data_dir = tmp_path / "data"
    losses = Losses()

    async def scenario() -> None:
        data_dir.mkdir()
        first = venue_lease(node.url, data_dir, losses)
        await first.take()
        assert first.holder in (data_dir / LEASE_RUNS_FILE).read_text()
        second = venue_lease(node.url, data_dir, losses)
        with pytest.raises(LeaseHeld, match="held by another process: a venue running"):
            await second.take()  # after waiting for it, as for a run that is stopping
        await asyncio.sleep(TTL_S)  # a renewal or two later: still the first's
        assert await first.holder_now() == first.holder
        await first.release()

    run(scenario())
    assert losses.failures == []


def test_a_venue_whose_renewal_is_refused_is_told_to_stop(node: NatsCluster) -> None:
    losses = Losses()

    async def scenario() -> None:
        lease = VenueLease(node.url, "venue a", ttl_s=TTL_S, on_lost=losses)
        await lease.take()
        client = await nats.connect(node.url)  # a rogue writer: the key moves on
        kv = await client.jetstream().key_value(BUCKET_DEFAULT)
        await kv.put(KEY_DEFAULT, b"rogue")
        assert await asyncio.to_thread(losses.told.wait, SCENARIO_TIMEOUT_S / 2)
        await lease.release()  # refused (not its key any more): the rogue's write stays
        assert (await kv.get(KEY_DEFAULT)).value == b"rogue"
        await client.close()

    run(scenario())
    assert [str(failure) for failure in losses.failures] == ["venue a lost its lease: stopping"]


def test_a_lease_bucket_with_another_ttl_is_refused_in_one_line(node: NatsCluster) -> None:
    async def scenario() -> None:
        client = await nats.connect(node.url)
        await Lease.open(client.jetstream(), "someone", ttl_s=TTL_S * 2)
        await client.close()
        lease = VenueLease(node.url, "venue a", ttl_s=TTL_S, on_lost=Losses())
        with pytest.raises(
            JournalError, match=r"expires keys after 4\.0 s, not the lease's 2\.0 s"
        ):
            await lease.take()

    run(scenario())


@pytest.fixture
def no_jetstream_port() -> Iterator[int]:
    """A nats-server without JetStream (no `-js`), on its own port: a lease bucket cannot be
    made there. Without an `authorization` block it takes any user and password."""
    (port,) = free_ports(1)
    server = subprocess.Popen(
        [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + SCENARIO_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_no_lease_bucket_is_said_with_the_password_as_stars(no_jetstream_port: int) -> None:
    """The finding (session 32): this one error joined the URLs whole, password and all."""
    url = f"nats://venue:hunter2-secret@127.0.0.1:{no_jetstream_port}"
    lease = VenueLease(url, "venue a", ttl_s=TTL_S, on_lost=Losses())
    with pytest.raises(JournalUnavailable) as refused:
        run(lease.take())
    assert "no lease bucket" in str(refused.value)
    assert "hunter2" not in str(refused.value)
    assert f"nats://venue:***@127.0.0.1:{no_jetstream_port}" in str(refused.value)


def test_the_runs_file_is_its_owners_alone(tmp_path: Path) -> None:
    """The finding (session 32): the runs file was written 0644 under umask 022, and a data
    directory's start warns of a file open to others: every `venue serve --nats` restart."""
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    previous = os.umask(0o022)
    runs = DataDirRuns(data_dir)
    try:
        asyncio.run(runs.claim("venue one", time.monotonic() + TTL_S))
        assert oct((data_dir / LEASE_RUNS_FILE).stat().st_mode & 0o777) == "0o600"
    finally:
        runs.close()
        os.umask(previous)


@pytest.mark.parametrize("name", [LEASE_LOCK_FILE, LEASE_RUNS_FILE])
def test_a_lease_file_linked_to_nothing_is_refused(tmp_path: Path, name: str) -> None:
    """As the journal's rule: the lock made anew at the link's target (or the runs read as
    none) would prove no earlier run dead, and a restart would wait out its key for nothing.
    Refused, naming the link, with nothing made at its target; a link to a file is followed."""
    elsewhere = tmp_path / "other-disk"
    elsewhere.mkdir()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    gone = elsewhere / name
    (data_dir / name).symlink_to(gone)
    runs = DataDirRuns(data_dir)
    with pytest.raises(DanglingLink, match=f"^{data_dir / name} is a symbolic link to {gone}"):
        asyncio.run(runs.claim("venue one", time.monotonic() + TTL_S))
    assert not runs.claimed and list(elsewhere.iterdir()) == []

    gone.touch()
    asyncio.run(runs.claim("venue one", time.monotonic() + TTL_S))
    try:
        assert (data_dir / name).is_symlink()
        assert runs.claimed
    finally:
        runs.close()


def test_a_start_given_back_after_the_lease_leaves_no_directory_it_made(
    node: NatsCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A new data directory is made once the lease is held (its `lease.lock`, `lease.runs`):
    a start refused after that (the stream's journal, the core) gives the lease back and the
    directory too; a restart then takes the lease at once (the key was deleted)."""
    data_dir = tmp_path / "new" / "data"

    async def scenario() -> None:
        refused = venue_lease(node.url, data_dir, Losses())
        await refused.take()
        assert (data_dir / LEASE_LOCK_FILE).exists() and (data_dir / LEASE_RUNS_FILE).exists()
        await refused.give_back()
        assert not (tmp_path / "new").exists()
        restarted = venue_lease(node.url, data_dir, Losses())
        logged = await logged_take(restarted, caplog)
        assert WAITED not in logged and TOOK_OVER not in logged, logged  # free: taken at once
        await restarted.release()
        kept = sorted(path.name for path in data_dir.iterdir())
        assert kept == [LEASE_LOCK_FILE, LEASE_RUNS_FILE]  # a run that served: kept

    run(scenario())
