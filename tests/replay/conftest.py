"""Shared helpers for replay tests: the hand-written fixtures, file writers, wrong venues.

`YoungestFirstVenue` and `AmendToBackVenue` are deliberately wrong priority rules the
execution check must catch: the first keeps each level youngest first, the second sends an
order amended down to the back of its level. They override only public methods
(`BookSide.add`, `Venue.execute`), so the engine itself stays untouched. (A placed order
rests without `BookSide.add`: the engine inlines it on that hot path, so the youngest-first
venue moves a placed order to the front after `execute`.)
"""

from pathlib import Path

from engine.book import BookSide, Order
from engine.commands import AmendOrder, Command, ListInstrument, PlaceOrder
from engine.enums import Side
from engine.events import Event, OrderAccepted
from engine.venue import Venue
from replay.lobster_replay import VENUE_CONFIG
from replay.lobster_synthetic import row_text

DATA = Path(__file__).parent / "data"
STEM = "2024-01-02_34200000_57600000"
# Every type, merged runs with partial fills across orders and levels, sentinel levels on
# both sides, a halt with quoting, reveals with stale and missing quantity: all consistent.
TEST_MESSAGES = DATA / f"TEST_{STEM}_message_2.csv"
TEST_ORDERBOOK = DATA / f"TEST_{STEM}_orderbook_2.csv"
# The exchange's book disagrees: an execution out of priority, an order refused during the
# halt, one tampered row; and a first row with sentinel levels.
MSFT_MESSAGES = DATA / f"MSFT_{STEM}_message_3.csv"
MSFT_ORDERBOOK = DATA / f"MSFT_{STEM}_orderbook_3.csv"


def to_the_front(side: BookSide, order: Order) -> None:
    """Put `order` first in its level's queue."""
    level = side.levels[order.price * side.sign]
    if len(level.orders) > 1:
        orders = level.orders
        level.orders = {order.order_id: orders.pop(order.order_id), **orders}


class YoungestFirstSide(BookSide):
    """A book side whose levels put each new order at the front of the queue."""

    def add(self, order: Order) -> None:
        super().add(order)
        to_the_front(self, order)


class YoungestFirstVenue(Venue):
    """A venue matching youngest first at each price: the wrong rule, on purpose."""

    def __init__(self) -> None:
        super().__init__(VENUE_CONFIG)

    def execute(self, command: Command) -> list[Event]:
        events = super().execute(command)
        if isinstance(command, ListInstrument) and command.spec.symbol in self.markets:
            book = self.book(command.spec.symbol)
            book.bids, book.asks = YoungestFirstSide(Side.BUY), YoungestFirstSide(Side.SELL)
        elif isinstance(command, PlaceOrder):
            for event in events:
                order = self.orders.get(event.order_id) if type(event) is OrderAccepted else None
                if order is not None:  # it rests: youngest first
                    to_the_front(self.book(order.symbol).side(order.side), order)
        return events


class AmendToBackVenue(Venue):
    """A venue where an amend down loses the order's place in the queue: wrong on purpose."""

    def __init__(self) -> None:
        super().__init__(VENUE_CONFIG)

    def execute(self, command: Command) -> list[Event]:
        events = super().execute(command)
        if isinstance(command, AmendOrder):
            order = self.find_order(command.account, command.order_id, None)
            if order is not None:
                side = self.book(order.symbol).side(order.side)
                orders = side.levels[order.price * side.sign].orders
                orders[order.order_id] = orders.pop(order.order_id)
        return events


Levels = list[tuple[int, int]]


def write_files(
    directory: Path, messages: list[str], books: list[tuple[Levels, Levels]], levels: int
) -> tuple[Path, Path]:
    """A LOBSTER pair from message lines and (asks, bids) per row, sentinels filled in."""
    message_path = directory / f"T_{STEM}_message_{levels}.csv"
    orderbook_path = directory / f"T_{STEM}_orderbook_{levels}.csv"
    message_path.write_text("".join(line + "\n" for line in messages))
    orderbook_path.write_text("".join(row_text(asks, bids, levels) + "\n" for asks, bids in books))
    return message_path, orderbook_path
