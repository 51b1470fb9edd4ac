"""A cluster gateway's clean stop (SIGTERM: `VenueServer.stop`) with a request answered 504
`OUTCOME_UNKNOWN` (no core active) waits for no outcome of it: its client has its answer.

Before (session 23's finding) the stop waited out `DRAIN_TIMEOUT_S` (10 s) twice for it: for
the answers owed, then for the closes' cod cancels. One NATS node, SQLite ledger, one core
(paused once the gateway serves, so no outcome comes back), the gateway in this process, so
that `OUTCOME_WAIT_S` can be shortened for the test (a client of a real one waits 20 s).
"""

import asyncio
import contextlib
import errno
import signal
import socket
from pathlib import Path
from typing import Any

import nats
import nats.js.errors
import pytest

from client.sdk import VenueClient, VenueError
from cluster.nats import NatsCluster
from core import config
from core.cluster_core import ClusterCore
from core.nats_bus import DRAIN_TIMEOUT_S, GATEWAY_LEASE_BUCKET, NatsBus
from gateway.server import VenueServer
from tests.cluster.running import local_cluster
from tests.conftest import KEYS
from tests.sample_config import SAMPLE_CONFIG

OUTCOME_WAIT_S = 0.5  # for the test: answered 504 at once, not after 20 s
ANSWER_WITHIN_S = 10.0  # the 504: its bound, plus the 0.5 s check, on a busy machine
STOP_HANG_GUARD_S = 6 * DRAIN_TIMEOUT_S  # only against a hang: the drains' results decide


def test_a_clean_stop_waits_for_no_outcome_its_client_was_answered_unknown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every drain of the stop finds nothing owed (True), none waits out its bound (it would
    log "outcomes still owed"): main waited out both for the 504's outcome."""
    drained: list[bool] = []
    venue_config = config.load(SAMPLE_CONFIG)
    with local_cluster("stop", nats_nodes=1, postgres=False, cores=1, gateways=0) as cluster:
        core = cluster.active_core()
        assert core is not None and core.process is not None
        core_process = core.process

        async def scenario() -> None:
            def bus(listener: Any) -> NatsBus:
                made = NatsBus(venue_config, cluster.nats.url, listener, "gw-t")
                made.outcome_wait_s = OUTCOME_WAIT_S  # below `outcome_wait_ms`'s least, 6 s
                drain = made.drain

                async def noting_drain() -> bool:
                    drained.append(await drain())
                    return drained[-1]

                made.drain = noting_drain  # type: ignore[method-assign]
                return made

            server = VenueServer(venue_config, tmp_path / "gw", bus=bus)
            port = await server.start("127.0.0.1", 0)
            async with VenueClient(f"ws://127.0.0.1:{port}/ws/trade") as client:
                await client.logon(*KEYS["taker"])
                core_process.send_signal(signal.SIGSTOP)  # nothing comes back from here on
                try:
                    placing = client.place("AAPLx-USD", "buy", "0.01", "150.00")
                    try:
                        await asyncio.wait_for(placing, ANSWER_WITHIN_S)
                    except VenueError as unknown:
                        assert (unknown.status, unknown.name) == (504, "OUTCOME_UNKNOWN")
                    else:
                        raise AssertionError("placed, with the core paused")
                    drained.clear()  # (the start's)
                    await asyncio.wait_for(server.stop(), STOP_HANG_GUARD_S)
                finally:
                    core_process.send_signal(signal.SIGCONT)

        asyncio.run(scenario())
    # main: each drain waited DRAIN_TIMEOUT_S for the place's outcome, which never comes
    assert drained and all(drained), drained
    assert "outcomes still owed" not in caplog.messages


def test_a_gateway_whose_listen_fails_raises_its_own_error_and_lets_its_lease_go(
    tmp_path: Path,
) -> None:
    """Its replica caught up, the gateway cannot listen (the port taken since `venue serve`
    checked it; a full data directory fails `push_formats.json` the same way): the start
    raises the listen's OSError, which `venue serve` says in one line, and the gateway's
    lease is gone at once. Before (session 32's trial): AttributeError, `Replica` has no
    `forget_unused_epoch`, a traceback and exit 1, the lease left to its TTL."""
    venue_config = config.load(SAMPLE_CONFIG)

    async def scenario() -> list[str]:
        with NatsCluster(tmp_path / "nats", size=1) as node:
            core = ClusterCore(venue_config, tmp_path / "core", node.url, "core-a")
            assert await core.wait_for_lease(asyncio.Event())
            assert await core.activate() is not None
            try:
                with socket.socket() as taken:
                    taken.bind(("127.0.0.1", 0))
                    taken.listen()
                    port = taken.getsockname()[1]
                    server = VenueServer(
                        venue_config,
                        tmp_path / "gw",
                        bus=lambda listener: NatsBus(venue_config, node.url, listener, "gw-t"),
                    )
                    with pytest.raises(OSError) as refused:
                        await server.start("127.0.0.1", port)
                    assert refused.value.errno == errno.EADDRINUSE, refused.value
                nc = await nats.connect(node.url)
                try:
                    bucket = await nc.jetstream(timeout=2.0).key_value(GATEWAY_LEASE_BUCKET)
                    with contextlib.suppress(nats.js.errors.NoKeysError):
                        return list(await bucket.keys())
                    return []
                finally:
                    await nc.close()
            finally:
                await core.stop()

    assert asyncio.run(scenario()) == []
