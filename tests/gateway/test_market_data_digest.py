"""gateway/market_data.py's bytes pinned: a long seeded session digested, message by message.

Two markets (one with a ladder deeper than tier 100) take random places, crosses, cancels,
amends, gtd expiries and self-trades a few commands a turn, with operator commands (reference
prices, halts, caps) and clock jumps of minutes to hours between; subscriptions come and go
(a stream nobody follows restarts at a new seq) and snapshots and heartbeats are taken
mid-session. Every payload, with its stream and seq, goes into one blake2b: any change to a
message's bytes, keys, order, seq or checksum changes the digest. The pinned value was made
by this very file run against main 5fe23d4's gateway/market_data.py (before issue 12's
market data round), so the wire is shown unchanged since.
"""

import hashlib
import random

from engine.commands import (
    AdvanceClock,
    Command,
    SetInstrumentStatus,
    SetOrderCaps,
    SetReferencePrice,
)
from engine.enums import InstrumentStatus
from gateway.market_data import BOOK_DEPTHS, Channel, Message, Stream
from tests.engine.conftest import SYMBOL, make_spec
from tests.gateway.test_market_data import (
    MINUTE_US,
    OTHER,
    Session,
    all_streams,
    other_spec,
    random_command,
    resting_ladder,
)

# blake2b-16 of `digest(DIGEST_SEED, DIGEST_TURNS)`, made with main 5fe23d4's market data
PINNED = "bdec7c69b31fcc9eafe895ae606831b4"
DIGEST_SEED = 12
DIGEST_TURNS = 3_000


def every_stream() -> list[Stream]:
    streams: list[Stream] = []
    for symbol in (SYMBOL, OTHER):
        streams += all_streams(symbol)
        streams += [Stream(Channel.CANDLES, symbol, 0, interval) for interval in ("1m", "1h")]
    return streams


def operator_command(rng: random.Random, session: Session, symbol: str) -> Command:
    """Now and then: a reference price, a halt or a reopening, order caps."""
    market = session.venue.markets[symbol]
    r = rng.random()
    if r < 0.4:
        move = rng.randint(-20, 20) * market.spec.price_tick
        return SetReferencePrice(symbol=symbol, price=market.reference_price + move)
    if r < 0.7:
        status = InstrumentStatus.HALTED if rng.random() < 0.5 else InstrumentStatus.OPEN
        return SetInstrumentStatus(symbol=symbol, status=status)
    unit = 10**market.spec.qty_decimals
    return SetOrderCaps(symbol=symbol, max_qty=rng.choice([0, 50 * unit]), max_notional=0)


def digest(seed: int, turns: int) -> str:
    """The blake2b of every message of a seeded session (see the module docstring)."""
    rng = random.Random(seed)
    out = hashlib.blake2b(digest_size=16)

    def take(messages: list[Message]) -> None:
        for message in messages:
            out.update(f"{message.stream.name}#{message.seq}:".encode())
            out.update(message.payload)

    session = Session(make_spec(), other_spec())
    take(resting_ladder(session, 120, account=9, symbol=OTHER))
    streams = every_stream()
    for stream in rng.sample(streams, len(streams) // 2):
        session.wanted.add(stream)
        take([session.md.snapshot(stream, session.now)])
    for _ in range(turns):
        commands: list[Command] = [
            random_command(rng, session.venue, rng.choice((SYMBOL, OTHER)))
            for _ in range(rng.randint(1, 5))
        ]
        if rng.random() < 0.03:
            commands.append(operator_command(rng, session, rng.choice((SYMBOL, OTHER))))
        if rng.random() < 0.1:
            commands.append(AdvanceClock())
        for command in commands:
            session.execute(command)
        if rng.random() < 0.05:  # a quiet while: candles close, the ticker's window moves
            session.now += rng.choice((MINUTE_US, 7 * MINUTE_US, 3 * 60 * MINUTE_US))
        take(session.md.flush(session.now, session.wanted))
        session.md.check_invariants()
        if rng.random() < 0.05:  # a subscription comes or goes
            stream = rng.choice(streams)
            if stream in session.wanted:
                session.wanted.discard(stream)
            else:
                session.wanted.add(stream)
                take([session.md.snapshot(stream, session.now)])
        if rng.random() < 0.02:  # a newcomer's snapshot of any stream, followed or not
            take([session.md.snapshot(rng.choice(streams), session.now)])
        if rng.random() < 0.01:
            out.update(session.md.heartbeat(session.now, sorted(session.wanted)))
    for depth in BOOK_DEPTHS:  # the end state, in full
        take([session.md.snapshot(Stream(Channel.BOOK, SYMBOL, depth), session.now)])
    return out.hexdigest()


def test_a_long_random_session_sends_main_5fe23d4s_bytes() -> None:
    assert digest(DIGEST_SEED, DIGEST_TURNS) == PINNED


def test_the_digest_sees_a_different_session() -> None:
    assert digest(DIGEST_SEED + 1, 200) != digest(DIGEST_SEED, 200)


def test_the_session_exercises_every_channel() -> None:
    """What the digest covers: every channel sends updates (a short run of the same mix)."""
    assert _channels_updated(DIGEST_SEED, 400) == set(Channel)


def _channels_updated(seed: int, turns: int) -> set[Channel]:
    session = Session(make_spec(), other_spec())
    rng = random.Random(seed)
    session.wanted.update(every_stream())
    for stream in session.wanted:
        session.md.snapshot(stream, session.now)
    channels: set[Channel] = set()
    for index in range(turns):
        commands = [random_command(rng, session.venue, SYMBOL) for _ in range(3)]
        if index % 50 == 0:
            commands.append(operator_command(rng, session, SYMBOL))
        for command in commands:
            session.execute(command)
        session.now += MINUTE_US // 7
        channels |= {m.stream.channel for m in session.md.flush(session.now, session.wanted)}
    return channels
