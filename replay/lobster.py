"""`venue replay lobster`: replay LOBSTER files through the engine and check its book.

Owns the command line and the I/O around `replay.lobster_replay`: reading the two files
(`replay.lobster_format`), timing the replay, and the report as text or as one JSON object
with at least rows, rows_matched, revealed, executions_checked, executions_matched and
ops_per_sec. Bad input (a directory or a device for a file, a pipe for the order book,
too) ends in one line on stderr naming the file and line (`venue: ...`; run as a module,
`python -m replay.lobster: ...`), exit status 2.
On a terminal a progress bar of the messages replayed is drawn on stderr; stdout carries
only the report. Also runs as `python -m replay.lobster`.
"""

import argparse
import json
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from cli import progress
from cli.failures import CommandFailed, OneLineParser, run_main
from engine.venue import Venue
from replay.lobster_format import LEVELS_MAX, LobsterFormatError, LobsterReader
from replay.lobster_replay import LobsterReplay, ReplayCounts

DEFAULT_SYMBOL = "LOBSTER"
PROGRESS_EVERY = 4_096  # messages per bar update: the bar costs nothing next to the replay
# LOBSTER names files TICKER_date_start_end_message_N.csv; the ticker becomes the symbol.
LOBSTER_NAME = re.compile(
    r"([A-Za-z][A-Za-z0-9.]{0,15})_[0-9]{4}-[0-9]{2}-[0-9]{2}_[0-9]+_[0-9]+_message_[0-9]+\.csv"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=Path, required=True, help="the message file")
    parser.add_argument("--orderbook", type=Path, required=True, help="the orderbook file")
    parser.add_argument(
        "--levels", type=_levels, default=None, help="N (default: the orderbook's columns / 4)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    try:
        report = replay_files(args.messages, args.orderbook, args.levels, show_progress=True)
    except LobsterFormatError as error:  # names the file and line: the operator's to fix
        raise CommandFailed(str(error)) from None
    print(json.dumps(report) if args.json else summary(report))
    return 0


def replay_files(
    messages: Path,
    orderbook: Path,
    levels: int | None = None,
    venue: Venue | None = None,
    show_progress: bool = False,
) -> dict[str, object]:
    """Replay both files (into `venue`, a fresh one by default) and report what matched.

    With `show_progress`, a bar of messages replayed goes to stderr when it is a terminal.
    """
    drawn = show_progress and progress.on_terminal()
    total = _lines(messages) if drawn else None  # one fast pass: the bar can show the end
    with (
        LobsterReader(messages, orderbook, levels) as reader,
        progress.bar(
            not drawn, total=total, desc="replay", unit=" messages", unit_scale=True
        ) as shown,
    ):
        replay = LobsterReplay(symbol_of(messages), reader.levels, venue)
        feed = replay.feed
        started = time.perf_counter()
        if not drawn:
            for message, row in reader:
                feed(message, row)
        else:
            count = 0
            for count, (message, row) in enumerate(reader, 1):
                feed(message, row)
                if not count % PROGRESS_EVERY:
                    shown.update(PROGRESS_EVERY)
            shown.update(count % PROGRESS_EVERY)
        counts = replay.finish()
        seconds = time.perf_counter() - started
    return report(replay.symbol, counts, seconds)


def _lines(path: Path) -> int:
    """How many lines the file has, read in blocks (about a second per few GB)."""
    with path.open("rb") as file:
        return sum(block.count(b"\n") for block in iter(lambda: file.read(1 << 20), b""))


def symbol_of(messages: Path) -> str:
    """The ticker of a file named as LOBSTER names them, else DEFAULT_SYMBOL."""
    match = LOBSTER_NAME.fullmatch(messages.name)
    ticker = match.group(1).upper() if match else DEFAULT_SYMBOL
    return ticker if ticker != "USD" else DEFAULT_SYMBOL  # the quote asset cannot be the base


def report(symbol: str, counts: ReplayCounts, seconds: float) -> dict[str, object]:
    """The counts as one flat object, with percentages and the throughput."""
    return {
        "symbol": symbol,
        "levels": counts.levels,
        "messages": counts.messages,
        "rows": counts.rows,  # rows compared: all but the rows_mid_run
        "rows_matched": counts.rows_matched,
        "rows_matched_pct": _percent(counts.rows_matched, counts.rows),
        "rows_mid_run": counts.rows_mid_run,
        "revealed": counts.revealed,
        "executions": counts.executions,
        "executions_checked": counts.executions_checked,
        "executions_matched": counts.executions_matched,
        "executions_matched_pct": _percent(counts.executions_matched, counts.executions_checked),
        "first_row_mismatch": counts.first_row_mismatch,
        "first_execution_mismatch": counts.first_execution_mismatch,
        "seeded_qty": counts.seeded_qty,
        "revealed_qty_added": counts.revealed_qty_added,
        "revealed_qty_removed": counts.revealed_qty_removed,
        "synthetic_qty_refused": counts.synthetic_qty_refused,
        "reassigned_qty": counts.reassigned_qty,
        "unaccounted_qty": counts.unaccounted_qty,
        "refused_ids": counts.refused_ids,
        "refused_ids_forgotten": counts.refused_ids_forgotten,
        "duplicate_ids": counts.duplicate_ids,
        "refused_while_quoting": counts.refused_while_quoting,
        "rejected": dict(sorted(counts.rejected.items())),
        "seconds": round(seconds, 6),
        "ops_per_sec": round(counts.messages / seconds) if seconds > 0 else 0,
    }


def summary(report: dict[str, object]) -> str:
    """The report for people: a few aligned lines."""
    r = report
    rejected = r["rejected"]
    assert isinstance(rejected, dict)
    lines = [
        f"{r['symbol']}: {r['messages']:,} messages, {r['levels']} levels",
        f"rows         {r['rows_matched']:,} of {r['rows']:,} match the orderbook file"
        f" ({_shown(r['rows_matched_pct'])}); {r['revealed']:,} revealed depth;"
        f" {r['rows_mid_run']:,} inside merged runs, not compared",
        f"executions   {r['executions_matched']:,} of {r['executions_checked']:,} checked"
        f" filled the orders the file names ({_shown(r['executions_matched_pct'])});"
        f" {r['executions']:,} runs in all",
        f"first miss   row at line {r['first_row_mismatch'] or '-'},"
        f" execution at line {r['first_execution_mismatch'] or '-'}",
        f"quantity     {r['seeded_qty']:,} seeded, {r['revealed_qty_added']:,} revealed,"
        f" {r['revealed_qty_removed']:,} stale removed, {r['reassigned_qty']:,} reassigned,"
        f" {r['unaccounted_qty']:,} unaccounted, {r['synthetic_qty_refused']:,} synthetic refused",
        f"ids          {r['refused_ids']:,} skipped naming refused orders"
        f" ({r['refused_ids_forgotten']:,} forgotten), {r['duplicate_ids']:,} reused",
        "rejected     " + (", ".join(f"{k} {v:,}" for k, v in rejected.items()) or "none"),
        f"quoting      {r['refused_while_quoting']:,} refused for locking or crossing the book"
        " (Nasdaq allows it; not an error)",
        f"throughput   {r['ops_per_sec']:,} messages/s ({r['seconds']} s)",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m replay.lobster", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_main(parser.prog, lambda: run(args))


def _percent(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 2) if whole else None


def _shown(percent: object) -> str:
    return "-" if percent is None else f"{percent}%"


def _levels(text: str) -> int:
    try:
        levels = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= levels <= LEVELS_MAX:
        raise argparse.ArgumentTypeError(f"levels must be within 1..{LEVELS_MAX}")
    return levels


if __name__ == "__main__":
    sys.exit(main())
