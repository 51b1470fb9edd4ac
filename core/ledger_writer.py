"""Carries what the venue booked into the ledger store: registrations first, then transfers.

Owns the order of writes the store needs (an asset or account is registered before any
transfer names it) and the batching of transfers (one store transaction per batch). The
store is derived from the venue's events and the ledger's drained transfers; re-writing
what is already stored is a no-op, so a writer can always be replayed.
"""

from collections.abc import Iterable, Sequence
from pathlib import Path

from engine.events import AccountOpened, AssetListed, Event, ReservesAttested
from settlement.ledger import Ledger
from settlement.store import LedgerStore, SqliteLedgerStore
from settlement.transfers import FEE_INCOME, ISSUANCE, REDEMPTION, ROUNDING, Transfer

BATCH_TRANSFERS = 4_000  # about 1,000 trades: the store's sweet spot for one transaction
VENUE_ACCOUNT_NAMES = {
    ISSUANCE: "venue:issuance",
    FEE_INCOME: "venue:fee-income",
    ROUNDING: "venue:rounding",
    REDEMPTION: "venue:redemption",
}


def open_store(sqlite_path: Path, postgres_dsn: str = "") -> LedgerStore:
    """The venue's ledger store: in PostgreSQL when a DSN is given, else the SQLite file."""
    if not postgres_dsn:
        return SqliteLedgerStore(sqlite_path)
    from settlement.pg_store import PostgresLedgerStore  # psycopg loads only when used

    return PostgresLedgerStore(postgres_dsn)


class LedgerWriter:
    def __init__(self, store: LedgerStore) -> None:
        self.store = store
        for account, name in VENUE_ACCOUNT_NAMES.items():
            store.register_account(account, name)

    def observe(self, events: Iterable[Event]) -> None:
        """Register the assets and accounts, and record the attestations, these events add."""
        store = self.store
        for event in events:
            if isinstance(event, AssetListed):
                store.register_asset(event.spec.code, event.spec.scale)
            elif isinstance(event, AccountOpened):
                store.register_account(event.participant.account_id, event.participant.name)
            elif isinstance(event, ReservesAttested):
                attestation = event.attestation
                store.record_attestation(
                    attestation.asset, attestation.amount, attestation.as_of_us
                )

    def register_ledger(self, ledger: Ledger) -> None:
        """Register everything the ledger knows (after a restart, before catching up)."""
        for code, spec in ledger.assets.items():
            self.store.register_asset(code, spec.scale)
        for account, participant in ledger.participants.items():
            self.store.register_account(account, participant.name)
        for attestation in ledger.attestations.values():
            self.store.record_attestation(
                attestation.asset, attestation.amount, attestation.as_of_us
            )

    def write(self, transfers: Sequence[Transfer]) -> None:
        """Store booked transfers, in batches of `BATCH_TRANSFERS`."""
        for start in range(0, len(transfers), BATCH_TRANSFERS):
            self.store.append_batch(transfers[start : start + BATCH_TRANSFERS])

    def flush(self, ledger: Ledger) -> int:
        """Store every transfer the ledger booked since the last flush; how many there were."""
        booked = ledger.drain()
        self.write(booked)
        return len(booked)
