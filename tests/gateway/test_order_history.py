"""The order history on its own: what it learns from exec reports, its bound, lookups, pages,
and its snapshot image. (Through a real server: tests/gateway/test_server_order_history.py.)"""

import msgspec

from core.snapshot_entries import OrderRecord
from gateway.order_history import OrderHistory
from gateway.reports import BalanceReport, ExecReport, Push

SYMBOL = "AAPLx-USD"
OTHER = "MSFTx-USD"
ALICE, BOB = 1, 2


def push(
    order_id: int | None,
    exec_type: str,
    status: str,
    ts: int,
    cl_ord_id: str | None = None,
    symbol: str = SYMBOL,
    reason: str | None = None,
) -> Push:
    """An exec report as `ExecReporter` makes one (only the fields history reads vary)."""
    data = ExecReport(
        exec_type=exec_type,
        status=status,
        exec_id=1,
        order_id=order_id,
        cl_ord_id=cl_ord_id,
        symbol=symbol,
        side="buy",
        type="limit",
        tif="gtc",
        price="1.00",
        qty="2.000000",
        quote_qty=None,
        leaves_qty="0.000000",
        cum_qty="0.000000",
        avg_px="0.000000",
        last_px=None,
        last_qty=None,
        liquidity=None,
        trade_id=None,
        fee=None,
        fee_asset=None,
        tag=None,
        quote_set=None,
        reason=reason,
    )
    return Push("account", 0, 0, "exec", ts, data)


def open_and_close(
    history: OrderHistory,
    account: int,
    order_id: int,
    cl_ord_id: str | None = None,
    symbol: str = SYMBOL,
) -> None:
    """Order `order_id` accepted at ts 10 x id and canceled at ts 10 x id + 5."""
    accepted = push(order_id, "new", "new", 10 * order_id, cl_ord_id, symbol)
    canceled = push(order_id, "canceled", "canceled", 10 * order_id + 5, cl_ord_id, symbol, "user")
    history.record([(account, accepted)])
    history.record([(account, canceled)])


def ids(records: list[OrderRecord]) -> list[int]:
    return [record.order_id for record in records]


def test_a_closed_order_keeps_its_final_state_and_both_timestamps() -> None:
    history = OrderHistory()
    open_and_close(history, ALICE, 7, "c7")
    record = history.find(ALICE, 7, None)
    assert record is not None
    assert (record.status, record.reason, record.created_ts, record.closed_ts) == (
        "canceled",
        "user",
        70,
        75,
    )
    assert history.find(ALICE, None, "c7") == record
    assert history.accepted_ts == {}, "an order's acceptance time is dropped once it closed"


def test_open_orders_rejected_places_and_other_pushes_are_not_closed_orders() -> None:
    history = OrderHistory()
    history.record(
        [
            (ALICE, push(1, "new", "new", 10)),
            (ALICE, push(None, "rejected", "rejected", 11, "refused")),  # a refused place
            (ALICE, push(1, "rejected", "new", 12)),  # a refused cancel of an open order
            (
                ALICE,
                Push("account", 0, 0, "balance", 13, BalanceReport("USD", "1.00", "1.00", "0.00")),
            ),
        ]
    )
    assert history.find(ALICE, 1, None) is None
    assert history.find(ALICE, None, "refused") is None
    assert history.accepted_ts == {1: 10}


def test_another_accounts_closed_order_is_invisible() -> None:
    history = OrderHistory()
    open_and_close(history, ALICE, 1, "mine")
    assert history.find(BOB, 1, None) is None
    assert history.find(BOB, None, "mine") is None
    assert history.unknown(BOB, 1) == history.unknown(BOB, 10**9)


def test_the_bound_forgets_the_oldest_closed_first_and_says_so() -> None:
    history = OrderHistory(capacity=3)
    for order_id in (1, 2, 3, 4):
        open_and_close(history, ALICE, order_id, f"c{order_id}")
    assert [history.find(ALICE, i, None) is not None for i in (1, 2, 3, 4)] == [
        False,
        True,
        True,
        True,
    ]
    assert history.find(ALICE, None, "c1") is None
    assert "older" in history.unknown(ALICE, 1) and "3 closed orders" in history.unknown(ALICE, 1)
    assert history.unknown(ALICE, 99) == "no such order for this account"
    assert history.unknown(BOB, 1) == "no such order for this account", "Bob trimmed nothing"


