"""The private stream's continuity across a resume: the venue that replays is the one seen.

Owns the check that a resume's replay continues the events the client saw. Nothing on the
wire names a venue's run (protocol §1), and a venue started afresh (another data directory)
counts its account seqs from 1 again: one whose account had come past the client's last seq
by the time the client resumed would replay the events after that seq, and the client would
never learn of those up to it. So a resume asks for the events after the last one seen but
one (`since_seq` one lower), and the first event replayed must be that last event again, the
same one (its `epoch`, `ts` and `type`, which a replay keeps): it is dropped as seen. Any
other first message but a snapshot, or a stream whose seq ends just short of that event, says
the stream is not the one seen: the client follows it again from a snapshot
(`VenueClient._follow_account_afresh`) and drops what the stream sends before that snapshot.
The check needs an event seen last: after a snapshot (whose seq no event seen carries) a
resume asks from its seq, unchecked, as before.
"""

import enum
from typing import Any

Identity = tuple[Any, Any, Any, Any]  # an account event's seq, epoch, ts and type


class Verdict(enum.Enum):
    KEEP = "keep"  # a message of the stream: read it
    SEEN = "seen"  # the resume's overlap, the event seen last: drop it
    CHANGED = "changed"  # not the stream seen: follow it again from a snapshot
    STALE = "stale"  # of the stream being followed again, before its snapshot: drop it


class AccountStream:
    """What a client saw of its account stream, to check a resume against."""

    def __init__(self) -> None:
        self.last: Identity | None = None  # the last event seen (None: none since a snapshot)
        self.expected: Identity | None = None  # a resume's overlap, due as its first event
        self.restarting = False  # followed again from a snapshot: nothing read till it comes

    def forget(self) -> None:
        """Another account's stream (a logon of another key): nothing seen of it yet."""
        self.last = self.expected = None
        self.restarting = False

    def since_seq(self, account_seq: int) -> int:
        """The `since_seq` a resume asks with: one below the last event seen, whose return
        `admit` then expects first; `account_seq` itself when no event seen can be checked
        (none yet, or a snapshot set the seq)."""
        self.restarting = False  # a resume follows the stream anew: whatever was under way
        last = self.last
        if last is not None and last[0] == account_seq and account_seq > 0:
            self.expected = last
            return account_seq - 1
        self.expected = None
        return account_seq

    def short_of(self, seq_now: int) -> bool:
        """Whether the resumed stream's seq (the subscribe's answer) ends just short of the
        event expected: nothing is replayed, and the venue's stream ends before the event
        the client saw, so it is not the stream seen (a seq further short gets a snapshot
        anyway). Then the stream is to be followed again, as on a `CHANGED`."""
        expected = self.expected
        if expected is None or seq_now != expected[0] - 1:
            return False
        self.last = self.expected = None
        self.restarting = True
        return True

    def admit(self, message: dict[str, Any]) -> Verdict:
        """Judge an `account` message, and note the events read."""
        snapshot = message.get("type") == "snapshot"
        if self.restarting and not snapshot:
            return Verdict.STALE
        if snapshot:
            self.last = self.expected = None
            self.restarting = False
            return Verdict.KEEP
        if "seq" not in message:
            return Verdict.KEEP
        identity = (message["seq"], message.get("epoch"), message.get("ts"), message.get("type"))
        expected, self.expected = self.expected, None
        if expected is not None and identity != expected:
            self.last = None
            self.restarting = True  # until the snapshot `_follow_account_afresh` asks for
            return Verdict.CHANGED
        if expected is not None:
            return Verdict.SEEN
        if self.last is None or identity[0] > self.last[0]:
            self.last = identity
        return Verdict.KEEP
