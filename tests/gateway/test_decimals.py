"""The remembered decimal strings: always `format_units`'s text, and never past their bound."""

import random

import pytest

from engine.units import format_units
from gateway import decimals
from gateway.decimals import DecimalStrings, strings_at


def test_a_remembered_string_equals_a_fresh_one() -> None:
    rng = random.Random(5)
    for scale in (0, 1, 2, 6, 10, 18):  # 18: engine.units.SCALE_MAX
        table = strings_at(scale)
        edges = [0, 1, 9, 10, -1, -123, 10**scale - 1, 10**scale, 2**62, -(2**62)]
        for units in edges + [rng.randrange(10**15) for _ in range(500)]:
            assert table[units] == format_units(units, scale)
            assert table[units] == format_units(units, scale), "and again, from the table"


def test_one_table_per_scale() -> None:
    assert strings_at(4) is strings_at(4)
    assert strings_at(4) is not strings_at(5)
    assert strings_at(3).scale == 3


def test_a_full_table_is_emptied_rather_than_grown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decimals, "STRINGS_PER_SCALE_MAX", 10)
    table = DecimalStrings(2)
    for units in range(25):
        assert table[units] == format_units(units, 2)
        assert len(table) <= 10
    assert 24 in table


def test_a_plain_tables_filler_writes_format_units_text() -> None:
    """The private pushes' tables (`table.get(units) or fill(units)`): the filler formats
    its miss as `format_units` would, remembers it, and empties a full table."""
    rng = random.Random(6)
    for scale in (0, 1, 2, 6, 10, 18):
        table, fill = decimals.plain_strings(scale)
        edges = [0, 1, 9, 10, -1, -123, 10**scale - 1, 10**scale, 2**62, -(2**62)]
        for units in edges + [rng.randrange(10**15) for _ in range(500)]:
            assert fill(units) == format_units(units, scale)
            assert (table.get(units) or fill(units)) == format_units(units, scale)


def test_a_full_plain_table_is_emptied_rather_than_grown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decimals, "STRINGS_PER_SCALE_MAX", 10)
    table, fill = decimals.plain_strings(2)
    for units in range(25):
        assert fill(units) == format_units(units, 2)
        assert len(table) <= 10
    assert 24 in table
