"""The private streams' own bookkeeping: seqs given per account as pushes are sequenced,
the history's seqs counted back from the last released one, and a durable command's pushes
handed to each account's sessions (the server tests cover the rest)."""

import asyncio
import random
import types
from pathlib import Path
from typing import Any

import msgspec
import pytest

from core.sequencer import Executed
from engine.snapshot import Later, made
from gateway import frames, limits, transport
from gateway.private_streams import PrivateStream, PrivateStreams, sequence
from gateway.reports import BalanceReport, Push
from gateway.sessions import Session, Sessions
from tests.gateway.recording import Recorder


def balance_push(total: str) -> Push:
    return Push("account", 0, 7, "balance", 1, BalanceReport("USD", total, total, "0.00"))


def test_sequence_numbers_each_accounts_pushes_and_gathers_them_per_account() -> None:
    streams: dict[int, PrivateStream] = {}
    out: list[tuple[PrivateStream, list[bytes]]] = []
    sequence(
        [(1, balance_push("1.00")), (2, balance_push("2.00")), (1, balance_push("3.00"))],
        streams,
        out,
    )
    assert [(stream, len(payloads)) for stream, payloads in out] == [
        (streams[1], 2),
        (streams[2], 1),
    ], "per account, in the order of the accounts' first pushes"
    assert out[0][1][1] == (
        b'{"ch":"account","seq":2,"epoch":7,"type":"balance","ts":1,'
        b'"data":{"asset":"USD","total":"3.00","available":"3.00","held":"0.00"}}'
    )
    assert b'"seq":1,' in out[0][1][0] and b'"seq":1,' in out[1][1][0]
    assert streams[1].assigned == 2 and streams[1].seq == 0, "assigned, not yet released"


def test_the_historys_seqs_are_counted_back_from_the_released_one() -> None:
    stream = PrivateStream(seq=41)  # a snapshot's stream before anything followed it
    assert stream.oldest_seq == 42 and list(stream.entries()) == []
    pushed = limits.PRIVATE_HISTORY_EVENTS_MAX + 5
    for seq in range(42, 42 + pushed):
        stream.history.append(b"%d" % seq)
    stream.seq += pushed
    assert len(stream.history) == limits.PRIVATE_HISTORY_EVENTS_MAX, "bounded"
    assert stream.oldest_seq == 47
    assert all(payload == b"%d" % seq for seq, payload in stream.entries())
    assert list(stream.after(stream.seq - 2)) == [b"%d" % (stream.seq - 1), b"%d" % stream.seq]
    assert list(stream.after(0)) == list(stream.history), "below the oldest: all there is"
    assert list(stream.after(stream.seq)) == []


def _follower(sessions: Sessions, stream: PrivateStream, packed: bool) -> tuple[Session, Recorder]:
    listener = transport.Listener(None, ("/ws/trade",), 2**20)  # type: ignore[arg-type]
    connection = transport.Connection(listener)
    recorder = Recorder()
    connection.transport = recorder  # type: ignore[assignment]
    connection.is_open, connection.packed = True, packed
    session = sessions.open(connection)
    stream.sessions.add(session)
    return session, recorder


def test_a_durable_commands_pushes_reach_each_accounts_sessions_in_order(tmp_path: Path) -> None:
    """A trade's pushes come interleaved across accounts: each account's sessions get theirs
    in seq order (a packed one in one array frame, a plain one a frame each), queued in the
    order of the accounts' first pushes; every push joins its history, followed or not."""

    async def main() -> None:
        sessions = Sessions()
        bus = types.SimpleNamespace(reads=None)
        private = PrivateStreams(bus, sessions, tmp_path)  # type: ignore[arg-type]
        taker, maker, unfollowed = (
            private.streams.setdefault(a, PrivateStream()) for a in (1, 2, 3)
        )
        taker_packed, taker_plain = (_follower(sessions, taker, packed) for packed in (True, False))
        maker_packed = _follower(sessions, maker, packed=True)
        pushes = [
            (1, b'{"t":1}'),
            (2, b'{"m":1}'),
            (1, b'{"t":2}'),
            (3, b'{"u":1}'),
            (2, b'{"m":2}'),
        ]
        executed = Executed(1, None, [], None)
        gathered: dict[int, list[bytes]] = {}
        for account, payload in pushes:  # as `sequence` leaves them: gathered per account
            if account not in gathered:
                gathered[account] = []
                executed.pushes.append((private.streams[account], gathered[account]))
            gathered[account].append(payload)
        private.publish(executed)
        assert list(taker.entries()) == [(1, b'{"t":1}'), (2, b'{"t":2}')]
        assert list(maker.entries()) == [(1, b'{"m":1}'), (2, b'{"m":2}')]
        assert list(unfollowed.entries()) == [(1, b'{"u":1}')]
        assert sessions._dirty[-1] is maker_packed[0], "the taker's first push came first"
        sessions.flush_outboxes()
        assert taker_packed[1].writes == [[frames.array_frame(b'{"t":1},{"t":2}')]]
        assert taker_plain[1].writes == [
            [frames.text_frame(b'{"t":1}'), frames.text_frame(b'{"t":2}')]
        ]
        assert maker_packed[1].writes == [[frames.array_frame(b'{"m":1},{"m":2}')]]
        single = Executed(2, None, [], None, [(maker, [b'{"m":3}'])])
        private.publish(single)
        sessions.flush_outboxes()
        assert maker_packed[1].writes[-1] == [frames.array_frame(b'{"m":3}')]
        assert maker.seq == 3

    asyncio.run(main())


