"""API keys issued at run time: `admin.issue_key`, from the request to the key's answer, and
`admin.revoke_key`, which removes an issued key (from `api_keys.json`, recording it in
`revoked_keys.json`; on a cluster by a `KeyRevoked` record on the key stream, learnt by every
gateway) and closes its live sessions (4004).

Owns `KeyIssuer`: the keys issued at run time (`api_keys.json`, owner-only permissions; on a
cluster the key stream, `core/cluster_keys.py`, which it follows to learn every gateway's
keys), the `cl_op_id`s they were issued under, the keys revoked (no secret kept) and the
`cl_op_id`s they were issued and revoked under, the keys a cluster's stream is still storing and the
repeats waiting to learn a key issued through another gateway. Under a `cl_op_id` the
engine decides whether the id is new (`IssueKey`), so a request sent again, here or through
another gateway, is answered with the first key, secret included, and nothing is issued
twice; a revocation's id it takes among its other admin ids (`RevokeKey`) before the key
is revoked. A key is answered only once it is stored, never before. Leaves the checks before
the handler (logon, the admin scope, params) and the answers' order to the dispatcher, whose
method table calls `issue`; the keys' check at logon is `gateway.auth`'s. Bounded as the
keys are: every map is by an issued key or its id, and a repeat's wait lasts at most
`ISSUED_KEY_WAIT_S`.
"""

import asyncio
import logging
import secrets
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from core.journal import JournalError
from core.venue_core import now_us, rejection, save_json
from engine.commands import IssueKey, RevokeKey
from engine.events import KeyIssued, OperationRepeated
from engine.reasons import ErrorCode
from gateway import wire
from gateway.auth import ApiKey
from gateway.sessions import Session
from gateway.sessions import key_of as _key

if TYPE_CHECKING:
    from core.cluster_keys import SharedKeys
    from gateway.dispatch import Dispatcher, Pending

log = logging.getLogger("venue")
E = ErrorCode
REUSED = E.CL_OP_ID_REUSED

ISSUED_KEYS_FILE = "api_keys.json"  # keys issued at run time (owner-only permissions)
# The keys revoked (`KeyRevoked`, no secret; since session 31), in a file of their own: a build
# older than it reads `api_keys.json` as it did, the revoked keys already out of it.
REVOKED_KEYS_FILE = "revoked_keys.json"
# How long a repeated `admin.issue_key` waits to learn the key the first one issued through
# another gateway: it is on the key stream within milliseconds, unless that gateway stopped
# before storing it (it tries for 30 s, then exits); an answer within the SDK's 30 s.
ISSUED_KEY_WAIT_S = 20.0
# The close of every live session logged on with a key `admin.revoke_key` revoked (§11.2);
# 4003 is the shared list's heartbeat timeout, never used here but reserved.
REVOKED_CLOSE_CODE = 4004
REVOKED_CLOSE_REASON = "api key revoked"


class KeyRevoked(msgspec.Struct, frozen=True, omit_defaults=True):
    """A revoked key (`admin.revoke_key`): an entry of `revoked_keys.json`, or a cluster's key
    stream record, after the key's own. A gateway older than session 30 fails to decode it as
    a key, logs that and goes on: the key stays good there, so upgrade every gateway before
    revoking; one of session 30 ignores its `cl_op_id`."""

    revoked: str
    revoked_at_us: int
    # the revocation's `cl_op_id` (since session 31): a repeat under it, after a restart or
    # through another gateway, is answered again
    cl_op_id: str | None = None
    # the `cl_op_id` the key was issued under (since session 31's review): a revocation under
    # it is refused after a restart too, when `api_keys.json` no longer holds the key
    issued_under: str | None = None


