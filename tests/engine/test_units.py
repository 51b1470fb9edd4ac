"""Strict decimal-string conversion: exact both ways, excess precision refused, never rounded."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.units import UNITS_MAX, PrecisionError, format_units, parse_units


@pytest.mark.parametrize(
    ("text", "scale", "units"),
    [
        ("187.25", 2, 18_725),
        ("0.000001", 6, 1),
        ("1", 6, 1_000_000),
        ("98.676708", 6, 98_676_708),
        ("1.50", 1, 15),  # trailing zeros lose nothing
        ("007", 0, 7),
        ("0", 2, 0),
    ],
)
def test_parse_exact(text: str, scale: int, units: int) -> None:
    assert parse_units(text, scale) == units


@pytest.mark.parametrize(("text", "scale"), [("187.255", 2), ("0.0000001", 6), ("1.5", 0)])
def test_excess_precision_is_an_error_not_rounding(text: str, scale: int) -> None:
    with pytest.raises(PrecisionError):
        parse_units(text, scale)


@pytest.mark.parametrize(
    "text", ["", ".5", "5.", "-1", "+1", "1e3", " 1", "1 ", "1.2.3", "١٢", "0x10", "1_000", "nan"]
)
def test_malformed_is_refused(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_units(text, 2)
    assert not isinstance(caught.value, PrecisionError)


def test_too_large_is_refused() -> None:
    assert parse_units(str(UNITS_MAX), 0) == UNITS_MAX
    with pytest.raises(ValueError, match="too large"):
        parse_units(str(UNITS_MAX + 1), 0)


def test_format_has_fixed_decimals() -> None:
    assert format_units(18_725, 2) == "187.25"
    assert format_units(1, 6) == "0.000001"
    assert format_units(100, 0) == "100"
    assert format_units(-5, 2) == "-0.05"


@settings(deadline=None)  # no wall-clock limit: a loaded CI machine may stall any example
@given(st.integers(min_value=0, max_value=UNITS_MAX), st.integers(min_value=0, max_value=18))
def test_round_trip(units: int, scale: int) -> None:
    assert parse_units(format_units(units, scale), scale) == units
