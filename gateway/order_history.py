"""Order history: each account's recently closed orders, for `order.status` and `orders.history`.

Owns, per account, the last `limits.CLOSED_ORDERS_PER_ACCOUNT_MAX` closed orders (final
status, cum/leaves qty, average price, reason, when accepted and when closed, a gtd order's
expiry), at most `limits.CLOSED_ORDERS_TOTAL_MAX` across accounts (the venue's oldest closed
first), and the acceptance time of every open order and the expiry of every open gtd one.
It learns them from the execution reports as they are made (and a gtd order's expiry from
its place: `record`, called where the server builds each command's pushes), so a venue restored
from a snapshot image (`image`/`restore`) and the journal tail replayed after it holds the
same history as before the restart. Open orders themselves stay the venue's: a page merges
them in (`page`). Leaves scopes, params and envelopes to the server.
Invariants: an order id is in at most one account's closed orders; the oldest closed is
forgotten first, per account and across them (the image keeps the closing order across
accounts, so a restore forgets as the original would); lookups never look past the asking
account's own orders. The two tables kept in closing order are `OrderedDict`s: they are
queues (the oldest forgotten as each close comes), and a plain dict's first key is found by
skipping every entry deleted before it (~1.5 µs a close at 10,000 per account, measured).
"""

import heapq
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any, Literal

import msgspec
from sortedcontainers import SortedList

from core.snapshot_entries import ACCOUNT_IMAGE, OrderRecord
from core.snapshots import entries_as
from engine.book import Order
from engine.commands import Command, PlaceOrder
from engine.instrument import InstrumentSpec
from engine.units import format_units
from gateway import limits
from gateway.reports import CLOSED, ExecReport, Push, _avg_px

Status = Literal["open", "closed", "all"]


class _AccountHistory:
    """One account's closed orders, by id in closing order, and the ids sorted for pages."""

    __slots__ = ("by_cl_ord_id", "closed", "ids", "trimmed_max", "unsorted")

    def __init__(self) -> None:
        # closing order; an `OrderedDict`, so the oldest is found at once (module docstring)
        self.closed: OrderedDict[int, OrderRecord] = OrderedDict()
        # The same ids, ascending: pages walk them newest first. Made by the account's first
        # page (`sorted_ids`): most accounts never ask for one, and a sorted list is a few
        # hundred bytes and dozens of bytecodes at each account's first close.
        self.ids: SortedList | None = None
        # Ids closed since the last page, not yet in `ids`: a set add per close instead of a
        # sorted insert (most of `record`'s cost); a page sorts them in (`sorted_ids`).
        # A subset of `closed`, so bounded by it.
        self.unsorted: set[int] = set()
        # cl_ord_id -> the order with it that closed last. Forgetting in closing order keeps
        # this exact: when that order is forgotten, every other with the id already was.
        self.by_cl_ord_id: dict[str, int] = {}
        self.trimmed_max = 0  # the newest order id forgotten to the bound (0: none yet)

    def sorted_ids(self) -> SortedList:
        """Every closed order's id, ascending (the ids closed since the last call sorted in)."""
        ids = self.ids
        if ids is None:
            ids = self.ids = SortedList()
        if self.unsorted:
            ids.update(self.unsorted)
            self.unsorted.clear()
        return ids


