"""Withdrawals: when each was requested (`requested_at_us`), and how a finished one ended
(`FinishedWithdrawal`), through the engine; old journals replay as they ran.

The findings (session 26): `admin.withdrawals` listed no request time, as the ledger's
`Withdrawal` kept none; and a confirm or void of a finished withdrawal said only
`UNKNOWN_WITHDRAWAL`, not whether it had been confirmed or voided.
"""

import hashlib

import msgspec
import pytest

from engine import snapshot
from engine.commands import (
    AnyCommand,
    AttestReserves,
    Command,
    ConfirmWithdrawal,
    Deposit,
    ListAsset,
    OpenAccount,
    RequestWithdrawal,
    VoidWithdrawal,
)
from engine.events import CommandRejected, Event, OperationRepeated, WithdrawalRequested
from engine.reasons import ErrorCode
from engine.venue import Venue
from settlement import withdrawals
from settlement.ledger import Ledger

# A journal of session 25 (written by main at b4ffa42): three withdrawals requested, one
# confirmed, one voided, one confirmed again (refused). Its records carry neither new flag.
OLD_JOURNAL = bytes.fromhex(
    "9a86a474797065a94c6973744173736574a574735f757301a8636c5f6f705f6964c0a4636f6465a35553"
    "44a57363616c6506ae756e697175655f62795f63617365c287a474797065ab4f70656e4163636f756e74"
    "a574735f757302a8636c5f6f705f6964c0a76163636f756e7401a46e616d65a161ac6b79635f61707072"
    "6f766564c3ac6a7572697364696374696f6ea2444587a474797065ae4174746573745265736572766573"
    "a574735f757303a8636c5f6f705f6964c0a56173736574a3555344a6616d6f756e74cf000000e8d4a510"
    "00a861735f6f665f757303ad73706c69745f636865636b6564c286a474797065a74465706f736974a574"
    "735f757304a8636c5f6f705f6964c0a76163636f756e7401a56173736574a3555344a6616d6f756e74ce"
    "3b9aca0087a474797065b1526571756573745769746864726177616ca574735f757305a8636c5f6f705f"
    "6964c0a76163636f756e7401a56173736574a3555344a6616d6f756e74ce000f4240b468656c645f7468"
    "726f7567685f616374696f6e73c387a474797065b1526571756573745769746864726177616ca574735f"
    "757306a8636c5f6f705f6964c0a76163636f756e7401a56173736574a3555344a6616d6f756e74ce001e"
    "8480b468656c645f7468726f7567685f616374696f6e73c387a474797065b15265717565737457697468"
    "64726177616ca574735f757307a8636c5f6f705f6964c0a76163636f756e7401a56173736574a3555344"
    "a6616d6f756e74ce002dc6c0b468656c645f7468726f7567685f616374696f6e73c287a474797065b143"
    "6f6e6669726d5769746864726177616ca574735f757308a8636c5f6f705f6964c0ad7769746864726177"
    "616c5f696401b065787065637465645f6163636f756e7400ae65787065637465645f6173736574c0af65"
    "787065637465645f616d6f756e740087a474797065ae566f69645769746864726177616ca574735f7573"
    "09a8636c5f6f705f6964c0ad7769746864726177616c5f696402b065787065637465645f6163636f756e"
    "7400ae65787065637465645f6173736574c0af65787065637465645f616d6f756e740087a474797065b1"
    "436f6e6669726d5769746864726177616ca574735f75730aa8636c5f6f705f6964c0ad77697468647261"
    "77616c5f696401b065787065637465645f6163636f756e7400ae65787065637465645f6173736574c0af"
    "65787065637465645f616d6f756e7400"
)
OLD_STATE_HASH = "53d188b33dd86161bd7bae5e5ac55bb9d012193971a7c197056d82554b067e5d"
OLD_EVENTS_DIGEST = "f91b48878a665f7ebba633722894a3e8"  # blake2b-128 of the events' msgpack


def replay(journal: bytes) -> tuple[Venue, list[Event]]:
    venue = Venue(ledger=Ledger())
    events: list[Event] = []
    for command in msgspec.msgpack.decode(journal, type=list[AnyCommand]):  # type: ignore[valid-type]
        events += venue.execute(command)
        venue.check_invariants()
    return venue, events


def test_an_old_journal_replays_to_the_state_hash_and_events_it_had() -> None:
    venue, events = replay(OLD_JOURNAL)
    assert venue.state_hash() == OLD_STATE_HASH
    digest = hashlib.blake2b(msgspec.msgpack.encode(events), digest_size=16).hexdigest()
    assert digest == OLD_EVENTS_DIGEST
    assert venue.ledger is not None and not venue.ledger.finished_withdrawals
    (pending,) = venue.ledger.withdrawals.values()
    assert pending.requested_at_us == 0  # not kept: its command did not ask
    assert b"requested_at_us" not in msgspec.msgpack.encode(pending)
    image = snapshot.encode(snapshot.capture(venue))
    assert b"finished_withdrawals" not in image and b"requested_at_us" not in image
    assert snapshot.restore(snapshot.decode(image)).state_hash() == OLD_STATE_HASH
    rejected = events[-1]
    assert isinstance(rejected, CommandRejected)
    assert rejected.reason is ErrorCode.UNKNOWN_WITHDRAWAL


