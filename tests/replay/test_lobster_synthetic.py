"""Synthetic LOBSTER files: a reference book by price-time priority, and level-N filtering
that keeps exactly the messages and rows a deeper file shows of the same day."""

import random
import subprocess
import sys
from pathlib import Path

from replay.lobster_format import LobsterReader, parse_row
from replay.lobster_synthetic import ReferenceBook, generate, write
from tests.terminal import run_on_terminal

REPO = Path(__file__).resolve().parents[2]

A, B = 1_000_100, 999_900  # an ask and a bid price


def test_the_reference_book_fills_by_price_then_time() -> None:
    book = ReferenceBook()
    book.add(-1, 1, A + 100, 10)
    book.add(-1, 2, A, 5)
    book.add(-1, 3, A, 7)
    book.add(1, 4, B, 9)
    assert book.best(-1) == A and book.best(1) == B
    assert book.depth(-1, 5) == [(A, 12), (A + 100, 10)]
    assert book.sweep(-1, A + 100, 15) == [(2, 5, A), (3, 7, A), (1, 3, A + 100)]
    assert book.sweep(-1, A, 100) == [(2, 5, A), (3, 7, A)]  # the limit stops it
    book.reduce(2, 5)
    book.reduce(3, 3)
    assert book.depth(-1, 1) == [(A, 4)] and book.size(3) == 4
    book.reduce(3, 4)
    assert book.depth(-1, 5) == [(A + 100, 10)] and 3 not in book.orders
    assert book.pick(random.Random(1), 1.0) in {1, 4}


def test_the_same_seed_gives_the_same_files() -> None:
    first = list(generate(400, 3, seed=5))
    assert first == list(generate(400, 3, seed=5))
    assert first != list(generate(400, 3, seed=6))


def test_a_day_holds_every_message_type(tmp_path: Path) -> None:
    with LobsterReader(*write(tmp_path, "SYNTH", 2_000, 5, seed=2)) as reader:
        kinds = {message.kind for message, _ in reader}
    assert kinds == {1, 2, 3, 4, 5, 6, 7}


def test_a_shallower_file_is_the_deeper_one_seen_through_fewer_levels() -> None:
    """Every event that changes the top 2 levels changes the top 6, so the level-2 file is
    a subsequence of the level-6 file of the same day, with its rows cut to 2 levels; and
    it leaves out exactly the book events that do not change its own top levels."""
    deep = list(generate(1_500, 6, seed=9))
    shallow = list(generate(1_500, 2, seed=9))
    assert 0 < len(shallow) < len(deep)
    rows = iter(deep)
    previous = None
    for message, row in shallow:
        deep_row = next(text for line, text in rows if line == message)
        asks, bids = parse_row(row.encode(), 1, 8, Path("b")).shown()
        deep_asks, deep_bids = parse_row(deep_row.encode(), 1, 24, Path("b")).shown()
        assert (asks, bids) == (deep_asks[:2], deep_bids[:2])
        if message.split(",")[1] in "1234":
            assert row != previous, f"{message} changes nothing a level-2 file shows"
        previous = row


def test_the_command_prints_only_the_two_paths_off_a_terminal(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "replay.lobster_synthetic", "--out", str(tmp_path)]
    done = subprocess.run(
        [*argv, "--events", "3000"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stderr == ""
    messages, orderbook = (Path(line) for line in done.stdout.splitlines())
    assert messages.is_file() and orderbook.is_file()


def test_on_a_terminal_the_command_draws_a_progress_bar(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "replay.lobster_synthetic", "--out", str(tmp_path)]
    status, drawn = run_on_terminal([*argv, "--events", "3000"], REPO, timeout_s=60)
    assert status == 0, drawn
    assert "generate: 100%" in drawn and "3.00k/3.00k" in drawn
