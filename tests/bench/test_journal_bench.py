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
