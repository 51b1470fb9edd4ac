"""Determinism: the same commands, replayed, give identical events and the same state hash."""

import msgspec
from hypothesis import given, settings

from engine.commands import Command
from engine.events import Event
from engine.venue import Venue
from tests.engine.strategies import command_streams
from tests.engine.test_properties import stamped


def replay(commands: list[Command]) -> tuple[list[list[Event]], str]:
    venue = Venue()
    events = [venue.execute(command) for command in commands]
    return events, venue.state_hash()


@settings(max_examples=150, deadline=None)
@given(command_streams(max_size=80))
def test_replay_is_identical(commands: list[Command]) -> None:
    stream = stamped(commands)
    first_events, first_hash = replay(stream)
    second_events, second_hash = replay(stream)
    assert second_events == first_events
    assert second_hash == first_hash
    assert msgspec.msgpack.encode(second_events) == msgspec.msgpack.encode(first_events)


@settings(max_examples=50, deadline=None)
@given(command_streams(max_size=40))
def test_replay_from_the_journal_bytes(commands: list[Command]) -> None:
    """Commands survive encoding as the journal will store them, and replay the same."""
    from engine.commands import AnyCommand

    stream = stamped(commands)
    journal = msgspec.msgpack.encode(stream)
    decoded = msgspec.msgpack.decode(journal, type=list[AnyCommand])  # type: ignore[valid-type]
    assert decoded == stream
    assert replay(decoded) == replay(stream)


def test_different_histories_have_different_hashes() -> None:
    from engine.commands import ListInstrument, PlaceOrder
    from engine.enums import Side
    from tests.engine.conftest import SYMBOL, make_spec

    listing = ListInstrument(ts_us=1, spec=make_spec())
    buy = PlaceOrder(ts_us=2, account=1, symbol=SYMBOL, side=Side.BUY, price=9_999, qty=1)
    sell = PlaceOrder(ts_us=2, account=1, symbol=SYMBOL, side=Side.SELL, price=10_001, qty=1)
    assert replay([listing, buy])[1] != replay([listing, sell])[1]
    assert replay([listing, buy])[1] == replay([listing, buy])[1]
