"""`bench.e2e_clients` in process: the timetables over N symbols and per-symbol book gaps.

The processes themselves run in tests/bench/test_e2e_bench.py (real server, real sockets);
here only what they compose and count, without a socket.
"""

import asyncio
from typing import Any

import msgspec

from bench import e2e_clients
from bench.e2e_clients import Frame, Subscriber, Tally

LEVELS = 3


def _quotes(compose: Any, slots: int) -> list[tuple[str, str, str]]:
    """(symbol, bid, quote set) of slots 0 .. slots - 1."""
    found = []
    for slot in range(slots):
        request = compose(slot)
        (quote,) = request.params["quotes"]
        found.append((quote["symbol"], quote["bid_px"], request.params["quote_set"]))
    return found


def test_the_symbols_start_with_aaplx_and_go_on_as_bench_stocks() -> None:
    assert e2e_clients.bench_symbols(1) == ["AAPLx-USD"]
    assert e2e_clients.bench_symbols(3) == ["AAPLx-USD", "BENCH01x-USD", "BENCH02x-USD"]


def test_with_one_symbol_the_maker_requotes_as_it_always_did() -> None:
    """--symbols 1 keeps every reference row comparable: level k % 3, a tick out on odd turns."""
    compose = e2e_clients.maker_requests(0, LEVELS, ["AAPLx-USD"])
    bids = [bid for _, bid, _ in _quotes(compose, 6)]
    assert bids == ["187.24", "187.23", "187.22", "187.23", "187.22", "187.21"]
    assert [s for _, _, s in _quotes(compose, 3)] == ["bench-0-0", "bench-0-1", "bench-0-2"]


def test_the_maker_quotes_every_symbols_top_first_then_every_level() -> None:
    symbols = e2e_clients.bench_symbols(4)
    compose = e2e_clients.maker_requests(1, LEVELS, symbols)
    quotes = _quotes(compose, 4 * LEVELS * 2)
    assert [symbol for symbol, _, _ in quotes[:4]] == symbols  # every top level at once
    assert {bid for _, bid, _ in quotes[:4]} == {"187.24"}
    first_round = {(symbol, quote_set) for symbol, _, quote_set in quotes[: 4 * LEVELS]}
    assert len(first_round) == 4 * LEVELS, "every level of every symbol, once"
    # the second round moves each of them a tick out: every requote changes a book
    for (symbol, bid, quote_set), (again, moved, same_set) in zip(
        quotes[: 4 * LEVELS], quotes[4 * LEVELS :], strict=True
    ):
        assert (again, same_set) == (symbol, quote_set)
        assert round(float(bid) - float(moved), 2) == e2e_clients.TICK


def test_the_taker_trades_the_symbols_round_robin_each_buying_then_selling() -> None:
    symbols = e2e_clients.bench_symbols(2)
    compose = e2e_clients.taker_requests(1, symbols)
    orders = [compose(slot).params for slot in range(8)]
    assert [(o["symbol"], o["side"]) for o in orders[:4]] == [
        ("AAPLx-USD", "buy"),
        ("BENCH01x-USD", "buy"),
        ("AAPLx-USD", "sell"),
        ("BENCH01x-USD", "sell"),
    ]
    one = e2e_clients.taker_requests(1, ["AAPLx-USD"])
    assert [one(slot).params["side"] for slot in range(4)] == ["buy", "sell", "buy", "sell"]
    batched = e2e_clients.taker_requests(4, symbols)(0)
    ops = [op["params"] for op in batched.params["ops"]]
    assert [op["symbol"] for op in ops] == [*symbols, *symbols]


def _book(symbol: str, kind: str, seq: int, prev_seq: int = 0) -> Frame:
    data = msgspec.Raw(b'{"bids": [], "asks": []}')
    return Frame(ch="book", sym=symbol, type=kind, seq=seq, prev_seq=prev_seq, data=data)


def test_book_gaps_are_told_per_symbol() -> None:
    """Each symbol's book has its own seq: two symbols' updates interleaved are no gap; a
    seq missing from one symbol's stream is one."""

    async def follow() -> tuple[Tally, list[bool]]:
        tally = Tally()
        subscriber = Subscriber("ws://unused", tally, False, ("A-USD", "B-USD"))
        subscriber.counting = True
        ready = []
        for frame in (
            _book("A-USD", "snapshot", 5),
            _book("B-USD", "snapshot", 40),
            _book("A-USD", "update", 6, 5),
            _book("B-USD", "update", 41, 40),
            _book("A-USD", "update", 7, 6),
            _book("B-USD", "update", 43, 42),  # 42 never came
        ):
            ready.append(subscriber.snapshot.is_set())
            subscriber.on_book(frame)
        return tally, ready

    tally, ready = asyncio.run(follow())
    assert ready == [False, False, True, True, True, True], "ready once every book is known"
    assert tally.book_gaps == 1
    assert tally.book_by_symbol == {"A-USD": 3, "B-USD": 3}


def test_an_update_before_its_books_snapshot_is_a_gap_and_not_readiness() -> None:
    """A book's update that comes before its snapshot cannot be applied: a gap, and the
    subscriber is not ready until every book has had its snapshot."""

    async def follow() -> tuple[Tally, bool]:
        tally = Tally()
        subscriber = Subscriber("ws://unused", tally, False, ("A-USD", "B-USD"))
        subscriber.counting = True
        subscriber.on_book(_book("A-USD", "update", 6, 5))  # A's snapshot never came
        subscriber.on_book(_book("B-USD", "snapshot", 40))
        return tally, subscriber.snapshot.is_set()

    tally, ready = asyncio.run(follow())
    assert tally.book_gaps == 1
    assert not ready
