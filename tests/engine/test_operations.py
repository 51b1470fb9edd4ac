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
    IssueKey,
    ListAsset,
    OperatorCommand,
    RequestWithdrawal,
    RevokeKey,
    SetInstrumentStatus,
    SetReferencePrice,
    SetReserveStaleness,
    SplitShares,
)
from engine.enums import InstrumentStatus
from engine.events import (
    CommandRejected,
    DividendPaid,
    Event,
    KeyIssued,
    KeyRevocationRecorded,
    OperationRepeated,
    ReserveStalenessSet,
    SharesSplit,
    WithdrawalRequested,
)
from engine.operations import (
    CL_OP_ID_LENGTH_MAX,
    OPERATIONS_RETAINED_LEGACY,
    Operation,
    OperationArchive,
    command_name,
)
from engine.operations import _digest as digest
from engine.reasons import ErrorCode
from engine.venue import Venue, VenueConfig
from settlement.ledger import Ledger
from tests.engine.test_corporate import (
    HOUR_US,
    PAYER,
    SHARE,
    SYMBOL,
    Corp,
    dividend,
    replayed_twice,
)


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


def keeping(recent_max: int) -> Corp:
    """A `Corp` whose venue keeps `recent_max` operations whole, compacting the older ones."""
    corp = Corp()
    config = msgspec.structs.replace(corp.venue.config, operations_recent_max=recent_max)
    corp.venue = Venue(config, Ledger())
    for command in corp.commands:
        corp.venue.execute(command)
    return corp


def test_an_id_past_the_old_bound_is_still_known_with_its_outcome() -> None:
    """The finding: only the last 100,000 ids were remembered; a command sent again under
    an older one was done again (a deposit minted twice). Now none is forgotten: the older
    ones are compacted, outcome and all, and answered as the newest are."""
    venue = Venue(VenueConfig(operations_recent_max=2, reserve_staleness_max_us=2**40), Ledger())
    for ts, code in enumerate(("A", "B", "C", "D", "E"), start=1):
        venue.execute(ListAsset(ts_us=ts, code=code, scale=2, cl_op_id=f"id-{code}"))
    venue.check_invariants()
    assert list(venue.operations.recent) == ["id-D", "id-E"] and venue.operations.archive.count == 3
    [again] = venue.execute(ListAsset(ts_us=6, code="A", scale=2, cl_op_id="id-A"))
    assert isinstance(again, OperationRepeated) and again.done_at_us == 1  # not ASSET_EXISTS
    [reused] = venue.execute(ListAsset(ts_us=7, code="Z", scale=2, cl_op_id="id-B"))
    assert isinstance(reused, CommandRejected) and reused.reason is ErrorCode.CL_OP_ID_REUSED
    assert "used at 2" in reused.detail


def test_compacted_operations_answer_their_outcomes_and_replay_and_restore_equal() -> None:
    """Ids compacted (one kept whole) repeat a dividend's totals and a withdrawal's id; the
    journal replayed and a snapshot restored give the same hash and the same answers."""
    corp = keeping(1)
    history(corp)
    corp.ok(under("dep-2", Deposit(account=4, asset="USD", amount=1)))
    assert corp.venue.operations.archive.count == 4 and list(corp.venue.operations.recent) == [
        "dep-2"
    ]
    paid = repeated(corp, under("div", dividend())).outcome
    assert isinstance(paid, DividendPaid) and paid.paid_total > 0
    held = repeated(corp, under("wd", RequestWithdrawal(account=4, asset="USD", amount=100)))
    assert isinstance(held.outcome, WithdrawalRequested)
    replayed_twice(corp)
    image = snapshot.decode(snapshot.encode(snapshot.capture(corp.venue)))
    assert image.operations_archive is not None and len(image.operations) == 1
    restored = snapshot.restore(image)
    assert restored.state_hash() == corp.venue.state_hash()
    for again in (
        under("dep", Deposit(account=4, asset="USD", amount=700)),
        under("dep", dividend()),
    ):
        stamped = msgspec.structs.replace(again, ts_us=corp.venue.ts_us + 1)
        assert restored.execute(stamped) == corp.venue.execute(stamped)
    assert restored.state_hash() == corp.venue.state_hash()