def test_the_total_bound_forgets_the_venues_oldest_closed_first_across_accounts() -> None:
    history = OrderHistory(capacity=3, total_capacity=4)
    for order_id, account in ((1, ALICE), (2, BOB), (3, ALICE), (4, BOB), (5, BOB)):
        open_and_close(history, account, order_id, f"c{order_id}")
    # five closed, four kept: Alice's order 1 was the venue's oldest, though Alice has two
    assert [history.find(ALICE, i, None) is not None for i in (1, 3)] == [False, True]
    assert [history.find(BOB, i, None) is not None for i in (2, 4, 5)] == [True, True, True]
    assert history.find(ALICE, None, "c1") is None
    assert "4 across accounts" in history.unknown(ALICE, 1)
    assert history.unknown(BOB, 1) == "no such order for this account", "Bob's own only"
    open_and_close(history, ALICE, 6)
    assert history.find(BOB, 2, None) is None and len(history.closing) == 4


def test_the_image_keeps_the_closing_order_across_accounts() -> None:
    history = OrderHistory(capacity=10, total_capacity=3)
    for order_id, account in ((1, BOB), (2, ALICE), (3, BOB)):
        open_and_close(history, account, order_id)
    image = msgspec.msgpack.decode(msgspec.msgpack.encode(history.image()))
    restored = OrderHistory(capacity=10, total_capacity=3)
    restored.restore(image)
    for copy in (history, restored):  # each forgets order 1 (Bob's), then order 2 (Alice's)
        open_and_close(copy, ALICE, 4)
        open_and_close(copy, BOB, 5)
    for account in (ALICE, BOB):
        assert restored.page(account, [], {}, limit=10) == history.page(account, [], {}, limit=10)
    assert list(restored.closing) == list(history.closing) == [3, 4, 5]


def test_a_reused_cl_ord_id_finds_the_order_that_closed_last() -> None:
    history = OrderHistory(capacity=2)
    open_and_close(history, ALICE, 1, "same")
    open_and_close(history, ALICE, 2, "same")
    record = history.find(ALICE, None, "same")
    assert record is not None and record.order_id == 2
    open_and_close(history, ALICE, 3, "other")
    open_and_close(history, ALICE, 4, "other2")  # order 2 is forgotten now
    assert history.find(ALICE, None, "same") is None


def test_pages_go_newest_first_with_a_cursor_and_filters() -> None:
    history = OrderHistory()
    for order_id in range(1, 8):
        open_and_close(history, ALICE, order_id, symbol=OTHER if order_id % 2 else SYMBOL)
    first, cursor = history.page(ALICE, [], {}, limit=3)
    assert ids(first) == [7, 6, 5] and cursor == 5
    second, cursor = history.page(ALICE, [], {}, before_order_id=cursor, limit=3)
    assert ids(second) == [4, 3, 2] and cursor == 2
    last, cursor = history.page(ALICE, [], {}, before_order_id=cursor, limit=3)
    assert ids(last) == [1] and cursor is None
    exact, cursor = history.page(ALICE, [], {}, limit=7)
    assert len(exact) == 7 and cursor is None, "no cursor when nothing more matches"
    evens, _ = history.page(ALICE, [], {}, symbol=SYMBOL, limit=10)
    assert ids(evens) == [6, 4, 2]
    # accepted at 10 x id: since 30 (inclusive) until 60 (exclusive) is orders 3, 4, 5
    window, _ = history.page(ALICE, [], {}, since_ts=30, until_ts=60, limit=10)
    assert ids(window) == [5, 4, 3]
    assert history.page(ALICE, [], {}, status="open", limit=10) == ([], None)
    assert history.page(BOB, [], {}, limit=10) == ([], None)


