"""The gateway benchmark: `venue bench gateway` — order actions through a real websocket.

Owns one measurement of the whole path (SDK, loopback TCP, websocket, rate limits, engine,
journal fsync, response) against `venue serve` in another process on a fresh data dir:
(a) one connection awaiting each action before the next (place, then cancel it): round trips
per second and their latency; (b) `order.batch` of `BATCH_OPS` ops (places, then their
cancels) with `--pipeline` batches in flight. Orders rest far inside the price band on an
empty book and are all canceled, so the book stays bounded; the result says what is left.
By default the server runs with its rate limits raised out of the way
(`server_process.UNLIMITED`), so the numbers are the gateway's; `--keep-limits` keeps the
config's, and then a 429 counts as rejected and is honoured (the client waits its retry_after_ms).
Latencies are of acknowledged round trips only. Phase (a) trades as mm-alpha, (b) as mm-beta.
A lost connection ends its phase: the actions in flight are `unanswered`, the error is shown.
"""

import argparse
import asyncio
import functools
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import server_process, stats
from bench.server_process import ServerProcess
from cli import progress
from cli.failures import CommandFailed
from client.sdk import VenueClient
from core import config as venue_config
from gateway import limits

BATCH_OPS = limits.BATCH_OPS_MAX  # PROTOCOL: order.batch carries up to 20 ops
PIPELINE_DEFAULT = 4  # batches in flight: enough to keep the group commit busy
PIPELINE_MAX = 64  # more in flight only queues in the server's outbox
DURATION_S_MAX = 600.0  # latency samples are kept in memory: ten minutes is plenty
PHASE_GRACE_S = 30.0  # after the deadline: the last responses, cancels and back-offs
SYMBOL = "AAPLx-USD"
PRICES = {"buy": "170.00", "sell": "205.00"}  # inside the ±10% band around 187.25
QTY = "0.01"  # a notional of ~2 USD: above min_notional, trivial holds
ACCOUNTS = ("mm-alpha", "mm-beta")  # (a) and (b) each start with a full account budget


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--duration",
        type=float,
        default=5.0,
        help=f"seconds per phase, at most {DURATION_S_MAX:g} (default 5)",
    )
    parser.add_argument(
        "--pipeline",
        type=int,
        default=PIPELINE_DEFAULT,
        help=f"order.batch requests in flight, 1 to {PIPELINE_MAX} (default {PIPELINE_DEFAULT})",
    )
    parser.add_argument(
        "--config", type=Path, default=Path("venue.toml"), help="the server's (default venue.toml)"
    )
    parser.add_argument("--keep-limits", action="store_true", help="keep the config's rate limits")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")


@dataclass
class Tally:
    """What one phase sent and got back; `sent` counts order actions (a batch's ops)."""

    sent: int = 0
    acked: int = 0
    rejected: int = 0
    rate_limited: int = 0  # of rejected: 429s, resent after retry_after_ms
    unanswered: int = 0  # in flight when the connection was lost or time ran out
    backoff_s: float = 0.0
    seconds: float = 0.0
    latencies_us: list[float] = field(default_factory=list)  # acknowledged requests only
    error: str | None = None
    open_orders_after: int | None = None  # None: could not ask

    async def send(self, client: VenueClient, method: str, params: Any, actions: int) -> Any:
        """One request; if the connection is lost or time runs out, its actions are unanswered."""
        try:
            return await client.request_raw(method, params)
        except (ConnectionError, asyncio.CancelledError):
            self.sent += actions
            self.unanswered += actions
            raise

    def refused(self, actions: int, response: dict[str, Any]) -> bool:
        """Count a whole request refused; True if it was rate limited (wait, then resend)."""
        self.sent += actions
        self.rejected += actions
        if response["status"] == 429:
            self.rate_limited += actions
            return True
        return False

    def per_sec(self) -> int:
        return round(self.acked / self.seconds) if self.seconds else 0

    def report(self) -> dict[str, Any]:
        answered = self.acked + self.rejected
        assert answered + self.unanswered == self.sent, "an action went uncounted"
        return {
            "sent": self.sent,
            "acked": self.acked,
            "rejected": self.rejected,
            "rate_limited": self.rate_limited,
            "unanswered": self.unanswered,
            "backoff_s": round(self.backoff_s, 3),
            "seconds": round(self.seconds, 6),
            "open_orders_after": self.open_orders_after,
            "error": self.error,
        }


# ----------------------------------------------------------------- the phases


async def single_round_trips(client: VenueClient, duration_s: float, tally: Tally) -> None:
    """Place, await, cancel it, await; alternate sides."""
    deadline = time.perf_counter() + duration_s
    side = "buy"
    while time.perf_counter() < deadline:
        order = _order(side)
        placed = await _one(client, tally, "order.place", order, deadline)
        side = "sell" if side == "buy" else "buy"
        if placed is not None:
            await _one(client, tally, "order.cancel", {"order_id": placed["order_id"]}, None)


