"""The tests' copy of venue.toml rolls its T-bills forward instead of letting them mature."""

import datetime
from pathlib import Path

import msgspec

from core import config
from engine.events import CommandRejected
from engine.venue import Venue, VenueConfig
from settlement.ledger import Ledger
from tests.sample_config import RUNWAY_DAYS, VENUE_TOML, bill_dates, rolled

TEXT = VENUE_TOML.read_text()


def midnight_us(day: datetime.date) -> int:
    return int(datetime.datetime.combine(day, datetime.time(), datetime.UTC).timestamp()) * 10**6


def refusals(path: Path, now_us: int) -> list[object]:
    """What a fresh venue refuses of the config's setup commands at `now_us`."""
    loaded = config.load(path)
    venue = Venue(VenueConfig(reserve_staleness_max_us=10**15), Ledger())
    refused: list[object] = []
    for index, command in enumerate(config.setup_commands(loaded, now_us)):
        events = venue.execute(msgspec.structs.replace(command, ts_us=now_us + index))
        refused += [e for e in events if isinstance(e, CommandRejected)]
    return refused


def test_bills_far_from_maturity_are_left_as_written() -> None:
    today = bill_dates(TEXT)[0] - datetime.timedelta(days=RUNWAY_DAYS)
    text, moves = rolled(TEXT, today)
    assert text == TEXT and all(old == new for old, new in moves.items())


def test_bills_close_to_maturity_move_forward_by_whole_weeks(tmp_path: Path) -> None:
    before = bill_dates(TEXT)
    today = before[-1] + datetime.timedelta(days=400)  # long after both have matured
    text, moves = rolled(TEXT, today)
    after = bill_dates(text)
    assert len(after) == len(before) == 2
    assert after[0] - today >= datetime.timedelta(days=RUNWAY_DAYS)
    assert after[0] - today < datetime.timedelta(days=RUNWAY_DAYS + 7)
    assert [a - b for a, b in zip(after, before, strict=True)] == [after[0] - before[0]] * 2
    assert {day.weekday() for day in after} == {day.weekday() for day in before}
    for old, new in moves.items():
        assert old not in text and f'"TB-{new}-USD"' in text
    path = tmp_path / "venue.toml"
    path.write_text(text)
    assert refusals(path, midnight_us(today)) == []
    assert config.matured_bills(config.load(path), midnight_us(today)) == []
    original = tmp_path / "original.toml"
    original.write_text(TEXT)
    # the bills, matured, are left out (with their tokens), and the rest builds unrefused
    assert len(config.matured_bills(config.load(original), midnight_us(today))) == 2
    assert refusals(original, midnight_us(today)) == []


def test_a_bill_rolled_onto_the_other_bills_date_keeps_its_own_name(tmp_path: Path) -> None:
    first, second = bill_dates(TEXT)
    gap_weeks = (second - first).days // 7  # the roll that moves the first onto the second
    today = first + datetime.timedelta(weeks=gap_weeks) - datetime.timedelta(days=RUNWAY_DAYS)
    text, moves = rolled(TEXT, today)
    assert moves[first.isoformat()] == second.isoformat()
    assert bill_dates(text) == [second, second + (second - first)]
    path = tmp_path / "venue.toml"
    path.write_text(text)
    assert refusals(path, midnight_us(today)) == []
