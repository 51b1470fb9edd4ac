"""The seeded workloads are reproducible and have the shape each one claims."""

from collections import Counter
from functools import cache
from itertools import pairwise

import pytest

from bench import workloads
from bench.workloads import Workload
from engine.commands import AmendOrder, PlaceOrder
from engine.enums import Side, TimeInForce
from engine.events import CommandRejected, Event, TradeExecuted
from engine.venue import Venue

OPS = 20_000  # large enough for proportions within 2 points, small enough to stay quick
SEED = 11
SHARE_TOLERANCE = 0.02  # absolute: 0.82 +- 0.02
SAMPLE_EVERY = 1_000  # commands between two looks at the book's size


@cache
def _workload(name: str) -> Workload:
    return workloads.build(name, OPS, SEED)


@cache
def _replay(name: str) -> tuple[list[list[Event]], list[tuple[int, int]]]:
    """Every command's events, and (resting orders, price levels) every SAMPLE_EVERY commands."""
    workload = _workload(name)
    venue = workload.fresh_venue()
    book = venue.book(workloads.SYMBOL)
    results = []
    samples = []
    for i, command in enumerate(workload.commands):
        results.append(venue.execute(command))
        if i % SAMPLE_EVERY == 0:
            samples.append((len(venue.orders), len(book.bids) + len(book.asks)))
    venue.check_invariants()
    return results, samples


def _shares(workload: Workload) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for command in workload.commands:
        if isinstance(command, PlaceOrder):
            kinds[f"place_{command.tif}"] += 1
        else:
            kinds[type(command).__name__] += 1
    return kinds


def _near(count: int, share: float) -> bool:
    return abs(count / OPS - share) <= SHARE_TOLERANCE


@pytest.mark.parametrize("name", sorted(workloads.WORKLOADS))
def test_same_seed_same_commands(name: str) -> None:
    again = workloads.build(name, OPS, SEED)
    assert again.setup == _workload(name).setup
    assert again.commands == _workload(name).commands
    assert workloads.build(name, OPS, SEED + 1).commands != again.commands


@pytest.mark.parametrize("name", sorted(workloads.WORKLOADS))
def test_exact_length_ordered_time_and_nothing_rejected(name: str) -> None:
    workload = _workload(name)
    assert len(workload.commands) == OPS
    stamps = [command.ts_us for command in workload.setup + workload.commands]
    assert stamps == sorted(stamps)
    assert workload.rejected == 0
    events, _ = _replay(name)
    assert not any(type(e) is CommandRejected for command_events in events for e in command_events)


def test_replay_on_a_fresh_venue_gives_the_same_state() -> None:
    workload = _workload("mixed")
    first, second = workload.fresh_venue(), Venue()
    for command in workload.setup:
        second.execute(command)
    for command in workload.commands:
        first.execute(command)
        second.execute(command)
    assert first.state_hash() == second.state_hash()


def test_mixed_has_the_exchange_core_mix_on_a_steady_book() -> None:
    kinds = _shares(_workload("mixed"))
    assert _near(kinds["AmendOrder"], 0.82)
    assert _near(kinds["place_gtc"], 0.09)
    assert _near(kinds["CancelOrder"], 0.06)
    assert _near(kinds["place_ioc"], 0.03)
    assert sum(kinds.values()) == OPS
    amends = [c for c in _workload("mixed").commands if isinstance(c, AmendOrder)]
    assert all(c.price > 0 and c.qty == 0 for c in amends)  # price moves only
    _, samples = _replay("mixed")
    for resting, levels in samples:
        assert 900 <= resting <= 1_100, samples
        assert 650 <= levels <= 850, samples


def test_mixed_gtc_orders_rest_and_ioc_orders_trade() -> None:
    events, _ = _replay("mixed")
    for command, command_events in zip(_workload("mixed").commands, events, strict=True):
        trades = any(type(e) is TradeExecuted for e in command_events)
        if isinstance(command, PlaceOrder):
            assert trades == (command.tif is TimeInForce.IOC)
        elif isinstance(command, AmendOrder):
            assert not trades


def test_addcancel_adds_and_cancels_and_never_trades() -> None:
    workload = _workload("addcancel")
    kinds = _shares(workload)
    assert _near(kinds["place_gtc"], 0.60)
    assert _near(kinds["CancelOrder"], 0.40)
    assert kinds["place_gtc"] + kinds["CancelOrder"] == OPS
    events, _ = _replay("addcancel")
    assert not any(type(e) is TradeExecuted for command_events in events for e in command_events)


def test_cross_alternates_sides_and_about_half_cross() -> None:
    workload = _workload("cross")
    places = [c for c in workload.commands if isinstance(c, PlaceOrder)]
    assert len(places) == OPS
    assert [c.side for c in places[:4]] == [Side.BUY, Side.SELL, Side.BUY, Side.SELL]
    assert all(a.side is not b.side for a, b in pairwise(places))
    events, samples = _replay("cross")
    crossing = sum(any(type(e) is TradeExecuted for e in evs) for evs in events)
    assert abs(crossing / OPS - 0.5) <= SHARE_TOLERANCE
    for resting, _levels in samples:
        assert 800 <= resting <= 1_200, samples
