"""Corporate actions in the venue: cash dividends and splits, exact to the unit, replayable."""

from fractions import Fraction

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import snapshot
from engine.commands import (
    AmendOrder,
    AnyCommand,
    AttestReserves,
    CancelOrder,
    Command,
    ConfirmWithdrawal,
    Deposit,
    ListAsset,
    ListInstrument,
    OpenAccount,
    PayDividend,
    PlaceOrder,
    RequestWithdrawal,
    SetInstrumentStatus,
    SetOrderCaps,
    SplitShares,
    VoidWithdrawal,
)
from engine.enums import CancelReason, InstrumentKind, InstrumentStatus, Side
from engine.events import (
    CommandRejected,
    CorporateActionApplied,
    DividendPaid,
    Event,
    OrderAmended,
    OrderCanceled,
    OrderCapsSet,
    SharesSplit,
    WithdrawalConfirmed,
    WithdrawalRequested,
    WithdrawalRescaled,
    WithdrawalVoided,
)
from engine.reasons import ErrorCode
from engine.venue import Venue, VenueConfig
from settlement.ledger import Ledger
from settlement.transfers import ISSUANCE, ROUNDING
from tests.engine.conftest import make_spec

SYMBOL = "AAPLx-USD"
SHARE = 1_000_000  # AAPLx units per share (scale 6)
CENT = 1  # USD has scale 2
PAYER = 9
HOUR_US = 3_600_000_000


def setup_commands() -> list[Command]:
    """AAPLx (scale 6, step 0.001, min 0.001) against USD (cents); holders 1, 2 and 3."""
    spec = make_spec(
        qty_step=1_000, min_qty=1_000, quote_decimals=2, reference_price=10_001
    )  # 100.01 USD
    commands: list[Command] = [
        ListAsset(code="USD", scale=2),
        ListAsset(code="AAPLx", scale=6),
        ListInstrument(spec=spec),
        AttestReserves(asset="USD", amount=10_000_000 * 100, as_of_us=0),
        AttestReserves(asset="AAPLx", amount=1_000 * SHARE, as_of_us=0),
    ]
    for account in (1, 2, 3, 4, PAYER):
        commands.append(
            OpenAccount(account=account, name=f"a{account}", kyc_approved=True, jurisdiction="DE")
        )
    commands += [
        Deposit(account=1, asset="AAPLx", amount=1_234_567),
        Deposit(account=2, asset="AAPLx", amount=3_333_333),
        Deposit(account=3, asset="AAPLx", amount=10 * SHARE),
        Deposit(account=PAYER, asset="AAPLx", amount=5 * SHARE),  # treasury: no dividend
        Deposit(account=PAYER, asset="USD", amount=1_000 * 100),
        Deposit(account=4, asset="USD", amount=5_000 * 100),
    ]
    return commands


class Corp:
    def __init__(self) -> None:
        self.venue = Venue(VenueConfig(reserve_staleness_max_us=24 * HOUR_US), Ledger())
        self.commands: list[Command] = []
        for command in setup_commands():
            self.ok(command)

    def do(self, command: Command) -> list[Event]:
        command = msgspec.structs.replace(command, ts_us=self.venue.ts_us + 1)
        self.commands.append(command)
        events = self.venue.execute(command)
        self.venue.check_invariants()
        return events

    def ok(self, command: Command) -> list[Event]:
        events = self.do(command)
        assert not any(isinstance(e, CommandRejected) for e in events), events
        return events

    def refused(self, command: Command) -> CommandRejected:
        before = self.venue.state_hash()
        events = self.do(command)
        assert len(events) == 1 and isinstance(events[0], CommandRejected), events
        # nothing changed but the clock: the same venue at the same time hashes the same
        self.venue.ts_us -= 1
        assert self.venue.state_hash() == before
        self.venue.ts_us += 1
        return events[0]

    def total(self, account: int, asset: str) -> int:
        assert self.venue.ledger is not None
        return self.venue.ledger.balance(account, asset).total

    def held(self, account: int, asset: str) -> int:
        assert self.venue.ledger is not None
        return self.venue.ledger.balance(account, asset).held

    def halt(self) -> None:
        self.ok(SetInstrumentStatus(symbol=SYMBOL, status=InstrumentStatus.HALTED))


@pytest.fixture
def corp() -> Corp:
    return Corp()


def dividend(amount: int = 2_475, decimals: int = 4, payer: int = PAYER) -> PayDividend:
    return PayDividend(symbol=SYMBOL, payer=payer, amount=amount, amount_decimals=decimals)


# ----------------------------------------------------------------- dividends


