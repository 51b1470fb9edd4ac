"""Which snapshot a copy of a cluster's venue starts from: a gateway's replica, a standby's copy.

Owns `latest_usable`: the newest snapshot in a data directory that a copy following the
stream (core/nats_bus.py `Replica`, core/cluster_core.py `Follower`) or a cluster core's own
cold recovery (core/recovery.py) may restore, following the stream after it, not from seq 1.
Usable: it reads and decodes, each per-account entry too (core/snapshots.py's checks,
`check_entries`, last), its venue image is of this build's version, it is of the copy's kind (a
gateway's holds the stream's epoch, `STREAM_EPOCH_KEY`; a core's does not), its seq is not
past the stream's last, and it was written from this stream: the stream's record at its
seq carries the time its venue is at (`Venue.execute` sets the clock to each command's
stamp), and a gateway's epoch is the stream's first record's time. Anything else is logged
and passed over for an older one (a cache's rule); none usable: the stream from its start.
`strict` (a core's own directory) refuses instead what a core must not run past: one ahead
of the stream or a gateway's (`Refused`), a link to nothing or a file not read, a record not
read to check it (`StampUnread`, after retries); and for `venue serve --nats`, whose data
directory holds its store and keys, one of another stream (`StreamCheck`). Reads no record
but two per snapshot looked at.
"""

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from core import snapshots
from core.journal import JournalError, refuse_dangling_link
from engine.snapshot import IMAGE_VERSION

log = logging.getLogger("venue.cluster")

# The key of a gateway's snapshot (in its `gateway` part, beside the listener's own) holding
# the stream's epoch: its first record's time, which every push of the gateway carries.
STREAM_EPOCH_KEY: Final = "stream_epoch"
# What `_unusable` says of a snapshot past the stream's last record, and of one of the other
# kind: what a core's own recovery refuses rather than passes over (`Refused`).
PAST_THE_LAST: Final = "past the stream's last"
GATEWAY_S: Final = "a gateway's, not a core's"
# What `_unusable` says of a snapshot written from another stream: passed over by a cluster
# core, refused by a one-process venue (`StreamCheck.other_stream_refused`).
OTHER_STREAM: Final = "of another stream"
# How long `strict` retries reading the stream's record at a snapshot's seq while JetStream
# does not answer (no leader yet, a node lost, a reconnect): as long as the journal's own
# sync waits for it (`SYNC_TIMEOUT_S`); then the start fails (`StampUnread`), to be tried
# again, rather than pass the snapshot over for a replay of the whole stream. A caller that
# tries again on its own (a standby, at each lease poll) passes its own budget (0: one try).
STAMP_RETRY_S: Final = 30.0


@dataclass(frozen=True)
class StreamCheck:
    """How a venue's own recovery checks its snapshots against the stream it journals to
    (`latest_usable`, strict): `stamp_at(seq)`, the time of the stream's record `seq`; `who`,
    the venue's name in the log. `other_stream_refused`: a snapshot of another stream is
    refused, not passed over: a one-process venue's (`venue serve --nats`), whose data
    directory also holds the ledger store and the issued keys of the venue that wrote it (a
    cluster core's store is the stream's, caught up from it, and its keys are on NATS)."""

    stamp_at: Callable[[int], Awaitable[int]]
    who: str
    other_stream_refused: bool = False


class Refused(Exception):
    """A snapshot a core's own recovery does not pass over (`latest_usable`, `strict`): one
    past the stream's last record (the stream lost records the core had executed, or is
    another, new and shorter: following it would build or run a venue on it), or a gateway's
    (a gateway's data directory given to the core). `why` says which, `image` is the snapshot
    and `path` its file."""

    def __init__(self, path: Path, image: snapshots.Snapshot, why: str) -> None:
        super().__init__(f"{path}: {why}")
        self.path = path
        self.image = image
        self.why = why

    def explained(self, directory: Path, last_seq: int) -> str:
        """The refusal in one line for the operator: what the snapshot is and what to do."""
        if self.why == GATEWAY_S:
            return (
                f"{self.path} is a cluster gateway's snapshot, not a core's: is {directory} a"
                " gateway's data directory? Give the core its own, or move that file away"
            )
        if self.why.startswith(OTHER_STREAM):
            return (
                f"the snapshot at seq {self.image.seq} in {directory} was not written from"
                f" this stream ({self.why}): {directory} is another venue's, or the stream"
                " was reset since (its NATS stores replaced or the stream deleted): start"
                " it with the data directory it journaled to this stream with, or an empty"
                " one (which replays the whole stream)"
            )
        return (
            f"the snapshot at seq {self.image.seq} is ahead of the stream (last seq"
            f" {last_seq}) in {directory}: did the stream lose records (its NATS stores"
            " replaced or emptied), or is it another venue's? `venue verify --nats` says"
            " what to do"
        )


