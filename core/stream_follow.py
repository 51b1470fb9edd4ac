"""Following a JetStream stream with an ordered consumer that outlives the node it runs on.

Owns `StreamFollow`: a push subscription (nats-py's ordered consumer) that hands each message
to a handler, and a watch that subscribes again, from the record after the last one handled,
when the consumer has gone quiet while the stream holds records past it. Why: an ordered
consumer is R=1, in memory, on one node of the stream's peers (the meta leader picks which);
kill -9 of that node takes it away. nats-py notices only after two missed idle heartbeats
(5 s each) and then tries to make a new one once per 10 s, so one attempt refused during the
election stalled the follower 20-30 s: a gateway's replica answered nothing meanwhile. The
handler skips what it has handled already (by stream seq), so a message delivered twice
across the switch is harmless. Leaves what a record means to the handler.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import nats.errors
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

log = logging.getLogger("venue.cluster")

# A consumer that delivered nothing for this long is asked about (one stream_info): a live
# one under load delivers many times a second, and the question costs one request.
STALL_AFTER_S: Final = 1.0
STALL_CHECK_S: Final = 0.25  # how often the watch looks at the last delivery
REQUEST_TIMEOUT_S: Final = 1.0  # per stream_info, or the first consumer's creation (`start`)
# A replacement's creation: until the cluster marks the dead node offline (seconds after a
# kill -9), a try goes unanswered (seemingly the new R=1 consumer placed there; tries that
# were answered took 2-7 ms in the gateway's log). One that has not answered in this is tried
# again at the next look (logged `stream consumer not replaced yet: TimeoutError()`): a try
# every ~0.75 s, where one every ~1.25 s (1 s each) left a gateway's replica stalled past
# 7 s in one of 14 runs of tests/cluster/test_stream_failover.py, loaded (two tries of three
# refused in a row, seen on a quiet machine too).
RESUBSCRIBE_TIMEOUT_S: Final = 0.5


class StreamFollow:
    """`handler` gets every message of `subject` on `stream` after `position()` (the last
    stream seq the caller handled), in order, across the loss of the consumer's node."""

    def __init__(
        self,
        nc: Any,
        stream: str,
        subject: str,
        handler: Callable[[Msg], Awaitable[None]],
        position: Callable[[], int],
        *,
        pending_msgs_limit: int,
    ) -> None:
        self._nc = nc
        self._js = nc.jetstream(timeout=REQUEST_TIMEOUT_S)
        self._resubscribe_js = nc.jetstream(timeout=RESUBSCRIBE_TIMEOUT_S)
        self._stream = stream
        self._subject = subject
        self._handler = handler
        self._position = position
        self._pending_msgs_limit = pending_msgs_limit
        self._subscription: Any = None
        self._last_delivery = time.monotonic()
        self.resubscribed = 0  # how often the consumer was replaced (logs, tests)

    async def start(self, timeout_s: float = REQUEST_TIMEOUT_S * 5) -> None:
        """Subscribe from the record after `position()`; raises if the server does not
        answer within `timeout_s` (the caller retries, as before)."""
        await self._subscribe(self._nc.jetstream(timeout=timeout_s))

    async def watch(self) -> None:
        """Forever: replace a consumer that stalled. Run it as a task; cancel it to stop."""
        while True:
            await asyncio.sleep(STALL_CHECK_S)
            if time.monotonic() - self._last_delivery < STALL_AFTER_S:
                continue
            if self._subscription is not None and self._subscription.pending_msgs:
                continue  # delivered, not yet handled: the handler is behind, not the consumer
            try:
                await self._replace_if_behind()
            except (nats.errors.Error, TimeoutError) as failed:  # tried again at the next check
                log.info(
                    "stream consumer not replaced yet: %r", failed, extra={"stream": self._stream}
                )

    async def stop(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._subscription.unsubscribe()
            self._subscription = None

    async def _replace_if_behind(self) -> None:
        info = await self._js.stream_info(self._stream)
        self._last_delivery = time.monotonic()  # next question in STALL_AFTER_S, at most
        if info.state.last_seq <= self._position():
            return  # quiet because nothing new was written
        log.warning(
            "stream consumer stalled: subscribing again",
            extra={"stream": self._stream, "from_seq": self._position() + 1},
        )
        await self.stop()
        try:
            await self._subscribe(self._resubscribe_js)
        except BaseException:
            self._last_delivery = 0.0  # still behind: tried again at the next look
            raise
        self.resubscribed += 1
        log.info("stream consumer replaced", extra={"stream": self._stream})

    async def _subscribe(self, js: Any) -> None:
        after = self._position()
        config = ConsumerConfig()
        if after > 0:
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = after + 1
        else:
            config.deliver_policy = DeliverPolicy.ALL
        self._subscription = await js.subscribe(
            self._subject,
            stream=self._stream,
            cb=self._deliver,
            config=config,
            ordered_consumer=True,
            pending_msgs_limit=self._pending_msgs_limit,
            pending_bytes_limit=-1,
        )
        self._last_delivery = time.monotonic()

    async def _deliver(self, message: Msg) -> None:
        self._last_delivery = time.monotonic()
        await self._handler(message)
