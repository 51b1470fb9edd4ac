"""Operator commands by client operation id (`cl_op_id`): one sent again is done only once.

Owns the venue's memory of the operator (admin) commands accepted with a `cl_op_id`: for
each, a digest of what the command asks, when it was done and what it produced that its
answer reports (a withdrawal's id, a dividend's or a split's totals). `guard` wraps each
operator command's handler: an id remembered with the same parameters changes nothing and
says so (`OperationRepeated`, with the first one's outcome); with other parameters it is
refused (`CL_OP_ID_REUSED`); an accepted command is remembered, a refused one is not (it
changed nothing, and sent again it may pass). Here in the engine, where commands are
serialized, so that it holds across restarts (replay, snapshots) and whichever of a
cluster's gateways each copy went through. Ids are venue-wide, not per operator, and never
forgotten: the newest `OPERATIONS_RECENT_MAX` are kept whole, the older ones compacted into
`OperationArchive` (48 bytes each, plus the outcome of those that have one); but a journal
begun before that rule replays under the one it ran under (the newest 100,000, the older
forgotten) until its first `SetReserveStaleness` (`Operations.retained_max`).
"""

import bisect
import hashlib
import re
import struct
from collections.abc import Callable
from typing import Any

import msgspec

from engine.commands import OperatorCommand
from engine.events import (
    CommandRejected,
    DividendPaid,
    Event,
    KeyIssued,
    OperationRepeated,
    Outcome,
    SharesSplit,
    VenueAccountSwept,
    WithdrawalRequested,
)
from engine.reasons import ErrorCode

CL_OP_ID_LENGTH_MAX = 36  # as `cl_ord_id`: a UUID fits
# Whole operations cost ~250 bytes each in memory, compacted ones 48: the newest this many
# (a retry comes within minutes) are kept whole, 1 MB at most.
OPERATIONS_RECENT_MAX = 4_096
# The rule before every id was remembered: the newest this many, the older forgotten (an id
# sent again minted again). A journal begun then replays under it until its first
# `SetReserveStaleness`, so that it runs as it ran.
OPERATIONS_RETAINED_LEGACY = 100_000
DIGEST_BYTES = 16  # 128 bits: two different commands never share a digest in practice
KEY_BYTES = 16  # an archived id's key, its 128-bit hash: two ids never share one in practice
# The archive's buckets, by a key's first 12 bits: an insertion copies one bucket, ~12 KB at
# a million operations (one sorted array would copy 48 MB); 4,096 empty ones cost ~300 KB.
ARCHIVE_BUCKETS = 4_096
_BUCKET_SHIFT = 16 - 12  # of a key's first two bytes, the top 12 bits
# An archived operation: its id's key, its digest, when it was done, and where its outcome is
# in its bucket's outcomes (`NO_OUTCOME`: none). Big-endian, so that entries sort as their
# keys do.
_ENTRY = struct.Struct(f">{KEY_BYTES}s{DIGEST_BYTES}sqQ")
_OUTCOME_LENGTH = struct.Struct(">I")
NO_OUTCOME = 2**64 - 1
_outcome_decoder = msgspec.msgpack.Decoder(Outcome)
# what an answer reports
_OUTCOMES = (DividendPaid, SharesSplit, WithdrawalRequested, KeyIssued, VenueAccountSwept)
_SPACE_END = "\x1f"  # (unit separator) between an id's space and the id: `_filed_as`
_WORD_START = re.compile(r"(?<!^)(?=[A-Z])")

Handler = Callable[[Any, list[Event]], None]


class Operation(msgspec.Struct, frozen=True, gc=False):
    """An operator command accepted under `cl_op_id` (as filed: `_filed_as`): as a digest of
    its parameters (time and id left out), when it was done, and the event its answer is
    made from."""

    cl_op_id: str
    digest: bytes
    done_at_us: int
    outcome: Outcome | None = None


