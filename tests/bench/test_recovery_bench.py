"""`venue bench recovery` at a tiny size: complete, consistent JSON (never timed)."""

import json

import pytest

from bench import recovery_bench
from cli.main import main


def test_recovery_bench_reports_consistent_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "recovery", "--commands", "2000", "--orders", "3000", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["journal_commands"] > 2_000  # the setup is journaled too
    rate = result["journal_commands"] / result["replay_seconds"]
    assert result["replay_commands_per_sec"] == pytest.approx(rate, rel=0.05)
    assert result["snapshot_orders"] == 3000 and result["snapshot_bytes"] > 3000 * 20
    assert result["snapshot_write_seconds"] >= 0 and result["snapshot_load_seconds"] >= 0


def test_a_count_of_zero_is_the_venue_line_and_status_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """It was the bare message with status 1, not the CLI's `venue: ...`, status 2."""
    assert main(["bench", "recovery", "--commands", "0"]) == 2
    assert capsys.readouterr().err == "venue: --commands and --orders must be positive\n"


@pytest.mark.parametrize(
    ("flag", "most"),
    [("--commands", recovery_bench.COMMANDS_MAX), ("--orders", recovery_bench.ORDERS_MAX)],
)
def test_more_than_memory_holds_is_refused_before_any_work(
    flag: str, most: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--orders 10000000` (a zero too many) rested ~13 GiB of orders before its snapshot."""
    assert main(["bench", "recovery", flag, str(most + 1)]) == 2
    err = capsys.readouterr().err
    assert err == f"venue: {flag} {most + 1:,}: at most {most:,} (held in memory whole)\n"
