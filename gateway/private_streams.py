"""Private streams: each account's sequenced pushes, `since_seq` replay, cod and dms.

Owns the per-account `account` stream: exec reports get their seq as each command
executes (so an account snapshot taken then is exact) and reach subscribers, and a
history for `since_seq` replay, once durable (bounded per account and, counted at every
`PRIVATE_HISTORY_CHECK_COMMANDS`th command seq, across accounts: `bound_histories`); account
subscriptions (snapshot or replay, then live); the closed-order history;
cancel-on-disconnect; the `dms.triggered` notice of a dead-man's switch that fired (the
switches are the venue's state: `ArmDeadMan`), and the switches an older venue left in
`DEAD_MAN_FILE`, armed through the venue at start.
"""

import bisect
import logging
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import chain, count, islice, repeat
from operator import itemgetter
from pathlib import Path
from typing import Any

import msgspec

from core.bus import Bus, ReadSide
from core.sequencer import Executed
from core.snapshot_entries import HISTORY_IMAGE, contiguous_seqs
from core.snapshots import entries_as, fsync_directory
from core.venue_core import load_json, now_us, save_json
from engine.commands import ArmDeadMan, CancelOrder
from engine.enums import CancelReason
from engine.events import DeadManTriggered
from engine.snapshot import Later
from engine.units import format_units
from engine.venue import DEAD_MAN_TIMEOUT_MS_MAX
from gateway import limits, wire
from gateway.order_history import OrderHistory
from gateway.reports import ExecReporter, Push, anonymized
from gateway.sessions import Session, Sessions

log = logging.getLogger("venue")

# Where a venue before the switch was venue state (session 15) kept the armed ones, account
# -> deadline (µs): read at start (`arm_switches_of_dead_man_file`), then removed; never written.
DEAD_MAN_FILE = "dead_man.json"
DMS_TRIGGERED = {"ch": "session", "type": "dms.triggered"}
# [first seq, push format] per start: which `PUSH_FORMAT` first sent each command's pushes
PUSH_FORMATS_FILE = "push_formats.json"
# The pushes a command makes, in number and order (the account seqs depend on them). 1: every
# balance change pushed; 2: one balance push per account and asset per command. Bump it with
# any change of either, so a recovery knows which rebuilt seqs differ from those first sent.
PUSH_FORMAT = 2
PUSH_FORMAT_BEFORE_RECORDS = 1  # the format of every command before the file existed
PUSH_FORMAT_MAX = 2**31  # above any format: a bisect key for "any format"
# `wire.encode`'s encoder settings (msgspec's defaults), called without its wrapper: a Python
# call saved per push (tests/gateway/test_private_wire.py pins the bytes)
_encode = msgspec.json.Encoder().encode
_ACCOUNT_OF = itemgetter(0)  # of a report: (account, push)
# In an image's private part: its histories were bounded as they were kept (session 33 on),
# so a restore keeps them as they are (what the live ones held between two checks, cut at the
# next as they were live, however far one command's pushes took them past the bound).
HISTORIES_BOUNDED = "histories_bounded"


