"""Custody in the venue: deposits against reserves, two-phase withdrawals, T-bill maturity."""

import msgspec
import pytest

from engine.commands import (
    AdvanceClock,
    AttestReserves,
    Command,
    ConfirmWithdrawal,
    Deposit,
    ListAsset,
    ListInstrument,
    MatureInstrument,
    OpenAccount,
    PlaceOrder,
    RequestWithdrawal,
    SetInstrumentStatus,
    SetReferencePrice,
    SetReserveStaleness,
    VoidWithdrawal,
)
from engine.custody import AS_OF_AHEAD_MAX_US
from engine.enums import CancelReason, InstrumentKind, InstrumentStatus, Side
from engine.events import (
    CommandRejected,
    Deposited,
    Event,
    InstrumentMatured,
    OrderCanceled,
    WithdrawalConfirmed,
    WithdrawalRequested,
    WithdrawalVoided,
)
from engine.instrument import InstrumentSpec
from engine.reasons import ErrorCode
from engine.venue import Venue, VenueConfig
from settlement.ledger import Ledger
from settlement.transfers import REDEMPTION
from tests.engine.conftest import make_spec

USD = 1_000_000
HOUR_US = 3_600_000_000
MATURITY_US = 1_000 * HOUR_US
BILL = "TB-X-USD"


class Custodied:
    def __init__(self) -> None:
        self.venue = Venue(VenueConfig(reserve_staleness_max_us=24 * HOUR_US), Ledger())
        for command in (
            ListAsset(code="USD", scale=6),
            ListAsset(code="TB-X", scale=0),
            OpenAccount(account=1, name="a", kyc_approved=True, jurisdiction="DE"),
            OpenAccount(account=2, name="b", kyc_approved=True, jurisdiction="FR"),
            AttestReserves(asset="USD", amount=1_000_000 * USD, as_of_us=0),
            AttestReserves(asset="TB-X", amount=100_000, as_of_us=0),
        ):
            self.ok(command)

    def do(self, command: Command, ts: int | None = None) -> list[Event]:
        ts = ts if ts is not None else self.venue.ts_us + 1
        events = self.venue.execute(msgspec.structs.replace(command, ts_us=ts))
        self.venue.check_invariants()
        return events

    def ok(self, command: Command, ts: int | None = None) -> list[Event]:
        events = self.do(command, ts)
        assert not any(isinstance(e, CommandRejected) for e in events), events
        return events

    def refused(self, command: Command) -> ErrorCode:
        events = self.do(command)
        assert len(events) == 1 and isinstance(events[0], CommandRejected), events
        return events[0].reason

    def total(self, account: int, asset: str) -> int:
        assert self.venue.ledger is not None
        return self.venue.ledger.balance(account, asset).total


@pytest.fixture
def custodied() -> Custodied:
    return Custodied()


def test_deposits_mint_against_fresh_reserves(custodied: Custodied) -> None:
    events = custodied.ok(Deposit(account=1, asset="USD", amount=600_000 * USD))
    assert isinstance(events[0], Deposited) and custodied.total(1, "USD") == 600_000 * USD
    deposit = Deposit(account=2, asset="USD", amount=400_001 * USD)
    assert custodied.refused(deposit) is ErrorCode.RESERVES_EXCEEDED
    assert custodied.refused(Deposit(account=9, asset="USD", amount=1)) is (
        ErrorCode.UNKNOWN_ACCOUNT
    )
    assert custodied.refused(Deposit(account=1, asset="EUR", amount=1)) is ErrorCode.UNKNOWN_ASSET
    assert custodied.refused(Deposit(account=1, asset="USD", amount=0)) is ErrorCode.BAD_PARAM
    stale = custodied.do(Deposit(account=1, asset="USD", amount=1), ts=25 * HOUR_US)
    assert isinstance(stale[0], CommandRejected)
    assert stale[0].reason is ErrorCode.RESERVES_STALE
    custodied.ok(AttestReserves(asset="USD", amount=2_000_000 * USD, as_of_us=25 * HOUR_US))
    custodied.ok(Deposit(account=2, asset="USD", amount=400_001 * USD))


