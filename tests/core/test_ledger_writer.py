"""The ledger writer: durable batches of executed commands booked into a real SQLite store."""

from pathlib import Path

from bench import workloads
from core.ledger_writer import LedgerWriter
from core.sequencer import Executed
from engine.venue import Venue
from settlement.ledger import Ledger
from settlement.store import SqliteLedgerStore


def executed(commands: list, ledger: Ledger, venue: Venue) -> list[Executed]:  # type: ignore[type-arg]
    out = []
    for seq, command in enumerate(commands, start=1):
        events = venue.execute(command)
        out.append(Executed(seq, command, events, None, transfers=ledger.drain()))
    return out


def test_book_registers_what_a_gathering_opens_before_its_transfers(tmp_path: Path) -> None:
    ledger = Ledger()
    venue = Venue(ledger=ledger)
    setup = executed(workloads.ledger_setup(), ledger, venue)  # lists, opens, attests, deposits
    store = SqliteLedgerStore(tmp_path / "ledger.sqlite")
    writer = LedgerWriter(store)
    writer.book([setup[:3], setup[3:]])  # two journal batches gathered into one write
    assert store.assets() == {code: asset.scale for code, asset in ledger.assets.items()}
    assert {a: n for a, n in store.accounts().items() if a > 0} == {
        account: participant.name for account, participant in ledger.participants.items()
    }
    assert store.attestations() and store.last_transfer_id() == ledger.last_transfer_id > 0
    assert store.verify() == []
    writer.book([setup])  # a replayed gathering books nothing twice
    assert store.last_transfer_id() == ledger.last_transfer_id
    store.close()
