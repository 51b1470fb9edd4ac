"""The private streams' own bookkeeping: seqs given per account as pushes are sequenced,
and the last released seq derived from the history (the server tests cover the rest)."""

from gateway import limits
from gateway.private_streams import PrivateStream, sequence
from gateway.reports import BalanceReport, Push


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
