"""`venue bench journal` at a tiny size: the JSON is complete and consistent (never timed)."""

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest

from bench import workloads
from bench.journal_bench import JOURNAL_FILE_BYTES_MAX, CountingJournal, check_journal_limits
from cli.failures import CommandFailed
from cli.main import main
from core.journal import HEADER_BYTES, RECORD_BYTES_MAX, UNSYNCED_BYTES_MAX
from core.sequencer import Sequencer
from engine.venue import Venue
from settlement.ledger import Ledger
from tests.terminal import TerminalStream


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


def test_the_counting_journal_counts_each_durable_batch_of_the_sequencer_once(
    tmp_path: Path,
) -> None:
    """The sequencer commits through `commit_commands`: each batch made durable is one count
    (the `--sequencer` mode's fsyncs), not zero."""
    commands = workloads.ledger_setup()

    async def three_batches() -> int:
        journal = CountingJournal(tmp_path / "j")
        sequencer = Sequencer(
            Venue(ledger=Ledger()), journal, lambda: time.time_ns() // 1000, lambda b: None
        )
        try:
            for command in commands[:3]:  # each waits to be durable: a batch of its own
                sequencer.submit(command)
                await sequencer.drain()
            return journal.syncs
        finally:
            sequencer.close()

    assert len(commands) >= 3
    assert asyncio.run(three_batches()) == 3


def test_the_sequencers_options_without_sequencer_are_refused_not_ignored(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["bench", "journal", "--commands", "0"]) == 2
    assert capsys.readouterr().err.startswith("venue: --commands: only with --sequencer")
    assert main(["bench", "journal", "--rate", "5", "--commit-interval-ms", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("venue: --rate, --commit-interval-ms: only with --sequencer")


def test_the_file_options_with_sequencer_are_refused_not_ignored(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--sequencer --batch 10` committed whatever the sequencer gathered, saying nothing."""
    assert main(["bench", "journal", "--sequencer", "--batch", "10"]) == 2
    assert capsys.readouterr().err == (
        "venue: --batch: not with --sequencer (it journals real commands)\n"
    )
    assert main(["bench", "journal", "--sequencer", "--records", "5", "--payload-bytes", "9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("venue: --records, --payload-bytes: not with --sequencer")


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--records", "0"], "--records, --batch and --payload-bytes must be positive"),
        # a zero too many listed ~10 GiB of records in memory before the clock started
        (["--records", "100000000"], "--records 100,000,000: at most 50,000,000"),
        (["--sequencer", "--rate", "0"], "--commands and --rate must be positive"),
        # no bound: the commands built first, the venue grows with them (~0.7 GiB a million)
        (["--sequencer", "--commands", "6000001"], "--commands 6,000,001: at most 6,000,000"),
        (["--sequencer", "--commit-interval-ms", "nan"], "--commit-interval-ms must be 0 to"),
    ],
)
def test_a_bad_count_is_the_venue_line_and_status_2(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "journal", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"venue: {says}") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (  # was a ValueError's traceback
            ["--payload-bytes", str(RECORD_BYTES_MAX + 1), "--records", "2"],
            f"--payload-bytes {RECORD_BYTES_MAX + 1:,}: over the journal's",
        ),
        (  # was the journal's error naming a deleted temporary file, saying "sync first"
            ["--payload-bytes", str(RECORD_BYTES_MAX), "--records", "40", "--batch", "40"],
            f"--batch 40 of --payload-bytes {RECORD_BYTES_MAX:,}: ",
        ),
    ],
)
def test_a_record_or_batch_over_the_journals_limits_is_one_line_naming_the_flags(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "journal", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"venue: {says}") and err.count("\n") == 1


def test_a_batch_just_within_the_unsynced_limit_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The refusal's bound is the journal's own: a batch of frames that fits is written."""
    frame_bytes = HEADER_BYTES + 1_000
    batch = UNSYNCED_BYTES_MAX // frame_bytes
    argv = ["--payload-bytes", "1000", "--records", str(batch), "--batch", str(batch), "--json"]
    assert main(["bench", "journal", *argv]) == 0
    assert json.loads(capsys.readouterr().out)["fsyncs"] == 1
    argv[3] = argv[5] = str(batch + 1)
    assert main(["bench", "journal", *argv]) == 2


def test_the_sequencer_mode_shows_its_progress_on_a_terminal_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its 4-5 s at the defaults (commands paced into the sequencer) drew nothing on screen."""
    terminal = TerminalStream()
    monkeypatch.setattr(sys, "stderr", terminal)
    argv = ["bench", "journal", "--sequencer", "--commands", "300", "--rate", "100000"]
    assert main(argv) == 0
    assert "journal (sequencer): 100%" in terminal.getvalue()
    assert "300/300" in terminal.getvalue()
    assert capsys.readouterr().out.startswith("journal (sequencer): 300 commands")
    quiet = TerminalStream()
    monkeypatch.setattr(sys, "stderr", quiet)
    assert main([*argv, "--json"]) == 0  # machine output: no bar
    assert quiet.getvalue() == ""


def test_a_journal_larger_than_a_run_may_write_is_refused_naming_both_flags() -> None:
    """Each flag within its own bound, their product 100 GB on the temporary directory's disk
    (session 26's review: nothing refused it before a single byte was written)."""
    with pytest.raises(CommandFailed, match=r"--records 100,000 of --payload-bytes 1,000,000"):
        check_journal_limits(100_000, 8, 1_000_000)
    check_journal_limits(JOURNAL_FILE_BYTES_MAX // 1_000, 8, 900)  # within: no refusal
