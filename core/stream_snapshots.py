"""Which snapshot a copy of a cluster's venue starts from: a gateway's replica, a standby's copy.

Owns `latest_usable`: the newest snapshot in a data directory that a copy following the
stream (core/nats_bus.py `Replica`, core/cluster_core.py `Follower`) or a cluster core's own
cold recovery (core/recovery.py: `strict`, `Refused`) may restore and follow the stream from
the record after, instead of from seq 1. Usable: it reads and decodes
(core/snapshots.py's checks; a file that does not is passed over, as a cache's would be),
its venue image is of this build's version, it is of the copy's kind (a gateway's holds the
stream's epoch, `STREAM_EPOCH_KEY`; a core's does not), its seq is not past the stream's
last, and it was written from this stream: the stream's record at its seq carries the time
its venue is at (every command sets the venue's clock to its own stamp, `Venue.execute`),
and a gateway's epoch is the stream's first record's time. Anything else is logged, with
why, and passed over for an older one; none usable: the copy follows the stream from its
start. Reads no record but those two per snapshot looked at (`snapshots.SNAPSHOTS_KEPT`).
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


@dataclass(frozen=True)
class StreamCheck:
    """How a cluster core's own recovery checks its snapshots against the stream it
    journals to (`latest_usable`, strict): `stamp_at(seq)`, the time of the stream's record
    `seq`; `who`, the core's name in the log."""

    stamp_at: Callable[[int], Awaitable[int]]
    who: str


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


async def latest_usable(
    directory: Path,
    last_seq: int,
    stamp_at: Callable[[int], Awaitable[int]],
    *,
    gateway_s: bool,
    who: str,
    strict: bool = False,
) -> snapshots.Snapshot | None:
    """The newest usable snapshot in `directory` (None: follow the stream from its start) for
    a stream whose last seq is `last_seq`; `stamp_at(seq)`: the time of the stream's record
    `seq` (raises when it cannot be read: that snapshot is not used). `gateway_s`: the
    copy is a gateway's replica (else a core's). `who` names the copy in the log. `strict`:
    a core's own recovery, which raises `Refused` for a snapshot past the stream's last or
    of a gateway, where a copy passes them over as any other."""
    try:
        paths = sorted(directory.glob("snapshot-*.bin"), reverse=True)
    except OSError as unread:  # a directory not readable
        log.warning("snapshots not read: %s", unread, extra={"who": who})
        return None
    for path in paths:
        image, why = _read(path)
        if image is not None:
            why = await _unusable(image, last_seq, stamp_at, gateway_s)
            if why is None:
                return image
            if strict and why.startswith((PAST_THE_LAST, GATEWAY_S)):
                raise Refused(path, image, why)
        if why is not None:  # (None: damaged or half-written, `snapshots.read` said so)
            log.warning("snapshot not used: %s", why, extra={"who": who, "path": str(path)})
    return None


def _read(path: Path) -> tuple[snapshots.Snapshot | None, str | None]:
    """The snapshot in `path`, or None and why it was not read. A copy's snapshot is a cache:
    a file that cannot be read (an I/O error, no permission, a link to nothing) or does not
    decode (checksum right, contents not a snapshot's) is passed over for the older ones,
    not the end of the search (a core's recovery refuses a link to nothing)."""
    try:
        refuse_dangling_link(path, "passed over")
        return snapshots.read(path), None
    except (OSError, JournalError) as unread:
        return None, f"not read ({unread})"
    except msgspec.DecodeError as undecoded:  # (a ValidationError too)
        return None, f"does not decode ({undecoded})"


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
    except Exception as unread:  # a NATS error, a timeout, a record that does not decode
        return f"the stream's records not read to check it ({unread!r})"
    if at_seq != image.venue.ts_us:
        return (
            f"of another stream: the stream's record at its seq {image.seq} is stamped"
            f" {at_seq}, its venue {image.venue.ts_us}"
        )
    if first != epoch:
        return f"of another stream: the stream's epoch is {first}, its {epoch}"
    return None
