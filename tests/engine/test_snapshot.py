"""Venue images: a restored venue is the same venue — same hash, same events from then on."""

import gc
import sys

import msgspec
import pytest

from engine import snapshot
from engine.commands import Command, PlaceOrder
from engine.venue import Venue, VenueConfig
from settlement.ledger import Ledger
from tests.engine import test_differential, test_differential_ledger

SNAPSHOT_EVERY = 1_500  # commands between images taken along each stream
STREAM = 9_000


@pytest.mark.parametrize("with_ledger", [False, True], ids=["book-only", "cleared"])
def test_a_restored_venue_continues_identically(with_ledger: bool) -> None:
    if with_ledger:
        case = test_differential_ledger.CASES[0]
        commands = test_differential_ledger.commands(case, STREAM)
        venue = Venue(case.config(), Ledger())
    else:
        case_b = test_differential.CASES[2]
        commands = test_differential.commands(case_b, STREAM)
        venue = Venue(case_b.config())
    forks: list[tuple[int, Venue]] = []  # (index taken at, a venue restored from an image)
    for index, command in enumerate(commands):
        if index and index % SNAPSHOT_EVERY == 0:
            payload = snapshot.encode(snapshot.capture(venue))
            restored = snapshot.restore(snapshot.decode(payload))
            assert restored.state_hash() == venue.state_hash(), f"image at {index} differs"
            forks.append((index, restored))
        events = venue.execute(command)
        for taken_at, fork in forks:
            assert fork.execute(command) == events, f"fork from {taken_at} differs at {index}"
    assert len(forks) == (STREAM - 1) // SNAPSHOT_EVERY
    for taken_at, fork in forks:
        assert fork.state_hash() == venue.state_hash(), f"fork from {taken_at} ends elsewhere"
        fork.check_invariants()


def test_the_image_round_trips_through_bytes() -> None:
    case = test_differential_ledger.CASES[1]
    venue = Venue(case.config(), Ledger())
    for command in test_differential_ledger.commands(case, 3_000):
        venue.execute(command)
    image = snapshot.capture(venue)
    assert snapshot.decode(snapshot.encode(image)) == image
    assert snapshot.restore(image).state_hash() == venue.state_hash()
    assert isinstance(image.config, VenueConfig)


@pytest.mark.parametrize("with_gtd", [False, True], ids=["maturity", "gtd-then-maturity"])
def test_a_restored_venue_still_matures_its_bills_and_expires_its_orders(with_gtd: bool) -> None:
    """What is queued to happen later (a maturity, a gtd expiry) happens after a restore."""
    from engine.commands import AdvanceClock, ListInstrument, PlaceOrder
    from engine.enums import Side, TimeInForce
    from engine.events import InstrumentMatured, OrderExpired

    maturity_us = test_differential.BILL_MATURITY_US
    ts = maturity_us - 10
    venue = Venue()
    venue.execute(ListInstrument(ts_us=ts, spec=test_differential.tbill()))
    gtd = PlaceOrder(
        ts_us=ts,
        account=1,
        symbol=test_differential.tbill().symbol,
        side=Side.BUY,
        tif=TimeInForce.GTD,
        price=98_500_000,
        qty=1_000_000,
        expire_at_us=maturity_us - 5,
    )
    if with_gtd:
        venue.execute(gtd)
    restored = snapshot.restore(snapshot.decode(snapshot.encode(snapshot.capture(venue))))
    for later in (maturity_us - 5, maturity_us) if with_gtd else (maturity_us,):
        events = restored.execute(AdvanceClock(ts_us=later))
        assert events == venue.execute(AdvanceClock(ts_us=later))
        kind = OrderExpired if later < maturity_us else InstrumentMatured
        assert any(isinstance(event, kind) for event in events), events


def test_an_image_written_before_quote_sets_and_cod_marks_loads_and_hashes_alike() -> None:
    case = test_differential_ledger.CASES[1]
    venue = Venue(case.config(), Ledger())
    for command in test_differential_ledger.commands(case, 1_000):
        venue.execute(command)
    assert venue.orders, "the image holds resting orders"
    image = msgspec.msgpack.decode(snapshot.encode(snapshot.capture(venue)))
    for market in image["markets"]:
        for order in market["orders"]:
            assert order.pop() is False  # as an earlier build wrote it: no cod mark last,
            assert order.pop() is None  # and before it, no quote set
    restored = snapshot.restore(snapshot.decode(msgspec.msgpack.encode(image)))
    assert restored.state_hash() == venue.state_hash()
    assert all(order.quote_set is None for order in restored.orders.values())
    assert not any(order.cod for order in restored.orders.values())


