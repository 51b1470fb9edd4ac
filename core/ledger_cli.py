"""`venue ledger ...`: an operator's view of the ledger store — balances, reserves, verify.

Reads the SQLite store in the data directory, or with `--postgres DSN` the PostgreSQL one
the venue books into (`venue serve --postgres`); changes nothing. `verify` rebuilds every
balance from the stored transfers, checks that each asset sums to zero and that no
participant is below zero, and walks the hash chain of batches; it exits non-zero with one
line per problem. (Holds live with open orders in the venue's state, not in the store, so
they are checked by the venue's own invariants, not here.)
"""

import argparse
import contextlib
import sqlite3
from pathlib import Path

import psycopg

from cli.arguments import directory, dsn
from cli.failures import CommandFailed
from engine.units import format_units
from settlement.store import LedgerStore, LedgerStoreError, SqliteLedgerStore
from settlement.transfers import ISSUANCE

LEDGER_FILE = "ledger.sqlite"


EXIT_STATUSES = {  # what each command's help says of its exit status
    "balances": "Exit status: 0 done; 2 no store it can read (one line says why)",
    "reserves": "Exit status: 0 every asset covered; 1 an asset's supply above its attested"
    " reserves (its line says NO); 2 no store it can read (one line says why)",
    "verify": "Exit status: 0 every check ok; 1 a problem (a FAIL line each); 2 no store it"
    " can read (one line says why)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(title="ledger commands", required=True)
    for name, run, text in (
        ("balances", balances, "every non-zero balance, by account"),
        ("reserves", reserves, "proof of reserves: supply against attested reserves"),
        ("verify", verify, "rebuild balances, check conservation and the hash chain"),
    ):
        command = commands.add_parser(
            name, help=text, description=f"{text}. {EXIT_STATUSES[name]}."
        )
        command.add_argument(
            "--data-dir",
            default=Path("data"),
            type=directory,
            help="the venue's data directory, whose ledger.sqlite is read (default: data)",
        )
        command.add_argument(
            "--postgres",
            metavar="DSN",
            type=dsn,
            default=None,
            help="the PostgreSQL store, not the SQLite",
        )
        command.set_defaults(run=run)


def open_store(args: argparse.Namespace) -> LedgerStore:
    """The store these arguments name: `--postgres DSN`, else the data directory's SQLite."""
    if args.postgres is None:
        return _open(args.data_dir)
    from settlement.pg_store import PostgresLedgerStore

    try:
        return PostgresLedgerStore(args.postgres, read_only=True)  # every command only reads
    except (psycopg.Error, LedgerStoreError) as unreachable:
        why = " ".join(str(unreachable).split())
        raise CommandFailed(f"the PostgreSQL ledger store: {why}") from None


def _open(data_dir: Path) -> SqliteLedgerStore:
    path = data_dir / LEDGER_FILE
    if not path.exists():
        raise CommandFailed(f"no ledger store at {path}: run the venue (make run) first")
    try:
        found = schema_problem(path)
        if found is not None:
            raise CommandFailed(f"{path}: {found}")
        return SqliteLedgerStore(path)
    except (sqlite3.DatabaseError, LedgerStoreError) as unreadable:
        raise CommandFailed(f"{path}: {unreadable}") from None


def schema_problem(path: Path) -> str | None:
    """Why the SQLite file at `path` is no venue's ledger store (it has no schema version: a
    0-byte file left by a crash, another program's database), read without writing a byte;
    None for a store. `SqliteLedgerStore` would write its schema into such a file."""
    with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
        version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == 0:
        return "not a venue's ledger store (no schema): give the --data-dir a venue ran with"
    return None


def balances(args: argparse.Namespace) -> int:
    store = open_store(args)
    scales, names = store.assets(), store.accounts()
    print(f"{'account':<28} {'asset':<14} {'balance':>26}")
    for (account, asset), amount in sorted(store.balances().items()):
        name = f"{account} {names.get(account, '?')}"
        print(f"{name:<28} {asset:<14} {format_units(amount, scales[asset]):>26}")
    store.close()
    return 0


def reserves(args: argparse.Namespace) -> int:
    store = open_store(args)
    scales, attested, net = store.assets(), store.attestations(), store.balances()
    print(f"{'asset':<14} {'supply':>24} {'attested':>24}  as of (µs)        covered")
    uncovered = 0
    for asset, scale in scales.items():
        supply = -net.get((ISSUANCE, asset), 0)
        amount, as_of = attested.get(asset, (0, 0))
        covered = supply <= amount
        uncovered += not covered
        print(
            f"{asset:<14} {format_units(supply, scale):>24} {format_units(amount, scale):>24}"
            f"  {as_of:<17} {'yes' if covered else 'NO'}"
        )
    store.close()
    return 1 if uncovered else 0


def verify(args: argparse.Namespace) -> int:
    store = open_store(args)
    problems = store.verify()
    transfers = store.last_transfer_id()
    store.close()
    for problem in problems:
        print(f"FAIL {problem}")
    if problems:
        return 1
    print(f"ok: {transfers} transfers, hash chain intact, every asset sums to zero")
    return 0
