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
    AmendToBackVenue,
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
        "revealed": 4,  # lines 19 (asks), 37, 38, 40 (bids); 27, 34, 42, 46 show a short side
        "executions": 10,
        "executions_checked": 6,  # lines 10, 13, 32, 35, 42, 47: only known orders queued
        "executions_matched": 6,
        "seeded_qty": 750,  # line 1's row with its 50 taken back off 99.99
        "revealed_qty_added": 700,  # 300 at 100.03 (line 19), 400 at 99.97 (line 38)
        "revealed_qty_removed": 100,  # 99.97 shrank out of view (line 40)
        "synthetic_qty_refused": 0,
        "reassigned_qty": 0,
        "unaccounted_qty": 0,
        "refused_ids": 0,
        "refused_ids_forgotten": 0,
        "duplicate_ids": 0,
        "first_row_mismatch": None,
        "first_execution_mismatch": None,
        "refused_while_quoting": 0,
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
        "revealed": 1,  # line 16; line 24 shows a short side, with nothing past it
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


@pytest.mark.parametrize("price", [1_000_000, 5_000_000, 50_000_000])  # $100, $500, $5,000
def test_no_real_price_is_refused_by_the_band(tmp_path: Path, price: int) -> None:
    """A file opening with a halt on an empty book: its code 1 is no price ($0.0001), and
    whatever the reference was guessed to be, the band refuses neither a bid nor a taker."""
    ask = price + 100
    flow: Flow = [
        ("34200.1,7,0,0,1,-1", ([], [])),
        (f"34200.2,1,11,100,{price},1", ([], [(price, 100)])),
        (f"34200.3,1,12,100,{ask},-1", ([(ask, 100)], [(price, 100)])),
        (f"34200.4,4,12,100,{ask},-1", ([], [(price, 100)])),
        (f"34200.5,1,13,100,{ask * 3},1", ([], [(ask * 3, 100)])),  # three times the last trade
    ]
    counts = replay_flow(tmp_path, flow, levels=1)
    assert (counts.rows, counts.rows_matched, counts.rejected) == (5, 5, {})
    assert counts.executions_matched == counts.executions_checked == 1


def test_synthetic_quantity_is_counted_only_where_the_engine_placed_it(tmp_path: Path) -> None:
    """A crossed first row: the seed's bid at 100.01 would take the ask at 100.00."""
    flow: Flow = [
        ("34200.1,5,0,10,1000000,-1", ([(1_000_000, 100)], [(1_000_100, 50)])),
        ("34200.2,3,7,50,1000100,1", ([(1_000_000, 100)], [(999_900, 70)])),
    ]
    counts = replay_flow(tmp_path, flow, levels=1)
    assert (counts.seeded_qty, counts.synthetic_qty_refused) == (100, 50)
    assert counts.rejected == {"post_only_would_take": 1}
    assert (counts.revealed_qty_added, counts.unaccounted_qty) == (70, 50)
    assert counts.rows_matched == 1  # line 2: the bid side is in view, ours and the file's


def replay_subject(directory: Path, flow: Flow, levels: int) -> LobsterReplay:
    """Like `replay_flow`, but the replay itself, to look at its venue afterwards."""
    paths = write_files(directory, [m for m, _ in flow], [book for _, book in flow], levels)
    with LobsterReader(*paths) as reader:
        subject = LobsterReplay("TEST", reader.levels)
        for message, row in reader:
            subject.feed(message, row)
            subject.venue.check_invariants()
    subject.finish()
    return subject


ASKS = [(1_000_100, 100)]


@pytest.mark.parametrize("executed", [True, False], ids=["used up", "never deleted"])
def test_an_id_the_engine_refused_is_forgotten_once_reused(tmp_path: Path, executed: bool) -> None:
    """Order 11 is refused during the halt; later the file reuses its id for a new order,
    whose deletion must not be skipped (with or without an execution using the first up)."""
    flow: Flow = [
        ("34200.1,7,0,0,-1,-1", (ASKS, [(999_900, 100)])),
        ("34200.2,1,11,50,999900,1", (ASKS, [(999_900, 150)])),  # refused: halted
        ("34200.3,7,0,0,1,-1", (ASKS, [(999_900, 150)])),
        ("34200.4,4,11,50,999900,1", (ASKS, [(999_900, 100)])),  # skipped: it never rested
        ("34200.5,1,11,30,999800,1", (ASKS, [(999_900, 100), (999_800, 30)])),
        ("34200.6,3,11,30,999800,1", (ASKS, [(999_900, 100)])),
    ]
    if not executed:
        flow = [(message, (ASKS, [(999_900, 100), *bids[1:]])) for message, (_, bids) in flow]
        del flow[3]
    subject = replay_subject(tmp_path, flow, levels=2)
    counts = subject.counts
    assert counts.refused_ids == executed
    assert counts.rejected == {"instrument_halted": 1}
    assert subject.venue.open_orders(lobster_replay.FILE_ACCOUNT) == []
    assert counts.rows_matched == counts.rows - 2 * executed  # lines 2 and 3 show order 11


