"""Our engine behind the adapter interface: the book alone, or the full venue path.

`Venue()` matches only; `Venue(ledger=Ledger())` also holds, settles (DvP) and charges fees,
after `bench.workloads.ledger_setup()` has opened and funded every account. Both run the
workload's engine commands as they are; traded quantity comes from `TradeExecuted` events.
"""

from collections.abc import Sequence

from bench.adapters.base import AdapterResult, time_each
from bench.workloads import Workload
from engine.events import TradeExecuted
from engine.venue import Venue


class VenueAdapter:
    """`engine.venue.Venue`, with or without a ledger."""

    def __init__(self, ledger: bool = False) -> None:
        self.ledger = ledger
        self.name = "ours+ledger" if ledger else "ours"
        self.venue: Venue | None = None

    def available(self) -> tuple[bool, str]:
        return True, ""

    def prepare(self, workload: Workload) -> Sequence[object]:
        self.venue = None  # free the previous book before building the next
        self.venue = workload.fresh_venue(self.ledger)
        return workload.commands

    def run(self, commands: Sequence[object]) -> AdapterResult:
        assert self.venue is not None, "prepare() first"
        seconds, latencies, outputs, cpu_seconds = time_each(self.venue.execute, commands)
        traded = 0
        for events in outputs:
            assert isinstance(events, list), events
            for event in events:
                if type(event) is TradeExecuted:
                    traded += event.qty
        self.venue = None
        return AdapterResult(seconds, latencies, traded, cpu_seconds)
