"""The gateway's named limits and its token-bucket rate limiters.

Owns every size, count and rate bound the server enforces, each with the reason for its
number, and the arithmetic of rate limiting: a bucket per connection and a bucket per
account (shared by all the account's connections, its read-only keys' only down to a share
kept for its trade and admin keys: half the burst, at least the dearest request, so that one
always finds its tokens; at the smallest burst, 100, only half: `account_burst_kept`); a
request must fit both. Leaves the error responses and the clock to the server: the time is
always passed in (`now_us`).
Invariants: integer arithmetic only (milli-tokens, µs), so refills and `retry_after_ms` are
exact; a refused request takes nothing from any bucket; a bucket never holds more than its
burst; every valid request costs at most a bucket's burst, so it can always eventually pass.
"""

import ipaddress
from collections.abc import Iterable

MESSAGE_BYTES_MAX = 64 * 1024  # the largest valid request (a full quote.mass) is ~10 KiB
# A frame above MESSAGE_BYTES_MAX but within this is answered (MESSAGE_TOO_BIG) behind what the
# connection is owed; beyond it the transport closes at once (1009): four times the limit is
# abuse, not a mistake, and the read queue (16 frames) holds at most 4 MiB per connection.
FRAME_BYTES_HARD_MAX = 4 * MESSAGE_BYTES_MAX
BATCH_OPS_MAX = 20  # PROTOCOL: order.batch takes up to 20 ops
QUOTES_PER_MASS_MAX = 100  # one quote per listed symbol for a market maker, with room to grow
SUBSCRIPTIONS_PER_CONNECTION_MAX = 256  # every channel of ~50 symbols; bounds fan-out work
SEND_QUEUE_MESSAGES_MAX = 4_096  # seconds of a busy feed; a client further behind is gone
# ... and in bytes, once a large message (a snapshot, a long answer) would join the queue of a
# peer that stopped taking writes: 4,096 deep-book snapshots would be ~200 MB. Room for the
# largest honest burst, every stream a connection may follow at the deepest tier at once
# (256 x ~50 KB, 13 MB), twice over.
SEND_QUEUE_BYTES_MAX = 32 * 1024 * 1024
LARGE_MESSAGE_BYTES = 4 * 1024  # a message at least this large is checked against the bytes
# A full queue behind a socket that takes no more is not cut at once: one command's pushes to
# one connection (an `orders.cancel_all` of an account's 20,000 orders, a taker filling
# thousands of one maker's orders) are all queued in one turn of the loop, before the client
# can read any. It may grow on, to `SEND_QUEUE_BYTES_MAX` (counted for every message then),
# while in each period of this many seconds the client takes at least `SEND_QUEUE_DRAIN_MIN`
# of them and, from the second period on, its backlog shrinks, until it is back under
# `SEND_QUEUE_MESSAGES_MAX`. A reader that keeps up takes tens of thousands a second; one
# that stopped is cut off within the period, one that falls behind a feed within two.
SEND_QUEUE_OVERFLOW_S = 2
# ... 512 messages a second: a hundredth of what the SDK read on loopback (50,000 a second,
# session 25), so an honest reader passes on a loaded machine too, while one that takes a
# trickle is cut off, not kept until its queue reaches the bytes.
SEND_QUEUE_DRAIN_MIN = 1_024
# Frames a connection may send while one of its requests waits for a quote's place in flight
# (a cluster's gateway, `HeldRequests.hold`: about one round trip to the core, longer through a
# failover), and their bytes; more and it is closed, 1008: they are held in memory meanwhile
HELD_FRAMES_MAX = 1_024
HELD_BYTES_MAX = 4 * 1024 * 1024  # 16 connections of an account: 64 MiB at most
# How long such a request waits before it is refused (`QUOTE_PLACE_PENDING`, nothing done):
# a place comes back in about a millisecond, through a NATS leader election in a few seconds;
# a core's failover takes its lease's TTL (10 s). A market maker would rather hear at once
# that its quote is stuck than requote blind into a queue; the slot stays blocked (no second
# quote beside the one on its way) until the place's outcome is back, and is free at once then.
QUOTE_PLACE_WAIT_S = 5.0
LOGON_TIMEOUT_S = 10  # PROTOCOL: a trade connection not logged on within 10 s is closed
LOGON_TIMEOUT_CLOSE_CODE = 4001  # its close code (the SDK does not resume it)
HEARTBEAT_INTERVAL_S = 1  # PROTOCOL: a heartbeat after 1 s of silence
PRIVATE_HISTORY_EVENTS_MAX = 10_000  # covers a reconnect after a busy minute; else snapshot
# The same across all accounts. Without it every account kept its 10,000: ~440 bytes an
# event in memory, ~356 in a snapshot, so 400 busy accounts held 4 M events, 1.8 GB, and
# ~1.4 GB of every snapshot (1.56 GB in all at 2.24 M commands: docs/gateway.md, "A long
# run"), and its capture stalled answers for seconds, then ~30 s.
# 500,000 (~220 MB; 50 accounts at the per-account bound), as the closed orders'. Past it
# the longest histories are cut first, to one common depth, down to
# `PRIVATE_HISTORY_EVENTS_TRIMMED` (a margin: not one cut per check); a since_seq cut off
# gets a snapshot, as it does past the per-account bound.
PRIVATE_HISTORY_EVENTS_TOTAL_MAX = 500_000
PRIVATE_HISTORY_EVENTS_TRIMMED = 450_000
# The total is checked at each command whose seq is a multiple of this (not per command: it
# may pass the bound by what that many commands push), after its pushes joined the histories:
# live and on replay alike, so what is kept is a function of the stream (a recovery, every
# gateway of a cluster: the same).
PRIVATE_HISTORY_CHECK_COMMANDS = 1_024
# Closed orders `order.status` and `orders.history` still answer for, per account: as deep as
# the private history, so a closed order outlives its exec reports there; at ~600 bytes each
# that is ~6 MB of memory (and ~3 MB of every snapshot) per account. Oldest closed go first.
CLOSED_ORDERS_PER_ACCOUNT_MAX = 10_000
# The same across all accounts, so many accounts cannot grow memory without bound: ~300 MB
# (50 accounts at the per-account bound). Past it the venue's oldest closed order goes first,
# whichever account's it was.
CLOSED_ORDERS_TOTAL_MAX = 500_000
CONNECTIONS_PER_ACCOUNT_MAX = 16  # a few bots and a UI; bounds the private stream's fan-out
# Of those, the ones kept for the account's keys with the trade or admin scope: a read-only
# key (handed to a reporting tool or a third party) may hold only the rest, so it cannot
# lock the account's trading bots (or its operator) out by holding every connection.
CONNECTIONS_KEPT_FOR_TRADING = 4
# Likewise the share of the account's rate bucket (`account_burst`) its read-only keys may not
# spend (`ReadOnlyShare`): half (rounded up), so a reporting tool still reads 1,000 times at
# once by default (500 tokens; a report needs tens), while the trade and admin keys always
# find 500 tokens, five full `quote.mass` or a reconnect's resync and a cancel storm, and all
# the refill below it. Never less than the dearest request, though (`account_burst_kept`).
ACCOUNT_BURST_KEPT_FOR_TRADING_PCT = 50
# What a 429 `RATE_LIMITED` names in its `data` (`{"limit": ...}`) when the account's bucket
# refused a read-only key, spent but for that share (the other limits are below)
READ_ONLY_LIMIT = "read_only"
# Open TCP connections (websocket, REST, web page) from one client IP: several accounts'
# bots and UIs behind one office NAT fit; past it, opening more connections to get more
# per-connection rate budget (unsigned requests, market data) is refused. `[limits]`.
CONNECTIONS_PER_IP_MAX = 256
# ... and from everyone: each is a file descriptor and ~100 KiB of buffers and queues at
# rest; under a raised open-file limit (20,000 here) with room for the journal and logs.
CONNECTIONS_MAX = 10_000
# The share of `connections_max` kept for trading sessions (`/ws/trade`, whose connection
# is closed unless it logs on within 10 s, and REST connections with a validly signed
# request): public ones (`/ws/public`, the web page, unsigned REST) fill only the rest, so
# idle market-data connections (40 addresses x 256 fill 10,000) cannot shut the traders
# out. 10%: 1,000 of the default, 16 connections for each of ~60 accounts. `[limits]`.
CONNECTIONS_RESERVED_PCT = 10
# A connection not yet a trading session's (from its accept until its first request says it
# is public or a signed REST request's, and a `/ws/trade` one until it logs on) waits in the
# reserve only within this many per client IP (an IPv6 one by its /64), past them in a public
# place if one is free, else it is refused: a trader's bot opening a few connections at once
# fits, while a handful of addresses that never log on hold a few dozen of the reserve's
# places, not all (10 s each, 35 a second from 4 addresses filled 1,000). `[limits]`.
PENDING_PER_IP_MAX = 8
# Open files the venue keeps besides its connections: journal, snapshots, SQLite and its WAL,
# logs, NATS and PostgreSQL sockets, the listening sockets, the event loop's own; ample room.
# `venue serve` needs `connections_max` plus this under its open-file limit (RLIMIT_NOFILE).
OPEN_FILES_RESERVE = 1_024
# What a refused connection is told (`Retry-After`): a connection of the peer's may close.
CONNECTION_REFUSED_RETRY_AFTER_S = 1
# How long a refused connection may take to send the request its refusal answers: it
# holds a socket meanwhile, uncounted, so much less than an admitted one's handshake time.
CONNECTION_REFUSED_TIMEOUT_S = 2
# Refused connections held so at once: a flood of connects past the caps would otherwise
# hold sockets beyond `connections_max`; past it one is closed at once, unanswered.
REFUSED_HELD_MAX = 1_024
REQUEST_ID_LENGTH_MAX = 36  # PROTOCOL: a string id is at most 36 chars (a UUID)