async def _one(
    client: VenueClient,
    tally: Tally,
    method: str,
    params: dict[str, Any],
    deadline: float | None,
) -> dict[str, Any] | None:
    """One action until answered (429s are waited out; None: no resend past `deadline`)."""
    while True:
        before = time.perf_counter()
        response = await tally.send(client, method, params, 1)
        after = time.perf_counter()
        if response["status"] == 200:
            tally.sent += 1
            tally.acked += 1
            tally.latencies_us.append((after - before) * 1e6)
            result: dict[str, Any] = response["result"]
            return result
        if not tally.refused(1, response):
            return None
        if deadline is not None and after >= deadline:
            return None
        await _back_off(tally, response)


async def batched(client: VenueClient, duration_s: float, tally: Tally, pipeline: int) -> None:
    """`pipeline` lanes on one connection, each: a batch of places, then one of their cancels.

    Its latencies are of whole batches.
    """
    deadline = time.perf_counter() + duration_s

    async def lane() -> None:
        while time.perf_counter() < deadline:
            places = [_op("order.place", _order(("buy", "sell")[i % 2])) for i in range(BATCH_OPS)]
            results = await _batch(client, tally, places, deadline)
            order_ids = [r["result"]["order_id"] for r in results if r["status"] == 200]
            if order_ids:
                cancels = [_op("order.cancel", {"order_id": order_id}) for order_id in order_ids]
                await _batch(client, tally, cancels, None)

    ended = await asyncio.gather(*(lane() for _ in range(pipeline)), return_exceptions=True)
    for outcome in ended:
        if isinstance(outcome, BaseException):
            raise outcome  # every lane has stopped: nothing is left running


async def _batch(
    client: VenueClient,
    tally: Tally,
    ops: list[dict[str, Any]],
    deadline: float | None,
) -> list[dict[str, Any]]:
    """One batch until answered; the per-op results (empty if it was refused as a whole)."""
    while True:
        before = time.perf_counter()
        response = await tally.send(client, "order.batch", {"ops": ops}, len(ops))
        after = time.perf_counter()
        if response["status"] in (200, 409):
            results: list[dict[str, Any]] = response["result"]["results"]
            assert len(results) == len(ops), "a batch answers every op"
            acked = sum(r["status"] == 200 for r in results)
            tally.sent += len(ops)
            tally.acked += acked
            tally.rejected += len(ops) - acked
            tally.latencies_us.append((after - before) * 1e6)
            return results
        if not tally.refused(len(ops), response):
            return []
        if deadline is not None and after >= deadline:
            return []
        await _back_off(tally, response)


async def _back_off(tally: Tally, response: dict[str, Any]) -> None:
    wait_s = (response.get("retry_after_ms") or 1) / 1_000
    tally.backoff_s += wait_s
    await asyncio.sleep(wait_s)


def _order(side: str) -> dict[str, Any]:
    return {"symbol": SYMBOL, "side": side, "type": "limit", "tif": "gtc"} | {
        "price": PRICES[side],
        "qty": QTY,
    }


def _op(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"method": method, "params": params}


# ----------------------------------------------------------------- the run


# The run's steps, each drawn as it ends on a terminal: the server started, each phase, the
# server stopped. A phase lasts --duration (5 s by default): the bar names the one running.
STEPS = 4


async def measure(
    config_path: Path,
    duration_s: float,
    pipeline: int,
    keep_limits: bool = False,
    step: Callable[[str], object] = lambda _next: None,
) -> dict[str, Any]:
    """Both phases against a fresh server; `step(what comes next)` as each step ends."""
    keys = demo_keys(config_path)
    with tempfile.TemporaryDirectory(prefix="venue-bench-gateway-") as directory:
        if not keep_limits:
            config_path = server_process.unlimited_config(config_path, Path(directory))
        server = ServerProcess(config_path.resolve(), Path(directory))
        rates = venue_config.load(config_path).limits
        try:
            url = await server.start()
            step("one order at a time")
            single = await _phase(url, keys[0], single_round_trips, duration_s)
            step("batches")
            lanes = functools.partial(batched, pipeline=pipeline)
            batch = await _phase(url, keys[1], lanes, duration_s)
            step("server stop")
        finally:
            clean = await server.stop()
            logged = server.last_exception()
        step("done")
    return {
        "duration_s": duration_s,
        "round_trips_per_sec": single.per_sec(),
        "round_trip_us": stats.percentiles(single.latencies_us),
        "batched_actions_per_sec": batch.per_sec(),
        "batch_round_trip_us": stats.percentiles(batch.latencies_us),
        "sent": single.sent + batch.sent,
        "acked": single.acked + batch.acked,
        "rejected": single.rejected + batch.rejected,
        "rate_limited": single.rate_limited + batch.rate_limited,
        "unanswered": single.unanswered + batch.unanswered,
        "single": single.report(),
        "batched": batch.report() | {"batch_ops": BATCH_OPS, "pipeline": pipeline},
        "open_orders_after": (
            None
            if single.open_orders_after is None or batch.open_orders_after is None
            else single.open_orders_after + batch.open_orders_after
        ),
        "rate_limits": {
            "connection_per_s": rates.connection_rate_per_s,
            "connection_burst": rates.connection_burst,
            "account_per_s": rates.account_rate_per_s,
            "account_burst": rates.account_burst,
        },
        "server_stopped_cleanly": clean,
        "errors": [t.error for t in (single, batch) if t.error],
        "server_exception": logged,  # the last line of the last traceback in its log
    }


