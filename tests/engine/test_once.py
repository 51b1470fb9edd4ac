"""`once` places (`engine.once`): at most one accepted order per cl_ord_id, open or closed."""

import hashlib
from pathlib import Path

import msgspec
import pytest

from core.journal import FileJournal
from engine import snapshot
from engine.commands import AnyCommand, PlaceOrder
from engine.enums import Side, TimeInForce
from engine.events import CommandRejected, Event, OrderAccepted, TradeExecuted
from engine.once import OncePlaced
from engine.reasons import ErrorCode
from engine.venue import Venue
from settlement.ledger import Ledger
from tests.engine.conftest import SYMBOL, Harness

BUY, SELL = Side.BUY, Side.SELL
IOC = TimeInForce.IOC
E = ErrorCode
# A journal written by the code of before `once` (main at a0c68b7): a ledger, three accounts,
# orders with and without cl_ord_ids (rested, traded, ioc, canceled, reused once closed). Its
# replay's state hash and image digest are pinned as that code computed them.
OLD_JOURNAL = Path(__file__).parent / "data" / "journal_before_once.journal"
OLD_STATE_HASH = "838c306b4e3035ed931393cef286841b823afa3a93fe29936be5c7d2df3b3ba9"
OLD_IMAGE_DIGEST = "26312c60fe5bdb23f500a20418c33163"


def refusal(events: list[Event]) -> CommandRejected | None:
    last = events[-1] if events else None
    return last if isinstance(last, CommandRejected) else None


def accepted_id(events: list[Event]) -> int:
    [accepted] = [e for e in events if isinstance(e, OrderAccepted)]
    return accepted.order_id


def once(h: Harness, account: int, side: Side, price: int, qty: int, **more: object) -> list[Event]:
    more.setdefault("cl_ord_id", "r-1")
    return h.place(account, side, price, qty, once=True, **more)


def test_a_once_place_whose_first_rests_is_refused_naming_it(harness: Harness) -> None:
    first = accepted_id(once(harness, 1, BUY, 9_900, 5))
    refused = refusal(once(harness, 1, BUY, 9_900, 5))
    assert refused is not None and refused.reason is E.DUPLICATE_CL_ORD_ID
    assert refused.order_id == first and refused.cl_ord_id == "r-1"
    assert len(harness.venue.orders) == 1


def test_a_once_place_whose_first_closed_is_refused_naming_it(harness: Harness) -> None:
    """The case the flag is for: the first (an ioc that traded) is closed, and a retry with
    the same cl_ord_id must not trade again."""
    harness.place(2, SELL, 10_000, 10)
    first_events = once(harness, 1, BUY, 10_000, 4, tif=IOC)
    first = accepted_id(first_events)
    assert sum(isinstance(e, TradeExecuted) for e in first_events) == 1
    before = harness.venue.last_order_id
    refused = refusal(once(harness, 1, BUY, 10_000, 4, tif=IOC))
    assert refused is not None and refused.reason is E.DUPLICATE_CL_ORD_ID
    assert refused.order_id == first and "placed once already" in refused.detail
    assert harness.venue.last_order_id == before  # a refusal changes nothing
    assert harness.venue.book(SYMBOL).asks.best.qty == 6  # type: ignore[union-attr]


def test_a_once_place_forgotten_past_the_limit_runs_again(harness: Harness) -> None:
    harness.venue.once_placed = OncePlaced(per_account_max=2)
    for name in ("a", "b", "c"):  # "a" is forgotten once "c" is remembered
        accepted_id(once(harness, 1, BUY, 9_000, 1, cl_ord_id=name, tif=IOC))
    assert accepted_id(once(harness, 1, BUY, 9_000, 1, cl_ord_id="a", tif=IOC))
    refused = refusal(once(harness, 1, BUY, 9_000, 1, cl_ord_id="c", tif=IOC))
    assert refused is not None and refused.reason is E.DUPLICATE_CL_ORD_ID


def test_a_once_place_needs_a_cl_ord_id(harness: Harness) -> None:
    refused = refusal(harness.place(1, BUY, 9_900, 5, once=True))
    assert refused is not None and refused.reason is E.BAD_PARAM
    assert "once needs a cl_ord_id" in refused.detail
    assert not harness.venue.once_placed


