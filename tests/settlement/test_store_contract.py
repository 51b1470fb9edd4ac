"""Contract suite for `LedgerStore`, run against every implementation on real databases.

Each implementation gets a harness: it opens stores on one database (a SQLite file under
tmp_path; a fresh database on a real PostgreSQL started once per module) and can reach past
the store with its own driver, to try what the store must refuse and to tamper as an
attacker would. A new implementation adds a harness to `HARNESSES`. What only one
implementation has (files, schema tables) is tested in test_store.py and test_pg_store.py.
"""

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import psycopg
import pytest
from msgspec.structs import replace

from settlement.corporate import LieuTerms, split
from settlement.ledger import AssetSpec, Attestation, Ledger, Participant, Refused
from settlement.pg_store import PostgresLedgerStore
from settlement.store import (
    BATCH_TRANSFERS_MAX,
    GENESIS_HASH,
    ITERATION_PAGE_TRANSFERS,
    BatchRejectedError,
    BatchSequenceError,
    LedgerStore,
    RegistrationError,
    SqliteLedgerStore,
    TransferRow,
    balance_problems,
    batch_hash,
)
from settlement.transfers import FEE_INCOME, ISSUANCE, ROUNDING, Transfer, TransferKind

BUYER, SELLER, BYSTANDER = 1, 2, 3
PARTICIPANTS = (BUYER, SELLER, BYSTANDER)
TS_US = 1_700_000_000_000_000


class Harness(Protocol):
    refusal_error: type[Exception]  # what the database raises when a trigger refuses

    def open(self) -> LedgerStore: ...
    def update_amount(self, transfer_id: int, amount: int) -> None: ...
    def delete_transfer(self, transfer_id: int) -> None: ...
    def tamper_amount(self, transfer_id: int, amount: int) -> None: ...
    def tamper_delete(self, transfer_id: int) -> None: ...
    def insert_transfer(self, row: TransferRow) -> None: ...
    def close(self) -> None: ...


