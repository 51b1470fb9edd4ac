"""`venue bench ws-layer` on a few frames: every layer answers them all and is measured."""

import argparse
import json
from pathlib import Path

import pytest

from bench import ws_layer_bench


def test_each_layer_answers_every_frame_and_reports_its_cpu(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = argparse.ArgumentParser()
    ws_layer_bench.add_arguments(parser)
    args = parser.parse_args(
        ["--frames", "300", "--runs", "1", "--layers", "websockets,sansio,venue"]
    )
    assert ws_layer_bench.run(args) == 0
    table = json.loads(capsys.readouterr().out)
    assert set(table) == {"websockets", "sansio", "venue"}
    for row in table.values():
        assert row["server_cpu_us_per_frame"] >= 0 and len(row["runs"]) == 1


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--frames", "0"], "--frames and --runs must be at least 1"),
        (["--runs", "0"], "--frames and --runs must be at least 1"),
        (["--layers", "sansio,foo"], "--layers: no layer 'foo'"),
        (["--layers", ","], "--layers: name at least one layer"),
    ],
)
def test_a_count_below_one_or_an_unknown_layer_is_refused_before_any_server_starts(
    argv: list[str], says: str
) -> None:
    parser = argparse.ArgumentParser()
    ws_layer_bench.add_arguments(parser)
    with pytest.raises(SystemExit, match=says):
        ws_layer_bench.run(parser.parse_args(argv))


def test_the_venue_layer_without_its_config_is_refused_up_front(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from outside the repository, its server died unseen and the client failed with a
    ProcessLookupError: now the missing venue.toml is named before anything starts."""
    monkeypatch.setattr(ws_layer_bench, "VENUE_CONFIG", tmp_path / "venue.toml")
    parser = argparse.ArgumentParser()
    ws_layer_bench.add_arguments(parser)
    with pytest.raises(SystemExit, match=r"the venue layer runs \S*venue\.toml"):
        ws_layer_bench.run(parser.parse_args(["--layers", "sansio,venue"]))
