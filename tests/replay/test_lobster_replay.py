"""The LOBSTER replay: hand-written files with known results, a wrong priority rule it must
catch, seeding from every kind of first message, reveals, and generated days at any depth."""

from dataclasses import asdict
from pathlib import Path

import pytest

from engine.enums import InstrumentStatus
from engine.venue import Venue
from replay import lobster_replay
from replay.lobster_format import LobsterReader
from replay.lobster_replay import LobsterReplay, ReplayCounts
from replay.lobster_synthetic import write
from tests.replay.conftest import (
    MSFT_MESSAGES,
    MSFT_ORDERBOOK,
    TEST_MESSAGES,
    TEST_ORDERBOOK,
    Levels,
    YoungestFirstVenue,
    write_files,
)


def replay(
    messages: Path, orderbook: Path, venue: Venue | None = None, paranoid: bool = True
) -> ReplayCounts:
    """Replay a pair of files, checking the engine's whole state after every message."""
    with LobsterReader(messages, orderbook) as reader:
        subject = LobsterReplay("TEST", reader.levels, venue)
        for message, row in reader:
            subject.feed(message, row)
            if paranoid:
                subject.venue.check_invariants()
        return subject.finish()


Flow = list[tuple[str, tuple[Levels, Levels]]]  # message lines, each with (asks, bids) after


def replay_flow(directory: Path, flow: Flow, levels: int) -> ReplayCounts:
    messages = [message for message, _ in flow]
    return replay(*write_files(directory, messages, [book for _, book in flow], levels))


def counts_of(counts: ReplayCounts, *names: str) -> dict[str, object]:
    return {name: value for name, value in asdict(counts).items() if name in names}


def test_the_consistent_fixture_matches_every_row_and_checked_execution() -> None:
    counts = replay(TEST_MESSAGES, TEST_ORDERBOOK)
    assert asdict(counts) == {
        "levels": 2,
        "messages": 47,
        "rows": 40,  # 47 less the 7 rows inside the four merged runs
        "rows_matched": 40,
        "rows_mid_run": 7,
        "revealed": 8,  # lines 19, 27, 34 (asks), 37, 38, 40, 42 (bids), 46 (asks)
        "executions": 10,
        "executions_checked": 6,  # lines 10, 13, 32, 35, 42, 47: only known orders queued
        "executions_matched": 6,
        "seeded_qty": 750,  # line 1's row with its 50 taken back off 99.99
        "revealed_qty_added": 700,  # 300 at 100.03 (line 19), 400 at 99.97 (line 38)
        "revealed_qty_removed": 100,  # 99.97 shrank out of view (line 40)
        "reassigned_qty": 0,
        "unaccounted_qty": 0,
        "refused_ids": 0,
        "duplicate_ids": 0,
        "first_row_mismatch": None,
        "first_execution_mismatch": None,
        "rejected": {},
    }


def test_the_disagreeing_fixture_counts_each_disagreement() -> None:
    counts = replay(MSFT_MESSAGES, MSFT_ORDERBOOK)
    assert counts_of(
        counts,
        "rows",
        "rows_matched",
        "first_row_mismatch",
        "executions",
        "executions_checked",
        "executions_matched",
        "first_execution_mismatch",
        "revealed",
        "reassigned_qty",
        "refused_ids",
        "rejected",
    ) == {
        "rows": 23,
        "rows_matched": 20,  # not 9 and 10 (an order refused while halted), nor 13 (tampered)
        "first_row_mismatch": 9,
        "executions": 6,
        "executions_checked": 4,
        "executions_matched": 3,  # line 5 fills the younger of two orders at 300.10
        "first_execution_mismatch": 5,
        "revealed": 2,
        "reassigned_qty": 40,  # line 6 deletes the older one, which the engine had filled
        "refused_ids": 1,  # line 11 deletes the refused order: skipped, not taken elsewhere
        "rejected": {"instrument_halted": 1},
    }


def test_a_youngest_first_book_is_caught_by_the_execution_check_alone() -> None:
    """Youngest first fills 102 before the synthetic quantity at line 7, so 100.01 and 100.00
    stay unknown; of the runs at lines 32, 35, 42 and 47, only 42 (one order) matches."""
    counts = replay(TEST_MESSAGES, TEST_ORDERBOOK, YoungestFirstVenue())
    assert (counts.executions_checked, counts.executions_matched) == (4, 1)
    assert counts.first_execution_mismatch == 32  # 110, 108, 109; youngest first takes 109
    assert counts.reassigned_qty == 80  # lines 37 and 45 delete orders it had filled
    assert counts.rows_matched == counts.rows  # level totals cannot tell the difference


def test_the_halt_statuses_follow_the_file_and_survive_partial_cancels() -> None:
    statuses = {}
    with LobsterReader(TEST_MESSAGES, TEST_ORDERBOOK) as reader:
        subject = LobsterReplay("TEST", reader.levels)
        for message, row in reader:
            subject.feed(message, row)
            statuses[message.line] = subject.venue.markets["TEST"].status
    assert statuses[20] is InstrumentStatus.OPEN
    assert statuses[21] is statuses[22] is InstrumentStatus.HALTED
    assert statuses[23] is InstrumentStatus.HALTED  # the amend down ran, the halt stayed
    assert statuses[24] is statuses[25] is InstrumentStatus.POST_ONLY  # quoting
    assert statuses[26] is InstrumentStatus.OPEN