class OperationArchive(msgspec.Struct, gc=False):
    """Operations compacted, never forgotten, in `ARCHIVE_BUCKETS` buckets by their key (the
    hash of the id). A bucket's `entries` pack one fixed-width entry per operation
    (`_ENTRY`), sorted by key, so an id is found by bisection; its `outcomes` hold the
    outcomes of those that have one, each msgpack behind its length. Plain bytes: a snapshot
    and the state hash take them as they are."""

    entries: list[bytes] = msgspec.field(default_factory=lambda: [b""] * ARCHIVE_BUCKETS)
    outcomes: list[bytes] = msgspec.field(default_factory=lambda: [b""] * ARCHIVE_BUCKETS)
    count: int = 0

    def find(self, cl_op_id: str) -> Operation | None:
        """The operation done under `cl_op_id`, if it was archived."""
        key = _key(cl_op_id)
        bucket = _bucket(key)
        entries = self.entries[bucket]
        index = _index(entries, key)
        if index is None:
            return None
        _, digest, done_at_us, at = _ENTRY.unpack_from(entries, index * _ENTRY.size)
        return Operation(cl_op_id, digest, done_at_us, _outcome(self.outcomes[bucket], at))

    def add(self, operation: Operation) -> None:
        """Archive `operation`, whose id is not archived yet: one bucket copied."""
        key = _key(operation.cl_op_id)
        bucket = _bucket(key)
        at = NO_OUTCOME
        if operation.outcome is not None:
            outcomes = self.outcomes[bucket]
            at = len(outcomes)
            payload = msgspec.msgpack.encode(operation.outcome)
            self.outcomes[bucket] = outcomes + _OUTCOME_LENGTH.pack(len(payload)) + payload
        entries = self.entries[bucket]
        keys = _Keys(entries)
        index = bisect.bisect_left(keys, key)
        assert index == len(keys) or keys[index] != key, f"{operation.cl_op_id!r} archived twice"
        entry = _ENTRY.pack(key, operation.digest, operation.done_at_us, at)
        cut = index * _ENTRY.size
        self.entries[bucket] = entries[:cut] + entry + entries[cut:]
        self.count += 1

    def copy(self) -> "OperationArchive":
        """An archive that later additions to this one leave as it is (for a snapshot)."""
        return OperationArchive(list(self.entries), list(self.outcomes), self.count)

    def check_shape(self) -> None:
        """Every bucket there: O(1), so after every command."""
        assert len(self.entries) == len(self.outcomes) == ARCHIVE_BUCKETS, "buckets lost"

    def check_invariants(self) -> None:
        """Each key once, in its bucket, in ascending order, each outcome within its bucket's,
        as many as counted: O(n), so run when an archive is restored (an addition checks its
        own key)."""
        self.check_shape()
        assert sum(map(len, self.entries)) == self.count * _ENTRY.size, "entries miscounted"
        for bucket, (entries, outcomes) in enumerate(zip(self.entries, self.outcomes, strict=True)):
            previous = b""
            for key, _, _, at in _ENTRY.iter_unpack(entries):
                assert key > previous, f"archived key {key.hex()} out of order or twice"
                assert _bucket(key) == bucket, f"archived key {key.hex()} in bucket {bucket}"
                assert at == NO_OUTCOME or at < len(outcomes), f"outcome at {at} past the end"
                previous = key


class _Keys:
    """The keys of packed entries as a sequence, for `bisect` (no copy of the entries)."""

    def __init__(self, entries: bytes) -> None:
        self.entries = entries

    def __len__(self) -> int:
        return len(self.entries) // _ENTRY.size

    def __getitem__(self, index: int) -> bytes:
        start = index * _ENTRY.size
        return self.entries[start : start + KEY_BYTES]


def _bucket(key: bytes) -> int:
    return int.from_bytes(key[:2], "big") >> _BUCKET_SHIFT


def _index(entries: bytes, key: bytes) -> int | None:
    """Where `key`'s entry is in `entries`, if there."""
    keys = _Keys(entries)
    index = bisect.bisect_left(keys, key)
    return index if index < len(keys) and keys[index] == key else None


def _outcome(outcomes: bytes, at: int) -> Outcome | None:
    if at == NO_OUTCOME:
        return None
    (length,) = _OUTCOME_LENGTH.unpack_from(outcomes, at)
    start = at + _OUTCOME_LENGTH.size
    return _outcome_decoder.decode(outcomes[start : start + length])


