"""The ledger store benchmark: `venue bench store` — DvP settlements committed per second.

Owns one measurement: trades shaped like the venue's (a delivery, a payment and two fees,
four transfers in one chain), written to a fresh SQLite store (WAL, synchronous=FULL) in
batches of `--batch` trades, one transaction each, as the venue's writer does. The
transfers are built before the clock starts; the time is the store's alone. Reports
trades per second over the whole run, the CPU per trade (user + system, so a commit's fsync
counts; the figure that batching moves, where trades/s also waits on the disk) and the
per-batch commit time percentiles. `--store postgres` measures `PostgresLedgerStore` instead,
on a throwaway PostgreSQL started in the temporary directory (cluster/postgres.py; its
server's CPU is not in the figure, only the client's), or `--postgres DSN` on an existing
empty database.

`--venue-path` measures the venue's whole store path instead: real commands (the `cross`
workload on a venue with a ledger) executed, cut into journal batches of
`--commands-per-batch` and handed to a `StoreThread` writing through a `LedgerWriter`, paced
at `--rate` commands/s as the journal's thread would; reports that thread's CPU per trade.
Each batch is handed over as the venue hands it (`ledger_writer.bookings_of`). The thread
runs alone here, its caches its own: under `venue bench e2e` the same work costs it more
(its data made on the loop's core, its core shared), so compare like with like. On a
terminal a bar counts the commands handed over (stderr; not with `--json`); the plain store
shows its steps (building the trades, writing, verifying) between them, never while timed.
"""

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from bench import workloads
from cli import progress
from cli.arguments import dsn, float_within
from cli.failures import CommandFailed
from cluster.postgres import PostgresServer
from core import store_thread
from core.ledger_writer import Bookings, LedgerWriter, bookings_of
from core.sequencer import Executed
from core.store_thread import StoreThread
from engine.events import TradeExecuted
from engine.venue import Venue
from settlement.ledger import Ledger
from settlement.store import LedgerStore, LedgerStoreError, SqliteLedgerStore
from settlement.transfers import FEE_INCOME, ISSUANCE, Transfer, TransferKind

ACCOUNTS = 100  # participants trading with each other
TRANSFERS_PER_TRADE = 4
# The trades are built in memory before the clock starts, ~600 MiB a million: five million
# is ~3 GiB, and a mistyped zero more no longer runs the machine out of it.
TRADES_MAX = 5_000_000
# `--venue-path` executes its commands and keeps every one, with its events and transfers, in
# memory before the first is handed over: ~2.1 GiB a million (tracemalloc's peak), so two
# million is ~4.2 GiB, as much as the other benchmarks' bounds allow.
COMMANDS_MAX = 2_000_000
GATHER_S_MAX = 1.0  # the venue gathers for 0.05 s; past a second it measures the wait alone
K = TransferKind


