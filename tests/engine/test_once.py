"""`once` places (`engine.once`): at most one accepted order per cl_ord_id, open or closed."""

import gc
import hashlib
import random
from collections import OrderedDict, deque
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.journal import FileJournal
from core.sequencer import decode_command, encode_command
from engine import once as once_module
from engine import snapshot
from engine.commands import (
    AdvanceClock,
    AmendOrder,
    AnyCommand,
    CancelOrder,
    ListInstrument,
    PlaceOrder,
    SetInstrumentStatus,
)
from engine.enums import InstrumentStatus, Side, TimeInForce
from engine.events import CommandRejected, Event, OrderAccepted, TradeExecuted
from engine.once import (
    CHUNK,
    FORGET_PER_ADD,
    INDEX_CHUNK,
    ONCE_PLACED_PER_ACCOUNT_MAX,
    ONCE_PLACED_VENUE_MAX,
    ONCE_WINDOW_US,
    AccountPlaces,
    Entry,
    OnceLimits,
    OncePlaced,
)
from engine.reasons import ErrorCode
from engine.venue import Venue, VenueConfig
from gateway.limits import ACCOUNT_RATE_PER_S
from settlement.ledger import Ledger
from tests.engine.conftest import SYMBOL, Harness, make_spec

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
    ("a malformed retry is told so first", [GTC_BUY], GTC_BUY | {"qty": 0}, E.BAD_PARAM),
    # The once check is the first business check: a retry learns its first ran, not a
    # reason the first passed or its shape changed (below: one that came up since).
    (
        "the reasons after the shape come after",
        [GTC_BUY],
        GTC_BUY | {"tif": TimeInForce.GTD, "expire_at_us": 1},
        E.DUPLICATE_CL_ORD_ID,
    ),
    ("even an unknown symbol", [GTC_BUY], GTC_BUY | {"symbol": "NOPEx"}, E.DUPLICATE_CL_ORD_ID),
    ("later reasons come after", [GTC_BUY], GTC_BUY | {"price": 9_901}, E.DUPLICATE_CL_ORD_ID),
]


@pytest.mark.parametrize(
    ("name", "first", "again", "outcome"), ONCE_ROWS, ids=[row[0] for row in ONCE_ROWS]
)
def test_once_places(
    name: str, first: list[dict[str, object]], again: dict[str, object], outcome: ErrorCode | None
) -> None:
    harness = Harness(VenueConfig(once_limits=OnceLimits(per_account_max=2)))
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
    assert [entry[2] for entry in image.once_placed] == ["r-0", "r-1", "r-2", "r-3"]
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
    # The image's config names the once limits now; without them it is the image of before,
    # byte for byte, and reads as one with the default limits.
    fields = msgspec.msgpack.decode(image)
    assert fields["config"].pop("once_limits") == msgspec.to_builtins(OnceLimits())
    before = msgspec.msgpack.encode(fields)
    assert hashlib.blake2b(before, digest_size=16).hexdigest() == OLD_IMAGE_DIGEST
    for payload in (image, before):
        assert snapshot.restore(snapshot.decode(payload)).state_hash() == OLD_STATE_HASH


def test_a_retry_is_refused_naming_the_first_even_if_an_amend_took_its_cl_ord_id() -> None:
    harness = Harness()
    [first] = [e for e in once(harness, 1, BUY, 9_900, 5, tif=IOC) if isinstance(e, OrderAccepted)]
    other = accepted_id(harness.place(1, BUY, 9_800, 5, cl_ord_id="r-0"))
    harness.do(AmendOrder(account=1, cl_ord_id="r-0", qty=4, new_cl_ord_id="r-1"))
    refused = refusal(once(harness, 1, BUY, 9_900, 5, tif=IOC))
    assert refused is not None and refused.reason is E.DUPLICATE_CL_ORD_ID
    assert refused.order_id == first.order_id != other
    assert refused.detail == "cl_ord_id 'r-1' was placed once already"
    # Without once, the place is refused for the open order that holds the cl_ord_id.
    refused = refusal(harness.place(1, BUY, 9_900, 5, cl_ord_id="r-1"))
    assert refused is not None and refused.order_id == other


def test_a_retry_into_a_halt_is_told_its_first_ran() -> None:
    harness = Harness()
    first = accepted_id(once(harness, 1, BUY, 9_900, 5))
    harness.do(SetInstrumentStatus(symbol=SYMBOL, status=InstrumentStatus.HALTED))
    refused = refusal(once(harness, 1, BUY, 9_900, 5))
    assert refused is not None and refused.reason is E.DUPLICATE_CL_ORD_ID
    assert refused.order_id == first
    refused = refusal(once(harness, 1, BUY, 9_900, 5, cl_ord_id="r-2"))
    assert refused is not None and refused.reason is E.INSTRUMENT_HALTED