class Withdrawn:
    def __init__(self) -> None:
        self.venue = Venue(ledger=Ledger())
        self.journal: list[Command] = []
        for command in (
            ListAsset(code="USD", scale=6),
            OpenAccount(account=1, name="a", kyc_approved=True, jurisdiction="DE"),
            AttestReserves(asset="USD", amount=10**12, as_of_us=0),
            Deposit(account=1, asset="USD", amount=10**9),
        ):
            self.do(command)

    def do(self, command: Command) -> list[Event]:
        command = msgspec.structs.replace(command, ts_us=self.venue.ts_us + 1_000)
        self.journal.append(command)
        events = self.venue.execute(command)
        self.venue.check_invariants()
        return events

    def request(self, amount: int = 10**6, kept: bool = True) -> int:
        command = RequestWithdrawal(
            account=1,
            asset="USD",
            amount=amount,
            held_through_actions=True,
            requested_at_kept=kept,
        )
        (requested, _) = self.do(command)
        assert isinstance(requested, WithdrawalRequested)
        return requested.withdrawal.withdrawal_id

    @property
    def ledger(self) -> Ledger:
        assert self.venue.ledger is not None
        return self.venue.ledger


def test_a_withdrawal_entered_now_keeps_the_time_it_was_requested() -> None:
    withdrawn = Withdrawn()
    first = withdrawn.request()
    at = withdrawn.venue.ts_us
    assert withdrawn.ledger.withdrawals[first].requested_at_us == at
    old = withdrawn.request(kept=False)
    assert withdrawn.ledger.withdrawals[old].requested_at_us == 0


@pytest.mark.parametrize("first", [ConfirmWithdrawal, VoidWithdrawal])
@pytest.mark.parametrize("then", [ConfirmWithdrawal, VoidWithdrawal])
def test_a_confirm_or_void_of_a_finished_withdrawal_says_which_it_became(
    first: type[ConfirmWithdrawal | VoidWithdrawal], then: type[ConfirmWithdrawal | VoidWithdrawal]
) -> None:
    withdrawn = Withdrawn()
    withdrawal_id = withdrawn.request()
    withdrawn.do(first(withdrawal_id=withdrawal_id, finish_kept=True))
    finished_at = withdrawn.venue.ts_us
    before = withdrawn.venue.state_hash()
    (refused,) = withdrawn.do(then(withdrawal_id=withdrawal_id, finish_kept=True))
    assert isinstance(refused, CommandRejected)
    if first is ConfirmWithdrawal:
        reason, said = ErrorCode.WITHDRAWAL_ALREADY_CONFIRMED, "confirmed (its tokens burned)"
    else:
        reason, said = ErrorCode.WITHDRAWAL_ALREADY_VOIDED, "voided (its hold released)"
    assert refused.reason is reason
    assert refused.detail == (
        f"withdrawal {withdrawal_id} was {said} at {finished_at} µs: it is no longer pending;"
        " nothing done"
    )
    withdrawn.venue.ts_us -= 1_000  # only the clock moved
    assert withdrawn.venue.state_hash() == before


def test_a_finish_not_asked_to_be_kept_is_unknown_as_before() -> None:
    withdrawn = Withdrawn()
    withdrawal_id = withdrawn.request()
    withdrawn.do(ConfirmWithdrawal(withdrawal_id=withdrawal_id))
    (refused,) = withdrawn.do(VoidWithdrawal(withdrawal_id=withdrawal_id, finish_kept=True))
    assert isinstance(refused, CommandRejected)
    assert refused.reason is ErrorCode.UNKNOWN_WITHDRAWAL
    assert not withdrawn.ledger.finished_withdrawals


def test_the_newest_finished_withdrawals_are_remembered_up_to_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(withdrawals, "FINISHED_WITHDRAWALS_MAX", 3)
    withdrawn = Withdrawn()
    ids = [withdrawn.request() for _ in range(4)]
    for withdrawal_id in ids:
        withdrawn.do(VoidWithdrawal(withdrawal_id=withdrawal_id, finish_kept=True))
    assert list(withdrawn.ledger.finished_withdrawals) == ids[1:]  # the oldest forgotten
    (refused,) = withdrawn.do(VoidWithdrawal(withdrawal_id=ids[0], finish_kept=True))
    assert isinstance(refused, CommandRejected)
    assert refused.reason is ErrorCode.UNKNOWN_WITHDRAWAL


def test_the_finished_and_their_times_survive_a_snapshot_and_a_replay() -> None:
    withdrawn = Withdrawn()
    kept, confirmed = withdrawn.request(), withdrawn.request()
    withdrawn.do(ConfirmWithdrawal(withdrawal_id=confirmed, finish_kept=True))
    state = withdrawn.venue.state_hash()
    image = snapshot.restore(snapshot.decode(snapshot.encode(snapshot.capture(withdrawn.venue))))
    assert image.state_hash() == state
    assert image.ledger is not None
    assert image.ledger.finished_withdrawals == withdrawn.ledger.finished_withdrawals
    assert image.ledger.withdrawals[kept].requested_at_us > 0
    replayed, _ = replay(msgspec.msgpack.encode(withdrawn.journal))
    assert replayed.state_hash() == state


def test_the_new_flags_leave_a_cl_op_ids_digest_as_it_was() -> None:
    """A confirm or withdrawal done before the flags existed, sent again after under its
    `cl_op_id` (now with the flags), is the same command: repeated, not refused."""
    withdrawn = Withdrawn()
    old = RequestWithdrawal(account=1, asset="USD", amount=5, cl_op_id="w-1")
    withdrawn.do(old)
    new = msgspec.structs.replace(old, held_through_actions=False, requested_at_kept=True)
    (repeated,) = withdrawn.do(new)
    assert isinstance(repeated, OperationRepeated)
    confirm = ConfirmWithdrawal(withdrawal_id=1, cl_op_id="c-1")
    withdrawn.do(confirm)
    (repeated,) = withdrawn.do(msgspec.structs.replace(confirm, finish_kept=True))
    assert isinstance(repeated, OperationRepeated)