class SqliteHarness:
    """SqliteLedgerStore files under pytest's tmp_path, and a raw sqlite3 connection."""

    refusal_error: type[Exception] = sqlite3.IntegrityError

    def __init__(self, directory: Path) -> None:
        self.path = directory / "ledger.sqlite"
        self._stores: list[SqliteLedgerStore] = []

    def open(self) -> LedgerStore:
        store = SqliteLedgerStore(self.path)
        self._stores.append(store)
        return store

    def _run(self, *statements: tuple[str, tuple[object, ...]]) -> None:
        connection = sqlite3.connect(self.path, isolation_level=None)
        try:
            for sql, parameters in statements:
                connection.execute(sql, parameters)
        finally:
            connection.close()

    def update_amount(self, transfer_id: int, amount: int) -> None:
        self._run(("UPDATE transfers SET amount = ? WHERE transfer_id = ?", (amount, transfer_id)))

    def delete_transfer(self, transfer_id: int) -> None:
        self._run(("DELETE FROM transfers WHERE transfer_id = ?", (transfer_id,)))

    def tamper_amount(self, transfer_id: int, amount: int) -> None:
        self._run(
            ("DROP TRIGGER transfers_refuse_update", ()),
            ("UPDATE transfers SET amount = ? WHERE transfer_id = ?", (amount, transfer_id)),
        )

    def tamper_delete(self, transfer_id: int) -> None:
        self._run(
            ("DROP TRIGGER transfers_refuse_delete", ()),
            ("DELETE FROM transfers WHERE transfer_id = ?", (transfer_id,)),
        )

    def insert_transfer(self, row: TransferRow) -> None:
        self._run(("INSERT INTO transfers VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row))

    def close(self) -> None:
        for store in self._stores:
            store.close()


class PostgresHarness:
    """PostgresLedgerStore on a fresh database, and a raw psycopg connection."""

    refusal_error: type[Exception] = psycopg.errors.RaiseException

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._stores: list[PostgresLedgerStore] = []

    def open(self) -> LedgerStore:
        store = PostgresLedgerStore(self.dsn)
        self._stores.append(store)
        return store

    def _run(self, *statements: tuple[str, tuple[Any, ...]]) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            for sql, parameters in statements:
                connection.execute(sql, parameters or None)

    def update_amount(self, transfer_id: int, amount: int) -> None:
        self._run(
            ("UPDATE transfers SET amount = %s WHERE transfer_id = %s", (amount, transfer_id))
        )

    def delete_transfer(self, transfer_id: int) -> None:
        self._run(("DELETE FROM transfers WHERE transfer_id = %s", (transfer_id,)))

    def tamper_amount(self, transfer_id: int, amount: int) -> None:
        self._run(
            ("DROP TRIGGER transfers_refuse_update ON transfers", ()),
            ("UPDATE transfers SET amount = %s WHERE transfer_id = %s", (amount, transfer_id)),
        )

    def tamper_delete(self, transfer_id: int) -> None:
        self._run(
            ("DROP TRIGGER transfers_refuse_delete ON transfers", ()),
            ("DELETE FROM transfers WHERE transfer_id = %s", (transfer_id,)),
        )

    def insert_transfer(self, row: TransferRow) -> None:
        self._run(("INSERT INTO transfers VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", row))

    def close(self) -> None:
        for store in self._stores:
            store.close()


HARNESSES = ["sqlite", "postgres"]


@pytest.fixture(params=HARNESSES)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    opened: Harness
    if request.param == "sqlite":
        opened = SqliteHarness(tmp_path)
    else:  # the server starts only when a PostgreSQL case runs
        opened = PostgresHarness(request.getfixturevalue("postgres_dsn"))
    yield opened
    opened.close()


@pytest.fixture
def store(harness: Harness) -> LedgerStore:
    """A store with USD and AAPL, the venue's accounts, and three participants."""
    opened = harness.open()
    opened.register_asset("USD", 6)
    opened.register_asset("AAPL", 6)
    opened.register_account(ISSUANCE, "issuance")
    opened.register_account(FEE_INCOME, "fee income")
    for account_id in PARTICIPANTS:
        opened.register_account(account_id, f"participant {account_id}")
    return opened


class Ids:
    """Hands out consecutive transfer ids, as the ledger does."""

    def __init__(self, next_id: int = 1) -> None:
        self.next_id = next_id

    def transfer(
        self, debit: int, credit: int, asset: str, amount: int, kind: TransferKind, chain: int
    ) -> Transfer:
        transfer = Transfer(self.next_id, chain, debit, credit, asset, amount, kind, TS_US)
        self.next_id += 1
        return transfer


def funding(ids: Ids) -> list[Transfer]:
    """Mint cash to the buyer and shares to the seller, one chain each."""
    chain = ids.next_id
    return [
        ids.transfer(ISSUANCE, BUYER, "USD", 1_000_000_000, TransferKind.MINT, chain),
        ids.transfer(ISSUANCE, SELLER, "AAPL", 10_000_000, TransferKind.MINT, chain + 1),
    ]


def trade(
    ids: Ids, qty: int = 1_000_000, cash: int = 150_000_000, fee: int = 15_000
) -> list[Transfer]:
    """One trade's delivery-versus-payment: four legs on one chain."""
    chain = ids.next_id
    return [
        ids.transfer(SELLER, BUYER, "AAPL", qty, TransferKind.DELIVERY, chain),
        ids.transfer(BUYER, SELLER, "USD", cash, TransferKind.PAYMENT, chain),
        ids.transfer(BUYER, FEE_INCOME, "USD", fee, TransferKind.FEE, chain),
        ids.transfer(SELLER, FEE_INCOME, "USD", fee, TransferKind.FEE, chain),
    ]


def stored(store: LedgerStore) -> list[Transfer]:
    return list(store.iter_transfers())


def rows_of(transfers: list[Transfer]) -> list[TransferRow]:
    return [
        (
            t.transfer_id,
            t.chain_id,
            t.debit_account,
            t.credit_account,
            t.asset,
            t.amount,
            t.kind.value,
            t.ts_us,
        )
        for t in transfers
    ]


# -- round trip ----------------------------------------------------------------------------


def test_an_empty_store_is_sound(store: LedgerStore) -> None:
    assert store.last_transfer_id() == 0
    assert store.head_hash() == GENESIS_HASH
    assert stored(store) == []
    assert store.balances() == {}
    assert store.verify() == []


def test_registrations_read_back(store: LedgerStore) -> None:
    assert store.assets() == {"AAPL": 6, "USD": 6}
    assert store.accounts() == {
        ISSUANCE: "issuance",
        FEE_INCOME: "fee income",
        BUYER: "participant 1",
        SELLER: "participant 2",
        BYSTANDER: "participant 3",
    }


def test_batches_read_back_as_written(store: LedgerStore) -> None:
    ids = Ids()
    first, second = funding(ids), trade(ids) + trade(ids)
    assert store.append_batch(first) is True
    assert store.append_batch(second) is True
    assert stored(store) == first + second
    assert store.last_transfer_id() == 10
    assert list(store.iter_transfers(after_id=4)) == (first + second)[4:]
    assert list(store.iter_transfers(after_id=10)) == []
    assert all(type(t.kind) is TransferKind for t in stored(store))


def test_balances_are_credits_minus_debits(store: LedgerStore) -> None:
    ids = Ids()
    store.append_batch(funding(ids))
    store.append_batch(trade(ids, qty=2_000_000, cash=300_000_000, fee=30_000))
    assert store.balances() == {
        (ISSUANCE, "USD"): -1_000_000_000,
        (ISSUANCE, "AAPL"): -10_000_000,
        (BUYER, "USD"): 1_000_000_000 - 300_000_000 - 30_000,
        (BUYER, "AAPL"): 2_000_000,
        (SELLER, "USD"): 300_000_000 - 30_000,
        (SELLER, "AAPL"): 8_000_000,
        (FEE_INCOME, "USD"): 60_000,
    }


def test_balances_past_64_bits_are_exact(store: LedgerStore) -> None:
    # Amounts fit in 64 bits but totals need not: three mints of 2**62 + 1 put the issuance
    # account at -(3 * 2**62 + 3) and the buyer, after a transfer back, past 2**63.
    big = 2**62 + 1
    ids = Ids()
    store.append_batch(
        [ids.transfer(ISSUANCE, BUYER, "USD", big, TransferKind.MINT, n + 1) for n in range(3)]
    )
    store.append_batch([ids.transfer(BUYER, SELLER, "USD", 5, TransferKind.PAYMENT, 4)])
    assert store.balances() == {
        (ISSUANCE, "USD"): -3 * big,
        (BUYER, "USD"): 3 * big - 5,
        (SELLER, "USD"): 5,
    }
    assert store.verify() == []
    store.append_batch([ids.transfer(SELLER, BUYER, "USD", 5, TransferKind.PAYMENT, 5)])
    assert (SELLER, "USD") not in store.balances()  # a balance back at zero is left out


def python_sums(transfers: list[Transfer]) -> dict[tuple[int, str], int]:
    """Balances summed one transfer at a time, as `venue verify --nats` did before session 33."""
    sums: dict[tuple[int, str], int] = {}
    for t in transfers:
        sums[t.credit_account, t.asset] = sums.get((t.credit_account, t.asset), 0) + t.amount
        sums[t.debit_account, t.asset] = sums.get((t.debit_account, t.asset), 0) - t.amount
    return {key: amount for key, amount in sums.items() if amount}


def test_sums_through_an_id_are_the_database_s_and_equal_python_s(store: LedgerStore) -> None:
    """`sum_through(n)`: the database sums the transfers up to n (past 64 bits too), equal to
    summing them one by one; with their last id and none of an unknown kind."""
    big = 2**62 + 1
    ids = Ids()
    store.append_batch(funding(ids))
    store.append_batch(trade(ids) + trade(ids, qty=2_000_000, cash=300_000_000, fee=30_000))
    store.append_batch(
        [ids.transfer(ISSUANCE, BUYER, "USD", big, TransferKind.MINT, 20 + n) for n in range(3)]
    )
    every = stored(store)
    for through in (0, 1, 6, 10, 12, 13, 99):
        summed = store.sum_through(through)
        upto = [t for t in every if t.transfer_id <= through]
        assert summed.balances == python_sums(upto), through
        assert summed.last_id == (upto[-1].transfer_id if upto else 0)
        assert summed.unknown_kind is None
    assert store.sum_through(13).balances == store.balances()


def test_sums_through_an_id_name_the_first_transfer_of_an_unknown_kind(
    harness: Harness, store: LedgerStore
) -> None:
    """A row this build cannot read (a later build's kind, a hand's): named, by id and kind,
    so a check that only sums says so as one that reads every transfer does."""
    ids = Ids()
    minted = funding(ids)
    store.append_batch(minted)
    harness.insert_transfer((3, 3, ISSUANCE, BUYER, "USD", 7, "bogus", TS_US))
    assert store.sum_through(2) == (python_sums(minted), 2, None)
    as_a_mint = Transfer(3, 3, ISSUANCE, BUYER, "USD", 7, TransferKind.MINT, TS_US)
    assert store.sum_through(3) == (python_sums([*minted, as_a_mint]), 3, (3, "bogus"))


def test_a_split_with_cash_in_lieu_reads_back_and_verifies(store: LedgerStore) -> None:
    """The chain a reverse split books (shares burned to issuance, `cash_in_lieu` legs from
    the payer, the residual to rounding) reads back as booked, and the store's balances are
    the ledger's, to the unit."""
    ledger = Ledger()
    for code in ("USD", "AAPL"):
        ledger.add_asset(AssetSpec(code, 6))
        ledger.attest(Attestation(code, 10**12, TS_US))
    for account in PARTICIPANTS:
        ledger.add_participant(Participant(account, f"participant {account}", True, "DE"))
    for account, amount in ((BUYER, 1_234_567), (SELLER, 3_333_333)):
        assert not isinstance(ledger.mint(account, "AAPL", amount, TS_US, 10**6), Refused)
    assert not isinstance(ledger.mint(BYSTANDER, "USD", 10**9, TS_US, 10**6), Refused)
    terms = LieuTerms("USD", BYSTANDER, 1_000, price_num=100_010_000, price_den=10**6)
    booked = split(ledger, "AAPL", 1, 10, TS_US, terms)  # 100.01 USD a share
    assert [e.cash for e in booked.entitlements] == [456_745, 333_333]  # 0.004567, 0.003333
    store.register_account(ROUNDING, "rounding")
    transfers = ledger.drain()
    assert store.append_batch(transfers) is True
    assert stored(store) == transfers
    assert TransferKind.CASH_IN_LIEU in {t.kind for t in stored(store)}
    assert store.balances() == {key: b.total for key, b in ledger.balances.items() if b.total}
    assert store.verify() == []


def test_a_reopened_store_continues(harness: Harness, store: LedgerStore) -> None:
    ids = Ids()
    first = funding(ids)
    store.append_batch(first)
    head = store.head_hash()
    store.close()
    store.close()  # closing twice is harmless

    reopened = harness.open()
    assert reopened.last_transfer_id() == 2
    assert reopened.head_hash() == head
    assert reopened.assets() == {"AAPL": 6, "USD": 6}
    second = trade(ids)
    assert reopened.append_batch(second) is True
    assert stored(reopened) == first + second
    assert reopened.verify() == []


def test_head_hash_chains_the_batches(store: LedgerStore) -> None:
    ids = Ids()
    first, second = funding(ids), trade(ids)
    store.append_batch(first)
    store.append_batch(second)
    expected = batch_hash(batch_hash(GENESIS_HASH, rows_of(first)), rows_of(second))
    assert store.head_hash() == expected


def test_iteration_crosses_pages(store: LedgerStore) -> None:
    ids = Ids()
    transfers: list[Transfer] = funding(ids)
    while len(transfers) < 2 * ITERATION_PAGE_TRANSFERS + 10:
        transfers += trade(ids, qty=1, cash=1, fee=1)
    store.append_batch(transfers)
    assert stored(store) == transfers
    middle = ITERATION_PAGE_TRANSFERS + 3
    assert list(store.iter_transfers(after_id=middle)) == transfers[middle:]


# -- registrations -------------------------------------------------------------------------


def test_registering_again_is_a_no_op(store: LedgerStore) -> None:
    assert store.register_asset("USD", 6) is False
    assert store.register_account(BUYER, "participant 1") is False
    assert store.register_asset("TBILL-2026-12", 2) is True
    assert store.register_account(4, "participant 4") is True


@pytest.mark.parametrize(
    ("register", "message"),
    [
        (lambda s: s.register_asset("USD", 2), "registered with scale 6"),
        (lambda s: s.register_account(BUYER, "someone else"), "registered as"),
        (lambda s: s.register_asset("", 2), "not 1 to"),
        (lambda s: s.register_asset("X" * 33, 2), "not 1 to"),
        (lambda s: s.register_asset("BIG", 19), "scale 19"),
        (lambda s: s.register_account(0, "nobody"), "account id 0"),
        (lambda s: s.register_account(5, "n" * 201), "longer than"),
    ],
    ids=["scale", "name", "empty-code", "long-code", "big-scale", "zero-id", "long-name"],
)
def test_bad_or_conflicting_registrations_are_refused(
    store: LedgerStore, register: Callable[[LedgerStore], bool], message: str
) -> None:
    before = (store.assets(), store.accounts())
    with pytest.raises(RegistrationError, match=message):
        register(store)
    assert (store.assets(), store.accounts()) == before


# -- idempotency and sequence ----------------------------------------------------------------


def test_reapplying_a_batch_changes_nothing(store: LedgerStore) -> None:
    ids = Ids()
    first, second, third = funding(ids), trade(ids), trade(ids)
    for batch in (first, second, third):
        store.append_batch(batch)
    head, everything = store.head_hash(), stored(store)

    assert store.append_batch(third) is False  # the last batch, re-sent after a crash
    assert store.append_batch(first) is False  # an older one
    assert store.append_batch(second + third) is False  # re-batched differently
    assert store.append_batch(second[1:3]) is False  # a slice of one
    assert stored(store) == everything
    assert store.head_hash() == head
    assert store.verify() == []


def test_reapplying_ids_with_other_contents_is_refused(store: LedgerStore) -> None:
    ids = Ids()
    store.append_batch(funding(ids))
    batch = trade(ids)
    store.append_batch(batch)
    altered = [*batch[:3], replace(batch[3], amount=1)]
    with pytest.raises(BatchSequenceError, match="already stored with different contents"):
        store.append_batch(altered)
    assert stored(store)[-4:] == batch


def renumbered(transfers: list[Transfer], first_id: int) -> list[Transfer]:
    return [replace(t, transfer_id=first_id + n) for n, t in enumerate(transfers)]


def out_of_sequence(kind: str, ids: Ids) -> list[Transfer]:
    """A batch after transfers 1..6 (funding, one trade) that does not continue at 7."""
    batch = trade(ids)  # ids 7..10
    if kind == "gap":
        return renumbered(batch, 8)
    if kind == "overlap":
        return renumbered(batch, 5)
    if kind == "unordered":
        return [batch[1], batch[0], *batch[2:]]
    if kind == "repeated-id":
        return [batch[0], batch[1], batch[1], batch[3]]
    assert kind == "starts-before-one"
    return renumbered(batch, -1)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("gap", "leaves a gap: the store ends at 6, so transfers 7..7 are missing"),
        ("overlap", "overlaps the store, which ends at 6"),
        ("unordered", "not consecutive and ascending"),
        ("repeated-id", "not consecutive and ascending"),
        ("starts-before-one", "transfer ids start at 1"),
    ],
)
def test_a_batch_out_of_sequence_is_refused_whole(
    store: LedgerStore, kind: str, message: str
) -> None:
    ids = Ids()
    store.append_batch(funding(ids))
    store.append_batch(trade(ids))
    before, head = stored(store), store.head_hash()
    with pytest.raises(BatchSequenceError, match=message):
        store.append_batch(out_of_sequence(kind, ids))
    assert stored(store) == before
    assert store.head_hash() == head
    assert store.append_batch(renumbered(trade(Ids()), 7)) is True


