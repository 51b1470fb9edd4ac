"""Operator commands by `cl_op_id` (`engine.operations`): one sent again is done only once.

The finding: an operator whose admin command got no answer and who sent it again had it
applied twice (a dividend paid twice, a deposit minted twice, a split applied twice: the
market was still halted). The engine now remembers the `cl_op_id`s it did commands under,
through replay and snapshots.
"""

import msgspec
import pytest

from engine import snapshot
from engine.commands import (
    AnyCommand,
    Command,
    Deposit,
    ListAsset,
    OperatorCommand,
    RequestWithdrawal,
    SetInstrumentStatus,
    SplitShares,
)
from engine.enums import InstrumentStatus
from engine.events import (
    CommandRejected,
    DividendPaid,
    Event,
    OperationRepeated,
    SharesSplit,
    WithdrawalRequested,
)
from engine.operations import CL_OP_ID_LENGTH_MAX, command_name
from engine.reasons import ErrorCode
from engine.venue import Venue, VenueConfig
from settlement.ledger import Ledger
from tests.engine.test_corporate import PAYER, SHARE, SYMBOL, Corp, dividend, replayed_twice


def under(cl_op_id: str, command: OperatorCommand) -> OperatorCommand:
    return msgspec.structs.replace(command, cl_op_id=cl_op_id)


def repeated(corp: Corp, command: Command) -> OperationRepeated:
    """`command` changed nothing but the clock and said it was done before."""
    before = corp.venue.state_hash()
    events = corp.do(command)
    assert len(events) == 1 and isinstance(events[0], OperationRepeated), events
    corp.venue.ts_us -= 1
    assert corp.venue.state_hash() == before
    corp.venue.ts_us += 1
    return events[0]


@pytest.fixture
def corp() -> Corp:
    return Corp()


def test_a_dividend_sent_again_under_its_id_is_paid_once(corp: Corp) -> None:
    paid = corp.ok(under("div-1", dividend()))
    payer_cash = corp.total(PAYER, "USD")
    again = repeated(corp, under("div-1", dividend()))
    assert corp.total(PAYER, "USD") == payer_cash
    assert again.cl_op_id == "div-1" and again.command == "pay_dividend"
    assert again.done_at_us == paid[-1].ts_us
    assert isinstance(again.outcome, DividendPaid) and again.outcome == paid[-1]


def test_a_deposit_sent_again_under_its_id_is_minted_once(corp: Corp) -> None:
    deposit = Deposit(account=4, asset="USD", amount=700)
    cash = corp.total(4, "USD")
    corp.ok(under("dep-1", deposit))
    repeated(corp, under("dep-1", deposit))
    assert corp.total(4, "USD") == cash + 700
    corp.ok(deposit)  # without an id: done each time, as before ids existed
    corp.ok(under("dep-2", deposit))  # under another id: another deposit
    assert corp.total(4, "USD") == cash + 3 * 700


def test_a_split_sent_again_under_its_id_applies_once(corp: Corp) -> None:
    corp.halt()
    split = SplitShares(symbol=SYMBOL, ratio_new=2, ratio_old=1)
    done = corp.ok(under("split-1", split))
    holding = corp.total(3, "AAPLx")
    assert holding == 20 * SHARE
    again = repeated(corp, under("split-1", split))  # the market is still halted
    assert corp.total(3, "AAPLx") == holding
    assert isinstance(again.outcome, SharesSplit) and again.outcome == done[-1]


def test_a_withdrawal_sent_again_answers_its_withdrawal_id(corp: Corp) -> None:
    request = RequestWithdrawal(account=4, asset="USD", amount=100)
    [held] = [e for e in corp.ok(under("wd-1", request)) if isinstance(e, WithdrawalRequested)]
    again = repeated(corp, under("wd-1", request))
    assert again.outcome == held
    assert corp.held(4, "USD") == 100


def test_the_same_id_asking_otherwise_is_refused_and_changes_nothing(corp: Corp) -> None:
    corp.ok(under("op-1", Deposit(account=4, asset="USD", amount=700)))
    for other in (
        Deposit(account=4, asset="USD", amount=701),  # another amount
        Deposit(account=1, asset="USD", amount=700),  # another account
        dividend(),  # another command
    ):
        refused = corp.refused(under("op-1", other))
        assert refused.reason is ErrorCode.CL_OP_ID_REUSED
        assert "'op-1'" in refused.detail and "other parameters" in refused.detail
    repeated(corp, under("op-1", Deposit(account=4, asset="USD", amount=700)))  # still known


def test_a_refused_command_is_not_remembered_so_its_retry_may_pass(corp: Corp) -> None:
    corp.halt()
    split = under("split-1", SplitShares(symbol=SYMBOL, ratio_new=2, ratio_old=1))
    corp.ok(SetInstrumentStatus(symbol=SYMBOL, status=InstrumentStatus.OPEN))
    assert corp.refused(split).reason is ErrorCode.INSTRUMENT_NOT_HALTED
    corp.halt()
    corp.ok(split)  # the same id, now done
    repeated(corp, split)


