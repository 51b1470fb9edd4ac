"""The closed-order memory: exactly the last N, across chunk boundaries, oldest forgotten first."""

from engine.closed import CHUNK, ClosedOrders


def test_remembers_exactly_the_last_capacity_orders() -> None:
    closed = ClosedOrders(capacity=3)
    for order_id in range(1, 6):
        closed.add(order_id, account=order_id * 10)
    assert len(closed) == 3
    assert [closed.owner(i) for i in range(1, 6)] == [None, None, 30, 40, 50]
    assert list(closed.items()) == [(3, 30), (4, 40), (5, 50)]


def test_across_chunks() -> None:
    capacity = 2 * CHUNK + 5
    closed = ClosedOrders(capacity)
    total = 3 * CHUNK + 100
    for order_id in range(1, total + 1):
        closed.add(order_id, account=7)
    assert len(closed) == capacity
    first_kept = total - capacity + 1
    assert closed.owner(first_kept - 1) is None and first_kept - 1 not in closed
    assert closed.owner(first_kept) == 7 and closed.owner(total) == 7
    assert [order_id for order_id, _ in closed.items()] == list(range(first_kept, total + 1))