class Operations:
    """The remembered `cl_op_id`s: the newest whole, in `recent` (oldest first: a dict keeps
    insertion order), the rest in `archive`. Under a `retained_max` (the rule a journal begun
    before every id was remembered ran under), the newest that many whole, the rest
    forgotten, until `remember_every_one`."""

    def __init__(self, recent_max: int = OPERATIONS_RECENT_MAX, retained_max: int = 0) -> None:
        assert recent_max > 0 and retained_max >= 0, "keep at least one operation whole"
        self.recent_max_configured = recent_max
        self.retained_max = retained_max
        self.recent_max = retained_max or recent_max
        self.recent: dict[str, Operation] = {}
        self.archive = OperationArchive()

    def __bool__(self) -> bool:
        """Whether any operation was done under an id (the state hash leaves out none)."""
        return bool(self.recent) or self.archive.count > 0

    def guard(self, handler: Handler) -> Handler:
        """`handler`, done at most once per `cl_op_id` (see the module's docstring)."""

        def run(cmd: OperatorCommand, events: list[Event]) -> None:
            if cmd.cl_op_id is None:  # an operator who gave none: as before ids existed
                handler(cmd, events)
                return
            digest = _digest(cmd)
            filed = _filed_as(cmd)
            if self._refused_or_repeated(cmd, filed, digest, events):
                return
            start = len(events)
            handler(cmd, events)
            done = events[start:]
            if done and type(done[-1]) is CommandRejected:
                return
            outcome = next((e for e in reversed(done) if isinstance(e, _OUTCOMES)), None)
            self._remember(Operation(filed, digest, cmd.ts_us, outcome))

        return run

    def find(self, cl_op_id: str) -> Operation | None:
        """The operation done under `cl_op_id`, if any: the recent ones first (a retry comes
        within minutes), then the archive."""
        known = self.recent.get(cl_op_id)
        return known if known is not None else self.archive.find(cl_op_id)

    def _refused_or_repeated(
        self, cmd: OperatorCommand, filed: str, digest: bytes, events: list[Event]
    ) -> bool:
        """Whether the command's `cl_op_id` decides its fate: malformed or used by another
        command (refused), or by this one (repeated); either way nothing changes."""
        cl_op_id = cmd.cl_op_id
        assert cl_op_id is not None
        name = command_name(cmd)
        if not 0 < len(cl_op_id) <= CL_OP_ID_LENGTH_MAX:
            detail = f"cl_op_id must be 1 to {CL_OP_ID_LENGTH_MAX} characters"
            events.append(_rejected(cmd, name, ErrorCode.BAD_PARAM, detail))
            return True
        known = self.find(filed)
        if known is None:
            return False
        if known.digest != digest:
            detail = (
                f"cl_op_id {cl_op_id!r} was used at {known.done_at_us} for another command or"
                " other parameters: nothing done; give a new cl_op_id for a new command"
            )
            events.append(_rejected(cmd, name, ErrorCode.CL_OP_ID_REUSED, detail))
            return True
        events.append(OperationRepeated(cmd.ts_us, name, cl_op_id, known.done_at_us, known.outcome))
        return True

    def _remember(self, operation: Operation) -> None:
        recent = self.recent
        recent[operation.cl_op_id] = operation
        if len(recent) > self.recent_max:  # the oldest whole one compacted (or forgotten)
            oldest = recent.pop(next(iter(recent)))
            if not self.retained_max:
                self.archive.add(oldest)

    def remember_every_one(self) -> None:
        """From now on forget no id (`SetReserveStaleness`, the journal's mark of today's
        rules): those kept whole beyond `recent_max` are compacted, oldest first, as they
        would have been had they come under it."""
        if not self.retained_max:
            return
        self.retained_max = 0
        self.recent_max = self.recent_max_configured
        recent = self.recent
        while len(recent) > self.recent_max:
            self.archive.add(recent.pop(next(iter(recent))))

    def check_invariants(self) -> None:
        """Within the bound, each filed under its own id, of a bounded length and digest
        (the archive is checked whole where it is restored, an addition its own key)."""
        recent = self.recent
        assert len(recent) <= self.recent_max, f"{len(recent)} operations kept whole"
        self.archive.check_shape()
        for cl_op_id, operation in recent.items():
            assert operation.cl_op_id == cl_op_id, f"operation {cl_op_id!r} filed elsewhere"
            bare = cl_op_id.rpartition(_SPACE_END)[2]
            assert 0 < len(bare) <= CL_OP_ID_LENGTH_MAX, f"cl_op_id {cl_op_id!r} kept"
            assert len(operation.digest) == DIGEST_BYTES, f"digest of {cl_op_id!r}"

    def image(self) -> list[Operation]:
        """The operations kept whole, oldest first (for snapshots and the state hash)."""
        return list(self.recent.values())

    def adopt(self, operations: list[Operation], archive: OperationArchive | None) -> None:
        """Take `archive` and remember `operations` (oldest first) as restored from a
        snapshot. An image of before the archive holds up to 100,000 whole operations: taken
        one by one, under its venue's rule (`retained_max`, which such an image's config
        holds: all kept whole), as the same commands replayed would be."""
        if archive is not None:
            archive.check_invariants()
            self.archive = archive
        for operation in operations:
            assert self.find(operation.cl_op_id) is None, f"{operation.cl_op_id!r} twice"
            self._remember(operation)


