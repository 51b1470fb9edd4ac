"""`venue bench store` at a tiny size: the JSON is complete and consistent (never timed)."""

import json

import pytest

from bench.store_bench import TRANSFERS_PER_TRADE, trade_batches
from cli.main import main


def test_store_bench_reports_consistent_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "store", "--batch", "50", "--trades", "420", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["trades"] == 420 and result["transfers"] == 420 * TRANSFERS_PER_TRADE
    assert result["verified"] is True and result["synchronous"] == "FULL"
    assert result["trades_per_sec"] == pytest.approx(420 / result["seconds"], rel=0.01)
    assert result["cpu_us_per_trade"] > 0
    batch = result["batch_ms"]
    assert 0 < batch["p50"] <= batch["p99"] <= batch["max"]


def test_batches_are_whole_trades_with_consecutive_ids() -> None:
    batches = trade_batches(trades=7, batch=3, first_id=11)
    assert [len(rows) for rows in batches] == [12, 12, 4]
    ids = [t.transfer_id for rows in batches for t in rows]
    assert ids == list(range(11, 11 + 28))
    assert all(t.debit_account != t.credit_account for rows in batches for t in rows)


def test_store_bench_runs_on_a_throwaway_postgres(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "store", "--store", "postgres", "--batch", "50", "--trades", "120", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["store"] == "postgres" and result["verified"] is True
    assert result["transfers"] == 120 * TRANSFERS_PER_TRADE