def test_withdrawals_hold_then_burn_or_release(custodied: Custodied) -> None:
    custodied.ok(Deposit(account=1, asset="USD", amount=100 * USD))
    events = custodied.ok(RequestWithdrawal(account=1, asset="USD", amount=60 * USD))
    request = events[0]
    assert isinstance(request, WithdrawalRequested)
    assert custodied.refused(RequestWithdrawal(account=1, asset="USD", amount=41 * USD)) is (
        ErrorCode.INSUFFICIENT_BALANCE
    )
    events = custodied.ok(ConfirmWithdrawal(withdrawal_id=request.withdrawal.withdrawal_id))
    assert isinstance(events[0], WithdrawalConfirmed)
    assert custodied.total(1, "USD") == 40 * USD
    assert custodied.refused(ConfirmWithdrawal(withdrawal_id=1)) is ErrorCode.UNKNOWN_WITHDRAWAL
    events = custodied.ok(RequestWithdrawal(account=1, asset="USD", amount=40 * USD))
    assert isinstance(events[0], WithdrawalRequested)
    events = custodied.ok(VoidWithdrawal(withdrawal_id=events[0].withdrawal.withdrawal_id))
    assert isinstance(events[0], WithdrawalVoided) and custodied.total(1, "USD") == 40 * USD


def bill_spec(maturity_us: int = MATURITY_US) -> InstrumentSpec:
    return make_spec(
        symbol=BILL,
        kind=InstrumentKind.TBILL,
        base="TB-X",
        price_decimals=6,
        qty_decimals=0,
        reference_price=98_676_708,
        maturity_us=maturity_us,
    )


def list_bill(custodied: Custodied) -> None:
    custodied.ok(ListInstrument(spec=bill_spec()))


def test_a_tbill_matures_into_par_for_every_holder_once(custodied: Custodied) -> None:
    list_bill(custodied)
    for account, face in ((1, 3_000), (2, 5_000)):
        custodied.ok(Deposit(account=account, asset="TB-X", amount=face))
        custodied.ok(Deposit(account=account, asset="USD", amount=10_000 * USD))
    sell = PlaceOrder(account=1, symbol=BILL, side=Side.SELL, price=98_676_708, qty=1_000)
    custodied.ok(sell)
    custodied.ok(PlaceOrder(account=2, symbol=BILL, side=Side.BUY, price=98_676_708, qty=1_000))
    custodied.ok(PlaceOrder(account=2, symbol=BILL, side=Side.BUY, price=98_000_000, qty=500))
    custodied.ok(RequestWithdrawal(account=1, asset="TB-X", amount=500))
    usd_before = {account: custodied.total(account, "USD") for account in (1, 2)}

    events = custodied.ok(AdvanceClock(), ts=MATURITY_US)
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "InstrumentStatusChanged"
    assert [e.reason for e in events if isinstance(e, OrderCanceled)] == [CancelReason.MATURITY]
    assert any(isinstance(e, WithdrawalVoided) for e in events)
    matured = next(e for e in events if isinstance(e, InstrumentMatured))
    assert (matured.holders, matured.face_total, matured.paid_total) == (2, 8_000, 8_000 * USD)
    assert custodied.total(1, "USD") - usd_before[1] == 2_000 * USD  # 3,000 - 1,000 sold
    assert custodied.total(2, "USD") - usd_before[2] == 6_000 * USD
    assert custodied.total(1, "TB-X") == custodied.total(2, "TB-X") == 0
    assert custodied.total(REDEMPTION, "USD") == 0
    market = custodied.venue.markets[BILL]
    assert market.status is InstrumentStatus.CANCEL_ONLY
    events = custodied.do(sell)
    assert isinstance(events[0], CommandRejected) and events[0].reason is ErrorCode.CANCEL_ONLY
    again = custodied.ok(AdvanceClock(), ts=MATURITY_US + 1)
    assert not any(isinstance(e, InstrumentMatured) for e in again)  # redeemed exactly once


