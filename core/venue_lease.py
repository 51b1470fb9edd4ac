"""The one-process venue's hold on the core's lease: one `venue serve --nats` per stream.

Owns `VenueLease`. Before the venue opens its journal on the stream it takes the lease the
cluster's active core takes (core/lease.py: bucket `venue_lease`, key `core`, the core's TTL),
so a second venue on the stream, or a cluster's core, is refused at start (`LeaseHeld`, naming
the holder), and a cluster's core started beside it waits as a standby. A restart on the same
data directory (the same holder name) after a crash waits, up to `OWN_KEY_WAIT_FACTOR` TTLs,
for its dead run's key to expire. The lease is renewed on a thread of its own
(`core.lease_thread`), so a replay that holds the venue's loop longer than a term does not
end it; a term that ends unrenewed stops the process (exit 70), as it stops the cluster's
core. A clean stop releases it: the next venue takes it at once. The stream's expected last
sequence (`JournalConflict`) stays the second guard.
"""

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import nats.errors

from core.cluster_core import LEASE_POLL_S, LEASE_REQUEST_TIMEOUT_S, LEASE_TTL_S
from core.jetstream_journal import STREAM_DEFAULT, JournalUnavailable, connect, server_list
from core.journal import JournalError
from core.lease import LeaseError
from core.lease_thread import ThreadLease
from core.nats_bus import die

log = logging.getLogger("venue.cluster")

# A crashed run's key expires a TTL after its last renewal, and the server's expiry timer
# adds a little: a restart on its data directory waits up to this many TTLs, then is refused.
OWN_KEY_WAIT_FACTOR: Final = 1.5


class LeaseHeld(JournalError):
    """Someone else (another venue, a cluster's core) holds the stream's lease: this venue
    must not write to the stream. The stream's `JournalLocked`."""


def holder_name(data_dir: Path) -> str:
    """A venue's name in the lease: its machine and data directory. A restart on the same
    directory has the same name (and `venue.lock` keeps two live venues off one directory)."""
    return f"venue serve on {socket.gethostname()} (data dir {data_dir.resolve()})"


class VenueLease:
    """The lease held for one `venue serve --nats` process, from `take` to `release`."""

    def __init__(
        self,
        servers: str | Sequence[str],
        holder: str,
        *,
        ttl_s: float = LEASE_TTL_S,
        on_lost: Callable[[BaseException], None] = die,
    ) -> None:
        """`on_lost`: called (on the lease's thread) when the term ends unrenewed, or the
        renewing task fails; by default the process exits 70 at once."""
        self.servers = server_list(servers)
        self.holder = holder
        self.ttl_s = ttl_s
        self._lease = ThreadLease(
            self.servers,
            holder,
            connect=connect,
            ttl_s=ttl_s,
            poll_s=LEASE_POLL_S,
            request_timeout_s=LEASE_REQUEST_TIMEOUT_S,
            on_lost=on_lost,
            thread_name="venue-lease",
        )

    async def take(self) -> None:
        """Hold the lease and keep renewing it; `LeaseHeld` when someone else holds it,
        `JournalUnavailable` when NATS does not answer (nothing is held then)."""
        try:
            await self._take()
        except BaseException:
            await self.release()
            raise

    async def release(self) -> None:
        """Stop renewing and give the lease up (a delete marker: the next holder need not
        wait for the TTL); after the venue's last write. Unanswered, it expires by its TTL.
        A second call does nothing."""
        await self._lease.release()

    async def holder_now(self) -> str | None:
        """Who the bucket says holds the lease now (for status and tests)."""
        return await self._lease.holder_now()

    async def _take(self) -> None:
        lease = self._lease
        try:  # the bucket's replicas: the cluster's, as the journal's stream
            await lease.open()
        except (nats.errors.Error, TimeoutError) as unanswered:
            where = ",".join(self.servers)
            raise JournalUnavailable(f"NATS at {where}: no lease bucket: {unanswered!r}") from None
        except LeaseError as unusable:  # another TTL: made by something else than a venue
            raise JournalError(f"NATS at {','.join(self.servers)}: {unusable}") from None
        wait_s = self.ttl_s * OWN_KEY_WAIT_FACTOR
        deadline = time.monotonic() + wait_s
        waiting = False
        while not await lease.try_acquire():
            holder = await _holder_or_none(lease)
            if holder is None and time.monotonic() <= deadline:
                pass  # freed meanwhile, or NATS did not answer: try again
            elif holder != self.holder or time.monotonic() > deadline:
                raise LeaseHeld(self._refusal(holder, waiting, wait_s))
            elif not waiting:
                waiting = True
                log.warning(
                    "the lease is held under this venue's name (its last run did not stop"
                    " cleanly?): waiting up to %g s for it to expire",
                    wait_s,
                    extra={"holder": holder},
                )
            await asyncio.sleep(LEASE_POLL_S * 2)
        await lease.keep()
        log.info("holding the lease", extra={"holder": self.holder})

    def _refusal(self, holder: str | None, waited: bool, wait_s: float) -> str:
        where = f"the lease of stream {STREAM_DEFAULT} on NATS {','.join(self.servers)}"
        if holder is None:
            return f"{where} could not be taken within {wait_s:g} s (NATS did not answer)"
        if waited:
            return f"{where} is still held by {holder} after {wait_s:g} s"
        return (
            f"{where} is held by {holder}: another venue (or a cluster's core) acts on that"
            f" stream; stop it first (one that died frees it within {self.ttl_s:g} s)"
        )


async def _holder_or_none(lease: ThreadLease) -> str | None:
    """Who holds the lease; None when nobody does, or NATS did not answer."""
    try:
        return await lease.holder_now()
    except (nats.errors.Error, TimeoutError):
        return None
