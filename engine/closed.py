"""The venue's memory of recently closed orders: whose they were, for `ORDER_NOT_OPEN`.

Remembers exactly the last `capacity` closed orders, forgetting the oldest first. The ids
live in chunks of at most `CHUNK` entries rather than one big dict, because a dict that
grows rehashes everything it holds at once: at a million entries that stalls one command
for tens of milliseconds. A full chunk never changes again; it is dropped whole once every
entry in it is forgotten. Until then its forgotten entries (the oldest ones) stay in it and
are told apart by their position, so that `add`, on the hot path of every closing order,
only stores the id (the venue's hottest paths write it out: store into `filling`, `seal` when
full). Lookups (only on the rejection path) try each chunk, newest first.
"""

from collections import deque
from collections.abc import Iterator
from itertools import islice

CHUNK = 16_384  # a rehash of this many entries costs well under a millisecond


class ClosedOrders:
    __slots__ = ("_chunks", "_positions", "capacity", "chunk_size", "filling")

    def __init__(self, capacity: int) -> None:
        assert capacity > 0, "remember at least one closed order"
        self.capacity = capacity
        # No larger than the capacity, so that the newest chunk is never partly forgotten.
        self.chunk_size = min(CHUNK, capacity)
        # The newest chunk, the one `add` fills; `seal` it once it holds `chunk_size` ids.
        self.filling: dict[int, int] = {}
        self._chunks: deque[dict[int, int]] = deque([self.filling])  # id -> account, oldest first
        # Where each id sits in the one chunk that may be partly forgotten, built when a
        # lookup first needs it: (that chunk, id -> position).
        self._positions: tuple[dict[int, int], dict[int, int]] | None = None

    def add(self, order_id: int, account: int) -> None:
        chunk = self.filling
        chunk[order_id] = account
        if len(chunk) >= self.chunk_size:
            self.seal()

    def seal(self) -> None:
        """Start a new chunk after a full one; drop the oldest chunks once wholly forgotten."""
        self.filling = {}
        chunks = self._chunks
        chunks.append(self.filling)
        while self._forgotten() >= self.chunk_size:
            dropped = chunks.popleft()
            if self._positions is not None and self._positions[0] is dropped:
                self._positions = None

    def _forgotten(self) -> int:
        """How many of the oldest stored entries are past the capacity."""
        stored = (len(self._chunks) - 1) * self.chunk_size + len(self.filling)
        return max(0, stored - self.capacity)

    def owner(self, order_id: int) -> int | None:
        """The account whose order this was, if it is remembered."""
        forgotten = self._forgotten()
        size = self.chunk_size
        for index in range(len(self._chunks) - 1, -1, -1):
            chunk = self._chunks[index]
            account = chunk.get(order_id)
            if account is None:
                continue
            start = index * size  # the position of the chunk's first entry
            if start >= forgotten:
                return account
            if start + size <= forgotten:
                return None
            return account if start + self._position(chunk, order_id) >= forgotten else None
        return None

    def _position(self, chunk: dict[int, int], order_id: int) -> int:
        """Where `order_id` sits in `chunk`, a full chunk (so the positions never change)."""
        if self._positions is None or self._positions[0] is not chunk:
            self._positions = (chunk, {key: at for at, key in enumerate(chunk)})
        return self._positions[1][order_id]

    def __contains__(self, order_id: int) -> bool:
        return self.owner(order_id) is not None

    def __len__(self) -> int:
        stored = (len(self._chunks) - 1) * self.chunk_size + len(self.filling)
        return min(stored, self.capacity)

    def items(self) -> Iterator[tuple[int, int]]:
        """(order id, account), oldest first."""
        skip = self._forgotten()
        for chunk in self._chunks:
            if skip >= len(chunk):
                skip -= len(chunk)
                continue
            yield from islice(chunk.items(), skip, None)
            skip = 0
