"""`venue bench ws-layer` on a few frames: every layer answers them all and is measured."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import ws_layer_bench
from cli.failures import CommandFailed
from cli.main import main
from tests.conftest import ROOT
from tests.terminal import TerminalStream


def test_each_layer_answers_every_frame_and_reports_its_cpu(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = argparse.ArgumentParser()
    ws_layer_bench.add_arguments(parser)
    args = parser.parse_args(
        ["--frames", "300", "--runs", "1", "--layers", "websockets,sansio,venue"]
    )
    assert ws_layer_bench.run(args) == 0
    printed = capsys.readouterr()
    table = json.loads(printed.out)
    assert set(table) == {"websockets", "sansio", "venue"}
    for row in table.values():
        assert row["server_cpu_us_per_frame"] >= 0 and len(row["runs"]) == 1
        assert "cpu_error_percent_max" in row
    # 300 frames cost a server a few ms of CPU, under a 10 ms tick or two: they read 0.0 or
    # a multiple of a tick's share, shown as if exact
    assert "ws-layer: figures unreliable: the kernel counts CPU time in" in printed.err


def test_a_layers_cpu_error_is_its_worst_runs_and_said_past_ten_percent() -> None:
    tick_s = 1 / os.sysconf("SC_CLK_TCK")
    steady = ws_layer_bench._row([{"server_cpu_us_per_frame": 8.0, "server_cpu_s": 100 * tick_s}])
    assert steady["cpu_error_percent_max"] == 2.0  # two ticks of a hundred
    assert ws_layer_bench._unreliable({"sansio": steady}, frames=50_000) == ""
    short = [{"server_cpu_us_per_frame": 6.0, "server_cpu_s": s * tick_s} for s in (3, 4)]
    row = ws_layer_bench._row(short)
    assert row["cpu_error_percent_max"] == pytest.approx(66.7)
    line = ws_layer_bench._unreliable({"sansio": steady, "venue": row}, frames=5_000)
    assert "over 5,000 frames can be ±66.7% of them; --frames 33,350 or more" in line
    idle = ws_layer_bench._row([{"server_cpu_us_per_frame": 0.0, "server_cpu_s": 0.0}])
    assert idle["cpu_error_percent_max"] is None
    line = ws_layer_bench._unreliable({"venue": idle}, frames=200)
    assert "can be all of them (a run counted no tick); --frames 50,000 (the default)" in line


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
    with pytest.raises(CommandFailed, match=says):
        ws_layer_bench.run(parser.parse_args(argv))


def test_the_venue_layer_without_its_config_is_refused_up_front(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from outside the repository, its server died unseen and the client failed with a
    ProcessLookupError: now the missing venue.toml is named before anything starts."""
    monkeypatch.setattr(ws_layer_bench, "VENUE_CONFIG", tmp_path / "venue.toml")
    parser = argparse.ArgumentParser()
    ws_layer_bench.add_arguments(parser)
    with pytest.raises(CommandFailed, match=r"the venue layer runs \S*venue\.toml"):
        ws_layer_bench.run(parser.parse_args(["--layers", "sansio,venue"]))


def test_a_refusal_is_one_line_from_the_cli_and_from_the_script(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`venue: ...`, status 2 (was the bare message, status 1); the script the server side
    runs says the same under its own name, with no traceback."""
    assert main(["bench", "ws-layer", "--frames", "0"]) == 2
    assert capsys.readouterr().err == "venue: --frames and --runs must be at least 1\n"
    script = [sys.executable, str(ROOT / "bench" / "ws_layer_bench.py"), "--frames", "0"]
    env = os.environ | {"PYTHONPATH": str(ROOT)}  # as `_measure` starts it
    done = subprocess.run(script, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr == "ws_layer_bench.py: --frames and --runs must be at least 1\n"


def test_on_a_terminal_a_bar_counts_the_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its 3 runs of every layer (tens of seconds at the defaults) drew nothing till the end."""
    terminal = TerminalStream()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["bench", "ws-layer", "--frames", "100", "--runs", "1", "--layers", "sansio"]) == 0
    assert "ws-layer: sansio: 100%" in terminal.getvalue() and "1/1" in terminal.getvalue()
    assert set(json.loads(capsys.readouterr().out)) == {"sansio"}


def test_json_is_accepted_like_every_other_benchmarks_and_silences_the_bar(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`venue bench ws-layer --json`, as the README gives `--json` for every benchmark, was
    refused: "unrecognized arguments"."""
    terminal = TerminalStream()
    monkeypatch.setattr(sys, "stderr", terminal)
    argv = ["bench", "ws-layer", "--frames", "100", "--runs", "1", "--layers", "sansio"]
    assert main([*argv, "--json"]) == 0
    assert "ws-layer: sansio: 100%" not in terminal.getvalue()
    assert "ws-layer sansio " in terminal.getvalue()  # the figure's line, on stderr still
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and set(json.loads(out)) == {"sansio"}
