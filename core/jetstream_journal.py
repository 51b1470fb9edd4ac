"""The command journal on a NATS JetStream stream: the cluster mode's replicated log.

Owns `JetStreamJournal`, a `Journal` (core/journal.py) whose records are the messages of one
stream (R=3 on a cluster, R=1 on one node: judged from the servers the connection knows, not
from the URLs given), stream seq = venue seq. Each publish carries
`Nats-Expected-Last-Sequence: seq - 1` (so a second writer's append fails, never interleaves)
and a `Nats-Msg-Id` of this writer's id and the seq (so a retried publish is deduplicated, not
stored twice). `append` publishes without waiting; `sync` returns once the stream has
acknowledged every appended record (stored on a quorum), republishing on a timeout, a leader
change or a reconnect (nats-py buffers up to `PUBLISH_BUFFER_BYTES` meanwhile) within
`SYNC_TIMEOUT_S`. `replay` reads back through an ephemeral pull consumer, only up to what this
object knows is acknowledged. The protocol is synchronous (the sequencer calls it from its
journal thread), so nats-py runs on a private event loop in a thread of its own. After a failed
`sync` the object refuses everything: reopen it (the stream settles what is there). An existing
stream whose replicas or duplicate window differ from this journal's is refused.
"""

import asyncio
import itertools
import json
import logging
import secrets
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from core.journal import (
    RECORD_BYTES_MAX,
    UNSYNCED_BYTES_MAX,
    BatchTooLargeError,
    EncodeInto,
    JournalError,
    JournalSequenceError,
    RecordTooLargeError,
    Sequenced,
    encoded_records,
)

STREAM_DEFAULT: Final = "VENUE_COMMANDS"
SUBJECT_DEFAULT: Final = "venue.commands"
CONNECT_TIMEOUT_S: Final = 5.0  # per server; loopback or a LAN answers in ms
RECONNECT_ATTEMPTS: Final = 25
RECONNECT_WAIT_S: Final = 0.2
REQUEST_TIMEOUT_S: Final = 5.0  # one JetStream API call (stream info, consumer create)
ACK_TIMEOUT_S: Final = 2.0  # no ack by then: the publish (or its ack) is lost; republish
# A leader election after a node dies takes a few seconds; past this the stream is gone for us.
SYNC_TIMEOUT_S: Final = 30.0
REPUBLISH_PAUSE_S: Final = 0.25  # between attempts while the stream has no leader
# Unacknowledged publishes in flight; one batch is ~1,000 commands, bytes are bounded apart.
PUBLISH_PENDING_MAX: Final = 65_536
STATUS_HEADER: Final = "Status"  # a NATS status reply, e.g. 503 "no responders"
REPLAY_BATCH: Final = 1_000  # messages per pull-consumer fetch
HEADER_SLACK_BYTES: Final = 256  # the two headers' bytes on top of a record's payload
# nats-py's buffer for publishes while it reconnects (its default, 2 MiB, is less than one sync's
# worth): everything `append` may leave unsynced, with headers, so a short outage loses no append.
PUBLISH_BUFFER_BYTES: Final = UNSYNCED_BYTES_MAX + PUBLISH_PENDING_MAX * HEADER_SLACK_BYTES
DUPLICATE_WINDOW_S: Final = 120.0  # how long a retried publish is recognised (deduplicated)
CLUSTER_REPLICAS: Final = 3  # a cluster's streams survive one node lost (a quorum of 2 of 3)
ERR_WRONG_LAST_SEQUENCE: Final = 10071  # JetStream's JSStreamWrongLastSequenceErrF
SEQ_HEADER: Final = "Nats-Expected-Last-Sequence"
MSG_ID_HEADER: Final = "Nats-Msg-Id"
LOOP_STOP_TIMEOUT_S: Final = 5.0  # nats-py's cancelled tasks end at once; bounded all the same

logger = logging.getLogger(__name__)
T = TypeVar("T")


class JournalUnavailable(JournalError):
    """No NATS server answered, or the stream did not acknowledge within the timeout."""


class JournalStreamMissing(JournalError):
    """The stream does not exist and this journal was told not to create it."""


class JournalConflict(JournalError):
    """Another writer appended to the stream: this one's view is stale; it must not write."""


@dataclass
class _Pending:
    """A record published and not yet acknowledged, with its latest attempt's ack."""

    seq: int
    payload: bytes
    ack: "asyncio.Future[int]" = field(repr=False)  # the stream seq it was stored at


