"""Private pushes from a real venue with a ledger: exec reports, balances and settlements."""

import copy
import json
from typing import Any

import msgspec
import pytest

from engine.commands import (
    AdvanceClock,
    AmendOrder,
    AttestReserves,
    CancelAll,
    CancelOrder,
    Command,
    Deposit,
    ListAsset,
    ListInstrument,
    OpenAccount,
    PlaceOrder,
    SetInstrumentStatus,
    SplitShares,
)
from engine.enums import InstrumentStatus, OrderType, SelfTradePrevention, Side, TimeInForce
from engine.events import (
    CommandRejected,
    Event,
    OrderCanceled,
    ReferencePriceSet,
    TradeSettled,
)
from engine.units import format_units
from engine.venue import Venue
from gateway import reports
from gateway.reports import ExecReporter, anonymized
from settlement.ledger import Ledger
from settlement.transfers import FEE_INCOME
from tests.engine.conftest import SYMBOL, make_spec

Push = dict[str, Any]  # a push as a client decodes it

BUY, SELL = Side.BUY, Side.SELL
USD = 1_000_000  # one dollar in units
SHARE = 1_000_000  # one share in units
PX = 100  # one dollar in price units (2 decimals)


class Desk:
    """A cleared venue (USD, AAPLx; accounts 1-3 funded) whose every event is reported."""

    def __init__(self, ledger: bool = True) -> None:
        self.venue = Venue(ledger=Ledger() if ledger else None)
        self.reporter = ExecReporter()
        spec = make_spec(maker_fee_bps=1, taker_fee_bps=5)
        setup: list[Command] = [ListInstrument(spec=spec)]
        if ledger:
            setup = [
                ListAsset(code="USD", scale=6),
                ListAsset(code="AAPLx", scale=6),
                *setup,
                AttestReserves(asset="USD", amount=10**9 * USD, as_of_us=1),
                AttestReserves(asset="AAPLx", amount=10**6 * SHARE, as_of_us=1),
            ]
            for account in (1, 2, 3):
                setup += [
                    OpenAccount(
                        account=account, name=f"a{account}", kyc_approved=True, jurisdiction="DE"
                    ),
                    Deposit(account=account, asset="USD", amount=10_000 * USD),
                    Deposit(account=account, asset="AAPLx", amount=100 * SHARE),
                ]
        for command in setup:  # the reporter learns instruments and assets from the events
            pushes = self.do(command)
            assert all(push["type"] == "balance" for _, push in pushes)  # deposits
            assert not any(isinstance(e, CommandRejected) for e in self.last_events)

    def events(self, command: Command) -> list[Event]:
        if not command.ts_us:
            command = msgspec.structs.replace(command, ts_us=self.venue.ts_us + 1)
        events = self.venue.execute(command)
        self.venue.check_invariants()
        self.last_events = events
        return events

    def do(self, command: Command, **more: Any) -> list[tuple[int, Push]]:
        return plain(self.reporter.reports(self.events(command), command=command, **more))

    def place(
        self, account: int, side: Side, price: int, qty: int, **more: Any
    ) -> list[tuple[int, Push]]:
        quote_set = more.pop("quote_set", None)
        command = PlaceOrder(
            account=account, symbol=SYMBOL, side=side, price=price, qty=qty, **more
        )
        return self.do(command, quote_set=quote_set)


def plain(reports: list[tuple[int, reports.Push]]) -> list[tuple[int, Push]]:
    """The reports as plain JSON values: what a client decodes from the wire, less the
    `seq` and `epoch` the server sets (still 0 here)."""
    plain = [(account, msgspec.to_builtins(push)) for account, push in reports]
    for _, push in plain:
        assert push.pop("seq") == push.pop("epoch") == 0
    return plain


def execs(pushes: list[tuple[int, Push]]) -> list[tuple[int, dict[str, Any]]]:
    return [(account, push["data"]) for account, push in pushes if push["type"] == "exec"]


def of_type(pushes: list[tuple[int, Push]], kind: str) -> list[tuple[int, Push]]:
    return [(account, push) for account, push in pushes if push["type"] == kind]


@pytest.fixture
def desk() -> Desk:
    return Desk()


