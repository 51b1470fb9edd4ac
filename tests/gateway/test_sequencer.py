"""The sequencer: stamps, executes, group-commits, releases only durable outcomes, replays."""

import asyncio
from pathlib import Path

from engine.commands import ListInstrument, PlaceOrder
from engine.enums import Side
from engine.events import OrderAccepted, TradeExecuted
from engine.venue import Venue
from gateway.journal import FileJournal
from gateway.sequencer import BATCH_COMMANDS_MAX, Executed, Sequencer, _batch_end
from tests.engine.conftest import SYMBOL, make_spec


class Clock:
    def __init__(self) -> None:
        self.now = 1_000

    def __call__(self) -> int:
        self.now += 5
        return self.now


def order(account: int, side: Side, price: int, qty: int = 10) -> PlaceOrder:
    return PlaceOrder(account=account, symbol=SYMBOL, side=side, price=price, qty=qty)


def test_outcomes_are_released_after_commit_in_order(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    released: list[list[Executed]] = []
    journal = FileJournal(path)

    def release(batch: list[Executed]) -> None:
        durable = [seq for seq, _ in journal.replay()]
        commands = [e for e in batch if e.command is not None]  # barriers have no seq
        assert all(e.seq in durable for e in commands), "released before it was durable"
        released.append(batch)

    async def session() -> Venue:
        venue = Venue()
        sequencer = Sequencer(venue, journal, Clock(), release)
        sequencer.submit(ListInstrument(spec=make_spec()), origin="list")
        first = [sequencer.submit(order(1, Side.SELL, 10_000 + i), origin=i) for i in range(5)]
        assert not released, "nothing leaves before the turn's batch is on disk"
        await sequencer.drain()
        sequencer.submit(order(2, Side.BUY, 10_010, qty=50), origin="taker")
        sequencer.barrier("query")
        await sequencer.drain()
        assert [e.seq for e in first] == [2, 3, 4, 5, 6]
        sequencer.close()
        return venue

    venue = asyncio.run(session())
    flat = [e for batch in released for e in batch]
    assert flat[-1].origin == "query" and flat[-1].command is None
    flat = flat[:-1]
    assert [e.seq for e in flat] == list(range(1, 8))
    assert len(released[0]) == 6, "one loop turn, one batch, one fsync"
    stamps = [e.command.ts_us for e in flat if e.command is not None]
    assert stamps == sorted(stamps) and len(stamps) == 7
    taker = flat[-1]
    assert taker.origin == "taker" and isinstance(taker.events[0], OrderAccepted)
    assert sum(isinstance(e, TradeExecuted) for e in taker.events) == 5

    replayed = Venue()
    recovered = Sequencer(replayed, FileJournal(path), Clock(), lambda batch: None)
    assert recovered.recover() == 7 and recovered.last_seq == 7
    assert replayed.state_hash() == venue.state_hash()
    recovered.close()


def test_a_batch_never_splits_the_commands_of_one_origin() -> None:
    # A notice announcing cancels is sent before them and only once all are durable, so
    # they must come back in one release even past BATCH_COMMANDS_MAX.
    group, other = object(), object()
    before = [Executed(seq, None, [], None) for seq in range(1, BATCH_COMMANDS_MAX)]
    grouped = [Executed(seq, None, [], group) for seq in range(5)]
    after = [Executed(0, None, [], other)]
    assert _batch_end(before + grouped + after) == len(before) + len(grouped)
    assert _batch_end(before + after + grouped) == BATCH_COMMANDS_MAX  # no group at the cut
    assert _batch_end(grouped) == len(grouped)
