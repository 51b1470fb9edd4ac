"""Reject precedence: one row per reason, each breaking that rule and later ones at once.

Every row's order also violates as many later checks as it can, so the row passes only if
the engine reports the earliest reason in `engine.reasons` order.
"""

from typing import Any

import pytest

from engine.commands import AmendOrder, CancelOrder, PlaceOrder, SetInstrumentStatus
from engine.enums import InstrumentStatus, OrderType, Side, TimeInForce
from engine.events import CommandRejected
from engine.reasons import (
    AMEND_PRECEDENCE,
    CANCEL_PRECEDENCE,
    PLACE_PRECEDENCE,
    ErrorCode,
)
from engine.venue import VenueConfig
from tests.engine.conftest import SYMBOL, Harness

E = ErrorCode
LATER = dict(price=9_901, qty=3)  # off the tick (5) and off the step (2) and below min qty 4

# Rows: (reason, setup, order fields). Setup: a market status to set, and whether the book
# holds a resting ask at 10_000 of account 2 (so orders can cross, take or be unfillable).
PLACE_ROWS: list[tuple[ErrorCode, InstrumentStatus, dict[str, Any]]] = [
    (E.BAD_PARAM, InstrumentStatus.HALTED, dict(symbol="NOPE", price=0, **{"qty": 3})),
    (E.UNKNOWN_SYMBOL, InstrumentStatus.HALTED, dict(symbol="NOPE", **LATER)),
    (E.INSTRUMENT_DELISTED, InstrumentStatus.DELISTED, dict(cl_ord_id="live", **LATER)),
    (E.INSTRUMENT_HALTED, InstrumentStatus.HALTED, dict(cl_ord_id="live", **LATER)),
    (E.CANCEL_ONLY, InstrumentStatus.CANCEL_ONLY, dict(cl_ord_id="live", **LATER)),
    (E.POST_ONLY_MODE, InstrumentStatus.POST_ONLY, dict(cl_ord_id="live", **LATER)),
    (
        E.INVALID_EXPIRE_AT,
        InstrumentStatus.OPEN,
        dict(tif=TimeInForce.GTD, expire_at_us=1, cl_ord_id="live", **LATER),
    ),
    (E.DUPLICATE_CL_ORD_ID, InstrumentStatus.OPEN, dict(cl_ord_id="live", **LATER)),
    (E.INVALID_PRICE_TICK, InstrumentStatus.OPEN, dict(**LATER)),
    (E.INVALID_QTY_STEP, InstrumentStatus.OPEN, dict(price=9_900, qty=3)),
    (E.BELOW_MIN_QTY, InstrumentStatus.OPEN, dict(price=11_005, qty=2)),
    (E.ABOVE_MAX_QTY, InstrumentStatus.OPEN, dict(price=11_005, qty=5_002)),
    (E.PRICE_BAND, InstrumentStatus.OPEN, dict(price=11_005, qty=4)),
    (E.BELOW_MIN_NOTIONAL, InstrumentStatus.OPEN, dict(price=5, qty=4, post_only=True)),
    (E.ABOVE_MAX_NOTIONAL, InstrumentStatus.OPEN, dict(price=10_500, qty=4_800, post_only=True)),
    (E.TOO_MANY_OPEN_ORDERS, InstrumentStatus.OPEN, dict(price=10_000, qty=400, post_only=True)),
    (E.POST_ONLY_WOULD_TAKE, InstrumentStatus.OPEN, dict(price=10_000, qty=4, post_only=True)),
    (E.FOK_NOT_FILLABLE, InstrumentStatus.OPEN, dict(price=10_000, qty=4_000, tif=TimeInForce.FOK)),
    (
        E.MARKET_NO_LIQUIDITY,
        InstrumentStatus.OPEN,
        dict(side=Side.SELL, order_type=OrderType.MARKET, tif=TimeInForce.IOC, price=0, qty=4),
    ),
]
SETTLEMENT_REASONS = {E.NOT_ELIGIBLE, E.INSUFFICIENT_BALANCE}  # rows come with the ledger
# Its rows need numbers near 2**62 (the venue's bound): tests/engine/test_venue_bounds.py
BOUND_REASONS = {E.NOTIONAL_OUT_OF_RANGE}


def _harness(status: InstrumentStatus, open_orders_max: int) -> Harness:
    harness = Harness(
        VenueConfig(open_orders_per_account_max=open_orders_max),
        price_tick=5,
        qty_step=2,
        min_qty=4,
        min_notional=1,
        max_qty=5_000,
        max_notional=500_000,  # units of 0.000001: price x qty / 100
    )
    harness.place(1, Side.BUY, 8_500, 4, cl_ord_id="live")  # below the band: out of reach
    harness.place(2, Side.SELL, 10_000, 4)
    harness.place(1, Side.SELL, 10_005, 4)  # account 1's own ask: FOK may not count it
    harness.do(SetInstrumentStatus(symbol=SYMBOL, status=status))
    return harness


def test_every_engine_place_reason_has_a_row() -> None:
    covered = [row[0] for row in PLACE_ROWS]
    assert covered == [
        r for r in PLACE_PRECEDENCE if r not in SETTLEMENT_REASONS and r not in BOUND_REASONS
    ]