def test_a_new_order_is_reported_with_every_field(desk: Desk) -> None:
    pushes = desk.place(1, BUY, 100 * PX, 2 * SHARE, cl_ord_id="c-1", tag="t")
    account, push = pushes[0]
    assert account == 1
    assert push == {
        "ch": "account",
        "type": "exec",
        "ts": desk.venue.ts_us,
        "data": {
            "exec_type": "new",
            "status": "new",
            "exec_id": 1,
            "order_id": 1,
            "cl_ord_id": "c-1",
            "symbol": SYMBOL,
            "side": "buy",
            "type": "limit",
            "tif": "gtc",
            "price": "100.00",
            "qty": "2.000000",
            "quote_qty": None,
            "leaves_qty": "2.000000",
            "cum_qty": "0.000000",
            "avg_px": "0.000000",
            "last_px": None,
            "last_qty": None,
            "liquidity": None,
            "trade_id": None,
            "fee": None,
            "fee_asset": None,
            "tag": "t",
            "quote_set": None,
            "reason": None,
        },
    }
    # The hold: 200 USD + 5 bps, as a balance push at the asset's scale.
    assert pushes[1] == (
        1,
        {
            "ch": "account",
            "type": "balance",
            "ts": desk.venue.ts_us,
            "data": {
                "asset": "USD",
                "total": "10000.000000",
                "available": "9799.900000",
                "held": "200.100000",
            },
        },
    )
    assert len(pushes) == 2


def test_a_trade_reports_to_the_maker_and_to_the_taker(desk: Desk) -> None:
    desk.place(2, SELL, 100 * PX, 3 * SHARE, cl_ord_id="m")  # order 1, the maker
    pushes = desk.place(1, BUY, 10_050, 1 * SHARE, cl_ord_id="t")  # order 2, improves 0.50
    reports = execs(pushes)
    assert [(account, r["exec_type"]) for account, r in reports] == [
        (1, "new"),
        (2, "trade"),
        (1, "trade"),
    ]
    maker, taker = reports[1][1], reports[2][1]
    common = {"exec_type": "trade", "symbol": SYMBOL, "last_px": "100.00", "trade_id": 1}
    assert maker == maker | common | {
        "order_id": 1,
        "cl_ord_id": "m",
        "side": "sell",
        "status": "partially_filled",
        "price": "100.00",
        "qty": "3.000000",
        "leaves_qty": "2.000000",
        "cum_qty": "1.000000",
        "avg_px": "100.000000",
        "last_qty": "1.000000",
        "liquidity": "maker",
        "fee": "0.010000",  # 1 bp of 100 USD
        "fee_asset": "USD",
    }
    assert taker == taker | common | {
        "order_id": 2,
        "cl_ord_id": "t",
        "side": "buy",
        "status": "filled",
        "price": "100.50",
        "leaves_qty": "0.000000",
        "cum_qty": "1.000000",
        "avg_px": "100.000000",
        "liquidity": "taker",
        "fee": "0.050000",  # 5 bps
    }
    assert maker["exec_id"] + 1 == taker["exec_id"]
    assert set(desk.reporter.orders) == {1}  # the filled taker is forgotten


def test_the_settlement_goes_to_both_participants_each_with_its_own_legs(desk: Desk) -> None:
    desk.place(2, SELL, 100 * PX, 3 * SHARE)
    pushes = desk.place(1, BUY, 100 * PX, 1 * SHARE)
    settlements = of_type(pushes, "settlement")
    assert [account for account, _ in settlements] == [2, 1]  # maker first, then taker
    seller, buyer = (push["data"] for _, push in settlements)
    for data in (seller, buyer):
        assert (data["trade_id"], data["symbol"]) == (1, SYMBOL)
        assert data["settlement_id"] > 0
    assert seller["settlement_id"] == buyer["settlement_id"]

    def legs(data: dict[str, Any]) -> list[dict[str, Any]]:
        return [{k: v for k, v in leg.items() if k != "transfer_id"} for leg in data["legs"]]

    # Each sees its own legs; the counterparty is null, the venue's fee account named.
    assert legs(buyer) == [
        {"kind": "delivery", "from": None, "to": 1, "asset": "AAPLx", "amount": "1.000000"},
        {"kind": "payment", "from": 1, "to": None, "asset": "USD", "amount": "100.000000"},
        {"kind": "fee", "from": 1, "to": FEE_INCOME, "asset": "USD", "amount": "0.050000"},
    ]
    assert legs(seller) == [
        {"kind": "delivery", "from": 2, "to": None, "asset": "AAPLx", "amount": "1.000000"},
        {"kind": "payment", "from": None, "to": 2, "asset": "USD", "amount": "100.000000"},
        {"kind": "fee", "from": 2, "to": FEE_INCOME, "asset": "USD", "amount": "0.010000"},
    ]
    ids = [leg["transfer_id"] for leg in buyer["legs"]] + [seller["legs"][-1]["transfer_id"]]
    assert ids == list(range(ids[0], ids[0] + 4))
    balances = {
        (account, push["data"]["asset"]): push["data"]
        for account, push in of_type(pushes, "balance")
    }
    assert balances[(1, "AAPLx")]["total"] == "101.000000"
    assert balances[(2, "USD")] == {
        "asset": "USD",
        "total": "10099.990000",
        "available": "10099.990000",
        "held": "0.000000",
    }
    assert all(account > 0 for account, _ in pushes)  # no pushes to the venue's accounts