class _Lost(Exception):
    """No one answered a publish (no responders: the stream has no leader right now)."""


class _Refused(Exception):
    """The stream answered a publish with an error."""

    def __init__(self, code: int, err_code: int, description: str) -> None:
        super().__init__(f"{code} {err_code} {description}")
        self.code = code
        self.err_code = err_code
        self.description = description


class LoopThread:
    """A private asyncio loop in a daemon thread, for calling nats-py from synchronous code."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        # Every coroutine bounds its own waits, so the caller's wait is bounded too.
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def stop(self) -> None:
        """End the tasks nats-py left behind (a reconnect, a flusher, after a failure), then the
        loop: a task that outlived it would die with 'Event loop is closed'."""
        if self._thread.is_alive():
            self.run(_cancel_other_tasks())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
        if not self.loop.is_closed():
            self.loop.close()


async def _cancel_other_tasks() -> None:
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=LOOP_STOP_TIMEOUT_S)
    await asyncio.get_running_loop().shutdown_asyncgens()


class JetStreamJournal:
    """A `Journal` on a JetStream stream, for one thread at a time (like `FileJournal`).

    `servers`: NATS URLs (a list or one comma-separated string; one seed of a cluster is
    enough). `replicas`: the stream's replica count; by default `CLUSTER_REPLICAS` when the
    connection knows of other servers (the cluster's gossip), else 1. An existing stream with
    other replicas is refused (`JournalError`), not silently used.
    `create=False` refuses a missing stream instead of creating it (a standby, a reader).
    """

    def __init__(
        self,
        servers: str | Sequence[str],
        *,
        stream: str = STREAM_DEFAULT,
        subject: str = SUBJECT_DEFAULT,
        replicas: int | None = None,
        create: bool = True,
    ) -> None:
        self.servers = server_list(servers)
        self.stream = stream
        self.subject = subject
        self.replicas = replicas  # None until opened: then what the cluster calls for
        self.created = False  # this object made the stream: a refused start deletes it
        # Unique per object: a retry of our own publish dedupes; another writer's never does.
        self._writer_id = secrets.token_hex(8)
        self._pending: list[_Pending] = []
        self._acks: dict[str, asyncio.Future[int]] = {}  # reply token -> its attempt's ack
        self._attempts = itertools.count()
        self._unsynced_bytes = 0
        self._closed = False
        self._failure: BaseException | None = None
        self._loop = LoopThread(f"journal-nats-{stream}")
        try:
            self._nc, self._js, last_seq = self._loop.run(self._open(create))
        except BaseException:
            self._loop.stop()
            raise
        self._last_seq = self._durable_seq = last_seq

    # -- opening --------------------------------------------------------------------------

    async def _open(self, create: bool) -> tuple[Client, JetStreamContext, int]:
        nc = await self._connect()
        try:
            if nc.max_payload < RECORD_BYTES_MAX + HEADER_SLACK_BYTES:
                raise JournalError(
                    f"the NATS server's max_payload is {nc.max_payload} bytes, below a journal"
                    f" record's {RECORD_BYTES_MAX} + headers: set max_payload: 8MB in its config"
                )
            if self.replicas is None:
                self.replicas = cluster_replicas(nc)
            js = nc.jetstream(timeout=REQUEST_TIMEOUT_S)
            last_seq = await self._ensure_stream(js, create)
            # Acks come back on our own inbox, not nats-py's publish_async: its error path
            # raises inside its callback (nats-py 2.16), so a refused publish never resolves.
            self._reply_prefix = nc.new_inbox()
            await nc.subscribe(f"{self._reply_prefix}.*", cb=self._on_ack)
        except BaseException:
            await nc.close()
            raise
        return nc, js, last_seq

    async def _connect(self) -> Client:
        return await connect(
            self.servers,
            f"venue-journal-{self._writer_id}",
            pending_size=PUBLISH_BUFFER_BYTES,
            disconnected_cb=self._log_disconnected,
            reconnected_cb=self._log_reconnected,
        )

    async def _ensure_stream(self, js: JetStreamContext, create: bool) -> int:
        """The stream's last seq, creating it when allowed; refuses one with gaps."""
        try:
            info = await retry_unavailable(lambda: js.stream_info(self.stream))
        except nats.js.errors.NotFoundError:
            if not create:
                raise JournalStreamMissing(
                    f"JetStream stream {self.stream} does not exist on {shown(self.servers)}"
                ) from None
            config = StreamConfig(
                name=self.stream,
                subjects=[self.subject],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                num_replicas=self.replicas,
                discard=DiscardPolicy.NEW,
                duplicate_window=DUPLICATE_WINDOW_S,
                deny_delete=True,  # the journal is append-only: no message may be removed
                deny_purge=True,
            )
            info = await retry_unavailable(lambda: js.add_stream(config))
            self.created = True
            logger.info("created JetStream stream %s (R=%d)", self.stream, self.replicas)
        self._check_config(info.config)
        state = info.state
        gaps = state.messages != state.last_seq or state.first_seq not in (0, 1)
        if gaps and state.last_seq > 0:
            raise JournalError(
                f"stream {self.stream} holds {state.messages} messages from seq"
                f" {state.first_seq} to {state.last_seq}: a journal has every seq from 1"
            )
        return int(state.last_seq)

    def _check_config(self, config: StreamConfig) -> None:
        """Refuse a stream made otherwise: fewer replicas lose acknowledged records with a
        node, another duplicate window lets a retried publish be stored twice, and subjects
        other than the journal's alone store its records nowhere (each publish unanswered
        for 30 s, then a fatal stop: until session 36) or put others' messages among its seqs."""
        subjects = list(config.subjects or [])
        if subjects != [self.subject]:
            raise JournalError(
                f"stream {self.stream} takes subjects {subjects} where this journal writes"
                f" {self.subject} alone: is it another venue's stream, or made by a tool?"
                " Give the venue NATS servers of its own, or remove that stream"
            )
        replicas = config.num_replicas or 1
        window_s = config.duplicate_window or 0.0
        if replicas != self.replicas or abs(window_s - DUPLICATE_WINDOW_S) > 1e-3:
            raise JournalError(
                f"stream {self.stream} has {replicas} replicas and a {window_s:g}s duplicate"
                f" window where this journal expects {self.replicas} and {DUPLICATE_WINDOW_S:g}s:"
                " fix the stream (nats stream edit) or pass replicas= to match it"
            )

    async def _log_disconnected(self) -> None:
        if not self._closed:  # nats-py calls this on our own close too
            logger.warning("stream %s: disconnected from NATS; reconnecting", self.stream)

    async def _log_reconnected(self) -> None:
        logger.warning("stream %s: reconnected to NATS", self.stream)

    # -- writing --------------------------------------------------------------------------

    def append(self, records: Sequence[tuple[int, bytes]]) -> None:
        self._check_usable()
        if not records:
            return
        expected, size = self._last_seq + 1, 0
        for seq, payload in records:
            if seq != expected:
                raise JournalSequenceError(
                    f"stream {self.stream}: seq {seq} where {expected} was due;"
                    " nothing of the batch written"
                )
            if len(payload) > RECORD_BYTES_MAX:
                raise RecordTooLargeError(
                    f"stream {self.stream}: record {seq} is {len(payload)} bytes,"
                    f" over {RECORD_BYTES_MAX}"
                )
            size += len(payload)
            expected += 1
        if len(self._pending) + len(records) > PUBLISH_PENDING_MAX:
            raise BatchTooLargeError(
                f"stream {self.stream}: {len(records)} more records would leave over"
                f" {PUBLISH_PENDING_MAX} unsynced; sync first or send smaller batches"
            )
        if self._unsynced_bytes + size > UNSYNCED_BYTES_MAX:
            raise BatchTooLargeError(
                f"stream {self.stream}: {size} more bytes would leave over {UNSYNCED_BYTES_MAX}"
                " unsynced; sync first or send smaller batches"
            )
        try:
            self._loop.run(_unavailable_on_nats_error(self._publish(records), self.stream))
        except BaseException as error:
            self._failure = error
            raise
        self._unsynced_bytes += size
        self._last_seq = expected - 1

    async def _publish(self, records: Sequence[tuple[int, bytes]]) -> None:
        for seq, payload in records:
            self._pending.append(_Pending(seq, payload, await self._publish_one(seq, payload)))

    async def _publish_one(self, seq: int, payload: bytes) -> "asyncio.Future[int]":
        headers = {SEQ_HEADER: str(seq - 1), MSG_ID_HEADER: f"{self._writer_id}:{seq}"}
        token = str(next(self._attempts))
        ack: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._acks[token] = ack
        await self._nc.publish(
            self.subject, payload, reply=f"{self._reply_prefix}.{token}", headers=headers
        )
        return ack

    async def _on_ack(self, message: Msg) -> None:
        """Resolve the attempt this reply answers: its stream seq, `_Refused` or `_Lost`."""
        ack = self._acks.pop(message.subject.rpartition(".")[2], None)
        if ack is None or ack.done():  # a superseded attempt: its record was published again
            return
        if message.headers and message.headers.get(STATUS_HEADER) == "503":
            ack.set_exception(_Lost())
            return
        try:
            reply = json.loads(message.data)
        except ValueError:
            ack.set_exception(_Refused(0, 0, f"a reply that is not JSON: {message.data[:80]!r}"))
            return
        error = reply.get("error")
        if error is not None:
            ack.set_exception(
                _Refused(
                    error.get("code", 0), error.get("err_code", 0), error.get("description", "")
                )
            )
        else:
            ack.set_result(int(reply["seq"]))

    def sync(self) -> None:
        self._check_usable()
        if not self._pending:
            return
        try:
            self._loop.run(_unavailable_on_nats_error(self._sync(), self.stream))
        except BaseException as error:
            self._failure = error
            raise
        self._unsynced_bytes = 0

    async def _sync(self) -> None:
        """Wait for each pending ack in order; republish what is unacknowledged on a timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SYNC_TIMEOUT_S
        while self._pending:
            pending = self._pending[0]
            try:
                if pending.ack.done():  # the usual case once the first ack is in: no timer
                    stored_seq = pending.ack.result()
                else:
                    stored_seq = await asyncio.wait_for(asyncio.shield(pending.ack), ACK_TIMEOUT_S)
            except (TimeoutError, _Lost, _Refused) as lost:
                if isinstance(lost, _Refused) and lost.code != 503:  # 503: no leader yet
                    raise self._refusal(pending.seq, lost) from None
                if loop.time() > deadline:
                    raise JournalUnavailable(
                        f"stream {self.stream}: record {pending.seq} not acknowledged within"
                        f" {SYNC_TIMEOUT_S}s ({lost!r}); the journal's end is unknown: reopen it"
                    ) from None
                logger.warning(
                    "stream %s: republishing from seq %d (%r)", self.stream, pending.seq, lost
                )
                if not isinstance(lost, TimeoutError):  # refused at once: give the election time
                    await asyncio.sleep(REPUBLISH_PAUSE_S)
                await self._republish_while_reconnecting()
                continue
            if stored_seq != pending.seq:  # impossible with the expected-last-sequence header
                raise JournalConflict(
                    f"stream {self.stream}: record {pending.seq} stored as seq {stored_seq}"
                )
            self._pending.pop(0)
            self._durable_seq = pending.seq
        self._acks.clear()  # replies to superseded attempts still on their way are dropped

    def _refusal(self, seq: int, refused: _Refused) -> JournalError:
        if refused.err_code == ERR_WRONG_LAST_SEQUENCE:
            return JournalConflict(
                f"stream {self.stream}: seq {seq} refused, another writer appended"
                f" ({refused.description}); this journal must not write"
            )
        return JournalError(f"stream {self.stream}: seq {seq} refused: {refused}")

    async def _republish(self) -> None:
        """Publish every unacknowledged record again, in order, with the same ids (deduped).
        A record keeps its earlier attempt until the new one is out, so a publish that raises
        leaves every record pending with a live attempt."""
        for pending in self._pending:
            ack = await self._publish_one(pending.seq, pending.payload)
            _let_go(pending.ack)
            pending.ack = ack

    async def _republish_while_reconnecting(self) -> None:
        """`_republish`, except that a connection still reconnecting (its publish buffer full)
        is waited for: the records stay pending and the next timeout republishes them."""
        try:
            await self._republish()
        except (nats.errors.OutboundBufferLimitError, nats.errors.ConnectionReconnectingError):
            if self._nc.is_closed:  # nats-py gave up reconnecting: nothing more will arrive
                raise
            logger.warning("stream %s: NATS is reconnecting; waiting to republish", self.stream)
            await asyncio.sleep(REPUBLISH_PAUSE_S)

    def commit(self, records: Sequence[tuple[int, bytes]]) -> None:
        self.append(records)
        self.sync()

    def commit_commands(self, batch: Sequence[Sequenced], encode_into: EncodeInto) -> None:
        self.commit(encoded_records(batch, encode_into))

    # -- reading --------------------------------------------------------------------------

    def replay(self, after_seq: int = 0) -> Iterator[tuple[int, bytes]]:
        self._check_usable()
        if after_seq < 0:
            raise ValueError(f"after_seq {after_seq} is negative")
        # Captured now: records acknowledged while the replay runs are not part of it.
        last_seq = self._durable_seq
        if after_seq >= last_seq:
            return iter(())
        return self._replay(after_seq, last_seq)

    def _replay(self, after_seq: int, last_seq: int) -> Iterator[tuple[int, bytes]]:
        subscription = self._loop.run(self._subscribe(after_seq + 1))
        try:
            expected = after_seq + 1
            while expected <= last_seq:
                batch = self._loop.run(self._fetch(subscription, last_seq - expected + 1))
                for seq, payload in batch:
                    if seq != expected:
                        raise JournalError(
                            f"stream {self.stream}: seq {seq} where {expected} was due"
                        )
                    yield seq, payload
                    expected += 1
                    if expected > last_seq:
                        break
        finally:
            if not self._loop.loop.is_closed():
                self._loop.run(_unsubscribe(subscription))

    async def _subscribe(self, start_seq: int) -> JetStreamContext.PullSubscription:
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start_seq,
            ack_policy=AckPolicy.NONE,  # a read, not a work queue: nothing to acknowledge
            mem_storage=True,
            inactive_threshold=60.0,  # the server drops it if this process dies mid-replay
        )
        return await retry_unavailable(  # a consumer needs the meta leader: maybe re-elected
            lambda: self._js.pull_subscribe(
                self.subject, durable=None, stream=self.stream, config=config
            )
        )

    async def _fetch(
        self, subscription: JetStreamContext.PullSubscription, wanted: int
    ) -> list[tuple[int, bytes]]:
        try:
            messages = await subscription.fetch(min(wanted, REPLAY_BATCH), REQUEST_TIMEOUT_S)
        except nats.errors.TimeoutError:
            raise JournalUnavailable(
                f"stream {self.stream}: no records within {REQUEST_TIMEOUT_S}s during replay"
            ) from None
        return [(message.metadata.sequence.stream, message.data) for message in messages]

    def last_seq(self) -> int:
        return self._last_seq

    def record(self, seq: int) -> bytes:
        """The stream's record `seq`, read by one message get on the journal's connection (a
        recovery checking its snapshot against the stream: `venue serve --nats`); nats-py's
        error as it comes (a record not there, JetStream not answering)."""
        self._check_usable()
        message = self._loop.run(self._js.get_msg(self.stream, seq))
        return bytes(message.data or b"")

    def close(self) -> None:
        if self._closed:
            return
        try:
            if self._failure is None:
                self.sync()
        finally:
            self._closed = True
            try:
                self._loop.run(close_connection(self._nc))
            finally:
                self._loop.stop()

    def _check_usable(self) -> None:
        if self._closed:
            raise JournalError(f"stream {self.stream}: the journal is closed")
        if self._failure is not None:
            raise JournalError(
                f"stream {self.stream}: a failure ({self._failure!r}) left the journal's end"
                " unknown; reopen it"
            )


async def connect(servers: list[str], name: str, **options: Any) -> Client:
    """A connection to `servers` that tries `RECONNECT_ATTEMPTS` times per server, 0.2 s
    apart, at the first connect too (a node killed has two others to go to at once; none
    answering for ~5 s is the cluster gone, or never there: `JournalUnavailable`), and as
    often at each later reconnect. `options` go to nats-py (buffer size, callbacks)."""
    try:
        return await nats.connect(
            servers,
            connect_timeout=CONNECT_TIMEOUT_S,
            allow_reconnect=True,
            max_reconnect_attempts=RECONNECT_ATTEMPTS,
            reconnect_time_wait=RECONNECT_WAIT_S,
            error_cb=_log_error,
            name=name,
            **options,
        )
    except Exception as error:  # nats-py raises several kinds for "nobody answered"
        raise JournalUnavailable(f"cannot reach NATS at {shown(servers)}: {error!r}") from error


async def delete_if_empty(servers: str | Sequence[str], stream: str = STREAM_DEFAULT) -> bool:
    """Delete `stream` if it holds no message (never one written to): a start refused after
    its journal created the stream (`JetStreamJournal.created`) gives it back, so that NATS
    is left as the start found it. Called by the lease's holder, so nobody else appends
    meanwhile. True when deleted; `JournalUnavailable` when NATS did not answer."""
    nc = await connect(server_list(servers), "venue-give-back")
    try:
        js = nc.jetstream(timeout=REQUEST_TIMEOUT_S)
        try:
            info = await retry_unavailable(lambda: js.stream_info(stream), REQUEST_TIMEOUT_S)
        except nats.js.errors.NotFoundError:
            return False
        if info.state.messages or info.state.last_seq:
            return False  # written to: a venue's, whatever refused this start
        return bool(await retry_unavailable(lambda: js.delete_stream(stream), REQUEST_TIMEOUT_S))
    finally:
        await close_connection(nc)


def cluster_replicas(nc: Client) -> int:
    """R for a new stream: a server in a cluster tells its client the others' URLs (gossip),
    so one seed URL of a 3-node cluster still shows three servers; a lone node shows one."""
    return CLUSTER_REPLICAS if len(nc.servers) > 1 else 1


def shown(servers: str | Sequence[str]) -> str:
    """NATS server URLs as a line or a message shows them: a password in one
    (`nats://user:password@host:4222`, which nats-py logs on with) as `***`, and a token
    (`nats://token@host:4222`: nats-py sends a user with no password as the auth token) as
    `***@host`, since stdout and the log are a supervisor's, kept and read by more people than
    the venue's config."""
    listed = servers.split(",") if isinstance(servers, str) else list(servers)
    return ",".join(_without_password(url.strip()) for url in listed)


def _without_password(url: str) -> str:
    # The credentials are all before the URL's last "@", found by text alone: `urlsplit`
    # ends the host at the first "/", "?" or "#", so a password holding one (a base64 one
    # pasted unencoded) was shown whole (session 32's re-review). A URL with no scheme is
    # nats://, as nats-py reads it. A user is shown only when plainly one: before a ":" and
    # with no URL delimiter in it; all else before the "@" is hidden.
    scheme, separator, rest = url.partition("://")
    if not separator:
        rest = url
    userinfo, at, host = rest.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    plain_user = colon and not any(delimiter in user for delimiter in "/?#")
    hidden = f"{user}:***@{host}" if plain_user else f"***@{host}"
    return f"{scheme}://{hidden}" if separator else hidden


def server_list(servers: str | Sequence[str]) -> list[str]:
    listed = servers.split(",") if isinstance(servers, str) else list(servers)
    urls = [url.strip() for url in listed if url.strip()]
    if not urls:
        raise ValueError("no NATS server URL given")
    return urls


async def retry_unavailable(
    call: Callable[[], Awaitable[T]], timeout_s: float = SYNC_TIMEOUT_S
) -> T:
    """A JetStream API call, retried while the cluster has no (meta) leader: just started, or
    electing one after a node died. `JournalUnavailable` after `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            return await call()
        except (nats.js.errors.ServiceUnavailableError, nats.errors.TimeoutError) as error:
            if loop.time() > deadline:
                raise JournalUnavailable(
                    f"JetStream did not answer within {timeout_s}s: {error!r}"
                ) from None
            await asyncio.sleep(REPUBLISH_PAUSE_S)


async def _unavailable_on_nats_error(work: Coroutine[Any, Any, None], stream: str) -> None:
    """Run `work`; a connection-level nats-py error becomes `JournalUnavailable`."""
    try:
        await work
    except nats.errors.Error as error:  # the connection is closed, or its buffer is full
        raise JournalUnavailable(f"stream {stream}: {error!r}") from error


async def close_connection(nc: Client) -> None:
    """Close `nc`; a connection already lost (the server gone) has nothing left to flush."""
    try:
        await nc.close()
    except (nats.errors.Error, OSError) as error:
        logger.debug("NATS connection closed uncleanly: %r", error)


async def _unsubscribe(subscription: JetStreamContext.PullSubscription) -> None:
    try:
        await subscription.unsubscribe()
    except nats.errors.Error as error:  # the ephemeral consumer times out on the server anyway
        logger.debug("replay consumer not removed: %r", error)


def _let_go(ack: "asyncio.Future[int]") -> None:
    """Drop a superseded attempt: cancel it, or mark its error seen (no 'never retrieved')."""
    if ack.done():
        if not ack.cancelled():
            ack.exception()
    else:
        ack.cancel()


async def _log_error(error: Exception) -> None:
    # Each failed (re)connect attempt lands here: one line per attempt is noise at INFO; the
    # disconnect and the reconnect themselves are logged by the callbacks below.
    level = (
        logging.DEBUG if isinstance(error, OSError | nats.errors.UnexpectedEOF) else logging.WARNING
    )
    logger.log(level, "NATS: %r", error)
