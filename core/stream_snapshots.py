"""Which snapshot a copy of a cluster's venue starts from: a gateway's replica, a standby's copy.

Owns `latest_usable`: the newest snapshot in a data directory that a copy following the
stream (core/nats_bus.py `Replica`, core/cluster_core.py `Follower`) may restore and follow
the stream from the record after, instead of from seq 1. Usable: it reads (core/snapshots.py's
checks), it is of the copy's kind (a gateway's holds the stream's epoch, `STREAM_EPOCH_KEY`; a
core's does not), its seq is not past the stream's last, and it was written from this stream:
the stream's record at its seq carries the time its venue is at (every command sets the
venue's clock to its own stamp, `Venue.execute`), and a gateway's epoch is the stream's first
record's time. Anything else is logged, with why, and passed over for an older one; none
usable: the copy follows the stream from its start, as before. Reads no record but those two
per snapshot looked at (at most `snapshots.SNAPSHOTS_KEPT`).
"""

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

from core import snapshots
from core.journal import JournalError

log = logging.getLogger("venue.cluster")

# The key of a gateway's snapshot (in its `gateway` part, beside the listener's own) holding
# the stream's epoch: its first record's time, which every push of the gateway carries.
STREAM_EPOCH_KEY: Final = "stream_epoch"


async def latest_usable(
    directory: Path,
    last_seq: int,
    stamp_at: Callable[[int], Awaitable[int]],
    *,
    gateway_s: bool,
    who: str,
) -> snapshots.Snapshot | None:
    """The newest usable snapshot in `directory` (None: follow the stream from its start) for
    a stream whose last seq is `last_seq`; `stamp_at(seq)`: the time of the stream's record
    `seq` (raises when it cannot be read: that snapshot is not used). `gateway_s`: the
    copy is a gateway's replica (else a standby core's). `who` names the copy in the log."""
    try:
        for path, image in snapshots.survey(directory):
            if image is None:  # damaged or half-written: `snapshots.read` said so
                continue
            why = await _unusable(image, last_seq, stamp_at, gateway_s)
            if why is None:
                return image
            log.warning("snapshot not used: %s", why, extra={"who": who, "path": str(path)})
    except (OSError, JournalError) as unread:  # a directory not readable, a link to nothing
        log.warning("snapshots not read: %s", unread, extra={"who": who})
    return None


async def _unusable(
    image: snapshots.Snapshot,
    last_seq: int,
    stamp_at: Callable[[int], Awaitable[int]],
    gateway_s: bool,
) -> str | None:
    """Why `image` cannot be restored on this stream, or None when it can."""
    epoch = image.gateway.get(STREAM_EPOCH_KEY)
    if gateway_s and not isinstance(epoch, int):
        return "not a gateway's (a core's snapshot, or one written before gateways kept them)"
    if not gateway_s and epoch is not None:
        return "a gateway's, not a core's"
    if image.seq > last_seq:
        return f"its seq {image.seq} is past the stream's last ({last_seq})"
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