def test_avg_px_is_the_average_of_the_fills(desk: Desk) -> None:
    desk.place(2, SELL, 100 * PX, 1 * SHARE)
    desk.place(2, SELL, 100 * PX, 1 * SHARE)
    desk.place(3, SELL, 10_001, 1 * SHARE)
    taker = [r for account, r in execs(desk.place(1, BUY, 10_001, 3 * SHARE)) if account == 1]
    assert [(r["exec_type"], r["avg_px"], r["last_px"]) for r in taker] == [
        ("new", "0.000000", None),
        ("trade", "100.000000", "100.00"),
        ("trade", "100.000000", "100.00"),
        ("trade", "100.003333", "100.01"),  # 300.01 / 3, to 4 more decimals than the price
    ]
    assert taker[-1]["status"] == "filled" and taker[-1]["cum_qty"] == "3.000000"


def test_cancel_reports_the_reason_and_forgets_the_order(desk: Desk) -> None:
    desk.place(1, BUY, 99 * PX, 2 * SHARE, cl_ord_id="c")
    desk.place(2, SELL, 99 * PX, 1 * SHARE)  # half fills it
    pushes = desk.do(CancelOrder(account=1, cl_ord_id="c"))
    [(account, report)] = execs(pushes)
    assert account == 1
    assert report | {"exec_id": 0} == report | {
        "exec_id": 0,
        "exec_type": "canceled",
        "status": "canceled",
        "order_id": 1,
        "leaves_qty": "0.000000",
        "cum_qty": "1.000000",
        "avg_px": "99.000000",
        "reason": "user",
        "last_px": None,
    }
    assert desk.reporter.orders == {}
    released = [push["data"] for _, push in of_type(pushes, "balance")]
    assert released[-1]["held"] == "0.000000"


def test_a_close_reports_its_events_cum_qty_even_where_the_last_report_said_less(
    desk: Desk,
) -> None:
    """A closing report takes the filled quantity and its average price from the order's last
    report while the event agrees with it (every close the engine makes); one that says more
    (events out of the engine's order) is reported as the event says, averaged over what the
    order traded, not with the last report's strings."""
    desk.place(1, BUY, 99 * PX, 3 * SHARE, cl_ord_id="c")
    desk.place(2, SELL, 99 * PX, 1 * SHARE)  # fills a third: 1 share at 99
    [canceled] = [
        event
        for event in desk.events(CancelOrder(account=1, cl_ord_id="c"))
        if type(event) is OrderCanceled
    ]
    later = msgspec.structs.replace(canceled, cum_qty=2 * SHARE)  # as if a fill went unseen
    [(_, report)] = execs(plain(desk.reporter.reports([later])))
    assert (report["leaves_qty"], report["cum_qty"], report["avg_px"]) == (
        "0.000000",
        "2.000000",
        "49.500000",  # the 99.00 traded, over 2 shares
    )


def test_mass_cancel_reports_each_order(desk: Desk) -> None:
    desk.place(1, BUY, 99 * PX, SHARE, tag="a")
    desk.place(1, BUY, 98 * PX, SHARE, tag="b")
    reports = execs(desk.do(CancelAll(account=1)))
    assert [(r["order_id"], r["reason"], r["tag"]) for _, r in reports] == [
        (1, "mass_cancel", "a"),
        (2, "mass_cancel", "b"),
    ]


def test_amend_reports_the_new_terms(desk: Desk) -> None:
    desk.place(1, BUY, 99 * PX, 2 * SHARE, cl_ord_id="a")
    [(_, report)] = execs(
        desk.do(AmendOrder(account=1, cl_ord_id="a", price=9_950, new_cl_ord_id="b"))
    )
    assert (report["exec_type"], report["status"], report["price"], report["cl_ord_id"]) == (
        "amended",
        "new",
        "99.50",
        "b",
    )
    desk.place(2, SELL, 9_950, SHARE)  # fills half
    [(_, done)] = execs(desk.do(AmendOrder(account=1, order_id=1, qty=SHARE)))
    assert (done["exec_type"], done["status"], done["qty"], done["leaves_qty"]) == (
        "amended",
        "filled",  # amended down to what already traded
        "1.000000",
        "0.000000",
    )
    assert desk.reporter.orders == {}