@pytest.mark.parametrize("cl_op_id", ["", "x" * (CL_OP_ID_LENGTH_MAX + 1)])
def test_an_id_out_of_bounds_is_refused(corp: Corp, cl_op_id: str) -> None:
    refused = corp.refused(under(cl_op_id, Deposit(account=4, asset="USD", amount=1)))
    assert refused.reason is ErrorCode.BAD_PARAM and "cl_op_id" in refused.detail


def test_the_memory_is_bounded_and_forgets_the_oldest_first() -> None:
    venue = Venue(VenueConfig(operations_retained_max=2), Ledger())
    operations = venue.operations
    for ts, code in enumerate(("A", "B", "C"), start=1):
        venue.execute(ListAsset(ts_us=ts, code=code, scale=2, cl_op_id=f"id-{code}"))
    assert list(operations.by_id) == ["id-B", "id-C"]
    forgotten = venue.execute(ListAsset(ts_us=4, code="A", scale=2, cl_op_id="id-A"))
    assert [type(e) for e in forgotten] == [CommandRejected]  # done again: ASSET_EXISTS
    [known] = venue.execute(ListAsset(ts_us=5, code="C", scale=2, cl_op_id="id-C"))
    assert isinstance(known, OperationRepeated)


def history(corp: Corp) -> None:
    """Operations under ids, their repeats and a refused reuse, among others without."""
    corp.ok(under("dep", Deposit(account=4, asset="USD", amount=700)))
    corp.ok(under("div", dividend()))
    repeated(corp, under("dep", Deposit(account=4, asset="USD", amount=700)))
    corp.halt()
    corp.ok(under("split", SplitShares(symbol=SYMBOL, ratio_new=3, ratio_old=2)))
    corp.refused(under("div", dividend(amount=1)))
    repeated(corp, under("div", dividend()))
    corp.ok(under("wd", RequestWithdrawal(account=4, asset="USD", amount=100)))


def test_replaying_the_journal_gives_the_same_events_and_hash(corp: Corp) -> None:
    history(corp)
    venues = replayed_twice(corp)
    again = under("split", SplitShares(symbol=SYMBOL, ratio_new=3, ratio_old=2))
    [event] = venues[0].execute(msgspec.structs.replace(again, ts_us=corp.venue.ts_us + 1))
    assert isinstance(event, OperationRepeated)  # remembered by replay alone


def test_a_snapshot_keeps_the_ids_and_a_repeat_after_it_is_answered(corp: Corp) -> None:
    history(corp)
    image = snapshot.decode(snapshot.encode(snapshot.capture(corp.venue)))
    restored = snapshot.restore(image)
    assert restored.state_hash() == corp.venue.state_hash()
    assert [op.cl_op_id for op in image.operations] == ["dep", "div", "split", "wd"]
    for again in (
        under("div", dividend()),
        under("div", dividend(amount=1)),
        under("new", Deposit(account=4, asset="USD", amount=1)),
    ):
        stamped = msgspec.structs.replace(again, ts_us=corp.venue.ts_us + 1)
        events: list[Event] = restored.execute(stamped)
        assert events == corp.venue.execute(stamped)
    assert restored.state_hash() == corp.venue.state_hash()


def test_old_records_and_images_without_ids_load_and_hash_as_before(corp: Corp) -> None:
    """A journal record written before `cl_op_id` (no such field) decodes with None and
    replays as it was done; an image without `operations` restores the same venue; and a
    venue never given an id hashes without them (as before they existed)."""
    old_record = msgspec.msgpack.encode(
        {"type": "Deposit", "ts_us": 10**9, "account": 4, "asset": "USD", "amount": 5}
    )
    decoded = msgspec.msgpack.decode(old_record, type=AnyCommand)
    assert isinstance(decoded, Deposit) and decoded.cl_op_id is None
    corp.ok(decoded)
    assert not corp.venue.operations.by_id
    image = msgspec.msgpack.decode(snapshot.encode(snapshot.capture(corp.venue)))
    assert "operations" not in image  # omitted while empty: written as before it existed
    del image["config"]["operations_retained_max"]  # as a build before the bound wrote it
    restored = snapshot.restore(snapshot.decode(msgspec.msgpack.encode(image)))
    assert restored.state_hash() == corp.venue.state_hash()
    assert "operations" not in msgspec.msgpack.encode(corp.venue._state()).decode("latin-1")


def test_command_names_are_snake_case() -> None:
    assert command_name(dividend()) == "pay_dividend"
    assert command_name(RequestWithdrawal(account=1, asset="USD", amount=1)) == (
        "request_withdrawal"
    )