@dataclass(eq=False, slots=True)
class PrivateStream:
    """An account's private events: per-account seq, bounded history for since_seq replay.

    Seqs are given when a command executes (`assigned`); an event joins the history and
    reaches subscribers when its command is durable (`seq`: the last one released). The
    history holds the pushes' bytes alone: their seqs run without a gap up to `seq` (each push
    takes its stream's next seq, and they are released in that order), so each push's seq is
    its place counted back from `seq`, not a tuple kept per push.
    """

    assigned: int = 0
    seq: int = 0  # the last seq released: the history's newest (or a snapshot's)
    history: deque[bytes] = field(
        default_factory=lambda: deque(maxlen=limits.PRIVATE_HISTORY_EVENTS_MAX)
    )
    sessions: set[Session] = field(default_factory=set)
    # A `since_seq` at or below it gets a snapshot: a recovery rebuilt the events up to it
    # under another push format, so their seqs differ from those a client saw first.
    resume_floor: int = 0
    # The seqs the subscriptions waiting for their barrier continue from (`hold`): a
    # replay's since_seq, a snapshot's seq (since session 34: what follows it is sent at
    # the join). Until they are sent, what the bounds drop above the lowest goes to
    # `spared`, so none is sent with a gap.
    replays_waiting: list[int] = field(default_factory=list)
    # (seq, bytes) of the events the bounds dropped above a waiting replay's since_seq, in
    # seq order: beside the history, which stays what a gateway holding nothing keeps (the
    # cuts' arithmetic never sees a hold: every gateway, and a recovery, cut alike).
    spared: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def oldest_seq(self) -> int:
        """The seq of the history's oldest push (`seq` + 1 while the history is empty)."""
        return self.seq - len(self.history) + 1

    def entries(self) -> Iterator[tuple[int, bytes]]:
        """The history as (seq, bytes), oldest first."""
        return enumerate(self.history, self.oldest_seq)

    def entries_newest_first(self) -> Iterator[tuple[int, bytes]]:
        """The history as (seq, bytes), newest first."""
        return zip(count(self.seq, -1), reversed(self.history))

    def after(self, seq: int) -> Iterator[bytes]:
        """The history's pushes with a seq above `seq`, oldest first."""
        return islice(self.history, max(0, seq - self.oldest_seq + 1), None)

    def replay(self, since_seq: int) -> Iterator[bytes]:
        """A held replay's pushes: those spared above `since_seq`, then the history's."""
        yield from (payload for seq, payload in self.spared if seq > since_seq)
        yield from self.after(since_seq)

    def hold(self, since_seq: int) -> None:
        """The events after `since_seq` are owed (a replay, or what follows a snapshot)
        once the subscription's barrier is released: till then
        (`release`) the events the bounds drop above it are kept in `spared`."""
        self.replays_waiting.append(since_seq)

    def release(self, since_seq: int) -> None:
        """The replay after `since_seq` was sent (or its session is gone): the last release
        lets the spared events go."""
        self.replays_waiting.remove(since_seq)
        if not self.replays_waiting:
            self.spared.clear()

    def spare_before_extend(self, payloads: list[bytes]) -> None:
        """A held stream about to take `payloads`: the oldest events the per-account bound
        will push out (the history's, then the new ones' beyond it) are spared first."""
        over = len(self.history) + len(payloads) - (self.history.maxlen or 0)
        if over > 0:
            joining = enumerate(payloads, self.seq + 1)
            self.spare(islice(chain(self.entries(), joining), over))

    def spare(self, dropped: Iterable[tuple[int, bytes]]) -> None:
        """Of events (seq, bytes) about to be dropped, oldest first, keep those a waiting
        replay is owed (above the lowest since_seq)."""
        lowest = min(self.replays_waiting)
        self.spared.extend(entry for entry in dropped if entry[0] > lowest)


@dataclass(eq=False)
class Notice:
    """A session push to the accounts' connections about the commands that carry it as their
    origin: sent once they are all durable (the sequencer releases them in one batch), before
    their own pushes."""

    accounts: tuple[int, ...]
    message: dict[str, Any]
    sent: bool = False


@dataclass(frozen=True)
class KeptFiles:
    """What the private streams keep in the data directory, as read at start."""

    dead_man_deadlines: dict[int, int]  # `DEAD_MAN_FILE`'s switches, account -> deadline µs
    push_formats: list[tuple[int, int]]  # `PUSH_FORMATS_FILE`'s [first seq, push format]


def _history_image(stream: PrivateStream) -> tuple[int, list[tuple[int, bytes]]]:
    """A stream's part of a snapshot: its seq and its history as (seq, bytes), oldest first."""
    return stream.seq, list(stream.entries())


def _history_later(stream: PrivateStream) -> Later:
    """`_history_image`, made when encoded: the history's pushes copied now (one C call; the
    deque is appended to and cut while trading goes on, its bytes never change)."""
    return Later(partial(_numbered, stream.seq, list(stream.history)))