def test_a_partly_filled_quote_moved_in_price_reports_its_fills_so_far(desk: Desk) -> None:
    """A requote that moves only the price takes the quantities' strings from the order's
    last report: that must be its last fill's, not its last amend's."""
    desk.place(2, SELL, 100 * PX, 3 * SHARE)
    seen = []
    for command in (
        PlaceOrder(account=1, symbol=SYMBOL, side=BUY, price=100 * PX, qty=SHARE),
        AmendOrder(account=2, order_id=1, price=101 * PX),
        PlaceOrder(account=1, symbol=SYMBOL, side=BUY, price=101 * PX, qty=SHARE),
        AmendOrder(account=2, order_id=1, price=102 * PX),
        AmendOrder(account=2, order_id=1, price=103 * PX, qty=4 * SHARE),
    ):
        [(_, report)] = [(a, r) for a, r in execs(desk.do(command)) if a == 2]
        seen.append((report["exec_type"], report["price"], report["qty"], report["leaves_qty"]))
        seen.append((report["cum_qty"], report["avg_px"]))
    assert seen == [
        ("trade", "100.00", "3.000000", "2.000000"),
        ("1.000000", "100.000000"),
        ("amended", "101.00", "3.000000", "2.000000"),
        ("1.000000", "100.000000"),
        ("trade", "101.00", "3.000000", "1.000000"),
        ("2.000000", "100.500000"),
        ("amended", "102.00", "3.000000", "1.000000"),
        ("2.000000", "100.500000"),
        ("amended", "103.00", "4.000000", "2.000000"),
        ("2.000000", "100.500000"),
    ]


def test_an_amend_that_crosses_trades_as_taker(desk: Desk) -> None:
    desk.place(2, SELL, 101 * PX, SHARE)
    desk.place(1, BUY, 99 * PX, SHARE)
    reports = execs(desk.do(AmendOrder(account=1, order_id=2, price=101 * PX)))
    assert [(a, r["exec_type"], r.get("liquidity")) for a, r in reports] == [
        (1, "amended", None),
        (2, "trade", "maker"),
        (1, "trade", "taker"),
    ]
    assert reports[2][1]["fee"] == "0.050500"  # 5 bps of 101 USD
    assert desk.reporter.orders == {}


def test_gtd_expiry_is_reported(desk: Desk) -> None:
    expire_at = desk.venue.ts_us + 10
    desk.place(1, SELL, 101 * PX, SHARE, tif=TimeInForce.GTD, expire_at_us=expire_at)
    assert execs(desk.do(AdvanceClock(ts_us=expire_at - 1))) == []
    [(account, report)] = execs(desk.do(AdvanceClock(ts_us=expire_at)))
    assert (account, report["exec_type"], report["status"], report["reason"]) == (
        1,
        "expired",
        "expired",
        "gtd",
    )
    assert (report["tif"], report["leaves_qty"]) == ("gtd", "0.000000")
    assert desk.reporter.orders == {}


def test_ioc_rest_is_canceled(desk: Desk) -> None:
    desk.place(2, SELL, 100 * PX, SHARE)
    reports = execs(desk.place(1, BUY, 100 * PX, 3 * SHARE, tif=TimeInForce.IOC))
    last = reports[-1][1]
    assert (last["exec_type"], last["reason"], last["cum_qty"]) == (
        "canceled",
        "ioc_rest",
        "1.000000",
    )
    assert desk.reporter.orders == {}


def test_market_buy_by_quote_amount(desk: Desk) -> None:
    desk.place(2, SELL, 100 * PX, 5 * SHARE)
    command = PlaceOrder(
        account=1,
        symbol=SYMBOL,
        side=BUY,
        order_type=OrderType.MARKET,
        tif=TimeInForce.IOC,
        quote_qty=250 * USD,
    )
    reports = execs(desk.do(command))
    new, trade = reports[0][1], reports[-1][1]
    assert (new["type"], new["price"], new["qty"], new["quote_qty"]) == (
        "market",
        None,
        "0.000000",
        "250.000000",
    )
    assert (trade["status"], trade["cum_qty"], trade["last_qty"]) == (
        "filled",
        "2.500000",
        "2.500000",
    )


