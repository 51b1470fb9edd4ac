"""gateway/limits.py: exact token buckets, request costs, per-connection and per-account limits."""

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import SCOPES
from gateway import limits
from gateway.limits import (
    BATCH_OPS_MAX,
    CANCEL_COST_MILLI,
    PLACE_COST_MILLI,
    QUERY_COST_MILLI,
    QUOTE_COST_MILLI,
    QUOTES_PER_MASS_MAX,
    REQUEST_COST_MILLI_MAX,
    RateLimiter,
    TokenBucket,
    batch_cost_milli,
    cost_milli,
)

T0 = 1_798_761_600_000_000  # 2027-01-01, in µs
TOKEN = 1_000  # one token in milli-tokens
MS = 1_000  # one millisecond in µs


def drain(bucket: TokenBucket, now_us: int) -> int:
    """Take whole tokens until refused; how many were taken."""
    taken = 0
    while bucket.take(TOKEN, now_us) == 0:
        taken += 1
    return taken


# --------------------------------------------------------------------------- named limits


def test_the_protocols_numbers() -> None:
    assert limits.BATCH_OPS_MAX == 20
    assert limits.LOGON_TIMEOUT_S == 10
    assert limits.HEARTBEAT_INTERVAL_S == 1
    assert limits.REQUEST_ID_LENGTH_MAX == 36


def test_every_limit_is_a_positive_int() -> None:
    names = [
        "MESSAGE_BYTES_MAX",
        "BATCH_OPS_MAX",
        "QUOTES_PER_MASS_MAX",
        "SUBSCRIPTIONS_PER_CONNECTION_MAX",
        "SEND_QUEUE_MESSAGES_MAX",
        "LOGON_TIMEOUT_S",
        "HEARTBEAT_INTERVAL_S",
        "PRIVATE_HISTORY_EVENTS_MAX",
        "PRIVATE_HISTORY_EVENTS_TOTAL_MAX",
        "PRIVATE_HISTORY_EVENTS_TRIMMED",
        "PRIVATE_HISTORY_CHECK_COMMANDS",
        "CONNECTIONS_PER_ACCOUNT_MAX",
        "REQUEST_ID_LENGTH_MAX",
    ]
    for name in names:
        value = getattr(limits, name)
        assert type(value) is int and value > 0, name


# --------------------------------------------------------------------------- token bucket


def test_a_new_bucket_holds_its_burst() -> None:
    bucket = TokenBucket(rate_per_s=200, burst=400)
    assert bucket.available_milli(T0) == 400 * TOKEN
    assert drain(bucket, T0) == 400


def test_a_bucket_refills_at_its_rate_and_never_above_its_burst() -> None:
    bucket = TokenBucket(rate_per_s=200, burst=400)
    drain(bucket, T0)
    assert drain(bucket, T0 + 5 * MS) == 1  # 200/s: one token each 5 ms
    assert drain(bucket, T0 + 5 * MS + 100 * MS) == 20
    assert bucket.available_milli(T0 + 3_600 * 1_000_000) == 400 * TOKEN  # an idle hour
    assert drain(bucket, T0 + 3_600 * 1_000_000) == 400


def test_partial_refills_accumulate_exactly() -> None:
    bucket = TokenBucket(rate_per_s=3, burst=1)
    assert bucket.take(TOKEN, T0) == 0
    # 3/s is 3 milli-tokens a ms and not a whole number of µs per milli-token: a thousand
    # takes of exactly one ms's refill all pass, and leave nothing over (no drift).
    for ms in range(1, 1_001):
        assert bucket.take(3, T0 + ms * MS) == 0, ms
    assert bucket.available_milli(T0 + 1_000 * MS) == 0
    assert bucket.available_milli(T0 + 1_000 * MS + 333) == 0
    assert bucket.available_milli(T0 + 1_000 * MS + 334) == 1


