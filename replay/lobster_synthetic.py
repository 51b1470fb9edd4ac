"""Synthetic LOBSTER files: a seeded day of order flow on a reference book, as level-N files.

Owns `ReferenceBook`, a price-time book of its own in plain dicts and sorted lists (slow,
obvious and independent of the engine, so a replay checks one against the other), and a
generator of flow over it: passive orders near the touch and deep, full and partial
cancels, sweeps through several orders and levels whose rest may stay as a new order,
hidden executions, cross trades and one halt. Like LOBSTER, a level-N file keeps only the
messages that change its top N levels, plus every hidden execution, cross and halt; every
order resting before the first message is left out. Same arguments, same files.
Limit: EVENTS_MAX events a file. Run as `python -m replay.lobster_synthetic` to write files
(on a terminal, with a progress bar on stderr; stdout names the two files).
"""

import argparse
import bisect
import random
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cli import progress
from cli.failures import OneLineParser, run_main
from replay.lobster_format import ASK_EMPTY_PRICE, BID_EMPTY_PRICE, LEVELS_MAX, NS_PER_S

EVENTS_MAX = 50_000_000  # about a busy Nasdaq day; rows are written, never held
TICK = 100  # one cent in LOBSTER's 0.0001-dollar units
START_PRICE = 1_000_000  # $100.00
START_LEVELS = 30  # per side, before the first message
START_NS = 34_200 * NS_PER_S  # 9:30, when LOBSTER files start
SIZES = (100, 100, 100, 100, 200, 300, 500, 1_000, 37, 50)  # mostly round lots, a few odd
BOOK_ORDERS_TARGET = 600  # above this, cancels grow likelier, so the book stays small
HALT_LENGTH = 12  # events of each halt phase (halted, quoting)
# Cancels pick a level this deep on average, the same at any N, so that files of different
# depths are views of one day: a level-1 file misses most cancels, a level-10 file few.
CANCEL_DEPTH_MEAN = 8.0
FILE_DATE = "2024-01-02"
PROGRESS_EVERY = 1_000  # events per bar update: the bar costs nothing next to the flow


class ReferenceBook:
    """Resting orders by price-time priority. Direction 1 is the bid side, -1 the ask side;
    a level's key is -direction x price, so on both sides the smallest key is the best."""

    def __init__(self) -> None:
        self.orders: dict[int, tuple[int, int]] = {}  # id -> (direction, price)
        self.queues: dict[int, dict[int, dict[int, int]]] = {1: {}, -1: {}}  # price -> id -> size
        self.keys: dict[int, list[int]] = {1: [], -1: []}  # sorted, best first

    def add(self, direction: int, order_id: int, price: int, size: int) -> None:
        assert order_id not in self.orders and size > 0, f"bad order {order_id} of {size}"
        queues = self.queues[direction]
        if price not in queues:
            queues[price] = {}
            bisect.insort(self.keys[direction], -direction * price)
        queues[price][order_id] = size
        self.orders[order_id] = (direction, price)

    def reduce(self, order_id: int, size: int) -> None:
        """Take `size` off the order; it leaves the book at zero."""
        direction, price = self.orders[order_id]
        queue = self.queues[direction][price]
        left = queue[order_id] - size
        assert left >= 0, f"order {order_id} has less than {size}"
        if left:
            queue[order_id] = left
            return
        del queue[order_id], self.orders[order_id]
        if not queue:
            del self.queues[direction][price]
            self.keys[direction].remove(-direction * price)

    def size(self, order_id: int) -> int:
        direction, price = self.orders[order_id]
        return self.queues[direction][price][order_id]

    def best(self, direction: int) -> int | None:
        keys = self.keys[direction]
        return -direction * keys[0] if keys else None

    def depth(self, direction: int, levels: int) -> list[tuple[int, int]]:
        """The best `levels` levels as (price, total size), best first."""
        queues = self.queues[direction]
        prices = [-direction * key for key in self.keys[direction][:levels]]
        return [(price, sum(queues[price].values())) for price in prices]

    def sweep(self, maker: int, limit: int, size: int) -> list[tuple[int, int, int]]:
        """What a taker of `size` up to `limit` would fill on side `maker`, in priority order,
        as (order id, size, price); the book is not changed."""
        fills = []
        for key in self.keys[maker]:
            price = -maker * key
            if size == 0 or key > -maker * limit:
                break
            for order_id, resting in self.queues[maker][price].items():
                fill = min(size, resting)
                fills.append((order_id, fill, price))
                size -= fill
                if size == 0:
                    break
        return fills

    def pick(self, rng: random.Random, depth_mean: float) -> int | None:
        """A resting order, nearer the touch more often than not."""
        direction = rng.choice((1, -1))
        keys = self.keys[direction]
        if not keys:
            return None
        index = min(int(rng.expovariate(1 / depth_mean)), len(keys) - 1)
        queue = self.queues[direction][-direction * keys[index]]
        return rng.choice(list(queue))