def test_the_first_batch_starts_at_one(store: LedgerStore) -> None:
    with pytest.raises(BatchSequenceError, match=r"transfers 1\.\.1 are missing"):
        store.append_batch(funding(Ids(2)))
    assert store.last_transfer_id() == 0


@pytest.mark.parametrize("size", [0, BATCH_TRANSFERS_MAX + 1])
def test_batch_size_is_bounded(store: LedgerStore, size: int) -> None:
    one = funding(Ids())[0]
    with pytest.raises(BatchRejectedError, match=f"1 to {BATCH_TRANSFERS_MAX} transfers"):
        store.append_batch([one] * size)
    assert store.last_transfer_id() == 0


# -- atomicity -------------------------------------------------------------------------------


def broken(transfer: Transfer, defect: str) -> Transfer:
    if defect == "zero-amount":
        return replace(transfer, amount=0)
    if defect == "negative-amount":
        return replace(transfer, amount=-5)
    if defect == "self-transfer":
        return replace(transfer, credit_account=transfer.debit_account)
    assert defect == "amount-beyond-64-bits"
    return replace(transfer, amount=2**63)


@pytest.mark.parametrize(
    "defect", ["zero-amount", "negative-amount", "self-transfer", "amount-beyond-64-bits"]
)
def test_a_batch_failing_half_way_leaves_nothing(store: LedgerStore, defect: str) -> None:
    ids = Ids()
    store.append_batch(funding(ids))
    before, head, balances = stored(store), store.head_hash(), store.balances()
    good = [leg for _ in range(50) for leg in trade(ids, qty=1, cash=100, fee=1)]
    half = len(good) // 2 + 1  # the first half is written before the database balks
    bad = [*good[:half], broken(good[half], defect), *good[half + 1 :]]

    with pytest.raises(BatchRejectedError, match=f"batch 3..{good[-1].transfer_id}"):
        store.append_batch(bad)
    assert stored(store) == before
    assert store.last_transfer_id() == 2
    assert store.head_hash() == head
    assert store.balances() == balances
    assert store.verify() == []

    assert store.append_batch(good) is True
    assert stored(store) == before + good
    assert store.verify() == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"credit_account": 99}, r"unregistered accounts \[99\] and assets \[\]"),
        ({"debit_account": -9}, r"unregistered accounts \[-9\]"),
        ({"asset": "EUR"}, r"and assets \['EUR'\]"),
    ],
    ids=["account", "venue-account", "asset"],
)
def test_unregistered_accounts_and_assets_are_refused(
    store: LedgerStore, change: dict[str, object], message: str
) -> None:
    ids = Ids()
    batch = funding(ids) + trade(ids)
    batch[-1] = replace(batch[-1], **change)
    with pytest.raises(BatchRejectedError, match=message):
        store.append_batch(batch)
    assert store.last_transfer_id() == 0