@pytest.mark.parametrize(
    ("stp", "expected"),
    [
        (SelfTradePrevention.EXPIRE_TAKER, [(2, "taker")]),
        (SelfTradePrevention.EXPIRE_MAKER, [(1, "maker")]),
        (SelfTradePrevention.EXPIRE_BOTH, [(1, "maker"), (2, "taker")]),
    ],
)
def test_self_trade_prevention_is_reported(
    desk: Desk, stp: SelfTradePrevention, expected: list[tuple[int, str]]
) -> None:
    desk.place(1, SELL, 100 * PX, SHARE)
    reports = execs(desk.place(1, BUY, 100 * PX, SHARE, stp=stp))
    prevented = [r for _, r in reports if r["exec_type"] == "stp"]
    assert [(r["order_id"], r["liquidity"]) for r in prevented] == expected
    assert all((r["status"], r["reason"]) == ("expired", "stp") for r in prevented)
    assert all(r["leaves_qty"] == "0.000000" for r in prevented)
    assert sorted(desk.reporter.orders) == sorted({1, 2} - {o for o, _ in expected})


def test_a_self_trade_without_prevention_pays_both_fees(desk: Desk) -> None:
    desk.place(1, SELL, 100 * PX, SHARE)
    pushes = desk.place(1, BUY, 100 * PX, SHARE, stp=SelfTradePrevention.NONE)
    trades = [r for _, r in execs(pushes) if r["exec_type"] == "trade"]
    assert [(r["liquidity"], r["fee"]) for r in trades] == [
        ("maker", "0.010000"),
        ("taker", "0.050000"),
    ]
    assert [account for account, _ in of_type(pushes, "settlement")] == [1]  # once


def test_a_refused_place_is_a_rejected_report(desk: Desk) -> None:
    command = PlaceOrder(
        account=3, symbol=SYMBOL, side=BUY, price=100 * PX, qty=100 * SHARE, cl_ord_id="big"
    )
    [(account, report)] = execs(desk.do(command))
    assert account == 3
    assert report | {"exec_id": 0} == report | {
        "exec_id": 0,
        "exec_type": "rejected",
        "status": "rejected",
        "order_id": None,
        "cl_ord_id": "big",
        "side": "buy",
        "type": "limit",
        "tif": "gtc",
        "price": "100.00",
        "qty": "100.000000",
        "leaves_qty": "0.000000",
        "cum_qty": "0.000000",
        "reason": "INSUFFICIENT_BALANCE",
    }
    assert desk.reporter.orders == {}
    # Without the command only what the rejection says is known.
    [(_, bare)] = execs(plain(desk.reporter.reports(desk.last_events)))
    assert (bare["cl_ord_id"], bare["side"], bare["price"], bare["reason"]) == (
        "big",
        None,
        None,
        "INSUFFICIENT_BALANCE",
    )


def test_a_duplicate_client_id_does_not_name_the_live_order(desk: Desk) -> None:
    desk.place(1, BUY, 99 * PX, SHARE, cl_ord_id="dup")
    [(_, report)] = execs(desk.place(1, BUY, 98 * PX, SHARE, cl_ord_id="dup"))
    assert (report["order_id"], report["reason"]) == (None, "DUPLICATE_CL_ORD_ID")
    assert set(desk.reporter.orders) == {1}


def test_refused_amends_and_cancels(desk: Desk) -> None:
    desk.place(1, BUY, 99 * PX, SHARE, tag="x")
    [(_, same)] = execs(desk.do(AmendOrder(account=1, order_id=1, price=99 * PX)))
    assert (same["exec_type"], same["status"], same["reason"], same["tag"]) == (
        "rejected",
        "new",  # the order is as it was
        "AMEND_REJECTED",
        "x",
    )
    [(_, gone)] = execs(desk.do(CancelOrder(account=1, order_id=77)))
    assert (gone["order_id"], gone["status"], gone["reason"]) == (77, "rejected", "UNKNOWN_ORDER")
    [(_, other)] = execs(desk.do(CancelOrder(account=2, order_id=1)))
    assert other["reason"] == "UNKNOWN_ORDER" and other["side"] is None  # not account 1's news


def test_exec_ids_count_up_across_accounts(desk: Desk) -> None:
    desk.place(2, SELL, 100 * PX, SHARE)
    desk.place(1, BUY, 100 * PX, SHARE)
    desk.place(3, BUY, 99 * PX, SHARE)
    assert desk.reporter.last_exec_id == 5  # new, new, maker, taker, new
    ids = [r["exec_id"] for _, r in execs(desk.do(CancelAll(account=3)))]
    assert ids == [6]


