"""The venue's memory of `once` places: which client order ids ran, for at-most-once retries.

Owns the accepted orders placed with `once` (account, cl_ord_id -> order id), open or closed,
for `OnceLimits.window_us` of venue time, at most `per_account_max` per account and
`venue_max` in all, oldest forgotten first. A `once` place whose cl_ord_id is remembered is
refused `DUPLICATE_CL_ORD_ID` naming the first order, so a retry after a lost answer (504
`OUTCOME_UNKNOWN`, a dropped link) runs at most once. Per account, so one account's flow
makes the venue forget another's only past `venue_max`. Empty until the first `once` place:
an empty memory is left out of the state hash and of images, so journals and snapshots from
before it load as they always did. Pure: no I/O, no clock (time is the commands' `ts_us`).
"""

from collections import OrderedDict, deque

import msgspec

# A retry comes within a minute of the lost answer: a cluster answers 504 after 20 s, a core
# takeover takes ~13 s, and the SDK retries at once. Ten minutes is ten times that.
ONCE_WINDOW_US = 600_000_000
# Per account: 20 s of an account's fastest flow (gateway.limits.ACCOUNT_RATE_PER_S, 500/s),
# so that no account's flow fills the venue's memory alone.
ONCE_PLACED_PER_ACCOUNT_MAX = 10_000
# In all: ~320 B each in memory and ~39 B in an image (24-character cl_ord_ids, measured), so
# at most ~80 MB, and ~10 MB in a snapshot and in a state hash. The whole window at ~400 once
# places a second; at 5,000 a second (ten accounts at their limit) still the last 50 s.
ONCE_PLACED_VENUE_MAX = 250_000


class OnceLimits(msgspec.Struct, frozen=True):
    """How long and how many `once` places are remembered (in `VenueConfig`)."""

    window_us: int = ONCE_WINDOW_US
    per_account_max: int = ONCE_PLACED_PER_ACCOUNT_MAX
    venue_max: int = ONCE_PLACED_VENUE_MAX


# (ts_us, account, cl_ord_id, order id) of one remembered place.
Entry = tuple[int, int, str, int]


class OncePlaced:
    """The `once` places: per account cl_ord_id -> order id, and all of them oldest first.

    Each entry is one tuple, in `placed` (in venue time order) and in its account's map.
    `placed` may still hold entries an account forgot past its limit (no longer the ones
    its map holds), compacted when they outnumber the live ones: O(1) amortised a change.
    Places past the window are forgotten as the next is added, and never answer before."""

    __slots__ = ("accounts", "count", "limits", "placed")

    def __init__(self, limits: OnceLimits | None = None) -> None:
        self.limits = limits = limits or OnceLimits()
        assert limits.per_account_max > 0 and limits.venue_max > 0, "remember at least one"
        assert limits.window_us > 0, "remember once places for some time"
        self.accounts: dict[int, OrderedDict[str, Entry]] = {}
        self.placed: deque[Entry] = deque()
        self.count = 0  # the entries of `accounts`: the live ones of `placed`

    def __bool__(self) -> bool:
        return self.count > 0

    def first(self, account: int, cl_ord_id: str, ts_us: int) -> int:
        """The order id a `once` place of `cl_ord_id` got within the window before `ts_us`,
        or 0."""
        placed = self.accounts.get(account)
        entry = placed.get(cl_ord_id) if placed is not None else None
        if entry is None or entry[0] < ts_us - self.limits.window_us:
            return 0
        return entry[3]

    def add(self, ts_us: int, account: int, cl_ord_id: str, order_id: int) -> None:
        """Remember an accepted `once` place, forgetting the oldest past the limits."""
        assert not self.placed or self.placed[-1][0] <= ts_us, "once places out of time order"
        self._forget_older(ts_us - self.limits.window_us)
        placed = self.accounts.get(account)
        if placed is None:
            placed = self.accounts[account] = OrderedDict()
        assert cl_ord_id not in placed, f"once place {cl_ord_id!r} of {account} placed twice"
        placed[cl_ord_id] = entry = (ts_us, account, cl_ord_id, order_id)
        self.placed.append(entry)
        self.count += 1
        if len(placed) > self.limits.per_account_max:
            placed.popitem(last=False)  # its entry in `placed` stays, now stale
            self.count -= 1
            if len(self.placed) > 2 * self.count:
                self.placed = deque(entry for entry in self.placed if self._live(entry))
        if self.count > self.limits.venue_max:
            while not self._forget(self.placed.popleft()):
                pass

    def image(self) -> list[Entry]:
        """(ts_us, account, cl_ord_id, order id) of every remembered place, oldest first."""
        return [entry for entry in self.placed if self._live(entry)]

    def adopt(self, image: list[Entry]) -> None:
        """Take back what `image` holds (into an empty memory, as restored from a snapshot)."""
        assert not self.accounts, "adopt into an empty memory"
        for ts_us, account, cl_ord_id, order_id in image:
            self.add(ts_us, account, cl_ord_id, order_id)

    def _forget_older(self, oldest_us: int) -> None:
        placed = self.placed
        while placed and placed[0][0] < oldest_us:
            self._forget(placed.popleft())

    def _live(self, entry: Entry) -> bool:
        placed = self.accounts.get(entry[1])
        return placed is not None and placed.get(entry[2]) is entry

    def _forget(self, entry: Entry) -> bool:
        """Forget `entry` unless it is stale; whether it was not."""
        if not self._live(entry):
            return False
        account = entry[1]
        placed = self.accounts[account]
        del placed[entry[2]]
        if not placed:
            del self.accounts[account]
        self.count -= 1
        return True