def test_an_image_of_before_the_archive_runs_as_it_ran_until_the_rules_are_journaled() -> None:
    """An image written before the archive holds every remembered operation whole (up to
    100,000) and a config with `operations_retained_max`, the rule its journal ran under:
    restored, it keeps that rule (so it equals the same journal replayed under it) until
    a `SetReserveStaleness`, which compacts both alike."""
    corp = keeping(100_000)  # as the old bound: every one whole
    history(corp)
    image = msgspec.msgpack.decode(snapshot.encode(snapshot.capture(corp.venue)))
    assert "operations_archive" not in image and len(image["operations"]) == 4
    image["config"].pop("operations_recent_max")
    image["config"]["operations_retained_max"] = OPERATIONS_RETAINED_LEGACY
    old = snapshot.decode(msgspec.msgpack.encode(image))
    restored = snapshot.restore(
        msgspec.structs.replace(
            old, config=msgspec.structs.replace(old.config, operations_recent_max=2)
        )
    )
    assert restored.operations.archive.count == 0 and len(restored.operations.recent) == 4
    replayed = Venue(restored.config, Ledger())
    for command in corp.commands:
        replayed.execute(command)
    assert restored.state_hash() == replayed.state_hash()
    mark = SetReserveStaleness(ts_us=corp.venue.ts_us + 1, staleness_max_us=24 * HOUR_US)
    assert restored.execute(mark) == replayed.execute(mark)
    assert restored.operations.archive.count == 2 and len(restored.operations.recent) == 2
    assert restored.state_hash() == replayed.state_hash()


def test_a_journal_begun_before_forgets_as_it_ran_until_its_first_staleness_record() -> None:
    """Review: a journal begun when only the newest 100,000 ids were remembered, which reused
    an id already forgotten, had it done again; replayed now, it was answered
    `OperationRepeated` (a state apart from the one that ran). Such a journal replays under
    its rule (`operations_retained_max`, from `first_rules`) until its first
    `SetReserveStaleness` (journaled by the first start that journals the rules), which
    forgets nothing more from then on, the older ones compacted."""
    legacy = VenueConfig(
        operations_recent_max=2, operations_retained_max=3, reserve_staleness_max_us=2**40
    )
    venue = Venue(legacy, Ledger())
    for ts, code in enumerate(("A", "B", "C", "D"), start=1):
        venue.execute(ListAsset(ts_us=ts, code=code, scale=2, cl_op_id=f"id-{code}"))
    assert list(venue.operations.recent) == ["id-B", "id-C", "id-D"]
    [minted_again] = venue.execute(ListAsset(ts_us=5, code="A2", scale=2, cl_op_id="id-A"))
    assert not isinstance(minted_again, OperationRepeated | CommandRejected)  # as it ran
    assert list(venue.operations.recent) == ["id-C", "id-D", "id-A"]  # id-B forgotten
    [marked] = venue.execute(SetReserveStaleness(ts_us=6, staleness_max_us=2**40))
    assert isinstance(marked, ReserveStalenessSet) and venue.config.operations_retained_max == 0
    assert list(venue.operations.recent) == ["id-D", "id-A"] and venue.operations.archive.count == 1
    for ts, code in enumerate(("E", "F", "G"), start=7):
        venue.execute(ListAsset(ts_us=ts, code=code, scale=2, cl_op_id=f"id-{code}"))
    [again] = venue.execute(ListAsset(ts_us=10, code="C", scale=2, cl_op_id="id-C"))
    assert isinstance(again, OperationRepeated) and again.done_at_us == 3  # never forgotten now
    venue.check_invariants()
    restored = snapshot.restore(snapshot.decode(snapshot.encode(snapshot.capture(venue))))
    assert restored.state_hash() == venue.state_hash()


def split_entered_before_its_flags() -> SplitShares:
    """A split as a gateway before cash in lieu, held withdrawals and the lot check entered
    it (`rescale_caps` was set then already)."""
    return SplitShares(symbol=SYMBOL, ratio_new=2, ratio_old=1, rescale_caps=True)


def test_admin_commands_accepted_before_their_entry_flags_repeat_after_them(corp: Corp) -> None:
    """Review: the digest a repeat is compared by held the flags set where a command enters
    (`lot_checked`, `cash_in_lieu`, `withdrawals_held`), which the operator does not send: a
    split or a reference price accepted before the upgrade (or through a gateway of the
    older version) and sent again after under its id was refused CL_OP_ID_REUSED. They are
    left out of the digest now; a command asking otherwise is still refused."""
    market = corp.venue.markets[SYMBOL]
    price = SetReferencePrice(symbol=SYMBOL, price=market.reference_price)
    corp.ok(under("price-1", price))
    repeated(corp, under("price-1", msgspec.structs.replace(price, lot_checked=True)))
    corp.halt()
    old = split_entered_before_its_flags()
    done = corp.ok(under("split-1", old))
    flagged = msgspec.structs.replace(
        old, lot_checked=True, cash_in_lieu=True, withdrawals_held=True
    )
    assert repeated(corp, under("split-1", flagged)).outcome == done[-1]
    other = msgspec.structs.replace(flagged, payer=PAYER)  # the operator's: another command
    assert corp.refused(under("split-1", other)).reason is ErrorCode.CL_OP_ID_REUSED


def test_digests_taken_before_the_entry_flags_are_unchanged() -> None:
    """The digests of commands without the new flags are those the engine took before them
    (pinned, computed by the code of before), so images and journals of then repeat as they
    did."""
    split = under("a", split_entered_before_its_flags())
    flagged = msgspec.structs.replace(split, lot_checked=True, cash_in_lieu=True)
    price = under("b", SetReferencePrice(symbol="X", price=5, lot_checked=True))
    split_x = msgspec.structs.replace(split, symbol="X", withdrawals_held=True)
    assert digest(split_x).hex() == "794752f1c105247eeb64fe3955c30fa7"
    assert digest(flagged) == digest(split)
    assert digest(price).hex() == "7ac0cf073d159e0248f6d2b7600d3a3f"


