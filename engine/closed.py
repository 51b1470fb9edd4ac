"""The venue's memory of recently closed orders: whose they were, for `ORDER_NOT_OPEN`.

Remembers exactly the last `capacity` closed orders, forgetting the oldest first. The ids
live in chunks of at most `CHUNK` entries rather than one big dict, because a dict that
grows rehashes everything it holds at once: at a million entries that stalls one command
for tens of milliseconds. Chunks grow small and are dropped whole once emptied. Lookups
(only on the rejection path) try each chunk, newest first.
"""

from collections import deque
from collections.abc import Iterator

CHUNK = 16_384  # a rehash of this many entries costs well under a millisecond


class ClosedOrders:
    __slots__ = ("_chunks", "_last", "_order", "capacity")

    def __init__(self, capacity: int) -> None:
        assert capacity > 0, "remember at least one closed order"
        self.capacity = capacity
        self._last: dict[int, int] = {}  # the newest chunk, the one `add` fills
        self._chunks: deque[dict[int, int]] = deque([self._last])  # id -> account, oldest first
        self._order: deque[int] = deque()  # every remembered id, in closing order

    def add(self, order_id: int, account: int) -> None:
        chunk = self._last  # never dropped: it holds the id just added
        if len(chunk) >= CHUNK:
            chunk = self._last = {}
            self._chunks.append(chunk)
        chunk[order_id] = account
        order = self._order
        order.append(order_id)
        if len(order) > self.capacity:
            oldest = self._chunks[0]
            del oldest[order.popleft()]
            if not oldest:
                self._chunks.popleft()

    def owner(self, order_id: int) -> int | None:
        """The account whose order this was, if it is remembered."""
        for chunk in reversed(self._chunks):
            account = chunk.get(order_id)
            if account is not None:
                return account
        return None

    def __contains__(self, order_id: int) -> bool:
        return self.owner(order_id) is not None

    def __len__(self) -> int:
        return len(self._order)

    def items(self) -> Iterator[tuple[int, int]]:
        """(order id, account), oldest first."""
        for chunk in self._chunks:
            yield from chunk.items()