def test_an_account_registered_elsewhere_is_seen(harness: Harness, store: LedgerStore) -> None:
    ids = Ids()
    store.append_batch(funding(ids))
    other = harness.open()  # another process registering a participant
    other.register_account(7, "participant 7")
    late = ids.transfer(BUYER, 7, "USD", 5, TransferKind.PAYMENT, ids.next_id)
    assert store.append_batch([late]) is True


# -- append-only -----------------------------------------------------------------------------


def test_stored_transfers_cannot_be_updated_or_deleted(
    harness: Harness, store: LedgerStore
) -> None:
    ids = Ids()
    store.append_batch(funding(ids))
    before = stored(store)
    with pytest.raises(harness.refusal_error, match="append-only: UPDATE refused"):
        harness.update_amount(1, 5)
    with pytest.raises(harness.refusal_error, match="append-only: DELETE refused"):
        harness.delete_transfer(1)
    assert stored(store) == before
    assert store.verify() == []


# -- verify ----------------------------------------------------------------------------------


def sound(store: LedgerStore) -> LedgerStore:
    ids = Ids()
    store.append_batch(funding(ids))
    store.append_batch(trade(ids) + trade(ids))
    store.append_batch(trade(ids))
    assert store.verify() == []
    return store


def test_an_altered_amount_is_detected(harness: Harness, store: LedgerStore) -> None:
    sound(store)
    harness.tamper_amount(5, 150_000_001)  # the second batch's payment
    assert store.verify() == ["batch 2 (3..10) hash does not match its transfers"]