@pytest.mark.parametrize(("reason", "status", "fields"), PLACE_ROWS, ids=lambda v: str(v))
def test_place_precedence(reason: ErrorCode, status: InstrumentStatus, fields: dict) -> None:
    limit = 2 if reason is E.TOO_MANY_OPEN_ORDERS else 100
    harness = _harness(status, limit)
    order = dict(account=1, symbol=SYMBOL, side=Side.BUY) | fields
    before = harness.venue.state_hash()
    events = harness.do(PlaceOrder(**order))
    assert len(events) == 1 and isinstance(events[0], CommandRejected), events
    assert events[0].reason is reason, events[0]
    assert harness.venue.state_hash() != before  # only the clock moved ...
    harness.venue.ts_us -= 1
    assert harness.venue.state_hash() == before  # ... nothing else changed


CANCEL_ROWS = [
    (E.BAD_PARAM, dict(order_id=3, cl_ord_id="live")),  # both ids; 3 is also closed
    (E.UNKNOWN_ORDER, dict(order_id=4)),  # closed, but account 2's: unknown to account 1
    (E.ORDER_NOT_OPEN, dict(order_id=3)),
]


def test_every_cancel_reason_has_a_row() -> None:
    assert [row[0] for row in CANCEL_ROWS] == list(CANCEL_PRECEDENCE)


@pytest.mark.parametrize(("reason", "fields"), CANCEL_ROWS, ids=lambda v: str(v))
def test_cancel_precedence(reason: ErrorCode, fields: dict) -> None:
    harness = _harness(InstrumentStatus.OPEN, 100)
    harness.do(CancelOrder(account=1, order_id=3))
    harness.place(2, Side.SELL, 10_010, 4)  # order 4, account 2's ...
    harness.do(CancelOrder(account=2, order_id=4))  # ... and closed
    events = harness.do(CancelOrder(account=1, **fields))
    assert [e.reason for e in events if isinstance(e, CommandRejected)] == [reason]


AMEND_ROWS: list[tuple[ErrorCode, InstrumentStatus, dict[str, Any]]] = [
    (E.BAD_PARAM, InstrumentStatus.HALTED, dict(order_id=99)),
    (E.UNKNOWN_ORDER, InstrumentStatus.HALTED, dict(order_id=2, price=9_901)),
    (E.ORDER_NOT_OPEN, InstrumentStatus.HALTED, dict(order_id=3, price=9_901)),
    (E.INSTRUMENT_HALTED, InstrumentStatus.HALTED, dict(order_id=1, price=9_000)),
    (E.CANCEL_ONLY, InstrumentStatus.CANCEL_ONLY, dict(order_id=1, price=9_000)),
    (E.AMEND_REJECTED, InstrumentStatus.OPEN, dict(order_id=1, price=8_500, qty=4)),
    (E.DUPLICATE_CL_ORD_ID, InstrumentStatus.OPEN, dict(order_id=5, new_cl_ord_id="live", **LATER)),
    (E.INVALID_PRICE_TICK, InstrumentStatus.OPEN, dict(order_id=1, **LATER)),
    (E.INVALID_QTY_STEP, InstrumentStatus.OPEN, dict(order_id=1, price=11_005, qty=3)),
    (E.BELOW_MIN_QTY, InstrumentStatus.OPEN, dict(order_id=1, price=11_005, qty=2)),
    (E.ABOVE_MAX_QTY, InstrumentStatus.OPEN, dict(order_id=1, price=11_005, qty=5_002)),
    (E.PRICE_BAND, InstrumentStatus.OPEN, dict(order_id=1, price=11_005, qty=6)),
    (E.BELOW_MIN_NOTIONAL, InstrumentStatus.OPEN, dict(order_id=1, price=5, qty=4)),
    (E.ABOVE_MAX_NOTIONAL, InstrumentStatus.OPEN, dict(order_id=5, price=10_400, qty=4_810)),
    (E.POST_ONLY_MODE, InstrumentStatus.POST_ONLY, dict(order_id=5, price=10_000)),
    (E.POST_ONLY_WOULD_TAKE, InstrumentStatus.OPEN, dict(order_id=5, price=10_000)),
]


def test_every_engine_amend_reason_has_a_row() -> None:
    covered = [row[0] for row in AMEND_ROWS]
    assert covered == [
        r for r in AMEND_PRECEDENCE if r not in SETTLEMENT_REASONS and r not in BOUND_REASONS
    ]


@pytest.mark.parametrize(("reason", "status", "fields"), AMEND_ROWS, ids=lambda v: str(v))
def test_amend_precedence(reason: ErrorCode, status: InstrumentStatus, fields: dict) -> None:
    harness = _harness(InstrumentStatus.OPEN, 100)
    harness.do(CancelOrder(account=1, order_id=3))  # order 3: closed
    harness.place(1, Side.BUY, 9_500, 4, post_only=True, cl_ord_id="p")  # order 4
    harness.do(CancelOrder(account=1, order_id=4))
    harness.place(1, Side.BUY, 9_500, 2 * 4, post_only=True)  # order 5, post-only
    harness.place(2, Side.SELL, 9_500, 4)  # fills 4 of order 5: cum 4, leaves 4
    harness.do(SetInstrumentStatus(symbol=SYMBOL, status=status))
    before = harness.venue.state_hash()
    events = harness.do(AmendOrder(account=1, **fields))
    assert len(events) == 1 and isinstance(events[0], CommandRejected), events
    assert events[0].reason is reason, events[0]
    harness.venue.ts_us -= 1
    assert harness.venue.state_hash() == before
