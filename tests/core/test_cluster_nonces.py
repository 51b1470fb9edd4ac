"""The cluster's nonces (core/cluster_nonces.py) on a real nats-server: the first claim of a
key's nonce wins, every later one (any gateway's) is a replay, and NATS gone is
`NonceUnchecked` (the gateway's 503 `NONCE_UNCHECKED`), never a success."""

import asyncio
import contextlib
from collections.abc import Iterator

import nats
import nats.js.errors
import pytest

from cluster.nats import NatsCluster
from core.cluster_nonces import (
    NONCE_TTL_S,
    NONCES_BUCKET,
    NonceUnchecked,
    SharedNonces,
    nonce_key,
)
from engine.reasons import ErrorCode
from gateway import wire
from gateway.auth import (
    RECV_WINDOW_MS_MAX,
    Authenticator,
    AuthError,
    KeyStore,
    claim_cluster_wide,
)

TIMEOUT_S = 30  # the whole scenario; each claim is bounded by CLAIM_TIMEOUT_S


@pytest.fixture
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path_factory.mktemp("nonces"), size=1) as started:
        yield started


def test_a_nonce_is_claimed_once_across_gateways(node: NatsCluster) -> None:
    async def scenario() -> list[bool]:
        first, second = await nats.connect(node.urls), await nats.connect(node.urls)
        try:
            a, b = SharedNonces(replicas=1), SharedNonces(replicas=1)
            await a.start(first)
            await b.start(second)  # the bucket exists: opened, not created again
            info = await first.jetstream().stream_info(f"KV_{NONCES_BUCKET}")
            assert info.config.max_age == NONCE_TTL_S
            return [
                await a.claim("demo-taker", "n-1"),
                await b.claim("demo-taker", "n-1"),  # the same message through gateway B
                await a.claim("demo-taker", "n-1"),
                await b.claim("demo-alpha", "n-1"),  # another key's nonce is its own
                await b.claim("demo-taker", "n-2"),
                await a.claim("demo-taker", "any printable: * > . /"),  # not a KV key as is
            ]
        finally:
            await first.close()
            await second.close()

    assert asyncio.run(asyncio.wait_for(scenario(), TIMEOUT_S)) == [
        True,
        False,
        False,
        True,
        True,
        True,
    ]


def test_the_nonces_outlive_every_message_that_can_carry_them() -> None:
    # ts up to a window ahead of the clock, then a window: two of the longest windows
    assert NONCE_TTL_S >= 2 * RECV_WINDOW_MS_MAX / 1_000


def test_the_keys_are_valid_kv_keys_and_tell_the_key_from_the_nonce() -> None:
    assert nonce_key("ab", "c") != nonce_key("a", "bc")
    assert len(nonce_key("k" * 64, "~" * 64)) == 64
    assert nonce_key("k", "n").isalnum()


def test_nats_gone_is_unchecked_not_a_success(node: NatsCluster) -> None:
    async def scenario() -> None:
        client = await nats.connect(
            node.urls, allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.2
        )
        try:
            nonces = SharedNonces(replicas=1)
            await nonces.start(client)
            assert await nonces.claim("demo-taker", "before")
            await asyncio.to_thread(node.nodes[0].kill)
            with pytest.raises(NonceUnchecked):
                await nonces.claim("demo-taker", "during")
            auth = Authenticator(KeyStore(()))
            with pytest.raises(AuthError) as refused:  # as the gateway answers it: retryable
                await claim_cluster_wide(nonces, auth, "demo-taker", "during, again")
            assert refused.value.code is ErrorCode.NONCE_UNCHECKED
            assert wire.rejection_status(refused.value.code) == 503
        finally:
            with contextlib.suppress(ConnectionError):  # its server is gone
                await client.close()

    asyncio.run(asyncio.wait_for(scenario(), TIMEOUT_S))


def test_a_message_sent_again_after_an_unanswered_claim_takes_its_nonce_once(
    node: NatsCluster,
) -> None:
    """Found in session 23: a claim unanswered (503 `NONCE_UNCHECKED`) burnt the nonce: the
    same signed message sent again was refused, though nothing had been done for it. Sent
    again now, it is taken, once, whether or not the unanswered claim landed (nats-py keeps
    a write made while disconnected and sends it on reconnecting): a key holding that
    claim's token was made by a claim whose message was refused, so nobody used the nonce.
    Any other gateway, or this one a second time, finds it used."""

    async def scenario() -> list[bool]:
        first = await nats.connect(node.urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        try:
            a = SharedNonces(replicas=1)
            await a.start(first)
            await asyncio.to_thread(node.nodes[0].kill)
            with pytest.raises(NonceUnchecked):  # its create is kept by nats-py meanwhile
                await a.claim("demo-taker", "lost")
            await asyncio.to_thread(node.restart, 0)
            while not first.is_connected:  # bounded by TIMEOUT_S: reconnects every 0.2 s
                await asyncio.sleep(0.05)
            second = await nats.connect(node.urls)
            b = SharedNonces(replicas=1)
            await b.start(second)
            kv = await second.jetstream().key_value(NONCES_BUCKET)
            key = nonce_key("demo-taker", "lost")
            while True:  # bounded by TIMEOUT_S: sent on reconnecting, before any later write
                with contextlib.suppress(nats.js.errors.KeyNotFoundError):
                    await kv.get(key)  # the unanswered claim landed
                    break
                await asyncio.sleep(0.05)
            claims = [
                await a.claim("demo-taker", "lost"),  # main: False (a replay of itself)
                await b.claim("demo-taker", "lost"),
                await a.claim("demo-taker", "lost"),
            ]
            await second.close()
            return claims
        finally:
            await first.close()

    assert asyncio.run(asyncio.wait_for(scenario(), TIMEOUT_S)) == [True, False, False]
