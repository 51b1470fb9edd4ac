"""The ledger store: booked transfers made durable; with pg_store.py, settlement's only I/O.

Owns the `LedgerStore` interface, the pure parts every store shares (checks, rows, hashes,
verification) and `SqliteLedgerStore` (WAL, synchronous=FULL). Leaves
deciding what to book to the ledger; the store is derived from its events and can be rebuilt.
Transfers arrive in batches, one transaction each, so a batch is stored whole or not at all.
A batch's ids continue the store's last id with no gap; re-applying stored ids with the same
contents is a no-op. Each batch's hash is sha256(previous hash + the batch's canonical
encoding), so altering a stored row breaks the chain; anchor `head_hash()` outside the store
(journal, snapshot), since whoever can rewrite every row can recompute the chain too.
Transfers, batches and registrations are append-only: triggers refuse UPDATE and DELETE.
`verify()` re-derives everything: the chain, each batch's hash, zero-sum assets, and no
participant (positive account) below zero.
"""

import contextlib
import hashlib
import operator
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import reduce
from os import PathLike
from pathlib import Path
from typing import Final, NamedTuple, Protocol, TypeVar, cast

import msgspec

from settlement.transfers import Transfer, TransferKind

# Bounds one transaction's memory and write-lock time: 25x a 1,000-trade batch (~4,000 legs).
BATCH_TRANSFERS_MAX: Final = 100_000
ASSET_SCALE_MAX: Final = 18  # amounts are signed 64-bit: 10**18 units must fit below 2**63
AMOUNT_LIMIT: Final = 2**63  # amounts are stored as signed 64-bit integers
ASSET_CODE_CHARS_MAX: Final = 32  # longer than any ticker or T-bill code we list
ACCOUNT_NAME_CHARS_MAX: Final = 200  # a label for people; the ledger refuses longer first
ITERATION_PAGE_TRANSFERS: Final = 10_000  # rows held in memory per page while iterating
BUSY_TIMEOUT_MS: Final = 5_000  # a checkpoint or another writer finishing; longer is stuck

GENESIS_HASH: Final = bytes(32)  # the previous hash of batch 1
SCHEMA_VERSION: Final = 1

# (transfer_id, chain_id, debit_account, credit_account, asset, amount, kind, ts_us):
# the column order of the transfers table and of the canonical encoding.
TransferRow = tuple[int, int, int, int, str, int, str, int]

_encoder = msgspec.msgpack.Encoder()
_Key = TypeVar("_Key", int, str)


class LedgerStoreError(Exception):
    """The store refused an operation; nothing was written."""


class RegistrationError(LedgerStoreError):
    """An asset or account argument is malformed or conflicts with its registration."""


class BatchSequenceError(LedgerStoreError):
    """A batch's ids do not continue the store: a gap, an overlap, a conflicting re-send."""


class BatchRejectedError(LedgerStoreError):
    """A batch broke a rule of the store: size, unknown account or asset, amount, types."""


class SummedTransfers(NamedTuple):
    """What the stored transfers up to an id add up to, read in one view of the store."""

    balances: dict[tuple[int, str], int]  # net per (account, asset), credits positive; no zeros
    last_id: int  # the highest id among them (0: none); below the id asked for: some are missing
    # the first of them of a kind this build does not know, (id, kind): None when there is none
    unknown_kind: tuple[int, str] | None