@settings(max_examples=200, deadline=None)
@given(
    rate=st.integers(1, 1_000),
    burst=st.integers(1, 100),
    requests=st.lists(
        st.tuples(st.integers(-300_000, 2_000_000), st.integers(1, 1_000)), min_size=1, max_size=40
    ),
)
def test_full_at_us_is_the_first_us_a_bucket_is_full_again(
    rate: int, burst: int, requests: list[tuple[int, int]]
) -> None:
    """`charge_cost` trusts `full_at_us` to skip the refill: the bucket is full from it on,
    and not a µs before it (unless that is before its last change: no refill then)."""
    bucket = TokenBucket(rate, burst)
    now = T0
    for step_us, per_mille_of_burst in requests:
        now += step_us  # the clock may step back
        bucket.take(max(1, per_mille_of_burst * burst), now)
        full_at_us = bucket.full_at_us
        assert bucket.level(full_at_us) == bucket.capacity
        if full_at_us - 1 > bucket._updated_us:
            assert bucket.level(full_at_us - 1) < bucket.capacity


def test_retry_after_ms_is_exact() -> None:
    bucket = TokenBucket(rate_per_s=3, burst=1)
    assert bucket.take(TOKEN, T0) == 0
    # One token at 3/s takes 333,333.3 µs: the first whole ms it fits is the 334th.
    assert bucket.take(TOKEN, T0) == 334
    assert bucket.take(TOKEN, T0 + 333 * MS) == 1
    assert bucket.take(TOKEN, T0 + 334 * MS) == 0


def test_retry_after_ms_counts_from_the_refusal() -> None:
    bucket = TokenBucket(rate_per_s=200, burst=400)
    drain(bucket, T0)
    assert bucket.take(10 * TOKEN, T0) == 50  # ten tokens at 200/s
    assert bucket.take(10 * TOKEN, T0 + 20 * MS) == 30
    assert bucket.take(10 * TOKEN, T0 + 49 * MS) == 1
    assert bucket.take(10 * TOKEN, T0 + 50 * MS) == 0
    assert bucket.take(CANCEL_COST_MILLI, T0 + 50 * MS) == 2  # 1.25 ms, rounded up


def test_nothing_is_taken_when_refused() -> None:
    bucket = TokenBucket(rate_per_s=200, burst=400)
    for _ in range(399):
        bucket.take(TOKEN, T0)
    assert bucket.take(2 * TOKEN, T0) == 5
    assert bucket.available_milli(T0) == TOKEN
    assert bucket.take(TOKEN, T0) == 0


def test_a_clock_stepping_back_refills_nothing_and_breaks_nothing() -> None:
    bucket = TokenBucket(rate_per_s=200, burst=400)
    drain(bucket, T0)
    assert bucket.take(TOKEN, T0 - 1_000_000) == 5
    assert bucket.take(TOKEN, T0 + 5 * MS) == 0


@settings(max_examples=200, deadline=None)
@given(
    rate=st.integers(1, 1_000),
    burst=st.integers(1, 100),
    requests=st.lists(
        st.tuples(st.integers(0, 2_000_000), st.integers(1, 1_000)), min_size=1, max_size=60
    ),
)
def test_no_window_ever_passes_more_than_burst_plus_rate_times_its_length(
    rate: int, burst: int, requests: list[tuple[int, int]]
) -> None:
    bucket = TokenBucket(rate, burst)
    now, granted = T0, []
    for gap_us, per_mille_of_burst in requests:
        now += gap_us
        cost = max(1, per_mille_of_burst * burst)  # 0.1% .. 100% of the burst, in milli
        retry_after_ms = bucket.take(cost, now)
        if retry_after_ms == 0:
            granted.append((now, cost))
        else:
            # The promise is exact: allowed at the time given, refused a ms before it.
            assert copy.copy(bucket).take(cost, now + retry_after_ms * MS) == 0
            if retry_after_ms > 1:
                assert copy.copy(bucket).take(cost, now + (retry_after_ms - 1) * MS) > 0
    for first in range(len(granted)):
        for last in range(first, len(granted)):
            span_us = granted[last][0] - granted[first][0]
            taken = sum(cost for _, cost in granted[first : last + 1])
            assert taken * 1_000_000 <= burst * TOKEN * 1_000_000 + span_us * rate * TOKEN