def test_an_altered_amount_that_drives_a_balance_negative_is_detected(
    harness: Harness, store: LedgerStore
) -> None:
    sound(store)
    harness.tamper_amount(1, 1)  # the buyer's cash mint
    problems = store.verify()
    assert problems[0] == "batch 1 (1..2) hash does not match its transfers"
    assert "participant 1 holds -" in problems[1]


def test_a_deleted_transfer_is_detected(harness: Harness, store: LedgerStore) -> None:
    sound(store)
    harness.tamper_delete(12)
    assert store.verify() == [
        "batch 3 (11..14) has 3 of its transfers",
        "batch 3 (11..14) hash does not match its transfers",
    ]


def test_a_transfer_slipped_in_past_the_batches_is_detected(
    harness: Harness, store: LedgerStore
) -> None:
    sound(store)
    harness.insert_transfer((15, 15, ISSUANCE, 42, "USD", 7, "mint", TS_US))
    assert store.verify() == [
        "1 transfers from id 15 are in no batch",
        "transfers name an unregistered account 42",
    ]


def test_a_participant_below_zero_is_reported(store: LedgerStore) -> None:
    ids = Ids()
    store.append_batch(trade(ids))  # the buyer pays with cash it was never given
    assert store.verify() == [
        "participant 1 holds -150015000 of USD",
        "participant 2 holds -1000000 of AAPL",
    ]