def test_a_snapshot_holds_each_history_as_seq_and_bytes_and_restores_it(tmp_path: Path) -> None:
    """The snapshot's format is as before the history kept bytes alone: (seq, [(seq, bytes)])
    per account; a restored stream counts its seqs from there."""
    bus = types.SimpleNamespace(reads=types.SimpleNamespace(orders={}, markets={}))
    private = PrivateStreams(bus, Sessions(), tmp_path)  # type: ignore[arg-type]
    stream = private.streams.setdefault(3, PrivateStream())
    stream.assigned = 2
    private.publish(Executed(1, None, [], None, [(stream, [b'{"a":1}', b'{"a":2}'])]))
    image = private.image()
    assert image["private"] == {"3": (2, [(1, b'{"a":1}'), (2, b'{"a":2}')])}
    restored = PrivateStreams(bus, Sessions(), tmp_path)  # type: ignore[arg-type]
    restored.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(image)))
    again = restored.streams[3]
    assert (again.seq, again.assigned, list(again.entries())) == (2, 2, list(stream.entries()))
    assert restored.image()["private"] == image["private"]


def test_dead_man_json_goes_only_once_its_switches_came_back(tmp_path: Path) -> None:
    """Over NATS the bus's drain gives up after a bound (no core active): the start waits on
    until the commands came back, then removes the file; they are submitted once."""
    (tmp_path / "dead_man.json").write_text('{"4": 123}')
    submitted: list[Any] = []
    drains: list[bool] = []

    async def drain() -> bool:
        came_back = len(drains) >= 2  # two bounded waits give up first
        drains.append(came_back)
        if not came_back:
            assert (tmp_path / "dead_man.json").exists(), "removed before they came back"
        return came_back

    bus = types.SimpleNamespace(
        reads=types.SimpleNamespace(venue=types.SimpleNamespace(dead_man_deadlines={})),
        submit=lambda command, origin: submitted.append(command),
        drain=drain,
    )
    private = PrivateStreams(bus, Sessions(), tmp_path)  # type: ignore[arg-type]
    asyncio.run(private.arm_switches_of_dead_man_file())
    assert [(c.account, c.timeout_ms) for c in submitted] == [(4, 1)], "passed: fires at once"
    assert drains == [False, False, True]
    assert not (tmp_path / "dead_man.json").exists()


def test_a_later_image_is_the_history_as_it_was_though_the_bound_pushes_it_on(
    tmp_path: Path,
) -> None:
    """Session 34: a snapshot's capture numbered every history entry on the event loop (a new
    tuple each, 500,000 at the bound). A later image copies each history's pushes (one C
    call) and the writer numbers them: a history at its per-account bound that drops its
    oldest as pushes come still encodes as it was at the capture."""
    bus: Any = types.SimpleNamespace(reads=None)  # (the image reads no venue)
    streams = PrivateStreams(bus, Sessions(), tmp_path)
    stream = streams.streams[7] = PrivateStream(seq=3)
    bound = limits.PRIVATE_HISTORY_EVENTS_MAX
    stream.history.extend(b"%d" % seq for seq in range(4 - bound, 4))  # full: seqs to 3
    at_once = msgspec.msgpack.encode(streams.image())
    later = streams.image(later=True)
    assert isinstance(later["private"]["7"], Later)
    for seq in range(4, 40):
        stream.history.append(b"%d" % seq)
        stream.seq = seq
    assert stream.oldest_seq == 40 - bound, "the oldest dropped"
    assert msgspec.msgpack.encode(later, enc_hook=made) == at_once


def naive_bound(histories: dict[int, list[tuple[int, bytes]]], budget: int) -> None:
    """The cut across accounts as first written (session 33), on plain lists: every length
    sorted, the common depth found from the shortest up, the longest cut to it."""
    lengths = sorted(len(history) for history in histories.values())
    left = len(lengths)
    for length in lengths:
        if length * left > budget:
            depth = budget // left
            break
        budget -= length
        left -= 1
    else:
        return
    for history in histories.values():
        del history[: max(0, len(history) - depth)]


