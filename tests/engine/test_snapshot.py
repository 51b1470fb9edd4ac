"""Venue images: a restored venue is the same venue — same hash, same events from then on."""

import pytest

from engine import snapshot
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
