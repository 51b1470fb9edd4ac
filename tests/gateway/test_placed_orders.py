"""`gateway.placed_orders`: what a released batch makes it forget (the server's use of it, on
a real venue, is in test_server and test_server_sessions)."""

from typing import Any, cast

import msgspec

from core.bus import ReadSide
from core.sequencer import Executed
from engine.commands import AmendOrder, CancelOrder, PlaceOrder
from engine.enums import CancelReason, OrderStatus, Side
from engine.events import (
    BalanceChanged,
    CommandRejected,
    OrderAmended,
    OrderCanceled,
    TradeExecuted,
)
from engine.reasons import ErrorCode
from gateway.placed_orders import PlacedOrders
from gateway.sessions import Session

ACCOUNT, TAKER = 7, 8
SYMBOL = "AAPLx-USD"


def amended(order_id: int, leaves_qty: int) -> OrderAmended:
    status = OrderStatus.NEW if leaves_qty else OrderStatus.FILLED
    return OrderAmended(1, order_id, ACCOUNT, SYMBOL, 100, 10, leaves_qty, 10 - leaves_qty,
                        status, False, None)  # fmt: skip


def trade(maker_order_id: int, maker_leaves_qty: int) -> TradeExecuted:
    maker_status = OrderStatus.PARTIALLY_FILLED if maker_leaves_qty else OrderStatus.FILLED
    return TradeExecuted(1, SYMBOL, 1, 100, 5, Side.BUY, maker_order_id, ACCOUNT,
                         maker_leaves_qty, 5, maker_status, 99, TAKER, 0, 5,
                         OrderStatus.FILLED)  # fmt: skip


def test_a_released_batch_forgets_every_order_its_commands_closed_and_only_those() -> None:
    """Across the batch's commands (a barrier's refusal among them): a quote amended down to
    what it traded, a placed order filled as maker and one canceled are forgotten; a quote
    amended with size left and an order filled only in part are kept."""
    placed = PlacedOrders(cast(ReadSide, None))  # the read side is not read to forget
    session = Session(1, cast(Any, None), True)
    for order_id in (11, 12, 13):
        session.placed.add(order_id)
        placed.placed_on[order_id] = session
    for order_id, side in ((21, Side.BUY), (22, Side.SELL)):
        slot = (ACCOUNT, "q", SYMBOL, side)
        placed.quotes[slot] = order_id
        placed.quote_slots[order_id] = slot
    refusal = CommandRejected(1, "amend_order", ErrorCode.UNKNOWN_ORDER, "no order 5", ACCOUNT)
    batch = [
        Executed(1, AmendOrder(ts_us=1, account=ACCOUNT, order_id=21, price=100, qty=10),
                 [amended(21, 5), BalanceChanged(1, ACCOUNT, "USD", 10, 5)], None),
        Executed(0, None, [refusal], None),  # a batch op refused before it was a command
        Executed(2, PlaceOrder(ts_us=1, account=TAKER, symbol=SYMBOL, side=Side.BUY),
                 [trade(11, 0), trade(12, 3)], None),
        Executed(3, AmendOrder(ts_us=1, account=ACCOUNT, order_id=22, qty=10),
                 [amended(22, 0)], None),
        Executed(4, CancelOrder(ts_us=1, account=ACCOUNT, order_id=13),
                 [OrderCanceled(1, 13, ACCOUNT, SYMBOL, CancelReason.USER, 5, 0)], None),
    ]  # fmt: skip
    placed.forget_closed(batch)
    assert set(placed.placed_on) == {12} and session.placed == {12}
    assert placed.quote_slots == {21: (ACCOUNT, "q", SYMBOL, Side.BUY)}
    assert placed.quotes == {(ACCOUNT, "q", SYMBOL, Side.BUY): 21}