def mature_with_withdrawals(custodied: Custodied) -> tuple[int, int]:
    """Account 1 holds 3,000 face and withdraws 500 and 700, held through maturity (as the
    gateway now enters withdrawals); the bill matures. The two withdrawals' ids."""
    list_bill(custodied)
    custodied.ok(Deposit(account=1, asset="TB-X", amount=3_000))
    ids = []
    for amount in (500, 700):
        request = RequestWithdrawal(
            account=1, asset="TB-X", amount=amount, held_through_actions=True
        )
        requested = custodied.ok(request)[0]
        assert isinstance(requested, WithdrawalRequested)
        ids.append(requested.withdrawal.withdrawal_id)
    events = custodied.ok(AdvanceClock(), ts=MATURITY_US)
    assert not any(isinstance(e, WithdrawalVoided) for e in events)
    matured = next(e for e in events if isinstance(e, InstrumentMatured))
    assert (matured.holders, matured.face_total, matured.paid_total) == (1, 1_800, 1_800 * USD)
    return ids[0], ids[1]


def test_a_withdrawal_pending_at_maturity_stays_pending_and_unpaid(custodied: Custodied) -> None:
    """The finding: maturity voided pending withdrawals and paid their tokens par. Had the
    custodian already paid the bills out (the confirm not yet in), the holder was paid
    twice, and the confirm only said `no pending withdrawal`. Its tokens now stay held and
    unpaid: the confirm burns them (the custodian paid), a void pays them par, exactly
    what the maturity paid every other unit."""
    confirmed, voided = mature_with_withdrawals(custodied)
    ledger = custodied.venue.ledger
    assert ledger is not None
    assert custodied.total(1, "USD") == 1_800 * USD
    assert (custodied.total(1, "TB-X"), ledger.balance(1, "TB-X").held) == (1_200, 1_200)
    events = custodied.ok(ConfirmWithdrawal(withdrawal_id=confirmed))
    assert isinstance(events[0], WithdrawalConfirmed)
    assert custodied.total(1, "TB-X") == 700 and custodied.total(1, "USD") == 1_800 * USD
    events = custodied.ok(VoidWithdrawal(withdrawal_id=voided))
    assert isinstance(events[0], WithdrawalVoided)
    assert custodied.total(1, "TB-X") == 0 and ledger.supply("TB-X") == 0
    assert custodied.total(1, "USD") == 2_500 * USD
    assert custodied.total(REDEMPTION, "USD") == 0
    assert not ledger.withdrawals


def test_a_withdrawal_held_through_maturity_survives_a_snapshot_and_replays(
    custodied: Custodied,
) -> None:
    from engine import snapshot

    _, voided = mature_with_withdrawals(custodied)
    restored = snapshot.restore(snapshot.decode(snapshot.encode(snapshot.capture(custodied.venue))))
    assert restored.state_hash() == custodied.venue.state_hash()
    void = VoidWithdrawal(ts_us=custodied.venue.ts_us + 1, withdrawal_id=voided)
    assert restored.execute(void) == custodied.venue.execute(void)
    assert restored.state_hash() == custodied.venue.state_hash()


def old_withdrawal_then_maturity(marked: bool) -> tuple[Custodied, int, list[Event]]:
    """Account 1 holds 3,000 face and withdraws 500 the way withdrawals were requested before
    they were held through corporate actions (no `held_through_actions`, as old journals
    hold them); then, if `marked`, this build's mark (`SetReserveStaleness`, journaled by
    the first start under it); then the bill matures. The venue, the withdrawal's id and the
    maturity's events."""
    custodied = Custodied()
    list_bill(custodied)
    custodied.ok(Deposit(account=1, asset="TB-X", amount=3_000))
    requested = custodied.ok(RequestWithdrawal(account=1, asset="TB-X", amount=500))[0]
    assert isinstance(requested, WithdrawalRequested)
    assert not requested.withdrawal.held_through_actions
    if marked:
        staleness_us = custodied.venue.config.reserve_staleness_max_us
        custodied.ok(SetReserveStaleness(staleness_max_us=staleness_us, withdrawals_held=True))
    events = custodied.ok(AdvanceClock(), ts=MATURITY_US)
    return custodied, requested.withdrawal.withdrawal_id, events