@pytest.mark.parametrize(("after_us", "outcome"), [(0, E.DUPLICATE_CL_ORD_ID), (1, None)])
def test_a_once_place_is_remembered_for_the_window_of_venue_time(
    after_us: int, outcome: ErrorCode | None
) -> None:
    harness = Harness()
    first = PlaceOrder(
        ts_us=harness.now(), account=1, symbol=SYMBOL, side=BUY, price=9_900, qty=1,
        tif=IOC, cl_ord_id="r-1", once=True,
    )  # fmt: skip
    harness.do(first)
    again = msgspec.structs.replace(first, ts_us=first.ts_us + ONCE_WINDOW_US + after_us)
    refused = refusal(harness.do(again))
    assert (refused.reason if refused else None) is outcome


def test_past_the_venue_wide_maximum_the_oldest_is_forgotten() -> None:
    harness = Harness(VenueConfig(once_limits=OnceLimits(venue_max=2)))
    for account in (1, 3, 4):
        accepted_id(once(harness, account, BUY, 9_900, 1, tif=IOC))
    assert [entry[1] for entry in harness.venue.once_placed.image()] == [3, 4]
    accepted_id(once(harness, 1, BUY, 9_900, 1, tif=IOC))  # forgotten: runs again
    assert refusal(once(harness, 4, BUY, 9_900, 1, tif=IOC)) is not None


def test_the_limits_are_in_the_state_hash_and_the_image_only_when_not_the_default() -> None:
    assert Venue(VenueConfig(once_limits=OnceLimits())).state_hash() == Venue().state_hash()
    for limits in (OnceLimits(window_us=1), OnceLimits(per_account_max=1), OnceLimits(venue_max=1)):
        venue = Venue(VenueConfig(once_limits=limits))
        assert venue.state_hash() != Venue().state_hash()
        restored = snapshot.restore(snapshot.decode(snapshot.encode(snapshot.capture(venue))))
        assert restored.config.once_limits == limits
        assert restored.state_hash() == venue.state_hash()


def naive_add(entries: list[Entry], limits: OnceLimits, added: Entry) -> None:
    """The memory's rule, spelled out on a list: forget the oldest few past the window (at
    most `FORGET_PER_ADD`) and the one of the same cl_ord_id (past it, or it would have been
    refused), then the account's oldest past its limit, then the venue's oldest past its."""
    oldest_us = added[0] - limits.window_us
    for _ in range(FORGET_PER_ADD):
        if entries and entries[0][0] < oldest_us:
            del entries[0]
    entries[:] = [entry for entry in entries if entry[1:3] != added[1:3]]
    entries.append(added)
    own = [entry for entry in entries if entry[1] == added[1]]
    if len(own) > limits.per_account_max:
        entries.remove(own[0])
    if len(entries) > limits.venue_max:
        del entries[0]


# Each limit in turn the one that forgets most: the venue's, an account's, the window.
NAIVE_LIMITS = [(50, 3, 8), (50, 3, 100), (10, 100, 100)]


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize(("window_us", "per_account_max", "venue_max"), NAIVE_LIMITS)
def test_the_memory_forgets_as_a_naive_list_does(
    seed: int, window_us: int, per_account_max: int, venue_max: int
) -> None:
    chance = random.Random(seed)
    limits = OnceLimits(window_us, per_account_max, venue_max)
    memory, entries, ts_us = OncePlaced(limits), list[Entry](), 0
    for order_id in range(1, 400):
        # now and then a lull longer than the window, leaving more to forget than one add may
        ts_us += chance.randrange(4) if chance.random() < 0.97 else window_us + 1
        account, cl_ord_id = chance.randrange(1, 6), f"c{chance.randrange(12)}"
        oldest_us = ts_us - limits.window_us
        expected = [e[3] for e in entries if e[1:3] == (account, cl_ord_id) and e[0] >= oldest_us]
        assert memory.first(account, cl_ord_id, ts_us) == (expected or [0])[0]
        if expected:
            continue  # refused: remembered
        memory.add(ts_us, account, cl_ord_id, order_id)
        naive_add(entries, limits, (ts_us, account, cl_ord_id, order_id))
        assert memory.image() == entries and memory.count == len(entries)
        own = {account: sum(e[1] == account for e in entries) for account in memory.accounts}
        assert own == {account: len(ids) for account, ids in memory.accounts.items()}
    restored = OncePlaced(limits)
    restored.adopt(memory.image())
    assert restored.image() == memory.image()


