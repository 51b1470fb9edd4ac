"""API keys and the HMAC-SHA256 signatures (websocket logon, REST request) that prove a client
holds one.

Owns the key store (key -> secret, account, scopes), the logon check and the memory of used
nonces. Leaves sessions, sockets and the clock to the server: the time is always passed in
(`now_us`), so the module is pure. `logon` checks in the order of `LOGON_PRECEDENCE` and
reports the first failure; an unknown key fails exactly as a wrong signature does.
Invariants: a nonce is recorded only after a fully successful logon; it is remembered
exactly while a replay of its signed message could still pass the timestamp check
(`ts + recv_window`), so memory holds only the last two windows' logons, and at most
`NONCES_PER_KEY_MAX` per key; the authenticator's clock never runs backwards. On a cluster
a nonce the authenticator let through is then claimed cluster-wide (`claim_cluster_wide`,
awaited by the gateway): a replay through another gateway is refused as one through this; a
claim unanswered forgets the nonce again (its message was refused, nothing done).
"""

import hashlib
import heapq
import hmac
import re
from collections.abc import Callable, Iterable

import msgspec

from core.cluster_nonces import NonceUnchecked, SharedNonces
from core.config import SCOPES, ApiKeyEntry
from engine.reasons import ErrorCode
from engine.units import looks_like_milliseconds
from gateway.limits import KEY_NONCES_LIMIT, RATE_LIMITED_WORDS

KEY_LENGTH_MAX = 64  # room for any generated key; bounds what one store entry costs
NONCE_LENGTH_MAX = 64  # a UUID or a 256-bit hex string fits; longer is padding, not entropy
# An unknown key's characters a log line keeps: enough to tell one client's mistake from
# another's, too few to be a usable secret (an issued secret has 48 hex digits); and never
# more than a quarter of it, since a config's secret may be short (`hunter2`).
UNKNOWN_KEY_LOGGED_CHARS = 8
UNKNOWN_KEY_LOGGED_SHARE = 4  # at most 1/4 of an unknown key's characters are logged
# An issued key's id (`admin.issue_key`: "key-" and 16 hex digits), logged whole even when
# it is not in the store: revoked, or not yet read from the cluster's key stream. An operator
# looks for who still uses a revoked key; an issued secret (48 hex digits) has no such shape.
ISSUED_KEY_PATTERN = re.compile(r"key-[0-9a-f]{16}")
RECV_WINDOW_MS_DEFAULT = 5_000  # PROTOCOL's `recv_window?`: clock skew plus one round trip
RECV_WINDOW_MS_MAX = 60_000  # a minute of skew is already generous; longer widens replays
# A reconnect storm of ~8 logons/s for the longest a nonce is kept (ts up to a window ahead,
# plus the window: 120 s); more is abuse, refused rather than forgetting a live nonce.
NONCES_PER_KEY_MAX = 1_024
assert f"{NONCES_PER_KEY_MAX:,}" in RATE_LIMITED_WORDS[KEY_NONCES_LIMIT], "its 429 says the cap"
# A forgotten nonce's entry stays in the expiry heap until its time (`Authenticator.forget`:
# O(1), where taking it out was O(n) with the loop blocked, for every claim refused during a
# NATS failover); once more than this many, and more than the live entries, the heap is
# rebuilt from the live ones, so it holds at most twice the nonces remembered, plus this.
FORGOTTEN_EXPIRIES_MAX = 1_024
TIMESTAMP_US_MAX = 2**53 - 1  # PROTOCOL: integers on the wire are below 2^53
SECONDS_EPOCH_MIN = 10**9  # a ts in seconds of 2001 or later is named as one (not 0, 1, ...)