def test_after_a_recovery_the_live_quotes_are_the_open_orders_of_each_set() -> None:
    """Each slot's live quote is its open order; of two (pipelined over a cluster's bus, the
    later tracked last), the later; orders of no set are no quotes, nor is a quote tracked
    before that is no longer open. The next requote of a slot amends its quote."""
    from types import SimpleNamespace

    from tests.engine.conftest import SYMBOL as LISTED
    from tests.engine.conftest import Harness

    harness = Harness()
    for side, price, quote_set in (
        (Side.BUY, 9_990, "q"),  # 1: the slot's earlier quote
        (Side.SELL, 10_010, "q"),  # 2
        (Side.BUY, 9_980, "q"),  # 3: the same slot's later one
        (Side.BUY, 9_970, "r"),  # 4: another set
        (Side.BUY, 9_960, None),  # 5: no set
    ):
        harness.place(ACCOUNT, side, price, 1_000, post_only=True, quote_set=quote_set)
    placed = PlacedOrders(cast(ReadSide, SimpleNamespace(orders=harness.venue.orders)))
    stale = (ACCOUNT, "gone", LISTED, Side.BUY)  # a replica's catching up tracked it, then closed
    placed.quotes[stale], placed.quote_slots[99] = 99, stale
    placed.adopt_quotes()
    assert placed.quotes == {
        (ACCOUNT, "q", LISTED, Side.BUY): 3,
        (ACCOUNT, "q", LISTED, Side.SELL): 2,
        (ACCOUNT, "r", LISTED, Side.BUY): 4,
    }
    assert sorted(placed.quote_slots) == [1, 2, 3, 4]
    requote = placed.requote((ACCOUNT, "q", LISTED, Side.BUY), 9_980, 500)
    assert requote == AmendOrder(account=ACCOUNT, order_id=3, price=9_980, qty=500)
    new_quote = placed.requote((ACCOUNT, "s", LISTED, Side.SELL), 10_020, 500)
    assert isinstance(new_quote, PlaceOrder) and new_quote.quote_set == "s"  # kept with it


def test_a_slot_holding_two_quotes_is_requoted_to_one_and_none_is_ever_unreachable() -> None:
    """Two quotes of one slot (places crossed through two gateways): the later is the live
    quote and the earlier is kept beside it (`extra_quotes`), by `adopt_quotes` as by
    `track_quote`; a requote amends the later and cancels the earlier (never the usual
    two-amend path); if the later closes first, the earlier is the live quote again."""
    from types import SimpleNamespace

    from tests.engine.conftest import SYMBOL as LISTED
    from tests.engine.conftest import Harness

    harness = Harness()
    placed_events = [
        harness.place(ACCOUNT, side, price, 1_000, post_only=True, quote_set="q")  # 1, 2, 3
        for side, price in ((Side.BUY, 9_990), (Side.SELL, 10_010), (Side.BUY, 9_980))
    ]
    placed = PlacedOrders(cast(ReadSide, SimpleNamespace(orders=harness.venue.orders)))
    bid = (ACCOUNT, "q", LISTED, Side.BUY)
    placed.adopt_quotes()
    assert placed.quotes[bid] == 3 and placed.extra_quotes == {bid: [1]}
    assert placed.requote(bid, 9_970, 500) == AmendOrder(
        account=ACCOUNT, order_id=3, price=9_970, qty=500
    )
    assert placed.extra_cancels(bid, 5) == [CancelOrder(ts_us=5, account=ACCOUNT, order_id=1)]
    assert placed.amends(ACCOUNT, "q", LISTED, (9_970, 500, 10_020, 500), 5) is None
    placed.forget_quote(3)  # the live one closed (say filled): the earlier takes its place
    assert placed.quotes[bid] == 1 and placed.extra_quotes == {}
    placed.quotes.clear()
    placed.quote_slots.clear()
    for events in (placed_events[0], placed_events[2]):  # as the places come back, in order
        placed.track_quote(bid, events)
    assert placed.quotes[bid] == 3 and placed.extra_quotes == {bid: [1]}
    placed.forget_quote(1)  # the earlier closed: the slot holds one quote again
    assert placed.quotes[bid] == 3 and placed.extra_quotes == {}