def test_an_old_withdrawal_stays_pending_and_unpaid_through_a_maturity_after_the_mark() -> None:
    """The finding: a withdrawal requested before withdrawals were held through corporate
    actions was still voided by a maturity today and its tokens paid par; had the custodian
    paid it out, the holder was paid twice. From the journal's mark on it is a withdrawal
    like today's: pending at maturity, its tokens held and unpaid; its confirm burns them,
    paying nothing, and its void would pay them par."""
    custodied, withdrawal_id, events = old_withdrawal_then_maturity(marked=True)
    assert not any(isinstance(e, WithdrawalVoided) for e in events)
    matured = next(e for e in events if isinstance(e, InstrumentMatured))
    assert (matured.holders, matured.face_total, matured.paid_total) == (1, 2_500, 2_500 * USD)
    ledger = custodied.venue.ledger
    assert ledger is not None and withdrawal_id in ledger.withdrawals
    assert (custodied.total(1, "TB-X"), ledger.balance(1, "TB-X").held) == (500, 500)
    assert custodied.total(1, "USD") == 2_500 * USD  # no par on the 500 the custodian paid
    custodied.ok(ConfirmWithdrawal(withdrawal_id=withdrawal_id))
    assert custodied.total(1, "TB-X") == 0 and custodied.total(1, "USD") == 2_500 * USD
    assert ledger.supply("TB-X") == 0 and not ledger.withdrawals


def test_an_old_withdrawal_voided_after_the_mark_and_maturity_is_paid_par_once() -> None:
    custodied, withdrawal_id, _ = old_withdrawal_then_maturity(marked=True)
    events = custodied.ok(VoidWithdrawal(withdrawal_id=withdrawal_id))
    assert isinstance(events[0], WithdrawalVoided)
    assert custodied.total(1, "TB-X") == 0 and custodied.total(1, "USD") == 3_000 * USD
    assert custodied.total(REDEMPTION, "USD") == 0


def test_an_old_journals_withdrawal_is_voided_at_maturity_as_it_was_without_the_mark() -> None:
    """A journal with no mark before its maturity (or a mark of an older build, which set
    only the bound) replays as it ran: the withdrawal voided, its tokens paid par."""
    for mark in (False, True):
        custodied = Custodied()
        if mark:  # a record of before this build: no `withdrawals_held`
            custodied.ok(SetReserveStaleness(staleness_max_us=24 * HOUR_US))
        list_bill(custodied)
        custodied.ok(Deposit(account=1, asset="TB-X", amount=3_000))
        custodied.ok(RequestWithdrawal(account=1, asset="TB-X", amount=500))
        events = custodied.ok(AdvanceClock(), ts=MATURITY_US)
        assert any(isinstance(e, WithdrawalVoided) for e in events)
        assert custodied.total(1, "USD") == 3_000 * USD and custodied.total(1, "TB-X") == 0
    _, _, events = old_withdrawal_then_maturity(marked=False)
    assert any(isinstance(e, WithdrawalVoided) for e in events)


def test_the_mark_replays_alike_and_changes_no_hash_without_old_withdrawals() -> None:
    """Replayed twice, the marked journal reaches the same state (and a restored snapshot
    too); a venue holding no withdrawal of before hashes as it did without the mark's
    flag."""
    from engine import snapshot

    first, _, _ = old_withdrawal_then_maturity(marked=True)
    second, _, _ = old_withdrawal_then_maturity(marked=True)
    assert first.venue.state_hash() == second.venue.state_hash()
    unmarked, _, _ = old_withdrawal_then_maturity(marked=False)
    assert unmarked.venue.state_hash() != first.venue.state_hash()
    restored = snapshot.restore(snapshot.decode(snapshot.encode(snapshot.capture(first.venue))))
    assert restored.state_hash() == first.venue.state_hash()
    hashes = []
    for withdrawals_held in (False, True):
        custodied = Custodied()
        custodied.ok(Deposit(account=1, asset="USD", amount=100 * USD))
        request = RequestWithdrawal(
            account=1, asset="USD", amount=60 * USD, held_through_actions=True
        )
        custodied.ok(request)
        staleness = SetReserveStaleness(
            staleness_max_us=24 * HOUR_US, withdrawals_held=withdrawals_held
        )
        custodied.ok(staleness)
        hashes.append(custodied.venue.state_hash())
    assert hashes[0] == hashes[1]