def test_a_dividend_pays_floor_to_each_holder_and_the_residual_to_rounding(corp: Corp) -> None:
    corp.ok(PlaceOrder(account=3, symbol=SYMBOL, side=Side.SELL, price=10_100, qty=4 * SHARE))
    assert corp.held(3, "AAPLx") == 4 * SHARE  # held shares are paid on too
    events = corp.ok(dividend())  # 0.2475 USD a share
    applied = {e.account: e for e in events if isinstance(e, CorporateActionApplied)}
    # 1.234567 x 0.2475 = 0.3055... -> 30 cents; 3.333333 -> 0.8249... -> 82; 10 -> 2.475 -> 247
    assert {a: e.cash_received for a, e in applied.items()} == {1: 30, 2: 82, 3: 247}
    assert all(e.holding_before == e.holding_after for e in applied.values())
    assert PAYER not in applied  # the payer's own shares earn nothing
    paid = events[-1]
    assert isinstance(paid, DividendPaid)
    # 14.5679 shares x 0.2475 = 3.60555525 -> the payer provides 361 cents, 2 are residual
    assert (paid.provided, paid.paid_total, paid.residual) == (361, 359, 2)
    assert (paid.holders, paid.shares_total) == (3, 14_567_900)
    assert corp.total(PAYER, "USD") == 1_000 * 100 - 361
    assert corp.total(ROUNDING, "USD") == 2
    assert [corp.total(a, "USD") for a in (1, 2, 3)] == [30, 82, 247]
    assert corp.total(3, "AAPLx") == 10 * SHARE  # shares untouched


def test_dividend_refusals_change_nothing(corp: Corp) -> None:
    assert corp.refused(dividend(amount=0)).reason is ErrorCode.BAD_PARAM
    assert corp.refused(dividend(decimals=19)).reason is ErrorCode.BAD_PARAM
    unknown = PayDividend(symbol="NOPE", payer=PAYER, amount=1, amount_decimals=0)
    unknown_refused = corp.refused(unknown)
    assert unknown_refused.reason is ErrorCode.UNKNOWN_SYMBOL
    assert unknown_refused.detail == "unknown symbol 'NOPE'"  # a sentence, not the bare symbol
    assert corp.refused(dividend(payer=77)).reason is ErrorCode.UNKNOWN_ACCOUNT
    short = corp.refused(dividend(amount=100, decimals=0))  # 100 USD a share: 1,456.79 USD
    assert short.reason is ErrorCode.INSUFFICIENT_BALANCE
    assert "needs 1456.79" in short.detail and str(PAYER) in short.detail
    # the numbers every INSUFFICIENT_BALANCE carries, in the cash asset's units (cents)
    assert short.asset == "USD"
    assert short.facts == (("needed", 145_679, 2), ("available", 100_000, 2))


def test_a_dividend_payer_pays_from_available_cash_only(corp: Corp) -> None:
    corp.ok(PlaceOrder(account=PAYER, symbol=SYMBOL, side=Side.BUY, price=9_500, qty=10 * SHARE))
    # 950 USD of the payer's 1,000 are held for the buy: 50 USD left, the dividend of 4 USD a
    # share needs 58.28 USD; without the buy it is paid
    assert corp.refused(dividend(amount=4, decimals=0)).reason is ErrorCode.INSUFFICIENT_BALANCE
    corp.ok(CancelOrder(account=PAYER, order_id=1))
    assert isinstance(corp.ok(dividend(amount=4, decimals=0))[-1], DividendPaid)


# ----------------------------------------------------------------- splits


def book_orders(corp: Corp) -> None:
    corp.ok(PlaceOrder(account=3, symbol=SYMBOL, side=Side.SELL, price=10_001, qty=3_001_000))
    corp.ok(PlaceOrder(account=1, symbol=SYMBOL, side=Side.SELL, price=10_050, qty=1_000))
    corp.ok(PlaceOrder(account=4, symbol=SYMBOL, side=Side.BUY, price=9_999, qty=2_000_000))


def test_a_split_rescales_holdings_orders_reserves_and_the_band(corp: Corp) -> None:
    book_orders(corp)
    assert corp.refused(SplitShares(symbol=SYMBOL, ratio_new=3, ratio_old=2)).reason is (
        ErrorCode.INSTRUMENT_NOT_HALTED
    )
    corp.halt()
    events = corp.ok(SplitShares(symbol=SYMBOL, ratio_new=3, ratio_old=2))
    ledger = corp.venue.ledger
    assert ledger is not None
    # holdings: floor(h x 3 / 2)
    assert corp.total(1, "AAPLx") == 1_851_850  # 1,234,567 x 1.5 = 1,851,850.5
    assert corp.total(2, "AAPLx") == 4_999_999  # 3,333,333 x 1.5 = 4,999,999.5
    assert corp.total(3, "AAPLx") == 15 * SHARE
    assert corp.total(PAYER, "AAPLx") == 7_500_000
    supply_before = 1_234_567 + 3_333_333 + 15 * SHARE
    assert ledger.supply("AAPLx") == supply_before * 3 // 2 == 29_351_850
    assert corp.total(ROUNDING, "AAPLx") == 1  # the two half units, floored once
    assert ledger.attestations["AAPLx"].amount == 1_500 * SHARE
    assert all(line.covered for line in ledger.reserves_report())
    # orders: qty down to the 0.001 step, buys' prices down and sells' up to the cent
    orders = {o.order_id: o for o in corp.venue.orders.values()}
    sell3, sell1, buy4 = orders[1], orders[2], orders[3]
    assert (sell3.price, sell3.leaves_qty) == (6_668, 4_501_000)  # 100.01 / 1.5 = 66.673...
    assert (sell1.price, sell1.leaves_qty) == (6_700, 1_000)  # 1,500 units -> 1,000 (step)
    assert (buy4.price, buy4.leaves_qty) == (6_666, 3_000_000)  # 99.99 / 1.5 = 66.66
    assert corp.held(3, "AAPLx") == 4_501_000 and corp.held(1, "AAPLx") == 1_000
    assert corp.held(4, "USD") == 6_666 * 3  # 3 shares at 66.66
    market = corp.venue.markets[SYMBOL]
    assert market.reference_price == 6_667  # 100.01 / 1.5 = 66.673, down to the cent
    amended = [e for e in events if isinstance(e, OrderAmended)]
    assert [e.order_id for e in amended] == [3, 1, 2]  # bids, then asks, in priority
    applied = {
        e.account: (e.holding_before, e.holding_after)
        for e in events
        if isinstance(e, CorporateActionApplied)
    }
    assert applied[1] == (1_234_567, 1_851_850) and PAYER in applied
    summary = events[-1]
    assert isinstance(summary, SharesSplit)
    assert (summary.orders_amended, summary.orders_canceled, summary.holders) == (3, 0, 4)
    assert summary.supply_after == 29_351_850 and summary.rounding_holding == 1


