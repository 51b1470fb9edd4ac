"""`python -m bench.histories_bench`: the private histories' trim, run small in this process."""

import json

import pytest

from bench import histories_bench
from gateway import limits


def test_both_shapes_are_cut_to_the_trimmed_total(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "PRIVATE_HISTORY_EVENTS_TOTAL_MAX", 2_000)
    monkeypatch.setattr(limits, "PRIVATE_HISTORY_EVENTS_TRIMMED", 1_800)
    assert histories_bench.main(["--accounts", "300", "--runs", "2", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["shape"] for r in results] == ["even", "skewed"]
    for result in results:
        assert result["events"] == 2_001, "just past the bound"
        assert 201 <= result["dropped"] <= 2_001 - 1_800 + 300, "down to (about) the trimmed"
        assert 0 <= result["ms_min"] <= result["ms_median"] <= result["ms_max"]


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--accounts", "0"], "--accounts must be 1.."),
        (["--runs", "0"], "--runs must be 1..100"),
        (["--accounts", "1", "--runs", "101"], "--runs must be 1..100"),
    ],
)
def test_a_bad_size_is_refused_in_one_line(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert histories_bench.main(argv) == 2
    assert capsys.readouterr().err.startswith(f"histories_bench: {said}")