def test_the_image_restores_the_same_history() -> None:
    history = OrderHistory(capacity=3)
    for order_id in range(1, 6):
        open_and_close(history, ALICE, order_id, f"c{order_id % 2}")
    history.record([(BOB, push(9, "new", "new", 90))])  # still open
    image = msgspec.msgpack.decode(msgspec.msgpack.encode(history.image()))
    restored = OrderHistory(capacity=3)
    restored.restore(image)
    assert restored.page(ALICE, [], {}, limit=10) == history.page(ALICE, [], {}, limit=10)
    assert restored.find(ALICE, None, "c1") == history.find(ALICE, None, "c1")
    assert restored.unknown(ALICE, 1) == history.unknown(ALICE, 1)
    assert restored.accepted_ts == {9: 90}
    # and it goes on forgetting in the same order as the original would
    for copy in (history, restored):
        open_and_close(copy, ALICE, 6)
    assert restored.page(ALICE, [], {}, limit=10) == history.page(ALICE, [], {}, limit=10)


def test_pages_stay_newest_first_as_orders_close_between_them_and_are_forgotten() -> None:
    """Ids closed since the last page are sorted in only when a page asks: pages between
    closes, and the bound forgetting ids both sorted in and not yet, still list exactly the
    retained closed orders, highest id first."""
    history = OrderHistory(capacity=5)
    order_ids = [7, 3, 9, 1, 12, 4, 8, 2, 11, 6, 10, 5]  # closing order, not id order
    for count, order_id in enumerate(order_ids, start=1):
        open_and_close(history, ALICE, order_id)
        if count % 3 == 0:
            rows, _ = history.page(ALICE, [], {}, limit=10)
            retained = order_ids[max(0, count - 5) : count]
            assert ids(rows) == sorted(retained, reverse=True)
    rows, _ = history.page(ALICE, [], {}, limit=10)
    assert ids(rows) == sorted(order_ids[-5:], reverse=True)
    first, cursor = history.page(ALICE, [], {}, limit=2)
    rest, _ = history.page(ALICE, [], {}, before_order_id=cursor, limit=10)
    assert ids(first + rest) == ids(rows)


def test_the_image_reads_the_ordered_dicts_in_their_order_after_forgetting_and_restoring() -> None:
    """Session 34: the image reads the closed orders with `dict.values` and `dict.keys` (a
    snapshot's capture on the event loop: a third of the ordered dict's time at 500,000), not
    the ordered dict's own order. They agree while nothing moves a key but by deleting and
    adding it again: after each bound's forgetting and a restore, the same lists."""
    history = OrderHistory(capacity=5, total_capacity=12)
    for order_id in range(1, 60):
        open_and_close(history, (ALICE, BOB, 3)[order_id % 7 % 3], order_id, f"c{order_id % 4}")
    restored = OrderHistory(capacity=5, total_capacity=12)
    restored.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(history.image())))
    for copy in (history, restored):
        for order_id in range(60, 70):
            open_and_close(copy, (ALICE, BOB)[order_id % 2], order_id)
        image = copy.image()
        assert image["closing"] == list(copy.closing)
        assert image["accounts"] == {
            str(account): [kept.trimmed_max, list(kept.closed.values())]
            for account, kept in copy.accounts.items()
        }
    assert msgspec.msgpack.encode(restored.image()) == msgspec.msgpack.encode(history.image())


def test_a_restored_history_shares_its_strings_and_ids_as_the_live_one_does() -> None:
    """Session 34: a restarted venue held twice the memory it had. A live history's records
    share one string per value (a symbol, a side, a price: the reports' constants and decimal
    tables), a restored one held a string per record and field (~300 MB at the bound) and its
    closing order keyed by the image's ids, equal to the records' but other objects (28 bytes
    each). Now a restore shares them as the live history does, and holds what it held."""
    history = OrderHistory()
    for order_id in range(1_000, 1_060):  # (ids above CPython's cached small ints)
        open_and_close(history, (ALICE, BOB, 3)[order_id % 3], order_id, f"c{order_id}")
    restored = OrderHistory()
    restored.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(history.image())))
    records = [r for kept in restored.accounts.values() for r in kept.closed.values()]
    assert len(records) == 60
    for name in ("symbol", "side", "type", "tif", "price", "qty", "status", "reason"):
        assert len({id(getattr(record, name)) for record in records}) == 1, name
    by_id = {record.order_id: record for record in records}
    assert all(order_id is by_id[order_id].order_id for order_id in restored.closing)
    assert msgspec.msgpack.encode(restored.image()) == msgspec.msgpack.encode(history.image())