def test_quote_sets_ride_along(desk: Desk) -> None:
    [(_, new)] = execs(desk.place(1, BUY, 99 * PX, SHARE, post_only=True, quote_set="mm"))
    assert new["quote_set"] == "mm"
    reports = execs(desk.place(2, SELL, 99 * PX, SHARE))
    assert [(a, r["exec_type"], r["quote_set"]) for a, r in reports] == [
        (2, "new", None),
        (1, "trade", "mm"),
        (2, "trade", None),
    ]


def test_a_venue_without_a_ledger_reports_zero_fees() -> None:
    desk = Desk(ledger=False)
    desk.place(2, SELL, 100 * PX, SHARE)
    pushes = desk.place(1, BUY, 100 * PX, SHARE)
    trades = [r for _, r in execs(pushes) if r["exec_type"] == "trade"]
    assert [(r["fee"], r["fee_asset"]) for r in trades] == [("0.000000", "USD")] * 2
    assert of_type(pushes, "settlement") == of_type(pushes, "balance") == []


def test_adopted_orders_report_like_seen_ones(desk: Desk) -> None:
    desk.place(2, SELL, 100 * PX, 2 * SHARE, cl_ord_id="m")
    desk.place(1, BUY, 100 * PX, SHARE)
    fresh = ExecReporter(
        {SYMBOL: desk.venue.markets[SYMBOL].spec}, {"USD": 6, "AAPLx": 6}, last_exec_id=100
    )
    for order in desk.venue.open_orders(2):
        fresh.adopt(order, quote_set="q")
    pushes = plain(fresh.reports(desk.events(CancelOrder(account=2, cl_ord_id="m"))))
    [(account, report)] = execs(pushes)
    assert (account, report["exec_id"], report["cum_qty"], report["avg_px"]) == (
        2,
        101,
        "1.000000",
        "100.000000",
    )
    assert (report["quote_set"], report["cl_ord_id"]) == ("q", "m")


def test_orders_adopted_before_the_specs_are_learned_report_like_seen_ones(desk: Desk) -> None:
    """A restore adopts the open orders before the server teaches the reporter the specs
    (`PrivateStreams.restore`, then `VenueServer._learn_reference_data`): given the spec, an
    adopted order's later reports (fills at two prices, an amend, a cancel) equal those of
    the reporter that saw it open."""
    desk.place(2, SELL, 100 * PX, 3 * SHARE, cl_ord_id="m")
    desk.place(3, BUY, 100 * PX, SHARE)
    spec = desk.venue.markets[SYMBOL].spec
    fresh = ExecReporter(last_exec_id=desk.reporter.last_exec_id)
    for order in desk.venue.open_orders(2):
        fresh.adopt(order, None, spec)
    fresh.specs[SYMBOL] = spec
    fresh.asset_scales.update({"USD": 6, "AAPLx": 6})
    commands: list[Command] = [
        AmendOrder(account=2, cl_ord_id="m", price=101 * PX, new_cl_ord_id="n"),
        PlaceOrder(account=1, symbol=SYMBOL, side=BUY, price=101 * PX, qty=SHARE),
        CancelOrder(account=2, cl_ord_id="n"),
    ]
    for command in commands:
        events = desk.events(command)
        seen = [push for push in plain(desk.reporter.reports(events)) if push[0] == 2]
        assert [push for push in plain(fresh.reports(events)) if push[0] == 2] == seen
        assert any(push["type"] == "exec" for _, push in seen)
    [(_, canceled)] = execs(seen)
    assert (canceled["exec_type"], canceled["avg_px"], canceled["cum_qty"]) == (
        "canceled",
        "100.500000",  # one share at 100, one at 101
        "2.000000",
    )


def test_corporate_actions_reach_each_holder_once_with_its_own_numbers(desk: Desk) -> None:
    from engine.commands import PayDividend, SetInstrumentStatus, SplitShares
    from engine.enums import InstrumentStatus

    desk.place(2, SELL, 101 * PX, 3 * SHARE)
    pay = PayDividend(symbol=SYMBOL, payer=3, amount=1_234_567, amount_decimals=7)
    pushes = desk.do(pay)
    actions = of_type(pushes, "corporate_action")
    assert [account for account, _ in actions] == [1, 2]  # the payer (3) is not a holder
    assert actions[0][1]["data"] == {
        "kind": "dividend",
        "symbol": SYMBOL,
        "asset": "AAPLx",
        "ratio": None,
        "amount_per_share": "0.1234567",
        "holding_before": "100.000000",
        "holding_after": "100.000000",
        "cash_asset": "USD",
        "cash_received": "12.345670",
        "settlement_id": actions[0][1]["data"]["settlement_id"],
    }
    desk.do(SetInstrumentStatus(symbol=SYMBOL, status=InstrumentStatus.HALTED))
    pushes = desk.do(SplitShares(symbol=SYMBOL, ratio_new=2, ratio_old=1))
    [(account, report)] = execs(pushes)
    assert account == 2 and report["exec_type"] == "amended"
    assert (report["price"], report["qty"], report["leaves_qty"]) == (
        "50.50",
        "6.000000",
        "6.000000",
    )
    split = {account: push["data"] for account, push in of_type(pushes, "corporate_action")}
    assert split[2]["ratio"] == "2:1" and split[2]["holding_after"] == "200.000000"
    assert set(split) == {1, 2, 3}


