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
    """A place with `once` (unless `more` says otherwise) and cl_ord_id "r-1" (the same)."""
    more = {"cl_ord_id": "r-1", "once": True} | more
    if more["cl_ord_id"] is None:
        del more["cl_ord_id"]
    return h.place(account, side, price, qty, **more)


# Rows: (name, what the account placed first, the place sent again, the outcome): the
# first places are sent with `once` and cl_ord_id "r-1" unless they say otherwise; the book
# holds an ask of account 2 at 10_000 for 100, so an ioc buy there fills. The outcome is
# the refusal's reason (naming the first order) or None: accepted.
GTC_BUY = dict(side=BUY, price=9_900, qty=5)
IOC_BUY = dict(side=BUY, price=10_000, qty=4, tif=IOC)
ONCE_ROWS: list[tuple[str, list[dict[str, object]], dict[str, object], ErrorCode | None]] = [
    ("duplicate open", [GTC_BUY], GTC_BUY, E.DUPLICATE_CL_ORD_ID),
    ("duplicate closed (an ioc that filled)", [IOC_BUY], IOC_BUY, E.DUPLICATE_CL_ORD_ID),
    ("duplicate of another shape", [IOC_BUY], GTC_BUY, E.DUPLICATE_CL_ORD_ID),
    (
        "forgotten past the limit (2 here)",
        [IOC_BUY, IOC_BUY | {"cl_ord_id": "r-2"}, IOC_BUY | {"cl_ord_id": "r-3"}],
        IOC_BUY,
        None,
    ),
    ("missing cl_ord_id", [], IOC_BUY | {"cl_ord_id": None}, E.BAD_PARAM),
    ("a refused first is not remembered", [GTC_BUY | {"price": 50_000}], IOC_BUY, None),
    ("a first without once is not remembered", [IOC_BUY | {"once": False}], IOC_BUY, None),
    ("the retry without once is not refused", [IOC_BUY], IOC_BUY | {"once": False}, None),
    ("another account's own", [IOC_BUY], IOC_BUY | {"account": 3}, None),
    (
        "an earlier reason comes first",
        [GTC_BUY],
        GTC_BUY | {"tif": TimeInForce.GTD, "expire_at_us": 1},
        E.INVALID_EXPIRE_AT,
    ),
    ("later reasons come after", [GTC_BUY], GTC_BUY | {"price": 9_901}, E.DUPLICATE_CL_ORD_ID),
]


@pytest.mark.parametrize(
    ("name", "first", "again", "outcome"), ONCE_ROWS, ids=[row[0] for row in ONCE_ROWS]
)
def test_once_places(
    name: str, first: list[dict[str, object]], again: dict[str, object], outcome: ErrorCode | None
) -> None:
    harness = Harness()
    harness.venue.once_placed = OncePlaced(per_account_max=2)
    harness.place(2, SELL, 10_000, 100)
    first_ids = [
        (e.order_id if isinstance(e, OrderAccepted) else 0)
        for fields in first
        for e in once(harness, **(dict(account=1) | fields))[:1]  # type: ignore[arg-type]
    ]
    ask_before = harness.venue.book(SYMBOL).asks.best.qty  # type: ignore[union-attr]
    last_id = harness.venue.last_order_id
    events = once(harness, **(dict(account=1) | again))  # type: ignore[arg-type]
    refused = refusal(events)
    if outcome is None:
        assert refused is None and accepted_id(events) == last_id + 1, name
        return
    assert refused is not None and refused.reason is outcome, (name, refused)
    assert harness.venue.last_order_id == last_id  # a refusal changes nothing ...
    assert harness.venue.book(SYMBOL).asks.best.qty == ask_before  # type: ignore[union-attr]
    if outcome is E.DUPLICATE_CL_ORD_ID:  # ... and names the first order
        assert refused.order_id == first_ids[0] != 0 and refused.cl_ord_id == "r-1"


def test_a_once_place_whose_first_closed_is_refused_with_a_detail_saying_so() -> None:
    harness = Harness()
    harness.place(2, SELL, 10_000, 10)
    trades = [e for e in once(harness, 1, BUY, 10_000, 4, tif=IOC) if isinstance(e, TradeExecuted)]
    refused = refusal(once(harness, 1, BUY, 10_000, 4, tif=IOC))
    assert len(trades) == 1 and refused is not None
    assert refused.detail == "cl_ord_id 'r-1' was placed once already"


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