class LedgerStore(Protocol):
    """Where booked transfers are kept. Every refusal is a `LedgerStoreError`."""

    def register_asset(self, code: str, scale: int) -> bool:
        """Add an asset; False when it is already registered with this scale."""
        ...

    def register_account(self, account_id: int, name: str) -> bool:
        """Add an account; False when it is already registered with this name."""
        ...

    def assets(self) -> dict[str, int]:
        """Every registered asset's scale, by code."""
        ...

    def accounts(self) -> dict[int, str]:
        """Every registered account's name, by id."""
        ...

    def record_attestation(self, asset: str, amount: int, as_of_us: int) -> bool:
        """Keep a custodian's reserve statement; False when it is already recorded."""
        ...

    def attestations(self) -> dict[str, tuple[int, int]]:
        """The latest (amount, as_of_us) attested per asset."""
        ...

    def append_batch(self, transfers: Sequence[Transfer]) -> bool:
        """Store a batch atomically; False when these ids are already stored as they are."""
        ...

    def last_transfer_id(self) -> int:
        """The highest stored transfer id; 0 when the store is empty."""
        ...

    def head_hash(self) -> bytes:
        """The last batch's hash (`GENESIS_HASH` when empty): anchor it outside the store."""
        ...

    def iter_transfers(self, after_id: int = 0) -> Iterator[Transfer]:
        """The stored transfers with ids above `after_id`, in id order."""
        ...

    def balances(self) -> dict[tuple[int, str], int]:
        """Net balance per (account, asset) from the transfers, credits positive; no zeros."""
        ...

    def sum_through(self, transfer_id: int) -> SummedTransfers:
        """The transfers with ids up to `transfer_id`, summed by the database (a check that
        needs only their balances reads no transfer), with their last id and any of a kind
        this build cannot read."""
        ...

    def verify(self) -> list[str]:
        """Every problem found, one sentence each; empty when the store is sound."""
        ...

    def close(self) -> None:
        """Release the store; calling it twice is harmless."""
        ...


def batch_hash(prev_hash: bytes, rows: Sequence[TransferRow]) -> bytes:
    """sha256 of the previous batch's hash followed by the msgpack array of the rows."""
    return hashlib.sha256(prev_hash + _encoder.encode(rows)).digest()


def balance_problems(balances: Mapping[tuple[int, str], int]) -> list[str]:
    """Assets that do not sum to zero and participants below zero, in a stable order."""
    totals: dict[str, int] = {}
    negatives: list[str] = []
    for (account_id, asset), amount in sorted(balances.items()):
        totals[asset] = totals.get(asset, 0) + amount
        if account_id > 0 and amount < 0:
            negatives.append(f"participant {account_id} holds {amount} of {asset}")
    unbalanced = [
        f"asset {asset} sums to {total}, not 0" for asset, total in totals.items() if total
    ]
    return unbalanced + negatives


# -- what every store shares: the checks before a write, the rows, the chain's findings --------

BatchRecord = tuple[int, int, int, bytes, bytes]  # batch_no, first and last id, prev hash, hash

# A batch's values in one flat list, row after row (`batch_rows_and_values`): a column is the
# extended slice `values[column::_ROW_VARIABLES]`, copied in C at a few instructions a value
# (an `itemgetter` mapped over the rows costs ~20 times that), and a run of rows is a slice,
# ready to bind as one INSERT's parameters.
_ROW_VARIABLES: Final = 8
_ID, _DEBIT, _CREDIT, _ASSET = 0, 2, 3, 4


def batch_rows(transfers: Sequence[Transfer]) -> list[TransferRow]:
    """A batch's rows in canonical column order, once its size, kinds and ids are checked:
    ids consecutive and ascending, from 1 up. Refuses with a `LedgerStoreError`."""
    return batch_rows_and_values(transfers)[0]


def batch_rows_and_values(
    transfers: Sequence[Transfer],
) -> tuple[list[TransferRow], list[int | str]]:
    """`batch_rows`, and the same values in one flat list, row after row."""
    count = len(transfers)
    if not 1 <= count <= BATCH_TRANSFERS_MAX:
        raise BatchRejectedError(f"a batch holds 1 to {BATCH_TRANSFERS_MAX} transfers, not {count}")
    try:
        rows: list[TransferRow] = [
            (
                t.transfer_id,
                t.chain_id,
                t.debit_account,
                t.credit_account,
                t.asset,
                t.amount,
                t.kind._value_,  # a plain str binds far faster than the enum member
                t.ts_us,
            )
            for t in transfers
        ]
    except AttributeError as error:
        raise BatchRejectedError(f"a transfer's kind is not a TransferKind: {error}") from None
    # One C-level pass (`list += row` for each row), not a loop of bytecodes per value.
    values: list[int | str] = reduce(operator.iadd, rows, [])
    first_id = rows[0][0]
    last_id = rows[-1][0]
    if first_id < 1:
        raise BatchSequenceError(f"batch {first_id}..{last_id}: transfer ids start at 1")
    if values[_ID::_ROW_VARIABLES] != list(range(first_id, first_id + count)):
        raise BatchSequenceError(
            f"batch {first_id}..{last_id}: transfer ids are not consecutive and ascending"
        )
    return rows, values