# --------------------------------------------------------------------------- costs


def test_costs_by_method_kind() -> None:
    assert cost_milli("order.place") == cost_milli("order.amend") == PLACE_COST_MILLI
    assert cost_milli("order.cancel") == cost_milli("orders.cancel_all") == CANCEL_COST_MILLI
    assert cost_milli("orders.open") == cost_milli("book.snapshot") == QUERY_COST_MILLI
    assert cost_milli("no.such_method") == QUERY_COST_MILLI  # unknown requests still pay
    assert cost_milli("order.cancel") < cost_milli("orders.open") < cost_milli("order.place")


def test_batches_and_mass_quotes_cost_per_op_clamped_to_their_maximum() -> None:
    assert cost_milli("order.batch", 5) == 5 * PLACE_COST_MILLI
    assert cost_milli("quote.mass", 30) == 30 * QUOTE_COST_MILLI
    assert cost_milli("quote.mass", 0) == QUOTE_COST_MILLI
    assert cost_milli("order.batch", 10_000) == BATCH_OPS_MAX * PLACE_COST_MILLI
    assert cost_milli("quote.mass", 10_000) == QUOTES_PER_MASS_MAX * QUOTE_COST_MILLI
    assert cost_milli("order.place", 7) == PLACE_COST_MILLI  # ops only count for those two
    assert (
        max(cost_milli(m, 10**6) for m in ("order.batch", "quote.mass")) == REQUEST_COST_MILLI_MAX
    )


def test_a_batch_costs_the_sum_of_its_ops() -> None:
    ops = ["order.place", "order.cancel", "order.cancel", "order.amend"]
    assert batch_cost_milli(ops) == 2 * PLACE_COST_MILLI + 2 * CANCEL_COST_MILLI
    assert batch_cost_milli(["order.cancel"] * 20) == 20 * CANCEL_COST_MILLI
    assert batch_cost_milli(["weird"]) == PLACE_COST_MILLI
    assert batch_cost_milli([]) == PLACE_COST_MILLI
    too_many = ["order.cancel"] * 30 + ["order.place"]
    assert batch_cost_milli(too_many) == PLACE_COST_MILLI + 19 * CANCEL_COST_MILLI


# --------------------------------------------------------------------------- rate limiter


def fit(limiter: RateLimiter, method: str, connection_id: int = 1, account: int | None = 7) -> int:
    """How many `method` requests pass at one instant."""
    passed = 0
    while limiter.charge(connection_id, account, method, 1, T0) == 0:
        passed += 1
    return passed


def test_cancels_are_cheaper_than_places() -> None:
    places = fit(RateLimiter(), "order.place")
    cancels = fit(RateLimiter(), "order.cancel")
    assert (places, cancels) == (400, 1_600)  # the default connection burst is 400


def test_a_refusal_reports_retry_after_ms_and_charges_neither_bucket() -> None:
    limiter = RateLimiter(connection_rate_per_s=100, connection_burst=100, account_burst=1_000)
    for connection_id in (1, 2):
        assert fit(limiter, "order.place", connection_id) == 100
    assert limiter.charge(1, 7, "order.place", 1, T0) == 10  # 100/s: a token each 10 ms
    # The refusals above took nothing from the account, which still has 800 tokens.
    assert fit(limiter, "order.place", connection_id=3) == 100