def test_a_delisted_bill_is_still_redeemed_and_never_reopens(custodied: Custodied) -> None:
    list_bill(custodied)
    custodied.ok(Deposit(account=2, asset="TB-X", amount=700))
    custodied.ok(SetInstrumentStatus(symbol=BILL, status=InstrumentStatus.DELISTED))
    events = custodied.ok(AdvanceClock(), ts=MATURITY_US)
    matured = [e for e in events if isinstance(e, InstrumentMatured)]
    assert [(m.holders, m.paid_total) for m in matured] == [(1, 700 * USD)]
    assert custodied.total(2, "USD") == 700 * USD


def test_a_matured_bill_cannot_trade_again(custodied: Custodied) -> None:
    list_bill(custodied)
    custodied.ok(AdvanceClock(), ts=MATURITY_US)
    reopen = SetInstrumentStatus(symbol=BILL, status=InstrumentStatus.OPEN)
    assert custodied.refused(reopen) is ErrorCode.INSTRUMENT_MATURED
    refusal = custodied.do(reopen)[0]
    assert isinstance(refusal, CommandRejected)
    assert refusal.detail == (
        f"{BILL} has matured (its holders were paid par) and never trades again: its status"
        " may be halted, cancel_only or delisted, not open"
    )
    custodied.ok(SetInstrumentStatus(symbol=BILL, status=InstrumentStatus.DELISTED))


def test_a_bill_token_trades_on_one_instrument_only(custodied: Custodied) -> None:
    list_bill(custodied)
    custodied.ok(ListAsset(code="USDC", scale=6))
    second = make_spec(
        symbol="TB-X-USDC",
        kind=InstrumentKind.TBILL,
        base="TB-X",
        quote="USDC",
        price_decimals=6,
        qty_decimals=0,
        reference_price=98_676_708,
        maturity_us=MATURITY_US,
    )
    assert custodied.refused(ListInstrument(spec=second)) is ErrorCode.BAD_PARAM


def test_a_bill_whose_maturity_has_come_cannot_be_listed(custodied: Custodied) -> None:
    custodied.ok(AdvanceClock(), ts=MATURITY_US)  # "today": the maturity date's midnight
    before = custodied.venue.state_hash()
    bill = make_spec(
        symbol=BILL,
        kind=InstrumentKind.TBILL,
        base="TB-X",
        price_decimals=6,
        qty_decimals=0,
        reference_price=98_676_708,
        maturity_us=MATURITY_US,
    )
    events = custodied.do(ListInstrument(spec=bill))
    assert len(events) == 1 and isinstance(events[0], CommandRejected)
    assert events[0].reason is ErrorCode.MATURITY_PASSED
    assert BILL not in custodied.venue.markets
    custodied.venue.ts_us -= 1
    assert custodied.venue.state_hash() == before  # nothing but the clock moved


