"""The kinds of a snapshot's per-account entries: what the gateway's restore decodes each into.

Owns `OrderRecord` (a closed order as the gateway keeps and shows it) and the types of the
entries of the gateway image's per-account maps (core/snapshots.py `PER_ACCOUNT_MAPS`): the
private histories' (`HISTORY_IMAGE`) and the order history's (`ACCOUNT_IMAGE`). They are the
gateway's (gateway/private_streams.py, gateway/order_history.py use them from here), kept in
the core so that its checks of a snapshot (`snapshots.check_entries`) decode each entry as the
restore will, without the core importing the gateway.
"""

import msgspec


class OrderRecord(msgspec.Struct, frozen=True, gc=False):
    """One order as `order.status` and `orders.history` show it; decimals as strings."""

    order_id: int
    cl_ord_id: str | None
    symbol: str
    side: str
    type: str
    tif: str
    price: str | None  # null for a market order
    qty: str | None
    quote_qty: str | None  # the budget of a market buy by quote, else null
    leaves_qty: str | None
    cum_qty: str | None
    avg_px: str | None
    status: str
    reason: str | None  # why it closed (`user`, `gtd`, `stp`, ...); null if open or filled
    tag: str | None
    created_ts: int | None  # µs, when it was accepted (null if that predates this history)
    closed_ts: int | None  # µs, when it closed; null while open
    # Last, with defaults: the records of a history image written before them still load.
    quote_set: str | None = None  # the `quote.mass` set it quotes for, as its exec reports
    # µs, a gtd order's, open or closed (its place carries it, `OrderHistory.expiries`); null
    # for the others, and for a gtd order accepted before a snapshot that did not keep it
    expire_at: int | None = None


# An account's entry in the order history's image: its trimmed_max, its closed orders.
ACCOUNT_IMAGE = tuple[int, list[OrderRecord]]
# An account's entry in the private histories' image: its stream's seq, its (seq, push)s.
HISTORY_IMAGE = tuple[int, list[tuple[int, bytes]]]


def contiguous_seqs(seq: int, history: list[tuple[int, bytes]]) -> bool:
    """Whether a private history's entry (`HISTORY_IMAGE`) holds its stream's last pushes, their
    seqs contiguous and ending at the stream's `seq`, as its restore asserts."""
    return [s for s, _ in history] == list(range(seq - len(history) + 1, seq + 1))