def test_the_account_bucket_is_shared_by_all_its_connections() -> None:
    limiter = RateLimiter(account_rate_per_s=100, account_burst=300)
    assert fit(limiter, "order.place", connection_id=1) == 300
    assert fit(limiter, "order.place", connection_id=2) == 0
    assert limiter.charge(2, 7, "order.place", 1, T0) == 10  # the account's rate decides
    assert fit(limiter, "order.place", connection_id=3, account=8) == 300  # another account
    # Without an account (before logon) only the connection's own bucket applies.
    assert fit(limiter, "order.place", connection_id=4, account=None) == 400


def test_read_only_keys_spend_the_accounts_bucket_down_to_the_kept_share() -> None:
    """Session 31's review: an account's read-only keys had a bucket of their own beside the
    account's, so the account could spend twice its burst. They spend its one bucket through
    `account_bucket`'s share, down to the half kept for its trade and admin keys, never below:
    together its keys pass the burst once, and those keys always find the kept half."""
    limiter = RateLimiter(account_rate_per_s=100, account_burst=300)
    reader = limits.account_bucket(7, frozenset({"read"}))
    assert reader != 7 and limits.account_bucket(7, frozenset({"read", "trade"})) == 7
    read = [fit(limiter, "order.place", connection_id=i, account=reader) for i in (1, 2)]
    assert read == [150, 0]  # shared by the readers' connections: the burst less the kept 150
    assert limiter.refusing_limit(2, reader, cost_milli("order.place"), T0) == "read_only"
    assert limiter.charge_account(reader, cost_milli("balances"), T0) == 5  # REST's: as long
    assert fit(limiter, "order.place", connection_id=3) == 150  # the trading keys' kept share
    assert limiter.refusing_limit(3, 7, cost_milli("order.place"), T0) == "account"
    # The trading keys spent the share: a reader waits for it and its own token (10 ms each).
    assert limiter.charge(1, reader, "order.place", 1, T0) == 151 * 10
    assert limiter.charge(3, 7, "order.place", 1, T0 + 10 * MS) == 0  # the refill: theirs


def test_the_accounts_total_is_its_burst_whichever_keys_spend_it_first() -> None:
    """The account's burst, not twice it, in whichever order its keys spend it; no reader's
    charge leaves the account less than the kept share (checked after each)."""
    kept_milli = limits.account_burst_kept(1_000) * TOKEN
    reader = limits.account_bucket(7, frozenset({"read"}))
    for order in ([reader, 7], [7, reader]):
        limiter = RateLimiter(connection_burst=10_000, account_burst=1_000)
        account = limiter._account_bucket(7)
        passed = dict.fromkeys(order, 0)
        for connection_id, who in enumerate(order):
            while limiter.charge(connection_id, who, "balances", 1, T0) == 0:
                passed[who] += 1
                assert who == 7 or account.available_milli(T0) >= kept_milli
        assert account.available_milli(T0) == 0
        assert sum(passed.values()) == 2_000, passed  # 1,000 tokens: the burst, once
        assert passed[reader] == (1_000 if order[0] == reader else 0), passed


@pytest.mark.parametrize("burst", [101, 150, 199, 200, 1_000])
def test_the_dearest_trade_request_passes_while_a_reader_hammers(burst: int) -> None:
    """Re-review of session 31: below an `account_burst` of 200 the kept half (50 to 99
    tokens) was less than a quote.mass of 100 quotes (100 tokens), and a read-only key
    reading as fast as it may took every token above the half as it came: the quote.mass
    never passed again. The kept share is at least the dearest request now. A reader reads
    every 10 ms for a minute (at 10 tokens/s refill, five times what refills); a trade key
    sends a 100-quote quote.mass every 10 s: each passes, and the reader reads too."""
    limiter = RateLimiter(account_rate_per_s=10, account_burst=burst, connection_burst=10_000)
    reader = limits.account_bucket(7, frozenset({"read"}))
    mass = cost_milli("quote.mass", QUOTES_PER_MASS_MAX)
    masses, reads = [], 0
    for tick in range(6_000):  # 60 s in steps of 10 ms: the clock is the argument
        now_us = T0 + tick * 10 * MS
        reads += limiter.charge(1, reader, "balances", 1, now_us) == 0
        if tick % 1_000 == 999:  # the reader has had 10 s to take what refilled
            masses.append(limiter.charge_cost(2, 7, mass, now_us))
    assert masses == [0] * 6, masses  # before: at 101 to 199, [retry_after_ms] * 6
    assert reads > (burst - limits.account_burst_kept(burst)) * 2, reads  # their share, at least


