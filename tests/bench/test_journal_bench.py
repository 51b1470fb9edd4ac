"""`venue bench journal` at a tiny size: the JSON is complete and consistent (never timed)."""

import json

import pytest

from cli.main import main


def test_journal_bench_reports_consistent_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "journal", "--records", "3000", "--batch", "500", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (result["records"], result["batch"], result["fsyncs"]) == (3000, 500, 6)
    assert result["verified"] is True
    assert result["durable_records_per_sec"] == pytest.approx(3000 / result["seconds"], rel=0.01)
    batch = result["batch_ms"]
    assert 0 < batch["p50"] <= batch["p99"] <= batch["max"]


def test_sequencer_mode_commits_every_command_and_counts_fsyncs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["bench", "journal", "--sequencer", "--commands", "300", "--rate", "100000", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["sequencer"] is True and result["verified"] is True
    assert 1 <= result["fsyncs"] <= 300
    assert result["commands_per_fsync"] == round(300 / result["fsyncs"], 2)
    assert result["journal_thread_cpu_us_per_command"] > 0
    latency = result["release_latency_ms"]
    assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]