Phase = Callable[[VenueClient, float, Tally], Awaitable[None]]


async def _phase(url: str, key: tuple[str, str], phase: Phase, duration_s: float) -> Tally:
    """Run `phase` on a fresh logged-on connection, bounded in time; count what it left open.

    If the connection is lost or time runs out, the phase ends there with the error; what it
    left open is counted and canceled on a new connection.
    """
    tally = Tally()
    time_limit_s = duration_s + PHASE_GRACE_S
    try:
        async with asyncio.timeout(time_limit_s), VenueClient(url) as client:
            await client.logon(*key)
            started = time.perf_counter()
            try:
                await phase(client, duration_s, tally)
            finally:
                tally.seconds = time.perf_counter() - started
            tally.open_orders_after = await _open_orders(client)
            return tally
    except (ConnectionError, TimeoutError) as lost:
        tally.error = str(lost) or f"no answer within {time_limit_s:g} s"
    async with asyncio.timeout(PHASE_GRACE_S), VenueClient(url) as client:
        await client.logon(*key)
        tally.open_orders_after = await _open_orders(client)
        if tally.open_orders_after:  # placed, but the cancel was never sent or answered
            await client.cancel_all(symbol=SYMBOL)
    return tally


async def _open_orders(client: VenueClient) -> int:
    """The account's open orders; a 429 (the phase spent the budget) is waited out."""
    while True:
        response = await client.request_raw("orders.open", {"symbol": SYMBOL})
        if response["status"] != 429:
            assert response["status"] == 200, f"orders.open failed: {response}"
            return len(response["result"]["orders"])
        await asyncio.sleep(response["retry_after_ms"] / 1_000)


def demo_keys(config_path: Path) -> list[tuple[str, str]]:
    """The trading keys of the `ACCOUNTS`, from the config."""
    config = venue_config.load(config_path)
    ids = {account.name: account.id for account in config.accounts}
    keys = []
    for name in ACCOUNTS:
        key = next(
            (k for k in config.api_keys if k.account == ids.get(name) and "trade" in k.scopes),
            None,
        )
        if key is None:
            raise CommandFailed(f"{config_path}: no trading key for the demo account {name}")
        keys.append((key.key, key.secret))
    return keys


def run(args: argparse.Namespace) -> int:
    if not 0 < args.duration <= DURATION_S_MAX:
        raise CommandFailed(f"--duration must be in (0, {DURATION_S_MAX:g}] seconds")
    if not 1 <= args.pipeline <= PIPELINE_MAX:
        raise CommandFailed(f"--pipeline must be in 1..{PIPELINE_MAX}")
    server_process.check_config(args.config)  # before the bar: "venue.toml: No such file" was all
    with progress.bar(
        args.json, total=STEPS, desc="gateway: server start", bar_format=progress.STEPS_FORMAT
    ) as shown:

        def step(next_step: str) -> None:
            shown.set_description_str(f"gateway: {next_step}", refresh=False)
            shown.update(1)

        work = measure(args.config, args.duration, args.pipeline, args.keep_limits, step)
        result = server_process.run_async(work)
    if args.json:
        print(json.dumps(result))
    else:
        latency = result["round_trip_us"]
        print(
            f"gateway: {result['round_trips_per_sec']:,} round trips/s "
            f"(p50 {latency['p50']:,} µs, p99 {latency['p99']:,} µs, max {latency['max']:,} µs); "
            f"{result['batched_actions_per_sec']:,} batched actions/s "
            f"({BATCH_OPS} ops a batch, {args.pipeline} in flight); "
            f"{result['rate_limited']:,} of {result['sent']:,} actions rate-limited"
        )
    for error in result["errors"]:
        print(f"gateway bench: a phase ended early: {error}", file=sys.stderr)
    if result["server_exception"]:
        print(f"gateway bench: the server logged {result['server_exception']}", file=sys.stderr)
    sound = (
        not result["errors"]
        and result["server_stopped_cleanly"]
        and result["open_orders_after"] == 0
    )
    return 0 if sound and result["single"]["acked"] and result["batched"]["acked"] else 1