class OrderHistory:
    """Every account's closed orders, learned from execution reports."""

    def __init__(self, capacity: int | None = None, total_capacity: int | None = None) -> None:
        self.capacity = capacity or limits.CLOSED_ORDERS_PER_ACCOUNT_MAX
        self.total_capacity = total_capacity or limits.CLOSED_ORDERS_TOTAL_MAX
        assert self.capacity > 0, "keep at least one closed order per account"
        assert self.total_capacity > 0, "keep at least one closed order"
        self.accounts: dict[int, _AccountHistory] = {}
        # every retained closed order id -> its account, in closing order (an `OrderedDict`:
        # the oldest is found at once, see the module docstring)
        self.closing: OrderedDict[int, int] = OrderedDict()
        self.accepted_ts: dict[int, int] = {}  # open order id -> when it was accepted (µs)
        # open gtd order id -> its expire_at (µs): no exec report carries it, its place does
        self.expiries: dict[int, int] = {}

    # ----------------------------------------------------------------- learning

    def record(self, reports: Iterable[tuple[int, Push]], command: Command | None = None) -> None:
        """Learn from one command's pushes (as `ExecReporter.reports` made them; the server
        passes only `ExecReporter.order_reports`, those that open or close an order) and the
        command they are of (a gtd order's expiry is known from its place alone)."""
        for account, push in reports:
            data = push.data
            if type(data) is not ExecReport:  # not `isinstance`: a builtin's call per report
                continue
            order_id = data.order_id
            if order_id is None:  # a refused place: it never became an order
                continue
            gtd = data.tif == "gtd"
            if data.exec_type == "new":
                self.accepted_ts[order_id] = push.ts
                if gtd and type(command) is PlaceOrder:  # only a place accepts an order
                    self.expiries[order_id] = command.expire_at_us
            elif data.status in CLOSED:  # its record built here: no frame of a helper per close
                assert data.symbol is not None and data.side is not None, "an order's report"
                assert data.type is not None and data.tif is not None, "an order's report"
                record = OrderRecord(
                    order_id,
                    data.cl_ord_id,
                    data.symbol,
                    data.side,
                    data.type,
                    data.tif,
                    data.price,
                    data.qty,
                    data.quote_qty,
                    data.leaves_qty,
                    data.cum_qty,
                    data.avg_px,
                    data.status,
                    data.reason,
                    data.tag,
                    self.accepted_ts.pop(order_id, None),
                    push.ts,
                    data.quote_set,
                    self.expiries.pop(order_id, None) if gtd else None,
                )
                self._keep(account, record)
                if len(self.closing) > self.total_capacity:  # a call saved per close
                    self._trim_total()

    def _keep(self, account: int, record: OrderRecord) -> None:
        """Remember `record` as the account's newest closed order; forget the account's
        oldest past the per-account bound."""
        history = self.accounts.get(account) or self._account(account)
        order_id = record.order_id
        closed = history.closed
        if order_id in closed:  # kept again (a restore): it moves to the newest place
            del closed[order_id]
            self.closing.pop(order_id, None)
        else:  # a live close: an order closes once, so it is new here (no pops to try)
            history.unsorted.add(order_id)
        self.closing[order_id] = account
        closed[order_id] = record
        if record.cl_ord_id is not None:
            history.by_cl_ord_id[record.cl_ord_id] = order_id
        if len(closed) > self.capacity:
            self._forget(history, next(iter(closed)))

    def _trim_total(self) -> None:
        """Forget the venue's oldest closed orders past the bound across accounts (each is
        also the oldest of its account: both orders are closing order)."""
        while len(self.closing) > self.total_capacity:
            oldest, account = next(iter(self.closing.items()))
            self._forget(self.accounts[account], oldest)

    def _forget(self, history: _AccountHistory, oldest: int) -> None:
        forgotten = history.closed.pop(oldest)
        del self.closing[oldest]
        if oldest in history.unsorted:
            history.unsorted.discard(oldest)
        else:  # sorted in by a page, so the page made `ids`
            assert history.ids is not None, f"closed order {oldest} neither sorted nor unsorted"
            history.ids.remove(oldest)
        cl_ord_id = forgotten.cl_ord_id
        if cl_ord_id is not None and history.by_cl_ord_id.get(cl_ord_id) == oldest:
            del history.by_cl_ord_id[cl_ord_id]
        history.trimmed_max = max(history.trimmed_max, oldest)

    def _account(self, account: int) -> _AccountHistory:
        history = self.accounts.get(account)
        if history is None:
            history = self.accounts[account] = _AccountHistory()
        return history

    # ----------------------------------------------------------------- queries

    def find(self, account: int, order_id: int | None, cl_ord_id: str | None) -> OrderRecord | None:
        """The account's closed order by id, or the one with `cl_ord_id` that closed last."""
        history = self.accounts.get(account)
        if history is None:
            return None
        if cl_ord_id is not None:
            found = history.by_cl_ord_id.get(cl_ord_id)
            return history.closed[found] if found is not None else None
        return history.closed.get(order_id or 0)

    def unknown(self, account: int, order_id: int | None) -> str:
        """Why an order is not found, from the asking account's own history only (so the
        answer says nothing of other accounts' orders)."""
        history = self.accounts.get(account)
        trimmed_max = history.trimmed_max if history is not None else 0
        if trimmed_max and (order_id is None or order_id <= trimmed_max):
            return (
                "no such order in the retained history: it keeps each account's open orders "
                f"and last {self.capacity:,} closed orders ({self.total_capacity:,} across"
                " accounts), and this order may be older"
            )
        return "no such order for this account"

    def open_record(self, order: Order, spec: InstrumentSpec) -> OrderRecord:
        """An open order of the venue, in the shape of a closed one."""
        return OrderRecord(
            order.order_id,
            order.cl_ord_id,
            order.symbol,
            order.side,
            order.order_type,
            order.tif,
            format_units(order.price, spec.price_decimals),
            format_units(order.qty, spec.qty_decimals),
            None,  # only a market buy has a quote budget, and market orders never rest
            format_units(order.leaves_qty, spec.qty_decimals),
            format_units(order.cum_qty, spec.qty_decimals),
            _avg_px(order.filled_value, order.cum_qty, spec),
            order.status,
            None,
            order.tag,
            self.accepted_ts.get(order.order_id),
            None,
            order.quote_set,
            order.expire_at_us or None,
        )

    def page(
        self,
        account: int,
        open_orders: Sequence[Order],
        specs: Mapping[str, InstrumentSpec],
        *,
        status: Status = "all",
        symbol: str | None = None,
        since_ts: int | None = None,
        until_ts: int | None = None,
        before_order_id: int | None = None,
        limit: int,
    ) -> tuple[list[OrderRecord], int | None]:
        """Up to `limit` orders, newest (highest id) first, and the `before_order_id` of the
        next page (None if this is the last). `since_ts` (inclusive) and `until_ts`
        (exclusive) bound `created_ts`. `open_orders` are the account's in acceptance (so
        id) order, as the venue lists them; only those a page reaches are formatted."""
        below = before_order_id if before_order_id is not None else 2**63
        sources: list[Iterator[OrderRecord]] = []
        if status != "closed":
            sources.append(
                self.open_record(order, specs[order.symbol])
                for order in reversed(open_orders)
                if order.order_id < below
            )
        history = self.accounts.get(account)
        if status != "open" and history is not None:
            ids = history.sorted_ids().irange(maximum=below - 1, reverse=True)
            sources.append(history.closed[order_id] for order_id in ids)
        rows: list[OrderRecord] = []
        for record in heapq.merge(*sources, key=_newest_first):
            created = record.created_ts
            if since_ts is not None and (created is None or created < since_ts):
                if created is not None:
                    break  # ids are accepted in time order: every older one is earlier still
                continue
            if until_ts is not None and (created is None or created >= until_ts):
                continue
            if symbol is not None and record.symbol != symbol:
                continue
            if len(rows) == limit:
                return rows, rows[-1].order_id  # there is at least one more
            rows.append(record)
        return rows, None

    # ----------------------------------------------------------------- snapshots

    def image(self) -> dict[str, Any]:
        """What a snapshot keeps: per account its closed orders in closing order, and the
        closing order across accounts."""
        # `dict.values` and `dict.keys` of the `OrderedDict`s: the same order (nothing here
        # moves a key but by deleting and adding it again, which both orders see alike) read
        # without the ordered dict's lookup per key, on the event loop (a snapshot's capture).
        image: dict[str, Any] = {
            "accepted_ts": list(self.accepted_ts.items()),
            "closing": list(dict.keys(self.closing)),
            "accounts": {
                str(account): [history.trimmed_max, list(dict.values(history.closed))]
                for account, history in self.accounts.items()
            },
        }
        if self.expiries:  # only then: an image without open gtd orders is as it was
            image["expiries"] = list(self.expiries.items())
        return image

    def restore(self, image: dict[str, Any] | None) -> None:
        """Take the state `image` holds (None: a snapshot older than this history)."""
        self.accounts.clear()
        self.accepted_ts.clear()
        self.expiries.clear()
        self.closing.clear()
        if image is None:
            return
        self.accepted_ts.update((order_id, ts) for order_id, ts in image["accepted_ts"])
        # (an image from before the expiries were kept has none: those orders' stay null)
        self.expiries.update((order_id, at_us) for order_id, at_us in image.get("expiries", ()))
        strings: dict[str | None, str | None] = {}  # each distinct value once (`_shared`)
        for account, (trimmed_max, records) in entries_as(image["accounts"], ACCOUNT_IMAGE):
            account_id = int(account)  # one int for all its entries in `closing`, as live
            for record in _shared(records, strings):
                self._keep(account_id, record)
            history = self._account(account_id)
            history.trimmed_max = max(history.trimmed_max, trimmed_max)
        self._reorder_closing(image.get("closing", ()))
        self._trim_total()

    def _reorder_closing(self, order: Iterable[int]) -> None:
        """Put `closing` in `order` (an image's), any id it lacks after them as they are (an
        image from before the bound across accounts has none: account by account). Moved in
        place, then copied once: the keys stay the records' own ids, not the image's equal
        ones (28 bytes each); the copy makes the plain dict's order the moved one (`image`
        reads `dict.keys`, which `move_to_end` leaves as it was)."""
        closing = self.closing
        moved = 0
        for order_id in order:
            if order_id in closing:
                closing.move_to_end(order_id)
                moved += 1
        if moved:
            for order_id in list(islice(closing, len(closing) - moved)):
                closing.move_to_end(order_id)
            self.closing = OrderedDict(closing)


