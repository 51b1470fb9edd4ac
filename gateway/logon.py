"""Logon: `session.logon`, from the signed request to the connection made the key's.

Owns `Logons`: the checks of a logon after the dispatcher's (a trade connection, not logged
on yet), the signature and nonce check (`gateway.auth`), on a cluster the nonce's claim
cluster-wide (`core/cluster_nonces.py`) with the connection's later frames held behind it,
the cap on connections per account, the charge of each refused logon to its client IP's
bucket (shared with REST's refused signatures), and the logs of each logon and refusal.
Leaves the keys, the nonces' memory and the signature to `gateway.auth`, and the frames held
behind a claim, and the answers' order, to the dispatcher, whose method table calls `logon`.
At most one claim is under way per connection (its later frames wait behind it).
"""

import asyncio
import logging
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

from core.venue_core import now_us
from engine.reasons import ErrorCode
from gateway import limits, wire
from gateway.auth import (
    LOGGED_ON_ALREADY,
    RECV_WINDOW_MS_DEFAULT,
    ApiKey,
    AuthError,
    claim_cluster_wide,
)
from gateway.limits import IP_LIMIT
from gateway.sessions import Session, peer

if TYPE_CHECKING:
    from core.cluster_nonces import SharedNonces
    from gateway.dispatch import Dispatcher

log = logging.getLogger("venue")
E = ErrorCode

LOGON_ON_TRADE = "log on at /ws/trade"
LOGON_COST_MILLI = limits.cost_milli("session.logon")  # what a refusal takes from its IP
# A connection's refused logons log at most once a second, the rest counted into its next
# line (as REST's refused signatures, `rest.REFUSAL_LOG_INTERVAL_US`): a flood of bad logons
# must not flood the log.
REFUSAL_LOG_INTERVAL_US = 1_000_000
TOO_MANY_REFUSED = (
    "slow down: too many refused logons and signed requests from your address"  # its IP's
)


