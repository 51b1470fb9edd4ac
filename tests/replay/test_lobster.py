"""`venue replay lobster`: the report as JSON and text, and clean failures on bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main
from replay import lobster
from replay.lobster_replay import ReplayCounts
from tests.replay.conftest import MSFT_MESSAGES, MSFT_ORDERBOOK, TEST_MESSAGES, TEST_ORDERBOOK
from tests.terminal import run_on_terminal

REPO = Path(__file__).resolve().parents[2]
REQUIRED = {"rows", "rows_matched", "revealed", "executions_checked", "executions_matched"}


def run(argv: list[str]) -> int:
    return lobster.main(argv)


def files(messages: Path, orderbook: Path) -> list[str]:
    return ["--messages", str(messages), "--orderbook", str(orderbook)]


def test_json_is_one_object_with_the_issue_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert run([*files(TEST_MESSAGES, TEST_ORDERBOOK), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {key: report[key] for key in REQUIRED} == {
        "rows": 40,
        "rows_matched": 40,
        "revealed": 4,
        "executions_checked": 6,
        "executions_matched": 6,
    }
    assert isinstance(report["ops_per_sec"], int) and report["ops_per_sec"] > 0
    assert (report["symbol"], report["levels"], report["rows_matched_pct"]) == ("TEST", 2, 100.0)


def test_text_says_what_matched_and_what_was_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert run([*files(MSFT_MESSAGES, MSFT_ORDERBOOK), "--levels", "3"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("MSFT: 24 messages, 3 levels\n")
    assert "20 of 23 match the orderbook file (86.96%); 1 revealed depth" in text
    assert "3 of 4 checked filled the orders the file names (75.0%)" in text
    assert "row at line 9, execution at line 5" in text
    assert "rejected     instrument_halted 1" in text


def test_refusals_while_quoting_are_reported_apart_from_rejections() -> None:
    counts = ReplayCounts(levels=1, refused_while_quoting=2, rejected={"instrument_halted": 1})
    report = lobster.report("X", counts, 1.0)
    assert (report["refused_while_quoting"], report["rejected"]) == (2, {"instrument_halted": 1})
    text = lobster.summary(report)
    assert "\nrejected     instrument_halted 1\n" in text
    assert "\nquoting      2 refused for locking or crossing the book" in text


@pytest.mark.parametrize(
    ("rows", "levels", "error"),
    [
        (None, "3", "orderbook_2.csv:1: 8 columns are 2 levels, not the 3 asked for"),
        ("gone", None, "gone.csv: No such file or directory"),
        ("short", None, "message_2.csv:3: more messages than"),
        ("hole", None, "b.csv:2: bid levels: a level follows an empty one"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_traceback(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    rows: str | None,
    levels: str | None,
    error: str,
) -> None:
    orderbook = TEST_ORDERBOOK
    lines = TEST_ORDERBOOK.read_text().splitlines()
    if rows == "gone":
        orderbook = tmp_path / "gone.csv"
    elif rows == "short":
        orderbook = tmp_path / "b.csv"
        orderbook.write_text("\n".join(lines[:2]) + "\n")
    elif rows == "hole":  # well formed but for its meaning: found when the replay uses it
        orderbook = tmp_path / "b.csv"
        lines[1] = "1000100,250,999900,0,1000200,200,999800,300"
        orderbook.write_text("\n".join(lines) + "\n")
    argv = files(TEST_MESSAGES, orderbook) + (["--levels", levels] if levels else [])
    assert run(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("python -m replay.lobster: ") and error in captured.err
    assert captured.err.count("\n") == 1


def test_through_the_venue_command_bad_input_is_the_venue_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`venue: ...` like every other venue command (it was `replay lobster: ...`)."""
    bad = tmp_path / "m.csv"
    bad.write_text("34200.1,9,1,1,1,1\n")
    assert main(["replay", "lobster", *files(bad, MSFT_ORDERBOOK)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"venue: {bad}:1: unknown message type 9\n"


@pytest.mark.parametrize("levels", ["0", "1001", "two"])
def test_levels_out_of_range_are_a_usage_error(levels: str) -> None:
    with pytest.raises(SystemExit) as exited:
        run([*files(TEST_MESSAGES, TEST_ORDERBOOK), "--levels", levels])
    assert exited.value.code == 2


@pytest.mark.parametrize(
    ("name", "symbol"),
    [
        ("AAPL_2012-06-21_34200000_57600000_message_10.csv", "AAPL"),
        ("brk.a_2012-06-21_0_86400000_message_1.csv", "BRK.A"),
        ("messages.csv", "LOBSTER"),
        ("AAPL.csv", "LOBSTER"),
        ("my messages.csv", "LOBSTER"),
        ("AAPL_2012-06-21_message_10.csv", "LOBSTER"),  # not LOBSTER's name: no start, end
        ("AAPL_2012-06-21_34200000_57600000_orderbook_10.csv", "LOBSTER"),
        ("USD_2012-06-21_34200000_57600000_message_1.csv", "LOBSTER"),  # the quote asset
    ],
)
def test_the_symbol_is_the_ticker_the_file_name_starts_with(name: str, symbol: str) -> None:
    assert lobster.symbol_of(Path(name)) == symbol


def test_runs_as_a_module(tmp_path: Path) -> None:
    good = subprocess.run(
        [sys.executable, "-m", "replay.lobster", "--json", *files(MSFT_MESSAGES, MSFT_ORDERBOOK)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["rows_matched"] == 20
    bad = tmp_path / "m.csv"
    bad.write_text("34200.1,9,1,1,1,1\n")
    failed = subprocess.run(
        [sys.executable, "-m", "replay.lobster", *files(bad, MSFT_ORDERBOOK)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert failed.returncode == 2
    assert failed.stderr == f"python -m replay.lobster: {bad}:1: unknown message type 9\n"


def test_off_a_terminal_json_is_one_line_and_nothing_else(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "replay.lobster", *files(TEST_MESSAGES, TEST_ORDERBOOK)]
    done = subprocess.run([*argv, "--json"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    (line,) = done.stdout.splitlines()
    assert json.loads(line)["rows_matched"] == 40
    assert done.stderr == ""  # no bar either: stderr is not a terminal


def test_on_a_terminal_a_progress_bar_is_drawn() -> None:
    argv = [sys.executable, "-m", "replay.lobster", *files(TEST_MESSAGES, TEST_ORDERBOOK)]
    status, drawn = run_on_terminal([*argv, "--json"], REPO, timeout_s=60)
    assert status == 0, drawn
    assert "replay: 100%" in drawn and "messages" in drawn
    assert json.loads(drawn.strip().splitlines()[-1])["rows_matched"] == 40
