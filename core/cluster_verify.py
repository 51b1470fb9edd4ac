"""`venue verify --nats URLS`: check a cluster's journal stream, one line per check.

Reads the JetStream stream (`VENUE_COMMANDS`) through an ephemeral pull consumer, as a core's
recovery does, and replays it with the cluster's record codec into a fresh venue: from seq 1
(`--from-start`), or from the oldest good snapshot in a core's `--data-dir`. Every snapshot
of that directory the replay passes is compared with the replay's state at its seq (state
hash), and the last seq and the state hash at the stream's end are reported. Read-only:
nothing is published to the stream, no KV bucket is opened, no snapshot file is touched
(a half-written `.tmp` is the core's to remove), so it runs while the cluster runs (it
replays what was acknowledged when it started) or is stopped. The ledger store is checked
by `venue ledger verify --postgres DSN`. Exits 1 on a FAIL line; 2 when it cannot check
(NATS unreachable, no stream, a record that is not a cluster's).
"""

import argparse
from pathlib import Path

from cli import progress
from cli.failures import CommandFailed
from core import config as venue_config
from core import snapshots
from core.jetstream_journal import STREAM_DEFAULT, JetStreamJournal
from core.journal import JournalError
from core.nats_bus import ClusterCodec
from core.sequencer import decode_record
from engine import snapshot as venue_snapshot
from engine.venue import Venue
from settlement.ledger import Ledger

PROGRESS_EVERY = 4_096  # records between two moves of the bar


def run(args: argparse.Namespace) -> int:
    config = venue_config.load(args.config)
    lines = verify_stream(args.nats, args.data_dir, config, from_start=args.from_start)
    for line in lines:
        print(line)
    return 1 if any(line.startswith("FAIL") for line in lines) else 0


def verify_stream(
    servers: str,
    data_dir: Path | None,
    config: venue_config.VenueConfig,
    *,
    from_start: bool = False,
) -> list[str]:
    """One line per check, each "ok" or "FAIL"; `CommandFailed` if it cannot check."""
    # Read before the stream is opened: a core writes a snapshot once its records are
    # acknowledged, so on a running cluster none is past the end the replay will reach.
    found, damaged = _snapshots(data_dir)
    lines = [
        f"FAIL snapshot {name} is damaged: a core's recovery skips it (it starts from the"
        f" newest good snapshot, or replays the whole stream); move it out of {data_dir}"
        for name in damaged
    ]
    start = None if from_start or not found else found[0]
    try:
        journal = JetStreamJournal(servers, create=False)
    except JournalError as unreadable:
        raise CommandFailed(f"cannot read the journal stream: {unreadable}") from None
    try:
        last = journal.last_seq()
        lines += _replay(journal, start, found, config)
    except JournalError as unreadable:
        raise CommandFailed(f"stream {STREAM_DEFAULT}: {unreadable}") from None
    finally:
        journal.close()
    lines += [
        f"FAIL snapshot at seq {image.seq} is ahead of the stream (last seq {last}): it is"
        " another cluster's, or the stream was replaced; a core would refuse to start on it"
        for image in found
        if image.seq > last
    ]
    if data_dir is None:
        lines.append("ok   snapshot: none checked (give a core's --data-dir to check its own)")
    elif not found and not damaged:
        lines.append(f"ok   snapshot: none in {data_dir} (a core there replays the whole stream)")
    return lines


def _replay(
    journal: JetStreamJournal,
    start: snapshots.Snapshot | None,
    found: list[snapshots.Snapshot],
    config: venue_config.VenueConfig,
) -> list[str]:
    """Replay the stream after `start` (None: from seq 1), checking each of `found` on the
    way; the lines, the first naming what was read."""
    if start is None:
        staleness_us = venue_config.reserve_staleness_max_us(config)
        venue = Venue(snapshots.first_rules(None, staleness_us), Ledger())
        after, origin = 0, "from seq 1"
    else:
        venue = venue_snapshot.restore(start.venue)
        after, origin = start.seq, f"from the snapshot at seq {start.seq}"
    due = {image.seq: image for image in found if image.seq > after}
    lines, codec, records, done = [], ClusterCodec(), 0, after
    last = journal.last_seq()
    with progress.bar(total=last - after, unit=" records", desc="verify: replaying") as bar:
        for seq, payload in journal.replay(after):
            command = decode_record(seq, payload, codec)  # not a cluster's: cannot check
            try:
                venue.execute(command)
            except Exception as failure:  # the state it ran on is not the one it was sequenced on
                lines.append(_unexecutable(seq, start, failure))
                break
            if venue.ledger is not None:  # its transfers are the store's: keep memory flat
                venue.ledger.drain()
            records, done = records + 1, seq
            if seq in due:
                lines.append(_snapshot_check(venue, due[seq]))
            if not records % PROGRESS_EVERY:
                bar.update(PROGRESS_EVERY)
        bar.update(records % PROGRESS_EVERY)
    head = f"ok   stream {journal.stream}: {records} records replayed {origin}, last seq {done}"
    if done != last:
        return [head.replace("ok  ", "FAIL", 1) + f" of {last}", *lines]
    venue.check_invariants()
    return [head, *lines, f"ok   replay: invariants hold, state {venue.state_hash()} at seq {done}"]


def _unexecutable(seq: int, start: snapshots.Snapshot | None, failure: Exception) -> str:
    """The FAIL line of a record the replay cannot execute."""
    state = "the replay's state" if start is None else f"the snapshot at seq {start.seq}'s state"
    cause = (
        "that snapshot is not the state the stream reached there: move it out, or"
        " replay with --from-start"
        if start is not None
        else "the stream's commands do not replay on this build: a bug, report it"
    )
    return f"FAIL record {seq} does not execute on {state} ({failure!r}): {cause}"


def _snapshots(data_dir: Path | None) -> tuple[list[snapshots.Snapshot], list[str]]:
    """The good snapshots in `data_dir`, oldest first, and the damaged files' names."""
    if data_dir is None:
        return [], []
    if not data_dir.is_dir():
        raise CommandFailed(f"{data_dir}: no such directory (give a core's --data-dir)")
    surveyed = list(snapshots.survey(data_dir))
    good = sorted((image for _, image in surveyed if image is not None), key=lambda i: i.seq)
    return good, [path.name for path, image in surveyed if image is None]


def _snapshot_check(venue: Venue, image: snapshots.Snapshot) -> str:
    restored = venue_snapshot.restore(image.venue).state_hash()
    if restored == venue.state_hash():
        return f"ok   snapshot at seq {image.seq} equals the replay at that seq"
    return (
        f"FAIL snapshot at seq {image.seq} differs from the replay at that seq (state"
        f" {restored[:16]}, the replay's {venue.state_hash()[:16]}): the core"
        " that wrote it executed the stream otherwise (another build?); a core that"
        " recovers from it carries that state on: move it out so recovery replays the stream"
    )
