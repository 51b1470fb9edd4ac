"""The venue's memory of `once` places: which client order ids ran, for at-most-once retries.

Owns the accepted orders placed with `once` (account, cl_ord_id -> order id), open or closed,
for `OnceLimits.window_us` of venue time, at most `per_account_max` per account and
`venue_max` in all, oldest forgotten first. A `once` place whose cl_ord_id is remembered is
refused `DUPLICATE_CL_ORD_ID` naming the first order, so a retry after a lost answer (504
`OUTCOME_UNKNOWN`, a dropped link) runs at most once. Per account, so one account's flow
makes the venue forget another's only past `venue_max`. Every change is O(1): an add forgets
at most `FORGET_PER_ADD` places past the window, and every dict of places is a chunk of a
bounded size, so no command rehashes more than one chunk (the dict of accounts is the
exception: one entry per account remembered, as the venue's other per-account dicts). Empty
until the first `once` place: an empty memory is left out of the state hash and of images,
so journals and snapshots from before it load as they always did. Pure: no I/O, no clock
(time is the commands' `ts_us`). The limits' defaults are frozen: a journal replayed from its
first record runs with the running build's defaults, so changing them needs a journaled
command (there is none yet).
"""

from collections import OrderedDict, deque
from typing import Any

import msgspec

# A retry comes within a minute of the lost answer: a cluster answers 504 after 20 s, a core
# takeover takes ~13 s, and the SDK retries at once. Ten minutes is ten times that.
ONCE_WINDOW_US = 600_000_000
# Per account: a minute of an account's fastest flow (gateway.limits.ACCOUNT_RATE_PER_S,
# 500/s), so that a retry after a 504 (20 s) or a takeover finds its first even at that rate,
# while no account's flow fills the venue's memory alone.
ONCE_PLACED_PER_ACCOUNT_MAX = 30_000
# In all: ~460 B each in memory with 50 accounts (~1,130 B when each place is another
# account's) and ~39 B in an image (23-24-character cl_ord_ids, measured), so ~115 MB (~280 MB
# at worst), and ~10 MB in a snapshot and in a state hash. The whole window at ~400 once places
# a second; at 5,000 a second (ten accounts at their limit) still the last 50 s.
ONCE_PLACED_VENUE_MAX = 250_000
# Places past the window an add forgets at most: more than the one it adds, so a backlog left
# by a lull drains as places come, and no single command forgets a whole window at once.
FORGET_PER_ADD = 4
# Keys an ordered chunk takes before the next one starts. An OrderedDict that grows rebuilds
# its whole table, at ~3 times a dict's cost: one of 250,000 stalled a command for ~40 ms
# (`python -m bench.once_bench`); one of this many costs ~0.1 ms.
CHUNK = 1_024
# Keys a dict of an account's index takes before the next one starts: a dict's rebuild of
# this many costs well under a millisecond (as `engine.closed.CHUNK`), and an account at its
# limit has at most three to look in.
INDEX_CHUNK = 16_384


class OnceLimits(msgspec.Struct, frozen=True):
    """How long and how many `once` places are remembered (in `VenueConfig`). The defaults
    are frozen (see the module's docstring)."""

    window_us: int = ONCE_WINDOW_US
    per_account_max: int = ONCE_PLACED_PER_ACCOUNT_MAX
    venue_max: int = ONCE_PLACED_VENUE_MAX


# (ts_us, account, cl_ord_id, order id) of one remembered place.
Entry = tuple[int, int, str, int]
# Entries keyed by (account, cl_ord_id), oldest first: a piece of the venue's time order.
Chunk = OrderedDict[tuple[int, str], Entry]
# A piece of one account's cl_ord_ids, oldest first, each -> the `Chunk` that holds its entry.
IdChunk = OrderedDict[str, Chunk]


class AccountPlaces:
    """One account's remembered cl_ord_ids (`OncePlaced` keeps them): oldest first in
    `IdChunk`s of at most `CHUNK` (for its limit), and an index of each to its `IdChunk` in
    dicts of at most `INDEX_CHUNK` (for lookups: an account at its limit has at most three).
    In both the last one fills, and one emptied before it is the last is dropped at once, so
    the first of each holds the account's oldest."""

    __slots__ = ("count", "index", "order")

    def __init__(self) -> None:
        self.order: list[IdChunk] = [OrderedDict()]
        self.index: list[dict[str, IdChunk]] = [{}]
        self.count = 0

    def __len__(self) -> int:
        return self.count


def _drop(chunks: list[Any], emptied: object) -> None:
    """Drop the chunk `emptied` from `chunks` (found by identity: empty chunks are equal)."""
    del chunks[next(at for at, chunk in enumerate(chunks) if chunk is emptied)]