class KeyIssuer:
    """`admin.issue_key`'s handler and the issued keys' state, answering through the
    dispatcher's connections."""

    def __init__(
        self,
        dispatcher: "Dispatcher",
        data_dir: Path,
        issued_keys: list[ApiKey],
        revocations: list[KeyRevoked],
    ) -> None:
        self.bus = dispatcher.bus
        self.reads = dispatcher.reads
        self.auth = dispatcher.auth
        self.connections = dispatcher.connections
        # the dispatcher's ways to answer; and its `stamp_us`, read when a command is built
        # (the server sets it once the dispatcher is made)
        self._reply = dispatcher._reply
        self._reply_error = dispatcher._reply_error
        self._defer_error = dispatcher._defer_error
        self._dispatcher = dispatcher
        self.data_dir = data_dir
        self.issued_keys = issued_keys
        # a cluster's gateway shares issued keys through the bus (core/cluster_keys.py)
        self.shared_keys: SharedKeys | None = getattr(dispatcher.bus, "keys", None)
        if self.shared_keys is not None:
            self.shared_keys.on_key = self._learn_key
        self._key_tasks: set[asyncio.Task[None]] = set()
        # `admin.issue_key`'s `cl_op_id`s: the keys issued under them (from the issued keys'
        # file, or learned from the cluster's key stream), so bounded as the keys are; and
        # the ones a cluster's stream is still storing (`_issue_key_again` waits for them)
        self.keys_by_op = {key.cl_op_id: key for key in issued_keys if key.cl_op_id is not None}
        self._keys_storing: dict[str, asyncio.Task[None]] = {}
        # the repeats waiting to learn, from the cluster's key stream, the key the first one
        # issued through another gateway (`_await_key`), by that key's name
        self._keys_awaited: dict[str, list[asyncio.Future[ApiKey]]] = {}
        # a cluster's keys learnt from the key stream (issued, not revoked): the revocable ones
        self.shared_issued: set[str] = set()
        # The keys revoked (bounded as the issued keys are: each was issued once), as
        # `revoked_keys.json` holds them (a cluster's: learnt from the key stream, `_learn_key`);
        # by key (an `admin.issue_key` sent again under the id of one is refused, saying so),
        # by the `cl_op_id` each was revoked under (`admin.revoke_key` sent again answered
        # again) and by the one each was issued under (no revocation under it: the key methods
        # share their ids, and `keys_by_op` holds a revoked key until the next start only).
        self.revocations = revocations
        self.revoked: dict[str, KeyRevoked] = {}
        self.revoked_by_op: dict[str, KeyRevoked] = {}
        self.revoked_by_issue_op: dict[str, KeyRevoked] = {}
        for revocation in revocations:
            self._note_revoked(revocation)

    def issue(self, session: Session, request: wire.Request, t_in: int) -> None:
        """A new key; under a `cl_op_id`, once the engine took the id (`IssueKey`): where
        commands are put in order, so the same id sent at once through two gateways issues
        one key, and the second is answered with the first's (`_key_decided`)."""
        from gateway.dispatch import Pending  # (the dispatcher imports this module)

        p: Any = request.params
        if p.cl_op_id is not None and p.cl_op_id in self.keys_by_op:  # checked first, as the
            self._issue_key_again(session, request, t_in)  # engine checks its own ids
            return
        if p.cl_op_id is not None and p.cl_op_id in self.revoked_by_op:
            revoked_at = self.revoked_by_op[p.cl_op_id].revoked_at_us
            self._refuse_other_method(session, request, f"at {revoked_at} to revoke a key")
            return
        # (an id a key revoked since was issued under: the engine knows it, and which admin
        # key asked, so it answers a repeat, and refuses another's without naming the key)
        by = _key(session)
        key = ApiKey(
            f"key-{secrets.token_hex(8)}",
            secrets.token_hex(24),
            p.account,
            frozenset(p.scopes),
            cl_op_id=p.cl_op_id,
            issued_by=None if p.cl_op_id is None else by.key,  # (a key without one: as before)
        )
        if p.cl_op_id is not None:
            command = IssueKey(
                ts_us=self._dispatcher.stamp_us(),
                account=p.account,
                scopes=tuple(sorted(p.scopes)),
                issued_by=by.key,
                api_key=key.key,
                cl_op_id=p.cl_op_id,
            )
            finish = partial(self._key_decided, key, by)  # (by: the session's may change)
            self.bus.submit(
                command, Pending(session, request.id, request.method, t_in, finish=finish)
            )
            return
        if not self.reads.is_participant(p.account):
            self._defer_error(session, request, E.UNKNOWN_ACCOUNT, f"no account {p.account}")
            return
        self._store_key(session, request.id, t_in, key, by)

    def revoke(self, session: Session, request: wire.Request, t_in: int) -> None:
        """Revoke an issued key: recorded in `revoked_keys.json` (durably, before the answer;
        a cluster's: on the key stream) and removed from the store, every live session logged
        on with it closed (4004, the asker's own after its answer), then out of
        `api_keys.json`. A key of the config's [[api_keys]] is refused (venue.toml is the
        operator's), an unknown one too; a repeat under its `cl_op_id` is answered again, and a
        revoked key under a new one is that id's revocation (`_record_revocation_id`)."""
        p: Any = request.params
        if p.cl_op_id is not None and p.cl_op_id in self.revoked_by_op:
            self._revoke_again(session, request, t_in)
            return
        issue = None if p.cl_op_id is None else self._issue_use(p.cl_op_id)
        if issue is not None:  # the key methods share their ids
            self._refuse_other_method(session, request, issue)
            return
        # A revoked key under an id goes to the engine all the same: it may have taken the id
        # before, that revocation's record not saved (disk full, a crash, a cluster gateway
        # stopped before publishing it); the id is recorded then, with the first revocation's
        # time (before: BAD_PARAM "nothing done", the id used up for good)
        again = p.cl_op_id is not None and p.api_key in self.revoked
        problem = None if again else self._revoke_problem(p.api_key)
        if problem is not None:
            self._reply_error(session, request, E.BAD_PARAM, problem)
            return
        if p.cl_op_id is not None:  # venue-wide, as every operator command's: the engine's
            from gateway.dispatch import Pending  # (the dispatcher imports this module)

            command = RevokeKey(
                ts_us=self._dispatcher.stamp_us(), api_key=p.api_key, cl_op_id=p.cl_op_id
            )
            finish = partial(self._revocation_decided, request)
            self.bus.submit(
                command, Pending(session, request.id, request.method, t_in, finish=finish)
            )
            return
        self._commit_revocation(session, request, t_in)

    def _revocation_decided(self, request: wire.Request, pending: "Pending") -> bytes | None:
        """The engine's word on a `RevokeKey`: its id refused (`CL_OP_ID_REUSED`: another
        command's); or taken, now or before (`OperationRepeated`: a revocation not stored
        then, or stored through another gateway this one has not read yet): revoke the key
        unless that happened meanwhile. Come back after the request was answered 504, the
        key is revoked all the same, answering nothing (sent again, it is answered
        `repeated`)."""
        events = pending.results[0].events
        rejected = rejection(events)
        late = pending.answered_unknown
        session, t_in = pending.session, pending.t_in
        p: Any = request.params
        if rejected is not None:
            refused = wire.error(pending.request_id, rejected.reason, rejected.detail)
            return None if late else refused
        if p.cl_op_id in self.revoked_by_op:  # its record read meanwhile: a repeat
            if not late:
                self._revoke_again(session, request, t_in)
            return None
        first = self.revoked.get(p.api_key)  # revoked meanwhile under another id
        problem = None if first is not None else self._revoke_problem(p.api_key)
        if problem is not None:
            return None if late else wire.error(pending.request_id, E.BAD_PARAM, problem)
        try:
            if first is None:
                self._commit_revocation(session, request, t_in, reply=not late)
            else:  # the engine took this id all the same: it is a revocation done, as the first
                repeated = type(events[-1]) is OperationRepeated  # taken before, not recorded
                self._record_revocation_id(session, request, t_in, first, not late, repeated)
        except (OSError, JournalError) as failure:  # not saved (disk full): the key stays good
            log.exception("a revocation not saved")  # (raised here, it would stop the venue)
            return None if late else wire.error(pending.request_id, E.INTERNAL, _unsaved(failure))
        return None

    def _record_revocation_id(
        self,
        session: Session,
        request: wire.Request,
        t_in: int,
        first: KeyRevoked,
        reply: bool = True,
        repeated: bool = False,
    ) -> None:
        """Record the `cl_op_id` of a revocation whose key was revoked under another id (two
        admins at once; or before, this id's record not saved then), carrying the `first`
        revocation's time, then answer as a revocation (`repeated` when the engine had taken
        the id before): the engine took the id, so it is used up, and a repeat under it is
        answered `repeated` (before: `BAD_PARAM` "nothing done", the id lost)."""
        p: Any = request.params
        revocation = msgspec.structs.replace(first, cl_op_id=p.cl_op_id)
        self._store_revocation(session, request, revocation, t_in, reply, repeated)

    def _commit_revocation(
        self, session: Session, request: wire.Request, t_in: int, reply: bool = True
    ) -> None:
        """Store the revocation of a revocable key, then apply it (and answer, unless not to
        `reply`: answered 504 already)."""
        p: Any = request.params
        key = self.auth.store.get(p.api_key)
        assert key is not None, "a revocable key is in the store"
        revocation = KeyRevoked(p.api_key, now_us(), p.cl_op_id, issued_under=key.cl_op_id)
        self._store_revocation(session, request, revocation, t_in, reply)

    def _store_revocation(
        self,
        session: Session,
        request: wire.Request,
        revocation: KeyRevoked,
        t_in: int,
        reply: bool,
        repeated: bool = False,
    ) -> None:
        """Store `revocation` (`revoked_keys.json`; a cluster's key stream), then apply it and
        answer (`_revoked`)."""
        api_key = revocation.revoked
        answer = partial(self._revoked, session, request, revocation, t_in, reply, repeated)
        if self.shared_keys is not None:  # the others close their sessions as they learn it
            record = msgspec.json.encode(revocation)
            task = asyncio.ensure_future(self._share(_record_id(revocation), record, answer))
            self._key_tasks.add(task)
            task.add_done_callback(self._key_tasks.discard)
            return
        # `revoked_keys.json` is the revocation's commit, saved before anything changes: a
        # failed save (disk full) leaves the key issued; once saved, the key is revoked, here
        # at once and at every start (`gateway.server` takes a key of both files for revoked).
        save_json(self.data_dir / REVOKED_KEYS_FILE, [*self.revocations, revocation])
        self.revocations.append(revocation)
        if any(key.key == api_key for key in self.issued_keys):  # (not when revoked before)
            self.issued_keys[:] = [key for key in self.issued_keys if key.key != api_key]
            answer()
            drop_revoked_keys(self.data_dir, self.issued_keys)
            return
        answer()

    def _revoked(
        self,
        session: Session,
        request: wire.Request,
        revocation: KeyRevoked,
        t_in: int,
        reply: bool = True,
        repeated: bool = False,
    ) -> None:
        """Answer a revocation (if to `reply`; `repeated` if its id was taken before), once
        stored, and apply it here at once: on a cluster, not when this gateway reads its own
        record back (its follower may lag, or be down), so the answer is never before the key
        is refused here (applying it again is harmless)."""
        api_key = revocation.revoked
        log.info("api key revoked", extra={"api_key": api_key, "by": _key(session).account})
        if reply:
            result = _revoked_key(api_key, revocation.revoked_at_us)
            if repeated:
                result["repeated"] = True
            self._reply(session, request, result, t_in)
        self._forget_key(revocation)

    def _note_revoked(self, revocation: KeyRevoked) -> None:
        """Remember a revoked key, and the `cl_op_id` it was revoked under: the first
        revocation's (two gateways of a cluster may revoke one key at once)."""
        self.revoked.setdefault(revocation.revoked, revocation)
        if revocation.cl_op_id is not None:
            self.revoked_by_op.setdefault(revocation.cl_op_id, revocation)
        if revocation.issued_under is not None:
            self.revoked_by_issue_op.setdefault(revocation.issued_under, revocation)

    def _forget_key(self, revocation: KeyRevoked) -> None:
        """Accept a revoked key no more, and close its live sessions (after what they are
        owed: the asker's answer, when it revoked its own key)."""
        api_key = revocation.revoked
        if self.auth.store.get(api_key) is not None:
            self.auth.store.remove(api_key)
        self.shared_issued.discard(api_key)
        self._note_revoked(revocation)
        for live in list(self.connections.sessions.values()):
            if live.key is not None and live.key.key == api_key and not live.closing:
                self.connections.close(live, REVOKED_CLOSE_CODE, REVOKED_CLOSE_REASON)

    def _revoke_problem(self, api_key: str) -> str | None:
        """Why `api_key` cannot be revoked, or None: revoked already, not known, or the
        config's."""
        revoked = self.revoked.get(api_key)
        if revoked is not None:
            return f"api key {api_key!r} was revoked at {revoked.revoked_at_us}: nothing done"
        if self.auth.store.get(api_key) is None:
            return f"no api key {api_key!r} (never issued, or revoked already): nothing done"
        issued = api_key in self.shared_issued or any(k.key == api_key for k in self.issued_keys)
        if not issued:
            return (
                f"api key {api_key!r} is one of the config's [[api_keys]]: nothing done;"
                " remove it from venue.toml and restart the venue"
            )
        return None

    def _revoke_again(self, session: Session, request: wire.Request, t_in: int) -> None:
        """A repeated `admin.revoke_key` under its `cl_op_id`: the same key answered again,
        `repeated`, changing nothing; another key `CL_OP_ID_REUSED`."""
        p: Any = request.params
        first = self.revoked_by_op[p.cl_op_id]
        if first.revoked != p.api_key:
            msg = (
                f"cl_op_id {p.cl_op_id!r} was used at {first.revoked_at_us} to revoke another"
                " key: nothing done; give a new cl_op_id for a new command"
            )
            self._reply_error(session, request, E.CL_OP_ID_REUSED, msg)
            return
        result = _revoked_key(first.revoked, first.revoked_at_us) | {"repeated": True}
        self._reply(session, request, result, t_in)

    def revocation_under(self, cl_op_id: str | None) -> str | None:
        """Why another admin method under `cl_op_id` is refused (`CL_OP_ID_REUSED`), if a key
        was revoked under it: the engine takes a revocation's id since session 32 only
        (`RevokeKey`), so this refuses one under the id of an earlier revocation too."""
        revoked = None if cl_op_id is None else self.revoked_by_op.get(cl_op_id)
        if revoked is None:
            return None
        return (
            f"cl_op_id {cl_op_id!r} was used at {revoked.revoked_at_us} to revoke a key:"
            " nothing done; give a new cl_op_id for a new command"
        )

    def _issue_use(self, cl_op_id: str) -> str | None:
        """How `admin.issue_key` used `cl_op_id`, or None: to issue a key held, or one revoked
        since (known by its revocation after a start, when `api_keys.json` holds it no more)."""
        key = self.keys_by_op.get(cl_op_id)
        if key is not None:
            return f"at {key.issued_at_us} to issue a key"
        revoked = self.revoked_by_issue_op.get(cl_op_id)
        if revoked is not None:
            return f"to issue a key revoked at {revoked.revoked_at_us}"
        return None

    def _refuse_other_method(self, session: Session, request: wire.Request, used: str) -> None:
        """`CL_OP_ID_REUSED` for a key method sent under the `cl_op_id` the other one `used`:
        `admin.issue_key` and `admin.revoke_key` share their ids (apart from the engine's)."""
        p: Any = request.params
        msg = f"cl_op_id {p.cl_op_id!r} was used {used}: nothing done; give a new cl_op_id"
        self._reply_error(session, request, E.CL_OP_ID_REUSED, msg)

    def _key_decided(self, key: ApiKey, by: ApiKey, pending: "Pending") -> bytes | None:
        """The engine's word on an `IssueKey`: refused; taken (store `key`, then answer); or
        its id took another key before (answer with that one, once this gateway knows it).
        Come back after the request was answered 504 (`answer_unknown`): a key taken is
        stored all the same, answering nothing, so the request sent again under its id is
        answered with it; else its id would be taken for a key stored nowhere, for good."""
        executed = pending.results[0]
        rejected = rejection(executed.events)
        late = pending.answered_unknown
        if rejected is not None:  # CL_OP_ID_REUSED, UNKNOWN_ACCOUNT: no secret in it
            if late:
                return None
            return wire.error(pending.request_id, rejected.reason, rejected.detail)
        decided = executed.events[-1]
        if type(decided) is OperationRepeated:
            if late:  # the first key's gateway stores it
                return None
            first = decided.outcome
            assert isinstance(first, KeyIssued), f"a key's id answered by {first!r}"
            self._answer_key_again(pending, decided.cl_op_id, first.api_key, decided.done_at_us)
            return None
        assert type(decided) is KeyIssued and decided.api_key == key.key, f"issued {decided!r}"
        key = msgspec.structs.replace(key, issued_at_us=decided.ts_us)  # when the engine took it
        try:
            self._store_key(pending.session, pending.request_id, pending.t_in, key, by, not late)
        except (OSError, JournalError) as failure:  # not saved (disk full): no key issued
            log.exception("an issued key not saved")  # (raised here, it would stop the venue)
            msg = (
                f"internal error: the key was not saved ({failure}): no key issued under"
                f" cl_op_id {key.cl_op_id!r} is good, and none will be; give a new cl_op_id"
            )
            return None if late else wire.error(pending.request_id, E.INTERNAL, msg)
        return None

    def _store_key(
        self,
        session: Session,
        request_id: Any,
        t_in: int,
        key: ApiKey,
        by: ApiKey,
        reply: bool = True,
    ) -> None:
        """Store a new key (api_keys.json; a cluster's key stream), then answer with it (unless
        not to `reply`: its request was answered 504 already)."""
        send: Callable[[], None] = _answered_already
        if reply:
            send = partial(self._send_ok, session, request_id, _issued_key(key), t_in)
        answer = partial(_logged_issued, key, by, send)  # logged once stored, never before
        cl_op_id = key.cl_op_id
        if self.shared_keys is not None:  # answered once the cluster's stream stored it
            task = asyncio.ensure_future(self._share_key(key, answer))
            self._key_tasks.add(task)
            task.add_done_callback(self._key_tasks.discard)
            if cl_op_id is not None:  # a repeat meanwhile is answered once it is stored
                self.keys_by_op[cl_op_id] = key
                self._keys_storing[cl_op_id] = task
                task.add_done_callback(lambda _: self._keys_storing.pop(cl_op_id, None))
            return
        # saved before it is kept: a failed save (disk full) leaves no key that logs on here
        # until the next start, nor one the next key's save would store unanswered
        save_json(self.data_dir / ISSUED_KEYS_FILE, [*self.issued_keys, key])
        self.auth.store.add(key)
        self.issued_keys.append(key)
        if cl_op_id is not None:
            self.keys_by_op[cl_op_id] = key
        answer()

    def _send_ok(self, session: Session, request_id: Any, result: Any, t_in: int) -> None:
        self.connections.send(session, wire.ok(request_id, result, t_in, now_us()))

    def _answer_key_again(
        self, pending: "Pending", cl_op_id: str, api_key: str, done_at_us: int
    ) -> None:
        """Answer a repeated `admin.issue_key` with the key `api_key` its id issued, once this
        gateway knows it: at once, or on a cluster when the key stream brings it; or, revoked
        since, say so."""
        revoked = self.revoked.get(api_key)
        if revoked is not None:
            msg = _revoked_since(cl_op_id, revoked)
            self.connections.send(pending.session, wire.error(pending.request_id, REUSED, msg))
            return
        known = self.auth.store.get(api_key)
        if known is not None or self.shared_keys is None:
            self._send_key_again(pending, cl_op_id, api_key, done_at_us, known)
            return
        # Waited for from now, not from when the task first runs: the key stream may deliver
        # the key (`_learn_key`) before that, and would find nobody to tell.
        learnt: asyncio.Future[ApiKey] = asyncio.get_running_loop().create_future()
        self._keys_awaited.setdefault(api_key, []).append(learnt)
        waiting = self._await_key(pending, cl_op_id, api_key, done_at_us, learnt)
        task = asyncio.ensure_future(waiting)
        self._key_tasks.add(task)
        task.add_done_callback(self._key_tasks.discard)
        # (a callback, not the task's `finally`: a task canceled before it ran runs none)
        task.add_done_callback(lambda _: self._stop_awaiting(api_key, learnt))

    async def _await_key(
        self,
        pending: "Pending",
        cl_op_id: str,
        api_key: str,
        done_at_us: int,
        learnt: "asyncio.Future[ApiKey]",
    ) -> None:
        """Answer with the key once the stream brings it (`learnt`), or after
        `ISSUED_KEY_WAIT_S` say it is not stored."""
        known: ApiKey | None = None
        try:
            known = await asyncio.wait_for(learnt, ISSUED_KEY_WAIT_S)
        except TimeoutError:
            known = None  # never learnt: never stored (`_send_key_again` says so)
        self._send_key_again(pending, cl_op_id, api_key, done_at_us, known)

    def _stop_awaiting(self, api_key: str, learnt: "asyncio.Future[ApiKey]") -> None:
        awaited = self._keys_awaited[api_key]
        awaited.remove(learnt)
        if not awaited:
            del self._keys_awaited[api_key]

    def _send_key_again(
        self,
        pending: "Pending",
        cl_op_id: str,
        api_key: str,
        done_at_us: int,
        known: ApiKey | None,
    ) -> None:
        """The key issued before, secret included (the engine compared the admin key that
        asks with the one that asked first), or, never stored, why not."""
        session, request_id = pending.session, pending.request_id
        if known is None:
            where = "the venue" if self.shared_keys is None else "its gateway"
            msg = (
                f"cl_op_id {cl_op_id!r}: the key {api_key} issued under it at"
                f" {done_at_us} is not stored: {where} stopped before storing it, is still"
                " storing it, or it was revoked since; ask again, and if it is still not"
                " stored, no key under it is good:"
                " give a new cl_op_id"
            )
            self.connections.send(session, wire.error(request_id, E.OUTCOME_UNKNOWN, msg))
            return
        log.info("api key issue repeated", extra={"api_key": known.key})
        result = _issued_key(known) | {"repeated": True, "done_at": done_at_us}
        self._send_ok(session, request_id, result, pending.t_in)

    def _issue_key_again(self, session: Session, request: wire.Request, t_in: int) -> None:
        """An `admin.issue_key` under the `cl_op_id` of a key issued before: the admin key
        that asked for it, asking the same, gets that key again (its secret: only the one
        who asked sees it), or is told it was revoked since, changing nothing; any other key
        or params `CL_OP_ID_REUSED`, without the key (checked first: no name to another)."""
        p: Any = request.params
        key = self.keys_by_op[p.cl_op_id]
        by = _key(session)
        asked = (p.account, frozenset(p.scopes), by.key)
        if asked != (key.account, key.scopes, key.issued_by):
            msg = (
                f"cl_op_id {p.cl_op_id!r} was used at {key.issued_at_us} for another key, or by"
                " another admin key: nothing done; give a new cl_op_id for a new command"
            )
            self._reply_error(session, request, E.CL_OP_ID_REUSED, msg)
            return
        revoked = self.revoked.get(key.key)
        if revoked is not None:  # revoked since (`revoke`): never shown again
            self._reply_error(session, request, REUSED, _revoked_since(p.cl_op_id, revoked))
            return
        log.info("api key issue repeated", extra={"api_key": key.key, "by": by.account})
        result = _issued_key(key) | {"repeated": True, "done_at": key.issued_at_us}
        answer = partial(self._reply, session, request, result, t_in)
        storing = self._keys_storing.get(p.cl_op_id)
        if storing is None:
            answer()
        else:
            storing.add_done_callback(partial(_once_stored, answer))

    async def _share_key(self, key: ApiKey, answer: Callable[[], None]) -> None:
        await self._share(key.key, msgspec.json.encode(key), partial(self._keep, key, answer))

    def _keep(self, key: ApiKey, answer: Callable[[], None]) -> None:
        """Accept a key the cluster's stream stored, here at once, then answer: not when this
        gateway reads it back (its follower may lag, or be down), so the key logs on, and is
        revoked, through the gateway that answered it as soon as the answer is sent."""
        self._accept_shared(key)
        answer()

    async def _share(self, record_id: str, record: bytes, answer: Callable[[], None]) -> None:
        """Store a record on the cluster's key stream (a key, or a key's revocation), then
        answer."""
        assert self.shared_keys is not None, "only a cluster's gateway shares keys"
        try:
            await self.shared_keys.publish(record_id, record)
        except BaseException as failure:  # NATS unreachable for 30 s: the gateway is dead
            self.bus.on_fatal(failure)
            raise
        answer()

    def _learn_key(self, payload: bytes) -> None:
        """A key issued, or revoked, through any gateway of the cluster (this one's included)."""
        record = msgspec.json.decode(payload)
        if isinstance(record, dict) and "revoked" in record:
            revoked = msgspec.convert(record, KeyRevoked)
            self._forget_key(revoked)
            log.info("api key revoked on the cluster", extra={"api_key": revoked.revoked})
            return
        self._accept_shared(msgspec.convert(record, ApiKey))

    def _accept_shared(self, key: ApiKey) -> None:
        """Accept a key of the cluster's stream, unless revoked here already (its record read
        back after the revocation this gateway applied with its answer): its `cl_op_id` is
        taken all the same."""
        known = self.auth.store.get(key.key)
        if known is not None and known != key:  # the first one issued under a name wins,
            log.warning("a second key issued as %s ignored", key.key)  # on every gateway
            return
        if key.cl_op_id is not None:  # a second key under one id (issued at once through two
            self.keys_by_op.setdefault(key.cl_op_id, key)  # gateways before the engine
            # decided ids: session 23) is not repeated, the first one revoked or not
        if known is not None or key.key in self.revoked:
            return
        self.auth.store.add(key)
        self.shared_issued.add(key.key)
        for learnt in self._keys_awaited.get(key.key, ()):
            if not learnt.done():
                learnt.set_result(key)


