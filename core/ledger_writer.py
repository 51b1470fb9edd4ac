"""Carries what the venue booked into the ledger store: registrations first, then transfers.

Owns the order of writes the store needs (an asset or account is registered before any
transfer names it) and the batching of transfers (one store transaction per batch). The
store is derived from the venue's events and the ledger's drained transfers; re-writing
what is already stored is a no-op, so a writer can always be replayed.
"""

from collections.abc import Iterable, Sequence
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import Any

from engine.commands import AmendOrder, CancelAll, CancelOrder, PlaceOrder
from engine.events import AccountOpened, AssetListed, Event, ReservesAttested
from settlement.ledger import Ledger
from settlement.store import LedgerStore, SqliteLedgerStore
from settlement.transfers import FEE_INCOME, ISSUANCE, REDEMPTION, ROUNDING, Transfer

_REGISTERING = frozenset({AssetListed, AccountOpened, ReservesAttested})  # what `observe` books
# Commands that only trade: they never list, open or attest, so a gathering of them alone
# (most gatherings) needs no look at its events, ~9 a trade.
TRADING = frozenset({PlaceOrder, AmendOrder, CancelOrder, CancelAll})
_command_of = attrgetter("command")  # of an executed command
_events_of = attrgetter("events")
_transfers_of = attrgetter("transfers")
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

    def book(self, batches: Sequence[Sequence[Any]]) -> None:
        """Book durable journal batches of executed commands (each with `events` and
        `transfers`): the registrations they make first, then the transfers naming them.

        Few commands register anything, and most gatherings none: a gathering of `TRADING`
        commands alone is passed by their types in one C-level pass (`issuperset`; commands
        and events are final structs, so exact types suffice); any other has its events'
        types checked so, and only one that registers is looked at command by command. The
        transfers are gathered in C too (`chain`): this thread holds the GIL the loop waits for.
        """
        executed = list(chain.from_iterable(batches))
        if not TRADING.issuperset(map(type, map(_command_of, executed))):
            self._observe_gathering(executed)
        self.write(list(chain.from_iterable(map(_transfers_of, executed))))

    def _observe_gathering(self, executed: list[Any]) -> None:
        registering = _REGISTERING
        if not registering.isdisjoint(map(type, chain.from_iterable(map(_events_of, executed)))):
            for command in executed:
                if not registering.isdisjoint(map(type, command.events)):
                    self.observe(command.events)

    def write(self, transfers: Sequence[Transfer]) -> None:
        """Store booked transfers, in batches of `BATCH_TRANSFERS`."""
        for start in range(0, len(transfers), BATCH_TRANSFERS):
            self.store.append_batch(transfers[start : start + BATCH_TRANSFERS])

    def flush(self, ledger: Ledger) -> int:
        """Store every transfer the ledger booked since the last flush; how many there were."""
        booked = ledger.drain()
        self.write(booked)
        return len(booked)