def test_the_kept_share_is_half_the_burst_and_at_least_the_dearest_request() -> None:
    """Half the burst rounded up (the trade and admin keys get the odd token), at least the
    100 tokens of the dearest request where that leaves the readers some; at the smallest
    burst, 100, keeping it would leave them none, and the half is kept."""
    kept = {burst: limits.account_burst_kept(burst) for burst in (100, 101, 150, 199, 200, 201)}
    assert kept == {100: 50, 101: 100, 150: 100, 199: 100, 200: 100, 201: 101}
    assert [limits.account_burst_kept(burst) for burst in (1_000, 1_001)] == [500, 501]


def test_a_read_only_request_dearer_than_its_share_is_charged_all_of_it() -> None:
    """At the smallest `account_burst`, 100, the readers' share is 50 tokens: a quote.mass of
    100 (one their scope refuses, 403, but charged as every request) could never fit it.
    It is charged the whole share instead, so it is answered once that is there."""
    limiter = RateLimiter(account_rate_per_s=10, account_burst=100)
    reader = limits.account_bucket(7, frozenset({"read"}))
    assert limiter.charge(1, reader, "quote.mass", QUOTES_PER_MASS_MAX, T0) == 0
    assert limiter.charge(1, reader, "balances", 1, T0) == 50  # 0.5 tokens at 10/s
    assert fit(limiter, "order.place", connection_id=2) == 50  # the kept half, whole
    assert limiter.charge(1, reader, "quote.mass", QUOTES_PER_MASS_MAX, T0) == 10_000


def test_read_only_is_neither_trading_nor_administering() -> None:
    """One predicate for the kept connections and the kept share: a key is read-only unless
    it may trade or administer; a scope unknown today counts as read-only until listed."""
    assert limits.OWNER_SCOPES <= SCOPES
    assert limits.is_read_only(frozenset({"read"}))
    assert limits.is_read_only(frozenset({"read", "some_future_scope"}))
    for owner in ({"trade"}, {"admin"}, {"read", "trade"}, {"read", "admin"}):
        assert not limits.is_read_only(frozenset(owner))


def test_a_connection_is_limited_below_its_accounts_budget() -> None:
    limiter = RateLimiter()
    assert fit(limiter, "order.place", connection_id=1) == 400
    assert limiter.charge(1, 7, "order.place", 1, T0) == 5  # 200/s
    assert fit(limiter, "order.place", connection_id=2) == 400
    assert fit(limiter, "order.place", connection_id=3) == 200  # the account's 1,000


def test_a_refusal_names_the_bucket_that_refused_it() -> None:
    """Session 30: a 429 said "slow down" alone, so a trader whose account's budget another
    connection (a bot) spent could not tell it from its own connection's. `refusing_limit`
    names the bucket whose wait the refusal tells: the account's when both wait as long."""
    limiter = RateLimiter()
    place = cost_milli("order.place")
    assert fit(limiter, "order.place", connection_id=1) == 400
    assert limiter.refusing_limit(1, 7, place, T0) == "connection"
    assert limiter.refusing_limit(1, None, place, T0) == "connection"  # before logon: its own
    assert fit(limiter, "order.place", connection_id=2) == 400
    assert fit(limiter, "order.place", connection_id=3) == 200  # the account's 1,000 spent
    assert limiter.refusing_limit(3, 7, place, T0) == "account"
    assert limiter.refusing_limit(1, 7, place, T0) == "connection"  # both empty: its 5 ms wait
    same = RateLimiter(200, 400, 200, 400)  # one connection spends both alike
    assert fit(same, "order.place") == 400
    assert same.refusing_limit(1, 7, place, T0) == "account"  # as long: the one it cannot see