# The fields whose values repeat from order to order (a symbol, a side, a price level, a
# status): a live history shares one string object per value (the reports' constants and
# `gateway.decimals` tables), a decoded image holds one per record, ~300 MB more at the
# bound (session 34: a restarted venue held twice the memory it had).
_SHARED_FIELDS = frozenset(OrderRecord.__struct_fields__) - {
    "order_id",
    "cl_ord_id",  # one order's own (and the `by_cl_ord_id` key's object already)
    "created_ts",
    "closed_ts",
    "expire_at",
}
_SHARED_AT = [n in _SHARED_FIELDS for n in OrderRecord.__struct_fields__]


def _shared(
    records: list[OrderRecord], strings: dict[str | None, str | None]
) -> Iterator[OrderRecord]:
    """`records` as equal ones whose repeating strings are the objects `strings` holds
    (the first of each value seen, added there): column by column, in C calls."""
    if not records:
        return iter(())
    share = strings.setdefault
    columns: list[Iterable[Any]] = list(zip(*map(msgspec.structs.astuple, records), strict=True))
    for at, repeating in enumerate(_SHARED_AT):
        if repeating:
            columns[at] = map(share, columns[at], columns[at])
    return map(OrderRecord, *columns)


def _newest_first(record: OrderRecord) -> int:
    return -record.order_id