def test_over_a_lagging_replica_a_requote_builds_on_the_amends_in_flight_until_all_are_back() -> (
    None
):
    """A cluster gateway's replica shows a quote at 9,990 while amends sent from here are on
    their way (to 9,980, then back to 9,990, then to 9,980 again): each requote is decided on
    the last one sent, and the usual two-sided path steps aside, until every one of them is
    back, told by its request (an outcome of another origin counts for nothing, and the
    first one back, though it matches the last sent, leaves two owed). Then the replica is
    the base again. An embedded venue's never has anything in flight."""
    from types import SimpleNamespace

    from tests.engine.conftest import SYMBOL as LISTED
    from tests.engine.conftest import Harness

    harness = Harness()
    harness.place(ACCOUNT, Side.BUY, 9_990, 1_000, post_only=True, quote_set="q")  # order 1
    harness.place(ACCOUNT, Side.SELL, 10_010, 1_000, post_only=True, quote_set="q")  # order 2
    reads = cast(ReadSide, SimpleNamespace(orders=harness.venue.orders))
    placed = PlacedOrders(reads, replica_lags=True)
    placed.adopt_quotes()
    bid = (ACCOUNT, "q", LISTED, Side.BUY)
    requests = [object(), object(), object()]
    sent = [
        AmendOrder(ts_us=5, account=ACCOUNT, order_id=1, price=price, qty=1_000)
        for price in (9_980, 9_990, 9_980)
    ]
    taker = PlaceOrder(ts_us=5, account=ACCOUNT, symbol=LISTED, side=Side.SELL, qty=1)
    for amend, request in zip(sent, requests, strict=True):
        placed.sent([amend, taker], request, 0.0)
    assert list(placed.in_flight) == [1] and not placed.placing, "no place of a quote"
    back = placed.requote(bid, 9_990, 1_000)
    assert back == AmendOrder(account=ACCOUNT, order_id=1, price=9_990, qty=1_000)
    assert placed.requote(bid, 9_980, 1_000) is None, "where the last amend sent puts it"
    assert placed.amends(ACCOUNT, "q", LISTED, (9_980, 1_000, 10_020, 1_000), 6) is None

    def outcome(amend: AmendOrder, origin: object) -> Executed:  # stamped anew by the core
        return Executed(3, msgspec.structs.replace(amend, ts_us=7), [amended(1, 1_000)], origin)

    placed.forget_closed([outcome(sent[0], requests[0]), outcome(sent[1], object())])
    assert placed.requote(bid, 9_980, 1_000) is None, "two owed: still the last one sent"
    placed.forget_closed([outcome(sent[1], requests[1]), outcome(sent[2], requests[2])])
    assert placed.in_flight == {}
    assert placed.requote(bid, 9_990, 1_000) is None, "the replica's own (not amended here)"

    embedded = PlacedOrders(reads)
    embedded.sent(sent, requests[0], 0.0)
    assert embedded.in_flight == {}


def _a_quoted_bid_over_a_lagging_replica() -> tuple[Any, PlacedOrders, Any]:
    """A venue whose one quote (order 1) is a bid at 9,990 for 1,000, its `PlacedOrders` as
    a cluster's gateway keeps it, and the bid's slot."""
    from types import SimpleNamespace

    from tests.engine.conftest import SYMBOL as LISTED
    from tests.engine.conftest import Harness

    harness = Harness()
    harness.place(ACCOUNT, Side.BUY, 9_990, 1_000, post_only=True, quote_set="q")  # order 1
    reads = cast(ReadSide, SimpleNamespace(orders=harness.venue.orders))
    placed = PlacedOrders(reads, replica_lags=True)
    placed.adopt_quotes()
    return harness, placed, (ACCOUNT, "q", LISTED, Side.BUY)


def test_over_a_lagging_replica_fills_count_and_a_refusal_or_a_close_ends_the_trust() -> None:
    """The size sent was what had traded plus the display: a fill the replica learns of
    meanwhile shows in the next requote's comparison. An owed amend refused at the core
    leaves its price unknown: the next requote amends, not skips. A quote that closes owes
    nothing any more."""
    harness, placed, bid = _a_quoted_bid_over_a_lagging_replica()
    first, second = object(), object()
    sent = AmendOrder(ts_us=5, account=ACCOUNT, order_id=1, price=9_990, qty=1_200)
    placed.sent([sent], first, 0.0)
    placed.sent([sent], second, 0.0)
    harness.place(TAKER, Side.SELL, 9_990, 200)  # the replica learns of a fill of 200
    assert harness.venue.orders[1].cum_qty == 200
    assert placed.requote(bid, 9_990, 1_000) is None, "1,200 sent less 200 traded: 1,000 shown"
    assert placed.requote(bid, 9_990, 1_200) == AmendOrder(
        account=ACCOUNT, order_id=1, price=9_990, qty=1_400
    )
    refusal = CommandRejected(1, "amend_order", ErrorCode.AMEND_REJECTED, "nothing", ACCOUNT)
    placed.forget_closed([Executed(3, sent, [refusal], first)])
    assert placed.requote(bid, 9_990, 1_000) is not None, "unknown now: amended, not skipped"
    placed.forget_quote(1)
    assert placed.in_flight == {}, "closed: nothing owed"