def command_name(cmd: OperatorCommand) -> str:
    """The command's name as its refusals give it: `PayDividend` is "pay_dividend"."""
    return _WORD_START.sub("_", type(cmd).__name__).lower()


def _digest(cmd: OperatorCommand) -> bytes:
    """What the command asks, without when (`ts_us`), under which id, or what the operator
    did not choose (`UNASKED`, `ENTRY_FLAGS`; `ADDED` while at its default): its type and
    the other fields, encoded as the command was before those fields existed."""
    bare = msgspec.structs.replace(cmd, ts_us=0, cl_op_id=None, **dict.fromkeys(cmd.UNASKED, ""))
    left_out = _left_out(cmd)
    if not left_out:
        payload = msgspec.msgpack.encode(bare)
    else:  # as a map in the struct's own order: the same bytes as the struct had without them
        config = bare.__struct_config__
        fields: dict[str, Any] = {str(config.tag_field): config.tag}
        for name in bare.__struct_fields__:
            if name not in left_out:
                fields[name] = getattr(bare, name)
        payload = msgspec.msgpack.encode(fields)
    return hashlib.blake2b(payload, digest_size=DIGEST_BYTES).digest()


def _left_out(cmd: OperatorCommand) -> tuple[str, ...]:
    """The fields `_digest` leaves out of `cmd`'s: its entry flags, and its added fields at
    their default."""
    added = cmd.ADDED
    if not added:
        return cmd.ENTRY_FLAGS
    defaults = {field.name: field.default for field in msgspec.structs.fields(cmd)}
    return cmd.ENTRY_FLAGS + tuple(name for name in added if getattr(cmd, name) == defaults[name])


def _filed_as(cmd: OperatorCommand) -> str:
    """The id an operation is filed under: its `cl_op_id`, in its command's space
    (`ID_SPACE`) if it has one of its own, which no operator's id can name (the wire refuses
    a control character in one)."""
    cl_op_id = cmd.cl_op_id
    assert cl_op_id is not None
    space = cmd.ID_SPACE
    return f"{space}{_SPACE_END}{cl_op_id}" if space else cl_op_id


def _key(cl_op_id: str) -> bytes:
    """An archived id's key: its hash, of a fixed width (an id may be up to 36 characters
    of any script). `surrogatepass`: the wire may carry a lone surrogate."""
    encoded = cl_op_id.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(encoded, digest_size=KEY_BYTES, person=b"cl_op_id").digest()


def _rejected(cmd: OperatorCommand, name: str, reason: ErrorCode, detail: str) -> CommandRejected:
    return CommandRejected(
        cmd.ts_us,
        name,
        reason,
        detail,
        getattr(cmd, "account", 0),
        getattr(cmd, "symbol", None),
    )
