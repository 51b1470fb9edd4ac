"""The venue's memory of `once` places: which client order ids ran, for at-most-once retries.

Owns the accepted orders placed with `once` (account, cl_ord_id -> order id), open or closed,
for `OnceLimits.window_us` of venue time, at most `per_account_max` per account and
`venue_max` in all, oldest forgotten first. A `once` place whose cl_ord_id is remembered is
refused `DUPLICATE_CL_ORD_ID` naming the first order, so a retry after a lost answer (504
`OUTCOME_UNKNOWN`, a dropped link) runs at most once. Per account, so one account's flow
makes the venue forget another's only past `venue_max`. Every change is O(1): an add forgets
at most `FORGET_PER_ADD` places past the window. Empty until the first `once` place: an empty
memory is left out of the state hash and of images, so journals and snapshots from before it
load as they always did. Pure: no I/O, no clock (time is the commands' `ts_us`).
The limits' defaults are frozen: a journal replayed from its first record runs with the
running build's defaults, so changing them needs a journaled command (there is none yet).
"""

from collections import OrderedDict

import msgspec

# A retry comes within a minute of the lost answer: a cluster answers 504 after 20 s, a core
# takeover takes ~13 s, and the SDK retries at once. Ten minutes is ten times that.
ONCE_WINDOW_US = 600_000_000
# Per account: a minute of an account's fastest flow (gateway.limits.ACCOUNT_RATE_PER_S,
# 500/s), so that a retry after a 504 (20 s) or a takeover finds its first even at that rate,
# while no account's flow fills the venue's memory alone.
ONCE_PLACED_PER_ACCOUNT_MAX = 30_000
# In all: ~440 B each in memory and ~39 B in an image (23-24-character cl_ord_ids, measured),
# so at most ~110 MB, and ~10 MB in a snapshot and in a state hash. Known cost (session 26's
# review, not fixed): once full, the venue-wide dict's periodic rebuild stalls one command for
# ~30 ms every ~450,000 once places; a chunked order (as `engine.closed`'s) would avoid it.
# The whole window at ~400 once places a second; at 5,000 a second (ten accounts at their
# limit) still the last 50 s.
ONCE_PLACED_VENUE_MAX = 250_000
# Places past the window an add forgets at most: more than the one it adds, so a backlog left
# by a lull drains as places come, and no single command forgets a whole window at once.
FORGET_PER_ADD = 4


class OnceLimits(msgspec.Struct, frozen=True):
    """How long and how many `once` places are remembered (in `VenueConfig`). The defaults
    are frozen (see the module's docstring)."""

    window_us: int = ONCE_WINDOW_US
    per_account_max: int = ONCE_PLACED_PER_ACCOUNT_MAX
    venue_max: int = ONCE_PLACED_VENUE_MAX


# (ts_us, account, cl_ord_id, order id) of one remembered place.
Entry = tuple[int, int, str, int]


class OncePlaced:
    """The `once` places: (account, cl_ord_id) -> entry, oldest first, and per account its
    cl_ord_ids oldest first (for its limit). Both ordered dicts: every forget is an O(1)
    delete, nothing is left stale. Places past the window may still be held until an add
    forgets them (`FORGET_PER_ADD`), but never answer: `first` tests the window itself."""

    __slots__ = ("accounts", "limits", "placed")

    def __init__(self, limits: OnceLimits | None = None) -> None:
        self.limits = limits = limits or OnceLimits()
        assert limits.per_account_max > 0 and limits.venue_max > 0, "remember at least one"
        assert limits.window_us > 0, "remember once places for some time"
        self.placed: OrderedDict[tuple[int, str], Entry] = OrderedDict()
        self.accounts: dict[int, OrderedDict[str, None]] = {}

    def __bool__(self) -> bool:
        return bool(self.placed)

    @property
    def count(self) -> int:
        """How many places are remembered (some maybe past the window, not yet forgotten)."""
        return len(self.placed)

    def first(self, account: int, cl_ord_id: str, ts_us: int) -> int:
        """The order id a `once` place of `cl_ord_id` got within the window before `ts_us`,
        or 0."""
        entry = self.placed.get((account, cl_ord_id))
        if entry is None or entry[0] < ts_us - self.limits.window_us:
            return 0
        return entry[3]

    def add(self, ts_us: int, account: int, cl_ord_id: str, order_id: int) -> None:
        """Remember an accepted `once` place, forgetting the oldest past the limits."""
        oldest_us = ts_us - self.limits.window_us
        self._forget_expired(oldest_us)
        expired = self.placed.get((account, cl_ord_id))
        if expired is not None:  # past the window (`first` said so) but not forgotten yet
            assert expired[0] < oldest_us, f"once place {cl_ord_id!r} of {account} placed twice"
            self._forget(account, cl_ord_id)
        self._insert((ts_us, account, cl_ord_id, order_id))
        own = self.accounts[account]
        if len(own) > self.limits.per_account_max:
            self._forget(account, next(iter(own)))
        if len(self.placed) > self.limits.venue_max:
            self._forget(*next(iter(self.placed)))

    def image(self) -> list[Entry]:
        """(ts_us, account, cl_ord_id, order id) of every remembered place, oldest first."""
        return list(self.placed.values())

    def adopt(self, image: list[Entry]) -> None:
        """Take back what `image` holds (into an empty memory, as restored from a snapshot):
        as it is, places past the window too, so the state is the one the image was of."""
        assert not self.placed, "adopt into an empty memory"
        for entry in image:
            self._insert(entry)
        own_most = max(map(len, self.accounts.values()), default=0)
        assert own_most <= self.limits.per_account_max, "an image past an account's limit"
        assert len(self.placed) <= self.limits.venue_max, "an image past the venue's limit"

    def _insert(self, entry: Entry) -> None:
        ts_us, account, cl_ord_id, _ = entry
        placed = self.placed
        if placed:
            newest = placed[next(reversed(placed))]
            assert newest[0] <= ts_us, "once places out of time order"
        key = (account, cl_ord_id)
        assert key not in placed, f"once place {cl_ord_id!r} of {account} placed twice"
        placed[key] = entry
        own = self.accounts.get(account)
        if own is None:
            own = self.accounts[account] = OrderedDict()
        own[cl_ord_id] = None

    def _forget_expired(self, oldest_us: int) -> None:
        """Forget up to `FORGET_PER_ADD` of the oldest places placed before `oldest_us`."""
        placed = self.placed
        for _ in range(FORGET_PER_ADD):
            if not placed:
                return
            key = next(iter(placed))
            if placed[key][0] >= oldest_us:
                return
            self._forget(*key)

    def _forget(self, account: int, cl_ord_id: str) -> None:
        del self.placed[(account, cl_ord_id)]
        own = self.accounts[account]
        del own[cl_ord_id]
        if not own:
            del self.accounts[account]