# The order in which `Authenticator.logon` checks; the first failing one is reported.
LOGON_PRECEDENCE: tuple[ErrorCode, ...] = (
    ErrorCode.BAD_PARAM,  # nonce, recv_window or ts malformed
    ErrorCode.TIMESTAMP_OUT_OF_WINDOW,
    ErrorCode.BAD_SIGNATURE,  # also an unknown key: which keys exist is not for probing
    ErrorCode.NONCE_REUSED,  # only a holder of the secret gets this far
    ErrorCode.RATE_LIMITED,  # NONCES_PER_KEY_MAX logons within the nonce memory
)
# An unknown key is checked against this secret, so that it costs the same work as a known
# key with a wrong signature and fails the same way; no logon ever succeeds with it.
UNKNOWN_KEY_SECRET = "no key has this secret; it only makes refusals alike"
NOT_SIGNED = "api_key unknown or sig does not match the logon payload"
NONCE_REUSED_MESSAGE = "nonce already used within the window"
# A logon on a connection logged on already (BAD_PARAM, docs/protocol.md §1): here, not in
# `gateway.logon`, so that the SDK (`client.sdk_resume`) tells it apart by the same words
LOGGED_ON_ALREADY = "this connection is logged on"
NONCE_UNCHECKED_MESSAGE = (
    "nonce not checked: the cluster's record of used nonces did not answer; nothing done."
    " Retry: sign again with a new nonce (anywhere), or send the same signed message again"
    " to this gateway within its window"
)


class AuthError(Exception):
    """A refused logon or a missing scope: the error response's code and message."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        retry_after_ms: int | None = None,
        limit: str | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms  # a `RATE_LIMITED` one: when a retry can pass
        self.limit = limit  # ... and the limit that refused it (`limits.IP_LIMIT`), if one


class KeyStoreError(ValueError):
    """An API key cannot be added to the store; the message says which and why."""


class ApiKey(msgspec.Struct, frozen=True, omit_defaults=True):
    key: str
    secret: str
    account: int
    scopes: frozenset[str]
    # One issued by `admin.issue_key` under a `cl_op_id` keeps it, with the API key that asked
    # and when (µs): that key sending the request again gets this key, not a second one.
    cl_op_id: str | None = None
    issued_by: str | None = None
    issued_at_us: int | None = None

    def __repr__(self) -> str:
        # Keys end up in logs and tracebacks; the secret must not.
        return f"ApiKey(key={self.key!r}, account={self.account}, scopes={sorted(self.scopes)})"


class KeyStore:
    """The API keys the gateway accepts, by key. Keys are unique; an issued one may be
    removed (`admin.revoke_key`), the config's only by editing venue.toml and restarting."""

    def __init__(self, entries: Iterable[ApiKeyEntry] = ()) -> None:
        self._keys: dict[str, ApiKey] = {}
        for entry in entries:
            self.add(
                ApiKey(
                    key=entry.key,
                    secret=entry.secret,
                    account=entry.account,
                    scopes=frozenset(entry.scopes),
                )
            )

    def add(self, api_key: ApiKey) -> None:
        problem = _key_problem(api_key)
        if problem is None and api_key.key in self._keys:
            problem = "duplicate key"
        if problem is not None:
            raise KeyStoreError(f"api key {api_key.key!r}: {problem}")
        self._keys[api_key.key] = api_key

    def get(self, key: str) -> ApiKey | None:
        return self._keys.get(key)

    def logged(self, key: str) -> str:
        """`key` as a log line names it: whole when it is one of ours or shaped as an issued
        key's id (an id, no secret, revoked or not), else `unknown_key_logged`: a key unknown
        here is often a secret typed in the key's place, and the operator's log must not
        keep it."""
        if key in self._keys or ISSUED_KEY_PATTERN.fullmatch(key):
            return key
        return unknown_key_logged(key)

    def remove(self, key: str) -> None:
        """Accept `key` no more (logons and REST requests with it refused as an unknown
        key's); its live sessions are the caller's to close."""
        del self._keys[key]

    def __len__(self) -> int:
        return len(self._keys)


