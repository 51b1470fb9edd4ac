"""cli/arguments.py: the argparse types, as the flags that use them parse."""

import argparse

import pytest

from cli.arguments import time_us

EVENING_US = 1_796_576_400_000_000  # 2026-12-06T17:00:00Z


@pytest.mark.parametrize(
    ("text", "expected_us"),
    [
        (str(EVENING_US), EVENING_US),
        ("2026-12-06T17:00:00Z", EVENING_US),
        ("2026-12-06 18:00+01:00", EVENING_US),
        ("2026-12-06T17:00:00.000001+00:00", EVENING_US + 1),
    ],
)
def test_a_time_is_taken_as_microseconds_or_as_an_iso_time_with_its_zone(
    text: str, expected_us: int
) -> None:
    """The finding (session 28): `venue admin attest-reserves --as-of` took only µs since the
    epoch, which an operator must compute from the custodian's statement's date."""
    assert time_us(text) == expected_us


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("yesterday", "neither µs since the epoch nor an ISO 8601 time"),
        ("2026-12-06T17:00", "has no zone: add one, e.g. 2026-12-06T17:00Z"),
        ("-5", "neither µs since the epoch"),
    ],
)
def test_a_time_that_is_neither_or_has_no_zone_is_refused_saying_why(text: str, words: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        time_us(text)
    assert words in str(refused.value)


def test_attest_reserves_takes_its_as_of_as_an_iso_time() -> None:
    from cli.main import _parser

    args = _parser().parse_args(
        ["admin", "attest-reserves", "USD", "1", "--as-of", "2026-12-06T17:00:00Z"]
    )
    assert args.as_of == EVENING_US
