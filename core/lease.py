"""The active core's lease: one key in a JetStream KV bucket, so two cores never both act.

Owns `LeaseState` (pure: when a holder may act and when to renew, from the times its writes
were sent) and `Lease` (the KV I/O, async, nats-py). Acquire = write the key when it is absent,
expired or deleted; renew = write it again expecting the revision last written (compare-and-
set), which fails once anyone else has written (a refusal by our own renewal, stored but never
answered, is found by its writer token and renewed from: `_own_later_write`); the bucket's TTL
(`max_age`) expires a key not renewed in time, so a standby can then take it. Release = a
delete marker, so a standby need not wait for the TTL. Take-over = write over a named holder's
last write by compare-and-set, without waiting for the TTL: the timing argument below does not
cover it, so it is safe only where the caller has proved that holder acts no more
(`core.venue_lease`: a flock). Holders' names need not be unique (two cores started without
--name are both "core"): a write is told ours by the `Lease`'s own random token, never by name.
Why it is safe: the server expires the key no sooner than TTL after it stored the last write,
which is after the holder sent it; the holder stops acting at `sent + TTL * SAFE_FRACTION`,
before that, so its term ends before anyone else's can start. Two clocks are compared: the
server times the TTL on its wall clock, the holder its term on its monotonic clock. Assumed:
over one TTL they advance at rates within 20% of each other (NTP slews far less), and the
server's wall clock is not stepped forward by more than the 20% margin (1 s of a 5 s TTL)
while a term runs; a step that large would expire the key early and let a standby act with
the holder. The bucket has the cluster's replicas by default (3 on a cluster, 1 on one node).
A bucket may instead hold one key per holder (`shared`: the gateways' leases, each key written
by its own holder only); `key_held` tells anyone else whether such a key is held now.
"""

import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, RawStreamMsg, StorageType
from nats.js.kv import KeyValue

from core.jetstream_journal import cluster_replicas

log = logging.getLogger("venue.cluster")

BUCKET_DEFAULT: Final = "venue_lease"
KEY_DEFAULT: Final = "core"
TTL_DEFAULT_S: Final = 5.0  # a dead core is replaced within ~5 s; renewals every 0.5 s
SAFE_FRACTION: Final = 0.8  # the holder stops at 80% of the TTL: margin for drift and delays
# Renew a tenth in (every second at the cores' and gateways' 10 s): the term then rides out
# ~7 s without a confirmed write. A NATS leader election after kill -9 of the bucket's leader
# took 5-6 s (nats-server 2.9.10), past the ~4.7 s a renewal a third in left in the worst case.
RENEW_FRACTION: Final = 0.1
EXPECTED_LAST_SEQUENCE: Final = "Nats-Expected-Last-Sequence"
EXPECTED_LAST_SUBJECT_SEQUENCE: Final = "Nats-Expected-Last-Subject-Sequence"
KV_OPERATION: Final = "KV-Operation"  # "DEL": a delete marker, as nats-py's kv.delete writes
KV_REMOVED: Final = frozenset({"DEL", "PURGE"})  # the operations that leave a key unheld
WRITER: Final = "Venue-Lease-Writer"  # a header: the `Lease` that wrote (its token), not a delete
ERR_WRONG_LAST_SEQUENCE: Final = 10071
ERR_NO_MESSAGE: Final = 10037  # a key with no message: never written, or expired (not: no bucket)


class LeaseError(Exception):
    """The bucket cannot be used for the lease (a different TTL, or not a KV bucket)."""


@dataclass(frozen=True)
class LeaseTerm:
    """A held lease: the KV revision that won it and when the winning write was sent."""

    revision: int
    sent_at: float  # monotonic seconds
    ttl_s: float

    @property
    def ends_at(self) -> float:
        return self.sent_at + self.ttl_s * SAFE_FRACTION

    @property
    def renew_at(self) -> float:
        return self.sent_at + self.ttl_s * RENEW_FRACTION


class LeaseState:
    """What one contender knows: its current term, if any. Pure: times are arguments."""

    def __init__(self, ttl_s: float) -> None:
        if ttl_s <= 0:
            raise ValueError(f"a lease TTL of {ttl_s} s")
        self.ttl_s = ttl_s
        self.term: LeaseTerm | None = None

    def won(self, revision: int, sent_at: float) -> None:
        """A create or a compare-and-set sent at `sent_at` stored `revision`."""
        if self.term is not None and revision <= self.term.revision:
            raise AssertionError(f"revision {revision} after {self.term.revision}")
        self.term = LeaseTerm(revision, sent_at, self.ttl_s)

    def lost(self) -> None:
        """A compare-and-set was refused: someone else wrote, or the key expired."""
        self.term = None

    def held(self, now: float) -> bool:
        """Whether this contender may act at `now`."""
        return self.term is not None and now < self.term.ends_at

    def renew_due(self, now: float) -> bool:
        return self.term is not None and now >= self.term.renew_at

    @property
    def revision(self) -> int | None:
        return None if self.term is None else self.term.revision