def test_budgets_come_back_with_time() -> None:
    limiter = RateLimiter()
    fit(limiter, "order.place")
    assert limiter.charge(1, 7, "order.place", 1, T0 + 4 * MS) == 1
    assert limiter.charge(1, 7, "order.place", 1, T0 + 5 * MS) == 0


def test_a_full_batch_or_mass_quote_always_fits_a_fresh_bucket() -> None:
    limiter = RateLimiter()
    assert limiter.charge(1, 7, "quote.mass", QUOTES_PER_MASS_MAX, T0) == 0
    assert limiter.charge(2, 7, "order.batch", BATCH_OPS_MAX, T0) == 0
    assert limiter.charge_cost(3, 7, batch_cost_milli(["order.cancel"] * 20), T0) == 0


def test_drop_connection_forgets_its_bucket_but_not_the_accounts() -> None:
    limiter = RateLimiter(account_burst=600)
    assert fit(limiter, "order.place", connection_id=1) == 400
    assert limiter.connection_count() == 1
    limiter.drop_connection(1)
    limiter.drop_connection(1)  # dropping twice is harmless: disconnect paths may overlap
    assert limiter.connection_count() == 0
    # The same id starts afresh; the account still remembers what was spent.
    assert fit(limiter, "order.place", connection_id=1) == 200
    assert fit(limiter, "order.place", connection_id=1, account=None) == 200


@settings(max_examples=200, deadline=None)
@given(
    requests=st.lists(
        st.tuples(
            st.integers(0, 1),  # which connection
            st.integers(-300_000, 2_000_000),  # the clock's step (it may go back)
            st.integers(1, limits.REQUEST_COST_MILLI_MAX),
        ),
        min_size=1,
        max_size=80,
    )
)
def test_charging_an_account_equals_taking_from_both_buckets_by_their_methods(
    requests: list[tuple[int, int, int]],
) -> None:
    """`charge_cost` writes the buckets' `level` and `spend` out for speed: it must do what
    checking both with `retry_after_ms` and taking from both with `take` does."""
    limiter = RateLimiter(200, 400, 300, 500)
    connections = [TokenBucket(200, 400), TokenBucket(200, 400)]
    account = TokenBucket(300, 500)
    now = T0
    for connection, step_us, cost in requests:
        now += step_us
        bucket = connections[connection]
        retry = max(bucket.retry_after_ms(cost, now), account.retry_after_ms(cost, now))
        if retry == 0:
            assert bucket.take(cost, now) == 0 and account.take(cost, now) == 0
        assert limiter.charge_cost(connection, 7, cost, now) == retry
        ours = limiter._connections[connection]
        for charged, taken in ((ours, bucket), (limiter._accounts[7], account)):
            assert charged.level(now) == taken.level(now)
            state = (charged._level, charged._updated_us, charged.full_at_us)
            assert state == (taken._level, taken._updated_us, taken.full_at_us)


def test_connection_counts_admit_up_to_each_cap_and_free_on_release() -> None:
    from gateway.limits import ConnectionCounts

    counts = ConnectionCounts(per_ip_max=2, total_max=3)
    assert counts.admit("10.0.0.1") is None and counts.admit("10.0.0.1") is None
    per_ip = "at most 2 connections from one address; close one first"
    assert counts.admit("10.0.0.1") == per_ip  # refused: counts nothing
    assert (counts.open_from("10.0.0.1"), counts.total) == (2, 2)
    assert counts.admit("10.0.0.2") is None
    total = "the venue has its most connections (3); retry later"
    assert counts.admit("10.0.0.3") == total
    counts.release("10.0.0.1")
    assert counts.admit("10.0.0.3") is None  # the total has room again
    assert counts.admit("10.0.0.1") == total  # the total comes first
    for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        counts.release(ip)
    assert counts.total == 0 and counts._per_ip == {}  # no IP is kept once it has none open