US_PER_S = 1_000_000
US_PER_MS = 1_000
MILLI = 1_000  # milli-tokens per token

# Default rates: a busy market maker's steady flow fits, a runaway loop is cut within a second.
CONNECTION_RATE_PER_S = 200  # requotes of ~50 symbols several times a second
CONNECTION_BURST = 400  # two seconds of that: a reconnect's resync or a cancel storm passes
ACCOUNT_RATE_PER_S = 500  # above one connection's rate, so an account can spread its flow
ACCOUNT_BURST = 1_000  # bounds what all the account's connections together can dump at once

# Costs in milli-tokens. Places and amends add risk and book work; cancels remove risk and
# must stay cheap so a client can always pull its orders; queries only read.
PLACE_COST_MILLI = 1_000  # the unit: one order placed is one token
AMEND_COST_MILLI = 1_000  # an amend can move price and size: as much work as a place
CANCEL_COST_MILLI = 250  # four cancels per place: pulling quotes must never be starved
QUERY_COST_MILLI = 500  # also anything else: a malformed or unknown request still costs
QUOTE_COST_MILLI = 1_000  # per quote of quote.mass: it replaces a bid and an ask, post-only

METHOD_COST_MILLI: dict[str, int] = {
    "order.place": PLACE_COST_MILLI,
    "order.amend": AMEND_COST_MILLI,
    "order.cancel": CANCEL_COST_MILLI,
    "orders.cancel_all": CANCEL_COST_MILLI,
    "orders.cancel_after": CANCEL_COST_MILLI,  # the dead-man's switch is re-armed often
    "order.batch": PLACE_COST_MILLI,  # per op, when the ops' kinds are not given
    "quote.mass": QUOTE_COST_MILLI,  # per quote
}
BATCH_OP_COST_MILLI: dict[str, int] = {
    method: METHOD_COST_MILLI[method] for method in ("order.place", "order.amend", "order.cancel")
}
# The requests whose cost scales with `ops`, and the most ops a valid one has.
OPS_MAX_BY_METHOD: dict[str, int] = {
    "order.batch": BATCH_OPS_MAX,
    "quote.mass": QUOTES_PER_MASS_MAX,
}
REQUEST_COST_MILLI_MAX = max(
    BATCH_OPS_MAX * PLACE_COST_MILLI, QUOTES_PER_MASS_MAX * QUOTE_COST_MILLI
)