def test_refused_ids_are_kept_up_to_a_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lobster_replay, "REFUSED_IDS_MAX", 1)
    bids = [(999_900, 100)]
    flow: Flow = [
        ("34200.1,7,0,0,-1,-1", (ASKS, bids)),
        ("34200.2,1,11,50,1000200,-1", (ASKS, bids)),  # refused, then forgotten for 12
        ("34200.3,1,12,50,1000200,-1", (ASKS, bids)),
        ("34200.4,3,11,50,1000200,-1", (ASKS, bids)),  # taken off nothing: unaccounted
        ("34200.5,3,12,50,1000200,-1", (ASKS, bids)),  # skipped
    ]
    counts = replay_flow(tmp_path, flow, levels=1)
    assert (counts.refused_ids, counts.refused_ids_forgotten) == (1, 1)
    assert counts.unaccounted_qty == 50


def test_an_add_that_locks_the_book_while_quoting_is_refused_under_its_own_name(
    tmp_path: Path,
) -> None:
    """Nasdaq lets the book lock or cross before the halt cross; the engine's post_only
    status does not. The refusal is a known limit of the replay, not one of its errors."""
    bids = [(999_900, 100)]
    flow: Flow = [
        ("34200.1,7,0,0,-1,-1", (ASKS, bids)),
        ("34200.2,7,0,0,0,-1", (ASKS, bids)),
        ("34200.3,1,11,50,1000100,1", (ASKS, [(1_000_100, 50)])),  # locks the ask
        ("34200.4,1,12,50,1000200,1", (ASKS, [(1_000_200, 50)])),  # crosses it
        ("34200.5,3,11,50,1000100,1", (ASKS, [(1_000_200, 50)])),
        ("34200.6,3,12,50,1000200,1", (ASKS, bids)),
        ("34200.7,7,0,0,1,-1", (ASKS, bids)),
    ]
    counts = replay_flow(tmp_path, flow, levels=1)
    assert (counts.refused_while_quoting, counts.refused_ids) == (2, 2)
    assert counts.rejected == {}
    assert (counts.rows_matched, counts.first_row_mismatch) == (4, 3)


REVEAL_NOTHING: list[tuple[Flow, int]] = [  # flows where no level comes into view, and N
    ([("34200.1,1,11,50,1000000,1", ([], [(1_000_000, 50)]))], 1),  # the side was unknown
    ([("34200.1,1,11,50,999900,1", ([], [(1_000_000, 100), (999_900, 50)]))], 2),  # a new 2nd
    (
        [
            ("34200.1,5,0,10,1000000,1", (ASKS, [(999_900, 100), (999_800, 100)])),
            ("34200.2,3,5,100,999900,1", (ASKS, [(999_800, 100)])),  # nothing past 99.98
        ],
        2,
    ),
]


@pytest.mark.parametrize(
    ("flow", "levels"), REVEAL_NOTHING, ids=["empty side", "new level", "short side"]
)
def test_a_row_reveals_only_where_a_level_comes_into_view(
    tmp_path: Path, flow: Flow, levels: int
) -> None:
    counts = replay_flow(tmp_path, flow, levels)
    assert (counts.revealed, counts.rows_matched, counts.rows) == (0, len(flow), len(flow))


AMEND_DOWN: Flow = [  # A (21) then B (22) at 100.01; A partly canceled, then executed
    ("34200.1,5,0,10,1000000,1", ([], [(999_900, 100)])),
    ("34200.2,1,21,100,1000100,-1", ([(1_000_100, 100)], [(999_900, 100)])),
    ("34200.3,1,22,100,1000100,-1", ([(1_000_100, 200)], [(999_900, 100)])),
    ("34200.4,2,21,40,1000100,-1", ([(1_000_100, 160)], [(999_900, 100)])),
    ("34200.5,4,21,60,1000100,-1", ([(1_000_100, 100)], [(999_900, 100)])),
    ("34200.6,4,22,30,1000100,-1", ([(1_000_100, 70)], [(999_900, 100)])),
]


@pytest.mark.parametrize(("wrong", "first_mismatch"), [(False, None), (True, 5)])
def test_an_amend_down_keeps_its_place_in_the_queue(
    tmp_path: Path, wrong: bool, first_mismatch: int | None
) -> None:
    """Both executions are checked. Had A lost its place, line 5 would fill B instead."""
    paths = write_files(tmp_path, [m for m, _ in AMEND_DOWN], [b for _, b in AMEND_DOWN], 1)
    counts = replay(*paths, AmendToBackVenue() if wrong else None)
    assert (counts.executions_checked, counts.executions_matched) == (2, 2 - wrong)
    assert counts.first_execution_mismatch == first_mismatch
    assert counts.rows_matched == counts.rows == 6  # level totals cannot tell the difference
