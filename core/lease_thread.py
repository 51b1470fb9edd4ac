"""A lease kept on a thread of its own, so it is renewed while the holder's event loop is busy.

Owns `ThreadLease`: one contender for a `Lease` (core/lease.py), contended for, renewed and
given up on a private event loop in a daemon thread (`LoopThread`) over a NATS connection of
its own, and `keep_lease`, the renewing loop. A holder's own loop may be held longer than a
term by work that cannot yield: a takeover's recovery (a snapshot restored, a busy minute of
journal replayed) runs on it. Renewed there, the lease would lapse meanwhile: a standby would
take over from a core about to act, and the core would stop itself once active. The cluster's
core (`core.cluster_core`) and `venue serve --nats` (`core.venue_lease`) hold theirs so.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import nats.errors
from nats.aio.client import Client

from core.jetstream_journal import LoopThread, close_connection
from core.lease import Lease, attempt

log = logging.getLogger("venue.cluster")
T = TypeVar("T")

Connect = Callable[[list[str], str], Awaitable[Client]]


async def keep_lease(lease: Lease, poll_s: float, lost: Callable[[], None]) -> None:
    """Renew `lease` a tenth of its TTL in while it is held; once a term ends unrenewed, call
    `lost` and return: its holder must stop acting."""
    while True:
        await asyncio.sleep(poll_s)
        if lease.state.renew_due(time.monotonic()):
            await attempt(lease.renew)  # not confirmed: the term runs on to its end
        if not lease.held():
            lost()
            return


class ThreadLease:
    """`holder`'s contention for the lease in `bucket` at `servers`, from `open` to `release`.

    `on_lost` is called on the lease's thread when a kept term ends unrenewed, or the keeper
    fails: the holder must stop acting at once (the cluster's `die`)."""

    def __init__(
        self,
        servers: Sequence[str],
        holder: str,
        *,
        connect: Connect,
        ttl_s: float,
        poll_s: float,
        request_timeout_s: float,
        on_lost: Callable[[BaseException], None],
        replicas: int | None = None,
        thread_name: str = "lease",
    ) -> None:
        self.servers = list(servers)
        self.holder = holder
        self.ttl_s = ttl_s
        self._connect = connect
        self._poll_s = poll_s
        self._request_timeout_s = request_timeout_s
        self._on_lost = on_lost
        self._replicas = replicas
        self._thread_name = thread_name
        self._thread: LoopThread | None = None
        self._released = False
        self._nc: Client | None = None
        self._lease: Lease | None = None
        self._keeper: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Connect and open the bucket (creating it with `ttl_s`); NATS errors, a `LeaseError`
        for a bucket with another TTL, or the connect's own error, are raised."""
        await self._on_thread(self._open())

    async def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; False too when NATS did not answer."""
        return await self._to_the_end(attempt(self._opened().try_acquire))

    async def take_over(self, predecessor: str) -> bool:
        """Take the lease from `predecessor`, known to act no more (`Lease.take_over`); False
        too when NATS did not answer."""
        lease = self._opened()
        return await self._to_the_end(attempt(lambda: lease.take_over(predecessor)))

    async def holder_now(self) -> str | None:
        """Who the bucket says holds the lease now; NATS errors are raised."""
        return await self._on_thread(self._opened().holder_now())

    def held(self) -> bool:
        """Whether this holder may act now (any thread: a pure read of its term and clock)."""
        return self._lease is not None and self._lease.held()

    async def keep(self) -> None:
        """Keep renewing the lease just acquired, on the lease's thread, until `release`."""
        await self._on_thread(self._start_keeper())

    async def release(self) -> None:
        """Stop renewing and give the lease up (a delete marker: the next holder need not wait
        for the TTL); unanswered, it expires by its TTL. A second call does nothing."""
        self._released = True
        thread, self._thread = self._thread, None
        if thread is None:
            return
        try:
            released = asyncio.run_coroutine_threadsafe(self._release(), thread.loop)
            await asyncio.wrap_future(released)
        finally:
            thread.stop()

    async def _on_thread(self, work: Coroutine[Any, Any, T]) -> T:
        return await self._submit(work)

    async def _to_the_end(self, work: Coroutine[Any, Any, T]) -> T:
        """`work` (a write that may take the lease) run to its end even when the caller is
        canceled (a stop racing the start's take): cut off between the write and its answer,
        the lease would be taken without this holder knowing it won, so `release` deleted
        nothing and the lease stayed held a whole term (review of session 29). The wait is
        the attempt's few requests (a read or two, then the write), each bounded by the
        request timeout; then the cancel goes on. Every cancel meanwhile is held back the
        same way: a second one must not cut the write off either."""
        future = self._submit(work)
        canceled = False
        while True:
            try:
                result = await asyncio.shield(future)
            except asyncio.CancelledError:
                if future.done():
                    raise  # canceled on its thread (the thread stopped): nothing to wait for
                canceled = True
                continue
            except Exception:
                if canceled:
                    raise asyncio.CancelledError from None
                raise
            if canceled:
                raise asyncio.CancelledError
            return result

    def _submit(self, work: Coroutine[Any, Any, T]) -> "asyncio.Future[T]":
        if self._released:
            work.close()
            raise RuntimeError(f"{self.holder}'s lease was released")
        if self._thread is None:
            self._thread = LoopThread(self._thread_name)
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self._thread.loop))

    def _opened(self) -> Lease:
        assert self._lease is not None, "open() first"
        return self._lease

    async def _open(self) -> None:
        self._nc = nc = await self._connect(self.servers, self._thread_name)
        js = nc.jetstream(timeout=self._request_timeout_s)
        self._lease = await Lease.open(js, self.holder, ttl_s=self.ttl_s, replicas=self._replicas)

    async def _start_keeper(self) -> None:
        lease = self._opened()
        lost = RuntimeError(f"{self.holder} lost its lease: stopping")
        self._keeper = asyncio.create_task(
            keep_lease(lease, self._poll_s, lambda: self._on_lost(lost))
        )
        self._keeper.add_done_callback(self._keeper_ended)

    def _keeper_ended(self, task: "asyncio.Task[None]") -> None:
        if not task.cancelled() and task.exception() is not None:
            self._on_lost(task.exception() or RuntimeError("the lease's keeper failed"))

    async def _release(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        if self._lease is not None:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await self._lease.release()
        if self._nc is not None:
            await close_connection(self._nc)
