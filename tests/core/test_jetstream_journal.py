"""JetStreamJournal beyond the contract (tests/core/test_journal_contract.py): two writers, a
republished record, errors, and a 3-node cluster losing a node. Real nats-servers, one single
node and one 3-node cluster per module, each on its own ports and in its own temp directory."""

import asyncio
import gc
import itertools
import threading
from collections.abc import Iterator

import nats
import pytest

from cluster.nats import NatsCluster, free_ports
from core import jetstream_journal
from core.jetstream_journal import (
    JetStreamJournal,
    JournalConflict,
    JournalStreamMissing,
    JournalUnavailable,
)
from core.journal import JournalError
from tests.core.test_journal import records

_streams = itertools.count(1)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path_factory.mktemp("nats1"), size=1) as started:
        yield started


@pytest.fixture(scope="module")
def three_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path_factory.mktemp("nats3"), size=3) as started:
        yield started


@pytest.fixture
def cluster(three_nodes: NatsCluster) -> Iterator[NatsCluster]:
    """The module's 3-node cluster; a node a test killed is restarted after it."""
    yield three_nodes
    for index, server in enumerate(three_nodes.nodes):
        if not server.running:
            three_nodes.restart(index)


@pytest.fixture
def stream() -> str:
    return f"J_{next(_streams)}"


def open_journal(servers: NatsCluster, stream: str, **options: object) -> JetStreamJournal:
    return JetStreamJournal(servers.url, stream=stream, subject=f"j.{stream}", **options)  # type: ignore[arg-type]


def stream_state(servers: NatsCluster, stream: str) -> tuple[int, int, int]:
    """(messages, last seq, replicas) of `stream`, read by a client of its own."""

    async def read() -> tuple[int, int, int]:
        client = await nats.connect(servers.urls)
        try:
            info = await client.jetstream().stream_info(stream)
            return info.state.messages, info.state.last_seq, info.config.num_replicas or 1
        finally:
            await client.close()

    return asyncio.run(read())


def test_a_second_writer_is_refused_and_changes_nothing(node: NatsCluster, stream: str) -> None:
    first = open_journal(node, stream)
    second = open_journal(node, stream)
    try:
        first.commit(records(1, 3))
        second_view = second.last_seq()  # opened before the first wrote: stale
        assert second_view == 0
        with pytest.raises(JournalConflict, match="another writer"):
            second.commit([(1, b"not the first writer's")])
        with pytest.raises(JournalError, match="reopen"):  # a stale writer writes no more
            second.commit([(2, b"x")])
        first.commit(records(4, 2))
        assert list(first.replay()) == records(1, 5)
        assert stream_state(node, stream)[:2] == (5, 5)
    finally:
        first.close()
        second.close()


def test_a_writer_opened_after_another_continues_its_journal(
    node: NatsCluster, stream: str
) -> None:
    """A standby taking over opens the stream afresh: it sees every record and goes on."""
    first = open_journal(node, stream)
    first.commit(records(1, 4))
    takeover = open_journal(node, stream)
    try:
        assert takeover.last_seq() == 4
        takeover.commit(records(5, 1))
        with pytest.raises(JournalConflict):  # the old writer, still open, is now refused
            first.commit(records(5, 1))
        assert list(takeover.replay()) == records(1, 5)
    finally:
        first.close()
        takeover.close()


def test_a_republished_batch_is_stored_once(node: NatsCluster, stream: str) -> None:
    """As after a lost ack: the same records published again are deduplicated by msg id."""
    journal = open_journal(node, stream)
    try:
        journal.append(records(1, 20))
        journal._loop.run(journal._republish())
        journal._loop.run(journal._republish())
        journal.sync()
        journal.commit(records(21, 1))
        assert stream_state(node, stream)[:2] == (21, 21)
        assert list(journal.replay()) == records(1, 21)
    finally:
        journal.close()