def transfer_of(row: TransferRow) -> Transfer:
    transfer_id, chain_id, debit, credit, asset, amount, kind, ts_us = row
    return Transfer(transfer_id, chain_id, debit, credit, asset, amount, TransferKind(kind), ts_us)


def check_asset(code: str, scale: int) -> None:
    if not 1 <= len(code) <= ASSET_CODE_CHARS_MAX:
        raise RegistrationError(f"asset code {code!r} is not 1 to {ASSET_CODE_CHARS_MAX} chars")
    if not 0 <= scale <= ASSET_SCALE_MAX:
        raise RegistrationError(f"asset {code} scale {scale} is not 0 to {ASSET_SCALE_MAX}")


def check_account(account_id: int, name: str) -> None:
    if account_id == 0:
        raise RegistrationError("account id 0 is neither a participant nor a venue account")
    if len(name) > ACCOUNT_NAME_CHARS_MAX:
        raise RegistrationError(
            f"account {account_id} name is longer than {ACCOUNT_NAME_CHARS_MAX} chars"
        )


def check_attestation(asset: str, amount: int) -> None:
    if not 0 <= amount < AMOUNT_LIMIT:
        raise RegistrationError(f"{asset} reserves of {amount} are not 0 to {AMOUNT_LIMIT - 1}")


def asset_is_new(code: str, scale: int, stored_scale: int | None) -> bool:
    """True when the asset is not stored yet; False when stored alike; refuses a conflict."""
    if stored_scale is not None and stored_scale != scale:
        raise RegistrationError(
            f"asset {code} is registered with scale {stored_scale}, not {scale}"
        )
    return stored_scale is None


def account_is_new(account_id: int, name: str, stored_name: str | None) -> bool:
    """True when the account is not stored yet; False when stored alike; refuses a conflict."""
    if stored_name is not None and stored_name != name:
        raise RegistrationError(
            f"account {account_id} is registered as {stored_name!r}, not {name!r}"
        )
    return stored_name is None


def attestation_is_new(asset: str, amount: int, as_of_us: int, stored: int | None) -> bool:
    """True when this statement is not stored yet; False when stored alike; refuses a
    conflicting amount for the same moment."""
    if stored is not None and stored != amount:
        raise RegistrationError(
            f"{asset} reserves as of {as_of_us} are recorded as {stored}, not {amount}"
        )
    return stored is None


def chain_problems(
    batches: Iterable[BatchRecord],
    rows_between: Callable[[int, int], list[TransferRow]],
    count_from: Callable[[int], int],
) -> list[str]:
    """Walk the batches in order: numbering, contiguity, chaining and each batch's hash
    against its transfers (`rows_between(first, last)`), then transfers past the last batch
    (`count_from(first_id)`). One sentence per problem."""
    problems: list[str] = []
    expected_no, expected_first_id, prev_hash = 1, 1, GENESIS_HASH
    for batch_no, first_id, last_id, stored_prev_hash, stored_hash in batches:
        where = f"batch {batch_no} ({first_id}..{last_id})"
        if batch_no != expected_no:
            problems.append(f"{where} follows batch {expected_no - 1}")
        if first_id != expected_first_id or last_id < first_id:
            problems.append(f"{where} should start at transfer {expected_first_id}")
        if stored_prev_hash != prev_hash:
            problems.append(f"{where} does not chain to the previous batch's hash")
        rows = rows_between(first_id, last_id)
        if len(rows) != last_id - first_id + 1:
            problems.append(f"{where} has {len(rows)} of its transfers")
        if batch_hash(stored_prev_hash, rows) != stored_hash:
            problems.append(f"{where} hash does not match its transfers")
        expected_no, expected_first_id, prev_hash = batch_no + 1, last_id + 1, stored_hash
    outside = count_from(expected_first_id)
    if outside:
        problems.append(f"{outside} transfers from id {expected_first_id} are in no batch")
    return problems


def sequence_problem(first_id: int, last_id: int, stored_last_id: int) -> BatchSequenceError:
    """Why a batch that is not a re-send does not continue a store ending at `stored_last_id`."""
    return BatchSequenceError(_sequence_message(first_id, last_id, stored_last_id))


