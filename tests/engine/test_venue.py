"""The Venue state machine: matching, order types, self-trade prevention, amend, time, status."""

import collections
import random
from typing import Any

import msgspec
import pytest

from bench import workloads
from engine.closed import SEAL_EVERY_US
from engine.commands import (
    AdvanceClock,
    AmendOrder,
    AmendPair,
    AnyCommand,
    ArmDeadMan,
    CancelAll,
    CancelOrder,
    ListInstrument,
    MatureInstrument,
    PlaceOrder,
    RefuseCancelOnDisconnect,
    SetCancelOnDisconnect,
    SetInstrumentStatus,
    SetOrderCaps,
    SetReferencePrice,
    ShiftDeadManDeadlines,
)
from engine.enums import (
    CancelReason,
    InstrumentStatus,
    Liquidity,
    OrderStatus,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from engine.events import (
    CancelOnDisconnectSet,
    CommandRejected,
    DeadManArmed,
    DeadManTriggered,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderCapsSet,
    OrderExpired,
    SelfTradePrevented,
    TradeExecuted,
)
from engine.reasons import (
    ARM_DEAD_MAN_PRECEDENCE,
    SET_CANCEL_ON_DISCONNECT_PRECEDENCE,
    SHIFT_DEAD_MAN_DEADLINES_PRECEDENCE,
    ErrorCode,
)
from engine.venue import DEAD_MAN_TIMEOUT_MS_MAX, Venue, VenueConfig
from tests.engine.conftest import SYMBOL, Harness, kinds, make_spec

BUY, SELL = Side.BUY, Side.SELL


def trades(events: list) -> list[TradeExecuted]:
    return [e for e in events if isinstance(e, TradeExecuted)]


def rejection(events: list) -> ErrorCode:
    assert len(events) == 1 and isinstance(events[0], CommandRejected), events
    return events[0].reason


def test_price_time_priority_and_maker_price(harness: Harness) -> None:
    harness.place(1, SELL, 10_010, 100)  # order 1
    harness.place(2, SELL, 10_000, 100)  # order 2: better price
    harness.place(3, SELL, 10_000, 100)  # order 3: same price, later
    events = harness.place(4, BUY, 10_020, 250)
    fills = trades(events)
    assert [(t.maker_order_id, t.price, t.qty) for t in fills] == [
        (2, 10_000, 100),
        (3, 10_000, 100),
        (1, 10_010, 50),
    ]
    assert [t.trade_id for t in fills] == [1, 2, 3]
    last = fills[-1]
    assert last.taker_status is OrderStatus.FILLED and last.taker_cum_qty == 250
    assert last.maker_status is OrderStatus.PARTIALLY_FILLED and last.maker_leaves_qty == 50
    assert harness.venue.book(SYMBOL).best_ask() == (10_010, 50)


def test_accepted_comes_before_trades_and_rest_rests(harness: Harness) -> None:
    harness.place(1, SELL, 10_000, 100)
    events = harness.place(2, BUY, 10_000, 300)
    assert kinds(events) == ["OrderAccepted", "TradeExecuted"]
    assert harness.venue.book(SYMBOL).best_bid() == (10_000, 200)
    order = harness.venue.orders[2]
    assert order.status is OrderStatus.PARTIALLY_FILLED and order.leaves_qty == 200


def test_ioc_rest_is_canceled(harness: Harness) -> None:
    harness.place(1, SELL, 10_000, 100)
    events = harness.place(2, BUY, 10_000, 300, tif=TimeInForce.IOC)
    assert kinds(events) == ["OrderAccepted", "TradeExecuted", "OrderCanceled"]
    canceled = events[-1]
    assert isinstance(canceled, OrderCanceled)
    assert canceled.reason is CancelReason.IOC_REST and canceled.canceled_qty == 200
    assert harness.venue.book(SYMBOL).best_bid() is None


def test_fok_fills_all_or_leaves_the_book_untouched(harness: Harness) -> None:
    harness.place(1, SELL, 10_000, 100)
    harness.place(2, SELL, 10_001, 100)
    assert rejection(harness.place(3, BUY, 10_001, 201, tif=TimeInForce.FOK)) is (
        ErrorCode.FOK_NOT_FILLABLE
    )
    assert harness.venue.book(SYMBOL).depth(5)[1] == [(10_000, 100), (10_001, 100)]
    events = harness.place(3, BUY, 10_001, 200, tif=TimeInForce.FOK)
    assert sum(t.qty for t in trades(events)) == 200


def test_fok_counts_own_orders_by_stp_mode(harness: Harness) -> None:
    harness.place(1, SELL, 10_000, 100)  # own order first in the queue
    harness.place(2, SELL, 10_000, 100)
    fok = dict(tif=TimeInForce.FOK)
    assert rejection(harness.place(1, BUY, 10_000, 100, **fok)) is ErrorCode.FOK_NOT_FILLABLE
    events = harness.place(1, BUY, 10_000, 100, stp=SelfTradePrevention.EXPIRE_MAKER, **fok)
    assert kinds(events) == ["OrderAccepted", "SelfTradePrevented", "TradeExecuted"]


def test_post_only_rejects_instead_of_taking(harness: Harness) -> None:
    harness.place(1, SELL, 10_000, 100)
    assert rejection(harness.place(2, BUY, 10_000, 1, post_only=True)) is (
        ErrorCode.POST_ONLY_WOULD_TAKE
    )
    assert kinds(harness.place(2, BUY, 9_999, 1, post_only=True)) == ["OrderAccepted"]


def test_market_order_stops_at_the_band(harness: Harness) -> None:
    harness.place(1, SELL, 10_500, 100)
    harness.place(1, SELL, 11_000, 100)  # the band's high
    harness.place(1, SELL, 11_001, 100, symbol=SYMBOL, post_only=False)  # refused: PRICE_BAND
    events = harness.do(
        PlaceOrder(
            account=2,
            symbol=SYMBOL,
            side=BUY,
            order_type=OrderType.MARKET,
            tif=TimeInForce.IOC,
            qty=1_000,
        )
    )
    assert [t.price for t in trades(events)] == [10_500, 11_000]
    assert isinstance(events[-1], OrderCanceled) and events[-1].canceled_qty == 800


def test_market_without_liquidity_is_refused(harness: Harness) -> None:
    market = PlaceOrder(
        account=2, symbol=SYMBOL, side=SELL, order_type=OrderType.MARKET, tif=TimeInForce.IOC, qty=5
    )
    assert rejection(harness.do(market)) is ErrorCode.MARKET_NO_LIQUIDITY
    harness.place(1, BUY, 8_999, 100)  # below the band's low: out of reach
    assert rejection(harness.do(market)) is ErrorCode.MARKET_NO_LIQUIDITY


def test_market_buy_by_quote_spends_at_most_the_budget(harness: Harness) -> None:
    harness.place(1, SELL, 10_000, 300_000)  # 0.3 share at 100.00
    harness.place(1, SELL, 10_050, 10_000_000)
    budget = 50_000_000  # 50 USD
    events = harness.do(
        PlaceOrder(
            account=2,
            symbol=SYMBOL,
            side=BUY,
            order_type=OrderType.MARKET,
            tif=TimeInForce.IOC,
            quote_qty=budget,
        )
    )
    fills = trades(events)
    # 30 USD buys 0.3 at 100.00; 20 USD buys floor(0.199004975) = 0.199004 at 100.50.
    assert [(t.price, t.qty) for t in fills] == [(10_000, 300_000), (10_050, 199_004)]
    spent = sum(t.price * t.qty for t in fills) // 100  # cents x 1e-6 shares -> 1e-6 USD
    assert spent <= budget and budget - spent < 10_050 // 100
    assert fills[-1].taker_status is OrderStatus.FILLED
    assert kinds(events)[-1] == "TradeExecuted"


def test_stp_expire_taker(harness: Harness) -> None:
    harness.place(1, SELL, 10_000, 100)
    harness.place(2, SELL, 10_001, 100)
    events = harness.place(1, BUY, 10_001, 50)
    assert kinds(events) == ["OrderAccepted", "SelfTradePrevented"]
    prevented = events[1]
    assert isinstance(prevented, SelfTradePrevented)
    assert prevented.order_id == 3 and prevented.liquidity is Liquidity.TAKER
    assert prevented.counter_order_id == 1 and prevented.prevented_qty == 50
    assert harness.venue.book(SYMBOL).best_ask() == (10_000, 100)


def test_stp_expire_maker_goes_on_matching(harness: Harness) -> None:
    harness.place(1, SELL, 10_000, 100)
    harness.place(2, SELL, 10_000, 100)
    events = harness.place(1, BUY, 10_000, 100, stp=SelfTradePrevention.EXPIRE_MAKER)
    assert kinds(events) == ["OrderAccepted", "SelfTradePrevented", "TradeExecuted"]
    assert events[1].order_id == 1 and events[1].liquidity is Liquidity.MAKER
    assert trades(events)[0].maker_order_id == 2
    assert harness.venue.book(SYMBOL).best_ask() is None


def test_stp_expire_both_and_none(harness: Harness) -> None:
    harness.place(1, SELL, 10_000, 100)
    events = harness.place(1, BUY, 10_000, 40, stp=SelfTradePrevention.EXPIRE_BOTH)
    assert [(e.order_id, e.liquidity) for e in events[1:]] == [
        (1, Liquidity.MAKER),
        (2, Liquidity.TAKER),
    ]
    harness.place(1, SELL, 10_000, 100)
    events = harness.place(1, BUY, 10_000, 40, stp=SelfTradePrevention.NONE)
    assert trades(events)[0].maker_account == trades(events)[0].taker_account == 1


def test_cancel_own_orders_only(harness: Harness) -> None:
    harness.place(1, BUY, 9_900, 100, cl_ord_id="mine")
    assert rejection(harness.do(CancelOrder(account=2, order_id=1))) is ErrorCode.UNKNOWN_ORDER
    assert rejection(harness.do(CancelOrder(account=2, cl_ord_id="mine"))) is (
        ErrorCode.UNKNOWN_ORDER
    )
    events = harness.do(CancelOrder(account=1, cl_ord_id="mine"))
    assert isinstance(events[0], OrderCanceled) and events[0].canceled_qty == 100
    assert rejection(harness.do(CancelOrder(account=1, order_id=1))) is ErrorCode.ORDER_NOT_OPEN
    assert rejection(harness.do(CancelOrder(account=2, order_id=1))) is ErrorCode.UNKNOWN_ORDER
    assert rejection(harness.do(CancelOrder(account=1, order_id=99))) is ErrorCode.UNKNOWN_ORDER
    assert rejection(harness.do(CancelOrder(account=1))) is ErrorCode.BAD_PARAM


def test_a_cancel_of_an_order_its_account_lacks_changes_nothing(harness: Harness) -> None:
    """An account with open orders of its own names another's order or an unknown client
    id: refused UNKNOWN_ORDER, and both orders rest as before (the refusal path of the
    cancel's one lookup through the account's index)."""
    harness.place(1, BUY, 9_900, 100, cl_ord_id="theirs")
    harness.place(2, BUY, 9_800, 100, cl_ord_id="mine")
    before = harness.venue._state()[1:]  # all but the clock, which every command moves
    for cancel in (
        CancelOrder(account=2, order_id=1),
        CancelOrder(account=2, cl_ord_id="theirs"),
        CancelOrder(account=2, order_id=3),
    ):
        assert rejection(harness.do(cancel)) is ErrorCode.UNKNOWN_ORDER
    assert harness.venue._state()[1:] == before
    assert list(harness.venue.account_orders) == [1, 2]
    assert [o.order_id for o in harness.venue.book(SYMBOL).bids.iter_orders()] == [1, 2]


def test_closed_order_memory_is_bounded() -> None:
    harness = Harness(VenueConfig(closed_orders_retained_max=10))
    for _ in range(25):
        harness.place(1, BUY, 9_900, 1)
        harness.do(CancelOrder(account=1, order_id=harness.venue.last_order_id))
    assert len(harness.venue.closed_orders) <= 10
    assert rejection(harness.do(CancelOrder(account=1, order_id=1))) is ErrorCode.UNKNOWN_ORDER
    assert rejection(harness.do(CancelOrder(account=1, order_id=25))) is ErrorCode.ORDER_NOT_OPEN


def test_the_clock_seals_what_cancels_stored_in_the_closed_order_memory() -> None:
    harness = Harness(VenueConfig(closed_orders_retained_max=10))
    for _ in range(25):
        harness.place(1, BUY, 9_900, 1)
        harness.do(CancelOrder(account=1, order_id=harness.venue.last_order_id))
    closed = harness.venue.closed_orders
    assert len(closed.filling) == 25  # a cancel stores its id; the clock seals
    later = harness.now() + SEAL_EVERY_US
    harness.do(CancelOrder(ts_us=later, account=1, order_id=25))  # not open: refused
    assert not closed.filling and len(closed) == 10
    assert [closed.owner(order_id) for order_id in (15, 16, 25)] == [None, 1, 1]


def test_duplicate_cl_ord_id_names_the_live_order(harness: Harness) -> None:
    harness.place(1, BUY, 9_900, 100, cl_ord_id="a")
    events = harness.place(1, BUY, 9_800, 100, cl_ord_id="a")
    assert rejection(events) is ErrorCode.DUPLICATE_CL_ORD_ID and events[0].order_id == 1
    assert kinds(harness.place(2, BUY, 9_800, 100, cl_ord_id="a")) == ["OrderAccepted"]
    harness.do(CancelOrder(account=1, order_id=1))
    assert kinds(harness.place(1, BUY, 9_800, 100, cl_ord_id="a")) == ["OrderAccepted"]


def test_amend_down_keeps_priority(harness: Harness) -> None:
    harness.place(1, BUY, 9_900, 100)
    harness.place(2, BUY, 9_900, 100)
    events = harness.do(AmendOrder(account=1, order_id=1, qty=60))
    amended = events[0]
    assert isinstance(amended, OrderAmended) and amended.priority_kept and amended.leaves_qty == 60
    level = harness.venue.book(SYMBOL).bids.best
    assert level is not None and list(level.orders) == [1, 2] and level.qty == 160


def test_amend_up_or_reprice_loses_priority(harness: Harness) -> None:
    harness.place(1, BUY, 9_900, 100)
    harness.place(2, BUY, 9_900, 100)
    events = harness.do(AmendOrder(account=1, order_id=1, qty=150))
    assert not events[0].priority_kept
    level = harness.venue.book(SYMBOL).bids.best
    assert level is not None and list(level.orders) == [2, 1]
    harness.do(AmendOrder(account=2, order_id=2, price=9_950))
    assert harness.venue.book(SYMBOL).depth(2)[0] == [(9_950, 100), (9_900, 150)]


def test_amend_that_crosses_trades_as_taker(harness: Harness) -> None:
    harness.place(1, SELL, 10_000, 100)
    harness.place(2, BUY, 9_900, 300)
    events = harness.do(AmendOrder(account=2, order_id=2, price=10_000))
    assert kinds(events) == ["OrderAmended", "TradeExecuted"]
    assert harness.venue.book(SYMBOL).best_bid() == (10_000, 200)


def test_amend_to_filled_quantity_completes_the_order(harness: Harness) -> None:
    harness.place(1, BUY, 10_000, 300)
    harness.place(2, SELL, 10_000, 100)
    events = harness.do(AmendOrder(account=1, order_id=1, qty=100))
    amended = events[0]
    assert isinstance(amended, OrderAmended)
    assert amended.status is OrderStatus.FILLED and amended.leaves_qty == 0
    assert harness.venue.book(SYMBOL).best_bid() is None and 1 not in harness.venue.orders


def test_amend_refusals(harness: Harness) -> None:
    harness.place(1, BUY, 9_900, 100, cl_ord_id="a", post_only=True)
    harness.place(1, BUY, 9_800, 100, cl_ord_id="b")
    harness.place(2, SELL, 10_000, 100)
    cases = [
        (AmendOrder(account=1, order_id=1, price=9_900), ErrorCode.AMEND_REJECTED),
        (AmendOrder(account=1, order_id=1, new_cl_ord_id="b"), ErrorCode.DUPLICATE_CL_ORD_ID),
        (AmendOrder(account=1, order_id=1, price=10_000), ErrorCode.POST_ONLY_WOULD_TAKE),
        (AmendOrder(account=1, order_id=1, price=11_001), ErrorCode.PRICE_BAND),
        (AmendOrder(account=2, order_id=1, price=9_901), ErrorCode.UNKNOWN_ORDER),
        (AmendOrder(account=1, order_id=1), ErrorCode.BAD_PARAM),
    ]
    for command, reason in cases:
        assert rejection(harness.do(command)) is reason, command
    harness.do(AmendOrder(account=1, cl_ord_id="a", new_cl_ord_id="c"))
    assert harness.venue.find_order(1, 0, "c") is harness.venue.orders[1]
    assert harness.venue.find_order(1, 0, "a") is None


def test_an_amend_read_at_another_instruments_units_is_refused(harness: Harness) -> None:
    """`AmendOrder.symbol` names the instrument the gateway read the price and qty at: an
    order on another one is not amended in those units (a batch's guess, a lagging replica).
    None (journals before it) is not checked; the order's own symbol amends as before."""
    harness.place(1, BUY, 9_900, 100, cl_ord_id="x")
    for by_id in (True, False):  # the fast path, and the checks one by one
        target: dict[str, Any] = {"order_id": 1} if by_id else {"cl_ord_id": "x"}
        events = harness.do(AmendOrder(account=1, qty=300, symbol="TB-X-USD", **target))
        (refused,) = events
        assert isinstance(refused, CommandRejected) and refused.reason is ErrorCode.BAD_PARAM
        assert refused.detail.startswith(f"the order is on {SYMBOL}, not TB-X-USD, whose")
        order = harness.venue.orders[1]
        assert refused.order_id == 1 and (order.price, order.qty, order.hold) == (9_900, 100, 0)
    amended = harness.do(AmendOrder(account=1, order_id=1, price=9_950, symbol=SYMBOL))[0]
    assert isinstance(amended, OrderAmended) and amended.price == 9_950
    amended = harness.do(AmendOrder(account=1, cl_ord_id="x", qty=120))[0]
    assert isinstance(amended, OrderAmended) and amended.qty == 120


def test_gtd_orders_expire_before_the_next_command(harness: Harness) -> None:
    now = harness.now()
    harness.place(1, SELL, 10_000, 100, tif=TimeInForce.GTD, expire_at_us=now + 10)
    harness.place(1, SELL, 10_001, 100, tif=TimeInForce.GTD, expire_at_us=now + 1_000)
    events = harness.do(
        PlaceOrder(ts_us=now + 10, account=2, symbol=SYMBOL, side=BUY, price=10_001, qty=100)
    )
    assert kinds(events) == ["OrderExpired", "OrderAccepted", "TradeExecuted"]
    assert isinstance(events[0], OrderExpired) and events[0].reason is CancelReason.GTD
    assert trades(events)[0].maker_order_id == 2
    harness.place(1, SELL, 10_001, 100, tif=TimeInForce.GTD, expire_at_us=now + 2_000)
    assert kinds(harness.do(AdvanceClock(ts_us=now + 2_000))) == ["OrderExpired"]
    events = harness.place(1, SELL, 1, 1, tif=TimeInForce.GTD, expire_at_us=now + 2_000)
    assert rejection(events) is ErrorCode.INVALID_EXPIRE_AT


def test_cancel_all_with_filters(harness: Harness) -> None:
    harness.place(1, BUY, 9_900, 1, tag="q")
    harness.place(1, SELL, 10_100, 1, tag="q")
    harness.place(1, SELL, 10_200, 1)
    harness.place(2, SELL, 10_200, 1, tag="q")
    events = harness.do(CancelAll(account=1, side=SELL, tag="q"))
    assert [e.order_id for e in events] == [2]
    events = harness.do(CancelAll(account=1))
    assert [e.order_id for e in events] == [1, 3]
    assert all(e.reason is CancelReason.MASS_CANCEL for e in events)
    assert set(harness.venue.orders) == {4}
    [unknown] = harness.do(CancelAll(account=1, symbol="NOPE"))
    assert isinstance(unknown, CommandRejected) and unknown.reason is ErrorCode.UNKNOWN_SYMBOL
    assert unknown.detail == "unknown symbol 'NOPE'"  # a sentence, not the bare symbol


def test_open_order_limit(make_harness) -> None:
    harness = make_harness(VenueConfig(open_orders_per_account_max=2))
    harness.place(1, BUY, 9_900, 1)
    harness.place(1, BUY, 9_900, 1)
    assert rejection(harness.place(1, BUY, 9_900, 1)) is ErrorCode.TOO_MANY_OPEN_ORDERS
    harness.place(2, SELL, 9_900, 1)  # fills one: room again
    assert kinds(harness.place(1, BUY, 9_900, 1)) == ["OrderAccepted"]


def test_statuses(harness: Harness) -> None:
    harness.place(1, BUY, 9_900, 100)
    status = InstrumentStatus
    harness.do(SetInstrumentStatus(symbol=SYMBOL, status=status.HALTED))
    assert rejection(harness.place(2, SELL, 9_900, 1)) is ErrorCode.INSTRUMENT_HALTED
    harness.do(SetInstrumentStatus(symbol=SYMBOL, status=status.CANCEL_ONLY))
    assert rejection(harness.place(2, SELL, 9_900, 1)) is ErrorCode.CANCEL_ONLY
    assert rejection(harness.do(AmendOrder(account=1, order_id=1, qty=5))) is ErrorCode.CANCEL_ONLY
    harness.do(SetInstrumentStatus(symbol=SYMBOL, status=status.POST_ONLY))
    assert rejection(harness.place(2, SELL, 10_000, 1)) is ErrorCode.POST_ONLY_MODE
    assert kinds(harness.place(2, SELL, 10_000, 1, post_only=True)) == ["OrderAccepted"]
    events = harness.do(SetInstrumentStatus(symbol=SYMBOL, status=status.DELISTED))
    assert kinds(events) == ["InstrumentStatusChanged", "OrderCanceled", "OrderCanceled"]
    assert all(e.reason is CancelReason.ADMIN for e in events[1:])
    assert rejection(harness.place(2, SELL, 10_000, 1)) is ErrorCode.INSTRUMENT_DELISTED
    events = harness.do(SetInstrumentStatus(symbol=SYMBOL, status=status.OPEN))
    assert rejection(events) is ErrorCode.INSTRUMENT_DELISTED


def test_a_refused_status_change_says_why_in_words(harness: Harness) -> None:
    """The finding: a refused `admin.set_status` said only the symbol ("NOPE-USD"), or "bad
    status": the operator could not tell a typo from a delisted market."""

    def said(symbol: str, status: object) -> tuple[ErrorCode, str]:
        events = harness.do(SetInstrumentStatus(symbol=symbol, status=status))  # type: ignore[arg-type]
        assert len(events) == 1 and isinstance(events[0], CommandRejected), events
        return events[0].reason, events[0].detail

    assert said(SYMBOL, "closed") == (
        ErrorCode.BAD_PARAM,
        "status 'closed' is not one of open, halted, cancel_only, post_only, delisted",
    )
    assert said("NOPE-USD", InstrumentStatus.HALTED) == (
        ErrorCode.UNKNOWN_SYMBOL,
        "unknown symbol 'NOPE-USD'",
    )
    harness.do(SetInstrumentStatus(symbol=SYMBOL, status=InstrumentStatus.DELISTED))
    assert said(SYMBOL, InstrumentStatus.OPEN) == (
        ErrorCode.INSTRUMENT_DELISTED,
        f"{SYMBOL} is delisted, which is final: nothing about it changes any more",
    )


def test_an_operator_command_for_a_wrong_case_symbol_names_the_listed_one(
    harness: Harness,
) -> None:
    """Symbols match exactly; a refusal of `aaplx-usd` names `AAPLx-USD` wherever the engine
    refuses it (protocol §11.1's 4000 row), and changes nothing. The finding (session 28's
    review): the operator's commands still answered the bare `unknown symbol 'aaplx-usd'`."""
    wrong = SYMBOL.lower()
    named = f"unknown symbol {wrong!r}: did you mean {SYMBOL!r}? (symbols match case and all)"
    harness.place(1, BUY, 9_900, 1)
    commands = [
        PlaceOrder(account=2, side=SELL, price=9_900, qty=1, symbol=wrong),
        CancelAll(account=1, symbol=wrong),
        SetInstrumentStatus(symbol=wrong, status=InstrumentStatus.HALTED),
        SetReferencePrice(symbol=wrong, price=10_000),
        SetOrderCaps(symbol=wrong, max_qty=5),
        MatureInstrument(symbol=wrong),
    ]
    for command in commands:
        before = harness.venue.state_hash()
        events = harness.do(command)
        assert len(events) == 1 and isinstance(events[0], CommandRejected), events
        assert (events[0].reason, events[0].detail) == (ErrorCode.UNKNOWN_SYMBOL, named)
        harness.venue.ts_us -= 1  # the same venue at the same time hashes the same
        assert harness.venue.state_hash() == before, command
        harness.venue.ts_us += 1


def test_reference_price_follows_trades_and_operators(harness: Harness) -> None:
    harness.place(1, SELL, 10_500, 100)
    harness.place(2, BUY, 10_500, 100)
    market = harness.venue.markets[SYMBOL]
    assert market.reference_price == 10_500 and market.band_high == 11_550
    harness.do(SetReferencePrice(symbol=SYMBOL, price=20_000))
    assert (market.band_low, market.band_high) == (18_000, 22_000)
    assert rejection(harness.do(SetReferencePrice(symbol=SYMBOL, price=0))) is ErrorCode.BAD_PARAM


def test_listing_twice_is_refused(harness: Harness) -> None:
    events = harness.do(ListInstrument(spec=make_spec()))
    assert rejection(events) is ErrorCode.INSTRUMENT_EXISTS
    events = harness.do(ListInstrument(spec=make_spec(symbol="B", price_tick=0)))
    assert rejection(events) is ErrorCode.BAD_PARAM


def test_accepted_event_describes_the_order(harness: Harness) -> None:
    events = harness.place(1, BUY, 9_900, 100, cl_ord_id="x", tag="t")
    accepted = events[0]
    assert isinstance(accepted, OrderAccepted)
    assert (accepted.order_id, accepted.status, accepted.leaves_qty, accepted.cum_qty) == (
        1,
        OrderStatus.NEW,
        100,
        0,
    )
    assert (accepted.cl_ord_id, accepted.tag) == ("x", "t")


def test_amend_below_the_filled_quantity_completes_at_what_traded(harness: Harness) -> None:
    harness.place(1, SELL, 10_000, 10)
    harness.place(2, BUY, 10_000, 6)
    events = harness.do(AmendOrder(account=1, order_id=1, qty=2))
    amended = events[0]
    assert isinstance(amended, OrderAmended)
    assert (amended.qty, amended.cum_qty, amended.leaves_qty) == (6, 6, 0)
    assert amended.status is OrderStatus.FILLED


def test_an_amend_that_completes_the_order_keeps_its_resting_price(harness: Harness) -> None:
    # docs/engine.md: a new price in an amend to at most the filled qty is not applied; the
    # report carries the price the order traded and rested at.
    harness.place(1, SELL, 10_000, 10)
    harness.place(2, BUY, 10_000, 6)
    events = harness.do(AmendOrder(account=1, order_id=1, qty=6, price=10_100))
    amended = events[0]
    assert isinstance(amended, OrderAmended)
    assert (amended.price, amended.qty, amended.status) == (10_000, 6, OrderStatus.FILLED)


# ----------------------------------------------------------------- per-order caps and facts


def rejected(events: list) -> CommandRejected:
    assert len(events) == 1 and isinstance(events[0], CommandRejected), events
    return events[0]


def test_per_order_caps_refuse_with_the_cap_and_the_value() -> None:
    # Caps: 2 shares and 150.00 USD an order; the band is 90.00..110.00 around 100.00.
    harness = Harness(max_qty=2_000_000, max_notional=150_000_000)
    too_many = rejected(harness.place(1, BUY, 10_000, 2_000_001))
    assert too_many.reason is ErrorCode.ABOVE_MAX_QTY
    assert too_many.facts == (("max_qty", 2_000_000, 6), ("qty", 2_000_001, 6))
    too_much = rejected(harness.place(1, BUY, 10_000, 1_600_000))
    assert too_much.reason is ErrorCode.ABOVE_MAX_NOTIONAL
    assert too_much.facts == (
        ("max_notional", 150_000_000, 6),
        ("notional", 160_000_000, 6),
        ("valued_at", 10_000, 2),
    )
    # A market order is valued at the band's high, the most any of its fills can cost.
    market = PlaceOrder(
        account=1,
        symbol=SYMBOL,
        side=SELL,
        order_type=OrderType.MARKET,
        tif=TimeInForce.IOC,
        qty=1_400_000,
    )
    refused = rejected(harness.do(market))
    assert refused.reason is ErrorCode.ABOVE_MAX_NOTIONAL
    assert refused.facts[1:] == (("notional", 154_000_000, 6), ("valued_at", 11_000, 2))
    by_amount = PlaceOrder(
        account=1,
        symbol=SYMBOL,
        side=BUY,
        order_type=OrderType.MARKET,
        tif=TimeInForce.IOC,
        quote_qty=150_000_001,
    )
    assert rejected(harness.do(by_amount)).facts[1] == ("notional", 150_000_001, 6)
    assert not harness.venue.orders  # nothing was accepted


def test_per_order_caps_apply_to_amends() -> None:
    harness = Harness(max_qty=2_000_000, max_notional=150_000_000)
    harness.place(1, BUY, 10_000, 1_000_000)
    assert rejected(harness.do(AmendOrder(account=1, order_id=1, qty=2_000_002))).reason is (
        ErrorCode.ABOVE_MAX_QTY
    )
    refused = rejected(harness.do(AmendOrder(account=1, order_id=1, qty=1_600_000)))
    assert refused.reason is ErrorCode.ABOVE_MAX_NOTIONAL and refused.order_id == 1
    assert harness.venue.orders[1].qty == 1_000_000


def test_operators_change_the_caps_and_the_state_hash_sees_them() -> None:
    from engine import snapshot

    harness = Harness(max_qty=2_000_000)
    before = harness.venue.state_hash()
    events = harness.do(SetOrderCaps(symbol=SYMBOL, max_qty=0, max_notional=150_000_000))
    assert events == [OrderCapsSet(harness.venue.ts_us, SYMBOL, 0, 150_000_000)]
    spec = harness.venue.markets[SYMBOL].spec
    assert (spec.max_qty, spec.max_notional) == (0, 150_000_000)
    assert harness.venue.state_hash() != before
    restored = snapshot.restore(snapshot.decode(snapshot.encode(snapshot.capture(harness.venue))))
    assert restored.state_hash() == harness.venue.state_hash()
    assert restored.markets[SYMBOL].spec.max_notional == 150_000_000
    harness.venue = restored
    assert kinds(harness.place(1, BUY, 10_000, 1_400_000)) == ["OrderAccepted"]  # no qty cap
    assert rejected(harness.place(1, BUY, 10_000, 1_600_000)).reason is (
        ErrorCode.ABOVE_MAX_NOTIONAL
    )
    for bad in (
        SetOrderCaps(symbol=SYMBOL, max_qty=-1),
        SetOrderCaps(symbol="NOPE", max_qty=5),
    ):
        assert rejected(harness.do(bad)).reason in (ErrorCode.BAD_PARAM, ErrorCode.UNKNOWN_SYMBOL)
    capped = Harness(min_qty=10)
    refused = rejected(capped.do(SetOrderCaps(symbol=SYMBOL, max_qty=5)))
    assert refused.reason is ErrorCode.BAD_PARAM and "min_qty" in refused.detail


def test_a_notional_cap_below_one_lot_is_refused_unless_journaled_before_the_check() -> None:
    harness = Harness(min_qty=1_000_000)  # one share; the band's low is 90.00 USD
    below = SetOrderCaps(symbol=SYMBOL, max_notional=89_999_999, lot_checked=True)
    refused = rejected(harness.do(below))
    assert refused.reason is ErrorCode.BAD_PARAM
    assert "90.000000, the smallest cap that allows one lot" in refused.detail
    assert harness.venue.markets[SYMBOL].spec.max_notional == 0
    smallest = SetOrderCaps(symbol=SYMBOL, max_notional=90_000_000, lot_checked=True)
    assert kinds(harness.do(smallest)) == ["OrderCapsSet"]
    assert kinds(harness.place(1, BUY, 9_000, 1_000_000)) == ["OrderAccepted"]
    old_record = SetOrderCaps(symbol=SYMBOL, max_notional=1)  # replays as it was accepted
    assert kinds(harness.do(old_record)) == ["OrderCapsSet"]


def test_a_reference_price_that_prices_one_lot_above_the_cap_is_refused() -> None:
    """The finding: a cap was checked against one lot when set (`lot_checked`), but a raised
    reference price moves the band's low up and put one lot above it again: every order
    refused ABOVE_MAX_NOTIONAL, the instrument untradeable without a word. Refused now, as
    the cap is, unless journaled before the check (it replays as it was accepted)."""
    harness = Harness(min_qty=1_000_000)  # one share; the band's low is 90.00 USD
    harness.do(SetOrderCaps(symbol=SYMBOL, max_notional=90_000_000, lot_checked=True))
    raised = SetReferencePrice(symbol=SYMBOL, price=10_100, lot_checked=True)  # low 90.90
    refused = rejected(harness.do(raised))
    assert refused.reason is ErrorCode.BAD_PARAM
    assert "reference price 101.00" in refused.detail
    assert "90.900000, the smallest cap that allows one lot" in refused.detail
    assert harness.venue.markets[SYMBOL].reference_price == 10_000  # nothing changed
    assert kinds(harness.place(1, BUY, 9_000, 1_000_000)) == ["OrderAccepted"]
    lowered = SetReferencePrice(symbol=SYMBOL, price=9_900, lot_checked=True)
    assert kinds(harness.do(lowered)) == ["ReferencePriceSet"]  # a lot is worth less
    harness.do(SetOrderCaps(symbol=SYMBOL, max_notional=90_900_000, lot_checked=True))
    assert kinds(harness.do(raised)) == ["ReferencePriceSet"]  # the cap raised first
    old_record = SetReferencePrice(symbol=SYMBOL, price=20_000)  # replays as it was accepted
    assert kinds(harness.do(old_record)) == ["ReferencePriceSet"]


def test_a_budget_below_one_step_is_refused_unless_journaled_before_the_check() -> None:
    harness = Harness(qty_step=1_000_000, min_qty=1_000_000)  # whole shares
    harness.place(2, Side.SELL, 10_000, 1_000_000)  # one share at 100.00
    buy = PlaceOrder(
        account=1, symbol=SYMBOL, side=BUY, order_type=OrderType.MARKET, tif=TimeInForce.IOC
    )
    checked = msgspec.structs.replace(buy, quote_qty=99_999_999, budget_checked=True)
    refused = rejected(harness.do(checked))
    assert refused.reason is ErrorCode.BELOW_MIN_NOTIONAL
    assert refused.facts == (
        ("lot_notional", 100_000_000, 6),
        ("notional", 99_999_999, 6),
        ("valued_at", 10_000, 2),
    )
    old_record = msgspec.structs.replace(buy, quote_qty=99_999_999)  # replays as it ran
    assert kinds(harness.do(old_record)) == ["OrderAccepted", "OrderCanceled"]
    enough = msgspec.structs.replace(checked, quote_qty=100_000_000)
    assert "TradeExecuted" in kinds(harness.do(enough))


def test_band_and_notional_refusals_carry_their_numbers() -> None:
    harness = Harness(min_notional=1_000_000)  # 1.00 USD
    band = rejected(harness.place(1, BUY, 11_001, 1_000_000))
    assert band.reason is ErrorCode.PRICE_BAND
    assert band.facts == (
        ("band_low", 9_000, 2),
        ("band_high", 11_000, 2),
        ("reference_price", 10_000, 2),
    )
    small = rejected(harness.place(1, BUY, 10_001, 9_999))  # 100.01 x 0.009999 = 0.99999999
    assert small.reason is ErrorCode.BELOW_MIN_NOTIONAL
    assert small.facts == (
        ("min_notional", 1_000_000, 6),
        ("notional", 99_999_999, 8),
        ("valued_at", 10_001, 2),
    )


def test_tick_and_step_refusals_say_the_tick_and_the_step() -> None:
    """`INVALID_PRICE_TICK` and `INVALID_QTY_STEP` said only that the number was off its grid,
    not the grid (a bill's step is 100 units of face): their facts now say it, for a place
    and for an amend (session 25)."""
    harness = Harness(price_tick=5, qty_step=100, min_qty=100)
    tick = rejected(harness.place(1, BUY, 10_001, 1_000))
    assert tick.reason is ErrorCode.INVALID_PRICE_TICK
    assert tick.facts == (("tick", 5, 2), ("price", 10_001, 2))
    step = rejected(harness.place(1, BUY, 10_000, 1_050))
    assert step.reason is ErrorCode.INVALID_QTY_STEP
    assert step.facts == (("step", 100, 6), ("qty", 1_050, 6))
    assert kinds(harness.place(1, BUY, 10_000, 1_000)) == ["OrderAccepted"]
    amend = rejected(harness.do(AmendOrder(account=1, order_id=1, qty=1_150)))
    assert (amend.reason, amend.facts) == (step.reason, (("step", 100, 6), ("qty", 1_150, 6)))


def test_an_expire_at_in_milliseconds_is_named_as_such() -> None:
    harness = Harness()
    now_us = 1_764_000_000_000_000
    gtd = dict(account=1, symbol=SYMBOL, side=BUY, price=10_000, qty=1, tif=TimeInForce.GTD)
    slip = rejected(
        harness.do(PlaceOrder(ts_us=now_us, expire_at_us=now_us // 1_000 + 60_000, **gtd))
    )
    assert slip.reason is ErrorCode.INVALID_EXPIRE_AT
    meant = (now_us // 1_000 + 60_000) * 1_000  # said since session 36
    assert slip.detail == (
        f"expire_at {meant // 1_000} looks like milliseconds; expire_at is in microseconds:"
        f" did you mean {meant}?"
    )
    # in seconds (10 digits): named so since session 36, before "is not in the future"
    seconds = now_us // 1_000_000 + 60
    slip = rejected(harness.do(PlaceOrder(ts_us=now_us, expire_at_us=seconds, **gtd)))
    assert slip.reason is ErrorCode.INVALID_EXPIRE_AT
    assert slip.detail == (
        f"expire_at {seconds} looks like seconds; expire_at is in microseconds:"
        f" did you mean {seconds * 1_000_000}?"
    )
    past = rejected(harness.do(PlaceOrder(ts_us=now_us + 1, expire_at_us=now_us, **gtd)))
    assert past.detail == "expire_at is not in the future"


# ----------------------------------------------------------------- the plain limit's one check

# Caps 20 shares and 1,000.00 USD, min 10 units and 1.00 USD; the band is 90.00..110.00.
PLAIN_SPEC = dict(min_qty=10, max_qty=20_000_000, min_notional=1_000_000, max_notional=10**9)
# Rows: a gtc buy of 1 share at 100.00 (which passes) with one field changed, the setup it
# needs ("" none, "rest": one resting order of account 1 with cl_ord_id "a", "halt"), the
# spec changes, and the reason the one-expression check must leave to the checks one by one.
PLAIN_ROWS: list[tuple[ErrorCode, str, dict[str, Any], dict[str, Any]]] = [
    (ErrorCode.BAD_PARAM, "", {}, dict(account=0)),
    (ErrorCode.BAD_PARAM, "", {}, dict(price=0)),
    (ErrorCode.BAD_PARAM, "", {}, dict(qty=2**62 + 1)),
    (ErrorCode.BAD_PARAM, "", {}, dict(quote_qty=5)),
    (ErrorCode.BAD_PARAM, "", {}, dict(expire_at_us=5)),
    (ErrorCode.BAD_PARAM, "", {}, dict(cl_ord_id="x" * 37)),
    (ErrorCode.BAD_PARAM, "", {}, dict(tag="")),
    (ErrorCode.UNKNOWN_SYMBOL, "", {}, dict(symbol="NOPE")),
    (ErrorCode.INSTRUMENT_HALTED, "halt", {}, {}),
    (ErrorCode.DUPLICATE_CL_ORD_ID, "rest", {}, dict(cl_ord_id="a")),
    (ErrorCode.INVALID_PRICE_TICK, "", dict(price_tick=5), dict(price=10_001)),
    (ErrorCode.INVALID_QTY_STEP, "", dict(qty_step=2), dict(qty=1_000_001)),
    (ErrorCode.BELOW_MIN_QTY, "", {}, dict(qty=5)),
    (ErrorCode.ABOVE_MAX_QTY, "", {}, dict(qty=20_000_001)),
    (ErrorCode.PRICE_BAND, "", {}, dict(price=11_001)),
    (ErrorCode.PRICE_BAND, "", {}, dict(side=SELL, price=8_999)),
    (ErrorCode.BELOW_MIN_NOTIONAL, "", {}, dict(qty=9_000)),
    (ErrorCode.ABOVE_MAX_NOTIONAL, "", {}, dict(qty=10_000_001)),
    (ErrorCode.TOO_MANY_OPEN_ORDERS, "rest", {}, dict(price=9_999)),
]


@pytest.mark.parametrize(("reason", "setup", "spec", "fields"), PLAIN_ROWS)
def test_a_plain_limit_breaking_one_rule_is_refused_for_it(
    reason: ErrorCode, setup: str, spec: dict[str, Any], fields: dict[str, Any]
) -> None:
    config = VenueConfig(open_orders_per_account_max=1)
    harness = Harness(config, **(PLAIN_SPEC | spec))
    if setup == "rest":
        assert kinds(harness.place(1, BUY, 9_000, 1_000_000, cl_ord_id="a")) == ["OrderAccepted"]
    elif setup == "halt":
        harness.do(SetInstrumentStatus(symbol=SYMBOL, status=InstrumentStatus.HALTED))
    order = dict(account=2 if setup != "rest" else 1, symbol=SYMBOL, side=BUY) | fields
    order = dict(price=10_000, qty=1_000_000) | order
    before = harness.venue.last_order_id, list(harness.venue.orders)
    assert rejection(harness.do(PlaceOrder(**order))) is reason
    assert (harness.venue.last_order_id, list(harness.venue.orders)) == before  # none accepted


def test_a_plain_limit_within_every_bound_rests() -> None:
    harness = Harness(VenueConfig(open_orders_per_account_max=1), **PLAIN_SPEC)
    assert kinds(harness.place(2, BUY, 10_000, 1_000_000, cl_ord_id="a", tag="t")) == [
        "OrderAccepted"
    ]


def test_operators_move_the_bounds_a_plain_limit_is_checked_against() -> None:
    harness = Harness(**PLAIN_SPEC)
    harness.do(SetOrderCaps(symbol=SYMBOL, max_qty=2_000_000, max_notional=0))
    assert rejection(harness.place(1, BUY, 10_000, 2_000_001)) is ErrorCode.ABOVE_MAX_QTY
    harness.do(SetOrderCaps(symbol=SYMBOL, max_qty=0, max_notional=100_000_000))
    assert rejection(harness.place(1, BUY, 10_000, 1_000_001)) is ErrorCode.ABOVE_MAX_NOTIONAL
    assert kinds(harness.place(1, BUY, 10_000, 500_000)) == ["OrderAccepted"]
    harness.do(SetReferencePrice(symbol=SYMBOL, price=5_000))  # band 45.00..55.00
    assert rejection(harness.place(1, BUY, 5_501, 1_000_000)) is ErrorCode.PRICE_BAND
    assert rejection(harness.place(1, SELL, 4_499, 1_000_000)) is ErrorCode.PRICE_BAND


# Rows: an amend of account 1's resting buy of 1 share at 100.00 (order 1; a sell of
# account 2 rests at 105.00), the spec changes and setup it needs, and the reason the
# one-expression check of a price amend must leave to the checks one by one.
PRICE_AMEND_ROWS: list[tuple[ErrorCode, str, dict[str, Any], dict[str, Any]]] = [
    (ErrorCode.BAD_PARAM, "", {}, dict(price=0)),
    (ErrorCode.BAD_PARAM, "", {}, dict(price=-1)),
    (ErrorCode.UNKNOWN_ORDER, "", {}, dict(account=2, price=9_990)),
    (ErrorCode.AMEND_REJECTED, "", {}, dict(price=10_000)),
    (ErrorCode.INSTRUMENT_HALTED, "halt", {}, dict(price=9_990)),
    (ErrorCode.INVALID_PRICE_TICK, "", dict(price_tick=10), dict(price=9_995)),
    (ErrorCode.PRICE_BAND, "", {}, dict(price=11_001)),
    (ErrorCode.BELOW_MIN_NOTIONAL, "", dict(min_notional=99_000_000), dict(price=9_000)),
    (ErrorCode.ABOVE_MAX_NOTIONAL, "", dict(max_notional=100_500_000), dict(price=10_100)),
    (ErrorCode.POST_ONLY_WOULD_TAKE, "post_only", {}, dict(price=10_500)),
    (ErrorCode.ABOVE_MAX_QTY, "caps", {}, dict(price=9_990)),  # a cap lowered after it rested
]


@pytest.mark.parametrize(("reason", "setup", "spec", "fields"), PRICE_AMEND_ROWS)
def test_a_price_amend_breaking_one_rule_is_refused_for_it(
    reason: ErrorCode, setup: str, spec: dict[str, Any], fields: dict[str, Any]
) -> None:
    harness = Harness(**(PLAIN_SPEC | spec))
    harness.place(1, BUY, 10_000, 1_000_000, post_only=setup == "post_only")
    harness.place(2, SELL, 10_500, 1_000_000)
    if setup == "halt":
        harness.do(SetInstrumentStatus(symbol=SYMBOL, status=InstrumentStatus.HALTED))
    if setup == "caps":
        harness.do(SetOrderCaps(symbol=SYMBOL, max_qty=999_999))
    venue = harness.venue
    before = venue.book(SYMBOL).depth(5), msgspec.structs.asdict(venue.orders[1])
    amend = dict(account=1, order_id=1) | fields
    assert rejection(harness.do(AmendOrder(**amend))) is reason
    assert (venue.book(SYMBOL).depth(5), msgspec.structs.asdict(venue.orders[1])) == before


# Rows: a size cut of account 1's resting buy of 1 share at 100.00 (order 1) to 0.6 share
# at the same price (or none given), the setup it needs, the spec changes, and the reason
# the one-expression check of a size cut (`Venue._amend_keeping_priority`) must leave to
# the checks one by one.
SIZE_CUT_ROWS: list[tuple[ErrorCode, str, dict[str, Any], dict[str, Any]]] = [
    (ErrorCode.UNKNOWN_ORDER, "", {}, dict(account=2, qty=600_000)),
    (ErrorCode.INSTRUMENT_HALTED, "halt", {}, dict(qty=600_000)),
    (ErrorCode.CANCEL_ONLY, "cancel_only", {}, dict(price=10_000, qty=600_000)),
    (ErrorCode.AMEND_REJECTED, "", {}, dict(price=10_000, qty=1_000_000)),
    (ErrorCode.INVALID_QTY_STEP, "", dict(qty_step=100_000, min_qty=100_000), dict(qty=650_000)),
    (ErrorCode.BELOW_MIN_QTY, "", dict(min_qty=700_000), dict(qty=600_000)),
    (ErrorCode.ABOVE_MAX_QTY, "caps", {}, dict(qty=600_000)),  # a cap lowered after it rested
    (ErrorCode.PRICE_BAND, "band", {}, dict(qty=600_000)),  # the band moved away from it
    (ErrorCode.BELOW_MIN_NOTIONAL, "", dict(min_notional=61_000_000), dict(qty=600_000)),
]


@pytest.mark.parametrize(("reason", "setup", "spec", "fields"), SIZE_CUT_ROWS)
def test_a_size_cut_breaking_one_rule_is_refused_for_it(
    reason: ErrorCode, setup: str, spec: dict[str, Any], fields: dict[str, Any]
) -> None:
    harness = Harness(**(PLAIN_SPEC | spec))
    harness.place(1, BUY, 10_000, 1_000_000)
    status = {"halt": InstrumentStatus.HALTED, "cancel_only": InstrumentStatus.CANCEL_ONLY}
    if setup in status:
        harness.do(SetInstrumentStatus(symbol=SYMBOL, status=status[setup]))
    if setup == "caps":
        harness.do(SetOrderCaps(symbol=SYMBOL, max_qty=500_000))
    if setup == "band":
        harness.do(SetReferencePrice(symbol=SYMBOL, price=8_000))  # band 72.00..88.00
    venue = harness.venue
    before = venue.book(SYMBOL).depth(5), msgspec.structs.asdict(venue.orders[1])
    amend = dict(account=1, order_id=1) | fields
    assert rejection(harness.do(AmendOrder(**amend))) is reason
    assert (venue.book(SYMBOL).depth(5), msgspec.structs.asdict(venue.orders[1])) == before


@pytest.mark.parametrize("side", [BUY, SELL])
@pytest.mark.parametrize("price", [0, 10_000])
def test_a_size_cut_keeps_its_place_with_or_without_the_price(side: Side, price: int) -> None:
    harness = Harness(**PLAIN_SPEC)
    harness.place(1, side, 10_000, 1_000_000)
    harness.place(2, side, 10_000, 1_000_000)
    (event,) = harness.do(AmendOrder(account=1, order_id=1, price=price, qty=600_000))
    assert isinstance(event, OrderAmended) and event.priority_kept
    assert (event.price, event.qty, event.leaves_qty) == (10_000, 600_000, 600_000)
    book = harness.venue.book(SYMBOL)
    level = (book.bids if side is BUY else book.asks).best
    assert level is not None and list(level.orders) == [1, 2] and level.qty == 1_600_000


def test_a_price_amend_repeating_the_qty_moves_as_one_without_it() -> None:
    amended = []
    for qty in (0, 1_000_000):
        harness = Harness(**PLAIN_SPEC)
        harness.place(1, BUY, 10_000, 1_000_000)
        harness.place(2, BUY, 9_990, 1_000_000)
        events = harness.do(AmendOrder(account=1, order_id=1, price=9_990, qty=qty))
        assert harness.venue.book(SYMBOL).depth(2)[0] == [(9_990, 2_000_000)]
        assert list(harness.venue.book(SYMBOL).bids.best.orders) == [2, 1]  # type: ignore[union-attr]
        amended.append(events)
    assert amended[0] == amended[1]
    (event,) = amended[0]
    assert isinstance(event, OrderAmended) and not event.priority_kept
    assert (event.price, event.qty, event.leaves_qty) == (9_990, 1_000_000, 1_000_000)


def quoted_venue(quote_set: str) -> Harness:
    """A bid quoted for `quote_set` and then amended, beside a plain ask."""
    harness = Harness(**PLAIN_SPEC)
    harness.place(1, BUY, 10_000, 1_000_000, post_only=True, quote_set=quote_set)
    harness.place(1, SELL, 10_010, 1_000_000)
    harness.do(AmendOrder(account=1, order_id=1, price=9_990, qty=500_000))
    return harness


def test_an_order_keeps_its_quote_set_through_amends_and_images() -> None:
    from engine import snapshot

    venue = quoted_venue("mm1").venue
    assert [o.quote_set for o in venue.open_orders(1)] == ["mm1", None]
    restored = snapshot.restore(snapshot.decode(snapshot.encode(snapshot.capture(venue))))
    assert [o.quote_set for o in restored.open_orders(1)] == ["mm1", None]
    assert restored.state_hash() == venue.state_hash()
    assert quoted_venue("mm2").venue.state_hash() != venue.state_hash(), "the set is state"


@pytest.mark.parametrize("quote_set", ["", "q" * 65])
@pytest.mark.parametrize("post_only", [False, True])
def test_a_quote_set_name_out_of_bounds_is_refused(quote_set: str, post_only: bool) -> None:
    harness = Harness(**PLAIN_SPEC)
    refused = rejected(
        harness.place(1, BUY, 10_000, 1_000_000, post_only=post_only, quote_set=quote_set)
    )
    assert refused.reason is ErrorCode.BAD_PARAM and "quote_set" in refused.detail
    assert harness.venue.open_orders(1) == []
    accepted = harness.place(1, BUY, 10_000, 1_000_000, post_only=post_only, quote_set="q" * 64)
    assert kinds(accepted)[0] == "OrderAccepted"


def marked_venue(cod: bool) -> Harness:
    """A bid placed the fast way and a post-only ask the checked way, both with `cod`, the
    bid then amended, beside a plain ask."""
    harness = Harness(**PLAIN_SPEC)
    harness.place(1, BUY, 10_000, 1_000_000, cod=cod)
    harness.place(1, SELL, 10_010, 1_000_000, post_only=True, cod=cod)
    harness.place(1, SELL, 10_020, 1_000_000)
    harness.do(AmendOrder(account=1, order_id=1, price=9_990, qty=500_000))
    return harness


def test_an_order_keeps_its_cod_mark_through_amends_and_images() -> None:
    from engine import snapshot

    venue = marked_venue(cod=True).venue
    assert [o.cod for o in venue.open_orders(1)] == [True, True, False]
    restored = snapshot.restore(snapshot.decode(snapshot.encode(snapshot.capture(venue))))
    assert [o.cod for o in restored.open_orders(1)] == [True, True, False]
    assert restored.state_hash() == venue.state_hash()
    assert marked_venue(cod=False).venue.state_hash() != venue.state_hash(), "the mark is state"


def test_a_refused_cod_cancel_changes_nothing_and_reports_nothing() -> None:
    """The cluster core's refusal of a cod cancel whose order's cod another gateway took
    (core/cluster_core.py) stands in the journal for it: replayed, the order stays open with
    its mark, nothing is reported, and the state is the one before (but for the time)."""
    harness = marked_venue(cod=True)
    venue = harness.venue
    before = [(o.order_id, o.leaves_qty, o.cod) for o in venue.open_orders(1)]
    refusal = RefuseCancelOnDisconnect(account=1, order_id=1, ts_us=venue.ts_us)
    assert harness.do(refusal) == []
    assert [(o.order_id, o.leaves_qty, o.cod) for o in venue.open_orders(1)] == before
    assert venue.state_hash() == marked_venue(cod=True).venue.state_hash()


# ----------------------------------------------------------------- dead-man's switch


def armed_venue(timeout_ms: int) -> Harness:
    """Account 1 with two open orders and its switch armed for `timeout_ms`; account 2's
    order beside them, its switch never armed."""
    harness = Harness()
    harness.place(1, BUY, 9_900, 100)
    harness.place(2, BUY, 9_950, 100)
    harness.place(1, SELL, 10_100, 100)
    harness.do(ArmDeadMan(account=1, timeout_ms=timeout_ms))
    return harness


def test_a_switch_fires_at_the_first_clock_tick_past_its_deadline() -> None:
    harness = armed_venue(timeout_ms=5)
    deadline = harness.venue.dead_man_deadlines[1]
    assert deadline == harness.venue.ts_us + 5_000
    assert harness.do(AdvanceClock(ts_us=deadline - 1)) == []
    # an order command past the deadline does not fire it: only the clock's tick looks
    assert kinds(harness.place(2, SELL, 10_200, 100)) == ["OrderAccepted"]
    events = harness.do(AdvanceClock())
    assert kinds(events) == ["DeadManTriggered", "OrderCanceled", "OrderCanceled"]
    assert events[0] == DeadManTriggered(harness.venue.ts_us, 1)
    assert [(e.order_id, e.reason) for e in events[1:]] == [
        (1, CancelReason.DMS),
        (3, CancelReason.DMS),
    ]
    assert harness.venue.dead_man_deadlines == {} and harness.venue.dead_man_queue == []
    assert sorted(harness.venue.orders) == [2, 4], "another account's orders stay"
    assert harness.do(AdvanceClock(ts_us=deadline + 10_000_000)) == [], "spent: fires once"


def test_rearming_replaces_the_deadline_and_zero_disarms() -> None:
    harness = armed_venue(timeout_ms=5)
    first = harness.venue.dead_man_deadlines[1]
    events = harness.do(ArmDeadMan(account=1, timeout_ms=10))
    assert events == [DeadManArmed(harness.venue.ts_us, 1, harness.venue.ts_us + 10_000)]
    assert harness.do(AdvanceClock(ts_us=first + 1)) == [], "the old deadline is gone"
    assert harness.venue.dead_man_queue == [(harness.venue.dead_man_deadlines[1], 1)]
    assert harness.do(ArmDeadMan(account=1, timeout_ms=0)) == [
        DeadManArmed(harness.venue.ts_us, 1, 0)
    ]
    assert harness.venue.dead_man_deadlines == {} and harness.venue.dead_man_queue == []
    assert harness.do(AdvanceClock(ts_us=first + 1_000_000)) == []
    assert len(harness.venue.orders) == 3


def test_a_rearm_after_the_deadline_comes_too_late_the_switch_fires_first() -> None:
    """A re-arm that reaches the venue after the deadline, before the clock's tick (a
    restart, a core taking over), does not save the orders: the due switch fires first."""
    harness = armed_venue(timeout_ms=5)
    deadline = harness.venue.dead_man_deadlines[1]
    events = harness.do(ArmDeadMan(ts_us=deadline + 1, account=1, timeout_ms=600_000))
    assert kinds(events) == ["DeadManTriggered", "OrderCanceled", "OrderCanceled", "DeadManArmed"]
    assert {e.reason for e in events if isinstance(e, OrderCanceled)} == {CancelReason.DMS}
    assert harness.venue.dead_man_deadlines == {1: deadline + 1 + 600_000_000}, "armed anew"
    assert sorted(harness.venue.orders) == [2]
    # another account's arming fires it too: whatever comes first after the deadline
    other = armed_venue(timeout_ms=5)
    late = other.venue.dead_man_deadlines[1] + 1
    events = other.do(ArmDeadMan(ts_us=late, account=2, timeout_ms=1_000))
    assert kinds(events)[0] == "DeadManTriggered" and kinds(events)[-1] == "DeadManArmed"
    assert 1 not in other.venue.dead_man_deadlines


def test_switches_due_together_fire_in_deadline_order() -> None:
    harness = armed_venue(timeout_ms=20)
    harness.do(ArmDeadMan(account=2, timeout_ms=10))
    events = harness.do(AdvanceClock(ts_us=harness.venue.ts_us + 30_000))
    fired = [e.account for e in events if isinstance(e, DeadManTriggered)]
    assert fired == [2, 1]
    assert [e.order_id for e in events if isinstance(e, OrderCanceled)] == [2, 1, 3]


@pytest.mark.parametrize(
    ("account", "timeout_ms"), [(0, 1_000), (1, -1), (1, DEAD_MAN_TIMEOUT_MS_MAX + 1)]
)
def test_a_bad_switch_is_refused_and_changes_nothing(account: int, timeout_ms: int) -> None:
    harness = armed_venue(timeout_ms=5)
    armed = dict(harness.venue.dead_man_deadlines)
    refused = rejected(harness.do(ArmDeadMan(account=account, timeout_ms=timeout_ms)))
    assert (refused.reason, refused.command) == (ErrorCode.BAD_PARAM, "arm_dead_man")
    assert harness.venue.dead_man_deadlines == armed
    assert ARM_DEAD_MAN_PRECEDENCE == (ErrorCode.BAD_PARAM,)


def test_a_switch_is_state_in_the_hash_and_in_images() -> None:
    from engine import snapshot

    venue = armed_venue(timeout_ms=5).venue
    restored = snapshot.restore(snapshot.decode(snapshot.encode(snapshot.capture(venue))))
    assert restored.dead_man_deadlines == venue.dead_man_deadlines
    assert restored.state_hash() == venue.state_hash()
    assert armed_venue(timeout_ms=6).venue.state_hash() != venue.state_hash(), "the deadline"
    # the restored switch fires as the original does
    tick = AdvanceClock(ts_us=venue.ts_us + 5_000)
    assert restored.execute(tick) == venue.execute(tick)


# ----------------------------------------------------------------- no core active

OUTAGE_US = 12_000_000  # a takeover after kill -9 of the active core: the lease's TTL, and more


def outage_venue() -> Harness:
    """`armed_venue` with account 1's switch due 5 s on, and account 2's armed for 1 ms and
    due before the venue's last command (an order command, which fires no switch): the
    last command sequenced before no core was active."""
    harness = armed_venue(timeout_ms=5_000)
    harness.do(ArmDeadMan(account=2, timeout_ms=1))
    due_us = harness.venue.dead_man_deadlines[2]
    harness.place(2, SELL, 10_300, 100, ts_us=due_us + 1)
    return harness


def test_the_time_no_core_was_active_does_not_count_against_a_switch() -> None:
    """A core starts after `OUTAGE_US` with none active: account 1's switch, due during the
    outage, is pushed back by it (its 5 s less the time before the outage are left); account
    2's, due before the outage began, stays due and fires at the first tick."""
    harness = outage_venue()
    since_us = harness.venue.ts_us
    first, second = harness.venue.dead_man_deadlines[1], harness.venue.dead_man_deadlines[2]
    resumed_us = since_us + OUTAGE_US
    assert second < since_us < first < resumed_us, "1's deadline falls in the outage"
    events = harness.do(ShiftDeadManDeadlines(ts_us=resumed_us, since_us=since_us))
    assert events == [DeadManArmed(resumed_us, 1, first + OUTAGE_US)]
    assert harness.venue.dead_man_deadlines == {1: first + OUTAGE_US, 2: second}
    events = harness.do(AdvanceClock(ts_us=resumed_us))
    assert [e.account for e in events if isinstance(e, DeadManTriggered)] == [2]
    assert harness.do(AdvanceClock(ts_us=first + OUTAGE_US - 1)) == [], "its time is left"
    events = harness.do(AdvanceClock(ts_us=first + OUTAGE_US))
    assert kinds(events) == ["DeadManTriggered", "OrderCanceled", "OrderCanceled"]
    assert events[0] == DeadManTriggered(first + OUTAGE_US, 1)


def test_a_rearm_sent_while_no_core_was_active_keeps_the_orders() -> None:
    """The re-arm a maker sent during the outage is sequenced after the shift: in time."""
    harness = outage_venue()
    since_us = harness.venue.ts_us
    harness.do(ShiftDeadManDeadlines(ts_us=since_us + OUTAGE_US, since_us=since_us))
    events = harness.do(ArmDeadMan(account=1, timeout_ms=5_000))
    assert kinds(events) == ["DeadManTriggered", "OrderCanceled", "OrderCanceled", "DeadManArmed"]
    assert events[0].account == 2, "only the switch due before the outage"
    assert [o.order_id for o in harness.venue.open_orders(1)] == [1, 3]


def test_a_shift_replays_alike_from_the_journal_and_from_an_image() -> None:
    """Its events name the switches by account, not in the order they were armed: a replica
    restored from a snapshot (switches sorted) executes the record as one that replayed."""
    from engine import snapshot

    def armed() -> Harness:
        harness = Harness()
        harness.do(ArmDeadMan(account=7, timeout_ms=5_000))
        harness.do(ArmDeadMan(account=3, timeout_ms=4_000))
        return harness

    replayed, restored_from = armed(), armed()
    image = snapshot.encode(snapshot.capture(restored_from.venue))
    restored = snapshot.restore(snapshot.decode(image))
    since_us = replayed.venue.ts_us
    shift = ShiftDeadManDeadlines(ts_us=since_us + OUTAGE_US, since_us=since_us)
    payload = msgspec.msgpack.encode(shift)
    assert msgspec.msgpack.decode(payload, type=AnyCommand) == shift, "journaled as sent"
    events = replayed.do(shift)
    assert [event.account for event in events] == [3, 7]
    assert restored.execute(shift) == events == armed().do(shift)
    assert restored.state_hash() == replayed.venue.state_hash()
    tick = AdvanceClock(ts_us=since_us + OUTAGE_US + 4_000_000)
    assert restored.execute(tick) == replayed.do(tick) != []


@pytest.mark.parametrize("late_us", [1, -1 - OUTAGE_US])
def test_a_shift_from_after_its_own_time_is_refused_and_changes_nothing(late_us: int) -> None:
    harness = outage_venue()
    armed = dict(harness.venue.dead_man_deadlines)
    at_us = harness.venue.ts_us + OUTAGE_US
    since_us = at_us + late_us if late_us > 0 else -1  # after the command, or negative
    refused = rejected(harness.do(ShiftDeadManDeadlines(ts_us=at_us, since_us=since_us)))
    assert (refused.reason, refused.command) == (ErrorCode.BAD_PARAM, "shift_dead_man_deadlines")
    assert harness.venue.dead_man_deadlines == armed
    assert SHIFT_DEAD_MAN_DEADLINES_PRECEDENCE == (ErrorCode.BAD_PARAM,)


def test_a_venue_without_an_armed_switch_hashes_and_images_as_before() -> None:
    """Old journals and snapshots: no switch, no trace of one (a disarmed one leaves none)."""
    from engine import snapshot

    disarmed, never = armed_venue(timeout_ms=0).venue, armed_venue(timeout_ms=0).venue
    disarmed.execute(ArmDeadMan(ts_us=disarmed.ts_us, account=1, timeout_ms=5))
    disarmed.execute(ArmDeadMan(ts_us=disarmed.ts_us, account=1, timeout_ms=0))
    assert disarmed.state_hash() == never.state_hash()
    state = never._state()
    assert len(state) == 5, "the state hashed as before the switches"
    assert b"dead_man_deadlines" not in snapshot.encode(snapshot.capture(never))


def test_a_case_twin_symbol_is_refused_when_the_listing_asks(harness: Harness) -> None:
    """As an asset's case twin (tests/engine/test_custody.py): refused where listings are
    serialized when the command asks; an older record without the field lists it."""
    twin = make_spec(symbol=SYMBOL.lower())
    events = harness.do(ListInstrument(spec=twin, unique_by_case=True))
    assert rejection(events) is ErrorCode.INSTRUMENT_EXISTS
    assert isinstance(events[0], CommandRejected) and events[0].detail == (
        f"instrument {SYMBOL} is listed: {SYMBOL.lower()} differs from it only by case, and"
        " users could not tell the two apart"
    )
    assert twin.symbol not in harness.venue.markets
    assert kinds(harness.do(ListInstrument(spec=twin))) == ["InstrumentListed"]


# ----------------------------------------------------------------- cancel-on-disconnect marks


def cod_journal() -> list[Any]:
    """Account 1 places order 1 with cod off and order 2 with cod on; account 2 places
    order 3 with cod on. Then account 1's connection turns cod on (1 marked) and another of
    its connections turns it off (2 unmarked); stamped, as the journal holds them."""
    return [
        ListInstrument(ts_us=1, spec=make_spec()),
        PlaceOrder(ts_us=2, account=1, symbol=SYMBOL, side=BUY, price=9_900, qty=100),
        PlaceOrder(ts_us=3, account=1, symbol=SYMBOL, side=BUY, price=9_901, qty=100, cod=True),
        PlaceOrder(ts_us=4, account=2, symbol=SYMBOL, side=SELL, price=10_100, qty=100, cod=True),
        SetCancelOnDisconnect(ts_us=5, account=1, cod=True, order_ids=(1,)),
        SetCancelOnDisconnect(ts_us=6, account=1, cod=False, order_ids=(2,)),
    ]


def replayed(commands: list[Any]) -> Venue:
    venue = Venue()
    for command in commands:
        venue.execute(command)
        venue.check_invariants()
    return venue


def test_a_remark_changes_which_orders_a_start_after_a_crash_cancels() -> None:
    """What a replayed state marks is what a start after a crash cancels: an order placed
    with cod off and marked since is canceled, one placed with cod on and unmarked since is
    not, as the close of their connections would have done."""
    journal = cod_journal()
    assert replayed(journal[:4]).cod_order_ids() == [2, 3], "as placed"
    venue = replayed(journal)
    assert venue.cod_order_ids() == [1, 3]
    assert [venue.orders[order_id].cod for order_id in (1, 2, 3)] == [True, False, True]
    # and through the journal's bytes, as a restart replays it
    from engine.commands import AnyCommand

    journal_bytes = msgspec.msgpack.encode(journal)
    decoded = msgspec.msgpack.decode(journal_bytes, type=list[AnyCommand])  # type: ignore[valid-type]
    assert decoded == journal
    assert replayed(decoded).state_hash() == venue.state_hash()


def test_a_remark_says_which_orders_it_marked_and_passes_over_the_others(
    harness: Harness,
) -> None:
    harness.place(1, BUY, 9_900, 100)  # 1
    harness.place(2, BUY, 9_950, 100, cod=True)  # 2: another account's
    harness.place(1, SELL, 10_100, 100)  # 3
    harness.place(2, BUY, 10_100, 100)  # 4: fills 3, which closes
    events = harness.do(SetCancelOnDisconnect(account=1, cod=True, order_ids=(1, 2, 3, 99)))
    assert events == [CancelOnDisconnectSet(harness.venue.ts_us, 1, True, (1,))]
    assert harness.venue.cod_order_ids() == [1, 2], "2 was marked when placed, and stays"
    events = harness.do(SetCancelOnDisconnect(account=2, cod=False, order_ids=(2,)))
    assert events == [CancelOnDisconnectSet(harness.venue.ts_us, 2, False, (2,))]
    assert harness.venue.cod_order_ids() == [1]
    nothing_open = harness.do(SetCancelOnDisconnect(account=3, cod=True, order_ids=(1,)))
    assert nothing_open == [CancelOnDisconnectSet(harness.venue.ts_us, 3, True, ())]
    assert harness.venue.cod_order_ids() == [1]


@pytest.mark.parametrize(
    ("account", "order_ids"),
    [(0, (1,)), (1, (2, 1)), (1, (1, 1)), (1, (1, 2, 3))],
    ids=["account", "descending", "twice", "past-the-open-orders-bound"],
)
def test_a_bad_remark_is_refused_and_changes_nothing(
    account: int, order_ids: tuple[int, ...]
) -> None:
    harness = Harness(VenueConfig(open_orders_per_account_max=2))
    harness.place(1, BUY, 9_900, 100)
    harness.place(1, BUY, 9_901, 100)
    before, clock_before = harness.venue.state_hash(), harness.venue.ts_us
    command = SetCancelOnDisconnect(account=account, cod=True, order_ids=order_ids)
    refused = rejected(harness.do(command))
    assert (refused.reason, refused.command) == (ErrorCode.BAD_PARAM, "set_cancel_on_disconnect")
    harness.venue.ts_us = clock_before  # the clock is state too: only it moved
    assert harness.venue.state_hash() == before and harness.venue.cod_order_ids() == []
    assert SET_CANCEL_ON_DISCONNECT_PRECEDENCE == (ErrorCode.BAD_PARAM,)


def test_a_remarked_order_is_the_order_placed_so() -> None:
    """Marked since or marked when placed, the state is one: the same hash, and an order
    unmarked hashes as one never marked (as before the mark existed)."""
    for cod in (True, False):
        placed_so, remarked = Venue(), Venue()
        for venue, placed_cod in ((placed_so, cod), (remarked, not cod)):
            venue.execute(ListInstrument(ts_us=1, spec=make_spec()))
            place = PlaceOrder(ts_us=2, account=1, symbol=SYMBOL, side=BUY, price=9_900, qty=1)
            venue.execute(msgspec.structs.replace(place, cod=placed_cod))
            venue.execute(SetCancelOnDisconnect(ts_us=3, account=1, cod=cod, order_ids=()))
        remarked.execute(SetCancelOnDisconnect(ts_us=3, account=1, cod=cod, order_ids=(1,)))
        assert remarked.orders[1] == placed_so.orders[1]
        assert remarked.state_hash() == placed_so.state_hash()


# ----------------------------------------------------------------- a requote as one command


def _pair_of(venue: Venue, rng: random.Random, ts_us: int, accounts: list[int]) -> AmendPair:
    """A requote of an account's open bid and ask, most of them as a maker sends them, some
    to be refused: another's order, one not open, a price that crosses, a size the hold
    cannot carry or below what traded."""
    account = rng.choice(accounts)
    orders = list(venue.account_orders.get(account, {}).values())
    bids = [order for order in orders if order.side is BUY] or [None]
    asks = [order for order in orders if order.side is SELL] or [None]
    sides = []
    for order in (rng.choice(bids), rng.choice(asks)):
        if order is None or rng.random() < 0.1:  # none open, or another's, or a closed one
            sides.append((rng.randint(1, venue.last_order_id + 2), rng.randint(9_900, 10_100), 7))
            continue
        move = rng.choice((-2, -1, 1, 2)) * (1 if rng.random() < 0.9 else 60)  # 60: crosses
        huge = 10**9 if rng.random() < 0.05 else 2  # a hold that does not fit
        qty = order.cum_qty + rng.choice((order.leaves_qty, 1, 3, huge))
        if rng.random() < 0.03:
            qty = order.cum_qty  # completes it
        sides.append((order.order_id, order.price + move, qty))
    (bid_id, bid_price, bid_qty), (ask_id, ask_price, ask_qty) = sides
    return AmendPair(
        ts_us=ts_us,
        account=account,
        bid_order_id=bid_id,
        bid_price=bid_price,
        bid_qty=bid_qty,
        ask_order_id=ask_id,
        ask_price=ask_price,
        ask_qty=ask_qty,
    )


@pytest.mark.parametrize("ledger", [False, True])
def test_an_amend_pair_is_its_two_amends_in_turn(ledger: bool) -> None:
    """Seeded: on the same states, an `AmendPair` gives the events its bid's `AmendOrder`
    then its ask's give, split where `pair_split` says, and the same state (hash); with
    either side refused, or both, each as its amend alone would be."""
    workload = workloads.build("mixed", 3_000, seed=5)
    pairs, amends = workload.fresh_venue(ledger), workload.fresh_venue(ledger)
    accounts = sorted({c.account for c in workload.commands if isinstance(c, PlaceOrder)})
    rng = random.Random(9)
    refused = collections.Counter[tuple[bool, bool]]()
    for number, command in enumerate(workload.commands):
        assert pairs.execute(command) == amends.execute(command)
        if number % 3:
            continue
        pair = _pair_of(pairs, rng, command.ts_us, accounts)
        events = pairs.execute(pair)
        bid, ask = pair.sides()
        bid_events, ask_events = amends.execute(bid), amends.execute(ask)
        assert events == bid_events + ask_events
        assert pairs.pair_split == len(bid_events)
        refused[rejection_in(bid_events), rejection_in(ask_events)] += 1
        if number % 150 == 0:
            assert pairs.state_hash() == amends.state_hash()
    assert pairs.state_hash() == amends.state_hash()
    assert min(refused.values()) > 10 and len(refused) == 4, refused  # each mix was tried


def _quoting_venue() -> Venue:
    """Account 1 quotes a post-only bid (1) and ask (2), expire_maker, and rests a plain bid
    (5); account 2 rests an ask (3) and a bid good till 100 µs (4)."""
    venue = Venue()
    venue.execute(ListInstrument(ts_us=1, spec=make_spec()))
    quote = {"post_only": True, "stp": SelfTradePrevention.EXPIRE_MAKER}
    for ts_us, account, side, price, extra in (
        (2, 1, BUY, 9_990, quote),
        (3, 1, SELL, 10_010, quote),
        (4, 2, SELL, 10_020, {}),
        (5, 2, BUY, 9_900, {"tif": TimeInForce.GTD, "expire_at_us": 100}),
        (6, 1, BUY, 9_950, {}),
    ):
        place = PlaceOrder(
            ts_us=ts_us, account=account, symbol=SYMBOL, side=side, price=price, qty=10
        )
        venue.execute(msgspec.structs.replace(place, **extra))
    return venue


@pytest.mark.parametrize(
    ("ts_us", "sides", "kinds_of"),
    [
        # one order as both sides: amended twice, the second to the ask's price
        (50, (1, 9_991, 1, 9_992), ("OrderAmended", "OrderAmended")),
        # the same price twice: the second amend changes nothing and is refused
        (50, (1, 9_991, 1, 9_991), ("OrderAmended", "CommandRejected")),
        # an expiry due at the pair's time runs first, among the bid's events
        (100, (1, 9_991, 2, 10_011), ("OrderExpired", "OrderAmended", "OrderAmended")),
        # a bid (not post-only) amended into its own ask: the bid, the taker, is expired by
        # its own stp (the default, expire_taker), then the ask amended
        (50, (5, 10_010, 2, 10_012), ("OrderAmended", "SelfTradePrevented", "OrderAmended")),
    ],
    ids=["same order twice", "same order twice at one price", "expiry due", "self-trade"],
)
def test_an_amend_pair_in_the_corners_is_its_two_amends(
    ts_us: int, sides: tuple[int, int, int, int], kinds_of: tuple[str, ...]
) -> None:
    """Cases the seeded test may not draw: the pair's events are its bid's `AmendOrder`'s
    then its ask's, split where `pair_split` says, and the state (hash) theirs."""
    bid_id, bid_price, ask_id, ask_price = sides
    pair = AmendPair(
        ts_us=ts_us,
        account=1,
        bid_order_id=bid_id,
        bid_price=bid_price,
        bid_qty=10,
        ask_order_id=ask_id,
        ask_price=ask_price,
        ask_qty=10,
    )
    paired, amended = _quoting_venue(), _quoting_venue()
    events = paired.execute(pair)
    bid, ask = pair.sides()
    bid_events = amended.execute(bid)
    assert events == bid_events + amended.execute(ask)
    assert tuple(type(event).__name__ for event in events) == kinds_of
    assert paired.pair_split == len(bid_events)
    assert paired.state_hash() == amended.state_hash()


def rejection_in(events: list) -> bool:
    return bool(events) and type(events[-1]) is CommandRejected
