"""The venue's memory of `once` places: which client order ids ran, for at-most-once retries.

Owns, per account, the newest `ONCE_PLACED_PER_ACCOUNT_MAX` accepted orders that were placed
with `once` (cl_ord_id -> order id), open or closed, oldest forgotten first. A `once` place whose
cl_ord_id is remembered here is refused `DUPLICATE_CL_ORD_ID` naming the first order, so a retry
after a lost answer (504 `OUTCOME_UNKNOWN`, a dropped link) runs at most once. Per account, so
one account's flow never makes the venue forget another's. Empty until the first `once` place:
an empty memory is left out of the state hash and of images, so journals and snapshots from
before it load as they always did. Pure: no I/O, no clock.
"""

# How many `once` places an account is remembered by: a retry comes within seconds of the lost
# answer (a cluster answers 504 after 20 s), and 10,000 is minutes of an account's fastest
# order flow that the gateway's rate limits let through, at ~100 bytes each.
ONCE_PLACED_PER_ACCOUNT_MAX = 10_000


class OncePlaced:
    """Per account, the newest `once` places: cl_ord_id -> order id, oldest first."""

    __slots__ = ("accounts", "per_account_max")

    def __init__(self, per_account_max: int = ONCE_PLACED_PER_ACCOUNT_MAX) -> None:
        assert per_account_max > 0, "remember at least one once place per account"
        self.per_account_max = per_account_max
        self.accounts: dict[int, dict[str, int]] = {}

    def __bool__(self) -> bool:
        return bool(self.accounts)

    def first(self, account: int, cl_ord_id: str) -> int:
        """The order id a remembered `once` place of `cl_ord_id` got, or 0."""
        placed = self.accounts.get(account)
        return placed.get(cl_ord_id, 0) if placed is not None else 0

    def add(self, account: int, cl_ord_id: str, order_id: int) -> None:
        """Remember an accepted `once` place, forgetting the account's oldest past the limit."""
        placed = self.accounts.get(account)
        if placed is None:
            placed = self.accounts[account] = {}
        assert cl_ord_id not in placed, f"once place {cl_ord_id!r} of {account} placed twice"
        placed[cl_ord_id] = order_id
        if len(placed) > self.per_account_max:
            del placed[next(iter(placed))]

    def image(self) -> list[tuple[int, str, int]]:
        """(account, cl_ord_id, order id), by account, each account's oldest first."""
        return [
            (account, cl_ord_id, order_id)
            for account, placed in sorted(self.accounts.items())
            for cl_ord_id, order_id in placed.items()
        ]

    def adopt(self, image: list[tuple[int, str, int]]) -> None:
        """Take back what `image` holds (into an empty memory, as restored from a snapshot)."""
        assert not self.accounts, "adopt into an empty memory"
        for account, cl_ord_id, order_id in image:
            self.add(account, cl_ord_id, order_id)