def cost_milli(method: str, ops: int = 1) -> int:
    """What one request costs. `ops` counts a batch's ops or a quote.mass's quotes.

    `ops` is clamped to 1..the method's maximum: an oversized request is refused by
    validation anyway, but it still pays the most a valid one would, and no cost can exceed
    a bucket's burst (which would refuse it forever).
    """
    ops_max = OPS_MAX_BY_METHOD.get(method, 1)
    return METHOD_COST_MILLI.get(method, QUERY_COST_MILLI) * min(max(ops, 1), ops_max)


def batch_cost_milli(op_methods: Iterable[str]) -> int:
    """The exact cost of an order.batch: the sum of its ops ("order.place", ...).

    Unknown kinds cost as a place; an empty batch as one op; past `BATCH_OPS_MAX` only the
    dearest ops count, as `cost_milli` clamps.
    """
    costs = [BATCH_OP_COST_MILLI.get(method, PLACE_COST_MILLI) for method in op_methods]
    if len(costs) > BATCH_OPS_MAX:  # only an invalid batch: no sort for the valid ones
        costs = sorted(costs, reverse=True)[:BATCH_OPS_MAX]
    return sum(costs) or PLACE_COST_MILLI


class TokenBucket:
    """`rate_per_s` tokens a second, up to `burst` held; starts full.

    The level is kept in milli-tokens * µs-per-second, so a refill of `elapsed_us` adds
    exactly `elapsed_us * rate_per_s * MILLI / US_PER_S` milli-tokens with no rounding.
    `full_at_us` is the first µs at which the bucket is full again: a request at or after it
    finds the bucket full without the refill's arithmetic (`RateLimiter.charge_cost`).
    """

    __slots__ = (
        "_level",
        "_updated_us",
        "burst",
        "capacity",
        "full_at_us",
        "rate_per_s",
        "refill_per_us",
    )

    def __init__(self, rate_per_s: int, burst: int) -> None:
        assert rate_per_s > 0, f"rate must be positive, got {rate_per_s}"
        assert burst > 0, f"burst must be positive, got {burst}"
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.capacity = burst * MILLI * US_PER_S
        self.refill_per_us = rate_per_s * MILLI  # scaled units added per µs
        self._level = self.capacity
        # When `_level` was last set. 0 at the start, when the bucket is full whatever the
        # time (a refill is capped at `capacity`): no None to test for on every charge.
        self._updated_us = 0
        self.full_at_us = 0  # full from the start

    def retry_after_ms(self, cost_milli: int, now_us: int) -> int:
        """0 if `cost_milli` could be taken now, else the ms until it could. Takes nothing."""
        assert 0 < cost_milli <= self.burst * MILLI, (
            f"a cost of {cost_milli} milli-tokens can never fit a burst of {self.burst}"
        )
        deficit = cost_milli * US_PER_S - self.level(now_us)
        if deficit <= 0:
            return 0
        wait_us = -(-deficit // self.refill_per_us)  # ceiling: the first µs it fits
        return -(-wait_us // US_PER_MS)

    def take(self, cost_milli: int, now_us: int) -> int:
        """Take `cost_milli` and return 0, or take nothing and return the retry_after_ms."""
        retry_after_ms = self.retry_after_ms(cost_milli, now_us)
        if retry_after_ms == 0:
            self.spend(self.level(now_us) - cost_milli * US_PER_S, now_us)
        return retry_after_ms

    def level(self, now_us: int) -> int:
        """The scaled level at `now_us`, refilled: what `spend` takes from."""
        updated_us = self._updated_us
        if now_us <= updated_us:  # the clock may step back: no refill
            return self._level
        level = self._level + (now_us - updated_us) * self.refill_per_us
        return level if level < self.capacity else self.capacity

    def spend(self, level: int, now_us: int) -> None:
        """Leave `level` (scaled; from `level(now_us)` less a cost) as of `now_us`."""
        assert level >= 0, f"a bucket cannot go below empty ({level})"
        self._level = level
        updated_us = self._updated_us
        self._updated_us = updated_us = now_us if now_us > updated_us else updated_us
        # ceiling: the first µs whose refill makes up the deficit
        self.full_at_us = updated_us - (level - self.capacity) // self.refill_per_us

    def take_with(self, connection: "TokenBucket", need: int, now_us: int) -> int:
        """`RateLimiter.charge_cost` of a logged-on request, this the account's bucket, when a
        bucket is not full (a client near its rate): take `need` (scaled) from both or
        neither, each refilled once; only a refusal computes its wait, the longer."""
        connection_level = connection.level(now_us)
        owner_level = self.level(now_us)
        if connection_level < need or owner_level < need:
            cost_milli = need // US_PER_S
            return max(
                connection.retry_after_ms(cost_milli, now_us),
                self.retry_after_ms(cost_milli, now_us),
            )
        connection.spend(connection_level - need, now_us)
        self.spend(owner_level - need, now_us)
        return 0

    def available_milli(self, now_us: int) -> int:
        """Whole milli-tokens available at `now_us`."""
        return self.level(now_us) // US_PER_S


# The limits a 429 `RATE_LIMITED` names in its `data` (`{"limit": ...}`) and its words: the
# connection's bucket, the account's (shared by all its connections: another may have spent
# it), the client IP's (REST's unsigned requests and refused signatures, refused logons), or
# the key's live nonces (`auth.NONCES_PER_KEY_MAX`: its logons and signed REST requests
# within their windows; since session 31, before, that 429 named none).
CONNECTION_LIMIT, ACCOUNT_LIMIT, IP_LIMIT = "connection", "account", "ip"
KEY_NONCES_LIMIT = "key_nonces"
RATE_LIMITED_WORDS = {
    CONNECTION_LIMIT: "slow down: this connection's rate limit is spent",
    ACCOUNT_LIMIT: "slow down: this account's rate limit is spent (all its connections share it)",
    READ_ONLY_LIMIT: (
        "slow down: this account's rate limit is spent but for the share kept for its trade and"
        " admin keys (all its connections share it)"
    ),
    IP_LIMIT: "slow down: too many requests from your address",
    # (REST says "signed requests and logons of this key": `rest.HEADER_WORDS`)
    KEY_NONCES_LIMIT: "slow down: too many logons of this key within the replay window"
    " (1,024 live nonces at most)",
}
# The scopes of the keys an account's kept connections and kept share of its rate are for
# (`CONNECTIONS_KEPT_FOR_TRADING`, `ACCOUNT_BURST_KEPT_FOR_TRADING_PCT`). Any other key is
# read-only, a scope added one day too until it is listed here: a new scope gets that
# precedence over a reporting tool only by a decision, never by default.
OWNER_SCOPES = frozenset({"trade", "admin"})


def is_read_only(scopes: frozenset[str]) -> bool:
    """Whether a key of these scopes is read-only: it neither trades nor administers."""
    return OWNER_SCOPES.isdisjoint(scopes)


def account_bucket(account: int, scopes: frozenset[str]) -> int:
    """Which account bucket of `RateLimiter` a key of `account` with `scopes` is charged to:
    the account's id, or, for a read-only key, its negative, the account's `ReadOnlyShare`
    (account ids are positive). Worked out once per logon or signed request."""
    assert account > 0, f"account ids are positive, got {account}"
    return -account if is_read_only(scopes) else account


NEVER_US = 2**63  # a time no clock reaches: `ReadOnlyShare.full_at_us`


def account_burst_kept(account_burst: int) -> int:
    """The tokens of an account's bucket its read-only keys may not spend (`ReadOnlyShare`):
    half the burst, rounded up, but at least the dearest valid request (a `quote.mass` of
    100 quotes, 100 tokens), which a hammering reader could otherwise hold off for good: it
    needs more than the half of a burst below 200, and the reader takes each token above
    the half as it comes. So from 101 to 199 the readers have the burst less 100 (1 to 99
    tokens, all of the refill above that), and the dearest trade request always finds its
    tokens. At 100, the smallest `account_burst`, keeping the dearest would leave the
    readers nothing: the half is kept, and a request dearer than 50 tokens (a `quote.mass`
    of 51 or more) may wait on a reader that hammers; any other passes as at every burst."""
    half = -(-account_burst * ACCOUNT_BURST_KEPT_FOR_TRADING_PCT // 100)
    kept = max(half, REQUEST_COST_MILLI_MAX // MILLI)
    return kept if kept < account_burst else half


class ReadOnlyShare(TokenBucket):
    """What an account's read-only keys may spend of its bucket: all but the share kept for
    its trade and admin keys (`account_burst_kept`). It holds no tokens of its own: its level
    is the account bucket's less that share, and what it spends the account's, so the
    account has one budget, whichever of its keys spends it, and its trade and admin keys
    always find the kept share. A bucket of that smaller burst, as `RateLimiter` and
    `take_with` use one: never full (`RateLimiter.charge_cost` takes no shortcut through
    it), and a request dearer than all of it (only one its scope refuses, under an
    `account_burst` below 200) is charged all of it, so it too is answered once that is there.
    """

    __slots__ = ("_account", "_kept")

    def __init__(self, account: TokenBucket) -> None:
        kept = account_burst_kept(account.burst)
        super().__init__(account.rate_per_s, account.burst - kept)
        self._account = account
        self._kept = kept * MILLI * US_PER_S  # scaled, as a level
        self.full_at_us = NEVER_US

    def level(self, now_us: int) -> int:
        """The account's level less the kept share: below 0 while the other keys spend it."""
        return self._account.level(now_us) - self._kept

    def spend(self, level: int, now_us: int) -> None:
        self._account.spend(level + self._kept, now_us)

    def retry_after_ms(self, cost_milli: int, now_us: int) -> int:
        return super().retry_after_ms(min(cost_milli, self.burst * MILLI), now_us)

    def take(self, cost_milli: int, now_us: int) -> int:
        return super().take(min(cost_milli, self.burst * MILLI), now_us)

    def take_with(self, connection: TokenBucket, need: int, now_us: int) -> int:
        """`TokenBucket.take_with`: the connection charged the whole cost, this share at most
        all of it."""
        cost_milli = need // US_PER_S
        retry_after_ms = max(
            connection.retry_after_ms(cost_milli, now_us), self.retry_after_ms(cost_milli, now_us)
        )
        if retry_after_ms == 0:
            connection.take(cost_milli, now_us)
            self.take(cost_milli, now_us)
        return retry_after_ms


class RateLimiter:
    """A bucket per connection and per account; a request is charged to both or neither.

    A request is charged to the account bucket its key's logon named (`account_bucket`): an
    account's read-only keys spend its one bucket through its `ReadOnlyShare`, so they never
    take the share kept for its trade and admin keys (as they cannot take the connections kept for
    them, `CONNECTIONS_KEPT_FOR_TRADING`), and all its keys together never more than it.
    Account buckets are kept for the life of the process (accounts are few and configured),
    so reconnecting never resets an account's budget; connection buckets go on disconnect.
    """

    def __init__(
        self,
        connection_rate_per_s: int = CONNECTION_RATE_PER_S,
        connection_burst: int = CONNECTION_BURST,
        account_rate_per_s: int = ACCOUNT_RATE_PER_S,
        account_burst: int = ACCOUNT_BURST,
    ) -> None:
        for burst in (connection_burst, account_burst):
            assert burst * MILLI >= REQUEST_COST_MILLI_MAX, (
                f"a burst of {burst} cannot hold the largest valid request"
            )
        self.connection_rate_per_s = connection_rate_per_s
        self.connection_burst = connection_burst
        self.account_rate_per_s = account_rate_per_s
        self.account_burst = account_burst
        self._connections: dict[int, TokenBucket] = {}
        # by `account_bucket`: each account's bucket, and its read-only keys' share of it
        self._accounts: dict[int, TokenBucket] = {}

    def charge(
        self, connection_id: int, account: int | None, method: str, ops: int, now_us: int
    ) -> int:
        """Charge one request: 0 if allowed, else the retry_after_ms (nothing charged).

        `account` is the logon's `account_bucket`, None before logon: only the connection's
        bucket applies then.
        """
        return self.charge_cost(connection_id, account, cost_milli(method, ops), now_us)

    def charge_cost(
        self, connection_id: int, account: int | None, cost_milli: int, now_us: int
    ) -> int:
        """`charge` with the cost given, e.g. `batch_cost_milli` of a decoded batch."""
        assert cost_milli in _VALID_COSTS_MILLI, (
            f"a cost of {cost_milli} milli-tokens is outside any valid request"
        )
        need = cost_milli * US_PER_S
        connection = self._connections.get(connection_id)
        if connection is None:
            connection = self._connection_bucket(connection_id)
        if account is None:
            connection_level = connection.level(now_us)
            if connection_level < need:
                return connection.retry_after_ms(cost_milli, now_us)
            connection.spend(connection_level - need, now_us)
            return 0
        owner = self._accounts.get(account)
        if owner is None:
            owner = self._account_bucket(account)
        if now_us >= connection.full_at_us and now_us >= owner.full_at_us:
            # Both full, the usual (a client within its rates is refilled between its
            # requests): each is left at its capacity less the cost, as of now, and full
            # again once the cost is refilled. `spend` written out, without the refill.
            connection._level = connection.capacity - need
            connection._updated_us = now_us
            connection.full_at_us = now_us - (-need // connection.refill_per_us)
            owner._level = owner.capacity - need
            owner._updated_us = now_us
            owner.full_at_us = now_us - (-need // owner.refill_per_us)
            return 0
        return owner.take_with(connection, need, now_us)

    def refusing_limit(
        self, connection_id: int, account: int | None, cost_milli: int, now_us: int
    ) -> str:
        """Which bucket refused a request `charge_cost` refused at `now_us` (asked only then:
        the charge itself costs nothing more): the one whose wait is the `retry_after_ms`
        told, the account's when both wait as long (the one the client cannot see spent)."""
        connection = self._connection_bucket(connection_id)
        waited = connection.retry_after_ms(cost_milli, now_us)
        if account is None:
            return CONNECTION_LIMIT
        owner = self._account_bucket(account)
        if owner.retry_after_ms(cost_milli, now_us) >= waited:
            return account_limit(account)
        return CONNECTION_LIMIT

    def charge_account(self, account: int, cost_milli: int, now_us: int) -> int:
        """Charge the account bucket (`account_bucket`) alone: 0 if allowed, else the
        retry_after_ms. For a front door that charged the connection before the request said
        who it was (REST)."""
        return self._account_bucket(account).take(cost_milli, now_us)

    def drop_connection(self, connection_id: int) -> None:
        self._connections.pop(connection_id, None)

    def connection_count(self) -> int:
        return len(self._connections)

    def _connection_bucket(self, connection_id: int) -> TokenBucket:
        bucket = self._connections.get(connection_id)
        if bucket is None:
            bucket = TokenBucket(self.connection_rate_per_s, self.connection_burst)
            self._connections[connection_id] = bucket
        return bucket

    def _account_bucket(self, account: int) -> TokenBucket:
        """The bucket `account_bucket` named, made when first used: the account's, or its
        read-only keys' share of it."""
        bucket = self._accounts.get(account)
        if bucket is None:
            if account < 0:
                bucket = ReadOnlyShare(self._account_bucket(-account))
            else:
                bucket = TokenBucket(self.account_rate_per_s, self.account_burst)
            self._accounts[account] = bucket
        return bucket


def account_limit(account: int) -> str:
    """The limit a 429 names when the account bucket `account` (`account_bucket`) refused."""
    return READ_ONLY_LIMIT if account < 0 else ACCOUNT_LIMIT


IPV6_CLIENT_PREFIX = 64  # a host is commonly given a whole /64: its addresses count as one


def address_key(ip: str) -> str:
    """The key a client's address is counted under by the per-IP limits: an IPv4 address as
    itself (an IPv4-mapped IPv6 one as its IPv4), an IPv6 address by its /64, since one host
    holds a whole /64 and would otherwise open 256 connections from each of its addresses."""
    if ":" not in ip:
        return ip
    try:
        address = ipaddress.IPv6Address(ip.partition("%")[0])  # a link-local's %zone dropped
    except ValueError:
        return ip
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))


class ConnectionCounts:
    """The open connections per client IP and in total, against their caps: a connection is
    admitted (counted until `release`) or refused (not counted there; held to be answered
    while fewer than `refused_held_max` are: `hold_refused`). An admitted connection that
    turns out to be public (`/ws/public`, the web page, unsigned REST) is counted among the
    public ones too (`admit_public`), which may fill `connections_max` only up to
    `public_max`: the rest, `reserved_pct` of it, is kept for trading sessions. One not yet
    classified (nor a logged-on `/ws/trade` one) may use that rest only within its IP's
    `pending_per_ip_max` (`admit_pending`). Pure: the transport asks at accept, at the first
    request and at logon, and tells at close."""

    def __init__(
        self,
        per_ip_max: int = CONNECTIONS_PER_IP_MAX,
        total_max: int = CONNECTIONS_MAX,
        refused_held_max: int = REFUSED_HELD_MAX,
        reserved_pct: int = CONNECTIONS_RESERVED_PCT,
        pending_per_ip_max: int = PENDING_PER_IP_MAX,
    ) -> None:
        assert per_ip_max > 0 and total_max > 0, f"caps must be positive: {per_ip_max}, {total_max}"
        assert 0 <= reserved_pct < 100, f"a reserve is 0 to 99% of the cap, not {reserved_pct}"
        self.per_ip_max = per_ip_max
        self.total_max = total_max
        self.total = 0
        # at least 1: the reserve, rounded down, is less than the whole
        self.public_max = total_max - total_max * reserved_pct // 100
        self.public = 0  # admitted connections counted as public: at most `public_max`
        self.refused_held_max = refused_held_max
        self.refused_held = 0  # refused connections awaiting their answer
        self._per_ip: dict[str, int] = {}  # only IPs with an open connection: bounded by total
        assert pending_per_ip_max > 0, f"pending_per_ip_max must be positive: {pending_per_ip_max}"
        self.pending_per_ip_max = pending_per_ip_max
        # connections in the reserve that are not a trading session's yet, per IP (only IPs
        # with one: bounded by total)
        self._pending_per_ip: dict[str, int] = {}

    def admit(self, ip: str) -> str | None:
        """Count a new connection from `ip` and return None, or return why it is refused
        (one line, for the client) and count nothing."""
        if self.total >= self.total_max:
            return f"the venue has its most connections ({self.total_max}); retry later"
        open_from_ip = self._per_ip.get(ip, 0)
        if open_from_ip >= self.per_ip_max:
            return f"at most {self.per_ip_max} connections from one address; close one first"
        self._per_ip[ip] = open_from_ip + 1
        self.total += 1
        return None

    def release(self, ip: str) -> None:
        """An admitted connection from `ip` closed."""
        open_from_ip = self._per_ip[ip]
        assert open_from_ip > 0 and self.total > 0, f"{ip} released more than admitted"
        self.total -= 1
        if open_from_ip == 1:
            del self._per_ip[ip]
        else:
            self._per_ip[ip] = open_from_ip - 1

    def admit_public(self) -> str | None:
        """Count an admitted connection as public and return None, or return why it may not
        be one (one line, for the client) and count nothing."""
        if self.public >= self.public_max:
            kept = self.total_max - self.public_max
            return (
                f"the venue has its most public connections ({self.public_max}; {kept} more"
                " are kept for /ws/trade and signed REST); retry later"
            )
        self.public += 1
        return None

    def release_public(self) -> None:
        """A connection counted as public closed, or became a trading session's."""
        assert self.public > 0, "released more public connections than admitted"
        self.public -= 1

    def admit_pending(self, ip: str) -> str | None:
        """Count an admitted connection from `ip` that is not a trading session's yet among
        those waiting in the reserve and return None; or return why it may not wait there
        (one line, for the client) and count nothing: its IP has `pending_per_ip_max` there
        already (the caller then tries a public place)."""
        waiting = self._pending_per_ip.get(ip, 0)
        if waiting >= self.pending_per_ip_max:
            kept = self.total_max - self.public_max
            return (
                f"the venue has its most public connections ({self.public_max}), and at most"
                f" {self.pending_per_ip_max} connections from one address may wait to log on"
                f" in the {kept} kept for /ws/trade and signed REST; retry later"
            )
        self._pending_per_ip[ip] = waiting + 1
        return None

    def release_pending(self, ip: str) -> None:
        """A connection counted by `admit_pending` closed, or is classified now."""
        waiting = self._pending_per_ip[ip]
        assert waiting > 0, f"{ip} released more pending connections than admitted"
        if waiting == 1:
            del self._pending_per_ip[ip]
        else:
            self._pending_per_ip[ip] = waiting - 1

    def pending_from(self, ip: str) -> int:
        return self._pending_per_ip.get(ip, 0)

    @property
    def pending(self) -> int:
        """The connections waiting in the reserve, from every IP (for tests and stats)."""
        return sum(self._pending_per_ip.values())

    def hold_refused(self) -> bool:
        """Hold a refused connection until it is answered (True), or not: closed at once."""
        if self.refused_held >= self.refused_held_max:
            return False
        self.refused_held += 1
        return True

    def release_refused(self) -> None:
        """A held refused connection closed."""
        assert self.refused_held > 0, "released more refused connections than held"
        self.refused_held -= 1

    def open_from(self, ip: str) -> int:
        return self._per_ip.get(ip, 0)


# The web page's files (and any other path neither REST nor websocket: a 404 costs the same)
# per client IP: the page is 10 files, so a burst of 10 page loads at once (browsers behind
# one NAT, reloads), then 2 a second; a client that polls them faster only loads the venue.
PAGE_FILES_RATE_PER_S = 20
PAGE_FILES_BURST = 100
# The IPs whose bucket is kept: ~200 bytes each, ~13 MB. Past it the longest-kept one is
# forgotten, so that IP starts full again: in its favour, never against an honest client.
ADDRESSES_TRACKED_MAX = 65_536
# REST's unsigned requests (public reads: ticker, book, trades...) per client IP, in tokens
# (a read costs 0.5): five connections' worth, so a normal client never meets it, while one
# IP's 256 connections can no longer send 256 times one connection's rate. `[limits]`.
UNSIGNED_RATE_PER_IP_PER_S = 5 * CONNECTION_RATE_PER_S
UNSIGNED_BURST_PER_IP_FACTOR = 2  # two seconds of it, as a connection's burst is


class AddressBuckets:
    """A token bucket per client IP: for the requests that no connection's or account's
    bucket charges (the web page's files, a token each), and for REST's unsigned requests,
    which a connection's bucket alone would let one IP multiply by its connections."""

    def __init__(
        self,
        rate_per_s: int = PAGE_FILES_RATE_PER_S,
        burst: int = PAGE_FILES_BURST,
        tracked_max: int = ADDRESSES_TRACKED_MAX,
    ) -> None:
        assert tracked_max > 0, f"tracked_max must be positive, got {tracked_max}"
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.tracked_max = tracked_max
        self._buckets: dict[str, TokenBucket] = {}  # insertion order: the oldest first

    def take(self, ip: str, now_us: int, cost_milli: int = MILLI) -> int:
        """Charge one request from `ip`: 0 if allowed, else the retry_after_ms (nothing
        charged)."""
        return self._bucket(ip).take(cost_milli, now_us)

    def retry_after_ms(self, ip: str, now_us: int, cost_milli: int = MILLI) -> int:
        """0 if `take` would pass now, else the ms until it would. Takes nothing: lets a
        request be checked against another bucket before either is charged."""
        return self._bucket(ip).retry_after_ms(cost_milli, now_us)

    def _bucket(self, ip: str) -> TokenBucket:
        bucket = self._buckets.get(ip)
        if bucket is None:
            if len(self._buckets) >= self.tracked_max:
                del self._buckets[next(iter(self._buckets))]
            bucket = self._buckets[ip] = TokenBucket(self.rate_per_s, self.burst)
        return bucket

    def tracked(self) -> int:
        return len(self._buckets)


# The addresses of `X-Forwarded-For` looked at, from its right: a chain of proxies is a few
# hops; a longer header is a client's padding, and past this the nearest hop read is taken.
FORWARDED_HOPS_MAX = 16

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """Who a request is from, behind reverse proxies: for a connection from one of the
    trusted proxies the client is the last address of `X-Forwarded-For` (all its lines joined
    in order, read from its right) that is not itself a trusted proxy; from any other peer
    the header is ignored, since anyone can send it. Pure: the server passes in the peer and
    the header."""

    def __init__(self, networks: Iterable[Network] = ()) -> None:
        self.networks = tuple(networks)  # `core.config.trusted_networks` of the config

    def trusts(self, ip: str) -> bool:
        if not self.networks:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:  # not an IP (a unix socket's ""): never a trusted proxy
            return False
        return any(address in network for network in self.networks)

    def client_ip(self, peer_ip: str, forwarded_for: str | None) -> str:
        """The client's IP: `peer_ip` unless it is a trusted proxy that says, in
        `forwarded_for`, whom it forwards for. Walking the header from its right, each
        trusted hop hands over to the address left of it; the first untrusted one is the
        client. An entry that is not an IP, or a header that ends (or runs past
        `FORWARDED_HOPS_MAX`) in trusted hops, leaves the nearest hop read: what a
        trusted proxy vouched for, never a client's word."""
        if not forwarded_for or not self.trusts(peer_ip):
            return peer_ip
        client = peer_ip
        for entry in reversed(forwarded_for.split(",")[-FORWARDED_HOPS_MAX:]):
            try:
                hop = str(ipaddress.ip_address(entry.strip()))
            except ValueError:  # garbage where an address belongs: stop at the last good one
                return client
            client = hop
            if not self.trusts(hop):
                return client
        return client


# Every cost a valid request may have: one look-up in C asserts it (`charge_cost`).
_VALID_COSTS_MILLI = range(1, REQUEST_COST_MILLI_MAX + 1)