def test_a_partly_filled_order_counts_its_fills_in_new_shares_after_a_split(corp: Corp) -> None:
    corp.ok(PlaceOrder(account=3, symbol=SYMBOL, side=Side.SELL, price=10_000, qty=3 * SHARE))
    corp.ok(PlaceOrder(account=4, symbol=SYMBOL, side=Side.BUY, price=10_000, qty=1 * SHARE))
    corp.halt()
    corp.ok(SplitShares(symbol=SYMBOL, ratio_new=2, ratio_old=1))
    sell = corp.venue.orders[1]
    assert (sell.price, sell.cum_qty, sell.leaves_qty, sell.qty) == (
        5_000,
        2 * SHARE,  # the 1 share it sold is 2 shares now
        4 * SHARE,
        6 * SHARE,
    )
    corp.ok(SetInstrumentStatus(symbol=SYMBOL, status=InstrumentStatus.OPEN))
    corp.ok(PlaceOrder(account=4, symbol=SYMBOL, side=Side.BUY, price=5_000, qty=2 * SHARE))
    # 1 old share at 100.00 and 2 new at 50.00: 4 new shares, all at 50.00 on average
    assert (sell.cum_qty, sell.leaves_qty) == (4 * SHARE, 2 * SHARE)
    assert sell.filled_value == 5_000 * 4 * SHARE
    corp.venue.check_invariants()


def test_a_split_counts_fills_down_to_the_step_so_an_amend_keeps_the_order_on_it(
    corp: Corp,
) -> None:
    """The finding: 0.001 share sold, split 3:2, counted as 0.0015 (off the 0.001 step),
    so an amend of the total qty (on the step) left the rest off it, and the next snapshot
    failed to restore (its invariant check). What was filled counts down to the step."""
    corp.ok(PlaceOrder(account=3, symbol=SYMBOL, side=Side.SELL, price=10_000, qty=3 * SHARE))
    corp.ok(PlaceOrder(account=4, symbol=SYMBOL, side=Side.BUY, price=10_000, qty=1_000))
    corp.halt()
    corp.ok(SplitShares(symbol=SYMBOL, ratio_new=3, ratio_old=2))
    sell = corp.venue.orders[1]
    assert (sell.cum_qty, sell.leaves_qty, sell.qty) == (1_000, 4_498_000, 4_499_000)
    corp.ok(SetInstrumentStatus(symbol=SYMBOL, status=InstrumentStatus.OPEN))
    corp.ok(AmendOrder(account=3, order_id=1, qty=2 * SHARE))
    assert (sell.cum_qty, sell.leaves_qty) == (1_000, 2 * SHARE - 1_000)
    image = snapshot.decode(snapshot.encode(snapshot.capture(corp.venue)))
    assert snapshot.restore(image).state_hash() == corp.venue.state_hash()


def test_a_reverse_split_cancels_orders_left_below_the_minimum(corp: Corp) -> None:
    book_orders(corp)
    corp.ok(RequestWithdrawal(account=2, asset="AAPLx", amount=1_000_000))
    corp.halt()
    events = corp.ok(SplitShares(symbol=SYMBOL, ratio_new=1, ratio_old=10))
    canceled = [e for e in events if isinstance(e, OrderCanceled)]
    # 0.001 share of account 1 becomes 0.0001: below the step and the minimum
    assert [(e.order_id, e.reason) for e in canceled] == [(2, CancelReason.CORPORATE_ACTION)]
    assert corp.held(1, "AAPLx") == 0
    assert any(isinstance(e, WithdrawalVoided) for e in events)
    assert corp.held(2, "AAPLx") == 0
    assert corp.total(1, "AAPLx") == 123_456
    assert corp.total(2, "AAPLx") == 333_333
    orders = corp.venue.orders
    assert (orders[1].price, orders[1].leaves_qty) == (100_010, 300_000)
    assert (orders[3].price, orders[3].leaves_qty) == (99_990, 200_000)
    assert corp.venue.markets[SYMBOL].reference_price == 100_010
    ledger = corp.venue.ledger
    assert ledger is not None
    assert ledger.supply("AAPLx") == 19_567_900 // 10
    assert corp.total(ROUNDING, "AAPLx") == 1_956_790 - (123_456 + 333_333 + 1_000_000 + 500_000)
    assert all(line.covered for line in ledger.reserves_report())
    assert isinstance(events[-1], SharesSplit) and events[-1].orders_canceled == 1