def drop_revoked_keys(data_dir: Path, issued: list[ApiKey]) -> None:
    """Save `api_keys.json` as `issued`, the revoked keys out: no revoked secret left on disk
    (for a build older than `revoked_keys.json` to accept). Cleanup after a revocation's
    commit, or at a start after a stop between a revocation's two saves: a failure (disk
    full, a link to a disk that went away) is logged only; the key is revoked all the same,
    and the next save takes it out. Never raised: the revocation is answered already."""
    try:
        save_json(data_dir / ISSUED_KEYS_FILE, issued)
    except (OSError, JournalError) as failure:  # JournalError: a dangling link refused
        log.error("a revoked key's secret left in %s: %s", ISSUED_KEYS_FILE, failure)


def _revoked_since(cl_op_id: str, revoked: KeyRevoked) -> str:
    """Why an `admin.issue_key` sent again under `cl_op_id` is not answered with its key."""
    return (
        f"cl_op_id {cl_op_id!r}: the key {revoked.revoked} issued under it was revoked at"
        f" {revoked.revoked_at_us}: nothing done; give a new cl_op_id for a new key"
    )


def _record_id(revocation: KeyRevoked) -> str:
    """A revocation's record id on a cluster's key stream, which keeps one record per id: one
    per `cl_op_id`, so that two gateways revoking one key at once under two ids keep both
    (before: `revoked:{key}` only, and the second id was lost); `_note_revoked` keeps the
    first per key. The id goes in as the hex of its UTF-8: nats-py strips a header's value
    (`Nats-Msg-Id`), Unicode spaces too, so ids differing only in their spaces at either end
    shared one record id, the second dropped as a duplicate (session 32's re-review). Stable
    across retries; gateways read the records by their payload, whatever their ids."""
    if revocation.cl_op_id is None:
        return f"revoked:{revocation.revoked}"
    return f"revoked:{revocation.revoked}:{revocation.cl_op_id.encode().hex()}"