class OncePlaced:
    """The `once` places: the venue's, oldest first, in `Chunk`s of at most `CHUNK` (a deque;
    the last one fills, an emptied one is dropped once it is the oldest), and each account's
    (`AccountPlaces`, for its limit and for lookups). Every forget is an O(1) delete, nothing
    is left stale. Places past the window may still be held until an add forgets them
    (`FORGET_PER_ADD`), but never answer: `first` tests the window itself. The hot parts of
    the accounts' chunks are kept here, inline: each call costs a once place ~2%."""

    __slots__ = ("_chunks", "_newest_us", "accounts", "count", "limits")

    def __init__(self, limits: OnceLimits | None = None) -> None:
        self.limits = limits = limits or OnceLimits()
        assert limits.per_account_max > 0 and limits.venue_max > 0, "remember at least one"
        assert limits.window_us > 0, "remember once places for some time"
        self._chunks: deque[Chunk] = deque([OrderedDict()])
        self._newest_us = 0  # the last added's ts_us: the newest (no add forgets it)
        self.accounts: dict[int, AccountPlaces] = {}
        # How many places are remembered (some maybe past the window, not yet forgotten).
        self.count = 0

    def __bool__(self) -> bool:
        return self.count > 0

    def first(self, account: int, cl_ord_id: str, ts_us: int) -> int:
        """The order id a `once` place of `cl_ord_id` got within the window before `ts_us`,
        or 0."""
        own = self.accounts.get(account)
        if own is None:
            return 0
        for index in own.index:
            ids = index.get(cl_ord_id)
            if ids is not None:
                placed_us, _, _, order_id = ids[cl_ord_id][(account, cl_ord_id)]
                return 0 if placed_us < ts_us - self.limits.window_us else order_id
        return 0

    def add(self, ts_us: int, account: int, cl_ord_id: str, order_id: int) -> None:
        """Remember an accepted `once` place, forgetting the oldest past the limits."""
        limits = self.limits
        oldest_us = ts_us - limits.window_us
        chunks = self._chunks
        if self.count and next(iter(chunks[0].values()))[0] < oldest_us:  # else no call
            self._forget_expired(oldest_us)
        own = self.accounts.get(account)
        if own is not None:
            for index in own.index:
                if cl_ord_id in index:  # past the window (`first` said so) but still held
                    placed_us = index[cl_ord_id][cl_ord_id][(account, cl_ord_id)][0]
                    assert placed_us < oldest_us, f"{cl_ord_id!r} of {account} placed twice"
                    self._forget(account, cl_ord_id)
                    break
        own = self._insert((ts_us, account, cl_ord_id, order_id))
        if own.count > limits.per_account_max:
            self._forget(account, next(iter(own.order[0])))
        if self.count > limits.venue_max:
            _, oldest_account, oldest_id, _ = next(iter(chunks[0].values()))
            self._forget(oldest_account, oldest_id)

    def image(self) -> list[Entry]:
        """(ts_us, account, cl_ord_id, order id) of every remembered place, oldest first."""
        return [entry for chunk in self._chunks for entry in chunk.values()]

    def image_pieces(self) -> list[list[Entry]]:
        """`image()` as a list per chunk: a C call per chunk of `CHUNK`, not a step per place
        (a snapshot's capture takes them on the event loop and joins them off it)."""
        return [list(chunk.values()) for chunk in self._chunks]

    def adopt(self, image: list[Entry]) -> None:
        """Take back what `image` holds (into an empty memory, as restored from a snapshot):
        as it is, places past the window too, so the state is the one the image was of."""
        assert not self.count, "adopt into an empty memory"
        for entry in image:
            own = self.accounts.get(entry[1])
            twice = own is not None and any(entry[2] in index for index in own.index)
            assert not twice, f"once place {entry} is in the image twice"
            self._insert(entry)
        own_most = max(map(len, self.accounts.values()), default=0)
        assert own_most <= self.limits.per_account_max, "an image past an account's limit"
        assert self.count <= self.limits.venue_max, "an image past the venue's limit"

    def _insert(self, entry: Entry) -> AccountPlaces:
        """Remember `entry` as the newest (not held already); its account's places."""
        ts_us, account, cl_ord_id, _ = entry
        assert not self.count or self._newest_us <= ts_us, "once places out of time order"
        chunks = self._chunks
        placed = chunks[-1]
        if len(placed) >= CHUNK:
            placed = OrderedDict()
            chunks.append(placed)
        placed[(account, cl_ord_id)] = entry
        own = self.accounts.get(account)
        if own is None:
            own = self.accounts[account] = AccountPlaces()
        ids = own.order[-1]
        if len(ids) >= CHUNK:
            ids = OrderedDict()
            own.order.append(ids)
        ids[cl_ord_id] = placed
        index = own.index[-1]
        if len(index) >= INDEX_CHUNK:
            index = {}
            own.index.append(index)
        index[cl_ord_id] = ids
        own.count += 1
        self.count += 1
        self._newest_us = ts_us
        return own

    def _forget_expired(self, oldest_us: int) -> None:
        """Forget up to `FORGET_PER_ADD` of the oldest places placed before `oldest_us`."""
        chunks = self._chunks
        for _ in range(FORGET_PER_ADD):
            if not self.count:
                return
            placed_us, account, cl_ord_id, _ = next(iter(chunks[0].values()))
            if placed_us >= oldest_us:
                return
            self._forget(account, cl_ord_id)

    def _forget(self, account: int, cl_ord_id: str) -> None:
        """Forget the place of `cl_ord_id` (held) of `account`, from each chunk it is in."""
        own = self.accounts[account]
        index = own.index[0]  # the oldest: where all but a lapsed retry's forget finds it
        ids = index.pop(cl_ord_id, None)
        if ids is None:
            index = next(later for later in own.index if cl_ord_id in later)
            ids = index.pop(cl_ord_id)
        placed = ids.pop(cl_ord_id)
        own.count -= 1
        if not index and index is not own.index[-1]:
            _drop(own.index, index)
        if not ids and ids is not own.order[-1]:
            _drop(own.order, ids)
        del placed[(account, cl_ord_id)]
        if not placed:
            self._drop_emptied(placed)
        self.count -= 1
        if not own.count:
            del self.accounts[account]

    def _drop_emptied(self, placed: Chunk) -> None:
        """Free an emptied chunk's table now, and drop the oldest chunks while they are empty
        (one in the middle is dropped when it is the oldest), so that the first one holds the
        venue's oldest place."""
        placed.clear()
        chunks = self._chunks
        while not chunks[0] and len(chunks) > 1:
            chunks.popleft()
