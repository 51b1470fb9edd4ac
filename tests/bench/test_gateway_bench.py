"""`venue bench gateway` at a tiny duration: the JSON is complete and consistent (never timed).

One run (a real `venue serve` in another process) serves every test of the module.
"""

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import gateway_bench
from cli.failures import CommandFailed
from cli.main import main
from tests.conftest import ROOT
from tests.sample_config import SAMPLE_CONFIG
from tests.terminal import run_on_terminal

DURATION_S = 0.3  # per phase: enough for a few hundred actions; the run takes ~2 s
PHASE_KEYS = {"sent", "acked", "rejected", "rate_limited", "unanswered", "backoff_s", "seconds"}


@pytest.fixture(scope="module")
def outcome() -> tuple[int, dict[str, Any], str]:
    parser = argparse.ArgumentParser()
    gateway_bench.add_arguments(parser)
    argv = ["--duration", str(DURATION_S), "--pipeline", "3", "--json"]
    args = parser.parse_args([*argv, "--config", str(SAMPLE_CONFIG)])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = gateway_bench.run(args)
    return status, json.loads(out.getvalue().strip().splitlines()[-1]), err.getvalue()


def test_the_json_is_complete_and_consistent(outcome: tuple[int, dict[str, Any], str]) -> None:
    _, result, _ = outcome
    single, batched = result["single"], result["batched"]
    for phase in (single, batched):
        assert phase.keys() >= PHASE_KEYS
        assert phase["acked"] + phase["rejected"] + phase["unanswered"] == phase["sent"]
        assert phase["rate_limited"] <= phase["rejected"]
    for total in ("sent", "acked", "rejected", "rate_limited", "unanswered"):
        assert result[total] == single[total] + batched[total]
    assert result["acked"] + result["rejected"] + result["unanswered"] == result["sent"]
    assert result["duration_s"] == DURATION_S
    assert batched["batch_ops"] == gateway_bench.BATCH_OPS and batched["pipeline"] == 3
    assert result["rate_limits"]["connection_per_s"] > 0
    assert result["server_stopped_cleanly"] is True and "server_exception" in result
    assert result["open_orders_after"] == 0  # every order placed was canceled


def test_single_round_trips_are_acknowledged(outcome: tuple[int, dict[str, Any], str]) -> None:
    _, result, _ = outcome
    single = result["single"]
    assert single["acked"] > 0 and single["unanswered"] == 0 and single["error"] is None
    assert single["acked"] % 2 == 0  # each place acknowledged was canceled, acknowledged
    # the rate is of the unrounded seconds, the report's are rounded to the µs: ±1
    assert abs(result["round_trips_per_sec"] - single["acked"] / single["seconds"]) <= 1
    latency = result["round_trip_us"]
    assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]


def test_batches_are_acknowledged(outcome: tuple[int, dict[str, Any], str]) -> None:
    status, result, _ = outcome
    batched = result["batched"]
    assert result["errors"] == [] and result["server_exception"] is None
    assert batched["unanswered"] == 0
    assert batched["acked"] > 0 and batched["acked"] % 2 == 0
    assert abs(result["batched_actions_per_sec"] - batched["acked"] / batched["seconds"]) <= 1
    latency = result["batch_round_trip_us"]
    assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]
    assert status == 0


def test_bad_arguments_are_refused() -> None:
    parser = argparse.ArgumentParser()
    gateway_bench.add_arguments(parser)
    with pytest.raises(CommandFailed, match="--duration"):
        gateway_bench.run(parser.parse_args(["--duration", "0"]))
    with pytest.raises(CommandFailed, match="--pipeline"):
        gateway_bench.run(parser.parse_args(["--pipeline", "0"]))


def test_bad_arguments_are_the_venue_line_and_status_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["bench", "gateway", "--duration", "nan"]) == 2
    assert capsys.readouterr().err.startswith("venue: --duration must be in (0, ")


def test_on_a_terminal_each_step_is_drawn_and_json_stays_clean() -> None:
    """Two phases of --duration each (10 s by default) passed with nothing on the terminal."""
    argv = [sys.executable, "-m", "cli.main", "bench", "gateway", "--config", str(SAMPLE_CONFIG)]
    argv += ["--duration", str(DURATION_S)]
    status, drawn = run_on_terminal(argv, ROOT, timeout_s=120)
    assert status == 0, drawn
    for step in ("server start: 0/4", "one order at a time: 1/4", "batches: 2/4", "done: 4/4"):
        assert f"gateway: {step} steps" in drawn, drawn
    status, drawn = run_on_terminal([*argv, "--json"], ROOT, timeout_s=120)
    assert status == 0 and "steps" not in drawn, drawn
    assert json.loads(drawn.strip().splitlines()[-1])["acked"] > 0


def test_a_missing_config_is_named_as_the_flag_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run outside the repository, it said only "venue: venue.toml: No such file or
    directory", after its progress bar had started."""
    missing = tmp_path / "venue.toml"
    assert main(["bench", "gateway", "--config", str(missing), "--duration", "0.1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"venue: --config {missing}: no such file (the sample venue.toml is")
    assert err.count("\n") == 1
