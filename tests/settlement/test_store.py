"""What only `SqliteLedgerStore` has: its file. The behaviour every store shares is tested
by the contract suite, test_store_contract.py, against SQLite and PostgreSQL alike."""

import sqlite3
from pathlib import Path

import pytest

from settlement.store import LedgerStoreError, SqliteLedgerStore


def test_sqlite_file_is_in_wal_mode(tmp_path: Path) -> None:
    SqliteLedgerStore(tmp_path / "ledger.sqlite").close()
    connection = sqlite3.connect(tmp_path / "ledger.sqlite")
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        connection.close()


def test_sqlite_refuses_a_file_from_another_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    SqliteLedgerStore(path).close()
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA user_version = 99")
    connection.close()
    with pytest.raises(LedgerStoreError, match="schema version 99"):
        SqliteLedgerStore(path)