def _unsaved(failure: Exception) -> str:
    """The `INTERNAL` answer to a revocation whose record could not be saved."""
    return (
        f"internal error: the revocation was not saved ({failure}): the key is not revoked"
        " by it; send it again (under its cl_op_id: the venue revokes it then)"
    )


def _revoked_key(api_key: str, revoked_at_us: int) -> dict[str, Any]:
    return {"api_key": api_key, "revoked_at": revoked_at_us}


def _issued_key(key: ApiKey) -> dict[str, Any]:
    """`admin.issue_key`'s answer: the key, its secret (the only time the venue shows it, but
    to the admin key that asked, asking again under its `cl_op_id`), account and scopes."""
    return {
        "api_key": key.key,
        "secret": key.secret,
        "account": key.account,
        "scopes": sorted(key.scopes),
    }


def _logged_issued(key: ApiKey, by: ApiKey, answer: Callable[[], None]) -> None:
    """Log a key stored (before session 32's re-review it was logged before its save, so a
    key not saved, disk full, was logged as issued), then `answer`."""
    issued = {"api_key": key.key, "account": key.account, "scopes": sorted(key.scopes)}
    if key.cl_op_id is not None:
        issued["cl_op_id"] = key.cl_op_id
    log.info("api key issued", extra=issued | {"by": by.account})
    answer()


def _answered_already() -> None:
    """What storing a key answers when its request was answered 504 already: nothing."""


def _once_stored(answer: Callable[[], None], storing: "asyncio.Task[None]") -> None:
    """Answer a repeated `admin.issue_key` once the first's key is on the cluster's stream;
    if storing it failed, the gateway is stopping (`_share_key`): no answer, as for the first."""
    if not storing.cancelled() and storing.exception() is None:
        answer()