def test_only_once_places_that_were_accepted_are_remembered(harness: Harness) -> None:
    refused = refusal(once(harness, 1, BUY, 50_000, 5))  # outside the band: nothing placed
    assert refused is not None and refused.reason is E.PRICE_BAND
    assert accepted_id(once(harness, 1, BUY, 9_900, 5))  # so the retry runs


def test_without_once_a_closed_cl_ord_id_is_reused_as_before(harness: Harness) -> None:
    """The default stays: market makers reuse a closed order's cl_ord_id, and a place
    without `once` is not refused by a remembered `once` place either."""
    harness.place(1, BUY, 9_900, 5, cl_ord_id="r-1", tif=IOC)
    assert accepted_id(harness.place(1, BUY, 9_900, 5, cl_ord_id="r-1", tif=IOC))
    assert accepted_id(once(harness, 1, BUY, 9_900, 5, tif=IOC))  # the first `once`
    assert accepted_id(harness.place(1, BUY, 9_900, 5, cl_ord_id="r-1", tif=IOC))
    assert accepted_id(once(harness, 2, BUY, 9_900, 5, tif=IOC))  # another account's own


def test_replay_and_a_snapshot_keep_the_once_places(harness: Harness) -> None:
    commands: list[PlaceOrder] = []
    for index in range(4):
        command = PlaceOrder(
            ts_us=harness.now(),
            account=1,
            symbol=SYMBOL,
            side=BUY,
            price=9_900,
            qty=1,
            cl_ord_id=f"r-{index}",
            tif=IOC,
            once=True,
        )
        commands.append(command)
        harness.do(command)
    image = snapshot.decode(snapshot.encode(snapshot.capture(harness.venue)))
    assert [entry[1] for entry in image.once_placed] == ["r-0", "r-1", "r-2", "r-3"]
    restored = snapshot.restore(image)
    assert restored.state_hash() == harness.venue.state_hash()
    again = msgspec.structs.replace(commands[2], ts_us=harness.now())
    assert refusal(restored.execute(again)) == refusal(harness.venue.execute(again))
    replayed = Harness()
    for command in msgspec.msgpack.decode(msgspec.msgpack.encode(commands), type=list[AnyCommand]):  # type: ignore[valid-type]
        replayed.do(command)
    assert replayed.venue.once_placed.image() == harness.venue.once_placed.image()


def test_the_state_hash_and_image_of_a_journal_of_before_are_unchanged(tmp_path: Path) -> None:
    """Replayed by today's code, a journal written before `once` gives the state hash and
    the image its code gave: an empty memory is in neither, and old records decode alike."""
    journal = FileJournal(OLD_JOURNAL, read_only=True)
    try:
        records = list(journal.replay())
    finally:
        journal.close()
    decoder = msgspec.msgpack.Decoder(AnyCommand)
    venue = Venue(ledger=Ledger())
    for _, payload in records:
        command = decoder.decode(payload)
        assert msgspec.msgpack.encode(command) == payload  # records encode as they were
        venue.execute(command)
    assert venue.state_hash() == OLD_STATE_HASH
    image = snapshot.encode(snapshot.capture(venue))
    assert hashlib.blake2b(image, digest_size=16).hexdigest() == OLD_IMAGE_DIGEST
    assert snapshot.restore(snapshot.decode(image)).state_hash() == OLD_STATE_HASH


def test_the_memory_keeps_each_account_newest_first_out() -> None:
    memory = OncePlaced(per_account_max=2)
    assert not memory
    memory.add(1, "a", 1)
    memory.add(2, "a", 2)
    memory.add(1, "b", 3)
    memory.add(1, "c", 4)
    assert memory.first(1, "a") == 0 and memory.first(1, "c") == 4 and memory.first(2, "a") == 2
    assert memory.image() == [(1, "b", 3), (1, "c", 4), (2, "a", 2)]
    with pytest.raises(AssertionError):
        OncePlaced(per_account_max=0)
