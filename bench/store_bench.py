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
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from cluster.postgres import PostgresServer
from settlement.store import LedgerStore, SqliteLedgerStore
from settlement.transfers import FEE_INCOME, ISSUANCE, Transfer, TransferKind

ACCOUNTS = 100  # participants trading with each other
TRANSFERS_PER_TRADE = 4
K = TransferKind


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", type=int, default=1_000, help="trades per transaction")
    parser.add_argument("--trades", type=int, default=200_000)
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--postgres", metavar="DSN", help="an empty database (implies postgres)")


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


def measure(trades: int, batch: int, directory: Path, postgres_dsn: str = "") -> dict[str, object]:
    store: LedgerStore
    if postgres_dsn:
        from settlement.pg_store import PostgresLedgerStore

        store = PostgresLedgerStore(postgres_dsn)
    else:
        store = SqliteLedgerStore(directory / "bench-ledger.sqlite")
    for code in ("USD", "AAPLx"):
        store.register_asset(code, 6)
    for account in (ISSUANCE, FEE_INCOME, *range(1, ACCOUNTS + 1)):
        store.register_account(account, f"a{account}")
    funded = funding(ACCOUNTS)
    store.append_batch(funded)
    batches = trade_batches(trades, batch, len(funded) + 1)
    commit_ms: list[float] = []
    cpu_started = time.process_time()
    started = time.perf_counter()
    for rows in batches:
        before = time.perf_counter()
        store.append_batch(rows)
        commit_ms.append((time.perf_counter() - before) * 1e3)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    problems = store.verify()
    store.close()
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


def run(args: argparse.Namespace) -> int:
    if args.batch <= 0 or args.trades <= 0:
        raise SystemExit("--batch and --trades must be positive")
    with tempfile.TemporaryDirectory(prefix="venue-bench-store-") as directory:
        if args.postgres or args.store == "sqlite":
            result = measure(args.trades, args.batch, Path(directory), args.postgres or "")
        else:
            Path(directory).chmod(0o711)  # the server runs as the postgres user
            with PostgresServer(Path(directory)) as server:
                dsn = server.create_database("bench_store")
                result = measure(args.trades, args.batch, Path(directory), dsn)
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
