"""cli/arguments.py: the argparse types, as the flags that use them parse."""

import argparse
import datetime
import time

import pytest

from cli.arguments import EPOCH, time_us

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


@pytest.mark.parametrize(
    "text",
    ["20261206", "1796603420836", "1796603420", "179660342083601", "17966034208360190", "0"],
)
def test_digits_that_are_not_16_are_refused_not_read_as_microseconds(text: str) -> None:
    """The finding (session 28): `--as-of 20261206`, a date as ISO 8601 writes it in short,
    was taken as 20,261,206 µs, 20 s after 1970; so were ms and s. µs since the epoch have
    16 digits in every year the venue runs."""
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        time_us(text)
    said = str(refused.value)
    assert f"{text!r} is not a time: µs since the epoch have 16 digits" in said
    assert "or give an ISO 8601 time with its zone such as 2026-12-06T17:00:00Z" in said


NOW_S = int(time.time()) - 3_600  # an hour ago: a statement's time


@pytest.mark.parametrize(
    ("text", "unit", "meant"),
    [
        (str(NOW_S * 1_000 + 836), "milliseconds", str((NOW_S * 1_000 + 836) * 1_000)),
        (str(NOW_S), "seconds", str(NOW_S * 1_000_000)),
        (str(NOW_S * 10**9 + 836_019_000), "nanoseconds", str(NOW_S * 10**6 + 836_019)),
    ],
)
def test_a_time_in_another_unit_says_which_and_the_microseconds_meant(
    text: str, unit: str, meant: str
) -> None:
    """The finding (session 36): ms, s and ns were told only that µs have 16 digits; the
    unit they look like and the µs value meant are said too, as the venue says of an
    `expire_at` or `as_of` so sent (protocol §5.1)."""
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        time_us(text)
    said = str(refused.value)
    assert f"{text!r} is not a time: µs since the epoch have 16 digits" in said
    assert f"; it looks like {unit}: did you mean {meant}?" in said
    assert time_us(meant) == int(meant)  # what it suggests, it takes


@pytest.mark.parametrize(
    "text",
    [
        "0000000001",  # was told 1000000, which it refuses (before 2001)
        "2026120617",  # a date and hour, was told a time in 2034
        str((NOW_S - 2 * 366 * 86_400) * 1_000),  # two years ago, in ms
        str((NOW_S + 2 * 366 * 86_400) * 10**9),  # in two years, in ns
    ],
)
def test_digits_of_no_time_near_now_get_no_guess(text: str) -> None:
    """The review (session 36): the unit slip's guess was made of any 10, 13 or 19 digits,
    even a value the check refuses or years away; now only of one near now it takes."""
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        time_us(text)
    said = str(refused.value)
    assert f"{text!r} is not a time: µs since the epoch have 16 digits" in said
    assert "did you mean" not in said and "looks like" not in said, said


@pytest.mark.parametrize("text", ["2026-12-06", "2026-W49-7", "2026-12-06T17", "2026-12-06 17:00"])
def test_the_zone_a_refusal_suggests_makes_a_time_it_takes(text: str) -> None:
    """The finding (session 28): a date alone was told to add `Z` (`2026-12-06Z`), which is
    refused in turn; a date is told its midnight (`2026-12-06T00:00Z`)."""
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        time_us(text)
    said = str(refused.value)
    suggested = said.split("e.g. ", 1)[1].split(" for UTC")[0]
    taken = time_us(suggested)
    utc = datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.UTC)
    assert taken == (utc - EPOCH) // datetime.timedelta(microseconds=1)


def test_digits_of_other_scripts_are_refused_in_a_line() -> None:
    """`str.isdigit` holds for `١٢٣` and `²`; the first was read as 123 µs, the second was
    argparse's `invalid time_us value`."""
    for text in ("١٧٩٦٦٠٣٤٢٠٨٣٦٠١٩", "²"):
        with pytest.raises(argparse.ArgumentTypeError) as refused:
            time_us(text)
        assert "is neither µs since the epoch nor an ISO 8601 time" in str(refused.value)


@pytest.mark.parametrize(
    "text", ["0000000000000000", "0999999999999999", "0001-01-01T00:00Z", "1999-12-31T23:59Z"]
)
def test_a_time_before_the_venues_times_is_refused_not_taken_as_1970(text: str) -> None:
    """The review's finding (session 28): 16 digits with leading zeros passed the digits
    rule as a time in 1970, and an ISO time of year 1 gave negative µs."""
    with pytest.raises(argparse.ArgumentTypeError, match="is not a time the venue takes: from"):
        time_us(text)
    assert time_us("2001-09-09T01:46:40Z") == 10**15  # the first time it takes