class _Flow:
    """The generator's state: the book, the clock, the next id, and what was emitted."""

    def __init__(self, levels: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.book = ReferenceBook()
        self.levels = levels
        self.time_ns = START_NS
        self.next_id = 1
        self.emitted: list[tuple[str, str]] = []
        self.last_price = START_PRICE
        for step in range(1, START_LEVELS + 1):
            for direction in (1, -1):
                for _ in range(self.rng.randint(1, 4)):
                    price = START_PRICE - direction * step * TICK
                    self.book.add(direction, self._new_id(), price, self.rng.choice(SIZES))

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def emit(self, kind: int, order_id: int, size: int, price: int, direction: int) -> None:
        """Apply one message to the book; keep it if LOBSTER's level-N file would."""
        book, levels = self.book, self.levels
        before = (book.depth(1, levels), book.depth(-1, levels))
        if kind == 1:
            book.add(direction, order_id, price, size)
        elif kind in (2, 3, 4):
            book.reduce(order_id, size)
        after = (book.depth(1, levels), book.depth(-1, levels))
        if kind >= 5 or before != after:
            seconds, fraction = divmod(self.time_ns, NS_PER_S)
            message = f"{seconds}.{fraction:09d},{kind},{order_id},{size},{price},{direction}"
            self.emitted.append((message, row_text(after[1], after[0], levels)))

    def tick(self) -> None:
        self.time_ns += self.rng.randint(1, 2_000_000)

    # ----------------------------------------------------------------- actions

    def passive(self) -> None:
        rng, book = self.rng, self.book
        direction = rng.choice((1, -1))
        own, other = book.best(direction), book.best(-direction)
        anchor = own if own is not None else self.last_price + direction * -TICK
        if rng.random() < 0.1 and other is not None:  # inside the spread, if there is room
            price = other + direction * -TICK
        else:
            price = anchor - direction * min(int(rng.expovariate(0.2)), 60) * TICK
        if price <= 0 or (other is not None and direction * (price - other) >= 0):
            return  # would cross or leave the price grid: not a passive order
        self.emit(1, self._new_id(), rng.choice(SIZES), price, direction)

    def cancel(self, partial: bool) -> None:
        order_id = self.book.pick(self.rng, CANCEL_DEPTH_MEAN)
        if order_id is None:
            return
        direction, price = self.book.orders[order_id]
        size = self.book.size(order_id)
        if partial and size > 1:
            self.emit(2, order_id, self.rng.randint(1, size - 1), price, direction)
        else:
            self.emit(3, order_id, size, price, direction)

    def sweep(self) -> None:
        """An aggressive order: one execution per resting order it fills, at one time."""
        rng, book = self.rng, self.book
        maker = rng.choice((1, -1))
        best = book.best(maker)
        if best is None:
            return
        limit = best - maker * rng.choice((0, 0, 0, 1, 2, 4)) * TICK
        size = rng.choice(SIZES) * rng.randint(1, 4)
        fills = book.sweep(maker, limit, size)
        for order_id, fill, price in fills:
            self.emit(4, order_id, fill, price, maker)
            self.last_price = price
        rest = size - sum(fill for _, fill, _ in fills)
        if rest and limit > 0 and rng.random() < 0.5:  # the rest of a limit order rests
            self.emit(1, self._new_id(), rest, limit, -maker)

    def hidden(self, kind: int) -> None:
        """A hidden execution (5) or a cross trade (6): no visible order changes."""
        direction = self.rng.choice((1, -1))
        self.emit(kind, 0, self.rng.choice(SIZES), self.last_price, direction)

    def halt(self) -> None:
        """Halted (cancels only), then quoting (passive orders too), then trading again."""
        self.emit(7, 0, 0, -1, -1)
        for _ in range(HALT_LENGTH):
            self.tick()
            self.cancel(partial=self.rng.random() < 0.4)
        self.tick()
        self.emit(7, 0, 0, 0, -1)
        for _ in range(HALT_LENGTH):
            self.tick()
            self.passive()
        self.tick()
        self.emit(7, 0, 0, 1, -1)

    def step(self) -> None:
        rng = self.rng
        self.tick()
        roll = rng.random()
        crowded = len(self.book.orders) > BOOK_ORDERS_TARGET
        if roll < 0.02:
            self.hidden(5)
        elif roll < 0.023:
            self.hidden(6)
        elif roll < 0.17:
            self.sweep()
        elif roll < (0.55 if crowded else 0.38):
            self.cancel(partial=False)
        elif roll < (0.65 if crowded else 0.48):
            self.cancel(partial=True)
        else:
            self.passive()


def generate(
    events: int, levels: int, seed: int = 1, shown: "tqdm[Any] | None" = None
) -> Iterator[tuple[str, str]]:
    """(message line, orderbook line) pairs of a level-N file of `events` generated events
    (a sweep is one event of several messages; events hidden below N leave no line).
    `shown`, a progress bar, advances once per `PROGRESS_EVERY` events."""
    assert 0 < events <= EVENTS_MAX and 0 < levels <= LEVELS_MAX, "events or levels out of range"
    flow = _Flow(levels, seed)
    halt_at = events // 2 if events >= 4 * HALT_LENGTH else -1
    for event in range(events):
        if shown is not None and not event % PROGRESS_EVERY:
            shown.update(min(PROGRESS_EVERY, events - event))
        if event == halt_at:
            flow.halt()
        else:
            flow.step()
        yield from flow.emitted
        flow.emitted.clear()


def write(
    directory: Path,
    ticker: str,
    events: int,
    levels: int,
    seed: int = 1,
    show_progress: bool = False,
) -> tuple[Path, Path]:
    """Write the message and orderbook files as LOBSTER names them; returns their paths.

    With `show_progress`, a bar of the events generated goes to stderr on a terminal.
    """
    stem = f"{ticker}_{FILE_DATE}_34200000_57600000"
    messages = directory / f"{stem}_message_{levels}.csv"
    orderbook = directory / f"{stem}_orderbook_{levels}.csv"
    drawn = show_progress and progress.on_terminal()
    with (
        messages.open("w", encoding="ascii") as m,
        orderbook.open("w", encoding="ascii") as b,
        progress.bar(
            not drawn, total=events, desc="generate", unit=" events", unit_scale=True
        ) as shown,
    ):
        for message, row in generate(events, levels, seed, shown if drawn else None):
            m.write(message + "\n")
            b.write(row + "\n")
    return messages, orderbook


def row_text(asks: list[tuple[int, int]], bids: list[tuple[int, int]], levels: int) -> str:
    """One orderbook line: AskPrice1, AskSize1, BidPrice1, BidSize1, ..., empty levels as
    LOBSTER fills them."""
    columns: list[int] = []
    for index in range(levels):
        columns += asks[index] if index < len(asks) else (ASK_EMPTY_PRICE, 0)
        columns += bids[index] if index < len(bids) else (BID_EMPTY_PRICE, 0)
    return ",".join(map(str, columns))


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; bad flags and unwritable files fail in one line, exit status 2."""
    parser = OneLineParser(prog="python -m replay.lobster_synthetic", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("."), help="directory for both files")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--levels", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--ticker", default="SYNTH")
    args = parser.parse_args(argv)
    if not (0 < args.events <= EVENTS_MAX and 0 < args.levels <= LEVELS_MAX):
        parser.error(f"events must be within 1..{EVENTS_MAX} and levels 1..{LEVELS_MAX}")
    if not args.out.is_dir():  # before anything is written: no half a pair of files
        parser.error(f"--out {args.out}: no such directory")
    return run_main(parser.prog, lambda: _write_and_list(args))


def _write_and_list(args: argparse.Namespace) -> int:
    for path in write(args.out, args.ticker, args.events, args.levels, args.seed, True):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
