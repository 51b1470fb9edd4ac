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


def test_matches_a_plain_list_of_the_last_capacity_orders() -> None:
    # Chunks of `capacity` entries when it is below CHUNK: the forgotten entries of a full
    # chunk are told apart by position, before and after the chunk is dropped whole.
    for capacity in (1, 2, 3, 5):
        closed = ClosedOrders(capacity)
        added: list[tuple[int, int]] = []
        for order_id in range(1, 8 * capacity + 3):
            closed.add(order_id, account=order_id % 4 + 1)
            added.append((order_id, order_id % 4 + 1))
            assert_remembers_the_last(closed, added, capacity)


def test_forgets_by_position_inside_a_full_chunk() -> None:
    capacity = CHUNK + 7
    closed = ClosedOrders(capacity)
    total = 3 * CHUNK + 11
    for order_id in range(1, total + 1):
        closed.add(order_id, account=order_id % 9)
        if order_id in (capacity, capacity + 1, 2 * CHUNK, 2 * CHUNK + 1, total):
            first_kept = max(1, order_id - capacity + 1)
            for probe in (first_kept - 2, first_kept - 1, first_kept, first_kept + 1, order_id):
                expected = probe % 9 if first_kept <= probe <= order_id else None
                assert closed.owner(probe) == expected, (order_id, probe)
            assert len(closed) == order_id - first_kept + 1
    assert [order_id for order_id, _ in closed.items()] == list(
        range(total - capacity + 1, total + 1)
    )


def test_ids_stored_directly_and_sealed_late_are_forgotten_exactly() -> None:
    # The venue's hottest paths store into `filling` and leave the seal to its clock
    # (`seal_if_full`): a chunk then holds more than `chunk_size` ids, the filling one may be
    # partly forgotten, and the memory still matches a plain list of the last `capacity`.
    for capacity in (1, 2, 3, 5):
        closed = ClosedOrders(capacity)
        added: list[tuple[int, int]] = []
        for order_id in range(1, 12 * capacity + 3):
            account = order_id % 4 + 1
            if order_id % 3:
                closed.filling[order_id] = account
            else:
                closed.add(order_id, account)
            if order_id % 7 == 0:  # the clock comes round
                closed.seal_if_full()
            added.append((order_id, account))
            assert_remembers_the_last(closed, added, capacity)


def assert_remembers_the_last(
    closed: ClosedOrders, added: list[tuple[int, int]], capacity: int
) -> None:
    """`closed` answers as a plain list of the last `capacity` of `added` would."""
    kept = added[-capacity:]
    assert list(closed.items()) == kept
    assert len(closed) == len(kept)
    owners = dict(kept)
    newest = added[-1][0]
    assert [closed.owner(i) for i in range(newest + 2)] == [
        owners.get(i) for i in range(newest + 2)
    ]