def withdraw(corp: Corp, account: int, amount: int) -> int:
    """A withdrawal as the gateway now enters it: held through corporate actions."""
    request = RequestWithdrawal(
        account=account, asset="AAPLx", amount=amount, held_through_actions=True
    )
    requested = corp.ok(request)[0]
    assert isinstance(requested, WithdrawalRequested)
    return requested.withdrawal.withdrawal_id


def test_a_pending_withdrawal_survives_a_split_in_new_shares(corp: Corp) -> None:
    """The finding: a split voided every pending withdrawal and gave its tokens back. Had
    the custodian already paid it out (the confirm not yet in), the holder kept the tokens
    as well, and the confirm only said `no pending withdrawal`. It now stays pending,
    rescaled to floor(amount x N / M); the confirm burns that, and a void releases it."""
    confirmed = withdraw(corp, 1, 1_000_001)  # 1.000001 share: 1.5000015 after 3:2
    voided = withdraw(corp, 2, 3_333_333)  # all of it: 4,999,999.5 after 3:2
    corp.halt()
    events = corp.ok(SplitShares(symbol=SYMBOL, ratio_new=3, ratio_old=2))
    assert not any(isinstance(e, WithdrawalVoided) for e in events)
    rescaled = [
        (e.withdrawal.withdrawal_id, e.amount_before, e.withdrawal.amount)
        for e in events
        if isinstance(e, WithdrawalRescaled)
    ]
    assert rescaled == [(confirmed, 1_000_001, 1_500_001), (voided, 3_333_333, 4_999_999)]
    # the holding floors whole (1,234,567 x 1.5), the withdrawal on its own: the fraction
    # of the withdrawal stays available, as the rest of an order rescaled to the step
    assert (corp.total(1, "AAPLx"), corp.held(1, "AAPLx")) == (1_851_850, 1_500_001)
    assert (corp.total(2, "AAPLx"), corp.held(2, "AAPLx")) == (4_999_999, 4_999_999)
    ledger = corp.venue.ledger
    assert ledger is not None
    supply = ledger.supply("AAPLx")
    done = corp.ok(ConfirmWithdrawal(withdrawal_id=confirmed))
    assert isinstance(done[0], WithdrawalConfirmed) and done[0].withdrawal.amount == 1_500_001
    assert (corp.total(1, "AAPLx"), corp.held(1, "AAPLx")) == (351_849, 0)
    assert ledger.supply("AAPLx") == supply - 1_500_001
    corp.ok(VoidWithdrawal(withdrawal_id=voided))
    assert (corp.total(2, "AAPLx"), corp.held(2, "AAPLx")) == (4_999_999, 0)
    assert not ledger.withdrawals
    assert all(line.covered for line in ledger.reserves_report())


def test_a_withdrawal_a_reverse_split_leaves_nothing_of_is_voided(corp: Corp) -> None:
    small = withdraw(corp, 1, 9)  # 9 units: 0.9 after 1:10
    kept = withdraw(corp, 2, 1_000_005)
    corp.halt()
    events = corp.ok(SplitShares(symbol=SYMBOL, ratio_new=1, ratio_old=10))
    assert [e.withdrawal.withdrawal_id for e in events if isinstance(e, WithdrawalVoided)] == [
        small
    ]
    assert corp.held(1, "AAPLx") == 0
    assert corp.held(2, "AAPLx") == 100_000
    ledger = corp.venue.ledger
    assert ledger is not None and list(ledger.withdrawals) == [kept]
    assert corp.refused(ConfirmWithdrawal(withdrawal_id=small)).reason is (
        ErrorCode.UNKNOWN_WITHDRAWAL
    )


def test_an_old_journals_withdrawal_is_voided_at_a_split_as_it_was(corp: Corp) -> None:
    """A withdrawal requested before the rule (no `held_through_actions` in its record)
    is voided at a split, as it was when its journal was written: it replays the same."""
    record = msgspec.msgpack.encode(
        {
            "type": "RequestWithdrawal",
            "ts_us": 0,
            "account": 2,
            "asset": "AAPLx",
            "amount": 1_000_000,
        }
    )
    old = msgspec.msgpack.decode(record, type=AnyCommand)  # type: ignore[valid-type]
    assert isinstance(old, RequestWithdrawal) and not old.held_through_actions
    corp.ok(old)
    withdrawal = corp.venue.ledger.withdrawals[1]  # type: ignore[union-attr]
    assert b"held_through_actions" not in msgspec.msgpack.encode(withdrawal)  # hashes as before
    corp.halt()
    events = corp.ok(SplitShares(symbol=SYMBOL, ratio_new=2, ratio_old=1))
    assert any(isinstance(e, WithdrawalVoided) for e in events)
    assert corp.held(2, "AAPLx") == 0


