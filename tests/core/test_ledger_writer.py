"""The ledger writer: durable batches of executed commands booked into a real SQLite store."""

from pathlib import Path

from bench import workloads
from core.ledger_writer import _REGISTERING, TRADING, LedgerWriter, bookings_of
from core.sequencer import Executed
from engine.commands import AmendPair, CancelAll, PlaceOrder
from engine.events import AccountOpened, AssetListed, ReservesAttested
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
    # two journal batches gathered into one write
    writer.book([bookings_of(setup[:3]), bookings_of(setup[3:])])
    assert store.assets() == {code: asset.scale for code, asset in ledger.assets.items()}
    assert {a: n for a, n in store.accounts().items() if a > 0} == {
        account: participant.name for account, participant in ledger.participants.items()
    }
    assert store.attestations() and store.last_transfer_id() == ledger.last_transfer_id > 0
    assert store.verify() == []
    writer.book([bookings_of(setup)])  # a replayed gathering books nothing twice
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
        # an AmendPair, so that every trading kind is seen: of orders 1 and 2 at price and
        # size 0, so both sides are refused (a refusal registers nothing either)
        pair = AmendPair(ts_us=now, account=accounts[0], bid_order_id=1, ask_order_id=2)
        commands += [pair] + [CancelAll(account=a, ts_us=now) for a in accounts[:20]]
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
    writer.book([bookings_of(done[:1]), bookings_of(done[1:])])
    assert {a: n for a, n in store.accounts().items() if a > 0} == {
        account: participant.name for account, participant in ledger.participants.items()
    }
    assert store.last_transfer_id() == ledger.last_transfer_id and store.verify() == []
    store.close()


def test_bookings_of_a_batch_keep_its_registrations_and_transfers_in_order() -> None:
    """The store gets the batch's registering events and transfers, in order, and nothing
    of the batch itself (its commands, events, origins stay with the loop)."""
    ledger = Ledger()
    venue = Venue(ledger=ledger)
    workload = workloads.build("cross", 300, seed=5)
    setup = executed(workloads.ledger_setup() + workload.setup, ledger, venue)
    trades = executed(workload.commands, ledger, venue)
    bookings = bookings_of(setup + trades)
    kinds = (AssetListed, AccountOpened, ReservesAttested)
    assert bookings.registering == [
        event for done in setup for event in done.events if isinstance(event, kinds)
    ]
    assert bookings.transfers_by_command == [done.transfers for done in setup + trades]
    assert sum(map(len, bookings.transfers_by_command)) > len(trades)
    trading = bookings_of(trades)
    assert trading == ((), [done.transfers for done in trades])
    assert bookings_of([]) == ((), [])