def test_an_add_after_a_lull_forgets_only_a_few_past_the_window() -> None:
    """A command's work is bounded: after a lull the places past the window are forgotten a
    few per add, not all in one; they never answer in the meantime."""
    memory = OncePlaced(OnceLimits(window_us=100))
    for order_id in range(1, 11):
        memory.add(order_id, 1, f"c{order_id}", order_id)
    memory.add(200, 2, "later", 11)
    assert memory.count == 10 + 1 - FORGET_PER_ADD
    assert [memory.first(1, f"c{order_id}", 200) for order_id in range(1, 11)] == [0] * 10
    memory.add(201, 1, "c10", 12)  # past the window, not yet forgotten: placed afresh
    assert memory.first(1, "c10", 201) == 12
    assert memory.image()[-1] == (201, 1, "c10", 12)


def test_an_account_s_limit_holds_a_minute_of_its_fastest_flow() -> None:
    """A retry comes after a 504 (20 s) or a takeover: an account at its rate limit must not
    have made the venue forget its first by then."""
    assert ONCE_PLACED_PER_ACCOUNT_MAX >= 60 * ACCOUNT_RATE_PER_S
    assert ONCE_PLACED_VENUE_MAX >= ONCE_PLACED_PER_ACCOUNT_MAX  # the memory's bound


def test_a_memory_needs_room_and_time() -> None:
    for limits in (OnceLimits(per_account_max=0), OnceLimits(venue_max=0), OnceLimits(window_us=0)):
        with pytest.raises(AssertionError):
            OncePlaced(limits)


def once_stream(seed: int, window_us: int) -> list[AnyCommand]:
    """A seeded stream of places (most with `once`, few cl_ord_ids: many retries), amends,
    cancels and clock steps, with lulls longer than the window now and then."""
    chance = random.Random(seed)
    ts_us = 1
    commands: list[AnyCommand] = [ListInstrument(ts_us=ts_us, spec=make_spec())]
    for index in range(400):
        ts_us += window_us + 1 if chance.random() < 0.03 else chance.randrange(3)
        account, cl_ord_id = chance.randrange(1, 9), f"c{chance.randrange(6)}"
        kind = chance.random()
        if kind < 0.65:
            side, price = chance.choice([BUY, SELL]), chance.randrange(9_950, 10_051)
            commands.append(
                PlaceOrder(
                    ts_us=ts_us, account=account, symbol=SYMBOL, side=side, price=price,
                    qty=chance.randrange(1, 20), tif=chance.choice([TimeInForce.GTC, IOC]),
                    cl_ord_id=cl_ord_id, once=chance.random() < 0.7,
                )
            )  # fmt: skip
        elif kind < 0.8:
            commands.append(AmendOrder(ts_us=ts_us, account=account, order_id=index + 1, qty=1))
        elif kind < 0.95:
            commands.append(CancelOrder(ts_us=ts_us, account=account, cl_ord_id=cl_ord_id))
        else:
            commands.append(AdvanceClock(ts_us=ts_us))
    return commands


def run_stream(
    commands: list[AnyCommand], config: VenueConfig, restore_at: frozenset[int] = frozenset()
) -> tuple[list[tuple[bytes, bytes]], Venue]:
    """Each command's events (encoded) and the state hash after it; restored from its own
    image before each command numbered in `restore_at`."""
    venue, outcomes = Venue(config), []
    for number, command in enumerate(commands):
        if number in restore_at:
            venue = snapshot.restore(snapshot.decode(snapshot.encode(snapshot.capture(venue))))
        events = venue.execute(command)
        outcomes.append((msgspec.msgpack.encode(events), venue.state_hash()))
    return outcomes, venue


@pytest.mark.parametrize("limits", [OnceLimits(50, 3, 8), OnceLimits(20, 2, 100)], ids=str)
def test_once_places_run_alike_straight_restored_and_replayed(limits: OnceLimits) -> None:
    """A differential: the same stream straight, restored from a snapshot at random points,
    and decoded from its journal records gives the same events and state hash after each
    command (places past the window, forgotten a few per add, included)."""
    config = VenueConfig(once_limits=limits)
    commands = once_stream(seed=7, window_us=limits.window_us)
    straight, venue = run_stream(commands, config)
    points = frozenset(random.Random(8).sample(range(1, len(commands)), 60))
    restored, _ = run_stream(commands, config, points)
    replayed, _ = run_stream([decode_command(encode_command(c)) for c in commands], config)
    assert straight == restored == replayed
    refusals = sum(b"was placed once already" in events for events, _ in straight)
    assert refusals > 10 and venue.once_placed  # the stream exercised what it is for