def unknown_key_logged(key: str) -> str:
    """An unknown key as a log line shows it: its first characters (up to
    `UNKNOWN_KEY_LOGGED_CHARS`, at most a quarter of it) and its length, e.g.
    `a1b2c3d4... (48 chars)`, `h... (7 chars)`."""
    kept = min(UNKNOWN_KEY_LOGGED_CHARS, len(key) // UNKNOWN_KEY_LOGGED_SHARE)
    return f"{key[:kept]}... ({len(key)} chars)"


def _key_problem(api_key: ApiKey) -> str | None:
    key = api_key.key
    if not 1 <= len(key) <= KEY_LENGTH_MAX or not _is_printable_ascii(key) or " " in key:
        return f"key must be 1..{KEY_LENGTH_MAX} visible ASCII characters"
    if not api_key.secret:
        return "empty secret"
    unknown = api_key.scopes - SCOPES
    if unknown:
        return f"unknown scopes {sorted(unknown)} (known: {sorted(SCOPES)})"
    if not api_key.scopes:
        return "no scopes: the key could do nothing"
    return None


# what `_is_printable_ascii` lets through, as docs/protocol.md §4.1 says it (before session
# 26, "printable characters", which a nonce such as "nonce-é" is, refused all the same)
NONCE_WORDS = f"nonce must be 1..{NONCE_LENGTH_MAX} printable ASCII characters"


def _is_printable_ascii(text: str) -> bool:
    # ASCII printable excludes "\n", the payload's field separator, so fields cannot be forged.
    return text.isascii() and text.isprintable()


def logon_payload(api_key: str, ts_us: int, nonce: str, recv_window_ms: int) -> bytes:
    """The exact bytes a logon signs (PROTOCOL "Session")."""
    return f"logon\n{api_key}\n{ts_us}\n{nonce}\n{recv_window_ms}".encode()


def _unit_slip(ts_us: int, now_us: int) -> str:
    """A `ts` far behind that was most likely sent in milliseconds or seconds (a JavaScript
    `Date.now()`, a Python `int(time.time())`) says so: its distance alone does not."""
    if looks_like_milliseconds(ts_us, now_us):
        unit = "milliseconds"
    elif ts_us >= SECONDS_EPOCH_MIN and ts_us * 100_000 <= now_us < ts_us * 10_000_000:
        unit = "seconds"
    else:
        return ""
    return f"; ts {ts_us} looks like {unit}: ts is in microseconds"


def sign_logon(secret: str, api_key: str, ts_us: int, nonce: str, recv_window_ms: int) -> str:
    """The logon's `sig`: hex HMAC-SHA256 of the payload under the key's secret."""
    payload = logon_payload(api_key, ts_us, nonce, recv_window_ms)
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def request_payload(
    api_key: str,
    ts_us: int,
    nonce: str,
    recv_window_ms: int,
    method: str,
    path: str,
    query: str,
    body: bytes,
) -> bytes:
    """The exact bytes a REST request signs (docs/rest.md): the logon's fields, then the HTTP
    method, the path and the query string as sent, and the body's content last (a chunked
    body's data joined, without its framing: a proxy may re-frame it)."""
    head = f"rest\n{api_key}\n{ts_us}\n{nonce}\n{recv_window_ms}\n{method}\n{path}\n{query}\n"
    return head.encode() + body


def sign_request(
    secret: str,
    api_key: str,
    ts_us: int,
    nonce: str,
    recv_window_ms: int,
    method: str,
    path: str,
    query: str,
    body: bytes,
) -> str:
    """A REST request's `X-Signature`: hex HMAC-SHA256 of its payload under the secret."""
    payload = request_payload(api_key, ts_us, nonce, recv_window_ms, method, path, query, body)
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def require_scope(key: ApiKey, scope: str) -> None:
    assert scope in SCOPES, f"no such scope: {scope}"
    if scope not in key.scopes:
        raise AuthError(ErrorCode.PERMISSION_DENIED, f"this API key lacks the {scope} scope")


class Authenticator:
    """Checks logons against a key store and refuses replays of their nonces.

    The nonces live in memory: those used before `started_us` (by an earlier run of the
    server, before a restart or a crash) are not known, so a message signed before it is
    refused, as a replay it may be."""

    def __init__(self, store: KeyStore, started_us: int = 0) -> None:
        self.store = store
        self.started_us = started_us  # when this memory of nonces began
        self._nonces: dict[str, dict[str, int]] = {}  # key -> nonce -> replayable until (µs)
        # heap of (until_us, key, nonce); also the entries of nonces forgotten since (stale:
        # `_nonces` no longer holds that nonce with that expiry), `_forgotten` of them
        self._expiries: list[tuple[int, str, str]] = []
        self._forgotten = 0
        self._now_us = 0  # the latest time given: pruning never revives a forgotten nonce

    def logon(
        self,
        api_key: str,
        ts_us: int,
        nonce: str,
        recv_window_ms: int,
        sig: str,
        now_us: int,
    ) -> ApiKey:
        """The key that signed this logon, or AuthError in `LOGON_PRECEDENCE` order."""
        return self.check(
            api_key,
            ts_us,
            nonce,
            recv_window_ms,
            sig,
            now_us,
            lambda secret: sign_logon(secret, api_key, ts_us, nonce, recv_window_ms),
        )

    def check(
        self,
        api_key: str,
        ts_us: int,
        nonce: str,
        recv_window_ms: int,
        sig: str,
        now_us: int,
        signature_with: Callable[[str], str],
    ) -> ApiKey:
        """The key whose secret gives `sig` (`signature_with(secret)`), or AuthError in
        `LOGON_PRECEDENCE` order: the rules of a logon, for a logon or a signed request."""
        self._now_us = now_us = max(now_us, self._now_us)
        self._forget_expired(now_us)
        key = self.store.get(api_key)
        if not 1 <= len(nonce) <= NONCE_LENGTH_MAX or not _is_printable_ascii(nonce):
            raise AuthError(ErrorCode.BAD_PARAM, NONCE_WORDS)
        if not 1 <= recv_window_ms <= RECV_WINDOW_MS_MAX:
            raise AuthError(ErrorCode.BAD_PARAM, f"recv_window must be 1..{RECV_WINDOW_MS_MAX} ms")
        if not 0 <= ts_us <= TIMESTAMP_US_MAX:
            raise AuthError(ErrorCode.BAD_PARAM, "ts must be microseconds since the epoch")
        window_us = recv_window_ms * 1_000
        if abs(now_us - ts_us) > window_us:
            raise AuthError(
                ErrorCode.TIMESTAMP_OUT_OF_WINDOW,
                f"ts is {(now_us - ts_us) // 1_000} ms behind the server's clock "
                f"(negative: ahead); recv_window is {recv_window_ms} ms{_unit_slip(ts_us, now_us)}",
            )
        if ts_us < self.started_us:
            raise AuthError(
                ErrorCode.TIMESTAMP_OUT_OF_WINDOW,
                f"ts is {(self.started_us - ts_us) // 1_000} ms before this server started: the"
                " nonces used before it are not remembered, so it may be a replay; sign again",
            )
        secret = UNKNOWN_KEY_SECRET if key is None else key.secret
        expected = signature_with(secret).encode()
        # Compare bytes: compare_digest refuses non-ASCII str, and any sig must just fail.
        signed = hmac.compare_digest(expected, sig.lower().encode())
        if key is None or not signed:
            raise AuthError(ErrorCode.BAD_SIGNATURE, NOT_SIGNED)
        used = self._nonces.get(api_key, {})
        if nonce in used:
            raise AuthError(ErrorCode.NONCE_REUSED, NONCE_REUSED_MESSAGE)
        if len(used) >= NONCES_PER_KEY_MAX:
            # A retry passes once the key's earliest nonce is forgotten: just after its end.
            retry_after_ms = (min(used.values()) - now_us) // 1_000 + 1
            words = RATE_LIMITED_WORDS[KEY_NONCES_LIMIT]
            raise AuthError(ErrorCode.RATE_LIMITED, words, retry_after_ms, KEY_NONCES_LIMIT)
        self._remember(api_key, nonce, ts_us + window_us)
        return key

    def nonces_remembered(self, api_key: str | None = None) -> int:
        """How many nonces are held, for one key or in all; for tests and metrics."""
        if api_key is not None:
            return len(self._nonces.get(api_key, ()))
        return len(self._expiries) - self._forgotten

    def forget(self, api_key: str, nonce: str) -> None:
        """Let `nonce` pass again: its message was refused before anything was done (its
        cluster-wide claim went unanswered), so the same message sent again is no replay
        here; the cluster's claim still decides (`claim_cluster_wide`). O(1): many come at
        once (every claim while NATS fails over); its heap entry is dropped at its time."""
        used = self._nonces.get(api_key, {})
        if used.pop(nonce, None) is None:
            return  # forgotten already: its window is over
        if not used:
            del self._nonces[api_key]
        self._forgotten += 1
        if self._forgotten > max(FORGOTTEN_EXPIRIES_MAX, len(self._expiries) // 2):
            self._rebuild_expiries()

    def _remember(self, api_key: str, nonce: str, until_us: int) -> None:
        used = self._nonces.setdefault(api_key, {})
        # (the heap may still hold an entry of it from before a `forget`: a stale one)
        assert nonce not in used, "a nonce is remembered once, with one expiry"
        used[nonce] = until_us
        heapq.heappush(self._expiries, (until_us, api_key, nonce))

    def _forget_expired(self, now_us: int) -> None:
        # A nonce whose ts + recv_window has passed can only come back in a message that
        # fails the timestamp check, so it need not be remembered any more.
        expiries = self._expiries
        nonces = self._nonces
        while expiries and expiries[0][0] < now_us:
            until_us, api_key, nonce = heapq.heappop(expiries)
            used = nonces.get(api_key)
            if used is None or used.get(nonce) != until_us:
                self._forgotten -= 1  # forgotten before (and maybe remembered anew since)
                continue
            del used[nonce]
            if not used:
                del nonces[api_key]

    def _rebuild_expiries(self) -> None:
        """The heap of the nonces remembered only, without the forgotten ones' entries."""
        self._expiries = [
            (until_us, api_key, nonce)
            for api_key, used in self._nonces.items()
            for nonce, until_us in used.items()
        ]
        heapq.heapify(self._expiries)
        self._forgotten = 0


async def claim_cluster_wide(
    nonces: SharedNonces, auth: Authenticator, api_key: str, nonce: str
) -> None:
    """On a cluster's gateway, after `auth.check` let a message through: AuthError unless no
    gateway of the cluster has used its nonce (`NONCE_REUSED`, as a replay through this one
    is), or if that could not be checked (503 `NONCE_UNCHECKED`: never let through
    unchecked), or `BAD_SIGNATURE` if its key was revoked meanwhile. One round trip to NATS
    per logon or signed request. Unchecked, the nonce is
    forgotten by `auth` again, so the same message can be sent again: the claim it makes
    then takes the nonce only if no gateway has used it (`SharedNonces.claim`)."""
    try:
        first = await nonces.claim(api_key, nonce)
    except NonceUnchecked as unanswered:
        auth.forget(api_key, nonce)
        raise AuthError(ErrorCode.NONCE_UNCHECKED, NONCE_UNCHECKED_MESSAGE) from unanswered
    if not first:
        raise AuthError(ErrorCode.NONCE_REUSED, NONCE_REUSED_MESSAGE)
    if auth.store.get(api_key) is None:  # revoked while the claim was in flight: a session
        raise AuthError(ErrorCode.BAD_SIGNATURE, NOT_SIGNED)  # taking it now would keep it
