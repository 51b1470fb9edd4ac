"""`venue bench ws-layer` on a few frames: every layer answers them all and is measured."""

import argparse
import json

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