def test_public_connections_fill_the_total_only_up_to_its_reserve() -> None:
    """Of `total_max`, `reserved_pct` (rounded down) is kept for trading sessions: public
    connections are admitted as such only up to the rest, which is never 0."""
    from gateway.limits import ConnectionCounts

    counts = ConnectionCounts(per_ip_max=10, total_max=10, reserved_pct=30)
    assert counts.public_max == 7
    for _ in range(8):
        assert counts.admit("10.0.0.1") is None
    assert [counts.admit_public() for _ in range(7)] == [None] * 7
    kept = "the venue has its most public connections (7; 3 more are kept for /ws/trade and"
    assert counts.admit_public() == f"{kept} signed REST); retry later"  # counts nothing
    assert (counts.public, counts.total) == (7, 8)
    counts.release_public()
    assert counts.admit_public() is None
    assert ConnectionCounts(total_max=10).public_max == 9  # the default: 10%
    assert ConnectionCounts(total_max=2).public_max == 2  # 10% of 2, rounded down: none kept
    assert ConnectionCounts(total_max=1, reserved_pct=90).public_max == 1


def test_address_buckets_charge_each_ip_and_forget_the_oldest_past_their_bound() -> None:
    from gateway.limits import AddressBuckets

    buckets = AddressBuckets(rate_per_s=2, burst=3, tracked_max=2)
    assert [buckets.take("10.0.0.1", 0) for _ in range(4)] == [0, 0, 0, 500]
    assert buckets.take("10.0.0.1", 499_999) == 1  # a token is 500 ms: 1 ms short
    assert buckets.take("10.0.0.1", 500_000) == 0
    assert buckets.take("10.0.0.2", 500_000) == 0  # its own bucket, full
    assert buckets.take("10.0.0.3", 500_000) == 0  # a third IP: the oldest is forgotten
    assert buckets.tracked() == 2
    assert [buckets.take("10.0.0.1", 500_000) for _ in range(3)] == [0, 0, 0]  # full again


def test_refused_connections_are_held_up_to_their_bound() -> None:
    from gateway.limits import ConnectionCounts

    counts = ConnectionCounts(per_ip_max=1, total_max=1, refused_held_max=2)
    assert counts.hold_refused() and counts.hold_refused()
    assert not counts.hold_refused()  # the third is closed at once: nothing counted
    assert counts.refused_held == 2
    counts.release_refused()
    assert counts.hold_refused()


def test_only_a_trusted_proxys_forwarded_for_names_the_client() -> None:
    from core.config import trusted_networks

    proxies = limits.TrustedProxies(trusted_networks(["10.0.0.1", "192.168.0.0/16"]))
    client_ip = proxies.client_ip
    assert client_ip("203.0.113.9", "198.51.100.1") == "203.0.113.9"  # untrusted peer: ignored
    assert client_ip("10.0.0.1", None) == "10.0.0.1"  # a proxy that names nobody
    assert client_ip("10.0.0.1", "198.51.100.1") == "198.51.100.1"
    # a client's own header comes first: the last untrusted address is the one the proxy saw
    assert client_ip("10.0.0.1", "1.2.3.4, 198.51.100.1") == "198.51.100.1"
    # a chain of trusted proxies is walked to the first untrusted hop
    assert client_ip("10.0.0.1", "1.2.3.4,198.51.100.1, 192.168.3.4") == "198.51.100.1"
    assert client_ip("10.0.0.1", "192.168.3.4") == "192.168.3.4"  # trusted to the end
    assert client_ip("10.0.0.1", "junk, 192.168.3.4") == "192.168.3.4"  # stops at garbage
    assert client_ip("10.0.0.1", "junk") == "10.0.0.1"
    padded = ", ".join(["198.51.100.1"] + ["192.168.0.1"] * limits.FORWARDED_HOPS_MAX)
    assert client_ip("10.0.0.1", padded) == "192.168.0.1"  # bounded: the nearest hops only
    assert limits.TrustedProxies().client_ip("10.0.0.1", "198.51.100.1") == "10.0.0.1"


