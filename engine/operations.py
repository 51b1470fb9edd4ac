"""Operator commands by client operation id (`cl_op_id`): one sent again is done only once.

Owns the venue's memory of the operator (admin) commands accepted with a `cl_op_id`: for
each, a digest of what the command asks, when it was done and what it produced that its
answer reports (a withdrawal's id, a dividend's or a split's totals). `guard` wraps each
operator command's handler: an id remembered with the same parameters changes nothing and
says so (`OperationRepeated`, with the first one's outcome); with other parameters it is
refused (`CL_OP_ID_REUSED`); an accepted command is remembered, a refused one is not (it
changed nothing, and sent again it may pass). Here in the engine, where commands are
serialized, so that it holds across restarts (replay, snapshots) and whichever of a
cluster's gateways each copy went through. Ids are venue-wide, not per operator.
Bounded: `CL_OP_IDS_RETAINED_MAX` ids, the oldest forgotten first.
"""

import hashlib
import re
from collections.abc import Callable
from typing import Any

import msgspec

from engine.commands import OperatorCommand
from engine.events import (
    CommandRejected,
    DividendPaid,
    Event,
    OperationRepeated,
    Outcome,
    SharesSplit,
    WithdrawalRequested,
)
from engine.reasons import ErrorCode

CL_OP_ID_LENGTH_MAX = 36  # as `cl_ord_id`: a UUID fits
# An operator retries within minutes; 100,000 admin commands are years of a venue's
# operations, and at ~150 bytes each about 15 MB of snapshot at most.
CL_OP_IDS_RETAINED_MAX = 100_000
DIGEST_BYTES = 16  # 128 bits: two different commands never share a digest in practice
_OUTCOMES = (DividendPaid, SharesSplit, WithdrawalRequested)  # what an answer reports
_WORD_START = re.compile(r"(?<!^)(?=[A-Z])")

Handler = Callable[[Any, list[Event]], None]


class Operation(msgspec.Struct, frozen=True, gc=False):
    """An operator command accepted under `cl_op_id`: as a digest of its parameters (time
    and id left out), when it was done, and the event its answer is made from."""

    cl_op_id: str
    digest: bytes
    done_at_us: int
    outcome: Outcome | None = None


class Operations:
    """The remembered `cl_op_id`s, oldest first (a dict keeps insertion order)."""

    def __init__(self, retained_max: int = CL_OP_IDS_RETAINED_MAX) -> None:
        assert retained_max > 0, "remember at least one operation"
        self.retained_max = retained_max
        self.by_id: dict[str, Operation] = {}

    def guard(self, handler: Handler) -> Handler:
        """`handler`, done at most once per `cl_op_id` (see the module's docstring)."""

        def run(cmd: OperatorCommand, events: list[Event]) -> None:
            if cmd.cl_op_id is None:  # an operator who gave none: as before ids existed
                handler(cmd, events)
                return
            digest = _digest(cmd)
            if self._refused_or_repeated(cmd, digest, events):
                return
            start = len(events)
            handler(cmd, events)
            done = events[start:]
            if done and type(done[-1]) is CommandRejected:
                return
            outcome = next((e for e in reversed(done) if isinstance(e, _OUTCOMES)), None)
            self._remember(Operation(cmd.cl_op_id, digest, cmd.ts_us, outcome))

        return run

    def _refused_or_repeated(
        self, cmd: OperatorCommand, digest: bytes, events: list[Event]
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
        known = self.by_id.get(cl_op_id)
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
        by_id = self.by_id
        by_id[operation.cl_op_id] = operation
        if len(by_id) > self.retained_max:
            del by_id[next(iter(by_id))]  # the oldest: its operator has long had an answer

    def check_invariants(self) -> None:
        """Within the bound, each filed under its own id, of a bounded length and digest."""
        assert len(self.by_id) <= self.retained_max, f"{len(self.by_id)} operations remembered"
        for cl_op_id, operation in self.by_id.items():
            assert operation.cl_op_id == cl_op_id, f"operation {cl_op_id!r} filed elsewhere"
            assert 0 < len(cl_op_id) <= CL_OP_ID_LENGTH_MAX, f"cl_op_id {cl_op_id!r} kept"
            assert len(operation.digest) == DIGEST_BYTES, f"digest of {cl_op_id!r}"

    def image(self) -> list[Operation]:
        """Every remembered operation, oldest first (for snapshots and the state hash)."""
        return list(self.by_id.values())

    def adopt(self, operations: list[Operation]) -> None:
        """Remember `operations` (oldest first) as restored from a snapshot."""
        for operation in operations:
            self._remember(operation)


def command_name(cmd: OperatorCommand) -> str:
    """The command's name as its refusals give it: `PayDividend` is "pay_dividend"."""
    return _WORD_START.sub("_", type(cmd).__name__).lower()


def _digest(cmd: OperatorCommand) -> bytes:
    """What the command asks, without when (`ts_us`) or under which id: its type and fields."""
    bare = msgspec.structs.replace(cmd, ts_us=0, cl_op_id=None)
    payload = msgspec.msgpack.encode(bare)
    return hashlib.blake2b(payload, digest_size=DIGEST_BYTES).digest()


def _rejected(cmd: OperatorCommand, name: str, reason: ErrorCode, detail: str) -> CommandRejected:
    return CommandRejected(
        cmd.ts_us,
        name,
        reason,
        detail,
        getattr(cmd, "account", 0),
        getattr(cmd, "symbol", None),
    )