PRE_ASKS = [(1_000_100, 100), (1_000_200, 200), (1_000_300, 300)]  # the third out of view
PRE_BIDS = [(999_900, 100), (999_800, 200), (999_700, 300)]
SEEDS = [  # first message, the row after it (asks, bids), seeded quantity, revealed rows
    ("34200.1,1,11,50,1000000,1", (PRE_ASKS[:2], [(1_000_000, 50), *PRE_BIDS[:1]]), 400, 0),
    ("34200.1,1,11,50,1000100,-1", ([(1_000_100, 150), *PRE_ASKS[1:2]], PRE_BIDS[:2]), 600, 0),
    ("34200.1,2,1,40,1000100,-1", ([(1_000_100, 60), *PRE_ASKS[1:2]], PRE_BIDS[:2]), 600, 0),
    ("34200.1,3,1,100,1000100,-1", (PRE_ASKS[1:], PRE_BIDS[:2]), 900, 1),
    ("34200.1,4,1,100,1000100,-1", (PRE_ASKS[1:], PRE_BIDS[:2]), 900, 1),
    ("34200.1,5,0,10,1000100,-1", (PRE_ASKS[:2], PRE_BIDS[:2]), 600, 0),
    ("34200.1,7,0,0,-1,-1", (PRE_ASKS[:2], PRE_BIDS[:2]), 600, 0),
]


@pytest.mark.parametrize(
    ("message", "book", "seeded", "revealed"),
    SEEDS,
    ids=["new level", "join", "partial", "delete", "execute", "hidden", "halt"],
)
def test_the_seed_is_the_first_row_with_the_first_message_undone(
    tmp_path: Path, message: str, book: tuple[Levels, Levels], seeded: int, revealed: int
) -> None:
    counts = replay_flow(tmp_path, [(message, book)], levels=2)
    assert (counts.rows, counts.rows_matched) == (1, 1)
    assert counts.seeded_qty == seeded
    assert counts.revealed == revealed  # a deleted best level brings the third into view


def test_a_seed_that_undoes_a_new_level_knows_no_level_past_the_shown_ones(
    tmp_path: Path,
) -> None:
    """The order at 100.00 pushed 99.98 out of row 1; 99.98 is not known to be empty."""
    flow: Flow = [
        ("34200.1,1,11,50,1000000,1", (PRE_ASKS[:2], [(1_000_000, 50), PRE_BIDS[0]])),
        ("34200.2,3,6,100,999900,1", (PRE_ASKS[:2], [(1_000_000, 50), PRE_BIDS[1]])),
    ]
    counts = replay_flow(tmp_path, flow, levels=2)
    assert (counts.rows_matched, counts.revealed, counts.revealed_qty_added) == (2, 1, 200)


def test_a_level_that_left_view_is_not_checked_until_its_queue_is_known(tmp_path: Path) -> None:
    bids = [(999_900, 100)]
    always: Flow = [
        ("34200.1,5,0,1,1000100,-1", ([], bids)),
        ("34200.2,1,11,50,1000200,-1", ([(1_000_200, 50)], bids)),
    ]
    hide: Flow = [  # an order at 100.01 hides 100.02 (level 1), then leaves again
        ("34200.3,1,12,30,1000100,-1", ([(1_000_100, 30)], bids)),
        ("34200.4,3,12,30,1000100,-1", ([(1_000_200, 50)], bids)),
    ]
    execute: Flow = [("34200.5,4,11,50,1000200,-1", ([], bids))]
    for middle, checked in (([], 1), (hide, 0)):
        counts = replay_flow(tmp_path, [*always, *middle, *execute], levels=1)
        assert (counts.executions, counts.executions_checked) == (1, checked)
        assert counts.executions_matched == checked
        assert counts.rows_matched == counts.rows


def test_a_reused_id_names_the_newer_order(tmp_path: Path) -> None:
    bids = [(999_900, 100)]
    flow: Flow = [
        ("34200.1,1,11,50,1000100,-1", ([(1_000_100, 50)], bids)),
        ("34200.2,1,11,30,1000100,-1", ([(1_000_100, 80)], bids)),
        ("34200.3,3,11,30,1000100,-1", ([(1_000_100, 50)], bids)),
    ]
    counts = replay_flow(tmp_path, flow, levels=1)
    assert (counts.duplicate_ids, counts.rows_matched, counts.rows) == (1, 3, 3)


def test_a_run_longer_than_the_limit_is_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lobster_replay, "RUN_MESSAGES_MAX", 2)
    counts = replay(TEST_MESSAGES, TEST_ORDERBOOK)
    assert counts.executions == 12  # the runs at lines 16-19 and 32-34 are cut in two
    assert counts.rows_matched == counts.rows == 43  # lines 17, 18, 33 compared now
    # 16-17 now stops short of 100.02 and its synthetic order; 32-33 and 34 are both known
    assert counts.executions_matched == counts.executions_checked == 8


@pytest.mark.parametrize("levels", [1, 2, 5, 10])
def test_a_generated_day_replays_exactly_at_any_depth(tmp_path: Path, levels: int) -> None:
    """The generator's own book is the truth; the level-N file hides what LOBSTER would."""
    files = write(tmp_path, "SYNTH", 2_500, levels, seed=levels)
    counts = replay(*files, paranoid=False)
    assert counts.rows_matched == counts.rows > 500
    assert counts.executions_matched == counts.executions_checked > 50
    assert counts.revealed > 10 and counts.rows_mid_run > 0
    assert counts.unaccounted_qty == counts.reassigned_qty == 0
    assert counts.rejected == {}
    mutant = replay(*files, YoungestFirstVenue(), paranoid=False)
    assert mutant.executions_matched < mutant.executions_checked * 0.8
    assert mutant.rows_matched == mutant.rows


def test_the_replay_keeps_the_venue_consistent_on_a_generated_day(tmp_path: Path) -> None:
    replay(*write(tmp_path, "SYNTH", 600, 3, seed=11))  # paranoid: invariants every message
