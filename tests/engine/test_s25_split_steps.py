"""A split with cash in lieu on an asset traded in two markets of different steps.

Session 25's finding: the holding floors to the named market's step, each resting sell to
its own market's. A sell of a whole holding in a market of a finer step rescaled to more
than the holding kept, could not be held, and the venue stopped on a broken invariant at
every such split (`venue admin split` answered nothing, its retries hit a stopped venue).
"""

import msgspec
import pytest

from engine.commands import (
    AttestReserves,
    CancelOrder,
    Deposit,
    ListAsset,
    ListInstrument,
    PlaceOrder,
    SetInstrumentStatus,
)
from engine.enums import InstrumentStatus, OrderType, Side, TimeInForce
from engine.events import CorporateActionApplied, OrderAmended
from engine.reasons import ErrorCode
from tests.engine.conftest import make_spec
from tests.engine.test_corporate import PAYER, Corp, lieu_split

FINE = "AAPLx-EUR"  # AAPLx again, at steps of 0.000001 share (AAPLx-USD's are 0.001)
# holder 2's offer of all its 3.333333 shares there
SELL = PlaceOrder(
    account=2,
    symbol=FINE,
    side=Side.SELL,
    order_type=OrderType.LIMIT,
    tif=TimeInForce.GTC,
    price=9_000,
    qty=3_333_333,
)
SELL_ID = 1


@pytest.fixture
def corp() -> Corp:
    """The corporate-action venue, plus AAPLx-EUR, where holder 2 offers all its 3.333333
    shares; both markets halted, ready to split."""
    corp = Corp()
    corp.ok(ListAsset(code="EUR", scale=2))
    spec = make_spec(symbol=FINE, quote="EUR", quote_decimals=2, reference_price=9_000)
    corp.ok(ListInstrument(spec=spec))
    corp.ok(AttestReserves(asset="EUR", amount=1_000_00, as_of_us=0))
    corp.ok(Deposit(account=PAYER, asset="EUR", amount=100_00))  # for cash in lieu in EUR
    corp.ok(SELL)
    assert max(corp.venue.orders) == SELL_ID
    corp.halt()
    corp.ok(SetInstrumentStatus(symbol=FINE, status=InstrumentStatus.HALTED))
    return corp


def test_a_split_whose_sells_would_pass_a_holding_is_refused_not_fatal(corp: Corp) -> None:
    """7:3: the 3.333333 shares are 7.7777777 new ones; the holding keeps 7.777 at
    AAPLx-USD's step, the sell on AAPLx-EUR would hold 7.777777. Refused, saying so and
    what to do, and nothing changes (the venue used to stop here)."""
    refused = corp.refused(lieu_split(ratio_new=7, ratio_old=3))
    assert refused.reason is ErrorCode.BAD_PARAM
    assert refused.detail == (
        "account 2's resting sells and pending withdrawals of AAPLx would hold 7.777777 after"
        " the split, more than the 7.777000 its holding keeps at AAPLx-USD's step of"
        " 0.001000: name the market of the finest step (AAPLx-EUR, 0.000001), or cancel"
        " those sells first"
    )


def test_the_same_split_named_on_the_finest_market_goes_through(corp: Corp) -> None:
    """Named on AAPLx-EUR, every holding floors to 0.000001 share and covers the sell."""
    split = msgspec.structs.replace(lieu_split(ratio_new=7, ratio_old=3), symbol=FINE)
    events = corp.ok(split)
    applied = {e.account: e.holding_after for e in events if isinstance(e, CorporateActionApplied)}
    assert applied[2] == 7_777_777
    amended = [(e.order_id, e.leaves_qty) for e in events if isinstance(e, OrderAmended)]
    assert amended == [(SELL_ID, 7_777_777)]
    assert corp.held(2, "AAPLx") == 7_777_777


def test_a_split_whose_sells_fit_goes_through_on_the_coarser_market(corp: Corp) -> None:
    """A sell of 3.333 of the 3.333333 shares becomes 7.777, within the 7.777 the holding
    keeps at AAPLx-USD's step: the check refuses only what could not be held."""
    corp.ok(CancelOrder(account=2, order_id=SELL_ID))
    corp.ok(SetInstrumentStatus(symbol=FINE, status=InstrumentStatus.OPEN))
    corp.ok(msgspec.structs.replace(SELL, qty=3_333_000))
    corp.ok(SetInstrumentStatus(symbol=FINE, status=InstrumentStatus.HALTED))
    events = corp.ok(lieu_split(ratio_new=7, ratio_old=3))
    amended = [e.leaves_qty for e in events if isinstance(e, OrderAmended)]
    assert amended == [7_777_000]
    assert (corp.total(2, "AAPLx"), corp.held(2, "AAPLx")) == (7_777_000, 7_777_000)