def _refuse(table: str, statement: str) -> str:
    return (
        f"CREATE TRIGGER IF NOT EXISTS {table}_refuse_{statement.lower()}"
        f" BEFORE {statement} ON {table}"
        f" BEGIN SELECT RAISE(ABORT, '{table} are append-only: {statement} refused'); END;"
    )


_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS assets (
    code TEXT PRIMARY KEY CHECK (length(code) BETWEEN 1 AND {ASSET_CODE_CHARS_MAX}),
    scale INTEGER NOT NULL CHECK (scale BETWEEN 0 AND {ASSET_SCALE_MAX})
) STRICT;
CREATE TABLE IF NOT EXISTS accounts (
    account_id INTEGER PRIMARY KEY CHECK (account_id <> 0),
    name TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS transfers (
    transfer_id INTEGER PRIMARY KEY CHECK (transfer_id > 0),
    chain_id INTEGER NOT NULL,
    debit_account INTEGER NOT NULL,
    credit_account INTEGER NOT NULL CHECK (credit_account <> debit_account),
    asset TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    kind TEXT NOT NULL,
    ts_us INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS batches (
    batch_no INTEGER PRIMARY KEY,
    first_transfer_id INTEGER NOT NULL,
    last_transfer_id INTEGER NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS attestations (
    asset TEXT NOT NULL,
    as_of_us INTEGER NOT NULL,
    amount INTEGER NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (asset, as_of_us)
) STRICT;
{_refuse("attestations", "UPDATE")}
{_refuse("attestations", "DELETE")}
{_refuse("transfers", "UPDATE")}
{_refuse("transfers", "DELETE")}
{_refuse("batches", "UPDATE")}
{_refuse("batches", "DELETE")}
{_refuse("assets", "UPDATE")}
{_refuse("assets", "DELETE")}
{_refuse("accounts", "UPDATE")}
{_refuse("accounts", "DELETE")}
PRAGMA user_version = {SCHEMA_VERSION};
"""

_TRANSFER_COLUMNS = (
    "transfer_id, chain_id, debit_account, credit_account, asset, amount, kind, ts_us"
)
# Rows per INSERT statement: a statement is one sqlite3_step however many rows it holds, and
# each step lets go of the GIL (with `executemany`, once per transfer: the event loop takes the
# GIL and gives it back each time, futex calls and context switches per row). 8 variables a
# row: 2,048 a statement, within SQLite's default limit of 32,766 (an older SQLite's 999
# makes it 64: `_rows_per_insert`).
INSERT_ROWS_MAX: Final = 256
_ROW_VALUES = "(?, ?, ?, ?, ?, ?, ?, ?)"
# One statement per power of two up to `INSERT_ROWS_MAX`: any batch is inserted by at most
# ~log2 statements plus one per full chunk, and the connection's statement cache keeps all nine.
_INSERT_TRANSFERS = {
    rows: f"INSERT INTO transfers ({_TRANSFER_COLUMNS}) VALUES " + ", ".join([_ROW_VALUES] * rows)
    for rows in (1 << power for power in range(INSERT_ROWS_MAX.bit_length()))
}
_INSERT_BATCH = (
    "INSERT INTO batches (batch_no, first_transfer_id, last_transfer_id, prev_hash, hash)"
    " VALUES (?, ?, ?, ?, ?)"
)
_SELECT_HEAD = "SELECT batch_no, last_transfer_id, hash FROM batches ORDER BY batch_no DESC LIMIT 1"
_SELECT_RANGE = (
    f"SELECT {_TRANSFER_COLUMNS} FROM transfers"
    " WHERE transfer_id BETWEEN ? AND ? ORDER BY transfer_id"
)
_SELECT_PAGE = (
    f"SELECT {_TRANSFER_COLUMNS} FROM transfers WHERE transfer_id > ? ORDER BY transfer_id LIMIT ?"
)
# SQLite's SUM is 64-bit and raises on overflow, but a balance can pass 2**63. Each amount
# (0 < amount < 2**63) is summed as a high and a low 32-bit half, whose sums stay within
# SQLite's signed 64 bits up to 2**31 legs per account and asset (a low half is below 2**32,
# so 2**31 of them sum below 2**63); Python joins them exactly (in _balances).
_HALF_BITS: Final = 32
_SELECT_BALANCES = f"""
SELECT account_id, asset, SUM(high), SUM(low) FROM (
    SELECT credit_account AS account_id, asset,
        amount >> {_HALF_BITS} AS high, amount & {2**_HALF_BITS - 1} AS low FROM transfers
    UNION ALL
    SELECT debit_account, asset,
        -(amount >> {_HALF_BITS}), -(amount & {2**_HALF_BITS - 1}) FROM transfers
) GROUP BY account_id, asset
"""
_SELECT_BALANCES_THROUGH = f"""
SELECT account_id, asset, SUM(high), SUM(low) FROM (
    SELECT credit_account AS account_id, asset,
        amount >> {_HALF_BITS} AS high, amount & {2**_HALF_BITS - 1} AS low FROM transfers
        WHERE transfer_id <= ?1
    UNION ALL
    SELECT debit_account, asset,
        -(amount >> {_HALF_BITS}), -(amount & {2**_HALF_BITS - 1}) FROM transfers
        WHERE transfer_id <= ?1
) GROUP BY account_id, asset
"""
_SELECT_LAST_THROUGH = "SELECT MAX(transfer_id) FROM transfers WHERE transfer_id <= ?"
KNOWN_KINDS: Final = tuple(kind.value for kind in TransferKind)
_SELECT_UNKNOWN_KIND_THROUGH = (
    "SELECT transfer_id, kind FROM transfers WHERE transfer_id <= ? AND kind NOT IN"
    f" ({', '.join('?' * len(KNOWN_KINDS))}) ORDER BY transfer_id LIMIT 1"
)
_SELECT_UNREGISTERED = """
SELECT 'account', account_id FROM (
    SELECT debit_account AS account_id FROM transfers
    UNION SELECT credit_account FROM transfers
) WHERE account_id NOT IN (SELECT account_id FROM accounts)
UNION ALL
SELECT DISTINCT 'asset', asset FROM transfers WHERE asset NOT IN (SELECT code FROM assets)
"""


def _joined_halves(rows: Iterable[tuple[int, str, int, int]]) -> dict[tuple[int, str], int]:
    """The balances of `_SELECT_BALANCES`' rows (sums of high and low halves), no zeros."""
    balances = {}
    for account_id, asset, high, low in rows:
        amount = (high << _HALF_BITS) + low
        if amount:
            balances[account_id, asset] = amount
    return balances


def _refuse_dangling_link(path: str | PathLike[str]) -> None:
    """A store file that is a symbolic link to nothing (a store kept on a disk not mounted now)
    is refused: SQLite would create an empty store at the link's target, and the venue would
    book on from nothing beside a journal that remembers more. A link to a file is followed."""
    if os.path.islink(path) and not os.path.exists(path):
        raise LedgerStoreError(
            f"{os.fspath(path)} is a symbolic link to {os.readlink(path)}, which does not exist"
            " (is its disk mounted?): not starting an empty ledger store there; restore it or"
            " remove the link"
        )


def _create_owner_only(path: str | PathLike[str]) -> None:
    """Create the store's file empty (a valid SQLite database), readable by its owner only
    whatever the umask: it holds every participant's balances. SQLite gives its -wal and -shm
    files the database file's mode. An existing file, or an in-memory store, is left as is."""
    if os.fspath(path) == ":memory:":
        return
    # There already, or no such directory (SQLite's own open then says which): left to it.
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))


def has_wal(path: str | PathLike[str]) -> bool:
    """Whether a -wal is beside the store: a writer has it open, or one that crashed left
    transactions in it; none once the last writer closed it."""
    return os.path.lexists(f"{os.fspath(path)}-wal")


def _connect_read_only(path: str | PathLike[str]) -> sqlite3.Connection:
    """A read-only connection to the store at `path` (`mode=ro`). With no -wal beside it
    (nothing writes it) SQLite is told the file cannot change (`immutable=1`), so it makes no
    -wal or -shm: a read-only directory (a copy, another user's) reads, a writable one is left
    as it was (since session 33's review; before, WAL mode made both, or, where the directory
    could not be written, refused: `attempt to write a readonly database`). With a -wal, the
    transactions in it are read, which takes a -shm SQLite can write beside it."""
    resolved = Path(path).resolve()
    query = "mode=ro" if has_wal(resolved) else "mode=ro&immutable=1"
    return sqlite3.connect(f"{resolved.as_uri()}?{query}", uri=True, isolation_level=None)


class SqliteLedgerStore:
    """A `LedgerStore` in one SQLite file.

    Writers in several processes are safe (each batch takes the write lock up front), but a
    store object belongs to one thread. Disk and lock failures surface as sqlite3 errors,
    for the caller to retry; nothing of the batch that met them is written. `read_only=True`
    (the checks: `venue verify --nats`) opens an existing store to read it: no schema written,
    no setting changed, and, with no -wal beside it, no file made (`_connect_read_only`).
    """

    def __init__(self, path: str | PathLike[str], read_only: bool = False) -> None:
        _refuse_dangling_link(path)
        if read_only:
            self._connection = _connect_read_only(path)
        else:
            _create_owner_only(path)
            self._connection = sqlite3.connect(path, isolation_level=None)
        try:
            if read_only:
                self._configure_read_only()
            else:
                self._configure()
        except BaseException:
            self._connection.close()
            raise
        # Registrations are never deleted, so ids seen here stay valid; a miss is checked
        # against the file, where another process may have registered it.
        self._known_accounts: set[int] = set()
        self._known_assets: set[str] = set()

    def _configure_read_only(self) -> None:
        execute = self._connection.execute
        execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        version = execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            found = "no schema" if version == 0 else f"schema version {version}"
            raise LedgerStoreError(
                f"no ledger store this code reads in this file ({found}; it reads {SCHEMA_VERSION})"
            )

    def _configure(self) -> None:
        execute = self._connection.execute
        mode = execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise LedgerStoreError(f"the ledger store needs WAL but the file is in {mode} mode")
        execute("PRAGMA synchronous = FULL")
        execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._rows_per_insert = _rows_per_insert(
            self._connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        )
        version = execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            self._connection.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
        elif version != SCHEMA_VERSION:
            raise LedgerStoreError(
                f"ledger store schema version {version}; this code reads {SCHEMA_VERSION}"
            )

    # -- registrations ----------------------------------------------------------------

    def register_asset(self, code: str, scale: int) -> bool:
        check_asset(code, scale)
        with self._write():
            row = self._connection.execute(
                "SELECT scale FROM assets WHERE code = ?", (code,)
            ).fetchone()
            if not asset_is_new(code, scale, None if row is None else row[0]):
                return False
            self._connection.execute(
                "INSERT INTO assets (code, scale) VALUES (?, ?)", (code, scale)
            )
        return True

    def register_account(self, account_id: int, name: str) -> bool:
        check_account(account_id, name)
        with self._write():
            row = self._connection.execute(
                "SELECT name FROM accounts WHERE account_id = ?", (account_id,)
            ).fetchone()
            if not account_is_new(account_id, name, None if row is None else row[0]):
                return False
            self._connection.execute(
                "INSERT INTO accounts (account_id, name) VALUES (?, ?)", (account_id, name)
            )
        return True

    def assets(self) -> dict[str, int]:
        return dict(self._connection.execute("SELECT code, scale FROM assets ORDER BY code"))

    def accounts(self) -> dict[int, str]:
        query = "SELECT account_id, name FROM accounts ORDER BY account_id"
        return dict(self._connection.execute(query))

    # -- reserves -------------------------------------------------------------------------

    def record_attestation(self, asset: str, amount: int, as_of_us: int) -> bool:
        check_attestation(asset, amount)
        with self._write():
            row = self._connection.execute(
                "SELECT amount FROM attestations WHERE asset = ? AND as_of_us = ?",
                (asset, as_of_us),
            ).fetchone()
            if not attestation_is_new(asset, amount, as_of_us, None if row is None else row[0]):
                return False
            self._connection.execute(
                "INSERT INTO attestations (asset, as_of_us, amount) VALUES (?, ?, ?)",
                (asset, as_of_us, amount),
            )
        return True

    def attestations(self) -> dict[str, tuple[int, int]]:
        rows = self._connection.execute(
            "SELECT asset, amount, MAX(as_of_us) FROM attestations GROUP BY asset ORDER BY asset"
        )
        return {asset: (amount, as_of) for asset, amount, as_of in rows}

    # -- transfers ------------------------------------------------------------------------

    def append_batch(self, transfers: Sequence[Transfer]) -> bool:
        rows, values = batch_rows_and_values(transfers)
        first_id = rows[0][0]
        last_id = rows[-1][0]
        with self._write():
            head = self._connection.execute(_SELECT_HEAD).fetchone()
            batch_no, stored_last_id, prev_hash = head if head else (0, 0, GENESIS_HASH)
            if last_id <= stored_last_id:
                return self._check_reapplied(rows, first_id, last_id)
            if first_id != stored_last_id + 1:
                raise sequence_problem(first_id, last_id, stored_last_id)
            self._check_registered(values, first_id, last_id)
            try:
                digest = batch_hash(prev_hash, rows)
                self._insert(rows, values)
            except (sqlite3.IntegrityError, OverflowError) as error:
                raise BatchRejectedError(f"batch {first_id}..{last_id}: {error}") from None
            self._connection.execute(
                _INSERT_BATCH, (batch_no + 1, first_id, last_id, prev_hash, digest)
            )
        return True

    def _insert(self, rows: list[TransferRow], values: list[int | str]) -> None:
        """Insert the rows in few statements: the largest power of two of them that is left,
        at most `_rows_per_insert`, at a time (`_INSERT_TRANSFERS`), each binding its slice
        of `values` (the same rows, flat)."""
        execute = self._connection.execute
        start, count, most = 0, len(rows), self._rows_per_insert
        while start < count:
            size = min(most, 1 << ((count - start).bit_length() - 1))
            end = start + size
            try:
                execute(
                    _INSERT_TRANSFERS[size],
                    values[start * _ROW_VARIABLES : end * _ROW_VARIABLES],
                )
            except (sqlite3.IntegrityError, OverflowError):
                # The statement inserted nothing, but it binds every value before the first
                # row runs: an integer out of range in a later row would be reported before
                # an earlier row's constraint. Row by row, the first bad row's own error is
                # raised, as one statement per row always did (the caller rolls back).
                self._connection.executemany(_INSERT_TRANSFERS[1], rows[start:end])
                raise
            start = end

    def _check_reapplied(self, rows: list[TransferRow], first_id: int, last_id: int) -> bool:
        stored = self._connection.execute(_SELECT_RANGE, (first_id, last_id)).fetchall()
        if stored != rows:
            raise BatchSequenceError(
                f"batch {first_id}..{last_id} is already stored with different contents"
            )
        return False

    def _check_registered(self, values: list[int | str], first_id: int, last_id: int) -> None:
        """Refuse a batch (its rows' `values`) naming an account or asset not registered."""
        accounts = set(cast(list[int], values[_DEBIT::_ROW_VARIABLES]))
        accounts.update(cast(list[int], values[_CREDIT::_ROW_VARIABLES]))
        assets = set(cast(list[str], values[_ASSET::_ROW_VARIABLES]))
        missing_accounts = accounts - self._known_accounts
        missing_assets = assets - self._known_assets
        if missing_accounts:
            found_accounts = self._present("accounts", "account_id", missing_accounts)
            self._known_accounts |= found_accounts
            missing_accounts -= found_accounts
        if missing_assets:
            found_assets = self._present("assets", "code", missing_assets)
            self._known_assets |= found_assets
            missing_assets -= found_assets
        if missing_accounts or missing_assets:
            raise BatchRejectedError(
                f"batch {first_id}..{last_id} names unregistered accounts"
                f" {sorted(missing_accounts)} and assets {sorted(missing_assets)}"
            )

    def _present(self, table: str, column: str, keys: set[_Key]) -> set[_Key]:
        query = f"SELECT {column} FROM {table} WHERE {column} IN (SELECT value FROM json_each(?))"
        payload = msgspec.json.encode(sorted(keys)).decode()
        return {row[0] for row in self._connection.execute(query, (payload,))}

    def last_transfer_id(self) -> int:
        head = self._connection.execute(_SELECT_HEAD).fetchone()
        return int(head[1]) if head else 0

    def head_hash(self) -> bytes:
        head = self._connection.execute(_SELECT_HEAD).fetchone()
        return bytes(head[2]) if head else GENESIS_HASH

    def iter_transfers(self, after_id: int = 0) -> Iterator[Transfer]:
        # Paged, so no statement stays open across the caller's own appends.
        while True:
            page = self._connection.execute(
                _SELECT_PAGE, (after_id, ITERATION_PAGE_TRANSFERS)
            ).fetchall()
            for row in page:
                yield transfer_of(row)
            if len(page) < ITERATION_PAGE_TRANSFERS:
                return
            after_id = page[-1][0]

    def balances(self) -> dict[tuple[int, str], int]:
        with self._snapshot():
            return self._balances()

    def _balances(self) -> dict[tuple[int, str], int]:
        return _joined_halves(self._connection.execute(_SELECT_BALANCES))

    def sum_through(self, transfer_id: int) -> SummedTransfers:
        execute = self._connection.execute
        with self._snapshot():
            balances = _joined_halves(execute(_SELECT_BALANCES_THROUGH, (transfer_id,)))
            (last_id,) = execute(_SELECT_LAST_THROUGH, (transfer_id,)).fetchone()
            unknown = execute(_SELECT_UNKNOWN_KIND_THROUGH, (transfer_id, *KNOWN_KINDS)).fetchone()
        return SummedTransfers(balances, last_id or 0, None if unknown is None else tuple(unknown))

    def verify(self) -> list[str]:
        with self._snapshot():
            problems = self._chain_problems()
            problems += [
                f"transfers name an unregistered {kind} {key}"
                for kind, key in self._connection.execute(_SELECT_UNREGISTERED)
            ]
            problems += balance_problems(self._balances())
        return problems

    def _chain_problems(self) -> list[str]:
        execute = self._connection.execute
        batches = execute(
            "SELECT batch_no, first_transfer_id, last_transfer_id, prev_hash, hash"
            " FROM batches ORDER BY batch_no"
        ).fetchall()
        return chain_problems(
            batches,
            lambda first_id, last_id: execute(_SELECT_RANGE, (first_id, last_id)).fetchall(),
            lambda first_id: int(
                execute(
                    "SELECT COUNT(*) FROM transfers WHERE transfer_id >= ?", (first_id,)
                ).fetchone()[0]
            ),
        )

    def close(self) -> None:
        self._connection.close()

    # -- transactions ---------------------------------------------------------------------

    def _write(self) -> "_Transaction":
        return _Transaction(self._connection, "BEGIN IMMEDIATE")

    def _snapshot(self) -> "_Transaction":
        return _Transaction(self._connection, "BEGIN")


class _Transaction:
    """Commit on success, roll back on any exception, so a refusal leaves nothing behind."""

    def __init__(self, connection: sqlite3.Connection, begin: str) -> None:
        self._connection = connection
        self._begin = begin

    def __enter__(self) -> None:
        self._connection.execute(self._begin)

    def __exit__(self, error_type: type[BaseException] | None, *_: object) -> None:
        if error_type is None:
            try:
                self._connection.execute("COMMIT")
            except BaseException:
                self._roll_back()
                raise
        else:
            self._roll_back()

    def _roll_back(self) -> None:
        # Some errors (a full disk, an interrupt) have already rolled SQLite back.
        if self._connection.in_transaction:
            self._connection.execute("ROLLBACK")


def _rows_per_insert(variables_max: int) -> int:
    """The most rows an insert binds with this SQLite: a power of two, `INSERT_ROWS_MAX` at most."""
    return min(INSERT_ROWS_MAX, 1 << ((variables_max // _ROW_VARIABLES).bit_length() - 1))


def _sequence_message(first_id: int, last_id: int, stored_last_id: int) -> str:
    if first_id > stored_last_id + 1:
        return (
            f"batch {first_id}..{last_id} leaves a gap: the store ends at {stored_last_id},"
            f" so transfers {stored_last_id + 1}..{first_id - 1} are missing"
        )
    return (
        f"batch {first_id}..{last_id} overlaps the store, which ends at {stored_last_id}:"
        f" re-send {first_id}..{stored_last_id} whole, or send from {stored_last_id + 1}"
    )
