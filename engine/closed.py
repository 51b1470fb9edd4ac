"""The venue's memory of recently closed orders: whose they were, for `ORDER_NOT_OPEN`.

Remembers exactly the last `capacity` closed orders, forgetting the oldest first. The ids
live in chunks of about `CHUNK` entries rather than one big dict, because a dict that grows
rehashes everything it holds at once: at a million entries that stalls one command for tens
of milliseconds. `add` seals the filling chunk once it holds `chunk_size` ids; the venue's
hottest paths (a cancel, a taker's own close) only store the id into `filling` and leave
the seal to the venue's clock (`seal_if_full`, every `SEAL_EVERY_US`), so a chunk may hold
the ids they closed meanwhile too. A sealed chunk never changes again; it is dropped whole
once every entry in it is forgotten. Until then its forgotten entries (the oldest ones) stay
in it and are told apart by their position. Lookups (only on the rejection path) try each
chunk, newest first.
"""

from collections import deque
from collections.abc import Iterator
from itertools import chain, islice

CHUNK = 16_384  # a rehash of this many entries costs well under a millisecond
# How often the venue seals a full chunk (`Venue._run_due`) instead of testing the size at
# each close (~400 instructions per cancel): a chunk grows past `chunk_size` by at most two
# ids a command in this much venue time, and the test costs a call only every 10 ms.
SEAL_EVERY_US = 10_000


class ClosedOrders:
    __slots__ = ("_chunks", "_positions", "_starts", "capacity", "chunk_size", "filling")

    def __init__(self, capacity: int) -> None:
        assert capacity > 0, "remember at least one closed order"
        self.capacity = capacity
        # No larger than the capacity, so that a chunk sealed by `add` is never partly
        # forgotten while it is the newest.
        self.chunk_size = min(CHUNK, capacity)
        # The newest chunk, the one `add` fills; `seal` it once it holds `chunk_size` ids.
        self.filling: dict[int, int] = {}
        self._chunks: deque[dict[int, int]] = deque([self.filling])  # id -> account, oldest first
        # Where each chunk starts among all the ids ever stored: the filling chunk's start
        # plus its size is how many were stored in all.
        self._starts: deque[int] = deque([0])
        # Where each id sits in the one chunk that may be partly forgotten, built when a
        # lookup first needs it: (that chunk, id -> position).
        self._positions: tuple[dict[int, int], dict[int, int]] | None = None

    def add(self, order_id: int, account: int) -> None:
        chunk = self.filling
        chunk[order_id] = account
        if len(chunk) >= self.chunk_size:
            self.seal()

    def seal_if_full(self) -> None:
        """Seal the filling chunk if it holds `chunk_size` ids or more (filled directly)."""
        if len(self.filling) >= self.chunk_size:
            self.seal()

    def seal(self) -> None:
        """Start a new chunk after the filling one; drop the oldest chunks once wholly forgotten."""
        chunks, starts = self._chunks, self._starts
        starts.append(starts[-1] + len(self.filling))
        self.filling = {}
        chunks.append(self.filling)
        forgotten = self._forgotten_end()
        while starts[1] <= forgotten:  # the oldest chunk ends where the remembered ones begin
            dropped = chunks.popleft()
            starts.popleft()
            if self._positions is not None and self._positions[0] is dropped:
                self._positions = None

    def _forgotten_end(self) -> int:
        """Where the remembered ids begin among all those ever stored."""
        return self._starts[-1] + len(self.filling) - self.capacity

    def owner(self, order_id: int) -> int | None:
        """The account whose order this was, if it is remembered."""
        forgotten = self._forgotten_end()
        chunks, starts = self._chunks, self._starts
        for index in range(len(chunks) - 1, -1, -1):
            chunk = chunks[index]
            account = chunk.get(order_id)
            if account is None:
                continue
            start = starts[index]
            if start >= forgotten:
                return account
            if start + len(chunk) <= forgotten:
                return None
            return account if start + self._position(chunk, order_id) >= forgotten else None
        return None

    def _position(self, chunk: dict[int, int], order_id: int) -> int:
        """Where `order_id` sits in `chunk` (ids are only ever appended: positions stay)."""
        positions = self._positions
        if positions is None or positions[0] is not chunk or order_id not in positions[1]:
            positions = self._positions = (chunk, {key: at for at, key in enumerate(chunk)})
        return positions[1][order_id]

    def __contains__(self, order_id: int) -> bool:
        return self.owner(order_id) is not None

    def __len__(self) -> int:
        stored = self._starts[-1] + len(self.filling) - self._starts[0]
        return min(stored, self.capacity)

    def items(self) -> Iterator[tuple[int, int]]:
        """(order id, account), oldest first."""
        return chain.from_iterable(slices_of(*self.frozen()))

    def frozen(self) -> tuple[list[dict[int, int]], int]:
        """The remembered ids as chunks that no later change touches, and how many of their
        oldest ids are forgotten (`slices_of` lists them): the sealed chunks as they are (a
        sealed chunk never changes), the filling one copied. A few C calls, not one per id:
        a snapshot's capture takes them on the event loop and lists them off it."""
        chunks = list(self._chunks)
        chunks[-1] = chunks[-1].copy()
        return chunks, self._forgotten_end() - self._starts[0]


def slices_of(chunks: list[dict[int, int]], skip: int) -> Iterator[Iterator[tuple[int, int]]]:
    """Per chunk, its (order id, account) past the `skip` oldest of `chunks`, oldest first."""
    for chunk in chunks:
        if skip >= len(chunk):
            skip -= len(chunk)
            continue
        yield islice(chunk.items(), max(skip, 0), None)
        skip = 0
