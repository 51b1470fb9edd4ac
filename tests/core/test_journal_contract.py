"""The journal contract, written once and run against every `Journal`: `FileJournal` on a
real file and `JetStreamJournal` on a real nats-server (one per module, its own ports and temp
directory, one stream per test). Behaviours of one implementation only live beside it:
tests/core/test_journal.py (torn tails, flock), tests/core/test_jetstream_journal.py."""

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import pytest

from cluster.nats import NatsCluster
from core.jetstream_journal import JetStreamJournal
from core.journal import (
    RECORD_BYTES_MAX,
    FileJournal,
    Journal,
    JournalError,
    JournalSequenceError,
    RecordTooLargeError,
)
from tests.core.test_journal import Record, payload, records

Opener = Callable[[], Journal]
_streams = itertools.count(1)


@pytest.fixture(scope="module")
def nats_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """One nats-server -js for the module: starting one per test would cost more than the test."""
    with NatsCluster(tmp_path_factory.mktemp("nats"), size=1) as node:
        yield node


@pytest.fixture(params=["file", "file in segments", "jetstream"])
def open_journal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens (and reopens) one journal; whatever is still open is closed after the test."""
    opened: list[Journal] = []
    if request.param == "file":

        def factory() -> Journal:
            return FileJournal(tmp_path / "commands.journal")

    elif request.param == "file in segments":  # a new segment every few records

        def factory() -> Journal:
            return FileJournal(tmp_path / "commands.journal", segment_bytes=200)

    else:
        node: NatsCluster = request.getfixturevalue("nats_node")
        number = next(_streams)  # a stream of its own: the test starts from an empty journal

        def factory() -> Journal:
            return JetStreamJournal(node.url, stream=f"CONTRACT_{number}", subject=f"c.{number}")

    def opener() -> Journal:
        opened.append(factory())
        return opened[-1]

    yield opener
    for journal in opened:
        journal.close()


def reopen(open_journal: Opener, journal: Journal) -> Journal:
    journal.close()
    return open_journal()


def test_a_new_journal_is_empty(open_journal: Opener) -> None:
    journal = open_journal()
    assert journal.last_seq() == 0
    assert list(journal.replay()) == []


def test_committed_batches_replay_in_order(open_journal: Opener) -> None:
    journal = open_journal()
    written: list[Record] = []
    for size in (1, 5, 100, 2):
        batch = records(len(written) + 1, size)
        journal.commit(batch)
        written += batch
        assert journal.last_seq() == len(written)
    assert list(journal.replay()) == written


@pytest.mark.parametrize("after_seq", [0, 1, 5, 49, 107, 108, 500])
def test_replay_after_a_seq_gives_the_records_above_it(
    open_journal: Opener, after_seq: int
) -> None:
    journal = open_journal()
    written = records(1, 108)
    for start in range(0, 108, 10):
        journal.commit(written[start : start + 10])
    assert list(journal.replay(after_seq)) == written[after_seq:]


def test_replay_after_a_seq_far_into_the_journal(open_journal: Opener) -> None:
    """Long enough that replay starts from the middle, before and after a reopen."""
    journal = open_journal()
    written = records(1, 12_345)
    for start in range(0, len(written), 1_000):
        journal.commit(written[start : start + 1_000])
    for _ in range(2):
        for after_seq in (4_095, 4_096, 4_097, 8_192, 9_999, 12_344):
            assert list(journal.replay(after_seq)) == written[after_seq:]
        journal = reopen(open_journal, journal)


def test_a_reopened_journal_continues(open_journal: Opener) -> None:
    journal = open_journal()
    journal.commit(records(1, 7))
    journal = reopen(open_journal, journal)
    assert journal.last_seq() == 7
    journal.commit(records(8, 3))
    journal = reopen(open_journal, journal)
    assert journal.last_seq() == 10
    assert list(journal.replay()) == records(1, 10)


def test_only_synced_records_are_replayed(open_journal: Opener) -> None:
    journal = open_journal()
    journal.commit(records(1, 2))
    journal.append(records(3, 2))
    journal.append(records(5, 1))
    assert journal.last_seq() == 5
    assert list(journal.replay()) == records(1, 2)
    journal.sync()
    assert list(journal.replay()) == records(1, 5)


def test_close_syncs_what_was_appended(open_journal: Opener) -> None:
    journal = open_journal()
    journal.append(records(1, 3))
    journal = reopen(open_journal, journal)
    assert list(journal.replay()) == records(1, 3)


@pytest.mark.parametrize(
    "seqs",
    [[0, 1], [5], [4, 5, 7], [4, 4], [3], [4, 6, 5], [2, 3, 4]],
    ids=["zero", "gap", "gap-inside", "repeat", "overlap", "out-of-order", "rewind"],
)
def test_a_batch_out_of_sequence_is_refused_whole(open_journal: Opener, seqs: list[int]) -> None:
    journal = open_journal()
    journal.commit(records(1, 3))
    with pytest.raises(JournalSequenceError, match="seq"):
        journal.commit([(seq, payload(seq)) for seq in seqs])
    assert journal.last_seq() == 3
    journal = reopen(open_journal, journal)
    assert list(journal.replay()) == records(1, 3)
    journal.commit(records(4, 2))
    assert list(journal.replay()) == records(1, 5)


def test_the_first_record_is_seq_one(open_journal: Opener) -> None:
    journal = open_journal()
    with pytest.raises(JournalSequenceError):
        journal.commit(records(2, 1))
    journal.commit(records(1, 1))


def test_an_oversized_record_is_refused_with_its_batch(open_journal: Opener) -> None:
    journal = open_journal()
    with pytest.raises(RecordTooLargeError, match=f"record 2 is {RECORD_BYTES_MAX + 1} bytes"):
        journal.commit([(1, b"fine"), (2, bytes(RECORD_BYTES_MAX + 1))])
    assert journal.last_seq() == 0
    biggest = [(1, bytes(RECORD_BYTES_MAX))]
    journal.commit(biggest)
    journal = reopen(open_journal, journal)
    assert list(journal.replay()) == biggest


def test_empty_batches_and_payloads_are_fine(open_journal: Opener) -> None:
    journal = open_journal()
    journal.commit([])
    journal.commit([(1, b"")])
    journal = reopen(open_journal, journal)
    assert list(journal.replay()) == [(1, b"")]


def test_a_closed_journal_refuses_and_closes_again_harmlessly(open_journal: Opener) -> None:
    journal = open_journal()
    journal.commit(records(1, 1))
    journal.close()
    journal.close()
    with pytest.raises(JournalError, match="closed"):
        journal.commit(records(2, 1))


class Entry(NamedTuple):
    """A sequenced command as the sequencer gives it (`Executed`); None: a barrier."""

    seq: int
    command: Any


_encoder = msgspec.msgpack.Encoder()


def entries(first: int, count: int) -> list[Entry]:
    return [
        Entry(seq, {"command": seq, "body": payload(seq)}) for seq in range(first, first + count)
    ]


def encoded(batch: list[Entry]) -> list[Record]:
    return [(e.seq, _encoder.encode(e.command)) for e in batch if e.command is not None]


def test_committed_commands_are_the_records_of_their_encoding(open_journal: Opener) -> None:
    """Barriers (no command) make no record; each command's record is what the encoder makes
    of it, as `commit` of those records would have written."""
    journal = open_journal()
    first, second = entries(1, 3), entries(4, 40)
    barrier = Entry(0, None)
    journal.commit_commands([barrier, *first, barrier], _encoder.encode_into)
    journal.commit_commands([barrier], _encoder.encode_into)
    journal.commit_commands([second[0], barrier, *second[1:]], _encoder.encode_into)
    assert journal.last_seq() == 43
    journal = reopen(open_journal, journal)
    assert list(journal.replay()) == encoded(first + second)
    journal.commit(records(44, 1))  # records and commands go on one after the other
    journal.commit_commands(entries(45, 2), _encoder.encode_into)
    assert list(journal.replay(42)) == encoded(second[-1:]) + records(44, 1) + encoded(
        entries(45, 2)
    )


@pytest.mark.parametrize("seqs", [[0, 1], [5], [4, 5, 7], [4, 4], [3]])
def test_commands_out_of_sequence_are_refused_whole(open_journal: Opener, seqs: list[int]) -> None:
    journal = open_journal()
    journal.commit_commands(entries(1, 3), _encoder.encode_into)
    batch = [Entry(seq, f"command {seq}") for seq in seqs]
    with pytest.raises(JournalSequenceError, match="seq"):
        journal.commit_commands(batch, _encoder.encode_into)
    assert journal.last_seq() == 3
    journal = reopen(open_journal, journal)
    assert list(journal.replay()) == encoded(entries(1, 3))


def test_an_oversized_command_is_refused_with_its_batch(open_journal: Opener) -> None:
    journal = open_journal()
    batch = [Entry(1, "fine"), Entry(2, bytes(RECORD_BYTES_MAX))]  # over by its msgpack header
    with pytest.raises(RecordTooLargeError, match=f"record 2 is {RECORD_BYTES_MAX + 5} bytes"):
        journal.commit_commands(batch, _encoder.encode_into)
    assert journal.last_seq() == 0
    journal.commit_commands(batch[:1], _encoder.encode_into)
    assert list(journal.replay()) == encoded(batch[:1])


def test_replay_after_a_negative_seq_is_refused(open_journal: Opener) -> None:
    with pytest.raises(ValueError, match="negative"):
        open_journal().replay(-1)
