"""What only `SqliteLedgerStore` has: its file. The behaviour every store shares is tested
by the contract suite, test_store_contract.py, against SQLite and PostgreSQL alike."""

import sqlite3
from pathlib import Path

import pytest

from settlement.store import (
    INSERT_ROWS_MAX,
    BatchRejectedError,
    LedgerStoreError,
    SqliteLedgerStore,
    _rows_per_insert,
)
from settlement.transfers import ISSUANCE, Transfer, TransferKind


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


def _mints(first_id: int, count: int) -> list[Transfer]:
    return [
        Transfer(id_, id_, ISSUANCE, 1, "USD", id_, TransferKind.MINT, 1_700_000_000_000_000)
        for id_ in range(first_id, first_id + count)
    ]


def test_a_batch_is_inserted_by_few_statements_and_reads_back_whole(tmp_path: Path) -> None:
    """Each INSERT is one sqlite3_step, which lets go of the GIL: a batch is inserted a power
    of two of rows at a time (at most `INSERT_ROWS_MAX`), never a statement per transfer.
    Sizes around the chunks' edges read back exactly, in a sound chain."""
    store = SqliteLedgerStore(tmp_path / "ledger.sqlite")
    store.register_asset("USD", 6)
    store.register_account(ISSUANCE, "venue:issuance")
    store.register_account(1, "participant 1")
    inserts: list[str] = []
    store._connection.set_trace_callback(
        lambda sql: inserts.append(sql) if sql.startswith("INSERT INTO transfers") else None
    )
    written: list[Transfer] = []
    for count in (1, 3, INSERT_ROWS_MAX - 1, INSERT_ROWS_MAX, INSERT_ROWS_MAX + 1, 700):
        inserts.clear()
        batch = _mints(len(written) + 1, count)
        assert store.append_batch(batch) is True
        written += batch
        full, rest = divmod(count, INSERT_ROWS_MAX)
        assert len(inserts) == full + rest.bit_count(), count
    assert list(store.iter_transfers()) == written
    assert store.verify() == []
    store.close()


@pytest.mark.parametrize(
    ("variables_max", "rows"), [(250_000, INSERT_ROWS_MAX), (32_766, 256), (999, 64), (8, 1)]
)
def test_an_insert_binds_no_more_variables_than_sqlite_allows(
    variables_max: int, rows: int
) -> None:
    """SQLite before 3.32 binds at most 999 variables a statement: 8 a row, 64 rows then."""
    assert _rows_per_insert(variables_max) == rows


@pytest.mark.parametrize(
    ("amounts", "error"),
    [((0, 2**63), "CHECK constraint failed"), ((2**63, 0), "too large")],
)
def test_a_bad_batch_reports_its_first_bad_rows_error_and_stores_nothing(
    tmp_path: Path, amounts: tuple[int, int], error: str
) -> None:
    """One multi-row INSERT binds every value before its first row runs, so an integer out of
    range in a later row would be reported before an earlier row's constraint: the error is
    the first bad row's, as with one statement per row (the reviewer's find)."""
    store = SqliteLedgerStore(tmp_path / "ledger.sqlite")
    store.register_asset("USD", 6)
    store.register_account(ISSUANCE, "venue:issuance")
    store.register_account(1, "participant 1")
    mint = TransferKind.MINT
    batch = [Transfer(i, 1, ISSUANCE, 1, "USD", a, mint, 1) for i, a in enumerate(amounts, 1)]
    with pytest.raises(BatchRejectedError, match=error):
        store.append_batch(batch)
    assert list(store.iter_transfers()) == [] and store.verify() == []
    store.close()


def test_a_store_file_linked_to_nothing_is_refused_and_one_linked_to_a_file_followed(
    tmp_path: Path,
) -> None:
    """As the journal's rule: SQLite followed a link to nothing and made an empty store at its
    target (a disk not mounted), and the venue booked on from nothing. A link to a store file
    opens that store."""
    elsewhere = tmp_path / "other-disk"
    elsewhere.mkdir()
    store = SqliteLedgerStore(elsewhere / "ledger.sqlite")
    store.register_asset("USD", 6)
    store.register_account(ISSUANCE, "venue:issuance")
    store.register_account(1, "participant 1")
    store.append_batch(_mints(1, 3))
    store.close()
    linked = tmp_path / "ledger.sqlite"
    linked.symlink_to(elsewhere / "ledger.sqlite")
    store = SqliteLedgerStore(linked)
    try:
        assert store.last_transfer_id() == 3
    finally:
        store.close()

    dangling = tmp_path / "data" / "ledger.sqlite"
    dangling.parent.mkdir()
    gone = elsewhere / "gone.sqlite"
    dangling.symlink_to(gone)
    with pytest.raises(LedgerStoreError, match=f"^{dangling} is a symbolic link to {gone}, which"):
        SqliteLedgerStore(dangling)
    assert not gone.exists() and sorted(elsewhere.iterdir()) == [elsewhere / "ledger.sqlite"]