# Each mode's own options, with their defaults: given to the other mode they are refused,
# not ignored (`--venue-path` measures the SQLite store thread only).
STORE_OPTIONS: dict[str, object] = {
    "batch": 1_000,
    "trades": 200_000,
    "postgres": None,
    "store": "sqlite",
}
VENUE_PATH_OPTIONS: dict[str, object] = {
    "commands": 20_000,
    "rate": 4_000,
    "commands_per_batch": 4,
    "gather_s": store_thread.GATHER_S,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", type=int, help="trades per transaction (default 1,000)")
    parser.add_argument(
        "--trades",
        type=int,
        help=f"(default 200,000; at most {TRADES_MAX:,}: they are built in memory first)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--store", choices=("sqlite", "postgres"), help="(default sqlite)")
    parser.add_argument(
        "--postgres", metavar="DSN", type=dsn, help="an empty database (implies postgres)"
    )
    path = parser.add_argument_group("--venue-path: the venue's store path, paced")
    path.add_argument("--venue-path", action="store_true", help="store thread + ledger writer")
    path.add_argument(
        "--commands",
        type=int,
        help=f"commands executed (default 20,000; at most {COMMANDS_MAX:,}: they are executed"
        " in memory first)",
    )
    path.add_argument("--rate", type=int, help="commands/s handed to the store (default 4,000)")
    path.add_argument("--commands-per-batch", type=int, help="per journal batch (default 4)")
    path.add_argument(
        "--gather-s",
        type=float_within(0, GATHER_S_MAX),
        help=f"per write, 0 to {GATHER_S_MAX:g} (default {store_thread.GATHER_S:g})",
    )


def trade_batches(trades: int, batch: int, first_id: int) -> list[list[Transfer]]:
    """`trades` DvP chains between participants, cut into batches of `batch` trades."""
    batches: list[list[Transfer]] = []
    transfer_id = first_id - 1
    for start in range(0, trades, batch):
        rows: list[Transfer] = []
        for trade in range(start, min(start + batch, trades)):
            buyer, seller = trade % ACCOUNTS + 1, (trade * 7 + 3) % ACCOUNTS + 1
            if buyer == seller:
                seller = seller % ACCOUNTS + 1
            chain = trade + 2  # chain 1 funded everyone
            legs = (
                (seller, buyer, "AAPLx", 1_000 + trade % 997, K.DELIVERY),
                (buyer, seller, "USD", 187_250 + trade % 991, K.PAYMENT),
                (buyer, FEE_INCOME, "USD", 94, K.FEE),
                (seller, FEE_INCOME, "USD", 19, K.FEE),
            )
            for debit, credit, asset, amount, kind in legs:
                transfer_id += 1
                rows.append(Transfer(transfer_id, chain, debit, credit, asset, amount, kind, 0))
        batches.append(rows)
    return batches


def funding(accounts: int) -> list[Transfer]:
    """Chain 1: every participant minted enough of both assets for the whole run."""
    rows: list[Transfer] = []
    for account in range(1, accounts + 1):
        for asset in ("USD", "AAPLx"):
            transfer_id = len(rows) + 1
            rows.append(Transfer(transfer_id, 1, ISSUANCE, account, asset, 10**15, K.MINT, 0))
    return rows


# The plain store's steps, each drawn as it ends on a terminal (between them only: never
# inside the timed loop): the trades built, the batches written, the store verified.
STORE_STEPS = ("building the trades", "writing", "verifying")


def measure(
    trades: int,
    batch: int,
    directory: Path,
    postgres_dsn: str = "",
    step: Callable[[], object] = lambda: None,
) -> dict[str, object]:
    """Write `trades` in batches of `batch`; `step` is told as each of `STORE_STEPS` ends."""
    store: LedgerStore
    if postgres_dsn:
        from settlement.pg_store import PostgresLedgerStore

        store = PostgresLedgerStore(postgres_dsn)
        if stored := store.last_transfer_id():  # its batches would be compared, not written
            store.close()
            raise CommandFailed(
                f"--postgres: the database holds transfers already (up to id {stored:,}), and the"
                " benchmark writes from id 1: give an empty database"
            )
    else:
        store = SqliteLedgerStore(directory / "bench-ledger.sqlite")
    for code in ("USD", "AAPLx"):
        store.register_asset(code, 6)
    for account in (ISSUANCE, FEE_INCOME, *range(1, ACCOUNTS + 1)):
        store.register_account(account, f"a{account}")
    funded = funding(ACCOUNTS)
    store.append_batch(funded)
    batches = trade_batches(trades, batch, len(funded) + 1)
    step()
    commit_ms: list[float] = []
    cpu_started = time.process_time()
    started = time.perf_counter()
    for rows in batches:
        before = time.perf_counter()
        store.append_batch(rows)
        commit_ms.append((time.perf_counter() - before) * 1e3)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    step()
    problems = store.verify()
    store.close()
    step()
    commit_ms.sort()
    return {
        "batch": batch,
        "trades": trades,
        "transfers": trades * TRANSFERS_PER_TRADE,
        "seconds": round(seconds, 6),
        "trades_per_sec": round(trades / seconds),
        "cpu_us_per_trade": round(cpu_seconds * 1e6 / trades, 2),
        "batch_ms": {
            "p50": round(commit_ms[len(commit_ms) // 2], 3),
            "p99": round(commit_ms[len(commit_ms) * 99 // 100], 3),
            "max": round(commit_ms[-1], 3),
        },
        "store": "postgres" if postgres_dsn else "sqlite",
        "synchronous": "synchronous_commit=on" if postgres_dsn else "FULL",
        "verified": not problems,
    }


def executed_batches(commands: int, per_batch: int) -> tuple[list[Executed], list[list[Executed]]]:
    """The setup and `commands` commands of the `cross` workload as the sequencer has them
    once executed (events, the transfers each booked), the latter cut into journal batches."""
    workload = workloads.build("cross", commands, seed=1)
    ledger = Ledger()
    venue = Venue(ledger=ledger)
    executed: list[Executed] = []
    for seq, command in enumerate(workloads.ledger_setup() + workload.setup + workload.commands):
        events = venue.execute(command)
        executed.append(Executed(seq + 1, command, events, None, transfers=ledger.drain()))
    setup_count = len(executed) - len(workload.commands)
    setup, timed = executed[:setup_count], executed[setup_count:]
    return setup, [timed[start : start + per_batch] for start in range(0, len(timed), per_batch)]


def measure_venue_path(
    commands: int,
    rate: int,
    per_batch: int,
    directory: Path,
    gather_s: float,
    fed: Callable[[int], object] = lambda count: None,
) -> dict[str, object]:
    """Pace the batches into a store thread as the journal's thread does; its CPU per trade.
    `fed` is told each batch's commands as it is handed over (progress: it runs in the
    feeder's time, between hand-overs, not in the store thread's)."""
    setup, batches = executed_batches(commands, per_batch)
    failures: list[BaseException] = []
    writes: list[int] = []

    def write(gathered: list[Bookings]) -> None:
        writes.append(len(gathered))
        writer.book(gathered)

    thread: StoreThread[Bookings] = StoreThread(write, failures.append, gather_s)
    # The store's connection belongs to its thread, as in the venue.
    store = thread.call(SqliteLedgerStore, directory / "bench-ledger.sqlite").result()
    writer = thread.call(LedgerWriter, store).result()
    thread.book(bookings_of(setup), len(setup))
    thread.call(lambda: None).result()
    writes.clear()
    cpu_before = thread.cpu_seconds()
    interval_s = per_batch / rate
    started = time.perf_counter()
    late_ms: list[float] = []  # how late each timed wake-up ran: the GIL the store held
    for index, batch in enumerate(batches):
        due = started + index * interval_s
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
            late_ms.append((time.perf_counter() - due) * 1e3)
        thread.book(bookings_of(batch), len(batch))  # as the venue does, where it commits
        fed(len(batch))
    thread.call(lambda: None).result()
    seconds = time.perf_counter() - started
    cpu_seconds = thread.cpu_seconds() - cpu_before
    transactions = len(writes)
    trades = sum(type(event) is TradeExecuted for b in batches for e in b for event in e.events)
    problems = thread.call(store.verify).result()
    thread.call(store.close).result()
    thread.close()
    return {
        "venue_path": True,
        "commands": commands,
        "rate": rate,
        "commands_per_batch": per_batch,
        "gather_s": gather_s,
        "trades": trades,
        "store_writes": transactions,
        "seconds": round(seconds, 6),
        "store_thread_cpu_us_per_trade": round(cpu_seconds * 1e6 / max(trades, 1), 2),
        "store_thread_cpu_share": round(cpu_seconds / seconds, 4),
        "feeder_late_ms": percentiles(late_ms),
        "verified": not problems and not failures,
    }


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p99 and max of `values` (all 0 when there are none), in their unit."""
    ordered = sorted(values) or [0.0]
    return {
        "p50": round(ordered[len(ordered) // 2], 3),
        "p99": round(ordered[len(ordered) * 99 // 100], 3),
        "max": round(ordered[-1], 3),
    }


def run(args: argparse.Namespace) -> int:
    _refuse_the_other_modes_options(args)
    if args.venue_path:
        return run_venue_path(args)
    if args.batch <= 0 or args.trades <= 0:
        raise CommandFailed("--batch and --trades must be positive")
    if args.trades > TRADES_MAX:
        raise CommandFailed(
            f"--trades {args.trades:,}: at most {TRADES_MAX:,} (they are built in memory first)"
        )
    store = "postgres" if args.postgres or args.store == "postgres" else "sqlite"
    with (
        tempfile.TemporaryDirectory(prefix="venue-bench-store-") as directory,
        progress.bar(
            args.json,
            total=len(STORE_STEPS),
            desc=f"store ({store}): {STORE_STEPS[0]}",
            bar_format=progress.STEPS_FORMAT,
        ) as shown,
    ):
        following = iter([*STORE_STEPS[1:], "done"])

        def step() -> None:
            shown.set_description_str(f"store ({store}): {next(following)}", refresh=False)
            shown.update(1)

        try:
            result = _measure_store(args, Path(directory), step)
        except (psycopg.Error, LedgerStoreError) as refused:  # down, refused, not empty
            why = " ".join(str(refused).split())
            named = "PostgreSQL" if store == "postgres" else "SQLite"
            raise CommandFailed(f"the {named} ledger store: {why}") from None
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"store ({result['store']}): {result['trades_per_sec']:,} trades/s "
            f"({result['transfers']:,} transfers in {result['seconds']} s, "
            f"batch {args.batch}, commit p50 {result['batch_ms']['p50']} ms, "  # type: ignore[index]
            f"CPU {result['cpu_us_per_trade']} µs/trade)"
        )
    return 0 if result["verified"] else 1


def _refuse_the_other_modes_options(args: argparse.Namespace) -> None:
    """Refuse an option of the mode not chosen (it was ignored: `--venue-path --postgres DSN`
    measured SQLite, `--rate` alone the plain store); then fill in the defaults."""
    mine, others = VENUE_PATH_OPTIONS, STORE_OPTIONS
    if not args.venue_path:
        mine, others = others, mine
    given = [name for name in others if getattr(args, name) is not None]
    if args.store == "sqlite" and "store" in given:  # the store the venue path measures
        given.remove("store")
    if given:
        options = ", ".join("--" + name.replace("_", "-") for name in given)
        why = (
            "not with --venue-path (it measures the SQLite store thread on real commands)"
            if args.venue_path
            else "only with --venue-path (they pace its store thread)"
        )
        raise CommandFailed(f"{options}: {why}")
    for name, default in (mine | others).items():
        if getattr(args, name) is None:
            setattr(args, name, default)


def _measure_store(
    args: argparse.Namespace, directory: Path, step: Callable[[], object]
) -> dict[str, object]:
    """The store the arguments name: SQLite, `--postgres DSN`, or a throwaway PostgreSQL."""
    if args.postgres or args.store == "sqlite":
        return measure(args.trades, args.batch, directory, args.postgres or "", step)
    directory.chmod(0o711)  # the server runs as the postgres user
    with PostgresServer(directory) as server:
        database = server.create_database("bench_store")
        return measure(args.trades, args.batch, directory, database, step)


def run_venue_path(args: argparse.Namespace) -> int:
    if min(args.commands, args.rate, args.commands_per_batch) <= 0:
        raise CommandFailed("--commands, --rate and --commands-per-batch must be positive")
    if args.commands > COMMANDS_MAX:
        raise CommandFailed(
            f"--commands {args.commands:,}: at most {COMMANDS_MAX:,} with --venue-path (they are"
            " executed in memory first, ~2.1 GiB a million)"
        )
    with (
        tempfile.TemporaryDirectory(prefix="venue-bench-store-") as directory,
        progress.bar(
            args.json, total=args.commands, desc="store (venue path)", unit="command"
        ) as shown,
    ):
        result = measure_venue_path(
            args.commands,
            args.rate,
            args.commands_per_batch,
            Path(directory),
            args.gather_s,
            shown.update,
        )
    late = result["feeder_late_ms"]
    assert isinstance(late, dict)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"store (venue path): {result['trades']:,} trades from {args.commands:,} commands"
            f" at {args.rate:,}/s, {args.commands_per_batch} per journal batch, gathered for"
            f" {args.gather_s} s, in"
            f" {result['store_writes']} store writes; store thread CPU"
            f" {result['store_thread_cpu_us_per_trade']} µs/trade"
            f" ({result['store_thread_cpu_share']:.1%} of a core); the feeder's timed wake-ups"
            f" late by p99 {late['p99']} ms, max {late['max']} ms"
        )
    return 0 if result["verified"] else 1