def test_a_commit_across_a_short_outage_of_its_node_succeeds(
    node: NatsCluster, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The node stops for ~1 s while a commit of 8 MB is under way (more than nats-py's default
    2 MiB reconnect buffer): the commit returns after the restart, every record stored once."""
    journal = open_journal(node, stream)
    big = [(seq, bytes([seq % 256]) * 100_000) for seq in range(6, 86)]
    done = threading.Event()

    def restart_after_a_second() -> None:
        done.wait(1.0)
        node.nodes[0].start()
        done.wait(60.0)  # the node dies with the thread that started it (its parent-death signal)

    try:
        journal.commit(records(1, 5))
        node.nodes[0].stop()
        restarter = threading.Thread(target=restart_after_a_second)
        restarter.start()
        try:
            journal.commit(big)
            journal.commit(records(86, 1))
            assert list(journal.replay()) == records(1, 5) + big + records(86, 1)
            assert stream_state(node, stream)[:2] == (86, 86)
        finally:
            journal.close()
            done.set()
            restarter.join()
    finally:
        node.restart(0)
    assert "Event loop is closed" not in caplog.text


def test_a_journal_closed_after_a_failure_ends_cleanly(
    node: NatsCluster,
    stream: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The node gone for good: the sync fails, and closing leaves no nats-py task to die with
    'Event loop is closed' once the private loop is gone."""
    monkeypatch.setattr(jetstream_journal, "SYNC_TIMEOUT_S", 1.0)
    journal = open_journal(node, stream)
    try:
        node.nodes[0].stop()
        with pytest.raises(JournalUnavailable):
            journal.commit(records(1, 3))
        journal.close()
        gc.collect()  # a task left pending would be reported as it is collected
    finally:
        node.restart(0)
    output = caplog.text + "".join(capfd.readouterr())
    assert "Event loop is closed" not in output
    assert "Task was destroyed but it is pending" not in output


def test_an_unreachable_server_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # the error is under test, not how long the retries take (25 tries, 0.2 s apart: ~5 s)
    monkeypatch.setattr(jetstream_journal, "RECONNECT_ATTEMPTS", 1)
    (port,) = free_ports(1)
    with pytest.raises(JournalUnavailable, match=f"cannot reach NATS at nats://127.0.0.1:{port}"):
        JetStreamJournal(f"nats://127.0.0.1:{port}")


def test_a_missing_stream_is_refused_when_not_to_be_created(node: NatsCluster, stream: str) -> None:
    with pytest.raises(JournalStreamMissing, match=f"stream {stream} does not exist"):
        open_journal(node, stream, create=False)
    open_journal(node, stream).close()  # created now
    open_journal(node, stream, create=False).close()


def test_one_node_makes_an_r1_stream(node: NatsCluster, stream: str) -> None:
    open_journal(node, stream).close()
    assert stream_state(node, stream)[2] == 1


# -- a 3-node cluster -------------------------------------------------------------------------


def stream_leader(servers: NatsCluster, stream: str) -> int:
    """The index of the node leading `stream`'s replicas."""

    async def read() -> str:
        client = await nats.connect(servers.urls)
        try:
            info = await client.jetstream().stream_info(stream)
            assert info.cluster is not None and info.cluster.leader is not None
            return info.cluster.leader
        finally:
            await client.close()

    leader = asyncio.run(read())
    return [server.name for server in servers.nodes].index(leader)


def test_three_nodes_make_an_r3_stream(cluster: NatsCluster, stream: str) -> None:
    open_journal(cluster, stream).close()
    assert stream_state(cluster, stream)[2] == 3


def test_one_seed_url_of_three_nodes_makes_an_r3_stream(cluster: NatsCluster, stream: str) -> None:
    """The cluster's size comes from the servers the connection learns of, not the URL count."""
    journal = JetStreamJournal(cluster.urls[1], stream=stream, subject=f"j.{stream}")
    try:
        assert journal.replicas == 3
    finally:
        journal.close()
    assert stream_state(cluster, stream)[2] == 3


def test_a_stream_with_other_replicas_is_refused(cluster: NatsCluster, stream: str) -> None:
    open_journal(cluster, stream, replicas=1).close()
    with pytest.raises(JournalError, match=f"stream {stream} has 1 replicas .* expects 3"):
        open_journal(cluster, stream)
    open_journal(cluster, stream, replicas=1).close()  # told to expect it: opened


def test_acknowledged_records_survive_kill_9_of_the_leader(
    cluster: NatsCluster, stream: str
) -> None:
    """The leader dies mid-stream: appends go on with 2 of 3 nodes, and after its restart a
    fresh reader replays every record acknowledged, once each."""
    journal = open_journal(cluster, stream)
    try:
        for start in range(1, 301, 50):
            journal.commit(records(start, 50))
        leader = stream_leader(cluster, stream)
        journal.append(records(301, 50))  # in flight as the leader dies
        cluster.nodes[leader].kill()
        journal.sync()  # a new leader is elected; unacknowledged records are republished
        for start in range(351, 501, 50):
            journal.commit(records(start, 50))  # 2 of 3 nodes are a quorum
        assert list(journal.replay()) == records(1, 500)
    finally:
        journal.close()
    cluster.restart(leader)
    reader = open_journal(cluster, stream, create=False)
    try:
        assert reader.last_seq() == 500
        assert list(reader.replay()) == records(1, 500)
        assert stream_state(cluster, stream)[:2] == (500, 500)
    finally:
        reader.close()


def test_appends_go_on_while_a_follower_is_down_and_after_it_returns(
    cluster: NatsCluster, stream: str
) -> None:
    """A follower dies, appends go on, it restarts, appends go on: every record replays."""
    journal = open_journal(cluster, stream)
    try:
        journal.commit(records(1, 100))
        follower = (stream_leader(cluster, stream) + 1) % 3
        cluster.nodes[follower].kill()
        journal.commit(records(101, 100))
        cluster.restart(follower)
        journal.commit(records(201, 1))
    finally:
        journal.close()
    reader = open_journal(cluster, stream, create=False)
    try:
        assert list(reader.replay()) == records(1, 201)
    finally:
        reader.close()


def test_two_writers_racing_on_three_nodes_never_both_append(
    cluster: NatsCluster, stream: str
) -> None:
    """Two writers commit at once, round after round; the loser of each round reopens. Every
    record either was acknowledged to exactly one writer and is in the stream as its payload."""
    acknowledged: dict[int, bytes] = {}
    lock = threading.Lock()
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            race(name)
        except BaseException as failure:
            failures.append(failure)
            start.abort()

    def race(name: str) -> None:
        journal = open_journal(cluster, stream)
        try:
            for _ in range(30):
                start.wait(timeout=30)
                seq = journal.last_seq() + 1
                body = b"%s wrote %d" % (name.encode(), seq)
                try:
                    journal.commit([(seq, body)])
                except JournalConflict:
                    journal.close()
                    journal = open_journal(cluster, stream)
                    continue
                with lock:
                    if seq in acknowledged:
                        raise AssertionError(f"seq {seq} acknowledged to both writers")
                    acknowledged[seq] = body
        finally:
            journal.close()

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    reader = open_journal(cluster, stream, create=False)
    try:
        stored = dict(reader.replay())
    finally:
        reader.close()
    assert stored == acknowledged
    assert len(stored) == 30  # each round has one winner


def test_a_nats_password_is_shown_as_stars_where_its_url_is_said(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The finding (session 32): NATS credentials go in the URL (`nats://user:pw@host`),
    and the venue said its URLs whole: a refused connection's message, a core's and a
    gateway's start banner (stdout, a supervisor's log) and a bad `--nats`'s one line."""
    (port,) = free_ports(1)  # nobody listens there
    monkeypatch.setattr(jetstream_journal, "RECONNECT_ATTEMPTS", 1)  # refused at once
    url = f"nats://venue:hunter2-secret@127.0.0.1:{port}"
    with pytest.raises(jetstream_journal.JournalUnavailable) as refused:
        asyncio.run(jetstream_journal.connect([url], "test-password"))
    assert "hunter2" not in str(refused.value)
    assert f"nats://venue:***@127.0.0.1:{port}" in str(refused.value)
    assert jetstream_journal.shown(f"127.0.0.1:1,{url}") == (
        f"127.0.0.1:1,nats://venue:***@127.0.0.1:{port}"
    )
    # A token (a user with no password: nats-py sends it as the auth token) is a secret too,
    # and a URL with no scheme is nats:// (`urlsplit` alone takes its user for the scheme).
    assert jetstream_journal.shown("nats://s3cret-token@h:4222") == "nats://***@h:4222"
    assert jetstream_journal.shown("venue:hunter2@127.0.0.1:4222,s3cret-token@h") == (
        "venue:***@127.0.0.1:4222,***@h"
    )
    assert jetstream_journal.shown("tls://h:4222,[::1]:4222") == "tls://h:4222,[::1]:4222"
    # A password or token holding "/", "?" or "#" (base64, pasted unencoded) is hidden too:
    # `urlsplit` ended the host at the first of them and the URL was shown whole
    for secret_url, expected in [
        ("nats://u:Zm9v/YmFy+cXV4@h:4222", "nats://u:***@h:4222"),
        ("nats://u:p?q@h", "nats://u:***@h"),
        ("nats://u:p#frag@h", "nats://u:***@h"),
        ("nats://tok#en@h:4222", "nats://***@h:4222"),
        ("tok/en@h:4222", "***@h:4222"),
        ("nats://a/b:c@h", "nats://***@h"),
    ]:
        assert jetstream_journal.shown(secret_url) == expected