def test_over_a_lagging_replica_a_quote_whose_cancel_is_owed_is_requoted_by_a_place() -> None:
    """A pull (its cancel sent, not back) then a requote, pipelined: the replica still shows
    the quote, but the core will not have it, so the requote places a new one rather than
    amend a canceled order (refused). A pull again has nothing to do; an earlier amend
    refused meanwhile does not bring the canceled quote back; a mass cancel skips it."""
    _, placed, bid = _a_quoted_bid_over_a_lagging_replica()
    earlier, pull = object(), object()
    amend = AmendOrder(ts_us=5, account=ACCOUNT, order_id=1, price=9_980, qty=1_000)
    placed.sent([amend], earlier, 0.0)
    placed.sent([CancelOrder(ts_us=5, account=ACCOUNT, order_id=1)], pull, 0.0)
    assert placed.canceling(1) and not placed.canceling(2)
    again = placed.requote(bid, 9_980, 1_000)
    assert isinstance(again, PlaceOrder) and (again.price, again.qty) == (9_980, 1_000)
    assert again.quote_set == "q" and again.post_only
    assert placed.requote(bid, 9_980, 0) is None, "pulled already"
    refusal = CommandRejected(1, "amend_order", ErrorCode.AMEND_REJECTED, "nothing", ACCOUNT)
    placed.forget_closed([Executed(3, amend, [refusal], earlier)])
    assert placed.canceling(1), "the cancel sent is final"
    assert isinstance(placed.requote(bid, 9_970, 1_000), PlaceOrder)


def test_over_a_lagging_replica_a_quotes_place_in_flight_blocks_its_slot_until_back() -> None:
    """A quote's place sent from here marks its slot until its outcome is back: a request of
    that quote set on that symbol (or on the whole set) is blocked; another symbol, set or
    account is not. An embedded venue marks nothing."""
    placed = PlacedOrders(cast(ReadSide, None), replica_lags=True)
    slot = (ACCOUNT, "q", SYMBOL, Side.BUY)
    place = PlaceOrder(ts_us=5, account=ACCOUNT, symbol=SYMBOL, side=Side.BUY, quote_set="q")
    taker = PlaceOrder(ts_us=5, account=ACCOUNT, symbol=SYMBOL, side=Side.BUY)
    placed.sent([place, taker], object(), 7.0)
    assert placed.placing == {slot: 7.0}, "a quote's place, not a plain order's"
    assert placed.blocked(ACCOUNT, "q", {SYMBOL}) and placed.blocked(ACCOUNT, "q", None)
    assert not placed.blocked(ACCOUNT, "q", {"MSFTx-USD"})
    assert not placed.blocked(ACCOUNT, "other", {SYMBOL})
    assert not placed.blocked(TAKER, "q", {SYMBOL})
    later = (ACCOUNT, "q", "MSFTx-USD", Side.SELL)
    placed.sent([msgspec.structs.replace(place, symbol="MSFTx-USD", side=Side.SELL)], None, 9.0)
    assert placed.placing_since(ACCOUNT, "q", None) == 7.0, "the oldest place in flight"
    assert placed.placing_since(ACCOUNT, "q", {"MSFTx-USD"}) == 9.0
    assert placed.placing_since(ACCOUNT, "other", None) is None
    placed.place_back(later)
    placed.place_back((ACCOUNT, "q", SYMBOL, Side.SELL))
    assert placed.blocked(ACCOUNT, "q", {SYMBOL}), "the other side's slot"
    placed.place_back(slot)
    assert placed.placing == {} and not placed.blocked(ACCOUNT, "q", None)

    embedded = PlacedOrders(cast(ReadSide, None))
    embedded.sent([place], object(), 0.0)
    assert embedded.placing == {}
