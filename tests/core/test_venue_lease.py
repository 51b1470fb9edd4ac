"""The one-process venue's lease (`VenueLease`) on a real nats-server (one node per test, own
ports and temp dir): a second venue refused naming the holder, taken at once after a release,
a restart under the same name waiting for its crashed run's key, a lost term told."""

import asyncio
import logging
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from cluster.nats import NatsCluster
from core.journal import JournalError
from core.lease import BUCKET_DEFAULT, KEY_DEFAULT, Lease
from core.venue_lease import OWN_KEY_WAIT_FACTOR, LeaseHeld, VenueLease, holder_name

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
