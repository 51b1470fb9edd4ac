"""Share splits in the venue (`engine.splits`): holdings, resting orders, withdrawals, caps,
reference prices and cash in lieu rescaled exactly, refusals that change nothing."""

from fractions import Fraction

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import snapshot
from engine.commands import (
    AmendOrder,
    AnyCommand,
    AttestReserves,
    ConfirmWithdrawal,
    Deposit,
    PlaceOrder,
    RequestWithdrawal,
    SetInstrumentStatus,
    SetOrderCaps,
    SplitShares,
    VoidWithdrawal,
)
from engine.enums import CancelReason, InstrumentStatus, Side
from engine.events import (
    CorporateActionApplied,
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
from settlement.transfers import ROUNDING
from tests.engine.test_corporate import (
    CENT,
    PAYER,
    SHARE,
    SYMBOL,
    Corp,
    book_orders,
    lieu_split,
    replayed_twice,
)


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