def lieu_split(ratio_new: int = 1, ratio_old: int = 10, payer: int = PAYER) -> SplitShares:
    """A split as the gateway now enters it: cash in lieu, every withdrawal held through."""
    return SplitShares(
        symbol=SYMBOL,
        ratio_new=ratio_new,
        ratio_old=ratio_old,
        rescale_caps=True,
        cash_in_lieu=True,
        payer=payer,
        withdrawals_held=True,
    )


def test_a_reverse_split_pays_cash_in_lieu_of_the_fractions_below_the_step(corp: Corp) -> None:
    """The finding: a 1:10 reverse split floored each holding to the unit, so holders were
    left dust below the step that no order can sell, and lost the rest to the rounding
    account for nothing. Each holding now floors to the step (0.001 share), the fraction is
    burned and paid for at the reference price (100.01 USD a share) by the payer."""
    book_orders(corp)
    withdraw(corp, 2, 1_000_500)  # 1.0005 share: 0.10005 after, kept whole and held
    usd_supply = corp.venue.ledger.supply("USD")  # type: ignore[union-attr]
    corp.halt()
    events = corp.ok(lieu_split())
    # the sell of 0.001 share rescales to 0.0001: canceled, its shares cashed with the rest
    canceled = [(e.order_id, e.reason) for e in events if isinstance(e, OrderCanceled)]
    assert canceled == [(2, CancelReason.CORPORATE_ACTION)]
    applied = {e.account: e for e in events if isinstance(e, CorporateActionApplied)}
    # 1: 0.1234567 new shares keep 0.123; 0.004567 old shares x 100.01 = 0.4567... USD
    # 2: 0.10005 withdrawn + (3.333333 - 1.0005) / 10 = 0.2332833 -> 0.233; 0.002833 old
    #    shares x 100.01 = 0.2833... USD
    assert {a: (e.holding_after, e.cash_received) for a, e in applied.items()} == {
        1: (123_000, 45),
        2: (333_050, 28),
        3: (1_000_000, 0),
        PAYER: (500_000, 0),
    }
    summary = events[-1]
    assert isinstance(summary, SharesSplit)
    # exact 0.45674567 + 0.28332833 = 0.740074 USD: the payer provides 0.75, 0.02 residual
    assert (summary.payer, summary.cash_asset) == (PAYER, "USD")
    assert (summary.cash_provided, summary.cash_paid, summary.cash_residual) == (75, 73, 2)
    assert (summary.supply_before, summary.supply_after) == (19_567_900, 1_956_050)
    assert summary.rounding_holding == 0  # the fractions left the supply, none kept
    assert [corp.total(a, "USD") for a in (1, 2, PAYER, ROUNDING)] == [45, 28, 99_925, 2]
    assert corp.venue.ledger.supply("USD") == usd_supply  # type: ignore[union-attr]
    assert (corp.total(2, "AAPLx"), corp.held(2, "AAPLx")) == (333_050, 100_050)
    assert corp.venue.orders[1].leaves_qty == corp.held(3, "AAPLx") == 300_000
    changed = {(e.account, e.asset) for e in events if type(e).__name__ == "BalanceChanged"}
    assert {(1, "USD"), (2, "USD"), (PAYER, "USD")} <= changed  # pushed to each
    ledger = corp.venue.ledger
    assert ledger is not None and all(line.covered for line in ledger.reserves_report())
    corp.ok(ConfirmWithdrawal(withdrawal_id=1))  # burns the rescaled amount, exactly
    assert corp.total(2, "AAPLx") == 233_000
    replayed_twice(corp)


def test_cash_in_lieu_refusals_say_what_is_due_and_change_nothing(corp: Corp) -> None:
    corp.halt()
    # 0.004567 and 0.003333 old shares at 100.01: 0.790079 USD, 0.80 rounded up
    missing = corp.refused(lieu_split(payer=0))
    assert (missing.reason, missing.detail) == (
        ErrorCode.BAD_PARAM,
        "the split leaves fractions below the step worth 0.80 USD in cash in lieu:"
        " name the account that pays it (payer)",
    )
    assert corp.refused(lieu_split(payer=77)).reason is ErrorCode.UNKNOWN_ACCOUNT
    short = corp.refused(lieu_split(payer=3))  # account 3 has no USD
    assert short.reason is ErrorCode.INSUFFICIENT_BALANCE
    assert short.detail == "payer 3 has 0.00 USD available, the cash in lieu needs 0.80"
    assert (short.asset, short.facts) == ("USD", (("needed", 80, 2), ("available", 0, 2)))
    # holdings off the step before (deposits of 1.234567 and 3.333333 shares) are brought
    # onto it by any split: a 2:1 pays for 0.000067 and 0.000333 old shares, 0.040004 USD
    forward = corp.refused(lieu_split(ratio_new=2, ratio_old=1, payer=0))
    assert "worth 0.05 USD in cash in lieu" in forward.detail