class ReferenceMemory:
    """The memory's rule on a plain dict and list, for the differential below: the dict
    answers lookups, the list is the time order; every forget is a scan."""

    def __init__(self, limits: OnceLimits) -> None:
        self.limits = limits
        self.entries: list[Entry] = []
        self.by_key: dict[tuple[int, str], Entry] = {}

    def first(self, account: int, cl_ord_id: str, ts_us: int) -> int:
        entry = self.by_key.get((account, cl_ord_id))
        return 0 if entry is None or entry[0] < ts_us - self.limits.window_us else entry[3]

    def add(self, entry: Entry) -> None:
        for _ in range(FORGET_PER_ADD):
            if self.entries and self.entries[0][0] < entry[0] - self.limits.window_us:
                self.forget(self.entries[0])
        if entry[1:3] in self.by_key:
            self.forget(self.by_key[entry[1:3]])
        self.entries.append(entry)
        self.by_key[entry[1:3]] = entry
        own = [held for held in self.entries if held[1] == entry[1]]
        if len(own) > self.limits.per_account_max:
            self.forget(own[0])
        if len(self.entries) > self.limits.venue_max:
            self.forget(self.entries[0])

    def forget(self, entry: Entry) -> None:
        self.entries.remove(entry)
        del self.by_key[entry[1:3]]


# (time step in µs, account, cl_ord_id number): a place of that cl_ord_id if not remembered.
STEPS = st.lists(
    st.tuples(
        st.sampled_from([0, 1, 2, 3] * 6 + [61]),  # now and then a lull past the window
        st.integers(1, 3),
        st.integers(0, 40),
    ),
    min_size=150,  # past every limit: a few lulls, each account at its own
    max_size=300,
)


@settings(max_examples=60, deadline=None)
@given(steps=STEPS, small=st.booleans())
def test_the_chunked_memory_answers_as_a_reference_dict_and_list(
    steps: list[tuple[int, int, int]], small: bool
) -> None:
    """Small chunks (so that places span many, and chunks empty in the middle) against the
    reference: every lookup, the image and the counts agree after each step."""
    limits = OnceLimits(window_us=60, per_account_max=7, venue_max=12 if small else 30)
    chunk_sizes = once_module.CHUNK, once_module.INDEX_CHUNK
    once_module.CHUNK, once_module.INDEX_CHUNK = 3, 4  # many chunks, some emptied mid-way
    try:
        run_against_the_reference(limits, steps)
    finally:
        once_module.CHUNK, once_module.INDEX_CHUNK = chunk_sizes


def run_against_the_reference(limits: OnceLimits, steps: list[tuple[int, int, int]]) -> None:
    memory, reference, ts_us = OncePlaced(limits), ReferenceMemory(limits), 0
    for order_id, (step_us, account, number) in enumerate(steps, start=1):
        ts_us += step_us
        cl_ord_id = f"c{number}"
        first = reference.first(account, cl_ord_id, ts_us)
        assert memory.first(account, cl_ord_id, ts_us) == first
        if not first:
            memory.add(ts_us, account, cl_ord_id, order_id)
            reference.add((ts_us, account, cl_ord_id, order_id))
        assert memory.image() == reference.entries and memory.count == len(reference.entries)
    for account in range(1, 4):
        for number in range(41):
            expected = reference.first(account, f"c{number}", ts_us)
            assert memory.first(account, f"c{number}", ts_us) == expected
    restored = OncePlaced(limits)
    restored.adopt(memory.image())
    assert restored.image() == memory.image()


def test_no_dict_of_a_full_memory_holds_more_than_a_chunk() -> None:
    """The memory full and forgetting (a place in, the oldest out): every dict it keeps is a
    chunk of at most `CHUNK` (ordered) or `INDEX_CHUNK` (an account's index) keys, so no
    command rehashes more than one (`python -m bench.once_bench` times it)."""
    # Two accounts in turn, each past an index chunk (its index split) when the venue is full.
    limits = OnceLimits(per_account_max=INDEX_CHUNK + 1_000, venue_max=2 * INDEX_CHUNK + 1_000)
    memory = OncePlaced(limits)
    for order_id in range(1, 3 * limits.per_account_max):
        memory.add(order_id, 1 + order_id % 2, f"c{order_id}", order_id)
    assert memory.count == limits.venue_max
    assert all(len(memory.accounts[a].index) >= 2 for a in (1, 2))  # each index did split
    seen: dict[int, dict[object, object]] = {}
    pending: list[object] = [memory]
    while pending:  # every container the memory holds, each once
        held = pending.pop()
        if isinstance(held, dict):
            if id(held) in seen:
                continue
            seen[id(held)] = held
        if isinstance(held, dict | list | deque | OncePlaced | AccountPlaces):
            pending.extend(gc.get_referents(held))
    seen_dicts = list(seen.values())
    ordered = [held for held in seen_dicts if isinstance(held, OrderedDict)]
    assert len(ordered) > 8 and max(map(len, ordered)) <= CHUNK
    assert max(map(len, seen_dicts)) <= INDEX_CHUNK