def test_a_settlement_stored_before_anonymity_is_anonymized_on_restore() -> None:
    # An older snapshot's private history holds settlements with both participants' ids.
    leg = {"transfer_id": 1, "kind": "delivery", "asset": "AAPLx", "amount": "1.000000"}
    old = {
        "ch": "account",
        "seq": 5,
        "epoch": 1,
        "type": "settlement",
        "ts": 2,
        "data": {
            "settlement_id": 1,
            "trade_id": 1,
            "symbol": SYMBOL,
            "legs": [
                leg | {"from": 2, "to": 1},
                leg | {"transfer_id": 2, "kind": "fee", "from": 2, "to": FEE_INCOME},
            ],
        },
    }
    seen = json.loads(anonymized(1, json.dumps(old, separators=(",", ":")).encode()))
    assert seen["data"]["legs"] == [leg | {"from": None, "to": 1}]
    again = anonymized(1, json.dumps(seen, separators=(",", ":")).encode())
    assert json.loads(again) == seen, "an anonymous settlement stays as it is"
    balance = b'{"ch":"account","seq":6,"type":"balance","data":{}}'
    assert anonymized(1, balance) == balance


def test_order_reports_are_the_execs_that_open_or_close_an_order(desk: Desk) -> None:
    """What `OrderHistory.record` is given: no balances, settlements or open-order updates."""

    def order_reports() -> list[tuple[int, str, str]]:
        return [
            (account, push.data.exec_type, push.data.status)  # type: ignore[union-attr]
            for account, push in desk.reporter.order_reports
        ]

    desk.place(1, SELL, 100 * PX, 2 * SHARE)
    assert order_reports() == [(1, "new", "new")]
    desk.do(AmendOrder(account=1, order_id=1, price=101 * PX))
    assert order_reports() == [], "an amend that leaves the order open"
    desk.place(2, BUY, 101 * PX, SHARE)  # fills the taker in full, the maker in part
    assert order_reports() == [(2, "new", "new"), (2, "trade", "filled")]
    desk.do(AmendOrder(account=1, order_id=1, qty=SHARE))  # down to what it traded: done
    assert order_reports() == [(1, "amended", "filled")]
    desk.place(3, BUY, 99 * PX, SHARE)
    desk.do(CancelOrder(account=3, order_id=3))
    assert order_reports() == [(3, "canceled", "canceled")]


# ----------------------------------------------------------------- the specialised paths


def test_an_amend_pushes_its_report_then_the_hold_it_moved_as_the_general_path_does(
    desk: Desk,
) -> None:
    """An amend's events take their own path in `reports` (the most frequent command); an
    unrelated event appended sends the same events through the general loop instead: both
    give the same pushes, a buy's with its cash balance after the report, a sell's alone."""
    desk.place(1, BUY, 99 * PX, 2 * SHARE)
    desk.place(2, SELL, 101 * PX, 2 * SHARE)
    for account, order_id, price in ((1, 1, 98 * PX), (2, 2, 102 * PX)):
        events = desk.events(AmendOrder(account=account, order_id=order_id, price=price))
        twin = copy.deepcopy(desk.reporter)
        general = twin.reports([*events, ReferencePriceSet(ts_us=1, symbol=SYMBOL, price=PX)])
        special = desk.reporter.reports(events)
        assert plain(special) == plain(general)
        assert desk.reporter.last_exec_id == twin.last_exec_id
        kinds = [(to, push["type"]) for to, push in plain(special)]
        if account == 1:  # the buy's hold moved with its price
            assert kinds == [(1, "exec"), (1, "balance")]
            cash = desk.venue.ledger.balance(1, "USD")  # type: ignore[union-attr]
            pushed = plain(special)[1][1]["data"]
            assert (pushed["total"], pushed["held"]) == (
                format_units(cash.total, 6),
                format_units(cash.held, 6),
            )
        else:  # a sell holds the security, whose quantity did not change
            assert kinds == [(2, "exec")]