def _numbered(seq: int, payloads: list[bytes]) -> tuple[int, list[tuple[int, bytes]]]:
    return seq, list(enumerate(payloads, seq - len(payloads) + 1))


def read_kept_files(data_dir: Path) -> KeptFiles:
    """Read the private streams' files in `data_dir` (none yet: empty). A damaged file, or a
    symbolic link to nothing, refuses the start in one line: the server reads them before its
    core locks the directory, so such a refusal leaves the directory as it was."""
    deadlines = load_json(data_dir / DEAD_MAN_FILE, dict[int, int], {})
    return KeptFiles(deadlines, load_json(data_dir / PUSH_FORMATS_FILE, list[tuple[int, int]], []))


@dataclass(eq=False)
class AccountSubscription:
    """A subscription to the private stream, waiting for what it saw to be durable."""

    session: Session
    account: int
    # The seq it follows on from, held on the stream (`hold`) till it joins: the client's
    # since_seq for a replay, the snapshot's seq for a snapshot (a cluster gateway's commands
    # in flight are not in its snapshot: their events, released before it joins, follow it).
    after_seq: int
    snapshot: bytes | None  # None: replay the history after `after_seq` instead
    # The account's stream it holds `after_seq` on: the join's, though `forget` dropped it
    stream: PrivateStream