def test_an_old_withdrawal_stays_pending_through_a_split_entered_now(corp: Corp) -> None:
    """The carried finding: a withdrawal requested before withdrawals were held through
    corporate actions (no `held_through_actions`, as replayed from an old journal) was still
    voided by a split entered today. The custodian may have paid it out: the void gave the
    holder its tokens back on top. A split entered now (`withdrawals_held`) keeps it pending,
    rescaled; a split journaled before replays the void (test above)."""
    old = RequestWithdrawal(account=2, asset="AAPLx", amount=1_000_000)
    assert not old.held_through_actions
    corp.ok(old)
    corp.halt()
    events = corp.ok(lieu_split(ratio_new=2, ratio_old=1))
    assert not any(isinstance(e, WithdrawalVoided) for e in events)
    assert [
        (e.amount_before, e.withdrawal.amount) for e in events if isinstance(e, WithdrawalRescaled)
    ] == [(1_000_000, 2_000_000)]
    assert corp.held(2, "AAPLx") == 2_000_000
    corp.ok(ConfirmWithdrawal(withdrawal_id=1))
    assert corp.total(2, "AAPLx") == 4_666_000  # 6.666666 - 2, floored to the step


def test_a_split_scales_the_max_qty_cap_so_a_resting_order_can_be_repriced(
    corp: Corp,
) -> None:
    """The finding: after a 2:1 split an order at the cap held twice the cap's shares, and
    any amend of it (a reprice) was refused ABOVE_MAX_QTY. The cap now scales with the
    shares, down to the step; `max_notional`, cash, stays."""
    corp.ok(SetOrderCaps(symbol=SYMBOL, max_qty=3 * SHARE, max_notional=1_000_000 * 100))
    corp.ok(PlaceOrder(account=3, symbol=SYMBOL, side=Side.SELL, price=10_001, qty=3 * SHARE))
    corp.halt()
    events = corp.ok(SplitShares(symbol=SYMBOL, ratio_new=2, ratio_old=1, rescale_caps=True))
    caps = [e for e in events if isinstance(e, OrderCapsSet)]
    assert [(e.symbol, e.max_qty, e.max_notional) for e in caps] == [
        (SYMBOL, 6 * SHARE, 1_000_000 * 100)
    ]
    market = corp.venue.markets[SYMBOL]
    assert (market.max_qty, market.spec.max_qty) == (6 * SHARE, 6 * SHARE)
    corp.ok(SetInstrumentStatus(symbol=SYMBOL, status=InstrumentStatus.OPEN))
    corp.ok(AmendOrder(account=3, order_id=1, price=5_002))
    assert corp.venue.orders[1].qty == 6 * SHARE
    above = PlaceOrder(account=3, symbol=SYMBOL, side=Side.SELL, price=5_002, qty=6_001_000)
    assert corp.refused(above).reason is ErrorCode.ABOVE_MAX_QTY


def test_a_reverse_split_scales_the_cap_down_to_the_step_and_not_below_the_minimum(
    corp: Corp,
) -> None:
    corp.ok(SetOrderCaps(symbol=SYMBOL, max_qty=3_337_000))
    corp.halt()
    corp.ok(SplitShares(symbol=SYMBOL, ratio_new=1, ratio_old=3, rescale_caps=True))
    assert corp.venue.markets[SYMBOL].max_qty == 1_112_000  # 1,112,333.3 down to 0.001
    corp.ok(SetOrderCaps(symbol=SYMBOL, max_qty=1_000))
    corp.ok(SplitShares(symbol=SYMBOL, ratio_new=1, ratio_old=1_000, rescale_caps=True))
    assert corp.venue.markets[SYMBOL].max_qty == 1_000  # the minimum: 0 would lift the cap


def test_an_old_journals_split_leaves_the_caps_as_they_were(corp: Corp) -> None:
    corp.ok(SetOrderCaps(symbol=SYMBOL, max_qty=3 * SHARE))
    corp.halt()
    events = corp.ok(SplitShares(symbol=SYMBOL, ratio_new=2, ratio_old=1))
    assert not any(isinstance(e, OrderCapsSet) for e in events)
    assert corp.venue.markets[SYMBOL].max_qty == 3 * SHARE
    # no cash in lieu either: each holding floored to the unit, the rest the rounding
    # account's; its outcome (kept for a resend, snapshotted) encodes as it did before
    assert corp.total(1, "AAPLx") == 2_469_134 and corp.total(ROUNDING, "AAPLx") == 0
    summary = events[-1]
    assert isinstance(summary, SharesSplit) and summary.cash_asset == ""
    assert b"cash" not in msgspec.msgpack.encode(summary)


def test_a_reverse_split_that_prices_one_lot_above_the_cap_is_refused(corp: Corp) -> None:
    """A reverse split raises the reference price (and the band's low) as
    `admin.set_reference_price` may: one lot above `max_notional` after it would leave every
    order refused. Refused as that price change is, unless journaled before the check."""
    corp.ok(SetOrderCaps(symbol=SYMBOL, max_notional=10 * CENT, lot_checked=True))  # lot: 9.001
    corp.halt()
    reverse = SplitShares(symbol=SYMBOL, ratio_new=1, ratio_old=2, rescale_caps=True)
    refused = corp.refused(msgspec.structs.replace(reverse, lot_checked=True))
    assert refused.reason is ErrorCode.BAD_PARAM
    assert "after the split" in refused.detail and SYMBOL in refused.detail
    assert "0.19, the smallest cap that allows one lot" in refused.detail
    corp.ok(SetOrderCaps(symbol=SYMBOL, max_notional=19 * CENT, lot_checked=True))
    corp.ok(msgspec.structs.replace(reverse, lot_checked=True))  # the cap raised first
    assert corp.venue.markets[SYMBOL].reference_price == 20_002


