"""Withdrawals' expectations and old records: journals and ids of before replay as they ran.

`ConfirmWithdrawal` and `VoidWithdrawal` took `expected_account`, `expected_asset` and
`expected_amount` in session 25. A record written before has none: it must decode to
"unchecked" and confirm or void as it did; and an operation accepted under a `cl_op_id`
before must be recognised when sent again (its digest unchanged, `ADDED`).
"""

import msgspec
import pytest

from core.sequencer import _decoder as journal_decoder
from engine.commands import ConfirmWithdrawal, Deposit, RequestWithdrawal, VoidWithdrawal
from engine.events import OperationRepeated, WithdrawalConfirmed, WithdrawalVoided
from engine.operations import _digest as digest
from tests.engine.test_custody import USD, Custodied

# What this build's predecessor journaled and digested for `ConfirmWithdrawal` and
# `VoidWithdrawal` of withdrawal 7 at 5 µs under "op-1" (taken from it, session 25).
OLD_RECORDS = {
    ConfirmWithdrawal: (
        "84a474797065b1436f6e6669726d5769746864726177616ca574735f757305"
        "a8636c5f6f705f6964a46f702d31ad7769746864726177616c5f696407",
        "3a1ccf56239f085c79856d3edc3c0151",
    ),
    VoidWithdrawal: (
        "84a474797065ae566f69645769746864726177616ca574735f757305"
        "a8636c5f6f705f6964a46f702d31ad7769746864726177616c5f696407",
        "43bca99ad602959b2c6da545b7675559",
    ),
}


@pytest.mark.parametrize("command", [ConfirmWithdrawal, VoidWithdrawal])
def test_an_old_record_decodes_unchecked_with_its_old_digest(
    command: type[ConfirmWithdrawal] | type[VoidWithdrawal],
) -> None:
    record, old_digest = OLD_RECORDS[command]
    decoded = journal_decoder.decode(bytes.fromhex(record))
    assert decoded == command(ts_us=5, cl_op_id="op-1", withdrawal_id=7)
    assert decoded.expected_account == 0 and decoded.expected_asset is None
    assert decoded.expected_amount == 0
    assert digest(decoded).hex() == old_digest
    checked = msgspec.structs.replace(decoded, expected_account=3)
    assert digest(checked).hex() != old_digest  # an expectation is asked: another operation


def pending(custodied: Custodied) -> int:
    custodied.ok(Deposit(account=1, asset="USD", amount=100 * USD))
    events = custodied.ok(RequestWithdrawal(account=1, asset="USD", amount=60 * USD))
    return events[0].withdrawal.withdrawal_id  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("command", "done"),
    [(ConfirmWithdrawal, WithdrawalConfirmed), (VoidWithdrawal, WithdrawalVoided)],
)
def test_an_old_record_replays_as_it_ran_and_its_retry_is_a_repeat(
    command: type[ConfirmWithdrawal] | type[VoidWithdrawal], done: type
) -> None:
    """Done under an id by a record of before; the same id sent again by today's gateway
    (which sends no expectation unless the operator gives one) is a repeat."""
    custodied = Custodied()
    withdrawal_id = pending(custodied)
    old = command(withdrawal_id=withdrawal_id, cl_op_id="op-1")
    record = msgspec.msgpack.encode(old)
    fields = msgspec.msgpack.decode(record)
    for name in ("expected_account", "expected_asset", "expected_amount"):
        del fields[name]  # as the record was written before they existed
    replayed = journal_decoder.decode(msgspec.msgpack.encode(fields))
    assert isinstance(custodied.ok(replayed)[0], done)
    again = command(withdrawal_id=withdrawal_id, cl_op_id="op-1")
    assert isinstance(custodied.ok(again)[0], OperationRepeated)


def test_a_journal_with_expectations_replays_to_the_same_events_and_state() -> None:
    """A refusal and an acceptance by expectation, replayed from their records."""
    custodied = Custodied()
    withdrawal_id = pending(custodied)
    wrong = ConfirmWithdrawal(withdrawal_id=withdrawal_id, expected_account=2)
    right = ConfirmWithdrawal(withdrawal_id=withdrawal_id, expected_amount=60 * USD)
    first = [custodied.do(wrong), custodied.ok(right)]
    again = Custodied()
    assert pending(again) == withdrawal_id
    ts = [e[0].ts_us for e in first]
    for command, at in zip((wrong, right), ts, strict=True):
        record = msgspec.msgpack.encode(msgspec.structs.replace(command, ts_us=at))
        assert again.do(journal_decoder.decode(record), ts=at) == first.pop(0)
    assert again.venue.state_hash() == custodied.venue.state_hash()
