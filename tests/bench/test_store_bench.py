"""`venue bench store` at a tiny size: the JSON is complete and consistent (never timed)."""

import json
import sys

import pytest

from bench import store_bench
from bench.store_bench import TRANSFERS_PER_TRADE, trade_batches
from cli.main import main
from tests.terminal import TerminalStream


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


NOTHING_LISTENS = "postgresql://bench@127.0.0.1:47499/none"  # a loopback port of this suite's


def test_a_postgres_that_cannot_be_reached_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """It was psycopg's traceback, status 1."""
    assert main(["bench", "store", "--postgres", NOTHING_LISTENS, "--trades", "10"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("venue: the PostgreSQL ledger store: connection failed")
    assert err.count("\n") == 1


def test_a_postgres_database_that_is_not_empty_is_refused(
    postgres_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second run on one database measured nothing: every batch was already stored, so the
    store only compared it (and reported trades/s twice the first run's)."""
    argv = ["bench", "store", "--postgres", postgres_dsn, "--trades", "30", "--batch", "10"]
    assert main([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verified"] is True
    assert main(argv) == 2
    printed = capsys.readouterr()
    assert printed.out == ""
    stored = 30 * TRANSFERS_PER_TRADE + 2 * store_bench.ACCOUNTS  # the trades and the funding
    assert printed.err == (
        f"venue: --postgres: the database holds transfers already (up to id {stored}), and the"
        " benchmark writes from id 1: give an empty database\n"
    )


def test_an_empty_postgres_dsn_is_refused_at_parsing(capsys: pytest.CaptureFixture[str]) -> None:
    """`--postgres "$DSN"` with DSN unset measured SQLite, saying "store (sqlite)"."""
    with pytest.raises(SystemExit) as exited:
        main(["bench", "store", "--postgres", "", "--trades", "10"])
    assert exited.value.code == 2
    assert "an empty DSN" in capsys.readouterr().err


def test_venue_path_books_real_trades_through_the_store_thread(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["bench", "store", "--venue-path", "--commands", "200", "--rate", "100000"]
    assert main([*argv, "--commands-per-batch", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["venue_path"] is True and result["verified"] is True
    assert result["trades"] > 0 and result["store_writes"] >= 1
    assert result["store_thread_cpu_us_per_trade"] > 0


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--batch", "0"], "venue: --batch and --trades must be positive"),
        (["--venue-path", "--rate", "0"], "venue: --commands, --rate and --commands-per-batch"),
    ],
)
def test_a_bad_count_is_the_venue_line_and_status_2(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was the bare message with status 1, not the CLI's `venue: ...`, status 2."""
    assert main(["bench", "store", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(says) and err.count("\n") == 1


@pytest.mark.parametrize("gather_s", ["-1", "nan", "2"])
def test_a_gather_that_is_no_duration_is_refused_before_any_work(
    gather_s: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--gather-s -1` was accepted ("gathered for -1.0 s"): now refused at parsing."""
    with pytest.raises(SystemExit) as exited:
        main(["bench", "store", "--venue-path", "--commands", "10", "--gather-s", gather_s])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert f"argument --gather-s: must be within [0, 1.0], not {gather_s}" in captured.err
    assert captured.out == ""


@pytest.mark.parametrize(
    ("argv", "says"),
    [  # each was ignored: the figure printed was of the other store or the other mode
        (["--venue-path", "--postgres", NOTHING_LISTENS], "--postgres: not with --venue-path"),
        (["--venue-path", "--store", "postgres"], "--store: not with --venue-path"),
        (["--venue-path", "--trades", "5", "--batch", "3"], "--batch, --trades: not with"),
        (["--rate", "100"], "--rate: only with --venue-path"),
        (["--commands", "10", "--gather-s", "0.1"], "--commands, --gather-s: only with"),
    ],
)
def test_an_option_of_the_other_mode_is_refused_not_ignored(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "store", *argv]) == 2
    printed = capsys.readouterr()
    assert printed.out == "" and printed.err.startswith(f"venue: {says}"), printed
    assert printed.err.count("\n") == 1


def test_the_venue_path_takes_the_one_store_it_measures(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--venue-path", "--store", "sqlite", "--commands", "40", "--rate", "100000", "--json"]
    assert main(["bench", "store", *argv]) == 0
    assert json.loads(capsys.readouterr().out)["verified"] is True


def test_the_venue_path_shows_its_progress_on_a_terminal_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its 4-5 s at the defaults (the commands built, then paced) drew nothing on screen."""
    terminal = TerminalStream()
    monkeypatch.setattr(sys, "stderr", terminal)
    argv = ["bench", "store", "--venue-path", "--commands", "200", "--rate", "100000"]
    assert main(argv) == 0
    assert "store (venue path): 100%" in terminal.getvalue()
    assert "200/200" in terminal.getvalue()
    assert "store (venue path): 1" in capsys.readouterr().out  # the summary, on stdout
    quiet = TerminalStream()
    monkeypatch.setattr(sys, "stderr", quiet)
    assert main([*argv, "--json"]) == 0  # machine output: no bar
    assert quiet.getvalue() == ""


def test_the_plain_store_shows_its_steps_on_a_terminal_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its ~8 s at the defaults (the trades built, written, verified) drew nothing."""
    terminal = TerminalStream()
    monkeypatch.setattr(sys, "stderr", terminal)
    argv = ["bench", "store", "--trades", "120", "--batch", "40"]
    assert main(argv) == 0
    assert "store (sqlite): done: 3/3 steps" in terminal.getvalue()
    assert capsys.readouterr().out.startswith("store (sqlite): ")
    quiet = TerminalStream()
    monkeypatch.setattr(sys, "stderr", quiet)
    assert main([*argv, "--json"]) == 0  # machine output: no bar
    assert quiet.getvalue() == ""


def test_more_trades_than_memory_holds_are_refused_before_any_work(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--trades 200000000` (a zero too many) built 800 million transfers in memory first."""
    too_many = store_bench.TRADES_MAX + 1
    assert main(["bench", "store", "--trades", str(too_many)]) == 2
    assert capsys.readouterr().err == (
        f"venue: --trades {too_many:,}: at most {store_bench.TRADES_MAX:,} (they are built in"
        " memory first)\n"
    )


def test_more_venue_path_commands_than_memory_holds_are_refused_before_any_work(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--venue-path --commands` had no bound: every command is executed and kept, with its
    events and transfers, before the first is handed over (~2.1 GiB a million)."""
    too_many = store_bench.COMMANDS_MAX + 1
    assert main(["bench", "store", "--venue-path", "--commands", str(too_many)]) == 2
    assert capsys.readouterr().err == (
        f"venue: --commands {too_many:,}: at most {store_bench.COMMANDS_MAX:,} with --venue-path"
        " (they are executed in memory first, ~2.1 GiB a million)\n"
    )