def test_an_old_journals_reverse_split_below_the_cap_replays_as_accepted(corp: Corp) -> None:
    corp.ok(SetOrderCaps(symbol=SYMBOL, max_notional=10 * CENT, lot_checked=True))
    corp.halt()
    corp.ok(SplitShares(symbol=SYMBOL, ratio_new=1, ratio_old=2, rescale_caps=True))


def test_a_statement_dated_before_a_split_is_refused_after_it(corp: Corp) -> None:
    """The finding: after a 1:10 reverse split the custodian holds 100 new shares, and the
    venue's rescaled attestation says so; its statement as of a moment before the split (in
    old shares: 1,000) still came in after it, and was taken as 1,000 new shares, so 900
    shares minted against no reserves. A statement dated before the latest split of its
    asset counts old shares: refused, changing nothing. One dated at the split or later is
    taken."""
    corp.halt()
    corp.ok(SplitShares(symbol=SYMBOL, ratio_new=1, ratio_old=10))
    split_us = corp.venue.ts_us
    ledger = corp.venue.ledger
    assert ledger is not None
    assert ledger.attestations["AAPLx"].amount == 100 * SHARE
    old_shares = AttestReserves(
        asset="AAPLx", amount=1_000 * SHARE, as_of_us=split_us - 1, split_checked=True
    )
    refused = corp.refused(old_shares)
    assert refused.reason is ErrorCode.BAD_PARAM
    assert refused.detail == (
        f"AAPLx was split at {split_us}: a statement as of {split_us - 1}, before the split,"
        " counts its old shares (attest one as of the split or later)"
    )
    assert ledger.attestations["AAPLx"].amount == 100 * SHARE
    supply = ledger.supply("AAPLx")
    over = Deposit(account=1, asset="AAPLx", amount=100 * SHARE - supply + 1)
    assert corp.refused(over).reason is ErrorCode.RESERVES_EXCEEDED
    corp.ok(AttestReserves(asset="AAPLx", amount=100 * SHARE, as_of_us=split_us))


def test_a_statement_dated_before_a_split_journaled_before_the_check_replays_as_taken(
    corp: Corp,
) -> None:
    """A journal written before statements dated before a split were refused holds such a
    statement as taken (the answer said so, and later mints may rest on it): its record,
    which lacks `split_checked`, must replay as it was accepted, or the replayed venue
    would part from the answers given and the transfers stored."""
    corp.halt()
    corp.ok(SplitShares(symbol=SYMBOL, ratio_new=1, ratio_old=10))
    split_us = corp.venue.ts_us
    record = {"type": "AttestReserves", "ts_us": 0, "asset": "AAPLx"}
    record |= {"amount": 1_000 * SHARE, "as_of_us": split_us - 1}
    old = msgspec.msgpack.decode(msgspec.msgpack.encode(record), type=AttestReserves)
    assert not old.split_checked
    corp.ok(old)
    ledger = corp.venue.ledger
    assert ledger is not None and ledger.attestations["AAPLx"].amount == 1_000 * SHARE


def test_split_refusals_change_nothing(corp: Corp) -> None:
    corp.halt()
    for new, old in ((1, 1), (0, 2), (2, 0), (1_001, 1)):
        refused = corp.refused(SplitShares(symbol=SYMBOL, ratio_new=new, ratio_old=old))
        assert refused.reason is ErrorCode.BAD_PARAM
    unknown = SplitShares(symbol="NOPE", ratio_new=2, ratio_old=1)
    assert corp.refused(unknown).reason is ErrorCode.UNKNOWN_SYMBOL


def test_a_tbill_takes_no_corporate_actions(corp: Corp) -> None:
    corp.ok(ListAsset(code="TB-X", scale=0))
    bill = make_spec(
        symbol="TB-X-USD",
        kind=InstrumentKind.TBILL,
        base="TB-X",
        price_decimals=6,
        qty_decimals=0,
        quote_decimals=2,
        reference_price=98_676_708,
        maturity_us=1_000 * HOUR_US,
    )
    corp.ok(ListInstrument(spec=bill))
    split = SplitShares(symbol="TB-X-USD", ratio_new=2, ratio_old=1)
    assert corp.refused(split).reason is ErrorCode.BAD_PARAM
    pay = PayDividend(symbol="TB-X-USD", payer=PAYER, amount=1, amount_decimals=0)
    assert corp.refused(pay).reason is ErrorCode.BAD_PARAM


# ----------------------------------------------------------------- determinism


def corporate_history(corp: Corp) -> None:
    book_orders(corp)
    corp.ok(dividend())
    corp.halt()
    corp.ok(SplitShares(symbol=SYMBOL, ratio_new=3, ratio_old=2))
    corp.ok(SplitShares(symbol=SYMBOL, ratio_new=1, ratio_old=7))
    corp.ok(lieu_split(ratio_new=2, ratio_old=3))
    corp.ok(SetInstrumentStatus(symbol=SYMBOL, status=InstrumentStatus.OPEN))
    corp.ok(dividend(amount=1_234_567, decimals=7))