class Logons:
    """`session.logon`'s handler, answering through the dispatcher."""

    def __init__(self, dispatcher: "Dispatcher") -> None:
        self.auth = dispatcher.auth
        self.bus = dispatcher.bus
        self.connections = dispatcher.connections
        # the dispatcher's ways to answer, and to handle the frames held behind a claim
        self._reply = dispatcher._reply
        self._reply_error = dispatcher._reply_error
        self._handler_failed = dispatcher._handler_failed
        self._handle_later = dispatcher.held_requests.handle_later
        # a cluster's gateway claims the nonce of each logon cluster-wide
        # (core/cluster_nonces.py)
        self.shared_nonces: SharedNonces | None = getattr(dispatcher.bus, "nonces", None)
        self._claim_tasks: set[asyncio.Task[None]] = set()  # one per connection at most
        # The client IPs' bucket of REST's unsigned and refused requests (the server sets it:
        # `VenueServer.unsigned_limiter`), charged for each refused logon too: a connection's
        # own bucket alone let one IP's 256 connections have 400 logons a second each refused,
        # an HMAC and a log line apiece, where REST's refusals were held to the IP's rate.
        self.refusals_by_address: limits.AddressBuckets | None = None
        # per connection while it is open: when its last refusal was logged (µs), and how many
        # were refused since without a line
        self._refusals_logged: weakref.WeakKeyDictionary[Session, tuple[int, int]] = (
            weakref.WeakKeyDictionary()
        )

    def logon(self, session: Session, request: wire.Request, t_in: int) -> None:
        if not session.trade:
            self._reply_error(session, request, E.PERMISSION_DENIED, LOGON_ON_TRADE)
            return
        if session.key is not None:
            self._reply_error(session, request, E.BAD_PARAM, LOGGED_ON_ALREADY)
            return
        p: Any = request.params
        window = p.recv_window if p.recv_window is not None else RECV_WINDOW_MS_DEFAULT
        try:
            self._check_address(session, t_in)  # before the HMAC: a flood costs a look-up each
        except AuthError as limited:  # logged (or counted) as any refusal: a flood shows
            self._log_logon_refused(session, p.api_key, limited.code, limited.message)
            raise
        try:
            key = self.auth.logon(p.api_key, p.ts, p.nonce, window, p.sig, t_in)
        except AuthError as refused:  # the key names who tried; the signature stays out
            self._charge_refusal(session, t_in)
            self._log_logon_refused(session, p.api_key, refused.code, refused.message)
            raise
        if self.shared_nonces is not None:  # a cluster's gateway: not used on another one?
            self._claim_nonce(session, request, t_in, key)
            return
        self._logged_on(session, request, t_in, key)

    def _claim_nonce(self, session: Session, request: wire.Request, t_in: int, key: ApiKey) -> None:
        """Claim the logon's nonce cluster-wide, then log on (`_logon_claimed`). Meanwhile
        the connection's later frames wait behind it (`session.held`, as behind a quote's
        place), so they are handled in order, logged on."""
        session.held = deque()
        session.held_bytes = 0
        task = asyncio.ensure_future(self._logon_claimed(session, request, t_in, key))
        self._claim_tasks.add(task)
        task.add_done_callback(self._claimed)

    def _claimed(self, task: "asyncio.Task[None]") -> None:
        self._claim_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.bus.on_fatal(task.exception())  # a broken invariant: crash, recover by replay

    async def _logon_claimed(
        self, session: Session, request: wire.Request, t_in: int, key: ApiKey
    ) -> None:
        nonces = self.shared_nonces
        assert nonces is not None, "only a cluster's gateway claims nonces"
        refused: AuthError | None = None
        p: Any = request.params
        try:
            await claim_cluster_wide(nonces, self.auth, key.key, p.nonce)
        except AuthError as error:
            refused = error
        later, session.held = session.held, None
        if session.closing or self.connections.sessions.get(session.id) is not session:
            return  # closed meanwhile: nobody reads the answer, nothing held may run
        if refused is None:
            self._logged_on(session, request, t_in, key)
        else:
            if refused.code is E.NONCE_REUSED:  # a replay (unchecked is the venue's, not theirs)
                self._charge_refusal(session, now_us())
            self._log_logon_refused(session, key.key, refused.code, refused.message)
            self._handler_failed(session, request, refused)
        self._handle_later(session, later)

    def _logged_on(self, session: Session, request: wire.Request, t_in: int, key: ApiKey) -> None:
        """The logon's signature and nonce are good: the connection is the key's, unless the
        account has its most connections already (fewer for a key that cannot trade)."""
        p: Any = request.params
        connected = sum(
            1 for other in self.connections.sessions.values() if other.account == key.account
        )
        msg = _connections_refusal(key, connected)
        if msg is not None:
            self._log_logon_refused(session, p.api_key, E.PERMISSION_DENIED, msg)
            self._reply_error(session, request, E.PERMISSION_DENIED, msg)
            return
        session.key = key
        # once: a read-only key's requests never spend the share kept for its trade and admin keys
        session.account_bucket = limits.account_bucket(key.account, key.scopes)
        # a trading session's now: it leaves its IP's allowance in the reserve, or the public
        # place it waited in (`transport.Connection.hold_trading`)
        session.websocket.hold_trading()
        # no more refusals can come on a logged-on connection: those counted are said now, not
        # at a close that may be hours away (before, only then)
        self._log_unlogged(session, "logons refused before logon")
        logged_on = {"session": session.id, "peer": peer(session), "account": key.account}
        log.info("logged on", extra=logged_on | {"api_key": key.key})
        self._reply(session, request, {"account": key.account, "scopes": sorted(key.scopes)}, t_in)

    def _check_address(self, session: Session, now: int) -> None:
        """AuthError 429 if the client IP has spent its bucket of refusals (a refusal would
        not fit), before the signature is checked, as REST's signed requests are: a valid
        logon costs that bucket nothing, so only a client sharing its IP with one sending
        refused logons or signed requests (or many unsigned reads) meets this."""
        buckets = self.refusals_by_address
        if buckets is None:
            return
        retry = buckets.retry_after_ms(_address(session), now, LOGON_COST_MILLI)
        if retry:
            raise AuthError(E.RATE_LIMITED, TOO_MANY_REFUSED, retry, IP_LIMIT)

    def _charge_refusal(self, session: Session, now: int) -> None:
        """Charge a refused logon to its client IP's bucket: it proves no account that could
        be charged. (It fit: `_check_address` asked just before.)"""
        if self.refusals_by_address is not None:
            self.refusals_by_address.take(_address(session), now, LOGON_COST_MILLI)

    def _log_logon_refused(self, session: Session, api_key: str, code: ErrorCode, why: str) -> None:
        """Log a refused logon, or count it into the connection's next line if one was
        logged within `REFUSAL_LOG_INTERVAL_US`."""
        now = now_us()
        logged_us, unlogged = self._refusals_logged.get(session, (0, 0))
        if logged_us and now < logged_us + REFUSAL_LOG_INTERVAL_US:
            self._refusals_logged[session] = (logged_us, unlogged + 1)
            return
        self._refusals_logged[session] = (now, 0)
        logged_key = self.auth.store.logged(api_key)
        refused = {"session": session.id, "peer": peer(session), "api_key": logged_key}
        why_refused = {"code": code.name.lower(), "reason": why, "refusals_unlogged": unlogged}
        log.warning("logon refused", extra=refused | why_refused)

    def closed(self, session: Session) -> None:
        """A connection closed: the refusals it had counted toward a next line that will not
        come are logged in one line of their own, if any (before session 26 they went
        unsaid: a flood that ended with its connection's close showed only its first line)."""
        self._log_unlogged(session, "logons refused before close")

    def _log_unlogged(self, session: Session, message: str) -> None:
        """The refusals `session` counted after its last `logon refused` line, in one line
        of their own (`message`: at its logon or its close), if any; then forgotten."""
        _, unlogged = self._refusals_logged.pop(session, (0, 0))
        if unlogged:
            left = {"session": session.id, "peer": peer(session), "refusals_unlogged": unlogged}
            log.warning(message, extra=left)


def _connections_refusal(key: ApiKey, connected: int) -> str | None:
    """Why `key` may not log on while its account has `connected` sessions, if it may not:
    the account's cap, less the places kept for its trading and admin keys when `key` is
    read-only (an operator's account has an admin key and no trading one: its places are
    the admin key's)."""
    cap = limits.CONNECTIONS_PER_ACCOUNT_MAX
    if connected >= cap:
        return f"at most {cap} connections per account"
    kept = limits.CONNECTIONS_KEPT_FOR_TRADING
    if limits.is_read_only(key.scopes) and connected >= cap - kept:
        return (
            f"at most {cap - kept} connections per account for a read-only key"
            f" (the other {kept} are kept for its keys that trade or administer)"
        )
    return None


def _address(session: Session) -> str:
    """The key of the session's client IP in the per-IP buckets (`limits.address_key`): behind
    a trusted proxy, the client its `X-Forwarded-For` named at the upgrade."""
    connection = session.websocket
    client = connection.client_ip or (str(connection.peer[0]) if connection.peer else "")
    return limits.address_key(client)
