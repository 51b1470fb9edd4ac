"""The ledger writer: durable batches of executed commands booked into a real SQLite store."""

from pathlib import Path

from bench import workloads
from core.ledger_writer import _REGISTERING, TRADING, LedgerWriter
from core.sequencer import Executed
from engine.commands import CancelAll, PlaceOrder
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


def test_trading_commands_never_register(tmp_path: Path) -> None:
    """`book` looks at no event of a gathering of TRADING commands alone: it relies on them
    never listing, opening or attesting. Seeded workloads of every kind, executed, agree."""
    seen = set()
    for name in ("mixed", "cross", "addcancel"):
        ledger = Ledger()
        venue = Venue(ledger=ledger)
        workload = workloads.build(name, 3_000, seed=7)
        commands = workloads.ledger_setup() + workload.setup + workload.commands
        accounts = sorted({c.account for c in workload.commands if isinstance(c, PlaceOrder)})
        now = commands[-1].ts_us
        commands += [CancelAll(account=account, ts_us=now) for account in accounts[:20]]
        for done in executed(commands, ledger, venue):
            if type(done.command) in TRADING:
                seen.add(type(done.command))
                assert not any(type(event) in _REGISTERING for event in done.events), done
    assert seen == TRADING  # every trading command was exercised


def test_book_registers_from_a_gathering_that_also_trades(tmp_path: Path) -> None:
    """An account opened amid trades is registered before the transfers that name it."""
    ledger = Ledger()
    venue = Venue(ledger=ledger)
    workload = workloads.build("cross", 200, seed=3)
    done = executed(workloads.ledger_setup() + workload.setup + workload.commands, ledger, venue)
    store = SqliteLedgerStore(tmp_path / "ledger.sqlite")
    writer = LedgerWriter(store)
    writer.book([done[:1], done[1:]])
    assert {a: n for a, n in store.accounts().items() if a > 0} == {
        account: participant.name for account, participant in ledger.participants.items()
    }
    assert store.last_transfer_id() == ledger.last_transfer_id and store.verify() == []
    store.close()
