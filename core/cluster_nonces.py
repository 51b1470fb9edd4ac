"""The nonces of logons and signed REST requests, claimed cluster-wide in a JetStream KV bucket.

Owns `SharedNonces`: a gateway of a cluster claims each nonce its `Authenticator` let through
(its own memory checked first, in process) by creating the key of (API key, nonce) in
`NONCES_BUCKET` with a create-only write whose value is a token of this claim: the first
gateway to claim a nonce gets it, any other's claim finds the key and the message is a replay.
A claim unanswered (`NonceUnchecked`) may still land; its token is kept, so that the same
message sent again to this gateway is taken when the key holds that token (only this claim,
answered as refused, made it: nobody took the nonce) and refused otherwise. Leaves the
signature, the window and the answers to the gateway. Invariants: a claim is True only if
the key was made by this write or by an unanswered claim of this process whose token it
takes back (once); a key outlives every message that can carry its nonce (`NONCE_TTL_S`);
NATS unanswered is `NonceUnchecked`, never a success. Limits: `CLAIM_TIMEOUT_S`,
`CLAIMS_IN_FLIGHT_MAX`, `UNANSWERED_CLAIMS_MAX`.
"""

import asyncio
import hashlib
import secrets
from typing import Final

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.kv import KeyValue

from core.lease import open_bucket

NONCES_BUCKET: Final = "venue_nonces"
# A message passes the timestamp check until ts + recv_window, and ts may be up to a window
# ahead of the clock: up to two of the longest windows (60 s, gateway/auth.py) after it is
# claimed; plus 10 s for the gateways' clocks to differ (each checks ts against its own).
NONCE_TTL_S: Final = 2 * 60.0 + 10.0
# One round trip to the bucket's leader takes milliseconds; past 2 s NATS is failing over (a
# leader election takes ~3 s): the client is told to sign again rather than kept waiting.
CLAIM_TIMEOUT_S: Final = 2.0
# Each connection has at most one logon or signed request in flight; more claims at once
# than this is a flood, refused as NATS unanswered is (retry later), not queued.
CLAIMS_IN_FLIGHT_MAX: Final = 4_096
# The tokens of unanswered claims kept for a retry of their message: a NATS outage at the
# most claims in flight leaves as many; past it the oldest goes (its retry is refused as a
# replay, and the client signs again: safe, only less convenient).
UNANSWERED_CLAIMS_MAX: Final = 4_096


class NonceUnchecked(Exception):
    """The claim had no answer (NATS unreachable, a leader election, too many at once): the
    nonce may or may not be claimed, so the message is refused; sent again, the same message
    can pass on this gateway (`SharedNonces.claim`), and a new signature can anywhere."""


class SharedNonces:
    """One gateway's handle on the cluster's nonces: claim one, once per cluster."""

    def __init__(self, replicas: int) -> None:
        self.replicas = replicas
        self._kv: KeyValue | None = None
        self._in_flight = 0
        # key -> the token of this process's claim of it that had no answer (it may have
        # landed); in the order they failed, the oldest first out
        self._unanswered: dict[str, bytes] = {}

    async def start(self, nc: Client) -> None:
        """Open the bucket, created when absent (history 1, `NONCE_TTL_S`)."""
        js = nc.jetstream(timeout=CLAIM_TIMEOUT_S)
        self._kv = await open_bucket(js, NONCES_BUCKET, NONCE_TTL_S, self.replicas)

    async def claim(self, api_key: str, nonce: str) -> bool:
        """True when this gateway is the first of the cluster to use `nonce` for `api_key`
        within `NONCE_TTL_S`; False when it was used before (a replay). `NonceUnchecked` when
        NATS did not answer in `CLAIM_TIMEOUT_S` or too many claims are in flight.

        A claim of a nonce whose earlier claim here was unanswered writes that claim's token
        again: the key holding it was made by that claim alone, whose message was refused,
        so nobody has used the nonce and this claim takes it. The caller makes one claim of
        a nonce at a time (the authenticator's memory refuses a second meanwhile)."""
        assert self._kv is not None, "started before the first logon"
        if self._in_flight >= CLAIMS_IN_FLIGHT_MAX:
            raise NonceUnchecked(f"more than {CLAIMS_IN_FLIGHT_MAX} nonce claims in flight")
        key = nonce_key(api_key, nonce)
        token = self._unanswered.pop(key, None) or secrets.token_hex(16).encode()
        self._in_flight += 1
        try:
            return await self._create_or_find(self._kv, key, token)
        except (nats.errors.Error, TimeoutError) as unanswered:
            self._keep_unanswered(key, token)
            raise NonceUnchecked(f"{unanswered!r}") from unanswered
        finally:
            self._in_flight -= 1

    async def _create_or_find(self, kv: KeyValue, key: str, token: bytes) -> bool:
        """Create `key` holding `token`; if it exists, True only when it holds `token`."""
        try:
            await asyncio.wait_for(kv.create(key, token), CLAIM_TIMEOUT_S)
        except nats.js.errors.KeyWrongLastSequenceError:
            pass  # the key exists: another message used this nonce, or an unanswered claim
        else:
            return True
        try:
            entry = await asyncio.wait_for(kv.get(key), CLAIM_TIMEOUT_S)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return False  # gone since (expired): the nonce is past any window
        return entry.value == token

    def _keep_unanswered(self, key: str, token: bytes) -> None:
        if len(self._unanswered) >= UNANSWERED_CLAIMS_MAX:
            del self._unanswered[next(iter(self._unanswered))]  # the oldest
        self._unanswered[key] = token


def nonce_key(api_key: str, nonce: str) -> str:
    """The bucket key of a key's nonce: a digest, since a nonce may hold any printable ASCII
    and a KV key only letters, digits and `-_=./`; "\\n" parts the two (neither holds one)."""
    return hashlib.sha256(f"{api_key}\n{nonce}".encode()).hexdigest()