def replayed_twice(corp: Corp) -> list[Venue]:
    """`corp`'s commands through the journal's encoding, then through two new venues: the
    two runs' events are equal, and both state hashes equal the live venue's."""
    journal = msgspec.msgpack.encode(corp.commands)
    decoded = msgspec.msgpack.decode(journal, type=list[AnyCommand])  # type: ignore[valid-type]
    assert decoded == corp.commands
    venues = [Venue(corp.venue.config, Ledger()) for _ in range(2)]
    runs = [[venue.execute(command) for command in decoded] for venue in venues]
    assert runs[0] == runs[1]
    assert venues[0].state_hash() == venues[1].state_hash() == corp.venue.state_hash()
    return venues


def test_replaying_the_journal_gives_the_same_events_and_hash(corp: Corp) -> None:
    corporate_history(corp)
    replayed_twice(corp)


def test_a_snapshot_after_a_split_restores_the_same_venue(corp: Corp) -> None:
    corporate_history(corp)
    image = snapshot.decode(snapshot.encode(snapshot.capture(corp.venue)))
    restored = snapshot.restore(image)
    assert restored.state_hash() == corp.venue.state_hash()
    follow = PlaceOrder(
        ts_us=corp.venue.ts_us + 1,
        account=4,
        symbol=SYMBOL,
        side=Side.BUY,
        price=corp.venue.markets[SYMBOL].reference_price,
        qty=1_000_000,
    )
    assert restored.execute(follow) == corp.venue.execute(follow)
    assert corp.total(ISSUANCE, "AAPLx") == -corp.venue.ledger.supply("AAPLx")  # type: ignore[union-attr]


# ----------------------------------------------------------------- property


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    orders=st.lists(
        st.tuples(
            st.sampled_from([1, 2, 3, 4]),
            st.booleans(),
            st.integers(9_001, 11_000),
            st.integers(1, 3_000),
        ),
        max_size=25,
    ),
    ratios=st.lists(st.tuples(st.integers(1, 12), st.integers(1, 12)), min_size=1, max_size=3),
    withdrawals=st.lists(
        st.tuples(st.sampled_from([1, 2, 3]), st.integers(1, 2_000_000)), max_size=4
    ),
    lieu=st.booleans(),
)
def test_any_book_survives_any_splits_exactly(
    orders: list[tuple[int, bool, int, int]],
    ratios: list[tuple[int, int]],
    withdrawals: list[tuple[int, int]],
    lieu: bool,
) -> None:
    """Random resting orders and pending withdrawals, then splits: invariants (holds equal
    reservations, books uncrossed, every asset sums to zero) hold after each, reserves stay
    covered, and each surviving order's price and quantity, and each withdrawal's amount,
    follow the documented rule. With cash in lieu, each holding but what its withdrawals
    hold is on the step, and the cash asset's supply does not move."""
    corp = Corp()
    for account, is_buy, price, lots in orders:
        side = Side.BUY if is_buy else Side.SELL
        corp.do(
            PlaceOrder(account=account, symbol=SYMBOL, side=side, price=price, qty=lots * 1_000)
        )
    for account, amount in withdrawals:
        corp.do(
            RequestWithdrawal(
                account=account, asset="AAPLx", amount=amount, held_through_actions=True
            )
        )
    corp.halt()
    ledger = corp.venue.ledger
    assert ledger is not None
    for new, old in ratios:
        if new == old:
            continue
        before = {o.order_id: (o.side, o.price, o.leaves_qty) for o in corp.venue.orders.values()}
        pending = {w.withdrawal_id: w.amount for w in ledger.withdrawals.values()}
        usd_supply = ledger.supply("USD")
        command = SplitShares(symbol=SYMBOL, ratio_new=new, ratio_old=old)
        events = corp.ok(lieu_split(new, old) if lieu else command)
        rescaled = {i: amount * new // old for i, amount in pending.items()}
        assert {i: w.amount for i, w in ledger.withdrawals.items()} == {
            i: amount for i, amount in rescaled.items() if amount
        }
        for order in corp.venue.orders.values():
            side, price, leaves = before[order.order_id]
            assert order.leaves_qty == leaves * new // old // 1_000 * 1_000
            exact = Fraction(price * old, new)
            assert (order.price <= exact) if side is Side.BUY else (order.price >= exact)
            assert abs(order.price - exact) < 1
        canceled = {e.order_id for e in events if isinstance(e, OrderCanceled)}
        assert canceled | set(corp.venue.orders) == set(before)
        assert all(line.covered for line in ledger.reserves_report())
        assert ledger.supply("USD") == usd_supply
        if lieu:
            withdrawn = {account: 0 for account in (1, 2, 3, PAYER)}
            for withdrawal in ledger.withdrawals.values():
                withdrawn[withdrawal.account] += withdrawal.amount
            assert all((corp.total(a, "AAPLx") - w) % 1_000 == 0 for a, w in withdrawn.items())
