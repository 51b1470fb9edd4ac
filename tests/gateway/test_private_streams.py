"""The private streams' own bookkeeping: seqs given per account as pushes are sequenced,
the last released seq derived from the history, and a durable command's pushes handed to
each account's sessions (the server tests cover the rest)."""

import asyncio
import types
from pathlib import Path

from core.sequencer import Executed
from gateway import frames, limits, transport
from gateway.private_streams import PrivateStream, PrivateStreams, sequence
from gateway.reports import BalanceReport, Push
from gateway.sessions import Session, Sessions


def balance_push(total: str) -> Push:
    return Push("account", 0, 7, "balance", 1, BalanceReport("USD", total, total, "0.00"))


def test_sequence_numbers_each_accounts_pushes_and_leaves_publish_its_history_entries() -> None:
    streams: dict[int, PrivateStream] = {}
    out: list[tuple[PrivateStream, tuple[int, bytes]]] = []
    sequence(
        [(1, balance_push("1.00")), (2, balance_push("2.00")), (1, balance_push("3.00"))],
        streams,
        out,
    )
    assert [
        (stream is streams[account], entry[0])
        for (stream, entry), account in zip(out, (1, 2, 1), strict=True)
    ] == [
        (True, 1),
        (True, 1),
        (True, 2),
    ]
    assert out[2][1][1] == (
        b'{"ch":"account","seq":2,"epoch":7,"type":"balance","ts":1,'
        b'"data":{"asset":"USD","total":"3.00","available":"3.00","held":"0.00"}}'
    )
    assert streams[1].assigned == 2 and streams[1].seq == 0, "assigned, not yet released"


def test_the_released_seq_is_the_historys_newest_or_the_restored_one() -> None:
    stream = PrivateStream(restored_seq=41)
    assert stream.seq == 41  # a snapshot's stream before anything followed it
    for seq in range(42, 42 + limits.PRIVATE_HISTORY_EVENTS_MAX + 5):
        stream.history.append((seq, b"{}"))
    assert stream.seq == 41 + limits.PRIVATE_HISTORY_EVENTS_MAX + 5  # past the bound too
    assert len(stream.history) == limits.PRIVATE_HISTORY_EVENTS_MAX


class _Recorder:
    """A transport that keeps each write's frames and never closes."""

    def __init__(self) -> None:
        self.writes: list[list[bytes]] = []

    def writelines(self, data: list[bytes]) -> None:
        self.writes.append(list(data))

    def is_closing(self) -> bool:
        return False


def _follower(sessions: Sessions, stream: PrivateStream, packed: bool) -> tuple[Session, _Recorder]:
    listener = transport.Listener(None, ("/ws/trade",), 2**20)  # type: ignore[arg-type]
    connection = transport.Connection(listener)
    recorder = _Recorder()
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
        for account, payload in pushes:  # as `sequence` leaves them
            stream = private.streams[account]
            stream.assigned += 1
            executed.pushes.append((stream, (stream.assigned, payload)))
        private.publish(executed)
        assert list(taker.history) == [(1, b'{"t":1}'), (2, b'{"t":2}')]
        assert list(maker.history) == [(1, b'{"m":1}'), (2, b'{"m":2}')]
        assert list(unfollowed.history) == [(1, b'{"u":1}')]
        assert sessions._dirty[-1] is maker_packed[0], "the taker's first push came first"
        sessions.flush_outboxes()
        assert taker_packed[1].writes == [[frames.array_frame(b'{"t":1},{"t":2}')]]
        assert taker_plain[1].writes == [
            [frames.text_frame(b'{"t":1}'), frames.text_frame(b'{"t":2}')]
        ]
        assert maker_packed[1].writes == [[frames.array_frame(b'{"m":1},{"m":2}')]]
        single = Executed(2, None, [], None, [(maker, (3, b'{"m":3}'))])  # one push: its own way
        private.publish(single)
        sessions.flush_outboxes()
        assert maker_packed[1].writes[-1] == [frames.array_frame(b'{"m":3}')]
        assert maker.seq == 3

    asyncio.run(main())