def test_the_cod_marks_a_remark_set_are_in_the_image() -> None:
    """A mark is state: a venue restored after `SetCancelOnDisconnect` marked and unmarked
    orders cancels the same ones at a start after a crash, and goes on alike."""
    from engine.commands import SetCancelOnDisconnect
    from tests.engine.test_venue import cod_journal, replayed

    venue = replayed(cod_journal())
    restored = snapshot.restore(snapshot.decode(snapshot.encode(snapshot.capture(venue))))
    assert restored.cod_order_ids() == venue.cod_order_ids() == [1, 3]
    assert restored.state_hash() == venue.state_hash()
    remark = SetCancelOnDisconnect(ts_us=7, account=1, cod=True, order_ids=(1, 2))
    assert restored.execute(remark) == venue.execute(remark)
    assert restored.cod_order_ids() == venue.cod_order_ids() == [1, 2, 3]
    assert restored.state_hash() == venue.state_hash()


def _busy_venue(commands: list[Command]) -> Venue:
    """A venue whose closed orders fill many chunks, the oldest partly forgotten, and that
    remembers `once` places (every third place is one)."""
    case = test_differential.CASES[0]
    venue = Venue(msgspec.structs.replace(case.config(), closed_orders_retained_max=250))
    for command in commands:
        venue.execute(command)
    return venue


def _with_once_places(commands: list[Command]) -> list[Command]:
    return [
        msgspec.structs.replace(c, once=True, cl_ord_id=f"once-{i}")
        if type(c) is PlaceOrder and i % 3 == 0
        else c
        for i, c in enumerate(commands)
    ]


def test_a_later_capture_is_encoded_into_the_same_bytes_whatever_trades_after_it() -> None:
    """Session 34: a snapshot's capture on the event loop made a million closed-order pairs
    one by one. Now it takes the sealed chunks as they are and a copy of the filling one (a
    `Later` part, made when encoded, off the loop), and the `once` places a list per chunk:
    the bytes are those of the image taken at once, though trading goes on between the
    capture and the encode (closing orders, sealing and dropping chunks, forgetting places)."""
    case = test_differential.CASES[0]
    commands = _with_once_places(test_differential.commands(case, 6_000))
    venue = _busy_venue(commands[:4_000])
    chunks, skip = venue.closed_orders.frozen()
    assert len(chunks) == 2 and skip > 0, "a sealed chunk partly forgotten, the filling one"
    assert venue.once_placed.count > 0
    at_once = snapshot.encode(snapshot.capture(venue))
    later = snapshot.capture(venue, later=True)
    assert isinstance(later.closed_orders, snapshot.Later)
    assert isinstance(later.once_placed, snapshot.Later)
    closed_before = list(venue.closed_orders.items())
    for command in commands[4_000:]:
        venue.execute(command)
    assert list(venue.closed_orders.items())[-1] != closed_before[-1], "trading went on"
    assert snapshot.encode(later) == at_once
    assert snapshot.restore(snapshot.decode(at_once)).check_invariants() is None


def test_a_later_capture_without_once_places_leaves_them_out_as_before() -> None:
    """An empty `once` memory is left out of the image (omit_defaults), later or not."""
    case = test_differential.CASES[0]
    venue = _busy_venue(test_differential.commands(case, 500))
    assert not venue.once_placed
    later = snapshot.capture(venue, later=True)
    assert later.once_placed == []
    assert snapshot.encode(later) == snapshot.encode(snapshot.capture(venue))


def test_a_later_capture_makes_nothing_per_closed_order() -> None:
    """Session 34: at the bound (a million closed order ids) the capture held the event loop
    for their pairs, one new tuple each. A later capture allocates a few objects per chunk
    (`sys.getallocatedblocks`, the collector off), not per id: no timing asserted."""
    venue = Venue()
    ids = 200_000
    for order_id in range(1, ids + 1):
        venue.closed_orders.add(order_id, order_id % 50)

    def blocks_made(later: bool) -> int:
        gc.disable()
        try:
            before = sys.getallocatedblocks()
            image = snapshot.capture(venue, later)
            made = sys.getallocatedblocks() - before
            del image
        finally:
            gc.enable()
        return made

    assert blocks_made(later=False) > ids * 9 // 10, "a pair per id (before session 34)"
    assert blocks_made(later=True) < ids // 100
    later = snapshot.capture(venue, later=True)
    assert len(venue.closed_orders.frozen()[0]) > 10, "many sealed chunks"
    assert snapshot.encode(later) == snapshot.encode(snapshot.capture(venue))