def test_the_bound_keeps_what_the_first_cut_kept_on_seeded_random_streams(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cut was made cheaper (session 34: the short histories left unsorted, the long
    ones cut in bulk): what it keeps, and what a waiting replay is spared, must stay what
    the first one kept, a function of the stream alone. Seeded random commands over many
    accounts (a few busy, many quiet, some empty) checked against `naive_bound` after each."""
    monkeypatch.setattr(limits, "PRIVATE_HISTORY_EVENTS_MAX", 60)
    monkeypatch.setattr(limits, "PRIVATE_HISTORY_EVENTS_TOTAL_MAX", 900)
    monkeypatch.setattr(limits, "PRIVATE_HISTORY_EVENTS_TRIMMED", 800)
    monkeypatch.setattr(limits, "PRIVATE_HISTORY_CHECK_COMMANDS", 1)
    for seed in range(6):
        rng = random.Random(seed)
        bus = types.SimpleNamespace(reads=types.SimpleNamespace(orders={}, markets={}))
        private = PrivateStreams(bus, Sessions(), tmp_path)  # type: ignore[arg-type]
        accounts = rng.randrange(20, 300)
        busy = rng.sample(range(accounts), rng.randrange(1, 6))
        model: dict[int, list[tuple[int, bytes]]] = {}
        for account in range(accounts):  # some never pushed to: empty histories count too
            private.streams[account] = PrivateStream()
            model[account] = []
        held, since, spared = rng.choice(busy), 0, []
        for command in range(1, 1_000):
            if command == 200:  # a replay decided, not yet sent: what is cut above it waits
                since = private.streams[held].oldest_seq - 1
                private.streams[held].hold(since)
            pushes = []
            for account in {
                rng.choice(busy) if rng.random() < 0.7 else rng.randrange(accounts)
                for _ in range(rng.randrange(1, 4))
            }:
                stream = private.streams[account]
                pushed = rng.choice((1, 2, 3, 3, 40))  # now and then a burst: cuts of all sizes
                payloads = [b"%d:%d" % (account, stream.seq + i) for i in range(1, pushed + 1)]
                pushes.append((stream, payloads))
                model[account] += [(stream.seq + i, p) for i, p in enumerate(payloads, 1)]
            before = list(model[held])
            for history in model.values():
                del history[: max(0, len(history) - limits.PRIVATE_HISTORY_EVENTS_MAX)]
            cut = sum(map(len, model.values())) > limits.PRIVATE_HISTORY_EVENTS_TOTAL_MAX
            if cut:
                naive_bound(model, limits.PRIVATE_HISTORY_EVENTS_TRIMMED)
            if since:
                kept = set(model[held])
                spared += [e for e in before if e[0] > since and e not in kept]
            private.publish(Executed(command, None, [], None, pushes))
            if cut or not command % 100:  # (every command: seconds)
                got = {account: list(s.entries()) for account, s in private.streams.items()}
                assert got == model, f"seed {seed}, command {command}"
        assert private.histories_trimmed > 10, f"seed {seed}: cut often"
        assert spared and private.streams[held].spared == spared, f"seed {seed}"


def test_a_forget_drops_the_subscriptions_waiting_so_their_join_sends_nothing(
    tmp_path: Path,
) -> None:
    """`forget` (a cluster gateway's snapshot that failed to restore, perhaps part way: the
    streams as at start) drops the account subscriptions waiting for their barrier too: each
    held a stream forgotten, and its join sends nothing and raises nothing, the session not
    following; a subscription made since joins as ever. Before: `subscribing` kept them, and
    a join looked its stream up (`KeyError`)."""

    async def main() -> None:
        sessions = Sessions()
        bus = types.SimpleNamespace(reads=types.SimpleNamespace(orders={}, markets={}))
        private = PrivateStreams(bus, sessions, tmp_path)  # type: ignore[arg-type]
        session, recorder = _follower(sessions, PrivateStream(), packed=False)
        stream = private.streams.setdefault(3, PrivateStream())
        stream.assigned = 1
        private.publish(Executed(1, None, [], None, [(stream, [b'{"a":1}'])]))
        _, waiting = private.subscription(session, 3, since_seq=0)  # a replay of seq 1 owed
        session.account_stream = True  # as `Queries._subscribe_account` says it at once
        private.forget()
        assert not private.subscribing and not private.streams
        private.join(waiting)
        sessions.flush_outboxes()
        assert recorder.writes == [] and not session.account_stream
        _, again = private.subscription(session, 3, since_seq=0)
        private.join(again)
        assert session.account_stream and session in private.streams[3].sessions
        assert not private.subscribing

    asyncio.run(main())