def test_a_compacted_operation_costs_its_fixed_entry() -> None:
    """What a compacted operation costs: 48 bytes, no object of its own (a million: 48 MB,
    where whole ones cost ~250 bytes each); its outcome, if any, besides."""
    archive = OperationArchive()
    operations = [Operation(f"op-{index}", bytes(16), index, None) for index in range(1_000)]
    for operation in operations:
        archive.add(operation)
    assert sum(map(len, archive.entries)) == 48 * 1_000 and not any(archive.outcomes)
    archive.check_invariants()
    assert archive.find("op-7") == operations[7] and archive.find("op-x") is None


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
    assert not corp.venue.operations
    image = msgspec.msgpack.decode(snapshot.encode(snapshot.capture(corp.venue)))
    assert "operations" not in image  # omitted while empty: written as before it existed
    del image["config"]["operations_recent_max"]  # as a build before the bound wrote it
    restored = snapshot.restore(snapshot.decode(msgspec.msgpack.encode(image)))
    assert restored.state_hash() == corp.venue.state_hash()
    assert "operations" not in msgspec.msgpack.encode(corp.venue._state()).decode("latin-1")


def issue(api_key: str, account: int = 4, by: str = "key-admin") -> IssueKey:
    return IssueKey(
        account=account, scopes=("read", "trade"), issued_by=by, api_key=api_key, cl_op_id="k-1"
    )


def test_a_key_issued_under_an_id_is_issued_once_whoever_chose_its_name(corp: Corp) -> None:
    """The finding: `admin.issue_key`'s ids were kept by each gateway, so the same id sent at
    once through two gateways issued two keys. The engine decides now: the second copy
    (another name, chosen by its gateway) is answered with the first's key, not issued; the
    ids are apart from the other commands' (as when the gateways kept them)."""
    [issued] = corp.ok(issue("key-a"))
    assert issued == KeyIssued(corp.venue.ts_us, "key-a", 4, ("read", "trade"))
    again = repeated(corp, issue("key-b"))  # the other gateway's copy
    assert again.outcome == issued and again.done_at_us == issued.ts_us
    other_admin = corp.refused(issue("key-c", by="key-other-admin"))
    assert other_admin.reason is ErrorCode.CL_OP_ID_REUSED and "'k-1'" in other_admin.detail
    unknown = corp.refused(msgspec.structs.replace(issue("key-d", account=999), cl_op_id="k-2"))
    assert unknown.reason is ErrorCode.UNKNOWN_ACCOUNT
    corp.ok(under("k-1", Deposit(account=4, asset="USD", amount=1)))  # another space
    repeated(corp, under("k-1", Deposit(account=4, asset="USD", amount=1)))
    repeated(corp, issue("key-e"))
    replayed_twice(corp)


def test_a_key_revocation_s_id_is_venue_wide_as_every_other_operator_command_s(
    corp: Corp,
) -> None:
    """The finding of session 31: a revocation's id was the gateway's alone, so a deposit
    under it was minted and a revocation under a deposit's id done. The engine takes it now
    (`RevokeKey`), in the ids every other operator command shares: either way round
    `CL_OP_ID_REUSED`, nothing changed; the same revocation again is repeated."""
    deposit = Deposit(account=4, asset="USD", amount=700)
    corp.ok(under("dep-1", deposit))
    under_deposit = corp.refused(RevokeKey(api_key="key-a", cl_op_id="dep-1"))
    assert under_deposit.reason is ErrorCode.CL_OP_ID_REUSED and "'dep-1'" in under_deposit.detail
    [recorded] = corp.ok(RevokeKey(api_key="key-a", cl_op_id="rv-1"))
    assert recorded == KeyRevocationRecorded(corp.venue.ts_us, "key-a")
    cash = corp.total(4, "USD")
    under_revocation = corp.refused(under("rv-1", deposit))
    assert under_revocation.reason is ErrorCode.CL_OP_ID_REUSED
    assert corp.total(4, "USD") == cash
    assert repeated(corp, RevokeKey(api_key="key-a", cl_op_id="rv-1")).command == "revoke_key"
    other_key = corp.refused(RevokeKey(api_key="key-b", cl_op_id="rv-1"))
    assert other_key.reason is ErrorCode.CL_OP_ID_REUSED
    assert corp.refused(RevokeKey(api_key="key-b")).reason is ErrorCode.BAD_PARAM  # no id
    replayed_twice(corp)


def test_command_names_are_snake_case() -> None:
    assert command_name(dividend()) == "pay_dividend"
    assert command_name(RequestWithdrawal(account=1, asset="USD", amount=1)) == (
        "request_withdrawal"
    )
