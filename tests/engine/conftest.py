"""Shared helpers for engine tests: a listed sample market and terse command builders."""

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from engine.commands import Command, ListInstrument, PlaceOrder
from engine.enums import InstrumentKind, Side
from engine.events import Event
from engine.instrument import InstrumentSpec
from engine.venue import Venue, VenueConfig

if TYPE_CHECKING:  # both import this module: imported by the fixtures, when they run
    from tests.engine.test_clearing import Cleared
    from tests.engine.test_corporate import Corp

SYMBOL = "AAPLx-USD"


def make_spec(**overrides: Any) -> InstrumentSpec:
    """AAPLx-USD: cents, 0.000001-share steps, 10% band around 100.00, min notional 0."""
    fields: dict[str, Any] = dict(
        symbol=SYMBOL,
        kind=InstrumentKind.EQUITY,
        base="AAPLx",
        quote="USD",
        price_decimals=2,
        price_tick=1,
        qty_decimals=6,
        qty_step=1,
        min_qty=1,
        quote_decimals=6,
        min_notional=0,
        price_band_bps=1_000,
        reference_price=10_000,
    )
    fields.update(overrides)
    return InstrumentSpec(**fields)


class Harness:
    """A venue with one listed market, a clock that ticks per command, invariants checked."""

    def __init__(self, config: VenueConfig | None = None, **spec: Any) -> None:
        self.venue = Venue(config)
        self.do(ListInstrument(spec=make_spec(**spec)))

    def now(self) -> int:
        """One microsecond after the last command."""
        return self.venue.ts_us + 1

    def do(self, command: Command) -> list[Event]:
        import msgspec

        if command.ts_us == 0:
            command = msgspec.structs.replace(command, ts_us=self.now())
        events = self.venue.execute(command)
        self.venue.check_invariants()
        return events

    def place(self, account: int, side: Side, price: int, qty: int, **more: Any) -> list[Event]:
        more.setdefault("symbol", SYMBOL)
        return self.do(PlaceOrder(account=account, side=side, price=price, qty=qty, **more))


@pytest.fixture
def harness() -> Harness:
    return Harness()


@pytest.fixture
def make_harness() -> Callable[..., Harness]:
    return Harness


@pytest.fixture
def cleared() -> "Cleared":
    """The funded venue with a ledger of test_clearing and test_dvp."""
    from tests.engine.test_clearing import Cleared

    return Cleared()


@pytest.fixture
def corp() -> "Corp":
    """The corporate-action venue of test_corporate and test_splits."""
    from tests.engine.test_corporate import Corp

    return Corp()


def kinds(events: list[Event]) -> list[str]:
    return [type(event).__name__ for event in events]