class PrivateStreams:
    """Every account's private stream, and the switches that cancel an account's orders."""

    def __init__(
        self, bus: Bus, connections: Sessions, data_dir: Path, files: "KeptFiles | None" = None
    ) -> None:
        """`files`: what `read_kept_files(data_dir)` read (read now when not given)."""
        self.bus = bus
        self.reads = bus.reads
        self.connections = connections
        self.data_dir = data_dir
        self.streams: dict[int, PrivateStream] = {}
        self.reporter = ExecReporter()
        self.order_history = OrderHistory()  # closed orders, for order.status and orders.history
        self.histories_trimmed = 0  # times `bound_histories` cut: the first is logged at info
        # session id -> its latest account subscription not yet joined: one it replaced, or
        # one an unsubscribe undid, joins nothing (at most one per session: dropped at `leave`)
        self.subscribing: dict[int, AccountSubscription] = {}
        # At least the events the histories hold across accounts: each push released adds
        # one, a cut takes its own off; what an account's bound drops is not taken off (a
        # count per push would cost the release), so `bound_histories` counts past it.
        self.events_kept_most = 0
        files = files if files is not None else read_kept_files(data_dir)
        self.dead_man_file_deadlines = files.dead_man_deadlines
        self.push_formats = files.push_formats

    # ----------------------------------------------------------------- the stream

    def assign(self, executed: Executed, quote_set: str | None, epoch: int) -> None:
        """Right after a command executes: its private pushes get their seqs, in execution
        order, so an account snapshot taken now is exact. `epoch`: the pushes' (the bus's
        `epoch_of` the command; the caller knows a live request's without that call)."""
        reporter = self.reporter
        # positional: a keyword call matches its names per call
        reports = reporter.reports(executed.events, executed.command, quote_set, epoch)
        # on replay too, so the history is rebuilt; only the reports that open or close orders
        if reporter.order_reports:  # most amends do neither: no call
            self.order_history.record(reporter.order_reports, executed.command)
        if reports:
            sequence(reports, self.streams, executed.pushes)

    def assign_pair(self, executed: Executed, epoch: int) -> None:
        """`assign` of an `AmendPair`: the pushes of its bid's amend, then its ask's, each
        made from its own events (`Executed.split`) as `assign` of each amend makes them (a
        balance is pushed in its last change's place within its own amend); the bid's are
        the first `bid_pushes` entries of `pushes` (`Dispatcher._requote_answer`). All for one
        account (a quote's amends, which never trade): each amend's `sequence`d here, without
        its call and table."""
        reporter, pushes = self.reporter, executed.pushes
        bid_reports, ask_reports = reporter.pair_reports(executed.events, executed.split, epoch)
        if reporter.order_reports:  # most amends neither open nor close an order
            self.order_history.record(reporter.order_reports)
        if len(set(map(_ACCOUNT_OF, bid_reports + ask_reports))) != 1:  # (an amend that traded)
            if bid_reports:
                sequence(bid_reports, self.streams, pushes)
            executed.bid_pushes = len(pushes)
            if ask_reports:
                sequence(ask_reports, self.streams, pushes)
            return
        account = (bid_reports or ask_reports)[0][0]
        try:  # costs nothing unless raised: a subscript, not `get` and a test
            stream = self.streams[account]
        except KeyError:  # the account's first push
            stream = self.streams[account] = PrivateStream()
        assigned = stream.assigned
        if bid_reports:
            payloads = []
            for _, push in bid_reports:
                assigned += 1
                push.seq = assigned
                payloads.append(_encode(push))
            pushes.append((stream, payloads))
            executed.bid_pushes = 1
        if ask_reports:
            payloads = []
            for _, push in ask_reports:
                assigned += 1
                push.seq = assigned
                payloads.append(_encode(push))
            pushes.append((stream, payloads))
        stream.assigned = assigned

    def publish_pushes(self, pushes: list[tuple[PrivateStream, list[bytes]]]) -> None:
        """`publish` of some of a command's pushes (an `AmendPair`'s bid's or ask's)."""
        for stream, payloads in pushes:
            self.publish_one(stream, payloads)

    def publish_one(self, stream: PrivateStream, payloads: list[bytes]) -> None:
        """`publish` of one account's pushes of a command (a requote's bid's, answered
        before its ask's are published: `Dispatcher._requote_answer`)."""
        if stream.replays_waiting:  # (a subscription waiting for its barrier: rare)
            stream.spare_before_extend(payloads)
        stream.history.extend(payloads)
        stream.seq += len(payloads)
        self.events_kept_most += len(payloads)
        if stream.sessions:
            self.connections.fan_out_all(stream.sessions, payloads)

    def publish(self, executed: Executed) -> None:
        """The command is durable: each account's pushes join its history and go to its
        sessions in one hand-off (`fan_out_all`), the accounts in the order of their first
        pushes (so the sessions are queued, and written, as before). At every
        `limits.PRIVATE_HISTORY_CHECK_COMMANDS`th command seq, its pushes joined, the
        histories are bounded: live, replayed or after a snapshot at the same commands, so
        what is kept is a function of the stream alone (every gateway of a cluster, and a
        recovery, keeps the same: a replay waiting for its barrier moves no cut, what it is
        owed of the dropped events is `spared` beside the history)."""
        added = 0
        # `publish_one`'s steps, inline: every command passes here (no call per account)
        for stream, payloads in executed.pushes:  # as `sequence` gathered them, per account
            if stream.replays_waiting:  # (a subscription waiting for its barrier: rare)
                stream.spare_before_extend(payloads)
            stream.history.extend(payloads)
            pushed = len(payloads)
            stream.seq += pushed
            added += pushed
            if stream.sessions:
                self.connections.fan_out_all(stream.sessions, payloads)
        self.events_kept_most += added
        if not executed.seq % limits.PRIVATE_HISTORY_CHECK_COMMANDS:
            self.bound_histories()

    def replayed(self, executed: Executed) -> None:
        """A command replayed from the journal: its pushes join the history as `publish`
        does. Pushes first sent under another push format were numbered otherwise then: a
        client's `since_seq` up to them can only be answered with a snapshot."""
        self.publish(executed)
        if executed.pushes and self.format_of(executed.seq) != PUSH_FORMAT:
            for stream, _ in executed.pushes:
                stream.resume_floor = stream.seq  # its last push's, just released

    def bound_histories(self) -> int:
        """Past `limits.PRIVATE_HISTORY_EVENTS_TOTAL_MAX` events across the
        accounts, cut the longest histories first, their oldest events, to one common depth,
        so that they hold `limits.PRIVATE_HISTORY_EVENTS_TRIMMED` in all; the number of
        events dropped. Most checks read one running count (`events_kept_most`); the
        histories are counted only past it, and sorted only to be cut."""
        bound = limits.PRIVATE_HISTORY_EVENTS_TOTAL_MAX
        if self.events_kept_most <= bound:
            return 0
        streams = list(self.streams.values())
        lengths = [len(stream.history) for stream in streams]
        kept = self.events_kept_most = sum(lengths)  # an account's bound dropped uncounted
        if kept <= bound:
            return 0
        depth = common_depth_of(lengths, limits.PRIVATE_HISTORY_EVENTS_TRIMMED)
        dropped = 0
        for stream, length in zip(streams, lengths, strict=True):
            if length > depth:
                cut = length - depth
                if stream.replays_waiting:  # (rare: no call for the others)
                    stream.spare(list(islice(stream.entries(), cut)))
                history = stream.history
                if cut == 1:  # (histories alike, each cut by one: no loop)
                    history.popleft()
                elif cut <= depth:  # `seq` stays: the oldest kept is counted back from it
                    for _ in repeat(None, cut):
                        history.popleft()
                else:  # most of it: the kept copied in one C call, not a pop per event
                    stream.history = deque(islice(history, cut, None), history.maxlen)
                dropped += cut
        self.events_kept_most = kept - dropped
        # at info once: a busy venue at its bound cuts every ~50,000 events, seconds apart
        log.log(
            logging.DEBUG if self.histories_trimmed else logging.INFO,
            "private histories trimmed",
            extra={"events_dropped": dropped, "depth": depth, "accounts": len(lengths)},
        )
        self.histories_trimmed += 1
        return dropped

    def format_of(self, seq: int) -> int:
        """The push format of the start that first executed command `seq`."""
        index = bisect.bisect_right(self.push_formats, (seq, PUSH_FORMAT_MAX)) - 1
        return self.push_formats[index][1] if index >= 0 else PUSH_FORMAT_BEFORE_RECORDS

    def record_push_format(self, first_seq: int) -> None:
        """Durably note that commands from `first_seq` on are pushed in this `PUSH_FORMAT`
        (after recovery, before any command of this start)."""
        formats = self.push_formats
        if formats and formats[-1][0] == first_seq:
            formats.pop()  # the last start executed nothing: it is replaced, not kept
        if not formats or formats[-1][1] != PUSH_FORMAT:
            formats.append((first_seq, PUSH_FORMAT))
            save_json(self.data_dir / PUSH_FORMATS_FILE, formats)

    def subscription(
        self, session: Session, account: int, since_seq: int | None
    ) -> tuple[int, AccountSubscription]:
        """The stream's seq now and the subscription that joins it once that is durable:
        a snapshot taken now, unless `since_seq` can be replayed from the history. The
        latest subscription of a session wins: one it follows already, or one still waiting
        for its barrier, is replaced (its replay would repeat this one's events)."""
        self.leave(session)  # live again once this one joins: its replay or snapshot first
        stream = self.streams.setdefault(account, PrivateStream())
        seq = stream.assigned  # every event up to here is in the state read below
        snapshot = None
        lowest = stream.oldest_seq - 1  # the lowest since_seq the history can answer with a replay
        if stream.resume_floor:  # rebuilt under another push format up to it: not those
            lowest = max(lowest, stream.resume_floor + 1)
        if since_seq is not None and lowest <= since_seq <= seq:
            after_seq = since_seq
        else:
            after_seq = seq
            snapshot = wire.encode(
                {
                    "ch": "account",
                    "type": "snapshot",
                    "epoch": self.bus.epoch,
                    "seq": seq,
                    "orders": [order_view(self.reads, o) for o in self.reads.open_orders(account)],
                    "balances": balance_rows(self.reads, account),
                }
            )
        stream.hold(after_seq)  # sent when `join`ed: what the bounds drop is spared till then
        subscription = self.subscribing[session.id] = AccountSubscription(
            session, account, after_seq, snapshot, stream
        )
        return seq, subscription

    def join(self, joining: AccountSubscription) -> None:
        """Everything up to the snapshot's seq is durable now: send it (or the missed
        events), then the events released since it was taken (none on a local bus; on a
        cluster's, those of the commands that were in flight), and from here on every new
        private event of the account. One `forget` dropped (its stream forgotten) is gone."""
        session = joining.session
        stream = joining.stream
        latest = self.subscribing.get(session.id) is joining
        if latest:
            del self.subscribing[session.id]
        # gone, unsubscribed or subscribed again before its subscription took effect
        gone = not latest or session.id not in self.connections.sessions
        if not gone:
            if joining.snapshot is not None:
                self.connections.send(session, joining.snapshot)
            for payload in stream.replay(joining.after_seq):
                self.connections.send(session, payload)
        stream.release(joining.after_seq)  # held since `subscription`, whatever came between
        if gone:
            return
        session.account_stream = True
        stream.sessions.add(session)

    def leave(self, session: Session) -> None:
        """The session no longer follows its account's stream, nor will by a subscription
        still waiting for its barrier."""
        self.subscribing.pop(session.id, None)
        if session.account is not None:
            private = self.streams.get(session.account)
            if private is not None:
                private.sessions.discard(session)

    def fills(
        self,
        account: int,
        since_seq: int,
        limit: int,
        before_seq: int | None = None,
        newest_first: bool = False,
    ) -> list[Any]:
        """At most `limit` of the account's fills still in its history, with a seq above
        `since_seq` and below `before_seq` (None: no bound), oldest first or newest first."""
        stream = self.streams.get(account) or PrivateStream()
        entries = stream.entries_newest_first() if newest_first else stream.entries()
        below = stream.seq + 1 if before_seq is None else before_seq
        fills: list[Any] = []
        for seq, payload in entries:
            if since_seq < seq < below and b'"exec_type":"trade"' in payload:
                fills.append(msgspec.json.decode(payload))
                if len(fills) == limit:
                    break
        return fills

    # ----------------------------------------------------------------- snapshots

    def image(self, later: bool = False) -> dict[str, Any]:
        """The private streams' part of a snapshot. `later`: each history as a `Later` part
        (encoded with `engine.snapshot.made` only: the cores' snapshots), its pushes copied
        by one C call, numbered by the writer thread, off the event loop."""
        history = _history_later if later else _history_image
        return {
            "last_exec_id": self.reporter.last_exec_id,
            "private": {str(account): history(stream) for account, stream in self.streams.items()},
            "order_history": self.order_history.image(),
            HISTORIES_BOUNDED: True,
            "resume_floors": {
                str(account): stream.resume_floor
                for account, stream in self.streams.items()
                if stream.resume_floor
            },
        }

    def restore(self, image: dict[str, Any]) -> None:
        """Take a snapshot's part back (the venue is restored already)."""
        self.reporter.last_exec_id = image["last_exec_id"]
        markets = self.reads.markets  # the reporter learns the specs after this
        for order in self.reads.orders.values():  # before the journal tail trades them
            self.reporter.adopt(order, order.quote_set, markets[order.symbol].spec)
        for account, (seq, history) in entries_as(image["private"], HISTORY_IMAGE):
            stream = self.streams.setdefault(int(account), PrivateStream())
            assert contiguous_seqs(seq, history), f"{account}: {[s for s, _ in history]}"
            stream.seq = stream.assigned = seq
            stream.history.extend(anonymized(int(account), p) for _, p in history)
            self.events_kept_most += len(history)
        self.order_history.restore(image.get("order_history"))
        for account, floor in image.get("resume_floors", {}).items():
            self.streams.setdefault(int(account), PrivateStream()).resume_floor = floor
        # A snapshot taken between two checks holds what the live histories held then: kept
        # as it is, the replay of the tail cuts where they were cut. One written before the
        # bound (session 33) may hold far more: cut now.
        if not image.get(HISTORIES_BOUNDED):
            self.bound_histories()

    def forget(self) -> None:
        """Forget what `restore` took, perhaps part way (a cluster gateway's snapshot that
        failed to restore): the streams, their history and the order history, as at start;
        and the subscriptions waiting to join a stream forgotten (their snapshot or replay
        was of the state forgotten: each one's join sends nothing, and its session no longer
        says it follows its account, `subscriptions`). Until session 35 they
        stayed in `subscribing`, and a join looked its stream up, gone (`KeyError`). (A
        replica restores before its gateway listens, so none waits there today.)"""
        self.reporter.last_exec_id = 0
        self.reporter.orders.clear()
        self.streams.clear()
        for waiting in self.subscribing.values():  # told `subscribed`, it follows nothing now
            waiting.session.account_stream = False
        self.subscribing.clear()
        self.events_kept_most = 0  # (an overcount only recounts; but nothing is kept now)
        self.order_history.restore(None)

    # ----------------------------------------------------------------- cod and dms

    def cancel_on_disconnect(self, session: Session) -> None:
        """A closed session with cod on: cancel the orders it placed that are still open."""
        if session.cod and session.placed and session.account is not None:
            account = session.account
            notice = Notice((account,), {"ch": "session", "type": "cod.triggered"})
            for order_id in sorted(session.placed):
                command = CancelOrder(account=account, order_id=order_id, reason=CancelReason.COD)
                self.bus.submit(command, notice)

    def dead_man_notice(self, executed: Executed) -> None:
        """A command that fired dead-man's switches (the clock's tick, or an `ArmDeadMan`
        that is not this gateway's request: `Dispatcher._cancel_after_result` tells those):
        its origin (None) becomes their `dms.triggered` notice, so that it reaches the
        accounts' connections on this gateway when the command is durable, before its
        cancels' pushes. Every gateway executes it, so every gateway tells its own."""
        triggered = tuple(e.account for e in executed.events if type(e) is DeadManTriggered)
        if triggered and executed.origin is None:
            executed.origin = Notice(triggered, DMS_TRIGGERED)

    async def arm_switches_of_dead_man_file(self) -> None:
        """Arm, through the venue, the switches an older venue kept in `DEAD_MAN_FILE` that
        the venue has not armed (a start that died after arming them, before removing the
        file, armed them already); then remove the file once they came back (over NATS: once
        a core is active to sequence them). At start: before listening and before the clock
        ticks.
        A deadline that passed while the venue was down fires at the first tick (or before
        any later `ArmDeadMan`), as it did at a start before."""
        path = self.data_dir / DEAD_MAN_FILE
        if not path.exists():
            return
        armed = self.reads.venue.dead_man_deadlines
        now = now_us()
        for account, deadline_us in sorted(self.dead_man_file_deadlines.items()):
            if account in armed:
                continue
            left_ms = -(-(deadline_us - now) // 1_000)  # rounded up: never before its deadline
            timeout_ms = min(max(left_ms, 1), DEAD_MAN_TIMEOUT_MS_MAX)  # 0 would disarm
            self.bus.submit(ArmDeadMan(account=account, timeout_ms=timeout_ms), None)
        # Durable before the file goes, however long that takes (over NATS the drain gives up
        # after a bound while no core is active; the bus sends the commands again). Neither
        # half-way state would be safe: a file removed loses its switches, one kept for the
        # next start would arm again a switch that fired or was disarmed since.
        while not await self.bus.drain():
            log.warning("waiting for a core to arm the switches of dead_man.json")
        path.unlink()
        fsync_directory(self.data_dir)
        self.dead_man_file_deadlines = {}


def sequence(
    reports: list[tuple[int, Push]],
    streams: dict[int, PrivateStream],
    out: list[tuple[PrivateStream, list[bytes]]],
) -> None:
    """Each push (made with its epoch) gets its account stream's next seq and is encoded,
    gathered per account: (its stream, its pushes' bytes in seq order) appended to `out` in
    the order of the accounts' first pushes. So `publish` takes each account's pushes in
    one step (its history, its sessions), however the command interleaves the accounts."""
    account, push = reports[0]
    count = len(reports)
    if count <= 2 and (count == 1 or reports[1][0] == account):
        # A maker's amend: its report, and the balance of a bid's hold if it moved; one
        # account, so no table of accounts and no look-up per push (~17 bytecodes a command)
        try:  # costs nothing unless raised: a subscript, not `get` and a test
            stream = streams[account]
        except KeyError:  # the account's first push (not setdefault: a stream per push)
            stream = streams[account] = PrivateStream()
        seq = push.seq = stream.assigned + 1
        if count == 1:
            stream.assigned = seq
            out.append((stream, [_encode(push)]))
        else:
            last = reports[1][1]
            last.seq = stream.assigned = seq + 1
            out.append((stream, [_encode(push), _encode(last)]))
        return
    encode = _encode
    # account -> its entry in `out`: one look-up per push finds both its stream and its list
    gathered: dict[int, tuple[PrivateStream, list[bytes]]] = {}
    for account, push in reports:
        entry = gathered.get(account)
        if entry is None:  # the command's first push to the account
            try:  # costs nothing unless raised: a subscript, not `get` and a test
                stream = streams[account]
            except KeyError:  # the account's first push (not setdefault: a stream per call)
                stream = streams[account] = PrivateStream()
            entry = gathered[account] = stream, []
            out.append(entry)
        stream = entry[0]
        # a struct's store costs about twice a slot's: the epoch came built in
        stream.assigned = push.seq = stream.assigned + 1
        entry[1].append(encode(push))


def common_depth_of(lengths: list[int], budget: int) -> int:
    """`common_depth` of `lengths` in any order, sorting and visiting the longer ones alone:
    none of at most `budget // len(lengths)` events is cut (all at that depth would fit),
    so those only count in a sum (at 100,000 quiet accounts and a few busy ones, the sort
    and the loop see the busy ones)."""
    if not lengths:
        return 0
    whole = budget // len(lengths)
    longer = sorted([length for length in lengths if length > whole])
    return common_depth(longer, budget - (sum(lengths) - sum(longer))) if longer else max(lengths)


def common_depth(lengths: list[int], budget: int) -> int:
    """The largest depth d at which histories of `lengths` (ascending), each cut to its
    newest d, hold at most `budget` events in all: the short ones stay whole."""
    left = len(lengths)
    for length in lengths:
        if length * left > budget:  # this one and every longer one are cut to the same depth
            return budget // left
        budget -= length
        left -= 1
    return lengths[-1] if lengths else 0  # nothing to cut


# ----------------------------------------------------------------- views


def order_view(reads: ReadSide, order: Any) -> dict[str, Any]:
    spec = reads.markets[order.symbol].spec
    return {
        "order_id": order.order_id,
        "cl_ord_id": order.cl_ord_id,
        "symbol": order.symbol,
        "side": order.side,
        "type": order.order_type,
        "tif": order.tif,
        "price": format_units(order.price, spec.price_decimals),
        "qty": format_units(order.qty, spec.qty_decimals),
        "leaves_qty": format_units(order.leaves_qty, spec.qty_decimals),
        "cum_qty": format_units(order.cum_qty, spec.qty_decimals),
        "status": order.status,
        "tag": order.tag,
        "quote_set": order.quote_set,  # as its exec reports carry it
        "expire_at": order.expire_at_us or None,  # µs, a gtd order's; null for the others
    }


def balance_rows(reads: ReadSide, account: int) -> list[dict[str, Any]]:
    rows = []
    ledger = reads.ledger
    balances = ledger.balances
    for asset in sorted(ledger.assets):  # a few dozen assets, not every balance
        balance = balances.get((account, asset))
        if balance is None:
            continue
        scale = ledger.assets[asset].scale
        rows.append(
            {
                "asset": asset,
                "total": format_units(balance.total, scale),
                "available": format_units(balance.available, scale),
                "held": format_units(balance.held, scale),
            }
        )
    return rows