class StampUnread(JournalError):
    """`strict`: the stream's record at a snapshot's seq could not be read to check it, after
    its retries (NATS not answering), or does not decode (`undecoded`: no retry reads it).
    The start fails and is tried again; the snapshot is not passed over, which would replay
    the whole stream."""

    def __init__(self, path: Path, seq: int, failure: BaseException) -> None:
        self.undecoded = isinstance(failure, msgspec.DecodeError)  # (a ValidationError too)
        then = (
            "is the stream another venue's, or of a later build? Move that snapshot away to"
            " follow the stream from an older one"
            if self.undecoded
            else "try again once NATS answers"
        )
        super().__init__(
            f"the stream's record at seq {seq} was not read to check the snapshot {path}"
            f" ({failure!r}): not starting without that check; {then}"
        )


async def latest_usable(
    directory: Path,
    last_seq: int,
    stamp_at: Callable[[int], Awaitable[int]],
    *,
    gateway_s: bool,
    who: str,
    strict: bool = False,
    stamp_retry_s: float | None = None,
    other_stream_refused: bool = False,
) -> snapshots.Snapshot | None:
    """The newest usable snapshot in `directory` (None: follow the stream from its start) for
    a stream whose last seq is `last_seq`; `stamp_at(seq)`: the time of the stream's record
    `seq` (raises when it cannot be read: that snapshot is not used). `gateway_s`: the
    copy is a gateway's replica (else a core's). `who` names the copy in the log. `strict`:
    a core's own directory (its recovery, its standby's copy, which takes over from there),
    which raises `Refused` for a snapshot past the stream's last or of a gateway, the file's
    error for a link to nothing (`DanglingLink`) or a file not read (one gone since the
    directory was read, pruned by its writer, is passed over), and `StampUnread` for a record
    not read (retried for `stamp_retry_s` first, `STAMP_RETRY_S` unless given; 0: read
    once), where a copy passes them over; with `other_stream_refused` too, `Refused` for a
    snapshot of another stream (`StreamCheck`)."""
    try:
        paths = snapshots.named_newest_first(directory)  # (a stray name: logged, passed over)
    except OSError as unread:  # a directory not readable
        log.warning("snapshots not read: %s", unread, extra={"who": who})
        return None
    refused = (
        (PAST_THE_LAST, GATEWAY_S, OTHER_STREAM)
        if other_stream_refused
        else (
            PAST_THE_LAST,
            GATEWAY_S,
        )
    )
    retry_s = STAMP_RETRY_S if stamp_retry_s is None else stamp_retry_s
    read_stamp = _retried(stamp_at, retry_s) if strict else stamp_at
    for path in paths:
        image, why = _read(path, strict)
        if image is not None:
            try:
                why = await _unusable(image, last_seq, read_stamp, gateway_s)
            except _Unread as unread:  # (strict only: a copy's reader is not `_retried`)
                raise StampUnread(path, image.seq, unread.failure) from unread.failure
            if why is None:  # the whole check last, on the file about to be taken only
                why = _undecoded(image)
            if why is None:
                return image
            if strict and why.startswith(refused):
                raise Refused(path, image, why)
        if why is not None:  # (None: damaged or half-written, `snapshots.read` said so)
            log.warning("snapshot not used: %s", why, extra={"who": who, "path": str(path)})
    return None