def test_an_asset_that_does_not_sum_to_zero_is_reported() -> None:
    # Each stored row carries both of its legs, so a store's own transfers always sum to
    # zero; verify() runs this check on the balances it derives, to catch a broken
    # aggregation, and it is tested here on balances made up to be wrong.
    assert balance_problems({(ISSUANCE, "USD"): -100, (BUYER, "USD"): 99}) == [
        "asset USD sums to -1, not 0"
    ]
    assert balance_problems({(ISSUANCE, "USD"): -100, (BUYER, "USD"): 100}) == []


# -- reserves --------------------------------------------------------------------------------


def test_attestations_keep_the_latest_per_asset(store: LedgerStore) -> None:
    assert store.record_attestation("USD", 1_000, 5)
    assert store.record_attestation("USD", 2_000, 9)
    assert store.record_attestation("AAPLx", 7, 1)
    assert not store.record_attestation("USD", 1_000, 5)  # the same statement again
    with pytest.raises(RegistrationError, match="recorded as 1000, not 1001"):
        store.record_attestation("USD", 1_001, 5)  # a different amount for the same moment
    assert store.attestations() == {"AAPLx": (7, 1), "USD": (2_000, 9)}


@pytest.mark.parametrize("amount", [-1, 2**63], ids=["negative", "beyond-64-bits"])
def test_an_attestation_out_of_range_is_refused(store: LedgerStore, amount: int) -> None:
    with pytest.raises(RegistrationError, match="reserves of"):
        store.record_attestation("USD", amount, 5)
    assert store.attestations() == {}
