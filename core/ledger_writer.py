"""Carries what the venue booked into the ledger store: registrations first, then transfers.

Owns what the store is handed of each durable journal batch (`bookings_of`: its
registrations and transfers, not the batch), the order of writes the store needs (an asset
or account is registered before any transfer names it) and the batching of transfers (one
store transaction per `BATCH_TRANSFERS`). The store is derived from the venue's events and
the ledger's drained transfers; re-writing what is already stored is a no-op, so a writer
can always be replayed.
"""

from collections.abc import Iterable, Sequence
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import Any, NamedTuple

from engine.commands import AmendOrder, AmendPair, CancelAll, CancelOrder, PlaceOrder
from engine.events import AccountOpened, AssetListed, Event, ReservesAttested
from settlement.ledger import Ledger
from settlement.store import LedgerStore, SqliteLedgerStore
from settlement.transfers import FEE_INCOME, ISSUANCE, REDEMPTION, ROUNDING, Transfer

_REGISTERING = frozenset({AssetListed, AccountOpened, ReservesAttested})  # what `observe` books
# Commands that only trade: they never list, open or attest, so a gathering of them alone
# (most gatherings) needs no look at its events, ~9 a trade.
TRADING = frozenset({PlaceOrder, AmendOrder, AmendPair, CancelOrder, CancelAll})
_command_of = attrgetter("command")  # of an executed command
_events_of = attrgetter("events")
_transfers_of = attrgetter("transfers")
_transfers_by_command_of = attrgetter("transfers_by_command")
_NO_EVENTS: tuple[Event, ...] = ()  # shared: a batch of trading commands alone registers nothing
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


class Bookings(NamedTuple):
    """What one durable journal batch gives the ledger store: the events among its commands'
    that register (an asset, an account, an attestation; in order, usually none) and each
    command's transfers (the ledger's drained list, in id order), command after command."""

    registering: Sequence[Event]
    transfers_by_command: list[Sequence[Transfer]]


def bookings_of(batch: Sequence[Any]) -> Bookings:
    """A durable journal batch of executed commands (each with `command`, `events` and
    `transfers`) as the store needs it, made where the batch was committed (the event loop
    for the file journal) so that the batch itself stays with the loop.

    Whoever drops a batch last frees it: its commands, their events (~9 a trade), origins and
    pushes, allocated on the loop and cold once a gathering ends. Freed on the store's thread
    they cost it ~3 µs a trade, 30% of its CPU (`venue bench e2e --rate 8000 --taker-share
    1`), and both threads together ~2 µs a command more than freed warm on the loop, whose
    allocator then reuses the memory. Taken in C and touching no transfer (the store's
    thread reads them; listing 30 commands' lists costs ~1/7 of flattening them): the
    commands' transfer lists by `map`, their types in one pass (`issuperset`; commands and
    events are final structs, so exact types suffice); only a batch with other commands has
    its events' types checked so, and only one that registers is filtered event by event.
    """
    transfers = list(map(_transfers_of, batch))
    if TRADING.issuperset(map(type, map(_command_of, batch))):
        return Bookings(_NO_EVENTS, transfers)
    events = list(chain.from_iterable(map(_events_of, batch)))
    if _REGISTERING.isdisjoint(map(type, events)):
        return Bookings(_NO_EVENTS, transfers)
    return Bookings([event for event in events if type(event) in _REGISTERING], transfers)


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

    def book(self, gathered: Sequence[Bookings]) -> None:
        """Book durable journal batches (`bookings_of` each): the registrations they make
        first, then the transfers naming them. The transfers are gathered in C (`chain`):
        this thread holds the GIL the loop waits for."""
        by_command = chain.from_iterable(map(_transfers_by_command_of, gathered))
        for bookings in gathered:
            if bookings.registering:  # few batches: listings, openings, attestations
                self.observe(bookings.registering)
        self.write(list(chain.from_iterable(by_command)))

    def write(self, transfers: Sequence[Transfer]) -> None:
        """Store booked transfers, in batches of `BATCH_TRANSFERS`."""
        for start in range(0, len(transfers), BATCH_TRANSFERS):
            self.store.append_batch(transfers[start : start + BATCH_TRANSFERS])

    def flush(self, ledger: Ledger) -> int:
        """Store every transfer the ledger booked since the last flush; how many there were."""
        booked = ledger.drain()
        self.write(booked)
        return len(booked)
