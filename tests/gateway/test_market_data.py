"""gateway/market_data.py against a real Venue: every tier of every LocalBook equals the book.

Seeded random sessions (places, crosses, cancels, amends, gtd expiries, self-trades) run a
few commands per turn; after each turn the events are fed, the turn is flushed, every
subscriber applies what it got, and each (symbol, depth) LocalBook must equal the venue's
top levels as decimal strings with its checksum verified. Then the recovery paths (a missed
update, a corrupted message, a new epoch, a stream nobody followed), trades and the ticker's
24 h window, instruments, heartbeats, and one encoding per message.
"""

import random
import zlib
from collections import defaultdict
from typing import Any

import msgspec
import orjson
import pytest

from engine.commands import (
    AdvanceClock,
    AmendOrder,
    CancelAll,
    CancelOrder,
    Command,
    ListInstrument,
    MatureInstrument,
    PlaceOrder,
    SetInstrumentStatus,
    SetOrderCaps,
    SetReferencePrice,
    SplitShares,
)
from engine.enums import (
    InstrumentKind,
    InstrumentStatus,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from engine.events import CommandRejected, Event, TradeExecuted
from engine.instrument import InstrumentSpec
from engine.units import format_units
from engine.venue import Venue, VenueConfig
from gateway import market_data as market_data_module
from gateway.market_data import (
    BOOK_DEPTHS,
    CHANNELS,
    MINUTE_US,
    BookSync,
    Channel,
    LocalBook,
    MarketData,
    Message,
    Stream,
    book_checksum,
    levels_checksum,
)
from gateway.tape import TRADES_RECENT_MAX
from settlement.ledger import Ledger
from tests.engine.conftest import SYMBOL, make_spec
from tests.engine.test_corporate import SHARE
from tests.engine.test_corporate import setup_commands as corporate_setup

BUY, SELL = Side.BUY, Side.SELL
EPOCH = 7
T0 = 1_800_000_000_000_000  # 2027-01-15
HOUR_US = 60 * MINUTE_US
OTHER = "MSFTx-USD"


def other_spec() -> InstrumentSpec:
    """A second market with other scales: 4 price decimals on a cent tick, 3 qty decimals."""
    return make_spec(
        symbol=OTHER,
        base="MSFTx",
        price_decimals=4,
        price_tick=100,
        qty_decimals=3,
        reference_price=4_000_000,
    )


def all_streams(symbol: str) -> list[Stream]:
    streams = [Stream(Channel.BOOK, symbol, depth) for depth in BOOK_DEPTHS]
    return streams + [
        Stream(channel, symbol)
        for channel in (Channel.INSTRUMENTS, Channel.TRADES, Channel.BBO, Channel.TICKER)
    ]


class Session:
    """A venue and its market data, fed command by command, flushed turn by turn."""

    def __init__(self, *specs: InstrumentSpec, epoch: int = EPOCH) -> None:
        self.venue = Venue()
        self.md = MarketData(epoch)
        self.now = T0
        self.wanted: set[Stream] = set()
        self.trades: list[TradeExecuted] = []
        self.turn([ListInstrument(spec=spec) for spec in specs])

    def execute(self, command: Command, feed: bool = True) -> list[Event]:
        self.now += 1_000
        events = self.venue.execute(msgspec.structs.replace(command, ts_us=self.now))
        self.trades.extend(e for e in events if isinstance(e, TradeExecuted))
        if feed:
            self.md.on_events(events)
        return events

    def turn(self, commands: list[Command]) -> list[Message]:
        for command in commands:
            self.execute(command)
        messages = self.md.flush(self.now, self.wanted)
        self.venue.check_invariants()
        self.md.check_invariants()
        return messages

    def place(self, account: int, side: Side, price: int, qty: int, **more: Any) -> PlaceOrder:
        more.setdefault("symbol", SYMBOL)
        return PlaceOrder(account=account, side=side, price=price, qty=qty, **more)

    def top(self, symbol: str, depth: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The venue's best `depth` levels a side, as the decimal strings market data sends."""
        spec = self.venue.markets[symbol].spec
        bids, asks = self.venue.book(symbol).depth(depth)

        def rows(levels: list[tuple[int, int]]) -> list[tuple[str, str]]:
            return [
                (format_units(p, spec.price_decimals), format_units(q, spec.qty_decimals))
                for p, q in levels
            ]

        return rows(bids), rows(asks)


class Subscriber:
    """A client: a LocalBook per book stream, the other channels checked for seq continuity."""

    def __init__(self, session: Session, streams: list[Stream]) -> None:
        self.streams = set(streams)
        session.wanted |= self.streams
        self.books: dict[Stream, LocalBook] = {}
        self.seqs: dict[Stream, int] = {}
        self.trades: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.last: dict[Stream, Any] = {}
        self.results: list[BookSync] = []
        for stream in streams:
            self.subscribe(session, stream)

    def subscribe(self, session: Session, stream: Stream) -> None:
        if stream.channel == Channel.BOOK:
            self.books[stream] = LocalBook(stream.symbol, stream.depth)
        self.receive([session.md.snapshot(stream, session.now)])

    def receive(self, messages: list[Message]) -> None:
        for message in messages:
            if message.stream in self.streams:
                self.receive_one(message)

    def receive_one(self, message: Message) -> BookSync | None:
        body = orjson.loads(message.payload)
        stream = message.stream
        assert (body["ch"], body["sym"]) == (stream.channel, stream.symbol)
        if stream.channel == Channel.BOOK:
            result = self.books[stream].apply(body)
            self.results.append(result)
            return result
        if stream.channel != Channel.TICKER:
            assert body["epoch"] == EPOCH
            if body["type"] == "update":
                assert body["prev_seq"] == self.seqs[stream], f"{stream.name}: gap"
                assert body["seq"] == body["prev_seq"] + 1
            self.seqs[stream] = body["seq"]
        if stream.channel == Channel.TRADES:
            if body["type"] == "update":
                self.trades[stream.symbol].extend(body["data"])
        else:
            self.last[stream] = body["data"]
        return None


def random_command(rng: random.Random, venue: Venue, symbol: str) -> Command:
    """Mostly resting orders near the reference price, with crosses, cancels and amends."""
    market = venue.markets[symbol]
    tick = market.spec.price_tick
    ref = market.reference_price
    step = 10 ** (market.spec.qty_decimals - 1)  # 0.1 of a unit
    account = rng.randint(1, 4)  # few accounts: self-trade prevention happens
    side = rng.choice((BUY, SELL))
    sign = -1 if side is BUY else 1
    mine = [o for o in venue.orders.values() if o.symbol == symbol]
    r = rng.random()
    qty = rng.randint(1, 30) * step
    stp = rng.choice(list(SelfTradePrevention))
    if r < 0.45 or not mine:
        far = rng.random() < 0.25
        ticks = rng.randint(30, 200) if far else rng.randint(1, 30)
        return PlaceOrder(
            account=account,
            symbol=symbol,
            side=side,
            price=ref + sign * ticks * tick,
            qty=qty,
            stp=stp,
            post_only=rng.random() < 0.1,
        )
    if r < 0.58:  # crosses: a limit through the spread, an ioc, a market order
        kind = rng.random()
        price = ref - sign * rng.randint(0, 15) * tick
        if kind < 0.4:
            return PlaceOrder(
                account=account, symbol=symbol, side=side, price=price, qty=qty * 3, stp=stp
            )
        if kind < 0.8:
            tif = TimeInForce.IOC if kind < 0.7 else TimeInForce.FOK
            return PlaceOrder(
                account=account, symbol=symbol, side=side, price=price, qty=qty, tif=tif, stp=stp
            )
        return PlaceOrder(
            account=account,
            symbol=symbol,
            side=side,
            order_type=OrderType.MARKET,
            tif=TimeInForce.IOC,
            qty=qty,
            stp=stp,
        )
    order = rng.choice(mine)
    if r < 0.75:
        return CancelOrder(account=order.account, order_id=order.order_id)
    if r < 0.9:
        how = rng.random()
        if how < 0.4:  # shrink in place, keeping priority
            return AmendOrder(
                account=order.account, order_id=order.order_id, qty=max(order.qty - step, step)
            )
        if how < 0.7:  # grow: loses priority
            return AmendOrder(account=order.account, order_id=order.order_id, qty=order.qty + step)
        move = rng.randint(-20, 20) * tick or tick
        return AmendOrder(account=order.account, order_id=order.order_id, price=order.price + move)
    if r < 0.91:
        return CancelAll(account=account, symbol=symbol)
    return PlaceOrder(
        account=account,
        symbol=symbol,
        side=side,
        price=ref + sign * rng.randint(1, 10) * tick,
        qty=qty,
        tif=TimeInForce.GTD,
        expire_at_us=venue.ts_us + rng.randint(2, 40) * 1_000,
    )


def assert_books_match(session: Session, subscriber: Subscriber) -> None:
    tops = {symbol: session.top(symbol, max(BOOK_DEPTHS)) for symbol in session.venue.markets}
    for stream, book in subscriber.books.items():
        all_bids, all_asks = tops[stream.symbol]
        bids, asks = all_bids[: stream.depth], all_asks[: stream.depth]
        assert book.synced, stream.name
        assert book.bids() == bids, stream.name
        assert book.asks() == asks, stream.name
        assert book.checksum() == book_checksum(bids, asks)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_sessions_keep_every_tier_equal_to_the_venue(seed: int) -> None:
    rng = random.Random(seed)
    session = Session(make_spec(), other_spec())
    symbols = (SYMBOL, OTHER)
    resting_ladder(session, 120, account=9, symbol=OTHER)  # ranks shift across tier 100
    subscriber = Subscriber(session, all_streams(SYMBOL) + all_streams(OTHER))
    deletes = entries = deepest = 0
    for _ in range(400):
        commands: list[Command] = [
            random_command(rng, session.venue, rng.choice(symbols))
            for _ in range(rng.randint(1, 4))
        ]
        if rng.random() < 0.1:
            commands.append(AdvanceClock())
        for command in commands:  # one at a time: each command sees the book it changes
            session.execute(command)
        messages = session.md.flush(session.now, session.wanted)
        session.venue.check_invariants()
        session.md.check_invariants()
        assert len({m.stream for m in messages}) == len(messages), "one message per stream"
        subscriber.receive(messages)
        assert set(subscriber.results) == {BookSync.APPLIED}
        assert_books_match(session, subscriber)
        for symbol in symbols:
            book = session.venue.book(symbol)
            bbo = subscriber.last[Stream(Channel.BBO, symbol)]
            bid, ask = session.top(symbol, 1)
            assert (bbo["bid"], bbo["ask"]) == (
                list(bid[0]) if bid else None,
                list(ask[0]) if ask else None,
            )
            assert (book.best_bid() is None) == (bbo["bid"] is None)
        deepest = max(deepest, len(session.venue.book(OTHER).bids))
        for message in messages:
            if message.stream.channel == Channel.BOOK:
                data = orjson.loads(message.payload)["data"]
                rows = data["bids"] + data["asks"]
                deletes += sum(qty == "0" for _, qty in rows)
                entries += sum(qty != "0" for _, qty in rows)
    assert deletes > 100 and entries > 100, "the session exercised both kinds of change"
    assert deepest > 100, "deeper than tier 100"

    for symbol in symbols:
        trades = [t for t in session.trades if t.symbol == symbol]
        seen = subscriber.trades[symbol]
        assert [t["trade_id"] for t in seen] == list(range(1, len(trades) + 1))
        assert len(trades) > 20
        spec = session.venue.markets[symbol].spec
        assert seen[-1]["price"] == format_units(trades[-1].price, spec.price_decimals)
        ticker = subscriber.last[Stream(Channel.TICKER, symbol)]
        assert ticker["trades"] == len(trades)
        assert ticker["high"] == format_units(max(t.price for t in trades), spec.price_decimals)
        assert ticker["low"] == format_units(min(t.price for t in trades), spec.price_decimals)
        assert ticker["volume"] == format_units(sum(t.qty for t in trades), spec.qty_decimals)
        assert ticker["last"] == seen[-1]["price"]


def resting_ladder(
    session: Session, levels: int, account: int = 1, symbol: str = SYMBOL
) -> list[Message]:
    """`levels` bids a tick apart below the reference price and as many asks above, 1 each."""
    market = session.venue.markets[symbol]
    tick = market.spec.price_tick
    ref = market.reference_price
    unit = 10**market.spec.qty_decimals
    commands: list[Command] = []
    for i in range(1, levels + 1):
        commands.append(session.place(account, BUY, ref - i * tick, unit, symbol=symbol))
        commands.append(session.place(account, SELL, ref + i * tick, unit, symbol=symbol))
    return session.turn(commands)


def test_levels_entering_and_leaving_the_top_are_sent() -> None:
    session = Session(make_spec())
    resting_ladder(session, 12)
    ten = Stream(Channel.BOOK, SYMBOL, 10)
    subscriber = Subscriber(session, [ten])
    best_bid = session.venue.book(SYMBOL).bids.best
    assert best_bid is not None
    (order_id,) = best_bid.orders
    messages = session.turn([CancelOrder(account=1, order_id=order_id)])
    (message,) = messages
    body = orjson.loads(message.payload)
    assert body["data"]["bids"] == [["99.99", "0"], ["99.89", "1.000000"]]  # out, and in
    assert body["data"]["asks"] == []
    subscriber.receive(messages)
    messages = session.turn([session.place(2, BUY, 9_999, 500_000)])  # a new best pushes one out
    body = orjson.loads(messages[0].payload)
    assert body["data"]["bids"] == [["99.99", "0.500000"], ["99.89", "0"]]
    subscriber.receive(messages)
    assert_books_match(session, subscriber)
    messages = session.turn([session.place(2, BUY, 9_000, 1_000_000)])  # below the top 10
    assert [m.stream.channel for m in messages] == [], "nothing changed in any wanted tier"


def test_levels_resized_within_the_top_are_sent_best_first() -> None:
    """A turn that only changes the sizes of levels a tier holds: its update lists those
    levels best first, however the turn's orders came (`_Levels.changes`' patched places)."""
    session = Session(make_spec())
    resting_ladder(session, 5)
    ten = Stream(Channel.BOOK, SYMBOL, 10)
    subscriber = Subscriber(session, [ten])
    ref = session.venue.markets[SYMBOL].reference_price
    unit = 1_000_000
    worse_first: list[Command] = [
        session.place(2, BUY, ref - 4, unit),
        session.place(2, SELL, ref + 5, unit),
        session.place(2, BUY, ref - 1, unit),
        session.place(2, SELL, ref + 2, unit),
        session.place(2, BUY, ref - 2, unit),
    ]
    messages = session.turn(worse_first)
    (message,) = messages
    data = orjson.loads(message.payload)["data"]
    assert data["bids"] == [["99.99", "2.000000"], ["99.98", "2.000000"], ["99.96", "2.000000"]]
    assert data["asks"] == [["100.02", "2.000000"], ["100.05", "2.000000"]]
    subscriber.receive(messages)
    assert set(subscriber.results) == {BookSync.APPLIED}
    assert_books_match(session, subscriber)


def test_a_subscriber_that_misses_an_update_resyncs_from_a_new_snapshot() -> None:
    rng = random.Random(11)
    session = Session(make_spec())
    stream = Stream(Channel.BOOK, SYMBOL, 25)
    resting_ladder(session, 30)
    subscriber = Subscriber(session, [stream])
    missed = False
    outcomes: list[BookSync] = []
    for _ in range(60):
        messages = [
            m
            for m in session.turn([random_command(rng, session.venue, SYMBOL)])
            if m.stream == stream
        ]
        for message in messages:
            if not missed:
                missed = True  # the first update is lost on the way
                continue
            result = subscriber.receive_one(message)
            assert result is not None
            outcomes.append(result)
            if result.resync:
                subscriber.subscribe(session, stream)
                assert subscriber.books[stream].synced
        if outcomes:  # once the gap showed; until then the subscriber cannot know
            assert_books_match(session, subscriber)
    assert outcomes[0] is BookSync.SEQ_GAP
    assert set(outcomes[1:]) == {BookSync.APPLIED}


def test_an_out_of_sync_book_waits_for_a_snapshot_and_ignores_repeats() -> None:
    session = Session(make_spec())
    stream = Stream(Channel.BOOK, SYMBOL, 10)
    subscriber = Subscriber(session, [stream])
    first = session.turn([session.place(1, BUY, 9_990, 1_000_000)])
    second = session.turn([session.place(1, BUY, 9_980, 1_000_000)])
    third = session.turn([session.place(1, BUY, 9_970, 1_000_000)])
    assert subscriber.receive_one(first[0]) is BookSync.APPLIED
    assert subscriber.receive_one(first[0]) is BookSync.STALE_IGNORED
    assert subscriber.receive_one(third[0]) is BookSync.SEQ_GAP
    assert subscriber.receive_one(second[0]) is BookSync.AWAITING_SNAPSHOT
    assert BookSync.SEQ_GAP.resync  # asked once, at the gap ...
    assert not BookSync.AWAITING_SNAPSHOT.resync and not BookSync.STALE_IGNORED.resync
    subscriber.subscribe(session, stream)
    assert_books_match(session, subscriber)


def test_a_corrupted_quantity_fails_the_checksum() -> None:
    session = Session(make_spec())
    resting_ladder(session, 5)
    stream = Stream(Channel.BOOK, SYMBOL, 10)
    subscriber = Subscriber(session, [stream])
    (message,) = session.turn([session.place(2, SELL, 10_001, 2_500_000)])
    body = orjson.loads(message.payload)
    assert body["data"]["asks"] == [["100.01", "3.500000"]]
    body["data"]["asks"][0][1] = "3.400000"
    assert subscriber.books[stream].apply(body) is BookSync.CHECKSUM_MISMATCH
    assert not subscriber.books[stream].synced
    subscriber.subscribe(session, stream)
    assert_books_match(session, subscriber)

    snapshot = orjson.loads(session.md.snapshot(stream, session.now).payload)
    snapshot["data"]["bids"][2][1] = "1.000001"
    assert LocalBook(SYMBOL, 10).apply(snapshot) is BookSync.CHECKSUM_MISMATCH


def test_a_new_epoch_makes_the_subscriber_resync() -> None:
    before = Session(make_spec())
    stream = Stream(Channel.BOOK, SYMBOL, 10)
    subscriber = Subscriber(before, [stream])
    after = Session(make_spec(), epoch=EPOCH + 1)  # the venue restarted
    after.wanted.add(stream)
    after.md.snapshot(stream, after.now)
    (message,) = after.turn([after.place(1, BUY, 9_990, 1_000_000)])
    assert subscriber.receive_one(message) is BookSync.EPOCH_CHANGED


def test_a_snapshot_taken_mid_turn_is_the_state_at_its_seq() -> None:
    session = Session(make_spec())
    resting_ladder(session, 3)
    followed = Stream(Channel.BOOK, SYMBOL, 10)
    early = Subscriber(session, [followed])
    session.execute(session.place(2, BUY, 9_999, 1_000_000))  # fed, not yet flushed
    late = Subscriber(session, [followed])  # the published state, at the same seq
    assert late.books[followed].seq == early.books[followed].seq
    assert late.books[followed].bids() == early.books[followed].bids()
    unfollowed = Stream(Channel.BOOK, SYMBOL, 25)
    newcomer = Subscriber(session, [unfollowed])  # nobody kept it: the state now
    messages = session.md.flush(session.now, session.wanted)
    assert [m.stream for m in messages if m.stream.channel == Channel.BOOK] == [followed]
    for subscriber in (early, late, newcomer):
        subscriber.receive(messages)
        assert set(subscriber.results) == {BookSync.APPLIED}
        assert_books_match(session, subscriber)


def test_a_book_change_after_another_kind_of_change_in_the_turn_is_sent() -> None:
    """The turn's first change of the symbol is its reference price, the book's comes after
    it: the book's update still goes out, whether its changes wait for the flush or a
    snapshot of a tier nobody followed settled them mid-turn."""
    session = Session(make_spec())
    resting_ladder(session, 3)
    followed = Stream(Channel.BOOK, SYMBOL, 10)
    subscriber = Subscriber(session, [followed])
    for snapshot_mid_turn in (False, True):
        ref = session.venue.markets[SYMBOL].reference_price
        session.execute(SetReferencePrice(symbol=SYMBOL, price=ref + 1))
        session.execute(session.place(2, BUY, 9_999, 1_000_000))
        if snapshot_mid_turn:
            Subscriber(session, [Stream(Channel.BOOK, SYMBOL, 25)])
        messages = session.md.flush(session.now, session.wanted)
        session.md.check_invariants()
        assert [m.stream for m in messages if m.stream.channel == Channel.BOOK] == [followed]
        subscriber.receive(messages)
        assert set(subscriber.results) == {BookSync.APPLIED}
        assert_books_match(session, subscriber)


def test_the_book_shows_only_what_it_was_fed() -> None:
    """The venue runs ahead of the journal; the public book must wait for durable events."""
    session = Session(make_spec())
    resting_ladder(session, 3)
    stream = Stream(Channel.BOOK, SYMBOL, 10)
    before = session.top(SYMBOL, 10)
    events = session.execute(session.place(2, SELL, 9_998, 3_000_000), feed=False)
    assert session.top(SYMBOL, 10) != before
    body = orjson.loads(session.md.snapshot(stream, session.now).payload)
    assert [tuple(row) for row in body["data"]["bids"]] == before[0]
    assert session.md.flush(session.now, {stream}) == []
    session.md.on_events(events)  # now durable
    subscriber = Subscriber(session, [])
    subscriber.streams.add(stream)
    subscriber.books[stream] = LocalBook(SYMBOL, 10)
    subscriber.receive_one(session.md.snapshot(stream, session.now))
    subscriber.receive(session.md.flush(session.now, {stream}))
    assert_books_match(session, subscriber)


def test_a_book_nobody_follows_restarts_at_a_new_seq() -> None:
    session = Session(make_spec())
    stream = Stream(Channel.BOOK, SYMBOL, 25)
    subscriber = Subscriber(session, [stream])
    subscriber.receive(session.turn([session.place(1, BUY, 9_990, 1_000_000)]))
    seq = session.md.seq(stream)
    session.wanted.clear()  # the last subscriber left
    assert session.turn([session.place(1, BUY, 9_980, 1_000_000)]) == []
    assert session.md.seq(stream) == seq
    again = Subscriber(session, [stream])
    assert again.books[stream].seq == seq + 1, "a new state gets a new seq"
    assert_books_match(session, again)
    assert subscriber.books[stream].seq == seq  # the old copy is not mistaken for it


def test_each_message_is_encoded_once_for_all_its_subscribers() -> None:
    session = Session(make_spec(), other_spec())
    resting_ladder(session, 3)
    subscribers = [Subscriber(session, all_streams(SYMBOL) + all_streams(OTHER)) for _ in range(5)]
    rng = random.Random(5)
    for _ in range(30):
        commands = [random_command(rng, session.venue, SYMBOL) for _ in range(3)]
        commands.append(random_command(rng, session.venue, OTHER))
        messages = session.turn(commands)
        streams = [m.stream for m in messages]
        assert len(streams) == len(set(streams)), "one message per stream per flush"
        assert all(isinstance(m.payload, bytes) for m in messages)
        sent: dict[int, int] = defaultdict(int)  # what a server would write, by object
        for message in messages:
            for subscriber in subscribers:
                if message.stream in subscriber.streams:
                    sent[id(message.payload)] += 1
                    subscriber.receive_one(message)
        assert set(sent.values()) <= {len(subscribers)}
    stream = Stream(Channel.BOOK, SYMBOL, 10)
    assert (
        session.md.snapshot(stream, session.now).payload
        is session.md.snapshot(stream, session.now + 5).payload
    ), "a snapshot is encoded once per seq"
    for subscriber in subscribers:
        assert set(subscriber.results) == {BookSync.APPLIED}
        assert_books_match(session, subscriber)


def test_trades_of_a_turn_are_one_message_with_consecutive_ids() -> None:
    session = Session(make_spec())
    resting_ladder(session, 3)
    stream = Stream(Channel.TRADES, SYMBOL)
    subscriber = Subscriber(session, [stream])
    assert subscriber.seqs[stream] == 0
    sweep = session.place(2, BUY, 10_003, 2_500_000)
    (message,) = [m for m in session.turn([sweep]) if m.stream == stream]
    ts = session.now
    body = orjson.loads(message.payload)
    assert (body["type"], body["seq"], body["prev_seq"], body["epoch"]) == ("update", 1, 0, EPOCH)
    assert body["data"] == [
        {"trade_id": 1, "price": "100.01", "qty": "1.000000", "taker_side": "buy", "ts": ts},
        {"trade_id": 2, "price": "100.02", "qty": "1.000000", "taker_side": "buy", "ts": ts},
        {"trade_id": 3, "price": "100.03", "qty": "0.500000", "taker_side": "buy", "ts": ts},
    ]
    subscriber.receive([message])
    (message,) = [
        m for m in session.turn([session.place(3, SELL, 9_999, 100_000)]) if m.stream == stream
    ]
    subscriber.receive([message])
    assert [t["trade_id"] for t in subscriber.trades[SYMBOL]] == [1, 2, 3, 4]
    snapshot = orjson.loads(session.md.snapshot(stream, session.now).payload)
    assert (snapshot["type"], snapshot["seq"]) == ("snapshot", 2)
    assert [t["trade_id"] for t in snapshot["data"]] == [1, 2, 3, 4]


def test_a_trades_snapshot_keeps_the_recent_tail() -> None:
    session = Session(make_spec())
    for _ in range(TRADES_RECENT_MAX + 10):
        session.turn([session.place(1, SELL, 10_000, 1), session.place(2, BUY, 10_000, 1)])
    body = orjson.loads(session.md.snapshot(Stream(Channel.TRADES, SYMBOL), session.now).payload)
    ids = [t["trade_id"] for t in body["data"]]
    assert ids == list(range(11, TRADES_RECENT_MAX + 11))
    assert body["seq"] == TRADES_RECENT_MAX + 10, "the seq moves even with nobody watching"


def test_the_ticker_window_drops_trades_older_than_24_hours() -> None:
    session = Session(make_spec())
    stream = Stream(Channel.TICKER, SYMBOL)
    subscriber = Subscriber(session, [stream])
    assert subscriber.last[stream] == {
        "last": None,
        "high": None,
        "low": None,
        "volume": "0.000000",
        "trades": 0,
    }

    def trade(price: int, qty: int) -> None:
        subscriber.receive(session.turn([session.place(1, SELL, price, qty)]))
        subscriber.receive(session.turn([session.place(2, BUY, price, qty)]))

    trade(10_100, 2_000_000)
    session.now += HOUR_US
    trade(9_900, 1_000_000)
    trade(10_000, 500_000)
    assert subscriber.last[stream] == {
        "last": "100.00",
        "high": "101.00",
        "low": "99.00",
        "volume": "3.500000",
        "trades": 3,
    }
    first = session.trades[0].ts_us
    assert session.md.flush(first + 24 * HOUR_US - MINUTE_US, session.wanted) == []
    subscriber.receive(session.md.flush(first + 24 * HOUR_US, session.wanted))
    assert subscriber.last[stream] == {
        "last": "100.00",
        "high": "100.00",
        "low": "99.00",
        "volume": "1.500000",
        "trades": 2,
    }
    late = orjson.loads(session.md.snapshot(stream, first + 26 * HOUR_US).payload)
    assert late["data"] == {
        "last": "100.00",
        "high": None,
        "low": None,
        "volume": "0.000000",
        "trades": 0,
    }
    assert "seq" not in late


def test_instruments_carry_reference_data_and_status_changes() -> None:
    bill = make_spec(
        symbol="TB-2027-03-04-USD",
        kind=InstrumentKind.TBILL,
        base="TB-2027-03-04",
        price_decimals=6,
        price_tick=1,
        qty_decimals=0,
        qty_step=100,
        min_qty=1_000,
        min_notional=1_000_000_000,
        reference_price=98_676_708,
        maturity_us=1_804_118_400_000_000,
    )
    session = Session(make_spec(), bill)
    equity = Stream(Channel.INSTRUMENTS, SYMBOL)
    tbill = Stream(Channel.INSTRUMENTS, bill.symbol)
    subscriber = Subscriber(session, [equity, tbill])
    assert subscriber.seqs == {equity: 0, tbill: 0}
    assert subscriber.last[equity] == {
        "symbol": SYMBOL,
        "kind": "equity",
        "base": "AAPLx",
        "quote": "USD",
        "price_decimals": 2,
        "qty_decimals": 6,
        "tick": "0.01",
        "step": "0.000001",
        "min_qty": "0.000001",
        "min_notional": "0.000000",
        "maker_fee_bps": 0,
        "taker_fee_bps": 0,
        "status": "open",
        "reference_price": "100.00",
        "band_low": "90.00",
        "band_high": "110.00",
        "max_qty": None,
        "max_notional": None,
    }
    reference = subscriber.last[tbill]
    assert (reference["kind"], reference["step"], reference["min_notional"]) == (
        "tbill",
        "100",
        "1000.000000",
    )
    assert (reference["maturity"], reference["face"]) == (1_804_118_400_000_000, "100")
    messages = session.turn(
        [SetInstrumentStatus(symbol=bill.symbol, status=InstrumentStatus.HALTED)]
    )
    assert [m.stream for m in messages] == [tbill]
    subscriber.receive(messages)
    assert (subscriber.seqs[tbill], subscriber.last[tbill]["status"]) == (1, "halted")
    body = orjson.loads(session.md.snapshot(tbill, session.now).payload)
    assert (body["type"], body["seq"], body["data"]["status"]) == ("snapshot", 1, "halted")
    assert "maturity" not in subscriber.last[equity]


def test_listing_after_start_and_seeding_from_a_running_venue_agree() -> None:
    session = Session(make_spec())
    rng = random.Random(3)
    for _ in range(80):
        session.turn([random_command(rng, session.venue, SYMBOL) for _ in range(3)])
    seeded = MarketData.from_venue(session.venue, EPOCH)
    seeded.check_invariants()
    for depth in BOOK_DEPTHS:
        stream = Stream(Channel.BOOK, SYMBOL, depth)
        fed = orjson.loads(session.md.snapshot(stream, session.now).payload)["data"]
        assert orjson.loads(seeded.snapshot(stream, session.now).payload)["data"] == fed
    bbo = Stream(Channel.BBO, SYMBOL)
    assert (
        orjson.loads(seeded.snapshot(bbo, session.now).payload)["data"]
        == orjson.loads(session.md.snapshot(bbo, session.now).payload)["data"]
    )


def test_heartbeat_carries_each_subscriptions_last_seq() -> None:
    session = Session(make_spec())
    streams = all_streams(SYMBOL)
    subscriber = Subscriber(session, streams)
    subscriber.receive(resting_ladder(session, 12))
    subscriber.receive(session.turn([session.place(2, BUY, 10_001, 1_500_000)]))
    body = orjson.loads(session.md.heartbeat(session.now + 1_000_000, streams))
    assert body["ch"] == "heartbeat" and body["epoch"] == EPOCH
    assert body["ts"] == session.now + 1_000_000
    assert body["seqs"] == {
        "book:AAPLx-USD:10": subscriber.books[streams[0]].seq,
        "book:AAPLx-USD:25": subscriber.books[streams[1]].seq,
        "book:AAPLx-USD:100": subscriber.books[streams[2]].seq,
        "book:AAPLx-USD:1000": subscriber.books[streams[3]].seq,
        "instruments:AAPLx-USD": 1,  # the trade moved the reference price
        "trades:AAPLx-USD": 1,
        "bbo:AAPLx-USD": subscriber.seqs[Stream(Channel.BBO, SYMBOL)],
    }
    assert body["seqs"]["book:AAPLx-USD:10"] == 3  # ladder, the new best, the trade


def test_problem_names_what_cannot_be_subscribed() -> None:
    md = Session(make_spec()).md
    assert md.problem(Stream(Channel.BOOK, SYMBOL, 10)) is None
    assert md.problem(Stream(Channel.BOOK, SYMBOL, 11)) == "depth must be one of 10, 25, 100, 1000"
    assert (
        md.problem(Stream(Channel.TRADES, SYMBOL, 10)) == "depth applies to the book channel only"
    )
    assert md.problem(Stream(Channel.BBO, "NOPE")) == "unknown symbol 'NOPE'"
    # a query's place is said of the unknown symbol only (since session 30)
    at = "params.symbols[1]"
    assert md.problem(Stream(Channel.BBO, "NOPE"), at) == f"unknown symbol 'NOPE' - at `{at}`"
    assert md.problem(Stream(Channel.BOOK, SYMBOL, 11), at) == (
        "depth must be one of 10, 25, 100, 1000"
    )
    assert md.problem(Stream("klines", SYMBOL)) == "unknown channel 'klines'"  # type: ignore[arg-type]
    assert md.problem(Stream(Channel.CANDLES, SYMBOL, 0, "1m")) is None
    assert md.problem(Stream(Channel.CANDLES, SYMBOL)) == "interval must be one of 1m, 5m, 1h, 1d"
    assert md.problem(Stream(Channel.TICKER, SYMBOL, 0, "1m")) == (
        "interval applies to the candles channel only"
    )
    assert {str(c) for c in CHANNELS} == {
        "instruments",
        "book",
        "trades",
        "bbo",
        "ticker",
        "candles",
    }
    with pytest.raises(ValueError, match="depth"):
        md.snapshot(Stream(Channel.BOOK, SYMBOL, 5), 0)


def test_the_checksum_is_the_documented_crc32() -> None:
    bids = [("100.00", "1.500000"), ("99.90", "3.000000")]
    asks = [("100.10", "2.000000")]
    text = b"100.10:2.000000;100.00:1.500000|99.90:3.000000"
    assert book_checksum(bids, asks) == zlib.crc32(text)
    many = [(f"{100 - i}.00", "1.000000") for i in range(15)]
    assert book_checksum(many, []) == book_checksum(many[:10], [])
    assert book_checksum([], []) == zlib.crc32(b";")


def test_the_checksum_of_integer_levels_is_the_same_crc32() -> None:
    spec = make_spec()  # 2 price decimals, 6 qty decimals
    bids = [(10_000, 1_500_000), (9_990, 3_000_000)]
    asks = [(10_010, 2_000_000)]
    text = b"100.10:2.000000;100.00:1.500000|99.90:3.000000"
    assert levels_checksum(bids, asks, spec) == zlib.crc32(text)
    many = [(10_000 - 10 * i, 1_000_000) for i in range(15)]
    assert levels_checksum(many, [], spec) == levels_checksum(many[:10], [], spec)


DAY_US = 86_400_000_000


def test_bill_days_are_calendar_days_to_the_maturity_date() -> None:
    # Treasury counts calendar days from the settlement date: at noon on 2025-01-01 a bill
    # maturing 2025-01-31 has 30 days, not the 29 whole days left until 00:00 UTC.
    noon = 1_735_732_800_000_000  # 2025-01-01T12:00:00Z
    bill = make_spec(
        symbol="TB-30-USD",
        kind=InstrumentKind.TBILL,
        base="TB-30",
        price_decimals=6,
        qty_decimals=0,
        reference_price=99_600_000,
        maturity_us=1_738_281_600_000_000,  # 2025-01-31T00:00:00Z
    )
    quoted = market_data_module.bill_yield(bill, 99_600_000, noon)
    assert quoted is not None
    assert (quoted["days_to_maturity"], quoted["discount_rate_pct"]) == (30, "4.800")
    on_the_day = market_data_module.bill_yield(bill, 99_600_000, bill.maturity_us + 1)
    assert on_the_day is None


def _bill_91_days() -> Any:
    """A bill 91 days from maturity at 98.676708 per 100 (the yields' hand-computed case)."""
    return make_spec(
        symbol="TB-91-USD",
        kind=InstrumentKind.TBILL,
        base="TB-91",
        price_decimals=6,
        qty_decimals=0,
        reference_price=98_676_708,
        maturity_us=T0 + 91 * DAY_US + DAY_US // 2,
    )


def test_bills_publish_price_per_100_discount_rate_and_investment_yield() -> None:
    # 91 days to maturity at 98.676708 per 100 (hand computed, Treasury's formulas):
    # discount (100 - 98.676708) / 100 x 360 / 91 = 5.23499...% -> 5.235
    # investment (100 - 98.676708) / 98.676708 x 365 / 91 = 5.37889...% -> 5.379
    bill = _bill_91_days()
    session = Session(bill)
    instrument = Stream(Channel.INSTRUMENTS, bill.symbol)
    ticker = Stream(Channel.TICKER, bill.symbol)
    subscriber = Subscriber(session, [instrument, ticker])
    expected = {
        "price_per_100": "98.676708",
        "days_to_maturity": 91,
        "discount_rate_pct": "5.235",
        "investment_yield_pct": "5.379",
    }
    assert subscriber.last[instrument]["yield"] == expected
    assert subscriber.last[ticker]["yield"] is None  # no trade yet
    session.turn(
        [
            session.place(1, Side.SELL, 98_676_708, 10, symbol=bill.symbol),
            session.place(2, Side.BUY, 98_676_708, 10, symbol=bill.symbol),
        ]
    )
    body = orjson.loads(session.md.snapshot(ticker, session.now).payload)
    assert body["data"]["last"] == "98.676708" and body["data"]["yield"] == expected
    assert "yield" not in subscriber.last.get(Stream(Channel.TICKER, SYMBOL), {})


def test_a_bill_matured_early_publishes_no_yield() -> None:
    # `admin.mature` before the maturity date: the bill is redeemed and cancel_only, and
    # its date still counts 91 days, but a matured bill has no yield (instruments, ticker,
    # and a market data seeded from the venue after a restart alike).
    bill = _bill_91_days()
    session = Session(bill)
    instrument = Stream(Channel.INSTRUMENTS, bill.symbol)
    ticker = Stream(Channel.TICKER, bill.symbol)
    subscriber = Subscriber(session, [instrument, ticker])
    subscriber.receive(
        session.turn(
            [
                session.place(1, Side.SELL, 98_676_708, 10, symbol=bill.symbol),
                session.place(2, Side.BUY, 98_676_708, 10, symbol=bill.symbol),
            ]
        )
    )
    assert subscriber.last[instrument]["yield"]["days_to_maturity"] == 91
    assert subscriber.last[ticker]["yield"]["days_to_maturity"] == 91
    subscriber.receive(session.turn([MatureInstrument(symbol=bill.symbol)]))
    assert session.venue.markets[bill.symbol].matured
    assert subscriber.last[instrument]["status"] == "cancel_only"
    assert subscriber.last[instrument]["yield"] is None
    assert subscriber.last[ticker]["yield"] is None
    assert subscriber.last[ticker]["last"] == "98.676708"  # the last trade stays
    for md in (session.md, MarketData.from_venue(session.venue, EPOCH)):
        for stream in (instrument, ticker):
            body = orjson.loads(md.snapshot(stream, session.now).payload)
            assert body["data"]["yield"] is None, stream.name


def test_a_delisted_bill_matured_early_publishes_no_yield_either() -> None:
    # a delisted bill's maturing changes no status: the yield alone tells the update apart
    bill = _bill_91_days()
    session = Session(bill)
    instrument = Stream(Channel.INSTRUMENTS, bill.symbol)
    subscriber = Subscriber(session, [instrument])
    delist = SetInstrumentStatus(symbol=bill.symbol, status=InstrumentStatus.DELISTED)
    subscriber.receive(session.turn([delist]))
    assert subscriber.last[instrument]["yield"]["days_to_maturity"] == 91
    subscriber.receive(session.turn([MatureInstrument(symbol=bill.symbol)]))
    assert subscriber.last[instrument]["yield"] is None
    body = orjson.loads(session.md.snapshot(instrument, session.now).payload)
    assert body["data"]["yield"] is None


def test_instruments_follow_the_reference_price_band_and_caps() -> None:
    session = Session(make_spec())
    stream = Stream(Channel.INSTRUMENTS, SYMBOL)
    subscriber = Subscriber(session, [stream])
    subscriber.receive(
        session.turn(
            [session.place(1, Side.SELL, 10_500, 5), session.place(2, Side.BUY, 10_500, 5)]
        )
    )
    data = subscriber.last[stream]
    assert (data["reference_price"], data["band_low"], data["band_high"]) == (
        "105.00",
        "94.50",
        "115.50",
    )
    subscriber.receive(
        session.turn(
            [
                SetReferencePrice(symbol=SYMBOL, price=10_000),
                SetOrderCaps(symbol=SYMBOL, max_qty=2_000_000, max_notional=150_000_000),
            ]
        )
    )
    data = subscriber.last[stream]
    assert (data["reference_price"], data["max_qty"], data["max_notional"]) == (
        "100.00",
        "2.000000",
        "150.000000",
    )
    seeded = MarketData.from_venue(session.venue, EPOCH)
    again = orjson.loads(seeded.snapshot(stream, session.now).payload)["data"]
    assert again == data


def test_a_change_below_the_remembered_levels_reaches_a_deeper_tier() -> None:
    """Each side remembers its best levels between flushes and forgets them only when a
    change lands among them: a change further down must still reach a deeper tier."""
    session = Session(make_spec())
    resting_ladder(session, 15)
    top10 = Stream(Channel.BOOK, SYMBOL, 10)
    subscriber = Subscriber(session, [top10])
    ref = session.venue.markets[SYMBOL].reference_price
    deep = [session.place(2, BUY, ref - 12, 1_000_000), session.place(2, SELL, ref + 13, 500)]
    assert session.turn(deep) == [], "below depth 10: nothing for its subscribers"
    top25 = Stream(Channel.BOOK, SYMBOL, 25)
    subscriber.streams.add(top25)
    session.wanted.add(top25)
    subscriber.subscribe(session, top25)
    messages = session.turn([session.place(3, BUY, ref - 14, 500_000)])
    assert [m.stream for m in messages] == [top25]
    subscriber.receive(messages)
    assert set(subscriber.results) == {BookSync.APPLIED}
    assert_books_match(session, subscriber)


def test_an_order_that_trades_on_arrival_rests_only_its_remainder() -> None:
    session = Session(make_spec())
    resting_ladder(session, 3)
    stream = Stream(Channel.BOOK, SYMBOL, 10)
    subscriber = Subscriber(session, [stream])
    spec = session.venue.markets[SYMBOL].spec
    ref = spec.reference_price

    def price(units: int) -> str:
        return format_units(units, spec.price_decimals)

    unit = 10**spec.qty_decimals
    messages = session.turn([session.place(2, BUY, ref + 2, 3 * unit)])  # takes 2 asks
    subscriber.receive(messages)
    data = orjson.loads(messages[0].payload)["data"]
    assert data["bids"] == [[price(ref + 2), format_units(unit, spec.qty_decimals)]]
    assert data["asks"] == [[price(ref + 1), "0"], [price(ref + 2), "0"]]
    messages = session.turn([session.place(3, SELL, ref - 5, unit)])  # trades away at once
    subscriber.receive(messages)
    data = orjson.loads(messages[0].payload)["data"]
    assert (data["bids"], data["asks"]) == ([[price(ref + 2), "0"]], []), "never rested"
    assert set(subscriber.results) == {BookSync.APPLIED}
    assert_books_match(session, subscriber)


def test_an_unfollowed_instruments_stream_moves_on_and_snapshots_its_own_state() -> None:
    session = Session(make_spec())
    stream = Stream(Channel.INSTRUMENTS, SYMBOL)
    seq = session.md.seq(stream)
    session.turn([session.place(1, SELL, 10_500, 5), session.place(2, BUY, 10_500, 5)])
    assert session.md.seq(stream) == seq + 1, "the reference price moved: a new state"
    session.turn([session.place(1, BUY, 9_000, 5)])
    assert session.md.seq(stream) == seq + 1, "nothing of it moved"
    session.execute(session.place(1, SELL, 10_400, 5))  # fed, not yet flushed
    session.execute(session.place(2, BUY, 10_400, 5))
    body = orjson.loads(session.md.snapshot(stream, session.now).payload)
    assert (body["seq"], body["data"]["reference_price"]) == (seq + 1, "105.00")
    subscriber = Subscriber(session, [stream])
    subscriber.receive(session.md.flush(session.now, session.wanted))
    assert subscriber.last[stream]["reference_price"] == "104.00"
    assert session.md.seq(stream) == seq + 2


def test_updates_are_compact_json_with_the_documented_keys_in_order() -> None:
    session = Session(make_spec())
    resting_ladder(session, 2)
    streams = [*all_streams(SYMBOL), Stream(Channel.CANDLES, SYMBOL, 0, "1m")]
    Subscriber(session, streams)
    ref = session.venue.markets[SYMBOL].reference_price
    messages = session.turn([session.place(2, BUY, ref + 1, 2_000_000)])
    keys = {}
    for message in messages:
        body = orjson.loads(message.payload)
        assert orjson.dumps(body) == message.payload
        keys[message.stream.channel] = list(body)
    sequenced = ["type", "epoch", "seq", "prev_seq", "ts", "data"]
    assert keys == {
        Channel.INSTRUMENTS: ["ch", "sym", *sequenced],
        Channel.TRADES: ["ch", "sym", *sequenced],
        Channel.BOOK: ["ch", "sym", "depth", *sequenced],
        Channel.BBO: ["ch", "sym", *sequenced],
        Channel.TICKER: ["ch", "sym", "type", "epoch", "ts", "data"],
        Channel.CANDLES: ["ch", "sym", "interval", *sequenced],
    }


def test_a_bills_instruments_stream_moves_with_the_utc_date_followed_or_not() -> None:
    bill = _bill_91_days()
    session = Session(bill)
    instrument = Stream(Channel.INSTRUMENTS, bill.symbol)
    subscriber = Subscriber(session, [instrument])
    assert subscriber.last[instrument]["yield"]["days_to_maturity"] == 91
    session.now += DAY_US
    subscriber.receive(session.turn([]))
    assert subscriber.last[instrument]["yield"]["days_to_maturity"] == 90
    session.wanted.clear()  # nobody follows it: the seq still moves with the date
    seq = session.md.seq(instrument)
    session.now += DAY_US
    session.turn([])
    assert session.md.seq(instrument) == seq + 1
    body = orjson.loads(session.md.snapshot(instrument, session.now).payload)
    assert (body["seq"], body["data"]["yield"]["days_to_maturity"]) == (seq + 1, 89)


def test_a_bill_without_a_yield_sends_nothing_new_when_the_date_moves() -> None:
    """Above par (or matured): the yield is null every day, so a new UTC date changes
    nothing in the instruments stream (no update, no seq)."""
    bill = make_spec(
        symbol="TB-PAR-USD",
        kind=InstrumentKind.TBILL,
        base="TB-PAR",
        price_decimals=6,
        qty_decimals=0,
        reference_price=100_500_000,  # 100.5 per 100 face: the rates would be negative
        maturity_us=T0 + 91 * DAY_US,
    )
    session = Session(bill)
    instrument = Stream(Channel.INSTRUMENTS, bill.symbol)
    subscriber = Subscriber(session, [instrument])
    assert subscriber.last[instrument]["yield"] is None
    seq = session.md.seq(instrument)
    for _ in range(3):
        session.now += DAY_US
        assert [m for m in session.turn([]) if m.stream == instrument] == []
    assert session.md.seq(instrument) == seq


def split_session(turns: list[list[Command]]) -> dict[str, Any]:
    """A venue with a ledger (`test_corporate`'s holders) whose commands run in `turns`, and
    what its market data then shows of AAPLx: the ticker channel's last update, its snapshot,
    the REST ticker (off the candles), every interval's bars and the tape."""
    venue = Venue(VenueConfig(reserve_staleness_max_us=HOUR_US), Ledger())
    for command in corporate_setup():
        venue.execute(msgspec.structs.replace(command, ts_us=venue.ts_us + 1))
    md = MarketData.from_venue(venue, EPOCH)
    ticker, trades = Stream(Channel.TICKER, SYMBOL), Stream(Channel.TRADES, SYMBOL)
    shown: dict[str, Any] = {"tape": []}
    for commands in turns:
        for command in commands:
            events = venue.execute(msgspec.structs.replace(command, ts_us=venue.ts_us + 1))
            assert not [e for e in events if isinstance(e, CommandRejected)], events
            md.on_events(events)
        for message in md.flush(venue.ts_us, {ticker, trades}):
            body = orjson.loads(message.payload)
            if message.stream == ticker:
                shown["ticker"] = body["data"]
            else:
                shown["tape"] += [(t["price"], t["qty"]) for t in body["data"]]
        md.check_invariants()
    spec = venue.markets[SYMBOL].spec
    shown["ticker snapshot"] = orjson.loads(md.snapshot(ticker, venue.ts_us).payload)["data"]
    shown["rest ticker"] = msgspec.to_builtins(md.candles.ticker(spec, venue.ts_us))
    shown["candles"] = {i: md.candles.bars(SYMBOL, i, 10) for i in ("1m", "5m", "1h", "1d")}
    return shown


def test_trades_in_a_splits_turn_reach_the_ticker_rescaled_as_in_separate_turns() -> None:
    """The finding: a trade released in the same turn as a split of its market (the trade,
    the halt and the split in one batch) joined the candles before they were rescaled, but
    the ticker channel only at the flush, after its window was rescaled: it showed the
    trade's old price and volume (100.01, 1.0) where the candles and the REST ticker showed
    66.67 and 1.5. However the commands fall into turns, everything reads the same."""
    trade = PlaceOrder(account=4, symbol=SYMBOL, side=BUY, price=10_001, qty=SHARE)
    halt = SetInstrumentStatus(symbol=SYMBOL, status=InstrumentStatus.HALTED)
    split = SplitShares(symbol=SYMBOL, ratio_new=3, ratio_old=2)
    reopen = SetInstrumentStatus(symbol=SYMBOL, status=InstrumentStatus.OPEN)
    after = PlaceOrder(account=4, symbol=SYMBOL, side=BUY, price=6_668, qty=SHARE // 2)
    rest = PlaceOrder(account=3, symbol=SYMBOL, side=SELL, price=10_001, qty=3 * SHARE)
    commands = [trade, halt, split, reopen, after]
    one_by_one = split_session([[rest], *([command] for command in commands)])
    assert one_by_one["ticker"] == {
        "last": "66.68",  # the sell rests at 100.01 x 2/3 rounded up; the trade before: down
        "high": "66.68",
        "low": "66.67",
        "volume": "2.000000",  # 1 share, 1.5 after the split, and 0.5 after it
        "trades": 2,
    }
    assert one_by_one["tape"] == [("100.01", "1.000000"), ("66.68", "0.500000")]
    for turns in (
        [[rest, *commands]],
        [[rest], [trade, halt, split], [reopen, after]],
        [[rest], [trade, halt], [split, reopen, after]],
        [[rest], [trade], [halt, split, reopen, after]],
    ):
        assert split_session(turns) == one_by_one, turns
    ticker, rest_ticker = one_by_one["ticker"], one_by_one["rest ticker"]
    assert one_by_one["ticker snapshot"] == ticker
    assert {key: rest_ticker[key] for key in ticker} == ticker