def test_the_per_ip_limits_count_an_ipv6_host_by_its_64_and_a_mapped_ipv4_as_itself() -> None:
    """A reviewer's finding: the caps were keyed on the exact address, so a host with a /64
    (the usual IPv6 allocation) opened 256 connections from each of its addresses."""
    key = limits.address_key
    assert key("203.0.113.7") == "203.0.113.7"
    assert key("::ffff:203.0.113.7") == "203.0.113.7"
    assert (
        key("2001:db8::1") == key("2001:db8::2") == key("2001:db8:0:0:ffff::9") == ("2001:db8::/64")
    )
    assert key("2001:db8:0:1::1") == "2001:db8:0:1::/64"  # the next /64: another client
    assert key("fe80::1%eth0") == "fe80::/64"
    assert key("not an address") == "not an address"  # left as it came
    counts = limits.ConnectionCounts(per_ip_max=1, total_max=10)
    assert counts.admit(key("2001:db8::1")) is None
    assert counts.admit(key("2001:db8::2")) is not None  # the same host's /64: refused
    assert counts.admit(key("2001:db8:0:1::1")) is None


def test_address_buckets_check_without_taking_and_charge_a_cost() -> None:
    """`retry_after_ms` says whether a cost fits an IP's bucket and takes nothing (so REST
    can check it before the connection's bucket); `take` charges the cost given."""
    from gateway.limits import AddressBuckets

    buckets = AddressBuckets(rate_per_s=1, burst=1)
    assert buckets.retry_after_ms("192.0.2.1", 0, 500) == 0
    assert buckets.retry_after_ms("192.0.2.1", 0, 500) == 0  # nothing taken
    assert buckets.take("192.0.2.1", 0, 500) == 0 and buckets.take("192.0.2.1", 0, 500) == 0
    assert buckets.retry_after_ms("192.0.2.1", 0, 500) == 500
    assert buckets.take("192.0.2.1", 0, 500) == 500  # refused: still empty
    assert buckets.take("192.0.2.2", 0, 500) == 0  # another IP's own bucket


def test_connections_not_yet_a_trading_sessions_wait_in_the_reserve_within_an_allowance() -> None:
    """`admit_pending`: at most `pending_per_ip_max` connections per IP wait in the reserve
    before they are classified or log on; one more is refused (counting nothing), another
    IP has its own; a release frees a place, and an IP with none is forgotten."""
    from gateway.limits import ConnectionCounts

    counts = ConnectionCounts(total_max=10, reserved_pct=30, pending_per_ip_max=2)
    assert counts.admit_pending("10.0.0.1") is None and counts.admit_pending("10.0.0.1") is None
    assert counts.admit_pending("10.0.0.1") == (
        "the venue has its most public connections (7), and at most 2 connections from one"
        " address may wait to log on in the 3 kept for /ws/trade and signed REST; retry later"
    )
    assert counts.admit_pending("10.0.0.2") is None
    assert (counts.pending_from("10.0.0.1"), counts.pending) == (2, 3)
    counts.release_pending("10.0.0.1")
    assert counts.admit_pending("10.0.0.1") is None
    for ip in ("10.0.0.1", "10.0.0.1", "10.0.0.2"):
        counts.release_pending(ip)
    assert counts.pending == 0 and counts._pending_per_ip == {}
