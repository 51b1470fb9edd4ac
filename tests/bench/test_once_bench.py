"""`python -m bench.once_bench`: the once memory's CPU per place, run small in this process."""

import json

import pytest

from bench import once_bench


def test_a_full_memory_remembers_its_maximum_and_the_figures_are_ordered(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        once_bench.main(["--places", "3000", "--accounts", "7", "--venue-max", "500", "--json"])
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert (result["places"], result["accounts"], result["once"]) == (3000, 7, True)
    assert result["remembered"] == 500  # full, the oldest forgotten at every place since
    assert 0 <= result["p50_ns"] <= result["p9999_ns"] <= result["max_ns"]
    assert len(result["worst"]) == min(result["stalls"], 5)  # the worst five stalls, if any


def test_plain_places_leave_the_memory_empty(capsys: pytest.CaptureFixture[str]) -> None:
    assert once_bench.main(["--places", "200", "--plain", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["once"], result["remembered"]) == (False, 0)


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--places", "0"], "--places must be 1.."),
        (["--accounts", "0"], "--accounts must be at least 1"),
        (["--venue-max", "0"], "--venue-max must be at least 1"),
    ],
)
def test_a_bad_size_is_refused_in_one_line(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert once_bench.main(argv) == 2
    assert capsys.readouterr().err.startswith(f"once_bench: {said}")
