"""API keys issued at run time, shared by every gateway of a cluster through a JetStream stream.

Owns `SharedKeys`: `admin.issue_key` on any gateway publishes the key to the stream
`KEYS_STREAM` (R=3 like the journal when given three servers) and answers once the stream
has stored it on a quorum; every gateway follows the stream from its first record with an
ordered consumer and hands each key to the gateway (`on_key`), so a key issued through one
gateway logs on through any other, and through a gateway started later (it reads every key
before it serves). Records are only ever added (a key's revocation is a record of its own,
after the key's: `gateway.key_issuing.KeyRevoked`); the payload is opaque here (the gateway encodes
its `ApiKey`), so the core's packages import nothing of the gateway. The consumer is followed
by `StreamFollow` (`watch`): R=1, it dies with its NATS node, and a key issued meanwhile would
reach this gateway only when nats-py replaced it, 10 to 20 s later (logons with it refused
`BAD_SIGNATURE` until then). The stream replaces the
one-process venue's `api_keys.json` in the cluster: like that file it holds the secrets in
plain, on the NATS nodes' disks.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Final

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from core.stream_follow import StreamFollow

log = logging.getLogger("venue.cluster")

KEYS_STREAM: Final = "VENUE_KEYS"
KEYS_SUBJECT: Final = "venue.keys"
PUBLISH_TIMEOUT_S: Final = 2.0  # one attempt; a leader election takes ~3 s, so retry
PUBLISH_GIVE_UP_S: Final = 30.0  # as the journal: past this NATS is down, the gateway dies
CATCH_UP_TIMEOUT_S: Final = 60.0  # for the keys issued before this gateway started
PENDING_KEYS_MAX: Final = 65_536  # delivered, not yet learnt: a catch-up's keys, at most


class SharedKeys:
    """One gateway's view of the cluster's issued keys: publish one, learn every one."""

    def __init__(self, replicas: int, on_key: Callable[[bytes], None]) -> None:
        self.replicas = replicas
        self.on_key = on_key
        self.last_seq = 0
        self._js: Any = None
        self._caught_up = asyncio.Event()
        self._replay_until = 0
        self._follow: StreamFollow | None = None

    async def start(self, nc: Client) -> None:
        """Create the stream if absent, then learn every key it holds before returning."""
        self._js = nc.jetstream(timeout=5.0)
        self._replay_until = await self._ensure_stream()
        if self._replay_until == 0:
            self._caught_up.set()
        self._follow = StreamFollow(
            nc,
            KEYS_STREAM,
            KEYS_SUBJECT,
            self._on_message,
            lambda: self.last_seq,
            pending_msgs_limit=PENDING_KEYS_MAX,
        )
        await self._follow.start()
        await asyncio.wait_for(self._caught_up.wait(), CATCH_UP_TIMEOUT_S)

    async def watch(self) -> None:
        """Forever, once started: replace the consumer lost with its NATS node within ~1 s
        (`StreamFollow.watch`). Run it as a task; cancel it to stop."""
        assert self._follow is not None, "started first"
        await self._follow.watch()

    async def stop(self) -> None:
        """Stop following the keys (its consumer's heartbeat check ended with it)."""
        if self._follow is not None:
            await self._follow.stop()

    async def publish(self, key_id: str, payload: bytes) -> None:
        """Store one key on the stream (a quorum); retried with the same msg id, so a
        publish whose ack was lost is stored once. Raises TimeoutError past the give-up."""
        deadline = time.monotonic() + PUBLISH_GIVE_UP_S
        headers = {"Nats-Msg-Id": f"key:{key_id}"}
        while True:
            try:
                await self._js.publish(
                    KEYS_SUBJECT,
                    payload,
                    stream=KEYS_STREAM,
                    timeout=PUBLISH_TIMEOUT_S,
                    headers=headers,
                )
                return
            except (nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError) as error:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no stream stored key {key_id}: {error!r}") from error
                await asyncio.sleep(0.25)
            except nats.js.errors.NoStreamResponseError as error:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no stream stored key {key_id}: {error!r}") from error
                await asyncio.sleep(0.25)

    async def _ensure_stream(self) -> int:
        deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
        config = StreamConfig(
            name=KEYS_STREAM,
            subjects=[KEYS_SUBJECT],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=self.replicas,
            discard=DiscardPolicy.NEW,
            duplicate_window=120.0,
            deny_delete=True,  # keys are only ever added
            deny_purge=True,
        )
        while True:
            try:
                try:
                    info = await self._js.stream_info(KEYS_STREAM)
                except nats.js.errors.NotFoundError:
                    info = await self._js.add_stream(config)  # the same config: idempotent
                return int(info.state.last_seq)
            except (nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def _on_message(self, message: Msg) -> None:
        seq = message.metadata.sequence.stream
        if seq <= self.last_seq:
            return  # delivered again after the ordered consumer was reset
        self.last_seq = seq
        try:
            self.on_key(message.data)
        except Exception:  # one bad record must not stop the others being learnt
            log.exception("issued key at seq %d not learnt", seq)
        if seq >= self._replay_until:
            self._caught_up.set()