def _read(path: Path, strict: bool) -> tuple[snapshots.Snapshot | None, str | None]:
    """The snapshot in `path`, or None and why it was not read. A copy's snapshot is a cache:
    a file that cannot be read (an I/O error, no permission, a link to nothing) or does not
    decode (checksum right, contents not a snapshot's) is passed over for the older ones,
    not the end of the search. `strict` (a core's own): a link to nothing (`DanglingLink`)
    or a file not read is raised, as `snapshots.survey` raises it: the operator's to restore
    or remove, not skipped for an older snapshot (a disk not mounted). A file gone since the
    glob is passed over even so: its writer pruned it (a directory shared with the active
    core), it is not damaged, and a newer one is there."""
    try:
        refuse_dangling_link(path, "passing it over" if strict else "passed over")
        return snapshots.read(path), None
    except FileNotFoundError as gone:  # pruned by its writer since the glob: gone, not damaged
        return None, f"gone since the directory was read ({gone})"
    except (OSError, JournalError) as unread:
        if strict:
            raise
        return None, f"not read ({unread})"
    except msgspec.DecodeError as undecoded:  # (a ValidationError too)
        return None, f"does not decode ({undecoded})"


def _undecoded(image: snapshots.Snapshot) -> str | None:
    """Why a per-account entry of `image` does not restore (`snapshots.check_entries`), or
    None: such a file is passed over as a damaged one is, not a restore's failure."""
    try:
        snapshots.check_entries(image)
    except msgspec.DecodeError as undecoded:  # (a ValidationError too; it names the file)
        return f"does not decode ({undecoded})"
    return None


async def _unusable(
    image: snapshots.Snapshot,
    last_seq: int,
    stamp_at: Callable[[int], Awaitable[int]],
    gateway_s: bool,
) -> str | None:
    """Why `image` cannot be restored on this stream, or None when it can."""
    if image.venue.version != IMAGE_VERSION:  # (`restore` would refuse it: an assertion)
        version = image.venue.version
        return f"of another venue image version ({version}; this build's {IMAGE_VERSION})"
    epoch = image.gateway.get(STREAM_EPOCH_KEY)
    if gateway_s and not isinstance(epoch, int):
        return "not a gateway's (a core's snapshot, or one written before gateways kept them)"
    if not gateway_s and epoch is not None:
        return GATEWAY_S
    if image.seq > last_seq:
        return f"{PAST_THE_LAST} ({last_seq}): its seq is {image.seq}"
    try:
        at_seq = await stamp_at(image.seq)
        first = await stamp_at(1) if gateway_s else epoch
    except _Unread:
        raise
    except Exception as unread:  # a NATS error, a timeout, a record that does not decode
        return f"the stream's records not read to check it ({unread!r})"
    if at_seq != image.venue.ts_us:
        return (
            f"{OTHER_STREAM}: the stream's record at its seq {image.seq} is stamped"
            f" {at_seq}, its venue {image.venue.ts_us}"
        )
    if first != epoch:
        return f"{OTHER_STREAM}: the stream's epoch is {first}, its {epoch}"
    return None


class _Unread(Exception):
    """A stamp `_retried` did not read: `failure`, what the last try raised."""

    def __init__(self, failure: BaseException) -> None:
        super().__init__(repr(failure))
        self.failure = failure


def _retried(
    stamp_at: Callable[[int], Awaitable[int]], retry_s: float
) -> Callable[[int], Awaitable[int]]:
    """`stamp_at`, retried as the journal retries a JetStream call while the cluster has no
    leader or does not answer (`retry_unavailable`), for `retry_s` (0: one try); then, or on
    any other error, `_Unread`, which `_unusable` does not turn into a reason to pass over."""
    from core.jetstream_journal import retry_unavailable  # nats-py only for a cluster's core

    async def read(seq: int) -> int:
        try:
            if retry_s <= 0:
                return await stamp_at(seq)  # (its caller tries again later, on its own)
            return await retry_unavailable(lambda: stamp_at(seq), retry_s)
        except Exception as failure:  # after the retries: NATS still down; or not decoded
            raise _Unread(failure) from failure

    return read