class Lease:
    """One contender for the lease under `holder` (a name for logs and for who holds it).

    Every write is a compare-and-set on the bucket's whole stream (`Nats-Expected-Last-
    Sequence`), not on the key (`kv.create`/`kv.update` use `...-Last-Subject-Sequence`, which
    a clustered nats-server before 2.9.21 does not serialize: concurrent updates with one
    revision can all succeed, nats-server issue 4320). So a lease's bucket holds its one key
    only: the stream's last seq is the key's revision (a key expired by the TTL leaves that seq
    in place, so only a contender that saw the expiry can write next).

    `shared`: the bucket holds one key per holder, each written by that holder alone (a
    gateway's lease under its unique id), so the compare-and-set is on the key's own last seq
    (`...-Last-Subject-Sequence`): with one writer per key, the unserialized check of issue
    4320 has no concurrent write to let through, and the other keys' writes do not refuse it.

    Each `Lease` has its own random token (`writer`), sent in the `Venue-Lease-Writer` header
    of each of its writes but deletes: how it tells its own writes from anyone's of its name.
    """

    def __init__(
        self,
        js: JetStreamContext,
        kv: KeyValue,
        bucket: str,
        holder: str,
        *,
        ttl_s: float = TTL_DEFAULT_S,
        key: str = KEY_DEFAULT,
        clock: Callable[[], float] = time.monotonic,
        shared: bool = False,
    ) -> None:
        self.js = js
        self.kv = kv
        self.holder = holder
        self.key = key
        self.state = LeaseState(ttl_s)
        self.shared = shared
        self.writer = secrets.token_hex(8)  # this contender's, unlike its name
        self._clock = clock
        self._stream = f"KV_{bucket}"  # the stream behind a KV bucket, by JetStream's naming
        self._subject = f"$KV.{bucket}.{key}"
        self._expected = EXPECTED_LAST_SUBJECT_SEQUENCE if shared else EXPECTED_LAST_SEQUENCE
        # The first of our acquires (or take-overs) left unanswered since we last held: the
        # revision it expected and when it was sent; one may have landed (`_adopt_own_acquire`).
        self._unanswered: LeaseTerm | None = None

    @classmethod
    async def open(
        cls,
        js: JetStreamContext,
        holder: str,
        *,
        bucket: str = BUCKET_DEFAULT,
        ttl_s: float = TTL_DEFAULT_S,
        replicas: int | None = None,
        key: str = KEY_DEFAULT,
        shared: bool = False,
    ) -> "Lease":
        """A contender on `bucket`, creating the bucket (TTL = `ttl_s`) when it is absent,
        with `replicas` copies: by default the cluster's (`cluster_replicas`: 3 on a cluster,
        so the lease outlives a node, as the journal's stream does; 1 on one node)."""
        kv = await open_bucket(js, bucket, ttl_s, replicas)
        return cls(js, kv, bucket, holder, ttl_s=ttl_s, key=key, shared=shared)

    def held(self) -> bool:
        return self.state.held(self._clock())

    async def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; True when this contender now holds it."""
        if self.state.term is not None:
            return await self.renew()
        if await self._adopt_own_acquire():
            log.info("holding the lease from our write whose answer never came")
            return True
        sent_at = self._clock()
        last_seq = await self._free_at()
        if last_seq is None:
            return False  # held by someone else
        try:
            revision = await self._write(self.holder.encode(), last_seq)
        except _Refused:
            return False  # someone else wrote between our read and our write
        except _Unconfirmed:
            self._note_unanswered(last_seq, sent_at)  # if it landed, our next try holds from it
            return False
        self._won(revision, sent_at)
        return True

    def _note_unanswered(self, expected_seq: int, sent_at: float) -> None:
        if self._unanswered is None:
            self._unanswered = LeaseTerm(expected_seq, sent_at, self.state.ttl_s)

    def _won(self, revision: int, sent_at: float) -> None:
        self._unanswered = None
        self.state.won(revision, sent_at)

    async def _adopt_own_acquire(self) -> bool:
        """After an acquire or take-over left unanswered: hold the lease from it if it landed
        (the key's last write is ours, `_own_later_write`, stored after the revision the first
        such write expected: not an older write of ours left on the key), its term counted from
        that first write's sending (the one stored was sent then or later: never later than the
        server's TTL counts); True if so. Before, our own key looked held by another (our
        name): a venue waited a TTL for it to expire, a core stood by. Once a term counted from
        then would be over, it is not looked for: the key expires as before."""
        unanswered = self._unanswered
        if unanswered is None:
            return False
        if self._clock() >= unanswered.ends_at:
            self._unanswered = None
            return False
        own = await self._own_later_write(unanswered)
        if own is None:
            return False  # not landed (yet), or written over since
        self._won(own, unanswered.sent_at)
        return True

    async def take_over(self, predecessor: str) -> bool:
        """Take the lease from `predecessor`, a holder the caller knows acts no more (a dead
        run of the same venue: `core.venue_lease`), without waiting for its key to expire:
        write over its last write by compare-and-set on the bucket's last seq, read before
        the key, so any write since (its own renewal still on the wire, anyone else's) refuses
        ours. True when this contender now holds the lease; never for a shared bucket."""
        assert not self.shared, "a shared bucket's keys are each their holder's own"
        if self.state.term is not None:
            return await self.renew()
        sent_at = self._clock()
        try:
            info = await self.js.stream_info(self._stream)
            last_seq = int(info.state.last_seq)
            last = await _last_write(self.js, self._stream, self._subject)
            if last is None or _removed(last) or last.seq != last_seq:
                return False  # free (`try_acquire` takes it), or written since the read
            if last.data != predecessor.encode():
                return False  # someone else holds it
            revision = await self._write(self.holder.encode(), last_seq)
        except _Refused:
            return False
        except _Unconfirmed:
            self._note_unanswered(last_seq, sent_at)  # if it landed, our next try holds from it
            return False
        self._won(revision, sent_at)
        return True

    async def renew(self) -> bool:
        """Extend the term by compare-and-set; False when it is lost or not confirmed."""
        revision = self.state.revision
        if revision is None:
            return False
        sent_at = self._clock()
        try:
            new_revision = await self._write(self.holder.encode(), revision)
        except _Refused:
            try:
                adopted = await self._adopt_own_write()
            except Exception:
                # refused, and whose write moved the key on is unknown: in the core's bucket
                # another may have written (not ours: the term is over); a shared bucket's key
                # is ours alone (a per-run id), so its term runs on to its clock's end and the
                # next renewal reads again (a gateway that let it go closed every session).
                # A cancel (a stop) is let through: the release that follows deletes only a
                # write that carries our token.
                if not self.shared:
                    self.state.lost()
                raise
            if adopted:
                return await self.renew()  # from the revision our unanswered write stored
            self.state.lost()  # someone else wrote since: the term is over
            return False
        except _Unconfirmed:
            return self.held()  # the old term still runs to its end
        self.state.won(new_revision, sent_at)
        return True

    async def _adopt_own_write(self) -> bool:
        """A renewal refused because the key moved on past the term's revision by our own later
        renewal, one stored whose answer never came (`_own_later_write`): its revision becomes
        the term's (the term still counted from the earlier write that won it: never later
        than the server's TTL counts); True if so."""
        term = self.state.term
        if term is None:
            return False
        own = await self._own_later_write(term)
        if own is None:
            return False
        self.state.won(own, term.sent_at)
        return True

    async def _own_later_write(self, term: LeaseTerm) -> int | None:
        """The revision of our own write stored after `term`'s (a renewal, or an acquire,
        whose answer never came), or None when the key's last write is not one: ours when it
        carries our token (`writer`), is not a delete marker, and its seq is after `term`'s
        revision. Then NATS stored our compare-and-set, and nobody has written since (it is
        the last write); a key expired has no last write to match, one deleted by hand or
        written by another (of our name too: a core suspended past its TTL, its monotonic
        clock stopped, whose key a same-named core took) has not ours last. Neither our name
        (not unique: two cores started without --name are both "core") nor our clock (a
        suspend, a server clock step, a delete by hand let another write within our term)
        tells this. The same rule for a shared bucket's key."""
        last = await _last_write(self.js, self._stream, self._subject)
        if last is None or _removed(last) or last.seq is None or last.seq <= term.revision:
            return None  # expired or deleted: the term is over; or not moved on
        if (last.headers or {}).get(WRITER) != self.writer:
            return None  # someone else's, whatever its name
        return int(last.seq)

    async def release(self) -> None:
        """Give the lease up now (a clean stop), so a standby takes over without the TTL; an
        acquire of ours left unanswered that landed too (a refused start's)."""
        if self.state.term is None:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                if await self._adopt_own_acquire():
                    log.info("giving back the lease our write whose answer never came took")
        term = self.state.term
        self.state.lost()
        if term is None:
            return
        # Refused: someone else's now, or our own renewal stored unanswered (a timeout, a stop's
        # cancel mid-write) moved the key on: that one, told by our token, is deleted (before,
        # the lease stayed held a TTL by a stopped holder); anyone else's, of our name too, is
        # not (`_own_later_write`). Unconfirmed or unanswered: it expires by its TTL.
        with contextlib.suppress(_Refused, _Unconfirmed, nats.errors.Error, TimeoutError):
            try:
                await self._write(b"", term.revision, delete=True)
            except _Refused:
                own = await self._own_later_write(term)
                if own is not None:
                    await self._write(b"", own, delete=True)

    async def holder_now(self) -> str | None:
        """Who the bucket says holds the lease (for status and tests); None when nobody."""
        try:
            entry = await self.kv.get(self.key)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None
        return None if entry.value is None else entry.value.decode()

    async def _free_at(self) -> int | None:
        """The seq to expect when the key is absent, expired or deleted (the stream's last, or
        in a shared bucket the key's own); None when held."""
        if self.shared:
            last = await _last_write(self.js, self._stream, self._subject)
            if last is None:
                return 0  # never written, or expired: no message left on the key
            return last.seq if _removed(last) else None
        info = await self.js.stream_info(self._stream)
        last_seq = int(info.state.last_seq)
        if await self.holder_now() is not None:
            return None
        return last_seq

    async def _write(self, value: bytes, expected_last_seq: int, delete: bool = False) -> int:
        """Write the key if the stream's last seq is `expected_last_seq`; its new revision.
        Published to the key's subject with our headers (nats-py's `kv.put`/`kv.update` take
        none): the compare-and-set, and our token on a write or the delete marker's header."""
        headers = {self._expected: str(expected_last_seq)}
        if delete:
            headers[KV_OPERATION] = "DEL"
        else:
            headers[WRITER] = self.writer
        try:
            ack = await self.js.publish(self._subject, value, headers=headers)
        except nats.js.errors.APIError as refused:
            if refused.err_code == ERR_WRONG_LAST_SEQUENCE:
                raise _Refused from None
            if refused.code == 503:  # no leader right now: it was not written
                raise _Unconfirmed from None
            raise
        except (nats.errors.TimeoutError, nats.js.errors.NoStreamResponseError):
            raise _Unconfirmed from None
        return int(ack.seq)


async def open_bucket(
    js: JetStreamContext, bucket: str, ttl_s: float, replicas: int | None = None
) -> KeyValue:
    """The lease bucket `bucket`, created when absent (TTL `ttl_s`, history 1, `replicas`
    copies: by default the cluster's); one with another TTL is refused (`LeaseError`)."""
    if replicas is None:
        replicas = cluster_replicas(js._nc)  # nats-py keeps its connection there
    try:
        kv = await js.key_value(bucket)
    except nats.js.errors.BucketNotFoundError:
        kv = await js.create_key_value(
            KeyValueConfig(
                bucket=bucket,
                ttl=ttl_s,
                history=1,
                replicas=replicas,
                storage=StorageType.FILE,
            )
        )
    status = await kv.status()
    if status.ttl is None or abs(status.ttl - ttl_s) > 1e-3:
        raise LeaseError(
            f"KV bucket {bucket} expires keys after {status.ttl} s, not the lease's {ttl_s} s"
        )
    return kv


async def key_held(js: JetStreamContext, bucket: str, key: str) -> bool:
    """Whether `key` of lease bucket `bucket` is held now: written, and not deleted, purged
    or expired since. Read from the stream's leader (not a direct get, which a replica behind
    it may answer); a NATS error (no answer, no leader) is raised: unknown is not unheld."""
    last = await _last_write(js, f"KV_{bucket}", f"$KV.{bucket}.{key}")
    return last is not None and not _removed(last)


async def attempt(write: Callable[[], Awaitable[bool]]) -> bool:
    """A lease write; False when NATS did not answer (a node died, a leader election runs):
    the caller tries again at its next poll."""
    try:
        return await write()
    except (nats.errors.Error, TimeoutError) as unanswered:
        log.warning("lease write not answered: %r", unanswered)
        return False


async def _last_write(js: JetStreamContext, stream: str, subject: str) -> RawStreamMsg | None:
    try:
        return await js.get_last_msg(stream, subject)
    except nats.js.errors.NotFoundError as missing:
        if missing.err_code != ERR_NO_MESSAGE:
            raise  # the bucket itself is missing: nothing can be said of the key
        return None


def _removed(message: RawStreamMsg) -> bool:
    """A delete or purge marker, not a holder's write."""
    return (message.headers or {}).get(KV_OPERATION) in KV_REMOVED


class _Refused(Exception):
    """A compare-and-set lost: the bucket's stream moved on since the seq we expected."""


class _Unconfirmed(Exception):
    """No answer: the write may or may not have been stored."""