def test_a_settlement_apart_from_its_trade_goes_out_in_its_own_place(desk: Desk) -> None:
    """The clearing books a settlement right after its trade, and its pushes follow the
    trade's at once; one that came later (events in another order) still goes out where its
    event is, with the trade's fees found in it all the same, and the balances it carries
    change in its place."""
    desk.place(2, SELL, 100 * PX, 3 * SHARE)
    events = desk.events(PlaceOrder(account=1, symbol=SYMBOL, side=BUY, price=100 * PX, qty=SHARE))
    twin, apart = copy.deepcopy(desk.reporter), copy.deepcopy(desk.reporter)
    at_once = plain(desk.reporter.reports(events))
    settled = next(event for event in events if type(event) is TradeSettled)
    later = plain(twin.reports([event for event in events if event is not settled] + [settled]))
    settlements = [push for push in at_once if push[1]["type"] == "settlement"]
    assert len(settlements) == 2

    def without_balances(pushes: list[tuple[int, Push]]) -> list[tuple[int, Push]]:
        return [push for push in pushes if push[1]["type"] != "balance"]

    assert (
        without_balances(later)
        == [push for push in without_balances(at_once) if push[1]["type"] != "settlement"]
        + settlements
    )
    # Last come the balances the settlement carries (each party's base and quote): in the
    # engine's order nothing changes them after it but the taker's release of its hold.
    carried = [(to, push["data"]["asset"]) for to, push in later[-4:]]
    assert sorted(carried) == [(1, "AAPLx"), (1, "USD"), (2, "AAPLx"), (2, "USD")]
    # An event between the trade and its settlement moves nothing: every push as at once.
    between = events.index(settled)
    shuffled = [*events[:between], ReferencePriceSet(ts_us=1, symbol=SYMBOL, price=PX)]
    assert plain(apart.reports([*shuffled, *events[between:]])) == at_once


def test_a_sweep_pushes_each_balance_once_in_its_final_state(desk: Desk) -> None:
    """Three fills against two makers change the taker's and the makers' balances several
    times each, in interleaved order: each (account, asset) gets one push, the last state,
    and every other push stays in its order."""
    desk.place(2, SELL, 100 * PX, SHARE)
    desk.place(3, SELL, 100 * PX + 1, SHARE)
    desk.place(2, SELL, 100 * PX + 2, SHARE)
    pushes = desk.place(1, BUY, 100 * PX + 2, 3 * SHARE)
    balances = [(to, push["data"]) for to, push in pushes if push["type"] == "balance"]
    keys = [(to, data["asset"]) for to, data in balances]
    assert len(keys) == len(set(keys)) == 6  # three accounts, two assets each
    ledger = desk.venue.ledger
    assert ledger is not None
    for to, data in balances:
        now = ledger.balance(to, data["asset"])
        assert (data["total"], data["held"]) == (
            format_units(now.total, 6),
            format_units(now.held, 6),
        )
    others = [(to, push["type"]) for to, push in pushes if push["type"] != "balance"]
    fills = [
        [(maker, "exec"), (1, "exec"), (maker, "settlement"), (1, "settlement")]
        for maker in (2, 3, 2)
    ]
    assert others == [(1, "exec"), *fills[0], *fills[1], *fills[2]]


def test_a_split_rescales_a_partly_filled_orders_cum_qty_in_its_amend_reports(desk: Desk) -> None:
    """A split's amend carries the filled quantity in new shares: the report's cum_qty is the
    event's (2 shares filled at 100 are 4 at 50 after a 2:1 split), in the split's own report
    and in the later amend's (the amend path must not keep the pre-split figure)."""
    desk.place(2, SELL, 100 * PX, 4 * SHARE)
    desk.place(1, BUY, 100 * PX, 2 * SHARE, tif=TimeInForce.IOC)
    desk.do(SetInstrumentStatus(symbol=SYMBOL, status=InstrumentStatus.HALTED))
    split = [r for a, r in execs(desk.do(SplitShares(symbol=SYMBOL, ratio_new=2, ratio_old=1)))]
    desk.do(SetInstrumentStatus(symbol=SYMBOL, status=InstrumentStatus.OPEN))
    [(_, requote)] = execs(desk.do(AmendOrder(account=2, order_id=1, price=51 * PX)))
    for report in [*split, requote]:
        assert report["exec_type"] == "amended"
        assert (report["qty"], report["leaves_qty"]) == ("8.000000", "4.000000")
        assert (report["cum_qty"], report["avg_px"]) == ("4.000000", "50.000000")
