"""What a gateway's start owes a run that did not stop cleanly, before it listens.

Owns two duties of `VenueServer.start`: the last run's crash, whose connections closed
without their cancel-on-disconnect (`cancel_on_disconnect_after_a_crash`, with the seq this
start begins at: `first_seq_of_start`), and this start's own failure once its core had
started (`stop_unserved`: the core stopped, not left half running). Nothing here runs once
the venue listens.
"""

import logging

from core.bus import Bus
from core.sequencer import describe_failure
from core.venue_core import VenueCore
from engine.commands import CancelOrder
from engine.enums import CancelReason
from engine.events import OrderCanceled

_log = logging.getLogger("venue")


async def stop_unserved(core: VenueCore, *, embedded: bool, cod_done: bool) -> None:
    """After a start that failed once the core had started (most often the listen: the
    port taken since `venue serve` checked it): stop the core as `stop` does, so that its
    journal is closed, its last snapshot written and the data directory's lock let go,
    rather than left half running by a process that only reports the failure. Nothing
    was accepted: the stop is clean once the cod cancels owed after a crash are made. A
    failure of this stop is logged, and the start's own failure is the one raised. Its
    epoch goes from `epochs.json` if it journaled nothing (`forget_unused_epoch`). A
    cluster gateway's `core` is its replica (`embedded` False), which keeps no epochs: it is
    stopped only (until session 32 the epoch's call failed on it, an AttributeError whose
    traceback hid the start's own failure, a full disk's or a taken port's)."""
    if embedded:
        _forget_unused_epoch(core)
    try:
        if embedded:
            await core.stop(mark_clean=cod_done)
        else:
            await core.stop()
    except Exception as failure:
        _log.warning(
            "the core did not stop cleanly after the failed start",
            extra={"error": describe_failure(failure)},
        )


def _forget_unused_epoch(core: VenueCore) -> None:
    """First: the stop lets the data directory go."""
    try:
        core.forget_unused_epoch()
    except OSError as failure:  # its entry stays, harmless: the next start replaces it
        _log.warning("the failed start's epoch stays", extra={"error": repr(failure)})


async def cancel_on_disconnect_after_a_crash(core: VenueCore, bus: Bus, first_seq: int) -> bool:
    """If the last run did not stop cleanly, its connections closed without their
    cancel-on-disconnect: cancel (reason cod) every open order marked cod (placed on a
    connection with cod on, or marked when it turned cod on, and not unmarked since:
    `SetCancelOnDisconnect`), as their connections' close would have. Before listening:
    nothing else is accepted first. (A clean stop closed every connection, and so ran
    cod on each.) Whether the last run stopped cleanly."""
    if core.take_clean_stop_mark():
        return True
    if first_seq == 1:
        return False  # a venue that has run nothing yet: no order is open
    reads = bus.reads
    orders = reads.orders
    canceled = 0
    for order_id in reads.venue.cod_order_ids():
        account = orders[order_id].account
        command = CancelOrder(account=account, order_id=order_id, reason=CancelReason.COD)
        executed = bus.submit(command, None)
        canceled += any(type(event) is OrderCanceled for event in executed.events)
    await bus.drain()
    _log.info("cancel-on-disconnect after an unclean stop", extra={"canceled": canceled})
    return False


def first_seq_of_start(core: VenueCore) -> int:
    """The seq of this start's first command: after the journal's last, asked before the
    core's start. A cluster gateway's replica is asked after its start, with no await
    before its `go_live`: the record after the last it replayed (restored from its snapshot,
    replayed from the stream, or come while it took its lease), the first it executes live.
    Until session 33 that was 1: every start replayed the whole stream, and its pushes'
    format was taken for this build's from seq 1 on, though its first start had taken them
    for an older one's (`PrivateStreams.replayed`'s floors)."""
    if isinstance(core, VenueCore):
        return core.sequencer.journal.last_seq() + 1
    return core.sequencer.last_seq + 1