def test_the_engine_replays_a_bill_listed_more_than_366_days_out(custodied: Custodied) -> None:
    """No T-bill runs longer than 52 weeks, and the edges refuse such a listing (the config
    and `admin.list_instrument`: tests/gateway/test_server_admin.py). The engine does not: a
    journal written before that check existed must replay as it was accepted."""
    day_us = 24 * HOUR_US
    custodied.ok(ListInstrument(spec=bill_spec(400 * day_us)), ts=day_us // 2)
    assert BILL in custodied.venue.markets


def test_the_engine_replays_a_bill_reference_price_above_par(custodied: Custodied) -> None:
    """The edges refuse a bill's reference price above par or below 50 per 100 of face
    (BILL_PRICE_OUT_OF_RANGE: tests/gateway/test_wire.py, tests/core/test_config.py). The
    engine does not: a journal that set one before that check existed must replay as it was
    accepted."""
    list_bill(custodied)
    custodied.ok(SetReferencePrice(symbol=BILL, price=100_500_000))
    assert custodied.venue.markets[BILL].reference_price == 100_500_000


def test_a_matured_bill_takes_no_more_reserves_or_mints(custodied: Custodied) -> None:
    list_bill(custodied)
    custodied.ok(Deposit(account=1, asset="TB-X", amount=1_000))
    custodied.ok(AdvanceClock(), ts=MATURITY_US)
    attest = AttestReserves(asset="TB-X", amount=50_000, as_of_us=MATURITY_US)
    assert custodied.refused(attest) is ErrorCode.ASSET_MATURED
    old = AttestReserves(asset="TB-X", amount=50_000, as_of_us=1)  # before the latest statement
    assert custodied.refused(old) is ErrorCode.ASSET_MATURED  # the reason, not its as_of
    assert custodied.refused(Deposit(account=1, asset="TB-X", amount=1)) is (
        ErrorCode.ASSET_MATURED
    )
    assert custodied.total(1, "TB-X") == 0
    assert custodied.venue.ledger is not None
    assert custodied.venue.ledger.supply("TB-X") == 0  # nothing stranded
    # Cash is untouched by the bill's maturity.
    custodied.ok(AttestReserves(asset="USD", amount=10_000 * USD, as_of_us=MATURITY_US))
    custodied.ok(Deposit(account=1, asset="USD", amount=USD))


def test_an_operator_matures_a_bill_now_at_par(custodied: Custodied) -> None:
    list_bill(custodied)
    custodied.ok(Deposit(account=1, asset="TB-X", amount=3_000))
    custodied.ok(Deposit(account=2, asset="USD", amount=10_000 * USD))
    custodied.ok(PlaceOrder(account=1, symbol=BILL, side=Side.SELL, price=98_676_708, qty=1_000))
    custodied.ok(PlaceOrder(account=2, symbol=BILL, side=Side.BUY, price=98_676_708, qty=1_000))
    custodied.ok(PlaceOrder(account=1, symbol=BILL, side=Side.SELL, price=99_000_000, qty=500))
    usd_before = {account: custodied.total(account, "USD") for account in (1, 2)}
    events = custodied.ok(MatureInstrument(symbol=BILL), ts=HOUR_US)  # long before maturity
    assert [e.reason for e in events if isinstance(e, OrderCanceled)] == [CancelReason.MATURITY]
    matured = [e for e in events if isinstance(e, InstrumentMatured)]
    assert [(m.holders, m.face_total, m.paid_total) for m in matured] == [(2, 3_000, 3_000 * USD)]
    assert custodied.total(1, "USD") - usd_before[1] == 2_000 * USD
    assert custodied.total(2, "USD") - usd_before[2] == 1_000 * USD
    assert custodied.venue.markets[BILL].status is InstrumentStatus.CANCEL_ONLY
    assert custodied.refused(MatureInstrument(symbol=BILL)) is ErrorCode.INSTRUMENT_MATURED
    assert custodied.refused(Deposit(account=1, asset="TB-X", amount=1)) is (
        ErrorCode.ASSET_MATURED
    )
    later = custodied.ok(AdvanceClock(), ts=MATURITY_US)  # the date comes: nothing more
    assert not any(isinstance(e, InstrumentMatured) for e in later)


def test_only_a_listed_bill_can_be_matured(custodied: Custodied) -> None:
    custodied.ok(ListAsset(code="AAPLx", scale=6))
    custodied.ok(ListInstrument(spec=make_spec()))
    assert custodied.refused(MatureInstrument(symbol="NOPE")) is ErrorCode.UNKNOWN_SYMBOL
    assert custodied.refused(MatureInstrument(symbol="AAPLx-USD")) is ErrorCode.BAD_PARAM


def test_an_early_maturity_survives_a_snapshot(custodied: Custodied) -> None:
    from engine import snapshot

    list_bill(custodied)
    custodied.ok(MatureInstrument(symbol=BILL), ts=HOUR_US)
    restored = snapshot.restore(snapshot.decode(snapshot.encode(snapshot.capture(custodied.venue))))
    assert restored.state_hash() == custodied.venue.state_hash()
    custodied.venue = restored
    assert custodied.refused(Deposit(account=1, asset="TB-X", amount=1)) is (
        ErrorCode.ASSET_MATURED
    )
    later = custodied.ok(AdvanceClock(), ts=MATURITY_US)
    assert not any(isinstance(e, InstrumentMatured) for e in later)


def test_a_short_balance_is_refused_with_what_is_needed_and_available(
    custodied: Custodied,
) -> None:
    list_bill(custodied)
    custodied.ok(Deposit(account=1, asset="USD", amount=100 * USD))
    buy = PlaceOrder(account=1, symbol=BILL, side=Side.BUY, price=98_676_708, qty=1_000)
    events = custodied.do(buy)
    assert isinstance(events[0], CommandRejected)
    assert events[0].reason is ErrorCode.INSUFFICIENT_BALANCE and events[0].asset == "USD"
    # 1,000 face at 98.676708 per 100 costs 986.767080 USD; 100 USD is available.
    assert events[0].facts == (("needed", 986_767_080, 6), ("available", 100 * USD, 6))
    events = custodied.do(RequestWithdrawal(account=1, asset="USD", amount=101 * USD))
    assert isinstance(events[0], CommandRejected) and events[0].asset == "USD"
    assert events[0].facts == (("needed", 101 * USD, 6), ("available", 100 * USD, 6))


def test_a_short_withdrawal_says_what_is_available_and_asked_in_decimals(
    custodied: Custodied,
) -> None:
    """The message was the ledger's `account 1 lacks 101000000 USD`: integer units, and the
    amount asked rather than what is missing. Its facts are unchanged (wire compatible)."""
    custodied.ok(Deposit(account=1, asset="USD", amount=100 * USD))
    events = custodied.do(RequestWithdrawal(account=1, asset="USD", amount=101 * USD))
    assert isinstance(events[0], CommandRejected)
    assert events[0].detail == "account 1 has 100.000000 USD available, 101.000000 asked"
    assert events[0].facts == (("needed", 101 * USD, 6), ("available", 100 * USD, 6))


def test_a_withdrawal_refused_where_there_is_no_balance_changes_nothing(
    custodied: Custodied,
) -> None:
    """The finding: reading what is available for the refusal's facts created an empty
    balance row for an account that had never held the asset, so a refusal changed the
    ledger image and the state hash."""
    venue = custodied.venue
    assert venue.ledger is not None
    rows, state = dict(venue.ledger.balances), venue.state_hash()
    events = custodied.do(RequestWithdrawal(account=1, asset="USD", amount=1), ts=venue.ts_us)
    assert isinstance(events[0], CommandRejected)
    assert events[0].reason is ErrorCode.INSUFFICIENT_BALANCE
    assert events[0].facts == (("needed", 1, 6), ("available", 0, 6))
    assert dict(venue.ledger.balances) == rows and (1, "USD") not in rows
    assert venue.state_hash() == state


def test_an_attestation_as_of_milliseconds_is_named_as_such(custodied: Custodied) -> None:
    now_us = 1_764_000_000_000_000
    attest = AttestReserves(asset="USD", amount=USD, as_of_us=now_us // 1_000)
    events = custodied.do(attest, ts=now_us)
    assert isinstance(events[0], CommandRejected) and events[0].reason is ErrorCode.BAD_PARAM
    assert "looks like milliseconds; as_of is in microseconds" in events[0].detail
    custodied.ok(AttestReserves(asset="USD", amount=USD, as_of_us=now_us))


def test_an_attestation_as_of_seconds_is_still_taken_by_the_engine_as_it_was(
    custodied: Custodied,
) -> None:
    """An as_of in seconds (10 digits) is a statement of 1970 to the engine, as before session
    36: the gateway refuses it (tests/gateway/test_wire.py), the engine does not, so a journal
    holding one acknowledged replays as it ran (the lead's second review of session 36)."""
    now_us = 1_764_000_000_000_000
    custodied.ok(AttestReserves(asset="USD", amount=USD, as_of_us=now_us // 1_000_000), ts=now_us)


def test_an_attestation_as_of_the_future_is_refused_and_changes_nothing(
    custodied: Custodied,
) -> None:
    """An as_of ahead of the command's time would keep the reserves fresh past the staleness
    bound and refuse every true attestation after it (an older as_of): refused, unless it is
    no more ahead than a clock's skew."""
    now_us = 1_764_000_000_000_000
    assert custodied.venue.ledger is not None
    attestations = dict(custodied.venue.ledger.attestations)
    ahead = AttestReserves(asset="USD", amount=USD, as_of_us=now_us + AS_OF_AHEAD_MAX_US + 1)
    events = custodied.do(ahead, ts=now_us)
    assert isinstance(events[0], CommandRejected) and events[0].reason is ErrorCode.BAD_PARAM
    assert "is in the future" in events[0].detail
    assert custodied.venue.ledger.attestations == attestations
    skewed = AttestReserves(asset="USD", amount=USD, as_of_us=now_us + AS_OF_AHEAD_MAX_US)
    custodied.ok(skewed, ts=now_us + 1)


@pytest.mark.parametrize("code", ["USD ", "line\nbreak", "ÄÖ", "a b"])
def test_an_asset_code_is_printable_ascii_without_spaces(custodied: Custodied, code: str) -> None:
    assert custodied.refused(ListAsset(code=code, scale=0)) is ErrorCode.BAD_PARAM
    assert custodied.venue.ledger is not None and code not in custodied.venue.ledger.assets


def test_an_account_name_is_printable(custodied: Custodied) -> None:
    """`venue ledger balances` prints one row per balance with the account's name: a name
    holding a line break forged rows of that report."""
    forged = "x\n2 b                        USD             1000000.000000"
    assert (
        custodied.refused(OpenAccount(account=3, name=forged, kyc_approved=True, jurisdiction="DE"))
        is ErrorCode.BAD_PARAM
    )
    assert custodied.venue.ledger is not None and 3 not in custodied.venue.ledger.participants
    for invisible in ("Zoë\u00a0Fund", "Zoë\u200bFund", "Zoë\tFund"):  # look like "Zoë Fund"
        opening = OpenAccount(account=3, name=invisible, kyc_approved=True, jurisdiction="DE")
        assert custodied.refused(opening) is ErrorCode.BAD_PARAM
    custodied.ok(OpenAccount(account=3, name="Zoë Fund", kyc_approved=True, jurisdiction="DE"))


def test_a_case_twin_asset_is_refused_when_the_listing_asks_and_replays_when_it_did_not() -> None:
    """Two gateways of a cluster each check a listing against their own replica, so two case
    twins listed at once could both pass there: the engine checks again where listings are
    serialized when the command asks (`unique_by_case`, set by the wire). A journal written
    before the check (the field absent, False) replays as it was accepted."""
    custodied = Custodied()
    events = custodied.do(ListAsset(code="usd", scale=6, unique_by_case=True))
    assert len(events) == 1 and isinstance(events[0], CommandRejected), events
    assert events[0].reason is ErrorCode.ASSET_EXISTS
    assert events[0].detail == (
        "asset USD exists: usd differs from it only by case, and users could not tell the two apart"
    )
    ledger = custodied.venue.ledger
    assert ledger is not None and "usd" not in ledger.assets
    custodied.ok(ListAsset(code="EUR", scale=2, unique_by_case=True))  # a code of its own
    old = msgspec.msgpack.decode(
        msgspec.msgpack.encode({"type": "ListAsset", "ts_us": 0, "code": "usd", "scale": 6}),
        type=ListAsset,
    )
    assert not old.unique_by_case
    custodied.ok(old)
    assert "usd" in ledger.assets


def test_another_amount_as_of_the_latest_statements_moment_is_refused(
    custodied: Custodied,
) -> None:
    """The ledger store keeps every statement by (asset, as_of) and refuses a second amount
    for one it holds: the engine took it, and the venue died after answering, then at every
    start. Now refused here, changing nothing; the same statement again (a retry) is taken."""
    assert custodied.venue.ledger is not None
    attestations = dict(custodied.venue.ledger.attestations)
    state, ts = custodied.venue.state_hash(), custodied.venue.ts_us
    events = custodied.do(AttestReserves(asset="USD", amount=2 * USD, as_of_us=0))
    assert isinstance(events[0], CommandRejected) and events[0].reason is ErrorCode.BAD_PARAM
    assert events[0].detail == (
        "USD reserves as of 0 are recorded as 1000000.000000: a statement for the same"
        " moment cannot say otherwise (a corrected one needs a later as_of)"
    )
    assert custodied.venue.ledger.attestations == attestations
    custodied.venue.ts_us = ts  # the same venue at the same time hashes the same
    assert custodied.venue.state_hash() == state
    custodied.ok(AttestReserves(asset="USD", amount=1_000_000 * USD, as_of_us=0))
    custodied.ok(AttestReserves(asset="USD", amount=2 * USD, as_of_us=1))
